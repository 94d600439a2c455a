//! Which Extensions a controller is responsible for ([`Responsibility`]: Gardener's type and class predicates) and
//! which watch events reach the reconciler: Gardener's event predicates ([`super::status::should_process_event`])
//! applied to a kube-rs watch stream.

use std::collections::HashMap;

use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::status;
use crate::apis::extensions::Extension;
use crate::constants::EXTENSION_CLASS_SHOOT;

/// The Extensions a controller is responsible for: Gardener's `HasType` and `HasClass` predicates. Extensions of
/// other types or classes are never reconciled, health-checked or written to: a `garden` or `seed` Extension of the
/// same type is served by another deployment of the extension, in another cluster role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Responsibility {
    /// `spec.type` of the Extensions served.
    pub extension_type: &'static str,
    /// The extension class served (`shoot`, `seed`, `garden`).
    pub extension_class: &'static str,
}

impl Responsibility {
    /// Whether `extension` is of the type and class served.
    pub fn covers(&self, extension: &Extension) -> bool {
        extension.spec.type_ == self.extension_type && extension_class(extension) == self.extension_class
    }

    /// The watch stream as the controller's cache must hold it: Extensions not [covered](Self::covers) are left
    /// out, so that neither the reconciler, nor its requeues, nor the triggers and loops reading the cache ever
    /// see them. An object that stops being covered (the class is immutable in Gardener's CRD, but a cache must
    /// not rely on every apiserver enforcing that) is removed from the cache as if it had been deleted.
    pub fn restrict(&self, event: watcher::Event<Extension>) -> Option<watcher::Event<Extension>> {
        match event {
            watcher::Event::Apply(extension) if !self.covers(&extension) => Some(watcher::Event::Delete(extension)),
            watcher::Event::InitApply(extension) if !self.covers(&extension) => None,
            event => Some(event),
        }
    }
}

/// The class of an Extension: `spec.class`, or `shoot` when it is absent or empty (Gardener's
/// `GetExtensionClassOrDefault`: Extensions written before classes existed are all of shoots).
pub fn extension_class(extension: &Extension) -> &str {
    extension.spec.class.as_deref().filter(|class| !class.is_empty()).unwrap_or(EXTENSION_CLASS_SHOOT)
}

/// Applies Gardener's event predicates to the raw watch stream: kube-rs hands the controller objects, not events,
/// so the last seen version of each Extension stands in for the event's old object. Requeues and other triggers
/// (e.g. a changed input every Extension depends on) bypass this filter, as in Gardener's library.
pub struct EventFilter {
    responsibility: Responsibility,
    ignore_operation_annotation: bool,
    last_seen: HashMap<ObjectRef<Extension>, Extension>,
}

impl EventFilter {
    /// A filter for the Extensions `responsibility` covers; `ignore_operation_annotation` is Gardener's
    /// `--ignore-operation-annotation` (reconcile on generation changes instead).
    pub fn new(responsibility: Responsibility, ignore_operation_annotation: bool) -> Self {
        EventFilter { responsibility, ignore_operation_annotation, last_seen: HashMap::new() }
    }

    /// Whether a watch event triggers a reconcile; `None` for events that never do.
    pub fn admit(&mut self, event: watcher::Event<Extension>) -> Option<Extension> {
        match event {
            watcher::Event::Apply(extension) | watcher::Event::InitApply(extension) => {
                if !self.responsibility.covers(&extension) {
                    self.last_seen.remove(&ObjectRef::from_obj(&extension));
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

    const OURS: Responsibility =
        Responsibility { extension_type: EXTENSION_TYPE, extension_class: EXTENSION_CLASS_SHOOT };

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
        let mut filter = EventFilter::new(OURS, true);
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
        let mut filter = EventFilter::new(OURS, false);
        let mut other = extension("a", 1);
        other.spec.type_ = "registry-cache".to_string();
        assert!(filter.admit(watcher::Event::Apply(other)).is_none());
        assert!(filter.last_seen.is_empty());
    }

    #[test]
    fn only_shoot_class_extensions_are_ours_and_a_missing_class_is_shoot() {
        let class = |class: Option<&str>| {
            let mut e = extension("a", 1);
            e.spec.class = class.map(str::to_string);
            e
        };
        for (given, ours) in [(None, true), (Some(""), true), (Some("shoot"), true), (Some("seed"), false)] {
            assert_eq!(OURS.covers(&class(given)), ours, "class {given:?}");
        }
        assert!(!OURS.covers(&class(Some("garden"))));
        assert_eq!(extension_class(&class(None)), "shoot");
        assert_eq!(extension_class(&class(Some("garden"))), "garden");

        let mut filter = EventFilter::new(OURS, true);
        assert!(filter.admit(watcher::Event::InitApply(class(Some("garden")))).is_none(), "never triggers");
        assert!(filter.last_seen.is_empty());
        assert!(filter.admit(watcher::Event::Apply(class(None))).is_some());
        // Should the class ever change, the object is forgotten like a deleted one.
        assert!(filter.admit(watcher::Event::Apply(class(Some("seed")))).is_none());
        assert!(filter.last_seen.is_empty());
    }

    #[test]
    fn the_cache_never_holds_other_classes_or_types() {
        let garden = {
            let mut e = extension("g", 1);
            e.spec.class = Some("garden".to_string());
            e
        };
        let mut other_type = extension("t", 1);
        other_type.spec.type_ = "registry-cache".to_string();
        for other in [garden, other_type] {
            assert!(OURS.restrict(watcher::Event::InitApply(other.clone())).is_none(), "not in the initial list");
            assert!(
                matches!(OURS.restrict(watcher::Event::Apply(other.clone())), Some(watcher::Event::Delete(_))),
                "removed from the cache if it was there"
            );
            assert!(matches!(OURS.restrict(watcher::Event::Delete(other)), Some(watcher::Event::Delete(_))));
        }
        let ours = extension("a", 1);
        assert!(matches!(OURS.restrict(watcher::Event::Apply(ours.clone())), Some(watcher::Event::Apply(_))));
        assert!(matches!(OURS.restrict(watcher::Event::InitApply(ours)), Some(watcher::Event::InitApply(_))));
        assert!(matches!(OURS.restrict(watcher::Event::Init), Some(watcher::Event::Init)));
    }
}
