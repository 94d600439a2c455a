//! gardener-extension-cri-resmgr: a Gardener extension that installs, configures, health-checks and removes
//! intel's CRI-Resource-Manager on the worker nodes of Gardener shoot clusters.
//!
//! Module map (see the README's architecture section):
//! - [`apis`]: the Gardener API types we read and write, and the extension's own providerConfig.
//! - [`admission`]: the `admission` command (garden side).
//! - [`validation`]: pure validation of the providerConfig, shared by the webhook, the reconciler and `render`.
//! - [`webhook`]: the TLS admission server and its handlers.
//! - [`certs`]: development/test webhook certificates.
//! - [`constants`]: every well-known name and node path, spelled once.
//! - [`crds`]: the CustomResourceDefinitions the local control plane installs.
//! - [`dev`]: `make dev`'s local environment.
//! - [`testbed`]: a real etcd + kube-apiserver on loopback, for `make dev` and the integration tests.

pub mod admission;
pub mod apis;
pub mod certs;
pub mod configs;
pub mod constants;
pub mod controller;
pub mod crds;
pub mod desired;
pub mod dev;
pub mod images;
pub mod logging;
pub mod managed_resource;
pub mod node;
pub mod render;
pub mod shoot_resources;
pub mod testbed;
pub mod validation;
pub mod webhook;
pub mod yaml;
