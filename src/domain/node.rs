//! The node side: what the OperatingSystemConfig webhook adds to a worker pool's `purpose: reconcile` OSC so that
//! gardener-node-agent installs, configures and starts cri-resmgr and points kubelet at it — and how it is taken
//! away again. Pure functions; the webhook handler decides which pool gets a [`PoolPlan`] and calls [`mutate`].
//!
//! # What a selected pool's OSC gets
//! - file [`NODE_BINARY_PATH`] (0755) from the installation image (`content.imageRef`, same path in the image);
//! - file [`NODE_FALLBACK_CONFIG_PATH`] (0644): [`MergedConfigs::node_fallback_config`]; file
//!   [`NODE_FORCE_CONFIG_PATH`] (0644) only when `force` is configured;
//! - file [`NODE_ENV_FILE`] (0644, see [`env_file`]): `CONFIG_OPTIONS` (`--force-config` when `force` is set, else
//!   `--fallback-config`; cri-resmgr refuses both together), `POLICY_OPTIONS=""` (startup policy switching stays
//!   enabled), `EXTRA_OPTIONS`;
//! - file [`NODE_POLICY_MARKER_PATH`] (0644, see [`policy_marker`]) — the policy-switch trigger below;
//! - unit [`UNIT_NAME`] (see [`unit_content`]): upstream's unit plus containerd/kubelet ordering, `RestartSec=5`,
//!   the policy-switch `ExecStartPre=`, `$EXTRA_OPTIONS` in `ExecStart=`, the log rate-limit keys moved to
//!   `[Service]` where systemd reads them; enabled, started, with every file above in `filePaths` so that
//!   node-agent restarts cri-resmgr whenever one of them changes;
//! - kubelet: `--container-runtime-endpoint=`[`RELAY_SOCKET_ENDPOINT`] in `kubelet.service`'s `ExecStart=`,
//!   `containerRuntimeEndpoint` likewise in [`KUBELET_CONFIG_PATH`] when that file sets it, and the drop-in
//!   [`KUBELET_DROP_IN_NAME`] (`After=`/`Wants=` cri-resmgr) so kubelet starts after its runtime proxy.
//!
//! Every inline file is `b64`-encoded: configs are arbitrary user text, and b64 survives any transport unchanged.
//!
//! # Declarative and idempotent
//! [`mutate`] first removes everything of ours from the incoming OSC — our file paths ([`FILE_PATHS`]), our unit,
//! our kubelet drop-in — and points kubelet back at containerd where it points at our socket; then, with a plan, it
//! adds the current additions at the end of `files`/`units`. So the result depends only on the OSC without our
//! earlier additions plus the plan: mutating twice equals mutating once (byte for byte), plan B after plan A equals
//! plan B on the original, and `None` on a mutated OSC gives back the original. Only `purpose: reconcile` OSCs
//! without a deletionTimestamp are touched (as Gardener's generic mutator does); everything else comes back as is.
//!
//! # kubelet
//! The `ExecStart=` of `[Service]` is read the way Gardener's webhook library does it (go-systemd keeps the
//! `\`-newline continuations inside the option value; `DeserializeCommandLine` splits it on `[\\\s]+`;
//! `EnsureStringWithPrefix` replaces every `--container-runtime-endpoint=` token, or appends one). The edit is
//! then made *in place*: only the value part of the matching tokens is replaced, and an appended flag goes at the
//! end with Gardener's separator (` \`, newline, four spaces) — after `$KUBELET_EXTRA_ARGS`, as Gardener's
//! ensurers append, so our endpoint wins over one in the extra args. Unlike `SerializeCommandLine`, which re-lays
//! out the whole command line, this keeps every other byte of the unit (and of the command line) as it was, so
//! that removing our mutation restores the original exactly, whatever layout gardenlet or another extension's
//! webhook produced. Only the endpoints we know are switched: containerd's ([`CONTAINERD_SOCKET_ENDPOINT`], what
//! gardenlet writes) ⇄ ours ([`RELAY_SOCKET_ENDPOINT`]). Any other value is somebody else's runtime setup, which
//! cri-resmgr (relaying to containerd) would break: it is left alone with a warning. The one restore that is not
//! exact: a command line that had no `--container-runtime-endpoint=` at all (gardenlet always writes one) gets
//! ours appended, and then keeps `--container-runtime-endpoint=unix:///run/containerd/containerd.sock` (kubelet's
//! default for containerd) after the restore.
//!
//! `containerRuntimeEndpoint` in the KubeletConfiguration file (kubelet ≥ 1.27; the flag wins over it, but a later
//! Gardener may drop the flag) is switched the same way, textually: the value's text is replaced where re-reading
//! the YAML proves that exactly this field changed, and the file is re-encoded with its own encoding. Comments,
//! quoting and key order survive. A file that does not set the field is not touched.
//!
//! # Policy switching (the original extension's open issue #29)
//! cri-resmgr keeps the active policy and that policy's allocations in its cache in [`NODE_STATE_DIR`]. A
//! configuration with another `policy.Active` — from the agent or a changed fallback/force file — is stored, but
//! the running policy is only replaced when cri-resmgr starts (startup policy switch), and not at all when a user
//! passes `--disable-policy-switch` in `EXTRA_OPTIONS`: then only `cri-resmgr --reset-policy` while cri-resmgr is
//! stopped lets the next start take the new policy. Hence:
//! - the policy marker [`NODE_POLICY_MARKER_PATH`] names the policy the pool's nodes should run ([`policy_marker`]).
//!   It is in the unit's `filePaths`, so when a configured policy changes, node-agent restarts cri-resmgr;
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
//! Costs: a pool cannot tell which of its nodes a `node.<N>` config is for, so the marker lists every node config,
//! and a policy change in one of them restarts cri-resmgr and resets the policy on every selected node (a full
//! reallocation there, as after any policy switch). A node whose group label is set outside the worker pool's
//! labels is not seen either: its pool's marker follows the pool's group (or `default`).
//!
//! # What is left alone, with a warning
//! Malformed inputs never panic; the part that cannot be handled is left as it is and explained in
//! [`MutationOutcome::warnings`] (only when a plan is given — restoring an OSC we cannot read has nothing to
//! restore): a missing `kubelet.service`, a kubelet unit without content, without `[Service]`, without or with more
//! than one `ExecStart=`, a foreign runtime endpoint (then kubelet keeps talking to containerd and gets no drop-in);
//! a kubelet config file that is not inline, not decodable, not YAML, or whose endpoint text cannot be located.
//! cri-resmgr's own files and unit are added regardless: an unused cri-resmgr is harmless, and the warning says
//! why kubelet does not use it.

