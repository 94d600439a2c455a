//! The providerConfig as a whole: strict decoding from the raw JSON, the rules on `configs` (size, keys, each
//! entry) and `workerPools` (its form), and the defaulting of apiVersion/kind.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::config_body::validate_config_body;
use super::extra_options::validate_extra_options;
use super::field::{FieldError, FieldPath, describe, quote, quote_list};
use crate::apis::config::{API_VERSION, ConfigKey, KEY_EXTRA_OPTIONS, KIND, PROVIDER_CONFIG_FIELDS, ProviderConfig};

/// Largest sum of the lengths of all keys and texts of `configs`, in bytes (half of a Secret's 1 MiB).
pub const MAX_CONFIGS_TOTAL_BYTES: usize = 512 * 1024;
/// Largest number of keys in `configs`.
pub const MAX_CONFIG_ENTRIES: usize = 64;

// ---------------------------------------------------------------------------------------------------------------
// Decoding
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
// Rules
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
