//! The node files: environment file, config files, policy marker, and the node paths they live at.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::constants::{
    CONTAINERD_SOCKET, CONTAINERD_SOCKET_ENDPOINT, NODE_BINARY_PATH, NODE_CONFIG_DIR, NODE_ENV_CONFIG_OPTIONS,
    NODE_ENV_EXTRA_OPTIONS, NODE_ENV_FILE, NODE_ENV_POLICY_OPTIONS, NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH,
    NODE_POLICY_APPLIED_PATH, NODE_POLICY_MARKER_PATH, NODE_RELAY_SOCKET, NODE_SOCKET_DIR, NODE_STATE_DIR,
    RELAY_SOCKET_ENDPOINT, UNIT_NAME,
};
use crate::domain::node::{env_file, policy_marker};

#[test]
fn env_file_with_fallback_or_force() {
    let fallback = merged(&[("fallback", TOPOLOGY)]);
    assert_eq!(
        env_file(&fallback),
        "CONFIG_OPTIONS=\"--fallback-config /etc/cri-resmgr/fallback.cfg\"\nPOLICY_OPTIONS=\"\"\nEXTRA_OPTIONS=\"\"\n"
    );
    let force =
        merged(&[("fallback", TOPOLOGY), ("force", STATIC), ("EXTRA_OPTIONS", "--metrics-interval=10s --disable-ui")]);
    assert_eq!(
        env_file(&force),
        "CONFIG_OPTIONS=\"--force-config /etc/cri-resmgr/force.cfg\"\nPOLICY_OPTIONS=\"\"\nEXTRA_OPTIONS=\"--metrics-interval=10s --disable-ui\"\n"
    );

    let with_fallback = mutate(&reconcile_osc(), Some(&plan(&fallback, None))).osc;
    assert_eq!(text(&with_fallback, NODE_ENV_FILE), Some(env_file(&fallback)));
    assert_eq!(text(&with_fallback, NODE_FALLBACK_CONFIG_PATH).as_deref(), Some(TOPOLOGY));
    assert_eq!(text(&with_fallback, NODE_FORCE_CONFIG_PATH), None);
    let unit = with_fallback.spec.unit(UNIT_NAME).expect("unit");
    assert_eq!(unit.file_paths, [NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_POLICY_MARKER_PATH]);

    let with_force = mutate(&reconcile_osc(), Some(&plan(&force, None))).osc;
    assert_eq!(text(&with_force, NODE_ENV_FILE), Some(env_file(&force)));
    assert_eq!(text(&with_force, NODE_FORCE_CONFIG_PATH).as_deref(), Some(STATIC));
    assert_eq!(text(&with_force, NODE_FALLBACK_CONFIG_PATH).as_deref(), Some(TOPOLOGY));
    let unit = with_force.spec.unit(UNIT_NAME).expect("unit");
    assert_eq!(unit.file_paths, FILE_PATHS);

    // No fallback configured: the built-in configuration.
    let none = merged(&[]);
    let osc = mutate(&reconcile_osc(), Some(&plan(&none, None))).osc;
    assert_eq!(text(&osc, NODE_FALLBACK_CONFIG_PATH).as_deref(), Some(crate::domain::configs::BUILTIN_CONFIG));
}

