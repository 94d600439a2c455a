//! The fuzz targets' bodies, one function per target, each taking the engine's bytes. Every target feeds the bytes to
//! the library the way the webhooks and the reconciler receive them and then checks, besides "no panic, no hang",
//! the invariants the library promises (the same ones the property tests state), so that a wrong answer is a
//! finding too, not only a crash.
//!
//! The binaries in `src/bin/` wrap each function in `afl::fuzz!` (feature `afl`) or, without it, run it over the
//! files named on the command line ([`replay_command_line`]), which is how a finding is reproduced and debugged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use gardener_extension_cri_resmgr::apis::core::Shoot;
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension, OperatingSystemConfig};
use gardener_extension_cri_resmgr::constants::{EXTENSION_TYPE, KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT};
use gardener_extension_cri_resmgr::decode;
use gardener_extension_cri_resmgr::domain::desired::{Desired, compute};
use gardener_extension_cri_resmgr::domain::images::ImageVector;
use gardener_extension_cri_resmgr::domain::node::{
    PoolPlan, command_line_arguments, kubelet_exec_start, mutate, should_mutate,
};
use gardener_extension_cri_resmgr::domain::validation::{
    FieldError, FieldPath, decode_and_validate_provider_config, default_provider_config, validate_config_body,
    validate_extra_options,
};
use gardener_extension_cri_resmgr::runtime::answer_memo::{AnswerMemo, Outcome, Step, VolatileText};
use gardener_extension_cri_resmgr::runtime::review::{Reuse, into_review, parse_review};
use gardener_extension_cri_resmgr::runtime::stores::{SeedStores, StoreScope};
use gardener_extension_cri_resmgr::runtime::{AdmissionHandler, RawAdmissionRequest};
use gardener_extension_cri_resmgr::webhook::osc::{OSC_VOLATILE_STRINGS, OscMutator};
use gardener_extension_cri_resmgr::webhook::shoot::{ShootDefaulter, ShootValidator};
use kube::core::admission::AdmissionResponse;
use serde_json::{Value, json};

const EXAMPLE_SHOOT: &str = include_str!("../../examples/shoot.yaml");
const EXAMPLE_CLUSTER: &str = include_str!("../../examples/10-cluster.yaml");
const EXAMPLE_EXTENSION: &str = include_str!("../../examples/20-extension.yaml");
/// The worker pool of the example Shoot (and of the example OSC's pool label).
const EXAMPLE_POOL: &str = "cpu-worker";
/// Where the OSC webhook looks for the operator's base configs in this harness.
const BASE_CONFIGS_NAMESPACE: &str = "garden";

// ---------------------------------------------------------------------------------------------------------------
// (a) providerConfig: decoding, validation, defaulting
// ---------------------------------------------------------------------------------------------------------------

/// Target `provider_config`. JSON input is a Shoot's `providerConfig` as the apiserver sends it; anything else is
/// taken as text, both as a cri-resmgr configuration body and as an `EXTRA_OPTIONS` line (the two kinds of text a
/// providerConfig carries), and also wrapped into a providerConfig.
pub fn provider_config(data: &[u8]) {
    match serde_json::from_slice::<Value>(data) {
        Ok(raw) => check_provider_config(&raw),
        Err(_) => {
            let text = String::from_utf8_lossy(data);
            let configs = FieldPath::new("providerConfig").child("configs");
            if let Err(errors) = validate_config_body(&text, &configs.key("default")) {
                assert_paths(&errors, "providerConfig.configs[\"default\"]");
            }
            assert_paths(&validate_extra_options(&text, &configs.key("EXTRA_OPTIONS")), "providerConfig.configs");
            check_provider_config(&json!({"configs": {"default": text, "EXTRA_OPTIONS": text}}));
        }
    }
}

/// Validation never panics and names a field for every error; defaulting is idempotent and never turns an accepted
/// providerConfig into a denied one (nor changes what it means).
fn check_provider_config(raw: &Value) {
    let path = FieldPath::new("providerConfig");
    let before = decode_and_validate_provider_config(Some(raw), &path);
    if let Err(errors) = &before {
        assert!(!errors.is_empty(), "a denial without an error");
        assert_paths(errors, "providerConfig");
    }
    if let Some(defaulted) = default_provider_config(Some(raw)) {
        assert_eq!(default_provider_config(Some(&defaulted)), None, "defaulting twice changes something");
        let after = decode_and_validate_provider_config(Some(&defaulted), &path);
        if let Ok(valid) = &before {
            assert_eq!(after.as_ref().ok(), Some(valid), "defaulting changed an accepted providerConfig");
        }
    }
}

