//! Stand-in for gardenlet's part of a shoot's life, as far as an extension of kind `Extension` sees it, plus the
//! machines of the shoot's worker pools (one Node per pool in the shoot apiserver; machine-controller-manager's
//! job, which gardenlet's Worker step drives).
//!
//! What it writes into the seed, in gardenlet's order (`pkg/gardenlet/operation/botanist`, `pkg/component/
//! extensions`):
//! - the shoot's namespace `shoot--<project>--<name>`, labelled `gardener.cloud/role: shoot` and
//!   `extensions.gardener.cloud/<type>: "true"` per enabled extension type (what the OSC webhook's namespace
//!   selector matches);
//! - the Cluster, with the Shoot embedded (and a CloudProfile and Seed naming themselves);
//! - per enabled extension: the Extension named after its type, `providerConfig` copied verbatim, annotated
//!   `gardener.cloud/operation: reconcile` with a `gardener.cloud/timestamp`, then waited for until ready
//!   (`CheckExtensionObject`); an extension no longer enabled is deleted (confirmation annotation first) while the
//!   worker pools' OSCs are written, and waited for until gone;
//! - per worker pool: the `reconcile` and `provision` OperatingSystemConfigs, rewritten on every shoot reconcile
//!   (with a fresh timestamp), so that the extensions' OSC webhooks judge them again.
//!
//! Shoot deletion: the Cluster gets the Shoot's deletion timestamp, the machines go (Worker deletion), then the
//! Extensions are deleted and waited for, then the OSCs and the Cluster.
//!
//! Force deletion (a Shoot in deletion annotated `confirmation.gardener.cloud/force-deletion: "true"`, gardenlet's
//! `reconciler_force_delete.go`): the shoot is not asked for anything (its apiserver is typically what is broken;
//! the machines are left to the operator). The Cluster carries the annotation, so extensions take their
//! force-delete path; the Extensions are deleted and waited for; every ManagedResource gets `keepObjects: false`,
//! is deleted and, since no gardener-resource-manager serves the shoot any more, freed of its finalizers (those of
//! gardener-resource-manager's own class, the seed's, it still serves); then the
//! OSCs, the Cluster, the namespace's ConfigMaps and Secrets (finalizers stripped), and the namespace itself.
//!
//! Control-plane migration (`docs/extensions/migration.md`): on the source seed the Extension is annotated
//! `gardener.cloud/operation: migrate` and waited for until its last operation is a succeeded Migrate, then
//! deleted (it has no finalizers left); the remaining ManagedResources get `keepObjects: true` and are deleted, so
//! that nothing in the shoot goes; then the OSCs, the Cluster and the namespace. On the destination seed the
//! namespace and the Cluster are written, the Extension is created with `gardener.cloud/operation: wait-for-state`,
//! its `status.state` restored from what the source held (gardener's ShootState), then annotated `restore` and
//! waited for until ready; then the shoot reconcile goes on as usual (OSCs, machines).
//!
//! The seed has no kube-controller-manager, so where gardenlet deletes a shoot namespace the stand-in also plays the
//! namespace controller: it deletes what is left in it (Events) and finalizes it.

use std::collections::BTreeMap;
use std::time::Duration;

use gardener_extension_cri_resmgr::apis::common::{LastOperationState, LastOperationType};
use gardener_extension_cri_resmgr::apis::core::Shoot;
use gardener_extension_cri_resmgr::apis::extensions::{
    Cluster, ClusterSpec, Extension, ExtensionSpec, OperatingSystemConfig, OscPurpose,
};
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    ANNOTATION_OPERATION, ANNOTATION_TIMESTAMP, EXTENSION_TYPE, LABEL_WORKER_POOL, OPERATION_MIGRATE,
    OPERATION_RECONCILE, OPERATION_RESTORE, OPERATION_WAIT_FOR_STATE,
};
use gardener_extension_cri_resmgr::contract::status::readiness;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

