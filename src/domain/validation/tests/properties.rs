//! Properties of validation and defaulting over generated providerConfigs: realistic ones (every config key, bodies
//! with sections and policies, EXTRA_OPTIONS lines, worker pool lists, the versioned and the original form) mixed
//! with broken ones (wrong types, unknown keys and sections, arbitrary text where YAML is expected).

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::apis::config::KEY_EXTRA_OPTIONS;

/// A `policy.Active` value: mostly a real policy, sometimes `null`, an unknown name or another YAML type.
fn active_policy() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(POLICIES).prop_map(str::to_owned),
        1 => Just("null".to_owned()),
        1 => "[a-z][a-z-]{0,12}",
        1 => Just("[none]".to_owned()),
    ]
}

/// A section other than `policy`: a known one with a plausible option, or an unknown one.
fn section() -> impl Strategy<Value = String> {
    let name = prop_oneof![3 => select(CONFIG_SECTIONS).prop_map(str::to_owned), 1 => "[a-z][a-z-]{0,10}"];
    let body = prop_oneof![
        Just("  Debug: resource-manager,cache\n".to_owned()),
        Just("  PinCPU: true\n".to_owned()),
        Just("  HTTPEndpoint: :8891\n".to_owned()),
        Just(" 7\n".to_owned()),
        Just(" [a, b]\n".to_owned()),
        Just(" {}\n".to_owned()),
    ];
    (name, body).prop_map(|(name, body)| format!("{name}:{body}"))
}

/// A cri-resmgr configuration body: mostly structured YAML, sometimes arbitrary text.
fn config_body() -> impl Strategy<Value = String> {
    let reserved = prop_oneof![Just("750m"), Just("cpuset:0-1"), Just("2"), Just("-1"), Just("lots")];
    let structured = (
        proptest::option::of(active_policy()),
        proptest::option::of(reserved),
        vec(section(), 0..3),
        proptest::option::of(Just("# a comment\n")),
    )
        .prop_map(|(policy, reserved, sections, comment)| {
            let mut text = comment.unwrap_or_default().to_owned();
            if policy.is_some() || reserved.is_some() {
                text.push_str("policy:\n");
                if let Some(policy) = policy {
                    text.push_str(&format!("  Active: {policy}\n"));
                }
                if let Some(cpu) = reserved {
                    text.push_str(&format!("  ReservedResources:\n    CPU: {cpu}\n"));
                }
            }
            for section in sections {
                text.push_str(&section);
            }
            text
        });
    prop_oneof![
        8 => structured,
        1 => "[a-zA-Z0-9:{}\\[\\],&*!|>#'\" \n-]{0,60}",
        1 => any::<String>(),
    ]
}

/// An `EXTRA_OPTIONS` line: mostly flags as cri-resmgr takes them, sometimes forbidden flags or arbitrary text.
fn extra_options() -> impl Strategy<Value = String> {
    let flag = prop_oneof![
        4 => "--[a-z][a-z0-9_-]{0,12}(=[a-zA-Z0-9._,:/=@+-]{0,10})?",
        1 => select(FORBIDDEN_FLAGS).prop_map(|(flag, _)| format!("--{flag}=x")),
    ];
    let separator = select(vec![" ", "  ", "\t"]);
    prop_oneof![
        6 => vec((flag, separator), 0..4).prop_map(|parts| {
            parts.into_iter().map(|(flag, separator)| format!("{flag}{separator}")).collect::<String>()
        }),
        1 => any::<String>(),
    ]
}

/// A key of `configs`: every kind of key, valid and invalid group and node names, and unknown keys.
fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(vec!["fallback", "default", "force"]).prop_map(str::to_owned),
        1 => Just(KEY_EXTRA_OPTIONS.to_owned()),
        1 => "group\\.[a-z0-9][a-z0-9-]{0,10}",
        1 => "node\\.[a-z0-9][a-z0-9.-]{0,14}",
        1 => "(group|node)\\.[A-Za-z0-9_.-]{0,8}",
        1 => "[a-zA-Z._-]{0,10}",
    ]
}

/// A value of `configs`: text for the key (or for another key), sometimes a value of the wrong type.
fn config_value(key: String) -> impl Strategy<Value = Value> {
    let text = if key == KEY_EXTRA_OPTIONS { extra_options().boxed() } else { config_body().boxed() };
    prop_oneof![
        12 => text.prop_map(Value::String),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!({"policy": {"Active": "none"}})),
    ]
}

fn configs_map() -> impl Strategy<Value = Value> {
    btree_map(config_key(), Just(()), 0..6).prop_flat_map(|keys| {
        keys.into_keys()
            .map(|key| config_value(key.clone()).prop_map(move |value| (key.clone(), value)))
            .collect::<Vec<_>>()
            .prop_map(|entries| Value::Object(entries.into_iter().collect()))
    })
}

fn worker_pools() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => vec("[a-z][a-z0-9-]{0,8}", 1..4).prop_map(|names| json!(names)),
        1 => vec("[a-z-]{0,3}", 0..3).prop_map(|names| json!(names)),
        1 => Just(json!("cpu-worker")),
        1 => Just(json!([1, null])),
    ]
}

