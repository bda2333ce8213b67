//! cgroup v2: where the recorded workload lives. Finds the unified hierarchy (pure v2 at
//! /sys/fs/cgroup, or hybrid hosts' /sys/fs/cgroup/unified), creates a fresh cgroup per
//! recording, maps ids to paths, and empties and removes the cgroup on every exit path.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};

/// Mount point of the cgroup v2 hierarchy. Found once per process: the daemon asks at every
/// pass (a cgroup's path by its id), and reading mountinfo each time was a measurable part of
/// an idle daemon's CPU (BENCHMARKS.md). A hierarchy mounted later is found then.
pub fn unified_mount() -> Result<PathBuf> {
    static FOUND: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(mount) = FOUND.get() {
        return Ok(mount.clone());
    }
    let mount = find_unified_mount()?;
    Ok(FOUND.get_or_init(|| mount).clone())
}

fn find_unified_mount() -> Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            if right.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
        .ok_or_else(|| {
            Error::new(ErrorKind::UnsupportedKernel, "no cgroup v2 hierarchy is mounted (capprof scopes recordings by cgroup v2): mount -t cgroup2 none /sys/fs/cgroup/unified")
        })
}

/// The cgroup v2 id of a directory: its inode number on cgroupfs.
pub fn id_of(dir: &Path) -> Result<u64> {
    std::fs::metadata(dir).map(|m| m.ino()).map_err(|e| Error::io(format!("stat {}", dir.display()), e))
}

/// The cgroup v2 path (relative to the mount) of a cgroup id, while the cgroup exists: the id
/// is its kernfs file handle, so `open_by_handle_at` finds it even after every process in it
/// has gone. None once the cgroup is removed.
pub fn path_of_id(id: u64) -> Option<String> {
    #[repr(C)]
    struct Handle {
        bytes: u32,
        kind: i32,
        id: u64,
    }
    const FILEID_KERNFS: i32 = 0xfe;
    let mount = unified_mount().ok()?;
    let dir = std::fs::File::open(&mount).ok()?;
    let mut handle = Handle { bytes: 8, kind: FILEID_KERNFS, id };
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            &mut handle as *mut Handle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"));
    unsafe { libc::close(fd as i32) };
    let link = link.ok()?;
    let rel = link.strip_prefix(&mount).ok()?;
    // Opened while being removed: the link says so, the name is still right.
    let rel = rel.display().to_string();
    Some(format!("/{}", rel.strip_suffix(" (deleted)").unwrap_or(&rel)))
}

/// Does the cgroup with this id still exist?
pub fn exists(id: u64) -> bool {
    path_of_id(id).is_some()
}

/// The cgroup v2 path (relative to the mount, starting with '/') of a process.
pub fn path_of_pid(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// A cgroup created for one recording. Dropping it kills what is left inside and removes it.
pub struct RecordCgroup {
    dir: PathBuf,
    procs: CString,
    pub id: u64,
    pub relative: String,
}

impl RecordCgroup {
    pub fn create() -> Result<Self> {
        let mount = unified_mount()?;
        let base = mount.join("capprof");
        std::fs::create_dir_all(&base).map_err(|e| Error::io(format!("creating cgroup {}", base.display()), e))?;
        remove_stale(&base);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("record-{}-{nanos}", std::process::id());
        let dir = base.join(&name);
        std::fs::create_dir(&dir).map_err(|e| Error::io(format!("creating cgroup {}", dir.display()), e))?;
        let procs = CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes())
            .map_err(|_| Error::new(ErrorKind::Internal, "cgroup path has a NUL byte"))?;
        let id = id_of(&dir)?;
        Ok(Self { dir, procs, id, relative: format!("/capprof/{name}") })
    }

    /// Moves the calling process into this cgroup. Async-signal-safe (raw syscalls only), for
    /// use between fork and exec.
    pub fn join_from_child(&self) -> std::io::Result<()> {
        unsafe {
            let fd = libc::open(self.procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0\n".as_ptr().cast(), 2);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n < 0 {
                return Err(err);
            }
        }
        Ok(())
    }

    /// The `cgroup.procs` file (lists the processes inside).
    pub fn procs_path(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Processes still inside (left behind by the workload).
    pub fn remaining(&self) -> Vec<u32> {
        read_pids(&self.dir.join("cgroup.procs"))
    }

    /// Kills everything left inside and waits (up to 2 s) until it is gone.
    pub fn kill_all(&self) {
        kill(&self.dir);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.remaining().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RecordCgroup {
    fn drop(&mut self) {
        self.kill_all();
        // Children first (the workload may have made sub-cgroups).
        remove_tree(&self.dir);
    }
}

/// Kills every process in the cgroup `dir` and below: `cgroup.kill` where the kernel has it
/// (5.14+), else SIGKILL to each process listed.
pub fn kill(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for pid in read_pids(&dir.join("cgroup.procs")) {
            // SAFETY: kill(2) with a pid read from cgroup.procs; no memory is passed.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

/// Removes the recording cgroups of capprof processes that are gone (killed with SIGKILL, so
/// nothing of theirs ran on exit), killing what they left running inside; says so on stderr.
/// A cgroup is stale when the pid in its name (`record-PID-NANOS`) is not a live capprof.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("record-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || crate::kernel::is_capprof(pid) {
            continue;
        }
        let dir = e.path();
        let left = threads_below(&dir).len();
        kill(&dir);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !threads_below(&dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        remove_tree(&dir);
        let gone = !dir.exists();
        eprintln!(
            "capprof: {} the stale cgroup /capprof/{name} of capprof process {pid}, which is gone ({left} thread(s) left inside{})",
            if gone { "removed" } else { "could not remove" },
            if left > 0 { ", killed" } else { "" }
        );
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn read_pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file).map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect()).unwrap_or_default()
}


/// Every thread in a cgroup and its descendants.
pub fn threads_below(dir: &Path) -> Vec<u32> {
    let mut out = read_pids(&dir.join("cgroup.threads"));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)) {
            out.extend(threads_below(&e.path()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_resolve_to_paths() {
        // Needs root (open_by_handle_at); the integration tests run as root too.
        if unsafe { libc::geteuid() } != 0 {
            panic!("run the tests as root (cargo xtask test)");
        }
        let own = path_of_pid(std::process::id()).unwrap();
        let dir = unified_mount().unwrap().join(own.trim_start_matches('/'));
        let id = id_of(&dir).unwrap();
        assert_eq!(path_of_id(id).as_deref(), Some(own.trim_end_matches('/')).map(|p| if p.is_empty() { "/" } else { p }));
        assert!(!exists(u64::MAX - 1));
    }
}
