//! The TLS webhook server (axum + rustls on the ring provider).
//!
//! One HTTPS listener serves every admission webhook of the process, each on its own path, plus
//! `/healthz` and `/readyz`:
//!
//! ```no_run
//! # use gardener_extension_cri_resmgr::webhook::{WebhookServer, WebhookServerConfig, DynamicAdmissionRequest};
//! # use kube::core::admission::AdmissionResponse;
//! # async fn run(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
//! let mut server = WebhookServer::new(WebhookServerConfig::new("0.0.0.0:10250".parse()?, "/tmp/webhook-certs"));
//! server.register("/webhooks/validate-shoot", |request: DynamicAdmissionRequest| async move {
//!     AdmissionResponse::from(&request)
//! })?;
//! let server = server.bind().await?; // waits for tls.crt/tls.key, binds the port
//! println!("serving on {}", server.local_addr());
//! server.serve(shutdown).await?; // returns after a graceful shutdown
//! # Ok(()) }
//! ```
//!
//! The serving certificate is read from `tls.crt`/`tls.key` in the certificate directory and
//! re-read every [`WebhookServerConfig::cert_reload_interval`]: when the content changed (a Secret
//! update swaps kubelet's `..data` symlink, Gardener-style certificate management rewrites the
//! files), new TLS connections get the new certificate, without a restart. Content is compared
//! rather than mtimes because a symlink swap does not change the files' own mtimes.

use crate::runtime::error_chain;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::task::{JoinError, JoinHandle};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{debug, error, info, warn};

use super::review::{AdmissionHandler, DynHandler, internal_error, into_review, parse_review};
use crate::runtime::certs::{TLS_CERT_FILE, TLS_KEY_FILE};

/// kube-apiserver's limit for an admission request body (3 MiB); larger bodies cannot be legitimate.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Per-request timeout; matches the webhooks' `timeoutSeconds: 10`, after which the apiserver gives up anyway.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are re-read.
pub const DEFAULT_CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// How long [`WebhookServer::bind`] waits for usable certificate files to appear.
pub const DEFAULT_CERT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight requests may finish after shutdown was requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Liveness endpoint: 200 while the process serves.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness endpoint: 200 once the TLS material is loaded, 503 after shutdown began.
pub const READYZ_PATH: &str = "/readyz";

/// Settings of a [`WebhookServer`]. [`WebhookServerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct WebhookServerConfig {
    /// Address to listen on; port 0 picks a free port (see [`BoundWebhookServer::local_addr`]).
    pub bind_address: SocketAddr,
    /// Directory holding `tls.crt` and `tls.key` (PEM).
    pub cert_dir: PathBuf,
    /// Larger request bodies are answered with 413.
    pub max_body_bytes: usize,
    /// Requests taking longer (including reading the body) are answered with 408.
    pub request_timeout: Duration,
    /// How often the certificate files are checked for changes.
    pub cert_reload_interval: Duration,
    /// How long [`WebhookServer::bind`] waits for usable certificate files; zero: fail at once.
    pub cert_wait_timeout: Duration,
    /// Grace period for in-flight requests on shutdown; connections still open after it are closed.
    pub shutdown_grace: Duration,
}

impl WebhookServerConfig {
    /// A configuration with the default limits.
    pub fn new(bind_address: SocketAddr, cert_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind_address,
            cert_dir: cert_dir.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            cert_reload_interval: DEFAULT_CERT_RELOAD_INTERVAL,
            cert_wait_timeout: DEFAULT_CERT_WAIT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.cert_dir.join(TLS_CERT_FILE)
    }

    fn key_path(&self) -> PathBuf {
        self.cert_dir.join(TLS_KEY_FILE)
    }
}

