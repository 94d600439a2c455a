//! Properties of [`mutate`] over generated OperatingSystemConfigs: the reconcile fixture with its kubelet unit laid
//! out in many ways (section order, comments, separators, flags, endpoint given once, twice, not at all or foreign),
//! its kubelet config file in either encoding with or without `containerRuntimeEndpoint`, other units and files,
//! provision OSCs, and OSCs that already carry an earlier mutation; and plans with every kind of config.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::apis::extensions::{File, FileContent, OscPurpose};
use crate::constants::{
    CONTAINERD_SOCKET_ENDPOINT, KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT, KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT,
    RELAY_SOCKET_ENDPOINT,
};
use crate::domain::node::{command_line_arguments, kubelet_exec_start};

const FOREIGN_ENDPOINT: &str = "unix:///run/crio/crio.sock";

/// How kubelet's command line names its runtime endpoint.
#[derive(Debug, Clone)]
enum Endpoint {
    Containerd,
    Relay,
    Absent,
    Twice,
    Foreign,
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        6 => Just(Endpoint::Containerd),
        2 => Just(Endpoint::Relay),
        1 => Just(Endpoint::Absent),
        1 => Just(Endpoint::Twice),
        1 => Just(Endpoint::Foreign),
    ]
}

/// kubelet's `ExecStart=` value: the binary, flags from Gardener's kubelet unit in any order, the endpoint, the
/// extra args variable, joined by any of the separators systemd accepts (continuations included).
fn exec_start() -> impl Strategy<Value = String> {
    let flags = proptest::sample::subsequence(
        vec![
            "--bootstrap-kubeconfig=/var/lib/kubelet/kubeconfig-bootstrap",
            "--config=/var/lib/kubelet/config/kubelet",
            "--kubeconfig=/var/lib/kubelet/kubeconfig-real",
            "--node-labels=worker.gardener.cloud/pool=worker",
            "--runtime-cgroups=/system.slice/containerd.service",
            "--v=2",
        ],
        0..=6,
    )
    .prop_shuffle();
    let separator = select(vec![" ", " \\\n    ", "\t", " \\\n", "  "]);
    (flags, endpoint(), any::<prop::sample::Index>(), vec(separator, 10), any::<bool>()).prop_map(
        |(flags, endpoint, position, separators, extra_args)| {
            let mut arguments: Vec<String> = flags.into_iter().map(str::to_owned).collect();
            let flag = |value: &str| format!("{KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT}{value}");
            let at = position.index(arguments.len() + 1);
            match endpoint {
                Endpoint::Containerd => arguments.insert(at, flag(CONTAINERD_SOCKET_ENDPOINT)),
                Endpoint::Relay => arguments.insert(at, flag(RELAY_SOCKET_ENDPOINT)),
                Endpoint::Absent => {}
                Endpoint::Twice => {
                    arguments.insert(at, flag(CONTAINERD_SOCKET_ENDPOINT));
                    arguments.push(flag(CONTAINERD_SOCKET_ENDPOINT));
                }
                Endpoint::Foreign => arguments.insert(at, flag(FOREIGN_ENDPOINT)),
            }
            if extra_args {
                arguments.push("$KUBELET_EXTRA_ARGS".to_owned());
            }
            let mut line = "/opt/bin/kubelet".to_owned();
            for (argument, separator) in arguments.iter().zip(separators.iter().cycle()) {
                line.push_str(separator);
                line.push_str(argument);
            }
            line
        },
    )
}

/// The whole kubelet unit: its sections in any order, with or without comments and blank lines.
fn kubelet_unit() -> impl Strategy<Value = String> {
    let order = Just(vec![0, 1, 2]).prop_shuffle();
    (exec_start(), order, any::<bool>(), any::<bool>()).prop_map(|(exec_start, order, comments, blank_lines)| {
        let comment = if comments { "# managed by gardener-node-agent\n; and by nobody else\n" } else { "" };
        let sections = [
            "[Unit]\nDescription=kubelet daemon\nAfter=containerd.service\n".to_owned(),
            "[Install]\nWantedBy=multi-user.target\n".to_owned(),
            format!("[Service]\nRestart=always\n{comment}EnvironmentFile=/etc/environment\nExecStart={exec_start}\n"),
        ];
        let separator = if blank_lines { "\n" } else { "" };
        order.iter().map(|&i| sections[i].as_str()).collect::<Vec<_>>().join(separator)
    })
}

