//! The benchmarks of BENCHMARKS.md, in one run so the ratios compare like with like:
//! per-check overhead on two loops (nothing attached / capprof / bpftrace's count-only
//! one-liner) measured inside one process while the tools attach and detach around it, the
//! kernel-measured run time of both tools' programs on the same checks, and the fixed cost of
//! `capprof record -- true` (wall time, peak RSS).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub(crate) const BPFTRACE: &str = "tracepoint:capability:cap_capable { @[cgroup, args->cap, args->ret] = count(); }";
/// The floor of a bpftrace program on the perf tracepoint.
const BPFTRACE_EMPTY: &str = "tracepoint:capability:cap_capable { }";
const ROUNDS: usize = 11;
/// How long each phased loop process runs (rounds of four phases fit in it).
const LOOP_SECS: u64 = 120;
const TIMED: [(&str, &str); 2] =
    [("setuid", "setuid(0): one audited CAP_SETUID check"), ("mmap", "mmap+munmap: one CAP_SYS_ADMIN overcommit probe")];
const LOOPS: [(&str, &str); 2] =
    [("setuid-loop", "setuid(0): one audited CAP_SETUID check"), ("mmap-loop", "mmap+munmap: one CAP_SYS_ADMIN overcommit probe")];

pub fn run(release: &Path, iterations: u64) -> Result<()> {
    let capprof = release.join("capprof");
    let scenario = release.join("scenario");
    let n = iterations.to_string();
    // First, while this harness is small: a child's peak RSS includes the parent's at spawn
    // (exec records the old mm's high-water mark), and the timed loops' output grows ours.
    let fixed = [
        ("capprof record -- true", fixed_cost(Command::new(&capprof).args(["record", "-f", "json", "-o", "/dev/null", "--", "true"]))?),
        ("bpftrace -e '<one-liner>' -c /bin/true", fixed_cost(Command::new("bpftrace").args(["-e", BPFTRACE, "-c", "/bin/true"]))?),
    ];

    println!("## Per-check overhead, wall clock, one process\n");
    println!("One loop process per row runs for {LOOP_SECS} s pinned to CPU 1, timing every call; meanwhile the harness");
    println!("alternates: nothing attached, `capprof record --cgroup` on the loop's cgroup, nothing, the bpftrace one-liner,");
    println!("and so on. A phase's figure is the median call of the batches that ran entirely inside it (each batch:");
    println!("1,000 calls, its median call); a tool's added cost = its phase minus the mean of the nothing-attached");
    println!("phases either side. Median over the rounds; the times include two clock reads per call.\n");
    println!("| loop | nothing attached | capprof added | bpftrace added | capprof / bpftrace | rounds |");
    println!("|---|---|---|---|---|---|");
    for (kind, what) in TIMED {
        let p = phased(&capprof, &scenario, kind, Second::Bpftrace)?;
        let ratio = median(&mut p.capprof.clone()) / median(&mut p.bpftrace.clone());
        println!("| {what} | {} | {ratio:.2} | {} |", p.columns(), p.capprof.len().min(p.bpftrace.len()));
    }

    syscall_times(&capprof, &scenario)?;

    crate::bench_seccomp::run(&capprof, &scenario)?;
    crate::bench_seccomp::program_times(&capprof, &scenario)?;

    program_times(&capprof, &scenario, &n)?;

    crate::bench_hooks::run(release)?;

    println!("\n## Fixed cost: attach, run `true`, detach (mean of 10 runs)\n");
    println!("| command | wall time | peak RSS |");
    println!("|---|---|---|");
    for (what, (wall, rss)) in fixed {
        println!("| {what} | {wall:.3} s | {rss:.1} MiB |");
    }
    Ok(())
}

