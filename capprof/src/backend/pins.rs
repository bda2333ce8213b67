//! The daemon's programs outlive it: their links and the maps a later daemon drains are
//! pinned in bpffs, one directory per daemon run (a *generation*), under a directory per state
//! file (two daemons with their own state never touch each other's pins):
//!
//! `/sys/fs/bpf/capprof/daemon-<hash of the state path>/gen-<pid>-<start>/{link-*,CHECKS,...}`
//!
//! While no daemon runs (killed, restarting, upgraded) the kernel keeps counting into the
//! pinned maps. The next daemon attaches its own programs first, then detaches each earlier
//! generation (removing its link pins), drains its maps like its own and removes them: what
//! ran in between is learned, and nothing is lost in the handover (the few milliseconds both
//! generations are attached are counted twice). `daemon --detach` drains and removes them
//! without starting a new generation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray, PerCpuHashMap, RingBuf};
use capprof_common::{CheckKey, NetUseKey, SyscallCounts, SyscallKey};

use crate::collector::{Observations, Sightings};
use crate::error::{Error, ErrorKind, Result};

/// The first-sighting ring buffer's pin name.
pub const EVENTS: &str = "EVENTS";
/// The maps a later daemon drains (the rest stay alive through the programs).
pub const MAPS: [&str; 7] = ["CHECKS", "LAST_CHECK", "FUTILE", "COUNTERS", "NET_USES", "SYSCALLS", EVENTS];

const BPFFS: &str = "/sys/fs/bpf";

/// bpffs, mounted if it is not (as systemd does at boot).
fn ensure_bpffs() -> Result<PathBuf> {
    let root = Path::new(BPFFS);
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("bpf ")) && l.split_whitespace().nth(4) == Some(BPFFS)))
        .unwrap_or(false);
    if !mounted {
        std::fs::create_dir_all(root).map_err(|e| Error::io(format!("creating {BPFFS}"), e))?;
        // SAFETY: constant NUL-terminated strings; mount(2) only reads them.
        let rc = unsafe { libc::mount(c"bpf".as_ptr(), c"/sys/fs/bpf".as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(Error::new(ErrorKind::UnsupportedKernel, format!("mounting bpffs at {BPFFS}: {}", std::io::Error::last_os_error())));
        }
    }
    Ok(root.to_path_buf())
}

/// The pin directory of the daemon that keeps its state in `state`.
pub fn state_dir(state: &Path) -> Result<PathBuf> {
    let root = ensure_bpffs()?;
    // The state file may not exist yet: hash the absolute path as given, canonical directory.
    let abs = match (state.parent().filter(|p| !p.as_os_str().is_empty()), state.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir).map(|d| d.join(name)).unwrap_or_else(|_| state.to_path_buf()),
        _ => std::env::current_dir().map(|d| d.join(state)).unwrap_or_else(|_| state.to_path_buf()),
    };
    Ok(root.join("capprof").join(format!("daemon-{:016x}", fnv1a(abs.as_os_str().as_encoded_bytes()))))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A new generation's directory (created) for this process.
pub fn new_generation(state_dir: &Path) -> Result<PathBuf> {
    let start = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = state_dir.join(format!("gen-{}-{start}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating pin directory {}", dir.display()), e))?;
    Ok(dir)
}

