//! What the controller does for one Extension, per operation type: reconcile (also create and restore), delete,
//! force-delete and migrate — following Gardener's extension contract, including how status is reported.
//!
//! Every flow is resumable: it reads the world, does the next step and requeues while it waits, so a controller
//! restarted at any point (or a second replica taking over) finishes the job.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::status;
use super::{Context, ReconcileError};
use crate::apis::common::{LastOperationState, LastOperationType};
use crate::apis::extensions::{Cluster, Extension};
use crate::constants::{
    ANNOTATION_FORCE_DELETION, ANNOTATION_NODES_CLEANED, ANNOTATION_OPERATION, CLEANER_MANAGED_RESOURCE_NAME,
    EXTENSION_TYPE, FINALIZER, LABEL_ROLE, MANAGED_RESOURCE_ORIGIN, OPERATION_RECONCILE, OPERATION_RESTORE,
    OPERATION_WAIT_FOR_STATE, ROLE_SHOOT, SHOOT_MANAGED_RESOURCE_NAME,
};
use crate::domain::desired::{self, Desired};
use crate::domain::osc::ShootContext;
use crate::managed_resource;
use crate::runtime::inputs;

/// How often a waiting flow looks again.
const WAIT_REQUEUE: Duration = Duration::from_secs(2);

/// Entry point for one Extension.
pub async fn reconcile(extension: Arc<Extension>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if extension.spec.type_ != EXTENSION_TYPE {
        return Ok(Action::await_change());
    }
    // gardenlet is still restoring state on a migration's destination: nothing to do yet.
    if status::operation_annotation(&extension) == Some(OPERATION_WAIT_FOR_STATE) {
        return Ok(Action::await_change());
    }
    let operation = status::operation_type(&extension);
    if status::should_skip(&extension, &operation) {
        tracing::debug!(extension = %key(&extension), "migrated away; skipping until restored");
        return Ok(Action::await_change());
    }
    let namespace = extension.namespace().unwrap_or_default();
    let cluster = get_cluster(&ctx.client, &namespace).await?;
    if shoot_failed(&ctx.client, &namespace, cluster.as_ref()).await? {
        tracing::info!(extension = %key(&extension), "the shoot's last operation failed; not acting until it is retried");
        return Ok(Action::await_change());
    }
    let flow = Flow { ctx: &ctx, extension: &extension, namespace: &namespace, cluster: cluster.as_ref(), operation };
    match flow.operation {
        LastOperationType::Migrate => flow.migrate().await,
        LastOperationType::Delete if flow.force_deletion() => flow.force_delete().await,
        LastOperationType::Delete => flow.delete().await,
        _ => flow.reconcile().await,
    }
}

fn key(extension: &Extension) -> String {
    format!("{}/{}", extension.namespace().unwrap_or_default(), extension.name_any())
}

async fn get_cluster(client: &kube::Client, namespace: &str) -> Result<Option<Cluster>, ReconcileError> {
    Api::<Cluster>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(|source| ReconcileError::Kube { action: format!("reading Cluster {namespace}"), source })
}

/// Gardener does not act for shoots whose last operation failed (they are only retried by a user).
async fn shoot_failed(
    client: &kube::Client,
    namespace: &str,
    cluster: Option<&Cluster>,
) -> Result<bool, ReconcileError> {
    let Some(cluster) = cluster else { return Ok(false) };
    if !cluster.spec.shoot.is_failed() {
        return Ok(false);
    }
    let ns = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(|source| ReconcileError::Kube { action: format!("reading Namespace {namespace}"), source })?;
    Ok(ns.and_then(|ns| ns.labels().get(LABEL_ROLE).cloned()).as_deref() == Some(ROLE_SHOOT))
}

struct Flow<'a> {
    ctx: &'a Context,
    extension: &'a Extension,
    namespace: &'a str,
    cluster: Option<&'a Cluster>,
    operation: LastOperationType,
}

