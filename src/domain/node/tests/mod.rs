//! Tests of the node side, one file per concern like the code: `mutation` (the whole of [`mutate`] and its restore),
//! `files`, `kubelet`, `unit`. The fixtures and helpers they share are here.

use std::collections::BTreeMap;

use super::{FILE_PATHS, MergedConfigs, PoolPlan, inline_text, mutate};
use crate::apis::extensions::{FileContentInline, OperatingSystemConfig, Unit};
use crate::constants::{AGENT_GROUP_LABEL, KUBELET_CONFIG_PATH, KUBELET_UNIT_NAME};

mod files;
mod kubelet;
mod mutation;
mod properties;
mod unit;

const RECONCILE_OSC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/test/fixtures/osc/reconcile.yaml"));
const IMAGE: &str = "registry.example.com/cri-resmgr-installation:v0.9.2";

const TOPOLOGY: &str = "policy:\n  Active: topology-aware\n";
const BALLOONS: &str = "policy:\n  Active: balloons\n";
const STATIC: &str = "policy:\n  Active: static\n";
const PODPOOLS: &str = "policy:\n  Active: podpools\n";
const NO_POLICY: &str = "logger:\n  Debug: resource-manager\n";

/// The kubelet unit after a provider webhook re-serialised it with go-systemd (`unit.Serialize`: options
/// regrouped by section, blank line between sections; `SerializeCommandLine` layout).
const GARDENER_SERIALIZED_KUBELET: &str = "[Unit]
Description=kubelet daemon
Documentation=https://kubernetes.io/docs/admin/kubelet
After=containerd.service

[Install]
WantedBy=multi-user.target

[Service]
Restart=always
RestartSec=5
EnvironmentFile=/etc/environment
ExecStart=/opt/bin/kubelet --bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap \\
    --config=/var/lib/kubelet/config/kubelet \\
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \\
    --cloud-provider=external \\
    --v=2 \\
    $KUBELET_EXTRA_ARGS
";

fn reconcile_osc() -> OperatingSystemConfig {
    crate::yaml::from_str(RECONCILE_OSC).expect("fixture")
}

fn merged(entries: &[(&str, &str)]) -> MergedConfigs {
    let base = entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    crate::domain::configs::merge(&base, None).expect("valid configs")
}

fn plan<'a>(merged: &'a MergedConfigs, group: Option<&str>) -> PoolPlan<'a> {
    let mut pool_labels = BTreeMap::from([("worker.gardener.cloud/pool".to_owned(), "worker".to_owned())]);
    if let Some(group) = group {
        pool_labels.insert(AGENT_GROUP_LABEL.to_owned(), group.to_owned());
    }
    PoolPlan { merged, installation_image: IMAGE.to_owned(), pool_labels }
}

fn json(osc: &OperatingSystemConfig) -> String {
    serde_json::to_string(osc).expect("encode")
}

fn text(osc: &OperatingSystemConfig, path: &str) -> Option<String> {
    osc.spec.file(path).map(|file| inline_text(file).expect("inline text"))
}

fn kubelet(osc: &OperatingSystemConfig) -> &Unit {
    osc.spec.unit(KUBELET_UNIT_NAME).expect("kubelet unit")
}

fn kubelet_content(osc: &OperatingSystemConfig) -> &str {
    kubelet(osc).content.as_deref().expect("kubelet content")
}

fn with_kubelet_content(content: &str) -> OperatingSystemConfig {
    let mut osc = reconcile_osc();
    osc.spec.unit_mut(KUBELET_UNIT_NAME).expect("kubelet").content = Some(content.to_owned());
    osc
}

fn with_kubelet_config(encoding: &str, data: &str) -> OperatingSystemConfig {
    let mut osc = reconcile_osc();
    osc.spec.file_mut(KUBELET_CONFIG_PATH).expect("config").content.inline =
        Some(FileContentInline { encoding: encoding.to_owned(), data: data.to_owned() });
    osc
}

fn ours(osc: &OperatingSystemConfig) -> Vec<&str> {
    osc.spec.files.iter().map(|f| f.path.as_str()).filter(|p| FILE_PATHS.contains(p)).collect()
}
