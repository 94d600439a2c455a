//! The images the extension deploys, as Gardener's ImageVector.
//!
//! The vector is `images.yaml` at the repository root, embedded into the binary ([`IMAGES_YAML`]), optionally
//! overridden by the file named in `$IMAGEVECTOR_OVERWRITE` ([`ENV_IMAGEVECTOR_OVERWRITE`]) — both in the format and
//! with the semantics of Gardener's `pkg/utils/imagevector`, so operators override our images the way they override
//! every other extension's:
//!
//! - An override entry with the same name, `runtimeVersion`, `targetVersion` and `architectures` replaces the
//!   embedded one, keeping the fields it leaves out (`mergeImageSources`); other entries are added.
//! - [`ImageVector::find`] picks, among the entries of a name whose constraints match, the one with the best score:
//!   a constraint that starts with an exact version (or `=`) beats a range, a single-architecture entry beats a
//!   multi-architecture one, and the first entry wins a tie (`FindImage`).
//! - Versions are normalized as Gardener does (`v` and `-…`/`+…` suffixes dropped), and a missing tag becomes
//!   `v<version>` (`ToImage`).
//!
//! Every image here runs in the shoot, so both `runtimeVersion` and `targetVersion` are matched against the shoot's
//! Kubernetes version (the worker pool's, for node-side images).

use std::fmt;

use semver::{Comparator, Version};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The embedded image vector (`images.yaml` at the repository root).
pub const IMAGES_YAML: &str = include_str!("../../images.yaml");

/// Environment variable naming an image vector file that overrides [`IMAGES_YAML`] (Gardener's `OverrideEnv`).
pub const ENV_IMAGEVECTOR_OVERWRITE: &str = "IMAGEVECTOR_OVERWRITE";

/// cri-resmgr-agent, run by the agent DaemonSet in the shoot.
pub const AGENT: &str = "cri-resmgr-agent";
/// The installation image carrying the cri-resmgr binary at [`crate::constants::NODE_BINARY_PATH`]; the OSC
/// writes the binary onto the nodes from it (`content.imageRef`).
pub const INSTALLATION: &str = "cri-resmgr-installation";
/// A small image with a shell, for the cleaner DaemonSet's init container.
pub const ALPINE: &str = "alpine";
/// The pause image that keeps cleaner pods Ready after the cleanup.
pub const PAUSE: &str = "pause-container";

/// Tags starting with this are digests: the reference is `repository@sha256:…` (Gardener's `SHA256TagPrefix`).
pub const SHA256_TAG_PREFIX: &str = "sha256:";

/// Architecture assumed when none is asked for (Gardener: worker pools default to amd64).
pub const DEFAULT_ARCHITECTURE: &str = crate::constants::DEFAULT_MACHINE_ARCHITECTURE;
/// Architectures an entry without `architectures` stands for (a multi-arch image).
pub const MULTI_ARCHITECTURES: &[&str] = &["amd64", "arm64"];

/// An empty list as `None`: for fields where Gardener makes no difference between empty and absent.
fn empty_as_absent<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    let list: Option<Vec<String>> = Deserialize::deserialize(deserializer)?;
    Ok(list.filter(|list| !list.is_empty()))
}

/// Where an image vector came from, for error messages.
const EMBEDDED_SOURCE: &str = "embedded images.yaml";

/// Why an image vector could not be read or an image not be found.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image vector {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid image vector {source_name}: {message}")]
    Decode { source_name: String, message: String },
    #[error("invalid image vector {source_name}: {}", errors.join("; "))]
    Invalid { source_name: String, errors: Vec<String> },
    #[error("invalid Kubernetes version {version:?} to choose image {name:?} for: {message}")]
    InvalidVersion { name: String, version: String, message: String },
    #[error("image vector has no image named {name:?} (images: {})", known.join(", "))]
    UnknownName { name: String, known: Vec<String> },
    #[error(
        "no image {name:?} for Kubernetes version {version} and architecture {architecture} (entries: {})",
        entries.join("; ")
    )]
    NoMatch { name: String, version: String, architecture: String, entries: Vec<String> },
}

