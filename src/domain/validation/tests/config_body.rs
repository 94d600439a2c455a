use super::*;

#[test]
fn rejects_invalid_bodies_with_exact_messages() {
    let active_list = r#""topology-aware", "memtier", "static", "static-plus", "static-pools", "podpools", "balloons", "dynamic-pools""#;
    let sections = r#""policy", "logger", "dump", "instrumentation", "resource-manager", "cpu", "rdt", "blockio""#;
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "unknown top-level section",
            configs("default", "policy:\n  Active: none\npolcy:\n  Active: none\n"),
            vec![format!(
                r#"{P}.configs["default"]: Unsupported value: "polcy": supported top-level sections: {sections}"#
            )],
        ),
        (
            "dotted top-level section",
            configs("default", "policy.balloons:\n  PinCPU: true\n"),
            vec![format!(
                r#"{P}.configs["default"]: Unsupported value: "policy.balloons": supported top-level sections: {sections} (write dotted module paths nested, e.g. "policy:" with "balloons:" inside)"#
            )],
        ),
        (
            "section not a mapping",
            configs("default", "logger: resource-manager\n"),
            vec![format!(
                r#"{P}.configs["default"].logger: Invalid value: a section must be a mapping (use {{}} for cri-resmgr's defaults), got a string"#
            )],
        ),
        (
            "policy.Active null",
            configs("default", "policy:\n  Active: null\n"),
            vec![format!(
                r#"{P}.configs["default"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
            )],
        ),
        (
            "policy.Active empty (null in YAML)",
            configs("force", "policy:\n  Active:\n"),
            vec![format!(
                r#"{P}.configs["force"].policy.Active: Invalid value: null: the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
            )],
        ),
        (
            "policy.Active \"null\"",
            configs("fallback", "policy:\n  Active: \"null\"\n"),
            vec![format!(
                r#"{P}.configs["fallback"].policy.Active: Invalid value: "null": the "null" policy was removed in cri-resmgr v0.8 and makes cri-resmgr fail to start; use "none" for no policy, or one of {active_list}"#
            )],
        ),
        (
            "unknown policy",
            configs("group.fast", "policy:\n  Active: topology-awareness\n"),
            vec![format!(
                r#"{P}.configs["group.fast"].policy.Active: Unsupported value: "topology-awareness": supported values: "none", {active_list}"#
            )],
        ),
        (
            "policy.Active not a string",
            configs("default", "policy:\n  Active: [none]\n"),
            vec![format!(
                r#"{P}.configs["default"].policy.Active: Invalid value: must be a policy name, one of "none", {active_list}, got a list"#
            )],
        ),
        (
            "body not a mapping",
            configs("default", "- policy\n- logger\n"),
            vec![format!(
                r#"{P}.configs["default"]: Invalid value: must be a YAML mapping of cri-resmgr configuration sections such as "policy:", got a list"#
            )],
        ),
        (
            "body a plain string",
            configs("default", "topology-aware"),
            vec![format!(
                r#"{P}.configs["default"]: Invalid value: must be a YAML mapping of cri-resmgr configuration sections such as "policy:", got a string"#
            )],
        ),
        (
            "empty body",
            configs("default", "# nothing\n"),
            vec![format!(
                r#"{P}.configs["default"]: Required value: the configuration must not be empty: cri-resmgr would fall back to its defaults, i.e. policy "none""#
            )],
        ),
        (
            "duplicate top-level key in body",
            configs("default", "policy:\n  Active: none\nlogger:\n  Debug: cache\npolicy:\n  Active: static\n"),
            vec![format!(
                r#"{P}.configs["default"]: Invalid value: invalid YAML: duplicate key "policy" at line 5, column 1: keys of a YAML mapping must be unique"#
            )],
        ),
        (
            "duplicate nested key in body",
            configs("default", "policy:\n  Active: none\n  Active: static\n"),
            vec![format!(
                r#"{P}.configs["default"]: Invalid value: invalid YAML: duplicate key "Active" at line 3, column 3: keys of a YAML mapping must be unique"#
            )],
        ),
        (
            "oversize body",
            configs("default", &format!("policy:\n  Active: none\n#{}\n", "x".repeat(MAX_CONFIG_BODY_BYTES))),
            vec![format!(r#"{P}.configs["default"]: Too long: may not be more than 131072 bytes"#)],
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(check(raw), want, "case {name:?}");
    }
}

#[test]
fn invalid_yaml_names_the_position() {
    assert_eq!(
        check(configs("default", "policy:\n  Active: [none\n")),
        [format!(r#"{P}.configs["default"]: Invalid value: invalid YAML: unclosed bracket '[' at line 2, column 11"#)]
    );
}

#[test]
fn alias_bombs_are_rejected_not_expanded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    text.push_str("policy:\n  Active: none\n");
    let errors = check(configs("default", &text));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(&format!(r#"{P}.configs["default"]: Invalid value: "#)), "{errors:?}");
}

#[test]
fn parse_config_body_gives_the_sections() {
    let sections = parse_config_body(README_FALLBACK).unwrap();
    assert_eq!(sections.keys().collect::<Vec<_>>(), ["dump", "logger", "policy"]);
    assert_eq!(sections["policy"], json!({ "Active": "topology-aware", "ReservedResources": { "CPU": "750m" } }));
    assert_eq!(
        sections["dump"],
        json!({ "Config": "off:.*,full:((Create)|(Remove)|(Run)|(Update)|(Start)|(Stop)).*" })
    );
    assert_eq!(parse_config_body("{}"), Err(ConfigBodyError::Empty));
    assert_eq!(parse_config_body(""), Err(ConfigBodyError::Empty));
    assert_eq!(parse_config_body("3"), Err(ConfigBodyError::NotAMapping("a number")));
}

#[test]
fn policies_are_typed_one_per_name() {
    let names: Vec<&str> = Policy::ALL.iter().map(|policy| policy.as_str()).collect();
    assert_eq!(names, POLICIES);
    for policy in Policy::ALL {
        assert_eq!(Policy::from_name(policy.as_str()), Some(policy));
    }
    assert_eq!(Policy::from_name("null"), None);
    assert_eq!(Policy::from_name("Topology-Aware"), None);
}

#[test]
fn a_valid_body_comes_parsed_with_its_policy() {
    let body = validate_config_body(SAMPLE_DEFAULT, &root()).unwrap();
    assert_eq!(body.text(), SAMPLE_DEFAULT);
    assert_eq!(body.sections(), &parse_config_body(SAMPLE_DEFAULT).unwrap());
    assert_eq!(body.active_policy(), Some(Policy::TopologyAware));
    let memtier = validate_config_body("policy:\n  Active: memtier\n", &root()).unwrap();
    assert_eq!(memtier.active_policy(), Some(Policy::Memtier), "an alias stays as written");
    let no_policy = validate_config_body("logger:\n  Debug: cache\n", &root()).unwrap();
    assert_eq!(no_policy.active_policy(), None);
    let built = ConfigBody::with_policy(Policy::Balloons);
    assert_eq!(built, validate_config_body("policy:\n  Active: balloons\n", &root()).unwrap(), "built = parsed");
}
