//! The charts that deploy the extension, rendered by real Helm (`hacks/render-chart.py`, helm-python-sdk) as
//! gardenlet (seed chart) and the garden's operator (admission chart) would render them, then applied to the test
//! bed's kube-apiserver. The rendered containers are then run as local processes of the real binary, with the
//! chart's args, env and mounted Secrets/ConfigMaps, as the chart's ServiceAccount (impersonated): the RBAC is
//! proven by the work the binary does, not by reading rules.
//!
//! Needs helm-python-sdk (`bash hacks/install-helm.sh`, which `make test` runs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use gardener_extension_cri_resmgr::apis::common::{LastOperationState, LastOperationType};
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension};
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    BASE_CONFIGS_CONFIG_MAP, EXTENSION_CLASS_SHOOT, EXTENSION_TYPE, HEARTBEAT_LEASE_NAME, LABEL_MANAGED_BY,
    LEADER_ELECTION_LEASE_NAME, MANAGED_BY, MANAGED_RESOURCE_SECRET_KEY, SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::runtime::registration::{self, ClientConfigMode};
use gardener_extension_cri_resmgr::yaml;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apply::{Placement, apply_all, find, kinds_and_names};
use crate::support::{TestEnv, eventually, example, https_get, repo_root, sample, scrape};

const SEED_CHART: &str = "charts/gardener-extension-cri-resmgr";
const ADMISSION_CHART: &str = "charts/gardener-extension-cri-resmgr-admission";
const SEED_NAME: &str = "gardener-extension-cri-resmgr";
/// The seed Plutono dashboard's ConfigMap (in `garden`).
const SEED_DASHBOARD: &str = "gardener-extension-cri-resmgr-dashboard";
const ADMISSION_NAME: &str = "gardener-extension-cri-resmgr-admission";
/// The Secrets the binaries keep their webhook certificates in (`--webhook-cert-secret`); the charts render none.
const SEED_CERT_SECRET: &str = "gardener-extension-cri-resmgr-webhook-certs";
const ADMISSION_CERT_SECRET: &str = "gardener-extension-cri-resmgr-admission-webhook-certs";
const CONTROLLER_REGISTRATION: &str = "examples/garden/controller-registration.yaml";

// ---------------------------------------------------------------------------------------------------------------
// Rendering with real Helm
// ---------------------------------------------------------------------------------------------------------------

/// What Helm's `.Capabilities` say about the target cluster.
struct Capabilities {
    kube_version: String,
    /// `group/version` and `group/version/Kind` of every served resource, as Helm collects them from a live cluster.
    api_versions: Vec<String>,
}

/// The test bed's capabilities, so the charts render for Kubernetes 1.20 as gardenlet renders for its seed.
async fn capabilities_of(client: &kube::Client) -> Capabilities {
    let info = client.apiserver_version().await.expect("apiserver version");
    let kube_version = if info.git_version.starts_with('v') {
        info.git_version
    } else {
        format!("v{}.{}.0", info.major, info.minor.trim_end_matches('+'))
    };
    let api_versions = cri_resmgr_testbed::served_api_versions(client).await.expect("API discovery");
    Capabilities { kube_version, api_versions }
}

/// Runs one of the hacks' Python scripts; a missing helm-python-sdk fails the test with the way to install it.
fn run_python(script: &str, args: &[&std::ffi::OsStr]) -> String {
    let output = std::process::Command::new("python3")
        .arg(repo_root().join("hacks").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `python3 hacks/{script}`: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!(
            "helm-python-sdk is not installed, so the charts cannot be rendered with real Helm: run \
             `bash hacks/install-helm.sh` (`make test` does).\nhacks/{script}: {stderr}"
        );
    }
    assert!(output.status.success(), "hacks/{script} failed ({}):\n{stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Renders `chart` (a directory or .tgz) into `namespace` with `values` and decodes the documents.
fn render(chart: &Path, namespace: &str, values: &Value, capabilities: Option<&Capabilities>) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    // JSON is YAML: Helm reads it as a values file.
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, serde_json::to_vec(values).expect("values")).expect("write values");
    let mut args: Vec<std::ffi::OsString> =
        vec![chart.into(), "--namespace".into(), namespace.into(), "--values".into(), values_file.into()];
    if let Some(capabilities) = capabilities {
        args.extend(["--kube-version".into(), capabilities.kube_version.clone().into()]);
        args.extend(["--api-versions".into(), capabilities.api_versions.join(",").into()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let text = run_python("render-chart.py", &args);
    yaml::from_multi_str(&text).unwrap_or_else(|e| panic!("{} renders invalid YAML: {e}\n{text}", chart.display()))
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {}", container["env"]))
}

/// One RBAC rule of an expectation table: API group, resources, verbs and resourceNames (none: any name).
type Rule = (&'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

/// RBAC rules as a set of `verb group/resource[name]` grants, so a table of expectations reads like the rules.
fn grants(rules: &Value) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        let names = strings(&rule["resourceNames"]);
        let names = if names.is_empty() { vec![String::new()] } else { names };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        let name = if name.is_empty() { String::new() } else { format!("[{name}]") };
                        grants.insert(format!("{verb} {group}/{resource}{name}"));
                    }
                }
            }
        }
    }
    grants
}

fn expand(table: &[Rule]) -> BTreeSet<String> {
    let rules: Vec<Value> = table
        .iter()
        .map(|(group, resources, verbs, names)| {
            json!({"apiGroups": [group], "resources": resources, "verbs": verbs, "resourceNames": names})
        })
        .collect();
    grants(&Value::Array(rules))
}

fn secret_data(secret: &Value, key: &str) -> Vec<u8> {
    let encoded = secret["data"][key].as_str().unwrap_or_else(|| panic!("no {key} in the Secret"));
    base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64")
}

/// The Secret the binary manages holds a serving certificate for `hosts`, signed by its `ca.crt`, and a PEM key.
fn assert_webhook_tls(secret: &Value, hosts: &[String]) {
    use x509_parser::extensions::GeneralName;
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["metadata"]["labels"][LABEL_MANAGED_BY], MANAGED_BY);
    let (ca_pem, cert_pem) = (secret_data(secret, "ca.crt"), secret_data(secret, "tls.crt"));
    let (_, ca) = x509_parser::pem::parse_x509_pem(&ca_pem).expect("ca.crt is PEM");
    let ca = ca.parse_x509().expect("ca.crt is a certificate");
    let (_, cert) = x509_parser::pem::parse_x509_pem(&cert_pem).expect("tls.crt is PEM");
    let cert = cert.parse_x509().expect("tls.crt is a certificate");
    assert!(ca.is_ca(), "ca.crt is a CA");
    cert.verify_signature(Some(ca.public_key())).expect("tls.crt is signed by ca.crt");
    let names: Vec<String> = cert
        .subject_alternative_name()
        .expect("SAN extension")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| if let GeneralName::DNSName(name) = n { Some(name.to_string()) } else { None })
                .collect()
        })
        .unwrap_or_default();
    for host in hosts {
        assert!(names.contains(host), "the serving certificate is not valid for {host}: {names:?}");
    }
    let key = String::from_utf8(secret_data(secret, "tls.key")).expect("tls.key is text");
    assert!(key.starts_with("-----BEGIN") && key.contains("PRIVATE KEY"), "tls.key is a PEM private key");
}

/// The webhook certificate Secret the binary creates at start-up (as JSON, like the rendered objects).
async fn created_cert_secret(client: &kube::Client, namespace: &str, name: &str) -> Value {
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let secret = eventually(&format!("the binary creates its certificate Secret {namespace}/{name}"), || async {
        secrets.get_opt(name).await.ok()?
    })
    .await;
    serde_json::to_value(secret).expect("Secret as JSON")
}

