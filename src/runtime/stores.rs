//! Watch-backed stores of the seed objects every OSC admission and every reconcile reads: the shoots' Clusters, the
//! Extensions of our type and the operator's base-configs ConfigMap. One set of watches per process keeps them
//! current; readers get the stored object without a round trip to the apiserver.
//!
//! What a store has not seen: until the first list of every watch is in ([`SeedStores::is_synced`]), every read
//! goes to the apiserver, as before the stores existed (the webhook server's `/readyz` also says not-ready until
//! then, so a Service routes no admission here). Once synced, a Cluster or Extension missing from its store is read
//! from the apiserver too: a miss is either "there is none" (then the live read says so, and the answer is the same
//! as before) or a watch event still on its way for an object created a moment ago (then the live read has it). The
//! base-configs ConfigMap is different: most installations have none, so a miss of that one store is authoritative
//! (no base configs); a freshly created or changed ConfigMap applies as soon as its watch event arrives, which is
//! also when the reconciler re-reconciles every Extension for it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::apis::core::Shoot;
use crate::apis::extensions::{Cluster, Extension};
use crate::constants::{BASE_CONFIGS_CONFIG_MAP, EXTENSION_TYPE};
use crate::domain::configs;
use crate::domain::desired::DesiredError;
use crate::runtime::inputs::PlanError;

/// The stores of one process; cheap to clone (every clone reads the same stores).
#[derive(Clone)]
pub struct SeedStores {
    client: kube::Client,
    configmap_namespace: String,
    clusters: Reflected<Cluster>,
    extensions: Reflected<Extension>,
    base_configs: Reflected<ConfigMap>,
    /// Bumped after every change of the base-configs store has been applied to it.
    base_configs_changed: tokio::sync::watch::Receiver<u64>,
    /// Counts the changes of any of the stores (starting at [`FIRST_GENERATION`]); each change is followed, within
    /// the same poll of its watch, by a bump: a reader that sees the same count again has seen the same stores, or
    /// ones a change newer that it may take as arriving a moment later (as any watch event may).
    generation: Arc<AtomicU64>,
}

/// The stores' generation before any event; [`MadeFrom`] takes 0 for "never seen to hold".
const FIRST_GENERATION: u64 = 1;

/// The `resourceVersion`s of the seed objects an answer for a shoot namespace is made from: the same versions are the
/// same objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputVersions {
    pub cluster: String,
    pub extension: String,
    /// `None`: there is no base-configs ConfigMap.
    pub base_configs: Option<String>,
}

impl InputVersions {
    /// The versions of these objects; `None` when one has none (only objects read from an apiserver have one).
    pub fn of(cluster: &Cluster, extension: &Extension, base_configs: Option<&ConfigMap>) -> Option<Self> {
        Some(InputVersions {
            cluster: cluster.metadata.resource_version.clone()?,
            extension: extension.metadata.resource_version.clone()?,
            base_configs: match base_configs {
                Some(config_map) => Some(config_map.metadata.resource_version.clone()?),
                None => None,
            },
        })
    }

    /// Whether these are the versions of these objects (compared in place: a kept answer asks on every reuse).
    fn are_of(&self, cluster: &Cluster, extension: &Extension, base_configs: Option<&ConfigMap>) -> bool {
        fn version(meta: &ObjectMeta) -> Option<&str> {
            meta.resource_version.as_deref()
        }
        version(&cluster.metadata) == Some(self.cluster.as_str())
            && version(&extension.metadata) == Some(self.extension.as_str())
            && base_configs.map(|config_map| version(&config_map.metadata)) == self.base_configs.as_deref().map(Some)
    }
}

