//! `cargo xtask churn`: the daemon under workload churn. N short-lived cgroups (named like
//! systemd services, so the daemon's `--services` mode learns each as a workload) each make K
//! SYS_CHROOT checks and disappear. Reports the daemon's peak RSS and CPU per check, the kernel
//! map's size afterwards, and whether every check reached the store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn run(release: &Path, cgroups: u32, checks: u32) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("capprof-churn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("d.sock");
    let daemon = Daemon(
        release.join("capprof"),
        dir.clone(),
        Command::new(release.join("capprof"))
            .args(["daemon", "--services", "--flush-interval", "1", "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(dir.join("state.redb"))
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("CAPPROF_DEBUG_ATTRIBUTION").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .context("capprof daemon")?,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&socket, "/health").is_err() {
        if Instant::now() > deadline {
            bail!("daemon did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = daemon.2.id();
    let cpu_before = cpu_ticks(pid)?;
    let parent = unified()?.join(format!("capprof-churn-{}", std::process::id()));
    std::fs::create_dir_all(&parent)?;
    let scenario = release.join("scenario");
    let start = Instant::now();
    for i in 0..cgroups {
        let cg = parent.join(format!("churn-{i}.service"));
        std::fs::create_dir(&cg)?;
        // Join the cgroup, then exec: the daemon counts a task from its exec in the cgroup on.
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("echo 0 > {}/cgroup.procs && exec {} chroot-n {checks}", cg.display(), scenario.display()))
            .status()?;
        if !status.success() {
            bail!("churn cgroup {i} failed");
        }
        std::fs::remove_dir(&cg)?;
    }
    let wall = start.elapsed();
    // Two flush intervals: counts durable, finished cgroups' keys evicted.
    std::thread::sleep(Duration::from_secs(3));
    let cpu = (cpu_ticks(pid)? - cpu_before) as f64 / ticks_per_second();
    let peak_kib = status_kib(pid, "VmHWM:")?;
    let health = get(&socket, "/health")?;
    let map_left: u64 = json_number(&health, "\"kernel_map_checks\":").unwrap_or(0);
    let metrics = get(&socket, "/metrics")?;
    let mut learned = 0u64;
    let mut persisted = 0u64;
    let mut seen = std::collections::HashSet::new();
    for line in metrics.lines().filter(|l| l.starts_with("capprof_checks_total{") && l.contains("workload=\"service:churn-") && l.contains("capability=\"SYS_CHROOT\"") && l.contains("class=\"needed\"")) {
        learned += 1;
        persisted += line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        if let Some(n) = line.split("churn-").nth(1).and_then(|r| r.split('.').next()).and_then(|n| n.parse::<u32>().ok()) {
            seen.insert(n);
        }
    }
    let missing: Vec<u32> = (0..cgroups).filter(|i| !seen.contains(i)).take(10).collect();
    if !missing.is_empty() {
        eprintln!("churn: no SYS_CHROOT learned for cgroups {missing:?}; their other series:");
        for i in &missing {
            for l in metrics.lines().filter(|l| l.contains(&format!("churn-{i}.service"))) {
                eprintln!("  {l}");
            }
        }
        eprintln!("{}", health.lines().filter(|l| l.contains("unattributed") || l.contains("site_unknown")).collect::<Vec<_>>().join("\n"));
    }
    let lost = metrics.lines().filter(|l| l.starts_with("capprof_losses_total")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum::<u64>();
    drop(daemon);
    let _ = std::fs::remove_dir(&parent);
    let expected = cgroups as u64 * checks as u64;
    println!("| cgroups | checks each | wall | workloads learned | SYS_CHROOT checks stored | lost (kernel counters) | daemon peak RSS | daemon CPU per check | kernel map entries after |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {cgroups} | {checks} | {:.1} s | {learned} / {cgroups} | {persisted} / {expected} | {lost} | {:.1} MiB | {:.2} µs | {map_left} |",
        wall.as_secs_f64(),
        peak_kib as f64 / 1024.0,
        cpu * 1e6 / expected.max(1) as f64
    );
    if learned != cgroups as u64 || persisted != expected || lost != 0 {
        bail!("the daemon lost data under churn");
    }
    Ok(())
}

/// The capprof binary, the state directory, the daemon.
struct Daemon(PathBuf, PathBuf, Child);

impl Drop for Daemon {
    /// SIGTERM, then `daemon --detach`: its pinned programs do not outlive the benchmark.
    fn drop(&mut self) {
        unsafe { libc::kill(self.2.id() as i32, libc::SIGTERM) };
        let _ = self.2.wait();
        let _ = Command::new(&self.0).args(["daemon", "--detach", "--socket"]).arg(self.1.join("d.sock")).arg("--state").arg(self.1.join("state.redb")).output();
    }
}

pub fn unified() -> Result<PathBuf> {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if Path::new(p).join("cgroup.procs").exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("no cgroup v2 mount")
}

fn get(socket: &Path, target: &str) -> Result<String> {
    let out = Command::new("curl").args(["-fsS", "--unix-socket"]).arg(socket).arg(format!("http://capprof{target}")).output()?;
    if !out.status.success() {
        bail!("GET {target} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn json_number(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    text[at..].trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit(')').next().context("stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 11 and 12 after the command name.
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn ticks_per_second() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).context("status")
}
