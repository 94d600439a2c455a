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
    for (group, config) in &merged.groups {
        config_maps.push(agent_config_map(&group_config_map_name(group), config)?);
    }
    for (node, config) in &merged.nodes {
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
mod tests {
    use super::*;
    use crate::apis::config::ProviderConfig;
    use crate::domain::configs::{BUILTIN_CONFIG, merge};
    use crate::domain::images::ImageVector;
    use crate::domain::validation::{FieldPath, validate_config_body};
    use serde_json::json;

    /// A body as validation gives it.
    fn body(text: &str) -> ConfigBody {
        validate_config_body(text, &FieldPath::new("test")).unwrap()
    }

    fn merged(entries: &[(&str, &str)]) -> MergedConfigs {
        let base = entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        merge(&base, None::<&ProviderConfig>).unwrap()
    }

    fn pools(names: &[&str]) -> Vec<String> {
        strings(names)
    }

    fn images() -> ExtensionImages {
        ImageVector::embedded().unwrap().extension_images("1.20.0").unwrap()
    }

    fn managed_labels(app: &str) -> Value {
        json!({"app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": "gardener-extension-cri-resmgr"})
    }

    /// Every key of a JSON value, recursively, with its path.
    fn keys(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    out.push((path.to_owned(), k.clone()));
                    keys(v, &format!("{path}.{k}"), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| keys(v, &format!("{path}[]"), out)),
            _ => {}
        }
    }

    /// Fields Kubernetes 1.20 does not know (pod, container, probe, volume, DaemonSet, affinity level). A 1.20
    /// apiserver would drop or reject them.
    const NEWER_THAN_1_20: &[&str] = &[
        "os",
        "hostUsers",
        "schedulingGates",
        "resourceClaims",
        "resizePolicy",
        "restartPolicy",
        "appArmorProfile",
        "grpc",
        "terminationGracePeriodSeconds",
        "maxSurge",
        "matchLabelKeys",
        "mismatchLabelKeys",
        "claims",
        "recursiveReadOnly",
        "supplementalGroupsPolicy",
        "seLinuxChangePolicy",
        "sleep",
        "stopSignal",
        "minDomains",
        "nodeAffinityPolicy",
        "nodeTaintsPolicy",
    ];

    fn assert_nothing_newer_than_1_20(object: &Value) {
        let mut all = Vec::new();
        keys(object, "", &mut all);
        for (path, key) in &all {
            assert!(!NEWER_THAN_1_20.contains(&key.as_str()), "{path}.{key} is newer than Kubernetes 1.20");
        }
        assert!(object.pointer("/spec/template/spec/resources").is_none(), "pod-level resources are 1.32+");
    }

    #[test]
    fn agent_rbac_is_least_privilege() {
        let role = serde_json::to_value(agent_cluster_role()).unwrap();
        assert_eq!(
            role,
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "extensions.gardener.cloud:cri-resmgr:agent", "labels": managed_labels(AGENT_NAME)},
                "rules": [
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
                    {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
                ],
            })
        );
        let role = serde_json::to_value(agent_role()).unwrap();
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["criresmgr.intel.com"], "resources": ["adjustments"], "verbs": ["get", "list", "watch", "patch"]},
            ])
        );
        assert_eq!(role["metadata"]["namespace"], "kube-system");
        let subject = json!([{"kind": "ServiceAccount", "name": "cri-resmgr-agent", "namespace": "kube-system"}]);
        let binding = serde_json::to_value(agent_cluster_role_binding()).unwrap();
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_RBAC_NAME})
        );
        assert_eq!(binding["subjects"], subject);
        let binding = serde_json::to_value(agent_role_binding()).unwrap();
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AGENT_RBAC_NAME})
        );
        assert_eq!(binding["subjects"], subject);
        assert_eq!(binding["metadata"]["namespace"], "kube-system");
        let sa = serde_json::to_value(agent_service_account()).unwrap();
        assert_eq!(
            sa["metadata"],
            json!({"name": "cri-resmgr-agent", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)})
        );
    }

    #[test]
    fn config_maps_split_the_configuration_per_section() {
        let config = "policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: 750m\n  topology-aware:\n    PinCPU: true\nlogger:\n  Debug: resource-manager,cache\ndump:\n  Config: off:.*,full:((Create)|(Remove)).*\n";
        let config_map =
            serde_json::to_value(agent_config_map("cri-resmgr-config.default", &body(config)).unwrap()).unwrap();
        assert_eq!(
            config_map,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "cri-resmgr-config.default", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)},
                "data": {
                    "policy": "Active: topology-aware\nReservedResources:\n  CPU: 750m\ntopology-aware:\n  PinCPU: true\n",
                    "logger": "Debug: resource-manager,cache\n",
                    "dump": "Config: off:.*,full:((Create)|(Remove)).*\n",
                },
            })
        );
    }

    #[test]
    fn section_values_keep_their_types() {
        // Strings that YAML 1.1 (cri-resmgr's Go decoder) would read as something else stay quoted.
        let config = "policy:\n  Active: \"none\"\nlogger:\n  Debug: \"on\"\n  LogSource: true\ninstrumentation:\n  Sampling: 0.5\n";
        let data = agent_config_map("x", &body(config)).unwrap().data.unwrap();
        assert_eq!(data["logger"], "Debug: \"on\"\nLogSource: true\n");
        assert_eq!(data["instrumentation"], "Sampling: 0.5\n");
        for (section, text) in &data {
            let back: Value = crate::yaml::from_str(text).unwrap();
            assert_eq!(&back, &crate::domain::validation::parse_config_body(config).unwrap()[section]);
        }
    }

    #[test]
    fn the_default_config_map_always_exists() {
        let names = |m: &MergedConfigs| -> Vec<String> {
            agent_config_maps(m).unwrap().into_iter().map(|c| c.metadata.name.unwrap()).collect()
        };
        let data = |m: &MergedConfigs| agent_config_maps(m).unwrap()[0].data.clone().unwrap();

        let builtin = merged(&[("force", "policy:\n  Active: static\n"), ("EXTRA_OPTIONS", "--disable-ui")]);
        assert_eq!(names(&builtin), ["cri-resmgr-config.default"], "force/EXTRA_OPTIONS are not agent ConfigMaps");
        assert_eq!(data(&builtin)["policy"], "Active: none\n");
        assert_eq!(BUILTIN_CONFIG, "policy:\n  Active: none\n");

        let fallback = merged(&[("fallback", "policy:\n  Active: balloons\n")]);
        assert_eq!(names(&fallback), ["cri-resmgr-config.default"], "fallback is a node file, and the default");
        assert_eq!(data(&fallback)["policy"], "Active: balloons\n");

        let all = merged(&[
            ("fallback", "policy:\n  Active: balloons\n"),
            ("default", "policy:\n  Active: topology-aware\n"),
            ("group.fast", "policy:\n  Active: static\n"),
            ("group.a", "policy:\n  Active: podpools\n"),
            ("node.worker-1", "policy:\n  Active: static-pools\n"),
        ]);
        assert_eq!(
            names(&all),
            [
                "cri-resmgr-config.default",
                "cri-resmgr-config.group.a",
                "cri-resmgr-config.group.fast",
                "cri-resmgr-config.node.worker-1"
            ]
        );
        assert_eq!(data(&all)["policy"], "Active: topology-aware\n");
        assert_eq!(agent_config_maps(&all).unwrap()[3].data.as_ref().unwrap()["policy"], "Active: static-pools\n");
    }

    #[test]
    fn an_invalid_body_never_becomes_a_config_map() {
        // A ConfigMap is built from a parsed body only, and only validation parses: an invalid text is stopped there,
        // with its field path, and never reaches the shoot.
        let path = FieldPath::new("configs").key("node.a");
        let errors = validate_config_body("", &path).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().starts_with(r#"configs["node.a"]: Required value"#), "{}", errors[0]);
    }

    #[test]
    fn agent_daemonset_runs_the_agent_on_the_selected_pools() {
        let image = images().agent.reference;
        let ds = serde_json::to_value(agent_daemonset(&image, &pools(&["b-pool", "a-pool", "b-pool"]))).unwrap();
        assert_eq!(ds["apiVersion"], "apps/v1");
        assert_eq!(
            ds["metadata"],
            json!({"name": "cri-resmgr-agent", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)})
        );
        assert_eq!(ds["spec"]["selector"], json!({"matchLabels": {"app.kubernetes.io/name": "cri-resmgr-agent"}}));
        assert_eq!(ds["spec"]["template"]["metadata"]["labels"], managed_labels(AGENT_NAME));
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "cri-resmgr-agent");
        assert_eq!(pod["priorityClassName"], "gardener-shoot-system-700");
        assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(
            pod["affinity"],
            json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "worker.gardener.cloud/pool", "operator": "In", "values": ["a-pool", "b-pool"]}]}
            ]}}})
        );
        assert_eq!(pod["securityContext"], json!({"seccompProfile": {"type": "RuntimeDefault"}}));
        assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none() && pod.get("hostIPC").is_none());
        assert_eq!(
            pod["volumes"],
            json!([{"name": "cri-resmgr-sockets", "hostPath": {"path": "/var/run/cri-resmgr", "type": "DirectoryOrCreate"}}])
        );
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(c["image"], "docker.io/intel/cri-resmgr-agent:v0.9.2");
        assert_eq!(c["env"], json!([{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]));
        assert_eq!(c["volumeMounts"], json!([{"name": "cri-resmgr-sockets", "mountPath": "/var/run/cri-resmgr"}]));
        assert_eq!(c["livenessProbe"]["exec"]["command"], json!(["/bin/cri-resmgr-agent-probe"]));
        assert_eq!(
            c["readinessProbe"]["exec"]["command"],
            json!(["/bin/cri-resmgr-agent-probe", "-query", "config-status"])
        );
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}})
        );
        assert_eq!(
            c["securityContext"],
            json!({
                "runAsUser": 0, "runAsNonRoot": false, "privileged": false, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true,
            })
        );
        assert_nothing_newer_than_1_20(&ds);
    }

    #[test]
    fn no_selected_pool_means_no_node() {
        let ds = serde_json::to_value(agent_daemonset("i", &[])).unwrap();
        assert_eq!(
            ds.pointer("/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"),
            Some(&json!([{"matchExpressions": [
                {"key": "worker.gardener.cloud/pool", "operator": "Exists"},
                {"key": "worker.gardener.cloud/pool", "operator": "DoesNotExist"},
            ]}]))
        );
    }

    /// Every schema node is structural: it has a type (or is int-or-string), and no node has both `properties`
    /// and `additionalProperties`.
    fn assert_structural(schema: &JSONSchemaProps, path: &str) {
        assert!(schema.type_.is_some() || schema.x_kubernetes_int_or_string == Some(true), "{path} has no type");
        assert!(!(schema.properties.is_some() && schema.additional_properties.is_some()), "{path}");
        for (name, child) in schema.properties.iter().flatten() {
            assert_structural(child, &format!("{path}.{name}"));
        }
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
            assert_structural(items, &format!("{path}[]"));
        }
        if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
            assert_structural(values, &format!("{path}{{}}"));
        }
    }

    #[test]
    fn adjustment_crd_matches_upstream_and_kubernetes_1_20() {
        let crd = adjustment_crd();
        assert_eq!(crd.metadata.name.as_deref(), Some(format!("{ADJUSTMENT_PLURAL}.{ADJUSTMENT_GROUP}").as_str()));
        assert_eq!(crd.spec.group, "criresmgr.intel.com");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "Adjustment");
        assert_eq!(crd.spec.versions.len(), 1);
        let version = &crd.spec.versions[0];
        assert_eq!((version.name.as_str(), version.served, version.storage), ("v1alpha1", true, true));
        assert!(version.subresources.is_none(), "the agent patches status on the main resource");
        let schema = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
        assert_structural(schema, "");
        let value = serde_json::to_value(schema).unwrap();
        assert_eq!(value["required"], json!(["spec"]));
        let spec = &value["properties"]["spec"];
        assert_eq!(spec["required"], json!(["scope"]));
        let scope = &spec["properties"]["scope"]["items"]["properties"];
        assert_eq!(scope["nodes"], json!({"type": "array", "items": {"type": "string"}}));
        assert_eq!(
            scope["containers"]["items"]["properties"],
            json!({"key": {"type": "string"}, "operator": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}}})
        );
        let quantity = json!({"x-kubernetes-int-or-string": true});
        assert_eq!(
            spec["properties"]["resources"]["properties"]["limits"]["properties"],
            json!({"cpu": quantity, "memory": quantity})
        );
        assert_eq!(
            spec["properties"]["resources"]["properties"]["requests"]["properties"],
            json!({"cpu": quantity, "memory": quantity})
        );
        assert_eq!(
            spec["properties"]["classes"]["properties"],
            json!({"rdt": {"type": "string"}, "blockio": {"type": "string"}})
        );
        assert_eq!(spec["properties"]["toptierLimit"], quantity);
        assert_eq!(
            value["properties"]["status"],
            json!({"type": "object", "properties": {"nodes": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"errors": {"type": "object", "additionalProperties": {"type": "string"}}}
            }}}})
        );
        let crd = serde_json::to_value(&crd).unwrap();
        assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
        let mut all = Vec::new();
        keys(&crd, "", &mut all);
        for (path, key) in all {
            assert!(
                !["x-kubernetes-validations", "selectableFields", "default"].contains(&key.as_str()),
                "{path}.{key}"
            );
        }
    }

    #[test]
    fn shoot_objects_are_complete_and_ordered() {
        let config = merged(&[("node.n1", "policy:\n  Active: static\n"), ("group.g", "policy:\n  Active: none\n")]);
        let objects = shoot_objects(&config, &images(), &pools(&["p"])).unwrap();
        let ids: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            ids,
            [
                "CustomResourceDefinition/adjustments.criresmgr.intel.com",
                "ServiceAccount/cri-resmgr-agent",
                "ClusterRole/extensions.gardener.cloud:cri-resmgr:agent",
                "ClusterRoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
                "Role/extensions.gardener.cloud:cri-resmgr:agent",
                "RoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
                "ConfigMap/cri-resmgr-config.default",
                "ConfigMap/cri-resmgr-config.group.g",
                "ConfigMap/cri-resmgr-config.node.n1",
                "DaemonSet/cri-resmgr-agent",
            ]
        );
        for object in &objects {
            assert_eq!(object["metadata"]["labels"], managed_labels(AGENT_NAME), "{object}");
        }
        assert_eq!(objects[9]["spec"]["template"]["spec"]["containers"][0]["image"], images().agent.reference);
        assert_eq!(objects, shoot_objects(&config, &images(), &pools(&["p"])).unwrap(), "deterministic");
    }

    #[test]
    fn cleaner_daemonset_cleans_then_stays_ready() {
        let images = images();
        let objects = cleaner_objects(&images, &pools(&["p2", "p1"])).unwrap();
        assert_eq!(objects.len(), 1);
        let ds = &objects[0];
        assert_eq!(ds["kind"], "DaemonSet");
        assert_eq!(
            ds["metadata"],
            json!({"name": "cri-resmgr-cleaner", "namespace": "kube-system", "labels": managed_labels(CLEANER_NAME)})
        );
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(pod["priorityClassName"], "gardener-shoot-system-700");
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
                [0]["values"],
            json!(["p1", "p2"])
        );
        assert!(pod.get("hostPID").is_none(), "waiting for the unit file needs no host PID namespace");
        assert_eq!(pod["volumes"], json!([{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}]));

        let init = &pod["initContainers"][0];
        assert_eq!(init["image"], "docker.io/library/alpine:3.20");
        assert_eq!(init["command"], json!(["sh", "-c", CLEANER_SCRIPT]));
        assert_eq!(init["volumeMounts"], json!([{"name": "host-root", "mountPath": "/host"}]));
        let env: BTreeMap<String, String> = init["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            env,
            BTreeMap::from(
                [
                    ("HOST_ROOT", "/host"),
                    ("UNIT_FILE", "/etc/systemd/system/cri-resource-manager.service"),
                    ("BINARY", "/opt/intel/bin/cri-resmgr"),
                    ("STATE_DIR", "/var/lib/cri-resmgr"),
                    ("SOCKET_DIR", "/var/run/cri-resmgr"),
                    ("PID_FILE", "/var/run/cri-resmgr.pid"),
                    ("CONFIG_DIR", "/etc/cri-resmgr"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
            )
        );
        assert_eq!(init["securityContext"]["capabilities"], json!({"add": ["SYS_CHROOT"], "drop": ["ALL"]}));
        assert_eq!(init["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(init["securityContext"]["privileged"], false);

        let pause = &pod["containers"][0];
        assert_eq!(pause["image"], "registry.k8s.io/pause:3.10");
        assert_eq!(pause["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
        assert_nothing_newer_than_1_20(ds);
    }

    #[test]
    fn the_cleaner_script_uses_every_variable_it_is_given_and_no_literal_node_path() {
        assert!(CLEANER_SCRIPT.contains("set -eu"));
        for variable in cleaner_env() {
            assert!(CLEANER_SCRIPT.contains(&format!("${}", variable.name)), "{} unused", variable.name);
        }
        for path in [NODE_BINARY_PATH, NODE_STATE_DIR, NODE_SOCKET_DIR, NODE_CONFIG_DIR, UNIT_NAME] {
            assert!(!CLEANER_SCRIPT.contains(path), "{path} is spelled in the script");
        }
    }

    /// A fake host root with cri-resmgr's state, and the cleaner script made to run against it: without chroot,
    /// `host CMD ARGS` runs CMD with every absolute argument moved under the fake root.
    fn fake_host() -> (tempfile::TempDir, std::process::Command) {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().to_str().unwrap().to_owned();
        for dir in [NODE_STATE_DIR, NODE_SOCKET_DIR, NODE_CONFIG_DIR, "/opt/intel/bin", NODE_SYSTEMD_UNIT_DIR] {
            std::fs::create_dir_all(format!("{r}{dir}")).unwrap();
        }
        std::fs::write(format!("{r}{NODE_STATE_DIR}/cache"), "{}").unwrap();
        std::fs::write(format!("{r}{NODE_SOCKET_DIR}/cri-resmgr.sock"), "").unwrap();
        std::fs::write(format!("{r}{NODE_PID_FILE}"), "1").unwrap();
        std::fs::write(format!("{r}{NODE_CONFIG_DIR}/unrelated.cfg"), "keep").unwrap();
        let script = CLEANER_SCRIPT.replace(
            "host() { chroot \"$HOST_ROOT\" \"$@\"; }",
            "host() { cmd=$1; shift; for a; do case $a in /*) set -- \"$@\" \"$HOST_ROOT$a\";; *) set -- \"$@\" \"$a\";; esac; \
             shift; done; \"$cmd\" \"$@\"; }",
        );
        assert_ne!(script, CLEANER_SCRIPT, "the host() line changed; update this test");
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(&script).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        for variable in cleaner_env() {
            let value = if variable.name == "HOST_ROOT" { r.clone() } else { variable.value.unwrap() };
            command.env(variable.name, value);
        }
        (root, command)
    }

    fn exists(root: &tempfile::TempDir, path: &str) -> bool {
        root.path().join(path.trim_start_matches('/')).exists()
    }

    #[test]
    fn the_cleaner_script_removes_the_state_and_is_idempotent() {
        let (root, mut command) = fake_host();
        for _ in 0..2 {
            let output = command.output().unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert!(String::from_utf8_lossy(&output.stdout).contains("cri-resmgr node state removed"));
        }
        assert!(!exists(&root, NODE_STATE_DIR));
        assert!(!exists(&root, NODE_SOCKET_DIR));
        assert!(!exists(&root, NODE_PID_FILE));
        assert!(!exists(&root, "/opt/intel"), "empty directories are removed");
        assert!(exists(&root, &format!("{NODE_CONFIG_DIR}/unrelated.cfg")), "non-empty directories are kept");
    }

    #[test]
    fn the_cleaner_script_leaves_the_state_alone_while_the_unit_exists() {
        let (root, mut command) = fake_host();
        let unit = root.path().join(NODE_SYSTEMD_UNIT_DIR.trim_start_matches('/')).join(UNIT_NAME);
        std::fs::write(&unit, "[Service]\n").unwrap();
        let mut child = command.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(child.try_wait().unwrap().is_none(), "still waiting");
        assert!(exists(&root, &format!("{NODE_STATE_DIR}/cache")), "state untouched while cri-resmgr may run");
        std::fs::remove_file(&unit).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("waiting for gardener-node-agent"));
        assert!(!exists(&root, NODE_STATE_DIR));
    }
}
