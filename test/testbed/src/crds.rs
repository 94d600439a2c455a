//! CustomResourceDefinitions that the local control plane installs.
//!
//! The test bed must prune and refuse what a real seed prunes and refuses, or a field the extension writes that a
//! seed would drop could never be caught. So Gardener's kinds (Extension, Cluster, OperatingSystemConfig,
//! ManagedResource) are **Gardener's own CRDs**, committed unchanged in `test/fixtures/gardener/crds/` (see the
//! README there for their Gardener version), and changed here only where the test bed's Kubernetes **1.20**
//! kube-apiserver cannot take them; [`DEVIATIONS`] lists each change with its reason, and the tests check, field
//! path by field path, that the installed schemas differ from Gardener's in nothing else.
//!
//! The Shoot is gardener-apiserver's resource and has no CRD in Gardener; the test bed's stand-in is generated from
//! the extension's typed [`Shoot`] and is strict too: it declares the fields the typed API models, prunes every
//! other one, and keeps unknown content only in the raw `providerConfig`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use gardener_extension_cri_resmgr::{apis::core::Shoot, yaml::YamlError};

/// Gardener's CRDs of the kinds the extension uses, as committed (file name, YAML).
pub const GARDENER_CRDS: [(&str, &str); 4] = [
    ("extensions.yaml", include_str!("../../fixtures/gardener/crds/extensions.yaml")),
    ("clusters.yaml", include_str!("../../fixtures/gardener/crds/clusters.yaml")),
    ("operatingsystemconfigs.yaml", include_str!("../../fixtures/gardener/crds/operatingsystemconfigs.yaml")),
    ("managedresources.yaml", include_str!("../../fixtures/gardener/crds/managedresources.yaml")),
];

/// The CRDs of Gardener's monitoring stack that the extension's charts create objects of (their alerts, the garden
/// scrape config), as Gardener installs them in seeds and gardener-operator in the garden runtime cluster (file
/// name, YAML); installed as they are but for empty-string defaults (see [`monitoring`]), so that the charts'
/// objects are checked against their schema.
pub const MONITORING_CRDS: [(&str, &str); 2] = [
    ("prometheusrules.yaml", include_str!("../../fixtures/gardener/crds/prometheusrules.yaml")),
    ("servicemonitors.yaml", include_str!("../../fixtures/gardener/crds/servicemonitors.yaml")),
];

/// The only ways in which the installed CRDs of Gardener's kinds differ from Gardener's, and why.
pub const DEVIATIONS: [(&str, &str); 3] = [
    ("x-kubernetes-validations", "CEL validation rules need Kubernetes 1.25; the 1.20 apiserver refuses the CRD"),
    ("selectableFields", "field selectors on custom resources need Kubernetes 1.30"),
    (
        "nullable on strings",
        "the 1.20 apiserver refuses the empty string in a non-nullable string (see `accept_empty_strings`)",
    ),
];

/// The fields of the Shoot stand-in that gardener-apiserver requires (JSON pointer of the object schema, field):
/// those of Gardener's `core/v1beta1` types that the typed [`Shoot`] models and that have no `omitempty`.
const SHOOT_REQUIRED: [(&str, &str); 6] = [
    ("/properties/spec/properties/extensions/items", "type"),
    ("/properties/spec/properties/provider", "type"),
    ("/properties/spec/properties/provider/properties/workers/items", "name"),
    ("/properties/spec/properties/provider/properties/workers/items/properties/cri", "name"),
    ("/properties/spec/properties/provider/properties/workers/items/properties/machine", "type"),
    ("/properties/spec/properties/provider/properties/workers/items/properties/machine/properties/image", "name"),
];

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("Gardener's CRD {file}: {source}")]
    Decode { file: &'static str, source: YamlError },
    #[error("the generated Shoot CRD has no schema at {pointer}")]
    MissingShootSchema { pointer: &'static str },
    #[error("encoding the CRDs: {0}")]
    Encode(YamlError),
}

/// Extension, Cluster, OperatingSystemConfig, ManagedResource (Gardener's, see [`gardener`]) and the Shoot
/// stand-in (see [`shoot`]), apiextensions.k8s.io/v1.
pub fn all() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    let mut crds = gardener()?;
    crds.push(shoot()?);
    Ok(crds)
}

/// What the test bed installs: [`all`], and the monitoring kinds the charts create objects of ([`monitoring`]).
pub fn installed() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    let mut crds = all()?;
    crds.extend(monitoring()?);
    Ok(crds)
}

/// All CRDs as one multi-document YAML stream.
pub fn all_as_yaml() -> Result<String, CrdError> {
    let mut out = String::new();
    for crd in all()? {
        let doc = gardener_extension_cri_resmgr::yaml::to_string(&crd).map_err(CrdError::Encode)?;
        out.push_str("---\n");
        out.push_str(doc.strip_prefix("---\n").unwrap_or(&doc));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Gardener's CRDs with only the [`DEVIATIONS`] applied.
pub fn gardener() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    GARDENER_CRDS
        .into_iter()
        .map(|(file, text)| {
            let mut crd = decode(file, text)?;
            for version in &mut crd.spec.versions {
                version.selectable_fields = None;
            }
            walk_schemas(&mut crd, |node| {
                node.x_kubernetes_validations = None;
                accept_empty_strings(node);
            });
            Ok(crd)
        })
        .collect()
}

/// The monitoring CRDs ([`MONITORING_CRDS`]), with one deviation: strings that default to `""` (the
/// ServiceMonitor's secret and ConfigMap references, like the ManagedResource's `secretRefs[].name`) are nullable,
/// since the 1.20 apiserver refuses the CRD otherwise (see `accept_empty_strings`). Only those: prometheus-operator's
/// list-map keys must not be nullable.
pub fn monitoring() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    MONITORING_CRDS
        .into_iter()
        .map(|(file, text)| {
            let mut crd = decode(file, text)?;
            walk_schemas(&mut crd, |node| {
                if node.default.as_ref().is_some_and(|d| d.0 == serde_json::json!("")) {
                    accept_empty_strings(node);
                }
            });
            Ok(crd)
        })
        .collect()
}

