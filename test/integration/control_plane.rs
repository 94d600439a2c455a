//! The test bed itself: a real kube-apiserver answers, and its processes never outlive their owner.

use cri_resmgr_testbed::control_plane::{ControlPlane, WorkDir, process_alive};

use crate::support::{TestEnv, shared_plane_facts};

#[tokio::test]
async fn apiserver_answers_version_with_a_real_build() {
    let env = TestEnv::new("version").await;
    let version = env.client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.major, "1");
    assert_eq!(version.minor, "20");
    assert!(version.git_version.starts_with("v1.20."), "gitVersion {}", version.git_version);
    assert_eq!(version.platform, "linux/amd64");
    let (server_url, pids) = shared_plane_facts();
    assert!(server_url.starts_with("https://127.0.0.1:"), "{server_url}");
    assert!(pids.iter().all(|pid| process_alive(*pid)), "etcd and kube-apiserver run: {pids:?}");
}

#[tokio::test]
async fn stopping_a_control_plane_leaves_no_process_and_no_files() {
    let mut plane = ControlPlane::start(WorkDir::Temporary).await.expect("start a second control plane");
    let pids = plane.pids().to_vec();
    let dir = plane.dir().to_path_buf();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    assert!(pids.iter().all(|pid| process_alive(*pid)));
    let client = plane.client().await.expect("client");
    client.apiserver_version().await.expect("the second control plane answers");
    plane.stop();
    assert!(pids.iter().all(|pid| !process_alive(*pid)), "processes gone after stop: {pids:?}");
    assert!(!dir.exists(), "temporary work dir removed");
}
