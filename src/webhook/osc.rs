//! Seed-side mutation of OperatingSystemConfigs: the worker pools that run cri-resmgr get its binary, config files
//! and unit, and kubelet talks to cri-resmgr's socket; every other reconcile OSC of the shoot is returned without
//! anything of ours. This adapter reads the inputs and answers; what the OSC becomes is
//! [`crate::domain::osc::desired_osc`], the function the reconciler and `render` use too.

use std::sync::Arc;

use kube::Resource;
use kube::core::admission::{AdmissionResponse, Operation};

use crate::apis::extensions::OperatingSystemConfig;
use crate::constants::{ANNOTATION_TIMESTAMP, EXTENSION_TYPE};
use crate::domain::desired;
use crate::domain::images::ImageVector;
use crate::domain::node::should_mutate;
use crate::domain::osc::{ShootContext, desired_osc};
use crate::runtime::answer_memo::{Step, VolatileString, VolatileText};
use crate::runtime::inputs::PlanError;
use crate::runtime::metrics::DenialReason;
use crate::runtime::review::{Answer, Reuse, deny};
use crate::runtime::stores::{
    InputVersions, MadeFrom, SeedStores, StoredInputs, base_configs_of, shoot_as_answers_read,
};
use crate::runtime::{AdmissionHandler, RawAdmissionRequest};

/// A shoot's context (or why there is none), and what it was made from when every object exists (`None` when the
/// Cluster or the Extension does not, or the Extension is being deleted: the answer is not kept).
struct ContextRead {
    context: Result<Option<Arc<ShootContext>>, PlanError>,
    made_from: Option<Arc<MadeFrom>>,
}

impl ContextRead {
    fn not_kept(context: Option<ShootContext>) -> Self {
        ContextRead { context: Ok(context.map(Arc::new)), made_from: None }
    }
}

/// How many shoots' plans [`RecentContexts`] keeps: more than the shoots gardenlet reconciles at once by default (its
/// shoot controller's `concurrentSyncs`, 20). With more shoots in flight a plan may be gone before its shoot's next
/// OSC, which then makes it again: a cost, not a wrong answer. A plan is the Shoot's spec and the shoot's merged
/// configs, a few kilobytes.
const RECENT_CONTEXTS: usize = 32;

/// The plans of the shoots whose OSCs were planned last, by the versions of the objects each was made from.
/// gardenlet writes the reconcile OSCs of all of a shoot's pools in one go, and every one of them would otherwise
/// make the same plan and fingerprint from the same objects again. The same `resourceVersion`s are the same objects,
/// so a plan found here is the one they make.
#[derive(Default)]
struct RecentContexts(std::sync::Mutex<std::collections::VecDeque<RecentContext>>);

struct RecentContext {
    namespace: String,
    context: Arc<ShootContext>,
    /// What the plan was made from, with the versions it is found by.
    made_from: Arc<MadeFrom>,
}

impl RecentContexts {
    fn find(&self, namespace: &str, versions: &InputVersions) -> Option<ContextRead> {
        let recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = recent.iter().find(|kept| kept.namespace == namespace && kept.made_from.versions() == versions)?;
        Some(ContextRead { context: Ok(Some(found.context.clone())), made_from: Some(found.made_from.clone()) })
    }

    /// Keeps `read` for `namespace` when it is a plan made from objects that all exist, in place of what was kept for
    /// the namespace before; the shoot planned longest ago goes first.
    fn keep(&self, namespace: &str, read: &ContextRead) {
        let (Ok(Some(context)), Some(made_from)) = (&read.context, &read.made_from) else { return };
        let mut recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.retain(|kept| kept.namespace != namespace);
        if recent.len() == RECENT_CONTEXTS {
            recent.pop_front();
        }
        let (context, made_from) = (context.clone(), made_from.clone());
        recent.push_back(RecentContext { namespace: namespace.to_owned(), context, made_from });
    }
}

