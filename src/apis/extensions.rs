//! `extensions.gardener.cloud/v1alpha1`: Extension, Cluster and OperatingSystemConfig.
//!
//! Field names follow Gardener's CRDs exactly. OperatingSystemConfig is modelled in the depth the OSC webhook
//! needs (units, files, the kubelet unit); everything else of it is kept in flattened `other` maps because the
//! webhook returns the whole object and must not drop fields a newer gardenlet wrote (e.g. `criConfig.containerd.
//! registries` added by the registry-cache extension, or `inPlaceUpdates`).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{DefaultStatus, null_as_default, open_enum, raw_object_schema};
use super::core::{Shoot, deserialize_embedded_shoot, serialize_embedded_shoot};

/// The status of an Extension: Gardener's `DefaultStatus`, nothing more.
pub type ExtensionStatus = DefaultStatus;

/// The desired state of an Extension (`DefaultSpec`). gardenlet creates one per enabled extension type in the
/// shoot's seed namespace, named after the type.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "extensions.gardener.cloud",
    version = "v1alpha1",
    kind = "Extension",
    plural = "extensions",
    singular = "extension",
    namespaced,
    shortname = "ext",
    status = "ExtensionStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Extension is a specification for a Extension resource.",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type", "description": "The type of the Extension resource."}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.lastOperation.state", "description": "Status of Extension resource."}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "creation timestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    /// The extension type (`cri-resmgr-extension`); controllers only act on their own type.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Extension class; unset for shoot extensions (`seed`/`garden` otherwise). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The user's configuration, copied verbatim from the Shoot's `spec.extensions[].providerConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub provider_config: Option<Value>,
}

/// The shoot's context as gardenlet syncs it into the seed: `metadata.name` is the shoot's seed namespace.
/// Cluster-scoped; Gardener's CRD has a status subresource but nobody writes a status. Like Gardener's CRD, the
/// schema keeps the embedded objects raw (not as `x-kubernetes-embedded-resource`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "extensions.gardener.cloud",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    singular = "cluster",
    derive = "PartialEq",
    derive = "Default",
    doc = "Cluster is a specification for a Cluster resource.",
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "description": "creation timestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// The complete Shoot (possibly without metadata), typed so callers can read
    /// `cluster.spec.shoot.spec.provider.workers`.
    #[serde(deserialize_with = "deserialize_embedded_shoot", serialize_with = "serialize_embedded_shoot")]
    #[schemars(schema_with = "raw_object_schema")]
    pub shoot: Shoot,
    /// The complete CloudProfile (raw); `null` when absent.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schemars(schema_with = "raw_object_schema")]
    pub cloud_profile: Value,
    /// The complete Seed (raw); absent for self-hosted shoots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub seed: Option<Value>,
}

open_enum! {
    /// `spec.purpose` of an OperatingSystemConfig.
    OscPurpose {
        /// User data for new machines (`…-init`).
        Provision => "provision",
        /// What gardener-node-agent applies on running nodes (`…-original`); the one the webhook mutates.
        Reconcile => "reconcile",
    }
}

open_enum! {
    /// `units[].command`: what gardener-node-agent does with the unit.
    UnitCommand {
        Start => "start",
        Restart => "restart",
        Stop => "stop",
    }
}

/// The desired node configuration of one worker pool. gardener-node-agent applies `purpose: reconcile` OSCs;
/// the extension's webhook adds cri-resmgr's files and unit to them.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "extensions.gardener.cloud",
    version = "v1alpha1",
    kind = "OperatingSystemConfig",
    plural = "operatingsystemconfigs",
    singular = "operatingsystemconfig",
    namespaced,
    shortname = "osc",
    status = "OperatingSystemConfigStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "OperatingSystemConfig is a specification for a OperatingSystemConfig resource",
    printcolumn = r#"{"name": "Type", "type": "string", "jsonPath": ".spec.type"}"#,
    printcolumn = r#"{"name": "Purpose", "type": "string", "jsonPath": ".spec.purpose"}"#,
    printcolumn = r#"{"name": "Status", "type": "string", "jsonPath": ".status.lastOperation.state"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct OperatingSystemConfigSpec {
    /// The machine image name (`workers[].machine.image.name`).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// Extension class; unset for shoots. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `workers[].machine.image.providerConfig` (raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub provider_config: Option<Value>,
    /// `provision` or `reconcile`. Immutable.
    #[serde(default, skip_serializing_if = "OscPurpose::is_unset")]
    pub purpose: OscPurpose,
    /// systemd units.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
    /// Files.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Container runtime configuration (containerd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_config: Option<CriConfig>,
    /// Every other field (`inPlaceUpdates`, ...), preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

