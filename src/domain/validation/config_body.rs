//! cri-resmgr configuration bodies (every `configs` key but `EXTRA_OPTIONS`): reading them into their top-level
//! sections, and the rules on sections and `policy.Active`.
//!
//! A body is parsed once, by [`validate_config_body`], into a [`ConfigBody`]: the text as given (what the node files
//! hold), its sections (what the agent's ConfigMaps hold) and its [`Policy`] (what the node's policy marker names).
//! Everything downstream — the merge, the shoot's objects, the node files — takes the `ConfigBody`, never the text.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::field::{FieldError, FieldPath, describe, quote, quote_list};

mod schema;
pub use schema::{Module as SchemaModule, OptionType, Schema, schema};

/// Largest configuration body (any `configs` key but `EXTRA_OPTIONS`), in bytes.
pub const MAX_CONFIG_BODY_BYTES: usize = 128 * 1024;
/// The top-level sections (modules) of a cri-resmgr configuration; each becomes one key of an agent ConfigMap.
pub const CONFIG_SECTIONS: &[&str] =
    &["policy", "logger", "dump", "instrumentation", "resource-manager", "cpu", "rdt", "blockio"];

/// The values `policy.Active` accepts (cri-resmgr ≥ v0.8; `memtier` is an alias of `topology-aware`), in the order
/// of [`Policy::ALL`], from which they are made.
pub const POLICIES: &[&str] = &POLICY_NAMES;

const POLICY_NAMES: [&str; Policy::ALL.len()] = {
    let mut names = [""; Policy::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Policy::ALL[i].as_str();
        i += 1;
    }
    names
};

/// A policy cri-resmgr can run (`policy.Active`). Kept as written: `memtier` is an
/// alias of `topology-aware` for cri-resmgr, but switching between the two names is still a change of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    None,
    TopologyAware,
    Memtier,
    Static,
    StaticPlus,
    StaticPools,
    Podpools,
    Balloons,
    DynamicPools,
}

impl Policy {
    /// Every policy, in the order error messages list them.
    pub const ALL: [Policy; 9] = [
        Policy::None,
        Policy::TopologyAware,
        Policy::Memtier,
        Policy::Static,
        Policy::StaticPlus,
        Policy::StaticPools,
        Policy::Podpools,
        Policy::Balloons,
        Policy::DynamicPools,
    ];

    /// The name cri-resmgr knows the policy by.
    pub const fn as_str(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::TopologyAware => "topology-aware",
            Policy::Memtier => "memtier",
            Policy::Static => "static",
            Policy::StaticPlus => "static-plus",
            Policy::StaticPools => "static-pools",
            Policy::Podpools => "podpools",
            Policy::Balloons => "balloons",
            Policy::DynamicPools => "dynamic-pools",
        }
    }

    /// The policy named `name`, if cri-resmgr has one by that name.
    pub fn from_name(name: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|policy| policy.as_str() == name)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration body that passed validation, parsed once: the text as given, its top-level sections and the
/// policy it selects. Only [`validate_config_body`] (and [`ConfigBody::with_policy`]) make one, so holding a
/// `ConfigBody` means holding a valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigBody {
    text: String,
    sections: BTreeMap<String, Value>,
    active_policy: Option<Policy>,
}

impl ConfigBody {
    /// A body that only selects `policy` (`policy:\n  Active: <policy>\n`), built rather than parsed: for the
    /// configuration the extension itself supplies.
    pub fn with_policy(policy: Policy) -> ConfigBody {
        let text = format!("policy:\n  Active: {policy}\n");
        let mut active = serde_json::Map::new();
        active.insert("Active".to_owned(), Value::String(policy.as_str().to_owned()));
        let sections = BTreeMap::from([("policy".to_owned(), Value::Object(active))]);
        ConfigBody { text, sections, active_policy: Some(policy) }
    }

    /// The text as the user or operator wrote it: what the node's fallback and force files hold.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The top-level sections (`policy`, `logger`, …), each a mapping: one key of an agent ConfigMap each.
    pub fn sections(&self) -> &BTreeMap<String, Value> {
        &self.sections
    }

    /// `policy.Active`, or `None` when the body names no policy (cri-resmgr then runs its default one).
    pub fn active_policy(&self) -> Option<Policy> {
        self.active_policy
    }

