//! The admission plumbing shared by every webhook: the handler abstraction, decoding of the incoming
//! `AdmissionReview` and wrapping of a handler's answer into the outgoing one.
//!
//! Everything here is pure (no I/O), so the HTTP server in [`super::server`] stays thin and these
//! rules are unit-tested directly.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::response::Status;
use kube::core::{ApiResource, DynamicObject, DynamicResourceScope, Resource, TypeMeta};
use serde::de::{DeserializeOwned, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use thiserror::Error;

use crate::decode::DecodeError;

use super::answer_memo::VolatileString;
use super::metrics::{AdmissionResult, DenialReason};

/// The only AdmissionReview version served. kube-apiserver sends the first entry of a webhook's
/// `admissionReviewVersions` it supports, and every supported apiserver supports `v1`.
pub const ADMISSION_REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// `kind` of an AdmissionReview.
pub const ADMISSION_REVIEW_KIND: &str = "AdmissionReview";

/// The request type every handler receives: the object stays the JSON text the apiserver sent ([`RawObject`]), and
/// the handler decodes it once into what it needs (e.g. a Shoot or an OperatingSystemConfig) and denies what it
/// cannot decode.
pub type RawAdmissionRequest = AdmissionRequest<RawObject>;

/// An object of an admission request (`object`, `oldObject`) as the JSON text the apiserver sent, with its metadata.
///
/// Keeping the text lets a handler decode the object once, straight into its own typed value ([`Self::decode`]),
/// instead of through a generic object and a JSON tree. It accepts exactly what kube's [`DynamicObject`] accepts:
/// a JSON object whose `metadata`, if given, is an `ObjectMeta` (so a review is malformed or not as before).
#[derive(Clone)]
pub struct RawObject {
    metadata: ObjectMeta,
    json: Box<RawValue>,
    /// `apiVersion` and `kind` are each given once, as strings: the object reads the same as a [`DynamicObject`],
    /// which drops these fields otherwise. Objects from the apiserver always have them so.
    plain_types: bool,
}

impl RawObject {
    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    /// The object's JSON text, as the apiserver sent it.
    pub fn json(&self) -> &str {
        self.json.get()
    }

    /// Decodes the object as a `K`, reporting a problem at its field path in plain words ([`crate::decode`]). `K` is
    /// a Kubernetes object type: its `metadata` is an [`ObjectMeta`] (which ignores fields it does not know).
    ///
    /// The text is decoded directly. Only when that fails, or for an object whose `apiVersion` / `kind` are not
    /// plain, is it decoded as it always was (a [`DynamicObject`], its JSON tree, the `K` from that), so that the
    /// answer is that decoding's: the same field, the same words, whatever the order of the object's fields.
    ///
    /// Like [`crate::decode::from_str`], it relies on the review's nesting bound ([`parse_review`]) and on the
    /// admission threads' large stacks: call it on those.
    pub fn decode<K: DeserializeOwned>(&self) -> Result<K, DecodeError> {
        if self.plain_types
            && let Ok(object) = crate::decode::from_str(self.json())
        {
            return Ok(object);
        }
        crate::decode::from_value(self.as_dynamic_tree()?)
    }

    /// The object as a JSON tree: what a typed value decoded from it is compared with, e.g. for a JSON patch. The
    /// metadata is the decoded [`ObjectMeta`] written back (fields it does not know are not part of it), the rest is
    /// the object as sent; the same tree as a [`DynamicObject`]'s.
    pub fn to_tree(&self) -> Result<serde_json::Value, DecodeError> {
        if !self.plain_types {
            return self.as_dynamic_tree();
        }
        let mut tree: serde_json::Value = crate::decode::from_str(self.json())?;
        let metadata = crate::decode::to_value(&self.metadata)?;
        if let Some(fields) = tree.as_object_mut() {
            fields.insert("metadata".to_owned(), metadata);
        }
        Ok(tree)
    }

    /// The object decoded as kube's [`DynamicObject`] and encoded as a JSON tree, as handlers used to read it.
    fn as_dynamic_tree(&self) -> Result<serde_json::Value, DecodeError> {
        let object: DynamicObject = crate::decode::from_str(self.json())?;
        crate::decode::to_value(&object)
    }
}

impl fmt::Debug for RawObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawObject").field("metadata", &self.metadata).field("bytes", &self.json().len()).finish()
    }
}

