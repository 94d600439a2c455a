//! The OperatingSystemConfig webhook through the real apiserver: registered by the controller's webhook server,
//! called by the apiserver for OSCs in labelled shoot namespaces whenever gardenlet writes them; the reconciler only
//! reports which pools' OSCs wait for that write.

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use gardener_extension_cri_resmgr::apis::common::LastOperationState;
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension, OperatingSystemConfig};
use gardener_extension_cri_resmgr::commands::controller;
use gardener_extension_cri_resmgr::constants::{
    ANNOTATION_OPERATION, ANNOTATION_TIMESTAMP, EXTENSION_TYPE, NAMESPACE_EXTENSION_LABEL,
};
use gardener_extension_cri_resmgr::domain::images::ImageVector;
use gardener_extension_cri_resmgr::runtime::metrics::{METRIC_PREFIX, Metrics};
use gardener_extension_cri_resmgr::runtime::registration::CONTROLLER_CONFIG_NAME;
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
use gardener_extension_cri_resmgr::runtime::stores::{SeedStores, StoreScope};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{RunningController, TestEnv, eventually, example, scratch_dir, start_shared_webhook_server};

/// Namespace of the base configs the shared webhook server reads (none are created: the shoots' configs decide).
const WEBHOOK_CONFIGMAP_NAMESPACE: &str = "osc-webhook-base-configs";
const OSC_NAME: &str = "gardener-node-agent-cpu-worker-77ac3b4c7e4f1a2d-original";
const RELAY_ENDPOINT: &str = "--container-runtime-endpoint=unix:///var/run/cri-resmgr/cri-resmgr.sock";
const CONTAINERD_ENDPOINT: &str = "--container-runtime-endpoint=unix:///run/containerd/containerd.sock";

/// The metrics of the shared OSC webhook server.
fn osc_webhook_metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::for_controller)
}

/// How many answers the shared OSC webhook server gave again from its kept ones so far.
fn osc_answers_reused() -> u64 {
    let text = osc_webhook_metrics().encode().expect("metrics");
    let series = format!("{METRIC_PREFIX}_webhook_answers_reused_total{{");
    text.lines()
        .filter(|line| line.starts_with(&series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// One OSC webhook server per test binary (its configuration is cluster-wide), started by the same function the
/// controller uses; it lives until the process exits.
fn ensure_osc_webhook() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        start_shared_webhook_server::<MutatingWebhookConfiguration, _, _, _>(
            "OSC webhook server",
            CONTROLLER_CONFIG_NAME,
            |port, client| {
                let webhook = WebhookOptions {
                    webhook_bind_address: SocketAddr::from(([127, 0, 0, 1], port)),
                    webhook_cert_dir: scratch_dir("cri-resmgr-osc-certs"),
                    generate_certs_for: vec!["127.0.0.1".to_string()],
                    webhook_config_mode: WebhookConfigMode::Url,
                    webhook_config_url: Some(format!("127.0.0.1:{port}")),
                    ..WebhookOptions::default()
                };
                let images = ImageVector::embedded().expect("images");
                let scope =
                    StoreScope { configmap_namespace: WEBHOOK_CONFIGMAP_NAMESPACE.to_string(), shoot_namespace: None };
                let (stores, watches) = SeedStores::watch(client.clone(), &scope);
                tokio::spawn(watches);
                controller::serve_osc_webhook(
                    webhook,
                    client,
                    stores,
                    images,
                    osc_webhook_metrics().webhook.clone(),
                    std::future::pending(),
                )
            },
        );
    });
}

async fn label_namespace(env: &TestEnv, enabled: bool) {
    let value = if enabled { json!("true") } else { Value::Null };
    let body = json!({"metadata": {"labels": {NAMESPACE_EXTENSION_LABEL: value}}});
    Api::<Namespace>::all(env.client.clone())
        .patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("label namespace");
}