/// Errors of the webhook server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A handler path is not usable as a route.
    #[error("invalid webhook path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// Two handlers were registered on the same path.
    #[error("a webhook handler is already registered on {path:?}")]
    DuplicatePath { path: String },
    /// A certificate file could not be read.
    #[error("cannot read {path}")]
    ReadCert {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The certificate files do not form a usable TLS identity.
    #[error("unusable TLS material in {cert} / {key}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: TlsMaterialError,
    },
    /// No usable certificate appeared within [`WebhookServerConfig::cert_wait_timeout`].
    #[error("no usable webhook certificate in {dir} after {waited:?}")]
    CertWaitTimeout {
        dir: PathBuf,
        waited: Duration,
        #[source]
        last: Box<ServerError>,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The server failed while serving.
    #[error("webhook server on {address} failed")]
    Serve {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
}

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

/// The webhook server before it listens: collects the handlers.
pub struct WebhookServer {
    config: WebhookServerConfig,
    handlers: BTreeMap<String, Arc<dyn DynHandler>>,
}

impl WebhookServer {
    /// A server without handlers; add them with [`WebhookServer::register`].
    pub fn new(config: WebhookServerConfig) -> Self {
        Self { config, handlers: BTreeMap::new() }
    }

    /// Serves `handler` on `path` (POST), e.g. `/webhooks/validate-shoot`.
    ///
    /// The path must start with `/`, be free of route patterns (`{`, `}`, `*`) and not be taken by
    /// another handler or by `/healthz` / `/readyz`.
    pub fn register(&mut self, path: &str, handler: impl AdmissionHandler) -> Result<(), ServerError> {
        let invalid = |reason| Err(ServerError::InvalidPath { path: path.to_owned(), reason });
        if !path.starts_with('/') || path.len() < 2 {
            return invalid("must start with '/' and name a route");
        }
        if path.contains(['{', '}', '*', '?', '#']) || path.chars().any(char::is_whitespace) {
            return invalid("must be a literal path without patterns, query or whitespace");
        }
        if path == HEALTHZ_PATH || path == READYZ_PATH {
            return invalid("reserved for health checks");
        }
        if self.handlers.contains_key(path) {
            return Err(ServerError::DuplicatePath { path: path.to_owned() });
        }
        self.handlers.insert(path.to_owned(), Arc::new(handler));
        Ok(())
    }

    /// The registered handler paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// The configuration the server was created with.
    pub fn config(&self) -> &WebhookServerConfig {
        &self.config
    }

    /// Loads the TLS material (waiting up to [`WebhookServerConfig::cert_wait_timeout`] for the
    /// files to appear and be usable) and binds the listening socket.
    pub async fn bind(self) -> Result<BoundWebhookServer, ServerError> {
        let material = wait_for_tls(&self.config).await?;
        let address = self.config.bind_address;
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { address, source })?;
        let listener = listener.into_std().map_err(|source| ServerError::Bind { address, source })?;
        info!(address = %local_addr, paths = ?self.handlers.keys().collect::<Vec<_>>(), "webhook server listening");
        Ok(BoundWebhookServer { config: self.config, handlers: self.handlers, listener, local_addr, material })
    }

    /// [`bind`](Self::bind) and [`serve`](BoundWebhookServer::serve) in one step.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        self.bind().await?.serve(shutdown).await
    }
}

/// The webhook server with its socket bound and its certificate loaded.
pub struct BoundWebhookServer {
    config: WebhookServerConfig,
    handlers: BTreeMap<String, Arc<dyn DynHandler>>,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    material: TlsMaterial,
}

impl BoundWebhookServer {
    /// The address actually bound (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets in-flight requests
    /// finish (up to [`WebhookServerConfig::shutdown_grace`]) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self { config, handlers, listener, local_addr, material } = self;
        let TlsMaterial { cert_pem, key_pem, server_config } = material;
        let tls = RustlsConfig::from_config(Arc::new(server_config));
        let ready = Arc::new(AtomicBool::new(true));
        let router = router(&config, &handlers, ready.clone());

