//! What cri-resmgr needs per operation; the contract around it (status, finalizer, annotations, error codes) is the
//! driver's ([`crate::contract::driver`]).
//!
//! Every operation is resumable: it reads the world, does the next step and says it waits while something outside
//! (gardener-resource-manager, the node cleaner) is not done, so a controller restarted at any point (or a second
//! replica taking over) finishes the job.

use std::time::Duration;

use super::ReconcileError;
use super::health::check_health_of;
use super::rollout::{pending_note, pending_pools};
use crate::apis::common::ConditionStatus;
use crate::constants::{
    ANNOTATION_NODES_CLEANED, CLEANER_MANAGED_RESOURCE_NAME, MANAGED_RESOURCE_ORIGIN, SHOOT_MANAGED_RESOURCE_NAME,
};
use crate::contract::recorder::Severity;
use crate::contract::{Actuator, Failure, Outcome, Request};
use crate::domain::desired::{self, Desired};
use crate::domain::images::ImageVector;
use crate::domain::osc::ShootContext;
use crate::managed_resource;
use crate::runtime::error_chain;
use crate::runtime::metrics::{ControllerMetrics, Write};
use crate::runtime::stores::SeedStores;

/// How often a waiting operation looks again.
const WAIT_REQUEUE: Duration = Duration::from_secs(2);

const ERROR_RECONCILING: &str = "Error reconciling the cri-resmgr extension";
const ERROR_DEPLOYING: &str = "Error deploying the cri-resmgr shoot resources";
const ERROR_CLEANER: &str = "Error deploying the cri-resmgr node cleaner";
const ERROR_DELETING: &str = "Error deleting the cri-resmgr extension";
const ERROR_FORCE_DELETING: &str = "Error force-deleting the cri-resmgr extension";
const ERROR_MIGRATING: &str = "Error migrating the cri-resmgr extension";

/// Event reason: the node cleaner DaemonSet was deployed into the shoot (the Extension is being deleted).
pub const REASON_NODE_CLEANER_STARTED: &str = "NodeCleanerStarted";
/// Event reason: the node cleaner is done on every node; cri-resmgr's state is gone from the nodes.
pub const REASON_NODE_CLEANER_FINISHED: &str = "NodeCleanerFinished";
/// Event reason: worker pools that do not get cri-resmgr (no build for their architecture, or not containerd).
pub const REASON_WORKER_POOL_SKIPPED: &str = "WorkerPoolSkipped";
/// Event reason: node changes wait for gardenlet's next write of the worker pools' OperatingSystemConfigs.
pub const REASON_NODE_ROLLOUT_PENDING: &str = "NodeRolloutPending";

/// Event actions (what the extension did when it published the Event).
const ACTION_RECONCILE: &str = "Reconcile";
const ACTION_DELETE: &str = "Delete";

type Result<T> = std::result::Result<T, Failure<ReconcileError>>;

/// `error` happened while doing `description`.
fn failed<E: Into<ReconcileError>>(description: &'static str) -> impl FnOnce(E) -> Failure<ReconcileError> {
    move |error| Failure::new(description, error)
}

/// The cri-resmgr actuator: the seed client, the stores the operator's base configs are read from, the images, and
/// the metrics its ManagedResource writes are counted in.
pub struct CriResmgrActuator {
    pub client: kube::Client,
    pub stores: SeedStores,
    pub images: ImageVector,
    pub metrics: ControllerMetrics,
}

impl Actuator for CriResmgrActuator {
    type Error = ReconcileError;
    const DISPLAY_NAME: &'static str = "the cri-resmgr extension";

    /// Deploys the shoot resources, then tells what does not reach the nodes now: pools without a cri-resmgr build,
    /// and pools whose OSC waits for the next shoot reconcile (only gardenlet writes OSCs that reach the nodes).
    async fn reconcile(&self, request: &Request<'_>) -> Result<Outcome> {
        let desired = self.desired(request).await.map_err(failed(ERROR_RECONCILING))?;
        let objects = desired.runtime_objects().map_err(failed(ERROR_RECONCILING))?;
        let written = managed_resource::create_or_update_for_shoot(
            &self.client,
            request.namespace,
            SHOOT_MANAGED_RESOURCE_NAME,
            MANAGED_RESOURCE_ORIGIN,
            false,
            &objects,
        )
        .await
        .map_err(failed(ERROR_DEPLOYING))?;
        self.metrics.managed_resource_written(write_of(written));
        let mut notes = Vec::new();
        if !desired.pools_without_build.is_empty() {
            let pools: Vec<String> = desired.pools_without_build.iter().map(ToString::to_string).collect();
            tracing::warn!(namespace = request.namespace, pools = %pools.join(", "), "worker pools without cri-resmgr");
            notes.push(format!("Worker pools without cri-resmgr: {}.", pools.join(", ")));
        }
        if let Some(skipped) = request.cluster.and_then(|cluster| skipped_pools_note(&cluster.spec.shoot, &desired)) {
            request.record(Severity::Warning, REASON_WORKER_POOL_SKIPPED, ACTION_RECONCILE, &skipped).await;
        }
        // Only a note: a failure to tell must not fail the reconcile (and with it gardenlet's shoot flow).
        match self.pending_pools(request, desired).await {
            Ok(pending) => {
                if let Some(note) = pending_note(&pending) {
                    tracing::info!(namespace = request.namespace, pools = %pending.join(", "), "node changes wait for gardenlet's next OSC write");
                    request.record(Severity::Normal, REASON_NODE_ROLLOUT_PENDING, ACTION_RECONCILE, &note).await;
                    notes.push(note);
                }
            }
            Err(e) => {
                tracing::warn!(namespace = request.namespace, error = %error_chain(&e), "cannot tell whether node changes wait")
            }
        }
        Ok(if notes.is_empty() { Outcome::Done } else { Outcome::DoneWith { note: notes.join(" ") } })
    }