/// The Shoot of `cluster` as an OSC answer reads it: its name, namespace and spec; not its status or the rest of its
/// metadata, which gardenlet rewrites in every shoot reconcile. The OSC webhook plans from this, so that its answer
/// cannot depend on anything [`InputFingerprint`] leaves out.
pub fn shoot_as_answers_read(cluster: &Cluster) -> Shoot {
    let shoot = &cluster.spec.shoot;
    Shoot {
        metadata: ObjectMeta {
            name: shoot.metadata.name.clone(),
            namespace: shoot.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        spec: shoot.spec.clone(),
        status: None,
    }
}

/// A fingerprint (SHA-256) of what an OSC answer reads of a shoot namespace's seed objects: the Shoot as
/// [`shoot_as_answers_read`], the Extension's `providerConfig`, and the base-configs ConfigMap's `data` and
/// `binaryData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFingerprint([u8; 32]);

impl InputFingerprint {
    /// The fingerprint of these objects; `None` for an Extension being deleted (its answer is not kept).
    pub fn of(cluster: &Cluster, extension: &Extension, base_configs: Option<&ConfigMap>) -> Option<Self> {
        use sha2::Digest as _;
        if extension.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let read = (
            shoot_as_answers_read(cluster),
            &extension.spec.provider_config,
            base_configs.map(|config_map| (&config_map.data, &config_map.binary_data)),
        );
        let text = serde_json::to_vec(&read).ok()?;
        Some(InputFingerprint(sha2::Sha256::digest(&text).into()))
    }
}

/// What an OSC answer for a shoot namespace was made from, and whether the stores still hold it: the same versions
/// of the Cluster, the Extension and the base configs, or other versions with the same [`InputFingerprint`] (gardenlet
/// rewrites the Cluster, with the Shoot's status, and the controller the Extension's status, in every shoot
/// reconcile, before gardenlet writes the OSCs again).
#[derive(Debug)]
pub struct MadeFrom {
    versions: InputVersions,
    fingerprint: InputFingerprint,
    /// The last other versions looked at, and whether their content was the same: a fingerprint is taken once per
    /// change of the objects, not per reuse.
    last_other: std::sync::Mutex<Option<(InputVersions, bool)>>,
    /// The stores' generation at which the answer was last seen to hold (0: never): until the stores change again it
    /// holds without a look at them, which a kept answer would otherwise take on every reuse.
    held_at: AtomicU64,
}

impl MadeFrom {
    /// What an answer made from these objects was made from; `None` when it must not be kept (see
    /// [`InputVersions::of`], [`InputFingerprint::of`]).
    pub fn of(cluster: &Cluster, extension: &Extension, base_configs: Option<&ConfigMap>) -> Option<Self> {
        Some(MadeFrom {
            versions: InputVersions::of(cluster, extension, base_configs)?,
            fingerprint: InputFingerprint::of(cluster, extension, base_configs)?,
            last_other: std::sync::Mutex::default(),
            held_at: AtomicU64::new(0),
        })
    }

    /// The versions of the objects the answer was made from.
    pub fn versions(&self) -> &InputVersions {
        &self.versions
    }

    /// Whether `stores` hold what the answer was made from, for the shoot namespace of `inputs`: `false` until they
    /// are synced and while its Cluster or Extension is not in them.
    pub fn holds_in(&self, stores: &SeedStores, inputs: &StoredInputs) -> bool {
        // Taken before the stores are read: a change meanwhile bumps it past what is noted here, and the next reuse
        // looks again.
        self.holds_at(stores.generation(), || stores.stored_inputs(inputs))
    }

    /// Whether the answer holds at the stores' `generation`, reading them (`read`) only when it was not seen to hold
    /// at that generation before.
    fn holds_at(&self, generation: u64, read: impl FnOnce() -> Option<StoredObjects>) -> bool {
        if self.held_at.load(Ordering::Relaxed) == generation {
            return true;
        }
        let holds = self.holds_for(read());
        if holds {
            self.held_at.store(generation, Ordering::Relaxed);
        }
        holds
    }

    /// Whether `stored` (`None`: a Cluster or Extension missing) is what the answer was made from.
    fn holds_for(&self, stored: Option<StoredObjects>) -> bool {
        let Some((cluster, extension, base_configs)) = stored else { return false };
        if self.versions.are_of(&cluster, &extension, base_configs.as_deref()) {
            return true;
        }
        let last = || self.last_other.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The steady state once the Cluster or the Extension was rewritten (gardenlet rewrites the Cluster in every
        // shoot reconcile, the controller then the Extension's status): the versions last looked at, in place.
        if let Some((seen, same)) = &*last()
            && seen.are_of(&cluster, &extension, base_configs.as_deref())
        {
            return *same;
        }
        let Some(versions) = InputVersions::of(&cluster, &extension, base_configs.as_deref()) else { return false };
        let same = InputFingerprint::of(&cluster, &extension, base_configs.as_deref()) == Some(self.fingerprint);
        *last() = Some((versions, same));
        same
    }
}

/// A shoot namespace's Cluster and Extension and the base configs, as stored.
pub type StoredObjects = (Arc<Cluster>, Arc<Extension>, Option<Arc<ConfigMap>>);

/// The keys of a shoot namespace's inputs in the stores.
#[derive(Debug, Clone)]
pub struct StoredInputs {
    cluster: ObjectRef<Cluster>,
    extension: ObjectRef<Extension>,
    base_configs: ObjectRef<ConfigMap>,
}

impl StoredInputs {
    /// The keys of `namespace`'s Cluster and Extension and of the base configs in `stores`.
    pub fn of(stores: &SeedStores, namespace: &str) -> Self {
        StoredInputs {
            cluster: ObjectRef::new(namespace),
            extension: ObjectRef::new(EXTENSION_TYPE).within(namespace),
            base_configs: stores.base_configs_key(),
        }
    }
}

/// Where the stores watch.
#[derive(Debug, Clone)]
pub struct StoreScope {
    /// Namespace of the base-configs ConfigMap (the extension's namespace).
    pub configmap_namespace: String,
    /// Only the shoot namespace given (development and tests): its Cluster and Extension; `None` watches all.
    pub shoot_namespace: Option<String>,
}

impl SeedStores {
    /// The stores and the future that keeps them current; the stores stay empty (and every read live) until that
    /// future runs, and stop following the cluster when it is dropped.
    pub fn watch(client: kube::Client, scope: &StoreScope) -> (SeedStores, impl Future<Output = ()> + Send + 'static) {
        let (clusters_api, extensions_api) = match &scope.shoot_namespace {
            Some(namespace) => (Api::all(client.clone()), Api::namespaced(client.clone(), namespace)),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        // A Cluster is named after its shoot namespace.
        let clusters_config = match &scope.shoot_namespace {
            Some(namespace) => named(namespace),
            None => watcher::Config::default(),
        };
        let generation = Arc::new(AtomicU64::new(FIRST_GENERATION));
        let (clusters, watch_clusters) =
            reflect(clusters_api, clusters_config, slim_cluster, generation.clone(), |_| {});
        // gardenlet names the Extension of a shoot after its type; others are never read.
        let (extensions, watch_extensions) = reflect(
            extensions_api,
            named(EXTENSION_TYPE),
            |extension: &mut Extension| extension.metadata.managed_fields = None,
            generation.clone(),
            |_| {},
        );
        let (changed, base_configs_changed) = tokio::sync::watch::channel(0u64);
        let (base_configs, watch_base_configs) = reflect(
            Api::namespaced(client.clone(), &scope.configmap_namespace),
            named(BASE_CONFIGS_CONFIG_MAP),
            |config_map: &mut ConfigMap| config_map.metadata.managed_fields = None,
            generation.clone(),
            // The event has reached the store when this runs: whoever reacts reads the new configs.
            base_configs_trigger(changed),
        );
        let stores = SeedStores {
            client,
            configmap_namespace: scope.configmap_namespace.clone(),
            clusters,
            extensions,
            base_configs,
            base_configs_changed,
            generation,
        };
        let watches = async move {
            futures::join!(watch_clusters, watch_extensions, watch_base_configs);
        };
        (stores, watches)
    }

    /// A stream with an item after each change of the base configs, once the store holds it: the reconciler's trigger
    /// to re-reconcile every Extension, so that no reconcile can read the configs from before the change that woke it
    /// (a separate watch as the trigger could run ahead of this store).
    pub fn base_config_changes(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        futures::stream::unfold(self.base_configs_changed.clone(), |mut changes| async move {
            changes.changed().await.ok().map(|()| ((), changes))
        })
    }

    /// Whether every store holds the result of its first list (and so every object that existed then).
    pub fn is_synced(&self) -> bool {
        self.clusters.is_listed() && self.extensions.is_listed() && self.base_configs.is_listed()
    }

    /// The stores' generation: it changes after every change of any of them (see [`MadeFrom::holds_in`]).
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Waits until [`is_synced`](Self::is_synced); never returns if the watches do not run.
    pub async fn synced(&self) {
        for mut listed in [&self.clusters.listed, &self.extensions.listed, &self.base_configs.listed].map(Clone::clone)
        {
            // An error means that the watch is gone without a list: the stores never sync.
            if listed.wait_for(|listed| *listed).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The Cluster of the shoot namespace `namespace`, if there is one.
    pub async fn cluster(&self, namespace: &str) -> Result<Option<Arc<Cluster>>, kube::Error> {
        if let Some(cluster) = self.clusters.get_listed(&ObjectRef::new(namespace)) {
            return Ok(Some(cluster));
        }
        let live = Api::<Cluster>::all(self.client.clone()).get_opt(namespace).await?;
        Ok(live.map(|mut cluster| {
            slim_cluster(&mut cluster);
            Arc::new(cluster)
        }))
    }

    /// The Extension of our type in the shoot namespace `namespace`, if there is one.
    pub async fn extension(&self, namespace: &str) -> Result<Option<Arc<Extension>>, kube::Error> {
        if let Some(extension) = self.extensions.get_listed(&ObjectRef::new(EXTENSION_TYPE).within(namespace)) {
            return Ok(Some(extension));
        }
        let api = Api::<Extension>::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(EXTENSION_TYPE).await?.map(Arc::new))
    }

    /// The operator's base configs (none without the ConfigMap).
    pub async fn base_configs(&self) -> Result<BTreeMap<String, String>, PlanError> {
        base_configs_of(self.base_config_map().await?.as_deref())
    }

    /// The operator's base-configs ConfigMap, if there is one.
    pub async fn base_config_map(&self) -> Result<Option<Arc<ConfigMap>>, PlanError> {
        if self.base_configs.is_listed() {
            // Synced: the store is authoritative for this one object (see the module's documentation).
            return Ok(self.base_configs.store.get(&self.base_configs_key()));
        }
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), &self.configmap_namespace);
        let live = api.get_opt(BASE_CONFIGS_CONFIG_MAP).await.map_err(|source| PlanError::Kube {
            action: format!("reading ConfigMap {}/{BASE_CONFIGS_CONFIG_MAP}", self.configmap_namespace),
            source,
        })?;
        Ok(live.map(Arc::new))
    }

    /// A shoot namespace's Cluster and Extension (`inputs`, see [`StoredInputs::of`]) and the base configs as the
    /// stores hold them now, without a read from the apiserver; `None` until the stores are synced, and while the
    /// Cluster or the Extension is not in its store.
    pub fn stored_inputs(&self, inputs: &StoredInputs) -> Option<StoredObjects> {
        if !self.is_synced() {
            return None;
        }
        let cluster = self.clusters.store.get(&inputs.cluster)?;
        let extension = self.extensions.store.get(&inputs.extension)?;
        Some((cluster, extension, self.base_configs.store.get(&inputs.base_configs)))
    }

    fn base_configs_key(&self) -> ObjectRef<ConfigMap> {
        ObjectRef::new(BASE_CONFIGS_CONFIG_MAP).within(&self.configmap_namespace)
    }
}

/// The base configs the operator's ConfigMap holds (none without one).
pub fn base_configs_of(config_map: Option<&ConfigMap>) -> Result<BTreeMap<String, String>, PlanError> {
    Ok(configs::base_configs(config_map).map_err(DesiredError::Config)?)
}

fn named(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// What wakes a re-reconcile of every Extension after a base-configs event: a change, and the end of every list but
/// the first. A list after a watch outage may hold a change the watch missed; the first list holds nothing that a
/// reconcile has not read (until the store is synced, reconciles read the ConfigMap from the apiserver), and waking
/// on it would reconcile every Extension a second time at every start of the controller.
fn base_configs_trigger(changed: tokio::sync::watch::Sender<u64>) -> impl FnMut(&watcher::Event<ConfigMap>) + Send {
    let mut listed_before = false;
    move |event| {
        let wake = match event {
            watcher::Event::Init | watcher::Event::InitApply(_) => false,
            watcher::Event::InitDone => std::mem::replace(&mut listed_before, true),
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => true,
        };
        if wake {
            changed.send_modify(|generation| *generation += 1);
        }
    }
}

/// A store filled from a watch, and whether it holds the result of its first list.
///
/// The readiness is our own signal, not the store's `wait_until_ready`: that one wakes only the waker of its latest
/// poll (one slot, behind a lock), so a poll that only asks (`now_or_never`, as `/readyz` and every OSC review do)
/// would take the wake-up from a task that waits for it, and the reconciler waiting for the first list would never
/// start.
#[derive(Clone)]
struct Reflected<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    /// Set once the first list is in the store; it stays set.
    listed: tokio::sync::watch::Receiver<bool>,
}

impl<K> Reflected<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn is_listed(&self) -> bool {
        *self.listed.borrow()
    }

    /// The stored object, once the first list is in; `None` sends the caller to the apiserver.
    fn get_listed(&self, key: &ObjectRef<K>) -> Option<Arc<K>> {
        if self.is_listed() { self.store.get(key) } else { None }
    }
}

/// A store and the future that fills it from a watch; `slim` drops what no reader needs before an object is kept,
/// `generation` is bumped and then `applied` sees each event once the store holds it.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: impl FnMut(&mut K) + Send + 'static,
    generation: Arc<AtomicU64>,
    mut applied: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> (Reflected<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    let kind = K::kind(&()).into_owned();
    let watch = watcher(api, config).default_backoff().modify(slim).reflect(writer).for_each(move |event| {
        match event {
            Ok(event) => {
                // The writer changed the store before passing these on: a (re-)list is swapped in on `InitDone`, its
                // `Init` and `InitApply` only fill the writer's buffer.
                match &event {
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                        generation.fetch_add(1, Ordering::Release);
                    }
                    watcher::Event::InitDone => {
                        generation.fetch_add(1, Ordering::Release);
                        listed_tx.send_if_modified(|listed| !std::mem::replace(listed, true));
                    }
                    watcher::Event::Init | watcher::Event::InitApply(_) => {}
                }
                applied(&event);
            }
            // The backoff retries; the store keeps what it had.
            Err(error) => tracing::warn!(kind, error = %error, "watch failed; retrying"),
        }
        std::future::ready(())
    });
    (Reflected { store, listed }, watch)
}

