//! Status types shared by every Gardener extension object (`DefaultStatus` and its parts), plus the serde and
//! schema helpers the other API modules use.
//!
//! Decoding rules, because these types read objects written by other (possibly newer) Gardener components:
//! - enum-like strings (`LastOperationType`, `LastOperationState`, `ConditionStatus`, ...) are *open*: an unknown
//!   value decodes into `Other(String)` and encodes back verbatim, so a new Gardener value never breaks decoding;
//! - fields the CRD marks required still decode when absent (Gardener's own docs show `lastOperation: {state:
//!   Succeeded}`), falling back to a default; defaults that could never be a valid value (an empty enum, the
//!   UNIX epoch as a timestamp) are omitted again on encode, so we never write a bogus value or a `null`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Declares a string enum that tolerates values it does not know.
///
/// Gardener adds enum values over time (e.g. `LiveMigrate`); a closed Rust enum would make decoding of a whole
/// object fail on such a value. `Other(String)` keeps the unknown (or empty, meaning "unset") value verbatim.
/// Always build values with `From<&str>`/`From<String>` so that `"Create"` becomes `Create`, not `Other("Create")`.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this crate does not know, kept verbatim; the empty string means "unset".
            Other(String),
        }

        impl $name {
            /// Every value this crate knows, in declaration order.
            pub const KNOWN: &'static [$name] = &[$(Self::$variant,)+];

            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(other) => other,
                }
            }

            /// The wire value of a value this crate knows; `None` for [`Self::Other`] (e.g. to keep label sets
            /// bounded to the known values).
            pub fn known_str(&self) -> Option<&'static str> {
                match self {
                    $(Self::$variant => Some($text),)+
                    Self::Other(_) => None,
                }
            }

            /// True when no value was given (absent, `null` or `""` on the wire); such a value is not encoded.
            pub fn is_unset(&self) -> bool {
                matches!(self, Self::Other(other) if other.is_empty())
            }
        }

        impl Default for $name {
            /// "Unset": what an absent field decodes to.
            fn default() -> Self {
                Self::Other(String::new())
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $($text => Self::$variant,)+
                    _ => Self::Other(value),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            /// Accepts any string, and `null` as "unset".
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value: Option<String> = serde::Deserialize::deserialize(deserializer)?;
                Ok(value.map(Self::from).unwrap_or_default())
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            /// A plain string without `enum`: the apiserver must accept values newer than this crate, as
            /// Gardener's own CRDs do.
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
        }
    };
}
pub(crate) use open_enum;

open_enum! {
    /// `lastOperation.type` (`pkg/apis/core/v1beta1/types_common.go`).
    LastOperationType {
        Create => "Create",
        Reconcile => "Reconcile",
        Delete => "Delete",
        Migrate => "Migrate",
        Restore => "Restore",
        LiveMigrate => "LiveMigrate",
    }
}

open_enum! {
    /// `lastOperation.state` (`pkg/apis/core/v1beta1/types_common.go`).
    LastOperationState {
        Processing => "Processing",
        Succeeded => "Succeeded",
        Error => "Error",
        Failed => "Failed",
        Pending => "Pending",
        Aborted => "Aborted",
    }
}

open_enum! {
    /// `conditions[].status`: Gardener's conditions know `Progressing` besides the usual three.
    ConditionStatus {
        True => "True",
        False => "False",
        Unknown => "Unknown",
        Progressing => "Progressing",
    }
}

/// Well-known Gardener error codes (`lastError.codes[]`, `conditions[].codes[]`) as they appear on the wire; the set
/// is open, so the status types hold plain strings. Code that reports an error uses the typed [`ErrorCode`].
pub mod error_codes {
    /// The user's configuration is wrong; retrying without a change will not help.
    pub const CONFIGURATION_PROBLEM: &str = "ERR_CONFIGURATION_PROBLEM";
    /// A transient problem; gardenlet retries.
    pub const RETRYABLE_CONFIGURATION_PROBLEM: &str = "ERR_RETRYABLE_CONFIGURATION_PROBLEM";
    /// Infrastructure credentials were rejected.
    pub const INFRA_UNAUTHENTICATED: &str = "ERR_INFRA_UNAUTHENTICATED";
    /// Infrastructure credentials lack permissions.
    pub const INFRA_UNAUTHORIZED: &str = "ERR_INFRA_UNAUTHORIZED";
    /// An infrastructure quota is exhausted.
    pub const INFRA_QUOTA_EXCEEDED: &str = "ERR_INFRA_QUOTA_EXCEEDED";
    /// An infrastructure dependency blocks the operation.
    pub const INFRA_DEPENDENCIES: &str = "ERR_INFRA_DEPENDENCIES";
}