/// Like [`DynamicObject`]'s: which type an object is, is known from the request, not from a Rust type.
impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        let shape = decode_unbounded_str::<ObjectShape>(json.get()).map_err(D::Error::custom)?;
        Ok(RawObject { metadata: shape.metadata, json, plain_types: shape.api_version == 1 && shape.kind == 1 })
    }
}

/// Serialised as the JSON text it was read from.
impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// One pass over an object's text that fails where decoding it as a [`DynamicObject`] fails, without building
/// anything but its metadata: it must be a JSON object, `metadata` given at most once and an `ObjectMeta`, and every
/// value must be one a JSON tree takes (numbers in range, strings with valid escapes; [`RawValue`] checks neither).
/// It counts the string-valued `apiVersion` and `kind` fields; any other of that name counts as two.
#[derive(Default)]
struct ObjectShape {
    metadata: ObjectMeta,
    api_version: u8,
    kind: u8,
}

impl<'de> Deserialize<'de> for ObjectShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectShapeVisitor)
    }
}

struct ObjectShapeVisitor;

impl<'de> Visitor<'de> for ObjectShapeVisitor {
    type Value = ObjectShape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectShape, A::Error> {
        let mut shape = ObjectShape::default();
        let mut metadata_seen = false;
        while let Some(key) = map.next_key::<ShapeKey>()? {
            let count = match key {
                ShapeKey::Metadata if metadata_seen => return Err(A::Error::duplicate_field("metadata")),
                ShapeKey::Metadata => {
                    metadata_seen = true;
                    shape.metadata = map.next_value()?;
                    continue;
                }
                ShapeKey::ApiVersion => &mut shape.api_version,
                ShapeKey::Kind => &mut shape.kind,
                ShapeKey::Other => {
                    map.next_value::<AnyJson>()?;
                    continue;
                }
            };
            let AnyJson { string } = map.next_value()?;
            *count = count.saturating_add(if string { 1 } else { 2 });
        }
        Ok(shape)
    }
}

/// A key of an object, as far as [`ObjectShape`] cares.
enum ShapeKey {
    Metadata,
    ApiVersion,
    Kind,
    Other,
}

impl<'de> Deserialize<'de> for ShapeKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ShapeKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<ShapeKey, E> {
                Ok(match key {
                    "metadata" => ShapeKey::Metadata,
                    "apiVersion" => ShapeKey::ApiVersion,
                    "kind" => ShapeKey::Kind,
                    _ => ShapeKey::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Any JSON value, parsed as a JSON tree would parse it but kept nowhere; whether it was a string.
struct AnyJson {
    string: bool,
}

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyJsonVisitor)
    }
}

struct AnyJsonVisitor;

impl<'de> Visitor<'de> for AnyJsonVisitor {
    type Value = AnyJson;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson { string: false })
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson { string: false })
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson { string: false })
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson { string: false })
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson { string: true })
    }
    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson { string: false })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson { string: false })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_key::<AnyJson>()?.is_some() {
            map.next_value::<AnyJson>()?;
        }
        Ok(AnyJson { string: false })
    }
}

/// The request type handlers received before they read the object's text themselves; it still decides which
/// message a malformed review gets (see [`why_not_a_review`]).
type DynamicAdmissionRequest = AdmissionRequest<DynamicObject>;

/// An admission webhook: validator, defaulter or mutator, registered on the server by path.
///
/// Implement it on a struct that carries the handler's dependencies, or pass an async closure /
/// `async fn(RawAdmissionRequest) -> AdmissionResponse`, which implement it through the blanket impl.
///
/// The handler builds its answer from the request, typically `AdmissionResponse::from(&request)`
/// (allow), `.deny(reason)` or `.with_patch(patch)`. The server always echoes the request's `uid`
/// and sets the `admission.k8s.io/v1` envelope, whatever the handler filled in. A handler that
/// panics is answered with a denial ("internal error"); it does not take the server down.
///
/// A handler that knows what its answer depends on implements [`admit_reusable`](Self::admit_reusable) too, so
/// that the server may give the same answer to a review that comes again (see [`super::answer_memo`]); the
/// default says "never reuse", which is always right.
pub trait AdmissionHandler: Send + Sync + 'static {
    /// Decides on one admission request.
    fn admit(&self, request: RawAdmissionRequest) -> impl Future<Output = AdmissionResponse> + Send;

    /// Decides on one admission request and says for how long the answer holds for a review that differs from
    /// this one in nothing but its `uid`. The answer given again is the same but for the uid the server echoes, so
    /// an answer that holds must not use the uid anywhere else (in a message, say).
    fn admit_reusable(&self, request: RawAdmissionRequest) -> impl Future<Output = Answer> + Send {
        async move { Answer { response: self.admit(request).await, reuse: Reuse::Never } }
    }

    /// Strings of the reviews whose text this handler's answers do not depend on (as long as each is of its kind):
    /// an allowed answer that holds is also given again to a review that differs from the answered one only in them
    /// (and its uid). Nothing by default.
    fn volatile_strings(&self) -> &'static [VolatileString] {
        &[]
    }
}

