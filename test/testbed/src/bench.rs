//! `make bench`: the release build of the extension against the limit, on the test bed's control plane.
//!
//! 1. Webhooks: the OSC webhook (served by `controller`, reading a Cluster and an Extension of the test bed) and the
//!    Shoot validating webhook (served by `admission`) are each driven at 1, 16 and 64 keep-alive TLS connections
//!    with a realistic review; in the same run, alternating with ours, a minimal rustls server ([`load::serve_fixed`],
//!    another process with the same certificate) answers the same request with the bytes ours answered. Printed:
//!    p50/p99/max, req/s, ours/limit ratios, and the server's peak RSS (`VmHWM`).
//! 2. Controller scale: a fresh `controller` process; 500 shoot namespaces with Cluster and Extension are created,
//!    the time until every Extension is `Succeeded` is taken; then the base-configs ConfigMap changes and the time
//!    until every shoot's ManagedResource carries the new configuration; the controller's peak RSS.
//!
//! - [`stats`]: percentiles, ratios, `/proc` memory fields (pure).
//! - [`load`]: the load generator and the limit server.

pub mod cpus;
pub mod load;
pub mod stats;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpus::CpuSet;
use futures::{StreamExt as _, TryStreamExt as _};
use gardener_extension_cri_resmgr::apis::common::LastOperationState;
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension};
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    ANNOTATION_TIMESTAMP, BASE_CONFIGS_CONFIG_MAP, EXTENSION_TYPE, LABEL_WORKER_POOL, SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::runtime::registration::{PATH_MUTATE_OSC, PATH_VALIDATE_SHOOT};
use gardener_extension_cri_resmgr::runtime::tls::certs::{CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use self::load::Target;
use self::stats::{Ratios, Summary, mib, ms};
use crate::control_plane::{self, ControlPlane, WorkDir};

/// The extension's namespace in the bench (base configs, Leases).
const BENCH_EXTENSION_NAMESPACE: &str = "bench-extension";
/// The shoot namespace whose OSC the webhook bench mutates.
const BENCH_OSC_NAMESPACE: &str = "shoot--bench--osc";
/// Prefix of the scale run's shoot namespaces.
const SCALE_NAMESPACE_PREFIX: &str = "shoot--bench--scale-";
/// The worker pool of `examples/10-cluster.yaml`, which the bench's shoot namespaces get.
const BENCH_WORKER_POOL: &str = "cpu-worker";
/// How many worker pools the Shoot of the Shoot webhook bench has.
const SHOOT_POOLS: usize = 4;
/// The OSC of the OSC webhook bench is padded with Gardener-like files up to this size.
const OSC_TARGET_BYTES: usize = 10 * 1024;

/// The bench reviews' uids: this and [`BENCH_COUNTER_DIGITS`] hex digits (a UUID's shape).
const BENCH_UID_PREFIX: &str = "0b8e2c4c-1b5e-4a8e-9c61-";
/// How many hex digits of a bench review are a request's own number.
const BENCH_COUNTER_DIGITS: usize = 12;
/// The bench OSC's `gardener.cloud/timestamp` up to its fraction of a second, which [`Freshness::WrittenAgain`]
/// fills in.
const BENCH_TIMESTAMP_PREFIX: &str = "2026-12-01T15:38:20.";
/// An annotation of the bench reviews' objects that no webhook reads, which the load generator may fill with each
/// request's number to make every review new.
pub const BENCH_REQUEST_ANNOTATION: &str = "bench.cri-resmgr.extensions.gardener.cloud/request";

/// Settings of a bench run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// The release build of the extension.
    #[arg(long, default_value = "target/release/gardener-extension-cri-resmgr")]
    pub server: PathBuf,
    /// Concurrent connections of each load level.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    pub connections: Vec<usize>,
    /// Measured seconds of each load level and server, per round.
    #[arg(long, default_value_t = 4)]
    pub seconds: u64,
    /// Unmeasured seconds before each measurement.
    #[arg(long, default_value_t = 1)]
    pub warmup_seconds: u64,
    /// Rounds of ours/limit alternation per level: the percentiles are taken over the requests of all rounds
    /// together, throughput and CPU per request are the rounds' means.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Shoots of the controller scale run.
    #[arg(long, default_value_t = 500)]
    pub shoots: usize,
    /// Skip the webhook part.
    #[arg(long)]
    pub no_webhooks: bool,
    /// Skip the controller scale run.
    #[arg(long)]
    pub no_scale: bool,
    /// The scale run's controller `--max-concurrent-reconciles` (its own default when not given).
    #[arg(long)]
    pub max_concurrent_reconciles: Option<usize>,
    /// Only reviews that come again (`again`) or only reviews seen for the first time (`first-seen`); both when not
    /// given (e.g. to profile one path alone).
    #[arg(long, value_enum)]
    pub only: Option<Reviews>,
    /// Where the webhook bench's servers and load generator run: `split` puts the servers (ours and the limit alike)
    /// on the upper half of the CPUs and the load generator on the rest, as the apiserver calls from other CPUs;
    /// `shared` runs all on all. The scale run always shares them (the control plane works there too).
    #[arg(long, value_enum, default_value_t = CpuPlacement::Split)]
    pub cpus: CpuPlacement,
    /// A command the servers run under, e.g. `--server-wrapper=valgrind,--tool=callgrind` to profile them (their
    /// figures then say nothing about speed or memory).
    #[arg(long, value_delimiter = ',')]
    pub server_wrapper: Vec<String>,
}

