//! Propagation of node-side changes. The OSC webhook only runs when an OperatingSystemConfig is written, and
//! gardenlet rewrites them only on a shoot reconcile; so when the extension's view of a pool's nodes changes (configs
//! that reach node files, pool selection, the installation image, enable/disable), the reconciler asks for the OSCs
//! to be written again the way gardenlet does — the `gardener.cloud/operation: reconcile` annotation — and the
//! webhook mutates them on that UPDATE. Which OSCs need it is decided by the very function the webhook uses.

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::ReconcileError;
use crate::apis::extensions::OperatingSystemConfig;
use crate::constants::{ANNOTATION_OPERATION, ANNOTATION_TIMESTAMP, OPERATION_RECONCILE};
use crate::domain::images::ImageVector;
use crate::domain::node::should_mutate;
use crate::domain::osc::{ShootContext, desired_osc};

/// Requests a re-write of every reconcile OSC in `namespace` whose stored spec differs from what the extension
/// wants; returns how many were asked.
pub async fn propagate(
    client: &kube::Client,
    namespace: &str,
    context: &ShootContext,
    images: &ImageVector,
) -> Result<usize, ReconcileError> {
    let api: Api<OperatingSystemConfig> = Api::namespaced(client.clone(), namespace);
    let oscs = api
        .list(&ListParams::default())
        .await
        .map_err(|source| ReconcileError::ListOscs { namespace: namespace.to_string(), source })?;
    let mut requested = 0;
    for osc in oscs.items {
        if !should_mutate(&osc) {
            continue;
        }
        let wanted = desired_osc(&osc, context, images)?;
        if wanted.osc.spec == osc.spec {
            continue;
        }
        let body = json!({"metadata": {"annotations": {
            ANNOTATION_OPERATION: OPERATION_RECONCILE,
            ANNOTATION_TIMESTAMP: Timestamp::now().to_string(),
        }}});
        api.patch(&osc.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await.map_err(|source| {
            ReconcileError::RequestOscReconcile { namespace: namespace.to_string(), name: osc.name_any(), source }
        })?;
        tracing::info!(namespace, osc = %osc.name_any(), "asked for the OperatingSystemConfig to be re-written");
        requested += 1;
    }
    Ok(requested)
}
