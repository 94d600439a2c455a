//! The TLS webhook server: hyper serves HTTP/1.1 over tokio-rustls (rustls on the ring provider), each request goes
//! to the webhook of its exact path, and the answers are axum responses.
//!
//! One HTTPS listener serves every admission webhook of the process, each on its own path, plus
//! `/healthz` and `/readyz`:
//!
//! ```no_run
//! # use gardener_extension_cri_resmgr::runtime::{WebhookServer, WebhookServerConfig, RawAdmissionRequest};
//! # use gardener_extension_cri_resmgr::runtime::tls;
//! # use kube::core::admission::AdmissionResponse;
//! # async fn run(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
//! let certificates = tls::files::watch_dir("/tmp/webhook-certs"); // the process's certificate owner
//! let mut server = WebhookServer::new(WebhookServerConfig::new("0.0.0.0:10250".parse()?));
//! server.register("/webhooks/validate-shoot", |request: RawAdmissionRequest| async move {
//!     AdmissionResponse::from(&request)
//! })?;
//! let server = server.bind(certificates.subscribe()).await?; // waits for the certificate, binds the port
//! println!("serving on {}", server.local_addr());
//! server.serve(shutdown).await?; // returns after a graceful shutdown
//! # Ok(()) }
//! ```
//!
//! The server does not read certificates itself: it is handed the receiver of what the process's certificate owner
//! publishes ([`crate::runtime::tls`]) and resolves every TLS handshake with the latest value, so a renewed or
//! rotated certificate reaches new connections without a restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls::ServerConfig;
use thiserror::Error;
use tokio::task::JoinError;
use tracing::{debug, error, info, warn};

use super::AbortOnDrop;
use super::answer_memo::{AnswerMemo, Outcome, Reused};
use super::metrics::{AdmissionResult, DenialReason, WebhookMetrics, WebhookRecorder};
use super::review::{AdmissionHandler, Answer, DynHandler, Reuse, internal_error, into_review, parse_review};
use crate::runtime::tls::{self, CertReceiver, CertState};

/// kube-apiserver's limit for the body of a write request (3 MiB): the largest object it can put into a review.
pub const APISERVER_MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024;
/// Room for the review around the objects (uid, kind, resource, userInfo, options) and what the apiserver adds to
/// an object after it was written (e.g. managedFields).
pub const REVIEW_WRAPPER_BYTES: usize = 1024 * 1024;
/// The largest admission request body served: an UPDATE carries the object and the old object, each up to
/// [`APISERVER_MAX_OBJECT_BYTES`], plus the wrapper. A Shoot just under the apiserver's limit must not get a 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * APISERVER_MAX_OBJECT_BYTES + REVIEW_WRAPPER_BYTES;
/// Per-request timeout, reading the body included; matches the webhooks' `timeoutSeconds: 10`, after which the
/// apiserver gives up anyway. A client that sends its body slowly (a byte per second) is answered 408 after it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head (request line and headers) over HTTP/1.1, counted from when
/// the server starts waiting for it, so it also ends idle keep-alive connections. A client that trickles its headers
/// (slowloris) holds a connection no longer than this.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to complete the TLS handshake; a connection that stalls in it is closed.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`WebhookServer::bind`] waits for the certificate owner to publish usable material.
pub const DEFAULT_CERT_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight requests may finish after shutdown was requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Stack of the threads that run admission work (decoding the review, the handler, encoding its answer).
///
/// Objects may nest up to [`MAX_NESTING_DEPTH`](super::review::MAX_NESTING_DEPTH) levels (the apiserver's own bound), and serde's decoding,
/// re-encoding and dropping of such values recurse once per level; the default 2 MiB of a tokio worker is not
/// enough for that in every build, so admission work runs on threads sized for the bound. It is address space,
/// not memory: pages are only touched as deep as a request actually nests (in 2 MiB steps where transparent huge
/// pages are always on).
pub const ADMISSION_THREAD_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Liveness endpoint: 200 while the process serves.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness endpoint: 200 once the TLS material is loaded and every check given to
/// [`WebhookServer::ready_when`] holds, 503 before that and after shutdown began.
pub const READYZ_PATH: &str = "/readyz";

