//! Kernel sites where a granted check can change nothing (../shared/KERNEL-CHECK-SITES.md),
//! on the real kernel: for each row, a scenario that makes the probe (the check is seen, and
//! the capability is not in the set) and one where the same site is a need (it is). Then
//! real programs nobody here wrote that hit those sites.

use std::process::Command;

use capprof_tests::*;

/// Records a scenario; asserts it succeeded and gave `expected`; returns the recording.
fn expect(args: &[&str], expected: &[&str]) -> Recording {
    require_root();
    let r = record_scenario(args);
    assert_eq!(r.status, 0, "scenario {args:?} failed under capprof: {}", r.stderr);
    assert_eq!(r.added(), expected, "scenario {args:?}: {}", r.profile);
    r
}

/// The checks of `cap` were made, and every one is classified `class`.
fn all_classified(r: &Recording, cap: &str, class: &str) {
    let checks: Vec<_> = r.checks_of(cap).into_iter().filter(|c| c.classification.label() != "runtime").collect();
    assert!(!checks.is_empty(), "the scenario should check {cap}: {}", r.profile);
    assert!(checks.iter().all(|c| c.classification.label() == class), "{cap} should be {class}: {checks:?}");
}

#[test]
fn capset_within_the_old_sets_is_a_probe_row_1() {
    let r = expect(&["capset-same"], &[]);
    all_classified(&r, "SETPCAP", "probed");
    // Raising the inheritable set beyond the permitted one needs SETPCAP.
    let r = expect(&["capset-raise-inheritable"], &["SETPCAP"]);
    assert!(r.checks_of("SETPCAP").iter().any(|c| c.classification.label() == "needed"));
}

#[test]
fn setuid_to_the_current_ids_is_a_probe_row_2() {
    let r = expect(&["setuid-self"], &[]);
    all_classified(&r, "SETUID", "probed");
    let r = expect(&["setgid-self"], &[]);
    all_classified(&r, "SETGID", "probed");
    // To another id: a need.
    expect(&["setuid"], &["SETUID"]);
    expect(&["setgid"], &["SETGID"]);
}

#[test]
fn overcommit_probes_on_fork_shmget_and_stack_growth_row_4() {
    let baseline = expect(&["nothing"], &[]);
    let count = |r: &Recording| -> u64 { r.checks_of("SYS_ADMIN").iter().map(|c| c.count).sum() };
    for (args, at_least) in [(&["fork", "50"][..], 50), (&["shmget", "50"][..], 50), (&["stack-grow"][..], 30)] {
        let r = expect(args, &[]);
        assert!(count(&r) >= count(&baseline) + at_least, "{args:?} should add {at_least} overcommit checks: {}", r.profile);
        all_classified(&r, "SYS_ADMIN", "probed");
    }
}

/// Runs `scenario ARGS` under `verify --caps CAPS`: what it observed (stdout), its status.
fn observed_under(caps: &str, args: &[&str]) -> Run {
    let scenario = scenario();
    let mut argv = vec![scenario.to_str().unwrap()];
    argv.extend(args);
    capprof_run(&["verify", "--caps", caps], &argv)
}

/// Why the verification failed, as the profile says.
fn failure(r: &Run) -> String {
    r.profile["workloads"][0]["verification"]["failure"].as_str().unwrap_or_default().to_string()
}

