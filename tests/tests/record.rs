//! `capprof record -- CMD` on the real kernel: one privileged operation per scenario, each
//! with its exact expected minimal set.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use capprof_tests::*;

fn expect_set(args: &[&str], expected: &[&str]) -> Recording {
    require_root();
    let r = record_scenario(args);
    assert_eq!(r.status, 0, "scenario {args:?} failed under capprof: {}", r.stderr);
    assert_eq!(r.added(), expected, "scenario {args:?}: profile {}", r.profile);
    r
}

#[test]
fn nothing_needs_nothing() {
    let r = expect_set(&["nothing"], &[]);
    // The overcommit probe is seen, and reported as a probe, never as a need.
    let sys_admin = r.checks_of("SYS_ADMIN");
    assert!(!sys_admin.is_empty(), "the exec's overcommit probe should be visible: {}", r.profile);
    assert!(sys_admin.iter().all(|c| c.classification.label() == "probed" || c.classification.label() == "runtime"), "{sys_admin:?}");
    // This kernel (6.18) has bpf_rdonly_cast: the stack words are plain loads.
    let how = r.typed.backend.classification.as_str();
    assert!(how.contains("plain loads through bpf_rdonly_cast"), "{how}");
}

#[test]
fn shell_true_reports_nothing() {
    require_root();
    let r = record(&[], &["sh", "-c", "true"]);
    assert_eq!(r.status, 0);
    assert_eq!(r.added(), Vec::<String>::new());
    assert!(r.typed_workload().would_need.is_empty());
}

#[test]
fn chown_needs_chown() {
    let dir = scratch("chown");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let r = expect_set(&["chown", file.to_str().unwrap()], &["CHOWN"]);
    let chown = r.checks_of("CHOWN");
    assert_eq!(chown[0].classification.label(), "needed");
    assert!(chown[0].path.contains("setattr_prepare"), "path: {}", chown[0].path);
    assert!(chown[0].programs[0].comm == "scenario", "{:?}", chown[0].programs);
}

#[test]
fn bind_port_80_on_host_network_needs_net_bind_service() {
    expect_set(&["bind", "80"], &["NET_BIND_SERVICE"]);
}

#[test]
fn raw_socket_needs_net_raw() {
    expect_set(&["rawsock"], &["NET_RAW"]);
}

#[test]
fn mknod_needs_mknod() {
    let dir = scratch("mknod");
    expect_set(&["mknod", dir.join("null").to_str().unwrap()], &["MKNOD"]);
}

#[test]
fn setuid_needs_setuid() {
    expect_set(&["setuid"], &["SETUID"]);
}

#[test]
fn setgid_needs_setgid() {
    expect_set(&["setgid"], &["SETGID"]);
}

#[test]
fn chroot_needs_sys_chroot() {
    expect_set(&["chroot", "/"], &["SYS_CHROOT"]);
}

#[test]
fn killing_another_users_process_needs_kill() {
    require_root();
    // The victim runs outside capprof's cgroup, as nobody.
    let mut victim = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "sleep", "60"])
        .spawn()
        .expect("setpriv");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = victim.id().to_string();
    expect_set(&["kill", &pid], &["KILL"]);
    let _ = victim.kill();
    let _ = victim.wait();
}

/// Reading a mode-000 file of another user: the kernel's generic_permission() asks for
/// CAP_DAC_READ_SEARCH first, and as root it is granted, so that is the capability used.
/// It is also the narrower of the two alternatives (read-only, no write bypass).
#[test]
fn reading_a_mode_000_file_needs_dac_read_search() {
    let dir = scratch("dac");
    let file = dir.join("secret");
    std::fs::write(&file, "secret").unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    let r = expect_set(&["read", file.to_str().unwrap()], &["DAC_READ_SEARCH"]);
    assert!(r.checks_of("DAC_OVERRIDE").is_empty(), "DAC_OVERRIDE not even checked: {}", r.profile);
}

#[test]
/// Optional: in the set (refused, the buffer is smaller, which the program may or may not
/// mind), listed apart for a re-run to settle.
fn forced_receive_buffer_with_fallback_is_optional() {
    let r = expect_set(&["rcvbufforce"], &["NET_ADMIN"]);
    let net_admin = r.checks_of("NET_ADMIN");
    assert_eq!(net_admin.len(), 1, "{}", r.profile);
    assert_eq!(net_admin[0].classification.label(), "optional");
    assert_eq!(r.typed_workload().optional, [capprof::capability::Capability::NET_ADMIN]);
}

