//! Stand-in for what kubelet and the DaemonSet controller report about a DaemonSet: there are no kubelets and no
//! kube-controller-manager on the local control planes, so nothing would ever write a DaemonSet's status and every
//! DaemonSet would stay unhealthy forever.
//!
//! The nodes are the shoot's Node objects (written by whoever plays the machines); a DaemonSet's pods are "scheduled"
//! onto the nodes its pod template selects (`nodeSelector` and required node affinity, the rules the scheduler
//! applies to DaemonSet pods; taints are ignored: our DaemonSets tolerate every taint) and are ready at once, unless
//! a [`PodRunner`] says a node's pod has not finished its init containers yet.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, PodSpec};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

/// Runs what a node's kubelet would run for a pod before it is ready (e.g. the node cleaner's init container).
pub trait PodRunner: Send + Sync {
    /// Whether the pod of `daemonset` on `node` is ready; called on every report until it says so.
    fn ready(&self, node: &str, daemonset: &DaemonSet) -> bool;
}

/// Reports DaemonSet status in one shoot.
#[derive(Clone)]
pub struct Kubelet {
    shoot: kube::Client,
    runner: Option<Arc<dyn PodRunner>>,
}

impl Kubelet {
    /// Every scheduled pod is ready at once.
    pub fn new(shoot: kube::Client) -> Self {
        Kubelet { shoot, runner: None }
    }

    /// Pods are ready when `runner` says so.
    pub fn with_runner(shoot: kube::Client, runner: Arc<dyn PodRunner>) -> Self {
        Kubelet { shoot, runner: Some(runner) }
    }

    /// Writes the status the DaemonSet controller would write for `daemonset` now, and returns the DaemonSet with it.
    pub async fn report(&self, daemonset: &DaemonSet) -> Result<DaemonSet, kube::Error> {
        let namespace = daemonset.metadata.namespace.clone().unwrap_or_default();
        let name = daemonset.metadata.name.clone().unwrap_or_default();
        let nodes = Api::<Node>::all(self.shoot.clone()).list(&ListParams::default()).await?.items;
        let template = daemonset.spec.as_ref().and_then(|spec| spec.template.spec.as_ref());
        let scheduled: Vec<&str> = nodes
            .iter()
            .filter(|node| template.is_some_and(|pod| schedules_onto(pod, node.metadata.labels.as_ref())))
            .filter_map(|node| node.metadata.name.as_deref())
            .collect();
        let ready = scheduled
            .iter()
            .filter(|node| self.runner.as_ref().is_none_or(|runner| runner.ready(node, daemonset)))
            .count();
        let desired = scheduled.len();
        let status = json!({"status": {
            "currentNumberScheduled": desired,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": desired - ready,
            "updatedNumberScheduled": desired,
            "observedGeneration": daemonset.metadata.generation,
        }});
        Api::<DaemonSet>::namespaced(self.shoot.clone(), &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
    }
}

/// Whether the scheduler would place a DaemonSet pod with `pod`'s spec onto a node with `labels`: every
/// `nodeSelector` entry matches, and one of the required node affinity terms (if any) matches in all its
/// expressions.
pub fn schedules_onto(pod: &PodSpec, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let selector_matches =
        pod.node_selector.iter().flatten().all(|(key, value)| labels.get(key).is_some_and(|have| have == value));
    let terms = pod
        .affinity
        .as_ref()
        .and_then(|affinity| affinity.node_affinity.as_ref())
        .and_then(|node| node.required_during_scheduling_ignored_during_execution.as_ref())
        .map(|selector| selector.node_selector_terms.as_slice())
        .unwrap_or_default();
    let affinity_matches = terms.is_empty()
        || terms.iter().any(|term| {
            term.match_expressions.iter().flatten().all(|requirement| requirement_matches(requirement, labels))
        });
    selector_matches && affinity_matches
}

fn requirement_matches(requirement: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&requirement.key);
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt and Lt compare integers; none of the DaemonSets here uses them, so such a pod is never placed.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gardener_extension_cri_resmgr::constants::LABEL_WORKER_POOL;
    use gardener_extension_cri_resmgr::domain::shoot_resources::agent_daemonset;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn pod_of(daemonset: &DaemonSet) -> PodSpec {
        daemonset.spec.clone().and_then(|spec| spec.template.spec).expect("pod spec")
    }

    #[test]
    fn the_agent_runs_only_on_nodes_of_its_pools() {
        let pod = pod_of(&agent_daemonset("agent:v1", &["b".to_string(), "a".to_string()]));
        assert!(schedules_onto(&pod, Some(&labels(&[(LABEL_WORKER_POOL, "a")]))));
        assert!(schedules_onto(&pod, Some(&labels(&[(LABEL_WORKER_POOL, "b")]))));
        assert!(!schedules_onto(&pod, Some(&labels(&[(LABEL_WORKER_POOL, "c")]))));
        assert!(!schedules_onto(&pod, None), "a node without pool label");
    }

    #[test]
    fn a_daemonset_for_no_pools_runs_nowhere() {
        let pod = pod_of(&agent_daemonset("agent:v1", &[]));
        assert!(!schedules_onto(&pod, Some(&labels(&[(LABEL_WORKER_POOL, "a")]))));
        assert!(!schedules_onto(&pod, None));
    }

    #[test]
    fn node_selector_and_operators() {
        let mut pod = PodSpec { node_selector: Some(labels(&[("zone", "z1")])), ..PodSpec::default() };
        assert!(schedules_onto(&pod, Some(&labels(&[("zone", "z1")]))));
        assert!(!schedules_onto(&pod, Some(&labels(&[("zone", "z2")]))));
        pod.node_selector = None;
        let requirement = |operator: &str| NodeSelectorRequirement {
            key: "k".to_string(),
            operator: operator.to_string(),
            values: Some(vec!["v".to_string()]),
        };
        let with = labels(&[("k", "v")]);
        assert!(requirement_matches(&requirement("In"), &with));
        assert!(!requirement_matches(&requirement("NotIn"), &with));
        assert!(requirement_matches(&requirement("NotIn"), &labels(&[])));
        assert!(requirement_matches(&requirement("Exists"), &with));
        assert!(!requirement_matches(&requirement("DoesNotExist"), &with));
        assert!(!requirement_matches(&requirement("Gt"), &with));
        assert!(schedules_onto(&pod, None), "no selector, no affinity: every node");
    }
}
