//! Gardener's ManagedResource conventions (`pkg/utils/managedresources`, its `builder/`, and GRM's
//! `garbagecollector/references`), for the one ManagedResource the extension ships into the shoot.
//!
//! How an update works, and why:
//! - The objects go into an *immutable* Secret whose name ends in a checksum of its data
//!   (`managedresource-<mr>-<8 hex>`). Same objects → same name → nothing to write; changed objects → a new Secret.
//! - The ManagedResource references the Secret in `spec.secretRefs` and names it once more in a
//!   `reference.resources.gardener.cloud/secret-<8 hex>` annotation. GRM's garbage collector deletes Secrets labelled
//!   `resources.gardener.cloud/garbage-collectable-reference: "true"` that no such annotation names any more, so a
//!   superseded Secret disappears without us tracking it.
//! - The ManagedResource is only written when its desired form differs from what the apiserver holds (labels and
//!   annotations of others are kept), so a steady-state reconcile performs reads only.
//!
//! How a ManagedResource's conditions become the Extension's health is [`crate::contract::health`]'s business.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::apis::common::ConditionStatus;
use crate::apis::resources::{
    CONDITION_RESOURCES_APPLIED, LocalObjectReference, ManagedResource, ManagedResourceSpec, reasons,
};
use crate::constants::{
    ANNOTATION_REFERENCE_PREFIX, LABEL_GARBAGE_COLLECTABLE_REFERENCE, LABEL_ORIGIN, LABEL_SHOOT_NO_CLEANUP,
    MANAGED_RESOURCE_SECRET_KEY, MANAGED_RESOURCE_SECRET_PREFIX,
};
use crate::contract::errors::{ErrorCode, ErrorCodes, is_configuration_problem};
use crate::yaml::YamlError;

/// How often [`wait_until_deleted`] polls, as Gardener's `managedresources.IntervalWait`.
pub const WAIT_INTERVAL: Duration = Duration::from_secs(2);

/// A ManagedResource operation failed. Every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum ManagedResourceError {
    /// The objects could not be serialised (never expected for JSON values).
    #[error("cannot encode the objects of ManagedResource {namespace}/{name}: {source}")]
    Encode {
        namespace: String,
        name: String,
        #[source]
        source: YamlError,
    },
    /// An API call on a Secret failed.
    #[error("cannot {action} Secret {namespace}/{name}: {source}")]
    Secret {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// An API call on the ManagedResource failed.
    #[error("cannot {action} ManagedResource {namespace}/{name}: {source}")]
    ManagedResource {
        action: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The ManagedResource still exists after the timeout; `detail` is GRM's deletion message, if it gave one.
    #[error(
        "ManagedResource {namespace}/{name} was not deleted within {timeout:?}{}",
        detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    DeletionTimeout { namespace: String, name: String, timeout: Duration, detail: Option<String> },
}

impl ErrorCodes for ManagedResourceError {
    /// A deletion that hangs because GRM cannot apply an invalid object is a configuration problem; failed API calls
    /// carry the codes of the kube error.
    fn codes(&self) -> Vec<ErrorCode> {
        match self {
            ManagedResourceError::DeletionTimeout { detail, .. } => {
                if detail.as_deref().is_some_and(is_configuration_problem) {
                    vec![ErrorCode::ConfigurationProblem]
                } else {
                    Vec::new()
                }
            }
            ManagedResourceError::Secret { source, .. } | ManagedResourceError::ManagedResource { source, .. } => {
                source.codes()
            }
            ManagedResourceError::Encode { .. } => Vec::new(),
        }
    }
}

/// What [`create_or_update_for_shoot`] did to the ManagedResource. (The Secret is created whenever it is missing,
/// whatever the outcome.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The ManagedResource did not exist and was created.
    Created,
    /// The ManagedResource differed from the desired one and was replaced.
    Updated,
    /// The ManagedResource was already as desired; it was not written.
    Unchanged,
}

