//! Command line: raw clap structures first, then validated configurations for the faces.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::backend::{BackendChoice, MapSizes};
use crate::capability::CapSet;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::faces::minimize::{self, MinimizeConfig};
use crate::session::{KernelOptions, RecordOptions, SyscallTracing};
use crate::faces::record::{self, RecordConfig, Target};
use crate::faces::RunConfig;
use crate::session::trial::Probe;
use crate::faces::verify::{self, VerifyConfig};

const AFTER_HELP: &str = "\
Exit codes: `record` exits with the workload's own status (128+N if it was killed by signal N;
with --unit, 0 when the unit started and its --check passed, else 1); `verify` exits 0 when
the workload works under the set and 1 when it does not; `check` exits 0 when the manifests
agree with the profile, 1 when they grant more than it needs, 2 when less. When capprof
itself fails: 64 usage (bad arguments, unknown capability names), 65 malformed input file,
66 workload fails even with every capability, 69 unsupported kernel, 70 internal error,
74 I/O error, 75 something else interferes (a check that already passes, a live daemon on the
socket, another capprof's trial drop-in), 77 missing privileges, 126 command not executable,
127 command not found, 130 interrupted before a trial could be judged (a unit is put back).";

#[derive(Parser, Debug)]
#[command(name = "capprof", version, about = "Least-privilege profiler for Linux capabilities (eBPF)", after_help = AFTER_HELP)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run CMD in a fresh cgroup and report the capabilities it needs.
    Record(RecordArgs),
    /// Run CMD under exactly the given capabilities and report whether it works.
    Verify(VerifyArgs),
    /// Find the smallest capability set CMD works with, proven by re-running it.
    Minimize(MinimizeArgs),
    /// Record every container on the node continuously; serve what is learned on a local API.
    Daemon(DaemonArgs),
    /// List the workloads the daemon knows: granted against used, how long observed.
    Profiles {
        /// The daemon's API socket.
        #[arg(long, default_value = crate::faces::daemon::DEFAULT_SOCKET, value_name = "PATH")]
        socket: PathBuf,
    },
    /// Export a workload's profile (or a namespace's, or all) from the daemon.
    Export(ExportArgs),
    /// Compare what a profile needs against what manifests grant (compose, Kubernetes YAML,
    /// `docker run` lines, systemd units and drop-ins): exit 0 when they agree, 1 when a
    /// manifest grants more than needed, 2 when it grants less (the workload would break).
    Check {
        /// A JSON profile (`record -f json`, `merge`, `export -f json`).
        #[arg(value_name = "PROFILE")]
        profile: PathBuf,
        /// Deployment files; containers are matched to the profile's workloads by name.
        #[arg(required = true, value_name = "MANIFEST")]
        manifests: Vec<PathBuf>,
        #[arg(long, short = 'f', value_enum, default_value = "human")]
        format: crate::faces::check::CheckFormat,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
        /// The manifest container (compose service, unit) the profile's one workload is, for
        /// a profile recorded from a command (it has no container name to match by).
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
    },
    /// Combine profiles exported from several nodes: the union of needs, evidence kept.
    Merge {
        /// JSON profiles (`export -f json`, `record -f json`).
        #[arg(required = true, value_name = "FILE")]
        inputs: Vec<PathBuf>,
        #[arg(long, short = 'f', value_enum, default_value = "json")]
        format: Format,
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Decode a capability mask such as /proc/PID/status's CapEff (like `capsh --decode`).
    Decode {
        /// Hex mask, e.g. 00000000a80425fb.
        mask: String,
    },
    /// Show the capability sets a running process holds.
    Caps {
        /// Process id.
        pid: String,
    },
    /// Print a shell completion script (e.g. `capprof completions bash > /etc/bash_completion.d/capprof`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (`capprof man > capprof.1; man -l capprof.1`).
    Man,
}

/// Where and how the result is written, and how the recording is made.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "human")]
    pub format: Format,
    /// Write the output to FILE instead of stderr.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Record the containers CMD starts (docker, podman, nerdctl, ctr, runc, crun): `auto` when CMD mentions a
    /// container client. The whole host is watched then; checks are attributed by cgroup.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub containers: ContainersWhen,
    /// Add the capabilities other runtimes would need (ports below 1024, ping sockets: Docker's
    /// network namespaces need none) to the set.
    #[arg(long)]
    pub portable: bool,
    /// Size of the in-kernel aggregation map (distinct checks); overflow is counted and reported.
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub max_checks: u32,
    /// Turn on the kernel's BPF run-time statistics while recording and report the check
    /// program's mean run time (costs every BPF program on the host a little while on).
    #[arg(long)]
    pub bpf_stats: bool,
    /// Kernel hook: `auto` takes the first that works of tracepoint, fexit, kprobe.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ContainersWhen {
    Auto,
    Always,
    Never,
}

