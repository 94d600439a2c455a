//! Seed-side mutation of OperatingSystemConfigs: the worker pools that run cri-resmgr get its binary, config files
//! and unit, and kubelet talks to cri-resmgr's socket; every other reconcile OSC of the shoot is returned without
//! anything of ours. This adapter reads the inputs and answers; what the OSC becomes is
//! [`crate::domain::osc::desired_osc`], the function the reconciler and `render` use too.

use kube::Resource;
use kube::core::admission::{AdmissionResponse, Operation};

use crate::apis::extensions::OperatingSystemConfig;
use crate::constants::EXTENSION_TYPE;
use crate::domain::desired;
use crate::domain::images::ImageVector;
use crate::domain::node::should_mutate;
use crate::domain::osc::{ShootContext, desired_osc};
use crate::runtime::inputs::PlanError;
use crate::runtime::metrics::DenialReason;
use crate::runtime::review::deny;
use crate::runtime::stores::SeedStores;
use crate::runtime::{AdmissionHandler, RawAdmissionRequest};

/// The Cluster, the Extension and the base configs of a shoot namespace (from the process's watch-backed stores)
/// and the plan they make. `Ok(None)` when there is no Cluster (not a shoot namespace we can judge).
pub async fn shoot_context(
    stores: &SeedStores,
    namespace: &str,
    images: &ImageVector,
) -> Result<Option<ShootContext>, PlanError> {
    let kube_err = |action: String| move |source| PlanError::Kube { action, source };
    let Some(cluster) = stores.cluster(namespace).await.map_err(kube_err(format!("reading Cluster {namespace}")))?
    else {
        return Ok(None);
    };
    let extension = stores
        .extension(namespace)
        .await
        .map_err(kube_err(format!("reading Extension {namespace}/{EXTENSION_TYPE}")))?;
    // Once the Extension goes, cri-resmgr goes from the nodes: the OSC comes back without our additions.
    let Some(extension) = extension.filter(|e| e.metadata.deletion_timestamp.is_none()) else {
        return Ok(Some(ShootContext { shoot: cluster.spec.shoot.clone(), desired: None }));
    };
    let base = stores.base_configs().await?;
    let desired = desired::compute(&cluster.spec.shoot, extension.spec.provider_config.as_ref(), &base, images)?;
    Ok(Some(ShootContext { shoot: cluster.spec.shoot.clone(), desired: Some(desired) }))
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

/// The mutating webhook for OperatingSystemConfigs.
pub struct OscMutator {
    /// The seed objects the plan is made from; see [`crate::runtime::stores`] for what a miss means.
    pub stores: SeedStores,
    pub images: ImageVector,
}

impl OscMutator {
    async fn mutate(&self, request: &RawAdmissionRequest) -> Result<Option<json_patch::Patch>, OscMutationError> {
        let object = request.object.as_ref().ok_or(OscMutationError::NoObject)?;
        // The patch is the difference between the object as sent and the mutated one, so the OSC is read from that
        // tree (its `other` maps keep what it does not model, which the patch therefore leaves alone).
        let original = object.to_tree().map_err(OscMutationError::Decode)?;
        let osc: OperatingSystemConfig = crate::decode::from_ref(&original).map_err(OscMutationError::Decode)?;
        // Provision OSCs and OSCs being deleted need no plan: answer before reading anything.
        if !should_mutate(&osc) {
            return Ok(None);
        }
        let namespace = request.namespace.clone().unwrap_or_default();
        let plan_error = |source| OscMutationError::Plan { namespace: namespace.clone(), source };
        let context = shoot_context(&self.stores, &namespace, &self.images).await.map_err(plan_error)?;
        let Some(context) = context else {
            tracing::warn!(namespace, "no Cluster for this namespace; leaving the OperatingSystemConfig alone");
            return Ok(None);
        };
        let outcome = desired_osc(&osc, &context, &self.images).map_err(|e| plan_error(PlanError::Desired(e)))?;
        for warning in &outcome.warnings {
            tracing::warn!(namespace, osc = %request.name, warning, "OperatingSystemConfig only partly mutated");
        }
        let mutated = serde_json::to_value(&outcome.osc).map_err(OscMutationError::Encode)?;
        let patch = json_patch::diff(&original, &mutated);
        Ok((!patch.0.is_empty()).then_some(patch))
    }
}

impl AdmissionHandler for OscMutator {
    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        let response = AdmissionResponse::from(&request);
        if request.kind.group != OperatingSystemConfig::group(&())
            || request.kind.kind != OperatingSystemConfig::kind(&())
            || !matches!(request.operation, Operation::Create | Operation::Update)
        {
            return response;
        }
        match self.mutate(&request).await {
            Ok(None) => response,
            Ok(Some(patch)) => match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                Err(e) => {
                    deny(response, DenialReason::Internal, format!("internal error: cannot serialise the patch: {e}"))
                }
            },
            Err(error) => {
                tracing::warn!(namespace = ?request.namespace, osc = %request.name, reason = %error, "denied an OSC");
                deny(response, error.denial_reason(), error.to_string())
            }
        }
    }
}