#[test]
fn exit_status_is_propagated() {
    require_root();
    assert_eq!(record_scenario(&["exit", "7"]).status, 7);
    let r = record(&[], &["sh", "-c", "kill -9 $$"]);
    assert_eq!(r.status, 137, "killed by SIGKILL: 128+9");
    assert_eq!(r.typed_workload().exit_status, Some(137));
}

#[test]
fn checks_outside_the_cgroup_are_not_counted() {
    require_root();
    let s = scenario();
    // A busy neighbour making SYS_CHROOT checks all through the recording; each successful
    // chroot (which the kernel grants only after asking for SYS_CHROOT) leaves a line.
    let log = scratch("neighbour").join("chroots");
    let mut neighbour = Command::new("sh")
        .arg("-c")
        .arg(format!("while :; do {} chroot / && echo x >> {}; done", s.display(), log.display()))
        .spawn()
        .expect("neighbour");
    let lines = || std::fs::read_to_string(&log).map(|t| t.lines().count()).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = lines();
    let r = record_scenario(&["sleep", "0.5"]);
    let after = lines();
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    assert!(after > before, "the neighbour did check SYS_CHROOT while the recording ran ({before} then {after} chroots)");
    assert_eq!(r.added(), Vec::<String>::new(), "{}", r.profile);
    assert!(r.checks_of("SYS_CHROOT").is_empty());
}

#[test]
fn forked_children_are_counted() {
    require_root();
    let s = scenario();
    let script = format!("{0} chroot / & wait; ( {0} setgid ) ; true", s.display());
    let r = record(&[], &["sh", "-c", &script]);
    assert_eq!(r.added(), vec!["SETGID", "SYS_CHROOT"]);
}

#[test]
fn full_map_is_reported_as_a_loss() {
    require_root();
    let r = record(&["--max-checks", "64"], &[scenario().to_str().unwrap(), "names", "200"]);
    let lost = r.typed.losses.checks_map_full;
    assert!(lost > 0, "{}", r.profile["losses"]);
    assert!(r.stderr.contains("LOSS:"), "loss must be reported on stderr: {}", r.stderr);
}

