use std::sync::atomic::AtomicBool;

use kube::core::admission::AdmissionResponse;
use proptest::prelude::*;

use super::*;
use crate::runtime::review::{into_review, parse_review};

/// A review of a ConfigMap whose `request.uid` is the raw JSON text `uid_text` (so tests can write escapes), with
/// `object` (JSON text) as its object.
fn review_with(uid_text: &str, object: &str) -> Vec<u8> {
    format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"{uid_text}","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"name":"cm","namespace":"ns","operation":"CREATE","userInfo":{{"username":"u"}},"object":{object},"oldObject":null,"dryRun":false}}}}"#
    )
    .into_bytes()
}

fn review(uid_text: &str) -> Vec<u8> {
    review_with(uid_text, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm","uid":"object-uid"}}"#)
}

/// What the server answers for `body` when `allowed`, with a patch: the encoded answer and its outcome.
fn answer(body: &[u8], allowed: bool) -> (String, Vec<u8>, Outcome) {
    let request = parse_review(body).expect("a review");
    let mut response = AdmissionResponse::from(&request);
    if allowed {
        response = response
            .with_patch(json_patch::diff(&serde_json::json!({"data": 1}), &serde_json::json!({})))
            .expect("patch");
    } else {
        response = crate::runtime::review::deny(response, DenialReason::Invalid, "spec.x: not allowed");
    }
    let outcome = Outcome::of(
        &response,
        request.operation.clone(),
        request.kind.kind.clone(),
        request.namespace.clone().unwrap_or_default(),
        request.name.clone(),
    );
    let json = serde_json::to_vec(&into_review(&request.uid, response)).expect("encode");
    (request.uid, json, outcome)
}

fn remembered<S: std::hash::BuildHasher>(memo: &AnswerMemo<S>, body: &[u8], allowed: bool, reuse: Reuse) -> Vec<u8> {
    let (uid, json, outcome) = answer(body, allowed);
    memo.remember(body, &uid, &json, outcome, reuse);
    json
}

#[test]
fn a_review_that_comes_again_with_a_new_uid_gets_the_kept_answer_with_that_uid() {
    let memo = <AnswerMemo>::default();
    let first = review("0b8e2c4c-1b5e-4a8e-9c61-6f7d0f0c0001");
    remembered(&memo, &first, true, Reuse::Always);
    assert_eq!(memo.size().0, 1);

    let again = review("0b8e2c4c-1b5e-4a8e-9c61-6f7d0f0c0002");
    let reused = memo.reuse(&again).expect("the kept answer");
    let (_, fresh, outcome) = answer(&again, true);
    assert_eq!(String::from_utf8_lossy(&reused.to_vec()), String::from_utf8_lossy(&fresh));
    assert_eq!(reused.uid(), "0b8e2c4c-1b5e-4a8e-9c61-6f7d0f0c0002");
    assert_eq!(*reused.outcome, outcome);

    // A uid of another length is put in as well.
    let short = review("x");
    let (_, fresh, _) = answer(&short, true);
    assert_eq!(memo.reuse(&short).expect("the kept answer").to_vec(), fresh);
}

#[test]
fn denials_are_kept_and_given_again_with_their_reason() {
    let memo = <AnswerMemo>::default();
    remembered(&memo, &review("a"), false, Reuse::Always);
    let again = review("b");
    let reused = memo.reuse(&again).expect("the kept denial");
    let (_, fresh, outcome) = answer(&again, false);
    assert_eq!(reused.to_vec(), fresh);
    assert_eq!(reused.outcome.result, AdmissionResult::Denied);
    assert_eq!(reused.outcome.denial, Some(DenialReason::Invalid));
    assert_eq!(reused.outcome.message, "spec.x: not allowed");
    assert_eq!(*reused.outcome, outcome);
}

#[test]
fn a_review_that_differs_in_any_other_byte_is_answered_afresh() {
    let memo = <AnswerMemo>::default();
    let first = review("a");
    remembered(&memo, &first, true, Reuse::Always);
    let uid_at = first.windows(3).position(|w| w == b"\"a\"").expect("uid") + 1;
    for at in (0..first.len()).filter(|&at| at != uid_at) {
        // Change the byte at `at` of the review with the new uid (same length, so same positions).
        let mut changed = review("b");
        changed[at] = if changed[at] == b'x' { b'y' } else { b'x' };
        assert!(memo.reuse(&changed).is_none(), "byte {at} changed ({:?})", String::from_utf8_lossy(&changed));
    }
    // Longer or shorter by a byte at the end.
    let mut longer = review("b");
    longer.push(b' ');
    assert!(memo.reuse(&longer).is_none());
    let shorter = &review("b")[..first.len() - 1];
    assert!(memo.reuse(shorter).is_none());
}

#[test]
fn a_uid_that_is_not_a_plain_string_is_never_put_into_a_kept_answer() {
    let memo = <AnswerMemo>::default();
    remembered(&memo, &review("plain"), true, Reuse::Always);
    for uid_text in [r#"a\"b"#, r"a\\b", r"\u0061", "a\u{1}b", &"u".repeat(MEMO_MAX_UID_BYTES + 1)] {
        let body = review(uid_text);
        assert!(memo.reuse(&body).is_none(), "uid {uid_text:?} was put into a kept answer");
    }
    // A uid cut short by a quote turns the rest into other tokens: no match either.
    let body = review(r#"a","x":"b"#);
    assert!(memo.reuse(&body).is_none());
    // Invalid UTF-8 in the uid.
    let mut body = review("ab");
    let at = body.windows(4).position(|w| w == b"\"ab\"").expect("uid") + 1;
    body[at] = 0xff;
    assert!(memo.reuse(&body).is_none());
}

#[test]
fn an_empty_uid_is_given_the_answer_when_the_decoder_accepts_it() {
    // The decoder accepts an empty uid (kube's type has no rule against it), so the memo does too.
    let memo = <AnswerMemo>::default();
    remembered(&memo, &review("a"), true, Reuse::Always);
    let body = review("");
    let (_, fresh, _) = answer(&body, true);
    assert_eq!(memo.reuse(&body).map(|r| r.to_vec()), Some(fresh));
}

#[test]
fn a_review_whose_uid_has_escapes_is_not_kept() {
    let memo = <AnswerMemo>::default();
    remembered(&memo, &review(r"\u0061bc"), true, Reuse::Always);
    assert_eq!(memo.size().0, 0);
    assert!(memo.reuse(&review(r"\u0061bc")).is_none());
}

#[test]
fn the_uid_is_the_requests_even_where_another_uid_comes_first() {
    // `object` before `uid`, with the object's uid equal to the request's: the memo must use the request's.
    let body_with = |request_uid: &str, object_uid: &str| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"object":{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm","uid":"{object_uid}"}}}},"uid":"{request_uid}","kind":{{"group":"","version":"v1","kind":"ConfigMap"}},"resource":{{"group":"","version":"v1","resource":"configmaps"}},"name":"cm","operation":"CREATE","userInfo":{{}}}}}}"#
        )
        .into_bytes()
    };
    let memo = <AnswerMemo>::default();
    remembered(&memo, &body_with("same", "same"), true, Reuse::Always);
    let again = body_with("other", "same");
    let (_, fresh, _) = answer(&again, true);
    assert_eq!(memo.reuse(&again).map(|r| r.to_vec()), Some(fresh));
    // The object's uid is part of the review like any other byte.
    assert!(memo.reuse(&body_with("same", "xxxx")).is_none());
}

#[test]
fn an_answer_that_no_longer_holds_is_forgotten_and_never_kept_ones_are_not_kept() {
    let memo = <AnswerMemo>::default();
    let holds = Arc::new(AtomicBool::new(true));
    let check = holds.clone();
    remembered(&memo, &review("a"), true, Reuse::while_holds(move || check.load(Ordering::SeqCst)));
    assert!(memo.reuse(&review("b")).is_some());
    holds.store(false, Ordering::SeqCst);
    assert!(memo.reuse(&review("c")).is_none());
    assert_eq!(memo.size().0, 0, "the answer that no longer holds is dropped");
    holds.store(true, Ordering::SeqCst);
    assert!(memo.reuse(&review("d")).is_none(), "a dropped answer does not come back");

    let bytes = memo.size().1;
    remembered(&memo, &review("a"), true, Reuse::Never);
    assert_eq!(memo.size(), (0, bytes), "an answer that must not be reused is not kept");
}

#[test]
fn an_answer_that_does_not_start_as_the_server_writes_them_is_not_kept() {
    let memo = <AnswerMemo>::default();
    let body = review("a");
    let (uid, _, outcome) = answer(&body, true);
    let odd = format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{{"uid":"{uid}","allowed":true}}}}"#
    );
    memo.remember(&body, &uid, odd.as_bytes(), outcome.clone(), Reuse::Always);
    assert_eq!(memo.size().0, 0);
    // Nor one for a uid other than the review's.
    let (_, json, _) = answer(&review("b"), true);
    memo.remember(&body, "b", &json, outcome, Reuse::Always);
    assert_eq!(memo.size().0, 0);
}

