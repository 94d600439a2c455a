use clap::{Parser, Subcommand};

/// Gardener extension for intel's CRI-Resource-Manager.
#[derive(Debug, Parser)]
#[command(name = "gardener-extension-cri-resmgr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of the Gardener kinds the extension uses (for a local control plane).
    Crds,
    /// Development only: start a local etcd + kube-apiserver, install the CRDs, apply the examples, run until Ctrl-C.
    Dev(gardener_extension_cri_resmgr::dev::DevOptions),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => {
            print!("{}", gardener_extension_cri_resmgr::crds::all_as_yaml()?);
        }
        Command::Dev(options) => gardener_extension_cri_resmgr::dev::run(options).await?,
    }
    Ok(())
}
