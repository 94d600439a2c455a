//! Stand-in for the shoot's gardener-resource-manager (GRM): its ManagedResource controller and the garbage
//! collector of ManagedResource Secrets, for ManagedResources without a class (those of the shoot's GRM).
//!
//! What it does, as GRM does (`pkg/resourcemanager/controller/managedresource`, `.../garbagecollector`):
//! - adds its finalizer to every ManagedResource it serves and removes it only once the objects are gone;
//! - decodes every data key of the referenced Secrets (YAML documents), injects `spec.injectLabels` and its own
//!   origin annotation and managed-by label, and applies each object into the shoot apiserver (server-side apply,
//!   forced, as GRM overwrites manual changes); objects no longer listed are deleted (prune), unless annotated
//!   `resources.gardener.cloud/keep-object: "true"`;
//! - on deletion, deletes what it applied (nothing with `spec.keepObjects`), waits until it is gone, then lets go;
//! - reports `status.resources`, `observedGeneration` and the conditions `ResourcesApplied` (from the apply),
//!   `ResourcesHealthy` and `ResourcesProgressing` (from the DaemonSets' status, which [`Kubelet`] writes as the
//!   shoot's kubelets and DaemonSet controller would);
//! - deletes Secrets labelled garbage-collectable that no ManagedResource of their namespace references any more.
//!
//! Not modelled: Brotli-compressed keys (`*.br`), `forceOverwrite*`, `equivalences`, health of kinds other than
//! DaemonSet (every other kind is healthy once applied), the `ignore` and `mode` annotations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use gardener_extension_cri_resmgr::apis::common::{Condition, ConditionStatus, find_condition};
use gardener_extension_cri_resmgr::apis::resources::{
    CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY, CONDITION_RESOURCES_PROGRESSING, ManagedResource,
    ObjectReference, reasons,
};
use gardener_extension_cri_resmgr::constants::{ANNOTATION_REFERENCE_PREFIX, LABEL_GARBAGE_COLLECTABLE_REFERENCE};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::Scope;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::kubelet::Kubelet;

/// GRM's finalizer on the ManagedResources it serves.
pub const FINALIZER: &str = "resources.gardener.cloud/gardener-resource-manager";
/// Annotation GRM stamps on every applied object: `<mr namespace>/<mr name>`.
pub const ANNOTATION_ORIGIN: &str = "resources.gardener.cloud/origin";
/// Label GRM stamps on every applied object.
pub const LABEL_MANAGED_BY: &str = "resources.gardener.cloud/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_GARDENER: &str = "gardener";
/// An object annotated so stays in the shoot when it leaves its ManagedResource or the ManagedResource goes.
pub const ANNOTATION_KEEP_OBJECT: &str = "resources.gardener.cloud/keep-object";
/// The field manager of the applies into the shoot.
pub const FIELD_MANAGER: &str = "gardener-resource-manager";

/// How often a served ManagedResource is looked at again (workload status changes are not watched).
const RESYNC: Duration = Duration::from_secs(2);
/// How often a ManagedResource whose namespace has no shoot (yet) is looked at again.
const NO_TARGET_RESYNC: Duration = Duration::from_secs(5);
/// A garbage-collectable Secret younger than this is never collected: the extension creates the Secret before it
/// points the ManagedResource at it.
pub const GARBAGE_MIN_AGE: Duration = Duration::from_secs(10);

/// What can go wrong while serving a ManagedResource.
#[derive(Debug, thiserror::Error)]
pub enum ResourceManagerError {
    #[error("ManagedResource {key}: cannot {action}: {source}")]
    Kube {
        key: String,
        action: String,
        #[source]
        source: kube::Error,
    },
}

fn kube_err(key: &str, action: impl Into<String>) -> impl FnOnce(kube::Error) -> ResourceManagerError {
    let (key, action) = (key.to_string(), action.into());
    move |source| ResourceManagerError::Kube { key, action, source }
}

/// One shoot the stand-in applies into: its apiserver and the kubelet stand-in of its nodes.
#[derive(Clone)]
pub struct Shoot {
    pub client: kube::Client,
    pub kubelet: Kubelet,
    discovered: Arc<Mutex<HashMap<GroupVersionKind, (ApiResource, Scope)>>>,
}