/// Label of a shoot's seed namespace: its role.
pub const LABEL_ROLE: &str = "gardener.cloud/role";
/// The value of [`LABEL_ROLE`] for shoot namespaces.
pub const ROLE_SHOOT: &str = "shoot";
/// gardenlet's namespace label per enabled extension type: `extensions.gardener.cloud/<type>`.
pub const NAMESPACE_EXTENSION_LABEL_PREFIX: &str = "extensions.gardener.cloud/";
/// gardenlet sets this before it deletes an extension object; extensions' webhooks may refuse deletions without it.
pub const ANNOTATION_CONFIRM_DELETION: &str = "confirmation.gardener.cloud/deletion";
/// Where the OSCs' common content comes from: the reconcile OSC of the kubelet component, with a kubelet unit and
/// config, as gardenlet writes it.
pub const OSC_TEMPLATE: &str = "test/fixtures/osc/reconcile.yaml";
/// The field manager of the stand-in's writes.
pub const FIELD_MANAGER: &str = "gardenlet";
/// How long gardenlet waits for an Extension to be ready or gone (Gardener's default for Extensions: 3 minutes).
pub const EXTENSION_TIMEOUT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(500);

/// What can go wrong in the stand-in's flows.
#[derive(Debug, thiserror::Error)]
pub enum GardenletError {
    #[error("cannot {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what} within {timeout:?}; last seen: {last}")]
    Timeout { what: String, timeout: Duration, last: String },
    #[error("OSC template {path}: {detail}")]
    Template { path: String, detail: String },
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> GardenletError {
    let action = action.into();
    move |source| GardenletError::Kube { action, source }
}

/// The seed namespace of a Shoot: `shoot--<project>--<name>`, the project being the garden namespace without its
/// `garden-` prefix (the namespace `garden` is project `garden`).
pub fn seed_namespace(shoot: &Shoot) -> String {
    let namespace = shoot.metadata.namespace.as_deref().unwrap_or("garden");
    let project = namespace.strip_prefix("garden-").unwrap_or(namespace);
    format!("shoot--{project}--{}", shoot.name_any())
}

/// The providerConfig of our extension when the Shoot enables it (listed and not `disabled`).
pub fn enabled_extension(shoot: &Shoot) -> Option<Option<serde_json::Value>> {
    let (_, extension) = shoot.spec.extension(EXTENSION_TYPE)?;
    (extension.disabled != Some(true)).then(|| extension.provider_config.clone())
}

/// The name gardenlet gives a pool's OSC: `gardener-node-agent-<pool>-<hash>-<original|init>`.
pub fn osc_name(pool: &str, purpose: &OscPurpose) -> String {
    let hash = &gardener_extension_cri_resmgr::managed_resource::sha256_hex(pool.as_bytes())[..16];
    let suffix = if *purpose == OscPurpose::Provision { "init" } else { "original" };
    format!("gardener-node-agent-{pool}-{hash}-{suffix}")
}

/// The name of the `index`-th machine of a pool.
pub fn node_name(pool: &str, index: usize) -> String {
    format!("{pool}-node-{index}")
}

/// The stand-in, between one garden's Shoots, one seed, and the shoots' apiservers.
#[derive(Clone)]
pub struct Gardenlet {
    seed: kube::Client,
    osc_template: OperatingSystemConfig,
}

impl Gardenlet {
    /// A gardenlet for `seed`, with the OSC template from the repository.
    pub fn new(seed: kube::Client) -> Result<Self, GardenletError> {
        let path = crate::repo_root().join(OSC_TEMPLATE);
        let template_error = |detail: String| GardenletError::Template { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(&path).map_err(|e| template_error(e.to_string()))?;
        let osc_template =
            gardener_extension_cri_resmgr::yaml::from_str(&text).map_err(|e| template_error(e.to_string()))?;
        Ok(Gardenlet { seed, osc_template })
    }

    /// One shoot reconcile: namespace, Cluster, Extension (ready, or deleted when disabled), OSCs, machines.
    pub async fn reconcile(&self, shoot: &Shoot, machines: &kube::Client) -> Result<(), GardenletError> {
        let namespace = seed_namespace(shoot);
        let enabled = enabled_extension(shoot);
        self.write_namespace(&namespace, enabled.is_some()).await?;
        self.write_cluster(&namespace, shoot).await?;
        let extensions: Api<Extension> = Api::namespaced(self.seed.clone(), &namespace);
        match &enabled {
            Some(provider_config) => {
                self.write_extension(&namespace, provider_config.clone()).await?;
                self.wait_until_ready(&extensions).await?;
                self.write_oscs(&namespace, shoot).await?;
            }
            None => {
                // A disabled extension is deleted while the OSCs are written: its OSC webhook leaves the pools'
                // OSCs unmutated from the moment the Extension is being deleted, and its deletion waits for the
                // nodes to have applied them.
                let deleting = self.delete_extension(&extensions).await?;
                self.write_oscs(&namespace, shoot).await?;
                if deleting {
                    self.wait_until_gone(&extensions).await?;
                }
            }
        }
        write_machines(machines, shoot).await
    }

    /// Shoot deletion as far as extensions see it.
    pub async fn delete(&self, shoot: &Shoot, machines: &kube::Client) -> Result<(), GardenletError> {
        let namespace = seed_namespace(shoot);
        let mut deleting = shoot.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        self.write_cluster(&namespace, &deleting).await?;
        delete_machines(machines).await?;
        let extensions: Api<Extension> = Api::namespaced(self.seed.clone(), &namespace);
        if self.delete_extension(&extensions).await? {
            self.wait_until_gone(&extensions).await?;
        }
        let oscs: Api<OperatingSystemConfig> = Api::namespaced(self.seed.clone(), &namespace);
        for osc in oscs.list(&ListParams::default()).await.map_err(kube_err("list OSCs"))?.items {
            ignore_missing(oscs.delete(&osc.name_any(), &DeleteParams::default()).await, "delete an OSC")?;
        }
        let clusters: Api<Cluster> = Api::all(self.seed.clone());
        ignore_missing(clusters.delete(&namespace, &DeleteParams::default()).await, "delete the Cluster")
    }

    /// Force deletion of `shoot` (in deletion, annotated for force deletion): nothing is asked of the shoot, and
    /// the seed namespace is gone at the end.
    pub async fn force_delete(&self, shoot: &Shoot) -> Result<(), GardenletError> {
        let namespace = seed_namespace(shoot);
        // The Cluster tells the extensions: the Shoot's deletion timestamp and force-deletion annotation.
        self.write_cluster(&namespace, shoot).await?;
        let extensions: Api<Extension> = Api::namespaced(self.seed.clone(), &namespace);
        if self.delete_extension(&extensions).await? {
            self.wait_until_gone(&extensions).await?;
        }
        // No gardener-resource-manager serves the shoot any more: its ManagedResources are freed by gardenlet.
        let mrs: Api<ManagedResource> = Api::namespaced(self.seed.clone(), &namespace);
        delete_managed_resources(&mrs, false, true).await?;
        self.wait_until_none(&mrs, "ManagedResources").await?;
        self.delete_all(&Api::<OperatingSystemConfig>::namespaced(self.seed.clone(), &namespace), "OSCs").await?;
        let clusters: Api<Cluster> = Api::all(self.seed.clone());
        ignore_missing(clusters.delete(&namespace, &DeleteParams::default()).await, "delete the Cluster")?;
        self.force_delete_all(&Api::<ConfigMap>::namespaced(self.seed.clone(), &namespace), "ConfigMaps").await?;
        self.force_delete_all(&Api::<Secret>::namespaced(self.seed.clone(), &namespace), "Secrets").await?;
        self.delete_namespace(&namespace).await
    }

    /// The source seed's part of a control-plane migration: the Extension migrated (its last state returned, to be
    /// handed to [`Gardenlet::restore`]) and deleted, the ManagedResources deleted keeping their objects, then the
    /// OSCs, the Cluster and the namespace.
    pub async fn migrate(&self, shoot: &Shoot) -> Result<Option<Extension>, GardenletError> {
        let namespace = seed_namespace(shoot);
        let extensions: Api<Extension> = Api::namespaced(self.seed.clone(), &namespace);
        let mut migrated = None;
        if extensions.get_opt(EXTENSION_TYPE).await.map_err(kube_err("read the Extension"))?.is_some() {
            let patch = json!({"metadata": {"annotations": operation_annotations(OPERATION_MIGRATE)}});
            extensions
                .patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("annotate the Extension with migrate"))?;
            migrated = self.wait_until_migrated(&extensions).await?;
            if self.delete_extension(&extensions).await? {
                self.wait_until_gone(&extensions).await?;
            }
        }
        let mrs: Api<ManagedResource> = Api::namespaced(self.seed.clone(), &namespace);
        delete_managed_resources(&mrs, true, false).await?;
        self.wait_until_none(&mrs, "ManagedResources").await?;
        self.delete_all(&Api::<OperatingSystemConfig>::namespaced(self.seed.clone(), &namespace), "OSCs").await?;
        let clusters: Api<Cluster> = Api::all(self.seed.clone());
        ignore_missing(clusters.delete(&namespace, &DeleteParams::default()).await, "delete the Cluster")?;
        self.delete_all(&Api::<Secret>::namespaced(self.seed.clone(), &namespace), "Secrets").await?;
        self.delete_namespace(&namespace).await?;
        Ok(migrated)
    }