/// The KubeletConfiguration: with or without `containerRuntimeEndpoint`, quoted in any YAML way.
fn kubelet_config() -> impl Strategy<Value = String> {
    let endpoint = prop_oneof![
        Just(Some(CONTAINERD_SOCKET_ENDPOINT)),
        Just(Some(RELAY_SOCKET_ENDPOINT)),
        Just(Some(FOREIGN_ENDPOINT)),
        Just(None),
    ];
    let quote = select(vec!["", "'", "\""]);
    (endpoint, quote, any::<bool>()).prop_map(|(endpoint, quote, comment)| {
        let mut text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n".to_owned();
        if comment {
            text.push_str(&format!("# kubelet talks to {CONTAINERD_SOCKET_ENDPOINT}\n"));
        }
        if let Some(endpoint) = endpoint {
            text.push_str(&format!("{KUBELET_CONFIG_CONTAINER_RUNTIME_ENDPOINT}: {quote}{endpoint}{quote}\n"));
        }
        text.push_str("clusterDNS:\n- 10.0.0.10\n");
        text
    })
}

/// A plan in words: the shoot's configs (key, text) and the group the pool names, if any.
type PlanSpec = (Vec<(&'static str, &'static str)>, Option<&'static str>);

/// A plan: which configs the shoot has and whether the pool names a group.
fn configs_and_group() -> impl Strategy<Value = PlanSpec> {
    let configs = prop_oneof![
        Just(vec![("fallback", TOPOLOGY)]),
        Just(vec![("default", BALLOONS)]),
        Just(vec![("fallback", TOPOLOGY), ("force", STATIC), ("EXTRA_OPTIONS", "--metrics-interval=10s")]),
        Just(vec![("default", NO_POLICY), ("group.fast", PODPOOLS), ("node.a", BALLOONS)]),
    ];
    (configs, proptest::option::of(select(vec!["fast", "slow"])))
}

/// What the generated OSC looks like before the mutation under test.
#[derive(Debug, Clone)]
struct Generated {
    osc: OperatingSystemConfig,
    /// An earlier plan already applied (the OSC as gardenlet got it back from the webhook before).
    earlier: Option<PlanSpec>,
}

fn osc() -> impl Strategy<Value = Generated> {
    let config_file = proptest::option::weighted(0.8, (kubelet_config(), any::<bool>()));
    let extra_unit = proptest::option::of(select(vec!["containerd.service", "cloud-config-downloader.service"]));
    (
        proptest::option::weighted(0.9, kubelet_unit()),
        config_file,
        extra_unit,
        prop_oneof![9 => Just(OscPurpose::Reconcile), 1 => Just(OscPurpose::Provision)],
        proptest::option::weighted(0.3, configs_and_group()),
    )
        .prop_map(|(kubelet_unit, config_file, extra_unit, purpose, earlier)| {
            let mut osc = reconcile_osc();
            osc.spec.purpose = purpose;
            match kubelet_unit {
                Some(content) => osc.spec.unit_mut(KUBELET_UNIT_NAME).expect("kubelet").content = Some(content),
                None => osc.spec.units.retain(|unit| unit.name != KUBELET_UNIT_NAME),
            }
            match config_file {
                Some((text, base64)) => {
                    let encoding = if base64 { "b64" } else { "" };
                    let data = if base64 {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD.encode(&text)
                    } else {
                        text
                    };
                    osc.spec.file_mut(KUBELET_CONFIG_PATH).expect("config").content.inline =
                        Some(FileContentInline { encoding: encoding.to_owned(), data });
                }
                None => osc.spec.files.retain(|file| file.path != KUBELET_CONFIG_PATH),
            }
            if let Some(name) = extra_unit {
                osc.spec.units.push(Unit { name: name.to_owned(), ..Unit::default() });
                osc.spec.files.push(File {
                    path: format!("/etc/systemd/system/{name}.d/override.conf"),
                    content: FileContent {
                        inline: Some(FileContentInline { encoding: String::new(), data: "[Service]\n".to_owned() }),
                        ..FileContent::default()
                    },
                    ..File::default()
                });
            }
            if let Some((configs, group)) = &earlier {
                let merged = merged(configs);
                osc = mutate(&osc, Some(&plan(&merged, *group))).osc;
            }
            Generated { osc, earlier }
        })
}

fn has_endpoint_flag(osc: &OperatingSystemConfig) -> bool {
    kubelet_exec_start(osc).is_some_and(|line| {
        command_line_arguments(&line).iter().any(|a| a.starts_with(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT))
    })
}

/// `after`'s kubelet unit differs from `before`'s only in the value of `--container-runtime-endpoint=` tokens, or
/// by one such token appended to a command line that had none; every other byte of the unit is the same.
fn assert_only_the_endpoint_changed(
    before: &OperatingSystemConfig,
    after: &OperatingSystemConfig,
) -> Result<(), TestCaseError> {
    let (Some(old_line), Some(new_line)) = (kubelet_exec_start(before), kubelet_exec_start(after)) else {
        prop_assert_eq!(kubelet_exec_start(before), kubelet_exec_start(after));
        return Ok(());
    };
    let is_endpoint = |a: &&str| a.starts_with(KUBELET_FLAG_CONTAINER_RUNTIME_ENDPOINT);
    let (old, new) = (command_line_arguments(&old_line), command_line_arguments(&new_line));
    let appended = new.len() == old.len() + 1 && !old.iter().any(is_endpoint) && new.last().is_some_and(is_endpoint);
    let compared = if appended { &new[..old.len()] } else { &new[..] };
    prop_assert_eq!(compared.len(), old.len(), "arguments added or lost: {:?} -> {:?}", old, new);
    for (old, new) in old.iter().zip(compared) {
        prop_assert!(old == new || (is_endpoint(old) && is_endpoint(new)), "{:?} became {:?}", old, new);
    }
    // Outside the command line, the unit is byte for byte what it was.
    let old_content = kubelet_content(before).replacen(&old_line, "", 1);
    let new_content = kubelet_content(after).replacen(&new_line, "", 1);
    prop_assert_eq!(old_content, new_content);
    Ok(())
}

proptest! {
    /// Mutating twice with the same plan is mutating once (the OSC and the warnings), and a plan applied after
    /// another one gives what it gives on the original.
    #[test]
    fn mutation_is_idempotent_and_declarative(generated in osc(), (configs, group) in configs_and_group()) {
        let merged = merged(&configs);
        let plan = plan(&merged, group);
        let once = mutate(&generated.osc, Some(&plan));
        let twice = mutate(&once.osc, Some(&plan));
        prop_assert_eq!(&twice, &once);
        let from_clean = mutate(&mutate(&generated.osc, None).osc, Some(&plan));
        prop_assert_eq!(&from_clean.osc, &once.osc);
    }

    /// For every OSC the mutation accepts — one that carries nothing of ours and whose kubelet command line names
    /// its endpoint (gardenlet always writes it; without it ours is appended and containerd's stays after removal,
    /// see `kubelet`) — removing the mutation gives back exactly that OSC; for every other OSC, the OSC without
    /// our additions.
    #[test]
    fn removal_restores_the_original(generated in osc(), (configs, group) in configs_and_group()) {
        let merged = merged(&configs);
        let plan = plan(&merged, group);
        let mutated = mutate(&generated.osc, Some(&plan));
        let restored = mutate(&mutated.osc, None).osc;
        let clean = mutate(&generated.osc, None).osc;
        if has_endpoint_flag(&generated.osc) || !has_endpoint_flag(&mutated.osc) {
            prop_assert_eq!(&restored, &clean);
        }
        if generated.earlier.is_none() && clean == generated.osc && has_endpoint_flag(&generated.osc) {
            prop_assert_eq!(&restored, &generated.osc);
        }
    }

    /// The kubelet `ExecStart=` rewrite changes only the endpoint token, installing and removing.
    #[test]
    fn exec_start_rewrite_changes_only_the_endpoint_token(
        generated in osc(),
        (configs, group) in configs_and_group(),
    ) {
        let merged = merged(&configs);
        let plan = plan(&merged, group);
        let mutated = mutate(&generated.osc, Some(&plan)).osc;
        assert_only_the_endpoint_changed(&generated.osc, &mutated)?;
        assert_only_the_endpoint_changed(&mutated, &mutate(&mutated, None).osc)?;
    }
}
