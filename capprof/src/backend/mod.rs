//! Kernel side, userspace half: load one backend's programs, configure and calibrate them, and
//! give the collector its maps. The backend is the seam where kprobe/fexit programs plug in
//! beside the tracepoint; every backend fills the same maps with the same `CheckKey`s.

mod calibrate;
mod hooks;
mod loader;
pub mod pins;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use aya::Ebpf;
use capprof_common::{counter, CheckKey, Config, LastCheck, NetUseKey, SyscallCounts, SyscallKey, TaskOrigin};
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::kallsyms::Symbols;

pub use calibrate::CallSites;
pub use hooks::{BackendChoice, BackendKind};

/// Which kernel hook feeds the maps, and what it can see.
#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    /// `tracepoint`, `fexit` or `kprobe`.
    pub name: &'static str,
    /// Whether `cap_capable`'s `opts` (NOAUDIT, INSETID) are visible.
    pub sees_opts: bool,
    /// How probes are told from needs on this backend.
    pub classification: String,
}

/// Sizes of the kernel maps (entries).
#[derive(Clone, Copy, Debug)]
pub struct MapSizes {
    pub checks: u32,
    pub tasks: u32,
    /// System-call counter arrays (workload keys); one when `--seccomp` is off. Allocated on
    /// first use, 4 KiB each.
    pub syscalls: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self { checks: 16384, tasks: 32768, syscalls: 1 }
    }
}

/// `MapSizes::syscalls` with `--seccomp`: workload keys (cgroup, program, table, phase).
pub const SYSCALL_KEYS: u32 = 8192;

/// Loss and health counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counters {
    /// Checks in scope, all verdicts (counted ones plus those lost to a full map).
    pub checks_seen: u64,
    /// New checks not stored: the aggregation map was full.
    pub checks_map_full: u64,
    /// First-sighting events lost: the ring buffer was full.
    pub events_dropped: u64,
    /// Workload tasks not tracked: the task map was full (their checks count as set-up).
    pub tasks_map_full: u64,
    /// Checks whose call site could not be read.
    pub site_unknown: u64,
    /// Exec walk misses not counted (map full) or not followed (see `counter`).
    pub walks_lost: u64,
    /// System calls not counted: the system-call map was full (`--seccomp`).
    pub syscalls_map_full: u64,
    /// System calls with a number outside every table.
    pub syscalls_out_of_range: u64,
    /// Not a loss: execs a runtime moved into the scope while they ran (left set-up).
    pub placed_in_exec: u64,
}

/// What the kernel measured of the check program (BPF run-time statistics).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct ProgramStats {
    pub runs: u64,
    pub run_time_ns: u64,
}

/// A loaded and attached backend. Dropping it detaches every program.
pub struct Backend {
    ebpf: Ebpf,
    config: Config,
    pub kind: BackendKind,
    pub info: BackendInfo,
    pub call_sites: Option<CallSites>,
    /// Stack words are plain loads (`bpf_rdonly_cast`), not probe reads.
    direct_stack_loads: bool,
    /// Links not yet pinned (dropping the object detaches them).
    links: Vec<hooks::Attached>,
    /// Where the network-use hooks run, once attached (see [`Self::network_hooks`]).
    network_hooks: Option<String>,
}

impl Backend {
    /// Loads and attaches the first backend of `choice` the kernel allows; `calibrate` must
    /// follow. Nothing is counted until `watch_*` is called.
    pub fn attach(sizes: MapSizes, choice: BackendChoice) -> Result<Self> {
        let facts = loader::kernel_facts()?;
        let mut refusals = Vec::new();
        let mut chosen = None;
        for kind in choice.candidates() {
            // A fresh object per attempt: a half-attached backend is dropped whole.
            let mut ebpf = loader::load_object(sizes, &facts)?;
            match kind.attach(&mut ebpf) {
                Ok(links) => {
                    chosen = Some((kind, ebpf, links));
                    break;
                }
                Err(e) => refusals.push(format!("{}: {e}", kind.name())),
            }
        }
        let Some((kind, ebpf, links)) = chosen else {
            return Err(Error::new(
                ErrorKind::UnsupportedKernel,
                format!("no capprof backend works on this kernel ({}): {}", crate::kernel::release(), refusals.join("; ")),
            ));
        };
        let config = Config {
            task_pid_offset: facts.task_pid_offset,
            opts_mode: if kind.sees_opts() { facts.opts_mode } else { capprof_common::OPTS_NONE },
            cgroup_name_offsets: facts.cgroup_name_offsets,
            anchor_words: capprof_common::NO_ANCHOR,
            ..Config::default()
        };
        let info = BackendInfo { name: kind.name(), sees_opts: kind.sees_opts() && facts.opts_mode != capprof_common::OPTS_NONE, classification: String::new() };
        Ok(Backend { ebpf, config, kind, info, call_sites: None, direct_stack_loads: facts.rdonly_cast.is_some(), links, network_hooks: None })
    }

