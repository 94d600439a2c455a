//! The bad-input table (docs/reliability.md): what hostile or broken input does to the Shoot admission server.
//!
//! What an apiserver can send goes through the real one (a Shoot written to the test bed, the webhook called by the
//! apiserver over TLS); what no apiserver sends (broken reviews, slow or many clients) goes straight to an admission
//! server of its own over TLS. Every case asserts its exact outcome and that the server still answers `/healthz`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gardener_extension_cri_resmgr::commands::admission::{self, AdmissionOptions};
use gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions;
use gardener_extension_cri_resmgr::runtime::registration::{PATH_DEFAULT_SHOOT, PATH_VALIDATE_SHOOT};
use gardener_extension_cri_resmgr::runtime::review::MAX_NESTING_DEPTH;
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
use gardener_extension_cri_resmgr::runtime::tls::certs::{CA_CERT_FILE, client_config_trusting};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::admission::{ensure_admission_server, example_shoot};
use crate::support::{TestEnv, eventually, scratch_dir, shared_client};

/// Where an unrelated field's nesting starts in a Shoot: `{"spec": {"provider": {"infrastructureConfig": …`.
const INFRASTRUCTURE_CONFIG_DEPTH: usize = 3;
/// The levels of a review around its object: `{"request": {"object": …`.
const REVIEW_DEPTH: usize = 2;
/// kube-apiserver's limit for the body of a write request (3 MiB).
const APISERVER_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Placeholder replaced by raw JSON text in a serialised Shoot (values too deep to build as `serde_json::Value`).
const RAW: &str = "\"@raw@\"";

/// The timeouts of the impatient server: the request timeout of production (the apiserver's), the others short, so
/// slow clients are cut off within seconds.
const DIRECT_REQUEST_TIMEOUT_SECONDS: u64 = 10;
const DIRECT_HEADER_READ_TIMEOUT_SECONDS: u64 = 2;
const DIRECT_TLS_HANDSHAKE_TIMEOUT_SECONDS: u64 = 2;
/// How long a test waits for a slow connection to be closed: a guard against a hang, far above the timeouts.
const CLOSE_GUARD: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Through the real apiserver