/// The Gardener error codes of an error, for `lastError.codes` (`ERR_CONFIGURATION_PROBLEM` tells gardenlet and the
/// user that retrying without a change will not help). Beside [`ErrorCode`] so that every layer's errors can say
/// their codes.
pub trait ErrorCodes {
    /// The codes; empty when the error is not classified (gardenlet then treats it as a plain, retryable error).
    fn codes(&self) -> Vec<ErrorCode>;
}

/// A Gardener error code this extension reports: a typed value on the error (never derived from error text), written
/// into `lastError.codes[]` or `conditions[].codes[]` as [`ErrorCode::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `ERR_CONFIGURATION_PROBLEM`: the user's or operator's configuration is wrong; retrying will not help.
    ConfigurationProblem,
    /// `ERR_RETRYABLE_CONFIGURATION_PROBLEM`: a configuration problem that may go away by itself.
    RetryableConfigurationProblem,
    /// `ERR_INFRA_UNAUTHENTICATED`: infrastructure credentials were rejected.
    InfraUnauthenticated,
    /// `ERR_INFRA_UNAUTHORIZED`: infrastructure credentials lack permissions.
    InfraUnauthorized,
    /// `ERR_INFRA_QUOTA_EXCEEDED`: an infrastructure quota is exhausted.
    InfraQuotaExceeded,
    /// `ERR_INFRA_DEPENDENCIES`: an infrastructure dependency blocks the operation.
    InfraDependencies,
}

impl ErrorCode {
    /// The wire value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ConfigurationProblem => error_codes::CONFIGURATION_PROBLEM,
            ErrorCode::RetryableConfigurationProblem => error_codes::RETRYABLE_CONFIGURATION_PROBLEM,
            ErrorCode::InfraUnauthenticated => error_codes::INFRA_UNAUTHENTICATED,
            ErrorCode::InfraUnauthorized => error_codes::INFRA_UNAUTHORIZED,
            ErrorCode::InfraQuotaExceeded => error_codes::INFRA_QUOTA_EXCEEDED,
            ErrorCode::InfraDependencies => error_codes::INFRA_DEPENDENCIES,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status every extension object carries (`DefaultStatus` in `pkg/apis/extensions/v1alpha1/types_defaults.go`).
///
/// Controllers write it with a merge patch on the status subresource. Note that `None`/empty fields are *omitted*
/// on encode, so a merge patch built from this type never clears anything: to clear `lastError` on success, the
/// patch must carry an explicit `"lastError": null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultStatus {
    /// Provider-specific status (raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub provider_status: Option<Value>,
    /// The latest observations of the object's health (see the health-check library).
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last error of an operation; gardenlet treats the object as not ready while it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// The last operation; readiness needs `state == Succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
    /// The `metadata.generation` the controller last acted upon; readiness needs it to equal the generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Controller state carried across a control-plane migration (raw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "raw_object_schema")]
    pub state: Option<Value>,
    /// Named references to resources that `state` refers to.
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<NamedResourceReference>,
}

/// A named reference to a resource, used in `status.resources` for migration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedResourceReference {
    /// Name by which `status.state` refers to the resource.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The referenced resource (in the same namespace).
    #[serde(default)]
    pub resource_ref: ResourceRef,
}

/// A cross-version object reference (`autoscaling/v1.CrossVersionObjectReference`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// API version of the referent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Name of the referent.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// `status.lastOperation`: what the controller did last and how it went.
///
/// The CRD requires all five fields and controllers must always set them; decoding still accepts objects that
/// omit some (Gardener's docs and examples do), see the module documentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastOperation {
    /// The operation (Create, Reconcile, Delete, Migrate, Restore, ...).
    #[serde(rename = "type", default, skip_serializing_if = "LastOperationType::is_unset")]
    pub type_: LastOperationType,
    /// How the operation went (Processing, Succeeded, Error, ...).
    #[serde(default, skip_serializing_if = "LastOperationState::is_unset")]
    pub state: LastOperationState,
    /// Progress in percent (0-100).
    #[serde(default, deserialize_with = "null_as_default")]
    pub progress: i32,
    /// Human-readable details.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// When the state last changed; gardenlet compares it with the `gardener.cloud/timestamp` annotation.
    /// An absent value decodes to [`unset_time`] and is not encoded.
    #[serde(default = "unset_time", deserialize_with = "time_or_unset", skip_serializing_if = "is_unset_time")]
    pub last_update_time: Time,
}