    /// Finds where call sites sit on the stack (see `calibrate.rs`) and starts reading them.
    pub fn calibrate(&mut self, symbols: &Symbols) -> Result<()> {
        let kind = self.kind;
        let backend = self;
        backend.call_sites = calibrate::calibrate(backend, symbols)?;
        backend.config.site_mode = capprof_common::SITE_OFF;
        if let Some(cs) = &backend.call_sites {
            backend.config.anchor_words = cs.anchor_words;
            backend.config.caller_words = cs.caller_words;
            backend.config.api_words = cs.api_words;
            backend.config.cap_capable = cs.cap_capable;
            backend.config.security_capable = cs.security_capable;
            backend.config.site_mode = kind.site_mode();
        }
        let opts = if backend.info.sees_opts { "NOAUDIT from cap_capable's opts" } else { "no opts on this hook" };
        backend.info.classification = match backend.call_sites {
            Some(_) => format!(
                "{opts}; call site of each check read from the kernel stack at calibrated frame distances ({})",
                if backend.direct_stack_loads { "plain loads through bpf_rdonly_cast" } else { "bpf_probe_read_kernel" }
            ),
            None => format!("{opts}; call-site calibration failed: probes are told from needs by the first kernel stack of each check"),
        };
        backend.push_config()
    }

    /// Writes the configuration; every write may change what is in scope, so it also moves
    /// `scope_generation`: the check program's cached scope answers go stale.
    fn push_config(&mut self) -> Result<()> {
        self.config.scope_generation = self.config.scope_generation.wrapping_add(1);
        let config = self.config;
        let mut map: Array<&mut MapData, Config> = Array::try_from(self.map_mut("CONFIG")?).map_err(internal)?;
        map.set(0, config, 0).map_err(internal)
    }

    fn map_mut(&mut self, name: &str) -> Result<&mut aya::maps::Map> {
        self.ebpf.map_mut(name).ok_or_else(|| Error::new(ErrorKind::Internal, format!("map {name} missing from the eBPF object")))
    }

    /// Counts checks from this cgroup (v2 id) and its descendants.
    pub fn watch_cgroup(&mut self, id: u64) -> Result<()> {
        let mut watched: HashMap<&mut MapData, u64, u8> = HashMap::try_from(self.map_mut("WATCHED")?).map_err(internal)?;
        watched.insert(id, 1, 0).map_err(|e| Error::new(ErrorKind::Internal, format!("watching cgroup {id}: {e}")))?;
        self.push_config()
    }

    /// Stops counting a cgroup's subtree.
    pub fn unwatch_cgroup(&mut self, id: u64) -> Result<()> {
        let mut watched: HashMap<&mut MapData, u64, u8> = HashMap::try_from(self.map_mut("WATCHED")?).map_err(internal)?;
        let _ = watched.remove(&id);
        self.push_config()
    }

    /// Removes these checks from the kernel maps (the daemon, once their counts are durable).
    pub fn remove_checks(&mut self, keys: &[CheckKey]) -> Result<()> {
        let mut map: PerCpuHashMap<&mut MapData, CheckKey, u64> = PerCpuHashMap::try_from(self.map_mut("CHECKS")?).map_err(internal)?;
        for key in keys {
            let _ = map.remove(key);
        }
        let mut futile: PerCpuHashMap<&mut MapData, CheckKey, u64> = PerCpuHashMap::try_from(self.map_mut("FUTILE")?).map_err(internal)?;
        for key in keys {
            let _ = futile.remove(key);
        }
        Ok(())
    }