/// A shoot namespace as gardenlet prepares it: Cluster, Extension and (optionally) the extension label.
async fn shoot(env: &TestEnv, labelled: bool, provider_config: Option<Value>) -> Api<Extension> {
    shoot_with(env, labelled, provider_config, |_| {}).await
}

async fn shoot_with(
    env: &TestEnv,
    labelled: bool,
    provider_config: Option<Value>,
    edit_cluster: impl FnOnce(&mut Cluster),
) -> Api<Extension> {
    label_namespace(env, labelled).await;
    let mut cluster: Cluster = example("10-cluster.yaml");
    cluster.metadata.name = Some(env.namespace.clone());
    edit_cluster(&mut cluster);
    Api::<Cluster>::all(env.client.clone()).create(&PostParams::default(), &cluster).await.expect("create Cluster");
    let mut extension: Extension = example("20-extension.yaml");
    extension.metadata.namespace = Some(env.namespace.clone());
    if let Some(config) = provider_config {
        extension.spec.provider_config = Some(config);
    }
    let api: Api<Extension> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &extension).await.expect("create Extension");
    api
}

fn original_osc(env: &TestEnv) -> OperatingSystemConfig {
    let mut osc: OperatingSystemConfig = example("30-osc-cpu-worker.yaml");
    osc.metadata.namespace = Some(env.namespace.clone());
    osc
}

fn oscs(env: &TestEnv) -> Api<OperatingSystemConfig> {
    Api::namespaced(env.client.clone(), &env.namespace)
}

fn kubelet_unit(osc: &OperatingSystemConfig) -> String {
    osc.spec.units.iter().find(|u| u.name == "kubelet.service").and_then(|u| u.content.clone()).expect("kubelet unit")
}

fn has_cri_resmgr(osc: &OperatingSystemConfig) -> bool {
    osc.spec.units.iter().any(|u| u.name == "cri-resource-manager.service")
        || osc.spec.files.iter().any(|f| f.path.starts_with("/etc/cri-resmgr") || f.path == "/opt/intel/bin/cri-resmgr")
}

fn file_text(osc: &OperatingSystemConfig, path: &str) -> Option<String> {
    let file = osc.spec.files.iter().find(|f| f.path == path)?;
    let inline = file.content.inline.as_ref()?;
    if inline.encoding == "b64" {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&inline.data).expect("b64");
        Some(String::from_utf8(bytes).expect("utf-8"))
    } else {
        Some(inline.data.clone())
    }
}

/// The stored OSC equals what gardenlet wrote, apart from server-set metadata.
fn assert_untouched(stored: &OperatingSystemConfig, original: &OperatingSystemConfig) {
    assert_eq!(stored.spec, original.spec, "the OSC must be stored as written");
}

#[tokio::test]
async fn osc_of_a_selected_pool_in_a_labelled_namespace_is_stored_mutated() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_mutated").await;
    shoot(&env, true, None).await;
    let stored = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create OSC");
    let unit = stored.spec.units.iter().find(|u| u.name == "cri-resource-manager.service").expect("our unit");
    assert_eq!(unit.enable, Some(true));
    // The stored unit relays to containerd's socket under /run and holds kubelet back until its own socket exists.
    let content = unit.content.as_deref().expect("unit content");
    assert!(content.contains("--runtime-socket=/run/containerd/containerd.sock"), "{content}");
    assert!(content.contains("\nExecStartPost=-/bin/sh -c 'waited=0; until test -S /var/run/cri-resmgr/"), "{content}");
    let binary = stored.spec.files.iter().find(|f| f.path == "/opt/intel/bin/cri-resmgr").expect("binary");
    assert_eq!(binary.permissions, Some(0o755));
    let image_ref = binary.content.image_ref.as_ref().expect("imageRef");
    assert_eq!(image_ref.file_path_in_image, "/opt/intel/bin/cri-resmgr");
    let kubelet = kubelet_unit(&stored);
    assert!(kubelet.contains(RELAY_ENDPOINT), "{kubelet}");
    assert!(!kubelet.contains(CONTAINERD_ENDPOINT), "{kubelet}");
    let env_file = file_text(&stored, "/etc/default/cri-resource-manager").expect("env file");
    assert!(env_file.contains("--fallback-config /etc/cri-resmgr/fallback.cfg"), "{env_file}");
    let fallback = file_text(&stored, "/etc/cri-resmgr/fallback.cfg").expect("fallback file");
    assert!(fallback.contains("topology-aware"), "{fallback}");

    // Writing it again (e.g. another extension's update) changes nothing of ours.
    let again = oscs(&env).replace(OSC_NAME, &PostParams::default(), &stored).await.expect("update the mutated OSC");
    assert_eq!(again.spec, stored.spec, "the mutation is idempotent");
}