/// A handler's answer and whether the server may give it again.
pub struct Answer {
    pub response: AdmissionResponse,
    pub reuse: Reuse,
}

/// For how long an answer holds for a review that repeats the answered one in everything but its `uid`.
#[derive(Clone)]
pub enum Reuse {
    /// The answer follows from the review alone (and the process's fixed settings).
    Always,
    /// The answer also depends on state outside the review; it holds while the check says that state is what it
    /// was. The check runs on every reuse, on the server's connection task (outside the handler's panic isolation),
    /// so it must be cheap, must not block and must not panic (e.g. compare versions in a watch-backed store).
    While(Arc<dyn Fn() -> bool + Send + Sync>),
    /// The answer must not be given again (e.g. it came from a read that may be stale, or from a failure).
    Never,
}

impl Reuse {
    /// Reuse while `check` holds.
    pub fn while_holds(check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Reuse::While(Arc::new(check))
    }

    /// Whether the answer may be given again now.
    pub fn holds(&self) -> bool {
        match self {
            Reuse::Always => true,
            Reuse::While(check) => check(),
            Reuse::Never => false,
        }
    }
}

impl fmt::Debug for Reuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reuse::Always => "Always",
            Reuse::While(_) => "While(..)",
            Reuse::Never => "Never",
        })
    }
}

impl<F, Fut> AdmissionHandler for F
where
    F: Fn(RawAdmissionRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = AdmissionResponse> + Send,
{
    fn admit(&self, request: RawAdmissionRequest) -> impl Future<Output = AdmissionResponse> + Send {
        self(request)
    }
}

/// Object-safe form of [`AdmissionHandler`], so handlers of different types share one router.
pub(crate) trait DynHandler: Send + Sync {
    fn call(self: Arc<Self>, request: RawAdmissionRequest) -> BoxFuture<'static, Answer>;
    fn volatile_strings(&self) -> &'static [VolatileString];
}

impl<H: AdmissionHandler> DynHandler for H {
    fn call(self: Arc<Self>, request: RawAdmissionRequest) -> BoxFuture<'static, Answer> {
        Box::pin(async move { self.admit_reusable(request).await })
    }

    fn volatile_strings(&self) -> &'static [VolatileString] {
        AdmissionHandler::volatile_strings(self)
    }
}

/// How deeply nested an AdmissionReview may be. kube-apiserver's JSON decoder refuses objects nested deeper than
/// 10,000 levels, so no object it sends is deeper; the review wraps the object in three more (`{"request":
/// {"object": …}}`), the rest is slack. Anything deeper cannot come from the apiserver and is refused before it is
/// parsed, which bounds every recursive step after it (decoding, handlers, dropping the values).
pub const MAX_NESTING_DEPTH: usize = 10_000 + 8;

/// Why a request body is not an admission request; the text is sent back with HTTP 400.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ReviewError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    /// Nested deeper than any object the apiserver accepts (see [`MAX_NESTING_DEPTH`]).
    #[error("request body is nested {depth} levels deep, more than the {MAX_NESTING_DEPTH} the apiserver can send")]
    TooDeep { depth: usize },
    /// JSON, but not an object.
    #[error("request body is not a JSON object")]
    NotAnObject,
    /// An object of another type or version.
    #[error(
        "expected apiVersion {ADMISSION_REVIEW_API_VERSION:?} and kind {ADMISSION_REVIEW_KIND:?}, got apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    /// An AdmissionReview without `request` (e.g. a response sent back to us).
    #[error("AdmissionReview has no request")]
    MissingRequest,
    /// An AdmissionReview whose `request` does not have the expected shape.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
}

