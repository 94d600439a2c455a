//! Field paths and errors in the manner of apimachinery's `field.Path` / `field.ErrorList`, and the quoting of user
//! values in messages.

use std::fmt;

use serde_json::Value;

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
pub(super) fn quote(value: &str) -> String {
    if value.chars().count() > MAX_ECHOED_CHARS {
        let cut: String = value.chars().take(MAX_ECHOED_CHARS).collect();
        format!("{cut:?}...")
    } else {
        format!("{value:?}")
    }
}

/// `"a", "b", "c"`.
pub(super) fn quote_list(values: &[&str]) -> String {
    values.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
}

/// What a JSON/YAML value is, for "got …" in messages.
pub(super) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
