//! Classification: what each check means for the minimal set, as one table of call-site
//! rules (`RULES`): the capability, the kernel function that asked or one on its path, and a
//! signal the kernel side recorded with the check (set-up phase, borrowed credentials, NOAUDIT,
//! the effect test on the system call's arguments, the verdict) give a class and the reason
//! shown in reports. First match wins; every row has a root-free unit test below, and the rows
//! that come from ../shared/KERNEL-CHECK-SITES.md name their row there.
//!
//! Classes: runtime (set-up before the workload's exec, or a runtime's own process), borrowed
//! (credentials not the task's own), probed (a refusal would leave everything the program can
//! observe unchanged: return value, data, files), optional (granted, where many programs fall
//! back quietly: in the set, a re-run decides), denied (refused: the workload would need it for
//! what it tried), conditional (granted where the program may tolerate a refusal: in the set,
//! a re-run decides), needed (granted and acted on). A check made while capprof was stopping
//! the workload is "at stop" instead of needed, optional or denied: shown apart, never in the
//! set.
//!
//! The rule for "probed" (../shared/KERNEL-CHECK-SITES.md, at its top): only where a refusal
//! changes nothing the program can see. A refusal the program sees but may tolerate (an EPERM,
//! a listing with names left out, set-id bits stripped) is conditional or optional: kept in the
//! set until a re-run without it (`record --prove`, `minimize`) shows it can go.
//!
//! Then alternatives are folded: a refused DAC_READ_SEARCH followed by a granted DAC_OVERRIDE
//! (and NET_RAW before NET_ADMIN for SO_MARK/SO_PRIORITY) is one need, not two; and a narrower
//! capability needed only where a broader one that is needed anyway also grants it (a search
//! by DAC_READ_SEARCH on the way to a file DAC_OVERRIDE opens) is folded into the broader one.

use serde::{Deserialize, Serialize};

use crate::attribution::{is_runtime_comm, Check};
use crate::capability::Capability;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Needed,
    /// Granted where the program may tolerate a refusal: kept in the set (an extra capability
    /// fails to protect, a missing one breaks), a re-run decides (`record --prove`).
    Conditional,
    /// Granted where many programs fall back quietly when refused: kept in the set like
    /// `Conditional`, a re-run decides.
    Optional,
    Denied,
    AtStop,
    Probed,
    Borrowed,
    Runtime,
}

impl Classification {
    pub const ALL: [Self; 8] = [Self::Needed, Self::Conditional, Self::Optional, Self::Denied, Self::AtStop, Self::Probed, Self::Borrowed, Self::Runtime];

    /// The class a [`Classification::label`] names (the daemon's `class` metric label).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.label() == label)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Needed => "needed",
            Self::Conditional => "conditional",
            Self::Optional => "optional",
            Self::Denied => "denied",
            Self::AtStop => "at stop",
            Self::Probed => "probed",
            Self::Borrowed => "borrowed",
            Self::Runtime => "runtime",
        }
    }
}

/// What, besides the capability and the functions, a rule asks of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Anything.
    Any,
    /// Before the workload's exec, or by a container runtime's own process.
    Setup,
    /// On credentials other than the task's own.
    Borrowed,
    /// `cap_capable` was told not to audit (kprobe and fexit backends).
    Noaudit,
    /// The effect test found that the system call's arguments make the answer irrelevant.
    NoEffect,
    /// The trace cannot tell whether the program depends on the answer (`FLAG_DOUBTFUL`).
    Doubtful,
    /// Every one of these checks was made in an exec walk's misses: an execvp trying a PATH
    /// entry where the program is not, before the one where it is.
    FutileExec,
    /// Granted.
    Granted,
    /// Refused.
    Denied,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Row of ../shared/KERNEL-CHECK-SITES.md this implements, if any.
    pub row: Option<u8>,
    /// Empty: any capability.
    pub capabilities: &'static [Capability],
    /// The asking function or one on the path must be one of these (empty: anywhere).
    pub via: &'static [&'static str],
    pub signal: Signal,
    pub class: Classification,
    pub reason: &'static str,
}

