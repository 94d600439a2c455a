//! Stand-in for gardener-node-agent on the shoot's machines, each machine a directory tree (`<nodes dir>/<node>/`)
//! in place of its root filesystem; and for the node cleaner's pod on those machines.
//!
//! Like gardener-node-agent (`pkg/nodeagent/controller/operatingsystemconfig`), it reads the pool's stored
//! `reconcile` OSC, writes its files (inline content decoded, with their permissions; `imageRef` files as stubs
//! naming the image, as there is no image to extract; `secretRef` files as stubs naming the Secret), its units and
//! drop-ins under `/etc/systemd/system`, remembers what it applied, and removes the files and units the previous OSC
//! had and the new one has not. Where node-agent would start units, it records them as started; for
//! `cri-resource-manager.service` it also leaves what cri-resmgr's process leaves behind on a node outside the OSC's
//! paths (its state directory), so that the cleaner has something to remove.
//!
//! After applying, the units are checked with `systemd-analyze verify` (the node image's part — containerd's unit,
//! the default targets, the executables of `Exec*=` lines the OSC does not bring — is stubbed), and kubelet's
//! container runtime endpoint is read back from its unit and config file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use gardener_extension_cri_resmgr::apis::extensions::{File, OperatingSystemConfig, OscPurpose, Unit};
use gardener_extension_cri_resmgr::constants::{
    CLEANER_NAME, CONTAINERD_UNIT_NAME, KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_CONFIG_PATH,
    KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_UNIT_NAME, LABEL_WORKER_POOL, NODE_PID_FILE, NODE_SOCKET_DIR,
    NODE_STATE_DIR, NODE_SYSTEMD_UNIT_DIR, UNIT_NAME,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, ListParams};

use super::kubelet::PodRunner;

/// Where the stand-in remembers the OSC it applied last (node-agent keeps it on the node, too).
pub const LAST_APPLIED_OSC: &str = "/var/lib/gardener-node-agent/last-applied-osc.json";
/// Where the stand-in records the units it started (one empty file per unit).
pub const STARTED_UNITS_DIR: &str = "/run/gardener-node-agent/started";
/// systemd's unit checker.
pub const SYSTEMD_ANALYZE: &str = "systemd-analyze";
/// Targets every node's systemd has, which units' default dependencies pull in.
const BASE_TARGETS: [&str; 4] = ["sysinit.target", "basic.target", "shutdown.target", "multi-user.target"];

/// What can go wrong on a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeAgentError {
    #[error("cannot read the OSC of pool {pool} in {namespace}: {source}")]
    Read {
        namespace: String,
        pool: String,
        #[source]
        source: kube::Error,
    },
    #[error("no reconcile OSC for pool {pool} in {namespace}")]
    NoOsc { namespace: String, pool: String },
    #[error("node {node}: {context}: {source}")]
    Io {
        node: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}: file {path}: {detail}")]
    Content { node: String, path: String, detail: String },
    #[error("node {node}: systemd-analyze verify rejects the units:\n{complaints}")]
    Verify { node: String, complaints: String },
}

/// What one application of an OSC left on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// Paths written (files, unit files, drop-ins).
    pub written: Vec<String>,
    /// Paths removed because the previous OSC had them and this one has not.
    pub removed: Vec<String>,
    /// Units started (or restarted).
    pub started: Vec<String>,
    /// kubelet's `--container-runtime-endpoint` (or its config file's `containerRuntimeEndpoint`).
    pub runtime_endpoint: Option<String>,
}

