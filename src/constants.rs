//! Names fixed by Gardener, by cri-resmgr, or by this extension's own contract. Every well-known name and node path
//! is spelled exactly once, here.

/// The extension type: `Extension.spec.type`, ControllerRegistration `resources[].type`, and the Shoot's
/// `spec.extensions[].type`.
pub const EXTENSION_TYPE: &str = "cri-resmgr-extension";

/// The extension class (`Extension.spec.class`, ControllerRegistration `resources[].clusterCompatibility`) this
/// extension serves: Extensions of shoot clusters. An Extension without a class is of this class (Gardener's
/// `GetExtensionClassOrDefault`); `seed` and `garden` Extensions belong to other controllers.
pub const EXTENSION_CLASS_SHOOT: &str = "shoot";

/// Name of the extension as Gardener's conventions use it in object names (`gardener-extension-<name>`).
pub const EXTENSION_NAME: &str = "cri-resmgr";

/// The extension's component name (`gardener-extension-<name>`): its binary, Deployment, Service and webhook
/// configuration in the seed, its field manager, and the `managed-by` label of what it creates.
pub const COMPONENT_NAME: &str = "gardener-extension-cri-resmgr";

/// Finalizer the controller puts on every Extension it reconciles.
pub const FINALIZER: &str = "extensions.gardener.cloud/cri-resmgr-extension";

/// Label the gardener-apiserver puts on Shoots that enable our extension type; the admission webhook's objectSelector.
pub const SHOOT_EXTENSION_LABEL: &str = "extensions.extensions.gardener.cloud/cri-resmgr-extension";

/// Label gardenlet puts on each shoot namespace in the seed that needs our extension type; the OSC webhook's
/// namespaceSelector.
pub const NAMESPACE_EXTENSION_LABEL: &str = "extensions.gardener.cloud/cri-resmgr-extension";

/// Gardener's operation annotation and its values.
pub const ANNOTATION_OPERATION: &str = "gardener.cloud/operation";
pub const OPERATION_RECONCILE: &str = "reconcile";
pub const OPERATION_MIGRATE: &str = "migrate";
pub const OPERATION_RESTORE: &str = "restore";
pub const OPERATION_WAIT_FOR_STATE: &str = "wait-for-state";
/// Set by gardenlet together with the operation annotation (RFC3339Nano).
pub const ANNOTATION_TIMESTAMP: &str = "gardener.cloud/timestamp";

/// Label on OperatingSystemConfigs naming the worker pool they belong to.
pub const LABEL_WORKER_POOL: &str = "worker.gardener.cloud/pool";

/// The only container runtime cri-resmgr can sit in front of.
pub const CRI_CONTAINERD: &str = "containerd";

/// Prefix of the ConfigMaps cri-resmgr-agent reads in the shoot's `kube-system`: `<prefix>.default`,
/// `<prefix>.node.<NODE>`, `<prefix>.group.<GROUP>` (the agent's `-configmap-name` default).
pub const AGENT_CONFIG_MAP_PREFIX: &str = "cri-resmgr-config";

/// Node label whose value names the node's cri-resmgr config group (the agent's `-label-name` default).
pub const AGENT_GROUP_LABEL: &str = "cri-resource-manager.intel.com/group";

// ---------------------------------------------------------------------------------------------------------------
// ManagedResources (gardener-resource-manager conventions, `pkg/utils/managedresources`)
// ---------------------------------------------------------------------------------------------------------------

/// The ManagedResource that carries everything the extension puts into the shoot.
pub const SHOOT_MANAGED_RESOURCE_NAME: &str = "extension-runtime-cri-resmgr";

/// Value of the `origin` label on our ManagedResources (Gardener's own use `gardener`; each extension its own).
pub const MANAGED_RESOURCE_ORIGIN: &str = "cri-resmgr";

/// Label on a ManagedResource naming who created it (`LabelKeyOrigin`).
pub const LABEL_ORIGIN: &str = "origin";

/// Label the shoot's resource manager injects into applied objects so the shoot deletion flow leaves them to us.
pub const LABEL_SHOOT_NO_CLEANUP: &str = "shoot.gardener.cloud/no-cleanup";

/// Label on immutable Secrets/ConfigMaps that GRM's garbage collector may delete once nothing references them.
pub const LABEL_GARBAGE_COLLECTABLE_REFERENCE: &str = "resources.gardener.cloud/garbage-collectable-reference";

/// Prefix of the annotations naming what an object references (`references.AnnotationKeyPrefix`); followed by
/// `<kind>-<first 8 hex of sha256(name)>`.
pub const ANNOTATION_REFERENCE_PREFIX: &str = "reference.resources.gardener.cloud/";

