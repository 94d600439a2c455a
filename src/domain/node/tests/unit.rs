//! cri-resmgr's unit: the policy-switch step, run for real with a stub binary; the wait for the relay socket, run
//! for real against a real unix socket; and every generated or changed unit checked by `systemd-analyze verify`.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::constants::{
    CONTAINERD_SOCKET, CONTAINERD_UNIT_NAME, NODE_BINARY_PATH, NODE_POLICY_APPLIED_PATH, NODE_POLICY_MARKER_PATH,
    NODE_RELAY_SOCKET, NODE_RELAY_SOCKET_WAIT_SECONDS, NODE_SHELL, NODE_STATE_DIR, UNIT_NAME,
};
use crate::domain::node::unit::{policy_switch_script, socket_wait_script};
use crate::domain::node::{
    command_line_arguments, policy_switch_exec_start_pre, socket_wait_exec_start_post, unit_content,
};

#[test]
fn shell_steps_are_one_systemd_word_with_the_plain_script_inside() {
    let steps = [
        (
            policy_switch_script(NODE_POLICY_MARKER_PATH, NODE_POLICY_APPLIED_PATH, NODE_STATE_DIR, NODE_BINARY_PATH),
            policy_switch_exec_start_pre(),
        ),
        (socket_wait_script(NODE_RELAY_SOCKET, NODE_RELAY_SOCKET_WAIT_SECONDS), socket_wait_exec_start_post()),
    ];
    for (script, step) in steps {
        assert!(!script.contains(['\'', '\\', '%']) && !script.contains(char::is_control), "{script}");
        let inner = step.strip_prefix("-/bin/sh -c '").and_then(|s| s.strip_suffix('\'')).expect("quoted");
        assert_eq!(inner.replace("$$", "$"), script);
        assert!(!inner.replace("$$", "").contains('$'), "every $ is escaped for systemd: {step}");
    }
}

/// The unit orders what starts after it behind the relay socket, and names both sockets itself.
#[test]
fn unit_waits_for_the_relay_socket_and_names_the_sockets() {
    let unit = unit_content();
    let line = |key: &str| {
        let lines: Vec<&str> = unit.lines().filter_map(|line| line.strip_prefix(key)).collect();
        assert_eq!(lines.len(), 1, "one {key} in\n{unit}");
        lines[0].to_owned()
    };
    assert_eq!(line("ExecStartPost="), socket_wait_exec_start_post());
    assert!(socket_wait_exec_start_post().contains(&format!("test -S {NODE_RELAY_SOCKET};")));
    let exec_start = line("ExecStart=");
    let arguments = command_line_arguments(&exec_start);
    assert_eq!(
        arguments[..3],
        [
            NODE_BINARY_PATH,
            &format!("--runtime-socket={CONTAINERD_SOCKET}"),
            &format!("--relay-socket={NODE_RELAY_SOCKET}"),
        ]
    );
    assert_eq!(CONTAINERD_SOCKET, "/run/containerd/containerd.sock", "not through the /var/run symlink");
    // The bound ends the wait before systemd's default start timeout (90 s) would kill the start.
    const { assert!(NODE_RELAY_SOCKET_WAIT_SECONDS > 0 && NODE_RELAY_SOCKET_WAIT_SECONDS < 90) };
}

/// Runs the socket wait with `sh` against a temporary directory, with short bounds.
#[test]
fn socket_wait_script_returns_once_the_socket_exists_and_fails_after_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("cri-resmgr.sock");
    let socket_text = socket.to_str().expect("utf-8 path").to_owned();
    let run = |bound: u32| {
        let started = Instant::now();
        let output = Command::new("sh").args(["-c", &socket_wait_script(&socket_text, bound)]).output().expect("sh");
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned(), started.elapsed())
    };

    // Nothing there: fails after the bound (once a second, so about `bound` seconds), saying what it waited for.
    let (ok, stderr, elapsed) = run(1);
    assert!(!ok, "no socket: the wait fails");
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5), "waited {elapsed:?}");
    assert!(stderr.contains(&format!("{socket_text} did not appear within 1 s")), "{stderr}");

    // A file that is not a socket does not count.
    std::fs::write(&socket, "").expect("file");
    assert!(!run(1).0, "a regular file is not the socket");
    std::fs::remove_file(&socket).expect("rm");

    // The socket appears while the script waits: it returns 0 soon after, well before the bound.
    let creator = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            UnixListener::bind(&socket).expect("bind unix socket")
        })
    };
    let (ok, stderr, elapsed) = run(20);
    let _listener = creator.join().expect("socket thread");
    assert!(ok, "the socket appeared: {stderr}");
    assert!(elapsed < Duration::from_secs(10), "returned after {elapsed:?}");

    // Already there: returns at once, even with no time left.
    let (ok, _, elapsed) = run(0);
    assert!(ok);
    assert!(elapsed < Duration::from_secs(1), "returned after {elapsed:?}");
}

