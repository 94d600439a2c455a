//! The heartbeat: gardenlet marks an extension's health reports as outdated when the Lease
//! `gardener-extension-heartbeat` in the extension's namespace is not renewed (docs/extensions/heartbeat.md).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::constants::{HEARTBEAT_LEASE_NAME, MANAGED_BY};

/// Renews the heartbeat Lease in `namespace` every `interval`, forever.
pub async fn run(client: kube::Client, namespace: String, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        if let Err(error) = renew(&client, &namespace, interval).await {
            tracing::warn!(namespace, error = %error, "cannot renew the heartbeat Lease");
        }
    }
}

/// Writes the Lease with the current time as `renewTime`.
pub async fn renew(client: &kube::Client, namespace: &str, interval: Duration) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(HEARTBEAT_LEASE_NAME.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(MANAGED_BY.to_string()),
            lease_duration_seconds: Some(i32::try_from(interval.as_secs()).unwrap_or(i32::MAX)),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    api.patch(HEARTBEAT_LEASE_NAME, &PatchParams::apply(MANAGED_BY).force(), &Patch::Apply(&lease)).await?;
    Ok(())
}
