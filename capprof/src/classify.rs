//! Classification: what each check means for the minimal set.
//!
//! The rules, first match wins (kernel facts in ../shared/CAPABILITY-NOTES.md):
//! 1. runtime: made before the workload's exec in its scope, or by a runtime's own process;
//! 2. borrowed: made on credentials that are not the task's own;
//! 3. probed: the kernel asks without acting on a "no" (overcommit reserve, NOAUDIT from
//!    `opts` where the backend sees it, else from the API function that asked, FSETID
//!    stripping, set-id exec under no-new-privs);
//! 4. optional: granted, but the caller has a silent fallback (SO_RCVBUFFORCE, pipe size,
//!    rlimits, nice);
//! 5. denied: refused and not a probe: the workload "would need" it for what it tried;
//! 6. needed: granted and acted on.
//!
//! Then alternatives are folded: a refused DAC_READ_SEARCH followed by a granted DAC_OVERRIDE
//! (and NET_RAW before NET_ADMIN for SO_MARK/SO_PRIORITY) is one need, not two.

use serde::{Deserialize, Serialize};

use crate::attribution::{is_runtime_comm, Check};
use crate::capability::Capability;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Needed,
    Optional,
    Denied,
    Probed,
    Borrowed,
    Runtime,
}

impl Classification {
    pub fn label(self) -> &'static str {
        match self {
            Self::Needed => "needed",
            Self::Optional => "optional",
            Self::Denied => "denied",
            Self::Probed => "probed",
            Self::Borrowed => "borrowed",
            Self::Runtime => "runtime",
        }
    }
}

/// Sites where the kernel asks "quietly" (NOAUDIT): it probes, or degrades without failing.
const NOAUDIT_SITES: [&str; 3] = ["ns_capable_noaudit", "has_ns_capability_noaudit", "has_capability_noaudit"];
const OVERCOMMIT_SITES: [&str; 2] = ["security_vm_enough_memory_mm", "cap_vm_enough_memory"];

/// (capability, function on the path) pairs whose callers fall back silently when refused.
const SILENT_FALLBACKS: [(Capability, &str, &str); 7] = [
    (Capability::NET_ADMIN, "sk_setsockopt", "SO_RCVBUFFORCE/SO_SNDBUFFORCE fall back to the capped size"),
    (Capability::SYS_RESOURCE, "pipe_set_size", "pipe resizing falls back to the unprivileged limit"),
    (Capability::SYS_RESOURCE, "pipe_fcntl", "pipe resizing falls back to the unprivileged limit"),
    (Capability::SYS_RESOURCE, "do_prlimit", "raising rlimits is usually best-effort"),
    (Capability::SYS_NICE, "set_one_prio", "nice/priority changes are usually best-effort"),
    (Capability::SYS_NICE, "can_nice", "nice/priority changes are usually best-effort"),
    (Capability::SYS_NICE, "__sched_setscheduler", "scheduling changes are usually best-effort"),
];

/// Classifies one check, with the reason shown in reports.
pub fn classify(c: &Check) -> (Classification, String) {
    use Classification::*;
    let cap = Capability::from_number(c.capability);
    if c.setup || is_runtime_comm(&c.comm) {
        return (Runtime, "runtime set-up before the workload's own exec".into());
    }
    if c.borrowed {
        return (Borrowed, "checked on credentials that are not the task's own (e.g. overlayfs copy-up)".into());
    }
    if OVERCOMMIT_SITES.iter().any(|s| c.via(s)) {
        return (Probed, "overcommit reserve probe on mmap/brk/execve: never a need".into());
    }
    if c.noaudit {
        return (Probed, "NOAUDIT check (cap_capable's opts): the kernel degrades instead of failing".into());
    }
    if let Some(site) = NOAUDIT_SITES.iter().find(|s| c.site.as_deref() == Some(**s)) {
        return (Probed, format!("quiet (NOAUDIT) check via {site}: the kernel degrades instead of failing"));
    }
    if cap == Some(Capability::FSETID) {
        return (Probed, "harmless: without it set-id bits are stripped and the operation still succeeds".into());
    }
    if cap == Some(Capability::SETUID) && c.via("cap_bprm_creds_from_file") {
        return (Probed, "exec of a set-id binary under no-new-privs or ptrace: the exec proceeds without the id change".into());
    }
    if !c.denied {
        if let Some((_, f, why)) = SILENT_FALLBACKS.iter().find(|(k, f, _)| Some(*k) == cap && c.via(f)) {
            return (Optional, format!("checked, probably optional — verify: {why} (via {f})"));
        }
    }
    if c.denied {
        return (Denied, "refused: the workload would need it for what it tried".into());
    }
    (Needed, "granted and acted on".into())
}

/// Alternative pairs: when `first` is refused and `second` granted on the same path, only
/// `second` is used.
const ALTERNATIVES: [(Capability, Capability, &str); 2] = [
    (Capability::DAC_READ_SEARCH, Capability::DAC_OVERRIDE, "generic_permission"),
    (Capability::NET_RAW, Capability::NET_ADMIN, "sk_setsockopt"),
];

/// Reclassifies refused first alternatives as probes. `checks` pairs each check with its class.
pub fn fold_alternatives(checks: &mut [(Check, Classification, String)]) {
    for (first, second, via) in ALTERNATIVES {
        let granted_second = checks.iter().any(|(c, k, _)| {
            *k == Classification::Needed && c.capability == second.number() && (c.via(via) || c.path.is_empty())
        });
        if !granted_second {
            continue;
        }
        for (c, k, reason) in checks.iter_mut() {
            if *k == Classification::Denied && c.capability == first.number() && (c.via(via) || c.path.is_empty()) {
                *k = Classification::Probed;
                *reason = format!("alternative tried first by {via}; {second} was granted instead");
            }
        }
    }
}
