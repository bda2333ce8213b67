//! Path walks that fail anyway: `generic_permission` asks DAC_READ_SEARCH or DAC_OVERRIDE for
//! each directory it cannot search by its mode, and the walk may then find nothing (an execvp
//! trying each PATH entry, a search path for a config file). Granted there, the capability
//! turned an EACCES into an ENOENT: it bought nothing. The check counts as usual; the key also
//! waits on the task (task-local storage) for the system call's result, and `sys_exit` adds it
//! to `FUTILE` when the call failed with ENOENT, ENOTDIR or ELOOP. Userspace compares the two
//! counts of each key.
//!
//! Out of scope the exit hook costs one task-storage lookup that finds nothing.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use capprof_common::cap::{DAC_OVERRIDE as CAP_DAC_OVERRIDE, DAC_READ_SEARCH as CAP_DAC_READ_SEARCH};
use capprof_common::{counter, CheckKey, PendingWalk, FLAG_BORROWED, FLAG_DENIED, FLAG_SETUP, FUTILE_IN_EXEC};

use crate::maps::{bump, FUTILE, WALKS};

const ENOENT: i64 = 2;
const ENOTDIR: i64 = 20;
const ELOOP: i64 = 40;
const NR_EXECVE: u64 = 59;
const NR_EXECVEAT: u64 = 322;

const EMPTY: PendingWalk = PendingWalk {
    keys: [CheckKey { cgroup_id: 0, site: 0, cap: 0, flags: 0, comm: [0; 16] }; 2],
    counts: [0; 2],
};

/// Notes a counted check that may belong to a futile walk (granted DAC checks of the
/// workload); a third distinct key in one system call is not followed (it stays a need).
#[inline(always)]
pub fn note(key: &CheckKey) {
    if (key.cap != CAP_DAC_OVERRIDE && key.cap != CAP_DAC_READ_SEARCH) || key.flags & (FLAG_DENIED | FLAG_SETUP | FLAG_BORROWED) != 0 {
        return;
    }
    let task = unsafe { bpf_get_current_task_btf() };
    let Some(walk) = WALKS.get_or_insert(task, &EMPTY) else {
        bump(counter::WALKS_UNTRACKED);
        return;
    };
    // SAFETY: task-local storage of the current task, only touched by the task itself.
    let walk = unsafe { &mut *walk };
    for i in 0..2 {
        let (Some(k), Some(n)) = (walk.keys.get_mut(i), walk.counts.get_mut(i)) else { return };
        if *n == 0 {
            *k = *key;
        }
        if *n == 0 || k == key {
            *n += 1;
            return;
        }
    }
    bump(counter::WALKS_UNTRACKED);
}

/// TP_PROTO(struct pt_regs *regs, long ret).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    let task = unsafe { bpf_get_current_task_btf() };
    let Some(walk) = WALKS.get(task) else { return 0 };
    // SAFETY: as in `note`.
    let walk = unsafe { &mut *walk };
    if walk.counts[0] == 0 {
        return 0;
    }
    let ret = ctx.arg::<i64>(1);
    if ret == -ENOENT || ret == -ENOTDIR || ret == -ELOOP {
        // SAFETY: a helper returning the task's saved registers (BTF pointer, fault-safe loads).
        let regs = unsafe { bpf_task_pt_regs(task) } as *const pt_regs;
        let nr = if regs.is_null() { 0 } else { unsafe { (*regs).orig_rax } };
        let exec = if nr == NR_EXECVE || nr == NR_EXECVEAT { FUTILE_IN_EXEC } else { 0 };
        for i in 0..2 {
            let (Some(k), Some(n)) = (walk.keys.get(i), walk.counts.get(i)) else { break };
            if *n > 0 {
                let mut key = *k;
                key.flags |= exec;
                add(&key, *n as u64);
            }
        }
    }
    walk.counts = [0; 2];
    0
}

#[inline(always)]
fn add(key: &CheckKey, n: u64) {
    match FUTILE.get_ptr_mut(key) {
        // This CPU's slot: programs run with migration disabled.
        Some(v) => unsafe { *v += n },
        None => {
            if FUTILE.insert(key, &n, 0).is_err() {
                bump(counter::FUTILE_MAP_FULL);
            }
        }
    }
}
