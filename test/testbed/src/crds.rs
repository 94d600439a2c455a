//! CustomResourceDefinitions that the local control plane installs.
//!
//! They are generated from the Rust types in [`gardener_extension_cri_resmgr::apis`], so the schema the test bed enforces is the one the
//! code encodes. They must be accepted by a Kubernetes **1.20** kube-apiserver (the test bed's): structural
//! schemas only, no CEL (`x-kubernetes-validations`), no `selectableFields`, and no schema defaults (schemars
//! emits `default` for `#[serde(default)]` fields; a defaulted `""` would be persisted by the apiserver and is
//! not what Gardener's CRDs do). Names, scope, versions and subresources equal Gardener's CRDs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresourceStatus, CustomResourceSubresources, JSONSchemaProps,
    JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use gardener_extension_cri_resmgr::apis::{
    core::Shoot,
    extensions::{Cluster, Extension, OperatingSystemConfig},
    resources::ManagedResource,
};

/// Extension, Cluster, OperatingSystemConfig, ManagedResource and Shoot (apiextensions.k8s.io/v1).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds =
        vec![Extension::crd(), Cluster::crd(), OperatingSystemConfig::crd(), ManagedResource::crd(), Shoot::crd()];
    for crd in &mut crds {
        finish(crd);
    }
    crds
}

