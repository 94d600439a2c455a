use super::*;

#[test]
fn rejects_invalid_extra_options_with_exact_messages() {
    let rule = "EXTRA_OPTIONS becomes one line of cri-resmgr's environment file and is expanded into the \
                ExecStart= of its systemd unit, so it may only hold \"--flag\" and \"--flag=value\" options \
                separated by spaces, with flag names of lowercase letters, digits, '-' and '_' and values of \
                letters, digits and ._,:/=@+-";
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "EXTRA_OPTIONS with newline",
            configs("EXTRA_OPTIONS", "--metrics-interval=10s\nLD_PRELOAD=/tmp/x.so"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--metrics-interval=10s\nLD_PRELOAD=/tmp/x.so": character '\n' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with quote",
            configs("EXTRA_OPTIONS", "--metrics-interval=\"10s\""),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--metrics-interval=\"10s\"": character '"' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with $",
            configs("EXTRA_OPTIONS", "--host-root=$HOME"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=$HOME": character '$' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with ;",
            configs("EXTRA_OPTIONS", "--disable-ui;reboot"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--disable-ui;reboot": character ';' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with backtick",
            configs("EXTRA_OPTIONS", "--host-root=`id`"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=`id`": character '`' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with backslash",
            configs("EXTRA_OPTIONS", "--disable-ui \\"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--disable-ui \\": character '\\' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with a systemd specifier",
            configs("EXTRA_OPTIONS", "--host-root=%h"),
            vec![format!(
                r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--host-root=%h": character '%' is not allowed: {rule}"#
            )],
        ),
        (
            "EXTRA_OPTIONS with non-flag tokens",
            configs("EXTRA_OPTIONS", "--metrics-interval 10s -v=2 --Debug"),
            vec![
                format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "10s": not an option: {rule}"#),
                format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "-v=2": not an option: {rule}"#),
                format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "--Debug": not an option: {rule}"#),
            ],
        ),
        (
            "EXTRA_OPTIONS with owned flags",
            configs("EXTRA_OPTIONS", "--force-config=/tmp/x.cfg --fallback-config /etc/x --relay-socket=/x.sock"),
            vec![
                format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--force-config": the extension sets it to the file it writes from configs.force (and cri-resmgr refuses it together with --fallback-config); put the configuration into configs.force instead"#
                ),
                format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--fallback-config": the extension sets it to the file it writes from configs.fallback; put the configuration into configs.fallback instead"#
                ),
                format!(r#"{P}.configs["EXTRA_OPTIONS"]: Invalid value: "/etc/x": not an option: {rule}"#),
                format!(
                    r#"{P}.configs["EXTRA_OPTIONS"]: Forbidden: "--relay-socket": the extension points kubelet's container runtime endpoint at cri-resmgr's default relay socket; moving it would cut kubelet off from the container runtime"#
                ),
            ],
        ),
        (
            "EXTRA_OPTIONS too long",
            configs("EXTRA_OPTIONS", &"--disable-ui ".repeat(400)),
            vec![format!(r#"{P}.configs["EXTRA_OPTIONS"]: Too long: may not be more than 4096 bytes"#)],
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(check(raw), want, "case {name:?}");
    }
}

#[test]
fn extra_options_tokens_split_on_blanks() {
    assert_eq!(extra_options_tokens(" --a  --b=c\t--d "), ["--a", "--b=c", "--d"]);
    assert!(extra_options_tokens("").is_empty());
    assert!(validate_extra_options("", &root()).is_empty());
    assert!(validate_extra_options("   ", &root()).is_empty());
    for flag in ["--reset-policy", "--version", "--config-socket=disabled", "--relay-dir=/tmp"] {
        let errors = validate_extra_options(flag, &root());
        assert_eq!(errors.len(), 1, "{flag}");
        assert!(errors[0].message.starts_with("Forbidden: "), "{errors:?}");
    }
}
