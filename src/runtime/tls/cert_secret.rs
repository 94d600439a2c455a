//! Webhook certificates kept in a Secret that the extension manages itself, in the way Gardener's own extensions
//! use their secrets manager.
//!
//! Rendering a chart cannot produce a stable CA (gardenlet renders offline, so Helm's `genCA` makes a new CA on
//! every render). Instead every replica of a webhook server calls [`ensure`] on the same Secret: the first one
//! creates it with a new CA and serving certificate, the others (also when they lose the race to create it) use
//! what it holds, so all replicas serve certificates of one CA, the CA their registrations carry as `caBundle`.
//!
//! - The Secret (type `Opaque`, labelled `app.kubernetes.io/managed-by: gardener-extension-cri-resmgr`) holds
//!   `ca.crt`, `ca.key`, `tls.crt` and `tls.key`.
//! - A serving certificate that does not cover the requested host names or IP addresses, or that expires within
//!   30 days, is replaced by one signed by the same CA. It is issued for the requested names plus those of the
//!   certificate it replaces, so replicas that ask for different names (a rolling update that changes them)
//!   converge instead of taking turns.
//! - A CA that expires within 30 days (or cannot sign) is replaced, with a new serving certificate; while the old
//!   CA is still valid, `ca.crt` carries it after the new one, so a caBundle registered from the new `ca.crt`
//!   still trusts the replicas that serve the old certificate until they pick up the new one.
//! - Changes are written with the resourceVersion that was read (an update, never a blind overwrite): when another
//!   replica changed the Secret in between, the Secret is read again and judged anew. A Secret that exists without
//!   our managed-by label is used when it is good, but never changed.
//!
//! [`write_files`] puts the material into the certificate directory. Who calls both, when, is the Secret source of the
//! process's certificate owner, [`crate::runtime::tls::secret`]: at start, and then whenever the Secret changes or
//! is due for renewal.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use thiserror::Error;
use time::OffsetDateTime;
use tracing::{debug, info};

use crate::constants::{LABEL_MANAGED_BY, MANAGED_BY};
use crate::runtime::tls::certs::{self, CA_CERT_FILE, CA_KEY_FILE, CertError, CertPems, TLS_CERT_FILE, TLS_KEY_FILE};

/// Type of the Secret when it is created.
pub const SECRET_TYPE: &str = "Opaque";
/// Rounds of read and write in one [`ensure`] before giving up, when other writers keep changing the Secret.
const MAX_ATTEMPTS: usize = 5;

