//! The Extension controller against the real apiserver: what gardenlet would see. Each test runs its own controller,
//! restricted to the test's namespace (base configs and Leases live there too), and plays gardener-resource-manager
//! where a flow waits for it by writing ManagedResource conditions itself.

use std::time::Duration;

use gardener_extension_cri_resmgr::apis::common::{ConditionStatus, LastOperationState, LastOperationType};
use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension};
use gardener_extension_cri_resmgr::apis::resources::ManagedResource;
use gardener_extension_cri_resmgr::constants::{
    ANNOTATION_OPERATION, BASE_CONFIGS_CONFIG_MAP, CLEANER_MANAGED_RESOURCE_NAME, CONDITION_SYSTEM_COMPONENTS_HEALTHY,
    EXTENSION_TYPE, FINALIZER, HEARTBEAT_LEASE_NAME, LABEL_GARBAGE_COLLECTABLE_REFERENCE, MANAGED_RESOURCE_SECRET_KEY,
    SHOOT_MANAGED_RESOURCE_NAME,
};
use gardener_extension_cri_resmgr::contract::status;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apply::{Placement, apply_all, find};
use crate::support::{RunningController, TestEnv, event_with_reason, eventually, example, sample, scrape};

/// The Extension as Events name what they are about.
const EXTENSION: (&str, &str) = ("Extension", EXTENSION_TYPE);

/// The examples' Cluster and Extension, placed in the test's namespace.
async fn create_shoot(env: &TestEnv, edit_cluster: impl FnOnce(&mut Cluster)) -> Api<Extension> {
    let mut cluster: Cluster = example("10-cluster.yaml");
    cluster.metadata.name = Some(env.namespace.clone());
    edit_cluster(&mut cluster);
    Api::<Cluster>::all(env.client.clone()).create(&PostParams::default(), &cluster).await.expect("create Cluster");
    let mut extension: Extension = example("20-extension.yaml");
    extension.metadata.namespace = Some(env.namespace.clone());
    let api: Api<Extension> = Api::namespaced(env.client.clone(), &env.namespace);
    api.create(&PostParams::default(), &extension).await.expect("create Extension");
    api
}

async fn wait_for_state(api: &Api<Extension>, op: LastOperationType, state: LastOperationState) -> Extension {
    eventually(&format!("Extension lastOperation {op} {state:?}"), || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        let last = extension.status.as_ref()?.last_operation.as_ref()?;
        (last.type_ == op && last.state == state).then_some(extension)
    })
    .await
}

async fn wait_until_ready(api: &Api<Extension>) -> Extension {
    eventually("Extension ready as gardenlet judges it", || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        status::is_ready(&extension).then_some(extension)
    })
    .await
}

/// gardenlet's way to ask for a reconcile: the operation annotation with a timestamp.
async fn request(api: &Api<Extension>, operation: &str) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let body = json!({"metadata": {"annotations": {
        "gardener.cloud/operation": operation, "gardener.cloud/timestamp": now}}});
    api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("annotate Extension");
}

async fn managed_resource(env: &TestEnv, name: &str) -> Option<ManagedResource> {
    Api::<ManagedResource>::namespaced(env.client.clone(), &env.namespace).get_opt(name).await.expect("get MR")
}

/// The objects in the MR's (single) secret.
async fn objects_of(env: &TestEnv, mr: &ManagedResource) -> (String, Vec<Value>) {
    let secret_name = mr.spec.secret_refs[0].name.clone();
    let secret = Api::<Secret>::namespaced(env.client.clone(), &env.namespace).get(&secret_name).await.expect("secret");
    let data = secret.data.expect("secret data");
    let yaml = String::from_utf8(data[MANAGED_RESOURCE_SECRET_KEY].0.clone()).expect("utf-8");
    (secret_name, gardener_extension_cri_resmgr::yaml::from_multi_str(&yaml).expect("objects decode"))
}