/// Prefix of the Secrets a ManagedResource references (`managedresources.SecretPrefix`).
pub const MANAGED_RESOURCE_SECRET_PREFIX: &str = "managedresource-";

/// The data key of a ManagedResource Secret holding the objects as YAML documents.
pub const MANAGED_RESOURCE_SECRET_KEY: &str = "objects.yaml";

// ---------------------------------------------------------------------------------------------------------------
// Health conditions on the Extension (`extensions/pkg/controller/healthcheck`)
// ---------------------------------------------------------------------------------------------------------------

/// The Extension condition that reports the health of what we deploy into the shoot.
pub const CONDITION_SYSTEM_COMPONENTS_HEALTHY: &str = "SystemComponentsHealthy";
/// Condition reason: every health check passed.
pub const REASON_HEALTH_CHECK_SUCCESSFUL: &str = "HealthCheckSuccessful";
/// Condition reason: a health check failed.
pub const REASON_HEALTH_CHECK_UNSUCCESSFUL: &str = "HealthCheckUnsuccessful";
/// Condition reason: a health check reports a rollout in progress.
pub const REASON_HEALTH_CHECK_PROGRESSING: &str = "HealthCheckProgressing";

// ---------------------------------------------------------------------------------------------------------------
// Base configs from the ControllerDeployment (`configs`)
// ---------------------------------------------------------------------------------------------------------------

/// ConfigMap with the operator's base configs, one data key per config type (the same keys as the Shoot's
/// `providerConfig.configs`); the Shoot's configs override them key by key.
pub const BASE_CONFIGS_CONFIG_MAP: &str = "gardener-extension-cri-resmgr-configs";

/// Environment variable naming the namespace of [`BASE_CONFIGS_CONFIG_MAP`] (the extension's own namespace).
pub const ENV_EXTENSION_CONFIGMAP_NAMESPACE: &str = "EXTENSION_CONFIGMAP_NAMESPACE";

// ---------------------------------------------------------------------------------------------------------------
// Objects in the shoot (`shoot_resources`)
// ---------------------------------------------------------------------------------------------------------------

/// Namespace of everything the extension puts into the shoot, and the agent's `-config-ns` default.
pub const SHOOT_SYSTEM_NAMESPACE: &str = "kube-system";

/// Name of the agent's DaemonSet, container and ServiceAccount.
pub const AGENT_NAME: &str = "cri-resmgr-agent";

/// Name of the agent's ClusterRole/ClusterRoleBinding and Role/RoleBinding (Gardener's `<prefix>:<component>` style,
/// so it cannot collide with a user's own `cri-resmgr-agent` RBAC).
pub const AGENT_RBAC_NAME: &str = "extensions.gardener.cloud:cri-resmgr:agent";

/// Name of the cleaner DaemonSet that the Delete flow deploys to remove cri-resmgr's node state.
pub const CLEANER_NAME: &str = "cri-resmgr-cleaner";

/// Recommended Kubernetes label naming the application (also the DaemonSets' selector).
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
/// Recommended Kubernetes label naming who manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on every object the extension puts into the shoot.
pub const MANAGED_BY: &str = COMPONENT_NAME;

/// Gardener's PriorityClass for shoot system components that are not node-critical (created in every shoot by
/// gardenlet). Neither the agent nor the cleaner is node-critical: cri-resmgr keeps serving with its cached or
/// fallback configuration while the agent is away.
pub const PRIORITY_CLASS_SHOOT_SYSTEM_700: &str = "gardener-shoot-system-700";

/// API group, version, kind and names of cri-resmgr's Adjustment CRD (`pkg/apis/resmgr/v1alpha1/types.go`).
pub const ADJUSTMENT_GROUP: &str = "criresmgr.intel.com";
pub const ADJUSTMENT_VERSION: &str = "v1alpha1";
pub const ADJUSTMENT_KIND: &str = "Adjustment";
pub const ADJUSTMENT_PLURAL: &str = "adjustments";
pub const ADJUSTMENT_SINGULAR: &str = "adjustment";
/// `<plural>.<group>`.
pub const ADJUSTMENT_CRD_NAME: &str = "adjustments.criresmgr.intel.com";

/// Environment variable cri-resmgr-agent requires: the name of its node.
pub const ENV_NODE_NAME: &str = "NODE_NAME";

/// The agent image's health probe binary (`cmd/cri-resmgr-agent/Dockerfile`: scratch image with `/bin/*`).
pub const AGENT_PROBE_BINARY: &str = "/bin/cri-resmgr-agent-probe";