#[test]
fn extra_options_cannot_break_out_of_the_env_file() {
    // Bypasses validation on purpose: the env file must be safe on its own.
    let hostile = "--a=\"b\\c $HOME ${PATH} `id` $(reboot)\nINJECTED=1\r\n\"\nCONFIG_OPTIONS=--x";
    let configs = MergedConfigs {
        configs: crate::domain::validation::Configs { extra_options: Some(hostile.to_owned()), ..Default::default() },
        ..Default::default()
    };
    let env = env_file(&configs);
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines.len(), 3, "{env}");
    for (line, key) in lines.iter().zip([NODE_ENV_CONFIG_OPTIONS, NODE_ENV_POLICY_OPTIONS, NODE_ENV_EXTRA_OPTIONS]) {
        let value = line.strip_prefix(&format!("{key}=\"")).and_then(|v| v.strip_suffix('"')).expect(line);
        // Inside the quotes every ", \, $ and ` is escaped.
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => assert!(matches!(chars.next(), Some('"' | '\\' | '$' | '`')), "{line}"),
                '"' | '$' | '`' => panic!("unescaped {c:?} in {line}"),
                c => assert!(!c.is_control(), "{line}"),
            }
        }
    }
    // A shell reads the file exactly like systemd: the value comes back, control characters as spaces.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("env");
    std::fs::write(&path, &env).expect("write");
    let output = Command::new("sh")
        .args(["-c", ". \"$1\"; printf '%s|%s|%s' \"$EXTRA_OPTIONS\" \"${INJECTED-unset}\" \"$CONFIG_OPTIONS\"", "sh"])
        .arg(&path)
        .output()
        .expect("sh");
    assert!(output.status.success(), "{output:?}");
    let expected: String = hostile.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{expected}|unset|--fallback-config /etc/cri-resmgr/fallback.cfg")
    );

    let outcome = mutate(&reconcile_osc(), Some(&plan(&configs, None)));
    assert_eq!(outcome.warnings.len(), 1, "{:?}", outcome.warnings);
    assert!(outcome.warnings[0].contains("control characters"), "{:?}", outcome.warnings);
}

#[test]
fn policy_marker_names_the_policy_of_the_pool_and_of_every_node_config() {
    let marker = |entries: &[(&str, &str)], group: Option<&str>| {
        let configs = merged(entries);
        policy_marker(&plan(&configs, group))
    };
    assert_eq!(marker(&[], None), "policy: none\n", "built-in configuration");
    assert_eq!(marker(&[("fallback", TOPOLOGY)], None), "policy: topology-aware\n");
    assert_eq!(marker(&[("fallback", TOPOLOGY), ("default", BALLOONS)], None), "policy: balloons\n");
    assert_eq!(marker(&[("default", NO_POLICY)], None), "policy: none\n", "no policy.Active: cri-resmgr's default");
    let grouped = [("default", BALLOONS), ("group.fast", STATIC)];
    assert_eq!(marker(&grouped, Some("fast")), "policy: static\n");
    assert_eq!(marker(&grouped, Some("slow")), "policy: balloons\n", "no config for the group");
    assert_eq!(marker(&grouped, None), "policy: balloons\n");
    let nodes = [("default", BALLOONS), ("node.b", NO_POLICY), ("node.a", STATIC)];
    assert_eq!(marker(&nodes, None), "policy: balloons\nnode a: static\nnode b: none\n");
    let forced = [("default", BALLOONS), ("group.fast", STATIC), ("node.a", STATIC), ("force", PODPOOLS)];
    assert_eq!(marker(&forced, Some("fast")), "policy: podpools\n", "force ignores the agent's configs");

    // The marker is a file of the OSC and one of the unit's filePaths.
    let configs = merged(&nodes);
    let osc = mutate(&reconcile_osc(), Some(&plan(&configs, None))).osc;
    assert_eq!(
        text(&osc, NODE_POLICY_MARKER_PATH).as_deref(),
        Some("policy: balloons\nnode a: static\nnode b: none\n")
    );
    assert!(osc.spec.unit(UNIT_NAME).expect("unit").file_paths.iter().any(|p| p == NODE_POLICY_MARKER_PATH));
}

#[test]
fn node_paths_are_consistent() {
    let parent = |path: &str| Path::new(path).parent().and_then(Path::to_str).map(str::to_owned);
    assert_eq!(parent(NODE_POLICY_APPLIED_PATH).as_deref(), Some(NODE_STATE_DIR));
    for path in [NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH, NODE_POLICY_MARKER_PATH] {
        assert_eq!(parent(path).as_deref(), Some(NODE_CONFIG_DIR), "{path}");
    }
    assert_eq!(parent(NODE_RELAY_SOCKET).as_deref(), Some(NODE_SOCKET_DIR));
    assert_eq!(RELAY_SOCKET_ENDPOINT, format!("unix://{NODE_RELAY_SOCKET}"));
    assert_eq!(CONTAINERD_SOCKET_ENDPOINT, "unix:///run/containerd/containerd.sock");
    assert_eq!(CONTAINERD_SOCKET_ENDPOINT, format!("unix://{CONTAINERD_SOCKET}"));
}
