//! The one merge of the operator's base configs and the Shoot's configs.
//!
//! The reconciler (agent ConfigMaps), the OperatingSystemConfig webhook (node files) and `render` all call
//! [`merge`], so what a Shoot gets is decided in one place:
//!
//! 1. Base configs come from ConfigMap [`BASE_CONFIGS_CONFIG_MAP`] in the extension's namespace
//!    (`$EXTENSION_CONFIGMAP_NAMESPACE`), one data key per config type — the same keys as the Shoot's
//!    `providerConfig.configs` ([`base_configs`] reads them).
//! 2. The Shoot's configs override the base configs key by key: a Shoot's `default` replaces the base `default`, a
//!    Shoot's `node.a` adds to (or replaces) the base's `node.*` keys, and so on. Nothing is merged inside a text.
//! 3. Base and Shoot configs are validated with [`crate::domain::validation`]'s rules, each at its own path, so an
//!    operator's mistake (`configmap gardener-extension-cri-resmgr-configs data["default"].policy.Active: …`) reads
//!    as clearly as a user's (`providerConfig.configs["default"].policy.Active: …`). The merge itself is checked
//!    against the size limits, since two valid halves can together be too big for one ManagedResource Secret.
//! 4. Each text is parsed once, when it is validated; [`MergedConfigs`] holds the parsed bodies
//!    ([`ConfigBody`]: text, sections, active policy), and the agent's ConfigMaps and the node files are built from
//!    them without reading any text again.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::ConfigMap;

use crate::apis::config::ProviderConfig;
use crate::apis::core::Worker;
use crate::constants::BASE_CONFIGS_CONFIG_MAP;
use crate::domain::validation::{
    ConfigBody, Configs, FieldError, FieldPath, Policy, PoolSelection, ValidProviderConfig, validate_configs,
    validate_provider_config,
};

/// The configuration used where the user and the operator gave none: as the agent's `.default` ConfigMap when
/// neither `default` nor `fallback` is configured, and as the node's fallback file when `fallback` is not.
///
/// Why `none`: it is cri-resmgr's own default policy (since v0.8) and does nothing to containers — no CPU or memory
/// pinning, no reserved CPUs, no RDT/blockio classes — so it is safe on every machine type. It is written out
/// explicitly instead of leaving the ConfigMap away or empty because the agent then pushes an *empty*
/// configuration, which cri-resmgr caches and prefers over the fallback file on every later start
/// (cri-resource-manager reference §3.4, §4).
pub const BUILTIN_CONFIG: &str = "policy:\n  Active: none\n";

/// Root of the field paths of the Shoot's part: the providerConfig as the Extension carries it.
pub const SHOOT_CONFIG_ROOT: &str = "providerConfig";

/// Field path of the base configs: `configmap gardener-extension-cri-resmgr-configs data`; a key `k` is reported as
/// `configmap gardener-extension-cri-resmgr-configs data["k"]`.
pub fn base_configs_path() -> FieldPath {
    FieldPath::new(&format!("configmap {BASE_CONFIGS_CONFIG_MAP} data"))
}

/// Field path under which problems of the merge as a whole (its size) are reported.
fn merged_configs_path(shoot_path: &FieldPath) -> FieldPath {
    FieldPath::new(&format!("configs (configmap {BASE_CONFIGS_CONFIG_MAP} data merged with {shoot_path}.configs)"))
}

/// The base configs in ConfigMap [`BASE_CONFIGS_CONFIG_MAP`]; no ConfigMap (`None`) means no base configs.
/// Configs must be text in `data`: a `binaryData` key is an error rather than silently ignored.
pub fn base_configs(config_map: Option<&ConfigMap>) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let Some(config_map) = config_map else {
        return Ok(BTreeMap::new());
    };
    let binary_path = FieldPath::new(&format!("configmap {BASE_CONFIGS_CONFIG_MAP} binaryData"));
    let errors: Vec<FieldError> = config_map
        .binary_data
        .iter()
        .flatten()
        .map(|(key, _)| {
            FieldError::forbidden(
                &binary_path.key(key),
                "base configs are text: put each config type under data (one key per config type, as in a \
                 Shoot's providerConfig.configs)",
            )
        })
        .collect();
    if errors.is_empty() { Ok(config_map.data.clone().unwrap_or_default()) } else { Err(errors) }
}

