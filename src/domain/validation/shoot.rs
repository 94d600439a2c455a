//! Rules that need the Shoot: which worker pools run cri-resmgr, the pool selection against
//! `spec.provider.workers`, validation of the Shoot's entries (with ratcheting on UPDATE) and the defaulting patch.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use serde_json::Value;

use super::body_cache::ConfigBodyCache;
use super::field::{FieldError, FieldPath, quote, quote_list};
use super::provider_config::{decode_provider_config, default_provider_config, validate_provider_config_with};
use crate::apis::config::ProviderConfig;
use crate::apis::core::{Shoot, ShootExtension, Worker};
use crate::constants::{CRI_CONTAINERD, EXTENSION_TYPE};
use crate::domain::images::{INSTALLATION, ImageVector};

/// True for an entry of `spec.extensions` that is ours and not disabled.
fn is_enabled_entry(extension: &ShootExtension) -> bool {
    extension.type_ == EXTENSION_TYPE && extension.disabled != Some(true)
}

/// The architectures the extension ships cri-resmgr for: those of the installation image in the embedded
/// `images.yaml` (admission runs in the garden, where no seed's image vector override is known), read once.
fn shipped_architectures() -> &'static [String] {
    // The embedded vector is checked by the images module's tests; should it not parse, the check is skipped rather
    // than every explicit selection denied.
    static SHIPPED: LazyLock<Vec<String>> = LazyLock::new(|| {
        ImageVector::embedded().map(|images| images.architectures_of(INSTALLATION)).unwrap_or_default()
    });
    &SHIPPED
}

/// Checks `workerPools` against the Shoot's pools: every named pool exists in `spec.provider.workers`, runs
/// containerd, and has an architecture cri-resmgr is shipped for. `path` is the path of `workerPools`.
///
/// Without `workerPools`, nothing is checked, even when no pool runs containerd: the extension may be enabled for
/// every Shoot by the operator (ControllerRegistration `globallyEnabled`/`autoEnable`), and rejecting would block
/// Shoots whose owners never asked for cri-resmgr. Such a Shoot simply gets cri-resmgr on no node (the agent and its
/// ConfigMaps are harmless there). With an explicit selection the owner asked for specific pools, so every mistake
/// in it is an error.
pub fn validate_worker_pool_selection(
    config: &ProviderConfig,
    workers: &[Worker],
    path: &FieldPath,
) -> Vec<FieldError> {
    let Some(names) = &config.worker_pools else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    let architectures = shipped_architectures();
    for (i, name) in names.iter().enumerate() {
        // Empty and repeated names are reported by `validate_provider_config`.
        if name.is_empty() || !seen.insert(name.as_str()) {
            continue;
        }
        let selected_at = path.index(i);
        let Some((j, worker)) = workers.iter().enumerate().find(|(_, worker)| worker.name == *name) else {
            let existing: Vec<&str> = workers.iter().map(|worker| worker.name.as_str()).collect();
            let detail = if existing.is_empty() {
                "the shoot has no worker pools in spec.provider.workers".to_owned()
            } else {
                format!("no such pool in spec.provider.workers; pools: {}", quote_list(&existing))
            };
            errors.push(FieldError::not_found(&selected_at, name, detail));
            continue;
        };
        let worker_path = FieldPath::new("spec").child("provider").child("workers").index(j);
        let cri_path = worker_path.child("cri").child("name");
        let architecture = worker.architecture();
        if !architectures.is_empty() && !architectures.iter().any(|a| a == architecture) {
            let shipped: Vec<&str> = architectures.iter().map(String::as_str).collect();
            errors.push(FieldError::new(
                &selected_at,
                format!(
                    "Unsupported value: {}: worker pool {} runs on {} ({}), and cri-resmgr is only available for {}; \
                     select only pools on {}",
                    quote(name),
                    quote(name),
                    quote(architecture),
                    worker_path.child("machine").child("architecture"),
                    quote_list(&shipped),
                    quote_list(&shipped),
                ),
            ));
        }
        match worker.cri_name() {
            Some(CRI_CONTAINERD) => {}
            Some(other) => errors.push(FieldError::new(
                &cri_path,
                format!(
                    "Unsupported value: {}: worker pool {} is selected in {selected_at}, and cri-resmgr only works \
                     with {}",
                    quote(other),
                    quote(name),
                    quote(CRI_CONTAINERD)
                ),
            )),
            None => errors.push(FieldError::required(
                &cri_path,
                format!(
                    "worker pool {} is selected in {selected_at}, and cri-resmgr only works with {}",
                    quote(name),
                    quote(CRI_CONTAINERD)
                ),
            )),
        }
    }
    errors
}

/// What [`validate_worker_pool_selection`] knows of a selected pool: its CRI and its machine architecture.
type PoolFacts<'a> = (Option<&'a str>, &'a str);

