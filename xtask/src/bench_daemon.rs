//! What the daemon costs a busy node (BENCHMARKS.md, "The daemon under load"): nginx under
//! wrk and redis under redis-benchmark, each in a container built from Debian's packages,
//! with nothing attached, with `capprof daemon`, and with the bpftrace one-liner, each case
//! measured between two nothing-attached windows and compared with them; then a soak: the daemon's CPU and RSS
//! while containers are started and stopped and the servers are under load, with the kernel's
//! loss counters read at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench::{median, Bpftrace, BPFTRACE};

const IMAGE: &str = "capprof-bench:servers";
const NGINX_PORT: u16 = 18080;
const REDIS_PORT: u16 = 16379;
const WRK_SECS: u64 = 8;

#[derive(Clone, Copy, PartialEq)]
enum Attached {
    Nothing,
    /// Started 0.5 s before the measurement: its start (adopting every task, asking the
    /// engine about both containers while they are young) falls inside the window.
    DaemonStarting,
    /// Started `SETTLE` before: the steady state a node lives in.
    Daemon,
    /// Settled, with the network-use hooks on the bind/socket system-call tracepoints
    /// (`CAPPROF_NET_HOOKS=syscalls`, the fallback and the default before the cgroup socket
    /// programs): every system call on the host takes the kernel's tracing path.
    DaemonSyscallHooks,
    Bpftrace,
}

/// Longer than the daemon's young-container window (10 s) and two flushes (5 s each).
const SETTLE: Duration = Duration::from_secs(15);

impl Attached {
    /// Measured in turn, each between two windows with nothing attached.
    const MEASURED: [Self; 4] = [Self::DaemonStarting, Self::Daemon, Self::DaemonSyscallHooks, Self::Bpftrace];

    fn label(self) -> &'static str {
        match self {
            Self::Nothing => "nothing attached (against its neighbours: the harness's noise)",
            Self::DaemonStarting => "capprof daemon, started 0.5 s before",
            Self::Daemon => "capprof daemon, settled",
            Self::DaemonSyscallHooks => "capprof daemon, settled, network hooks on syscall tracepoints",
            Self::Bpftrace => "bpftrace one-liner",
        }
    }
}

/// Something attached for one measurement; detached when dropped.
enum Guard {
    None,
    // Held for its Drop: the daemon detaches when the measurement ends.
    #[allow(dead_code)]
    Daemon(Daemon),
    Bpftrace(Option<Bpftrace>),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Bpftrace(b) = self {
            if let Some(b) = b.take() {
                let _ = b.stop();
            }
        }
    }
}

fn attach(what: Attached, capprof: &Path) -> Result<Guard> {
    Ok(match what {
        Attached::Nothing => Guard::None,
        Attached::DaemonStarting => Guard::Daemon(Daemon::start(capprof, &[])?),
        Attached::Daemon | Attached::DaemonSyscallHooks => {
            let env: &[(&str, &str)] = if what == Attached::Daemon { &[] } else { &[("CAPPROF_NET_HOOKS", "syscalls")] };
            let d = Daemon::start(capprof, env)?;
            std::thread::sleep(SETTLE);
            Guard::Daemon(d)
        }
        Attached::Bpftrace => Guard::Bpftrace(Some(Bpftrace::start_script(BPFTRACE)?)),
    })
}

/// One window's figures: nginx requests/s and p99 (ms), redis requests/s and p99 (ms).
#[derive(Clone, Copy, Default)]
struct Window {
    nginx: f64,
    nginx_p99: f64,
    redis: f64,
    redis_p99: f64,
}

/// What one case measured over the rounds: its windows, and for each the throughput lost
/// against the mean of the nothing-attached windows just before and after it (paired, so the
/// machine's drift over a round cancels).
#[derive(Default)]
struct Case {
    windows: Vec<Window>,
    nginx_lost: Vec<f64>,
    redis_lost: Vec<f64>,
    /// CPU seconds of the processes beside the server over the wrk windows.
    beside: std::collections::BTreeMap<String, f64>,
}