/// `{"a":{"a":…1…}}` nested `levels` deep, as text.
fn nested_json(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

/// The README's Shoot as request text with `raw` JSON text as `spec.provider.infrastructureConfig`.
fn shoot_text_with_infrastructure_config(namespace: &str, name: &str, labelled: bool, raw: &str) -> Vec<u8> {
    let mut shoot = example_shoot(namespace, name);
    if !labelled {
        shoot["metadata"]["labels"] = json!({});
    }
    shoot["spec"]["provider"]["infrastructureConfig"] = Value::String("@raw@".to_owned());
    let text = serde_json::to_string(&shoot).expect("serialize the Shoot");
    assert_eq!(text.matches(RAW).count(), 1);
    text.replacen(RAW, raw, 1).into_bytes()
}

/// POSTs (or PUTs, for an update of `name`) raw JSON text as a Shoot through the apiserver, stored or as a dry run;
/// `Err` is the apiserver's refusal (status code and message).
async fn write_shoot_text(
    env: &TestEnv,
    method: &str,
    name: &str,
    body: Vec<u8>,
    dry_run: bool,
) -> Result<Value, (u16, String)> {
    let collection = format!("/apis/core.gardener.cloud/v1beta1/namespaces/{}/shoots", env.namespace);
    let uri = if method == "PUT" { format!("{collection}/{name}") } else { collection };
    let uri = if dry_run { format!("{uri}?dryRun=All") } else { uri };
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("request");
    match env.client.request_text(request).await {
        Ok(text) => Ok(serde_json::from_str(&text).expect("the stored Shoot is JSON")),
        Err(kube::Error::Api(status)) => Err((status.code, status.message)),
        Err(other) => panic!("the apiserver did not answer: {other}"),
    }
}

fn assert_judged_by_our_webhooks(stored: &Value) {
    let config = &stored["spec"]["extensions"][0]["providerConfig"];
    assert_eq!(config["apiVersion"], "cri-resmgr.extensions.gardener.cloud/v1alpha1", "defaulted by the webhook");
}

/// How deep this test bed's kube-apiserver (1.20) can nest a schemaless field in practice: its field manager takes
/// time exponential in the depth of such a field before it calls any webhook (measured: 15 levels 1.3 s, 20 levels
/// 14 s, 25 levels more than 20 s), so deeper Shoots never reach the webhooks here. Depths up to the apiserver's
/// JSON bound (10,000) are sent to the server directly (`malformed_and_hostile_reviews_get_their_exact_answer`).
const APISERVER_PRACTICAL_DEPTH: usize = 16;

#[tokio::test]
async fn a_shoot_with_an_unrelated_field_nested_as_deep_as_the_apiserver_accepts_is_admitted() {
    ensure_admission_server();
    let env = TestEnv::new("bad_input_deep").await;
    let name = "deep";
    let levels = APISERVER_PRACTICAL_DEPTH;
    let body = shoot_text_with_infrastructure_config(&env.namespace, name, true, &nested_json(levels));
    let stored = write_shoot_text(&env, "POST", name, body, false).await.expect("the deep Shoot is admitted");
    assert_judged_by_our_webhooks(&stored);
    let mut config = &stored["spec"]["provider"]["infrastructureConfig"];
    for _ in 0..levels {
        config = &config["a"];
    }
    assert_eq!(config, &json!(1), "stored as written");
    assert_direct_server_healthy().await;
}

/// kube-apiserver 1.20 sends at most 2 MiB to etcd in one request, so larger objects cannot be stored; a dry run
/// (`?dryRun=All`) runs every admission webhook and stops before storage, so objects up to the 3 MiB request limit
/// reach the webhooks that way.
const APISERVER_MAX_STORED_BYTES: usize = 2 * 1024 * 1024;

#[tokio::test]
async fn a_shoot_near_the_apiserver_request_limit_is_admitted_on_create_and_update() {
    ensure_admission_server();
    let env = TestEnv::new("bad_input_large").await;
    let name = "largest";
    // A string of filler as infrastructureConfig, so that the whole request has the given size.
    let sized = |bytes: usize, marker: &str| {
        let probe = shoot_text_with_infrastructure_config(&env.namespace, name, true, "\"\"");
        let filler = bytes.checked_sub(probe.len()).expect("room for filler");
        let filler = format!("\"{marker}{}\"", "x".repeat(filler - marker.len()));
        let body = shoot_text_with_infrastructure_config(&env.namespace, name, true, &filler);
        assert_eq!(body.len(), bytes);
        body
    };
    // One byte over: refused by the apiserver itself, before any webhook (its limit is what bounds the review).
    let (code, message) = write_shoot_text(&env, "POST", name, sized(APISERVER_MAX_REQUEST_BYTES + 1, "a"), true)
        .await
        .expect_err("a body over the apiserver's limit");
    assert_eq!(code, 413, "{message}");

    // Just under the limit (room for what the apiserver adds before it calls the webhooks: metadata, managedFields).
    let largest = APISERVER_MAX_REQUEST_BYTES - 4 * 1024;
    let created = write_shoot_text(&env, "POST", name, sized(largest, "a"), true).await.expect("the largest Shoot");
    assert_judged_by_our_webhooks(&created);

    // An UPDATE carries the object twice (object and old object): the largest stored Shoot, updated to the largest
    // request.
    let stored = APISERVER_MAX_STORED_BYTES - 64 * 1024;
    let stored = write_shoot_text(&env, "POST", name, sized(stored, "b"), false).await.expect("a large stored Shoot");
    assert_judged_by_our_webhooks(&stored);
    let mut update = stored.clone();
    update["spec"]["provider"]["infrastructureConfig"] = json!("");
    let room = largest - serde_json::to_vec(&update).expect("serialize").len();
    update["spec"]["provider"]["infrastructureConfig"] = json!(format!("c{}", "x".repeat(room - 1)));
    let body = serde_json::to_vec(&update).expect("serialize");
    assert_eq!(body.len(), largest);
    let updated = write_shoot_text(&env, "PUT", name, body, true).await.expect("the update to the largest Shoot");
    assert!(updated["spec"]["provider"]["infrastructureConfig"].as_str().is_some_and(|c| c.starts_with('c')));
    assert_judged_by_our_webhooks(&updated);
    assert_direct_server_healthy().await;
}

// ---------------------------------------------------------------------------------------------
// Straight to an admission server of its own

struct DirectServer {
    address: SocketAddr,
    ca_pem: Vec<u8>,
}

/// The `admission` command's server, unregistered, with the default timeouts; one per test binary.
fn direct_server() -> &'static DirectServer {
    static SERVER: OnceLock<DirectServer> = OnceLock::new();
    SERVER.get_or_init(|| start_direct_server("cri-resmgr-bad-input-certs", |_| {}))
}

