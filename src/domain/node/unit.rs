//! cri-resmgr's systemd unit on the node — upstream's unit with the ordering, restart and policy-switch changes this
//! extension needs — and the drop-in that orders kubelet after it. Only unit text is made here; which files the
//! unit watches comes from `files`, and kubelet's own unit is edited in `kubelet`.
//!
//! # Policy switching (the original extension's open issue #29)
//! cri-resmgr keeps the active policy and that policy's allocations in its cache in [`NODE_STATE_DIR`]. A
//! configuration with another `policy.Active` — from the agent or a changed fallback/force file — is stored, but
//! the running policy is only replaced when cri-resmgr starts (startup policy switch), and not at all when a user
//! passes `--disable-policy-switch` in `EXTRA_OPTIONS`: then only `cri-resmgr --reset-policy` while cri-resmgr is
//! stopped lets the next start take the new policy. Hence:
//! - the policy marker [`NODE_POLICY_MARKER_PATH`] names the policy the pool's nodes should run
//!   ([`policy_marker`](super::policy_marker)). It is in the unit's `filePaths`, so when a configured policy
//!   changes, node-agent restarts cri-resmgr;
//! - the unit's `ExecStartPre=` ([`policy_switch_exec_start_pre`]) compares the marker with the copy saved at
//!   [`NODE_POLICY_APPLIED_PATH`] when the policy was last reset; when they differ it runs
//!   `cri-resmgr --reset-policy` (cri-resmgr is stopped during `ExecStartPre`, which `--reset-policy` requires) and
//!   saves the copy. A start with an unchanged marker (reboot, crash, binary update) keeps the cached allocations.
//!   The step never fails the unit (`-` prefix): cri-resmgr — and with it kubelet's runtime — must come up even if
//!   the reset fails; without a saved copy the next start tries again, and with switching enabled cri-resmgr
//!   switches by itself anyway.
//!
//! Residual race, honestly: the marker reaches the node through the OSC (node-agent), the agent's configuration
//! through a ManagedResource and cri-resmgr-agent — two independent paths. When node-agent restarts cri-resmgr
//! before the agent pushed the ConfigMap with the new policy, the reset happens, the copy is saved, and cri-resmgr
//! starts with the old policy from its cached configuration (with fresh allocations). The new configuration,
//! pushed moments later, is cached, and the new policy is then taken at the next restart of cri-resmgr (startup
//! switch) — not immediately. With `--disable-policy-switch` that next start fails until the marker changes again.
//! `force` and `fallback` policies do not race: their files come with the marker in the same OSC.
//!
//! # Start-up order: kubelet starts when the socket is there
//! With `Type=simple` systemd considers cri-resmgr started as soon as its process runs, long before it listens on
//! [`NODE_RELAY_SOCKET`]: it first waits for containerd, then creates the socket. kubelet, ordered after it by
//! [`kubelet_drop_in`], would then start against a missing socket on a node's first install or boot and fail its
//! CRI check. So the unit's `ExecStartPost=` ([`socket_wait_exec_start_post`]) waits, at most
//! [`NODE_RELAY_SOCKET_WAIT_SECONDS`], until the socket exists; systemd keeps the unit "activating" meanwhile, and
//! units ordered `After=` it — kubelet — start only then.
//!
//! Why an `ExecStartPost=` on our unit and not an `ExecStartPre=` in kubelet's drop-in: readiness is cri-resmgr's
//! property, so it belongs to cri-resmgr's unit, where every unit ordered after it benefits; and a kubelet step
//! would make each kubelet (re)start wait out the whole bound whenever cri-resmgr is stopped on purpose, whereas
//! kubelet only `Wants=` cri-resmgr precisely so that it comes up (and reports the runtime down) without it.
//! The step never fails the unit (`-` prefix): a cri-resmgr still waiting for containerd after the bound keeps
//! running and creates its socket later — killing and restarting it would not make containerd come sooner — and
//! kubelet, started after the bound, retries through its own restarts. The check is only for existence (`test -S`):
//! after a boot `/run` is empty, and a socket left behind by a killed run cri-resmgr replaces when it starts.
//!
//! `--runtime-socket` and `--relay-socket` are passed explicitly (cri-resmgr 0.9.2's flags, `pkg/cri/resource-manager/
//! flags.go`): containerd's socket under `/run` where Gardener creates it ([`CONTAINERD_SOCKET`]), not through
//! cri-resmgr's default `/var/run/containerd/…` and the `/var/run` symlink; and the relay socket the wait checks
//! and kubelet uses is named by us, not assumed to be cri-resmgr's default. They come before `$EXTRA_OPTIONS`, and
//! with Go's flag parsing the last value wins, but admission refuses both flags in `EXTRA_OPTIONS` anyway.
//!
//! Costs: a pool cannot tell which of its nodes a `node.<N>` config is for, so the marker lists every node config,
//! and a policy change in one of them restarts cri-resmgr and resets the policy on every selected node (a full
//! reallocation there, as after any policy switch). A node whose group label is set outside the worker pool's
//! labels is not seen either: its pool's marker follows the pool's group (or `default`).
//!