/// The material a webhook server needs: what goes into its certificate directory.
#[derive(Clone, PartialEq, Eq)]
pub struct CertMaterial {
    /// The CA bundle (`ca.crt`): the signing CA, possibly followed by the previous one during a CA rotation.
    pub ca_pem: String,
    /// The serving certificate (`tls.crt`).
    pub cert_pem: String,
    /// The serving certificate's private key (`tls.key`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertMaterial {
    // The private key is deliberately left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMaterial")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

impl From<&CertPems> for CertMaterial {
    fn from(pems: &CertPems) -> Self {
        CertMaterial { ca_pem: pems.ca_cert.clone(), cert_pem: pems.tls_cert.clone(), key_pem: pems.tls_key.clone() }
    }
}

/// Errors of the Secret-based certificate management; each names the Secret (or the directory) concerned.
#[derive(Debug, Error)]
pub enum CertSecretError {
    /// The Secret could not be read.
    #[error("cannot read the webhook certificate Secret {namespace}/{name}")]
    Read {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The Secret could not be created.
    #[error("cannot create the webhook certificate Secret {namespace}/{name}")]
    Create {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// The renewed material could not be written to the Secret.
    #[error("cannot update the webhook certificate Secret {namespace}/{name}")]
    Update {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// Certificates could not be generated for the Secret (e.g. an invalid host name).
    #[error("cannot generate certificates for the webhook certificate Secret {namespace}/{name}")]
    Generate {
        namespace: String,
        name: String,
        #[source]
        source: CertError,
    },
    /// The Secret needs new material, but it is not ours to change.
    #[error(
        "the webhook certificate Secret {namespace}/{name} is not usable ({reason}) and not labelled \
         {LABEL_MANAGED_BY}={MANAGED_BY}, so it is left alone: delete it, or label it to let the extension manage it"
    )]
    NotManaged { namespace: String, name: String, reason: String },
    /// Other writers kept changing the Secret between our read and our write.
    #[error("the webhook certificate Secret {namespace}/{name} kept changing concurrently ({attempts} attempts)")]
    Contended { namespace: String, name: String, attempts: usize },
    /// The Secret's serving certificate and key are not usable for TLS.
    #[error("the webhook certificate Secret {namespace}/{name} holds no usable serving certificate")]
    Unusable {
        namespace: String,
        name: String,
        #[source]
        source: crate::runtime::tls::TlsMaterialError,
    },
    /// The material could not be written into the certificate directory.
    #[error("cannot write the webhook certificates into {dir}")]
    Write {
        dir: PathBuf,
        #[source]
        source: CertError,
    },
}

/// What [`ensure`] found the Secret to need.
enum Plan {
    /// Good as it is.
    Reuse(CertPems),
    /// Needs this new material, for `reason`.
    Renew { pems: CertPems, reason: String },
}

/// Returns the webhook material of Secret `namespace/secret_name`, creating the Secret (new CA and serving
/// certificate for `hostnames` and `ips`) when it does not exist and renewing what is missing, does not cover the
/// names, or expires within 30 days (see the module documentation). Every replica that calls it ends up with the
/// same CA.
pub async fn ensure(
    client: &kube::Client,
    namespace: &str,
    secret_name: &str,
    hostnames: &[String],
    ips: &[IpAddr],
) -> Result<CertMaterial, CertSecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let (ns, name) = (|| namespace.to_string(), || secret_name.to_string());
    let secret_ref = format!("{namespace}/{secret_name}");
    let hosts: Vec<&str> = hostnames.iter().map(String::as_str).collect();
    for attempt in 1..=MAX_ATTEMPTS {
        let existing = api.get_opt(secret_name).await.map_err(|source| CertSecretError::Read {
            namespace: ns(),
            name: name(),
            source,
        })?;
        let Some(mut secret) = existing else {
            let pems = certs::generate_pems(&hosts, ips).map_err(|source| CertSecretError::Generate {
                namespace: ns(),
                name: name(),
                source,
            })?;
            match api.create(&PostParams::default(), &new_secret(namespace, secret_name, &pems)).await {
                Ok(_) => {
                    info!(secret = %secret_ref, ?hostnames, ?ips, "created the webhook certificate Secret with a new CA");
                    return Ok(CertMaterial::from(&pems));
                }
                Err(e) if is_status(&e, 409) => {
                    debug!(secret = %secret_ref, attempt, "the webhook certificate Secret was created concurrently");
                    continue;
                }
                Err(source) => return Err(CertSecretError::Create { namespace: ns(), name: name(), source }),
            }
        };
        let planned = plan(&pems_of(&secret), &hosts, ips, OffsetDateTime::now_utc())
            .map_err(|source| CertSecretError::Generate { namespace: ns(), name: name(), source })?;
        let (pems, reason) = match planned {
            Plan::Reuse(pems) => return Ok(CertMaterial::from(&pems)),
            Plan::Renew { pems, reason } => (pems, reason),
        };
        if !is_managed(&secret) {
            return Err(CertSecretError::NotManaged { namespace: ns(), name: name(), reason });
        }
        // The object as read: its resourceVersion makes the update fail if someone else wrote in between.
        secret.data = Some(secret_data(&pems));
        secret.metadata.labels.get_or_insert_with(BTreeMap::new).insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
        match api.replace(secret_name, &PostParams::default(), &secret).await {
            Ok(_) => {
                info!(secret = %secret_ref, %reason, ?hostnames, ?ips, "renewed the webhook certificates in the Secret");
                return Ok(CertMaterial::from(&pems));
            }
            Err(e) if is_status(&e, 409) => {
                debug!(secret = %secret_ref, attempt, "the webhook certificate Secret changed concurrently; re-reading");
            }
            Err(source) => return Err(CertSecretError::Update { namespace: ns(), name: name(), source }),
        }
    }
    Err(CertSecretError::Contended { namespace: ns(), name: name(), attempts: MAX_ATTEMPTS })
}

/// The Secret's material, key by key (`None`: missing or not UTF-8).
#[derive(Default)]
struct ExistingPems {
    ca_cert: Option<String>,
    ca_key: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

fn pems_of(secret: &Secret) -> ExistingPems {
    let get = |key: &str| {
        secret.data.as_ref().and_then(|data| data.get(key)).and_then(|value| String::from_utf8(value.0.clone()).ok())
    };
    ExistingPems {
        ca_cert: get(CA_CERT_FILE),
        ca_key: get(CA_KEY_FILE),
        tls_cert: get(TLS_CERT_FILE),
        tls_key: get(TLS_KEY_FILE),
    }
}

/// Decides what the Secret needs; generates the new material when it needs some.
fn plan(existing: &ExistingPems, hosts: &[&str], ips: &[IpAddr], now: OffsetDateTime) -> Result<Plan, CertError> {
    let usable_ca = match (&existing.ca_cert, &existing.ca_key) {
        (Some(cert), Some(key)) => certs::check_ca(cert, key, now).map(|()| (cert, key)).map_err(|e| e.to_string()),
        _ => Err("no CA".to_string()),
    };
    let (ca_cert, ca_key) = match usable_ca {
        Ok(ca) => ca,
        Err(ca_problem) => {
            let mut pems = certs::generate_pems(hosts, ips)?;
            // The old CA stays trusted (after the new one) while it is valid: replicas still serving its
            // certificates keep working with a caBundle registered from the new ca.crt.
            if let Some(old) = existing.ca_cert.as_deref().and_then(first_certificate)
                && certs::not_after(old).is_ok_and(|expiry| expiry > now)
            {
                pems.ca_cert.push_str(old);
                pems.ca_cert.push('\n');
            }
            return Ok(Plan::Renew { pems, reason: format!("CA: {ca_problem}") });
        }
    };
    let serving_problem = match (&existing.tls_cert, &existing.tls_key) {
        (Some(cert), Some(key)) => match certs::check_serving(cert, key, ca_cert, hosts, ips, now) {
            Ok(()) => {
                return Ok(Plan::Reuse(CertPems {
                    ca_cert: ca_cert.clone(),
                    ca_key: ca_key.clone(),
                    tls_cert: cert.clone(),
                    tls_key: key.clone(),
                }));
            }
            Err(problem) => problem.to_string(),
        },
        _ => "no serving certificate".to_string(),
    };
    // Issued for the requested names and those of the certificate it replaces, so that replicas asking for
    // different names converge.
    let (mut all_hosts, mut all_ips): (Vec<String>, Vec<IpAddr>) =
        (hosts.iter().map(|h| h.to_string()).collect(), ips.to_vec());
    if let Some((old_hosts, old_ips)) = existing.tls_cert.as_deref().and_then(|cert| certs::serving_names(cert).ok()) {
        for host in old_hosts {
            if !all_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
                all_hosts.push(host);
            }
        }
        for ip in old_ips {
            if !all_ips.contains(&ip) {
                all_ips.push(ip);
            }
        }
    }
    let all_hosts: Vec<&str> = all_hosts.iter().map(String::as_str).collect();
    let (tls_cert, tls_key) = certs::issue_serving_pems(ca_cert, ca_key, &all_hosts, &all_ips)?;
    Ok(Plan::Renew {
        pems: CertPems { ca_cert: ca_cert.clone(), ca_key: ca_key.clone(), tls_cert, tls_key },
        reason: format!("serving certificate: {serving_problem}"),
    })
}

/// The first `CERTIFICATE` PEM block of a bundle.
fn first_certificate(bundle: &str) -> Option<&str> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = bundle.find(BEGIN)?;
    let end = start + bundle[start..].find(END)? + END.len();
    Some(&bundle[start..end])
}

