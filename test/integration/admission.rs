//! Shoot admission through the real apiserver: the `admission` server registers its webhook configurations in the
//! local kube-apiserver, which then calls it over TLS for every labelled Shoot.

use std::net::SocketAddr;
use std::sync::OnceLock;

use gardener_extension_cri_resmgr::apis::core::Shoot;
use gardener_extension_cri_resmgr::commands::admission::{self, AdmissionOptions};
use gardener_extension_cri_resmgr::constants::SHOOT_EXTENSION_LABEL;
use gardener_extension_cri_resmgr::runtime::registration::ADMISSION_CONFIG_NAME;
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions;

use crate::support::{TestEnv, eventually, repo_root, sample, scrape, scratch_dir, start_shared_webhook_server};

/// The port of the shared admission server's `/metrics`.
fn admission_metrics_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| cri_resmgr_testbed::control_plane::free_port().expect("free port"))
}

/// One admission server per test binary, registered in the shared control plane; it lives until the process exits.
pub(crate) fn ensure_admission_server() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        start_shared_webhook_server::<ValidatingWebhookConfiguration, _, _, _>(
            "admission server",
            ADMISSION_CONFIG_NAME,
            |port, client| {
                let options = AdmissionOptions {
                    metrics: MetricsOptions::at(SocketAddr::from(([127, 0, 0, 1], admission_metrics_port()))),
                    webhook: WebhookOptions {
                        webhook_bind_address: SocketAddr::from(([127, 0, 0, 1], port)),
                        webhook_cert_dir: scratch_dir("cri-resmgr-admission-certs"),
                        generate_certs_for: vec!["127.0.0.1".to_string(), "localhost".to_string()],
                        webhook_config_mode: WebhookConfigMode::Url,
                        webhook_config_url: Some(format!("127.0.0.1:{port}")),
                        ..WebhookOptions::default()
                    },
                };
                admission::run(options, client, std::future::pending())
            },
        );
    });
}

/// The README's example Shoot (the original extension's providerConfig form), in the given namespace.
pub(crate) fn example_shoot(namespace: &str, name: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/shoot.yaml")).expect("examples/shoot.yaml");
    let mut shoot: Value = gardener_extension_cri_resmgr::yaml::from_str(&text).expect("decode example Shoot");
    shoot["metadata"]["namespace"] = json!(namespace);
    shoot["metadata"]["name"] = json!(name);
    shoot
}

fn kubectl_apply(env: &TestEnv, object: &Value) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(object).expect("json").as_bytes())
        .expect("write to kubectl");
    child.wait_with_output().expect("kubectl output")
}

pub(crate) async fn create(env: &TestEnv, shoot: &Value) -> Result<Shoot, kube::Error> {
    let api: Api<Shoot> = Api::namespaced(env.client.clone(), &env.namespace);
    let shoot: Shoot = serde_json::from_value(shoot.clone()).expect("a Shoot");
    api.create(&PostParams::default(), &shoot).await
}

fn denial(result: Result<Shoot, kube::Error>) -> String {
    match result {
        Ok(shoot) => panic!("the apiserver accepted an invalid Shoot: {:?}", shoot.metadata.name),
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains("validator.cri-resmgr-admission.extensions.gardener.cloud"),
                "denied by someone else: {}",
                status.message
            );
            status.message
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn kubectl_apply_of_the_readme_shoot_succeeds_and_is_defaulted() {
    ensure_admission_server();
    let env = TestEnv::new("admission_valid").await;
    let output = kubectl_apply(&env, &example_shoot(&env.namespace, "readme"));
    assert!(output.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&output.stderr));
    let api: Api<Shoot> = Api::namespaced(env.client.clone(), &env.namespace);
    let stored = api.get("readme").await.expect("stored Shoot");
    let config = stored.spec.extensions[0].provider_config.as_ref().expect("providerConfig");
    assert_eq!(config["apiVersion"], "cri-resmgr.extensions.gardener.cloud/v1alpha1", "defaulted by the webhook");
    assert_eq!(config["kind"], "CriResmgrConfig");
    assert!(config["configs"]["default"].as_str().is_some_and(|c| c.contains("topology-aware")), "configs kept");

    // An update that changes nothing of ours is admitted, too.
    let again = kubectl_apply(&env, &example_shoot(&env.namespace, "readme"));
    assert!(again.status.success(), "second kubectl apply: {}", String::from_utf8_lossy(&again.stderr));
}