const fn rule(row: Option<u8>, capabilities: &'static [Capability], via: &'static [&'static str], signal: Signal, class: Classification, reason: &'static str) -> Rule {
    Rule { row, capabilities, via, signal, class, reason }
}

/// The DAC pair `generic_permission` asks on path walks.
const DAC: &[Capability] = &[C::DAC_READ_SEARCH, C::DAC_OVERRIDE];

use Capability as C;
use Classification::*;

/// The rules, first match wins.
pub static RULES: &[Rule] = &[
    rule(None, &[], &[], Signal::Setup, Runtime, "runtime set-up before the workload's own exec"),
    rule(Some(5), &[], &[], Signal::Borrowed, Borrowed, "checked on credentials that are not the task's own (e.g. overlayfs copy-up)"),
    rule(Some(4), &[], &["security_vm_enough_memory_mm", "cap_vm_enough_memory", "__vm_enough_memory"], Signal::Any, Probed,
        "overcommit reserve probe (mmap, brk, execve, fork, shmget, stack growth): never a need"),
    rule(None, &[], &[], Signal::Noaudit, Conditional,
        "NOAUDIT check (cap_capable's opts): refused, the kernel degrades instead of failing, but what it returns changes (a /proc field hidden or zeroed); a re-run decides (record --prove)"),
    rule(None, &[], &["ns_capable_noaudit", "has_ns_capability_noaudit", "has_capability_noaudit"], Signal::Any, Conditional,
        "quiet (NOAUDIT) check: refused, the kernel degrades instead of failing, but what it returns changes (a /proc field hidden or zeroed); a re-run decides (record --prove)"),
    rule(Some(1), &[C::SETPCAP], &["cap_capset", "cap_inh_is_capped", "security_capset"], Signal::NoEffect, Probed,
        "capset kept the inheritable set within the old inheritable and permitted sets: SETPCAP changes nothing there"),
    rule(Some(2), &[C::SETUID], &["__sys_setuid"], Signal::NoEffect, Probed,
        "setuid to the real and saved uid the task already has: the call succeeds without SETUID"),
    rule(Some(2), &[C::SETGID], &["__sys_setgid"], Signal::NoEffect, Probed,
        "setgid to the real and saved gid the task already has: the call succeeds without SETGID"),
    rule(Some(12), &[C::KILL], &[], Signal::NoEffect, Conditional,
        "signal 0 to another user's process: without KILL it gets EPERM, which `kill -0` and many liveness checks read as \"gone\"; a re-run decides (record --prove)"),
    rule(Some(11), &[C::FSETID], &[], Signal::NoEffect, Probed,
        "a chmod whose new mode has no set-gid bit: without FSETID the kernel would clear a bit the mode does not ask for, so the result is the same"),
    rule(Some(11), &[C::FSETID], &[], Signal::Doubtful, Conditional,
        "a write or chown of a set-id file: without FSETID the kernel strips its set-id bits (the file's mode changes) and the call still succeeds; a re-run decides (record --prove)"),
    rule(Some(3), DAC, &["generic_permission"], Signal::FutileExec, Probed,
        "granted only in an execvp's misses (PATH entries without the program, before the one that ran): refused, execvp goes on past the EACCES as past the ENOENT"),
    rule(Some(6), &[C::AUDIT_WRITE], &["audit_receive_msg", "audit_netlink_ok"], Signal::Granted, Conditional,
        "an audit message on the audit netlink socket (PAM, login tools): refused, the error comes back in the netlink ack and most programs go on; a re-run decides (record --prove)"),
    rule(None, &[C::CHOWN], &[], Signal::Doubtful, Conditional,
        "fchown of an open file, often a pid or log file handed to the user the program drops to: refused, many programs (dnsmasq) log and go on; a re-run decides (record --prove)"),
    rule(Some(10), &[C::FOWNER], &[], Signal::Doubtful, Conditional,
        "a timestamp touch of a file the task does not own: without FOWNER the kernel asks for write permission instead, which may pass; a re-run decides (record --prove)"),
    rule(None, &[C::SETUID], &["cap_bprm_creds_from_file"], Signal::Any, Probed,
        "exec of a set-id binary under no-new-privs or ptrace: the exec proceeds without the id change"),
    rule(Some(21), DAC, &[], Signal::NoEffect, Probed,
        "opening the task's own /proc/self/fd: proc_fd_permission lets the task in whatever generic_permission answered first"),
    rule(Some(15), &[C::BLOCK_SUSPEND], &["ep_take_care_of_epollwakeup", "do_epoll_ctl", "ep_insert", "ep_modify"], Signal::Any, Probed,
        "EPOLLWAKEUP is cleared silently without it: never a need"),
    rule(Some(16), &[C::SYS_ADMIN], &["ext4_xattr_list_entries", "ext4_xattr_trusted_list", "xfs_xattr_put_listent"], Signal::Granted, Needed,
        "listing a file's extended attributes on ext4/xfs asks once per trusted.* attribute: without it that name is left out, and a copy (cp -a, rsync -X, tar --xattrs) silently loses it"),
    rule(Some(16), &[C::SYS_ADMIN], &["simple_xattr_list", "vfs_listxattr", "listxattr"], Signal::Granted, Conditional,
        "listing extended attributes (tmpfs, kernfs ask before knowing whether a trusted.* name exists): without it trusted.* names are left out; a re-run decides (record --prove)"),
    rule(None, &[C::NET_ADMIN], &["sk_setsockopt"], Signal::Doubtful, Optional,
        "in the set until a re-run decides (record --prove): SO_RCVBUFFORCE/SO_SNDBUFFORCE get EPERM without it, and many programs fall back to the capped size"),
    rule(Some(14), &[C::SYS_RESOURCE], &["pipe_set_size", "pipe_fcntl"], Signal::Granted, Optional,
        "in the set until a re-run decides (record --prove): resizing a pipe past the unprivileged limit gets EPERM without it, and many programs keep the smaller pipe"),
    rule(Some(19), &[C::SYS_RESOURCE], &["do_prlimit"], Signal::Granted, Optional,
        "in the set until a re-run decides (record --prove): raising a hard rlimit gets EPERM without it; nginx logs and goes on, redis retries lower, others fail"),
    rule(None, &[C::SYS_RESOURCE], &["__set_oom_adj"], Signal::Granted, Optional,
        "in the set until a re-run decides (record --prove): lowering oom_score_adj gets EACCES without it; sshd logs and goes on"),
    rule(None, &[C::SYS_NICE], &["set_one_prio", "can_nice", "__sched_setscheduler"], Signal::Granted, Optional,
        "in the set until a re-run decides (record --prove): raising a priority gets EPERM without it; a best effort for daemons, the purpose of nice/renice/chrt"),
    rule(None, &[], &["bprm_caps_from_vfs_caps"], Signal::Granted, Needed,
        "exec of a program whose file capability asks for it (effective bit): without it in the bounding set the kernel refuses the exec itself, whether or not the program then checks it"),
    rule(None, &[], &[], Signal::Denied, Denied, "refused: the workload would need it for what it tried"),
    rule(None, &[], &[], Signal::Any, Needed, "granted and acted on"),
];

impl Rule {
    fn matches(&self, c: &Check) -> bool {
        // A refused check never lands in the set through a row written for granted ones.
        if c.denied && matches!(self.class, Needed | Conditional | Optional) {
            return false;
        }
        if !self.capabilities.is_empty() && !self.capabilities.iter().any(|k| k.number() == c.capability) {
            return false;
        }
        if !self.via.is_empty() && !self.via.iter().any(|f| c.via(f)) {
            return false;
        }
        match self.signal {
            Signal::Any => true,
            Signal::Setup => c.setup || is_runtime_comm(&c.comm),
            Signal::Borrowed => c.borrowed,
            Signal::Noaudit => c.noaudit,
            Signal::NoEffect => c.no_effect,
            Signal::Doubtful => c.doubtful && !c.denied,
            Signal::FutileExec => !c.denied && c.count > 0 && c.futile >= c.count,
            Signal::Granted => !c.denied,
            Signal::Denied => c.denied,
        }
    }
}

/// The first rule a check matches.
pub fn rule_for(c: &Check) -> &'static Rule {
    RULES.iter().find(|r| r.matches(c)).unwrap_or(&RULES[RULES.len() - 1])
}

