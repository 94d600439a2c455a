//! The local test bed of gardener-extension-cri-resmgr — never linked into the extension's binary:
//!
//! - [`bench`]: `make bench`, the webhooks against the TLS limit and the controller's scale run.
//! - [`control_plane`]: a real etcd + kube-apiserver on loopback, for `make dev` and the integration tests.
//! - [`crds`]: the CustomResourceDefinitions that control plane installs (Gardener's own, and a strict Shoot stand-in).
//! - [`dev`]: `make dev`'s local environment (control plane, CRDs, admission server, controller, examples).
//! - [`standins`]: the Gardener components that cannot run here (gardener-resource-manager, kubelet), played thinly.

pub mod bench;
pub mod control_plane;
pub mod crds;
pub mod dev;
pub mod standins;

use std::path::{Path, PathBuf};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/gardener/<sub>` beside the repository, when it exists (it does not in every checkout): Gardener's
/// real CRDs and examples, which the installed CRDs are compared against.
pub fn shared_gardener_dir(sub: &str) -> Option<PathBuf> {
    let dir = repo_root().join("../shared/gardener").join(sub);
    dir.is_dir().then_some(dir)
}
