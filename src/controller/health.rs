//! The periodic health check: every period, each Extension of our type gets the condition `SystemComponentsHealthy`
//! from the conditions of its runtime ManagedResource. The rules are [`crate::contract::health`]'s; this only reads
//! the ManagedResource and writes the condition when it changed.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;

use crate::apis::extensions::Extension;
use crate::constants::{EXTENSION_TYPE, SHOOT_MANAGED_RESOURCE_NAME};
use crate::contract::health::{self, HealthCheckResult};
use crate::contract::status;
use crate::managed_resource::{self, ManagedResourceError};
use crate::runtime::metrics::ControllerMetrics;

/// Runs the health check every `interval` over the Extensions in `store`, and exports their state and health to the
/// metrics after each round.
pub async fn run(client: kube::Client, interval: Duration, store: Store<Extension>, metrics: ControllerMetrics) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for extension in store.state() {
            if let Err(error) = check(&client, &extension).await {
                tracing::warn!(
                    extension = %crate::contract::key(&extension),
                    error = %error,
                    "health check failed"
                );
            }
        }
        // Read again: the round above may have written conditions, which the cache has by now or next round.
        let served = store.state();
        metrics.observe_extensions(served.iter().map(|extension| extension.as_ref()));
    }
}

/// Checks one Extension and writes its condition when it changed.
pub async fn check(client: &kube::Client, extension: &Extension) -> Result<(), kube::Error> {
    if !health::needs_health_check(extension, EXTENSION_TYPE) {
        return Ok(());
    }
    let namespace = extension.namespace().unwrap_or_default();
    let result = match check_health_of(client, &namespace, SHOOT_MANAGED_RESOURCE_NAME).await {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(namespace, error = %error, "cannot read the ManagedResource for the health check");
            return Ok(());
        }
    };
    let now = status::status_time(extension, Timestamp::now());
    let Some(updated) = health::updated_conditions(extension, &result, &now) else {
        return Ok(());
    };
    let api: Api<Extension> = Api::namespaced(client.clone(), &namespace);
    let body = json!({ "status": { "conditions": updated } });
    api.patch_status(&extension.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

/// Reads the ManagedResource `namespace/name` and judges it ([`health::check_health`]); only a failed GET (other
/// than 404) is an error.
pub async fn check_health_of(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<HealthCheckResult, ManagedResourceError> {
    let mr = managed_resource::get(client, namespace, name).await?;
    Ok(health::check_health(namespace, name, mr.as_ref()))
}