#[tokio::test]
async fn osc_is_stored_untouched_when_unlabelled_provision_or_not_selected() {
    ensure_osc_webhook();
    // Not labelled: the apiserver does not even call the webhook.
    let env = TestEnv::new("osc_unlabelled").await;
    shoot(&env, false, None).await;
    let original = original_osc(&env);
    let stored = oscs(&env).create(&PostParams::default(), &original).await.expect("create OSC");
    assert_untouched(&stored, &original);

    // Labelled, but a provision OSC.
    let env = TestEnv::new("osc_provision").await;
    shoot(&env, true, None).await;
    let mut provision = original_osc(&env);
    provision.metadata.name = Some("gardener-node-agent-cpu-worker-77ac3b4c7e4f1a2d-init".to_string());
    provision.spec.purpose = serde_json::from_value(json!("provision")).expect("purpose");
    let stored = oscs(&env).create(&PostParams::default(), &provision).await.expect("create provision OSC");
    assert_untouched(&stored, &provision);

    // Labelled, reconcile, but the OSC's pool is not selected.
    let env = TestEnv::new("osc_not_selected").await;
    let config = json!({"configs": {"default": "policy:\n  Active: none\n"}, "workerPools": ["cpu-worker"]});
    shoot_with(&env, true, Some(config), |cluster| {
        let mut gpu = cluster.spec.shoot.spec.provider.workers[0].clone();
        gpu.name = "gpu-worker".to_string();
        cluster.spec.shoot.spec.provider.workers.push(gpu);
    })
    .await;
    let mut original = original_osc(&env);
    original.metadata.name = Some("gardener-node-agent-gpu-worker-0123456789abcdef-original".to_string());
    original
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(gardener_extension_cri_resmgr::constants::LABEL_WORKER_POOL.to_string(), "gpu-worker".to_string());
    let stored = oscs(&env).create(&PostParams::default(), &original).await.expect("create OSC");
    assert_untouched(&stored, &original);
}

/// gardenlet's part of a shoot reconcile for one pool: it renders the pool's reconcile OSC from scratch and writes
/// it with the operation annotation and a new timestamp (the webhook mutates it on that write).
async fn gardenlet_writes_osc(env: &TestEnv) -> OperatingSystemConfig {
    let mut regenerated = oscs(env).get(OSC_NAME).await.expect("OSC");
    regenerated.spec = original_osc(env).spec;
    let annotations = regenerated.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(ANNOTATION_OPERATION.to_string(), "reconcile".to_string());
    annotations.insert(ANNOTATION_TIMESTAMP.to_string(), k8s_openapi::jiff::Timestamp::now().to_string());
    oscs(env).replace(OSC_NAME, &PostParams::default(), &regenerated).await.expect("gardenlet writes the OSC")
}

