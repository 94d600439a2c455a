//! The Kubernetes objects the extension puts into the shoot, as typed k8s-openapi values.
//!
//! Two ManagedResources carry them (the controller builds and applies those):
//! - the runtime one ([`shoot_objects`]): cri-resmgr-agent (ServiceAccount, RBAC, DaemonSet), its ConfigMaps
//!   `cri-resmgr-config.{default,group.<G>,node.<N>}` and the Adjustment CRD — what the agent needs to push
//!   configurations to cri-resmgr on the selected nodes;
//! - the cleaner ([`cleaner_objects`]), deployed only by the Delete flow: a DaemonSet that removes cri-resmgr's node
//!   state once gardener-node-agent has taken cri-resmgr off the node, then stays Ready, so that the ManagedResource
//!   being healthy means "cleaned on every node".
//!
//! Everything must be accepted by a Kubernetes 1.20 apiserver: no field newer than 1.20 is set (PodSpec `os`,
//! `hostUsers`, `schedulingGates`, container `resizePolicy`, probe `grpc`, ...), and the CRD is apiextensions v1 with
//! a structural schema. Every object carries [`LABEL_APP_NAME`] and [`LABEL_MANAGED_BY`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, Container, EnvVar, EnvVarSource, ExecAction, HostPathVolumeSource, NodeAffinity,
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation, JSONSchemaProps, JSONSchemaPropsOrArray,
    JSONSchemaPropsOrBool,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Serialize;
use serde_json::Value;

use crate::constants::{
    ADJUSTMENT_CRD_NAME, ADJUSTMENT_GROUP, ADJUSTMENT_KIND, ADJUSTMENT_PLURAL, ADJUSTMENT_SINGULAR, ADJUSTMENT_VERSION,
    AGENT_CONFIG_MAP_PREFIX, AGENT_NAME, AGENT_PROBE_BINARY, AGENT_RBAC_NAME, CLEANER_NAME, ENV_NODE_NAME,
    LABEL_APP_NAME, LABEL_MANAGED_BY, LABEL_WORKER_POOL, MANAGED_BY, NODE_BINARY_PATH, NODE_CONFIG_DIR, NODE_PID_FILE,
    NODE_SOCKET_DIR, NODE_STATE_DIR, NODE_SYSTEMD_UNIT_DIR, PRIORITY_CLASS_SHOOT_SYSTEM_700, SHOOT_SYSTEM_NAMESPACE,
    UNIT_NAME,
};
use crate::domain::configs::MergedConfigs;
use crate::domain::images::ExtensionImages;
use crate::domain::validation::ConfigBody;
use crate::yaml::YamlError;

/// Why the shoot's objects could not be built. Configurations arrive validated and parsed (see
/// [`crate::domain::configs::merge`]), so these mean a bug; they name the object concerned.
#[derive(Debug, thiserror::Error)]
pub enum ShootResourcesError {
    #[error("configuration for ConfigMap {config_map}, section {section:?}: {source}")]
    Section { config_map: String, section: String, source: YamlError },
    #[error("cannot serialize {kind} {name}: {source}")]
    Serialize { kind: &'static str, name: String, source: serde_json::Error },
}

// ---------------------------------------------------------------------------------------------------------------
// Common pieces
// ---------------------------------------------------------------------------------------------------------------

/// Name of the agent container in the DaemonSet.
const AGENT_CONTAINER: &str = AGENT_NAME;
/// Name of the volume with the host's cri-resmgr socket directory.
const SOCKETS_VOLUME: &str = "cri-resmgr-sockets";
/// Names of the cleaner's containers and its volume.
const CLEANER_INIT_CONTAINER: &str = "cleanup";
const CLEANER_PAUSE_CONTAINER: &str = "pause";
const HOST_ROOT_VOLUME: &str = "host-root";
/// Where the cleaner mounts the host's `/`.
const HOST_ROOT_MOUNT: &str = "/host";
/// The pause image's own non-root user (`registry.k8s.io/pause` sets `USER 65535:65535`).
const PAUSE_USER: i64 = 65535;

/// `app.kubernetes.io/name: <app>`, `app.kubernetes.io/managed-by: gardener-extension-cri-resmgr`.
fn labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_APP_NAME.to_owned(), app.to_owned()), (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned())])
}