#[tokio::test]
async fn valid_versioned_shoot_with_worker_pool_selection_is_accepted() {
    ensure_admission_server();
    let env = TestEnv::new("admission_versioned").await;
    let mut shoot = example_shoot(&env.namespace, "versioned");
    shoot["spec"]["extensions"][0]["providerConfig"] = json!({
        "apiVersion": "cri-resmgr.extensions.gardener.cloud/v1alpha1",
        "kind": "CriResmgrConfig",
        "configs": {
            "default": "policy:\n  Active: balloons\n",
            "group.cpu": "policy:\n  Active: static-pools\n",
            "node.worker-1.example.com": "policy:\n  Active: none\n",
            "force": "policy:\n  Active: topology-aware\n",
            "EXTRA_OPTIONS": "--metrics-interval=10s --log-source"
        },
        "workerPools": ["cpu-worker"]
    });
    create(&env, &shoot).await.expect("a valid Shoot is admitted");
}

#[tokio::test]
async fn invalid_shoots_are_denied_with_the_field_path() {
    ensure_admission_server();
    let env = TestEnv::new("admission_invalid").await;
    let pc = "spec.extensions[0].providerConfig";
    let config = |configs: Value| json!({"configs": configs});
    let cases: Vec<(&str, Value, String)> = vec![
        ("unknown-key", config(json!({"defaults": "policy: {}\n"})), format!("{pc}.configs[\"defaults\"]")),
        ("bad-node-name", config(json!({"node.Worker_1": "policy: {}\n"})), format!("{pc}.configs[\"node.Worker_1\"]")),
        ("empty-group", config(json!({"group.": "policy: {}\n"})), format!("{pc}.configs[\"group.\"]")),
        (
            "unknown-section",
            config(json!({"default": "policies:\n  Active: none\n"})),
            format!("{pc}.configs[\"default\"]"),
        ),
        ("null-policy", config(json!({"default": "policy:\n  Active: null\n"})), "Active".to_string()),
        ("unknown-policy", config(json!({"default": "policy:\n  Active: fastest\n"})), "\"fastest\"".to_string()),
        ("not-a-mapping", config(json!({"default": "- policy\n"})), format!("{pc}.configs[\"default\"]")),
        ("invalid-yaml", config(json!({"fallback": "policy: [\n"})), format!("{pc}.configs[\"fallback\"]")),
        ("duplicate-key", config(json!({"default": "policy: {}\npolicy: {}\n"})), "duplicate key".to_string()),
        (
            "oversized",
            config(json!({"default": format!("policy:\n  Active: none\n#{}\n", "x".repeat(200 * 1024))})),
            "Too long".to_string(),
        ),
        (
            "extra-newline",
            config(json!({"EXTRA_OPTIONS": "--a\nExecStartPre=/bin/evil"})),
            format!("{pc}.configs[\"EXTRA_OPTIONS\"]"),
        ),
        ("extra-dollar", config(json!({"EXTRA_OPTIONS": "--a=$(reboot)"})), format!("{pc}.configs[\"EXTRA_OPTIONS\"]")),
        (
            "extra-semicolon",
            config(json!({"EXTRA_OPTIONS": "--a; reboot"})),
            format!("{pc}.configs[\"EXTRA_OPTIONS\"]"),
        ),
        ("extra-quote", config(json!({"EXTRA_OPTIONS": "--a=\"b\""})), format!("{pc}.configs[\"EXTRA_OPTIONS\"]")),
        ("extra-owned-flag", config(json!({"EXTRA_OPTIONS": "--force-config=/tmp/x"})), "--force-config".to_string()),
        ("unknown-field", json!({"configs": {}, "nodeSelector": {}}), "\"nodeSelector\"".to_string()),
        ("wrong-api-version", json!({"apiVersion": "v1", "kind": "CriResmgrConfig"}), format!("{pc}.apiVersion")),
        ("unknown-pool", json!({"workerPools": ["gpu-worker"]}), format!("{pc}.workerPools[0]")),
        ("configs-not-a-map", json!({"configs": ["default"]}), format!("{pc}.configs")),
    ];
    assert!(cases.len() >= 15);
    for (name, provider_config, expected) in cases {
        let mut shoot = example_shoot(&env.namespace, name);
        shoot["spec"]["extensions"][0]["providerConfig"] = provider_config;
        let message = denial(create(&env, &shoot).await);
        assert!(message.contains(&expected), "case {name}: {expected:?} not in {message:?}");
    }

    // A selected pool that does not run containerd is named by its own path.
    let mut shoot = example_shoot(&env.namespace, "docker-pool");
    shoot["spec"]["provider"]["workers"][0]["cri"]["name"] = json!("docker");
    shoot["spec"]["extensions"][0]["providerConfig"]["workerPools"] = json!(["cpu-worker"]);
    let message = denial(create(&env, &shoot).await);
    assert!(message.contains("spec.provider.workers[0].cri.name"), "{message}");
}