#[test]
fn other_formats() {
    require_root();
    let dir = scratch("formats");
    let s = scenario();
    for (format, expected) in [
        ("docker", "--cap-drop=ALL --cap-add=SYS_CHROOT\n"),
        ("k8s", "  capabilities:\n    drop:\n    - ALL\n    add:\n    - SYS_CHROOT\n"),
    ] {
        let file = dir.join(format);
        let out = capprof_cmd(&["record", "-f", format, "-o", file.to_str().unwrap(), "--", s.to_str().unwrap(), "chroot", "/"]);
        assert!(out.status.success());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(expected), "{format}: {text}");
    }
    let file = dir.join("empty");
    capprof_cmd(&["record", "-f", "docker", "-o", file.to_str().unwrap(), "--", "true"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "--cap-drop=ALL\n");
    // Human report on stderr, the workload's stdout untouched.
    let out = capprof_cmd(&["record", "--", "sh", "-c", "echo workload-output"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "workload-output\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("minimal set: none") && err.contains("docker: --cap-drop=ALL"), "{err}");
}

/// Two capprofs on the same tracepoint: the kernel adds a frame (`__traceiter_cap_capable`)
/// while both are attached, and removes it when one leaves; call sites must stay readable.
#[test]
fn concurrent_recordings_keep_their_call_sites() {
    require_root();
    let s = scenario();
    let mut other = std::process::Command::new(capprof())
        .args(["record", "-f", "json", "-o", "/dev/null", "--", "sleep", "1.5"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // setuid while both are attached, chroot after the other one detached.
    let script = format!("{0} setuid; sleep 2; {0} chroot /", s.display());
    let r = record(&[], &["sh", "-c", &script]);
    let _ = other.wait();
    assert_eq!(r.added(), vec!["SETUID", "SYS_CHROOT"], "{}", r.profile);
    assert_eq!(r.typed.losses.site_unknown, 0, "{:?}", r.typed.losses);
    assert_eq!(r.checks_of("SETUID")[0].site.as_deref(), Some("ns_capable_setid"));
    assert_eq!(r.checks_of("SYS_CHROOT")[0].site.as_deref(), Some("ns_capable"));
}

/// Kernels before 6.2 have no `bpf_rdonly_cast`: the program copies the stack slots with
/// `bpf_probe_read_kernel` instead. Forced here, the same checks get the same sites.
#[test]
fn stack_reads_without_kfuncs_give_the_same_sites() {
    require_root();
    let script = format!("{0} setuid; {0} chroot /", scenario().display());
    let profile = record_script_with(("CAPPROF_NO_KFUNCS", "1"), &[], &script);
    let w = &profile["workloads"][0];
    assert_eq!(added(w), vec!["SETUID", "SYS_CHROOT"], "{profile}");
    assert_eq!(profile["losses"]["site_unknown"], 0, "{}", profile["losses"]);
    let how = profile["backend"]["classification"].as_str().unwrap();
    assert!(how.contains("bpf_probe_read_kernel"), "the probe-read path was not taken: {how}");
    let checks = w["checks"].as_array().unwrap();
    let site = |cap: &str| checks.iter().find(|c| c["capability"] == cap).map(|c| c["site"].clone());
    assert_eq!(site("SETUID").unwrap(), "ns_capable_setid");
    assert_eq!(site("SYS_CHROOT").unwrap(), "ns_capable");
    let overcommit = checks.iter().find(|c| c["capability"] == "SYS_ADMIN" && c["classification"] == "probed").expect("the exec's overcommit probe");
    assert_eq!(overcommit["site"], "security_vm_enough_memory_mm");
}

/// Repeats of one check are counted in the kernel's per-CPU slot, not in the map: every one
/// still reaches the profile, exactly, one check after another and interleaved with another
/// task's checks on the same CPUs.
#[test]
fn repeated_checks_are_counted_exactly() {
    require_root();
    let s = scenario();
    let script = format!("{0} setuid-loop 20000 & {0} setuid-loop 30000 & wait", s.display());
    let r = record(&[], &["sh", "-c", &script]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let setuid: u64 = r.checks_of("SETUID").iter().map(|c| c.count).sum();
    assert_eq!(setuid, 50_000, "every setuid(0) of both loops: {}", r.profile);
    let r = record_scenario(&["mmap-loop", "40000"]);
    let probes: u64 = r.checks_of("SYS_ADMIN").iter().filter(|c| c.site.as_deref().is_some_and(|s| s.contains("vm_enough_memory"))).map(|c| c.count).sum();
    assert!((40_000..40_100).contains(&probes), "one overcommit probe per mmap (and the few of the exec): {probes}: {}", r.profile);
}

/// The benchmarks' floor on the same checks (`CAPPROF_BENCH_FLOOR=around`, BENCHMARKS.md): the
/// empty program runs before and after the check program on every check, and with the
/// tracepoint iterator's frame below it the check program still finds every call site and
/// classifies as it does alone.
#[test]
fn the_benchmarks_floor_around_the_check_program_changes_nothing() {
    require_root();
    let script = format!("{0} setuid-loop 5000; {0} chroot /", scenario().display());
    let profile = record_script_with(("CAPPROF_BENCH_FLOOR", "around"), &["--bpf-stats"], &script);
    let w = &profile["workloads"][0];
    assert_eq!(added(w), vec!["SYS_CHROOT"], "setuid(0) to the ids it has is a probe: {profile}");
    assert_eq!(profile["losses"]["site_unknown"], 0, "{}", profile["losses"]);
    let checks = w["checks"].as_array().unwrap();
    let setuid = checks.iter().find(|c| c["capability"] == "SETUID").expect("the loop's SETUID checks");
    assert_eq!((setuid["count"].as_u64(), &setuid["site"], &setuid["classification"]), (Some(5000), &"ns_capable_setid".into(), &"probed".into()), "{setuid}");
    let (program, floor) = (&profile["backend"]["program"], &profile["backend"]["floor_program"]);
    let runs = program["runs"].as_u64().unwrap();
    assert!(runs >= 5000, "{program}");
    // The host's few checks between one attach and the next are the floor's alone.
    let floor_runs = floor["runs"].as_u64().unwrap();
    assert!(floor_runs.abs_diff(2 * runs) <= runs / 100, "the floor runs before and after every check ({runs}): {floor}");
    assert!(program["mean_ns"].as_f64().unwrap() > 0.0 && floor["mean_ns"].as_f64().unwrap() > 0.0, "{}", profile["backend"]);
}

/// The JSON profile of `capprof record EXTRA -- sh -c SCRIPT` with one environment variable set.
fn record_script_with((name, value): (&str, &str), extra: &[&str], script: &str) -> serde_json::Value {
    let file = scratch("record-with").join(format!("{}.json", unique()));
    let out = Command::new(capprof()).env(name, value).arg("record").args(extra).args(["-f", "json", "-o"]).arg(&file).args(["--", "sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{name}={value}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
}