use std::collections::BTreeMap;
use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::apis::extensions::{
    DropIn, File, FileContent, FileContentImageRef, FileContentInline, OperatingSystemConfig,
    OperatingSystemConfigSpec, OscPurpose, Unit, UnitCommand,
};
use crate::constants::{
    AGENT_GROUP_LABEL, CONTAINERD_SOCKET_ENDPOINT, CONTAINERD_UNIT_NAME, CRI_RESMGR_DEFAULT_POLICY,
    CRI_RESMGR_FLAG_FALLBACK_CONFIG, CRI_RESMGR_FLAG_FORCE_CONFIG, CRI_RESMGR_FLAG_RESET_POLICY,
    KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_CONFIG_PATH, KUBELET_DROP_IN_NAME,
    KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_UNIT_NAME, NODE_BINARY_PATH, NODE_ENV_CONFIG_OPTIONS,
    NODE_ENV_EXTRA_OPTIONS, NODE_ENV_FILE, NODE_ENV_POLICY_OPTIONS, NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH,
    NODE_POLICY_APPLIED_PATH, NODE_POLICY_MARKER_PATH, NODE_SHELL, NODE_STATE_DIR, RELAY_SOCKET_ENDPOINT, UNIT_NAME,
};
use crate::domain::configs::MergedConfigs;
use crate::domain::validation::{ConfigBody, Policy};

/// Every file path the extension writes into an OSC. [`mutate`] removes files at these paths before adding its
/// own, so they belong to the extension on selected and deselected pools alike.
pub const FILE_PATHS: &[&str] =
    &[NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH, NODE_POLICY_MARKER_PATH];

/// File mode of the binary: 0755 (493 in the OSC's decimal JSON).
const MODE_EXECUTABLE: i32 = 0o755;
/// File mode of the configuration, environment and marker files: 0644 (420).
const MODE_READABLE: i32 = 0o644;
/// The OSC's inline encoding for base64 (the other one is the empty string, plain text).
const ENCODING_B64: &str = "b64";
/// The OSC's inline encoding for plain text.
const ENCODING_PLAIN: &str = "";
/// What Gardener's `SerializeCommandLine` puts between the arguments of a command line: ` \`, newline, 4 spaces.
const COMMAND_LINE_SEPARATOR: &str = " \\\n    ";

/// What one worker pool's nodes get: the merged configs, the image with the binary, and the pool's labels.
#[derive(Debug, Clone)]
pub struct PoolPlan<'a> {
    /// Base configs merged with the Shoot's ([`crate::domain::configs::merge`]).
    pub merged: &'a MergedConfigs,
    /// The installation image carrying the binary at [`NODE_BINARY_PATH`] (`crate::domain::images::INSTALLATION`).
    pub installation_image: String,
    /// The worker pool's `labels` (put on its nodes); [`AGENT_GROUP_LABEL`] among them selects `group.<G>`.
    pub pool_labels: BTreeMap<String, String>,
}

impl PoolPlan<'_> {
    /// The pool's cri-resmgr config group ([`AGENT_GROUP_LABEL`]), if its labels name one.
    pub fn group(&self) -> Option<&str> {
        self.pool_labels.get(AGENT_GROUP_LABEL).map(String::as_str)
    }
}

/// The result of [`mutate`]: the OSC to return, and what could not be done (for logs and events).
#[derive(Debug, Clone, PartialEq)]
pub struct MutationOutcome {
    /// The mutated (or restored, or unchanged) OSC.
    pub osc: OperatingSystemConfig,
    /// Parts left untouched and why; empty when everything went as planned.
    pub warnings: Vec<String>,
}

/// The OSC with cri-resmgr on the pool's nodes (`plan` given) or without anything of ours (`None`: the pool is not
/// selected or the extension is disabled). Declarative and idempotent: see the module documentation.
pub fn mutate(osc: &OperatingSystemConfig, plan: Option<&PoolPlan>) -> MutationOutcome {
    let mut result = osc.clone();
    let mut warnings = Vec::new();
    if osc.spec.purpose != OscPurpose::Reconcile || osc.metadata.deletion_timestamp.is_some() {
        return MutationOutcome { osc: result, warnings };
    }
    let spec = &mut result.spec;
    remove_additions(spec);
    let kubelet_switched = switch_kubelet_unit(spec, plan.is_some(), &mut warnings);
    switch_kubelet_config(spec, plan.is_some(), &mut warnings);
    if let Some(plan) = plan {
        if plan.merged.extra_options.as_deref().is_some_and(|options| options.contains(char::is_control)) {
            warnings.push(format!(
                "{NODE_ENV_EXTRA_OPTIONS} contains control characters (newlines?); they were replaced by spaces in \
                 {NODE_ENV_FILE}"
            ));
        }
        if kubelet_switched && let Some(kubelet) = spec.unit_mut(KUBELET_UNIT_NAME) {
            kubelet.drop_ins.push(kubelet_drop_in());
        }
        spec.files.extend(node_files(plan));
        spec.units.push(cri_resmgr_unit(plan));
    }
    MutationOutcome { osc: result, warnings }
}

