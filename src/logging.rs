//! Logging set-up: JSON lines in production (what log collectors in the seed and garden parse), readable text for
//! development.

use tracing_subscriber::EnvFilter;

/// The filter used when `RUST_LOG` is not set: `info` for everything, except rustls below `error`.
///
/// rustls reports what a *client* did wrong in its handshake as a warning, once per connection (for example
/// "Illegal SNI extension: ignoring IP address presented as hostname" when a client sends an IP address as SNI).
/// The webhook ports are reachable by unauthenticated clients, so those lines would let anyone flood the logs;
/// rustls' errors stay visible.
pub const DEFAULT_FILTER: &str = "info,rustls=error";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the global subscriber; `RUST_LOG` overrides [`DEFAULT_FILTER`]. Safe to call more than once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer that keeps what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_default_filter_drops_per_connection_rustls_warnings_but_keeps_errors() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(DEFAULT_FILTER))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            // The target rustls' `log` records carry when bridged into tracing.
            tracing::warn!(target: "rustls::server::hs", "Illegal SNI extension: ignoring IP address presented as hostname");
            tracing::error!(target: "rustls::server::hs", "a real rustls error");
            tracing::warn!(target: "gardener_extension_cri_resmgr::runtime", "our own warning");
            tracing::info!(target: "gardener_extension_cri_resmgr::runtime", "our own info");
        });
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(!text.contains("Illegal SNI"), "{text}");
        assert!(text.contains("a real rustls error"), "{text}");
        assert!(text.contains("our own warning"), "{text}");
        assert!(text.contains("our own info"), "{text}");
    }
}