/// gardenlet writes every pool's OSC in every shoot reconcile, each time with a new `gardener.cloud/timestamp`;
/// the apiserver's reviews of such writes of an unchanged OSC differ only in that, the versions and the times (and
/// the uid), so the webhook gives its kept answer, and what is stored is what answering afresh stores.
#[tokio::test]
async fn gardenlets_writes_of_an_unchanged_osc_get_the_kept_answer() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_written_again").await;
    shoot(&env, true, None).await;
    let first = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create OSC");
    assert!(has_cri_resmgr(&first), "the created OSC is mutated");
    let reused_before = osc_answers_reused();
    for write in 1..=4 {
        let stored = gardenlet_writes_osc(&env).await;
        assert_eq!(stored.spec, first.spec, "write {write} stores the OSC mutated as before");
    }
    // The first write's old object is the created one (it has no timestamp yet): the second write is the first
    // whose review the later ones repeat but for the volatile strings. (Other tests may add reuses; this one's
    // would be missing without the volatile strings.)
    let reused = osc_answers_reused() - reused_before;
    assert!(reused >= 2, "the third and fourth writes get the kept answer (reused {reused})");
}

/// The Extension's success description once it changes to one containing `part` (or equal to the plain one).
async fn success_description(extensions: &Api<Extension>, wanted: impl Fn(&str) -> bool) -> String {
    eventually("the Extension's success description", || async {
        let extension = extensions.get(EXTENSION_TYPE).await.ok()?;
        let last = extension.status?.last_operation?;
        (last.state == LastOperationState::Succeeded && wanted(&last.description)).then_some(last.description)
    })
    .await
}

const RECONCILED: &str = "Successfully reconciled the cri-resmgr extension";
const PENDING: &str = "Node changes wait for the next shoot reconcile (worker pools: cpu-worker)";

/// Only gardenlet's shoot reconcile brings an OSC to the nodes, so the controller does not touch OSCs: after a
/// configuration change it says which pools wait for the next shoot reconcile, and gardenlet's next write of the OSC
/// carries the change (the webhook mutates it then); a disabled extension leaves the next write without cri-resmgr.
#[tokio::test]
async fn node_changes_wait_for_gardenlets_osc_write_and_the_status_says_so() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_rollout").await;
    let extensions = shoot(&env, true, None).await;
    let stored = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create OSC");
    assert!(file_text(&stored, "/etc/cri-resmgr/force.cfg").is_none());

    let controller = RunningController::start(&env);
    let in_step = success_description(&extensions, |d| d == RECONCILED).await;
    assert_eq!(in_step, RECONCILED, "the OSC carries what the extension wants: nothing pending");

    let body = json!({"spec": {"providerConfig": {"configs": {
        "default": "policy:\n  Active: topology-aware\n",
        "force": "policy:\n  Active: balloons\n",
        "EXTRA_OPTIONS": "--metrics-interval=10s"}}},
        "metadata": {"annotations": {"gardener.cloud/operation": "reconcile"}}});
    extensions.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("change config");
    let pending = success_description(&extensions, |d| d.contains(PENDING)).await;
    assert!(pending.starts_with(&format!("{RECONCILED}. {PENDING}")), "{pending}");
    assert!(pending.contains("the agent configs (default, group.*, node.*) apply now"), "{pending}");
    let event = crate::support::event_with_reason(
        &env.client,
        &env.namespace,
        ("Extension", EXTENSION_TYPE),
        "Normal",
        "NodeRolloutPending",
    )
    .await;
    assert!(event.note.as_deref().is_some_and(|note| note.starts_with(PENDING)), "{:?}", event.note);
    let untouched = oscs(&env).get(OSC_NAME).await.expect("OSC");
    assert_eq!(untouched.spec, stored.spec, "the controller does not write OSCs");
    assert_eq!(untouched.metadata.resource_version, stored.metadata.resource_version, "nor annotate them");

    // The next shoot reconcile: gardenlet writes the OSC, the webhook adds today's files.
    let updated = gardenlet_writes_osc(&env).await;
    let env_file = file_text(&updated, "/etc/default/cri-resource-manager").expect("env file");
    assert!(env_file.contains("--force-config /etc/cri-resmgr/force.cfg"), "{env_file}");
    assert!(!env_file.contains("--fallback-config"), "never both: {env_file}");
    assert!(env_file.contains("--metrics-interval=10s"), "{env_file}");
    let marker = file_text(&updated, "/etc/cri-resmgr/policy").expect("policy marker");
    assert!(marker.contains("balloons"), "the forced policy is what the nodes run: {marker}");
    // The controller follows gardenlet's OSC writes: the note goes without another request.
    assert_eq!(success_description(&extensions, |d| d == RECONCILED).await, RECONCILED, "nothing pending any more");

    // Disable: gardenlet deletes the Extension; the controller leaves the OSC alone, and gardenlet's next write of
    // it (the webhook sees the Extension in deletion) carries nothing of ours.
    extensions.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the Extension in deletion", || async {
        extensions.get(EXTENSION_TYPE).await.ok()?.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    assert!(has_cri_resmgr(&oscs(&env).get(OSC_NAME).await.expect("OSC")), "the controller does not strip OSCs");
    // The webhook reads the Extension from its watch-backed store: gardenlet's write follows the deletion once the
    // watch event has arrived (a write within that delay is answered as before, and gardenlet writes again).
    let stripped = eventually("gardenlet's OSC write without cri-resmgr", || async {
        let written = gardenlet_writes_osc(&env).await;
        (!has_cri_resmgr(&written)).then_some(written)
    })
    .await;
    let kubelet = kubelet_unit(&stripped);
    assert!(kubelet.contains(CONTAINERD_ENDPOINT), "kubelet back on containerd: {kubelet}");
    assert_untouched(&stripped, &original_osc(&env));
    controller.stop().await;

    // A regenerated OSC after the label is gone carries nothing of ours either.
    label_namespace(&env, false).await;
    let stored = gardenlet_writes_osc(&env).await;
    assert_untouched(&stored, &original_osc(&env));
}