fn measure(case: &mut Case) -> Result<Window> {
    std::thread::sleep(Duration::from_millis(500));
    let before = side_cpu();
    let (nginx, nginx_p99) = wrk()?;
    for (name, secs) in side_cpu() {
        *case.beside.entry(name.clone()).or_default() += secs - before.get(&name).copied().unwrap_or(0.0);
    }
    let (redis, redis_p99) = redis_benchmark()?;
    let w = Window { nginx, nginx_p99, redis, redis_p99 };
    case.windows.push(w);
    Ok(w)
}

fn lost(base: f64, x: f64) -> f64 {
    (base - x) / base * 100.0
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:+.1} to {hi:+.1} %")
}

pub fn run(release: &Path, rounds: usize, soak: Duration, containers: u32) -> Result<()> {
    // Another build measured the same way (before/after comparisons).
    let capprof = std::env::var_os("CAPPROF_BENCH_BIN").map(PathBuf::from).unwrap_or_else(|| release.join("capprof"));
    servers_image()?;
    let _servers = Servers::start()?;
    // --rounds 0: the accounting alone (and the soak unless --soak-secs 0).
    if rounds == 0 {
        accounting(&capprof)?;
        return if soak.is_zero() { Ok(()) } else { soak_run(&capprof, soak, containers) };
    }
    println!("## The daemon under load: nginx (wrk) and redis (redis-benchmark) in containers\n");
    println!("Each server runs in a container of an image built from Debian's packages (mmdebstrap), on the host's");
    println!("network, pinned to CPU 0; its client runs on CPU 1. {rounds} rounds; in each, every case is measured");
    println!("between two windows with nothing attached (N A N B N C N D N), and its cost is the throughput lost");
    println!("against the mean of those two (paired: the machine's drift over a round cancels). Cases: `capprof");
    println!("daemon` (default options: the check program and the network-use hooks, cgroup socket programs here)");
    println!("started 0.5 s before the measurement, and started {} s before (settled); the settled daemon with the", SETTLE.as_secs());
    println!("network hooks on the bind/socket syscall tracepoints (`CAPPROF_NET_HOOKS=syscalls`); the bpftrace");
    println!("one-liner. wrk: 1 thread, 32 connections, {WRK_SECS} s; redis-benchmark: 32 clients, 200,000 GETs and SETs.");
    println!("The nothing-attached row compares each inner N window with its two neighbours: the noise floor.\n");
    println!("| server | attached | requests/s (median) | p99 latency (median) | throughput lost (median, paired) | range over the rounds |");
    println!("|---|---|---|---|---|---|");
    let mut nothing = Case::default();
    let mut cases: Vec<(Attached, Case)> = Attached::MEASURED.iter().map(|a| (*a, Case::default())).collect();
    for _ in 0..rounds {
        let mut before = measure(&mut nothing)?;
        let mut nothing_windows = vec![before];
        for (what, case) in cases.iter_mut() {
            let w = {
                let _guard = attach(*what, &capprof)?;
                measure(case)?
            };
            let after = measure(&mut nothing)?;
            case.nginx_lost.push(lost((before.nginx + after.nginx) / 2.0, w.nginx));
            case.redis_lost.push(lost((before.redis + after.redis) / 2.0, w.redis));
            nothing_windows.push(after);
            before = after;
        }
        for t in nothing_windows.windows(3) {
            nothing.nginx_lost.push(lost((t[0].nginx + t[2].nginx) / 2.0, t[1].nginx));
            nothing.redis_lost.push(lost((t[0].redis + t[2].redis) / 2.0, t[1].redis));
        }
    }
    let all: Vec<(Attached, &Case)> = std::iter::once((Attached::Nothing, &nothing)).chain(cases.iter().map(|(a, c)| (*a, c))).collect();
    for server in ["nginx", "redis"] {
        for (what, case) in &all {
            let pick = |f: fn(&Window) -> f64| median(&mut case.windows.iter().map(f).collect::<Vec<_>>());
            let (rps, p99, lost) = if server == "nginx" { (pick(|w| w.nginx), pick(|w| w.nginx_p99), &case.nginx_lost) } else { (pick(|w| w.redis), pick(|w| w.redis_p99), &case.redis_lost) };
            println!("| {server} | {} | {rps:.0} | {p99:.2} ms | {:+.2} % | {} |", what.label(), median(&mut lost.clone()), range(lost));
        }
    }
    println!("\nCPU used beside the servers during the nginx measurements (share of one CPU, mean over the rounds; the");
    println!("server's CPU 0 and wrk's CPU 1 are the two CPUs of this machine):\n");
    let names: std::collections::BTreeSet<&String> = all.iter().flat_map(|(_, c)| c.beside.keys()).collect();
    println!("| attached | {} |", names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(names.len()));
    for (what, case) in &all {
        let window = (case.windows.len() as u64 * WRK_SECS) as f64;
        let cells: Vec<String> = names.iter().map(|n| format!("{:.2} %", case.beside.get(*n).copied().unwrap_or(0.0) / window * 100.0)).collect();
        let label = if *what == Attached::Nothing { "nothing attached" } else { what.label() };
        println!("| {label} | {} |", cells.join(" | "));
    }
    accounting(&capprof)?;
    if soak.is_zero() {
        println!("\nSoak skipped (--soak-secs 0).");
        return Ok(());
    }
    soak_run(&capprof, soak, containers)
}