/// Settings of a [`WebhookServer`]. [`WebhookServerConfig::new`] fills in the defaults.
#[derive(Debug, Clone)]
pub struct WebhookServerConfig {
    /// Address to listen on; port 0 picks a free port (see [`BoundWebhookServer::local_addr`]).
    pub bind_address: SocketAddr,
    /// Larger admission reviews are denied with a message naming the limit, other larger bodies and any beyond
    /// [`hard_body_ceiling`] answered with 413 (default: [`DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// Requests taking longer (including reading the body) are answered with 408. (How long a connection may take to
    /// send a request's head, the first one included, is [`Self::header_read_timeout`].)
    pub request_timeout: Duration,
    /// HTTP/1.1 connections that do not deliver a request's head within it are closed (see
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// Connections that do not complete the TLS handshake within it are closed.
    pub tls_handshake_timeout: Duration,
    /// How long [`WebhookServer::bind`] waits for usable certificate material; zero: fail at once.
    pub cert_wait_timeout: Duration,
    /// Grace period for in-flight requests on shutdown; connections still open after it are closed.
    pub shutdown_grace: Duration,
}

impl WebhookServerConfig {
    /// A configuration with the default limits.
    pub fn new(bind_address: SocketAddr) -> Self {
        Self {
            bind_address,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            cert_wait_timeout: DEFAULT_CERT_WAIT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
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
    /// No usable certificate was published within [`WebhookServerConfig::cert_wait_timeout`]; `last` is the
    /// certificate owner's reason.
    #[error("no usable webhook certificate after {waited:?}: {last}")]
    CertWaitTimeout { waited: Duration, last: String },
    /// The certificate owner stopped before it published usable material.
    #[error("the webhook certificate owner stopped before it loaded a certificate")]
    CertOwnerStopped,
    /// rustls refused the server configuration.
    #[error("cannot configure TLS")]
    TlsConfig(#[source] rustls::Error),
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

/// The webhook server before it listens: collects the handlers.
pub struct WebhookServer {
    config: WebhookServerConfig,
    handlers: BTreeMap<String, Arc<dyn DynHandler>>,
    readiness_checks: Vec<ReadinessCheck>,
    metrics: Option<WebhookMetrics>,
}

/// A condition `/readyz` requires besides loaded certificates (e.g. "the stores the handlers read are synced").
pub type ReadinessCheck = Arc<dyn Fn() -> bool + Send + Sync>;

impl WebhookServer {
    /// A server without handlers; add them with [`WebhookServer::register`].
    pub fn new(config: WebhookServerConfig) -> Self {
        Self { config, handlers: BTreeMap::new(), readiness_checks: Vec::new(), metrics: None }
    }

    /// Records every answer and the served certificate's expiry in `metrics`.
    pub fn with_metrics(mut self, metrics: WebhookMetrics) -> Self {
        self.metrics = Some(metrics);
        self
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

    /// `/readyz` reports ready only while `check` holds too (it is called on every probe, so it must be cheap).
    pub fn ready_when(&mut self, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.readiness_checks.push(Arc::new(check));
    }

    /// The registered handler paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// The configuration the server was created with.
    pub fn config(&self) -> &WebhookServerConfig {
        &self.config
    }

    /// Waits (up to [`WebhookServerConfig::cert_wait_timeout`]) until `certificates` holds usable material, and
    /// binds the listening socket. The server serves whatever `certificates` holds at each handshake.
    pub async fn bind(self, certificates: CertReceiver) -> Result<BoundWebhookServer, ServerError> {
        let tls = wait_for_certificates(certificates, self.config.cert_wait_timeout).await?;
        let address = self.config.bind_address;
        let listener =
            tokio::net::TcpListener::bind(address).await.map_err(|source| ServerError::Bind { address, source })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind { address, source })?;
        let listener = listener.into_std().map_err(|source| ServerError::Bind { address, source })?;
        info!(address = %local_addr, paths = ?self.handlers.keys().collect::<Vec<_>>(), "webhook server listening");
        Ok(BoundWebhookServer {
            config: self.config,
            handlers: self.handlers,
            readiness_checks: self.readiness_checks,
            metrics: self.metrics,
            listener,
            local_addr,
            tls,
        })
    }

    /// [`bind`](Self::bind) and [`serve`](BoundWebhookServer::serve) in one step.
    pub async fn serve(
        self,
        certificates: CertReceiver,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        self.bind(certificates).await?.serve(shutdown).await
    }
}

/// The webhook server with its socket bound and its certificate loaded.
pub struct BoundWebhookServer {
    config: WebhookServerConfig,
    handlers: BTreeMap<String, Arc<dyn DynHandler>>,
    readiness_checks: Vec<ReadinessCheck>,
    metrics: Option<WebhookMetrics>,
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: ServingTls,
}

/// The TLS side of a bound server: the rustls configuration (resolving from the receiver) and the receiver itself,
/// for readiness.
struct ServingTls {
    certificates: CertReceiver,
    server_config: ServerConfig,
}

impl BoundWebhookServer {
    /// The address actually bound (with the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets in-flight requests
    /// finish (up to [`WebhookServerConfig::shutdown_grace`]) and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let Self { config, handlers, readiness_checks, metrics, listener, local_addr, tls } = self;
        let ServingTls { certificates, server_config } = tls;
        let ready = Arc::new(AtomicBool::new(true));
        let _expiry =
            metrics.clone().map(|metrics| AbortOnDrop(tokio::spawn(follow_expiry(certificates.clone(), metrics))));
        let routes = observed_routes(
            &config,
            &handlers,
            metrics,
            Readiness { serving: ready.clone(), certificates, checks: readiness_checks.into() },
        );
        let _timer_anchor = AbortOnDrop(tokio::spawn(anchor_timers()));
        let serve_error = |source| ServerError::Serve { address: local_addr, source };
        listener.set_nonblocking(true).map_err(serve_error)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(serve_error)?;

        // Slow clients must not hold connections open: each phase of a connection has its own bound (the TLS
        // handshake, the head of every request, the first included, each request with its body). HTTP/1.1 only, as
        // controller-runtime's webhook servers do since the HTTP/2 rapid-reset attacks: HTTP/2 would need bounds of
        // its own (streams, idle connections) and gives an admission webhook nothing the apiserver needs.
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(config.header_read_timeout);
        let connections = Connections {
            tls: tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
            tls_handshake_timeout: config.tls_handshake_timeout,
            http,
            service: hyper_util::service::TowerToHyperService::new(routes),
            open: Arc::new(std::sync::Mutex::new(OpenConnections::default())),
            tracker: tokio_util::task::TaskTracker::new(),
            closing: tokio_util::sync::CancellationToken::new(),
        };
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((tcp, _)) => connections.serve(tcp),
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself stays usable.
                    warn!(address = %local_addr, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        info!(address = %local_addr, "webhook server shutting down");
        ready.store(false, Ordering::SeqCst);
        drop(listener);
        connections.shut_down(config.shutdown_grace).await;
        info!(address = %local_addr, "webhook server stopped");
        Ok(())
    }
}

/// The open connections of a serving [`BoundWebhookServer`], and how each is served.
struct Connections {
    tls: tokio_rustls::TlsAcceptor,
    tls_handshake_timeout: Duration,
    http: hyper::server::conn::http1::Builder,
    service: hyper_util::service::TowerToHyperService<Routes>,
    open: Arc<std::sync::Mutex<OpenConnections>>,
    tracker: tokio_util::task::TaskTracker,
    /// Cancelled when the shutdown grace period is over: what is still open is closed.
    closing: tokio_util::sync::CancellationToken,
}

/// How to tell each open connection that the server shuts down: a one-shot channel each, so that a connection's
/// task learns of it without a lock shared with every other connection on every wake.
#[derive(Default)]
struct OpenConnections {
    next: u64,
    shutdown: std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>,
}

impl Connections {
    /// Serves `tcp` in a task of its own: TLS handshake (bounded), then HTTP/1.1 until the client closes, a bound is
    /// exceeded, or the server shuts down (the request in flight is finished first).
    fn serve(&self, tcp: tokio::net::TcpStream) {
        // Answers go out at once: an answer written in more than one segment must not wait for the
        // acknowledgement of the first, which a client delays when it has nothing to send.
        let _ = tcp.set_nodelay(true);
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let id = {
            let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            open.next += 1;
            let id = open.next;
            open.shutdown.insert(id, shutdown_tx);
            id
        };
        let (tls, handshake_timeout) = (self.tls.clone(), self.tls_handshake_timeout);
        let (http, service, open) = (self.http.clone(), self.service.clone(), self.open.clone());
        let closing = self.closing.clone();
        self.tracker.spawn(async move {
            let _closed = Closed { open, id };
            let mut shutdown_rx = shutdown_rx;
            // A connection still in its handshake when the server shuts down has no request to finish: it is closed.
            let handshake = tokio::select! {
                handshake = tokio::time::timeout(handshake_timeout, tls.accept(tcp)) => handshake,
                _ = &mut shutdown_rx => return,
                () = closing.cancelled() => return,
            };
            let Ok(Ok(stream)) = handshake else { return };
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            // While serving, only this connection's own channel is watched (nothing shared is touched per request).
            tokio::select! {
                biased;
                _ = connection.as_mut() => return,
                _ = shutdown_rx => {}
            }
            // Shutting down: no new request on this connection; the one in flight is answered.
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection => {}
                () = closing.cancelled() => {}
            }
        });
    }

    /// Tells every open connection to finish its request in flight and close, and waits for them up to `grace`;
    /// connections still open after it are closed.
    async fn shut_down(self, grace: Duration) {
        let senders: Vec<_> = {
            let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            open.shutdown.drain().map(|(_, sender)| sender).collect()
        };
        for sender in senders {
            let _ = sender.send(());
        }
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            warn!(?grace, "connections still open after the shutdown grace period; closing them");
            self.closing.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Takes a connection off the list of open ones when its task ends.
struct Closed {
    open: Arc<std::sync::Mutex<OpenConnections>>,
    id: u64,
}

impl Drop for Closed {
    fn drop(&mut self) {
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner).shutdown.remove(&self.id);
    }
}

/// How often [`anchor_timers`] wakes.
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`TIMER_ANCHOR_PERIOD`] on the runtime, for as long as the server serves.
///
/// Requests arm timers (hyper's header read timeout while a connection waits for its next request; the request timeout
/// when a request is not answered in its first poll), each seconds away. tokio wakes the thread parked in its time
/// driver whenever a timer is armed that is due earlier than any other it holds, to shorten its sleep: with no other
/// timer, that was one more thread woken per request, which at one connection cost as much as the rest of answering
/// a kept answer. With this timer always due
/// first, the requests' timers never are, and the parked thread sleeps on (it wakes once per period instead).
async fn anchor_timers() {
    let mut ticks = tokio::time::interval(TIMER_ANCHOR_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
}

/// What `/readyz` answers from: ready while serving (not shutting down), certificate material is loaded and every
/// check holds.
#[derive(Clone)]
struct Readiness {
    serving: Arc<AtomicBool>,
    certificates: CertReceiver,
    checks: Arc<[ReadinessCheck]>,
}

impl Readiness {
    fn is_ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
            && self.certificates.borrow().current().is_some()
            && self.checks.iter().all(|check| check())
    }
}

#[cfg(test)]
fn routes(
    config: &WebhookServerConfig,
    handlers: &BTreeMap<String, Arc<dyn DynHandler>>,
    readiness: Readiness,
) -> Routes {
    observed_routes(config, handlers, None, readiness)
}

/// The routes, recording every answer in `metrics` when given.
///
/// Each webhook path is served by its own [`Webhook`], which reads the body within the limits, answers and counts
/// every answer itself, with no tower layers around it: a stack of boxed layers is cloned for every request, which
/// cost more than giving a kept answer (see [`super::answer_memo`]).
fn observed_routes(
    config: &WebhookServerConfig,
    handlers: &BTreeMap<String, Arc<dyn DynHandler>>,
    metrics: Option<WebhookMetrics>,
    readiness: Readiness,
) -> Routes {
    let webhooks = handlers
        .iter()
        .map(|(path, handler)| {
            let observer = metrics.as_ref().map(|metrics| Observer(metrics.recorder(webhook_name(path))));
            let webhook = Webhook {
                handler: handler.clone(),
                path: Arc::from(path.as_str()),
                observer,
                // Each webhook keeps its own answers: the same review gets different answers from different webhooks.
                memo: Arc::new(AnswerMemo::with_volatile_strings(handler.volatile_strings())),
                limit: config.max_body_bytes,
                request_timeout: config.request_timeout,
            };
            (Box::<str>::from(path.as_str()), Arc::new(webhook))
        })
        .collect();
    Routes(Arc::new(RouteTable { webhooks, readiness }))
}

/// What the server answers on which path: each webhook on its own, [`HEALTHZ_PATH`] and [`READYZ_PATH`]; any other
/// path is 404.
///
/// A lookup by the exact path rather than axum's `Router`, which for every request clones the matched route's boxed
/// service: an allocation more than a kept answer, which allocates once, needs.
#[derive(Clone)]
struct Routes(Arc<RouteTable>);

struct RouteTable {
    /// Each webhook by its path. A process serves a handful, so a scan of the paths costs less than hashing one.
    webhooks: Vec<(Box<str>, Arc<Webhook>)>,
    readiness: Readiness,
}

impl<B> tower::Service<axum::http::Request<B>> for Routes
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if let Some((_, webhook)) = self.0.webhooks.iter().find(|(served, _)| **served == *path) {
            let webhook = webhook.clone();
            return Box::pin(async move { Ok(webhook.serve(request).await) });
        }
        let response = match path {
            HEALTHZ_PATH => probe(request.method(), true),
            READYZ_PATH => probe(request.method(), self.0.readiness.is_ready()),
            _ => StatusCode::NOT_FOUND.into_response(),
        };
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// The answer of a health probe (GET or HEAD): 200 when `ok`, 503 otherwise.
fn probe(method: &axum::http::Method, ok: bool) -> Response {
    use axum::http::Method;
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET,HEAD")]).into_response();
    }
    if ok {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

/// One webhook path: its handler, its kept answers, its limits and where its answers are counted.
struct Webhook {
    handler: Arc<dyn DynHandler>,
    path: Arc<str>,
    observer: Option<Observer>,
    memo: Arc<AnswerMemo>,
    /// See [`WebhookServerConfig::max_body_bytes`].
    limit: usize,
    request_timeout: Duration,
}

impl Webhook {
    /// Answers one HTTP request: only POST, within the request timeout (reading the body included, so a client that
    /// sends its body slowly is answered 408), with the body read up to [`hard_body_ceiling`]. Every answer is
    /// counted: those without a review as failed.
    async fn serve<B>(self: &Arc<Self>, request: axum::http::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        if request.method() != axum::http::Method::POST {
            self.failed();
            return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "POST")]).into_response();
        }
        let answer = self.read_and_answer(request.into_body());
        tokio::pin!(answer);
        // Most requests arrive whole with their head, and a kept answer waits for nothing: such a request is answered
        // in this first poll, without arming a timer (arming and clearing one showed in a profile of kept answers at
        // about half the cost of the memo's lookup). Anything that waits is bounded by the timeout from here on.
        if let Some(response) = futures::future::poll_immediate(answer.as_mut()).await {
            return response;
        }
        match tokio::time::timeout(self.request_timeout, answer).await {
            Ok(response) => response,
            Err(_) => {
                warn!(path = %self.path, timeout = ?self.request_timeout, "admission request timed out");
                self.failed();
                StatusCode::REQUEST_TIMEOUT.into_response()
            }
        }
    }

    async fn read_and_answer<B>(self: &Arc<Self>, body: B) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let ceiling = hard_body_ceiling(self.limit);
        // A body announced beyond the ceiling is refused before it is read.
        if usize::try_from(http_body::Body::size_hint(&body).lower()).map_or(true, |announced| announced > ceiling) {
            self.failed();
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, ceiling)).await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                self.failed();
                if e.is::<http_body_util::LengthLimitError>() {
                    return StatusCode::PAYLOAD_TOO_LARGE.into_response();
                }
                debug!(path = %self.path, error = %e, "cannot read an admission request's body");
                return (StatusCode::BAD_REQUEST, "cannot read the request body").into_response();
            }
        };
        let started = Instant::now();
        if body.len() > self.limit {
            let response = too_large(&self.path, &body, self.limit);
            if let Some(observer) = &self.observer {
                observer.too_large(response.status(), started);
            }
            response
        } else if let Some(reused) = self.memo.reuse(&body) {
            // A kept answer walks no object, so it needs neither the admission runtime nor a task.
            answered_again(&self.path, self.observer.as_ref(), reused, started)
        } else {
            admit(self.clone(), body).await
        }
    }

    fn failed(&self) {
        if let Some(observer) = &self.observer {
            observer.failed();
        }
    }
}

