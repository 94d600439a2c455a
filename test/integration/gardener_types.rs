//! Gardener's kinds, as the Rust types describe them, are accepted by a real apiserver with Gardener's own CRDs:
//! created, read back equal (so no field the types write is pruned), status written through the status
//! subresource, and watches deliver the change; and that apiserver prunes and refuses what a real seed does.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use gardener_extension_cri_resmgr::apis::common::{LastOperation, LastOperationState, LastOperationType};
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension, ExtensionSpec, OperatingSystemConfig};
use gardener_extension_cri_resmgr::apis::resources::{LocalObjectReference, ManagedResource, ManagedResourceSpec};
use gardener_extension_cri_resmgr::constants::EXTENSION_TYPE;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::{TestEnv, example};

fn processing(type_: LastOperationType) -> LastOperation {
    LastOperation {
        type_,
        state: LastOperationState::Processing,
        progress: 1,
        description: "Reconciling the extension".to_string(),
        last_update_time: Time(k8s_openapi::jiff::Timestamp::from_second(1_767_225_600).expect("time")),
    }
}

/// Waits until a watch on `name` delivers an object for which `done` holds.
async fn watch_until<K>(api: Api<K>, name: String, done: impl Fn(&K) -> bool)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, config).applied_objects();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        let mut stream = std::pin::pin!(stream);
        while let Some(object) = stream.try_next().await.expect("watch stream") {
            if done(&object) {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "the watch did not deliver the change to {name}");
}

#[tokio::test]
async fn extension_round_trips_and_its_status_subresource_is_watched() {
    let env = TestEnv::new("extension_round_trip").await;
    let api: Api<Extension> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut extension = Extension::new(
        EXTENSION_TYPE,
        ExtensionSpec {
            type_: EXTENSION_TYPE.to_string(),
            class: None,
            provider_config: Some(json!({"configs": {"default": "policy:\n  Active: topology-aware\n"}})),
        },
    );
    extension.metadata.annotations =
        Some(BTreeMap::from([("gardener.cloud/operation".to_string(), "reconcile".to_string())]));
    let created = api.create(&PostParams::default(), &extension).await.expect("create Extension");
    let read = api.get(EXTENSION_TYPE).await.expect("get Extension");
    assert_eq!(read.spec, extension.spec);
    assert_eq!(read.metadata.annotations, extension.metadata.annotations);
    assert_eq!(read, created);

    let watch = tokio::spawn(watch_until(api.clone(), EXTENSION_TYPE.to_string(), |e: &Extension| {
        e.status.as_ref().and_then(|s| s.last_operation.as_ref()).is_some_and(|op| op.progress == 1)
    }));
    // Give the watch its initial list before the change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = json!({"status": {"lastOperation": processing(LastOperationType::Create), "observedGeneration": 1}});
    let patched = api
        .patch_status(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch status subresource");
    let operation = patched.status.as_ref().and_then(|s| s.last_operation.clone()).expect("lastOperation");
    assert_eq!(operation, processing(LastOperationType::Create));
    assert_eq!(patched.spec, extension.spec, "a status patch leaves the spec alone");
    watch.await.expect("watch task");

    // The status subresource ignores status in a main-resource update, as Gardener's CRD does.
    let mut without_status = api.get(EXTENSION_TYPE).await.expect("get");
    without_status.status = None;
    let replaced = api.replace(EXTENSION_TYPE, &PostParams::default(), &without_status).await.expect("replace");
    assert!(replaced.status.is_some(), "status survives a main-resource update");
}

#[tokio::test]
async fn cluster_with_embedded_shoot_round_trips() {
    let env = TestEnv::new("cluster_round_trip").await;
    let api: Api<Cluster> = Api::all(env.client.clone());
    let mut cluster: Cluster = example("10-cluster.yaml");
    cluster.metadata.name = Some(env.namespace.clone());
    api.create(&PostParams::default(), &cluster).await.expect("create Cluster");
    let read = api.get(&env.namespace).await.expect("get Cluster");
    assert_eq!(read.spec, cluster.spec, "the embedded Shoot, CloudProfile and Seed come back unchanged");
    let workers = &read.spec.shoot.spec.provider.workers;
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].name, "cpu-worker");
    assert_eq!(workers[0].cri.as_ref().map(|c| c.name.as_str()), Some("containerd"));
    let extension = read.spec.shoot.spec.extensions.iter().find(|e| e.type_ == EXTENSION_TYPE).expect("our entry");
    assert!(extension.provider_config.is_some());
    assert!(read.spec.shoot.spec.other.contains_key("networking"), "unknown Shoot fields are preserved");
    api.delete(&env.namespace, &Default::default()).await.expect("delete Cluster");
}

