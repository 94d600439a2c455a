//! Seed-side mutation of OperatingSystemConfigs: the worker pools that run cri-resmgr get its binary, config files
//! and unit, and kubelet talks to cri-resmgr's socket; every other reconcile OSC of the shoot is returned without
//! anything of ours. This adapter reads the inputs and answers; what the OSC becomes is
//! [`crate::domain::osc::desired_osc`], the function the reconciler and `render` use too.

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
use crate::runtime::stores::{MadeFrom, SeedStores, StoredInputs, base_configs_of, shoot_as_answers_read};
use crate::runtime::{AdmissionHandler, RawAdmissionRequest};

/// A shoot's context (or why there is none), and what it was made from when every object exists (`None` when the
/// Cluster or the Extension does not, or the Extension is being deleted: the answer is not kept).
struct ContextRead {
    context: Result<Option<ShootContext>, PlanError>,
    made_from: Option<MadeFrom>,
}

impl ContextRead {
    fn not_kept(context: Result<Option<ShootContext>, PlanError>) -> Self {
        ContextRead { context, made_from: None }
    }
}

/// The Cluster, the Extension and the base configs of a shoot namespace (from the process's watch-backed stores)
/// and the plan they make; the context is `None` when there is no Cluster (not a shoot namespace we can judge).
/// `Err` when the apiserver could not be read.
async fn read_shoot_context(
    stores: &SeedStores,
    namespace: &str,
    images: &ImageVector,
) -> Result<ContextRead, PlanError> {
    let kube_err = |action: String| move |source| PlanError::Kube { action, source };
    let Some(cluster) = stores.cluster(namespace).await.map_err(kube_err(format!("reading Cluster {namespace}")))?
    else {
        return Ok(ContextRead::not_kept(Ok(None)));
    };
    let extension = stores
        .extension(namespace)
        .await
        .map_err(kube_err(format!("reading Extension {namespace}/{EXTENSION_TYPE}")))?;
    // The answer reads no more of the Shoot than what is kept with it (see `MadeFrom`).
    let shoot = shoot_as_answers_read(&cluster);
    let Some(extension) = extension else {
        return Ok(ContextRead::not_kept(Ok(Some(ShootContext { shoot, desired: None }))));
    };
    // Once the Extension goes, cri-resmgr goes from the nodes: the OSC comes back without our additions (a passing
    // state: that answer is not kept).
    if extension.metadata.deletion_timestamp.is_some() {
        return Ok(ContextRead::not_kept(Ok(Some(ShootContext { shoot, desired: None }))));
    }
    let base = stores.base_config_map().await?;
    let made_from = MadeFrom::of(&cluster, &extension, base.as_deref());
    let desired = base_configs_of(base.as_deref())
        .and_then(|base| Ok(desired::compute(&shoot, extension.spec.provider_config.as_ref(), &base, images)?));
    let context = desired.map(|desired| Some(ShootContext { shoot, desired: Some(desired) }));
    Ok(ContextRead { context, made_from })
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
    pub stores: SeedStores,
    pub images: ImageVector,
}

impl OscMutator {
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
        let read = match read_shoot_context(&self.stores, &namespace, &self.images).await {
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
