//! Shared test bed: one control plane for the whole test binary, started on first use and stopped at process exit
//! (and killed by the kernel if the binary dies without exiting, see `testbed`).

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use cri_resmgr_testbed::control_plane::{self, ControlPlane, WorkDir};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, PostParams};

struct Shared {
    plane: Mutex<Option<ControlPlane>>,
    kubeconfig: PathBuf,
    server_url: String,
    pids: Vec<u32>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

/// Directories the shared servers of this test binary write into, removed at exit.
static REMOVE_AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A directory under the system temp dir, unique to this test binary and removed when it exits.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    if let Ok(mut dirs) = REMOVE_AT_EXIT.lock() {
        dirs.push(dir.clone());
    }
    dir
}

extern "C" fn stop_shared_control_plane() {
    if let Ok(dirs) = REMOVE_AT_EXIT.lock() {
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    if let Some(shared) = SHARED.get() {
        let plane = match shared.plane.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(plane);
    }
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        // Started on a runtime of its own: every test has its own runtime, and the first test's ends with it.
        let plane = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime for the control plane");
            runtime.block_on(async {
                let plane = ControlPlane::start(WorkDir::Temporary).await.expect("start the local control plane");
                let client = plane.client().await.expect("client for the control plane");
                let crds = cri_resmgr_testbed::crds::installed().expect("the CRDs");
                control_plane::install_crds(&client, crds).await.expect("install CRDs");
                plane
            })
        })
        .join()
        .expect("control plane start-up thread");
        // SAFETY: registering a plain `extern "C" fn` without arguments; it only drops the control plane.
        unsafe {
            libc::atexit(stop_shared_control_plane);
        }
        Shared {
            kubeconfig: plane.kubeconfig_path().to_path_buf(),
            server_url: plane.server_url().to_string(),
            pids: plane.pids().to_vec(),
            plane: Mutex::new(Some(plane)),
        }
    })
}

/// What a test gets: a client of the shared control plane and a namespace of its own.
pub struct TestEnv {
    pub client: kube::Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
}

impl TestEnv {
    /// Creates a namespace named after the test (with a unique suffix) on the shared control plane.
    pub async fn new(test: &str) -> TestEnv {
        let shared = shared();
        let client = client(shared).await;
        let namespace = format!("{}-{}", test.replace('_', "-"), short_suffix());
        let namespace: String = namespace.chars().take(63).collect();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta { name: Some(namespace.clone()), ..ObjectMeta::default() },
                    ..Namespace::default()
                },
            )
            .await
            .expect("create test namespace");
        TestEnv { client, namespace, kubeconfig: shared.kubeconfig.clone() }
    }
}

/// Server URL and process ids of the shared control plane.
pub fn shared_plane_facts() -> (String, Vec<u32>) {
    let shared = shared();
    (shared.server_url.clone(), shared.pids.clone())
}

/// A client of the shared control plane, for the calling runtime.
pub async fn shared_client() -> kube::Client {
    client(shared()).await
}

async fn client(shared: &Shared) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&shared.kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("client")
}

fn short_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{}", nanos & 0xfffff, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The repository root (for examples/ and hacks/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How long a test waits for the system to converge.
pub const TIMEOUT: std::time::Duration = cri_resmgr_testbed::CONVERGE_TIMEOUT;

pub use cri_resmgr_testbed::eventually;

/// An object from `examples/`, decoded into its Rust type.
pub fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let text = std::fs::read_to_string(repo_root().join("examples").join(file)).expect("read example");
    gardener_extension_cri_resmgr::yaml::from_str(&text).expect("example decodes")
}

/// A controller running in the test's runtime, restricted to the test's namespace (base configs and Leases live
/// there too), without the OSC webhook: its configuration is cluster-wide, so the OSC tests share one server.
pub struct RunningController {
    pub shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Result<(), gardener_extension_cri_resmgr::commands::controller::ControllerError>>,
}

impl RunningController {
    pub fn start(env: &TestEnv) -> RunningController {
        Self::start_with(env, |_| {})
    }

