use clap::{Parser, Subcommand};
use gardener_extension_cri_resmgr::commands::{admission, controller};
use gardener_extension_cri_resmgr::runtime::inputs::load_image_vector;
use gardener_extension_cri_resmgr::runtime::server::build_admission_runtime;
use gardener_extension_cri_resmgr::runtime::serving::default_client;
use gardener_extension_cri_resmgr::runtime::signals::wait_for_shutdown_signal;
use gardener_extension_cri_resmgr::{logging, render};

/// With the `mimalloc` feature the process allocates through mimalloc instead of glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Offline preview: print what the extension would deploy into a Shoot (or Cluster) file's shoot.
    Render(render::RenderOptions),
}

fn main() -> anyhow::Result<()> {
    // The webhook servers decide reviews on the threads that read them, which need the admission stack.
    build_admission_runtime(None, None)?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Admission(options) => {
            let client = default_client().await?;
            admission::run(options, client, wait_for_shutdown_signal()).await?;
        }
        Command::Controller(options) => {
            let client = default_client().await?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                wait_for_shutdown_signal().await;
                trigger.cancel();
            });
            controller::run(options, client, shutdown).await?;
        }
        Command::Render(options) => {
            let images = load_image_vector()?;
            print!("{}", render::render(&options, &images)?);
        }
    }
    Ok(())
}
