//! One traced run of a workload: fresh cgroup, optional capability restriction, optional
//! readiness and success checks for servers, then the checks it made. `record`, `verify` and
//! `minimize` are all sequences of trials on one attached tracer.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attribution::Check;
use crate::capability::CapSet;
use crate::cgroup::RecordCgroup;
use crate::collector::Observations;
use crate::error::Result;
use crate::pipeline::Tracer;
use crate::workload::{Exit, Workload};

/// How to tell that a long-running workload (a server) works.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Polled (every 100 ms) until it succeeds, before `check` runs once.
    pub ready: Option<String>,
    /// Run once the workload is ready (polled until success when there is no `ready`).
    pub check: String,
    /// How long to wait for readiness and success.
    pub timeout: Duration,
}

/// What to run and how.
#[derive(Clone, Debug)]
pub struct TrialSpec {
    pub argv: Vec<String>,
    /// Exactly these capabilities (None: capprof's own, i.e. all).
    pub restrict: Option<CapSet>,
    pub probe: Option<Probe>,
}

/// What one trial gave.
pub struct Trial {
    pub exit: Exit,
    /// Exit status 0, or the probe passed.
    pub success: bool,
    /// Why it counts as failed, for reports.
    pub failure: Option<String>,
    pub observations: Observations,
    pub checks: Vec<Check>,
    pub cgroup: String,
    pub left_behind: usize,
}

const PROBE_RUNNING: u8 = 0;
const PROBE_PASSED: u8 = 1;
const PROBE_FAILED: u8 = 2;

impl Tracer {
    /// Runs one trial; the tracer is reset afterwards, ready for the next.
    pub fn trial(&mut self, spec: &TrialSpec) -> Result<Trial> {
        let cgroup = RecordCgroup::create()?;
        self.watch_cgroup(cgroup.id)?;
        let result = self.run_in(&cgroup, spec);
        self.unwatch_cgroup(cgroup.id)?;
        let (exit, probe) = result?;
        let left_behind = cgroup.remaining().len();
        cgroup.kill_all();
        let observations = self.observations()?;
        let checks = self.symbolize(&observations);
        self.reset()?;
        let (success, failure) = match (&spec.probe, probe) {
            (None, _) if exit.status == 0 => (true, None),
            (None, _) => (false, Some(format!("exited with status {}", exit.status))),
            (Some(_), Some(PROBE_PASSED)) => (true, None),
            (Some(p), _) => (false, Some(format!("check `{}` did not pass (workload exit status {})", p.check, exit.status))),
        };
        Ok(Trial { exit, success, failure, observations, checks, cgroup: cgroup.relative.clone(), left_behind })
    }

    fn run_in(&mut self, cgroup: &RecordCgroup, spec: &TrialSpec) -> Result<(Exit, Option<u8>)> {
        let mut workload = Workload::spawn(&spec.argv, cgroup, spec.restrict)?;
        let state = Arc::new(AtomicU8::new(PROBE_RUNNING));
        if let Some(probe) = spec.probe.clone() {
            let state = state.clone();
            std::thread::spawn(move || state.store(run_probe(&probe), Ordering::SeqCst));
        }
        let has_probe = spec.probe.is_some();
        let exit = self.supervise(&mut workload, || has_probe && state.load(Ordering::SeqCst) != PROBE_RUNNING)?;
        Ok((exit, has_probe.then(|| state.load(Ordering::SeqCst))))
    }
}

/// Readiness, then the check; runs outside the workload's cgroup so its checks don't count.
fn run_probe(p: &Probe) -> u8 {
    let deadline = Instant::now() + p.timeout;
    let poll_until = |cmd: &str| -> bool {
        loop {
            if shell(cmd) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let passed = match &p.ready {
        Some(ready) => poll_until(ready) && shell(&p.check),
        None => poll_until(&p.check),
    };
    if passed {
        PROBE_PASSED
    } else {
        PROBE_FAILED
    }
}

fn shell(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
