//! `resources.gardener.cloud/v1alpha1` ManagedResource: how the extension ships objects into the shoot.
//!
//! The reconciler writes the spec (objects go into referenced Secrets) and reads the status conditions back to
//! judge health (`pkg/utils/kubernetes/health/managedresource.go`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{Condition, find_condition, null_as_default};

/// Condition type: the objects were applied (`True` together with `observedGeneration == generation`).
pub const CONDITION_RESOURCES_APPLIED: &str = "ResourcesApplied";
/// Condition type: the applied objects are healthy.
pub const CONDITION_RESOURCES_HEALTHY: &str = "ResourcesHealthy";
/// Condition type: a rollout of the applied objects is still in progress.
pub const CONDITION_RESOURCES_PROGRESSING: &str = "ResourcesProgressing";

/// Condition reasons gardener-resource-manager uses (`pkg/apis/resources/v1alpha1/types.go`).
pub mod reasons {
    /// All objects were applied.
    pub const APPLY_SUCCEEDED: &str = "ApplySucceeded";
    /// Applying an object failed.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// A manifest in a referenced Secret could not be decoded.
    pub const DECODING_FAILED: &str = "DecodingFailed";
    /// Applying is still in progress.
    pub const APPLY_PROGRESSING: &str = "ApplyProgressing";
    /// Deleting an object failed.
    pub const DELETION_FAILED: &str = "DeletionFailed";
    /// Deletion waits for objects to disappear.
    pub const DELETION_PENDING: &str = "DeletionPending";
    /// The ManagedResource is ignored (annotation or foreign class).
    pub const MANAGED_RESOURCE_IGNORED: &str = "ManagedResourceIgnored";
    /// Health checks have not run yet.
    pub const CHECKS_PENDING: &str = "ChecksPending";
}

/// The desired state of a ManagedResource.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "resources.gardener.cloud",
    version = "v1alpha1",
    kind = "ManagedResource",
    plural = "managedresources",
    singular = "managedresource",
    namespaced,
    shortname = "mr",
    status = "ManagedResourceStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "ManagedResource describes a list of managed resources.",
    printcolumn = r#"{"name": "Class", "type": "string", "jsonPath": ".spec.class", "description": "The class identifies which resource manager is responsible for this ManagedResource."}"#,
    printcolumn = r#"{"name": "Applied", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"ResourcesApplied\")].status", "description": " Indicates whether all resources have been applied."}"#,
    printcolumn = r#"{"name": "Healthy", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"ResourcesHealthy\")].status", "description": "Indicates whether all resources are healthy."}"#,
    printcolumn = r#"{"name": "Progressing", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"ResourcesProgressing\")].status", "description": "Indicates whether some resources are still progressing to be rolled out."}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "creation timestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResourceSpec {
    /// Secrets (same namespace) whose data keys hold the manifests. Always encoded: the CRD requires it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secret_refs: Vec<LocalObjectReference>,
    /// Unset: the shoot's resource manager applies into the shoot; `seed`: the seed's applies into the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Labels added to every applied object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_labels: Option<BTreeMap<String, String>>,
    /// Overwrite labels changed by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_overwrite_labels: Option<bool>,
    /// Overwrite annotations changed by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_overwrite_annotations: Option<bool>,
    /// Keep (orphan) the objects when the ManagedResource is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_objects: Option<bool>,
    /// Also delete the PVCs of managed StatefulSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_persistent_volume_claims: Option<bool>,
    /// Groups of GroupKinds that are the same object in different API groups.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub equivalences: Vec<Vec<GroupKind>>,
}

/// A reference to an object in the same namespace (`core/v1.LocalObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// A group and kind (`meta/v1.GroupKind`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupKind {
    /// API group (empty for the core group).
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// Kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
}

/// The observed state of a ManagedResource, written by gardener-resource-manager.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedResourceStatus {
    /// ResourcesApplied, ResourcesHealthy, ResourcesProgressing.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the resource manager last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The objects the resource manager applied.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    /// Checksum of the referenced Secrets' data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_data_checksum: Option<String>,
}

impl ManagedResourceStatus {
    /// The condition of the given type (see the `CONDITION_*` constants).
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        find_condition(&self.conditions, type_)
    }
}

impl ManagedResource {
    /// The status condition of the given type, if the resource manager reported one.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status.as_ref().and_then(|status| status.condition(type_))
    }
}

/// An applied object as listed in `status.resources` (`resources/v1alpha1.ObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ObjectReference {
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Resource version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Field path within the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    /// Labels the object had when last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations the object had when last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apis::common::ConditionStatus;
    use crate::apis::common::test_support::{assert_round_trip, fixture, fixture_documents, real_examples};

    #[test]
    fn fixture_managed_resource_round_trips() {
        let docs = fixture_documents("managedresource.yaml");
        assert_eq!(docs.len(), 1);
        let mr: ManagedResource = assert_round_trip("managedresource.yaml", &docs[0]);
        assert_eq!(crate::yaml::from_str::<ManagedResource>(&fixture("managedresource.yaml")).expect("YAML"), mr);

        assert_eq!(
            mr.spec.secret_refs,
            vec![LocalObjectReference { name: "managedresource-extension-runtime-cri-resmgr-0a1b2c3d".into() }]
        );
        assert_eq!(mr.spec.class, None);
        assert_eq!(mr.spec.keep_objects, Some(false));
        assert_eq!(
            mr.spec.inject_labels.as_ref().and_then(|l| l.get("shoot.gardener.cloud/no-cleanup")).map(String::as_str),
            Some("true")
        );
        assert_eq!(mr.spec.equivalences[0][1].group, "apps");

        assert_eq!(mr.condition(CONDITION_RESOURCES_APPLIED).map(|c| &c.status), Some(&ConditionStatus::True));
        assert_eq!(mr.condition(CONDITION_RESOURCES_HEALTHY).map(|c| &c.status), Some(&ConditionStatus::False));
        assert_eq!(mr.condition(CONDITION_RESOURCES_HEALTHY).map(|c| c.reason.as_str()), Some("DaemonSetUnhealthy"));
        assert_eq!(
            mr.condition(CONDITION_RESOURCES_PROGRESSING).map(|c| &c.status),
            Some(&ConditionStatus::Progressing)
        );
        let status = mr.status.as_ref().expect("status");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.resources.len(), 2);
        assert_eq!(status.resources[0].kind.as_deref(), Some("DaemonSet"));

        let encoded = serde_json::to_value(&mr).expect("encode");
        assert_eq!(encoded["status"]["resources"][0]["labels"]["app"], "cri-resmgr-agent");
        assert_eq!(encoded["status"]["resources"][1]["futureRefField"], "kept");
        assert_eq!(encoded["status"]["secretsDataChecksum"], "0a1b2c3d4e5f");
    }

    #[test]
    fn minimal_spec_always_carries_secret_refs() {
        let mr = ManagedResource::new("m", ManagedResourceSpec::default());
        let encoded = serde_json::to_value(&mr).expect("encode");
        assert_eq!(encoded["spec"], json!({"secretRefs": []}));
        assert!(mr.condition(CONDITION_RESOURCES_APPLIED).is_none());
    }

    #[test]
    fn real_gardener_managed_resources_round_trip() {
        for (label, doc) in real_examples("resources.gardener.cloud/v1alpha1", "ManagedResource", 0) {
            let _: ManagedResource = assert_round_trip(&label, &doc);
        }
    }
}
