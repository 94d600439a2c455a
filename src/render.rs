//! `render`: an offline preview. From a Shoot (or a Cluster with the Shoot embedded) and optional base configs, print
//! what the extension would put into the shoot, with no cluster — the same computation the controller runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::apis::core::Shoot;
use crate::apis::extensions::Cluster;
use crate::constants::{EXTENSION_TYPE, SHOOT_MANAGED_RESOURCE_NAME};
use crate::desired::{self, Desired, DesiredError};
use crate::images::{ImageError, ImageVector};

/// Options of the `render` command.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderOptions {
    /// A Shoot (`core.gardener.cloud/v1beta1`) or a Cluster (`extensions.gardener.cloud/v1alpha1`) YAML file.
    pub shoot: PathBuf,
    /// Base configs as the operator gives them: a ConfigMap YAML, or a plain mapping of config type to text.
    #[arg(long)]
    pub base_configs: Option<PathBuf>,
}

/// Why nothing could be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the Shoot does not enable the {EXTENSION_TYPE} extension (spec.extensions[].type)")]
    NotEnabled { path: PathBuf },
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("cannot encode YAML: {0}")]
    Encode(String),
}

fn read(path: &Path) -> Result<String, RenderError> {
    std::fs::read_to_string(path).map_err(|source| RenderError::Read { path: path.to_path_buf(), source })
}

fn decode<T: serde::de::DeserializeOwned>(path: &Path, value: Value) -> Result<T, RenderError> {
    serde_json::from_value(value).map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })
}

/// Reads a Shoot, or the Shoot embedded in a Cluster.
pub fn read_shoot(path: &Path) -> Result<Shoot, RenderError> {
    let value: Value = crate::yaml::from_str(&read(path)?)
        .map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
    match value.get("kind").and_then(Value::as_str) {
        Some("Cluster") => Ok(decode::<Cluster>(path, value)?.spec.shoot),
        Some("Shoot") => decode(path, value),
        other => Err(RenderError::Decode {
            path: path.to_path_buf(),
            message: format!("expected kind Shoot or Cluster, got {}", other.unwrap_or("no kind")),
        }),
    }
}

/// Reads base configs from a ConfigMap or a plain mapping.
pub fn read_base_configs(path: &Path) -> Result<BTreeMap<String, String>, RenderError> {
    let value: Value = crate::yaml::from_str(&read(path)?)
        .map_err(|e| RenderError::Decode { path: path.to_path_buf(), message: e.to_string() })?;
    if value.get("kind").and_then(Value::as_str) == Some("ConfigMap") {
        let config_map: ConfigMap = decode(path, value)?;
        return crate::configs::base_configs(Some(&config_map))
            .map_err(|errors| RenderError::Desired(DesiredError::Config(errors)));
    }
    decode(path, value)
}

/// Computes the plan for the Shoot in `options.shoot`.
pub fn plan(options: &RenderOptions, images: &ImageVector) -> Result<(Shoot, Desired), RenderError> {
    let shoot = read_shoot(&options.shoot)?;
    let entry = shoot
        .spec
        .extensions
        .iter()
        .find(|e| e.type_ == EXTENSION_TYPE && e.disabled != Some(true))
        .ok_or_else(|| RenderError::NotEnabled { path: options.shoot.clone() })?;
    let base = match &options.base_configs {
        Some(path) => read_base_configs(path)?,
        None => BTreeMap::new(),
    };
    let desired = desired::compute(&shoot, entry.provider_config.as_ref(), &base, images)?;
    Ok((shoot, desired))
}

/// The text `render` prints: every object of the runtime ManagedResource as a YAML stream, with comments saying
/// where it goes.
pub fn render(options: &RenderOptions, images: &ImageVector) -> Result<String, RenderError> {
    let (_shoot, desired) = plan(options, images)?;
    let mut out = String::new();
    let pools = if desired.selected_pools.is_empty() { "none".to_string() } else { desired.selected_pools.join(", ") };
    let _ = writeln!(out, "# Worker pools running cri-resmgr: {pools}");
    let _ = writeln!(out, "# ManagedResource {SHOOT_MANAGED_RESOURCE_NAME}: objects applied into the shoot");
    for object in desired.runtime_objects()? {
        out.push_str("---\n");
        out.push_str(&crate::yaml::to_string(&object).map_err(|e| RenderError::Encode(e.to_string()))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    #[test]
    fn renders_the_example_shoot_and_cluster_alike() {
        let images = ImageVector::embedded().expect("images");
        let from_shoot =
            render(&RenderOptions { shoot: repo_file("examples/shoot.yaml"), base_configs: None }, &images)
                .expect("render shoot");
        let from_cluster =
            render(&RenderOptions { shoot: repo_file("examples/10-cluster.yaml"), base_configs: None }, &images)
                .expect("render cluster");
        assert_eq!(from_shoot, from_cluster);
        assert!(from_shoot.starts_with("# Worker pools running cri-resmgr: cpu-worker\n"), "{from_shoot}");
        let objects: Vec<Value> = crate::yaml::from_multi_str(&from_shoot).expect("a YAML stream");
        let names: Vec<&str> = objects.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
        assert!(names.contains(&"cri-resmgr-config.default"), "{names:?}");
        assert!(names.contains(&"cri-resmgr-agent"), "{names:?}");
    }

    #[test]
    fn base_configs_from_a_config_map_add_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("base.yaml");
        std::fs::write(
            &base,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gardener-extension-cri-resmgr-configs\ndata:\n  \
             group.gpu: |\n    policy:\n      Active: static-pools\n",
        )
        .expect("write");
        let images = ImageVector::embedded().expect("images");
        let text =
            render(&RenderOptions { shoot: repo_file("examples/shoot.yaml"), base_configs: Some(base) }, &images)
                .expect("render");
        assert!(text.contains("name: cri-resmgr-config.group.gpu"), "{text}");
    }

    #[test]
    fn invalid_config_is_reported_with_the_shoot_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shoot = dir.path().join("shoot.yaml");
        let text = std::fs::read_to_string(repo_file("examples/shoot.yaml")).expect("example");
        std::fs::write(&shoot, text.replace("Active: topology-aware", "Active: fastest")).expect("write");
        let images = ImageVector::embedded().expect("images");
        let error = render(&RenderOptions { shoot, base_configs: None }, &images).expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains("spec.extensions[0].providerConfig.configs[\"default\"]"), "{message}");
        assert!(message.contains("\"fastest\""), "{message}");
    }

    #[test]
    fn a_shoot_without_the_extension_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shoot = dir.path().join("shoot.yaml");
        std::fs::write(
            &shoot,
            "apiVersion: core.gardener.cloud/v1beta1\nkind: Shoot\nmetadata:\n  name: x\nspec: {}\n",
        )
        .expect("write");
        let images = ImageVector::embedded().expect("images");
        let error = render(&RenderOptions { shoot, base_configs: None }, &images).expect_err("not enabled");
        assert!(error.to_string().contains("does not enable the cri-resmgr-extension extension"), "{error}");
    }
}