/// Where the webhook bench's servers and load generator run (see [`cpus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CpuPlacement {
    /// The servers on one part of the CPUs, the load generator on the other.
    Split,
    /// Everything on every CPU.
    Shared,
}

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Testbed(#[from] control_plane::TestbedError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let context = context.into();
    move |source| BenchError::Io { context, source }
}

/// Runs the bench and prints its report on stdout.
pub async fn run(options: BenchOptions) -> Result<(), BenchError> {
    let server = std::fs::canonicalize(&options.server)
        .map_err(io_err(format!("the release build {} (make bench builds it)", options.server.display())))?;
    let plane = ControlPlane::start(WorkDir::Temporary).await?;
    let client = plane.client().await?;
    control_plane::install_crds(&client, crate::crds::all().map_err(control_plane::TestbedError::from)?).await?;
    ensure_namespace(&client, BENCH_EXTENSION_NAMESPACE).await?;
    ensure_namespace(&client, BENCH_OSC_NAMESPACE).await?;
    create_shoot(&client, BENCH_OSC_NAMESPACE).await?;
    println!("# make bench ({})\n", describe_machine());
    if !options.no_webhooks {
        bench_webhooks(&options, &plane, &server).await?;
    }
    if !options.no_scale {
        bench_scale(&options, &plane, &client, &server).await?;
    }
    Ok(())
}

fn describe_machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default();
    format!("{cpus} CPUs, {model}")
}

/// A process of the extension's release build, stopped (SIGTERM, then killed) when dropped.
struct ServerProcess {
    child: tokio::process::Child,
    pid: u32,
}

impl ServerProcess {
    /// The extension's release build with `args`, under the options' wrapper if any.
    fn extension(
        options: &BenchOptions,
        server: &Path,
        args: &[String],
        plane: &ControlPlane,
        log: &Path,
        cpus: Option<CpuSet>,
    ) -> Result<ServerProcess, BenchError> {
        match options.server_wrapper.split_first() {
            None => ServerProcess::spawn(server, args, plane.kubeconfig_path(), log, cpus),
            Some((wrapper, wrapper_args)) => {
                let mut all = wrapper_args.to_vec();
                all.push(server.display().to_string());
                all.extend_from_slice(args);
                ServerProcess::spawn(Path::new(wrapper), &all, plane.kubeconfig_path(), log, cpus)
            }
        }
    }

