//! The certificate directory as a source: `tls.crt`, `tls.key` and (optionally) `ca.crt`, followed through
//! file-system notifications (inotify on Linux, through the `notify` crate).
//!
//! A mounted Secret is updated by kubelet swapping its `..data` symlink, which neither rewrites nor touches the
//! files the server opens (`tls.crt -> ..data/tls.crt`); the directory's own events (the rename of `..data`) are what
//! announce it, so the directory is watched rather than the files. Every event leads to a re-read of the whole
//! material; content is compared, not mtimes, and unchanged material is not published again.
//!
//! Fallback: when the directory cannot be watched (it does not exist yet, the watch broke, or the directory was
//! deleted or moved away), it is re-read every [`FALLBACK_RESCAN_INTERVAL`] and the watch is set up again, until it
//! works.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
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
    watch_dir_rescanning(dir, FALLBACK_RESCAN_INTERVAL)
}

/// [`watch_dir`] with the fallback's re-read interval given (tests shorten it).
fn watch_dir_rescanning(dir: impl Into<PathBuf>, rescan: Duration) -> Certificates {
    let dir = dir.into();
    let source = format!("directory {}", dir.display());
    let (mut publisher, receiver) = Publisher::new(source.clone());
    reload(&dir, &mut publisher);
    let task = tokio::spawn(follow(dir, publisher, rescan));
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
    #[cfg(test)]
    tests::RELOADS.with(|reloads| reloads.set(reloads.get() + 1));
    match read_dir(dir) {
        Ok(certs) => {
            publisher.publish(certs);
        }
        Err(e) => publisher.problem(error_chain(&e)),
    }
}

/// A watch on the directory: `wake` is notified for every event; `broken` is set when notify reports an error or
/// the directory itself goes away (deleted or moved: the watch would follow nothing any more, and a directory
/// created again under the name needs a watch of its own).
struct DirWatch {
    _watcher: RecommendedWatcher,
    broken: Arc<AtomicBool>,
}

fn watch(dir: &Path, wake: &Arc<Notify>) -> Result<DirWatch, notify::Error> {
    let broken = Arc::new(AtomicBool::new(false));
    let (event_wake, event_broken, watched) = (wake.clone(), broken.clone(), dir.to_path_buf());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let gone = |event: &notify::Event| {
            matches!(event.kind, EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)))
                && event.paths.contains(&watched)
        };
        if event.as_ref().map_or(true, gone) {
            event_broken.store(true, Ordering::SeqCst);
        }
        // Reading the files is an access event too: waking for it would make every re-read cause the next one.
        if event.as_ref().is_ok_and(|event| matches!(event.kind, EventKind::Access(_))) {
            return;
        }
        // A stored permit coalesces a burst into one re-read.
        event_wake.notify_one();
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(DirWatch { _watcher: watcher, broken })
}

async fn follow(dir: PathBuf, mut publisher: Publisher, rescan: Duration) {
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
                    rescan = ?rescan,
                    "cannot watch the webhook certificate directory; re-reading it periodically"
                ),
            }
        }
        if current.is_some() {
            wake.notified().await;
        } else {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(rescan) => {}
            }
        }
        tokio::time::sleep(SETTLE).await;
        reload(&dir, &mut publisher);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::runtime::tls::{CertReceiver, certs};

    thread_local! {
        /// Re-reads of the directory on this thread (a test's runtime runs the owner task on the test's thread).
        pub(super) static RELOADS: Cell<usize> = const { Cell::new(0) };
    }

    /// Reading the files makes access events; the owner must not take them for changes, or every re-read would
    /// cause the next one.
    #[tokio::test]
    async fn a_quiet_directory_is_not_read_again_and_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        certs::generate(dir.path(), &["localhost"], &[]).expect("generate");
        let certificates = watch_dir_rescanning(dir.path(), Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = RELOADS.with(Cell::get);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(RELOADS.with(Cell::get), before, "no re-read without a change");
        certs::generate(dir.path(), &["localhost"], &[]).expect("generate again");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(RELOADS.with(Cell::get) > before, "a change is read");
        assert!(certificates.is_running());
    }

    /// A directory deleted and created again (a regenerated `--generate-certs-for` directory) is followed again: the
    /// new material is published.
    #[tokio::test]
    async fn a_directory_deleted_and_created_again_is_followed_again() {
        let parent = tempfile::tempdir().expect("tempdir");
        let dir = parent.path().join("certs");
        let first = certs::generate(&dir, &["localhost"], &[]).expect("generate");
        let certificates = watch_dir_rescanning(&dir, Duration::from_millis(200));
        let mut receiver = certificates.subscribe();
        let served = |receiver: &CertReceiver| receiver.borrow().current().map(|c| c.cert_pem.clone());
        assert_eq!(served(&receiver), Some(first.cert_pem.clone()));
        // Let the owner set up its watch of the directory (the test's runtime runs it only while the test waits).
        tokio::time::sleep(Duration::from_millis(300)).await;

        std::fs::remove_dir_all(&dir).expect("remove the directory");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = certs::generate(&dir, &["localhost"], &[]).expect("generate again");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while served(&receiver) != Some(second.cert_pem.clone()) {
            assert!(tokio::time::Instant::now() < deadline, "the new directory's certificate is served");
            let _ = tokio::time::timeout(Duration::from_millis(200), receiver.changed()).await;
        }
        assert!(certificates.is_running());
    }
}
