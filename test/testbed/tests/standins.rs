//! The stand-ins against real apiservers: a seed holding the ManagedResources and a shoot receiving their objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cri_resmgr_testbed::control_plane::{self, ControlPlane, WorkDir};
use cri_resmgr_testbed::standins::kubelet::{Kubelet, PodRunner};
use cri_resmgr_testbed::standins::resource_manager::{ANNOTATION_ORIGIN, FINALIZER, ResourceManager, Shoot, Shoots};
use gardener_extension_cri_resmgr::apis::common::ConditionStatus;
use gardener_extension_cri_resmgr::apis::resources::{
    CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY, ManagedResource,
};
use gardener_extension_cri_resmgr::constants::{
    LABEL_SHOOT_NO_CLEANUP, LABEL_WORKER_POOL, SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::domain::shoot_resources::agent_daemonset;
use gardener_extension_cri_resmgr::managed_resource;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "shoot--test--grm";

/// Answers "not ready" until told otherwise, as a pod whose init container still runs.
struct Gate(AtomicBool);

impl PodRunner for Gate {
    fn ready(&self, _node: &str, _daemonset: &DaemonSet) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "kube-system"}, "data": {"k": "v"}})
}

fn agent() -> Value {
    let mut daemonset = serde_json::to_value(agent_daemonset("agent:v1", &["cpu".to_string()])).expect("DaemonSet");
    daemonset["apiVersion"] = json!("apps/v1");
    daemonset["kind"] = json!("DaemonSet");
    daemonset["metadata"]["name"] = json!("cri-resmgr-agent");
    daemonset["metadata"]["namespace"] = json!("kube-system");
    daemonset
}