impl Shoot {
    /// A shoot whose DaemonSet pods are ready as soon as they are scheduled.
    pub fn new(client: kube::Client) -> Self {
        Shoot::with_kubelet(client.clone(), Kubelet::new(client))
    }

    /// A shoot whose DaemonSet status `kubelet` reports.
    pub fn with_kubelet(client: kube::Client, kubelet: Kubelet) -> Self {
        Shoot { client, kubelet, discovered: Arc::default() }
    }

    async fn api_for(&self, object: &Value) -> Result<Api<DynamicObject>, kube::Error> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let cached = self.discovered.lock().ok().and_then(|cache| cache.get(&gvk).cloned());
        let (resource, scope) = match cached {
            Some(found) => found,
            None => {
                let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk).await?;
                let found = (resource, capabilities.scope);
                if let Ok(mut cache) = self.discovered.lock() {
                    cache.insert(gvk, found.clone());
                }
                found
            }
        };
        Ok(match scope {
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
            Scope::Namespaced => {
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
        })
    }
}

/// Which shoot each seed namespace (`shoot--<project>--<name>`) belongs to; namespaces without one are left alone,
/// unless there is a shoot for every namespace (`make dev`, whose one apiserver plays seed and shoot).
#[derive(Clone, Default)]
pub struct Shoots {
    by_namespace: Arc<RwLock<BTreeMap<String, Shoot>>>,
    every_other: Option<Shoot>,
}

impl Shoots {
    /// The ManagedResources of every namespace go to `shoot`, unless [`Shoots::insert`] says otherwise.
    pub fn everywhere(shoot: Shoot) -> Self {
        Shoots { by_namespace: Arc::default(), every_other: Some(shoot) }
    }

    /// The ManagedResources of `namespace` go to `shoot` from now on.
    pub fn insert(&self, namespace: &str, shoot: Shoot) {
        if let Ok(mut shoots) = self.by_namespace.write() {
            shoots.insert(namespace.to_string(), shoot);
        }
    }

    /// The ManagedResources of `namespace` are no longer served.
    pub fn remove(&self, namespace: &str) {
        if let Ok(mut shoots) = self.by_namespace.write() {
            shoots.remove(namespace);
        }
    }

    fn get(&self, namespace: &str) -> Option<Shoot> {
        let found = self.by_namespace.read().ok().and_then(|shoots| shoots.get(namespace).cloned());
        found.or_else(|| self.every_other.clone())
    }
}

/// The stand-in: the seed it watches and the shoots it applies into.
#[derive(Clone)]
pub struct ResourceManager {
    seed: kube::Client,
    shoots: Shoots,
}

/// What one look at a ManagedResource found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not ours (a class is set) or its namespace has no shoot.
    NotServed,
    /// Applied (or failed to, as its conditions say).
    Applied,
    /// Being deleted; some objects are still there.
    DeletionPending,
    /// Deleted objects and finalizer; the ManagedResource goes.
    Released,
}

impl ResourceManager {
    pub fn new(seed: kube::Client, shoots: Shoots) -> Self {
        ResourceManager { seed, shoots }
    }

