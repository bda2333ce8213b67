//! The effect test: does the system call's own request show that a granted check could change
//! nothing, or that only a re-run can tell? The kernel asks some capabilities before it knows
//! whether the answer matters (../shared/KERNEL-CHECK-SITES.md): capset asks SETPCAP on every
//! call, setuid to the ids a task already has asks SETUID, every chmod by a non-member of the
//! file's group asks FSETID, a task opening its own /proc/self/fd asks for DAC capabilities
//! before proc_fd_permission lets it in anyway (`FLAG_NO_EFFECT`). kill(pid, 0) asks KILL and
//! is flagged the same way, but refused the caller sees EPERM, so userspace keeps it
//! conditional. A timestamp touch asks FOWNER before falling back to write permission, fchown
//! of an open file is often tolerated when refused, SO_RCVBUFFORCE falls back to the capped
//! size, a write or chown of a set-id file loses its bits without FSETID (`FLAG_DOUBTFUL`).
//! The arguments are in the task's saved user registers, and the ids and sets in the checked
//! credentials, so the answer is known at check time, per check, and aggregated like every
//! other key bit.
//!
//! Only the native x86_64 system call ABI is read; anything else (ia32, x32, other
//! architectures, a check outside a system call the table knows) gets no flag, so those
//! checks keep the plain classification (needed when granted).

use aya_ebpf::{
    bindings::task_struct,
    helpers::{bpf_probe_read_user, generated::bpf_task_pt_regs},
};
use capprof_common::{CredOffsets, FLAG_DOUBTFUL, FLAG_NO_EFFECT};

/// `struct cred` offsets from the kernel's BTF, set at load time (all 0: test off).
#[no_mangle]
static CRED_OFFSETS: CredOffsets = CredOffsets { uid: 0, suid: 0, cap_inheritable: 0, cap_permitted: 0 };

use capprof_common::cap::{
    CHOWN as CAP_CHOWN, DAC_OVERRIDE as CAP_DAC_OVERRIDE, DAC_READ_SEARCH as CAP_DAC_READ_SEARCH, FOWNER as CAP_FOWNER, FSETID as CAP_FSETID,
    KILL as CAP_KILL, NET_ADMIN as CAP_NET_ADMIN, SETGID as CAP_SETGID, SETPCAP as CAP_SETPCAP, SETUID as CAP_SETUID,
};

/// x86_64 system call numbers the test knows.
mod nr {
    pub const CHMOD: u64 = 90;
    pub const FCHMOD: u64 = 91;
    pub const SETUID: u64 = 105;
    pub const SETGID: u64 = 106;
    pub const CAPSET: u64 = 126;
    pub const KILL: u64 = 62;
    pub const RT_SIGQUEUEINFO: u64 = 129;
    pub const TKILL: u64 = 200;
    pub const TGKILL: u64 = 234;
    pub const FCHMODAT: u64 = 268;
    pub const RT_TGSIGQUEUEINFO: u64 = 297;
    pub const PIDFD_SEND_SIGNAL: u64 = 424;
    pub const OPEN: u64 = 2;
    pub const OPENAT: u64 = 257;
    pub const OPENAT2: u64 = 437;
    pub const FCHOWN: u64 = 93;
    pub const SETSOCKOPT: u64 = 54;
    pub const UTIME: u64 = 132;
    pub const UTIMES: u64 = 235;
    pub const FUTIMESAT: u64 = 261;
    pub const UTIMENSAT: u64 = 280;
    pub const FCHMODAT2: u64 = 452;
}

/// `__USER_CS`: the 64-bit user code segment (ia32 tasks enter with `__USER32_CS`).
const USER_CS: u64 = 0x33;
/// x32 system calls carry this bit in their number.
const X32_SYSCALL_BIT: u64 = 0x4000_0000;
const S_ISGID: u64 = 0o2000;
const LINUX_CAPABILITY_VERSION_1: u32 = 0x1998_0330;

