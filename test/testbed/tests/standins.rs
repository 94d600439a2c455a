//! The stand-ins against real apiservers: a seed holding the ManagedResources and a shoot receiving their objects.

use cri_resmgr_testbed::{eventually, object_names};
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

/// A seed control plane with Gardener's CRDs and a shoot control plane, started side by side, and their clients
/// (the planes stop when dropped: callers keep them for the whole test).
async fn seed_and_shoot() -> (ControlPlane, ControlPlane, kube::Client, kube::Client) {
    let (seed, shoot) = tokio::join!(
        ControlPlane::start_named("seed", WorkDir::Temporary),
        ControlPlane::start_named("shoot", WorkDir::Temporary)
    );
    let (seed, shoot) = (seed.expect("seed"), shoot.expect("shoot"));
    let (seed_client, shoot_client) = (seed.client().await.expect("client"), shoot.client().await.expect("client"));
    control_plane::install_crds(&seed_client, cri_resmgr_testbed::crds::all().expect("CRDs")).await.expect("CRDs");
    (seed, shoot, seed_client, shoot_client)
}

fn condition(mr: &ManagedResource, type_: &str) -> Option<ConditionStatus> {
    mr.condition(type_).map(|c| c.status.clone())
}

#[tokio::test]
async fn resource_manager_applies_prunes_reports_and_deletes_as_gardener_resource_manager_does() {
    let (_seed, _shoot, seed_client, shoot_client) = seed_and_shoot().await;
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
    let left = object_names(&secrets).await;
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

/// gardenlet's stand-in drives the real controller (in this process, with its OSC webhook registered in the seed)
/// through enable, disable, enable again and shoot deletion; gardener-resource-manager's stand-in applies into the
/// shoot. Each step must finish as gardenlet's flow requires (ready, or gone) and leave the shoot as it says.
#[tokio::test]
async fn gardenlet_enables_disables_and_deletes_the_extension_with_the_real_controller() {
    use cri_resmgr_testbed::dev::{
        DEV_EXTENSION_NAMESPACE, ensure_namespace, local_controller_options, loopback_webhook_options,
        wait_for_registration,
    };
    use cri_resmgr_testbed::standins::gardenlet::{Gardenlet, node_name, osc_name, seed_namespace};
    use cri_resmgr_testbed::standins::node_agent::{CleanerPods, NodeAgent, on_node};
    use gardener_extension_cri_resmgr::apis::core::Shoot as GardenShoot;
    use gardener_extension_cri_resmgr::apis::extensions::{Extension, OperatingSystemConfig, OscPurpose};
    use gardener_extension_cri_resmgr::constants::{
        CONTAINERD_SOCKET_ENDPOINT, NODE_BINARY_PATH, NODE_STATE_DIR, RELAY_SOCKET_ENDPOINT,
    };
    use gardener_extension_cri_resmgr::constants::{EXTENSION_TYPE, UNIT_NAME};
    use gardener_extension_cri_resmgr::runtime::registration::CONTROLLER_CONFIG_NAME;

    let (seed, _shoot, seed_client, shoot_client) = seed_and_shoot().await;
    ensure_namespace(&seed_client, DEV_EXTENSION_NAMESPACE).await.expect("extension namespace");
    let shutdown = CancellationToken::new();
    let webhook = loopback_webhook_options(seed.dir().join("webhook-certs")).expect("webhook options");
    let controller = tokio::spawn(gardener_extension_cri_resmgr::commands::controller::run(
        local_controller_options(webhook),
        seed_client.clone(),
        shutdown.clone(),
    ));
    wait_for_registration(&seed_client, CONTROLLER_CONFIG_NAME, "controller", &controller).await.expect("registered");

    let mut garden_shoot: GardenShoot = gardener_extension_cri_resmgr::yaml::from_str(
        &std::fs::read_to_string(cri_resmgr_testbed::repo_root().join("examples/shoot.yaml")).expect("example"),
    )
    .expect("example Shoot");
    let namespace = seed_namespace(&garden_shoot);
    let pool = garden_shoot.spec.provider.workers[0].name.clone();
    let node = node_name(&pool, 0);
    let nodes_dir = tempfile::tempdir().expect("nodes dir");
    let node_agent = NodeAgent::new(seed_client.clone(), nodes_dir.path().to_path_buf());
    let root = node_agent.root(&node);
    let kubelet = Kubelet::with_runner(shoot_client.clone(), Arc::new(CleanerPods { nodes: node_agent.clone() }));
    let shoots = Shoots::default();
    shoots.insert(&namespace, Shoot::with_kubelet(shoot_client.clone(), kubelet));
    let running = tokio::spawn(ResourceManager::new(seed_client.clone(), shoots).run(shutdown.clone()));
    let gardenlet = Gardenlet::new(seed_client.clone()).expect("gardenlet");
    let machines = vec![(pool.clone(), node.clone())];
    let node_agent_task =
        tokio::spawn(node_agent.clone().run(namespace.clone(), machines, Duration::from_millis(300), shutdown.clone()));

    let extensions: Api<Extension> = Api::namespaced(seed_client.clone(), &namespace);
    let oscs: Api<OperatingSystemConfig> = Api::namespaced(seed_client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(shoot_client.clone(), "kube-system");
    let daemonsets: Api<DaemonSet> = Api::namespaced(shoot_client.clone(), "kube-system");
    let mrs: Api<ManagedResource> = Api::namespaced(seed_client.clone(), &namespace);
    let has_unit = |osc: OperatingSystemConfig| osc.spec.units.iter().any(|unit| unit.name == UNIT_NAME);

    // Enable: ready Extension, agent in the shoot on the pool's node, cri-resmgr in the pool's reconcile OSC.
    gardenlet.reconcile(&garden_shoot, &shoot_client).await.expect("shoot reconcile with the extension");
    assert!(extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_some());
    // gardener-resource-manager applies after the Extension reported success (the Extension does not wait for it).
    eventually("the agent's config is shipped", || async {
        config_maps.get_opt("cri-resmgr-config.default").await.ok()?.map(|_| ())
    })
    .await;
    let reconcile_osc = osc_name(&pool, &OscPurpose::Reconcile);
    assert!(has_unit(oscs.get(&reconcile_osc).await.expect("reconcile OSC")), "the webhook added cri-resmgr");
    eventually("the agent runs on the pool's node", || async {
        let status = daemonsets.get("cri-resmgr-agent").await.ok()?.status?;
        (status.number_ready == 1).then_some(())
    })
    .await;
    let report = node_agent.apply(&namespace, &pool, &node).await.expect("the node applies the OSC, units verify");
    assert_eq!(report.runtime_endpoint.as_deref(), Some(RELAY_SOCKET_ENDPOINT), "kubelet talks to cri-resmgr");
    assert!(on_node(&root, NODE_BINARY_PATH).exists(), "the binary (a stub naming its image) is on the node");
    assert!(on_node(&root, NODE_STATE_DIR).exists(), "cri-resmgr ran");

    // Disable: the Extension goes (after the cleaner), the OSC comes back without cri-resmgr, the shoot is clean.
    let enabled = garden_shoot.spec.extensions.clone();
    garden_shoot.spec.extensions.clear();
    gardenlet.reconcile(&garden_shoot, &shoot_client).await.expect("shoot reconcile without the extension");
    assert!(extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_none(), "the Extension is gone");
    assert!(!has_unit(oscs.get(&reconcile_osc).await.expect("reconcile OSC")), "no cri-resmgr in the OSC");
    assert!(config_maps.get_opt("cri-resmgr-config.default").await.expect("get").is_none(), "agent config gone");
    assert!(daemonsets.get_opt("cri-resmgr-cleaner").await.expect("get").is_none(), "the cleaner is gone too");
    assert!(mrs.list(&Default::default()).await.expect("list").items.is_empty(), "no ManagedResource left");
    let report = node_agent.apply(&namespace, &pool, &node).await.expect("the node applies the OSC");
    assert_eq!(report.runtime_endpoint.as_deref(), Some(CONTAINERD_SOCKET_ENDPOINT), "kubelet restored");
    assert!(!on_node(&root, NODE_BINARY_PATH).exists(), "no cri-resmgr binary left");
    assert!(!on_node(&root, NODE_STATE_DIR).exists(), "the cleaner ran");

    // Enable again, then delete the shoot: everything of the extension goes.
    garden_shoot.spec.extensions = enabled;
    gardenlet.reconcile(&garden_shoot, &shoot_client).await.expect("shoot reconcile with the extension again");
    // gardener-resource-manager applies after the Extension reported success (the Extension does not wait for it).
    eventually("the agent's config is shipped again", || async {
        config_maps.get_opt("cri-resmgr-config.default").await.ok()?.map(|_| ())
    })
    .await;
    gardenlet.delete(&garden_shoot, &shoot_client).await.expect("shoot deletion");
    assert!(extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_none());
    assert!(mrs.list(&Default::default()).await.expect("list").items.is_empty(), "no ManagedResource left");
    let secrets: Api<Secret> = Api::namespaced(seed_client.clone(), &namespace);
    let left = object_names(&secrets).await;
    assert!(left.is_empty(), "no ManagedResource Secret left: {left:?}");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), node_agent_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(15), controller).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
}
