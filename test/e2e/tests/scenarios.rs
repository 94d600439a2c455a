//! The scenarios of `make e2e`: each starts its landscape — the local one (garden, seed, shoot; the real binaries
//! from the charts; the stand-ins), or a real Gardener with `E2E_GARDEN_KUBECONFIG` (docs/e2e.md) — drives a Shoot
//! through the garden API as a user would, lets it be reconciled (locally gardenlet's stand-in carries it to the
//! seed; a real gardenlet does so by itself), and observes garden, seed, shoot and node. Each prints what it
//! proves, and ends by checking that nothing is left behind: no ManagedResource Secret, no finalizer, no object of
//! the extension in the shoot. What a real landscape does not let a test control is skipped there, visibly.

use std::future::Future;
use std::time::Duration;

use cri_resmgr_e2e::garden::{Target, shoot_name};
use cri_resmgr_e2e::landscape::{
    GARDENER_CONVERGE_TIMEOUT, Landscape, LandscapeError, for_local_gardener, origin_in_namespace,
};
use cri_resmgr_e2e::topology::Topology;
use cri_resmgr_testbed::standins::resource_manager::ANNOTATION_ORIGIN;
use cri_resmgr_testbed::{eventually, object_names};
use gardener_extension_cri_resmgr::apis::core::Shoot;
use gardener_extension_cri_resmgr::apis::extensions::Extension;
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    AGENT_NAME, CONTAINERD_SOCKET_ENDPOINT, EXTENSION_TYPE, LABEL_GARBAGE_COLLECTABLE_REFERENCE,
    MANAGED_RESOURCE_SECRET_PREFIX, NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_STATE_DIR,
    NODE_SYSTEMD_UNIT_DIR, RELAY_SOCKET_ENDPOINT, SHOOT_MANAGED_RESOURCE_NAME, SHOOT_SYSTEM_NAMESPACE, UNIT_NAME,
};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;

const AGENT_DEFAULT_CONFIG: &str = "cri-resmgr-config.default";
/// How often a scenario looks again at a real landscape while it converges.
const REAL_LANDSCAPE_POLL: Duration = Duration::from_secs(2);
/// How long the stand-in's caller waits before it retries a failed shoot reconcile, as gardenlet would.
const RECONCILE_RETRY: Duration = Duration::from_secs(2);
/// What the Extension's last operation says while its deletion waits for the node cleaner.
const CLEANER_WAITING: &str = "Waiting until cri-resmgr is removed from every node";
/// How long a garbage-collectable Secret may outlive its ManagedResource: gardener-resource-manager's collector
/// spares Secrets younger than its minimum age, and runs every few seconds here.
const GARBAGE_COLLECTION_TIMEOUT: Duration =
    Duration::from_secs(cri_resmgr_testbed::standins::resource_manager::GARBAGE_MIN_AGE.as_secs() + 10);

/// One Shoot's life in the landscape.
struct Scenario {
    landscape: Landscape,
    shoots: Api<Shoot>,
    name: String,
    /// The Shoot's namespace in the seed.
    namespace: String,
    /// The Shoot's first worker pool, and every pool.
    pool: String,
    pools: Vec<String>,
    /// Locally: node-agent's stand-in following the pools' OSCs (a real landscape's node agents run by themselves).
    node_agent: CancellationToken,
}

/// Skips a scenario in a real Gardener, saying why, before anything is created there.
macro_rules! local_only {
    ($why:expr) => {
        match Target::from_env() {
            Ok(Target::Local) => {}
            Ok(Target::Gardener { .. }) => {
                println!("skipped in a real Gardener: {}", $why);
                return;
            }
            Err(e) => panic!("{e}"),
        }
    };
}

impl Scenario {
    /// Starts the landscape and creates the example Shoot (with the extension) in the garden: the admission webhook
    /// judges and defaults it.
    async fn create(scenario: &str) -> Scenario {
        Scenario::create_with(scenario, |_| {}).await
    }

    /// [`Scenario::create`], then the Shoot reconciled and the extension asserted enabled: where most scenarios
    /// start.
    async fn enabled(scenario: &str) -> Scenario {
        let created = Scenario::create(scenario).await;
        created.reconcile(&created.shoot().await).await;
        created.assert_enabled().await;
        created
    }

    /// As [`Scenario::create`], with `change` applied to the example Shoot before it is created.
    async fn create_with(scenario: &str, change: impl FnOnce(&mut Shoot)) -> Scenario {
        let target = Target::from_env().unwrap_or_else(|e| panic!("{e}"));
        let landscape = Landscape::start(&target).await.unwrap_or_else(|e| panic!("the landscape starts: {e}"));
        let project_namespace = landscape.project_namespace().to_string();
        if let Landscape::Local(topology) = &landscape {
            // The local garden has no projects: the project's namespace is created here.
            let garden_namespace = Namespace {
                metadata: ObjectMeta { name: Some(project_namespace.clone()), ..ObjectMeta::default() },
                ..Namespace::default()
            };
            Api::<Namespace>::all(topology.garden_client.clone())
                .create(&PostParams::default(), &garden_namespace)
                .await
                .expect("project namespace");
        }
        let mut shoot: Shoot = gardener_extension_cri_resmgr::yaml::from_str(
            &std::fs::read_to_string(cri_resmgr_testbed::repo_root().join("examples/shoot.yaml")).expect("example"),
        )
        .expect("example Shoot");
        if !matches!(landscape, Landscape::Local(_)) {
            for_local_gardener(&mut shoot);
        }
        let name = shoot_name(scenario, &project_namespace, std::process::id());
        shoot.metadata.name = Some(name.clone());
        shoot.metadata.namespace = Some(project_namespace.clone());
        change(&mut shoot);
        let shoots = landscape.shoots();
        let created = shoots.create(&PostParams::default(), &shoot).await;
        let created = created.unwrap_or_else(|e| panic!("the garden accepts the Shoot: {e}\n{}", landscape.logs()));
        let kind = created.spec.extensions[0].provider_config.as_ref().map(|c| c["kind"].clone());
        assert_eq!(kind, Some(serde_json::json!("CriResmgrConfig")), "the admission webhook defaulted the Shoot");
        println!("proven: the garden's admission webhook (chart-deployed) accepts and defaults the Shoot");

        let namespace = landscape.seed_namespace(&created);
        let pools: Vec<String> = created.spec.provider.workers.iter().map(|worker| worker.name.clone()).collect();
        let pool = pools[0].clone();
        let node_agent = CancellationToken::new();
        if let Landscape::Local(topology) = &landscape {
            let machines = pools.iter().map(|pool| (pool.clone(), local_node(pool))).collect();
            topology.serve_shoot(&namespace);
            tokio::spawn(topology.node_agent.clone().run(
                namespace.clone(),
                machines,
                Duration::from_millis(300),
                node_agent.clone(),
            ));
        }
        Scenario { landscape, shoots, name, namespace, pool, pools, node_agent }
    }

    fn is_local(&self) -> bool {
        matches!(self.landscape, Landscape::Local(_))
    }

