//! Answers kept for reviews that come again.
//!
//! The apiserver sends a new AdmissionReview for every write, each with a fresh `request.uid`, and sometimes what it
//! reviews repeats byte for byte: a client retries a write whose answer it did not get, a tool applies unchanged
//! manifests again (the apiserver reviews the write before it finds that nothing changed). gardenlet's own OSC writes
//! repeat but for a few volatile strings (see below). For the same review and the same state outside it, a handler's
//! answer is the same but for the uid it echoes. The memo keeps, per webhook, the encoded answer of a review by every
//! byte of the review except its uid (and the webhook's volatile strings), and answers a later review whose bytes
//! match from it, with the new uid put in; a handler's [`Reuse`] says whether and for how long its answer holds (see
//! [`AdmissionHandler::admit_reusable`](super::review::AdmissionHandler::admit_reusable)).
//!
//! Why a match gives the right answer: the kept review was decoded with its uid as one plain JSON string (no
//! escapes) at a known place. A review with the same bytes before and after that place, and a uid there that is
//! again a plain string (no quote, backslash or control character, valid UTF-8), decodes into the same request
//! with only the uid changed, so every step after decoding does what it did, and the answer differs only in the uid
//! it echoes, which is put into the kept encoding as a plain string too. A review that differs in any other byte is
//! decoded and answered afresh.
//!
//! A webhook may also name strings of its reviews whose text its answers do not depend on
//! ([`VolatileString`]): gardenlet writes every OperatingSystemConfig with a new `gardener.cloud/timestamp`, and each
//! write also carries a new `resourceVersion`, new `managedFields` times and the OS extension's newer
//! `lastUpdateTime`. The same argument covers them: each is kept as a place in the review where any plain string (of
//! the kind named: any text, or a timestamp written as Kubernetes writes it) may stand, the bytes between the places
//! must be equal, and the new review decodes into the same request but for those strings. Only allowed answers are
//! kept with such places (a denial's words might come from them); denials need the review again but for its uid.
//!
//! The memo is bounded ([`MEMO_MAX_BYTES`], counting the reviews it keeps and their answers; the answers not given
//! again for longest go first, by a clock), and a lookup costs one hash and a comparison of the body with the few
//! kept reviews of the same kind, name, namespace and user (newest first, at most [`MAX_ENTRIES_PER_KEY`]), no
//! decoding but of the volatile timestamps.
//!
//! The uid is looked for at the places kept reviews had it: the apiserver writes it first. A review that has it after
//! its objects (as a writer of sorted keys does) gets a kept answer only while its volatile strings keep their
//! lengths.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher as _};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::body::Bytes;
use kube::core::admission::{AdmissionResponse, Operation};

use super::metrics::{AdmissionResult, DenialReason};
use super::review::{ADMISSION_REVIEW_API_VERSION, ADMISSION_REVIEW_KIND, Reuse, result_of};

/// What the kept reviews and answers of one webhook may add up to.
pub const MEMO_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Reviews larger than this are not kept: a few of them would push every other one out.
pub const MEMO_MAX_REVIEW_BYTES: usize = 256 * 1024;
/// Longest uid a kept answer is given again for (the apiserver's are 36-character UUIDs).
pub const MEMO_MAX_UID_BYTES: usize = 128;
/// What an entry costs besides its bytes (the entry, its map slot, the log fields), for the bound.
const ENTRY_OVERHEAD_BYTES: usize = 256;
/// How many different uid positions are tried on a lookup; the apiserver writes `request.uid` first, so its reviews
/// all have it at the same place.
const MAX_UID_OFFSETS: usize = 4;
/// How many kept answers share a key at most. With volatile strings the key covers only what comes before the
/// objects, so every version of one object shares one: the oldest goes when a newer one is kept, and a lookup
/// compares the body with no more than these.
const MAX_ENTRIES_PER_KEY: usize = 4;
/// Where the request's objects begin in a review as the apiserver writes it (after the uid, kind, resource, name,
/// namespace, operation and user): a memo with [`VolatileString`]s looks kept reviews up by what comes before it.
const OBJECT_KEY: &[u8] = b"\"object\":";
/// The key of an AdmissionReview's request, where [`VolatileString`] paths start.
const REQUEST_KEY: &str = "request";

/// One step of a path into the review's `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The value of this key of an object.
    Key(&'static str),
    /// Every element of an array.
    Each,
}