    /// `program` with `args`, confined to `cpus` when given.
    fn spawn(
        program: &Path,
        args: &[String],
        kubeconfig: &Path,
        log: &Path,
        cpus: Option<CpuSet>,
    ) -> Result<ServerProcess, BenchError> {
        let log_file = std::fs::File::create(log).map_err(io_err(format!("creating {}", log.display())))?;
        let err_file = log_file.try_clone().map_err(io_err("duplicating the log file"))?;
        let mut command = tokio::process::Command::new(program);
        if let Some(cpus) = cpus {
            // SAFETY: the hook only makes the async-signal-safe sched_setaffinity call.
            unsafe {
                command.pre_exec(move || cpus.apply_in_child());
            }
        }
        let child = command
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io_err(format!("starting {}", program.display())))?;
        let pid = child.id().ok_or_else(|| BenchError::Setup("the server exited at once".into()))?;
        Ok(ServerProcess { child, pid })
    }

    fn peak_rss(&self) -> u64 {
        stats::peak_rss_bytes(self.pid).unwrap_or_default()
    }

    async fn stop(mut self) {
        // SAFETY: kill(2) with a pid this process started and still owns (the child is not reaped yet).
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// The arguments of a webhook server of the release build on `port`, certificates generated into `cert_dir`.
fn webhook_args(port: u16, cert_dir: &Path) -> Vec<String> {
    vec![
        format!("--webhook-bind-address=127.0.0.1:{port}"),
        format!("--webhook-cert-dir={}", cert_dir.display()),
        "--generate-certs-for=127.0.0.1".into(),
        "--webhook-config-mode=url".into(),
        format!("--webhook-config-url=127.0.0.1:{port}"),
        format!("--webhook-config-namespace={BENCH_EXTENSION_NAMESPACE}"),
    ]
}

fn controller_args(port: u16, cert_dir: &Path) -> Vec<String> {
    let mut args = vec![
        "--log-format=text".to_string(),
        "controller".into(),
        format!("--configmap-namespace={BENCH_EXTENSION_NAMESPACE}"),
        "--leader-election=false".into(),
    ];
    args.extend(webhook_args(port, cert_dir));
    args
}

fn admission_args(port: u16, cert_dir: &Path) -> Vec<String> {
    let mut args = vec!["--log-format=text".to_string(), "admission".into()];
    args.extend(webhook_args(port, cert_dir));
    args
}

/// A target on 127.0.0.1:`port` trusting the CA in `cert_dir` (waits until the server wrote it).
pub async fn target(port: u16, cert_dir: &Path, path: &str, body: Bytes) -> Result<Target, BenchError> {
    let ca_file = cert_dir.join(CA_CERT_FILE);
    let deadline = Instant::now() + Duration::from_secs(60);
    let ca = loop {
        match std::fs::read(&ca_file) {
            Ok(ca) if !ca.is_empty() => break ca,
            _ if Instant::now() > deadline => {
                return Err(BenchError::Setup(format!("no {} after 60 s", ca_file.display())));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let tls =
        gardener_extension_cri_resmgr::runtime::tls::certs::client_config_trusting(&ca).map_err(BenchError::Setup)?;
    let server_name = rustls::pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    let fresh = uid_parts(&body)?;
    let target = Target::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), server_name, Arc::new(tls), path, body);
    Ok(Target { fresh, ..target })
}

/// The uid of a review, which every request fills in anew; nothing in an empty body (a GET of `/readyz`).
fn uid_parts(body: &[u8]) -> Result<Vec<Range<usize>>, BenchError> {
    if body.is_empty() { Ok(Vec::new()) } else { fresh_parts(body, Freshness::Uid) }
}

/// The cases of reviews the webhook bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Reviews {
    /// Reviews that come again with a new uid.
    Again,
    /// Reviews the server has not seen.
    FirstSeen,
    /// OSC reviews as gardenlet's writes of an unchanged OSC send them: a new uid, `gardener.cloud/timestamp` and
    /// `resourceVersion` each.
    WrittenAgain,
}

/// What of a bench review ([`review`]) is new in every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The uid, as in every review the apiserver sends.
    Uid,
    /// The uid and the object's [`BENCH_REQUEST_ANNOTATION`]: every review is one the server has not seen.
    EveryReview,
    /// The uid, the object's `gardener.cloud/timestamp` and its `resourceVersion` (an OSC review by [`osc_review`]).
    WrittenAgain,
}

/// The parts of `body` (made by [`review`]) that are new in every request; an error when one is not in `body` (the
/// bench would measure another case than it says).
pub fn fresh_parts(body: &[u8], freshness: Freshness) -> Result<Vec<Range<usize>>, BenchError> {
    let after = |marker: &str| -> Result<Range<usize>, BenchError> {
        let bytes = marker.as_bytes();
        let at = body.windows(bytes.len()).position(|window| window == bytes).ok_or_else(|| {
            BenchError::Setup(format!("the bench review has no {marker:?} to make each request's own"))
        })? + bytes.len();
        Ok(at..at + BENCH_COUNTER_DIGITS)
    };
    let mut parts = vec![after(BENCH_UID_PREFIX)?];
    match freshness {
        Freshness::Uid => {}
        Freshness::EveryReview => parts.push(after(&format!("\"{BENCH_REQUEST_ANNOTATION}\":\""))?),
        Freshness::WrittenAgain => {
            parts.push(after(&format!("\"{ANNOTATION_TIMESTAMP}\":\"{BENCH_TIMESTAMP_PREFIX}"))?);
            parts.push(after("\"resourceVersion\":\"")?);
        }
    }
    Ok(parts)
}

/// Waits until `/readyz` answers 200 (for the controller: its stores are synced).
async fn wait_ready(target: &Target, what: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(status) = target.get("/readyz").await
            && status.is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!("the {what} was not ready within 90 s")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where and how the limit server starts: with ours' certificate (`cert_dir`), its files in `work`, on the servers'
/// CPUs when they are split off.
#[derive(Clone, Copy)]
struct LimitSetup<'a> {
    cert_dir: &'a Path,
    work: &'a Path,
    cpus: Option<CpuSet>,
}