/// The name a webhook's metrics carry: the last segment of its path (`validate-shoot` for
/// `/webhooks/cri-resmgr/validate-shoot`).
pub fn webhook_name(path: &str) -> &str {
    path.rsplit('/').find(|segment| !segment.is_empty()).unwrap_or(path)
}

/// Records the answers of one webhook.
#[derive(Clone)]
struct Observer(WebhookRecorder);

impl Observer {
    /// An answer, the handler's or (`reused`) the one kept for the same review before.
    fn answered(&self, outcome: &Outcome, elapsed: Duration, reused: bool) {
        self.0.answered(outcome.result, outcome.denial, elapsed);
        if reused {
            self.0.reused();
        }
    }

    fn too_large(&self, status: StatusCode, started: Instant) {
        if status.is_success() {
            self.0.answered(AdmissionResult::Denied, Some(DenialReason::TooLarge), started.elapsed());
        } else {
            self.0.failed();
        }
    }

    fn failed(&self) {
        self.0.failed();
    }
}

/// Keeps the certificate expiry metric on the material the certificate owner publishes, until the owner stops.
async fn follow_expiry(mut certificates: CertReceiver, metrics: WebhookMetrics) {
    loop {
        let expiry = certificates
            .borrow_and_update()
            .current()
            .and_then(|current| tls::certs::not_after(&current.cert_pem).ok());
        if let Some(expiry) = expiry {
            metrics.set_certificate_expiry(expiry.unix_timestamp() as f64);
        }
        if certificates.changed().await.is_err() {
            return;
        }
    }
}

