//! Build and test orchestration: `cargo xtask setup|demo|test|bench|vm-test|vm-systemd-test|vm`.
//!
//! Every command that needs the machine prepared runs `scripts/setup.sh` first (idempotent:
//! apt packages, bpf-linker, the debian-bpf toolchain, tracefs, dockerd), so each one works on a
//! fresh machine by itself.

mod bench;
mod bench_daemon;
mod bench_hooks;
mod bench_seccomp;
mod churn;
mod cpio;
mod rootfs;
mod vm;
mod vm_systemd;
mod vm_test;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install and start everything capprof needs (scripts/setup.sh).
    Setup,
    /// Set up, build, and record the bundled example (a tiny server on port 80).
    Demo,
    /// Set up, build, and run every test on the real kernel, then the record scenarios on a
    /// second kernel (Debian 6.1 under QEMU) under its kprobe and fexit backends, then the
    /// systemd services on that kernel with systemd as PID 1.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build in release mode, and run the benchmarks of BENCHMARKS.md.
    Bench {
        /// Iterations of each per-check loop.
        #[arg(long, default_value_t = 200_000)]
        iterations: u64,
        /// Only the program run-time tables (each program alone on the hook against the floor, and
        /// the check program with the floor around it on the same checks).
        #[arg(long)]
        programs_only: bool,
        /// Only the per-system-call table (getppid: what a call without a check pays).
        #[arg(long)]
        syscalls_only: bool,
        /// Only the daemon's other hooks, per run (every socket, bind, fork, exec and exit on
        /// the host runs one).
        #[arg(long)]
        hooks_only: bool,
    },
    /// Only BENCHMARKS.md's `--seccomp` table (the system-call hook per call, in and out of
    /// scope); `bench` includes it.
    BenchSeccomp,
    /// The daemon under load (BENCHMARKS.md): nginx/wrk and redis/redis-benchmark in containers
    /// with nothing, the daemon, or the bpftrace one-liner attached; then a soak of containers
    /// started and stopped under load (the daemon's CPU, RSS and losses).
    BenchDaemon {
        /// Rounds of the load measurements (each measures every case once; 0: only the
        /// accounting table).
        #[arg(long, default_value_t = 7)]
        rounds: usize,
        /// Length of the soak.
        #[arg(long, default_value_t = 600)]
        soak_secs: u64,
        /// Containers started and stopped during the soak.
        #[arg(long, default_value_t = 200)]
        containers: u32,
    },
    /// The daemon under churn: N short-lived cgroups, K checks each; fails if anything is lost.
    Churn {
        #[arg(long, default_value_t = 1000)]
        cgroups: u32,
        #[arg(long, default_value_t = 20)]
        checks: u32,
    },
    /// Boot Debian's 6.1 kernel under QEMU and run the record scenarios under its backends
    /// (kprobe, fexit); fails when any set differs.
    VmTest,
    /// Boot a Debian bookworm root file system (mmdebstrap) with systemd as PID 1 under QEMU and
    /// test `record|verify|minimize --unit` and the systemd drop-in on nginx, ssh and chrony.
    VmSystemdTest,
    /// Set up the QEMU VM (scripts/vm-setup.sh) and run a shell script as root on Linux 6.1.
    Vm {
        /// Boot the systemd root file system (systemd as PID 1) instead of a busybox initramfs;
        /// binaries go to /usr/local/bin.
        #[arg(long)]
        systemd: bool,
        /// A host binary to copy into the VM's /bin, with its shared libraries (repeatable).
        #[arg(long = "bin")]
        bins: Vec<PathBuf>,
        /// Seconds before the VM is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// The script, run with /bin/sh (words are joined with spaces).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        script: Vec<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.cmd {
        Cmd::Setup => setup(),
        Cmd::Demo => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "--bin", "capprof", "--example", "tiny_server"])?;
            let target = root().join("target/release");
            eprintln!("xtask: capprof record -- tiny_server (binds port 80, serves one request)");
            run(Command::new(target.join("capprof")).arg("record").arg("--").arg(target.join("examples/tiny_server")))
        }
        Cmd::Test { args } => {
            setup()?;
            // Default members only: capprof-ebpf is built for BPF by capprof/build.rs, never for the host.
            cargo(&["build", "--all-targets"])?;
            let mut test = vec!["test", "--no-fail-fast"];
            test.extend(args.iter().map(String::as_str));
            let tests = cargo(&test);
            // A test killed half-way leaves its daemon's pinned programs attached: the machine
            // is the tests' own, so none survives the run.
            remove_daemon_pins();
            // The kprobe and fexit backends on a second kernel (unless a filter was given).
            let vm = if args.is_empty() {
                let release = root().join("target/release");
                cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])
                    .and_then(|_| vm_test::run(&release))
                    .and(vm_systemd::run(&release))
            } else {
                Ok(())
            };
            tests.and(vm)
        }
        Cmd::Bench { iterations, programs_only, syscalls_only, hooks_only } => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            let release = root().join("target/release");
            if programs_only {
                return bench::program_times(&release.join("capprof"), &release.join("scenario"), &iterations.to_string());
            }
            if syscalls_only {
                return bench::syscall_times(&release.join("capprof"), &release.join("scenario"));
            }
            if hooks_only {
                return bench_hooks::run(&release);
            }
            bench::run(&release, iterations)
        }
        Cmd::BenchSeccomp => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            let release = root().join("target/release");
            bench_seccomp::run(&release.join("capprof"), &release.join("scenario"))?;
            bench_seccomp::program_times(&release.join("capprof"), &release.join("scenario"))
        }
        Cmd::BenchDaemon { rounds, soak_secs, containers } => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            bench_daemon::run(&root().join("target/release"), rounds, std::time::Duration::from_secs(soak_secs), containers)
        }
        Cmd::Churn { cgroups, checks } => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            churn::run(&root().join("target/release"), cgroups, checks)
        }
        Cmd::VmTest => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            vm_test::run(&root().join("target/release"))
        }
        Cmd::VmSystemdTest => {
            setup()?;
            cargo(&["build", "--release", "-p", "capprof", "-p", "capprof-tests"])?;
            vm_systemd::run(&root().join("target/release"))
        }
        Cmd::Vm { systemd, bins, timeout, script } => {
            vm::cli(systemd, &bins, &script.join(" "), std::time::Duration::from_secs(timeout))
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn setup() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("capprof loads eBPF programs: run this as root");
    }
    run(Command::new("bash").arg(root().join("scripts/setup.sh")))
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args).current_dir(root()))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Removes every pin of capprof daemons (`/sys/fs/bpf/capprof`): their programs detach.
fn remove_daemon_pins() {
    fn walk(dir: &std::path::Path) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p);
                let _ = std::fs::remove_dir(&p);
            } else if std::fs::remove_file(&p).is_ok() {
                eprintln!("xtask: removed the leftover pin {}", p.display());
            }
        }
    }
    walk(std::path::Path::new("/sys/fs/bpf/capprof"));
}
