//! The running kernel's interfaces that are not BPF: tracefs, kallsyms, BTF, cgroup v2, own
//! privileges, the release.

pub mod btf;
pub mod cgroup;
pub mod kallsyms;
pub mod privileges;
pub mod tracefs;

/// Whether `pid` is a running capprof (its executable's name): the owner of a record cgroup
/// or a pinned generation named after it is alive.
pub fn is_capprof(pid: u32) -> bool {
    pid != std::process::id()
        && std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().starts_with("capprof")))
            .unwrap_or(false)
}

/// The running kernel's release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}