impl OutputArgs {
    fn options(&self, argv: &[String]) -> Result<RecordOptions> {
        check_max_checks(self.max_checks)?;
        Ok(RecordOptions {
            kernel: KernelOptions { sizes: MapSizes { checks: self.max_checks, ..MapSizes::default() }, backend: self.backend, bpf_stats: self.bpf_stats, syscalls: SyscallTracing::Off },
            containers: match self.containers {
                ContainersWhen::Always => true,
                ContainersWhen::Never => false,
                ContainersWhen::Auto => crate::faces::record::mentions_container_engine(argv),
            },
            portable: self.portable,
        })
    }
}

/// How to tell that a server works, and how often to try.
#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// Success test run while the workload is up (e.g. `curl -fsS localhost:8080/`), or once
    /// after a command that ended with status 0 (a tool: test what it left); without it,
    /// success means exit status 0 with no refused need (a capability the workload is granted
    /// and acts on unrestricted, refused in the trial, fails it).
    #[arg(long, value_name = "COMMAND")]
    pub check: Option<String>,
    /// Polled until it succeeds before --check runs (e.g. `nc -z localhost 8080`).
    #[arg(long, value_name = "COMMAND", requires = "check")]
    pub ready: Option<String>,
    /// Seconds to wait for --ready/--check.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Runs per trial, for flaky workloads: a set passes only if every run does.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: u32,
}

