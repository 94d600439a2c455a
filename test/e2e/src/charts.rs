//! The extension's charts, rendered by real Helm (`hacks/render-chart.py`, helm-python-sdk) for the cluster they go
//! to, applied to it, and their Deployment's container run as a local process of the real binary: with the chart's
//! args and env, its mounted Secrets and ConfigMaps written to a local directory, and the chart's ServiceAccount as
//! identity (the control plane's admin, impersonating it). The integration tests' chart tests do the same for one
//! control plane.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::Value;

use crate::error::{StepError, io_err, kube_err};

/// Environment variable naming the extension's binary; default: `target/debug/gardener-extension-cri-resmgr`,
/// which `make e2e` builds first.
pub const ENV_EXTENSION_BINARY: &str = "E2E_EXTENSION_BINARY";
/// The seed chart.
pub const SEED_CHART: &str = "charts/gardener-extension-cri-resmgr";
/// The admission chart.
pub const ADMISSION_CHART: &str = "charts/gardener-extension-cri-resmgr-admission";
const FIELD_MANAGER: &str = "e2e";

/// What can go wrong while rendering, applying or running a chart.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("hacks/render-chart.py {chart}: {detail}")]
    Render { chart: String, detail: String },
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("the rendered objects have no {0}")]
    Missing(String),
    #[error(
        "the extension's binary is not at {0}: run `cargo build --bin gardener-extension-cri-resmgr` (make e2e does) or set $E2E_EXTENSION_BINARY"
    )]
    NoBinary(PathBuf),
}

/// The extension's binary.
pub fn extension_binary() -> Result<PathBuf, ChartError> {
    let path = std::env::var_os(ENV_EXTENSION_BINARY)
        .map(PathBuf::from)
        .unwrap_or_else(|| cri_resmgr_testbed::repo_root().join("target/debug/gardener-extension-cri-resmgr"));
    if path.is_file() { Ok(path) } else { Err(ChartError::NoBinary(path)) }
}

/// Renders `chart` into `namespace` with `values`, for the cluster `client` talks to (its version and served APIs
/// as Helm's `.Capabilities`, as gardenlet renders for its seed).
pub async fn render(
    client: &kube::Client,
    chart: &str,
    namespace: &str,
    values: &Value,
) -> Result<Vec<Value>, ChartError> {
    let render_error = |detail: String| ChartError::Render { chart: chart.to_string(), detail };
    let info = client.apiserver_version().await.map_err(kube_err("apiserver version"))?;
    let api_versions = cri_resmgr_testbed::served_api_versions(client).await.map_err(kube_err("API discovery"))?;
    let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).map_err(io_err("writing values"))?;
    let root = cri_resmgr_testbed::repo_root();
    let output = std::process::Command::new("python3")
        .arg(root.join("hacks/render-chart.py"))
        .arg(root.join(chart))
        .args(["--namespace", namespace, "--values"])
        .arg(&values_file)
        .args(["--kube-version", &info.git_version])
        .args(["--api-versions", &api_versions.join(",")])
        .output()
        .map_err(io_err("running python3 hacks/render-chart.py"))?;
    if !output.status.success() {
        let hint = if output.status.code() == Some(3) { " (run `bash hacks/install-helm.sh`)" } else { "" };
        return Err(render_error(format!("{}{hint}: {}", output.status, String::from_utf8_lossy(&output.stderr))));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    gardener_extension_cri_resmgr::yaml::from_multi_str(&text).map_err(|e| render_error(e.to_string()))
}

/// The object of `kind` named `name`.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Result<&'a Value, ChartError> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .ok_or_else(|| ChartError::Missing(format!("{kind} {name}")))
}

/// Server-side applies every object, as gardenlet (or an operator's Helm) installs a chart.
pub async fn apply_all(client: &kube::Client, objects: &[Value]) -> Result<(), ChartError> {
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let what = format!("applying {kind} {name}");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) =
            kube::discovery::pinned_kind(client, &gvk).await.map_err(kube_err(what.clone()))?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
            .await
            .map_err(kube_err(what))?;
    }
    Ok(())
}

/// A kubeconfig (JSON, which every kubeconfig reader takes) that acts as `namespace/service_account`: the control
/// plane's own, impersonating it, in place of the token a pod would get.
pub fn impersonating_kubeconfig(admin: &Path, namespace: &str, service_account: &str) -> Result<String, ChartError> {
    let mut kubeconfig = kube::config::Kubeconfig::read_from(admin)
        .map_err(|e| io_err(format!("reading {}", admin.display()))(std::io::Error::other(e.to_string())))?;
    for auth in &mut kubeconfig.auth_infos {
        let info = auth.auth_info.get_or_insert_with(Default::default);
        info.impersonate = Some(format!("system:serviceaccount:{namespace}:{service_account}"));
        info.impersonate_groups = Some(vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_string(),
        ]);
    }
    serde_json::to_string(&kubeconfig).map_err(|e| io_err("kubeconfig")(std::io::Error::other(e)).into())
}