    /// Removes the network uses of these cgroups (the daemon, once they are durable).
    pub fn remove_net_uses(&mut self, cgroups: &[u64]) -> Result<()> {
        let Some(map) = self.ebpf.map_mut("NET_USES") else { return Ok(()) };
        let mut uses: HashMap<&mut MapData, NetUseKey, u64> = HashMap::try_from(map).map_err(internal)?;
        let keys: Vec<NetUseKey> = uses.keys().filter_map(|k| k.ok()).filter(|k| cgroups.contains(&k.cgroup_id)).collect();
        for key in keys {
            let _ = uses.remove(&key);
        }
        Ok(())
    }

    /// Of each check key, how many were made in an exec walk's misses (see
    /// `capprof-ebpf/src/walks.rs`).
    pub fn futile(&mut self) -> Result<std::collections::HashMap<CheckKey, u64>> {
        let map: PerCpuHashMap<&mut MapData, CheckKey, u64> = PerCpuHashMap::try_from(self.map_mut("FUTILE")?).map_err(internal)?;
        Ok(summed(&map)?.into_iter().collect())
    }

    /// Forgets every aggregated check and zeroes the counters (between trials).
    pub fn reset(&mut self) -> Result<()> {
        if let Some(map) = self.ebpf.map_mut("LAST_CHECK") {
            let mut last: PerCpuArray<&mut MapData, LastCheck> = PerCpuArray::try_from(map).map_err(internal)?;
            let zero = LastCheck { key: CheckKey { cgroup_id: 0, site: 0, cap: 0, flags: 0, comm: [0; 16] }, pending: 0 };
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| internal(e))?;
            let _ = last.set(0, aya::maps::PerCpuValues::try_from(vec![zero; cpus]).map_err(internal)?, 0);
        }
        for name in ["CHECKS", "FUTILE"] {
            let mut map: PerCpuHashMap<&mut MapData, CheckKey, u64> = PerCpuHashMap::try_from(self.map_mut(name)?).map_err(internal)?;
            let keys: Vec<CheckKey> = map.keys().filter_map(|k| k.ok()).collect();
            for key in keys {
                let _ = map.remove(&key);
            }
        }
        let mut uses: HashMap<&mut MapData, NetUseKey, u64> = HashMap::try_from(self.map_mut("NET_USES")?).map_err(internal)?;
        let keys: Vec<NetUseKey> = uses.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = uses.remove(&key);
        }
        self.remove_syscalls(None)?;
        let mut counters: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map_mut("COUNTERS")?).map_err(internal)?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| internal(e))?;
        for i in 0..counter::COUNT {
            let zeros = aya::maps::PerCpuValues::try_from(vec![0u64; cpus]).map_err(internal)?;
            counters.set(i, zeros, 0).map_err(internal)?;
        }
        Ok(())
    }

    /// Watches the network operations that need a capability on some runtimes only (low
    /// ports, ping sockets).
    pub fn attach_network_hooks(&mut self) -> Result<()> {
        let (links, hooks) = hooks::attach_network_hooks(&mut self.ebpf)?;
        self.links.extend(links);
        self.network_hooks = Some(hooks);
        Ok(())
    }

    /// Where the network-use hooks run, once attached: `cgroup`, or `syscalls (why)`.
    pub fn network_hooks(&self) -> Option<&str> {
        self.network_hooks.as_deref()
    }

    /// Counts the system calls of every workload task (`--seccomp`), and the calls a seccomp
    /// filter refused (the engine's while recording, the one being proven). Every system call
    /// on the host pays for both hooks while they are attached (BENCHMARKS.md).
    pub fn attach_syscall_hooks(&mut self) -> Result<()> {
        let links = hooks::attach_syscall_hooks(&mut self.ebpf)?;
        self.links.extend(links);
        self.config.seccomp = capprof_common::SECCOMP_REFUSALS;
        self.push_config()
    }

    /// Every system-call counter array, with its calls (number, count).
    pub fn syscalls(&mut self) -> Result<Vec<crate::collector::SyscallObservation>> {
        let Some(map) = self.ebpf.map_mut("SYSCALLS") else { return Ok(vec![]) };
        let map: HashMap<&mut MapData, SyscallKey, SyscallCounts> = HashMap::try_from(map).map_err(internal)?;
        Ok(syscalls_of(&map))
    }

    /// Removes the system-call counters of these cgroups (all with None).
    pub fn remove_syscalls(&mut self, cgroups: Option<&[u64]>) -> Result<()> {
        let Some(map) = self.ebpf.map_mut("SYSCALLS") else { return Ok(()) };
        let mut map: HashMap<&mut MapData, SyscallKey, SyscallCounts> = HashMap::try_from(map).map_err(internal)?;
        let keys: Vec<SyscallKey> = map.keys().filter_map(|k| k.ok()).filter(|k| cgroups.is_none_or(|c| c.contains(&k.cgroup_id))).collect();
        for key in keys {
            let _ = map.remove(&key);
        }
        Ok(())
    }

    /// Pins every link (`link-PROGRAM`) and the maps a later daemon drains (see [`pins`]) in
    /// `dir`: from then on the programs keep counting after this process ends.
    pub fn pin(&mut self, dir: &std::path::Path) -> Result<()> {
        for name in pins::MAPS.iter().filter(|m| **m != pins::EVENTS) {
            let map = self.ebpf.map(name).ok_or_else(|| Error::new(ErrorKind::Internal, format!("map {name} missing from the eBPF object")))?;
            map.pin(dir.join(name)).map_err(|e| Error::new(ErrorKind::UnsupportedKernel, format!("pinning map {name} in {}: {e}", dir.display())))?;
        }
        for link in std::mem::take(&mut self.links) {
            let path = dir.join(format!("link-{}", link.program()));
            link.pin(&mut self.ebpf, &path)?;
        }
        Ok(())
    }

    /// Network uses seen: (key, count).
    pub fn net_uses(&mut self) -> Result<Vec<(NetUseKey, u64)>> {
        let Some(map) = self.ebpf.map_mut("NET_USES") else { return Ok(vec![]) };
        let map: HashMap<&mut MapData, NetUseKey, u64> = HashMap::try_from(map).map_err(internal)?;
        Ok(map.iter().filter_map(|e| e.ok()).collect())
    }

    /// Counts checks from every cgroup (daemon mode).
    pub fn watch_all(&mut self) -> Result<()> {
        self.config.watch_all = 1;
        self.push_config()
    }

    /// Marks already-running threads as workload of the cgroup `origin` (for attaching to
    /// running workloads).
    pub fn mark_workload_tasks(&mut self, tids: &[u32], origin: TaskOrigin) -> Result<()> {
        let tasks: HashMap<&mut MapData, u32, TaskOrigin> = HashMap::try_from(self.map_mut("WORKLOAD_TASKS")?).map_err(internal)?;
        let added = tids.iter().filter(|tid| tasks.get(tid, 0).is_err()).count();
        // The programs look marks up (and remove an exiting task's) only while some wait:
        // counted before they are inserted, a task exiting meanwhile takes its mark with it.
        // Userspace's count is its own configuration field, which no program writes, so no
        // update of theirs is lost.
        self.config.pending_marks = self.config.pending_marks.wrapping_add(added as u32);
        self.push_config()?;
        let mut tasks: HashMap<&mut MapData, u32, TaskOrigin> = HashMap::try_from(self.map_mut("WORKLOAD_TASKS")?).map_err(internal)?;
        for tid in tids {
            tasks.insert(*tid, origin, 0).map_err(internal)?;
        }
        Ok(())
    }

    /// The first-sighting ring buffer, for the collector to drain.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self.ebpf.take_map("EVENTS").ok_or_else(|| Error::new(ErrorKind::Internal, "EVENTS map already taken"))?;
        RingBuf::try_from(map).map_err(internal)
    }

    /// Every aggregated check with its count summed over CPUs.
    pub fn checks(&mut self) -> Result<Vec<(CheckKey, u64)>> {
        // The repeats each CPU holds first: one moved into CHECKS in between is then counted
        // twice for a moment, never missed (a count that runs ahead only delays a delta).
        let last = self.ebpf.map("LAST_CHECK").map(PerCpuArray::<&MapData, LastCheck>::try_from).transpose().map_err(internal)?.map(|m| pending_repeats(&m)).unwrap_or_default();
        let map: PerCpuHashMap<&mut MapData, CheckKey, u64> = PerCpuHashMap::try_from(self.map_mut("CHECKS")?).map_err(internal)?;
        Ok(with_repeats(summed(&map)?, &last))
    }

    /// Run count and time of the check program; zero unless statistics are enabled.
    pub fn program_stats(&self) -> Option<ProgramStats> {
        // The benchmarks' empty program when it was attached in the check program's place.
        self.program_stats_of("cap_capable").or_else(|| self.program_stats_of("cap_capable_floor"))
    }

    /// The benchmarks' empty program when it ran around the check program on the same checks
    /// (`CAPPROF_BENCH_FLOOR=around`: both loaded): its runs are both of its links'.
    pub fn floor_stats(&self) -> Option<ProgramStats> {
        self.program_stats_of("cap_capable").and(self.program_stats_of("cap_capable_floor"))
    }

    /// Run count and time of the program `name` (`sys_enter`: the system-call hook).
    pub fn program_stats_of(&self, name: &str) -> Option<ProgramStats> {
        let info = self.ebpf.program(name)?.info().ok()?;
        Some(ProgramStats { runs: info.run_count(), run_time_ns: info.run_time().as_nanos() as u64 })
    }

    /// Loss and health counters.
    pub fn counters(&mut self) -> Result<Counters> {
        let map: PerCpuArray<&mut MapData, u64> = PerCpuArray::try_from(self.map_mut("COUNTERS")?).map_err(internal)?;
        read_counters(&map)
    }
}

