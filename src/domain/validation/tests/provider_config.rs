use super::*;

#[test]
fn accepts_the_original_readme_form() {
    assert_eq!(check(json!({ "configs": { "fallback": README_FALLBACK, "default": README_FALLBACK } })), [""; 0]);
}

#[test]
fn accepts_the_versioned_form_with_every_key() {
    let raw = json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "configs": {
            "fallback": README_FALLBACK,
            "default": SAMPLE_DEFAULT,
            "force": "policy:\n  Active: balloons\n  balloons:\n    BalloonTypes:\n    - Name: a\n",
            "group.fast": "policy:\n  Active: static-pools\n",
            "node.worker-1": "policy:\n  Active: none\ninstrumentation:\n  HTTPEndpoint: :8891\n",
            "EXTRA_OPTIONS": "--metrics-interval=10s  --disable-policy-switch\t--log_file=/var/log/cri_resmgr.log",
        },
        "workerPools": ["a", "b"],
    });
    assert_eq!(check(raw.clone()), [""; 0]);
    let config = decode_and_validate_provider_config(Some(&raw), &root()).unwrap();
    assert!(decode_provider_config(&raw, &root()).unwrap().is_versioned());
    assert_eq!(config.worker_pools.names(), Some(&["a".to_owned(), "b".to_owned()][..]));
    assert_eq!(config.configs.entries().count(), 6);
    assert_eq!(config.configs.to_wire(), decode_provider_config(&raw, &root()).unwrap().configs, "round trip");
    assert_eq!(config.configs.groups["fast"].active_policy(), Some(Policy::StaticPools));
    assert_eq!(config.configs.extra_options.as_deref(), raw["configs"]["EXTRA_OPTIONS"].as_str());
    // No providerConfig at all is the empty configuration.
    assert_eq!(decode_and_validate_provider_config(None, &root()), Ok(ValidProviderConfig::default()));
    assert_eq!(check(Value::Null), [""; 0]);
    // Every policy is accepted.
    for policy in POLICIES {
        assert_eq!(check(configs("default", &format!("policy:\n  Active: {policy}\n"))), [""; 0], "{policy}");
    }
}

