//! `core.gardener.cloud/v1beta1` Shoot: only the parts the extension reads, with every other field preserved.
//!
//! Shoots reach us in two ways: embedded in `Cluster.spec.shoot` (seed side) and in admission reviews (garden
//! side, where the webhook may write them back). Because of the latter, every struct keeps the fields it does not
//! model in a flattened `other` map, so decode → encode returns the same object. The schema of these types is the
//! Shoot CRD of the test bed (its stand-in for gardener-apiserver, which has no CRD): it declares what the typed API
//! models and nothing more, so the test bed prunes everything else (the CRD generator drops the `other` maps) and
//! never accepts a field or a type the extension would not read back; only `providerConfig` stays raw.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::common::{LastOperation, LastOperationState, null_as_default, raw_object_schema};

/// The desired state of a Shoot (`spec`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "core.gardener.cloud",
    version = "v1beta1",
    kind = "Shoot",
    plural = "shoots",
    singular = "shoot",
    namespaced,
    status = "ShootStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Shoot cluster (gardener-apiserver's resource; a CRD only in the test bed).",
    printcolumn = r#"{"name": "Kubernetes Version", "type": "string", "jsonPath": ".spec.kubernetes.version", "description": "Kubernetes version of the control plane."}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.lastOperation.state", "description": "State of the last operation."}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "creation timestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ShootSpec {
    /// Extensions enabled (or disabled) for this Shoot; gardenlet copies `providerConfig` into the Extension.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ShootExtension>,
    /// Control-plane Kubernetes settings.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "ShootKubernetes::is_empty")]
    pub kubernetes: ShootKubernetes,
    /// Infrastructure provider and worker pools.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "ShootProvider::is_empty")]
    pub provider: ShootProvider,
    /// Hibernation settings; a hibernated Shoot has no nodes to clean up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernation: Option<Hibernation>,
    /// Every other spec field, preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The observed state of a Shoot (`status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShootStatus {
    /// The last operation gardenlet ran on the Shoot; `Failed` means gardenlet gave up (extensions skip it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
    /// Every other status field, preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One entry of `spec.extensions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShootExtension {
    /// The extension type, e.g. `cri-resmgr-extension`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// The extension's configuration (raw), copied verbatim into `Extension.spec.providerConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub provider_config: Option<Value>,
    /// `true` disables an extension that is otherwise enabled (e.g. by `autoEnable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `spec.kubernetes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShootKubernetes {
    /// Control-plane version; worker pools fall back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every other field (kubelet, kubeAPIServer, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ShootKubernetes {
    /// Nothing set: the field is omitted on encode, as when it was absent.
    pub fn is_empty(&self) -> bool {
        self.version.is_none() && self.other.is_empty()
    }
}

/// `spec.provider`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShootProvider {
    /// Provider type (aws, gcp, local, ...).
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub type_: String,
    /// Worker pools.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub workers: Vec<Worker>,
    /// Every other field (infrastructureConfig, controlPlaneConfig, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ShootProvider {
    /// Nothing set: the field is omitted on encode, as when it was absent.
    pub fn is_empty(&self) -> bool {
        self.type_.is_empty() && self.workers.is_empty() && self.other.is_empty()
    }
}

/// One worker pool (`spec.provider.workers[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    /// Pool name; also the value of the node label `worker.gardener.cloud/pool`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Labels put on the pool's nodes (e.g. the cri-resmgr group label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Container runtime of the pool; cri-resmgr needs containerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri: Option<Cri>,
    /// Pool-specific Kubernetes settings (kubelet version override).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<WorkerKubernetes>,
    /// Machine type and image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub machine: Machine,
    /// Every other field (minimum, maximum, zones, taints, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl Worker {
    /// The kubelet version of this pool: its own `kubernetes.version`, else the Shoot's
    /// (Gardener's `CalculateEffectiveKubernetesVersion`).
    pub fn effective_kubernetes_version<'a>(&'a self, shoot: &'a ShootSpec) -> Option<&'a str> {
        self.kubernetes
            .as_ref()
            .and_then(|kubernetes| kubernetes.version.as_deref())
            .or(shoot.kubernetes.version.as_deref())
    }

    /// The pool's CRI name (`containerd`), if set.
    pub fn cri_name(&self) -> Option<&str> {
        self.cri.as_ref().map(|cri| cri.name.as_str())
    }

    /// The machine architecture of the pool's nodes (`machine.architecture`, which Gardener defaults to amd64): the
    /// architecture its node-side images must be built for.
    pub fn architecture(&self) -> &str {
        self.machine.architecture.as_deref().unwrap_or(crate::constants::DEFAULT_MACHINE_ARCHITECTURE)
    }
}

