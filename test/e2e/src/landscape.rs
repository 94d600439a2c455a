//! The landscape the scenarios run in, and what they need from it: the garden's Shoot API in a project namespace,
//! a seed client, a shoot client, "let the Shoot be reconciled", "delete the Shoot", and observations of the nodes
//! (a path exists, a file's content, kubelet's container runtime endpoint).
//!
//! - [`Landscape::Local`]: the [`Topology`] of this crate; gardenlet's stand-in carries a Shoot to the seed when
//!   the scenario asks for a reconcile, and the nodes are node-agent's directory trees.
//! - [`Landscape::Gardener`]: a real Gardener (a local Gardener on kind, `E2E_GARDEN_KUBECONFIG`): nothing is
//!   started, gardenlet reconciles on its own and the scenario waits until the Shoot says it is done
//!   ([`reconcile_progress`]); the shoot is reached through the Shoot's `adminkubeconfig` subresource, and the nodes
//!   of provider-local are pods in the seed (`machine-<machine>`, named as their Node), observed by exec.
//!
//! The judgements and encodings of the Gardener mode are pure functions, unit-tested here; that mode itself cannot
//! run where `make e2e` runs (no kind, no Gardener).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use cri_resmgr_testbed::standins::gardenlet::{ANNOTATION_CONFIRM_DELETION, node_name};
use cri_resmgr_testbed::standins::node_agent::{NodeAgentError, on_node};
use gardener_extension_cri_resmgr::apis::common::{LastOperationState, LastOperationType};
use gardener_extension_cri_resmgr::apis::core::Shoot;
use gardener_extension_cri_resmgr::constants::{
    KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_CONFIG_PATH, KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT,
    KUBELET_UNIT_NAME, LABEL_WORKER_POOL, LEADER_ELECTION_LEASE_NAME,
};
use gardener_extension_cri_resmgr::domain::node::command_line_arguments;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::garden::Target;
use crate::topology::{Topology, TopologyError};

/// The project namespace of the local landscape (its garden has no projects; any `garden-<project>` does).
pub const LOCAL_PROJECT_NAMESPACE: &str = "garden-dev";
/// The Shoot subresource that hands out an admin kubeconfig of the shoot (`AdminKubeconfigRequest`).
pub const ADMIN_KUBECONFIG_SUBRESOURCE: &str = "adminkubeconfig";
/// The API of `AdminKubeconfigRequest` (gardener's `pkg/apis/authentication/v1alpha1`).
pub const AUTHENTICATION_API_VERSION: &str = "authentication.gardener.cloud/v1alpha1";
/// The kind the `adminkubeconfig` subresource takes and answers with.
pub const ADMIN_KUBECONFIG_REQUEST_KIND: &str = "AdminKubeconfigRequest";
/// How long a requested admin kubeconfig is valid; longer than the longest scenario (Gardener's own e2e asks
/// for two hours, too).
pub const ADMIN_KUBECONFIG_EXPIRATION_SECONDS: i64 = 7200;
/// `status.technicalID`: the Shoot's namespace in its seed.
pub const SHOOT_STATUS_TECHNICAL_ID: &str = "technicalID";
/// `status.observedGeneration`: the generation gardenlet last picked up.
pub const SHOOT_STATUS_OBSERVED_GENERATION: &str = "observedGeneration";
/// `status.isHibernated`: gardenlet's word that the hibernation (or the wake-up) is complete.
pub const SHOOT_STATUS_IS_HIBERNATED: &str = "isHibernated";
/// provider-local's machine pods are named `machine-<machine name>`, and so is the machine's Node.
pub const MACHINE_POD_PREFIX: &str = "machine-";
/// The container of a provider-local machine pod that is the machine (`MachinePodContainerName`).
pub const MACHINE_CONTAINER: &str = "node";
/// Newer provider-local keeps the machine pods in `infra-<technicalID>` (its infrastructure namespace), older
/// releases in the shoot's seed namespace itself.
pub const MACHINE_NAMESPACE_PREFIX: &str = "infra-";
/// The credentials binding a local Gardener creates in its project (`example/provider-local/shoot.yaml`).
pub const LOCAL_GARDENER_CREDENTIALS_BINDING: &str = "local";
/// `spec.credentialsBindingName`: which credentials of the project the Shoot's infrastructure uses.
pub const SHOOT_SPEC_CREDENTIALS_BINDING: &str = "credentialsBindingName";
/// Makes the nodes of a local Gardener apply their OSC at once instead of after a random delay.
pub const ANNOTATION_CLOUD_CONFIG_MAX_DELAY: &str = "shoot.gardener.cloud/cloud-config-execution-max-delay-seconds";
/// What the exec API reports for a command that exited zero (`metav1.Status` `status`).
const EXEC_SUCCESS: &str = "Success";
/// What the exec API reports for a command that exited non-zero (`metav1.Status` `reason`).
const EXEC_NON_ZERO_EXIT: &str = "NonZeroExitCode";
/// The cause of [`EXEC_NON_ZERO_EXIT`] that carries the exit code as its message.
const EXEC_EXIT_CODE_CAUSE: &str = "ExitCode";
/// A real shoot's creation (machines, control plane) takes minutes on kind; so does its deletion.
const SHOOT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a real landscape gets to converge on what a scenario observes (images are pulled, pods scheduled).
pub const GARDENER_CONVERGE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const POLL: Duration = Duration::from_secs(5);

