//! Names fixed by Gardener, by cri-resmgr, or by this extension's own contract. Every well-known name and node path
//! is spelled exactly once, here.

/// The extension type: `Extension.spec.type`, ControllerRegistration `resources[].type`, and the Shoot's
/// `spec.extensions[].type`.
pub const EXTENSION_TYPE: &str = "cri-resmgr-extension";

/// Name of the extension as Gardener's conventions use it in object names (`gardener-extension-<name>`).
pub const EXTENSION_NAME: &str = "cri-resmgr";

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
