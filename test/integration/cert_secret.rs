//! Webhook certificates kept in a Secret (`--webhook-cert-secret`, `runtime::tls::cert_secret`) against the real
//! apiserver: replicas agree on one CA, the Secret is reused and renewed with the same CA, the process's certificate
//! owner (`runtime::tls::secret`) follows it through a watch, and a server started with the flag serves a certificate
//! of the Secret's CA.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use gardener_extension_cri_resmgr::commands::admission::{self, AdmissionOptions};
use gardener_extension_cri_resmgr::constants::{LABEL_MANAGED_BY, MANAGED_BY};
use gardener_extension_cri_resmgr::runtime::serving::{ServingError, WebhookConfigMode, WebhookOptions};
use gardener_extension_cri_resmgr::runtime::tls;
use gardener_extension_cri_resmgr::runtime::tls::cert_secret::{self, CertMaterial, CertSecretConfig, CertSecretError};
use gardener_extension_cri_resmgr::runtime::tls::certs::{self, CertPems};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::OffsetDateTime;

use crate::support::{TestEnv, eventually, https_get};

const SECRET: &str = "webhook-certs";

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

async fn ensure(env: &TestEnv, hostnames: &[&str]) -> Result<CertMaterial, CertSecretError> {
    cert_secret::ensure(&env.client, &env.namespace, SECRET, &names(hostnames), &[]).await
}

async fn get_secret(env: &TestEnv) -> Secret {
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace).get(SECRET).await.expect("the Secret")
}

fn data(secret: &Secret, key: &str) -> String {
    let value = secret.data.as_ref().and_then(|d| d.get(key)).unwrap_or_else(|| panic!("no {key} in the Secret"));
    String::from_utf8(value.0.clone()).expect("UTF-8")
}

/// The serving certificate is signed by the first CA of `ca_pem`, covers `hostnames` and is good for 30+ days.
fn assert_serves(material: &CertMaterial, hostnames: &[&str]) {
    certs::check_serving(
        &material.cert_pem,
        &material.key_pem,
        &material.ca_pem,
        hostnames,
        &[],
        OffsetDateTime::now_utc(),
    )
    .expect("a usable serving certificate of the Secret's CA");
}

