//! Tests of the webhook server: in-process router tests for the HTTP rules, and real TLS servers on
//! 127.0.0.1:0 for the transport (certificates, reload, health, shutdown).

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::symlink;

use axum::body::Body;
use axum::http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::core::admission::AdmissionResponse;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tower::ServiceExt;

use super::*;
use crate::runtime::RawAdmissionRequest;
use crate::runtime::error_chain;
use crate::runtime::review::MAX_NESTING_DEPTH;
use crate::runtime::tls::certs::{self, CA_CERT_FILE, GeneratedCerts, TLS_CERT_FILE, TLS_KEY_FILE};
use crate::runtime::tls::files::watch_dir;
use crate::runtime::tls::{Certificates, ServingCerts};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use tokio::task::JoinHandle;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ECHO: &str = "/webhooks/echo";
const PANIC: &str = "/webhooks/panic";
const SLOW: &str = "/webhooks/slow";

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Allows, and reports what it saw as a warning; denies objects named "forbidden".
async fn echo(request: RawAdmissionRequest) -> AdmissionResponse {
    let response = AdmissionResponse::from(&request);
    if request.name == "forbidden" {
        return response.deny("name is forbidden");
    }
    let mut response = response;
    response.warnings = Some(vec![format!("seen {:?} {}", request.operation, request.name)]);
    response
}

fn handlers() -> WebhookServer {
    let mut server = WebhookServer::new(WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into()));
    register_handlers(&mut server);
    server
}

fn register_handlers(server: &mut WebhookServer) {
    server.register(ECHO, echo).expect("echo");
    server
        .register(PANIC, |_request: RawAdmissionRequest| async move {
            panic!("handler bug");
        })
        .expect("panic");
    server
        .register(SLOW, |request: RawAdmissionRequest| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            AdmissionResponse::from(&request)
        })
        .expect("slow");
}

fn review(uid: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "core.gardener.cloud", "version": "v1beta1", "kind": "Shoot"},
            "resource": {"group": "core.gardener.cloud", "version": "v1beta1", "resource": "shoots"},
            "name": name,
            "namespace": "garden-dev",
            "operation": "UPDATE",
            "userInfo": {"username": "admin"},
            "object": {
                "apiVersion": "core.gardener.cloud/v1beta1",
                "kind": "Shoot",
                "metadata": {"name": name, "namespace": "garden-dev"},
                "spec": {}
            },
            "oldObject": null,
            "dryRun": false
        }
    }))
    .expect("serialize review")
}

fn response_of(body: &[u8]) -> Value {
    let review: Value = serde_json::from_slice(body).expect("response is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    review["response"].clone()
}

fn generate_certs(dir: &Path) -> GeneratedCerts {
    certs::generate(dir, &["localhost"], &[LOCALHOST]).expect("generate certs")
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate").as_ref().to_vec()
}

/// Readiness as the server computes it: serving (not shutting down), and whether certificate material is loaded.
fn readiness(serving: bool, loaded: bool) -> Readiness {
    let state = if loaded {
        let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
        let certs = ServingCerts::new(Some(pems.ca_cert), pems.tls_cert, pems.tls_key).expect("usable");
        CertState::Ready(Arc::new(certs))
    } else {
        CertState::Pending { problem: None }
    };
    let (_, certificates) = tokio::sync::watch::channel(state);
    Readiness { serving: Arc::new(AtomicBool::new(serving)), certificates, checks: Arc::new([]) }
}

/// A real TLS webhook server on 127.0.0.1:0 with the test handlers, its certificates owned by a directory watch.
struct TestServer {
    addr: SocketAddr,
    certs: GeneratedCerts,
    dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
    _certificates: Certificates,
}

impl TestServer {
    async fn start(tune: impl FnOnce(&mut WebhookServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = generate_certs(dir.path());
        let certificates = watch_dir(dir.path());
        let mut config = WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into());
        tune(&mut config);
        let mut server = WebhookServer::new(config);
        register_handlers(&mut server);
        let bound = server.bind(certificates.subscribe()).await.expect("bind");
        let addr = bound.local_addr();
        assert_ne!(addr.port(), 0);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = rx.await;
        }));
        Self { addr, certs, dir, shutdown: Some(tx), task, _certificates: certificates }
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        https(self.addr, &self.certs.ca_pem, "POST", path, body).await.expect("request")
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        https(self.addr, &self.certs.ca_pem, "GET", path, Vec::new()).await.expect("request")
    }

    /// Asserts that a normal admission request still works.
    async fn assert_serving(&self) {
        let (status, body) = self.post(ECHO, review("still-alive", "shoot")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(response_of(&body)["uid"], "still-alive");
    }

    async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops within 10s")
            .expect("server task")
    }
}

fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    client_config_with_alpn(ca_pem, Vec::new())
}

fn client_config_with_alpn(ca_pem: &str, alpn: Vec<Vec<u8>>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Arc::new(config)
}

/// A new TLS connection to `addr` that trusts only `ca_pem` and checks the name "localhost".
async fn connect(addr: SocketAddr, ca_pem: &str) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(client_config(ca_pem)).connect(name, tcp).await
}