/// Marks a ManagedResource as gardener-resource-manager does once everything is applied and healthy.
async fn mark_managed_resource(env: &TestEnv, name: &str, healthy: &str, message: &str, progressing: &str) {
    let api: Api<ManagedResource> = Api::namespaced(env.client.clone(), &env.namespace);
    let mr = api.get(name).await.expect("MR to mark");
    let condition = |type_: &str, status: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": "Test", "message": message,
               "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"})
    };
    let body = json!({"status": {
        "observedGeneration": mr.metadata.generation,
        "conditions": [
            condition("ResourcesApplied", "True", "All resources are applied."),
            condition("ResourcesHealthy", healthy, message),
            condition("ResourcesProgressing", progressing, "")]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)).await.expect("mark MR");
}

async fn set_base_configs(env: &TestEnv, data: &[(&str, &str)]) {
    let api: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let config_map = ConfigMap {
        metadata: ObjectMeta { name: Some(BASE_CONFIGS_CONFIG_MAP.to_string()), ..ObjectMeta::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..ConfigMap::default()
    };
    api.patch(BASE_CONFIGS_CONFIG_MAP, &PatchParams::apply("test").force(), &Patch::Apply(&config_map))
        .await
        .expect("apply base configs");
}

#[tokio::test]
async fn create_deploys_the_shoot_resources_and_reports_success() {
    let env = TestEnv::new("controller_create").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    let extension = wait_until_ready(&api).await;
    assert!(extension.metadata.finalizers.as_ref().is_some_and(|f| f.contains(&FINALIZER.to_string())));
    assert!(
        !extension.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("gardener.cloud/operation")),
        "the reconcile annotation is removed"
    );
    let last = extension.status.as_ref().and_then(|s| s.last_operation.clone()).expect("lastOperation");
    assert_eq!(last.type_, LastOperationType::Create);
    assert_eq!(last.progress, 100);

    let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("runtime MR");
    assert_eq!(mr.metadata.labels.as_ref().and_then(|l| l.get("origin")).map(String::as_str), Some("cri-resmgr"));
    assert_eq!(
        mr.spec.inject_labels.as_ref().and_then(|l| l.get("shoot.gardener.cloud/no-cleanup")).map(String::as_str),
        Some("true")
    );
    assert!(mr.spec.class.is_none(), "applied into the shoot");
    let (secret_name, objects) = objects_of(&env, &mr).await;
    assert!(secret_name.starts_with("managedresource-extension-runtime-cri-resmgr-"), "{secret_name}");
    let mut kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!("{}/{}", o["kind"].as_str().unwrap_or_default(), o["metadata"]["name"].as_str().unwrap_or_default())
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole/extensions.gardener.cloud:cri-resmgr:agent",
            "ClusterRoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
            "ConfigMap/cri-resmgr-config.default",
            "CustomResourceDefinition/adjustments.criresmgr.intel.com",
            "DaemonSet/cri-resmgr-agent",
            "Role/extensions.gardener.cloud:cri-resmgr:agent",
            "RoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
            "ServiceAccount/cri-resmgr-agent",
        ]
    );
    let default = find(&objects, "ConfigMap", "cri-resmgr-config.default");
    let policy = default["data"]["policy"].as_str().expect("policy section");
    assert!(policy.contains("Active: topology-aware"), "{policy}");
    let daemonset = find(&objects, "DaemonSet", "cri-resmgr-agent");
    let affinity = &daemonset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"];
    assert!(affinity.to_string().contains("cpu-worker"), "agent limited to the selected pool: {affinity}");

    // Every object is accepted by a real apiserver (a scratch namespace stands in for the shoot's kube-system).
    create_in_scratch_namespace(&env, &objects).await;
    controller.stop().await;
}

/// Applies the shoot objects to the test bed: a scratch namespace stands in for the shoot's kube-system, and
/// cluster-scoped objects get a unique name (the CRD keeps its name, which its group and plural fix).
async fn create_in_scratch_namespace(env: &TestEnv, objects: &[Value]) {
    let scratch = format!("{}-shoot", env.namespace);
    Api::<Namespace>::all(env.client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta { name: Some(scratch.clone()), ..ObjectMeta::default() },
                ..Namespace::default()
            },
        )
        .await
        .expect("scratch namespace");
    let placement = Placement { namespace: Some(&scratch), cluster_scoped_suffix: Some(&env.namespace) };
    let stored = apply_all(&env.client, objects, placement).await;
    assert_eq!(stored.len(), objects.len());
}

