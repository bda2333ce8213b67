//! Scope: is the current task in a watched cgroup (or below one), or is everything watched
//! (the daemon)? Asked by the check program and by the task hooks alike.

use aya_ebpf::helpers::{bpf_get_current_cgroup_id, generated::bpf_get_current_ancestor_cgroup_id};
use capprof_common::{Config, MAX_CGROUP_LEVELS};

use crate::maps::WATCHED;

/// Is the current task in a watched cgroup or one of its descendants?
#[inline(always)]
pub fn in_scope(cfg: &Config) -> bool {
    if cfg.watch_all != 0 {
        return true;
    }
    // Shallow levels first: recorded cgroups sit one or two levels below the root.
    for level in 1..=MAX_CGROUP_LEVELS {
        // SAFETY: a helper call without pointer arguments.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            return false;
        }
        if WATCHED.get_ptr(&id).is_some() {
            return true;
        }
    }
    false
}

/// `task_struct.cgroups`, `css_set.dfl_cgrp`, `cgroup.kn`, `kernfs_node.id`, from the kernel's
/// BTF, set at load time (0: unknown).
#[no_mangle]
static CGROUP_ID_OFFSETS: [u32; 4] = [0; 4];

/// The current task's cgroup v2 id: `task->cgroups->dfl_cgrp->kn->id`, four plain loads where
/// the kernel has `bpf_rdonly_cast` (what `bpf_get_current_cgroup_id` reads, without the
/// helper call that costs this path most: BENCHMARKS.md), else the helper. The program runs
/// under RCU (the tracepoint holds it), as the helper does.
#[inline(always)]
pub fn current_cgroup_id(task: *const u8) -> u64 {
    let cgroups = cgroups_offset();
    let word_type = crate::memory::word_type();
    if cgroups == 0 || word_type == 0 {
        // SAFETY: a helper call without pointer arguments.
        return unsafe { bpf_get_current_cgroup_id() };
    }
    let cast = crate::memory::rdonly_cast();
    // SAFETY: bpf_rdonly_cast makes the load fault-safe (the verifier marks it untrusted).
    cgroup_id_of(unsafe { *cast(task as u64 + cgroups as u64, word_type) }, word_type)
}

/// `task_struct.cgroups` (0: unknown).
#[inline(always)]
pub fn cgroups_offset() -> u32 {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    unsafe { core::ptr::read_volatile(&CGROUP_ID_OFFSETS[0]) }
}

/// The cgroup v2 id of the current task's `css_set` (`css_set->dfl_cgrp->kn->id`); the helper
/// when the chain breaks. Only with `bpf_rdonly_cast` (`word_type` != 0).
#[inline(always)]
pub fn cgroup_id_of(css_set: u64, word_type: u32) -> u64 {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let [_, dfl_cgrp, kn, id] = unsafe { core::ptr::read_volatile(&CGROUP_ID_OFFSETS) };
    let cast = crate::memory::rdonly_cast();
    // SAFETY: bpf_rdonly_cast makes each load fault-safe (the verifier marks it untrusted).
    let word = |addr: u64| -> u64 { unsafe { *cast(addr, word_type) } };
    let cgroup = word(css_set + dfl_cgrp as u64);
    let node = word(cgroup + kn as u64);
    if node == 0 {
        // SAFETY: as above.
        return unsafe { bpf_get_current_cgroup_id() };
    }
    word(node + id as u64)
}
