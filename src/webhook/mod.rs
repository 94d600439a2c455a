//! The TLS admission server and its handlers.
//!
//! - [`admission`]: the handler abstraction ([`AdmissionHandler`]) and the AdmissionReview plumbing.
//! - [`server`]: the HTTPS server ([`WebhookServer`]) that routes requests to handlers by path,
//!   serves `/healthz` and `/readyz`, and reloads its certificate when the files change.
//! - [`registration`]: the Validating-/MutatingWebhookConfigurations pointing the apiserver at the server.

pub mod admission;
pub mod cert_secret;
pub mod osc;
pub mod registration;
pub mod server;
pub mod shoot;

pub use admission::{AdmissionHandler, DynamicAdmissionRequest};
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
