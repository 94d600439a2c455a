//! The providerConfig as a whole: strict decoding from the raw JSON, the rules on `configs` (size, keys, each
//! entry) and `workerPools` (its form), the typed result ([`ValidProviderConfig`]: [`Configs`] with every body parsed
//! once, and the [`PoolSelection`]), and the defaulting of apiVersion/kind.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::body_cache::ConfigBodyCache;
use super::config_body::{ConfigBody, validate_config_body};
use super::extra_options::validate_extra_options;
use super::field::{FieldError, FieldPath, describe, quote, quote_list};
use crate::apis::config::{API_VERSION, ConfigKey, KEY_EXTRA_OPTIONS, KIND, PROVIDER_CONFIG_FIELDS, ProviderConfig};
use crate::apis::core::Worker;
use crate::constants::CRI_CONTAINERD;

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

/// A `configs` map that passed validation, typed by [`ConfigKey`]: every configuration body parsed once into a
/// [`ConfigBody`], `EXTRA_OPTIONS` as its (valid) line.
///
/// `force` and `fallback` may both be set (e.g. one by the operator, one by the user); cri-resmgr refuses
/// `--force-config` together with `--fallback-config`, so the node side passes only `--force-config` then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configs {
    /// `fallback`: file on the node, used until the agent pushes a config.
    pub fallback: Option<ConfigBody>,
    /// `default`: the agent's ConfigMap for all nodes.
    pub default: Option<ConfigBody>,
    /// `force`: file on the node plus `--force-config`; the agent is ignored.
    pub force: Option<ConfigBody>,
    /// `EXTRA_OPTIONS`: extra command-line options for cri-resmgr (one environment file line).
    pub extra_options: Option<String>,
    /// `group.<GROUP>`: group name → configuration.
    pub groups: BTreeMap<String, ConfigBody>,
    /// `node.<NODE>`: node name → configuration.
    pub nodes: BTreeMap<String, ConfigBody>,
}

impl Configs {
    /// Every entry with its key and text, in key order (by priority, see [`ConfigKey`]).
    pub fn entries(&self) -> impl Iterator<Item = (ConfigKey, &str)> {
        let singles = [
            (ConfigKey::Fallback, self.fallback.as_ref().map(ConfigBody::text)),
            (ConfigKey::Default, self.default.as_ref().map(ConfigBody::text)),
            (ConfigKey::Force, self.force.as_ref().map(ConfigBody::text)),
            (ConfigKey::ExtraOptions, self.extra_options.as_deref()),
        ];
        let groups = self.groups.iter().map(|(name, body)| (ConfigKey::Group(name.clone()), body.text()));
        let nodes = self.nodes.iter().map(|(name, body)| (ConfigKey::Node(name.clone()), body.text()));
        let mut entries: Vec<(ConfigKey, &str)> = singles
            .into_iter()
            .filter_map(|(key, text)| text.map(|text| (key, text)))
            .chain(groups)
            .chain(nodes)
            .collect();
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        entries.into_iter()
    }

    /// The wire form (config key → text), as in a providerConfig or the base configs ConfigMap.
    pub fn to_wire(&self) -> BTreeMap<String, String> {
        self.entries().map(|(key, text)| (key.to_string(), text.to_owned())).collect()
    }

    /// `self` with every key that `other` sets replaced by `other`'s: a key-by-key override, nothing merged inside
    /// a text.
    #[must_use]
    pub fn overridden_by(mut self, other: Configs) -> Configs {
        self.fallback = other.fallback.or(self.fallback);
        self.default = other.default.or(self.default);
        self.force = other.force.or(self.force);
        self.extra_options = other.extra_options.or(self.extra_options);
        self.groups.extend(other.groups);
        self.nodes.extend(other.nodes);
        self
    }

    /// [`validate_configs_size`] for these configs (e.g. a merge of two valid halves).
    pub fn validate_size(&self, path: &FieldPath) -> Vec<FieldError> {
        let (entries, total) = self.entries().fold((0usize, 0usize), |(entries, total), (key, text)| {
            (entries + 1, total.saturating_add(key.to_string().len()).saturating_add(text.len()))
        });
        validate_configs_size(entries, total, path)
    }

    fn insert(&mut self, key: ConfigKey, body: ConfigBody) {
        match key {
            ConfigKey::Fallback => self.fallback = Some(body),
            ConfigKey::Default => self.default = Some(body),
            ConfigKey::Force => self.force = Some(body),
            ConfigKey::Group(name) => {
                self.groups.insert(name, body);
            }
            ConfigKey::Node(name) => {
                self.nodes.insert(name, body);
            }
            // `EXTRA_OPTIONS` is no body; `validate_configs` keeps it apart.
            ConfigKey::ExtraOptions => {}
        }
    }
}

/// `workerPools` of a providerConfig: which worker pools run cri-resmgr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSelection {
    /// The names given; `None` (absent) selects every pool that runs containerd.
    names: Option<Vec<String>>,
}

impl PoolSelection {
    /// The selection `workerPools` expresses (`None`: absent).
    pub fn new(names: Option<Vec<String>>) -> Self {
        PoolSelection { names }
    }

    /// The names listed in `workerPools`, or `None` when it is absent.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// True when cri-resmgr runs on the nodes of `worker`: the pool runs containerd and is named in `workerPools`,
    /// or `workerPools` is absent. Pools without `cri` count as not running containerd (gardener-apiserver defaults
    /// `cri` to containerd, so persisted Shoots always have it; only hand-written Shoots given to `render` can lack
    /// it).
    pub fn selects(&self, worker: &Worker) -> bool {
        worker.cri_name() == Some(CRI_CONTAINERD)
            && self.names.as_ref().is_none_or(|names| names.contains(&worker.name))
    }

