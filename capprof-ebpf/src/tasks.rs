//! Which tasks are the workload: marked when they exec inside the scope (with the cgroup they
//! exec'd in), inherited at fork, forgotten at exit.
//!
//! The mark lives on the task (task-local storage, freed with it) so each check finds it
//! with a pointer chase. A fork hook cannot address the child's storage (raw tracepoints
//! pass untyped pointers), so the child's mark waits in `WORKLOAD_TASKS` under its thread id
//! and moves onto the task at its first check; userspace adopting running tasks does the same.

use aya_ebpf::{
    bindings::{task_struct, BPF_NOEXIST},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use capprof_common::{counter, TaskOrigin, MAX_CGROUP_LEVELS};

use crate::scope::in_scope;
use crate::maps::{bump, config, MARK_CACHE, MARK_GENERATION, PENDING_MARKS, TASK_ORIGINS, WORKLOAD_TASKS};

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    crate::walks::exec_succeeded(unsafe { bpf_get_current_task_btf() }, ctx.arg(2));
    if in_scope(cfg) {
        let tid = bpf_get_current_pid_tgid() as u32;
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        let origin = TaskOrigin::workload(cgroup_id, current_level(cgroup_id));
        let task = unsafe { bpf_get_current_task_btf() };
        match TASK_ORIGINS.get_or_insert(task, &origin) {
            // Existing storage keeps its old value: overwrite (a re-exec in another cgroup).
            // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
            Some(stored) => unsafe { *stored = origin },
            None => mark(tid, &origin),
        }
        marks_changed();
    }
    0
}

/// TP_PROTO(struct task_struct *parent, struct task_struct *child): the child's pid is read
/// at the `task_struct.pid` offset userspace found in the kernel's BTF.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if let Some(origin) = workload_origin(unsafe { bpf_get_current_task_btf() }) {
        let child: u64 = ctx.arg(1);
        let at = (child + cfg.task_pid_offset as u64) as *const u32;
        if let Ok(pid) = unsafe { bpf_probe_read_kernel(at) } {
            mark(pid, &origin);
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    if WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    0
}

/// Whether a workload task is no longer where it exec'd: still inside that cgroup (the common
/// case: no ancestor walk) or below it is not moved; elsewhere, it was placed there after its
/// exec (a runtime's helper).
#[inline(always)]
pub fn moved(origin: &TaskOrigin, cgroup_id: u64) -> bool {
    if cgroup_id == origin.cgroup_id {
        return false;
    }
    let here = unsafe { bpf_get_current_ancestor_cgroup_id(origin.level as i32) };
    origin.level == 0 || here != origin.cgroup_id
}

/// The level of the current cgroup below the root: the ancestor level at which it appears.
#[inline(always)]
pub fn current_level(cgroup_id: u64) -> u32 {
    for l in 1..=MAX_CGROUP_LEVELS {
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(l as i32) };
        if id == cgroup_id {
            return l;
        }
        if id == 0 {
            break;
        }
    }
    0
}

#[inline(always)]
fn mark(tid: u32, origin: &TaskOrigin) {
    match WORKLOAD_TASKS.insert(&tid, origin, BPF_NOEXIST as u64) {
        Ok(()) => pending(1),
        // Already waiting (a reused thread id whose exit was missed): replaced, not recounted.
        Err(e) if e as i64 == -EEXIST => {
            if WORKLOAD_TASKS.insert(&tid, origin, 0).is_err() {
                bump(counter::TASKS_MAP_FULL);
            }
        }
        Err(_) => bump(counter::TASKS_MAP_FULL),
    }
}

const EEXIST: i64 = 17;

/// Marks waiting in `WORKLOAD_TASKS` (see `PENDING_MARKS`).
#[inline(always)]
fn pending(delta: i64) {
    if let Some(n) = PENDING_MARKS.get_ptr_mut(0) {
        // SAFETY: a map value pointer; the add is atomic (other CPUs update it too).
        unsafe { crate::atomic_add(n, delta) };
    }
}

