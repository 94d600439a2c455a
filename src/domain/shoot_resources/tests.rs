//! Tests of [`super`].

use super::*;
use crate::apis::config::ProviderConfig;
use crate::domain::configs::{BUILTIN_CONFIG, merge};
use crate::domain::images::ImageVector;
use crate::domain::validation::{FieldPath, validate_config_body};
use serde_json::json;

/// A body as validation gives it.
fn body(text: &str) -> ConfigBody {
    validate_config_body(text, &FieldPath::new("test")).unwrap()
}

fn merged(entries: &[(&str, &str)]) -> MergedConfigs {
    let base = entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    merge(&base, None::<&ProviderConfig>).unwrap()
}

fn pools(names: &[&str]) -> Vec<String> {
    strings(names)
}

fn images() -> ExtensionImages {
    ImageVector::embedded().unwrap().extension_images("1.20.0").unwrap()
}

fn managed_labels(app: &str) -> Value {
    json!({"app.kubernetes.io/name": app, "app.kubernetes.io/managed-by": "gardener-extension-cri-resmgr"})
}

/// Every key of a JSON value, recursively, with its path.
fn keys(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push((path.to_owned(), k.clone()));
                keys(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, &format!("{path}[]"), out)),
        _ => {}
    }
}

/// Fields Kubernetes 1.20 does not know (pod, container, probe, volume, DaemonSet, affinity level). A 1.20
/// apiserver would drop or reject them.
const NEWER_THAN_1_20: &[&str] = &[
    "os",
    "hostUsers",
    "schedulingGates",
    "resourceClaims",
    "resizePolicy",
    "restartPolicy",
    "appArmorProfile",
    "grpc",
    "terminationGracePeriodSeconds",
    "maxSurge",
    "matchLabelKeys",
    "mismatchLabelKeys",
    "claims",
    "recursiveReadOnly",
    "supplementalGroupsPolicy",
    "seLinuxChangePolicy",
    "sleep",
    "stopSignal",
    "minDomains",
    "nodeAffinityPolicy",
    "nodeTaintsPolicy",
];

fn assert_nothing_newer_than_1_20(object: &Value) {
    let mut all = Vec::new();
    keys(object, "", &mut all);
    for (path, key) in &all {
        assert!(!NEWER_THAN_1_20.contains(&key.as_str()), "{path}.{key} is newer than Kubernetes 1.20");
    }
    assert!(object.pointer("/spec/template/spec/resources").is_none(), "pod-level resources are 1.32+");
}

#[test]
fn agent_rbac_is_least_privilege() {
    let role = serde_json::to_value(agent_cluster_role()).unwrap();
    assert_eq!(
        role,
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "extensions.gardener.cloud:cri-resmgr:agent", "labels": managed_labels(AGENT_NAME)},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch"]},
                {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]},
            ],
        })
    );
    let role = serde_json::to_value(agent_role()).unwrap();
    assert_eq!(
        role["rules"],
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["criresmgr.intel.com"], "resources": ["adjustments"], "verbs": ["get", "list", "watch", "patch"]},
        ])
    );
    assert_eq!(role["metadata"]["namespace"], "kube-system");
    let subject = json!([{"kind": "ServiceAccount", "name": "cri-resmgr-agent", "namespace": "kube-system"}]);
    let binding = serde_json::to_value(agent_cluster_role_binding()).unwrap();
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": AGENT_RBAC_NAME})
    );
    assert_eq!(binding["subjects"], subject);
    let binding = serde_json::to_value(agent_role_binding()).unwrap();
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AGENT_RBAC_NAME})
    );
    assert_eq!(binding["subjects"], subject);
    assert_eq!(binding["metadata"]["namespace"], "kube-system");
    let sa = serde_json::to_value(agent_service_account()).unwrap();
    assert_eq!(
        sa["metadata"],
        json!({"name": "cri-resmgr-agent", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)})
    );
}

