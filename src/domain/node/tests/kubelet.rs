//! kubelet's runtime endpoint: switched in place in the unit and the config file, restored exactly, and left alone
//! with a warning where it cannot be read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;
use crate::apis::extensions::UnitCommand;
use crate::constants::{CONTAINERD_SOCKET_ENDPOINT, RELAY_SOCKET_ENDPOINT};
use crate::domain::node::{command_line_arguments, kubelet_drop_in, kubelet_exec_start};

/// The reconstructed kubelet `ExecStart=` value, and the same with cri-resmgr's endpoint.
const ORIGINAL_EXEC_START: &str = "/opt/bin/kubelet \\
    --bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap \\
    --config=/var/lib/kubelet/config/kubelet \\
    --kubeconfig=/var/lib/kubelet/kubeconfig-real \\
    --node-labels=worker.gardener.cloud/kubernetes-version=1.32.0 \\
    --node-labels=containerruntime.worker.gardener.cloud/gvisor=true \\
    --node-labels=kubernetes.io/arch=amd64 \\
    --node-labels=test2=bar \\
    --node-labels=test=foo \\
    --node-labels=worker.gardener.cloud/pool=worker \\
    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \\
    --runtime-cgroups=/system.slice/containerd.service \\
    --v=2 $KUBELET_EXTRA_ARGS";
const MUTATED_EXEC_START: &str = "/opt/bin/kubelet \\
    --bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap \\
    --config=/var/lib/kubelet/config/kubelet \\
    --kubeconfig=/var/lib/kubelet/kubeconfig-real \\
    --node-labels=worker.gardener.cloud/kubernetes-version=1.32.0 \\
    --node-labels=containerruntime.worker.gardener.cloud/gvisor=true \\
    --node-labels=kubernetes.io/arch=amd64 \\
    --node-labels=test2=bar \\
    --node-labels=test=foo \\
    --node-labels=worker.gardener.cloud/pool=worker \\
    --container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock \\
    --runtime-cgroups=/system.slice/containerd.service \\
    --v=2 $KUBELET_EXTRA_ARGS";

#[test]
fn kubelet_flag_is_switched_in_place_and_everything_else_is_kept() {
    let original = reconcile_osc();
    assert_eq!(kubelet_exec_start(&original).as_deref(), Some(ORIGINAL_EXEC_START));
    let configs = merged(&[("fallback", TOPOLOGY)]);
    let outcome = mutate(&original, Some(&plan(&configs, None)));
    assert_eq!(outcome.warnings, Vec::<String>::new());
    let mutated = outcome.osc;
    assert_eq!(kubelet_exec_start(&mutated).as_deref(), Some(MUTATED_EXEC_START));
    // Every other byte of the unit is unchanged.
    assert_eq!(kubelet_content(&mutated), kubelet_content(&original).replace(ORIGINAL_EXEC_START, MUTATED_EXEC_START));
    // The arguments as Gardener's DeserializeCommandLine reads them: the same, in order, one value changed.
    let before = command_line_arguments(ORIGINAL_EXEC_START);
    let after = command_line_arguments(MUTATED_EXEC_START);
    assert_eq!(before.len(), 14);
    assert_eq!(after.last(), Some(&"$KUBELET_EXTRA_ARGS"), "$KUBELET_EXTRA_ARGS stays last");
    assert!(after.contains(&"--runtime-cgroups=/system.slice/containerd.service"));
    let changed: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert_eq!(
        changed,
        [(
            &"--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            &"--container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock"
        )]
    );
    // The rest of the kubelet unit entry is Gardener's, plus our drop-in.
    let unit = kubelet(&mutated);
    assert_eq!(unit.file_paths, kubelet(&original).file_paths);
    assert_eq!((unit.command.clone(), unit.enable), (Some(UnitCommand::Start), Some(true)));
    assert_eq!(unit.drop_ins, [kubelet_drop_in()]);
    assert_eq!(
        unit.drop_ins[0].content,
        "[Unit]\nAfter=cri-resource-manager.service\nWants=cri-resource-manager.service\n"
    );
}

#[test]
fn kubelet_unit_reserialised_by_gardener_is_switched_and_restored_exactly() {
    let original = with_kubelet_content(GARDENER_SERIALIZED_KUBELET);
    let configs = merged(&[]);
    let mutated = mutate(&original, Some(&plan(&configs, None)));
    assert!(mutated.warnings.is_empty(), "{:?}", mutated.warnings);
    assert_eq!(
        kubelet_content(&mutated.osc),
        GARDENER_SERIALIZED_KUBELET.replace(CONTAINERD_SOCKET_ENDPOINT, RELAY_SOCKET_ENDPOINT)
    );
    let restored = mutate(&mutated.osc, None).osc;
    assert_eq!(json(&restored), json(&original));
}

