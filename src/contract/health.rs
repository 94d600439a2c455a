//! Health in one place, as Gardener's health-check library does it (`extensions/pkg/controller/healthcheck`): which
//! Extensions get a health report ([`needs_health_check`]), how a ManagedResource's conditions are judged
//! ([`is_healthy`], `pkg/utils/kubernetes/health/managedresource.go`), what that means for the Extension
//! ([`check_health`], `general.CheckManagedResource`) and how the result is merged into the Extension's conditions
//! without churn ([`upsert_condition`], [`updated_conditions`]).
//!
//! Pure functions; the periodic loop that reads the ManagedResource and writes the condition is a thin caller.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::errors::{ErrorCode, code_strings, is_configuration_problem};
use super::status;
use crate::apis::common::{Condition, ConditionStatus, LastOperationType};
use crate::apis::extensions::Extension;
use crate::apis::resources::{
    CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY, CONDITION_RESOURCES_PROGRESSING, ManagedResource,
};
use crate::constants::{
    CONDITION_SYSTEM_COMPONENTS_HEALTHY, REASON_HEALTH_CHECK_PROGRESSING, REASON_HEALTH_CHECK_SUCCESSFUL,
    REASON_HEALTH_CHECK_UNSUCCESSFUL,
};

// -------------------------------------------------------------------------------------------------------------
// Which Extensions
// -------------------------------------------------------------------------------------------------------------

/// Whether `extension` gets a health report: only Extensions of `extension_type` that are neither being deleted nor
/// migrated, nor migrated away (they belong to another seed now) — those have no components left to judge here.
pub fn needs_health_check(extension: &Extension, extension_type: &str) -> bool {
    let operation = status::operation_type(extension);
    extension.spec.type_ == extension_type
        && extension.metadata.deletion_timestamp.is_none()
        && operation != LastOperationType::Migrate
        && !status::should_skip(extension, &operation)
}

// -------------------------------------------------------------------------------------------------------------
// The ManagedResource
// -------------------------------------------------------------------------------------------------------------
/// The health of a ManagedResource as `pkg/utils/kubernetes/health/managedresource.go` judges it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `status.observedGeneration == metadata.generation` and `ResourcesApplied` is `True`.
    pub applied: bool,
    /// `ResourcesHealthy` is `True`.
    pub healthy: bool,
    /// `ResourcesProgressing` is `True` (a rollout is still going on).
    pub progressing: bool,
    /// Why the ManagedResource is not applied and healthy, worded as Gardener's `CheckManagedResource` error
    /// (the first failing check); `None` when it is.
    pub problem: Option<String>,
}

impl Health {
    /// Gardener's `CheckManagedResource` passes: applied and healthy (progressing does not matter).
    pub fn is_healthy(&self) -> bool {
        self.applied && self.healthy
    }
}

/// Judges `mr` like Gardener's `CheckManagedResource` (+ `ResourcesProgressing`). A missing condition is not `True`.
pub fn is_healthy(mr: &ManagedResource) -> Health {
    let namespace = mr.metadata.namespace.as_deref().unwrap_or_default();
    let name = mr.metadata.name.as_deref().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let generation = mr.metadata.generation.unwrap_or(0);
    let observed = mr.status.as_ref().and_then(|status| status.observed_generation).unwrap_or(0);

    let condition_problem = |type_: &str| match mr.condition(type_) {
        None => Some(format!("condition {type_} for managed resource {key} has not been reported yet")),
        Some(condition) if condition.status != ConditionStatus::True => {
            Some(format!("condition {type_} of managed resource {key} is {}: {}", condition.status, condition.message))
        }
        Some(_) => None,
    };

    let generation_problem = (observed != generation)
        .then(|| format!("observed generation of managed resource {key} outdated ({observed}/{generation})"));
    let applied_problem = condition_problem(CONDITION_RESOURCES_APPLIED);
    let healthy_problem = condition_problem(CONDITION_RESOURCES_HEALTHY);
    let progressing = mr.condition(CONDITION_RESOURCES_PROGRESSING).is_some_and(|c| c.status == ConditionStatus::True);

    Health {
        applied: generation_problem.is_none() && applied_problem.is_none(),
        healthy: healthy_problem.is_none(),
        progressing,
        problem: generation_problem.or(applied_problem).or(healthy_problem),
    }
}

/// The result of the extension's health check of its ManagedResource, ready to become the Extension's
/// `SystemComponentsHealthy` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckResult {
    /// `True`, `False` or `Progressing`.
    pub status: ConditionStatus,
    /// `HealthCheckSuccessful`, `HealthCheckUnsuccessful` or `HealthCheckProgressing`.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// Gardener error codes (`ERR_CONFIGURATION_PROBLEM` when GRM could not apply an invalid object).
    pub codes: Vec<ErrorCode>,
}

impl HealthCheckResult {
    /// The `SystemComponentsHealthy` condition with both timestamps at `now`; merge it into the Extension's
    /// conditions with [`upsert_condition`], which keeps the old timestamps where nothing changed.
    pub fn condition(&self, now: &Time) -> Condition {
        Condition {
            type_: CONDITION_SYSTEM_COMPONENTS_HEALTHY.to_string(),
            status: self.status.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            last_transition_time: now.clone(),
            last_update_time: now.clone(),
            codes: code_strings(&self.codes),
        }
    }
}

