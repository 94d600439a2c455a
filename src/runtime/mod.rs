//! The I/O plumbing the adapters share: the HTTPS webhook server and its AdmissionReview plumbing, the webhook
//! registration, the serving certificates, the reads of the domain's inputs from the seed, and process signals.
//!
//! - [`server`]: the HTTPS server ([`WebhookServer`]) that routes requests to handlers by path, serves `/healthz`
//!   and `/readyz`, and reloads its certificate when the files change.
//! - [`review`]: the handler abstraction ([`AdmissionHandler`]) and the AdmissionReview plumbing.
//! - [`registration`]: the Validating-/MutatingWebhookConfigurations pointing the apiserver at the server.
//! - [`serving`]: the options of a webhook-serving command and the bind → register → serve sequence.
//! - [`certs`], [`cert_secret`]: serving certificates (generated, or kept in a shared Secret).
//! - [`inputs`]: reads of the Cluster, the Extension and the base configs.
//! - [`signals`]: SIGTERM / Ctrl-C.

pub mod cert_secret;
pub mod certs;
pub mod inputs;
pub mod registration;
pub mod review;
pub mod server;
pub mod serving;
pub mod signals;

pub use review::{AdmissionHandler, DynamicAdmissionRequest};
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