/// cri-resmgr ships for amd64 only: an arm64 pool of the shoot gets no agent, and the Extension's status (and the
/// log) name it with the reason, while the reconcile succeeds for the amd64 pool.
#[tokio::test]
async fn pools_without_a_cri_resmgr_build_are_named_in_the_status() {
    let env = TestEnv::new("controller_arch").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |cluster| {
        let mut arm = cluster.spec.shoot.spec.provider.workers[0].clone();
        arm.name = "arm-worker".to_string();
        arm.machine.architecture = Some("arm64".to_string());
        cluster.spec.shoot.spec.provider.workers.push(arm);
    })
    .await;
    let extension = wait_until_ready(&api).await;
    let last = extension.status.and_then(|s| s.last_operation).expect("lastOperation");
    assert_eq!(last.state, LastOperationState::Succeeded);
    assert_eq!(
        last.description,
        "Successfully reconciled the cri-resmgr extension. Worker pools without cri-resmgr: arm-worker (no cri-resmgr \
         build for arm64)."
    );
    let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("runtime MR");
    let (_, objects) = objects_of(&env, &mr).await;
    let agent = find(&objects, "DaemonSet", "cri-resmgr-agent").to_string();
    assert!(agent.contains("\"cpu-worker\"") && !agent.contains("arm-worker"), "agent only on cpu-worker: {agent}");
    let skipped = event_with_reason(&env.client, &env.namespace, EXTENSION, "Warning", "WorkerPoolSkipped").await;
    assert_eq!(
        skipped.note.as_deref(),
        Some(
            "Worker pools without cri-resmgr (no cri-resmgr build for their architecture: arm-worker (no cri-resmgr \
              build for arm64))."
        )
    );
    assert_eq!(skipped.reporting_controller.as_deref(), Some("gardener-extension-cri-resmgr"));
    controller.stop().await;
}

#[tokio::test]
async fn changed_config_gets_a_new_secret_and_unchanged_config_rewrites_nothing() {
    let env = TestEnv::new("controller_change").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    let before = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("MR");

    // A reconcile with nothing changed writes neither the MR nor a secret.
    let previous_update =
        api.get(EXTENSION_TYPE).await.expect("ext").status.and_then(|s| s.last_operation).expect("op");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    request(&api, "reconcile").await;
    eventually("a second successful reconcile", || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        let op = extension.status.as_ref()?.last_operation.clone()?;
        (status::is_ready(&extension) && op.last_update_time.0 > previous_update.last_update_time.0).then_some(())
    })
    .await;
    let unchanged = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("MR");
    assert_eq!(unchanged.metadata.resource_version, before.metadata.resource_version, "MR not rewritten");

    // A changed config: new secret, MR points at it, the old one stays labelled garbage-collectable.
    let body = json!({"spec": {"providerConfig": {"configs": {"default": "policy:\n  Active: balloons\n"}}}});
    api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("change config");
    request(&api, "reconcile").await;
    let (old_secret, _) = objects_of(&env, &before).await;
    let after = eventually("the MR to reference a new secret", || async {
        let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await?;
        (mr.spec.secret_refs[0].name != old_secret).then_some(mr)
    })
    .await;
    let (_, objects) = objects_of(&env, &after).await;
    let policy = find(&objects, "ConfigMap", "cri-resmgr-config.default")["data"]["policy"].as_str().expect("policy");
    assert!(policy.contains("balloons"), "{policy}");
    let old = Api::<Secret>::namespaced(env.client.clone(), &env.namespace).get(&old_secret).await.expect("old secret");
    assert_eq!(
        old.metadata.labels.as_ref().and_then(|l| l.get(LABEL_GARBAGE_COLLECTABLE_REFERENCE)).map(String::as_str),
        Some("true")
    );
    wait_until_ready(&api).await;
    controller.stop().await;
}

