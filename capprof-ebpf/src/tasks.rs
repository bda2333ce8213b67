//! Which tasks are the workload: marked when they exec inside the scope (with the cgroup they
//! exec'd in), inherited at fork, forgotten at exit. An exec that a runtime moved its task into
//! the scope during (Go's `os/exec` can return before the exec completes) marks nothing: the
//! cgroup each exec stood in before that could happen is kept on the task (`EXEC_ENTRY`).
//!
//! The mark lives on the task (task-local storage, freed with it) so each check finds it
//! with a pointer chase. A fork hook cannot address the child's storage (raw tracepoints
//! pass untyped pointers), so the child's mark waits in `WORKLOAD_TASKS` under its thread id
//! and moves onto the task at its first check; userspace adopting running tasks does the same.
//!
//! The check program asks [`current_scope`], which keeps each CPU's last answer (scope, set-up
//! or workload, cgroup id) until the task, its `css_set` or anything that decides the answer
//! changes (every mark written and every cgroup attach bump the programs' generation).

use aya_ebpf::{
    bindings::{task_struct, BPF_NOEXIST},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_probe_read_kernel,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use capprof_common::{counter, Config, TaskOrigin, FLAG_SETUP, MAX_CGROUP_LEVELS, PHASE_WORKLOAD};

use crate::scope::in_scope;
use crate::maps::{bump, config, kernel_state, EXEC_ENTRY, SCOPE_CACHE, TASK_ORIGINS, WORKLOAD_TASKS};

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn task_exec(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let task = unsafe { bpf_get_current_task_btf() };
    crate::walks::exec_succeeded(task, ctx.arg(2));
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let placed = placed_in_exec(task, cgroup_id);
    if in_scope(cfg) {
        if placed {
            // A runtime's helper moved here while it exec'd: set-up, as if moved after it.
            bump(counter::PLACED_IN_EXEC);
            scope_changed();
            return 0;
        }
        let tid = bpf_get_current_pid_tgid() as u32;
        let origin = TaskOrigin::workload(cgroup_id, current_level(cgroup_id));
        match TASK_ORIGINS.get_or_insert(task, &origin) {
            // Existing storage keeps its old value: overwrite (a re-exec in another cgroup).
            // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
            Some(stored) => unsafe { *stored = origin },
            None => mark(tid, &origin),
        }
        scope_changed();
    }
    0
}

/// TP_PROTO(struct task_struct *parent, struct task_struct *child): the child's pid is read
/// at the `task_struct.pid` offset userspace found in the kernel's BTF.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn task_fork(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if let Some(origin) = workload_origin(cfg, unsafe { bpf_get_current_task_btf() }) {
        let child: u64 = ctx.arg(1);
        let at = (child + cfg.task_pid_offset as u64) as *const u32;
        if let Ok(pid) = unsafe { bpf_probe_read_kernel(at) } {
            mark(pid, &origin);
        }
    }
    0
}

/// A task's waiting mark goes with it. Every task on the host exits through here: the hash
/// delete (about 0.5 µs here, BENCHMARKS.md) only while some mark waits. Every mark is
/// counted before anyone can look for it (the programs count theirs while its task cannot
/// yet run or exit; userspace counts before it inserts), so none is left behind.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn task_exit(_ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if !marks_pending(cfg) {
        return 0;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    if WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    0
}

/// A task was attached to another cgroup (TP_PROTO(dst_cgrp, path, task, threadgroup)): the
/// scope answers cached on every CPU are stale. The move is done under `cgroup_mutex` before
/// this fires, and the next move waits for that mutex: a cached `css_set` address freed and
/// reused by a later move is never taken for the old one.
#[raw_tracepoint(tracepoint = "cgroup_attach_task")]
pub fn cgroup_attach_task(_ctx: RawTracePointContext) -> u32 {
    scope_changed();
    0
}

