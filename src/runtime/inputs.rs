//! Reads of the domain's inputs: the operator's base configs from the seed, and the image vector (embedded, merged
//! with the operator's override file). The domain itself never reads anything.

use std::collections::BTreeMap;
use std::path::Path;

use crate::constants::BASE_CONFIGS_CONFIG_MAP;
use crate::domain::configs;
use crate::domain::desired::DesiredError;
use crate::domain::images::{ENV_IMAGEVECTOR_OVERWRITE, ImageError, ImageVector};

/// Why the inputs of a plan cannot be read from the cluster, or the plan not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{action}: {source}")]
    Kube { action: String, source: kube::Error },
    #[error(transparent)]
    Desired(#[from] DesiredError),
}

/// Reads the operator's base configs (ConfigMap [`BASE_CONFIGS_CONFIG_MAP`] in `namespace`; absent = none).
pub async fn fetch_base_configs(client: &kube::Client, namespace: &str) -> Result<BTreeMap<String, String>, PlanError> {
    let config_map = kube::Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(BASE_CONFIGS_CONFIG_MAP)
        .await
        .map_err(|source| PlanError::Kube {
            action: format!("reading ConfigMap {namespace}/{BASE_CONFIGS_CONFIG_MAP}"),
            source,
        })?;
    Ok(configs::base_configs(config_map.as_ref()).map_err(DesiredError::Config)?)
}

/// The embedded image vector merged with the file named in `$IMAGEVECTOR_OVERWRITE`, if that is set and not empty.
pub fn load_image_vector() -> Result<ImageVector, ImageError> {
    let overwrite = std::env::var_os(ENV_IMAGEVECTOR_OVERWRITE).filter(|path| !path.is_empty());
    load_image_vector_with_overwrite(overwrite.as_deref().map(Path::new))
}

/// The embedded image vector merged with the given override file.
pub fn load_image_vector_with_overwrite(overwrite: Option<&Path>) -> Result<ImageVector, ImageError> {
    let embedded = ImageVector::embedded()?;
    let Some(path) = overwrite else { return Ok(embedded) };
    let text = std::fs::read_to_string(path)
        .map_err(|source| ImageError::Read { path: path.display().to_string(), source })?;
    Ok(embedded.merged_with(ImageVector::read(&text, &path.display().to_string())?))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::domain::images;

    #[test]
    fn an_overwrite_file_replaces_same_key_entries_and_adds_new_ones() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(
            file,
            r#"
images:
# Same name and targetVersion as the embedded agent: replaces it; the tag is kept.
- name: cri-resmgr-agent
  repository: registry.example.com/mirror/cri-resmgr-agent
  targetVersion: ">= 1.20"
# Same name and architectures, other targetVersion: added, and preferred for 1.33.0 because it is an exact version.
- name: cri-resmgr-installation
  repository: registry.example.com/installation
  tag: "sha256:abc"
  targetVersion: "1.33.0"
  architectures: [amd64]
# New image.
- name: extra
  repository: registry.example.com/extra
  tag: "7"
"#
        )
        .unwrap();
        let v = load_image_vector_with_overwrite(Some(file.path())).unwrap();
        assert_eq!(
            v.find(images::AGENT, "1.30.0").unwrap().reference,
            "registry.example.com/mirror/cri-resmgr-agent:v0.9.2"
        );
        assert_eq!(
            v.find(images::INSTALLATION, "1.33.0").unwrap().reference,
            "registry.example.com/installation@sha256:abc"
        );
        assert_eq!(
            v.find(images::INSTALLATION, "1.32.0").unwrap().reference,
            "docker.io/intel/gardener-extension-cri-resmgr-installation:v0.9.2"
        );
        assert_eq!(v.find("extra", "1.30.0").unwrap().reference, "registry.example.com/extra:7");
        assert_eq!(v.sources().len(), ImageVector::embedded().unwrap().sources().len() + 2);

        let missing = load_image_vector_with_overwrite(Some(Path::new("/nonexistent/images.yaml"))).unwrap_err();
        assert!(matches!(missing, ImageError::Read { .. }), "{missing}");
        assert!(missing.to_string().contains("/nonexistent/images.yaml"), "{missing}");
    }
}
