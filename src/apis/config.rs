//! The Shoot's `spec.extensions[type=cri-resmgr-extension].providerConfig`.
//!
//! Two forms are accepted, with the same meaning:
//!
//! ```yaml
//! # The original extension's form (its README): no apiVersion/kind.
//! providerConfig:
//!   configs:
//!     default: |
//!       policy:
//!         Active: topology-aware
//! ```
//!
//! ```yaml
//! # The versioned form; the admission webhook defaults the original form to it.
//! providerConfig:
//!   apiVersion: cri-resmgr.extensions.gardener.cloud/v1alpha1
//!   kind: CriResmgrConfig
//!   configs:
//!     fallback: |
//!       policy:
//!         Active: topology-aware
//!         ReservedResources:
//!           CPU: 750m
//!     default: |
//!       policy:
//!         Active: topology-aware
//!     group.fast: |
//!       policy:
//!         Active: balloons
//!     node.worker-1: |
//!       policy:
//!         Active: static-pools
//!     EXTRA_OPTIONS: "--metrics-interval=10s"
//!   # Optional: the worker pools whose nodes get cri-resmgr. Absent = every pool whose `cri.name` is containerd.
//!   workerPools:
//!   - cpu-worker
//! ```
//!
//! Decoding with error paths and messages, and every rule about the values, live in [`crate::domain::validation`]; this
//! module is only the shape — and the name rules a [`ConfigKey`] obeys, so that the shape depends on nothing above
//! it (the domain imports the API, never the other way round).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::constants::{AGENT_CONFIG_MAP_PREFIX, AGENT_GROUP_LABEL};

/// API group of the versioned providerConfig form.
pub const API_GROUP: &str = "cri-resmgr.extensions.gardener.cloud";
/// `apiVersion` of the versioned providerConfig form.
pub const API_VERSION: &str = "cri-resmgr.extensions.gardener.cloud/v1alpha1";
/// `kind` of the versioned providerConfig form.
pub const KIND: &str = "CriResmgrConfig";

/// JSON field names of [`ProviderConfig`], in the order error messages list them.
pub const PROVIDER_CONFIG_FIELDS: &[&str] = &["apiVersion", "kind", "configs", "workerPools"];

// ---------------------------------------------------------------------------------------------------------------
// Names of nodes and groups in `configs` keys
// ---------------------------------------------------------------------------------------------------------------

/// Longest node name in a `node.<NODE>` key: ConfigMap `cri-resmgr-config.node.<NODE>` must stay a DNS-1123
/// subdomain of at most 253 characters.
pub const MAX_NODE_NAME_LENGTH: usize = 253 - AGENT_CONFIG_MAP_PREFIX.len() - ".node.".len();
/// Longest group name in a `group.<GROUP>` key: a Kubernetes label value.
pub const MAX_GROUP_NAME_LENGTH: usize = 63;

/// One DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, ≤ 63.
fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63 && alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// A DNS-1123 subdomain (dot-separated DNS-1123 labels) of at most `max` characters.
pub fn is_dns1123_subdomain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.split('.').all(is_dns1123_label)
}

/// A node name usable in a `node.<NODE>` key (see [`MAX_NODE_NAME_LENGTH`]).
pub fn is_valid_node_name(name: &str) -> bool {
    is_dns1123_subdomain(name, MAX_NODE_NAME_LENGTH)
}

/// A group name usable in a `group.<GROUP>` key: a non-empty label value that also keeps ConfigMap
/// `cri-resmgr-config.group.<GROUP>` a DNS-1123 subdomain, since the agent looks for exactly that name
/// (so no uppercase letters and no '_', although label values allow them).
pub fn is_valid_group_name(name: &str) -> bool {
    is_dns1123_subdomain(name, MAX_GROUP_NAME_LENGTH)
}

// ---------------------------------------------------------------------------------------------------------------
// The providerConfig
// ---------------------------------------------------------------------------------------------------------------

/// Config type keys of `configs` that carry no name.
pub const KEY_FALLBACK: &str = "fallback";
pub const KEY_DEFAULT: &str = "default";
pub const KEY_FORCE: &str = "force";
pub const KEY_EXTRA_OPTIONS: &str = "EXTRA_OPTIONS";
/// Prefix of node-specific config keys: `node.<node name>`.
pub const KEY_NODE_PREFIX: &str = "node.";
/// Prefix of group config keys: `group.<group name>`.
pub const KEY_GROUP_PREFIX: &str = "group.";