    /// Starts a controller with options changed by `edit`.
    pub fn start_with(
        env: &TestEnv,
        edit: impl FnOnce(&mut gardener_extension_cri_resmgr::commands::controller::ControllerOptions),
    ) -> RunningController {
        use gardener_extension_cri_resmgr::commands::controller::{self, ControllerOptions};
        let mut options = ControllerOptions {
            configmap_namespace: env.namespace.clone(),
            leader_election_namespace: Some(env.namespace.clone()),
            leader_election: true,
            identity: None,
            watch_namespace: Some(env.namespace.clone()),
            ignore_operation_annotation: false,
            health_check_interval_seconds: 1,
            heartbeat_interval_seconds: 1,
            resync_interval_seconds: 3600,
            max_concurrent_reconciles: gardener_extension_cri_resmgr::controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
            osc_webhook: false,
            webhook: Default::default(),
            metrics: gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions::disabled(),
        };
        edit(&mut options);
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(controller::run(options, env.client.clone(), shutdown.clone()));
        RunningController { shutdown, task }
    }

    /// Waits (without stopping it) until the controller ends by itself, and returns how it ended.
    pub async fn ended(self) -> Result<(), gardener_extension_cri_resmgr::commands::controller::ControllerError> {
        tokio::time::timeout(TIMEOUT, self.task).await.expect("the controller ends by itself").expect("join")
    }

    /// Stops the controller and checks that it ran without error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(TIMEOUT, self.task).await.expect("controller stops").expect("join");
        result.expect("controller ran without error");
    }
}

/// The first line of the answer to `GET path` over TLS to 127.0.0.1:`port`, trusting only `ca_pem` and checking the
/// certificate for `server_name`; `None` while the server does not answer. A certificate the CA does not vouch for
/// fails the test.
pub async fn https_get(port: u16, server_name: &str, ca_pem: &[u8], path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = gardener_extension_cri_resmgr::runtime::tls::certs::client_config_trusting(ca_pem).expect("CA");
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).expect("server name");
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake as {server_name} with the given CA: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).lines().next().map(str::to_string)
}

/// Starts a webhook server shared by the whole test binary (webhook configurations are cluster-wide) on a thread
/// and runtime of its own, and returns once the apiserver's configuration `K`/`config_name` calls the server's port.
/// `start` gets the port and a client and runs the server; the server lives until the process exits.
pub fn start_shared_webhook_server<K, S, F, T>(what: &'static str, config_name: &'static str, start: S)
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    S: FnOnce(u16, kube::Client) -> F + Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
    T: std::fmt::Debug + Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime for a shared webhook server");
        runtime.block_on(async move {
            let port = cri_resmgr_testbed::control_plane::free_port().expect("free port");
            let client = shared_client().await;
            let server = tokio::spawn(start(port, client.clone()));
            let api: Api<K> = Api::all(client);
            let wanted = format!(":{port}/");
            eventually(&format!("the {what} registered with its port"), || async {
                assert!(!server.is_finished(), "the {what} stopped during start-up");
                let config = serde_json::to_value(api.get_opt(config_name).await.ok()??).ok()?;
                let url = config["webhooks"][0]["clientConfig"]["url"].as_str()?.to_string();
                url.contains(&wanted).then_some(())
            })
            .await;
            ready_tx.send(()).expect("signal readiness");
            let result = server.await;
            panic!("the {what} stopped: {result:?}");
        });
    });
    ready_rx.recv().unwrap_or_else(|_| panic!("the {what} did not start"));
}

/// The Events published about the object `kind`/`name` in `namespace` (the `events.k8s.io` view, as kube-runtime's
/// recorder writes them).
pub async fn events_about(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Vec<k8s_openapi::api::events::v1::Event> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), namespace);
    let events = api.list(&Default::default()).await.expect("list Events");
    events
        .items
        .into_iter()
        .filter(|event| {
            event.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect()
}

/// Waits until an Event with `reason` and `type_` about `kind`/`name` exists, and returns it.
pub async fn event_with_reason(
    client: &kube::Client,
    namespace: &str,
    (kind, name): (&str, &str),
    type_: &str,
    reason: &str,
) -> k8s_openapi::api::events::v1::Event {
    eventually(&format!("a {type_} Event {reason} on {kind} {namespace}/{name}"), || async {
        events_about(client, namespace, kind, name)
            .await
            .into_iter()
            .find(|event| event.reason.as_deref() == Some(reason) && event.type_.as_deref() == Some(type_))
    })
    .await
}

/// The body of `GET /metrics` over plain HTTP from `address`; `None` while nothing answers there.
pub async fn scrape(address: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let response = String::from_utf8(response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    Some(body.to_string())
}

/// The value of the sample `series` (name and labels exactly as exposed, e.g. `x_total{a="b"}`) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
