//! The Extension controller: reconciles `Extension` objects of type `cri-resmgr-extension` in the seed, through the
//! generic contract driver ([`crate::contract`]).
//!
//! - [`actuator`]: what cri-resmgr needs per operation (reconcile, delete, force-delete, migrate, restore); the
//!   driver does everything Gardener's contract prescribes around it.
//! - [`health`]: the periodic health check, a thin loop over [`crate::contract::health`].
//! - [`heartbeat`]: the `gardener-extension-heartbeat` Lease.
//! - [`rollout`]: which worker pools' node changes wait for the next shoot reconcile (the controller never writes
//!   OperatingSystemConfigs: only gardenlet's shoot reconcile brings them to the nodes).
//!
//! The ManagedResource the controller ships into the shoot is handled by [`crate::managed_resource`].

pub mod actuator;
pub mod health;
pub mod heartbeat;
pub mod rollout;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates, watcher};

use self::actuator::CriResmgrActuator;
use crate::apis::extensions::{Extension, OperatingSystemConfig};
use crate::constants::{EXTENSION_CLASS_SHOOT, EXTENSION_TYPE, FINALIZER};
use crate::contract::errors::{ErrorCode, ErrorCodes};
use crate::contract::events::{EventFilter, Responsibility};
use crate::contract::recorder::EventRecorder;
use crate::contract::{Driver, DriverConfig, DriverError};
use crate::domain::desired::DesiredError;
use crate::domain::images::ImageVector;
use crate::runtime::AbortOnDrop;
use crate::runtime::inputs::PlanError;
use crate::runtime::metrics::ControllerMetrics;
use crate::runtime::stores::SeedStores;

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Namespace of the base configs ConfigMap (`$EXTENSION_CONFIGMAP_NAMESPACE`).
    pub configmap_namespace: String,
    /// Only watch Extensions in this namespace (development and tests); `None` watches all namespaces.
    pub watch_namespace: Option<String>,
    /// Gardener's `--ignore-operation-annotation`: reconcile on generation changes instead of the annotation.
    pub ignore_operation_annotation: bool,
    /// Periodic re-reconciliation of successfully reconciled Extensions.
    pub resync_interval: Duration,
    /// Period of the health check.
    pub health_check_interval: Duration,
    /// Requeue delay after an error.
    pub error_requeue: Duration,
    /// How many Extensions are reconciled at once (never two reconciles of the same Extension). Bounded so that a
    /// burst (every shoot re-reconciled after a base-config change or a restart) holds only this many reconciles'
    /// objects in memory and puts only this many on the apiservers at a time; the others wait in the queue.
    pub max_concurrent_reconciles: u16,
}

/// The default of [`ControllerConfig::max_concurrent_reconciles`]: what Gardener's extension charts give their
/// controllers (`concurrentSyncs: 5`).
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 5;

impl ControllerConfig {
    /// kube-runtime's settings of the reconciler these settings describe.
    pub fn runtime_config(&self) -> kube::runtime::controller::Config {
        // kube-runtime reads 0 as "unbounded"; the flag refuses 0, so the bound always holds.
        kube::runtime::controller::Config::default().concurrency(self.max_concurrent_reconciles.max(1))
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            configmap_namespace: "default".to_string(),
            watch_namespace: None,
            ignore_operation_annotation: false,
            resync_interval: Duration::from_secs(60 * 60),
            health_check_interval: Duration::from_secs(30),
            error_requeue: Duration::from_secs(10),
            max_concurrent_reconciles: DEFAULT_MAX_CONCURRENT_RECONCILES,
        }
    }
}

