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
use crate::domain::images::ImageVector;

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
    Desired(#[from] crate::domain::desired::DesiredError),
    #[error(transparent)]
    ManagedResource(#[from] crate::managed_resource::ManagedResourceError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::runtime::inputs::PlanError> for ReconcileError {
    fn from(error: crate::runtime::inputs::PlanError) -> Self {
        match error {
            crate::runtime::inputs::PlanError::Kube { action, source } => ReconcileError::Kube { action, source },
            crate::runtime::inputs::PlanError::Desired(e) => ReconcileError::Desired(e),
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
