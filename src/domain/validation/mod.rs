//! Pure validation and defaulting of the providerConfig.
//!
//! One module, used by the admission webhook (Shoot CREATE/UPDATE), the reconciler (base configs merged with the
//! Shoot's) and `render`. Every function is pure and total: no I/O, and no input makes it panic. It is split by
//! concern, and everything is re-exported here:
//! - [`field`]: field paths and errors, quoting of user values;
//! - [`provider_config`]: strict decoding of the providerConfig, the rules on `configs` and `workerPools`, the typed
//!   result ([`ValidProviderConfig`]: [`Configs`], [`PoolSelection`]), defaulting;
//! - [`config_body`]: cri-resmgr configuration bodies (sections, `policy.Active`), parsed once into a [`ConfigBody`]
//!   that everything downstream reads;
//! - [`body_cache`]: verdicts on configuration bodies kept by text ([`ConfigBodyCache`]), for the admission webhook,
//!   which sees the same bodies again and again;
//! - [`extra_options`]: the `EXTRA_OPTIONS` line;
//! - [`shoot`]: the rules that need the Shoot (worker pool selection, ratcheting, the defaulting patch).
//!
//! Errors are [`FieldError`]s in the manner of Gardener's `field.ErrorList`: the full field path
//! (`spec.extensions[1].providerConfig.configs["node.worker-1"]`) and a message that starts like apimachinery's
//! (`Invalid value: …`, `Unsupported value: …`, `Required value: …`) and says what is allowed.
//!
//! Limits (all in bytes of UTF-8 text):
//! - [`MAX_CONFIG_BODY_BYTES`] (128 KiB) per configuration body: one body becomes one agent ConfigMap or one file on
//!   the node (inlined into the worker pool's OperatingSystemConfig), and real cri-resmgr configurations are a few
//!   KiB.
//! - [`MAX_CONFIGS_TOTAL_BYTES`] (512 KiB) for all keys and texts of `configs` together: every agent ConfigMap ends
//!   up in one ManagedResource Secret, and a Secret (like a ConfigMap) holds at most 1 MiB; the other half is left
//!   for the agent's DaemonSet, RBAC, the Adjustment CRD and the objects' own metadata.
//! - [`MAX_CONFIG_ENTRIES`] keys in `configs`, so that per-object overhead stays bounded too.
//! - [`MAX_EXTRA_OPTIONS_BYTES`] (4 KiB) for the `EXTRA_OPTIONS` line.

pub mod body_cache;
pub mod config_body;
pub mod extra_options;
pub mod field;
pub mod provider_config;
pub mod shoot;

// The name rules are part of the API's shape (a parsed `ConfigKey` always names a valid ConfigMap); re-exported
// here so that every rule about the providerConfig can be found in this module.
pub use crate::apis::config::{
    MAX_GROUP_NAME_LENGTH, MAX_NODE_NAME_LENGTH, is_dns1123_subdomain, is_valid_group_name, is_valid_node_name,
};
pub use body_cache::{ConfigBodyCache, DEFAULT_CACHED_BODIES, DEFAULT_CACHED_BYTES};
pub use config_body::{
    CONFIG_SECTIONS, ConfigBody, ConfigBodyError, MAX_CONFIG_BODY_BYTES, MAX_ERRORS_PER_BODY, POLICIES, Policy,
    parse_config_body, validate_config_body,
};
pub use extra_options::{
    EXTRA_OPTIONS_PUNCTUATION, FORBIDDEN_FLAGS, MAX_EXTRA_OPTIONS_BYTES, extra_options_tokens, validate_extra_options,
};
pub use field::{FieldError, FieldPath, join_errors};
pub use provider_config::{
    Configs, MAX_CONFIG_ENTRIES, MAX_CONFIGS_TOTAL_BYTES, PoolSelection, ValidProviderConfig,
    decode_and_validate_provider_config, decode_provider_config, default_provider_config, validate_configs,
    validate_configs_size, validate_configs_with, validate_provider_config, validate_provider_config_with,
};
pub use shoot::{default_shoot, validate_shoot, validate_shoot_with, validate_worker_pool_selection};

#[cfg(test)]
mod tests;
