use std::collections::BTreeMap;

use gardener_extension_cri_resmgr::apis::{
    extensions::{Cluster, Extension, OperatingSystemConfig},
    resources::ManagedResource,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion;
use serde_json::{Value, json};

use super::*;
use crate::shared_gardener_dir;

fn by_kind() -> BTreeMap<String, CustomResourceDefinition> {
    all().expect("CRDs").into_iter().map(|crd| (crd.spec.names.kind.clone(), crd)).collect()
}

fn schema_json(crd: &CustomResourceDefinition) -> Value {
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("schema")).expect("encode schema")
}

/// Every object key anywhere in `value`, with the JSON path of the object holding it.
fn keys(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                out.push((path.to_owned(), key.clone()));
                keys(child, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                keys(child, &format!("{path}/{index}"), out);
            }
        }
        _ => {}
    }
}

/// Gardener's CRDs as committed, unchanged (file name, CRD).
fn committed_gardener_crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    GARDENER_CRDS
        .into_iter()
        .map(|(file, text)| (file, gardener_extension_cri_resmgr::yaml::from_str(text).expect("decode Gardener CRD")))
        .collect()
}

/// Gardener's CRDs beside the repository, when that checkout has them (file name, text).
fn shared_gardener_crds() -> Option<Vec<(&'static str, String)>> {
    let dir = shared_gardener_dir("crds")?;
    Some(
        GARDENER_CRDS
            .into_iter()
            .map(|(file, _)| (file, std::fs::read_to_string(dir.join(file)).expect("read Gardener CRD")))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The field-path comparison: every place where an installed schema accepts or keeps what Gardener's prunes or
// refuses, or differs from it in any other way that changes what the apiserver does.

/// Keywords that only document (no effect on what the apiserver stores or refuses).
const DOCUMENTATION: [&str; 3] = ["description", "title", "example"];

/// Keywords that must be equal (when either side has them).
const EQUAL: [&str; 20] = [
    "type",
    "format",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-map-type",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "default",
    "pattern",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "multipleOf",
    "maxItems",
    "minItems",
    "maxProperties",
    "minProperties",
];

/// Compares the schema node `installed` with Gardener's `gardener` at `path`, recursively, and reports differences
/// other than the [`DEVIATIONS`].
fn compare(path: &str, installed: &Value, gardener: &Value, out: &mut Vec<String>) {
    let get = |schema: &Value, key: &str| schema.get(key).cloned();
    let flag = |schema: &Value, key: &str| schema.get(key) == Some(&Value::Bool(true));
    for key in EQUAL.iter().copied().chain(["uniqueItems"]) {
        if get(installed, key) != get(gardener, key) {
            out.push(format!("{path}: {key} is {:?}, Gardener's {:?}", get(installed, key), get(gardener, key)));
        }
    }
    // nullable: only the strings deviation.
    let string = gardener.get("type") == Some(&Value::from("string"));
    if flag(installed, "nullable") != flag(gardener, "nullable") && !(string && flag(installed, "nullable")) {
        out.push(format!("{path}: nullable differs from Gardener's"));
    }
    if flag(installed, "x-kubernetes-preserve-unknown-fields") != flag(gardener, "x-kubernetes-preserve-unknown-fields")
    {
        let side = if flag(installed, "x-kubernetes-preserve-unknown-fields") { "keeps" } else { "prunes" };
        out.push(format!("{path}: {side} unknown fields, unlike Gardener's"));
    }
    let list = |schema: &Value, key: &str| -> Vec<Value> {
        schema.get(key).and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let (mine, theirs) = (list(installed, "required"), list(gardener, "required"));
    for field in theirs.iter().filter(|field| !mine.contains(field)) {
        out.push(format!("{path}: {field} is not required, Gardener requires it"));
    }
    for field in mine.iter().filter(|field| !theirs.contains(field)) {
        out.push(format!("{path}: {field} is required, Gardener does not require it"));
    }
    if list(installed, "enum") != list(gardener, "enum") {
        out.push(format!("{path}: enum {:?}, Gardener's {:?}", list(installed, "enum"), list(gardener, "enum")));
    }
    // CEL rules: the 1.20 apiserver cannot take them (a deviation); the test bed never has any of its own.
    if installed.get("x-kubernetes-validations").is_some() {
        out.push(format!("{path}: has x-kubernetes-validations"));
    }
    let empty = serde_json::Map::new();
    let properties = |schema: &Value| schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    let (mine, theirs) = (properties(installed), properties(gardener));
    for (name, child) in &mine {
        match theirs.get(name) {
            Some(real) => compare(&format!("{path}.{name}"), child, real, out),
            None => {
                out.push(format!("{path}.{name}: declared, but Gardener's schema has no such field (it prunes it)"))
            }
        }
    }
    for name in theirs.keys().filter(|name| !mine.contains_key(*name)) {
        out.push(format!("{path}.{name}: missing (Gardener's schema declares it)"));
    }
    for (key, suffix) in [("items", "[]"), ("additionalProperties", "{}"), ("not", "!")] {
        match (installed.get(key), gardener.get(key)) {
            (Some(a), Some(b)) if a.is_object() && b.is_object() => compare(&format!("{path}{suffix}"), a, b, out),
            (a, b) if a != b => out.push(format!("{path}: {key} is {a:?}, Gardener's {b:?}")),
            _ => {}
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        let (a, b) = (list(installed, key), list(gardener, key));
        if a.len() != b.len() {
            out.push(format!("{path}: {key} has {} schemas, Gardener's {}", a.len(), b.len()));
        }
        for (index, (a, b)) in a.iter().zip(&b).enumerate() {
            compare(&format!("{path}.{key}[{index}]"), a, b, out);
        }
    }
    // A keyword neither compared nor documentation (a newer Gardener may use one): must be looked at.
    let known = |key: &str| {
        DOCUMENTATION.contains(&key)
            || EQUAL.contains(&key)
            || [
                "uniqueItems",
                "nullable",
                "x-kubernetes-preserve-unknown-fields",
                "required",
                "enum",
                "x-kubernetes-validations",
                "properties",
                "items",
                "additionalProperties",
                "not",
                "allOf",
                "anyOf",
                "oneOf",
            ]
            .contains(&key)
    };
    for key in gardener.as_object().unwrap_or(&empty).keys().chain(installed.as_object().unwrap_or(&empty).keys()) {
        if !known(key) {
            out.push(format!("{path}: keyword {key} is not compared"));
        }
    }
}

/// Everything in which the installed CRD of a kind differs from Gardener's beyond the [`DEVIATIONS`]: names, scope,
/// versions, subresources, printer columns and, field path by field path, the schema.
fn differences(installed: &CustomResourceDefinition, gardener: &CustomResourceDefinition) -> Vec<String> {
    let mut out = Vec::new();
    if installed.metadata.name != gardener.metadata.name {
        out.push(format!("name {:?}, Gardener's {:?}", installed.metadata.name, gardener.metadata.name));
    }
    let mut mine = installed.spec.clone();
    let mut theirs = gardener.spec.clone();
    let (mine_versions, theirs_versions) = (std::mem::take(&mut mine.versions), std::mem::take(&mut theirs.versions));
    if mine != theirs {
        out.push(format!("spec (group, names, scope, conversion) {mine:?}, Gardener's {theirs:?}"));
    }
    if mine_versions.len() != theirs_versions.len() {
        out.push(format!("{} versions, Gardener's {}", mine_versions.len(), theirs_versions.len()));
    }
    for (m, t) in mine_versions.iter().zip(&theirs_versions) {
        let without_schema = |v: &CustomResourceDefinitionVersion| CustomResourceDefinitionVersion {
            schema: None,
            selectable_fields: None,
            ..v.clone()
        };
        if m.selectable_fields.is_some() {
            out.push(format!("{}: has selectableFields", m.name));
        }
        if without_schema(m) != without_schema(t) {
            out.push(format!("{}: version {:?}, Gardener's {:?}", m.name, without_schema(m), without_schema(t)));
        }
        let schema = |v: &CustomResourceDefinitionVersion| {
            serde_json::to_value(v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref())).expect("encode")
        };
        compare(&m.name, &schema(m), &schema(t), &mut out);
    }
    out
}

fn assert_as_strict_as(gardener: &[(&str, CustomResourceDefinition)]) {
    let installed = by_kind();
    for (file, real) in gardener {
        let mine = &installed[&real.spec.names.kind];
        let found = differences(mine, real);
        assert!(found.is_empty(), "{file}: the test bed's CRD differs from Gardener's:\n{}", found.join("\n"));
    }
}

/// The conformance test: the CRDs the test bed installs differ from Gardener's real ones (beside the repository)
/// in nothing but the listed deviations.
#[test]
fn installed_crds_are_as_strict_as_gardeners() {
    let Some(shared) = shared_gardener_crds() else {
        return;
    };
    let real: Vec<_> = shared
        .iter()
        .map(|(file, text)| (*file, gardener_extension_cri_resmgr::yaml::from_str(text).expect("decode Gardener CRD")))
        .collect();
    assert_as_strict_as(&real);
}

/// The same against the committed copies, so that a checkout without Gardener's files beside it checks the
/// deviations too.
#[test]
fn installed_crds_are_as_strict_as_the_committed_gardener_crds() {
    assert_as_strict_as(&committed_gardener_crds());
}

/// The committed copies are Gardener's files, unchanged.
#[test]
fn committed_gardener_crds_are_gardeners_files() {
    let Some(shared) = shared_gardener_crds() else {
        return;
    };
    for ((file, committed), (_, real)) in GARDENER_CRDS.iter().zip(&shared) {
        assert!(committed == real, "test/fixtures/gardener/crds/{file} differs from Gardener's; copy it again");
    }
}

/// The comparison catches each way a schema can be looser than Gardener's (or else it would pass vacuously).
#[test]
fn comparison_reports_every_loosening() {
    let (_, real) =
        committed_gardener_crds().into_iter().find(|(file, _)| *file == "operatingsystemconfigs.yaml").expect("OSC");
    let installed = by_kind().remove("OperatingSystemConfig").expect("installed OSC");
    let spec = "/spec/versions/0/schema/openAPIV3Schema/properties/spec";
    type Loosen = fn(&mut Value);
    let loosen: [(&str, Loosen); 8] = [
        ("keeps unknown fields", |s| s["x-kubernetes-preserve-unknown-fields"] = json!(true)),
        ("is not required", |s| s["required"] = json!([])),
        ("nullable differs", |s| s["properties"]["units"]["nullable"] = json!(true)),
        ("Gardener's schema has no such field", |s| s["properties"]["extra"] = json!({"type": "string"})),
        ("missing", |s| {
            s["properties"].as_object_mut().expect("properties").remove("files");
        }),
        ("enum", |s| {
            s["properties"]["files"]["items"]["properties"]["content"]["properties"]["inline"]["properties"]["encoding"]
                ["enum"] = json!(["", "b64", "plain"])
        }),
        ("x-kubernetes-embedded-resource", |s| s["x-kubernetes-embedded-resource"] = json!(true)),
        ("type", |s| s["properties"]["type"]["type"] = json!("object")),
    ];
    for (expected, change) in loosen {
        let mut loose = serde_json::to_value(&installed).expect("encode");
        change(loose.pointer_mut(spec).expect("spec schema"));
        let loose: CustomResourceDefinition = serde_json::from_value(loose).expect("decode");
        let found = differences(&loose, &real);
        assert!(found.iter().any(|f| f.contains(expected)), "{expected}: not reported in {found:?}");
    }
    assert_eq!(differences(&installed, &real), Vec::<String>::new());
}

#[test]
fn all_kinds_with_gardener_names() {
    let crds = by_kind();
    let expected = [
        ("Extension", "extensions.extensions.gardener.cloud", "Namespaced", Some("ext")),
        ("Cluster", "clusters.extensions.gardener.cloud", "Cluster", None),
        ("OperatingSystemConfig", "operatingsystemconfigs.extensions.gardener.cloud", "Namespaced", Some("osc")),
        ("ManagedResource", "managedresources.resources.gardener.cloud", "Namespaced", Some("mr")),
        ("Shoot", "shoots.core.gardener.cloud", "Namespaced", None),
    ];
    assert_eq!(crds.len(), expected.len());
    for (kind, name, scope, short) in expected {
        let crd = &crds[kind];
        assert_eq!(crd.metadata.name.as_deref(), Some(name), "{kind}");
        assert_eq!(crd.spec.scope, scope, "{kind}");
        assert_eq!(crd.spec.names.short_names.as_ref().and_then(|s| s.first()).map(String::as_str), short);
        assert_eq!(crd.spec.names.list_kind.as_deref(), Some(format!("{kind}List").as_str()));
        let version = &crd.spec.versions[0];
        assert!(version.served && version.storage, "{kind}");
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{kind}: status");
    }
    assert_eq!(crds["Shoot"].spec.group, "core.gardener.cloud");
    assert_eq!(crds["Shoot"].spec.versions[0].name, "v1beta1");
}

/// Every property the extension's types declare for Gardener's kinds exists, with the same type, in Gardener's
/// schema: catches misspelt JSON names, which a real seed would prune.
#[test]
fn our_types_properties_exist_in_gardener_schemas() {
    let generated: BTreeMap<String, CustomResourceDefinition> =
        [Extension::crd(), Cluster::crd(), OperatingSystemConfig::crd(), ManagedResource::crd()]
            .into_iter()
            .map(|crd| (crd.spec.names.kind.clone(), crd))
            .collect();
    for (file, real) in committed_gardener_crds() {
        let mine = schema_json(&generated[&real.spec.names.kind]);
        compare_properties(file, "", &mine, &schema_json(&real));
    }
}

fn compare_properties(file: &str, path: &str, mine: &Value, theirs: &Value) {
    if let (Some(a), Some(b)) = (mine.get("type"), theirs.get("type")) {
        assert_eq!(a, b, "{file}: {path}: type");
    }
    if let Some(properties) = mine.get("properties").and_then(Value::as_object) {
        for (name, schema) in properties {
            let child = format!("{path}.{name}");
            let Some(real) = theirs.get("properties").and_then(|p| p.get(name)) else {
                panic!("{file}: {child} is not in Gardener's schema");
            };
            compare_properties(file, &child, schema, real);
        }
    }
    if let (Some(a), Some(b)) = (mine.get("items"), theirs.get("items")) {
        compare_properties(file, &format!("{path}[]"), a, b);
    }
}

/// kube-apiserver 1.20 compatibility: no CEL, no field selectors, structural schemas; schema defaults only where
/// Gardener has them.
#[test]
fn acceptable_to_kubernetes_1_20() {
    for crd in all().expect("CRDs") {
        let kind = crd.spec.names.kind.clone();
        let whole = serde_json::to_value(&crd).expect("encode CRD");
        let mut found = Vec::new();
        keys(&whole, "", &mut found);
        for (path, key) in &found {
            assert_ne!(key, "x-kubernetes-validations", "{kind}: {path}");
            assert_ne!(key, "selectableFields", "{kind}: {path}");
            assert_ne!(key, "$ref", "{kind}: {path}");
            for forbidden in ["anyOf", "oneOf", "allOf", "not"] {
                assert!(key != forbidden || path.ends_with("/properties"), "{kind}: {path}/{key}");
            }
            if key == "default" && kind == "Shoot" {
                assert!(path.ends_with("/properties"), "{kind}: schema default at {path}");
            }
        }
        assert_structural(&kind, "", &schema_json(&crd));
    }
}

/// Every string accepts `""` on the test bed's apiserver (see `accept_empty_strings`).
#[test]
fn every_string_is_nullable() {
    fn walk(kind: &str, path: &str, schema: &Value, strings: &mut usize) {
        if schema.get("type") == Some(&Value::from("string")) {
            *strings += 1;
            assert_eq!(schema.get("nullable"), Some(&Value::Bool(true)), "{kind}: {path}");
        }
        for (name, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(kind, &format!("{path}.{name}"), child, strings);
        }
        for child in [schema.get("items"), schema.get("additionalProperties")].into_iter().flatten() {
            walk(kind, &format!("{path}[]"), child, strings);
        }
    }
    let mut strings = 0;
    for crd in all().expect("CRDs") {
        walk(&crd.spec.names.kind, "", &schema_json(&crd), &mut strings);
    }
    assert!(strings > 50, "only {strings} string fields found");
}

/// Each schema node has a `type`, unless it preserves unknown fields (allowed without type).
fn assert_structural(kind: &str, path: &str, schema: &Value) {
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    assert!(schema.get("type").is_some() || preserve, "{kind}: {path} has no type: {schema}");
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        assert_eq!(schema.get("type"), Some(&Value::from("object")), "{kind}: {path}");
        assert!(schema.get("additionalProperties").is_none(), "{kind}: {path}: properties + additionalProperties");
        for (name, child) in properties {
            assert_structural(kind, &format!("{path}.{name}"), child);
        }
    }
    if let Some(items) = schema.get("items") {
        assert_eq!(schema.get("type"), Some(&Value::from("array")), "{kind}: {path}");
        assert_structural(kind, &format!("{path}[]"), items);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        assert_structural(kind, &format!("{path}{{}}"), additional);
    }
}

/// Where Gardener prunes, the test bed prunes: the OSC's spec, files and units, and the Cluster's embedded objects
/// are not marked as Kubernetes objects.
#[test]
fn gardener_pruning_is_kept() {
    let crds = by_kind();
    let osc = schema_json(&crds["OperatingSystemConfig"]);
    for pointer in [
        "/properties/spec",
        "/properties/spec/properties/files/items",
        "/properties/spec/properties/units/items",
        "/properties/status",
    ] {
        let node = osc.pointer(pointer).expect(pointer);
        assert!(node.get("x-kubernetes-preserve-unknown-fields").is_none(), "OSC {pointer}");
        assert!(node.get("properties").is_some(), "OSC {pointer}");
    }
    assert_eq!(osc.pointer("/properties/spec/required"), Some(&json!(["purpose", "type"])));
    let cluster = schema_json(&crds["Cluster"]);
    for field in ["shoot", "cloudProfile", "seed"] {
        let node = cluster.pointer(&format!("/properties/spec/properties/{field}")).expect(field);
        assert!(node.get("x-kubernetes-embedded-resource").is_none(), "Cluster {field}");
    }
}

/// The Shoot stand-in declares every field the typed API models (typed, required where gardener-apiserver requires
/// it) and keeps the real Shoot fields the types do not model, exactly where the types keep them; nothing is
/// nullable but the strings.
#[test]
fn shoot_stand_in_is_strict() {
    let schema = schema_json(&shoot().expect("Shoot CRD"));
    let mut preserved = Vec::new();
    fn walk(path: &str, schema: &Value, preserved: &mut Vec<String>) {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
            preserved.push(path.to_owned());
        }
        if schema.get("nullable") == Some(&Value::Bool(true)) {
            assert_eq!(schema.get("type"), Some(&Value::from("string")), "{path}: nullable");
        }
        for (name, child) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
            walk(&format!("{path}.{name}"), child, preserved);
        }
        for child in [schema.get("items"), schema.get("additionalProperties")].into_iter().flatten() {
            walk(&format!("{path}[]"), child, preserved);
        }
    }
    walk("", &schema, &mut preserved);
    assert_eq!(
        preserved,
        [
            ".spec",
            ".spec.extensions[]",
            ".spec.extensions[].providerConfig",
            ".spec.hibernation",
            ".spec.kubernetes",
            ".spec.provider",
            ".spec.provider.workers[]",
            ".spec.provider.workers[].cri",
            ".spec.provider.workers[].kubernetes",
            ".spec.provider.workers[].machine",
            ".spec.provider.workers[].machine.image",
            ".status",
        ],
        "unknown fields are kept only where the types keep them"
    );
    let workers = "/properties/spec/properties/provider/properties/workers/items";
    assert_eq!(schema.pointer(&format!("{workers}/required")), Some(&json!(["name"])));
    assert_eq!(schema.pointer("/properties/spec/properties/extensions/items/required"), Some(&json!(["type"])));
    assert_eq!(
        schema.pointer(&format!("{workers}/properties/machine/properties/architecture/type")),
        Some(&json!("string")),
        "a modelled field is declared with its type"
    );
}

#[test]
fn yaml_stream_decodes_back_to_the_same_crds() {
    let text = all_as_yaml().expect("YAML");
    assert!(text.starts_with("---\n"));
    assert_eq!(text.matches("\n---\n").count() + 1, all().expect("CRDs").len());
    let decoded: Vec<CustomResourceDefinition> =
        gardener_extension_cri_resmgr::yaml::from_multi_str(&text).expect("decode");
    assert_eq!(decoded, all().expect("CRDs"));
}