/// One entry of an image vector (Gardener's `ImageSource`; `sourceRepository`, `resourceId` and `labels` are
/// component-descriptor metadata, kept but not interpreted). Unknown fields are errors: a typo in an override
/// (`repositry:`) would otherwise silently leave the embedded image in place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repository: Option<String>,
    /// A full image reference; excludes `repository` and `tag`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A tag, or a digest `sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Constraint on the Kubernetes version of the cluster the image runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Constraint on the Kubernetes version of the cluster the image acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Architectures of the image; absent = multi-arch ([`MULTI_ARCHITECTURES`]). An empty list reads as absent, as
    /// Gardener reads it (it only looks at the list's length).
    #[serde(default, deserialize_with = "empty_as_absent", skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Value>,
}

/// The file format: `images: [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageVectorFile {
    #[serde(default)]
    images: Vec<ImageSource>,
}

/// A concrete image chosen from the vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The vector's name of the image ([`AGENT`], …).
    pub name: String,
    /// What a Pod's `image` or an OSC `imageRef` takes: `repository:tag`, `repository@sha256:…`, or the entry's
    /// `ref`.
    pub reference: String,
    /// The entry's `version`, else its tag.
    pub version: Option<String>,
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reference)
    }
}

/// The images one shoot needs, chosen for its Kubernetes version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionImages {
    pub agent: Image,
    pub installation: Image,
    pub alpine: Image,
    pub pause: Image,
}

/// An ordered list of [`ImageSource`]s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageVector {
    sources: Vec<ImageSource>,
}

impl ImageVector {
    /// The embedded vector ([`IMAGES_YAML`]).
    pub fn embedded() -> Result<Self, ImageError> {
        Self::read(IMAGES_YAML, EMBEDDED_SOURCE)
    }

    /// Reads and validates a vector from YAML text; `source_name` names it in errors.
    pub fn read(text: &str, source_name: &str) -> Result<Self, ImageError> {
        let file: ImageVectorFile = crate::yaml::from_str(text)
            .map_err(|e| ImageError::Decode { source_name: source_name.to_owned(), message: e.to_string() })?;
        let errors: Vec<String> = file.images.iter().enumerate().flat_map(|(i, s)| validate_source(s, i)).collect();
        if errors.is_empty() {
            Ok(ImageVector { sources: file.images })
        } else {
            Err(ImageError::Invalid { source_name: source_name.to_owned(), errors })
        }
    }

    /// The entries, in order.
    pub fn sources(&self) -> &[ImageSource] {
        &self.sources
    }

    /// `self` overridden by `overwrite` (Gardener's `MergeImageVectors`): an entry of `overwrite` with the same
    /// name, runtimeVersion, targetVersion and architectures as an entry of `self` replaces it in place, keeping the
    /// fields it leaves out; other entries are appended.
    #[must_use]
    pub fn merged_with(self, overwrite: ImageVector) -> Self {
        let mut sources = self.sources;
        for source in overwrite.sources {
            match sources.iter_mut().find(|old| same_key(old, &source)) {
                Some(old) => *old = merge_sources(old, source),
                None => sources.push(source),
            }
        }
        ImageVector { sources }
    }

    /// The image `name` for a cluster of Kubernetes version `kubernetes_version` (`1.32.0`, `v1.32.0`, `1.32`) on
    /// amd64 (Gardener's default architecture).
    pub fn find(&self, name: &str, kubernetes_version: &str) -> Result<Image, ImageError> {
        self.find_for_architecture(name, kubernetes_version, DEFAULT_ARCHITECTURE)
    }

