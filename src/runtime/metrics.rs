//! The process's Prometheus metrics: one registry of typed metric families, served as Prometheus text on
//! `/metrics` by a plain-HTTP server of its own (`--metrics-bind-address`), apart from the webhooks' TLS port, so that
//! Gardener's seed Prometheus scrapes it like any extension pod (pod annotations, no client certificate).
//!
//! Every label set is bounded: operations, results and reason classes are closed enums, webhooks are the registered
//! paths, and the only per-shoot label (`shoot_namespace`: not `namespace`, which Prometheus gives every scraped
//! series of a pod) exists once per served Extension and is removed when the Extension goes
//! ([`ControllerMetrics::observe_extensions`]). docs/operations.md documents each metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::apis::common::{LastOperationState, LastOperationType};
use crate::apis::extensions::Extension;
use crate::constants::CONDITION_SYSTEM_COMPONENTS_HEALTHY;

/// The path the metrics are served on.
pub const METRICS_PATH: &str = "/metrics";
/// The prefix of every metric name: the component's name, as Prometheus spells names.
pub const METRIC_PREFIX: &str = "gardener_extension_cri_resmgr";
/// `--metrics-bind-address` by default: controller-runtime's metrics port, which Gardener's extensions use.
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = ":8080";

/// Upper bounds (seconds) of the reconcile duration buckets: a pass is a few API calls (tens of milliseconds) up to
/// one that waits on slow apiservers (tens of seconds).
const RECONCILE_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Upper bounds (seconds) of the webhook latency buckets, up to the webhooks' `timeoutSeconds: 10`.
const WEBHOOK_BUCKETS: [f64; 11] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0];

// -------------------------------------------------------------------------------------------------------------
// Options
// -------------------------------------------------------------------------------------------------------------

/// Where `/metrics` is served; `None`: not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsBindAddress(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsBindAddress {
    type Err = String;

    /// `host:port`; `:port` for every interface (as controller-runtime reads it); empty or `0` disables the server.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "0" {
            return Ok(MetricsBindAddress(None));
        }
        let full = match text.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => text.to_string(),
        };
        full.parse::<SocketAddr>()
            .map(|address| MetricsBindAddress(Some(address)))
            .map_err(|e| format!("{text:?} is not host:port, :port, 0 or empty: {e}"))
    }
}

/// The metrics options every command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsOptions {
    /// Address of the plain-HTTP `/metrics` server (`host:port`, or `:port` for every interface); `0` or empty
    /// turns it off.
    #[arg(long, env = "METRICS_BIND_ADDRESS", default_value = DEFAULT_METRICS_BIND_ADDRESS)]
    pub metrics_bind_address: MetricsBindAddress,
}

impl MetricsOptions {
    /// No metrics server (tests that run several processes' worth of servers in one).
    pub fn disabled() -> Self {
        MetricsOptions { metrics_bind_address: MetricsBindAddress(None) }
    }

    /// A metrics server on `address`.
    pub fn at(address: SocketAddr) -> Self {
        MetricsOptions { metrics_bind_address: MetricsBindAddress(Some(address)) }
    }
}

impl Default for MetricsOptions {
    /// The command-line default.
    fn default() -> Self {
        MetricsOptions {
            metrics_bind_address: DEFAULT_METRICS_BIND_ADDRESS.parse().unwrap_or(MetricsBindAddress(None)),
        }
    }
}

// -------------------------------------------------------------------------------------------------------------
// Label values: closed sets
// -------------------------------------------------------------------------------------------------------------

/// A closed set of label values, each spelled once.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The label value.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_values! {
    /// The operation of a reconcile pass (Gardener's `lastOperation.type`; force-deletion is a Delete).
    Operation {
        Create => "create",
        Reconcile => "reconcile",
        Delete => "delete",
        Migrate => "migrate",
        Restore => "restore",
        /// An operation type Gardener may add later.
        Other => "other",
    }
}

impl From<&LastOperationType> for Operation {
    fn from(operation: &LastOperationType) -> Self {
        match operation {
            LastOperationType::Create => Operation::Create,
            LastOperationType::Reconcile => Operation::Reconcile,
            LastOperationType::Delete => Operation::Delete,
            LastOperationType::Migrate => Operation::Migrate,
            LastOperationType::Restore => Operation::Restore,
            _ => Operation::Other,
        }
    }
}