/// The limit server: this binary's `limit-server` command with the same certificate, answering `response`.
async fn start_limit(setup: LimitSetup<'_>, response: &Bytes) -> Result<(ServerProcess, u16), BenchError> {
    let LimitSetup { cert_dir, work, cpus } = setup;
    let port = control_plane::free_port()?;
    let response_file = work.join("limit-response.json");
    std::fs::write(&response_file, response).map_err(io_err("writing the limit's response"))?;
    let args = vec![
        "limit-server".to_string(),
        format!("--listen=127.0.0.1:{port}"),
        format!("--cert={}", cert_dir.join(TLS_CERT_FILE).display()),
        format!("--key={}", cert_dir.join(TLS_KEY_FILE).display()),
        format!("--response={}", response_file.display()),
    ];
    let me = std::env::current_exe().map_err(io_err("locating the bench binary"))?;
    let process = ServerProcess::spawn(&me, &args, Path::new("/dev/null"), &work.join("limit.log"), cpus)?;
    Ok((process, port))
}

/// One webhook against the limit at every level, in the cases of [`Reviews`]: reviews that come again (each with a
/// uid of its own, as the apiserver sends them: a write repeated), reviews the server has not seen (each also
/// differs in an annotation of its object), which it must decide afresh, and with `written_again` gardenlet's
/// writes of an unchanged OSC. Prints a table for each and returns nothing but errors.
async fn compare(
    options: &BenchOptions,
    title: &str,
    written_again: bool,
    ours: &Target,
    ours_process: &ServerProcess,
    limit_setup: LimitSetup<'_>,
) -> Result<(), BenchError> {
    let wanted = |reviews| options.only.is_none_or(|only| only == reviews);
    let cases = [
        (Reviews::Again, Freshness::Uid, "Reviews that come again (a new uid each, the rest as before)"),
        (
            Reviews::FirstSeen,
            Freshness::EveryReview,
            "Reviews seen for the first time (each one differs in its object too)",
        ),
        (
            Reviews::WrittenAgain,
            Freshness::WrittenAgain,
            "Reviews of gardenlet's writes of an unchanged OSC (a new uid, timestamp and resourceVersion each)",
        ),
    ];
    let mut measured = Vec::new();
    for (reviews, freshness, heading) in cases {
        if wanted(reviews) && (reviews != Reviews::WrittenAgain || written_again) {
            measured.push((heading, Arc::new(Target { fresh: fresh_parts(&ours.body, freshness)?, ..ours.clone() })));
        }
    }
    if measured.is_empty() {
        return Ok(()); // nothing of this webhook to measure
    }
    let (status, response) = ours.once().await?;
    if !status.is_success() {
        return Err(BenchError::Setup(format!(
            "{title}: the server answered {status}: {}",
            String::from_utf8_lossy(&response)
        )));
    }
    let answer: Value = serde_json::from_slice(&response).map_err(|e| BenchError::Setup(format!("{title}: {e}")))?;
    let allowed = answer["response"]["allowed"].as_bool() == Some(true);
    let patched = answer["response"]["patch"].is_string();
    let (limit_process, limit_port) = start_limit(limit_setup, &response).await?;
    let limit = Target { address: SocketAddr::from((Ipv4Addr::LOCALHOST, limit_port)), ..ours.clone() };
    wait_ready(&limit, "limit server").await?;
    println!(
        "## {title}\n\nrequest {} bytes, response {} bytes (allowed: {allowed}, patch: {patched})\n",
        ours.body.len(),
        response.len()
    );
    let limit = Arc::new(limit);
    let (warmup, window) = (Duration::from_secs(options.warmup_seconds), Duration::from_secs(options.seconds));
    let mut levels = Vec::new();
    for &connections in &options.connections {
        let (mut case_runs, mut limit_runs) = (vec![Vec::new(); measured.len()], Vec::new());
        for _ in 0..options.rounds.max(1) {
            limit_runs.push(load::run(&limit, connections, warmup, window, Some(limit_process.pid)).await?);
            for ((_, target), runs) in measured.iter().zip(&mut case_runs) {
                runs.push(load::run(target, connections, warmup, window, Some(ours_process.pid)).await?);
            }
        }
        levels.push((
            connections,
            case_runs.iter().map(|runs| Summary::merged(runs)).collect::<Vec<_>>(),
            Summary::merged(&limit_runs),
        ));
    }
    for (case, (heading, _)) in measured.iter().enumerate() {
        println!("### {heading}\n");
        print_table(levels.iter().map(|(connections, runs, limit)| (*connections, &runs[case], limit)));
        println!();
    }
    println!("peak RSS: ours {}, limit {}", mib(ours_process.peak_rss()), mib(limit_process.peak_rss()));
    println!(
        "for reference: decoding this request once into a JSON tree (serde_json::Value) takes {} µs of CPU in \
         this process\n",
        micros(Some(json_decode_time(&ours.body)))
    );
    limit_process.stop().await;
    Ok(())
}

