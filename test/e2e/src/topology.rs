//! The local Gardener landscape of the end-to-end tests: three control planes and what runs against them.
//!
//! - garden: the Shoot CRD (standing in for gardener-apiserver) and the admission chart, its server running as the
//!   chart's ServiceAccount and registered by URL in the garden's apiserver;
//! - seed: Gardener's CRDs and the seed chart, its controller running as TWO processes (two replicas, leader
//!   election on), their OSC webhook reached through one [`Service`] stand-in;
//! - shoot: the apiserver gardener-resource-manager's stand-in applies into, holding the machines' Node objects.
//!
//! The stand-ins (gardenlet, gardener-resource-manager, gardener-node-agent and the kubelets) run in the test
//! process (see `cri_resmgr_testbed::standins`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use cri_resmgr_testbed::control_plane::{self, ControlPlane, TestbedError, WorkDir};
use cri_resmgr_testbed::dev::{DevError, ensure_namespace};
use cri_resmgr_testbed::standins::gardenlet::{Gardenlet, GardenletError};
use cri_resmgr_testbed::standins::kubelet::Kubelet;
use cri_resmgr_testbed::standins::node_agent::{CleanerPods, NodeAgent};
use cri_resmgr_testbed::standins::resource_manager::{ResourceManager, Shoot, Shoots};
use gardener_extension_cri_resmgr::constants::LEADER_ELECTION_LEASE_NAME;
use gardener_extension_cri_resmgr::runtime::registration::{ADMISSION_CONFIG_NAME, CONTROLLER_CONFIG_NAME};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::charts::{self, ADMISSION_CHART, ChartError, LocalContainer, RunningBinary, SEED_CHART};
use crate::error::{StepError, io_err};
use crate::service::Service;