    /// [`Self::find`] for nodes of the given architecture (`amd64`, `arm64`).
    pub fn find_for_architecture(
        &self,
        name: &str,
        kubernetes_version: &str,
        architecture: &str,
    ) -> Result<Image, ImageError> {
        let version = parse_kubernetes_version(kubernetes_version).map_err(|message| ImageError::InvalidVersion {
            name: name.to_owned(),
            version: kubernetes_version.to_owned(),
            message,
        })?;
        let candidates: Vec<&ImageSource> = self.sources.iter().filter(|s| s.name == name).collect();
        if candidates.is_empty() {
            let mut known: Vec<String> = self.sources.iter().map(|s| s.name.clone()).collect();
            known.dedup();
            return Err(ImageError::UnknownName { name: name.to_owned(), known });
        }
        let mut best: Option<(u32, &ImageSource)> = None;
        for source in &candidates {
            if let Some(score) = score(source, &version, architecture)
                && best.is_none_or(|(best_score, _)| score > best_score)
            {
                best = Some((score, source));
            }
        }
        match best {
            Some((_, source)) => Ok(to_image(source, &version)),
            None => Err(ImageError::NoMatch {
                name: name.to_owned(),
                version: kubernetes_version.to_owned(),
                architecture: architecture.to_owned(),
                entries: candidates.iter().map(|s| describe_constraints(s)).collect(),
            }),
        }
    }

    /// The architectures the entries named `name` are built for (an entry without `architectures` counts as
    /// [`MULTI_ARCHITECTURES`]), sorted, each once; empty when there is no such entry.
    pub fn architectures_of(&self, name: &str) -> Vec<String> {
        let mut architectures: Vec<String> = self
            .sources
            .iter()
            .filter(|source| source.name == name)
            .flat_map(|source| match &source.architectures {
                Some(archs) => archs.clone(),
                None => MULTI_ARCHITECTURES.iter().map(|a| (*a).to_owned()).collect(),
            })
            .collect();
        architectures.sort();
        architectures.dedup();
        architectures
    }

    /// True when some entry named `name` is built for `architecture`, whatever its version constraints: nodes of
    /// another architecture cannot run the image at all, while a version mismatch is a gap in the vector.
    pub fn has_architecture(&self, name: &str, architecture: &str) -> bool {
        self.architectures_of(name).iter().any(|a| a == architecture)
    }

    /// All images a shoot of the given Kubernetes version needs.
    pub fn extension_images(&self, kubernetes_version: &str) -> Result<ExtensionImages, ImageError> {
        Ok(ExtensionImages {
            agent: self.find(AGENT, kubernetes_version)?,
            installation: self.find(INSTALLATION, kubernetes_version)?,
            alpine: self.find(ALPINE, kubernetes_version)?,
            pause: self.find(PAUSE, kubernetes_version)?,
        })
    }
}

/// Gardener's `validateImageSource`, with paths `images[i].field`.
fn validate_source(source: &ImageSource, i: usize) -> Vec<String> {
    let at = |field: &str| format!("images[{i}].{field}");
    let mut errors = Vec::new();
    if source.name.is_empty() {
        errors.push(format!("{}: Required value: image name is required", at("name")));
    }
    match (&source.ref_, &source.repository) {
        (None, None) => errors.push(format!(
            "{}: Required value: either image ref or repository+tag is required (image {:?})",
            at("ref/repository"),
            source.name
        )),
        (Some(reference), repository) => {
            if reference.is_empty() {
                errors.push(format!("{}: Invalid value: \"\": ref must not be empty if specified", at("ref")));
            }
            if repository.is_some() {
                errors.push(format!("{}: Forbidden: cannot specify repository when ref is set", at("repository")));
            }
            if source.tag.is_some() {
                errors.push(format!("{}: Forbidden: cannot specify tag when ref is set", at("tag")));
            }
        }
        (None, Some(repository)) => {
            if repository.is_empty() {
                errors.push(format!("{}: Invalid value: \"\": repository must not be empty", at("repository")));
            }
            if source.tag.as_deref() == Some("") {
                errors.push(format!("{}: Invalid value: \"\": image tag must not be empty if specified", at("tag")));
            }
        }
    }
    for (field, constraint) in [("runtimeVersion", &source.runtime_version), ("targetVersion", &source.target_version)]
    {
        if let Some(constraint) = constraint
            && let Err(message) = Constraint::parse(constraint)
        {
            errors.push(format!("{}: Invalid value: {constraint:?}: {message}", at(field)));
        }
    }
    errors
}

