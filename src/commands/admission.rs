//! The `admission` command: runs in the garden runtime cluster, serves the Shoot validating and defaulting webhooks
//! and registers their configurations (with the CA bundle) in the cluster it talks to (the virtual garden).

use crate::runtime::metrics::{self, Metrics, MetricsOptions};
use crate::runtime::registration::{self, ClientConfigMode, PATH_DEFAULT_SHOOT, PATH_VALIDATE_SHOOT};
use crate::runtime::server::WebhookServer;
use crate::runtime::serving::{ServingError, WebhookOptions, serve_registered};
use crate::webhook::shoot::{ShootDefaulter, ShootValidator};

/// Options of the `admission` command.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionOptions {
    #[command(flatten)]
    pub webhook: WebhookOptions,
    #[command(flatten)]
    pub metrics: MetricsOptions,
}

/// Registers the Shoot webhooks with the current CA bundle.
pub async fn register_shoot_webhooks(
    client: &kube::Client,
    mode: &ClientConfigMode,
    ca_bundle: &[u8],
) -> Result<(), ServingError> {
    let register_err =
        |source| ServingError::Register { name: registration::ADMISSION_CONFIG_NAME.to_string(), source };
    registration::apply_mutating(client, &registration::shoot_mutating_configuration(mode, ca_bundle))
        .await
        .map_err(register_err)?;
    registration::apply_validating(client, &registration::shoot_validating_configuration(mode, ca_bundle))
        .await
        .map_err(register_err)?;
    tracing::info!(config = registration::ADMISSION_CONFIG_NAME, "registered the Shoot webhooks");
    Ok(())
}

/// Runs the admission server until `shutdown` resolves.
pub async fn run(
    options: AdmissionOptions,
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServingError> {
    let webhook = options.webhook;
    let metrics = Metrics::for_admission();
    // Stopped with the process: the certificate and the requests it reports on are the webhook server's.
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let _metrics_server = metrics::start_server(&options.metrics, &metrics, async move {
        let _ = metrics_stopped.await;
    })
    .await?;
    let _stop_metrics = stop_metrics;
    // The one owner of this process's certificates; it stops when this handle goes out of scope.
    let certificates = webhook.start_certificates(&client).await?;
    let mut server = WebhookServer::new(webhook.server_config()).with_metrics(metrics.webhook.clone());
    server.register(PATH_VALIDATE_SHOOT, ShootValidator::default())?;
    server.register(PATH_DEFAULT_SHOOT, ShootDefaulter)?;
    let mode = webhook.client_config_mode()?;
    let register = move |ca_bundle: Vec<u8>| {
        let client = client.clone();
        let mode = mode.clone();
        async move { register_shoot_webhooks(&client, &mode, &ca_bundle).await }
    };
    serve_registered(&webhook, server, &certificates, "admission", register, shutdown).await
}