use std::collections::BTreeMap;

use crate::apis::extensions::{DropIn, File, Unit, UnitCommand};
use crate::constants::{
    CONTAINERD_SOCKET, CONTAINERD_UNIT_NAME, CRI_RESMGR_FLAG_RELAY_SOCKET, CRI_RESMGR_FLAG_RESET_POLICY,
    CRI_RESMGR_FLAG_RUNTIME_SOCKET, KUBELET_DROP_IN_NAME, KUBELET_UNIT_NAME, NODE_BINARY_PATH, NODE_ENV_CONFIG_OPTIONS,
    NODE_ENV_EXTRA_OPTIONS, NODE_ENV_FILE, NODE_ENV_POLICY_OPTIONS, NODE_POLICY_APPLIED_PATH, NODE_POLICY_MARKER_PATH,
    NODE_RELAY_SOCKET, NODE_RELAY_SOCKET_WAIT_SECONDS, NODE_SHELL, NODE_STATE_DIR, UNIT_NAME,
};

/// The unit [`UNIT_NAME`]: enabled, started, restarted by node-agent when any of `files` — the pool's
/// [`node_files`](super::node_files) — changes.
pub fn cri_resmgr_unit(files: &[File]) -> Unit {
    Unit {
        name: UNIT_NAME.to_owned(),
        command: Some(UnitCommand::Start),
        enable: Some(true),
        content: Some(unit_content()),
        drop_ins: Vec::new(),
        file_paths: files.iter().map(|file| file.path.clone()).collect(),
        other: BTreeMap::new(),
    }
}

/// The content of [`UNIT_NAME`]: upstream's `cri-resource-manager.service` as the release tarball installs it, plus
/// - `After=`/`Requires=` containerd (cri-resmgr relays to it; upstream relies on cri-resmgr waiting for the
///   socket, but a containerd restart should restart the relay too);
/// - `RestartSec=5` (kubelet's own value) instead of systemd's 100 ms between restarts;
/// - the policy-switch step [`policy_switch_exec_start_pre`];
/// - `--runtime-socket`/`--relay-socket` explicitly, and the wait for the relay socket
///   [`socket_wait_exec_start_post`] (see the module documentation);
/// - `$EXTRA_OPTIONS` unbraced in `ExecStart=`, so systemd splits it into separate arguments;
/// - `LogRateLimitIntervalSec`/`LogRateLimitBurst` in `[Service]`: they are exec settings, and systemd ignores them
///   (with a warning) in upstream's `[Unit]`.
pub fn unit_content() -> String {
    let exec_start_pre = policy_switch_exec_start_pre();
    let exec_start_post = socket_wait_exec_start_post();
    let exec_start = format!(
        "{NODE_BINARY_PATH} {CRI_RESMGR_FLAG_RUNTIME_SOCKET}={CONTAINERD_SOCKET} \
         {CRI_RESMGR_FLAG_RELAY_SOCKET}={NODE_RELAY_SOCKET} ${NODE_ENV_CONFIG_OPTIONS} ${NODE_ENV_POLICY_OPTIONS} \
         ${NODE_ENV_EXTRA_OPTIONS}"
    );
    format!(
        "[Unit]
Description=A CRI proxy with (hardware) resource aware container placement policies.
Documentation=https://github.com/intel/cri-resource-manager
After={CONTAINERD_UNIT_NAME}
Requires={CONTAINERD_UNIT_NAME}
Before={KUBELET_UNIT_NAME}

[Service]
Type=simple
EnvironmentFile={NODE_ENV_FILE}
ExecStartPre={exec_start_pre}
ExecStart={exec_start}
ExecStartPost={exec_start_post}
Restart=always
RestartSec=5
LogRateLimitIntervalSec=5
LogRateLimitBurst=100000

[Install]
WantedBy=multi-user.target
"
    )
}

