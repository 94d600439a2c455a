//! The managed Secret as a source (`--webhook-cert-secret`): the material [`cert_secret::ensure`] keeps in a Secret
//! shared by every replica, followed through a watch on that one Secret.
//!
//! - At start, [`start`] ensures the Secret (retrying with backoff for up to [`STARTUP_RETRY_TIMEOUT`], so that an
//!   apiserver or RBAC that is not there yet does not fail the start) and publishes the material before the server
//!   binds; it also copies it into the certificate directory for whoever looks there (the server reads the
//!   published value, so a failed copy is only logged).
//! - Then the owner task wakes when the Secret changes or disappears (another replica renewed it, someone deleted
//!   it), and when its material is due for renewal ([`certs::RENEW_BEFORE`] before the serving certificate or the CA
//!   expires); each time it ensures the Secret again, which renews or recreates what needs it, and publishes (and
//!   copies) the result when it changed. Failures are retried with exponential backoff.
//!
//! The watch lists and watches with the field selector `metadata.name=<secret>`, which RBAC authorises by resource
//! name: the process needs `list` and `watch` on that Secret only.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{Certificates, Publisher, ServingCerts};
use crate::runtime::tls::cert_secret::{self, CertMaterial, CertSecretConfig, CertSecretError};
use crate::runtime::tls::certs;
use crate::runtime::{error_chain, sleep_until};

/// How long [`start`] retries the first ensure (the apiserver or the RBAC may not be there yet).
pub const STARTUP_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a renewal. Tokio's clock is monotonic and stands still while a machine is suspended, and the
/// wall clock the expiry is judged by may jump: a daily look bounds how late a renewal can come.
pub const MAX_RENEWAL_WAIT: Duration = Duration::from_secs(24 * 60 * 60);
/// Shortest wait for a renewal, so that material that is due at once (a foreign Secret the extension may not renew)
/// does not make the owner spin; failures are retried with their own backoff.
pub const MIN_RENEWAL_WAIT: Duration = Duration::from_secs(60);

/// The backoff of the first ensure: quick retries while the apiserver or the RBAC come up.
fn startup_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_total_delay(Some(STARTUP_RETRY_TIMEOUT))
}

/// The backoff of a failed sync while serving: it keeps trying, at most every five minutes.
fn sync_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .without_max_times()
        .with_jitter()
        .build()
}

/// Ensures the Secret and writes its material into the certificate directory (retrying errors, see the module
/// documentation), publishes it, and spawns the owner task that follows the Secret.
pub async fn start(client: kube::Client, config: CertSecretConfig) -> Result<Certificates, CertSecretError> {
    let secret = format!("{}/{}", config.namespace, config.secret_name);
    let material = (|| {
        cert_secret::ensure(&client, &config.namespace, &config.secret_name, &config.hostnames, &config.ips)
    })
    .retry(startup_backoff())
    .sleep(tokio::time::sleep)
    // Errors no retry can fix end the start at once.
    .when(|e| !matches!(e, CertSecretError::Generate { .. } | CertSecretError::NotManaged { .. }))
    .notify(|e, retry_in| warn!(%secret, error = %error_chain(e), ?retry_in, "cannot get the webhook certificates yet"))
    .await?;
    let (mut publisher, receiver) = Publisher::new(format!("Secret {secret}"));
    publisher.publish(serving_certs(&config, &material)?);
    copy_to_dir(&config, &material);
    info!(%secret, dir = %config.dir.display(), "webhook certificates in place");
    let renew_in = renewal_wait(&material, OffsetDateTime::now_utc());
    let task = tokio::spawn(follow(client, config, publisher, renew_in));
    Ok(Certificates::new(receiver, format!("Secret {secret}"), task))
}

fn serving_certs(config: &CertSecretConfig, material: &CertMaterial) -> Result<ServingCerts, CertSecretError> {
    ServingCerts::new(Some(material.ca_pem.clone()), material.cert_pem.clone(), material.key_pem.clone()).map_err(
        |source| CertSecretError::Unusable {
            namespace: config.namespace.clone(),
            name: config.secret_name.clone(),
            source,
        },
    )
}

/// How long until `material` is due for renewal: [`certs::RENEW_BEFORE`] before the serving certificate or the
/// (signing) CA expires, whichever is first; bounded by [`MIN_RENEWAL_WAIT`] and [`MAX_RENEWAL_WAIT`].
pub fn renewal_wait(material: &CertMaterial, now: OffsetDateTime) -> Duration {
    let expiries = [certs::not_after(&material.cert_pem), certs::not_after(&material.ca_pem)];
    let Some(first_expiry) = expiries.into_iter().filter_map(Result::ok).min() else {
        // Unparsable material would not have passed the ensure; look again soon if it did.
        return MIN_RENEWAL_WAIT;
    };
    let until_due = first_expiry - certs::RENEW_BEFORE - now;
    Duration::try_from(until_due).unwrap_or(Duration::ZERO).clamp(MIN_RENEWAL_WAIT, MAX_RENEWAL_WAIT)
}

