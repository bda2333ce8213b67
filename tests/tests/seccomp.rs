//! `--seccomp`: the system calls a workload made, recorded in the same run as its
//! capabilities, as a seccomp allow list that real engines load. The oracle is the engine
//! itself, not `record`: Docker (and podman) run each container under the recorded profile
//! (it must work) and under the profile minus one call the workload made (it must fail), and
//! `verify` must name that call. Plain commands run under the filter capprof installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;
use serde_json::Value;

/// `record --seccomp` of `argv`: the JSON profile and its container workload (or the only
/// workload for a plain command).
fn record_seccomp(argv: &[&str]) -> (Value, PathBuf) {
    let (status, p, stderr) = capprof_json(&["record", "--seccomp"], argv);
    assert_eq!(status, 0, "record --seccomp: {stderr}");
    let file = scratch("seccomp").join(format!("{}.json", unique()));
    std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    (p, file)
}

/// The workload a seccomp output is about: the container, else the first.
fn main_workload(p: &Value) -> &Value {
    containers(p).first().copied().unwrap_or(&p["workloads"][0])
}

/// `capprof merge PROFILE -f seccomp`: the OCI profile file of its main workload.
fn oci_file(profile: &Path) -> PathBuf {
    let out = profile.with_extension("seccomp.json");
    let r = Command::new(capprof()).arg("merge").arg(profile).args(["-f", "seccomp", "-o"]).arg(&out).output().unwrap();
    assert!(r.status.success(), "merge -f seccomp: {}", String::from_utf8_lossy(&r.stderr));
    out
}