    /// Serves every ManagedResource of the seed until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let collector = self.clone().collect_garbage_periodically(shutdown.clone());
        let api: Api<ManagedResource> = Api::all(self.seed.clone());
        let controller = Controller::new(api, watcher::Config::default())
            .graceful_shutdown_on(shutdown.cancelled_owned())
            .run(
                |mr, manager| async move {
                    Ok::<_, ResourceManagerError>(match manager.reconcile(&mr).await? {
                        Step::NotServed => Action::requeue(NO_TARGET_RESYNC),
                        Step::Released => Action::await_change(),
                        Step::Applied | Step::DeletionPending => Action::requeue(RESYNC),
                    })
                },
                |_, error, _| {
                    tracing::info!(error = %error, "gardener-resource-manager stand-in retries");
                    Action::requeue(Duration::from_secs(1))
                },
                Arc::new(self),
            )
            .for_each(|_| std::future::ready(()));
        tokio::join!(controller, collector);
    }

    /// GRM's garbage collector runs on its own schedule over every namespace it serves, not only while a
    /// ManagedResource is there: the Secret a ManagedResource referenced before its last update is collected also
    /// when the ManagedResource was deleted right after that update.
    async fn collect_garbage_periodically(self, shutdown: CancellationToken) {
        let secrets: Api<Secret> = Api::all(self.seed.clone());
        let collectable = ListParams::default().labels(&format!("{LABEL_GARBAGE_COLLECTABLE_REFERENCE}=true"));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RESYNC) => {}
            }
            let namespaces: BTreeSet<String> = match secrets.list(&collectable).await {
                Ok(list) => list.items.iter().filter_map(|secret| secret.namespace()).collect(),
                Err(error) => {
                    tracing::info!(error = %error, "gardener-resource-manager stand-in retries its garbage collection");
                    continue;
                }
            };
            for namespace in namespaces.iter().filter(|namespace| self.shoots.get(namespace).is_some()) {
                if let Err(error) = self.collect_garbage(namespace, GARBAGE_MIN_AGE).await {
                    tracing::info!(error = %error, "gardener-resource-manager stand-in retries its garbage collection");
                }
            }
        }
    }

    /// One look at `mr`: apply or delete, report, collect garbage Secrets of its namespace.
    pub async fn reconcile(&self, mr: &ManagedResource) -> Result<Step, ResourceManagerError> {
        let namespace = mr.namespace().unwrap_or_default();
        let key = format!("{namespace}/{}", mr.name_any());
        if mr.spec.class.as_deref().is_some_and(|class| !class.is_empty()) {
            return Ok(Step::NotServed);
        }
        let Some(shoot) = self.shoots.get(&namespace) else { return Ok(Step::NotServed) };
        let step = if mr.metadata.deletion_timestamp.is_some() {
            self.delete(mr, &shoot, &key).await?
        } else {
            self.apply(mr, &shoot, &key).await?
        };
        self.collect_garbage(&namespace, GARBAGE_MIN_AGE).await?;
        Ok(step)
    }

    async fn apply(&self, mr: &ManagedResource, shoot: &Shoot, key: &str) -> Result<Step, ResourceManagerError> {
        let api: Api<ManagedResource> = Api::namespaced(self.seed.clone(), &mr.namespace().unwrap_or_default());
        if !mr.finalizers().iter().any(|f| f == FINALIZER) {
            let mut finalizers = mr.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": mr.resource_version()}});
            api.patch(&mr.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err(key, "add the finalizer"))?;
        }
        let objects = match self.objects_of(mr).await {
            Ok(objects) => objects,
            Err((reason, message)) => {
                let conditions = [
                    (CONDITION_RESOURCES_APPLIED, ConditionStatus::False, reason, message),
                    (CONDITION_RESOURCES_HEALTHY, ConditionStatus::Unknown, reasons::CHECKS_PENDING, String::new()),
                ];
                self.write_status(mr, &conditions, None, key).await?;
                return Ok(Step::Applied);
            }
        };

        let mut applied = Vec::new();
        let mut problems = Vec::new();
        for mut object in objects {
            stamp(&mut object, mr);
            let reference = reference_of(&object);
            match apply_one(shoot, &object).await {
                Ok(()) => applied.push(reference),
                Err(error) => problems.push(format!("error during apply of object {}: {error}", describe(&reference))),
            }
        }
        // Pruned only when everything applied: GRM keeps what it cannot replace yet.
        if problems.is_empty() {
            let wanted: BTreeSet<String> = applied.iter().map(describe).collect();
            for old in mr.status.iter().flat_map(|status| status.resources.iter()) {
                if !wanted.contains(&describe(old))
                    && let Err(error) = delete_one(shoot, old).await
                {
                    problems.push(format!("error during deletion of object {}: {error}", describe(old)));
                }
            }
        }

        let (healthy, progressing) = self.workload_health(shoot, &applied, key).await?;
        let applied_condition = if problems.is_empty() {
            (
                CONDITION_RESOURCES_APPLIED,
                ConditionStatus::True,
                reasons::APPLY_SUCCEEDED,
                "All resources are applied.".to_string(),
            )
        } else {
            (CONDITION_RESOURCES_APPLIED, ConditionStatus::False, reasons::APPLY_FAILED, problems.join("; "))
        };
        let healthy_condition = match &healthy {
            None => (CONDITION_RESOURCES_HEALTHY, ConditionStatus::True, "ResourcesHealthy", String::new()),
            Some(problem) => {
                (CONDITION_RESOURCES_HEALTHY, ConditionStatus::False, "DaemonSetUnhealthy", problem.clone())
            }
        };
        let progressing_condition = match &progressing {
            None => (CONDITION_RESOURCES_PROGRESSING, ConditionStatus::False, "ResourcesRolledOut", String::new()),
            Some(why) => (CONDITION_RESOURCES_PROGRESSING, ConditionStatus::True, "DaemonSetProgressing", why.clone()),
        };
        let conditions: Vec<(&str, ConditionStatus, &str, String)> =
            vec![applied_condition, healthy_condition, progressing_condition];
        self.write_status(mr, &conditions, Some(applied), key).await?;
        Ok(Step::Applied)
    }

    async fn delete(&self, mr: &ManagedResource, shoot: &Shoot, key: &str) -> Result<Step, ResourceManagerError> {
        if !mr.finalizers().iter().any(|f| f == FINALIZER) {
            return Ok(Step::Released);
        }
        let resources: Vec<ObjectReference> = mr.status.iter().flat_map(|s| s.resources.clone()).collect();
        let mut remaining = Vec::new();
        if mr.spec.keep_objects != Some(true) {
            for reference in &resources {
                match delete_one(shoot, reference).await {
                    Ok(true) => remaining.push(describe(reference)),
                    Ok(false) => {}
                    Err(error) => remaining.push(format!("{} ({error})", describe(reference))),
                }
            }
        }
        if !remaining.is_empty() {
            let message = format!("Deletion of old resources pending: {}", remaining.join(", "));
            let conditions =
                [(CONDITION_RESOURCES_APPLIED, ConditionStatus::False, reasons::DELETION_PENDING, message)];
            self.write_status(mr, &conditions, None, key).await?;
            return Ok(Step::DeletionPending);
        }
        let finalizers: Vec<&String> = mr.finalizers().iter().filter(|f| *f != FINALIZER).collect();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": mr.resource_version()}});
        let api: Api<ManagedResource> = Api::namespaced(self.seed.clone(), &mr.namespace().unwrap_or_default());
        match api.patch(&mr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(Step::Released),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Step::Released),
            Err(error) => Err(kube_err(key, "remove the finalizer")(error)),
        }
    }

    /// The objects of every referenced Secret, or the reason and message of `ResourcesApplied` why not.
    async fn objects_of(&self, mr: &ManagedResource) -> Result<Vec<Value>, (&'static str, String)> {
        let secrets: Api<Secret> = Api::namespaced(self.seed.clone(), &mr.namespace().unwrap_or_default());
        let mut objects = Vec::new();
        for reference in &mr.spec.secret_refs {
            let secret = secrets
                .get(&reference.name)
                .await
                .map_err(|e| (reasons::APPLY_FAILED, format!("could not read secret {}: {e}", reference.name)))?;
            for (data_key, bytes) in secret.data.unwrap_or_default() {
                let text = std::str::from_utf8(&bytes.0).map_err(|e| {
                    (reasons::DECODING_FAILED, format!("secret {} key {data_key} is not UTF-8: {e}", reference.name))
                })?;
                let documents: Vec<Value> = gardener_extension_cri_resmgr::yaml::from_multi_str(text).map_err(|e| {
                    (
                        reasons::DECODING_FAILED,
                        format!("could not decode secret {} key {data_key}: {e}", reference.name),
                    )
                })?;
                objects.extend(documents.into_iter().filter(|document| !document.is_null()));
            }
        }
        Ok(objects)
    }

    /// `(unhealthy because, progressing because)` of the applied DaemonSets, after the kubelet stand-in reported.
    async fn workload_health(
        &self,
        shoot: &Shoot,
        applied: &[ObjectReference],
        key: &str,
    ) -> Result<(Option<String>, Option<String>), ResourceManagerError> {
        let mut unhealthy = Vec::new();
        let mut progressing = Vec::new();
        for reference in applied.iter().filter(|r| r.kind.as_deref() == Some("DaemonSet")) {
            let name = reference.name.clone().unwrap_or_default();
            let namespace = reference.namespace.clone().unwrap_or_default();
            let api: Api<DaemonSet> = Api::namespaced(shoot.client.clone(), &namespace);
            let Some(daemonset) = api.get_opt(&name).await.map_err(kube_err(key, "read a DaemonSet"))? else {
                unhealthy.push(format!("DaemonSet {namespace}/{name} not found"));
                continue;
            };
            let daemonset = shoot.kubelet.report(&daemonset).await.map_err(kube_err(key, "report a DaemonSet"))?;
            let status = daemonset.status.unwrap_or_default();
            if status.observed_generation < daemonset.metadata.generation {
                progressing.push(format!("DaemonSet {namespace}/{name} has not observed its latest generation"));
            }
            if status.updated_number_scheduled.unwrap_or(0) < status.desired_number_scheduled {
                progressing.push(format!("DaemonSet {namespace}/{name} is rolling out"));
            }
            if status.number_ready < status.desired_number_scheduled {
                unhealthy.push(format!(
                    "DaemonSet {namespace}/{name} has {} of {} pods ready",
                    status.number_ready, status.desired_number_scheduled
                ));
            }
        }
        let join = |list: Vec<String>| (!list.is_empty()).then(|| list.join("; "));
        Ok((join(unhealthy), join(progressing)))
    }

    /// Writes the conditions (keeping the transition time of those whose status did not change),
    /// `observedGeneration` and, when given, `resources` — only when something changed.
    async fn write_status(
        &self,
        mr: &ManagedResource,
        conditions: &[(&str, ConditionStatus, &str, String)],
        resources: Option<Vec<ObjectReference>>,
        key: &str,
    ) -> Result<(), ResourceManagerError> {
        let old = mr.status.clone().unwrap_or_default();
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut merged: Vec<Condition> = old.conditions.clone();
        for (type_, status, reason, message) in conditions {
            let previous = find_condition(&old.conditions, type_);
            let unchanged =
                previous.is_some_and(|p| p.status == *status && p.reason == *reason && p.message == *message);
            if unchanged {
                continue;
            }
            let condition = Condition {
                type_: type_.to_string(),
                status: status.clone(),
                reason: reason.to_string(),
                message: message.clone(),
                last_transition_time: match previous {
                    Some(p) if p.status == *status => p.last_transition_time.clone(),
                    _ => now.clone(),
                },
                last_update_time: now.clone(),
                codes: Vec::new(),
            };
            merged.retain(|c| c.type_ != *type_);
            merged.push(condition);
        }
        let generation = mr.meta().generation;
        let resources = resources.unwrap_or_else(|| old.resources.clone());
        if merged == old.conditions && old.observed_generation == generation && resources == old.resources {
            return Ok(());
        }
        let patch = json!({"status": {
            "conditions": merged,
            "observedGeneration": generation,
            "resources": resources,
        }});
        let api: Api<ManagedResource> = Api::namespaced(self.seed.clone(), &mr.namespace().unwrap_or_default());
        match api.patch_status(&mr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            // Gone meanwhile (its deletion finished): nothing to report on.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(kube_err(key, "write the status")(error)),
        }
    }

    /// Deletes the garbage-collectable Secrets of `namespace` that no ManagedResource there references and that are
    /// older than `min_age`; returns their names.
    pub async fn collect_garbage(
        &self,
        namespace: &str,
        min_age: Duration,
    ) -> Result<Vec<String>, ResourceManagerError> {
        let secrets: Api<Secret> = Api::namespaced(self.seed.clone(), namespace);
        let managed: Api<ManagedResource> = Api::namespaced(self.seed.clone(), namespace);
        let key = format!("{namespace}/*");
        let referenced: BTreeSet<String> = managed
            .list(&ListParams::default())
            .await
            .map_err(kube_err(&key, "list ManagedResources"))?
            .items
            .iter()
            .flat_map(|mr| mr.annotations().iter())
            .filter(|(annotation, _)| annotation.starts_with(ANNOTATION_REFERENCE_PREFIX))
            .map(|(_, secret)| secret.clone())
            .collect();
        let collectable = secrets
            .list(&ListParams::default().labels(&format!("{LABEL_GARBAGE_COLLECTABLE_REFERENCE}=true")))
            .await
            .map_err(kube_err(&key, "list Secrets"))?
            .items;
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut collected = Vec::new();
        for secret in collectable {
            let name = secret.name_any();
            let old_enough = secret
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|created| now.duration_since(created.0).try_into().ok())
                .is_some_and(|age: Duration| age >= min_age);
            if referenced.contains(&name) || !old_enough {
                continue;
            }
            match secrets.delete(&name, &DeleteParams::default()).await {
                Ok(_) => collected.push(name),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(kube_err(&key, format!("collect Secret {name}"))(error)),
            }
        }
        Ok(collected)
    }
}

