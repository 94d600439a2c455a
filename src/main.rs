use clap::{Parser, Subcommand};
use gardener_extension_cri_resmgr::{admission, controller, crds, dev, images, logging, render};

/// Gardener extension for intel's CRI-Resource-Manager.
#[derive(Debug, Parser)]
#[command(name = "gardener-extension-cri-resmgr", version, about)]
struct Cli {
    /// Log line format: JSON for production, text for development.
    #[arg(long, global = true, value_enum, env = "LOG_FORMAT", default_value = "json")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Garden side: serve the Shoot validating/defaulting webhooks and register them (with CA bundle).
    Admission(admission::AdmissionOptions),
    /// Seed side: reconcile Extensions of type cri-resmgr-extension (leader-elected), report health and heartbeat.
    Controller(controller::ControllerOptions),
    /// Print the CustomResourceDefinitions of the Gardener kinds the extension uses (for a local control plane).
    Crds,
    /// Offline preview: print what the extension would deploy into a Shoot (or Cluster) file's shoot.
    Render(render::RenderOptions),
    /// Development only: start a local etcd + kube-apiserver, install the CRDs, apply the examples, run until Ctrl-C.
    Dev(dev::DevOptions),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Admission(options) => {
            let client = admission::default_client().await?;
            admission::run(options, client, dev::wait_for_shutdown_signal()).await?;
        }
        Command::Controller(options) => {
            let client = admission::default_client().await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                dev::wait_for_shutdown_signal().await;
                trigger.cancel();
            });
            controller::run(options, client, shutdown).await?;
        }
        Command::Crds => print!("{}", crds::all_as_yaml()?),
        Command::Render(options) => {
            let images = images::ImageVector::load()?;
            print!("{}", render::render(&options, &images)?);
        }
        Command::Dev(options) => dev::run(options).await?,
    }
    Ok(())
}