/// What may stand at a [`VolatileString`]'s place in a review that gets a kept answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolatileText {
    /// Any plain string.
    Any,
    /// A timestamp that Kubernetes' `Time` reads and writes back as the same text, and not the Unix epoch (which the
    /// extension's types leave out when they write an object): a webhook that decodes and re-encodes the object
    /// makes the same patch for any such text.
    Time,
}

/// A string at `path` (from the review's `request`) whose text a webhook's answers do not depend on, as long as it is
/// of the kind `text` says: reviews that differ only in such strings (and the uid) get the same kept answer.
#[derive(Debug, Clone, Copy)]
pub struct VolatileString {
    pub path: &'static [Step],
    pub text: VolatileText,
}

/// How an answer was counted and logged when it was made: given again with the same result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: AdmissionResult,
    pub denial: Option<DenialReason>,
    pub patched: bool,
    /// The denial's message (empty when allowed), for the log line of a denial given again.
    pub message: String,
    /// What the review was about, for the log lines.
    pub operation: Operation,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Outcome {
    /// The outcome of `response` to a review about `request`'s operation, kind and object.
    pub fn of(
        response: &AdmissionResponse,
        operation: Operation,
        kind: String,
        namespace: String,
        name: String,
    ) -> Self {
        let (result, denial) = result_of(response);
        let message = if response.allowed { String::new() } else { response.result.message.clone() };
        Outcome { result, denial, patched: response.patch.is_some(), message, operation, kind, namespace, name }
    }
}

/// A kept answer given to a review that came again: the encoded AdmissionReview to send is the kept answer's bytes
/// before its uid, the new review's uid, and the kept bytes after it. The kept bytes are shared, not copied: the
/// answer goes out as these three parts.
#[derive(Debug)]
pub struct Reused {
    head: Bytes,
    uid: String,
    tail: Bytes,
    pub outcome: Arc<Outcome>,
}

impl Reused {
    /// The new review's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The encoded answer in its parts, in order.
    pub fn into_parts(self) -> [Bytes; 3] {
        [self.head, Bytes::from(self.uid), self.tail]
    }

    /// The encoded answer in one piece, for checks against a fresh answer (the server sends the parts).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], self.uid.as_bytes(), &self.tail[..]].concat()
    }
}

/// The kept answers of one webhook. Shared by every request to it. `S` hashes the reviews (a seeded hash, so that no
/// one can aim reviews at one bucket; tests use one under which every review collides).
pub struct AnswerMemo<S = foldhash::fast::RandomState> {
    hasher: S,
    /// The webhook's volatile strings, as a tree of paths from the review's root.
    volatile: Option<PathTree>,
    /// Read-locked by lookups (which only set an atomic mark), write-locked to keep or drop answers: reviews that
    /// come again never wait for one another.
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    /// Entries by [`AnswerMemo::key`], oldest first: entries whose hashes collide, and (with volatile strings) the
    /// kept versions of one object.
    entries: HashMap<u64, Vec<Arc<Entry>>>,
    /// The places kept reviews had their uid at, most recent first.
    uid_offsets: [Option<usize>; MAX_UID_OFFSETS],
    /// Every kept entry in the order it was kept, the hand of the eviction clock at the front.
    ring: VecDeque<(u64, Arc<Entry>)>,
    /// The bytes of the entries in `ring`.
    bytes: usize,
}

struct Entry {
    /// The review as it came, its uid included.
    review: Box<[u8]>,
    /// The places in `review` where another plain string may stand (the uid among them), in order.
    spans: Box<[(Range<usize>, SpanText)]>,
    /// The encoded answer before and after its uid.
    answer_head: Bytes,
    answer_tail: Bytes,
    outcome: Arc<Outcome>,
    reuse: Reuse,
    /// Given again since the eviction clock last passed it: it gets another round.
    used: AtomicBool,
    /// Dropped from the map (it no longer held, or a newer answer replaced it); the clock frees its bytes.
    dropped: AtomicBool,
}

impl Entry {
    fn cost(&self) -> usize {
        let Outcome { message, kind, namespace, name, .. } = &*self.outcome;
        let outcome = message.len() + kind.len() + namespace.len() + name.len();
        let spans = self.spans.len() * std::mem::size_of::<(Range<usize>, SpanText)>();
        self.review.len() + spans + self.answer_head.len() + self.answer_tail.len() + outcome + ENTRY_OVERHEAD_BYTES
    }

