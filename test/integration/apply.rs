//! Manifests as JSON values (rendered charts, objects the extension builds): finding them, and server-side applying
//! them to the test bed, checking that the apiserver accepted each object and kept everything that was sent.

use std::collections::BTreeSet;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};

/// The object of `kind` named `name`; panics listing what there is.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is missing; there are {:?}", kinds_and_names(objects)))
}

/// `Kind/name` of every object.
pub fn kinds_and_names(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .map(|o| {
            format!("{}/{}", o["kind"].as_str().unwrap_or_default(), o["metadata"]["name"].as_str().unwrap_or_default())
        })
        .collect()
}

/// Where the objects go.
#[derive(Debug, Default, Clone, Copy)]
pub struct Placement<'a> {
    /// Namespace for namespaced objects; `None` keeps each object's own.
    pub namespace: Option<&'a str>,
    /// Appended (with `-`) to the names of cluster-scoped objects so that tests do not share them; CRDs keep their
    /// names, which their group and plural fix. `None` applies them under their own names, which is idempotent.
    pub cluster_scoped_suffix: Option<&'a str>,
}

/// Server-side applies every object (with force, as field manager `test`) and returns what the apiserver stored,
/// in the same order. Panics naming the object when the apiserver rejects it or drops a field that was sent.
pub async fn apply_all(client: &kube::Client, objects: &[Value], placement: Placement<'_>) -> Vec<Value> {
    let mut stored = Vec::with_capacity(objects.len());
    for object in objects {
        stored.push(apply(client, object, placement).await);
    }
    stored
}

/// [`apply_all`] for one object.
pub async fn apply(client: &kube::Client, object: &Value, placement: Placement<'_>) -> Value {
    let mut object = object.clone();
    let api_version = object["apiVersion"].as_str().expect("apiVersion").to_string();
    let kind = object["kind"].as_str().expect("kind").to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, capabilities) = pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("the apiserver does not serve {api_version} {kind}: {e}"));
    let api: Api<DynamicObject> = if capabilities.scope == Scope::Namespaced {
        if let Some(namespace) = placement.namespace {
            object["metadata"]["namespace"] = json!(namespace);
        }
        let namespace = object["metadata"]["namespace"].as_str().expect("namespaced object without a namespace");
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        if let Some(suffix) = placement.cluster_scoped_suffix
            && kind != "CustomResourceDefinition"
        {
            let name = format!("{}-{suffix}", object["metadata"]["name"].as_str().expect("name"));
            object["metadata"]["name"] = json!(name);
        }
        Api::all_with(client.clone(), &resource)
    };
    let name = object["metadata"]["name"].as_str().expect("name").to_string();
    let dynamic: DynamicObject = serde_json::from_value(object).expect("a Kubernetes object");
    let created = api
        .patch(&name, &PatchParams::apply("test").force(), &Patch::Apply(&dynamic))
        .await
        .unwrap_or_else(|e| panic!("the apiserver rejects {kind} {name}: {e}"));
    let stored = serde_json::to_value(&created).expect("json");
    let sent = serde_json::to_value(&dynamic).expect("json");
    assert_kept(&sent, &stored, &format!("{kind} {name}"));
    stored
}

/// Everything that was sent is stored: every top-level field but the object's identity and status, and the labels
/// and annotations (the server may add defaults; `stringData` is write-only).
pub fn assert_kept(sent: &Value, stored: &Value, what: &str) {
    let Value::Object(fields) = sent else { panic!("{what}: not an object") };
    for (key, value) in fields {
        match key.as_str() {
            "apiVersion" | "kind" | "status" | "stringData" => {}
            "metadata" => {
                assert_subset(&value["labels"], &stored["metadata"]["labels"], &format!("{what} labels"));
                assert_subset(
                    &value["annotations"],
                    &stored["metadata"]["annotations"],
                    &format!("{what} annotations"),
                );
            }
            _ => assert_subset(value, &stored[key], &format!("{what} {key}")),
        }
    }
}

/// Every field of `sent` is in `stored` with the same value (the server may add defaults).
pub fn assert_subset(sent: &Value, stored: &Value, what: &str) {
    match (sent, stored) {
        (Value::Object(sent), Value::Object(stored)) => {
            for (key, value) in sent {
                let Some(stored_value) = stored.get(key) else { panic!("{what}: field {key} was dropped") };
                assert_subset(value, stored_value, &format!("{what}.{key}"));
            }
        }
        (Value::Array(sent), Value::Array(stored)) => {
            assert_eq!(sent.len(), stored.len(), "{what}: list length");
            for (i, (a, b)) in sent.iter().zip(stored).enumerate() {
                assert_subset(a, b, &format!("{what}[{i}]"));
            }
        }
        (Value::Null, _) => {}
        (a, b) => {
            assert!(a == b || a.to_string().trim_matches('"') == b.to_string().trim_matches('"'), "{what}: {a} != {b}")
        }
    }
}