#[tokio::test]
async fn base_config_change_re_reconciles_the_extension() {
    let env = TestEnv::new("controller_base_configs").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    // No annotation, no spec change: only the base ConfigMap changes.
    set_base_configs(&env, &[("group.gpu", "policy:\n  Active: static-pools\n")]).await;
    let mr = eventually("the group ConfigMap from the base configs", || async {
        let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await?;
        let (_, objects) = objects_of(&env, &mr).await;
        objects.iter().any(|o| o["metadata"]["name"] == "cri-resmgr-config.group.gpu").then_some(mr)
    })
    .await;
    let (_, objects) = objects_of(&env, &mr).await;
    let policy = find(&objects, "ConfigMap", "cri-resmgr-config.default")["data"]["policy"].as_str().expect("policy");
    assert!(policy.contains("topology-aware"), "the shoot's default still wins over nothing: {policy}");
    controller.stop().await;
}

#[tokio::test]
async fn invalid_config_reports_the_field_path_and_recovers_when_fixed() {
    let env = TestEnv::new("controller_invalid").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    let body = json!({"spec": {"providerConfig": {"configs": {"default": "policy:\n  Active: null\n"}}}});
    api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("break config");
    request(&api, "reconcile").await;
    let failed = wait_for_state(&api, LastOperationType::Reconcile, LastOperationState::Error).await;
    let last_error = failed.status.as_ref().and_then(|s| s.last_error.clone()).expect("lastError");
    assert!(
        last_error.description.contains("spec.extensions[0].providerConfig.configs[\"default\"]"),
        "{}",
        last_error.description
    );
    assert_eq!(last_error.codes, ["ERR_CONFIGURATION_PROBLEM"]);
    assert!(!status::is_ready(&failed));
    let event = event_with_reason(&env.client, &env.namespace, EXTENSION, "Warning", "ReconcileFailed").await;
    let note = event.note.unwrap_or_default();
    assert!(note.ends_with("(error codes: ERR_CONFIGURATION_PROBLEM)"), "{note}");
    assert!(note.contains("providerConfig.configs[\"default\"]"), "{note}");

    let body = json!({"spec": {"providerConfig": {"configs": {"default": "policy:\n  Active: none\n"}}}});
    api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("fix config");
    request(&api, "reconcile").await;
    let fixed = wait_until_ready(&api).await;
    assert!(fixed.status.as_ref().is_some_and(|s| s.last_error.is_none()), "lastError cleared");
    controller.stop().await;
}

#[tokio::test]
async fn delete_runs_the_cleaner_then_removes_everything_and_the_finalizer() {
    let env = TestEnv::new("controller_delete").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    api.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the cleaner ManagedResource", || async { managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await })
        .await;
    // While the cleaner is not healthy, the extension waits and keeps its finalizer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = api.get(EXTENSION_TYPE).await.expect("still there");
    assert!(waiting.metadata.finalizers.as_ref().is_some_and(|f| f.contains(&FINALIZER.to_string())));
    assert!(managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.is_some(), "runtime MR kept while cleaning");
    let cleaner = managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.expect("cleaner MR");
    let (_, objects) = objects_of(&env, &cleaner).await;
    find(&objects, "DaemonSet", "cri-resmgr-cleaner");
    event_with_reason(&env.client, &env.namespace, EXTENSION, "Normal", "NodeCleanerStarted").await;
    let finished = crate::support::events_about(&env.client, &env.namespace, EXTENSION.0, EXTENSION.1).await;
    assert!(
        !finished.iter().any(|e| e.reason.as_deref() == Some("NodeCleanerFinished")),
        "not finished while the cleaner runs"
    );

    mark_managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME, "True", "", "False").await;
    eventually("the Extension to be gone", || async {
        api.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    event_with_reason(&env.client, &env.namespace, EXTENSION, "Normal", "NodeCleanerFinished").await;
    assert!(managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.is_none(), "runtime MR deleted");
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none(), "cleaner MR deleted");
    controller.stop().await;
}