/// How much of a body over the limit is still read to answer it with a denial rather than a bare 413.
pub fn hard_body_ceiling(limit: usize) -> usize {
    limit.saturating_mul(2)
}

/// The answer to an admission request over the body limit: a denial the apiserver shows to the user ("… exceeds
/// the webhook's limit …"), when the review's uid can be found; a bare 413 otherwise. The uid is found by a scan,
/// not by decoding the body: the apiserver writes `request.uid` as the review's first `uid` key.
fn too_large(path: &str, body: &[u8], limit: usize) -> Response {
    let Some(uid) = first_uid(body) else {
        warn!(%path, bytes = body.len(), limit, "rejecting an oversized request that is not an admission review");
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let message = format!(
        "the admission request of {} bytes exceeds the webhook's limit of {limit} bytes (an UPDATE of an object of \
         up to {APISERVER_MAX_OBJECT_BYTES} bytes and its old version)",
        body.len()
    );
    warn!(%path, %uid, bytes = body.len(), limit, "denying an oversized admission request");
    let mut response = kube::core::admission::AdmissionResponse::invalid(message);
    response.result.reason = DenialReason::TooLarge.status_reason().to_owned();
    response.uid = uid.clone();
    match serde_json::to_vec(&into_review(&uid, response)) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    }
}

