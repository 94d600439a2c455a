//! `render`: an offline preview. From a Shoot (or a Cluster with the Shoot embedded) and optional base configs, print
//! what the extension would put into the shoot, with no cluster — the same computation the controller runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::apis::core::Shoot;
use crate::apis::extensions::{Cluster, OperatingSystemConfig};
use crate::constants::{EXTENSION_TYPE, LABEL_WORKER_POOL, SHOOT_MANAGED_RESOURCE_NAME};
use crate::domain::desired::{self, Desired, DesiredError};
use crate::domain::images::{ImageError, ImageVector};
use crate::domain::node;
use crate::domain::osc::{ShootContext, desired_osc};

/// Options of the `render` command.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderOptions {
    /// A Shoot (`core.gardener.cloud/v1beta1`) or a Cluster (`extensions.gardener.cloud/v1alpha1`) YAML file.
    pub shoot: PathBuf,
    /// Base configs as the operator gives them: a ConfigMap YAML, or a plain mapping of config type to text.
    #[arg(long)]
    pub base_configs: Option<PathBuf>,
    /// A reconcile OperatingSystemConfig to show the node-side changes on (e.g. one read from the seed with kubectl);
    /// without it, a representative one with Gardener's kubelet unit for containerd is used for every pool.
    #[arg(long)]
    pub osc: Option<PathBuf>,
}

/// Why nothing could be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the Shoot does not enable the {EXTENSION_TYPE} extension (spec.extensions[].type)")]
    NotEnabled { path: PathBuf },
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error(transparent)]
    Encode(#[from] crate::yaml::YamlError),
}

fn read(path: &Path) -> Result<String, RenderError> {
    std::fs::read_to_string(path).map_err(|source| RenderError::Read { path: path.to_path_buf(), source })
}

fn decode<T: serde::de::DeserializeOwned>(path: &Path, value: Value) -> Result<T, RenderError> {
    serde_json::from_value(value).map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })
}

/// Reads a Shoot, or the Shoot embedded in a Cluster.
pub fn read_shoot(path: &Path) -> Result<Shoot, RenderError> {
    let value: Value = crate::yaml::from_str(&read(path)?)
        .map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
    match value.get("kind").and_then(Value::as_str) {
        Some("Cluster") => Ok(decode::<Cluster>(path, value)?.spec.shoot),
        Some("Shoot") => decode(path, value),
        other => Err(RenderError::Decode {
            path: path.to_path_buf(),
            message: format!("expected kind Shoot or Cluster, got {}", other.unwrap_or("no kind")),
        }),
    }
}

/// Reads base configs from a ConfigMap or a plain mapping.
pub fn read_base_configs(path: &Path) -> Result<BTreeMap<String, String>, RenderError> {
    let value: Value = crate::yaml::from_str(&read(path)?)
        .map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
    if value.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        let config_map: ConfigMap = decode(path, value)?;
        return crate::domain::configs::base_configs(Some(&config_map))
            .map_err(|errors| RenderError::Desired(DesiredError::Config(errors)));
    }
    decode(path, value)
}

/// Computes the plan for the Shoot in `options.shoot`.
pub fn plan(options: &RenderOptions, images: &ImageVector) -> Result<(Shoot, Desired), RenderError> {
    let shoot = read_shoot(&options.shoot)?;
    let (_, entry) = shoot
        .spec
        .enabled_extension(EXTENSION_TYPE)
        .ok_or_else(|| RenderError::NotEnabled { path: options.shoot.clone() })?;
    let base = match &options.base_configs {
        Some(path) => read_base_configs(path)?,
        None => BTreeMap::new(),
    };
    let desired = desired::compute(&shoot, entry.provider_config.as_ref(), &base, images)?;
    Ok((shoot, desired))
}

