//! One traced start of a systemd service: the trial of `record --unit`, `verify --unit` and
//! `minimize --unit`. The unit is stopped, given the trial's set (a transient drop-in, see
//! [`crate::attribution::systemd::Controlled`]), started by systemd while the whole host is
//! watched, and judged by its probe (or by staying up); its checks are those made in its cgroup.
//!
//! systemd's own work in the unit's cgroup (the forked manager child that applies `User=`,
//! the bounding set and namespaces before it execs the service) runs before any exec there and
//! is runtime set-up, never the service's need.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attribution::discovery::Discovery;
use crate::attribution::systemd::{self, Controlled};
use crate::capability::CapSet;
use crate::error::{Error, ErrorKind, Result};
use crate::session::trial::{run_probe, shell, Probe, Trial, PROBE_PASSED, PROBE_RUNNING};
use crate::session::workload::Exit;
use crate::session::Tracer;

/// How long a trial of a unit lasts and how it is judged.
#[derive(Clone, Debug, Default)]
pub struct ServiceTrial {
    /// The set to start it under (None: its own settings).
    pub restrict: Option<CapSet>,
    /// Judged by this probe; without one, by the unit still running at the end.
    pub probe: Option<Probe>,
    /// Without a probe: how long to record after the start (None: until it stops or Ctrl-C).
    pub duration: Option<Duration>,
    /// A trial judged for a set (verify, minimize, --prove): Ctrl-C aborts it with an error,
    /// since it proves nothing. A recording just ends there, its profile kept.
    pub judged: bool,
}

/// Starts the unit under the trial's set and records it. The unit is left running (the
/// caller's [`Controlled`] restores it); the tracer is reset for the next trial.
pub fn run(tracer: &mut Tracer, unit: &Controlled, spec: &ServiceTrial) -> Result<Trial> {
    let name = unit.unit.info.unit.clone();
    unit.stop()?;
    if let Some(p) = &spec.probe {
        if shell(&p.check) {
            return Err(Error::new(
                ErrorKind::Interference,
                format!("something else answers the check: `{}` passes while {name} is stopped", p.check),
            ));
        }
    }
    unit.apply(spec.restrict)?;
    if spec.judged && crate::session::workload::interrupted() {
        return Err(Error::new(ErrorKind::Interrupted, format!("interrupted before {name} was started")));
    }
    tracer.reset()?;
    tracer.watch_host()?;
    tracer.watch_network_uses()?;

    // systemctl blocks until the start job ends; drain events meanwhile, so the cgroups of a
    // start that fails are named while they exist.
    let started = {
        let name = name.clone();
        std::thread::spawn(move || systemd::start(&name))
    };
    while !started.is_finished() {
        tracer.poll_events();
        std::thread::sleep(Duration::from_millis(50));
    }
    let start = started.join().unwrap_or_else(|_| Err("systemctl start panicked".into()));
    let dir = systemd::cgroup_dir(&unit.unit.cgroup)?;
    let cgroup_id = crate::kernel::cgroup::id_of(&dir).unwrap_or(0);

    let mut failure = start.as_ref().err().map(|e| format!("did not start: {}", crate::format::plain(e)));
    if failure.is_none() {
        failure = match &spec.probe {
            Some(p) => judge(tracer, p),
            None => {
                let deadline = spec.duration.map(|d| Instant::now() + d);
                systemd::wait_while_active(&name, deadline, || {
                    tracer.poll_events();
                });
                // Stopping is how a recording without a deadline ends; a failure is not.
                match systemd::is_active(&name) {
                    true => None,
                    false => match systemd::result(&name).as_str() {
                        "success" | "" => None,
                        other => Some(format!("stopped with result {}", crate::format::plain(other))),
                    },
                }
            }
        };
    }
    if crate::session::workload::interrupted() && spec.judged {
        // A trial cut short proves nothing either way.
        tracer.reset()?;
        return Err(Error::new(ErrorKind::Interrupted, format!("interrupted while trying {name}")));
    }
    tracer.poll_events();
    let mut observations = tracer.observations()?;
    name_unit_cgroups(&mut observations, &unit.unit.cgroup);
    let checks = tracer.symbolize(&observations);
    tracer.reset()?;
    let success = failure.is_none();
    Ok(Trial {
        exit: Exit { status: i32::from(!success), signal: None },
        success,
        failure,
        observations,
        checks,
        cgroup: unit.unit.cgroup.clone(),
        cgroup_id,
        left_behind: 0,
        discovery: Discovery::default(),
        stopped: vec![],
        service: Some(unit.unit.info.clone()),
        ownership: crate::attribution::ownership::Ownership::default(),
        left_alone: vec![],
    })
}

/// Runs the probe while events are drained; the failure, if it did not pass.
fn judge(tracer: &mut Tracer, probe: &Probe) -> Option<String> {
    let state = Arc::new(AtomicU8::new(PROBE_RUNNING));
    let thread = {
        let (state, probe) = (state.clone(), probe.clone());
        std::thread::spawn(move || state.store(run_probe(&probe), Ordering::SeqCst))
    };
    while state.load(Ordering::SeqCst) == PROBE_RUNNING && !crate::session::workload::interrupted() {
        tracer.poll_events();
        std::thread::sleep(Duration::from_millis(50));
    }
    if crate::session::workload::interrupted() {
        return Some("interrupted".into());
    }
    let _ = thread.join();
    (state.load(Ordering::SeqCst) != PROBE_PASSED).then(|| format!("check `{}` did not pass", probe.check))
}

/// A cgroup removed before capprof could resolve its id is known only by the names the kernel
/// read (`/…/system.slice/x.service`): the unit's own, put back under its full path.
fn name_unit_cgroups(obs: &mut crate::collector::Observations, cgroup: &str) {
    let mut parts = cgroup.rsplit('/');
    let (Some(leaf), Some(parent)) = (parts.next(), parts.next()) else { return };
    let short = format!("/…/{parent}/{leaf}");
    for path in obs.cgroup_paths.values_mut() {
        if *path == short {
            *path = cgroup.to_string();
        }
    }
}
