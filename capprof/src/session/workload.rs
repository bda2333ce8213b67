//! Starting and supervising the recorded command: placed in its cgroup between fork and exec
//! (after the kernel programs are attached, so nothing it does is missed), optionally with a
//! restricted capability set (as a container runtime would), with SIGINT/SIGTERM/SIGHUP
//! forwarded, and a workload that ignores them killed after a grace period.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::capability::CapSet;
use crate::kernel::cgroup::RecordCgroup;
use crate::error::{Error, ErrorKind, Result};

/// The running workload.
pub struct Workload {
    child: Child,
    pidfd: OwnedFd,
    /// Read end of the self-pipe the signal handler writes to.
    signals: OwnedFd,
    cgroup_procs: std::path::PathBuf,
    /// Interrupts already seen when it started (a second recording in one process).
    interrupts_at_start: u32,
}

/// How the workload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// Shell-style: the exit code, or 128+N when killed by signal N.
    pub status: i32,
    pub signal: Option<i32>,
}

/// Write end of the self-pipe (-1 before the first spawn).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
const SI_KERNEL: i32 = 0x80;

/// Stop signals (SIGINT, SIGTERM, SIGHUP) capprof received, forwarded or not: `attach` stops
/// on a terminal's Ctrl-C too, and a second one kills a workload that ignores the first.
static INTERRUPTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Whether capprof received SIGINT, SIGTERM or SIGHUP.
pub fn interrupted() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}

/// How long a workload may take to end after capprof was asked to stop (the signal forwarded)
/// before its whole cgroup is killed; a second signal kills at once.
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    // A terminal's Ctrl-C (SI_KERNEL) already reached the workload, which shares our process
    // group: forwarding it again would deliver it twice.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if !from_terminal && fd >= 0 {
        let byte = sig as u8;
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP go to the workload instead of ending capprof: the
/// handler only notes them (one byte each, the signal number, on the returned pipe); the wait
/// loop sends them to every process of the workload. A terminal's Ctrl-C is not written (the
/// workload got it already) but still sets [`interrupted`].
pub fn install_forwarding() -> Result<OwnedFd> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(Error::io("creating the signal pipe", std::io::Error::last_os_error()));
    }
    let old = SIGNAL_PIPE.swap(fds[1], Ordering::SeqCst);
    if old >= 0 {
        unsafe { libc::close(old) };
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward as *const () as usize;
            act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fds[0]) })
}

impl Workload {
    /// Spawns `argv` inside `cgroup`; with `restrict`, under exactly that capability set.
    /// With `seccomp`, that filter is installed first (as runc does without
    /// no-new-privileges: the capability calls and the exec pass through it).
    pub fn spawn(argv: &[String], cgroup: &RecordCgroup, restrict: Option<CapSet>, seccomp: Option<std::sync::Arc<crate::seccomp::filter::Program>>) -> Result<Self> {
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
                if let Some(filter) = &seccomp {
                    filter.install()?;
                }
                if let Some(set) = restrict {
                    restrict_capabilities(set, last_cap)?;
                }
                Ok(())
            });
        }
        let signals = install_forwarding()?;
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::new(ErrorKind::Spawn, format!("command not found: {program}")),
            _ => Error::new(ErrorKind::NotExecutable, format!("cannot run {program}: {e}")),
        })?;
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
        if fd < 0 {
            return Err(Error::new(ErrorKind::UnsupportedKernel, format!("pidfd_open: {}", std::io::Error::last_os_error())));
        }
        Ok(Self {
            child,
            pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
            signals,
            cgroup_procs: cgroup.procs_path(),
            interrupts_at_start: INTERRUPTS.load(Ordering::SeqCst),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Supervises the workload until it exits: calls `on_events` whenever `events_fd` is
    /// readable, forwards the signals capprof receives, and asks `should_stop` every 50 ms;
    /// once it says yes the workload gets SIGTERM, and SIGKILL 3 s later.
    pub fn supervise(&mut self, events_fd: RawFd, mut on_events: impl FnMut(), mut should_stop: impl FnMut() -> bool) -> Result<Exit> {
        let mut fds = [
            libc::pollfd { fd: self.pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: events_fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let mut kill_at: Option<std::time::Instant> = None;
        // Asked to stop by a signal: the workload has INTERRUPT_GRACE, or until a second one.
        let mut interrupt_deadline: Option<std::time::Instant> = None;
        let mut escalated = false;
        loop {
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, 50) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("poll", err));
            }
            if fds[1].revents != 0 {
                on_events();
            }
            if fds[2].revents != 0 {
                self.forward_pending();
            }
            if fds[0].revents != 0 {
                break;
            }
            let interrupts = INTERRUPTS.load(Ordering::SeqCst).saturating_sub(self.interrupts_at_start);
            if interrupts > 0 && !escalated {
                let deadline = *interrupt_deadline.get_or_insert_with(|| std::time::Instant::now() + INTERRUPT_GRACE);
                if interrupts > 1 || std::time::Instant::now() >= deadline {
                    let why = if interrupts > 1 { "a second signal".to_string() } else { format!("{} s", INTERRUPT_GRACE.as_secs()) };
                    eprintln!("capprof: the workload did not stop after the forwarded signal: killed (SIGKILL to its cgroup) after {why}; the profile covers what ran until then");
                    self.kill_cgroup();
                    escalated = true;
                }
            }
            match kill_at {
                None if should_stop() => {
                    self.signal_all(libc::SIGTERM);
                    kill_at = Some(std::time::Instant::now() + std::time::Duration::from_secs(3));
                }
                Some(at) if std::time::Instant::now() >= at => {
                    self.signal_all(libc::SIGKILL);
                    kill_at = Some(at + std::time::Duration::from_secs(3600));
                }
                _ => {}
            }
        }
        let status = self.child.wait().map_err(|e| Error::io("waiting for the workload", e))?;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => Exit { status: code, signal: None },
            (None, Some(sig)) => Exit { status: 128 + sig, signal: Some(sig) },
            _ => Exit { status: 1, signal: None },
        })
    }
}

impl Workload {
    /// Sends the signals capprof received to every process of the workload (its cgroup), as
    /// a terminal sends Ctrl-C to a whole foreground process group.
    fn forward_pending(&self) {
        let mut buf = [0u8; 16];
        let n = unsafe { libc::read(self.signals.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        for sig in buf.iter().take(n.max(0) as usize) {
            self.signal_all(*sig as i32);
        }
    }

    /// Kills everything in the workload's cgroup and below (`cgroup.kill`, else each process).
    fn kill_cgroup(&self) {
        if let Some(dir) = self.cgroup_procs.parent() {
            crate::kernel::cgroup::kill(dir);
        }
    }

    /// Signals every process in the workload's cgroup (the direct child if none is listed).
    fn signal_all(&self, sig: i32) {
        let pids: Vec<i32> = std::fs::read_to_string(&self.cgroup_procs)
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        let targets = if pids.is_empty() { vec![self.child.id() as i32] } else { pids };
        for pid in targets {
            unsafe { libc::kill(pid, sig) };
        }
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