/// The value of the first `"uid":"…"` in `body` (a uid is a plain string without escapes).
fn first_uid(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"uid\"";
    let at = body.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let rest = &body[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b"\"")?;
    let end = rest.iter().position(|b| *b == b'"' || *b == b'\\')?;
    let uid = std::str::from_utf8(&rest[..end]).ok()?;
    (!uid.is_empty() && rest.get(end) == Some(&b'"')).then(|| uid.to_owned())
}

/// The answer kept for a review that came again: counted and logged as the first one was, with its new uid.
fn answered_again(path: &str, observer: Option<&Observer>, reused: Reused, started: Instant) -> Response {
    record(path, observer, reused.uid(), &reused.outcome, started, true);
    let body = axum::body::Body::new(PartsBody { parts: reused.into_parts(), next: 0 });
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A body sent as the bytes it already is in, part by part (a kept answer's shared head and tail around its uid):
/// hyper writes the parts together, without them being copied into one buffer first.
struct PartsBody<const N: usize> {
    parts: [Bytes; N],
    /// The first part not sent yet.
    next: usize,
}

impl<const N: usize> http_body::Body for PartsBody<N> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        while let Some(part) = this.parts.get_mut(this.next) {
            this.next += 1;
            if !part.is_empty() {
                return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(std::mem::take(part)))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.parts[self.next..].iter().all(Bytes::is_empty)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.parts[self.next..].iter().map(|part| part.len() as u64).sum())
    }
}