/// Like [`direct_server`], with short timeouts for slow clients, so that they are cut off within seconds (under a
/// heavy load they would cut off normal clients as well, so only the slow-client test uses this server).
fn impatient_server() -> &'static DirectServer {
    static SERVER: OnceLock<DirectServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        start_direct_server("cri-resmgr-impatient-certs", |webhook| {
            webhook.webhook_request_timeout_seconds = DIRECT_REQUEST_TIMEOUT_SECONDS;
            webhook.webhook_header_read_timeout_seconds = DIRECT_HEADER_READ_TIMEOUT_SECONDS;
            webhook.webhook_tls_handshake_timeout_seconds = DIRECT_TLS_HANDSHAKE_TIMEOUT_SECONDS;
        })
    })
}

fn start_direct_server(cert_dir: &'static str, tune: fn(&mut WebhookOptions)) -> DirectServer {
    {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime for the direct server");
            runtime.block_on(async move {
                let port = cri_resmgr_testbed::control_plane::free_port().expect("free port");
                let address = SocketAddr::from(([127, 0, 0, 1], port));
                let cert_dir = scratch_dir(cert_dir);
                let mut webhook = WebhookOptions {
                    webhook_bind_address: address,
                    webhook_cert_dir: cert_dir.clone(),
                    generate_certs_for: vec!["127.0.0.1".to_string(), "localhost".to_string()],
                    webhook_config_mode: WebhookConfigMode::Url,
                    webhook_config_url: Some(address.to_string()),
                    no_webhook_registration: true,
                    ..WebhookOptions::default()
                };
                tune(&mut webhook);
                let options = AdmissionOptions { webhook, metrics: MetricsOptions::disabled() };
                let server = tokio::spawn(admission::run(options, shared_client().await, std::future::pending()));
                let ca_pem = eventually("the direct server's certificates", || async {
                    assert!(!server.is_finished(), "the direct server stopped during start-up");
                    let ca_pem = std::fs::read(cert_dir.join(CA_CERT_FILE)).ok()?;
                    let probe = DirectServer { address, ca_pem };
                    let (status, _) = request(&probe, "GET", "/healthz", Vec::new()).await.ok()?;
                    (status == 200).then_some(probe.ca_pem)
                })
                .await;
                ready_tx.send(DirectServer { address, ca_pem }).expect("signal readiness");
                let result = server.await;
                panic!("the direct admission server stopped: {result:?}");
            });
        });
        ready_rx.recv().expect("the direct server starts")
    }
}

fn tls_connector(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(Arc::new(client_config_trusting(ca_pem).expect("the server's CA")))
}

async fn tls_connect(server: &DirectServer) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(server.address).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    tls_connector(&server.ca_pem).connect(name, tcp).await
}

type RequestResult = Result<(u16, Vec<u8>), Box<dyn std::error::Error + Send + Sync>>;

/// One HTTP/1.1 request on a fresh TLS connection.
async fn request(server: &DirectServer, method: &str, path: &str, body: Vec<u8>) -> RequestResult {
    let stream = tls_connect(server).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "localhost")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes().to_vec()))
}

async fn post(path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    request(direct_server(), "POST", path, body).await.expect("the server answers")
}

async fn assert_direct_server_healthy() {
    assert_healthy(direct_server()).await;
}

async fn assert_healthy(server: &DirectServer) {
    let (status, body) = request(server, "GET", "/healthz", Vec::new()).await.expect("/healthz answers");
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
}