// ---------------------------------------------------------------------------------------------------------------
// The rendered containers as local processes
// ---------------------------------------------------------------------------------------------------------------

/// A kubeconfig that acts as `service_account` of the test's namespace: the test bed's own, impersonating it, in
/// place of the ServiceAccount token a pod would get.
fn impersonating_kubeconfig(env: &TestEnv, service_account: &str) -> String {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(&env.kubeconfig).expect("read the test bed's kubeconfig");
    let namespace = &env.namespace;
    for auth in &mut kubeconfig.auth_infos {
        let info = auth.auth_info.get_or_insert_with(Default::default);
        info.impersonate = Some(format!("system:serviceaccount:{namespace}:{service_account}"));
        info.impersonate_groups = Some(vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ]);
    }
    // JSON is YAML: every kubeconfig reader takes it.
    serde_json::to_string(&kubeconfig).expect("kubeconfig")
}

async fn client_from(kubeconfig: &str) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("client")
}

/// A rendered container prepared to run locally, as kubelet would run it: the Secret and ConfigMap volumes it mounts
/// are written from the apiserver's objects under `root` (each mount at `<root><mountPath>`), its environment is
/// resolved (downward API from the pod name and namespace), and every arg or env value that names a mounted path
/// names the local copy instead.
struct LocalContainer {
    args: Vec<String>,
    env: Vec<(String, String)>,
    root: tempfile::TempDir,
}

impl LocalContainer {
    async fn prepare(client: &kube::Client, namespace: &str, deployment: &Value, pod_name: &str) -> LocalContainer {
        let root = tempfile::tempdir().expect("tempdir");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let path = mount["mountPath"].as_str().expect("mountPath").to_string();
            let volume = pod["volumes"]
                .as_array()
                .and_then(|volumes| volumes.iter().find(|v| v["name"] == mount["name"]))
                .unwrap_or_else(|| panic!("no volume {} for mount {path}", mount["name"]));
            let files = volume_files(client, namespace, volume).await;
            let local = format!("{}{path}", root.path().display());
            std::fs::create_dir_all(&local).expect("mount dir");
            for (file, content) in files {
                std::fs::write(Path::new(&local).join(file), content).expect("write mounted file");
            }
            mounts.push((path, local));
        }
        let localize =
            |text: &str| mounts.iter().fold(text.to_string(), |text, (path, local)| text.replace(path, local));
        let args = strings(&container["args"]).iter().map(|arg| localize(arg)).collect();
        let env = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|var| {
                let name = var["name"].as_str().expect("env name").to_string();
                let value = if let Some(value) = var["value"].as_str() {
                    localize(value)
                } else {
                    match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                        Some("metadata.name") => pod_name.to_string(),
                        Some("metadata.namespace") => namespace.to_string(),
                        _ => panic!("env {name}: unsupported source {}", var["valueFrom"]),
                    }
                };
                (name, value)
            })
            .collect();
        LocalContainer { args, env, root }
    }
}

/// The files kubelet would put into a Secret or ConfigMap volume.
async fn volume_files(client: &kube::Client, namespace: &str, volume: &Value) -> Vec<(String, Vec<u8>)> {
    let (data, items): (Vec<(String, Vec<u8>)>, &Value) = if let Some(name) = volume["secret"]["secretName"].as_str() {
        let secret = Api::<Secret>::namespaced(client.clone(), namespace).get(name).await.expect("mounted Secret");
        (secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(), &volume["secret"]["items"])
    } else if volume["emptyDir"].is_object() {
        (Vec::new(), &Value::Null)
    } else if let Some(name) = volume["configMap"]["name"].as_str() {
        let config_map =
            Api::<ConfigMap>::namespaced(client.clone(), namespace).get(name).await.expect("mounted ConfigMap");
        let data = config_map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        (data, &volume["configMap"]["items"])
    } else {
        panic!("unsupported volume {volume}");
    };
    match items.as_array() {
        None => data,
        Some(items) => items
            .iter()
            .map(|item| {
                let key = item["key"].as_str().expect("item key");
                let content = data.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).expect("item key in data");
                (item["path"].as_str().expect("item path").to_string(), content)
            })
            .collect(),
    }
}

/// The real binary, running a rendered container's command line; killed when dropped, and its log printed when the
/// test fails while it runs.
struct RunningBinary {
    child: tokio::process::Child,
    log: PathBuf,
}

impl RunningBinary {
    fn start(container: &LocalContainer, args: Vec<String>, extra_env: &[(&str, &str)]) -> RunningBinary {
        let log = container.root.path().join("binary.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gardener-extension-cri-resmgr"))
            .args(args)
            .env_clear()
            .envs(container.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start the binary");
        RunningBinary { child, log }
    }

    /// No request of the binary was refused for lack of RBAC (also on paths whose failure it only logs).
    fn assert_never_forbidden(&self) {
        let log = std::fs::read_to_string(&self.log).expect("read the log");
        let refused: Vec<&str> = log.lines().filter(|line| line.contains("is forbidden")).collect();
        assert!(refused.is_empty(), "the binary was refused by RBAC:\n{}", refused.join("\n"));
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the binary") {
            panic!("the binary exited early ({status})");
        }
    }

    /// SIGTERM, as kubelet stops a container; the binary must shut down cleanly.
    async fn stop(mut self) {
        let pid = self.child.id().expect("the binary still runs");
        // SAFETY: sends a signal to our own child process, whose pid we hold (it has not been reaped).
        unsafe {
            libc::kill(i32::try_from(pid).expect("pid"), libc::SIGTERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the binary stops within 30 s of SIGTERM")
            .expect("wait for the binary");
        assert!(status.success(), "the binary exits cleanly on SIGTERM: {status}");
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- log of the binary ---\n{log}--- end of log ---");
        }
    }
}

/// Where the binary of `args` serves `/metrics`.
fn metrics_address(args: &[String]) -> std::net::SocketAddr {
    let arg = args.iter().find_map(|arg| arg.strip_prefix("--metrics-bind-address=")).expect("a metrics address");
    arg.parse().expect("host:port")
}

/// An Event about the example Extension in `namespace`, as the controller publishes them.
fn extension_event(namespace: &str) -> k8s_openapi::api::events::v1::Event {
    serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "cri-resmgr-extension.charts-test", "namespace": namespace},
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": SEED_NAME, "reportingInstance": "charts-test",
        "action": "Reconcile", "reason": "ReconcileFailed", "type": "Warning", "note": "test",
        "regarding": {"apiVersion": "extensions.gardener.cloud/v1alpha1", "kind": "Extension",
                      "name": EXTENSION_TYPE, "namespace": namespace},
    }))
    .expect("an Event")
}

/// The container's args for a local run: the webhook and metrics servers on free loopback ports instead of the pod's
/// `0.0.0.0:<port>` (tests share the host), plus `extra`.
fn local_args(container: &LocalContainer, port: u16, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = container
        .args
        .iter()
        .map(|arg| {
            if arg.starts_with("--webhook-bind-address=") {
                format!("--webhook-bind-address=127.0.0.1:{port}")
            } else if arg.starts_with("--metrics-bind-address=") {
                // Tests share the host: the metrics server on a free loopback port, too.
                format!("--metrics-bind-address=127.0.0.1:{}", free_port())
            } else {
                arg.clone()
            }
        })
        .collect();
    assert!(args.iter().any(|a| a.starts_with("--webhook-bind-address=127.0.0.1:")), "the chart sets the bind address");
    args.extend(extra.iter().cloned());
    args
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Both probes of the rendered container answer 200 over HTTPS.
async fn assert_probes_pass(container: &Value, port: u16, server_name: &str, ca_pem: &[u8]) {
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["scheme"], "HTTPS", "{probe}");
        let path = get["path"].as_str().expect("probe path");
        let status =
            eventually(&format!("{probe} {path} answers"), || https_get(port, server_name, ca_pem, path)).await;
        assert!(status.contains(" 200"), "{probe} {path}: {status}");
    }
}

