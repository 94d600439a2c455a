//! Verdicts on configuration bodies kept by their text: Shoot writes repeat the same `configs` (every UPDATE of a
//! Shoot sends its whole providerConfig again, and many Shoots share an operator's configurations), and parsing
//! and checking a body's YAML is most of what validating a Shoot costs.
//!
//! The cache gives what [`validate_config_body`] gives, with the error paths under the path asked for now (a body
//! seen at `configs["default"]` of one Shoot may come back at `configs["node.n1"]` of another). It is bounded in
//! entries and in the bytes its verdicts hold (text and parsed configurations), forgets the least recently used verdict first, and is safe to share between
//! threads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::config_body::{ConfigBody, validate_config_body};
use super::field::{FieldError, FieldPath};

/// How many verdicts a [`ConfigBodyCache::default`] keeps.
pub const DEFAULT_CACHED_BODIES: usize = 256;
/// How many bytes (bodies' text and parsed sections, error messages) a [`ConfigBodyCache::default`] keeps.
pub const DEFAULT_CACHED_BYTES: usize = 1024 * 1024;

/// [`validate_config_body`] with its verdicts kept by text; see the module documentation.
pub struct ConfigBodyCache {
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Bytes held, as [`Verdict::bytes`] counts them.
    bytes: usize,
    /// Advances on every use; an entry's `last_used` orders the evictions.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    verdict: Arc<Verdict>,
    last_used: u64,
    /// What [`Verdict::bytes`] counted when it was kept: counting again walks the parsed body.
    bytes: usize,
}

/// What [`validate_config_body`] said about a text, independent of the path it was asked at.
#[derive(Debug)]
enum Verdict {
    Valid(ConfigBody),
    Invalid(Vec<(ErrorPath, String)>),
}

/// Where an error of a body lies.
#[derive(Debug)]
enum ErrorPath {
    /// Below the body's own path: what follows it (`""` for the body, `.policy.Active` below it).
    Below(String),
    /// Elsewhere (no error of today's validation is): kept as it was.
    Absolute(String),
}

impl Verdict {
    fn of(text: &str, path: &FieldPath) -> Verdict {
        match validate_config_body(text, path) {
            Ok(body) => Verdict::Valid(body),
            Err(errors) => Verdict::Invalid(
                errors
                    .into_iter()
                    .map(|error| {
                        let at = match error.path.strip_prefix(path.as_str()) {
                            Some(below) => ErrorPath::Below(below.to_owned()),
                            None => ErrorPath::Absolute(error.path),
                        };
                        (at, error.message)
                    })
                    .collect(),
            ),
        }
    }

    /// The verdict as [`validate_config_body`] gives it for a body at `path`.
    fn at(&self, path: &FieldPath) -> Result<ConfigBody, Vec<FieldError>> {
        match self {
            Verdict::Valid(body) => Ok(body.clone()),
            Verdict::Invalid(errors) => Err(errors
                .iter()
                .map(|(at, message)| {
                    let path = match at {
                        ErrorPath::Below(below) => format!("{path}{below}"),
                        ErrorPath::Absolute(absolute) => absolute.clone(),
                    };
                    FieldError { path, message: message.clone() }
                })
                .collect()),
        }
    }

    /// About how many bytes this verdict holds with its key: the key, and the parsed body (text and sections,
    /// which aliases can make far larger than the text) or the errors.
    fn bytes(&self, key: &str) -> usize {
        key.len()
            + match self {
                Verdict::Valid(body) => body.held_bytes(),
                Verdict::Invalid(errors) => errors
                    .iter()
                    .map(|(at, message)| match at {
                        ErrorPath::Below(path) | ErrorPath::Absolute(path) => path.len() + message.len(),
                    })
                    .sum(),
            }
    }
}

/// Shows the cache's size only: the bodies are users' configuration text.
impl std::fmt::Debug for ConfigBodyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("ConfigBodyCache").field("entries", &state.entries.len()).field("bytes", &state.bytes).finish()
    }
}

impl Default for ConfigBodyCache {
    fn default() -> Self {
        ConfigBodyCache::new(DEFAULT_CACHED_BODIES, DEFAULT_CACHED_BYTES)
    }
}

