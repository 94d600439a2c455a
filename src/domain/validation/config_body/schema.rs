//! cri-resmgr's configuration schema (the modules of a configuration and the option names each accepts), read from
//! the data file beside this module, and the check of a section against it the way cri-resmgr's own configuration
//! package does it: a module's own keys exactly, sub-modules by name or dotted key, nothing below the first level.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::validation::field::{FieldError, FieldPath, describe, quote, quote_list};

/// The schema as data: which cri-resmgr version it describes, where it comes from and what each option takes.
const SCHEMA_YAML: &str = include_str!("../cri-resmgr-0.9.2-schema.yaml");

/// The data file's form.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SchemaFile {
    cri_resmgr_version: String,
    /// Module path (`policy.balloons`) → option name → type.
    modules: BTreeMap<String, BTreeMap<String, OptionType>>,
}

/// What Go's encoding/json accepts for an option (see the data file); `null` is accepted for every type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptionType {
    Bool,
    String,
    Int,
    Uint,
    Strings,
    List,
    Mapping,
    Duration,
    Constraints,
    Any,
}

/// One configuration module: its own options and the names of its sub-modules. A module that only exists as the
/// parent of others (`resource-manager`) is implicit: it has no options, and cri-resmgr rejects any key of its own.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Module {
    pub options: BTreeMap<String, OptionType>,
    pub children: BTreeSet<String>,
}

/// cri-resmgr's configuration modules by path (`""` is the root, whose children are the top-level sections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub version: String,
    pub modules: BTreeMap<String, Module>,
}

impl Schema {
    fn parse(text: &str) -> Result<Schema, String> {
        let file: SchemaFile = crate::yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut modules: BTreeMap<String, Module> = BTreeMap::from([(String::new(), Module::default())]);
        for (path, options) in file.modules {
            // Every prefix of a dotted path is a module too (implicit unless registered itself).
            let mut parent = String::new();
            for name in path.split('.') {
                let child = if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") };
                modules.entry(parent.clone()).or_default().children.insert(name.to_owned());
                modules.entry(child.clone()).or_default();
                parent = child;
            }
            modules.entry(path).or_default().options = options;
        }
        Ok(Schema { version: file.cri_resmgr_version, modules })
    }
}

impl Module {
    /// The keys a section of this module may hold (options and sub-modules), sorted.
    fn known_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.options.keys().chain(self.children.iter()).map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

/// The embedded schema; a unit test proves that it parses, so the error is never seen in practice.
pub fn schema() -> Result<&'static Schema, &'static str> {
    static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| Schema::parse(SCHEMA_YAML));
    SCHEMA.as_ref().map_err(String::as_str)
}

/// Checks the top-level section `name` (a mapping) against the schema, reporting every unknown key at its path with a
/// suggestion, and every option of the wrong type.
pub fn validate_section(name: &str, section: &Map<String, Value>, path: &FieldPath, errors: &mut Vec<FieldError>) {
    match schema() {
        Ok(schema) => validate_module(schema, name, section, path, errors),
        Err(e) => errors.push(FieldError::new(
            path,
            format!("Internal error: the cri-resmgr configuration schema cannot be read: {e}"),
        )),
    }
}

/// cri-resmgr's `Module.validate`: a module's own keys must be its options (exactly); keys naming a sub-module, and
/// dotted keys, go to the sub-modules; what no sub-module takes is an error.
fn validate_module(
    schema: &Schema,
    module_path: &str,
    data: &Map<String, Value>,
    path: &FieldPath,
    errors: &mut Vec<FieldError>,
) {
    let Some(module) = schema.modules.get(module_path) else { return };
    let mut sub: BTreeMap<&str, &Value> = BTreeMap::new();
    for (key, value) in data {
        if module.children.contains(key) || key.contains('.') {
            sub.insert(key, value);
        } else {
            match module.options.get(key) {
                Some(option_type) => check_type(*option_type, value, &path.child(key), errors),
                None => errors.push(unknown_key(schema, module_path, module, key, &path.child(key))),
            }
        }
    }
    for child in &module.children {
        let child_path = path.child(child);
        let child_module = if module_path.is_empty() { child.clone() } else { format!("{module_path}.{child}") };
        let mut picked = Map::new();
        if let Some(value) = sub.remove(child.as_str()) {
            match value {
                Value::Object(object) => picked = object.clone(),
                Value::Null => {}
                other => {
                    errors.push(FieldError::invalid_type(
                        &child_path,
                        format!("must be a mapping of the {} options, got {}", quote(&child_module), describe(other)),
                    ));
                    continue;
                }
            }
        }
        let prefix = format!("{child}.");
        let dotted: Vec<&str> = sub.keys().copied().filter(|key| key.starts_with(&prefix)).collect();
        for key in dotted {
            let Some(value) = sub.remove(key) else { continue };
            let rest = &key[prefix.len()..];
            if picked.contains_key(rest) {
                errors.push(FieldError::new(
                    &path.child(key),
                    format!(
                        "Duplicate value: {}: {} is also given nested inside {}; give it once",
                        quote(key),
                        quote(rest),
                        quote(&format!("{child}:"))
                    ),
                ));
            } else {
                picked.insert(rest.to_owned(), value.clone());
            }
        }
        if !picked.is_empty() {
            validate_module(schema, &child_module, &picked, &child_path, errors);
        }
    }
    for key in sub.keys() {
        let first = key.split('.').next().unwrap_or(key);
        errors.push(unknown_key(schema, module_path, module, first, &path.child(key)));
    }
}

