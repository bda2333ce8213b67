//! Exec walks that fail anyway: `generic_permission` asks DAC_READ_SEARCH or DAC_OVERRIDE for
//! each directory it cannot search by its mode. An execvp trying each PATH entry in turn
//! searches directories where the program is not (ENOENT), and goes on to the next entry; a
//! grant there turned an EACCES into an ENOENT, which execvp treats the same: it bought nothing.
//!
//! Granted DAC checks of the workload made in an execve wait on the task (task-local storage)
//! with the hash of the file name execve was asked to run. When an exec succeeds
//! (`sched_process_exec`), checks of that same file name were its own walk (needs); checks of
//! attempts at another file name with the same last component (`/root/bin/true` before
//! `/usr/bin/true`) were the PATH walk's misses, and are counted into `FUTILE`; anything else
//! is left a need. No system call hook: an exit hook would put every system call of every
//! process on the host on the tracing slow path (~180 ns each, measured in BENCHMARKS.md).

use aya_ebpf::{
    bindings::{pt_regs, task_struct},
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
};
use capprof_common::cap::{DAC_OVERRIDE as CAP_DAC_OVERRIDE, DAC_READ_SEARCH as CAP_DAC_READ_SEARCH};
use capprof_common::{counter, path_hashes, CheckKey, PendingWalk, WalkEntry, FLAG_BORROWED, FLAG_DENIED, FLAG_SETUP, WALK_NAME_LEN, WALK_SLOTS};

use crate::maps::{bump, FUTILE, WALKS};

/// Offset of `filename` in `struct linux_binprm`, from the kernel's BTF (0: walks not followed).
#[no_mangle]
static BPRM_FILENAME_OFFSET: u32 = 0;

const NR_EXECVE: u64 = 59;
/// `__USER_CS`: the native 64-bit system call ABI.
const USER_CS: u64 = 0x33;

const EMPTY_ENTRY: WalkEntry =
    WalkEntry { key: CheckKey { cgroup_id: 0, site: 0, cap: 0, flags: 0, comm: [0; 16] }, path_hash: 0, name_hash: 0, count: 0, reserved: 0 };
const EMPTY: PendingWalk = PendingWalk { entries: [EMPTY_ENTRY; WALK_SLOTS] };

/// Notes a counted check that may belong to an exec walk's miss: a granted DAC check of the
/// workload, inside execve.
#[inline(always)]
pub fn note(key: &CheckKey) {
    if (key.cap != CAP_DAC_OVERRIDE && key.cap != CAP_DAC_READ_SEARCH) || key.flags & (FLAG_DENIED | FLAG_SETUP | FLAG_BORROWED) != 0 {
        return;
    }
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    if unsafe { core::ptr::read_volatile(&BPRM_FILENAME_OFFSET) } == 0 {
        return;
    }
    // Only now: every other check pays nothing here.
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: a helper returning the task's saved registers (BTF pointer, fault-safe loads).
    let regs = unsafe { bpf_task_pt_regs(task) } as *const pt_regs;
    if regs.is_null() {
        return;
    }
    // SAFETY: `regs` is bpf_task_pt_regs' BTF pointer: the verifier checks each load.
    let (cs, nr, filename) = unsafe { ((*regs).cs, (*regs).orig_rax, (*regs).rdi) };
    if cs != USER_CS || nr != NR_EXECVE {
        return;
    }
    let mut name = [0u8; WALK_NAME_LEN];
    if unsafe { bpf_probe_read_user_str_bytes(filename as *const u8, &mut name) }.is_err() {
        return;
    }
    let Some((path_hash, name_hash)) = path_hashes(&name) else { return };
    let Some(walk) = WALKS.get_or_insert(task, &EMPTY) else {
        bump(counter::WALKS_UNTRACKED);
        return;
    };
    // SAFETY: task-local storage of the current task, only touched by the task itself.
    let walk = unsafe { &mut *walk };
    for e in walk.entries.iter_mut() {
        if e.count == 0 {
            *e = WalkEntry { key: *key, path_hash, name_hash, count: 1, reserved: 0 };
            return;
        }
        if e.path_hash == path_hash && e.key == *key {
            e.count += 1;
            return;
        }
    }
    bump(counter::WALKS_UNTRACKED);
}

/// At a successful exec (`sched_process_exec`, TP_PROTO(p, old_pid, bprm)): settles the
/// task's pending attempts against the file name that ran.
#[inline(always)]
pub fn exec_succeeded(task: *mut task_struct, bprm: u64) {
    let Some(walk) = WALKS.get(task) else { return };
    // SAFETY: as in `note`.
    let walk = unsafe { &mut *walk };
    if walk.entries[0].count == 0 {
        return;
    }
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let offset = unsafe { core::ptr::read_volatile(&BPRM_FILENAME_OFFSET) } as u64;
    let ran = unsafe { bpf_probe_read_kernel((bprm + offset) as *const u64) }.ok().and_then(|p| {
        let mut name = [0u8; WALK_NAME_LEN];
        unsafe { bpf_probe_read_kernel_str_bytes(p as *const u8, &mut name) }.ok()?;
        path_hashes(&name)
    });
    if let Some((path_hash, name_hash)) = ran {
        for e in walk.entries.iter() {
            // Another file of the same name tried before this one: a PATH miss.
            if e.count > 0 && e.path_hash != path_hash && e.name_hash == name_hash {
                add(&e.key, e.count as u64);
            }
        }
    }
    *walk = EMPTY;
}

#[inline(always)]
fn add(key: &CheckKey, n: u64) {
    match FUTILE.get_ptr_mut(key) {
        // This CPU's slot: programs run with migration disabled.
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        Some(v) => unsafe { *v += n },
        None => {
            if FUTILE.insert(key, &n, 0).is_err() {
                bump(counter::FUTILE_MAP_FULL);
            }
        }
    }
}