#[test]
fn config_maps_split_the_configuration_per_section() {
    let config = "policy:\n  Active: topology-aware\n  ReservedResources:\n    CPU: 750m\n  topology-aware:\n    PinCPU: true\nlogger:\n  Debug: resource-manager,cache\ndump:\n  Config: off:.*,full:((Create)|(Remove)).*\n";
    let config_map =
        serde_json::to_value(agent_config_map("cri-resmgr-config.default", &body(config)).unwrap()).unwrap();
    assert_eq!(
        config_map,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cri-resmgr-config.default", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)},
            "data": {
                "policy": "Active: topology-aware\nReservedResources:\n  CPU: 750m\ntopology-aware:\n  PinCPU: true\n",
                "logger": "Debug: resource-manager,cache\n",
                "dump": "Config: off:.*,full:((Create)|(Remove)).*\n",
            },
        })
    );
}

#[test]
fn section_values_keep_their_types() {
    // Strings that YAML 1.1 (cri-resmgr's Go decoder) would read as something else stay quoted.
    let config =
        "policy:\n  Active: \"none\"\nlogger:\n  Debug: \"on\"\n  LogSource: true\ninstrumentation:\n  Sampling: 0.5\n";
    let data = agent_config_map("x", &body(config)).unwrap().data.unwrap();
    assert_eq!(data["logger"], "Debug: \"on\"\nLogSource: true\n");
    assert_eq!(data["instrumentation"], "Sampling: 0.5\n");
    for (section, text) in &data {
        let back: Value = crate::yaml::from_str(text).unwrap();
        assert_eq!(&back, &crate::domain::validation::parse_config_body(config).unwrap()[section]);
    }
}

#[test]
fn the_default_config_map_always_exists() {
    let names = |m: &MergedConfigs| -> Vec<String> {
        agent_config_maps(m).unwrap().into_iter().map(|c| c.metadata.name.unwrap()).collect()
    };
    let data = |m: &MergedConfigs| agent_config_maps(m).unwrap()[0].data.clone().unwrap();

    let builtin = merged(&[("force", "policy:\n  Active: static\n"), ("EXTRA_OPTIONS", "--disable-ui")]);
    assert_eq!(names(&builtin), ["cri-resmgr-config.default"], "force/EXTRA_OPTIONS are not agent ConfigMaps");
    assert_eq!(data(&builtin)["policy"], "Active: none\n");
    assert_eq!(BUILTIN_CONFIG, "policy:\n  Active: none\n");

    let fallback = merged(&[("fallback", "policy:\n  Active: balloons\n")]);
    assert_eq!(names(&fallback), ["cri-resmgr-config.default"], "fallback is a node file, and the default");
    assert_eq!(data(&fallback)["policy"], "Active: balloons\n");

    let all = merged(&[
        ("fallback", "policy:\n  Active: balloons\n"),
        ("default", "policy:\n  Active: topology-aware\n"),
        ("group.fast", "policy:\n  Active: static\n"),
        ("group.a", "policy:\n  Active: podpools\n"),
        ("node.worker-1", "policy:\n  Active: static-pools\n"),
    ]);
    assert_eq!(
        names(&all),
        [
            "cri-resmgr-config.default",
            "cri-resmgr-config.group.a",
            "cri-resmgr-config.group.fast",
            "cri-resmgr-config.node.worker-1"
        ]
    );
    assert_eq!(data(&all)["policy"], "Active: topology-aware\n");
    assert_eq!(agent_config_maps(&all).unwrap()[3].data.as_ref().unwrap()["policy"], "Active: static-pools\n");
}