/// The extension's providerConfig, in either form (see the module documentation).
///
/// `configs` keeps the wire form (a string map) because base configs from the ControllerDeployment arrive the same
/// way and are merged key by key; validation (`crate::domain::validation::validate_provider_config`) gives the
/// typed view, with every body parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfig {
    /// [`API_VERSION`] in the versioned form; absent in the original form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// [`KIND`] in the versioned form; absent in the original form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Config type (see [`ConfigKey`]) → text: a cri-resmgr configuration in YAML, or for `EXTRA_OPTIONS` one line
    /// of command-line options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, String>,
    /// Names of the worker pools (`spec.provider.workers[].name`) whose nodes run cri-resmgr.
    /// `None` (absent): every pool whose `cri.name` is containerd. An empty list is rejected by validation, because
    /// "cri-resmgr on no node" is what disabling the extension is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_pools: Option<Vec<String>>,
}

impl ProviderConfig {
    /// True when the versioned form's apiVersion and kind are both set.
    pub fn is_versioned(&self) -> bool {
        self.api_version.is_some() && self.kind.is_some()
    }
}

/// A key of `configs`, ordered by priority from low to high (derived `Ord`), with `EXTRA_OPTIONS` last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKey {
    /// `fallback`: file on the node, used until the agent pushes a config.
    Fallback,
    /// `default`: agent ConfigMap for all nodes.
    Default,
    /// `group.<GROUP>`: agent ConfigMap for nodes labelled `cri-resource-manager.intel.com/group=<GROUP>`.
    Group(String),
    /// `node.<NODE>`: agent ConfigMap for one node.
    Node(String),
    /// `force`: file on the node plus `--force-config`; the agent is ignored.
    Force,
    /// `EXTRA_OPTIONS`: extra command-line options for cri-resmgr (one environment file line).
    ExtraOptions,
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigKey::Fallback => f.write_str(KEY_FALLBACK),
            ConfigKey::Default => f.write_str(KEY_DEFAULT),
            ConfigKey::Force => f.write_str(KEY_FORCE),
            ConfigKey::ExtraOptions => f.write_str(KEY_EXTRA_OPTIONS),
            ConfigKey::Node(name) => write!(f, "{KEY_NODE_PREFIX}{name}"),
            ConfigKey::Group(name) => write!(f, "{KEY_GROUP_PREFIX}{name}"),
        }
    }
}

/// Why a `configs` key is not a [`ConfigKey`]. The Display text is the field error message validation reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigKeyError {
    #[error(
        "Unsupported value: {0:?}: supported keys: \"fallback\", \"default\", \"force\", \"EXTRA_OPTIONS\", \
         \"node.<node name>\", \"group.<group name>\""
    )]
    Unknown(String),
    #[error("Required value: the node name after \"node.\" must not be empty")]
    EmptyNode,
    #[error(
        "Invalid value: {0:?}: a node name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', \
         starting and ending with a letter or digit) of at most {max} characters, so that ConfigMap \
         \"{prefix}.node.<node name>\" is a valid name",
        max = MAX_NODE_NAME_LENGTH,
        prefix = AGENT_CONFIG_MAP_PREFIX
    )]
    InvalidNode(String),
    #[error(
        "Required value: the group name after \"group.\" must not be empty: nodes select the group with label \
         {label}=<group name>",
        label = AGENT_GROUP_LABEL
    )]
    EmptyGroup,
    #[error(
        "Invalid value: {0:?}: a group name must be a label value of at most {max} characters made of lowercase \
         letters, digits, '-' and '.', starting and ending with a letter or digit: nodes select it with label \
         {label}=<group name>, and the agent reads ConfigMap \"{prefix}.group.<group name>\", whose name must be \
         a DNS-1123 subdomain",
        max = MAX_GROUP_NAME_LENGTH,
        label = AGENT_GROUP_LABEL,
        prefix = AGENT_CONFIG_MAP_PREFIX
    )]
    InvalidGroup(String),
}

impl FromStr for ConfigKey {
    type Err = ConfigKeyError;