/// CPU time of every thread of `pid` (schedstat: nanoseconds on the CPU, steal excluded).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok()).filter_map(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok())).sum()
}

/// (runs, run time in ns) summed over the BPF programs `pid` holds open, each program once.
fn programs_of(pid: u32) -> (u64, u64) {
    program_stats(pid).values().fold((0, 0), |(n, t), (a, b)| (n + a, t + b))
}

/// (runs, run time in ns) of each BPF program `pid` holds open, by program id (fdinfo, with
/// kernel.bpf_stats_enabled on).
pub(crate) fn program_stats(pid: u32) -> std::collections::BTreeMap<u64, (u64, u64)> {
    let mut seen = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return seen };
    for fd in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else { continue };
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(id), Some(t), Some(n)) = (field("prog_id:"), field("run_time_ns:"), field("run_cnt:")) {
            seen.insert(id, (n, t));
        }
    }
    seen
}

/// The nginx worker's pid (the one process of the bench's nginx container that serves).
fn nginx_worker() -> Option<u32> {
    let out = Command::new("pgrep").args(["-f", "nginx: worker"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

/// What each tool costs nginx by accounting rather than by throughput (which this machine's
/// noise hides): over wrk windows, the tool's own CPU time and its programs' run time (kernel
/// BPF statistics), per request, against nginx's own CPU time per request. The
/// syscall-tracepoint variant is left out: its cost is the kernel's tracing path on every
/// system call, which no BPF statistic counts (the per-system-call table measures it).
fn accounting(capprof: &Path) -> Result<()> {
    const WINDOWS: usize = 3;
    println!("\nBy accounting ({WINDOWS} wrk windows each, kernel BPF statistics on): what the tool spends per nginx");
    println!("request, its own process (all threads, schedstat) and its BPF programs' run time, against nginx's CPU");
    println!("time per request. It counts the tool's CPU wherever it ran; indirect costs (caches) are not in it.\n");
    println!("| attached | nginx CPU per request | tool process per request | its programs: runs per request | their time per request | accounted cost |");
    println!("|---|---|---|---|---|---|");
    let worker = nginx_worker().context("the nginx worker's pid")?;
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let mut idle = Vec::new();
    let result = (|| -> Result<()> {
        for what in [Attached::Daemon, Attached::Bpftrace] {
            let guard = attach(what, capprof)?;
            let pid = match &guard {
                Guard::Daemon(d) => d.child.id(),
                Guard::Bpftrace(Some(b)) => b.pid(),
                _ => bail!("nothing attached"),
            };
            // Idle first (the servers wait, no client): what the tool costs a node by itself.
            let (cpu0, wakes0) = (cpu_ns(pid), wakeups(pid));
            std::thread::sleep(IDLE);
            let (cpu1, wakes1) = (cpu_ns(pid), wakeups(pid));
            let secs = IDLE.as_secs_f64();
            idle.push(format!("| {} | {:.3} ms | {:.1} |", what.label(), (cpu1 - cpu0) as f64 / 1e6 / secs, (wakes1 - wakes0) as f64 / secs));
            let (tool0, progs0, nginx0) = (cpu_ns(pid), programs_of(pid), cpu_ns(worker));
            let mut requests = 0.0;
            for _ in 0..WINDOWS {
                requests += wrk()?.0 * WRK_SECS as f64;
            }
            let (tool1, progs1, nginx1) = (cpu_ns(pid), programs_of(pid), cpu_ns(worker));
            let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / requests;
            let (nginx, tool, runs, prog) = (per(nginx0, nginx1), per(tool0, tool1), per(progs0.0, progs1.0), per(progs0.1, progs1.1));
            println!("| {} | {nginx:.0} ns | {tool:.1} ns | {runs:.4} | {prog:.2} ns | {:.3} % |", what.label(), (tool + prog) / nginx * 100.0);
            drop(guard);
        }
        Ok(())
    })();
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    println!("\nIdle, before those windows ({} s, the servers waiting for a client): the tool's own CPU (all threads,", IDLE.as_secs());
    println!("schedstat) per second, and how often its threads were woken.\n");
    println!("| attached | CPU per second | wakeups per second |");
    println!("|---|---|---|");
    for row in idle {
        println!("{row}");
    }
    result
}

/// How long the accounting measures each tool idle.
const IDLE: Duration = Duration::from_secs(20);

/// Times `pid`'s threads were scheduled in (schedstat's third field), summed.
fn wakeups(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    dir.flatten().filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok()).filter_map(|s| s.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok())).sum()
}

/// The daemon's CPU and RSS while `containers` containers start and stop over `soak`, the
/// servers under wrk all along; the kernel's loss counters from its metrics at the end.
fn soak_run(capprof: &Path, soak: Duration, containers: u32) -> Result<()> {
    let daemon = Daemon::start(capprof, &[])?;
    let load = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c8", &format!("-d{}s", soak.as_secs() + 5), &format!("http://127.0.0.1:{NGINX_PORT}/")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("wrk")?;
    let _load = Kill(load);
    let start = Instant::now();
    let every = soak / containers.max(1);
    let mut samples = Vec::new();
    let mut started = 0u32;
    let mut failed = 0u32;
    let mut next_sample = Duration::ZERO;
    while started < containers {
        if start.elapsed() >= next_sample {
            samples.push((start.elapsed().as_secs(), daemon.rss_kib()?, daemon.cpu_secs()?));
            next_sample += Duration::from_secs(30);
        }
        // Ten Deployment-like services, restarted over and over: what a node's churn looks like.
        let name = format!("capprof-soak-{started}");
        let ok = Command::new("docker")
            .args(["run", "--rm", "--name", &name, "--network", "none", "--label", "com.docker.compose.project=soak"])
            .args(["--label", &format!("com.docker.compose.service=svc-{}", started % 10), IMAGE, "sh", "-c", "chown 65534 /tmp; sleep 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success();
        failed += u32::from(!ok);
        started += 1;
        let due = every * started;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    samples.push((start.elapsed().as_secs(), daemon.rss_kib()?, daemon.cpu_secs()?));
    let metrics = daemon.metrics()?;
    let lost: Vec<String> = metrics.lines().filter(|l| l.starts_with("capprof_losses_total")).map(str::to_string).collect();
    let workloads = metrics.lines().find_map(|l| l.strip_prefix("capprof_workloads{").and_then(|r| r.split_once("} ")).map(|(_, n)| n.to_string())).unwrap_or_default();
    println!("\n## Soak: {containers} containers started and stopped over {} s, nginx under wrk all along\n", soak.as_secs());
    println!("`capprof daemon` (default options) while one container starts every {:.1} s (ten Compose-labelled services,", every.as_secs_f64());
    println!("each container `chown`s and sleeps 1 s) and wrk keeps nginx busy. The daemon's RSS (VmRSS) and CPU time");
    println!("(utime + stime) sampled every 30 s.\n");
    println!("| at | daemon RSS | daemon CPU time (total) | CPU share since the previous sample |");
    println!("|---|---|---|---|");
    let mut prev: Option<(u64, f64)> = None;
    for (t, rss, cpu) in &samples {
        let share = prev.map(|(pt, pc)| if *t > pt { format!("{:.2} %", (cpu - pc) / (*t - pt) as f64 * 100.0) } else { "-".into() }).unwrap_or_else(|| "-".into());
        println!("| {t} s | {:.1} MiB | {cpu:.2} s | {share} |", *rss as f64 / 1024.0);
        prev = Some((*t, *cpu));
    }
    println!("\nContainers that failed to run: {failed}. Workloads the daemon knows at the end: {workloads}. Kernel loss counters at the end:\n");
    println!("```\n{}\n```", lost.join("\n"));
    let total_lost: u64 = lost.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum();
    let (first, last) = (samples.get(1).map(|s| s.1).unwrap_or(0), samples.last().map(|s| s.1).unwrap_or(0));
    println!("\nRSS from the 30 s sample to the end: {:.1} → {:.1} MiB.", first as f64 / 1024.0, last as f64 / 1024.0);
    drop(daemon);
    if total_lost != 0 {
        bail!("the daemon lost {total_lost} checks or events during the soak");
    }
    Ok(())
}

/// CPU seconds (user + system, threads included) of the processes that run beside the
/// servers: the engines and the tools under test.
fn side_cpu() -> std::collections::BTreeMap<String, f64> {
    const SIDE: [&str; 6] = ["dockerd", "containerd-shim", "containerd", "capprof", "bpftrace", "kworker"];
    let tick = 100.0; // USER_HZ
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ... utime stime are fields 14 and 15; comm may hold spaces.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        let Some(name) = SIDE.iter().find(|n| comm.starts_with(**n)) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(u), Some(s)) = (fields.get(11).and_then(|v| v.parse::<f64>().ok()), fields.get(12).and_then(|v| v.parse::<f64>().ok())) else { continue };
        *out.entry(name.to_string()).or_default() += (u + s) / tick;
    }
    out
}

fn wrk() -> Result<(f64, f64)> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c32", &format!("-d{WRK_SECS}s"), "--latency", &format!("http://127.0.0.1:{NGINX_PORT}/")])
        .output()
        .context("wrk (Debian's wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse::<f64>().ok()).with_context(|| format!("wrk said: {text}"))?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(|v| v.trim()).and_then(duration_ms).with_context(|| format!("wrk said: {text}"))?;
    Ok((rps, p99))
}

/// wrk's `1.23ms`, `456.00us`, `1.02s` in milliseconds.
fn duration_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// GET and SET requests/s (their mean) and the larger p99, from redis-benchmark's CSV.
fn redis_benchmark() -> Result<(f64, f64)> {
    let out = Command::new("taskset")
        .args(["-c", "1", "redis-benchmark", "-p", &REDIS_PORT.to_string(), "-c", "32", "-n", "200000", "-t", "get,set", "--csv"])
        .output()
        .context("redis-benchmark (Debian's redis-tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = Vec::new();
    let mut p99: f64 = 0.0;
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    for line in text.lines().filter(|l| l.starts_with("\"SET\"") || l.starts_with("\"GET\"")) {
        let cols: Vec<f64> = line.split(',').skip(1).filter_map(|c| c.trim_matches('"').parse().ok()).collect();
        if cols.len() >= 6 {
            rps.push(cols[0]);
            p99 = p99.max(cols[5]);
        }
    }
    if rps.len() != 2 {
        bail!("redis-benchmark said: {text}");
    }
    Ok((rps.iter().sum::<f64>() / 2.0, p99))
}

/// nginx and redis in containers of the bench image, on the host's network, pinned to CPU 0.
struct Servers;

impl Servers {
    fn start() -> Result<Self> {
        Self::remove();
        let conf = std::env::temp_dir().join("capprof-bench-nginx.conf");
        std::fs::write(
            &conf,
            format!("worker_processes 1;\ndaemon off;\nerror_log stderr;\npid /tmp/nginx.pid;\nevents {{ worker_connections 1024; }}\nhttp {{ access_log off; server {{ listen 127.0.0.1:{NGINX_PORT}; location / {{ return 200 \"ok\\n\"; }} }} }}\n"),
        )?;
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new("docker").args(["run", "-d", "--network", "host", "--cpuset-cpus", "0"]).args(args).output()?;
            if !out.status.success() {
                bail!("docker run {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        run(&["--name", "capprof-bench-nginx", "-v", &format!("{}:/etc/nginx/bench.conf:ro", conf.display()), IMAGE, "nginx", "-c", "/etc/nginx/bench.conf"])?;
        run(&["--name", "capprof-bench-redis", IMAGE, "redis-server", "--port", &REDIS_PORT.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !(curl_ok() && Command::new("redis-cli").args(["-p", &REDIS_PORT.to_string(), "ping"]).output().is_ok_and(|o| o.stdout.starts_with(b"PONG"))) {
            if Instant::now() > deadline {
                bail!("nginx or redis did not come up in their containers");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(Self)
    }

    fn remove() {
        let _ = Command::new("docker").args(["rm", "-f", "capprof-bench-nginx", "capprof-bench-redis"]).output();
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        Self::remove();
    }
}

fn curl_ok() -> bool {
    Command::new("curl").args(["-fsS", &format!("http://127.0.0.1:{NGINX_PORT}/")]).output().is_ok_and(|o| o.status.success())
}

/// The servers' image, from Debian's packages (mmdebstrap), once per machine.
fn servers_image() -> Result<()> {
    if Command::new("docker").args(["image", "inspect", IMAGE]).output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("bench-daemon: building {IMAGE} from Debian's nginx-light and redis-server (mmdebstrap, a few minutes)");
    let tar = std::env::temp_dir().join("capprof-bench-servers.tar");
    let status = Command::new("mmdebstrap").args(["--quiet", "--variant=apt", "--include=nginx-light,redis-server", "bookworm"]).arg(&tar).status().context("mmdebstrap")?;
    if !status.success() {
        bail!("mmdebstrap failed: {status}");
    }
    let status = Command::new("docker").arg("import").arg(&tar).arg(IMAGE).stdout(Stdio::null()).status()?;
    let _ = std::fs::remove_file(&tar);
    if !status.success() {
        bail!("docker import failed: {status}");
    }
    Ok(())
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `capprof daemon` on a throw-away state, detached (nothing left attached) when dropped.
pub(crate) struct Daemon {
    child: Child,
    dir: PathBuf,
    capprof: PathBuf,
}

impl Daemon {
    /// The daemon's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn start(capprof: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("capprof-bench-daemon-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(capprof)
            .args(["daemon", "--socket"])
            .arg(dir.join("d.sock"))
            .arg("--state")
            .arg(dir.join("state.redb"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("capprof daemon")?;
        let d = Self { child, dir, capprof: capprof.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.get("/health").is_err() {
            if Instant::now() > deadline {
                bail!("the daemon did not answer");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    fn get(&self, path: &str) -> Result<String> {
        let out = Command::new("curl").args(["-fsS", "--unix-socket"]).arg(self.dir.join("d.sock")).arg(format!("http://capprof{path}")).output()?;
        if !out.status.success() {
            bail!("GET {path}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn metrics(&self) -> Result<String> {
        self.get("/metrics")
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).context("VmRSS")
    }

    fn cpu_secs(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let (u, s): (f64, f64) = (fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0), fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0));
        Ok((u + s) / ticks)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = Command::new(&self.capprof).args(["daemon", "--detach", "--socket"]).arg(self.dir.join("d.sock")).arg("--state").arg(self.dir.join("state.redb")).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
