//! Which watch events reach the reconciler: Gardener's event predicates ([`super::status::should_process_event`])
//! applied to a kube-rs watch stream.

use std::collections::HashMap;

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::status;
use crate::apis::extensions::Extension;

/// Applies Gardener's event predicates to the raw watch stream: kube-rs hands the controller objects, not events,
/// so the last seen version of each Extension stands in for the event's old object. Requeues and other triggers
/// (e.g. a changed input every Extension depends on) bypass this filter, as in Gardener's library.
pub struct EventFilter {
    extension_type: String,
    ignore_operation_annotation: bool,
    last_seen: HashMap<ObjectRef<Extension>, Extension>,
}

impl EventFilter {
    /// A filter for Extensions of `extension_type`; `ignore_operation_annotation` is Gardener's
    /// `--ignore-operation-annotation` (reconcile on generation changes instead).
    pub fn new(extension_type: &str, ignore_operation_annotation: bool) -> Self {
        EventFilter {
            extension_type: extension_type.to_string(),
            ignore_operation_annotation,
            last_seen: HashMap::new(),
        }
    }

    /// Whether a watch event triggers a reconcile; `None` for events that never do.
    pub fn admit(&mut self, event: watcher::Event<Extension>) -> Option<Extension> {
        match event {
            watcher::Event::Apply(extension) | watcher::Event::InitApply(extension) => {
                if extension.spec.type_ != self.extension_type {
                    return None;
                }
                let old = self.last_seen.insert(ObjectRef::from_obj(&extension), extension.clone());
                // A new object under an old name is a creation, not an update of the deleted one.
                let old = old.filter(|old| old.metadata.uid == extension.metadata.uid);
                status::should_process_event(old.as_ref(), &extension, self.ignore_operation_annotation)
                    .then_some(extension)
            }
            watcher::Event::Delete(extension) => {
                self.last_seen.remove(&ObjectRef::from_obj(&extension));
                None
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::extensions::ExtensionSpec;
    use crate::constants::EXTENSION_TYPE;

    fn extension(uid: &str, generation: i64) -> Extension {
        let mut extension = Extension::new(
            EXTENSION_TYPE,
            ExtensionSpec { type_: EXTENSION_TYPE.to_string(), ..ExtensionSpec::default() },
        );
        extension.metadata.namespace = Some("shoot--a--b".to_string());
        extension.metadata.uid = Some(uid.to_string());
        extension.metadata.generation = Some(generation);
        extension
    }

    fn succeeded(mut extension: Extension) -> Extension {
        extension.status = Some(crate::apis::common::DefaultStatus {
            last_operation: Some(crate::apis::common::LastOperation {
                type_: crate::apis::common::LastOperationType::Reconcile,
                state: crate::apis::common::LastOperationState::Succeeded,
                progress: 100,
                description: String::new(),
                last_update_time: crate::apis::common::unset_time(),
            }),
            ..Default::default()
        });
        extension
    }

    #[test]
    fn a_recreated_extension_is_judged_as_created_and_deletions_are_forgotten() {
        let mut filter = EventFilter::new(EXTENSION_TYPE, true);
        assert!(filter.admit(watcher::Event::InitApply(succeeded(extension("a", 1)))).is_some(), "first sighting");
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("a", 1)))).is_none(), "nothing changed");
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("a", 2)))).is_some(), "generation changed");
        // Same name, new object, same generation: a creation, not an unchanged update.
        assert!(filter.admit(watcher::Event::Apply(succeeded(extension("b", 2)))).is_some(), "recreated");
        assert!(filter.admit(watcher::Event::Delete(extension("b", 2))).is_none());
        assert!(filter.last_seen.is_empty(), "deleted objects are forgotten");
    }

    #[test]
    fn other_extension_types_never_trigger() {
        let mut filter = EventFilter::new(EXTENSION_TYPE, false);
        let mut other = extension("a", 1);
        other.spec.type_ = "registry-cache".to_string();
        assert!(filter.admit(watcher::Event::Apply(other)).is_none());
        assert!(filter.last_seen.is_empty());
    }
}
