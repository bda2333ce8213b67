//! System calls per workload, for seccomp profiles (`--seccomp`): a counter array per
//! (cgroup, program, table, phase) in `SYSCALLS`, no event per call.
//!
//! `sys_enter` runs for every system call on the host while attached, so a task that is not
//! the workload's pays one task-storage lookup (plus an array load while forked children's
//! marks wait, and two compares). The scope is the capability program's: workload tasks are
//! those marked at their exec in scope. One exception: a runtime's task in scope that
//! installs a seccomp filter before it execs the workload (runc init, crun, capprof's own
//! child) is marked `PHASE_FILTERED`, because what it calls from then on passes through the
//! filter the profile becomes, and the exec itself is one of those calls.
//!
//! `sys_exit` finds the calls seccomp refused: seccomp runs before the `sys_enter` tracepoint
//! and a refused call skips it, but still exits through `sys_exit`. A call that exits with
//! EPERM or ENOSYS without having entered was refused, and the answer is kept: a program that
//! got ENOSYS probed a call and fell back (glibc's `clone3`), and its profile must answer the
//! same, not EPERM.

use aya_ebpf::{
    bindings::{task_struct, BPF_NOEXIST},
    helpers::{bpf_get_current_cgroup_id, generated::bpf_get_current_task_btf},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use capprof_common::{
    counter, SyscallKey, TaskOrigin, ARCH_I386, ARCH_X32, ARCH_X86_64, PHASE_ENOSYS, PHASE_ENOSYS_FILTERED, PHASE_FILTERED, PHASE_REFUSED,
    PHASE_REFUSED_FILTERED, PHASE_WORKLOAD, SECCOMP_REFUSALS, SYSCALL_SLOTS,
};

use crate::maps::{bump, config, SYSCALLS, SYSCALL_ZERO, TASK_ORIGINS};
use crate::memory::kernel_word;
use crate::scope::in_scope;
use crate::effect::regs_at;
use crate::tasks::{adopt_mark, current_level, scope_changed, marks_pending, moved};

const NR_PRCTL: u64 = 157;
const NR_SECCOMP: u64 = 317;
const PR_SET_SECCOMP: u64 = 22;
const SECCOMP_MODE_FILTER: u64 = 2;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const X32_SYSCALL_BIT: u64 = 0x4000_0000;
/// `thread_info.status` bit of a 32-bit compat system call in progress (arch/x86).
const TS_COMPAT: u32 = 0x0002;
const EPERM: i64 = 1;
const ENOSYS: i64 = 38;
const EEXIST: i64 = 17;

/// Offset of `thread_info.status` in `struct task_struct` (thread_info is embedded), from the
/// kernel's BTF at load time; 0: unknown, compat calls are then not told apart.
#[no_mangle]
static TASK_STATUS_OFFSET: u32 = 0;

/// TP_PROTO(struct pt_regs *regs, long id).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> u32 {
    let id: u64 = ctx.arg(1);
    let task = unsafe { bpf_get_current_task_btf() };
    let stored = match TASK_ORIGINS.get(task) {
        Some(s) => s,
        None => match rare_origin(&ctx, task, id) {
            Some(Origin::Marked(s)) => s,
            // The installing call itself runs before its filter applies.
            Some(Origin::Installing) | None => return 0,
        },
    };
    let Some(cfg) = config() else { return 0 };
    // SAFETY: task-local storage of the current task: no other writer while it runs.
    let origin = unsafe { &mut *stored };
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if origin.phase == PHASE_WORKLOAD {
        // A runtime's helper exec'd elsewhere and placed here (runc init under the daemon)
        // is not the workload; nor is runc init that exec'd inside the container's cgroup
        // (moved in before its exec completed). Once either installs the filter the workload
        // will run under, what it calls passes through it.
        let moved = moved(origin, cgroup_id);
        if installs_filter(&ctx, id) && (moved || runc_init(task)) {
            *origin = TaskOrigin { phase: PHASE_FILTERED, ..TaskOrigin::workload(cgroup_id, current_level(cgroup_id)) };
            scope_changed();
            return 0;
        }
        if moved {
            return 0;
        }
    }
    if cfg.seccomp == SECCOMP_REFUSALS {
        origin.entered = id + 1;
    }
    count(task, cgroup_id, id, origin.phase);
    0
}

/// TP_PROTO(struct pt_regs *regs, long ret).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> u32 {
    let task = unsafe { bpf_get_current_task_btf() };
    let Some(stored) = TASK_ORIGINS.get(task) else { return 0 };
    // SAFETY: task-local storage of the current task: no other writer while it runs.
    let origin = unsafe { &mut *stored };
    let entered = origin.entered;
    origin.entered = 0;
    let ret: i64 = ctx.arg(1);
    if ret != -EPERM && ret != -ENOSYS {
        return 0;
    }
    let regs: u64 = ctx.arg(0);
    let Some(id) = kernel_word(regs + regs_at::ORIG_AX) else { return 0 };
    if entered == id.wrapping_add(1) {
        return 0;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let phase = match (origin.phase, ret == -ENOSYS) {
        (PHASE_WORKLOAD, _) if moved(origin, cgroup_id) => return 0,
        (PHASE_WORKLOAD, false) => PHASE_REFUSED,
        (PHASE_WORKLOAD, true) => PHASE_ENOSYS,
        (_, false) => PHASE_REFUSED_FILTERED,
        (_, true) => PHASE_ENOSYS_FILTERED,
    };
    count(task, cgroup_id, id, phase);
    0
}