fn assert_paths(errors: &[FieldError], root: &str) {
    for error in errors {
        assert!(error.path.starts_with(root), "error without a field path below {root}: {error:?}");
        assert!(!error.message.is_empty(), "error without a message: {error:?}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// (b) OSC mutation
// ---------------------------------------------------------------------------------------------------------------

/// The example Shoot and the plans its pool can get: the example's configs (fallback), and force + EXTRA_OPTIONS.
struct Plans {
    shoot: Shoot,
    images: ImageVector,
    desired: Vec<Desired>,
}

fn plans() -> &'static Plans {
    static PLANS: OnceLock<Plans> = OnceLock::new();
    PLANS.get_or_init(|| {
        let shoot: Shoot = gardener_extension_cri_resmgr::yaml::from_str(EXAMPLE_SHOOT).expect("example Shoot");
        let images = ImageVector::embedded().expect("embedded image vector");
        let (_, extension) = shoot.spec.enabled_extension(EXTENSION_TYPE).expect("the example enables the extension");
        let forced = json!({"configs": {
            "force": "policy:\n  Active: static-pools\n",
            "EXTRA_OPTIONS": "--metrics-interval=10s --log-source",
        }});
        let desired = [extension.provider_config.clone(), Some(forced)]
            .iter()
            .map(|config| compute(&shoot, config.as_ref(), &BTreeMap::new(), &images).expect("example plan"))
            .collect();
        Plans { shoot, images, desired }
    })
}

/// Target `osc_mutation`: an OperatingSystemConfig as JSON (as the webhook receives it), mutated with each plan.
pub fn osc_mutation(data: &[u8]) {
    let Ok(osc) = serde_json::from_slice::<OperatingSystemConfig>(data) else { return };
    let plans = plans();
    for desired in &plans.desired {
        let plan = desired.pool_plan(&plans.shoot, EXAMPLE_POOL, &plans.images).expect("plan").expect("selected");
        check_mutation(&osc, &plan);
    }
}

/// The promises of `mutate` (see `domain::node`): only reconcile OSCs are touched; mutating is idempotent; removal
/// gives back the OSC without our additions; the kubelet command line changes in its endpoint token only; an OSC
/// without our additions comes back exactly (unless it had no endpoint flag for the removal to leave alone).
pub fn check_mutation(osc: &OperatingSystemConfig, plan: &PoolPlan) {
    let mutated = mutate(osc, Some(plan));
    if !should_mutate(osc) {
        assert_eq!(&mutated.osc, osc, "an OSC that is not ours to touch changed");
        return;
    }
    let again = mutate(&mutated.osc, Some(plan));
    assert_eq!(again.osc, mutated.osc, "mutating twice differs from mutating once");
    assert_eq!(again.warnings, mutated.warnings, "mutating twice warns differently");

    let clean = mutate(osc, None).osc;
    let restored = mutate(&mutated.osc, None).osc;
    // The one documented inexact restore: a kubelet command line without the endpoint flag gets ours appended, and
    // the removal then leaves containerd's in its place.
    let has_endpoint = |osc: &OperatingSystemConfig| {
        kubelet_exec_start(osc).is_some_and(|line| command_line_arguments(&line).iter().any(|a| is_endpoint_flag(a)))
    };
    let appended = !has_endpoint(osc) && has_endpoint(&mutated.osc);
    if !appended {
        assert_eq!(restored, clean, "removal does not give back the OSC without our additions");
        if &clean == osc {
            assert_eq!(&restored, osc, "restore(mutate(x)) != x");
        }
    }
    assert_endpoint_only_change(osc, &mutated.osc);
    assert_endpoint_only_change(&mutated.osc, &restored);
}

/// kubelet's `ExecStart=` arguments differ only in `--container-runtime-endpoint=` tokens (one may be appended).
fn assert_endpoint_only_change(before: &OperatingSystemConfig, after: &OperatingSystemConfig) {
    let (Some(before), Some(after)) = (kubelet_exec_start(before), kubelet_exec_start(after)) else { return };
    let (before, after) = (command_line_arguments(&before), command_line_arguments(&after));
    let common = before.len().min(after.len());
    for (old, new) in before.iter().zip(&after) {
        assert!(old == new || (is_endpoint_flag(old) && is_endpoint_flag(new)), "{old:?} became {new:?}");
    }
    let appended = if after.len() > common { &after[common..] } else { &before[common..] };
    assert!(appended.len() <= 1 && appended.iter().all(|a| is_endpoint_flag(a)), "arguments added: {appended:?}");
}

fn is_endpoint_flag(argument: &str) -> bool {
    argument.starts_with(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT)
}

// ---------------------------------------------------------------------------------------------------------------
// (c) AdmissionReview: the Shoot validator and defaulter, the OSC mutator
// ---------------------------------------------------------------------------------------------------------------

/// The webhooks as the servers register them, and a runtime to drive them.
struct Webhooks {
    runtime: tokio::runtime::Runtime,
    osc: OscMutator,
    /// One validator for every input, as the admission server has: its cache of configuration bodies holds what
    /// earlier inputs brought.
    shoot: ShootValidator,
}

fn webhooks() -> &'static Webhooks {
    static WEBHOOKS: OnceLock<Webhooks> = OnceLock::new();
    WEBHOOKS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = runtime.block_on(async { seed_reads_client() });
        let images = ImageVector::embedded().expect("embedded image vector");
        // The stores' watches never run here: the stores stay unsynced, so every read goes to the in-memory client.
        let scope = StoreScope { configmap_namespace: BASE_CONFIGS_NAMESPACE.to_owned(), shoot_namespace: None };
        let (stores, _watches) = SeedStores::watch(client, &scope);
        let osc = OscMutator::new(stores, images);
        Webhooks { runtime, osc, shoot: ShootValidator::default() }
    })
}

