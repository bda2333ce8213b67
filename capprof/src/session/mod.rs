//! The session: the one API every face drives. [`Tracer::open`] checks privileges, loads,
//! calibrates and attaches the backend; the tracer watches scopes and collects while a
//! workload runs, then attributes, classifies and builds profiles. [`trial`] runs a workload
//! once on it (in its own cgroup, supervised by [`workload`]), one trial after another.

pub mod seccomp;
pub mod service;
pub mod subject;
pub mod trial;
pub mod workload;

use std::time::Instant;

use crate::attribution::{symbolize, Check};
use crate::backend::{Backend, BackendChoice, MapSizes};
use crate::collector::{Collector, Observations};
use crate::error::Result;
use crate::kernel::{kallsyms::Symbols, privileges};
use crate::profile::{BackendSummary, Losses, Profile, ProgramRunTime, WorkloadMeta, WorkloadProfile};
use crate::session::workload::{Exit, Workload};

/// How the kernel side is set up: map sizes, which hook, run-time statistics.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOptions {
    pub sizes: MapSizes,
    pub backend: BackendChoice,
    /// Turn on the kernel's BPF run-time statistics while the tracer lives (`--bpf-stats`).
    pub bpf_stats: bool,
    /// Count each workload's system calls (`--seccomp`).
    pub syscalls: SyscallTracing,
}

/// Whether the system-call hooks are attached (`--seccomp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyscallTracing {
    /// Not attached: nothing is paid.
    #[default]
    Off,
    /// Each workload's calls, and those a seccomp filter refused before they entered (with
    /// the errno it answered): the engine's profile while recording (Docker's answers `clone3`
    /// with ENOSYS), the one being proven under `verify` and `minimize`.
    Count,
}

/// How a recording is made (record, verify, minimize, record --container).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordOptions {
    pub kernel: KernelOptions,
    /// Record containers the command starts.
    pub containers: bool,
    /// Add the capabilities other runtimes would need (low ports, ping sockets) to the set.
    pub portable: bool,
}

/// Kernel programs attached, collecting. Dropping it detaches them.
pub struct Tracer {
    symbols: Symbols,
    collector: Collector,
    started: Instant,
    /// Held while kernel BPF run-time statistics are on (`--bpf-stats`).
    stats: Option<std::os::fd::OwnedFd>,
    network_hooks: bool,
    /// Counts when capprof began stopping the workload (see [`Tracer::mark_stop`]).
    stop_counts: Option<std::collections::HashMap<capprof_common::CheckKey, u64>>,
    syscalls: SyscallTracing,
}

