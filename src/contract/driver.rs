//! The contract driver: Gardener's extension reconciler (`extensions/pkg/controller/extension/reconciler.go`) for
//! kube-rs. Per Extension it decides which operation runs, calls the [`Actuator`], and does every write the contract
//! prescribes — the extension's actuator never touches status, finalizers or Gardener's annotations:
//!
//! - `wait-for-state`, a migrated-away Extension ([`status::should_skip`]) and a failed shoot: nothing to do;
//! - Create / Reconcile / Restore: the `reconcile` annotation is removed *before* the work (a new request during it
//!   is not lost), the finalizer added, Processing reported, the actuator called; on success Succeeded with
//!   `observedGeneration`, and the `restore` annotation removed only *after* it (gardenlet waits for that);
//! - Delete (ForceDelete when the shoot is force-deleted): Processing, the actuator, Succeeded, then the finalizer
//!   goes;
//! - Migrate: Processing, the actuator, Succeeded, then *all* finalizers go (the destination seed owns the object)
//!   and the `migrate` annotation is removed;
//! - a failure is reported as Error with `lastError` and the error's codes, and as a Warning Event on the Extension,
//!   then retried by the error policy;
//! - a waiting actuator's description is written only when it changes.
//!
//! Every pass is counted and timed in the controller's metrics, by operation and how it ended.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::errors::ErrorCodes;
use super::events::Responsibility;
use super::recorder::{self, EventRecorder, Severity};
use super::{Actuator, Failure, Outcome, Request, status};
use crate::apis::common::{LastOperationState, LastOperationType};
use crate::apis::extensions::{Cluster, Extension};
use crate::constants::{
    ANNOTATION_FORCE_DELETION, ANNOTATION_OPERATION, LABEL_ROLE, OPERATION_RECONCILE, OPERATION_RESTORE,
    OPERATION_WAIT_FOR_STATE, ROLE_SHOOT,
};
use crate::runtime::metrics::{ControllerMetrics, Operation, PassResult};
use crate::runtime::stores::SeedStores;

/// The JSON pointer of an object's finalizer list.
const FINALIZERS: &json_patch::jsonptr::Pointer = json_patch::jsonptr::Pointer::from_static("/metadata/finalizers");

/// Which Extensions the driver serves and how.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// The type and class of the Extensions this extension serves; others are left alone.
    pub responsibility: Responsibility,
    /// The finalizer that keeps the Extension until its Delete (or Migrate) finished.
    pub finalizer: &'static str,
    /// Periodic re-reconciliation of a successfully reconciled Extension.
    pub resync_interval: Duration,
}

/// The driver: the seed client, the stores it reads Clusters from, its settings, the extension's actuator, and where
/// it reports (metrics, Events).
pub struct Driver<A> {
    pub client: kube::Client,
    pub stores: SeedStores,
    pub config: DriverConfig,
    pub actuator: A,
    pub metrics: ControllerMetrics,
    pub recorder: EventRecorder,
}

/// How a pass ended: what kube-runtime does next, and how the metrics count it.
struct Ended {
    action: Action,
    result: PassResult,
}

impl Ended {
    fn skipped() -> Self {
        Ended { action: Action::await_change(), result: PassResult::Skipped }
    }

    fn succeeded(action: Action) -> Self {
        Ended { action, result: PassResult::Succeeded }
    }
}

/// A write of the driver to the Extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Status,
    Metadata,
    Finalizers,
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Write::Status => "patching status",
            Write::Metadata => "patching metadata",
            Write::Finalizers => "updating finalizers",
        })
    }
}