/// The Cluster, the Extension and the base configs of a shoot namespace (from the process's watch-backed stores)
/// and the plan they make; the context is `None` when there is no Cluster (not a shoot namespace we can judge).
/// `Err` when the apiserver could not be read.
async fn read_shoot_context(
    stores: &SeedStores,
    recent: &RecentContexts,
    namespace: &str,
    images: &ImageVector,
) -> Result<ContextRead, PlanError> {
    let kube_err = |action: String| move |source| PlanError::Kube { action, source };
    let Some(cluster) = stores.cluster(namespace).await.map_err(kube_err(format!("reading Cluster {namespace}")))?
    else {
        return Ok(ContextRead::not_kept(None));
    };
    let extension = stores
        .extension(namespace)
        .await
        .map_err(kube_err(format!("reading Extension {namespace}/{EXTENSION_TYPE}")))?;
    // Without the Extension, or once it goes, cri-resmgr goes from the nodes: the OSC comes back without our
    // additions (a passing state while it is deleted: that answer is not kept).
    let Some(extension) = extension.filter(|extension| extension.metadata.deletion_timestamp.is_none()) else {
        return Ok(ContextRead::not_kept(Some(ShootContext { shoot: shoot_as_answers_read(&cluster), desired: None })));
    };
    let base = stores.base_config_map().await?;
    let versions = InputVersions::of(&cluster, &extension, base.as_deref());
    if let Some(read) = versions.as_ref().and_then(|versions| recent.find(namespace, versions)) {
        return Ok(read);
    }
    // The answer reads no more of the Shoot than what is kept with it (see `MadeFrom`).
    let shoot = shoot_as_answers_read(&cluster);
    let made_from = MadeFrom::of(&cluster, &extension, base.as_deref()).map(Arc::new);
    let desired = base_configs_of(base.as_deref())
        .and_then(|base| Ok(desired::compute(&shoot, extension.spec.provider_config.as_ref(), &base, images)?));
    let context = desired.map(|desired| Some(Arc::new(ShootContext { shoot, desired: Some(desired) })));
    let read = ContextRead { context, made_from };
    recent.keep(namespace, &read);
    Ok(read)
}

