//! Thin, honest stand-ins for the Gardener components that cannot run on the local control planes (there are no
//! kubelets, no containers and no gardenlet here), each named after what it plays. They act through the same APIs
//! as the real components, so the extension cannot tell the difference where it matters: the objects it writes and
//! the status it reads.
//!
//! - [`resource_manager`]: gardener-resource-manager's ManagedResource controller and Secret garbage collector.
//! - [`gardenlet`]: gardenlet's shoot reconcile and deletion as extensions see them, and the shoot's machines.
//! - [`node_agent`]: gardener-node-agent on machines that are directory trees, and the node cleaner's pod there.
//! - [`kubelet`]: the DaemonSet status the shoot's kubelets and DaemonSet controller would report.

pub mod gardenlet;
pub mod kubelet;
pub mod node_agent;
pub mod resource_manager;