#[test]
fn the_memo_stays_within_its_bytes_and_keeps_the_answers_given_again() {
    let memo = <AnswerMemo>::default();
    let padding = "p".repeat(64 * 1024);
    let object = |i: usize| {
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm{i}"}},"data":{{"p":"{padding}"}}}}"#)
    };
    let (first, second) = (review_with("a", &object(0)), review_with("a", &object(1)));
    remembered(&memo, &first, true, Reuse::Always);
    remembered(&memo, &second, true, Reuse::Always);
    for i in 2..200 {
        // The first stays in use; the second does not.
        assert!(memo.reuse(&review_with("z", &object(0))).is_some(), "the first was dropped at {i}");
        remembered(&memo, &review_with("a", &object(i)), true, Reuse::Always);
        assert!(memo.size().1 <= MEMO_MAX_BYTES, "{} bytes kept", memo.size().1);
    }
    assert!(
        memo.reuse(&review_with("z", &object(1))).is_none(),
        "an answer never given again was kept over the one in use"
    );
    assert!(memo.size().0 > 10, "only {} answers kept", memo.size().0);

    // Reviews over the size limit are not kept at all.
    let huge = review_with("a", &format!(r#"{{"data":"{}"}}"#, "h".repeat(MEMO_MAX_REVIEW_BYTES)));
    remembered(&memo, &huge, true, Reuse::Always);
    assert!(memo.reuse(&review_with("b", &format!(r#"{{"data":"{}"}}"#, "h".repeat(MEMO_MAX_REVIEW_BYTES)))).is_none());
}

/// A hash under which every review collides, to prove that the bytes, not the hash, decide a match.
#[derive(Default)]
struct Colliding;

impl std::hash::BuildHasher for Colliding {
    type Hasher = CollidingHasher;
    fn build_hasher(&self) -> CollidingHasher {
        CollidingHasher
    }
}

struct CollidingHasher;

impl std::hash::Hasher for CollidingHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn reviews_whose_hashes_collide_keep_their_own_answers() {
    let memo = AnswerMemo::<Colliding>::default();
    let object = |name: &str| format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}}}}"#);
    let (allowed, denied) = (review_with("a", &object("one")), review_with("a", &object("two")));
    remembered(&memo, &allowed, true, Reuse::Always);
    remembered(&memo, &denied, false, Reuse::Always);
    assert_eq!(memo.size().0, 2);
    assert_eq!(memo.reuse(&review_with("b", &object("one"))).map(|r| r.outcome.result), Some(AdmissionResult::Allowed));
    assert_eq!(memo.reuse(&review_with("b", &object("two"))).map(|r| r.outcome.result), Some(AdmissionResult::Denied));
    assert!(memo.reuse(&review_with("b", &object("own"))).is_none());
    assert!(memo.reuse(&review_with("b", &object("tw"))).is_none());
}

#[test]
fn keeping_the_same_review_twice_keeps_one_answer() {
    let memo = <AnswerMemo>::default();
    remembered(&memo, &review("a"), true, Reuse::Always);
    remembered(&memo, &review("b"), true, Reuse::Always);
    assert_eq!(memo.size().0, 1);
}

proptest! {
    /// Whatever text stands where the uid was, the memo answers only when decoding that review gives the same
    /// request with that text as its uid, and then exactly what answering it afresh gives.
    #[test]
    fn a_kept_answer_is_given_only_where_decoding_would_give_it(uid_text in "[a-f0-9\\-\"\\\\ /\u{1}\u{7f}é€,:{}]{0,40}") {
        let memo = <AnswerMemo>::default();
        remembered(&memo, &review("0b8e2c4c-1b5e-4a8e-9c61-6f7d0f0c0001"), true, Reuse::Always);
        let body = review(&uid_text);
        if let Some(reused) = memo.reuse(&body) {
            let request = parse_review(&body).expect("a review the memo answered decodes");
            prop_assert_eq!(&request.uid, &uid_text);
            let (_, fresh, _) = answer(&body, true);
            prop_assert_eq!(reused.to_vec(), fresh);
        } else {
            // Plain uids always match.
            let plain = !uid_text.contains(['"', '\\']) && !uid_text.bytes().any(|b| b < 0x20);
            prop_assert!(!plain || uid_text.len() > MEMO_MAX_UID_BYTES, "plain uid {:?} was not matched", uid_text);
        }
    }
}

/// The strings of [`written_again`] reviews that a webhook like the OSC one says its answers do not depend on.
const VOLATILE: &[VolatileString] = &[
    VolatileString {
        path: &[Step::Key("object"), Step::Key("metadata"), Step::Key("annotations"), Step::Key("stamp")],
        text: VolatileText::Any,
    },
    VolatileString {
        path: &[Step::Key("object"), Step::Key("metadata"), Step::Key("resourceVersion")],
        text: VolatileText::Any,
    },
    VolatileString {
        path: &[Step::Key("object"), Step::Key("metadata"), Step::Key("managedFields"), Step::Each, Step::Key("time")],
        text: VolatileText::Time,
    },
    VolatileString {
        path: &[Step::Key("oldObject"), Step::Key("metadata"), Step::Key("resourceVersion")],
        text: VolatileText::Any,
    },
];

/// The review of an UPDATE whose object and old object carry the given raw JSON texts at the [`VOLATILE`] places:
/// the stamp annotation, the resourceVersion, two managedFields times, and the old object's resourceVersion.
fn written_again(uid: &str, stamp: &str, version: &str, times: [&str; 2], old_version: &str) -> Vec<u8> {
    let [first, second] = times;
    let object = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"annotations":{{"note":"a \"quoted\"\nline","stamp":"{stamp}"}},"managedFields":[{{"manager":"gardenlet","operation":"Update","time":"{first}"}},{{"manager":"os","operation":"Update","subresource":"status","time":"{second}"}}],"name":"cm","resourceVersion":"{version}"}},"data":{{"resourceVersion":"41"}}}}"#
    );
    let old = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm","resourceVersion":"{old_version}"}}}}"#
    );
    replaced(&review_with(uid, &object), br#""oldObject":null"#, format!(r#""oldObject":{old}"#).as_bytes())
}