/// A providerConfig as the apiserver hands it over: the original form, the versioned form, a half or wrong
/// apiVersion/kind, unknown fields; or `null`, or not a mapping at all.
fn provider_config() -> impl Strategy<Value = Value> {
    let type_meta = prop_oneof![
        4 => Just(None),
        4 => Just(Some((json!(API_VERSION), json!(KIND)))),
        1 => Just(Some((json!(API_VERSION), Value::Null))),
        1 => Just(Some((json!("cri-resmgr.extensions.gardener.cloud/v1"), json!(KIND)))),
        1 => Just(Some((json!(7), json!(KIND)))),
    ];
    let object = (
        type_meta,
        proptest::option::weighted(0.9, configs_map()),
        proptest::option::weighted(0.3, worker_pools()),
        proptest::option::weighted(0.05, Just(("workerPool", json!(["a"])))),
    )
        .prop_map(|(type_meta, configs, pools, unknown)| {
            let mut object = serde_json::Map::new();
            match type_meta {
                // `null` stands for a field that is absent on one side only.
                Some((api_version, Value::Null)) => {
                    object.insert("apiVersion".to_owned(), api_version);
                }
                Some((api_version, kind)) => {
                    object.insert("apiVersion".to_owned(), api_version);
                    object.insert("kind".to_owned(), kind);
                }
                None => {}
            }
            if let Some(configs) = configs {
                object.insert("configs".to_owned(), configs);
            }
            if let Some(pools) = pools {
                object.insert("workerPools".to_owned(), pools);
            }
            if let Some((field, value)) = unknown {
                object.insert(field.to_owned(), value);
            }
            Value::Object(object)
        });
    prop_oneof![
        12 => object,
        1 => Just(Value::Null),
        1 => Just(json!("configs")),
        1 => Just(json!([{"configs": {}}])),
    ]
}

fn root_path() -> FieldPath {
    FieldPath::new("providerConfig")
}

fn assert_every_error_has_a_path(errors: &[FieldError], root: &str) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty(), "a denial must say why");
    for error in errors {
        prop_assert!(error.path.starts_with(root), "error not below {}: {:?}", root, error);
        prop_assert!(!error.message.is_empty(), "error without a message: {:?}", error);
    }
    Ok(())
}

proptest! {
    /// Validation is total: any providerConfig is either accepted or denied with errors that each name the field.
    #[test]
    fn validation_never_panics_and_every_error_has_a_field_path(raw in provider_config()) {
        if let Err(errors) = decode_and_validate_provider_config(Some(&raw), &root_path()) {
            assert_every_error_has_a_path(&errors, "providerConfig")?;
        }
    }

    /// Defaulting is visible but harmless: what validation accepted before defaulting it accepts after, with the
    /// same meaning, and defaulting a defaulted providerConfig changes nothing.
    #[test]
    fn defaulting_never_denies_what_validation_accepted(raw in provider_config()) {
        let before = decode_and_validate_provider_config(Some(&raw), &root_path());
        if let Some(defaulted) = default_provider_config(Some(&raw)) {
            prop_assert_eq!(default_provider_config(Some(&defaulted)), None, "defaulting is not idempotent");
            let after = decode_and_validate_provider_config(Some(&defaulted), &root_path());
            if let Ok(valid) = before {
                prop_assert_eq!(after, Ok(valid), "defaulting changed an accepted providerConfig");
            }
        }
    }

    /// The same through the Shoot: the errors of `validate_shoot` are at `spec.extensions[i].providerConfig…`, and
    /// the defaulting patch applied to the Shoot never makes it invalid.
    #[test]
    fn shoot_errors_point_into_the_shoot_and_its_defaulting_patch_is_harmless(raw in provider_config()) {
        let spec = serde_json::from_value(json!({
            "extensions": [{"type": "registry-cache"}, {"type": EXTENSION_TYPE, "providerConfig": raw}],
            "provider": {"type": "local", "workers": [
                {"name": "cpu-worker", "cri": {"name": "containerd"}, "machine": {"type": "m5.large"}},
            ]},
        }))
        .expect("a Shoot spec");
        let shoot = Shoot::new("local", spec);
        let errors = validate_shoot(&shoot, None);
        if !errors.is_empty() {
            assert_every_error_has_a_path(&errors, "spec.extensions[1].providerConfig")?;
        }
        if let Some(patch) = default_shoot(&shoot) {
            let mut patched = serde_json::to_value(&shoot).expect("shoot as JSON");
            json_patch::patch(&mut patched, &patch).expect("the defaulting patch applies");
            let patched: Shoot = serde_json::from_value(patched).expect("still a Shoot");
            prop_assert_eq!(default_shoot(&patched), None, "defaulting the defaulted Shoot changes it again");
            if errors.is_empty() {
                prop_assert_eq!(validate_shoot(&patched, None), Vec::<FieldError>::new());
            }
        }
    }
}