fn is_managed(secret: &Secret) -> bool {
    secret.metadata.labels.as_ref().and_then(|labels| labels.get(LABEL_MANAGED_BY)).is_some_and(|v| v == MANAGED_BY)
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

fn secret_data(pems: &CertPems) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT_FILE, &pems.ca_cert),
        (CA_KEY_FILE, &pems.ca_key),
        (TLS_CERT_FILE, &pems.tls_cert),
        (TLS_KEY_FILE, &pems.tls_key),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
    .collect()
}

fn new_secret(namespace: &str, name: &str, pems: &CertPems) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some([(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string())].into()),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(secret_data(pems)),
        ..Secret::default()
    }
}

/// Writes `ca.crt`, `tls.key` and `tls.crt` (in this order: the CA is trusted before it is used, and the key
/// goes before its certificate, see [`certs`]) into `dir`, each atomically and only when its content changed.
/// Returns whether anything was written.
pub fn write_files(dir: &Path, material: &CertMaterial) -> Result<bool, CertSecretError> {
    let err = |source| CertSecretError::Write { dir: dir.to_path_buf(), source };
    certs::create_dir(dir).map_err(err)?;
    let mut written = false;
    for (file, content, mode) in [
        (CA_CERT_FILE, &material.ca_pem, 0o644),
        (TLS_KEY_FILE, &material.key_pem, 0o600),
        (TLS_CERT_FILE, &material.cert_pem, 0o644),
    ] {
        let path = dir.join(file);
        if certs::read_optional(&path).map_err(err)?.as_ref() != Some(content) {
            certs::write_file(&path, content, mode).map_err(err)?;
            written = true;
        }
    }
    Ok(written)
}

/// What the Secret source ([`crate::runtime::tls::secret`]) manages: the Secret, the names its serving certificate is
/// for, and where the files go.
#[derive(Debug, Clone)]
pub struct CertSecretConfig {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub secret_name: String,
    /// DNS names the serving certificate must cover.
    pub hostnames: Vec<String>,
    /// IP addresses the serving certificate must cover.
    pub ips: Vec<IpAddr>,
    /// The certificate directory the material is also written into (for whoever reads the files; the server itself
    /// is handed the material in memory).
    pub dir: PathBuf,
}

