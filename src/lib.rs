//! gardener-extension-cri-resmgr: a Gardener extension that installs, configures, health-checks and removes
//! intel's CRI-Resource-Manager on the worker nodes of Gardener shoot clusters.
//!
//! Layers, lowest first; each uses only its own and lower layers (see `docs/architecture.md`; `layers` checks it
//! over the source):
//! - foundation: [`apis`] (Gardener's types and the providerConfig), [`constants`] (every well-known name and node
//!   path, spelled once), [`yaml`], [`decode`] (typed decoding with field paths), [`logging`];
//! - [`domain`]: what cri-resmgr needs, pure functions over typed values, no I/O;
//! - runtime, the I/O plumbing the adapters share: [`runtime`] (webhook server, registration, certificates, input
//!   reads), [`contract`] (Gardener's extension contract around an `Actuator`), [`managed_resource`]
//!   (ManagedResources in the seed);
//! - adapters, which never use each other: [`webhook`] (admission handlers), [`controller`] (the cri-resmgr
//!   actuator and its loops), [`render`] (offline preview);
//! - [`commands`]: the processes that wire adapters together (`admission`, `controller`).

pub mod apis;
pub mod commands;
pub mod constants;
pub mod contract;
pub mod controller;
pub mod decode;
pub mod domain;
pub mod logging;
pub mod managed_resource;
pub mod render;
pub mod runtime;
pub mod webhook;
pub mod yaml;

#[cfg(test)]
mod layers;