/// Why a pass failed: the actuator's failure (already reported in the status), or a read or write of the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError<E> {
    #[error("{description}: {source}")]
    Operation {
        description: &'static str,
        #[source]
        source: E,
    },
    #[error("reading Cluster {namespace}: {source}")]
    ReadCluster {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading Namespace {namespace}: {source}")]
    ReadNamespace {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("{write} (Extension {namespace}/{name}): {source}")]
    Write {
        write: Write,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// One pass over one Extension: the entry point for kube-rs' `Controller::run`. Counted and timed in the metrics.
pub async fn reconcile<A: Actuator>(
    extension: Arc<Extension>,
    driver: Arc<Driver<A>>,
) -> Result<Action, DriverError<A::Error>> {
    let timer = driver.metrics.start_pass(Operation::from(&status::operation_type(&extension)));
    let ended = pass(&extension, &driver).await;
    timer.finish(match &ended {
        Ok(ended) => ended.result,
        Err(_) => PassResult::Error,
    });
    ended.map(|ended| ended.action)
}

async fn pass<A: Actuator>(extension: &Extension, driver: &Driver<A>) -> Result<Ended, DriverError<A::Error>> {
    // The controller's cache holds only covered Extensions; this guards every other way in (e.g. a requeue
    // of an object that was replaced by one of another class).
    if !driver.config.responsibility.covers(extension) {
        return Ok(Ended::skipped());
    }
    // gardenlet is still restoring state on a migration's destination: nothing to do yet.
    if status::operation_annotation(extension) == Some(OPERATION_WAIT_FOR_STATE) {
        return Ok(Ended::skipped());
    }
    let operation = status::operation_type(extension);
    if status::should_skip(extension, &operation) {
        tracing::debug!(extension = %key(extension), "migrated away; skipping until restored");
        return Ok(Ended::skipped());
    }
    let namespace = extension.namespace().unwrap_or_default();
    let cluster = get_cluster(&driver.stores, &namespace).await?;
    if shoot_failed(&driver.client, &namespace, cluster.as_deref()).await? {
        tracing::info!(extension = %key(extension), "the shoot's last operation failed; not acting until it is retried");
        return Ok(Ended::skipped());
    }
    let request = Request {
        extension,
        namespace: &namespace,
        cluster: cluster.as_deref(),
        operation: operation.clone(),
        client: &driver.client,
        recorder: &driver.recorder,
    };
    let pass = Pass { driver, extension, namespace: &namespace, operation };
    match pass.operation {
        LastOperationType::Migrate => pass.migrate(&request).await,
        LastOperationType::Delete if cluster.as_deref().is_some_and(is_force_deleted) => {
            pass.force_delete(&request).await
        }
        LastOperationType::Delete => pass.delete(&request).await,
        _ => pass.reconcile(&request).await,
    }
}

/// `namespace/name` of an Extension, as logs name it.
pub fn key(extension: &Extension) -> String {
    format!("{}/{}", extension.namespace().unwrap_or_default(), extension.name_any())
}

/// The Cluster from the watch-backed store (a live read when the store has not seen it): no apiserver round trip
/// per pass, and no copy of it either.
async fn get_cluster<E>(stores: &SeedStores, namespace: &str) -> Result<Option<Arc<Cluster>>, DriverError<E>> {
    stores
        .cluster(namespace)
        .await
        .map_err(|source| DriverError::ReadCluster { namespace: namespace.to_string(), source })
}

/// Gardener does not act for shoots whose last operation failed (they are only retried by a user).
async fn shoot_failed<E>(
    client: &kube::Client,
    namespace: &str,
    cluster: Option<&Cluster>,
) -> Result<bool, DriverError<E>> {
    let Some(cluster) = cluster else { return Ok(false) };
    if !cluster.spec.shoot.is_failed() {
        return Ok(false);
    }
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(|source| DriverError::ReadNamespace { namespace: namespace.to_string(), source })?;
    Ok(ns.and_then(|ns| ns.labels().get(LABEL_ROLE).cloned()).as_deref() == Some(ROLE_SHOOT))
}

/// The shoot is being force-deleted: gardenlet marks it with the force-deletion annotation on a Shoot in deletion.
pub fn is_force_deleted(cluster: &Cluster) -> bool {
    let shoot = &cluster.spec.shoot;
    shoot.metadata.deletion_timestamp.is_some()
        && shoot.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_FORCE_DELETION)).map(String::as_str)
            == Some("true")
}

