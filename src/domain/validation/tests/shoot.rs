use super::*;

fn shoot(extensions: Value, workers: Value) -> Shoot {
    let spec = serde_json::from_value(json!({
        "extensions": extensions,
        "provider": { "type": "local", "workers": workers },
    }))
    .unwrap();
    Shoot::new("local", spec)
}

fn containerd_pools() -> Value {
    json!([
        { "name": "cpu", "cri": { "name": "containerd" }, "machine": { "type": "m5.large" } },
        { "name": "gpu", "cri": { "name": "containerd" }, "machine": { "type": "p3.large" } },
    ])
}

fn entry(provider_config: Value) -> Value {
    json!([
        { "type": "shoot-dns-service" },
        { "type": EXTENSION_TYPE, "providerConfig": provider_config },
    ])
}

fn shoot_errors(new: &Shoot, old: Option<&Shoot>) -> Vec<String> {
    validate_shoot(new, old).iter().map(ToString::to_string).collect()
}

#[test]
fn shoot_with_valid_entries_passes() {
    let readme = shoot(entry(json!({ "configs": { "fallback": README_FALLBACK } })), containerd_pools());
    assert_eq!(shoot_errors(&readme, None), [""; 0]);
    let versioned = shoot(
        entry(json!({ "apiVersion": API_VERSION, "kind": KIND, "configs": { "default": SAMPLE_DEFAULT },
                      "workerPools": ["gpu"] })),
        containerd_pools(),
    );
    assert_eq!(shoot_errors(&versioned, None), [""; 0]);
    // No providerConfig at all.
    let bare = shoot(json!([{ "type": EXTENSION_TYPE }]), containerd_pools());
    assert_eq!(shoot_errors(&bare, None), [""; 0]);
    // Other extension types are not ours to judge.
    let other = shoot(json!([{ "type": "x", "providerConfig": { "anything": 1 } }]), json!([]));
    assert_eq!(shoot_errors(&other, None), [""; 0]);
}

#[test]
fn shoot_rules_with_exact_messages() {
    let cases: Vec<(&str, Shoot, Vec<&str>)> = vec![
        (
            "providerConfig errors carry the entry's index",
            shoot(entry(json!({ "config": {} })), containerd_pools()),
            vec![
                r#"spec.extensions[1].providerConfig.config: Forbidden: unknown field "config": supported fields: "apiVersion", "kind", "configs", "workerPools""#,
            ],
        ),
        (
            "unknown pool",
            shoot(entry(json!({ "workerPools": ["cpu", "fpga"] })), containerd_pools()),
            vec![
                r#"spec.extensions[1].providerConfig.workerPools[1]: Not found: "fpga": no such pool in spec.provider.workers; pools: "cpu", "gpu""#,
            ],
        ),
        (
            "pool selected in a workerless shoot",
            shoot(entry(json!({ "workerPools": ["cpu"] })), json!([])),
            vec![
                r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "cpu": the shoot has no worker pools in spec.provider.workers"#,
            ],
        ),
        (
            "non-containerd pool",
            shoot(
                entry(json!({ "workerPools": ["cpu", "gpu"] })),
                json!([
                    { "name": "cpu", "cri": { "name": "containerd" } },
                    { "name": "gpu", "cri": { "name": "cri-o" } },
                ]),
            ),
            vec![
                r#"spec.provider.workers[1].cri.name: Unsupported value: "cri-o": worker pool "gpu" is selected in spec.extensions[1].providerConfig.workerPools[1], and cri-resmgr only works with "containerd""#,
            ],
        ),
        (
            "pool without cri",
            shoot(entry(json!({ "workerPools": ["cpu"] })), json!([{ "name": "cpu" }])),
            vec![
                r#"spec.provider.workers[0].cri.name: Required value: worker pool "cpu" is selected in spec.extensions[1].providerConfig.workerPools[0], and cri-resmgr only works with "containerd""#,
            ],
        ),
        (
            "repeated selection is reported once",
            shoot(entry(json!({ "workerPools": ["fpga", "fpga"] })), containerd_pools()),
            vec![
                r#"spec.extensions[1].providerConfig.workerPools[1]: Duplicate value: "fpga""#,
                r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "fpga": no such pool in spec.provider.workers; pools: "cpu", "gpu""#,
            ],
        ),
    ];
    for (name, new, want) in cases {
        assert_eq!(shoot_errors(&new, None), want, "case {name:?}");
    }
}

#[test]
fn no_selection_without_containerd_pools_is_allowed() {
    let new = shoot(entry(json!({})), json!([{ "name": "cpu", "cri": { "name": "cri-o" } }, { "name": "x" }]));
    assert_eq!(shoot_errors(&new, None), [""; 0]);
    assert!(PoolSelection::default().selected(&new.spec.provider.workers).is_empty());
}