/// Base configs merged with the Shoot's: every body valid and parsed once ([`ConfigBody`]), the Shoot's pool
/// selection (see [`merge`]).
///
/// `force` and `fallback` may both be set (e.g. one by the operator, one by the user); cri-resmgr refuses
/// `--force-config` together with `--fallback-config`, so the node side passes only `--force-config` then.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedConfigs {
    /// The configs, the Shoot's over the base configs key by key.
    pub configs: Configs,
    /// The Shoot's `workerPools` (base configs carry no pool selection): absent selects every containerd pool.
    pub worker_pools: PoolSelection,
}

/// [`BUILTIN_CONFIG`] as a body, built rather than parsed (a test checks that both agree).
static BUILTIN: LazyLock<ConfigBody> = LazyLock::new(|| ConfigBody::with_policy(Policy::None));

/// Merges the base configs (ConfigMap data, see [`base_configs`]) with the Shoot's providerConfig (`None`: the
/// Shoot gives none) key by key, the Shoot winning, and validates both halves and the result.
///
/// Errors are reported at `configmap gardener-extension-cri-resmgr-configs data["<key>"]…` for the base and at
/// `providerConfig.configs["<key>"]…` / `providerConfig.workerPools…` for the Shoot; all of them, not just the first.
pub fn merge(
    base: &BTreeMap<String, String>,
    shoot: Option<&ProviderConfig>,
) -> Result<MergedConfigs, Vec<FieldError>> {
    merge_at(base, shoot, &FieldPath::new(SHOOT_CONFIG_ROOT))
}

/// [`merge`], reporting the Shoot's errors below `shoot_path` — e.g. `spec.extensions[2].providerConfig`, so that
/// the controller's errors read exactly like the admission webhook's. Each text is parsed once, by validation;
/// the merge moves the parsed bodies.
pub fn merge_at(
    base: &BTreeMap<String, String>,
    shoot: Option<&ProviderConfig>,
    shoot_path: &FieldPath,
) -> Result<MergedConfigs, Vec<FieldError>> {
    let base = validate_configs(base, &base_configs_path());
    let shoot = shoot.map(|shoot| validate_provider_config(shoot, shoot_path)).transpose();
    match (base, shoot) {
        (Ok(base), Ok(shoot)) => merge_valid(base, shoot, shoot_path),
        (base, shoot) => {
            let mut errors = base.err().unwrap_or_default();
            errors.extend(shoot.err().unwrap_or_default());
            Err(errors)
        }
    }
}

/// The merge of two validated halves: the Shoot's configs override the base configs key by key, and the result is
/// checked against the limits on the whole (entries, total size), since two valid halves can together be too big
/// for one ManagedResource Secret. `shoot_path` names the Shoot's half in that error.
pub fn merge_valid(
    base: Configs,
    shoot: Option<ValidProviderConfig>,
    shoot_path: &FieldPath,
) -> Result<MergedConfigs, Vec<FieldError>> {
    let (configs, worker_pools) = match shoot {
        Some(shoot) => (base.overridden_by(shoot.configs), shoot.worker_pools),
        None => (base, PoolSelection::default()),
    };
    let errors = configs.validate_size(&merged_configs_path(shoot_path));
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(MergedConfigs { configs, worker_pools })
}

impl MergedConfigs {
    /// What the agent's `cri-resmgr-config.default` ConfigMap holds: `default`, else `fallback` (so that nodes keep
    /// behaving as the fallback file says once the agent pushes), else [`BUILTIN_CONFIG`]. Never empty: with no
    /// `.default` ConfigMap the agent pushes an empty configuration, which cri-resmgr caches in preference to the
    /// fallback file from then on.
    pub fn agent_default_config(&self) -> &ConfigBody {
        self.configs.default.as_ref().or(self.configs.fallback.as_ref()).unwrap_or(&BUILTIN)
    }

