//! BENCHMARKS.md's `--seccomp` table: what the system-call hook adds to every system call,
//! in scope (counted) and out of scope (one task-storage lookup), against nothing attached and
//! against capprof without `--seccomp` (which attaches no system-call hook). One `getppid()`
//! loop process, phases alternating around it as in the per-check tables.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::{median, monotonic_ns, record_cgroup_window, range, Batches};

const LOOP_SECS: u64 = 100;

/// The tool phases of a round, in order (each followed by a nothing-attached phase).
const TOOLS: [(&str, bool, bool); 3] = [
    ("capprof, no --seccomp, loop in scope", false, true),
    ("capprof --seccomp, loop in scope", true, true),
    ("capprof --seccomp, loop out of scope", true, false),
];

pub fn run(capprof: &Path, scenario: &Path) -> Result<()> {
    let unified = crate::churn::unified()?;
    let cgroup = unified.join(format!("capprof-bench-sc-{}", std::process::id()));
    let idle = unified.join(format!("capprof-bench-sc-idle-{}", std::process::id()));
    for d in [&cgroup, &idle] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let rel = |d: &Path| format!("/{}", d.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let script = format!("echo $$ > {}/cgroup.procs && exec taskset -c 1 {} timed-loop getppid {LOOP_SECS}", cgroup.display(), scenario.display());
    let child = Command::new("sh").args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let loop_end = monotonic_ns() + LOOP_SECS * 1_000_000_000;
    // (tool index or None for nothing, from, to)
    let mut windows: Vec<(Option<usize>, u64, u64)> = Vec::new();
    let nothing = |windows: &mut Vec<(Option<usize>, u64, u64)>| {
        let start = monotonic_ns() + 100_000_000;
        std::thread::sleep(Duration::from_millis(700));
        windows.push((None, start, monotonic_ns()));
    };
    std::thread::sleep(Duration::from_millis(300));
    nothing(&mut windows);
    while monotonic_ns() + 7_000_000_000 < loop_end {
        for (i, (_, seccomp, in_scope)) in TOOLS.iter().enumerate() {
            let target = if *in_scope { rel(&cgroup) } else { rel(&idle) };
            let extra: &[&str] = if *seccomp { &["--seccomp"] } else { &[] };
            let attached = record_cgroup_window(capprof, &target, extra)?;
            windows.push((Some(i), attached + 100_000_000, attached + 1_100_000_000));
            nothing(&mut windows);
        }
    }
    let batches = Batches::of(child, &[&cgroup, &idle])?;
    let level = |(_, from, to): (Option<usize>, u64, u64)| batches.level(from, to);
    let mut base = Vec::new();
    let mut added: Vec<Vec<f64>> = vec![Vec::new(); TOOLS.len()];
    for i in 1..windows.len().saturating_sub(1) {
        let Some(tool) = windows[i].0 else { continue };
        let (Some(before), Some(during), Some(after)) = (level(windows[i - 1]), level(windows[i]), level(windows[i + 1])) else { continue };
        let b = (before + after) / 2.0;
        base.push(b);
        added[tool].push(during - b);
    }
    if added.iter().any(Vec::is_empty) {
        bail!("the getppid loop produced no complete round");
    }
    println!("\n## `--seccomp`: per system call (getppid), in and out of scope\n");
    println!("One `getppid()` loop process ({LOOP_SECS} s, CPU 1, every call timed); the harness alternates nothing attached");
    println!("with `capprof record --cgroup` on the loop's cgroup without `--seccomp` (no system-call hook), with");
    println!("`--seccomp` (the loop's calls counted), and `--seccomp` on an idle cgroup (the loop out of scope: one");
    println!("task-storage lookup per call), each followed by nothing. Added cost = phase minus the mean of the");
    println!("nothing phases either side; median over the rounds (range), two clock reads per call included.\n");
    println!("| phase | added per call | × nothing attached | rounds |");
    println!("|---|---|---|---|");
    let nothing_ns = median(&mut base.clone());
    println!("| nothing attached | {nothing_ns:.0} ns per call | 1.00 | {} |", base.len());
    for (i, (what, ..)) in TOOLS.iter().enumerate() {
        let m = median(&mut added[i].clone());
        println!("| {what} | {m:+.0} ns ({}) | {:.2} | {} |", range(&added[i]), (nothing_ns + m) / nothing_ns, added[i].len());
    }
    let in_scope = median(&mut added[1].clone());
    let out_of_scope = median(&mut added[2].clone());
    println!("\nIn scope / out of scope: {:.1}× the added cost.", in_scope / out_of_scope.max(1.0));
    Ok(())
}

/// Kernel-measured run time of the system-call program, in and out of scope, beside an empty
/// program on the same tracepoint (bpftrace 0.17 has no raw tracepoints: its
/// `tracepoint:raw_syscalls:sys_enter {}`, whose perf-event flavour also builds a record the
/// program reads nothing of): the floor.
pub fn program_times(capprof: &Path, scenario: &Path) -> Result<()> {
    const ROUNDS: usize = 7;
    let unified = crate::churn::unified()?;
    let cgroup = unified.join(format!("capprof-bench-scp-{}", std::process::id()));
    let idle = unified.join(format!("capprof-bench-scp-idle-{}", std::process::id()));
    for d in [&cgroup, &idle] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let rel = |d: &Path| format!("/{}", d.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let secs = ROUNDS as u64 * 8 + 10;
    let script = format!("echo $$ > {}/cgroup.procs && exec taskset -c 1 {} timed-loop getppid {secs}", cgroup.display(), scenario.display());
    let mut child = Command::new("sh").args(["-c", &script]).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let (mut inside, mut outside, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let _stats = crate::bench::StatsOn::new()?;
        let empty = crate::bench::Bpftrace::start_script("tracepoint:raw_syscalls:sys_enter { }")?;
        let before = empty.program_stats()?;
        inside.push(syscall_program_ns(capprof, &rel(&cgroup))?);
        outside.push(syscall_program_ns(capprof, &rel(&idle))?);
        let after = empty.program_stats()?;
        empty.stop()?;
        floor.push((after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(&idle);
    let (fl, i, o) = (median(&mut floor), median(&mut inside), median(&mut outside));
    println!("\n### Kernel BPF statistics of the system-call program (sys_enter), {ROUNDS} rounds\n");
    println!("The same `getppid()` loop; per round, with the kernel's bpf_stats on and an empty bpftrace program on the");
    println!("same tracepoint (the floor of a program there; bpftrace 0.17 attaches it as a perf tracepoint),");
    println!("`capprof record --seccomp --bpf-stats --cgroup` of");
    println!("the loop's cgroup (every call of the host runs the program; the loop's are counted) then of an idle");
    println!("cgroup (all out of scope). Run time per invocation, median round; the program runs for every system call");
    println!("on the host, so the figures mix the loop's calls with the rest of the host's.\n");
    println!("| program | run time per system call | × empty program |");
    println!("|---|---|---|");
    println!("| empty program (bpftrace `tracepoint:raw_syscalls:sys_enter {{ }}`) | {fl:.0} ns | 1.00 |");
    println!("| capprof, loop in scope | {i:.0} ns | {:.2} |", i / fl);
    println!("| capprof, everything out of scope | {o:.0} ns | {:.2} |", o / fl);
    Ok(())
}

/// `record --seccomp --bpf-stats --cgroup REL --duration 2`: the sys_enter program's mean.
fn syscall_program_ns(capprof: &Path, rel: &str) -> Result<f64> {
    crate::bench::program_mean_ns(capprof, &["--seccomp", "--duration", "2"], &["--cgroup".into(), rel.into()], "\"syscall_program\"")
}