// -------------------------------------------------------------------------------------------------------------
// Pure builders
// -------------------------------------------------------------------------------------------------------------

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Gardener's `utils.ComputeSecretChecksum`: SHA-256 (hex) of the concatenated hex SHA-256 of each value, in key
/// order.
pub fn secret_checksum(data: &BTreeMap<String, ByteString>) -> String {
    let concatenated: String = data.values().map(|value| sha256_hex(&value.0)).collect();
    sha256_hex(concatenated.as_bytes())
}

/// GRM's `references.AnnotationKey("secret", name)`: `reference.resources.gardener.cloud/secret-<8 hex>`.
pub fn reference_annotation_key(secret_name: &str) -> String {
    format!("{ANNOTATION_REFERENCE_PREFIX}secret-{}", &sha256_hex(secret_name.as_bytes())[..8])
}

/// The objects as YAML documents joined by `---\n`; the same objects always give the same text (JSON objects are
/// encoded with their keys in a fixed order).
pub fn objects_yaml(objects: &[Value]) -> Result<String, YamlError> {
    let mut documents = Vec::with_capacity(objects.len());
    for object in objects {
        let mut document = crate::yaml::to_string(object)?;
        if let Some(stripped) = document.strip_prefix("---\n") {
            document = stripped.to_string();
        }
        if !document.ends_with('\n') {
            document.push('\n');
        }
        documents.push(document);
    }
    Ok(documents.join("---\n"))
}

/// The immutable Secret holding `objects` for the ManagedResource `mr_name` (`managedresources.NewSecret(...).
/// Unique()`): name `managedresource-<mr_name>-<first 8 hex of the checksum>`, data key `objects.yaml`,
/// `immutable: true`, type `Opaque`, labelled garbage-collectable.
pub fn secret_for(mr_name: &str, namespace: &str, objects: &[Value]) -> Result<Secret, ManagedResourceError> {
    let yaml = objects_yaml(objects).map_err(|source| ManagedResourceError::Encode {
        namespace: namespace.to_string(),
        name: mr_name.to_string(),
        source,
    })?;
    let data = BTreeMap::from([(MANAGED_RESOURCE_SECRET_KEY.to_string(), ByteString(yaml.into_bytes()))]);
    let checksum = secret_checksum(&data);
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(format!("{MANAGED_RESOURCE_SECRET_PREFIX}{mr_name}-{}", &checksum[..8])),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(LABEL_GARBAGE_COLLECTABLE_REFERENCE.to_string(), "true".to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        immutable: Some(true),
        type_: Some("Opaque".to_string()),
        ..Secret::default()
    })
}

/// The ManagedResource for the shoot's resource manager (`managedresources.NewForShoot(...).WithSecretRef(...)`
/// plus `references.InjectAnnotations`): class unset, label `origin`, injectLabels
/// `shoot.gardener.cloud/no-cleanup: "true"`, `keepObjects`, one secretRef and its reference annotation.
pub fn managed_resource_for_shoot(
    name: &str,
    namespace: &str,
    origin: &str,
    keep_objects: bool,
    secret_name: &str,
) -> ManagedResource {
    ManagedResource {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(LABEL_ORIGIN.to_string(), origin.to_string())])),
            annotations: Some(BTreeMap::from([(reference_annotation_key(secret_name), secret_name.to_string())])),
            ..ObjectMeta::default()
        },
        spec: ManagedResourceSpec {
            secret_refs: vec![LocalObjectReference { name: secret_name.to_string() }],
            class: None,
            inject_labels: Some(BTreeMap::from([(LABEL_SHOOT_NO_CLEANUP.to_string(), "true".to_string())])),
            keep_objects: Some(keep_objects),
            ..ManagedResourceSpec::default()
        },
        status: None,
    }
}

