//! A real etcd + kube-apiserver on loopback: the test bed of every integration test and the default target of
//! `make dev`.
//!
//! The binaries come from `hacks/install-control-plane.sh` (etcd from Debian's `etcd-server`, kube-apiserver built
//! from Debian's `kubernetes` source package), or from `$ETCD` / `$KUBE_APISERVER`.
//!
//! Processes are started from one dedicated keeper thread that lives as long as the control plane, with
//! `PR_SET_PDEATHSIG`: the kernel delivers that signal when the *thread* that forked the child ends, so forking from a
//! short-lived test thread would kill the control plane early, while forking from the keeper kills it exactly when the
//! owning process dies — also when a test binary aborts and never runs its clean-up.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

/// Environment variable naming a kube-apiserver binary to use instead of the one built by the installer.
pub const ENV_KUBE_APISERVER: &str = "KUBE_APISERVER";
/// Environment variable naming an etcd binary to use instead of Debian's.
pub const ENV_ETCD: &str = "ETCD";
/// Environment variable overriding the cache directory the installer builds kube-apiserver into.
pub const ENV_CACHE_DIR: &str = "CRI_RESMGR_CACHE_DIR";
/// The Debian source package version the installer builds kube-apiserver from; part of the cached binary's name.
pub const KUBE_SOURCE_VERSION: &str = "1.20.5+really1.20.2";
/// The installer script, relative to the repository root.
pub const INSTALLER: &str = "hacks/install-control-plane.sh";
/// Name of the kubeconfig context (and cluster and user) written for the control plane.
pub const KUBECONFIG_CONTEXT: &str = "cri-resmgr-local";

/// etcd's limit for one request. Its default (1.5 MiB) is below what kube-apiserver 1.20 sends to etcd (up to 2 MiB,
/// its client's limit; its own limit for a request body is 3 MiB), so objects between the two would be refused by
/// etcd after admission; with this limit the apiserver's limits are what bound an object.
pub const ETCD_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;
const ADMIN_USER: &str = "admin";
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_GRACE: Duration = Duration::from_secs(10);
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// The namespaces kube-apiserver creates itself after it started, which tests write into.
const SYSTEM_NAMESPACES: [&str; 2] = ["default", "kube-system"];

/// What can go wrong while starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("{what} binary not found at {path}: run `bash {INSTALLER}` (make does this) or set ${env} to a binary")]
    MissingBinary { what: &'static str, path: PathBuf, env: &'static str },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("cannot generate control-plane certificates: {0}")]
    Certificates(#[from] rcgen::Error),
    #[error("{what} did not become ready within {timeout:?}; last lines of {log}:\n{tail}")]
    NotReady { what: &'static str, timeout: Duration, log: PathBuf, tail: String },
    #[error("{what} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited { what: &'static str, status: String, log: PathBuf, tail: String },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("CRDs: {0}")]
    Crds(#[from] crate::crds::CrdError),
    #[error("CRD {name} was not established within {CRD_ESTABLISH_TIMEOUT:?}")]
    CrdNotEstablished { name: String },
    #[error("the control plane's keeper thread is gone")]
    KeeperGone,
}

impl TestbedError {
    /// A process exited during start-up because a port it was given had been taken meanwhile.
    fn is_port_taken(&self) -> bool {
        matches!(self, TestbedError::Exited { tail, .. } if tail.contains("address already in use"))
    }
}

/// How often a control plane starts again on new ports when one of its chosen ports was taken.
const PORT_ATTEMPTS: u32 = 3;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestbedError {
    let context = context.into();
    move |source| TestbedError::Io { context, source }
}

/// Paths of the two binaries the control plane runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
}

impl Binaries {
    /// Resolves the binaries from `$ETCD` / `$KUBE_APISERVER`, else etcd on `PATH` and the installer's cached
    /// kube-apiserver. Does not build anything.
    pub fn locate() -> Result<Self, TestbedError> {
        let etcd = match std::env::var_os(ENV_ETCD) {
            Some(path) => PathBuf::from(path),
            None => find_on_path("etcd").unwrap_or_else(|| PathBuf::from("/usr/bin/etcd")),
        };
        let kube_apiserver = match std::env::var_os(ENV_KUBE_APISERVER) {
            Some(path) => PathBuf::from(path),
            None => cache_dir().join(format!("kube-apiserver-{KUBE_SOURCE_VERSION}")),
        };
        for (what, path, env) in [("etcd", &etcd, ENV_ETCD), ("kube-apiserver", &kube_apiserver, ENV_KUBE_APISERVER)] {
            if !path.is_file() {
                return Err(TestbedError::MissingBinary { what, path: path.clone(), env });
            }
        }
        Ok(Self { etcd, kube_apiserver })
    }
}

/// The installer's cache directory (same rule as `hacks/install-control-plane.sh`).
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_CACHE_DIR) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join(gardener_extension_cri_resmgr::constants::COMPONENT_NAME)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Where the control plane keeps its data, certificates, logs and kubeconfig.
#[derive(Debug, Clone)]
pub enum WorkDir {
    /// A fresh directory under the system temp dir, removed when the control plane stops.
    Temporary,
    /// A directory that is kept (e.g. `.dev/` for `make dev`); its previous contents are replaced.
    Kept(PathBuf),
}

