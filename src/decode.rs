//! Decoding JSON values into typed objects with errors a user can act on: the field path of the problem and plain
//! words (`spec.provider.workers[0].cri.name: must be a string, got a boolean`), never serde's internal phrasing
//! alone (`invalid type: boolean `true`, expected a string`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// A value that does not decode: where, and why in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field path (`spec.extensions[0].type`); empty for the document itself.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `value` as a `T`, reporting the first problem at its field path.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(at_path)
}

/// [`from_value`] without taking the value: for a caller that still needs it afterwards (no copy of the tree).
///
/// The value is decoded without following the path first (which costs on every field); only when that fails is it
/// decoded again to say where.
pub fn from_ref<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    T::deserialize(value).or_else(|_| serde_path_to_error::deserialize(value).map_err(at_path))
}

/// Decodes the JSON text `json` straight into a `T`, without a JSON tree in between, reporting the first problem
/// at its field path. Nesting is not limited here: serde_json's own recursion grows its stack on the heap, but what
/// the `T` does with the values does not (a type with serde's `flatten` re-reads a buffered copy recursively, and
/// dropping a deep `Value` recurses too). Callers bound the depth of what they accept before, and decode on a thread
/// with a stack for that bound (the admission servers bound the nesting of a request, and run their handlers on
/// threads with large stacks).
///
/// The message is worded as [`from_value`] words it (serde_json's `at line L column C` suffix is dropped: the path
/// says where). Fields are read in the order of the text, so with several problems the one reported can differ
/// from [`from_value`]'s (which reads a tree's keys sorted).
///
/// Like [`from_ref`], it follows the path only to say where a text that does not decode went wrong.
pub fn from_str<T: DeserializeOwned>(json: &str) -> Result<T, DecodeError> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.disable_recursion_limit();
    if let Ok(value) = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))
        && deserializer.end().is_ok()
    {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.disable_recursion_limit();
    let value = serde_path_to_error::deserialize(serde_stacker::Deserializer::new(&mut deserializer)).map_err(|e| {
        let path = e.path().to_string();
        DecodeError { path, message: plain_words(&without_position(e.into_inner())) }
    })?;
    deserializer.end().map_err(|e| DecodeError { path: String::new(), message: plain_words(&without_position(e)) })?;
    Ok(value)
}

fn at_path(error: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    DecodeError { path: error.path().to_string(), message: plain_words(&error.into_inner().to_string()) }
}

/// serde_json's message without the position it appends when it decodes text (`… at line 1 column 7`).
fn without_position(error: serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    match message.strip_suffix(&position) {
        Some(message) if error.line() != 0 => message.to_owned(),
        _ => message,
    }
}

/// An object as an admission request carries it (e.g. kube's `DynamicObject`) as its JSON form, which [`from_value`]
/// then decodes.
pub fn to_value(object: &impl serde::Serialize) -> Result<Value, DecodeError> {
    serde_json::to_value(object).map_err(|e| DecodeError { path: String::new(), message: plain_words(&e.to_string()) })
}

/// serde's messages reworded for people: `invalid type: X, expected Y` → `must be Y, got X`, and likewise for
/// missing and unknown fields and variants. Anything else is kept as it is.
fn plain_words(message: &str) -> String {
    let mismatch = message.strip_prefix("invalid type: ").or_else(|| message.strip_prefix("invalid value: "));
    if let Some((got, expected)) = mismatch.and_then(|rest| rest.split_once(", expected ")) {
        // `struct Inner` is our type's name, not the user's word for it.
        let expected = if expected.starts_with("struct ") { "an object" } else { expected };
        return format!("must be {expected}, got {}", unquote(got));
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("Required value: {} must be given", unquote(field));
    }
    for (prefix, what) in [("unknown field ", "field"), ("unknown variant ", "value")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (name, allowed) = rest.split_once(", expected ").unwrap_or((rest, ""));
            let allowed = allowed.strip_prefix("one of ").unwrap_or(allowed);
            return match allowed {
                "" => format!("Unsupported {what}: {}", unquote(name)),
                allowed => format!("Unsupported {what}: {}; allowed: {}", unquote(name), unquote(allowed)),
            };
        }
    }
    message.to_string()
}