    /// Where `body`'s uid is, when `body` is this entry's review with other plain strings of their kind at its
    /// places: every byte outside them equal, in the same order.
    fn matches(&self, body: &[u8]) -> Option<Range<usize>> {
        let (mut kept_at, mut at, mut uid) = (0, 0, None);
        for (span, text) in &*self.spans {
            let fixed = &self.review[kept_at..span.start];
            if body.get(at..at + fixed.len())? != fixed {
                return None;
            }
            at += fixed.len();
            let kept_text = &self.review[span.clone()];
            let length = match text {
                // The kept review's volatile strings were found of their kind when it was kept: the same text again
                // needs no second look (a time would be parsed and written back).
                SpanText::Volatile(_)
                    if body.get(at..at + kept_text.len()) == Some(kept_text)
                        && body.get(at + kept_text.len()) == Some(&b'"') =>
                {
                    kept_text.len()
                }
                _ => plain_string_length(&body[at..], *text)?,
            };
            if *text == SpanText::Uid {
                uid = Some(at..at + length);
            }
            (kept_at, at) = (span.end, at + length);
        }
        (body.get(at..)? == &self.review[kept_at..]).then_some(uid?)
    }
}

/// What may stand at a place of a kept review: the uid (put into the answer), or a [`VolatileText`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpanText {
    Uid,
    Volatile(VolatileText),
}

/// The length of the plain string `rest` begins with (up to the quote that ends it): no backslash or control
/// character, valid UTF-8, and of the kind `text` says.
fn plain_string_length(rest: &[u8], text: SpanText) -> Option<usize> {
    let scanned = match text {
        SpanText::Uid => &rest[..rest.len().min(MEMO_MAX_UID_BYTES + 1)],
        SpanText::Volatile(_) => rest,
    };
    let end = memchr::memchr2(b'"', b'\\', scanned)?;
    let string = &rest[..end];
    if rest[end] != b'"' || string.iter().any(|&byte| byte < 0x20) {
        return None;
    }
    let string = std::str::from_utf8(string).ok()?;
    match text {
        SpanText::Uid | SpanText::Volatile(VolatileText::Any) => Some(end),
        SpanText::Volatile(VolatileText::Time) => is_written_back_as_read(string).then_some(end),
    }
}

/// Whether Kubernetes' `Time` reads `text` and writes it back as `text`, and it is not the Unix epoch: the
/// extension's status types read an absent time as the epoch and leave it out when they write
/// ([`crate::apis::common::is_unset_time`]), so a handler that decodes and re-encodes them would not write it back.
fn is_written_back_as_read(text: &str) -> bool {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let quoted = format!("\"{text}\"");
    match serde_json::from_str::<Time>(&quoted) {
        Ok(time) => {
            !crate::apis::common::is_unset_time(&time)
                && serde_json::to_string(&time).is_ok_and(|written| written == quoted)
        }
        Err(_) => false,
    }
}

impl<S: BuildHasher + Default> Default for AnswerMemo<S> {
    fn default() -> Self {
        AnswerMemo { hasher: S::default(), volatile: None, state: RwLock::default() }
    }
}

impl<S: BuildHasher + Default> AnswerMemo<S> {
    /// A memo for a webhook whose answers do not depend on the text of `volatile` strings of its reviews.
    pub fn with_volatile_strings(volatile: &[VolatileString]) -> Self {
        let volatile = (!volatile.is_empty()).then(|| {
            let mut root = PathTree::default();
            for string in volatile {
                let request = root.child(Step::Key(REQUEST_KEY));
                string.path.iter().fold(request, |node, step| node.child(*step)).leaf = Some(string.text);
            }
            root
        });
        AnswerMemo { volatile, ..Self::default() }
    }
}

impl<S> std::fmt::Debug for AnswerMemo<S> {
    // Reviews carry users' objects: only the size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("AnswerMemo")
            .field("entries", &state.entries.values().map(Vec::len).sum::<usize>())
            .field("bytes", &state.bytes)
            .finish()
    }
}

