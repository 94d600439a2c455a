//! Tests of [`super`].

use serde_json::json;

use super::*;
use crate::apis::common::Condition;
use crate::apis::resources::ManagedResourceStatus;
use crate::contract::test_support::{condition, healthy_conditions};

/// A ManagedResource at generation 2 with the given conditions, observed at `observed`.
fn mr_with(observed: Option<i64>, conditions: Vec<Condition>) -> ManagedResource {
    let mut mr = managed_resource_for_shoot("mr", "shoot--p--s", "cri-resmgr", false, "managedresource-mr-01234567");
    mr.metadata.generation = Some(2);
    mr.status = Some(ManagedResourceStatus { conditions, observed_generation: observed, ..Default::default() });
    mr
}

fn sample_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cri-resmgr-config.default",
               "namespace": "kube-system"}, "data": {"policy": "Active: topology-aware\n"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cri-resmgr-agent",
               "namespace": "kube-system"}}),
    ]
}

#[test]
fn sha256_hex_known_answer() {
    // printf 'a: 1\n' | sha256sum
    assert_eq!(sha256_hex(b"a: 1\n"), "37b128c59f1f5097f73f82691cb519f1f568667faab5ced1b4ab979d36837eae");
}

#[test]
fn secret_checksum_hashes_the_hex_digests_in_key_order() {
    // printf '%s' "$(printf 'a: 1\n' | sha256sum | cut -c1-64)" | sha256sum
    let one = BTreeMap::from([("objects.yaml".to_string(), ByteString(b"a: 1\n".to_vec()))]);
    assert_eq!(secret_checksum(&one), "0b44379e9ad9330ba7f026426b604d77ea874f77aed81980507544ad871e7924");
    // Keys sorted: a (x) then b (y), whatever the insertion order:
    // printf '%s%s' "$(printf x | sha256sum | cut -c1-64)" "$(printf y | sha256sum | cut -c1-64)" | sha256sum
    let mut two = BTreeMap::new();
    two.insert("b".to_string(), ByteString(b"y".to_vec()));
    two.insert("a".to_string(), ByteString(b"x".to_vec()));
    assert_eq!(secret_checksum(&two), "80d888481399c652ab6f09cdee09a96f9f7b665b7758a573275ca76a536e5e5f");
}

#[test]
fn reference_annotation_key_known_answer() {
    // printf '%s' managedresource-extension-runtime-cri-resmgr-0a1b2c3d | sha256sum | cut -c1-8
    assert_eq!(
        reference_annotation_key("managedresource-extension-runtime-cri-resmgr-0a1b2c3d"),
        "reference.resources.gardener.cloud/secret-bf4b185e"
    );
}

#[test]
fn objects_yaml_is_documents_joined_by_separator_and_deterministic() {
    let objects = sample_objects();
    let yaml = objects_yaml(&objects).expect("encode");
    assert!(!yaml.starts_with("---"), "{yaml}");
    assert_eq!(yaml.matches("\n---\n").count(), 1, "{yaml}");
    assert!(yaml.ends_with('\n'));
    let decoded: Vec<Value> = crate::yaml::from_multi_str(&yaml).expect("decode");
    assert_eq!(decoded, objects);
    // Same objects, keys given in another order: same bytes.
    let reordered = vec![
        json!({"data": {"policy": "Active: topology-aware\n"}, "metadata": {"namespace": "kube-system",
               "name": "cri-resmgr-config.default"}, "kind": "ConfigMap", "apiVersion": "v1"}),
        objects[1].clone(),
    ];
    assert_eq!(objects_yaml(&reordered).expect("encode"), yaml);
    assert_eq!(objects_yaml(&[]).expect("encode"), "");
}

#[test]
fn secret_for_is_named_after_the_checksum_of_its_data() {
    let objects = sample_objects();
    let secret = secret_for("extension-runtime-cri-resmgr", "shoot--p--s", &objects).expect("secret");
    let yaml = objects_yaml(&objects).expect("encode");
    // Independently: sha256hex(sha256hex(data["objects.yaml"])).
    let inner = hex::encode(Sha256::digest(yaml.as_bytes()));
    let checksum = hex::encode(Sha256::digest(inner.as_bytes()));
    assert_eq!(
        serde_json::to_value(&secret).expect("encode"),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("managedresource-extension-runtime-cri-resmgr-{}", &checksum[..8]),
                "namespace": "shoot--p--s",
                "labels": {"resources.gardener.cloud/garbage-collectable-reference": "true"},
            },
            "data": {"objects.yaml": serde_json::to_value(ByteString(yaml.into_bytes())).expect("b64")},
            "immutable": true,
            "type": "Opaque",
        })
    );
    // Stable: same objects, same Secret; other objects, another name.
    assert_eq!(secret_for("extension-runtime-cri-resmgr", "shoot--p--s", &objects).expect("secret"), secret);
    let other = secret_for("extension-runtime-cri-resmgr", "shoot--p--s", &objects[..1]).expect("secret");
    assert_ne!(other.metadata.name, secret.metadata.name);
}

