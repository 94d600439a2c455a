//! One place that decides how YAML is read and written, so every module agrees on it.

use serde::{Serialize, de::DeserializeOwned};

/// A YAML document could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {0}")]
    Decode(String),
    #[error("cannot encode YAML: {0}")]
    Encode(String),
}

/// Options for reading YAML. Comments are not needed, and buffering them makes the parser give up on long comment
/// blocks ("too many buffered comments while looking ahead"). Plain scalars keep YAML 1.1 meaning (`yes`, `on`,
/// `y` are booleans), as in the Go YAML decoders of Kubernetes and cri-resmgr, so we read configs as cri-resmgr will.
fn lenient_options() -> serde_saphyr::Options {
    serde_saphyr::options! { emit_comments: false }
}

/// Decodes one YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, lenient_options()).map_err(|e| {
        YamlError::Decode(plain_words(e.without_snippet(), &lenient_options()).unwrap_or_else(|| e.to_string()))
    })
}

/// Decodes every document of a multi-document YAML stream, skipping empty documents.
pub fn from_multi_str<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    let values: Vec<Option<serde_json::Value>> = serde_saphyr::from_multiple_with_options(text, lenient_options())
        .map_err(|e| YamlError::Decode(e.to_string()))?;
    values
        .into_iter()
        .flatten()
        .filter(|v| !v.is_null())
        .map(|v| serde_json::from_value(v).map_err(|e| YamlError::Decode(e.to_string())))
        .collect()
}

/// Encodes a value as one YAML document.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::Encode(e.to_string()))
}

/// Largest number of YAML events that alias (`*anchor`) replay may produce while decoding one document with
/// [`from_str_strict`]. It bounds "billion laughs" documents far below the library default, while a real cri-resmgr
/// configuration replays at most a few hundred events.
pub const STRICT_MAX_REPLAYED_EVENTS: usize = 20_000;

/// Largest number of bytes that the values of one document decoded with [`from_str_strict`] may add up to, with
/// aliases expanded. A count of replayed events alone does not bound memory: one alias of a long string replays as
/// one event, so `[&a "<60 KiB>", *a, *a, …]` would grow a 128 KiB body into gigabytes. Without aliases the values
/// are never longer than the text, so this only refuses documents that aliases blow up.
pub const STRICT_MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Decodes one YAML document strictly, for text written by users (cri-resmgr configuration bodies):
/// - a repeated key in any mapping is an error (YAML requires unique keys, and "last one wins" would silently
///   drop half of what the user wrote);
/// - alias expansion is bounded by [`STRICT_MAX_REPLAYED_EVENTS`] and [`STRICT_MAX_VALUE_BYTES`];
/// - the error is a single line with line and column but without a source snippet, because it ends up in admission
///   responses and Kubernetes events.
pub fn from_str_strict<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, strict_options()).map_err(|e| YamlError::Decode(strict_message(&e)))
}

/// The options of [`from_str_strict`].
fn strict_options() -> serde_saphyr::Options {
    let mut options = lenient_options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = STRICT_MAX_REPLAYED_EVENTS;
    let mut budget = options.budget.unwrap_or_default();
    budget.max_total_scalar_bytes = STRICT_MAX_VALUE_BYTES;
    options.budget = Some(budget);
    options
}

