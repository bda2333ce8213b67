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
use crate::maps::{bump, config, PENDING_MARKS, TASK_ORIGINS, WORKLOAD_TASKS};

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
    if TASK_ORIGINS.get_or_insert(task, &origin).is_some() && WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    Some(origin)
}

/// Moves the current task's mark waiting in `WORKLOAD_TASKS` onto the task: the stored
/// value, or None when there is none or no storage could be made.
#[inline(always)]
pub fn adopt_mark(task: *mut task_struct) -> Option<*mut TaskOrigin> {
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
    let origin = unsafe { *WORKLOAD_TASKS.get_ptr(&tid)? };
    let stored = TASK_ORIGINS.get_or_insert(task, &origin)?;
    if WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    Some(stored)
}