/// The same OCI profile without `name`.
fn without(file: &Path, name: &str) -> PathBuf {
    let mut oci: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let names = oci["syscalls"][0]["names"].as_array_mut().unwrap();
    let before = names.len();
    names.retain(|n| n != name);
    assert_eq!(names.len(), before - 1, "{name} is in the recorded profile");
    let out = file.with_extension(format!("without-{name}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&oci).unwrap()).unwrap();
    out
}

fn names_of(file: &Path) -> Vec<String> {
    let oci: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    oci["syscalls"][0]["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect()
}

/// `argv` (an engine's `run`) with `--security-opt seccomp=FILE` after `run`, run by the
/// engine itself: the oracle.
fn engine_runs(argv: &[&str], file: &Path) -> bool {
    let run = argv.iter().position(|a| *a == "run").unwrap();
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..=run]).arg("--security-opt").arg(format!("seccomp={}", file.display())).args(&argv[run + 1..]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// `verify --seccomp FILE -- argv`: exit status and the verified workload's profile.
fn verify(file: &Path, argv: &[&str]) -> (i32, Value, String) {
    capprof_json(&["verify", "--seccomp", file.to_str().unwrap()], argv)
}

fn refused(w: &Value) -> Vec<String> {
    w["seccomp"]["refused"].as_array().map(|a| a.iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// The one call of `candidates` the workload itself made.
fn made_one_of(w: &Value, candidates: &[&str]) -> String {
    let made: Vec<String> = w["seccomp"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["source"] == "workload" && candidates.contains(&s["name"].as_str().unwrap()))
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(made.len(), 1, "exactly one of {candidates:?} made: {made:?}");
    made[0].clone()
}

/// The recorded profile starts the container and it works; without `call` it fails, and
/// verify says seccomp refused `call`.
fn proven_by_the_engine(argv: &[&str], profile: &Path, call: &str) {
    let file = oci_file(profile);
    assert!(engine_runs(argv, &file), "{} runs under its recorded profile {}", argv[0], file.display());
    let (status, p, stderr) = verify(&file, argv);
    assert_eq!(status, 0, "verify under the recorded profile: {stderr}");
    assert!(refused(main_workload(&p)).is_empty(), "nothing refused under the recorded profile: {}", main_workload(&p)["seccomp"]);
    let minus = without(&file, call);
    assert!(!engine_runs(argv, &minus), "{} fails without {call}", argv[0]);
    let (status, p, stderr) = verify(&minus, argv);
    assert_eq!(status, 1, "verify fails without {call}: {stderr}");
    assert!(refused(main_workload(&p)).contains(&call.to_string()), "verify names {call}: {}", main_workload(&p)["seccomp"]);
}

/// runc init's set-up before its filter never counts: mounts and pivot_root stay refused.
fn no_runtime_setup(profile: &Path) {
    let names = names_of(&oci_file(profile));
    for setup in ["mount", "pivot_root", "sethostname", "umount2", "unshare", "setns"] {
        assert!(!names.contains(&setup.to_string()), "{setup} was runc's set-up before the filter: {names:?}");
    }
}

#[test]
fn busybox_runs_under_its_recorded_profile_and_fails_without_a_call_it_made() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let argv = ["docker", "run", "--rm", &img, "sh", "-c", "mkdir /tmp/d && ls /tmp >/dev/null && echo ok"];
    let (p, profile) = record_seccomp(&argv);
    let w = main_workload(&p);
    let s = &w["seccomp"];
    assert!(s["boundary"].as_str().unwrap().starts_with("observed"), "runc's filter install was seen: {}", s["boundary"]);
    // The runtime's calls between its filter and the exec are in the list, apart.
    let runtime: Vec<&str> = s["syscalls"].as_array().unwrap().iter().filter(|c| c["source"] == "runtime").map(|c| c["name"].as_str().unwrap()).collect();
    assert!(runtime.contains(&"capset") || runtime.contains(&"setgroups"), "runc init's calls after its filter: {runtime:?}");
    assert!(s["removed_from_docker_default"].as_u64().unwrap() > 150, "far fewer than Docker's default: {}", s["removed_from_docker_default"]);
    no_runtime_setup(&profile);
    let call = made_one_of(w, &["mkdir", "mkdirat"]);
    proven_by_the_engine(&argv, &profile, &call);
}

#[test]
fn a_debian_image_runs_under_its_recorded_profile() {
    require_root();
    let _serial = container_lock();
    let img = debian_python_image();
    let argv = ["docker", "run", "--rm", &img, "python3", "-c", "import socket; a, b = socket.socketpair(); a.send(b'x'); print(b.recv(1))"];
    let (p, profile) = record_seccomp(&argv);
    let w = main_workload(&p);
    let programs: Vec<&str> = w["seccomp"]["syscalls"].as_array().unwrap().iter().find(|s| s["name"] == "socketpair").unwrap()["programs"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(programs, ["python3"], "the program that made it");
    proven_by_the_engine(&argv, &profile, "socketpair");
}

#[test]
fn podman_runs_under_its_recorded_profile() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("podman");
    let argv = [
        "podman", "--cgroup-manager=cgroupfs", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000", &img, "sh",
        "-c", "mkdir /tmp/d && echo ok",
    ];
    let (p, profile) = record_seccomp(&argv);
    no_runtime_setup(&profile);
    let call = made_one_of(main_workload(&p), &["mkdir", "mkdirat"]);
    proven_by_the_engine(&argv, &profile, &call);
}

/// Recorded with seccomp=unconfined, runc installs no filter: its boundary is assumed, and
/// the profile still starts the container under the engine's default options.
#[test]
fn an_unconfined_recording_still_gives_a_profile_that_starts_the_container() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let argv = ["docker", "run", "--rm", "--security-opt", "seccomp=unconfined", &img, "sh", "-c", "mkdir /tmp/d"];
    let (p, profile) = record_seccomp(&argv);
    assert!(main_workload(&p)["seccomp"]["boundary"].as_str().unwrap().starts_with("assumed"), "{}", main_workload(&p)["seccomp"]["boundary"]);
    let file = oci_file(&profile);
    // The rewritten command replaces seccomp=unconfined with the profile.
    let (status, _, stderr) = verify(&file, &argv);
    assert_eq!(status, 0, "{stderr}");
    assert!(engine_runs(&["docker", "run", "--rm", &img, "sh", "-c", "mkdir /tmp/d"], &file));
}

#[test]
fn a_plain_command_runs_under_the_filter_capprof_installs() {
    require_root();
    let argv = ["/bin/busybox", "sh", "-c", "mkdir -p /tmp/capprof-seccomp-plain && rmdir /tmp/capprof-seccomp-plain"];
    let (p, profile) = record_seccomp(&argv);
    let w = &p["workloads"][0];
    assert_eq!(w["kind"], "command");
    let file = oci_file(&profile);
    let (status, v, stderr) = verify(&file, &argv);
    assert_eq!(status, 0, "{stderr}");
    assert!(refused(&v["workloads"][0]).is_empty(), "{}", v["workloads"][0]["seccomp"]);
    let call = made_one_of(w, &["rmdir", "unlinkat"]);
    let (status, v, stderr) = verify(&without(&file, &call), &argv);
    assert_eq!(status, 1, "fails without {call}: {stderr}");
    // (Its error message is refused too: the successful run never wrote one.)
    assert!(refused(&v["workloads"][0]).contains(&call), "{}", v["workloads"][0]["seccomp"]);
    // With a capability set too: capprof drops capabilities after installing the filter, as
    // runc does, so those calls are in every command's list.
    let (status, _, stderr) = capprof_json(&["verify", "--caps", "none", "--seccomp", file.to_str().unwrap()], &argv);
    assert_eq!(status, 0, "under no capability and the profile: {stderr}");
}

/// A 32-bit compat call (int 0x80) is recorded on the i386 table, the profile names that
/// architecture, and the filter capprof installs refuses it there once it is left out.
#[test]
fn compat_calls_are_recorded_on_their_own_table() {
    require_root();
    let argv = [scenario().display().to_string(), "compat-getpid".into()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (p, profile) = record_seccomp(&argv);
    let s = &p["workloads"][0]["seccomp"];
    assert!(s["architectures"].as_array().unwrap().iter().any(|a| a == "i386"), "{s}");
    let compat: Vec<&str> = s["syscalls"].as_array().unwrap().iter().filter(|c| c["arch"] == "i386").map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(compat, ["getpid"], "only getpid went through int 0x80");
    let file = oci_file(&profile);
    let oci: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(oci["architectures"].as_array().unwrap().iter().any(|a| a == "SCMP_ARCH_X86"), "{oci}");
    let (status, _, stderr) = verify(&file, &argv);
    assert_eq!(status, 0, "{stderr}");
    let (status, v, stderr) = verify(&without(&file, "getpid"), &argv);
    assert_eq!(status, 1, "{stderr}");
    let refused_compat: Vec<&Value> = v["workloads"][0]["seccomp"]["refused"].as_array().unwrap().iter().filter(|r| r["arch"] == "i386").collect();
    assert_eq!(refused_compat.len(), 1, "{}", v["workloads"][0]["seccomp"]);
    assert_eq!(refused_compat[0]["name"], "getpid");
}

/// `minimize --seccomp`: the set and the allow list proven together, every trial after the
/// first under the recorded list.
#[test]
fn minimize_proves_the_allow_list_with_the_set() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let argv = ["docker", "run", "--rm", &img, "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"];
    let (status, p, stderr) = capprof_json(&["minimize", "--seccomp"], &argv);
    assert_eq!(status, 0, "{stderr}");
    let w = main_workload(&p);
    assert_eq!(added(w), ["CHOWN"], "{stderr}");
    assert!(w["verification"]["seccomp"].is_string(), "{}", w["verification"]);
    assert!(stderr.contains("under the recorded seccomp allow list: works"), "{stderr}");
    let file = scratch("seccomp").join(format!("{}.json", unique()));
    std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    let oci = oci_file(&file);
    let set = ["docker", "run", "--rm", "--cap-drop=ALL", "--cap-add=CHOWN", &img, "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"];
    assert!(engine_runs(&set, &oci), "the minimal set and the allow list, run by Docker");
}

/// A call the recording never saw, refused on the re-run and needed, is added back (`proven`),
/// and the widened list is the one every later trial runs under.
#[test]
fn minimize_adds_back_what_the_re_run_needed() {
    require_root();
    let dir = scratch("seccomp-widen");
    let (marker, made) = (dir.join("ran-once"), dir.join("made"));
    // The recorded run only leaves the marker; every later run makes a directory instead (and
    // fails when it cannot).
    let script = format!("[ -e {m} ] && exec mkdir -p {d}; exec touch {m}", m = marker.display(), d = made.display());
    let argv = ["/bin/busybox", "sh", "-c", &script];
    let (status, p, stderr) = capprof_json(&["minimize", "--seccomp"], &argv);
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("added back"), "{stderr}");
    let w = &p["workloads"][0];
    let proven: Vec<&str> = w["seccomp"]["syscalls"].as_array().unwrap().iter().filter(|s| s["source"] == "proven").map(|s| s["name"].as_str().unwrap()).collect();
    assert!(proven.iter().any(|n| *n == "mkdir" || *n == "mkdirat"), "{proven:?}: {stderr}");
    assert!(stderr.contains("confirming"), "the search ran on under the widened list: {stderr}");
}

/// A full system-call map is a counted loss, said on stderr and in the profile: never a
/// silently short allow list.
#[test]
fn a_full_syscall_map_is_reported() {
    require_root();
    let file = scratch("seccomp").join(format!("{}.json", unique()));
    let out = Command::new(capprof())
        .env("CAPPROF_SYSCALL_KEYS", "1")
        .args(["record", "--seccomp", "-f", "json", "-o"])
        .arg(&file)
        .args(["--", "sh", "-c", "ls / >/dev/null; cat /dev/null; env >/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(p["losses"]["syscalls_map_full"].as_u64().unwrap() > 0, "{}", p["losses"]);
    assert!(stderr.contains("LOSS") && stderr.contains("system-call map was full"), "{stderr}");
}

/// The outputs refer to the profile file capprof writes beside them; the SPO resource is
/// valid YAML with the allow list.
#[test]
fn outputs_carry_the_seccomp_profile() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("seccomp-outputs");
    let argv = ["docker", "run", "--rm", "--name", "capprof-sc-out", &img, "sh", "-c", "mkdir /tmp/d"];
    let run = |format: &str| -> String {
        let out = dir.join(format!("out.{format}"));
        let r = Command::new(capprof()).args(["record", "--seccomp", "-f", format, "-o"]).arg(&out).arg("--").args(argv).output().unwrap();
        assert!(r.status.success(), "{format}: {}", String::from_utf8_lossy(&r.stderr));
        std::fs::read_to_string(&out).unwrap()
    };
    let line = run("docker-run");
    let file = dir.join("capprof-sc-out.seccomp.json");
    assert!(line.contains(&format!("--security-opt seccomp={}", file.display())), "{line}");
    assert!(names_of(&file).contains(&"execve".to_string()));
    assert!(Command::new("sh").args(["-c", line.trim()]).stdout(Stdio::null()).status().unwrap().success(), "the docker-run line runs: {line}");
    let k8s = run("k8s");
    assert!(k8s.contains("type: Localhost") && k8s.contains("localhostProfile: capprof/capprof-sc-out.seccomp.json"), "{k8s}");
    let compose = run("compose");
    assert!(compose.contains(&format!("seccomp:{}", file.display())), "{compose}");
    let spo = run("spo");
    let check = Command::new("python3")
        .args(["-c", "import sys, yaml; d = yaml.safe_load(sys.stdin); assert d['kind'] == 'SeccompProfile' and d['spec']['defaultAction'] == 'SCMP_ACT_ERRNO' and 'execve' in d['spec']['syscalls'][0]['names'], d"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(spo.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(check.success(), "{spo}");
}

#[test]
fn the_daemon_learns_a_containers_calls_across_a_restart() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("seccomp-daemon");
    let name = format!("capprof-sc-{}", std::process::id());
    let id = format!("container:{img}/{name}");
    let socket = dir.join("capprof.sock");
    let state = dir.join("state.redb");
    let start = || {
        let child = Command::new(capprof())
            .args(["daemon", "--seccomp", "--flush-interval", "1", "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Command::new("curl").args(["-fsS", "--unix-socket"]).arg(&socket).arg("http://capprof/health").output().unwrap().status.success() {
            assert!(Instant::now() < deadline, "the daemon answers");
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    };
    let calls = |want: &str| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = Command::new(capprof()).args(["export", &id, "-f", "json", "--socket"]).arg(&socket).output().unwrap();
            let names: Vec<String> = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|p| p["workloads"][0]["seccomp"]["syscalls"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string())
                .collect();
            if names.iter().any(|n| n == want) || Instant::now() > deadline {
                return names;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let docker = |rm: bool, script: &str| {
        let rm = if rm { &["--rm"][..] } else { &[][..] };
        let ok = Command::new("docker").arg("run").args(rm).args(["--name", &name, &img, "sh", "-c", script]).stdout(Stdio::null()).status().unwrap().success();
        assert!(ok, "docker run {script}");
    };
    let mut d = start();
    docker(true, "mkdir /tmp/d");
    let first = calls("mkdir");
    assert!(first.iter().any(|n| n == "mkdir" || n == "mkdirat"), "{first:?}");
    // Killed: the pinned programs go on counting; the same container runs again, calling
    // something new (kept until the next daemon can ask Docker its name); that daemon drains
    // what the pinned programs counted.
    unsafe { libc::kill(d.id() as i32, libc::SIGKILL) };
    let _ = d.wait();
    docker(false, "sync");
    d = start();
    let after = calls("sync");
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(after.contains(&"sync".to_string()), "learned while no daemon ran: {after:?}");
    assert!(first.iter().all(|n| after.contains(n)), "nothing forgotten");
    // The exported profile starts the container.
    let file = dir.join("exported.json");
    let out = Command::new(capprof()).args(["export", &id, "-f", "seccomp", "-o"]).arg(&file).arg("--socket").arg(&socket).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for script in ["mkdir /tmp/d", "sync"] {
        assert!(engine_runs(&["docker", "run", "--rm", &img, "sh", "-c", script], &file), "{script} under the exported profile");
    }
    let _ = d.kill();
    let _ = d.wait();
    let detach = Command::new(capprof()).args(["daemon", "--detach", "--socket"]).arg(&socket).arg("--state").arg(&state).output().unwrap();
    assert!(detach.status.success(), "{}", String::from_utf8_lossy(&detach.stderr));
}

/// The Debian image with the host's prometheus (Debian's package: a Go server, linked to
/// glibc) copied in: a Go runtime's threads beside glibc's.
fn debian_go_image() -> String {
    let tag = "capprof-test:bookworm-prometheus";
    if Command::new("docker").args(["image", "inspect", tag]).output().is_ok_and(|o| o.status.success()) {
        return tag.into();
    }
    let base = debian_python_image();
    let dir = scratch("go-image");
    std::fs::copy("/usr/bin/prometheus", dir.join("prometheus")).expect("prometheus (scripts/setup.sh installs it)");
    std::fs::write(dir.join("prometheus.yml"), "global:\n  scrape_interval: 1m\n").unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {base}\nCOPY prometheus /usr/bin/prometheus\nCOPY prometheus.yml /etc/prometheus.yml\n")).unwrap();
    let out = Command::new("docker").args(["build", "-q", "--network", "none", "-t", tag]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    tag.into()
}

/// `check` passes within 20 s.
fn serves(check: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if Command::new("sh").args(["-c", check]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Records `server` (a `docker run` of a multi-threaded server on the host network) with
/// `--seccomp` until `check` passes, then has Docker itself run it under the recorded seccomp
/// profile and capability set, detached, and asks it the same request twice (a thread per
/// request). Returns the recorded seccomp section.
fn engine_serves_under_its_recording(server: &[&str], check: &str) -> Value {
    let (status, p, stderr) = capprof_json(&["record", "--seccomp", "--check", check, "--timeout", "30"], server);
    assert_eq!(status, 0, "record --seccomp --check: {stderr}");
    let w = main_workload(&p).clone();
    let file = scratch("served").join("profile.json");
    std::fs::write(&file, serde_json::to_string(&p).unwrap()).unwrap();
    let oci = oci_file(&file);
    let run = server.iter().position(|a| *a == "run").unwrap();
    let name = format!("capprof-served-{}", unique());
    let mut cmd = Command::new("docker");
    cmd.args(&server[1..=run]).args(["-d", "--name", &name, "--security-opt"]).arg(format!("seccomp={}", oci.display())).arg("--cap-drop=ALL");
    for c in added(&w) {
        cmd.arg(format!("--cap-add={c}"));
    }
    let started = cmd.args(server[run + 1..].iter().filter(|a| **a != "--rm")).output().unwrap();
    assert!(started.status.success(), "docker run under the recorded profile: {}", String::from_utf8_lossy(&started.stderr));
    let served = serves(check) && serves(check);
    let logs = Command::new("docker").args(["logs", "--tail", "20", &name]).output().unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(served, "{server:?} under its recorded profile {} did not serve: {}{}", oci.display(), String::from_utf8_lossy(&logs.stdout), String::from_utf8_lossy(&logs.stderr));
    w["seccomp"].clone()
}

/// glibc's pthread_create asks clone3 first and falls back to clone only on ENOSYS, which
/// Docker's default profile answers: recorded under it, clone3 never entered, and a profile
/// answering EPERM for it stops python's threading server at its first request. The recorded
/// profile answers clone3 with ENOSYS, as the engine did, and Docker runs the server under it.
#[test]
fn threaded_servers_serve_under_their_recorded_profiles() {
    require_root();
    let _serial = container_lock();
    let img = debian_python_image();
    let check = "curl -fsS -m 5 -o /dev/null http://127.0.0.1:8097/";
    let server = ["docker", "run", "--rm", "--network", "host", &img, "python3", "-m", "http.server", "--bind", "127.0.0.1", "8097"];
    let s = engine_serves_under_its_recording(&server, check);
    let enosys: Vec<&str> = s["enosys"].as_array().map(|a| a.iter().map(|e| e["name"].as_str().unwrap()).collect()).unwrap_or_default();
    assert!(enosys.contains(&"clone3"), "clone3 was answered ENOSYS by Docker's profile while recording: {s}");
    assert!(!s["syscalls"].as_array().unwrap().iter().any(|c| c["name"] == "clone3"), "{s}");
    // A profile that answers clone3 EPERM instead (the default for a call never made) does
    // not serve: the rule is what makes it work.
    let p = scratch("eperm").join("p.json");
    let file = oci_file_of(&s, &p);
    let mut oci: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    oci["syscalls"].as_array_mut().unwrap().truncate(1);
    std::fs::write(&file, serde_json::to_string(&oci).unwrap()).unwrap();
    let name = format!("capprof-eperm-{}", unique());
    let run = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--network", "host", "--security-opt"])
        .arg(format!("seccomp={}", file.display()))
        .args([&img, "python3", "-m", "http.server", "--bind", "127.0.0.1", "8097"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let served = serves(check);
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(!served, "python's threading server needs its clone3 answered ENOSYS");

    // Recorded without any filter, clone3 entered: allowed.
    let unconfined = ["docker", "run", "--rm", "--network", "host", "--security-opt", "seccomp=unconfined", &img, "python3", "-m", "http.server", "--bind", "127.0.0.1", "8097"];
    let s = engine_serves_under_its_recording(&unconfined, check);
    assert!(s["syscalls"].as_array().unwrap().iter().any(|c| c["name"] == "clone3"), "{s}");

    // A Go server (Debian's prometheus), recorded under Docker's default profile.
    let go = debian_go_image();
    let check = "curl -fsS -m 5 -o /dev/null http://127.0.0.1:9497/-/ready";
    let server = ["docker", "run", "--rm", "--network", "host", &go, "prometheus", "--config.file=/etc/prometheus.yml", "--storage.tsdb.path=/tmp/tsdb", "--web.listen-address=127.0.0.1:9497"];
    engine_serves_under_its_recording(&server, check);
}

/// The OCI file of a recorded seccomp section, written beside `path`.
fn oci_file_of(seccomp: &Value, path: &Path) -> PathBuf {
    let profile = serde_json::json!({
        "capprof_version": env!("CARGO_PKG_VERSION"), "kernel": "", "backend": {"name": "", "sees_opts": false, "classification": ""},
        "duration_ms": 0, "losses": {"checks_seen": 0, "checks_map_full": 0, "events_dropped": 0, "tasks_map_full": 0, "site_unknown": 0},
        "workloads": [{"name": "w", "kind": "container", "command": [], "cgroup": "", "exit_status": null,
            "capabilities": {"drop": ["ALL"], "add": []}, "would_need": [], "optional": [], "no_new_privileges_safe": true, "checks": [], "seccomp": seccomp}]
    });
    std::fs::write(path, serde_json::to_string(&profile).unwrap()).unwrap();
    oci_file(path)
}
