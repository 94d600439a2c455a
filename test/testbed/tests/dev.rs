//! `make dev` as a user runs it: the test bed's `cri-resmgr-dev dev`, a real process whose control plane never
//! outlives it and which serves the examples to kubectl.

use std::path::Path;
use std::time::Duration;

use cri_resmgr_testbed::control_plane::process_alive;
use cri_resmgr_testbed::repo_root;

#[tokio::test]
async fn control_plane_dies_with_its_owner_even_when_the_owner_is_killed() {
    // `dev` runs a control plane in the foreground; SIGKILL gives it no chance to clean up, so only the kernel's
    // parent-death signal can stop its children.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = spawn_dev(dir.path(), &["--no-examples".into()]);
    let pids_file = dir.path().join("pids");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let pids: Vec<u32> = loop {
        if let Ok(text) = std::fs::read_to_string(&pids_file) {
            let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
            if pids.len() == 2 {
                break pids;
            }
        }
        assert!(std::time::Instant::now() < deadline, "`dev` did not report its control plane");
        assert!(dev.try_wait().expect("poll dev").is_none(), "`dev` exited early");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(pids.iter().all(|pid| process_alive(*pid)));
    dev.start_kill().expect("SIGKILL dev");
    dev.wait().await.expect("reap dev");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|pid| process_alive(*pid)) {
        assert!(std::time::Instant::now() < deadline, "control plane outlived its killed owner: {pids:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn make_dev_control_plane_accepts_the_examples_with_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dev = spawn_dev(dir.path(), &["--examples".into(), repo_root().join("examples").into()]);
    let ready = dir.path().join("ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline, "`dev` did not get ready");
        if let Some(status) = dev.try_wait().expect("poll dev") {
            panic!("`dev` exited before it was ready: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            // kubectl caches the API's schema by host and port; a loopback port reused from another control plane
            // with other CRDs would validate against the wrong schema.
            .arg("--cache-dir")
            .arg(dir.path().join("kubectl-cache"))
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(output.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // `dev` applied them already; applying again is how a user re-applies after editing, and must work too.
    let examples = repo_root().join("examples");
    let applied = kubectl(&["apply", "-f", examples.to_str().expect("utf-8 path")]);
    for object in [
        "namespace/shoot--dev--local",
        "cluster.extensions.gardener.cloud/shoot--dev--local",
        "extension.extensions.gardener.cloud/cri-resmgr-extension",
        "operatingsystemconfig.extensions.gardener.cloud/gardener-node-agent-cpu-worker-77ac3b4c7e4f1a2d-original",
        "shoot.core.gardener.cloud/local",
    ] {
        assert!(applied.contains(object), "{object} not in kubectl's output:\n{applied}");
    }
    let extension_type = kubectl(&[
        "get",
        "extension",
        "-n",
        "shoot--dev--local",
        "cri-resmgr-extension",
        "-o",
        "jsonpath={.spec.type}",
    ]);
    assert_eq!(extension_type, "cri-resmgr-extension");
    // `dev` runs the admission server and the controller: the Shoot was defaulted, the Extension reconciled.
    let state = kubectl(&[
        "get",
        "extension",
        "-n",
        "shoot--dev--local",
        "cri-resmgr-extension",
        "-o",
        "jsonpath={.status.lastOperation.state}",
    ]);
    assert_eq!(state, "Succeeded");
    let kind = kubectl(&[
        "get",
        "shoot",
        "-n",
        "garden-dev",
        "local",
        "-o",
        "jsonpath={.spec.extensions[0].providerConfig.kind}",
    ]);
    assert_eq!(kind, "CriResmgrConfig", "the admission webhook defaulted the example Shoot");
    let units = kubectl(&[
        "get",
        "osc",
        "-n",
        "shoot--dev--local",
        "gardener-node-agent-cpu-worker-77ac3b4c7e4f1a2d-original",
        "-o",
        "jsonpath={.spec.units[*].name}",
    ]);
    assert!(units.contains("cri-resource-manager.service"), "the OSC webhook mutated the example OSC: {units}");
    // gardener-resource-manager's stand-in applied the shoot resources into the local apiserver and reported them.
    let agent = kubectl(&["get", "configmap", "-n", "kube-system", "cri-resmgr-config.default", "-o", "name"]);
    assert_eq!(agent.trim(), "configmap/cri-resmgr-config.default", "the agent's ConfigMap reached the shoot");
    // Deleting the extension finishes: the node cleaner is reported done and the ManagedResources are released.
    kubectl(&["delete", "extension", "-n", "shoot--dev--local", "cri-resmgr-extension", "--timeout=90s"]);
    let left = kubectl(&["get", "managedresources,secrets", "-n", "shoot--dev--local", "-o", "name"]);
    assert_eq!(left.trim(), "", "no ManagedResource and no Secret of theirs left");
    let gone = kubectl(&[
        "get",
        "configmap",
        "-n",
        "kube-system",
        "--ignore-not-found",
        "cri-resmgr-config.default",
        "-o",
        "name",
    ]);
    assert_eq!(gone.trim(), "", "the shoot resources are gone");
    dev.start_kill().expect("stop dev");
    dev.wait().await.expect("reap dev");
}

/// Starts `cri-resmgr-dev dev` (what `make dev` runs) with its work dir in `dir`; it is killed when the handle is
/// dropped.
fn spawn_dev(dir: &Path, args: &[std::ffi::OsString]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cri-resmgr-dev"))
        .args(["dev", "--dir"])
        .arg(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start `dev`")
}
