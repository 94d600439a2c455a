//! The OperatingSystemConfig as the extension wants it, for one shoot: the plan of the OSC's worker pool
//! ([`crate::domain::desired`]) applied by the node rules ([`crate::domain::node`]). The one function the OSC
//! webhook, the reconciler (to tell which pools' node files are pending) and `render` use, so the three never
//! disagree.

use crate::apis::core::Shoot;
use crate::apis::extensions::OperatingSystemConfig;
use crate::constants::LABEL_WORKER_POOL;
use crate::domain::desired::{Desired, DesiredError};
use crate::domain::images::ImageVector;
use crate::domain::node::{MutationOutcome, mutate, should_mutate};

/// Everything needed to compute the mutation of the OSCs in one shoot namespace.
pub struct ShootContext {
    /// The Shoot, from the namespace's Cluster.
    pub shoot: Shoot,
    /// `None` when the extension is disabled (no Extension, or the Extension is being deleted).
    pub desired: Option<Desired>,
}

/// The OSC as the extension wants it: reconcile OSCs of selected pools with cri-resmgr, all others without
/// anything of ours. Provision OSCs and OSCs being deleted are returned unchanged. The one function the webhook
/// and the reconciler use.
pub fn desired_osc(
    osc: &OperatingSystemConfig,
    context: &ShootContext,
    images: &ImageVector,
) -> Result<MutationOutcome, DesiredError> {
    if !should_mutate(osc) {
        return Ok(MutationOutcome { osc: osc.clone(), warnings: Vec::new() });
    }
    let pool = osc.metadata.labels.as_ref().and_then(|l| l.get(LABEL_WORKER_POOL));
    let plan = match (&context.desired, pool) {
        (Some(desired), Some(pool)) => desired.pool_plan(&context.shoot, pool, images)?,
        _ => None,
    };
    Ok(mutate(osc, plan.as_ref()))
}