/// BENCHMARKS.md's per-system-call table (`cargo xtask bench --syscalls-only` prints only
/// this; with `CAPPROF_NET_HOOKS=syscalls` in the environment, capprof uses the syscall
/// tracepoints for its network-use hooks).
pub fn syscall_times(capprof: &Path, scenario: &Path) -> Result<()> {
    let hooks = if std::env::var("CAPPROF_NET_HOOKS").as_deref() == Ok("syscalls") { "the bind/socket syscall tracepoints (CAPPROF_NET_HOOKS=syscalls)" } else { "cgroup socket programs where the kernel takes them" };
    println!("\n## Per system call without a capability check (getppid)\n");
    println!("A system call that makes no capability check runs none of the check programs. `record --cgroup` attaches");
    println!("the network-use hooks as a recording of containers does; here: {hooks}. While any syscall");
    println!("tracepoint has a program, every system call on the host takes the kernel's tracing path. Same phases as");
    println!("above, on a `getppid()` loop: capprof recording the loop's cgroup (in scope) and an idle cgroup (out of scope).\n");
    println!("| loop | nothing attached | capprof, loop in scope | capprof, loop out of scope | rounds |");
    println!("|---|---|---|---|---|");
    let p = phased(capprof, scenario, "getppid", Second::CapprofElsewhere)?;
    println!("| getppid(): no capability check | {} | {} |", p.columns(), p.capprof.len().min(p.bpftrace.len()));
    Ok(())
}

/// BENCHMARKS.md's program tables: each program alone on the hook, against the floor, then the
/// check program on the same checks as its floor (`cargo xtask bench --programs-only` prints only these).
pub fn program_times(capprof: &Path, scenario: &Path, n: &str) -> Result<()> {
    println!("\n## Program run time per check (kernel BPF statistics), each program alone on the hook\n");
    println!("Kernel BPF statistics over the loop ({n} iterations), one program attached at a time, in turn each");
    println!("round: capprof's check program (`capprof record --bpf-stats`), the floor of any program on the same raw");
    println!("tracepoint (an empty one, attached in its place with `CAPPROF_BENCH_FLOOR=1`), bpftrace's counting");
    println!("one-liner and bpftrace's empty program `tracepoint:capability:cap_capable {{ }}` (a perf tracepoint: its");
    println!("figure leaves out the perf record building that capprof's raw tracepoint does not pay). One at a time:");
    println!("a second program on a tracepoint adds the tracepoint iterator's frame to every program on it (capprof then");
    println!("scans a wider stack window for its call site). Out of scope: the same loop run beside `capprof record -- sleep`,");
    println!("outside the recorded cgroup (what every other task on the host pays while `record` runs).");
    println!("{ROUNDS} rounds; × floor is the median of each round's ratio.\n");
    println!("| loop | capprof in scope: fastest / median | raw-tracepoint floor: median | in scope × floor | capprof out of scope: median | out of scope × floor | bpftrace one-liner: median | bpftrace empty: median |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, what) in LOOPS {
        let (mut cap, mut floor, mut ratio, mut bpf, mut empty) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut outside, mut outside_ratio) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let _stats = StatsOn::new()?;
            let c = capprof_program_ns(capprof, scenario, name, n, false)?;
            let f = capprof_program_ns(capprof, scenario, name, n, true)?;
            let o = capprof_outside_ns(capprof, scenario, name, n)?;
            cap.push(c);
            floor.push(f);
            ratio.push(c / f);
            outside.push(o);
            outside_ratio.push(o / f);
            bpf.push(bpftrace_program_ns(BPFTRACE, scenario, name, n)?);
            empty.push(bpftrace_program_ns(BPFTRACE_EMPTY, scenario, name, n)?);
        }
        println!(
            "| {what} | {:.0} / {:.0} ns | {:.0} ns | {:.2} | {:.0} ns | {:.2} | {:.0} ns | {:.0} ns |",
            fastest(&cap),
            median(&mut cap),
            median(&mut floor),
            median(&mut ratio),
            median(&mut outside),
            median(&mut outside_ratio),
            median(&mut bpf),
            median(&mut empty)
        );
    }

    same_check_times(capprof, scenario, n)
}

