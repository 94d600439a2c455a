//! kubelet's container runtime endpoint: pointed at cri-resmgr's socket on a selected pool, back at containerd's
//! everywhere else — in `kubelet.service`'s `ExecStart=` and in the KubeletConfiguration file. Both are edited in
//! place, so that the restore gives back the original byte for byte.
//!
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

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{LazyLock, Mutex, MutexGuard};

use serde_json::Value;

use super::files::{decode_inline, encode_inline};
use super::systemd::{COMMAND_LINE_SEPARATOR, command_line_tokens, service_exec_start};
use crate::apis::extensions::{FileContent, FileContentInline, OperatingSystemConfig, OperatingSystemConfigSpec, Unit};
use crate::constants::{
    CONTAINERD_SOCKET_ENDPOINT, KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_CONFIG_PATH,
    KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_UNIT_NAME, RELAY_SOCKET_ENDPOINT,
};

/// The value of `kubelet.service`'s `[Service]` `ExecStart=` as go-systemd reads it (continuations included), for
/// `render`; `None` when the OSC has no such unit or option.
pub fn kubelet_exec_start(osc: &OperatingSystemConfig) -> Option<String> {
    let content = osc.spec.unit(KUBELET_UNIT_NAME)?.content.as_deref()?;
    service_exec_start(content).ok().map(|range| content[range].to_owned())
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
pub(super) fn switch_kubelet_unit(
    spec: &mut OperatingSystemConfigSpec,
    install: bool,
    warnings: &mut Vec<String>,
) -> bool {
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

/// Switches `containerRuntimeEndpoint` in [`KUBELET_CONFIG_PATH`], when the OSC has that file and it sets it.
pub(super) fn switch_kubelet_config(spec: &mut OperatingSystemConfigSpec, install: bool, warnings: &mut Vec<String>) {
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
    // Re-encoded with the file's own encoding, so that the restore gives back the same bytes.
    Ok(Some(encode_inline(&inline.encoding, &switched)))
}

/// What [`switch_config_endpoint`] gives, kept by the text it was asked for: gardenlet sends the same
/// KubeletConfiguration in every OSC of a pool and again on every shoot reconcile, and reading it (twice: once to
/// find the field, once to prove the edit) is most of what mutating an OSC costs. The answer depends on the text
/// and the direction only, so a kept one is the one a fresh reading would give.
///
/// Bounded: texts longer than [`SWITCH_MEMO_MAX_TEXT`] are not kept, and when the kept texts and answers would
/// exceed [`SWITCH_MEMO_BYTES`], everything kept is forgotten at once (a seed's working set is a few files).
struct SwitchMemo {
    /// Per direction (`install` false, true): text → answer.
    answers: [HashMap<String, Result<Option<String>, String>>; 2],
    bytes: usize,
}

/// The longest kubelet config text [`SwitchMemo`] keeps (Gardener's are a few KiB).
pub const SWITCH_MEMO_MAX_TEXT: usize = 64 * 1024;
/// How many bytes of texts and answers [`SwitchMemo`] keeps at most.
pub const SWITCH_MEMO_BYTES: usize = 1024 * 1024;

static SWITCH_MEMO: LazyLock<Mutex<SwitchMemo>> =
    LazyLock::new(|| Mutex::new(SwitchMemo { answers: [HashMap::new(), HashMap::new()], bytes: 0 }));

/// The memo; a panic elsewhere while it was held leaves it consistent (each change completes before the guard
/// is dropped), so a poisoned lock is used as is.
fn switch_memo() -> MutexGuard<'static, SwitchMemo> {
    SWITCH_MEMO.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The bytes [`SwitchMemo`] holds now.
#[cfg(test)]
pub(crate) fn switch_memo_bytes() -> usize {
    switch_memo().bytes
}

/// [`switch_config_endpoint_uncached`], from [`SwitchMemo`] when the text was switched before.
pub(super) fn switch_config_endpoint(text: &str, install: bool) -> Result<Option<String>, String> {
    let direction = usize::from(install);
    if text.len() > SWITCH_MEMO_MAX_TEXT {
        return switch_config_endpoint_uncached(text, install);
    }
    if let Some(answer) = switch_memo().answers[direction].get(text) {
        return answer.clone();
    }
    // Read outside the lock, so that other OSCs are served meanwhile.
    let answer = switch_config_endpoint_uncached(text, install);
    let bytes = text.len()
        + match &answer {
            Ok(switched) => switched.as_ref().map_or(0, String::len),
            Err(problem) => problem.len(),
        };
    let mut memo = switch_memo();
    if memo.bytes + bytes > SWITCH_MEMO_BYTES {
        memo.answers.iter_mut().for_each(HashMap::clear);
        memo.bytes = 0;
    }
    if memo.answers[direction].insert(text.to_owned(), answer.clone()).is_none() {
        memo.bytes += bytes;
    }
    answer
}

/// A KubeletConfiguration text with `containerRuntimeEndpoint` switched, `None` when it does not set the field or
/// already has the desired value. The value's text is replaced where it occurs, taking the first occurrence after
/// which the YAML reads exactly as before except for that field, so nothing else of the file changes.
pub(super) fn switch_config_endpoint_uncached(text: &str, install: bool) -> Result<Option<String>, String> {
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