#[test]
fn managed_resource_for_shoot_follows_create_for_shoot() {
    let mr = managed_resource_for_shoot(
        "extension-runtime-cri-resmgr",
        "shoot--p--s",
        "cri-resmgr",
        true,
        "managedresource-extension-runtime-cri-resmgr-0a1b2c3d",
    );
    assert_eq!(
        serde_json::to_value(&mr).expect("encode"),
        json!({
            "apiVersion": "resources.gardener.cloud/v1alpha1",
            "kind": "ManagedResource",
            "metadata": {
                "name": "extension-runtime-cri-resmgr",
                "namespace": "shoot--p--s",
                "labels": {"origin": "cri-resmgr"},
                "annotations": {
                    "reference.resources.gardener.cloud/secret-bf4b185e":
                        "managedresource-extension-runtime-cri-resmgr-0a1b2c3d"
                },
            },
            "spec": {
                "secretRefs": [{"name": "managedresource-extension-runtime-cri-resmgr-0a1b2c3d"}],
                "injectLabels": {"shoot.gardener.cloud/no-cleanup": "true"},
                "keepObjects": true,
            },
        })
    );
}

#[test]
fn merge_keeps_foreign_metadata_and_replaces_references_and_spec() {
    let old = managed_resource_for_shoot("mr", "ns", "cri-resmgr", false, "managedresource-mr-aaaaaaaa");
    let mut existing = old.clone();
    existing.metadata.resource_version = Some("7".into());
    existing.metadata.labels.get_or_insert_default().insert("team".into(), "x".into());
    existing.metadata.annotations.get_or_insert_default().insert("note".into(), "kept".into());
    existing.spec.force_overwrite_labels = Some(true);
    existing.status = Some(ManagedResourceStatus { observed_generation: Some(1), ..Default::default() });

    let desired = managed_resource_for_shoot("mr", "ns", "cri-resmgr", true, "managedresource-mr-bbbbbbbb");
    let merged = merge_into_existing(&existing, &desired);
    assert_eq!(merged.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(
        merged.metadata.labels,
        Some(BTreeMap::from([("origin".into(), "cri-resmgr".into()), ("team".into(), "x".into())]))
    );
    assert_eq!(
        merged.metadata.annotations,
        Some(BTreeMap::from([
            ("note".into(), "kept".into()),
            (reference_annotation_key("managedresource-mr-bbbbbbbb"), "managedresource-mr-bbbbbbbb".into()),
        ]))
    );
    assert_eq!(merged.spec, desired.spec);
    assert_eq!(merged.status, existing.status);
    // Merging again changes nothing: this equality is what makes a steady-state reconcile write nothing.
    assert_eq!(merge_into_existing(&merged, &desired), merged);
    assert_ne!(merged, existing);
}

#[test]
fn deletion_problem_surfaces_grm_deletion_messages_only() {
    let pending = condition(CONDITION_RESOURCES_APPLIED, "False", reasons::DELETION_PENDING, "waiting for ds");
    assert_eq!(deletion_problem(&mr_with(Some(2), vec![pending])).as_deref(), Some("waiting for ds"));
    let failed = condition(CONDITION_RESOURCES_APPLIED, "False", reasons::APPLY_FAILED, "apply failed");
    assert_eq!(deletion_problem(&mr_with(Some(2), vec![failed])), None);
    assert_eq!(deletion_problem(&mr_with(Some(2), healthy_conditions())), None);

    let timeout = |detail: Option<&str>| ManagedResourceError::DeletionTimeout {
        namespace: "ns".into(),
        name: "mr".into(),
        timeout: Duration::from_secs(3),
        detail: detail.map(str::to_string),
    };
    assert_eq!(timeout(None).to_string(), "ManagedResource ns/mr was not deleted within 3s");
    assert_eq!(timeout(Some("waiting")).to_string(), "ManagedResource ns/mr was not deleted within 3s: waiting");
    assert_eq!(
        timeout(Some("error during apply of object a is invalid: b")).codes(),
        vec![ErrorCode::ConfigurationProblem]
    );
    assert!(timeout(Some("waiting")).codes().is_empty());
}