/// One table of ours against the limit, a row per level.
fn print_table<'a>(rows: impl Iterator<Item = (usize, &'a Summary, &'a Summary)>) {
    println!(
        "| connections | ours req/s | limit req/s | throughput ours/limit | ours p50 / p99 / max ms | limit p50 / p99 / max ms | p99 ours/limit | server CPU µs/request ours / limit | errors |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (connections, o, l) in rows {
        let ratios = Ratios::of(o, l);
        println!(
            "| {connections} | {:.0} | {:.0} | {:.2} | {} / {} / {} | {} / {} / {} | {:.2}× | {} / {} | {} |",
            o.requests_per_second,
            l.requests_per_second,
            ratios.throughput,
            ms(o.p50),
            ms(o.p99),
            ms(o.max),
            ms(l.p50),
            ms(l.p99),
            ms(l.max),
            ratios.p99,
            micros(o.server_cpu_per_request),
            micros(l.server_cpu_per_request),
            o.errors + l.errors,
        );
    }
}

/// How long one decoding of `body` into a `serde_json::Value` takes (the median of many): a reference for the
/// per-request cost of a webhook that reads its request, next to the limit's, which does not read it.
fn json_decode_time(body: &[u8]) -> Duration {
    const SAMPLES: usize = 501;
    let mut times: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            let decoded = serde_json::from_slice::<Value>(std::hint::black_box(body));
            drop(std::hint::black_box(decoded));
            started.elapsed()
        })
        .collect();
    times.sort_unstable();
    times[SAMPLES / 2]
}

/// A CPU time per request in microseconds, or `?` when it could not be read.
fn micros(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "?".to_owned(), |d| format!("{:.0}", d.as_secs_f64() * 1e6))
}

async fn bench_webhooks(options: &BenchOptions, plane: &ControlPlane, server: &Path) -> Result<(), BenchError> {
    let work = plane.dir().join("bench");
    std::fs::create_dir_all(&work).map_err(io_err("creating the bench dir"))?;
    let placement = match options.cpus {
        CpuPlacement::Split => {
            cpus::Placement::split_this_process().map_err(io_err("confining the load generator to its CPUs"))?
        }
        CpuPlacement::Shared => None,
    };
    match &placement {
        Some(placement) => println!(
            "The servers (ours and the limit) run on CPU {}, the load generator on CPU {} (`--cpus shared`: all on \
             all).\n",
            cpus::describe(&placement.servers),
            cpus::describe(&placement.load)
        ),
        None => println!("The servers and the load generator share every CPU.\n"),
    }
    let server_cpus = placement.as_ref().map(cpus::Placement::server_set);

    let port = control_plane::free_port()?;
    let cert_dir = work.join("controller-certs");
    let controller = ServerProcess::extension(
        options,
        server,
        &controller_args(port, &cert_dir),
        plane,
        &work.join("controller.log"),
        server_cpus,
    )?;
    let osc = target(port, &cert_dir, PATH_MUTATE_OSC, osc_review(BENCH_OSC_NAMESPACE)?).await?;
    wait_ready(&osc, "controller's OSC webhook").await?;
    let limit_setup = LimitSetup { cert_dir: &cert_dir, work: &work, cpus: server_cpus };
    compare(options, "OSC webhook (controller)", true, &osc, &controller, limit_setup).await?;
    controller.stop().await;

    let port = control_plane::free_port()?;
    let cert_dir = work.join("admission-certs");
    let admission = ServerProcess::extension(
        options,
        server,
        &admission_args(port, &cert_dir),
        plane,
        &work.join("admission.log"),
        server_cpus,
    )?;
    let shoot = target(port, &cert_dir, PATH_VALIDATE_SHOOT, shoot_review()?).await?;
    wait_ready(&shoot, "admission server").await?;
    let limit_setup = LimitSetup { cert_dir: &cert_dir, work: &work, cpus: server_cpus };
    compare(options, "Shoot validating webhook (admission)", false, &shoot, &admission, limit_setup).await?;
    admission.stop().await;
    drop(placement); // the bench's CPUs back for the scale run
    Ok(())
}

fn fixture(path: &str) -> Result<Value, BenchError> {
    let file = crate::repo_root().join(path);
    let text = std::fs::read_to_string(&file).map_err(io_err(format!("reading {}", file.display())))?;
    gardener_extension_cri_resmgr::yaml::from_str(&text).map_err(|e| BenchError::Setup(format!("{path}: {e}")))
}

