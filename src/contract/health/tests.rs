//! Tests of [`super`].

use k8s_openapi::jiff::Timestamp;

use super::*;
use crate::apis::extensions::ExtensionSpec;
use crate::apis::resources::{ManagedResourceStatus, reasons};
use crate::constants::{ANNOTATION_OPERATION, EXTENSION_TYPE};
use crate::contract::test_support::{T0, at, condition, healthy_conditions, with_last};

/// A ManagedResource at generation 2 with the given conditions, observed at `observed`.
fn mr_with(observed: Option<i64>, conditions: Vec<Condition>) -> ManagedResource {
    let mut mr = ManagedResource::new("mr", Default::default());
    mr.metadata.namespace = Some("shoot--p--s".into());
    mr.metadata.generation = Some(2);
    mr.status = Some(ManagedResourceStatus { conditions, observed_generation: observed, ..Default::default() });
    mr
}

#[test]
fn health_follows_gardener_check_managed_resource() {
    let healthy = is_healthy(&mr_with(Some(2), healthy_conditions()));
    assert_eq!(healthy, Health { applied: true, healthy: true, progressing: false, problem: None });
    assert!(healthy.is_healthy());

    let outdated = is_healthy(&mr_with(Some(1), healthy_conditions()));
    assert!(!outdated.applied && outdated.healthy && !outdated.is_healthy());
    assert_eq!(
        outdated.problem.as_deref(),
        Some("observed generation of managed resource shoot--p--s/mr outdated (1/2)")
    );

    let no_status = is_healthy(&mr_with(None, Vec::new()));
    assert!(!no_status.applied && !no_status.healthy);

    let missing = is_healthy(&mr_with(Some(2), healthy_conditions()[..1].to_vec()));
    assert!(missing.applied && !missing.healthy);
    assert_eq!(
        missing.problem.as_deref(),
        Some("condition ResourcesHealthy for managed resource shoot--p--s/mr has not been reported yet")
    );

    let mut conditions = healthy_conditions();
    conditions[1] = condition(CONDITION_RESOURCES_HEALTHY, "False", "DaemonSetUnhealthy", "ds is not ready");
    let unhealthy = is_healthy(&mr_with(Some(2), conditions));
    assert!(unhealthy.applied && !unhealthy.healthy);
    assert_eq!(
        unhealthy.problem.as_deref(),
        Some("condition ResourcesHealthy of managed resource shoot--p--s/mr is False: ds is not ready")
    );

    let mut conditions = healthy_conditions();
    conditions[2] = condition(CONDITION_RESOURCES_PROGRESSING, "True", "DaemonSetProgressing", "rolling");
    let progressing = is_healthy(&mr_with(Some(2), conditions));
    assert!(progressing.is_healthy() && progressing.progressing);
}

