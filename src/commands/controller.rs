//! The `controller` command: runs in the seed. Every replica serves the OperatingSystemConfig webhook; the elected
//! leader runs the Extension reconciler, the health check and the heartbeat.

use std::time::Duration;

use crate::contract::recorder::EventRecorder;
use crate::controller::{ControllerConfig, DEFAULT_MAX_CONCURRENT_RECONCILES, Reporting, heartbeat, run_controller};
use crate::domain::images::ImageVector;
use crate::runtime::metrics::{self, Metrics, MetricsOptions, MetricsServerError, WebhookMetrics};
use crate::runtime::registration::{
    CONTROLLER_CONFIG_NAME, PATH_MUTATE_OSC, apply_mutating, osc_mutating_configuration,
};
use crate::runtime::server::WebhookServer;
use crate::runtime::serving::{ServingError, WebhookOptions, serve_registered};
use crate::runtime::stores::{SeedStores, StoreScope};
use crate::runtime::{AbortOnDrop, error_chain};
use crate::webhook::osc::OscMutator;

/// Options of the `controller` command.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerOptions {
    /// Namespace of the base configs ConfigMap `gardener-extension-cri-resmgr-configs` (the extension's namespace).
    #[arg(long, env = crate::constants::ENV_EXTENSION_CONFIGMAP_NAMESPACE, default_value = "default")]
    pub configmap_namespace: String,
    /// Namespace of the leader-election and heartbeat Leases; defaults to the base configs' namespace.
    #[arg(long, env = crate::constants::ENV_LEADER_ELECTION_NAMESPACE)]
    pub leader_election_namespace: Option<String>,
    /// Elect a leader among replicas; only the leader reconciles (webhooks are served by every replica).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// This replica's identity in the leader election (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Only watch Extensions in this namespace (development and tests).
    #[arg(long)]
    pub watch_namespace: Option<String>,
    /// Reconcile on generation changes instead of Gardener's operation annotation.
    #[arg(long)]
    pub ignore_operation_annotation: bool,
    /// Seconds between health checks of the shoot resources.
    #[arg(long, default_value_t = 30)]
    pub health_check_interval_seconds: u64,
    /// Seconds between renewals of the heartbeat Lease.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval_seconds: u64,
    /// Seconds between periodic reconciliations of a successfully reconciled Extension.
    #[arg(long, default_value_t = 3600)]
    pub resync_interval_seconds: u64,
    /// How many Extensions are reconciled at once (at least 1; never two reconciles of the same Extension).
    /// `--extension-max-concurrent-reconciles` is Gardener's name for it.
    #[arg(
        long,
        visible_alias = "extension-max-concurrent-reconciles",
        default_value_t = DEFAULT_MAX_CONCURRENT_RECONCILES,
        value_parser = clap::value_parser!(u16).range(1..),
    )]
    pub max_concurrent_reconciles: u16,
    /// Serve and register the OperatingSystemConfig mutating webhook (every replica serves it, leader or not).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub osc_webhook: bool,
    #[command(flatten)]
    pub webhook: WebhookOptions,
    #[command(flatten)]
    pub metrics: MetricsOptions,
}

impl ControllerOptions {
    /// The controller settings these options describe.
    pub fn config(&self) -> ControllerConfig {
        ControllerConfig {
            configmap_namespace: self.configmap_namespace.clone(),
            watch_namespace: self.watch_namespace.clone(),
            ignore_operation_annotation: self.ignore_operation_annotation,
            resync_interval: Duration::from_secs(self.resync_interval_seconds),
            health_check_interval: Duration::from_secs(self.health_check_interval_seconds.max(1)),
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            ..ControllerConfig::default()
        }
    }

