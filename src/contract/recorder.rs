//! Kubernetes Events on the Extension: what an operator must see in `kubectl describe extension` or the seed's
//! event stream without reading logs (a failed operation with its error codes, what the extension does to the
//! nodes, what does not reach them). Published through kube-runtime's [`Recorder`] (`events.k8s.io/v1`), which
//! folds repeats of the same event into one Event with a growing series count.
//!
//! An Event is a report, never a step of the flow: a failure to publish one is logged and otherwise ignored.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::errors::ErrorCode;
use crate::apis::common::LastOperationType;
use crate::apis::extensions::Extension;
use crate::constants::COMPONENT_NAME;

/// The largest note the Events API accepts (bytes).
pub const MAX_NOTE_BYTES: usize = 1024;

/// Reason of the Warning Event for a failed Create or Reconcile.
pub const REASON_RECONCILE_FAILED: &str = "ReconcileFailed";
/// Reason of the Warning Event for a failed Restore.
pub const REASON_RESTORE_FAILED: &str = "RestoreFailed";
/// Reason of the Warning Event for a failed Delete (or force-delete).
pub const REASON_DELETE_FAILED: &str = "DeleteFailed";
/// Reason of the Warning Event for a failed Migrate.
pub const REASON_MIGRATE_FAILED: &str = "MigrateFailed";

/// Publishes Events about Extensions as this controller (`reportingController`: the component's name,
/// `reportingInstance`: the replica). Cheap to clone; clones share the recorder's cache of published events.
#[derive(Clone)]
pub struct EventRecorder {
    recorder: Recorder,
}

/// The severity of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Something the operator should know.
    Normal,
    /// Something that needs attention.
    Warning,
}

impl EventRecorder {
    /// A recorder publishing as `instance` (the replica's identity, e.g. its Pod name).
    pub fn new(client: kube::Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: COMPONENT_NAME.to_string(), instance };
        EventRecorder { recorder: Recorder::new(client, reporter) }
    }

    /// Publishes an Event about `extension`; `reason` is a CamelCase constant, `action` what the extension did
    /// (CamelCase too), `note` the message (cut to what the API accepts). Failures are logged, not returned.
    pub async fn publish(&self, extension: &Extension, severity: Severity, reason: &str, action: &str, note: &str) {
        let event = Event {
            type_: match severity {
                Severity::Normal => EventType::Normal,
                Severity::Warning => EventType::Warning,
            },
            reason: reason.to_string(),
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        let reference = extension.object_ref(&());
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(
                extension = %super::key(extension),
                reason,
                error = %error,
                "cannot publish an Event on the Extension"
            );
        }
    }
}

/// The reason of the Warning Event for a failure of `operation`.
pub fn failure_reason(operation: &LastOperationType) -> &'static str {
    match operation {
        LastOperationType::Restore => REASON_RESTORE_FAILED,
        LastOperationType::Delete => REASON_DELETE_FAILED,
        LastOperationType::Migrate => REASON_MIGRATE_FAILED,
        _ => REASON_RECONCILE_FAILED,
    }
}

/// The note of a failure Event: what failed and why, with Gardener's error codes when the error has any (the codes
/// tell the operator whether the user must act, e.g. `ERR_CONFIGURATION_PROBLEM`).
pub fn failure_note(message: &str, codes: &[ErrorCode]) -> String {
    if codes.is_empty() {
        return message.to_string();
    }
    let codes: Vec<&str> = codes.iter().map(|code| code.as_str()).collect();
    format!("{message} (error codes: {})", codes.join(", "))
}

/// `note` cut to [`MAX_NOTE_BYTES`] on a character boundary, marked with an ellipsis when cut.
fn truncate_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_NOTE_BYTES - ELLIPSIS.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &note[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_events_name_the_operation_and_carry_the_codes() {
        assert_eq!(failure_reason(&LastOperationType::Create), "ReconcileFailed");
        assert_eq!(failure_reason(&LastOperationType::Reconcile), "ReconcileFailed");
        assert_eq!(failure_reason(&LastOperationType::Restore), "RestoreFailed");
        assert_eq!(failure_reason(&LastOperationType::Delete), "DeleteFailed");
        assert_eq!(failure_reason(&LastOperationType::Migrate), "MigrateFailed");
        assert_eq!(
            failure_note("Error x: bad", &[ErrorCode::ConfigurationProblem]),
            "Error x: bad (error codes: ERR_CONFIGURATION_PROBLEM)"
        );
        assert_eq!(failure_note("Error x: gone", &[]), "Error x: gone");
    }

    #[test]
    fn long_notes_are_cut_to_what_the_api_accepts_on_a_character_boundary() {
        let short = "ä".repeat(10);
        assert_eq!(truncate_note(&short), short);
        let long = "ä".repeat(MAX_NOTE_BYTES);
        let cut = truncate_note(&long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("ää"));
    }
}