fn peer_certificate(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    let (_, connection) = stream.get_ref();
    connection.peer_certificates().and_then(|chain| chain.first()).expect("peer certificate").as_ref().to_vec()
}

/// One HTTP/1.1 request over a fresh TLS connection.
async fn https(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let stream = connect(addr, ca_pem).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request)).await??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}

/// Sends only the head of a request, to see what the server answers before any body is sent.
async fn send_head_only(addr: SocketAddr, ca_pem: &str, head: &str) -> String {
    let mut stream = connect(addr, ca_pem).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.flush().await.expect("flush");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
            if received.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all).await.expect("answer within 10s");
    String::from_utf8_lossy(&received).into_owned()
}

/// Retries until `check` succeeds or 10 seconds have passed.
async fn eventually<T, Fut: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> Fut) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Router (in process, no TLS)

async fn call_router(router: Routes, path: &str, body: Body) -> (StatusCode, Vec<u8>) {
    let request = Request::builder().method("POST").uri(path).body(body).expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, response.into_body().collect().await.expect("body").to_bytes().to_vec())
}

/// A router with the given body limit and the default request timeout: long enough that a loaded machine never
/// turns a test's large body into a timeout.
fn test_router(max_body_bytes: usize) -> Routes {
    test_router_timing_out_after(max_body_bytes, DEFAULT_REQUEST_TIMEOUT)
}

fn test_router_timing_out_after(max_body_bytes: usize, request_timeout: Duration) -> Routes {
    let server = handlers();
    let mut config = server.config.clone();
    config.max_body_bytes = max_body_bytes;
    config.request_timeout = request_timeout;
    routes(&config, &server.handlers, readiness(true, true))
}

#[tokio::test]
async fn router_answers_with_the_handlers_decision() {
    let (status, body) = call_router(test_router(DEFAULT_MAX_BODY_BYTES), ECHO, review("u-1", "a-shoot").into()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["uid"], "u-1");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["warnings"][0], "seen Update a-shoot");

    let (status, body) =
        call_router(test_router(DEFAULT_MAX_BODY_BYTES), ECHO, review("u-2", "forbidden").into()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["uid"], "u-2");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["message"], "name is forbidden");
}

/// The shape of a real validator: a struct carrying its dependencies, implementing the trait with `async fn`.
struct NameValidator {
    forbidden: String,
    calls: std::sync::atomic::AtomicUsize,
}

impl AdmissionHandler for NameValidator {
    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        let response = AdmissionResponse::from(&request);
        if request.name == self.forbidden { response.deny(format!("{} is taken", self.forbidden)) } else { response }
    }
}

#[tokio::test]
async fn a_stateful_struct_handler_plugs_in_by_path() {
    let validator = Arc::new(NameValidator { forbidden: "taken".to_owned(), calls: Default::default() });
    let mut server = handlers();
    // Registered through a small adapter closure, so the test keeps a handle on the state.
    let shared = validator.clone();
    server
        .register("/webhooks/validate-shoot", move |request: RawAdmissionRequest| {
            let validator = shared.clone();
            async move { validator.admit(request).await }
        })
        .expect("register adapter");
    server
        .register(
            "/webhooks/validate-shoot-direct",
            NameValidator { forbidden: "x".to_owned(), calls: Default::default() },
        )
        .expect("register struct");
    let router = routes(&server.config, &server.handlers, readiness(true, true));

    let (status, body) = call_router(router.clone(), "/webhooks/validate-shoot", review("v-1", "taken").into()).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!((response["uid"].as_str(), response["allowed"].as_bool()), (Some("v-1"), Some(false)));
    assert_eq!(response["status"]["message"], "taken is taken");

    let (_, body) = call_router(router.clone(), "/webhooks/validate-shoot-direct", review("v-2", "taken").into()).await;
    assert_eq!(response_of(&body)["allowed"], true);
    assert_eq!(validator.calls.load(Ordering::SeqCst), 1);
}

/// A handler whose answer holds while `holds` is set, counting its calls.
struct Reusable {
    holds: Arc<AtomicBool>,
    calls: std::sync::atomic::AtomicUsize,
}

impl AdmissionHandler for Reusable {
    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let response = AdmissionResponse::from(&request);
        if request.name == "forbidden" { response.deny("name is forbidden") } else { response }
    }

    async fn admit_reusable(&self, request: RawAdmissionRequest) -> Answer {
        let holds = self.holds.clone();
        Answer { response: self.admit(request).await, reuse: Reuse::while_holds(move || holds.load(Ordering::SeqCst)) }
    }
}

#[tokio::test]
async fn a_body_of_parts_sends_the_non_empty_ones_in_order_and_says_what_is_left() {
    let head = Bytes::from_static(br#"{"uid":""#);
    let tail = Bytes::from_static(br#""}"#);
    let mut body = PartsBody { parts: [head.clone(), Bytes::new(), Bytes::from_static(b"u-1"), tail.clone()], next: 0 };
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(13));
    let mut sent = Vec::new();
    while !http_body::Body::is_end_stream(&body) {
        let frame = body.frame().await.expect("a part before the end").expect("infallible");
        sent.push(frame.into_data().expect("data"));
        let left = 13 - sent.iter().map(Bytes::len).sum::<usize>();
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(left as u64));
    }
    assert_eq!(sent, [head, Bytes::from_static(b"u-1"), tail], "the empty part is not sent");
    assert!(body.frame().await.is_none());
}