    fn lease_namespace(&self) -> String {
        self.leader_election_namespace.clone().unwrap_or_else(|| self.configmap_namespace.clone())
    }
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Images(#[from] crate::domain::images::ImageError),
    #[error("leader election: cannot set up the Lease")]
    LeaderElection(#[source] kube_lease_manager::LeaseManagerError),
    #[error("leader election: the lease manager stopped before this replica became the leader")]
    LeaseManagerStopped,
    #[error("lost the leadership; stopping so that the new leader works alone")]
    LostLeadership,
    #[error("OSC webhook")]
    Webhook(#[from] ServingError),
    #[error("the OSC webhook server task ended abnormally")]
    WebhookTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Metrics(#[from] MetricsServerError),
}

/// Serves the OperatingSystemConfig mutating webhook and keeps its configuration registered until `shutdown`. The
/// webhook reads from `stores` (whose watches the caller runs); `/readyz` says not-ready until they are synced. Its
/// answers are recorded in `metrics`.
pub async fn serve_osc_webhook(
    webhook: WebhookOptions,
    client: kube::Client,
    stores: SeedStores,
    images: ImageVector,
    metrics: WebhookMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    // The one owner of this process's certificates; it stops when this handle goes out of scope.
    let certificates = webhook.start_certificates(&client).await?;
    let mut server = WebhookServer::new(webhook.server_config()).with_metrics(metrics);
    let synced = stores.clone();
    server.ready_when(move || synced.is_synced());
    server.register(PATH_MUTATE_OSC, OscMutator::new(stores, images)).map_err(ServingError::from)?;
    let mode = webhook.client_config_mode()?;
    let register = move |ca_bundle: Vec<u8>| {
        let client = client.clone();
        let mode = mode.clone();
        async move {
            apply_mutating(&client, &osc_mutating_configuration(&mode, &ca_bundle))
                .await
                .map_err(|source| ServingError::Register { name: CONTROLLER_CONFIG_NAME.to_string(), source })?;
            tracing::info!("registered the OperatingSystemConfig webhook");
            Ok(())
        }
    };
    Ok(serve_registered(&webhook, server, &certificates, "OperatingSystemConfig", register, shutdown).await?)
}

/// Runs the leader-elected part of the extension (reconciler, health check, heartbeat) until `shutdown` is
/// cancelled.
pub async fn run(
    options: ControllerOptions,
    client: kube::Client,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), ControllerError> {
    let images = crate::runtime::inputs::load_image_vector()?;
    let config = options.config();
    let metrics = Metrics::for_controller();
    // Every replica serves its metrics (leader or not: `leader` tells them apart).
    let _metrics_server = metrics::start_server(&options.metrics, &metrics, shutdown.clone().cancelled_owned()).await?;
    // One set of watches per process feeds the webhook (every replica) and the reconciler (the leader).
    let scope = StoreScope {
        configmap_namespace: config.configmap_namespace.clone(),
        shoot_namespace: config.watch_namespace.clone(),
    };
    let (stores, watches) = SeedStores::watch(client.clone(), &scope);
    // The stores' watches end with the command.
    let _watches = AbortOnDrop(tokio::spawn(watches));
    // Webhooks are served by every replica, so the apiserver reaches one whichever leads.
    let osc_webhook = options.osc_webhook.then(|| {
        let serve = serve_osc_webhook(
            options.webhook.clone(),
            client.clone(),
            stores.clone(),
            images.clone(),
            metrics.webhook.clone(),
            shutdown.clone().cancelled_owned(),
        );
        // A replica whose webhook server is gone leaves gardenlet's OSC writes failing (failurePolicy Fail) while
        // it looks alive: whenever the server ends (an error, a panic), the whole process stops, to be restarted.
        let stop_everything = shutdown.clone().drop_guard();
        tokio::spawn(async move {
            let _stop_everything = stop_everything;
            serve.await
        })
    });
    let result = lead(&options, client, stores, config, images, &metrics, &shutdown).await;
    let Some(webhook) = osc_webhook else { return result };
    shutdown.cancel();
    let webhook_result = match tokio::time::timeout(Duration::from_secs(20), webhook).await {
        Ok(Ok(served)) => served,
        Ok(Err(join)) => Err(ControllerError::WebhookTask(join)),
        Err(_) => Ok(()),
    };
    match (result, webhook_result) {
        (Ok(()), webhook) => webhook,
        (Err(e), Err(webhook)) => {
            tracing::error!(error = %error_chain(&webhook), "the OSC webhook server failed");
            Err(e)
        }
        (Err(e), Ok(())) => Err(e),
    }
}

/// Waits for leadership (when elected), then runs the reconciler, the health check and the heartbeat until
/// `shutdown` is cancelled or the leadership is lost.
async fn lead(
    options: &ControllerOptions,
    client: kube::Client,
    stores: SeedStores,
    config: ControllerConfig,
    images: ImageVector,
    metrics: &Metrics,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), ControllerError> {
    let lease_namespace = options.lease_namespace();
    let identity = options.identity.clone().unwrap_or_else(default_identity);
    let heartbeat_interval = Duration::from_secs(options.heartbeat_interval_seconds.max(1));

    let leadership = if options.leader_election {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), crate::constants::LEADER_ELECTION_LEASE_NAME)
                .with_namespace(lease_namespace.clone())
                .with_identity(identity.clone())
                .with_duration(15)
                .with_grace(5)
                .with_field_manager(lease_field_manager(&identity))
                .build()
                .await
                .map_err(ControllerError::LeaderElection)?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(identity, namespace = lease_namespace, "waiting for leadership");
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leading.changed() => changed.map_err(|_| ControllerError::LeaseManagerStopped)?,
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        tracing::info!(identity, "became the leader");
        Some((leading, task))
    } else {
        None
    };

    metrics.controller.set_leader(true);
    let heartbeat = tokio::spawn(heartbeat::run(client.clone(), lease_namespace, heartbeat_interval));
    let reporting =
        Reporting { metrics: metrics.controller.clone(), recorder: EventRecorder::new(client.clone(), Some(identity)) };
    let controller = run_controller(client, stores, config, images, reporting, shutdown.clone().cancelled_owned());
    let result = match leadership {
        None => {
            controller.await;
            Ok(())
        }
        Some((mut leading, task)) => {
            let lost = async move {
                while leading.changed().await.is_ok() {
                    if !*leading.borrow_and_update() {
                        return;
                    }
                }
            };
            let result = tokio::select! {
                () = controller => Ok(()),
                () = lost => Err(ControllerError::LostLeadership),
            };
            // Dropping the receiver makes the lease manager release the Lease, so a successor takes over at once.
            let _ = task.await;
            result
        }
    };
    heartbeat.abort();
    metrics.controller.set_leader(false);
    result
}

/// The field manager of one replica's writes to the leader-election Lease: its own per replica. The lease manager
/// takes an unlocked Lease with a server-side apply of `holderIdentity` that is not forced, so that a second replica
/// taking it at the same moment gets a conflict and backs off. With one field manager shared by all replicas the
/// second apply silently overwrote the first replica's `holderIdentity`, and the first, having read the Lease in
/// between, led alongside the second until its next renewal (up to 10 s of two reconcilers).
///
/// The apiserver refuses field managers longer than [`MAX_FIELD_MANAGER_BYTES`]; a longer `--identity` is
/// represented by a hash of it, so replicas still get distinct managers.
pub fn lease_field_manager(identity: &str) -> String {
    let readable = format!("{}-{identity}", crate::constants::MANAGED_BY);
    if readable.len() <= MAX_FIELD_MANAGER_BYTES {
        return readable;
    }
    // FNV-1a: stable across builds and processes, unlike std's randomly keyed hashers.
    let hash = identity
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{}-{hash:016x}", crate::constants::MANAGED_BY)
}

/// The longest field manager name the apiserver accepts.
pub const MAX_FIELD_MANAGER_BYTES: usize = 128;

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| crate::constants::COMPONENT_NAME.to_string());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        options: ControllerOptions,
    }

    #[test]
    fn lease_field_managers_are_distinct_per_replica_and_short_enough_for_the_apiserver() {
        let (a, b) = (lease_field_manager("seed-0-17"), lease_field_manager("seed-1-17"));
        assert_ne!(a, b);
        assert!(a.ends_with("-seed-0-17"), "{a}");
        let (long_a, long_b) = (format!("{}a", "x".repeat(200)), format!("{}b", "x".repeat(200)));
        let (long_a, long_b) = (lease_field_manager(&long_a), lease_field_manager(&long_b));
        assert_ne!(long_a, long_b);
        assert!(long_a.len() <= MAX_FIELD_MANAGER_BYTES && long_b.len() <= MAX_FIELD_MANAGER_BYTES, "{long_a}");
        assert_eq!(long_a, lease_field_manager(&format!("{}a", "x".repeat(200))), "stable");
    }

    fn options(args: &[&str]) -> Result<ControllerOptions, clap::Error> {
        Command::try_parse_from(std::iter::once("controller").chain(args.iter().copied())).map(|c| c.options)
    }

    /// kube-runtime's `Config` has no getters; its Debug output is the one view of the bound it got.
    fn concurrency(options: &ControllerOptions) -> String {
        format!("{:?}", options.config().runtime_config())
    }

    #[test]
    fn reconciles_are_bounded_by_default() {
        let options = options(&[]).expect("no flags");
        assert_eq!(options.config().max_concurrent_reconciles, DEFAULT_MAX_CONCURRENT_RECONCILES);
        assert_eq!(DEFAULT_MAX_CONCURRENT_RECONCILES, 5);
        assert!(concurrency(&options).contains("concurrency: 5"), "{}", concurrency(&options));
    }

    #[test]
    fn the_flag_sets_the_bound_under_either_name() {
        for flag in ["--max-concurrent-reconciles=3", "--extension-max-concurrent-reconciles=3"] {
            let options = options(&[flag]).expect(flag);
            assert_eq!(options.config().max_concurrent_reconciles, 3, "{flag}");
            assert!(concurrency(&options).contains("concurrency: 3"), "{flag}: {}", concurrency(&options));
        }
    }

    #[test]
    fn an_unbounded_or_invalid_bound_is_refused() {
        for flag in
            ["--max-concurrent-reconciles=0", "--max-concurrent-reconciles=-1", "--max-concurrent-reconciles=65536"]
        {
            assert!(options(&[flag]).is_err(), "{flag} must be refused");
        }
    }
}