    /// Takes cri-resmgr off the nodes (their OSCs, then the cleaner DaemonSet unless there are no nodes to clean),
    /// then removes both ManagedResources.
    async fn delete(&self, request: &Request<'_>) -> Result<Outcome> {
        // Nodes lose cri-resmgr through their OSCs, which only gardenlet's shoot reconcile writes: once the
        // Extension is being deleted, our webhook leaves cri-resmgr out of every OSC gardenlet writes. The cleaner
        // below waits until the nodes have lost the unit.
        match cleaner_not_needed(request) {
            Some(reason) => tracing::debug!(namespace = request.namespace, reason, "no node cleaner"),
            None => {
                if let waiting @ Outcome::Waiting { .. } = self.clean_nodes(request).await? {
                    return Ok(waiting);
                }
            }
        }
        self.destroy_managed_resources(request, false, ERROR_DELETING).await
    }

    /// Removes our objects without waiting for anything in the shoot, which will not answer any more.
    async fn force_delete(&self, request: &Request<'_>) -> Result<Outcome> {
        for name in [SHOOT_MANAGED_RESOURCE_NAME, CLEANER_MANAGED_RESOURCE_NAME] {
            managed_resource::delete(&self.client, request.namespace, name)
                .await
                .map_err(failed(ERROR_FORCE_DELETING))?;
        }
        Ok(Outcome::Done)
    }

    /// The shoot keeps running cri-resmgr; only the seed-side objects go (keepObjects first).
    async fn migrate(&self, request: &Request<'_>) -> Result<Outcome> {
        self.destroy_managed_resources(request, true, ERROR_MIGRATING).await
    }

    /// Nothing of ours lives in `status.state`: restoring is reconciling from the Extension and the Cluster.
    async fn restore(&self, request: &Request<'_>) -> Result<Outcome> {
        self.reconcile(request).await
    }
}

