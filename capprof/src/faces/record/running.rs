//! `capprof record --container NAME|ID` and `--cgroup PATH`: record an already running
//! container, or everything in a running cgroup (a systemd service, a pod), for a while
//! (`--duration`, or until Ctrl-C), without restarting it. The threads already running are
//! counted as workload from the start; what they exec later, too.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::attribution::container::ContainerInfo;
use crate::attribution::discovery::Discovery;
use crate::kernel::cgroup;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::{Profile, WorkloadKind, WorkloadMeta};
use crate::session::{RecordOptions, Tracer};

/// Records the running container `name` until `duration` passes or capprof is interrupted.
pub fn record_container(name: &str, duration: Option<Duration>, options: &RecordOptions) -> Result<Profile> {
    let (pid, engine) = container_pid(name)?;
    let path = cgroup::path_of_pid(pid).ok_or_else(|| Error::new(ErrorKind::Usage, format!("container {name}: its process {pid} is gone")))?;
    let dir = cgroup::unified_mount()?.join(path.trim_start_matches('/'));
    let mut discovery = Discovery::default();
    discovery.observe(&path);
    let Some((r, _)) = discovery.container_of(&path).cloned() else {
        return Err(Error::new(ErrorKind::Usage, format!("{name} ({engine}) runs in {path}, which capprof does not recognise as a container cgroup")));
    };
    let what = format!("container {name} ({})", r.id.chars().take(12).collect::<String>());
    let mut session = Session::attach(&dir, &path, options)?;
    session.wait(&what, duration, |p| discovery.observe(p))?;
    discovery.refresh();
    let (tracer, observations, checks) = session.finish()?;
    let grouped = crate::attribution::workloads::group(checks, &observations, None, &discovery);
    let mut workloads = Vec::new();
    let mut syscalls = Vec::new();
    for (r, info, share) in grouped.containers {
        workloads.push((meta(&r.cgroup, info, share.net_uses, options), share.checks));
        syscalls.push(share.syscalls);
    }
    let mut profile = tracer.profile(&observations, workloads);
    profile.unattributed_checks = grouped.elsewhere;
    crate::session::trial::attach_syscalls(&tracer, &mut profile, syscalls);
    Ok(profile)
}

/// Records everything running in the cgroup `path` (relative to the cgroup v2 mount, or a
/// path under it) and its descendants.
pub fn record_cgroup(path: &str, duration: Option<Duration>, options: &RecordOptions) -> Result<Profile> {
    let mount = cgroup::unified_mount()?;
    let rel = relative_cgroup(path, &mount)?;
    let dir = mount.join(rel.trim_start_matches('/'));
    if !dir.join("cgroup.procs").exists() {
        return Err(Error::new(ErrorKind::Usage, format!("--cgroup {path}: no cgroup v2 directory at {}", dir.display())));
    }
    let mut session = Session::attach(&dir, &rel, options)?;
    let id = session.id;
    session.wait(&format!("cgroup {rel}"), duration, |_| {})?;
    let (tracer, observations, checks) = session.finish()?;
    let grouped = crate::attribution::workloads::group(checks, &observations, Some((id, &rel)), &Discovery::default());
    let meta = WorkloadMeta {
        service: None,
        name: rel.clone(),
        kind: WorkloadKind::Command,
        command: vec![],
        cgroup: rel,
        exit_status: None,
        container: None,
        net_uses: grouped.command.net_uses,
        portable: options.portable,
    };
    let mut profile = tracer.profile(&observations, vec![(meta, grouped.command.checks)]);
    profile.unattributed_checks = grouped.elsewhere;
    crate::session::trial::attach_syscalls(&tracer, &mut profile, vec![grouped.command.syscalls]);
    Ok(profile)
}

