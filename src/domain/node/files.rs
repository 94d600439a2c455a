//! The files a selected pool's nodes get: cri-resmgr's binary (by `imageRef` from the installation image), its
//! environment file, the fallback and force configuration files and the policy marker — and the OSC's inline
//! encoding they travel in. Everything that turns the merged configs into node files is here, in one place, so
//! that the way a config reaches a node is read (and changed) in one file.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::PoolPlan;
use crate::apis::extensions::{File, FileContent, FileContentImageRef, FileContentInline};
use crate::constants::{
    CRI_RESMGR_DEFAULT_POLICY, CRI_RESMGR_FLAG_FALLBACK_CONFIG, CRI_RESMGR_FLAG_FORCE_CONFIG, NODE_BINARY_PATH,
    NODE_ENV_CONFIG_OPTIONS, NODE_ENV_EXTRA_OPTIONS, NODE_ENV_FILE, NODE_ENV_POLICY_OPTIONS, NODE_FALLBACK_CONFIG_PATH,
    NODE_FORCE_CONFIG_PATH, NODE_POLICY_MARKER_PATH,
};
use crate::domain::configs::MergedConfigs;
use crate::domain::validation::{ConfigBody, Policy};

/// File mode of the binary: 0755 (493 in the OSC's decimal JSON).
const MODE_EXECUTABLE: i32 = 0o755;
/// File mode of the configuration, environment and marker files: 0644 (420).
const MODE_READABLE: i32 = 0o644;
/// The OSC's inline encoding for base64 (the other one is the empty string, plain text).
const ENCODING_B64: &str = "b64";
/// The OSC's inline encoding for plain text.
const ENCODING_PLAIN: &str = "";

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
    if let Some(force) = &merged.configs.force {
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
        content: FileContent { inline: Some(encode_inline(ENCODING_B64, text)), ..Default::default() },
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
/// - `POLICY_OPTIONS=""`: startup policy switching stays enabled (the packaging's default; see the `unit` module docs);
/// - `EXTRA_OPTIONS`: the user's options.
///
/// Every value goes through [`env_file_value`]: validation already restricts `EXTRA_OPTIONS` to harmless
/// characters, but the file must not depend on that — no value can end its line or start a new variable.
pub fn env_file(merged: &MergedConfigs) -> String {
    let config_options = if merged.configs.force.is_some() {
        format!("{CRI_RESMGR_FLAG_FORCE_CONFIG} {NODE_FORCE_CONFIG_PATH}")
    } else {
        format!("{CRI_RESMGR_FLAG_FALLBACK_CONFIG} {NODE_FALLBACK_CONFIG_PATH}")
    };
    let extra_options = merged.configs.extra_options.as_deref().unwrap_or_default();
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
    let pool_config = match &merged.configs.force {
        Some(force) => force,
        None => plan
            .group()
            .and_then(|group| merged.configs.groups.get(group))
            .unwrap_or_else(|| merged.agent_default_config()),
    };
    let mut marker = format!("policy: {}\n", active_policy(pool_config));
    if merged.configs.force.is_none() {
        for (node, config) in &merged.configs.nodes {
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

/// `text` as inline file content in `encoding`: base64 for `b64`, as is for plain text (the other encoding
/// [`decode_inline`] accepts).
pub(super) fn encode_inline(encoding: &str, text: &str) -> FileContentInline {
    let data = if encoding == ENCODING_B64 { BASE64.encode(text) } else { text.to_owned() };
    FileContentInline { encoding: encoding.to_owned(), data }
}

/// The text of an inline file content.
pub(super) fn decode_inline(inline: &FileContentInline) -> Result<String, String> {
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
