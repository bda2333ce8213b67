//! The running kernel's interfaces that are not BPF: tracefs, kallsyms, BTF, cgroup v2, own
//! privileges, the release.

pub mod btf;
pub mod cgroup;
pub mod kallsyms;
pub mod privileges;
pub mod tracefs;

/// The running kernel's release (`uname -r`).
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}
