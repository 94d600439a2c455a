//! End-to-end tests of gardener-extension-cri-resmgr, as Gardener drives it: garden → seed → shoot → node.
//!
//! - [`topology`]: three local control planes (garden, seed, shoot), the extension's real binary started from the
//!   Helm-rendered charts (admission in the garden; the controller with two replicas and leader election in the
//!   seed), and the stand-ins of the test bed for what cannot run here (gardenlet, gardener-resource-manager,
//!   gardener-node-agent, kubelet).
//! - [`charts`]: rendering the charts with real Helm and running their containers as local processes.
//! - [`service`]: a Service stand-in: one loopback port that forwards to whichever replica is alive.
//! - [`error`]: the failures the chart and topology errors share.
//! - [`garden`]: what a scenario needs from a garden, for the local topology and for a real Gardener
//!   (`E2E_GARDEN_KUBECONFIG`): the settings.
//! - [`landscape`]: the landscape a scenario runs in (the local topology or a real Gardener) and what a scenario
//!   does with it: the Shoot reconciled or deleted, the seed and the shoot, observations of the nodes.
//!
//! The scenarios are in `tests/scenarios.rs`; `make e2e` runs them.

pub mod charts;
pub mod error;
pub mod garden;
pub mod landscape;
pub mod service;
pub mod topology;