/// The health check of the ManagedResource `namespace/name` (`general.CheckManagedResource`), given what a GET
/// returned (`None`: not found):
/// - not found → `False`, "... not found";
/// - not applied or not healthy → `False`, plus `ERR_CONFIGURATION_PROBLEM` when the message says an object is invalid;
/// - `ResourcesProgressing` `True` → `Progressing`;
/// - otherwise → `True`.
pub fn check_health(namespace: &str, name: &str, mr: Option<&ManagedResource>) -> HealthCheckResult {
    let Some(mr) = mr else {
        return HealthCheckResult {
            status: ConditionStatus::False,
            reason: REASON_HEALTH_CHECK_UNSUCCESSFUL.to_string(),
            message: format!("Managed Resource {name:?} in namespace {namespace:?} not found"),
            codes: Vec::new(),
        };
    };
    let health = is_healthy(mr);
    if let Some(problem) = health.problem.as_deref().filter(|_| !health.is_healthy()) {
        let message = format!("managed resource {name:?} in namespace {namespace:?} is unhealthy: {problem}");
        let codes = if is_configuration_problem(&message) { vec![ErrorCode::ConfigurationProblem] } else { vec![] };
        return HealthCheckResult {
            status: ConditionStatus::False,
            reason: REASON_HEALTH_CHECK_UNSUCCESSFUL.to_string(),
            message,
            codes,
        };
    }
    if health.progressing {
        let detail = mr.condition(CONDITION_RESOURCES_PROGRESSING).map(|c| c.message.as_str()).unwrap_or_default();
        return HealthCheckResult {
            status: ConditionStatus::Progressing,
            reason: REASON_HEALTH_CHECK_PROGRESSING.to_string(),
            message: format!("managed resource {name:?} in namespace {namespace:?} is progressing: {detail}"),
            codes: Vec::new(),
        };
    }
    HealthCheckResult {
        status: ConditionStatus::True,
        reason: REASON_HEALTH_CHECK_SUCCESSFUL.to_string(),
        message: "All health checks successful".to_string(),
        codes: Vec::new(),
    }
}

// -------------------------------------------------------------------------------------------------------------
// The Extension's conditions
// -------------------------------------------------------------------------------------------------------------
/// `conditions` with `new` merged in (replacing the condition of the same type in place, or appended). The times in
/// `new` are ignored: `lastTransitionTime` becomes `now` only when the status changes (or the condition is new),
/// `lastUpdateTime` becomes `now` when anything (status, reason, message, codes) changes; otherwise both keep their
/// old values, so an unchanged health report leaves the condition byte-for-byte equal.
pub fn upsert_condition(conditions: &[Condition], new: Condition, now: &Time) -> Vec<Condition> {
    let mut out = conditions.to_vec();
    match out.iter_mut().find(|condition| condition.type_ == new.type_) {
        None => out.push(Condition { last_transition_time: now.clone(), last_update_time: now.clone(), ..new }),
        Some(old) => {
            let status_changed = old.status != new.status;
            let changed =
                status_changed || old.reason != new.reason || old.message != new.message || old.codes != new.codes;
            let last_transition_time = if status_changed { now.clone() } else { old.last_transition_time.clone() };
            let last_update_time = if changed { now.clone() } else { old.last_update_time.clone() };
            *old = Condition { last_transition_time, last_update_time, ..new };
        }
    }
    out
}

/// The Extension's conditions with `result` merged in at `now`; `None` when nothing changed, so that an unchanged
/// health report writes nothing.
pub fn updated_conditions(extension: &Extension, result: &HealthCheckResult, now: &Time) -> Option<Vec<Condition>> {
    let current = extension.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let updated = upsert_condition(&current, result.condition(now), now);
    (updated != current).then_some(updated)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::apis::common::LastOperation;
    use crate::apis::extensions::ExtensionSpec;
    use crate::apis::resources::{ManagedResourceStatus, reasons};
    use crate::constants::{ANNOTATION_OPERATION, EXTENSION_TYPE};

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("time"))
    }

    /// 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600;

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: ConditionStatus::from(status),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            last_update_time: Time(Timestamp::UNIX_EPOCH),
            codes: Vec::new(),
        }
    }

    /// A ManagedResource at generation 2 with the given conditions, observed at `observed`.
    fn mr_with(observed: Option<i64>, conditions: Vec<Condition>) -> ManagedResource {
        let mut mr = ManagedResource::new("mr", Default::default());
        mr.metadata.namespace = Some("shoot--p--s".into());
        mr.metadata.generation = Some(2);
        mr.status = Some(ManagedResourceStatus { conditions, observed_generation: observed, ..Default::default() });
        mr
    }

    fn healthy_conditions() -> Vec<Condition> {
        vec![
            condition(CONDITION_RESOURCES_APPLIED, "True", reasons::APPLY_SUCCEEDED, "All resources are applied."),
            condition(CONDITION_RESOURCES_HEALTHY, "True", "ResourcesHealthy", "All resources are healthy."),
            condition(CONDITION_RESOURCES_PROGRESSING, "False", "ResourcesRolledOut", "All resources are rolled out."),
        ]
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
        let mut ext =
            Extension::new(EXTENSION_TYPE, ExtensionSpec { type_: EXTENSION_TYPE.into(), ..Default::default() });
        ext.metadata.namespace = Some("shoot--p--s".into());
        ext
    }

    fn with_last(mut ext: Extension, type_: &str, state: &str) -> Extension {
        ext.status.get_or_insert_default().last_operation = Some(LastOperation {
            type_: type_.into(),
            state: state.into(),
            progress: 100,
            description: String::new(),
            last_update_time: at(T0),
        });
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
}