/// Gardener's `computeKey`: name, runtimeVersion, targetVersion and architectures.
fn same_key(a: &ImageSource, b: &ImageSource) -> bool {
    a.name == b.name
        && a.runtime_version == b.runtime_version
        && a.target_version == b.target_version
        && a.architectures.as_ref().map(|v| v.concat()) == b.architectures.as_ref().map(|v| v.concat())
}

/// Gardener's `mergeImageSources`: the override's fields win, absent ones are taken from `old`; a `ref` (given or
/// kept) clears repository and tag.
fn merge_sources(old: &ImageSource, new: ImageSource) -> ImageSource {
    let mut repository = new.repository.clone().or_else(|| old.repository.clone());
    let mut tag = new.tag.clone().or_else(|| old.tag.clone());
    let mut version = new.version.clone().or_else(|| old.version.clone());
    if version.is_none() && tag.is_some() {
        version = old.tag.clone();
    }
    let reference = match (&new.ref_, &new.repository) {
        (Some(reference), _) => Some(reference.clone()),
        (None, None) => old.ref_.clone(),
        (None, Some(_)) => None,
    };
    if reference.is_some() {
        repository = None;
        tag = None;
    }
    ImageSource {
        ref_: reference,
        repository,
        tag,
        version,
        runtime_version: new.runtime_version.or_else(|| old.runtime_version.clone()),
        target_version: new.target_version.or_else(|| old.target_version.clone()),
        architectures: new.architectures.or_else(|| old.architectures.clone()),
        source_repository: new.source_repository.or_else(|| old.source_repository.clone()),
        resource_id: new.resource_id.or_else(|| old.resource_id.clone()),
        labels: new.labels.or_else(|| old.labels.clone()),
        name: new.name,
    }
}

/// How well `source` fits (Gardener's `match`), `None` when it does not.
fn score(source: &ImageSource, version: &Version, architecture: &str) -> Option<u32> {
    let mut total = 0;
    for constraint in [&source.runtime_version, &source.target_version].into_iter().flatten() {
        // Validated when the vector was read; an unparsable constraint simply does not match.
        let parsed = Constraint::parse(constraint).ok()?;
        if !parsed.matches(version) {
            return None;
        }
        total += if starts_with_exact_version(constraint) { 2 } else { 1 };
    }
    match &source.architectures {
        None => MULTI_ARCHITECTURES.contains(&architecture).then_some(total + 1),
        Some(archs) if archs.iter().any(|a| a == architecture) => Some(total + if archs.len() == 1 { 2 } else { 1 }),
        Some(_) => None,
    }
}