/// `FLAG_NO_EFFECT` when the arguments show the check changes nothing, `FLAG_DOUBTFUL` when
/// only a re-run can tell, else 0 (also when they were not read).
#[inline(always)]
pub fn flags(cap: u32, cred: u64, task: *mut task_struct) -> u32 {
    // The common case (every other capability) pays one test.
    const TESTED: u64 = 1 << CAP_CHOWN
        | 1 << CAP_DAC_OVERRIDE
        | 1 << CAP_DAC_READ_SEARCH
        | 1 << CAP_FOWNER
        | 1 << CAP_FSETID
        | 1 << CAP_KILL
        | 1 << CAP_SETGID
        | 1 << CAP_SETUID
        | 1 << CAP_SETPCAP
        | 1 << CAP_NET_ADMIN;
    if cap > CAP_NET_ADMIN || TESTED & (1 << cap) == 0 {
        return 0;
    }
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let offsets = unsafe { core::ptr::read_volatile(&CRED_OFFSETS) };
    if offsets.uid == 0 {
        return 0;
    }
    let Some(regs) = user_regs(task) else { return 0 };
    // Each register read only where its test needs it: a load each (BENCHMARKS.md).
    let reg = |at: u64| crate::memory::kernel_word(regs + at);
    let (Some(cs), Some(nr)) = (reg(regs_at::CS), reg(regs_at::ORIG_AX)) else { return 0 };
    if cs != USER_CS || nr & X32_SYSCALL_BIT != 0 {
        return 0;
    }
    // An unreadable register (the probe-read fallback only) ends the test with no flag: an
    // early return each, not a default value (LLVM may then read the failed copy's register
    // on the speculated path, which the verifier refuses).
    macro_rules! arg {
        ($at:expr) => {
            match reg($at) {
                Some(v) => v,
                None => return 0,
            }
        };
    }
    // setattr_prepare on a timestamp touch (NULL times, or both UTIME_NOW): without FOWNER the
    // kernel tests write permission instead, which may pass. Only a re-run can tell.
    if cap == CAP_FOWNER {
        let touch = match nr {
            nr::UTIME | nr::UTIMES => arg!(regs_at::SI) == 0,
            nr::FUTIMESAT => arg!(regs_at::DX) == 0,
            nr::UTIMENSAT => arg!(regs_at::DX) == 0 || both_now(arg!(regs_at::DX)),
            _ => return 0,
        };
        return if touch { FLAG_DOUBTFUL } else { 0 };
    }
    // proc_fd_permission: the task's own fd directory is always open to it, whatever
    // generic_permission (asked first) answers. Only the directory itself: a path through it
    // to a file reopens that file, whose permission is a real check.
    if cap == CAP_DAC_OVERRIDE || cap == CAP_DAC_READ_SEARCH {
        let path = match nr {
            nr::OPEN => arg!(regs_at::DI),
            nr::OPENAT | nr::OPENAT2 => arg!(regs_at::SI),
            _ => return 0,
        };
        return if own_fd_dir(path) { FLAG_NO_EFFECT } else { 0 };
    }
    // SO_RCVBUFFORCE/SO_SNDBUFFORCE fall back to the capped size when refused (optional, to
    // verify); every other socket option sk_setsockopt asks NET_ADMIN for (SO_MARK,
    // SO_PRIORITY above 6, ...) fails with EPERM.
    if cap == CAP_NET_ADMIN {
        const SOL_SOCKET: u64 = 1;
        const SO_SNDBUFFORCE: u64 = 32;
        const SO_RCVBUFFORCE: u64 = 33;
        if nr != nr::SETSOCKOPT {
            return 0;
        }
        let force = arg!(regs_at::SI) & 0xffff_ffff == SOL_SOCKET && matches!(arg!(regs_at::DX) & 0xffff_ffff, SO_SNDBUFFORCE | SO_RCVBUFFORCE);
        return if force { FLAG_DOUBTFUL } else { 0 };
    }
    // fchown of an open file (or fchownat with AT_EMPTY_PATH): the pid or log file a daemon
    // hands to the user it drops to; refused, dnsmasq and others log and go on.
    if cap == CAP_CHOWN {
        const AT_EMPTY_PATH: u64 = 0x1000;
        const FCHOWNAT: u64 = 260;
        let on_fd = nr == nr::FCHOWN || (nr == FCHOWNAT && arg!(regs_at::R10) & AT_EMPTY_PATH != 0);
        return if on_fd { FLAG_DOUBTFUL } else { 0 };
    }
    let no_effect = match (cap, nr) {
        // cap_inh_is_capped: SETPCAP matters only if the new inheritable set leaves
        // old inheritable | old permitted.
        (CAP_SETPCAP, nr::CAPSET) => match (new_inheritable(arg!(regs_at::DI), arg!(regs_at::SI)), cred_word(cred, offsets.cap_inheritable), cred_word(cred, offsets.cap_permitted)) {
            (Some(new), Some(inh), Some(perm)) => new & !(inh | perm) == 0,
            _ => return 0,
        },
        // __sys_setuid/__sys_setgid: without the capability the call still sets the
        // effective and fs ids; it matters only if the real or saved id differs.
        (CAP_SETUID, nr::SETUID) | (CAP_SETGID, nr::SETGID) => {
            let target = arg!(regs_at::DI);
            let (Some(real), Some(saved)) = (cred_word(cred, offsets.uid), cred_word(cred, offsets.suid)) else { return 0 };
            // Low half: uid / suid; high half: gid / sgid.
            let shift = if cap == CAP_SETUID { 0 } else { 32 };
            let target = target & 0xffff_ffff;
            (real >> shift) & 0xffff_ffff == target && (saved >> shift) & 0xffff_ffff == target
        }
        // kill_ok_by_cred: signal 0 only asks whether the process exists, and EPERM says so.
        (CAP_KILL, nr::KILL | nr::TKILL | nr::RT_SIGQUEUEINFO | nr::PIDFD_SEND_SIGNAL) => arg!(regs_at::SI) & 0xffff_ffff == 0,
        (CAP_KILL, nr::TGKILL | nr::RT_TGSIGQUEUEINFO) => arg!(regs_at::DX) & 0xffff_ffff == 0,
        // in_group_or_capable on chmod: without it only S_ISGID is cleared from the new mode.
        (CAP_FSETID, nr::CHMOD | nr::FCHMOD) => arg!(regs_at::SI) & S_ISGID == 0,
        (CAP_FSETID, nr::FCHMODAT | nr::FCHMODAT2) => arg!(regs_at::DX) & S_ISGID == 0,
        // Elsewhere FSETID decides whether a set-id file keeps its bits through a write or a
        // chown: refused, the call succeeds and the file's mode changes (conditional).
        (CAP_FSETID, _) => return FLAG_DOUBTFUL,
        _ => return 0,
    };
    if no_effect {
        FLAG_NO_EFFECT
    } else {
        0
    }
}