#[test]
fn rejects_with_exact_messages() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "config text not a string",
            json!({ "configs": { "default": { "policy": { "Active": "none" } }, "EXTRA_OPTIONS": ["--x"] } }),
            vec![
                format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: must be a string of cri-resmgr command-line options, got a list"#
                ),
                format!(
                    r#"{P}.configs["default"]: Invalid value: must be a string holding a cri-resmgr configuration in YAML (use a block scalar: "default: |"), got a mapping"#
                ),
            ],
        ),
        (
            "unknown providerConfig field",
            json!({ "configs": {}, "workerPool": ["a"] }),
            vec![format!(
                r#"{P}.workerPool: Forbidden: unknown field "workerPool": supported fields: "apiVersion", "kind", "configs", "workerPools""#
            )],
        ),
        (
            "providerConfig not a mapping",
            json!("configs"),
            vec![format!(
                r#"{P}: Invalid value: must be a mapping with the fields "apiVersion", "kind", "configs", "workerPools", got a string"#
            )],
        ),
        (
            "wrong apiVersion",
            json!({ "apiVersion": "cri-resmgr.extensions.gardener.cloud/v1", "kind": KIND }),
            vec![format!(
                r#"{P}.apiVersion: Unsupported value: "cri-resmgr.extensions.gardener.cloud/v1": supported values: "cri-resmgr.extensions.gardener.cloud/v1alpha1" (or leave out both apiVersion and kind for the original form)"#
            )],
        ),
        (
            "wrong kind",
            json!({ "apiVersion": API_VERSION, "kind": "CriResMgrConfig" }),
            vec![format!(
                r#"{P}.kind: Unsupported value: "CriResMgrConfig": supported values: "CriResmgrConfig" (or leave out both apiVersion and kind for the original form)"#
            )],
        ),
        (
            "apiVersion without kind",
            json!({ "apiVersion": API_VERSION }),
            vec![format!(
                r#"{P}.kind: Required value: kind "CriResmgrConfig" must be given together with apiVersion (or leave out both apiVersion and kind for the original form)"#
            )],
        ),
        (
            "kind not a string",
            json!({ "apiVersion": API_VERSION, "kind": 1 }),
            vec![format!(r#"{P}.kind: Invalid value: must be a string, got a number"#)],
        ),
        (
            "workerPools empty",
            json!({ "workerPools": [] }),
            vec![format!(
                r#"{P}.workerPools: Required value: must name at least one worker pool; leave workerPools out to select every pool that runs containerd, or disable the extension"#
            )],
        ),
        (
            "workerPools with duplicate, empty and non-string names",
            json!({ "workerPools": ["a", "", "a", 3] }),
            vec![format!(r#"{P}.workerPools[3]: Invalid value: must be a worker pool name (a string), got a number"#)],
        ),
        (
            "workerPools with duplicate and empty names",
            json!({ "workerPools": ["a", "", "a"] }),
            vec![
                format!(r#"{P}.workerPools[1]: Required value: the worker pool name must not be empty"#),
                format!(r#"{P}.workerPools[2]: Duplicate value: "a""#),
            ],
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(check(raw), want, "case {name:?}");
    }
}

#[test]
fn rejects_invalid_keys_with_exact_messages() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "invalid key",
            configs("nodes.worker-1", SAMPLE_DEFAULT),
            vec![format!(
                r#"{P}.configs["nodes.worker-1"]: Unsupported value: "nodes.worker-1": supported keys: "fallback", "default", "force", "EXTRA_OPTIONS", "node.<node name>", "group.<group name>""#
            )],
        ),
        (
            "node name not DNS-1123",
            configs("node.Worker_1", SAMPLE_DEFAULT),
            vec![format!(
                r#"{P}.configs["node.Worker_1"]: Invalid value: "Worker_1": a node name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit) of at most 230 characters, so that ConfigMap "cri-resmgr-config.node.<node name>" is a valid name"#
            )],
        ),
        (
            "empty node name",
            configs("node.", SAMPLE_DEFAULT),
            vec![format!(r#"{P}.configs["node."]: Required value: the node name after "node." must not be empty"#)],
        ),
        (
            "empty group",
            configs("group.", SAMPLE_DEFAULT),
            vec![format!(
                r#"{P}.configs["group."]: Required value: the group name after "group." must not be empty: nodes select the group with label cri-resource-manager.intel.com/group=<group name>"#
            )],
        ),
        (
            "group name not a lowercase label value",
            configs("group.Fast_CPU", SAMPLE_DEFAULT),
            vec![format!(
                r#"{P}.configs["group.Fast_CPU"]: Invalid value: "Fast_CPU": a group name must be a label value of at most 63 characters made of lowercase letters, digits, '-' and '.', starting and ending with a letter or digit: nodes select it with label cri-resource-manager.intel.com/group=<group name>, and the agent reads ConfigMap "cri-resmgr-config.group.<group name>", whose name must be a DNS-1123 subdomain"#
            )],
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(check(raw), want, "case {name:?}");
    }
}

#[test]
fn total_size_and_entry_count_are_limited() {
    // 5 bodies just under the per-body limit: each fine, together over the total.
    let body = format!("policy:\n  Active: none\n#{}\n", "x".repeat(MAX_CONFIG_BODY_BYTES - 40));
    let mut map = serde_json::Map::new();
    for i in 0..5 {
        map.insert(format!("node.n{i}"), Value::String(body.clone()));
    }
    let total: usize = map.iter().map(|(k, v)| k.len() + v.as_str().unwrap().len()).sum();
    assert_eq!(
        check(json!({ "configs": map })),
        [format!(
            "{P}.configs: Too long: keys and texts of all configs together may not be more than 524288 bytes \
             (they end up in one Secret, which holds at most 1 MiB), got {total} bytes"
        )]
    );
    let mut map = serde_json::Map::new();
    for i in 0..=MAX_CONFIG_ENTRIES {
        map.insert(format!("node.n{i}"), Value::String("policy:\n  Active: none\n".into()));
    }
    assert_eq!(check(json!({ "configs": map })), [format!("{P}.configs: Too many: 65: must have at most 64 items")]);

    // A map over the limits is refused as a whole, without judging (parsing) its entries one by one: a hostile Shoot
    // may carry 100,000 of them, more than can be parsed before the apiserver stops waiting.
    let map: serde_json::Map<String, Value> =
        (0..100_000).map(|i| (format!("bogus{i}"), Value::String("policy: [\n".into()))).collect();
    let errors = check(json!({ "configs": map }));
    assert_eq!(errors[0], format!("{P}.configs: Too many: 100000: must have at most 64 items"));
    assert!(errors.iter().all(|e| e.starts_with(&format!("{P}.configs: "))), "no entry is judged: {errors:?}");
    assert!(errors.len() <= 2, "{errors:?}");
}

#[test]
fn defaulting_sets_api_version_and_kind_and_is_idempotent() {
    let versioned = json!({ "apiVersion": API_VERSION, "kind": KIND });
    assert_eq!(default_provider_config(None), Some(versioned.clone()));
    assert_eq!(default_provider_config(Some(&Value::Null)), Some(versioned.clone()));
    let original = json!({ "configs": { "default": README_FALLBACK }, "workerPools": ["a"] });
    let defaulted = default_provider_config(Some(&original)).unwrap();
    assert_eq!(
        defaulted,
        json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "configs": { "default": README_FALLBACK },
            "workerPools": ["a"],
        })
    );
    // Idempotent: a defaulted config needs no more defaulting, and stays valid.
    assert_eq!(default_provider_config(Some(&defaulted)), None);
    assert_eq!(default_provider_config(Some(&versioned)), None);
    assert_eq!(check(defaulted), [""; 0]);
    // What validation rejects is left alone.
    assert_eq!(default_provider_config(Some(&json!({ "kind": KIND }))), None);
    assert_eq!(default_provider_config(Some(&json!({ "apiVersion": "x/v1" }))), None);
    assert_eq!(default_provider_config(Some(&json!(["configs"]))), None);
}

#[test]
fn never_panics_on_odd_input() {
    let odd = [
        json!(null),
        json!(true),
        json!(1.5),
        json!([null]),
        json!({ "configs": null, "workerPools": null }),
        json!({ "configs": { "default": "\u{0}" } }),
        json!({ "configs": { "default": "? [a]\n: b\n" } }),
        json!({ "configs": { "default": "policy: !!binary aGVsbG8=\n" } }),
        json!({ "configs": { "default": "policy: {Active: .inf}\n" } }),
        json!({ "configs": { "default": "&a [*a]" } }),
        json!({ "configs": { "EXTRA_OPTIONS": "--=x -- ---a --é" } }),
        json!({ "configs": { "ü.x": "x", "node.ü": "policy: {}" } }),
    ];
    for raw in odd {
        let _ = check(raw.clone());
        let _ = default_provider_config(Some(&raw));
    }
}
