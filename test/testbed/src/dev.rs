//! `make dev`: the local control plane with the extension's CRDs and the examples applied, running until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use crate::control_plane::{self as testbed, ControlPlane, WorkDir};
use crate::standins::resource_manager::{ResourceManager, Shoot, Shoots};
use gardener_extension_cri_resmgr::apis::common::LastOperationState;
use gardener_extension_cri_resmgr::apis::extensions::Extension;
use gardener_extension_cri_resmgr::commands::admission::{self, AdmissionOptions};
use gardener_extension_cri_resmgr::commands::controller::{self, ControllerOptions};
use gardener_extension_cri_resmgr::constants::MANAGED_BY;
use gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions;
use gardener_extension_cri_resmgr::runtime::registration::{ADMISSION_CONFIG_NAME, CONTROLLER_CONFIG_NAME};
use gardener_extension_cri_resmgr::runtime::serving::{ServingError, WebhookConfigMode, WebhookOptions};
use gardener_extension_cri_resmgr::runtime::signals::wait_for_shutdown_signal;

/// The namespace the extension runs in locally (gardenlet's `extension-<installation>` namespace in a seed).
pub const DEV_EXTENSION_NAMESPACE: &str = "extension-cri-resmgr";
/// How long `dev` waits for the examples' Extensions to be reconciled before it reports them.
const EXAMPLES_RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of the `dev` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    /// Directory for the control plane's data, logs and kubeconfig (replaced on start).
    #[arg(long, default_value = ".dev")]
    pub dir: PathBuf,
    /// Directory of example objects applied with `kubectl apply -f`.
    #[arg(long, default_value = "examples")]
    pub examples: PathBuf,
    /// Do not apply the examples.
    #[arg(long)]
    pub no_examples: bool,
}

/// Errors of the development environment.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Testbed(#[from] testbed::TestbedError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("`kubectl apply -f {dir}` failed ({status}):\n{stderr}")]
    Apply { dir: String, status: String, stderr: String },
    #[error("admission: {0}")]
    Admission(#[from] ServingError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the {what} stopped: {detail}")]
    Stopped { what: &'static str, detail: String },
}

/// Starts the control plane, installs the CRDs, applies the examples, prints how to use it and waits for Ctrl-C or
/// SIGTERM; then stops everything.
pub async fn run(options: DevOptions) -> Result<(), DevError> {
    let plane = ControlPlane::start(WorkDir::Kept(options.dir.clone())).await?;
    let pids = plane.pids().iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
    let pids_file = plane.dir().join("pids");
    std::fs::write(&pids_file, pids)
        .map_err(|source| DevError::Io { context: format!("writing {}", pids_file.display()), source })?;
    let client = plane.client().await?;
    testbed::install_crds(&client, crate::crds::installed().map_err(testbed::TestbedError::from)?).await?;
    let shutdown = CancellationToken::new();

    // Garden side: the admission webhooks, registered in the local apiserver (which stands in for the garden).
    let webhook = loopback_webhook_options(plane.dir().join("webhook-certs"))?;
    // Metrics on free loopback ports (both processes run in this one), printed below.
    let admission_metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, testbed::free_port()?));
    let controller_metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, testbed::free_port()?));
    let admission_server = tokio::spawn(admission::run(
        AdmissionOptions { webhook: webhook.clone(), metrics: MetricsOptions::at(admission_metrics) },
        client.clone(),
        shutdown.clone().cancelled_owned(),
    ));
    wait_for_registration(&client, ADMISSION_CONFIG_NAME, "admission server", &admission_server).await?;

    // Seed side: the controller in its own namespace, watching every shoot namespace.
    ensure_namespace(&client, DEV_EXTENSION_NAMESPACE).await?;
    let controller_options = ControllerOptions {
        metrics: MetricsOptions::at(controller_metrics),
        ..local_controller_options(osc_webhook_options(&webhook)?)
    };
    let mut controller_task = tokio::spawn(controller::run(controller_options, client.clone(), shutdown.clone()));
    wait_for_registration(&client, CONTROLLER_CONFIG_NAME, "controller", &controller_task).await?;

    // Shoot side: the same apiserver plays every shoot; gardener-resource-manager's stand-in applies the
    // ManagedResources into it and reports them, so that enabling, disabling and deleting finish. There are no nodes.
    let resource_manager = ResourceManager::new(client.clone(), Shoots::everywhere(Shoot::new(client.clone())));
    let resource_manager = tokio::spawn(resource_manager.run(shutdown.clone()));

    if !options.no_examples {
        apply_examples(&plane, &options.examples).await?;
        report_examples(&client, &controller_task).await?;
    }
    // Tells scripts and tests that everything above is done.
    let ready_file = plane.dir().join("ready");
    std::fs::write(&ready_file, plane.server_url())
        .map_err(|source| DevError::Io { context: format!("writing {}", ready_file.display()), source })?;
    let kubeconfig = std::fs::canonicalize(plane.kubeconfig_path()).unwrap_or_else(|_| plane.kubeconfig_path().into());
    println!(
        "\nLocal control plane ready at {server} (etcd + kube-apiserver, logs in {dir}).\n\n\
         Use it with:\n    export KUBECONFIG={kubeconfig}\n    kubectl get extensions,clusters,operatingsystemconfigs -A\n\n\
         Metrics: curl http://{controller_metrics}/metrics (controller), http://{admission_metrics}/metrics \
         (admission)\n\n\
         Press Ctrl-C to stop.",
        server = plane.server_url(),
        dir = plane.dir().display(),
        kubeconfig = kubeconfig.display(),
    );
    tokio::select! {
        () = wait_for_shutdown_signal() => {}
        result = &mut controller_task => {
            tracing::error!(result = ?result, "the controller stopped");
        }
    }
    println!("Stopping the extension and the local control plane.");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), admission_server).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), resource_manager).await;
    if !controller_task.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), controller_task).await;
    }
    drop(plane);
    Ok(())
}