/// Why the node cleaner is not needed, if it is not.
fn cleaner_not_needed(request: &Request<'_>) -> Option<&'static str> {
    let Some(cluster) = request.cluster else {
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
    let annotations = request.extension.metadata.annotations.as_ref();
    if annotations.and_then(|a| a.get(ANNOTATION_NODES_CLEANED)).map(String::as_str) == Some("true") {
        return Some("the nodes are already cleaned");
    }
    None
}

impl CriResmgrActuator {
    /// Everything the extension wants for this shoot, from the Cluster, the Extension's providerConfig and the base
    /// configs — the same computation the OSC webhook and `render` use.
    async fn desired(&self, request: &Request<'_>) -> std::result::Result<Desired, ReconcileError> {
        let cluster = request
            .cluster
            .ok_or_else(|| ReconcileError::MissingCluster { namespace: request.namespace.to_string() })?;
        let base = self.stores.base_configs().await?;
        let provider_config = request.extension.spec.provider_config.as_ref();
        Ok(desired::compute(&cluster.spec.shoot, provider_config, &base, &self.images)?)
    }

    /// The worker pools whose stored reconcile OSC differs from what the extension wants now: their nodes get the
    /// change with the next shoot reconcile.
    async fn pending_pools(
        &self,
        request: &Request<'_>,
        desired: Desired,
    ) -> std::result::Result<Vec<String>, ReconcileError> {
        let Some(cluster) = request.cluster else { return Ok(Vec::new()) };
        let context = ShootContext { shoot: cluster.spec.shoot.clone(), desired: Some(desired) };
        pending_pools(&self.client, request.namespace, &context, &self.images).await
    }

    /// Deploys the cleaner and waits until it is done on every node, then records that in an annotation (so that
    /// a resumed deletion does not clean again once the cleaner's ManagedResource is gone).
    async fn clean_nodes(&self, request: &Request<'_>) -> Result<Outcome> {
        // Only the shoot's version and pools matter here: a configuration that no longer validates (an operator's
        // broken base configs, rules stricter than when it was admitted) must not block disabling the extension.
        let Some(cluster) = request.cluster else { return Ok(Outcome::Done) };
        let objects = desired::cleaner_objects(&cluster.spec.shoot, &self.images).map_err(failed(ERROR_CLEANER))?;
        let written = managed_resource::create_or_update_for_shoot(
            &self.client,
            request.namespace,
            CLEANER_MANAGED_RESOURCE_NAME,
            MANAGED_RESOURCE_ORIGIN,
            false,
            &objects,
        )
        .await
        .map_err(failed(ERROR_CLEANER))?;
        self.metrics.managed_resource_written(write_of(written));
        if written == managed_resource::Outcome::Created {
            let note = "Deployed the node cleaner: it resets cri-resmgr's policy and removes its state on every node";
            request.record(Severity::Normal, REASON_NODE_CLEANER_STARTED, ACTION_DELETE, note).await;
        }
        let health = check_health_of(&self.client, request.namespace, CLEANER_MANAGED_RESOURCE_NAME)
            .await
            .map_err(failed(ERROR_DELETING))?;
        if health.status != ConditionStatus::True {
            tracing::debug!(namespace = request.namespace, message = %health.message, "node cleaner not done yet");
            return Ok(waiting("Waiting until cri-resmgr is removed from every node".to_string()));
        }
        request.annotate(ANNOTATION_NODES_CLEANED, "true").await.map_err(failed(ERROR_DELETING))?;
        let note = "The node cleaner finished on every node; cri-resmgr is gone from the nodes";
        request.record(Severity::Normal, REASON_NODE_CLEANER_FINISHED, ACTION_DELETE, note).await;
        Ok(Outcome::Done)
    }

    /// Deletes the runtime and cleaner ManagedResources (optionally keeping the shoot objects) and waits until they
    /// are gone.
    async fn destroy_managed_resources(
        &self,
        request: &Request<'_>,
        keep_objects: bool,
        description: &'static str,
    ) -> Result<Outcome> {
        let (client, namespace) = (&self.client, request.namespace);
        let mut remaining = Vec::new();
        for name in [SHOOT_MANAGED_RESOURCE_NAME, CLEANER_MANAGED_RESOURCE_NAME] {
            let existing = managed_resource::get(client, namespace, name).await.map_err(failed(description))?;
            let Some(existing) = existing else { continue };
            if keep_objects && existing.spec.keep_objects != Some(true) {
                managed_resource::set_keep_objects(client, namespace, name, true).await.map_err(failed(description))?;
            }
            if existing.metadata.deletion_timestamp.is_none() {
                managed_resource::delete(client, namespace, name).await.map_err(failed(description))?;
            }
            // Read again: gardener-resource-manager's finalizer may hold it, and its conditions say why.
            if let Some(deleting) = managed_resource::get(client, namespace, name).await.map_err(failed(description))? {
                remaining.push(match managed_resource::deletion_problem(&deleting) {
                    Some(problem) => format!("{name} ({problem})"),
                    None => name.to_string(),
                });
            }
        }
        if remaining.is_empty() {
            return Ok(Outcome::Done);
        }
        Ok(waiting(format!("Waiting until ManagedResources are deleted: {}", remaining.join(", "))))
    }
}

/// How a ManagedResource write is counted.
fn write_of(outcome: managed_resource::Outcome) -> Write {
    match outcome {
        managed_resource::Outcome::Created => Write::Created,
        managed_resource::Outcome::Updated => Write::Updated,
        managed_resource::Outcome::Unchanged => Write::Unchanged,
    }
}

/// What the WorkerPoolSkipped Event says: the pools that do not get cri-resmgr although the shoot enables it, and
/// why; `None` when every pool gets it.
fn skipped_pools_note(shoot: &crate::apis::core::Shoot, desired: &Desired) -> Option<String> {
    let containerd = desired::containerd_pools(shoot);
    let without_containerd: Vec<&str> = shoot
        .spec
        .provider
        .workers
        .iter()
        .map(|worker| worker.name.as_str())
        .filter(|name| !containerd.iter().any(|c| c == name))
        .collect();
    let mut reasons = Vec::new();
    if !desired.pools_without_build.is_empty() {
        let pools: Vec<String> = desired.pools_without_build.iter().map(ToString::to_string).collect();
        reasons.push(format!("no cri-resmgr build for their architecture: {}", pools.join(", ")));
    }
    if !without_containerd.is_empty() {
        reasons.push(format!("not running containerd: {}", without_containerd.join(", ")));
    }
    (!reasons.is_empty()).then(|| format!("Worker pools without cri-resmgr ({}).", reasons.join("; ")))
}

fn waiting(description: String) -> Outcome {
    Outcome::Waiting { description, requeue_after: WAIT_REQUEUE }
}