    /// The destination seed's part of a control-plane migration: namespace, Cluster, the Extension restored from
    /// `migrated` (the source's last view of it) and waited for until ready, then the rest of a shoot reconcile.
    /// Returns the Extension as it was when it was ready (`None` when the Shoot does not enable it).
    pub async fn restore(
        &self,
        shoot: &Shoot,
        migrated: Option<&Extension>,
        machines: &kube::Client,
    ) -> Result<Option<Extension>, GardenletError> {
        let namespace = seed_namespace(shoot);
        let Some(provider_config) = enabled_extension(shoot) else {
            return self.reconcile(shoot, machines).await.map(|()| None);
        };
        self.write_namespace(&namespace, true).await?;
        self.write_cluster(&namespace, shoot).await?;
        let extensions: Api<Extension> = Api::namespaced(self.seed.clone(), &namespace);
        self.write_extension_with(&namespace, provider_config, OPERATION_WAIT_FOR_STATE).await?;
        let state = migrated.and_then(|extension| extension.status.as_ref()).and_then(|status| status.state.clone());
        if let Some(state) = state {
            let patch = json!({"status": {"state": state}});
            extensions
                .patch_status(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err("restore the Extension's state"))?;
        }
        let patch = json!({"metadata": {"annotations": operation_annotations(OPERATION_RESTORE)}});
        extensions
            .patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("annotate the Extension with restore"))?;
        let restored = self.wait_until_ready(&extensions).await?;
        self.write_oscs(&namespace, shoot).await?;
        write_machines(machines, shoot).await?;
        Ok(Some(restored))
    }