/// Removes our files, unit and kubelet drop-in (the kubelet endpoints are switched back separately).
fn remove_additions(spec: &mut OperatingSystemConfigSpec) {
    spec.files.retain(|file| !FILE_PATHS.contains(&file.path.as_str()));
    spec.units.retain(|unit| unit.name != UNIT_NAME);
    if let Some(kubelet) = spec.unit_mut(KUBELET_UNIT_NAME) {
        kubelet.drop_ins.retain(|drop_in| drop_in.name != KUBELET_DROP_IN_NAME);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What a selected pool's nodes get
// ---------------------------------------------------------------------------------------------------------------

/// The files a selected pool's OSC gets, in this order: binary, environment file, fallback config, force config
/// (only when configured), policy marker.
pub fn node_files(plan: &PoolPlan) -> Vec<File> {
    let merged = plan.merged;
    let binary = File {
        path: NODE_BINARY_PATH.to_owned(),
        permissions: Some(MODE_EXECUTABLE),
        content: FileContent {
            image_ref: Some(FileContentImageRef {
                image: plan.installation_image.clone(),
                file_path_in_image: NODE_BINARY_PATH.to_owned(),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut files = vec![
        binary,
        inline_file(NODE_ENV_FILE, &env_file(merged)),
        inline_file(NODE_FALLBACK_CONFIG_PATH, merged.node_fallback_config().text()),
    ];
    if let Some(force) = &merged.force {
        files.push(inline_file(NODE_FORCE_CONFIG_PATH, force.text()));
    }
    files.push(inline_file(NODE_POLICY_MARKER_PATH, &policy_marker(plan)));
    files
}

/// A 0644 file with `text`, base64-encoded inline.
fn inline_file(path: &str, text: &str) -> File {
    File {
        path: path.to_owned(),
        permissions: Some(MODE_READABLE),
        content: FileContent {
            inline: Some(FileContentInline { encoding: ENCODING_B64.to_owned(), data: BASE64.encode(text) }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The text of an inline file (decoding `b64`), e.g. for `render`; `None` for other contents or undecodable data.
pub fn inline_text(file: &File) -> Option<String> {
    file.content.inline.as_ref().and_then(|inline| decode_inline(inline).ok())
}

/// The environment file [`NODE_ENV_FILE`]: exactly three `KEY="value"` lines.
///
/// - `CONFIG_OPTIONS`: `--force-config` [`NODE_FORCE_CONFIG_PATH`] when `force` is set, else `--fallback-config`
///   [`NODE_FALLBACK_CONFIG_PATH`] — never both, cri-resmgr refuses that;
/// - `POLICY_OPTIONS=""`: startup policy switching stays enabled (the packaging's default; see the module docs);
/// - `EXTRA_OPTIONS`: the user's options.
///
/// Every value goes through [`env_file_value`]: validation already restricts `EXTRA_OPTIONS` to harmless
/// characters, but the file must not depend on that — no value can end its line or start a new variable.
pub fn env_file(merged: &MergedConfigs) -> String {
    let config_options = if merged.force.is_some() {
        format!("{CRI_RESMGR_FLAG_FORCE_CONFIG} {NODE_FORCE_CONFIG_PATH}")
    } else {
        format!("{CRI_RESMGR_FLAG_FALLBACK_CONFIG} {NODE_FALLBACK_CONFIG_PATH}")
    };
    let extra_options = merged.extra_options.as_deref().unwrap_or_default();
    format!(
        "{NODE_ENV_CONFIG_OPTIONS}={}\n{NODE_ENV_POLICY_OPTIONS}={}\n{NODE_ENV_EXTRA_OPTIONS}={}\n",
        env_file_value(&config_options),
        env_file_value(""),
        env_file_value(extra_options),
    )
}

/// `value` as a double-quoted value of a systemd `EnvironmentFile=` (and of a POSIX shell, which reads it alike):
/// `"`, `\`, `$` and backtick are backslash-escaped (inside double quotes systemd unescapes exactly these and
/// expands nothing), and control characters — newlines above all — become spaces, so the value stays on its line.
pub fn env_file_value(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' | '`' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.push(' '),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The policy marker [`NODE_POLICY_MARKER_PATH`]: which policy the pool's nodes should run, as
/// `policy: <name>` — from `force` when set (the agent is ignored then), else from the pool's `group.<G>` config,
/// else from the agent's default ([`MergedConfigs::agent_default_config`]: `default`, else `fallback`, else the
/// built-in config) — followed, without `force`, by one `node <N>: <name>` line per `node.<N>` config, since a
/// pool cannot tell which nodes are its own. Only policy names go in, so a change elsewhere in a config does not
/// reset the policy.
pub fn policy_marker(plan: &PoolPlan) -> String {
    let merged = plan.merged;
    let pool_config = match &merged.force {
        Some(force) => force,
        None => {
            plan.group().and_then(|group| merged.groups.get(group)).unwrap_or_else(|| merged.agent_default_config())
        }
    };
    let mut marker = format!("policy: {}\n", active_policy(pool_config));
    if merged.force.is_none() {
        for (node, config) in &merged.nodes {
            marker.push_str(&format!("node {node}: {}\n", active_policy(config)));
        }
    }
    marker
}

/// `policy.Active` of a configuration, parsed with it; cri-resmgr's default ([`CRI_RESMGR_DEFAULT_POLICY`]) when
/// it names none, since a configuration resets every module it leaves out to its defaults.
fn active_policy(config: &ConfigBody) -> &'static str {
    config.active_policy().map_or(CRI_RESMGR_DEFAULT_POLICY, Policy::as_str)
}

/// The unit [`UNIT_NAME`]: enabled, started, restarted by node-agent when any of [`node_files`] changes.
pub fn cri_resmgr_unit(plan: &PoolPlan) -> Unit {
    Unit {
        name: UNIT_NAME.to_owned(),
        command: Some(UnitCommand::Start),
        enable: Some(true),
        content: Some(unit_content()),
        drop_ins: Vec::new(),
        file_paths: node_files(plan).into_iter().map(|file| file.path).collect(),
        other: BTreeMap::new(),
    }
}

/// The content of [`UNIT_NAME`]: upstream's `cri-resource-manager.service` as the release tarball installs it, plus
/// - `After=`/`Requires=` containerd (cri-resmgr relays to it; upstream relies on cri-resmgr waiting for the
///   socket, but a containerd restart should restart the relay too);
/// - `RestartSec=5` (kubelet's own value) instead of systemd's 100 ms between restarts;
/// - the policy-switch step [`policy_switch_exec_start_pre`];
/// - `$EXTRA_OPTIONS` unbraced in `ExecStart=`, so systemd splits it into separate arguments;
/// - `LogRateLimitIntervalSec`/`LogRateLimitBurst` in `[Service]`: they are exec settings, and systemd ignores them
///   (with a warning) in upstream's `[Unit]`.
pub fn unit_content() -> String {
    let exec_start_pre = policy_switch_exec_start_pre();
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
ExecStart={NODE_BINARY_PATH} ${NODE_ENV_CONFIG_OPTIONS} ${NODE_ENV_POLICY_OPTIONS} ${NODE_ENV_EXTRA_OPTIONS}
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
fn policy_switch_script(marker: &str, applied: &str, state_dir: &str, binary: &str) -> String {
    format!(
        "[ \"$(cat {marker})\" = \"$(cat {applied} 2>/dev/null)\" ] || {{ echo \"policy marker {marker} changed: \
         {binary} {CRI_RESMGR_FLAG_RESET_POLICY}\" >&2; {binary} {CRI_RESMGR_FLAG_RESET_POLICY} && mkdir -p \
         {state_dir} && cp {marker} {applied}; }}"
    )
}

/// The unit's `ExecStartPre=` value: `-`[`NODE_SHELL`]` -c '<script>'`, the script written for systemd.
///
/// - `-`: a failure is logged but does not fail the unit (cri-resmgr must come up; the next start retries).
/// - The script is one single-quoted word, so systemd passes it as one argument. Inside it systemd still expands
///   `$`-variables and `%`-specifiers, so `$` is written `$$` and `%` `%%`; the script has no `'` or `\`
///   (a test checks), which would need escaping too.
pub fn policy_switch_exec_start_pre() -> String {
    let script =
        policy_switch_script(NODE_POLICY_MARKER_PATH, NODE_POLICY_APPLIED_PATH, NODE_STATE_DIR, NODE_BINARY_PATH);
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

// ---------------------------------------------------------------------------------------------------------------
// kubelet: the runtime endpoint in the unit's ExecStart and in the config file
// ---------------------------------------------------------------------------------------------------------------

/// The value of `kubelet.service`'s `[Service]` `ExecStart=` as go-systemd reads it (continuations included), for
/// `render`; `None` when the OSC has no such unit or option.
pub fn kubelet_exec_start(osc: &OperatingSystemConfig) -> Option<String> {
    let content = osc.spec.unit(KUBELET_UNIT_NAME)?.content.as_deref()?;
    service_exec_start(content).ok().map(|range| content[range].to_owned())
}

/// Gardener's `DeserializeCommandLine`: the arguments of an `ExecStart=` value, split on `[\\\s]+`.
pub fn command_line_arguments(value: &str) -> Vec<&str> {
    command_line_tokens(value).into_iter().map(|range| &value[range]).collect()
}

/// The endpoint kubelet should use, and the one it may be switched from.
fn endpoints(install: bool) -> (&'static str, &'static str) {
    if install {
        (RELAY_SOCKET_ENDPOINT, CONTAINERD_SOCKET_ENDPOINT)
    } else {
        (CONTAINERD_SOCKET_ENDPOINT, RELAY_SOCKET_ENDPOINT)
    }
}

/// Points `kubelet.service`'s `--container-runtime-endpoint=` at cri-resmgr (`install`) or back at containerd.
/// True when kubelet's command line now names cri-resmgr's socket.
fn switch_kubelet_unit(spec: &mut OperatingSystemConfigSpec, install: bool, warnings: &mut Vec<String>) -> bool {
    let problem = match spec.unit_mut(KUBELET_UNIT_NAME) {
        None => format!("the OSC has no {KUBELET_UNIT_NAME} unit"),
        Some(Unit { content: None, .. }) => format!("{KUBELET_UNIT_NAME} has no content"),
        Some(Unit { content: Some(content), .. }) => match switch_exec_start_endpoint(content, install) {
            Ok(switched) => {
                *content = switched;
                return install;
            }
            Err(problem) => format!("{KUBELET_UNIT_NAME}: {problem}"),
        },
    };
    if install {
        warnings.push(format!("{problem}; kubelet's runtime endpoint was left untouched, kubelet bypasses cri-resmgr"));
    }
    false
}

/// `content` with every `--container-runtime-endpoint=` of the `[Service]` `ExecStart=` switched (in place, see the
/// module docs), or ours appended when there is none and `install`.
fn switch_exec_start_endpoint(content: &str, install: bool) -> Result<String, String> {
    let (desired, replaceable) = endpoints(install);
    let value_range = service_exec_start(content)?;
    let value = &content[value_range.clone()];
    let tokens = command_line_tokens(value);
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut found = false;
    for token in tokens.iter().skip(1) {
        let text = &value[token.clone()];
        if text == KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT.trim_end_matches('=') {
            return Err(format!("ExecStart= gives {text} a separate value argument, expected {text}=<endpoint>"));
        }
        let Some(current) = text.strip_prefix(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT) else { continue };
        found = true;
        if current == replaceable {
            edits.push((token.start + KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT.len()..token.end, desired.to_owned()));
        } else if current != desired {
            return Err(format!(
                "ExecStart= sets {text}, which is neither containerd's ({CONTAINERD_SOCKET_ENDPOINT}) nor \
                 cri-resmgr's ({RELAY_SOCKET_ENDPOINT}) endpoint"
            ));
        }
    }
    if tokens.is_empty() {
        return Err("ExecStart= is empty".to_owned());
    }
    if !found && install {
        edits.push((
            value.len()..value.len(),
            format!("{COMMAND_LINE_SEPARATOR}{KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT}{desired}"),
        ));
    }
    let mut new_value = value.to_owned();
    for (range, replacement) in edits.into_iter().rev() {
        new_value.replace_range(range, &replacement);
    }
    Ok(format!("{}{new_value}{}", &content[..value_range.start], &content[value_range.end..]))
}

/// Byte range, in `content`, of the value of the one `ExecStart=` of the `[Service]` section(s), read the way
/// go-systemd's deserializer does: `[Section]` headers, `#`/`;` comment lines, `Key=Value` options whose value
/// continues over the next line while a line ends in `\` (the continuations stay part of the value), leading
/// blanks of the value skipped.
fn service_exec_start(content: &str) -> Result<Range<usize>, String> {
    let mut lines = Vec::new();
    let mut start = 0;
    for line in content.split('\n') {
        lines.push((start, line));
        start += line.len() + 1;
    }
    let mut section: Option<&str> = None;
    let mut has_service = false;
    let mut found = Vec::new();
    let mut index = 0;
    while let Some(&(line_start, line)) = lines.get(index) {
        index += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header.strip_suffix(']').ok_or_else(|| format!("malformed section header {trimmed:?}"))?;
            has_service |= name == "Service";
            section = Some(name);
            continue;
        }
        let mut end = line_start + line.len();
        let mut last = line;
        while last.ends_with('\\') {
            let Some(&(next_start, next)) = lines.get(index) else { break };
            index += 1;
            end = next_start + next.len();
            last = next;
        }
        let Some(equals) = line.find('=') else { continue };
        if section == Some("Service") && line[..equals].trim() == "ExecStart" {
            let value_start = line_start + equals + 1;
            let blanks =
                content[value_start..end].len() - content[value_start..end].trim_start_matches([' ', '\t']).len();
            found.push(value_start + blanks..end);
        }
    }
    if !has_service {
        return Err("no [Service] section".to_owned());
    }
    match found.len() {
        0 => Err("no ExecStart= in [Service]".to_owned()),
        1 => found.pop().ok_or_else(|| "no ExecStart= in [Service]".to_owned()),
        n => Err(format!("{n} ExecStart= options in [Service], expected one")),
    }
}

/// Byte ranges of the arguments of a command line, separated by runs of `\` and Go's `\s` (`[\t\n\f\r ]`).
fn command_line_tokens(value: &str) -> Vec<Range<usize>> {
    let is_separator = |b: u8| matches!(b, b'\\' | b' ' | b'\t' | b'\n' | b'\x0c' | b'\r');
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, b) in value.bytes().enumerate() {
        match (is_separator(b), start) {
            (true, Some(s)) => {
                tokens.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push(s..value.len());
    }
    tokens
}

/// Switches `containerRuntimeEndpoint` in [`KUBELET_CONFIG_PATH`], when the OSC has that file and it sets it.
fn switch_kubelet_config(spec: &mut OperatingSystemConfigSpec, install: bool, warnings: &mut Vec<String>) {
    let Some(file) = spec.file_mut(KUBELET_CONFIG_PATH) else { return };
    match switch_kubelet_config_content(&file.content, install) {
        Ok(Some(inline)) => file.content.inline = Some(inline),
        Ok(None) => {}
        Err(problem) if install => {
            warnings.push(format!("file {KUBELET_CONFIG_PATH}: {problem}; left untouched"));
        }
        Err(_) => {}
    }
}

/// The new inline content of the kubelet config file, or `None` when nothing is to change.
fn switch_kubelet_config_content(content: &FileContent, install: bool) -> Result<Option<FileContentInline>, String> {
    let inline = content.inline.as_ref().ok_or("the content is not inline")?;
    let text = decode_inline(inline)?;
    let Some(switched) = switch_config_endpoint(&text, install)? else { return Ok(None) };
    let data = if inline.encoding == ENCODING_B64 { BASE64.encode(&switched) } else { switched };
    Ok(Some(FileContentInline { encoding: inline.encoding.clone(), data }))
}

/// The text of an inline file content.
fn decode_inline(inline: &FileContentInline) -> Result<String, String> {
    match inline.encoding.as_str() {
        ENCODING_PLAIN => Ok(inline.data.clone()),
        ENCODING_B64 => {
            // Go's decoder, which node-agent uses, skips line breaks; so do we.
            let data: String = inline.data.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
            let bytes = BASE64.decode(data).map_err(|e| format!("invalid base64: {e}"))?;
            String::from_utf8(bytes).map_err(|_| "the content is not UTF-8 text".to_owned())
        }
        other => Err(format!("unknown encoding {other:?}")),
    }
}

/// A KubeletConfiguration text with `containerRuntimeEndpoint` switched, `None` when it does not set the field or
/// already has the desired value. The value's text is replaced where it occurs, taking the first occurrence after
/// which the YAML reads exactly as before except for that field, so nothing else of the file changes.
fn switch_config_endpoint(text: &str, install: bool) -> Result<Option<String>, String> {
    let (desired, replaceable) = endpoints(install);
    let field = KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT;
    let parsed: Value = crate::yaml::from_str(text).map_err(|e| format!("not a KubeletConfiguration: {e}"))?;
    let Value::Object(object) = &parsed else { return Err("not a KubeletConfiguration: not a mapping".to_owned()) };
    let current = match object.get(field) {
        None => return Ok(None),
        Some(Value::String(current)) => current.as_str(),
        Some(other) => return Err(format!("{field} is not a string: {other}")),
    };
    if current == desired {
        return Ok(None);
    }
    if current != replaceable {
        return Err(format!(
            "{field} is {current:?}, neither containerd's ({CONTAINERD_SOCKET_ENDPOINT}) nor cri-resmgr's \
             ({RELAY_SOCKET_ENDPOINT}) endpoint"
        ));
    }
    let mut expected = object.clone();
    expected.insert(field.to_owned(), Value::String(desired.to_owned()));
    let expected = Value::Object(expected);
    for (at, _) in text.match_indices(current) {
        let candidate = format!("{}{desired}{}", &text[..at], &text[at + current.len()..]);
        if crate::yaml::from_str::<Value>(&candidate).is_ok_and(|reread| reread == expected) {
            return Ok(Some(candidate));
        }
    }
    Err(format!("cannot locate the text of {field} to replace"))
}

// ---------------------------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------------------------

/// What [`mutate`] changed, one line per file or unit (`added`, `changed`, `removed`), for logs and `render`.
pub fn changes(before: &OperatingSystemConfig, after: &OperatingSystemConfig) -> Vec<String> {
    fn diff<T: PartialEq>(kind: &str, before: &[T], after: &[T], key: impl Fn(&T) -> &str) -> Vec<String> {
        let mut lines = Vec::new();
        for item in after {
            match before.iter().find(|old| key(old) == key(item)) {
                None => lines.push(format!("{kind} {}: added", key(item))),
                Some(old) if old != item => lines.push(format!("{kind} {}: changed", key(item))),
                Some(_) => {}
            }
        }
        for item in before {
            if !after.iter().any(|new| key(new) == key(item)) {
                lines.push(format!("{kind} {}: removed", key(item)));
            }
        }
        lines
    }
    let mut lines = diff("file", &before.spec.files, &after.spec.files, |file| file.path.as_str());
    lines.extend(diff("unit", &before.spec.units, &after.spec.units, |unit| unit.name.as_str()));
    lines
}

/// Everything needed to compute the mutation of the OSCs in one shoot namespace.
pub struct ShootContext {
    /// The Shoot, from the namespace's Cluster.
    pub shoot: crate::apis::core::Shoot,
    /// `None` when the extension is disabled (no Extension, or the Extension is being deleted).
    pub desired: Option<crate::domain::desired::Desired>,
}

/// The OSC as the extension wants it: reconcile OSCs of selected pools with cri-resmgr, all others without
/// anything of ours. Provision OSCs and OSCs being deleted are returned unchanged. The one function the webhook
/// and the reconciler's propagation use.
pub fn desired_osc(
    osc: &OperatingSystemConfig,
    context: &ShootContext,
    images: &crate::domain::images::ImageVector,
) -> Result<MutationOutcome, crate::domain::desired::DesiredError> {
    if osc.spec.purpose != OscPurpose::Reconcile || osc.metadata.deletion_timestamp.is_some() {
        return Ok(MutationOutcome { osc: osc.clone(), warnings: Vec::new() });
    }
    let pool = osc.metadata.labels.as_ref().and_then(|l| l.get(crate::constants::LABEL_WORKER_POOL));
    let plan = match (&context.desired, pool) {
        (Some(desired), Some(pool)) => desired.pool_plan(&context.shoot, pool, images)?,
        _ => None,
    };
    Ok(mutate(osc, plan.as_ref()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;
    use crate::constants::{NODE_CONFIG_DIR, NODE_RELAY_SOCKET, NODE_SOCKET_DIR};

    const RECONCILE_OSC: &str = include_str!("../../test/fixtures/osc/reconcile.yaml");
    const EXAMPLE_OSC: &str = include_str!("../../examples/30-osc-cpu-worker.yaml");
    const IMAGE: &str = "registry.example.com/cri-resmgr-installation:v0.9.2";

    const TOPOLOGY: &str = "policy:\n  Active: topology-aware\n";
    const BALLOONS: &str = "policy:\n  Active: balloons\n";
    const STATIC: &str = "policy:\n  Active: static\n";
    const PODPOOLS: &str = "policy:\n  Active: podpools\n";
    const NO_POLICY: &str = "logger:\n  Debug: resource-manager\n";

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
ExecStart=/opt/intel/bin/cri-resmgr $CONFIG_OPTIONS $POLICY_OPTIONS $EXTRA_OPTIONS
Restart=always
RestartSec=5
LogRateLimitIntervalSec=5
LogRateLimitBurst=100000

[Install]
WantedBy=multi-user.target
"#;

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
        assert_eq!(
            kubelet_content(&mutated),
            kubelet_content(&original).replace(ORIGINAL_EXEC_START, MUTATED_EXEC_START)
        );
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
        assert!(restored.ends_with(
            "$KUBELET_EXTRA_ARGS \\\n    --container-runtime-endpoint=unix:///run/containerd/containerd.sock"
        ));
    }

    #[test]
    fn env_file_with_fallback_or_force() {
        let fallback = merged(&[("fallback", TOPOLOGY)]);
        assert_eq!(
            env_file(&fallback),
            "CONFIG_OPTIONS=\"--fallback-config /etc/cri-resmgr/fallback.cfg\"\nPOLICY_OPTIONS=\"\"\nEXTRA_OPTIONS=\"\"\n"
        );
        let force = merged(&[
            ("fallback", TOPOLOGY),
            ("force", STATIC),
            ("EXTRA_OPTIONS", "--metrics-interval=10s --disable-ui"),
        ]);
        assert_eq!(
            env_file(&force),
            "CONFIG_OPTIONS=\"--force-config /etc/cri-resmgr/force.cfg\"\nPOLICY_OPTIONS=\"\"\nEXTRA_OPTIONS=\"--metrics-interval=10s --disable-ui\"\n"
        );

        let with_fallback = mutate(&reconcile_osc(), Some(&plan(&fallback, None))).osc;
        assert_eq!(text(&with_fallback, NODE_ENV_FILE), Some(env_file(&fallback)));
        assert_eq!(text(&with_fallback, NODE_FALLBACK_CONFIG_PATH).as_deref(), Some(TOPOLOGY));
        assert_eq!(text(&with_fallback, NODE_FORCE_CONFIG_PATH), None);
        let unit = with_fallback.spec.unit(UNIT_NAME).expect("unit");
        assert_eq!(
            unit.file_paths,
            [NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_POLICY_MARKER_PATH]
        );

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
        let configs = MergedConfigs { extra_options: Some(hostile.to_owned()), ..Default::default() };
        let env = env_file(&configs);
        let lines: Vec<&str> = env.lines().collect();
        assert_eq!(lines.len(), 3, "{env}");
        for (line, key) in lines.iter().zip([NODE_ENV_CONFIG_OPTIONS, NODE_ENV_POLICY_OPTIONS, NODE_ENV_EXTRA_OPTIONS])
        {
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
            .args([
                "-c",
                ". \"$1\"; printf '%s|%s|%s' \"$EXTRA_OPTIONS\" \"${INJECTED-unset}\" \"$CONFIG_OPTIONS\"",
                "sh",
            ])
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
    fn deselected_pool_gets_back_exactly_the_original() {
        let original = reconcile_osc();
        let configs = merged(&[
            ("fallback", TOPOLOGY),
            ("force", STATIC),
            ("node.a", BALLOONS),
            ("EXTRA_OPTIONS", "--disable-ui"),
        ]);
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
            assert!(
                outcome.warnings[0].starts_with("file /var/lib/kubelet/config/kubelet: "),
                "{:?}",
                outcome.warnings
            );
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
    }

    #[test]
    fn policy_switch_step_is_one_systemd_word_with_the_plain_script_inside() {
        let script =
            policy_switch_script(NODE_POLICY_MARKER_PATH, NODE_POLICY_APPLIED_PATH, NODE_STATE_DIR, NODE_BINARY_PATH);
        assert!(!script.contains(['\'', '\\', '%']) && !script.contains(char::is_control), "{script}");
        let exec_start_pre = policy_switch_exec_start_pre();
        let inner = exec_start_pre.strip_prefix("-/bin/sh -c '").and_then(|s| s.strip_suffix('\'')).expect("quoted");
        assert_eq!(inner.replace("$$", "$"), script);
        assert!(!inner.replace("$$", "").contains('$'), "every $ is escaped for systemd");
    }

    /// Runs the policy-switch script with a stub cri-resmgr that logs its arguments.
    #[test]
    fn policy_switch_script_resets_only_when_the_marker_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let (marker, state, log, binary) =
            (root.join("policy"), root.join("state"), root.join("calls"), root.join("cri-resmgr"));
        let applied = state.join("policy.applied");
        let stub = |exit: u8| {
            std::fs::write(&binary, format!("#!/bin/sh\necho \"$@\" >> {}\nexit {exit}\n", log.display()))
                .expect("stub");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            }
        };
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
        let script = policy_switch_script(&path(&marker), &path(&applied), &path(&state), &path(&binary));
        let run = || {
            let output = Command::new("sh").args(["-c", &script]).output().expect("sh");
            (output.status.success(), std::fs::read_to_string(&log).unwrap_or_default())
        };

        stub(0);
        std::fs::write(&marker, "policy: balloons\n").expect("marker");
        assert_eq!(run(), (true, "--reset-policy\n".to_owned()), "first start: no copy yet");
        assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: balloons\n");
        assert_eq!(run(), (true, "--reset-policy\n".to_owned()), "unchanged marker: no reset");

        std::fs::write(&marker, "policy: static\n").expect("marker");
        stub(1);
        let (ok, calls) = run();
        assert!(!ok, "a failed reset is reported (and ignored by systemd through the '-' prefix)");
        assert_eq!(calls, "--reset-policy\n--reset-policy\n");
        assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: balloons\n", "no copy after a failure");

        stub(0);
        assert_eq!(run(), (true, "--reset-policy\n--reset-policy\n--reset-policy\n".to_owned()), "retried");
        assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: static\n");
        assert_eq!(run().1.lines().count(), 3);
    }

    // -----------------------------------------------------------------------------------------------------------
    // systemd-analyze verify
    // -----------------------------------------------------------------------------------------------------------

    const SYSTEMD_ANALYZE: &str = "systemd-analyze";

    /// `systemd-analyze verify --root=<root> <units>`: `Err` with systemd's complaints when it exits non-zero or
    /// prints anything to stderr (systemd reports many unit file mistakes — unknown keys, bad values, unbalanced quotes — as
    /// warnings on stderr with exit code 0; we treat every one as an error). With `debug`, systemd's debug log and
    /// its dump of the loaded units, for checks of how it read them; only the exit code counts then.
    fn verify(root: &Path, units: &[&str], debug: bool) -> Result<String, String> {
        let mut command = Command::new(SYSTEMD_ANALYZE);
        command.arg("verify").arg(format!("--root={}", root.display())).arg("--man=no").args(units);
        if debug {
            command.env("SYSTEMD_LOG_LEVEL", "debug");
        }
        let output = match command.output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "{SYSTEMD_ANALYZE} not found: these tests check the generated units with it; install Debian's \
                 `systemd` package (hacks/install-control-plane.sh does)"
            ),
            Err(e) => panic!("cannot run {SYSTEMD_ANALYZE}: {e}"),
        };
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() && debug {
            // The debug log goes to stderr, the dump of the units to stdout.
            Ok(format!("{stderr}{}", String::from_utf8_lossy(&output.stdout)))
        } else if output.status.success() && stderr.trim().is_empty() {
            Ok(stderr)
        } else {
            Err(format!("{}\n{stderr}", output.status))
        }
    }

    fn write(root: &Path, path: &str, content: &str, mode: u32) {
        let path = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
    }

    /// Every unit we generate or change passes `systemd-analyze verify`: cri-resource-manager.service, the mutated
    /// kubelet.service (reconstructed and Gardener-serialised) and our drop-in. `--root` points systemd at a tree
    /// with the units under `/etc/systemd/system` (where node-agent writes them), stub executables at every path
    /// an `Exec*=` names (verify checks they exist), and stubs of what every Gardener node has: containerd's unit
    /// and the targets default dependencies pull in.
    #[test]
    fn generated_units_pass_systemd_analyze_verify() {
        let configs = merged(&[("fallback", TOPOLOGY), ("EXTRA_OPTIONS", "--disable-ui")]);
        for kubelet_original in [None, Some(GARDENER_SERIALIZED_KUBELET)] {
            let original = kubelet_original.map_or_else(reconcile_osc, with_kubelet_content);
            let osc = mutate(&original, Some(&plan(&configs, None))).osc;
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path();
            let units = "/etc/systemd/system";
            let ours = osc.spec.unit(UNIT_NAME).and_then(|u| u.content.clone()).expect("our unit");
            write(root, &format!("{units}/{UNIT_NAME}"), &ours, 0o644);
            let kubelet_unit = kubelet(&osc);
            write(
                root,
                &format!("{units}/{KUBELET_UNIT_NAME}"),
                kubelet_unit.content.as_deref().expect("content"),
                0o644,
            );
            for drop_in in &kubelet_unit.drop_ins {
                write(root, &format!("{units}/{KUBELET_UNIT_NAME}.d/{}", drop_in.name), &drop_in.content, 0o644);
            }
            let stub_exec = "#!/bin/sh\nexit 0\n";
            for executable in [NODE_BINARY_PATH, "/opt/bin/kubelet", NODE_SHELL, "/opt/stub"] {
                write(root, executable, stub_exec, 0o755);
            }
            write(
                root,
                &format!("{units}/{CONTAINERD_UNIT_NAME}"),
                "[Unit]\nDescription=stub\n[Service]\nExecStart=/opt/stub\n",
                0o644,
            );
            for target in ["sysinit.target", "basic.target", "shutdown.target", "multi-user.target"] {
                write(root, &format!("{units}/{target}"), "[Unit]\nDescription=stub\n", 0o644);
            }

            if let Err(e) = verify(root, &[UNIT_NAME, KUBELET_UNIT_NAME], false) {
                panic!("systemd-analyze verify rejects the generated units:\n{e}\n--- {UNIT_NAME}\n{ours}");
            }

            // systemd read the drop-in, and parsed the policy-switch step into `/bin/sh -c <one argument>`.
            let dump = verify(root, &[KUBELET_UNIT_NAME], true).expect("verify kubelet (debug)");
            assert!(dump.contains("Wants: cri-resource-manager.service"), "drop-in not applied:\n{dump}");
            assert!(dump.contains("After: cri-resource-manager.service"), "drop-in not applied:\n{dump}");
            let dump = verify(root, &[UNIT_NAME], true).expect("verify ours (debug)");
            let pre = dump
                .lines()
                .skip_while(|line| !line.contains("-> ExecStartPre:"))
                .find_map(|line| line.trim().strip_prefix("Command Line: /bin/sh -c "))
                .expect("ExecStartPre in the dump");
            let argument = pre.strip_prefix('"').and_then(|p| p.strip_suffix('"')).expect("one quoted argument");
            let unescaped = argument.replace("\\\"", "\"").replace("\\$", "$");
            let script = policy_switch_exec_start_pre();
            assert_eq!(format!("-/bin/sh -c '{unescaped}'"), script);

            // The check itself catches mistakes: a broken copy of our unit is rejected.
            let broken = ours.replace("Restart=always", "Restart=alwayz");
            write(root, &format!("{units}/broken.service"), &broken, 0o644);
            let error = verify(root, &["broken.service"], false).expect_err("a broken unit must fail verification");
            assert!(error.contains("alwayz"), "{error}");
            let unbalanced = ours.replace("-c '", "-c ''");
            write(root, &format!("{units}/unbalanced.service"), &unbalanced, 0o644);
            let error = verify(root, &["unbalanced.service"], false).expect_err("unbalanced quoting must fail");
            assert!(error.contains("Unbalanced quoting"), "{error}");
        }
    }
}