/// `existing` changed as the Go builder's `Reconcile` changes it: our labels set (others kept), every reference
/// annotation replaced by ours (other annotations kept), the spec replaced by ours. Status and the rest of the
/// metadata are untouched.
pub fn merge_into_existing(existing: &ManagedResource, desired: &ManagedResource) -> ManagedResource {
    let mut merged = existing.clone();
    if let Some(labels) = &desired.metadata.labels {
        merged.metadata.labels.get_or_insert_with(BTreeMap::new).extend(labels.clone());
    }
    let mut annotations: BTreeMap<String, String> = existing
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| !key.starts_with(ANNOTATION_REFERENCE_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    annotations.extend(desired.metadata.annotations.clone().unwrap_or_default());
    merged.metadata.annotations =
        if annotations.is_empty() && existing.metadata.annotations.is_none() { None } else { Some(annotations) };
    merged.spec = desired.spec.clone();
    merged
}

// -------------------------------------------------------------------------------------------------------------
// API calls
// -------------------------------------------------------------------------------------------------------------

fn secret_error(action: &'static str, namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> ManagedResourceError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ManagedResourceError::Secret { action, namespace, name, source: Box::new(source) }
}

fn mr_error(action: &'static str, namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> ManagedResourceError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ManagedResourceError::ManagedResource { action, namespace, name, source: Box::new(source) }
}

fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

/// Creates `secret` unless a Secret of that name exists (immutable: its data never changes, the name is its
/// checksum). An existing one only gets the garbage-collectable label back if someone removed it.
async fn ensure_secret(secrets: &Api<Secret>, namespace: &str, secret: &Secret) -> Result<(), ManagedResourceError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    match secrets.get_opt(&name).await.map_err(secret_error("get", namespace, &name))? {
        None => match secrets.create(&PostParams::default(), secret).await {
            Ok(_) => Ok(()),
            // Created concurrently (e.g. by a previous, interrupted reconcile): same name, same data.
            Err(error) if is_status(&error, 409) => Ok(()),
            Err(error) => Err(secret_error("create", namespace, &name)(error)),
        },
        Some(existing) => mark_garbage_collectable(secrets, namespace, &existing).await,
    }
}

/// Labels `secret` garbage-collectable unless it already is (`markSecretsAsGarbageCollectable`).
async fn mark_garbage_collectable(
    secrets: &Api<Secret>,
    namespace: &str,
    secret: &Secret,
) -> Result<(), ManagedResourceError> {
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(LABEL_GARBAGE_COLLECTABLE_REFERENCE))
        .is_some_and(|value| value == "true");
    if labelled {
        return Ok(());
    }
    let name = secret.metadata.name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"labels": {LABEL_GARBAGE_COLLECTABLE_REFERENCE: "true"}}});
    match secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(error) if is_status(&error, 404) => Ok(()),
        Err(error) => Err(secret_error("label", namespace, &name)(error)),
    }
}

/// Gardener's `managedresources.CreateForShoot`: ensures the Secret with `objects` exists and the ManagedResource
/// `namespace/name` references it (see the module documentation). Secrets the ManagedResource referenced before are
/// labelled garbage-collectable (they normally are already) and left to GRM's garbage collector. The
/// ManagedResource is written only when it differs from the desired form; a conflicting concurrent write fails with
/// 409 and the caller retries.
pub async fn create_or_update_for_shoot(
    client: &Client,
    namespace: &str,
    name: &str,
    origin: &str,
    keep_objects: bool,
    objects: &[Value],
) -> Result<Outcome, ManagedResourceError> {
    let secret = secret_for(name, namespace, objects)?;
    let secret_name = secret.metadata.name.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    ensure_secret(&secrets, namespace, &secret).await?;

    let desired = managed_resource_for_shoot(name, namespace, origin, keep_objects, &secret_name);
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), namespace);
    let Some(existing) = resources.get_opt(name).await.map_err(mr_error("get", namespace, name))? else {
        resources.create(&PostParams::default(), &desired).await.map_err(mr_error("create", namespace, name))?;
        return Ok(Outcome::Created);
    };

    for reference in &existing.spec.secret_refs {
        if let Some(old) =
            secrets.get_opt(&reference.name).await.map_err(secret_error("get", namespace, &reference.name))?
        {
            mark_garbage_collectable(&secrets, namespace, &old).await?;
        }
    }

    let merged = merge_into_existing(&existing, &desired);
    if merged == existing {
        return Ok(Outcome::Unchanged);
    }
    resources.replace(name, &PostParams::default(), &merged).await.map_err(mr_error("update", namespace, name))?;
    Ok(Outcome::Updated)
}