#[test]
fn an_invalid_body_never_becomes_a_config_map() {
    // A ConfigMap is built from a parsed body only, and only validation parses: an invalid text is stopped there,
    // with its field path, and never reaches the shoot.
    let path = FieldPath::new("configs").key("node.a");
    let errors = validate_config_body("", &path).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with(r#"configs["node.a"]: Required value"#), "{}", errors[0]);
}

#[test]
fn agent_daemonset_runs_the_agent_on_the_selected_pools() {
    let image = images().agent.reference;
    let ds = serde_json::to_value(agent_daemonset(&image, &pools(&["b-pool", "a-pool", "b-pool"]))).unwrap();
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(
        ds["metadata"],
        json!({"name": "cri-resmgr-agent", "namespace": "kube-system", "labels": managed_labels(AGENT_NAME)})
    );
    assert_eq!(ds["spec"]["selector"], json!({"matchLabels": {"app.kubernetes.io/name": "cri-resmgr-agent"}}));
    assert_eq!(ds["spec"]["template"]["metadata"]["labels"], managed_labels(AGENT_NAME));
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "cri-resmgr-agent");
    assert_eq!(pod["priorityClassName"], "gardener-shoot-system-700");
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(
        pod["affinity"],
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "worker.gardener.cloud/pool", "operator": "In", "values": ["a-pool", "b-pool"]}]}
        ]}}})
    );
    assert_eq!(pod["securityContext"], json!({"seccompProfile": {"type": "RuntimeDefault"}}));
    assert!(pod.get("hostPID").is_none() && pod.get("hostNetwork").is_none() && pod.get("hostIPC").is_none());
    assert_eq!(
        pod["volumes"],
        json!([{"name": "cri-resmgr-sockets", "hostPath": {"path": "/var/run/cri-resmgr", "type": "DirectoryOrCreate"}}])
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "docker.io/intel/cri-resmgr-agent:v0.9.2");
    assert_eq!(c["env"], json!([{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]));
    assert_eq!(c["volumeMounts"], json!([{"name": "cri-resmgr-sockets", "mountPath": "/var/run/cri-resmgr"}]));
    assert_eq!(c["livenessProbe"]["exec"]["command"], json!(["/bin/cri-resmgr-agent-probe"]));
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        json!(["/bin/cri-resmgr-agent-probe", "-query", "config-status"])
    );
    assert_eq!(c["resources"], json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}));
    assert_eq!(
        c["securityContext"],
        json!({
            "runAsUser": 0, "runAsNonRoot": false, "privileged": false, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true,
        })
    );
    assert_nothing_newer_than_1_20(&ds);
}

#[test]
fn no_selected_pool_means_no_node() {
    let ds = serde_json::to_value(agent_daemonset("i", &[])).unwrap();
    assert_eq!(
        ds.pointer(
            "/spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"
        ),
        Some(&json!([{"matchExpressions": [
            {"key": "worker.gardener.cloud/pool", "operator": "Exists"},
            {"key": "worker.gardener.cloud/pool", "operator": "DoesNotExist"},
        ]}]))
    );
}

/// Every schema node is structural: it has a type (or is int-or-string), and no node has both `properties`
/// and `additionalProperties`.
fn assert_structural(schema: &JSONSchemaProps, path: &str) {
    assert!(schema.type_.is_some() || schema.x_kubernetes_int_or_string == Some(true), "{path} has no type");
    assert!(!(schema.properties.is_some() && schema.additional_properties.is_some()), "{path}");
    for (name, child) in schema.properties.iter().flatten() {
        assert_structural(child, &format!("{path}.{name}"));
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = &schema.additional_properties {
        assert_structural(values, &format!("{path}{{}}"));
    }
}

#[test]
fn adjustment_crd_matches_upstream_and_kubernetes_1_20() {
    let crd = adjustment_crd();
    assert_eq!(crd.metadata.name.as_deref(), Some(format!("{ADJUSTMENT_PLURAL}.{ADJUSTMENT_GROUP}").as_str()));
    assert_eq!(crd.spec.group, "criresmgr.intel.com");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "Adjustment");
    assert_eq!(crd.spec.versions.len(), 1);
    let version = &crd.spec.versions[0];
    assert_eq!((version.name.as_str(), version.served, version.storage), ("v1alpha1", true, true));
    assert!(version.subresources.is_none(), "the agent patches status on the main resource");
    let schema = version.schema.as_ref().unwrap().open_api_v3_schema.as_ref().unwrap();
    assert_structural(schema, "");
    let value = serde_json::to_value(schema).unwrap();
    assert_eq!(value["required"], json!(["spec"]));
    let spec = &value["properties"]["spec"];
    assert_eq!(spec["required"], json!(["scope"]));
    let scope = &spec["properties"]["scope"]["items"]["properties"];
    assert_eq!(scope["nodes"], json!({"type": "array", "items": {"type": "string"}}));
    assert_eq!(
        scope["containers"]["items"]["properties"],
        json!({"key": {"type": "string"}, "operator": {"type": "string"}, "values": {"type": "array", "items": {"type": "string"}}})
    );
    let quantity = json!({"x-kubernetes-int-or-string": true});
    assert_eq!(
        spec["properties"]["resources"]["properties"]["limits"]["properties"],
        json!({"cpu": quantity, "memory": quantity})
    );
    assert_eq!(
        spec["properties"]["resources"]["properties"]["requests"]["properties"],
        json!({"cpu": quantity, "memory": quantity})
    );
    assert_eq!(
        spec["properties"]["classes"]["properties"],
        json!({"rdt": {"type": "string"}, "blockio": {"type": "string"}})
    );
    assert_eq!(spec["properties"]["toptierLimit"], quantity);
    assert_eq!(
        value["properties"]["status"],
        json!({"type": "object", "properties": {"nodes": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"errors": {"type": "object", "additionalProperties": {"type": "string"}}}
        }}}})
    );
    let crd = serde_json::to_value(&crd).unwrap();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    let mut all = Vec::new();
    keys(&crd, "", &mut all);
    for (path, key) in all {
        assert!(!["x-kubernetes-validations", "selectableFields", "default"].contains(&key.as_str()), "{path}.{key}");
    }
}