#[test]
fn kubelet_flag_is_appended_when_missing() {
    let content = kubelet_content(&reconcile_osc())
        .replace("    --container-runtime-endpoint=unix:///run/containerd/containerd.sock \\\n", "");
    let original = with_kubelet_content(&content);
    let configs = merged(&[]);
    let mutated = mutate(&original, Some(&plan(&configs, None)));
    assert!(mutated.warnings.is_empty(), "{:?}", mutated.warnings);
    let exec_start = kubelet_exec_start(&mutated.osc).expect("ExecStart");
    assert!(
        exec_start.ends_with(
            "    --v=2 $KUBELET_EXTRA_ARGS \\\n    --container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock"
        ),
        "{exec_start}"
    );
    // Mutating again changes nothing; restoring leaves containerd's endpoint (the documented inexact case).
    assert_eq!(json(&mutate(&mutated.osc, Some(&plan(&configs, None))).osc), json(&mutated.osc));
    let restored = kubelet_exec_start(&mutate(&mutated.osc, None).osc).expect("ExecStart");
    assert!(
        restored.ends_with(
            "$KUBELET_EXTRA_ARGS \\\n    --container-runtime-endpoint=unix:///run/containerd/containerd.sock"
        )
    );
}

#[test]
fn kubelet_config_endpoint_is_rewritten_and_restored() {
    let original = reconcile_osc();
    let original_text = text(&original, KUBELET_CONFIG_PATH).expect("kubelet config");
    assert!(original_text.contains("containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n"));
    let configs = merged(&[]);
    let mutated = mutate(&original, Some(&plan(&configs, None))).osc;
    let file = mutated.spec.file(KUBELET_CONFIG_PATH).expect("kubelet config");
    assert_eq!(file.content.inline.as_ref().map(|i| i.encoding.as_str()), Some("b64"));
    assert_eq!(file.permissions, Some(384));
    assert_eq!(
        inline_text(file),
        Some(original_text.replace(
            "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock",
            "containerRuntimeEndpoint: unix:///var/run/cri-resmgr/cri-resmgr.sock"
        ))
    );
    let restored = mutate(&mutated, None).osc;
    assert_eq!(restored.spec.file(KUBELET_CONFIG_PATH), original.spec.file(KUBELET_CONFIG_PATH));

    // Plain text, quoted value with a comment, the same endpoint earlier under another key: only the field's
    // text changes, quoting and comment survive, and the restore is exact.
    let plain = "# kubelet\nimageServiceEndpoint: unix:///run/containerd/containerd.sock\n\
                 containerRuntimeEndpoint: \"unix:///run/containerd/containerd.sock\" # runtime\nkind: KubeletConfiguration\n";
    let original = with_kubelet_config("", plain);
    let mutated = mutate(&original, Some(&plan(&configs, None)));
    assert!(mutated.warnings.is_empty(), "{:?}", mutated.warnings);
    let inline = mutated.osc.spec.file(KUBELET_CONFIG_PATH).and_then(|f| f.content.inline.clone()).expect("inline");
    assert_eq!(inline.encoding, "");
    assert_eq!(
        inline.data,
        "# kubelet\nimageServiceEndpoint: unix:///run/containerd/containerd.sock\n\
         containerRuntimeEndpoint: \"unix:///var/run/cri-resmgr/cri-resmgr.sock\" # runtime\nkind: KubeletConfiguration\n"
    );
    assert_eq!(json(&mutate(&mutated.osc, None).osc), json(&original));

    // A config without the field is not touched.
    let without = with_kubelet_config("", "kind: KubeletConfiguration\ncgroupDriver: systemd\n");
    let mutated = mutate(&without, Some(&plan(&configs, None)));
    assert!(mutated.warnings.is_empty());
    assert_eq!(mutated.osc.spec.file(KUBELET_CONFIG_PATH), without.spec.file(KUBELET_CONFIG_PATH));
}

#[test]
fn malformed_kubelet_config_is_left_alone_with_a_warning() {
    let configs = merged(&[]);
    let not_utf8 = BASE64.encode([0xff, 0xfe, 0x00]);
    let cases = [
        ("b64", "!!! not base64 !!!", "invalid base64"),
        ("b64", not_utf8.as_str(), "not UTF-8"),
        ("", "containerRuntimeEndpoint: [unix", "not a KubeletConfiguration"),
        ("", "- a list", "not a mapping"),
        ("", "containerRuntimeEndpoint: unix:///run/crio/crio.sock\n", "neither containerd's"),
        ("gzip", "xyz", "unknown encoding"),
    ];
    for (encoding, data, expected) in cases {
        let original = with_kubelet_config(encoding, data);
        let outcome = mutate(&original, Some(&plan(&configs, None)));
        assert_eq!(outcome.warnings.len(), 1, "{data}: {:?}", outcome.warnings);
        assert!(outcome.warnings[0].contains(expected), "{data}: {:?}", outcome.warnings);
        assert!(outcome.warnings[0].starts_with("file /var/lib/kubelet/config/kubelet: "), "{:?}", outcome.warnings);
        assert_eq!(outcome.osc.spec.file(KUBELET_CONFIG_PATH), original.spec.file(KUBELET_CONFIG_PATH), "{data}");
        // The unit is still switched (the flag wins over the file), and cri-resmgr is installed.
        assert_eq!(kubelet_exec_start(&outcome.osc).as_deref(), Some(MUTATED_EXEC_START));
        assert_eq!(ours(&outcome.osc).len(), 4);
        // Without a plan nothing is reported and nothing changes.
        let restored = mutate(&original, None);
        assert!(restored.warnings.is_empty());
        assert_eq!(json(&restored.osc), json(&original));
    }
}