/// One line describing a decode error, with its position when known.
fn strict_message(error: &serde_saphyr::Error) -> String {
    let error = error.without_snippet();
    if let serde_saphyr::Error::DuplicateMappingKey { key, location } = error {
        let key = key.as_deref().map(|k| format!(" {k:?}")).unwrap_or_default();
        return format!(
            "duplicate key{key} at line {}, column {}: keys of a YAML mapping must be unique",
            location.line(),
            location.column()
        );
    }
    if let Some(plain) = plain_words(error, &strict_options()) {
        return plain;
    }
    // Collapse whatever layout the library uses into one line.
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The errors whose library text speaks of the library's internals (budgets, API names), in a user's words;
/// `options` are those the document was decoded with, whose limits the words name.
fn plain_words(error: &serde_saphyr::Error, options: &serde_saphyr::Options) -> Option<String> {
    use serde_saphyr::budget::BudgetBreach;
    let replay_limit = options.alias_limits.max_total_replayed_events;
    let value_limit = options.budget.as_ref().map_or(usize::MAX, |budget| budget.max_total_scalar_bytes);
    // An error met while replaying an alias comes wrapped with the alias's locations (and maybe a snippet); what
    // went wrong is the error inside.
    let mut error = error;
    while let serde_saphyr::Error::AliasError { error: inner, .. }
    | serde_saphyr::Error::WithSnippet { error: inner, .. } = error
    {
        error = inner;
    }
    let at = |location: &serde_saphyr::Location| format!(" at line {}, column {}", location.line(), location.column());
    Some(match error {
        serde_saphyr::Error::MultipleDocuments { location, .. } => {
            format!("must be a single YAML document, found a second one (after \"---\"){}", at(location))
        }
        serde_saphyr::Error::Budget { breach, location } => {
            let what = match breach {
                BudgetBreach::Depth { .. } => "the document is nested too deeply (more than 64 levels)".to_owned(),
                BudgetBreach::Documents { .. } => "must be a single YAML document".to_owned(),
                BudgetBreach::Aliases { .. } | BudgetBreach::Anchors { .. } => {
                    "the document uses too many anchors or aliases (&name, *name)".to_owned()
                }
                BudgetBreach::ScalarBytes { .. } => {
                    format!(
                        "the document's values add up to more than {value_limit} bytes with aliases (*name) expanded"
                    )
                }
                _ => "the document is too large".to_owned(),
            };
            format!("{what}{}", at(location))
        }
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => {
            format!("aliases (*name) expand to more than {replay_limit} YAML nodes")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_comment_blocks_do_not_stop_the_reader() {
        let comments: String = (0..500).map(|i| format!("# comment line {i}\n")).collect();
        let text = format!("{comments}a: 1\n{comments}b: [x, z]\n");
        let value: serde_json::Value = from_str(&text).expect("decode");
        assert_eq!(value, serde_json::json!({"a": 1, "b": ["x", "z"]}));
        let documents: Vec<serde_json::Value> = from_multi_str(&format!("{text}---\n{text}")).expect("decode stream");
        assert_eq!(documents.len(), 2);
    }

    #[test]
    fn library_internals_become_plain_words() {
        let deep = format!("{}x{}", "[".repeat(70), "]".repeat(70));
        let two = "a: 1\n---\nb: 2\n";
        let cases: [(&str, &str); 2] = [
            (deep.as_str(), "invalid YAML: the document is nested too deeply (more than 64 levels) at line 1, column "),
            (two, "invalid YAML: must be a single YAML document, found a second one (after \"---\") at line "),
        ];
        for (text, want) in cases {
            for error in [
                from_str_strict::<serde_json::Value>(text).expect_err("strict"),
                from_str::<serde_json::Value>(text).expect_err("lenient"),
            ] {
                let message = error.to_string();
                assert!(message.starts_with(want), "{message}");
                assert!(!message.contains("budget") && !message.contains("from_str_multiple"), "{message}");
            }
        }
    }

    #[test]
    fn an_alias_bomb_is_reported_in_plain_words() {
        // A "billion laughs": each level of anchors replays the one before ten times. The library reports the breach
        // wrapped with the alias's locations; the user reads the limit, not the library's counters.
        let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..=9 {
            laughs.push_str(&format!("a{level}: &a{level} [{}]\n", vec![format!("*a{}", level - 1); 10].join(", ")));
        }
        let message = from_str_strict::<serde_json::Value>(&laughs).expect_err("bounded").to_string();
        assert_eq!(
            message,
            format!("invalid YAML: aliases (*name) expand to more than {STRICT_MAX_REPLAYED_EVENTS} YAML nodes")
        );
    }

    #[test]
    fn aliases_of_long_values_are_bounded_by_the_bytes_they_expand_to() {
        // Few events, many bytes: one anchored 60 KiB string and 30 aliases of it (1.8 MiB expanded). The replay
        // count is far below its limit; the bytes are not.
        let long = "x".repeat(60 * 1024);
        let aliases = vec!["*a"; 30].join(", ");
        let bomb = format!("BalloonTypes: [&a \"{long}\", {aliases}]\n");
        let message = from_str_strict::<serde_json::Value>(&bomb).expect_err("bounded").to_string();
        assert_eq!(
            message,
            format!(
                "invalid YAML: the document's values add up to more than {STRICT_MAX_VALUE_BYTES} bytes with aliases \
                 (*name) expanded at line 1, column {}",
                message.rsplit(' ').next().unwrap_or_default()
            )
        );
        // The same aliases of a short value are fine, and so is a long value without aliases.
        let short = format!("BalloonTypes: [&a \"{}\", {aliases}]\n", "x".repeat(1024));
        assert!(from_str_strict::<serde_json::Value>(&short).is_ok());
        let unaliased = format!("BalloonTypes: [\"{long}\", \"{long}\"]\n");
        assert!(from_str_strict::<serde_json::Value>(&unaliased).is_ok());
    }

    #[test]
    fn strict_reading_rejects_duplicate_keys_with_the_position() {
        let error = from_str_strict::<serde_json::Value>("a: 1\na: 2\n").expect_err("duplicate");
        assert!(error.to_string().contains("duplicate key \"a\" at line 2"), "{error}");
    }
}