/// serde writes names in backticks (`` `name` ``); people read double quotes.
fn unquote(text: &str) -> String {
    text.replace('`', "\"")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        spec: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        workers: Vec<Worker>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Worker {
        name: String,
        #[serde(default)]
        enabled: bool,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Mode {
        Fast,
        Slow,
    }

    fn error(value: Value) -> String {
        from_value::<Outer>(value).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field_path_in_plain_words() {
        assert_eq!(
            error(json!({"spec": {"workers": [{"name": "a"}, {"name": "b", "enabled": "true"}]}})),
            r#"spec.workers[1].enabled: must be a boolean, got string "true""#
        );
        assert_eq!(
            error(json!({"spec": {"workers": [{"name": 7}]}})),
            r#"spec.workers[0].name: must be a string, got integer "7""#
        );
        assert_eq!(
            error(json!({"spec": {"workers": [{}]}})),
            r#"spec.workers[0]: Required value: "name" must be given"#
        );
        assert_eq!(
            error(json!({"spec": {"workers": [], "extra": 1}})),
            r#"spec.extra: Unsupported field: "extra"; allowed: "workers" or "mode""#
        );
        assert_eq!(
            error(json!({"spec": {"workers": [], "mode": "medium"}})),
            r#"spec.mode: Unsupported value: "medium"; allowed: "fast" or "slow""#
        );
        assert_eq!(error(json!({"spec": "fast"})), r#"spec: must be an object, got string "fast""#);
        for message in [error(json!({"spec": {"workers": [{"name": 7}]}})), error(json!({"spec": 1}))] {
            assert!(!message.contains("invalid type") && !message.contains('`'), "{message}");
        }
    }

    #[test]
    fn text_decodes_with_the_same_paths_and_words_as_a_tree() {
        for value in [
            json!({"spec": {"workers": [{"name": "a"}, {"name": "b", "enabled": "true"}]}}),
            json!({"spec": {"workers": [{"name": 7}]}}),
            json!({"spec": {"workers": [{}]}}),
            json!({"spec": {"workers": [], "extra": 1}}),
            json!({"spec": {"workers": [], "mode": "medium"}}),
            json!({"spec": "fast"}),
            json!({"spec": {"workers": [{"name": 1.5}]}}),
            json!({"spec": {"workers": [{"name": null}]}}),
            json!({"spec": {"workers": [{"name": []}]}}),
        ] {
            let text = serde_json::to_string_pretty(&value).expect("json");
            let from_text = from_str::<Outer>(&text).unwrap_err();
            assert_eq!(from_text, from_value::<Outer>(value).unwrap_err(), "{text}");
            assert!(!from_text.message.contains(" at line "), "{from_text}");
        }
        let outer: Outer =
            from_str(r#"{"spec": {"workers": [{"name": "a", "enabled": true}], "mode": "slow"}}"#).expect("decodes");
        assert_eq!(outer.spec.workers[0].name, "a");
        assert!(matches!(outer.spec.mode, Some(Mode::Slow)));
        let trailing = from_str::<Outer>(r#"{"spec": {"workers": []}} x"#).unwrap_err();
        assert_eq!(trailing.path, "");
        assert_eq!(trailing.message, "trailing characters");
    }

    #[test]
    fn a_value_that_decodes_is_returned() {
        let outer: Outer = from_value(json!({"spec": {"workers": [{"name": "a", "enabled": true}]}})).unwrap();
        assert_eq!(outer.spec.workers[0].name, "a");
        assert!(outer.spec.mode.is_none());
    }
}
