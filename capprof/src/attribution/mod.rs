//! Attribution: turns raw observations into named checks: which program (comm, executable),
//! which cgroup, which kernel function asked and by which path, and whether the task was the
//! workload or the runtime setting it up; then which workload (the command, or a container)
//! each check belongs to, and who that workload is across restarts and replicas ([`identity`],
//! the one resolver `record` and the daemon share). [`systemd`]: what a unit is and how a trial
//! drives it.

pub mod container;
pub mod discovery;
pub(crate) mod engine;
pub mod identity;
pub mod ownership;
pub mod run_command;
pub mod stop;
pub mod systemd;
pub mod workloads;

use capprof_common::{CheckKey, FLAG_BORROWED, FLAG_DENIED, FLAG_DOUBTFUL, FLAG_NOAUDIT, FLAG_NO_EFFECT, FLAG_SETUP};

use crate::collector::Observation;
use crate::kernel::kallsyms::Symbols;

/// A check with everything symbolized.
#[derive(Clone, Debug)]
pub struct Check {
    pub capability: u32,
    pub denied: bool,
    /// Made before the task exec'd inside the scope (runtime set-up).
    pub setup: bool,
    /// Made on credentials other than the task's own.
    pub borrowed: bool,
    /// `cap_capable` was told not to audit it (kprobe/fexit backends only).
    pub noaudit: bool,
    pub count: u64,
    pub cgroup_id: u64,
    pub comm: String,
    pub exe: Option<String>,
    /// The executable is set-id or has file capabilities.
    pub exe_gains_privilege: bool,
    /// What the executable's file capability demands at exec (see
    /// [`crate::collector::Sighting::file_caps`]).
    pub file_caps: Option<u64>,
    /// The kernel function that asked for the capability (`capable_wrt_inode_uidgid`, ...).
    pub site: Option<String>,
    /// The first sighting's kernel path, outermost first, tracing frames removed.
    pub path: Vec<String>,
    /// System call the first sighting was made in, if any.
    pub syscall: Option<String>,
    /// Effective capabilities of the first sighting's process (what it was granted).
    pub cap_eff: Option<u64>,
    /// The first sighting's user id (real).
    pub uid: Option<u32>,
    /// Made while capprof was stopping the workload.
    pub at_stop: bool,
    /// The system call's arguments show the check could change nothing (`FLAG_NO_EFFECT`).
    pub no_effect: bool,
    /// Without it the kernel falls back to another permission test (`FLAG_DOUBTFUL`).
    pub doubtful: bool,
    /// Of `count`, made in an exec walk's misses (an execvp trying PATH).
    pub futile: u64,
}

/// Programs whose own set-up runs inside the workload's cgroup and never counts as workload.
const RUNTIME_COMMS: [&str; 6] = ["runc", "crun", "conmon", "docker-init", "tini", "containerd-shim"];

/// Is this `comm` a container runtime's own process (runc's `runc:[2:INIT]` and friends), or
/// systemd's child that sets a service up before its exec? systemd names that child after the
/// program in parentheses (`(nginx)`); since systemd 255 it is an exec'd `systemd-executor`
/// that renames itself so.
pub fn is_runtime_comm(comm: &str) -> bool {
    comm.starts_with("runc:[")
        || RUNTIME_COMMS.iter().any(|r| comm == *r || comm.starts_with("containerd-shim"))
        || comm == "systemd-executor"
        || (comm.len() > 2 && comm.starts_with('(') && comm.ends_with(')'))
}

/// API functions between `security_capable` and the real asker; never the asker themselves.
const CAPABILITY_API: [&str; 14] = [
    "cap_capable",
    "security_capable",
    "ns_capable",
    "ns_capable_noaudit",
    "ns_capable_setid",
    "capable",
    "has_ns_capability",
    "has_ns_capability_noaudit",
    "has_capability",
    "has_capability_noaudit",
    "file_ns_capable",
    "capable_wrt_inode_uidgid",
    "sockopt_ns_capable",
    "sk_ns_capable",
];

