//! `capprof record --container NAME|ID`: record an already running container for a while
//! (`--duration`, or until Ctrl-C), without restarting it.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::attribution::container::{ContainerInfo, Discovery};
use crate::cgroup;
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::Tracer;
use crate::profile::{Profile, WorkloadKind, WorkloadMeta};
use crate::record::RecordOptions;

/// Records the running container `name` until `duration` passes or capprof is interrupted.
pub fn record_container(name: &str, duration: Option<Duration>, options: &RecordOptions) -> Result<Profile> {
    let (pid, engine) = container_pid(name)?;
    let path = cgroup::path_of_pid(pid).ok_or_else(|| Error::new(ErrorKind::Usage, format!("container {name}: its process {pid} is gone")))?;
    let dir = cgroup::unified_mount()?.join(path.trim_start_matches('/'));
    let id = cgroup::id_of(&dir)?;
    let mut tracer = Tracer::start(options.sizes, options.backend)?;
    if options.bpf_stats {
        tracer.enable_stats()?;
    }
    let mut discovery = Discovery::default();
    discovery.observe(&path);
    let Some((r, _)) = discovery.container_of(&path).cloned() else {
        return Err(Error::new(ErrorKind::Usage, format!("{name} ({engine}) runs in {path}, which capprof does not recognise as a container cgroup")));
    };
    tracer.adopt(id, &path, &cgroup::threads_below(&dir))?;
    let signals = crate::workload::install_forwarding()?;
    let deadline = duration.map(|d| Instant::now() + d);
    eprintln!(
        "capprof: recording container {name} ({}){}",
        &r.id[..12],
        duration.map(|d| format!(" for {:.1} s", d.as_secs_f64())).unwrap_or_else(|| ", Ctrl-C to stop".into())
    );
    let mut fds = [
        libc::pollfd { fd: tracer.events_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: signals.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    loop {
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("poll", std::io::Error::last_os_error()));
        }
        for p in tracer.poll_events() {
            discovery.observe(&p);
        }
        // Any signal ends the recording (a terminal's Ctrl-C is noted by the handler too).
        let interrupted = fds[1].revents != 0 || crate::workload::interrupted();
        if interrupted || deadline.is_some_and(|d| Instant::now() >= d) || !std::path::Path::new(&dir).exists() {
            break;
        }
    }
    discovery.refresh();
    let observations = tracer.observations()?;
    let checks = tracer.symbolize(&observations);
    let grouped = crate::attribution::workloads::group(checks, &observations, None, &discovery);
    let mut workloads = Vec::new();
    for (r, info, share) in grouped.containers {
        workloads.push((meta(&r.cgroup, info, share.net_uses, options), share.checks));
    }
    let mut profile = tracer.profile(&observations, workloads);
    profile.unattributed_checks = grouped.elsewhere;
    Ok(profile)
}

fn meta(cgroup: &str, info: ContainerInfo, net_uses: Vec<crate::attribution::workloads::NetUse>, options: &RecordOptions) -> WorkloadMeta {
    WorkloadMeta {
        name: if info.name.is_empty() { info.id[..12].to_string() } else { info.name.clone() },
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
    if let Some(v) = crate::attribution::container::docker_inspect(name) {
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