/// A reconcile OSC for `pool` whose kubelet unit is the one gardenlet renders for containerd
/// (pkg/component/extensions/operatingsystemconfig/original/components/kubelet), for pools whose real OSC `render`
/// does not have.
fn representative_osc(pool: &str, version: &str) -> Result<OperatingSystemConfig, RenderError> {
    use crate::constants::{CONTAINERD_SOCKET_ENDPOINT, CONTAINERD_UNIT_NAME, KUBELET_CONFIG_PATH, KUBELET_UNIT_NAME};
    let flags = [
        "--bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap".to_string(),
        format!("--config={KUBELET_CONFIG_PATH}"),
        "--kubeconfig=/var/lib/kubelet/kubeconfig-real".to_string(),
        format!("--node-labels=worker.gardener.cloud/kubernetes-version={version}"),
        format!("--node-labels={LABEL_WORKER_POOL}={pool}"),
        format!("--container-runtime-endpoint={CONTAINERD_SOCKET_ENDPOINT}"),
        format!("--runtime-cgroups=/system.slice/{CONTAINERD_UNIT_NAME}"),
        "--v=2 $KUBELET_EXTRA_ARGS".to_string(),
    ];
    let content = format!(
        "[Unit]\nDescription=kubelet daemon\nDocumentation=https://kubernetes.io/docs/admin/kubelet\n\
         After={CONTAINERD_UNIT_NAME}\n[Install]\nWantedBy=multi-user.target\n[Service]\nRestart=always\n\
         RestartSec=5\nEnvironmentFile=/etc/environment\nEnvironmentFile=-/var/lib/kubelet/extra_args\n\
         ExecStart=/opt/bin/kubelet{separator}{}",
        flags.join(node::COMMAND_LINE_SEPARATOR),
        separator = node::COMMAND_LINE_SEPARATOR,
    );
    let value = serde_json::json!({
        "apiVersion": "extensions.gardener.cloud/v1alpha1",
        "kind": "OperatingSystemConfig",
        "metadata": {"name": format!("gardener-node-agent-{pool}-original"), "labels": {LABEL_WORKER_POOL: pool}},
        "spec": {"type": "gardenlinux", "purpose": "reconcile",
                 "units": [{"name": KUBELET_UNIT_NAME, "command": "start", "enable": true, "content": content}]}
    });
    decode(Path::new("representative OperatingSystemConfig"), value)
}

/// Per worker pool: what the OSC gains (files with their text, the unit) and kubelet's resulting ExecStart.
fn render_nodes(
    options: &RenderOptions,
    shoot: &Shoot,
    desired: &Desired,
    images: &ImageVector,
) -> Result<String, RenderError> {
    let given = match &options.osc {
        Some(path) => {
            let value: Value = crate::yaml::from_str(&read(path)?)
                .map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
            Some(decode::<OperatingSystemConfig>(path, value)?)
        }
        None => None,
    };
    let mut out = String::new();
    let context = ShootContext { shoot: shoot.clone(), desired: Some(desired.clone()) };
    for worker in &shoot.spec.provider.workers {
        let version = worker.effective_kubernetes_version(&shoot.spec).unwrap_or(&desired.kubernetes_version);
        let mut osc = match &given {
            Some(osc) => osc.clone(),
            None => representative_osc(&worker.name, version)?,
        };
        // A given OSC is shown as it would be for each pool.
        osc.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_WORKER_POOL.to_string(), worker.name.clone());
        // The same function the webhook and the reconciler use; what it adds is what the page shows.
        let outcome = desired_osc(&osc, &context, images)?;
        if let Some(without_build) = desired.pools_without_build.iter().find(|pool| pool.name == worker.name) {
            let _ = writeln!(
                out,
                "\n# Worker pool {without_build}: no cri-resmgr, its OperatingSystemConfig is left alone"
            );
            continue;
        }
        if outcome.osc.spec.unit(crate::constants::UNIT_NAME).is_none() {
            let _ = writeln!(out, "\n# Worker pool {}: no cri-resmgr (not selected or not containerd)", worker.name);
            continue;
        }
        let _ = writeln!(out, "\n# Worker pool {} (kubelet {version}): OperatingSystemConfig changes", worker.name);
        for line in node::changes(&osc, &outcome.osc) {
            let _ = writeln!(out, "#   {line}");
        }
        for warning in &outcome.warnings {
            let _ = writeln!(out, "#   WARNING: {warning}");
        }
        for file in outcome.osc.spec.files.iter().filter(|file| node::FILE_PATHS.contains(&file.path.as_str())) {
            match (&file.content.image_ref, node::inline_text(file)) {
                (Some(image), _) => {
                    let _ = writeln!(out, "# {} <- {}:{}", file.path, image.image, image.file_path_in_image);
                }
                (None, Some(text)) => {
                    let _ = writeln!(out, "# {}:", file.path);
                    for line in text.lines() {
                        let _ = writeln!(out, "#   | {line}");
                    }
                }
                (None, None) => {}
            }
        }
        let _ = writeln!(out, "# {}:", crate::constants::UNIT_NAME);
        for line in node::unit_content().lines() {
            let _ = writeln!(out, "#   | {line}");
        }
        if let Some(exec_start) = node::kubelet_exec_start(&outcome.osc) {
            let _ = writeln!(out, "# kubelet.service ExecStart:");
            for line in exec_start.lines() {
                let _ = writeln!(out, "#   | {line}");
            }
        }
    }
    Ok(out)
}