/// GRM's marks on an applied object: the ManagedResource's `injectLabels`, its managed-by label and origin.
fn stamp(object: &mut Value, mr: &ManagedResource) {
    let metadata = &mut object["metadata"];
    if !metadata["labels"].is_object() {
        metadata["labels"] = json!({});
    }
    for (label, value) in mr.spec.inject_labels.iter().flatten() {
        metadata["labels"][label] = json!(value);
    }
    metadata["labels"][LABEL_MANAGED_BY] = json!(MANAGED_BY_GARDENER);
    if !metadata["annotations"].is_object() {
        metadata["annotations"] = json!({});
    }
    let origin = format!("{}/{}", mr.namespace().unwrap_or_default(), mr.name_any());
    metadata["annotations"][ANNOTATION_ORIGIN] = json!(origin);
}

fn reference_of(object: &Value) -> ObjectReference {
    let text = |value: &Value| value.as_str().map(str::to_string);
    ObjectReference {
        api_version: text(&object["apiVersion"]),
        kind: text(&object["kind"]),
        name: text(&object["metadata"]["name"]),
        namespace: text(&object["metadata"]["namespace"]),
        ..ObjectReference::default()
    }
}

/// `Kind/namespace/name` (or `Kind/name`), as GRM names objects in its messages.
fn describe(reference: &ObjectReference) -> String {
    let kind = reference.kind.as_deref().unwrap_or_default();
    let name = reference.name.as_deref().unwrap_or_default();
    match reference.namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{kind}/{namespace}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

async fn apply_one(shoot: &Shoot, object: &Value) -> Result<(), kube::Error> {
    let api = shoot.api_for(object).await?;
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await.map(|_| ())
}

/// Deletes the object unless it is annotated to be kept; whether it still exists afterwards (a deletion in
/// progress).
async fn delete_one(shoot: &Shoot, reference: &ObjectReference) -> Result<bool, kube::Error> {
    let as_object = json!({
        "apiVersion": reference.api_version,
        "kind": reference.kind,
        "metadata": {"name": reference.name, "namespace": reference.namespace},
    });
    let api = shoot.api_for(&as_object).await?;
    let name = reference.name.clone().unwrap_or_default();
    let Some(existing) = api.get_opt(&name).await? else { return Ok(false) };
    if existing.annotations().get(ANNOTATION_KEEP_OBJECT).is_some_and(|v| v == "true") {
        return Ok(false);
    }
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
        Err(error) => return Err(error),
    }
    Ok(api.get_opt(&name).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gardener_extension_cri_resmgr::managed_resource::managed_resource_for_shoot;

    #[test]
    fn applied_objects_carry_the_injected_labels_and_the_origin() {
        let mr = managed_resource_for_shoot("extension-runtime-cri-resmgr", "shoot--p--s", "cri-resmgr", false, "s1");
        let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kube-system", "labels": {"a": "b"}}});
        stamp(&mut object, &mr);
        assert_eq!(object["metadata"]["labels"]["a"], "b", "own labels kept");
        assert_eq!(object["metadata"]["labels"]["shoot.gardener.cloud/no-cleanup"], "true");
        assert_eq!(object["metadata"]["labels"][LABEL_MANAGED_BY], MANAGED_BY_GARDENER);
        assert_eq!(object["metadata"]["annotations"][ANNOTATION_ORIGIN], "shoot--p--s/extension-runtime-cri-resmgr");
        assert_eq!(describe(&reference_of(&object)), "ConfigMap/kube-system/c");
        let cluster_scoped =
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}});
        assert_eq!(describe(&reference_of(&cluster_scoped)), "ClusterRole/r");
    }
}
