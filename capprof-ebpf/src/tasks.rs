//! Which tasks are the workload: marked when they exec inside the scope (with the cgroup they
//! exec'd in), inherited at fork, forgotten at exit.
//!
//! The mark lives on the task (task-local storage, freed with it) so each check finds it
//! with a pointer chase. A fork hook cannot address the child's storage (raw tracepoints
//! pass untyped pointers), so the child's mark waits in `WORKLOAD_TASKS` under its thread id
//! and moves onto the task at its first check; userspace adopting running tasks does the same.

use aya_ebpf::{
    bindings::task_struct,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use capprof_common::{counter, TaskOrigin, MAX_CGROUP_LEVELS};

use crate::scope::in_scope;
use crate::maps::{bump, config, TASK_ORIGINS, WORKLOAD_TASKS};

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    crate::walks::exec_succeeded(unsafe { bpf_get_current_task_btf() }, ctx.arg(2));
    if in_scope(cfg) {
        let tid = bpf_get_current_pid_tgid() as u32;
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        // The cgroup's level: the ancestor level at which the current cgroup itself appears.
        let mut level = 0;
        for l in 1..=MAX_CGROUP_LEVELS {
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(l as i32) };
            if id == cgroup_id {
                level = l;
                break;
            }
            if id == 0 {
                break;
            }
        }
        let origin = TaskOrigin { cgroup_id, level, reserved: 0 };
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
    let _ = WORKLOAD_TASKS.remove(&tid);
    0
}

#[inline(always)]
fn mark(tid: u32, origin: &TaskOrigin) {
    if WORKLOAD_TASKS.insert(&tid, origin, 0).is_err() {
        bump(counter::TASKS_MAP_FULL);
    }
}

/// The current task's mark, if it is the workload's; a mark still waiting in
/// `WORKLOAD_TASKS` moves onto the task.
#[inline(always)]
pub fn workload_origin(task: *mut task_struct) -> Option<TaskOrigin> {
    if let Some(stored) = TASK_ORIGINS.get(task) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        return Some(unsafe { *stored });
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
    let origin = unsafe { *WORKLOAD_TASKS.get_ptr(&tid)? };
    if TASK_ORIGINS.get_or_insert(task, &origin).is_some() {
        let _ = WORKLOAD_TASKS.remove(&tid);
    }
    Some(origin)
}