/// The check program and the empty one timed on the same checks: the empty program attached
/// before and after it (`CAPPROF_BENCH_FLOOR=around`), so both see the same moment of the
/// machine, and the floor is the mean of a program that runs first (cold) and one that runs
/// right after the check program (warm).
fn same_check_times(capprof: &Path, scenario: &Path, n: &str) -> Result<()> {
    println!("\n## The same, on the same checks\n");
    println!("The empty program attached before and after the check program (`CAPPROF_BENCH_FLOOR=around`): the three");
    println!("run on every check of the loop, so the floor and the check program share each moment of the machine. The");
    println!("tracepoint iterator's frame is in both (calibration finds the call site through it). {ROUNDS} rounds; × floor");
    println!("is the median of each round's ratio, with the lowest and highest.\n");
    println!("| loop | capprof in scope: median | floor on the same checks: median | in scope × floor (lowest–highest) |");
    println!("|---|---|---|---|");
    for (name, what) in LOOPS {
        let (mut cap, mut floor, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let _stats = StatsOn::new()?;
            let (c, f) = capprof_around_ns(capprof, scenario, name, n)?;
            cap.push(c);
            floor.push(f);
            ratio.push(c / f);
        }
        let (low, high) = (fastest(&ratio), slowest(&ratio));
        println!("| {what} | {:.0} ns | {:.0} ns | {:.2} ({low:.2}–{high:.2}) |", median(&mut cap), median(&mut floor), median(&mut ratio));
    }
    Ok(())
}

/// The check program's and the empty program's mean run times over the same checks.
fn capprof_around_ns(capprof: &Path, scenario: &Path, name: &str, n: &str) -> Result<(f64, f64)> {
    let text = profile_text(capprof, Some("around"), &[], &pinned_loop(scenario, name, n))?;
    Ok((mean_ns_after(&text, "\"program\"")?, mean_ns_after(&text, "\"floor_program\"")?))
}

/// `-- taskset -c 1 SCENARIO NAME N`: the loop pinned to CPU 1, as `record`'s target.
fn pinned_loop(scenario: &Path, name: &str, n: &str) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["--", "taskset", "-c", "1"].iter().map(Into::into).collect();
    args.push(scenario.into());
    args.extend([name, n].iter().map(Into::into));
    args
}

/// capprof's own report of its check program's mean run time (`--bpf-stats`), or with
/// `floor` of the empty program attached in its place.
fn capprof_program_ns(capprof: &Path, scenario: &Path, name: &str, n: &str, floor: bool) -> Result<f64> {
    let text = profile_text(capprof, floor.then_some("1"), &[], &pinned_loop(scenario, name, n))?;
    mean_ns_after(&text, "\"program\"")
}