/// Decodes an HTTP body into the admission request it carries.
///
/// Only `admission.k8s.io/v1` `AdmissionReview`s with a `request` are accepted.
///
/// Objects of any depth the apiserver accepts are decoded: serde_json's default recursion limit (128) would refuse
/// a Shoot whose unrelated fields (e.g. `spec.provider.infrastructureConfig`) nest deeply, so the limit is lifted and
/// the parser's stack grows on the heap instead; the depth itself is bounded by [`MAX_NESTING_DEPTH`] first.
pub fn parse_review(body: &[u8]) -> Result<RawAdmissionRequest, ReviewError> {
    let depth = nesting_depth(body);
    if depth > MAX_NESTING_DEPTH {
        return Err(ReviewError::TooDeep { depth });
    }
    // JSON text is UTF-8 throughout; values the decoder skips (fields nobody reads) are not checked by it.
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ReviewError::NotJson(format!("not UTF-8: {e}")));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match json_problem(body) {
            None => ReviewError::NotAnObject,
            Some(problem) => ReviewError::NotJson(problem),
        });
    }
    // One pass from the bytes into kube's typed request; the objects stay text (checked, not built), which their
    // handler decodes. Only when that fails is the body looked at again, to say why.
    let review = match decode_unbounded::<Review<RawAdmissionRequest>>(body) {
        Ok(review) => review,
        Err(error) => return Err(why_not_a_review(body, error)),
    };
    if review.api_version != ADMISSION_REVIEW_API_VERSION || review.kind != ADMISSION_REVIEW_KIND {
        return Err(ReviewError::WrongType { api_version: review.api_version, kind: review.kind });
    }
    let mut request = review.request.ok_or(ReviewError::MissingRequest)?;
    request.types = TypeMeta { api_version: review.api_version, kind: review.kind };
    Ok(request)
}

/// An AdmissionReview as it arrives; `apiVersion` and `kind` of another type than a string read as empty, so that
/// the answer names the wrong type instead of a decoding error.
#[derive(Deserialize)]
struct Review<R> {
    #[serde(rename = "apiVersion", default, deserialize_with = "lenient_string")]
    api_version: String,
    #[serde(default, deserialize_with = "lenient_string")]
    kind: String,
    #[serde(default = "Option::default")]
    request: Option<R>,
}

/// A string field, or an empty string for a value of any other type.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => text,
        _ => String::new(),
    })
}

/// Why a JSON object did not decode as an AdmissionReview: the wrong type or no request comes first (as the
/// apiserver would see it), a malformed request after that, and a body that is no JSON at all last.
fn why_not_a_review(body: &[u8], error: serde_json::Error) -> ReviewError {
    if let Some(problem) = json_problem(body) {
        return ReviewError::NotJson(problem);
    }
    match decode_unbounded::<Review<IgnoredAny>>(body) {
        Ok(envelope)
            if envelope.api_version != ADMISSION_REVIEW_API_VERSION || envelope.kind != ADMISSION_REVIEW_KIND =>
        {
            ReviewError::WrongType { api_version: envelope.api_version, kind: envelope.kind }
        }
        Ok(Review { request: None, .. }) => ReviewError::MissingRequest,
        // Worded as decoding the request with kube's `DynamicObject` words it (which fails where the request with
        // its objects as text fails): where the problem is in an object, that names it as it always did.
        Ok(_) | Err(_) => ReviewError::Malformed(
            decode_unbounded::<Review<DynamicAdmissionRequest>>(body).err().unwrap_or(error).to_string(),
        ),
    }
}

/// What makes `body` (known to be UTF-8) no JSON text, if anything.
fn json_problem(body: &[u8]) -> Option<String> {
    decode_unbounded::<IgnoredAny>(body).err().map(|e| e.to_string())
}

/// The AdmissionReview sent back to the apiserver, ready to be serialised.
///
/// It is kube's [`AdmissionResponse`] on the wire except for `patch`: kube-core serialises that
/// `Vec<u8>` as a JSON array of numbers, which the apiserver accepts but which takes about 3.5
/// times the bytes of the base64 string the Kubernetes API defines for a `[]byte`. OSC patches
/// carry whole node files, so here the patch goes out as that base64 string.
#[derive(Debug, Serialize)]
pub struct ResponseReview {
    #[serde(flatten)]
    types: TypeMeta,
    response: WireResponse,
}

