//! The maps shared by every program (and read by userspace by name).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use capprof_common::{counter, CalibrationSample, CheckKey, Config, NetUseKey, SiteWindow, TaskOrigin};

/// Counters per distinct check, one slot per CPU (no atomics, no shared cache line).
#[map]
pub static CHECKS: PerCpuHashMap<CheckKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// cgroup v2 ids whose subtrees are recorded.
#[map]
pub static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// Thread ids that belong to the workload (exec'd in scope, or forked from such a task), with
/// the cgroup they exec'd in.
#[map]
pub static WORKLOAD_TASKS: HashMap<u32, TaskOrigin> = HashMap::with_max_entries(32768, 0);

/// kprobe backend: a check seen at `cap_capable`'s entry, waiting for its verdict.
#[map]
pub static IN_FLIGHT: HashMap<u32, CheckKey> = HashMap::with_max_entries(4096, 0);

/// First sightings of each key.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Losses and totals, see `capprof_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Run-time configuration, entry 0.
#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Network operations that need no capability check in Docker's network namespaces but do
/// elsewhere (see `capprof_common::net_use`).
#[map]
pub static NET_USES: HashMap<NetUseKey, u64> = HashMap::with_max_entries(4096, 0);

/// Scratch space for the call-site window, one per CPU.
#[map]
pub static SITE_SCRATCH: PerCpuArray<SiteWindow> = PerCpuArray::with_max_entries(1, 0);

/// Calibration samples: the latest check of the calibrating thread per slot
/// (0: CAP_SYS_ADMIN, the overcommit probe; 1: CAP_SETUID, a `security_capable` check).
#[map]
pub static CALIBRATION: Array<CalibrationSample> = Array::with_max_entries(2, 0);

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer.
        unsafe { *c += 1 };
    }
}