/// Offset of `stack` in `struct task_struct`, from the kernel's BTF, set at load time (0:
/// unknown: the helper every time).
#[no_mangle]
static TASK_STACK_OFFSET: u32 = 0;

/// `struct pt_regs` (x86_64): where each saved register this test and the system-call hook
/// read sits.
pub mod regs_at {
    pub const R10: u64 = 7 * 8;
    pub const DX: u64 = 12 * 8;
    pub const SI: u64 = 13 * 8;
    pub const DI: u64 = 14 * 8;
    pub const ORIG_AX: u64 = 15 * 8;
    pub const CS: u64 = 17 * 8;
}

/// Where the system call's saved user registers (`struct pt_regs`) are, read through
/// `regs_at` with `kernel_word`. They sit at a fixed distance above the task's stack base
/// (`task_pt_regs`: the stack's size less its top padding and the frame), the same for every
/// task. `bpf_task_pt_regs` answers once and the distance is kept
/// (`KernelState::regs_from_stack`); from then on a plain load of the stack base replaces the
/// helper call (BENCHMARKS.md), where `bpf_rdonly_cast` makes the register loads plain too
/// (Linux 6.2+). Elsewhere, the helper every time.
#[inline(always)]
fn user_regs(task: *mut task_struct) -> Option<u64> {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let stack_offset = unsafe { core::ptr::read_volatile(&TASK_STACK_OFFSET) };
    let direct = stack_offset != 0 && crate::memory::word_type() != 0;
    // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
    let stack = if direct { unsafe { *((task as *const u8).add(stack_offset as usize) as *const u64) } } else { 0 };
    let state = crate::maps::kernel_state();
    // SAFETY: a map value pointer; a plain load.
    let known = state.map_or(0, |s| unsafe { core::ptr::read_volatile(&(*s).regs_from_stack) });
    if stack != 0 && known != 0 {
        return Some(stack + known);
    }
    // SAFETY: a helper returning the task's saved user registers.
    let regs = unsafe { bpf_task_pt_regs(task) } as u64;
    if regs == 0 {
        return None;
    }
    if stack != 0 {
        let distance = regs.wrapping_sub(stack);
        // A kernel stack is a few pages: anything else is not the layout assumed here.
        if distance > 0 && distance < 1 << 16 {
            if let Some(s) = state {
                // SAFETY: a map value pointer; every CPU writes the same value.
                unsafe { (*s).regs_from_stack = distance };
            }
        }
    }
    Some(regs)
}