    /// Parses a `configs` key, checking node and group names too, so that a parsed key is always usable as part of
    /// a ConfigMap name and a label value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            KEY_FALLBACK => return Ok(ConfigKey::Fallback),
            KEY_DEFAULT => return Ok(ConfigKey::Default),
            KEY_FORCE => return Ok(ConfigKey::Force),
            KEY_EXTRA_OPTIONS => return Ok(ConfigKey::ExtraOptions),
            _ => {}
        }
        if let Some(name) = s.strip_prefix(KEY_NODE_PREFIX) {
            return if name.is_empty() {
                Err(ConfigKeyError::EmptyNode)
            } else if is_valid_node_name(name) {
                Ok(ConfigKey::Node(name.to_owned()))
            } else {
                Err(ConfigKeyError::InvalidNode(name.to_owned()))
            };
        }
        if let Some(name) = s.strip_prefix(KEY_GROUP_PREFIX) {
            return if name.is_empty() {
                Err(ConfigKeyError::EmptyGroup)
            } else if is_valid_group_name(name) {
                Ok(ConfigKey::Group(name.to_owned()))
            } else {
                Err(ConfigKeyError::InvalidGroup(name.to_owned()))
            };
        }
        Err(ConfigKeyError::Unknown(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_round_trip_through_display() {
        for key in [
            "fallback",
            "default",
            "force",
            "EXTRA_OPTIONS",
            "node.worker-1",
            "node.ip-10-0-0-1.eu-west-1.compute.internal",
            "group.fast",
            "group.numa.heavy",
        ] {
            let parsed: ConfigKey = key.parse().unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(parsed.to_string(), key);
        }
    }

    #[test]
    fn config_keys_order_by_priority() {
        let mut keys: Vec<ConfigKey> = ["EXTRA_OPTIONS", "force", "node.a", "group.a", "default", "fallback"]
            .iter()
            .map(|k| k.parse().unwrap())
            .collect();
        keys.sort();
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["fallback", "default", "group.a", "node.a", "force", "EXTRA_OPTIONS"]);
    }

    #[test]
    fn config_key_errors() {
        let cases: &[(&str, ConfigKeyError)] = &[
            ("Default", ConfigKeyError::Unknown("Default".into())),
            ("extra_options", ConfigKeyError::Unknown("extra_options".into())),
            ("nodes.a", ConfigKeyError::Unknown("nodes.a".into())),
            ("", ConfigKeyError::Unknown(String::new())),
            ("node.", ConfigKeyError::EmptyNode),
            ("node.Worker_1", ConfigKeyError::InvalidNode("Worker_1".into())),
            ("node.-a", ConfigKeyError::InvalidNode("-a".into())),
            ("node.a..b", ConfigKeyError::InvalidNode("a..b".into())),
            ("group.", ConfigKeyError::EmptyGroup),
            ("group.Fast_CPU", ConfigKeyError::InvalidGroup("Fast_CPU".into())),
            ("group.a.", ConfigKeyError::InvalidGroup("a.".into())),
        ];
        for (key, want) in cases {
            assert_eq!(key.parse::<ConfigKey>().as_ref(), Err(want), "{key:?}");
        }
        let long_node = format!("node.{}", "a".repeat(MAX_NODE_NAME_LENGTH + 1));
        assert!(matches!(long_node.parse::<ConfigKey>(), Err(ConfigKeyError::InvalidNode(_))));
        let long_group = format!("group.{}", "a".repeat(64));
        assert!(matches!(long_group.parse::<ConfigKey>(), Err(ConfigKeyError::InvalidGroup(_))));
        assert!(format!("group.{}", "a".repeat(63)).parse::<ConfigKey>().is_ok());
    }

    #[test]
    fn names() {
        assert_eq!(MAX_NODE_NAME_LENGTH, 230);
        assert!(is_dns1123_subdomain("a", 253));
        assert!(is_dns1123_subdomain("a-1.b-2", 253));
        for bad in ["", "A", "a_b", "-a", "a-", ".a", "a.", "a..b", "a.-b"] {
            assert!(!is_dns1123_subdomain(bad, 253), "{bad:?}");
        }
        assert!(!is_dns1123_subdomain(&"a".repeat(64), 253), "a label has at most 63 characters");
    }

    #[test]
    fn provider_config_serde_is_strict_and_omits_absent_fields() {
        let cfg: ProviderConfig =
            serde_json::from_value(serde_json::json!({"configs": {"default": "policy: {}\n"}})).unwrap();
        assert_eq!(cfg.configs.len(), 1);
        assert!(!cfg.is_versioned());
        assert_eq!(serde_json::to_value(&cfg).unwrap(), serde_json::json!({"configs": {"default": "policy: {}\n"}}));
        let err = serde_json::from_value::<ProviderConfig>(serde_json::json!({"config": {}})).unwrap_err();
        assert!(err.to_string().contains("unknown field `config`"), "{err}");
        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": KIND, "workerPools": ["a"]
        }))
        .unwrap();
        assert!(cfg.is_versioned());
        assert_eq!(cfg.worker_pools, Some(vec!["a".to_owned()]));
    }
}