/// `body` with the first `from` replaced by `to`.
fn replaced(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = memchr::memmem::find(body, from).expect("the text to replace");
    [&body[..at], to, &body[at + from.len()..]].concat()
}

const T1: &str = "2026-12-01T15:38:20Z";
const T2: &str = "2026-12-01T16:40:01Z";

#[test]
fn a_review_written_again_with_new_volatile_strings_gets_the_kept_allowed_answer() {
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(
        &memo,
        &written_again("u1", "2026-12-01T15:38:20.123456789Z", "41", [T1, T1], "40"),
        true,
        Reuse::Always,
    );

    // Another uid, a stamp of another length, new versions and times: the same answer with the new uid.
    let again = written_again("u2", "2026-12-01T16:40:01.5Z", "1041", [T2, T1], "1040");
    let reused = memo.reuse(&again).expect("the kept answer");
    let (_, fresh, outcome) = answer(&again, true);
    assert_eq!(String::from_utf8_lossy(&reused.to_vec()), String::from_utf8_lossy(&fresh));
    assert_eq!(reused.uid(), "u2");
    assert_eq!(*reused.outcome, outcome);

    // The same string outside its place (`data.resourceVersion`) is not volatile.
    let elsewhere = replaced(
        &written_again("u3", "s", "1041", [T1, T1], "40"),
        br#""data":{"resourceVersion":"41"}"#,
        br#""data":{"resourceVersion":"42"}"#,
    );
    assert!(memo.reuse(&elsewhere).is_none());
    // Nor is any other byte.
    let other = replaced(&written_again("u3", "s", "41", [T1, T1], "40"), b"\"os\"", b"\"ot\"");
    assert!(memo.reuse(&other).is_none());
    // A memo without volatile strings needs every byte but the uid again.
    let plain = <AnswerMemo>::default();
    remembered(&plain, &written_again("u1", "a", "41", [T1, T1], "40"), true, Reuse::Always);
    assert!(plain.reuse(&written_again("u2", "a", "41", [T1, T1], "40")).is_some());
    assert!(plain.reuse(&written_again("u2", "b", "41", [T1, T1], "40")).is_none());
}