struct Pass<'a, A> {
    driver: &'a Driver<A>,
    extension: &'a Extension,
    namespace: &'a str,
    operation: LastOperationType,
}

impl<A: Actuator> Pass<'_, A> {
    fn api(&self) -> Api<Extension> {
        Api::namespaced(self.driver.client.clone(), self.namespace)
    }

    fn name(&self) -> String {
        self.extension.name_any()
    }

    fn generation(&self) -> i64 {
        self.extension.meta().generation.unwrap_or_default()
    }

    fn now(&self) -> Time {
        status::status_time(self.extension, Timestamp::now())
    }

    fn write_err(&self, write: Write) -> impl FnOnce(kube::Error) -> DriverError<A::Error> {
        let (namespace, name) = (self.namespace.to_string(), self.name());
        move |source| DriverError::Write { write, namespace, name, source }
    }

    async fn patch_status(&self, body: Value) -> Result<(), DriverError<A::Error>> {
        self.api()
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(self.write_err(Write::Status))?;
        Ok(())
    }

    async fn remove_operation_annotation(&self) -> Result<(), DriverError<A::Error>> {
        if status::operation_annotation(self.extension).is_none() {
            return Ok(());
        }
        let body = json!({ "metadata": { "annotations": { ANNOTATION_OPERATION: null } } });
        self.api()
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(self.write_err(Write::Metadata))?;
        Ok(())
    }

    /// Replaces the finalizer list with a JSON patch that first tests the list we read: a concurrent change of the
    /// list makes the patch fail (and the reconcile retry) instead of losing someone else's finalizer, while our own
    /// annotation patches in the same pass do not get in the way as a resourceVersion precondition would.
    async fn set_finalizers(&self, finalizers: Vec<String>) -> Result<(), DriverError<A::Error>> {
        let current = self.extension.meta().finalizers.clone().filter(|f| !f.is_empty());
        if current.is_none() && finalizers.is_empty() {
            return Ok(());
        }
        let test = json_patch::TestOperation {
            path: FINALIZERS.to_buf(),
            value: current.map(|f| json!(f)).unwrap_or(Value::Null),
        };
        let change = if finalizers.is_empty() {
            json_patch::PatchOperation::Remove(json_patch::RemoveOperation { path: FINALIZERS.to_buf() })
        } else {
            json_patch::PatchOperation::Add(json_patch::AddOperation {
                path: FINALIZERS.to_buf(),
                value: json!(finalizers),
            })
        };
        let patch = json_patch::Patch(vec![json_patch::PatchOperation::Test(test), change]);
        self.api()
            .patch(&self.name(), &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(self.write_err(Write::Finalizers))?;
        Ok(())
    }

    async fn ensure_finalizer(&self) -> Result<(), DriverError<A::Error>> {
        let finalizers = self.extension.finalizers();
        if finalizers.iter().any(|f| f == self.driver.config.finalizer) {
            return Ok(());
        }
        let mut updated = finalizers.to_vec();
        updated.push(self.driver.config.finalizer.to_string());
        self.set_finalizers(updated).await
    }

    async fn remove_finalizer(&self) -> Result<(), DriverError<A::Error>> {
        let finalizer = self.driver.config.finalizer;
        let finalizers = self.extension.finalizers();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        self.set_finalizers(finalizers.iter().filter(|f| *f != finalizer).cloned().collect()).await
    }

    fn last_operation_is_processing(&self) -> Option<&str> {
        let last = self.extension.status.as_ref()?.last_operation.as_ref()?;
        (last.type_ == self.operation && last.state == LastOperationState::Processing)
            .then_some(last.description.as_str())
    }

    /// Starts the operation: Processing with `description`, unless the Extension already shows this operation as
    /// Processing (a resumed or waiting flow), whose more precise description is then kept.
    async fn begin(&self, description: &str) -> Result<(), DriverError<A::Error>> {
        if self.last_operation_is_processing().is_some() {
            return Ok(());
        }
        self.patch_status(status::processing(&self.operation, description, &self.now())).await
    }

    /// Says what a waiting flow waits for; written only when it changes, so waiting produces no status churn.
    async fn waiting(&self, description: &str) -> Result<(), DriverError<A::Error>> {
        if self.last_operation_is_processing() == Some(description) {
            return Ok(());
        }
        self.patch_status(status::processing(&self.operation, description, &self.now())).await
    }

    async fn succeeded(&self, description: &str) -> Result<(), DriverError<A::Error>> {
        self.patch_status(status::succeeded(&self.operation, description, self.generation(), &self.now())).await
    }

    /// Reports a failure the way Gardener's library does, and as a Warning Event with the error codes, then hands
    /// it to the error policy (requeue).
    async fn fail(&self, failure: Failure<A::Error>) -> DriverError<A::Error> {
        let Failure { description, error } = failure;
        let codes = error.codes();
        let body =
            status::error(&self.operation, description, &error.to_string(), &codes, self.generation(), &self.now());
        if let Err(e) = self.patch_status(body).await {
            tracing::warn!(extension = %key(self.extension), error = %e, "cannot report the error in the status");
        }
        let note = recorder::failure_note(&format!("{description}: {error}"), &codes);
        let reason = recorder::failure_reason(&self.operation);
        self.driver.recorder.publish(self.extension, Severity::Warning, reason, self.operation.as_str(), &note).await;
        DriverError::Operation { description, source: error }
    }

    /// Runs the actuator's step; `Some` when the pass ends here waiting, an error when it failed (reported).
    async fn settle(&self, result: Result<Outcome, Failure<A::Error>>) -> Result<Option<Ended>, DriverError<A::Error>> {
        match result {
            Ok(Outcome::Done | Outcome::DoneWith { .. }) => Ok(None),
            Ok(Outcome::Waiting { description, requeue_after }) => {
                self.waiting(&description).await?;
                Ok(Some(Ended { action: Action::requeue(requeue_after), result: PassResult::Waiting }))
            }
            Err(failure) => Err(self.fail(failure).await),
        }
    }

    /// Create, Reconcile and Restore.
    async fn reconcile(&self, request: &Request<'_>) -> Result<Ended, DriverError<A::Error>> {
        // The reconcile annotation is removed before the work, so a new request during it is not lost.
        if status::operation_annotation(self.extension) == Some(OPERATION_RECONCILE) {
            self.remove_operation_annotation().await?;
        }
        self.ensure_finalizer().await?;
        self.begin(&format!("Reconciling {}", A::DISPLAY_NAME)).await?;
        let result = match self.operation {
            LastOperationType::Restore => self.driver.actuator.restore(request).await,
            _ => self.driver.actuator.reconcile(request).await,
        };
        let note = match &result {
            Ok(Outcome::DoneWith { note }) => Some(note.clone()),
            _ => None,
        };
        if let Some(ended) = self.settle(result).await? {
            return Ok(ended);
        }
        self.succeeded(&success_description(&format!("Successfully reconciled {}", A::DISPLAY_NAME), note.as_deref()))
            .await?;
        // Restore (like migrate) removes its annotation only after success, so gardenlet can tell it is done.
        if status::operation_annotation(self.extension) == Some(OPERATION_RESTORE) {
            self.remove_operation_annotation().await?;
        }
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "reconciled");
        Ok(Ended::succeeded(Action::requeue(self.driver.config.resync_interval)))
    }

    async fn delete(&self, request: &Request<'_>) -> Result<Ended, DriverError<A::Error>> {
        self.begin(&format!("Deleting {}", A::DISPLAY_NAME)).await?;
        if let Some(ended) = self.settle(self.driver.actuator.delete(request).await).await? {
            return Ok(ended);
        }
        self.succeeded(&format!("Successfully deleted {}", A::DISPLAY_NAME)).await?;
        self.remove_finalizer().await?;
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "done");
        Ok(Ended::succeeded(Action::await_change()))
    }

    async fn force_delete(&self, request: &Request<'_>) -> Result<Ended, DriverError<A::Error>> {
        self.begin(&format!("Force-deleting {}", A::DISPLAY_NAME)).await?;
        if let Some(ended) = self.settle(self.driver.actuator.force_delete(request).await).await? {
            return Ok(ended);
        }
        self.succeeded(&format!("Successfully force-deleted {}", A::DISPLAY_NAME)).await?;
        self.remove_finalizer().await?;
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "done");
        Ok(Ended::succeeded(Action::await_change()))
    }

    async fn migrate(&self, request: &Request<'_>) -> Result<Ended, DriverError<A::Error>> {
        self.begin(&format!("Migrating {}", A::DISPLAY_NAME)).await?;
        if let Some(ended) = self.settle(self.driver.actuator.migrate(request).await).await? {
            return Ok(ended);
        }
        self.succeeded(&format!("Successfully migrated {}", A::DISPLAY_NAME)).await?;
        // Migrate frees the object entirely: the destination seed owns it from now on.
        self.set_finalizers(Vec::new()).await?;
        self.remove_operation_annotation().await?;
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "done");
        Ok(Ended::succeeded(Action::await_change()))
    }
}