        let handle: Handle<SocketAddr> = Handle::new();
        let shutdown_task = AbortOnDrop(tokio::spawn({
            let (handle, ready, grace) = (handle.clone(), ready.clone(), config.shutdown_grace);
            async move {
                shutdown.await;
                info!(address = %local_addr, "webhook server shutting down");
                ready.store(false, Ordering::SeqCst);
                handle.graceful_shutdown(Some(grace));
            }
        }));
        let reload_task = AbortOnDrop(tokio::spawn(watch_certs(
            config.cert_path(),
            config.key_path(),
            config.cert_reload_interval,
            tls.clone(),
            (cert_pem, key_pem),
        )));

        let result = match axum_server::from_tcp_rustls(listener, tls) {
            Ok(server) => server
                .handle(handle)
                // Idle connections that never send a request must not pile up.
                .first_request_timeout(config.request_timeout)
                .serve(router.into_make_service())
                .await
                .map_err(|source| ServerError::Serve { address: local_addr, source }),
            Err(source) => Err(ServerError::Serve { address: local_addr, source }),
        };
        drop((shutdown_task, reload_task));
        match &result {
            Ok(()) => info!(address = %local_addr, "webhook server stopped"),
            Err(e) => error!(address = %local_addr, error = %e, "webhook server failed"),
        }
        result
    }
}

fn router(
    config: &WebhookServerConfig,
    handlers: &BTreeMap<String, Arc<dyn DynHandler>>,
    ready: Arc<AtomicBool>,
) -> Router {
    let mut router = Router::new().route(HEALTHZ_PATH, get(|| async { "ok" })).route(
        READYZ_PATH,
        get(move || async move {
            if ready.load(Ordering::SeqCst) {
                (StatusCode::OK, "ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "not ready")
            }
        }),
    );
    for (path, handler) in handlers {
        let (handler, path_label): (Arc<dyn DynHandler>, Arc<str>) = (handler.clone(), Arc::from(path.as_str()));
        router = router.route(path, post(move |body: Bytes| admit(handler.clone(), path_label.clone(), body)));
    }
    router
        // axum's own extractor limit (2 MiB by default) would otherwise win for bodies without Content-Length.
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout))
        .layer(TraceLayer::new_for_http())
}

/// One admission call: decode, run the handler isolated in its own task, wrap its answer.
async fn admit(handler: Arc<dyn DynHandler>, path: Arc<str>, body: Bytes) -> Response {
    let request = match parse_review(&body) {
        Ok(request) => request,
        Err(e) => {
            warn!(%path, error = %e, "rejecting a request that is not an admission review");
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let uid = request.uid.clone();
    let (operation, kind) = (request.operation.clone(), request.kind.kind.clone());
    let (namespace, name) = (request.namespace.clone().unwrap_or_default(), request.name.clone());
    let started = Instant::now();

    // A separate task turns a panic into a JoinError instead of a dropped connection; AbortOnDrop
    // stops the handler when the request itself is abandoned (timeout, client gone).
    let response = match AbortOnDrop(tokio::spawn(handler.call(request))).await {
        Ok(response) => response,
        Err(e) => {
            error!(%path, %uid, ?operation, %kind, %namespace, %name, reason = %join_error_reason(e), "admission handler failed; denying");
            internal_error(&uid)
        }
    };
    let elapsed_ms = started.elapsed().as_millis();
    if response.allowed {
        debug!(%path, %uid, ?operation, %kind, %namespace, %name, elapsed_ms, patched = response.patch.is_some(), "admitted");
    } else {
        info!(%path, %uid, ?operation, %kind, %namespace, %name, elapsed_ms, reason = %response.result.message, "denied");
    }

    match serde_json::to_vec(&into_review(&uid, response)) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            error!(%path, %uid, error = %e, "cannot serialize the admission response");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize the admission response").into_response()
        }
    }
}