/// The check program's mean run time while the loop runs outside the recorded scope: beside
/// `capprof record --bpf-stats -- sleep 4`, started once the programs are attached. The
/// figure also holds the host's other checks in those seconds (few, next to the loop's).
fn capprof_outside_ns(capprof: &Path, scenario: &Path, name: &str, n: &str) -> Result<f64> {
    let file = std::env::temp_dir().join(format!("capprof-bench-outside-{}.json", std::process::id()));
    let mut rec = Command::new(capprof)
        .args(["record", "--bpf-stats", "-f", "json", "-o"])
        .arg(&file)
        .args(["--", "sleep", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Attach and calibration take well under this.
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("taskset").args(["-c", "1"]).arg(scenario).args([name, n]).stdout(Stdio::null()).status()?;
    let recorded = rec.wait()?;
    if !status.success() || !recorded.success() {
        bail!("{name} loop beside capprof record failed: {status}, {recorded}");
    }
    let text = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_file(&file);
    mean_ns_after(&text, "\"program\"")
}

/// A bpftrace script's program: mean run time per check over the loop, attached alone.
fn bpftrace_program_ns(script: &str, scenario: &Path, name: &str, n: &str) -> Result<f64> {
    let tracer = Bpftrace::start_script(script)?;
    let before = tracer.program_stats()?;
    let status = Command::new("taskset").args(["-c", "1"]).arg(scenario).args([name, n]).stdout(Stdio::null()).status()?;
    let after = tracer.program_stats()?;
    tracer.stop()?;
    if !status.success() {
        bail!("{name} loop failed: {status}");
    }
    Ok((after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64)
}

/// `capprof record --bpf-stats EXTRA -f json -o FILE TARGET`: the mean run time of the
/// program whose statistics follow `section` in the profile's `backend`.
pub(crate) fn program_mean_ns(capprof: &Path, extra: &[&str], target: &[std::ffi::OsString], section: &str) -> Result<f64> {
    mean_ns_after(&profile_text(capprof, None, extra, target)?, section)
}

/// The JSON profile of `capprof record --bpf-stats EXTRA -f json TARGET`, with
/// `CAPPROF_BENCH_FLOOR=FLOOR` when given (the empty program in place of the check program, or
/// around it).
fn profile_text(capprof: &Path, floor: Option<&str>, extra: &[&str], target: &[std::ffi::OsString]) -> Result<String> {
    let file = std::env::temp_dir().join(format!("capprof-bench-profile-{}.json", std::process::id()));
    let mut record = Command::new(capprof);
    match floor {
        Some(floor) => record.env("CAPPROF_BENCH_FLOOR", floor),
        None => record.env_remove("CAPPROF_BENCH_FLOOR"),
    };
    let status = record
        .args(["record", "--bpf-stats"])
        .args(extra)
        .args(["-f", "json", "-o"])
        .arg(&file)
        .args(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("capprof record --bpf-stats {extra:?} failed: {status}");
    }
    let text = std::fs::read_to_string(&file)?;
    let _ = std::fs::remove_file(&file);
    Ok(text)
}

/// The `mean_ns` of the program statistics that follow `section` in a profile's text.
fn mean_ns_after(text: &str, section: &str) -> Result<f64> {
    let at = text.find(section).with_context(|| format!("no {section} statistics in the profile"))?;
    let key = "\"mean_ns\":";
    let from = at + text[at..].find(key).context("no mean_ns")? + key.len();
    let num: String = text[from..].trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    Ok(num.parse()?)
}

fn slowest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Per round: the nothing-attached level and each tool's added cost (ns per call).
struct Phased {
    base: Vec<f64>,
    capprof: Vec<f64>,
    bpftrace: Vec<f64>,
}

/// `min to max` of added costs.
pub(crate) fn range(v: &[f64]) -> String {
    format!("range {:+.0} to {:+.0}", fastest(v), slowest(v))
}

impl Phased {
    /// `base | first tool added (range) | second tool added (range)`.
    fn columns(&self) -> String {
        let added = |v: &[f64]| format!("{:+.0} ns (range {:+.0} to {:+.0})", median(&mut v.to_vec()), fastest(v), slowest(v));
        format!("{:.0} ns | {} | {}", median(&mut self.base.clone()), added(&self.capprof), added(&self.bpftrace))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Nothing,
    Capprof,
    Bpftrace,
}

/// What the second tool phase of a round runs.
#[derive(Clone, Copy, PartialEq)]
enum Second {
    /// The bpftrace one-liner.
    Bpftrace,
    /// capprof recording another (idle) cgroup: the loop is out of its scope.
    CapprofElsewhere,
}

/// One loop process in its own cgroup; tools attach and detach around it (see the table's
/// description). Windows are trimmed so no batch straddles an attach or detach.
fn phased(capprof: &Path, scenario: &Path, kind: &str, second: Second) -> Result<Phased> {
    let cgroup = crate::churn::unified()?.join(format!("capprof-bench-{}", std::process::id()));
    std::fs::create_dir_all(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
    let idle = crate::churn::unified()?.join(format!("capprof-bench-idle-{}", std::process::id()));
    std::fs::create_dir_all(&idle).with_context(|| format!("creating {}", idle.display()))?;
    let idle_rel = format!("/{}", idle.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let script = format!("echo $$ > {}/cgroup.procs && exec taskset -c 1 {} timed-loop {kind} {LOOP_SECS}", cgroup.display(), scenario.display());
    let child = Command::new("sh").args(["-c", &script]).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let loop_end = monotonic_ns() + LOOP_SECS * 1_000_000_000;
    let rel = format!("/{}", cgroup.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    let mut windows: Vec<(Phase, u64, u64)> = Vec::new();
    let nothing = |windows: &mut Vec<(Phase, u64, u64)>| {
        let start = monotonic_ns() + 100_000_000;
        std::thread::sleep(Duration::from_millis(700));
        windows.push((Phase::Nothing, start, monotonic_ns()));
    };
    std::thread::sleep(Duration::from_millis(300));
    nothing(&mut windows);
    // A round: capprof, nothing, bpftrace, nothing (~4 s).
    while monotonic_ns() + 5_000_000_000 < loop_end {
        let attached = record_cgroup_window(capprof, &rel, &[])?;
        windows.push((Phase::Capprof, attached + 100_000_000, attached + 1_100_000_000));
        nothing(&mut windows);
        match second {
            Second::Bpftrace => {
                let tracer = Bpftrace::start()?;
                let attached = monotonic_ns();
                std::thread::sleep(Duration::from_millis(1000));
                windows.push((Phase::Bpftrace, attached, monotonic_ns()));
                tracer.stop()?;
            }
            Second::CapprofElsewhere => {
                let attached = record_cgroup_window(capprof, &idle_rel, &[])?;
                windows.push((Phase::Bpftrace, attached + 100_000_000, attached + 1_100_000_000));
            }
        }
        nothing(&mut windows);
    }
    let batches = Batches::of(child, &[&cgroup, &idle])?;
    let level = |(_, from, to): (Phase, u64, u64)| batches.level(from, to);
    let mut p = Phased { base: Vec::new(), capprof: Vec::new(), bpftrace: Vec::new() };
    for i in 1..windows.len().saturating_sub(1) {
        let (phase, ..) = windows[i];
        if phase == Phase::Nothing {
            continue;
        }
        let (Some(before), Some(during), Some(after)) = (level(windows[i - 1]), level(windows[i]), level(windows[i + 1])) else { continue };
        let base = (before + after) / 2.0;
        p.base.push(base);
        match phase {
            Phase::Capprof => p.capprof.push(during - base),
            _ => p.bpftrace.push(during - base),
        }
    }
    if p.capprof.is_empty() || p.bpftrace.is_empty() {
        bail!("the {kind} loop produced no complete round");
    }
    Ok(p)
}

/// A timed loop's batches: (start ns, end ns, median call ns) per 1,000 calls.
pub(crate) struct Batches(Vec<(u64, u64, f64)>);

impl Batches {
    /// Waits for the loop to end (then removes its cgroups) and reads its batches.
    pub(crate) fn of(child: Child, cgroups: &[&Path]) -> Result<Self> {
        let out = child.wait_with_output()?;
        for c in cgroups {
            let _ = std::fs::remove_dir(c);
        }
        if !out.status.success() {
            bail!("timed loop failed: {}", out.status);
        }
        Ok(Self(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().map(|x| x.parse::<u64>().ok());
                    Some((f.next()??, f.next()??, f.next()?? as f64))
                })
                .collect(),
        ))
    }

    /// The median of the batches entirely inside `[from, to]` (None with fewer than 20).
    pub(crate) fn level(&self, from: u64, to: u64) -> Option<f64> {
        let mut inside: Vec<f64> = self.0.iter().filter(|b| b.0 >= from && b.1 <= to).map(|b| b.2).collect();
        (inside.len() >= 20).then(|| median(&mut inside))
    }
}

/// Runs `capprof record --cgroup REL --duration 1.2` to its end; returns when it attached.
pub(crate) fn record_cgroup_window(capprof: &Path, rel: &str, extra: &[&str]) -> Result<u64> {
    let mut rec = Command::new(capprof)
        .args(["record", "-f", "json", "-o", "/dev/null", "--duration", "1.2", "--cgroup", rel])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = rec.stderr.take().context("capprof stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let attached = loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("recording cgroup") => break monotonic_ns(),
            Some(Ok(_)) => continue,
            other => bail!("capprof record --cgroup did not start: {other:?}"),
        }
    };
    // Drain the rest so capprof never blocks on a full pipe.
    for _ in lines {}
    let status = rec.wait()?;
    if !status.success() {
        bail!("capprof record --cgroup failed: {status}");
    }
    Ok(attached)
}

pub(crate) fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Kernel BPF statistics on (the sysctl) for as long as it lives.
pub(crate) struct StatsOn;

impl StatsOn {
    pub(crate) fn new() -> Result<Self> {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("enabling bpf_stats")?;
        Ok(Self)
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    }
}

pub(crate) struct Bpftrace(Child);

impl Bpftrace {
    /// The bpftrace process.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Starts the one-liner and waits until its probe is attached.
    fn start() -> Result<Self> {
        Self::start_script(BPFTRACE)
    }

    /// Starts a bpftrace script and waits until its probe is attached.
    pub(crate) fn start_script(script: &str) -> Result<Self> {
        let mut child = Command::new("bpftrace").args(["-e", script]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("bpftrace")?;
        let stdout = child.stdout.take().context("bpftrace stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(l)) if l.starts_with("Attaching") => {}
            other => bail!("bpftrace did not attach: {other:?}"),
        }
        // Keep draining so the final map print never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        std::thread::sleep(Duration::from_millis(200));
        Ok(Self(child))
    }

    /// (run count, run time ns) of its BPF program, from its fd table.
    pub(crate) fn program_stats(&self) -> Result<(u64, u64)> {
        for entry in std::fs::read_dir(format!("/proc/{}/fdinfo", self.0.id()))?.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
            if let (Some(cnt), Some(ns)) = (field("run_cnt:"), field("run_time_ns:")) {
                return Ok((cnt, ns));
            }
        }
        bail!("no BPF program in bpftrace's fd table")
    }

    /// SIGINT (bpftrace prints its maps and detaches); bpftrace 0.17 has been seen to miss
    /// one, so it is sent again after a few seconds, and SIGKILL ends a bpftrace that still
    /// runs.
    pub(crate) fn stop(mut self) -> Result<()> {
        for signal in [libc::SIGINT, libc::SIGINT, libc::SIGKILL] {
            unsafe { libc::kill(self.0.id() as i32, signal) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if self.0.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.0.wait()?;
        Ok(())
    }
}

/// Mean wall time and largest peak RSS (MiB) over 10 runs, from wait4's rusage.
fn fixed_cost(cmd: &mut Command) -> Result<(f64, f64)> {
    let mut total = Duration::ZERO;
    let mut rss_kib = 0i64;
    for _ in 0..10 {
        let start = Instant::now();
        let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().with_context(|| format!("{cmd:?}"))?;
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        total += start.elapsed();
        if pid < 0 || std::process::ExitStatus::from_raw(status).code() != Some(0) {
            bail!("{cmd:?} failed (status {status:#x})");
        }
        rss_kib = rss_kib.max(usage.ru_maxrss);
    }
    Ok((total.as_secs_f64() / 10.0, rss_kib as f64 / 1024.0))
}