/// Why an OperatingSystemConfig is denied; the text is what gardenlet sees (and retries on).
#[derive(Debug, thiserror::Error)]
pub enum OscMutationError {
    #[error("the request carries no OperatingSystemConfig")]
    NoObject,
    #[error("the OperatingSystemConfig cannot be read: {0}")]
    Decode(#[source] crate::decode::DecodeError),
    #[error("cannot compute the cri-resmgr additions for {namespace}: {source}")]
    Plan {
        namespace: String,
        #[source]
        source: PlanError,
    },
    #[error("internal error: {0}")]
    Encode(#[source] serde_json::Error),
}

impl OscMutationError {
    /// The class of the denial this error causes: the OSC cannot be read, the shoot's configuration is invalid, or
    /// the webhook could not do its work.
    pub fn denial_reason(&self) -> DenialReason {
        match self {
            OscMutationError::NoObject | OscMutationError::Decode(_) => DenialReason::BadRequest,
            OscMutationError::Plan { source: PlanError::Desired(_), .. } => DenialReason::Invalid,
            OscMutationError::Plan { source: PlanError::Kube { .. }, .. } | OscMutationError::Encode(_) => {
                DenialReason::Internal
            }
        }
    }
}

/// What changes in an OSC review from one gardenlet write to the next when nothing else changed (the timestamp
/// gardenlet sets on every deploy, the versions and times the apiserver and the OS extension write), in the object
/// and in the old object. The answer reads none of them: it comes from the OSC's spec, purpose, pool label and
/// deletion, and the shoot's objects; its patch is the difference between the object as sent and the mutated one,
/// which writes these fields back as it read them (the timestamps as long as they are of their kind, see
/// [`VolatileText::Time`]).
pub const OSC_VOLATILE_STRINGS: &[VolatileString] = &{
    use Step::{Each, Key};
    use VolatileText::{Any, Time};
    const fn at(path: &'static [Step], text: VolatileText) -> VolatileString {
        VolatileString { path, text }
    }
    [
        at(&[Key("object"), Key("metadata"), Key("annotations"), Key(ANNOTATION_TIMESTAMP)], Any),
        at(&[Key("object"), Key("metadata"), Key("resourceVersion")], Any),
        at(&[Key("object"), Key("metadata"), Key("managedFields"), Each, Key("time")], Time),
        at(&[Key("object"), Key("status"), Key("lastOperation"), Key("lastUpdateTime")], Time),
        at(&[Key("oldObject"), Key("metadata"), Key("annotations"), Key(ANNOTATION_TIMESTAMP)], Any),
        at(&[Key("oldObject"), Key("metadata"), Key("resourceVersion")], Any),
        at(&[Key("oldObject"), Key("metadata"), Key("managedFields"), Each, Key("time")], Time),
        // Nothing decodes the old object's status: any text.
        at(&[Key("oldObject"), Key("status"), Key("lastOperation"), Key("lastUpdateTime")], Any),
    ]
};

/// The mutating webhook for OperatingSystemConfigs.
pub struct OscMutator {
    /// The seed objects the plan is made from; see [`crate::runtime::stores`] for what a miss means.
    stores: SeedStores,
    images: ImageVector,
    recent: RecentContexts,
}

impl OscMutator {
    /// The webhook planning from `stores` with `images`.
    pub fn new(stores: SeedStores, images: ImageVector) -> Self {
        OscMutator { stores, images, recent: RecentContexts::default() }
    }

    /// The patch for the OSC in `request` (none when it stays as it is), and for how long that answer holds.
    async fn mutate(
        &self,
        request: &RawAdmissionRequest,
    ) -> (Result<Option<json_patch::Patch>, OscMutationError>, Reuse) {
        let object = match request.object.as_ref() {
            Some(object) => object,
            None => return (Err(OscMutationError::NoObject), Reuse::Always),
        };
        // The patch is the difference between the object as sent and the mutated one, so the OSC is read from that
        // tree (its `other` maps keep what it does not model, which the patch therefore leaves alone).
        let decoded = object.to_tree().and_then(|original| {
            let osc: OperatingSystemConfig = crate::decode::from_ref(&original)?;
            Ok((original, osc))
        });
        let (original, osc) = match decoded {
            Ok(decoded) => decoded,
            Err(e) => return (Err(OscMutationError::Decode(e)), Reuse::Always),
        };
        // Provision OSCs and OSCs being deleted need no plan: answer before reading anything.
        if !should_mutate(&osc) {
            return (Ok(None), Reuse::Always);
        }
        let namespace = request.namespace.clone().unwrap_or_default();
        let plan_error = |source| OscMutationError::Plan { namespace: namespace.clone(), source };
        let read = match read_shoot_context(&self.stores, &self.recent, &namespace, &self.images).await {
            Ok(read) => read,
            // The apiserver could not be read: the next try may succeed.
            Err(e) => return (Err(plan_error(e)), Reuse::Never),
        };
        // The answer follows from the OSC and what it read of these objects; it holds while the stores have that.
        let reuse = match read.made_from {
            Some(made_from) => {
                let (stores, inputs) = (self.stores.clone(), StoredInputs::of(&self.stores, &namespace));
                Reuse::while_holds(move || made_from.holds_in(&stores, &inputs))
            }
            None => Reuse::Never,
        };
        let context = match read.context {
            Ok(Some(context)) => context,
            Ok(None) => {
                tracing::warn!(namespace, "no Cluster for this namespace; leaving the OperatingSystemConfig alone");
                return (Ok(None), reuse);
            }
            Err(e) => return (Err(plan_error(e)), reuse),
        };
        let outcome = match desired_osc(&osc, &context, &self.images) {
            Ok(outcome) => outcome,
            Err(e) => return (Err(plan_error(PlanError::Desired(e))), reuse),
        };
        for warning in &outcome.warnings {
            tracing::warn!(namespace, osc = %request.name, warning, "OperatingSystemConfig only partly mutated");
        }
        // A warning is logged for every write that gets it: such an answer is not given again without it.
        let reuse = if outcome.warnings.is_empty() { reuse } else { Reuse::Never };
        let mutated = match serde_json::to_value(&outcome.osc) {
            Ok(mutated) => mutated,
            Err(e) => return (Err(OscMutationError::Encode(e)), Reuse::Never),
        };
        let patch = json_patch::diff(&original, &mutated);
        (Ok((!patch.0.is_empty()).then_some(patch)), reuse)
    }
}

impl AdmissionHandler for OscMutator {
    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        self.admit_reusable(request).await.response
    }

    async fn admit_reusable(&self, request: RawAdmissionRequest) -> Answer {
        let response = AdmissionResponse::from(&request);
        if request.kind.group != OperatingSystemConfig::group(&())
            || request.kind.kind != OperatingSystemConfig::kind(&())
            || !matches!(request.operation, Operation::Create | Operation::Update)
        {
            return Answer { response, reuse: Reuse::Always };
        }
        let (mutation, reuse) = self.mutate(&request).await;
        let response = match mutation {
            Ok(None) => response,
            Ok(Some(patch)) => match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                Err(e) => {
                    return Answer {
                        response: deny(
                            response,
                            DenialReason::Internal,
                            format!("internal error: cannot serialise the patch: {e}"),
                        ),
                        reuse: Reuse::Never,
                    };
                }
            },
            Err(error) => {
                tracing::warn!(namespace = ?request.namespace, osc = %request.name, reason = %error, "denied an OSC");
                deny(response, error.denial_reason(), error.to_string())
            }
        };
        Answer { response, reuse }
    }