/// A client whose reads are answered in memory from the example Cluster and Extension (and "not found" for
/// everything else), so that the OSC webhook runs its whole path per input without a network: a fuzz engine runs
/// thousands of inputs a second. The integration tests run the same handler against a real apiserver.
fn seed_reads_client() -> kube::Client {
    let cluster: Cluster = gardener_extension_cri_resmgr::yaml::from_str(EXAMPLE_CLUSTER).expect("example Cluster");
    let extension: Extension =
        gardener_extension_cri_resmgr::yaml::from_str(EXAMPLE_EXTENSION).expect("example Extension");
    let namespace = extension.metadata.namespace.clone().expect("the example Extension has a namespace");
    let objects: BTreeMap<String, Vec<u8>> = [
        (
            format!("/apis/extensions.gardener.cloud/v1alpha1/clusters/{namespace}"),
            serde_json::to_vec(&cluster).expect("Cluster as JSON"),
        ),
        (
            format!("/apis/extensions.gardener.cloud/v1alpha1/namespaces/{namespace}/extensions/{EXTENSION_TYPE}"),
            serde_json::to_vec(&extension).expect("Extension as JSON"),
        ),
    ]
    .into_iter()
    .collect();
    let not_found = serde_json::to_vec(&json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404,
    }))
    .expect("Status as JSON");
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let found = objects.get(request.uri().path()).cloned();
        let not_found = not_found.clone();
        async move {
            let (status, body) = match found {
                Some(body) => (http::StatusCode::OK, body),
                None => (http::StatusCode::NOT_FOUND, not_found),
            };
            http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        }
    });
    kube::Client::new(service, "default")
}

/// Target `admission_review`: an HTTP body as the webhook servers receive it, decoded as they do and answered by
/// the Shoot validator, the Shoot defaulter and the OSC mutator. Every answer echoes the uid and serialises, every
/// patch applies to the object as it was sent, and the validator answers the same with and without the bodies it
/// kept from earlier inputs. The answer kept for the review is given to a review only where answering that review
/// afresh gives the same bytes ([`check_kept_answer`]).
pub fn admission_review(data: &[u8]) {
    let Ok(request) = parse_review(data) else { return };
    check_kept_answer(data, &request);
    kept_osc_answers(data);
    let webhooks = webhooks();
    // The object as the apiserver sent it: a patch must apply to that, not only to our reading of it.
    let object = request.object.as_ref().map(|o| decode::from_str::<Value>(o.json()).expect("the object as JSON"));
    let (shared, fresh) = webhooks.runtime.block_on(async {
        (webhooks.shoot.admit(request.clone()).await, ShootValidator::default().admit(request.clone()).await)
    });
    assert_eq!(
        (shared.allowed, &shared.result.message, &shared.result.reason),
        (fresh.allowed, &fresh.result.message, &fresh.result.reason),
        "the validator answers from its cache of configuration bodies what it answers without"
    );
    let responses = webhooks.runtime.block_on(async {
        [shared, ShootDefaulter.admit(request.clone()).await, webhooks.osc.admit(request.clone()).await]
    });
    for response in responses {
        check_response(&request.uid, object.as_ref(), response);
    }
}