#[tokio::test]
async fn a_review_that_comes_again_gets_the_kept_answer_while_it_holds_counted_as_an_answer() {
    const REUSABLE: &str = "/webhooks/reusable";
    let holds = Arc::new(AtomicBool::new(true));
    let handler = Arc::new(Reusable { holds: holds.clone(), calls: Default::default() });
    let mut server = handlers();
    let shared = handler.clone();
    server.register(REUSABLE, ReusableAdapter(shared)).expect("register");
    let metrics = crate::runtime::metrics::Metrics::for_admission();
    let observed =
        observed_routes(&server.config, &server.handlers, Some(metrics.webhook.clone()), readiness(true, true));
    let ask = |uid: &'static str, name: &'static str| {
        let router = observed.clone();
        async move {
            let (status, body) = call_router(router, REUSABLE, review(uid, name).into()).await;
            assert_eq!(status, StatusCode::OK);
            response_of(&body)
        }
    };

    for (i, uid) in ["r-1", "r-2", "r-3"].into_iter().enumerate() {
        let response = ask(uid, "a-shoot").await;
        assert_eq!((response["uid"].as_str(), response["allowed"].as_bool()), (Some(uid), Some(true)), "{i}");
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "the same review is decided once");
    for uid in ["d-1", "d-2"] {
        let response = ask(uid, "forbidden").await;
        assert_eq!((response["uid"].as_str(), response["allowed"].as_bool()), (Some(uid), Some(false)));
        assert_eq!(response["status"]["message"], "name is forbidden");
    }
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2, "another review is decided afresh, once");

    // What the answer depended on changed: decided afresh, every time while it does not hold.
    holds.store(false, Ordering::SeqCst);
    ask("r-4", "a-shoot").await;
    ask("r-5", "a-shoot").await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 4);
    // Once it holds again, the last answer is the kept one.
    holds.store(true, Ordering::SeqCst);
    ask("r-6", "a-shoot").await;
    ask("r-7", "a-shoot").await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 4);

    // Reused answers count as answers, by result, and as reused.
    let text = metrics.encode().expect("metrics");
    let value = |series: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    };
    assert_eq!(
        value(r#"gardener_extension_cri_resmgr_webhook_requests_total{webhook="reusable",result="allowed"}"#),
        7.0
    );
    assert_eq!(
        value(r#"gardener_extension_cri_resmgr_webhook_requests_total{webhook="reusable",result="denied"}"#),
        2.0
    );
    assert_eq!(value(r#"gardener_extension_cri_resmgr_webhook_denials_total{webhook="reusable",reason="other"}"#), 2.0);
    assert_eq!(value(r#"gardener_extension_cri_resmgr_webhook_answers_reused_total{webhook="reusable"}"#), 5.0);

    // A handler that does not say its answer holds is asked every time.
    let before = handler.calls.load(Ordering::SeqCst);
    let echo_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = echo_calls.clone();
    let mut server = handlers();
    server
        .register("/webhooks/counted", move |request: RawAdmissionRequest| {
            counted.fetch_add(1, Ordering::SeqCst);
            echo(request)
        })
        .expect("register");
    let plain = routes(&server.config, &server.handlers, readiness(true, true));
    for uid in ["e-1", "e-2", "e-3"] {
        let (_, body) = call_router(plain.clone(), "/webhooks/counted", review(uid, "a-shoot").into()).await;
        assert_eq!(response_of(&body)["uid"], uid);
    }
    assert_eq!(echo_calls.load(Ordering::SeqCst), 3);
    assert_eq!(handler.calls.load(Ordering::SeqCst), before);
}

/// Registers a shared [`Reusable`] (the test keeps a handle on it).
struct ReusableAdapter(Arc<Reusable>);

impl AdmissionHandler for ReusableAdapter {
    async fn admit(&self, request: RawAdmissionRequest) -> AdmissionResponse {
        self.0.admit(request).await
    }

    async fn admit_reusable(&self, request: RawAdmissionRequest) -> Answer {
        self.0.admit_reusable(request).await
    }
}

#[tokio::test]
async fn an_update_of_a_maximal_object_fits_the_default_body_limit() {
    // Object and old object of the largest write the apiserver accepts, plus the review around them.
    let padding = "x".repeat(APISERVER_MAX_OBJECT_BYTES - 1024);
    let mut review: Value = serde_json::from_slice(&review("max", "shoot")).expect("review");
    review["request"]["object"]["metadata"]["annotations"] = json!({"padding": padding});
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let body = serde_json::to_vec(&review).expect("serialize");
    assert!(body.len() > 2 * (APISERVER_MAX_OBJECT_BYTES - 1024), "{}", body.len());
    let (status, body) = call_router(test_router(DEFAULT_MAX_BODY_BYTES), ECHO, body.into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response_of(&body)["uid"], "max");
}

#[tokio::test]
async fn router_rejects_oversized_bodies_with_and_without_content_length() {
    let limit = 1024;
    let mut big = review("big", "shoot");
    big.resize(limit + 1, b' ');

    // A review over the limit is denied with a message the apiserver shows, not refused with a bare 413.
    for body in [Body::from(big.clone()), streamed(&big)] {
        let (status, answer) = call_router(test_router(limit), ECHO, body).await;
        assert_eq!(status, StatusCode::OK);
        let response = response_of(&answer);
        assert_eq!(response["uid"], "big");
        assert_eq!(response["allowed"], false);
        let message = response["status"]["message"].as_str().expect("message");
        assert!(message.contains("of 1025 bytes exceeds the webhook's limit of 1024 bytes"), "{message}");
    }

    // Not a review, or beyond the ceiling up to which bodies are read: 413, with or without Content-Length.
    let not_a_review = vec![b' '; limit + 1];
    let (status, _) = call_router(test_router(limit), ECHO, Body::from(not_a_review)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "not a review");
    let mut huge = review("huge", "shoot");
    huge.resize(hard_body_ceiling(limit) + 1, b' ');
    let (status, _) = call_router(test_router(limit), ECHO, Body::from(huge.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "with Content-Length");
    let (status, _) = call_router(test_router(limit), ECHO, streamed(&huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "streamed");

    // Exactly at the limit is fine (the padding is JSON whitespace).
    let mut at_limit = review("at-limit", "shoot");
    at_limit.resize(limit, b' ');
    let (status, body) = call_router(test_router(limit), ECHO, Body::from(at_limit)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response_of(&body)["uid"], "at-limit");
}

/// `bytes` streamed in chunks, without a size hint: limits must apply while reading.
fn streamed(bytes: &[u8]) -> Body {
    let chunks: Vec<Result<Bytes, io::Error>> = bytes.chunks(100).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[test]
fn the_uid_of_an_oversized_review_is_found_without_decoding_it() {
    assert_eq!(
        first_uid(br#"{"kind":"AdmissionReview","request":{"uid" : "a-1","object":{"uid":"b"}}}"#).as_deref(),
        Some("a-1")
    );
    assert_eq!(first_uid(br#"{"request":{"uid":""}}"#), None);
    assert_eq!(first_uid(br#"{"request":{"uid":"unterminated"#), None);
    assert_eq!(first_uid(b"   "), None);
}

/// A review of a Shoot whose `spec.provider.infrastructureConfig` nests `levels` objects deep.
fn deep_review(uid: &str, levels: usize) -> Vec<u8> {
    const PLACEHOLDER: &str = "\"deep-placeholder\"";
    let deep = format!("{}{{\"leaf\":true}}{}", "{\"nested\":".repeat(levels - 1), "}".repeat(levels - 1));
    let mut review: Value = serde_json::from_slice(&review(uid, "deep")).expect("review");
    review["request"]["object"]["spec"]["provider"] =
        json!({"type": "local", "infrastructureConfig": "deep-placeholder"});
    // Spliced in as text: building it as a value would recurse on the test's own stack.
    review.to_string().replacen(PLACEHOLDER, &deep, 1).into_bytes()
}

/// Decodes the object as the Shoot webhooks do (into the typed Shoot, keeping what it does not model) and allows.
async fn decode_shoot(request: RawAdmissionRequest) -> AdmissionResponse {
    let response = AdmissionResponse::from(&request);
    let Some(object) = request.object.as_ref() else { return response.deny("no object") };
    let shoot = object.decode::<crate::apis::core::Shoot>().map_err(|e| e.to_string());
    match shoot {
        Ok(shoot) if shoot.spec.provider.other.contains_key("infrastructureConfig") => response,
        Ok(_) => response.deny("infrastructureConfig was lost"),
        Err(e) => response.deny(e),
    }
}

#[tokio::test]
async fn a_shoot_nested_as_deep_as_the_apiserver_allows_is_decoded_and_answered() {
    const DEEP: &str = "/webhooks/decode-shoot";
    let mut server = handlers();
    server.register(DEEP, decode_shoot).expect("register");
    let router = routes(server.config(), &server.handlers, readiness(true, true));
    // 122 levels broke serde_json's default recursion limit; the apiserver itself accepts up to 10,000.
    for levels in [122, 1_000, 10_000 - 4] {
        let uid = format!("deep-{levels}");
        let body = deep_review(&uid, levels);
        let (status, body) = call_router(router.clone(), DEEP, body.into()).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::OK, "{levels} levels: {text}");
        let response = response_of(&body);
        assert_eq!(response["uid"], uid.as_str(), "{levels} levels");
        assert_eq!(response["allowed"], true, "{levels} levels: {response}");
    }
    // Deeper than anything the apiserver can send: refused before parsing, without a stack overflow.
    let too_deep = format!("{}{}", "[".repeat(MAX_NESTING_DEPTH + 1), "]".repeat(MAX_NESTING_DEPTH + 1));
    let (status, body) = call_router(router, DEEP, too_deep.into_bytes().into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("levels deep"), "{}", String::from_utf8_lossy(&body));
}

/// Denies with the name of the thread the handler ran on.
async fn thread_named(request: RawAdmissionRequest) -> AdmissionResponse {
    let thread = std::thread::current().name().unwrap_or_default().to_owned();
    AdmissionResponse::from(&request).deny(thread)
}

#[test]
fn on_a_runtime_sized_for_admission_reviews_are_decided_on_its_own_threads() {
    const DEEP: &str = "/webhooks/decode-shoot";
    const THREAD: &str = "/webhooks/thread";
    let mut server = handlers();
    server.register(DEEP, decode_shoot).expect("register");
    server.register(THREAD, thread_named).expect("register");
    let router = routes(server.config(), &server.handlers, readiness(true, true));
    let sized = build_admission_runtime(Some(1), Some("sized")).expect("runtime");
    let ask = |path: &'static str, body: Vec<u8>| {
        let router = router.clone();
        let (status, body) =
            sized.block_on(sized.spawn(async move { call_router(router, path, body.into()).await })).expect("task");
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        response_of(&body)
    };

    assert_eq!(ask(THREAD, review("t-1", "shoot"))["status"]["message"], "sized");
    // As deep as the apiserver allows, on that thread, and a panic still gets an answer.
    assert_eq!(ask(DEEP, deep_review("deep-1", 10_000 - 4))["allowed"], true);
    assert_eq!(ask(PANIC, review("p-1", "shoot"))["status"]["message"], "internal error");
    assert_eq!(ask(THREAD, review("t-2", "shoot"))["status"]["message"], "sized", "the thread outlived the panic");

    // Served from a runtime of the usual stack, the review goes to the admission runtime.
    let usual = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (_, body) = usual.block_on(call_router(router, THREAD, review("t-3", "shoot").into()));
    assert_eq!(response_of(&body)["status"]["message"], "admission");
}

#[tokio::test]
async fn router_times_out_slow_handlers() {
    let started = Instant::now();
    let router = test_router_timing_out_after(DEFAULT_MAX_BODY_BYTES, Duration::from_millis(300));
    let (status, _) = call_router(router, SLOW, review("slow", "shoot").into()).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn router_only_accepts_post_on_webhook_paths() {
    let router = test_router(DEFAULT_MAX_BODY_BYTES);
    let request = Request::builder().method("GET").uri(ECHO).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = call_router(router, "/webhooks/unknown", review("x", "y").into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn probes_answer_get_and_head_and_refuse_other_methods() {
    let router = test_router(DEFAULT_MAX_BODY_BYTES);
    for path in [HEALTHZ_PATH, READYZ_PATH] {
        for (method, expected) in
            [("GET", StatusCode::OK), ("HEAD", StatusCode::OK), ("POST", StatusCode::METHOD_NOT_ALLOWED)]
        {
            let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("request");
            let response = router.clone().oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), expected, "{method} {path}");
            if expected == StatusCode::METHOD_NOT_ALLOWED {
                assert_eq!(response.headers()[header::ALLOW], "GET,HEAD", "{method} {path}");
            }
        }
    }
    // The path is matched without the query, and exactly: a trailing slash is another path.
    let (status, _) =
        call_router(router.clone(), &format!("{ECHO}?timeout=10s"), review("q-1", "a-shoot").into()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_router(router, &format!("{ECHO}/"), review("q-2", "a-shoot").into()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_is_503_when_not_ready() {
    let server = handlers();
    let router = routes(&server.config, &server.handlers, readiness(false, true));
    let request = Request::builder().method("GET").uri(READYZ_PATH).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let request = Request::builder().method("GET").uri(HEALTHZ_PATH).body(Body::empty()).expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_is_503_until_certificate_material_is_loaded() {
    let server = handlers();
    for (loaded, expected) in [(false, StatusCode::SERVICE_UNAVAILABLE), (true, StatusCode::OK)] {
        let router = routes(&server.config, &server.handlers, readiness(true, loaded));
        let request = Request::builder().method("GET").uri(READYZ_PATH).body(Body::empty()).expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), expected, "certificate material loaded: {loaded}");
    }
}

#[tokio::test]
async fn readyz_is_503_while_a_readiness_check_fails() {
    let server = handlers();
    let synced = Arc::new(AtomicBool::new(false));
    let check: ReadinessCheck = {
        let synced = synced.clone();
        Arc::new(move || synced.load(std::sync::atomic::Ordering::SeqCst))
    };
    for (holds, expected) in [(false, StatusCode::SERVICE_UNAVAILABLE), (true, StatusCode::OK)] {
        synced.store(holds, std::sync::atomic::Ordering::SeqCst);
        let readiness = Readiness { checks: Arc::new([check.clone()]), ..readiness(true, true) };
        let router = routes(&server.config, &server.handlers, readiness);
        let request = Request::builder().method("GET").uri(READYZ_PATH).body(Body::empty()).expect("request");
        let response = router.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), expected, "check holds: {holds}");
    }
}

#[test]
fn register_rejects_bad_and_duplicate_paths() {
    let mut server = handlers();
    for bad in ["", "/", "webhooks/x", "/webhooks/{id}", "/webhooks/*rest", "/a b", HEALTHZ_PATH, READYZ_PATH] {
        assert!(matches!(server.register(bad, echo), Err(ServerError::InvalidPath { .. })), "{bad:?} must be rejected");
    }
    assert!(matches!(server.register(ECHO, echo), Err(ServerError::DuplicatePath { path }) if path == ECHO));
    server.register("/webhooks/validate-shoot", echo).expect("new path");
    assert_eq!(server.paths().collect::<Vec<_>>(), [ECHO, PANIC, SLOW, "/webhooks/validate-shoot"]);
}

// ---------------------------------------------------------------------------------------------
// Real TLS server

#[tokio::test]
async fn admission_review_gets_the_handlers_answer_with_the_uid_echoed() {
    let server = TestServer::start(|_| {}).await;
    let (status, body) = server.post(ECHO, review("0c9a8d74-9cb7-44dd", "crazy-botany")).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["uid"], "0c9a8d74-9cb7-44dd");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["warnings"][0], "seen Update crazy-botany");

    let (status, body) = server.post(ECHO, review("second", "forbidden")).await;
    assert_eq!(status, StatusCode::OK);
    let response = response_of(&body);
    assert_eq!(response["uid"], "second");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["message"], "name is forbidden");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_server_keeps_serving() {
    let server = TestServer::start(|_| {}).await;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("garbage", b"\x00\x01garbage\xff".to_vec(), "not valid JSON"),
        (
            "wrong kind",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "ConfigMap", "request": {}})).expect("json"),
            "expected apiVersion",
        ),
        ("empty object", b"{}".to_vec(), "expected apiVersion"),
        (
            "no request",
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("json"),
            "has no request",
        ),
        (
            "bad request",
            serde_json::to_vec(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 1}}),
            )
            .expect("json"),
            "malformed AdmissionReview",
        ),
    ];
    for (what, body, reason) in cases {
        let (status, text) = server.post(ECHO, body).await;
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {text}");
        assert!(text.contains(reason), "{what}: {text:?} should contain {reason:?}");
    }
    server.assert_serving().await;
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_body_gets_413_and_the_server_keeps_serving() {
    let server = TestServer::start(|_| {}).await;
    let head = format!(
        "POST {ECHO} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        hard_body_ceiling(DEFAULT_MAX_BODY_BYTES) + 1
    );
    let answer = send_head_only(server.addr, &server.certs.ca_pem, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    server.assert_serving().await;
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_panicking_handler_is_denied_and_the_server_keeps_serving() {
    let server = TestServer::start(|_| {}).await;
    for uid in ["panic-1", "panic-2"] {
        let (status, body) = server.post(PANIC, review(uid, "shoot")).await;
        assert_eq!(status, StatusCode::OK);
        let response = response_of(&body);
        assert_eq!(response["uid"], uid);
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["message"], "internal error");
    }
    server.assert_serving().await;
    server.stop().await.expect("clean shutdown");
}

/// HTTP/1.1 only: a client offering HTTP/2 and HTTP/1.1 (as kube-apiserver's webhook client does) gets HTTP/1.1;
/// one that speaks HTTP/2 anyway (no ALPN, the connection preface straight away) is not served.
#[tokio::test]
async fn admission_is_served_over_http1_only() {
    let server = TestServer::start(|_| {}).await;
    let name = ServerName::try_from("localhost").expect("server name");
    let both =
        TlsConnector::from(client_config_with_alpn(&server.certs.ca_pem, vec![b"h2".to_vec(), b"http/1.1".to_vec()]));
    let stream = both.connect(name.clone(), TcpStream::connect(server.addr).await.expect("tcp")).await.expect("tls");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("h1");
    tokio::spawn(connection);
    let request = Request::builder()
        .method("POST")
        .uri(ECHO)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(review("h1-1", "shoot"))))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(response_of(&body)["uid"], "h1-1");

    let plain = TlsConnector::from(client_config_with_alpn(&server.certs.ca_pem, Vec::new()));
    let stream = plain.connect(name, TcpStream::connect(server.addr).await.expect("tcp")).await.expect("tls");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("the client side of an h2 handshake needs no answer");
    tokio::spawn(connection);
    let request = Request::builder()
        .method("POST")
        .uri(format!("https://localhost{ECHO}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(review("h2-1", "shoot"))))
        .expect("request");
    assert!(sender.send_request(request).await.is_err(), "an HTTP/2 request was served");
    server.assert_serving().await;
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let server = TestServer::start(|_| {}).await;
    for path in [HEALTHZ_PATH, READYZ_PATH] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, b"ok", "{path}");
    }
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_server_presents_the_generated_certificate_for_localhost() {
    let server = TestServer::start(|_| {}).await;
    let stream = connect(server.addr, &server.certs.ca_pem).await.expect("TLS with the generated CA");
    assert_eq!(peer_certificate(&stream), der_of(&server.certs.cert_pem));
    drop(stream);

    let other = tempfile::tempdir().expect("tempdir");
    let stranger = generate_certs(other.path());
    assert!(connect(server.addr, &stranger.ca_pem).await.is_err(), "an unrelated CA must not verify the server");
    server.stop().await.expect("clean shutdown");
}

/// Kubelet's layout for a mounted Secret: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`;
/// an update writes a new timestamped directory and atomically renames a new `..data` symlink over
/// the old one.
#[tokio::test]
async fn a_symlink_swapped_secret_is_served_without_restart() {
    let root = tempfile::tempdir().expect("tempdir");
    let mount = root.path().join("mount");
    fs_create(&mount);
    let first = generate_certs(&mount.join("..v1"));
    symlink("..v1", mount.join("..data")).expect("..data");
    for file in [TLS_CERT_FILE, TLS_KEY_FILE, CA_CERT_FILE] {
        symlink(format!("..data/{file}"), mount.join(file)).expect("file link");
    }

    let certificates = watch_dir(&mount);
    let mut server = WebhookServer::new(WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into()));
    server.register(ECHO, echo).expect("register");
    let bound = server.bind(certificates.subscribe()).await.expect("bind");
    let addr = bound.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));

    let stream = connect(addr, &first.ca_pem).await.expect("first CA");
    assert_eq!(peer_certificate(&stream), der_of(&first.cert_pem));
    drop(stream);

    // The update: a new CA and serving certificate.
    let second = generate_certs(&mount.join("..v2"));
    symlink("..v2", mount.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).expect("swap ..data");

    let served = eventually("the new certificate", || async {
        let stream = connect(addr, &second.ca_pem).await.ok()?;
        Some(peer_certificate(&stream))
    })
    .await;
    assert_eq!(served, der_of(&second.cert_pem));
    assert!(connect(addr, &first.ca_pem).await.is_err(), "the old CA no longer verifies the served certificate");
    let (status, body) =
        https(addr, &second.ca_pem, "POST", ECHO, review("after-swap", "shoot")).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response_of(&body)["uid"], "after-swap");

    tx.send(()).expect("signal shutdown");
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("task").expect("clean shutdown");
}

