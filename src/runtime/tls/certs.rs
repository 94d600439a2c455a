//! Webhook certificates: a CA and a serving certificate, generated with rcgen.
//!
//! The webhook server is handed its material by the process's certificate owner ([`crate::runtime::tls`]), which
//! follows a certificate directory ([`TLS_CERT_FILE`], [`TLS_KEY_FILE`], [`CA_CERT_FILE`]) or a Secret. Who writes
//! the directory varies: a mounted Secret, this module for `make dev` and the tests, or
//! [`crate::runtime::tls::cert_secret`] in production (the material lives in a Secret the extension creates and renews
//! itself, shared by every replica). Besides the serving pair there is the CA the apiserver needs as `caBundle`:
//!
//! - [`generate`] always creates a fresh CA and serving certificate;
//! - [`load_or_generate`] keeps a still-valid CA (and serving certificate) found in the directory, so
//!   a `caBundle` registered in a long-running development apiserver stays valid across restarts.
//!
//! The same material can be made and checked in memory, without a directory ([`generate_pems`],
//! [`issue_serving_pems`], [`check_ca`], [`check_serving`]), which is what the Secret-based
//! management uses.
//!
//! Files are written atomically (temporary file + rename) so an owner watching the directory never
//! reads a half-written file; private keys are created with mode `0600`.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use thiserror::Error;
use time::{Duration, OffsetDateTime};
use tracing::{info, warn};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The CA certificate (PEM); what the apiserver gets as `caBundle`.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key (PEM, PKCS#8); kept so that [`load_or_generate`] can reuse the CA.
pub const CA_KEY_FILE: &str = "ca.key";
/// The serving certificate (PEM), read by the webhook server.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// The serving certificate's private key (PEM, PKCS#8), read by the webhook server.
pub const TLS_KEY_FILE: &str = "tls.key";

/// Common name of the development CA.
pub const CA_COMMON_NAME: &str = "gardener-extension-cri-resmgr-webhook-ca";
/// Common name of the serving certificate (clients check the SANs, not this).
pub const SERVING_COMMON_NAME: &str = "gardener-extension-cri-resmgr-webhook";

/// Validity of the development CA: long, as Gardener's own dev-mode self-signed CA (10 years).
const CA_VALIDITY: Duration = Duration::days(3650);
/// Validity of the serving certificate.
const SERVING_VALIDITY: Duration = Duration::days(365);
/// Backdating of `notBefore`, so that a slightly lagging clock (e.g. a VM) accepts a fresh certificate.
const BACKDATE: Duration = Duration::hours(1);
/// A certificate that expires within this window is not reused by [`load_or_generate`] (nor kept in the managed
/// Secret, which is renewed this long before expiry).
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Errors while generating, reading or writing webhook certificates.
#[derive(Debug, Error)]
pub enum CertError {
    /// The certificate directory could not be created.
    #[error("cannot create certificate directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An existing certificate or key file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A certificate or key file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Neither a hostname nor an IP address was given for the serving certificate.
    #[error("the serving certificate needs at least one hostname or IP address")]
    NoSubjectAltNames,
    /// A hostname is not a valid DNS subject alternative name.
    #[error("invalid hostname {name:?} for the serving certificate")]
    InvalidHostname {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    /// rcgen failed to create a key pair or to sign a certificate.
    #[error("cannot create the {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// The CA given to [`issue_serving_pems`] cannot sign.
    #[error("the CA cannot be used to issue a serving certificate")]
    UnusableCa {
        #[source]
        source: Unusable,
    },
}

/// The PEM material written by [`generate`] / [`load_or_generate`].
#[derive(Clone)]
pub struct GeneratedCerts {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// The CA certificate, PEM (content of [`CA_CERT_FILE`]; the apiserver's `caBundle`).
    pub ca_pem: String,
    /// The serving certificate, PEM (content of [`TLS_CERT_FILE`]).
    pub cert_pem: String,
    /// The serving certificate's private key, PEM (content of [`TLS_KEY_FILE`]).
    pub key_pem: String,
    /// Whether the CA was found in the directory and reused.
    pub ca_reused: bool,
    /// Whether the serving certificate was found in the directory and reused.
    pub cert_reused: bool,
}

impl GeneratedCerts {
    /// Path of the CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Path of the serving certificate file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(TLS_CERT_FILE)
    }

    /// Path of the serving key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(TLS_KEY_FILE)
    }
}