#[tokio::test]
async fn operating_system_config_round_trips_and_its_status_is_watched() {
    let env = TestEnv::new("osc_round_trip").await;
    let api: Api<OperatingSystemConfig> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut osc: OperatingSystemConfig = example("30-osc-cpu-worker.yaml");
    osc.metadata.namespace = Some(env.namespace.clone());
    let name = osc.metadata.name.clone().expect("name");
    api.create(&PostParams::default(), &osc).await.expect("create OSC");
    let read = api.get(&name).await.expect("get OSC");
    assert_eq!(read.spec, osc.spec);
    assert_eq!(read.metadata.labels, osc.metadata.labels);
    let kubelet = read.spec.units.iter().find(|u| u.name == "kubelet.service").expect("kubelet unit");
    assert!(kubelet.content.as_deref().unwrap_or_default().contains("--container-runtime-endpoint="));
    assert!(read.spec.cri_config.is_some(), "criConfig survives");

    let watch = tokio::spawn(watch_until(api.clone(), name.clone(), |o: &OperatingSystemConfig| {
        o.status.as_ref().and_then(|s| s.common.last_operation.as_ref()).is_some()
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = json!({"status": {"lastOperation": processing(LastOperationType::Reconcile)}});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("patch OSC status");
    watch.await.expect("watch task");
}

#[tokio::test]
async fn managed_resource_round_trips_and_its_status_is_watched() {
    let env = TestEnv::new("mr_round_trip").await;
    let api: Api<ManagedResource> = Api::namespaced(env.client.clone(), &env.namespace);
    let mr = ManagedResource {
        metadata: ObjectMeta {
            name: Some("extension-runtime-cri-resmgr".to_string()),
            namespace: Some(env.namespace.clone()),
            labels: Some(BTreeMap::from([("origin".to_string(), "cri-resmgr".to_string())])),
            ..ObjectMeta::default()
        },
        spec: ManagedResourceSpec {
            secret_refs: vec![LocalObjectReference {
                name: "managedresource-extension-runtime-cri-resmgr-0123abcd".to_string(),
            }],
            inject_labels: Some(BTreeMap::from([("shoot.gardener.cloud/no-cleanup".to_string(), "true".to_string())])),
            keep_objects: Some(false),
            ..ManagedResourceSpec::default()
        },
        status: None,
    };
    api.create(&PostParams::default(), &mr).await.expect("create MR");
    let read = api.get("extension-runtime-cri-resmgr").await.expect("get MR");
    assert_eq!(read.spec, mr.spec);

    let watch =
        tokio::spawn(watch_until(api.clone(), "extension-runtime-cri-resmgr".to_string(), |m: &ManagedResource| {
            m.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "ResourcesHealthy"))
        }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = json!({"status": {"observedGeneration": 1, "conditions": [{
        "type": "ResourcesHealthy", "status": "True", "reason": "ResourcesHealthy", "message": "All resources are healthy.",
        "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"}]}});
    let patched = api
        .patch_status("extension-runtime-cri-resmgr", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch MR status");
    assert_eq!(patched.status.expect("status").observed_generation, Some(1));
    watch.await.expect("watch task");
}

/// The test bed is as strict as a seed: unknown fields inside an OSC's spec, files and units are pruned (Gardener's
/// CRD does not keep them), and an object without a field Gardener requires is refused.
#[tokio::test]
async fn unknown_fields_are_pruned_and_required_fields_enforced_as_in_a_seed() {
    let env = TestEnv::new("strict_crds").await;
    let resource = ApiResource::erase::<OperatingSystemConfig>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
    let osc: DynamicObject = serde_json::from_value(json!({
        "apiVersion": resource.api_version, "kind": resource.kind, "metadata": {"name": "strict"},
        "spec": {"type": "gardenlinux", "purpose": "reconcile", "notAField": true,
                 "units": [{"name": "a.service", "notAField": true}],
                 "files": [{"path": "/etc/a", "notAField": true, "content": {"inline": {"data": "x", "encoding": ""}}}]}
    }))
    .expect("OSC object");
    let created = api.create(&PostParams::default(), &osc).await.expect("create OSC");
    let spec = &created.data["spec"];
    assert!(spec.get("notAField").is_none(), "spec keeps an unknown field: {spec}");
    assert!(spec["units"][0].get("notAField").is_none(), "a unit keeps an unknown field: {spec}");
    assert!(spec["files"][0].get("notAField").is_none(), "a file keeps an unknown field: {spec}");
    assert_eq!(spec["files"][0]["content"]["inline"]["encoding"], "", "the empty string is accepted");

    let mut without_purpose = osc.clone();
    without_purpose.metadata.name = Some("no-purpose".to_string());
    without_purpose.data["spec"].as_object_mut().expect("spec").remove("purpose");
    let refused = api.create(&PostParams::default(), &without_purpose).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains("purpose")),
        "an OSC without spec.purpose is refused: {refused:?}"
    );
}
