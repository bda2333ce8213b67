//! Types shared by capprof's kernel programs (`capprof-ebpf`) and its userspace (`capprof`).
//!
//! Every type here crosses the kernel/user boundary through a BPF map or the ring buffer, so
//! each is `#[repr(C)]` with explicitly sized fields laid out without implicit padding: both
//! sides must agree on every byte.
#![cfg_attr(not(test), no_std)]

/// Length of a task's `comm`, as the kernel stores it.
pub const COMM_LEN: usize = 16;
/// Kernel stack frames captured with the first sighting of a check (for the report's "path").
pub const STACK_DEPTH: usize = 16;
/// How many ancestor levels of the current cgroup the scope test walks.
pub const MAX_CGROUP_LEVELS: u32 = 8;
/// Words of kernel stack copied per calibration sample.
pub const CALIBRATION_WORDS: usize = 48;
/// Words of kernel stack read per check to find the call site.
pub const SITE_WINDOW_WORDS: usize = 32;
/// Of those, how many may hold the return address into `cap_capable` (the rest is room for
/// the caller slots above it).
pub const SITE_SCAN_WORDS: usize = 24;
/// Words read per check when the calibrated layout holds: from the return address into
/// `cap_capable` (or the caller's, at entry) up to the API caller's slot.
pub const SITE_NARROW_WORDS: usize = 16;
/// The helper number the check program calls where it means the `bpf_rdonly_cast` kfunc;
/// the loader rewrites those calls (see `capprof::backend::loader`).
pub const RDONLY_CAST_CALL: u32 = 0x7ca9_0001;

/// `Config::anchor_words` when no narrow read is possible (the scan is used).
pub const NO_ANCHOR: u32 = u32::MAX;

/// `CheckKey::flags`: the check returned an error (the capability was not granted).
pub const FLAG_DENIED: u32 = 1 << 0;
/// `CheckKey::flags`: the task had not exec'd inside the recorded scope, or was moved out of
/// the cgroup it exec'd in (runtime set-up: capprof's own child before exec, runc init, a
/// runtime's helper placed into a container).
pub const FLAG_SETUP: u32 = 1 << 1;
/// `CheckKey::flags`: the credentials checked were not the task's own (`cred != real_cred`),
/// e.g. overlayfs copy-up on the mounter's credentials.
pub const FLAG_BORROWED: u32 = 1 << 2;
/// `CheckKey::flags`: the call site could not be read (calibration failed or frames shifted).
pub const FLAG_SITE_UNKNOWN: u32 = 1 << 3;
/// `CheckKey::flags`: `cap_capable` was told not to audit (CAP_OPT_NOAUDIT): a probe. Only the
/// kprobe and fexit backends see `opts`.
pub const FLAG_NOAUDIT: u32 = 1 << 4;
/// `CheckKey::flags`: a set*id/setgroups check (CAP_OPT_INSETID).
pub const FLAG_INSETID: u32 = 1 << 5;

/// `CheckKey::flags`: the system call's own arguments show that the granted check could
/// change nothing (capset within the old sets, setuid to the current ids, kill with signal 0,
/// chmod without set-gid): see `capprof-ebpf/src/effect.rs`.
pub const FLAG_NO_EFFECT: u32 = 1 << 6;

/// `CheckKey::flags`: the request is one where the trace cannot tell whether the program
/// depends on the answer (FOWNER for a timestamp touch falls back to write permission; fchown
/// of an open file is often a pid or log file handed to an unprivileged user, and refused
/// many programs go on): only a re-run can tell.
pub const FLAG_DOUBTFUL: u32 = 1 << 8;

/// Bytes of an exec's file name the walk follower hashes (longer names are not compared).
pub const WALK_NAME_LEN: usize = 96;
/// Exec attempts with granted DAC checks one task keeps until an exec succeeds.
pub const WALK_SLOTS: usize = 4;

/// Granted DAC checks made in one execve attempt, by the hash of the file name it was asked
/// to run (see `capprof-ebpf/src/walks.rs`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WalkEntry {
    pub key: CheckKey,
    /// Hash of the whole file name, and of its last component.
    pub path_hash: u32,
    pub name_hash: u32,
    pub count: u32,
    pub reserved: u32,
}

/// A task's pending exec attempts (task-local storage).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingWalk {
    pub entries: [WalkEntry; WALK_SLOTS],
}