/// A rendered Deployment's container prepared to run locally, as kubelet would run it: the Secret and ConfigMap
/// volumes it mounts are written under `root` (each mount at `<root><mountPath>`), its environment is resolved
/// (downward API from the pod's name and namespace), and every arg or env value naming a mounted path names the
/// local copy instead.
pub struct LocalContainer {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub root: PathBuf,
}

impl LocalContainer {
    pub async fn prepare(
        client: &kube::Client,
        namespace: &str,
        deployment: &Value,
        pod_name: &str,
        root: PathBuf,
    ) -> Result<LocalContainer, ChartError> {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let mut mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let path = mount["mountPath"].as_str().unwrap_or_default().to_string();
            let volume = pod["volumes"]
                .as_array()
                .and_then(|volumes| volumes.iter().find(|v| v["name"] == mount["name"]))
                .ok_or_else(|| ChartError::Missing(format!("volume for mount {path}")))?;
            let local = PathBuf::from(format!("{}{path}", root.display()));
            std::fs::create_dir_all(&local).map_err(io_err(format!("creating {}", local.display())))?;
            for (file, content) in volume_files(client, namespace, volume).await? {
                std::fs::write(local.join(&file), content).map_err(io_err(format!("writing {file}")))?;
            }
            mounts.push((path, local.display().to_string()));
        }
        let localize =
            |text: &str| mounts.iter().fold(text.to_string(), |text, (path, local)| text.replace(path, local));
        let args =
            container["args"].as_array().into_iter().flatten().filter_map(|arg| arg.as_str()).map(localize).collect();
        let mut env = Vec::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_string();
            let value = match (var["value"].as_str(), var["valueFrom"]["fieldRef"]["fieldPath"].as_str()) {
                (Some(value), _) => localize(value),
                (None, Some("metadata.name")) => pod_name.to_string(),
                (None, Some("metadata.namespace")) => namespace.to_string(),
                _ => return Err(ChartError::Missing(format!("a supported source for env {name}"))),
            };
            env.push((name, value));
        }
        Ok(LocalContainer { args, env, root })
    }

    /// The args with every `--<flag>=…` in `replace` swapped for the given value (the pod's port and Service are
    /// not the local ones), and `extra` appended.
    pub fn args_with(&self, replace: &[(&str, String)], extra: &[String]) -> Vec<String> {
        let mut args: Vec<String> = self
            .args
            .iter()
            .filter_map(|arg| match replace.iter().find(|(flag, _)| arg.starts_with(&format!("{flag}="))) {
                // An empty value drops the flag.
                Some((_, value)) if value.is_empty() => None,
                Some((flag, value)) => Some(format!("{flag}={value}")),
                None => Some(arg.clone()),
            })
            .collect();
        args.extend(extra.iter().cloned());
        args
    }
}

async fn volume_files(
    client: &kube::Client,
    namespace: &str,
    volume: &Value,
) -> Result<Vec<(String, Vec<u8>)>, ChartError> {
    let (data, items): (Vec<(String, Vec<u8>)>, &Value) = if let Some(name) = volume["secret"]["secretName"].as_str() {
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get(name)
            .await
            .map_err(kube_err(format!("reading the mounted Secret {name}")))?;
        (secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect(), &volume["secret"]["items"])
    } else if let Some(name) = volume["configMap"]["name"].as_str() {
        let config_map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get(name)
            .await
            .map_err(kube_err(format!("reading the mounted ConfigMap {name}")))?;
        let data = config_map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
        (data, &volume["configMap"]["items"])
    } else {
        (Vec::new(), &Value::Null)
    };
    Ok(match items.as_array() {
        None => data,
        Some(items) => items
            .iter()
            .filter_map(|item| {
                let key = item["key"].as_str()?;
                let content = data.iter().find(|(k, _)| k == key)?.1.clone();
                Some((item["path"].as_str()?.to_string(), content))
            })
            .collect(),
    })
}

/// The real binary running a container's command line, its output in `<root>/binary.log`; killed when dropped.
pub struct RunningBinary {
    pub name: String,
    child: tokio::process::Child,
    pub log: PathBuf,
}

impl RunningBinary {
    pub fn start(
        name: &str,
        container: &LocalContainer,
        args: Vec<String>,
        extra_env: &[(&str, String)],
    ) -> Result<RunningBinary, ChartError> {
        let log = container.root.join("binary.log");
        let log_file = std::fs::File::create(&log).map_err(io_err("creating the log"))?;
        let child = tokio::process::Command::new(extension_binary()?)
            .args(args)
            .env_clear()
            .envs(container.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io_err("log"))?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err(format!("starting {name}")))?;
        Ok(RunningBinary { name: name.to_string(), child, log })
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, as a node dying or the OOM killer: no chance to release the lease or finish anything.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, as kubelet stops a container, and waits (bounded) for the exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(std::time::Duration::from_secs(20), self.child.wait()).await.is_err() {
            self.kill().await;
        }
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