/// `/system.slice/x.service`, `system.slice/x.service` or `/sys/fs/cgroup/system.slice/x.service`
/// → `/system.slice/x.service`. The root is refused: that is `capprof daemon`'s job.
fn relative_cgroup(path: &str, mount: &std::path::Path) -> Result<String> {
    let p = std::path::Path::new(path);
    let rel = p.strip_prefix(mount).unwrap_or(p);
    let parts: Vec<&str> = rel.to_str().unwrap_or(path).split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.contains(&"..") {
        return Err(Error::new(ErrorKind::Usage, format!("--cgroup {path}: '..' is not allowed")));
    }
    if parts.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "--cgroup: the root cgroup is the whole host; use `capprof daemon` for that"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The kernel side attached to a running cgroup: its id watched, its threads marked.
struct Session {
    tracer: Tracer,
    dir: std::path::PathBuf,
    id: u64,
}

impl Session {
    fn attach(dir: &std::path::Path, path: &str, options: &RecordOptions) -> Result<Self> {
        let id = cgroup::id_of(dir)?;
        let mut tracer = Tracer::open(&options.kernel)?;
        // The same hooks as a recording of a command: portability notes need them.
        tracer.watch_network_uses()?;
        tracer.adopt(id, path, &cgroup::threads_below(dir))?;
        Ok(Self { tracer, dir: dir.to_path_buf(), id })
    }

    /// Drains events until the deadline, a signal, or the cgroup's removal; `observe` sees
    /// each newly seen cgroup path.
    fn wait(&mut self, what: &str, duration: Option<Duration>, mut observe: impl FnMut(&str)) -> Result<()> {
        let signals = crate::session::workload::install_forwarding()?;
        let deadline = duration.map(|d| Instant::now() + d);
        eprintln!(
            "capprof: recording {what}{}",
            duration.map(|d| format!(" for {:.1} s", d.as_secs_f64())).unwrap_or_else(|| ", Ctrl-C to stop".into())
        );
        let mut fds = [
            libc::pollfd { fd: self.tracer.events_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        loop {
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
            if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("poll", std::io::Error::last_os_error()));
            }
            for p in self.tracer.poll_events() {
                observe(&p);
            }
            // Any signal ends the recording (a terminal's Ctrl-C is noted by the handler too).
            let interrupted = fds[1].revents != 0 || crate::session::workload::interrupted();
            if interrupted || deadline.is_some_and(|d| Instant::now() >= d) || !self.dir.exists() {
                return Ok(());
            }
        }
    }

    fn finish(mut self) -> Result<(Tracer, crate::collector::Observations, Vec<crate::attribution::Check>)> {
        let observations = self.tracer.observations()?;
        let checks = self.tracer.symbolize(&observations);
        Ok((self.tracer, observations, checks))
    }
}

fn meta(cgroup: &str, info: ContainerInfo, net_uses: Vec<crate::attribution::workloads::NetUse>, options: &RecordOptions) -> WorkloadMeta {
    WorkloadMeta {
        service: None,
        name: if info.name.is_empty() { info.id.chars().take(12).collect() } else { info.name.clone() },
        kind: WorkloadKind::Container,
        command: vec![],
        cgroup: cgroup.to_string(),
        exit_status: None,
        container: Some(info),
        net_uses,
        portable: options.portable,
    }
}

/// The main process of a running container, asking Docker, then podman.
fn container_pid(name: &str) -> Result<(u32, &'static str)> {
    if let Some(v) = crate::attribution::discovery::docker_inspect(name) {
        if let Some(pid) = v["State"]["Pid"].as_u64().filter(|p| *p > 0) {
            return Ok((pid as u32, "docker"));
        }
    }
    let out = std::process::Command::new("podman").args(["container", "inspect", "--format", "{{.State.Pid}}", name]).output();
    if let Ok(out) = out {
        if let Some(pid) = String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().ok().filter(|p| *p > 0) {
            return Ok((pid, "podman"));
        }
    }
    Err(Error::new(ErrorKind::Usage, format!("no running container named {name:?} (asked Docker and podman)")))
}