/// The namespace every seed has for Gardener's own components; the seed chart's monitoring dashboard goes there.
const SEED_GARDEN_NAMESPACE: &str = "garden";
/// The seed chart's release name (its Deployment, ServiceAccount, ...).
pub const SEED_RELEASE: &str = "gardener-extension-cri-resmgr";
/// The admission chart's release name.
pub const ADMISSION_RELEASE: &str = "gardener-extension-cri-resmgr-admission";
/// Where gardenlet installs the extension in the seed (`extension-<ControllerInstallation>`).
pub const EXTENSION_NAMESPACE: &str = "extension-cri-resmgr";
/// Where the garden's operator installs the admission chart.
pub const ADMISSION_NAMESPACE: &str = "garden";
/// The controller's replicas, as the seed chart's `replicaCount`.
pub const CONTROLLER_REPLICAS: usize = 2;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What can go wrong while building the landscape.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    #[error(transparent)]
    Chart(#[from] ChartError),
    #[error(transparent)]
    Gardenlet(#[from] GardenletError),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("creating the namespace {namespace}: {source}")]
    Namespace {
        namespace: String,
        #[source]
        source: Box<DevError>,
    },
    #[error("{what} within {READY_TIMEOUT:?}; log of {process}:\n{log}")]
    NotReady { what: String, process: String, log: String },
}

/// The running landscape; everything stops when it is dropped.
pub struct Topology {
    pub garden: ControlPlane,
    pub seed: ControlPlane,
    pub shoot: ControlPlane,
    pub garden_client: kube::Client,
    pub seed_client: kube::Client,
    pub shoot_client: kube::Client,
    pub admission: RunningBinary,
    pub controllers: Vec<RunningBinary>,
    pub gardenlet: Gardenlet,
    pub resource_manager: ResourceManager,
    pub node_agent: NodeAgent,
    pub shoots: Shoots,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Topology {
    /// Starts the three control planes, installs the charts and runs the binaries and stand-ins.
    pub async fn start() -> Result<Topology, TopologyError> {
        let (garden, seed, shoot) = tokio::join!(
            ControlPlane::start_named("garden", WorkDir::Temporary),
            ControlPlane::start_named("seed", WorkDir::Temporary),
            ControlPlane::start_named("shoot", WorkDir::Temporary),
        );
        let (garden, seed, shoot) = (garden?, seed?, shoot?);
        let (garden_client, seed_client, shoot_client) =
            (garden.client().await?, seed.client().await?, shoot.client().await?);
        // The garden runtime cluster and the seed also serve the monitoring kinds (both charts ship a PrometheusRule,
        // for the Garden and the seed Prometheus).
        let crds = cri_resmgr_testbed::crds::installed().map_err(TestbedError::from)?;
        control_plane::install_crds(&garden_client, crds.clone()).await?;
        control_plane::install_crds(&seed_client, crds).await?;
        let dir = tempfile::tempdir().map_err(io_err("tempdir"))?;
        let shutdown = CancellationToken::new();

        // Garden and seed are independent: their binaries start and register at the same time.
        let (admission, controllers) = tokio::join!(
            start_admission(&garden, &garden_client, dir.path()),
            start_controllers(&seed, &seed_client, dir.path(), CONTROLLER_REPLICAS, shutdown.clone()),
        );
        let (admission, controllers) = (admission?, controllers?);

        let node_agent = NodeAgent::new(seed_client.clone(), dir.path().join("nodes"));
        let shoots = Shoots::default();
        let resource_manager = ResourceManager::new(seed_client.clone(), shoots.clone());
        tokio::spawn(resource_manager.clone().run(shutdown.clone()));
        let gardenlet = Gardenlet::new(seed_client.clone())?;
        Ok(Topology {
            garden,
            seed,
            shoot,
            garden_client,
            seed_client,
            shoot_client,
            admission,
            controllers,
            gardenlet,
            resource_manager,
            node_agent,
            shoots,
            shutdown,
            dir,
        })
    }

    /// The shoot apiserver serves the shoot whose seed namespace is `namespace`: gardener-resource-manager's
    /// stand-in applies its ManagedResources there, and the cleaner's pods run on the node agent's nodes.
    pub fn serve_shoot(&self, namespace: &str) {
        let kubelet =
            Kubelet::with_runner(self.shoot_client.clone(), Arc::new(CleanerPods { nodes: self.node_agent.clone() }));
        self.shoots.insert(namespace, Shoot::with_kubelet(self.shoot_client.clone(), kubelet));
    }

    /// A second seed for a control-plane migration: its own control plane with Gardener's CRDs, the seed chart
    /// with one controller replica, and its gardenlet and gardener-resource-manager; its node agent drives the
    /// same machines, which follow this seed's OSCs from the moment it is used.
    pub async fn start_destination_seed(&self) -> Result<DestinationSeed, TopologyError> {
        let plane = ControlPlane::start_named("seed-2", WorkDir::Temporary).await?;
        let client = plane.client().await?;
        let crds = cri_resmgr_testbed::crds::installed().map_err(TestbedError::from)?;
        control_plane::install_crds(&client, crds).await?;
        let dir = self.dir.path().join("seed-2");
        let controllers = start_controllers(&plane, &client, &dir, 1, self.shutdown.clone()).await?;
        let shoots = Shoots::default();
        let resource_manager = ResourceManager::new(client.clone(), shoots.clone());
        tokio::spawn(resource_manager.clone().run(self.shutdown.clone()));
        let gardenlet = Gardenlet::new(client.clone())?;
        let node_agent = self.node_agent.for_seed(client.clone());
        Ok(DestinationSeed { plane, client, controllers, gardenlet, resource_manager, node_agent, shoots })
    }

    /// The identity of the replica holding the leader-election Lease.
    pub async fn leader(&self) -> Option<String> {
        let leases: Api<Lease> = Api::namespaced(self.seed_client.clone(), EXTENSION_NAMESPACE);
        leases.get_opt(LEADER_ELECTION_LEASE_NAME).await.ok()??.spec?.holder_identity
    }

    /// Logs of every binary, for failure messages.
    pub fn logs(&self) -> String {
        std::iter::once(&self.admission)
            .chain(self.controllers.iter())
            .map(|binary| format!("--- {} ---\n{}", binary.name, binary.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The seed a shoot's control plane migrates to.
pub struct DestinationSeed {
    pub plane: ControlPlane,
    pub client: kube::Client,
    pub controllers: Vec<RunningBinary>,
    pub gardenlet: Gardenlet,
    pub resource_manager: ResourceManager,
    pub node_agent: NodeAgent,
    pub shoots: Shoots,
}

impl DestinationSeed {
    /// This seed's gardener-resource-manager applies the ManagedResources of `namespace` into the topology's shoot
    /// apiserver (`shoot`), whose cleaner pods run on this seed's node agent's machines.
    pub fn serve_shoot(&self, namespace: &str, shoot: &kube::Client) {
        let kubelet = Kubelet::with_runner(shoot.clone(), Arc::new(CleanerPods { nodes: self.node_agent.clone() }));
        self.shoots.insert(namespace, Shoot::with_kubelet(shoot.clone(), kubelet));
    }

    /// Logs of its controller, for failure messages.
    pub fn logs(&self) -> String {
        self.controllers.iter().map(|b| format!("--- {} ---\n{}", b.name, b.log_tail())).collect::<Vec<_>>().join("\n")
    }
}

fn write_kubeconfig(
    root: &std::path::Path,
    plane: &ControlPlane,
    namespace: &str,
    service_account: &str,
) -> Result<String, TopologyError> {
    let kubeconfig = charts::impersonating_kubeconfig(plane.kubeconfig_path(), namespace, service_account)?;
    let path = root.join("kubeconfig");
    std::fs::create_dir_all(root).map_err(io_err("creating a pod dir"))?;
    std::fs::write(&path, kubeconfig).map_err(io_err("writing a kubeconfig"))?;
    Ok(path.display().to_string())
}

/// The admission chart in the garden (one release holding runtime and application parts, the server talking to its
/// own cluster), its server registered by URL on a loopback port.
async fn start_admission(
    garden: &ControlPlane,
    client: &kube::Client,
    dir: &std::path::Path,
) -> Result<RunningBinary, TopologyError> {
    ensure_namespace(client, ADMISSION_NAMESPACE).await.map_err(|source| TopologyError::Namespace {
        namespace: ADMISSION_NAMESPACE.to_string(),
        source: Box::new(source),
    })?;
    let port = control_plane::free_port()?;
    let values = json!({"replicaCount": 1, "logFormat": "text", "webhook": {"configUrl": format!("127.0.0.1:{port}")}});
    let objects = charts::render(client, ADMISSION_CHART, ADMISSION_NAMESPACE, &values).await?;
    charts::apply_all(client, &objects).await?;
    let deployment = charts::find(&objects, "Deployment", ADMISSION_RELEASE)?;
    let root = dir.join("admission-0");
    let container =
        LocalContainer::prepare(client, ADMISSION_NAMESPACE, deployment, "admission-0", root.clone()).await?;
    let kubeconfig = write_kubeconfig(&root, garden, ADMISSION_NAMESPACE, ADMISSION_RELEASE)?;
    // Every process of the topology shares this host's loopback: each gets its own metrics port.
    let args = container.args_with(
        &[
            ("--webhook-bind-address", format!("127.0.0.1:{port}")),
            ("--metrics-bind-address", format!("127.0.0.1:{}", control_plane::free_port()?)),
        ],
        &[],
    );
    let mut binary = RunningBinary::start("admission", &container, args, &[("KUBECONFIG", kubeconfig)])?;
    let configurations: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    wait_for(&mut binary, "the admission server registers its webhooks", || async {
        configurations.get_opt(ADMISSION_CONFIG_NAME).await.ok()?.map(|_| ())
    })
    .await?;
    Ok(binary)
}

/// The seed chart in the seed, its controller as `replicas` processes (pod names `-0`, `-1`, ...) behind one
/// Service stand-in, registered by URL.
async fn start_controllers(
    seed: &ControlPlane,
    client: &kube::Client,
    dir: &std::path::Path,
    replicas: usize,
    shutdown: CancellationToken,
) -> Result<Vec<RunningBinary>, TopologyError> {
    for namespace in [EXTENSION_NAMESPACE, SEED_GARDEN_NAMESPACE] {
        ensure_namespace(client, namespace).await.map_err(|source| TopologyError::Namespace {
            namespace: namespace.to_string(),
            source: Box::new(source),
        })?;
    }
    let values = json!({"replicaCount": replicas, "logFormat": "text"});
    let objects = charts::render(client, SEED_CHART, EXTENSION_NAMESPACE, &values).await?;
    charts::apply_all(client, &objects).await?;
    let deployment = charts::find(&objects, "Deployment", SEED_RELEASE)?;
    let ports: Vec<u16> = (0..replicas).map(|_| control_plane::free_port()).collect::<Result<_, _>>()?;
    let service = Service::start(ports.clone(), shutdown).await.map_err(io_err("starting the Service stand-in"))?;
    let mut replicas = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let pod = format!("{SEED_RELEASE}-{index}");
        let root = dir.join(&pod);
        let container = LocalContainer::prepare(client, EXTENSION_NAMESPACE, deployment, &pod, root.clone()).await?;
        let kubeconfig = write_kubeconfig(&root, seed, EXTENSION_NAMESPACE, SEED_RELEASE)?;
        let args = container.args_with(
            &[
                ("--webhook-bind-address", format!("127.0.0.1:{port}")),
                ("--metrics-bind-address", format!("127.0.0.1:{}", control_plane::free_port()?)),
                ("--webhook-config-mode", "url".to_string()),
                ("--webhook-config-service-name", String::new()),
                ("--webhook-config-service-port", String::new()),
            ],
            &[format!("--webhook-config-url={}:{}", Ipv4Addr::LOCALHOST, service.port)],
        );
        replicas.push(RunningBinary::start(&pod, &container, args, &[("KUBECONFIG", kubeconfig)])?);
    }
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), EXTENSION_NAMESPACE);
    let first = replicas.first_mut().ok_or_else(|| ChartError::Missing("a replica".to_string()))?;
    wait_for(first, "a controller replica registers the OSC webhook and leads", || async {
        configurations.get_opt(CONTROLLER_CONFIG_NAME).await.ok()??;
        leases.get_opt(LEADER_ELECTION_LEASE_NAME).await.ok()??.spec?.holder_identity.map(|_| ())
    })
    .await?;
    Ok(replicas)
}

async fn wait_for<F, Fut>(binary: &mut RunningBinary, what: &str, mut check: F) -> Result<(), TopologyError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        if check().await.is_some() {
            return Ok(());
        }
        if !binary.running() || tokio::time::Instant::now() > deadline {
            return Err(TopologyError::NotReady {
                what: what.to_string(),
                process: binary.name.clone(),
                log: binary.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
