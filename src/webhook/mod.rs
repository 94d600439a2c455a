//! The TLS admission server and its handlers.

pub mod server;