    /// The local topology, for what only it can do (restart a control plane, a second seed, ...): a scenario
    /// reaches this only after [`local_only!`].
    fn topology(&self) -> &Topology {
        match &self.landscape {
            Landscape::Local(topology) => topology,
            Landscape::Gardener(_) => panic!("only the local landscape has a topology"),
        }
    }

    fn topology_mut(&mut self) -> &mut Topology {
        match &mut self.landscape {
            Landscape::Local(topology) => topology,
            Landscape::Gardener(_) => panic!("only the local landscape has a topology"),
        }
    }

    fn seed_client(&self) -> kube::Client {
        self.landscape.seed_client().clone()
    }

    /// The shoot's apiserver (admin).
    async fn shoot_client(&self) -> kube::Client {
        self.landscape.shoot_client(&self.name).await.unwrap_or_else(|e| panic!("a client of the shoot: {e}"))
    }

    fn extensions(&self) -> Api<Extension> {
        Api::namespaced(self.seed_client(), &self.namespace)
    }

    /// `check` until it gives a value: within the test bed's convergence timeout locally, longer in a real
    /// landscape (images are pulled, machines join).
    async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        if self.is_local() {
            return cri_resmgr_testbed::eventually(what, check).await;
        }
        let deadline = tokio::time::Instant::now() + GARDENER_CONVERGE_TIMEOUT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(REAL_LANDSCAPE_POLL).await;
        }
    }

    /// Asserts what `check` says about the nodes. Locally each observation applies the pool's current OSC first,
    /// so it holds at once or not at all; a real node applies its OSC on its own schedule, so it is polled.
    async fn assert_on_nodes<F, Fut>(&self, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if self.is_local() {
            if let Err(problem) = check().await {
                panic!("{problem}");
            }
            return;
        }
        let deadline = tokio::time::Instant::now() + GARDENER_CONVERGE_TIMEOUT;
        loop {
            match check().await {
                Ok(()) => return,
                Err(problem) if tokio::time::Instant::now() > deadline => panic!("{problem}"),
                Err(_) => tokio::time::sleep(REAL_LANDSCAPE_POLL).await,
            }
        }
    }

    /// The Shoot as the garden holds it now.
    async fn shoot(&self) -> Shoot {
        self.shoots.get(&self.name).await.expect("the Shoot")
    }

    /// Writes a change of the Shoot to the garden and lets it be reconciled.
    async fn update(&self, change: impl FnOnce(&mut Shoot)) {
        let mut shoot = self.shoot().await;
        change(&mut shoot);
        let updated = self.shoots.replace(&self.name, &PostParams::default(), &shoot).await.expect("update the Shoot");
        self.reconcile(&updated).await;
    }

    /// Lets the Shoot be reconciled: locally gardenlet's stand-in runs the shoot reconcile; a real gardenlet runs
    /// it by itself and this waits until the Shoot reports it done.
    async fn reconcile(&self, shoot: &Shoot) {
        if let Err(e) = self.landscape.reconcile(shoot).await {
            panic!("the shoot reconcile: {e}\n{}", self.landscape.logs());
        }
    }

    /// Deletes the Shoot (locally the way gardenlet does, then from the garden).
    async fn delete(&self) {
        let shoot = self.shoot().await;
        if let Err(e) = self.landscape.delete(&shoot).await {
            panic!("the shoot deletion: {e}\n{}", self.landscape.logs());
        }
        println!("proven: the shoot deletion finished (Extension deleted and gone, no node cleaner needed)");
    }

    /// A machine of `pool` (locally its one machine; in a real landscape the first Node of the pool, once one
    /// has joined).
    async fn node_of(&self, pool: &str) -> String {
        if self.is_local() {
            return local_node(pool);
        }
        self.eventually(&format!("a node of {pool} joined"), || async {
            self.landscape.nodes(&self.name, pool).await.ok()?.into_iter().next()
        })
        .await
    }

    /// Every machine of every pool, as `(pool, node)`.
    async fn machines(&self) -> Vec<(String, String)> {
        if self.is_local() {
            return self.pools.iter().map(|pool| (pool.clone(), local_node(pool))).collect();
        }
        let mut machines = Vec::new();
        for pool in &self.pools {
            let nodes =
                self.landscape.nodes(&self.name, pool).await.unwrap_or_else(|e| panic!("the nodes of {pool}: {e}"));
            machines.extend(nodes.into_iter().map(|node| (pool.clone(), node)));
        }
        machines
    }

    /// The number of machines of `pool`: the agent's pods expected there. In a real landscape it waits until at
    /// least one has joined, so that "ready on every node" is never judged over none.
    async fn node_count(&self, pool: &str) -> i32 {
        if self.is_local() {
            return 1;
        }
        self.eventually(&format!("a node of {pool} joined"), || async {
            let nodes = self.landscape.nodes(&self.name, pool).await.ok()?;
            i32::try_from(nodes.len()).ok().filter(|count| *count > 0)
        })
        .await
    }

    /// Whether the agent's DaemonSet is ready on the `nodes` of a pool: locally exactly there (one machine per
    /// pool); in a real landscape on at least those (other selected pools add theirs), every scheduled pod ready.
    fn agent_ready_on(&self, status: &DaemonSetStatus, nodes: i32) -> bool {
        let (desired, ready) = (status.desired_number_scheduled, status.number_ready);
        if self.is_local() { (desired, ready) == (nodes, nodes) } else { desired >= nodes && ready == desired }
    }

    /// The first pool's node has applied its pool's current reconcile OSC; its kubelet's runtime endpoint.
    async fn node_endpoint(&self) -> Option<String> {
        self.endpoint_of(&self.pool).await
    }

    /// A node of `pool` has applied its pool's current reconcile OSC; its kubelet's runtime endpoint.
    async fn endpoint_of(&self, pool: &str) -> Option<String> {
        let node = self.node_of(pool).await;
        self.try_endpoint_on(pool, &node).await.unwrap_or_else(|e| panic!("{node} applies its OSC: {e}"))
    }

    /// [`Self::endpoint_of`] for use inside `eventually`, where a failed apply is asked again instead of failing.
    async fn try_endpoint_of(&self, pool: &str) -> Result<Option<String>, LandscapeError> {
        let node = self.node_of(pool).await;
        self.try_endpoint_on(pool, &node).await
    }

    async fn try_endpoint_on(&self, pool: &str, node: &str) -> Result<Option<String>, LandscapeError> {
        self.landscape.runtime_endpoint(&self.namespace, pool, node).await
    }

    /// Whether `path` exists on a node of `pool`.
    async fn on(&self, pool: &str, path: &str) -> bool {
        let node = self.node_of(pool).await;
        self.on_machine(&node, path).await
    }

    async fn on_machine(&self, node: &str, path: &str) -> bool {
        self.try_on_machine(node, path).await.unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// [`Self::on`] for [`Self::assert_on_nodes`], where a failed look is asked again in a real landscape.
    async fn try_on(&self, pool: &str, path: &str) -> Result<bool, String> {
        let node = self.node_of(pool).await;
        self.try_on_machine(&node, path).await
    }

    async fn try_on_machine(&self, node: &str, path: &str) -> Result<bool, String> {
        let exists = self.landscape.path_exists(&self.namespace, node, path).await;
        exists.map_err(|e| format!("looking for {path} on {node}: {e}"))
    }

    /// [`Self::endpoint_of`] for [`Self::assert_on_nodes`].
    async fn try_endpoint(&self, pool: &str) -> Result<Option<String>, String> {
        self.try_endpoint_of(pool).await.map_err(|e| format!("a node of {pool} applies its OSC: {e}"))
    }

    /// What the file at `path` on a node of `pool` holds (empty when it is missing).
    async fn read_on(&self, pool: &str, path: &str) -> String {
        self.try_read_on(pool, path).await.unwrap_or_else(|problem| panic!("{problem}"))
    }

    /// [`Self::read_on`] for use inside `eventually`, where a failed read is asked again.
    async fn try_read_on(&self, pool: &str, path: &str) -> Result<String, String> {
        let node = self.node_of(pool).await;
        let content = self.landscape.read_file(&self.namespace, &node, path).await;
        content.map_err(|e| format!("reading {path} on {node}: {e}"))
    }

    async fn assert_enabled(&self) {
        let extensions = self.extensions();
        // The OSC writes after the Extension was ready make the controller look again (the pending-node-changes
        // note); it settles ready.
        self.eventually("the Extension is ready as gardenlet checks it", || async {
            let extension = extensions.get(EXTENSION_TYPE).await.ok()?;
            gardener_extension_cri_resmgr::contract::status::is_ready(&extension).then_some(())
        })
        .await;
        let shoot_client = self.shoot_client().await;
        let config_maps: Api<ConfigMap> = Api::namespaced(shoot_client.clone(), SHOOT_SYSTEM_NAMESPACE);
        // gardener-resource-manager applies the ManagedResource after the Extension reported success.
        self.eventually("the agent's config is in the shoot", || async {
            config_maps.get_opt(AGENT_DEFAULT_CONFIG).await.ok()?.map(|_| ())
        })
        .await;
        let daemonsets: Api<DaemonSet> = Api::namespaced(shoot_client, SHOOT_SYSTEM_NAMESPACE);
        let nodes = self.node_count(&self.pool).await;
        // The machine joins after the shoot reconcile wrote it; the kubelets report the agent's pod then.
        self.eventually("the agent runs on the node", || async {
            let agent = daemonsets.get(AGENT_NAME).await.ok()?.status?;
            self.agent_ready_on(&agent, nodes).then_some(())
        })
        .await;
        self.assert_on_nodes(|| async {
            let endpoint = self.try_endpoint(&self.pool).await?;
            if endpoint.as_deref() != Some(RELAY_SOCKET_ENDPOINT) {
                return Err(format!("kubelet → cri-resmgr: kubelet's endpoint is {endpoint:?}"));
            }
            if !self.try_on(&self.pool, NODE_BINARY_PATH).await? {
                return Err("the cri-resmgr binary is on the node: it is not".to_string());
            }
            Ok(())
        })
        .await;
        println!(
            "proven: enabled — Extension ready, agent running in the shoot, kubelet talks to cri-resmgr on the node"
        );
    }

    async fn assert_disabled(&self) {
        let extensions = self.extensions();
        assert!(extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_none(), "the Extension is gone");
        for (pool, node) in self.machines().await {
            self.assert_on_nodes(|| async {
                let endpoint =
                    self.try_endpoint_on(&pool, &node).await.map_err(|e| format!("{node} applies its OSC: {e}"))?;
                if endpoint.as_deref() != Some(CONTAINERD_SOCKET_ENDPOINT) {
                    return Err(format!("kubelet → containerd again on {node}: kubelet's endpoint is {endpoint:?}"));
                }
                if self.try_on_machine(&node, NODE_BINARY_PATH).await? {
                    return Err(format!("no cri-resmgr binary on {node}: it is there"));
                }
                if self.try_on_machine(&node, NODE_STATE_DIR).await? {
                    return Err(format!("the cleaner removed cri-resmgr's state from {node}: it is there"));
                }
                Ok(())
            })
            .await;
        }
        self.assert_nothing_left().await;
        println!("proven: disabled — node restored to containerd, no cri-resmgr files, the cleaner ran");
    }

    /// No ManagedResource or its Secret in the seed namespace, no object of the extension in the shoot.
    async fn assert_nothing_left(&self) {
        self.assert_nothing_left_in(&self.seed_client()).await
    }

    /// As [`Scenario::assert_nothing_left`], for the shoot's namespace in `seed`.
    async fn assert_nothing_left_in(&self, seed: &kube::Client) {
        let seed = seed.clone();
        let mrs: Api<ManagedResource> = Api::namespaced(seed.clone(), &self.namespace);
        let left = object_names(&mrs).await;
        assert!(left.is_empty(), "ManagedResources left: {left:?}");
        let secrets: Api<Secret> = Api::namespaced(seed, &self.namespace);
        if self.is_local() {
            let orphans = || async {
                let names = object_names(&secrets).await;
                names.into_iter().filter(|name| name.starts_with(MANAGED_RESOURCE_SECRET_PREFIX)).collect::<Vec<_>>()
            };
            // A Secret the ManagedResource referenced before its last update is gardener-resource-manager's
            // garbage collector's to remove (once it is old enough); the current ones go with the ManagedResource.
            let collected = tokio::time::timeout(GARBAGE_COLLECTION_TIMEOUT, async {
                while !orphans().await.is_empty() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            })
            .await;
            if collected.is_err() {
                panic!("orphaned ManagedResource Secrets: {:?}", orphans().await);
            }
        } else {
            // A real gardener-resource-manager collects unreferenced Secrets on its own (long) period: what may
            // stay is only what it will collect — garbage-collectable Secrets, no ManagedResource referring to them.
            let uncollectable: Vec<String> = secrets
                .list(&Default::default())
                .await
                .expect("list")
                .items
                .into_iter()
                .filter(|secret| {
                    let name = secret.metadata.name.clone().unwrap_or_default();
                    let labels = secret.metadata.labels.clone().unwrap_or_default();
                    name.starts_with(MANAGED_RESOURCE_SECRET_PREFIX)
                        && labels.get(LABEL_GARBAGE_COLLECTABLE_REFERENCE).map(String::as_str) != Some("true")
                })
                .filter_map(|secret| secret.metadata.name)
                .collect();
            assert!(uncollectable.is_empty(), "ManagedResource Secrets nobody collects: {uncollectable:?}");
        }
        if !self.is_local() && self.shoots.get_opt(&self.name).await.expect("get").is_none() {
            println!("proven: nothing left in the seed; the shoot cluster itself is gone with the Shoot");
            return;
        }
        let shoot = self.shoot_client().await;
        let ours = |annotations: Option<std::collections::BTreeMap<String, String>>| {
            annotations
                .unwrap_or_default()
                .get(ANNOTATION_ORIGIN)
                .is_some_and(|o| origin_in_namespace(o, &self.namespace))
        };
        let mut leftovers = Vec::new();
        for cm in Api::<ConfigMap>::all(shoot.clone()).list(&Default::default()).await.expect("list").items {
            if ours(cm.metadata.annotations) {
                leftovers.push(format!("ConfigMap {:?}", cm.metadata.name))
            }
        }
        for ds in Api::<DaemonSet>::all(shoot.clone()).list(&Default::default()).await.expect("list").items {
            if ours(ds.metadata.annotations) {
                leftovers.push(format!("DaemonSet {:?}", ds.metadata.name))
            }
        }
        for sa in Api::<ServiceAccount>::all(shoot.clone()).list(&Default::default()).await.expect("list").items {
            if ours(sa.metadata.annotations) {
                leftovers.push(format!("ServiceAccount {:?}", sa.metadata.name))
            }
        }
        for role in Api::<ClusterRole>::all(shoot.clone()).list(&Default::default()).await.expect("list").items {
            if ours(role.metadata.annotations) {
                leftovers.push(format!("ClusterRole {:?}", role.metadata.name))
            }
        }
        for binding in Api::<ClusterRoleBinding>::all(shoot).list(&Default::default()).await.expect("list").items {
            if ours(binding.metadata.annotations) {
                leftovers.push(format!("ClusterRoleBinding {:?}", binding.metadata.name))
            }
        }
        assert!(leftovers.is_empty(), "left in the shoot: {leftovers:?}");
        println!(
            "proven: nothing left behind — no ManagedResource, no orphaned Secret, no extension object in the shoot"
        );
    }

    async fn finish(mut self) {
        self.assert_nothing_left().await;
        let extensions = self.extensions();
        assert!(
            extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_none(),
            "no Extension (and so no finalizer) left"
        );
        self.node_agent.cancel();
        if let Landscape::Local(topology) = &mut self.landscape {
            for controller in &mut topology.controllers {
                controller.stop().await;
            }
        }
    }
}