/// Puts material into the Secret as another writer would (labelled as ours unless `foreign`).
async fn put_secret(env: &TestEnv, pems: &CertPems, foreign: bool) {
    let data =
        [("ca.crt", &pems.ca_cert), ("ca.key", &pems.ca_key), ("tls.crt", &pems.tls_cert), ("tls.key", &pems.tls_key)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect();
    let labels = (!foreign).then(|| [(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into());
    let secret = Secret {
        metadata: ObjectMeta { name: Some(SECRET.to_string()), labels, ..ObjectMeta::default() },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the Secret");
}

/// A serving certificate for `host` signed by `issuer`, valid for `days` more days.
fn serving_cert(issuer: &Issuer<'_, KeyPair>, host: &str, days: i64) -> (String, String) {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(vec![host.to_string()]).expect("params");
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

/// A CA valid for `days` more days: (certificate PEM, key PEM, issuer).
fn short_lived_ca(days: i64) -> (String, String, Issuer<'static, KeyPair>) {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    let key_pem = key.serialize_pem();
    (cert.pem(), key_pem, Issuer::new(params, key))
}

#[tokio::test]
async fn replicas_racing_to_create_the_secret_agree_on_one_ca_and_reuse_it() {
    let env = TestEnv::new("cert_secret_race").await;
    let hosts = ["webhook.garden", "webhook.garden.svc"];
    // Three replicas, each with its own client (connections), starting at once.
    let (client_b, client_c) = (crate::support::shared_client().await, crate::support::shared_client().await);
    let requested = names(&hosts);
    let (a, b, c) = tokio::join!(
        ensure(&env, &hosts),
        cert_secret::ensure(&client_b, &env.namespace, SECRET, &requested, &[]),
        cert_secret::ensure(&client_c, &env.namespace, SECRET, &requested, &[])
    );
    let (a, b, c) = (a.expect("first"), b.expect("second"), c.expect("third"));
    assert_eq!(a.ca_pem, b.ca_pem, "one CA for every replica");
    assert_eq!((&a, &b), (&c, &c), "the losers of the race use the winner's certificates");
    assert_serves(&a, &hosts);

    let secret = get_secret(&env).await;
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(
        secret.metadata.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED_BY)).map(String::as_str),
        Some(MANAGED_BY)
    );
    let keys: Vec<&String> = secret.data.as_ref().expect("data").keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    assert_eq!((data(&secret, "ca.crt"), data(&secret, "tls.crt")), (a.ca_pem.clone(), a.cert_pem.clone()));

    // Later rounds reuse it without writing.
    let again = ensure(&env, &hosts).await.expect("again");
    assert_eq!(again, a);
    assert_eq!(get_secret(&env).await.metadata.resource_version, secret.metadata.resource_version, "not rewritten");
}

#[tokio::test]
async fn a_serving_cert_without_a_requested_name_is_renewed_with_the_same_ca() {
    let env = TestEnv::new("cert_secret_names").await;
    let first = ensure(&env, &["a.example"]).await.expect("create");
    let version = get_secret(&env).await.metadata.resource_version;

    // Two replicas (each with its own client) that need a new name at once: one renews, the other's update
    // conflicts (it read the same resourceVersion) and it re-reads.
    let other_replica = crate::support::shared_client().await;
    let both = names(&["a.example", "b.example"]);
    let (second, racing) = tokio::join!(
        ensure(&env, &["a.example", "b.example"]),
        cert_secret::ensure(&other_replica, &env.namespace, SECRET, &both, &[])
    );
    let (second, racing) = (second.expect("renew"), racing.expect("renew concurrently"));
    assert_eq!(second.ca_pem, first.ca_pem, "the CA stays");
    assert_ne!(second.cert_pem, first.cert_pem, "a new serving certificate");
    assert_eq!(racing, second, "both end with the same certificate");
    // The old names are kept, so a replica still asking for them does not renew again.
    assert_serves(&second, &["a.example", "b.example"]);
    assert_eq!(ensure(&env, &["a.example"]).await.expect("old names"), second);
    let secret = get_secret(&env).await;
    assert_ne!(secret.metadata.resource_version, version);
    assert_eq!(data(&secret, "tls.crt"), second.cert_pem);
}

#[tokio::test]
async fn a_serving_cert_near_expiry_is_renewed_with_the_same_ca() {
    let env = TestEnv::new("cert_secret_expiry").await;
    let mut pems = certs::generate_pems(&["webhook.example"], &[]).expect("generate");
    let issuer = Issuer::from_ca_cert_pem(&pems.ca_cert, KeyPair::from_pem(&pems.ca_key).expect("CA key")).expect("CA");
    (pems.tls_cert, pems.tls_key) = serving_cert(&issuer, "webhook.example", 10);
    put_secret(&env, &pems, false).await;

    let renewed = ensure(&env, &["webhook.example"]).await.expect("renew");
    assert_eq!(renewed.ca_pem, pems.ca_cert, "the CA stays");
    assert_ne!(renewed.cert_pem, pems.tls_cert);
    assert_serves(&renewed, &["webhook.example"]);
    let days = (certs::not_after(&renewed.cert_pem).expect("not after") - OffsetDateTime::now_utc()).whole_days();
    assert!(days > 300, "a fresh serving certificate, valid for {days} days");
    assert_eq!(data(&get_secret(&env).await, "ca.key"), pems.ca_key, "the CA key stays");
}

#[tokio::test]
async fn a_ca_near_expiry_is_replaced_and_stays_trusted_until_it_expires() {
    let env = TestEnv::new("cert_secret_ca_expiry").await;
    let (ca_cert, ca_key, issuer) = short_lived_ca(10);
    let (tls_cert, tls_key) = serving_cert(&issuer, "webhook.example", 9);
    put_secret(&env, &CertPems { ca_cert: ca_cert.clone(), ca_key, tls_cert, tls_key }, false).await;

    let rotated = ensure(&env, &["webhook.example"]).await.expect("rotate");
    assert!(!rotated.ca_pem.starts_with(ca_cert.trim()), "a new CA signs");
    assert_serves(&rotated, &["webhook.example"]);
    assert!(rotated.ca_pem.contains(ca_cert.trim()), "the old CA is still in the bundle");
    assert_eq!(rotated.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(ensure(&env, &["webhook.example"]).await.expect("again"), rotated, "stable after the rotation");
}

#[tokio::test]
async fn a_secret_the_extension_does_not_manage_is_used_but_never_changed() {
    let env = TestEnv::new("cert_secret_foreign").await;
    let pems = certs::generate_pems(&["webhook.example"], &[]).expect("generate");
    put_secret(&env, &pems, true).await;
    let used = ensure(&env, &["webhook.example"]).await.expect("a good foreign Secret is used");
    assert_eq!(used.cert_pem, pems.tls_cert);

    let version = get_secret(&env).await.metadata.resource_version;
    let error = ensure(&env, &["other.example"]).await.expect_err("it would need a new certificate");
    assert!(matches!(&error, CertSecretError::NotManaged { name, .. } if name == SECRET), "{error}");
    assert!(error.to_string().contains(&format!("{}/{SECRET}", env.namespace)), "names the Secret: {error}");
    assert_eq!(get_secret(&env).await.metadata.resource_version, version, "left alone");
}

#[test]
fn write_files_writes_the_files_and_skips_unchanged_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs_dir = dir.path().join("certs");
    let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
    let material = CertMaterial { ca_pem: pems.ca_cert, cert_pem: pems.tls_cert, key_pem: pems.tls_key };
    assert!(cert_secret::write_files(&certs_dir, &material).expect("write"));
    let read = |file: &str| std::fs::read_to_string(certs_dir.join(file)).expect("read");
    assert_eq!(
        (read("ca.crt"), read("tls.crt"), read("tls.key")),
        (material.ca_pem.clone(), material.cert_pem.clone(), material.key_pem.clone())
    );
    assert!(!certs_dir.join("ca.key").exists(), "the CA key stays in the Secret");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs_dir.join("tls.key")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let modified = |file: &str| std::fs::metadata(certs_dir.join(file)).and_then(|m| m.modified()).expect("mtime");
    let before = (modified("ca.crt"), modified("tls.crt"), modified("tls.key"));
    std::thread::sleep(Duration::from_millis(20));
    assert!(!cert_secret::write_files(&certs_dir, &material).expect("unchanged"), "nothing to write");
    assert_eq!((modified("ca.crt"), modified("tls.crt"), modified("tls.key")), before, "untouched");

    let (cert_pem, key_pem) =
        certs::issue_serving_pems(&material.ca_pem, &pems.ca_key, &["localhost", "other"], &[]).expect("issue");
    let renewed = CertMaterial { cert_pem, key_pem, ..material.clone() };
    assert!(cert_secret::write_files(&certs_dir, &renewed).expect("renewed"));
    assert_eq!(modified("ca.crt"), before.0, "an unchanged CA is not rewritten");
    assert_eq!(read("tls.crt"), renewed.cert_pem);
}

#[tokio::test]
async fn the_certificate_owner_follows_the_secret_without_polling() {
    let env = TestEnv::new("cert_secret_sync").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = CertSecretConfig {
        namespace: env.namespace.clone(),
        secret_name: SECRET.to_string(),
        hostnames: names(&["a.example"]),
        ips: Vec::new(),
        dir: dir.path().to_path_buf(),
    };
    let certificates = tls::secret::start(env.client.clone(), config).await.expect("start the owner");
    let published = certificates.subscribe();
    let current = || published.borrow().current().cloned();
    let first = current().expect("published before start returns");
    assert_eq!(read(dir.path(), "tls.crt"), first.cert_pem, "and written into the directory");
    assert_eq!(data(&get_secret(&env).await, "tls.crt"), first.cert_pem, "the Secret's certificate");

    // Another replica renews the Secret: the owner sees the change through its watch and publishes it.
    let second = ensure(&env, &["a.example", "b.example"]).await.expect("renew");
    assert_ne!(second.cert_pem, first.cert_pem);
    eventually("the owner publishes the renewed certificate", || async {
        (current()?.cert_pem == second.cert_pem).then_some(())
    })
    .await;
    assert_eq!(current().expect("current").ca_bundle.as_deref(), Some(second.ca_pem.as_str()));
    assert_eq!((read(dir.path(), "tls.crt"), read(dir.path(), "tls.key")), (second.cert_pem.clone(), second.key_pem));

    // The Secret is deleted: the owner recreates it (a new CA), publishes it and writes it.
    Api::<Secret>::namespaced(env.client.clone(), &env.namespace)
        .delete(SECRET, &Default::default())
        .await
        .expect("delete the Secret");
    eventually("the owner recreates the Secret and publishes its CA", || async {
        let secret = Api::<Secret>::namespaced(env.client.clone(), &env.namespace).get_opt(SECRET).await.ok()??;
        let ca = data(&secret, "ca.crt");
        let published_ca = current()?.ca_bundle.clone()?;
        (ca != second.ca_pem && published_ca == ca && read(dir.path(), "ca.crt") == ca).then_some(())
    })
    .await;
    assert!(certificates.is_running());
}

#[test]
fn certificate_names_follow_the_webhook_mode() {
    let service = WebhookOptions {
        webhook_config_namespace: "garden".to_string(),
        webhook_config_service_name: "admission".to_string(),
        ..WebhookOptions::default()
    };
    let expected = ["admission", "admission.garden", "admission.garden.svc", "admission.garden.svc.cluster.local"];
    assert_eq!(service.certificate_names().expect("service"), (names(&expected), vec![]));
    let url = WebhookOptions {
        webhook_config_mode: WebhookConfigMode::Url,
        webhook_config_url: Some("https://admission.garden:8443".to_string()),
        ..WebhookOptions::default()
    };
    assert_eq!(url.certificate_names().expect("url"), (names(&["admission.garden"]), vec![]));
    let ip = WebhookOptions { webhook_config_url: Some("127.0.0.1:1234".to_string()), ..url.clone() };
    assert_eq!(ip.certificate_names().expect("ip"), (vec![], vec![IpAddr::from([127, 0, 0, 1])]));
    let given = WebhookOptions { generate_certs_for: names(&["localhost", "::1"]), ..url };
    assert_eq!(given.certificate_names().expect("given"), (names(&["localhost"]), vec!["::1".parse().expect("ip")]));
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
}

/// An `admission` server started with `--webhook-cert-secret` on a free port (no registration: the webhook
/// configurations are cluster-wide and belong to the shared admission server), and its certificate directory.
struct SecretServer {
    port: u16,
    cert_dir: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServingError>>,
    _dir: tempfile::TempDir,
}

impl SecretServer {
    fn start(env: &TestEnv) -> SecretServer {
        let port = cri_resmgr_testbed::control_plane::free_port().expect("free port");
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_dir = dir.path().join("webhook-certs");
        let options = AdmissionOptions {
            metrics: gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions::disabled(),
            webhook: WebhookOptions {
                webhook_bind_address: SocketAddr::from(([127, 0, 0, 1], port)),
                webhook_cert_dir: cert_dir.clone(),
                webhook_cert_secret: Some(SECRET.to_string()),
                webhook_cert_secret_namespace: Some(env.namespace.clone()),
                webhook_config_mode: WebhookConfigMode::Url,
                webhook_config_url: Some(format!("localhost:{port}")),
                no_webhook_registration: true,
                ..WebhookOptions::default()
            },
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(admission::run(options, env.client.clone(), shutdown.clone().cancelled_owned()));
        SecretServer { port, cert_dir, shutdown, task, _dir: dir }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result =
            tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the server stops").expect("join");
        result.expect("the server ran without error");
    }
}

#[tokio::test]
async fn a_server_started_with_a_cert_secret_serves_a_certificate_of_the_secrets_ca() {
    let env = TestEnv::new("cert_secret_server").await;
    let server = SecretServer::start(&env);
    let (port, cert_dir) = (server.port, server.cert_dir.clone());

    let secret = eventually("the server creates its certificate Secret", || async {
        Api::<Secret>::namespaced(env.client.clone(), &env.namespace).get_opt(SECRET).await.ok()?
    })
    .await;
    let ca = data(&secret, "ca.crt");
    let status =
        eventually("the server answers over TLS", || https_get(port, "localhost", ca.as_bytes(), "/healthz")).await;
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(
        (read(&cert_dir, "ca.crt"), read(&cert_dir, "tls.crt")),
        (ca.clone(), data(&secret, "tls.crt")),
        "the files hold the Secret's certificates"
    );
    // The certificate is for the host of --webhook-config-url.
    let material = CertMaterial { ca_pem: ca, cert_pem: data(&secret, "tls.crt"), key_pem: data(&secret, "tls.key") };
    assert_serves(&material, &["localhost"]);
    server.stop().await;
}

/// Validates the example Shoot over a new TLS connection each time (as the apiserver does once its connections
/// broke), trusting the CA bundle currently in `trust`, until stopped; counts the requests in `sent` and returns
/// the failures.
fn start_shoot_requests(
    port: u16,
    trust: tokio::sync::watch::Receiver<String>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    use cri_resmgr_testbed::bench::{self, load::Target};
    let shoot = crate::admission::example_shoot("garden-rotation", "rotation");
    let body = bench::review(&shoot, "core.gardener.cloud", "Shoot", "shoots", "garden-rotation");
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.is_cancelled() {
            let bundle = trust.borrow().clone();
            let target = Target::new(
                SocketAddr::from(([127, 0, 0, 1], port)),
                rustls::pki_types::ServerName::try_from("localhost").expect("name"),
                std::sync::Arc::new(certs::client_config_trusting(bundle.as_bytes()).expect("CA bundle")),
                gardener_extension_cri_resmgr::runtime::registration::PATH_VALIDATE_SHOOT,
                body.clone(),
            );
            let request = sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            match target.once().await {
                Ok((status, answer)) => {
                    let review: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
                    if status != hyper::StatusCode::OK || review["response"]["allowed"] != serde_json::json!(true) {
                        failures.push(format!("request {request}: {status} {}", String::from_utf8_lossy(&answer)));
                    }
                }
                Err(e) => failures.push(format!("request {request}: {e}")),
            }
        }
        failures
    })
}

/// The server's certificate is renewed (same CA) and then its CA rotated (the new CA first in the bundle, the old
/// one after it, as [`cert_secret::ensure`] writes it) in the Secret while Shoots are validated without pause: no
/// request fails, and new connections get the new certificate.
#[tokio::test]
async fn rotating_the_secrets_certificate_while_requests_flow_fails_no_request() {
    let env = TestEnv::new("cert_secret_rotation").await;
    let server = SecretServer::start(&env);
    let secrets = Api::<Secret>::namespaced(env.client.clone(), &env.namespace);
    let first =
        eventually("the server creates its certificate Secret", || async { secrets.get_opt(SECRET).await.ok()? }).await;
    let old_ca = data(&first, "ca.crt");
    let address = SocketAddr::from(([127, 0, 0, 1], server.port));
    eventually("the server answers over TLS", || https_get(server.port, "localhost", old_ca.as_bytes(), "/healthz"))
        .await;
    let (trust, trusted) = tokio::sync::watch::channel(old_ca.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let requests = start_shoot_requests(server.port, trusted, sent.clone(), stop.clone());
    // Waits until a few more requests went through after the step just taken.
    let keeps_flowing = |step: &'static str| {
        let sent = sent.clone();
        async move {
            let from = sent.load(std::sync::atomic::Ordering::SeqCst);
            eventually(&format!("requests flow after {step}"), || async {
                (sent.load(std::sync::atomic::Ordering::SeqCst) >= from + 5).then_some(())
            })
            .await;
        }
    };

    // 1. Renewal: another replica needs one more name; the serving certificate is reissued by the same CA.
    keeps_flowing("the start").await;
    let renewed = ensure(&env, &["localhost", "renewed.example"]).await.expect("renew");
    assert_eq!(renewed.ca_pem, old_ca, "the CA stays");
    eventually("new connections get the renewed certificate", || async {
        let served = crate::cert_rotation::served_certificate(address, &old_ca).await?;
        (served == crate::cert_rotation::der(&renewed.cert_pem)).then_some(())
    })
    .await;
    keeps_flowing("the renewal").await;

    // 2. CA rotation, written as a replica rotating a CA near its expiry writes it: the new CA first in `ca.crt`,
    //    the old one after it, a serving certificate of the new CA. The client trusts that bundle from now on, as
    //    the apiserver does once the webhook configurations carry it.
    let new = certs::generate_pems(&["localhost"], &[]).expect("new CA");
    let bundle = format!("{}{}", new.ca_cert, old_ca);
    let mut rotated = secrets.get(SECRET).await.expect("the Secret");
    let data_of = |pem: &str| ByteString(pem.as_bytes().to_vec());
    rotated.data = Some(
        [
            ("ca.crt", data_of(&bundle)),
            ("ca.key", data_of(&new.ca_key)),
            ("tls.crt", data_of(&new.tls_cert)),
            ("tls.key", data_of(&new.tls_key)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    );
    trust.send(bundle.clone()).expect("the client runs");
    secrets.replace(SECRET, &PostParams::default(), &rotated).await.expect("rotate the CA");
    eventually("new connections get the new CA's certificate", || async {
        let served = crate::cert_rotation::served_certificate(address, &new.ca_cert).await?;
        (served == crate::cert_rotation::der(&new.tls_cert)).then_some(())
    })
    .await;
    keeps_flowing("the CA rotation").await;

    stop.cancel();
    let failures = requests.await.expect("the client");
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    println!("{sent} Shoots validated during the renewal and the CA rotation, {} failed", failures.len());
    assert!(failures.is_empty(), "no request fails: {failures:#?}");
    assert_eq!(read(&server.cert_dir, "ca.crt"), bundle, "the bundle the registrations carry");
    assert!(
        crate::cert_rotation::served_certificate(address, &old_ca).await.is_none(),
        "the old CA alone no longer vouches for the served certificate"
    );
    server.stop().await;
}