fn join_error_reason(e: JoinError) -> String {
    if !e.is_panic() {
        return "handler task was cancelled".to_owned();
    }
    let payload = e.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    format!("handler panicked: {message}")
}

/// A spawned task that is aborted when this wrapper is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

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

/// The certificate files' content together with the rustls configuration built from it.
struct TlsMaterial {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    server_config: ServerConfig,
}

/// Builds a rustls server configuration (ring provider, TLS 1.2 + 1.3, ALPN h2 + http/1.1).
fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<ServerConfig, TlsMaterialError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    if chain.is_empty() {
        return Err(TlsMaterialError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn read_file(path: &Path) -> Result<Vec<u8>, ServerError> {
    tokio::fs::read(path).await.map_err(|source| ServerError::ReadCert { path: path.to_path_buf(), source })
}

/// Reads and validates the pair; returns the raw content too, so changes can be detected.
async fn load_tls(cert: &Path, key: &Path) -> Result<TlsMaterial, ServerError> {
    let cert_pem = read_file(cert).await?;
    let key_pem = read_file(key).await?;
    let server_config = server_config(&cert_pem, &key_pem).map_err(|source| ServerError::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })?;
    Ok(TlsMaterial { cert_pem, key_pem, server_config })
}

async fn wait_for_tls(config: &WebhookServerConfig) -> Result<TlsMaterial, ServerError> {
    let (cert, key) = (config.cert_path(), config.key_path());
    let started = Instant::now();
    let mut logged = false;
    loop {
        match load_tls(&cert, &key).await {
            Ok(material) => {
                info!(cert = %cert.display(), "loaded webhook serving certificate");
                return Ok(material);
            }
            Err(e) if started.elapsed() < config.cert_wait_timeout => {
                if !logged {
                    info!(dir = %config.cert_dir.display(), reason = %error_chain(&e), "waiting for the webhook certificate");
                    logged = true;
                }
                tokio::time::sleep(config.cert_reload_interval.min(config.cert_wait_timeout)).await;
            }
            Err(e) => {
                return Err(ServerError::CertWaitTimeout {
                    dir: config.cert_dir.clone(),
                    waited: started.elapsed(),
                    last: Box::new(e),
                });
            }
        }
    }
}

/// Polls the certificate files and swaps the served certificate when their content changed.
///
/// A pair that is unusable (missing, half-written, key not matching) keeps the current certificate
/// in service; the problem is logged once per distinct problem, and retried on the next tick.
async fn watch_certs(
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    tls: RustlsConfig,
    (mut cert_pem, mut key_pem): (Vec<u8>, Vec<u8>),
) {
    let mut problem: Option<String> = None;
    // `interval` panics on zero.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick completes immediately
    loop {
        ticker.tick().await;
        let (new_cert, new_key) = match (read_file(&cert).await, read_file(&key).await) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                report_problem(&mut problem, &e);
                continue;
            }
        };
        if new_cert == cert_pem && new_key == key_pem {
            if problem.take().is_some() {
                info!(cert = %cert.display(), "webhook certificate files are back to the served certificate");
            }
            continue;
        }
        match server_config(&new_cert, &new_key) {
            Ok(config) => {
                tls.reload_from_config(Arc::new(config));
                (cert_pem, key_pem) = (new_cert, new_key);
                problem = None;
                info!(cert = %cert.display(), "reloaded webhook serving certificate");
            }
            Err(source) => {
                let e = ServerError::Tls { cert: cert.clone(), key: key.clone(), source };
                report_problem(&mut problem, &e);
            }
        }
    }
}

fn report_problem(problem: &mut Option<String>, e: &ServerError) {
    let text = error_chain(e);
    if problem.as_deref() != Some(text.as_str()) {
        warn!(error = %text, "cannot reload the webhook certificate; keeping the current one");
        *problem = Some(text);
    }
}

#[cfg(test)]
mod tests;
