//! The health check: every period, each Extension of our type gets the condition `SystemComponentsHealthy` from
//! the conditions of its runtime ManagedResource (what gardener-resource-manager reports about the objects in the
//! shoot), mapped as Gardener's health-check library maps them.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;
use serde_json::json;

use super::{Context, status};
use crate::apis::extensions::Extension;
use crate::constants::{EXTENSION_TYPE, SHOOT_MANAGED_RESOURCE_NAME};
use crate::managed_resource;

/// Runs the health check every `ctx.config.health_check_interval` over the Extensions in `store`.
pub async fn run(ctx: Arc<Context>, store: Store<Extension>) {
    let mut ticker = tokio::time::interval(ctx.config.health_check_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for extension in store.state() {
            if let Err(error) = check(&ctx, &extension).await {
                tracing::warn!(
                    extension = %format!("{}/{}", extension.namespace().unwrap_or_default(), extension.name_any()),
                    error = %error,
                    "health check failed"
                );
            }
        }
    }
}

/// Checks one Extension and writes its condition when it changed.
pub async fn check(ctx: &Context, extension: &Extension) -> Result<(), kube::Error> {
    // Extensions being deleted or migrated (or migrated away: they belong to another seed now) have no
    // components left to judge.
    let operation = status::operation_type(extension);
    if extension.spec.type_ != EXTENSION_TYPE
        || extension.metadata.deletion_timestamp.is_some()
        || operation == crate::apis::common::LastOperationType::Migrate
        || status::should_skip(extension, &operation)
    {
        return Ok(());
    }
    let namespace = extension.namespace().unwrap_or_default();
    let result = match managed_resource::check_health_of(&ctx.client, &namespace, SHOOT_MANAGED_RESOURCE_NAME).await {
        Ok(result) => result,
        Err(error) => {
            tracing::warn!(namespace, error = %error, "cannot read the ManagedResource for the health check");
            return Ok(());
        }
    };
    let now = status::status_time(extension, Timestamp::now());
    let current = extension.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let updated = status::upsert_condition(&current, result.condition(&now), &now);
    if updated == current {
        return Ok(());
    }
    let api: Api<Extension> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({ "status": { "conditions": updated } });
    api.patch_status(&extension.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}
