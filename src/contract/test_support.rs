//! Values the tests of the contract (and of the ManagedResource helpers it judges) build from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::apis::common::{Condition, ConditionStatus, LastOperation};
use crate::apis::extensions::Extension;
use crate::apis::resources::{
    CONDITION_RESOURCES_APPLIED, CONDITION_RESOURCES_HEALTHY, CONDITION_RESOURCES_PROGRESSING, reasons,
};

/// 2026-01-01T00:00:00Z
pub const T0: i64 = 1_767_225_600;

/// `second` seconds after the epoch.
pub fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).expect("time"))
}

/// A condition with epoch timestamps and no codes.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
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

/// The conditions gardener-resource-manager writes on a ManagedResource that is applied, healthy and rolled out.
pub fn healthy_conditions() -> Vec<Condition> {
    vec![
        condition(CONDITION_RESOURCES_APPLIED, "True", reasons::APPLY_SUCCEEDED, "All resources are applied."),
        condition(CONDITION_RESOURCES_HEALTHY, "True", "ResourcesHealthy", "All resources are healthy."),
        condition(CONDITION_RESOURCES_PROGRESSING, "False", "ResourcesRolledOut", "All resources are rolled out."),
    ]
}

/// `ext` with a last operation of `type_` in `state`, written at [`T0`].
pub fn with_last(mut ext: Extension, type_: &str, state: &str) -> Extension {
    ext.status.get_or_insert_default().last_operation = Some(LastOperation {
        type_: type_.into(),
        state: state.into(),
        progress: 100,
        description: String::new(),
        last_update_time: at(T0),
    });
    ext
}
