//! The extension contract's pure logic, as Gardener's Go library implements it for every extension controller:
//!
//! - which operation an Extension asks for ([`operation_type`], `ComputeOperationType`) and when to do nothing
//!   ([`should_skip`], `ShouldSkipOperation`);
//! - which watch events trigger a reconcile ([`should_process_event`], `extensions/pkg/predicate/default.go`);
//! - the status merge patches reporting an operation ([`processing`], [`error`], [`succeeded`],
//!   `extensions/pkg/controller/status.go`) and the time they carry ([`status_time`]);
//! - the readiness check gardenlet polls ([`is_ready`], `health.CheckExtensionObject`).
//!
//! Nothing here talks to the apiserver; [`super::driver`] applies it.
//!
//! # Applying [`should_process_event`] in a kube-rs controller
//!
//! controller-runtime hands predicates an event with the old and the new object; a kube-rs `Controller` only sees the
//! current object. [`super::events::EventFilter`] therefore filters the watch stream before it reaches the controller
//! and remembers the last object seen per key.
//!
//! The first sighting of an object (after a controller start, or a watch re-list that finds a new object) has no old
//! object and is judged as a CREATE event, which is what controller-runtime's initial ADD events are; a re-list of a
//! known object is an UPDATE against the remembered one. Requeues (`Action::requeue`, the error policy) bypass the
//! filter, as controller-runtime's requeues bypass predicates. The other filters of the Go library (`spec.type`,
//! class, shoot not failed) are separate checks.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::apis::common::{ErrorCode, LastOperationState, LastOperationType};
use crate::apis::extensions::Extension;
use crate::constants::{
    ANNOTATION_OPERATION, ANNOTATION_TIMESTAMP, OPERATION_MIGRATE, OPERATION_RECONCILE, OPERATION_RESTORE,
};

/// Progress reported when an operation starts.
pub const PROGRESS_PROCESSING: i32 = 1;
/// Progress reported with an error (Gardener's library always uses 50).
pub const PROGRESS_ERROR: i32 = 50;
/// Progress reported on success.
pub const PROGRESS_SUCCEEDED: i32 = 100;

// -------------------------------------------------------------------------------------------------------------
// Annotations
// -------------------------------------------------------------------------------------------------------------

/// The value of the `gardener.cloud/operation` annotation, if present.
pub fn operation_annotation(ext: &Extension) -> Option<&str> {
    ext.metadata.annotations.as_ref()?.get(ANNOTATION_OPERATION).map(String::as_str)
}

/// The `gardener.cloud/timestamp` annotation (RFC3339Nano) truncated to seconds, as gardenlet compares it. `None`
/// when absent; `Some(Err(text))` when it does not parse.
pub fn timestamp_annotation(ext: &Extension) -> Option<Result<Timestamp, String>> {
    let text = ext.metadata.annotations.as_ref()?.get(ANNOTATION_TIMESTAMP)?;
    Some(text.parse::<Timestamp>().map(truncate_to_seconds).map_err(|e| format!("{text:?}: {e}")))
}

/// `timestamp` without its fraction of a second (rounded down, as Go's `Truncate(time.Second)` for times after 1970).
pub fn truncate_to_seconds(timestamp: Timestamp) -> Timestamp {
    Timestamp::from_second(timestamp.as_second()).unwrap_or(timestamp)
}

/// True when the annotation asks for an operation the predicate reacts to: `reconcile`, `restore` or `migrate`
/// (not `wait-for-state`).
fn has_operation_annotation(ext: &Extension) -> bool {
    matches!(operation_annotation(ext), Some(OPERATION_RECONCILE | OPERATION_RESTORE | OPERATION_MIGRATE))
}

fn last_operation(ext: &Extension) -> Option<&crate::apis::common::LastOperation> {
    ext.status.as_ref()?.last_operation.as_ref()
}

// -------------------------------------------------------------------------------------------------------------
// Operation type, skip rule, predicate
// -------------------------------------------------------------------------------------------------------------