/// The worker pools whose stored reconcile OSC differs from what the extension wants now, in the order given (each
/// once; an OSC without a pool label is named by its own name).
///
/// gardenlet writes a pool's reconcile OSC in the shoot reconcile — our webhook mutates it then — and hands exactly
/// that OSC to gardener-node-agent; nothing else reaches the nodes. So a difference means node-side changes
/// (cri-resmgr's files and unit, kubelet's endpoint) that wait for the next shoot reconcile.
pub fn pools_pending_rollout(
    oscs: &[OperatingSystemConfig],
    context: &ShootContext,
    images: &ImageVector,
) -> Result<Vec<String>, DesiredError> {
    let mut pending: Vec<String> = Vec::new();
    for osc in oscs.iter().filter(|osc| should_mutate(osc)) {
        if desired_osc(osc, context, images)?.osc.spec == osc.spec {
            continue;
        }
        let pool = osc.metadata.labels.as_ref().and_then(|l| l.get(LABEL_WORKER_POOL)).or(osc.metadata.name.as_ref());
        if let Some(pool) = pool
            && !pending.contains(pool)
        {
            pending.push(pool.clone());
        }
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::apis::extensions::OscPurpose;
    use crate::constants::{EXTENSION_TYPE, UNIT_NAME};
    use crate::domain::desired::compute;

    const EXAMPLE_SHOOT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shoot.yaml"));
    const EXAMPLE_OSC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/30-osc-cpu-worker.yaml"));

    /// The adapters' entry point: the plan comes from the shoot's [`Desired`] for the OSC's pool; every other OSC gets
    /// nothing of ours; and provision or deleted OSCs come back as they are without a plan being computed at all, so
    /// that a problem with the plan (here: no installation image) cannot block them.
    #[test]
    fn desired_osc_plans_only_reconcile_oscs_of_pools_that_run_cri_resmgr() {
        let shoot: Shoot = crate::yaml::from_str(EXAMPLE_SHOOT).expect("example shoot");
        let images = ImageVector::embedded().expect("images");
        let (_, extension) = shoot.spec.enabled_extension(EXTENSION_TYPE).expect("extension enabled");
        let desired = compute(&shoot, extension.provider_config.as_ref(), &BTreeMap::new(), &images).expect("desired");
        let context = ShootContext { shoot: shoot.clone(), desired: Some(desired.clone()) };
        let osc: OperatingSystemConfig = crate::yaml::from_str(EXAMPLE_OSC).expect("example");

        let plan = desired.pool_plan(&shoot, "cpu-worker", &images).expect("plan").expect("cpu-worker is selected");
        let mutated = desired_osc(&osc, &context, &images).expect("selected pool");
        assert_eq!(mutated, mutate(&osc, Some(&plan)));
        assert!(mutated.osc.spec.unit(UNIT_NAME).is_some());

        let mut other_pool = mutated.osc.clone();
        other_pool
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(LABEL_WORKER_POOL.to_owned(), "gpu".into());
        let restored = desired_osc(&other_pool, &context, &images).expect("pool not in the shoot");
        assert_eq!(restored, mutate(&other_pool, None));
        assert!(restored.osc.spec.unit(UNIT_NAME).is_none());
        let disabled = ShootContext { shoot: shoot.clone(), desired: None };
        assert_eq!(desired_osc(&mutated.osc, &disabled, &images).expect("disabled").osc, osc);

        let no_images = ImageVector::read("images: []\n", "empty").expect("empty vector");
        assert!(desired_osc(&osc, &context, &no_images).is_err(), "a selected pool needs the installation image");
        let mut provision = osc.clone();
        provision.spec.purpose = OscPurpose::Provision;
        let outcome = desired_osc(&provision, &context, &no_images).expect("no plan for a provision OSC");
        assert_eq!(outcome, MutationOutcome { osc: provision, warnings: Vec::new() });
        let mut deleted = osc.clone();
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
        assert_eq!(desired_osc(&deleted, &context, &no_images).expect("no plan for a deleted OSC").osc, deleted);
    }

    /// A pool is pending when its stored OSC is not what the webhook would make of it now; provision OSCs, OSCs
    /// being deleted and up-to-date OSCs are not.
    #[test]
    fn pools_whose_stored_osc_differs_are_pending_the_next_shoot_reconcile() {
        let shoot: Shoot = crate::yaml::from_str(EXAMPLE_SHOOT).expect("example shoot");
        let images = ImageVector::embedded().expect("images");
        let (_, extension) = shoot.spec.enabled_extension(EXTENSION_TYPE).expect("extension enabled");
        let desired = compute(&shoot, extension.provider_config.as_ref(), &BTreeMap::new(), &images).expect("desired");
        let enabled = ShootContext { shoot: shoot.clone(), desired: Some(desired) };
        let disabled = ShootContext { shoot: shoot.clone(), desired: None };
        let original: OperatingSystemConfig = crate::yaml::from_str(EXAMPLE_OSC).expect("example");
        let mutated = desired_osc(&original, &enabled, &images).expect("mutated").osc;
        let mut provision = original.clone();
        provision.spec.purpose = OscPurpose::Provision;

        let pending = |oscs: &[OperatingSystemConfig], context| pools_pending_rollout(oscs, context, &images).unwrap();
        assert_eq!(pending(&[mutated.clone(), provision.clone()], &enabled), Vec::<String>::new(), "in step");
        assert_eq!(pending(&[original.clone(), mutated.clone()], &enabled), ["cpu-worker"], "each pool once");
        assert_eq!(pending(std::slice::from_ref(&original), &disabled), Vec::<String>::new());
        assert_eq!(pending(&[mutated.clone(), provision], &disabled), ["cpu-worker"], "removal waits too");
        let mut unlabelled = original;
        unlabelled.metadata.labels = None;
        let name = unlabelled.metadata.name.clone().expect("name");
        // Without a pool label there is no plan (nothing of ours is wanted), so only a mutated one is pending.
        unlabelled.spec = mutated.spec;
        assert_eq!(pending(&[unlabelled], &enabled), [name]);
    }
}