/// Counts and logs an answer to the review `uid`: the handler's, or (`reused`) the one kept for the same review.
fn record(path: &str, observer: Option<&Observer>, uid: &str, outcome: &Outcome, started: Instant, reused: bool) {
    let elapsed = started.elapsed();
    if let Some(observer) = observer {
        observer.answered(outcome, elapsed, reused);
    }
    let Outcome { operation, kind, namespace, name, .. } = outcome;
    let elapsed_ms = elapsed.as_millis();
    if outcome.result == AdmissionResult::Allowed {
        debug!(%path, %uid, ?operation, %kind, %namespace, %name, elapsed_ms, patched = outcome.patched, reused, "admitted");
    } else {
        info!(%path, %uid, ?operation, %kind, %namespace, %name, elapsed_ms, reason = %outcome.message, reused, "denied");
    }
}

thread_local! {
    /// Whether this thread's stack is [`ADMISSION_THREAD_STACK_BYTES`] (see [`build_admission_runtime`]).
    static SIZED_FOR_ADMISSION: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Most blocking-pool threads a runtime for admission work keeps: each reserves the admission stack's address space,
/// and the process makes only a few blocking calls at a time (file reads, name lookups).
const ADMISSION_RUNTIME_MAX_BLOCKING_THREADS: usize = 64;

/// A multi-thread runtime whose threads (workers and blocking pool alike) have the stack admission work needs
/// ([`ADMISSION_THREAD_STACK_BYTES`]) and say so: a webhook server on it decides reviews on the thread that read them.
/// On any other runtime the server hands each review to a runtime of this kind of its own, which costs two thread
/// wake-ups per review (on a busy CPU, two context switches: a fifth of a first-seen OSC review's CPU). Built here,
/// not handed out as a builder, so that no caller can give the threads another stack while they claim this one.
/// `worker_threads` defaults as tokio's does.
pub fn build_admission_runtime(
    worker_threads: Option<usize>,
    thread_name: Option<&str>,
) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .max_blocking_threads(ADMISSION_RUNTIME_MAX_BLOCKING_THREADS)
        .thread_stack_size(ADMISSION_THREAD_STACK_BYTES)
        .on_thread_start(|| SIZED_FOR_ADMISSION.with(|sized| sized.set(true)));
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    if let Some(name) = thread_name {
        builder.thread_name(name);
    }
    builder.build()
}

