//! Tests of [`super`].

use serde_json::json;

use super::*;
use crate::apis::common::{DefaultStatus, LastError};
use crate::apis::extensions::ExtensionSpec;
use crate::constants::EXTENSION_TYPE;
use crate::contract::test_support::{T0, at, with_last};

fn ext() -> Extension {
    let mut ext = Extension::new(EXTENSION_TYPE, ExtensionSpec { type_: EXTENSION_TYPE.into(), ..Default::default() });
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
        ("wait-for-state annotation", with_op(with_last(ext(), "Reconcile", "Succeeded"), "wait-for-state"), Reconcile),
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
        ("failed last operation is not retried on update", &old, with_last(old.clone(), "Reconcile", "Error"), false),
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