/// A running etcd + kube-apiserver. Each half can be stopped and started again on its old port (etcd keeps its data
/// dir), so that tests can take the storage or the API away under a running client and see it recover.
pub struct ControlPlane {
    name: String,
    dir: PathBuf,
    remove_dir_on_stop: bool,
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    server_url: String,
    binaries: Option<Binaries>,
    ports: Ports,
    token: String,
    ca_pem: String,
    etcd_pid: Option<u32>,
    apiserver_pid: Option<u32>,
    keeper: Option<Keeper>,
}

/// The loopback ports of one control plane, chosen at start and kept across restarts (clients keep their URLs).
#[derive(Debug, Clone, Copy, Default)]
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
}

/// The order in which the keeper stops its children: higher first (see [`terminate_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StopOrder {
    Etcd = 0,
    Apiserver = 1,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("server_url", &self.server_url)
            .field("pids", &self.pids())
            .finish()
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver on free loopback ports and waits until the apiserver is ready.
    pub async fn start(work_dir: WorkDir) -> Result<Self, TestbedError> {
        Self::start_named(KUBECONFIG_CONTEXT, work_dir).await
    }

    /// [`ControlPlane::start`] for one of several control planes of a test (a garden, a seed, a shoot): `name` is
    /// the kubeconfig's context, cluster and user name and part of a temporary work dir's name, so that logs and
    /// kubeconfigs say which plane they belong to.
    pub async fn start_named(name: &str, work_dir: WorkDir) -> Result<Self, TestbedError> {
        let binaries = Binaries::locate()?;
        let (dir, remove_dir_on_stop) = match work_dir {
            WorkDir::Temporary => (
                std::env::temp_dir().join(format!(
                    "cri-resmgr-testbed-{}-{name}-{}",
                    std::process::id(),
                    unique_suffix()
                )),
                true,
            ),
            WorkDir::Kept(dir) => (dir, false),
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;

        let keeper = Keeper::start();
        let mut plane = ControlPlane {
            name: name.to_string(),
            kubeconfig_path: dir.join("kubeconfig"),
            dir,
            remove_dir_on_stop,
            kubeconfig: Kubeconfig::default(),
            server_url: String::new(),
            binaries: Some(binaries),
            ports: Ports::default(),
            token: String::new(),
            ca_pem: String::new(),
            etcd_pid: None,
            apiserver_pid: None,
            keeper: Some(keeper),
        };
        // On any start-up error `plane` is dropped, which stops whatever was already started.
        plane.boot().await?;
        Ok(plane)
    }

    async fn boot(&mut self) -> Result<(), TestbedError> {
        let tls = self.write_certificates()?;
        self.token = random_token()?;
        self.ca_pem = tls.ca_pem.clone();
        std::fs::write(self.tokens_file(), format!("{},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n", self.token))
            .map_err(io_err("writing tokens.csv"))?;
        // A free port is only free when it is chosen: another process (a client's outgoing connection, a plane
        // starting beside this one) may bind it before etcd or the apiserver does. Then start again on new ports.
        let mut attempt = 1;
        loop {
            match self.boot_on_free_ports().await {
                Err(error) if attempt < PORT_ATTEMPTS && error.is_port_taken() => {
                    eprintln!("control plane {}: a chosen port was taken before it was bound; new ports", self.name);
                    self.stop_apiserver().await?;
                    self.stop_etcd().await?;
                    let data = self.dir.join("etcd");
                    if data.exists() {
                        std::fs::remove_dir_all(&data).map_err(io_err(format!("removing {}", data.display())))?;
                    }
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn boot_on_free_ports(&mut self) -> Result<(), TestbedError> {
        self.ports = Ports { etcd_client: free_port()?, etcd_peer: free_port()?, apiserver: free_port()? };
        self.server_url = format!("https://127.0.0.1:{}", self.ports.apiserver);
        self.kubeconfig = kubeconfig(&self.name, &self.server_url, &self.ca_pem, &self.token);
        let yaml = gardener_extension_cri_resmgr::yaml::to_string(&self.kubeconfig)
            .map_err(|e| TestbedError::Kubeconfig(e.to_string()))?;
        std::fs::write(&self.kubeconfig_path, yaml).map_err(io_err("writing kubeconfig"))?;
        self.start_etcd().await?;
        self.start_apiserver().await?;
        self.wait_for_system_namespaces().await
    }

    /// Waits until the apiserver's own controller has created the namespaces every cluster has (`default`,
    /// `kube-system`): `/readyz` can answer before it did, and a write into one of them would then be refused.
    async fn wait_for_system_namespaces(&self) -> Result<(), TestbedError> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client().await?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let default = namespaces.get_opt(SYSTEM_NAMESPACES[0]).await?;
            let system = namespaces.get_opt(SYSTEM_NAMESPACES[1]).await?;
            if default.is_some() && system.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready("the apiserver's system namespaces", &self.dir.join("kube-apiserver.log")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn tokens_file(&self) -> PathBuf {
        self.dir.join("tokens.csv")
    }

    fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.etcd_client)
    }

    fn binaries(&self) -> Result<&Binaries, TestbedError> {
        self.binaries.as_ref().ok_or(TestbedError::KeeperGone)
    }

    /// Starts etcd on the plane's ports with its data dir (kept from an earlier run, if any) and waits until it
    /// answers its health check. Does nothing when etcd runs.
    pub async fn start_etcd(&mut self) -> Result<(), TestbedError> {
        if self.etcd_pid.is_some() {
            return Ok(());
        }
        let etcd_url = self.etcd_url();
        let etcd_peer_url = format!("http://127.0.0.1:{}", self.ports.etcd_peer);
        let etcd_log = self.dir.join("etcd.log");
        let mut etcd = Command::new(&self.binaries()?.etcd);
        etcd.arg("--name=testbed")
            .arg(format!("--data-dir={}", self.dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={etcd_peer_url}"))
            .arg(format!("--initial-cluster=testbed={etcd_peer_url}"))
            .arg(format!("--max-request-bytes={ETCD_MAX_REQUEST_BYTES}"))
            .arg("--log-level=warn");
        let etcd_pid = self.spawn("etcd", StopOrder::Etcd, etcd, &etcd_log)?;
        self.etcd_pid = Some(etcd_pid);
        wait_for_etcd(&etcd_url, etcd_pid, &etcd_log).await
    }

    /// Starts kube-apiserver on the plane's port and waits until it is ready (`/readyz`, which includes its
    /// storage: etcd must run). Does nothing when the apiserver runs.
    pub async fn start_apiserver(&mut self) -> Result<(), TestbedError> {
        if self.apiserver_pid.is_some() {
            return Ok(());
        }
        let tls = TlsFiles::in_dir(&self.dir, &self.ca_pem);
        let apiserver_port = self.ports.apiserver;
        let apiserver_log = self.dir.join("kube-apiserver.log");
        let mut apiserver = Command::new(&self.binaries()?.kube_apiserver);
        apiserver
            .arg(format!("--etcd-servers={}", self.etcd_url()))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={apiserver_port}"))
            // 1.20 still opens an insecure port (8080) unless told not to; it would clash between control planes.
            .arg("--insecure-port=0")
            .arg(format!("--tls-cert-file={}", tls.cert.display()))
            .arg(format!("--tls-private-key-file={}", tls.key.display()))
            .arg(format!("--client-ca-file={}", tls.ca.display()))
            .arg(format!("--token-auth-file={}", self.tokens_file().display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-key-file={}", tls.sa_public.display()))
            .arg(format!("--service-account-signing-key-file={}", tls.sa_private.display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--allow-privileged=true")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg("--v=1");
        let apiserver_pid = self.spawn("kube-apiserver", StopOrder::Apiserver, apiserver, &apiserver_log)?;
        self.apiserver_pid = Some(apiserver_pid);

        let probe = ReadinessProbe::new(apiserver_port, &self.ca_pem, &self.token)?;
        wait_until(START_TIMEOUT, || async {
            if !process_alive(apiserver_pid) {
                return Some(Err(exited("kube-apiserver", &apiserver_log)));
            }
            probe.ready().await.then_some(Ok(()))
        })
        .await
        .unwrap_or_else(|| Err(not_ready("kube-apiserver", &apiserver_log)))
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after a grace period) and waits until it has exited; clients get
    /// refused connections on its port until [`ControlPlane::start_apiserver`].
    pub async fn stop_apiserver(&mut self) -> Result<(), TestbedError> {
        match self.apiserver_pid.take() {
            Some(pid) => self.terminate(pid).await,
            None => Ok(()),
        }
    }

    /// Stops etcd and waits until it has exited; its data dir stays for [`ControlPlane::start_etcd`]. A running
    /// apiserver keeps serving what needs no storage and fails (or blocks) everything else meanwhile.
    pub async fn stop_etcd(&mut self) -> Result<(), TestbedError> {
        match self.etcd_pid.take() {
            Some(pid) => self.terminate(pid).await,
            None => Ok(()),
        }
    }

    /// Stops and starts kube-apiserver, as a seed's apiserver rolls.
    pub async fn restart_apiserver(&mut self) -> Result<(), TestbedError> {
        self.stop_apiserver().await?;
        self.start_apiserver().await
    }

    /// Stops and starts etcd with its data, as an etcd member restarts.
    pub async fn restart_etcd(&mut self) -> Result<(), TestbedError> {
        self.stop_etcd().await?;
        self.start_etcd().await
    }

    async fn terminate(&mut self, pid: u32) -> Result<(), TestbedError> {
        let keeper = self.keeper.as_ref().ok_or(TestbedError::KeeperGone)?;
        let done = keeper.terminate(pid)?;
        tokio::task::spawn_blocking(move || done.recv()).await.ok().and_then(Result::ok).ok_or(TestbedError::KeeperGone)
    }

    fn spawn(
        &mut self,
        what: &'static str,
        order: StopOrder,
        mut command: Command,
        log: &Path,
    ) -> Result<u32, TestbedError> {
        // Appended: a restarted process keeps the log of its earlier runs.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err(format!("creating {}", log.display())))?;
        let err = out.try_clone().map_err(io_err(format!("opening {}", log.display())))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err);
        let keeper = self.keeper.as_ref().ok_or(TestbedError::KeeperGone)?;
        keeper.spawn(command, order).map_err(io_err(format!("starting {what}")))
    }

    fn write_certificates(&self) -> Result<TlsFiles, TestbedError> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "cri-resmgr-testbed-ca");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, &ca_key);

        let server_key = rcgen::KeyPair::generate()?;
        let mut server_params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        server_params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver");
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let sa_key = rcgen::KeyPair::generate()?;
        let files = TlsFiles::in_dir(&self.dir, &ca_cert.pem());
        for (path, content) in [
            (&files.ca, ca_cert.pem()),
            (&files.cert, server_cert.pem()),
            (&files.key, server_key.serialize_pem()),
            (&files.sa_public, sa_key.public_key_pem()),
            (&files.sa_private, sa_key.serialize_pem()),
        ] {
            std::fs::write(path, content).map_err(io_err(format!("writing {}", path.display())))?;
        }
        Ok(files)
    }

    /// The kubeconfig file (admin token, CA data) for kubectl and for the extension.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Process ids of etcd and kube-apiserver (those that run).
    pub fn pids(&self) -> Vec<u32> {
        self.etcd_pid.into_iter().chain(self.apiserver_pid).collect()
    }

    /// The name given at start (the kubeconfig's context).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The control plane's working directory (data, logs, certificates).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client authenticated as cluster admin.
    pub async fn client(&self) -> Result<kube::Client, TestbedError> {
        let config = kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &KubeConfigOptions::default())
            .await
            .map_err(|e| TestbedError::Kubeconfig(e.to_string()))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// Stops kube-apiserver, then etcd (each: SIGTERM, then SIGKILL after a grace period), and removes a temporary
    /// work dir.
    pub fn stop(&mut self) {
        if let Some(keeper) = self.keeper.take() {
            keeper.stop();
        }
        self.etcd_pid = None;
        self.apiserver_pid = None;
        if self.remove_dir_on_stop {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates the given CRDs (or replaces their spec) and waits until each is established.
pub async fn install_crds(client: &kube::Client, crds: Vec<CustomResourceDefinition>) -> Result<(), TestbedError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.get_opt(&name).await? {
            None => {
                api.create(&PostParams::default(), &crd).await?;
            }
            Some(existing) => {
                let mut updated = crd.clone();
                updated.metadata.resource_version = existing.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &updated).await?;
            }
        }
        let established = wait_until(CRD_ESTABLISH_TIMEOUT, || {
            let api = api.clone();
            let name = name.clone();
            async move {
                let crd = api.get(&name).await.ok()?;
                let conditions = crd.status?.conditions?;
                conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
            }
        })
        .await;
        if established.is_none() {
            return Err(TestbedError::CrdNotEstablished { name });
        }
    }
    Ok(())
}

/// Asks the apiserver's `/readyz` over TLS directly rather than through a kube client, whose request layer logs
/// every refused connection and 500 of a starting apiserver as an error.
struct ReadinessProbe {
    port: u16,
    token: String,
    connector: tokio_rustls::TlsConnector,
}

impl ReadinessProbe {
    fn new(port: u16, ca_pem: &str, token: &str) -> Result<Self, TestbedError> {
        let config = gardener_extension_cri_resmgr::runtime::tls::certs::client_config_trusting(ca_pem.as_bytes())
            .map_err(|e| TestbedError::Kubeconfig(format!("control-plane CA: {e}")))?;
        Ok(ReadinessProbe {
            port,
            token: token.to_string(),
            connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        })
    }

    async fn ready(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(stream) = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await else {
            return false;
        };
        let Ok(name) = rustls::pki_types::ServerName::try_from("127.0.0.1") else { return false };
        let Ok(mut tls) = self.connector.connect(name, stream).await else { return false };
        let request =
            format!("GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n", self.token);
        if tls.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = Vec::new();
        // The apiserver closes HTTP/1.0 connections after the response; a TLS close without notify is fine here.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
    }
}

struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    sa_public: PathBuf,
    sa_private: PathBuf,
    ca_pem: String,
}

impl TlsFiles {
    fn in_dir(dir: &Path, ca_pem: &str) -> Self {
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("apiserver.crt"),
            key: dir.join("apiserver.key"),
            sa_public: dir.join("sa.pub"),
            sa_private: dir.join("sa.key"),
            ca_pem: ca_pem.to_string(),
        }
    }
}

fn kubeconfig(name: &str, server: &str, ca_pem: &str, token: &str) -> Kubeconfig {
    use base64::Engine as _;
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: name.to_string(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority_data: Some(encode(ca_pem.as_bytes())),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: name.to_string(),
            auth_info: Some(AuthInfo { token: Some(token.to_string().into()), ..AuthInfo::default() }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: name.to_string(),
            context: Some(Context { cluster: name.to_string(), user: Some(name.to_string()), ..Context::default() }),
            ..NamedContext::default()
        }],
        current_context: Some(name.to_string()),
        ..Kubeconfig::default()
    }
}

fn random_token() -> Result<String, TestbedError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn unique_suffix() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    nanos ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
///
/// No port is handed out twice in a process: the kernel may give a port that was just probed and released to the
/// next probe, and tests of one process (or the planes of one landscape) choose their ports at the same time.
pub fn free_port() -> Result<u16, TestbedError> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..PORT_PROBES {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("finding a free port"))?;
        let port = listener.local_addr().map_err(io_err("finding a free port"))?.port();
        if GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return Ok(port);
        }
    }
    Err(io_err(format!("finding a free port not handed out before in {PORT_PROBES} probes"))(std::io::Error::from(
        std::io::ErrorKind::AddrInUse,
    )))
}

