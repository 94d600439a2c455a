//! Pure validation and defaulting of the providerConfig.
//!
//! One module, used by the admission webhook (Shoot CREATE/UPDATE), the reconciler (base configs merged with the
//! Shoot's) and `render`. Every function is pure and total: no I/O, and no input makes it panic.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::apis::config::{API_VERSION, ConfigKey, KEY_EXTRA_OPTIONS, KIND, PROVIDER_CONFIG_FIELDS, ProviderConfig};
// The name rules are part of the API's shape (a parsed `ConfigKey` always names a valid ConfigMap); re-exported
// here so that every rule about the providerConfig can be found in this module.
pub use crate::apis::config::{
    MAX_GROUP_NAME_LENGTH, MAX_NODE_NAME_LENGTH, is_dns1123_subdomain, is_valid_group_name, is_valid_node_name,
};
use crate::apis::core::{Shoot, ShootExtension, Worker};
use crate::constants::{CRI_CONTAINERD, EXTENSION_TYPE};

/// Largest configuration body (any `configs` key but `EXTRA_OPTIONS`), in bytes.
pub const MAX_CONFIG_BODY_BYTES: usize = 128 * 1024;
/// Largest sum of the lengths of all keys and texts of `configs`, in bytes (half of a Secret's 1 MiB).
pub const MAX_CONFIGS_TOTAL_BYTES: usize = 512 * 1024;
/// Largest number of keys in `configs`.
pub const MAX_CONFIG_ENTRIES: usize = 64;
/// Largest `EXTRA_OPTIONS` line, in bytes.
pub const MAX_EXTRA_OPTIONS_BYTES: usize = 4096;
/// The top-level sections (modules) of a cri-resmgr configuration; each becomes one key of an agent ConfigMap.
pub const CONFIG_SECTIONS: &[&str] =
    &["policy", "logger", "dump", "instrumentation", "resource-manager", "cpu", "rdt", "blockio"];

/// The values `policy.Active` accepts (cri-resmgr ≥ v0.8; `memtier` is an alias of `topology-aware`).
pub const POLICIES: &[&str] = &[
    "none",
    "topology-aware",
    "memtier",
    "static",
    "static-plus",
    "static-pools",
    "podpools",
    "balloons",
    "dynamic-pools",
];

/// Why one-shot flags (`--reset-policy`, `--version`, …) are forbidden in `EXTRA_OPTIONS`.
const EXITS_INSTEAD_OF_SERVING: &str =
    "it makes cri-resmgr exit instead of serving, which leaves kubelet without a container runtime";

/// cri-resmgr flags `EXTRA_OPTIONS` must not set, and why: the ones the extension sets itself or relies on at their
/// defaults (the node setup, kubelet and the agent are wired to them), and the ones that make cri-resmgr exit.
pub const FORBIDDEN_FLAGS: &[(&str, &str)] = &[
    (
        "fallback-config",
        "the extension sets it to the file it writes from configs.fallback; put the configuration into \
         configs.fallback instead",
    ),
    (
        "force-config",
        "the extension sets it to the file it writes from configs.force (and cri-resmgr refuses it together with \
         --fallback-config); put the configuration into configs.force instead",
    ),
    (
        "relay-socket",
        "the extension points kubelet's container runtime endpoint at cri-resmgr's default relay socket; moving \
         it would cut kubelet off from the container runtime",
    ),
    (
        "runtime-socket",
        "the extension relays to the containerd socket Gardener's node setup creates; another socket would cut \
         the node off from its container runtime",
    ),
    ("image-socket", "the extension relays image requests to the same containerd socket as runtime requests"),
    ("agent-socket", "cri-resmgr-agent, deployed by the extension, talks to cri-resmgr on the default agent socket"),
    (
        "config-socket",
        "cri-resmgr-agent, deployed by the extension, pushes configurations to the default config socket",
    ),
    (
        "relay-dir",
        "the extension removes cri-resmgr's state from the default directory when it is disabled; state elsewhere \
         would be left behind on the node",
    ),
    ("reset-config", EXITS_INSTEAD_OF_SERVING),
    ("reset-policy", EXITS_INSTEAD_OF_SERVING),
    ("print-config", EXITS_INSTEAD_OF_SERVING),
    ("list-policies", EXITS_INSTEAD_OF_SERVING),
    ("version", EXITS_INSTEAD_OF_SERVING),
    ("help", EXITS_INSTEAD_OF_SERVING),
];

/// Punctuation allowed in `EXTRA_OPTIONS` besides ASCII letters, digits and the separating spaces/tabs.
/// None of it means anything to a systemd environment file, to systemd's `ExecStart=` expansion or to a shell.
pub const EXTRA_OPTIONS_PUNCTUATION: &str = "._,:/=@+-";

// ---------------------------------------------------------------------------------------------------------------
// Field paths and errors
// ---------------------------------------------------------------------------------------------------------------