impl ProbeArgs {
    fn probe(&self) -> Result<Option<Probe>> {
        let timeout = positive_secs(self.timeout, "--timeout")?;
        if self.runs == 0 {
            return Err(Error::new(ErrorKind::Usage, "--runs must be at least 1"));
        }
        Ok(self.check.clone().map(|check| Probe { ready: self.ready.clone(), check, timeout }))
    }
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Record this already running container (Docker or podman name or id) instead of a command.
    #[arg(long, value_name = "NAME|ID", conflicts_with = "command", group = "running")]
    pub container: Option<String>,
    /// Record everything in this running cgroup v2 and below (e.g. /system.slice/nginx.service),
    /// relative to the cgroup v2 mount or as a path under it.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["command", "container"], group = "running")]
    pub cgroup: Option<String>,
    /// Record this systemd service from its start: capprof restarts it (or starts it, and
    /// stops it again at the end if it was not running) and records until --check passes,
    /// --duration ends, the unit stops, or Ctrl-C. For a unit that must not restart, use
    /// --cgroup /system.slice/NAME.service.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["command", "container", "cgroup"], group = "running")]
    pub unit: Option<String>,
    /// With --container, --cgroup or --unit: stop after SECS (default: at Ctrl-C, or when the
    /// container exits, the cgroup is removed, the unit stops).
    #[arg(long, value_name = "SECS", requires = "running")]
    pub duration: Option<f64>,
    /// Settle what the trace cannot decide (conditional and optional capabilities, then
    /// doubtful needs: namespace creation, file-capability helpers, file permission overrides)
    /// by re-running the command once without each, at most 8; success is --check passing, or
    /// exit status 0 with no refused need (with --unit: restarting the unit without each).
    #[arg(long, conflicts_with_all = ["container", "cgroup"])]
    pub prove: bool,
    /// For a server: record until this passes while it runs (e.g. a real client request),
    /// then stop it (SIGTERM, SIGKILL 3 s later; the containers it started through their
    /// engine). For a command that ends by itself: run once after it ended with status 0. With
    /// --unit: record until it passes; the unit keeps running.
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["container", "cgroup", "duration"])]
    pub check: Option<String>,
    /// Polled until it succeeds before --check runs.
    #[arg(long, value_name = "COMMAND", requires = "check")]
    pub ready: Option<String>,
    /// Seconds to wait for --ready/--check.
    #[arg(long, default_value_t = 30.0, value_name = "SECS", requires = "check")]
    pub timeout: f64,
    /// Also record the system calls each workload makes (counted in the kernel, no event per
    /// call) and give its seccomp allow list: `-f seccomp` (OCI/Docker profile), `-f spo`
    /// (Security Profiles Operator), and `--security-opt seccomp=FILE` / `seccompProfile` in
    /// the docker, docker-run, compose and k8s outputs (the files are written beside -o).
    #[arg(long)]
    pub seccomp: bool,
    /// The command to record, after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required_unless_present_any = ["container", "cgroup", "unit"], value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// The API's unix socket.
    #[arg(long, default_value = crate::faces::daemon::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Also serve the API (and /metrics) on TCP, e.g. 127.0.0.1:9477. Unauthenticated: keep it
    /// on loopback or a pod-local address.
    #[arg(long, value_name = "ADDR")]
    pub listen_tcp: Option<std::net::SocketAddr>,
    /// On the TCP listener, serve only /metrics and /health (for Prometheus on a pod address).
    #[arg(long, requires = "listen_tcp")]
    pub tcp_metrics_only: bool,
    /// The node's name on every metric series (default: $NODE_NAME, else the host name).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The state database.
    #[arg(long, default_value = crate::faces::daemon::DEFAULT_STATE, value_name = "FILE")]
    pub state: PathBuf,
    /// Also learn systemd services (`*.service` cgroups).
    #[arg(long)]
    pub services: bool,
    /// Also learn each workload's system calls, for seccomp profiles (`export -f seccomp`).
    /// Every system call on the node then pays for the hook (BENCHMARKS.md).
    #[arg(long)]
    pub seccomp: bool,
    /// Seconds between reads of the kernel's counts and writes of batched counters (new facts
    /// are written at once); an idle daemon wakes about this often.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub flush_interval: f64,
    /// Size of the in-kernel aggregation map; overflow is counted and reported.
    #[arg(long, default_value_t = 65536, value_name = "N")]
    pub max_checks: u32,
    /// Kernel BPF run-time statistics for /metrics (costs every BPF program a little).
    #[arg(long)]
    pub bpf_stats: bool,
    /// Kernel hook: `auto` takes the first that works of tracepoint, fexit, kprobe.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendChoice,
    /// Stop after SECS (for tests and for profiling the daemon itself).
    #[arg(long, value_name = "SECS", hide = true)]
    pub exit_after: Option<f64>,
    /// Do not attach the network-use hooks (cgroup socket programs on bind and socket
    /// creation; syscall tracepoints, which every system call on the node pays for, where the
    /// kernel refuses those): profiles then carry no portability notes.
    #[arg(long)]
    pub no_network_hooks: bool,
    /// Uninstall: drain what the pinned programs of earlier runs counted into --state, remove
    /// their pins (nothing of capprof's stays attached), and exit.
    #[arg(long)]
    pub detach: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The workload id, as `capprof profiles` lists it, or a container's name, the end of an
    /// id (`bars-chowner`), or the start of a container id.
    #[arg(required_unless_present_any = ["all", "namespace"], conflicts_with_all = ["all", "namespace"])]
    pub workload: Option<String>,
    /// Every workload.
    #[arg(long)]
    pub all: bool,
    /// Every workload of a Kubernetes namespace (or Compose project).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    #[arg(long, short = 'f', value_enum, default_value = "json")]
    pub format: Format,
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[arg(long, default_value = crate::faces::daemon::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Build the cluster-wide profile from a Prometheus server that scrapes every node's
    /// daemon (http://HOST:PORT): the union of needs over every node and replica.
    #[arg(long, value_name = "URL", conflicts_with = "socket")]
    pub prometheus: Option<String>,
    /// With --prometheus: series seen within this long count (a Prometheus duration), so a
    /// node scaled down since still contributes its needs.
    #[arg(long, value_name = "DURATION", default_value = "7d", requires = "prometheus")]
    pub window: String,
}

/// The aggregation map's bounds: below 64 a recording loses checks at once; above 2^22
/// entries (~300 MiB of kernel memory) the kernel refuses the map or the memory cgroup does.
const MAX_CHECKS_RANGE: std::ops::RangeInclusive<u32> = 64..=4_194_304;

fn check_max_checks(n: u32) -> Result<()> {
    if MAX_CHECKS_RANGE.contains(&n) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Usage, format!("--max-checks must be between {} and {}", MAX_CHECKS_RANGE.start(), MAX_CHECKS_RANGE.end())))
    }
}

/// The longest time any option takes: a year. Larger values (`1e19`, `u64::MAX`) would
/// overflow `Duration` and `Instant` arithmetic.
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

fn positive_secs(v: f64, what: &str) -> Result<Duration> {
    if v > 0.0 && v <= MAX_SECS {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Error::new(ErrorKind::Usage, format!("{what} must be a positive number of seconds, at most {MAX_SECS:.0} (a year)")))
    }
}

