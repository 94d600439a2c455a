//! Several control planes at once, each of whose halves can be taken away and brought back: what the end-to-end
//! tests build their garden, seed and shoot from, and how they simulate an apiserver roll or an etcd restart.

use std::collections::BTreeMap;

use cri_resmgr_testbed::control_plane::{ControlPlane, WorkDir, process_alive};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

fn config_map(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
        data: Some(BTreeMap::from([("value".to_string(), value.to_string())])),
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn two_named_control_planes_run_side_by_side_and_survive_restarts_of_their_apiserver_and_etcd() {
    let (garden, seed) = tokio::join!(
        ControlPlane::start_named("garden", WorkDir::Temporary),
        ControlPlane::start_named("seed", WorkDir::Temporary)
    );
    let (garden, mut seed) = (garden.expect("garden starts"), seed.expect("seed starts"));
    assert_ne!(garden.server_url(), seed.server_url());
    let kubeconfig = std::fs::read_to_string(seed.kubeconfig_path()).expect("seed kubeconfig");
    assert!(kubeconfig.contains("name: seed"), "the kubeconfig names its plane:\n{kubeconfig}");

    let (garden_client, seed_client) = (garden.client().await.expect("client"), seed.client().await.expect("client"));
    let in_garden: Api<ConfigMap> = Api::namespaced(garden_client, "default");
    let in_seed: Api<ConfigMap> = Api::namespaced(seed_client, "default");
    in_garden.create(&PostParams::default(), &config_map("where", "garden")).await.expect("write to the garden");
    in_seed.create(&PostParams::default(), &config_map("where", "seed")).await.expect("write to the seed");

    let etcd_before = seed.pids()[0];
    seed.restart_etcd().await.expect("etcd restarts");
    assert!(!process_alive(etcd_before), "the old etcd is gone");
    // The apiserver kept running and reconnects to the restarted etcd, which kept its data.
    let read = eventually_read(&in_seed).await;
    assert_eq!(read, "seed", "the seed's data survived the etcd restart");

    let apiserver_before = seed.pids()[1];
    let url_before = seed.server_url().to_string();
    seed.stop_apiserver().await.expect("apiserver stops");
    assert!(!process_alive(apiserver_before), "the apiserver is gone");
    assert!(in_seed.get("where").await.is_err(), "nothing answers while the apiserver is down");
    seed.start_apiserver().await.expect("apiserver starts again");
    assert_eq!(seed.server_url(), url_before, "same URL: clients keep working");
    assert_eq!(eventually_read(&in_seed).await, "seed", "the old client reads again");

    assert_eq!(eventually_read(&in_garden).await, "garden", "the garden was not touched by the seed's restarts");
    let pids: Vec<u32> = garden.pids().into_iter().chain(seed.pids()).collect();
    assert_eq!(pids.len(), 4);
    drop(garden);
    drop(seed);
    assert!(pids.iter().all(|pid| !process_alive(*pid)), "no process outlives its plane: {pids:?}");
}

/// Reads the ConfigMap `where`, retrying while a restarted component settles.
async fn eventually_read(api: &Api<ConfigMap>) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(config_map) = api.get("where").await {
            return config_map.data.and_then(|mut d| d.remove("value")).unwrap_or_default();
        }
        assert!(std::time::Instant::now() < deadline, "the ConfigMap is not readable again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