/// All CRDs as one multi-document YAML stream.
pub fn all_as_yaml() -> Result<String, gardener_extension_cri_resmgr::yaml::YamlError> {
    let mut out = String::new();
    for crd in all() {
        let doc = gardener_extension_cri_resmgr::yaml::to_string(&crd)?;
        out.push_str("---\n");
        out.push_str(doc.strip_prefix("---\n").unwrap_or(&doc));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Brings a kube-derived CRD in line with Gardener's and with what kube-apiserver 1.20 accepts.
fn finish(crd: &mut CustomResourceDefinition) {
    let names = &mut crd.spec.names;
    // controller-gen always writes listKind; the apiserver would default it to the same value.
    names.list_kind = Some(format!("{}List", names.kind));
    // Gardener's Cluster CRD has a status subresource although no status schema (nobody writes one); kube-derive
    // only adds the subresource together with a status type.
    if names.kind == "Cluster" {
        for version in &mut crd.spec.versions {
            version.subresources.get_or_insert_with(|| CustomResourceSubresources {
                scale: None,
                status: Some(CustomResourceSubresourceStatus(serde_json::json!({}))),
            });
        }
    }
    for version in &mut crd.spec.versions {
        version.selectable_fields = None;
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            sanitize_schema(schema);
        }
    }
}

/// Removes `default` and CEL rules from every schema node (never a property that happens to be named `default`),
/// and makes every string `nullable`.
///
/// Why `nullable`: the test bed's kube-apiserver 1.20 is built with Go 1.19, and its kube-openapi type validator
/// decides "zero value ⇒ must be null" with `reflect.DeepEqual(reflect.Zero(t), reflect.ValueOf(v))`. Since Go
/// stores `""` in an interface as a pointer to the runtime's shared zero buffer, which `reflect.Zero` also returns,
/// that check is true for `""`: a non-nullable string field rejects the empty string ("must be of type string:
/// \"null\""), e.g. `files[].content.inline.encoding: ""`, which Gardener writes for plain-text files.
/// `nullable: true` skips that branch. Gardener's own components never write `null` strings, and merge patches
/// delete keys set to `null`, so nothing else changes.
fn sanitize_schema(schema: &mut JSONSchemaProps) {
    schema.default = None;
    schema.x_kubernetes_validations = None;
    if schema.type_.as_deref() == Some("string") {
        schema.nullable = Some(true);
    }
    if let Some(properties) = schema.properties.as_mut() {
        properties.values_mut().for_each(sanitize_schema);
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => sanitize_schema(items),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(sanitize_schema),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = schema.additional_properties.as_mut() {
        sanitize_schema(additional);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of].into_iter().flatten() {
        list.iter_mut().for_each(sanitize_schema);
    }
    if let Some(not) = schema.not.as_mut() {
        sanitize_schema(not);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::shared_gardener_dir;

    fn by_kind() -> BTreeMap<String, CustomResourceDefinition> {
        all().into_iter().map(|crd| (crd.spec.names.kind.clone(), crd)).collect()
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

    /// Gardener's real CRDs of our kinds, with their file names.
    fn gardener_crds(dir: &std::path::Path) -> Vec<(&'static str, CustomResourceDefinition)> {
        ["extensions.yaml", "clusters.yaml", "operatingsystemconfigs.yaml", "managedresources.yaml"]
            .into_iter()
            .map(|file| {
                let text = std::fs::read_to_string(dir.join(file)).expect("read Gardener CRD");
                (file, gardener_extension_cri_resmgr::yaml::from_str(&text).expect("decode Gardener CRD"))
            })
            .collect()
    }

    /// Group, names, scope, versions, subresources and printer columns equal Gardener's CRDs.
    #[test]
    fn match_gardener_crds() {
        let Some(dir) = shared_gardener_dir("crds") else {
            return;
        };
        let ours = by_kind();
        for (file, real) in gardener_crds(&dir) {
            let mine = &ours[&real.spec.names.kind];
            assert_eq!(mine.metadata.name, real.metadata.name, "{file}");
            assert_eq!(mine.spec.group, real.spec.group, "{file}");
            assert_eq!(mine.spec.names, real.spec.names, "{file}");
            assert_eq!(mine.spec.scope, real.spec.scope, "{file}");
            assert_eq!(mine.spec.versions.len(), real.spec.versions.len(), "{file}");
            for (m, r) in mine.spec.versions.iter().zip(&real.spec.versions) {
                assert_eq!((&m.name, m.served, m.storage), (&r.name, r.served, r.storage), "{file}");
                assert_eq!(m.subresources, r.subresources, "{file}");
                let columns = |v: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion| {
                    v.additional_printer_columns
                        .iter()
                        .flatten()
                        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(columns(m), columns(r), "{file}: printer columns");
            }
        }
    }

    /// Every property our schemas declare exists, with the same type, in Gardener's schema: catches misspelt
    /// JSON names (they would be pruned by the real apiserver).
    #[test]
    fn our_properties_exist_in_gardener_schemas() {
        let Some(dir) = shared_gardener_dir("crds") else {
            return;
        };
        let ours = by_kind();
        for (file, real) in gardener_crds(&dir) {
            let mine = schema_json(&ours[&real.spec.names.kind]);
            let theirs = schema_json(&real);
            compare_properties(file, "", &mine, &theirs);
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

    /// kube-apiserver 1.20 compatibility: no CEL, no defaults, no field selectors, structural schemas.
    #[test]
    fn acceptable_to_kubernetes_1_20() {
        for crd in all() {
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
                if key == "default" {
                    assert!(path.ends_with("/properties"), "{kind}: schema default at {path}");
                }
            }
            assert_structural(&kind, "", &schema_json(&crd));
        }
    }

    /// Every string accepts `""` on the test bed's apiserver (see `sanitize_schema`).
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
        for crd in all() {
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

    /// The objects whose unmodelled fields must survive a write through the apiserver are not pruned.
    #[test]
    fn unmodelled_fields_are_not_pruned() {
        let crds = by_kind();
        let preserved = |kind: &str, pointer: &str| {
            let schema = schema_json(&crds[kind]);
            let node = schema.pointer(pointer).unwrap_or_else(|| panic!("{kind}: no {pointer}"));
            assert_eq!(node["x-kubernetes-preserve-unknown-fields"], true, "{kind}: {pointer}");
            assert_eq!(node["type"], "object", "{kind}: {pointer}");
        };
        let osc_spec = "/properties/spec";
        preserved("OperatingSystemConfig", osc_spec);
        preserved("OperatingSystemConfig", "/properties/spec/properties/units/items");
        preserved("OperatingSystemConfig", "/properties/spec/properties/units/items/properties/dropIns/items");
        preserved("OperatingSystemConfig", "/properties/spec/properties/files/items");
        preserved("OperatingSystemConfig", "/properties/spec/properties/files/items/properties/content");
        preserved("OperatingSystemConfig", "/properties/spec/properties/criConfig");
        preserved("OperatingSystemConfig", "/properties/spec/properties/criConfig/properties/containerd");
        preserved("OperatingSystemConfig", "/properties/spec/properties/providerConfig");
        preserved("OperatingSystemConfig", "/properties/status");
        preserved("OperatingSystemConfig", "/properties/status/properties/extensionUnits/items");
        preserved("OperatingSystemConfig", "/properties/status/properties/state");
        preserved("Extension", "/properties/spec/properties/providerConfig");
        preserved("Extension", "/properties/status/properties/providerStatus");
        preserved("Extension", "/properties/status/properties/state");
        preserved("ManagedResource", "/properties/status/properties/resources/items");
        preserved("Shoot", "/properties/spec");
        preserved("Shoot", "/properties/status");
        for field in ["shoot", "cloudProfile", "seed"] {
            let pointer = format!("/properties/spec/properties/{field}");
            preserved("Cluster", &pointer);
            let schema = schema_json(&crds["Cluster"]);
            assert_eq!(
                schema.pointer(&pointer).map(|s| &s["x-kubernetes-embedded-resource"]),
                Some(&Value::Bool(true))
            );
        }
    }

    #[test]
    fn yaml_stream_decodes_back_to_the_same_crds() {
        let text = all_as_yaml().expect("YAML");
        assert!(text.starts_with("---\n"));
        assert_eq!(text.matches("\n---\n").count() + 1, all().len());
        let decoded: Vec<CustomResourceDefinition> =
            gardener_extension_cri_resmgr::yaml::from_multi_str(&text).expect("decode");
        assert_eq!(decoded, all());
    }
}
