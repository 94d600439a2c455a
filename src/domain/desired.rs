//! What the extension wants for one shoot, computed once from the Shoot, the Extension's providerConfig and the
//! operator's base configs — shared by the reconciler, the OSC webhook and `render`, so the three never disagree.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::apis::common::{ErrorCode, ErrorCodes};
use crate::apis::config::ProviderConfig;
use crate::apis::core::{Shoot, Worker};
use crate::constants::EXTENSION_TYPE;
use crate::domain::configs::{self, MergedConfigs};
use crate::domain::images::{ExtensionImages, INSTALLATION, ImageError, ImageVector};
use crate::domain::validation::{FieldError, FieldPath, decode_provider_config, join_errors};

/// Why the desired state cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The configuration (the Shoot's providerConfig or the base configs) is invalid.
    #[error("invalid configuration: {}", join_errors(.0))]
    Config(Vec<FieldError>),
    #[error("the shoot has no Kubernetes version (spec.kubernetes.version)")]
    MissingKubernetesVersion,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("cannot build the shoot objects: {0}")]
    Objects(#[from] crate::domain::shoot_resources::ShootResourcesError),
}

impl From<Vec<FieldError>> for DesiredError {
    fn from(errors: Vec<FieldError>) -> Self {
        DesiredError::Config(errors)
    }
}

impl ErrorCodes for DesiredError {
    /// A configuration problem is the user's or operator's to fix, not a retryable fault. Every variant is named, so
    /// a new one gets a deliberate code.
    fn codes(&self) -> Vec<ErrorCode> {
        match self {
            DesiredError::Config(_) | DesiredError::MissingKubernetesVersion => vec![ErrorCode::ConfigurationProblem],
            DesiredError::Image(_) | DesiredError::Objects(_) => Vec::new(),
        }
    }
}

/// A worker pool the configuration selects (explicitly or by default) whose architecture has no cri-resmgr build:
/// its nodes keep running without cri-resmgr, and the user is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolWithoutBuild {
    pub name: String,
    pub architecture: String,
}

impl std::fmt::Display for PoolWithoutBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (no cri-resmgr build for {})", self.name, self.architecture)
    }
}

/// The extension's plan for one shoot.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Base configs merged with the Shoot's, validated.
    pub merged: MergedConfigs,
    /// Worker pools whose nodes run cri-resmgr, in the Shoot's order: the selected containerd pools whose
    /// architecture has an installation image.
    pub selected_pools: Vec<String>,
    /// Selected containerd pools left out because their architecture has no installation image, in the Shoot's
    /// order. Mutating their OSCs would put a binary their nodes cannot run between kubelet and containerd.
    pub pools_without_build: Vec<PoolWithoutBuild>,
    /// Images for the shoot's Kubernetes version.
    pub images: ExtensionImages,
    /// The shoot's (control plane) Kubernetes version the images were chosen for.
    pub kubernetes_version: String,
}

/// Where the shoot owner finds the providerConfig: `spec.extensions[i].providerConfig` of their Shoot, so that
/// errors the controller reports read exactly like the admission webhook's.
pub fn provider_config_path(shoot: &Shoot) -> FieldPath {
    match shoot.spec.enabled_extension(EXTENSION_TYPE).map(|(i, _)| i) {
        Some(i) => FieldPath::new("spec").child("extensions").index(i).child("providerConfig"),
        None => FieldPath::new("spec").child("providerConfig"),
    }
}

/// Computes the plan. `provider_config` is the Extension's `spec.providerConfig` (a copy of the Shoot's entry);
/// `base` the data of the base configs ConfigMap.
pub fn compute(
    shoot: &Shoot,
    provider_config: Option<&Value>,
    base: &BTreeMap<String, String>,
    images: &ImageVector,
) -> Result<Desired, DesiredError> {
    let path = provider_config_path(shoot);
    let config: Option<ProviderConfig> = match provider_config {
        None | Some(Value::Null) => None,
        Some(raw) => Some(decode_provider_config(raw, &path)?),
    };
    let merged = configs::merge_at(base, config.as_ref(), &path)?;
    let (runnable, without_build): (Vec<&Worker>, Vec<&Worker>) = merged
        .selected_worker_pools(&shoot.spec.provider.workers)
        .into_iter()
        .partition(|worker| images.has_architecture(INSTALLATION, worker.architecture()));
    let selected_pools = runnable.iter().map(|worker| worker.name.clone()).collect();
    let pools_without_build = without_build
        .iter()
        .map(|worker| PoolWithoutBuild { name: worker.name.clone(), architecture: worker.architecture().to_owned() })
        .collect();
    let kubernetes_version = shoot
        .spec
        .kubernetes
        .version
        .clone()
        .filter(|v| !v.is_empty())
        .ok_or(DesiredError::MissingKubernetesVersion)?;
    let images = images.extension_images(&kubernetes_version)?;
    Ok(Desired { merged, selected_pools, pools_without_build, images, kubernetes_version })
}