/// The AdmissionReview the apiserver sends for a CREATE of `object`; its uid and the object's
/// [`BENCH_REQUEST_ANNOTATION`] end in [`BENCH_COUNTER_DIGITS`] zeros, which the load generator may fill in
/// ([`fresh_parts`]).
pub fn review(object: &Value, group: &str, kind: &str, resource: &str, namespace: &str) -> Bytes {
    let version = object["apiVersion"].as_str().and_then(|v| v.rsplit('/').next()).unwrap_or_default();
    let zeros = "0".repeat(BENCH_COUNTER_DIGITS);
    let mut object = object.clone();
    object["metadata"]["annotations"][BENCH_REQUEST_ANNOTATION] = json!(zeros);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("{BENCH_UID_PREFIX}{zeros}"),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "name": object["metadata"]["name"],
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:garden:gardenlet",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    });
    Bytes::from(serde_json::to_vec(&review).unwrap_or_default())
}

/// The reconcile OSC with Gardener's kubelet unit (`test/fixtures/osc/reconcile.yaml`) of the worker pool of
/// [`create_shoot`]'s Cluster in `namespace`, padded with the kind of files gardenlet adds (CA bundles, configs) to
/// about [`OSC_TARGET_BYTES`].
pub fn osc_review(namespace: &str) -> Result<Bytes, BenchError> {
    let mut osc = fixture("test/fixtures/osc/reconcile.yaml")?;
    osc["metadata"]["namespace"] = json!(namespace);
    // The pool of the bench's Cluster (`examples/10-cluster.yaml`), so that the OSC is mutated.
    osc["metadata"]["labels"][LABEL_WORKER_POOL] = json!(BENCH_WORKER_POOL);
    // What gardenlet's writes change: the timestamp it sets on every deploy, and the version it read.
    let zeros = "0".repeat(BENCH_COUNTER_DIGITS);
    osc["metadata"]["annotations"][ANNOTATION_TIMESTAMP] = json!(format!("{BENCH_TIMESTAMP_PREFIX}{zeros}Z"));
    osc["metadata"]["resourceVersion"] = json!(zeros);
    let ca_like = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM".repeat(24);
    let mut n = 0;
    while serde_json::to_vec(&osc).map_or(usize::MAX, |v| v.len()) < OSC_TARGET_BYTES {
        n += 1;
        let files = osc["spec"]["files"]
            .as_array_mut()
            .ok_or_else(|| BenchError::Setup("the OSC fixture has no files".into()))?;
        files.push(json!({
            "path": format!("/var/lib/gardener-node-agent/bench/file-{n}.crt"),
            "permissions": 0o600,
            "content": {"inline": {"encoding": "b64", "data": ca_like}}
        }));
    }
    Ok(review(&osc, "extensions.gardener.cloud", "OperatingSystemConfig", "operatingsystemconfigs", namespace))
}

/// The Shoot fixture (`test/fixtures/gardener/shoot.yaml`, cri-resmgr enabled with configs) with
/// [`SHOOT_POOLS`] worker pools.
fn shoot_review() -> Result<Bytes, BenchError> {
    let mut shoot = fixture("test/fixtures/gardener/shoot.yaml")?;
    let workers = shoot["spec"]["provider"]["workers"]
        .as_array_mut()
        .ok_or_else(|| BenchError::Setup("the Shoot fixture has no workers".into()))?;
    let template = workers.first().cloned().ok_or_else(|| BenchError::Setup("no worker".into()))?;
    while workers.len() < SHOOT_POOLS {
        let mut pool = template.clone();
        pool["name"] = json!(format!("pool-{}", workers.len() + 1));
        workers.push(pool);
    }
    let namespace = shoot["metadata"]["namespace"].as_str().unwrap_or("garden-dev").to_string();
    Ok(review(&shoot, "core.gardener.cloud", "Shoot", "shoots", &namespace))
}

/// Creates the namespace `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), BenchError> {
    let namespace =
        Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply("cri-resmgr-bench"), &Patch::Apply(&namespace))
        .await?;
    Ok(())
}

/// A shoot namespace's Cluster (the example's shoot) and Extension (no providerConfig: the base configs decide).
pub async fn create_shoot(client: &kube::Client, namespace: &str) -> Result<(), BenchError> {
    let example = |file: &str| fixture(&format!("examples/{file}"));
    let mut cluster: Cluster =
        serde_json::from_value(example("10-cluster.yaml")?).map_err(|e| BenchError::Setup(e.to_string()))?;
    cluster.metadata = ObjectMeta { name: Some(namespace.into()), ..Default::default() };
    let mut extension: Extension =
        serde_json::from_value(example("20-extension.yaml")?).map_err(|e| BenchError::Setup(e.to_string()))?;
    extension.metadata =
        ObjectMeta { name: Some(EXTENSION_TYPE.into()), namespace: Some(namespace.into()), ..Default::default() };
    extension.spec.provider_config = None;
    Api::<Cluster>::all(client.clone()).create(&PostParams::default(), &cluster).await?;
    Api::<Extension>::namespaced(client.clone(), namespace).create(&PostParams::default(), &extension).await?;
    Ok(())
}