/// The stand-in for every machine of one seed's shoots.
#[derive(Clone)]
pub struct NodeAgent {
    seed: kube::Client,
    nodes_dir: PathBuf,
    /// One application at a time: a node applies its OSC in one process, and a unit file read by systemd-analyze
    /// while another application rewrites it would be empty (systemd reads an empty unit as masked).
    applying: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl NodeAgent {
    pub fn new(seed: kube::Client, nodes_dir: PathBuf) -> Self {
        NodeAgent { seed, nodes_dir, applying: std::sync::Arc::default() }
    }

    /// The same machines, reading their OSCs from `seed` from now on (a shoot whose control plane moved to another
    /// seed).
    pub fn for_seed(&self, seed: kube::Client) -> Self {
        NodeAgent { seed, nodes_dir: self.nodes_dir.clone(), applying: self.applying.clone() }
    }

    /// The root filesystem of `node`.
    pub fn root(&self, node: &str) -> PathBuf {
        self.nodes_dir.join(node)
    }

    /// Applies the stored reconcile OSC of `pool` in `namespace` onto `node`, verifies its units and reads back
    /// kubelet's runtime endpoint.
    pub async fn apply(&self, namespace: &str, pool: &str, node: &str) -> Result<NodeReport, NodeAgentError> {
        let read_error =
            |source| NodeAgentError::Read { namespace: namespace.to_string(), pool: pool.to_string(), source };
        // Held from the read on: an apply that read an older OSC must not write it over a newer one applied meanwhile.
        let _applying = self.applying.lock().await;
        let oscs: Api<OperatingSystemConfig> = Api::namespaced(self.seed.clone(), namespace);
        let selector = format!("{LABEL_WORKER_POOL}={pool}");
        let osc = oscs
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(read_error)?
            .items
            .into_iter()
            .find(|osc| osc.spec.purpose == OscPurpose::Reconcile)
            .ok_or_else(|| NodeAgentError::NoOsc { namespace: namespace.to_string(), pool: pool.to_string() })?;
        let root = self.root(node);
        let node = node.to_string();
        // File work and `systemd-analyze` block: they run beside the async workers, which the other stand-ins and
        // the scenario itself share (two of them in a test).
        let applied = tokio::task::spawn_blocking(move || {
            let report = apply_osc(&root, &node, &osc)?;
            verify_units(&root, &node, &all_units(&osc))?;
            Ok(report)
        })
        .await;
        applied.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
    }
}

impl NodeAgent {
    /// Applies the pools' OSCs onto their nodes every `interval` until `shutdown`, as node-agent follows its OSC;
    /// failures are logged and retried. `machines` are `(pool, node)` pairs of the shoot namespace `namespace`.
    pub async fn run(
        self,
        namespace: String,
        machines: Vec<(String, String)>,
        interval: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            for (pool, node) in &machines {
                if let Err(error) = self.apply(&namespace, pool, node).await {
                    tracing::info!(node, error = %error, "gardener-node-agent stand-in retries");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// The units of an OSC, the extensions' (`status.extensionUnits`) included, as node-agent merges them.
fn all_units(osc: &OperatingSystemConfig) -> Vec<Unit> {
    let extra = osc.status.iter().flat_map(|status| status.extension_units.iter().cloned());
    osc.spec.units.iter().cloned().chain(extra).collect()
}

fn all_files(osc: &OperatingSystemConfig) -> Vec<File> {
    let extra = osc.status.iter().flat_map(|status| status.extension_files.iter().cloned());
    osc.spec.files.iter().cloned().chain(extra).collect()
}

/// `path` (absolute on the node) inside `root`.
pub fn on_node(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn unit_path(name: &str) -> String {
    format!("{NODE_SYSTEMD_UNIT_DIR}/{name}")
}

fn drop_in_path(unit: &str, drop_in: &str) -> String {
    format!("{NODE_SYSTEMD_UNIT_DIR}/{unit}.d/{drop_in}")
}

/// The node paths an OSC owns: its files, unit files and drop-ins.
fn owned_paths(osc: &OperatingSystemConfig) -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = all_files(osc).iter().map(|file| file.path.clone()).collect();
    for unit in all_units(osc) {
        if unit.content.is_some() {
            paths.insert(unit_path(&unit.name));
        }
        for drop_in in &unit.drop_ins {
            paths.insert(drop_in_path(&unit.name, &drop_in.name));
        }
    }
    paths
}

/// Writes `osc` onto the node tree at `root` and removes what the previously applied OSC had that this one has not.
pub fn apply_osc(root: &Path, node: &str, osc: &OperatingSystemConfig) -> Result<NodeReport, NodeAgentError> {
    let io = |context: String| {
        let node = node.to_string();
        move |source| NodeAgentError::Io { node, context, source }
    };
    let last_applied = on_node(root, LAST_APPLIED_OSC);
    let previous: Option<OperatingSystemConfig> =
        std::fs::read(&last_applied).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());

    let mut written = Vec::new();
    for file in all_files(osc) {
        let content = file_content(node, &file)?;
        write(root, &file.path, &content, file.permissions.map_or(0o644, |p| p as u32))
            .map_err(io(format!("writing {}", file.path)))?;
        written.push(file.path.clone());
    }
    let mut started = Vec::new();
    for unit in all_units(osc) {
        if let Some(content) = &unit.content {
            write(root, &unit_path(&unit.name), content.as_bytes(), 0o644)
                .map_err(io(format!("writing unit {}", unit.name)))?;
            written.push(unit_path(&unit.name));
        }
        for drop_in in &unit.drop_ins {
            let path = drop_in_path(&unit.name, &drop_in.name);
            write(root, &path, drop_in.content.as_bytes(), 0o644).map_err(io(format!("writing {path}")))?;
            written.push(path);
        }
        if unit.command.as_ref().is_some_and(|command| command.as_str() != "stop") {
            write(root, &format!("{STARTED_UNITS_DIR}/{}", unit.name), b"", 0o644)
                .map_err(io(format!("starting {}", unit.name)))?;
            started.push(unit.name.clone());
            if unit.name == UNIT_NAME {
                // What the running cri-resmgr leaves outside the OSC's paths; the cleaner's to remove.
                std::fs::create_dir_all(on_node(root, NODE_STATE_DIR))
                    .map_err(io(format!("creating {NODE_STATE_DIR}")))?;
            }
        }
    }

    let mut removed = Vec::new();
    if let Some(previous) = &previous {
        let now = owned_paths(osc);
        for path in owned_paths(previous).difference(&now) {
            match std::fs::remove_file(on_node(root, path)) {
                Ok(()) => removed.push(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {path}"))(e)),
            }
        }
        let units_now: BTreeSet<String> = all_units(osc).into_iter().map(|u| u.name).collect();
        for unit in all_units(previous).into_iter().filter(|u| !units_now.contains(&u.name)) {
            let _ = std::fs::remove_dir(on_node(root, &format!("{NODE_SYSTEMD_UNIT_DIR}/{}.d", unit.name)));
            let _ = std::fs::remove_file(on_node(root, &format!("{STARTED_UNITS_DIR}/{}", unit.name)));
        }
    }
    let applied = serde_json::to_vec(osc).map_err(|e| NodeAgentError::Content {
        node: node.to_string(),
        path: LAST_APPLIED_OSC.to_string(),
        detail: e.to_string(),
    })?;
    write(root, LAST_APPLIED_OSC, &applied, 0o600).map_err(io("remembering the applied OSC".to_string()))?;
    Ok(NodeReport { written, removed, started, runtime_endpoint: kubelet_runtime_endpoint(root) })
}

fn file_content(node: &str, file: &File) -> Result<Vec<u8>, NodeAgentError> {
    let content = &file.content;
    if let Some(inline) = &content.inline {
        return match inline.encoding.as_str() {
            "" => Ok(inline.data.clone().into_bytes()),
            "b64" | "base64" => base64::engine::general_purpose::STANDARD.decode(&inline.data).map_err(|e| {
                NodeAgentError::Content { node: node.to_string(), path: file.path.clone(), detail: e.to_string() }
            }),
            other => Err(NodeAgentError::Content {
                node: node.to_string(),
                path: file.path.clone(),
                detail: format!("unknown encoding {other:?}"),
            }),
        };
    }
    if let Some(image) = &content.image_ref {
        // A stub that runs (verify checks executables) and says what node-agent would have extracted.
        return Ok(
            format!("#!/bin/sh\n# {} from image {}\nexit 0\n", image.file_path_in_image, image.image).into_bytes()
        );
    }
    if let Some(secret) = &content.secret_ref {
        return Ok(format!("# key {} of Secret {}\n", secret.data_key, secret.name).into_bytes());
    }
    Err(NodeAgentError::Content { node: node.to_string(), path: file.path.clone(), detail: "no content".to_string() })
}

fn write(root: &Path, path: &str, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = on_node(root, path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&path, content)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
}

/// kubelet's container runtime endpoint on the node: the last `--container-runtime-endpoint=` of its unit and
/// drop-ins (a later flag wins), else `containerRuntimeEndpoint` of its config file.
pub fn kubelet_runtime_endpoint(root: &Path) -> Option<String> {
    let unit_dir = on_node(root, NODE_SYSTEMD_UNIT_DIR);
    let mut texts = vec![std::fs::read_to_string(unit_dir.join(KUBELET_UNIT_NAME)).unwrap_or_default()];
    let mut drop_ins: Vec<PathBuf> = std::fs::read_dir(unit_dir.join(format!("{KUBELET_UNIT_NAME}.d")))
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    drop_ins.sort();
    texts.extend(drop_ins.iter().filter_map(|path| std::fs::read_to_string(path).ok()));
    let flag = texts
        .iter()
        .flat_map(|text| text.split_whitespace())
        .filter_map(|word| {
            word.trim_matches(|c| c == '"' || c == '\'').strip_prefix(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT)
        })
        .next_back()
        .map(str::to_string);
    flag.or_else(|| {
        let config = std::fs::read_to_string(on_node(root, KUBELET_CONFIG_PATH)).ok()?;
        let value: serde_json::Value = gardener_extension_cri_resmgr::yaml::from_str(&config).ok()?;
        value[KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT].as_str().map(str::to_string)
    })
}

/// `systemd-analyze verify --root=<root>` over `units`, with the node image's part stubbed where missing; every
/// complaint (also a warning on stderr) is an error. Skipped when systemd-analyze is not installed.
pub fn verify_units(root: &Path, node: &str, units: &[Unit]) -> Result<(), NodeAgentError> {
    let io = |context: &str| {
        let (node, context) = (node.to_string(), context.to_string());
        move |source| NodeAgentError::Io { node, context, source }
    };
    let stub_unit = "[Unit]\nDescription=stub of the node image\n";
    for target in BASE_TARGETS {
        if !on_node(root, &unit_path(target)).exists() {
            write(root, &unit_path(target), stub_unit.as_bytes(), 0o644).map_err(io("stubbing a target"))?;
        }
    }
    if !on_node(root, &unit_path(CONTAINERD_UNIT_NAME)).exists() {
        let containerd = format!("{stub_unit}[Service]\nExecStart=/bin/true\n");
        write(root, &unit_path(CONTAINERD_UNIT_NAME), containerd.as_bytes(), 0o644)
            .map_err(io("stubbing containerd"))?;
    }
    let names: Vec<&str> =
        units.iter().filter(|u| u.content.is_some() || !u.drop_ins.is_empty()).map(|u| u.name.as_str()).collect();
    for executable in executables(root, &names) {
        if !on_node(root, &executable).exists() {
            write(root, &executable, b"#!/bin/sh\nexit 0\n", 0o755).map_err(io("stubbing an executable"))?;
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let output = match Command::new(SYSTEMD_ANALYZE)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .args(&names)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("{SYSTEMD_ANALYZE} is not installed; units are not verified");
            return Ok(());
        }
        Err(e) => return Err(io("running systemd-analyze")(e)),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(NodeAgentError::Verify { node: node.to_string(), complaints: format!("{}\n{stderr}", output.status) })
    }
}

/// The absolute executables the `Exec*=` lines of the units (and their drop-ins) name.
fn executables(root: &Path, units: &[&str]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for unit in units {
        let mut texts = vec![std::fs::read_to_string(on_node(root, &unit_path(unit))).unwrap_or_default()];
        if let Ok(entries) = std::fs::read_dir(on_node(root, &format!("{NODE_SYSTEMD_UNIT_DIR}/{unit}.d"))) {
            texts.extend(entries.flatten().filter_map(|entry| std::fs::read_to_string(entry.path()).ok()));
        }
        for text in texts {
            for line in text.lines() {
                let Some((key, value)) = line.split_once('=') else { continue };
                if !key.trim().starts_with("Exec") {
                    continue;
                }
                // Exec prefixes (`-`, `@`, `+`, `!`, `:`) come before the path.
                let command = value.trim().trim_start_matches(['-', '@', '+', '!', ':']);
                if let Some(path) = command.split_whitespace().next().filter(|p| p.starts_with('/')) {
                    found.insert(path.to_string());
                }
            }
        }
    }
    found
}

/// The node cleaner's pod on the nodes of a [`NodeAgent`], run as kubelet would run it: its init container waits
/// until cri-resmgr's unit is gone from the node (node-agent applied the OSC without it), then removes what
/// cri-resmgr left outside the OSC's paths; the pod is ready once that is done. Other DaemonSets' pods are ready at
/// once.
pub struct CleanerPods {
    pub nodes: NodeAgent,
}

impl PodRunner for CleanerPods {
    fn ready(&self, node: &str, daemonset: &DaemonSet) -> bool {
        if daemonset.metadata.name.as_deref() != Some(CLEANER_NAME) {
            return true;
        }
        let root = self.nodes.root(node);
        if on_node(&root, &unit_path(UNIT_NAME)).exists() {
            return false;
        }
        let _ = std::fs::remove_dir_all(on_node(&root, NODE_STATE_DIR));
        let _ = std::fs::remove_dir_all(on_node(&root, NODE_SOCKET_DIR));
        let _ = std::fs::remove_file(on_node(&root, NODE_PID_FILE));
        !on_node(&root, NODE_STATE_DIR).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconcile_osc() -> OperatingSystemConfig {
        let text =
            std::fs::read_to_string(crate::repo_root().join(super::super::gardenlet::OSC_TEMPLATE)).expect("template");
        gardener_extension_cri_resmgr::yaml::from_str(&text).expect("OSC")
    }

    #[test]
    fn applies_files_with_permissions_and_removes_what_the_next_osc_drops() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut osc = reconcile_osc();
        let mut extra = osc.spec.files[0].clone();
        extra.path = "/etc/extra.conf".to_string();
        extra.permissions = Some(0o600);
        osc.spec.files.push(extra);
        let report = apply_osc(dir.path(), "n", &osc).expect("apply");
        assert!(report.written.contains(&"/etc/extra.conf".to_string()));
        let mode = std::fs::metadata(on_node(dir.path(), "/etc/extra.conf")).expect("written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(report.started.contains(&KUBELET_UNIT_NAME.to_string()));
        assert!(report.runtime_endpoint.is_some(), "the template's kubelet has a runtime endpoint");

        osc.spec.files.pop();
        let report = apply_osc(dir.path(), "n", &osc).expect("apply again");
        assert_eq!(report.removed, vec!["/etc/extra.conf".to_string()]);
        assert!(!on_node(dir.path(), "/etc/extra.conf").exists());
    }

    #[test]
    fn kubelet_endpoint_comes_from_the_last_flag_else_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, KUBELET_CONFIG_PATH, b"containerRuntimeEndpoint: unix:///from/config\n", 0o644).expect("write");
        assert_eq!(kubelet_runtime_endpoint(root).as_deref(), Some("unix:///from/config"));
        let unit =
            format!("[Service]\nExecStart=/opt/bin/kubelet {KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT}unix:///a\n");
        write(root, &unit_path(KUBELET_UNIT_NAME), unit.as_bytes(), 0o644).expect("write");
        assert_eq!(kubelet_runtime_endpoint(root).as_deref(), Some("unix:///a"));
        let drop_in = format!(
            "[Service]\nExecStart=\nExecStart=/opt/bin/kubelet {KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT}unix:///b\n"
        );
        write(root, &drop_in_path(KUBELET_UNIT_NAME, "10-x.conf"), drop_in.as_bytes(), 0o644).expect("write");
        assert_eq!(kubelet_runtime_endpoint(root).as_deref(), Some("unix:///b"), "the drop-in's flag wins");
    }

    #[test]
    fn the_templates_units_pass_verify_and_a_broken_unit_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let osc = reconcile_osc();
        apply_osc(dir.path(), "n", &osc).expect("apply");
        verify_units(dir.path(), "n", &all_units(&osc)).expect("the template's units verify");
        let mut broken = osc.clone();
        let kubelet = broken.spec.unit_mut(KUBELET_UNIT_NAME).expect("kubelet unit");
        kubelet.content = Some("[Service]\nExecStart=/opt/bin/kubelet\nRestartSec=never\n".to_string());
        apply_osc(dir.path(), "n", &broken).expect("apply");
        let result = verify_units(dir.path(), "n", &all_units(&broken));
        assert!(matches!(result, Err(NodeAgentError::Verify { .. })), "{result:?}");
    }
}
