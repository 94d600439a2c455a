//! Tests of the certificate owner's parts: the material checks, the publisher, and the directory source.

use std::time::Duration;

use super::*;
use crate::runtime::tls::certs::{self, CA_CERT_FILE, CertPems};

fn pems(host: &str) -> CertPems {
    certs::generate_pems(&[host], &[]).expect("generate")
}

fn serving(pems: &CertPems) -> ServingCerts {
    ServingCerts::new(Some(pems.ca_cert.clone()), pems.tls_cert.clone(), pems.tls_key.clone()).expect("usable")
}

/// Waits (bounded) until the receiver holds a value `check` accepts.
async fn published(receiver: &mut CertReceiver, what: &str, check: impl FnMut(&CertState) -> bool) -> CertState {
    tokio::time::timeout(Duration::from_secs(10), receiver.wait_for(check))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .expect("the owner runs")
        .clone()
}

#[test]
fn certified_key_rejects_mismatched_and_garbage_material() {
    let (a, b) = (pems("localhost"), pems("localhost"));
    certified_key(a.tls_cert.as_bytes(), a.tls_key.as_bytes()).expect("matching pair");
    assert!(matches!(certified_key(a.tls_cert.as_bytes(), b.tls_key.as_bytes()), Err(TlsMaterialError::Rustls(_))));
    assert!(matches!(certified_key(b"", a.tls_key.as_bytes()), Err(TlsMaterialError::NoCertificate)));
    assert!(matches!(certified_key(a.tls_cert.as_bytes(), b"garbage"), Err(TlsMaterialError::Pem(_))));
    assert!(!format!("{:?}", serving(&a)).contains("PRIVATE KEY"), "Debug elides the key");
}

#[test]
fn the_publisher_sends_only_changes_and_keeps_serving_through_problems() {
    let (mut publisher, mut receiver) = Publisher::new("test".to_string());
    publisher.problem("no tls.crt yet".to_string());
    assert!(matches!(&*receiver.borrow_and_update(), CertState::Pending { problem: Some(p) } if p == "no tls.crt yet"));

    let first = pems("localhost");
    assert!(publisher.publish(serving(&first)));
    assert_eq!(receiver.borrow_and_update().ca_bundle(), Some(first.ca_cert.as_str()));

    // The same material again (a re-read of unchanged files): readers are not woken.
    assert!(!publisher.publish(serving(&first)));
    assert!(!receiver.has_changed().expect("open"));

    // A broken update keeps the current material in service.
    publisher.problem("half-written pair".to_string());
    assert!(!receiver.has_changed().expect("open"));
    assert_eq!(receiver.borrow().current().map(|c| c.cert_pem.clone()), Some(first.tls_cert.clone()));

    let second = pems("localhost");
    assert!(publisher.publish(serving(&second)));
    assert!(receiver.has_changed().expect("open"));
    assert_eq!(receiver.borrow_and_update().ca_bundle(), Some(second.ca_cert.as_str()));
}

#[tokio::test]
async fn the_directory_source_publishes_what_appears_and_a_changed_ca_bundle_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = files::watch_dir(dir.path());
    let mut receiver = certificates.subscribe();
    assert!(receiver.borrow().current().is_none(), "nothing in the directory yet");
    assert!(certificates.source().contains(&dir.path().display().to_string()));

    let generated = certs::generate(dir.path(), &["localhost"], &[]).expect("generate");
    let state = published(&mut receiver, "the generated certificate", |s| s.current().is_some()).await;
    assert_eq!(state.ca_bundle(), Some(generated.ca_pem.as_str()));

    // A CA rotation that adds a CA to ca.crt, the serving pair unchanged: published, so the registrar sees it.
    let bundle = format!("{}{}", generated.ca_pem, pems("other").ca_cert);
    certs::write_file(&dir.path().join(CA_CERT_FILE), &bundle, 0o644).expect("write ca.crt");
    let state = published(&mut receiver, "the new CA bundle", |s| s.ca_bundle() == Some(bundle.as_str())).await;
    assert_eq!(state.current().map(|c| c.cert_pem.clone()), Some(generated.cert_pem));
    assert!(certificates.is_running());
}