    async fn write_namespace(&self, namespace: &str, enabled: bool) -> Result<(), GardenletError> {
        let api: Api<Namespace> = Api::all(self.seed.clone());
        let label = format!("{NAMESPACE_EXTENSION_LABEL_PREFIX}{EXTENSION_TYPE}");
        // A merge patch with `null` removes the label of a disabled extension.
        let value = if enabled { json!("true") } else { serde_json::Value::Null };
        match api.get_opt(namespace).await.map_err(kube_err("read the shoot namespace"))? {
            None => {
                let mut labels = BTreeMap::from([(LABEL_ROLE.to_string(), ROLE_SHOOT.to_string())]);
                if enabled {
                    labels.insert(label, "true".to_string());
                }
                let object = Namespace {
                    metadata: ObjectMeta {
                        name: Some(namespace.to_string()),
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                };
                api.create(&PostParams::default(), &object).await.map_err(kube_err("create the shoot namespace"))?;
            }
            Some(_) => {
                let patch = json!({"metadata": {"labels": {LABEL_ROLE: ROLE_SHOOT, label: value}}});
                api.patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(kube_err("label the shoot namespace"))?;
            }
        }
        Ok(())
    }

    async fn write_cluster(&self, namespace: &str, shoot: &Shoot) -> Result<(), GardenletError> {
        let mut embedded = shoot.clone();
        embedded.metadata.managed_fields = None;
        embedded.metadata.resource_version = None;
        let cluster = Cluster {
            metadata: ObjectMeta { name: Some(namespace.to_string()), ..ObjectMeta::default() },
            spec: ClusterSpec {
                shoot: embedded,
                cloud_profile: json!({"apiVersion": "core.gardener.cloud/v1beta1", "kind": "CloudProfile", "metadata": {"name": "local"}}),
                seed: Some(
                    json!({"apiVersion": "core.gardener.cloud/v1beta1", "kind": "Seed", "metadata": {"name": "local"}}),
                ),
            },
        };
        let api: Api<Cluster> = Api::all(self.seed.clone());
        api.patch(namespace, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&cluster))
            .await
            .map_err(kube_err("write the Cluster"))?;
        Ok(())
    }