/// Whether a mark may be waiting for some task: the system-call hook, which every task on the
/// host runs, looks one up only then (an array load instead of a hash lookup per call).
#[inline(always)]
pub fn marks_pending() -> bool {
    // SAFETY: map value pointers; plain loads (a stale answer only delays a move: every
    // increment happens before its mark can be looked for).
    let kernel = PENDING_MARKS.get(0).map_or(0, |n| unsafe { core::ptr::read_volatile(n) });
    let user = PENDING_MARKS.get(1).map_or(0, |n| unsafe { core::ptr::read_volatile(n) });
    kernel + user > 0
}
/// The current task's mark, if it is the workload's; a mark still waiting in
/// `WORKLOAD_TASKS` moves onto the task.
#[inline(always)]
pub fn workload_origin(task: *mut task_struct) -> Option<TaskOrigin> {
    if let Some(stored) = TASK_ORIGINS.get(task) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        return Some(unsafe { *stored });
    }
    // Out of scope, every task on the host comes here: an array load instead of a hash
    // lookup while no mark waits.
    if !marks_pending() {
        return None;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
    let origin = unsafe { *WORKLOAD_TASKS.get_ptr(&tid)? };
    if TASK_ORIGINS.get_or_insert(task, &origin).is_some() {
        marks_changed();
        if WORKLOAD_TASKS.remove(&tid).is_ok() {
            pending(-1);
        }
    }
    Some(origin)
}

/// Offset of `start_time` in `struct task_struct`, from the kernel's BTF, set at load time
/// (0: unknown, no cache). With the task's address it names one task for its whole life: a
/// new task reusing a freed `task_struct` has another start time.
#[no_mangle]
static TASK_START_OFFSET: u32 = 0;

/// The current CPU's last answer of [`workload_origin`] (see `MARK_CACHE`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MarkCache {
    task: u64,
    start_time: u64,
    generation: u64,
    /// 1: `origin` is the task's mark; 0: the task had none.
    marked: u64,
    origin: TaskOrigin,
}

/// [`workload_origin`] for the check program: a task making check after check on one CPU
/// (a server's accept loop, every mmap's overcommit probe) finds its mark in this CPU's
/// cache, a few loads instead of the task-storage helper (BENCHMARKS.md). The cached answer
/// holds while the same task (address and start time) asks, no program has written any
/// task's mark since (`MARK_GENERATION`: exec, a waiting mark moved onto its task, the
/// system-call hook's set-up phase), and no mark waits in `WORKLOAD_TASKS` (the task's own
/// may be among them: a forked child, or a running task userspace adopts).
#[inline(always)]
pub fn current_origin(task: *mut task_struct) -> Option<TaskOrigin> {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let offset = unsafe { core::ptr::read_volatile(&TASK_START_OFFSET) };
    let slot = if offset != 0 { MARK_CACHE.get_ptr_mut(0) } else { None };
    let Some(slot) = slot else { return workload_origin(task) };
    // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
    let start_time = unsafe { *((task as *const u8).add(offset as usize) as *const u64) };
    // SAFETY: this CPU's slot, a pointer the lookup just returned (programs run with
    // migration disabled: no other writer).
    let slot = unsafe { &mut *slot };
    if slot.task == task as u64 && slot.start_time == start_time && slot.generation == generation() && !marks_pending() {
        return if slot.marked != 0 { Some(slot.origin) } else { None };
    }
    let origin = workload_origin(task);
    // Read after the lookup, which may itself have moved a mark (and bumped it). Only the
    // task itself writes its mark, and it is running here: nothing changes it in between.
    *slot = MarkCache { task: task as u64, start_time, generation: generation(), marked: origin.is_some() as u64, origin: origin.unwrap_or_default() };
    origin
}

#[inline(always)]
fn generation() -> u64 {
    // SAFETY: a map value pointer; a plain load (see `current_origin`).
    MARK_GENERATION.get(0).map_or(0, |g| unsafe { core::ptr::read_volatile(g) })
}

/// A task's mark was written: every CPU's cached mark is stale.
#[inline(always)]
pub fn marks_changed() {
    if let Some(g) = MARK_GENERATION.get_ptr_mut(0) {
        // SAFETY: a map value pointer; the add is atomic (other CPUs update it too).
        unsafe { crate::atomic_add(g, 1u64) };
    }
}

/// Moves the current task's mark waiting in `WORKLOAD_TASKS` onto the task: the stored
/// value, or None when there is none or no storage could be made.
#[inline(always)]
pub fn adopt_mark(task: *mut task_struct) -> Option<*mut TaskOrigin> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
    let origin = unsafe { *WORKLOAD_TASKS.get_ptr(&tid)? };
    let stored = TASK_ORIGINS.get_or_insert(task, &origin)?;
    marks_changed();
    if WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    Some(stored)
}