/// An AdmissionReview of `request` (uid, kind and resource filled in when missing).
fn review(mut request: Value) -> Value {
    let defaults = json!({
        "uid": "bad-input",
        "kind": {"group": "core.gardener.cloud", "version": "v1beta1", "kind": "Shoot"},
        "resource": {"group": "core.gardener.cloud", "version": "v1beta1", "resource": "shoots"},
        "name": "hostile",
        "namespace": "garden-dev",
        "operation": "CREATE",
        "userInfo": {"username": "someone"},
    });
    for (key, value) in defaults.as_object().expect("object") {
        request.as_object_mut().expect("request object").entry(key.clone()).or_insert(value.clone());
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// The README's Shoot with `providerConfig` as given.
fn shoot_with_provider_config(provider_config: Value) -> Value {
    let mut shoot = example_shoot("garden-dev", "hostile");
    shoot["spec"]["extensions"][0]["providerConfig"] = provider_config;
    shoot
}

fn create_review(shoot: Value) -> Vec<u8> {
    serde_json::to_vec(&review(json!({"object": shoot}))).expect("serialize")
}

/// What one bad input must get.
#[derive(Debug)]
enum Outcome {
    /// HTTP 400 whose text contains this.
    Rejected(&'static str),
    /// An AdmissionReview allowing the request.
    Allowed,
    /// An AdmissionReview denying it with a message containing all of these.
    Denied(&'static [&'static str]),
}

async fn assert_outcome(case: &str, path: &str, body: Vec<u8>, expected: &Outcome) -> String {
    let started = std::time::Instant::now();
    let (status, answer) = post(path, body).await;
    println!("{case}: answered in {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&answer).into_owned();
    match expected {
        Outcome::Rejected(needle) => {
            assert_eq!(status, 400, "{case}: {text}");
            assert!(text.contains(needle), "{case}: {needle:?} not in {text:?}");
            text
        }
        Outcome::Allowed | Outcome::Denied(_) => {
            assert_eq!(status, 200, "{case}: {text}");
            let review: Value = serde_json::from_slice(&answer).unwrap_or_else(|e| panic!("{case}: {e}: {text}"));
            assert_eq!(review["kind"], "AdmissionReview", "{case}");
            let response = &review["response"];
            assert_eq!(response["uid"], "bad-input", "{case}");
            let message = response["status"]["message"].as_str().unwrap_or_default().to_owned();
            match expected {
                Outcome::Allowed => assert_eq!(response["allowed"], true, "{case}: {message}"),
                Outcome::Denied(needles) => {
                    assert_eq!(response["allowed"], false, "{case}");
                    for needle in *needles {
                        assert!(message.contains(needle), "{case}: {needle:?} not in {message:?}");
                    }
                }
                Outcome::Rejected(_) => unreachable!(),
            }
            message
        }
    }
}

const CONFIG_DEFAULT: &str = "spec.extensions[0].providerConfig.configs[\"default\"]";

/// A YAML "billion laughs": nine levels of anchors, each alias list ten times the one before.
fn yaml_alias_bomb() -> String {
    let mut text =
        String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for level in 1..=9 {
        let previous = format!("*a{}", level - 1);
        text.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 10].join(",")));
    }
    text.push_str("policy:\n  Active: none\n");
    text
}

/// Few YAML nodes, many bytes: one anchored 60 KiB string and 30 aliases of it (1.8 MiB expanded) in a list option.
fn yaml_long_string_aliased() -> String {
    let aliases = vec!["*long"; 30].join(", ");
    format!(
        "policy:\n  Active: balloons\n  balloons:\n    BalloonTypes: [&long \"{}\", {aliases}]\n",
        "x".repeat(60 * 1024)
    )
}

