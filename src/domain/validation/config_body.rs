//! cri-resmgr configuration bodies (every `configs` key but `EXTRA_OPTIONS`): reading them into their top-level
//! sections, and the rules on sections and `policy.Active`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::field::{FieldError, FieldPath, describe, quote, quote_list};

/// Largest configuration body (any `configs` key but `EXTRA_OPTIONS`), in bytes.
pub const MAX_CONFIG_BODY_BYTES: usize = 128 * 1024;
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
