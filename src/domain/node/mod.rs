//! The node side: what the OperatingSystemConfig webhook adds to a worker pool's `purpose: reconcile` OSC so that
//! gardener-node-agent installs, configures and starts cri-resmgr and points kubelet at it — and how it is taken
//! away again. Pure functions; the webhook handler decides which pool gets a [`PoolPlan`] and calls [`mutate`].
//!
//! This module holds the plan, [`mutate`] (and so the restore), the summary of changes and the one entry point
//! for adapters ([`desired_osc`]); the pieces live by concern in private submodules, re-exported here:
//! - `files`: the node files — the binary by `imageRef`, the environment file, the fallback/force config files and
//!   the policy marker; everything made from the merged configs is made there;
//! - `unit`: cri-resmgr's systemd unit with its policy-switch step, and kubelet's ordering drop-in; its module
//!   documentation explains policy switching;
//! - `kubelet`: kubelet's runtime endpoint, in `kubelet.service`'s `ExecStart=` and in its config file;
//! - `systemd`: reading a unit's `ExecStart=` and splitting a command line the way Gardener's libraries do.
//!
//! # What a selected pool's OSC gets
//! - file [`NODE_BINARY_PATH`] (0755) from the installation image (`content.imageRef`, same path in the image);
//! - file [`NODE_FALLBACK_CONFIG_PATH`] (0644): [`MergedConfigs::node_fallback_config`]; file
//!   [`NODE_FORCE_CONFIG_PATH`] (0644) only when `force` is configured;
//! - file [`NODE_ENV_FILE`] (0644, see [`env_file`]): `CONFIG_OPTIONS` (`--force-config` when `force` is set, else
//!   `--fallback-config`; cri-resmgr refuses both together), `POLICY_OPTIONS=""` (startup policy switching stays
//!   enabled), `EXTRA_OPTIONS`;
//! - file [`NODE_POLICY_MARKER_PATH`] (0644, see [`policy_marker`]) — the policy-switch trigger (see `unit`);
//! - unit [`UNIT_NAME`] (see [`unit_content`]): upstream's unit plus containerd/kubelet ordering, `RestartSec=5`,
//!   the policy-switch `ExecStartPre=`, `--runtime-socket`/`--relay-socket` and `$EXTRA_OPTIONS` in `ExecStart=`,
//!   the `ExecStartPost=` that waits for the relay socket (so kubelet starts when it is there), the log rate-limit
//!   keys moved to `[Service]` where systemd reads them; enabled, started, with every file above in `filePaths`
//!   so that node-agent restarts cri-resmgr whenever one of them changes;
//! - kubelet: `--container-runtime-endpoint=`[`RELAY_SOCKET_ENDPOINT`](crate::constants::RELAY_SOCKET_ENDPOINT)
//!   in `kubelet.service`'s `ExecStart=`, `containerRuntimeEndpoint` likewise in
//!   [`KUBELET_CONFIG_PATH`](crate::constants::KUBELET_CONFIG_PATH) when that file sets it (see `kubelet`), and the
//!   drop-in [`KUBELET_DROP_IN_NAME`] (`After=`/`Wants=` cri-resmgr) so kubelet starts after its runtime proxy.
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
//! Malformed inputs never panic; the part that cannot be handled is left as it is and explained in
//! [`MutationOutcome::warnings`] (only when a plan is given — restoring an OSC we cannot read has nothing to
//! restore): a missing `kubelet.service`, a kubelet unit without content, without `[Service]`, without or with more
//! than one `ExecStart=`, a foreign runtime endpoint (then kubelet keeps talking to containerd and gets no drop-in);
//! a kubelet config file that is not inline, not decodable, not YAML, or whose endpoint text cannot be located.
//! cri-resmgr's own files and unit are added regardless: an unused cri-resmgr is harmless, and the warning says
//! why kubelet does not use it.

mod files;
mod kubelet;
mod systemd;
#[cfg(test)]
mod tests;
mod unit;

use std::collections::BTreeMap;

pub use files::{env_file, env_file_value, inline_text, node_files, policy_marker};
pub use kubelet::kubelet_exec_start;
pub use systemd::{COMMAND_LINE_SEPARATOR, command_line_arguments};
pub use unit::{
    cri_resmgr_unit, kubelet_drop_in, policy_switch_exec_start_pre, socket_wait_exec_start_post, unit_content,
};

use crate::apis::extensions::{OperatingSystemConfig, OperatingSystemConfigSpec, OscPurpose};
use crate::constants::{
    AGENT_GROUP_LABEL, KUBELET_DROP_IN_NAME, KUBELET_UNIT_NAME, NODE_BINARY_PATH, NODE_ENV_EXTRA_OPTIONS,
    NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH, NODE_POLICY_MARKER_PATH, UNIT_NAME,
};
use crate::domain::configs::MergedConfigs;
use kubelet::{switch_kubelet_config, switch_kubelet_unit};

/// Every file path the extension writes into an OSC. [`mutate`] removes files at these paths before adding its
/// own, so they belong to the extension on selected and deselected pools alike.
pub const FILE_PATHS: &[&str] =
    &[NODE_BINARY_PATH, NODE_ENV_FILE, NODE_FALLBACK_CONFIG_PATH, NODE_FORCE_CONFIG_PATH, NODE_POLICY_MARKER_PATH];

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

/// Whether the extension touches `osc` at all: only `purpose: reconcile` OSCs that are not being deleted, as
/// Gardener's generic mutator does. A provision OSC bootstraps the machine before node-agent runs and must stay as
/// gardenlet wrote it; an OSC being deleted is on its way out.
pub fn should_mutate(osc: &OperatingSystemConfig) -> bool {
    osc.spec.purpose == OscPurpose::Reconcile && osc.metadata.deletion_timestamp.is_none()
}

/// The OSC with cri-resmgr on the pool's nodes (`plan` given) or without anything of ours (`None`: the pool is not
/// selected or the extension is disabled). Declarative and idempotent: see the module documentation.
pub fn mutate(osc: &OperatingSystemConfig, plan: Option<&PoolPlan>) -> MutationOutcome {
    let mut result = osc.clone();
    let mut warnings = Vec::new();
    if !should_mutate(osc) {
        return MutationOutcome { osc: result, warnings };
    }
    let spec = &mut result.spec;
    remove_additions(spec);
    let kubelet_switched = switch_kubelet_unit(spec, plan.is_some(), &mut warnings);
    switch_kubelet_config(spec, plan.is_some(), &mut warnings);
    if let Some(plan) = plan {
        if plan.merged.configs.extra_options.as_deref().is_some_and(|options| options.contains(char::is_control)) {
            warnings.push(format!(
                "{NODE_ENV_EXTRA_OPTIONS} contains control characters (newlines?); they were replaced by spaces in \
                 {NODE_ENV_FILE}"
            ));
        }
        if kubelet_switched && let Some(kubelet) = spec.unit_mut(KUBELET_UNIT_NAME) {
            kubelet.drop_ins.push(kubelet_drop_in());
        }
        // The unit watches exactly the files added here; they are computed once (the policy marker parses configs).
        let files = node_files(plan);
        spec.units.push(cri_resmgr_unit(&files));
        spec.files.extend(files);
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