/// The one machine of `pool` in the local landscape.
fn local_node(pool: &str) -> String {
    cri_resmgr_testbed::standins::gardenlet::node_name(pool, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_enable_delete() {
    let scenario = Scenario::enabled("create-enable-delete").await;
    scenario.delete().await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_delete() {
    let scenario = Scenario::enabled("enable-disable-delete").await;
    scenario.update(|shoot| shoot.spec.extensions.clear()).await;
    scenario.assert_disabled().await;
    scenario.delete().await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_reenable_delete() {
    let scenario = Scenario::enabled("enable-disable-reenable-delete").await;
    let enabled = scenario.shoot().await.spec.extensions;
    scenario.update(|shoot| shoot.spec.extensions.clear()).await;
    scenario.assert_disabled().await;
    scenario.update(|shoot| shoot.spec.extensions = enabled).await;
    scenario.assert_enabled().await;
    println!("proven: re-enabled after a disable — everything is back");
    scenario.delete().await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_shoot_is_rejected_in_the_garden() {
    let scenario = Scenario::create("invalid-shoot-is-rejected").await;
    scenario.reconcile(&scenario.shoot().await).await;
    let broken_config = serde_json::json!({"configs": {"default": "policy:\n  Active: no-such-policy\n"}});

    // A new Shoot with a broken config never reaches the seed.
    let mut invalid = scenario.shoot().await;
    // The labels stay: gardener-apiserver labels every Shoot with the extension types it enables, and the
    // admission webhook selects Shoots by that label.
    invalid.metadata = ObjectMeta {
        name: Some(format!("{}-bad", scenario.name)),
        namespace: Some(scenario.landscape.project_namespace().to_string()),
        labels: invalid.metadata.labels.clone(),
        annotations: invalid.metadata.annotations.clone(),
        ..ObjectMeta::default()
    };
    invalid.spec.extensions[0].provider_config = Some(broken_config.clone());
    let refused = scenario.shoots.create(&PostParams::default(), &invalid).await;
    assert_refused_by_the_webhook(&refused);
    let seed_namespace = scenario.landscape.seed_namespace(&invalid);
    let namespaces: Api<Namespace> = Api::all(scenario.seed_client());
    assert!(namespaces.get_opt(&seed_namespace).await.expect("get").is_none(), "nothing reached the seed");

    // Breaking the config of a running Shoot is refused too; its Extension keeps the working config.
    let mut broken = scenario.shoot().await;
    broken.spec.extensions[0].provider_config = Some(broken_config);
    let refused = scenario.shoots.replace(&scenario.name, &PostParams::default(), &broken).await;
    assert_refused_by_the_webhook(&refused);
    let config = scenario.extensions().get(EXTENSION_TYPE).await.expect("the Extension").spec.provider_config;
    assert!(!config.unwrap_or_default().to_string().contains("no-such-policy"), "the seed never saw the broken config");
    println!("proven: an invalid Shoot is rejected in the garden (create and update); nothing of it reaches the seed");
    scenario.delete().await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernate_and_wake() {
    let scenario = Scenario::enabled("hibernate-and-wake").await;
    let hibernation = |enabled: bool| {
        move |shoot: &mut Shoot| {
            shoot.spec.hibernation = Some(gardener_extension_cri_resmgr::apis::core::Hibernation {
                enabled: Some(enabled),
                ..Default::default()
            })
        }
    };
    scenario.update(hibernation(true)).await;
    if scenario.is_local() {
        let daemonsets: Api<DaemonSet> = Api::namespaced(scenario.shoot_client().await, SHOOT_SYSTEM_NAMESPACE);
        scenario
            .eventually("the hibernated shoot has no agent pods", || async {
                let agent = daemonsets.get(AGENT_NAME).await.ok()?.status?;
                (agent.desired_number_scheduled == 0).then_some(())
            })
            .await;
    } else {
        // A hibernated shoot's apiserver is scaled down too: there is nothing to ask about the agent's pods.
        println!("skipped in a real Gardener: the agent's pods while hibernated (the shoot's apiserver is down too)");
    }
    let extensions = scenario.extensions();
    scenario
        .eventually("the Extension stays and is ready while hibernated", || async {
            let extension = extensions.get(EXTENSION_TYPE).await.ok()?;
            gardener_extension_cri_resmgr::contract::status::is_ready(&extension).then_some(())
        })
        .await;
    if scenario.is_local() {
        println!("proven: hibernated — the Extension stays ready, the machines and the agent's pods are gone");
    } else {
        println!("proven: hibernated — the Extension stays ready");
    }
    // The machine is gone with its disk; the one that comes back starts empty (a real one is a new machine).
    if let Landscape::Local(topology) = &scenario.landscape {
        let _ = std::fs::remove_dir_all(topology.node_agent.root(&local_node(&scenario.pool)));
    }
    scenario.update(hibernation(false)).await;
    scenario.assert_enabled().await;
    println!("proven: woken up — the new machine gets cri-resmgr from its OSC and the agent runs again");
    scenario.delete().await;
    scenario.finish().await;
}

/// The Shoot's cri-resmgr `configs` in the versioned providerConfig form (what the admission webhook stored).
fn set_configs(shoot: &mut Shoot, configs: serde_json::Value) {
    let provider_config = shoot.spec.extensions[0].provider_config.get_or_insert_with(|| serde_json::json!({}));
    provider_config["configs"] = configs;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_change_reaches_agent_and_node() {
    let scenario = Scenario::enabled("config-change").await;
    let fallback_before = scenario.read_on(&scenario.pool, NODE_FALLBACK_CONFIG_PATH).await;
    assert!(fallback_before.contains("750m"), "the example's fallback is on the node: {fallback_before}");

    // One Shoot change: the agent's `default` (a ConfigMap in the shoot) and the node's `fallback` (a file the
    // pool's OSC carries) both change.
    scenario
        .update(|shoot| {
            set_configs(
                shoot,
                serde_json::json!({
                    "default": "policy:\n  Active: none\n",
                    "fallback": "policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: 1500m\n",
                }),
            )
        })
        .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.shoot_client().await, SHOOT_SYSTEM_NAMESPACE);
    scenario
        .eventually("the agent's default config in the shoot is the new one", || async {
            let policy = config_maps.get(AGENT_DEFAULT_CONFIG).await.ok()?.data?.remove("policy")?;
            (policy.contains("none") && !policy.contains("topology-aware")).then_some(())
        })
        .await;
    println!("proven: a `default` change reaches the agent's ConfigMap in the shoot");

    // The shoot reconcile that carried the change wrote the pools' OSCs after the Extension was ready: the node
    // applies the new fallback from its OSC, and cri-resmgr's unit is restarted for it (a file of its filePaths).
    let fallback_after = scenario
        .eventually("the node's fallback file is the new one", || async {
            scenario.try_endpoint_of(&scenario.pool).await.ok()?;
            let fallback = scenario.try_read_on(&scenario.pool, NODE_FALLBACK_CONFIG_PATH).await.ok()?;
            fallback.contains("1500m").then_some(fallback)
        })
        .await;
    assert!(!fallback_after.contains("750m"), "the old fallback is gone: {fallback_after}");
    assert_eq!(scenario.node_endpoint().await.as_deref(), Some(RELAY_SOCKET_ENDPOINT), "kubelet → cri-resmgr still");
    println!("proven: a `fallback` change reaches the node's fallback file through the OSC the shoot reconcile wrote");
    scenario.delete().await;
    scenario.finish().await;
}

/// The example Shoot with a second containerd pool, `second-worker`, and cri-resmgr only on the first.
fn two_pools_first_selected(shoot: &mut Shoot) {
    let mut second = shoot.spec.provider.workers[0].clone();
    second.name = SECOND_POOL.to_string();
    shoot.spec.provider.workers.push(second);
    let first = shoot.spec.provider.workers[0].name.clone();
    let provider_config = shoot.spec.extensions[0].provider_config.get_or_insert_with(|| serde_json::json!({}));
    provider_config["workerPools"] = serde_json::json!([first]);
}

const SECOND_POOL: &str = "second-worker";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_selection_change() {
    let scenario = Scenario::create_with("pool-selection", two_pools_first_selected).await;
    scenario.reconcile(&scenario.shoot().await).await;
    scenario.assert_enabled().await;
    let (first_pool, second_pool) = (scenario.pool.clone(), scenario.pools[1].clone());
    assert_eq!(
        scenario.endpoint_of(&second_pool).await.as_deref(),
        Some(CONTAINERD_SOCKET_ENDPOINT),
        "the unselected pool's kubelet stays on containerd"
    );
    assert!(!scenario.on(&second_pool, NODE_BINARY_PATH).await, "no cri-resmgr on the unselected pool's node");
    println!("proven: only the selected pool's node runs cri-resmgr (the agent runs on one node of two)");

    // The selection moves to the other pool.
    scenario
        .update(|shoot| {
            let provider_config = shoot.spec.extensions[0].provider_config.as_mut().expect("providerConfig");
            provider_config["workerPools"] = serde_json::json!([SECOND_POOL]);
        })
        .await;
    scenario
        .eventually("the newly selected node runs cri-resmgr", || async {
            let endpoint = scenario.try_endpoint_of(&second_pool).await.ok()?;
            (endpoint.as_deref() == Some(RELAY_SOCKET_ENDPOINT)).then_some(())
        })
        .await;
    assert!(scenario.on(&second_pool, NODE_BINARY_PATH).await, "the binary is on the newly selected node");
    assert!(
        scenario.on(&second_pool, NODE_FALLBACK_CONFIG_PATH).await,
        "the fallback config is on the newly selected node"
    );
    scenario
        .assert_on_nodes(|| async {
            let endpoint = scenario.try_endpoint(&first_pool).await?;
            if endpoint.as_deref() != Some(CONTAINERD_SOCKET_ENDPOINT) {
                return Err(format!("the deselected node's kubelet is back on containerd: it is on {endpoint:?}"));
            }
            let unit = format!("{NODE_SYSTEMD_UNIT_DIR}/{UNIT_NAME}");
            for path in [NODE_BINARY_PATH, NODE_FALLBACK_CONFIG_PATH, NODE_ENV_FILE, unit.as_str()] {
                if scenario.try_on(&first_pool, path).await? {
                    return Err(format!("{path} is gone from the deselected node: it is there"));
                }
            }
            Ok(())
        })
        .await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(scenario.shoot_client().await, SHOOT_SYSTEM_NAMESPACE);
    let nodes = scenario.node_count(&second_pool).await;
    scenario
        .eventually("the agent runs on the newly selected pool's nodes only", || async {
            let agent = daemonsets.get(AGENT_NAME).await.ok()?;
            let affinity = serde_json::to_string(&agent.spec.as_ref()?.template.spec.as_ref()?.affinity).ok()?;
            let status = agent.status?;
            (scenario.agent_ready_on(&status, nodes)
                && affinity.contains(SECOND_POOL)
                && !affinity.contains(&first_pool))
            .then_some(())
        })
        .await;
    println!(
        "proven: selection moved — the deselected node is back on containerd without cri-resmgr's files and unit, \
         the newly selected node got them, the agent follows"
    );
    // cri-resmgr's state outside the OSC's paths stays on the deselected node until the cleaner runs, which it
    // does on every containerd pool when the extension is disabled.
    assert!(
        scenario.on(&first_pool, NODE_STATE_DIR).await,
        "cri-resmgr's state stays on the deselected node until the cleaner runs at disabling"
    );
    scenario.update(|shoot| shoot.spec.extensions.clear()).await;
    scenario.assert_disabled().await;
    println!("proven: disabling ran the cleaner on both pools' nodes, the deselected one's state included");
    scenario.delete().await;
    scenario.finish().await;
}

/// Gardener's finalizer on Shoots: the garden keeps a deleted Shoot until gardenlet's deletion flow finished.
const SHOOT_FINALIZER: &str = "gardener";
/// How long the controllers' logs are watched after the shoot namespace vanished: longer than the controller's
/// requeue of a waiting operation (2 s), so that a pass still queued for the gone Extension would have run.
const QUIET_WINDOW: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_delete() {
    use gardener_extension_cri_resmgr::apis::extensions::Cluster;
    use gardener_extension_cri_resmgr::constants::ANNOTATION_FORCE_DELETION;
    use kube::api::{Patch, PatchParams};
    // Gardener accepts the force-deletion annotation only on a Shoot whose deletion failed with one of a few error
    // codes (ERR_CLEANUP_CLUSTER_RESOURCES, ERR_CONFIGURATION_PROBLEM, ERR_INFRA_*), and this scenario stops the
    // shoot's apiserver: neither can a test bring about in a healthy real landscape.
    local_only!("force deletion needs a Shoot whose deletion failed with specific errors (and a stoppable apiserver)");
    let mut scenario = Scenario::enabled("force-delete").await;

    // The user deletes the Shoot; its deletion is stuck (the shoot's apiserver is broken), so they confirm force
    // deletion. The garden keeps the Shoot (gardener's finalizer) until gardenlet is done.
    let finalizer = serde_json::json!({"metadata": {"finalizers": [SHOOT_FINALIZER]}});
    scenario.shoots.patch(&scenario.name, &PatchParams::default(), &Patch::Merge(&finalizer)).await.expect("finalizer");
    scenario.shoots.delete(&scenario.name, &DeleteParams::default()).await.expect("delete the Shoot");
    let force = serde_json::json!({"metadata": {"annotations": {ANNOTATION_FORCE_DELETION: "true"}}});
    let shoot = scenario.shoots.patch(&scenario.name, &PatchParams::default(), &Patch::Merge(&force)).await;
    let shoot = shoot.expect("annotate the Shoot for force deletion");
    assert!(shoot.metadata.deletion_timestamp.is_some(), "the Shoot is being deleted");
    scenario.node_agent.cancel();
    scenario.topology_mut().shoot.stop_apiserver().await.expect("the shoot's apiserver stops");

    let logs: Vec<(String, std::path::PathBuf, usize)> = scenario
        .topology()
        .controllers
        .iter()
        .map(|c| (c.name.clone(), c.log.clone(), std::fs::metadata(&c.log).map(|m| m.len() as usize).unwrap_or(0)))
        .collect();
    if let Err(e) = scenario.topology().gardenlet.force_delete(&shoot).await {
        panic!("gardenlet's force deletion: {e}\n{}", scenario.landscape.logs());
    }
    let unfinalize = serde_json::json!({"metadata": {"finalizers": null}});
    scenario.shoots.patch(&scenario.name, &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("release");
    assert!(scenario.shoots.get_opt(&scenario.name).await.expect("get").is_none(), "the Shoot is gone from the garden");
    println!(
        "proven: force deletion finished although the shoot answers nothing (no cleaner, no ManagedResource wait)"
    );

    let seed = scenario.seed_client();
    let namespaces: Api<Namespace> = Api::all(seed.clone());
    assert!(namespaces.get_opt(&scenario.namespace).await.expect("get").is_none(), "the seed namespace is gone");
    let clusters: Api<Cluster> = Api::all(seed.clone());
    assert!(clusters.get_opt(&scenario.namespace).await.expect("get").is_none(), "the Cluster is gone");
    let all_mrs: Api<ManagedResource> = Api::all(seed.clone());
    let left = object_names(&all_mrs).await;
    assert!(left.is_empty(), "ManagedResources left in the seed: {left:?}");
    let all_extensions: Api<Extension> = Api::all(seed.clone());
    let left = object_names(&all_extensions).await;
    assert!(left.is_empty(), "Extensions left in the seed: {left:?}");
    let all_secrets: Api<Secret> = Api::all(seed);
    let left: Vec<String> = object_names(&all_secrets)
        .await
        .into_iter()
        .filter(|name| name.starts_with(MANAGED_RESOURCE_SECRET_PREFIX))
        .collect();
    assert!(left.is_empty(), "ManagedResource Secrets left in the seed: {left:?}");
    println!("proven: nothing orphaned in the seed — namespace, Cluster, Extension, ManagedResources, Secrets gone");

    // The controllers do not keep trying to work on the vanished namespace.
    tokio::time::sleep(QUIET_WINDOW).await;
    for (name, log, offset) in logs {
        let text = std::fs::read(&log).unwrap_or_default();
        let after = String::from_utf8_lossy(text.get(offset..).unwrap_or_default()).to_string();
        let complaints: Vec<&str> = after
            .lines()
            .filter(|line| line.contains(&scenario.namespace) && (line.contains("WARN") || line.contains("ERROR")))
            .collect();
        assert!(complaints.is_empty(), "{name} complains about the force-deleted shoot: {complaints:#?}");
    }
    println!(
        "proven: no controller replica logs a warning or error about the shoot during or after its force deletion"
    );
    for controller in &mut scenario.topology_mut().controllers {
        controller.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_restore() {
    use gardener_extension_cri_resmgr::apis::common::{ConditionStatus, LastOperationState, LastOperationType};
    use gardener_extension_cri_resmgr::apis::resources::{CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY};
    use gardener_extension_cri_resmgr::constants::ANNOTATION_OPERATION;
    local_only!("a control-plane migration needs a second seed, which the scenarios only start locally");
    let scenario = Scenario::enabled("migrate-restore").await;
    let topology = scenario.topology();
    let shoot_client = topology.shoot_client.clone();
    let daemonsets: Api<DaemonSet> = Api::namespaced(shoot_client.clone(), SHOOT_SYSTEM_NAMESPACE);
    let agent_uid = || async { daemonsets.get_opt(AGENT_NAME).await.expect("get").and_then(|ds| ds.metadata.uid) };
    let uid_before = agent_uid().await.expect("the agent's DaemonSet");
    let destination =
        topology.start_destination_seed().await.unwrap_or_else(|e| panic!("the destination seed starts: {e}"));

    // The source seed migrates: the Extension reports a succeeded Migrate, frees itself, and everything of the
    // shoot's control plane leaves the source seed — but nothing leaves the shoot.
    let shoot = scenario.shoot().await;
    let migrated = match topology.gardenlet.migrate(&shoot).await {
        Ok(Some(migrated)) => migrated,
        Ok(None) => panic!("the Extension vanished instead of reporting its migration"),
        Err(e) => panic!("gardenlet's migrate flow: {e}\n{}", topology.logs()),
    };
    let last = migrated.status.as_ref().and_then(|status| status.last_operation.clone()).expect("lastOperation");
    assert_eq!((last.type_, last.state), (LastOperationType::Migrate, LastOperationState::Succeeded));
    assert!(migrated.metadata.finalizers.as_ref().is_none_or(Vec::is_empty), "Migrate freed the Extension");
    let namespaces: Api<Namespace> = Api::all(topology.seed_client.clone());
    assert!(namespaces.get_opt(&scenario.namespace).await.expect("get").is_none(), "the source namespace is gone");
    let source_mrs: Api<ManagedResource> = Api::all(topology.seed_client.clone());
    let left = object_names(&source_mrs).await;
    assert!(left.is_empty(), "ManagedResources left in the source seed: {left:?}");
    assert_eq!(agent_uid().await.as_ref(), Some(&uid_before), "the agent's DaemonSet stayed in the shoot");
    let config_maps: Api<ConfigMap> = Api::namespaced(shoot_client.clone(), SHOOT_SYSTEM_NAMESPACE);
    assert!(config_maps.get_opt(AGENT_DEFAULT_CONFIG).await.expect("get").is_some(), "the agent's config stayed");
    println!("proven: migrated — lastOperation Migrate Succeeded, no finalizer, source seed emptied, shoot untouched");

    // The destination seed restores; the machines follow its OSCs from now on.
    scenario.node_agent.cancel();
    destination.serve_shoot(&scenario.namespace, &shoot_client);
    let node_agent = CancellationToken::new();
    tokio::spawn(destination.node_agent.clone().run(
        scenario.namespace.clone(),
        scenario.machines().await,
        Duration::from_millis(300),
        node_agent.clone(),
    ));
    // gardenlet's view when the Extension was ready: its OSC writes afterwards start a further Reconcile.
    let restored = match destination.gardenlet.restore(&shoot, Some(&migrated), &shoot_client).await {
        Ok(restored) => restored.expect("the Shoot enables the extension"),
        Err(e) => panic!("gardenlet's restore flow: {e}\n{}", destination.logs()),
    };
    let extensions: Api<Extension> = Api::namespaced(destination.client.clone(), &scenario.namespace);
    // Ready means the restore annotation is gone, which the controller removes only after a succeeded Restore;
    // removing it is a change of the Extension, which the controller may follow with a Reconcile of its own.
    let annotations = restored.metadata.annotations.clone().unwrap_or_default();
    assert!(!annotations.contains_key(ANNOTATION_OPERATION), "the restore annotation is removed: {annotations:?}");
    let last = restored.status.as_ref().and_then(|status| status.last_operation.clone()).expect("lastOperation");
    assert!(
        matches!(last.type_, LastOperationType::Restore | LastOperationType::Reconcile)
            && last.state == LastOperationState::Succeeded,
        "{last:?}"
    );
    let log = std::fs::read_to_string(&destination.controllers[0].log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|line| line.contains(&scenario.namespace) && line.contains("Restore") && line.contains("reconciled")),
        "the destination's controller ran a Restore:\n{}",
        destination.logs()
    );
    let destination_mrs: Api<ManagedResource> = Api::namespaced(destination.client.clone(), &scenario.namespace);
    eventually("the destination's ManagedResource is applied and healthy", || async {
        let mr = destination_mrs.get_opt(SHOOT_MANAGED_RESOURCE_NAME).await.ok()??;
        gardener_extension_cri_resmgr::managed_resource::deletion_problem(&mr).is_none().then_some(())?;
        let healthy = [CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY]
            .iter()
            .all(|kind| mr.condition(kind).is_some_and(|condition| condition.status == ConditionStatus::True));
        healthy.then_some(())
    })
    .await;
    assert_eq!(agent_uid().await.as_ref(), Some(&uid_before), "the agent's DaemonSet was never recreated");
    let report = destination.node_agent.apply(&scenario.namespace, &scenario.pool, &local_node(&scenario.pool)).await;
    let endpoint = report.unwrap_or_else(|e| panic!("the node applies the destination's OSC: {e}")).runtime_endpoint;
    assert_eq!(endpoint.as_deref(), Some(RELAY_SOCKET_ENDPOINT), "kubelet → cri-resmgr from the destination's OSC");
    println!(
        "proven: restored — the destination's Extension ready (Restore Succeeded), its ManagedResource healthy, the \
         agent's DaemonSet the same object throughout, the node's OSC mutated by the destination's controller"
    );

    // The shoot's life goes on in the destination seed, down to its deletion.
    if let Err(e) = destination.gardenlet.delete(&shoot, &shoot_client).await {
        panic!("gardenlet's shoot deletion in the destination seed: {e}\n{}", destination.logs());
    }
    scenario.shoots.delete(&scenario.name, &DeleteParams::default()).await.expect("delete the Shoot");
    node_agent.cancel();
    scenario.assert_nothing_left_in(&destination.client).await;
    assert!(extensions.get_opt(EXTENSION_TYPE).await.expect("get").is_none(), "no Extension left in the destination");
    println!("proven: the shoot deletion finished in the destination seed; nothing left there or in the shoot");
    scenario.finish().await;
}

/// gardenlet retries a failed shoot reconcile; so does this stand-in's caller, a bounded number of times.
async fn reconcile_until_done(scenario: &Scenario, shoot: &Shoot) {
    let mut last = String::new();
    for _ in 0..10 {
        match scenario.topology().gardenlet.reconcile(shoot, &scenario.topology().shoot_client).await {
            Ok(()) => return,
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(RECONCILE_RETRY).await;
    }
    panic!("the shoot reconcile never succeeded: {last}\n{}", scenario.topology().logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_apiserver_and_etcd_restarted_mid_reconcile_converge() {
    local_only!("a real seed's kube-apiserver and etcd are not the test's to restart");
    let mut scenario = Scenario::create("seed-restarts").await;
    let shoot = scenario.shoot().await;
    // The shoot reconcile runs while the seed's apiserver goes away and comes back.
    let gardenlet = scenario.topology().gardenlet.clone();
    let shoot_client = scenario.topology().shoot_client.clone();
    let first = shoot.clone();
    let reconcile = tokio::spawn(async move { gardenlet.reconcile(&first, &shoot_client).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    scenario.topology_mut().seed.restart_apiserver().await.expect("the seed's apiserver restarts");
    let _ = reconcile.await;
    reconcile_until_done(&scenario, &shoot).await;
    scenario.assert_enabled().await;
    println!("proven: the seed's apiserver restarted mid-reconcile; the Extension converges");

    // Disabling while etcd restarts: the deletion converges too, and nothing is lost or left.
    let mut disabled = scenario.shoot().await;
    disabled.spec.extensions.clear();
    let disabled = scenario.shoots.replace(&scenario.name, &PostParams::default(), &disabled).await.expect("update");
    let gardenlet = scenario.topology().gardenlet.clone();
    let shoot_client = scenario.topology().shoot_client.clone();
    let first = disabled.clone();
    let reconcile = tokio::spawn(async move { gardenlet.reconcile(&first, &shoot_client).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    scenario.topology_mut().seed.restart_etcd().await.expect("the seed's etcd restarts");
    let _ = reconcile.await;
    reconcile_until_done(&scenario, &disabled).await;
    scenario.assert_disabled().await;
    println!("proven: the seed's etcd restarted mid-reconcile; the disable converges, no finalizer or Secret left");
    scenario.delete().await;
    scenario.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_as_a_change_arrives_the_other_replica_finishes() {
    use k8s_openapi::api::coordination::v1::Lease;
    let mut scenario = Scenario::enabled("leader-killed").await;
    if let Landscape::Gardener(gardener) = &scenario.landscape {
        leader_killed_in_a_gardener(&scenario, gardener).await;
        scenario.delete().await;
        scenario.finish().await;
        return;
    }
    let leader = scenario.topology().leader().await.expect("a leader");
    let leases: Api<Lease> =
        Api::namespaced(scenario.topology().seed_client.clone(), cri_resmgr_e2e::topology::EXTENSION_NAMESPACE);
    let lease_duration = leases
        .get(gardener_extension_cri_resmgr::constants::LEADER_ELECTION_LEASE_NAME)
        .await
        .expect("the Lease")
        .spec
        .and_then(|spec| spec.lease_duration_seconds)
        .expect("a lease duration");

    // The leader dies (SIGKILL: its Lease is not released) just as a config change arrives: only the other replica,
    // once the Lease has expired, can reconcile it.
    let killed_at = tokio::time::Instant::now();
    let replica =
        scenario.topology_mut().controllers.iter_mut().find(|c| c.name == leader).expect("the leading replica");
    replica.kill().await;
    let mut changed = scenario.shoot().await;
    changed.spec.extensions[0].provider_config =
        Some(serde_json::json!({"configs": {"default": "policy:\n  Active: none\n"}}));
    let changed = scenario.shoots.replace(&scenario.name, &PostParams::default(), &changed).await.expect("update");
    if let Err(e) = scenario.topology().gardenlet.reconcile(&changed, &scenario.topology().shoot_client).await {
        panic!("the shoot reconcile did not finish after the leader died: {e}\n{}", scenario.topology().logs());
    }
    // Only a replica holding the Lease reconciles, so the change being done means the other replica holds it now (a
    // second replica that believed it led while the Lease named the first was the cause of an earlier flake here).
    let holder = scenario.topology().leader().await;
    assert!(holder.as_ref().is_some_and(|holder| *holder != leader), "the Lease names {holder:?}, not the survivor");
    let takeover = killed_at.elapsed();
    println!("measured: the Extension was ready again {takeover:?} after SIGKILL (lease duration {lease_duration}s)");
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.topology().shoot_client.clone(), SHOOT_SYSTEM_NAMESPACE);
    eventually("the new config reaches the shoot", || async {
        let data = config_maps.get(AGENT_DEFAULT_CONFIG).await.ok()?.data?;
        data.values().any(|v| v.contains("none")).then_some(())
    })
    .await;
    println!(
        "proven: the leader SIGKILLed as a change arrived; the other replica took over its Lease and finished the change"
    );
    scenario.delete().await;
    scenario.finish().await;
}

/// The leader-kill scenario in a real Gardener: the leading replica's pod is deleted with grace period 0 (its
/// process SIGKILLed, its Lease not released) just before a config change; the Deployment's other replica (or the
/// replacement pod) takes the Lease over and finishes the change.
async fn leader_killed_in_a_gardener(scenario: &Scenario, gardener: &cri_resmgr_e2e::landscape::Gardener) {
    let killed = gardener.kill_leader().await.unwrap_or_else(|e| panic!("killing the leader: {e}"));
    let killed_at = tokio::time::Instant::now();
    scenario
        .update(|shoot| {
            shoot.spec.extensions[0].provider_config =
                Some(serde_json::json!({"configs": {"default": "policy:\n  Active: none\n"}}))
        })
        .await;
    let holder = gardener.leader().await.unwrap_or_else(|e| panic!("the Lease: {e}")).map(|(_, holder)| holder);
    assert!(holder.as_ref().is_some_and(|holder| *holder != killed), "the Lease names {holder:?}, not a survivor");
    println!("measured: the Shoot was reconciled again {:?} after the leader's pod was killed", killed_at.elapsed());
    let config_maps: Api<ConfigMap> = Api::namespaced(scenario.shoot_client().await, SHOOT_SYSTEM_NAMESPACE);
    scenario
        .eventually("the new config reaches the shoot", || async {
            let data = config_maps.get(AGENT_DEFAULT_CONFIG).await.ok()?.data?;
            data.values().any(|v| v.contains("none")).then_some(())
        })
        .await;
    println!(
        "proven: the leader killed as a change arrived; another replica took over its Lease and finished the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_long_reconcile_the_other_replica_finishes() {
    local_only!("a real landscape's nodes cannot be paused to keep the deletion waiting for the cleaner");
    let mut scenario = Scenario::enabled("leader-killed-mid-deletion").await;

    // Disabling is the extension's longest operation: its deletion deploys the node cleaner and waits until every
    // node has dropped cri-resmgr. The nodes are slow here: node-agent is paused, so the deletion keeps waiting.
    scenario.node_agent.cancel();
    let mut disabled = scenario.shoot().await;
    disabled.spec.extensions.clear();
    let disabled = scenario.shoots.replace(&scenario.name, &PostParams::default(), &disabled).await.expect("update");
    let gardenlet = scenario.topology().gardenlet.clone();
    let shoot_client = scenario.topology().shoot_client.clone();
    let reconcile = tokio::spawn(async move { gardenlet.reconcile(&disabled, &shoot_client).await });
    let extensions: Api<Extension> = Api::namespaced(scenario.topology().seed_client.clone(), &scenario.namespace);
    eventually("the deletion waits for the node cleaner", || async {
        let extension = extensions.get(EXTENSION_TYPE).await.ok()?;
        let description = extension.status?.last_operation?.description;
        description.contains(CLEANER_WAITING).then_some(())
    })
    .await;
    let leader = scenario.topology().leader().await.expect("a leader");

    // The leader dies in the middle of it; the nodes catch up meanwhile.
    let replica =
        scenario.topology_mut().controllers.iter_mut().find(|c| c.name == leader).expect("the leading replica");
    replica.kill().await;
    let node_agent = CancellationToken::new();
    tokio::spawn(scenario.topology().node_agent.clone().run(
        scenario.namespace.clone(),
        scenario.machines().await,
        Duration::from_millis(300),
        node_agent.clone(),
    ));
    match reconcile.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the disabling shoot reconcile did not finish: {e}\n{}", scenario.topology().logs()),
        Err(e) => panic!("the shoot reconcile task: {e}"),
    }
    let holder = scenario.topology().leader().await;
    assert!(holder.as_ref().is_some_and(|holder| *holder != leader), "the Lease names {holder:?}, not the survivor");
    scenario.assert_disabled().await;
    println!(
        "proven: the leader SIGKILLed while the deletion waited for the node cleaner; the other replica resumed it and \
         finished (cleaner ran, node restored, nothing left)"
    );
    node_agent.cancel();
    scenario.delete().await;
    scenario.finish().await;
}

/// The admission webhook refused the write, naming what is wrong (not a conflict or a transport error).
fn assert_refused_by_the_webhook<T: std::fmt::Debug>(result: &Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!((400..500).contains(&status.code) && status.code != 409, "{status:?}");
            assert!(status.message.contains("no-such-policy"), "the denial names the bad policy: {}", status.message);
        }
        other => panic!("the garden accepted the write or failed otherwise: {other:?}"),
    }
}
