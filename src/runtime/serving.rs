//! Serving webhooks: the options every webhook-serving command shares (bind address, certificates, how the
//! apiserver reaches the server), the start of the process's certificate owner they choose ([`crate::runtime::tls`]),
//! and the bind → register → serve sequence whose registrar keeps the webhook configurations in step with the CA
//! bundle the owner publishes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

use crate::runtime::registration::ClientConfigMode;
use crate::runtime::server::{
    BoundWebhookServer, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    ServerError, WebhookServer, WebhookServerConfig,
};
use crate::runtime::tls::cert_secret;
use crate::runtime::tls::certs;
use crate::runtime::tls::{self, CertReceiver, Certificates};
use crate::runtime::{error_chain, sleep_until};

/// Longest pause between attempts to re-register after a failure.
const MAX_REGISTER_RETRY_DELAY: Duration = Duration::from_secs(60);

/// `--webhook-config-mode`, as in Gardener's extension library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookConfigMode {
    /// The apiserver calls a Service of the cluster the configuration lives in.
    Service,
    /// The apiserver calls `https://<--webhook-config-url><path>`.
    Url,
}

/// Webhook server and registration options shared by `admission` and `controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookOptions {
    /// Address the HTTPS webhook server listens on.
    #[arg(long, env = "WEBHOOK_BIND_ADDRESS", default_value = "0.0.0.0:10250")]
    pub webhook_bind_address: SocketAddr,
    /// Directory with `tls.crt`, `tls.key` and `ca.crt` (followed when they change): a mounted Secret, or written by
    /// the server itself with `--webhook-cert-secret` / `--generate-certs-for`.
    #[arg(long, env = "WEBHOOK_CERT_DIR", default_value = "webhook-certs")]
    pub webhook_cert_dir: PathBuf,
    /// Keep the CA and the serving certificate in this Secret (created when missing, shared by every replica,
    /// renewed before expiry) and write them into `--webhook-cert-dir`. The certificate is for the host names / IP
    /// addresses of `--generate-certs-for`, else for the Service (service mode) or the host of
    /// `--webhook-config-url` (url mode).
    #[arg(long)]
    pub webhook_cert_secret: Option<String>,
    /// Namespace of `--webhook-cert-secret` (in the cluster the server talks to); default `$LEADER_ELECTION_NAMESPACE`.
    #[arg(long, env = "WEBHOOK_CERT_SECRET_NAMESPACE")]
    pub webhook_cert_secret_namespace: Option<String>,
    /// Development and tests: generate a CA and a serving certificate for these host names / IP addresses into
    /// `--webhook-cert-dir` (reusing a valid CA found there) instead of expecting mounted certificates.
    #[arg(long, value_delimiter = ',')]
    pub generate_certs_for: Vec<String>,
    /// How the apiserver reaches the webhook server.
    #[arg(long, value_enum, default_value = "service")]
    pub webhook_config_mode: WebhookConfigMode,
    /// Host[:port] of the webhook server for `--webhook-config-mode=url` (https:// is implied).
    #[arg(long)]
    pub webhook_config_url: Option<String>,
    /// Namespace of the webhook Service for `--webhook-config-mode=service`.
    #[arg(long, env = "WEBHOOK_CONFIG_NAMESPACE", default_value = "garden")]
    pub webhook_config_namespace: String,
    /// Name of the webhook Service for `--webhook-config-mode=service`.
    #[arg(long, default_value = crate::constants::COMPONENT_NAME)]
    pub webhook_config_service_name: String,
    /// Port of the webhook Service for `--webhook-config-mode=service`.
    #[arg(long, default_value_t = 443)]
    pub webhook_config_service_port: i32,
    /// Do not register the webhook configurations (e.g. when a chart ships them).
    #[arg(long)]
    pub no_webhook_registration: bool,
    /// Seconds a webhook request may take, reading its body included (answered 408 after it); a connection that
    /// sends no request within it is closed. Keep it at the webhooks' `timeoutSeconds`: the apiserver gives up then.
    #[arg(long, default_value_t = DEFAULT_REQUEST_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_request_timeout_seconds: u64,
    /// Seconds an HTTP/1.1 client may take to send a request's head (and an idle keep-alive connection may stay
    /// open); a client that trickles its headers is disconnected after it.
    #[arg(long, default_value_t = DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_header_read_timeout_seconds: u64,
    /// Seconds a client may take to complete the TLS handshake.
    #[arg(long, default_value_t = DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_tls_handshake_timeout_seconds: u64,
}