// ---------------------------------------------------------------------------------------------------------------
// Node paths used by the agent and the cleaner
// ---------------------------------------------------------------------------------------------------------------

/// The cri-resmgr binary on the node (the release tarball's layout), written by the OSC from the installation image.
pub const NODE_BINARY_PATH: &str = "/opt/intel/bin/cri-resmgr";
/// Directory of cri-resmgr's configuration files on the node (`fallback.cfg`, `force.cfg`).
pub const NODE_CONFIG_DIR: &str = "/etc/cri-resmgr";
/// cri-resmgr's persistent state (`--relay-dir` default): the cache with the last agent config and the policy data.
/// Outside the OSC, so the cleaner removes it; a reinstall would otherwise start from the stale cache.
pub const NODE_STATE_DIR: &str = "/var/lib/cri-resmgr";
/// Directory of cri-resmgr's sockets (relay, agent, config); the agent mounts it from the host at the same path.
pub const NODE_SOCKET_DIR: &str = "/var/run/cri-resmgr";
/// cri-resmgr's pid file when it runs as root (`pkg/pidfile`).
pub const NODE_PID_FILE: &str = "/var/run/cri-resmgr.pid";
/// Where gardener-node-agent writes the units of the OSC.
pub const NODE_SYSTEMD_UNIT_DIR: &str = "/etc/systemd/system";
/// cri-resmgr's systemd unit.
pub const UNIT_NAME: &str = "cri-resource-manager.service";

// ---------------------------------------------------------------------------------------------------------------
// Controller
// ---------------------------------------------------------------------------------------------------------------

/// ManagedResource of the node cleaner the Delete flow deploys into the shoot.
pub const CLEANER_MANAGED_RESOURCE_NAME: &str = "extension-cri-resmgr-cleaner";
/// Lease gardenlet reads to tell whether the extension is alive (docs/extensions/heartbeat.md).
pub const HEARTBEAT_LEASE_NAME: &str = "gardener-extension-heartbeat";
/// Lease the controller replicas elect their leader with.
pub const LEADER_ELECTION_LEASE_NAME: &str = "gardener-extension-cri-resmgr-leader-election";
/// Environment variable naming the namespace of the leader-election and heartbeat Leases (Gardener's charts set it).
pub const ENV_LEADER_ELECTION_NAMESPACE: &str = "LEADER_ELECTION_NAMESPACE";

// ---------------------------------------------------------------------------------------------------------------
// Node side: what the OperatingSystemConfig webhook adds (`node`)
// ---------------------------------------------------------------------------------------------------------------

