//! What the daemon's hooks other than the check program cost every task on a node, per run:
//! each inet socket and bind runs `sock_create` and `bind4`, each fork, exec and exit runs the
//! task hooks, whether or not the task is a container's. Kernel BPF statistics of each of the
//! daemon's programs (found through its open file descriptors) over loops the host runs outside
//! any container, under a settled `capprof daemon`. `CAPPROF_BENCH_BIN` measures another
//! capprof binary (an older build) the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::bench::{median, StatsOn};
use crate::bench_daemon::{program_stats, Daemon};

const ROUNDS: usize = 3;
const SOCKETS: u32 = 100_000;
const EXITS: u32 = 3_000;

pub fn run(release: &Path) -> Result<()> {
    let capprof = std::env::var_os("CAPPROF_BENCH_BIN").map(PathBuf::from).unwrap_or_else(|| release.join("capprof"));
    let scenario = release.join("scenario");
    println!("## What the other hooks cost the host, per run (kernel BPF statistics)\n");
    println!("`{}` daemon, settled; loops run by the host on CPU 1, outside any container; median of {ROUNDS} rounds.\n", capprof.display());
    println!("| load | program | runs per iteration | mean per run |");
    println!("|---|---|---|---|");
    let daemon = Daemon::start(&capprof, &[])?;
    std::thread::sleep(Duration::from_secs(5));
    let _stats = StatsOn::new()?;
    let shell_loop = format!("i=0; while [ $i -lt {EXITS} ]; do /bin/true; i=$((i+1)); done");
    let loads: [(&str, u32, &[&str], Vec<std::ffi::OsString>); 2] = [
        (
            "TCP socket bound to an ephemeral port, then closed",
            SOCKETS,
            &["sock_create", "bind4"],
            vec![scenario.into(), "sockets".into(), SOCKETS.to_string().into()],
        ),
        ("fork, exec and exit of `/bin/true`", EXITS, &["task_fork", "exec_prepare", "exec_entry", "task_exec", "task_exit"], vec!["sh".into(), "-c".into(), shell_loop.into()]),
    ];
    for (what, iterations, programs, argv) in loads {
        let mut per_run: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut runs: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for _ in 0..ROUNDS {
            let before = programs_by_name(daemon.pid())?;
            pinned(&argv)?;
            let after = programs_by_name(daemon.pid())?;
            for name in programs {
                // An older build may name its programs otherwise: its row says so.
                let (Some(a), Some(b)) = (before.get(*name), after.get(*name)) else { continue };
                let n = b.0.saturating_sub(a.0);
                runs.entry(name).or_default().push(n as f64 / iterations as f64);
                per_run.entry(name).or_default().push(b.1.saturating_sub(a.1) as f64 / n.max(1) as f64);
            }
        }
        for name in programs {
            match (runs.get_mut(name), per_run.get_mut(name)) {
                (Some(r), Some(t)) => println!("| {what} ({iterations}) | `{name}` | {:.2} | {:.0} ns |", median(r), median(t)),
                _ => println!("| {what} ({iterations}) | `{name}` | no such program in this build | |"),
            }
        }
    }
    Ok(())
}

/// Runs `argv` pinned to CPU 1, where the bench's loops run.
fn pinned(argv: &[std::ffi::OsString]) -> Result<()> {
    let status = Command::new("taskset").args(["-c", "1"]).args(argv).stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("{argv:?}: {status}");
    }
    Ok(())
}

/// (runs, run time in ns) of each BPF program `pid` holds open, by name.
fn programs_by_name(pid: u32) -> Result<BTreeMap<String, (u64, u64)>> {
    program_stats(pid).into_iter().map(|(id, stats)| Ok((program_name(id as u32)?, stats))).collect()
}

/// A loaded program's name, through `BPF_PROG_GET_FD_BY_ID` and `BPF_OBJ_GET_INFO_BY_FD`.
fn program_name(id: u32) -> Result<String> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // struct bpf_prog_info: `name` (16 bytes) at offset 64.
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: the bpf system call with a zeroed attribute buffer of its documented size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_GET_FD_BY_ID, attr.as_mut_ptr(), attr.len()) };
    if fd < 0 {
        bail!("program {id}: {}", std::io::Error::last_os_error());
    }
    let mut info = [0u8; 256];
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: as above; the kernel writes at most `info.len()` bytes into `info`.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, attr.as_mut_ptr(), attr.len()) };
    // SAFETY: the descriptor the first call returned.
    unsafe { libc::close(fd as i32) };
    if rc < 0 {
        bail!("program {id}: {}", std::io::Error::last_os_error());
    }
    let name = &info[64..80];
    Ok(String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(16)]).into_owned())
}