/// Gardener prioritizes constraints matching `^(v?[0-9]+\.[0-9]+\.[0-9]+|=)`.
fn starts_with_exact_version(constraint: &str) -> bool {
    if constraint.starts_with('=') {
        return true;
    }
    let rest = constraint.strip_prefix('v').unwrap_or(constraint);
    let mut parts = rest.splitn(3, '.');
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (Some(major), Some(minor), Some(patch)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let patch_digits: String = patch.chars().take_while(char::is_ascii_digit).collect();
    numeric(major) && numeric(minor) && numeric(&patch_digits)
}

/// Gardener's `ToImage` + `Image.String`.
fn to_image(source: &ImageSource, version: &Version) -> Image {
    if let Some(reference) = &source.ref_ {
        return Image { name: source.name.clone(), reference: reference.clone(), version: source.version.clone() };
    }
    let tag = source.tag.clone().unwrap_or_else(|| format!("v{version}"));
    let repository = source.repository.clone().unwrap_or_default();
    let delimiter = if tag.starts_with(SHA256_TAG_PREFIX) { '@' } else { ':' };
    Image {
        name: source.name.clone(),
        reference: format!("{repository}{delimiter}{tag}"),
        version: source.version.clone().or(Some(tag)),
    }
}

/// `name (targetVersion ">= 1.20", architectures [amd64])` for "no match" messages.
fn describe_constraints(source: &ImageSource) -> String {
    let mut parts = Vec::new();
    if let Some(c) = &source.runtime_version {
        parts.push(format!("runtimeVersion {c:?}"));
    }
    if let Some(c) = &source.target_version {
        parts.push(format!("targetVersion {c:?}"));
    }
    if let Some(archs) = &source.architectures {
        parts.push(format!("architectures [{}]", archs.join(", ")));
    }
    if parts.is_empty() { "no constraints".to_owned() } else { parts.join(", ") }
}

// ---------------------------------------------------------------------------------------------------------------
// Versions and constraints
// ---------------------------------------------------------------------------------------------------------------

/// Gardener's `versionutils.Normalize`: drop every `v` and anything from the first `-` or `+` on. Unlike Gardener,
/// a missing patch (`1.32`) reads as `.0`.
fn normalize_version(version: &str) -> String {
    let without_v: String = version.trim().chars().filter(|c| *c != 'v').collect();
    let core = without_v.split(['-', '+']).next().unwrap_or_default().to_owned();
    match core.split('.').count() {
        1 => format!("{core}.0.0"),
        2 => format!("{core}.0"),
        _ => core,
    }
}

fn parse_kubernetes_version(version: &str) -> Result<Version, String> {
    Version::parse(&normalize_version(version))
        .map_err(|e| format!("{e}; expected a version like \"1.32.0\" or \"v1.32.0\""))
}

/// A Masterminds-style constraint: alternatives separated by `||`, each a list of comparators separated by commas
/// or spaces (`>= 1.20, < 1.30`, `>=1.20 <1.30`, `1.20.x`, `~1.28`, `^1.2`, `!= 1.25.0`, `1.20 - 1.25`), versions
/// normalized like [`normalize_version`] (so Gardener's usual `< 1.32-0` means `< 1.32`).
#[derive(Debug, Clone)]
struct Constraint {
    alternatives: Vec<Vec<Term>>,
}

/// One comparator, possibly negated (`!=`, which the semver crate lacks).
#[derive(Debug, Clone)]
struct Term {
    comparator: Comparator,
    negated: bool,
}

impl Constraint {
    fn parse(text: &str) -> Result<Self, String> {
        let alternatives = text.split("||").map(parse_alternative).collect::<Result<Vec<_>, _>>()?;
        Ok(Constraint { alternatives })
    }

    fn matches(&self, version: &Version) -> bool {
        self.alternatives.iter().any(|terms| terms.iter().all(|t| t.comparator.matches(version) != t.negated))
    }
}

const OPERATORS: &[&str] = &[">=", "=>", "<=", "=<", "!=", "~>", ">", "<", "=", "~", "^"];

fn parse_alternative(text: &str) -> Result<Vec<Term>, String> {
    // Tokens: operators standing alone ("> = 1.2" is not a thing, "> 1.2" is) are glued to the next token.
    let mut tokens: Vec<String> = Vec::new();
    let mut pending_operator: Option<&str> = None;
    for raw in text.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
        if let Some(op) = OPERATORS.iter().find(|op| **op == raw) {
            if pending_operator.is_some() {
                return Err(format!("operator {raw:?} follows another operator"));
            }
            pending_operator = Some(op);
            continue;
        }
        tokens.push(format!("{}{raw}", pending_operator.take().unwrap_or_default()));
    }
    if let Some(op) = pending_operator {
        return Err(format!("operator {op:?} without a version"));
    }
    if tokens.is_empty() {
        return Err("empty constraint".to_owned());
    }
    // Hyphen ranges: "a - b" means ">= a, <= b".
    let mut terms = Vec::new();
    let mut rest = tokens.as_slice();
    while let Some((first, tail)) = rest.split_first() {
        match tail {
            [dash, upper, after @ ..] if dash == "-" => {
                terms.extend(parse_term(&format!(">={first}"))?);
                terms.extend(parse_term(&format!("<={upper}"))?);
                rest = after;
            }
            [dash] if dash == "-" => return Err("hyphen range without an upper bound".to_owned()),
            _ => {
                terms.extend(parse_term(first)?);
                rest = tail;
            }
        }
    }
    Ok(terms)
}