/// FNV-1a hashes of a NUL-terminated file name in `bytes`: the whole name and its last
/// component. None when no NUL ends it within `bytes` (too long to compare safely) or it is
/// empty. Shared by the kernel programs (on the exec's user argument and on the
/// `linux_binprm` file name) and the tests.
#[inline(always)]
pub fn path_hashes(bytes: &[u8; WALK_NAME_LEN]) -> Option<(u32, u32)> {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let (mut path, mut name) = (OFFSET, OFFSET);
    for (i, b) in bytes.iter().enumerate() {
        match *b {
            0 if i == 0 => return None,
            0 => return Some((path, name)),
            b'/' => {
                path = (path ^ b'/' as u32).wrapping_mul(PRIME);
                name = OFFSET;
            }
            c => {
                path = (path ^ c as u32).wrapping_mul(PRIME);
                name = (name ^ c as u32).wrapping_mul(PRIME);
            }
        }
    }
    None
}

/// Offsets in `struct cred` the effect test reads (from the kernel's BTF; all 0: the test is
/// off and those checks keep their plain classification).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredOffsets {
    /// `uid`, followed by `gid` (one 8-byte load reads both).
    pub uid: u32,
    /// `suid`, followed by `sgid`.
    pub suid: u32,
    pub cap_inheritable: u32,
    pub cap_permitted: u32,
}

/// `Config::site_mode`: call sites are not read.
pub const SITE_OFF: u32 = 0;
/// `Config::site_mode`: the window starts below `cap_capable`'s frame (raw tracepoint, fexit):
/// find the return address into `cap_capable`, the caller's is `caller_words` above it.
pub const SITE_SCAN: u32 = 1;
/// `Config::site_mode`: the window starts at the return address into the caller (kprobe at
/// function entry).
pub const SITE_AT_ENTRY: u32 = 2;

/// `Config::opts_mode`: the hook does not see `cap_capable`'s fourth argument.
pub const OPTS_NONE: u32 = 0;
/// `Config::opts_mode`: `unsigned int opts` bitmask (Linux >= 5.1 and backports).
pub const OPTS_BITMASK: u32 = 1;
/// `Config::opts_mode`: `int audit`, SECURITY_CAP_AUDIT (1) or NOAUDIT (0) (before 5.1).
pub const OPTS_AUDIT_INT: u32 = 2;

/// Network operations that need a capability on some runtimes but not in Docker's (or
/// containerd 2's) network namespaces, which lower `ip_unprivileged_port_start` and widen
/// `ping_group_range`: seen at the system call, whether or not a capability check follows.
pub mod net_use {
    /// bind() of an AF_INET/AF_INET6 socket to a port below 1024 (`port` set).
    pub const LOW_PORT_BIND: u32 = 1;
    /// An ICMP datagram ("ping") socket.
    pub const PING_SOCKET: u32 = 2;
}

/// Key of the network-use map: one counter per (cgroup, kind, port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetUseKey {
    pub cgroup_id: u64,
    pub kind: u32,
    pub port: u32,
}

/// Where a workload task exec'd: its cgroup then, and that cgroup's level. A task that is no
/// longer inside that cgroup's subtree was moved after its exec (a runtime's helper being
/// placed into a container), and its checks are set-up, not the workload's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskOrigin {
    pub cgroup_id: u64,
    /// Level of `cgroup_id` below the root (the root is 0).
    pub level: u32,
    /// `PHASE_WORKLOAD`, or `PHASE_FILTERED` for a runtime's task that installed a seccomp
    /// filter before the workload's exec (its checks stay set-up; its system calls from then
    /// on must be allowed by the profile).
    pub phase: u32,
    /// With refusal tracking (`SECCOMP_REFUSALS`): the system call the task entered, plus one
    /// (0: none). A call that exits with EPERM or ENOSYS without having entered was refused
    /// by seccomp.
    pub entered: u64,
}

impl TaskOrigin {
    /// A workload task that exec'd in `cgroup_id`, at `level`.
    pub const fn workload(cgroup_id: u64, level: u32) -> Self {
        Self { cgroup_id, level, phase: PHASE_WORKLOAD, entered: 0 }
    }
}