/// Earlier generations under `state_dir`, oldest first (not `except`).
pub fn generations(state_dir: &Path, except: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<(u128, PathBuf)> = std::fs::read_dir(state_dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| except != Some(e.path().as_path()))
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let start = name.strip_prefix("gen-")?.rsplit('-').next()?.parse::<u128>().ok()?;
                    Some((start, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// The name of a generation directory, as the state's drained-count table knows it.
pub fn generation_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// An earlier generation's pinned maps, detached from the kernel hooks.
pub struct Generation {
    pub dir: PathBuf,
    pub name: String,
    events: Option<RingBuf<MapData>>,
    checks: Option<PerCpuHashMap<MapData, CheckKey, u64>>,
    /// The repeats each CPU held (absent in generations of a capprof before it).
    last: Option<PerCpuArray<MapData, capprof_common::LastCheck>>,
    futile: Option<PerCpuHashMap<MapData, CheckKey, u64>>,
    counters: Option<PerCpuArray<MapData, u64>>,
    net_uses: Option<BpfHashMap<MapData, NetUseKey, u64>>,
    syscalls: Option<BpfHashMap<MapData, SyscallKey, SyscallCounts>>,
    seen: Sightings,
}

fn open_map(dir: &Path, name: &str) -> Option<Map> {
    let data = MapData::from_pin(dir.join(name)).ok()?;
    Map::from_map_data(data).ok()
}

impl Generation {
    /// Detaches the generation's programs (removes its link pins: nothing else holds them),
    /// then opens its maps. A map that is missing or of another layout is skipped, and its
    /// checks count as lost (see [`Generation::observations`]).
    pub fn detach_and_open(dir: &Path) -> Self {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("link-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let typed = |name| open_map(dir, name);
        Self {
            dir: dir.to_path_buf(),
            name: generation_name(dir),
            events: typed(EVENTS).and_then(|m| RingBuf::try_from(m).ok()),
            checks: typed("CHECKS").and_then(|m| PerCpuHashMap::try_from(m).ok()),
            last: typed("LAST_CHECK").and_then(|m| PerCpuArray::try_from(m).ok()),
            futile: typed("FUTILE").and_then(|m| PerCpuHashMap::try_from(m).ok()),
            counters: typed("COUNTERS").and_then(|m| PerCpuArray::try_from(m).ok()),
            net_uses: typed("NET_USES").and_then(|m| BpfHashMap::try_from(m).ok()),
            syscalls: typed("SYSCALLS").and_then(|m| BpfHashMap::try_from(m).ok()),
            seen: Sightings::default(),
        }
    }

    /// Whether its check map could be read (else nothing of it can be learned).
    pub fn readable(&self) -> bool {
        self.checks.is_some()
    }

    /// Everything it counted, like a live tracer's observations (the processes are mostly
    /// gone: their executables and granted sets are then unknown).
    pub fn observations(&mut self) -> Observations {
        if let Some(events) = self.events.as_mut() {
            self.seen.drain(events);
        }
        let repeats = self.last.as_ref().map(super::pending_repeats).unwrap_or_default();
        let counts = super::with_repeats(self.checks.as_ref().and_then(|m| super::summed(m).ok()).unwrap_or_default(), &repeats);
        self.seen.name_from_ids(counts.iter().map(|(k, _)| k));
        let futile: HashMap<CheckKey, u64> = self.futile.as_ref().and_then(|m| super::summed(m).ok()).unwrap_or_default().into_iter().collect();
        let counters = self.counters.as_ref().and_then(|m| super::read_counters(m).ok()).unwrap_or_default();
        let net_uses = self
            .net_uses
            .as_ref()
            .map(|m| m.iter().filter_map(|e| e.ok()).map(|(k, n)| (k.cgroup_id, k.kind, k.port, n)).collect())
            .unwrap_or_default();
        let syscalls = self.syscalls.as_ref().map(super::syscalls_of).unwrap_or_default();
        self.seen.name_syscall_cgroups(&syscalls);
        let mut obs = self.seen.observations(counts, &futile, counters, net_uses, None);
        obs.syscalls = syscalls;
        obs
    }

    /// Removes the generation's pins and directory: its maps are freed.
    pub fn remove(self) {
        let dir = self.dir.clone();
        drop(self);
        remove_dir(&dir);
    }
}

/// Removes a generation directory and every pin in it.
pub fn remove_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether a generation's daemon still runs (its pid is a live capprof).
pub fn owner_alive(dir: &Path) -> bool {
    let name = generation_name(dir);
    let pid = name.strip_prefix("gen-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(crate::kernel::is_capprof)
}
