//! The OperatingSystemConfig as the extension wants it, for one shoot: the plan of the OSC's worker pool
//! ([`crate::domain::desired`]) applied by the node rules ([`crate::domain::node`]). The one function the OSC
//! webhook, the reconciler's propagation and `render` use, so the three never disagree.

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
/// and the reconciler's propagation use.
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
}