impl Desired {
    /// Everything the runtime ManagedResource carries into the shoot.
    pub fn runtime_objects(&self) -> Result<Vec<Value>, DesiredError> {
        Ok(crate::domain::shoot_resources::shoot_objects(&self.merged, &self.images, &self.selected_pools)?)
    }

    /// What the nodes of worker pool `pool` get, or `None` when the pool does not run cri-resmgr (not selected, not
    /// containerd, no build for its architecture, or not in the Shoot). The installation image follows the pool's
    /// own kubelet version and architecture.
    pub fn pool_plan<'a>(
        &'a self,
        shoot: &Shoot,
        pool: &str,
        images: &ImageVector,
    ) -> Result<Option<crate::domain::node::PoolPlan<'a>>, DesiredError> {
        let Some(worker) = shoot.spec.worker(pool) else { return Ok(None) };
        if !self.selected_pools.iter().any(|selected| selected == pool) {
            return Ok(None);
        }
        let version = worker.effective_kubernetes_version(&shoot.spec).unwrap_or(&self.kubernetes_version);
        let installation = images.find_for_architecture(INSTALLATION, version, worker.architecture())?;
        Ok(Some(crate::domain::node::PoolPlan {
            merged: &self.merged,
            installation_image: installation.reference,
            pool_labels: worker.labels.clone().unwrap_or_default(),
        }))
    }
}

/// Every worker pool that runs containerd: where the cleaner runs, since pools deselected earlier may still carry
/// cri-resmgr's state (the cleaner finishes at once on nodes that never ran it).
pub fn containerd_pools(shoot: &Shoot) -> Vec<String> {
    shoot
        .spec
        .provider
        .workers
        .iter()
        .filter(|worker| worker.cri_name() == Some(crate::constants::CRI_CONTAINERD))
        .map(|worker| worker.name.clone())
        .collect()
}