impl OperatingSystemConfigSpec {
    /// The unit with the given name (e.g. `kubelet.service`).
    pub fn unit(&self, name: &str) -> Option<&Unit> {
        self.units.iter().find(|unit| unit.name == name)
    }

    /// The unit with the given name, mutably.
    pub fn unit_mut(&mut self, name: &str) -> Option<&mut Unit> {
        self.units.iter_mut().find(|unit| unit.name == name)
    }

    /// The file with the given path.
    pub fn file(&self, path: &str) -> Option<&File> {
        self.files.iter().find(|file| file.path == path)
    }

    /// The file with the given path, mutably.
    pub fn file_mut(&mut self, path: &str) -> Option<&mut File> {
        self.files.iter_mut().find(|file| file.path == path)
    }
}

/// A systemd unit (`units[]`, `status.extensionUnits[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Unit {
    /// Unit name, e.g. `kubelet.service`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// start, restart or stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<UnitCommand>,
    /// Whether the unit is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<bool>,
    /// The unit file content; absent when only drop-ins are added to an existing unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Drop-in files for the unit.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub drop_ins: Vec<DropIn>,
    /// Files whose change restarts the unit.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub file_paths: Vec<String>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// A systemd drop-in (`units[].dropIns[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DropIn {
    /// Drop-in file name, e.g. `10-opts.conf`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Drop-in content.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// A file on the node (`files[]`, `status.extensionFiles[]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct File {
    /// Absolute path on the node.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
    /// File mode, decimal in JSON (420 = 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<i32>,
    /// Only write the file on the node with this host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// Where the content comes from.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: FileContent,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// `files[].content`: exactly one of `inline`, `secretRef` and `imageRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct FileContent {
    /// Content given in the OSC itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<FileContentInline>,
    /// Content taken from a Secret in the OSC's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<FileContentSecretRef>,
    /// Content extracted from a container image (how the cri-resmgr binary reaches the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<FileContentImageRef>,
    /// Whether the content is transmitted unencoded in the user data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transmit_unencoded: Option<bool>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// `content.inline`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileContentInline {
    /// `""` (plain) or `b64`. Always encoded: the CRD requires it even when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub encoding: String,
    /// The content, encoded as `encoding` says.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: String,
}

/// `content.secretRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileContentSecretRef {
    /// Secret name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Key within the Secret's data.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_key: String,
}

/// `content.imageRef`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileContentImageRef {
    /// Image reference.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: String,
    /// Path of the file inside the image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub file_path_in_image: String,
}

/// `spec.criConfig` (the docs call it `cri:`, the CRD `criConfig`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct CriConfig {
    /// CRI name (`containerd`). Immutable.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// `cgroupfs` or `systemd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_driver: Option<String>,
    /// containerd settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containerd: Option<ContainerdConfig>,
    /// Every other field, preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// `criConfig.containerd`; `registries` and `plugins` are kept in `other`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ContainerdConfig {
    /// The pause image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_image: Option<String>,
    /// Every other field (`registries`, `plugins`, ...), preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// The status of an OperatingSystemConfig.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct OperatingSystemConfigStatus {
    /// The fields every extension object has (lastOperation, conditions, ...).
    #[serde(flatten)]
    pub common: DefaultStatus,
    /// Units an OS extension adds for `reconcile` OSCs; node-agent merges them with `spec.units`.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub extension_units: Vec<Unit>,
    /// Files an OS extension adds for `reconcile` OSCs; node-agent merges them with `spec.files`.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub extension_files: Vec<File>,
    /// Where the generated user data is (`provision` OSCs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_config: Option<CloudConfig>,
    /// Every other field (`inPlaceUpdates`, ...), preserved verbatim.
    #[serde(flatten)]
    #[schemars(skip)]
    pub other: BTreeMap<String, Value>,
}