async fn apply_examples(plane: &ControlPlane, examples: &std::path::Path) -> Result<(), DevError> {
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        // kubectl caches the API's schema by host and port: a loopback port reused from another control plane with
        // other CRDs would validate against the wrong schema.
        .arg("--cache-dir")
        .arg(plane.dir().join("kubectl-cache"))
        .arg("apply")
        .arg("-f")
        .arg(examples)
        .output()
        .await
        .map_err(|source| DevError::Io { context: "running kubectl".to_string(), source })?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    if !output.status.success() {
        return Err(DevError::Apply {
            dir: examples.display().to_string(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// Webhook options for a server on a free loopback port, registered by URL, with certificates generated into
/// `cert_dir`.
pub fn loopback_webhook_options(cert_dir: PathBuf) -> Result<WebhookOptions, DevError> {
    let port = testbed::free_port()?;
    Ok(WebhookOptions {
        webhook_bind_address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        webhook_cert_dir: cert_dir,
        webhook_cert_secret: None,
        webhook_cert_secret_namespace: None,
        generate_certs_for: vec!["127.0.0.1".to_string(), "localhost".to_string()],
        webhook_config_mode: WebhookConfigMode::Url,
        webhook_config_url: Some(format!("127.0.0.1:{port}")),
        webhook_config_namespace: DEV_EXTENSION_NAMESPACE.to_string(),
        webhook_config_service_name: String::new(),
        webhook_config_service_port: 443,
        no_webhook_registration: false,
        ..WebhookOptions::default()
    })
}

/// The controller as `make dev` runs it: in [`DEV_EXTENSION_NAMESPACE`], leader-elected, every namespace watched,
/// with its OSC webhook served as `webhook` says.
pub fn local_controller_options(webhook: WebhookOptions) -> ControllerOptions {
    ControllerOptions {
        configmap_namespace: DEV_EXTENSION_NAMESPACE.to_string(),
        leader_election_namespace: None,
        leader_election: true,
        identity: None,
        watch_namespace: None,
        ignore_operation_annotation: false,
        health_check_interval_seconds: 30,
        heartbeat_interval_seconds: 30,
        resync_interval_seconds: 3600,
        max_concurrent_reconciles: gardener_extension_cri_resmgr::controller::DEFAULT_MAX_CONCURRENT_RECONCILES,
        osc_webhook: true,
        webhook,
        metrics: MetricsOptions::disabled(),
    }
}

/// The controller's OSC webhook listens beside the admission server, with the same development certificates.
fn osc_webhook_options(admission: &WebhookOptions) -> Result<WebhookOptions, DevError> {
    let port = testbed::free_port()?;
    Ok(WebhookOptions {
        webhook_bind_address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        webhook_config_url: Some(format!("127.0.0.1:{port}")),
        ..admission.clone()
    })
}

/// Creates (or keeps) the namespace `name`.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), DevError> {
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply(MANAGED_BY), &Patch::Apply(&namespace))
        .await?;
    Ok(())
}

/// Waits until a webhook server has registered its MutatingWebhookConfiguration `name` (the admission server
/// registers one too), so that the examples are judged and mutated from the start.
pub async fn wait_for_registration<T, E>(
    client: &kube::Client,
    name: &str,
    what: &'static str,
    server: &tokio::task::JoinHandle<Result<T, E>>,
) -> Result<(), DevError> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if server.is_finished() {
            return Err(DevError::Stopped { what, detail: "see the log above".to_string() });
        }
        if api.get_opt(name).await?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DevError::Stopped { what, detail: "no webhook registration within 60s".to_string() });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (bounded) until every example Extension is reconciled and prints their states.
async fn report_examples(
    client: &kube::Client,
    controller: &tokio::task::JoinHandle<Result<(), controller::ControllerError>>,
) -> Result<(), DevError> {
    let api: Api<Extension> = Api::all(client.clone());
    let deadline = Instant::now() + EXAMPLES_RECONCILE_TIMEOUT;
    loop {
        if controller.is_finished() {
            return Err(DevError::Stopped { what: "controller", detail: "see the log above".to_string() });
        }
        let extensions = api.list(&Default::default()).await?.items;
        let settled = extensions.iter().all(|e| {
            e.status.as_ref().and_then(|s| s.last_operation.as_ref()).is_some_and(|op| {
                op.state != LastOperationState::Processing
                    && gardener_extension_cri_resmgr::contract::status::operation_annotation(e).is_none()
            })
        });
        if settled || Instant::now() > deadline {
            for extension in &extensions {
                let op = extension.status.as_ref().and_then(|s| s.last_operation.as_ref());
                println!(
                    "Extension {}/{}: {}",
                    extension.metadata.namespace.as_deref().unwrap_or_default(),
                    extension.metadata.name.as_deref().unwrap_or_default(),
                    op.map(|op| format!("{} {:?}: {}", op.type_, op.state, op.description))
                        .unwrap_or_else(|| "not reconciled yet".to_string())
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