/// cri-resmgr's environment file (the packaging's sysconf file on Debian-family systems); its unit reads
/// [`NODE_ENV_CONFIG_OPTIONS`], [`NODE_ENV_POLICY_OPTIONS`] and [`NODE_ENV_EXTRA_OPTIONS`] from it.
pub const NODE_ENV_FILE: &str = "/etc/default/cri-resource-manager";
/// Variable of [`NODE_ENV_FILE`] with the configuration source (`--fallback-config …` or `--force-config …`).
pub const NODE_ENV_CONFIG_OPTIONS: &str = "CONFIG_OPTIONS";
/// Variable of [`NODE_ENV_FILE`] with the policy options (the packaging's place for `--disable-policy-switch`).
pub const NODE_ENV_POLICY_OPTIONS: &str = "POLICY_OPTIONS";
/// Variable of [`NODE_ENV_FILE`] with the user's `EXTRA_OPTIONS`.
pub const NODE_ENV_EXTRA_OPTIONS: &str = "EXTRA_OPTIONS";
/// The node's fallback configuration (`configs.fallback`), passed with [`CRI_RESMGR_FLAG_FALLBACK_CONFIG`].
pub const NODE_FALLBACK_CONFIG_PATH: &str = "/etc/cri-resmgr/fallback.cfg";
/// The node's forced configuration (`configs.force`), passed with [`CRI_RESMGR_FLAG_FORCE_CONFIG`].
pub const NODE_FORCE_CONFIG_PATH: &str = "/etc/cri-resmgr/force.cfg";
/// The policy marker: names the policy the pool's nodes should run (see `crate::domain::node`); a change restarts
/// cri-resmgr and resets its cached policy.
pub const NODE_POLICY_MARKER_PATH: &str = "/etc/cri-resmgr/policy";
/// Copy of [`NODE_POLICY_MARKER_PATH`] saved when the cached policy was last reset for it; inside
/// [`NODE_STATE_DIR`], so the cleaner removes it together with the cache it describes.
pub const NODE_POLICY_APPLIED_PATH: &str = "/var/lib/cri-resmgr/policy.applied";
/// cri-resmgr's relay socket (its `--relay-socket` default, passed explicitly with
/// [`CRI_RESMGR_FLAG_RELAY_SOCKET`]), serving kubelet's runtime and image services; the unit's start waits for it.
pub const NODE_RELAY_SOCKET: &str = "/var/run/cri-resmgr/cri-resmgr.sock";
/// How long, in seconds, the unit's start waits at most for [`NODE_RELAY_SOCKET`] to appear (see
/// `crate::domain::node`). Below systemd's default start timeout (`DefaultTimeoutStartSec`, 90 s), so that the
/// wait ends by its own bound, with its own message, and not by systemd killing the start.
pub const NODE_RELAY_SOCKET_WAIT_SECONDS: u32 = 60;
/// kubelet's container runtime endpoint when cri-resmgr runs: [`NODE_RELAY_SOCKET`] as a URL.
pub const RELAY_SOCKET_ENDPOINT: &str = "unix:///var/run/cri-resmgr/cri-resmgr.sock";
/// containerd's CRI socket as Gardener's node setup creates it (`PathSocketEndpoint` without the scheme); cri-resmgr
/// relays to it ([`CRI_RESMGR_FLAG_RUNTIME_SOCKET`]). Under `/run`, not cri-resmgr's default under `/var/run`, so
/// that nothing depends on the `/var/run` → `/run` symlink.
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// kubelet's container runtime endpoint as Gardener configures it for containerd: [`CONTAINERD_SOCKET`] as a URL.
pub const CONTAINERD_SOCKET_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// containerd's systemd unit on Gardener nodes.
pub const CONTAINERD_UNIT_NAME: &str = "containerd.service";
/// kubelet's systemd unit, owned by gardenlet's OSC (`original/components/kubelet`).
pub const KUBELET_UNIT_NAME: &str = "kubelet.service";
/// kubelet's configuration file (a `KubeletConfiguration`, inline in the OSC).
pub const KUBELET_CONFIG_PATH: &str = "/var/lib/kubelet/config/kubelet";
/// kubelet's command-line flag naming the container runtime endpoint, with its `=`.
pub const KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT: &str = "--container-runtime-endpoint=";
/// The `KubeletConfiguration` field naming the container runtime endpoint (kubelet ≥ 1.27).
pub const KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT: &str = "containerRuntimeEndpoint";
/// The extension's drop-in on [`KUBELET_UNIT_NAME`]: kubelet starts after (and wants) [`UNIT_NAME`].
pub const KUBELET_DROP_IN_NAME: &str = "10-cri-resmgr.conf";
/// The (POSIX) shell the unit's policy-switch and socket-wait steps run in.
pub const NODE_SHELL: &str = "/bin/sh";
/// cri-resmgr flag: the socket of the CRI runtime service it relays to (its image service follows by default).
pub const CRI_RESMGR_FLAG_RUNTIME_SOCKET: &str = "--runtime-socket";
/// cri-resmgr flag: the socket it serves the CRI on, kubelet's runtime endpoint.
pub const CRI_RESMGR_FLAG_RELAY_SOCKET: &str = "--relay-socket";
/// cri-resmgr flag: the configuration to use until the agent pushes one.
pub const CRI_RESMGR_FLAG_FALLBACK_CONFIG: &str = "--fallback-config";
/// cri-resmgr flag: the configuration to use always, ignoring the agent.
pub const CRI_RESMGR_FLAG_FORCE_CONFIG: &str = "--force-config";
/// cri-resmgr flag: drop the cached active policy and its data, then exit (refused while cri-resmgr serves).
pub const CRI_RESMGR_FLAG_RESET_POLICY: &str = "--reset-policy";
/// The policy cri-resmgr runs when a configuration names none (its built-in default since v0.8).
pub const CRI_RESMGR_DEFAULT_POLICY: &str = "none";

/// Marks an Extension whose nodes the cleaner has cleaned, so that a resumed deletion does not clean again.
pub const ANNOTATION_NODES_CLEANED: &str = "cri-resmgr.extensions.gardener.cloud/nodes-cleaned";
/// Gardener's force-deletion marker on the Shoot (`v1beta1constants.AnnotationConfirmationForceDeletion`).
pub const ANNOTATION_FORCE_DELETION: &str = "confirmation.gardener.cloud/force-deletion";
/// Namespace label gardenlet puts on shoot namespaces, and its value there.
pub const LABEL_ROLE: &str = "gardener.cloud/role";
pub const ROLE_SHOOT: &str = "shoot";

/// A worker pool's machine architecture when `machine.architecture` is not set (Gardener's default).
pub const DEFAULT_MACHINE_ARCHITECTURE: &str = "amd64";