impl DaemonArgs {
    pub fn validate(self) -> Result<crate::faces::daemon::DaemonConfig> {
        check_max_checks(self.max_checks)?;
        Ok(crate::faces::daemon::DaemonConfig {
            socket: self.socket,
            tcp: self.listen_tcp,
            tcp_metrics_only: self.tcp_metrics_only,
            node: match self.node {
                Some(n) if n.is_empty() || n.len() > 253 || n.chars().any(char::is_control) => {
                    return Err(Error::new(ErrorKind::Usage, "--node must be 1 to 253 characters, without control characters"))
                }
                Some(n) => n,
                None => crate::faces::daemon::metrics::default_node(),
            },
            state: self.state,
            services: self.services,
            flush_every: positive_secs(self.flush_interval, "--flush-interval")?,
            kernel: KernelOptions {
                sizes: MapSizes { checks: self.max_checks, ..MapSizes::default() },
                backend: self.backend,
                bpf_stats: self.bpf_stats,
                syscalls: if self.seccomp { SyscallTracing::Count } else { SyscallTracing::Off },
            },
            exit_after: self.exit_after.map(|v| positive_secs(v, "--exit-after")).transpose()?,
            detach: self.detach,
            network_hooks: !self.no_network_hooks,
        })
    }
}

/// What `verify` and `minimize` share: how to judge a run, the output, the command.
#[derive(clap::Args, Debug)]
pub struct TrialArgs {
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Judge this systemd service instead of a command: each set is applied as a transient
    /// drop-in (/run/systemd/system/NAME.service.d/), the unit restarted and --check run; the
    /// unit is put back as it was at the end, whatever happens.
    #[arg(long, value_name = "NAME", conflicts_with = "command", requires = "check")]
    pub unit: Option<String>,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required_unless_present = "unit", value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The capabilities to allow: names (any case, with or without CAP_), comma-separated;
    /// `none` for none. Without it (and with --seccomp), the workload keeps its own.
    #[arg(long, value_name = "LIST", required_unless_present = "seccomp")]
    pub caps: Option<String>,
    /// Run under this seccomp profile (OCI/Docker JSON, e.g. `record --seccomp -f seccomp`):
    /// `--security-opt seccomp=FILE` for docker/podman, a filter capprof installs before
    /// the exec for a plain command. The calls it refuses are reported.
    #[arg(long, value_name = "FILE", conflicts_with = "unit")]
    pub seccomp: Option<PathBuf>,
    #[command(flatten)]
    pub trial: TrialArgs,
}

#[derive(clap::Args, Debug)]
pub struct MinimizeArgs {
    /// Also record the system calls and prove the seccomp allow list: every trial after the
    /// first runs under it (refused calls the workload needs are added back).
    #[arg(long, conflicts_with = "unit")]
    pub seccomp: bool,
    #[command(flatten)]
    pub trial: TrialArgs,
}

/// The seccomp outputs need the system calls: refused before anything runs.
fn needs_syscalls(format: Format, seccomp: bool) -> Result<()> {
    if matches!(format, Format::Seccomp | Format::Spo) && !seccomp {
        return Err(Error::new(ErrorKind::Usage, format!("-f {} needs --seccomp (the system calls are recorded only then)", if format == Format::Seccomp { "seccomp" } else { "spo" })));
    }
    Ok(())
}

impl RecordArgs {
    pub fn validate(self) -> Result<RecordConfig> {
        let duration = self.duration.map(|d| positive_secs(d, "--duration")).transpose()?;
        let timeout = positive_secs(self.timeout, "--timeout")?;
        let probe = self.check.map(|check| Probe { ready: self.ready, check, timeout });
        let mut options = self.output.options(&self.command)?;
        if self.seccomp {
            options.kernel.syscalls = SyscallTracing::Count;
        }
        needs_syscalls(self.output.format, self.seccomp)?;
        // clap makes them exclusive; this is the one place that turns three options into one.
        let target = match (self.container, self.cgroup, self.unit) {
            (Some(name), _, _) => Target::Container(name),
            (None, Some(path), _) => Target::Cgroup(path),
            (None, None, Some(unit)) => Target::Unit(crate::attribution::systemd::unit_name(&unit)?),
            (None, None, None) => Target::Command(self.command),
        };
        Ok(RecordConfig {
            probe,
            options,
            target,
            duration,
            prove: self.prove,
            format: self.output.format,
            output: self.output.output,
        })
    }
}

