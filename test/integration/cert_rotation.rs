//! Fault test: the admission server's certificate is rotated, as a mounted Secret is replaced (kubelet swaps the
//! directory's `..data` link), while Shoots are written through the apiserver without pause. Nothing fails: a renewed
//! serving certificate of the same CA needs nothing else; a new CA is rolled out in the documented order (bundle
//! with both CAs first, then the certificate of the new CA, then the bundle without the old CA), so the apiserver
//! trusts the served certificate at every moment. Last, the documented exception: a CA and its certificate replaced in
//! one step may fail writes with a TLS error until the apiserver has the new bundle, and only until then. Afterwards
//! the new certificate is served and the webhook configurations carry the new CA bundle.
//!
//! It runs on a control plane of its own: the webhook configurations are cluster-wide, and a CA rotation of the shared
//! admission server would disturb the other tests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use cri_resmgr_testbed::control_plane::{self, ControlPlane, WorkDir};
use gardener_extension_cri_resmgr::commands::admission::{self, AdmissionOptions};
use gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions;
use gardener_extension_cri_resmgr::runtime::registration::ADMISSION_CONFIG_NAME;
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
use gardener_extension_cri_resmgr::runtime::tls::certs::{
    self, CA_CERT_FILE, CertPems, TLS_CERT_FILE, TLS_KEY_FILE, client_config_trusting,
};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::admission::example_shoot;
use crate::support::{eventually, scratch_dir};

const HOSTS: [&str; 1] = ["localhost"];
const IPS: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
const NAMESPACE: &str = "rotation";
/// The link kubelet swaps when it updates a mounted Secret.
const DATA_LINK: &str = "..data";

/// A certificate directory laid out as kubelet mounts a Secret: the files are links through `..data` into a
/// versioned directory, and an update swaps `..data` in one rename.
struct MountedSecret {
    dir: PathBuf,
    version: usize,
}

impl MountedSecret {
    fn new(dir: PathBuf, ca_bundle: &str, cert: &str, key: &str) -> Self {
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let mut mounted = MountedSecret { dir, version: 0 };
        mounted.replace(ca_bundle, cert, key);
        for file in [CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE] {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(file), mounted.dir.join(file)).expect("file link");
        }
        mounted
    }

    /// Replaces the whole content at once, as kubelet does.
    fn replace(&mut self, ca_bundle: &str, cert: &str, key: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        let target = self.dir.join(&version);
        std::fs::create_dir(&target).expect("version dir");
        for (file, content) in [(CA_CERT_FILE, ca_bundle), (TLS_CERT_FILE, cert), (TLS_KEY_FILE, key)] {
            std::fs::write(target.join(file), content).expect("write");
        }
        let staged = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staged).expect("stage the link");
        std::fs::rename(&staged, self.dir.join(DATA_LINK)).expect("swap ..data");
    }
}

/// A serving certificate for the test's names, signed by the CA of `pems`.
fn reissued(pems: &CertPems) -> (String, String) {
    let hosts: Vec<&str> = HOSTS.to_vec();
    certs::issue_serving_pems(&pems.ca_cert, &pems.ca_key, &hosts, &IPS).expect("issue")
}

pub(crate) fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("PEM certificate").as_ref().to_vec()
}

/// The certificate the server presents to a new connection (trusting every CA of `trusted`).
pub(crate) async fn served_certificate(address: SocketAddr, trusted: &str) -> Option<Vec<u8>> {
    let config = Arc::new(client_config_trusting(trusted.as_bytes()).expect("CA bundle"));
    let tcp = tokio::net::TcpStream::connect(address).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.ok()?;
    let (_, connection) = tls.get_ref();
    Some(connection.peer_certificates()?.first()?.as_ref().to_vec())
}

/// The CA bundles of both webhook configurations of the admission server.
async fn registered_bundles(client: &kube::Client) -> Option<(String, String)> {
    let bundle = |config: Value| -> Option<String> {
        let encoded = config["webhooks"][0]["clientConfig"]["caBundle"].as_str()?.to_owned();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        String::from_utf8(bytes).ok()
    };
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone()).get_opt(ADMISSION_CONFIG_NAME).await;
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone()).get_opt(ADMISSION_CONFIG_NAME).await;
    Some((bundle(serde_json::to_value(validating.ok()??).ok()?)?, bundle(serde_json::to_value(mutating.ok()??).ok()?)?))
}

async fn wait_for_bundle(client: &kube::Client, wanted: &str, what: &str) {
    eventually(what, || async {
        let (validating, mutating) = registered_bundles(client).await?;
        (validating == wanted && mutating == wanted).then_some(())
    })
    .await;
}

async fn wait_for_served(address: SocketAddr, trusted: &str, cert_pem: &str, what: &str) {
    let wanted = der(cert_pem);
    eventually(what, || async { (served_certificate(address, trusted).await? == wanted).then_some(()) }).await;
}

