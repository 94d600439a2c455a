//! `EXTRA_OPTIONS`: one line of cri-resmgr command-line options that ends up in an environment file and a systemd
//! `ExecStart=`, so only harmless characters and `--flag[=value]` tokens, and none of the flags the extension owns.

use super::field::{FieldError, FieldPath, quote};

/// Largest `EXTRA_OPTIONS` line, in bytes.
pub const MAX_EXTRA_OPTIONS_BYTES: usize = 4096;

/// Why one-shot flags (`--reset-policy`, `--version`, …) are forbidden in `EXTRA_OPTIONS`.
const EXITS_INSTEAD_OF_SERVING: &str =
    "it makes cri-resmgr exit instead of serving, which leaves kubelet without a container runtime";

/// cri-resmgr flags `EXTRA_OPTIONS` must not set, and why: the ones the extension sets itself or relies on at their
/// defaults (the node setup, kubelet and the agent are wired to them), and the ones that make cri-resmgr exit.
pub const FORBIDDEN_FLAGS: &[(&str, &str)] = &[
    (
        "fallback-config",
        "the extension sets it to the file it writes from configs.fallback; put the configuration into \
         configs.fallback instead",
    ),
    (
        "force-config",
        "the extension sets it to the file it writes from configs.force (and cri-resmgr refuses it together with \
         --fallback-config); put the configuration into configs.force instead",
    ),
    (
        "relay-socket",
        "the extension points kubelet's container runtime endpoint at cri-resmgr's default relay socket; moving \
         it would cut kubelet off from the container runtime",
    ),
    (
        "runtime-socket",
        "the extension relays to the containerd socket Gardener's node setup creates; another socket would cut \
         the node off from its container runtime",
    ),
    ("image-socket", "the extension relays image requests to the same containerd socket as runtime requests"),
    ("agent-socket", "cri-resmgr-agent, deployed by the extension, talks to cri-resmgr on the default agent socket"),
    (
        "config-socket",
        "cri-resmgr-agent, deployed by the extension, pushes configurations to the default config socket",
    ),
    (
        "relay-dir",
        "the extension removes cri-resmgr's state from the default directory when it is disabled; state elsewhere \
         would be left behind on the node",
    ),
    ("reset-config", EXITS_INSTEAD_OF_SERVING),
    ("reset-policy", EXITS_INSTEAD_OF_SERVING),
    ("print-config", EXITS_INSTEAD_OF_SERVING),
    ("list-policies", EXITS_INSTEAD_OF_SERVING),
    ("version", EXITS_INSTEAD_OF_SERVING),
    ("help", EXITS_INSTEAD_OF_SERVING),
];

/// Punctuation allowed in `EXTRA_OPTIONS` besides ASCII letters, digits and the separating spaces/tabs.
/// None of it means anything to a systemd environment file, to systemd's `ExecStart=` expansion or to a shell.
pub const EXTRA_OPTIONS_PUNCTUATION: &str = "._,:/=@+-";

/// Why `EXTRA_OPTIONS` is written the way it is, for messages.
const EXTRA_OPTIONS_RULE: &str = "EXTRA_OPTIONS becomes one line of cri-resmgr's environment file and is expanded \
     into the ExecStart= of its systemd unit, so it may only hold \"--flag\" and \"--flag=value\" options separated \
     by spaces, with flag names of lowercase letters, digits, '-' and '_' and values of letters, digits and \
     ._,:/=@+-";

fn is_extra_options_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '\t' || EXTRA_OPTIONS_PUNCTUATION.contains(c)
}

fn is_flag_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Splits `EXTRA_OPTIONS` into its options (`--flag` or `--flag=value` tokens); an empty or blank line has none.
/// Call it on validated text; on anything else it still only returns whitespace-separated tokens.
pub fn extra_options_tokens(text: &str) -> Vec<&str> {
    text.split([' ', '\t']).filter(|t| !t.is_empty()).collect()
}

/// Checks `EXTRA_OPTIONS`: at most [`MAX_EXTRA_OPTIONS_BYTES`]; only characters that cannot escape an environment
/// file line or a systemd `ExecStart=` expansion (no newline, quote, `$`, `;`, backslash, backtick, `%`, …);
/// only `--flag` / `--flag=value` tokens; none of the [`FORBIDDEN_FLAGS`].
pub fn validate_extra_options(text: &str, path: &FieldPath) -> Vec<FieldError> {
    if text.len() > MAX_EXTRA_OPTIONS_BYTES {
        return vec![FieldError::too_long(path, MAX_EXTRA_OPTIONS_BYTES)];
    }
    if let Some(c) = text.chars().find(|c| !is_extra_options_char(*c)) {
        return vec![FieldError::invalid(path, text, format!("character {c:?} is not allowed: {EXTRA_OPTIONS_RULE}"))];
    }
    let mut errors = Vec::new();
    for token in extra_options_tokens(text) {
        let flag = token.strip_prefix("--").map(|rest| rest.split_once('=').map_or(rest, |(name, _)| name));
        match flag {
            Some(name) if is_flag_name(name) => {
                if let Some((_, why)) = FORBIDDEN_FLAGS.iter().find(|(forbidden, _)| *forbidden == name) {
                    errors.push(FieldError::forbidden(path, format!("{}: {why}", quote(&format!("--{name}")))));
                }
            }
            _ => errors.push(FieldError::invalid(path, token, format!("not an option: {EXTRA_OPTIONS_RULE}"))),
        }
    }
    errors
}