    async fn write_extension(
        &self,
        namespace: &str,
        provider_config: Option<serde_json::Value>,
    ) -> Result<(), GardenletError> {
        self.write_extension_with(namespace, provider_config, OPERATION_RECONCILE).await
    }

    async fn write_extension_with(
        &self,
        namespace: &str,
        provider_config: Option<serde_json::Value>,
        operation: &str,
    ) -> Result<(), GardenletError> {
        let extension = Extension {
            metadata: ObjectMeta {
                name: Some(EXTENSION_TYPE.to_string()),
                namespace: Some(namespace.to_string()),
                annotations: Some(operation_annotations(operation)),
                ..ObjectMeta::default()
            },
            spec: ExtensionSpec { type_: EXTENSION_TYPE.to_string(), class: None, provider_config },
            status: None,
        };
        let api: Api<Extension> = Api::namespaced(self.seed.clone(), namespace);
        api.patch(EXTENSION_TYPE, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&extension))
            .await
            .map_err(kube_err("write the Extension"))?;
        Ok(())
    }

    /// Confirms and requests the deletion; whether there was an Extension to delete.
    async fn delete_extension(&self, api: &Api<Extension>) -> Result<bool, GardenletError> {
        if api.get_opt(EXTENSION_TYPE).await.map_err(kube_err("read the Extension"))?.is_none() {
            return Ok(false);
        }
        let patch = json!({"metadata": {"annotations": {
            ANNOTATION_CONFIRM_DELETION: "true",
            ANNOTATION_TIMESTAMP: now_rfc3339(),
        }}});
        ignore_missing(
            api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&patch)).await,
            "confirm the Extension's deletion",
        )?;
        ignore_missing(api.delete(EXTENSION_TYPE, &DeleteParams::default()).await, "delete the Extension")?;
        Ok(true)
    }

    /// Until the Extension is ready as gardenlet judges it; what it looked like then.
    async fn wait_until_ready(&self, api: &Api<Extension>) -> Result<Extension, GardenletError> {
        let deadline = tokio::time::Instant::now() + EXTENSION_TIMEOUT;
        loop {
            let last = match api.get_opt(EXTENSION_TYPE).await {
                Ok(Some(extension)) => match readiness(&extension) {
                    Ok(()) => return Ok(extension),
                    Err(why) => why,
                },
                Ok(None) => "the Extension is gone".to_string(),
                // The seed's apiserver may be restarting; gardenlet keeps polling too.
                Err(error) => error.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(GardenletError::Timeout {
                    what: "the Extension was not ready".to_string(),
                    timeout: EXTENSION_TIMEOUT,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_until_gone(&self, api: &Api<Extension>) -> Result<(), GardenletError> {
        let deadline = tokio::time::Instant::now() + EXTENSION_TIMEOUT;
        loop {
            let last = match api.get_opt(EXTENSION_TYPE).await {
                Ok(None) => return Ok(()),
                Ok(Some(extension)) => {
                    let status = extension.status.unwrap_or_default();
                    let operation = status.last_operation.map(|op| op.description).unwrap_or_default();
                    let error =
                        status.last_error.map(|e| format!(" (last error: {})", e.description)).unwrap_or_default();
                    format!("{operation}{error}")
                }
                Err(error) => error.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(GardenletError::Timeout {
                    what: "the Extension was not deleted".to_string(),
                    timeout: EXTENSION_TIMEOUT,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until the Extension's last operation is a succeeded Migrate (or it is gone); what it looked like then.
    async fn wait_until_migrated(&self, api: &Api<Extension>) -> Result<Option<Extension>, GardenletError> {
        let deadline = tokio::time::Instant::now() + EXTENSION_TIMEOUT;
        loop {
            let last = match api.get_opt(EXTENSION_TYPE).await {
                Ok(None) => return Ok(None),
                Ok(Some(extension)) => {
                    let operation = extension.status.as_ref().and_then(|status| status.last_operation.clone());
                    match operation {
                        Some(op)
                            if op.type_ == LastOperationType::Migrate && op.state == LastOperationState::Succeeded =>
                        {
                            return Ok(Some(extension));
                        }
                        Some(op) => format!("{} {}: {}", op.type_, op.state, op.description),
                        None => "no last operation".to_string(),
                    }
                }
                Err(error) => error.to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(GardenletError::Timeout {
                    what: "the Extension was not migrated".to_string(),
                    timeout: EXTENSION_TIMEOUT,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Until `api` lists nothing.
    async fn wait_until_none<K>(&self, api: &Api<K>, what: &str) -> Result<(), GardenletError>
    where
        K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let deadline = tokio::time::Instant::now() + EXTENSION_TIMEOUT;
        loop {
            let left: Vec<String> = match api.list(&ListParams::default()).await {
                Ok(list) => list.items.iter().map(ResourceExt::name_any).collect(),
                Err(error) => vec![error.to_string()],
            };
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(GardenletError::Timeout {
                    what: format!("{what} were not deleted"),
                    timeout: EXTENSION_TIMEOUT,
                    last: left.join(", "),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Deletes every object `api` lists.
    async fn delete_all<K>(&self, api: &Api<K>, what: &str) -> Result<(), GardenletError>
    where
        K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for object in api.list(&ListParams::default()).await.map_err(kube_err(format!("list {what}")))?.items {
            ignore_missing(api.delete(&object.name_any(), &DeleteParams::default()).await, &format!("delete {what}"))?;
        }
        Ok(())
    }

    /// Strips the finalizers of every object `api` lists and deletes it (gardenlet's `ForceDeleteObjects`).
    async fn force_delete_all<K>(&self, api: &Api<K>, what: &str) -> Result<(), GardenletError>
    where
        K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for object in api.list(&ListParams::default()).await.map_err(kube_err(format!("list {what}")))?.items {
            strip_finalizers(api, &object.name_any()).await?;
            ignore_missing(api.delete(&object.name_any(), &DeleteParams::default()).await, &format!("delete {what}"))?;
        }
        Ok(())
    }

    /// Deletes the shoot namespace and, as the namespace controller the seed lacks here, empties and finalizes it;
    /// waits until it is gone.
    async fn delete_namespace(&self, namespace: &str) -> Result<(), GardenletError> {
        let namespaces: Api<Namespace> = Api::all(self.seed.clone());
        ignore_missing(namespaces.delete(namespace, &DeleteParams::default()).await, "delete the shoot namespace")?;
        // Events are all the extension leaves behind by design (the other kinds were deleted above).
        let events: Api<Event> = Api::namespaced(self.seed.clone(), namespace);
        ignore_missing(
            events.delete_collection(&DeleteParams::default(), &ListParams::default()).await,
            "delete the shoot namespace's Events",
        )?;
        let finalized = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace},
            "spec": {"finalizers": []},
        });
        ignore_missing(
            namespaces.replace_subresource("finalize", namespace, &PostParams::default(), &finalized).await,
            "finalize the shoot namespace",
        )?;
        let deadline = tokio::time::Instant::now() + EXTENSION_TIMEOUT;
        loop {
            match namespaces.get_opt(namespace).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) | Err(_) if tokio::time::Instant::now() <= deadline => tokio::time::sleep(POLL).await,
                Ok(Some(left)) => {
                    return Err(GardenletError::Timeout {
                        what: "the shoot namespace was not deleted".to_string(),
                        timeout: EXTENSION_TIMEOUT,
                        last: format!("{:?}", left.status),
                    });
                }
                Err(error) => return Err(kube_err("read the shoot namespace")(error)),
            }
        }
    }

    /// Writes the `reconcile` and `provision` OSC of every worker pool, and removes those of pools that are gone.
    async fn write_oscs(&self, namespace: &str, shoot: &Shoot) -> Result<(), GardenletError> {
        let api: Api<OperatingSystemConfig> = Api::namespaced(self.seed.clone(), namespace);
        let mut wanted = Vec::new();
        for worker in &shoot.spec.provider.workers {
            for purpose in [OscPurpose::Reconcile, OscPurpose::Provision] {
                let osc = self.osc_for(namespace, &worker.name, purpose);
                let name = osc.name_any();
                // Replaced as a whole with a fresh timestamp, as gardenlet's deploy does: the webhooks judge it anew.
                match api.get_opt(&name).await.map_err(kube_err("read an OSC"))? {
                    None => {
                        api.create(&PostParams::default(), &osc).await.map_err(kube_err("create an OSC"))?;
                    }
                    Some(existing) => {
                        let mut replaced = osc.clone();
                        replaced.metadata.resource_version = existing.metadata.resource_version;
                        api.replace(&name, &PostParams::default(), &replaced)
                            .await
                            .map_err(kube_err("update an OSC"))?;
                    }
                }
                wanted.push(name);
            }
        }
        for stale in api.list(&ListParams::default()).await.map_err(kube_err("list OSCs"))?.items {
            if !wanted.contains(&stale.name_any()) {
                ignore_missing(api.delete(&stale.name_any(), &DeleteParams::default()).await, "delete a stale OSC")?;
            }
        }
        Ok(())
    }

    fn osc_for(&self, namespace: &str, pool: &str, purpose: OscPurpose) -> OperatingSystemConfig {
        let mut osc = self.osc_template.clone();
        osc.metadata = ObjectMeta {
            name: Some(osc_name(pool, &purpose)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(LABEL_WORKER_POOL.to_string(), pool.to_string())])),
            annotations: Some(operation_annotations(OPERATION_RECONCILE)),
            ..ObjectMeta::default()
        };
        osc.spec.purpose = purpose;
        osc.status = None;
        osc
    }
}

fn operation_annotations(operation: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ANNOTATION_OPERATION.to_string(), operation.to_string()),
        (ANNOTATION_TIMESTAMP.to_string(), now_rfc3339()),
    ])
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Removes every finalizer of `name` (a missing object is fine).
async fn strip_finalizers<K>(api: &Api<K>, name: &str) -> Result<(), GardenletError>
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"finalizers": null}});
    ignore_missing(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await, "strip finalizers")
}

fn ignore_missing<T>(result: Result<T, kube::Error>, action: &str) -> Result<(), GardenletError> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(kube_err(action)(error)),
    }
}