pub fn symbolize(obs: &Observation, symbols: &Symbols) -> Check {
    let key: &CheckKey = &obs.key;
    let stack: Vec<String> = obs
        .sighting
        .as_ref()
        .map(|s| s.stack.iter().filter_map(|a| symbols.function(*a)).map(str::to_string).collect())
        .unwrap_or_default();
    // Frames inside cap_capable and the tracing machinery come first: keep what follows.
    let start = stack.iter().position(|f| f == "cap_capable").map(|i| i + 1).unwrap_or(0);
    let mut inner: Vec<String> = stack[start..]
        .iter()
        .take_while(|f| !f.starts_with("do_syscall") && !f.starts_with("entry_SYSCALL"))
        .cloned()
        .collect();
    let syscall = inner.iter().find_map(|f| syscall_name(f)).map(str::to_string);
    let site = (key.site != 0)
        .then(|| symbols.function(key.site).map(str::to_string))
        .flatten()
        .or_else(|| inner.iter().find(|f| f.as_str() != "security_capable").cloned());
    inner.dedup();
    inner.reverse();
    Check {
        capability: key.cap,
        denied: key.flags & FLAG_DENIED != 0,
        setup: key.flags & FLAG_SETUP != 0,
        borrowed: key.flags & FLAG_BORROWED != 0,
        noaudit: key.flags & FLAG_NOAUDIT != 0,
        count: obs.count,
        cgroup_id: key.cgroup_id,
        comm: comm_string(&key.comm),
        exe: obs.sighting.as_ref().and_then(|s| s.exe.clone()),
        exe_gains_privilege: obs.sighting.as_ref().is_some_and(|s| s.exe_gains_privilege),
        file_caps: obs.sighting.as_ref().and_then(|s| s.file_caps),
        site,
        path: inner,
        syscall,
        cap_eff: obs.sighting.as_ref().and_then(|s| s.cap_eff),
        uid: obs.sighting.as_ref().map(|s| s.uid),
        at_stop: obs.at_stop,
        no_effect: key.flags & FLAG_NO_EFFECT != 0,
        doubtful: key.flags & FLAG_DOUBTFUL != 0,
        futile: obs.futile,
    }
}

impl Check {
    /// Short path for reports: `chown -> setattr_prepare (capable_wrt_inode_uidgid)`.
    pub fn path_summary(&self) -> String {
        let asker = self
            .path
            .iter()
            .rev()
            .find(|f| !CAPABILITY_API.contains(&f.as_str()) && syscall_name(f).is_none())
            .cloned();
        let mut parts = Vec::new();
        if let Some(s) = &self.syscall {
            parts.push(s.clone());
        }
        if let Some(a) = asker {
            parts.push(a);
        }
        let mut out = if parts.is_empty() { "(no kernel stack)".to_string() } else { parts.join(" -> ") };
        if let Some(site) = &self.site {
            if !parts.contains(site) {
                out.push_str(&format!(" ({site})"));
            }
        }
        out
    }

    /// Does the first sighting's path pass through `function`?
    pub fn via(&self, function: &str) -> bool {
        self.site.as_deref() == Some(function) || self.path.iter().any(|f| f == function)
    }
}

/// `__x64_sys_chown` → `chown`.
fn syscall_name(frame: &str) -> Option<&str> {
    ["__x64_sys_", "__ia32_sys_", "__do_sys_", "__se_sys_", "__arm64_sys_", "ksys_"]
        .iter()
        .find_map(|p| frame.strip_prefix(p))
}

fn comm_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

impl Check {
    /// A granted check of `capability` asked by `site`, with `path` (outermost first) below it,
    /// made once by `prog`: what a kernel site implies without a check being traced (the
    /// exec of a file-capability program), and root-free tests.
    pub fn granted_at(capability: u32, site: &str, path: &[&str]) -> Self {
        Check {
            capability,
            denied: false,
            setup: false,
            borrowed: false,
            noaudit: false,
            count: 1,
            cgroup_id: 1,
            comm: "prog".into(),
            exe: None,
            exe_gains_privilege: false,
            file_caps: None,
            site: Some(site.into()),
            path: path.iter().map(|s| s.to_string()).collect(),
            syscall: None,
            cap_eff: None,
            uid: None,
            at_stop: false,
            no_effect: false,
            doubtful: false,
            futile: 0,
        }
    }

    /// [`Check::granted_at`], for root-free tests.
    #[cfg(test)]
    pub fn for_test(capability: u32, site: &str, path: &[&str]) -> Self {
        Self::granted_at(capability, site, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_comms() {
        assert!(is_runtime_comm("runc:[2:INIT]"));
        assert!(is_runtime_comm("docker-init"));
        assert!(is_runtime_comm("containerd-shim-runc-v2"));
        assert!(!is_runtime_comm("nginx"));
        assert!(!is_runtime_comm("runcible"));
    }

    #[test]
    fn syscall_names() {
        assert_eq!(syscall_name("__x64_sys_chown"), Some("chown"));
        assert_eq!(syscall_name("__do_sys_setuid"), Some("setuid"));
        assert_eq!(syscall_name("setattr_prepare"), None);
    }

    #[test]
    fn summary_names_syscall_asker_and_site() {
        let path = ["__x64_sys_fchownat", "do_fchownat", "chown_common", "notify_change", "setattr_prepare", "capable_wrt_inode_uidgid"];
        let c = Check { comm: "scenario".into(), syscall: Some("fchownat".into()), ..Check::for_test(0, "capable_wrt_inode_uidgid", &path) };
        assert_eq!(c.path_summary(), "fchownat -> setattr_prepare (capable_wrt_inode_uidgid)");
        assert!(c.via("notify_change"));
    }
}