/// `handler`'s encoded answer to `body` and the answer itself, or `None` when `body` is not a review.
fn encoded_answer(
    handler: &impl AdmissionHandler,
    body: &[u8],
) -> Option<(RawAdmissionRequest, Vec<u8>, AdmissionResponse)> {
    let request = parse_review(body).ok()?;
    let response = webhooks().runtime.block_on(handler.admit(request.clone()));
    let json = serde_json::to_vec(&into_review(&request.uid, response.clone())).expect("the answer serialises");
    Some((request, json, response))
}

/// Keeps `handler`'s answer to `data` in `memo`, then asks the memo for each of `variants`: whatever it answers must
/// be, byte for byte, what `handler` answers that review afresh. Returns how many it answered.
fn kept_answers_are_fresh(
    memo: &AnswerMemo,
    handler: &impl AdmissionHandler,
    data: &[u8],
    variants: impl IntoIterator<Item = Vec<u8>>,
) -> usize {
    let Some((request, json, response)) = encoded_answer(handler, data) else { return 0 };
    let outcome =
        Outcome::of(&response, request.operation.clone(), request.kind.kind.clone(), String::new(), String::new());
    memo.remember(data, &request.uid, &json, outcome, Reuse::Always);
    let mut answered = 0;
    for variant in variants {
        let Some(reused) = memo.reuse(&variant) else { continue };
        let (_, fresh, _) = encoded_answer(handler, &variant).expect("a review the memo answered decodes");
        assert_eq!(reused.to_vec(), fresh, "the kept answer differs from the fresh one");
        answered += 1;
    }
    answered
}

/// Keeps the Shoot defaulter's answer to `data` (it answers every review, and its answer depends on the review
/// alone) in an answer memo, then asks the memo for reviews made from `data`: with its uid's text replaced by other
/// plain and not so plain texts, and with a byte changed besides ([`kept_answers_are_fresh`]).
fn check_kept_answer(data: &[u8], request: &RawAdmissionRequest) {
    let uid = &request.uid;
    let Some(at) = (!uid.is_empty()).then(|| memchr::memmem::find(data, uid.as_bytes())).flatten() else { return };
    let with_uid = |text: &[u8]| [&data[..at], text, &data[at + uid.len()..]].concat();
    let mut variants: Vec<Vec<u8>> =
        [&b"0b8e2c4c-1b5e-4a8e-9c61-000000000001"[..], b"", br"x\y", br#"x"y"#, br"\u0041", b"a\tb", b"\xff"]
            .iter()
            .map(|text| with_uid(text))
            .collect();
    // A byte changed away from the uid, keeping the new uid.
    let mut changed = with_uid(b"u-2");
    if let Some(byte) = changed.get_mut(data.len() / 2 + 3) {
        *byte ^= 0x01;
    }
    variants.push(changed);
    kept_answers_are_fresh(&<AnswerMemo>::default(), &ShootDefaulter, data, variants);
}

/// The values at `path` in `value` (every element of an array for [`Step::Each`]).
fn values_at<'v>(value: &'v Value, path: &[Step]) -> Vec<&'v Value> {
    match path.split_first() {
        None => vec![value],
        Some((Step::Key(key), rest)) => value.get(*key).map(|child| values_at(child, rest)).unwrap_or_default(),
        Some((Step::Each, rest)) => match value.as_array() {
            Some(elements) => elements.iter().flat_map(|element| values_at(element, rest)).collect(),
            None => Vec::new(),
        },
    }
}

