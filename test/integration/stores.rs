//! The OSC webhook reads the Cluster, the Extension and the base configs from watch-backed stores: after a change
//! of any of them its answer follows once the watch delivered the change, without asking the apiserver per call.
//! The handler is called directly with the review the apiserver sends, so that the base configs can live in the
//! test's own namespace (the shared webhook server's are shared by every OSC test).

use std::time::Duration;

use gardener_extension_cri_resmgr::apis::extensions::{Cluster, Extension, OperatingSystemConfig};
use gardener_extension_cri_resmgr::constants::{BASE_CONFIGS_CONFIG_MAP, EXTENSION_TYPE};
use gardener_extension_cri_resmgr::domain::images::ImageVector;
use gardener_extension_cri_resmgr::runtime::AdmissionHandler as _;
use gardener_extension_cri_resmgr::runtime::review::{Answer, Reuse, parse_review};
use gardener_extension_cri_resmgr::runtime::stores::{SeedStores, StoreScope};
use gardener_extension_cri_resmgr::webhook::osc::OscMutator;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{TestEnv, eventually, example};

/// How the stored OSC would look after the webhook's answer: `None` when the answer carries no patch.
async fn mutated(mutator: &OscMutator, osc: &Value) -> Option<Value> {
    mutated_and_kept(mutator, osc).await.0
}

/// [`mutated`], and for how long the server may give the same answer to the same review again.
async fn mutated_and_kept(mutator: &OscMutator, osc: &Value) -> (Option<Value>, Reuse) {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7c1e3c3e-0000-4000-8000-000000000001",
            "kind": {"group": "extensions.gardener.cloud", "version": "v1alpha1", "kind": "OperatingSystemConfig"},
            "resource": {"group": "extensions.gardener.cloud", "version": "v1alpha1",
                         "resource": "operatingsystemconfigs"},
            "name": osc["metadata"]["name"],
            "namespace": osc["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "gardenlet"},
            "object": osc,
            "dryRun": false
        }
    });
    let request = parse_review(&serde_json::to_vec(&review).expect("review")).expect("a review");
    let Answer { response, reuse } = mutator.admit_reusable(request).await;
    assert!(response.allowed, "denied: {}", response.result.message);
    let Some(patch) = response.patch.as_ref() else { return (None, reuse) };
    let patch: json_patch::Patch = serde_json::from_slice(patch).expect("a JSON patch");
    let mut object = osc.clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies");
    (Some(object), reuse)
}

/// The inline text of the file at `path` in a mutated OSC (base64 or plain).
fn file_text(osc: &Value, path: &str) -> Option<String> {
    let osc: OperatingSystemConfig = serde_json::from_value(osc.clone()).expect("an OSC");
    let inline = osc.spec.files.into_iter().find(|f| f.path == path)?.content.inline?;
    if inline.encoding == "b64" {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&inline.data).expect("b64");
        Some(String::from_utf8(bytes).expect("utf-8"))
    } else {
        Some(inline.data)
    }
}

const ENV_FILE: &str = "/etc/default/cri-resource-manager";
const FORCE_FILE: &str = "/etc/cri-resmgr/force.cfg";