label_values! {
    /// How a reconcile pass ended.
    PassResult {
        /// The operation completed.
        Succeeded => "succeeded",
        /// The operation waits for something outside the extension and looks again later.
        Waiting => "waiting",
        /// Nothing to do (another seed owns it, gardenlet restores state, the shoot's last operation failed).
        Skipped => "skipped",
        /// The operation or a write of the contract failed; retried.
        Error => "error",
    }
}

/// An Extension's `status.lastOperation.state` as a label value: the wire value of a state Gardener defines
/// ([`LastOperationState`], the one list of them), or `None` — no last operation yet, or a state Gardener may add
/// later, so that the label set stays bounded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct State(&'static str);

impl State {
    /// No last operation yet (or a state this crate does not know).
    pub const NONE: State = State("None");

    /// Every label value: Gardener's states, then [`State::NONE`].
    pub fn all() -> impl Iterator<Item = State> {
        LastOperationState::KNOWN.iter().filter_map(LastOperationState::known_str).map(State).chain([State::NONE])
    }

    /// The state of `extension`'s last operation.
    pub fn of(extension: &Extension) -> State {
        let last = extension.status.as_ref().and_then(|status| status.last_operation.as_ref());
        last.and_then(|last| last.state.known_str()).map_or(State::NONE, State)
    }

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl EncodeLabelValue for State {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

/// The status of an Extension's `SystemComponentsHealthy` condition as a label value: the wire value of a status
/// Gardener defines ([`crate::apis::common::ConditionStatus`], the one list of them); `Unknown` before the first health check and for a
/// status this crate does not know, so that the label set stays bounded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Health(&'static str);

impl Health {
    /// No health check yet (or a status this crate does not know).
    pub const UNKNOWN: Health = Health("Unknown");

    /// The status of `extension`'s `SystemComponentsHealthy` condition.
    pub fn of(extension: &Extension) -> Health {
        let conditions = extension.status.as_ref().map(|status| status.conditions.as_slice()).unwrap_or_default();
        let condition = conditions.iter().find(|c| c.type_ == CONDITION_SYSTEM_COMPONENTS_HEALTHY);
        condition.and_then(|c| c.status.known_str()).map_or(Health::UNKNOWN, Health)
    }

    /// The label value.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl EncodeLabelValue for Health {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

label_values! {
    /// What a write of a ManagedResource did.
    Write {
        Created => "created",
        Updated => "updated",
        /// Already as desired: not written (no load on the apiserver, no work for gardener-resource-manager).
        Unchanged => "unchanged",
    }
}

label_values! {
    /// How an admission request was answered.
    AdmissionResult {
        Allowed => "allowed",
        Denied => "denied",
        /// Not answered with a review: the body was not an admission review, or the answer could not be encoded.
        Error => "error",
    }
}

label_values! {
    /// Why an admission request was denied, as a class (the message itself goes to the user and the log).
    DenialReason {
        /// The object breaks a rule (e.g. an invalid cri-resmgr config).
        Invalid => "invalid",
        /// The object cannot be read (not the expected kind, undecodable fields).
        BadRequest => "bad_request",
        /// The review is larger than the webhook's limit.
        TooLarge => "too_large",
        /// The webhook failed (a failed read of its inputs, a handler that panicked).
        Internal => "internal",
        /// A denial that names no class.
        Other => "other",
    }
}

impl DenialReason {
    /// The Kubernetes `StatusReason` a denial of this class carries in `result.reason` (the apiserver passes it on
    /// to the client); `Other` carries none.
    pub fn status_reason(&self) -> &'static str {
        match self {
            DenialReason::Invalid => "Invalid",
            DenialReason::BadRequest => "BadRequest",
            DenialReason::TooLarge => "RequestEntityTooLarge",
            DenialReason::Internal => "InternalError",
            DenialReason::Other => "",
        }
    }

    /// The class of a denial whose `result.reason` is `status_reason`.
    pub fn of_status_reason(status_reason: &str) -> DenialReason {
        DenialReason::ALL
            .iter()
            .copied()
            .find(|class| *class != DenialReason::Other && class.status_reason() == status_reason)
            .unwrap_or(DenialReason::Other)
    }
}

// -------------------------------------------------------------------------------------------------------------
// Label sets
// -------------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    operation: Operation,
    result: PassResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Operation,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: State,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShootStateLabels {
    shoot_namespace: String,
    state: State,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShootHealthLabels {
    shoot_namespace: String,
    status: Health,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    result: Write,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookResultLabels {
    webhook: String,
    result: AdmissionResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DenialLabels {
    webhook: String,
    reason: DenialReason,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn webhook_histogram() -> Histogram {
    Histogram::new(WEBHOOK_BUCKETS)
}

// -------------------------------------------------------------------------------------------------------------
// Metric families
// -------------------------------------------------------------------------------------------------------------

/// The reconciler's metrics. Cheap to clone: every clone records into the same families.
#[derive(Clone)]
pub struct ControllerMetrics {
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: HistogramFamily<OperationLabels>,
    reconciles_in_flight: Gauge,
    extensions: Family<StateLabels, Gauge>,
    shoot_last_operation: Family<ShootStateLabels, Gauge>,
    shoot_health: Family<ShootHealthLabels, Gauge>,
    managed_resource_writes: Family<WriteLabels, Counter>,
    leader: Gauge,
    /// What [`Self::observe_extensions`] exported per shoot namespace, to remove what changed or went.
    exported: Arc<Mutex<BTreeMap<String, (State, Health)>>>,
}

impl ControllerMetrics {
    fn new() -> Self {
        ControllerMetrics {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_histogram),
            reconciles_in_flight: Gauge::default(),
            extensions: Family::default(),
            shoot_last_operation: Family::default(),
            shoot_health: Family::default(),
            managed_resource_writes: Family::default(),
            leader: Gauge::default(),
            exported: Arc::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Reconcile passes over Extensions, by operation and how the pass ended",
            self.reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconcile passes, by operation",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconcile passes running now (bounded by --max-concurrent-reconciles)",
            self.reconciles_in_flight.clone(),
        );
        registry.register(
            "extensions",
            "Served Extensions by the state of their last operation",
            self.extensions.clone(),
        );
        registry.register(
            "shoot_last_operation",
            "1 for the state of each served Extension's last operation, by shoot namespace (shoot_namespace)",
            self.shoot_last_operation.clone(),
        );
        registry.register(
            "shoot_health",
            "1 for the status of each served Extension's SystemComponentsHealthy condition, by shoot namespace",
            self.shoot_health.clone(),
        );
        registry.register(
            "managed_resource_writes",
            "Writes of ManagedResources by what they did; unchanged ones are skipped",
            self.managed_resource_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader that reconciles, 0 otherwise",
            self.leader.clone(),
        );
    }

    /// A reconcile pass starts; the returned guard counts it in flight until it ends with [`PassTimer::finish`].
    pub fn start_pass(&self, operation: Operation) -> PassTimer {
        self.reconciles_in_flight.inc();
        PassTimer { metrics: self.clone(), operation, started: std::time::Instant::now() }
    }

    /// A ManagedResource write did `write`.
    pub fn managed_resource_written(&self, write: Write) {
        self.managed_resource_writes.get_or_create(&WriteLabels { result: write }).inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Exports the state and health of the served Extensions (the controller's cache) and drops the series of
    /// shoots that are no longer served, so the per-shoot label sets stay bounded by the Extensions that exist.
    pub fn observe_extensions<'a>(&self, extensions: impl IntoIterator<Item = &'a Extension>) {
        let mut current: BTreeMap<String, (State, Health)> = BTreeMap::new();
        for extension in extensions {
            let namespace = extension.metadata.namespace.clone().unwrap_or_default();
            current.insert(namespace, (State::of(extension), Health::of(extension)));
        }
        let mut exported = self.exported.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (namespace, (state, health)) in exported.iter() {
            if current.get(namespace) != Some(&(*state, *health)) {
                self.shoot_last_operation
                    .remove(&ShootStateLabels { shoot_namespace: namespace.clone(), state: *state });
                self.shoot_health.remove(&ShootHealthLabels { shoot_namespace: namespace.clone(), status: *health });
            }
        }
        let mut counts: BTreeMap<State, i64> = State::all().map(|state| (state, 0)).collect();
        for (namespace, (state, health)) in &current {
            *counts.entry(*state).or_default() += 1;
            self.shoot_last_operation
                .get_or_create(&ShootStateLabels { shoot_namespace: namespace.clone(), state: *state })
                .set(1);
            self.shoot_health
                .get_or_create(&ShootHealthLabels { shoot_namespace: namespace.clone(), status: *health })
                .set(1);
        }
        for (state, count) in counts {
            self.extensions.get_or_create(&StateLabels { state }).set(count);
        }
        *exported = current;
    }
}

/// Times one reconcile pass and counts it in flight; [`PassTimer::finish`] records how it ended. A pass that is
/// dropped unfinished (its future cancelled on shutdown) only leaves the in-flight count.
pub struct PassTimer {
    metrics: ControllerMetrics,
    operation: Operation,
    started: std::time::Instant,
}

impl PassTimer {
    /// The pass ended with `result`.
    pub fn finish(self, result: PassResult) {
        let metrics = &self.metrics;
        metrics.reconciles.get_or_create(&ReconcileLabels { operation: self.operation, result }).inc();
        metrics
            .reconcile_duration
            .get_or_create(&OperationLabels { operation: self.operation })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for PassTimer {
    fn drop(&mut self) {
        self.metrics.reconciles_in_flight.dec();
    }
}

/// The webhook server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct WebhookMetrics {
    requests: Family<WebhookResultLabels, Counter>,
    request_duration: HistogramFamily<WebhookLabels>,
    denials: Family<DenialLabels, Counter>,
    reused: Family<WebhookLabels, Counter>,
    certificate_expiry: Gauge<f64, AtomicU64>,
}

impl WebhookMetrics {
    fn new() -> Self {
        WebhookMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(webhook_histogram),
            denials: Family::default(),
            reused: Family::default(),
            certificate_expiry: Gauge::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "webhook_requests",
            "Admission requests by webhook and how they were answered",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "webhook_request_duration",
            "Time from a read admission request to its answer, by webhook",
            Unit::Seconds,
            self.request_duration.clone(),
        );
        registry.register(
            "webhook_denials",
            "Denied admission requests by webhook and class of reason",
            self.denials.clone(),
        );
        registry.register(
            "webhook_answers_reused",
            "Admission requests answered with the answer kept for the same review before (counted in \
             webhook_requests too)",
            self.reused.clone(),
        );
        registry.register(
            "webhook_certificate_expiry_timestamp_seconds",
            "When the served webhook certificate expires (Unix time); 0 before one is loaded",
            self.certificate_expiry.clone(),
        );
    }

    /// The series of `webhook`, looked up once: a server records every request into them without building labels.
    pub fn recorder(&self, webhook: &str) -> WebhookRecorder {
        let requests =
            |result| self.requests.get_or_create(&WebhookResultLabels { webhook: webhook.to_string(), result }).clone();
        WebhookRecorder {
            allowed: requests(AdmissionResult::Allowed),
            denied: requests(AdmissionResult::Denied),
            error: requests(AdmissionResult::Error),
            duration: self.request_duration.get_or_create(&WebhookLabels { webhook: webhook.to_string() }).clone(),
            reused: self.reused.get_or_create(&WebhookLabels { webhook: webhook.to_string() }).clone(),
            denials: self.denials.clone(),
            webhook: webhook.to_string(),
        }
    }

    /// The served certificate expires at `unix_seconds`.
    pub fn set_certificate_expiry(&self, unix_seconds: f64) {
        self.certificate_expiry.set(unix_seconds);
    }
}

/// The series of one webhook (see [`WebhookMetrics::recorder`]). Cheap to clone.
#[derive(Clone)]
pub struct WebhookRecorder {
    allowed: Counter,
    denied: Counter,
    error: Counter,
    duration: Histogram,
    reused: Counter,
    denials: Family<DenialLabels, Counter>,
    webhook: String,
}

impl WebhookRecorder {
    /// The webhook answered a request with `result` after `elapsed`; `denial` classifies a denial.
    pub fn answered(&self, result: AdmissionResult, denial: Option<DenialReason>, elapsed: Duration) {
        match result {
            AdmissionResult::Allowed => self.allowed.inc(),
            AdmissionResult::Denied => self.denied.inc(),
            AdmissionResult::Error => self.error.inc(),
        };
        self.duration.observe(elapsed.as_secs_f64());
        if let Some(reason) = denial {
            self.denials.get_or_create(&DenialLabels { webhook: self.webhook.clone(), reason }).inc();
        }
    }

    /// The webhook gave the answer it kept for the same review before (see [`super::answer_memo`]).
    pub fn reused(&self) {
        self.reused.inc();
    }

    /// The webhook could not answer with a review.
    pub fn failed(&self) {
        self.error.inc();
    }
}

/// A process's metrics: the registry `/metrics` serves and the families the process records into.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// The reconciler's families (registered only in the `controller` process).
    pub controller: ControllerMetrics,
    /// The webhook server's families.
    pub webhook: WebhookMetrics,
}

impl Metrics {
    /// The `controller` process's metrics: reconciler and OperatingSystemConfig webhook.
    pub fn for_controller() -> Self {
        Self::build(true)
    }

    /// The `admission` process's metrics: the Shoot webhooks.
    pub fn for_admission() -> Self {
        Self::build(false)
    }

    fn build(with_controller: bool) -> Self {
        let mut registry = Registry::with_prefix(METRIC_PREFIX);
        let controller = ControllerMetrics::new();
        let webhook = WebhookMetrics::new();
        if with_controller {
            controller.register(&mut registry);
        }
        webhook.register(&mut registry);
        Metrics { registry: Arc::new(registry), controller, webhook }
    }

    /// Everything, in Prometheus' text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

// -------------------------------------------------------------------------------------------------------------
// Serving
// -------------------------------------------------------------------------------------------------------------

/// Why the metrics server stopped.
#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("cannot listen for metrics on {address}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics server on {address} failed")]
    Serve {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The `/metrics` server, bound.
pub struct MetricsServer {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    metrics: Metrics,
}

impl MetricsServer {
    /// Binds `address` (port 0 picks a free one, see [`MetricsServer::local_addr`]).
    pub async fn bind(address: SocketAddr, metrics: Metrics) -> Result<Self, MetricsServerError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| MetricsServerError::Bind { address, source })?;
        let local_addr = listener.local_addr().map_err(|source| MetricsServerError::Bind { address, source })?;
        tracing::info!(address = %local_addr, path = METRICS_PATH, "metrics server listening");
        Ok(MetricsServer { listener, local_addr, metrics })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), MetricsServerError> {
        let MetricsServer { listener, local_addr, metrics } = self;
        let router = Router::new().route(
            METRICS_PATH,
            get(move || {
                let metrics = metrics.clone();
                async move {
                    match metrics.encode() {
                        Ok(text) => {
                            ([(header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], text)
                                .into_response()
                        }
                        Err(_) => {
                            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics").into_response()
                        }
                    }
                }
            }),
        );
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| MetricsServerError::Serve { address: local_addr, source })
    }
}

/// Binds and serves `/metrics` as `options` say, in a task of its own; `None` when the server is turned off.
/// A failure to bind is returned at once (a process that should be scraped must not run unseen).
pub async fn start_server(
    options: &MetricsOptions,
    metrics: &Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Option<tokio::task::JoinHandle<Result<(), MetricsServerError>>>, MetricsServerError> {
    let Some(address) = options.metrics_bind_address.0 else {
        tracing::info!("metrics server turned off");
        return Ok(None);
    };
    let server = MetricsServer::bind(address, metrics.clone()).await?;
    Ok(Some(tokio::spawn(server.serve(shutdown))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extension(namespace: &str, state: Option<&str>, health: Option<&str>) -> Extension {
        let mut status = json!({});
        if let Some(state) = state {
            status["lastOperation"] = json!({"type": "Reconcile", "state": state, "progress": 100,
                "description": "", "lastUpdateTime": "2026-01-01T00:00:00Z"});
        }
        if let Some(health) = health {
            status["conditions"] = json!([{"type": CONDITION_SYSTEM_COMPONENTS_HEALTHY, "status": health,
                "reason": "r", "message": "m", "lastTransitionTime": "2026-01-01T00:00:00Z",
                "lastUpdateTime": "2026-01-01T00:00:00Z"}]);
        }
        serde_json::from_value(json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1", "kind": "Extension",
            "metadata": {"name": "cri-resmgr-extension", "namespace": namespace},
            "spec": {"type": "cri-resmgr-extension"},
            "status": status,
        }))
        .expect("extension")
    }

    fn lines(metrics: &Metrics, prefix: &str) -> Vec<String> {
        let text = metrics.encode().expect("encode");
        text.lines().filter(|line| line.starts_with(prefix)).map(str::to_string).collect()
    }

    #[test]
    fn bind_addresses_read_like_controller_runtime_and_zero_or_empty_disable() {
        let parse = |text: &str| text.parse::<MetricsBindAddress>();
        assert_eq!(parse(":8080"), Ok(MetricsBindAddress(Some(SocketAddr::from(([0, 0, 0, 0], 8080))))));
        assert_eq!(parse("127.0.0.1:9"), Ok(MetricsBindAddress(Some(SocketAddr::from(([127, 0, 0, 1], 9))))));
        assert_eq!(parse("0"), Ok(MetricsBindAddress(None)));
        assert_eq!(parse(""), Ok(MetricsBindAddress(None)));
        assert!(parse("localhost").is_err());
        assert!(parse(":http").is_err());
        assert_eq!(
            MetricsOptions::default().metrics_bind_address,
            parse(DEFAULT_METRICS_BIND_ADDRESS).expect("default")
        );
    }

    #[test]
    fn passes_are_counted_by_operation_and_result_and_timed() {
        let metrics = Metrics::for_controller();
        let pass = metrics.controller.start_pass(Operation::Create);
        assert_eq!(
            lines(&metrics, "gardener_extension_cri_resmgr_reconciles_in_flight"),
            ["gardener_extension_cri_resmgr_reconciles_in_flight 1"]
        );
        pass.finish(PassResult::Succeeded);
        metrics.controller.start_pass(Operation::Delete).finish(PassResult::Waiting);
        drop(metrics.controller.start_pass(Operation::Delete));
        let text = metrics.encode().expect("encode");
        assert!(
            text.contains(
                "gardener_extension_cri_resmgr_reconciles_total{operation=\"create\",result=\"succeeded\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("gardener_extension_cri_resmgr_reconciles_total{operation=\"delete\",result=\"waiting\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gardener_extension_cri_resmgr_reconcile_duration_seconds_count{operation=\"create\"} 1"),
            "{text}"
        );
        assert!(text.contains("gardener_extension_cri_resmgr_reconciles_in_flight 0"), "a dropped pass leaves: {text}");
        assert!(text.contains("# TYPE gardener_extension_cri_resmgr_reconcile_duration_seconds histogram"), "{text}");
    }

    #[test]
    fn per_shoot_series_follow_the_extensions_and_go_with_them() {
        let metrics = Metrics::for_controller();
        let a = extension("shoot--p--a", Some("Error"), Some("False"));
        let b = extension("shoot--p--b", Some("Succeeded"), Some("True"));
        metrics.controller.observe_extensions([&a, &b]);
        let shoots = |m: &Metrics| {
            let mut lines = lines(m, "gardener_extension_cri_resmgr_shoot_");
            lines.sort();
            lines
        };
        assert_eq!(
            shoots(&metrics),
            [
                "gardener_extension_cri_resmgr_shoot_health{shoot_namespace=\"shoot--p--a\",status=\"False\"} 1",
                "gardener_extension_cri_resmgr_shoot_health{shoot_namespace=\"shoot--p--b\",status=\"True\"} 1",
                "gardener_extension_cri_resmgr_shoot_last_operation{shoot_namespace=\"shoot--p--a\",state=\"Error\"} 1",
                "gardener_extension_cri_resmgr_shoot_last_operation{shoot_namespace=\"shoot--p--b\",state=\"Succeeded\"} 1",
            ]
        );
        let text = metrics.encode().expect("encode");
        assert!(text.contains("gardener_extension_cri_resmgr_extensions{state=\"Error\"} 1"), "{text}");
        assert!(text.contains("gardener_extension_cri_resmgr_extensions{state=\"Succeeded\"} 1"), "{text}");
        assert!(text.contains("gardener_extension_cri_resmgr_extensions{state=\"Processing\"} 0"), "{text}");

        // a recovers, b goes: a's old series are replaced, b's removed.
        let a = extension("shoot--p--a", Some("Succeeded"), Some("True"));
        metrics.controller.observe_extensions([&a]);
        assert_eq!(
            shoots(&metrics),
            [
                "gardener_extension_cri_resmgr_shoot_health{shoot_namespace=\"shoot--p--a\",status=\"True\"} 1",
                "gardener_extension_cri_resmgr_shoot_last_operation{shoot_namespace=\"shoot--p--a\",state=\"Succeeded\"} 1",
            ]
        );
        let text = metrics.encode().expect("encode");
        assert!(text.contains("gardener_extension_cri_resmgr_extensions{state=\"Error\"} 0"), "{text}");
        let none = extension("shoot--p--c", None, None);
        metrics.controller.observe_extensions([&none]);
        let text = metrics.encode().expect("encode");
        assert!(text.contains("shoot_last_operation{shoot_namespace=\"shoot--p--c\",state=\"None\"} 1"), "{text}");
        assert!(text.contains("shoot_health{shoot_namespace=\"shoot--p--c\",status=\"Unknown\"} 1"), "{text}");
    }

    #[test]
    fn extensions_by_state_cover_gardeners_states_and_fold_unknown_ones_into_none() {
        let metrics = Metrics::for_controller();
        let unknown = extension("shoot--p--x", Some("Exploded"), None);
        let aborted = extension("shoot--p--y", Some("Aborted"), None);
        metrics.controller.observe_extensions([&unknown, &aborted]);
        let mut states = lines(&metrics, "gardener_extension_cri_resmgr_extensions{");
        states.sort();
        let expected: Vec<String> = [
            ("Aborted", 1),
            ("Error", 0),
            ("Failed", 0),
            ("None", 1),
            ("Pending", 0),
            ("Processing", 0),
            ("Succeeded", 0),
        ]
        .iter()
        .map(|(state, n)| format!("gardener_extension_cri_resmgr_extensions{{state=\"{state}\"}} {n}"))
        .collect();
        assert_eq!(states, expected);
        let text = metrics.encode().expect("encode");
        assert!(text.contains("shoot_last_operation{shoot_namespace=\"shoot--p--x\",state=\"None\"} 1"), "{text}");
    }

    #[test]
    fn webhook_answers_denials_and_the_certificate_expiry_are_exported_and_admission_has_no_reconciler_metrics() {
        let metrics = Metrics::for_admission();
        let webhook = metrics.webhook.recorder("validate-shoot");
        webhook.answered(AdmissionResult::Allowed, None, Duration::from_millis(3));
        webhook.answered(AdmissionResult::Denied, Some(DenialReason::Invalid), Duration::from_millis(4));
        webhook.failed();
        webhook.reused();
        metrics.webhook.set_certificate_expiry(1_900_000_000.0);
        let text = metrics.encode().expect("encode");
        for expected in [
            "gardener_extension_cri_resmgr_webhook_requests_total{webhook=\"validate-shoot\",result=\"allowed\"} 1",
            "gardener_extension_cri_resmgr_webhook_requests_total{webhook=\"validate-shoot\",result=\"denied\"} 1",
            "gardener_extension_cri_resmgr_webhook_requests_total{webhook=\"validate-shoot\",result=\"error\"} 1",
            "gardener_extension_cri_resmgr_webhook_denials_total{webhook=\"validate-shoot\",reason=\"invalid\"} 1",
            "gardener_extension_cri_resmgr_webhook_request_duration_seconds_count{webhook=\"validate-shoot\"} 2",
            "gardener_extension_cri_resmgr_webhook_answers_reused_total{webhook=\"validate-shoot\"} 1",
            "gardener_extension_cri_resmgr_webhook_certificate_expiry_timestamp_seconds 1900000000",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        assert!(!text.contains("reconciles"), "{text}");
    }
}