/// Everything the cleaner ManagedResource carries into the shoot. Independent of the configuration on purpose:
/// removal must work even when the configuration no longer validates.
pub fn cleaner_objects(shoot: &Shoot, images: &ImageVector) -> Result<Vec<Value>, DesiredError> {
    let version = shoot
        .spec
        .kubernetes
        .version
        .as_deref()
        .filter(|v| !v.is_empty())
        .ok_or(DesiredError::MissingKubernetesVersion)?;
    let images = images.extension_images(version)?;
    Ok(crate::domain::shoot_resources::cleaner_objects(&images, &containerd_pools(shoot))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::images::ImageVector;
    use crate::domain::node::{cri_resmgr_unit, inline_text, node_files, policy_marker};
    use crate::domain::validation::config_body::parse_counter;
    use serde_json::json;

    // Distinct texts, so that parses can be counted per body.
    const BASE_DEFAULT: &str = "policy:\n  Active: topology-aware\n";
    const BASE_FALLBACK: &str = "policy:\n  Active: balloons\n";
    const BASE_NODE: &str = "policy:\n  Active: static\n";
    const SHOOT_DEFAULT: &str = "policy:\n  Active: podpools\nlogger:\n  Debug: cache\n";
    const SHOOT_GROUP: &str = "policy:\n  Active: static-pools\n";
    const SHOOT_NODE: &str = "policy:\n  Active: memtier\n";

    fn shoot() -> Shoot {
        let spec = serde_json::from_value(json!({
            "extensions": [{ "type": EXTENSION_TYPE, "providerConfig": provider_config() }],
            "kubernetes": { "version": "1.32.0" },
            "provider": { "type": "local", "workers": [
                { "name": "cpu", "cri": { "name": "containerd" },
                  "labels": { crate::constants::AGENT_GROUP_LABEL: "fast" } },
                { "name": "gpu", "cri": { "name": "containerd" } },
            ] },
        }))
        .unwrap();
        Shoot::new("local", spec)
    }

    fn provider_config() -> Value {
        json!({ "configs": {
            "default": SHOOT_DEFAULT,
            "group.fast": SHOOT_GROUP,
            "node.n1": SHOOT_NODE,
            "EXTRA_OPTIONS": "--metrics-interval=10s",
        } })
    }

    fn base() -> BTreeMap<String, String> {
        [("default", BASE_DEFAULT), ("fallback", BASE_FALLBACK), ("node.b1", BASE_NODE)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_full_plan_parses_each_config_body_once() {
        let images = ImageVector::embedded().unwrap();
        let shoot = shoot();
        parse_counter::take();

        // What one reconcile does: the plan, the shoot's objects, and every pool's node files and unit.
        let desired = compute(&shoot, Some(&provider_config()), &base(), &images).unwrap();
        let objects = desired.runtime_objects().unwrap();
        let mut markers = Vec::new();
        for pool in ["cpu", "gpu"] {
            let plan = desired.pool_plan(&shoot, pool, &images).unwrap().unwrap();
            let files = node_files(&plan);
            assert!(files.iter().all(|file| file.content.image_ref.is_some() || inline_text(file).is_some()));
            cri_resmgr_unit(&files);
            markers.push(policy_marker(&plan));
        }

        let parses = parse_counter::take();
        let bodies = [BASE_DEFAULT, BASE_FALLBACK, BASE_NODE, SHOOT_DEFAULT, SHOOT_GROUP, SHOOT_NODE];
        let once: BTreeMap<String, usize> = bodies.iter().map(|text| ((*text).to_owned(), 1)).collect();
        assert_eq!(parses, once, "every body (base and Shoot, overridden or not) parsed exactly once");

        // And the parsed values did arrive everywhere.
        assert_eq!(objects.iter().filter(|o| o["kind"] == "ConfigMap").count(), 4, "default, group.fast, 2 nodes");
        assert_eq!(
            markers,
            [
                "policy: static-pools\nnode b1: static\nnode n1: memtier\n",
                "policy: podpools\nnode b1: static\nnode n1: memtier\n",
            ]
        );
    }

    /// cri-resmgr is built for amd64 only: an arm64 pool is not selected by default, gets no node plan (its OSC
    /// stays as gardenlet wrote it) and no agent, and is named in `pools_without_build`; an explicit selection
    /// (which admission denies) ends the same way. A pool without `architecture` is amd64, as in Gardener.
    #[test]
    fn a_pool_whose_architecture_has_no_build_gets_no_cri_resmgr() {
        let images = ImageVector::embedded().unwrap();
        let mut shoot = shoot();
        shoot.spec.provider.workers[1].machine.architecture = Some("arm64".to_owned());
        shoot.spec.provider.workers[0].machine.architecture = Some("amd64".to_owned());
        for config in [provider_config(), json!({"workerPools": ["cpu", "gpu"]})] {
            let desired = compute(&shoot, Some(&config), &base(), &images).unwrap();
            assert_eq!(desired.selected_pools, ["cpu"], "{config}");
            assert_eq!(
                desired.pools_without_build,
                [PoolWithoutBuild { name: "gpu".to_owned(), architecture: "arm64".to_owned() }]
            );
            assert_eq!(desired.pools_without_build[0].to_string(), "gpu (no cri-resmgr build for arm64)");
            assert!(desired.pool_plan(&shoot, "gpu", &images).unwrap().is_none(), "no plan for the arm64 pool");
            let plan = desired.pool_plan(&shoot, "cpu", &images).unwrap().expect("the amd64 pool runs cri-resmgr");
            assert_eq!(plan.installation_image, "docker.io/intel/gardener-extension-cri-resmgr-installation:v0.9.2");
            let objects = desired.runtime_objects().unwrap();
            let agent = objects.iter().find(|o| o["kind"] == "DaemonSet").expect("agent DaemonSet");
            let affinity = agent.to_string();
            assert!(affinity.contains("\"cpu\"") && !affinity.contains("\"gpu\""), "agent only on cpu: {affinity}");
        }

        // With an arm64 build in the vector (e.g. an operator's override), the arm64 pool gets that image.
        let with_arm = images.clone().merged_with(
            ImageVector::read(
                "images:\n- {name: cri-resmgr-installation, repository: r/arm, tag: v1, architectures: [arm64]}\n",
                "override",
            )
            .unwrap(),
        );
        let desired = compute(&shoot, Some(&provider_config()), &base(), &with_arm).unwrap();
        assert_eq!(desired.selected_pools, ["cpu", "gpu"]);
        assert!(desired.pools_without_build.is_empty());
        let plan = desired.pool_plan(&shoot, "gpu", &with_arm).unwrap().expect("gpu runs cri-resmgr");
        assert_eq!(plan.installation_image, "r/arm:v1");
    }

    #[test]
    fn admission_parses_each_config_body_once() {
        let shoot = shoot();
        parse_counter::take();
        assert_eq!(crate::domain::validation::validate_shoot(&shoot, None), []);
        let parses = parse_counter::take();
        let once: BTreeMap<String, usize> =
            [SHOOT_DEFAULT, SHOOT_GROUP, SHOOT_NODE].iter().map(|text| ((*text).to_owned(), 1)).collect();
        assert_eq!(parses, once);
    }
}
