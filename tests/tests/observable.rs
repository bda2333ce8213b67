//! Zero missing: no rule and no proof may drop a capability whose refusal the program can
//! observe. Each test runs a real program on the real kernel with and without the capability
//! and looks at what it left (owners, what a client gets), not only at its exit status.

use std::os::unix::fs::MetadataExt;

use capprof_tests::*;

/// A tool that warns and exits 0 when its chown is refused (useradd with a home directory
/// does): a proof judged by exit status alone must not drop CHOWN, because the file is left
/// with the wrong owner.
#[test]
fn a_proof_by_exit_status_fails_when_a_need_was_refused() {
    require_root();
    let dir = scratch("chown-or-warn");
    let file = dir.join("home");
    std::fs::write(&file, "x").unwrap();
    let path = file.to_str().unwrap();
    let scenario = scenario();
    let argv = [scenario.to_str().unwrap(), "chown-or-warn", path];
    let owner = || std::fs::metadata(&file).unwrap().uid();

    // What the program leaves, with and without CHOWN: exit 0 both times, the owner differs.
    std::os::unix::fs::chown(&file, Some(0), Some(0)).unwrap();
    let without = capprof_run(&["verify", "--caps", "none"], &argv);
    assert_eq!(owner(), 0, "without CHOWN the file keeps its owner");
    assert!(without.stderr.contains("warning: cannot chown"), "the program only warned: {}", without.stderr);
    assert_eq!(without.status, 1, "exit 0 with a refused need is not a proof: {}", without.stderr);
    let failure = without.profile["workloads"][0]["verification"]["failure"].as_str().unwrap_or_default().to_string();
    assert!(failure.contains("exited with status 0") && failure.contains("refused CHOWN") && failure.contains("give --check"), "{failure}");
    let with = capprof_run(&["verify", "--caps", "chown"], &argv);
    assert_eq!((with.status, owner()), (0, 65534), "{}", with.stderr);

    // record and minimize keep CHOWN; minimize's evidence says why.
    let r = record(&[], &argv);
    assert_eq!(r.added(), ["CHOWN"], "{}", r.profile);
    let (status, minimal, stderr) = capprof_json(&["minimize"], &argv);
    assert_eq!(status, 0, "{stderr}");
    let w = &minimal["workloads"][0];
    assert_eq!(added(w), ["CHOWN"], "the set proven by re-runs: {stderr}");
    let evidence = w["verification"]["evidence"].as_array().unwrap();
    let chown = evidence.iter().find(|e| e["capability"] == "CHOWN").expect("evidence for CHOWN");
    assert_eq!(chown["kept"], true, "{chown}");
    assert!(chown["outcome"].as_str().unwrap().contains("refused CHOWN"), "{chown}");
    assert_eq!(owner(), 65534, "the confirming run left the file as the program meant to");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server that isolates itself in new namespaces when it may and serves without them when
/// refused (vsftpd's isolate=YES): SYS_ADMIN is a need the trace cannot call certain, so
/// `record --prove` re-runs without it, and a real request decides.
#[test]
fn prove_settles_namespace_creation_with_a_fallback() {
    require_root();
    let scenario = scenario();
    let argv = [scenario.to_str().unwrap(), "serve-try-unshare", "8093"];
    let check = ["--check", "busybox wget -q -O /dev/null http://127.0.0.1:8093/", "--timeout", "15"];

    let mut args = vec!["record"];
    args.extend(check);
    let (status, recorded, stderr) = capprof_json(&args, &argv);
    assert_eq!(status, 0, "{stderr}");
    let w = &recorded["workloads"][0];
    assert_eq!(added(w), ["SYS_ADMIN"], "record keeps what the trace cannot decide: {stderr}");
    let namespaces = w["checks"].as_array().unwrap().iter().find(|c| c["capability"] == "SYS_ADMIN" && c["classification"] == "needed");
    assert!(namespaces.is_some_and(|c| c["stack"].as_array().unwrap().iter().any(|f| f == "unshare_nsproxy_namespaces")), "{w}");

    args.push("--prove");
    let (status, proven, stderr) = capprof_json(&args, &argv);
    assert_eq!(status, 0, "{stderr}");
    let w = &proven["workloads"][0];
    assert_eq!(added(w), Vec::<String>::new(), "a re-run without SYS_ADMIN served the request: {stderr}");
    assert_eq!(w["verification"]["passed"], true, "{w}");
    assert!(stderr.contains("without SYS_ADMIN: works: dropped"), "{stderr}");

    // The set serves a real request.
    let mut args = vec!["verify", "--caps", "none"];
    args.extend(check);
    let (status, _, stderr) = capprof_json(&args, &argv);
    assert_eq!(status, 0, "{stderr}");
}

/// ping as nobody in a network namespace whose ping_group_range covers every group (as
/// Docker's do): an ICMP datagram socket, no NET_RAW check at all. Its file capability
/// (cap_net_raw=ep) still needs NET_RAW in the bounding set, or the exec is refused.
#[test]
fn a_file_capability_program_that_makes_no_check_keeps_its_capability() {
    require_root();
    let script = "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range && ip link set lo up && \
                  setpriv --reuid=65534 --regid=65534 --clear-groups ping -c1 -W2 127.0.0.1";
    let argv = ["unshare", "-n", "sh", "-c", script];
    let r = record(&[], &argv);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(r.checks_of("NET_RAW").iter().all(|c| c.path.contains("bprm_caps_from_vfs_caps")), "no NET_RAW check but the exec's: {}", r.profile);
    assert!(r.added().iter().any(|c| c == "NET_RAW"), "{}", r.profile);
    // Without it the exec itself is refused; with record's set it works.
    let set = r.added().join(",");
    let without: Vec<String> = r.added().into_iter().filter(|c| c != "NET_RAW").collect();
    let v = capprof_run(&["verify", "--caps", &without.join(",")], &argv);
    assert_eq!(v.status, 1, "{}", v.stderr);
    let v = capprof_run(&["verify", "--caps", &set], &argv);
    assert_eq!(v.status, 0, "{}", v.stderr);
}
