//! The benchmarks of BENCHMARKS.md, in one run so the ratios compare like with like:
//! per-check overhead on two loops (nothing attached / capprof / bpftrace's count-only
//! one-liner), and the fixed cost of `capprof record -- true` (wall time, peak RSS).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const BPFTRACE: &str = "tracepoint:capability:cap_capable { @[cgroup, args->cap, args->ret] = count(); }";
const ROUNDS: usize = 5;

pub fn run(release: &Path, iterations: u64) -> Result<()> {
    let capprof = release.join("capprof");
    let scenario = release.join("scenario");
    println!("## Per-check overhead ({iterations} iterations per loop, median of {ROUNDS} rounds)\n");
    println!("| loop | nothing attached | capprof | bpftrace one-liner | capprof added | bpftrace added | capprof/bpftrace added |");
    println!("|---|---|---|---|---|---|---|");
    for (name, what) in [("setuid-loop", "setuid(0): one audited CAP_SETUID check"), ("mmap-loop", "mmap+munmap: one CAP_SYS_ADMIN overcommit probe")] {
        let n = iterations.to_string();
        let mut base = Vec::new();
        let mut cap = Vec::new();
        let mut bpf = Vec::new();
        // Interleaved rounds: drift on the machine hits all three alike.
        for _ in 0..ROUNDS {
            base.push(loop_ns(Command::new(&scenario).args([name, &n]))?);
            cap.push(loop_ns(Command::new(&capprof).args(["record", "-f", "json", "-o", "/dev/null", "--"]).arg(&scenario).args([name, &n]))?);
            let tracer = Bpftrace::start()?;
            bpf.push(loop_ns(Command::new(&scenario).args([name, &n]))?);
            tracer.stop();
        }
        let (b, c, t) = (median(&mut base), median(&mut cap), median(&mut bpf));
        println!(
            "| {what} | {b:.0} ns | {c:.0} ns | {t:.0} ns | {:+.0} ns | {:+.0} ns | {:.2} |",
            c - b,
            t - b,
            (c - b) / (t - b)
        );
    }

    println!("\n## Fixed cost: attach, run `true`, detach (mean of 10 runs)\n");
    println!("| command | wall time | peak RSS |");
    println!("|---|---|---|");
    let (wall, rss) = fixed_cost(Command::new(&capprof).args(["record", "-f", "json", "-o", "/dev/null", "--", "true"]))?;
    println!("| capprof record -- true | {:.3} s | {:.1} MiB |", wall, rss);
    let (wall, rss) = fixed_cost(Command::new("bpftrace").args(["-e", BPFTRACE, "-c", "/bin/true"]))?;
    println!("| bpftrace -e '<one-liner>' -c /bin/true | {:.3} s | {:.1} MiB |", wall, rss);
    Ok(())
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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
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

    fn stop(mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
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
