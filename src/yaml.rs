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

/// Decodes one YAML document.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str(text).map_err(|e| YamlError::Decode(e.to_string()))
}

/// Decodes every document of a multi-document YAML stream, skipping empty documents.
pub fn from_multi_str<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, YamlError> {
    let values: Vec<Option<serde_json::Value>> =
        serde_saphyr::from_multiple(text).map_err(|e| YamlError::Decode(e.to_string()))?;
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