/// Runs the policy-switch script with a stub cri-resmgr that logs its arguments.
#[test]
fn policy_switch_script_resets_only_when_the_marker_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (marker, state, log, binary) =
        (root.join("policy"), root.join("state"), root.join("calls"), root.join("cri-resmgr"));
    let applied = state.join("policy.applied");
    let stub = |exit: u8| {
        std::fs::write(&binary, format!("#!/bin/sh\necho \"$@\" >> {}\nexit {exit}\n", log.display())).expect("stub");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    };
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_owned();
    let script = policy_switch_script(&path(&marker), &path(&applied), &path(&state), &path(&binary));
    let run = || {
        let output = Command::new("sh").args(["-c", &script]).output().expect("sh");
        (output.status.success(), std::fs::read_to_string(&log).unwrap_or_default())
    };

    stub(0);
    std::fs::write(&marker, "policy: balloons\n").expect("marker");
    assert_eq!(run(), (true, "--reset-policy\n".to_owned()), "first start: no copy yet");
    assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: balloons\n");
    assert_eq!(run(), (true, "--reset-policy\n".to_owned()), "unchanged marker: no reset");

    std::fs::write(&marker, "policy: static\n").expect("marker");
    stub(1);
    let (ok, calls) = run();
    assert!(!ok, "a failed reset is reported (and ignored by systemd through the '-' prefix)");
    assert_eq!(calls, "--reset-policy\n--reset-policy\n");
    assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: balloons\n", "no copy after a failure");

    stub(0);
    assert_eq!(run(), (true, "--reset-policy\n--reset-policy\n--reset-policy\n".to_owned()), "retried");
    assert_eq!(std::fs::read_to_string(&applied).expect("copy"), "policy: static\n");
    assert_eq!(run().1.lines().count(), 3);
}

// -----------------------------------------------------------------------------------------------------------
// systemd-analyze verify
// -----------------------------------------------------------------------------------------------------------

/// The `/bin/sh -c <argument>` command systemd parsed for `setting` (from `verify`'s debug dump), written back the
/// way we write it (`-/bin/sh -c '<script>'`): equal to our value only if systemd read the script as one argument.
fn dumped_shell_step(dump: &str, setting: &str) -> String {
    let command = dump
        .lines()
        .skip_while(|line| !line.contains(&format!("-> {setting}:")))
        .find_map(|line| line.trim().strip_prefix("Command Line: /bin/sh -c "))
        .unwrap_or_else(|| panic!("{setting} in the dump:\n{dump}"));
    let argument = command.strip_prefix('"').and_then(|p| p.strip_suffix('"')).expect("one quoted argument");
    let unescaped = argument.replace("\\\"", "\"").replace("\\$", "$");
    format!("-/bin/sh -c '{unescaped}'")
}

const SYSTEMD_ANALYZE: &str = "systemd-analyze";

/// `systemd-analyze verify --root=<root> <units>`: `Err` with systemd's complaints when it exits non-zero or
/// prints anything to stderr (systemd reports many unit file mistakes — unknown keys, bad values, unbalanced quotes — as
/// warnings on stderr with exit code 0; we treat every one as an error). With `debug`, systemd's debug log and
/// its dump of the loaded units, for checks of how it read them; only the exit code counts then.
fn verify(root: &Path, units: &[&str], debug: bool) -> Result<String, String> {
    let mut command = Command::new(SYSTEMD_ANALYZE);
    command.arg("verify").arg(format!("--root={}", root.display())).arg("--man=no").args(units);
    if debug {
        command.env("SYSTEMD_LOG_LEVEL", "debug");
    }
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{SYSTEMD_ANALYZE} not found: these tests check the generated units with it; install Debian's \
             `systemd` package (hacks/install-control-plane.sh does)"
        ),
        Err(e) => panic!("cannot run {SYSTEMD_ANALYZE}: {e}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() && debug {
        // The debug log goes to stderr, the dump of the units to stdout.
        Ok(format!("{stderr}{}", String::from_utf8_lossy(&output.stdout)))
    } else if output.status.success() && stderr.trim().is_empty() {
        Ok(stderr)
    } else {
        Err(format!("{}\n{stderr}", output.status))
    }
}