/// Gardener's `ComputeOperationType`, evaluated in order: annotation `migrate` → Migrate; deletionTimestamp →
/// Delete; annotation `restore` → Restore; no lastOperation → Create; a Create, Migrate or Restore that has not
/// succeeded → the same again; otherwise Reconcile.
pub fn operation_type(ext: &Extension) -> LastOperationType {
    let annotation = operation_annotation(ext);
    if annotation == Some(OPERATION_MIGRATE) {
        return LastOperationType::Migrate;
    }
    if ext.metadata.deletion_timestamp.is_some() {
        return LastOperationType::Delete;
    }
    if annotation == Some(OPERATION_RESTORE) {
        return LastOperationType::Restore;
    }
    let Some(last) = last_operation(ext) else {
        return LastOperationType::Create;
    };
    match last.type_ {
        LastOperationType::Create | LastOperationType::Migrate | LastOperationType::Restore
            if last.state != LastOperationState::Succeeded =>
        {
            last.type_.clone()
        }
        _ => LastOperationType::Reconcile,
    }
}

/// Gardener's `ShouldSkipOperation`: an Extension whose last operation is a succeeded Migrate belongs to another
/// seed now; only Migrate and Restore may touch it.
pub fn should_skip(ext: &Extension, op: &LastOperationType) -> bool {
    let migrated = last_operation(ext)
        .is_some_and(|last| last.type_ == LastOperationType::Migrate && last.state == LastOperationState::Succeeded);
    migrated && *op != LastOperationType::Migrate && *op != LastOperationType::Restore
}

/// Whether a watch event triggers a reconcile (`DefaultControllerPredicates`). `old` is `None` for a CREATE event
/// (first sighting), `Some` for an UPDATE. See the module documentation for how to feed it from a kube-rs watch.
///
/// - CREATE: an operation annotation (`reconcile`/`restore`/`migrate`), or a deletionTimestamp, or a lastOperation
///   that is missing or not Succeeded (retry after a controller restart).
/// - UPDATE: an operation annotation, or a deletionTimestamp while the status did not change (the delete request
///   itself and gardenlet's later touches, but not our own status writes).
/// - `ignore_operation_annotation` (`--ignore-operation-annotation`): controller-runtime's
///   `GenerationChangedPredicate`: every CREATE, and an UPDATE when `metadata.generation` changed or the object has
///   just been marked for deletion.
pub fn should_process_event(old: Option<&Extension>, new: &Extension, ignore_operation_annotation: bool) -> bool {
    if ignore_operation_annotation {
        return match old {
            None => true,
            Some(old) => {
                old.metadata.generation != new.metadata.generation
                    || (old.metadata.deletion_timestamp.is_none() && new.metadata.deletion_timestamp.is_some())
            }
        };
    }
    if has_operation_annotation(new) {
        return true;
    }
    match old {
        None => {
            new.metadata.deletion_timestamp.is_some()
                || last_operation(new).is_none_or(|last| last.state != LastOperationState::Succeeded)
        }
        Some(old) => new.metadata.deletion_timestamp.is_some() && old.status == new.status,
    }
}

// -------------------------------------------------------------------------------------------------------------
// Status patches
// -------------------------------------------------------------------------------------------------------------

/// The time to write into `lastOperation.lastUpdateTime` (and the other status times): `now` truncated to seconds
/// (what the wire carries anyway), but never earlier than the `gardener.cloud/timestamp` annotation truncated to
/// seconds. gardenlet treats the Extension as not ready while `lastUpdateTime < timestamp`, so a seed clock behind
/// gardenlet's would otherwise keep a successful operation unready until the clocks agree.
pub fn status_time(ext: &Extension, now: Timestamp) -> Time {
    let now = truncate_to_seconds(now);
    match timestamp_annotation(ext) {
        Some(Ok(requested)) if requested > now => Time(requested),
        _ => Time(now),
    }
}

/// `time` as the apiserver stores a `metav1.Time`: RFC 3339 in UTC, whole seconds.
fn time_text(time: &Time) -> String {
    truncate_to_seconds(time.0).to_string()
}

/// Gardener's `FormatLastErrDescription(fmt.Errorf("%s: %v", description, err))`: `<description>: <error>` with
/// the first letter upper-cased.
pub fn error_description(description: &str, err_text: &str) -> String {
    let text = format!("{description}: {err_text}");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if first.is_ascii_lowercase() => first.to_ascii_uppercase().to_string() + chars.as_str(),
        _ => text,
    }
}