    fn volatile_strings(&self) -> &'static [VolatileString] {
        OSC_VOLATILE_STRINGS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::extensions::{Cluster, Extension};

    fn objects(namespace: &str, cluster_version: &str) -> (Cluster, Extension) {
        let cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": namespace, "resourceVersion": cluster_version},
            "spec": {"shoot": {"metadata": {"name": "s", "namespace": "garden-p"}, "spec": {}},
                     "cloudProfile": {}, "seed": {}}
        }))
        .expect("cluster");
        let extension = serde_json::from_value(serde_json::json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1",
            "kind": "Extension",
            "metadata": {"name": EXTENSION_TYPE, "namespace": namespace, "resourceVersion": "7"},
            "spec": {"type": EXTENSION_TYPE}
        }))
        .expect("extension");
        (cluster, extension)
    }

    /// What `recent` gives for the objects, as (context, made_from) pointers; `None` when nothing is kept for them.
    fn kept(recent: &RecentContexts, namespace: &str, cluster_version: &str) -> Option<(usize, usize)> {
        let (cluster, extension) = objects(namespace, cluster_version);
        let versions = InputVersions::of(&cluster, &extension, None).expect("versions");
        let read = recent.find(namespace, &versions)?;
        let Ok(Some(context)) = read.context else { panic!("a kept read has a context") };
        Some((Arc::as_ptr(&context) as usize, Arc::as_ptr(&read.made_from.expect("made from")) as usize))
    }

    fn keep(recent: &RecentContexts, namespace: &str, cluster_version: &str) -> (usize, usize) {
        let (cluster, extension) = objects(namespace, cluster_version);
        let context = Arc::new(ShootContext { shoot: shoot_as_answers_read(&cluster), desired: None });
        let made_from = Arc::new(MadeFrom::of(&cluster, &extension, None).expect("made from"));
        let pointers = (Arc::as_ptr(&context) as usize, Arc::as_ptr(&made_from) as usize);
        let read = ContextRead { context: Ok(Some(context)), made_from: Some(made_from) };
        recent.keep(namespace, &read);
        pointers
    }

    #[test]
    fn a_kept_context_is_found_only_for_the_same_namespace_and_versions() {
        let recent = RecentContexts::default();
        let first = keep(&recent, "shoot--p--a", "1");
        assert_eq!(kept(&recent, "shoot--p--a", "1"), Some(first));
        assert_eq!(kept(&recent, "shoot--p--a", "2"), None, "another Cluster version");
        assert_eq!(kept(&recent, "shoot--p--b", "1"), None, "another namespace");

        let second = keep(&recent, "shoot--p--a", "2");
        assert_eq!(kept(&recent, "shoot--p--a", "2"), Some(second));
        assert_eq!(kept(&recent, "shoot--p--a", "1"), None, "a namespace keeps only its latest context");
    }

    #[test]
    fn only_the_latest_shoots_are_kept() {
        let recent = RecentContexts::default();
        for shoot in 0..=RECENT_CONTEXTS {
            keep(&recent, &format!("shoot--p--{shoot}"), "1");
        }
        assert_eq!(kept(&recent, "shoot--p--0", "1"), None, "the least recently kept shoot went");
        for shoot in 1..=RECENT_CONTEXTS {
            assert!(kept(&recent, &format!("shoot--p--{shoot}"), "1").is_some(), "shoot {shoot}");
        }
    }

    #[test]
    fn reads_that_must_not_be_kept_are_not() {
        let recent = RecentContexts::default();
        let (cluster, extension) = objects("shoot--p--a", "1");
        let versions = InputVersions::of(&cluster, &extension, None).expect("versions");
        recent.keep("shoot--p--a", &ContextRead::not_kept(None));
        let failed = ContextRead {
            context: Err(PlanError::Desired(desired::DesiredError::MissingKubernetesVersion)),
            made_from: MadeFrom::of(&cluster, &extension, None).map(Arc::new),
        };
        recent.keep("shoot--p--a", &failed);
        assert!(recent.find("shoot--p--a", &versions).is_none());
    }
}