impl<S> AnswerMemo<S> {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // The state stays consistent at every step a panic could interrupt; a poisoned lock is still usable.
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S: BuildHasher> AnswerMemo<S> {
    /// The kept answer for `body`, if it repeats a kept review but for its uid (and the webhook's volatile strings)
    /// and the answer still holds.
    pub fn reuse(&self, body: &[u8]) -> Option<Reused> {
        if body.len() > MEMO_MAX_REVIEW_BYTES + MEMO_MAX_UID_BYTES {
            return None; // not looked up: a review this large is not kept, and one that differs this much is not alike
        }
        let offsets = self.read().uid_offsets;
        let key_end = self.key_end(body);
        let (uid_at, key, entry) = offsets.into_iter().flatten().find_map(|offset| {
            let uid_at = plain_uid_at(body, offset)?;
            let key = self.key(body, &uid_at, key_end);
            let state = self.read();
            let (uid_at, entry) =
                state.entries.get(&key)?.iter().rev().find_map(|entry| Some((entry.matches(body)?, entry)))?;
            entry.used.store(true, Ordering::Relaxed);
            Some((uid_at, key, entry.clone()))
        })?;
        if !entry.reuse.holds() {
            self.forget(key, &entry);
            return None;
        }
        // `Entry::matches` found a plain string there (`plain_string_length`): valid UTF-8.
        let uid = std::str::from_utf8(&body[uid_at]).ok()?.to_owned();
        Some(Reused {
            head: entry.answer_head.clone(),
            uid,
            tail: entry.answer_tail.clone(),
            outcome: entry.outcome.clone(),
        })
    }

    /// Keeps `answer` (the encoded AdmissionReview answering `body`, whose request's uid is `uid`) for reviews that
    /// repeat `body`, as long as `reuse` allows. Nothing is kept when the uid is not a plain string at a place the
    /// memo can prove, or when the review or the answer is too large.
    pub fn remember(&self, body: &[u8], uid: &str, answer: &[u8], outcome: Outcome, reuse: Reuse) {
        if matches!(reuse, Reuse::Never) || body.len() > MEMO_MAX_REVIEW_BYTES || answer.len() > MEMO_MAX_REVIEW_BYTES {
            return;
        }
        let Some(uid_at) = request_uid_span(body).filter(|span| &body[span.clone()] == uid.as_bytes()) else {
            return;
        };
        if plain_uid_at(body, uid_at.start).as_ref() != Some(&uid_at) {
            return;
        }
        let head = answer_head(uid);
        if !answer.starts_with(head.as_bytes()) || answer[head.len()..].first() != Some(&b'"') {
            return;
        }
        let mut spans = vec![(uid_at.clone(), SpanText::Uid)];
        if let Some(volatile) = self.volatile.as_ref().filter(|_| outcome.result == AdmissionResult::Allowed) {
            // A string that is not of its kind here (or has escapes) stays a part that must be equal.
            let of_their_kind = volatile_spans(body, volatile).into_iter().filter(|(span, text)| {
                (span.end < uid_at.start || span.start > uid_at.end)
                    && plain_string_length(&body[span.start..], SpanText::Volatile(*text)) == Some(span.len())
            });
            spans.extend(of_their_kind.map(|(span, text)| (span, SpanText::Volatile(text))));
            spans.sort_by_key(|(span, _)| span.start);
        }
        let entry = Arc::new(Entry {
            review: body.into(),
            spans: spans.into(),
            answer_head: Bytes::copy_from_slice(&answer[..head.len() - uid.len()]),
            answer_tail: Bytes::copy_from_slice(&answer[head.len()..]),
            outcome: Arc::new(outcome),
            reuse,
            used: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        });
        let key = self.key(body, &uid_at, self.key_end(body));
        let mut state = self.write();
        // The same review answered twice (two requests raced past the memo): the newer answer is kept.
        let replaced: Vec<Arc<Entry>> = match state.entries.get(&key) {
            Some(bucket) => bucket.iter().filter(|kept| kept.matches(body).is_some()).cloned().collect(),
            None => Vec::new(),
        };
        for old in &replaced {
            state.remove(key, old);
        }
        state.bytes += entry.cost();
        let bucket = state.entries.entry(key).or_default();
        let oldest = (bucket.len() >= MAX_ENTRIES_PER_KEY).then(|| bucket[0].clone());
        bucket.push(entry.clone());
        if let Some(oldest) = oldest {
            state.remove(key, &oldest);
        }
        state.ring.push_back((key, entry));
        if !state.uid_offsets.contains(&Some(uid_at.start)) {
            state.uid_offsets.rotate_right(1);
            state.uid_offsets[0] = Some(uid_at.start);
        }
        while state.bytes > MEMO_MAX_BYTES && state.evict_one() {}
    }

    /// How many answers are kept, and the bytes the memo holds (dropped answers included until the clock passes).
    #[cfg(test)]
    pub fn size(&self) -> (usize, usize) {
        let state = self.read();
        (state.entries.values().map(Vec::len).sum(), state.bytes)
    }

    fn forget(&self, key: u64, entry: &Arc<Entry>) {
        self.write().remove(key, entry);
    }

    /// Where the part of `body` that [`Self::key`] hashes ends: the whole body, or with volatile strings what comes
    /// before the first `"object":` (the apiserver writes the uid, kind, resource, name, namespace, operation and
    /// user before the objects; other writers may write the uid after them). The volatile strings are in the
    /// objects, and which places a review has is known only once its kept review is found (its answer is then given
    /// only when [`Entry::matches`] the whole body).
    fn key_end(&self, body: &[u8]) -> usize {
        match self.volatile {
            None => body.len(),
            Some(_) => memchr::memmem::find(body, OBJECT_KEY).unwrap_or(body.len()),
        }
    }

    /// The hash of `body` up to `end` ([`Self::key_end`]) without the uid at `uid_at` (and of where that was).
    fn key(&self, body: &[u8], uid_at: &Range<usize>, end: usize) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_usize(uid_at.start);
        hasher.write(&body[..uid_at.start.min(end)]);
        hasher.write(&body[uid_at.end.min(end)..end]);
        hasher.finish()
    }
}