#[tokio::test]
async fn malformed_and_hostile_reviews_get_their_exact_answer() {
    let server_ok = || assert_direct_server_healthy();
    let valid = create_review(example_shoot("garden-dev", "hostile"));
    let many_keys: serde_json::Map<String, Value> = (0..100_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let many_configs: serde_json::Map<String, Value> =
        (0..100_000).map(|i| (format!("node.n{i}"), json!("policy:\n  Active: none\n"))).collect();
    let many_yaml_keys: String = (0..20_000).map(|i| format!("  Key{i}: 1\n")).collect();
    let few_yaml_keys: String = (0..5_000).map(|i| format!("  Key{i}: 1\n")).collect();
    let mut unrelated_keys = example_shoot("garden-dev", "hostile");
    unrelated_keys["spec"]["provider"]["infrastructureConfig"] = Value::Object(many_keys);

    let non_utf8 = {
        let mut body = valid.clone();
        let at = body.windows(7).position(|w| w == b"hostile").expect("the name");
        body[at] = 0xff;
        body
    };
    let raw_nul = {
        let mut body = valid.clone();
        let at = body.windows(7).position(|w| w == b"hostile").expect("the name");
        body[at] = 0;
        body
    };
    // The whole review then nests the apiserver's 10,000 levels plus the envelope: the server's bound.
    let deep_shoot = {
        let mut shoot = example_shoot("garden-dev", "hostile");
        shoot["spec"]["provider"]["infrastructureConfig"] = Value::String("@raw@".to_owned());
        let text = String::from_utf8(create_review(shoot)).expect("UTF-8");
        let levels = MAX_NESTING_DEPTH - INFRASTRUCTURE_CONFIG_DEPTH - REVIEW_DEPTH;
        text.replacen(RAW, &nested_json(levels), 1).into_bytes()
    };
    let deep_review = format!(
        "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{}}}",
        nested_json(MAX_NESTING_DEPTH)
    );

    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("empty body", Vec::new(), Outcome::Rejected("not valid JSON")),
        ("not JSON", b"<AdmissionReview/>".to_vec(), Outcome::Rejected("not valid JSON")),
        ("truncated review", valid[..valid.len() / 2].to_vec(), Outcome::Rejected("not valid JSON")),
        ("trailing garbage", [valid.as_slice(), b"}"].concat(), Outcome::Rejected("not valid JSON")),
        ("a JSON array", b"[]".to_vec(), Outcome::Rejected("not a JSON object")),
        (
            "another kind of object",
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod", "request": {}})).expect("json"),
            Outcome::Rejected("expected apiVersion \"admission.k8s.io/v1\" and kind \"AdmissionReview\""),
        ),
        (
            "an older review version",
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                "request": review(json!({}))["request"]}))
            .expect("json"),
            Outcome::Rejected("got apiVersion \"admission.k8s.io/v1beta1\""),
        ),
        (
            "a review without request",
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": "x", "allowed": true}}))
            .expect("json"),
            Outcome::Rejected("AdmissionReview has no request"),
        ),
        (
            "a request of the wrong shape",
            serde_json::to_vec(&review(json!({"operation": 7}))).expect("json"),
            Outcome::Rejected("malformed AdmissionReview"),
        ),
        ("non-UTF-8 bytes", non_utf8, Outcome::Rejected("not valid JSON")),
        ("a raw NUL byte", raw_nul, Outcome::Rejected("not valid JSON")),
        ("nested deeper than the apiserver sends", deep_review.into_bytes(), Outcome::Rejected("levels deep")),
        (
            "a Pod sent to the Shoot webhook",
            serde_json::to_vec(&review(json!({
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
            })))
            .expect("json"),
            Outcome::Allowed,
        ),
        (
            "a Shoot that is not a Shoot",
            serde_json::to_vec(&review(
                json!({"object": {"apiVersion": "core.gardener.cloud/v1beta1", "kind": "Shoot",
                "metadata": {"name": "hostile"}, "spec": {"extensions": "all of them"}}}),
            ))
            .expect("json"),
            Outcome::Denied(&["the Shoot cannot be read", "spec.extensions"]),
        ),
        (
            "oldObject only, CREATE",
            serde_json::to_vec(&review(json!({"oldObject": example_shoot("garden-dev", "hostile")}))).expect("json"),
            Outcome::Denied(&["the request carries no Shoot"]),
        ),
        (
            "oldObject only, UPDATE",
            serde_json::to_vec(&review(
                json!({"operation": "UPDATE", "oldObject": example_shoot("garden-dev", "hostile")}),
            ))
            .expect("json"),
            Outcome::Denied(&["the request carries no Shoot"]),
        ),
        (
            "oldObject only, DELETE",
            serde_json::to_vec(&review(
                json!({"operation": "DELETE", "oldObject": example_shoot("garden-dev", "hostile")}),
            ))
            .expect("json"),
            Outcome::Allowed,
        ),
        ("100,000 keys in an unrelated field", create_review(unrelated_keys), Outcome::Allowed),
        ("an unrelated field nested as deep as the apiserver's JSON bound", deep_shoot, Outcome::Allowed),
        (
            "100,000 configs",
            create_review(shoot_with_provider_config(json!({"configs": many_configs}))),
            Outcome::Denied(&["spec.extensions[0].providerConfig.configs: Too many"]),
        ),
        (
            "20,000 keys in a config section (over a config's size limit)",
            create_review(shoot_with_provider_config(
                json!({"configs": {"default": format!("policy:\n  Active: none\n{many_yaml_keys}")}}),
            )),
            Outcome::Denied(&[CONFIG_DEFAULT, "Too long: may not be more than"]),
        ),
        (
            "5,000 unknown keys in a config section",
            create_review(shoot_with_provider_config(
                json!({"configs": {"default": format!("policy:\n  Active: none\n{few_yaml_keys}")}}),
            )),
            Outcome::Denied(&["configs[\"default\"].policy.Key0: Unsupported value"]),
        ),
        (
            "a YAML alias bomb in a config",
            create_review(shoot_with_provider_config(json!({"configs": {"default": yaml_alias_bomb()}}))),
            Outcome::Denied(&[CONFIG_DEFAULT, "aliases"]),
        ),
        (
            "aliases of one long string in a config",
            create_review(shoot_with_provider_config(json!({"configs": {"default": yaml_long_string_aliased()}}))),
            Outcome::Denied(&[
                CONFIG_DEFAULT,
                "values add up to more than 1048576 bytes with aliases (*name) expanded",
            ]),
        ),
        (
            "deep YAML (flow) in a config",
            create_review(shoot_with_provider_config(
                json!({"configs": {"default": format!("policy: {}1{}\n", "[".repeat(50_000), "]".repeat(50_000))}}),
            )),
            // The YAML parser's own bound (256 levels of flow collections) is met before the decoder's.
            Outcome::Denied(&[CONFIG_DEFAULT, "invalid YAML: recursion limit exceeded"]),
        ),
        (
            "deep YAML (blocks) in a config",
            create_review(shoot_with_provider_config(json!({"configs": {"default": (0..300)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()}}))),
            Outcome::Denied(&[CONFIG_DEFAULT, "nested too deeply"]),
        ),
        (
            "an escaped NUL in a config",
            create_review(shoot_with_provider_config(
                json!({"configs": {"default": "policy:\n  Active: no\u{0}ne\n"}}),
            )),
            Outcome::Denied(&[CONFIG_DEFAULT]),
        ),
        (
            "an escaped NUL in EXTRA_OPTIONS",
            create_review(shoot_with_provider_config(json!({"configs": {"EXTRA_OPTIONS": "--a\u{0}--b"}}))),
            Outcome::Denied(&["spec.extensions[0].providerConfig.configs[\"EXTRA_OPTIONS\"]"]),
        ),
    ];
    for (case, body, expected) in cases {
        let answer = assert_outcome(case, PATH_VALIDATE_SHOOT, body, &expected).await;
        println!("{case}: {}", answer.chars().take(300).collect::<String>());
        server_ok().await;
    }
    // The defaulter on its own path answers the same broken input the same way (it does not decode more).
    let truncated = valid[..valid.len() / 3].to_vec();
    assert_outcome("truncated, defaulter", PATH_DEFAULT_SHOOT, truncated, &Outcome::Rejected("not valid JSON")).await;
    server_ok().await;
}