/// Server-side apply with `dryRun=All` as `client`: goes through authentication, authorization (create and patch)
/// and admission like the real registration, without changing the shared test bed's webhook configurations.
async fn dry_run_apply<K>(client: &kube::Client, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().expect("name");
    let params = PatchParams::apply(registration::FIELD_MANAGER).force().dry_run();
    Api::<K>::all(client.clone()).patch(&name, &params, &Patch::Apply(object)).await.map(|_| ())
}

fn is_forbidden(result: &Result<(), kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// What a replica does when it renews its certificates: update the Secret (dry run) as `client`; and that it may
/// neither read nor update any other Secret of the namespace through the certificate Secret's permissions.
async fn assert_may_renew_only(client: &kube::Client, admin: &kube::Client, namespace: &str, name: &str) {
    let params = PostParams { dry_run: true, ..PostParams::default() };
    let secret = Api::<Secret>::namespaced(admin.clone(), namespace).get(name).await.expect("the certificate Secret");
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    secrets.replace(name, &params, &secret).await.expect("may update its certificate Secret");
    let other = Secret {
        metadata: ObjectMeta { name: Some(format!("{name}-other")), ..Default::default() },
        ..Default::default()
    };
    Api::<Secret>::namespaced(admin.clone(), namespace)
        .create(&PostParams::default(), &other)
        .await
        .expect("another Secret");
    let update = secrets.replace(&format!("{name}-other"), &params, &other).await.map(|_| ());
    assert!(is_forbidden(&update), "only its own Secret may be updated: {update:?}");
}

/// The objects a ManagedResource's Secret carries.
async fn managed_objects(client: &kube::Client, namespace: &str, name: &str) -> Vec<Value> {
    let mr = Api::<ManagedResource>::namespaced(client.clone(), namespace).get(name).await.expect("ManagedResource");
    let secret_name = &mr.spec.secret_refs.first().expect("a secret reference").name;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace).get(secret_name).await.expect("MR Secret");
    let bytes = secret.data.and_then(|mut d| d.remove(MANAGED_RESOURCE_SECRET_KEY)).expect("objects in the MR Secret");
    yaml::from_multi_str(std::str::from_utf8(&bytes.0).expect("UTF-8")).expect("MR objects decode")
}

// ---------------------------------------------------------------------------------------------------------------
// Seed chart
// ---------------------------------------------------------------------------------------------------------------

const AGENT_IMAGE_OVERWRITE: &str = "registry.example.com/charts-test/cri-resmgr-agent:v0-charts-test";

/// Values as an operator puts them into the ControllerDeployment, plus what gardenlet injects.
fn seed_values() -> Value {
    let (repository, tag) = AGENT_IMAGE_OVERWRITE.rsplit_once(':').expect("image");
    json!({
        "image": {"repository": "registry.example.com/charts-test/gardener-extension-cri-resmgr", "tag": "v9.9.9"},
        "configs": {
            "fallback": "policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: 750m\n",
            // A mapping is written out as text.
            "group.fast": {"policy": {"Active": "balloons"}},
        },
        "imageVectorOverwrite": format!(
            "images:\n- name: cri-resmgr-agent\n  repository: {repository}\n  tag: \"{tag}\"\n  targetVersion: \">= 1.20\"\n"
        ),
        "gardener": {
            "version": "1.110.0",
            "garden": {"clusterIdentity": "garden-local"},
            "gardenlet": {"featureGates": {"SomeGate": true}},
            "seed": {"name": "local", "provider": "local", "region": "local", "labels": {"seed.gardener.cloud/x": "y"}},
        },
    })
}

const SEED_RBAC: &[Rule] = &[
    ("extensions.gardener.cloud", &["extensions", "extensions/status"], &["get", "list", "watch", "patch"], &[]),
    ("extensions.gardener.cloud", &["clusters"], &["get", "list", "watch"], &[]),
    ("extensions.gardener.cloud", &["operatingsystemconfigs"], &["list", "watch"], &[]),
    ("resources.gardener.cloud", &["managedresources"], &["get", "create", "update", "patch", "delete"], &[]),
    ("", &["secrets"], &["get", "create", "patch", "delete"], &[]),
    ("events.k8s.io", &["events"], &["create", "patch"], &[]),
    ("", &["namespaces"], &["get"], &[]),
    ("admissionregistration.k8s.io", &["mutatingwebhookconfigurations"], &["create"], &[]),
    ("admissionregistration.k8s.io", &["mutatingwebhookconfigurations"], &["get", "update", "patch"], &[SEED_NAME]),
];

const SEED_NAMESPACED_RBAC: &[Rule] = &[
    ("coordination.k8s.io", &["leases"], &["get", "list", "watch", "create"], &[]),
    ("coordination.k8s.io", &["leases"], &["update", "patch"], &[LEADER_ELECTION_LEASE_NAME, HEARTBEAT_LEASE_NAME]),
    ("", &["configmaps"], &["get", "list", "watch"], &[]),
];

/// The webhook certificate Secret (`--webhook-cert-secret`): created by name-less `create`, then only that Secret.
const SEED_CERT_SECRET_RBAC: &[Rule] = &[
    ("", &["secrets"], &["create"], &[]),
    ("", &["secrets"], &["get", "list", "watch", "update"], &[SEED_CERT_SECRET]),
];