/// Signal 0 to another user's process: refused, the caller gets EPERM (`kill -0 PID` exits 1,
/// a liveness check calls the process dead), so KILL stays in the set (conditional) and a
/// re-run keeps it.
#[test]
fn kill_with_signal_0_is_conditional_row_12() {
    require_root();
    let mut victim = Command::new(scenario()).args(["sleep-as", "65534", "60"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = victim.id().to_string();
    let r = expect(&["kill0", &pid], &["KILL"]);
    all_classified(&r, "KILL", "conditional");
    // What the program sees, with and without KILL: success, then EPERM.
    let with = observed_under("kill", &["kill0", &pid]);
    assert_eq!(with.status, 0, "{}", with.stderr);
    let without = observed_under("none", &["kill0", &pid]);
    assert_eq!(without.status, 1, "kill(pid, 0) of another user's process fails without KILL: {}", without.stderr);
    assert_eq!(failure(&without), "exited with status 1", "{}", without.stderr);
    // The re-run settles it: kept.
    let (status, proven, stderr) = capprof_json(&["record", "--prove"], &[scenario().to_str().unwrap(), "kill0", &pid]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&proven["workloads"][0]), ["KILL"], "{stderr}");
    // A real signal to another user's process needs KILL.
    let r = expect(&["kill", &pid], &["KILL"]);
    assert!(r.checks_of("KILL").iter().any(|c| c.classification.label() == "needed"));
    let _ = victim.kill();
    let _ = victim.wait();
}

/// ext4 asks SYS_ADMIN once per trusted.* name when listing: without it the name vanishes
/// from the listing (exit 0), so a copy loses the attribute. A need, never a probe.
#[test]
fn listing_a_trusted_xattr_on_ext4_is_a_need_row_16() {
    require_root();
    let dir = scratch("xattr");
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    let path = file.to_str().unwrap();
    // Setting a trusted.* attribute needs SYS_ADMIN...
    let r = expect(&["set-trusted-xattr", path], &["SYS_ADMIN"]);
    assert!(r.checks_of("SYS_ADMIN").iter().any(|c| c.classification.label() == "needed"));
    // ...and so does seeing it in a listing.
    let r = expect(&["listxattr", path], &["SYS_ADMIN"]);
    let listing: Vec<_> = r.checks_of("SYS_ADMIN").into_iter().filter(|c| c.stack.iter().any(|f| f == "listxattr")).collect();
    assert!(!listing.is_empty(), "listxattr of a trusted.* name checks SYS_ADMIN: {}", r.profile);
    assert!(listing.iter().all(|c| c.classification.label() == "needed"), "{listing:?}");
    // What the program sees: the name with SYS_ADMIN, no name (and exit 0) without.
    let with = observed_under("sys_admin", &["listxattr", path]);
    assert_eq!((with.status, with.stdout.trim()), (0, "trusted.capprof"), "{}", with.stderr);
    let without = observed_under("none", &["listxattr", path]);
    assert_eq!(without.stdout.trim(), "", "the name is left out without SYS_ADMIN");
    assert_eq!(without.status, 1, "exit 0 with a refused need is a failed proof: {}", without.stderr);
    assert!(failure(&without).contains("refused SYS_ADMIN") && failure(&without).contains("give --check"), "{}", failure(&without));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_search_on_the_way_to_a_file_dac_override_opens_is_folded_into_it() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("closed").join("d");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("f");
    std::fs::write(&file, "x").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let path = file.to_str().unwrap();
    // The walk into the 0700 directory asks DAC_READ_SEARCH, opening the file for writing
    // DAC_OVERRIDE, which grants the search as well.
    let r = expect(&["open-rw", path], &["DAC_OVERRIDE"]);
    all_classified(&r, "DAC_READ_SEARCH", "probed");
    let (status, proven, stderr) = capprof_json(&["minimize"], &[scenario().to_str().unwrap(), "open-rw", path]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&proven["workloads"][0]), ["DAC_OVERRIDE"], "{stderr}");
}