/// `status.cloudConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudConfig {
    /// The Secret holding the user data (key `cloud_config`).
    #[serde(default)]
    pub secret_ref: SecretReference,
}

/// A reference to a Secret in any namespace (`core/v1.SecretReference`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Secret namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apis::common::test_support::{assert_round_trip, fixture, fixture_documents, real_examples};
    use crate::apis::common::{ConditionStatus, LastOperationState, LastOperationType, find_condition};

    const API_VERSION: &str = "extensions.gardener.cloud/v1alpha1";

    #[test]
    fn fixture_extension_round_trips() {
        let docs = fixture_documents("extension.yaml");
        assert_eq!(docs.len(), 1);
        let extension: Extension = assert_round_trip("extension.yaml", &docs[0]);
        assert_eq!(crate::yaml::from_str::<Extension>(&fixture("extension.yaml")).expect("YAML"), extension);

        assert_eq!(extension.spec.type_, "cri-resmgr-extension");
        assert_eq!(extension.spec.class, None);
        let config = extension.spec.provider_config.as_ref().expect("providerConfig");
        assert_eq!(config["kind"], "CriResmgrConfig");
        let status = extension.status.as_ref().expect("status");
        let operation = status.last_operation.as_ref().expect("lastOperation");
        assert_eq!(operation.type_, LastOperationType::Reconcile);
        assert_eq!(operation.state, LastOperationState::Succeeded);
        assert_eq!(operation.progress, 100);
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.last_error.as_ref().map(|e| e.codes.len()), Some(1));
        let healthy = find_condition(&status.conditions, "SystemComponentsHealthy").expect("condition");
        assert_eq!(healthy.status, ConditionStatus::True);
        assert_eq!(status.resources[0].resource_ref.kind, "Secret");

        let encoded = serde_json::to_value(&extension).expect("encode");
        assert_eq!(encoded["spec"]["providerConfig"]["configs"]["futureKey"]["deep"], json!([1, 2]));
        assert_eq!(encoded["status"]["state"]["someControllerState"], "kept");
        assert_eq!(encoded["status"]["providerStatus"]["anything"], true);
        assert_eq!(encoded["metadata"]["annotations"]["gardener.cloud/timestamp"], "2025-01-01T00:00:00Z");
    }

    #[test]
    fn fixture_cluster_round_trips_with_typed_shoot() {
        let docs = fixture_documents("cluster.yaml");
        assert_eq!(docs.len(), 1);
        let cluster: Cluster = assert_round_trip("cluster.yaml", &docs[0]);
        assert_eq!(crate::yaml::from_str::<Cluster>(&fixture("cluster.yaml")).expect("YAML"), cluster);

        assert_eq!(cluster.metadata.name.as_deref(), Some("shoot--dev--crazy"));
        let shoot = &cluster.spec.shoot;
        assert_eq!(shoot.metadata.name.as_deref(), Some("crazy"));
        assert_eq!(shoot.spec.provider.workers.len(), 2);
        assert_eq!(shoot.spec.provider.workers[1].effective_kubernetes_version(&shoot.spec), Some("1.31.1"));
        assert!(shoot.spec.is_hibernated());
        assert!(shoot.extension("cri-resmgr-extension").is_some());
        assert!(!shoot.is_failed());
        assert_eq!(cluster.spec.cloud_profile["kind"], "CloudProfile");
        assert_eq!(cluster.spec.seed.as_ref().map(|seed| &seed["kind"]), Some(&json!("Seed")));

        let encoded = serde_json::to_value(&cluster).expect("encode");
        assert_eq!(encoded["spec"]["shoot"]["apiVersion"], "core.gardener.cloud/v1beta1");
        assert_eq!(encoded["spec"]["shoot"]["kind"], "Shoot");
        assert_eq!(encoded["spec"]["shoot"]["spec"]["maintenance"]["autoUpdate"]["kubernetesVersion"], true);
        assert_eq!(encoded["spec"]["shoot"]["status"]["technicalID"], "shoot--dev--crazy");
        assert_eq!(encoded["spec"]["cloudProfile"]["spec"]["kubernetes"]["versions"][0]["version"], "1.32.0");
    }

    #[test]
    fn fixture_oscs_round_trip() {
        let docs = fixture_documents("osc.yaml");
        assert_eq!(docs.len(), 2);
        let direct: Vec<OperatingSystemConfig> = crate::yaml::from_multi_str(&fixture("osc.yaml")).expect("YAML");

        let osc: OperatingSystemConfig = assert_round_trip("osc.yaml#0", &docs[0]);
        assert_eq!(direct[0], osc);
        assert_eq!(osc.spec.purpose, OscPurpose::Reconcile);
        assert_eq!(osc.spec.type_, "gardenlinux");
        let kubelet = osc.spec.unit("kubelet.service").expect("kubelet unit");
        assert_eq!(kubelet.command, Some(UnitCommand::Start));
        assert_eq!(kubelet.enable, Some(true));
        let content = kubelet.content.as_deref().expect("content");
        assert!(content.contains("--container-runtime-endpoint=unix:///run/containerd/containerd.sock \\\n"));
        assert!(content.ends_with("--v=2 $KUBELET_EXTRA_ARGS"));
        assert_eq!(kubelet.file_paths.len(), 4);
        let containerd = osc.spec.unit("containerd.service").expect("containerd drop-in unit");
        assert_eq!(containerd.drop_ins[0].name, "10-opts.conf");
        assert_eq!(containerd.content, None);
        let binary = osc.spec.file("/opt/bin/kubelet").expect("kubelet binary");
        assert_eq!(binary.permissions, Some(0o755));
        assert_eq!(binary.content.image_ref.as_ref().map(|r| r.file_path_in_image.as_str()), Some("/kubelet"));
        let ca = osc.spec.file("/var/lib/kubelet/ca.crt").expect("ca");
        assert_eq!(ca.content.inline.as_ref().map(|i| i.encoding.as_str()), Some("b64"));
        let cri = osc.spec.cri_config.as_ref().expect("criConfig");
        assert_eq!(cri.cgroup_driver.as_deref(), Some("systemd"));
        let status = osc.status.as_ref().expect("status");
        assert_eq!(status.common.last_operation.as_ref().map(|op| &op.state), Some(&LastOperationState::Succeeded));
        assert_eq!(status.extension_units[0].name, "my-custom.service");
        assert_eq!(status.extension_files[0].host_name.as_deref(), Some("worker-1"));

        // Fields this crate does not model survive.
        let encoded = serde_json::to_value(&osc).expect("encode");
        let spec = &encoded["spec"];
        assert_eq!(spec["criConfig"]["containerd"]["registries"][0]["upstream"], "docker.io");
        assert_eq!(spec["criConfig"]["containerd"]["plugins"][0]["values"]["x"], 1);
        assert_eq!(spec["inPlaceUpdates"]["kubelet"], "1.32.0");
        assert_eq!(spec["units"][0]["futureUnitField"], "kept");
        assert_eq!(spec["files"][0]["futureFileField"], "kept");
        assert_eq!(spec["files"][0]["content"]["futureContentField"], "kept");
        assert_eq!(encoded["status"]["inPlaceUpdates"]["osUpdate"]["command"], "/update-me");

        let provision: OperatingSystemConfig = assert_round_trip("osc.yaml#1", &docs[1]);
        assert_eq!(direct[1], provision);
        assert_eq!(provision.spec.purpose, OscPurpose::Provision);
        let cloud_config = provision.status.as_ref().and_then(|s| s.cloud_config.as_ref()).expect("cloudConfig");
        assert_eq!(cloud_config.secret_ref.name.as_deref(), Some("osc-result-worker-init"));
    }

    #[test]
    fn osc_with_unknown_purpose_decodes() {
        let osc: OperatingSystemConfig = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "OperatingSystemConfig", "metadata": {"name": "x"},
            "spec": {"type": "t", "purpose": "future", "units": [{"name": "a", "command": "reload"}]}
        }))
        .expect("decode");
        assert_eq!(osc.spec.purpose, OscPurpose::Other("future".into()));
        assert_eq!(osc.spec.units[0].command, Some(UnitCommand::Other("reload".into())));
        let encoded = serde_json::to_value(&osc).expect("encode");
        assert_eq!(encoded["spec"]["purpose"], "future");
        assert_eq!(encoded["spec"]["units"][0]["command"], "reload");
    }

    /// The test bed's CRD strings are nullable (its apiserver refuses `""` otherwise), so the apiserver may hand back `null` where a string is
    /// required; that decodes like an absent field rather than failing the whole object.
    #[test]
    fn null_strings_decode_as_empty() {
        let osc: OperatingSystemConfig = serde_json::from_value(json!({
            "apiVersion": API_VERSION, "kind": "OperatingSystemConfig", "metadata": {"name": "x"},
            "spec": {"type": null, "purpose": null, "units": [{"name": null, "dropIns": [{"name": "d", "content": null}]}],
                     "files": [{"path": "/a", "content": {"inline": {"encoding": null, "data": null}}}]}
        }))
        .expect("decode");
        assert_eq!(osc.spec.type_, "");
        assert!(osc.spec.purpose.is_unset());
        assert_eq!(osc.spec.units[0].name, "");
        assert_eq!(osc.spec.units[0].drop_ins[0].content, "");
        let inline = osc.spec.files[0].content.inline.as_ref().expect("inline");
        assert_eq!((inline.encoding.as_str(), inline.data.as_str()), ("", ""));
    }

    #[test]
    fn osc_mutation_helpers_edit_in_place() {
        let mut spec = OperatingSystemConfigSpec {
            units: vec![Unit { name: "kubelet.service".into(), ..Default::default() }],
            files: vec![File { path: "/etc/a".into(), ..Default::default() }],
            ..Default::default()
        };
        if let Some(unit) = spec.unit_mut("kubelet.service") {
            unit.content = Some("[Service]".into());
        }
        if let Some(file) = spec.file_mut("/etc/a") {
            file.permissions = Some(0o600);
        }
        assert_eq!(spec.unit("kubelet.service").and_then(|u| u.content.as_deref()), Some("[Service]"));
        assert_eq!(spec.file("/etc/a").and_then(|f| f.permissions), Some(384));
        assert!(spec.unit("nope").is_none() && spec.file("/nope").is_none());
    }

    #[test]
    fn real_gardener_extensions_round_trip() {
        for (label, doc) in real_examples(API_VERSION, "Extension", 1) {
            let extension: Extension = assert_round_trip(&label, &doc);
            assert_eq!(extension.spec.type_, "example", "{label}");
        }
    }

    #[test]
    fn real_gardener_clusters_round_trip() {
        for (label, doc) in real_examples(API_VERSION, "Cluster", 1) {
            let cluster: Cluster = assert_round_trip(&label, &doc);
            assert_eq!(cluster.spec.shoot.spec.kubernetes.version.as_deref(), Some("1.32.0"), "{label}");
            assert_eq!(
                cluster.spec.shoot.status.as_ref().and_then(|s| s.last_operation.as_ref()).map(|op| &op.state),
                Some(&LastOperationState::Succeeded),
                "{label}"
            );
        }
    }

    #[test]
    fn real_gardener_oscs_round_trip() {
        for (label, doc) in real_examples(API_VERSION, "OperatingSystemConfig", 1) {
            let osc: OperatingSystemConfig = assert_round_trip(&label, &doc);
            assert!(!osc.spec.type_.is_empty(), "{label}");
        }
    }
}