/// `TaskOrigin::phase` and `SyscallKey::phase`: the workload's own tasks (after their exec in
/// scope).
pub const PHASE_WORKLOAD: u32 = 0;
/// A runtime's task (runc/crun init, capprof's child) after it installed a seccomp filter and
/// before it exec'd the workload: what it calls then passes through the filter.
pub const PHASE_FILTERED: u32 = 1;
/// `SyscallKey::phase` only: calls of workload tasks refused before they entered (seccomp).
pub const PHASE_REFUSED: u32 = 2;
/// `SyscallKey::phase` only: calls of a filtered runtime task refused likewise.
pub const PHASE_REFUSED_FILTERED: u32 = 3;
/// `SyscallKey::phase` only: calls of workload tasks that seccomp answered with ENOSYS before
/// they entered (Docker's profile does so for `clone3`: glibc then falls back to `clone`).
pub const PHASE_ENOSYS: u32 = 4;
/// `SyscallKey::phase` only: calls of a filtered runtime task answered ENOSYS likewise.
pub const PHASE_ENOSYS_FILTERED: u32 = 5;

/// `SyscallKey::arch`: the native x86_64 table (AUDIT_ARCH_X86_64).
pub const ARCH_X86_64: u32 = 0;
/// The x32 ABI: x86_64 numbers with `__X32_SYSCALL_BIT` (0x40000000), stored without it.
pub const ARCH_X32: u32 = 1;
/// 32-bit compat calls (int 0x80, sysenter from 32-bit code: AUDIT_ARCH_I386), the i386 table.
pub const ARCH_I386: u32 = 2;

/// Slots per syscall counter array: above the highest number of every table (x32 reaches
/// 547), a power of two so the index is masked.
pub const SYSCALL_SLOTS: usize = 1024;

/// `Config::seccomp`: system calls are not counted (the hooks are not attached).
pub const SECCOMP_OFF: u32 = 0;
/// Count each workload's system calls (no longer set: counting always tracks refusals).
pub const SECCOMP_COUNT: u32 = 1;
/// Count them, and the calls refused before they entered (the engine's filter while
/// recording, the profile being proven under verify and minimize).
pub const SECCOMP_REFUSALS: u32 = 2;

/// Key of the system-call map: one counter array per (cgroup, program, table, phase).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyscallKey {
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    /// `ARCH_*`.
    pub arch: u32,
    /// `PHASE_*`.
    pub phase: u32,
}

/// Calls per system call number (index), for one `SyscallKey`. Kept in the kernel: no event
/// per system call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallCounts {
    pub counts: [u32; SYSCALL_SLOTS],
}

/// Capability numbers the kernel programs test (linux/capability.h).
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_ADMIN: u32 = 12;
    pub const SYS_ADMIN: u32 = 21;
}

/// Indexes of the loss and health counters (a per-CPU array summed by userspace).
pub mod counter {
    /// A new check could not be stored: the aggregation map is full.
    pub const CHECKS_MAP_FULL: u32 = 0;
    /// A first-sighting event could not be reserved: the ring buffer is full.
    pub const EVENTS_DROPPED: u32 = 1;
    /// A task could not be marked as workload: the task map is full.
    pub const TASKS_MAP_FULL: u32 = 2;
    /// System calls not counted: the system-call map is full (`--seccomp`).
    pub const SYSCALLS_MAP_FULL: u32 = 3;
    /// Checks whose call site could not be read.
    pub const SITE_UNKNOWN: u32 = 4;
    /// Futile exec walks not counted: the `FUTILE` map was full (those checks stay needs).
    pub const FUTILE_MAP_FULL: u32 = 5;
    /// Granted DAC checks in an exec not followed: no task storage, or more exec attempts
    /// than `WALK_SLOTS` before one succeeded (those checks stay needs).
    pub const WALKS_UNTRACKED: u32 = 6;
    /// System calls whose number is outside every table (not counted).
    pub const SYSCALLS_OUT_OF_RANGE: u32 = 7;
    /// Not a loss: execs in scope not made the workload's, because a runtime moved the task
    /// into its cgroup while it was inside that exec (its checks stay set-up).
    pub const PLACED_IN_EXEC: u32 = 8;
    /// Number of counters.
    pub const COUNT: u32 = 9;
}

/// One distinct capability check: the key of the in-kernel aggregation map.
///
/// `site` is the return address into the function that asked for the capability: the API
/// function that called `security_capable` (`ns_capable`, `ns_capable_noaudit`,
/// `capable_wrt_inode_uidgid`, ...) or, for commoncap's own direct calls, `cap_vm_enough_memory`
/// and friends. Userspace symbolizes it; it is what separates a probe from a need.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CheckKey {
    /// cgroup v2 id of the checking task.
    pub cgroup_id: u64,
    /// Return address identifying the call site (0 when unknown).
    pub site: u64,
    /// Capability number (`CAP_CHOWN` = 0, ...).
    pub cap: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The checking task's `comm`.
    pub comm: [u8; COMM_LEN],
}