#[tokio::test]
async fn hibernated_shoot_is_deleted_without_a_cleaner() {
    let env = TestEnv::new("controller_hibernated").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |cluster| {
        cluster.spec.shoot.spec.hibernation =
            Some(serde_json::from_value(json!({"enabled": true})).expect("hibernation"));
    })
    .await;
    wait_until_ready(&api).await;
    api.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the Extension to be gone", || async {
        api.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none(), "no cleaner for a hibernated shoot");
    assert!(managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.is_none());
    controller.stop().await;
}

#[tokio::test]
async fn deleting_shoot_is_deleted_without_a_cleaner() {
    let env = TestEnv::new("controller_shoot_deletion").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |cluster| {
        cluster.spec.shoot.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    })
    .await;
    wait_until_ready(&api).await;
    api.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the Extension to be gone", || async {
        api.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none(), "no cleaner for a deleted shoot");
    controller.stop().await;
}

#[tokio::test]
async fn migrate_keeps_the_shoot_objects_and_frees_the_extension() {
    let env = TestEnv::new("controller_migrate").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    // Play gardener-resource-manager: its finalizer holds the MR until it has orphaned (keepObjects) the objects.
    let mrs: Api<ManagedResource> = Api::namespaced(env.client.clone(), &env.namespace);
    let body = json!({"metadata": {"finalizers": ["resources.gardener.cloud/gardener-resource-manager"]}});
    mrs.patch(SHOOT_MANAGED_RESOURCE_NAME, &PatchParams::default(), &Patch::Merge(&body)).await.expect("GRM finalizer");

    request(&api, "migrate").await;
    let deleting = eventually("the runtime MR to be deleted with keepObjects", || async {
        let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await?;
        mr.metadata.deletion_timestamp.is_some().then_some(mr)
    })
    .await;
    assert_eq!(deleting.spec.keep_objects, Some(true), "keepObjects set before the deletion");
    let body = json!({"metadata": {"finalizers": null}});
    mrs.patch(SHOOT_MANAGED_RESOURCE_NAME, &PatchParams::default(), &Patch::Merge(&body)).await.expect("GRM done");

    wait_for_state(&api, LastOperationType::Migrate, LastOperationState::Succeeded).await;
    let migrated = eventually("finalizers and the migrate annotation removed", || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        let annotations = extension.metadata.annotations.clone().unwrap_or_default();
        (extension.metadata.finalizers.as_ref().is_none_or(Vec::is_empty)
            && !annotations.contains_key("gardener.cloud/operation"))
        .then_some(extension)
    })
    .await;
    assert!(migrated.metadata.deletion_timestamp.is_none());
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none(), "no uninstall on migrate");
    controller.stop().await;
}

#[tokio::test]
async fn health_condition_follows_the_managed_resource() {
    let env = TestEnv::new("controller_health").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    let condition = |wanted: ConditionStatus| {
        let api = api.clone();
        async move {
            eventually(&format!("SystemComponentsHealthy {wanted:?}"), || async {
                let extension = api.get(EXTENSION_TYPE).await.ok()?;
                let conditions = extension.status?.conditions;
                let condition = conditions.into_iter().find(|c| c.type_ == CONDITION_SYSTEM_COMPONENTS_HEALTHY)?;
                (condition.status == wanted).then_some(condition)
            })
            .await
        }
    };
    mark_managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME, "True", "All resources are healthy.", "False").await;
    let healthy = condition(ConditionStatus::True).await;
    assert_eq!(healthy.reason, "HealthCheckSuccessful");

    let invalid =
        "error during apply of object \"apps/v1/DaemonSet/kube-system/cri-resmgr-agent\": DaemonSet is invalid: x";
    mark_managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME, "False", invalid, "False").await;
    let unhealthy = condition(ConditionStatus::False).await;
    assert_eq!(unhealthy.reason, "HealthCheckUnsuccessful");
    assert_eq!(unhealthy.codes, ["ERR_CONFIGURATION_PROBLEM"]);

    mark_managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME, "True", "", "True").await;
    let progressing = condition(ConditionStatus::Progressing).await;
    assert_eq!(progressing.reason, "HealthCheckProgressing");

    // The heartbeat Lease is renewed while the controller runs.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let first = leases.get(HEARTBEAT_LEASE_NAME).await.expect("heartbeat Lease");
    let first_renewal = first.spec.and_then(|s| s.renew_time).expect("renewTime").0;
    eventually("a later heartbeat", || async {
        let lease = leases.get(HEARTBEAT_LEASE_NAME).await.ok()?;
        (lease.spec?.renew_time?.0 > first_renewal).then_some(())
    })
    .await;
    controller.stop().await;
}

