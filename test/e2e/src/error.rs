//! The failures every part of the end-to-end setup shares — a Kubernetes call or an I/O operation, each with what
//! was being done — so that the chart and the topology errors carry them once.

/// A failed step of the setup and what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Names a failed Kubernetes call `what`.
pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> StepError {
    let what = what.into();
    move |source| StepError::Kube { what, source }
}

/// Names a failed I/O operation `what`.
pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StepError {
    let what = what.into();
    move |source| StepError::Io { what, source }
}