#[tokio::test]
async fn shoots_without_the_extension_label_are_not_sent_to_the_webhook() {
    ensure_admission_server();
    let env = TestEnv::new("admission_unlabelled").await;
    let mut shoot = example_shoot(&env.namespace, "unlabelled");
    shoot["metadata"]["labels"].as_object_mut().expect("labels").remove(SHOOT_EXTENSION_LABEL);
    shoot["spec"]["extensions"][0]["providerConfig"] = json!({"configs": {"bogus": "x"}});
    let stored = create(&env, &shoot).await.expect("not judged without the label");
    let config = stored.spec.extensions[0].provider_config.as_ref().expect("providerConfig");
    assert!(config.get("apiVersion").is_none(), "not defaulted either");
}

#[tokio::test]
async fn a_disabled_extension_entry_is_not_judged() {
    ensure_admission_server();
    let env = TestEnv::new("admission_disabled").await;
    let mut shoot = example_shoot(&env.namespace, "disabled");
    shoot["spec"]["extensions"][0]["disabled"] = json!(true);
    shoot["spec"]["extensions"][0]["providerConfig"] = json!({"configs": {"bogus": "x"}});
    create(&env, &shoot).await.expect("a disabled entry is not validated");
}

#[tokio::test]
async fn an_unknown_key_inside_a_section_is_denied_with_its_path_and_a_suggestion() {
    ensure_admission_server();
    let env = TestEnv::new("admission_schema").await;
    let mut shoot = example_shoot(&env.namespace, "typo");
    shoot["spec"]["extensions"][0]["providerConfig"] = json!({ "configs": { "default": "policy:\n  Activ: none\n" } });
    let message = denial(create(&env, &shoot).await);
    assert!(
        message.contains(
            r#"spec.extensions[0].providerConfig.configs["default"].policy.Activ: Unsupported value: "Activ": did you mean "Active"?"#
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_shoot_stored_before_the_webhooks_stays_writable_until_its_provider_config_changes() {
    use kube::api::{Patch, PatchParams};
    ensure_admission_server();
    let env = TestEnv::new("admission_ratcheting").await;
    let api: Api<Shoot> = Api::namespaced(env.client.clone(), &env.namespace);
    let name = "before-webhooks";
    // The original extension had no admission: a Shoot in the original form with the policy `null` (invalid since
    // cri-resmgr 0.8) was stored unjudged. Without the label the webhooks select on, it is stored so here, too.
    let mut shoot = example_shoot(&env.namespace, name);
    shoot["metadata"]["labels"].as_object_mut().expect("labels").remove(SHOOT_EXTENSION_LABEL);
    shoot["spec"]["extensions"][0]["providerConfig"] = json!({"configs": {"default": "policy:\n  Active: null\n"}});
    let stored = create(&env, &shoot).await.expect("stored without admission");
    assert!(stored.spec.extensions[0].provider_config.as_ref().is_some_and(|c| c.get("apiVersion").is_none()));

    // Gardener's own writes, now through the webhooks: the label and the operation annotation, then a Kubernetes
    // version bump. The defaulting webhook adds apiVersion/kind; the user's configuration did not change.
    let annotate = json!({"metadata": {
        "labels": {SHOOT_EXTENSION_LABEL: "true"},
        "annotations": {"gardener.cloud/operation": "reconcile"},
    }});
    let annotated = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotating a Shoot whose providerConfig did not change is allowed");
    let config = annotated.spec.extensions[0].provider_config.as_ref().expect("providerConfig");
    assert_eq!(config["apiVersion"], "cri-resmgr.extensions.gardener.cloud/v1alpha1", "defaulted on UPDATE");
    assert_eq!(config["kind"], "CriResmgrConfig");
    let bump = json!({"spec": {"kubernetes": {"version": "1.32.1"}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("a Kubernetes version bump of such a Shoot is allowed");

    // A real change of the providerConfig is judged in full, and the old mistake with it.
    let change = json!({"spec": {"extensions": [{
        "type": "cri-resmgr-extension",
        "providerConfig": {"configs": {"default": "policy:\n  Active: null\n", "force": "policy:\n  Active: none\n"}},
    }]}});
    let message = denial(api.patch(name, &PatchParams::default(), &Patch::Merge(&change)).await);
    assert!(message.contains("spec.extensions[0].providerConfig.configs[\"default\"].policy.Active"), "{message}");
}

/// cri-resmgr ships for amd64 only: naming an arm64 pool in `workerPools` is denied with the selection's path, the
/// pool's architecture field and what is allowed; the same Shoot without the explicit selection is admitted (the
/// arm64 pool is simply not selected).
#[tokio::test]
async fn explicitly_selecting_a_pool_without_a_cri_resmgr_build_is_denied() {
    ensure_admission_server();
    let env = TestEnv::new("admission_arch").await;
    let mut shoot = example_shoot(&env.namespace, "arm-selected");
    let mut arm = shoot["spec"]["provider"]["workers"][0].clone();
    arm["name"] = json!("arm-worker");
    arm["machine"]["architecture"] = json!("arm64");
    shoot["spec"]["provider"]["workers"].as_array_mut().expect("workers").push(arm);
    shoot["spec"]["extensions"][0]["providerConfig"]["workerPools"] = json!(["cpu-worker", "arm-worker"]);
    let message = denial(create(&env, &shoot).await);
    for expected in [
        "spec.extensions[0].providerConfig.workerPools[1]: Unsupported value: \"arm-worker\"",
        "runs on \"arm64\" (spec.provider.workers[1].machine.architecture)",
        "cri-resmgr is only available for \"amd64\"",
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message:?}");
    }

    shoot["metadata"]["name"] = json!("arm-by-default");
    shoot["spec"]["extensions"][0]["providerConfig"].as_object_mut().expect("providerConfig").remove("workerPools");
    create(&env, &shoot).await.expect("without an explicit selection the arm64 pool is just not selected");
}

/// The admission server's `/metrics` counts what the apiserver's calls got, by webhook, answer and denial class, and
/// tells when the serving certificate expires. Other tests share the server, so only growth is asserted.
#[tokio::test]
async fn metrics_count_the_apiservers_calls_by_webhook_answer_and_denial_class() {
    ensure_admission_server();
    let env = TestEnv::new("admission_metrics").await;
    let address = SocketAddr::from(([127, 0, 0, 1], admission_metrics_port()));
    let before = eventually("the admission metrics", || scrape(address)).await;
    let metric = |series: &str| format!("gardener_extension_cri_resmgr_{series}");
    let value = |text: &str, series: &str| sample(text, &metric(series)).unwrap_or_default();
    let series = [
        "webhook_requests_total{webhook=\"validate-shoot\",result=\"allowed\"}",
        "webhook_requests_total{webhook=\"validate-shoot\",result=\"denied\"}",
        "webhook_requests_total{webhook=\"default-shoot\",result=\"allowed\"}",
        "webhook_denials_total{webhook=\"validate-shoot\",reason=\"invalid\"}",
        "webhook_request_duration_seconds_count{webhook=\"validate-shoot\"}",
    ];

    create(&env, &example_shoot(&env.namespace, "valid")).await.expect("a valid Shoot is admitted");
    let mut invalid = example_shoot(&env.namespace, "invalid");
    invalid["spec"]["extensions"][0]["providerConfig"] = json!({"configs": {"defaults": "policy: {}\n"}});
    denial(create(&env, &invalid).await);

    let after = scrape(address).await.expect("the admission metrics");
    for series in series {
        assert!(value(&after, series) > value(&before, series), "{series} grew: {before} → {after}");
    }
    let expiry = value(&after, "webhook_certificate_expiry_timestamp_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(expiry > now + 86_400.0, "the served certificate's expiry: {expiry}");
    assert!(!after.contains("reconciles_total"), "the admission server reconciles nothing");
}