/// The success description, with the actuator's note (if any) as a further sentence.
fn success_description(done: &str, note: Option<&str>) -> String {
    match note.map(str::trim).filter(|note| !note.is_empty()) {
        Some(note) => format!("{done}. {note}"),
        None => done.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_becomes_a_sentence_of_the_success_description() {
        let done = "Successfully reconciled x";
        assert_eq!(success_description(done, None), done);
        assert_eq!(success_description(done, Some(" ")), done);
        assert_eq!(success_description(done, Some("Pools wait.")), "Successfully reconciled x. Pools wait.");
    }

    fn cluster(deleting: bool, annotation: Option<&str>) -> Cluster {
        let mut cluster: Cluster = serde_json::from_value(json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "shoot--p--s"},
            "spec": {"shoot": {"apiVersion": "core.gardener.cloud/v1beta1", "kind": "Shoot",
                               "metadata": {"name": "s"}},
                     "cloudProfile": {}, "seed": {}}
        }))
        .expect("cluster");
        if deleting {
            cluster.spec.shoot.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        }
        if let Some(value) = annotation {
            cluster
                .spec
                .shoot
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(ANNOTATION_FORCE_DELETION.into(), value.into());
        }
        cluster
    }

    #[test]
    fn force_deletion_needs_a_deleting_shoot_with_the_confirmation() {
        assert!(is_force_deleted(&cluster(true, Some("true"))));
        assert!(!is_force_deleted(&cluster(false, Some("true"))), "the annotation alone is no deletion");
        assert!(!is_force_deleted(&cluster(true, None)), "an ordinary deletion");
        assert!(!is_force_deleted(&cluster(true, Some("false"))));
    }

    #[test]
    fn the_finalizer_patch_tests_the_list_it_replaces() {
        let test = json_patch::PatchOperation::Test(json_patch::TestOperation {
            path: FINALIZERS.to_buf(),
            value: json!(["a"]),
        });
        let remove = json_patch::PatchOperation::Remove(json_patch::RemoveOperation { path: FINALIZERS.to_buf() });
        assert_eq!(
            serde_json::to_value(json_patch::Patch(vec![test, remove])).expect("encode"),
            json!([{"op": "test", "path": "/metadata/finalizers", "value": ["a"]},
                   {"op": "remove", "path": "/metadata/finalizers"}])
        );
    }
}
