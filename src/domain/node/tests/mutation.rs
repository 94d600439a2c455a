//! The whole mutation: what it adds, that it is idempotent and declarative, and that the restore is exact.

use super::*;
use crate::apis::extensions::{FileContentImageRef, OscPurpose, UnitCommand};
use crate::constants::{
    NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_POLICY_MARKER_PATH, UNIT_NAME,
};
use crate::domain::node::{MutationOutcome, changes, kubelet_exec_start};

const EXAMPLE_OSC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/30-osc-cpu-worker.yaml"));

/// The whole unit we write, spelled out once so that a change to it is a visible change to this test.
const EXPECTED_UNIT: &str = r#"[Unit]
Description=A CRI proxy with (hardware) resource aware container placement policies.
Documentation=https://github.com/intel/cri-resource-manager
After=containerd.service
Requires=containerd.service
Before=kubelet.service

[Service]
Type=simple
EnvironmentFile=/etc/default/cri-resource-manager
ExecStartPre=-/bin/sh -c '[ "$$(cat /etc/cri-resmgr/policy)" = "$$(cat /var/lib/cri-resmgr/policy.applied 2>/dev/null)" ] || { echo "policy marker /etc/cri-resmgr/policy changed: /opt/intel/bin/cri-resmgr --reset-policy" >&2; /opt/intel/bin/cri-resmgr --reset-policy && mkdir -p /var/lib/cri-resmgr && cp /etc/cri-resmgr/policy /var/lib/cri-resmgr/policy.applied; }'
ExecStart=/opt/intel/bin/cri-resmgr --runtime-socket=/run/containerd/containerd.sock --relay-socket=/var/run/cri-resmgr/cri-resmgr.sock $CONFIG_OPTIONS $POLICY_OPTIONS $EXTRA_OPTIONS
ExecStartPost=-/bin/sh -c 'waited=0; until test -S /var/run/cri-resmgr/cri-resmgr.sock; do [ "$$waited" -lt 60 ] || { echo "/var/run/cri-resmgr/cri-resmgr.sock did not appear within 60 s; units ordered after cri-resource-manager.service start anyway" >&2; exit 1; }; sleep 1; waited=$$((waited + 1)); done'
Restart=always
RestartSec=5
LogRateLimitIntervalSec=5
LogRateLimitBurst=100000

[Install]
WantedBy=multi-user.target
"#;

#[test]
fn deselected_pool_gets_back_exactly_the_original() {
    let original = reconcile_osc();
    let configs =
        merged(&[("fallback", TOPOLOGY), ("force", STATIC), ("node.a", BALLOONS), ("EXTRA_OPTIONS", "--disable-ui")]);
    let mutated = mutate(&original, Some(&plan(&configs, Some("fast")))).osc;
    assert_ne!(mutated, original);
    let restored = mutate(&mutated, None);
    assert!(restored.warnings.is_empty());
    assert_eq!(restored.osc, original);
    assert_eq!(json(&restored.osc), json(&original));
    // Nothing of ours: unchanged.
    assert_eq!(json(&mutate(&original, None).osc), json(&original));
}

#[test]
fn mutation_is_idempotent_and_declarative() {
    let original = reconcile_osc();
    let configs_a = merged(&[("fallback", TOPOLOGY), ("group.fast", BALLOONS), ("node.a", STATIC)]);
    let plan_a = plan(&configs_a, Some("fast"));
    let configs_b = merged(&[("default", PODPOOLS), ("force", STATIC), ("EXTRA_OPTIONS", "--disable-ui")]);
    let mut plan_b = plan(&configs_b, None);
    plan_b.installation_image = "registry.example.com/other:v1".to_owned();

    let once = mutate(&original, Some(&plan_a)).osc;
    let twice = mutate(&once, Some(&plan_a)).osc;
    assert_eq!(json(&twice), json(&once));

    let b_after_a = mutate(&once, Some(&plan_b)).osc;
    let b_on_original = mutate(&original, Some(&plan_b)).osc;
    assert_eq!(json(&b_after_a), json(&b_on_original));
    let a_after_b = mutate(&b_on_original, Some(&plan_a)).osc;
    assert_eq!(json(&a_after_b), json(&once), "force.cfg of plan B does not stay behind");

    // Our additions come after Gardener's entries, Gardener's entries keep their order.
    let paths: Vec<&str> = once.spec.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/var/lib/kubelet/ca.crt",
            KUBELET_CONFIG_PATH,
            "/opt/bin/kubelet",
            NODE_BINARY_PATH,
            NODE_ENV_FILE,
            NODE_FALLBACK_CONFIG_PATH,
            NODE_POLICY_MARKER_PATH
        ]
    );
    let units: Vec<&str> = once.spec.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(units, [KUBELET_UNIT_NAME, UNIT_NAME]);
}