/// The text `render` prints: every object of the runtime ManagedResource as a YAML stream, then per worker pool the
/// node-side changes, all with comments saying where things go.
pub fn render(options: &RenderOptions, images: &ImageVector) -> Result<String, RenderError> {
    let (shoot, desired) = plan(options, images)?;
    let mut out = String::new();
    let pools = if desired.selected_pools.is_empty() { "none".to_string() } else { desired.selected_pools.join(", ") };
    let _ = writeln!(out, "# Worker pools running cri-resmgr: {pools}");
    if !desired.pools_without_build.is_empty() {
        let without: Vec<String> = desired.pools_without_build.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "# Worker pools without cri-resmgr: {}", without.join(", "));
    }
    let _ = writeln!(out, "# ManagedResource {SHOOT_MANAGED_RESOURCE_NAME}: objects applied into the shoot");
    for object in desired.runtime_objects()? {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&object)?);
    }
    out.push_str(&render_nodes(options, &shoot, &desired, images)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    #[test]
    fn renders_the_example_shoot_and_cluster_alike() {
        let images = ImageVector::embedded().expect("images");
        let from_shoot =
            render(&RenderOptions { shoot: repo_file("examples/shoot.yaml"), base_configs: None, osc: None }, &images)
                .expect("render shoot");
        let from_cluster = render(
            &RenderOptions { shoot: repo_file("examples/10-cluster.yaml"), base_configs: None, osc: None },
            &images,
        )
        .expect("render cluster");
        assert_eq!(from_shoot, from_cluster);
        assert!(from_shoot.starts_with("# Worker pools running cri-resmgr: cpu-worker\n"), "{from_shoot}");
        let objects: Vec<Value> = crate::yaml::from_multi_str(&from_shoot).expect("a YAML stream");
        let names: Vec<&str> = objects.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
        assert!(names.contains(&"cri-resmgr-config.default"), "{names:?}");
        assert!(names.contains(&"cri-resmgr-agent"), "{names:?}");
    }

    #[test]
    fn node_side_changes_are_shown_per_pool_with_the_kubelet_exec_start() {
        let images = ImageVector::embedded().expect("images");
        let options = RenderOptions {
            shoot: repo_file("examples/shoot.yaml"),
            base_configs: None,
            osc: Some(repo_file("examples/30-osc-cpu-worker.yaml")),
        };
        let text = render(&options, &images).expect("render");
        assert!(text.contains("# Worker pool cpu-worker (kubelet 1.32.0): OperatingSystemConfig changes"), "{text}");
        assert!(text.contains("#   unit cri-resource-manager.service: added"), "{text}");
        assert!(text.contains("#   unit kubelet.service: changed"), "{text}");
        assert!(text.contains("--container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock"), "{text}");
        assert!(text.contains("CONFIG_OPTIONS=\"--fallback-config /etc/cri-resmgr/fallback.cfg\""), "{text}");
        // The representative OSC gives the same kubelet change as the example OSC.
        let representative =
            render(&RenderOptions { osc: None, ..options.clone() }, &images).expect("render representative");
        assert!(representative.contains("--container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock"));
        assert!(!representative.contains("WARNING"), "{representative}");
    }

    #[test]
    fn only_pools_that_run_cri_resmgr_show_node_files_and_they_are_the_files_the_osc_gets() {
        let images = ImageVector::embedded().expect("images");
        let mut shoot: Value = crate::yaml::from_str(
            &std::fs::read_to_string(repo_file("examples/shoot.yaml")).expect("read the example shoot"),
        )
        .expect("example shoot");
        let mut gpu = shoot["spec"]["provider"]["workers"][0].clone();
        gpu["name"] = Value::from("gpu-worker");
        shoot["spec"]["provider"]["workers"].as_array_mut().expect("workers").push(gpu);
        shoot["spec"]["extensions"][0]["providerConfig"]["workerPools"] = serde_json::json!(["cpu-worker"]);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), serde_json::to_string(&shoot).expect("encode")).expect("write shoot");

        let text = render(&RenderOptions { shoot: file.path().to_path_buf(), base_configs: None, osc: None }, &images)
            .expect("render");
        assert!(text.starts_with("# Worker pools running cri-resmgr: cpu-worker\n"), "{text}");
        assert!(text.contains("# Worker pool gpu-worker: no cri-resmgr (not selected or not containerd)"), "{text}");
        let cpu = &text[text.find("# Worker pool cpu-worker").expect("cpu-worker shown")..];
        let cpu = &cpu[..cpu.find("# Worker pool gpu-worker").unwrap_or(cpu.len())];
        for path in crate::domain::node::FILE_PATHS.iter().filter(|path| !path.ends_with("force.cfg")) {
            assert!(cpu.contains(&format!("# {path}")), "{path} shown for cpu-worker:\n{cpu}");
        }
        assert!(cpu.contains("#   |   Active: topology-aware"), "the fallback config's text is shown:\n{cpu}");
        let gpu = &text[text.find("# Worker pool gpu-worker").expect("gpu-worker shown")..];
        assert!(!gpu.contains("/etc/cri-resmgr") && !gpu.contains("ExecStart"), "nothing for gpu-worker:\n{gpu}");
    }

    /// cri-resmgr is built for amd64 only: an arm64 pool (selected by default) is shown without cri-resmgr and with
    /// the reason, and its OSC is not changed, so its kubelet stays on containerd's socket.
    #[test]
    fn an_arm64_pool_gets_no_amd64_binary() {
        let images = ImageVector::embedded().expect("images");
        let mut shoot: Value = crate::yaml::from_str(
            &std::fs::read_to_string(repo_file("examples/shoot.yaml")).expect("read the example shoot"),
        )
        .expect("example shoot");
        let mut arm = shoot["spec"]["provider"]["workers"][0].clone();
        arm["name"] = Value::from("arm-worker");
        arm["machine"]["architecture"] = Value::from("arm64");
        shoot["spec"]["provider"]["workers"].as_array_mut().expect("workers").push(arm);
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), serde_json::to_string(&shoot).expect("encode")).expect("write shoot");

        let text = render(&RenderOptions { shoot: file.path().to_path_buf(), base_configs: None, osc: None }, &images)
            .expect("render");
        assert!(text.starts_with("# Worker pools running cri-resmgr: cpu-worker\n"), "{text}");
        assert!(
            text.contains("# Worker pools without cri-resmgr: arm-worker (no cri-resmgr build for arm64)\n"),
            "{text}"
        );
        let arm = &text[text.find("# Worker pool arm-worker").expect("arm-worker shown")..];
        assert!(
            arm.starts_with("# Worker pool arm-worker (no cri-resmgr build for arm64): no cri-resmgr, its OperatingSystemConfig is left alone"),
            "{arm}"
        );
        assert!(
            !arm.contains("/opt/intel/bin/cri-resmgr") && !arm.contains("ExecStart"),
            "nothing for arm-worker:\n{arm}"
        );
        let objects = &text[..text.find("\n# Worker pool ").expect("node part")];
        let agent = objects.split("---\n").find(|o| o.contains("kind: DaemonSet") && o.contains("cri-resmgr-agent"));
        assert!(!agent.expect("agent DaemonSet").contains("arm-worker"), "the agent does not run on arm-worker");
    }

    #[test]
    fn base_configs_from_a_config_map_add_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.yaml");
        std::fs::write(
            &base,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gardener-extension-cri-resmgr-configs\ndata:\n  \
             group.gpu: |\n    policy:\n      Active: static-pools\n",
        )
        .expect("write");
        let images = ImageVector::embedded().expect("images");
        let text = render(
            &RenderOptions { shoot: repo_file("examples/shoot.yaml"), base_configs: Some(base), osc: None },
            &images,
        )
        .expect("render");
        assert!(text.contains("name: cri-resmgr-config.group.gpu"), "{text}");
    }

    #[test]
    fn invalid_config_is_reported_with_the_shoot_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shoot = dir.path().join("shoot.yaml");
        let text = std::fs::read_to_string(repo_file("examples/shoot.yaml")).expect("example");
        std::fs::write(&shoot, text.replace("Active: topology-aware", "Active: fastest")).expect("write");
        let images = ImageVector::embedded().expect("images");
        let error = render(&RenderOptions { shoot, base_configs: None, osc: None }, &images).expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains("spec.extensions[0].providerConfig.configs[\"default\"]"), "{message}");
        assert!(message.contains("\"fastest\""), "{message}");
    }

    #[test]
    fn a_shoot_without_the_extension_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shoot = dir.path().join("shoot.yaml");
        std::fs::write(
            &shoot,
            "apiVersion: core.gardener.cloud/v1beta1\nkind: Shoot\nmetadata:\n  name: x\nspec: {}\n",
        )
        .expect("write");
        let images = ImageVector::embedded().expect("images");
        let error = render(&RenderOptions { shoot, base_configs: None, osc: None }, &images).expect_err("not enabled");
        assert!(error.to_string().contains("does not enable the cri-resmgr-extension extension"), "{error}");
    }
}