/// One admission call where every step that walks the object has the stack it needs (see
/// [`ADMISSION_THREAD_STACK_BYTES`]): on this thread when it is sized for that, else on the admission runtime, from
/// which only the encoded answer comes back. A task stays on the threads of its runtime, which are all alike; a
/// runtime's `block_on` thread is not one of them and never says it is sized. A panic outside the handler (which runs
/// in a task of its own) is answered with 500 either way.
async fn admit(webhook: Arc<Webhook>, body: Bytes) -> Response {
    use futures::FutureExt as _;
    if SIZED_FOR_ADMISSION.with(std::cell::Cell::get) {
        return match std::panic::AssertUnwindSafe(admit_here(webhook.clone(), body)).catch_unwind().await {
            Ok(response) => response,
            Err(panic) => admission_failed(&webhook, &format!("admission panicked: {}", panic_message(&*panic))),
        };
    }
    let path = webhook.path.clone();
    let runtime = match admission_runtime() {
        Ok(runtime) => runtime,
        Err(reason) => {
            error!(%path, reason, "no admission runtime; cannot answer");
            webhook.failed();
            return (StatusCode::INTERNAL_SERVER_ERROR, "the admission runtime is not available").into_response();
        }
    };
    match AbortOnDrop(runtime.spawn(admit_here(webhook.clone(), body))).await {
        Ok(response) => response,
        Err(e) => admission_failed(&webhook, &join_error_reason(e)),
    }
}