/// `body` with every `"from"` replaced by `"to"` (JSON strings of these texts).
fn with_strings_replaced(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (format!("\"{from}\""), format!("\"{to}\""));
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, from.as_bytes()) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to.as_bytes());
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Keeps the OSC webhook's answer to `data` in a memo with the webhook's volatile strings, then asks it for `data`
/// with each of those strings (wherever its text stands) and the uid replaced: by texts of their kind, and by times
/// the decoder writes back otherwise ([`kept_answers_are_fresh`]). Returns how many of these reviews the memo
/// answered (a seed test checks that gardenlet's write of an OSC gets it).
pub fn kept_osc_answers(data: &[u8]) -> usize {
    let Ok(request) = parse_review(data) else { return 0 };
    let Ok(review) = serde_json::from_slice::<Value>(data) else { return 0 };
    if request.uid.is_empty() {
        return 0;
    }
    let variants =
        [("again-1", "2031-05-06T07:08:09Z"), ("", "2031-05-06T07:08:09+00:00"), ("x", "1970-01-01T00:00:00Z")].map(
            |(any, time)| {
                let mut variant = with_strings_replaced(data, &request.uid, "0b8e2c4c-1b5e-4a8e-9c61-000000000002");
                for string in OSC_VOLATILE_STRINGS {
                    for value in values_at(&review["request"], string.path) {
                        let Some(text) = value.as_str() else { continue };
                        let new = match string.text {
                            VolatileText::Any => any,
                            VolatileText::Time => time,
                        };
                        variant = with_strings_replaced(&variant, text, new);
                    }
                }
                variant
            },
        );
    kept_answers_are_fresh(&AnswerMemo::with_volatile_strings(OSC_VOLATILE_STRINGS), &webhooks().osc, data, variants)
}

fn check_response(uid: &str, object: Option<&Value>, response: AdmissionResponse) {
    assert_eq!(response.uid, uid, "the answer names another request");
    if let Some(patch) = &response.patch {
        assert!(response.allowed, "a denial with a patch");
        let patch: json_patch::Patch = serde_json::from_slice(patch).expect("the patch is a JSON patch");
        let mut patched = object.cloned().expect("a patch for a request without an object");
        json_patch::patch(&mut patched, &patch).expect("the patch applies to the object it was made for");
    }
    serde_json::to_vec(&into_review(uid, response)).expect("the answer serialises");
}

// ---------------------------------------------------------------------------------------------------------------
// (d) image vector and version constraints
// ---------------------------------------------------------------------------------------------------------------

/// Target `image_vector`: the first line is a Kubernetes version and optionally an architecture (`1.32.0 arm64`),
/// the rest an image vector in YAML (as `$IMAGEVECTOR_OVERWRITE` names it), whose constraints are parsed and
/// matched. The version is also looked up in the embedded vector.
pub fn image_vector(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, vector) = text.split_once('\n').unwrap_or((&text, ""));
    let mut words = first.split_whitespace();
    let version = words.next().unwrap_or_default();
    let architecture = words.next().unwrap_or("amd64");
    let embedded = ImageVector::embedded().expect("embedded image vector");
    let _ = embedded.extension_images(version);
    let Ok(overwrite) = ImageVector::read(vector, "fuzz input") else { return };
    let merged = embedded.clone().merged_with(overwrite.clone());
    for vector in [&overwrite, &merged] {
        for source in vector.sources() {
            if let Ok(image) = vector.find_for_architecture(&source.name, version, architecture) {
                assert_eq!(image.name, source.name, "found an image of another name");
            }
            let architectures = vector.architectures_of(&source.name);
            assert!(!architectures.is_empty(), "an entry without architectures");
        }
        let _ = vector.extension_images(version);
    }
    // An overwrite replaces or adds entries, never drops any.
    assert!(merged.sources().len() >= embedded.sources().len(), "the overwrite dropped entries");
    for source in overwrite.sources() {
        assert!(merged.sources().iter().any(|s| s.name == source.name), "overwrite entry {} lost", source.name);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------------------------

/// Runs `target` over every file named on the command line (directories: every file in them, sorted), printing
/// each name first, so that the input that panics is the last one printed.
pub fn replay_command_line(target: fn(&[u8])) -> ExitCode {
    let arguments: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if arguments.is_empty() {
        eprintln!("usage: <target> FILE_OR_DIRECTORY...  (runs the fuzz target over the given inputs)");
        return ExitCode::FAILURE;
    }
    let mut count = 0;
    for argument in &arguments {
        match inputs(argument) {
            Ok(files) => {
                for file in files {
                    println!("{}", file.display());
                    match std::fs::read(&file) {
                        Ok(data) => target(&data),
                        Err(e) => {
                            eprintln!("cannot read {}: {e}", file.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    count += 1;
                }
            }
            Err(e) => {
                eprintln!("cannot read {}: {e}", argument.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{count} inputs, no finding");
    ExitCode::SUCCESS
}

/// The file itself, or the files in a directory (sorted, not recursive).
pub fn inputs(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(path)?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.retain(|file| file.is_file());
    files.sort();
    Ok(files)
}