impl fmt::Debug for GeneratedCerts {
    // The private key is deliberately left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedCerts")
            .field("dir", &self.dir)
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .field("ca_reused", &self.ca_reused)
            .field("cert_reused", &self.cert_reused)
            .finish()
    }
}

/// Generates a new CA and a serving certificate for `hostnames` and `ips` (the SANs), and writes
/// [`CA_CERT_FILE`], [`CA_KEY_FILE`], [`TLS_CERT_FILE`] and [`TLS_KEY_FILE`] into `dir` (created if
/// missing), replacing what was there.
pub fn generate(dir: &Path, hostnames: &[&str], ips: &[IpAddr]) -> Result<GeneratedCerts, CertError> {
    let sans = subject_alt_names(hostnames, ips)?;
    create_dir(dir)?;
    let (ca_pem, ca_key_pem, issuer) = new_ca()?;
    let (cert_pem, key_pem) = new_serving_cert(sans, &issuer)?;
    write_file(&dir.join(CA_KEY_FILE), &ca_key_pem, 0o600)?;
    write_file(&dir.join(CA_CERT_FILE), &ca_pem, 0o644)?;
    write_serving(dir, &cert_pem, &key_pem)?;
    info!(dir = %dir.display(), ?hostnames, ?ips, "generated webhook CA and serving certificate");
    Ok(GeneratedCerts { dir: dir.to_path_buf(), ca_pem, cert_pem, key_pem, ca_reused: false, cert_reused: false })
}

/// Like [`generate`], but reuses what `dir` already holds when it is still good:
///
/// - the CA ([`CA_CERT_FILE`] + [`CA_KEY_FILE`]) when it parses, is a CA, matches its key and does
///   not expire within 30 days;
/// - then the serving certificate ([`TLS_CERT_FILE`] + [`TLS_KEY_FILE`]) when it is signed by that
///   CA, matches its key, covers every requested hostname and IP, and does not expire within 30 days.
///
/// Anything unusable is replaced (with a warning that says why). Missing files are simply
/// generated; unreadable ones (other than missing) are an error.
pub fn load_or_generate(dir: &Path, hostnames: &[&str], ips: &[IpAddr]) -> Result<GeneratedCerts, CertError> {
    let sans = subject_alt_names(hostnames, ips)?;
    create_dir(dir)?;
    let now = OffsetDateTime::now_utc();

    let existing_ca = match read_pair(dir, CA_CERT_FILE, CA_KEY_FILE)? {
        None => None,
        Some((cert_pem, key_pem)) => match usable_ca(&cert_pem, &key_pem, now) {
            Ok(issuer) => Some((cert_pem, issuer)),
            Err(reason) => {
                warn!(dir = %dir.display(), %reason, "existing webhook CA is not usable; generating a new one");
                None
            }
        },
    };
    let Some((ca_pem, issuer)) = existing_ca else {
        return generate(dir, hostnames, ips);
    };

    if let Some((cert_pem, key_pem)) = read_pair(dir, TLS_CERT_FILE, TLS_KEY_FILE)? {
        match usable_serving_cert(&cert_pem, &key_pem, &ca_pem, hostnames, ips, now) {
            Ok(()) => {
                info!(dir = %dir.display(), "reusing existing webhook CA and serving certificate");
                return Ok(GeneratedCerts {
                    dir: dir.to_path_buf(),
                    ca_pem,
                    cert_pem,
                    key_pem,
                    ca_reused: true,
                    cert_reused: true,
                });
            }
            Err(reason) => {
                info!(dir = %dir.display(), %reason, "issuing a new webhook serving certificate");
            }
        }
    }

    let (cert_pem, key_pem) = new_serving_cert(sans, &issuer)?;
    write_serving(dir, &cert_pem, &key_pem)?;
    info!(dir = %dir.display(), ?hostnames, ?ips, "reused webhook CA, issued a new serving certificate");
    Ok(GeneratedCerts { dir: dir.to_path_buf(), ca_pem, cert_pem, key_pem, ca_reused: true, cert_reused: false })
}

/// A CA and a serving certificate as PEM text, in memory (the content of [`CA_CERT_FILE`], [`CA_KEY_FILE`],
/// [`TLS_CERT_FILE`] and [`TLS_KEY_FILE`]).
#[derive(Clone, PartialEq, Eq)]
pub struct CertPems {
    /// The CA certificate that signs, first; it may be followed by further CA certificates that stay trusted
    /// (a bundle, e.g. the previous CA during a rotation). The whole text is the apiserver's `caBundle`.
    pub ca_cert: String,
    /// The signing CA's private key (PEM, PKCS#8).
    pub ca_key: String,
    /// The serving certificate (PEM).
    pub tls_cert: String,
    /// The serving certificate's private key (PEM, PKCS#8).
    pub tls_key: String,
}