#[tokio::test]
async fn rewritten_files_are_served_once_they_match_and_broken_pairs_are_ignored() {
    let server = TestServer::start(|_| {}).await;
    let original = der_of(&server.certs.cert_pem);
    let staging = tempfile::tempdir().expect("tempdir");
    let next = generate_certs(staging.path());

    // Half an update: the new certificate with the old key. Not usable, the old certificate stays.
    std::fs::write(server.dir.path().join(TLS_CERT_FILE), &next.cert_pem).expect("write cert");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = connect(server.addr, &server.certs.ca_pem).await.expect("old certificate still served");
    assert_eq!(peer_certificate(&stream), original);
    drop(stream);
    server.assert_serving().await;

    // The key follows: now the new certificate is served.
    std::fs::write(server.dir.path().join(TLS_KEY_FILE), &next.key_pem).expect("write key");
    let served = eventually("the new certificate", || async {
        let stream = connect(server.addr, &next.ca_pem).await.ok()?;
        Some(peer_certificate(&stream))
    })
    .await;
    assert_eq!(served, der_of(&next.cert_pem));

    // Files disappearing (e.g. a broken mount) keep the current certificate in service too.
    std::fs::remove_file(server.dir.path().join(TLS_KEY_FILE)).expect("remove key");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stream = connect(server.addr, &next.ca_pem).await.expect("still served");
    assert_eq!(peer_certificate(&stream), der_of(&next.cert_pem));
    drop(stream);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn bind_waits_for_certificates_to_appear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = watch_dir(dir.path());
    let mut config = WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into());
    config.cert_wait_timeout = Duration::from_secs(10);
    let bind = tokio::spawn(WebhookServer::new(config).bind(certificates.subscribe()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!bind.is_finished(), "bind waits while there is no certificate");

    let certs = generate_certs(dir.path());
    let bound = tokio::time::timeout(Duration::from_secs(10), bind).await.expect("bind returns").expect("task");
    let bound = bound.expect("certificate found");
    let addr = bound.local_addr();
    let task = tokio::spawn(bound.serve(async {}));
    // The shutdown future is already complete: the server stops right away, cleanly.
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("task").expect("clean shutdown");
    assert!(https(addr, &certs.ca_pem, "GET", HEALTHZ_PATH, Vec::new()).await.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn bind_gives_up_without_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = watch_dir(dir.path());
    let mut config = WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into());
    config.cert_wait_timeout = Duration::from_millis(100);
    let Err(err) = WebhookServer::new(config).bind(certificates.subscribe()).await else {
        panic!("bind must fail without certificates");
    };
    assert!(matches!(&err, ServerError::CertWaitTimeout { .. }), "{err:?}");
    let text = error_chain(&err);
    let missing = dir.path().join(TLS_CERT_FILE);
    assert!(text.contains(&missing.display().to_string()), "names the missing file: {text}");
}