#[test]
fn the_tasks_own_fd_directory_row_21() {
    require_root();
    // Listing its own /proc/self/fd as nobody: DAC_READ_SEARCH is asked first and changes nothing.
    let r = expect(&["list-as-nobody", "/proc/self/fd"], &["SETGID", "SETUID"]);
    all_classified(&r, "DAC_READ_SEARCH", "probed");
    let (status, proven, stderr) = capprof_json(&["minimize"], &[scenario().to_str().unwrap(), "list-as-nobody", "/proc/self/fd"]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&proven["workloads"][0]), ["SETGID", "SETUID"], "{stderr}");
    // Listing root's 0700 home as nobody needs it.
    let r = expect(&["list-as-nobody", "/root"], &["DAC_READ_SEARCH", "SETGID", "SETUID"]);
    assert!(r.checks_of("DAC_READ_SEARCH").iter().any(|c| c.classification.label() == "needed"));
}

#[test]
fn so_mark_takes_either_net_raw_or_net_admin_row_9() {
    require_root();
    let r = expect(&["so-mark"], &["NET_RAW"]);
    all_classified(&r, "NET_RAW", "needed");
    let argv = [scenario().to_str().unwrap().to_string(), "so-mark".into()];
    let verify = |caps: &str| {
        let (status, profile, stderr) = capprof_json(&["verify", "--caps", caps], &[&argv[0], &argv[1]]);
        (status, profile, stderr)
    };
    // Under NET_ADMIN alone the refused NET_RAW is the alternative tried first: folded.
    let (status, profile, stderr) = verify("NET_ADMIN");
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&profile["workloads"][0]), ["NET_ADMIN"], "{profile}");
    assert_eq!(verify("NET_RAW").0, 0);
    assert_eq!(verify("none").0, 1, "SO_MARK needs one of them");
}

/// A 0700 directory of another user, with a world-readable file in it: root searches it
/// with DAC_READ_SEARCH.
fn closed_dir(name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch(name).join("closed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("file"), "x").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    dir
}

/// `record --prove` then `minimize`: both must give `expected`. With `doubtful`, record had
/// conditional capabilities for --prove to settle by re-runs.
fn proven(argv: &[&str], expected: &[&str], doubtful: bool) {
    proven_with(&[], argv, expected, doubtful)
}

/// [`proven`], judged by `extra` (`--check CMD`) as well.
fn proven_with(extra: &[&str], argv: &[&str], expected: &[&str], doubtful: bool) {
    let mut args = vec!["record", "--prove"];
    args.extend(extra);
    let (status, settled, stderr) = capprof_json(&args, argv);
    assert_eq!(status, 0, "{stderr}");
    let w = &settled["workloads"][0];
    assert_eq!(added(w), expected, "record --prove {argv:?}: {stderr}");
    assert!(w["conditional"].as_array().unwrap().is_empty(), "{w}");
    if doubtful {
        assert!(w["verification"]["runs"].as_u64().unwrap() >= 2, "one run per doubtful capability and a confirming one: {w}");
        assert_eq!(w["verification"]["passed"], true, "{w}");
    }
    let mut args = vec!["minimize"];
    args.extend(extra);
    let (status, minimal, stderr) = capprof_json(&args, argv);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&minimal["workloads"][0]), expected, "minimize {argv:?}: {stderr}");
}