/// Where each exec stood before its task could be moved: the task's cgroup v2 id (0: read
/// by its exec). A runtime that moves its helper into a container while the helper still
/// execs has placed a set-up task: Go's `os/exec` (runc, containerd's shim) and glibc's
/// `posix_spawn` return once the child's vfork ends, when the exec installs its new memory
/// map, before it completes, and a move that lands in the rest of the exec would otherwise
/// make the helper the workload's (`runc init` under podman, on a busy machine). Comparing
/// the two ends of the exec has no window; the move's own tracepoint fires after the move,
/// possibly after the exec.
///
/// `sched_prepare_exec` (Linux 6.10+) fires at the point of no return, before the new memory
/// map (so before a vfork parent runs again), for every exec that will complete: a raw
/// tracepoint, half the syscall tracepoint program's run time, without their perf-buffer
/// path around it (BENCHMARKS.md).
#[raw_tracepoint(tracepoint = "sched_prepare_exec")]
pub fn exec_prepare(_ctx: RawTracePointContext) -> u32 {
    note_exec_entry();
    0
}

/// Before 6.10: where each native execve started (the `sys_enter` syscall tracepoints).
#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn exec_entry(_ctx: TracePointContext) -> u32 {
    note_exec_entry();
    0
}

/// [`exec_entry`] for execveat (fexecve, runc's re-exec of its cloned binary).
#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn execat_entry(_ctx: TracePointContext) -> u32 {
    note_exec_entry();
    0
}

#[inline(always)]
fn note_exec_entry() {
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: a helper call without pointer arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if let Some(entered) = EXEC_ENTRY.get_or_insert(task, &cgroup_id) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-task: no concurrent writer).
        unsafe { *entered = cgroup_id };
    }
}

/// Whether the current exec started in another cgroup than the one it ends in: the task was
/// moved during it. The note is consumed either way. With the syscall tracepoints, a 32-bit
/// execve (it has none: an earlier failed exec's note may remain) is never taken for one.
#[inline(always)]
fn placed_in_exec(task: *mut task_struct, cgroup_id: u64) -> bool {
    let Some(entered) = EXEC_ENTRY.get(task) else { return false };
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-task: no concurrent writer).
    let at_entry = unsafe { core::mem::replace(&mut *entered, 0) };
    at_entry != 0 && at_entry != cgroup_id && !crate::syscalls::compat(task)
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

/// Marks waiting in `WORKLOAD_TASKS` (see `KernelState::pending_marks`).
#[inline(always)]
fn pending(delta: i64) {
    if let Some(state) = kernel_state() {
        // SAFETY: a map value pointer; the add is atomic (other CPUs update it too).
        unsafe { crate::atomic_add(&mut (*state).pending_marks, delta) };
    }
}

/// Whether a mark may be waiting for some task: the system-call hook, which every task on the
/// host runs, looks one up only then (two loads instead of a hash lookup per call).
#[inline(always)]
pub fn marks_pending(cfg: &Config) -> bool {
    // SAFETY: a map value pointer; a plain load (a stale answer only delays a move: every
    // increment happens before its mark can be looked for).
    let kernel = kernel_state().map_or(0, |s| unsafe { core::ptr::read_volatile(&(*s).pending_marks) });
    kernel + cfg.pending_marks as i64 > 0
}