    /// What the node's fallback file holds: `fallback`, else [`BUILTIN_CONFIG`].
    pub fn node_fallback_config(&self) -> &ConfigBody {
        self.configs.fallback.as_ref().unwrap_or(&BUILTIN)
    }

    /// The merged configs in their wire form (config key → text), e.g. for `render` to show.
    pub fn to_configs(&self) -> BTreeMap<String, String> {
        self.configs.to_wire()
    }

    /// True when cri-resmgr runs on the nodes of `worker` (see [`PoolSelection::selects`]).
    pub fn is_worker_pool_selected(&self, worker: &Worker) -> bool {
        self.worker_pools.selects(worker)
    }

    /// The worker pools whose nodes run cri-resmgr, in the Shoot's order.
    pub fn selected_worker_pools<'a>(&self, workers: &'a [Worker]) -> Vec<&'a Worker> {
        self.worker_pools.selected(workers)
    }

    /// Names of [`Self::selected_worker_pools`], as the DaemonSets' node affinity takes them.
    pub fn selected_worker_pool_names(&self, workers: &[Worker]) -> Vec<String> {
        self.selected_worker_pools(workers).into_iter().map(|worker| worker.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::{MAX_CONFIG_BODY_BYTES, MAX_CONFIGS_TOTAL_BYTES, validate_config_body};

    /// The text of an optional body, to compare with the text it was parsed from.
    fn text(body: &Option<ConfigBody>) -> Option<&str> {
        body.as_ref().map(ConfigBody::text)
    }

    /// Name → text of named bodies.
    fn texts(bodies: &BTreeMap<String, ConfigBody>) -> BTreeMap<String, String> {
        bodies.iter().map(|(name, body)| (name.clone(), body.text().to_owned())).collect()
    }

    /// A body as validation gives it.
    fn body(text: &str) -> ConfigBody {
        validate_config_body(text, &FieldPath::new("test")).unwrap()
    }

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn shoot(entries: &[(&str, &str)]) -> ProviderConfig {
        ProviderConfig { configs: map(entries), ..Default::default() }
    }

    const TOPOLOGY: &str = "policy:\n  Active: topology-aware\n";
    const BALLOONS: &str = "policy:\n  Active: balloons\n";
    const STATIC: &str = "policy:\n  Active: static\n";

    #[test]
    fn shoot_configs_override_base_configs_key_by_key() {
        let base = map(&[
            ("fallback", TOPOLOGY),
            ("default", TOPOLOGY),
            ("EXTRA_OPTIONS", "--metrics-interval=10s"),
            ("node.a", STATIC),
            ("group.fast", STATIC),
        ]);
        let user = shoot(&[("default", BALLOONS), ("node.b", BALLOONS), ("group.fast", BALLOONS)]);
        let merged = merge(&base, Some(&user)).unwrap();
        assert_eq!(text(&merged.configs.fallback), Some(TOPOLOGY), "kept from base");
        assert_eq!(text(&merged.configs.default), Some(BALLOONS), "shoot wins");
        assert_eq!(merged.configs.force, None);
        assert_eq!(merged.configs.extra_options.as_deref(), Some("--metrics-interval=10s"));
        assert_eq!(
            texts(&merged.configs.nodes),
            map(&[("a", STATIC), ("b", BALLOONS)]),
            "node keys of both, shoot adds"
        );
        assert_eq!(texts(&merged.configs.groups), map(&[("fast", BALLOONS)]), "same group key: shoot wins");
        assert_eq!(merged.worker_pools.names(), None);
    }

    #[test]
    fn merge_without_shoot_or_base() {
        let merged = merge(&map(&[("force", STATIC)]), None).unwrap();
        assert_eq!(
            merged,
            MergedConfigs {
                configs: Configs { force: Some(body(STATIC)), ..Default::default() },
                ..Default::default()
            }
        );
        let user = ProviderConfig { worker_pools: Some(vec!["cpu".to_owned()]), ..shoot(&[("fallback", STATIC)]) };
        let merged = merge(&BTreeMap::new(), Some(&user)).unwrap();
        assert_eq!(text(&merged.configs.fallback), Some(STATIC));
        assert_eq!(merged.worker_pools.names(), Some(&["cpu".to_owned()][..]));
        assert_eq!(merge(&BTreeMap::new(), None).unwrap(), MergedConfigs::default());
    }

    #[test]
    fn to_configs_round_trips_the_merge() {
        let base = map(&[("fallback", TOPOLOGY), ("node.a", STATIC), ("EXTRA_OPTIONS", "--disable-ui")]);
        let user = shoot(&[("default", BALLOONS), ("group.g", BALLOONS), ("force", STATIC)]);
        let merged = merge(&base, Some(&user)).unwrap();
        let mut expected = base.clone();
        expected.extend(user.configs.clone());
        assert_eq!(merged.to_configs(), expected);
    }

    #[test]
    fn invalid_base_configs_are_errors_with_the_configmap_path() {
        let base = map(&[("foo", TOPOLOGY), ("default", "policy:\n  Active: null\n")]);
        let errors = merge(&base, None).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "configmap gardener-extension-cri-resmgr-configs data[\"default\"].policy.Active",
                "configmap gardener-extension-cri-resmgr-configs data[\"foo\"]",
            ]
        );
        assert!(errors[1].message.starts_with("Unsupported value: \"foo\": supported keys:"), "{}", errors[1]);
        assert!(errors[0].message.contains("\"null\" policy was removed"), "{}", errors[0]);
    }

    #[test]
    fn base_and_shoot_errors_are_reported_together() {
        let base = map(&[("default", "")]);
        let user = ProviderConfig {
            worker_pools: Some(vec![]),
            ..shoot(&[("EXTRA_OPTIONS", "--force-config=/x"), ("node.Bad_Name", TOPOLOGY)])
        };
        let errors = merge(&base, Some(&user)).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "configmap gardener-extension-cri-resmgr-configs data[\"default\"]",
                "providerConfig.configs[\"EXTRA_OPTIONS\"]",
                "providerConfig.configs[\"node.Bad_Name\"]",
                "providerConfig.workerPools",
            ]
        );
        assert!(errors[0].message.starts_with("Required value: the configuration must not be empty"));
    }

    #[test]
    fn merge_at_reports_shoot_errors_at_the_given_path() {
        let path = FieldPath::new("spec").child("extensions").index(2).child("providerConfig");
        let errors =
            merge_at(&BTreeMap::new(), Some(&shoot(&[("default", "policy:\n  Active: nope\n")])), &path).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "spec.extensions[2].providerConfig.configs[\"default\"].policy.Active");
        assert!(errors[0].message.starts_with("Unsupported value: \"nope\""), "{}", errors[0]);
    }

    #[test]
    fn a_merge_too_big_for_one_secret_is_an_error_although_both_halves_fit() {
        // Each half is below the total limit, together they are above it.
        let body = |tag: &str| format!("policy:\n  Active: none\n# {}\n", tag.repeat(MAX_CONFIG_BODY_BYTES / 2));
        let half = MAX_CONFIGS_TOTAL_BYTES / (MAX_CONFIG_BODY_BYTES / 2) / 2 + 1;
        let base: BTreeMap<String, String> = (0..half).map(|i| (format!("node.b{i}"), body("b"))).collect();
        let user = ProviderConfig {
            configs: (0..half).map(|i| (format!("node.s{i}"), body("s"))).collect(),
            ..Default::default()
        };
        assert!(validate_configs(&base, &base_configs_path()).is_ok());
        assert!(validate_configs(&user.configs, &FieldPath::new("x")).is_ok());
        let errors = merge(&base, Some(&user)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].path,
            "configs (configmap gardener-extension-cri-resmgr-configs data merged with providerConfig.configs)"
        );
        assert!(errors[0].message.starts_with("Too long:"), "{}", errors[0]);
    }

    #[test]
    fn the_builtin_config_is_valid_and_pins_nothing() {
        let parsed = validate_config_body(BUILTIN_CONFIG, &FieldPath::new("builtin")).unwrap();
        let sections = parsed.sections();
        assert_eq!(sections.len(), 1);
        assert_eq!(sections["policy"], serde_json::json!({"Active": "none"}));
        assert_eq!(parsed.active_policy(), Some(Policy::None));
        // The built body (no parse) is exactly what parsing the text gives.
        assert_eq!(*BUILTIN, parsed);
        assert_eq!(BUILTIN.text(), BUILTIN_CONFIG);
    }

    #[test]
    fn the_agent_default_config_is_always_present() {
        let from_default = merge(&map(&[("default", BALLOONS), ("fallback", TOPOLOGY)]), None).unwrap();
        assert_eq!(from_default.agent_default_config().text(), BALLOONS);
        let from_fallback = merge(&map(&[("fallback", TOPOLOGY), ("node.a", STATIC)]), None).unwrap();
        assert_eq!(from_fallback.agent_default_config().text(), TOPOLOGY);
        let builtin = merge(&map(&[("force", STATIC), ("group.g", BALLOONS)]), None).unwrap();
        assert_eq!(builtin.agent_default_config().text(), BUILTIN_CONFIG);
    }

    #[test]
    fn the_node_fallback_config_is_always_present() {
        let merged = merge(&map(&[("fallback", TOPOLOGY), ("default", BALLOONS)]), None).unwrap();
        assert_eq!(merged.node_fallback_config().text(), TOPOLOGY);
        let merged = merge(&map(&[("default", BALLOONS)]), None).unwrap();
        assert_eq!(merged.node_fallback_config().text(), BUILTIN_CONFIG);
    }

    #[test]
    fn base_configs_come_from_data_and_reject_binary_data() {
        assert_eq!(base_configs(None).unwrap(), BTreeMap::new());
        let config_map = ConfigMap { data: Some(map(&[("default", TOPOLOGY)])), ..Default::default() };
        assert_eq!(base_configs(Some(&config_map)).unwrap(), map(&[("default", TOPOLOGY)]));
        let config_map = ConfigMap {
            binary_data: Some([("force".to_owned(), k8s_openapi::ByteString(b"x".to_vec()))].into()),
            ..Default::default()
        };
        let errors = base_configs(Some(&config_map)).unwrap_err();
        assert_eq!(errors[0].path, "configmap gardener-extension-cri-resmgr-configs binaryData[\"force\"]");
        assert!(errors[0].message.starts_with("Forbidden: base configs are text"));
    }

    #[test]
    fn worker_pool_selection_follows_the_shoot() {
        let worker = |name: &str, cri: Option<&str>| -> Worker {
            let mut value = serde_json::json!({"name": name, "machine": {"type": "m"}, "minimum": 1, "maximum": 1});
            if let Some(cri) = cri {
                value["cri"] = serde_json::json!({"name": cri});
            }
            serde_json::from_value(value).unwrap()
        };
        let workers = [worker("a", Some("containerd")), worker("b", Some("containerd")), worker("c", None)];
        let all = merge(&BTreeMap::new(), None).unwrap();
        assert_eq!(all.selected_worker_pool_names(&workers), ["a", "b"]);
        let user = ProviderConfig { worker_pools: Some(vec!["b".to_owned(), "c".to_owned()]), ..Default::default() };
        let some = merge(&BTreeMap::new(), Some(&user)).unwrap();
        assert_eq!(some.selected_worker_pool_names(&workers), ["b"], "c does not run containerd");
    }
}