/// The repeats each CPU holds for its last check (see `LastCheck`).
pub(crate) fn pending_repeats<T: std::borrow::Borrow<MapData>>(map: &PerCpuArray<T, LastCheck>) -> Vec<LastCheck> {
    map.get(&0, 0).map(|values| values.iter().copied().filter(|l| l.pending > 0).collect()).unwrap_or_default()
}

/// `counts` with the repeats CPUs hold added, for keys still in the map (a key userspace
/// removed was read, repeats included, before it was).
pub(crate) fn with_repeats(mut counts: Vec<(CheckKey, u64)>, repeats: &[LastCheck]) -> Vec<(CheckKey, u64)> {
    for r in repeats {
        if let Some((_, n)) = counts.iter_mut().find(|(k, _)| *k == r.key) {
            *n += r.pending;
        }
    }
    counts
}

/// A per-CPU map of counts (CHECKS, FUTILE), summed over CPUs: this run's maps or an earlier
/// daemon's pinned ones.
pub(crate) fn summed<T: std::borrow::Borrow<MapData>>(map: &PerCpuHashMap<T, CheckKey, u64>) -> Result<Vec<(CheckKey, u64)>> {
    map.iter().map(|entry| entry.map(|(key, values)| (key, values.iter().sum())).map_err(internal)).collect()
}