#[test]
fn disabled_entry_is_not_validated() {
    let invalid = json!({ "configs": { "default": "policy:\n  Active: null\n" } });
    let disabled =
        shoot(json!([{ "type": EXTENSION_TYPE, "disabled": true, "providerConfig": invalid }]), containerd_pools());
    assert_eq!(shoot_errors(&disabled, None), [""; 0]);
    assert_eq!(default_shoot(&disabled), None);
    let enabled =
        shoot(json!([{ "type": EXTENSION_TYPE, "disabled": false, "providerConfig": invalid }]), containerd_pools());
    assert_eq!(shoot_errors(&enabled, None).len(), 1);
    // Re-enabling is judged even though the providerConfig did not change.
    assert_eq!(shoot_errors(&enabled, Some(&disabled)).len(), 1);
}

#[test]
fn unchanged_entry_is_not_judged_again_on_update() {
    // Accepted once (e.g. by a more lenient version), now invalid: both a config and a pool problem.
    let invalid = json!({ "configs": { "default": "policy:\n  Active: null\n" }, "workerPools": ["gpu"] });
    let pools = json!([
        { "name": "cpu", "cri": { "name": "containerd" } },
        { "name": "gpu", "cri": { "name": "cri-o" } },
    ]);
    let old = shoot(entry(invalid.clone()), pools.clone());
    assert_eq!(shoot_errors(&old, None).len(), 2);

    // Same providerConfig, same selected pools: not judged again.
    assert_eq!(shoot_errors(&old, Some(&old)), [""; 0]);
    // An unrelated change (a new pool nobody selected) does not re-judge either.
    let mut more_pools = pools.as_array().unwrap().clone();
    more_pools.push(json!({ "name": "new", "cri": { "name": "containerd" } }));
    let new = shoot(entry(invalid.clone()), Value::Array(more_pools));
    assert_eq!(shoot_errors(&new, Some(&old)), [""; 0]);

    // A change to the providerConfig is judged in full.
    let mut changed = invalid.clone();
    changed["configs"]["fallback"] = json!(README_FALLBACK);
    let new = shoot(entry(changed), pools.clone());
    assert_eq!(shoot_errors(&new, Some(&old)).len(), 2);

    // A change to a selected pool is judged in full.
    let new = shoot(entry(invalid.clone()), json!([{ "name": "cpu", "cri": { "name": "containerd" } }]));
    assert_eq!(
        shoot_errors(&new, Some(&old)),
        [
            r#"spec.extensions[1].providerConfig.configs["default"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of "topology-aware", "memtier", "static", "static-plus", "static-pools", "podpools", "balloons", "dynamic-pools""#,
            r#"spec.extensions[1].providerConfig.workerPools[0]: Not found: "gpu": no such pool in spec.provider.workers; pools: "cpu""#,
        ]
    );
}

#[test]
fn what_defaulting_adds_is_no_change_for_ratcheting() {
    // Stored before there was any admission: the original form (no apiVersion/kind) with a config that is invalid
    // now. On every UPDATE the defaulting webhook adds apiVersion/kind before the validator sees the Shoot.
    let original = json!({ "configs": { "default": "policy:\n  Active: null\n" } });
    let old = shoot(entry(original.clone()), containerd_pools());
    let document = serde_json::to_value(&old).unwrap();
    let mut defaulted_document = document.clone();
    json_patch::patch(&mut defaulted_document, &default_shoot(&old).unwrap()).unwrap();
    let defaulted: Shoot = serde_json::from_value(defaulted_document).unwrap();
    assert_ne!(defaulted, old, "defaulting added apiVersion/kind");

    // An annotation, a Kubernetes version bump: only what defaulting adds differs, so nothing is judged again.
    assert_eq!(shoot_errors(&defaulted, Some(&old)), [""; 0]);
    // Once defaulted and stored, the next update (the owner re-applying the original form, which defaulting
    // completes again) compares the defaulted forms.
    assert_eq!(shoot_errors(&defaulted, Some(&defaulted)), [""; 0]);
    // Only what defaulting adds is ignored: the old form against the defaulted one is no change in either direction.
    assert_eq!(shoot_errors(&old, Some(&defaulted)), [""; 0]);

    // A real change of the providerConfig is judged in full, with or without what defaulting adds.
    let mut changed = original.clone();
    changed["configs"]["fallback"] = json!(README_FALLBACK);
    let changed_old_form = shoot(entry(changed.clone()), containerd_pools());
    changed["apiVersion"] = json!(API_VERSION);
    changed["kind"] = json!(KIND);
    let changed_defaulted = shoot(entry(changed), containerd_pools());
    for new in [&changed_old_form, &changed_defaulted] {
        assert_eq!(
            shoot_errors(new, Some(&old)),
            [
                r#"spec.extensions[1].providerConfig.configs["default"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of "topology-aware", "memtier", "static", "static-plus", "static-pools", "podpools", "balloons", "dynamic-pools""#,
            ]
        );
    }
    // So is a wrong apiVersion where the old Shoot had none: defaulting adds only what is missing.
    let mut wrong = original;
    wrong["apiVersion"] = json!("v1");
    wrong["kind"] = json!(KIND);
    let errors = shoot_errors(&shoot(entry(wrong), containerd_pools()), Some(&old));
    assert!(errors.len() == 1 && errors[0].starts_with("spec.extensions[1].providerConfig.apiVersion: "), "{errors:?}");
}