/// What can go wrong with the landscape.
#[derive(Debug, thiserror::Error)]
pub enum LandscapeError {
    #[error(transparent)]
    Topology(#[from] Box<TopologyError>),
    #[error("gardenlet's stand-in: {0}")]
    Gardenlet(#[from] cri_resmgr_testbed::standins::gardenlet::GardenletError),
    #[error(transparent)]
    NodeAgent(#[from] NodeAgentError),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {detail}")]
    Kubeconfig { what: String, detail: String },
    #[error(
        "a real Gardener needs ${} too: the scenarios observe the seed (Extension, ManagedResources) and the \
         machines (pods in the seed)",
        crate::garden::ENV_SEED_KUBECONFIG
    )]
    NoSeedKubeconfig,
    #[error("Shoot {shoot}: {description}")]
    ShootFailed { shoot: String, description: String },
    #[error("Shoot {shoot} did not settle within {timeout:?}: {last}")]
    ShootTimeout { shoot: String, timeout: Duration, last: String },
    #[error("the AdminKubeconfigRequest for {shoot} came back without a kubeconfig")]
    NoAdminKubeconfig { shoot: String },
    #[error("node {node}: {detail}")]
    Exec { node: String, detail: String },
    #[error("no leader-election Lease {LEADER_ELECTION_LEASE_NAME} with a holder in the seed")]
    NoLeader,
    #[error("no machine pod {node} in {namespaces:?}")]
    NoMachine { node: String, namespaces: Vec<String> },
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> LandscapeError {
    let what = what.into();
    move |source| LandscapeError::Kube { what, source }
}

/// Where a Shoot stands, as a scenario waiting for it judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Nothing more to wait for.
    Done,
    /// Still under way: what the Shoot says now (shown when the wait times out).
    Waiting(String),
    /// gardenlet gave up or hit an error: its description.
    Failed(String),
}

fn status_field<'a>(shoot: &'a Shoot, field: &str) -> Option<&'a serde_json::Value> {
    shoot.status.as_ref()?.other.get(field)
}

/// Whether gardenlet has finished reconciling the Shoot as it is now: it observed the current generation, its last
/// operation is a Create or Reconcile that Succeeded at 100 %, and its hibernation state is the one the spec asks
/// for. A Failed last operation fails the wait with gardenlet's description; an Error one is waited through, since
/// gardenlet retries it.
pub fn reconcile_progress(shoot: &Shoot) -> Progress {
    let generation = shoot.metadata.generation.unwrap_or_default();
    let observed = status_field(shoot, SHOOT_STATUS_OBSERVED_GENERATION).and_then(serde_json::Value::as_i64);
    if observed != Some(generation) {
        return Progress::Waiting(format!("gardenlet observed generation {observed:?} of {generation}"));
    }
    let Some(last) = shoot.status.as_ref().and_then(|status| status.last_operation.as_ref()) else {
        return Progress::Waiting("no last operation yet".to_string());
    };
    let summary = format!("{:?} {:?} {} %: {}", last.type_, last.state, last.progress, last.description);
    match last.state {
        LastOperationState::Failed => return Progress::Failed(summary),
        // gardenlet retries an operation that ended in Error (often a transient one, such as a webhook or a
        // machine not ready yet); only Failed is final. A lasting Error ends in the wait's timeout, which shows it.
        LastOperationState::Error => return Progress::Waiting(format!("retrying after an error: {summary}")),
        LastOperationState::Succeeded if last.progress == 100 => {}
        _ => return Progress::Waiting(summary),
    }
    if !matches!(last.type_, LastOperationType::Create | LastOperationType::Reconcile) {
        return Progress::Waiting(summary);
    }
    let wants_hibernation = shoot.spec.hibernation.as_ref().and_then(|h| h.enabled).unwrap_or(false);
    let hibernated = status_field(shoot, SHOOT_STATUS_IS_HIBERNATED).and_then(serde_json::Value::as_bool);
    if hibernated.unwrap_or(false) != wants_hibernation {
        return Progress::Waiting(format!("isHibernated {hibernated:?}, the spec asks for {wants_hibernation}"));
    }
    Progress::Done
}

/// Whether a Shoot's deletion is over (`None`: it is gone). A Failed deletion fails the wait.
pub fn deletion_progress(shoot: Option<&Shoot>) -> Progress {
    let Some(shoot) = shoot else { return Progress::Done };
    match shoot.status.as_ref().and_then(|status| status.last_operation.as_ref()) {
        Some(last) if last.type_ == LastOperationType::Delete && last.state == LastOperationState::Failed => {
            Progress::Failed(format!("deletion failed: {}", last.description))
        }
        Some(last) => Progress::Waiting(format!("{:?} {:?} {} %", last.type_, last.state, last.progress)),
        None => Progress::Waiting("the Shoot is still there".to_string()),
    }
}

/// The Shoot's namespace in its seed: `status.technicalID` when gardenlet has set it, else the name it derives it
/// from (`shoot--<project>--<name>`).
pub fn seed_namespace(shoot: &Shoot) -> String {
    match status_field(shoot, SHOOT_STATUS_TECHNICAL_ID).and_then(serde_json::Value::as_str) {
        Some(technical_id) if !technical_id.is_empty() => technical_id.to_string(),
        _ => cri_resmgr_testbed::standins::gardenlet::seed_namespace(shoot),
    }
}

/// Where provider-local may keep the machine pods of the shoot whose seed namespace is `seed_namespace`, newest
/// layout first.
pub fn machine_namespaces(seed_namespace: &str) -> Vec<String> {
    vec![format!("{MACHINE_NAMESPACE_PREFIX}{seed_namespace}"), seed_namespace.to_string()]
}

/// `authentication.gardener.cloud/v1alpha1` `AdminKubeconfigRequest`: the request's spec, and the response's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminKubeconfigRequest {
    pub api_version: String,
    pub kind: String,
    pub spec: AdminKubeconfigRequestSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AdminKubeconfigRequestStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminKubeconfigRequestSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminKubeconfigRequestStatus {
    /// The kubeconfig, base64 (a Go `[]byte`).
    #[serde(default)]
    pub kubeconfig: String,
    #[serde(default)]
    pub expiration_timestamp: Option<String>,
}

/// The request for an admin kubeconfig valid for `expiration_seconds`.
pub fn admin_kubeconfig_request(expiration_seconds: i64) -> AdminKubeconfigRequest {
    AdminKubeconfigRequest {
        api_version: AUTHENTICATION_API_VERSION.to_string(),
        kind: ADMIN_KUBECONFIG_REQUEST_KIND.to_string(),
        spec: AdminKubeconfigRequestSpec { expiration_seconds: Some(expiration_seconds) },
        status: None,
    }
}