/// The system calls of a SYSCALLS map: this run's or an earlier daemon's pinned one.
pub(crate) fn syscalls_of<T: std::borrow::Borrow<MapData>>(map: &HashMap<T, SyscallKey, SyscallCounts>) -> Vec<crate::collector::SyscallObservation> {
    map.iter()
        .filter_map(|e| e.ok())
        .map(|(key, counts)| crate::collector::SyscallObservation {
            key,
            calls: counts.counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(nr, n)| (nr as u32, u64::from(*n))).collect(),
        })
        .collect()
}

/// The loss and health counters of a COUNTERS map, summed over CPUs.
pub(crate) fn read_counters<T: std::borrow::Borrow<MapData>>(map: &PerCpuArray<T, u64>) -> Result<Counters> {
    let get = |i: u32| -> Result<u64> { Ok(map.get(&i, 0).map_err(internal)?.iter().sum()) };
    Ok(Counters {
        checks_seen: 0,
        checks_map_full: get(counter::CHECKS_MAP_FULL)?,
        events_dropped: get(counter::EVENTS_DROPPED)?,
        tasks_map_full: get(counter::TASKS_MAP_FULL)?,
        site_unknown: get(counter::SITE_UNKNOWN)?,
        walks_lost: get(counter::FUTILE_MAP_FULL)? + get(counter::WALKS_UNTRACKED)?,
        syscalls_map_full: get(counter::SYSCALLS_MAP_FULL)?,
        syscalls_out_of_range: get(counter::SYSCALLS_OUT_OF_RANGE)?,
        // An earlier daemon's pinned map may be one slot shorter.
        placed_in_exec: get(counter::PLACED_IN_EXEC).unwrap_or(0),
    })
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.checks_seen += o.checks_seen;
        self.checks_map_full += o.checks_map_full;
        self.events_dropped += o.events_dropped;
        self.tasks_map_full += o.tasks_map_full;
        self.site_unknown += o.site_unknown;
        self.walks_lost += o.walks_lost;
        self.syscalls_map_full += o.syscalls_map_full;
        self.syscalls_out_of_range += o.syscalls_out_of_range;
        self.placed_in_exec += o.placed_in_exec;
    }
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("BPF map access: {e}"))
}