/// `Unsupported value: "Activ": did you mean "Active"? supported keys in "policy": …`.
fn unknown_key(schema: &Schema, module_path: &str, module: &Module, key: &str, path: &FieldPath) -> FieldError {
    let known = module.known_keys();
    let suggestion = closest(key, &known).map(|near| format!("did you mean {}? ", quote(near))).unwrap_or_default();
    let module_name = if module_path.is_empty() { "the configuration" } else { module_path };
    let supported = if known.is_empty() { "none".to_owned() } else { quote_list(&known) };
    FieldError::new(
        path,
        format!(
            "Unsupported value: {}: {suggestion}cri-resmgr {} rejects unknown keys; supported keys in {}: {supported}",
            quote(key),
            schema.version,
            quote(module_name)
        ),
    )
}

/// The known key closest to `key` by edit distance (ignoring case), when it is close enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = key.to_lowercase();
    let allowed = if lower.chars().count() >= 5 { 2 } else { 1 };
    let length = lower.chars().count();
    known
        .iter()
        // Lengths further apart than the allowed distance cannot be close: no distance to compute (keys are user
        // input of any length).
        .filter(|candidate| candidate.chars().count().abs_diff(length) <= allowed)
        .map(|candidate| (levenshtein(&lower, &candidate.to_lowercase()), *candidate))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// What cri-resmgr's decoder would refuse for an option of `option_type` (see the data file); `null` is always
/// fine. cri-resmgr reads a module's options with sigs.k8s.io/yaml, which turns a number or boolean into a string
/// where the option is a string: so a string option takes any scalar (a false denial is worse than a late error).
fn check_type(option_type: OptionType, value: &Value, path: &FieldPath, errors: &mut Vec<FieldError>) {
    let wanted = match (option_type, value) {
        (_, Value::Null) | (OptionType::Any, _) => return,
        (OptionType::Bool, Value::Bool(_)) => return,
        (OptionType::Bool, _) => "true or false (without quotes)",
        (OptionType::String, Value::String(_) | Value::Number(_) | Value::Bool(_)) => return,
        (OptionType::Duration, Value::String(_)) => return,
        (OptionType::String, _) => "a string",
        (OptionType::Duration, _) => "a duration string such as \"30s\" or \"5m\"",
        (OptionType::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => return,
        (OptionType::Int, _) => "a whole number",
        (OptionType::Uint, Value::Number(n)) if n.is_u64() => return,
        (OptionType::Uint, _) => "a whole number, not negative",
        (OptionType::List, Value::Array(_)) | (OptionType::Mapping, Value::Object(_)) => return,
        (OptionType::List, _) => "a list",
        (OptionType::Mapping, _) => "a mapping",
        (OptionType::Strings, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !matches!(item, Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null) {
                    errors.push(FieldError::invalid_type(
                        &path.index(i),
                        format!("must be a string, got {}", describe(item)),
                    ));
                }
            }
            return;
        }
        (OptionType::Strings, _) => "a list of strings",
        (OptionType::Constraints, Value::Object(constraints)) => {
            check_constraints(constraints, path, errors);
            return;
        }
        (OptionType::Constraints, _) => "a mapping of resource constraints such as \"CPU: 750m\"",
    };
    errors.push(FieldError::invalid_type(path, format!("must be {wanted}, got {}", describe(value))));
}

/// cri-resmgr's `ConstraintSet`: the only resource is CPU (any case), given as a string (`750m`, `cpuset:0-1`,
/// `cgroup:…`) or a number of CPUs.
fn check_constraints(constraints: &Map<String, Value>, path: &FieldPath, errors: &mut Vec<FieldError>) {
    for (resource, value) in constraints {
        let resource_path = path.child(resource);
        if !resource.eq_ignore_ascii_case("cpu") {
            errors.push(FieldError::not_supported(&resource_path, resource, &["CPU"]));
        } else if !matches!(value, Value::String(_) | Value::Number(_)) {
            errors.push(FieldError::invalid_type(
                &resource_path,
                format!("must be a string or a number (e.g. \"750m\", \"cpuset:0-1\" or 2), got {}", describe(value)),
            ));
        }
    }
}
