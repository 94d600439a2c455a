//! CustomResourceDefinitions that the local control plane installs.

/// All CRDs as one multi-document YAML stream.
pub fn all_as_yaml() -> Result<String, crate::yaml::YamlError> {
    Ok(String::new())
}