impl State {
    /// Drops `entry` (kept under `key`) from the map at once; its bytes stay counted until the clock reaches it, so
    /// that dropping is O(1) however many answers are kept (after a base-configs change every kept OSC answer is
    /// dropped, one by one).
    fn remove(&mut self, key: u64, entry: &Arc<Entry>) {
        if let Some(bucket) = self.entries.get_mut(&key) {
            bucket.retain(|kept| !Arc::ptr_eq(kept, entry));
            if bucket.is_empty() {
                self.entries.remove(&key);
            }
        }
        entry.dropped.store(true, Ordering::Relaxed);
    }

    /// Drops one entry by the clock (second chance): the hand passes over entries given again since it last came by
    /// (and clears their mark), and drops the first that was not. Each step is O(1); least recently used ones go
    /// first, about. `false` when nothing is kept.
    fn evict_one(&mut self) -> bool {
        // Two rounds at most: after the first, no entry is marked.
        for _ in 0..2 * self.ring.len() {
            let Some((key, entry)) = self.ring.pop_front() else { return false };
            if entry.dropped.load(Ordering::Relaxed) {
                self.bytes -= entry.cost();
                return true;
            }
            if entry.used.swap(false, Ordering::Relaxed) {
                self.ring.push_back((key, entry));
                continue;
            }
            self.bytes -= entry.cost();
            if let Some(bucket) = self.entries.get_mut(&key) {
                bucket.retain(|kept| !Arc::ptr_eq(kept, &entry));
                if bucket.is_empty() {
                    self.entries.remove(&key);
                }
            }
            return true;
        }
        false
    }
}

/// The span of the plain uid string whose first byte is at `offset` in `body` (after a quote; see
/// [`plain_string_length`]).
fn plain_uid_at(body: &[u8], offset: usize) -> Option<Range<usize>> {
    if offset == 0 || body.get(offset - 1) != Some(&b'"') {
        return None;
    }
    let length = plain_string_length(body.get(offset..)?, SpanText::Uid)?;
    Some(offset..offset + length)
}