#[test]
fn shoot_objects_are_complete_and_ordered() {
    let config = merged(&[("node.n1", "policy:\n  Active: static\n"), ("group.g", "policy:\n  Active: none\n")]);
    let objects = shoot_objects(&config, &images(), &pools(&["p"])).unwrap();
    let ids: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            "CustomResourceDefinition/adjustments.criresmgr.intel.com",
            "ServiceAccount/cri-resmgr-agent",
            "ClusterRole/extensions.gardener.cloud:cri-resmgr:agent",
            "ClusterRoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
            "Role/extensions.gardener.cloud:cri-resmgr:agent",
            "RoleBinding/extensions.gardener.cloud:cri-resmgr:agent",
            "ConfigMap/cri-resmgr-config.default",
            "ConfigMap/cri-resmgr-config.group.g",
            "ConfigMap/cri-resmgr-config.node.n1",
            "DaemonSet/cri-resmgr-agent",
        ]
    );
    for object in &objects {
        assert_eq!(object["metadata"]["labels"], managed_labels(AGENT_NAME), "{object}");
    }
    assert_eq!(objects[9]["spec"]["template"]["spec"]["containers"][0]["image"], images().agent.reference);
    assert_eq!(objects, shoot_objects(&config, &images(), &pools(&["p"])).unwrap(), "deterministic");
}