#[tokio::test]
async fn controller_restarted_mid_deletion_resumes_and_finishes() {
    let env = TestEnv::new("controller_restart").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    api.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the cleaner ManagedResource", || async { managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await })
        .await;
    controller.stop().await;

    // While no controller runs, the cleaner finishes on every node.
    mark_managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME, "True", "", "False").await;
    assert!(api.get_opt(EXTENSION_TYPE).await.expect("get").is_some(), "nothing finishes without a controller");

    let restarted = RunningController::start(&env);
    eventually("the Extension to be gone", || async {
        api.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.is_none());
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none());
    restarted.stop().await;
}

#[tokio::test]
async fn force_deleted_shoot_frees_the_extension_without_waiting() {
    let env = TestEnv::new("controller_force_delete").await;
    let controller = RunningController::start(&env);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    // Play gardener-resource-manager: its finalizer would keep the MR until the shoot answers, which it won't.
    let mrs: Api<ManagedResource> = Api::namespaced(env.client.clone(), &env.namespace);
    let body = json!({"metadata": {"finalizers": ["resources.gardener.cloud/gardener-resource-manager"]}});
    mrs.patch(SHOOT_MANAGED_RESOURCE_NAME, &PatchParams::default(), &Patch::Merge(&body)).await.expect("GRM finalizer");
    // gardenlet marks a force-deleted Shoot in the Cluster.
    let body = json!({"spec": {"shoot": {"metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z",
        "annotations": {"confirmation.gardener.cloud/force-deletion": "true"}}}}});
    Api::<Cluster>::all(env.client.clone())
        .patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .expect("mark the shoot force-deleted");
    api.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    eventually("the Extension to be gone", || async {
        api.get_opt(EXTENSION_TYPE).await.ok()?.is_none().then_some(())
    })
    .await;
    let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("MR held by GRM's finalizer");
    assert!(mr.metadata.deletion_timestamp.is_some(), "the runtime MR was deleted without waiting for it");
    assert!(managed_resource(&env, CLEANER_MANAGED_RESOURCE_NAME).await.is_none(), "no cleaner on force deletion");
    controller.stop().await;
}

#[tokio::test]
async fn with_ignore_operation_annotation_a_spec_change_alone_reconciles() {
    let env = TestEnv::new("controller_ignore_annotation").await;
    let controller = RunningController::start_with(&env, |options| options.ignore_operation_annotation = true);
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    let before = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await.expect("MR");
    // No operation annotation: only the generation changes.
    let body = json!({"spec": {"providerConfig": {"configs": {"default": "policy:\n  Active: podpools\n"}}}});
    api.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("change config");
    let after = eventually("a new secret without an operation annotation", || async {
        let mr = managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME).await?;
        (mr.spec.secret_refs != before.spec.secret_refs).then_some(mr)
    })
    .await;
    let (_, objects) = objects_of(&env, &after).await;
    let policy = find(&objects, "ConfigMap", "cri-resmgr-config.default")["data"]["policy"].as_str().expect("policy");
    assert!(policy.contains("podpools"), "{policy}");
    let extension = wait_until_ready(&api).await;
    assert_eq!(extension.status.and_then(|s| s.observed_generation), extension.metadata.generation);
    controller.stop().await;
}