/// The kubeconfig an answered `AdminKubeconfigRequest` carries.
pub fn admin_kubeconfig(
    shoot: &str,
    response: &AdminKubeconfigRequest,
) -> Result<kube::config::Kubeconfig, LandscapeError> {
    let encoded = response.status.as_ref().map(|status| status.kubeconfig.as_str()).unwrap_or_default();
    if encoded.is_empty() {
        return Err(LandscapeError::NoAdminKubeconfig { shoot: shoot.to_string() });
    }
    let what = format!("the admin kubeconfig of {shoot}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| LandscapeError::Kubeconfig { what: what.clone(), detail: e.to_string() })?;
    let text = String::from_utf8(bytes)
        .map_err(|e| LandscapeError::Kubeconfig { what: what.clone(), detail: e.to_string() })?;
    kube::config::Kubeconfig::from_yaml(&text).map_err(|e| LandscapeError::Kubeconfig { what, detail: e.to_string() })
}

/// The exit code of a command run by exec, from the Status the apiserver sends when it ends.
pub fn exit_code(status: &Status) -> Result<i32, String> {
    if status.status.as_deref() == Some(EXEC_SUCCESS) {
        return Ok(0);
    }
    if status.reason.as_deref() == Some(EXEC_NON_ZERO_EXIT) {
        let causes = status.details.as_ref().and_then(|details| details.causes.as_ref());
        let code = causes
            .into_iter()
            .flatten()
            .find(|cause| cause.reason.as_deref() == Some(EXEC_EXIT_CODE_CAUSE))
            .and_then(|cause| cause.message.as_deref()?.parse().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(format!("the command did not run: {:?} {:?}", status.reason, status.message))
}

/// kubelet's container runtime endpoint from `systemctl cat kubelet.service` (the unit and its drop-ins, each
/// after a `# <path>` line) and kubelet's config file: the last `--container-runtime-endpoint=` of the `ExecStart=`
/// systemd runs (an empty `ExecStart=` in a drop-in clears the earlier ones), else the config file's
/// `containerRuntimeEndpoint`. The command line is split the way the extension's own OSC webhook reads it.
pub fn kubelet_runtime_endpoint(systemctl_cat: &str, kubelet_config: Option<&str>) -> Option<String> {
    let exec_start = service_exec_start(systemctl_cat);
    let flag = exec_start.as_deref().and_then(|value| {
        command_line_arguments(value)
            .into_iter()
            .filter_map(|argument| {
                argument.trim_matches(|c| c == '"' || c == '\'').strip_prefix(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT)
            })
            .next_back()
            .map(str::to_string)
    });
    flag.or_else(|| {
        let config: serde_json::Value = gardener_extension_cri_resmgr::yaml::from_str(kubelet_config?).ok()?;
        config[KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT].as_str().map(str::to_string)
    })
}

/// The value of the `ExecStart=` of `[Service]` systemd would run, over a unit and its drop-ins in order:
/// continuation lines (ending in `\`) joined, an empty value resetting the list.
fn service_exec_start(text: &str) -> Option<String> {
    let mut current: Option<String> = None;
    let mut in_service = false;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('#') {
            // `systemctl cat` starts each file with `# <path>`: a new file starts outside any section.
            if trimmed.starts_with("# /") {
                in_service = false;
            }
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            in_service = header.trim_end_matches(']') == "Service";
            continue;
        }
        let mut logical = line.to_string();
        while logical.trim_end().ends_with('\\') {
            let Some(next) = lines.next() else { break };
            logical.push('\n');
            logical.push_str(next);
        }
        let Some((key, value)) = logical.split_once('=') else { continue };
        if in_service && key.trim() == "ExecStart" {
            let value = value.trim();
            current = (!value.is_empty()).then(|| value.to_string());
        }
    }
    current
}

/// Whether an object's `resources.gardener.cloud/origin` names a ManagedResource in `namespace` (in a seed).
/// gardener-resource-manager writes `<namespace>/<name>`, prefixed with `<cluster ID>:` when it knows the seed's
/// cluster identity (as in a real landscape).
pub fn origin_in_namespace(origin: &str, namespace: &str) -> bool {
    let key = origin.rsplit_once(':').map_or(origin, |(_, key)| key);
    key.split_once('/').is_some_and(|(origin_namespace, _)| origin_namespace == namespace)
}

/// The example Shoot made fit for a local Gardener (`make kind-up gardener-up`): its credentials binding, the
/// cloud profile's default machine image and Kubernetes version (the example pins versions of the local test bed),
/// and no random delay before the machines apply their OSC.
pub fn for_local_gardener(shoot: &mut Shoot) {
    shoot.spec.other.insert(SHOOT_SPEC_CREDENTIALS_BINDING.to_string(), LOCAL_GARDENER_CREDENTIALS_BINDING.into());
    shoot.spec.kubernetes.version = None;
    for worker in &mut shoot.spec.provider.workers {
        worker.machine.image = None;
    }
    shoot
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_CLOUD_CONFIG_MAX_DELAY.to_string(), "0".to_string());
}

/// A real Gardener's garden and seed.
pub struct Gardener {
    pub garden: kube::Client,
    pub seed: kube::Client,
    pub project_namespace: String,
    /// The admin client of each shoot asked for so far.
    shoot_clients: tokio::sync::Mutex<BTreeMap<String, kube::Client>>,
}

async fn client_from(path: &str) -> Result<kube::Client, LandscapeError> {
    let what = format!("the kubeconfig {path}");
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .map_err(|e| LandscapeError::Kubeconfig { what: what.clone(), detail: e.to_string() })?;
    client_of(&what, kubeconfig).await
}

async fn client_of(what: &str, kubeconfig: kube::config::Kubeconfig) -> Result<kube::Client, LandscapeError> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| LandscapeError::Kubeconfig { what: what.to_string(), detail: e.to_string() })?;
    kube::Client::try_from(config).map_err(kube_error(what))
}