/// `status.lastError`: the last error of an operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// Human-readable description of the error.
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    /// The task that caused the error, if any.
    #[serde(rename = "taskID", default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Well-known error codes, see [`error_codes`].
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
    /// When the error was reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

/// A Gardener condition (`gardencorev1beta1.Condition`): unlike Kubernetes' own it has `lastUpdateTime` and
/// `codes`, and its status may be `Progressing`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `ResourcesHealthy` or `SystemComponentsHealthy`.
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    /// True, False, Unknown or Progressing.
    #[serde(default, skip_serializing_if = "ConditionStatus::is_unset")]
    pub status: ConditionStatus,
    /// Machine-readable reason of the last transition.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reason: String,
    /// Human-readable message.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
    /// When the status last changed. An absent value decodes to [`unset_time`] and is not encoded.
    #[serde(default = "unset_time", deserialize_with = "time_or_unset", skip_serializing_if = "is_unset_time")]
    pub last_transition_time: Time,
    /// When the condition was last written. An absent value decodes to [`unset_time`] and is not encoded.
    #[serde(default = "unset_time", deserialize_with = "time_or_unset", skip_serializing_if = "is_unset_time")]
    pub last_update_time: Time,
    /// Well-known error codes, see [`error_codes`].
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<String>,
}

/// The condition of the given type, if present (condition types are unique within a list).
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// The timestamp an absent required time field decodes to (the UNIX epoch); never a real Gardener value.
pub fn unset_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

/// True for [`unset_time`]; such a timestamp is omitted on encode rather than written as 1970.
pub fn is_unset_time(time: &Time) -> bool {
    time.0 == k8s_openapi::jiff::Timestamp::UNIX_EPOCH
}

/// Decodes a required timestamp that may be absent or `null` (Go encodes a zero `metav1.Time` as `null`).
pub(crate) fn time_or_unset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
    Ok(Option::<Time>::deserialize(deserializer)?.unwrap_or_else(unset_time))
}

