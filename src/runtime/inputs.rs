//! Reads of the domain's inputs from the seed: the operator's base configs (and, for the adapters that need them,
//! the Cluster and the Extension). The domain itself never reads anything.

use std::collections::BTreeMap;

use crate::constants::BASE_CONFIGS_CONFIG_MAP;
use crate::domain::configs;
use crate::domain::desired::DesiredError;

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