/// How often [`free_port`] probes before it gives up.
const PORT_PROBES: usize = 100;

async fn wait_for_etcd(url: &str, pid: u32, log: &Path) -> Result<(), TestbedError> {
    let address = url.trim_start_matches("http://").to_string();
    wait_until(START_TIMEOUT, || {
        let address = address.clone();
        async move {
            if !process_alive(pid) {
                return Some(Err(exited("etcd", log)));
            }
            let mut stream = tokio::net::TcpStream::connect(&address).await.ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let request = format!("GET /health HTTP/1.0\r\nHost: {address}\r\n\r\n");
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await.ok()?;
            response.contains("\"health\":\"true\"").then_some(Ok(()))
        }
    })
    .await
    .unwrap_or_else(|| Err(not_ready("etcd", log)))
}

/// Polls `check` every 200 ms until it yields a value or `timeout` passes.
async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn not_ready(what: &'static str, log: &Path) -> TestbedError {
    TestbedError::NotReady { what, timeout: START_TIMEOUT, log: log.to_path_buf(), tail: log_tail(log) }
}

fn exited(what: &'static str, log: &Path) -> TestbedError {
    TestbedError::Exited { what, status: "process gone".to_string(), log: log.to_path_buf(), tail: log_tail(log) }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).is_some_and(|s| s != 'Z'),
        Err(_) => false,
    }
}