/// Writes Shoots through the apiserver one after the other until stopped; every write must be admitted (and
/// defaulted by the webhook). Failures are collected with their message.
struct Writer {
    written: Arc<AtomicUsize>,
    /// How many writes failed so far.
    failed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Writer {
    fn start(client: kube::Client) -> Writer {
        let (written, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let failed = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (written, stop, last_failed) = (written.clone(), stop.clone(), failed.clone());
            async move {
                let api: Api<gardener_extension_cri_resmgr::apis::core::Shoot> = Api::namespaced(client, NAMESPACE);
                let mut failures = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let shoot = serde_json::from_value(example_shoot(NAMESPACE, &format!("shoot-{i}"))).expect("Shoot");
                    match api.create(&PostParams::default(), &shoot).await {
                        Ok(stored) => {
                            let config = stored.spec.extensions[0].provider_config.clone().unwrap_or_default();
                            if config["kind"] != json!("CriResmgrConfig") {
                                failures.push(format!("shoot-{i} was stored without the webhook's defaulting"));
                            }
                        }
                        Err(e) => failures.push(format!("shoot-{i}: {e}")),
                    }
                    last_failed.store(failures.len(), Ordering::SeqCst);
                    written.fetch_add(1, Ordering::SeqCst);
                }
                failures
            }
        });
        Writer { written, failed, stop, task }
    }

    /// Waits until at least `more` further Shoots were written: the writes flow through the step just taken.
    async fn keeps_writing(&self, more: usize, step: &str) {
        let from = self.written.load(Ordering::SeqCst);
        eventually(&format!("{more} Shoots written after {step}"), || async {
            (self.written.load(Ordering::SeqCst) >= from + more).then_some(())
        })
        .await;
    }

    async fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.task.await.expect("writer");
        (self.written.load(Ordering::SeqCst), failures)
    }
}

#[tokio::test]
async fn rotating_the_webhook_certificate_while_shoots_are_written_fails_no_request() {
    let plane = ControlPlane::start(WorkDir::Temporary).await.expect("a control plane of its own");
    let client = plane.client().await.expect("client");
    control_plane::install_crds(&client, cri_resmgr_testbed::crds::all().expect("CRDs")).await.expect("CRDs");
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(NAMESPACE.to_owned()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");

    let hosts: Vec<&str> = HOSTS.to_vec();
    let first = certs::generate_pems(&hosts, &IPS).expect("first CA");
    let mut mounted =
        MountedSecret::new(scratch_dir("cri-resmgr-rotated-certs"), &first.ca_cert, &first.tls_cert, &first.tls_key);
    let port = control_plane::free_port().expect("port");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let options = AdmissionOptions {
        webhook: WebhookOptions {
            webhook_bind_address: address,
            webhook_cert_dir: mounted.dir.clone(),
            webhook_config_mode: WebhookConfigMode::Url,
            webhook_config_url: Some(address.to_string()),
            ..WebhookOptions::default()
        },
        metrics: MetricsOptions::disabled(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(admission::run(options, client.clone(), shutdown.clone().cancelled_owned()));
    wait_for_bundle(&client, &first.ca_cert, "the first CA registered").await;

    let writer = Writer::start(client.clone());
    writer.keeps_writing(5, "the start").await;

    // 1. Renewal: a new serving certificate of the same CA.
    let (renewed_cert, renewed_key) = reissued(&first);
    mounted.replace(&first.ca_cert, &renewed_cert, &renewed_key);
    wait_for_served(address, &first.ca_cert, &renewed_cert, "the renewed certificate served").await;
    writer.keeps_writing(5, "the renewal").await;

    // 2. A new CA: (a) trusted beside the old one, (b) its certificate served, (c) the old CA dropped.
    let second = certs::generate_pems(&hosts, &IPS).expect("second CA");
    let both = format!("{}{}", second.ca_cert, first.ca_cert);
    mounted.replace(&both, &renewed_cert, &renewed_key);
    wait_for_bundle(&client, &both, "both CAs registered").await;
    writer.keeps_writing(5, "registering both CAs").await;
    mounted.replace(&both, &second.tls_cert, &second.tls_key);
    wait_for_served(address, &second.ca_cert, &second.tls_cert, "the new CA's certificate served").await;
    writer.keeps_writing(5, "serving the new CA's certificate").await;
    mounted.replace(&second.ca_cert, &second.tls_cert, &second.tls_key);
    wait_for_bundle(&client, &second.ca_cert, "the old CA dropped").await;
    writer.keeps_writing(5, "dropping the old CA").await;

    assert_eq!(writer.failed.load(Ordering::SeqCst), 0, "no write failed during the rotation in order");
    let rotated = writer.written.load(Ordering::SeqCst);

    // 3. The documented exception: CA and certificate replaced in one step. Writes may fail with a TLS error until
    //    the apiserver has the new bundle; then they succeed again.
    let third = certs::generate_pems(&hosts, &IPS).expect("third CA");
    mounted.replace(&third.ca_cert, &third.tls_cert, &third.tls_key);
    wait_for_bundle(&client, &third.ca_cert, "the third CA registered").await;
    let mut recovered = false;
    for _ in 0..20 {
        let failed_before = writer.failed.load(Ordering::SeqCst);
        writer.keeps_writing(5, "the one-step swap").await;
        if writer.failed.load(Ordering::SeqCst) == failed_before {
            recovered = true;
            break;
        }
    }
    assert!(recovered, "writes succeed again once the apiserver has the new bundle");

    let (written, failures) = writer.stop().await;
    println!(
        "{rotated} Shoots written during the rotation in order, none failed; {} written in all, {} failed after the \
         one-step swap: {failures:#?}",
        written,
        failures.len()
    );
    for failure in &failures {
        assert!(failure.contains("x509") || failure.contains("certificate"), "only TLS errors: {failure}");
    }

    // Afterwards: the new certificate is served (checked by its fingerprint) and registered.
    let served = served_certificate(address, &third.ca_cert).await.expect("served");
    use sha2::Digest as _;
    assert_eq!(hex::encode(sha2::Sha256::digest(&served)), hex::encode(sha2::Sha256::digest(der(&third.tls_cert))));
    assert_eq!(registered_bundles(&client).await, Some((third.ca_cert.clone(), third.ca_cert.clone())));
    assert!(served_certificate(address, &second.ca_cert).await.is_none(), "the old CA no longer vouches for it");

    shutdown.cancel();
    let result = tokio::time::timeout(crate::support::TIMEOUT, server).await.expect("stops").expect("joins");
    result.expect("the admission server ran without error");
}