/// An [`AdmissionResponse`] whose patch is serialised as base64.
#[derive(Debug, Serialize)]
struct WireResponse {
    /// Every field but `patch`, which is taken out (kube skips a `None` patch).
    #[serde(flatten)]
    response: AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_base64")]
    patch: Option<Vec<u8>>,
}

/// Serialises bytes as the standard, padded base64 string of the Kubernetes API's `[]byte`.
fn serialize_base64<S: Serializer>(bytes: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_str(&BASE64.encode(bytes)),
        None => serializer.serialize_none(),
    }
}

/// Decodes JSON without serde_json's recursion limit, growing the stack on the heap as deep as the input needs.
fn decode_unbounded<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// [`decode_unbounded`] for text.
fn decode_unbounded_str<T: DeserializeOwned>(json: &str) -> Result<T, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// The deepest nesting of arrays and objects in `body`, found without recursion (so without a stack to overflow).
/// Brackets inside strings do not count; the input need not be valid JSON (the parser judges that afterwards).
///
/// It runs over every byte of every request before anything else, so the insides of strings (most of an object's
/// bytes) are skipped with `memchr` to their next quote or backslash instead of looked at byte by byte.
pub fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        at += 1;
        match byte {
            b'"' => loop {
                let Some(found) = memchr::memchr2(b'"', b'\\', body.get(at..).unwrap_or_default()) else {
                    // An unterminated string: nothing after its quote counts.
                    return deepest;
                };
                at += found;
                // A backslash escapes the byte after it, whatever it is; a quote ends the string.
                let escape = body[at] == b'\\';
                at += if escape { 2 } else { 1 };
                if !escape {
                    break;
                }
            },
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Wraps a handler's response into the AdmissionReview sent back to the apiserver: the request's
/// `uid` and the `admission.k8s.io/v1` envelope are enforced, whatever the handler set.
pub fn into_review(uid: &str, mut response: AdmissionResponse) -> ResponseReview {
    response.uid = uid.to_owned();
    let patch = response.patch.take();
    ResponseReview {
        types: TypeMeta {
            api_version: ADMISSION_REVIEW_API_VERSION.to_owned(),
            kind: ADMISSION_REVIEW_KIND.to_owned(),
        },
        response: WireResponse { response, patch },
    }
}

/// Denies `response` with `message`, naming the class of the reason in `result.reason` (a Kubernetes
/// `StatusReason`, which the apiserver passes on to the client), so that denials can be counted by class.
pub fn deny(response: AdmissionResponse, reason: DenialReason, message: impl ToString) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.reason = reason.status_reason().to_owned();
    response
}

/// How an answer is counted: allowed, or denied with the class of its reason.
pub fn result_of(response: &AdmissionResponse) -> (AdmissionResult, Option<DenialReason>) {
    if response.allowed {
        (AdmissionResult::Allowed, None)
    } else {
        (AdmissionResult::Denied, Some(denial_reason(response)))
    }
}

/// The class of a denial, from the `result.reason` [`deny`] wrote.
pub fn denial_reason(response: &AdmissionResponse) -> DenialReason {
    DenialReason::of_status_reason(&response.result.reason)
}