impl Tracer {
    /// The one way every face opens the pipeline: programs loaded, calibrated and attached,
    /// statistics on when asked.
    pub fn open(options: &KernelOptions) -> Result<Self> {
        let mut sizes = options.sizes;
        if options.syscalls != SyscallTracing::Off {
            if !cfg!(target_arch = "x86_64") {
                return Err(crate::error::Error::new(crate::error::ErrorKind::UnsupportedKernel, "--seccomp knows the x86 system call tables only"));
            }
            // CAPPROF_SYSCALL_KEYS shrinks the map, for the test that a full one is reported.
            sizes.syscalls = std::env::var("CAPPROF_SYSCALL_KEYS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(crate::backend::SYSCALL_KEYS);
        }
        let mut tracer = Self::start(sizes, options.backend)?;
        if options.bpf_stats {
            tracer.enable_stats()?;
        }
        if options.syscalls != SyscallTracing::Off {
            tracer.collector.backend.attach_syscall_hooks()?;
            tracer.syscalls = options.syscalls;
        }
        Ok(tracer)
    }

    fn start(sizes: MapSizes, choice: BackendChoice) -> Result<Self> {
        privileges::check_tracer()?;
        // kallsyms takes the kernel ~60 ms to print: read it while the programs load.
        let symbols = std::thread::spawn(Symbols::load);
        let mut backend = Backend::attach(sizes, choice)?;
        let symbols = symbols.join().map_err(|_| crate::error::Error::new(crate::error::ErrorKind::Internal, "kallsyms reader panicked"))??;
        backend.calibrate(&symbols)?;
        Ok(Self { collector: Collector::new(backend)?, symbols, started: Instant::now(), stats: None, network_hooks: false, stop_counts: None, syscalls: SyscallTracing::Off })
    }

    /// Turns on the kernel's BPF run-time statistics while the tracer lives (they cost every
    /// BPF program on the host a little, so they are off unless asked for).
    fn enable_stats(&mut self) -> Result<()> {
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map_err(|e| crate::error::Error::new(crate::error::ErrorKind::UnsupportedKernel, format!("enabling BPF statistics: {e}")))?;
        self.stats = Some(fd);
        Ok(())
    }

    pub fn watch_cgroup(&mut self, id: u64) -> Result<()> {
        self.collector.backend.watch_cgroup(id)
    }

    pub fn unwatch_cgroup(&mut self, id: u64) -> Result<()> {
        self.collector.backend.unwatch_cgroup(id)
    }

    /// Collects first sightings until the workload exits (see [`Workload::supervise`]);
    /// `on_cgroups` hears of every cgroup path seen for the first time.
    /// Once `should_stop` says yes, what is counted from then on is "at stop".
    pub fn supervise(&mut self, workload: &mut Workload, mut on_cgroups: impl FnMut(Vec<String>), mut should_stop: impl FnMut() -> bool) -> Result<Exit> {
        let fd = self.collector.events_fd();
        let collector = std::cell::RefCell::new(&mut self.collector);
        let stop_counts = &mut self.stop_counts;
        workload.supervise(
            fd,
            || {
                let mut collector = collector.borrow_mut();
                collector.drain();
                let new = collector.take_new_cgroups();
                if !new.is_empty() {
                    on_cgroups(new);
                }
            },
            || {
                let stop = should_stop();
                if stop && stop_counts.is_none() {
                    *stop_counts = collector.borrow_mut().counts().ok();
                }
                stop
            },
        )
    }

    /// From now on checks are counted as made while capprof stops the workload (a no-op when
    /// stopping already began).
    pub fn mark_stop(&mut self) -> Result<()> {
        if self.stop_counts.is_none() {
            self.stop_counts = Some(self.collector.counts()?);
        }
        Ok(())
    }

    /// Counts an already running workload's cgroup (id and path) and marks its threads as
    /// workload.
    pub fn adopt(&mut self, cgroup_id: u64, path: &str, tids: &[u32]) -> Result<()> {
        self.collector.backend.watch_cgroup(cgroup_id)?;
        let level = path.split('/').filter(|p| !p.is_empty()).count() as u32;
        self.collector.backend.mark_workload_tasks(tids, capprof_common::TaskOrigin::workload(cgroup_id, level))
    }

    /// Drains events; returns cgroup paths seen for the first time.
    pub fn poll_events(&mut self) -> Vec<String> {
        self.collector.drain();
        self.collector.take_new_cgroups()
    }

    /// How many first-sighting events were read since the last call.
    pub fn take_event_count(&mut self) -> u64 {
        self.collector.take_event_count()
    }

    pub fn events_fd(&self) -> std::os::fd::RawFd {
        self.collector.events_fd()
    }

    /// Whether system calls are counted (profiles then carry their seccomp allow lists).
    pub fn traces_syscalls(&self) -> bool {
        self.syscalls != SyscallTracing::Off
    }

    pub fn symbols(&self) -> &Symbols {
        &self.symbols
    }

    /// Forgets checks of finished cgroups (see [`Collector::forget`]).
    pub fn forget(&mut self, keys: &[capprof_common::CheckKey], cgroups: &[u64]) -> Result<()> {
        self.collector.forget(keys, cgroups)
    }

    /// Pins the programs' links and the maps a later daemon drains in `dir` (see
    /// [`crate::backend::pins`]): the kernel keeps counting after this process ends.
    pub fn pin(&mut self, dir: &std::path::Path) -> Result<()> {
        use std::os::fd::AsFd;
        self.collector.backend.pin(dir)?;
        let pin_err = |e: &dyn std::fmt::Display| crate::error::Error::new(crate::error::ErrorKind::UnsupportedKernel, format!("pinning the event ring buffer in {}: {e}", dir.display()));
        let fd = self.collector.events().as_fd().try_clone_to_owned().map_err(|e| pin_err(&e))?;
        let data = aya::maps::MapData::from_fd(fd).map_err(|e| pin_err(&e))?;
        data.pin(dir.join(crate::backend::pins::EVENTS)).map_err(|e| pin_err(&e))
    }

    /// Watches every cgroup (the daemon).
    pub fn watch_everything(&mut self) -> Result<()> {
        crate::attribution::discovery::follow_engine_events();
        self.collector.backend.watch_all()
    }

    /// Marks running threads as workload of the cgroup they are in (the daemon adopting what
    /// already runs at start).
    pub fn adopt_tasks(&mut self, cgroup_id: u64, path: &str, tids: &[u32]) -> Result<()> {
        let level = path.split('/').filter(|p| !p.is_empty()).count() as u32;
        self.collector.backend.mark_workload_tasks(tids, capprof_common::TaskOrigin::workload(cgroup_id, level))
    }

    pub fn backend_summary(&self) -> BackendSummary {
        let info = &self.collector.backend.info;
        BackendSummary {
            name: info.name.into(),
            sees_opts: info.sees_opts,
            classification: info.classification.clone(),
            program: self.stats.as_ref().and_then(|_| self.collector.backend.program_stats()).map(ProgramRunTime::from),
            floor_program: self.stats.as_ref().and_then(|_| self.collector.backend.floor_stats()).map(ProgramRunTime::from),
            syscall_program: self.stats.as_ref().filter(|_| self.traces_syscalls()).and_then(|_| self.collector.backend.program_stats_of("sys_enter")).map(ProgramRunTime::from),
            network_hooks: self.collector.backend.network_hooks().map(str::to_owned),
        }
    }

    /// cgroup paths seen for the first time since the last call.
    pub fn take_new_cgroups(&mut self) -> Vec<String> {
        self.collector.take_new_cgroups()
    }

    /// Watches the whole host (checks are attributed by cgroup afterwards): a systemd unit's
    /// cgroup is created by systemd when it starts.
    pub fn watch_host(&mut self) -> Result<()> {
        self.collector.backend.watch_all()
    }

    /// Watches the whole host and the network-use system calls, to record the containers a
    /// command starts (their cgroups are created by the engine, outside the command's).
    pub fn watch_containers(&mut self) -> Result<()> {
        crate::attribution::discovery::follow_engine_events();
        self.collector.backend.watch_all()?;
        self.watch_network_uses()
    }

    /// Attaches the network-use hooks (low-port binds, ping sockets: the portability notes):
    /// cgroup socket programs where the kernel takes them; else syscall tracepoints, and every
    /// system call on the host then pays a little while they are attached (BENCHMARKS.md).
    pub fn watch_network_uses(&mut self) -> Result<()> {
        if !self.network_hooks {
            self.collector.backend.attach_network_hooks()?;
            self.network_hooks = true;
        }
        Ok(())
    }

    /// Reads everything collected; the programs stay attached until the tracer is dropped.
    pub fn observations(&mut self) -> Result<Observations> {
        let before = self.stop_counts.take();
        self.collector.finish(before.as_ref())
    }

    /// Forgets what was collected (between trials).
    pub fn reset(&mut self) -> Result<()> {
        self.stop_counts = None;
        self.collector.reset()
    }

    pub fn symbolize(&self, obs: &Observations) -> Vec<Check> {
        obs.checks.iter().map(|o| symbolize(o, &self.symbols)).collect()
    }

    /// Builds the profile of the given workloads (each with its own checks).
    pub fn profile(&self, obs: &Observations, workloads: Vec<(WorkloadMeta, Vec<Check>)>) -> Profile {
        Profile::assemble(
            self.backend_summary(),
            Losses::from(obs.counters),
            self.started.elapsed().as_millis() as u64,
            workloads.into_iter().map(|(meta, checks)| WorkloadProfile::build(meta, checks)).collect(),
        )
    }
}

/// What the kernel side counted, as a profile reports it (losses are never hidden).
impl From<crate::backend::Counters> for Losses {
    fn from(c: crate::backend::Counters) -> Self {
        Self {
            checks_seen: c.checks_seen,
            checks_map_full: c.checks_map_full,
            events_dropped: c.events_dropped,
            tasks_map_full: c.tasks_map_full,
            site_unknown: c.site_unknown,
            walks_lost: c.walks_lost,
            syscalls_map_full: c.syscalls_map_full,
            syscalls_out_of_range: c.syscalls_out_of_range,
            placed_in_exec: c.placed_in_exec,
        }
    }
}

