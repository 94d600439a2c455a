//! `make dev`: the local control plane with the extension's CRDs and the examples applied, running until Ctrl-C.

use std::path::PathBuf;

use crate::testbed::{self, ControlPlane, WorkDir};

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
    testbed::install_crds(&client, crate::crds::all()).await?;
    if !options.no_examples {
        apply_examples(&plane, &options.examples).await?;
    }
    // Tells scripts and tests that everything above is done.
    let ready_file = plane.dir().join("ready");
    std::fs::write(&ready_file, plane.server_url())
        .map_err(|source| DevError::Io { context: format!("writing {}", ready_file.display()), source })?;
    let kubeconfig = std::fs::canonicalize(plane.kubeconfig_path()).unwrap_or_else(|_| plane.kubeconfig_path().into());
    println!(
        "\nLocal control plane ready at {server} (etcd + kube-apiserver, logs in {dir}).\n\n\
         Use it with:\n    export KUBECONFIG={kubeconfig}\n    kubectl get extensions,clusters,operatingsystemconfigs -A\n\n\
         Press Ctrl-C to stop.",
        server = plane.server_url(),
        dir = plane.dir().display(),
        kubeconfig = kubeconfig.display(),
    );
    wait_for_shutdown_signal().await;
    println!("Stopping the local control plane.");
    drop(plane);
    Ok(())
}

async fn apply_examples(plane: &ControlPlane, examples: &std::path::Path) -> Result<(), DevError> {
    let output = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
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

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
}