#[test]
fn selected_worker_pools_follow_the_selection_and_containerd() {
    let workers: Vec<Worker> = serde_json::from_value(json!([
        { "name": "a", "cri": { "name": "containerd" } },
        { "name": "b", "cri": { "name": "cri-o" } },
        { "name": "c" },
        { "name": "d", "cri": { "name": "containerd" } },
    ]))
    .unwrap();
    let names = |selection: &PoolSelection| -> Vec<String> {
        selection.selected(&workers).iter().map(|w| w.name.clone()).collect()
    };
    assert_eq!(names(&PoolSelection::default()), ["a", "d"]);
    let selection = PoolSelection::new(Some(vec!["d".into(), "b".into()]));
    assert_eq!(names(&selection), ["d"]);
    assert!(selection.selects(&workers[3]) && !selection.selects(&workers[0]));
}

/// cri-resmgr ships for amd64 only: naming an arm64 pool is denied at the selection, with the pool's architecture
/// field and what is allowed; without `workerPools` an arm64 pool is simply not selected (no error), and a pool
/// without `architecture` is amd64.
#[test]
fn an_explicitly_selected_pool_without_a_cri_resmgr_build_is_denied() {
    let workers = json!([
        { "name": "cpu", "cri": { "name": "containerd" }, "machine": { "type": "m5.large" } },
        { "name": "arm", "cri": { "name": "containerd" }, "machine": { "type": "m6g.large", "architecture": "arm64" } },
    ]);
    assert_eq!(
        shoot_errors(&shoot(entry(json!({ "workerPools": ["cpu", "arm"] })), workers.clone()), None),
        [
            r#"spec.extensions[1].providerConfig.workerPools[1]: Unsupported value: "arm": worker pool "arm" runs on "arm64" (spec.provider.workers[1].machine.architecture), and cri-resmgr is only available for "amd64"; select only pools on "amd64""#
        ]
    );
    assert_eq!(
        shoot_errors(&shoot(entry(json!({ "workerPools": ["cpu"] })), workers.clone()), None),
        Vec::<String>::new()
    );
    assert_eq!(shoot_errors(&shoot(entry(json!({})), workers.clone()), None), Vec::<String>::new());

    // Ratcheting: a selected pool that moves to arm64 is a change of the selection's facts, judged in full.
    let selected = entry(json!({ "workerPools": ["cpu", "arm"] }));
    let old = shoot(selected.clone(), json!([workers[0].clone(), { "name": "arm", "cri": { "name": "containerd" } }]));
    assert_eq!(shoot_errors(&old, None), Vec::<String>::new(), "both pools amd64");
    assert_eq!(shoot_errors(&shoot(selected, workers), Some(&old)).len(), 1, "the arm pool is judged again");
}

#[test]
fn default_shoot_patches_precisely_and_is_idempotent() {
    let cases = [
        (
            json!([{ "type": EXTENSION_TYPE }]),
            json!([
                { "op": "add", "path": "/spec/extensions/0/providerConfig", "value": { "apiVersion": API_VERSION, "kind": KIND } },
            ]),
        ),
        (
            json!([{ "type": EXTENSION_TYPE, "providerConfig": null }]),
            json!([
                { "op": "add", "path": "/spec/extensions/0/providerConfig", "value": { "apiVersion": API_VERSION, "kind": KIND } },
            ]),
        ),
        (
            entry(json!({ "configs": { "default": README_FALLBACK } })),
            json!([
                { "op": "add", "path": "/spec/extensions/1/providerConfig/apiVersion", "value": API_VERSION },
                { "op": "add", "path": "/spec/extensions/1/providerConfig/kind", "value": KIND },
            ]),
        ),
    ];
    for (extensions, want) in cases {
        let original = shoot(extensions, containerd_pools());
        let patch = default_shoot(&original).unwrap();
        assert_eq!(serde_json::to_value(&patch).unwrap(), want);
        let mut document = serde_json::to_value(&original).unwrap();
        json_patch::patch(&mut document, &patch).unwrap();
        let defaulted: Shoot = serde_json::from_value(document).unwrap();
        assert_eq!(default_shoot(&defaulted), None, "defaulting twice changes nothing");
        assert_eq!(shoot_errors(&defaulted, None), [""; 0]);
    }
    let versioned = shoot(entry(json!({ "apiVersion": API_VERSION, "kind": KIND })), containerd_pools());
    assert_eq!(default_shoot(&versioned), None);
    assert_eq!(default_shoot(&shoot(json!([{ "type": "other" }]), json!([]))), None);
}
