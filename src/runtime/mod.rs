//! The I/O plumbing the adapters share: the HTTPS webhook server and its AdmissionReview plumbing, the webhook
//! registration, the serving certificates, the reads of the domain's inputs from the seed, and process signals.
//!
//! - [`server`]: the HTTPS server ([`WebhookServer`]) that routes requests to handlers by path, serves `/healthz`
//!   and `/readyz` (ready once certificate material is loaded), and resolves each TLS handshake with the latest
//!   certificate its owner published.
//! - [`review`]: the handler abstraction ([`AdmissionHandler`]) and the AdmissionReview plumbing.
//! - [`answer_memo`]: the answers kept for reviews that come again with only a new uid.
//! - [`registration`]: the Validating-/MutatingWebhookConfigurations pointing the apiserver at the server.
//! - [`serving`]: the options of a webhook-serving command, the start of the certificate owner they choose, and the
//!   bind → register → serve sequence; the registrar re-registers when the published CA bundle changes.
//! - [`tls`]: the one owner of a process's serving certificates. A single task obtains the material (from a
//!   watched directory, or from a watched Secret it renews before expiry) and publishes it through a
//!   `tokio::sync::watch` channel that the TLS resolver, the registrar and `/readyz` read; nothing polls. Its
//!   `certs` and `cert_secret` make and check the material (generated, or kept in a shared Secret).
//! - [`metrics`]: the process's Prometheus metrics (typed families, bounded labels) and the plain-HTTP server
//!   that serves them on `/metrics`.
//! - [`inputs`]: reads of the domain's inputs (base configs, image vector override).
//! - [`stores`]: watch-backed stores of the seed objects the OSC webhook and the reconciler read (Clusters, our
//!   Extensions, the base configs), so that neither asks the apiserver per call.
//! - [`signals`]: SIGTERM / Ctrl-C.

pub mod answer_memo;
pub mod inputs;
pub mod metrics;
pub mod registration;
pub mod review;
pub mod server;
pub mod serving;
pub mod signals;
pub mod stores;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::task::{JoinError, JoinHandle};

pub use review::{AdmissionHandler, RawAdmissionRequest, RawObject};
pub use server::{BoundWebhookServer, ServerError, WebhookServer, WebhookServerConfig};

/// `error: cause: cause` in one line, for logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Sleeps until `at`; forever without one (a `select!` branch for an optional deadline, e.g. a pending retry).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A spawned task that is aborted when this wrapper is dropped.
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}