#[test]
fn malformed_kubelet_unit_is_left_alone_with_a_warning() {
    let configs = merged(&[]);
    let foreign = ORIGINAL_EXEC_START.replace(CONTAINERD_SOCKET_ENDPOINT, "unix:///run/crio/crio.sock");
    let cases = [
        ("[Unit]\nDescription=kubelet\n".to_owned(), "no [Service] section"),
        ("[Unit]\nDescription=kubelet\n[Service]\nRestart=always\n".to_owned(), "no ExecStart= in [Service]"),
        ("[Service]\nExecStart=/opt/bin/kubelet\nExecStart=/opt/bin/kubelet --v=2\n".to_owned(), "2 ExecStart="),
        ("[Service]\nExecStart=\n".to_owned(), "ExecStart= is empty"),
        ("[Service\nExecStart=/opt/bin/kubelet\n".to_owned(), "malformed section header"),
        (format!("[Service]\nExecStart={foreign}\n"), "neither containerd's"),
        (
            "[Service]\nExecStart=/opt/bin/kubelet --container-runtime-endpoint unix:///run/containerd/containerd.sock\n"
                .to_owned(),
            "separate value argument",
        ),
    ];
    for (content, expected) in cases {
        let original = with_kubelet_content(&content);
        let outcome = mutate(&original, Some(&plan(&configs, None)));
        assert_eq!(outcome.warnings.len(), 1, "{content}: {:?}", outcome.warnings);
        assert!(outcome.warnings[0].starts_with("kubelet.service: "), "{:?}", outcome.warnings);
        assert!(outcome.warnings[0].contains(expected), "{content}: {:?}", outcome.warnings);
        assert_eq!(kubelet(&outcome.osc), kubelet(&original), "unit and drop-ins untouched: {content}");
        assert_eq!(ours(&outcome.osc).len(), 4, "cri-resmgr is still installed");
        let again = mutate(&outcome.osc, Some(&plan(&configs, None)));
        assert_eq!(json(&again.osc), json(&outcome.osc));
        let restored = mutate(&outcome.osc, None);
        assert!(restored.warnings.is_empty());
        assert_eq!(json(&restored.osc), json(&original), "{content}");
    }

    let mut no_content = reconcile_osc();
    no_content.spec.unit_mut(KUBELET_UNIT_NAME).expect("kubelet").content = None;
    let outcome = mutate(&no_content, Some(&plan(&configs, None)));
    assert!(outcome.warnings[0].contains("kubelet.service has no content"), "{:?}", outcome.warnings);

    let mut no_kubelet = reconcile_osc();
    no_kubelet.spec.units.clear();
    let outcome = mutate(&no_kubelet, Some(&plan(&configs, None)));
    assert!(outcome.warnings[0].contains("the OSC has no kubelet.service unit"), "{:?}", outcome.warnings);
    assert_eq!(outcome.osc.spec.units.len(), 1);
}

#[test]
fn a_kept_kubelet_config_answer_is_the_fresh_one_for_its_direction() {
    use crate::domain::node::kubelet::{
        SWITCH_MEMO_BYTES, switch_config_endpoint, switch_config_endpoint_uncached, switch_memo_bytes,
    };
    let texts = [
        format!("kind: KubeletConfiguration\ncontainerRuntimeEndpoint: {CONTAINERD_SOCKET_ENDPOINT}\n# memo a\n"),
        format!("kind: KubeletConfiguration\ncontainerRuntimeEndpoint: {RELAY_SOCKET_ENDPOINT}\n# memo b\n"),
        "kind: KubeletConfiguration\ncgroupDriver: systemd\n# memo c\n".to_owned(),
        "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/other.sock\n# memo d\n".to_owned(),
        "containerRuntimeEndpoint: [\n# memo e\n".to_owned(),
    ];
    // Installing first, then removing: a memo that forgot the direction would answer the removal with the
    // installation's answer.
    for text in &texts {
        for install in [true, false, true, false] {
            assert_eq!(
                switch_config_endpoint(text, install),
                switch_config_endpoint_uncached(text, install),
                "install {install}: {text}"
            );
        }
    }
    assert!(switch_config_endpoint(&texts[0], true).expect("switched").is_some());
    assert_eq!(switch_config_endpoint(&texts[0], false), Ok(None));

    // Many distinct files never hold more than the bound.
    for i in 0..400 {
        let padding = "#".repeat(4096);
        let text = format!(
            "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: {CONTAINERD_SOCKET_ENDPOINT}\n# {i}{padding}\n"
        );
        assert!(switch_config_endpoint(&text, true).expect("switched").is_some());
        assert!(switch_memo_bytes() <= SWITCH_MEMO_BYTES, "{} bytes", switch_memo_bytes());
    }
}
