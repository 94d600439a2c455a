//! `cri-resmgr-bench`: `make bench` (see [`cri_resmgr_testbed::bench`]), and the limit server it compares with.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cri_resmgr_testbed::bench::{self, load};
use gardener_extension_cri_resmgr::logging;

/// The extension's webhooks against the TLS limit, and the controller at scale.
#[derive(Debug, Parser)]
#[command(name = "cri-resmgr-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a test bed control plane and run the whole bench against the release build.
    Run(bench::BenchOptions),
    /// Answer every request on `--listen` with the bytes of `--response`, over TLS (the bench's limit).
    LimitServer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        response: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(options) => {
            logging::init(logging::LogFormat::Text);
            bench::run(options).await?;
        }
        Command::LimitServer { listen, cert, key, response } => {
            let tls = load::server_config(&cert, &key)?;
            let response = std::fs::read(&response)?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            load::serve_fixed(listener, tls, response.into()).await?;
        }
    }
    Ok(())
}