    /// About how many bytes of memory the body holds: its text and its parsed sections (each value's own size, its
    /// strings, and the keys of its mappings). Aliases can make the sections much larger than the text.
    pub fn held_bytes(&self) -> usize {
        let sections: usize = self.sections.iter().map(|(name, value)| name.len() + value_bytes(value)).sum();
        self.text.len() + sections
    }
}

/// About how many bytes of memory a JSON value holds, counting what it owns on the heap.
fn value_bytes(value: &Value) -> usize {
    // Depth is bounded by the YAML reader's nesting limit, so recursion is safe here.
    std::mem::size_of::<Value>()
        + match value {
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
            Value::String(text) => text.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(fields) => {
                fields.iter().map(|(key, field)| std::mem::size_of::<String>() + key.len() + value_bytes(field)).sum()
            }
        }
}

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
///
/// Validation is its one caller on the way from a Shoot to the nodes (a unit test counts the calls per text).
pub fn parse_config_body(text: &str) -> Result<BTreeMap<String, Value>, ConfigBodyError> {
    #[cfg(test)]
    parse_counter::record(text);
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

/// Checks a configuration body and gives it parsed: [`parse_config_body`], then every top-level section is one of
/// [`CONFIG_SECTIONS`] and a mapping, and `policy.Active`, when given, is one of [`POLICIES`]. All problems are
/// reported, not just the first.
pub fn validate_config_body(text: &str, path: &FieldPath) -> Result<ConfigBody, Vec<FieldError>> {
    let sections = match parse_config_body(text) {
        Ok(sections) => sections,
        Err(e) => return Err(vec![FieldError::new(path, e.to_string())]),
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
        if let Value::Object(options) = section {
            schema::validate_section(name, options, &path.child(name), &mut errors);
        } else {
            errors.push(FieldError::invalid_type(
                &path.child(name),
                format!("a section must be a mapping (use {{}} for cri-resmgr's defaults), got {}", describe(section)),
            ));
        }
    }
    let active_policy = match sections.get("policy").and_then(|policy| policy.get("Active")) {
        None => None,
        Some(active) => match validate_active_policy(active, &path.child("policy").child("Active")) {
            Ok(policy) => Some(policy),
            Err(error) => {
                // The policy rule says more than the schema's type check at the same path: report it alone.
                errors.retain(|other| other.path != error.path);
                errors.push(error);
                None
            }
        },
    };
    if errors.is_empty() {
        return Ok(ConfigBody { text: text.to_owned(), sections, active_policy });
    }
    // A body of thousands of unknown keys must not make a denial of megabytes (it goes into events and statuses).
    if errors.len() > MAX_ERRORS_PER_BODY {
        let more = errors.len() - MAX_ERRORS_PER_BODY;
        errors.truncate(MAX_ERRORS_PER_BODY);
        errors.push(FieldError::new(path, format!("… and {more} more problems in this configuration")));
    }
    Err(errors)
}

/// Most problems reported for one configuration body; the rest are counted.
pub const MAX_ERRORS_PER_BODY: usize = 20;

fn validate_active_policy(active: &Value, path: &FieldPath) -> Result<Policy, FieldError> {
    let null_detail = format!(
        "the \"null\" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use \"none\" for no \
         policy, or one of {}",
        quote_list(POLICIES.get(1..).unwrap_or_default())
    );
    match active {
        Value::Null => Err(FieldError::new(path, format!("Invalid value: null: {null_detail}"))),
        Value::String(name) if name == "null" => Err(FieldError::invalid(path, name, null_detail)),
        Value::String(name) => Policy::from_name(name).ok_or_else(|| FieldError::not_supported(path, name, POLICIES)),
        other => Err(FieldError::invalid_type(
            path,
            format!("must be a policy name, one of {}, got {}", quote_list(POLICIES), describe(other)),
        )),
    }
}

/// Counts [`parse_config_body`] calls per text on the current thread, so that a test can show that a body is
/// parsed once on its way from the Shoot to the nodes.
#[cfg(test)]
pub(crate) mod parse_counter {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    thread_local! {
        static PARSES: RefCell<BTreeMap<String, usize>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub(super) fn record(text: &str) {
        PARSES.with(|parses| *parses.borrow_mut().entry(text.to_owned()).or_default() += 1);
    }

    /// The counts since the last call (text → number of parses), resetting them.
    pub(crate) fn take() -> BTreeMap<String, usize> {
        PARSES.with(|parses| std::mem::take(&mut *parses.borrow_mut()))
    }
}
