//! The maps shared by every program (and read by userspace by name).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{bpf_map_type::BPF_MAP_TYPE_TASK_STORAGE, task_struct, BPF_F_NO_PREALLOC, BPF_LOCAL_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_task_storage_get,
    macros::{btf_map, map},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use capprof_common::{counter, CalibrationSample, CheckKey, Config, LastCheck, NetUseKey, PendingWalk, SiteWindow, SyscallCounts, SyscallKey, TaskOrigin};

/// Counters per distinct check, one slot per CPU (no atomics, no shared cache line).
#[map]
pub static CHECKS: PerCpuHashMap<CheckKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// Per CPU: the last check counted and its repeats not yet in `CHECKS` (see `LastCheck`).
#[map]
pub static LAST_CHECK: PerCpuArray<LastCheck> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: the last task whose checks the check program placed, and where (see
/// `tasks::current_scope`).
#[map]
pub static SCOPE_CACHE: PerCpuArray<crate::tasks::ScopeCache> = PerCpuArray::with_max_entries(1, 0);

/// What only the programs write, in one value (one lookup for all of it): how many marks
/// wait, the generation cached scope answers were made under, where the user registers are.
#[map]
pub static KERNEL_STATE: Array<KernelState> = Array::with_max_entries(1, 0);

/// The value of `KERNEL_STATE`.
#[repr(C)]
pub struct KernelState {
    /// Marks the programs put in `WORKLOAD_TASKS` less every mark moved out of it (atomic adds;
    /// with userspace's `Config::pending_marks`, how many wait). The check program and the
    /// system-call hook look marks up only while some do.
    pub pending_marks: i64,
    /// Bumped (atomically) by every program that writes a task's mark in `TASK_ORIGINS` and
    /// at every cgroup attach; with userspace's `Config::scope_generation`, an answer in
    /// `SCOPE_CACHE` is used only while neither has moved since.
    pub generation: u64,
    /// How far above a task's stack base its saved user registers are (0: not learned yet;
    /// see `effect::user_regs`).
    pub regs_from_stack: u64,
}

/// cgroup v2 ids whose subtrees are recorded.
#[map]
pub static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// Thread ids that belong to the workload (exec'd in scope, or forked from such a task), with
/// the cgroup they exec'd in.
#[map]
pub static WORKLOAD_TASKS: HashMap<u32, TaskOrigin> = HashMap::with_max_entries(32768, 0);

/// System calls per workload key (`--seccomp`): a counter array per key, allocated on first
/// use (4 KiB each: not preallocated; sized by userspace, one entry when off).
#[map]
pub static SYSCALLS: HashMap<SyscallKey, SyscallCounts> = HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// All zeroes, never written: the initial value of a new `SYSCALLS` entry (too big for the
/// stack).
#[map]
pub static SYSCALL_ZERO: PerCpuArray<SyscallCounts> = PerCpuArray::with_max_entries(1, 0);

/// The workload's origin kept on the task itself (task-local storage): the per-check lookup
/// is a pointer chase instead of a hash. Filled at exec inside the scope, or from
/// `WORKLOAD_TASKS` at a forked child's first check.
#[btf_map]
pub static TASK_ORIGINS: TaskStorage<TaskOrigin> = TaskStorage::new();

/// The cgroup v2 id the task's exec stood in before a vfork parent could run again
/// (`sched_prepare_exec`, or the execve syscall's entry), until the exec's end reads it
/// (`tasks::exec_prepare`).
#[btf_map]
pub static EXEC_ENTRY: TaskStorage<u64> = TaskStorage::new();

/// Granted DAC checks of the task's exec attempts, settled when one succeeds (`walks.rs`).
#[btf_map]
pub static WALKS: TaskStorage<PendingWalk> = TaskStorage::new();

/// Of each check key, how many were made in an exec walk's misses (`walks.rs`).
#[map]
pub static FUTILE: PerCpuHashMap<CheckKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

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

/// The programs' own state (see `KERNEL_STATE`).
#[inline(always)]
pub fn kernel_state() -> Option<*mut KernelState> {
    KERNEL_STATE.get_ptr_mut(0)
}

#[inline(always)]
pub fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer.
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        unsafe { *c += 1 };
    }
}

/// A BTF-defined `BPF_MAP_TYPE_TASK_STORAGE` (aya-ebpf 0.2 has cgroup, inode and socket
/// storage but not this one): the layout libbpf and aya read from the `.maps` section.
#[repr(C)]
pub struct TaskStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_TASK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; BPF_F_NO_PREALLOC as usize],
}

// SAFETY: placeholders patched by the loader, never dereferenced.
unsafe impl<T> Sync for TaskStorage<T> {}

impl<T> TaskStorage<T> {
    pub const fn new() -> Self {
        use core::ptr::null;
        Self { r#type: null(), key: null(), value: null(), max_entries: null(), map_flags: null() }
    }

    /// The value stored on `task` (a BTF task pointer), if any.
    #[inline(always)]
    pub fn get(&self, task: *mut task_struct) -> Option<*mut T> {
        let p = unsafe { bpf_task_storage_get(self as *const _ as *mut c_void, task, core::ptr::null_mut(), 0) };
        if p.is_null() { None } else { Some(p as *mut T) }
    }

    /// The value stored on `task`, created from `init` when there is none yet.
    #[inline(always)]
    pub fn get_or_insert(&self, task: *mut task_struct, init: &T) -> Option<*mut T> {
        // SAFETY: a helper call with this map and a BTF task pointer.
        let p = unsafe {
            bpf_task_storage_get(self as *const _ as *mut c_void, task, init as *const T as *mut c_void, BPF_LOCAL_STORAGE_GET_F_CREATE as u64)
        };
        if p.is_null() { None } else { Some(p as *mut T) }
    }
}
