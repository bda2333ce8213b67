//! Which tasks are the workload: marked when they exec inside the scope (with the cgroup they
//! exec'd in), inherited at fork, forgotten at exit.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::bpf_get_current_ancestor_cgroup_id,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use capprof_common::{counter, TaskOrigin, MAX_CGROUP_LEVELS};

use crate::check::in_scope;
use crate::maps::{bump, config, WORKLOAD_TASKS};

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(_ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
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
        mark(tid, &TaskOrigin { cgroup_id, level, reserved: 0 });
    }
    0
}

/// TP_PROTO(struct task_struct *parent, struct task_struct *child): the child's pid is read
/// at the `task_struct.pid` offset userspace found in the kernel's BTF.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let parent = bpf_get_current_pid_tgid() as u32;
    if let Some(origin) = WORKLOAD_TASKS.get_ptr(&parent) {
        let origin = unsafe { *origin };
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
