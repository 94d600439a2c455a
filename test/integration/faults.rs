//! Fault test: the seed's kube-apiserver is restarted while 50 Extensions are being created and reconciled, then
//! its etcd while a base-config change re-reconciles all of them. The real controller runs throughout (leader
//! election, reconciler, stores, and the OSC webhook it serves), and a prober calls that webhook over TLS as the
//! apiserver would, back to back. Afterwards every Extension has converged (`Succeeded`, with the new configuration),
//! none lost its finalizer, every ManagedResource Secret is referenced by its ManagedResource once
//! gardener-resource-manager's garbage collector has run, and every webhook call was answered correctly within the
//! webhook's timeout except those that overlapped the apiserver's outage.
//!
//! It runs on a control plane of its own: restarting the shared one would disturb every other test.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cri_resmgr_testbed::bench::{self, load::Target};
use cri_resmgr_testbed::control_plane::{self, ControlPlane, WorkDir};
use cri_resmgr_testbed::dev::local_controller_options;
use cri_resmgr_testbed::standins::resource_manager::{ResourceManager, Shoots};
use futures::{StreamExt as _, TryStreamExt as _};
use gardener_extension_cri_resmgr::apis::common::LastOperationState;
use gardener_extension_cri_resmgr::apis::extensions::Extension;
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::commands::controller::{self, ControllerError, ControllerOptions};
use gardener_extension_cri_resmgr::constants::{
    BASE_CONFIGS_CONFIG_MAP, FINALIZER, LABEL_GARBAGE_COLLECTABLE_REFERENCE, MANAGED_RESOURCE_SECRET_PREFIX,
    SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::runtime::registration::{PATH_MUTATE_OSC, TIMEOUT_SECONDS};
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::scratch_dir;

/// How many shoots reconcile through the restarts.
const SHOOTS: usize = 50;
/// The extension's namespace: base configs and Leases.
const EXTENSION_NAMESPACE: &str = "extension-cri-resmgr-faults";
/// Prefix of the shoot namespaces (Gardener's `shoot--<project>--<name>`).
const SHOOT_NAMESPACE_PREFIX: &str = "shoot--faults--";
/// How long the apiserver stays down before it is started again (its start-up adds to the outage).
const APISERVER_OUTAGE: Duration = Duration::from_secs(1);
/// The webhooks' `timeoutSeconds` (registration's `TIMEOUT_SECONDS`): how long the apiserver waits for an answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(TIMEOUT_SECONDS as u64);
/// How long etcd stays down: longer than the webhook's timeout, so that a webhook that needed the storage for its
/// answer (rather than its watch-backed stores) would be caught answering late or not at all.
const ETCD_OUTAGE: Duration = WEBHOOK_TIMEOUT.saturating_add(Duration::from_secs(1));
/// Pause between two webhook calls of the prober.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// How long each shoot may take to converge after a fault (a debug build on a loaded machine).
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);

fn shoot_namespace(i: usize) -> String {
    format!("{SHOOT_NAMESPACE_PREFIX}{i:02}")
}

/// One call of the OSC webhook: when it started, how long it took, and what went wrong (if anything).
#[derive(Debug)]
struct Probe {
    started: Instant,
    latency: Duration,
    problem: Option<String>,
}

impl Probe {
    fn overlaps(&self, outage: &Outage) -> bool {
        self.started <= outage.to && self.started + self.latency >= outage.from
    }
}

/// When a component was down: from the moment it was told to stop until it was ready again.
#[derive(Debug, Clone, Copy)]
struct Outage {
    from: Instant,
    to: Instant,
}

/// What the mutating webhook must answer for the shoot's reconcile OSC: allowed, with a patch (cri-resmgr added,
/// which needs the shoot's Cluster and Extension).
fn judge(status: hyper::StatusCode, body: &[u8]) -> Option<String> {
    if status != hyper::StatusCode::OK {
        return Some(format!("HTTP {status}: {}", String::from_utf8_lossy(body)));
    }
    let review: serde_json::Value = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => return Some(format!("not a review ({e}): {}", String::from_utf8_lossy(body))),
    };
    let response = &review["response"];
    if response["allowed"] != serde_json::json!(true) || !response["patch"].is_string() {
        return Some(format!("not allowed with a patch: {response}"));
    }
    None
}