/// Waits until the webhook's answer for `osc` satisfies `wanted` (the watch delivered the change).
async fn answer_becomes(mutator: &OscMutator, osc: &Value, what: &str, wanted: impl Fn(Option<&Value>) -> bool) {
    eventually(what, || async {
        let answer = mutated(mutator, osc).await;
        wanted(answer.as_ref()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_osc_webhook_answers_from_stores_that_follow_cluster_extension_and_base_config_changes() {
    let env = TestEnv::new("stores_follow").await;
    let mut cluster: Cluster = example("10-cluster.yaml");
    cluster.metadata.name = Some(env.namespace.clone());
    let clusters: Api<Cluster> = Api::all(env.client.clone());
    clusters.create(&PostParams::default(), &cluster).await.expect("create Cluster");
    let mut extension: Extension = example("20-extension.yaml");
    extension.metadata.namespace = Some(env.namespace.clone());
    let extensions: Api<Extension> = Api::namespaced(env.client.clone(), &env.namespace);
    extensions.create(&PostParams::default(), &extension).await.expect("create Extension");

    let scope = StoreScope { configmap_namespace: env.namespace.clone(), shoot_namespace: Some(env.namespace.clone()) };
    let (stores, watches) = SeedStores::watch(env.client.clone(), &scope);
    assert!(!stores.is_synced(), "nothing is synced before the watches run");
    let watches = tokio::spawn(watches);
    tokio::time::timeout(Duration::from_secs(30), stores.synced()).await.expect("the stores sync");
    assert!(stores.is_synced());
    let mutator = OscMutator::new(stores.clone(), ImageVector::embedded().expect("images"));

    let mut osc: OperatingSystemConfig = example("30-osc-cpu-worker.yaml");
    osc.metadata.namespace = Some(env.namespace.clone());
    let osc = serde_json::to_value(&osc).expect("OSC as JSON");
    let (first, kept) = mutated_and_kept(&mutator, &osc).await;
    let first = first.expect("the selected pool's OSC is mutated");
    assert!(file_text(&first, FORCE_FILE).is_none(), "no force config yet");
    // The answer may be given again while the stores hold what it read of the objects it was made from; each change
    // of that below ends it, once the watch delivered it (the answers after each change come from the stores as they
    // are then).
    assert!(kept.holds(), "the answer holds while nothing changed");

    // In every shoot reconcile gardenlet rewrites the Cluster with the Shoot's status, and the controller writes the
    // Extension's status: new versions of both, but nothing the answer reads changed, so it still holds.
    let status = json!({"spec": {"shoot": {"status": {"technicalID": "rewritten"}}}});
    let rewritten =
        clusters.patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&status)).await.expect("Cluster");
    let status = json!({"status": {"observedGeneration": 7}});
    let reported = extensions.patch_status(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&status)).await;
    let reported = reported.expect("Extension status");
    eventually("the stores hold the rewritten Cluster and the reported Extension", || async {
        let cluster = stores.cluster(&env.namespace).await.ok()??;
        let extension = stores.extension(&env.namespace).await.ok()??;
        (cluster.metadata.resource_version == rewritten.metadata.resource_version
            && extension.metadata.resource_version == reported.metadata.resource_version)
            .then_some(())
    })
    .await;
    assert!(kept.holds(), "the answer holds while what it read of the objects is the same");
    assert_eq!(mutated(&mutator, &osc).await, Some(first.clone()), "a fresh answer is the same");
    let kept_answer = |reuse: Reuse| {
        assert!(reuse.holds(), "a fresh answer holds");
        reuse
    };

    // The Extension's providerConfig changes: the answer carries the new configuration.
    let body = json!({"spec": {"providerConfig": {"configs": {"force": "policy:\n  Active: balloons\n"}}}});
    extensions.patch(EXTENSION_TYPE, &PatchParams::default(), &Patch::Merge(&body)).await.expect("change config");
    answer_becomes(&mutator, &osc, "the answer with the Extension's force config", |answer| {
        answer.and_then(|o| file_text(o, FORCE_FILE)).is_some_and(|force| force.contains("balloons"))
    })
    .await;
    assert!(!kept.holds(), "the answer from before the Extension changed is not given again");
    let kept = kept_answer(mutated_and_kept(&mutator, &osc).await.1);

    // The operator's base configs appear, then change.
    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let base = |extra: &str| {
        serde_json::from_value::<ConfigMap>(json!({
            "metadata": {"name": BASE_CONFIGS_CONFIG_MAP},
            "data": {"EXTRA_OPTIONS": extra}
        }))
        .expect("ConfigMap")
    };
    config_maps.create(&PostParams::default(), &base("--metrics-interval=7s")).await.expect("create base configs");
    answer_becomes(&mutator, &osc, "the answer with the new base configs", |answer| {
        answer.and_then(|o| file_text(o, ENV_FILE)).is_some_and(|env| env.contains("--metrics-interval=7s"))
    })
    .await;
    assert!(!kept.holds(), "the answer from before the base configs appeared is not given again");
    let kept = kept_answer(mutated_and_kept(&mutator, &osc).await.1);
    config_maps
        .replace(BASE_CONFIGS_CONFIG_MAP, &PostParams::default(), &base("--metrics-interval=9s"))
        .await
        .expect("change base configs");
    answer_becomes(&mutator, &osc, "the answer with the changed base configs", |answer| {
        answer.and_then(|o| file_text(o, ENV_FILE)).is_some_and(|env| env.contains("--metrics-interval=9s"))
    })
    .await;
    assert!(!kept.holds(), "the answer from before the base configs changed is not given again");
    let kept = kept_answer(mutated_and_kept(&mutator, &osc).await.1);

    // The Cluster changes: the pool becomes arm64 (no cri-resmgr build), so its OSC is left alone; and back.
    let architecture = |arch: &str| {
        let mut workers = serde_json::to_value(&cluster.spec.shoot.spec.provider.workers).expect("workers");
        workers[0]["machine"]["architecture"] = json!(arch);
        json!({"spec": {"shoot": {"spec": {"provider": {"workers": workers}}}}})
    };
    clusters
        .patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&architecture("arm64")))
        .await
        .expect("arm64 pool");
    answer_becomes(&mutator, &osc, "no patch for an arm64 pool", |answer| answer.is_none()).await;
    assert!(!kept.holds(), "the answer from before the Cluster changed is not given again");
    let kept = kept_answer(mutated_and_kept(&mutator, &osc).await.1);
    clusters
        .patch(&env.namespace, &PatchParams::default(), &Patch::Merge(&architecture("amd64")))
        .await
        .expect("amd64 pool");
    answer_becomes(&mutator, &osc, "a patch for the amd64 pool again", |answer| answer.is_some()).await;
    assert!(!kept.holds(), "the answer for the arm64 pool is not given again");
    let kept = kept_answer(mutated_and_kept(&mutator, &osc).await.1);

    // The Extension goes: the OSC comes back without cri-resmgr.
    extensions.delete(EXTENSION_TYPE, &DeleteParams::default()).await.expect("delete Extension");
    answer_becomes(&mutator, &osc, "no patch without the Extension", |answer| answer.is_none()).await;
    assert!(!kept.holds(), "the answer from before the Extension went is not given again");
    // Without an Extension in the store, the answer came from a live read: it is not kept.
    assert!(matches!(mutated_and_kept(&mutator, &osc).await.1, Reuse::Never));
    watches.abort();
}