/// A field path in the manner of apimachinery's `field.Path`: `spec.extensions[1].providerConfig.configs["x"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at `root` (e.g. `spec`, or `providerConfig` when no Shoot is around).
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_owned())
    }

    /// `self.name`.
    #[must_use]
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() { FieldPath(name.to_owned()) } else { FieldPath(format!("{}.{name}", self.0)) }
    }

    /// `self[i]`.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// `self["key"]` (quoted and escaped, so any map key is unambiguous).
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key:?}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validation error: where, and what is wrong and allowed. Display: `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: &FieldPath, message: impl Into<String>) -> Self {
        FieldError { path: path.0.clone(), message: message.into() }
    }

    /// `Invalid value: "<value>": <detail>`.
    pub fn invalid(path: &FieldPath, value: &str, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Invalid value: {}: {detail}", quote(value)))
    }

    /// `Invalid value: <detail>`, for values too long or too structured to echo.
    pub fn invalid_type(path: &FieldPath, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Invalid value: {detail}"))
    }

    /// `Unsupported value: "<value>": supported values: "a", "b"`.
    pub fn not_supported(path: &FieldPath, value: &str, supported: &[&str]) -> Self {
        Self::new(path, format!("Unsupported value: {}: supported values: {}", quote(value), quote_list(supported)))
    }

    /// `Required value: <detail>`.
    pub fn required(path: &FieldPath, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Required value: {detail}"))
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(path: &FieldPath, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Forbidden: {detail}"))
    }

    /// `Duplicate value: "<value>"`.
    pub fn duplicate(path: &FieldPath, value: &str) -> Self {
        Self::new(path, format!("Duplicate value: {}", quote(value)))
    }

    /// `Not found: "<value>": <detail>`.
    pub fn not_found(path: &FieldPath, value: &str, detail: impl fmt::Display) -> Self {
        Self::new(path, format!("Not found: {}: {detail}", quote(value)))
    }

    /// `Too long: may not be more than <max> bytes`.
    pub fn too_long(path: &FieldPath, max: usize) -> Self {
        Self::new(path, format!("Too long: may not be more than {max} bytes"))
    }

    /// `Too many: <actual>: must have at most <max> items`.
    pub fn too_many(path: &FieldPath, actual: usize, max: usize) -> Self {
        Self::new(path, format!("Too many: {actual}: must have at most {max} items"))
    }
}

/// All errors in one line, as apimachinery's `ErrorList.ToAggregate().Error()` prints them:
/// one error as is, several as `[a, b]`.
pub fn join_errors(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", parts.join(", ")),
    }
}

/// Longest user value echoed in a message, in characters; longer ones are cut and marked with `...`.
const MAX_ECHOED_CHARS: usize = 256;

/// A user value, quoted and escaped (so newlines and quotes stay visible), cut at [`MAX_ECHOED_CHARS`].
fn quote(value: &str) -> String {
    if value.chars().count() > MAX_ECHOED_CHARS {
        let cut: String = value.chars().take(MAX_ECHOED_CHARS).collect();
        format!("{cut:?}...")
    } else {
        format!("{value:?}")
    }
}

/// `"a", "b", "c"`.
fn quote_list(values: &[&str]) -> String {
    values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
}

/// What a JSON/YAML value is, for "got …" in messages.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// providerConfig: decoding
// ---------------------------------------------------------------------------------------------------------------

/// Decodes the raw providerConfig (JSON from the apiserver) strictly: every field unknown to [`ProviderConfig`], every
/// value of the wrong type and a wrong or half-given apiVersion/kind is an error at its own path below `path`.
/// `null` is the empty configuration. The values themselves are checked by [`validate_provider_config`].
pub fn decode_provider_config(raw: &Value, path: &FieldPath) -> Result<ProviderConfig, Vec<FieldError>> {
    let object = match raw {
        Value::Null => return Ok(ProviderConfig::default()),
        Value::Object(object) => object,
        other => {
            return Err(vec![FieldError::invalid_type(
                path,
                format!(
                    "must be a mapping with the fields {}, got {}",
                    quote_list(PROVIDER_CONFIG_FIELDS),
                    describe(other)
                ),
            )]);
        }
    };

    let mut errors = Vec::new();
    let mut config = ProviderConfig::default();
    for (field, value) in object {
        let field_path = path.child(field);
        match field.as_str() {
            "apiVersion" => config.api_version = decode_string(value, &field_path, &mut errors),
            "kind" => config.kind = decode_string(value, &field_path, &mut errors),
            "configs" => config.configs = decode_configs(value, &field_path, &mut errors),
            "workerPools" => config.worker_pools = decode_worker_pools(value, &field_path, &mut errors),
            _ => errors.push(FieldError::forbidden(
                &field_path,
                format!("unknown field {}: supported fields: {}", quote(field), quote_list(PROVIDER_CONFIG_FIELDS)),
            )),
        }
    }

    // Presence, not value, decides pairing: a wrong-typed kind was reported above and is not "missing".
    let original_form = "or leave out both apiVersion and kind for the original form";
    match (object.contains_key("apiVersion"), object.contains_key("kind")) {
        (true, false) => errors.push(FieldError::required(
            &path.child("kind"),
            format!("kind {} must be given together with apiVersion ({original_form})", quote(KIND)),
        )),
        (false, true) => errors.push(FieldError::required(
            &path.child("apiVersion"),
            format!("apiVersion {} must be given together with kind ({original_form})", quote(API_VERSION)),
        )),
        _ => {}
    }
    if let Some(api_version) = config.api_version.as_deref().filter(|v| *v != API_VERSION) {
        errors.push(FieldError::new(
            &path.child("apiVersion"),
            format!(
                "Unsupported value: {}: supported values: {} ({original_form})",
                quote(api_version),
                quote(API_VERSION)
            ),
        ));
    }
    if let Some(kind) = config.kind.as_deref().filter(|k| *k != KIND) {
        errors.push(FieldError::new(
            &path.child("kind"),
            format!("Unsupported value: {}: supported values: {} ({original_form})", quote(kind), quote(KIND)),
        ));
    }

    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

fn decode_string(value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        other => {
            errors.push(FieldError::invalid_type(path, format!("must be a string, got {}", describe(other))));
            None
        }
    }
}

fn decode_configs(value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    let mut configs = BTreeMap::new();
    match value {
        Value::Null => {}
        Value::Object(object) => {
            for (key, text) in object {
                match text {
                    Value::String(text) => {
                        configs.insert(key.clone(), text.clone());
                    }
                    other => {
                        let what = if key == KEY_EXTRA_OPTIONS {
                            "a string of cri-resmgr command-line options"
                        } else {
                            "a string holding a cri-resmgr configuration in YAML (use a block scalar: \"default: |\")"
                        };
                        errors.push(FieldError::invalid_type(
                            &path.key(key),
                            format!("must be {what}, got {}", describe(other)),
                        ));
                    }
                }
            }
        }
        other => errors.push(FieldError::invalid_type(
            path,
            format!("must be a mapping of config type to configuration text, got {}", describe(other)),
        )),
    }
    configs
}

fn decode_worker_pools(value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>) -> Option<Vec<String>> {
    match value {
        Value::Null => None,
        Value::Array(items) => {
            let mut names = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(name) => names.push(name.clone()),
                    other => errors.push(FieldError::invalid_type(
                        &path.index(i),
                        format!("must be a worker pool name (a string), got {}", describe(other)),
                    )),
                }
            }
            Some(names)
        }
        other => {
            errors.push(FieldError::invalid_type(
                path,
                format!("must be a list of worker pool names, got {}", describe(other)),
            ));
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// providerConfig: rules
// ---------------------------------------------------------------------------------------------------------------

/// Checks the values of a decoded providerConfig (everything that needs no Shoot): the `configs` (see
/// [`validate_configs`]) and the form of `workerPools`.
pub fn validate_provider_config(config: &ProviderConfig, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = validate_configs(&config.configs, &path.child("configs"));
    if let Some(names) = &config.worker_pools {
        errors.extend(validate_worker_pool_names(names, &path.child("workerPools")));
    }
    errors
}

/// [`decode_provider_config`] then [`validate_provider_config`]; `None` (no providerConfig) is the empty config.
pub fn decode_and_validate_provider_config(
    raw: Option<&Value>,
    path: &FieldPath,
) -> Result<ProviderConfig, Vec<FieldError>> {
    let config = decode_provider_config(raw.unwrap_or(&Value::Null), path)?;
    let errors = validate_provider_config(&config, path);
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

/// The form of `workerPools`: at least one name, no empty and no repeated names.
fn validate_worker_pool_names(names: &[String], path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if names.is_empty() {
        errors.push(FieldError::required(
            path,
            "must name at least one worker pool; leave workerPools out to select every pool that runs containerd, \
             or disable the extension",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            errors.push(FieldError::required(&path.index(i), "the worker pool name must not be empty"));
        } else if !seen.insert(name.as_str()) {
            errors.push(FieldError::duplicate(&path.index(i), name));
        }
    }
    errors
}

/// Checks a `configs` map: its size, every key (see [`ConfigKey`]), every configuration body
/// ([`validate_config_body`]) and `EXTRA_OPTIONS` ([`validate_extra_options`]). The reconciler applies it to the
/// merge of the ControllerDeployment's base configs and the Shoot's, which is what actually gets deployed.
pub fn validate_configs(configs: &BTreeMap<String, String>, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if configs.len() > MAX_CONFIG_ENTRIES {
        errors.push(FieldError::too_many(path, configs.len(), MAX_CONFIG_ENTRIES));
    }
    let total: usize = configs.iter().map(|(k, v)| k.len().saturating_add(v.len())).fold(0, usize::saturating_add);
    if total > MAX_CONFIGS_TOTAL_BYTES {
        errors.push(FieldError::new(
            path,
            format!(
                "Too long: keys and texts of all configs together may not be more than {MAX_CONFIGS_TOTAL_BYTES} \
                 bytes (they end up in one Secret, which holds at most 1 MiB), got {total} bytes"
            ),
        ));
    }
    for (key, text) in configs {
        let key_path = path.key(key);
        match key.parse::<ConfigKey>() {
            Err(e) => errors.push(FieldError::new(&key_path, e.to_string())),
            Ok(ConfigKey::ExtraOptions) => errors.extend(validate_extra_options(text, &key_path)),
            Ok(_) => errors.extend(validate_config_body(text, &key_path)),
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration bodies
// ---------------------------------------------------------------------------------------------------------------

/// Why a configuration body cannot be read. The Display text is the field error message validation reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigBodyError {
    #[error(
        "Required value: the configuration must not be empty: cri-resmgr would fall back to its defaults, i.e. \
         policy \"none\""
    )]
    Empty,
    #[error("Too long: may not be more than {MAX_CONFIG_BODY_BYTES} bytes")]
    TooLong,
    /// Not YAML, or a repeated key (the text says which and where).
    #[error("Invalid value: {0}")]
    Yaml(String),
    #[error("Invalid value: must be a YAML mapping of cri-resmgr configuration sections such as \"policy:\", got {0}")]
    NotAMapping(&'static str),
}

/// Reads a cri-resmgr configuration body into its top-level sections, e.g. `{"policy": {...}, "logger": {...}}`,
/// rejecting texts that are too long, not YAML, hold a repeated key anywhere, are empty, or are not a mapping.
/// It does not judge the sections; [`validate_config_body`] does. The reconciler turns each section into one key of
/// an agent ConfigMap.
pub fn parse_config_body(text: &str) -> Result<BTreeMap<String, Value>, ConfigBodyError> {
    if text.len() > MAX_CONFIG_BODY_BYTES {
        return Err(ConfigBodyError::TooLong);
    }
    let value: Value = crate::yaml::from_str_strict(text).map_err(|e| ConfigBodyError::Yaml(e.to_string()))?;
    match value {
        Value::Null => Err(ConfigBodyError::Empty),
        Value::Object(object) if object.is_empty() => Err(ConfigBodyError::Empty),
        Value::Object(object) => Ok(object.into_iter().collect()),
        other => Err(ConfigBodyError::NotAMapping(describe(&other))),
    }
}

/// Checks a configuration body: [`parse_config_body`], then every top-level section is one of
/// [`CONFIG_SECTIONS`] and a mapping, and `policy.Active`, when given, is one of [`POLICIES`].
pub fn validate_config_body(text: &str, path: &FieldPath) -> Vec<FieldError> {
    let sections = match parse_config_body(text) {
        Ok(sections) => sections,
        Err(e) => return vec![FieldError::new(path, e.to_string())],
    };
    let mut errors = Vec::new();
    for (name, section) in &sections {
        if !CONFIG_SECTIONS.contains(&name.as_str()) {
            let mut message = format!(
                "Unsupported value: {}: supported top-level sections: {}",
                quote(name),
                quote_list(CONFIG_SECTIONS)
            );
            if name.split('.').next().is_some_and(|root| CONFIG_SECTIONS.contains(&root)) {
                message.push_str(" (write dotted module paths nested, e.g. \"policy:\" with \"balloons:\" inside)");
            }
            errors.push(FieldError::new(path, message));
            continue;
        }
        if !section.is_object() {
            errors.push(FieldError::invalid_type(
                &path.child(name),
                format!("a section must be a mapping (use {{}} for cri-resmgr's defaults), got {}", describe(section)),
            ));
        }
    }
    if let Some(active) = sections.get("policy").and_then(|policy| policy.get("Active")) {
        errors.extend(validate_active_policy(active, &path.child("policy").child("Active")));
    }
    errors
}

fn validate_active_policy(active: &Value, path: &FieldPath) -> Vec<FieldError> {
    let null_detail = format!(
        "the \"null\" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use \"none\" for no \
         policy, or one of {}",
        quote_list(POLICIES.get(1..).unwrap_or_default())
    );
    match active {
        Value::Null => vec![FieldError::new(path, format!("Invalid value: null: {null_detail}"))],
        Value::String(name) if name == "null" => vec![FieldError::invalid(path, name, null_detail)],
        Value::String(name) if POLICIES.contains(&name.as_str()) => Vec::new(),
        Value::String(name) => vec![FieldError::not_supported(path, name, POLICIES)],
        other => vec![FieldError::invalid_type(
            path,
            format!("must be a policy name, one of {}, got {}", quote_list(POLICIES), describe(other)),
        )],
    }
}

// ---------------------------------------------------------------------------------------------------------------
// EXTRA_OPTIONS
// ---------------------------------------------------------------------------------------------------------------

/// Why `EXTRA_OPTIONS` is written the way it is, for messages.
const EXTRA_OPTIONS_RULE: &str = "EXTRA_OPTIONS becomes one line of cri-resmgr's environment file and is expanded \
     into the ExecStart= of its systemd unit, so it may only hold \"--flag\" and \"--flag=value\" options separated \
     by spaces, with flag names of lowercase letters, digits, '-' and '_' and values of letters, digits and \
     ._,:/=@+-";

fn is_extra_options_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '\t' || EXTRA_OPTIONS_PUNCTUATION.contains(c)
}

fn is_flag_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Splits `EXTRA_OPTIONS` into its options (`--flag` or `--flag=value` tokens); an empty or blank line has none.
/// Call it on validated text; on anything else it still only returns whitespace-separated tokens.
pub fn extra_options_tokens(text: &str) -> Vec<&str> {
    text.split([' ', '\t']).filter(|t| !t.is_empty()).collect()
}

/// Checks `EXTRA_OPTIONS`: at most [`MAX_EXTRA_OPTIONS_BYTES`]; only characters that cannot escape an environment
/// file line or a systemd `ExecStart=` expansion (no newline, quote, `$`, `;`, backslash, backtick, `%`, …);
/// only `--flag` / `--flag=value` tokens; none of the [`FORBIDDEN_FLAGS`].
pub fn validate_extra_options(text: &str, path: &FieldPath) -> Vec<FieldError> {
    if text.len() > MAX_EXTRA_OPTIONS_BYTES {
        return vec![FieldError::too_long(path, MAX_EXTRA_OPTIONS_BYTES)];
    }
    if let Some(c) = text.chars().find(|c| !is_extra_options_char(*c)) {
        return vec![FieldError::invalid(path, text, format!("character {c:?} is not allowed: {EXTRA_OPTIONS_RULE}"))];
    }
    let mut errors = Vec::new();
    for token in extra_options_tokens(text) {
        let flag = token.strip_prefix("--").map(|rest| rest.split_once('=').map_or(rest, |(name, _)| name));
        match flag {
            Some(name) if is_flag_name(name) => {
                if let Some((_, why)) = FORBIDDEN_FLAGS.iter().find(|(forbidden, _)| *forbidden == name) {
                    errors.push(FieldError::forbidden(path, format!("{}: {why}", quote(&format!("--{name}")))));
                }
            }
            _ => errors.push(FieldError::invalid(path, token, format!("not an option: {EXTRA_OPTIONS_RULE}"))),
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------------------------
// Defaulting
// ---------------------------------------------------------------------------------------------------------------

/// The defaulted providerConfig, or `None` when nothing is to change. Defaulting does only what is safe and visible:
/// it sets apiVersion and kind of the versioned form when both are absent (an absent providerConfig becomes one with
/// just those two). It never adds configs or worker pools, and leaves alone what validation will reject (a
/// providerConfig that is not a mapping, or one with only one of apiVersion/kind). Applying it twice changes nothing.
pub fn default_provider_config(raw: Option<&Value>) -> Option<Value> {
    let mut object = match raw {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(object)) => object.clone(),
        Some(_) => return None,
    };
    if object.contains_key("apiVersion") || object.contains_key("kind") {
        return None;
    }
    object.insert("apiVersion".to_owned(), Value::String(API_VERSION.to_owned()));
    object.insert("kind".to_owned(), Value::String(KIND.to_owned()));
    Some(Value::Object(object))
}

// ---------------------------------------------------------------------------------------------------------------
// Worker pools and the Shoot
// ---------------------------------------------------------------------------------------------------------------

/// True for an entry of `spec.extensions` that is ours and not disabled.
fn is_enabled_entry(extension: &ShootExtension) -> bool {
    extension.type_ == EXTENSION_TYPE && extension.disabled != Some(true)
}

/// True when cri-resmgr runs on the nodes of `worker`: the pool runs containerd and is named in `workerPools`, or
/// `workerPools` is absent. Pools without `cri` count as not running containerd (gardener-apiserver defaults `cri` to
/// containerd, so persisted Shoots always have it; only hand-written Shoots given to `render` can lack it).
pub fn is_worker_pool_selected(config: &ProviderConfig, worker: &Worker) -> bool {
    worker.cri_name() == Some(CRI_CONTAINERD)
        && config.worker_pools.as_ref().is_none_or(|names| names.contains(&worker.name))
}

/// The worker pools whose nodes run cri-resmgr (see [`is_worker_pool_selected`]), in the Shoot's order. A selected
/// pool that does not run containerd is left out even if validation was skipped: cri-resmgr cannot sit in front of
/// another runtime, and installing it there would break the pool's kubelet.
pub fn selected_worker_pools<'a>(config: &ProviderConfig, workers: &'a [Worker]) -> Vec<&'a Worker> {
    workers.iter().filter(|worker| is_worker_pool_selected(config, worker)).collect()
}

/// Checks `workerPools` against the Shoot's pools: every named pool exists in `spec.provider.workers` and runs
/// containerd. `path` is the path of `workerPools`.
///
/// Without `workerPools`, nothing is checked, even when no pool runs containerd: the extension may be enabled for
/// every Shoot by the operator (ControllerRegistration `globallyEnabled`/`autoEnable`), and rejecting would block
/// Shoots whose owners never asked for cri-resmgr. Such a Shoot simply gets cri-resmgr on no node (the agent and its
/// ConfigMaps are harmless there). With an explicit selection the owner asked for specific pools, so every mistake
/// in it is an error.
pub fn validate_worker_pool_selection(
    config: &ProviderConfig,
    workers: &[Worker],
    path: &FieldPath,
) -> Vec<FieldError> {
    let Some(names) = &config.worker_pools else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        // Empty and repeated names are reported by `validate_provider_config`.
        if name.is_empty() || !seen.insert(name.as_str()) {
            continue;
        }
        let selected_at = path.index(i);
        let Some((j, worker)) = workers.iter().enumerate().find(|(_, worker)| worker.name == *name) else {
            let existing: Vec<&str> = workers.iter().map(|worker| worker.name.as_str()).collect();
            let detail = if existing.is_empty() {
                "the shoot has no worker pools in spec.provider.workers".to_owned()
            } else {
                format!("no such pool in spec.provider.workers; pools: {}", quote_list(&existing))
            };
            errors.push(FieldError::not_found(&selected_at, name, detail));
            continue;
        };
        let cri_path = FieldPath::new("spec").child("provider").child("workers").index(j).child("cri").child("name");
        match worker.cri_name() {
            Some(CRI_CONTAINERD) => {}
            Some(other) => errors.push(FieldError::new(
                &cri_path,
                format!(
                    "Unsupported value: {}: worker pool {} is selected in {selected_at}, and cri-resmgr only works \
                     with {}",
                    quote(other),
                    quote(name),
                    quote(CRI_CONTAINERD)
                ),
            )),
            None => errors.push(FieldError::required(
                &cri_path,
                format!(
                    "worker pool {} is selected in {selected_at}, and cri-resmgr only works with {}",
                    quote(name),
                    quote(CRI_CONTAINERD)
                ),
            )),
        }
    }
    errors
}

/// The facts about worker pools that [`validate_worker_pool_selection`] judges for this providerConfig: each name
/// listed in `workerPools` with the pool's CRI (`None` when there is no such pool). Read leniently from the raw
/// providerConfig, because ratcheting must also work for configs that do not decode.
fn selection_facts<'a>(raw: Option<&'a Value>, workers: &'a [Worker]) -> Vec<(&'a str, Option<Option<&'a str>>)> {
    raw.and_then(|raw| raw.get("workerPools"))
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|name| (name, workers.iter().find(|worker| worker.name == name).map(Worker::cri_name)))
                .collect()
        })
        .unwrap_or_default()
}

/// Validates the Shoot's entries of our extension type on CREATE (`old` is `None`) and UPDATE.
///
/// - Disabled entries (`disabled: true`) are not validated: nothing of them is deployed.
/// - Ratcheting: on UPDATE, an entry whose providerConfig equals that of the old Shoot's enabled entry, with the
///   same facts about the selected worker pools, is not judged again ("validate only when the spec changed", as
///   Gardener's admission guide asks), so a Shoot accepted by an older, more lenient version of these rules can
///   still be updated in other respects.
/// - Otherwise the providerConfig is decoded and validated with paths `spec.extensions[i].providerConfig…`, and
///   `workerPools` is checked against `spec.provider.workers` ([`validate_worker_pool_selection`]).
pub fn validate_shoot(new: &Shoot, old: Option<&Shoot>) -> Vec<FieldError> {
    let workers = new.spec.provider.workers.as_slice();
    let mut errors = Vec::new();
    for (i, extension) in new.spec.extensions.iter().enumerate() {
        if !is_enabled_entry(extension) {
            continue;
        }
        let raw = extension.provider_config.as_ref();
        let unchanged = old.is_some_and(|old| {
            let old_workers = old.spec.provider.workers.as_slice();
            old.spec.enabled_extension(EXTENSION_TYPE).is_some_and(|(_, old_extension)| {
                old_extension.provider_config.as_ref() == raw
                    && selection_facts(raw, workers) == selection_facts(raw, old_workers)
            })
        });
        if unchanged {
            continue;
        }
        let path = FieldPath::new("spec").child("extensions").index(i).child("providerConfig");
        match decode_provider_config(raw.unwrap_or(&Value::Null), &path) {
            Err(decode_errors) => errors.extend(decode_errors),
            Ok(config) => {
                errors.extend(validate_provider_config(&config, &path));
                errors.extend(validate_worker_pool_selection(&config, workers, &path.child("workerPools")));
            }
        }
    }
    errors
}

/// The JSON patch the mutating admission webhook returns for a Shoot, or `None` when nothing is to change: for each
/// enabled entry of our type, [`default_provider_config`] as precise `add` operations (the whole providerConfig
/// when it is absent or null, else just `apiVersion` and `kind`).
pub fn default_shoot(shoot: &Shoot) -> Option<json_patch::Patch> {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};

    let mut operations = Vec::new();
    for (i, extension) in shoot.spec.extensions.iter().enumerate() {
        if !is_enabled_entry(extension) {
            continue;
        }
        let raw = extension.provider_config.as_ref();
        let Some(defaulted) = default_provider_config(raw) else {
            continue;
        };
        let index = i.to_string();
        let base = ["spec", "extensions", index.as_str(), "providerConfig"];
        match (raw, defaulted) {
            (Some(Value::Object(_)), Value::Object(mut fields)) => {
                for field in ["apiVersion", "kind"] {
                    if let Some(value) = fields.remove(field) {
                        let path = PointerBuf::from_tokens(base.iter().copied().chain([field]));
                        operations.push(PatchOperation::Add(AddOperation { path, value }));
                    }
                }
            }
            // Absent or null: `add` creates the member or replaces the null.
            (_, value) => {
                let path = PointerBuf::from_tokens(base);
                operations.push(PatchOperation::Add(AddOperation { path, value }));
            }
        }
    }
    if operations.is_empty() { None } else { Some(json_patch::Patch(operations)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The fallback config of the original README (its `ControllerDeployment` example).
    const README_FALLBACK: &str = "### This is default policy from CRI-resource-manage fallback.cfg.sample
policy:
  Active: topology-aware
  ReservedResources:
    CPU: 750m
logger:
  Debug: resource-manager,cache,policy,resource-control
dump:
  Config: off:.*,full:((Create)|(Remove)|(Run)|(Update)|(Start)|(Stop)).*
";

    /// cri-resmgr's sample ConfigMap contents (`sample-configs/cri-resmgr-configmap.example.yaml`) as one body.
    const SAMPLE_DEFAULT: &str = "policy:
  Active: topology-aware
  ReservedResources:
    cpu: cpuset:0-1
  topology-aware:
    PinCPU: true
logger:
  Debug: resource-manager,cache
";

    fn root() -> FieldPath {
        FieldPath::new("spec").child("extensions").index(1).child("providerConfig")
    }

    /// Decode + validate one providerConfig under [`root`], rendering errors as `path: message` lines.
    fn check(raw: Value) -> Vec<String> {
        match decode_and_validate_provider_config(Some(&raw), &root()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn configs(key: &str, text: &str) -> Value {
        json!({ "configs": { key: text } })
    }

    const P: &str = "spec.extensions[1].providerConfig";

    #[test]
    fn field_path_builder() {
        let p = FieldPath::new("spec").child("extensions").index(1).child("providerConfig").child("configs");
        assert_eq!(p.key("node.worker-1").as_str(), r#"spec.extensions[1].providerConfig.configs["node.worker-1"]"#);
        assert_eq!(p.key("a\"b\n").as_str(), r#"spec.extensions[1].providerConfig.configs["a\"b\n"]"#);
        assert_eq!(FieldPath::new("").child("a").to_string(), "a");
        let e = FieldError::required(&p, "x");
        assert_eq!(e.to_string(), "spec.extensions[1].providerConfig.configs: Required value: x");
        assert_eq!(join_errors(std::slice::from_ref(&e)), e.to_string());
        assert_eq!(join_errors(&[e.clone(), e.clone()]), format!("[{e}, {e}]"));
    }

    #[test]
    fn accepts_the_original_readme_form() {
        assert_eq!(check(json!({ "configs": { "fallback": README_FALLBACK, "default": README_FALLBACK } })), [""; 0]);
    }

    #[test]
    fn accepts_the_versioned_form_with_every_key() {
        let raw = json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "configs": {
                "fallback": README_FALLBACK,
                "default": SAMPLE_DEFAULT,
                "force": "policy:\n  Active: balloons\n  balloons:\n    BalloonTypes:\n    - Name: a\n",
                "group.fast": "policy:\n  Active: static-pools\n",
                "node.worker-1": "policy:\n  Active: none\ninstrumentation:\n  HTTPEndpoint: :8891\n",
                "EXTRA_OPTIONS": "--metrics-interval=10s  --disable-policy-switch\t--log_file=/var/log/cri_resmgr.log",
            },
            "workerPools": ["a", "b"],
        });
        assert_eq!(check(raw.clone()), [""; 0]);
        let config = decode_and_validate_provider_config(Some(&raw), &root()).unwrap();
        assert!(config.is_versioned());
        assert_eq!(config.worker_pools.as_deref(), Some(&["a".to_owned(), "b".to_owned()][..]));
        assert_eq!(config.typed_configs().unwrap().len(), 6);
        // No providerConfig at all is the empty configuration.
        assert_eq!(decode_and_validate_provider_config(None, &root()), Ok(ProviderConfig::default()));
        assert_eq!(check(Value::Null), [""; 0]);
        // Every policy is accepted.
        for policy in POLICIES {
            assert_eq!(check(configs("default", &format!("policy:\n  Active: {policy}\n"))), [""; 0], "{policy}");
        }
    }

    #[test]
    fn rejects_with_exact_messages() {
        let active_list = r#""topology-aware", "memtier", "static", "static-plus", "static-pools", "podpools", "balloons", "dynamic-pools""#;
        let sections = r#""policy", "logger", "dump", "instrumentation", "resource-manager", "cpu", "rdt", "blockio""#;
        let rule = "EXTRA_OPTIONS becomes one line of cri-resmgr's environment file and is expanded into the \
                    ExecStart= of its systemd unit, so it may only hold \"--flag\" and \"--flag=value\" options \
                    separated by spaces, with flag names of lowercase letters, digits, '-' and '_' and values of \
                    letters, digits and ._,:/=@+-";
        let cases: Vec<(&str, Value, Vec<String>)> = vec![
            (
                "invalid key",
                configs("nodes.worker-1", SAMPLE_DEFAULT),
                vec![format!(
                    r#"{P}.configs["nodes.worker-1"]: Unsupported value: "nodes.worker-1": supported keys: "fallback", "default", "force", "EXTRA_OPTIONS", "node.<node name>", "group.<group name>""#
                )],
            ),
            (
                "node name not DNS-1123",
                configs("node.Worker_1", SAMPLE_DEFAULT),
                vec![format!(
                    r#"{P}.configs["node.Worker_1"]: Invalid value: "Worker_1": a node name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit) of at most 230 characters, so that ConfigMap "cri-resmgr-config.node.<node name>" is a valid name"#
                )],
            ),
            (
                "empty node name",
                configs("node.", SAMPLE_DEFAULT),
                vec![format!(r#"{P}.configs["node."]: Required value: the node name after "node." must not be empty"#)],
            ),
            (
                "empty group",
                configs("group.", SAMPLE_DEFAULT),
                vec![format!(
                    r#"{P}.configs["group."]: Required value: the group name after "group." must not be empty: nodes select the group with label cri-resource-manager.intel.com/group=<group name>"#
                )],
            ),
            (
                "group name not a lowercase label value",
                configs("group.Fast_CPU", SAMPLE_DEFAULT),
                vec![format!(
                    r#"{P}.configs["group.Fast_CPU"]: Invalid value: "Fast_CPU": a group name must be a label value of at most 63 characters made of lowercase letters, digits, '-' and '.', starting and ending with a letter or digit: nodes select it with label cri-resource-manager.intel.com/group=<group name>, and the agent reads ConfigMap "cri-resmgr-config.group.<group name>", whose name must be a DNS-1123 subdomain"#
                )],
            ),
            (
                "unknown top-level section",
                configs("default", "policy:\n  Active: none\npolcy:\n  Active: none\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Unsupported value: "polcy": supported top-level sections: {sections}"#
                )],
            ),
            (
                "dotted top-level section",
                configs("default", "policy.balloons:\n  PinCPU: true\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Unsupported value: "policy.balloons": supported top-level sections: {sections} (write dotted module paths nested, e.g. "policy:" with "balloons:" inside)"#
                )],
            ),
            (
                "section not a mapping",
                configs("default", "logger: resource-manager\n"),
                vec![format!(
                    r#"{P}.configs["default"].logger: Invalid value: a section must be a mapping (use {{}} for cri-resmgr's defaults), got a string"#
                )],
            ),
            (
                "policy.Active null",
                configs("default", "policy:\n  Active: null\n"),
                vec![format!(
                    r#"{P}.configs["default"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
                )],
            ),
            (
                "policy.Active empty (null in YAML)",
                configs("force", "policy:\n  Active:\n"),
                vec![format!(
                    r#"{P}.configs["force"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
                )],
            ),
            (
                "policy.Active \"null\"",
                configs("fallback", "policy:\n  Active: \"null\"\n"),
                vec![format!(
                    r#"{P}.configs["fallback"].policy.Active: Invalid value: "null": the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
                )],
            ),
            (
                "unknown policy",
                configs("group.fast", "policy:\n  Active: topology-awareness\n"),
                vec![format!(
                    r#"{P}.configs["group.fast"].policy.Active: Unsupported value: "topology-awareness": supported values: "none", {active_list}"#
                )],
            ),
            (
                "policy.Active not a string",
                configs("default", "policy:\n  Active: [none]\n"),
                vec![format!(
                    r#"{P}.configs["default"].policy.Active: Invalid value: must be a policy name, one of "none", {active_list}, got a list"#
                )],
            ),
            (
                "body not a mapping",
                configs("default", "- policy\n- logger\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Invalid value: must be a YAML mapping of cri-resmgr configuration sections such as "policy:", got a list"#
                )],
            ),
            (
                "body a plain string",
                configs("default", "topology-aware"),
                vec![format!(
                    r#"{P}.configs["default"]: Invalid value: must be a YAML mapping of cri-resmgr configuration sections such as "policy:", got a string"#
                )],
            ),
            (
                "empty body",
                configs("default", "# nothing\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Required value: the configuration must not be empty: cri-resmgr would fall back to its defaults, i.e. policy "none""#
                )],
            ),
            (
                "duplicate top-level key in body",
                configs("default", "policy:\n  Active: none\nlogger:\n  Debug: cache\npolicy:\n  Active: static\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Invalid value: invalid YAML: duplicate key "policy" at line 5, column 1: keys of a YAML mapping must be unique"#
                )],
            ),
            (
                "duplicate nested key in body",
                configs("default", "policy:\n  Active: none\n  Active: static\n"),
                vec![format!(
                    r#"{P}.configs["default"]: Invalid value: invalid YAML: duplicate key "Active" at line 3, column 3: keys of a YAML mapping must be unique"#
                )],
            ),
            (
                "oversize body",
                configs("default", &format!("policy:\n  Active: none\n#{}\n", "x".repeat(MAX_CONFIG_BODY_BYTES))),
                vec![format!(r#"{P}.configs["default"]: Too long: may not be more than 131072 bytes"#)],
            ),
            (
                "EXTRA_OPTIONS with newline",
                configs("EXTRA_OPTIONS", "--metrics-interval=10s\nLD_PRELOAD=/tmp/x.so"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--metrics-interval=10s\nLD_PRELOAD=/tmp/x.so": character '\n' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with quote",
                configs("EXTRA_OPTIONS", "--metrics-interval=\"10s\""),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--metrics-interval=\"10s\"": character '"' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with $",
                configs("EXTRA_OPTIONS", "--host-root=$HOME"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=$HOME": character '$' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with ;",
                configs("EXTRA_OPTIONS", "--disable-ui;reboot"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--disable-ui;reboot": character ';' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with backtick",
                configs("EXTRA_OPTIONS", "--host-root=`id`"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=`id`": character '`' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with backslash",
                configs("EXTRA_OPTIONS", "--disable-ui \\"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--disable-ui \\": character '\\' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with a systemd specifier",
                configs("EXTRA_OPTIONS", "--host-root=%h"),
                vec![format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=%h": character '%' is not allowed: {rule}"#
                )],
            ),
            (
                "EXTRA_OPTIONS with non-flag tokens",
                configs("EXTRA_OPTIONS", "--metrics-interval 10s -v=2 --Debug"),
                vec![
                    format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "10s": not an option: {rule}"#),
                    format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "-v=2": not an option: {rule}"#),
                    format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--Debug": not an option: {rule}"#),
                ],
            ),
            (
                "EXTRA_OPTIONS with owned flags",
                configs("EXTRA_OPTIONS", "--force-config=/tmp/x.cfg --fallback-config /etc/x --relay-socket=/x.sock"),
                vec![
                    format!(
                        r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--force-config": the extension sets it to the file it writes from configs.force (and cri-resmgr refuses it together with --fallback-config); put the configuration into configs.force instead"#
                    ),
                    format!(
                        r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--fallback-config": the extension sets it to the file it writes from configs.fallback; put the configuration into configs.fallback instead"#
                    ),
                    format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "/etc/x": not an option: {rule}"#),
                    format!(
                        r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--relay-socket": the extension points kubelet's container runtime endpoint at cri-resmgr's default relay socket; moving it would cut kubelet off from the container runtime"#
                    ),
                ],
            ),
            (
                "EXTRA_OPTIONS too long",
                configs("EXTRA_OPTIONS", &"--disable-ui ".repeat(400)),
                vec![format!(r#"{P}.configs["EXTRA_OPTIONS"]: Too long: may not be more than 4096 bytes"#)],
            ),
            (
                "config text not a string",
                json!({ "configs": { "default": { "policy": { "Active": "none" } }, "EXTRA_OPTIONS": ["--x"] } }),
                vec![
                    format!(
                        r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: must be a string of cri-resmgr command-line options, got a list"#
                    ),
                    format!(
                        r#"{P}.configs["default"]: Invalid value: must be a string holding a cri-resmgr configuration in YAML (use a block scalar: "default: |"), got a mapping"#
                    ),
                ],
            ),
            (
                "unknown providerConfig field",
                json!({ "configs": {}, "workerPool": ["a"] }),
                vec![format!(
                    r#"{P}.workerPool: Forbidden: unknown field "workerPool": supported fields: "apiVersion", "kind", "configs", "workerPools""#
                )],
            ),
            (
                "providerConfig not a mapping",
                json!("configs"),
                vec![format!(
                    r#"{P}: Invalid value: must be a mapping with the fields "apiVersion", "kind", "configs", "workerPools", got a string"#
                )],
            ),
            (
                "wrong apiVersion",
                json!({ "apiVersion": "cri-resmgr.extensions.gardener.cloud/v1", "kind": KIND }),
                vec![format!(
                    r#"{P}.apiVersion: Unsupported value: "cri-resmgr.extensions.gardener.cloud/v1": supported values: "cri-resmgr.extensions.gardener.cloud/v1alpha1" (or leave out both apiVersion and kind for the original form)"#
                )],
            ),
            (
                "wrong kind",
                json!({ "apiVersion": API_VERSION, "kind": "CriResMgrConfig" }),
                vec![format!(
                    r#"{P}.kind: Unsupported value: "CriResMgrConfig": supported values: "CriResmgrConfig" (or leave out both apiVersion and kind for the original form)"#
                )],
            ),
            (
                "apiVersion without kind",
                json!({ "apiVersion": API_VERSION }),
                vec![format!(
                    r#"{P}.kind: Required value: kind "CriResmgrConfig" must be given together with apiVersion (or leave out both apiVersion and kind for the original form)"#
                )],
            ),
            (
                "kind not a string",
                json!({ "apiVersion": API_VERSION, "kind": 1 }),
                vec![format!(r#"{P}.kind: Invalid value: must be a string, got a number"#)],
            ),
            (
                "workerPools empty",
                json!({ "workerPools": [] }),
                vec![format!(
                    r#"{P}.workerPools: Required value: must name at least one worker pool; leave workerPools out to select every pool that runs containerd, or disable the extension"#
                )],
            ),
            (
                "workerPools with duplicate, empty and non-string names",
                json!({ "workerPools": ["a", "", "a", 3] }),
                vec![format!(
                    r#"{P}.workerPools[3]: Invalid value: must be a worker pool name (a string), got a number"#
                )],
            ),
            (
                "workerPools with duplicate and empty names",
                json!({ "workerPools": ["a", "", "a"] }),
                vec![
                    format!(r#"{P}.workerPools[1]: Required value: the worker pool name must not be empty"#),
                    format!(r#"{P}.workerPools[2]: Duplicate value: "a""#),
                ],
            ),
        ];
        for (name, raw, want) in cases {
            assert_eq!(check(raw), want, "case {name:?}");
        }
    }

    #[test]
    fn invalid_yaml_names_the_position() {
        assert_eq!(
            check(configs("default", "policy:\n  Active: [none\n")),
            [format!(
                r#"{P}.configs["default"]: Invalid value: invalid YAML: unclosed bracket '[' at line 2, column 11"#
            )]
        );
    }

    #[test]
    fn total_size_and_entry_count_are_limited() {
        // 5 bodies just under the per-body limit: each fine, together over the total.
        let body = format!("policy:\n  Active: none\n#{}\n", "x".repeat(MAX_CONFIG_BODY_BYTES - 40));
        let mut map = serde_json::Map::new();
        for i in 0..5 {
            map.insert(format!("node.n{i}"), Value::String(body.clone()));
        }
        let total: usize = map.iter().map(|(k, v)| k.len() + v.as_str().unwrap().len()).sum();
        assert_eq!(
            check(json!({ "configs": map })),
            [format!(
                "{P}.configs: Too long: keys and texts of all configs together may not be more than 524288 bytes \
                 (they end up in one Secret, which holds at most 1 MiB), got {total} bytes"
            )]
        );
        let mut map = serde_json::Map::new();
        for i in 0..=MAX_CONFIG_ENTRIES {
            map.insert(format!("node.n{i}"), Value::String("policy:\n  Active: none\n".into()));
        }
        assert_eq!(
            check(json!({ "configs": map })),
            [format!("{P}.configs: Too many: 65: must have at most 64 items")]
        );
    }

    #[test]
    fn alias_bombs_are_rejected_not_expanded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        text.push_str("policy:\n  Active: none\n");
        let errors = check(configs("default", &text));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with(&format!(r#"{P}.configs["default"]: Invalid value: "#)), "{errors:?}");
    }

    #[test]
    fn parse_config_body_gives_the_sections() {
        let sections = parse_config_body(README_FALLBACK).unwrap();
        assert_eq!(sections.keys().collect::<Vec<_>>(), ["dump", "logger", "policy"]);
        assert_eq!(sections["policy"], json!({ "Active": "topology-aware", "ReservedResources": { "CPU": "750m" } }));
        assert_eq!(
            sections["dump"],
            json!({ "Config": "off:.*,full:((Create)|(Remove)|(Run)|(Update)|(Start)|(Stop)).*" })
        );
        assert_eq!(parse_config_body("{}"), Err(ConfigBodyError::Empty));
        assert_eq!(parse_config_body(""), Err(ConfigBodyError::Empty));
        assert_eq!(parse_config_body("3"), Err(ConfigBodyError::NotAMapping("a number")));
    }

    #[test]
    fn extra_options_tokens_split_on_blanks() {
        assert_eq!(extra_options_tokens(" --a  --b=c\t--d "), ["--a", "--b=c", "--d"]);
        assert!(extra_options_tokens("").is_empty());
        assert!(validate_extra_options("", &root()).is_empty());
        assert!(validate_extra_options("   ", &root()).is_empty());
        for flag in ["--reset-policy", "--version", "--config-socket=disabled", "--relay-dir=/tmp"] {
            let errors = validate_extra_options(flag, &root());
            assert_eq!(errors.len(), 1, "{flag}");
            assert!(errors[0].message.starts_with("Forbidden: "), "{errors:?}");
        }
    }

    #[test]
    fn defaulting_sets_api_version_and_kind_and_is_idempotent() {
        let versioned = json!({ "apiVersion": API_VERSION, "kind": KIND });
        assert_eq!(default_provider_config(None), Some(versioned.clone()));
        assert_eq!(default_provider_config(Some(&Value::Null)), Some(versioned.clone()));
        let original = json!({ "configs": { "default": README_FALLBACK }, "workerPools": ["a"] });
        let defaulted = default_provider_config(Some(&original)).unwrap();
        assert_eq!(
            defaulted,
            json!({
                "apiVersion": API_VERSION,
                "kind": KIND,
                "configs": { "default": README_FALLBACK },
                "workerPools": ["a"],
            })
        );
        // Idempotent: a defaulted config needs no more defaulting, and stays valid.
        assert_eq!(default_provider_config(Some(&defaulted)), None);
        assert_eq!(default_provider_config(Some(&versioned)), None);
        assert_eq!(check(defaulted), [""; 0]);
        // What validation rejects is left alone.
        assert_eq!(default_provider_config(Some(&json!({ "kind": KIND }))), None);
        assert_eq!(default_provider_config(Some(&json!({ "apiVersion": "x/v1" }))), None);
        assert_eq!(default_provider_config(Some(&json!(["configs"]))), None);
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = [
            json!(null),
            json!(true),
            json!(1.5),
            json!([null]),
            json!({ "configs": null, "workerPools": null }),
            json!({ "configs": { "default": "\u{0}" } }),
            json!({ "configs": { "default": "? [a]\n: b\n" } }),
            json!({ "configs": { "default": "policy: !!binary aGVsbG8=\n" } }),
            json!({ "configs": { "default": "policy: {Active: .inf}\n" } }),
            json!({ "configs": { "default": "&a [*a]" } }),
            json!({ "configs": { "EXTRA_OPTIONS": "--=x -- ---a --é" } }),
            json!({ "configs": { "ü.x": "x", "node.ü": "policy: {}" } }),
        ];
        for raw in odd {
            let _ = check(raw.clone());
            let _ = default_provider_config(Some(&raw));
        }
    }

    // --- Shoot-level rules -------------------------------------------------------------------------------------

    fn shoot(extensions: Value, workers: Value) -> Shoot {
        let spec = serde_json::from_value(json!({
            "extensions": extensions,
            "provider": { "type": "local", "workers": workers },
        }))
        .unwrap();
        Shoot::new("local", spec)
    }

    fn containerd_pools() -> Value {
        json!([
            { "name": "cpu", "cri": { "name": "containerd" }, "machine": { "type": "m5.large" } },
            { "name": "gpu", "cri": { "name": "containerd" }, "machine": { "type": "p3.large" } },
        ])
    }

    fn entry(provider_config: Value) -> Value {
        json!([
            { "type": "shoot-dns-service" },
            { "type": EXTENSION_TYPE, "providerConfig": provider_config },
        ])
    }

    fn shoot_errors(new: &Shoot, old: Option<&Shoot>) -> Vec<String> {
        validate_shoot(new, old).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn shoot_with_valid_entries_passes() {
        let readme = shoot(entry(json!({ "configs": { "fallback": README_FALLBACK } })), containerd_pools());
        assert_eq!(shoot_errors(&readme, None), [""; 0]);
        let versioned = shoot(
            entry(json!({ "apiVersion": API_VERSION, "kind": KIND, "configs": { "default": SAMPLE_DEFAULT },
                          "workerPools": ["gpu"] })),
            containerd_pools(),
        );
        assert_eq!(shoot_errors(&versioned, None), [""; 0]);
        // No providerConfig at all.
        let bare = shoot(json!([{ "type": EXTENSION_TYPE }]), containerd_pools());
        assert_eq!(shoot_errors(&bare, None), [""; 0]);
        // Other extension types are not ours to judge.
        let other = shoot(json!([{ "type": "x", "providerConfig": { "anything": 1 } }]), json!([]));
        assert_eq!(shoot_errors(&other, None), [""; 0]);
    }

    #[test]
    fn shoot_rules_with_exact_messages() {
        let cases: Vec<(&str, Shoot, Vec<&str>)> = vec![
            (
                "providerConfig errors carry the entry's index",
                shoot(entry(json!({ "config": {} })), containerd_pools()),
                vec![
                    r#"spec.extensions[1].providerConfig.config: Forbidden: unknown field "config": supported fields: "apiVersion", "kind", "configs", "workerPools""#,
                ],
            ),
            (
                "unknown pool",
                shoot(entry(json!({ "workerPools": ["cpu", "fpga"] })), containerd_pools()),
                vec![
                    r#"spec.extensions[1].providerConfig.workerPools[1]: Not found: "fpga": no such pool in spec.provider.workers; pools: "cpu", "gpu""#,
                ],
            ),
            (
                "pool selected in a workerless shoot",
                shoot(entry(json!({ "workerPools": ["cpu"] })), json!([])),
                vec![
                    r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "cpu": the shoot has no worker pools in spec.provider.workers"#,
                ],
            ),
            (
                "non-containerd pool",
                shoot(
                    entry(json!({ "workerPools": ["cpu", "gpu"] })),
                    json!([
                        { "name": "cpu", "cri": { "name": "containerd" } },
                        { "name": "gpu", "cri": { "name": "cri-o" } },
                    ]),
                ),
                vec![
                    r#"spec.provider.workers[1].cri.name: Unsupported value: "cri-o": worker pool "gpu" is selected in spec.extensions[1].providerConfig.workerPools[1], and cri-resmgr only works with "containerd""#,
                ],
            ),
            (
                "pool without cri",
                shoot(entry(json!({ "workerPools": ["cpu"] })), json!([{ "name": "cpu" }])),
                vec![
                    r#"spec.provider.workers[0].cri.name: Required value: worker pool "cpu" is selected in spec.extensions[1].providerConfig.workerPools[0], and cri-resmgr only works with "containerd""#,
                ],
            ),
            (
                "repeated selection is reported once",
                shoot(entry(json!({ "workerPools": ["fpga", "fpga"] })), containerd_pools()),
                vec![
                    r#"spec.extensions[1].providerConfig.workerPools[1]: Duplicate value: "fpga""#,
                    r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "fpga": no such pool in spec.provider.workers; pools: "cpu", "gpu""#,
                ],
            ),
        ];
        for (name, new, want) in cases {
            assert_eq!(shoot_errors(&new, None), want, "case {name:?}");
        }
    }

    #[test]
    fn no_selection_without_containerd_pools_is_allowed() {
        let new = shoot(entry(json!({})), json!([{ "name": "cpu", "cri": { "name": "cri-o" } }, { "name": "x" }]));
        assert_eq!(shoot_errors(&new, None), [""; 0]);
        let config = ProviderConfig::default();
        assert!(selected_worker_pools(&config, &new.spec.provider.workers).is_empty());
    }

    #[test]
    fn disabled_entry_is_not_validated() {
        let invalid = json!({ "configs": { "default": "policy:\n  Active: null\n" } });
        let disabled =
            shoot(json!([{ "type": EXTENSION_TYPE, "disabled": true, "providerConfig": invalid }]), containerd_pools());
        assert_eq!(shoot_errors(&disabled, None), [""; 0]);
        assert_eq!(default_shoot(&disabled), None);
        let enabled = shoot(
            json!([{ "type": EXTENSION_TYPE, "disabled": false, "providerConfig": invalid }]),
            containerd_pools(),
        );
        assert_eq!(shoot_errors(&enabled, None).len(), 1);
        // Re-enabling is judged even though the providerConfig did not change.
        assert_eq!(shoot_errors(&enabled, Some(&disabled)).len(), 1);
    }

    #[test]
    fn unchanged_entry_is_not_judged_again_on_update() {
        // Accepted once (e.g. by a more lenient version), now invalid: both a config and a pool problem.
        let invalid = json!({ "configs": { "default": "policy:\n  Active: null\n" }, "workerPools": ["gpu"] });
        let pools = json!([
            { "name": "cpu", "cri": { "name": "containerd" } },
            { "name": "gpu", "cri": { "name": "cri-o" } },
        ]);
        let old = shoot(entry(invalid.clone()), pools.clone());
        assert_eq!(shoot_errors(&old, None).len(), 2);

        // Same providerConfig, same selected pools: not judged again.
        assert_eq!(shoot_errors(&old, Some(&old)), [""; 0]);
        // An unrelated change (a new pool nobody selected) does not re-judge either.
        let mut more_pools = pools.as_array().unwrap().clone();
        more_pools.push(json!({ "name": "new", "cri": { "name": "containerd" } }));
        let new = shoot(entry(invalid.clone()), Value::Array(more_pools));
        assert_eq!(shoot_errors(&new, Some(&old)), [""; 0]);

        // A change to the providerConfig is judged in full.
        let mut changed = invalid.clone();
        changed["configs"]["fallback"] = json!(README_FALLBACK);
        let new = shoot(entry(changed), pools.clone());
        assert_eq!(shoot_errors(&new, Some(&old)).len(), 2);

        // A change to a selected pool is judged in full.
        let new = shoot(entry(invalid.clone()), json!([{ "name": "cpu", "cri": { "name": "containerd" } }]));
        assert_eq!(
            shoot_errors(&new, Some(&old)),
            [
                r#"spec.extensions[1].providerConfig.configs["default"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of "topology-aware", "memtier", "static", "static-plus", "static-pools", "podpools", "balloons", "dynamic-pools""#,
                r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "gpu": no such pool in spec.provider.workers; pools: "cpu""#,
            ]
        );
    }

    #[test]
    fn selected_worker_pools_follow_the_selection_and_containerd() {
        let workers: Vec<Worker> = serde_json::from_value(json!([
            { "name": "a", "cri": { "name": "containerd" } },
            { "name": "b", "cri": { "name": "cri-o" } },
            { "name": "c" },
            { "name": "d", "cri": { "name": "containerd" } },
        ]))
        .unwrap();
        let names = |config: &ProviderConfig| -> Vec<String> {
            selected_worker_pools(config, &workers).iter().map(|w| w.name.clone()).collect()
        };
        assert_eq!(names(&ProviderConfig::default()), ["a", "d"]);
        let config = ProviderConfig { worker_pools: Some(vec!["d".into(), "b".into()]), ..Default::default() };
        assert_eq!(names(&config), ["d"]);
    }

    #[test]
    fn default_shoot_patches_precisely_and_is_idempotent() {
        let cases = [
            (
                json!([{ "type": EXTENSION_TYPE }]),
                json!([
                    { "op": "add", "path": "/spec/extensions/0/providerConfig", "value": { "apiVersion": API_VERSION, "kind": KIND } },
                ]),
            ),
            (
                json!([{ "type": EXTENSION_TYPE, "providerConfig": null }]),
                json!([
                    { "op": "add", "path": "/spec/extensions/0/providerConfig", "value": { "apiVersion": API_VERSION, "kind": KIND } },
                ]),
            ),
            (
                entry(json!({ "configs": { "default": README_FALLBACK } })),
                json!([
                    { "op": "add", "path": "/spec/extensions/1/providerConfig/apiVersion", "value": API_VERSION },
                    { "op": "add", "path": "/spec/extensions/1/providerConfig/kind", "value": KIND },
                ]),
            ),
        ];
        for (extensions, want) in cases {
            let original = shoot(extensions, containerd_pools());
            let patch = default_shoot(&original).unwrap();
            assert_eq!(serde_json::to_value(&patch).unwrap(), want);
            let mut document = serde_json::to_value(&original).unwrap();
            json_patch::patch(&mut document, &patch).unwrap();
            let defaulted: Shoot = serde_json::from_value(document).unwrap();
            assert_eq!(default_shoot(&defaulted), None, "defaulting twice changes nothing");
            assert_eq!(shoot_errors(&defaulted, None), [""; 0]);
        }
        let versioned = shoot(entry(json!({ "apiVersion": API_VERSION, "kind": KIND })), containerd_pools());
        assert_eq!(default_shoot(&versioned), None);
        assert_eq!(default_shoot(&shoot(json!([{ "type": "other" }]), json!([]))), None);
    }
}