/// The owner task: ensures the Secret again whenever it changes, is due for renewal, or a failed attempt is due for
/// a retry; never ends by itself (the [`Certificates`] handle aborts it).
async fn follow(client: kube::Client, config: CertSecretConfig, mut publisher: Publisher, renew_in: Duration) {
    let secret = format!("{}/{}", config.namespace, config.secret_name);
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let selector = format!("metadata.name={}", config.secret_name);
    // The watcher relists (with kube-runtime's backoff) when the watch breaks.
    let events = watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
    let mut events = std::pin::pin!(events);
    let renewal = tokio::time::sleep(renew_in);
    let mut renewal = std::pin::pin!(renewal);
    let mut backoff = sync_backoff();
    let mut retry_at: Option<Instant> = None;
    loop {
        let retry = sleep_until(retry_at);
        let why = tokio::select! {
            event = events.next() => match event {
                // Changes, deletions and the end of every (re)list: whatever the Secret looks like now.
                Some(Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone)) => "the Secret changed",
                Some(Ok(Event::Init | Event::InitApply(_))) => continue,
                Some(Err(e)) => {
                    warn!(%secret, error = %error_chain(&e), "cannot watch the webhook certificate Secret");
                    continue;
                }
                None => return,
            },
            () = &mut renewal => "the certificates are due for renewal",
            () = retry => "retrying",
        };
        match sync(&client, &config, &mut publisher).await {
            Ok(material) => {
                tracing::debug!(%secret, why, "synced the webhook certificates");
                retry_at = None;
                backoff = sync_backoff();
                let renew_in = renewal_wait(&material, OffsetDateTime::now_utc());
                renewal.as_mut().reset(Instant::now() + renew_in);
            }
            Err(e) => {
                // The retry takes over; an elapsed renewal timer would otherwise fire again at once.
                renewal.as_mut().reset(Instant::now() + MAX_RENEWAL_WAIT);
                let delay = backoff.next().unwrap_or(Duration::from_secs(300));
                warn!(%secret, why, error = %error_chain(&e), retry_in = ?delay, "cannot sync the webhook certificates");
                retry_at = Some(Instant::now() + delay);
            }
        }
    }
}

/// One round: ensure the Secret, then write and publish its material when it changed.
async fn sync(
    client: &kube::Client,
    config: &CertSecretConfig,
    publisher: &mut Publisher,
) -> Result<CertMaterial, CertSecretError> {
    let material =
        cert_secret::ensure(client, &config.namespace, &config.secret_name, &config.hostnames, &config.ips).await?;
    publisher.publish(serving_certs(config, &material)?);
    copy_to_dir(config, &material);
    Ok(material)
}

/// Copies the material into the certificate directory for whoever looks there (an operator, a sidecar). The server
/// reads the published value, not the files, so a directory that cannot be written (read-only, full) must not
/// hold back a renewed certificate: it is logged, and the next change tries again.
fn copy_to_dir(config: &CertSecretConfig, material: &CertMaterial) {
    let secret = format!("{}/{}", config.namespace, config.secret_name);
    match cert_secret::write_files(&config.dir, material) {
        Ok(true) => {
            info!(%secret, dir = %config.dir.display(), "updated the webhook certificate files from the Secret")
        }
        Ok(false) => {}
        Err(e) => {
            warn!(%secret, dir = %config.dir.display(), error = %error_chain(&e), "cannot write the webhook certificate files")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_before_the_first_expiry_of_certificate_and_ca_within_bounds() {
        let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
        let material = CertMaterial::from(&pems);
        let now = OffsetDateTime::now_utc();
        // A fresh serving certificate (one year) is due in about eleven months: look again in a day.
        assert_eq!(renewal_wait(&material, now), MAX_RENEWAL_WAIT);

        let due = certs::not_after(&pems.tls_cert).expect("not after") - certs::RENEW_BEFORE;
        let two_hours = Duration::from_secs(2 * 60 * 60);
        assert_eq!(renewal_wait(&material, due - time::Duration::hours(2)), two_hours);
        assert_eq!(renewal_wait(&material, due + time::Duration::days(1)), MIN_RENEWAL_WAIT, "overdue");

        // Whichever expires first counts, the CA (bundle) included.
        let ca_first = CertMaterial { ca_pem: pems.tls_cert.clone(), cert_pem: pems.ca_cert.clone(), ..material };
        assert_eq!(renewal_wait(&ca_first, due - time::Duration::hours(2)), two_hours);
    }
}
