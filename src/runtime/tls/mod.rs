//! The serving certificates of a webhook-serving process, with one owner.
//!
//! One task per process obtains the certificate material and publishes the current value through a
//! [`tokio::sync::watch`] channel ([`CertReceiver`]); everything else only reads from it:
//!
//! - the TLS server resolves every handshake with the latest published certificate ([`CertResolver`]), so a renewed
//!   certificate is served to new connections without a restart;
//! - the registrar re-registers the webhook configurations when the published CA bundle changes
//!   ([`crate::runtime::serving::keep_registered`]);
//! - `/readyz` stays 503 until material is published.
//!
//! The owner is one of two sources, chosen by the command-line flags:
//!
//! - [`files`]: a directory holding `tls.crt`, `tls.key` and `ca.crt` (a mounted Secret, or the files generated for
//!   `--generate-certs-for`), followed through file-system notifications;
//! - [`secret`]: a Secret the extension manages itself (`--webhook-cert-secret`, see
//!   [`crate::runtime::tls::cert_secret`]), followed through a watch on that Secret and a timer for the renewal before
//!   expiry.
//!
//! [`certs`] makes and checks the material itself (CA, serving certificate, expiry), [`cert_secret`] keeps it in
//! the shared Secret (and copies it into the certificate directory, for inspection only).
//!
//! A source that finds unusable material (a half-written pair, a missing file) keeps publishing what it had: a
//! server never stops serving because of a broken update.

