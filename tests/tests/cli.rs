//! Error paths and small tools: one-line errors, documented exit codes, never a panic.

use capprof_tests::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn decode_names_the_docker_default_set() {
    let out = capprof_cmd(&["decode", "00000000a80425fb"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("0x00000000a80425fb=cap_chown,cap_dac_override,cap_fowner,cap_fsetid,cap_kill,"), "{text}");
    assert_eq!(text.lines().count(), 15);
}

#[test]
fn bad_masks_are_usage_errors() {
    for mask in ["zz", "12345678901234567", ""] {
        let out = capprof_cmd(&["decode", mask]);
        assert_eq!(out.status.code(), Some(64), "{mask}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", stderr(&out));
        assert!(stderr(&out).starts_with("capprof: error: "));
    }
}

#[test]
fn caps_of_a_process() {
    let out = capprof_cmd(&["caps", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for set in ["effective", "permitted", "inheritable", "bounding", "ambient"] {
        assert!(text.contains(set), "{text}");
    }
    let out = capprof_cmd(&["caps", "4000000"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("no process with PID 4000000"));
}

#[test]
fn command_not_found_and_not_executable() {
    require_root();
    let out = capprof_cmd(&["record", "--", "/nonexistent/capprof-test"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("command not found"));
    let file = scratch("noexec").join("data");
    std::fs::write(&file, "not a program").unwrap();
    let out = capprof_cmd(&["record", "--", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn missing_privileges_name_the_capabilities() {
    // As nobody, with no capabilities at all.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(capprof())
        .args(["record", "--", "true"])
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("CAP_BPF") && err.contains("CAP_PERFMON") && err.contains("run it as root"), "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn usage_errors() {
    let out = capprof_cmd(&["record"]);
    assert_eq!(out.status.code(), Some(64));
    let out = capprof_cmd(&["record", "--max-checks", "1", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--max-checks"));
    let out = capprof_cmd(&["record", "-f", "yaml", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn huge_times_are_usage_errors_not_panics() {
    for args in [
        &["record", "--container", "x", "--duration", "1e19"][..],
        &["record", "--cgroup", "/x", "--duration", "1e30"],
        &["verify", "--caps", "none", "--check", "true", "--timeout", "18446744073709551615", "--", "true"],
        &["record", "--check", "true", "--timeout", "inf", "--", "true"],
        &["daemon", "--flush-interval", "1e30"],
    ] {
        let out = capprof_cmd(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("at most"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = capprof_cmd(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("record"), "{shell}");
    }
    // bash parses the script and it registers a completion for capprof.
    let script = scratch("completions").join("capprof.bash");
    std::fs::write(&script, capprof_cmd(&["completions", "bash"]).stdout).unwrap();
    let out = std::process::Command::new("bash").arg("-c").arg(format!("source {} && complete -p capprof", script.display())).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("capprof"));
    let man = capprof_cmd(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH capprof"), "{}", &page[..page.len().min(200)]);
    for sub in ["record", "verify", "minimize", "daemon", "export", "merge"] {
        assert!(page.contains(sub), "the manual names {sub}");
    }
    assert!(capprof_cmd(&["completions", "tcsh"]).status.code() == Some(64));
}

#[test]
fn units_need_systemd_and_a_service_name() {
    // This host's PID 1 is not systemd (the VM test has one): a one-line "unsupported" error.
    let out = capprof_cmd(&["record", "--unit", "nginx"]);
    if std::fs::read_link("/proc/1/exe").is_ok_and(|e| e.ends_with("systemd")) {
        eprintln!("skipped the non-systemd half: PID 1 is systemd here");
    } else {
        assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
        assert!(stderr(&out).contains("systemd is not running as PID 1"), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    let out = capprof_cmd(&["record", "--unit", "ssh.socket"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("name the .service it starts"), "{}", stderr(&out));
    for args in [&["verify", "--unit", "nginx", "--caps", "chown"][..], &["minimize", "--unit", "nginx"], &["record", "--unit", "nginx", "--prove"], &["record", "--unit", "nginx", "--", "true"]] {
        let out = capprof_cmd(args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
    }
}

/// `--seccomp` inputs: a profile file that is missing, not JSON, of an unknown architecture
/// or with conditions a plain command cannot be given; seccomp outputs without `--seccomp`;
/// `--seccomp` with `--unit`. Each a one-line error with its documented code, before anything
/// runs.
#[test]
fn bad_seccomp_inputs_are_refused_with_a_reason() {
    require_root();
    let dir = scratch("seccomp-cli");
    let write = |name: &str, text: &str| -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let garbage = write("garbage.json", "{\"defaultAction\": ");
    let ppc = write("ppc.json", r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_PPC64LE"],"syscalls":[]}"#);
    let conditional = write(
        "cond.json",
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let missing = dir.join("missing.json").display().to_string();
    for (args, code, says) in [
        (vec!["verify", "--seccomp", &garbage, "--", "true"], 65, "is not a seccomp profile"),
        (vec!["verify", "--seccomp", &ppc, "--", "true"], 65, "SCMP_ARCH_PPC64LE"),
        (vec!["verify", "--seccomp", &missing, "--", "true"], 74, "missing.json"),
        (vec!["verify", "--seccomp", &conditional, "--", "true"], 64, "conditional"),
        (vec!["record", "-f", "seccomp", "--", "true"], 64, "--seccomp"),
        (vec!["minimize", "-f", "spo", "--", "true"], 64, "--seccomp"),
        (vec!["verify", "--seccomp", &conditional, "--unit", "x.service", "--check", "true"], 64, "--unit"),
    ] {
        let out = capprof_cmd(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if code != 64 || !err.contains("Usage") {
            assert_eq!(err.lines().count(), 1, "one line: {err}");
        }
    }
}
