//! `capprof record --cgroup PATH`: recording what already runs in a cgroup (a systemd
//! service, a pod) without restarting it. Threads running before capprof attached are
//! workload from the start; processes that join later are counted from their exec.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;
use serde_json::Value;

/// A fresh cgroup v2 directory, removed (after its processes are gone) on drop.
struct TestCgroup {
    dir: PathBuf,
    rel: String,
}

impl TestCgroup {
    fn new() -> Self {
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.procs").exists())
            .expect("a cgroup v2 mount");
        let name = format!("capprof-test-{}", unique());
        let dir = mount.join(&name);
        std::fs::create_dir(&dir).unwrap();
        Self { dir, rel: format!("/{name}") }
    }

    /// Runs `argv` inside the cgroup (joined before its exec).
    fn spawn(&self, argv: &str) -> Reaped {
        Reaped(Command::new("sh").arg("-c").arg(format!("echo $$ > {}/cgroup.procs && exec {argv}", self.dir.display())).spawn().unwrap())
    }
}

/// A child killed if the test fails before waiting for it (a waiting `scenario when` would
/// otherwise outlive the test).
struct Reaped(std::process::Child);

impl Reaped {
    fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `capprof record --cgroup` and returns once its programs are attached.
fn start_recording(cg: &TestCgroup, extra: &[&str], out: &std::path::Path) -> (Reaped, std::thread::JoinHandle<String>) {
    start_recording_with(cg, extra, out, &[])
}

/// [`start_recording`] with variables in capprof's environment.
fn start_recording_with(cg: &TestCgroup, extra: &[&str], out: &std::path::Path, env: &[(&str, &str)]) -> (Reaped, std::thread::JoinHandle<String>) {
    let mut rec = Command::new(capprof())
        .args(["record", "--cgroup", &cg.rel, "-f", "json", "-o"])
        .arg(out)
        .args(extra)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rec.stderr.take().unwrap()).lines();
    let rec = Reaped(rec);
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("recording cgroup") {
            break;
        }
    }
    assert!(seen.contains("recording cgroup"), "capprof did not start recording: {seen}");
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n") + &seen);
    (rec, rest)
}

#[test]
fn running_and_joining_processes_are_counted() {
    require_root();
    let cg = TestCgroup::new();
    let s = scenario();
    let go = scratch("running").join(format!("go-{}", unique()));
    // Running before capprof attaches; acts once told to, in the same process.
    let mut early = cg.spawn(&format!("{} when {} chroot /", s.display(), go.display()));
    std::thread::sleep(Duration::from_millis(200));
    let out = scratch("running").join(format!("{}.json", unique()));
    let (mut rec, stderr) = start_recording(&cg, &["--duration", "2"], &out);
    std::fs::write(&go, "").unwrap();
    // Joins after capprof attached.
    let mut late = cg.spawn(&format!("{} setgid", s.display()));
    // Outside the cgroup: not counted.
    let outside = Command::new(&s).arg("setuid").status().unwrap();
    assert!(outside.success());
    assert!(early.wait().success());
    assert!(late.wait().success());
    let status = rec.wait();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{stderr}");
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let w = &profile["workloads"][0];
    assert_eq!(w["cgroup"], cg.rel.as_str());
    assert_eq!(added(w), vec!["SETGID", "SYS_CHROOT"], "{profile}");
    let chroot = w["checks"].as_array().unwrap().iter().find(|c| c["capability"] == "SYS_CHROOT").unwrap();
    assert_eq!(chroot["classification"], "needed", "the adopted thread is workload, not set-up: {chroot}");
}

#[test]
fn recording_ends_when_the_cgroup_is_removed() {
    require_root();
    let cg = TestCgroup::new();
    let out = scratch("running").join(format!("{}.json", unique()));
    let (mut rec, stderr) = start_recording(&cg, &[], &out);
    let mut p = cg.spawn(&format!("{} chroot /", scenario().display()));
    assert!(p.wait().success());
    let started = Instant::now();
    drop(cg);
    let status = rec.wait();
    assert!(status.success(), "{}", stderr.join().unwrap());
    assert!(started.elapsed() < Duration::from_secs(3), "capprof kept recording a removed cgroup");
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(added(&profile["workloads"][0]), vec!["SYS_CHROOT"], "{profile}");
}