/// What a task without a stored origin turned out to be.
enum Origin {
    /// A forked child whose mark was waiting: counted from now on.
    Marked(*mut TaskOrigin),
    /// A runtime's task in scope installing a seccomp filter before the workload's exec:
    /// marked `PHASE_FILTERED`, counted from its next call.
    Installing,
}

#[inline(always)]
fn rare_origin(ctx: &RawTracePointContext, task: *mut task_struct, id: u64) -> Option<Origin> {
    let cfg = config()?;
    if marks_pending(cfg) {
        if let Some(stored) = adopt_mark(task) {
            return Some(Origin::Marked(stored));
        }
    }
    if (id != NR_SECCOMP && id != NR_PRCTL) || !installs_filter(ctx, id) || !in_scope(cfg) {
        return None;
    }
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let origin = TaskOrigin { phase: PHASE_FILTERED, ..TaskOrigin::workload(cgroup_id, current_level(cgroup_id)) };
    let stored = TASK_ORIGINS.get_or_insert(task, &origin);
    scope_changed();
    stored.map(|_| Origin::Installing)
}

/// seccomp(SECCOMP_SET_MODE_FILTER, ...) or prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ...).
#[inline(always)]
fn installs_filter(ctx: &RawTracePointContext, id: u64) -> bool {
    if id != NR_SECCOMP && id != NR_PRCTL {
        return false;
    }
    let regs: u64 = ctx.arg(0);
    let arg0 = kernel_word(regs + regs_at::DI).unwrap_or(0);
    let mode = match id {
        NR_SECCOMP => arg0 == SECCOMP_SET_MODE_FILTER,
        _ => arg0 == PR_SET_SECCOMP && kernel_word(regs + regs_at::SI) == Some(SECCOMP_MODE_FILTER),
    };
    // Both take the program as their third argument; libseccomp probes which flags the kernel
    // supports with a NULL one (EFAULT), long before it installs anything.
    mode && kernel_word(regs + regs_at::DX).is_some_and(|prog| prog != 0)
}

/// One call of `id` under the current task's key.
#[inline(always)]
fn count(task: *mut task_struct, cgroup_id: u64, id: u64, phase: u32) {
    let (arch, nr) = if id & X32_SYSCALL_BIT != 0 {
        (ARCH_X32, id & !X32_SYSCALL_BIT)
    } else if compat(task) {
        (ARCH_I386, id)
    } else {
        (ARCH_X86_64, id)
    };
    if nr >= SYSCALL_SLOTS as u64 {
        bump(counter::SYSCALLS_OUT_OF_RANGE);
        return;
    }
    let key = SyscallKey { cgroup_id, comm: crate::check::current_comm(task as *const u8), arch, phase };
    let counts = match SYSCALLS.get_ptr_mut(&key) {
        Some(p) => p,
        None => {
            let Some(zero) = SYSCALL_ZERO.get_ptr(0) else { return };
            // SAFETY: a map value pointer (all zeroes, never written).
            match SYSCALLS.insert(&key, unsafe { &*zero }, BPF_NOEXIST as u64) {
                Ok(()) => {}
                // Another CPU made it first.
                Err(e) if e as i64 == -EEXIST => {}
                Err(_) => {
                    bump(counter::SYSCALLS_MAP_FULL);
                    return;
                }
            }
            let Some(p) = SYSCALLS.get_ptr_mut(&key) else { return };
            p
        }
    };
    // SAFETY: a map value pointer; the index is masked below SYSCALL_SLOTS; the add is
    // atomic (the entry is shared by the workload's tasks on every CPU).
    unsafe {
        let slot = (*counts).counts.as_mut_ptr().add(nr as usize & (SYSCALL_SLOTS - 1));
        crate::atomic_add(slot, 1u32);
    }
}

/// runc's init stages name themselves `runc:[0:PARENT]`, `runc:[1:CHILD]`, `runc:[2:INIT]`.
#[inline(always)]
fn runc_init(task: *mut task_struct) -> bool {
    let comm = crate::check::current_comm(task as *const u8);
    u64::from_le_bytes(comm[..8].try_into().unwrap_or([0; 8])) & 0xffff_ffff_ffff == u64::from_le_bytes(*b"runc:[\0\0")
}

/// A 32-bit compat call (the kernel's `in_ia32_syscall()`): TS_COMPAT in `thread_info.status`.
#[inline(always)]
pub(crate) fn compat(task: *mut task_struct) -> bool {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let offset = unsafe { core::ptr::read_volatile(&TASK_STATUS_OFFSET) };
    if offset == 0 {
        return false;
    }
    // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
    let status = unsafe { *((task as *const u8).add(offset as usize) as *const u32) };
    status & TS_COMPAT != 0
}