/// Where the review's `request.uid` string is in `body`, when it is written without escapes (so that its text is
/// its value). `body` must be a review that decoded: then the first `request` key of the top-level object and the
/// first `uid` key in it are the only ones (duplicates are refused), so the scan stops there instead of reading
/// the rest of the body (the apiserver writes the uid first).
fn request_uid_span(body: &[u8]) -> Option<Range<usize>> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use std::cell::Cell;

    /// Visits an object until the key `key`, hands its value to `value`, and stops; `found` says it was seen.
    struct UntilKey<'f, V> {
        key: &'static str,
        value: V,
        found: &'f Cell<bool>,
    }
    impl<'de, V: DeserializeSeed<'de, Value = ()>> Visitor<'de> for UntilKey<'_, V> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == self.key {
                    self.found.set(true);
                    return map.next_value_seed(self.value);
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    impl<'de, V: DeserializeSeed<'de, Value = ()>> DeserializeSeed<'de> for UntilKey<'_, V> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_map(self)
        }
    }
    /// Takes a string borrowed from the body.
    struct Borrowed<'s, 'de>(&'s Cell<Option<&'de str>>);
    impl<'de> Visitor<'de> for Borrowed<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E>(self, text: &'de str) -> Result<(), E> {
            self.0.set(Some(text));
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(()) // escaped: not its own text
        }
    }
    impl<'de> DeserializeSeed<'de> for Borrowed<'_, 'de> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_str(self)
        }
    }

    let uid = Cell::new(None);
    let (request_found, uid_found) = (Cell::new(false), Cell::new(false));
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let until_uid = UntilKey { key: "uid", value: Borrowed(&uid), found: &uid_found };
    // Stopping early leaves the objects unclosed, which the decoder reports as an error: what counts is what was
    // seen before it.
    let _ = UntilKey { key: "request", value: until_uid, found: &request_found }.deserialize(&mut deserializer);
    span_in(body, uid.get().filter(|_| request_found.get() && uid_found.get())?)
}

/// Where `text`, a string the decoder borrowed from `body`, is in `body`.
fn span_in(body: &[u8], text: &str) -> Option<Range<usize>> {
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    (start + text.len() <= body.len()).then_some(start..start + text.len())
}

/// Paths to volatile strings, merged into a tree: the root is the review.
#[derive(Debug, Default)]
struct PathTree {
    keys: Vec<(&'static str, PathTree)>,
    each: Option<Box<PathTree>>,
    /// A string here is volatile.
    leaf: Option<VolatileText>,
}

impl PathTree {
    fn child(&mut self, step: Step) -> &mut PathTree {
        match step {
            Step::Key(key) => {
                let at = match self.keys.iter().position(|(known, _)| *known == key) {
                    Some(at) => at,
                    None => {
                        self.keys.push((key, PathTree::default()));
                        self.keys.len() - 1
                    }
                };
                &mut self.keys[at].1
            }
            Step::Each => self.each.get_or_insert_with(Box::default),
        }
    }
}

/// The places of the strings at the paths of `tree` in `body` (a review that decoded), in the order they come, each
/// written without escapes (a string with escapes is not its own text, and is left out). Empty when `body` cannot
/// be read this way (nested beyond the decoder's default depth, say): then nothing is volatile.
fn volatile_spans(body: &[u8], tree: &PathTree) -> Vec<(Range<usize>, VolatileText)> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;

    /// Walks one value at `tree`'s place, noting the volatile strings in it.
    struct Walk<'t, 'f, 'de> {
        tree: &'t PathTree,
        found: &'f RefCell<Vec<(&'de str, VolatileText)>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_borrowed_str<E>(self, text: &'de str) -> Result<(), E> {
            if let Some(kind) = self.tree.leaf {
                self.found.borrow_mut().push((text, kind));
            }
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(()) // escaped: not its own text
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            match &self.tree.each {
                Some(each) => while seq.next_element_seed(Walk { tree: each, found: self.found })?.is_some() {},
                None => while seq.next_element::<IgnoredAny>()?.is_some() {},
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match self.tree.keys.iter().find(|(known, _)| *known == key) {
                    Some((_, tree)) => map.next_value_seed(Walk { tree, found: self.found })?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }

    let found = RefCell::new(Vec::new());
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    if (Walk { tree, found: &found }).deserialize(&mut deserializer).is_err() {
        return Vec::new();
    }
    found.into_inner().into_iter().filter_map(|(text, kind)| Some((span_in(body, text)?, kind))).collect()
}

/// The beginning of every encoded answer up to the end of its uid (see `review::into_review`).
fn answer_head(uid: &str) -> String {
    format!(
        r#"{{"apiVersion":"{ADMISSION_REVIEW_API_VERSION}","kind":"{ADMISSION_REVIEW_KIND}","response":{{"uid":"{uid}"#
    )
}

#[cfg(test)]
mod tests;