/// The ManagedResource, or `None` when it does not exist.
pub async fn get(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ManagedResource>, ManagedResourceError> {
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), namespace);
    resources.get_opt(name).await.map_err(mr_error("get", namespace, name))
}

/// Sets `spec.keepObjects` (Gardener's `SetKeepObjects`); a missing ManagedResource is fine. The migrate flow sets it
/// to `true` before deleting, so the shoot's objects survive.
pub async fn set_keep_objects(
    client: &Client,
    namespace: &str,
    name: &str,
    keep: bool,
) -> Result<(), ManagedResourceError> {
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), namespace);
    let patch = json!({"spec": {"keepObjects": keep}});
    match resources.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(error) if is_status(&error, 404) => Ok(()),
        Err(error) => Err(mr_error("update", namespace, name)(error)),
    }
}

/// Deletes the ManagedResource and its Secrets (Gardener's `DeleteForShoot`): the referenced Secrets (and the
/// unsuffixed `managedresource-<name>` of old library versions) first, so they are not lost if the ManagedResource
/// is gone and something fails right after; GRM's finalizers keep them until the ManagedResource is gone. Anything
/// already missing is fine. GRM then deletes the objects in the shoot (unless `keepObjects`); see
/// [`wait_until_deleted`].
pub async fn delete(client: &Client, namespace: &str, name: &str) -> Result<(), ManagedResourceError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), namespace);
    let mut secret_names = vec![format!("{MANAGED_RESOURCE_SECRET_PREFIX}{name}")];
    if let Some(existing) = resources.get_opt(name).await.map_err(mr_error("get", namespace, name))? {
        secret_names.extend(existing.spec.secret_refs.iter().map(|reference| reference.name.clone()));
    }
    for secret_name in &secret_names {
        match secrets.delete(secret_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) => {}
            Err(error) => return Err(secret_error("delete", namespace, secret_name)(error)),
        }
    }
    match resources.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(error) if is_status(&error, 404) => Ok(()),
        Err(error) => Err(mr_error("delete", namespace, name)(error)),
    }
}

/// GRM's explanation why a deletion hangs: the `ResourcesApplied` message when that condition is not `True` and its
/// reason is `DeletionFailed` or `DeletionPending` (what Gardener's `WaitUntilDeleted` surfaces).
pub fn deletion_problem(mr: &ManagedResource) -> Option<String> {
    let applied = mr.condition(CONDITION_RESOURCES_APPLIED)?;
    let stuck = applied.status != ConditionStatus::True
        && (applied.reason == reasons::DELETION_FAILED || applied.reason == reasons::DELETION_PENDING);
    stuck.then(|| applied.message.clone())
}

/// Polls every `interval` until the ManagedResource is gone. After `timeout`, fails with
/// [`ManagedResourceError::DeletionTimeout`] carrying [`deletion_problem`] of the last seen object.
pub async fn wait_until_deleted(
    client: &Client,
    namespace: &str,
    name: &str,
    interval: Duration,
    timeout: Duration,
) -> Result<(), ManagedResourceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Some(mr) = get(client, namespace, name).await? else {
            return Ok(());
        };
        if tokio::time::Instant::now() + interval > deadline {
            return Err(ManagedResourceError::DeletionTimeout {
                namespace: namespace.to_string(),
                name: name.to_string(),
                timeout,
                detail: deletion_problem(&mr),
            });
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests;
