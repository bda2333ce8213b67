//! Ctrl-C mid-recording: the workload gets the signal, the profile of what ran is written,
//! the kernel programs are detached and the cgroup is removed.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;

/// BPF program ids capprof holds (from its fd table).
fn program_ids(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(entry.path()) {
            ids.extend(text.lines().filter_map(|l| l.strip_prefix("prog_id:")).filter_map(|v| v.trim().parse::<u32>().ok()));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Is a BPF program with this id still loaded?
fn program_loaded(id: u32) -> bool {
    #[repr(C)]
    struct Attr {
        prog_id: u32,
        next_id: u32,
        open_flags: u32,
    }
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let attr = Attr { prog_id: id, next_id: 0, open_flags: 0 };
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, &attr, std::mem::size_of::<Attr>()) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        return true;
    }
    false
}

fn interrupt(to_group: bool) {
    require_root();
    let dir = scratch(if to_group { "int-group" } else { "int-one" });
    let file = dir.join("profile.json");
    let s = scenario();
    // A distinct duration per test: tests run in parallel and find their sleeper by name.
    let secs = if to_group { 31 } else { 30 };
    let script = format!("{0} chroot / && {0} sleep {secs}", s.display());
    let mut cmd = Command::new(capprof());
    cmd.args(["record", "-f", "json", "-o", file.to_str().unwrap(), "--", "sh", "-c", &script])
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    // The sleep process itself, not the shell whose command line also mentions it.
    let sleeper = format!("^{} sleep {secs}$", s.display());

    // Wait until the workload runs: the chroot check has happened by the time sleep starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        ids = program_ids(pid);
        let sleeping = Command::new("pgrep").args(["-f", &sleeper]).output().map(|o| o.status.success()).unwrap_or(false);
        if ids.len() >= 4 && sleeping {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ids.len() >= 4, "capprof holds its 4 programs while recording: {ids:?}");

    let target = if to_group { -(pid as i32) } else { pid as i32 };
    unsafe { libc::kill(target, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    assert_eq!(out.status.code(), Some(130), "the workload died of SIGINT: 128+2; stderr: {stderr}");
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("profile written")).unwrap();
    let w = &profile["workloads"][0];
    assert_eq!(w["exit_status"], 130);
    assert_eq!(w["capabilities"]["add"], serde_json::json!(["SYS_CHROOT"]), "what ran before Ctrl-C is kept");
    // Detached at exit; the kernel frees programs after an RCU grace period.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.iter().any(|id| program_loaded(*id)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in ids {
        assert!(!program_loaded(id), "program {id} still loaded 5 s after capprof exited");
    }
    let cgroup = w["cgroup"].as_str().unwrap();
    for mount in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        assert!(!std::path::Path::new(&format!("{mount}{cgroup}")).exists(), "cgroup {cgroup} removed");
    }
    assert!(!Command::new("pgrep").args(["-f", &sleeper]).status().unwrap().success(), "no workload left");
}

#[test]
fn sigint_to_capprof_is_forwarded_to_the_workload() {
    interrupt(false);
}

#[test]
fn sigint_to_the_process_group_like_a_terminal() {
    interrupt(true);
}