/// The merge patch (status subresource) that starts an operation: `lastOperation{type, state: Processing,
/// progress: 1, description, lastUpdateTime}`. `observedGeneration` is deliberately not touched.
pub fn processing(op: &LastOperationType, description: &str, now: &Time) -> Value {
    json!({
        "status": {
            "lastOperation": {
                "type": op.as_str(),
                "state": LastOperationState::Processing.as_str(),
                "progress": PROGRESS_PROCESSING,
                "description": description,
                "lastUpdateTime": time_text(now),
            }
        }
    })
}

/// The merge patch (status subresource) reporting a failed operation: `lastOperation{state: Error, progress: 50,
/// description: "<Description>: <error>"}`, `lastError{description, codes, lastUpdateTime}` and
/// `observedGeneration = generation`. Without codes, `codes` is `null` so that codes of an earlier error are removed
/// (a merge patch merges nested objects).
pub fn error(
    op: &LastOperationType,
    description: &str,
    err_text: &str,
    codes: &[ErrorCode],
    generation: i64,
    now: &Time,
) -> Value {
    let full = error_description(description, err_text);
    let codes =
        if codes.is_empty() { Value::Null } else { json!(codes.iter().map(|c| c.as_str()).collect::<Vec<_>>()) };
    json!({
        "status": {
            "lastOperation": {
                "type": op.as_str(),
                "state": LastOperationState::Error.as_str(),
                "progress": PROGRESS_ERROR,
                "description": full,
                "lastUpdateTime": time_text(now),
            },
            "lastError": {
                "description": full,
                "codes": codes,
                "lastUpdateTime": time_text(now),
            },
            "observedGeneration": generation,
        }
    })
}

/// The merge patch (status subresource) reporting success: `lastOperation{state: Succeeded, progress: 100}`,
/// `lastError: null` and `observedGeneration = generation`.
pub fn succeeded(op: &LastOperationType, description: &str, generation: i64, now: &Time) -> Value {
    json!({
        "status": {
            "lastOperation": {
                "type": op.as_str(),
                "state": LastOperationState::Succeeded.as_str(),
                "progress": PROGRESS_SUCCEEDED,
                "description": description,
                "lastUpdateTime": time_text(now),
            },
            "lastError": null,
            "observedGeneration": generation,
        }
    })
}

// -------------------------------------------------------------------------------------------------------------
// Readiness as gardenlet sees it
// -------------------------------------------------------------------------------------------------------------

/// gardenlet's `CheckExtensionObject`, with its messages: ready only when there is no `lastError`,
/// `observedGeneration == generation`, no `gardener.cloud/operation` annotation (any value), a `lastOperation` in
/// state Succeeded, and (if the `gardener.cloud/timestamp` annotation is set) `lastUpdateTime` not before the
/// timestamp truncated to seconds.
pub fn readiness(ext: &Extension) -> Result<(), String> {
    let status = ext.status.as_ref();
    if let Some(last_error) = status.and_then(|s| s.last_error.as_ref()) {
        return Err(format!("error during reconciliation: {}", last_error.description));
    }
    let generation = ext.metadata.generation.unwrap_or(0);
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if observed != generation {
        return Err(format!("observed generation outdated ({observed}/{generation})"));
    }
    if let Some(op) = operation_annotation(ext) {
        return Err(format!("gardener operation {op:?} is not yet picked up by controller"));
    }
    let Some(last) = last_operation(ext) else {
        return Err("extension did not record a last operation yet".to_string());
    };
    if last.state != LastOperationState::Succeeded {
        return Err(format!("extension state is not succeeded but {}", last.state));
    }
    match timestamp_annotation(ext) {
        Some(Err(e)) => Err(format!("cannot parse gardener.cloud/timestamp annotation: {e}")),
        Some(Ok(requested)) if requested > last.last_update_time.0 => Err(format!(
            "extension is not reconciled yet - reconciliation requested at {requested}, last update time is: {}",
            last.last_update_time.0
        )),
        _ => Ok(()),
    }
}

/// [`readiness`] as a yes/no.
pub fn is_ready(ext: &Extension) -> bool {
    readiness(ext).is_ok()
}

#[cfg(test)]
mod tests;