/// The machines of a running shoot: one Node per worker pool, labelled with its pool and the pool's labels; none
/// while hibernated.
async fn write_machines(machines: &kube::Client, shoot: &Shoot) -> Result<(), GardenletError> {
    if shoot.spec.is_hibernated() {
        return delete_machines(machines).await;
    }
    let api: Api<Node> = Api::all(machines.clone());
    let mut wanted = Vec::new();
    for worker in &shoot.spec.provider.workers {
        let mut labels = worker.labels.clone().unwrap_or_default();
        labels.insert(LABEL_WORKER_POOL.to_string(), worker.name.clone());
        let name = node_name(&worker.name, 0);
        let node = Node {
            metadata: ObjectMeta { name: Some(name.clone()), labels: Some(labels), ..ObjectMeta::default() },
            ..Node::default()
        };
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&node))
            .await
            .map_err(kube_err("write a Node"))?;
        wanted.push(name);
    }
    for node in api.list(&ListParams::default()).await.map_err(kube_err("list Nodes"))?.items {
        if !wanted.contains(&node.name_any()) {
            ignore_missing(api.delete(&node.name_any(), &DeleteParams::default()).await, "delete a Node")?;
        }
    }
    Ok(())
}

async fn delete_machines(machines: &kube::Client) -> Result<(), GardenletError> {
    let api: Api<Node> = Api::all(machines.clone());
    for node in api.list(&ListParams::default()).await.map_err(kube_err("list Nodes"))?.items {
        ignore_missing(api.delete(&node.name_any(), &DeleteParams::default()).await, "delete a Node")?;
    }
    Ok(())
}