/// A replica whose OSC webhook server cannot serve leaves gardenlet's OSC writes failing (failurePolicy Fail) while it
/// looks alive: the controller stops with the webhook's error instead, so that the pod is restarted.
#[tokio::test]
async fn the_controller_stops_when_its_osc_webhook_server_cannot_serve() {
    use gardener_extension_cri_resmgr::commands::controller::ControllerError;
    let env = TestEnv::new("webhook-down").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = taken.local_addr().expect("address").port();
    let certs = tempfile::tempdir().expect("tempdir");
    let controller = RunningController::start_with(&env, |options| {
        options.osc_webhook = true;
        options.webhook.webhook_bind_address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        options.webhook.webhook_cert_dir = certs.path().to_path_buf();
        options.webhook.generate_certs_for = vec!["localhost".to_string()];
        options.webhook.no_webhook_registration = true;
    });
    let result = controller.ended().await;
    assert!(matches!(result, Err(ControllerError::Webhook(_))), "{result:?}");
    drop(taken);
}

#[tokio::test]
async fn extensions_of_other_classes_are_never_touched() {
    let env = TestEnv::new("controller_class").await;
    // A `garden` Extension of our type, as gardener-operator creates for extensions registered for the garden,
    // waiting for its reconcile, next to the shoot's own Extension. Both exist before the controller starts.
    let api = create_shoot(&env, |_| {}).await;
    let garden_name = format!("{EXTENSION_TYPE}-garden");
    let mut garden: Extension = example("20-extension.yaml");
    garden.metadata.name = Some(garden_name.clone());
    garden.metadata.namespace = Some(env.namespace.clone());
    garden.spec.class = Some("garden".to_string());
    api.create(&PostParams::default(), &garden).await.expect("create the garden Extension");

    let controller = RunningController::start(&env);
    wait_until_ready(&api).await;
    // The health loop (every second here) runs over the shoot's Extension ...
    mark_managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME, "True", "All resources are healthy.", "False").await;
    eventually("SystemComponentsHealthy on the shoot's Extension", || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        extension.status?.conditions.iter().any(|c| c.type_ == CONDITION_SYSTEM_COMPONENTS_HEALTHY).then_some(())
    })
    .await;
    // ... a base-config change re-reconciles every Extension served, and the garden one is asked again.
    set_base_configs(&env, &[("default", "policy:\n  Active: none\n")]).await;
    request(&Api::namespaced(env.client.clone(), &env.namespace), "reconcile").await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let ask = json!({"metadata": {"annotations": {"gardener.cloud/operation": "reconcile", "gardener.cloud/timestamp": now}}});
    api.patch(&garden_name, &PatchParams::default(), &Patch::Merge(&ask)).await.expect("annotate the garden one");
    wait_until_ready(&api).await;
    // Several health periods and reconciles later, the garden Extension is as it was written.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let garden = api.get(&garden_name).await.expect("the garden Extension");
    assert!(garden.metadata.finalizers.as_ref().is_none_or(Vec::is_empty), "no finalizer: {:?}", garden.metadata);
    assert!(garden.status.is_none(), "no status: {:?}", garden.status);
    assert_eq!(
        garden.metadata.annotations.as_ref().and_then(|a| a.get("gardener.cloud/operation")).map(String::as_str),
        Some("reconcile"),
        "the operation annotation is left for its own controller"
    );
    controller.stop().await;
}

