//! The load generator of `make bench` (HTTP/1.1 keep-alive connections over TLS, each sending its requests back to
//! back, as wrk does) and the limit it is compared with: a minimal rustls server that answers every request with
//! fixed bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::stats::{self, Summary};

/// Why a load run or the limit server failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP to {address}: {source}")]
    Http {
        address: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("building a request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Where and what to send.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    /// The name the server's certificate is checked for (an IP address for the bench's servers).
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub path: String,
    /// The request body; each request writes its [`Self::fresh`] parts anew.
    pub body: Bytes,
    /// Parts of `body` every request fills with a number of its own (lowercase hex, as wide as the part): e.g. the
    /// review's uid, which the apiserver makes anew for every review.
    pub fresh: Vec<Range<usize>>,
    /// The numbers given out so far, shared by every clone (so no two requests of a run repeat one).
    pub sent: Arc<AtomicU64>,
}

/// An open HTTP/1.1 connection over TLS.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
}

impl Target {
    /// A target sending `body` unchanged.
    pub fn new(
        address: SocketAddr,
        server_name: ServerName<'static>,
        tls: Arc<rustls::ClientConfig>,
        path: &str,
        body: Bytes,
    ) -> Self {
        Target { address, server_name, tls, path: path.to_string(), body, fresh: Vec::new(), sent: Arc::default() }
    }

    /// The next request's body: [`Self::body`] with its fresh parts filled in.
    pub fn next_body(&self) -> Bytes {
        if self.fresh.is_empty() {
            return self.body.clone();
        }
        let number = self.sent.fetch_add(1, Ordering::Relaxed);
        let mut body = self.body.to_vec();
        for part in &self.fresh {
            let width = part.len();
            let digits = format!("{number:0width$x}");
            if let Some(slot) = body.get_mut(part.clone()) {
                slot.copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
            }
        }
        Bytes::from(body)
    }

    /// Opens a connection (TCP, TLS handshake, HTTP/1.1), outside of any measurement.
    pub async fn connect(&self) -> Result<Connection, LoadError> {
        let io = |context: &str| {
            let context = format!("{context} {}", self.address);
            move |source| LoadError::Io { context, source }
        };
        let tcp = tokio::net::TcpStream::connect(self.address).await.map_err(io("connecting to"))?;
        tcp.set_nodelay(true).map_err(io("setting TCP_NODELAY for"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(io("TLS handshake with"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|source| LoadError::Http { address: self.address, source })?;
        tokio::spawn(connection);
        let host = HeaderValue::from_str(&self.address.to_string()).map_err(hyper::http::Error::from)?;
        Ok(Connection { sender, host })
    }

    /// One request on `connection`: its status and body.
    pub async fn send(
        &self,
        connection: &mut Connection,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), LoadError> {
        let method = if body.is_empty() { hyper::Method::GET } else { hyper::Method::POST };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, connection.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        let http = |source| LoadError::Http { address: self.address, source };
        connection.sender.ready().await.map_err(http)?;
        let response = connection.sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((status, body))
    }

    /// The target's request once, on a connection of its own.
    pub async fn once(&self) -> Result<(StatusCode, Bytes), LoadError> {
        let mut connection = self.connect().await?;
        self.send(&mut connection, &self.path, self.next_body()).await
    }

    /// Status of `GET path` (e.g. `/readyz`) on a connection of its own.
    pub async fn get(&self, path: &str) -> Result<StatusCode, LoadError> {
        let mut connection = self.connect().await?;
        Ok(self.send(&mut connection, path, Bytes::new()).await?.0)
    }
}

/// `connections` connections send the target's request back to back for `warmup` + `window`; what completed within
/// the window is summarised. Handshakes happen before the clock starts (connections are kept alive, as the
/// apiserver keeps its connections to a webhook).
///
/// With `server_pid`, the server's CPU time over the measured window is taken too
/// ([`Summary::server_cpu_per_request`]).
pub async fn run(
    target: &Arc<Target>,
    connections: usize,
    warmup: Duration,
    window: Duration,
    server_pid: Option<u32>,
) -> Result<Summary, LoadError> {
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(target.connect().await?);
    }
    let measured_from = Instant::now() + warmup;
    let end = measured_from + window;
    let cpu = server_pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measured_from.into()).await;
            let before = stats::cpu_time(pid)?;
            tokio::time::sleep_until(end.into()).await;
            Some(stats::cpu_time(pid)?.saturating_sub(before))
        })
    });
    let workers: Vec<_> = open
        .into_iter()
        .map(|mut connection| {
            let target = target.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    match target.send(&mut connection, &target.path, target.next_body()).await {
                        Ok((status, _)) if status.is_success() => {
                            let finished = Instant::now();
                            if started >= measured_from && finished <= end {
                                latencies.push(finished - started);
                            }
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            // A broken connection is replaced, as a client would.
                            match target.connect().await {
                                Ok(fresh) => connection = fresh,
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for worker in workers {
        let (mut some, failed) = worker.await.unwrap_or_default();
        latencies.append(&mut some);
        errors += failed;
    }
    let mut summary = Summary::of(latencies, errors, window);
    if let Some(cpu) = cpu {
        let spent = cpu.await.ok().flatten();
        summary.server_cpu_per_request =
            spent.filter(|_| summary.requests > 0).map(|spent| spent / summary.requests as u32);
    }
    Ok(summary)
}

/// The rustls server configuration serving the certificate and key (PEM) in `cert_dir`, as the webhook server does.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, LoadError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| LoadError::Tls(format!("{}: {e}", cert_file.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key_file).map_err(|e| LoadError::Tls(format!("{}: {e}", key_file.display())))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| LoadError::Tls(e.to_string()))
}

/// The limit: reads every request completely and answers it with `response` (JSON), over TLS, until the process
/// ends. Nothing else happens per request, so it costs what TLS and HTTP cost for these bytes.
pub async fn serve_fixed(
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    response: Bytes,
) -> Result<(), LoadError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, _) =
            listener.accept().await.map_err(|source| LoadError::Io { context: "accepting".into(), source })?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, response) = (acceptor.clone(), response.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = response.clone();
                async move {
                    let _ = request.into_body().collect().await;
                    let mut answer = Response::new(Full::new(response));
                    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(answer)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
