//! The layering rules of `lib.rs`, checked over the source: which module may use which, no import cycles, and no
//! I/O in the domain. A module is a top-level module (`constants`, `render`) or, inside a directory module, its
//! child (`domain::node`, `runtime::server`); references are the `crate::…` paths in the code (also inside `use`
//! groups; `super::`/`self::` paths stay inside a module and are not followed). Test modules are exempt from the
//! I/O rule only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of each top-level module, lowest first; a module may use modules of its own or a lower layer.
fn layer_of(top: &str) -> Option<(u8, &'static str)> {
    Some(match top {
        "apis" | "constants" | "yaml" | "decode" | "logging" => (0, "foundation"),
        "domain" => (1, "domain"),
        "runtime" | "contract" | "managed_resource" => (2, "runtime"),
        "webhook" | "controller" | "render" => (3, "adapter"),
        "commands" => (4, "commands"),
        _ => return None,
    })
}

/// What a domain module must not touch: the domain is pure, the adapters do the I/O.
const DOMAIN_FORBIDDEN: &[&str] =
    &["kube::Client", "kube::Api", "Api<", "Api::", "tokio", "std::fs", "std::net", "std::env", "::now("];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read src").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `crate::<top>::<child>` names a module of its own (a file or a directory under `src/<top>/`).
fn is_child_module(top: &str, child: &str) -> bool {
    let dir = src_dir().join(top);
    dir.join(format!("{child}.rs")).is_file() || dir.join(child).join("mod.rs").is_file()
}

/// The module a path refers to: `domain::node` for `domain::node::mutate`, `constants` for `constants::X`.
fn module_of(segments: &[&str]) -> Option<String> {
    let top = *segments.first()?;
    layer_of(top)?;
    match segments.get(1) {
        Some(child) if is_child_module(top, child) => Some(format!("{top}::{child}")),
        _ => Some(top.to_string()),
    }
}

/// The module a source file belongs to (`src/domain/node/files.rs` → `domain::node`); `None` for the crate root
/// and the binary.
fn module_of_file(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src_dir()).ok()?.with_extension("");
    let segments: Vec<&str> = relative.iter().filter_map(|s| s.to_str()).filter(|s| *s != "mod").collect();
    match segments.as_slice() {
        ["lib" | "main" | "layers"] => None,
        [top, ..] => module_of(&segments).or_else(|| Some(top.to_string())),
        [] => None,
    }
}

/// Every `crate::` path in `code`, with `use` groups expanded: `crate::a::{b, c::d}` gives `a::b` and `a::c::d`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        // `$crate::` and identifiers ending in `crate` are not paths of this crate.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let consumed = expand(rest, Vec::new(), &mut paths);
        rest = &rest[consumed..];
    }
    paths
}

/// Expands the path tree at the start of `text` under `prefix`; returns how many bytes it consumed.
fn expand(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    let mut i = 0;
    let bytes = text.as_bytes();
    loop {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
            i += 1;
        }
        if i > start {
            path.push(text[start..i].to_string());
        }
        if text[i..].starts_with("::{") {
            i += 3;
            loop {
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
                i += expand(&text[i..], path.clone(), out);
            }
        }
        if text[i..].starts_with("::") && i > start {
            i += 2;
            continue;
        }
        out.push(path);
        return i;
    }
}

