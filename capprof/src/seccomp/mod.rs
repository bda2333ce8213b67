//! Seccomp beside capabilities (`--seccomp`): the system call tables the kernel programs'
//! numbers are named with ([`Arch`]), the OCI/Docker profile file format ([`oci`]), the
//! filter capprof loads itself before a plain command's exec ([`filter`]), and Docker's
//! default profile, which a recorded one is compared with ([`docker_default`]).
//!
//! The syscall map is per architecture as the kernel reports it: x86_64, x32 (the x86_64
//! table with `__X32_SYSCALL_BIT`) and i386 (32-bit compat calls). Only x86 is known; on other
//! architectures the kernel programs' numbers are named with nothing and `--seccomp` refuses.

pub mod docker_default;
pub mod filter;
pub mod oci;
mod table;

use serde::{Deserialize, Serialize};

/// A system call table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    X32,
    I386,
}

/// AUDIT_ARCH_X86_64 and AUDIT_ARCH_I386 (linux/audit.h): `seccomp_data.arch`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// x32 calls carry this bit in their number (and report AUDIT_ARCH_X86_64).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl Arch {
    pub const ALL: [Arch; 3] = [Arch::X86_64, Arch::X32, Arch::I386];

    /// The kernel programs' `ARCH_*`.
    pub fn from_kernel(arch: u32) -> Option<Self> {
        match arch {
            capprof_common::ARCH_X86_64 => Some(Self::X86_64),
            capprof_common::ARCH_X32 => Some(Self::X32),
            capprof_common::ARCH_I386 => Some(Self::I386),
            _ => None,
        }
    }

    /// libseccomp's name, as OCI profiles spell it.
    pub fn scmp_name(self) -> &'static str {
        match self {
            Self::X86_64 => "SCMP_ARCH_X86_64",
            Self::X32 => "SCMP_ARCH_X32",
            Self::I386 => "SCMP_ARCH_X86",
        }
    }

    pub fn from_scmp_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.scmp_name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::X32 => "x32",
            Self::I386 => "i386",
        }
    }

    fn table(self) -> &'static [(u32, &'static str)] {
        match self {
            Self::X86_64 => table::X86_64,
            Self::X32 => table::X32,
            Self::I386 => table::I386,
        }
    }

    /// The name of call `nr` in this table (x32 numbers without the x32 bit).
    pub fn name_of(self, nr: u32) -> Option<&'static str> {
        let t = self.table();
        t.binary_search_by_key(&nr, |(n, _)| *n).ok().map(|i| t[i].1)
    }

    /// The number of `name` in this table, if it has it.
    pub fn number_of(self, name: &str) -> Option<u32> {
        self.table().iter().find(|(_, n)| *n == name).map(|(nr, _)| *nr)
    }
}

/// Whether `name` is a system call of any known table.
pub fn is_known(name: &str) -> bool {
    Arch::ALL.iter().any(|a| a.number_of(name).is_some())
}

/// The system calls a runtime's init makes between installing the container's filter and the
/// workload's exec. Measured with runc 1.1 (Debian 12) under Docker's default profile, with
/// no-new-privileges off (the filter is installed before the capabilities are dropped and
/// the user switched), on (installed just before the exec) and with `--user`; plus what Go's
/// runtime may call at any point in runc init (signal returns after preemption, futex waits,
/// thread signals) although one run need not show it. Always in a container's allow list:
/// a call missing here fails the container's start, not the workload.
pub const RUNTIME_BOUNDARY: &[&str] = &[
    "capget", "capset", "chdir", "close", "epoll_ctl", "epoll_pwait", "execve", "exit_group", "faccessat2", "fchown", "fcntl", "fstat",
    "fstatfs", "futex", "getcwd", "getdents64", "getpid", "getppid", "madvise", "mmap", "munmap", "nanosleep", "newfstatat", "openat",
    "prctl", "read", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sched_yield", "setgid", "setgroups", "setresgid", "setresuid",
    "setuid", "sigaltstack", "tgkill", "write",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_numbers_both_ways() {
        assert_eq!(Arch::X86_64.name_of(59), Some("execve"));
        assert_eq!(Arch::X86_64.number_of("seccomp"), Some(317));
        assert_eq!(Arch::I386.name_of(11), Some("execve"));
        assert_eq!(Arch::X32.name_of(520), Some("execve"), "x32's own execve");
        assert_eq!(Arch::X86_64.name_of(100_000), None);
        for arch in Arch::ALL {
            let t = arch.table();
            assert!(t.windows(2).all(|w| w[0].0 < w[1].0), "{arch:?} sorted by number, no duplicates");
            assert!(t.last().is_some_and(|(nr, _)| (*nr as usize) < capprof_common::SYSCALL_SLOTS), "the kernel counts every number");
        }
        for name in RUNTIME_BOUNDARY {
            assert!(Arch::X86_64.number_of(name).is_some(), "{name}");
        }
        assert!(is_known("socketcall") && !is_known("no_such_call"));
    }
}