/// Metadata of a namespaced object in kube-system.
fn system_metadata(name: &str, app: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(SHOOT_SYSTEM_NAMESPACE.to_owned()),
        labels: Some(labels(app)),
        ..Default::default()
    }
}

/// Metadata of a cluster-scoped object.
fn cluster_metadata(name: &str, app: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), labels: Some(labels(app)), ..Default::default() }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn quantities(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
}

/// Required node affinity to the nodes of the given worker pools (label [`LABEL_WORKER_POOL`]), sorted and
/// deduplicated so the Shoot's pool order does not roll the DaemonSet. No pools: a term no node can satisfy (the
/// label both exists and does not), because `In` with no values is invalid and the DaemonSet should then simply
/// have no pods.
fn worker_pool_affinity(pools: &[String]) -> Affinity {
    let mut values: Vec<String> = pools.to_vec();
    values.sort();
    values.dedup();
    let requirement = |operator: &str, values: Option<Vec<String>>| NodeSelectorRequirement {
        key: LABEL_WORKER_POOL.to_owned(),
        operator: operator.to_owned(),
        values,
    };
    let match_expressions = if values.is_empty() {
        vec![requirement("Exists", None), requirement("DoesNotExist", None)]
    } else {
        vec![requirement("In", Some(values))]
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(match_expressions),
                    match_fields: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Tolerate every taint: the DaemonSets must run on every selected node, tainted or not (their node affinity is
/// what limits them).
fn tolerate_everything() -> Vec<Toleration> {
    vec![Toleration { operator: Some("Exists".to_owned()), ..Default::default() }]
}

/// Pod-level security context: the runtime's default seccomp profile.
fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
        ..Default::default()
    }
}

fn to_value<T: Serialize>(kind: &'static str, name: &str, object: &T) -> Result<Value, ShootResourcesError> {
    serde_json::to_value(object).map_err(|source| ShootResourcesError::Serialize {
        kind,
        name: name.to_owned(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Agent: identity and RBAC
// ---------------------------------------------------------------------------------------------------------------

/// The agent's ServiceAccount `kube-system/cri-resmgr-agent`.
pub fn agent_service_account() -> ServiceAccount {
    ServiceAccount { metadata: system_metadata(AGENT_NAME, AGENT_NAME), ..Default::default() }
}

fn rule(api_group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![api_group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

fn agent_subject() -> Subject {
    Subject {
        kind: "ServiceAccount".to_owned(),
        name: AGENT_NAME.to_owned(),
        namespace: Some(SHOOT_SYSTEM_NAMESPACE.to_owned()),
        api_group: None,
    }
}

/// The agent's cluster-wide permissions: only what concerns its Node (`nodes` is cluster-scoped).
/// - `nodes` get/list/watch: it watches its own Node for the group label; patch: `PatchNode` (labels, annotations,
///   taints — used by the static-pools policy).
/// - `nodes/status` patch: `UpdateNodeCapacity` (static-pools' extended resources).
///
/// The shipped manifest also grants `update` and fake resources (`labels`, `annotations`); the agent uses neither.
/// ConfigMaps and Adjustments are namespaced and the agent reads them only in kube-system: [`agent_role`].
pub fn agent_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: cluster_metadata(AGENT_RBAC_NAME, AGENT_NAME),
        rules: Some(vec![
            rule("", &["nodes"], &["get", "list", "watch", "patch"]),
            rule("", &["nodes/status"], &["patch"]),
        ]),
        aggregation_rule: None,
    }
}

/// Binds [`agent_cluster_role`] to the agent's ServiceAccount.
pub fn agent_cluster_role_binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: cluster_metadata(AGENT_RBAC_NAME, AGENT_NAME),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: AGENT_RBAC_NAME.to_owned(),
        },
        subjects: Some(vec![agent_subject()]),
    }
}

/// The agent's permissions in kube-system (its `-config-ns`), the only namespace it reads:
/// - `configmaps` get/list/watch: the `cri-resmgr-config.*` ConfigMaps (get, then a watch by name);
/// - `adjustments` get/list/watch (the list the shipped manifest forgot, so queries fail there) and patch (the
///   agent merge-patches `status.nodes.<node>` on the main resource).
pub fn agent_role() -> Role {
    Role {
        metadata: system_metadata(AGENT_RBAC_NAME, AGENT_NAME),
        rules: Some(vec![
            rule("", &["configmaps"], &["get", "list", "watch"]),
            rule(ADJUSTMENT_GROUP, &[ADJUSTMENT_PLURAL], &["get", "list", "watch", "patch"]),
        ]),
    }
}

/// Binds [`agent_role`] to the agent's ServiceAccount.
pub fn agent_role_binding() -> RoleBinding {
    RoleBinding {
        metadata: system_metadata(AGENT_RBAC_NAME, AGENT_NAME),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: AGENT_RBAC_NAME.to_owned(),
        },
        subjects: Some(vec![agent_subject()]),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Adjustment CRD
// ---------------------------------------------------------------------------------------------------------------

fn schema_type(type_: &str) -> JSONSchemaProps {
    JSONSchemaProps { type_: Some(type_.to_owned()), ..Default::default() }
}

fn schema_object(properties: &[(&str, JSONSchemaProps)]) -> JSONSchemaProps {
    JSONSchemaProps {
        properties: Some(properties.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()),
        ..schema_type("object")
    }
}

fn schema_array(items: JSONSchemaProps) -> JSONSchemaProps {
    JSONSchemaProps { items: Some(JSONSchemaPropsOrArray::Schema(Box::new(items))), ..schema_type("array") }
}

fn schema_map(values: JSONSchemaProps) -> JSONSchemaProps {
    JSONSchemaProps {
        additional_properties: Some(JSONSchemaPropsOrBool::Schema(Box::new(values))),
        ..schema_type("object")
    }
}

/// A resource quantity (`500m`, `1`, `2Gi`): a string or a number, as Kubernetes quantities are everywhere
/// (upstream's schema says string only, which rejects an unquoted `cpu: 1` the agent would accept).
fn schema_quantity() -> JSONSchemaProps {
    JSONSchemaProps { x_kubernetes_int_or_string: Some(true), ..Default::default() }
}

/// The openAPIV3Schema of Adjustment v1alpha1 (upstream `pkg/apis/resmgr/v1alpha1/adjustment-schema.yaml`).
fn adjustment_schema() -> JSONSchemaProps {
    let cpu_memory = || schema_object(&[("cpu", schema_quantity()), ("memory", schema_quantity())]);
    let expression = schema_object(&[
        ("key", schema_type("string")),
        // Equals, NotEqual, In, NotIn, Exists, NotExist, AlwaysTrue, Matches, MatchesNot, MatchesAny, MatchesNone
        ("operator", schema_type("string")),
        ("values", schema_array(schema_type("string"))),
    ]);
    let scope = schema_object(&[
        // Node names; a trailing '*' matches a prefix.
        ("nodes", schema_array(schema_type("string"))),
        ("containers", schema_array(expression)),
    ]);
    let spec = JSONSchemaProps {
        required: Some(strings(&["scope"])),
        ..schema_object(&[
            ("scope", schema_array(scope)),
            ("resources", schema_object(&[("requests", cpu_memory()), ("limits", cpu_memory())])),
            ("classes", schema_object(&[("rdt", schema_type("string")), ("blockio", schema_type("string"))])),
            ("toptierLimit", schema_quantity()),
        ])
    };
    let node_status = schema_object(&[("errors", schema_map(schema_type("string")))]);
    let status = schema_object(&[("nodes", schema_map(node_status))]);
    JSONSchemaProps { required: Some(strings(&["spec"])), ..schema_object(&[("spec", spec), ("status", status)]) }
}

/// CRD `adjustments.criresmgr.intel.com` (v1alpha1, namespaced): external adjustments of containers' resources
/// that the agent watches in kube-system. No status subresource: the agent writes `status` with a merge patch on
/// the main resource, which a status subresource would silently drop.
pub fn adjustment_crd() -> CustomResourceDefinition {
    CustomResourceDefinition {
        metadata: cluster_metadata(ADJUSTMENT_CRD_NAME, AGENT_NAME),
        spec: CustomResourceDefinitionSpec {
            group: ADJUSTMENT_GROUP.to_owned(),
            names: CustomResourceDefinitionNames {
                kind: ADJUSTMENT_KIND.to_owned(),
                list_kind: Some(format!("{ADJUSTMENT_KIND}List")),
                plural: ADJUSTMENT_PLURAL.to_owned(),
                singular: Some(ADJUSTMENT_SINGULAR.to_owned()),
                ..Default::default()
            },
            scope: "Namespaced".to_owned(),
            versions: vec![CustomResourceDefinitionVersion {
                name: ADJUSTMENT_VERSION.to_owned(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation { open_api_v3_schema: Some(adjustment_schema()) }),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Agent ConfigMaps
// ---------------------------------------------------------------------------------------------------------------

/// `cri-resmgr-config.default`: the agent's configuration for nodes without a node or group ConfigMap.
pub fn default_config_map_name() -> String {
    format!("{AGENT_CONFIG_MAP_PREFIX}.default")
}

/// `cri-resmgr-config.group.<group>`: for nodes labelled `cri-resource-manager.intel.com/group=<group>`.
pub fn group_config_map_name(group: &str) -> String {
    format!("{AGENT_CONFIG_MAP_PREFIX}.group.{group}")
}

/// `cri-resmgr-config.node.<node>`: for one node; wins over group and default entirely.
pub fn node_config_map_name(node: &str) -> String {
    format!("{AGENT_CONFIG_MAP_PREFIX}.node.{node}")
}

/// One agent ConfigMap: data has one key per top-level section of `config` (`policy`, `logger`, ...), whose value
/// is that section as YAML — the form the agent hands to cri-resmgr (`config.DataFromStringMap`). The sections come
/// parsed with the body; nothing is read again here.
pub fn agent_config_map(name: &str, config: &ConfigBody) -> Result<ConfigMap, ShootResourcesError> {
    let data = config
        .sections()
        .iter()
        .map(|(section, value)| match crate::yaml::to_string(value) {
            Ok(text) => Ok((section.clone(), text)),
            Err(source) => {
                Err(ShootResourcesError::Section { config_map: name.to_owned(), section: section.clone(), source })
            }
        })
        .collect::<Result<BTreeMap<_, _>, _>>()?;
    Ok(ConfigMap { metadata: system_metadata(name, AGENT_NAME), data: Some(data), ..Default::default() })
}

/// The agent's ConfigMaps: `cri-resmgr-config.default` always (from [`MergedConfigs::agent_default_config`], so the
/// agent never pushes an empty configuration), then one per group and one per node, in name order. `force`,
/// `fallback` and `EXTRA_OPTIONS` are not here: they become files on the nodes (OperatingSystemConfig).
pub fn agent_config_maps(merged: &MergedConfigs) -> Result<Vec<ConfigMap>, ShootResourcesError> {
    let mut config_maps = vec![agent_config_map(&default_config_map_name(), merged.agent_default_config())?];
    for (group, config) in &merged.configs.groups {
        config_maps.push(agent_config_map(&group_config_map_name(group), config)?);
    }
    for (node, config) in &merged.configs.nodes {
        config_maps.push(agent_config_map(&node_config_map_name(node), config)?);
    }
    Ok(config_maps)
}

// ---------------------------------------------------------------------------------------------------------------
// Agent DaemonSet
// ---------------------------------------------------------------------------------------------------------------

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(strings(command)) }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(30),
        // The probe gives the agent one second; exec probe timeouts are enforced since 1.20.
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

/// DaemonSet `kube-system/cri-resmgr-agent` on the nodes of `selected_pools` (those running cri-resmgr).
///
/// - env `NODE_NAME` from `spec.nodeName` (required by the agent);
/// - hostPath [`NODE_SOCKET_DIR`] mounted at the same path: the agent serves its socket there and dials
///   cri-resmgr's config socket (`DirectoryOrCreate`, so the pod starts even before cri-resmgr created it);
/// - liveness `cri-resmgr-agent-probe` (agent health), readiness `cri-resmgr-agent-probe -query config-status`
///   (whether cri-resmgr accepted the last configuration: a rejected ConfigMap shows as an unready agent and thus
///   in the ManagedResource's health);
/// - security: runs as root (uid 0) because the socket directory and cri-resmgr's sockets belong to root with
///   modes 0711/0660, so only their owner can create and dial sockets there; everything else is taken away: no
///   capabilities (the owner needs none), no privilege escalation, read-only root file system, RuntimeDefault
///   seccomp, no host namespaces;
/// - tolerates every taint, [`PRIORITY_CLASS_SHOOT_SYSTEM_700`], requests 10m/32Mi, memory limit 128Mi (no CPU
///   limit, as Gardener's components: throttling would only delay configuration pushes).
pub fn agent_daemonset(image: &str, selected_pools: &[String]) -> DaemonSet {
    let container = Container {
        name: AGENT_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(vec![EnvVar {
            name: ENV_NODE_NAME.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { api_version: None, field_path: "spec.nodeName".to_owned() }),
                ..Default::default()
            }),
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: SOCKETS_VOLUME.to_owned(),
            mount_path: NODE_SOCKET_DIR.to_owned(),
            ..Default::default()
        }]),
        liveness_probe: Some(exec_probe(&[AGENT_PROBE_BINARY])),
        readiness_probe: Some(exec_probe(&[AGENT_PROBE_BINARY, "-query", "config-status"])),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "10m"), ("memory", "32Mi")])),
            limits: Some(quantities(&[("memory", "128Mi")])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { add: None, drop: Some(strings(&["ALL"])) }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(AGENT_NAME.to_owned()),
        priority_class_name: Some(PRIORITY_CLASS_SHOOT_SYSTEM_700.to_owned()),
        tolerations: Some(tolerate_everything()),
        affinity: Some(worker_pool_affinity(selected_pools)),
        security_context: Some(pod_security_context()),
        containers: vec![container],
        volumes: Some(vec![Volume {
            name: SOCKETS_VOLUME.to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: NODE_SOCKET_DIR.to_owned(),
                type_: Some("DirectoryOrCreate".to_owned()),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    daemonset(AGENT_NAME, pod)
}

/// A DaemonSet in kube-system whose selector is `app.kubernetes.io/name: <name>`.
fn daemonset(name: &str, pod: PodSpec) -> DaemonSet {
    DaemonSet {
        metadata: system_metadata(name, name),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(LABEL_APP_NAME.to_owned(), name.to_owned())])),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(name)), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Everything of the runtime ManagedResource, in a fixed order: the Adjustment CRD, the agent's ServiceAccount,
/// ClusterRole, ClusterRoleBinding, Role, RoleBinding, its ConfigMaps (default, groups, nodes) and its DaemonSet
/// (on the nodes of `selected_pools`).
pub fn shoot_objects(
    merged: &MergedConfigs,
    images: &ExtensionImages,
    selected_pools: &[String],
) -> Result<Vec<Value>, ShootResourcesError> {
    let mut objects = vec![
        to_value("CustomResourceDefinition", ADJUSTMENT_CRD_NAME, &adjustment_crd())?,
        to_value("ServiceAccount", AGENT_NAME, &agent_service_account())?,
        to_value("ClusterRole", AGENT_RBAC_NAME, &agent_cluster_role())?,
        to_value("ClusterRoleBinding", AGENT_RBAC_NAME, &agent_cluster_role_binding())?,
        to_value("Role", AGENT_RBAC_NAME, &agent_role())?,
        to_value("RoleBinding", AGENT_RBAC_NAME, &agent_role_binding())?,
    ];
    for config_map in agent_config_maps(merged)? {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        objects.push(to_value("ConfigMap", &name, &config_map)?);
    }
    objects.push(to_value("DaemonSet", AGENT_NAME, &agent_daemonset(&images.agent.reference, selected_pools))?);
    Ok(objects)
}

// ---------------------------------------------------------------------------------------------------------------
// Cleaner
// ---------------------------------------------------------------------------------------------------------------

/// The cleaner's init container script. Node paths come from [`crate::constants`] through the environment
/// (`cleaner_env`), so they are spelled once; `HOST_ROOT` is where the host's `/` is mounted.
pub const CLEANER_SCRIPT: &str = r#"# Removes what cri-resmgr leaves on a node outside the paths gardener-node-agent manages, once node-agent has
# taken cri-resmgr off the node. Idempotent: a restarted pod, or a second Delete, finds nothing left to do.
set -eu

# Runs a command in the host's root file system, so that host paths (/var/run -> /run), the host's tools and the
# host's libraries (for the cri-resmgr binary) are the host's own.
host() { chroot "$HOST_ROOT" "$@"; }

# 1. Wait until gardener-node-agent removed cri-resmgr's unit. It does so when the OperatingSystemConfig comes
#    back without the extension's additions: systemctl disable, stop, then delete the unit file. Until then
#    cri-resmgr may still serve kubelet, and its state must not be touched. No timeout: the Delete flow waits for
#    this DaemonSet's health with its own, and reports the nodes that never get here.
while [ -e "$HOST_ROOT$UNIT_FILE" ]; do
  echo "waiting for gardener-node-agent to stop cri-resmgr and remove $UNIT_FILE"
  sleep 5
done

# 2. Reset the cached policy with cri-resmgr's own tool while the binary is still there (node-agent may already
#    have removed it with the other files of the OperatingSystemConfig). Step 3 removes the whole cache anyway, so
#    a failure here is only reported.
if [ -x "$HOST_ROOT$BINARY" ]; then
  host "$BINARY" --reset-policy || echo "$BINARY --reset-policy failed; removing $STATE_DIR anyway"
fi

# 3. Remove the state (the cache with the last agent configuration and the policy's allocations), which a later
#    installation would otherwise start from, and the sockets and pid file of the stopped cri-resmgr.
host rm -rf "$STATE_DIR" "$SOCKET_DIR" "$PID_FILE"

# 4. Remove the directories node-agent created for the extension's files, if they are empty now.
for dir in "$CONFIG_DIR" "$(dirname "$BINARY")" "$(dirname "$(dirname "$BINARY")")"; do
  host rmdir "$dir" 2>/dev/null || true
done

echo "cri-resmgr node state removed"
"#;

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None }
}

/// The environment [`CLEANER_SCRIPT`] reads.
fn cleaner_env() -> Vec<EnvVar> {
    vec![
        env("HOST_ROOT", HOST_ROOT_MOUNT),
        env("UNIT_FILE", &format!("{NODE_SYSTEMD_UNIT_DIR}/{UNIT_NAME}")),
        env("BINARY", NODE_BINARY_PATH),
        env("STATE_DIR", NODE_STATE_DIR),
        env("SOCKET_DIR", NODE_SOCKET_DIR),
        env("PID_FILE", NODE_PID_FILE),
        env("CONFIG_DIR", NODE_CONFIG_DIR),
    ]
}

/// DaemonSet `kube-system/cri-resmgr-cleaner`, deployed by the Delete flow on the nodes of `selected_pools` (pass
/// every pool that may have run cri-resmgr; on a node that never did, the script finds nothing and ends at once).
///
/// - init container (`image`, a shell): [`CLEANER_SCRIPT`], with the host's `/` at `/host`. Mounting `/` rather than
///   a few paths because removing the state and socket directories needs their parents, `/var/run` is a symlink
///   into `/run`, and cri-resmgr's binary may need the host's libraries: the script `chroot`s into it. No host
///   namespaces: waiting for the unit file to disappear needs no `systemctl`, so no `hostPID`/`nsenter`. Root with
///   only `CAP_SYS_CHROOT`: the files it removes belong to root, which as their owner needs no other capability.
/// - container (`pause_image`): keeps the pod Ready, so the DaemonSet (and its ManagedResource) is healthy exactly
///   when every node has been cleaned. Runs as the image's non-root user.
/// - no ServiceAccount token, every taint tolerated, [`PRIORITY_CLASS_SHOOT_SYSTEM_700`], RuntimeDefault seccomp.
pub fn cleaner_daemonset(image: &str, pause_image: &str, selected_pools: &[String]) -> DaemonSet {
    let cleanup = Container {
        name: CLEANER_INIT_CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(strings(&["sh", "-c", CLEANER_SCRIPT])),
        env: Some(cleaner_env()),
        volume_mounts: Some(vec![VolumeMount {
            name: HOST_ROOT_VOLUME.to_owned(),
            mount_path: HOST_ROOT_MOUNT.to_owned(),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "5m"), ("memory", "16Mi")])),
            // cri-resmgr --reset-policy runs inside this container's cgroup.
            limits: Some(quantities(&[("memory", "128Mi")])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { add: Some(strings(&["SYS_CHROOT"])), drop: Some(strings(&["ALL"])) }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pause = Container {
        name: CLEANER_PAUSE_CONTAINER.to_owned(),
        image: Some(pause_image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&[("cpu", "1m"), ("memory", "4Mi")])),
            limits: Some(quantities(&[("memory", "16Mi")])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(PAUSE_USER),
            run_as_group: Some(PAUSE_USER),
            run_as_non_root: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { add: None, drop: Some(strings(&["ALL"])) }),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        priority_class_name: Some(PRIORITY_CLASS_SHOOT_SYSTEM_700.to_owned()),
        tolerations: Some(tolerate_everything()),
        affinity: Some(worker_pool_affinity(selected_pools)),
        security_context: Some(pod_security_context()),
        init_containers: Some(vec![cleanup]),
        containers: vec![pause],
        volumes: Some(vec![Volume {
            name: HOST_ROOT_VOLUME.to_owned(),
            host_path: Some(HostPathVolumeSource { path: "/".to_owned(), type_: Some("Directory".to_owned()) }),
            ..Default::default()
        }]),
        ..Default::default()
    };
    daemonset(CLEANER_NAME, pod)
}

/// Everything of the cleaner ManagedResource: the cleaner DaemonSet with the alpine and pause images.
pub fn cleaner_objects(images: &ExtensionImages, selected_pools: &[String]) -> Result<Vec<Value>, ShootResourcesError> {
    let daemonset = cleaner_daemonset(&images.alpine.reference, &images.pause.reference, selected_pools);
    Ok(vec![to_value("DaemonSet", CLEANER_NAME, &daemonset)?])
}

#[cfg(test)]
mod tests;