/// The last check counted on a CPU, and how many repeats of it since, not yet in `CHECKS`:
/// a repeat (the same task asking the same thing from the same place, e.g. the overcommit
/// probe of every mmap) is one compare and an add here instead of a hash lookup. The kernel
/// moves `pending` into `CHECKS` when another key comes or it reaches [`PENDING_MAX`];
/// userspace adds it when it reads `CHECKS` (for keys still there).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastCheck {
    pub key: CheckKey,
    pub pending: u64,
}

/// Repeats held in a [`LastCheck`] before they are moved into `CHECKS`.
pub const PENDING_MAX: u64 = 1 << 16;

/// Bytes kept of a cgroup's directory name in events (container ids are 64 hex digits plus a
/// prefix and `.scope`).
pub const CGROUP_NAME_LEN: usize = 96;

/// Sent once per new `CheckKey` through the ring buffer: who made the check first, and how.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CheckEvent {
    pub key: CheckKey,
    /// Thread id (kernel `pid`).
    pub tid: u32,
    /// Process id (kernel `tgid`).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub ktime_ns: u64,
    /// Bytes of `stack` filled by `bpf_get_stack`, or a negative error.
    pub stack_bytes: i32,
    /// The raw verdict (`ret` of `cap_capable`).
    pub ret: i32,
    /// Kernel return addresses, innermost first.
    pub stack: [u64; STACK_DEPTH],
    /// The checking task's cgroup directory name and its parent's, read in the kernel: a
    /// cgroup that lives for milliseconds is gone before userspace can look its id up.
    pub cgroup_name: [u8; CGROUP_NAME_LEN],
    pub cgroup_parent: [u8; CGROUP_NAME_LEN],
}

/// An address range `[start, end)` of kernel text the call-site classifier knows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteRange {
    pub start: u64,
    pub end: u64,
}

/// Run-time configuration of the kernel programs (one entry of an array map), written by
/// userspace after load and before the workload starts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// Count every cgroup (daemon) instead of the watched subtrees only.
    pub watch_all: u32,
    /// When non-zero, only this thread's checks are sampled into the calibration map.
    pub calibrate_tid: u32,
    /// Words from the return address into `cap_capable` (the first such word above the
    /// window's start) to the one into `cap_capable`'s caller: the size of `cap_capable`'s
    /// frame (`SITE_SCAN`).
    pub caller_words: u32,
    /// Words from there to the return address into the caller of `security_capable`.
    pub api_words: u32,
    /// `SITE_*`: how call sites are read.
    pub site_mode: u32,
    /// Offset of `pid` in `struct task_struct` (for the forked child).
    pub task_pid_offset: u32,
    /// `OPTS_*`: what `cap_capable`'s fourth argument means on this kernel.
    pub opts_mode: u32,
    /// Offsets for naming the current cgroup (task_struct.cgroups, css_set.dfl_cgrp,
    /// cgroup.kn, kernfs_node.name, kernfs_node.parent); 0 in the first: not named.
    pub cgroup_name_offsets: [u32; 5],
    /// Words from the window's start to the return address into `cap_capable` as calibrated
    /// (`SITE_SCAN`), `NO_ANCHOR` when unknown: the per-check read starts there and covers
    /// `SITE_NARROW_WORDS`; when another program on the hook shifts the frames, the scan runs.
    pub anchor_words: u32,
    /// `SECCOMP_*`: whether the system-call hooks count, and refusals.
    pub seccomp: u32,
    /// Bumped by userspace whenever the watched cgroups or this configuration change: with the
    /// programs' own generation (`KERNEL_STATE`), what the check program's cached scope
    /// answers were made under.
    pub scope_generation: u32,
    /// Marks userspace added to `WORKLOAD_TASKS` (running tasks it adopts); the programs count
    /// theirs, and every move onto a task, in `KERNEL_STATE`. The sum is how many wait.
    pub pending_marks: u32,
    /// `cap_capable`'s text: anchors the call-site search whatever frames sit below it.
    pub cap_capable: SiteRange,
    /// `security_capable`: checks arriving from it are attributed to its caller.
    pub security_capable: SiteRange,
}

/// Per-CPU scratch space for the call-site window (too big for the 512-byte BPF stack budget
/// next to the key).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SiteWindow {
    pub words: [u64; SITE_WINDOW_WORDS],
}