/// Asking whether the stores are synced (as `/readyz` and every OSC review do) while the reconciler waits for them must
/// not take the waiter's wake-up: the waiter sees the first lists arrive.
#[tokio::test]
async fn waiting_for_the_stores_survives_readiness_asked_meanwhile() {
    let env = TestEnv::new("stores_waiter").await;
    let scope = StoreScope { configmap_namespace: env.namespace.clone(), shoot_namespace: Some(env.namespace.clone()) };
    let (stores, watches) = SeedStores::watch(env.client.clone(), &scope);
    let mut synced = Box::pin(stores.synced());
    assert!(futures::poll!(synced.as_mut()).is_pending(), "waiting before the watches run");
    // Asked after the waiter registered and before the lists arrive: a waker-stealing readiness would leave the waiter
    // asleep for good.
    assert!(!stores.is_synced());
    let watches = tokio::spawn(watches);
    let asking = tokio::spawn({
        let stores = stores.clone();
        async move {
            while !stores.is_synced() {
                tokio::task::yield_now().await;
            }
        }
    });
    // Not `timeout`: it polls the waiter once more when its time is up, which would find the stores synced.
    tokio::select! {
        biased;
        () = tokio::time::sleep(Duration::from_secs(20)) => panic!("the waiter was not woken when the stores synced"),
        () = &mut synced => {}
    }
    asking.await.expect("the asking task ends once synced");
    watches.abort();
}