/// Eight bytes of the checked credentials (`kernel_cap_t` is one u64 since 6.3 and two
/// little-endian u32 before: the same bytes).
#[inline(always)]
fn cred_word(cred: u64, offset: u32) -> Option<u64> {
    if cred == 0 || offset == 0 {
        return None;
    }
    crate::memory::kernel_word(cred + offset as u64)
}

/// The inheritable set capset was asked for: `data` is one (version 1) or two
/// `{effective, permitted, inheritable}` u32 triples.
#[inline(always)]
fn new_inheritable(header: u64, data: u64) -> Option<u64> {
    let version = unsafe { bpf_probe_read_user(header as *const u32) }.ok()?;
    let low = unsafe { bpf_probe_read_user((data + 8) as *const u32) }.ok()? as u64;
    if version == LINUX_CAPABILITY_VERSION_1 {
        return Some(low);
    }
    let high = unsafe { bpf_probe_read_user((data + 20) as *const u32) }.ok()? as u64;
    Some(low | (high << 32))
}

/// `UTIME_NOW` in both `tv_nsec` of utimensat's `struct timespec[2]`.
#[inline(always)]
fn both_now(times: u64) -> bool {
    const UTIME_NOW: u64 = (1 << 30) - 1;
    let atime = unsafe { bpf_probe_read_user((times + 8) as *const u64) };
    let mtime = unsafe { bpf_probe_read_user((times + 24) as *const u64) };
    matches!((atime, mtime), (Ok(UTIME_NOW), Ok(UTIME_NOW)))
}

/// Is the user string at `path` exactly `/proc/self/fd` or `/proc/thread-self/fd` (with or
/// without a trailing slash)?
#[inline(always)]
fn own_fd_dir(path: u64) -> bool {
    let mut buf = [0u8; 24];
    let Ok(s) = (unsafe { aya_ebpf::helpers::bpf_probe_read_user_str_bytes(path as *const u8, &mut buf) }) else { return false };
    matches!(s, b"/proc/self/fd" | b"/proc/self/fd/" | b"/proc/thread-self/fd" | b"/proc/thread-self/fd/")
}