/// How a slow client's connection ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// The server closed it; what it had sent before, if anything.
    ClosedByServer(String),
    /// The client ran out of bytes to trickle before the server closed it.
    StillOpen,
}

/// Trickles `bytes` one per second into `stream` until the server closes the connection.
async fn trickle<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, bytes: &[u8]) -> Ended {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let read = async {
        let mut received = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return received,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    let write = async {
        for byte in bytes {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                // Closed: the read side reports it.
                return std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::select! {
        received = read => Ended::ClosedByServer(String::from_utf8_lossy(&received).into_owned()),
        () = write => Ended::StillOpen,
    }
}

/// A request head for a review of `length` bytes.
fn head(length: usize) -> String {
    format!(
        "POST {PATH_VALIDATE_SHOOT} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn slow_clients_are_cut_off_while_normal_requests_are_answered() {
    const PER_KIND: usize = 8;
    let server = impatient_server();
    let valid = create_review(example_shoot("garden-dev", "hostile"));
    // Enough bytes to outlast every timeout by far: the connection must end by the server's hand.
    let long = 120;
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..PER_KIND {
        // Never completes the TLS handshake: a ClientHello's first bytes, a byte a second.
        let tcp = TcpStream::connect(server.address).await.expect("connect");
        let hello: Vec<u8> = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01].into_iter().cycle().take(long).collect();
        slow.spawn(async move { ("handshake", trickle(tcp, &hello).await) });
        // Sends the head of its first request a byte a second.
        let tls = tls_connect(server).await.expect("connect");
        let slow_head = head(valid.len()).into_bytes().into_iter().cycle().take(long).collect::<Vec<_>>();
        slow.spawn(async move { ("first head", trickle(tls, &slow_head).await) });
        // Sends its body a byte a second.
        let mut tls = tls_connect(server).await.expect("connect");
        tls.write_all(head(valid.len()).as_bytes()).await.expect("head");
        let body = valid.clone();
        slow.spawn(async move { ("body", trickle(tls, &body[..long]).await) });
        // One good request, then the head of the next one on the kept-alive connection, a byte a second.
        let mut tls = tls_connect(server).await.expect("connect");
        tls.write_all(&[head(valid.len()).as_bytes(), valid.as_slice()].concat()).await.expect("request");
        let next = head(valid.len()).into_bytes().into_iter().cycle().take(long).collect::<Vec<_>>();
        slow.spawn(async move { ("kept-alive head", trickle(tls, &next).await) });
    }

    // While they are held open, normal requests are answered (one after the other, then many at once).
    for i in 0..10 {
        let (status, body) = request(server, "POST", PATH_VALIDATE_SHOOT, valid.clone()).await.expect("answered");
        assert_eq!(status, 200, "normal request {i} while slow clients are connected");
        assert_eq!(serde_json::from_slice::<Value>(&body).expect("review")["response"]["allowed"], true);
    }
    let many = (0..50).map(|_| request(server, "POST", PATH_VALIDATE_SHOOT, valid.clone()));
    for answer in futures::future::join_all(many).await {
        assert_eq!(answer.expect("answered").0, 200);
    }
    assert_healthy(server).await;

    // Every slow connection is closed by the server; the slow body gets a 408 first.
    let ended = tokio::time::timeout(CLOSE_GUARD, slow.join_all()).await.expect("the slow connections end");
    for (kind, ended) in ended {
        match (kind, ended) {
            ("body", Ended::ClosedByServer(answer)) => {
                assert!(answer.starts_with("HTTP/1.1 408"), "slow body answered {answer:?}")
            }
            ("kept-alive head", Ended::ClosedByServer(answer)) => {
                assert!(answer.starts_with("HTTP/1.1 200"), "the first request was answered: {answer:?}");
                assert_eq!(answer.matches("HTTP/1.1").count(), 1, "nothing for the slow second head: {answer:?}");
            }
            (_, Ended::ClosedByServer(answer)) => assert_eq!(answer, "", "{kind}: nothing answered"),
            (_, Ended::StillOpen) => panic!("{kind}: the server kept a slow connection open"),
        }
    }
    assert_healthy(server).await;
}

#[tokio::test]
async fn five_hundred_concurrent_clients_are_all_answered_correctly() {
    const CLIENTS: usize = 500;
    let server = direct_server();
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        // Every third Shoot is invalid and must be denied; every request carries its own uid.
        let invalid = i % 3 == 0;
        let provider_config = if invalid {
            json!({"configs": {"default": "policy:\n  Active: fastest\n"}})
        } else {
            json!({"configs": {"default": "policy:\n  Active: balloons\n"}})
        };
        let mut call = review(json!({"object": shoot_with_provider_config(provider_config)}));
        call["request"]["uid"] = json!(format!("client-{i}"));
        let body = serde_json::to_vec(&call).expect("serialize");
        clients.spawn(async move {
            let result = request(server, "POST", PATH_VALIDATE_SHOOT, body).await;
            (i, invalid, result.map_err(|e| e.to_string()))
        });
    }
    let mut answered = 0;
    while let Some(joined) = clients.join_next().await {
        let (i, invalid, result) = joined.expect("client task");
        let (status, body) = result.unwrap_or_else(|e| panic!("client {i} got no answer: {e}"));
        assert_eq!(status, 200, "client {i}");
        let review: Value = serde_json::from_slice(&body).expect("review");
        assert_eq!(review["response"]["uid"], format!("client-{i}"), "client {i} got its own answer");
        assert_eq!(review["response"]["allowed"], !invalid, "client {i}");
        if invalid {
            let message = review["response"]["status"]["message"].as_str().expect("message");
            assert!(message.contains("\"fastest\""), "client {i}: {message}");
        }
        answered += 1;
    }
    assert_eq!(answered, CLIENTS);
    assert_direct_server_healthy().await;
}