impl fmt::Debug for CertPems {
    // The private keys are deliberately left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertPems")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"[elided]")
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &"[elided]")
            .finish()
    }
}

/// Like [`generate`], in memory: a new CA and a serving certificate for `hostnames` and `ips`.
pub fn generate_pems(hostnames: &[&str], ips: &[IpAddr]) -> Result<CertPems, CertError> {
    let sans = subject_alt_names(hostnames, ips)?;
    let (ca_cert, ca_key, issuer) = new_ca()?;
    let (tls_cert, tls_key) = new_serving_cert(sans, &issuer)?;
    Ok(CertPems { ca_cert, ca_key, tls_cert, tls_key })
}

/// A new serving certificate (PEM certificate, PEM key) for `hostnames` and `ips`, signed by the CA
/// `ca_cert_pem` (its first certificate) with `ca_key_pem`. The CA must pass [`check_ca`].
pub fn issue_serving_pems(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    hostnames: &[&str],
    ips: &[IpAddr],
) -> Result<(String, String), CertError> {
    let sans = subject_alt_names(hostnames, ips)?;
    let issuer = usable_ca(ca_cert_pem, ca_key_pem, OffsetDateTime::now_utc())
        .map_err(|source| CertError::UnusableCa { source })?;
    new_serving_cert(sans, &issuer)
}

/// Whether the CA (the first certificate of `ca_cert_pem`, with `ca_key_pem`) is reused by
/// [`load_or_generate`]: it parses, is a CA, matches its key and is valid from `now` for 30 more days.
pub fn check_ca(ca_cert_pem: &str, ca_key_pem: &str, now: OffsetDateTime) -> Result<(), Unusable> {
    usable_ca(ca_cert_pem, ca_key_pem, now).map(|_| ())
}

/// Whether the serving certificate is reused by [`load_or_generate`]: it matches its key, is valid from `now`
/// for 30 more days, is signed by the (first) CA of `ca_cert_pem` and covers every hostname and IP address.
pub fn check_serving(
    cert_pem: &str,
    key_pem: &str,
    ca_cert_pem: &str,
    hostnames: &[&str],
    ips: &[IpAddr],
    now: OffsetDateTime,
) -> Result<(), Unusable> {
    usable_serving_cert(cert_pem, key_pem, ca_cert_pem, hostnames, ips, now)
}

/// The DNS names (lower case) and IP addresses a certificate (the first of `cert_pem`) is issued for.
pub fn serving_names(cert_pem: &str) -> Result<(Vec<String>, Vec<IpAddr>), Unusable> {
    let der = pem_to_der(cert_pem)?;
    let cert = parse_x509(&der)?;
    let (mut dns, mut addrs) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push(n.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => addrs.extend(ip_from_bytes(bytes)),
                _ => {}
            }
        }
    }
    Ok((dns, addrs))
}

/// When a certificate (the first of `cert_pem`) expires.
pub fn not_after(cert_pem: &str) -> Result<OffsetDateTime, Unusable> {
    let der = pem_to_der(cert_pem)?;
    Ok(parse_x509(&der)?.validity().not_after.to_datetime())
}