/// `code` without comments (doc links are not uses), keeping string literals, so `"https://…"` stays code.
fn strip_comments(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut previous = '\0';
        let mut end = line.len();
        for (at, c) in line.char_indices() {
            if in_string {
                in_string = c != '"' || escaped;
                escaped = c == '\\' && !escaped;
            } else if c == '"' {
                in_string = true;
            } else if c == '/' && previous == '/' {
                end = at - 1;
                break;
            }
            previous = c;
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

/// The code of a file without its inline test module (tests may do I/O). Only `#[cfg(test)] mod tests {` starts
/// one: a `#[cfg(test)] mod tests;` or a test-only item elsewhere leaves the rest of the file to be checked.
fn without_tests(code: &str) -> &str {
    code.find("#[cfg(test)]\nmod tests {").map_or(code, |at| &code[..at])
}

struct Source {
    path: PathBuf,
    module: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    assert!(files.len() > 20, "found the sources under {}", src_dir().display());
    files
        .into_iter()
        .filter_map(|path| {
            let module = module_of_file(&path)?;
            let code = strip_comments(&std::fs::read_to_string(&path).expect("read source"));
            Some(Source { path, module, code })
        })
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// Module → the modules it uses (other than itself).
fn dependency_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources {
        let uses = graph.entry(source.module.clone()).or_default();
        for path in crate_paths(&source.code) {
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            if let Some(used) = module_of(&segments).filter(|used| *used != source.module) {
                uses.insert(used);
            }
        }
    }
    graph
}

#[test]
fn every_module_belongs_to_a_layer() {
    for source in sources() {
        assert!(layer_of(top(&source.module)).is_some(), "{} has no layer in layers.rs", source.path.display());
    }
}

#[test]
fn modules_use_only_their_own_or_lower_layers_and_adapters_never_each_other() {
    let mut violations = Vec::new();
    for (module, uses) in dependency_graph(&sources()) {
        let Some((layer, name)) = layer_of(top(&module)) else { continue };
        for used in uses {
            let Some((used_layer, used_name)) = layer_of(top(&used)) else { continue };
            if used_layer > layer {
                violations.push(format!("{module} ({name}) uses {used} ({used_name}), a higher layer"));
            } else if name == "adapter" && used_name == "adapter" && top(&used) != top(&module) {
                violations.push(format!("adapter {module} uses adapter {used}"));
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn no_import_cycles_between_modules() {
    let graph = dependency_graph(&sources());
    // Depth-first search; a back edge to a module on the current path closes a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            cycles.push(cycle.join(" → "));
            return;
        }
        if !done.insert(module.to_string()) {
            return;
        }
        path.push(module.to_string());
        for used in graph.get(module).into_iter().flatten() {
            visit(used, graph, path, done, cycles);
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_domain_does_no_io() {
    let mut violations = Vec::new();
    for source in sources().iter().filter(|s| top(&s.module) == "domain") {
        // Sibling test files (`…/tests.rs`, `…/tests/…`) are tests.
        if source.path.iter().any(|part| part == "tests" || part == "tests.rs") {
            continue;
        }
        for forbidden in DOMAIN_FORBIDDEN {
            if without_tests(&source.code).contains(forbidden) {
                violations.push(format!("{}: {forbidden}", source.path.display()));
            }
        }
    }
    assert!(violations.is_empty(), "I/O in the domain:\n{}", violations.join("\n"));
}

#[test]
fn only_the_inline_test_module_is_exempt_from_the_io_rule() {
    let code =
        "#[cfg(test)]\nmod tests;\nfn a() {}\n#[cfg(test)]\nfn b() {}\n#[cfg(test)]\nmod tests {\n fn t() {}\n}\n";
    assert_eq!(without_tests(code), "#[cfg(test)]\nmod tests;\nfn a() {}\n#[cfg(test)]\nfn b() {}\n");
}

#[test]
fn crate_paths_expand_use_groups() {
    let paths = crate_paths("use crate::domain::{node::{self, PoolPlan}, configs};\nlet x = crate::constants::A;");
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["domain::node::self", "domain::node::PoolPlan", "domain::configs", "constants::A"]);
    assert_eq!(module_of(&["domain", "node", "PoolPlan"]).as_deref(), Some("domain::node"));
    assert_eq!(module_of(&["constants", "A"]).as_deref(), Some("constants"));
    assert!(crate_paths("$crate::x; my_crate::y").is_empty());
    assert_eq!(
        strip_comments("a // [`crate::x`]\n/// doc\nlet u = \"https://h\"; // c"),
        "a \n\nlet u = \"https://h\"; \n"
    );
}