impl ConfigBodyCache {
    /// A cache of at most `max_entries` verdicts holding at most `max_bytes`; a body whose verdict alone
    /// holds more is validated every time.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        ConfigBodyCache { max_entries, max_bytes, state: Mutex::new(State::default()) }
    }

    /// [`validate_config_body`] for a body at `path`, from the cache when the text was validated before.
    pub fn validate(&self, text: &str, path: &FieldPath) -> Result<ConfigBody, Vec<FieldError>> {
        if let Some(verdict) = self.lookup(text) {
            return verdict.at(path);
        }
        // Validated outside the lock: other bodies are served meanwhile. Two threads validating the same new text
        // at once both store it; the second replaces the first, which is the same verdict.
        let verdict = Arc::new(Verdict::of(text, path));
        self.store(text, verdict.clone());
        verdict.at(path)
    }

    /// How many verdicts are kept.
    pub fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Whether no verdict is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About how many bytes the kept verdicts hold (their text, parsed sections and error messages).
    pub fn bytes(&self) -> usize {
        self.state().bytes
    }

    fn lookup(&self, text: &str) -> Option<Arc<Verdict>> {
        let mut state = self.state();
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(text)?;
        entry.last_used = now;
        Some(entry.verdict.clone())
    }

    fn store(&self, text: &str, verdict: Arc<Verdict>) {
        let bytes = verdict.bytes(text);
        if self.max_entries == 0 || bytes > self.max_bytes {
            return;
        }
        let mut state = self.state();
        if let Some(replaced) = state.entries.remove(text) {
            state.bytes -= replaced.bytes;
        }
        while state.entries.len() >= self.max_entries || state.bytes + bytes > self.max_bytes {
            // A linear search for the oldest: the cache is small, and this runs only after a body was parsed, which
            // costs far more.
            let Some(oldest) = state.entries.iter().min_by_key(|(_, entry)| entry.last_used).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
        state.clock += 1;
        let last_used = state.clock;
        state.bytes += bytes;
        state.entries.insert(text.to_owned(), Entry { verdict, last_used, bytes });
    }

    /// The state; a panic elsewhere while it was held leaves it consistent (every change is completed before the
    /// guard is dropped), so a poisoned lock is used as is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::config_body::parse_counter;

    const VALID: &str = "policy:\n  Active: balloons\n";
    const INVALID: &str = "policy:\n  Active: nope\n  Unknown: 1\nbogus: {}\n";

    fn at(key: &str) -> FieldPath {
        FieldPath::new("spec").child("extensions").index(0).child("providerConfig").child("configs").key(key)
    }

    #[test]
    fn a_hit_gives_the_same_verdict_as_validating_at_the_path_asked_now() {
        let cache = ConfigBodyCache::default();
        for text in [VALID, INVALID, "", "[1]", "policy: ["] {
            parse_counter::take();
            let first = cache.validate(text, &at("default"));
            assert_eq!(first, validate_config_body(text, &at("default")), "{text:?}");
            for key in ["default", "node.n1", "group.fast"] {
                let again = cache.validate(text, &at(key));
                assert_eq!(again, validate_config_body(text, &at(key)), "{text:?} at {key}");
            }
            let parses = parse_counter::take();
            assert_eq!(parses.get(text), Some(&5), "{text:?}: once through the cache, four times directly");
        }
        let errors = cache.validate(INVALID, &at("node.n1")).unwrap_err();
        assert!(errors.len() > 1, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.path == r#"spec.extensions[0].providerConfig.configs["node.n1"].policy.Active"#)
        );
        assert!(errors.iter().all(|e| e.path.starts_with(r#"spec.extensions[0].providerConfig.configs["node.n1"]"#)));
    }

    #[test]
    fn the_least_recently_used_verdict_goes_first_and_the_bounds_hold() {
        let cache = ConfigBodyCache::new(3, 1024);
        let texts: Vec<String> =
            (0..5).map(|i| format!("policy:\n  Active: static\nlogger:\n  Debug: m{i}\n")).collect();
        for text in &texts[..3] {
            cache.validate(text, &at("default")).expect("valid");
        }
        // The first is used again; the second is now the oldest and goes when the fourth comes.
        cache.validate(&texts[0], &at("default")).expect("valid");
        cache.validate(&texts[3], &at("default")).expect("valid");
        assert_eq!(cache.len(), 3);
        parse_counter::take();
        for text in [&texts[0], &texts[2], &texts[3]] {
            cache.validate(text, &at("default")).expect("valid");
        }
        assert!(parse_counter::take().is_empty(), "kept: the first, third and fourth");
        cache.validate(&texts[1], &at("default")).expect("valid");
        assert_eq!(parse_counter::take().get(texts[1].as_str()), Some(&1), "the second was evicted");
        assert_eq!(cache.len(), 3);

        // Bytes: many distinct bodies never hold more than the budget.
        let small = ConfigBodyCache::new(1000, 300);
        for i in 0..100 {
            small.validate(&format!("policy:\n  Active: static\nlogger:\n  Debug: {i}\n"), &at("x")).expect("valid");
            assert!(small.bytes() <= 300, "{} bytes", small.bytes());
        }
        assert!(small.len() < 10 && !small.is_empty(), "{} entries", small.len());
        // A body larger than the whole budget is validated, not kept.
        let large = format!("policy:\n  Active: static\nlogger:\n  Debug: {}\n", "x".repeat(400));
        let before = small.len();
        assert!(small.validate(&large, &at("x")).is_ok());
        assert_eq!(small.len(), before);
        assert!(small.bytes() <= 300);
    }

    #[test]
    fn a_body_is_charged_by_what_it_parses_to_not_by_its_text() {
        // 11 KiB of text whose aliases expand to about 400 KiB: kept by a cache that counted text, not by one that
        // counts what the parsed body holds.
        let long = "x".repeat(10 * 1024);
        let aliases = vec!["*a"; 40].join(", ");
        let text = format!(
            "policy:
  Active: balloons
  balloons:
    BalloonTypes: [&a \"{long}\", {aliases}]
"
        );
        let cache = ConfigBodyCache::new(100, 256 * 1024);
        let body = cache.validate(&text, &at("default")).expect("valid");
        assert!(body.held_bytes() > 400 * 1024, "{} bytes", body.held_bytes());
        assert!(cache.is_empty(), "not kept: {} bytes", cache.bytes());
        // Its text alone would fit many times over; an unaliased body of the same length is kept.
        let plain = format!(
            "policy:
  Active: balloons
  balloons:
    BalloonTypes: [\"{long}\"]
"
        );
        cache.validate(&plain, &at("default")).expect("valid");
        assert_eq!(cache.len(), 1);
        assert!(cache.bytes() < 32 * 1024, "{} bytes", cache.bytes());
    }

    #[test]
    fn threads_share_one_cache() {
        let cache = Arc::new(ConfigBodyCache::new(8, 64 * 1024));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let text = format!("policy:\n  Active: static\nlogger:\n  Debug: t{}\n", (i + t) % 12);
                        let key = format!("node.n{t}");
                        assert_eq!(cache.validate(&text, &at(&key)), validate_config_body(&text, &at(&key)));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert!(cache.len() <= 8);
    }
}
