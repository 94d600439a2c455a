//! `cri-resmgr-dev`: the local test bed's commands (`make dev`, `make crds`).

use clap::{Parser, Subcommand};
use cri_resmgr_testbed::{crds, dev};
use gardener_extension_cri_resmgr::logging;

/// The local development environment of gardener-extension-cri-resmgr.
#[derive(Debug, Parser)]
#[command(name = "cri-resmgr-dev", version, about)]
struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, env = "LOG_FORMAT", default_value = "text")]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local etcd + kube-apiserver, install the CRDs, run the admission server and the controller, apply the
    /// examples, and run until Ctrl-C.
    Dev(dev::DevOptions),
    /// Print the CustomResourceDefinitions of the Gardener kinds the extension uses (for a local control plane).
    Crds,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Dev(options) => dev::run(options).await?,
        Command::Crds => print!("{}", crds::all_as_yaml()?),
    }
    Ok(())
}