impl Gardener {
    /// Connects to the garden and the seed; a Gardener without a seed kubeconfig is refused.
    pub async fn connect(
        garden_kubeconfig: &str,
        seed_kubeconfig: Option<&str>,
        project_namespace: &str,
    ) -> Result<Gardener, LandscapeError> {
        let seed_kubeconfig = seed_kubeconfig.ok_or(LandscapeError::NoSeedKubeconfig)?;
        Ok(Gardener {
            garden: client_from(garden_kubeconfig).await?,
            seed: client_from(seed_kubeconfig).await?,
            project_namespace: project_namespace.to_string(),
            shoot_clients: tokio::sync::Mutex::default(),
        })
    }

    fn shoots(&self) -> Api<Shoot> {
        Api::namespaced(self.garden.clone(), &self.project_namespace)
    }

    /// Waits until gardenlet has reconciled the Shoot `name` as it is now ([`reconcile_progress`]).
    pub async fn wait_until_reconciled(&self, name: &str) -> Result<Shoot, LandscapeError> {
        let shoots = self.shoots();
        let deadline = tokio::time::Instant::now() + SHOOT_TIMEOUT;
        loop {
            let shoot = shoots.get(name).await.map_err(kube_error(format!("reading the Shoot {name}")))?;
            match reconcile_progress(&shoot) {
                Progress::Done => return Ok(shoot),
                Progress::Failed(description) => {
                    return Err(LandscapeError::ShootFailed { shoot: name.to_string(), description });
                }
                Progress::Waiting(last) if tokio::time::Instant::now() > deadline => {
                    return Err(LandscapeError::ShootTimeout { shoot: name.to_string(), timeout: SHOOT_TIMEOUT, last });
                }
                Progress::Waiting(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Deletes the Shoot the way a user does (the deletion confirmation first) and waits until it is gone.
    pub async fn delete_shoot(&self, name: &str) -> Result<(), LandscapeError> {
        let shoots = self.shoots();
        let confirm = serde_json::json!({"metadata": {"annotations": {ANNOTATION_CONFIRM_DELETION: "true"}}});
        shoots
            .patch(name, &PatchParams::default(), &Patch::Merge(&confirm))
            .await
            .map_err(kube_error(format!("confirming the deletion of {name}")))?;
        shoots.delete(name, &DeleteParams::default()).await.map_err(kube_error(format!("deleting {name}")))?;
        self.shoot_clients.lock().await.remove(name);
        let deadline = tokio::time::Instant::now() + SHOOT_TIMEOUT;
        loop {
            let shoot = shoots.get_opt(name).await.map_err(kube_error(format!("reading the Shoot {name}")))?;
            match deletion_progress(shoot.as_ref()) {
                Progress::Done => return Ok(()),
                Progress::Failed(description) => {
                    return Err(LandscapeError::ShootFailed { shoot: name.to_string(), description });
                }
                Progress::Waiting(last) if tokio::time::Instant::now() > deadline => {
                    return Err(LandscapeError::ShootTimeout { shoot: name.to_string(), timeout: SHOOT_TIMEOUT, last });
                }
                Progress::Waiting(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// An admin client of the shoot `name`, from its `adminkubeconfig` subresource.
    pub async fn shoot_client(&self, name: &str) -> Result<kube::Client, LandscapeError> {
        let mut clients = self.shoot_clients.lock().await;
        if let Some(client) = clients.get(name) {
            return Ok(client.clone());
        }
        let request = admin_kubeconfig_request(ADMIN_KUBECONFIG_EXPIRATION_SECONDS);
        let response: AdminKubeconfigRequest = self
            .shoots()
            .create_subresource(ADMIN_KUBECONFIG_SUBRESOURCE, name, &PostParams::default(), &request)
            .await
            .map_err(kube_error(format!("requesting an admin kubeconfig of {name}")))?;
        let client = client_of(&format!("the admin kubeconfig of {name}"), admin_kubeconfig(name, &response)?).await?;
        clients.insert(name.to_string(), client.clone());
        Ok(client)
    }

    /// Runs `command` on the machine `node` (its pod's `node` container); its exit code and standard output.
    pub async fn run_on_node(
        &self,
        seed_namespace: &str,
        node: &str,
        command: &[&str],
    ) -> Result<(i32, String), LandscapeError> {
        let exec_error = |detail: String| LandscapeError::Exec { node: node.to_string(), detail };
        let namespaces = machine_namespaces(seed_namespace);
        let mut pods = None;
        for namespace in &namespaces {
            let api: Api<Pod> = Api::namespaced(self.seed.clone(), namespace);
            if api.get_opt(node).await.map_err(kube_error(format!("reading the machine pod {node}")))?.is_some() {
                pods = Some(api);
                break;
            }
        }
        let pods = pods.ok_or_else(|| LandscapeError::NoMachine { node: node.to_string(), namespaces })?;
        let params = AttachParams::default().container(MACHINE_CONTAINER).stdin(false).stdout(true).stderr(false);
        let mut process = pods
            .exec(node, command.iter().map(|part| part.to_string()).collect::<Vec<_>>(), &params)
            .await
            .map_err(kube_error(format!("exec {command:?} on {node}")))?;
        let mut stdout = String::new();
        if let Some(mut out) = process.stdout() {
            out.read_to_string(&mut stdout).await.map_err(|e| exec_error(format!("reading {command:?}: {e}")))?;
        }
        let status = match process.take_status() {
            Some(status) => status.await,
            None => None,
        };
        let status = status.ok_or_else(|| exec_error(format!("{command:?} ended without a status")))?;
        let code = exit_code(&status).map_err(exec_error)?;
        Ok((code, stdout))
    }

    /// Whether `path` exists on the machine `node`.
    pub async fn path_exists(&self, seed_namespace: &str, node: &str, path: &str) -> Result<bool, LandscapeError> {
        match self.run_on_node(seed_namespace, node, &["test", "-e", path]).await? {
            (0, _) => Ok(true),
            (1, _) => Ok(false),
            (code, _) => {
                Err(LandscapeError::Exec { node: node.to_string(), detail: format!("test -e {path}: exit {code}") })
            }
        }
    }

    /// The file at `path` on the machine `node` (empty when it is missing).
    pub async fn read_file(&self, seed_namespace: &str, node: &str, path: &str) -> Result<String, LandscapeError> {
        let (code, content) = self.run_on_node(seed_namespace, node, &["cat", path]).await?;
        Ok(if code == 0 { content } else { String::new() })
    }

    /// kubelet's container runtime endpoint on the machine `node`, from its unit and drop-ins as systemd has them
    /// and its config file.
    pub async fn runtime_endpoint(&self, seed_namespace: &str, node: &str) -> Result<Option<String>, LandscapeError> {
        let (code, units) = self.run_on_node(seed_namespace, node, &["systemctl", "cat", KUBELET_UNIT_NAME]).await?;
        if code != 0 {
            return Err(LandscapeError::Exec { node: node.to_string(), detail: format!("systemctl cat: exit {code}") });
        }
        let config = self.read_file(seed_namespace, node, KUBELET_CONFIG_PATH).await?;
        Ok(kubelet_runtime_endpoint(&units, Some(&config).filter(|c| !c.is_empty()).map(String::as_str)))
    }

    /// The Nodes of the shoot's worker pool `pool`.
    pub async fn nodes(&self, shoot: &kube::Client, pool: &str) -> Result<Vec<String>, LandscapeError> {
        let nodes: Api<Node> = Api::all(shoot.clone());
        let selector = format!("{LABEL_WORKER_POOL}={pool}");
        let list = nodes.list(&ListParams::default().labels(&selector)).await.map_err(kube_error("listing Nodes"))?;
        let mut names: Vec<String> = list.items.into_iter().filter_map(|node| node.metadata.name).collect();
        names.sort();
        Ok(names)
    }

    /// The extension's leader-election Lease in the seed (in gardenlet's `extension-*` namespace): its namespace
    /// and holder (a pod name).
    pub async fn leader(&self) -> Result<Option<(String, String)>, LandscapeError> {
        let leases: Api<Lease> = Api::all(self.seed.clone());
        let params = ListParams::default().fields(&format!("metadata.name={LEADER_ELECTION_LEASE_NAME}"));
        let list = leases.list(&params).await.map_err(kube_error("listing the leader-election Lease"))?;
        Ok(list.items.into_iter().find_map(|lease| Some((lease.metadata.namespace?, lease.spec?.holder_identity?))))
    }

    /// Kills the leading replica as SIGKILL would: its pod deleted with grace period 0, its Lease not released.
    pub async fn kill_leader(&self) -> Result<String, LandscapeError> {
        let (namespace, holder) = self.leader().await?.ok_or(LandscapeError::NoLeader)?;
        let pods: Api<Pod> = Api::namespaced(self.seed.clone(), &namespace);
        let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
        pods.delete(&holder, &params).await.map_err(kube_error(format!("deleting the leader {holder}")))?;
        Ok(holder)
    }
}

/// The landscape the scenarios run in.
pub enum Landscape {
    Local(Box<Topology>),
    Gardener(Box<Gardener>),
}

impl Landscape {
    /// Starts the local landscape, or connects to the real Gardener `target` names.
    pub async fn start(target: &Target) -> Result<Landscape, LandscapeError> {
        match target {
            Target::Local => Ok(Landscape::Local(Box::new(Topology::start().await.map_err(Box::new)?))),
            Target::Gardener { garden_kubeconfig, seed_kubeconfig, project_namespace } => {
                let gardener =
                    Gardener::connect(garden_kubeconfig, seed_kubeconfig.as_deref(), project_namespace).await?;
                Ok(Landscape::Gardener(Box::new(gardener)))
            }
        }
    }

    pub fn garden_client(&self) -> &kube::Client {
        match self {
            Landscape::Local(topology) => &topology.garden_client,
            Landscape::Gardener(gardener) => &gardener.garden,
        }
    }

    pub fn seed_client(&self) -> &kube::Client {
        match self {
            Landscape::Local(topology) => &topology.seed_client,
            Landscape::Gardener(gardener) => &gardener.seed,
        }
    }

    pub fn project_namespace(&self) -> &str {
        match self {
            Landscape::Local(_) => LOCAL_PROJECT_NAMESPACE,
            Landscape::Gardener(gardener) => &gardener.project_namespace,
        }
    }

    /// The Shoots of the project.
    pub fn shoots(&self) -> Api<Shoot> {
        Api::namespaced(self.garden_client().clone(), self.project_namespace())
    }

    /// The shoot of the Shoot `name` (locally the one shoot apiserver).
    pub async fn shoot_client(&self, name: &str) -> Result<kube::Client, LandscapeError> {
        match self {
            Landscape::Local(topology) => Ok(topology.shoot_client.clone()),
            Landscape::Gardener(gardener) => gardener.shoot_client(name).await,
        }
    }

    /// The Shoot's namespace in the seed.
    pub fn seed_namespace(&self, shoot: &Shoot) -> String {
        match self {
            Landscape::Local(_) => cri_resmgr_testbed::standins::gardenlet::seed_namespace(shoot),
            Landscape::Gardener(_) => seed_namespace(shoot),
        }
    }

    /// Lets the Shoot as written to the garden be reconciled: locally gardenlet's stand-in runs the shoot
    /// reconcile; in a Gardener, gardenlet runs it by itself and this waits until the Shoot reports it done.
    pub async fn reconcile(&self, shoot: &Shoot) -> Result<(), LandscapeError> {
        match self {
            Landscape::Local(topology) => Ok(topology.gardenlet.reconcile(shoot, &topology.shoot_client).await?),
            Landscape::Gardener(gardener) => {
                gardener.wait_until_reconciled(&kube::ResourceExt::name_any(shoot)).await.map(|_| ())
            }
        }
    }

    /// Deletes the Shoot: locally gardenlet's stand-in runs the deletion, then the Shoot leaves the garden; in a
    /// Gardener the user's deletion (confirmed), waited for until the Shoot is gone.
    pub async fn delete(&self, shoot: &Shoot) -> Result<(), LandscapeError> {
        let name = kube::ResourceExt::name_any(shoot);
        match self {
            Landscape::Local(topology) => {
                topology.gardenlet.delete(shoot, &topology.shoot_client).await?;
                self.shoots()
                    .delete(&name, &DeleteParams::default())
                    .await
                    .map_err(kube_error("deleting the Shoot"))?;
                Ok(())
            }
            Landscape::Gardener(gardener) => gardener.delete_shoot(&name).await,
        }
    }

    /// The machines of `pool` of the Shoot `name` (locally its one machine, named as gardenlet's stand-in names it).
    pub async fn nodes(&self, name: &str, pool: &str) -> Result<Vec<String>, LandscapeError> {
        match self {
            Landscape::Local(_) => Ok(vec![node_name(pool, 0)]),
            Landscape::Gardener(gardener) => gardener.nodes(&self.shoot_client(name).await?, pool).await,
        }
    }

    /// `node` of `pool` has applied its pool's current OSC (locally: node-agent's stand-in applies it now); its
    /// kubelet's container runtime endpoint.
    pub async fn runtime_endpoint(
        &self,
        namespace: &str,
        pool: &str,
        node: &str,
    ) -> Result<Option<String>, LandscapeError> {
        match self {
            Landscape::Local(topology) => Ok(topology.node_agent.apply(namespace, pool, node).await?.runtime_endpoint),
            Landscape::Gardener(gardener) => gardener.runtime_endpoint(namespace, node).await,
        }
    }

    /// Whether `path` exists on `node`.
    pub async fn path_exists(&self, namespace: &str, node: &str, path: &str) -> Result<bool, LandscapeError> {
        match self {
            Landscape::Local(topology) => Ok(on_node(&topology.node_agent.root(node), path).exists()),
            Landscape::Gardener(gardener) => gardener.path_exists(namespace, node, path).await,
        }
    }

    /// The file at `path` on `node` (empty when it is missing).
    pub async fn read_file(&self, namespace: &str, node: &str, path: &str) -> Result<String, LandscapeError> {
        match self {
            Landscape::Local(topology) => {
                Ok(std::fs::read_to_string(on_node(&topology.node_agent.root(node), path)).unwrap_or_default())
            }
            Landscape::Gardener(gardener) => gardener.read_file(namespace, node, path).await,
        }
    }

    /// What to show when a step fails: the local binaries' logs (a Gardener's are in its pods).
    pub fn logs(&self) -> String {
        match self {
            Landscape::Local(topology) => topology.logs(),
            Landscape::Gardener(_) => "(the extension's logs are those of its pods in the seed)".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gardener_extension_cri_resmgr::apis::core::{Hibernation, ShootStatus};
    use gardener_extension_cri_resmgr::constants::{
        CONTAINERD_SOCKET_ENDPOINT, KUBELET_DROP_IN_NAME, NODE_SYSTEMD_UNIT_DIR, RELAY_SOCKET_ENDPOINT, UNIT_NAME,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    fn shoot(generation: i64, status: serde_json::Value) -> Shoot {
        let mut shoot = Shoot::new("s", Default::default());
        shoot.metadata.namespace = Some("garden-local".to_string());
        shoot.metadata.generation = Some(generation);
        shoot.status = Some(serde_json::from_value::<ShootStatus>(status).expect("status"));
        shoot
    }

    fn operation(type_: &str, state: &str, progress: i32) -> serde_json::Value {
        serde_json::json!({"type": type_, "state": state, "progress": progress, "description": "what gardenlet says"})
    }

    #[test]
    fn a_shoot_is_reconciled_when_its_generation_was_observed_and_the_operation_succeeded() {
        let done = shoot(
            3,
            serde_json::json!({"observedGeneration": 3, "lastOperation": operation("Reconcile", "Succeeded", 100)}),
        );
        assert_eq!(reconcile_progress(&done), Progress::Done);
        let created = shoot(
            1,
            serde_json::json!({"observedGeneration": 1, "lastOperation": operation("Create", "Succeeded", 100)}),
        );
        assert_eq!(reconcile_progress(&created), Progress::Done);

        let old = shoot(
            4,
            serde_json::json!({"observedGeneration": 3, "lastOperation": operation("Reconcile", "Succeeded", 100)}),
        );
        assert!(matches!(reconcile_progress(&old), Progress::Waiting(_)), "the change was not picked up yet");
        let running = shoot(
            3,
            serde_json::json!({"observedGeneration": 3, "lastOperation": operation("Reconcile", "Processing", 60)}),
        );
        assert!(matches!(reconcile_progress(&running), Progress::Waiting(_)));
        let almost = shoot(
            3,
            serde_json::json!({"observedGeneration": 3, "lastOperation": operation("Reconcile", "Succeeded", 99)}),
        );
        assert!(matches!(reconcile_progress(&almost), Progress::Waiting(_)));
        let deleting = shoot(
            3,
            serde_json::json!({"observedGeneration": 3, "lastOperation": operation("Delete", "Succeeded", 100)}),
        );
        assert!(matches!(reconcile_progress(&deleting), Progress::Waiting(_)));
        let fresh = shoot(1, serde_json::json!({}));
        assert!(matches!(reconcile_progress(&fresh), Progress::Waiting(_)));
    }

    #[test]
    fn a_failed_reconcile_fails_the_wait_and_an_erroneous_one_is_waited_through() {
        let with_state = |state: &str| {
            shoot(2, serde_json::json!({"observedGeneration": 2, "lastOperation": operation("Reconcile", state, 40)}))
        };
        match reconcile_progress(&with_state("Failed")) {
            Progress::Failed(description) => assert!(description.contains("what gardenlet says"), "{description}"),
            other => panic!("Failed: {other:?}"),
        }
        match reconcile_progress(&with_state("Error")) {
            Progress::Waiting(last) => {
                assert!(last.contains("retrying") && last.contains("what gardenlet says"), "{last}")
            }
            other => panic!("Error: {other:?}"),
        }
    }

    #[test]
    fn a_hibernation_is_done_when_the_shoot_says_it_is_hibernated() {
        let mut hibernating = shoot(
            5,
            serde_json::json!({"observedGeneration": 5, "lastOperation": operation("Reconcile", "Succeeded", 100)}),
        );
        hibernating.spec.hibernation = Some(Hibernation { enabled: Some(true), ..Default::default() });
        assert!(matches!(reconcile_progress(&hibernating), Progress::Waiting(_)));
        hibernating.status.as_mut().expect("status").other.insert(SHOOT_STATUS_IS_HIBERNATED.to_string(), true.into());
        assert_eq!(reconcile_progress(&hibernating), Progress::Done);
        // Woken up: done only once the Shoot no longer says it is hibernated.
        hibernating.spec.hibernation = Some(Hibernation { enabled: Some(false), ..Default::default() });
        assert!(matches!(reconcile_progress(&hibernating), Progress::Waiting(_)));
    }

    #[test]
    fn a_deletion_is_done_when_the_shoot_is_gone_and_fails_when_gardenlet_gave_up() {
        assert_eq!(deletion_progress(None), Progress::Done);
        let deleting = shoot(2, serde_json::json!({"lastOperation": operation("Delete", "Processing", 30)}));
        assert!(matches!(deletion_progress(Some(&deleting)), Progress::Waiting(_)));
        let failed = shoot(2, serde_json::json!({"lastOperation": operation("Delete", "Failed", 30)}));
        assert!(matches!(deletion_progress(Some(&failed)), Progress::Failed(d) if d.contains("what gardenlet says")));
    }

    #[test]
    fn the_seed_namespace_is_the_technical_id_else_derived_from_project_and_name() {
        let derived = shoot(1, serde_json::json!({}));
        assert_eq!(seed_namespace(&derived), "shoot--local--s");
        let named = shoot(1, serde_json::json!({"technicalID": "shoot--local--s-1a2b"}));
        assert_eq!(seed_namespace(&named), "shoot--local--s-1a2b");
        let empty = shoot(1, serde_json::json!({"technicalID": ""}));
        assert_eq!(seed_namespace(&empty), "shoot--local--s");
        assert_eq!(machine_namespaces("shoot--local--s"), ["infra-shoot--local--s", "shoot--local--s"]);
    }

    #[test]
    fn the_admin_kubeconfig_request_and_its_answer() {
        let request = serde_json::to_value(admin_kubeconfig_request(600)).expect("encode");
        assert_eq!(
            request,
            serde_json::json!({
                "apiVersion": "authentication.gardener.cloud/v1alpha1",
                "kind": "AdminKubeconfigRequest",
                "spec": {"expirationSeconds": 600},
            })
        );
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: shoot\n  cluster:\n    server: https://api.s.local.local.gardener.cloud\ncontexts:\n- name: shoot\n  context:\n    cluster: shoot\n    user: admin\ncurrent-context: shoot\nusers:\n- name: admin\n  user:\n    token: t\n";
        let answer = serde_json::json!({
            "apiVersion": "authentication.gardener.cloud/v1alpha1",
            "kind": "AdminKubeconfigRequest",
            "metadata": {"name": "s", "namespace": "garden-local"},
            "spec": {"expirationSeconds": 600},
            "status": {
                "kubeconfig": base64::engine::general_purpose::STANDARD.encode(kubeconfig),
                "expirationTimestamp": "2026-12-01T12:00:00Z",
            },
        });
        let answer: AdminKubeconfigRequest = serde_json::from_value(answer).expect("decode");
        let decoded = admin_kubeconfig("s", &answer).expect("kubeconfig");
        assert_eq!(decoded.current_context.as_deref(), Some("shoot"));
        let server = decoded.clusters[0].cluster.as_ref().and_then(|c| c.server.clone());
        assert_eq!(server.as_deref(), Some("https://api.s.local.local.gardener.cloud"));

        let unanswered: AdminKubeconfigRequest =
            serde_json::from_value(serde_json::json!({"apiVersion": "a", "kind": "k", "spec": {}})).expect("decode");
        assert!(matches!(admin_kubeconfig("s", &unanswered), Err(LandscapeError::NoAdminKubeconfig { .. })));
        let mut garbled = answer.clone();
        garbled.status.as_mut().expect("status").kubeconfig = "not base64!".to_string();
        assert!(matches!(admin_kubeconfig("s", &garbled), Err(LandscapeError::Kubeconfig { .. })));
    }

    #[test]
    fn exit_codes_come_from_the_exec_status() {
        let success = Status { status: Some("Success".to_string()), ..Status::default() };
        assert_eq!(exit_code(&success), Ok(0));
        let failed = Status {
            status: Some("Failure".to_string()),
            reason: Some("NonZeroExitCode".to_string()),
            message: Some("command terminated with non-zero exit code".to_string()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".to_string()),
                    message: Some("1".to_string()),
                    ..StatusCause::default()
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        };
        assert_eq!(exit_code(&failed), Ok(1));
        let not_run = Status {
            status: Some("Failure".to_string()),
            reason: Some("InternalError".to_string()),
            message: Some("container not found".to_string()),
            ..Status::default()
        };
        assert!(exit_code(&not_run).is_err());
    }

    /// `systemctl cat kubelet.service` on a node whose OSC the extension mutated: Gardener's unit with the endpoint
    /// switched, and the extension's drop-in.
    fn systemctl_cat(endpoint: &str, drop_in_extra: &str) -> String {
        format!(
            "# {NODE_SYSTEMD_UNIT_DIR}/{KUBELET_UNIT_NAME}\n\
             [Unit]\n\
             Description=kubelet daemon\n\
             Documentation=https://kubernetes.io/docs/admin/kubelet\n\
             After=containerd.service\n\
             [Install]\n\
             WantedBy=multi-user.target\n\
             [Service]\n\
             Restart=always\n\
             RestartSec=5\n\
             Environment=\"HTTP2_READ_IDLE_TIMEOUT_SECONDS=25\" \"HTTP2_PING_TIMEOUT_SECONDS=12\"\n\
             EnvironmentFile=/etc/environment\n\
             EnvironmentFile=-/var/lib/kubelet/extra_args\n\
             ExecStart=/opt/bin/kubelet \\\n    \
             --bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap \\\n    \
             --config=/var/lib/kubelet/config/kubelet \\\n    \
             --kubeconfig=/var/lib/kubelet/kubeconfig-real \\\n    \
             --node-labels=worker.gardener.cloud/pool=cpu-worker \\\n    \
             --container-runtime-endpoint={endpoint} \\\n    \
             --runtime-cgroups=/system.slice/containerd.service \\\n    \
             --v=2 $KUBELET_EXTRA_ARGS\n\
             \n\
             # {NODE_SYSTEMD_UNIT_DIR}/{KUBELET_UNIT_NAME}.d/{KUBELET_DROP_IN_NAME}\n\
             [Unit]\n\
             After={UNIT_NAME}\n\
             Wants={UNIT_NAME}\n\
             {drop_in_extra}"
        )
    }

    #[test]
    fn kubelets_runtime_endpoint_from_systemctl_cat() {
        let mutated = systemctl_cat(RELAY_SOCKET_ENDPOINT, "");
        assert_eq!(kubelet_runtime_endpoint(&mutated, None).as_deref(), Some(RELAY_SOCKET_ENDPOINT));
        let restored = systemctl_cat(CONTAINERD_SOCKET_ENDPOINT, "");
        assert_eq!(kubelet_runtime_endpoint(&restored, None).as_deref(), Some(CONTAINERD_SOCKET_ENDPOINT));
        // A drop-in that replaces the command line (an empty ExecStart= first) wins over the unit's.
        let replaced = systemctl_cat(
            CONTAINERD_SOCKET_ENDPOINT,
            "[Service]\nExecStart=\nExecStart=/opt/bin/kubelet --container-runtime-endpoint=unix:///other.sock\n",
        );
        assert_eq!(kubelet_runtime_endpoint(&replaced, None).as_deref(), Some("unix:///other.sock"));
        // An ExecStart= outside [Service] is no command line.
        let misplaced = systemctl_cat(
            CONTAINERD_SOCKET_ENDPOINT,
            "ExecStart=/opt/bin/kubelet --container-runtime-endpoint=unix:///other.sock\n",
        );
        assert_eq!(kubelet_runtime_endpoint(&misplaced, None).as_deref(), Some(CONTAINERD_SOCKET_ENDPOINT));
        // A drop-in that only clears the command line leaves none (systemd would refuse to start kubelet).
        let cleared = systemctl_cat(CONTAINERD_SOCKET_ENDPOINT, "[Service]\nExecStart=\n");
        assert_eq!(kubelet_runtime_endpoint(&cleared, None), None);
        // kubelet takes the last of a repeated flag.
        let repeated = format!(
            "# {NODE_SYSTEMD_UNIT_DIR}/{KUBELET_UNIT_NAME}\n[Service]\nExecStart=/opt/bin/kubelet \\\n    \
             --container-runtime-endpoint={CONTAINERD_SOCKET_ENDPOINT} \\\n    \
             --container-runtime-endpoint={RELAY_SOCKET_ENDPOINT}\n"
        );
        assert_eq!(kubelet_runtime_endpoint(&repeated, None).as_deref(), Some(RELAY_SOCKET_ENDPOINT));
    }

    #[test]
    fn without_the_flag_the_kubelet_config_files_endpoint_counts() {
        let unit = format!(
            "# {NODE_SYSTEMD_UNIT_DIR}/{KUBELET_UNIT_NAME}\n[Service]\nExecStart=/opt/bin/kubelet \\\n    --v=2\n"
        );
        let config = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: {RELAY_SOCKET_ENDPOINT}\n"
        );
        assert_eq!(kubelet_runtime_endpoint(&unit, Some(&config)).as_deref(), Some(RELAY_SOCKET_ENDPOINT));
        assert_eq!(kubelet_runtime_endpoint(&unit, None), None);
        let flagged = systemctl_cat(CONTAINERD_SOCKET_ENDPOINT, "");
        assert_eq!(
            kubelet_runtime_endpoint(&flagged, Some(&config)).as_deref(),
            Some(CONTAINERD_SOCKET_ENDPOINT),
            "the flag wins over the config file"
        );
    }

    #[test]
    fn origins_name_the_managed_resources_namespace_with_or_without_a_cluster_id() {
        assert!(origin_in_namespace("shoot--local--s/extension-runtime-cri-resmgr", "shoot--local--s"));
        assert!(origin_in_namespace("seed-identity:shoot--local--s/extension-runtime-cri-resmgr", "shoot--local--s"));
        assert!(!origin_in_namespace("shoot--local--s2/extension-runtime-cri-resmgr", "shoot--local--s"));
        assert!(!origin_in_namespace("seed:shoot--local--other/x", "shoot--local--s"));
        assert!(!origin_in_namespace("shoot--local--s", "shoot--local--s"));
    }

    #[tokio::test]
    async fn a_gardener_without_a_seed_kubeconfig_is_refused_before_anything_is_read() {
        let refused = Gardener::connect("/nonexistent/garden", None, "garden-local").await;
        assert!(matches!(refused, Err(LandscapeError::NoSeedKubeconfig)), "{:?}", refused.err());
    }

    #[test]
    fn the_example_shoot_is_made_fit_for_a_local_gardener() {
        let mut shoot: Shoot = gardener_extension_cri_resmgr::yaml::from_str(
            &std::fs::read_to_string(cri_resmgr_testbed::repo_root().join("examples/shoot.yaml")).expect("example"),
        )
        .expect("example Shoot");
        for_local_gardener(&mut shoot);
        assert_eq!(shoot.spec.other.get("credentialsBindingName"), Some(&serde_json::json!("local")));
        assert_eq!(shoot.spec.kubernetes.version, None, "the cloud profile's version");
        assert!(shoot.spec.provider.workers.iter().all(|worker| worker.machine.image.is_none()));
        let annotations = shoot.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get(ANNOTATION_CLOUD_CONFIG_MAX_DELAY).map(String::as_str), Some("0"));
        assert!(!shoot.spec.extensions.is_empty(), "the extension stays enabled");
    }
}
