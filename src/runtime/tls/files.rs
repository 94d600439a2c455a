//! The certificate directory as a source: `tls.crt`, `tls.key` and (optionally) `ca.crt`, followed through
//! file-system notifications (inotify on Linux, through the `notify` crate).
//!
//! A mounted Secret is updated by kubelet swapping its `..data` symlink, which neither rewrites nor touches the
//! files the server opens (`tls.crt -> ..data/tls.crt`); the directory's own events (the rename of `..data`) are what
//! announce it, so the directory is watched rather than the files. Every event leads to a re-read of the whole
//! material; content is compared, not mtimes, and unchanged material is not published again.
//!
//! Fallback: when the directory cannot be watched (it does not exist yet, or the watch broke), it is re-read every
//! [`FALLBACK_RESCAN_INTERVAL`] and the watch is set up again, until it works.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::{CertLoadError, Certificates, Publisher, ServingCerts};
use crate::runtime::error_chain;
use crate::runtime::tls::certs::{CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE};

/// Writers replace the files one by one (the key, then its certificate): a burst of events is let settle this long
/// before the directory is read, so that the half-updated pair in between is rarely seen (and never served).
pub const SETTLE: Duration = Duration::from_millis(50);
/// How often a directory that cannot be watched is re-read (the documented fallback, see the module documentation).
pub const FALLBACK_RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// Starts the owner of the certificates in `dir`: reads them now (publishing them when usable) and then follows the
/// directory. Problems (missing or unusable files) are published as the reason the material is pending, or, once
/// material is served, logged while it stays in service.
pub fn watch_dir(dir: impl Into<PathBuf>) -> Certificates {
    let dir = dir.into();
    let source = format!("directory {}", dir.display());
    let (mut publisher, receiver) = Publisher::new(source.clone());
    reload(&dir, &mut publisher);
    let task = tokio::spawn(follow(dir, publisher));
    Certificates::new(receiver, source, task)
}

/// Reads the material in `dir`.
pub fn read_dir(dir: &Path) -> Result<ServingCerts, CertLoadError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| CertLoadError::Read { path, source })
    };
    let cert_pem = read(TLS_CERT_FILE)?;
    let key_pem = read(TLS_KEY_FILE)?;
    let ca_bundle = match read(CA_CERT_FILE) {
        Ok(ca) => Some(ca),
        Err(CertLoadError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    ServingCerts::new(ca_bundle, cert_pem, key_pem).map_err(|source| CertLoadError::Tls {
        what: format!("{} / {}", dir.join(TLS_CERT_FILE).display(), dir.join(TLS_KEY_FILE).display()),
        source,
    })
}

fn reload(dir: &Path, publisher: &mut Publisher) {
    match read_dir(dir) {
        Ok(certs) => {
            publisher.publish(certs);
        }
        Err(e) => publisher.problem(error_chain(&e)),
    }
}

/// A watch on the directory: `wake` is notified for every event; `broken` is set when notify reports an error.
struct DirWatch {
    _watcher: RecommendedWatcher,
    broken: Arc<AtomicBool>,
}

fn watch(dir: &Path, wake: &Arc<Notify>) -> Result<DirWatch, notify::Error> {
    let broken = Arc::new(AtomicBool::new(false));
    let (event_wake, event_broken) = (wake.clone(), broken.clone());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_err() {
            event_broken.store(true, Ordering::SeqCst);
        }
        // A stored permit coalesces a burst into one re-read.
        event_wake.notify_one();
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(DirWatch { _watcher: watcher, broken })
}

async fn follow(dir: PathBuf, mut publisher: Publisher) {
    let wake = Arc::new(Notify::new());
    let mut current: Option<DirWatch> = None;
    loop {
        if current.as_ref().is_none_or(|w| w.broken.load(Ordering::SeqCst)) {
            let had_one = current.take().is_some();
            match watch(&dir, &wake) {
                Ok(w) => {
                    if had_one {
                        info!(dir = %dir.display(), "watching the webhook certificate directory again");
                    }
                    current = Some(w);
                    // Anything that changed while there was no watch.
                    reload(&dir, &mut publisher);
                }
                Err(e) => warn!(
                    dir = %dir.display(),
                    error = %error_chain(&e),
                    rescan = ?FALLBACK_RESCAN_INTERVAL,
                    "cannot watch the webhook certificate directory; re-reading it periodically"
                ),
            }
        }
        if current.is_some() {
            wake.notified().await;
        } else {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(FALLBACK_RESCAN_INTERVAL) => {}
            }
        }
        tokio::time::sleep(SETTLE).await;
        reload(&dir, &mut publisher);
    }
}