/// Classifies one check, with the reason shown in reports.
pub fn classify(c: &Check) -> (Classification, String) {
    let r = rule_for(c);
    if c.at_stop && matches!(r.class, Needed | Conditional | Optional | Denied) {
        return (AtStop, format!("made while capprof stopped the workload (a graceful stop by its supervisor needs it too): {}", r.reason));
    }
    (r.class, r.reason.to_string())
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

/// Broader capabilities that grant what a narrower one does at one site: `generic_permission`
/// lets DAC_OVERRIDE do every read and search DAC_READ_SEARCH does, and SO_MARK/SO_PRIORITY
/// take NET_ADMIN as well as NET_RAW.
const SUBSUMED: [(Capability, Capability, &str); 2] = [
    (Capability::DAC_OVERRIDE, Capability::DAC_READ_SEARCH, "generic_permission"),
    (Capability::NET_ADMIN, Capability::NET_RAW, "sk_setsockopt"),
];

/// When the broader capability is needed anyway and every need of the narrower one is at the
/// site the broader one also satisfies, the narrower one is folded into it (the set keeps one);
/// the narrower one alone stays needed.
pub fn fold_subsumed(checks: &mut [(Check, Classification, String)]) {
    for (broad, narrow, via) in SUBSUMED {
        let broad_needed = checks.iter().any(|(c, k, _)| *k == Needed && c.capability == broad.number());
        let narrow_needs = || checks.iter().filter(|(c, k, _)| *k == Needed && c.capability == narrow.number());
        if !broad_needed || narrow_needs().next().is_none() || !narrow_needs().all(|(c, _, _)| c.via(via)) {
            continue;
        }
        for (c, k, reason) in checks.iter_mut() {
            if *k == Needed && c.capability == narrow.number() {
                *k = Probed;
                *reason = format!("covered by {broad}, which is needed anyway and also grants this at {via}");
            }
        }
    }
}

#[cfg(test)]
mod tests;