/// The DNS names of a Service as the apiserver may call it: `<name>`, `<name>.<namespace>`,
/// `<name>.<namespace>.svc` and `<name>.<namespace>.svc.cluster.local`.
pub fn service_hostnames(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// The host of a `[https://]host[:port][/path]` URL (an IPv6 address without its brackets); `None` when empty.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => authority,
        }
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Splits names into DNS names and IP addresses.
pub fn split_names(names: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut hosts = Vec::new();
    let mut ips = Vec::new();
    for name in names {
        match name.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => hosts.push(name.clone()),
        }
    }
    (hosts, ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn existing(pems: &CertPems) -> ExistingPems {
        ExistingPems {
            ca_cert: Some(pems.ca_cert.clone()),
            ca_key: Some(pems.ca_key.clone()),
            tls_cert: Some(pems.tls_cert.clone()),
            tls_key: Some(pems.tls_key.clone()),
        }
    }

    #[test]
    fn url_hosts_and_names() {
        assert_eq!(url_host("webhook.garden").as_deref(), Some("webhook.garden"));
        assert_eq!(url_host("https://webhook.garden:8443/path").as_deref(), Some("webhook.garden"));
        assert_eq!(url_host("127.0.0.1:10250").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("[::1]:443").as_deref(), Some("::1"));
        assert_eq!(url_host("https://"), None);
        assert_eq!(
            service_hostnames("svc", "ns"),
            ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"].map(String::from)
        );
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
        assert_eq!(
            split_names(&names),
            (vec!["localhost".to_string()], vec![LOCALHOST, IpAddr::from(std::net::Ipv6Addr::LOCALHOST)])
        );
    }

    #[test]
    fn plan_reuses_good_material_and_renews_the_rest() {
        let now = OffsetDateTime::now_utc();
        let pems = certs::generate_pems(&["a.example"], &[LOCALHOST]).expect("generate");
        assert!(matches!(plan(&existing(&pems), &["a.example"], &[LOCALHOST], now), Ok(Plan::Reuse(p)) if p == pems));

        // A missing name: same CA, a certificate for both the old and the new names.
        let Ok(Plan::Renew { pems: renewed, reason }) = plan(&existing(&pems), &["b.example"], &[], now) else {
            panic!("a missing name is renewed");
        };
        assert!(reason.contains("b.example"), "{reason}");
        assert_eq!((&renewed.ca_cert, &renewed.ca_key), (&pems.ca_cert, &pems.ca_key));
        let (hosts, ips) = certs::serving_names(&renewed.tls_cert).expect("names");
        assert_eq!((hosts, ips), (vec!["b.example".to_string(), "a.example".to_string()], vec![LOCALHOST]));

        // Nothing usable: a new CA, without carrying garbage along.
        let empty = ExistingPems { ca_cert: Some("garbage".to_string()), ..ExistingPems::default() };
        let Ok(Plan::Renew { pems: fresh, reason }) = plan(&empty, &["a.example"], &[], now) else {
            panic!("an empty Secret is filled");
        };
        assert!(reason.starts_with("CA:"), "{reason}");
        assert_eq!(fresh.ca_cert.matches("BEGIN CERTIFICATE").count(), 1);

        // An expiring CA (judged two years before its end): rotated, the old CA stays in the bundle.
        let late = not_after_minus(&pems.ca_cert, 20);
        let Ok(Plan::Renew { pems: rotated, .. }) = plan(&existing(&pems), &["a.example"], &[], late) else {
            panic!("an expiring CA is rotated");
        };
        assert_ne!(rotated.ca_key, pems.ca_key);
        certs::check_ca(&rotated.ca_cert, &rotated.ca_key, now).expect("the new CA signs, first in the bundle");
        assert_eq!(rotated.ca_cert.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(rotated.ca_cert.contains(pems.ca_cert.trim()), "the old CA is still trusted");
        certs::check_serving(&rotated.tls_cert, &rotated.tls_key, &rotated.ca_cert, &["a.example"], &[], now)
            .expect("the new serving certificate is signed by the new CA");
    }

    /// `days` before the certificate's end.
    fn not_after_minus(pem: &str, days: i64) -> OffsetDateTime {
        certs::not_after(pem).expect("not after") - time::Duration::days(days)
    }

    #[test]
    fn write_files_writes_only_what_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("certs");
        let pems = certs::generate_pems(&["localhost"], &[]).expect("generate");
        let material = CertMaterial::from(&pems);
        assert!(write_files(&sub, &material).expect("write"));
        assert!(!write_files(&sub, &material).expect("unchanged"));
        assert_eq!(std::fs::read_to_string(sub.join(TLS_KEY_FILE)).expect("key"), material.key_pem);
        assert!(!format!("{material:?}").contains("PRIVATE KEY"));
    }
}