impl TrialArgs {
    fn validate(self) -> Result<RunConfig> {
        Ok(RunConfig {
            unit: self.unit.as_deref().map(crate::attribution::systemd::unit_name).transpose()?,
            probe: self.probe.probe()?,
            runs: self.probe.runs,
            options: self.output.options(&self.command)?,
            argv: self.command,
            format: self.output.format,
            output: self.output.output,
        })
    }
}

impl VerifyArgs {
    pub fn validate(self) -> Result<VerifyConfig> {
        let mut run = self.trial.validate()?;
        if self.seccomp.is_some() {
            run.options.kernel.syscalls = SyscallTracing::Count;
        }
        Ok(VerifyConfig { caps: self.caps.as_deref().map(CapSet::parse_list).transpose()?, seccomp: self.seccomp, run })
    }
}

impl MinimizeArgs {
    pub fn validate(self) -> Result<MinimizeConfig> {
        needs_syscalls(self.trial.output.format, self.seccomp)?;
        let mut run = self.trial.validate()?;
        if self.seccomp {
            run.options.kernel.syscalls = SyscallTracing::Count;
        }
        Ok(run)
    }
}

/// Parses arguments and runs; returns the process exit code.
pub fn run() -> anyhow::Result<i32> {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { ErrorKind::Usage.exit_code() } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    match args.command {
        Cmd::Record(r) => Ok(record::run(&r.validate()?)?),
        Cmd::Verify(v) => Ok(verify::run(&v.validate()?)?),
        Cmd::Minimize(m) => Ok(minimize::run(&m.validate()?)?),
        Cmd::Daemon(d) => Ok(crate::faces::daemon::run(&d.validate()?)?),
        Cmd::Profiles { socket } => {
            print!("{}", crate::faces::daemon::client::profiles(&socket)?);
            Ok(0)
        }
        Cmd::Export(e) if e.prometheus.is_some() => {
            let url = e.prometheus.as_deref().unwrap_or_default();
            let selection = crate::faces::cluster::Selection::new(e.workload.as_deref(), e.namespace.as_deref(), &e.window)?;
            let profile = crate::faces::cluster::export(url, &selection, e.format)?;
            crate::output::Sink::open(e.output.as_deref(), crate::output::Stream::Stdout)?.emit(&profile, e.format)?;
            Ok(0)
        }
        Cmd::Export(e) => {
            let format = match e.format {
                Format::Json => "json",
                Format::Human => "human",
                Format::Docker => "docker",
                Format::Compose => "compose",
                Format::K8s => "k8s",
                Format::K8sPatch => "k8s-patch",
                Format::Systemd => "systemd",
                Format::Seccomp => "seccomp",
                Format::Spo => "spo",
                Format::DockerRun => return Err(Error::new(ErrorKind::Usage, "--format docker-run needs a recorded command; use docker, compose or k8s").into()),
            };
            let sink = crate::output::Sink::open(e.output.as_deref(), crate::output::Stream::Stdout)?;
            if e.format.refers_to_seccomp_files() {
                // The seccomp profile files are written here, beside the output.
                let json = crate::faces::daemon::client::export(&e.socket, e.workload.as_deref(), e.namespace.as_deref(), "json")?;
                let profile = crate::profile::Profile::from_json(&json, "the daemon's answer")?;
                if profile.workloads.iter().any(|w| w.seccomp.is_some()) {
                    sink.emit(&profile, e.format)?;
                    return Ok(0);
                }
            }
            let text = crate::faces::daemon::client::export(&e.socket, e.workload.as_deref(), e.namespace.as_deref(), format)?;
            sink.write_text(&text);
            Ok(0)
        }
        Cmd::Check { profile, manifests, format, output, container } => {
            Ok(crate::faces::check::run(&crate::faces::check::CheckConfig { profile, manifests, format, output, container })?)
        }
        Cmd::Merge { inputs, format, output } => Ok(crate::faces::merge::run(&crate::faces::merge::MergeConfig { inputs, format, output })?),
        Cmd::Decode { mask } => {
            print!("{}", crate::faces::inspect::decode(&mask)?);
            Ok(0)
        }
        Cmd::Caps { pid } => {
            print!("{}", crate::faces::inspect::caps(&pid)?);
            Ok(0)
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Args::command(), "capprof", &mut std::io::stdout());
            Ok(0)
        }
        Cmd::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Args::command()).render(&mut std::io::stdout()).map_err(|e| Error::io("writing the manual page", e))?;
            Ok(0)
        }
    }
}