/// Why cri-resmgr's part of an operation failed. Every variant names what it was about; the codes are typed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the Cluster {namespace} does not exist (gardenlet creates it before the Extension)")]
    MissingCluster { namespace: String },
    #[error(transparent)]
    Inputs(#[from] PlanError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error(transparent)]
    ManagedResource(#[from] crate::managed_resource::ManagedResourceError),
    #[error("listing OperatingSystemConfigs in {namespace}: {source}")]
    ListOscs {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Annotate(#[from] crate::contract::AnnotateError),
}

impl ErrorCodes for ReconcileError {
    fn codes(&self) -> Vec<ErrorCode> {
        match self {
            ReconcileError::MissingCluster { .. } => Vec::new(),
            ReconcileError::Inputs(e) => e.codes(),
            ReconcileError::Desired(e) => ErrorCodes::codes(e),
            ReconcileError::ManagedResource(e) => e.codes(),
            ReconcileError::ListOscs { source, .. } => source.codes(),
            ReconcileError::Annotate(e) => e.codes(),
        }
    }
}

impl ErrorCodes for PlanError {
    fn codes(&self) -> Vec<ErrorCode> {
        match self {
            PlanError::Kube { source, .. } => source.codes(),
            PlanError::Desired(e) => ErrorCodes::codes(e),
        }
    }
}

/// The Extensions this controller serves: of our type and of shoot clusters. The actuator deploys into a shoot and
/// onto its nodes and needs the shoot's Cluster, so `seed` and `garden` Extensions (which Gardener creates for
/// extensions registered with that `clusterCompatibility`) are never touched, as Gardener's `HasClass` predicate
/// leaves them alone.
pub const RESPONSIBILITY: Responsibility =
    Responsibility { extension_type: EXTENSION_TYPE, extension_class: EXTENSION_CLASS_SHOOT };

/// The driver as this controller runs it.
pub type ExtensionDriver = Driver<CriResmgrActuator>;

fn error_policy(extension: Arc<Extension>, error: &DriverError<ReconcileError>, error_requeue: Duration) -> Action {
    tracing::warn!(
        extension = %crate::contract::key(&extension),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(error_requeue)
}

/// Where the controller reports besides the Extension's status: its metrics and the Events it publishes.
#[derive(Clone)]
pub struct Reporting {
    pub metrics: ControllerMetrics,
    pub recorder: EventRecorder,
}

/// Runs the controller (reconciler, health check) until `shutdown` resolves.
pub async fn run_controller(
    client: kube::Client,
    stores: SeedStores,
    config: ControllerConfig,
    images: ImageVector,
    reporting: Reporting,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Reconciles read the Clusters and the base configs from the stores: they start once the stores hold their first
    // lists, so that no reconcile reads the base configs from the apiserver and then misses a change that the first
    // list already holds (the list wakes no re-reconcile, see `stores`).
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    tokio::select! {
        () = stores.synced() => {}
        () = shutdown.clone() => return,
    }
    let extensions: Api<Extension> = match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let mut filter = EventFilter::new(RESPONSIBILITY, config.ignore_operation_annotation);
    // The cache (`store`) holds only the Extensions we serve: the reconciler and its requeues, the base-config
    // trigger and the health loop all read it, so none of them can touch another class's Extension.
    let trigger = watcher(extensions, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| {
            std::future::ready(match event {
                Ok(event) => RESPONSIBILITY.restrict(event).map(Ok),
                Err(error) => Some(Err(error)),
            })
        })
        .reflect(writer)
        .filter_map(move |event| {
            std::future::ready(match event {
                Ok(event) => filter.admit(event).map(Ok),
                Err(error) => Some(Err(error)),
            })
        });

    let base_config_changes = stores.base_config_changes();
    // gardenlet writes the worker pools' OSCs in the shoot reconcile; what the Extension's status says about node
    // changes waiting for that write must follow it. Only spec changes (a new generation) count: the OS extension's
    // status writes say nothing new about what the nodes get.
    let oscs: Api<OperatingSystemConfig> = match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let osc_writes = watcher(oscs, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .predicate_filter(predicates::generation, Default::default());
    let osc_store = store.clone();

    // Stopped whenever this future ends or is dropped (a replica that loses the leadership drops it mid-run): a
    // former leader must not keep writing health conditions beside the new one.
    let _health = AbortOnDrop(tokio::spawn(health::run(
        client.clone(),
        config.health_check_interval,
        store.clone(),
        reporting.metrics.clone(),
    )));
    let driver = Arc::new(Driver {
        client: client.clone(),
        stores: stores.clone(),
        config: DriverConfig {
            responsibility: RESPONSIBILITY,
            finalizer: FINALIZER,
            resync_interval: config.resync_interval,
        },
        actuator: CriResmgrActuator { client, stores: stores.clone(), images, metrics: reporting.metrics.clone() },
        metrics: reporting.metrics,
        recorder: reporting.recorder,
    });
    let error_requeue = config.error_requeue;
    Controller::for_stream(trigger, store)
        .with_config(config.runtime_config())
        // Base configs reach every shoot: any change re-reconciles every Extension we serve (the controller's store
        // holds only those), triggered by the stores the reconciler reads them from, once they hold the change.
        .reconcile_all_on(base_config_changes)
        .watches_stream(osc_writes, move |osc| served_in(&osc_store, osc.namespace().as_deref()))
        .graceful_shutdown_on(shutdown)
        .run(
            crate::contract::reconcile,
            move |extension, error, _| error_policy(extension, error, error_requeue),
            driver,
        )
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(error = %error, "controller event");
            }
            std::future::ready(())
        })
        .await;
}

/// The Extensions we serve that `keep` selects.
fn served_where(store: &Store<Extension>, keep: impl Fn(&Extension) -> bool) -> Vec<ObjectRef<Extension>> {
    store
        .state()
        .iter()
        .filter(|e| RESPONSIBILITY.covers(e) && keep(e))
        .map(|e| ObjectRef::from_obj(e.as_ref()))
        .collect()
}

/// The Extensions we serve in `namespace` (a shoot's namespace in the seed).
fn served_in(store: &Store<Extension>, namespace: Option<&str>) -> Vec<ObjectRef<Extension>> {
    served_where(store, |e| namespace.is_some() && e.metadata.namespace.as_deref() == namespace)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::managed_resource::ManagedResourceError;

    fn kube_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("providerConfig: Forbidden", "Forbidden").with_code(code),
        ))
    }

    /// What the text classification used to give, now read off the error values.
    #[test]
    fn configuration_problems_and_only_they_carry_a_code() {
        let config = vec![ErrorCode::ConfigurationProblem];
        let cases: Vec<(&str, ReconcileError, Vec<ErrorCode>)> = vec![
            ("invalid providerConfig", DesiredError::Config(Vec::new()).into(), config.clone()),
            ("no Kubernetes version", DesiredError::MissingKubernetesVersion.into(), config.clone()),
            ("invalid base configs", PlanError::Desired(DesiredError::Config(Vec::new())).into(), config.clone()),
            (
                "GRM cannot apply an invalid object",
                ManagedResourceError::DeletionTimeout {
                    namespace: "ns".into(),
                    name: "mr".into(),
                    timeout: Duration::from_secs(1),
                    detail: Some("error during apply of object \"v1/ConfigMap/a/b\": x is invalid: y".into()),
                }
                .into(),
                config.clone(),
            ),
            ("no Cluster", ReconcileError::MissingCluster { namespace: "ns".into() }, vec![]),
            (
                "reading base configs",
                PlanError::Kube { action: "reading ConfigMap".into(), source: kube_error(500) }.into(),
                vec![],
            ),
            (
                "listing OSCs forbidden",
                ReconcileError::ListOscs { namespace: "ns".into(), source: kube_error(403) },
                vec![],
            ),
            (
                "writing the MR",
                ManagedResourceError::ManagedResource {
                    action: "create",
                    namespace: "ns".into(),
                    name: "mr".into(),
                    source: Box::new(kube_error(422)),
                }
                .into(),
                vec![],
            ),
        ];
        for (label, error, want) in cases {
            assert_eq!(error.codes(), want, "{label}: {error}");
        }
    }
}