/// Why serving the webhooks failed.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("--webhook-config-url is required with --webhook-config-mode=url")]
    MissingWebhookUrl,
    #[error(
        "--webhook-cert-secret needs a namespace: --webhook-cert-secret-namespace, $WEBHOOK_CERT_SECRET_NAMESPACE \
         or $LEADER_ELECTION_NAMESPACE"
    )]
    MissingCertSecretNamespace,
    #[error("--webhook-config-url {url:?} names no host for the serving certificate")]
    NoWebhookUrlHost { url: String },
    #[error(transparent)]
    CertSecret(#[from] cert_secret::CertSecretError),
    #[error("certificates in {dir}: {source}")]
    Certs { dir: PathBuf, source: certs::CertError },
    #[error("no CA bundle (ca.crt) to register the webhooks with in the {from}")]
    MissingCaBundle { from: String },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("connecting to the cluster")]
    Client(#[source] kube::Error),
    #[error("registering webhook configuration {name}: {source}")]
    Register { name: String, source: kube::Error },
    #[error("the owner of the serving certificates ({from}) stopped: nothing would renew or reload them")]
    CertificateOwnerStopped { from: String },
    #[error(transparent)]
    Metrics(#[from] crate::runtime::metrics::MetricsServerError),
}

impl Default for WebhookOptions {
    /// The command-line defaults.
    fn default() -> Self {
        WebhookOptions {
            webhook_bind_address: SocketAddr::from(([0, 0, 0, 0], 10250)),
            webhook_cert_dir: PathBuf::from("webhook-certs"),
            webhook_cert_secret: None,
            webhook_cert_secret_namespace: None,
            generate_certs_for: Vec::new(),
            webhook_config_mode: WebhookConfigMode::Service,
            webhook_config_url: None,
            webhook_config_namespace: "garden".to_string(),
            webhook_config_service_name: crate::constants::COMPONENT_NAME.to_string(),
            webhook_config_service_port: 443,
            no_webhook_registration: false,
            webhook_request_timeout_seconds: DEFAULT_REQUEST_TIMEOUT.as_secs(),
            webhook_header_read_timeout_seconds: DEFAULT_HEADER_READ_TIMEOUT.as_secs(),
            webhook_tls_handshake_timeout_seconds: DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs(),
        }
    }
}

impl WebhookOptions {
    /// The webhook server's settings: the bind address and the timeouts these options give, the default limits.
    pub fn server_config(&self) -> WebhookServerConfig {
        WebhookServerConfig {
            request_timeout: Duration::from_secs(self.webhook_request_timeout_seconds),
            header_read_timeout: Duration::from_secs(self.webhook_header_read_timeout_seconds),
            tls_handshake_timeout: Duration::from_secs(self.webhook_tls_handshake_timeout_seconds),
            ..WebhookServerConfig::new(self.webhook_bind_address)
        }
    }

    /// The apiserver-facing address of the server.
    pub fn client_config_mode(&self) -> Result<ClientConfigMode, ServingError> {
        Ok(match self.webhook_config_mode {
            WebhookConfigMode::Service => ClientConfigMode::Service {
                namespace: self.webhook_config_namespace.clone(),
                name: self.webhook_config_service_name.clone(),
                port: self.webhook_config_service_port,
            },
            WebhookConfigMode::Url => {
                let url = self.webhook_config_url.as_deref().ok_or(ServingError::MissingWebhookUrl)?;
                let base = if url.starts_with("https://") { url.to_string() } else { format!("https://{url}") };
                ClientConfigMode::Url { base }
            }
        })
    }

    /// Starts the one owner of the process's serving certificates, from the source the options choose:
    ///
    /// - `--webhook-cert-secret`: the managed Secret, ensured (and written into `--webhook-cert-dir`) before this
    ///   returns, then followed and renewed before expiry ([`tls::secret`]);
    /// - `--generate-certs-for` (development): a CA and serving certificate generated into `--webhook-cert-dir`
    ///   (reusing a valid CA found there), then followed like mounted files;
    /// - otherwise: the mounted files of `--webhook-cert-dir`, followed through file-system notifications
    ///   ([`tls::files`]).
    ///
    /// The owner stops when the returned handle is dropped.
    pub async fn start_certificates(&self, client: &kube::Client) -> Result<Certificates, ServingError> {
        if let Some(secret_name) = &self.webhook_cert_secret {
            let (hostnames, ips) = self.certificate_names()?;
            let config = cert_secret::CertSecretConfig {
                namespace: self.cert_secret_namespace()?,
                secret_name: secret_name.clone(),
                hostnames,
                ips,
                dir: self.webhook_cert_dir.clone(),
            };
            return Ok(tls::secret::start(client.clone(), config).await?);
        }
        if !self.generate_certs_for.is_empty() {
            let (hosts, ips) = cert_secret::split_names(&self.generate_certs_for);
            let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
            certs::load_or_generate(&self.webhook_cert_dir, &hosts, &ips)
                .map_err(|source| ServingError::Certs { dir: self.webhook_cert_dir.clone(), source })?;
        }
        Ok(tls::files::watch_dir(&self.webhook_cert_dir))
    }

    /// Host names and IP addresses of the serving certificate: `--generate-certs-for` when given, else the names
    /// the apiserver calls the server by (the Service's DNS names, or the host of `--webhook-config-url`).
    pub fn certificate_names(&self) -> Result<(Vec<String>, Vec<IpAddr>), ServingError> {
        if !self.generate_certs_for.is_empty() {
            return Ok(cert_secret::split_names(&self.generate_certs_for));
        }
        Ok(match self.webhook_config_mode {
            WebhookConfigMode::Service => (
                cert_secret::service_hostnames(&self.webhook_config_service_name, &self.webhook_config_namespace),
                Vec::new(),
            ),
            WebhookConfigMode::Url => {
                let url = self.webhook_config_url.as_deref().ok_or(ServingError::MissingWebhookUrl)?;
                let host = cert_secret::url_host(url)
                    .ok_or_else(|| ServingError::NoWebhookUrlHost { url: url.to_string() })?;
                cert_secret::split_names(&[host])
            }
        })
    }

    /// `--webhook-cert-secret-namespace` (or `$WEBHOOK_CERT_SECRET_NAMESPACE`), else `$LEADER_ELECTION_NAMESPACE`.
    fn cert_secret_namespace(&self) -> Result<String, ServingError> {
        let given = |namespace: &String| !namespace.is_empty();
        self.webhook_cert_secret_namespace
            .clone()
            .filter(given)
            .or_else(|| std::env::var(crate::constants::ENV_LEADER_ELECTION_NAMESPACE).ok().filter(given))
            .ok_or(ServingError::MissingCertSecretNamespace)
    }
}

/// Registers webhook configurations with the CA bundle the certificate owner published (unless
/// `--no-webhook-registration`), and keeps them in step with it afterwards (CA rotation): a task re-registers when the
/// published CA bundle changes, and retries a failed registration with backoff. Returns that task; abort it when the
/// server stops. `from` names the certificates' source in errors.
pub async fn keep_registered<F, Fut>(
    webhook: &WebhookOptions,
    mut certificates: CertReceiver,
    from: &str,
    register: F,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServingError>
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ServingError>> + Send,
{
    if webhook.no_webhook_registration {
        return Ok(None);
    }
    let current = certificates.borrow_and_update().ca_bundle().map(str::to_owned);
    let mut registered = current.ok_or_else(|| ServingError::MissingCaBundle { from: from.to_owned() })?;
    register(registered.clone().into_bytes()).await?;
    Ok(Some(tokio::spawn(async move {
        let mut backoff = register_backoff();
        let mut retry_at: Option<Instant> = None;
        loop {
            tokio::select! {
                changed = certificates.changed() => if changed.is_err() {
                    // The owner is gone: the process is stopping.
                    return;
                },
                () = sleep_until(retry_at) => {}
            }
            // Nothing to do when the bundle is the registered one; a source that lost its CA file keeps the registered
            // bundle too (the served certificate did not change CA). Either way a pending retry is moot.
            let current = certificates.borrow_and_update().ca_bundle().map(str::to_owned);
            let Some(current) = current.filter(|current| *current != registered) else {
                retry_at = None;
                continue;
            };
            match register(current.clone().into_bytes()).await {
                Ok(()) => {
                    tracing::info!("CA bundle changed: re-registered the webhooks");
                    registered = current;
                    retry_at = None;
                    backoff = register_backoff();
                }
                Err(e) => {
                    let delay = backoff.next().unwrap_or(MAX_REGISTER_RETRY_DELAY);
                    tracing::warn!(error = %error_chain(&e), retry_in = ?delay, "cannot re-register the webhooks");
                    retry_at = Some(Instant::now() + delay);
                }
            }
        }
    })))
}

fn register_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(MAX_REGISTER_RETRY_DELAY)
        .without_max_times()
        .with_jitter()
        .build()
}

/// Binds `server` once `certificates` holds material, registers its webhook configurations through `register` (kept
/// in step with the CA bundle, see [`keep_registered`]) and serves until `shutdown` resolves. `what` names the server
/// in logs.
pub async fn serve_registered<F, Fut>(
    webhook: &WebhookOptions,
    server: WebhookServer,
    certificates: &Certificates,
    what: &'static str,
    register: F,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError>
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ServingError>> + Send,
{
    let bound = server.bind(certificates.subscribe()).await?;
    tracing::info!(address = %bound.local_addr(), server = what, "webhook server listening");
    let registration = keep_registered(webhook, certificates.subscribe(), certificates.source(), register).await?;
    let result = serve_while_owned(bound, certificates.subscribe(), certificates.source(), shutdown).await;
    if let Some(task) = registration {
        task.abort();
    }
    result
}

/// Serves until `shutdown` resolves, unless the certificate owner behind `owner` stops first (it never stops on its
/// own; a panic would end it): then nothing would renew or reload the serving certificate, so the server stops with
/// an error and the process exits, to be restarted, instead of serving a certificate until it expires.
async fn serve_while_owned(
    bound: BoundWebhookServer,
    mut owner: CertReceiver,
    from: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError> {
    let owner_stopped = async move { while owner.changed().await.is_ok() {} };
    tokio::select! {
        result = bound.serve(shutdown) => Ok(result?),
        () = owner_stopped => Err(ServingError::CertificateOwnerStopped { from: from.to_owned() }),
    }
}

/// A client from `$KUBECONFIG`/`~/.kube/config` or the in-cluster service account.
pub async fn default_client() -> Result<kube::Client, ServingError> {
    kube::Client::try_default().await.map_err(ServingError::Client)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::runtime::tls::{CertState, ServingCerts};

    fn state(ca: &str, pems: &certs::CertPems) -> CertState {
        let certs = ServingCerts::new(Some(ca.to_string()), pems.tls_cert.clone(), pems.tls_key.clone());
        CertState::Ready(Arc::new(certs.expect("usable")))
    }

    async fn next(calls: &mut mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(Duration::from_secs(10), calls.recv()).await.expect("a registration").expect("open")
    }

    #[tokio::test]
    async fn the_server_stops_with_an_error_when_the_certificate_owner_stops() {
        let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
        let (owner, receiver) = watch::channel(state("CA", &pems));
        let config = crate::runtime::server::WebhookServerConfig::new(([127, 0, 0, 1], 0).into());
        let bound = WebhookServer::new(config).bind(receiver.clone()).await.expect("bind");
        let serving =
            tokio::spawn(
                async move { serve_while_owned(bound, receiver, "test source", std::future::pending()).await },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!serving.is_finished(), "serves while the owner runs");
        drop(owner);
        let result = tokio::time::timeout(Duration::from_secs(10), serving).await.expect("stops").expect("joins");
        assert!(
            matches!(&result, Err(ServingError::CertificateOwnerStopped { from }) if from == "test source"),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn the_registrar_follows_the_published_ca_bundle_and_retries_failures() {
        let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
        let (sender, receiver) = watch::channel(state("CA 1", &pems));
        let (calls_tx, mut calls) = mpsc::unbounded_channel();
        let failures_left = Arc::new(AtomicUsize::new(0));
        let failures = failures_left.clone();
        let register = move |bundle: Vec<u8>| {
            let _ = calls_tx.send(String::from_utf8_lossy(&bundle).into_owned());
            let fail = failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
            async move { if fail { Err(ServingError::MissingWebhookUrl) } else { Ok(()) } }
        };
        let task = keep_registered(&WebhookOptions::default(), receiver, "test", register)
            .await
            .expect("registered")
            .expect("a registrar task");
        assert_eq!(next(&mut calls).await, "CA 1", "registered with the published CA bundle at once");

        // New material with the same CA bundle (a renewed serving certificate): nothing to register.
        let renewed = certs::generate_pems(&["localhost"], &[]).expect("generate");
        sender.send(state("CA 1", &renewed)).expect("send");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(calls.try_recv().is_err(), "the unchanged bundle is not registered again");
        // A rotated CA: registered; a failure is retried (with backoff) until it succeeds.
        failures_left.store(1, Ordering::SeqCst);
        sender.send(state("CA 2", &renewed)).expect("send");
        assert_eq!(next(&mut calls).await, "CA 2", "the new bundle is registered");
        assert_eq!(next(&mut calls).await, "CA 2", "the failed registration is retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(calls.try_recv().is_err(), "no more registrations once it succeeded");

        // The owner stopping ends the registrar.
        drop(sender);
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends").expect("no panic");

        let disabled = WebhookOptions { no_webhook_registration: true, ..WebhookOptions::default() };
        let (_, receiver) = watch::channel(CertState::Pending { problem: None });
        let none = keep_registered(&disabled, receiver, "test", |_| async { Ok(()) }).await.expect("nothing to do");
        assert!(none.is_none());
        let (_, receiver) = watch::channel(CertState::Pending { problem: None });
        let missing = keep_registered(&WebhookOptions::default(), receiver, "directory d", |_| async { Ok(()) }).await;
        assert!(matches!(missing, Err(ServingError::MissingCaBundle { from }) if from == "directory d"));
    }
}
