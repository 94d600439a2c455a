//! The Extension controller: reconciles `Extension` objects of type `cri-resmgr-extension` in the seed.
//!
//! - [`actuator`]: what happens per operation (reconcile, delete, force-delete, migrate, restore).
//! - [`status`]: the extension contract's pure logic (operation type, skip rule, event predicate, status patches,
//!   conditions, and the readiness check gardenlet applies), unit-tested without a cluster.
//! - [`health`]: the periodic health check that turns the ManagedResource's conditions into the Extension's
//!   `SystemComponentsHealthy` condition.
//! - [`heartbeat`]: the `gardener-extension-heartbeat` Lease.
//! - [`propagation`]: asks for OperatingSystemConfigs to be re-written when the nodes' share changes.
//!
//! The ManagedResource the controller ships into the shoot is handled by [`crate::managed_resource`].

pub mod actuator;
pub mod health;
pub mod heartbeat;
pub mod propagation;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::apis::extensions::Extension;
use crate::constants::{BASE_CONFIGS_CONFIG_MAP, EXTENSION_TYPE};
use crate::images::ImageVector;

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
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: kube::Client,
    pub config: ControllerConfig,
    pub images: ImageVector,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{action}: {source}")]
    Kube { action: String, source: kube::Error },
    #[error("the Cluster {namespace} does not exist (gardenlet creates it before the Extension)")]
    MissingCluster { namespace: String },
    #[error(transparent)]
    Desired(#[from] crate::desired::DesiredError),
    #[error(transparent)]
    ManagedResource(#[from] crate::managed_resource::ManagedResourceError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::desired::PlanError> for ReconcileError {
    fn from(error: crate::desired::PlanError) -> Self {
        match error {
            crate::desired::PlanError::Kube { action, source } => ReconcileError::Kube { action, source },
            crate::desired::PlanError::Desired(e) => ReconcileError::Desired(e),
        }
    }
}

impl ReconcileError {
    /// Gardener error codes for `lastError.codes`.
    pub fn codes(&self) -> Vec<String> {
        match self {
            ReconcileError::Desired(e) => e.codes(),
            ReconcileError::ManagedResource(e) => e.codes(),
            other => status::error_codes_for(&other.to_string()),
        }
    }
}

fn error_policy(extension: Arc<Extension>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    tracing::warn!(
        extension = %format!("{}/{}", extension.namespace().unwrap_or_default(), extension.name_any()),
        error = %error,
        "reconcile failed; retrying"
    );
    Action::requeue(ctx.config.error_requeue)
}

/// Applies Gardener's event predicates to the raw watch stream: kube-rs hands the controller objects, not events,
/// so the last seen version of each Extension stands in for the event's old object. Requeues and the base-config
/// trigger bypass this filter, as in Gardener's library.
#[derive(Default)]
struct EventFilter {
    ignore_operation_annotation: bool,
    last_seen: HashMap<ObjectRef<Extension>, Extension>,
}

impl EventFilter {
    /// Whether a watch event triggers a reconcile; `None` for events that never do.
    fn admit(&mut self, event: watcher::Event<Extension>) -> Option<Extension> {
        match event {
            watcher::Event::Apply(extension) | watcher::Event::InitApply(extension) => {
                if extension.spec.type_ != EXTENSION_TYPE {
                    return None;
                }
                let old = self.last_seen.insert(ObjectRef::from_obj(&extension), extension.clone());
                // A new object under an old name is a creation, not an update of the deleted one.
                let old = old.filter(|old| old.metadata.uid == extension.metadata.uid);
                status::should_process_event(old.as_ref(), &extension, self.ignore_operation_annotation)
                    .then_some(extension)
            }
            watcher::Event::Delete(extension) => {
                self.last_seen.remove(&ObjectRef::from_obj(&extension));
                None
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

/// Runs the controller (reconciler, health check) until `shutdown` resolves.
pub async fn run_controller(
    client: kube::Client,
    config: ControllerConfig,
    images: ImageVector,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let extensions: Api<Extension> = match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (store, writer) = reflector::store();
    let mut filter =
        EventFilter { ignore_operation_annotation: config.ignore_operation_annotation, ..EventFilter::default() };
    let trigger =
        watcher(extensions, watcher::Config::default()).default_backoff().reflect(writer).filter_map(move |event| {
            std::future::ready(match event {
                Ok(event) => filter.admit(event).map(Ok),
                Err(error) => Some(Err(error)),
            })
        });

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &config.configmap_namespace);
    let base_configs = watcher::Config::default().fields(&format!("metadata.name={BASE_CONFIGS_CONFIG_MAP}"));
    let all_store = store.clone();

    let ctx = Arc::new(Context { client: client.clone(), config: config.clone(), images });
    let health = tokio::spawn(health::run(ctx.clone(), store.clone()));
    Controller::for_stream(trigger, store)
        // Base configs reach every shoot: any change re-reconciles every Extension of our type.
        .watches(config_maps, base_configs, move |_| all_of_our_type(&all_store))
        .graceful_shutdown_on(shutdown)
        .run(actuator::reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(error) = result {
                tracing::debug!(error = %error, "controller event");
            }
            std::future::ready(())
        })
        .await;
    health.abort();
}

fn all_of_our_type(store: &Store<Extension>) -> Vec<ObjectRef<Extension>> {
    store.state().iter().filter(|e| e.spec.type_ == EXTENSION_TYPE).map(|e| ObjectRef::from_obj(e.as_ref())).collect()
}

/// Options of the `controller` command.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerOptions {
    /// Namespace of the base configs ConfigMap `gardener-extension-cri-resmgr-configs` (the extension's namespace).
    #[arg(long, env = crate::constants::ENV_EXTENSION_CONFIGMAP_NAMESPACE, default_value = "default")]
    pub configmap_namespace: String,
    /// Namespace of the leader-election and heartbeat Leases; defaults to the base configs' namespace.
    #[arg(long, env = crate::constants::ENV_LEADER_ELECTION_NAMESPACE)]
    pub leader_election_namespace: Option<String>,
    /// Elect a leader among replicas; only the leader reconciles (webhooks are served by every replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// This replica's identity in the leader election (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only watch Extensions in this namespace (development and tests).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Reconcile on generation changes instead of Gardener's operation annotation.
    #[arg(long)]
    pub ignore_operation_annotation: bool,
    /// Seconds between health checks of the shoot resources.
    #[arg(long, default_value_t = 30)]
    pub health_check_interval_seconds: u64,
    /// Seconds between renewals of the heartbeat Lease.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval_seconds: u64,
    /// Seconds between periodic reconciliations of a successfully reconciled Extension.
    #[arg(long, default_value_t = 3600)]
    pub resync_interval_seconds: u64,
    /// Serve and register the OperatingSystemConfig mutating webhook (every replica serves it, leader or not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub osc_webhook: bool,
    #[command(flatten)]
    pub webhook: crate::admission::WebhookOptions,
}

impl ControllerOptions {
    /// The controller settings these options describe.
    pub fn config(&self) -> ControllerConfig {
        ControllerConfig {
            configmap_namespace: self.configmap_namespace.clone(),
            watch_namespace: self.watch_namespace.clone(),
            ignore_operation_annotation: self.ignore_operation_annotation,
            resync_interval: Duration::from_secs(self.resync_interval_seconds),
            health_check_interval: Duration::from_secs(self.health_check_interval_seconds.max(1)),
            ..ControllerConfig::default()
        }
    }

    fn lease_namespace(&self) -> String {
        self.leader_election_namespace.clone().unwrap_or_else(|| self.configmap_namespace.clone())
    }
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Images(#[from] crate::images::ImageError),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error("lost the leadership; stopping so that the new leader works alone")]
    LostLeadership,
    #[error("OSC webhook: {0}")]
    Webhook(#[from] crate::admission::CommandError),
}

/// Serves the OperatingSystemConfig mutating webhook and keeps its configuration registered until `shutdown`.
pub async fn serve_osc_webhook(
    webhook: crate::admission::WebhookOptions,
    client: kube::Client,
    configmap_namespace: String,
    images: ImageVector,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    use crate::webhook::registration::{PATH_MUTATE_OSC, apply_mutating, osc_mutating_configuration};
    use crate::webhook::{WebhookServer, WebhookServerConfig};
    let _certificates = webhook.prepare_certificates(&client).await?;
    let mut server =
        WebhookServer::new(WebhookServerConfig::new(webhook.webhook_bind_address, &webhook.webhook_cert_dir));
    let mutator = crate::webhook::osc::OscMutator { client: client.clone(), images, configmap_namespace };
    server.register(PATH_MUTATE_OSC, mutator).map_err(crate::admission::CommandError::from)?;
    let mode = webhook.client_config_mode()?;
    let register = move |ca_bundle: Vec<u8>| {
        let client = client.clone();
        let mode = mode.clone();
        async move {
            apply_mutating(&client, &osc_mutating_configuration(&mode, &ca_bundle)).await.map_err(|source| {
                crate::admission::CommandError::Register {
                    name: crate::webhook::registration::CONTROLLER_CONFIG_NAME.to_string(),
                    source,
                }
            })?;
            tracing::info!("registered the OperatingSystemConfig webhook");
            Ok(())
        }
    };
    Ok(crate::admission::serve_registered(&webhook, server, "OperatingSystemConfig", register, shutdown).await?)
}

/// Runs the leader-elected part of the extension (reconciler, health check, heartbeat) until `shutdown` is
/// cancelled.
pub async fn run(
    options: ControllerOptions,
    client: kube::Client,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ControllerError> {
    let images = ImageVector::load()?;
    let config = options.config();
    // Webhooks are served by every replica, so the apiserver reaches one whichever leads.
    let osc_webhook = options.osc_webhook.then(|| {
        tokio::spawn(serve_osc_webhook(
            options.webhook.clone(),
            client.clone(),
            config.configmap_namespace.clone(),
            images.clone(),
            shutdown.clone().cancelled_owned(),
        ))
    });
    let lease_namespace = options.lease_namespace();
    let heartbeat_interval = Duration::from_secs(options.heartbeat_interval_seconds.max(1));

    let leadership = if options.leader_election {
        let identity = options.identity.clone().unwrap_or_else(default_identity);
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), crate::constants::LEADER_ELECTION_LEASE_NAME)
                .with_namespace(lease_namespace.clone())
                .with_identity(identity.clone())
                .with_duration(15)
                .with_grace(5)
                .with_field_manager(crate::constants::MANAGED_BY)
                .build()
                .await
                .map_err(|e| ControllerError::LeaderElection(e.to_string()))?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(identity, namespace = lease_namespace, "waiting for leadership");
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leading.changed() => changed.map_err(|e| ControllerError::LeaderElection(e.to_string()))?,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        tracing::info!(identity, "became the leader");
        Some((leading, task))
    } else {
        None
    };

    let heartbeat = tokio::spawn(heartbeat::run(client.clone(), lease_namespace, heartbeat_interval));
    let controller = run_controller(client, config, images, shutdown.clone().cancelled_owned());
    let result = match leadership {
        None => {
            controller.await;
            Ok(())
        }
        Some((mut leading, task)) => {
            let lost = async move {
                while leading.changed().await.is_ok() {
                    if !*leading.borrow_and_update() {
                        return;
                    }
                }
            };
            let result = tokio::select! {
                () = controller => Ok(()),
                () = lost => Err(ControllerError::LostLeadership),
            };
            // Dropping the receiver makes the lease manager release the Lease, so a successor takes over at once.
            let _ = task.await;
            result
        }
    };
    heartbeat.abort();
    if let Some(webhook) = osc_webhook {
        shutdown.cancel();
        match tokio::time::timeout(Duration::from_secs(20), webhook).await {
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "the OSC webhook server failed"),
            Ok(Err(e)) => tracing::error!(error = %e, "the OSC webhook server task failed"),
            _ => {}
        }
    }
    result
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| crate::constants::COMPONENT_NAME.to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::extensions::ExtensionSpec;

    fn extension(uid: &str, generation: i64) -> Extension {
        let mut extension = Extension::new(
            EXTENSION_TYPE,
            ExtensionSpec { type_: EXTENSION_TYPE.to_string(), ..ExtensionSpec::default() },
        );
        extension.metadata.namespace = Some("shoot--a--b".to_string());
        extension.metadata.uid = Some(uid.to_string());
        extension.metadata.generation = Some(generation);
        extension
    }

    fn succeeded(mut extension: Extension) -> Extension {
        extension.status = Some(crate::apis::common::DefaultStatus {
            last_operation: Some(crate::apis::common::LastOperation {
                type_: crate::apis::common::LastOperationType::Reconcile,
                state: crate::apis::common::LastOperationState::Succeeded,
                progress: 100,
                description: String::new(),
                last_update_time: crate::apis::common::unset_time(),
            }),
            ..Default::default()
        });
        extension
    }

    #[test]
    fn a_recreated_extension_is_judged_as_created_and_deletions_are_forgotten() {
        let mut filter = EventFilter { ignore_operation_annotation: true, ..EventFilter::default() };
        assert!(filter.admit(watcher::Event::InitApply(succeeded(extension("a", 1)))).is_some(), "first sighting");
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("a", 1)))).is_none(), "nothing changed");
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("a", 2)))).is_some(), "generation changed");
        // Same name, new object, same generation: a creation, not an unchanged update.
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("b", 2)))).is_some(), "recreated");
        assert!(filter.admit(watcher::Event::Delete(extension("b", 2))).is_none());
        assert!(filter.last_seen.is_empty(), "deleted objects are forgotten");
    }

    #[test]
    fn other_extension_types_never_trigger() {
        let mut filter = EventFilter::default();
        let mut other = extension("a", 1);
        other.spec.type_ = "registry-cache".to_string();
        assert!(filter.admit(watcher::Event::Apply(other)).is_none());
        assert!(filter.last_seen.is_empty());
    }
}
