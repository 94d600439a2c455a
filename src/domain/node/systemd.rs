//! Reading systemd unit text the way Gardener's webhook library does (go-systemd's deserializer, the
//! `DeserializeCommandLine` split, the `SerializeCommandLine` separator), as byte ranges into the original text,
//! so that callers can edit one value in place and leave every other byte of a unit as it was.

use std::ops::Range;

/// What Gardener's `SerializeCommandLine` puts between the arguments of a command line: ` \`, newline, 4 spaces.
pub const COMMAND_LINE_SEPARATOR: &str = " \\\n    ";

/// Gardener's `DeserializeCommandLine`: the arguments of an `ExecStart=` value, split on `[\\\s]+`.
pub fn command_line_arguments(value: &str) -> Vec<&str> {
    command_line_tokens(value).into_iter().map(|range| &value[range]).collect()
}

/// Byte range, in `content`, of the value of the one `ExecStart=` of the `[Service]` section(s), read the way
/// go-systemd's deserializer does: `[Section]` headers, `#`/`;` comment lines, `Key=Value` options whose value
/// continues over the next line while a line ends in `\` (the continuations stay part of the value), leading
/// blanks of the value skipped.
pub(super) fn service_exec_start(content: &str) -> Result<Range<usize>, String> {
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
pub(super) fn command_line_tokens(value: &str) -> Vec<Range<usize>> {
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