/// Calibration sample: a window of kernel stack words above the tracepoint's frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CalibrationSample {
    pub words: [u64; CALIBRATION_WORDS],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, made only of integers, with no implicit padding.
    unsafe impl aya::Pod for super::CheckKey {}
    unsafe impl aya::Pod for super::LastCheck {}
    unsafe impl aya::Pod for super::CheckEvent {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SiteRange {}
    unsafe impl aya::Pod for super::CalibrationSample {}
    unsafe impl aya::Pod for super::SiteWindow {}
    unsafe impl aya::Pod for super::NetUseKey {}
    unsafe impl aya::Pod for super::TaskOrigin {}
    unsafe impl aya::Pod for super::CredOffsets {}
    unsafe impl aya::Pod for super::PendingWalk {}
    unsafe impl aya::Pod for super::WalkEntry {}
    unsafe impl aya::Pod for super::SyscallKey {}
    unsafe impl aya::Pod for super::SyscallCounts {}
}

// Layout guards: a change that adds padding fails to compile on both sides.
const _: () = assert!(core::mem::size_of::<CheckKey>() == 40);
const _: () = assert!(core::mem::size_of::<CheckEvent>() == 40 + 32 + 8 * STACK_DEPTH + 2 * CGROUP_NAME_LEN);
const _: () = assert!(core::mem::size_of::<Config>() == 64 + 32);
const _: () = assert!(core::mem::size_of::<WalkEntry>() == 40 + 16);
const _: () = assert!(core::mem::size_of::<PendingWalk>() == WALK_SLOTS * (40 + 16));
const _: () = assert!(SITE_NARROW_WORDS <= SITE_WINDOW_WORDS);
const _: () = assert!(core::mem::size_of::<TaskOrigin>() == 24);
const _: () = assert!(core::mem::size_of::<SyscallKey>() == 32);
const _: () = assert!(SYSCALL_SLOTS.is_power_of_two());

/// Zeroes the bytes after the first NUL of a little-endian word; true if it has one. The
/// check program reads `comm` as two words and clears what follows its end, so stale bytes
/// after a shorter rename (kernels that did not pad) never split one program into two keys.
#[inline(always)]
pub fn clear_after_nul(w: u64) -> (u64, bool) {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The lowest flagged byte is exactly the first zero byte (borrows only run upwards).
    let zeros = w.wrapping_sub(LOW) & !w & HIGH;
    if zeros == 0 {
        return (w, false);
    }
    let first = zeros & zeros.wrapping_neg();
    (w & ((first >> 7) - 1), true)
}

#[cfg(test)]
mod tests {
    use super::clear_after_nul;

    fn word(bytes: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(b)
    }

    fn name(s: &str) -> [u8; super::WALK_NAME_LEN] {
        let mut b = [0u8; super::WALK_NAME_LEN];
        b[..s.len()].copy_from_slice(s.as_bytes());
        b
    }

    #[test]
    fn exec_names_hash_whole_and_last_component() {
        use super::path_hashes;
        let (a, a_name) = path_hashes(&name("/root/.cargo/bin/true")).unwrap();
        let (b, b_name) = path_hashes(&name("/usr/bin/true")).unwrap();
        let (_, rel_name) = path_hashes(&name("true")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a_name, b_name);
        assert_eq!(a_name, rel_name);
        assert_ne!(path_hashes(&name("/bin/sh")).unwrap().1, a_name);
        assert_eq!(path_hashes(&name("")), None);
        assert_eq!(path_hashes(&[b'x'; super::WALK_NAME_LEN]), None, "unterminated: not compared");
    }

    #[test]
    fn bytes_after_the_first_nul_are_cleared() {
        assert_eq!(clear_after_nul(word(b"sh\0xyzab")), (word(b"sh"), true));
        assert_eq!(clear_after_nul(word(b"\0abcdefg")), (0, true));
        assert_eq!(clear_after_nul(word(b"scenario")), (word(b"scenario"), false));
        assert_eq!(clear_after_nul(word(b"abcdefg\0")), (word(b"abcdefg"), true));
        // 0x01 bytes above a NUL are the classic false positive of the zero-byte test.
        assert_eq!(clear_after_nul(word(b"a\0\x01\x01\x01\x01\x01\x01")), (word(b"a"), true));
        assert_eq!(clear_after_nul(word(b"\x80\x81\xff\x01\x7f\x10\x20\x30")), (word(b"\x80\x81\xff\x01\x7f\x10\x20\x30"), false));
    }
}
