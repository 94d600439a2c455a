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
use std::time::Duration;

/// How long a test waits for the system to converge.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, failing the test with `what` after [`CONVERGE_TIMEOUT`]: the one wait of
/// the integration tests, the test bed's own tests and the end-to-end scenarios.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What Helm's `.Capabilities.APIVersions` hold for the cluster `client` talks to, as Helm collects them from a
/// live cluster: `group/version` and `group/version/Kind` of every served resource, sorted.
pub async fn served_api_versions(client: &kube::Client) -> Result<Vec<String>, kube::Error> {
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await?;
    let mut api_versions = std::collections::BTreeSet::new();
    for group in discovery.groups() {
        for version in group.versions() {
            let group_version =
                if group.name().is_empty() { version.to_string() } else { format!("{}/{version}", group.name()) };
            for (resource, _) in group.versioned_resources(version) {
                api_versions.insert(format!("{group_version}/{}", resource.kind));
            }
            api_versions.insert(group_version);
        }
    }
    Ok(api_versions.into_iter().collect())
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names of the objects `api` lists: what a test reports when something is left behind.
pub async fn object_names<K>(api: &kube::Api<K>) -> Vec<String>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&Default::default()).await.expect("list");
    list.items.into_iter().filter_map(|object| object.meta().name.clone()).collect()
}

/// `../shared/gardener/<sub>` beside the repository, when it exists (it does not in every checkout): Gardener's
/// real CRDs and examples, which the installed CRDs are compared against.
pub fn shared_gardener_dir(sub: &str) -> Option<PathBuf> {
    let dir = repo_root().join("../shared/gardener").join(sub);
    dir.is_dir().then_some(dir)
}
