//! The OperatingSystemConfig webhook through the real apiserver: registered by the controller's webhook server,
//! called by the apiserver for OSCs in labelled shoot namespaces, and kept in step by the reconciler's propagation.

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension, OperatingSystemConfig};
use gardener_extension_cri_resmgr::commands::controller;
use gardener_extension_cri_resmgr::constants::{EXTENSION_TYPE, NAMESPACE_EXTENSION_LABEL};
use gardener_extension_cri_resmgr::domain::images::ImageVector;
use gardener_extension_cri_resmgr::runtime::registration::CONTROLLER_CONFIG_NAME;
use gardener_extension_cri_resmgr::runtime::serving::{WebhookConfigMode, WebhookOptions};
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
                controller::serve_osc_webhook(
                    webhook,
                    client,
                    WEBHOOK_CONFIGMAP_NAMESPACE.to_string(),
                    images,
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

#[tokio::test]
async fn config_change_reaches_the_osc_through_the_reconciler() {
    ensure_osc_webhook();
    let env = TestEnv::new("osc_propagation").await;
    let extensions = shoot(&env, true, None).await;
    let stored = oscs(&env).create(&PostParams::default(), &original_osc(&env)).await.expect("create OSC");
    assert!(file_text(&stored, "/etc/cri-resmgr/force.cfg").is_none());

    let controller = RunningController::start(&env);
    let body = json!({"spec": {"providerConfig": {"configs": {
        "default": "policy:\n  Active: topology-aware\n",
        "force": "policy:\n  Active: balloons\n",
        "EXTRA_OPTIONS": "--metrics-interval=10s"}}},
        "metadata": {"annotations": {"gardener.cloud/operation": "reconcile"}}});
    extensions.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("change config");
    let updated = eventually("the OSC to carry the force config", || async {
        let osc = oscs(&env).get(OSC_NAME).await.ok()?;
        file_text(&osc, "/etc/cri-resmgr/force.cfg").is_some().then_some(osc)
    })
    .await;
    let env_file = file_text(&updated, "/etc/default/cri-resource-manager").expect("env file");
    assert!(env_file.contains("--force-config /etc/cri-resmgr/force.cfg"), "{env_file}");
    assert!(!env_file.contains("--fallback-config"), "never both: {env_file}");
    assert!(env_file.contains("--metrics-interval=10s"), "{env_file}");
    let marker = file_text(&updated, "/etc/cri-resmgr/policy").expect("policy marker");
    assert!(marker.contains("balloons"), "the forced policy is what the nodes run: {marker}");

    // Disable: gardenlet removes the label and deletes the Extension; the controller's delete flow strips the OSC.
    extensions.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    let stripped = eventually("the OSC without cri-resmgr", || async {
        let osc = oscs(&env).get(OSC_NAME).await.ok()?;
        (!has_cri_resmgr(&osc)).then_some(osc)
    })
    .await;
    let kubelet = kubelet_unit(&stripped);
    assert!(kubelet.contains(CONTAINERD_ENDPOINT), "kubelet back on containerd: {kubelet}");
    assert_untouched(&stripped, &original_osc(&env));
    controller.stop().await;

    // A regenerated OSC after the label is gone carries nothing of ours either.
    label_namespace(&env, false).await;
    let mut regenerated = oscs(&env).get(OSC_NAME).await.expect("OSC");
    regenerated.spec = original_osc(&env).spec;
    let stored = oscs(&env).replace(OSC_NAME, &PostParams::default(), &regenerated).await.expect("regenerate");
    assert_untouched(&stored, &original_osc(&env));
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