#[tokio::test]
async fn bind_reports_a_taken_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_certs(dir.path());
    let certificates = watch_dir(dir.path());
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let address = taken.local_addr().expect("addr");
    let Err(err) = WebhookServer::new(WebhookServerConfig::new(address)).bind(certificates.subscribe()).await else {
        panic!("the port is taken");
    };
    assert!(matches!(err, ServerError::Bind { address: a, .. } if a == address));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = generate_certs(dir.path());
    let certificates = watch_dir(dir.path());
    let mut config = WebhookServerConfig::new((Ipv4Addr::LOCALHOST, 0).into());
    config.shutdown_grace = Duration::from_secs(5);
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let started_tx = std::sync::Mutex::new(Some(started_tx));
    let mut server = WebhookServer::new(config);
    server
        .register("/webhooks/slowish", move |request: RawAdmissionRequest| {
            let started = started_tx.lock().ok().and_then(|mut tx| tx.take());
            async move {
                if let Some(tx) = started {
                    let _ = tx.send(());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                AdmissionResponse::from(&request)
            }
        })
        .expect("register");
    let bound = server.bind(certificates.subscribe()).await.expect("bind");
    let addr = bound.local_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));

    let ca = certs.ca_pem.clone();
    let in_flight =
        tokio::spawn(async move { https(addr, &ca, "POST", "/webhooks/slowish", review("in-flight", "s")).await });
    started_rx.await.expect("handler started");
    tx.send(()).expect("signal shutdown");

    let (status, body) = in_flight.await.expect("task").expect("in-flight request completes");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response_of(&body)["uid"], "in-flight");
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("task").expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_connections_that_sent_no_request_and_refuses_new_ones() {
    let server = TestServer::start(|config| {
        config.shutdown_grace = Duration::from_secs(30);
        config.tls_handshake_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = server.addr;
    // A client that connected but never began its handshake (a TCP probe, a stalled client).
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    server.stop().await.expect("clean");
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the silent connection");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte)).await.expect("closed, not open");
    assert!(matches!(read, Ok(0) | Err(_)), "the silent connection is closed: {read:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "no new connection after shutdown");
}

fn fs_create(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create dir");
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// Every way a request is answered is counted: allowed, denied (by class: unclassified, oversized), and requests
/// that get no review back (not a review, or too large to read), each under the webhook's name.
#[tokio::test]
async fn every_answer_is_counted_by_webhook_and_class() {
    let metrics = crate::runtime::metrics::Metrics::for_admission();
    let server = handlers();
    let mut config = server.config.clone();
    config.max_body_bytes = 4096;
    let router = observed_routes(&config, &server.handlers, Some(metrics.webhook.clone()), readiness(true, true));

    call_router(router.clone(), ECHO, review("m-1", "fine").into()).await;
    call_router(router.clone(), ECHO, review("m-2", "forbidden").into()).await;
    let (status, _) = call_router(router.clone(), ECHO, Body::from("not a review")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut oversized = serde_json::from_slice::<Value>(&review("m-3", "big")).expect("review");
    oversized["request"]["object"]["data"] = json!("x".repeat(5000));
    let (status, body) = call_router(router.clone(), ECHO, serde_json::to_vec(&oversized).expect("json").into()).await;
    assert_eq!((status, response_of(&body)["allowed"].as_bool()), (StatusCode::OK, Some(false)));

    let text = metrics.encode().expect("encode");
    let count = |series: &str| {
        let series = format!("gardener_extension_cri_resmgr_{series}");
        text.lines().find_map(|line| line.strip_prefix(&series)?.strip_prefix(' ')?.parse::<f64>().ok())
    };
    assert_eq!(count("webhook_requests_total{webhook=\"echo\",result=\"allowed\"}"), Some(1.0), "{text}");
    assert_eq!(count("webhook_requests_total{webhook=\"echo\",result=\"denied\"}"), Some(2.0), "{text}");
    assert_eq!(count("webhook_requests_total{webhook=\"echo\",result=\"error\"}"), Some(1.0), "{text}");
    assert_eq!(count("webhook_denials_total{webhook=\"echo\",reason=\"other\"}"), Some(1.0), "{text}");
    assert_eq!(count("webhook_denials_total{webhook=\"echo\",reason=\"too_large\"}"), Some(1.0), "{text}");
    assert_eq!(count("webhook_request_duration_seconds_count{webhook=\"echo\"}"), Some(3.0), "{text}");
}

/// A request the timeout cuts off never reaches the handler's own counting: it is counted as an error all the same
/// (the apiserver saw a failed call).
#[tokio::test]
async fn a_timed_out_request_is_counted_as_an_error() {
    let metrics = crate::runtime::metrics::Metrics::for_admission();
    let server = handlers();
    let mut config = server.config.clone();
    config.request_timeout = Duration::from_millis(300);
    let router = observed_routes(&config, &server.handlers, Some(metrics.webhook.clone()), readiness(true, true));
    let (status, _) = call_router(router, SLOW, review("slow", "shoot").into()).await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let text = metrics.encode().expect("encode");
    assert!(
        text.lines()
            .any(|line| line
                == "gardener_extension_cri_resmgr_webhook_requests_total{webhook=\"slow\",result=\"error\"} 1"),
        "{text}"
    );
}

#[test]
fn a_webhook_is_named_by_the_last_segment_of_its_path() {
    assert_eq!(webhook_name("/webhooks/cri-resmgr/validate-shoot"), "validate-shoot");
    assert_eq!(webhook_name("/webhooks/echo/"), "echo");
}