/// One comparator; `None` for a bare wildcard (`*`, `x`), which matches every version.
fn parse_term(token: &str) -> Result<Option<Term>, String> {
    let op = OPERATORS.iter().find(|op| token.starts_with(**op)).copied().unwrap_or("");
    let version = &token[op.len()..];
    if matches!(version, "*" | "x" | "X") {
        return match op {
            "" | "=" | ">=" | "=>" => Ok(None),
            _ => Err(format!("{token:?}: a bare wildcard only goes with \"=\" or \">=\"")),
        };
    }
    let (op, negated) = match op {
        "=>" => (">=", false),
        "=<" => ("<=", false),
        "~>" => ("~", false),
        "!=" => ("=", true),
        // A bare version means "equal", as in Masterminds (the semver crate would read it as "^").
        "" => ("=", false),
        other => (other, false),
    };
    let version = normalize_constraint_version(version);
    let comparator = Comparator::parse(&format!("{op}{version}")).map_err(|e| format!("{token:?}: {e}"))?;
    Ok(Some(Term { comparator, negated }))
}

/// Like [`normalize_version`], but keeps partial versions and wildcards (`1.20`, `1.20.x`, `*`) as they are.
fn normalize_constraint_version(version: &str) -> String {
    let without_v = version.strip_prefix('v').unwrap_or(version);
    without_v.split(['-', '+']).next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(yaml: &str) -> ImageVector {
        ImageVector::read(yaml, "test").unwrap()
    }

    #[test]
    fn the_embedded_vector_has_every_image_the_extension_needs() {
        let images = ImageVector::embedded().unwrap().extension_images("1.32.0").unwrap();
        assert_eq!(images.agent.reference, "docker.io/intel/cri-resmgr-agent:v0.9.2");
        assert_eq!(images.installation.reference, "docker.io/intel/gardener-extension-cri-resmgr-installation:v0.9.2");
        assert_eq!(images.alpine.reference, "docker.io/library/alpine:3.20");
        assert_eq!(images.pause.reference, "registry.k8s.io/pause:3.10");
        assert_eq!(images.agent.version.as_deref(), Some("v0.9.2"));
        assert_eq!(images.agent.to_string(), images.agent.reference);
    }

    #[test]
    fn kubernetes_versions_are_normalized() {
        let v = ImageVector::embedded().unwrap();
        for version in ["1.20.0", "v1.32.0", "1.32", "1.31.2-gke.100", "1.30.1+build"] {
            assert_eq!(v.find(AGENT, version).unwrap().reference, "docker.io/intel/cri-resmgr-agent:v0.9.2");
        }
        let err = v.find(AGENT, "latest").unwrap_err();
        assert!(matches!(err, ImageError::InvalidVersion { .. }), "{err}");
        assert!(err.to_string().contains("\"latest\""), "{err}");
    }

    #[test]
    fn target_version_selects_the_entry() {
        let v = vector(
            r#"
images:
- {name: a, repository: r/old, tag: "1", targetVersion: ">= 1.20, < 1.30"}
- {name: a, repository: r/new, tag: "2", targetVersion: ">= 1.30-0"}
- {name: a, repository: r/exact, tag: "3", targetVersion: "1.31.x"}
- {name: a, repository: r/pinned, tag: "4", targetVersion: "= 1.33.1"}
"#,
        );
        let find = |version: &str| v.find("a", version).unwrap().reference;
        assert_eq!(find("1.20.0"), "r/old:1");
        assert_eq!(find("1.29.15"), "r/old:1");
        assert_eq!(find("1.30.0"), "r/new:2");
        // "1.31.x" and ">= 1.30" both match and score the same; the first entry wins, as in Gardener.
        assert_eq!(find("1.31.4"), "r/new:2");
        // An exact version constraint scores higher than a range.
        assert_eq!(find("1.33.1"), "r/pinned:4");
        assert_eq!(find("1.33.2"), "r/new:2");
        let err = v.find("a", "1.19.9").unwrap_err();
        assert!(matches!(err, ImageError::NoMatch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("no image \"a\" for Kubernetes version 1.19.9"), "{message}");
        assert!(message.contains("targetVersion \">= 1.20, < 1.30\""), "{message}");
    }

    #[test]
    fn masterminds_constraint_forms() {
        let v = |s: &str| Version::parse(s).unwrap();
        let cases: &[(&str, &str, bool)] = &[
            (">= 1.20, < 1.30", "1.25.0", true),
            (">=1.20 <1.30", "1.30.0", false),
            ("< 1.32-0", "1.31.9", true),
            ("< 1.32-0", "1.32.0", false),
            ("~1.28", "1.28.5", true),
            ("~> 1.28", "1.29.0", false),
            ("^1.2", "1.9.0", true),
            ("1.20", "1.20.7", true),
            ("1.20", "1.21.0", false),
            ("!= 1.25.0", "1.25.0", false),
            ("!= 1.25.0", "1.25.1", true),
            ("1.20 - 1.22", "1.22.3", true),
            ("1.20 - 1.22", "1.23.0", false),
            ("< 1.20 || >= 1.30", "1.31.0", true),
            ("< 1.20 || >= 1.30", "1.25.0", false),
            ("*", "1.2.3", true),
            ("v1.20.x", "1.20.1", true),
            ("!= 1.25.x", "1.25.3", false),
            ("!= 1.25.x", "1.26.0", true),
        ];
        for (constraint, version, want) in cases {
            let parsed = Constraint::parse(constraint).unwrap_or_else(|e| panic!("{constraint}: {e}"));
            assert_eq!(parsed.matches(&v(version)), *want, "{constraint} vs {version}");
        }
        for bad in ["", ">=", "> < 1.2", "foo", "1.2 -", "< *"] {
            assert!(Constraint::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn digests_refs_and_missing_tags() {
        let v = vector(
            r#"
images:
- {name: digest, repository: r/d, tag: "sha256:0123abcd"}
- {name: ref, ref: "r/x:1@sha256:ff", version: "1"}
- {name: untagged, repository: r/u}
"#,
        );
        assert_eq!(v.find("digest", "1.30.0").unwrap().reference, "r/d@sha256:0123abcd");
        assert_eq!(v.find("ref", "1.30.0").unwrap().reference, "r/x:1@sha256:ff");
        assert_eq!(v.find("untagged", "1.30").unwrap().reference, "r/u:v1.30.0");
    }

    #[test]
    fn architectures_are_matched_like_gardener() {
        let v = vector(
            r#"
images:
- {name: a, repository: r/multi, tag: "1"}
- {name: a, repository: r/arm, tag: "1", architectures: [arm64]}
- {name: b, repository: r/arm, tag: "1", architectures: [arm64]}
"#,
        );
        assert_eq!(v.find("a", "1.30.0").unwrap().reference, "r/multi:1");
        assert_eq!(v.find_for_architecture("a", "1.30.0", "arm64").unwrap().reference, "r/arm:1");
        assert!(matches!(v.find("b", "1.30.0"), Err(ImageError::NoMatch { .. })));
    }

    /// Found by fuzzing: `architectures: []` made an entry of no architecture at all, which no pool could use and
    /// which Gardener reads as a multi-arch image.
    #[test]
    fn an_empty_architectures_list_is_read_as_absent_like_gardener_does() {
        let v = vector(
            r#"
images:
- {name: a, repository: r/multi, tag: "1", architectures: []}
"#,
        );
        assert_eq!(v.sources()[0].architectures, None);
        assert_eq!(v.architectures_of("a"), MULTI_ARCHITECTURES);
        assert_eq!(v.find_for_architecture("a", "1.30.0", "arm64").unwrap().reference, "r/multi:1");
    }

    /// cri-resource-manager's releases ship x86_64 binaries only (its `binary-dist` target names the tarball after
    /// the build host's `uname -m`, and its release job and images build on x86_64 runners only), so the embedded
    /// vector must not claim anything else: an arm64 node would get an amd64 binary and kubelet a dead socket.
    #[test]
    fn the_embedded_installation_image_is_amd64_only() {
        let v = ImageVector::embedded().unwrap();
        assert_eq!(v.architectures_of(INSTALLATION), ["amd64"]);
        assert!(v.has_architecture(INSTALLATION, "amd64"));
        assert!(!v.has_architecture(INSTALLATION, "arm64"));
        let err = v.find_for_architecture(INSTALLATION, "1.32.0", "arm64").unwrap_err();
        assert!(matches!(err, ImageError::NoMatch { .. }), "{err}");
        // The shell and pause images are multi-arch: the cleaner runs on every containerd pool.
        for name in [ALPINE, PAUSE] {
            assert_eq!(v.architectures_of(name), MULTI_ARCHITECTURES, "{name}");
        }
        assert!(v.architectures_of("nope").is_empty());
    }

    #[test]
    fn a_missing_image_is_a_typed_error_naming_it() {
        let err = ImageVector::embedded().unwrap().find("nope", "1.30.0").unwrap_err();
        assert!(matches!(&err, ImageError::UnknownName { name, .. } if name == "nope"), "{err}");
        assert!(err.to_string().contains("cri-resmgr-agent"), "lists the known images: {err}");
    }

    #[test]
    fn invalid_vectors_are_rejected_with_paths() {
        let err = ImageVector::read(
            r#"
images:
- {name: "", repository: r}
- {name: b}
- {name: c, ref: "r:1", tag: "1"}
- {name: d, repository: r, tag: ""}
- {name: e, repository: r, targetVersion: ">= banana"}
"#,
            "test.yaml",
        )
        .unwrap_err();
        let ImageError::Invalid { source_name, errors } = &err else { panic!("{err}") };
        assert_eq!(source_name, "test.yaml");
        let paths: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            ["images[0].name", "images[1].ref/repository", "images[2].tag", "images[3].tag", "images[4].targetVersion"]
        );
        let err = ImageVector::read("images:\n- {name: a, repositry: r}\n", "typo.yaml").unwrap_err();
        assert!(matches!(err, ImageError::Decode { .. }), "{err}");
        assert!(err.to_string().contains("repositry"), "{err}");
    }

    #[test]
    fn merge_keeps_gardeners_ref_semantics() {
        let with_ref = vector("images:\n- {name: a, ref: \"r/a:1\", version: \"1\"}\n");
        let with_repository = vector("images:\n- {name: a, repository: r/b, tag: \"3\"}\n");
        // A repository replaces a ref (and brings its tag).
        let merged = with_ref.clone().merged_with(with_repository.clone());
        assert_eq!(merged.find("a", "1.30.0").unwrap().reference, "r/b:3");
        // A ref replaces repository and tag.
        let merged = with_repository.merged_with(with_ref);
        assert_eq!(merged.sources()[0].repository, None);
        assert_eq!(merged.sources()[0].tag, None);
        assert_eq!(merged.find("a", "1.30.0").unwrap().reference, "r/a:1");
    }
}
