//! The shoot ManagedResource and its Secret, written through a real apiserver the way Gardener's
//! `managedresources.CreateForShoot` writes them: created once, never rewritten when nothing changed, a new
//! immutable Secret when the objects change, `keepObjects` and deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    LABEL_GARBAGE_COLLECTABLE_REFERENCE, MANAGED_RESOURCE_ORIGIN, MANAGED_RESOURCE_SECRET_KEY,
    SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::controller;
use gardener_extension_cri_resmgr::managed_resource::{self, Outcome};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::TestEnv;

fn config_map(name: &str, policy: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "kube-system"},
        "data": {"policy": format!("Active: {policy}\n")},
    })
}

fn secret_names(mr: &ManagedResource) -> Vec<String> {
    mr.spec.secret_refs.iter().map(|r| r.name.clone()).collect()
}

fn gc_label(secret: &Secret) -> Option<&str> {
    secret.metadata.labels.as_ref()?.get(LABEL_GARBAGE_COLLECTABLE_REFERENCE).map(String::as_str)
}

#[tokio::test]
async fn create_then_unchanged_then_new_secret_on_change() {
    let env = TestEnv::new("mr_lifecycle").await;
    let (client, ns, name) = (&env.client, env.namespace.as_str(), SHOOT_MANAGED_RESOURCE_NAME);
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let objects = vec![config_map("cri-resmgr-config.default", "topology-aware")];

    // Create: MR and Secret exist, exactly as the pure builders describe them.
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &objects)
            .await
            .expect("create");
    assert_eq!(outcome, Outcome::Created);
    let want_secret = managed_resource::secret_for(name, ns, &objects).expect("secret");
    let secret_name = want_secret.metadata.name.clone().expect("name");
    let secret = secrets.get(&secret_name).await.expect("secret exists");
    assert_eq!(secret.data, want_secret.data);
    assert_eq!(secret.immutable, Some(true));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(gc_label(&secret), Some("true"));
    let yaml =
        String::from_utf8(secret.data.as_ref().expect("data")[MANAGED_RESOURCE_SECRET_KEY].0.clone()).expect("utf-8");
    let decoded: Vec<Value> = gardener_extension_cri_resmgr::yaml::from_multi_str(&yaml).expect("YAML");
    assert_eq!(decoded, objects);

    let mr = resources.get(name).await.expect("MR exists");
    let want_mr = managed_resource::managed_resource_for_shoot(name, ns, MANAGED_RESOURCE_ORIGIN, false, &secret_name);
    assert_eq!(mr.spec, want_mr.spec);
    assert_eq!(mr.metadata.labels, want_mr.metadata.labels);
    assert_eq!(mr.metadata.annotations, want_mr.metadata.annotations);
    assert_eq!(secret_names(&mr), vec![secret_name.clone()]);

    // Someone else labels and annotates the MR; we must keep that.
    let foreign = json!({"metadata": {"labels": {"team": "x"}, "annotations": {"note": "kept"}}});
    resources.patch(name, &PatchParams::default(), &Patch::Merge(&foreign)).await.expect("foreign patch");
    let before = resources.get(name).await.expect("get");
    let secret_version = secrets.get(&secret_name).await.expect("get").metadata.resource_version;

    // Same objects: nothing is written.
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &objects)
            .await
            .expect("reconcile again");
    assert_eq!(outcome, Outcome::Unchanged);
    let after = resources.get(name).await.expect("get");
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    assert_eq!(secrets.get(&secret_name).await.expect("get").metadata.resource_version, secret_version);

    // Changed objects: a new Secret, the MR points at it, the old one stays, garbage-collectable.
    let changed = vec![config_map("cri-resmgr-config.default", "balloons")];
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &changed)
            .await
            .expect("update");
    assert_eq!(outcome, Outcome::Updated);
    let new_secret_name =
        managed_resource::secret_for(name, ns, &changed).expect("secret").metadata.name.expect("name");
    assert_ne!(new_secret_name, secret_name);
    let mr = resources.get(name).await.expect("get");
    assert_eq!(secret_names(&mr), vec![new_secret_name.clone()]);
    let annotations = mr.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations,
        BTreeMap::from([
            ("note".to_string(), "kept".to_string()),
            (managed_resource::reference_annotation_key(&new_secret_name), new_secret_name.clone()),
        ]),
        "the old reference annotation is gone, foreign annotations stay"
    );
    assert_eq!(mr.metadata.labels.as_ref().and_then(|l| l.get("team")).map(String::as_str), Some("x"));
    assert_eq!(mr.metadata.labels.as_ref().and_then(|l| l.get("origin")).map(String::as_str), Some("cri-resmgr"));
    assert_eq!(gc_label(&secrets.get(&new_secret_name).await.expect("new secret")), Some("true"));
    assert_eq!(gc_label(&secrets.get(&secret_name).await.expect("old secret stays")), Some("true"));

    // An old Secret that lost its label (older library versions) gets it back on the next update.
    let unlabel = json!({"metadata": {"labels": {LABEL_GARBAGE_COLLECTABLE_REFERENCE: null}}});
    secrets.patch(&new_secret_name, &PatchParams::default(), &Patch::Merge(&unlabel)).await.expect("unlabel");
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &objects)
            .await
            .expect("back to the first objects");
    assert_eq!(outcome, Outcome::Updated);
    assert_eq!(gc_label(&secrets.get(&new_secret_name).await.expect("get")), Some("true"));
    assert_eq!(secret_names(&resources.get(name).await.expect("get")), vec![secret_name]);
}