fn subject_alt_names(hostnames: &[&str], ips: &[IpAddr]) -> Result<Vec<SanType>, CertError> {
    if hostnames.is_empty() && ips.is_empty() {
        return Err(CertError::NoSubjectAltNames);
    }
    let mut sans = Vec::with_capacity(hostnames.len() + ips.len());
    for name in hostnames {
        let dns =
            (*name).try_into().map_err(|source| CertError::InvalidHostname { name: (*name).to_owned(), source })?;
        sans.push(SanType::DnsName(dns));
    }
    sans.extend(ips.iter().copied().map(SanType::IpAddress));
    Ok(sans)
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn key_pair(what: &'static str) -> Result<KeyPair, CertError> {
    KeyPair::generate().map_err(|source| CertError::Generate { what, source })
}

/// Returns (certificate PEM, key PEM, issuer).
fn new_ca() -> Result<(String, String, Issuer<'static, KeyPair>), CertError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let key = key_pair("CA key pair")?;
    let cert = params.self_signed(&key).map_err(|source| CertError::Generate { what: "CA certificate", source })?;
    let key_pem = key.serialize_pem();
    Ok((cert.pem(), key_pem, Issuer::new(params, key)))
}

/// Returns (certificate PEM, key PEM).
fn new_serving_cert(sans: Vec<SanType>, issuer: &Issuer<'_, KeyPair>) -> Result<(String, String), CertError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(SERVING_COMMON_NAME);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + SERVING_VALIDITY;
    let key = key_pair("serving key pair")?;
    let cert =
        params.signed_by(&key, issuer).map_err(|source| CertError::Generate { what: "serving certificate", source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Why existing material is not reused (logged, and returned by [`check_ca`] / [`check_serving`]).
#[derive(Debug, Error)]
pub enum Unusable {
    #[error("not a PEM certificate")]
    NotPem,
    #[error("not a parsable X.509 certificate")]
    NotX509,
    #[error("the private key cannot be parsed: {0}")]
    BadKey(rcgen::Error),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("not a CA certificate")]
    NotCa,
    #[error("not valid now, or expires within {} days", RENEW_BEFORE.whole_days())]
    Expiring,
    #[error("not signed by the CA")]
    NotSignedByCa,
    #[error("does not cover {0}")]
    MissingSan(String),
    #[error("the CA cannot be used for signing: {0}")]
    BadIssuer(rcgen::Error),
}

/// Parses a PEM certificate into its DER bytes.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, Unusable> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|_| Unusable::NotPem)?;
    Ok(pem.contents)
}

fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, Unusable> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| Unusable::NotX509)?;
    Ok(cert)
}

/// Checks the parts every reused certificate must satisfy: key pair matches, valid now and for a while.
fn check_cert_and_key(cert: &X509Certificate<'_>, key_pem: &str, now: OffsetDateTime) -> Result<KeyPair, Unusable> {
    let key = KeyPair::from_pem(key_pem).map_err(Unusable::BadKey)?;
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err(Unusable::KeyMismatch);
    }
    let validity = cert.validity();
    if validity.not_before.to_datetime() > now || validity.not_after.to_datetime() < now + RENEW_BEFORE {
        return Err(Unusable::Expiring);
    }
    Ok(key)
}

fn usable_ca(cert_pem: &str, key_pem: &str, now: OffsetDateTime) -> Result<Issuer<'static, KeyPair>, Unusable> {
    let der = pem_to_der(cert_pem)?;
    let cert = parse_x509(&der)?;
    if !cert.is_ca() {
        return Err(Unusable::NotCa);
    }
    let key = check_cert_and_key(&cert, key_pem, now)?;
    Issuer::from_ca_cert_der(&der.as_slice().into(), key).map_err(Unusable::BadIssuer)
}

fn usable_serving_cert(
    cert_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    hostnames: &[&str],
    ips: &[IpAddr],
    now: OffsetDateTime,
) -> Result<(), Unusable> {
    let der = pem_to_der(cert_pem)?;
    let cert = parse_x509(&der)?;
    check_cert_and_key(&cert, key_pem, now)?;
    let ca_der = pem_to_der(ca_pem)?;
    let ca = parse_x509(&ca_der)?;
    cert.verify_signature(Some(ca.public_key())).map_err(|_| Unusable::NotSignedByCa)?;

    let (dns, addrs) = serving_names(cert_pem)?;
    if let Some(missing) = hostnames.iter().find(|h| !dns.contains(&h.to_ascii_lowercase())) {
        return Err(Unusable::MissingSan((*missing).to_owned()));
    }
    if let Some(missing) = ips.iter().find(|ip| !addrs.contains(ip)) {
        return Err(Unusable::MissingSan(missing.to_string()));
    }
    Ok(())
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::CreateDir { path: dir.to_path_buf(), source })
}

/// Reads a (certificate, key) pair; `None` when either file does not exist.
fn read_pair(dir: &Path, cert: &str, key: &str) -> Result<Option<(String, String)>, CertError> {
    let (Some(cert), Some(key)) = (read_optional(&dir.join(cert))?, read_optional(&dir.join(key))?) else {
        return Ok(None);
    };
    Ok(Some((cert, key)))
}

/// The file's content; `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CertError> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(Some(content)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertError::Read { path: path.to_path_buf(), source }),
    }
}