/// The operator's base configs ConfigMap in `namespace`: a topology-aware default reserving `reserved_cpu`.
pub fn base_configs(namespace: &str, reserved_cpu: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(BASE_CONFIGS_CONFIG_MAP.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "default".to_string(),
            format!("policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: {reserved_cpu}\n"),
        )])),
        ..Default::default()
    }
}

fn scale_namespace(i: usize) -> String {
    format!("{SCALE_NAMESPACE_PREFIX}{i:04}")
}

/// Polls `done` every 200 ms until it holds; returns the time since `since`.
async fn time_until<F, Fut>(since: Instant, what: &str, limit: Duration, mut done: F) -> Result<Duration, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String), BenchError>>,
{
    loop {
        let (finished, progress) = done().await?;
        if finished {
            return Ok(since.elapsed());
        }
        if since.elapsed() > limit {
            return Err(BenchError::Setup(format!("{what}: not done after {limit:?} ({progress})")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bench_scale(
    options: &BenchOptions,
    plane: &ControlPlane,
    client: &kube::Client,
    server: &Path,
) -> Result<(), BenchError> {
    let work = plane.dir().join("bench");
    std::fs::create_dir_all(&work).map_err(io_err("creating the bench dir"))?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), BENCH_EXTENSION_NAMESPACE);
    config_maps
        .patch(
            BASE_CONFIGS_CONFIG_MAP,
            &PatchParams::apply("cri-resmgr-bench").force(),
            &Patch::Apply(&base_configs(BENCH_EXTENSION_NAMESPACE, "750m")),
        )
        .await?;

    let port = control_plane::free_port()?;
    let cert_dir = work.join("scale-certs");
    let mut args = controller_args(port, &cert_dir);
    args.extend(options.max_concurrent_reconciles.map(|n| format!("--max-concurrent-reconciles={n}")));
    let controller = ServerProcess::extension(options, server, &args, plane, &work.join("scale-controller.log"), None)?;
    wait_ready(&target(port, &cert_dir, PATH_MUTATE_OSC, Bytes::new()).await?, "controller").await?;
    let idle_rss = stats::rss_bytes(controller.pid).unwrap_or_default();

    let shoots = options.shoots;
    let started = Instant::now();
    futures::stream::iter(0..shoots)
        .map(|i| async move {
            let namespace = scale_namespace(i);
            ensure_namespace(client, &namespace).await?;
            create_shoot(client, &namespace).await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    let created = started.elapsed();
    let extensions: Api<Extension> = Api::all(client.clone());
    let succeeded = time_until(started, "all Extensions Succeeded", Duration::from_secs(600), || async {
        let list = extensions.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|e| e.metadata.namespace.as_deref().is_some_and(|n| n.starts_with(SCALE_NAMESPACE_PREFIX)))
            .filter(|e| {
                e.status
                    .as_ref()
                    .and_then(|s| s.last_operation.as_ref())
                    .is_some_and(|op| op.state == LastOperationState::Succeeded)
            })
            .count();
        Ok((done >= shoots, format!("{done}/{shoots} Succeeded")))
    })
    .await?;
    let after_create_rss = stats::rss_bytes(controller.pid).unwrap_or_default();
    let peak_after_create = controller.peak_rss();

    // The base configs change: every shoot's ManagedResource must get a new secret (its contents changed).
    let managed_resources: Api<ManagedResource> = Api::all(client.clone());
    let secret_of = |list: &kube::core::ObjectList<ManagedResource>| -> BTreeMap<String, String> {
        list.items
            .iter()
            .filter(|mr| mr.metadata.name.as_deref() == Some(SHOOT_MANAGED_RESOURCE_NAME))
            .filter_map(|mr| {
                let namespace = mr.metadata.namespace.clone()?;
                namespace.starts_with(SCALE_NAMESPACE_PREFIX).then_some(())?;
                Some((namespace, mr.spec.secret_refs.first()?.name.clone()))
            })
            .collect()
    };
    let before = secret_of(&managed_resources.list(&ListParams::default()).await?);
    let changed_at = Instant::now();
    config_maps
        .patch(
            BASE_CONFIGS_CONFIG_MAP,
            &PatchParams::apply("cri-resmgr-bench").force(),
            &Patch::Apply(&base_configs(BENCH_EXTENSION_NAMESPACE, "1000m")),
        )
        .await?;
    let rereconciled = time_until(changed_at, "all shoots re-reconciled", Duration::from_secs(600), || async {
        let now = secret_of(&managed_resources.list(&ListParams::default()).await?);
        let done =
            now.iter().filter(|(namespace, secret)| before.get(*namespace).is_some_and(|old| old != *secret)).count();
        Ok((done >= shoots, format!("{done}/{shoots} re-reconciled")))
    })
    .await?;
    let peak = controller.peak_rss();
    let concurrency = options.max_concurrent_reconciles.map_or_else(|| "default".to_owned(), |n| n.to_string());
    println!("## Controller scale run ({shoots} shoots, --max-concurrent-reconciles {concurrency})\n");
    println!("| what | measured |\n|---|---:|");
    println!("| controller RSS when synced and idle | {} |", mib(idle_rss));
    println!("| {shoots} namespaces + Clusters + Extensions created in | {:.1} s |", created.as_secs_f64());
    println!("| all {shoots} Extensions Succeeded after | {:.1} s |", succeeded.as_secs_f64());
    println!("| controller RSS after that / peak so far | {} / {} |", mib(after_create_rss), mib(peak_after_create));
    println!("| base-ConfigMap change → all {shoots} re-reconciled | {:.1} s |", rereconciled.as_secs_f64());
    println!("| controller peak RSS (VmHWM) over the whole run | {} |", mib(peak));
    println!();
    controller.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &[u8]) -> (String, String) {
        let review: Value = serde_json::from_slice(body).expect("the body stays JSON");
        let request = &review["request"];
        let annotation = request["object"]["metadata"]["annotations"][BENCH_REQUEST_ANNOTATION].clone();
        (request["uid"].as_str().expect("uid").to_owned(), annotation.as_str().expect("annotation").to_owned())
    }

    /// A target sending `body` with its `freshness` parts filled in, to nowhere (only its bodies are looked at).
    fn unconnected_target(body: Bytes, freshness: Freshness) -> Target {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let fresh = fresh_parts(&body, freshness).expect("the review's fresh parts");
        let target = Target::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), server_name, Arc::new(tls), "/", body);
        Target { fresh, ..target }
    }

    #[test]
    fn every_request_gets_a_uid_of_its_own_and_with_every_review_fresh_an_object_of_its_own() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}});
        let body = review(&object, "", "ConfigMap", "configmaps", "ns");
        let target = |freshness| unconnected_target(body.clone(), freshness);

        let again = target(Freshness::Uid);
        let (first, second) = (decoded(&again.next_body()), decoded(&again.next_body()));
        assert_ne!(first.0, second.0, "a new uid for every request");
        assert_eq!(first.1, second.1, "the same object");
        assert_eq!(first.0.len(), 36, "a uid of a UUID's shape: {}", first.0);
        assert_eq!(again.next_body().len(), body.len());

        let fresh = target(Freshness::EveryReview);
        let (first, second) = (decoded(&fresh.next_body()), decoded(&fresh.next_body()));
        assert_ne!(first.0, second.0);
        assert_ne!(first.1, second.1, "an object of its own");
    }

    #[test]
    fn gardenlets_writes_get_a_new_timestamp_and_resource_version_each() {
        let target = unconnected_target(osc_review("ns").expect("the bench OSC review"), Freshness::WrittenAgain);
        let written = |body: Bytes| -> Value { serde_json::from_slice(&body).expect("JSON") };
        let (first, second) = (written(target.next_body()), written(target.next_body()));
        let metadata = |review: &Value| review["request"]["object"]["metadata"].clone();
        assert_ne!(first["request"]["uid"], second["request"]["uid"]);
        assert_ne!(
            metadata(&first)["annotations"][ANNOTATION_TIMESTAMP],
            metadata(&second)["annotations"][ANNOTATION_TIMESTAMP]
        );
        assert_ne!(metadata(&first)["resourceVersion"], metadata(&second)["resourceVersion"]);
        let rest = |mut review: Value| {
            review["request"]["uid"].take();
            review["request"]["object"]["metadata"]["annotations"][ANNOTATION_TIMESTAMP].take();
            review["request"]["object"]["metadata"]["resourceVersion"].take();
            review
        };
        assert_eq!(rest(first), rest(second), "nothing else changes");
    }

    #[test]
    fn a_get_has_no_uid_to_fill_in_and_a_review_must_have_one() {
        assert_eq!(uid_parts(b"").expect("nothing to fill in"), Vec::<Range<usize>>::new());
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}});
        assert_eq!(uid_parts(&review(&object, "", "ConfigMap", "configmaps", "ns")).expect("the uid").len(), 1);
        assert!(uid_parts(b"{}").is_err(), "a review without the bench's uid is refused");
    }
}