/// The committed CRD `file` (its text).
fn decode(file: &'static str, text: &str) -> Result<CustomResourceDefinition, CrdError> {
    gardener_extension_cri_resmgr::yaml::from_str(text).map_err(|source| CrdError::Decode { file, source })
}

/// Applies `f` to every schema node of every version of `crd`.
fn walk_schemas(crd: &mut CustomResourceDefinition, mut f: impl FnMut(&mut JSONSchemaProps)) {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            walk(schema, &mut f);
        }
    }
}

/// The Shoot stand-in, generated from the typed [`Shoot`] and made as strict as gardener-apiserver.
pub fn shoot() -> Result<CustomResourceDefinition, CrdError> {
    let mut crd = Shoot::crd();
    let names = &mut crd.spec.names;
    // controller-gen always writes listKind; the apiserver would default it to the same value.
    names.list_kind = Some(format!("{}List", names.kind));
    for version in &mut crd.spec.versions {
        let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else {
            continue;
        };
        walk(schema, &mut strict);
        for (pointer, field) in SHOOT_REQUIRED {
            let node = at_pointer(schema, pointer).ok_or(CrdError::MissingShootSchema { pointer })?;
            let required = node.required.get_or_insert_with(Vec::new);
            if !required.iter().any(|r| r == field) {
                required.push(field.to_owned());
            }
        }
    }
    Ok(crd)
}

/// One node of the generated Shoot schema, made strict where the types know the API:
/// - the typed structs keep the fields they do not model in flattened `other` maps, which the generator turns into
///   `x-kubernetes-preserve-unknown-fields` beside the declared properties. Those are real Shoot fields
///   (`cloudProfile`, `region`, `networking`, a worker's `minimum`, …) that gardener-apiserver knows and keeps, so
///   the stand-in keeps them too (pruning them would lose a user's Shoot, and kubectl would refuse valid Shoots);
///   every field the types model is declared with its type, and nodes without such a map prune;
/// - `Option` becomes `nullable`, but gardener-apiserver refuses `null` for a typed field;
/// - the generator's `default`s (from `#[serde(default)]`) would be persisted by the apiserver; gardener-apiserver
///   defaults differently.
fn strict(node: &mut JSONSchemaProps) {
    node.nullable = None;
    node.default = None;
    node.x_kubernetes_validations = None;
    accept_empty_strings(node);
}

/// Makes a string node `nullable`, the one change that loosens a schema (it lets `null` through where a real
/// apiserver would prune it, and would refuse it in a required field), because without it the test bed refuses
/// valid objects:
///
/// the test bed's kube-apiserver 1.20 is built with Go 1.19, and its kube-openapi type validator decides "zero value
/// ⇒ must be null" with `reflect.DeepEqual(reflect.Zero(t), reflect.ValueOf(v))`. Since Go stores `""` in an
/// interface as a pointer to the runtime's shared zero buffer, which `reflect.Zero` also returns, that check is true
/// for `""`: a non-nullable string rejects the empty string ("must be of type string: \"null\""), both in objects
/// (e.g. `files[].content.inline.encoding: ""`, which Gardener writes for plain-text files) and in the CRD's own
/// defaults (the ManagedResource's `secretRefs[].name` defaults to `""`). `nullable: true` skips that branch.
/// Gardener's components and this extension never write `null` strings, and merge patches delete keys set to `null`.
fn accept_empty_strings(node: &mut JSONSchemaProps) {
    if node.type_.as_deref() == Some("string") {
        node.nullable = Some(true);
    }
}

/// Applies `f` to every schema node below (and including) `schema`, never to a property that happens to be named
/// like a keyword.
fn walk(schema: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(schema);
    if let Some(properties) = schema.properties.as_mut() {
        properties.values_mut().for_each(|child| walk(child, f));
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(items)) => walk(items, f),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(|child| walk(child, f)),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(additional)) = schema.additional_properties.as_mut() {
        walk(additional, f);
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of].into_iter().flatten() {
        list.iter_mut().for_each(|child| walk(child, f));
    }
    if let Some(not) = schema.not.as_mut() {
        walk(not, f);
    }
}

/// The schema node at a JSON pointer made of `properties/<name>` and `items` steps.
fn at_pointer<'a>(schema: &'a mut JSONSchemaProps, pointer: &str) -> Option<&'a mut JSONSchemaProps> {
    let mut steps = pointer.split('/').skip(1);
    let mut node = schema;
    while let Some(step) = steps.next() {
        node = match step {
            "properties" => node.properties.as_mut()?.get_mut(steps.next()?)?,
            "items" => match node.items.as_mut()? {
                JSONSchemaPropsOrArray::Schema(items) => items.as_mut(),
                JSONSchemaPropsOrArray::Schemas(_) => return None,
            },
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests;
