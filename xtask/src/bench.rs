//! The benchmarks of BENCHMARKS.md, in one run so the ratios compare like with like:
//! per-check overhead on two loops (nothing attached / capprof / bpftrace's count-only
//! one-liner), the kernel-measured run time of each tool's program, and the fixed cost of
//! `capprof record -- true` (wall time, peak RSS).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const BPFTRACE: &str = "tracepoint:capability:cap_capable { @[cgroup, args->cap, args->ret] = count(); }";
const ROUNDS: usize = 11;
const LOOPS: [(&str, &str); 2] =
    [("setuid-loop", "setuid(0): one audited CAP_SETUID check"), ("mmap-loop", "mmap+munmap: one CAP_SYS_ADMIN overcommit probe")];

pub fn run(release: &Path, iterations: u64) -> Result<()> {
    let capprof = release.join("capprof");
    let scenario = release.join("scenario");
    let n = iterations.to_string();

    println!("## Per-check overhead, wall clock\n");
    println!("{iterations} iterations per loop in batches of 1,000, pinned to CPU 1; a round's figure is its 10th-percentile");
    println!("batch (filters preemption and steal time). {ROUNDS} interleaved rounds; added cost = loop minus the same");
    println!("round's loop with nothing attached; fastest and median round shown.\n");
    println!("| loop | nothing attached (fastest) | capprof added: fastest / median | bpftrace added: fastest / median |");
    println!("|---|---|---|---|");
    for (name, what) in LOOPS {
        let (mut base, mut cap, mut bpf) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let b = loop_ns(pinned(&scenario).args([name, &n]))?;
            let c = loop_ns(Command::new(&capprof).args(["record", "-f", "json", "-o", "/dev/null", "--", "taskset", "-c", "1"]).arg(&scenario).args([name, &n]))?;
            let tracer = Bpftrace::start()?;
            let t = loop_ns(pinned(&scenario).args([name, &n]))?;
            tracer.stop()?;
            base.push(b);
            cap.push(c - b);
            bpf.push(t - b);
        }
        println!(
            "| {what} | {:.0} ns | {:+.0} / {:+.0} ns | {:+.0} / {:+.0} ns |",
            fastest(&base),
            fastest(&cap),
            median(&mut cap),
            fastest(&bpf),
            median(&mut bpf)
        );
    }

    println!("\n## Program run time per invocation (kernel BPF statistics)\n");
    println!("Measured by the kernel (bpf_stats), fastest of {ROUNDS} rounds. bpftrace's number leaves out the perf");
    println!("tracepoint's record building, which its program needs and capprof's raw tracepoint does not.\n");
    println!("| loop | capprof program | bpftrace program |");
    println!("|---|---|---|");
    for (name, what) in LOOPS {
        let (mut cap, mut bpf) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            cap.push(capprof_program_ns(&capprof, &scenario, name, &n)?);
            let _stats = StatsOn::new()?;
            let tracer = Bpftrace::start()?;
            let before = tracer.program_stats()?;
            loop_ns(pinned(&scenario).args([name, &n]))?;
            let after = tracer.program_stats()?;
            tracer.stop()?;
            bpf.push((after.1 - before.1) as f64 / (after.0 - before.0).max(1) as f64);
        }
        println!("| {what} | {:.0} ns | {:.0} ns |", fastest(&cap), fastest(&bpf));
    }

    println!("\n## Fixed cost: attach, run `true`, detach (mean of 10 runs)\n");
    println!("| command | wall time | peak RSS |");
    println!("|---|---|---|");
    let (wall, rss) = fixed_cost(Command::new(&capprof).args(["record", "-f", "json", "-o", "/dev/null", "--", "true"]))?;
    println!("| capprof record -- true | {wall:.3} s | {rss:.1} MiB |");
    let (wall, rss) = fixed_cost(Command::new("bpftrace").args(["-e", BPFTRACE, "-c", "/bin/true"]))?;
    println!("| bpftrace -e '<one-liner>' -c /bin/true | {wall:.3} s | {rss:.1} MiB |");
    Ok(())
}

/// The loop pinned to CPU 1, as in every column.
fn pinned(program: &Path) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", "1"]).arg(program);
    c
}

/// Runs a loop and reads the ns/iteration the scenario prints.
fn loop_ns(cmd: &mut Command) -> Result<f64> {
    let out = cmd.stderr(Stdio::null()).output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().last().and_then(|l| l.trim().parse().ok()).with_context(|| format!("no ns/iteration in {text:?}"))
}

/// capprof's own report of its check program's mean run time (`--bpf-stats`).
fn capprof_program_ns(capprof: &Path, scenario: &Path, name: &str, n: &str) -> Result<f64> {
    let file = std::env::temp_dir().join("capprof-bench-profile.json");
    let status = Command::new(capprof)
        .args(["record", "--bpf-stats", "-f", "json", "-o"])
        .arg(&file)
        .args(["--", "taskset", "-c", "1"])
        .arg(scenario)
        .args([name, n])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("capprof record --bpf-stats failed: {status}");
    }
    let text = std::fs::read_to_string(&file)?;
    let key = "\"mean_ns\":";
    let at = text.find(key).context("no program statistics in the profile")? + key.len();
    let num: String = text[at..].trim_start().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    Ok(num.parse()?)
}

fn fastest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Kernel BPF statistics on (the sysctl) for as long as it lives.
struct StatsOn;

impl StatsOn {
    fn new() -> Result<Self> {
        std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").context("enabling bpf_stats")?;
        Ok(Self)
    }
}

impl Drop for StatsOn {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    }
}

struct Bpftrace(Child);

impl Bpftrace {
    /// Starts the one-liner and waits until its probe is attached.
    fn start() -> Result<Self> {
        let mut child = Command::new("bpftrace").args(["-e", BPFTRACE]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().context("bpftrace")?;
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
    fn program_stats(&self) -> Result<(u64, u64)> {
        for entry in std::fs::read_dir(format!("/proc/{}/fdinfo", self.0.id()))?.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
            if let (Some(cnt), Some(ns)) = (field("run_cnt:"), field("run_time_ns:")) {
                return Ok((cnt, ns));
            }
        }
        bail!("no BPF program in bpftrace's fd table")
    }

    fn stop(mut self) -> Result<()> {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
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