/// Decodes `null` like an absent field. YAML such as `kubernetes:` followed only by comments (as in Gardener's
/// `example/90-shoot.yaml`) yields `null`, which serde's `default` alone rejects.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Schema of a raw embedded object (`providerConfig`, `providerStatus`, `state`): without
/// `x-kubernetes-preserve-unknown-fields` the apiserver would prune its content, and without `type: object` the
/// schema would not be structural (kube-apiserver 1.20 rejects the CRD).
pub(crate) fn raw_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Helpers shared by the API modules' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use serde::{Serialize, de::DeserializeOwned};
    use serde_json::Value;

    /// Text of a fixture under `test/fixtures/gardener/`.
    pub fn fixture(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/gardener").join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// The documents of a fixture, as JSON values.
    pub fn fixture_documents(name: &str) -> Vec<Value> {
        crate::yaml::from_multi_str(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// `../shared/gardener/<sub>` relative to the crate, when it exists (it does not in every checkout).
    pub fn shared_gardener_dir(sub: &str) -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/gardener").join(sub);
        dir.is_dir().then_some(dir)
    }

    /// Every document of Gardener's real example files with the given `apiVersion` and `kind`, labelled with its
    /// file. Documents of `*-from-docs.yaml` files that are not valid YAML (they contain `...` placeholders) are
    /// skipped; any other unparseable document fails the test.
    ///
    /// When the directory exists, at least `expected` documents must be found, so a renamed file or a broken
    /// filter cannot make the calling test pass vacuously.
    pub fn real_examples(api_version: &str, kind: &str, expected: usize) -> Vec<(String, Value)> {
        let Some(dir) = shared_gardener_dir("examples") else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read examples dir")
            .map(|entry| entry.expect("dir entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
            .collect();
        paths.sort();
        let mut found = Vec::new();
        for path in paths {
            let file = path.file_name().expect("file name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("read example");
            for (index, chunk) in split_documents(&text).into_iter().enumerate() {
                let docs: Vec<Value> = match parse_example(&chunk) {
                    Ok(docs) => docs,
                    Err(_) if file.ends_with("-from-docs.yaml") => continue,
                    Err(e) => panic!("{file} document {index}: {e}"),
                };
                for doc in docs {
                    if doc["apiVersion"] == api_version && doc["kind"] == kind {
                        found.push((format!("{file}#{index}"), doc));
                    }
                }
            }
        }
        assert!(found.len() >= expected, "{kind}: found only {:?}", found.iter().map(|(l, _)| l).collect::<Vec<_>>());
        found
    }

    /// Parses an example document. Not through `crate::yaml`: serde-saphyr's default options buffer at most 96
    /// comment events while looking ahead, and Gardener's `example/90-shoot.yaml` has far more consecutive
    /// comment lines after `kubernetes:` ("too many buffered comments while looking ahead"). These tests are about
    /// the API types, so they read the examples with comment emission off (comments are still validated).
    fn parse_example(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
        let options = serde_saphyr::options! { emit_comments: false };
        let docs: Vec<Option<Value>> = serde_saphyr::from_multiple_with_options(text, options)?;
        Ok(docs.into_iter().flatten().filter(|doc| !doc.is_null()).collect())
    }

    /// Splits a YAML stream at `---` lines, so one broken document does not hide the others.
    fn split_documents(text: &str) -> Vec<String> {
        let mut documents = vec![String::new()];
        for line in text.lines() {
            if line.trim_end() == "---" || line.starts_with("--- ") {
                documents.push(String::new());
            } else if let Some(current) = documents.last_mut() {
                current.push_str(line);
                current.push('\n');
            }
        }
        documents
    }

    /// Decodes `original` as `T`, encodes it again and checks that nothing was lost, no `null` was invented,
    /// and that decoding the encoding gives the same value. Returns the decoded value.
    pub fn assert_round_trip<T>(label: &str, original: &Value) -> T
    where
        T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
    {
        let decoded: T = serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{label}: decode: {e}"));
        let encoded = serde_json::to_value(&decoded).unwrap_or_else(|e| panic!("{label}: encode: {e}"));
        assert_preserved(label, "", original, &encoded);
        assert_no_invented_null(label, "", original, &encoded);
        let again: T = serde_json::from_value(encoded.clone()).unwrap_or_else(|e| panic!("{label}: re-decode: {e}"));
        assert_eq!(decoded, again, "{label}: decode(encode(x)) != x");
        // The YAML path must agree with the JSON path.
        let yaml = crate::yaml::to_string(&decoded).unwrap_or_else(|e| panic!("{label}: YAML encode: {e}"));
        let from_yaml: T = crate::yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{label}: YAML decode: {e}\n{yaml}"));
        assert_eq!(decoded, from_yaml, "{label}: YAML round trip differs");
        decoded
    }

    /// Every non-empty value of `original` is present, equal, in `encoded`. `null`, `[]` and `{}` may be dropped:
    /// they mean the same as an absent field to Gardener.
    pub fn assert_preserved(label: &str, path: &str, original: &Value, encoded: &Value) {
        match (original, encoded) {
            (Value::Object(want), Value::Object(have)) => {
                for (key, value) in want {
                    if is_empty(value) {
                        continue;
                    }
                    let child = format!("{path}/{key}");
                    let Some(got) = have.get(key) else {
                        panic!("{label}: {child} was lost (was {value})");
                    };
                    assert_preserved(label, &child, value, got);
                }
            }
            (Value::Array(want), Value::Array(have)) => {
                assert_eq!(want.len(), have.len(), "{label}: {path}: list length changed");
                for (index, (value, got)) in want.iter().zip(have).enumerate() {
                    assert_preserved(label, &format!("{path}/{index}"), value, got);
                }
            }
            (want, have) => assert_eq!(want, have, "{label}: {path} changed"),
        }
    }

    fn is_empty(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::Array(items) => items.is_empty(),
            Value::Object(map) => map.is_empty(),
            _ => false,
        }
    }

    /// `encoded` has `null` only where `original` had one.
    pub fn assert_no_invented_null(label: &str, path: &str, original: &Value, encoded: &Value) {
        match encoded {
            Value::Null => assert!(original.is_null(), "{label}: {path} encoded as null"),
            Value::Object(map) => {
                for (key, value) in map {
                    let before = original.get(key).unwrap_or(&Value::Bool(false));
                    assert_no_invented_null(label, &format!("{path}/{key}"), before, value);
                }
            }
            Value::Array(items) => {
                for (index, value) in items.iter().enumerate() {
                    let before = original.get(index).unwrap_or(&Value::Bool(false));
                    assert_no_invented_null(label, &format!("{path}/{index}"), before, value);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn open_enums_keep_unknown_values() {
        let op: LastOperation = serde_json::from_value(json!({
            "type": "Hibernate", "state": "Exploded", "progress": 3, "description": "d",
            "lastUpdateTime": "2024-05-01T10:00:00Z"
        }))
        .expect("decode");
        assert_eq!(op.type_, LastOperationType::Other("Hibernate".into()));
        assert_eq!(op.state, LastOperationState::Other("Exploded".into()));
        let encoded = serde_json::to_value(&op).expect("encode");
        assert_eq!(encoded["type"], "Hibernate");
        assert_eq!(encoded["state"], "Exploded");
        assert_eq!(encoded["lastUpdateTime"], "2024-05-01T10:00:00Z");
    }

    #[test]
    fn known_enum_values_map_to_variants() {
        assert_eq!(LastOperationType::from("LiveMigrate"), LastOperationType::LiveMigrate);
        assert_eq!(LastOperationState::from("Succeeded".to_owned()), LastOperationState::Succeeded);
        assert_eq!(ConditionStatus::from("Progressing"), ConditionStatus::Progressing);
        assert_eq!(ConditionStatus::True.to_string(), "True");
        let status: ConditionStatus = serde_json::from_value(json!("False")).expect("decode");
        assert_eq!(status, ConditionStatus::False);
    }

    /// Gardener's docs and the provider-aws example carry `lastOperation: {state: Succeeded}` only.
    #[test]
    fn partial_last_operation_decodes_and_does_not_invent_values() {
        let op: LastOperation = serde_json::from_value(json!({"state": "Succeeded"})).expect("decode");
        assert_eq!(op.state, LastOperationState::Succeeded);
        assert!(op.type_.is_unset());
        assert!(is_unset_time(&op.last_update_time));
        let encoded = serde_json::to_value(&op).expect("encode");
        assert_eq!(encoded, json!({"state": "Succeeded", "progress": 0, "description": ""}));

        let op: LastOperation =
            serde_json::from_value(json!({"type": null, "state": null, "lastUpdateTime": null})).expect("nulls");
        assert!(op.type_.is_unset() && op.state.is_unset());
    }

    #[test]
    fn full_status_round_trips_exactly() {
        let original = json!({
            "providerStatus": {"apiVersion": "x/v1", "kind": "S", "nested": {"a": [1, 2]}},
            "conditions": [{
                "type": "SystemComponentsHealthy", "status": "True", "reason": "HealthCheckSuccessful",
                "message": "ok", "lastTransitionTime": "2024-01-01T00:00:00Z",
                "lastUpdateTime": "2024-01-01T00:01:00Z", "codes": ["ERR_CONFIGURATION_PROBLEM"]
            }],
            "lastError": {"description": "boom", "taskID": "t1", "codes": ["ERR_RETRYABLE_CONFIGURATION_PROBLEM"],
                          "lastUpdateTime": "2024-01-01T00:02:00Z"},
            "lastOperation": {"type": "Reconcile", "state": "Error", "progress": 50, "description": "x: boom",
                              "lastUpdateTime": "2024-01-01T00:02:00Z"},
            "observedGeneration": 7,
            "state": {"anything": true},
            "resources": [{"name": "r", "resourceRef": {"apiVersion": "v1", "kind": "Secret", "name": "s"}}]
        });
        let status: DefaultStatus = test_support::assert_round_trip("status", &original);
        assert_eq!(serde_json::to_value(&status).expect("encode"), original);
        assert_eq!(
            find_condition(&status.conditions, "SystemComponentsHealthy").map(|c| &c.status),
            Some(&ConditionStatus::True)
        );
        assert!(find_condition(&status.conditions, "EveryNodeReady").is_none());
        assert_eq!(status.last_error.as_ref().and_then(|e| e.task_id.as_deref()), Some("t1"));
    }

    #[test]
    fn empty_status_encodes_to_empty_object() {
        assert_eq!(serde_json::to_value(DefaultStatus::default()).expect("encode"), json!({}));
    }
}