#[test]
fn a_volatile_string_not_of_its_kind_gets_a_fresh_answer() {
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(&memo, &written_again("u1", "s1", "41", [T1, T1], "40"), true, Reuse::Always);
    let with = |stamp: &str, time: &str| memo.reuse(&written_again("u2", stamp, "42", [time, T1], "41"));
    assert!(with("s2", T2).is_some());
    // Escapes and control characters: the string is not its own text.
    assert!(with(r"s\n2", T2).is_none());
    assert!(with(r#"s\"2"#, T2).is_none());
    assert!(with("s\u{1}2", T2).is_none());
    // Times the decoder refuses, or writes back otherwise (the patch of a fresh answer would change them).
    for time in [
        "yesterday",
        "2026-13-01T15:38:20Z",
        "2026-12-01T15:38:20+00:00",
        "2026-12-01T15:38:20.5Z",
        "1970-01-01T00:00:00Z",
        "",
    ] {
        assert!(with("s2", time).is_none(), "{time}");
    }
}

#[test]
fn a_volatile_string_that_begins_with_the_kept_text_is_read_to_its_end() {
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(&memo, &written_again("u1", "s1", "41", [T1, T1], "40"), true, Reuse::Always);
    // The same texts again are taken as they are; longer ones that begin with them are read to their end.
    assert!(memo.reuse(&written_again("u2", "s1", "41", [T1, T1], "40")).is_some());
    assert!(memo.reuse(&written_again("u2", "s12", "411", [T1, T1], "401")).is_some());
    // Which for a time is then not one the decoder writes back as read.
    assert!(memo.reuse(&written_again("u2", "s1", "41", [&format!("{T1}x"), T1], "40")).is_none());
}

#[test]
fn denials_and_volatile_strings_with_escapes_need_the_same_text_again() {
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(&memo, &written_again("u1", "s1", "41", [T1, T1], "40"), false, Reuse::Always);
    assert!(memo.reuse(&written_again("u2", "s1", "41", [T1, T1], "40")).is_some());
    assert!(memo.reuse(&written_again("u2", "s2", "41", [T1, T1], "40")).is_none());

    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(&memo, &written_again("u1", r"s\t1", "41", [T1, T1], "40"), true, Reuse::Always);
    assert!(memo.reuse(&written_again("u2", r"s\t1", "42", [T2, T2], "41")).is_some());
    assert!(memo.reuse(&written_again("u2", "s2", "42", [T2, T2], "41")).is_none());
}

/// `value` without the strings at the [`VOLATILE`] places and without the uid.
fn without_volatile(mut value: serde_json::Value) -> serde_json::Value {
    let request = &mut value["request"];
    request["uid"].take();
    request["object"]["metadata"]["annotations"]["stamp"].take();
    request["object"]["metadata"]["resourceVersion"].take();
    request["oldObject"]["metadata"]["resourceVersion"].take();
    if let Some(fields) = request["object"]["metadata"]["managedFields"].as_array_mut() {
        for field in fields {
            field["time"].take();
        }
    }
    value
}

proptest! {
    /// Whatever texts stand at the volatile places, the memo answers only when the review decodes into the kept
    /// one but for the strings there (and then with what answering it afresh gives).
    #[test]
    fn a_kept_answer_is_given_only_where_the_review_differs_in_volatile_strings(
        stamp in "[a-z0-9\"\\\\ \u{1}é:.{}]{0,12}",
        version in "[0-9\"\\\\,}]{0,6}",
        time in prop_oneof![Just(T2.to_owned()), "[0-9TZ:.\\-\"\\\\]{0,22}"],
    ) {
        let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
        let kept = written_again("u1", "s1", "41", [T1, T1], "40");
        remembered(&memo, &kept, true, Reuse::Always);
        let body = written_again("u2", &stamp, &version, [&time, T1], &version);
        if let Some(reused) = memo.reuse(&body) {
            parse_review(&body).expect("a review the memo answered decodes");
            let decoded: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let kept: serde_json::Value = serde_json::from_slice(&kept).expect("JSON");
            prop_assert_eq!(without_volatile(decoded), without_volatile(kept));
            let (_, fresh, _) = answer(&body, true);
            prop_assert_eq!(reused.to_vec(), fresh);
        } else {
            let plain = |text: &str| !text.contains(['"', '\\']) && !text.bytes().any(|b| b < 0x20);
            prop_assert!(!(plain(&stamp) && plain(&version) && time == T2), "plain texts were not matched");
        }
    }
}

#[test]
fn a_review_with_its_uid_after_the_objects_gets_the_kept_answer_too() {
    // Written with sorted keys (as a JSON library may): the objects, and their volatile strings, before the uid.
    let sorted = |uid: &str, stamp: &str| -> Vec<u8> {
        let value: serde_json::Value =
            serde_json::from_slice(&written_again(uid, stamp, "41", [T1, T1], "40")).expect("JSON");
        serde_json::to_vec(&value).expect("JSON")
    };
    let kept = sorted("u1", "s1");
    assert!(memchr::memmem::find(&kept, b"\"object\":") < memchr::memmem::find(&kept, b"\"uid\":\"u1\""));
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    remembered(&memo, &kept, true, Reuse::Always);
    let again = sorted("u2", "s2");
    let (_, fresh, _) = answer(&again, true);
    assert_eq!(memo.reuse(&again).expect("the kept answer").to_vec(), fresh);
}

#[test]
fn only_the_newest_versions_of_an_object_are_kept() {
    let memo = <AnswerMemo>::with_volatile_strings(VOLATILE);
    // Versions of one object that differ outside the volatile strings share the key of what precedes the objects.
    let version = |n: usize, uid: &str| {
        replaced(&written_again(uid, "s", "41", [T1, T1], "40"), b"\"os\"", format!("\"os-{n}\"").as_bytes())
    };
    for n in 0..MAX_ENTRIES_PER_KEY + 2 {
        remembered(&memo, &version(n, "u1"), true, Reuse::Always);
    }
    assert_eq!(memo.size().0, MAX_ENTRIES_PER_KEY);
    assert!(memo.reuse(&version(0, "u2")).is_none(), "the oldest went");
    assert!(memo.reuse(&version(MAX_ENTRIES_PER_KEY + 1, "u2")).is_some(), "the newest stays");
}