#[test]
fn bad_cgroups_are_usage_errors() {
    require_root();
    for (args, message) in [
        (vec!["record", "--cgroup", "/"], "the root cgroup is the whole host"),
        (vec!["record", "--cgroup", "/capprof-no-such-cgroup"], "no cgroup v2 directory"),
        (vec!["record", "--cgroup", "/a/../b"], "'..' is not allowed"),
        (vec!["record", "--duration", "1", "--", "true"], "--cgroup"),
    ] {
        let out = capprof_cmd(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// A task making check after check outside the recorded cgroup, then moved into it, is
/// counted from the move on: the check program's per-CPU answer for that task ("out of
/// scope") goes stale with the task's cgroup. It joined after its exec, as a runtime's helper
/// does: its checks are set-up, not the workload's.
#[test]
fn a_task_moved_into_the_cgroup_is_counted_from_the_move() {
    require_root();
    let cg = TestCgroup::new();
    let out = scratch("running").join(format!("{}.json", unique()));
    let (mut rec, stderr) = start_recording(&cg, &["--duration", "4"], &out);
    // One CPU: every check follows the last on the same cache slot.
    let mut looper = Reaped(Command::new("taskset").args(["-c", "0"]).arg(scenario()).args(["timed-loop", "setuid", "2.5"]).stdout(Stdio::null()).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::write(cg.dir.join("cgroup.procs"), looper.0.id().to_string()).unwrap();
    assert!(looper.wait().success());
    let status = rec.wait();
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{stderr}");
    let profile: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let checks = profile["workloads"][0]["checks"].as_array().cloned().unwrap_or_default();
    let setuid = checks.iter().find(|c| c["capability"] == "SETUID").unwrap_or_else(|| panic!("the moved task's checks were not counted: {profile}"));
    // About 1.5 s of setuid(0) calls: hundreds of thousands; the bar only says "counted".
    assert!(setuid["count"].as_u64().unwrap() > 1000, "{setuid}");
    assert_ne!(setuid["classification"], "needed", "joined after its exec: set-up: {setuid}");
}

/// A runtime that moves its helper into the container while the helper still execs has
/// placed a set-up task, not started the workload. Go's `os/exec` (runc) and glibc's
/// `posix_spawn` (what `Command::spawn` uses here) return once the child's vfork ends, at its
/// new memory map, before its exec completes; the move can then land inside the exec: runc's
/// `runc init` under podman, now and then on a busy machine. Each child here runs a copy of
/// the helper whose page cache was dropped, so its exec waits for the disk after that point
/// and the move lands inside it (`losses.placed_in_exec` counts the execs that ended in
/// another cgroup than they started in). With CAPPROF_NO_EXEC_PLACEMENT=1 (no record of where
/// an exec started) the same children's SYS_CHROOT comes out needed: the race the test sets
/// up happens.
#[test]
fn a_task_moved_in_during_its_exec_is_set_up() {
    require_root();
    let copy = scratch("running").join(format!("scenario-{}", unique()));
    std::fs::copy(scenario(), &copy).unwrap();
    let record = |env: &[(&str, &str)]| -> Value {
        let cg = TestCgroup::new();
        let out = scratch("running").join(format!("{}.json", unique()));
        let (mut rec, stderr) = start_recording_with(&cg, &["--duration", "3"], &out, env);
        for _ in 0..10 {
            let file = std::fs::File::open(&copy).unwrap();
            // SAFETY: an open descriptor; DONTNEED only drops clean cached pages.
            unsafe { libc::posix_fadvise(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, libc::POSIX_FADV_DONTNEED) };
            let mut child = Command::new(&copy).args(["chroot", "/"]).spawn().unwrap();
            // A child that already ended cannot be moved (ESRCH): it made its check outside.
            let _ = std::fs::write(cg.dir.join("cgroup.procs"), child.id().to_string());
            assert!(child.wait().unwrap().success());
        }
        let status = rec.wait();
        let stderr = stderr.join().unwrap();
        assert!(status.success(), "{stderr}");
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap()
    };
    // sched_prepare_exec (6.10+), and the execve syscall tracepoints older kernels use.
    for env in [&[][..], &[("CAPPROF_EXEC_ENTRY", "syscalls")]] {
        let profile = record(env);
        let placed = profile["losses"]["placed_in_exec"].as_u64().unwrap();
        assert!(placed >= 1, "{env:?}: no move landed inside an exec: {profile}");
        let w = &profile["workloads"][0];
        assert!(w["checks"].as_array().unwrap().iter().any(|c| c["capability"] == "SYS_CHROOT"), "{env:?}: the moved children's checks were counted: {profile}");
        assert_eq!(added(w), Vec::<String>::new(), "{env:?}: moved in during their exec: set-up ({placed} such execs): {profile}");
    }
    let before = record(&[("CAPPROF_NO_EXEC_PLACEMENT", "1")]);
    assert_eq!(before["losses"]["placed_in_exec"], 0, "{before}");
    assert_eq!(added(&before["workloads"][0]), vec!["SYS_CHROOT"], "without the rule the race makes them the workload's: {before}");
}