/// Writes the serving pair. The key goes first: an owner that sees the new key with the old
/// certificate rejects the mismatching pair and reads again on the next event, it never serves a wrong combination.
fn write_serving(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<(), CertError> {
    write_file(&dir.join(TLS_KEY_FILE), key_pem, 0o600)?;
    write_file(&dir.join(TLS_CERT_FILE), cert_pem, 0o644)
}

/// Writes `content` to `path` atomically (temporary file in the same directory, then rename).
pub(crate) fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), CertError> {
    let err = |source| CertError::Write { path: path.to_path_buf(), source };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        // `mode` only applies to newly created files; a stale temporary file keeps its own.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(content.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// A TLS client configuration (ring provider) that trusts exactly the certificates in `ca_pem`: for talking to our
/// own servers and the local control plane.
pub fn client_config_trusting(ca_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("CA PEM: {e}"))?;
        roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the PEM".to_string());
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn parse(pem: &str) -> Vec<u8> {
        pem_to_der(pem).expect("PEM")
    }

    #[test]
    fn generate_writes_a_ca_and_a_serving_cert_signed_by_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = generate(dir.path(), &["localhost", "webhook.garden.svc"], &[LOCALHOST]).expect("generate");
        assert!(!certs.ca_reused && !certs.cert_reused);

        for (file, content) in
            [(CA_CERT_FILE, &certs.ca_pem), (TLS_CERT_FILE, &certs.cert_pem), (TLS_KEY_FILE, &certs.key_pem)]
        {
            let on_disk = fs::read_to_string(dir.path().join(file)).expect("read");
            assert_eq!(&on_disk, content, "{file}");
        }
        let key_mode = fs::metadata(certs.key_path()).expect("stat").permissions().mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let ca_key_mode = fs::metadata(dir.path().join(CA_KEY_FILE)).expect("stat").permissions().mode();
        assert_eq!(ca_key_mode & 0o777, 0o600);

        let ca_der = parse(&certs.ca_pem);
        let ca = parse_x509(&ca_der).expect("ca");
        assert!(ca.is_ca());
        let cn = ca.subject().iter_common_name().next().and_then(|c| c.as_str().ok());
        assert_eq!(cn, Some(CA_COMMON_NAME));
        let years = (ca.validity().not_after.to_datetime() - OffsetDateTime::now_utc()).whole_days() / 365;
        assert!(years >= 9, "CA valid for ~10 years, got {years}");

        let der = parse(&certs.cert_pem);
        let cert = parse_x509(&der).expect("cert");
        assert!(!cert.is_ca());
        cert.verify_signature(Some(ca.public_key())).expect("signed by CA");
        usable_serving_cert(
            &certs.cert_pem,
            &certs.key_pem,
            &certs.ca_pem,
            &["localhost", "webhook.garden.svc"],
            &[LOCALHOST],
            OffsetDateTime::now_utc(),
        )
        .expect("covers the requested SANs and matches its key");
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.server_auth);
    }

    #[test]
    fn generate_rejects_empty_and_invalid_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(generate(dir.path(), &[], &[]), Err(CertError::NoSubjectAltNames)));
        assert!(matches!(
            generate(dir.path(), &["bad name\u{e9}"], &[]),
            Err(CertError::InvalidHostname { name, .. }) if name == "bad name\u{e9}"
        ));
        // Nothing is written on argument errors.
        assert!(!dir.path().join(CA_CERT_FILE).exists());
    }

    #[test]
    fn load_or_generate_reuses_a_valid_ca_and_cert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_generate(dir.path(), &["localhost"], &[LOCALHOST]).expect("first");
        assert!(!first.ca_reused);

        let second = load_or_generate(dir.path(), &["localhost"], &[LOCALHOST]).expect("second");
        assert!(second.ca_reused && second.cert_reused);
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.cert_pem, second.cert_pem);
        assert_eq!(first.key_pem, second.key_pem);
    }

    #[test]
    fn load_or_generate_reissues_the_serving_cert_for_new_names_with_the_same_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_generate(dir.path(), &["localhost"], &[]).expect("first");
        let second = load_or_generate(dir.path(), &["localhost", "other.example"], &[LOCALHOST]).expect("second");
        assert!(second.ca_reused);
        assert!(!second.cert_reused);
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.cert_pem, second.cert_pem);
        assert_eq!(fs::read_to_string(second.cert_path()).expect("read"), second.cert_pem);

        let ca_der = parse(&second.ca_pem);
        let ca = parse_x509(&ca_der).expect("ca");
        let der = parse(&second.cert_pem);
        parse_x509(&der)
            .expect("cert")
            .verify_signature(Some(ca.public_key()))
            .expect("new serving cert is signed by the reused CA");
    }

    #[test]
    fn load_or_generate_replaces_an_unusable_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = generate(dir.path(), &["localhost"], &[]).expect("first");

        // A CA key that does not belong to the CA certificate.
        let other = tempfile::tempdir().expect("tempdir");
        generate(other.path(), &["localhost"], &[]).expect("other");
        fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).expect("copy");

        let second = load_or_generate(dir.path(), &["localhost"], &[]).expect("second");
        assert!(!second.ca_reused && !second.cert_reused);
        assert_ne!(first.ca_pem, second.ca_pem);

        // Garbage CA.
        fs::write(dir.path().join(CA_CERT_FILE), "not a certificate").expect("write");
        let third = load_or_generate(dir.path(), &["localhost"], &[]).expect("third");
        assert!(!third.ca_reused);
        assert!(third.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn a_serving_cert_is_not_reused_as_a_ca_nor_across_cas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = generate(dir.path(), &["localhost"], &[]).expect("generate");
        let now = OffsetDateTime::now_utc();
        assert!(matches!(usable_ca(&certs.cert_pem, &certs.key_pem, now), Err(Unusable::NotCa)));
        let other = tempfile::tempdir().expect("tempdir");
        let other = generate(other.path(), &["localhost"], &[]).expect("other");
        assert!(matches!(
            usable_serving_cert(&certs.cert_pem, &certs.key_pem, &other.ca_pem, &["localhost"], &[], now),
            Err(Unusable::NotSignedByCa)
        ));
        // Expiry: pretend it is 2 years later.
        assert!(matches!(
            usable_serving_cert(
                &certs.cert_pem,
                &certs.key_pem,
                &certs.ca_pem,
                &["localhost"],
                &[],
                now + Duration::days(730)
            ),
            Err(Unusable::Expiring)
        ));
    }

    #[test]
    fn in_memory_material_is_checked_and_reissued_like_the_files() {
        let now = OffsetDateTime::now_utc();
        let pems = generate_pems(&["webhook.garden.svc"], &[LOCALHOST]).expect("generate");
        check_ca(&pems.ca_cert, &pems.ca_key, now).expect("usable CA");
        check_serving(&pems.tls_cert, &pems.tls_key, &pems.ca_cert, &["webhook.garden.svc"], &[LOCALHOST], now)
            .expect("usable serving certificate");
        assert!(matches!(
            check_serving(&pems.tls_cert, &pems.tls_key, &pems.ca_cert, &["other.example"], &[], now),
            Err(Unusable::MissingSan(name)) if name == "other.example"
        ));
        assert_eq!(
            serving_names(&pems.tls_cert).expect("names"),
            (vec!["webhook.garden.svc".to_string()], vec![LOCALHOST])
        );
        let years = (not_after(&pems.ca_cert).expect("not after") - now).whole_days() / 365;
        assert!(years >= 9, "CA valid for ~10 years, got {years}");
        assert!(!format!("{pems:?}").contains("PRIVATE KEY"), "Debug elides the keys");

        let (cert, key) = issue_serving_pems(&pems.ca_cert, &pems.ca_key, &["other.example"], &[]).expect("issue");
        assert_ne!(cert, pems.tls_cert);
        check_serving(&cert, &key, &pems.ca_cert, &["other.example"], &[], now).expect("signed by the same CA");

        // A bundle (signing CA first, then another one) signs with its first CA.
        let other = generate_pems(&["localhost"], &[]).expect("other");
        let bundle = format!("{}{}", pems.ca_cert, other.ca_cert);
        check_ca(&bundle, &pems.ca_key, now).expect("the first CA of a bundle");
        check_serving(&cert, &key, &bundle, &["other.example"], &[], now).expect("verified against the first CA");

        assert!(matches!(
            issue_serving_pems(&pems.ca_cert, &other.ca_key, &["localhost"], &[]),
            Err(CertError::UnusableCa { source: Unusable::KeyMismatch })
        ));
        assert!(matches!(check_ca(&pems.tls_cert, &pems.tls_key, now), Err(Unusable::NotCa)));
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a-file");
        fs::write(&file, "x").expect("write");
        let err = generate(&file.join("sub"), &["localhost"], &[]).expect_err("not a directory");
        assert!(matches!(&err, CertError::CreateDir { path, .. } if path == &file.join("sub")));
        assert!(err.to_string().contains("a-file"));
    }
}
