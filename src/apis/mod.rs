//! API types: Gardener's (typed, serde-exact, unknown fields preserved where we write objects back) and the
//! extension's own providerConfig.

pub mod common;
pub mod config;
pub mod core;
pub mod extensions;
pub mod resources;