#[test]
fn our_additions() {
    let configs = merged(&[("fallback", TOPOLOGY)]);
    let original = reconcile_osc();
    let osc = mutate(&original, Some(&plan(&configs, None))).osc;
    let binary = osc.spec.file(NODE_BINARY_PATH).expect("binary");
    assert_eq!(binary.permissions, Some(493));
    assert_eq!(
        binary.content.image_ref,
        Some(FileContentImageRef { image: IMAGE.to_owned(), file_path_in_image: NODE_BINARY_PATH.to_owned() })
    );
    assert_eq!(binary.content.inline, None);
    for path in [NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_POLICY_MARKER_PATH] {
        let file = osc.spec.file(path).expect(path);
        assert_eq!(file.permissions, Some(420), "{path}");
        assert_eq!(file.content.inline.as_ref().map(|i| i.encoding.as_str()), Some("b64"), "{path}");
    }
    let unit = osc.spec.unit(UNIT_NAME).expect("unit");
    assert_eq!(unit.content.as_deref(), Some(EXPECTED_UNIT));
    assert_eq!((unit.command.clone(), unit.enable), (Some(UnitCommand::Start), Some(true)));
    assert!(unit.drop_ins.is_empty());

    let encoded = serde_json::to_value(&osc).expect("encode");
    let unit_json = encoded["spec"]["units"].as_array().and_then(|units| units.last()).expect("unit");
    assert_eq!(unit_json["command"], "start");
    assert_eq!(unit_json["filePaths"][0], NODE_BINARY_PATH);
    let binary_json = &encoded["spec"]["files"][3];
    assert_eq!(binary_json["content"]["imageRef"]["filePathInImage"], NODE_BINARY_PATH);

    assert_eq!(
        changes(&original, &osc),
        [
            "file /var/lib/kubelet/config/kubelet: changed",
            "file /opt/intel/bin/cri-resmgr: added",
            "file /etc/default/cri-resource-manager: added",
            "file /etc/cri-resmgr/fallback.cfg: added",
            "file /etc/cri-resmgr/policy: added",
            "unit kubelet.service: changed",
            "unit cri-resource-manager.service: added",
        ]
    );
    let restored = mutate(&osc, None).osc;
    assert_eq!(changes(&osc, &restored).len(), 7);
    assert!(changes(&original, &restored).is_empty());
}

#[test]
fn provision_and_deleted_oscs_are_untouched() {
    let configs = merged(&[("fallback", TOPOLOGY)]);
    let mut provision = reconcile_osc();
    provision.spec.purpose = OscPurpose::Provision;
    let outcome = mutate(&provision, Some(&plan(&configs, None)));
    assert_eq!(outcome, MutationOutcome { osc: provision.clone(), warnings: Vec::new() });

    let mut deleted = reconcile_osc();
    deleted.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
    assert_eq!(mutate(&deleted, Some(&plan(&configs, None))).osc, deleted);
    assert_eq!(mutate(&deleted, None).osc, deleted);
}

#[test]
fn example_osc_of_a_grouped_pool() {
    let original: OperatingSystemConfig = crate::yaml::from_str(EXAMPLE_OSC).expect("example");
    let configs = merged(&[("default", BALLOONS), ("group.cpu", STATIC)]);
    let outcome = mutate(&original, Some(&plan(&configs, Some("cpu"))));
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(text(&outcome.osc, NODE_POLICY_MARKER_PATH).as_deref(), Some("policy: static\n"));
    let exec_start = kubelet_exec_start(&outcome.osc).expect("ExecStart");
    assert!(exec_start.contains("--container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock \\\n"));
    assert_eq!(json(&mutate(&outcome.osc, None).osc), json(&original));
}