/// cri-resmgr ships for amd64 only: the OSC of an arm64 pool (selected by default) is stored as gardenlet wrote it,
/// so its kubelet stays on containerd, while the amd64 pool of the same shoot gets cri-resmgr.
#[tokio::test]
async fn osc_of_a_pool_without_a_cri_resmgr_build_is_left_alone() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_arm64").await;
    shoot_with(&env, true, None, |cluster| {
        let mut arm = cluster.spec.shoot.spec.provider.workers[0].clone();
        arm.name = "arm-worker".to_string();
        arm.machine.architecture = Some("arm64".to_string());
        cluster.spec.shoot.spec.provider.workers.push(arm);
    })
    .await;
    let mut arm_osc = original_osc(&env);
    arm_osc.metadata.name = Some("gardener-node-agent-arm-worker-0123456789abcdef-original".to_string());
    arm_osc
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(gardener_extension_cri_resmgr::constants::LABEL_WORKER_POOL.to_string(), "arm-worker".to_string());
    let stored = oscs(&env).create(&PostParams::default(), &arm_osc).await.expect("create arm64 OSC");
    assert_untouched(&stored, &arm_osc);
    assert!(kubelet_unit(&stored).contains(CONTAINERD_ENDPOINT));
    let amd = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create amd64 OSC");
    assert!(has_cri_resmgr(&amd), "the amd64 pool of the same shoot runs cri-resmgr");
}

#[tokio::test]
async fn malformed_osc_gets_a_clear_denial() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_malformed").await;
    shoot(&env, true, None).await;
    let mut osc = serde_json::to_value(original_osc(&env)).expect("json");
    osc["spec"]["units"] = json!([{"name": "kubelet.service", "content": 42}]);
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &kube::discovery::ApiResource::erase::<OperatingSystemConfig>(&()),
    );
    let object: kube::api::DynamicObject = serde_json::from_value(osc).expect("dynamic");
    let error = api.create(&PostParams::default(), &object).await.expect_err("a malformed OSC is denied");
    let message = error.to_string();
    assert!(message.contains("cannot be read"), "{message}");
    // The server survives: a good OSC is still mutated afterwards.
    let stored = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create OSC");
    assert!(has_cri_resmgr(&stored));
}
