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
mod tests;