#[tokio::test]
async fn keep_objects_and_delete() {
    let env = TestEnv::new("mr_keep_delete").await;
    let (client, ns, name) = (&env.client, env.namespace.as_str(), SHOOT_MANAGED_RESOURCE_NAME);
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let objects = vec![config_map("cri-resmgr-config.default", "none")];

    // Missing MR: both are no-ops.
    managed_resource::set_keep_objects(client, ns, name, true).await.expect("keepObjects on nothing");
    managed_resource::delete(client, ns, name).await.expect("delete nothing");

    managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &objects)
        .await
        .expect("create");
    managed_resource::set_keep_objects(client, ns, name, true).await.expect("keepObjects");
    assert_eq!(resources.get(name).await.expect("get").spec.keep_objects, Some(true));

    // Reconciling with keepObjects=true again is a no-op; with false it is an update.
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, true, &objects)
            .await
            .expect("same");
    assert_eq!(outcome, Outcome::Unchanged);
    let outcome =
        managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &objects)
            .await
            .expect("flip");
    assert_eq!(outcome, Outcome::Updated);

    let secret_name = managed_resource::secret_for(name, ns, &objects).expect("secret").metadata.name.expect("name");
    managed_resource::delete(client, ns, name).await.expect("delete");
    managed_resource::wait_until_deleted(client, ns, name, Duration::from_millis(200), Duration::from_secs(10))
        .await
        .expect("gone");
    assert!(resources.get_opt(name).await.expect("get").is_none());
    assert!(secrets.get_opt(&secret_name).await.expect("get").is_none(), "the referenced Secret is deleted too");
    managed_resource::delete(client, ns, name).await.expect("deleting twice is fine");

    let health = controller::health::check_health_of(client, ns, name).await.expect("health");
    assert_eq!(health.status.as_str(), "False");
    assert!(health.message.ends_with("not found"), "{}", health.message);
}

#[tokio::test]
async fn wait_until_deleted_times_out_with_the_resource_managers_message() {
    let env = TestEnv::new("mr_wait_deleted").await;
    let (client, ns, name) = (&env.client, env.namespace.as_str(), SHOOT_MANAGED_RESOURCE_NAME);
    let resources: Api<ManagedResource> = Api::namespaced(client.clone(), ns);
    managed_resource::create_or_update_for_shoot(client, ns, name, MANAGED_RESOURCE_ORIGIN, false, &[])
        .await
        .expect("create");
    // No GRM runs here: play its part, a finalizer and a DeletionPending condition.
    let finalizer = json!({"metadata": {"finalizers": ["resources.gardener.cloud/gardener-resource-manager"]}});
    resources.patch(name, &PatchParams::default(), &Patch::Merge(&finalizer)).await.expect("finalizer");
    let status = json!({"status": {"conditions": [{
        "type": "ResourcesApplied", "status": "False", "reason": "DeletionPending",
        "message": "waiting for DaemonSet kube-system/cri-resmgr-agent to be deleted",
        "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"
    }]}});
    resources.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    managed_resource::delete(client, ns, name).await.expect("delete");

    let error =
        managed_resource::wait_until_deleted(client, ns, name, Duration::from_millis(200), Duration::from_secs(1))
            .await
            .expect_err("still there");
    assert!(error.to_string().ends_with("waiting for DaemonSet kube-system/cri-resmgr-agent to be deleted"), "{error}");

    let release = json!({"metadata": {"finalizers": null}});
    resources.patch(name, &PatchParams::default(), &Patch::Merge(&release)).await.expect("release");
    managed_resource::wait_until_deleted(client, ns, name, Duration::from_millis(200), Duration::from_secs(10))
        .await
        .expect("gone");
}