enum KeeperRequest {
    Spawn(Command, StopOrder, mpsc::Sender<std::io::Result<u32>>),
    Terminate(u32, mpsc::Sender<()>),
    Stop(mpsc::Sender<()>),
}

/// The thread that forks the control-plane processes and owns their handles (see the module docs for why).
struct Keeper {
    requests: mpsc::Sender<KeeperRequest>,
}

impl Keeper {
    fn start() -> Self {
        let (requests, inbox) = mpsc::channel::<KeeperRequest>();
        std::thread::Builder::new()
            .name("control-plane-keeper".to_string())
            .spawn(move || {
                let mut children: Vec<(StopOrder, Child)> = Vec::new();
                while let Ok(request) = inbox.recv() {
                    match request {
                        KeeperRequest::Spawn(mut command, order, reply) => {
                            let result = spawn_tied_to_this_thread(&mut command).map(|child| {
                                let pid = child.id();
                                children.push((order, child));
                                pid
                            });
                            let _ = reply.send(result);
                        }
                        KeeperRequest::Terminate(pid, reply) => {
                            let (chosen, kept) = children.drain(..).partition(|(_, child)| child.id() == pid);
                            children = kept;
                            terminate_all(&mut in_stop_order(chosen));
                            let _ = reply.send(());
                        }
                        KeeperRequest::Stop(reply) => {
                            terminate_all(&mut in_stop_order(std::mem::take(&mut children)));
                            let _ = reply.send(());
                            return;
                        }
                    }
                }
                // The owner vanished without asking (e.g. leaked): still do not leave processes behind.
                terminate_all(&mut in_stop_order(children));
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the control-plane keeper thread"));
        Keeper { requests }
    }

    fn spawn(&self, command: Command, order: StopOrder) -> std::io::Result<u32> {
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(KeeperRequest::Spawn(command, order, reply))
            .map_err(|_| std::io::Error::other("control-plane keeper thread is gone"))?;
        answer.recv().map_err(|_| std::io::Error::other("control-plane keeper thread is gone"))?
    }

    /// Asks the keeper to stop one child; the answer comes when it has exited.
    fn terminate(&self, pid: u32) -> Result<mpsc::Receiver<()>, TestbedError> {
        let (reply, done) = mpsc::channel();
        self.requests.send(KeeperRequest::Terminate(pid, reply)).map_err(|_| TestbedError::KeeperGone)?;
        Ok(done)
    }

    fn stop(self) {
        let (reply, done) = mpsc::channel();
        if self.requests.send(KeeperRequest::Stop(reply)).is_ok() {
            let _ = done.recv();
        }
    }
}

fn spawn_tied_to_this_thread(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls async-signal-safe functions.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Our own process group, so a Ctrl-C in `make dev`'s terminal reaches us first and we stop cleanly.
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// The children ordered for [`terminate_all`]: a restarted etcd is started after the apiserver, yet must still be
/// stopped after it.
fn in_stop_order(mut children: Vec<(StopOrder, Child)>) -> Vec<Child> {
    // Stable: children of one kind keep their start order.
    children.sort_by_key(|(order, _)| *order);
    children.into_iter().map(|(_, child)| child).collect()
}

/// Stops the children in the reverse order of their start, each completely (SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]) before the next is asked: kube-apiserver goes first and etcd only once it has exited, because an
/// apiserver whose etcd vanished under it keeps retrying its storage until its grace period runs out, instead of
/// stopping in about a second.
fn terminate_all(children: &mut Vec<Child>) {
    while let Some(mut child) = children.pop() {
        // SAFETY: plain kill(2) on a pid we own and have not yet reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_and_distinct() {
        let a = random_token().expect("token");
        let b = random_token().expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn missing_binary_names_the_installer_and_the_variable() {
        let err = TestbedError::MissingBinary { what: "etcd", path: PathBuf::from("/nope/etcd"), env: ENV_ETCD };
        let text = err.to_string();
        assert!(text.contains(INSTALLER), "{text}");
        assert!(text.contains("$ETCD"), "{text}");
    }

    /// A stand-in for a control-plane process: once it has set up its SIGTERM handler it creates `ready`; on
    /// SIGTERM it waits `linger` (as kube-apiserver drains its requests), appends `name` to `log`, and exits.
    fn stand_in(dir: &Path, name: &str, linger: &str) -> Child {
        let ready = dir.join(format!("{name}.ready"));
        let script = format!(
            "trap 'sleep {linger}; echo {name} >> \"$1\"; exit 0' TERM; touch \"$2\"; while :; do sleep 0.02; done"
        );
        let child = Command::new("sh")
            .args(["-c", &script, "stand-in"])
            .arg(dir.join("stopped"))
            .arg(&ready)
            .spawn()
            .expect("spawn sh");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "{name} stand-in did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    #[test]
    fn the_apiserver_is_stopped_before_etcd_is_asked_to_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started in this order, as `boot` does; etcd would stop at once, the apiserver takes a moment.
        let mut children = vec![stand_in(dir.path(), "etcd", "0"), stand_in(dir.path(), "apiserver", "0.3")];
        terminate_all(&mut children);
        assert!(children.is_empty());
        let order = std::fs::read_to_string(dir.path().join("stopped")).expect("the stand-ins logged their stop");
        assert_eq!(order, "apiserver\netcd\n", "etcd must get SIGTERM only after the apiserver has exited");
    }

    #[test]
    fn a_restarted_etcd_is_still_stopped_after_the_apiserver() {
        let dir = tempfile::tempdir().expect("tempdir");
        // etcd restarted: it now comes after the apiserver in start order.
        let children = vec![
            (StopOrder::Apiserver, stand_in(dir.path(), "apiserver", "0.3")),
            (StopOrder::Etcd, stand_in(dir.path(), "etcd", "0")),
        ];
        terminate_all(&mut in_stop_order(children));
        let order = std::fs::read_to_string(dir.path().join("stopped")).expect("the stand-ins logged their stop");
        assert_eq!(order, "apiserver\netcd\n");
    }

    #[test]
    fn process_alive_sees_self_and_not_a_reaped_child() {
        assert!(process_alive(std::process::id()));
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
    }
}