#[test]
fn check_health_maps_to_the_extension_condition() {
    let not_found = check_health("shoot--p--s", "mr", None);
    assert_eq!(
        not_found,
        HealthCheckResult {
            status: ConditionStatus::False,
            reason: "HealthCheckUnsuccessful".into(),
            message: r#"Managed Resource "mr" in namespace "shoot--p--s" not found"#.into(),
            codes: vec![],
        }
    );

    let mut conditions = healthy_conditions();
    conditions[0] = condition(
        CONDITION_RESOURCES_APPLIED,
        "False",
        reasons::APPLY_FAILED,
        r#"Could not apply all new resources: Error during apply of object "apps/v1/DaemonSet/kube-system/x": DaemonSet.apps "x" is invalid: spec.template: Required value"#,
    );
    let invalid = check_health("shoot--p--s", "mr", Some(&mr_with(Some(2), conditions)));
    assert_eq!(invalid.status, ConditionStatus::False);
    assert_eq!(invalid.reason, "HealthCheckUnsuccessful");
    assert!(invalid.message.starts_with(r#"managed resource "mr" in namespace "shoot--p--s" is unhealthy: condition ResourcesApplied of managed resource shoot--p--s/mr is False: Could not apply"#), "{}", invalid.message);
    assert_eq!(invalid.codes, vec![ErrorCode::ConfigurationProblem]);

    let mut conditions = healthy_conditions();
    conditions[1] = condition(CONDITION_RESOURCES_HEALTHY, "False", "DaemonSetUnhealthy", "ds is not ready");
    let unhealthy = check_health("shoot--p--s", "mr", Some(&mr_with(Some(2), conditions)));
    assert_eq!((unhealthy.status, unhealthy.codes), (ConditionStatus::False, vec![]));

    let mut conditions = healthy_conditions();
    conditions[2] = condition(CONDITION_RESOURCES_PROGRESSING, "True", "DaemonSetProgressing", "1 of 3 updated");
    let progressing = check_health("shoot--p--s", "mr", Some(&mr_with(Some(2), conditions)));
    assert_eq!(progressing.status, ConditionStatus::Progressing);
    assert_eq!(progressing.reason, "HealthCheckProgressing");
    assert!(progressing.message.ends_with("is progressing: 1 of 3 updated"));

    let ok = check_health("shoot--p--s", "mr", Some(&mr_with(Some(2), healthy_conditions())));
    assert_eq!((ok.status.clone(), ok.reason.as_str()), (ConditionStatus::True, "HealthCheckSuccessful"));

    let now = Time(Timestamp::from_second(1_767_225_600).expect("time"));
    let built = ok.condition(&now);
    assert_eq!(built.type_, "SystemComponentsHealthy");
    assert_eq!(invalid.condition(&now).codes, ["ERR_CONFIGURATION_PROBLEM"]);
    assert_eq!((built.last_transition_time.clone(), built.last_update_time.clone()), (now.clone(), now));
}

fn cond(status: &str, reason: &str, message: &str, codes: &[&str], transition: i64, update: i64) -> Condition {
    Condition {
        type_: "SystemComponentsHealthy".into(),
        status: ConditionStatus::from(status),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: at(transition),
        last_update_time: at(update),
        codes: codes.iter().map(|c| c.to_string()).collect(),
    }
}

#[test]
fn upsert_condition_moves_times_only_on_change() {
    let other = Condition { type_: "Other".into(), ..cond("True", "r", "m", &[], T0, T0) };
    let existing = vec![other.clone(), cond("True", "HealthCheckSuccessful", "ok", &[], T0, T0)];
    let now = at(T0 + 60);
    let incoming = |status, reason, message, codes: &[&str]| cond(status, reason, message, codes, 1, 1);

    // New condition type: appended, both times now.
    let added =
        upsert_condition(std::slice::from_ref(&other), incoming("True", "HealthCheckSuccessful", "ok", &[]), &now);
    assert_eq!(added, vec![other.clone(), cond("True", "HealthCheckSuccessful", "ok", &[], T0 + 60, T0 + 60)]);

    // Nothing changed: identical (times of `new` ignored).
    assert_eq!(upsert_condition(&existing, incoming("True", "HealthCheckSuccessful", "ok", &[]), &now), existing);

    // Message changed: update time only.
    let updated = upsert_condition(&existing, incoming("True", "HealthCheckSuccessful", "fine", &[]), &now);
    assert_eq!(updated, vec![other.clone(), cond("True", "HealthCheckSuccessful", "fine", &[], T0, T0 + 60)]);

    // Codes changed: update time only.
    let coded = upsert_condition(&existing, incoming("True", "HealthCheckSuccessful", "ok", &["ERR_X"]), &now);
    assert_eq!(coded[1], cond("True", "HealthCheckSuccessful", "ok", &["ERR_X"], T0, T0 + 60));

    // Status changed: both, in place.
    let flipped = upsert_condition(&existing, incoming("False", "HealthCheckUnsuccessful", "bad", &[]), &now);
    assert_eq!(flipped, vec![other, cond("False", "HealthCheckUnsuccessful", "bad", &[], T0 + 60, T0 + 60)]);
}

fn extension() -> Extension {
    let mut ext = Extension::new(EXTENSION_TYPE, ExtensionSpec { type_: EXTENSION_TYPE.into(), ..Default::default() });
    ext.metadata.namespace = Some("shoot--p--s".into());
    ext
}

#[test]
fn only_live_extensions_of_our_type_get_a_health_report() {
    assert!(needs_health_check(&with_last(extension(), "Reconcile", "Succeeded"), EXTENSION_TYPE));
    assert!(needs_health_check(&extension(), EXTENSION_TYPE), "not yet reconciled: reported as unhealthy");
    assert!(!needs_health_check(&extension(), "registry-cache"), "another type");
    let mut deleting = extension();
    deleting.metadata.deletion_timestamp = Some(at(T0));
    assert!(!needs_health_check(&deleting, EXTENSION_TYPE), "being deleted");
    let mut migrating = extension();
    migrating.metadata.annotations.get_or_insert_default().insert(ANNOTATION_OPERATION.into(), "migrate".into());
    assert!(!needs_health_check(&migrating, EXTENSION_TYPE), "being migrated");
    assert!(!needs_health_check(&with_last(extension(), "Migrate", "Succeeded"), EXTENSION_TYPE), "migrated away");
}

#[test]
fn updated_conditions_are_none_when_the_report_did_not_change() {
    let ok = HealthCheckResult {
        status: ConditionStatus::True,
        reason: REASON_HEALTH_CHECK_SUCCESSFUL.into(),
        message: "All health checks successful".into(),
        codes: Vec::new(),
    };
    let mut ext = extension();
    let first = updated_conditions(&ext, &ok, &at(T0)).expect("a new condition");
    assert_eq!(first.len(), 1);
    ext.status.get_or_insert_default().conditions = first.clone();
    assert_eq!(updated_conditions(&ext, &ok, &at(T0 + 30)), None, "nothing changed: nothing to write");
    let bad = HealthCheckResult { status: ConditionStatus::False, ..ok };
    let flipped = updated_conditions(&ext, &bad, &at(T0 + 60)).expect("changed");
    assert_eq!(
        (flipped[0].status.clone(), flipped[0].last_transition_time.clone()),
        (ConditionStatus::False, at(T0 + 60))
    );
}