#[test]
fn cleaner_daemonset_cleans_then_stays_ready() {
    let images = images();
    let objects = cleaner_objects(&images, &pools(&["p2", "p1"])).unwrap();
    assert_eq!(objects.len(), 1);
    let ds = &objects[0];
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(
        ds["metadata"],
        json!({"name": "cri-resmgr-cleaner", "namespace": "kube-system", "labels": managed_labels(CLEANER_NAME)})
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["priorityClassName"], "gardener-shoot-system-700");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"]
            [0]["values"],
        json!(["p1", "p2"])
    );
    assert!(pod.get("hostPID").is_none(), "waiting for the unit file needs no host PID namespace");
    assert_eq!(pod["volumes"], json!([{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}]));

    let init = &pod["initContainers"][0];
    assert_eq!(init["image"], "docker.io/library/alpine:3.20");
    assert_eq!(init["command"], json!(["sh", "-c", CLEANER_SCRIPT]));
    assert_eq!(init["volumeMounts"], json!([{"name": "host-root", "mountPath": "/host"}]));
    let env: BTreeMap<String, String> = init["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from(
            [
                ("HOST_ROOT", "/host"),
                ("UNIT_FILE", "/etc/systemd/system/cri-resource-manager.service"),
                ("BINARY", "/opt/intel/bin/cri-resmgr"),
                ("STATE_DIR", "/var/lib/cri-resmgr"),
                ("SOCKET_DIR", "/var/run/cri-resmgr"),
                ("PID_FILE", "/var/run/cri-resmgr.pid"),
                ("CONFIG_DIR", "/etc/cri-resmgr"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        )
    );
    assert_eq!(init["securityContext"]["capabilities"], json!({"add": ["SYS_CHROOT"], "drop": ["ALL"]}));
    assert_eq!(init["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(init["securityContext"]["privileged"], false);

    let pause = &pod["containers"][0];
    assert_eq!(pause["image"], "registry.k8s.io/pause:3.10");
    assert_eq!(pause["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["containers"].as_array().unwrap().len(), 1);
    assert_nothing_newer_than_1_20(ds);
}

#[test]
fn the_cleaner_script_uses_every_variable_it_is_given_and_no_literal_node_path() {
    assert!(CLEANER_SCRIPT.contains("set -eu"));
    for variable in cleaner_env() {
        assert!(CLEANER_SCRIPT.contains(&format!("${}", variable.name)), "{} unused", variable.name);
    }
    for path in [NODE_BINARY_PATH, NODE_STATE_DIR, NODE_SOCKET_DIR, NODE_CONFIG_DIR, UNIT_NAME] {
        assert!(!CLEANER_SCRIPT.contains(path), "{path} is spelled in the script");
    }
}

/// A fake host root with cri-resmgr's state, and the cleaner script made to run against it: without chroot,
/// `host CMD ARGS` runs CMD with every absolute argument moved under the fake root.
fn fake_host() -> (tempfile::TempDir, std::process::Command) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap().to_owned();
    for dir in [NODE_STATE_DIR, NODE_SOCKET_DIR, NODE_CONFIG_DIR, "/opt/intel/bin", NODE_SYSTEMD_UNIT_DIR] {
        std::fs::create_dir_all(format!("{r}{dir}")).unwrap();
    }
    std::fs::write(format!("{r}{NODE_STATE_DIR}/cache"), "{}").unwrap();
    std::fs::write(format!("{r}{NODE_SOCKET_DIR}/cri-resmgr.sock"), "").unwrap();
    std::fs::write(format!("{r}{NODE_PID_FILE}"), "1").unwrap();
    std::fs::write(format!("{r}{NODE_CONFIG_DIR}/unrelated.cfg"), "keep").unwrap();
    let script = CLEANER_SCRIPT.replace(
        "host() { chroot \"$HOST_ROOT\" \"$@\"; }",
        "host() { cmd=$1; shift; for a; do case $a in /*) set -- \"$@\" \"$HOST_ROOT$a\";; *) set -- \"$@\" \"$a\";; esac; \
         shift; done; \"$cmd\" \"$@\"; }",
    );
    assert_ne!(script, CLEANER_SCRIPT, "the host() line changed; update this test");
    let mut command = std::process::Command::new("sh");
    command.arg("-c").arg(&script).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    for variable in cleaner_env() {
        let value = if variable.name == "HOST_ROOT" { r.clone() } else { variable.value.unwrap() };
        command.env(variable.name, value);
    }
    (root, command)
}

fn exists(root: &tempfile::TempDir, path: &str) -> bool {
    root.path().join(path.trim_start_matches('/')).exists()
}

#[test]
fn the_cleaner_script_removes_the_state_and_is_idempotent() {
    let (root, mut command) = fake_host();
    for _ in 0..2 {
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert!(String::from_utf8_lossy(&output.stdout).contains("cri-resmgr node state removed"));
    }
    assert!(!exists(&root, NODE_STATE_DIR));
    assert!(!exists(&root, NODE_SOCKET_DIR));
    assert!(!exists(&root, NODE_PID_FILE));
    assert!(!exists(&root, "/opt/intel"), "empty directories are removed");
    assert!(exists(&root, &format!("{NODE_CONFIG_DIR}/unrelated.cfg")), "non-empty directories are kept");
}

#[test]
fn the_cleaner_script_leaves_the_state_alone_while_the_unit_exists() {
    let (root, mut command) = fake_host();
    let unit = root.path().join(NODE_SYSTEMD_UNIT_DIR.trim_start_matches('/')).join(UNIT_NAME);
    std::fs::write(&unit, "[Service]\n").unwrap();
    let mut child = command.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "still waiting");
    assert!(exists(&root, &format!("{NODE_STATE_DIR}/cache")), "state untouched while cri-resmgr may run");
    std::fs::remove_file(&unit).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("waiting for gardener-node-agent"));
    assert!(!exists(&root, NODE_STATE_DIR));
}