impl Flow<'_> {
    fn api(&self) -> Api<Extension> {
        Api::namespaced(self.ctx.client.clone(), self.namespace)
    }

    fn name(&self) -> String {
        self.extension.name_any()
    }

    fn generation(&self) -> i64 {
        self.extension.meta().generation.unwrap_or_default()
    }

    fn now(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        status::status_time(self.extension, Timestamp::now())
    }

    fn kube_err(&self, action: &str) -> impl FnOnce(kube::Error) -> ReconcileError {
        let action = format!("{action} (Extension {}/{})", self.namespace, self.name());
        move |source| ReconcileError::Kube { action, source }
    }

    async fn patch_status(&self, body: Value) -> Result<(), ReconcileError> {
        self.api()
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(self.kube_err("patching status"))?;
        Ok(())
    }

    async fn patch_metadata(&self, metadata: Value) -> Result<(), ReconcileError> {
        let body = json!({ "metadata": metadata });
        self.api()
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(self.kube_err("patching metadata"))?;
        Ok(())
    }

    async fn remove_operation_annotation(&self) -> Result<(), ReconcileError> {
        if status::operation_annotation(self.extension).is_none() {
            return Ok(());
        }
        self.patch_metadata(json!({ "annotations": { ANNOTATION_OPERATION: null } })).await
    }

    /// Replaces the finalizer list with a JSON patch that first tests the list we read: a concurrent change of the
    /// list makes the patch fail (and the reconcile retry) instead of losing someone else's finalizer, while our own
    /// annotation patches in the same pass do not get in the way as a resourceVersion precondition would.
    async fn set_finalizers(&self, finalizers: Vec<String>) -> Result<(), ReconcileError> {
        let current = self.extension.meta().finalizers.clone().filter(|f| !f.is_empty());
        if current.is_none() && finalizers.is_empty() {
            return Ok(());
        }
        let current = current.map(|f| json!(f)).unwrap_or(Value::Null);
        let mut operations = vec![json!({"op": "test", "path": "/metadata/finalizers", "value": current})];
        operations.push(if finalizers.is_empty() {
            json!({"op": "remove", "path": "/metadata/finalizers"})
        } else {
            json!({"op": "add", "path": "/metadata/finalizers", "value": finalizers})
        });
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(operations))
            .map_err(|e| ReconcileError::Internal(format!("building the finalizer patch: {e}")))?;
        self.api()
            .patch(&self.name(), &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .map_err(self.kube_err("updating finalizers"))?;
        Ok(())
    }

    async fn ensure_finalizer(&self) -> Result<(), ReconcileError> {
        let finalizers = self.extension.finalizers();
        if finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        let mut updated = finalizers.to_vec();
        updated.push(FINALIZER.to_string());
        self.set_finalizers(updated).await
    }

    async fn remove_finalizer(&self) -> Result<(), ReconcileError> {
        let finalizers = self.extension.finalizers();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(());
        }
        self.set_finalizers(finalizers.iter().filter(|f| *f != FINALIZER).cloned().collect()).await
    }

    /// Starts the operation: Processing with `description`, unless the Extension already shows this operation as
    /// Processing (a resumed or waiting flow), whose more precise description is then kept.
    async fn begin(&self, description: &str) -> Result<(), ReconcileError> {
        let last = self.extension.status.as_ref().and_then(|s| s.last_operation.as_ref());
        if last.is_some_and(|op| op.type_ == self.operation && op.state == LastOperationState::Processing) {
            return Ok(());
        }
        self.patch_status(status::processing(&self.operation, description, &self.now())).await
    }

    /// Says what a waiting flow waits for; written only when it changes, so waiting produces no status churn.
    async fn waiting(&self, description: &str) -> Result<(), ReconcileError> {
        let last = self.extension.status.as_ref().and_then(|s| s.last_operation.as_ref());
        if last.is_some_and(|op| {
            op.type_ == self.operation && op.state == LastOperationState::Processing && op.description == description
        }) {
            return Ok(());
        }
        self.patch_status(status::processing(&self.operation, description, &self.now())).await
    }

    async fn succeeded(&self, description: &str) -> Result<(), ReconcileError> {
        self.patch_status(status::succeeded(&self.operation, description, self.generation(), &self.now())).await
    }

    /// Reports an error the way Gardener's library does, then hands it to the error policy (requeue).
    async fn fail(&self, description: &str, error: ReconcileError) -> Result<Action, ReconcileError> {
        let text = error.to_string();
        let codes = error.codes();
        let body = status::error(&self.operation, description, &text, &codes, self.generation(), &self.now());
        if let Err(e) = self.patch_status(body).await {
            tracing::warn!(extension = %key(self.extension), error = %e, "cannot report the error in the status");
        }
        Err(error)
    }

    fn force_deletion(&self) -> bool {
        self.cluster.is_some_and(|cluster| {
            let shoot = &cluster.spec.shoot;
            shoot.metadata.deletion_timestamp.is_some()
                && shoot
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_FORCE_DELETION))
                    .map(String::as_str)
                    == Some("true")
        })
    }

    /// Everything the extension wants for this shoot, from the Cluster, the Extension's providerConfig and the base
    /// configs — the same computation the OSC webhook and `render` use.
    async fn desired(&self) -> Result<Desired, ReconcileError> {
        let cluster =
            self.cluster.ok_or_else(|| ReconcileError::MissingCluster { namespace: self.namespace.to_string() })?;
        let base = inputs::fetch_base_configs(&self.ctx.client, &self.ctx.config.configmap_namespace).await?;
        desired::compute(&cluster.spec.shoot, self.extension.spec.provider_config.as_ref(), &base, &self.ctx.images)
            .map_err(ReconcileError::Desired)
    }

    /// Create, Reconcile and Restore: deploy the shoot resources.
    async fn reconcile(&self) -> Result<Action, ReconcileError> {
        const DESCRIPTION: &str = "Reconciling the cri-resmgr extension";
        // The reconcile annotation is removed before the work, so a new request during it is not lost.
        if status::operation_annotation(self.extension) == Some(OPERATION_RECONCILE) {
            self.remove_operation_annotation().await?;
        }
        self.ensure_finalizer().await?;
        self.begin(DESCRIPTION).await?;
        let desired = match self.desired().await {
            Ok(desired) => desired,
            Err(e) => return self.fail("Error reconciling the cri-resmgr extension", e).await,
        };
        let objects = match desired.runtime_objects() {
            Ok(objects) => objects,
            Err(e) => return self.fail("Error reconciling the cri-resmgr extension", e.into()).await,
        };
        if let Err(e) = managed_resource::create_or_update_for_shoot(
            &self.ctx.client,
            self.namespace,
            SHOOT_MANAGED_RESOURCE_NAME,
            MANAGED_RESOURCE_ORIGIN,
            false,
            &objects,
        )
        .await
        {
            return self.fail("Error deploying the cri-resmgr shoot resources", e.into()).await;
        }
        if let Err(e) = self.propagate_to_nodes(Some(desired)).await {
            return self.fail("Error updating the worker pools' OperatingSystemConfigs", e).await;
        }
        self.succeeded("Successfully reconciled the cri-resmgr extension").await?;
        // Restore (like migrate) removes its annotation only after success, so gardenlet can tell it is done.
        if status::operation_annotation(self.extension) == Some(OPERATION_RESTORE) {
            self.remove_operation_annotation().await?;
        }
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "reconciled");
        Ok(Action::requeue(self.ctx.config.resync_interval))
    }

    /// Asks for the shoot's reconcile OSCs to be re-written where they differ from what the extension wants now
    /// (`desired: None`: nothing of ours).
    async fn propagate_to_nodes(&self, desired: Option<Desired>) -> Result<(), ReconcileError> {
        let Some(cluster) = self.cluster else { return Ok(()) };
        let context = ShootContext { shoot: cluster.spec.shoot.clone(), desired };
        super::propagation::propagate(&self.ctx.client, self.namespace, &context, &self.ctx.images).await?;
        Ok(())
    }

    /// Why the node cleaner is not needed, if it is not.
    fn cleaner_not_needed(&self) -> Option<&'static str> {
        let Some(cluster) = self.cluster else {
            return Some("the Cluster is gone");
        };
        let shoot = &cluster.spec.shoot;
        // Shoot deletion removes the Workers (and so the nodes) before the Extension; there is nothing to clean.
        if shoot.metadata.deletion_timestamp.is_some() {
            return Some("the shoot is being deleted");
        }
        // A hibernated shoot has no nodes; they come back from the OSC, which no longer carries cri-resmgr.
        if shoot.spec.is_hibernated() {
            return Some("the shoot is hibernated");
        }
        if self.extension.annotations().get(ANNOTATION_NODES_CLEANED).map(String::as_str) == Some("true") {
            return Some("the nodes are already cleaned");
        }
        None
    }

    /// Delete: clean the nodes with the cleaner DaemonSet (unless there are no nodes to clean), then remove both
    /// ManagedResources and the finalizer.
    async fn delete(&self) -> Result<Action, ReconcileError> {
        self.begin("Deleting the cri-resmgr extension").await?;
        // Nodes lose cri-resmgr through their OSCs; gardenlet rewrites them too, this only makes it sooner.
        if let Err(e) = self.propagate_to_nodes(None).await {
            return self.fail("Error updating the worker pools' OperatingSystemConfigs", e).await;
        }
        match self.cleaner_not_needed() {
            Some(reason) => tracing::debug!(extension = %key(self.extension), reason, "no node cleaner"),
            None => {
                if let Some(waiting) = self.clean_nodes().await? {
                    return Ok(waiting);
                }
            }
        }
        self.destroy_managed_resources(false).await
    }

    /// Deploys the cleaner and reports whether it is done on every node; `Some(action)` while waiting.
    async fn clean_nodes(&self) -> Result<Option<Action>, ReconcileError> {
        // Only the shoot's version and pools matter here: a configuration that no longer validates (an operator's
        // broken base configs, rules stricter than when it was admitted) must not block disabling the extension.
        let Some(cluster) = self.cluster else { return Ok(None) };
        let objects = match desired::cleaner_objects(&cluster.spec.shoot, &self.ctx.images) {
            Ok(objects) => objects,
            Err(e) => return self.fail("Error deploying the cri-resmgr node cleaner", e.into()).await.map(Some),
        };
        if let Err(e) = managed_resource::create_or_update_for_shoot(
            &self.ctx.client,
            self.namespace,
            CLEANER_MANAGED_RESOURCE_NAME,
            MANAGED_RESOURCE_ORIGIN,
            false,
            &objects,
        )
        .await
        {
            return self.fail("Error deploying the cri-resmgr node cleaner", e.into()).await.map(Some);
        }
        let health = managed_resource::check_health_of(&self.ctx.client, self.namespace, CLEANER_MANAGED_RESOURCE_NAME)
            .await
            .map_err(ReconcileError::from)?;
        if health.status != crate::apis::common::ConditionStatus::True {
            self.waiting("Waiting until cri-resmgr is removed from every node").await?;
            tracing::debug!(extension = %key(self.extension), message = %health.message, "node cleaner not done yet");
            return Ok(Some(Action::requeue(WAIT_REQUEUE)));
        }
        self.patch_metadata(json!({ "annotations": { ANNOTATION_NODES_CLEANED: "true" } })).await?;
        Ok(None)
    }

    /// Deletes the runtime and cleaner ManagedResources (optionally keeping the shoot objects), waits until they
    /// are gone, then reports success and frees the Extension.
    async fn destroy_managed_resources(&self, keep_objects: bool) -> Result<Action, ReconcileError> {
        let mut remaining = Vec::new();
        for name in [SHOOT_MANAGED_RESOURCE_NAME, CLEANER_MANAGED_RESOURCE_NAME] {
            let existing = managed_resource::get(&self.ctx.client, self.namespace, name).await?;
            let Some(existing) = existing else { continue };
            if keep_objects && existing.spec.keep_objects != Some(true) {
                managed_resource::set_keep_objects(&self.ctx.client, self.namespace, name, true).await?;
            }
            if existing.metadata.deletion_timestamp.is_none() {
                managed_resource::delete(&self.ctx.client, self.namespace, name).await?;
            }
            // Read again: gardener-resource-manager's finalizer may hold it, and its conditions say why.
            if let Some(deleting) = managed_resource::get(&self.ctx.client, self.namespace, name).await? {
                remaining.push(match managed_resource::deletion_problem(&deleting) {
                    Some(problem) => format!("{name} ({problem})"),
                    None => name.to_string(),
                });
            }
        }
        if !remaining.is_empty() {
            self.waiting(&format!("Waiting until ManagedResources are deleted: {}", remaining.join(", "))).await?;
            return Ok(Action::requeue(WAIT_REQUEUE));
        }
        match self.operation {
            LastOperationType::Migrate => {
                self.succeeded("Successfully migrated the cri-resmgr extension").await?;
                // Migrate frees the object entirely: the destination seed owns it from now on.
                self.set_finalizers(Vec::new()).await?;
                self.remove_operation_annotation().await?;
            }
            _ => {
                self.succeeded("Successfully deleted the cri-resmgr extension").await?;
                self.remove_finalizer().await?;
            }
        }
        tracing::info!(extension = %key(self.extension), operation = %self.operation, "done");
        Ok(Action::await_change())
    }

    /// ForceDelete (the shoot is force-deleted): remove our objects without waiting for anything in the shoot.
    async fn force_delete(&self) -> Result<Action, ReconcileError> {
        self.begin("Force-deleting the cri-resmgr extension").await?;
        for name in [SHOOT_MANAGED_RESOURCE_NAME, CLEANER_MANAGED_RESOURCE_NAME] {
            managed_resource::delete(&self.ctx.client, self.namespace, name).await?;
        }
        self.succeeded("Successfully force-deleted the cri-resmgr extension").await?;
        self.remove_finalizer().await?;
        Ok(Action::await_change())
    }

    /// Migrate: the shoot keeps running cri-resmgr; only the seed-side objects go (keepObjects first).
    async fn migrate(&self) -> Result<Action, ReconcileError> {
        self.begin("Migrating the cri-resmgr extension").await?;
        self.destroy_managed_resources(true).await
    }
}