/// Deletes every ManagedResource of `mrs` with `keepObjects` set to `keep_objects` first (what gardenlet does before
/// deleting them on migration and force deletion); with `free_shoot_ones`, those of the shoot (no class), which no
/// gardener-resource-manager serves any more, are freed of their finalizers too.
async fn delete_managed_resources(
    mrs: &Api<ManagedResource>,
    keep_objects: bool,
    free_shoot_ones: bool,
) -> Result<(), GardenletError> {
    for mr in mrs.list(&ListParams::default()).await.map_err(kube_err("list ManagedResources"))?.items {
        let name = mr.name_any();
        let keep = json!({"spec": {"keepObjects": keep_objects}});
        ignore_missing(
            mrs.patch(&name, &PatchParams::default(), &Patch::Merge(&keep)).await,
            "set keepObjects of a ManagedResource",
        )?;
        ignore_missing(mrs.delete(&name, &DeleteParams::default()).await, "delete a ManagedResource")?;
        if free_shoot_ones && mr.spec.class.is_none() {
            strip_finalizers(mrs, &name).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shoot(namespace: &str, name: &str) -> Shoot {
        let mut shoot = Shoot::default();
        shoot.metadata.namespace = Some(namespace.to_string());
        shoot.metadata.name = Some(name.to_string());
        shoot
    }

    #[test]
    fn seed_namespaces_are_named_after_project_and_shoot() {
        assert_eq!(seed_namespace(&shoot("garden-dev", "local")), "shoot--dev--local");
        assert_eq!(seed_namespace(&shoot("garden", "root")), "shoot--garden--root");
    }

    #[test]
    fn osc_names_differ_by_purpose_and_pool() {
        let reconcile = osc_name("cpu", &OscPurpose::Reconcile);
        assert!(reconcile.starts_with("gardener-node-agent-cpu-") && reconcile.ends_with("-original"), "{reconcile}");
        assert!(osc_name("cpu", &OscPurpose::Provision).ends_with("-init"));
        assert_ne!(osc_name("cpu", &OscPurpose::Reconcile), osc_name("gpu", &OscPurpose::Reconcile));
    }

    #[test]
    fn an_extension_is_enabled_when_listed_and_not_disabled() {
        let mut enabled: Shoot = gardener_extension_cri_resmgr::yaml::from_str(
            &std::fs::read_to_string(crate::repo_root().join("examples/shoot.yaml")).expect("example Shoot"),
        )
        .expect("decode");
        assert!(enabled_extension(&enabled).is_some_and(|config| config.is_some()), "providerConfig copied");
        enabled.spec.extensions[0].disabled = Some(true);
        assert!(enabled_extension(&enabled).is_none());
        enabled.spec.extensions.clear();
        assert!(enabled_extension(&enabled).is_none());
    }
}
