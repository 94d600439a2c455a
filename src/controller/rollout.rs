//! What reaches the nodes when, and telling the user.
//!
//! gardener-node-agent applies the OperatingSystemConfig that gardenlet hands it during the shoot reconcile:
//! gardenlet writes each pool's reconcile OSC (our webhook mutates it on that write), waits until the OS extension
//! reconciled it, and ships the OSC it reads back into the shoot as the node-agent's secret. Nothing else puts an
//! OSC onto the nodes. Asking for a re-write of the seed's OSC (the `gardener.cloud/operation: reconcile`
//! annotation) only makes the OS extension reconcile it again; the nodes see the result at the next shoot reconcile,
//! when gardenlet writes the OSC anyway. So the controller never touches OSCs. It only compares what they carry with
//! what the extension wants now and says which pools' node changes wait for the next shoot reconcile; it follows
//! gardenlet's OSC writes (a watch in the controller), so the note goes as soon as the OSCs carry the change.

use kube::api::{Api, ListParams};

use super::ReconcileError;
use crate::apis::extensions::OperatingSystemConfig;
use crate::domain::images::ImageVector;
use crate::domain::osc::{ShootContext, pools_pending_rollout};

/// The worker pools whose reconcile OSC in `namespace` does not carry what the extension wants now.
pub async fn pending_pools(
    client: &kube::Client,
    namespace: &str,
    context: &ShootContext,
    images: &ImageVector,
) -> Result<Vec<String>, ReconcileError> {
    let oscs = Api::<OperatingSystemConfig>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|source| ReconcileError::ListOscs { namespace: namespace.to_string(), source })?;
    Ok(pools_pending_rollout(&oscs.items, context, images)?)
}

/// What the user reads after "Successfully reconciled …" when node changes wait, or `None`.
pub fn pending_note(pools: &[String]) -> Option<String> {
    if pools.is_empty() {
        return None;
    }
    Some(format!(
        "Node changes wait for the next shoot reconcile (worker pools: {}): they are not yet in the \
         OperatingSystemConfigs gardenlet last wrote, and reach those nodes with gardenlet's next write of them \
         (the shoot reconcile) — cri-resmgr's node files and unit (fallback, force, EXTRA_OPTIONS, policy switch, \
         pool selection, removal); the agent configs (default, group.*, node.*) apply now.",
        pools.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_pools_and_what_waits() {
        assert_eq!(pending_note(&[]), None);
        let note = pending_note(&["cpu-worker".to_string(), "b".to_string()]).expect("note");
        assert!(note.starts_with("Node changes wait for the next shoot reconcile (worker pools: cpu-worker, b)"));
        assert!(note.contains("the agent configs (default, group.*, node.*) apply now"), "{note}");
    }
}
