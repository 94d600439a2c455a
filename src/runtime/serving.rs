//! Serving webhooks: the options every webhook-serving command shares (bind address, certificates, how the
//! apiserver reaches the server), and the bind → register → serve sequence that keeps the registration in step with
//! the CA bundle.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::cert_secret;
use crate::runtime::certs;
use crate::runtime::registration::ClientConfigMode;
use crate::runtime::server::{ServerError, WebhookServer};

/// How often the CA bundle file is checked, so a rotated CA is re-registered without restart.
const CA_BUNDLE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

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
    /// Directory with `tls.crt`, `tls.key` and `ca.crt` (reloaded when they change): a mounted Secret, or written by
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
    #[error("reading the CA bundle {path}: {source}")]
    CaBundle { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("connecting to the cluster")]
    Client(#[source] kube::Error),
    #[error("registering webhook configuration {name}: {source}")]
    Register { name: String, source: kube::Error },
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
        }
    }
}

impl WebhookOptions {
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

    /// Puts the certificates into `--webhook-cert-dir` before the server binds: from the Secret of
    /// `--webhook-cert-secret` (then kept in sync by the returned task, which stops when it is dropped, see
    /// [`cert_secret`]), or generated for `--generate-certs-for` (development). Otherwise they are mounted and
    /// nothing is done.
    pub async fn prepare_certificates(&self, client: &kube::Client) -> Result<cert_secret::SyncTask, ServingError> {
        if let Some(secret_name) = &self.webhook_cert_secret {
            let (hostnames, ips) = self.certificate_names()?;
            let config = cert_secret::CertSecretConfig {
                namespace: self.cert_secret_namespace()?,
                secret_name: secret_name.clone(),
                hostnames,
                ips,
                dir: self.webhook_cert_dir.clone(),
                interval: cert_secret::DEFAULT_SYNC_INTERVAL,
            };
            return Ok(cert_secret::start(client.clone(), config).await?);
        }
        if self.generate_certs_for.is_empty() {
            return Ok(cert_secret::SyncTask::none());
        }
        let (hosts, ips) = cert_secret::split_names(&self.generate_certs_for);
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        certs::load_or_generate(&self.webhook_cert_dir, &hosts, &ips)
            .map_err(|source| ServingError::Certs { dir: self.webhook_cert_dir.clone(), source })?;
        Ok(cert_secret::SyncTask::none())
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

    /// The CA bundle the apiserver must trust: `ca.crt` beside the serving certificate.
    pub fn ca_bundle(&self) -> Result<Vec<u8>, ServingError> {
        let path = self.webhook_cert_dir.join(certs::CA_CERT_FILE);
        std::fs::read(&path).map_err(|source| ServingError::CaBundle { path, source })
    }
}

/// Registers webhook configurations with the current CA bundle (unless `--no-webhook-registration`), and keeps them
/// in step with the mounted CA afterwards (CA rotation) by re-registering when `ca.crt` changes. Returns the task
/// that watches the CA; abort it when the server stops.
pub async fn keep_registered<F, Fut>(
    webhook: &WebhookOptions,
    register: F,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServingError>
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ServingError>> + Send,
{
    if webhook.no_webhook_registration {
        return Ok(None);
    }
    let mut ca_bundle = webhook.ca_bundle()?;
    register(ca_bundle.clone()).await?;
    let webhook = webhook.clone();
    Ok(Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(CA_BUNDLE_CHECK_INTERVAL).await;
            match webhook.ca_bundle() {
                Ok(current) if current != ca_bundle => match register(current.clone()).await {
                    Ok(()) => {
                        tracing::info!("CA bundle changed: re-registered the webhooks");
                        ca_bundle = current;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot re-register the webhooks"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the CA bundle"),
            }
        }
    })))
}

/// Binds `server`, registers its webhook configurations through `register` (kept in step with the CA bundle, see
/// [`keep_registered`]) and serves until `shutdown` resolves. `what` names the server in logs.
pub async fn serve_registered<F, Fut>(
    webhook: &WebhookOptions,
    server: WebhookServer,
    what: &'static str,
    register: F,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError>
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ServingError>> + Send,
{
    let bound = server.bind().await?;
    tracing::info!(address = %bound.local_addr(), server = what, "webhook server listening");
    let registration = keep_registered(webhook, register).await?;
    let result = bound.serve(shutdown).await;
    if let Some(task) = registration {
        task.abort();
    }
    Ok(result?)
}

/// A client from `$KUBECONFIG`/`~/.kube/config` or the in-cluster service account.
pub async fn default_client() -> Result<kube::Client, ServingError> {
    kube::Client::try_default().await.map_err(ServingError::Client)
}