/// A Cluster as the stores keep it: the Shoot, without the CloudProfile and the Seed (no reader needs them, and they
/// are most of a Cluster's bytes) and without managed fields.
fn slim_cluster(cluster: &mut Cluster) {
    cluster.metadata.managed_fields = None;
    cluster.spec.shoot.metadata.managed_fields = None;
    cluster.spec.cloud_profile = Value::Null;
    cluster.spec.seed = None;
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt as _;

    use super::*;

    #[test]
    fn versions_compared_in_place_agree_with_the_versions_taken() {
        fn versioned<T: serde::de::DeserializeOwned>(object: serde_json::Value, version: Option<&str>) -> T {
            let mut object = object;
            if let Some(version) = version {
                object["metadata"]["resourceVersion"] = serde_json::json!(version);
            }
            serde_json::from_value(object).expect("object")
        }
        let cluster = |version| -> Cluster {
            versioned(
                serde_json::json!({"metadata": {"name": "shoot--p--s"}, "spec": {"shoot": {"spec": {}}}}),
                version,
            )
        };
        let extension = |version| -> Extension {
            versioned(serde_json::json!({"metadata": {"name": "e"}, "spec": {"type": EXTENSION_TYPE}}), version)
        };
        let config_map = |version| -> ConfigMap { versioned(serde_json::json!({"metadata": {"name": "c"}}), version) };
        let kept_base_configs = [None, Some("5".to_owned())];
        for kept in kept_base_configs.map(|base_configs| InputVersions {
            cluster: "1".into(),
            extension: "2".into(),
            base_configs,
        }) {
            for cluster_version in [Some("1"), Some("9"), None] {
                for extension_version in [Some("2"), Some("9"), None] {
                    for base_configs in [None, Some(Some("5")), Some(Some("6")), Some(None)] {
                        let (cluster, extension) = (cluster(cluster_version), extension(extension_version));
                        let base_configs = base_configs.map(config_map);
                        let taken = InputVersions::of(&cluster, &extension, base_configs.as_ref());
                        assert_eq!(
                            kept.are_of(&cluster, &extension, base_configs.as_ref()),
                            taken.as_ref() == Some(&kept),
                            "kept {kept:?}, objects at {taken:?} ({cluster_version:?}, {extension_version:?}, {:?})",
                            base_configs.as_ref().map(|c| c.metadata.resource_version.clone())
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn base_configs_wake_reconciles_on_changes_and_on_lists_after_the_first() {
        let (changed, generation) = tokio::sync::watch::channel(0u64);
        let mut trigger = base_configs_trigger(changed);
        let config_map = ConfigMap::default();
        let mut seen = |event: watcher::Event<ConfigMap>| {
            trigger(&event);
            *generation.borrow()
        };
        assert_eq!(seen(watcher::Event::Init), 0);
        assert_eq!(seen(watcher::Event::InitApply(config_map.clone())), 0);
        assert_eq!(seen(watcher::Event::InitDone), 0, "the first list wakes nothing");
        assert_eq!(seen(watcher::Event::Apply(config_map.clone())), 1);
        assert_eq!(seen(watcher::Event::Delete(config_map.clone())), 2);
        assert_eq!(seen(watcher::Event::Init), 2);
        assert_eq!(seen(watcher::Event::InitApply(config_map)), 2);
        assert_eq!(seen(watcher::Event::InitDone), 3, "a list after an outage wakes reconciles");
    }

    #[test]
    fn a_stored_cluster_keeps_the_shoot_and_drops_what_no_reader_needs() {
        let mut cluster: Cluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "extensions.gardener.cloud/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": "shoot--p--s", "managedFields": [{"manager": "gardenlet"}]},
            "spec": {
                "shoot": {"metadata": {"name": "s", "managedFields": [{"manager": "gardener"}]},
                          "spec": {"kubernetes": {"version": "1.33.0"}}},
                "cloudProfile": {"spec": {"machineImages": []}},
                "seed": {"metadata": {"name": "seed"}}
            }
        }))
        .expect("cluster");
        let shoot_spec = cluster.spec.shoot.spec.clone();
        slim_cluster(&mut cluster);
        assert_eq!(cluster.spec.shoot.spec, shoot_spec);
        assert_eq!(cluster.spec.cloud_profile, Value::Null);
        assert_eq!(cluster.spec.seed, None);
        assert_eq!(cluster.metadata.managed_fields, None);
        assert_eq!(cluster.spec.shoot.metadata.managed_fields, None);
        assert_eq!(cluster.name_any(), "shoot--p--s");
    }

    #[test]
    fn the_fingerprint_follows_what_an_osc_answer_reads_and_nothing_else() {
        let cluster: Cluster = crate::yaml::from_str(include_str!("../../examples/10-cluster.yaml")).expect("Cluster");
        let extension: Extension =
            crate::yaml::from_str(include_str!("../../examples/20-extension.yaml")).expect("Extension");
        let base: ConfigMap =
            serde_json::from_value(serde_json::json!({"data": {"default": "policy: {}"}})).expect("cm");
        let of = |cluster: &Cluster, extension: &Extension, base: Option<&ConfigMap>| {
            InputFingerprint::of(cluster, extension, base).expect("a fingerprint")
        };
        let original = of(&cluster, &extension, Some(&base));
        assert_eq!(of(&cluster, &extension, Some(&base)), original);

        // What gardenlet and the controller rewrite in every shoot reconcile: the same fingerprint.
        let (mut rewritten, mut reported) = (cluster.clone(), extension.clone());
        rewritten.metadata.resource_version = Some("999".into());
        rewritten.spec.shoot.metadata.resource_version = Some("998".into());
        rewritten.spec.shoot.metadata.generation = Some(42);
        rewritten.spec.shoot.status =
            Some(serde_json::from_value(serde_json::json!({"technicalID": "x"})).expect("status"));
        let shoot_metadata = &mut rewritten.spec.shoot.metadata;
        shoot_metadata.uid = Some("another-uid".into());
        shoot_metadata.labels.get_or_insert_default().insert("shoot.gardener.cloud/status".into(), "healthy".into());
        shoot_metadata.annotations.get_or_insert_default().insert("gardener.cloud/timestamp".into(), "t2".into());
        reported.metadata.resource_version = Some("997".into());
        reported
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("gardener.cloud/operation".into(), "reconcile".into());
        reported.status = Some(Default::default());
        assert_eq!(of(&rewritten, &reported, Some(&base)), original);

        // What the answer reads: another fingerprint.
        let mut other_spec = cluster.clone();
        other_spec.spec.shoot.spec.kubernetes.version = Some("1.99.0".into());
        assert_ne!(of(&other_spec, &extension, Some(&base)), original);
        let mut other_config = extension.clone();
        other_config.spec.provider_config = Some(serde_json::json!({"configs": {"force": "policy: {}"}}));
        assert_ne!(of(&cluster, &other_config, Some(&base)), original);
        let mut other_base = base.clone();
        other_base.data.get_or_insert_default().insert("default".into(), "policy: {Active: static}".into());
        assert_ne!(of(&cluster, &extension, Some(&other_base)), original);
        assert_ne!(of(&cluster, &extension, None), original);
        let mut deleting = extension.clone();
        deleting.metadata.deletion_timestamp = Some(crate::apis::common::unset_time());
        assert_eq!(
            InputFingerprint::of(&cluster, &deleting, Some(&base)),
            None,
            "a deleting Extension's answer is not kept"
        );
    }

    #[test]
    fn an_answer_seen_to_hold_at_a_generation_holds_there_without_reading_the_stores() {
        let cluster: Cluster = crate::yaml::from_str(include_str!("../../examples/10-cluster.yaml")).expect("Cluster");
        let mut extension: Extension =
            crate::yaml::from_str(include_str!("../../examples/20-extension.yaml")).expect("Extension");
        let versioned = |mut cluster: Cluster, version: &str| {
            cluster.metadata.resource_version = Some(version.into());
            cluster
        };
        extension.metadata.resource_version = Some("2".into());
        let made_from = MadeFrom::of(&versioned(cluster.clone(), "1"), &extension, None).expect("kept");
        let reads = std::cell::Cell::new(0);
        let stored = |cluster: Cluster| {
            let extension = extension.clone();
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                Some((Arc::new(cluster), Arc::new(extension), None))
            }
        };
        let mut changed = versioned(cluster.clone(), "3");
        changed.spec.shoot.spec.provider.workers.clear();

        // Never seen to hold: 0 is no generation, so the stores are read.
        assert!(made_from.holds_at(FIRST_GENERATION, stored(versioned(cluster.clone(), "1"))));
        assert_eq!(reads.get(), 1);
        // Seen to hold at this generation: holds without a read, whatever the stores would say.
        assert!(made_from.holds_at(FIRST_GENERATION, stored(changed.clone())));
        assert_eq!(reads.get(), 1);
        // A change bumped the generation: read again, and what does not hold is not noted.
        assert!(!made_from.holds_at(FIRST_GENERATION + 1, stored(changed.clone())));
        assert!(!made_from.holds_at(FIRST_GENERATION + 1, stored(changed)));
        assert_eq!(reads.get(), 3);
        // Back to what it was made from at a later generation: holds, and is noted there.
        assert!(made_from.holds_at(FIRST_GENERATION + 2, stored(versioned(cluster.clone(), "1"))));
        assert!(made_from.holds_at(FIRST_GENERATION + 2, || None));
        assert_eq!(reads.get(), 4);
        assert!(!made_from.holds_at(FIRST_GENERATION + 3, || None), "a Cluster or Extension gone");
    }

    #[test]
    fn an_answer_holds_for_the_same_versions_or_the_same_content() {
        let mut cluster: Cluster =
            crate::yaml::from_str(include_str!("../../examples/10-cluster.yaml")).expect("Cluster");
        let mut extension: Extension =
            crate::yaml::from_str(include_str!("../../examples/20-extension.yaml")).expect("Extension");
        cluster.metadata.resource_version = Some("1".into());
        extension.metadata.resource_version = Some("2".into());
        let made_from = MadeFrom::of(&cluster, &extension, None).expect("kept");
        let stored = |cluster: &Cluster, extension: &Extension, base: Option<&ConfigMap>| {
            Some((Arc::new(cluster.clone()), Arc::new(extension.clone()), base.cloned().map(Arc::new)))
        };
        assert!(made_from.holds_for(stored(&cluster, &extension, None)));
        assert!(!made_from.holds_for(None), "a Cluster or Extension missing from the stores");

        // New versions, the same content: holds (and again, from what was found the first time).
        let (mut rewritten, mut reported) = (cluster.clone(), extension.clone());
        rewritten.metadata.resource_version = Some("3".into());
        rewritten.spec.shoot.status =
            Some(serde_json::from_value(serde_json::json!({"technicalID": "x"})).expect("status"));
        reported.metadata.resource_version = Some("4".into());
        assert!(made_from.holds_for(stored(&rewritten, &reported, None)));
        assert!(made_from.holds_for(stored(&rewritten, &reported, None)));

        // The Extension being deleted, the base configs appearing: no longer.
        let mut deleting = reported.clone();
        deleting.metadata.resource_version = Some("5".into());
        deleting.metadata.deletion_timestamp = Some(crate::apis::common::unset_time());
        assert!(!made_from.holds_for(stored(&rewritten, &deleting, None)));
        let mut base: ConfigMap =
            serde_json::from_value(serde_json::json!({"data": {"default": "policy: {}"}})).expect("ConfigMap");
        base.metadata.resource_version = Some("6".into());
        assert!(!made_from.holds_for(stored(&rewritten, &reported, Some(&base))));
        // An object without a version (not from an apiserver) is never taken for the same.
        let mut unversioned = reported.clone();
        unversioned.metadata.resource_version = None;
        assert!(!made_from.holds_for(stored(&rewritten, &unversioned, None)));
        // Back to the content it was made from: holds again.
        assert!(made_from.holds_for(stored(&cluster, &extension, None)));
    }
}