/// The answer to a review whose admission failed outside its handler.
fn admission_failed(webhook: &Webhook, reason: &str) -> Response {
    error!(path = %webhook.path, reason, "admission task failed");
    webhook.failed();
    (StatusCode::INTERNAL_SERVER_ERROR, "admission failed").into_response()
}

/// The process-wide runtime for admission work, started on first use and kept for the life of the process.
fn admission_runtime() -> Result<&'static tokio::runtime::Handle, &'static str> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        build_admission_runtime(Some(threads), Some("admission")).map_err(|e| e.to_string())
    });
    match runtime {
        Ok(runtime) => Ok(runtime.handle()),
        Err(reason) => Err(reason.as_str()),
    }
}

/// One admission call: decode, run the handler isolated in its own task, wrap its answer, and keep it in `memo` when
/// the handler says it holds for the same review again.
async fn admit_here(webhook: Arc<Webhook>, body: Bytes) -> Response {
    let Webhook { handler, path, observer, memo, .. } = &*webhook;
    let request = match parse_review(&body) {
        Ok(request) => request,
        Err(e) => {
            warn!(%path, error = %e, "rejecting a request that is not an admission review");
            webhook.failed();
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let uid = request.uid.clone();
    let (operation, kind) = (request.operation.clone(), request.kind.kind.clone());
    let (namespace, name) = (request.namespace.clone().unwrap_or_default(), request.name.clone());
    let started = Instant::now();

    // A separate task turns a panic into a JoinError instead of a dropped connection; AbortOnDrop
    // stops the handler when the request itself is abandoned (timeout, client gone).
    let Answer { response, reuse } = match AbortOnDrop(tokio::spawn(handler.clone().call(request))).await {
        Ok(answer) => answer,
        Err(e) => {
            error!(%path, %uid, ?operation, %kind, %namespace, %name, reason = %join_error_reason(e), "admission handler failed; denying");
            Answer { response: internal_error(&uid), reuse: Reuse::Never }
        }
    };
    let outcome = Outcome::of(&response, operation, kind, namespace, name);
    record(path, observer.as_ref(), &uid, &outcome, started, false);

    match serde_json::to_vec(&into_review(&uid, response)) {
        Ok(json) => {
            memo.remember(&body, &uid, &json, outcome, reuse);
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
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
    format!("handler panicked: {}", panic_message(&*e.into_panic()))
}

/// What a panic said, when it said it in words.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Waits until `certificates` holds usable material, then builds the TLS configuration that serves it.
async fn wait_for_certificates(mut certificates: CertReceiver, timeout: Duration) -> Result<ServingTls, ServerError> {
    let started = Instant::now();
    let waited = tokio::time::timeout(timeout, async {
        certificates.wait_for(|state| state.current().is_some()).await.map(|_| ())
    })
    .await;
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ServerError::CertOwnerStopped),
        Err(_) => {
            let last = match &*certificates.borrow() {
                CertState::Pending { problem: Some(problem) } => problem.clone(),
                _ => "nothing was loaded yet".to_owned(),
            };
            return Err(ServerError::CertWaitTimeout { waited: started.elapsed(), last });
        }
    }
    let server_config = tls::server_config(certificates.clone()).map_err(ServerError::TlsConfig)?;
    Ok(ServingTls { certificates, server_config })
}

#[cfg(test)]
mod tests;