/// The denial sent when a handler failed (panicked or was cancelled): nothing is admitted on a
/// failure, matching the webhooks' `failurePolicy: Fail`.
pub fn internal_error(uid: &str) -> AdmissionResponse {
    let mut response = AdmissionResponse::invalid("internal error");
    response.uid = uid.to_owned();
    response.result = Status::failure("internal error", DenialReason::Internal.status_reason()).with_code(500);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review(request: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .expect("serialize")
    }

    fn shoot_request(uid: &str) -> serde_json::Value {
        json!({
            "uid": uid,
            "kind": {"group": "core.gardener.cloud", "version": "v1beta1", "kind": "Shoot"},
            "resource": {"group": "core.gardener.cloud", "version": "v1beta1", "resource": "shoots"},
            "name": "crazy-botany",
            "namespace": "garden-dev",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {
                "apiVersion": "core.gardener.cloud/v1beta1",
                "kind": "Shoot",
                "metadata": {"name": "crazy-botany", "namespace": "garden-dev"},
                "spec": {}
            },
            "oldObject": null,
            "dryRun": false
        })
    }

    /// `body` with one byte of its first string value replaced by one that is never UTF-8.
    fn non_utf8_inside_a_string(mut body: Vec<u8>) -> Vec<u8> {
        let at = body.windows(5).position(|w| w == b"crazy").expect("the Shoot's name");
        body[at] = 0xff;
        body
    }

    #[test]
    fn parses_a_v1_review() {
        let request = parse_review(&review(shoot_request("1234"))).expect("valid review");
        assert_eq!(request.uid, "1234");
        assert_eq!(request.kind.kind, "Shoot");
        assert_eq!(request.name, "crazy-botany");
        assert_eq!(request.types.api_version, ADMISSION_REVIEW_API_VERSION);
        let object = request.object.expect("object");
        assert_eq!(object.metadata.name.as_deref(), Some("crazy-botany"));
    }

    /// Objects as they can arrive in `request.object`, hostile ones included.
    fn object_texts() -> Vec<String> {
        let shoot = shoot_request("o")["object"].to_string();
        let mut texts: Vec<String> = [
            "5",
            "[]",
            "\"Shoot\"",
            "true",
            "{}",
            r#"{"metadata": null}"#,
            r#"{"metadata": {"name": 5}}"#,
            r#"{"metadata": {"name": "a"}, "metadata": {"name": "b"}}"#,
            r#"{"metadata": {"name": "a", "name": "b"}}"#,
            r#"{"metadata": {"name": "a", "unknownField": [1], "labels": null}, "spec": {}}"#,
            r#"{"spec": {"x": 1e400}}"#,
            r#"{"spec": {"x": -1e400}}"#,
            r#"{"spec": {"x": "\ud800"}}"#,
            r#"{"spec": {"\ud800": 1}}"#,
            r#"{"spec": {"x": "\ud83d\ude00", "y": 18446744073709551616}}"#,
            r#"{"meta\u0064ata": {"name": 5}}"#,
            r#"{"apiVersion": 5, "kind": "Shoot", "metadata": {"name": "a"}}"#,
            r#"{"kind": "Shoot", "apiVersion": 5, "metadata": {"name": "a"}}"#,
            r#"{"apiVersion": "core.gardener.cloud/v1beta1", "metadata": {"name": "a"}}"#,
            r#"{"apiVersion": "v1", "apiVersion": "v2", "kind": "Shoot"}"#,
            r#"{"apiVersion": "v1", "kind": "Shoot", "spec": {"a": 1, "a": 2}}"#,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        texts.push(shoot);
        texts
    }

    fn review_with_object(object: &str) -> Vec<u8> {
        let body = String::from_utf8(review(shoot_request("o"))).expect("utf-8");
        let shoot = shoot_request("o")["object"].to_string();
        body.replacen(&shoot, object, 1).into_bytes()
    }

    #[test]
    fn an_object_as_text_is_accepted_exactly_where_a_dynamic_object_is() {
        for text in object_texts() {
            let body = review_with_object(&text);
            let raw = decode_unbounded::<Review<RawAdmissionRequest>>(&body);
            let dynamic = decode_unbounded::<Review<DynamicAdmissionRequest>>(&body);
            assert_eq!(raw.is_ok(), dynamic.is_ok(), "{text}: {:?} / {:?}", raw.err(), dynamic.err());
            match (parse_review(&body), dynamic) {
                (Ok(request), Ok(dynamic)) => {
                    let (object, dynamic) = (request.object.expect("object"), dynamic.request.expect("request"));
                    let dynamic = dynamic.object.expect("object");
                    assert_eq!(object.metadata(), &dynamic.metadata, "{text}");
                    assert_eq!(object.json(), text, "the text as sent");
                    let tree = serde_json::to_value(&dynamic).expect("tree");
                    assert_eq!(object.to_tree().expect("a tree"), tree, "{text}: the same tree as before");
                    // Handlers decoded their typed object from that tree.
                    let before: DynamicObject = crate::decode::from_value(tree).expect("decodes");
                    assert_eq!(object.decode::<DynamicObject>().expect("decodes"), before, "{text}: as before");
                }
                (Err(error), Err(dynamic)) => {
                    assert_eq!(error, ReviewError::Malformed(dynamic.to_string()), "{text}: the message as before");
                }
                (parsed, dynamic) => panic!("{text}: {parsed:?} / {:?}", dynamic.err()),
            }
        }
    }

    #[test]
    fn a_shoot_decodes_from_its_text_as_it_did_from_the_dynamic_object() {
        use crate::apis::core::Shoot;
        let before = |text: &str| -> Result<Shoot, DecodeError> {
            let object: DynamicObject = serde_json::from_str(text).expect("a dynamic object");
            crate::decode::from_value(crate::decode::to_value(&object)?)
        };
        let shoot = shoot_request("o")["object"].clone();
        let mut broken_twice = shoot.clone();
        // Two problems: the text has `spec.region` first, a tree reads `spec.extensions` first; the answer names
        // what it always named.
        broken_twice["spec"] = json!({"region": 5, "extensions": "all of them"});
        let mut duplicate = shoot.to_string();
        duplicate.insert_str(1, r#""spec": {"region": 7},"#);
        let texts = [
            shoot.to_string(),
            broken_twice.to_string().replacen(
                r#""extensions":"all of them","region":5"#,
                r#""region":5,"extensions":"all of them""#,
                1,
            ),
            duplicate,
            r#"{"kind": "Shoot", "metadata": {"name": "a"}, "spec": {}}"#.to_owned(),
            r#"{"metadata": {"name": "a", "bogus": 1}, "spec": {"extensions": [{"type": 5}]}}"#.to_owned(),
        ];
        assert!(texts[1].find("region") < texts[1].find("extensions"), "{}", texts[1]);
        for text in texts {
            let request = parse_review(&review_with_object(&text)).expect("a review");
            let decoded = request.object.expect("object").decode::<Shoot>();
            assert_eq!(decoded, before(&text), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_an_admission_request() {
        type Expectation = fn(&ReviewError) -> bool;
        let cases: Vec<(Vec<u8>, Expectation)> = vec![
            (b"\x00\xffgarbage".to_vec(), |e| matches!(e, ReviewError::NotJson(_))),
            (b"".to_vec(), |e| matches!(e, ReviewError::NotJson(_))),
            (b"[1,2]".to_vec(), |e| *e == ReviewError::NotAnObject),
            (b"{}".to_vec(), |e| matches!(e, ReviewError::WrongType { .. })),
            (
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod", "request": shoot_request("x")})).expect("json"),
                |e| matches!(e, ReviewError::WrongType { api_version, kind } if api_version == "v1" && kind == "Pod"),
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": shoot_request("x")}))
                    .expect("json"),
                |e| matches!(e, ReviewError::WrongType { .. }),
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).expect("json"),
                |e| *e == ReviewError::MissingRequest,
            ),
            (review(serde_json::Value::Null), |e| *e == ReviewError::MissingRequest),
            (non_utf8_inside_a_string(review(shoot_request("u"))), |e| matches!(e, ReviewError::NotJson(_))),
            (
                non_utf8_inside_a_string(
                    serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "ignored": "crazy", "request": shoot_request("u")}))
                    .expect("json"),
                ),
                |e| matches!(e, ReviewError::NotJson(_)),
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod", "request": {"uid": 5}})).expect("json"),
                |e| matches!(e, ReviewError::WrongType { api_version, .. } if api_version == "v1"),
            ),
            (
                serde_json::to_vec(&json!({"apiVersion": 1, "kind": "AdmissionReview", "request": shoot_request("x")}))
                    .expect("json"),
                |e| matches!(e, ReviewError::WrongType { api_version, .. } if api_version.is_empty()),
            ),
            (review(json!({"uid": 5})), |e| matches!(e, ReviewError::Malformed(_))),
        ];
        for (body, expected) in cases {
            let err = parse_review(&body).expect_err("must be rejected");
            assert!(expected(&err), "{:?}: unexpected {err:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn the_response_echoes_the_uid_and_uses_the_v1_envelope() {
        let request = parse_review(&review(shoot_request("abc"))).expect("valid");
        let mut response = AdmissionResponse::from(&request).deny("no");
        response.uid = "something-else".to_owned();
        let value = serde_json::to_value(into_review(&request.uid, response)).expect("serialize");
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(value["kind"], "AdmissionReview");
        assert_eq!(value["response"]["uid"], "abc");
        assert_eq!(value["response"]["allowed"], false);
        assert_eq!(value["response"]["status"]["message"], "no");
        assert!(value.get("request").is_none());
    }

    #[test]
    fn the_patch_goes_out_as_the_base64_string_of_the_api() {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD as BASE64;
        use json_patch::{AddOperation, Patch, PatchOperation, jsonptr::PointerBuf};

        let request = parse_review(&review(shoot_request("p"))).expect("valid");
        let patch = Patch(vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "labels"]),
            value: json!({"a": "b"}),
        })]);
        let response = AdmissionResponse::from(&request).with_patch(patch.clone()).expect("patch serializes");
        let bytes = serde_json::to_vec(&into_review(&request.uid, response)).expect("serialize");
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");

        let encoded = value["response"]["patch"].as_str().expect("patch is a string, as the API's []byte");
        let decoded: Patch = serde_json::from_slice(&BASE64.decode(encoded).expect("base64")).expect("a JSON patch");
        assert_eq!(decoded, patch);
        assert_eq!(value["response"]["patchType"], "JSONPatch");
        assert_eq!(value["response"]["uid"], "p");
        assert_eq!(value["response"]["allowed"], true);
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(value["kind"], "AdmissionReview");
    }

    #[test]
    fn a_response_without_patch_has_no_patch_field() {
        let request = parse_review(&review(shoot_request("n"))).expect("valid");
        let value =
            serde_json::to_value(into_review(&request.uid, AdmissionResponse::from(&request))).expect("serialize");
        assert!(value["response"].get("patch").is_none());
        assert!(value["response"].get("patchType").is_none());
    }

    /// [`nesting_depth`] as it was written first, one byte at a time: the reference for the faster one.
    fn nesting_depth_byte_by_byte(body: &[u8]) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let (mut in_string, mut escaped) = (false, false);
        for &byte in body {
            if in_string {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn nesting_depth_agrees_with_reading_byte_by_byte() {
        let mut bodies: Vec<Vec<u8>> = [
            &br#"{"a":"x\"[[","b":[[{}]]}"#[..],
            br#"{"a":"\\","b":[[1]]}"#,
            br#"{"a":"\"#,
            br#"{"a":"\\"#,
            br#"[["unterminated [[["#,
            br#""\""[[["#,
            b"\\[[",
            b"",
            b"\"",
            b"[\"\\\"\\\\\"]]]",
        ]
        .iter()
        .map(|b| b.to_vec())
        .collect();
        bodies.push(review(shoot_request("depth")));
        // Every prefix of a body that mixes escapes, brackets in strings and nesting: all the ways a string can end.
        let mixed = br#"{"k\"[":["v\\",{"x":"]\u005b}"},[[["\"]"]]]],"e":"\\\""}"#;
        for end in 0..=mixed.len() {
            bodies.push(mixed[..end].to_vec());
        }
        for body in bodies {
            assert_eq!(nesting_depth(&body), nesting_depth_byte_by_byte(&body), "{:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn nesting_depth_counts_brackets_outside_strings_only() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":{}}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{\"[[["}"#), 1);
        assert_eq!(nesting_depth(b"]]]}}[["), 2, "stray closers do not go below zero");
    }

    #[test]
    fn a_review_nested_beyond_serde_jsons_default_limit_parses_and_one_beyond_the_apiservers_does_not() {
        let mut request = shoot_request("deep");
        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        request["object"]["spec"]["infrastructureConfig"] = json!("deep-placeholder");
        let body = String::from_utf8(review(request)).expect("utf-8").replacen("\"deep-placeholder\"", &deep, 1);
        let parsed = parse_review(body.as_bytes()).expect("deep review parses");
        assert_eq!(parsed.uid, "deep");

        let too_deep = format!("{}{}", "[".repeat(MAX_NESTING_DEPTH + 1), "]".repeat(MAX_NESTING_DEPTH + 1));
        let err = parse_review(too_deep.as_bytes()).expect_err("too deep");
        assert_eq!(err, ReviewError::TooDeep { depth: MAX_NESTING_DEPTH + 1 });
    }

    #[test]
    fn internal_error_is_a_denial() {
        let value = serde_json::to_value(into_review("u", internal_error("u"))).expect("serialize");
        assert_eq!(value["response"]["allowed"], false);
        assert_eq!(value["response"]["uid"], "u");
        assert_eq!(value["response"]["status"]["message"], "internal error");
        assert_eq!(value["response"]["status"]["code"], 500);
    }
}
