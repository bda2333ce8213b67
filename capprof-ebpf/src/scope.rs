//! Scope: is the current task in a watched cgroup (or below one), or is everything watched
//! (the daemon)? Asked by the check program and by the task hooks alike.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
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