pub mod cert_secret;
pub mod certs;
pub mod files;
pub mod secret;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// What is wrong with a certificate/key pair.
#[derive(Debug, Error)]
pub enum TlsMaterialError {
    /// The certificate file holds no PEM certificate.
    #[error("no certificate found")]
    NoCertificate,
    /// PEM decoding failed.
    #[error("invalid PEM")]
    Pem(#[from] rustls::pki_types::pem::Error),
    /// rustls rejected the pair (bad key, key not matching the certificate, ...).
    #[error("rejected by rustls")]
    Rustls(#[from] rustls::Error),
}

/// Why a source could not load material; the text of the last one is published while nothing is loaded yet.
#[derive(Debug, Error)]
pub enum CertLoadError {
    /// A certificate file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The certificate and key do not form a usable TLS identity.
    #[error("unusable TLS material in {what}")]
    Tls {
        what: String,
        #[source]
        source: TlsMaterialError,
    },
}

/// The material a webhook server serves, as published by the owner.
pub struct ServingCerts {
    /// The CA bundle the apiserver must trust (`ca.crt`, PEM); `None` when the source has none (a mounted Secret
    /// without `ca.crt`, for servers whose webhook configurations are registered by someone else).
    pub ca_bundle: Option<String>,
    /// The serving certificate chain (PEM).
    pub cert_pem: String,
    /// The serving certificate's private key (PEM).
    pub key_pem: String,
    /// The pair parsed once for rustls, handed to every handshake.
    certified_key: Arc<CertifiedKey>,
}

impl ServingCerts {
    /// Checks the pair (the key must belong to the certificate) and prepares it for rustls.
    pub fn new(ca_bundle: Option<String>, cert_pem: String, key_pem: String) -> Result<Self, TlsMaterialError> {
        let certified_key = Arc::new(certified_key(cert_pem.as_bytes(), key_pem.as_bytes())?);
        Ok(ServingCerts { ca_bundle, cert_pem, key_pem, certified_key })
    }

    /// Whether both hold the same PEM text (a re-read of unchanged files publishes nothing).
    pub fn same_material(&self, other: &ServingCerts) -> bool {
        self.ca_bundle == other.ca_bundle && self.cert_pem == other.cert_pem && self.key_pem == other.key_pem
    }
}

impl fmt::Debug for ServingCerts {
    // The private key is deliberately left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCerts")
            .field("ca_bundle", &self.ca_bundle)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// The published value: nothing usable yet (with the reason), or the current material.
#[derive(Debug, Clone)]
pub enum CertState {
    /// No usable material has been loaded yet; `problem` says why, once the source has tried.
    Pending { problem: Option<String> },
    /// The material to serve now.
    Ready(Arc<ServingCerts>),
}

impl CertState {
    /// The current material, once there is some.
    pub fn current(&self) -> Option<&Arc<ServingCerts>> {
        match self {
            CertState::Ready(certs) => Some(certs),
            CertState::Pending { .. } => None,
        }
    }

    /// The CA bundle of the current material.
    pub fn ca_bundle(&self) -> Option<&str> {
        self.current().and_then(|certs| certs.ca_bundle.as_deref())
    }
}

/// A reader of the published material.
pub type CertReceiver = watch::Receiver<CertState>;

/// The running owner of a process's certificates: the receiver of what it publishes, and its task, which stops when
/// this handle is dropped.
#[must_use = "dropping it stops the certificate owner"]
pub struct Certificates {
    receiver: CertReceiver,
    source: String,
    task: JoinHandle<()>,
}

impl Certificates {
    fn new(receiver: CertReceiver, source: String, task: JoinHandle<()>) -> Self {
        Certificates { receiver, source, task }
    }

    /// A new reader of the published material.
    pub fn subscribe(&self) -> CertReceiver {
        self.receiver.clone()
    }

    /// Where the material comes from, for messages (e.g. `directory /etc/webhook-certs`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the owner task still runs.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").field("source", &self.source).field("running", &self.is_running()).finish()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sending side a source publishes through: only changed material is sent (so readers wake only for real
/// changes), and each distinct problem is logged once.
struct Publisher {
    sender: watch::Sender<CertState>,
    source: String,
    problem: Option<String>,
}

impl Publisher {
    fn new(source: String) -> (Publisher, CertReceiver) {
        let (sender, receiver) = watch::channel(CertState::Pending { problem: None });
        (Publisher { sender, source, problem: None }, receiver)
    }

    /// Publishes `certs` when it differs from the current material; returns whether it did.
    fn publish(&mut self, certs: ServingCerts) -> bool {
        if self.problem.take().is_some() {
            info!(source = %self.source, "webhook certificate material is usable again");
        }
        let certs = Arc::new(certs);
        let was_pending = self.sender.borrow().current().is_none();
        let changed = self.sender.send_if_modified(|state| match state {
            CertState::Ready(current) if current.same_material(&certs) => false,
            _ => {
                *state = CertState::Ready(certs.clone());
                true
            }
        });
        if changed {
            let what = if was_pending { "loaded" } else { "reloaded" };
            info!(source = %self.source, "{what} the webhook serving certificate");
        }
        changed
    }

    /// Reports why the source could not load material: the current material (if any) stays published.
    fn problem(&mut self, problem: String) {
        if self.problem.as_deref() == Some(problem.as_str()) {
            return;
        }
        self.sender.send_if_modified(|state| match state {
            CertState::Pending { problem: current } => {
                *current = Some(problem.clone());
                true
            }
            CertState::Ready(_) => false,
        });
        if self.sender.borrow().current().is_some() {
            warn!(source = %self.source, error = %problem, "cannot reload the webhook certificate; keeping the current one");
        } else {
            info!(source = %self.source, reason = %problem, "waiting for the webhook certificate");
        }
        self.problem = Some(problem);
    }
}

/// Hands rustls the latest published certificate for every handshake.
pub struct CertResolver(CertReceiver);

impl CertResolver {
    /// A resolver reading from `certificates`.
    pub fn new(certificates: CertReceiver) -> Self {
        CertResolver(certificates)
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").field("ready", &self.0.borrow().current().is_some()).finish()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // `None` aborts the handshake; a server only listens once material is published, so it is always there.
        self.0.borrow().current().map(|certs| certs.certified_key.clone())
    }
}

/// The rustls server configuration of the webhook server (ring provider, TLS 1.2 + 1.3, ALPN http/1.1 only) that
/// serves whatever `certificates` holds at each handshake.
pub fn server_config(certificates: CertReceiver) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(certificates)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Parses a PEM certificate chain and key into what rustls serves, checking that the key belongs to the certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsMaterialError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(TlsMaterialError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    Ok(CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())?)
}

#[cfg(test)]
mod tests;