/// `workers[].cri`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cri {
    /// CRI name; Gardener only supports `containerd`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Every other field (containerRuntimes, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `workers[].kubernetes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerKubernetes {
    /// kubelet version of the pool, overriding the control-plane version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every other field (kubelet, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `workers[].machine`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    /// Machine type (e.g. `m5.large`).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Machine image; its name is the OperatingSystemConfig's `spec.type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<MachineImage>,
    /// CPU architecture of the pool's machines (`amd64`, `arm64`); Gardener defaults it to amd64. The node-side
    /// images must exist for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `workers[].machine.image`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineImage {
    /// Image name (e.g. `gardenlinux`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Image version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Every other field (providerConfig, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `spec.hibernation`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hibernation {
    /// Whether the Shoot is (to be) hibernated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Every other field (schedules, ...), preserved verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ShootSpec {
    /// True when `spec.hibernation.enabled` is true (Gardener's `HibernationIsEnabled`).
    pub fn is_hibernated(&self) -> bool {
        self.hibernation.as_ref().and_then(|hibernation| hibernation.enabled) == Some(true)
    }

    /// The `spec.extensions` entry of the given type, with its index.
    pub fn extension(&self, type_: &str) -> Option<(usize, &ShootExtension)> {
        self.extensions.iter().enumerate().find(|(_, extension)| extension.type_ == type_)
    }

    /// The entry of the given type that is not `disabled`, with its index: what gardenlet creates an Extension for.
    pub fn enabled_extension(&self, type_: &str) -> Option<(usize, &ShootExtension)> {
        self.extensions
            .iter()
            .enumerate()
            .find(|(_, extension)| extension.type_ == type_ && extension.disabled != Some(true))
    }

    /// The worker pool with the given name.
    pub fn worker(&self, name: &str) -> Option<&Worker> {
        self.provider.workers.iter().find(|worker| worker.name == name)
    }
}

impl Shoot {
    /// The `spec.extensions` entry of the given type, with its index (for JSON patches).
    pub fn extension(&self, type_: &str) -> Option<(usize, &ShootExtension)> {
        self.spec.extension(type_)
    }

    /// True when gardenlet gave up on the Shoot (`status.lastOperation.state == Failed`); extension controllers
    /// then do nothing (`extensions/pkg/controller/extension/reconciler.go`).
    pub fn is_failed(&self) -> bool {
        self.status
            .as_ref()
            .and_then(|status| status.last_operation.as_ref())
            .is_some_and(|operation| operation.state == LastOperationState::Failed)
    }
}