/// The shell step that switches the policy when the marker changed (see the module docs), as plain `sh` text:
/// when the marker's content differs from the saved copy (or there is no copy), reset the cached policy and, only
/// if that worked, save the copy. Paths are parameters so that tests can run it.
pub(super) fn policy_switch_script(marker: &str, applied: &str, state_dir: &str, binary: &str) -> String {
    format!(
        "[ \"$(cat {marker})\" = \"$(cat {applied} 2>/dev/null)\" ] || {{ echo \"policy marker {marker} changed: \
         {binary} {CRI_RESMGR_FLAG_RESET_POLICY}\" >&2; {binary} {CRI_RESMGR_FLAG_RESET_POLICY} && mkdir -p \
         {state_dir} && cp {marker} {applied}; }}"
    )
}

/// The unit's `ExecStartPre=` value: `-`[`NODE_SHELL`]` -c '<script>'`, the script written for systemd (see
/// `shell_step_ignoring_failure`); a failure does not fail the unit: cri-resmgr must come up, the next start retries.
pub fn policy_switch_exec_start_pre() -> String {
    let script =
        policy_switch_script(NODE_POLICY_MARKER_PATH, NODE_POLICY_APPLIED_PATH, NODE_STATE_DIR, NODE_BINARY_PATH);
    shell_step_ignoring_failure(&script)
}

/// The shell step that waits until `socket` exists as a socket, checking once a second, at most `bound_seconds`
/// seconds; exit status 0 once it is there, 1 (with a message) after the bound. Plain POSIX `sh` (`until`, `test
/// -S`, `$((…))`, `sleep` in whole seconds); the socket and the bound are parameters so that tests can run it.
pub(super) fn socket_wait_script(socket: &str, bound_seconds: u32) -> String {
    format!(
        "waited=0; until test -S {socket}; do [ \"$waited\" -lt {bound_seconds} ] || {{ echo \"{socket} did not \
         appear within {bound_seconds} s; units ordered after {UNIT_NAME} start anyway\" >&2; exit 1; }}; sleep 1; \
         waited=$((waited + 1)); done"
    )
}

/// The unit's `ExecStartPost=` value: `-`[`NODE_SHELL`]` -c '<script>'` with [`socket_wait_script`] for
/// [`NODE_RELAY_SOCKET`] and [`NODE_RELAY_SOCKET_WAIT_SECONDS`], written for systemd like the policy-switch step.
pub fn socket_wait_exec_start_post() -> String {
    shell_step_ignoring_failure(&socket_wait_script(NODE_RELAY_SOCKET, NODE_RELAY_SOCKET_WAIT_SECONDS))
}

/// `-`[`NODE_SHELL`]` -c '<script>'`: a plain `sh` script as the value of an `Exec*=` setting.
///
/// - `-`: a failure is logged but does not fail the unit (why, for each step: see the module documentation).
/// - The script is one single-quoted word, so systemd passes it as one argument. Inside it systemd still expands
///   `$`-variables and `%`-specifiers, so `$` is written `$$` and `%` `%%`; the scripts have no `'` or `\`
///   (a test checks), which would need escaping too.
fn shell_step_ignoring_failure(script: &str) -> String {
    format!("-{NODE_SHELL} -c '{}'", script.replace('$', "$$").replace('%', "%%"))
}

/// Our drop-in on [`KUBELET_UNIT_NAME`]: kubelet starts after cri-resmgr and pulls it in. `Wants=`, not
/// `Requires=`: a failing cri-resmgr must not stop kubelet (which then reports the runtime as down, visibly).
pub fn kubelet_drop_in() -> DropIn {
    DropIn {
        name: KUBELET_DROP_IN_NAME.to_owned(),
        content: format!("[Unit]\nAfter={UNIT_NAME}\nWants={UNIT_NAME}\n"),
        other: BTreeMap::new(),
    }
}