/// The facts about worker pools that [`validate_worker_pool_selection`] judges for this providerConfig: each name
/// listed in `workerPools` with the pool's CRI and architecture (`None` when there is no such pool). Read leniently
/// from the raw providerConfig, because ratcheting must also work for configs that do not decode.
fn selection_facts<'a>(raw: Option<&'a Value>, workers: &'a [Worker]) -> Vec<(&'a str, Option<PoolFacts<'a>>)> {
    raw.and_then(|raw| raw.get("workerPools"))
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|name| {
                    let pool = workers.iter().find(|worker| worker.name == name);
                    (name, pool.map(|worker| (worker.cri_name(), worker.architecture())))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A providerConfig as the defaulting webhook leaves it ([`default_provider_config`]: apiVersion and kind added
/// when both are missing, `{apiVersion, kind}` for an absent or null one), so that two providerConfigs that differ
/// only in what defaulting adds compare equal. Anything defaulting does not touch is kept as it is.
fn as_defaulted(raw: Option<&Value>) -> Option<Value> {
    default_provider_config(raw).or_else(|| raw.cloned())
}

/// Validates the Shoot's entries of our extension type on CREATE (`old` is `None`) and UPDATE.
///
/// - Disabled entries (`disabled: true`) are not validated: nothing of them is deployed.
/// - Ratcheting: on UPDATE, an entry whose providerConfig equals that of the old Shoot's enabled entry, with the
///   same facts about the selected worker pools, is not judged again ("validate only when the spec changed", as
///   Gardener's admission guide asks), so a Shoot accepted by an older, more lenient version of these rules (or
///   stored before there was any admission) can still be updated in other respects. The providerConfigs are
///   compared as decoded values after defaulting ([`as_defaulted`]): the defaulting webhook runs first and adds
///   apiVersion/kind to the new Shoot of every UPDATE, which is no change of the user's configuration.
/// - Otherwise the providerConfig is decoded and validated with paths `spec.extensions[i].providerConfig…`, and
///   `workerPools` is checked against `spec.provider.workers` ([`validate_worker_pool_selection`]).
pub fn validate_shoot(new: &Shoot, old: Option<&Shoot>) -> Vec<FieldError> {
    validate_shoot_with(new, old, None)
}

/// [`validate_shoot`], taking the verdicts on configuration bodies from `bodies` when given (the admission webhook
/// keeps one [`ConfigBodyCache`] for all Shoots).
pub fn validate_shoot_with(new: &Shoot, old: Option<&Shoot>, bodies: Option<&ConfigBodyCache>) -> Vec<FieldError> {
    let workers = new.spec.provider.workers.as_slice();
    let mut errors = Vec::new();
    for (i, extension) in new.spec.extensions.iter().enumerate() {
        if !is_enabled_entry(extension) {
            continue;
        }
        let raw = extension.provider_config.as_ref();
        let unchanged = old.is_some_and(|old| {
            let old_workers = old.spec.provider.workers.as_slice();
            old.spec.enabled_extension(EXTENSION_TYPE).is_some_and(|(_, old_extension)| {
                as_defaulted(old_extension.provider_config.as_ref()) == as_defaulted(raw)
                    && selection_facts(raw, workers) == selection_facts(raw, old_workers)
            })
        });
        if unchanged {
            continue;
        }
        let path = FieldPath::new("spec").child("extensions").index(i).child("providerConfig");
        match decode_provider_config(raw.unwrap_or(&Value::Null), &path) {
            Err(decode_errors) => errors.extend(decode_errors),
            Ok(config) => {
                if let Err(config_errors) = validate_provider_config_with(&config, &path, bodies) {
                    errors.extend(config_errors);
                }
                errors.extend(validate_worker_pool_selection(&config, workers, &path.child("workerPools")));
            }
        }
    }
    errors
}

/// The JSON patch the mutating admission webhook returns for a Shoot, or `None` when nothing is to change: for each
/// enabled entry of our type, [`default_provider_config`] as precise `add` operations (the whole providerConfig
/// when it is absent or null, else just `apiVersion` and `kind`).
pub fn default_shoot(shoot: &Shoot) -> Option<json_patch::Patch> {
    use json_patch::jsonptr::PointerBuf;
    use json_patch::{AddOperation, PatchOperation};

    let mut operations = Vec::new();
    for (i, extension) in shoot.spec.extensions.iter().enumerate() {
        if !is_enabled_entry(extension) {
            continue;
        }
        let raw = extension.provider_config.as_ref();
        let Some(defaulted) = default_provider_config(raw) else {
            continue;
        };
        let index = i.to_string();
        let base = ["spec", "extensions", index.as_str(), "providerConfig"];
        match (raw, defaulted) {
            (Some(Value::Object(_)), Value::Object(mut fields)) => {
                for field in ["apiVersion", "kind"] {
                    if let Some(value) = fields.remove(field) {
                        let path = PointerBuf::from_tokens(base.iter().copied().chain([field]));
                        operations.push(PatchOperation::Add(AddOperation { path, value }));
                    }
                }
            }
            // Absent or null: `add` creates the member or replaces the null.
            (_, value) => {
                let path = PointerBuf::from_tokens(base);
                operations.push(PatchOperation::Add(AddOperation { path, value }));
            }
        }
    }
    if operations.is_empty() { None } else { Some(json_patch::Patch(operations)) }
}
