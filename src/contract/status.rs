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
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apis::common::{DefaultStatus, LastError, LastOperation};
    use crate::apis::extensions::ExtensionSpec;
    use crate::constants::EXTENSION_TYPE;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("time"))
    }

    /// 2026-01-01T00:00:00Z
    const T0: i64 = 1_767_225_600;

    fn ext() -> Extension {
        let mut ext =
            Extension::new(EXTENSION_TYPE, ExtensionSpec { type_: EXTENSION_TYPE.into(), ..Default::default() });
        ext.metadata.namespace = Some("shoot--p--s".into());
        ext.metadata.generation = Some(1);
        ext
    }

    fn annotated(mut ext: Extension, key: &str, value: &str) -> Extension {
        ext.metadata.annotations.get_or_insert_default().insert(key.into(), value.into());
        ext
    }

    fn with_op(ext: Extension, op: &str) -> Extension {
        annotated(ext, ANNOTATION_OPERATION, op)
    }

    fn deleting(mut ext: Extension) -> Extension {
        ext.metadata.deletion_timestamp = Some(at(T0));
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
    fn operation_type_follows_compute_operation_type() {
        use LastOperationType::*;
        let cases: Vec<(&str, Extension, LastOperationType)> = vec![
            ("fresh", ext(), Create),
            ("migrate annotation wins over deletion", deleting(with_op(ext(), "migrate")), Migrate),
            ("deletion wins over restore", deleting(with_op(ext(), "restore")), Delete),
            ("deletion", deleting(with_last(ext(), "Reconcile", "Succeeded")), Delete),
            ("restore annotation", with_op(with_last(ext(), "Reconcile", "Succeeded"), "restore"), Restore),
            ("reconcile annotation, no last op", with_op(ext(), "reconcile"), Create),
            ("create not succeeded", with_last(ext(), "Create", "Error"), Create),
            ("create succeeded", with_last(ext(), "Create", "Succeeded"), Reconcile),
            ("migrate not succeeded", with_last(ext(), "Migrate", "Processing"), Migrate),
            ("migrate succeeded", with_last(ext(), "Migrate", "Succeeded"), Reconcile),
            ("restore not succeeded", with_last(ext(), "Restore", "Error"), Restore),
            ("restore succeeded", with_last(ext(), "Restore", "Succeeded"), Reconcile),
            ("reconcile failed", with_last(ext(), "Reconcile", "Error"), Reconcile),
            ("delete failed, deletion gone", with_last(ext(), "Delete", "Error"), Reconcile),
            (
                "wait-for-state annotation",
                with_op(with_last(ext(), "Reconcile", "Succeeded"), "wait-for-state"),
                Reconcile,
            ),
        ];
        for (label, ext, want) in cases {
            assert_eq!(operation_type(&ext), want, "{label}");
        }
    }

    #[test]
    fn migrated_extensions_are_skipped_except_for_migrate_and_restore() {
        use LastOperationType::*;
        let migrated = with_last(ext(), "Migrate", "Succeeded");
        assert!(should_skip(&migrated, &Reconcile));
        assert!(should_skip(&migrated, &Delete));
        assert!(should_skip(&migrated, &Create));
        assert!(!should_skip(&migrated, &Migrate));
        assert!(!should_skip(&migrated, &Restore));
        assert!(!should_skip(&with_last(ext(), "Migrate", "Error"), &Reconcile));
        assert!(!should_skip(&with_last(ext(), "Reconcile", "Succeeded"), &Reconcile));
        assert!(!should_skip(&ext(), &Create));
    }

    #[test]
    fn predicate_create_events() {
        let succeeded = with_last(ext(), "Reconcile", "Succeeded");
        let cases: Vec<(&str, Extension, bool)> = vec![
            ("no last operation", ext(), true),
            ("last operation failed", with_last(ext(), "Reconcile", "Error"), true),
            ("last operation processing", with_last(ext(), "Reconcile", "Processing"), true),
            ("succeeded, nothing asked", succeeded.clone(), false),
            ("succeeded, reconcile", with_op(succeeded.clone(), "reconcile"), true),
            ("succeeded, restore", with_op(succeeded.clone(), "restore"), true),
            ("succeeded, migrate", with_op(succeeded.clone(), "migrate"), true),
            ("succeeded, wait-for-state", with_op(succeeded.clone(), "wait-for-state"), false),
            ("succeeded, deleting", deleting(succeeded.clone()), true),
        ];
        for (label, new, want) in cases {
            assert_eq!(should_process_event(None, &new, false), want, "{label}");
        }
    }

    #[test]
    fn predicate_update_events() {
        let old = with_last(ext(), "Reconcile", "Succeeded");
        let mut spec_changed = old.clone();
        spec_changed.metadata.generation = Some(2);
        spec_changed.spec.provider_config = Some(json!({"configs": {}}));
        let mut status_changed = old.clone();
        status_changed.status.get_or_insert_default().observed_generation = Some(1);
        let deleting_old = deleting(old.clone());
        let mut deleting_status_changed = deleting_old.clone();
        deleting_status_changed.status.get_or_insert_default().observed_generation = Some(1);

        let cases: Vec<(&str, &Extension, Extension, bool)> = vec![
            ("spec change without annotation", &old, spec_changed.clone(), false),
            ("status change", &old, status_changed, false),
            ("reconcile annotation", &old, with_op(old.clone(), "reconcile"), true),
            ("migrate annotation", &old, with_op(old.clone(), "migrate"), true),
            ("wait-for-state annotation", &old, with_op(old.clone(), "wait-for-state"), false),
            ("delete request", &old, deleting(old.clone()), true),
            (
                "timestamp touched while deleting",
                &deleting_old,
                annotated(deleting_old.clone(), ANNOTATION_TIMESTAMP, "x"),
                true,
            ),
            ("own status write while deleting", &deleting_old, deleting_status_changed, false),
            (
                "failed last operation is not retried on update",
                &old,
                with_last(old.clone(), "Reconcile", "Error"),
                false,
            ),
        ];
        for (label, old, new, want) in cases {
            assert_eq!(should_process_event(Some(old), &new, false), want, "{label}");
        }
    }

    #[test]
    fn predicate_with_ignored_operation_annotation_is_generation_changed() {
        let old = with_last(ext(), "Reconcile", "Succeeded");
        let mut spec_changed = old.clone();
        spec_changed.metadata.generation = Some(2);
        assert!(should_process_event(None, &old, true));
        assert!(should_process_event(Some(&old), &spec_changed, true));
        assert!(!should_process_event(Some(&old), &with_op(old.clone(), "reconcile"), true));
        assert!(!should_process_event(Some(&old), &with_last(old.clone(), "Reconcile", "Error"), true));
        assert!(should_process_event(Some(&old), &deleting(old.clone()), true));
        let deleting_old = deleting(old.clone());
        assert!(!should_process_event(Some(&deleting_old), &deleting_old.clone(), true));
    }

    #[test]
    fn processing_patch_is_exact_and_leaves_observed_generation_alone() {
        let patch = processing(&LastOperationType::Reconcile, "Reconciling the extension", &at(T0));
        assert_eq!(
            patch,
            json!({"status": {"lastOperation": {
                "type": "Reconcile", "state": "Processing", "progress": 1,
                "description": "Reconciling the extension", "lastUpdateTime": "2026-01-01T00:00:00Z"
            }}})
        );
    }

    #[test]
    fn error_patch_is_exact() {
        let codes = vec![ErrorCode::ConfigurationProblem];
        let patch = error(&LastOperationType::Create, "reconciling the extension", "boom", &codes, 3, &at(T0 + 5));
        assert_eq!(
            patch,
            json!({"status": {
                "lastOperation": {
                    "type": "Create", "state": "Error", "progress": 50,
                    "description": "Reconciling the extension: boom", "lastUpdateTime": "2026-01-01T00:00:05Z"
                },
                "lastError": {
                    "description": "Reconciling the extension: boom",
                    "codes": ["ERR_CONFIGURATION_PROBLEM"],
                    "lastUpdateTime": "2026-01-01T00:00:05Z"
                },
                "observedGeneration": 3
            }})
        );
        let without_codes = error(&LastOperationType::Delete, "Deleting", "x", &[], 4, &at(T0));
        assert_eq!(without_codes["status"]["lastError"]["codes"], Value::Null);
        assert!(without_codes["status"]["lastError"].as_object().expect("object").contains_key("codes"));
    }

    #[test]
    fn succeeded_patch_is_exact_and_clears_last_error() {
        let patch = succeeded(&LastOperationType::Restore, "Restored the extension", 7, &at(T0));
        assert_eq!(
            patch,
            json!({"status": {
                "lastOperation": {
                    "type": "Restore", "state": "Succeeded", "progress": 100,
                    "description": "Restored the extension", "lastUpdateTime": "2026-01-01T00:00:00Z"
                },
                "lastError": null,
                "observedGeneration": 7
            }})
        );
    }

    #[test]
    fn patches_apply_to_a_status_and_read_back_as_the_types() {
        let mut document = json!({"status": {"lastError": {"description": "old", "codes": ["ERR_INFRA_DEPENDENCIES"]},
                                              "conditions": [], "observedGeneration": 1}});
        json_patch::merge(&mut document, &error(&LastOperationType::Reconcile, "r", "e", &[], 2, &at(T0)));
        let status: DefaultStatus = serde_json::from_value(document["status"].clone()).expect("decode");
        assert_eq!(status.last_error.as_ref().map(|e| e.codes.clone()), Some(vec![]));
        assert_eq!(status.observed_generation, Some(2));
        json_patch::merge(&mut document, &succeeded(&LastOperationType::Reconcile, "done", 2, &at(T0)));
        let status: DefaultStatus = serde_json::from_value(document["status"].clone()).expect("decode");
        assert_eq!(status.last_error, None);
        let last = status.last_operation.expect("last operation");
        assert_eq!((last.state, last.progress, last.last_update_time), (LastOperationState::Succeeded, 100, at(T0)));
    }

    #[test]
    fn error_description_capitalises_like_gardener() {
        assert_eq!(error_description("reconciling", "failed"), "Reconciling: failed");
        assert_eq!(error_description("Reconciling", "failed"), "Reconciling: failed");
        assert_eq!(error_description("", "x"), ": x");
        assert_eq!(error_description("éa", "x"), "éa: x");
    }

    #[test]
    fn status_time_never_precedes_the_requested_timestamp() {
        let now = Timestamp::from_second(T0).expect("time") + k8s_openapi::jiff::SignedDuration::from_millis(750);
        // No annotation: now, truncated to seconds.
        assert_eq!(status_time(&ext(), now), at(T0));
        // gardenlet's clock is 3.9 s ahead of ours: the annotation's second wins.
        let ahead = annotated(ext(), ANNOTATION_TIMESTAMP, "2026-01-01T00:00:04.650000000Z");
        assert_eq!(status_time(&ahead, now), at(T0 + 4));
        // Behind us: our time.
        let behind = annotated(ext(), ANNOTATION_TIMESTAMP, "2025-12-31T23:59:58.999999999Z");
        assert_eq!(status_time(&behind, now), at(T0));
        // With an offset.
        let offset = annotated(ext(), ANNOTATION_TIMESTAMP, "2026-01-01T01:00:10.1+01:00");
        assert_eq!(status_time(&offset, now), at(T0 + 10));
        // Unparseable: ignored here (readiness reports it).
        let broken = annotated(ext(), ANNOTATION_TIMESTAMP, "yesterday");
        assert_eq!(status_time(&broken, now), at(T0));

        // What gardenlet then sees: ready.
        let mut reported = ahead.clone();
        let patch = succeeded(&LastOperationType::Reconcile, "ok", 1, &status_time(&ahead, now));
        reported.status = Some(serde_json::from_value(patch["status"].clone()).expect("decode"));
        assert_eq!(readiness(&reported), Ok(()));
    }

    fn ready_ext() -> Extension {
        let mut ext = with_last(ext(), "Reconcile", "Succeeded");
        ext.status.get_or_insert_default().observed_generation = Some(1);
        ext
    }

    #[test]
    fn readiness_follows_check_extension_object() {
        assert_eq!(readiness(&ready_ext()), Ok(()));
        assert!(is_ready(&ready_ext()));

        let mut failed = ready_ext();
        failed.status.get_or_insert_default().last_error =
            Some(LastError { description: "boom".into(), ..Default::default() });
        assert_eq!(readiness(&failed), Err("error during reconciliation: boom".into()));

        let mut outdated = ready_ext();
        outdated.metadata.generation = Some(2);
        assert_eq!(readiness(&outdated), Err("observed generation outdated (1/2)".into()));

        assert_eq!(
            readiness(&with_op(ready_ext(), "reconcile")),
            Err("gardener operation \"reconcile\" is not yet picked up by controller".into())
        );
        assert!(!is_ready(&with_op(ready_ext(), "")), "any value of the annotation blocks readiness");

        let mut no_op = ready_ext();
        no_op.status.get_or_insert_default().last_operation = None;
        assert_eq!(readiness(&no_op), Err("extension did not record a last operation yet".into()));

        let processing = with_last(ready_ext(), "Reconcile", "Processing");
        assert_eq!(readiness(&processing), Err("extension state is not succeeded but Processing".into()));

        // lastUpdateTime == T0: a request within the same second is satisfied, a later one is not.
        assert!(is_ready(&annotated(ready_ext(), ANNOTATION_TIMESTAMP, "2026-01-01T00:00:00.999Z")));
        assert!(is_ready(&annotated(ready_ext(), ANNOTATION_TIMESTAMP, "2025-12-31T23:00:00Z")));
        assert_eq!(
            readiness(&annotated(ready_ext(), ANNOTATION_TIMESTAMP, "2026-01-01T00:00:01Z")),
            Err("extension is not reconciled yet - reconciliation requested at 2026-01-01T00:00:01Z, last update \
                 time is: 2026-01-01T00:00:00Z"
                .into())
        );
        assert!(!is_ready(&annotated(ready_ext(), ANNOTATION_TIMESTAMP, "not a time")));

        let mut no_generation = ready_ext();
        no_generation.metadata.generation = None;
        no_generation.status.get_or_insert_default().observed_generation = None;
        assert!(is_ready(&no_generation), "absent generation and observedGeneration are both 0, as in Go");
    }
}
