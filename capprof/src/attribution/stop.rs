//! Stopping the containers a trial started, through their engine, so nothing a trial left
//! running can answer the next trial's check: a container whose PID 1 ignores SIGTERM (a
//! server run as PID 1 has no default signal actions) outlives its `docker run` client.
//!
//! Per container: SIGTERM, a grace period, SIGKILL, then wait until it no longer runs; with
//! [`Cleanup::Remove`] the engine also removes it (verify and minimize re-run the same
//! `docker run --name ...`). Engines without an API here (containerd, CRI-O) are stopped by
//! signalling their cgroup.

use std::time::{Duration, Instant};

use super::container::ContainerRef;
use super::engine;

/// What to do with the containers a trial started once it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Stop those still running (record: the user may want to inspect them).
    Stop,
    /// Stop and remove them (verify, minimize: the next trial runs the same command).
    Remove,
}

/// How one container was stopped, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopped {
    pub name: String,
    /// It still ran when the trial ended (else it had stopped by itself).
    pub was_running: bool,
    /// SIGTERM was not enough: it was killed after the grace period.
    pub killed: bool,
    pub removed: bool,
    /// Why it could not be stopped, if so.
    pub error: Option<String>,
}

impl Stopped {
    pub fn describe(&self) -> String {
        let what = match (self.was_running, self.killed) {
            (false, _) => "had stopped by itself".to_string(),
            (true, false) => "stopped by SIGTERM".to_string(),
            (true, true) => format!("ignored SIGTERM: killed after {} s", GRACE.as_secs()),
        };
        let removed = if self.removed { ", removed" } else { "" };
        match &self.error {
            Some(e) => format!("container {}: could not be stopped: {}", crate::format::plain(&self.name), crate::format::plain(e)),
            None => format!("container {}: {what}{removed}", crate::format::plain(&self.name)),
        }
    }
}

/// SIGTERM to SIGKILL, as `docker stop` waits by default minus the patience a test run has.
pub const GRACE: Duration = Duration::from_secs(3);

/// Stops (and removes) each container; returns what it took.
pub fn stop_all(containers: &[(ContainerRef, String)], cleanup: Cleanup) -> Vec<Stopped> {
    containers.iter().map(|(r, name)| stop_one(r, name, cleanup)).collect()
}

fn stop_one(r: &ContainerRef, name: &str, cleanup: Cleanup) -> Stopped {
    let mut out = Stopped { name: name.to_string(), was_running: false, killed: false, removed: false, error: None };
    let ops: &dyn Engine = match r.engine {
        crate::attribution::container::Engine::Docker => &Docker,
        crate::attribution::container::Engine::Podman => &Podman,
        _ => &CgroupOnly,
    };
    out.was_running = ops.running(r);
    if out.was_running {
        ops.signal(r, "TERM");
        let deadline = Instant::now() + GRACE;
        while ops.running(r) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if ops.running(r) {
            out.killed = true;
            ops.signal(r, "KILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while ops.running(r) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if ops.running(r) {
                out.error = Some("still running 10 s after SIGKILL".into());
                return out;
            }
        }
    }
    if cleanup == Cleanup::Remove {
        out.removed = ops.remove(r);
    }
    out
}

/// The few engine operations a stop needs.
trait Engine {
    fn running(&self, r: &ContainerRef) -> bool;
    fn signal(&self, r: &ContainerRef, sig: &str);
    /// True when the container is gone afterwards (removed now, or `--rm` did it).
    fn remove(&self, r: &ContainerRef) -> bool;
}

struct Docker;

impl Engine for Docker {
    fn running(&self, r: &ContainerRef) -> bool {
        // Gone (404) or not running; an engine that does not answer: ask the cgroup.
        match engine::docker_request("GET", &format!("/containers/{}/json", r.id)) {
            Some((200, body)) => serde_json::from_str::<serde_json::Value>(&body).ok().is_some_and(|v| v["State"]["Running"] == true),
            Some(_) => false,
            None => CgroupOnly.running(r),
        }
    }

    fn signal(&self, r: &ContainerRef, sig: &str) {
        if engine::docker_request("POST", &format!("/containers/{}/kill?signal=SIG{sig}", r.id)).is_none() {
            CgroupOnly.signal(r, sig);
        }
    }

    fn remove(&self, r: &ContainerRef) -> bool {
        let _ = engine::docker_request("DELETE", &format!("/containers/{}?force=1", r.id));
        // `--rm` containers are removed by the engine shortly after they stop.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match engine::docker_request("GET", &format!("/containers/{}/json", r.id)) {
                Some((404, _)) => return true,
                None => return false,
                _ if Instant::now() >= deadline => return false,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

struct Podman;

impl Engine for Podman {
    fn running(&self, r: &ContainerRef) -> bool {
        let out = std::process::Command::new("podman").args(["container", "inspect", "--format", "{{.State.Running}}", &r.id]).output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim() == "true",
            Ok(_) => false,
            Err(_) => CgroupOnly.running(r),
        }
    }

    fn signal(&self, r: &ContainerRef, sig: &str) {
        let ok = std::process::Command::new("podman").args(["kill", "--signal", sig, &r.id]).output().is_ok_and(|o| o.status.success());
        if !ok {
            CgroupOnly.signal(r, sig);
        }
    }

    fn remove(&self, r: &ContainerRef) -> bool {
        let _ = std::process::Command::new("podman").args(["rm", "--force", &r.id]).output();
        std::process::Command::new("podman").args(["container", "exists", &r.id]).status().is_ok_and(|s| s.code() == Some(1))
    }
}

/// Engines capprof does not drive: the container's cgroup is signalled directly.
struct CgroupOnly;

impl CgroupOnly {
    fn procs(r: &ContainerRef) -> Vec<i32> {
        let Ok(mount) = crate::kernel::cgroup::unified_mount() else { return vec![] };
        let dir = mount.join(r.cgroup.trim_start_matches('/'));
        crate::kernel::cgroup::threads_below(&dir).into_iter().map(|t| t as i32).collect()
    }
}

impl Engine for CgroupOnly {
    fn running(&self, r: &ContainerRef) -> bool {
        !Self::procs(r).is_empty()
    }

    fn signal(&self, r: &ContainerRef, sig: &str) {
        let sig = if sig == "KILL" { libc::SIGKILL } else { libc::SIGTERM };
        for tid in Self::procs(r) {
            unsafe { libc::kill(tid, sig) };
        }
    }

    fn remove(&self, _r: &ContainerRef) -> bool {
        false
    }
}