    /// The worker pools whose nodes run cri-resmgr (see [`Self::selects`]), in the Shoot's order. A selected pool
    /// that does not run containerd is left out even if validation was skipped: cri-resmgr cannot sit in front of
    /// another runtime, and installing it there would break the pool's kubelet.
    pub fn selected<'a>(&self, workers: &'a [Worker]) -> Vec<&'a Worker> {
        workers.iter().filter(|worker| self.selects(worker)).collect()
    }
}

/// A providerConfig that passed validation: the typed, parsed `configs` and the pool selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidProviderConfig {
    pub configs: Configs,
    pub worker_pools: PoolSelection,
}

/// Checks the values of a decoded providerConfig (everything that needs no Shoot) and gives them typed: the
/// `configs` (see [`validate_configs`]) and the form of `workerPools`. All problems are reported.
pub fn validate_provider_config(
    config: &ProviderConfig,
    path: &FieldPath,
) -> Result<ValidProviderConfig, Vec<FieldError>> {
    validate_provider_config_with(config, path, None)
}

/// [`validate_provider_config`], taking the verdicts on configuration bodies from `bodies` when given.
pub fn validate_provider_config_with(
    config: &ProviderConfig,
    path: &FieldPath,
    bodies: Option<&ConfigBodyCache>,
) -> Result<ValidProviderConfig, Vec<FieldError>> {
    let configs = validate_configs_with(&config.configs, &path.child("configs"), bodies);
    let pool_errors = match &config.worker_pools {
        Some(names) => validate_worker_pool_names(names, &path.child("workerPools")),
        None => Vec::new(),
    };
    match configs {
        Ok(configs) if pool_errors.is_empty() => {
            Ok(ValidProviderConfig { configs, worker_pools: PoolSelection::new(config.worker_pools.clone()) })
        }
        Ok(_) => Err(pool_errors),
        Err(mut errors) => {
            errors.extend(pool_errors);
            Err(errors)
        }
    }
}

/// [`decode_provider_config`] then [`validate_provider_config`]; `None` (no providerConfig) is the empty config.
pub fn decode_and_validate_provider_config(
    raw: Option<&Value>,
    path: &FieldPath,
) -> Result<ValidProviderConfig, Vec<FieldError>> {
    let config = decode_provider_config(raw.unwrap_or(&Value::Null), path)?;
    validate_provider_config(&config, path)
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

/// Checks a `configs` map and gives it typed: its size ([`validate_configs_size`]), every key (see [`ConfigKey`]),
/// every configuration body ([`validate_config_body`], which parses it — once) and `EXTRA_OPTIONS`
/// ([`validate_extra_options`]).
pub fn validate_configs(configs: &BTreeMap<String, String>, path: &FieldPath) -> Result<Configs, Vec<FieldError>> {
    validate_configs_with(configs, path, None)
}

/// [`validate_configs`], taking the verdicts on configuration bodies from `bodies` when given.
pub fn validate_configs_with(
    configs: &BTreeMap<String, String>,
    path: &FieldPath,
    bodies: Option<&ConfigBodyCache>,
) -> Result<Configs, Vec<FieldError>> {
    let total = configs.iter().map(|(k, v)| k.len().saturating_add(v.len())).fold(0, usize::saturating_add);
    let mut errors = validate_configs_size(configs.len(), total, path);
    if !errors.is_empty() {
        // A map over the limits is refused as a whole. Its entries are not judged one by one: a Shoot can carry
        // 100,000 of them within the apiserver's request limit, and parsing each would take longer than the
        // apiserver waits for the webhook's answer (the denial would be lost in a timeout).
        return Err(errors);
    }
    let mut typed = Configs::default();
    for (key, text) in configs {
        let key_path = path.key(key);
        match key.parse::<ConfigKey>() {
            Err(e) => errors.push(FieldError::new(&key_path, e.to_string())),
            Ok(ConfigKey::ExtraOptions) => {
                let options_errors = validate_extra_options(text, &key_path);
                if options_errors.is_empty() {
                    typed.extra_options = Some(text.clone());
                }
                errors.extend(options_errors);
            }
            Ok(key) => match bodies
                .map_or_else(|| validate_config_body(text, &key_path), |bodies| bodies.validate(text, &key_path))
            {
                Ok(body) => typed.insert(key, body),
                Err(body_errors) => errors.extend(body_errors),
            },
        }
    }
    if errors.is_empty() { Ok(typed) } else { Err(errors) }
}

/// The limits on a `configs` map as a whole: at most [`MAX_CONFIG_ENTRIES`] keys and [`MAX_CONFIGS_TOTAL_BYTES`]
/// for all keys and texts together (`total`). The reconciler applies them to the merge of the ControllerDeployment's
/// base configs and the Shoot's, which is what actually gets deployed.
pub fn validate_configs_size(entries: usize, total: usize, path: &FieldPath) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if entries > MAX_CONFIG_ENTRIES {
        errors.push(FieldError::too_many(path, entries, MAX_CONFIG_ENTRIES));
    }
    if total > MAX_CONFIGS_TOTAL_BYTES {
        errors.push(FieldError::new(
            path,
            format!(
                "Too long: keys and texts of all configs together may not be more than {MAX_CONFIGS_TOTAL_BYTES} \
                 bytes (they end up in one Secret, which holds at most 1 MiB), got {total} bytes"
            ),
        ));
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