fn condition(mr: &ManagedResource, type_: &str) -> Option<ConditionStatus> {
    mr.condition(type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn resource_manager_applies_prunes_reports_and_deletes_as_gardener_resource_manager_does() {
    let (seed, shoot) = tokio::join!(
        ControlPlane::start_named("seed", WorkDir::Temporary),
        ControlPlane::start_named("shoot", WorkDir::Temporary)
    );
    let (seed, shoot) = (seed.expect("seed"), shoot.expect("shoot"));
    let (seed_client, shoot_client) = (seed.client().await.expect("client"), shoot.client().await.expect("client"));
    control_plane::install_crds(&seed_client, cri_resmgr_testbed::crds::all().expect("CRDs")).await.expect("CRDs");
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(NAMESPACE.to_string()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    Api::<Namespace>::all(seed_client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
    let node = Node {
        metadata: ObjectMeta {
            name: Some("node-1".to_string()),
            labels: Some(BTreeMap::from([(LABEL_WORKER_POOL.to_string(), "cpu".to_string())])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    Api::<Node>::all(shoot_client.clone()).create(&PostParams::default(), &node).await.expect("node");

    let gate = Arc::new(Gate(AtomicBool::new(false)));
    let shoots = Shoots::default();
    shoots.insert(
        NAMESPACE,
        Shoot::with_kubelet(shoot_client.clone(), Kubelet::with_runner(shoot_client.clone(), gate.clone())),
    );
    let manager = ResourceManager::new(seed_client.clone(), shoots.clone());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(manager.clone().run(shutdown.clone()));

    let mrs: Api<ManagedResource> = Api::namespaced(seed_client.clone(), NAMESPACE);
    let config_maps: Api<ConfigMap> = Api::namespaced(shoot_client.clone(), "kube-system");
    let daemonsets: Api<DaemonSet> = Api::namespaced(shoot_client.clone(), "kube-system");
    let ship = |objects: Vec<Value>, keep: bool| {
        let seed_client = seed_client.clone();
        async move {
            managed_resource::create_or_update_for_shoot(
                &seed_client,
                NAMESPACE,
                SHOOT_MANAGED_RESOURCE_NAME,
                "test",
                keep,
                &objects,
            )
            .await
            .expect("ship the objects")
        }
    };

    // Applied, stamped, and unhealthy while the pod is not ready.
    ship(vec![config_map("one"), config_map("two"), agent()], false).await;
    let mr = eventually("the objects are applied and the agent is not ready", || async {
        let mr = mrs.get(SHOOT_MANAGED_RESOURCE_NAME).await.ok()?;
        (condition(&mr, CONDITION_RESOURCES_APPLIED) == Some(ConditionStatus::True)
            && condition(&mr, CONDITION_RESOURCES_HEALTHY) == Some(ConditionStatus::False))
        .then_some(mr)
    })
    .await;
    assert!(mr.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER), "finalizer added");
    assert_eq!(mr.status.as_ref().and_then(|s| s.observed_generation), mr.metadata.generation);
    assert_eq!(mr.status.as_ref().map(|s| s.resources.len()), Some(3));
    let one = config_maps.get("one").await.expect("ConfigMap one in the shoot");
    assert_eq!(
        one.metadata.annotations.unwrap_or_default()[ANNOTATION_ORIGIN],
        format!("{NAMESPACE}/{SHOOT_MANAGED_RESOURCE_NAME}")
    );
    assert_eq!(one.metadata.labels.unwrap_or_default()[LABEL_SHOOT_NO_CLEANUP], "true", "injectLabels");
    let status = daemonsets.get("cri-resmgr-agent").await.expect("agent").status.expect("status reported");
    assert_eq!((status.desired_number_scheduled, status.number_ready), (1, 0), "one node of pool cpu, not ready");

    // The pod becomes ready: healthy.
    gate.0.store(true, Ordering::SeqCst);
    eventually("the agent is ready and the ManagedResource healthy", || async {
        let mr = mrs.get(SHOOT_MANAGED_RESOURCE_NAME).await.ok()?;
        (condition(&mr, CONDITION_RESOURCES_HEALTHY) == Some(ConditionStatus::True)).then_some(())
    })
    .await;

    // An object that leaves the ManagedResource leaves the shoot; the superseded Secret is collected.
    ship(vec![config_map("one"), agent()], false).await;
    eventually("ConfigMap two is pruned", || async { config_maps.get_opt("two").await.ok()?.is_none().then_some(()) })
        .await;
    let collected = manager.collect_garbage(NAMESPACE, Duration::ZERO).await.expect("garbage collection");
    assert_eq!(collected.len(), 1, "the first Secret, no longer referenced: {collected:?}");
    let secrets: Api<Secret> = Api::namespaced(seed_client.clone(), NAMESPACE);
    let left: Vec<String> = secrets
        .list(&Default::default())
        .await
        .expect("secrets")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert_eq!(left.len(), 1, "only the referenced Secret is left: {left:?}");

    // keepObjects: the ManagedResource goes, the objects stay.
    ship(vec![config_map("one"), agent()], true).await;
    managed_resource::delete(&seed_client, NAMESPACE, SHOOT_MANAGED_RESOURCE_NAME).await.expect("delete");
    eventually("the kept ManagedResource is released", || async {
        mrs.get_opt(SHOOT_MANAGED_RESOURCE_NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(config_maps.get_opt("one").await.expect("get").is_some(), "keepObjects keeps the objects");

    // Without keepObjects: deleting removes the objects first, then the finalizer.
    ship(vec![config_map("one"), agent()], false).await;
    eventually("applied again", || async {
        let mr = mrs.get(SHOOT_MANAGED_RESOURCE_NAME).await.ok()?;
        (mr.status?.resources.len() == 2).then_some(())
    })
    .await;
    managed_resource::delete(&seed_client, NAMESPACE, SHOOT_MANAGED_RESOURCE_NAME).await.expect("delete");
    eventually("the ManagedResource is released", || async {
        mrs.get_opt(SHOOT_MANAGED_RESOURCE_NAME).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(config_maps.get_opt("one").await.expect("get").is_none(), "objects deleted with their ManagedResource");
    assert!(daemonsets.get_opt("cri-resmgr-agent").await.expect("get").is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("stops").expect("no panic");
}