#[test]
fn seed_chart_renders_what_gardenlet_deploys() {
    let namespace = "extension-cri-resmgr-x1y2z";
    let objects = render(&repo_root().join(SEED_CHART), namespace, &seed_values(), None);
    assert_eq!(
        kinds_and_names(&objects),
        [
            "ClusterRole/gardener-extension-cri-resmgr",
            "ClusterRoleBinding/gardener-extension-cri-resmgr",
            "ConfigMap/gardener-extension-cri-resmgr-configs",
            "ConfigMap/gardener-extension-cri-resmgr-dashboard",
            "ConfigMap/gardener-extension-cri-resmgr-imagevector-overwrite",
            "Deployment/gardener-extension-cri-resmgr",
            "PodDisruptionBudget/gardener-extension-cri-resmgr",
            "PrometheusRule/gardener-extension-cri-resmgr",
            "Role/gardener-extension-cri-resmgr",
            "RoleBinding/gardener-extension-cri-resmgr",
            "Service/gardener-extension-cri-resmgr",
            "ServiceAccount/gardener-extension-cri-resmgr",
        ]
        .map(String::from)
        .into(),
        "no VPA unless vpa.enabled, no TLS Secret (the binary manages its own)"
    );
    for object in &objects {
        if object["metadata"]["name"] == SEED_DASHBOARD {
            assert_eq!(object["metadata"]["namespace"], "garden", "the dashboard goes to the seed's Plutono");
        } else if !["ClusterRole", "ClusterRoleBinding"].contains(&object["kind"].as_str().unwrap_or_default()) {
            assert_eq!(object["metadata"]["namespace"], namespace, "{} in the release namespace", object["kind"]);
        }
    }

    let deployment = find(&objects, "Deployment", SEED_NAME);
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas, one leader");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "registry.example.com/charts-test/gardener-extension-cri-resmgr:v9.9.9");
    let cert_dir = "/etc/gardener-extension-cri-resmgr/webhook-certs";
    assert_eq!(
        strings(&container["args"]),
        [
            "--log-format=json",
            "controller",
            "--leader-election=true",
            "--health-check-interval-seconds=30",
            "--heartbeat-interval-seconds=30",
            "--resync-interval-seconds=3600",
            "--max-concurrent-reconciles=5",
            "--osc-webhook=true",
            "--webhook-bind-address=0.0.0.0:10250",
            &format!("--webhook-cert-dir={cert_dir}"),
            &format!("--webhook-cert-secret={SEED_CERT_SECRET}"),
            &format!("--webhook-cert-secret-namespace={namespace}"),
            "--webhook-config-mode=service",
            &format!("--webhook-config-namespace={namespace}"),
            "--webhook-config-service-name=gardener-extension-cri-resmgr",
            "--webhook-config-service-port=443",
            "--metrics-bind-address=:8080",
        ]
    );
    assert_eq!(env_var(container, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
    assert_eq!(
        env_var(container, "LEADER_ELECTION_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(env_var(container, "EXTENSION_CONFIGMAP_NAMESPACE")["value"], namespace);
    let overwrite = env_var(container, "IMAGEVECTOR_OVERWRITE")["value"].as_str().expect("IMAGEVECTOR_OVERWRITE");
    let mount = |path: &str, read_only: bool| {
        let mount = container["volumeMounts"]
            .as_array()
            .and_then(|mounts| mounts.iter().find(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("-"))))
            .unwrap_or_else(|| panic!("{path} is not in a mounted volume"));
        assert_eq!(mount["readOnly"].as_bool().unwrap_or(false), read_only, "{path} read-only");
        pod["volumes"].as_array().and_then(|v| v.iter().find(|v| v["name"] == mount["name"])).expect("volume").clone()
    };
    assert_eq!(
        mount(cert_dir, false),
        json!({"name": "webhook-certs", "emptyDir": {"medium": "Memory"}}),
        "the binary writes the certificates of its Secret into an emptyDir"
    );
    assert_eq!(mount(overwrite, true)["configMap"]["name"], "gardener-extension-cri-resmgr-imagevector-overwrite");
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]["checksum/configmap-imagevector-overwrite"]
            .is_string(),
        "a changed image vector overwrite restarts the pods (it is read at start-up)"
    );

    assert_eq!(
        container["ports"],
        json!([{"name": "webhook-server", "containerPort": 10250, "protocol": "TCP"},
               {"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    // Gardener's seed Prometheus scrapes pods of `extension-*` namespaces by these annotations (no ServiceMonitor).
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        (&annotations["prometheus.io/scrape"], &annotations["prometheus.io/port"], &annotations["prometheus.io/name"]),
        (&json!("true"), &json!("8080"), &json!(SEED_NAME))
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(
            (get["path"].as_str(), get["port"].as_str(), get["scheme"].as_str()),
            (Some(path), Some("webhook-server"), Some("HTTPS"))
        );
    }
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(container["resources"]["requests"]["memory"].is_string(), "resources");
    assert_eq!(pod["priorityClassName"], "gardener-system-900");
    assert_eq!(pod["serviceAccountName"], SEED_NAME);
    let spread: BTreeSet<String> = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topology spread")
        .iter()
        .map(|c| c["topologyKey"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(spread, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"].map(String::from).into());

    assert_eq!(grants(&find(&objects, "ClusterRole", SEED_NAME)["rules"]), expand(SEED_RBAC));
    assert_eq!(
        grants(&find(&objects, "Role", SEED_NAME)["rules"]),
        expand(&[SEED_NAMESPACED_RBAC, SEED_CERT_SECRET_RBAC].concat())
    );
    let service_account = json!([{"kind": "ServiceAccount", "name": SEED_NAME, "namespace": namespace}]);
    for (kind, role) in [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")] {
        let binding = find(&objects, kind, SEED_NAME);
        assert_eq!(binding["subjects"], service_account, "{kind}");
        assert_eq!(
            (binding["roleRef"]["kind"].as_str(), binding["roleRef"]["name"].as_str()),
            (Some(role), Some(SEED_NAME))
        );
    }

    let service = find(&objects, "Service", SEED_NAME);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "webhook-server", "port": 443, "targetPort": 10250, "protocol": "TCP"},
               {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    let service_annotations = &service["metadata"]["annotations"];
    assert_eq!(
        service_annotations["networking.resources.gardener.cloud/from-all-seed-scrape-targets-allowed-ports"],
        r#"[{"protocol":"TCP","port":8080}]"#,
        "Gardener's network policies let the seed Prometheus in"
    );
    assert_eq!(
        service_annotations["networking.resources.gardener.cloud/pod-label-selector-namespace-alias"],
        "extensions"
    );

    let rule = find(&objects, "PrometheusRule", SEED_NAME);
    assert_eq!(rule["metadata"]["labels"]["prometheus"], "seed", "the seed Prometheus loads rules labelled so");
    let dashboard = find(&objects, "ConfigMap", SEED_DASHBOARD);
    assert_eq!(dashboard["metadata"]["labels"]["dashboard.monitoring.gardener.cloud/seed"], "true");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[key], value, "the Service selects the pods");
    }

    let configs = find(&objects, "ConfigMap", BASE_CONFIGS_CONFIG_MAP);
    assert_eq!(configs["data"]["fallback"], seed_values()["configs"]["fallback"], "text configs stay as they are");
    let group: Value =
        yaml::from_str(configs["data"]["group.fast"].as_str().expect("group.fast is text")).expect("YAML");
    assert_eq!(group, json!({"policy": {"Active": "balloons"}}), "mapping configs become YAML text");
    assert_eq!(
        find(&objects, "ConfigMap", "gardener-extension-cri-resmgr-imagevector-overwrite")["data"]["images_overwrite.yaml"],
        seed_values()["imageVectorOverwrite"]
    );

    // Helm's default capabilities are a current Kubernetes: policy/v1, and drains are not blocked by unready pods.
    let pdb = find(&objects, "PodDisruptionBudget", SEED_NAME);
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
}

#[test]
fn seed_chart_adapts_to_the_seed_and_its_values() {
    let old_seed =
        Capabilities { kube_version: "v1.20.2".to_string(), api_versions: vec!["policy/v1beta1".to_string()] };
    let values = json!({"vpa": {"enabled": true, "minAllowed": {"memory": "64Mi"}}, "replicaCount": 3,
                        "controller": {"ignoreOperationAnnotation": true, "maxConcurrentReconciles": 20},
                        "priorityClassName": ""});
    let objects = render(&repo_root().join(SEED_CHART), "garden", &values, Some(&old_seed));
    let pdb = find(&objects, "PodDisruptionBudget", SEED_NAME);
    assert_eq!(pdb["apiVersion"], "policy/v1beta1", "Kubernetes 1.20 has no policy/v1");
    assert!(pdb["spec"].get("unhealthyPodEvictionPolicy").is_none(), "unknown before Kubernetes 1.26");
    let vpa = find(&objects, "VerticalPodAutoscaler", SEED_NAME);
    assert_eq!(vpa["spec"]["targetRef"], json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": SEED_NAME}));
    assert_eq!(vpa["spec"]["resourcePolicy"]["containerPolicies"][0]["minAllowed"], json!({"memory": "64Mi"}));
    let deployment = find(&objects, "Deployment", SEED_NAME);
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod.get("priorityClassName").is_none(), "an empty priorityClassName is left out");
    assert!(strings(&pod["containers"][0]["args"]).contains(&"--ignore-operation-annotation".to_string()));
    assert!(strings(&pod["containers"][0]["args"]).contains(&"--max-concurrent-reconciles=20".to_string()));
    assert!(pod["containers"][0]["env"].as_array().expect("env").iter().all(|e| e["name"] != "IMAGEVECTOR_OVERWRITE"));
    assert!(!kinds_and_names(&objects).contains("ConfigMap/gardener-extension-cri-resmgr-imagevector-overwrite"));
    assert_eq!(find(&objects, "ConfigMap", BASE_CONFIGS_CONFIG_MAP)["data"], json!({}), "no base configs by default");

    let existing = json!({"webhook": {"tls": {"existingSecret": "cert-manager-certificate"}}});
    let objects = render(&repo_root().join(SEED_CHART), "garden", &existing, None);
    assert!(objects.iter().all(|o| o["kind"] != "Secret"), "no TLS Secret");
    let pod = &find(&objects, "Deployment", SEED_NAME)["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "cert-manager-certificate"),
        "the given Secret is mounted"
    );
    let args = strings(&pod["containers"][0]["args"]);
    assert!(!args.iter().any(|a| a.starts_with("--webhook-cert-secret")), "no managed Secret: {args:?}");
    assert_eq!(
        grants(&find(&objects, "Role", SEED_NAME)["rules"]),
        expand(SEED_NAMESPACED_RBAC),
        "no Secret permissions for certificates it does not manage"
    );
}

#[tokio::test]
async fn seed_chart_is_accepted_by_the_apiserver_and_runs_the_controller_as_its_service_account() {
    let env = TestEnv::new("charts_seed").await;
    let capabilities = capabilities_of(&env.client).await;
    // The dashboard's namespace (the seed Plutono's `garden`) is the test's here.
    let mut values = seed_values();
    values["metrics"] = json!({"dashboard": {"namespace": env.namespace}});
    let objects = render(&repo_root().join(SEED_CHART), &env.namespace, &values, Some(&capabilities));
    assert_eq!(find(&objects, "PodDisruptionBudget", SEED_NAME)["apiVersion"], "policy/v1beta1", "rendered for 1.20");
    // The ClusterRole and its binding are applied under their own names: this is the only test that applies them.
    apply_all(&env.client, &objects, Placement::default()).await;

    // A shoot namespace with the Cluster and Extension gardenlet would write; hibernated, so the Delete below needs
    // no node cleaner (there is no kubelet to run it).
    let shoot = format!("{}-shoot", env.namespace);
    let namespace =
        Namespace { metadata: ObjectMeta { name: Some(shoot.clone()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(env.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("shoot namespace");
    let mut cluster: Cluster = example("10-cluster.yaml");
    cluster.metadata.name = Some(shoot.clone());
    cluster.spec.shoot.spec.hibernation = Some(serde_json::from_value(json!({"enabled": true})).expect("hibernation"));
    Api::<Cluster>::all(env.client.clone()).create(&PostParams::default(), &cluster).await.expect("Cluster");

    // The Deployment's container, run locally as its ServiceAccount.
    let pod_name = format!("{SEED_NAME}-5d8f7c9b4-charts");
    let deployment = find(&objects, "Deployment", SEED_NAME);
    let container = LocalContainer::prepare(&env.client, &env.namespace, deployment, &pod_name).await;
    let kubeconfig_path = container.root.path().join("kubeconfig");
    let kubeconfig = impersonating_kubeconfig(&env, SEED_NAME);
    std::fs::write(&kubeconfig_path, &kubeconfig).expect("kubeconfig");
    let port = free_port();
    // The OSC webhook configuration is cluster-wide and the OSC tests register theirs under the same name, so the
    // binary serves without registering; the registration's RBAC is checked with a dry run below.
    let extra = [format!("--watch-namespace={shoot}"), "--no-webhook-registration".to_string()];
    let args = local_args(&container, port, &extra);
    let metrics = metrics_address(&args);
    let mut binary =
        RunningBinary::start(&container, args, &[("KUBECONFIG", kubeconfig_path.to_str().expect("UTF-8 path"))]);

    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let leader = eventually("the controller holds the leader-election Lease in its namespace", || async {
        let lease = leases.get_opt(LEADER_ELECTION_LEASE_NAME).await.ok()??;
        lease.spec?.holder_identity
    })
    .await;
    assert_eq!(leader, pod_name, "identity from POD_NAME (downward API)");
    eventually("the heartbeat Lease", || async { leases.get_opt(HEARTBEAT_LEASE_NAME).await.ok()? }).await;

    let mut extension: Extension = example("20-extension.yaml");
    extension.metadata.namespace = Some(shoot.clone());
    let extensions: Api<Extension> = Api::namespaced(env.client.clone(), &shoot);
    extensions.create(&PostParams::default(), &extension).await.expect("Extension");
    eventually("the Extension is reconciled by the chart's controller", || async {
        let extension = extensions.get(EXTENSION_TYPE).await.ok()?;
        let last = extension.status?.last_operation?;
        (last.type_ == LastOperationType::Create && last.state == LastOperationState::Succeeded).then_some(())
    })
    .await;
    binary.assert_running();
    // The chart's metrics port (here on loopback) serves what the reconcile did.
    let text = eventually("the controller's /metrics", || scrape(metrics)).await;
    let series = "gardener_extension_cri_resmgr_reconciles_total{operation=\"create\",result=\"succeeded\"}";
    assert!(sample(&text, series).is_some_and(|n| n >= 1.0), "{series} in {text}");
    assert_eq!(sample(&text, "gardener_extension_cri_resmgr_leader"), Some(1.0), "{text}");

    let shipped = managed_objects(&env.client, &shoot, SHOOT_MANAGED_RESOURCE_NAME).await;
    assert!(
        kinds_and_names(&shipped).contains("ConfigMap/cri-resmgr-config.group.fast"),
        "the chart's base configs (EXTENSION_CONFIGMAP_NAMESPACE) reach the shoot: {:?}",
        kinds_and_names(&shipped)
    );
    let agent = find(&shipped, "DaemonSet", "cri-resmgr-agent");
    assert_eq!(
        agent["spec"]["template"]["spec"]["containers"][0]["image"], AGENT_IMAGE_OVERWRITE,
        "the chart's image vector overwrite (IMAGEVECTOR_OVERWRITE) is used"
    );

    // The operator changes the ControllerDeployment's configs; gardenlet re-renders the chart and updates the
    // ConfigMap, which the controller watches (list/watch in its namespace) to re-reconcile every shoot.
    let mut changed = seed_values();
    changed["configs"]["group.slow"] = json!("policy:\n  Active: static-pools\n");
    let rendered = render(&repo_root().join(SEED_CHART), &env.namespace, &changed, Some(&capabilities));
    apply_all(&env.client, &[find(&rendered, "ConfigMap", BASE_CONFIGS_CONFIG_MAP).clone()], Placement::default())
        .await;
    eventually("a base config change reaches the shoot without a reconcile request", || async {
        let shipped = managed_objects(&env.client, &shoot, SHOOT_MANAGED_RESOURCE_NAME).await;
        kinds_and_names(&shipped).contains("ConfigMap/cri-resmgr-config.group.slow").then_some(())
    })
    .await;

    // The binary created its certificate Secret (as the chart's ServiceAccount) for the Service's DNS names;
    // kubelet's probes, against that certificate as the seed's apiserver checks it for the Service.
    let tls = created_cert_secret(&env.client, &env.namespace, SEED_CERT_SECRET).await;
    let service = format!("{SEED_NAME}.{}", env.namespace);
    assert_webhook_tls(
        &tls,
        &[SEED_NAME.to_string(), service.clone(), format!("{service}.svc"), format!("{service}.svc.cluster.local")],
    );
    let ca = secret_data(&tls, "ca.crt");
    assert_probes_pass(
        &deployment["spec"]["template"]["spec"]["containers"][0],
        port,
        &format!("{SEED_NAME}.{}.svc", env.namespace),
        &ca,
    )
    .await;

    // What every replica does at start-up: register the OSC webhook, as the chart's ServiceAccount.
    let service_account = client_from(&kubeconfig).await;
    assert_may_renew_only(&service_account, &env.client, &env.namespace, SEED_CERT_SECRET).await;
    let mode = ClientConfigMode::Service { namespace: env.namespace.clone(), name: SEED_NAME.to_string(), port: 443 };
    dry_run_apply(&service_account, &registration::osc_mutating_configuration(&mode, &ca))
        .await
        .expect("the ServiceAccount may register the OSC webhook");
    let mut foreign = registration::shoot_mutating_configuration(&mode, &ca);
    foreign.metadata.name = Some(format!("someone-else-{}", env.namespace));
    assert!(is_forbidden(&dry_run_apply(&service_account, &foreign).await), "only its own webhook configuration");
    // Events on the Extensions in shoot namespaces (the hibernated shoot's flows above publish none).
    let event = extension_event(&shoot);
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(service_account.clone(), &shoot)
        .create(&PostParams { dry_run: true, ..PostParams::default() }, &event)
        .await
        .expect("the ServiceAccount may publish Events");

    extensions.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete the Extension");
    eventually("the Extension is deleted by the chart's controller", || async {
        extensions.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    let managed: Api<ManagedResource> = Api::namespaced(env.client.clone(), &shoot);
    assert!(
        managed.get_opt(SHOOT_MANAGED_RESOURCE_NAME).await.expect("get MR").is_none(),
        "the shoot resources are gone"
    );
    binary.assert_never_forbidden();
    binary.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Admission chart
// ---------------------------------------------------------------------------------------------------------------

const ADMISSION_CERT_SECRET_RBAC: &[Rule] = &[
    ("", &["secrets"], &["create"], &[]),
    ("", &["secrets"], &["get", "list", "watch", "update"], &[ADMISSION_CERT_SECRET]),
];

const ADMISSION_RBAC: &[Rule] = &[
    (
        "admissionregistration.k8s.io",
        &["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        &["create"],
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        &["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        &["get", "update", "patch"],
        &[ADMISSION_NAME],
    ),
];

#[test]
fn admission_chart_renders_url_and_service_modes() {
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &json!({}), None);
    assert_eq!(
        kinds_and_names(&objects),
        [
            "ClusterRole/gardener-extension-cri-resmgr-admission",
            "ClusterRoleBinding/gardener-extension-cri-resmgr-admission",
            "Deployment/gardener-extension-cri-resmgr-admission",
            "PodDisruptionBudget/gardener-extension-cri-resmgr-admission",
            "PrometheusRule/gardener-extension-cri-resmgr-admission",
            "Role/gardener-extension-cri-resmgr-admission",
            "RoleBinding/gardener-extension-cri-resmgr-admission",
            "Service/gardener-extension-cri-resmgr-admission",
            "ServiceAccount/gardener-extension-cri-resmgr-admission",
            "ServiceMonitor/garden-gardener-extension-cri-resmgr-admission",
        ]
        .map(String::from)
        .into()
    );
    let pod = &find(&objects, "Deployment", ADMISSION_NAME)["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args[..2], ["--log-format=json", "admission"]);
    assert!(args.contains(&"--webhook-config-mode=url".to_string()));
    assert!(args.contains(&"--webhook-config-url=gardener-extension-cri-resmgr-admission.garden".to_string()));
    assert!(args.contains(&format!("--webhook-cert-secret={ADMISSION_CERT_SECRET}")));
    assert!(args.contains(&"--webhook-cert-secret-namespace=garden".to_string()));
    assert!(args.contains(&"--metrics-bind-address=:8080".to_string()), "{args:?}");
    let annotations = &find(&objects, "Deployment", ADMISSION_NAME)["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        (
            &annotations["prometheus.io/scrape"],
            &annotations["prometheus.io/port"],
            &annotations["prometheus.io/scheme"]
        ),
        (&json!("true"), &json!("8080"), &json!("http")),
        "the garden Prometheus scrapes annotated pods, over plain HTTP here"
    );
    assert_eq!(pod["volumes"][0], json!({"name": "webhook-certs", "emptyDir": {"medium": "Memory"}}));
    assert!(container.get("env").is_none(), "in-cluster: no KUBECONFIG");
    assert!(pod.get("automountServiceAccountToken").is_none(), "in-cluster: the ServiceAccount token is used");
    assert_eq!(grants(&find(&objects, "ClusterRole", ADMISSION_NAME)["rules"]), expand(ADMISSION_RBAC));
    let release_service_account = json!([{"kind": "ServiceAccount", "name": ADMISSION_NAME, "namespace": "garden"}]);
    assert_eq!(find(&objects, "ClusterRoleBinding", ADMISSION_NAME)["subjects"], release_service_account);
    let role = find(&objects, "Role", ADMISSION_NAME);
    assert_eq!(role["metadata"]["namespace"], "garden", "the Secret's namespace defaults to the release namespace");
    assert_eq!(grants(&role["rules"]), expand(ADMISSION_CERT_SECRET_RBAC));
    assert_eq!(find(&objects, "RoleBinding", ADMISSION_NAME)["subjects"], release_service_account);

    let service_mode = json!({"webhook": {"configMode": "service", "servicePort": 8443}});
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &service_mode, None);
    let args =
        strings(&find(&objects, "Deployment", ADMISSION_NAME)["spec"]["template"]["spec"]["containers"][0]["args"]);
    for arg in [
        "--webhook-config-mode=service",
        "--webhook-config-namespace=garden",
        "--webhook-config-service-name=gardener-extension-cri-resmgr-admission",
        "--webhook-config-service-port=8443",
    ] {
        assert!(args.contains(&arg.to_string()), "{arg} in {args:?}");
    }
    assert_eq!(find(&objects, "Service", ADMISSION_NAME)["spec"]["ports"][0]["port"], 8443);

    // gardener-operator style: the runtime part without RBAC, and the RBAC alone for the virtual garden.
    // The Secret lives in the cluster the server talks to (the virtual garden): its RBAC is part of the application.
    let tls = json!({"secretNamespace": "garden-certs"});
    let runtime = render(
        &repo_root().join(ADMISSION_CHART),
        "garden",
        &json!({"application": {"enabled": false}, "webhook": {"tls": tls}}),
        None,
    );
    assert!(runtime.iter().all(|o| {
        !["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"].contains(&o["kind"].as_str().unwrap_or_default())
    }));
    let args =
        strings(&find(&runtime, "Deployment", ADMISSION_NAME)["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--webhook-cert-secret-namespace=garden-certs".to_string()), "{args:?}");
    let subjects =
        json!([{"kind": "ServiceAccount", "name": "extension-admission-cri-resmgr", "namespace": "kube-system"}]);
    let values = json!({"runtime": {"enabled": false}, "application": {"subjects": subjects}, "webhook": {"tls": tls}});
    let application = render(&repo_root().join(ADMISSION_CHART), "garden", &values, None);
    assert_eq!(
        kinds_and_names(&application),
        [
            "ClusterRole/gardener-extension-cri-resmgr-admission",
            "ClusterRoleBinding/gardener-extension-cri-resmgr-admission",
            "Role/gardener-extension-cri-resmgr-admission",
            "RoleBinding/gardener-extension-cri-resmgr-admission",
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(find(&application, "ClusterRoleBinding", ADMISSION_NAME)["subjects"], subjects);
    assert_eq!(find(&application, "RoleBinding", ADMISSION_NAME)["subjects"], subjects);
    assert_eq!(find(&application, "Role", ADMISSION_NAME)["metadata"]["namespace"], "garden-certs");

    // A given Secret is mounted instead: no managed Secret, no Secret RBAC.
    let existing = json!({"webhook": {"tls": {"existingSecret": "admission-tls"}}});
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &existing, None);
    assert!(
        objects.iter().all(|o| !["Secret", "Role", "RoleBinding"].contains(&o["kind"].as_str().unwrap_or_default()))
    );
    let pod = &find(&objects, "Deployment", ADMISSION_NAME)["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], "admission-tls");
    assert!(!strings(&pod["containers"][0]["args"]).iter().any(|a| a.starts_with("--webhook-cert-secret")));
}

#[tokio::test]
async fn admission_chart_is_accepted_by_the_apiserver_and_its_server_may_register_its_webhooks() {
    let env = TestEnv::new("charts_admission").await;
    let capabilities = capabilities_of(&env.client).await;
    // The test bed plays both the runtime cluster and the virtual garden; the garden kubeconfig acts as the chart's
    // ServiceAccount.
    let kubeconfig = impersonating_kubeconfig(&env, ADMISSION_NAME);
    let secret = Secret {
        metadata: ObjectMeta { name: Some("virtual-garden-access".to_string()), ..Default::default() },
        string_data: Some([("kubeconfig".to_string(), kubeconfig.clone())].into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("garden kubeconfig Secret");
    let values = json!({"gardenKubeconfig": "virtual-garden-access"});
    let objects = render(&repo_root().join(ADMISSION_CHART), &env.namespace, &values, Some(&capabilities));

    let deployment = find(&objects, "Deployment", ADMISSION_NAME);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let url_host = format!("{ADMISSION_NAME}.{}", env.namespace);
    assert!(strings(&container["args"]).contains(&format!("--webhook-config-url={url_host}")));
    assert_eq!(pod["automountServiceAccountToken"], false, "the garden kubeconfig replaces the token");
    assert_eq!(find(&objects, "Service", ADMISSION_NAME)["spec"]["ports"][0]["targetPort"], 10250);

    let stored = apply_all(&env.client, &objects, Placement::default()).await;
    let rule = find(&stored, "PrometheusRule", ADMISSION_NAME);
    assert_eq!(rule["metadata"]["namespace"], json!(env.namespace), "the garden alerts, accepted by their CRD");
    let monitor = find(&stored, "ServiceMonitor", &format!("garden-{ADMISSION_NAME}"));
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics", "the garden scrape config, accepted by its CRD");

    // The container, run locally: KUBECONFIG from the chart points into the mounted garden kubeconfig Secret. The
    // admission tests share the webhook configurations' names, so it serves without registering; the registration
    // itself is checked as a dry run below.
    let local = LocalContainer::prepare(&env.client, &env.namespace, deployment, "admission-pod").await;
    let kubeconfig_env = local.env.iter().find(|(k, _)| k == "KUBECONFIG").map(|(_, v)| v.clone()).expect("KUBECONFIG");
    assert!(Path::new(&kubeconfig_env).starts_with(local.root.path()), "KUBECONFIG names the mounted Secret");
    let port = free_port();
    let args = local_args(&local, port, &["--no-webhook-registration".to_string()]);
    let metrics = metrics_address(&args);
    let mut binary = RunningBinary::start(&local, args, &[]);
    // The binary keeps its certificates in a Secret of the cluster it talks to (the garden), in the release
    // namespace, created as the identity of the garden kubeconfig; the serving certificate is for the URL's host.
    let tls = created_cert_secret(&env.client, &env.namespace, ADMISSION_CERT_SECRET).await;
    assert_webhook_tls(&tls, std::slice::from_ref(&url_host));
    assert_probes_pass(container, port, &url_host, &secret_data(&tls, "ca.crt")).await;
    binary.assert_running();
    let text = eventually("the admission server's /metrics", || scrape(metrics)).await;
    let expiry = sample(&text, "gardener_extension_cri_resmgr_webhook_certificate_expiry_timestamp_seconds");
    assert!(expiry.is_some_and(|at| at > 0.0), "the served certificate's expiry: {text}");

    // What the server does at start-up and on every CA change, as the identity of the garden kubeconfig.
    let garden = client_from(&kubeconfig).await;
    assert_may_renew_only(&garden, &env.client, &env.namespace, ADMISSION_CERT_SECRET).await;
    let get_other = Api::<Secret>::namespaced(garden.clone(), &env.namespace).get("virtual-garden-access").await;
    assert!(is_forbidden(&get_other.map(|_| ())), "no other Secret may be read");
    let base = format!("https://{url_host}");
    let mode = ClientConfigMode::Url { base };
    let ca = secret_data(&tls, "ca.crt");
    let validating: ValidatingWebhookConfiguration = registration::shoot_validating_configuration(&mode, &ca);
    let mutating: MutatingWebhookConfiguration = registration::shoot_mutating_configuration(&mode, &ca);
    dry_run_apply(&garden, &validating).await.expect("may register the validating webhook");
    dry_run_apply(&garden, &mutating).await.expect("may register the mutating webhook");
    let seed_side = registration::osc_mutating_configuration(&mode, &ca);
    assert!(is_forbidden(&dry_run_apply(&garden, &seed_side).await), "only its own webhook configurations");
    binary.assert_never_forbidden();
    binary.stop().await;
}

// ---------------------------------------------------------------------------------------------------------------
// ControllerRegistration / ControllerDeployment
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn controller_registration_example_is_current_and_carries_the_seed_chart() {
    run_python("generate-controller-registration.py", &["--check".as_ref()]);
    let text = std::fs::read_to_string(repo_root().join(CONTROLLER_REGISTRATION)).expect("read the example");
    let documents: Vec<Value> = yaml::from_multi_str(&text).expect("the example is YAML");
    assert_eq!(documents.len(), 2);
    let deployment = documents.iter().find(|d| d["kind"] == "ControllerDeployment").expect("ControllerDeployment");
    assert_eq!(deployment["apiVersion"], "core.gardener.cloud/v1");
    let registration =
        documents.iter().find(|d| d["kind"] == "ControllerRegistration").expect("ControllerRegistration");
    assert_eq!(registration["apiVersion"], "core.gardener.cloud/v1beta1");
    assert_eq!(registration["spec"]["deployment"]["deploymentRefs"], json!([{"name": deployment["metadata"]["name"]}]));
    let resources = registration["spec"]["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 1);
    let resource = &resources[0];
    assert_eq!((resource["kind"].as_str(), resource["type"].as_str()), (Some("Extension"), Some(EXTENSION_TYPE)));
    assert!(resource.get("autoEnable").is_none() && resource.get("globallyEnabled").is_none(), "shoots opt in");
    assert_eq!(resource["clusterCompatibility"], json!([EXTENSION_CLASS_SHOOT]), "the classes the controller serves");
    assert_eq!(
        resource["lifecycle"],
        json!({"reconcile": "AfterKubeAPIServer", "delete": "BeforeKubeAPIServer", "migrate": "BeforeKubeAPIServer"})
    );
    assert!(resource["reconcileTimeout"].is_string());

    // The rawChart is a chart archive Helm renders to the extension's Deployment.
    let archive = base64::engine::general_purpose::STANDARD
        .decode(deployment["helm"]["rawChart"].as_str().expect("rawChart"))
        .expect("rawChart is base64");
    assert_eq!(archive[..2], [0x1f, 0x8b], "rawChart is gzip");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chart.tgz");
    std::fs::write(&path, archive).expect("write the archive");
    let objects = render(&path, "extension-cri-resmgr-abcde", &json!({}), None);
    assert_eq!(find(&objects, "Deployment", SEED_NAME)["metadata"]["namespace"], "extension-cri-resmgr-abcde");
}

// ---------------------------------------------------------------------------------------------------------------
// Seed monitoring: alerts and dashboard
// ---------------------------------------------------------------------------------------------------------------

/// Runs Prometheus' `promtool` (Debian's `prometheus` package, which `make test` installs) in `dir`; fails the test
/// with promtool's output unless it succeeds.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("promtool cannot run ({e}); `bash hacks/install-promtool.sh` installs it"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// The alert names of a rendered PrometheusRule, after checking that its rules are valid (`promtool check rules`)
/// and that its alerts fire as promtool's unit tests in `test/fixtures/monitoring/<tests>` expect — against the
/// rules as the chart renders them, so that the documented thresholds and texts are what the chart ships.
fn alerts_passing_promtool(rule: &Value, tests: &str) -> BTreeSet<String> {
    let groups = rule["spec"]["groups"].as_array().expect("rule groups");
    let rules: Vec<&Value> = groups.iter().flat_map(|g| g["rules"].as_array().expect("rules")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    // JSON is YAML: promtool reads the rule groups as the Prometheus operator hands them to Prometheus.
    let file = json!({"groups": groups});
    std::fs::write(dir.path().join("rules.yaml"), serde_json::to_vec(&file).expect("rules")).expect("write rules");
    let fixture = repo_root().join("test/fixtures/monitoring").join(tests);
    std::fs::copy(fixture, dir.path().join(tests)).expect("copy the alert tests");
    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(checked.contains(&format!("SUCCESS: {} rules found", rules.len())), "{checked}");
    promtool(dir.path(), &["test", "rules", tests]);
    rules.iter().filter_map(|r| r["alert"].as_str()).map(str::to_string).collect()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The alerts are valid rules and fire as docs/operations.md says (promtool's unit tests in
/// test/fixtures/monitoring/alerts.test.yaml, against the rules as the chart renders them).
#[test]
fn seed_chart_alerts_pass_promtool_and_fire_as_documented() {
    let objects = render(&repo_root().join(SEED_CHART), "extension-cri-resmgr-x1y2z", &json!({}), None);
    let rule = find(&objects, "PrometheusRule", SEED_NAME);
    assert_eq!(rule["metadata"]["labels"]["prometheus"], "seed", "picked up by the seed Prometheus");
    assert_eq!(
        alerts_passing_promtool(rule, "alerts.test.yaml"),
        names(&["CriResmgrExtensionReconcileFailing", "CriResmgrWebhookCertificateExpiring", "CriResmgrWebhookErrors"])
    );

    let without = render(&repo_root().join(SEED_CHART), "x", &json!({"metrics": {"alerts": {"enabled": false}}}), None);
    assert!(without.iter().all(|o| o["kind"] != "PrometheusRule"), "alerts can be turned off");
    let no_metrics = render(&repo_root().join(SEED_CHART), "x", &json!({"metrics": {"port": 0}}), None);
    assert!(no_metrics.iter().all(|o| o["kind"] != "PrometheusRule" && o["metadata"]["name"] != SEED_DASHBOARD));
    let args =
        strings(&find(&no_metrics, "Deployment", SEED_NAME)["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(args.contains(&"--metrics-bind-address=0".to_string()), "{args:?}");
}

/// The admission chart's alerts for the Garden Prometheus (in the release namespace, labelled `prometheus: garden`)
/// are valid rules and fire as docs/operations.md says (test/fixtures/monitoring/garden-alerts.test.yaml); they
/// belong to the runtime part and can be turned off.
#[test]
fn admission_chart_garden_alerts_pass_promtool_and_fire_as_documented() {
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &json!({}), None);
    let rule = find(&objects, "PrometheusRule", ADMISSION_NAME);
    assert_eq!(rule["metadata"]["namespace"], "garden");
    assert_eq!(rule["metadata"]["labels"]["prometheus"], "garden", "picked up by the Garden Prometheus");
    assert_eq!(
        alerts_passing_promtool(rule, "garden-alerts.test.yaml"),
        names(&[
            "CriResmgrAdmissionCertificateExpiring",
            "CriResmgrAdmissionDenialBurst",
            "CriResmgrAdmissionWebhookErrors"
        ])
    );
    let no_burst = json!({"metrics": {"alerts": {"denialBurstPerMinute": 0}}});
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &no_burst, None);
    let alerts = find(&objects, "PrometheusRule", ADMISSION_NAME)["spec"]["groups"][0]["rules"].clone();
    assert!(alerts.as_array().expect("rules").iter().all(|r| r["alert"] != "CriResmgrAdmissionDenialBurst"));
    assert_admission_chart_leaves_out(
        "PrometheusRule",
        [
            json!({"metrics": {"alerts": {"enabled": false}}}),
            json!({"metrics": {"port": 0}}),
            json!({"runtime": {"enabled": false}}),
        ],
    );
}

/// The Garden Prometheus scrapes the admission server through a ServiceMonitor labelled `prometheus: garden` (named
/// and filtered as Gardener's garden components are): it selects the chart's Service, whose `metrics` port it
/// scrapes, and keeps the extension's series only; it belongs to the runtime part and can be turned off.
#[test]
fn admission_chart_service_monitor_lets_the_garden_prometheus_scrape_the_metrics_port() {
    use gardener_extension_cri_resmgr::runtime::metrics::METRIC_PREFIX;
    let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &json!({}), None);
    let monitor = find(&objects, "ServiceMonitor", &format!("garden-{ADMISSION_NAME}"));
    assert_eq!(monitor["metadata"]["namespace"], "garden");
    assert_eq!(monitor["metadata"]["labels"]["prometheus"], "garden", "selected by the Garden Prometheus");
    let service = find(&objects, "Service", ADMISSION_NAME);
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "the ServiceMonitor selects the Service by {key}");
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    let metrics_port =
        service["spec"]["ports"].as_array().expect("ports").iter().find(|p| p["name"] == endpoint["port"]);
    assert_eq!(metrics_port.expect("the endpoint's port is the Service's")["targetPort"], "metrics");
    let keep = &endpoint["metricRelabelings"][0];
    assert_eq!(keep["action"], "keep");
    assert_eq!(keep["regex"], format!("^({METRIC_PREFIX}_.*)$"), "keeps the extension's series");
    assert_admission_chart_leaves_out(
        "ServiceMonitor",
        [
            json!({"metrics": {"serviceMonitor": {"enabled": false}}}),
            json!({"metrics": {"port": 0}}),
            json!({"runtime": {"enabled": false}}),
        ],
    );
}

/// The admission chart rendered with each of `values` has no object of `kind`.
fn assert_admission_chart_leaves_out<const N: usize>(kind: &str, values: [Value; N]) {
    for values in values {
        let objects = render(&repo_root().join(ADMISSION_CHART), "garden", &values, None);
        assert!(objects.iter().all(|o| o["kind"] != kind), "no {kind} with {values}");
    }
}

/// The dashboard is a Plutono dashboard on the seed Prometheus whose every query is valid PromQL over the metrics
/// the extension exports (each is checked by promtool as a recording rule).
#[test]
fn seed_dashboard_queries_are_valid_promql_over_the_exported_metrics() {
    let objects = render(&repo_root().join(SEED_CHART), "extension-cri-resmgr-x1y2z", &json!({}), None);
    let config_map = find(&objects, "ConfigMap", SEED_DASHBOARD);
    let text = config_map["data"]["gardener-extension-cri-resmgr.json"].as_str().expect("the dashboard JSON");
    let dashboard: Value = serde_json::from_str(text).expect("the dashboard is JSON");
    assert_eq!(dashboard["title"], "Extension cri-resmgr");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queries = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"], "prometheus-seed", "{}", panel["title"]);
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for metric in ["reconciles_total", "reconcile_duration_seconds_bucket", "shoot_health", "shoot_last_operation"] {
        assert!(queries.iter().any(|q| q.contains(&format!("gardener_extension_cri_resmgr_{metric}"))), "{metric}");
    }
    assert!(queries.iter().any(|q| q.contains("webhook_request_duration_seconds_bucket")), "webhook latency");
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, expr)| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(dir.path().join("dashboard.yaml"), serde_json::to_vec(&groups).expect("rules")).expect("write");
    let checked = promtool(dir.path(), &["check", "rules", "dashboard.yaml"]);
    assert!(checked.contains(&format!("SUCCESS: {} rules found", queries.len())), "{checked}");
}