/// The current task's mark, if it is the workload's; a mark still waiting in
/// `WORKLOAD_TASKS` moves onto the task.
#[inline(always)]
pub fn workload_origin(cfg: &Config, task: *mut task_struct) -> Option<TaskOrigin> {
    if let Some(stored) = TASK_ORIGINS.get(task) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        return Some(unsafe { *stored });
    }
    // Out of scope, every task on the host comes here: an array load instead of a hash
    // lookup while no mark waits.
    if !marks_pending(cfg) {
        return None;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
    let origin = unsafe { *WORKLOAD_TASKS.get_ptr(&tid)? };
    if TASK_ORIGINS.get_or_insert(task, &origin).is_some() {
        scope_changed();
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

/// The current CPU's last answer of [`current_scope`] (see `SCOPE_CACHE`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ScopeCache {
    task: u64,
    start_time: u64,
    generation: u64,
    /// `task->cgroups` when the answer was made: a task moved to another cgroup has another.
    css_set: u64,
    cgroup_id: u64,
    /// 1: in scope, with `flags`; 0: out of scope.
    in_scope: u32,
    flags: u32,
}

/// Whether the current task's checks count, and as what: its cgroup v2 id and `FLAG_SETUP`
/// (a runtime's task, or one moved after its exec) or 0 (the workload's own); None when it
/// is out of scope.
///
/// A task making check after check on one CPU (a server's accept loop, every mmap's
/// overcommit probe, any task outside the scope) finds the answer in this CPU's cache: a few
/// loads and compares instead of the task-storage helper, the cgroup chain and, out of
/// scope, the ancestor walk (BENCHMARKS.md). The cached answer holds while the same task
/// (address and start time) asks from the same `css_set`; nothing that decides it has
/// changed since (`KernelState::generation`: exec, a waiting mark moved onto its task, the
/// system-call hook's set-up phase, any task attached to a cgroup; `Config::scope_generation`:
/// userspace's watched cgroups and configuration); and no mark waits in `WORKLOAD_TASKS`
/// (the task's own may be among them: a forked child, or a running task userspace adopts).
#[inline(always)]
pub fn current_scope(cfg: &Config, task: *mut task_struct) -> Option<(u64, u32)> {
    // SAFETY: load-time constants the loader sets; read volatile so their defaults are not folded in.
    let offset = unsafe { core::ptr::read_volatile(&TASK_START_OFFSET) };
    let cgroups = crate::scope::cgroups_offset();
    let word_type = crate::memory::word_type();
    let slot = if offset != 0 && cgroups != 0 && word_type != 0 { SCOPE_CACHE.get_ptr_mut(0) } else { None };
    let Some(slot) = slot else { return decide(cfg, task, crate::scope::current_cgroup_id(task as *const u8)) };
    // Read before the answer is made: a change after it leaves the stored answer stale.
    // One lookup for both of the programs' words.
    let (generation, pending) = kernel_state().map_or((0, 0), |s| {
        // SAFETY: a map value pointer; plain loads (see `marks_pending`).
        unsafe { (core::ptr::read_volatile(&(*s).generation), core::ptr::read_volatile(&(*s).pending_marks)) }
    });
    let generation = generation.wrapping_add(cfg.scope_generation as u64);
    let pending = pending + cfg.pending_marks as i64 > 0;
    // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
    let start_time = unsafe { *((task as *const u8).add(offset as usize) as *const u64) };
    let cast = crate::memory::rdonly_cast();
    // SAFETY: bpf_rdonly_cast makes the load fault-safe (the verifier marks it untrusted).
    let css_set = unsafe { *cast(task as u64 + cgroups as u64, word_type) };
    // SAFETY: this CPU's slot, a pointer the lookup just returned (programs run with
    // migration disabled: no other writer).
    let slot = unsafe { &mut *slot };
    if slot.task == task as u64 && slot.start_time == start_time && slot.css_set == css_set && slot.generation == generation && !pending {
        return if slot.in_scope != 0 { Some((slot.cgroup_id, slot.flags)) } else { None };
    }
    let cgroup_id = crate::scope::cgroup_id_of(css_set, word_type);
    let answer = decide(cfg, task, cgroup_id);
    let (in_scope, flags) = answer.map_or((0, 0), |(_, flags)| (1, flags));
    *slot = ScopeCache { task: task as u64, start_time, generation, css_set, cgroup_id, in_scope, flags };
    answer
}

/// [`current_scope`] without the cache: the task's mark, or the cgroup ancestry.
#[inline(always)]
fn decide(cfg: &Config, task: *mut task_struct, cgroup_id: u64) -> Option<(u64, u32)> {
    match workload_origin(cfg, task) {
        // A runtime's task that installed a seccomp filter before its exec, or one moved
        // here after its exec (a runtime's helper): set-up.
        Some(origin) => {
            let setup = origin.phase != PHASE_WORKLOAD || moved(&origin, cgroup_id);
            Some((cgroup_id, if setup { FLAG_SETUP } else { 0 }))
        }
        None if in_scope(cfg) => Some((cgroup_id, FLAG_SETUP)),
        None => None,
    }
}

/// A task's mark was written, or a task changed cgroup: every CPU's cached answer is stale.
#[inline(always)]
pub fn scope_changed() {
    if let Some(state) = kernel_state() {
        // SAFETY: a map value pointer; the add is atomic (other CPUs update it too).
        unsafe { crate::atomic_add(&mut (*state).generation, 1u64) };
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
    scope_changed();
    if WORKLOAD_TASKS.remove(&tid).is_ok() {
        pending(-1);
    }
    Some(stored)
}