/// Decodes a Shoot embedded in `Cluster.spec.shoot`. gardenlet writes a complete object, but real examples (e.g.
/// provider-aws `example/30-worker.yaml`) embed one without `metadata`, and the kube-derived `Shoot` requires
/// `metadata` and `spec`, so missing (or `null`) ones are filled in as empty.
pub(crate) fn deserialize_embedded_shoot<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Shoot, D::Error> {
    let mut value = Value::deserialize(deserializer)?;
    if let Value::Object(map) = &mut value {
        for key in ["metadata", "spec"] {
            let entry = map.entry(key).or_insert(Value::Null);
            if entry.is_null() {
                *entry = Value::Object(serde_json::Map::new());
            }
        }
    }
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

/// Encodes a Shoot embedded in `Cluster.spec.shoot`, leaving out an empty `metadata` (see
/// [`deserialize_embedded_shoot`]) so that decode → encode does not add one.
pub(crate) fn serialize_embedded_shoot<S: Serializer>(shoot: &Shoot, serializer: S) -> Result<S::Ok, S::Error> {
    let mut value = serde_json::to_value(shoot).map_err(serde::ser::Error::custom)?;
    if let Value::Object(map) = &mut value
        && map.get("metadata").is_some_and(|meta| meta.as_object().is_some_and(serde_json::Map::is_empty))
    {
        map.remove("metadata");
    }
    value.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apis::common::test_support::{assert_round_trip, fixture, fixture_documents, real_examples};

    #[test]
    fn fixture_shoot_round_trips_and_keeps_unknown_fields() {
        let docs = fixture_documents("shoot.yaml");
        assert_eq!(docs.len(), 1);
        let shoot: Shoot = assert_round_trip("shoot.yaml", &docs[0]);
        // The direct YAML path gives the same value.
        let direct: Shoot = crate::yaml::from_str(&fixture("shoot.yaml")).expect("YAML decode");
        assert_eq!(direct, shoot);

        assert_eq!(shoot.metadata.name.as_deref(), Some("local"));
        assert_eq!(shoot.spec.kubernetes.version.as_deref(), Some("1.32.0"));
        assert_eq!(shoot.spec.provider.type_, "local");
        assert_eq!(shoot.spec.provider.workers.len(), 2);
        assert!(!shoot.spec.is_hibernated());
        assert!(!shoot.is_failed());

        let (index, extension) = shoot.extension("cri-resmgr-extension").expect("extension present");
        assert_eq!(index, 1);
        assert_eq!(extension.disabled, None);
        let config = extension.provider_config.as_ref().expect("providerConfig");
        assert!(config["configs"]["default"].as_str().is_some_and(|text| text.contains("topology-aware")));
        assert!(shoot.extension("nope").is_none());

        let worker = shoot.spec.worker("cpu").expect("worker cpu");
        assert_eq!(worker.cri_name(), Some("containerd"));
        assert_eq!(worker.effective_kubernetes_version(&shoot.spec), Some("1.31.4"));
        assert_eq!(worker.machine.image.as_ref().map(|image| image.name.as_str()), Some("gardenlinux"));
        let labels = worker.labels.as_ref().expect("labels");
        assert_eq!(labels.get("cri-resource-manager.intel.com/group").map(String::as_str), Some("cpu-heavy"));
        let other = shoot.spec.worker("other").expect("worker other");
        assert_eq!(other.effective_kubernetes_version(&shoot.spec), Some("1.32.0"));
        assert_eq!(other.cri, None);

        // Unknown fields at every level survive the encoding.
        let encoded = serde_json::to_value(&shoot).expect("encode");
        assert_eq!(encoded["spec"]["networking"]["type"], "calico");
        assert_eq!(encoded["spec"]["provider"]["workers"][0]["maximum"], 3);
        assert_eq!(encoded["spec"]["provider"]["workers"][0]["machine"]["architecture"], "amd64");
        assert_eq!(encoded["spec"]["provider"]["workers"][0]["cri"]["containerRuntimes"][0]["type"], "gvisor");
        assert_eq!(encoded["spec"]["kubernetes"]["kubelet"]["serializeImagePulls"], false);
        assert_eq!(encoded["spec"]["extensions"][0]["futureField"], "kept");
        assert_eq!(encoded["spec"]["hibernation"]["schedules"][0]["start"], "00 20 * * 1,2,3,4,5");
        assert_eq!(encoded["status"]["technicalID"], "shoot--dev--local");
    }

    #[test]
    fn real_gardener_shoots_round_trip() {
        for (label, doc) in real_examples("core.gardener.cloud/v1beta1", "Shoot", 2) {
            let shoot: Shoot = assert_round_trip(&label, &doc);
            assert!(shoot.metadata.name.is_some(), "{label}: name");
        }
    }

    /// `kubernetes:` with only comments below it is `null` in Gardener's example/90-shoot.yaml.
    #[test]
    fn null_sections_decode_as_absent() {
        let shoot: Shoot = serde_json::from_value(json!({
            "apiVersion": "core.gardener.cloud/v1beta1", "kind": "Shoot", "metadata": {"name": "a"},
            "spec": {"kubernetes": null, "provider": null, "extensions": null, "hibernation": null}
        }))
        .expect("decode");
        assert_eq!(shoot.spec, ShootSpec::default());
        assert_eq!(serde_json::to_value(&shoot).expect("encode")["spec"], json!({}));
    }

    #[test]
    fn hibernation_and_failure_helpers() {
        let mut shoot = Shoot::new("s", ShootSpec::default());
        assert!(!shoot.spec.is_hibernated());
        shoot.spec.hibernation = Some(Hibernation { enabled: Some(false), ..Default::default() });
        assert!(!shoot.spec.is_hibernated());
        shoot.spec.hibernation = Some(Hibernation { enabled: Some(true), ..Default::default() });
        assert!(shoot.spec.is_hibernated());

        shoot.status = Some(serde_json::from_value(json!({"lastOperation": {"state": "Failed"}})).expect("status"));
        assert!(shoot.is_failed());
        shoot.status = Some(serde_json::from_value(json!({"lastOperation": {"state": "Error"}})).expect("status"));
        assert!(!shoot.is_failed());
    }

    #[test]
    fn embedded_shoot_without_metadata_decodes_and_encodes_without_metadata() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Holder {
            #[serde(deserialize_with = "deserialize_embedded_shoot", serialize_with = "serialize_embedded_shoot")]
            shoot: Shoot,
        }
        let original = json!({"shoot": {
            "apiVersion": "core.gardener.cloud/v1beta1", "kind": "Shoot",
            "spec": {"kubernetes": {"version": "1.32.0"}},
            "status": {"lastOperation": {"state": "Succeeded"}}
        }});
        let holder: Holder = serde_json::from_value(original.clone()).expect("decode");
        assert_eq!(holder.shoot.metadata, Default::default());
        let encoded = serde_json::to_value(&holder).expect("encode");
        assert!(encoded["shoot"].get("metadata").is_none());
        assert_eq!(encoded["shoot"]["apiVersion"], "core.gardener.cloud/v1beta1");
        assert_eq!(encoded["shoot"]["kind"], "Shoot");
        let no_spec: Holder = serde_json::from_value(json!({"shoot": {"apiVersion": "a", "kind": "Shoot"}}))
            .expect("decode without spec");
        assert_eq!(no_spec.shoot.spec, ShootSpec::default());
    }
}