fn write(root: &Path, path: &str, content: &str, mode: u32) {
    let path = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// Every unit we generate or change passes `systemd-analyze verify`: cri-resource-manager.service, the mutated
/// kubelet.service (reconstructed and Gardener-serialised) and our drop-in. `--root` points systemd at a tree
/// with the units under `/etc/systemd/system` (where node-agent writes them), stub executables at every path
/// an `Exec*=` names (verify checks they exist), and stubs of what every Gardener node has: containerd's unit
/// and the targets default dependencies pull in.
#[test]
fn generated_units_pass_systemd_analyze_verify() {
    let configs = merged(&[("fallback", TOPOLOGY), ("EXTRA_OPTIONS", "--disable-ui")]);
    for kubelet_original in [None, Some(GARDENER_SERIALIZED_KUBELET)] {
        let original = kubelet_original.map_or_else(reconcile_osc, with_kubelet_content);
        let osc = mutate(&original, Some(&plan(&configs, None))).osc;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let units = "/etc/systemd/system";
        let ours = osc.spec.unit(UNIT_NAME).and_then(|u| u.content.clone()).expect("our unit");
        write(root, &format!("{units}/{UNIT_NAME}"), &ours, 0o644);
        let kubelet_unit = kubelet(&osc);
        write(root, &format!("{units}/{KUBELET_UNIT_NAME}"), kubelet_unit.content.as_deref().expect("content"), 0o644);
        for drop_in in &kubelet_unit.drop_ins {
            write(root, &format!("{units}/{KUBELET_UNIT_NAME}.d/{}", drop_in.name), &drop_in.content, 0o644);
        }
        let stub_exec = "#!/bin/sh\nexit 0\n";
        for executable in [NODE_BINARY_PATH, "/opt/bin/kubelet", NODE_SHELL, "/opt/stub"] {
            write(root, executable, stub_exec, 0o755);
        }
        write(
            root,
            &format!("{units}/{CONTAINERD_UNIT_NAME}"),
            "[Unit]\nDescription=stub\n[Service]\nExecStart=/opt/stub\n",
            0o644,
        );
        for target in ["sysinit.target", "basic.target", "shutdown.target", "multi-user.target"] {
            write(root, &format!("{units}/{target}"), "[Unit]\nDescription=stub\n", 0o644);
        }

        if let Err(e) = verify(root, &[UNIT_NAME, KUBELET_UNIT_NAME], false) {
            panic!("systemd-analyze verify rejects the generated units:\n{e}\n--- {UNIT_NAME}\n{ours}");
        }

        // systemd read the drop-in, and parsed the policy-switch step into `/bin/sh -c <one argument>`.
        let dump = verify(root, &[KUBELET_UNIT_NAME], true).expect("verify kubelet (debug)");
        assert!(dump.contains("Wants: cri-resource-manager.service"), "drop-in not applied:\n{dump}");
        assert!(dump.contains("After: cri-resource-manager.service"), "drop-in not applied:\n{dump}");
        let dump = verify(root, &[UNIT_NAME], true).expect("verify ours (debug)");
        assert_eq!(dumped_shell_step(&dump, "ExecStartPre"), policy_switch_exec_start_pre());
        // ... the socket wait likewise, and the explicit sockets reach cri-resmgr's command line.
        assert_eq!(dumped_shell_step(&dump, "ExecStartPost"), socket_wait_exec_start_post());
        let start = dump
            .lines()
            .skip_while(|line| !line.contains("-> ExecStart:"))
            .find_map(|line| line.trim().strip_prefix("Command Line: "))
            .expect("ExecStart in the dump");
        assert!(
            start.starts_with(&format!(
                "{NODE_BINARY_PATH} --runtime-socket={CONTAINERD_SOCKET} --relay-socket={NODE_RELAY_SOCKET} "
            )),
            "{start}"
        );

        // The check itself catches mistakes: a broken copy of our unit is rejected.
        let broken = ours.replace("Restart=always", "Restart=alwayz");
        write(root, &format!("{units}/broken.service"), &broken, 0o644);
        let error = verify(root, &["broken.service"], false).expect_err("a broken unit must fail verification");
        assert!(error.contains("alwayz"), "{error}");
        let unbalanced = ours.replace("-c '", "-c ''");
        write(root, &format!("{units}/unbalanced.service"), &unbalanced, 0o644);
        let error = verify(root, &["unbalanced.service"], false).expect_err("unbalanced quoting must fail");
        assert!(error.contains("Unbalanced quoting"), "{error}");
    }
}