/// Calls the OSC webhook back to back on a new connection each time (as the apiserver does after its connections
/// broke) until cancelled.
fn start_prober(target: Arc<Target>, stop: CancellationToken) -> tokio::task::JoinHandle<Vec<Probe>> {
    tokio::spawn(async move {
        let mut probes = Vec::new();
        // The apiserver gives up after the webhook's timeout; a call cut off there counts as late.
        let bound = WEBHOOK_TIMEOUT;
        while !stop.is_cancelled() {
            let started = Instant::now();
            let problem = match tokio::time::timeout(bound * 2, target.once()).await {
                Ok(Ok((status, body))) => judge(status, &body),
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {:?}", bound * 2)),
            };
            probes.push(Probe { started, latency: started.elapsed(), problem });
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        probes
    })
}

/// The controller process, supervised as kubelet would: when it stops by itself (e.g. it lost the leadership while
/// the apiserver was away) it is started again with the same options. Returns how often it was restarted.
fn start_supervised_controller(
    options: ControllerOptions,
    client: kube::Client,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut restarts = Vec::new();
        loop {
            let result: Result<(), ControllerError> =
                controller::run(options.clone(), client.clone(), shutdown.child_token()).await;
            if shutdown.is_cancelled() {
                result.expect("the controller stopped without error");
                return restarts;
            }
            restarts.push(match result {
                Ok(()) => "ended by itself".to_string(),
                Err(e) => e.to_string(),
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// `true` once `extension` succeeded its last operation and still carries the finalizer.
fn converged(extension: &Extension) -> bool {
    let succeeded = extension
        .status
        .as_ref()
        .and_then(|s| s.last_operation.as_ref())
        .is_some_and(|op| op.state == LastOperationState::Succeeded);
    succeeded && extension.finalizers().iter().any(|f| f == FINALIZER)
}

/// The Secret each shoot namespace's runtime ManagedResource references; `None` while the list cannot be read.
async fn try_referenced_secrets(client: &kube::Client) -> Option<BTreeMap<String, String>> {
    let list = Api::<ManagedResource>::all(client.clone()).list(&ListParams::default()).await.ok()?;
    let secrets = list
        .items
        .into_iter()
        .filter(|mr| mr.name_any() == SHOOT_MANAGED_RESOURCE_NAME)
        .filter_map(|mr| Some((mr.namespace()?, mr.spec.secret_refs.first()?.name.clone())))
        .filter(|(namespace, _)| namespace.starts_with(SHOOT_NAMESPACE_PREFIX))
        .collect();
    Some(secrets)
}

/// The Secret each shoot namespace's runtime ManagedResource references, once everything is up again.
async fn referenced_secrets(client: &kube::Client) -> BTreeMap<String, String> {
    try_referenced_secrets(client).await.expect("list ManagedResources")
}

/// How many shoots' Extensions have converged now, and the Secrets their ManagedResources reference.
async fn progress(client: &kube::Client) -> (usize, BTreeMap<String, String>) {
    let list = Api::<Extension>::all(client.clone()).list(&ListParams::default()).await;
    let converged = list
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.namespace().is_some_and(|n| n.starts_with(SHOOT_NAMESPACE_PREFIX)) && converged(e))
        .count();
    (converged, try_referenced_secrets(client).await.unwrap_or_default())
}

/// Polls until every shoot's Extension converged and `done` holds for the ManagedResources' Secrets.
async fn wait_until_converged(client: &kube::Client, what: &str, done: impl Fn(&BTreeMap<String, String>) -> bool) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        // Reads fail while a component is still coming back (they count as nothing converged); the next round
        // asks again.
        let (ready, secrets) = progress(client).await;
        if ready == SHOOTS && done(&secrets) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {ready}/{SHOOTS} Extensions converged after {CONVERGE_TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_extensions_converge_through_seed_apiserver_and_etcd_restarts() {
    let mut plane = ControlPlane::start_named("faults", WorkDir::Temporary).await.expect("a control plane of its own");
    let client = plane.client().await.expect("client");
    control_plane::install_crds(&client, cri_resmgr_testbed::crds::all().expect("CRDs")).await.expect("CRDs");
    bench::ensure_namespace(&client, EXTENSION_NAMESPACE).await.expect("extension namespace");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), EXTENSION_NAMESPACE);
    let apply_base_configs = |reserved_cpu: &'static str| {
        let config_maps = config_maps.clone();
        async move {
            let config_map = bench::base_configs(EXTENSION_NAMESPACE, reserved_cpu);
            let params = PatchParams::apply("faults-test").force();
            config_maps.patch(BASE_CONFIGS_CONFIG_MAP, &params, &Patch::Apply(&config_map)).await.expect("base configs")
        }
    };
    apply_base_configs("750m").await;
    // The prober's shoot exists before the controller starts, so that its first calls find Cluster and Extension.
    bench::ensure_namespace(&client, &shoot_namespace(0)).await.expect("namespace");
    bench::create_shoot(&client, &shoot_namespace(0)).await.expect("first shoot");

    let port = control_plane::free_port().expect("webhook port");
    let cert_dir = scratch_dir("cri-resmgr-faults-certs");
    let options = ControllerOptions {
        configmap_namespace: EXTENSION_NAMESPACE.to_string(),
        leader_election_namespace: Some(EXTENSION_NAMESPACE.to_string()),
        identity: Some("faults-controller".to_string()),
        ..local_controller_options(WebhookOptions {
            webhook_bind_address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            webhook_cert_dir: cert_dir.clone(),
            // Loaded again (not regenerated) when the supervised controller restarts.
            generate_certs_for: vec![IpAddr::V4(Ipv4Addr::LOCALHOST).to_string()],
            webhook_config_mode: WebhookConfigMode::Url,
            webhook_config_url: Some(format!("127.0.0.1:{port}")),
            ..WebhookOptions::default()
        })
    };
    let shutdown = CancellationToken::new();
    let supervisor = start_supervised_controller(options, client.clone(), shutdown.clone());
    let osc_review = bench::osc_review(&shoot_namespace(0)).expect("OSC review");
    let target = Arc::new(bench::target(port, &cert_dir, PATH_MUTATE_OSC, osc_review).await.expect("target"));
    crate::support::eventually("the OSC webhook mutates the prober's OSC", || async {
        let (status, body) = target.once().await.ok()?;
        judge(status, &body).is_none().then_some(())
    })
    .await;
    let stop_probing = CancellationToken::new();
    let prober = start_prober(target.clone(), stop_probing.clone());

    // 1. The other 49 shoots appear at once; while they reconcile, the apiserver goes away and comes back.
    let started = Instant::now();
    futures::stream::iter(1..SHOOTS)
        .map(|i| {
            let client = client.clone();
            async move {
                bench::ensure_namespace(&client, &shoot_namespace(i)).await?;
                bench::create_shoot(&client, &shoot_namespace(i)).await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("create the shoots");
    let (converged_before_outage, _) = progress(&client).await;
    assert!(converged_before_outage < SHOOTS, "the apiserver goes away while Extensions still reconcile");
    let apiserver_from = Instant::now();
    plane.stop_apiserver().await.expect("stop the apiserver");
    tokio::time::sleep(APISERVER_OUTAGE).await;
    plane.start_apiserver().await.expect("start the apiserver again");
    let apiserver = Outage { from: apiserver_from, to: Instant::now() };
    wait_until_converged(&client, "after the apiserver restart", |secrets| secrets.len() == SHOOTS).await;
    let first_convergence = started.elapsed();
    let before = referenced_secrets(&client).await;

    // 2. The base configs change (every shoot gets a new ManagedResource Secret); while the 50 re-reconcile, etcd
    //    goes away and comes back under the running apiserver.
    let changed = Instant::now();
    apply_base_configs("1000m").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, secrets) = progress(&client).await;
    let rereconciled_before_outage = secrets.iter().filter(|(n, secret)| before.get(*n) != Some(*secret)).count();
    assert!(rereconciled_before_outage < SHOOTS, "etcd goes away while Extensions still re-reconcile");
    let etcd_from = Instant::now();
    plane.stop_etcd().await.expect("stop etcd");
    tokio::time::sleep(ETCD_OUTAGE).await;
    plane.start_etcd().await.expect("start etcd again");
    let etcd = Outage { from: etcd_from, to: Instant::now() };
    wait_until_converged(&client, "after the etcd restart", |now| {
        now.len() == SHOOTS && now.iter().all(|(namespace, secret)| before.get(namespace) != Some(secret))
    })
    .await;
    let second_convergence = changed.elapsed();

    stop_probing.cancel();
    let probes = prober.await.expect("prober");
    shutdown.cancel();
    let restarts = tokio::time::timeout(Duration::from_secs(60), supervisor).await.expect("stops").expect("joins");

    // No ManagedResource Secret is orphaned: after gardener-resource-manager's garbage collection (what its
    // collector deletes: labelled collectable and no longer referenced) every Secret of ours is referenced.
    let resource_manager = ResourceManager::new(client.clone(), Shoots::default());
    let referenced = referenced_secrets(&client).await;
    let mut collected = 0;
    for i in 0..SHOOTS {
        let namespace = shoot_namespace(i);
        collected += resource_manager.collect_garbage(&namespace, Duration::ZERO).await.expect("collect").len();
        let secrets = Api::<Secret>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await;
        let ours: Vec<String> = secrets
            .expect("list Secrets")
            .items
            .iter()
            .filter(|s| s.name_any().starts_with(MANAGED_RESOURCE_SECRET_PREFIX))
            .map(|s| {
                let labelled = s.labels().get(LABEL_GARBAGE_COLLECTABLE_REFERENCE).is_some_and(|v| v == "true");
                assert!(labelled, "{namespace}/{} is not garbage-collectable", s.name_any());
                s.name_any()
            })
            .collect();
        assert_eq!(ours, [referenced[&namespace].clone()], "{namespace}: only the referenced Secret is left");
    }

    // The webhook answered every call correctly within its timeout, except calls overlapping the apiserver outage.
    let bound = WEBHOOK_TIMEOUT;
    let (during_apiserver, rest): (Vec<&Probe>, Vec<&Probe>) = probes.iter().partition(|p| p.overlaps(&apiserver));
    let during_etcd = rest.iter().filter(|p| p.overlaps(&etcd)).count();
    let worst = |probes: &[&Probe]| probes.iter().map(|p| p.latency).max().unwrap_or_default();
    let failed_during_apiserver = during_apiserver.iter().filter(|p| p.problem.is_some()).count();
    println!(
        "{SHOOTS} Extensions: {converged_before_outage} converged when the apiserver stopped, all \
         {first_convergence:.1?} after creation through an apiserver outage of {:.1?}; \
         {rereconciled_before_outage} re-reconciled when etcd stopped, all re-reconciled {second_convergence:.1?} after the base-config change through an etcd outage of \
         {:.1?}; {collected} superseded Secrets collected; controller restarts: {restarts:?}",
        apiserver.to - apiserver.from,
        etcd.to - etcd.from,
    );
    println!(
        "OSC webhook: {} calls, worst latency {:.1?} ({} during the etcd outage); {} calls overlapping the apiserver \
         outage, {failed_during_apiserver} of them failed, worst latency {:.1?}",
        rest.len(),
        worst(&rest),
        during_etcd,
        during_apiserver.len(),
        worst(&during_apiserver),
    );
    assert!(during_etcd > 0, "the prober called the webhook during the etcd outage");
    for probe in &rest {
        assert!(probe.problem.is_none(), "a call outside the apiserver outage failed: {probe:?}");
        assert!(probe.latency <= bound, "a call took longer than the webhook's timeout of {bound:?}: {probe:?}");
    }
    plane.stop();
}
