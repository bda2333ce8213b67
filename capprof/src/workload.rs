//! Starting and supervising the recorded command: placed in its cgroup between fork and exec
//! (after the kernel programs are attached, so nothing it does is missed), optionally with a
//! restricted capability set (as a container runtime would), with SIGINT/SIGTERM forwarded.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::capability::CapSet;
use crate::cgroup::RecordCgroup;
use crate::error::{Error, ErrorKind, Result};

/// The running workload.
pub struct Workload {
    child: Child,
    pidfd: OwnedFd,
}

/// How the workload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Shell-style: the exit code, or 128+N when killed by signal N.
    pub status: i32,
    pub signal: Option<i32>,
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// The last signal capprof received (0: none).
pub static RECEIVED_SIGNAL: AtomicI32 = AtomicI32::new(0);
const SI_KERNEL: i32 = 0x80;

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    RECEIVED_SIGNAL.store(sig, Ordering::SeqCst);
    let pid = CHILD_PID.load(Ordering::SeqCst);
    // A terminal's Ctrl-C (SI_KERNEL) already reached the child, which shares our process
    // group: forwarding it again would deliver it twice.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    if pid > 0 && !from_terminal {
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP go to the workload instead of ending capprof.
fn install_forwarding() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

impl Workload {
    /// Spawns `argv` inside `cgroup`; with `restrict`, under exactly that capability set.
    pub fn spawn(argv: &[String], cgroup: &RecordCgroup, restrict: Option<CapSet>) -> Result<Self> {
        let (program, args) = argv.split_first().ok_or_else(|| Error::new(ErrorKind::Usage, "no command given after --"))?;
        let last_cap = last_cap();
        let mut cmd = Command::new(program);
        cmd.args(args);
        let cg = cgroup as *const RecordCgroup as usize;
        unsafe {
            cmd.pre_exec(move || {
                // SAFETY: the parent keeps the cgroup alive while the child starts.
                let cgroup = &*(cg as *const RecordCgroup);
                cgroup.join_from_child()?;
                if let Some(set) = restrict {
                    restrict_capabilities(set, last_cap)?;
                }
                Ok(())
            });
        }
        install_forwarding();
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::new(ErrorKind::Spawn, format!("command not found: {program}")),
            _ => Error::new(ErrorKind::NotExecutable, format!("cannot run {program}: {e}")),
        })?;
        CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        if fd < 0 {
            return Err(Error::new(ErrorKind::UnsupportedKernel, format!("pidfd_open: {}", std::io::Error::last_os_error())));
        }
        Ok(Self { child, pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) } })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the workload to exit, calling `on_ready` whenever `other_fd` is readable.
    pub fn wait_polling(&mut self, other_fd: RawFd, mut on_ready: impl FnMut()) -> Result<Exit> {
        let mut fds = [
            libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: other_fd, events: libc::POLLIN, revents: 0 },
        ];
        loop {
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("poll", err));
            }
            if fds[1].revents != 0 {
                on_ready();
            }
            if fds[0].revents != 0 {
                break;
            }
        }
        let status = self.child.wait().map_err(|e| Error::io("waiting for the workload", e))?;
        CHILD_PID.store(0, Ordering::SeqCst);
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => Exit { status: code, signal: None },
            (None, Some(sig)) => Exit { status: 128 + sig, signal: Some(sig) },
            _ => Exit { status: 1, signal: None },
        })
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Restricts the calling process to `set` the way runc does: bounding set, then
/// inheritable/permitted/effective, then ambient (so the set survives exec for non-root users
/// too). Raw syscalls only: runs between fork and exec.
fn restrict_capabilities(set: CapSet, last_cap: u32) -> std::io::Result<()> {
    let check = |rc: libc::c_int| if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) };
    unsafe {
        for cap in 0..=last_cap.min(63) {
            if set.0 & (1u64 << cap) == 0 {
                check(libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0))?;
            }
        }
        let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let mut data = [CapData::default(); 2];
        check(libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) as libc::c_int)?;
        for (i, d) in data.iter_mut().enumerate() {
            let mask = (set.0 >> (32 * i)) as u32;
            d.permitted &= mask;
            d.effective &= mask;
            d.inheritable = d.permitted;
        }
        check(libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) as libc::c_int)?;
        check(libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0))?;
        for cap in 0..=last_cap.min(63) {
            if set.0 & (1u64 << cap) != 0 {
                // Fails only for capabilities not permitted: the set can't exceed what we hold.
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap as libc::c_ulong, 0, 0);
            }
        }
    }
    Ok(())
}