#[test]
fn exec_walk_misses_row_3() {
    require_root();
    let dir = closed_dir("walk");
    let d = dir.to_str().unwrap();
    // execvp tries the closed directory first, finds nothing there, goes on to /usr/bin: the
    // search of the closed directory bought nothing.
    let path = format!("PATH={d}:/usr/bin:/bin");
    let r = record(&[], &["env", &path, "true"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.added(), Vec::<String>::new(), "{}", r.profile);
    all_classified(&r, "DAC_READ_SEARCH", "probed");
    let (status, proven, stderr) = capprof_json(&["minimize"], &["env", &path, "true"]);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(&proven["workloads"][0]), Vec::<String>::new(), "{stderr}");
    // The program found in the closed directory: its walk is a need.
    std::fs::copy("/usr/bin/true", dir.join("closedtrue")).unwrap();
    let path = format!("PATH={d}:/usr/bin:/bin");
    let r = record(&[], &["env", &path, "closedtrue"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.added(), ["DAC_READ_SEARCH"], "{}", r.profile);
    // Reading a file in it: a need.
    let file = format!("{d}/file");
    let r = expect(&["read", &file], &["DAC_READ_SEARCH"]);
    all_classified(&r, "DAC_READ_SEARCH", "needed");
}

#[test]
fn timestamp_touch_row_10() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let file = scratch("touch").join("f");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let f = file.to_str().unwrap();
    // Touching another user's file asks FOWNER first; it is writable, so the fallback passes.
    let r = expect(&["touch", f], &["FOWNER"]);
    all_classified(&r, "FOWNER", "conditional");
    // Judged by exit status, FOWNER refused is a need refused: kept (the program cannot be
    // seen to have done without it).
    proven(&[scenario().to_str().unwrap(), "touch", f], &["FOWNER"], true);
    // Judged by the result (the time moved; the check puts it back for the next run), the
    // write-permission fallback is seen to work: dropped.
    let old = "946684800"; // 2000-01-01
    let reset = Command::new("touch").args(["-d", &format!("@{old}"), f]).status().unwrap();
    assert!(reset.success());
    let check = format!("test \"$(stat -c %Y {f})\" -gt {old} && touch -d @{old} {f}");
    proven_with(&["--check", &check], &[scenario().to_str().unwrap(), "touch", f], &[], true);
    // Setting explicit times needs FOWNER.
    let r = expect(&["touch-at", f], &["FOWNER"]);
    all_classified(&r, "FOWNER", "needed");
    proven(&[scenario().to_str().unwrap(), "touch-at", f], &["FOWNER"], false);
}

/// Runs a real program under record and under minimize: the sets must agree, and verify of
/// record's set must pass.
fn real_program(argv: &[&str], expected: &[&str]) -> Recording {
    require_root();
    let r = record(&[], argv);
    assert_eq!(r.status, 0, "{argv:?} failed under capprof: {}", r.stderr);
    assert_eq!(r.added(), expected, "record {argv:?}: {}", r.profile);
    let (status, proven, stderr) = capprof_json(&["minimize"], argv);
    assert_eq!(status, 0, "minimize {argv:?}: {stderr}");
    assert_eq!(added(&proven["workloads"][0]), expected, "the proven set of {argv:?}: {stderr}");
    let caps = if expected.is_empty() { "none".to_string() } else { expected.join(",") };
    let v = capprof_run(&["verify", "--caps", &caps], argv);
    assert_eq!(v.status, 0, "verify {caps} -- {argv:?}: {}: {}", v.profile["workloads"][0]["verification"]["failure"], v.stderr);
    r
}

#[test]
fn ping_needs_only_net_raw() {
    // iputils' ping drops its capabilities through libcap: capset checks SETPCAP each time.
    let r = real_program(&["ping", "-c1", "-W1", "127.0.0.1"], &["NET_RAW"]);
    all_classified(&r, "SETPCAP", "probed");
}

#[test]
fn setpriv_needs_setuid_and_setgid() {
    // A PATH whose first entry nobody cannot search (root's own ~/.cargo/bin under /root, as
    // in the report this came from): setpriv's execvp searches it with DAC_READ_SEARCH (row 3).
    let dir = closed_dir("setpriv");
    let path = format!("PATH={}:/usr/bin:/bin", dir.display());
    let r = real_program(&["env", &path, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"], &["SETGID", "SETUID"]);
    assert!(!r.checks_of("SETPCAP").is_empty(), "setpriv's capset checks SETPCAP: {}", r.profile);
    all_classified(&r, "SETPCAP", "probed");
    let dac = r.checks_of("DAC_READ_SEARCH");
    assert!(dac.iter().any(|c| c.classification.label() == "probed" && c.path.as_str().starts_with("execve")), "{dac:?}");
    assert!(dac.iter().all(|c| c.classification.label() != "needed"), "{dac:?}");
}
