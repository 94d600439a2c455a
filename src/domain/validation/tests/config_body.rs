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

/// The configuration samples of cri-resource-manager v0.9.2 (`sample-configs/*.cfg` and the ConfigMap example),
/// reduced to their keys and values: cri-resmgr accepts every one of them, so must we.
const CRI_RESMGR_SAMPLES: &[(&str, &str)] = &[
    (
        "balloons-policy.cfg",
        "policy:
  Active: balloons
  AvailableResources:
    CPU: cpuset:1-15
  ReservedResources:
    CPU: cpuset:15
  balloons:
    PinCPU: true
    PinMemory: true
    IdleCPUClass: idle
    BalloonTypes:
      - Name: \"full-core-turbo\"
        MinCPUs: 2
        MaxCPUs: 2
        CPUClass: \"turbo\"
        Namespaces:
          - \"highperf\"
        AllocatorPriority: 2
        MinBalloons: 2
        PreferNewBalloons: true
        PreferPerNamespaceBalloon: false
        PreferSpreadingPods: false
      - Name: \"socket-size\"
        MaxCPUs: 8
        AllocatorPriority: 2
        Namespaces:
          - \"default\"
        CPUClass: \"normal\"
cpu:
  classes:
    default:
      minFreq: 800
      maxFreq: 1600
    turbo:
      minFreq: 3300
      maxFreq: 3600
    normal:
      minFreq: 800
      maxFreq: 2400
instrumentation:
  HTTPEndpoint: :8891
  PrometheusExport: true
logger:
  Debug: policy
",
    ),
    (
        "blockio.cfg",
        "policy:
  Active: none
logger:
  Debug: blockio,cgroupblkio
blockio:
  Classes:
    LowPrioThrottled:
      - Weight: 80
      - Devices:
          - /dev/vd*
          - /dev/sd*
        ThrottleReadBps: 50M
        ThrottleWriteBps: 10M
        ThrottleReadIOPS: 10k
        ThrottleWriteIOPS: 5k
        Weight: 50
      - Devices:
          - /dev/disk/by-id/*SSD*
        ThrottleReadBps: 100M
        ThrottleWriteBps: 40M
        Weight: 50
    HighPrioFullSpeed:
      - Weight: 400
    BestEffort:
      - Weight: 90
    Guaranteed:
      - Weight: 200
",
    ),
    ("cri-full-message-dump.cfg", "policy:\n  Active: none\ndump:\n  Config: full:.*\n"),
    (
        "podpools-policy.cfg",
        "policy:
  Active: podpools
  AvailableResources:
    CPU: cpuset:2-15
  ReservedResources:
    CPU: cpuset:15
  podpools:
    Pools:
      - Name: singlecpu
        Instances: 3 CPUs
        CPU: 1
        MaxPods: 2
      - Name: dualcpu
        FillOrder: Packed
        Instances: 50 %
        CPU: 2
        MaxPods: 3
logger:
  Debug: policy
",
    ),
    (
        "static-policy.cfg",
        "policy:
  Active: static
  ReservedResources:
    CPU: 1000m
logger:
  Debug: policy,static
dump:
  Config: off:.*,full:((Create)|(Remove)|(Run)|(Update)|(Start)|(Stop)).*
",
    ),
    (
        "topology-aware-policy.cfg",
        "policy:
  Active: topology-aware
  ReservedResources:
    CPU: 750m
logger:
  Debug: cri-resmgr,resource-manager,cache
dump:
  Config: off:.*,full:((Create)|(Start)|(Run)|(Update)|(Stop)|(Remove)).*
",
    ),
    ("cri-resmgr-configmap.example.yaml", SAMPLE_DEFAULT),
    ("the original README's fallback", README_FALLBACK),
];

#[test]
fn every_cri_resmgr_sample_config_is_accepted() {
    for (name, text) in CRI_RESMGR_SAMPLES {
        assert_eq!(check(configs("default", text)), Vec::<String>::new(), "sample {name}");
    }
}

#[test]
fn the_schema_is_data_for_cri_resmgr_0_9_2_and_covers_every_section() {
    let schema = crate::domain::validation::config_body::schema().expect("the embedded schema parses");
    assert_eq!(schema.version, "v0.9.2");
    let top: Vec<&str> = schema.modules[""].children.iter().map(String::as_str).collect();
    let mut sections = CONFIG_SECTIONS.to_vec();
    sections.sort_unstable();
    assert_eq!(top, sections, "the top-level sections are the schema's top-level modules");
    assert!(schema.modules["resource-manager"].options.is_empty(), "a parent-only module takes no keys");
    for policy in ["topology-aware", "memtier", "static", "static-pools", "podpools", "balloons", "dynamic-pools"] {
        assert!(schema.modules["policy"].children.contains(policy), "policy.{policy}");
    }
}

#[test]
fn options_cri_resmgr_accepts_pass_in_every_form_it_accepts() {
    let accepted = [
        // a sub-module given nested, or as a dotted key inside its parent
        "policy:\n  Active: balloons\n  balloons.PinCPU: true\n  balloons:\n    PinMemory: false\n",
        // below a module's own keys cri-resmgr matches Go struct fields case-insensitively and ignores unknown ones
        "policy:\n  Active: balloons\n  balloons:\n    BalloonTypes:\n    - name: x\n      cpuclass: y\n      Whatever: 1\n",
        // a constraint's resource name in any case, as a number or a string
        "policy:\n  ReservedResources:\n    cpu: 2\n  AvailableResources:\n    Cpu: cpuset:0-3\n",
        // null is accepted for every option
        "logger:\n  Debug:\n  LogSource: null\n",
        // free-form maps of user-chosen names
        "rdt:\n  options:\n    l3:\n      optional: true\n  partitions:\n    p0:\n      classes:\n        Gold: {}\n",
        "resource-manager:\n  control:\n    Controllers:\n      rdt: disabled\n    page-migration:\n      PageScanInterval: 30s\n      MaxPageMoveCount: 100\n",
        "dump:\n  Debug: yes\n",
        // sigs.k8s.io/yaml, which cri-resmgr decodes options with, turns numbers and booleans into strings where the
        // option is a string (or a list of strings)
        "dump:\n  File: 1\n  Config: off\n",
        "policy:\n  Active: topology-aware\n  topology-aware:\n    ReservedPoolNamespaces: [123, yes]\n",
    ];
    for text in accepted {
        assert_eq!(check(configs("default", text)), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_denied_at_their_path_with_a_suggestion() {
    let policy_keys = r#""Active", "AvailableResources", "ReservedResources", "balloons", "dynamic-pools", "memtier", "podpools", "static", "static-pools", "topology-aware""#;
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "typo in policy",
            "policy:\n  Activ: none\n",
            vec![format!(
                r#"{P}.configs["default"].policy.Activ: Unsupported value: "Activ": did you mean "Active"? cri-resmgr v0.9.2 rejects unknown keys; supported keys in "policy": {policy_keys}"#
            )],
        ),
        (
            "wrong case (cri-resmgr matches a module's keys exactly)",
            "policy:\n  active: none\n",
            vec![format!(
                r#"{P}.configs["default"].policy.active: Unsupported value: "active": did you mean "Active"? cri-resmgr v0.9.2 rejects unknown keys; supported keys in "policy": {policy_keys}"#
            )],
        ),
        (
            "typo in a policy's module",
            "policy:\n  Active: topology-aware\n  topology-aware:\n    PinCPUs: true\n",
            vec![format!(
                r#"{P}.configs["default"].policy.topology-aware.PinCPUs: Unsupported value: "PinCPUs": did you mean "PinCPU"? cri-resmgr v0.9.2 rejects unknown keys; supported keys in "policy.topology-aware": "ColocateNamespaces", "ColocatePods", "PinCPU", "PinMemory", "PreferIsolatedCPUs", "PreferSharedCPUs", "ReservedPoolNamespaces""#
            )],
        ),
        (
            "typo in a dotted key",
            "policy:\n  baloons.PinCPU: true\n",
            vec![format!(
                r#"{P}.configs["default"].policy.baloons.PinCPU: Unsupported value: "baloons": did you mean "balloons"? cri-resmgr v0.9.2 rejects unknown keys; supported keys in "policy": {policy_keys}"#
            )],
        ),
        (
            "a policy without options",
            "policy:\n  static-plus:\n    X: 1\n",
            vec![format!(
                r#"{P}.configs["default"].policy.static-plus: Unsupported value: "static-plus": cri-resmgr v0.9.2 rejects unknown keys; supported keys in "policy": {policy_keys}"#
            )],
        ),
        (
            "a key of a parent-only module",
            "resource-manager:\n  Controllers: {}\n",
            vec![format!(
                r#"{P}.configs["default"].resource-manager.Controllers: Unsupported value: "Controllers": cri-resmgr v0.9.2 rejects unknown keys; supported keys in "resource-manager": "control""#
            )],
        ),
        (
            "dotted and nested at once",
            "policy:\n  balloons.PinCPU: true\n  balloons:\n    PinCPU: false\n",
            vec![format!(
                r#"{P}.configs["default"].policy.balloons.PinCPU: Duplicate value: "balloons.PinCPU": "PinCPU" is also given nested inside "balloons:"; give it once"#
            )],
        ),
        (
            "a sub-module that is not a mapping",
            "policy:\n  balloons: true\n",
            vec![format!(
                r#"{P}.configs["default"].policy.balloons: Invalid value: must be a mapping of the "policy.balloons" options, got a boolean"#
            )],
        ),
        (
            "a quoted boolean",
            "policy:\n  topology-aware:\n    PinCPU: \"true\"\n",
            vec![format!(
                r#"{P}.configs["default"].policy.topology-aware.PinCPU: Invalid value: must be true or false (without quotes), got a string"#
            )],
        ),
        (
            "a constraint that is a boolean",
            "policy:\n  ReservedResources:\n    CPU: true\n",
            vec![format!(
                r#"{P}.configs["default"].policy.ReservedResources.CPU: Invalid value: must be a string or a number (e.g. "750m", "cpuset:0-1" or 2), got a boolean"#
            )],
        ),
        (
            "a constraint on another resource",
            "policy:\n  ReservedResources:\n    memory: 1G\n",
            vec![format!(
                r#"{P}.configs["default"].policy.ReservedResources.memory: Unsupported value: "memory": supported values: "CPU""#
            )],
        ),
        (
            "a list item of the wrong type",
            "policy:\n  balloons:\n    ReservedPoolNamespaces: [kube-system, {a: b}]\n",
            vec![format!(
                r#"{P}.configs["default"].policy.balloons.ReservedPoolNamespaces[1]: Invalid value: must be a string, got a mapping"#
            )],
        ),
        (
            "a negative count",
            "resource-manager:\n  control:\n    page-migration:\n      MaxPageMoveCount: -1\n",
            vec![format!(
                r#"{P}.configs["default"].resource-manager.control.page-migration.MaxPageMoveCount: Invalid value: must be a whole number, not negative, got a number"#
            )],
        ),
        (
            "a duration without unit",
            "resource-manager:\n  control:\n    page-migration:\n      PageScanInterval: 30\n",
            vec![format!(
                r#"{P}.configs["default"].resource-manager.control.page-migration.PageScanInterval: Invalid value: must be a duration string such as "30s" or "5m", got a number"#
            )],
        ),
    ];
    for (name, text, want) in cases {
        assert_eq!(check(configs("default", text)), want, "case {name:?}");
    }
}

/// A body made of thousands of unknown keys gets a bounded denial: the first problems and a count of the rest.
#[test]
fn a_body_with_very_many_problems_gets_a_bounded_denial() {
    let text: String = (0..5000).map(|i| format!("  unknown{i}: 1\n")).collect();
    let errors = validate_config_body(&format!("policy:\n{text}"), &FieldPath::new("c")).unwrap_err();
    assert_eq!(errors.len(), MAX_ERRORS_PER_BODY + 1);
    assert_eq!(
        errors.last().map(ToString::to_string).as_deref(),
        Some("c: … and 4980 more problems in this configuration")
    );
}