#[tokio::test]
async fn metrics_count_reconciles_and_writes_and_follow_each_shoot() {
    let env = TestEnv::new("controller_metrics").await;
    let port = cri_resmgr_testbed::control_plane::free_port().expect("free port");
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let controller = RunningController::start_with(&env, |options| {
        options.metrics = gardener_extension_cri_resmgr::runtime::metrics::MetricsOptions::at(address);
    });
    let api = create_shoot(&env, |_| {}).await;
    wait_until_ready(&api).await;
    mark_managed_resource(&env, SHOOT_MANAGED_RESOURCE_NAME, "True", "", "False").await;
    let ns = &env.namespace;
    let metric = |name: &str| format!("gardener_extension_cri_resmgr_{name}");
    // The health loop exports each shoot's state and health after its rounds.
    let text = eventually("the shoot healthy in the metrics", || async {
        let text = scrape(address).await?;
        let healthy = sample(&text, &metric(&format!("shoot_health{{shoot_namespace=\"{ns}\",status=\"True\"}}")));
        (healthy == Some(1.0)).then_some(text)
    })
    .await;
    let value = |text: &str, series: &str| sample(text, &metric(series)).unwrap_or_default();
    assert!(value(&text, "reconciles_total{operation=\"create\",result=\"succeeded\"}") >= 1.0, "{text}");
    assert!(value(&text, "reconcile_duration_seconds_count{operation=\"create\"}") >= 1.0, "{text}");
    assert_eq!(value(&text, "managed_resource_writes_total{result=\"created\"}"), 1.0, "{text}");
    assert_eq!(value(&text, "leader"), 1.0, "{text}");
    // Extra passes (a watch event under load) may count unchanged writes besides the create, so the reconcile
    // below is judged by the count it adds to the one seen once no pass is in flight.
    let settled = eventually("no reconcile in flight once the shoot settled", || async {
        let text = scrape(address).await?;
        (value(&text, "reconciles_in_flight") == 0.0).then_some(text)
    })
    .await;
    let unchanged_before = value(&settled, "managed_resource_writes_total{result=\"unchanged\"}");
    assert_eq!(value(&text, &format!("shoot_last_operation{{shoot_namespace=\"{ns}\",state=\"Succeeded\"}}")), 1.0);
    assert_eq!(value(&text, "extensions{state=\"Succeeded\"}"), 1.0, "{text}");

    // Another reconcile with nothing changed: counted, and its write skipped as unchanged.
    request(&api, "reconcile").await;
    eventually("the controller took the reconcile request", || async {
        let extension = api.get(EXTENSION_TYPE).await.ok()?;
        let annotations = extension.metadata.annotations.unwrap_or_default();
        (!annotations.contains_key(ANNOTATION_OPERATION)).then_some(())
    })
    .await;
    let text = eventually("the unchanged write counted", || async {
        let text = scrape(address).await?;
        (value(&text, "managed_resource_writes_total{result=\"unchanged\"}") > unchanged_before).then_some(text)
    })
    .await;
    assert!(value(&text, "reconciles_total{operation=\"reconcile\",result=\"succeeded\"}") >= 1.0, "{text}");
    assert_eq!(value(&text, "managed_resource_writes_total{result=\"created\"}"), 1.0, "{text}");
    controller.stop().await;
    assert!(scrape(address).await.is_none(), "the metrics server stops with the controller");
}

/// Two replicas that both find the leader-election Lease unlocked both try to take it, each with a server-side apply
/// of `holderIdentity` that is not forced (kube-lease-manager's lock). Each replica writes as its own field manager,
/// so the later apply conflicts and that replica backs off; the earlier one stays the only holder.
#[tokio::test]
async fn a_second_replica_cannot_take_the_lease_the_first_just_took() {
    use gardener_extension_cri_resmgr::commands::controller::lease_field_manager;
    use gardener_extension_cri_resmgr::constants::LEADER_ELECTION_LEASE_NAME;
    let env = TestEnv::new("lease_race").await;
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let take = |identity: &'static str| {
        let leases = leases.clone();
        async move {
            let lease = serde_json::json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEADER_ELECTION_LEASE_NAME},
                "spec": {"holderIdentity": identity, "leaseDurationSeconds": 15},
            });
            let params = PatchParams::apply(&lease_field_manager(identity));
            leases.patch(LEADER_ELECTION_LEASE_NAME, &params, &Patch::Apply(&lease)).await
        }
    };
    take("replica-0").await.expect("the first replica takes the unlocked Lease");
    match take("replica-1").await {
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        other => panic!("the second replica's take must conflict, got {other:?}"),
    }
    let holder = leases.get(LEADER_ELECTION_LEASE_NAME).await.expect("Lease").spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("replica-0"), "the first replica still holds the Lease");
}
