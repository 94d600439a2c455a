//! The TLS webhook server (axum + rustls on the ring provider).
