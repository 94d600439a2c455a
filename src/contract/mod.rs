//! Gardener's extension contract, generic over what an extension does — the counterpart of Gardener's
//! `extensions/pkg/controller/extension` reconciler and health-check library:
//!
//! - [`driver`]: the reconciler. It owns every write the contract prescribes (operation annotation, finalizer,
//!   `lastOperation`/`lastError` with timestamps and codes, `observedGeneration`) and decides which operation to run
//!   (reconcile, delete, force-delete, migrate, restore), then calls an [`Actuator`] that only says what the
//!   extension needs;
//! - [`status`]: the contract's pure rules (operation type, skip rule, event predicate, status patches, readiness);
//! - [`events`]: the event predicate applied to a kube-rs watch stream;
//! - [`errors`]: Gardener error codes as a property of error values ([`errors::ErrorCodes`]);
//! - [`health`]: ManagedResource conditions → the Extension's health condition;
//! - [`recorder`]: Kubernetes Events on the Extension (failed operations, and what an actuator reports).
//!
//! Nothing here knows cri-resmgr; the extension's actuator lives in `crate::controller`.

pub mod driver;
pub mod errors;
pub mod events;
pub mod health;
pub mod recorder;
pub mod status;
#[cfg(test)]
pub(crate) mod test_support;

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

pub use self::driver::{Driver, DriverConfig, DriverError, key, reconcile};
use self::errors::ErrorCodes;
use self::recorder::{EventRecorder, Severity};
use crate::apis::common::LastOperationType;
use crate::apis::extensions::{Cluster, Extension};

/// What the driver hands the actuator for one operation on one Extension.
pub struct Request<'a> {
    /// The Extension as read for this pass.
    pub extension: &'a Extension,
    /// Its namespace: the shoot's namespace in the seed.
    pub namespace: &'a str,
    /// The shoot's Cluster (`None` only if it is gone; gardenlet creates it before the Extension).
    pub cluster: Option<&'a Cluster>,
    /// The operation being run.
    pub operation: LastOperationType,
    client: &'a kube::Client,
    recorder: &'a EventRecorder,
}

impl Request<'_> {
    /// Publishes an Event on the Extension (`reason` and `action` CamelCase); never fails the operation.
    pub async fn record(&self, severity: Severity, reason: &str, action: &str, note: &str) {
        self.recorder.publish(self.extension, severity, reason, action, note).await;
    }

    /// Records a fact the extension must remember across passes (e.g. "the nodes are cleaned") as one annotation on
    /// the Extension, written as a merge patch of that key alone so that it never touches the contract's own
    /// annotations and finalizers.
    pub async fn annotate(&self, key: &str, value: &str) -> Result<(), AnnotateError> {
        let name = self.extension.metadata.name.as_deref().unwrap_or_default();
        let body = json!({ "metadata": { "annotations": { key: value } } });
        Api::<Extension>::namespaced(self.client.clone(), self.namespace)
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|source| AnnotateError {
                key: key.to_string(),
                namespace: self.namespace.to_string(),
                name: name.to_string(),
                source,
            })?;
        Ok(())
    }
}

/// [`Request::annotate`] failed.
#[derive(Debug, thiserror::Error)]
#[error("annotating Extension {namespace}/{name} with {key}: {source}")]
pub struct AnnotateError {
    pub key: String,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

impl ErrorCodes for AnnotateError {
    fn codes(&self) -> Vec<errors::ErrorCode> {
        self.source.codes()
    }
}

/// How far an operation got in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The operation is complete: the driver reports success and does the contract's closing writes.
    Done,
    /// The operation is complete, and the user should know `note` (e.g. what waits for someone else): reported like
    /// [`Outcome::Done`], with `note` appended to the success description.
    DoneWith { note: String },
    /// The operation waits for something outside the extension (e.g. gardener-resource-manager). The driver reports
    /// `description` as Processing — written only when it changes, so waiting causes no status churn — and looks
    /// again after `requeue_after`.
    Waiting { description: String, requeue_after: Duration },
}

/// An operation failed while doing `description` (e.g. "Error deploying the shoot resources"); the driver reports
/// `<description>: <error>` in `lastOperation` and `lastError`, with the error's codes, and retries.
#[derive(Debug, thiserror::Error)]
#[error("{description}: {error}")]
pub struct Failure<E> {
    /// What was being done, in the words of `lastError.description`.
    pub description: &'static str,
    /// Why it failed.
    #[source]
    pub error: E,
}

impl<E> Failure<E> {
    /// `error`, which happened while doing `description`.
    pub fn new(description: &'static str, error: impl Into<E>) -> Self {
        Failure { description, error: error.into() }
    }
}

/// What an extension does for each operation of the contract. The driver has already checked the type, the skip
/// rules and the shoot's state, and does every contract write; each method only does the extension's own work and
/// must be safe to call again (a pass may be interrupted at any point and the next one resumes).
pub trait Actuator: Send + Sync + 'static {
    /// Why an operation failed; its codes go into `lastError.codes`.
    type Error: std::error::Error + ErrorCodes + Send + Sync + 'static;

    /// The extension as named in `lastOperation.description`, e.g. "the cri-resmgr extension".
    const DISPLAY_NAME: &'static str;

    /// Create and Reconcile: make the shoot look as the Extension asks.
    fn reconcile(&self, request: &Request<'_>) -> impl Future<Output = Result<Outcome, Failure<Self::Error>>> + Send;

    /// Delete: remove everything the extension put anywhere.
    fn delete(&self, request: &Request<'_>) -> impl Future<Output = Result<Outcome, Failure<Self::Error>>> + Send;

    /// ForceDelete (the shoot is force-deleted): remove the seed-side objects without waiting for the shoot.
    fn force_delete(&self, request: &Request<'_>)
    -> impl Future<Output = Result<Outcome, Failure<Self::Error>>> + Send;

    /// Migrate (source seed): remove the seed-side objects but keep everything in the shoot.
    fn migrate(&self, request: &Request<'_>) -> impl Future<Output = Result<Outcome, Failure<Self::Error>>> + Send;

    /// Restore (destination seed): take over from the state the source seed left.
    fn restore(&self, request: &Request<'_>) -> impl Future<Output = Result<Outcome, Failure<Self::Error>>> + Send;
}
