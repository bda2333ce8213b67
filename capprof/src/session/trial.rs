//! One traced run of a workload: fresh cgroup, optional capability restriction, optional
//! readiness and success checks for servers, then the checks it made, and what every face
//! draws from a trial: its profile, its refused checks, its verdict. `record`, `verify`,
//! `minimize` and `record --prove` are all sequences of trials on one attached tracer.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::attribution::container::ContainerRef;
use crate::attribution::discovery::Discovery;
use crate::attribution::ownership::Ownership;
use crate::attribution::stop::{self, Cleanup, Stopped};
use crate::attribution::workloads::{group, Grouped};
use crate::attribution::Check;
use crate::capability::{CapSet, Capability};
use crate::classify::{classify, Classification};
use crate::kernel::cgroup::RecordCgroup;
use crate::collector::Observations;
use crate::error::{Error, ErrorKind, Result};
use crate::session::seccomp::SeccompGuard;
use crate::session::{RecordOptions, Tracer};
use crate::profile::{Profile, Verification, WorkloadKind, WorkloadMeta};
use crate::session::workload::{Exit, Workload};

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
    /// Also record the containers the command starts (the whole host is watched; checks are
    /// attributed by cgroup afterwards).
    pub containers: bool,
    /// What happens to those containers at the end.
    pub cleanup: Cleanup,
    /// A seccomp filter capprof installs before the exec (plain commands).
    pub seccomp: Option<std::sync::Arc<crate::seccomp::filter::Program>>,
    /// Judged by exit status alone (no probe), the trial fails when the kernel refused one of
    /// these: capabilities left out of the trial's set that the workload is granted and acts
    /// on when unrestricted. It went on without what it asked for, and only a test of the
    /// result (`--check`) can tell whether that matters.
    pub refusals_fail: RefusedNeeds,
}

/// Which refusals fail a trial judged by exit status (see [`TrialSpec::refusals_fail`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusedNeeds {
    pub capabilities: CapSet,
    pub by: Refusers,
}

/// Whose refusals count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Refusers {
    /// Any process of the workload: `capabilities` are what a reference run (unrestricted,
    /// the same command) was granted and acted on.
    #[default]
    Any,
    /// Processes running as root: with no reference run (`verify`), `capabilities` are what
    /// the command holds unrestricted, which a process that changed to another user dropped
    /// on its own (its refusals are the same unrestricted).
    Root,
}

impl RefusedNeeds {
    /// Refusals of `capabilities` by any process of the workload.
    pub fn of(capabilities: CapSet) -> Self {
        Self { capabilities, by: Refusers::Any }
    }
}

impl TrialSpec {
    /// Runs `argv` under `set` and `seccomp`: a `docker|podman run` command gets
    /// `--cap-drop=ALL --cap-add=...` and `--security-opt seccomp=FILE` (the engine
    /// restricts its container), anything else is restricted by capprof itself. `None` runs
    /// it as it is.
    /// `reference`: what the workload is granted and acts on unrestricted (see
    /// [`TrialSpec::refusals_fail`]); what `set` leaves out of it fails an exit-status trial
    /// when refused.
    pub fn under(argv: &[String], set: Option<CapSet>, seccomp: Option<&SeccompGuard>, probe: Option<Probe>, containers: bool, reference: RefusedNeeds) -> Result<Self> {
        let capabilities = set.map_or(CapSet::empty(), |s| CapSet(reference.capabilities.0 & !s.0));
        let refusals_fail = RefusedNeeds { capabilities, by: reference.by };
        Ok(match engine_run_under(argv, set, seccomp) {
            Some(rewritten) => Self { argv: rewritten, restrict: None, probe, containers: true, cleanup: Cleanup::Remove, seccomp: None, refusals_fail },
            None => Self {
                argv: argv.to_vec(),
                restrict: set,
                probe,
                containers,
                cleanup: Cleanup::Remove,
                seccomp: seccomp.map(SeccompGuard::program).transpose()?,
                refusals_fail,
            },
        })
    }
}

/// What a command holds when nothing restricts it, for a trial with no reference run
/// (`verify`): an engine's `run` gets the engine's default set (its own `--cap-add` options
/// aside), anything else capprof's own effective set.
pub fn unrestricted_grant(argv: &[String]) -> CapSet {
    use crate::capability::{DOCKER_DEFAULT, PODMAN_DEFAULT};
    match crate::attribution::run_command::locate_run(argv) {
        Some((_, engine)) if argv[engine].ends_with("podman") => PODMAN_DEFAULT.into_iter().collect(),
        Some(_) => DOCKER_DEFAULT.into_iter().collect(),
        None => crate::kernel::privileges::own_effective().unwrap_or_default(),
    }
}

/// A `docker|podman run` command with the set and the seccomp profile in its own options;
/// None when there is nothing to put there, or the command is no engine's `run`.
pub fn engine_run_under(argv: &[String], set: Option<CapSet>, seccomp: Option<&SeccompGuard>) -> Option<Vec<String>> {
    let file = seccomp.map(SeccompGuard::file_arg);
    (set.is_some() || file.is_some()).then(|| crate::attribution::run_command::rewrite_run_with(argv, set, file.as_deref())).flatten()
}

/// What one trial gave.
pub struct Trial {
    pub exit: Exit,
    /// Exit status 0, or the probe passed.
    pub success: bool,
    /// Why it counts as failed, for reports.
    pub failure: Option<String>,
    pub observations: Observations,
    /// Every check seen, host-wide in container mode: see `grouped`.
    pub checks: Vec<Check>,
    pub cgroup: String,
    pub cgroup_id: u64,
    pub left_behind: usize,
    /// Containers seen, with what their engines said.
    pub discovery: Discovery,
    /// How the containers it started were stopped.
    pub stopped: Vec<Stopped>,
    /// The systemd service the trial started (see [`crate::session::service`]).
    pub service: Option<crate::attribution::systemd::ServiceInfo>,
    /// What tells the containers its command started from everyone else's.
    pub ownership: Ownership,
    /// Containers seen during the trial that its command did not start: recorded, never
    /// stopped or removed.
    pub left_alone: Vec<String>,
}

impl Trial {
    /// The checks split into the command's, each container's, and the rest.
    pub fn grouped(&self) -> Grouped {
        group(self.checks.clone(), &self.observations, Some((self.cgroup_id, &self.cgroup)), &self.discovery)
    }

    /// The checks of what is being restricted: the containers' when the command started some,
    /// else the command's own.
    pub fn workload_checks(&self) -> Vec<Check> {
        let g = self.grouped();
        if g.containers.is_empty() {
            g.command.checks
        } else {
            g.containers.into_iter().flat_map(|(_, _, share)| share.checks).collect()
        }
    }
}

pub(crate) const PROBE_RUNNING: u8 = 0;
pub(crate) const PROBE_PASSED: u8 = 1;
const PROBE_FAILED: u8 = 2;

/// Runs one trial on the tracer, which is reset afterwards, ready for the next. Every
/// container the trial started is stopped (and with [`Cleanup::Remove`] removed) before it
/// returns, and every process left in its cgroup killed, so nothing it started can answer the
/// next trial's check.
pub fn run(tracer: &mut Tracer, spec: &TrialSpec) -> Result<Trial> {
    let this = tracer;
    if let Some(p) = &spec.probe {
        // A check that passes before the workload starts proves nothing about it.
        if shell(&p.check) {
            return Err(Error::new(
                ErrorKind::Interference,
                format!("something else answers the check: `{}` passes before the workload starts (a leftover container or another process on the host?)", p.check),
            ));
        }
        if let Some(ready) = p.ready.as_deref().filter(|r| shell(r)) {
            eprintln!("capprof: warning: --ready `{ready}` passes before the workload starts: it does not wait for the workload");
        }
    }
    let cgroup = RecordCgroup::create()?;
    this.watch_cgroup(cgroup.id)?;
    if spec.containers {
        this.watch_containers()?;
    }
    let ownership = Ownership::of(&spec.argv);
    let discovery = RefCell::new(if spec.containers { Discovery::for_recording(&spec.argv) } else { Discovery::default() });
    // An engine's `run` carries the trial's label: its container is told by the engine.
    let argv = if spec.containers { ownership.label_run(&spec.argv).unwrap_or_else(|| spec.argv.clone()) } else { spec.argv.clone() };
    let result = run_in(this, &cgroup, spec, &argv, &discovery);
    let mut discovery = discovery.into_inner();
    // Only the containers its command started are stopped, while the programs still count:
    // what they check then is "at stop". Everyone else's are recorded and left alone.
    let (started, others): (Vec<_>, Vec<_>) = discovery.containers.values().partition(|(r, i)| ownership.owns(&r.id, i));
    let started: Vec<(ContainerRef, String)> = started.into_iter().map(|(r, i)| (r.clone(), i.name.clone())).collect();
    let left_alone: Vec<String> = others.into_iter().map(|(_, i)| i.name.clone()).collect();
    if !started.is_empty() {
        this.mark_stop()?;
    }
    let stopped = stop::stop_all(&started, spec.cleanup);
    let left_behind = cgroup.remaining().len();
    cgroup.kill_all();
    this.unwatch_cgroup(cgroup.id)?;
    let (exit, probe, exec_refused) = match result {
        Ok((exit, probe)) => (exit, probe, None),
        // Under a restricted set the kernel may refuse the exec itself (a program with file
        // capabilities the bounding set lacks): a failed trial, not an error.
        Err(e) if spec.restrict.is_some() && e.kind() == ErrorKind::NotExecutable => (Exit { status: 126, signal: None }, None, Some(e.to_string())),
        Err(e) => {
            this.reset()?;
            return Err(e);
        }
    };
    let observations = this.observations()?;
    for path in this.take_new_cgroups() {
        discovery.observe(&path);
    }
    discovery.refresh();
    let checks = this.symbolize(&observations);
    this.reset()?;
    let (success, failure) = match (&spec.probe, probe, exec_refused) {
        (_, _, Some(e)) => (false, Some(format!("could not start under this set: {e}"))),
        (None, _, None) if exit.status == 0 => (true, None),
        (None, _, None) => (false, Some(format!("exited with status {}", exit.status))),
        (Some(_), Some(PROBE_PASSED), None) => (true, None),
        (Some(p), _, None) => (false, Some(format!("check `{}` did not pass (workload exit status {})", p.check, exit.status))),
    };
    let mut trial = Trial { exit, success, failure, observations, checks, cgroup: cgroup.relative.clone(), cgroup_id: cgroup.id, left_behind, discovery, stopped, service: None, ownership, left_alone };
    if trial.success && spec.probe.is_none() {
        trial.fail_on_refused_needs(spec.refusals_fail);
    }
    Ok(trial)
}

impl Trial {
    /// A trial judged by exit status that the kernel refused one of `reference` (what the
    /// workload is granted and acts on unrestricted) fails: the program went on without what
    /// it asked for (a chown refused, a warning, exit 0), and capprof cannot know whether that
    /// matters. The failure names the refusal and asks for `--check`, a test of the result.
    pub fn fail_on_refused_needs(&mut self, reference: RefusedNeeds) {
        if reference.capabilities.is_empty() {
            return;
        }
        let checks: Vec<Check> = self
            .workload_checks()
            .into_iter()
            // A DAC check refused on an exec's path walk fails that exec attempt: execvp goes
            // on to the next PATH entry, and an exec that fails in the end shows in the exit
            // status.
            .filter(|c| !(is_dac(c.capability) && c.syscall.as_deref().is_some_and(|s| s.starts_with("execve"))))
            .filter(|c| reference.by == Refusers::Any || c.uid.is_none_or(|u| u == 0))
            .collect();
        let refused: Vec<String> = refused(&checks).into_iter().filter(|(c, _)| reference.capabilities.contains(*c)).flat_map(|(_, lines)| lines).collect();
        if refused.is_empty() {
            return;
        }
        self.success = false;
        self.failure = Some(format!(
            "exited with status {}, but the kernel refused {}, which it is granted and acts on unrestricted: it went on without it, and only a test of the result can tell whether that matters (give --check)",
            self.exit.status,
            refused.join("; ")
        ));
    }
}

fn run_in(this: &mut Tracer, cgroup: &RecordCgroup, spec: &TrialSpec, argv: &[String], discovery: &RefCell<Discovery>) -> Result<(Exit, Option<u8>)> {
    let mut workload = Workload::spawn(argv, cgroup, spec.restrict, spec.seccomp.clone())?;
    let state = Arc::new(AtomicU8::new(PROBE_RUNNING));
    let stop_polling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = spec.probe.clone().map(|probe| {
        let (state, stop) = (state.clone(), stop_polling.clone());
        std::thread::spawn(move || state.store(poll_probe(&probe, &stop), Ordering::SeqCst))
    });
    let has_probe = spec.probe.is_some();
    let final_check = spec.probe.as_ref().map(|p| (p.check.clone(), p.timeout));
    // Containers are asked about as they appear (a `--rm` container is gone by the end),
    // and their filesystem changes every second while they run.
    let mut last_refresh = Instant::now();
    let exit = this.supervise(
        &mut workload,
        |new_cgroups| {
            let mut d = discovery.borrow_mut();
            for path in new_cgroups {
                d.observe(&path);
            }
        },
        || {
            if spec.containers && last_refresh.elapsed() >= Duration::from_secs(1) {
                discovery.borrow_mut().refresh();
                last_refresh = Instant::now();
            }
            has_probe && state.load(Ordering::SeqCst) != PROBE_RUNNING
        },
    )?;
    // The poller finishes the check it is running (one that passes may change what it
    // tests, as a check that puts a file back does) before the state is read.
    stop_polling.store(true, Ordering::SeqCst);
    if let Some(p) = poller {
        let _ = p.join();
    }
    let mut probe = has_probe.then(|| state.load(Ordering::SeqCst));
    // A one-shot command (a tool, an installer) that ended well: its result is tested once
    // it is done. A server that ended is not serving, and one that failed is not waited for.
    if let (Some(PROBE_RUNNING), Some((check, timeout))) = (probe, final_check) {
        if exit.status == 0 && exit.signal.is_none() {
            probe = Some(if shell_until(&check, Instant::now() + timeout) { PROBE_PASSED } else { PROBE_FAILED });
        }
    }
    Ok((exit, probe))
}

/// Readiness, then the check; runs outside the workload's cgroup so its checks don't count.
pub(crate) fn run_probe(p: &Probe) -> u8 {
    poll_probe(p, &std::sync::atomic::AtomicBool::new(false))
}

/// [`run_probe`], which gives up between two polls once `stop` is set: `PROBE_RUNNING` then,
/// unless it passed.
fn poll_probe(p: &Probe, stop: &std::sync::atomic::AtomicBool) -> u8 {
    let deadline = Instant::now() + p.timeout;
    let poll_until = |cmd: &str| -> Option<bool> {
        loop {
            if shell_until(cmd, deadline) {
                return Some(true);
            }
            if Instant::now() >= deadline {
                return Some(false);
            }
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let passed = match &p.ready {
        Some(ready) => poll_until(ready).map(|r| r && shell_until(&p.check, deadline)),
        None => poll_until(&p.check),
    };
    match passed {
        Some(true) => PROBE_PASSED,
        Some(false) => PROBE_FAILED,
        None => PROBE_RUNNING,
    }
}

pub(crate) fn shell(cmd: &str) -> bool {
    shell_until(cmd, Instant::now() + Duration::from_secs(10))
}

/// Runs `cmd` with `sh -c`; a command still running at `deadline` (a client waiting on a
/// server that accepted but never answers) is killed, with its children, and counts as failed.
fn shell_until(cmd: &str, deadline: Instant) -> bool {
    use std::os::unix::process::CommandExt;
    let child = std::process::Command::new("sh")
        .args(["-c", cmd])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    let Ok(mut child) = child else { return false };
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // SAFETY: signals the process group the child leads.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Runs a spec up to `runs` times, stopping at the first failure (flaky workloads).
pub fn repeat(tracer: &mut Tracer, spec: &TrialSpec, runs: u32) -> Result<(Trial, u32)> {
    repeat_with(runs, || run(tracer, spec))
}

/// Up to `runs` trials of `one`, stopping at the first failure; the last trial and the count.
pub fn repeat_with(runs: u32, mut one: impl FnMut() -> Result<Trial>) -> Result<(Trial, u32)> {
    let mut last = one()?;
    let mut done = 1;
    while last.success && done < runs {
        last = one()?;
        done += 1;
    }
    Ok((last, done))
}

pub fn outcome(trial: &Trial) -> String {
    match &trial.failure {
        None => "succeeded".into(),
        Some(f) => f.clone(),
    }
}

fn is_dac(capability: u32) -> bool {
    capability == Capability::DAC_OVERRIDE.number() || capability == Capability::DAC_READ_SEARCH.number()
}

/// Refused checks that are not probes or runtime set-up, by capability (a refused first
/// alternative, DAC_READ_SEARCH before a granted DAC_OVERRIDE, is not one).
pub fn refused(checks: &[Check]) -> Vec<(Capability, Vec<String>)> {
    let mut classified: Vec<(Check, Classification, String)> = checks
        .iter()
        .map(|c| {
            let (k, r) = classify(c);
            (c.clone(), k, r)
        })
        .collect();
    crate::classify::fold_alternatives(&mut classified);
    let mut out: Vec<(Capability, Vec<String>)> = Vec::new();
    for c in classified.iter().filter(|(c, k, _)| c.denied && *k == Classification::Denied).map(|(c, _, _)| c) {
        let Some(cap) = Capability::from_number(c.capability) else { continue };
        let line = format!("{cap} via {} (by {})", c.path_summary(), c.comm);
        match out.iter_mut().find(|(k, _)| *k == cap) {
            Some((_, lines)) if !lines.contains(&line) => lines.push(line),
            Some(_) => {}
            None => out.push((cap, vec![line])),
        }
    }
    out.sort_by_key(|(c, _)| c.name());
    out
}

/// Records the verification in the profile's main workload (the container, if any).
/// `set` None: the workload kept its own capabilities.
pub fn attach_verification(profile: &mut Profile, set: Option<CapSet>, trial: &Trial, runs: u32, evidence: Vec<crate::profile::Evidence>) {
    let main = main_workload(profile);
    if let Some(w) = profile.workloads.get_mut(main) {
        let mut caps: Vec<Capability> = set.unwrap_or_default().iter().collect();
        caps.sort_by_key(|c| c.name());
        w.verification = Some(Verification {
            capabilities: caps,
            unrestricted: set.is_none(),
            passed: trial.success,
            failure: trial.failure.clone(),
            runs,
            evidence,
            seccomp: None,
        });
    }
}

/// Records the seccomp profile the verification ran under; the calls it refused are in the
/// workload's own syscall profile (`refused`).
pub fn attach_seccomp_verification(profile: &mut Profile, guard: &SeccompGuard) {
    let main = main_workload(profile);
    if let Some(v) = profile.workloads.get_mut(main).and_then(|w| w.verification.as_mut()) {
        v.seccomp = Some(guard.file_arg());
    }
}

/// The workload a verification is about: the container, if any, else the first.
pub fn main_workload(profile: &Profile) -> usize {
    profile.workloads.iter().position(|w| w.kind == crate::profile::WorkloadKind::Container).unwrap_or(0)
}

/// The profile of one trial: each container it started, and the command itself unless it
/// only started containers and needed nothing of its own.
pub fn profile_of(tracer: &Tracer, argv: &[String], trial: &Trial, options: &RecordOptions) -> Profile {
    let grouped = trial.grouped();
    if let Some(service) = &trial.service {
        let meta = WorkloadMeta {
            name: service.unit.clone(),
            kind: WorkloadKind::Service,
            command: vec![],
            cgroup: trial.cgroup.clone(),
            exit_status: None,
            container: None,
            service: Some(service.clone()),
            net_uses: grouped.command.net_uses,
            portable: options.portable,
        };
        let mut profile = tracer.profile(&trial.observations, vec![(meta, grouped.command.checks)]);
        profile.unattributed_checks = grouped.elsewhere;
        attach_syscalls(tracer, &mut profile, vec![grouped.command.syscalls]);
        return profile;
    }
    let mut workloads = Vec::new();
    let mut syscalls = Vec::new();
    let single = grouped.containers.len() == 1;
    for (r, mut info, mut share) in grouped.containers {
        info.started_by_command = trial.ownership.owns(&r.id, &info);
        // Programs gone before their executable could be read: their file capabilities
        // from the image, by name.
        for c in share.checks.iter_mut().filter(|c| c.exe.is_none() && c.file_caps.is_none() && !c.setup && !crate::attribution::is_runtime_comm(&c.comm)) {
            if let Some((path, caps)) = crate::attribution::discovery::image_program_file_caps(&info.image, &c.comm) {
                c.file_caps = Some(caps);
                c.exe = Some(path);
                c.exe_gains_privilege = true;
            }
        }
        // Gone before its engine could be asked: the command line still names the image.
        if info.image.is_empty() && single {
            if let Some(image) = crate::attribution::run_command::run_image(argv) {
                info.image = image;
            }
        }
        let name = if info.name.is_empty() { r.id.chars().take(12).collect() } else { info.name.clone() };
        let meta = WorkloadMeta {
            service: None,
            name,
            kind: WorkloadKind::Container,
            command: vec![],
            cgroup: r.cgroup.clone(),
            exit_status: None,
            container: Some(info),
            net_uses: share.net_uses,
            portable: options.portable,
        };
        workloads.push((meta, share.checks));
        syscalls.push(share.syscalls);
    }
    let command_needs = grouped.command.checks.iter().any(|c| !c.denied && crate::classify::classify(c).0 == crate::classify::Classification::Needed);
    // An engine's client (podman and ctr do privileged set-up of their own) that started
    // containers is the engine, not a workload: its checks are reported apart.
    let engine_client = !workloads.is_empty() && is_engine_client(argv);
    if engine_client && command_needs {
        let caps: std::collections::BTreeSet<String> = grouped.command.checks.iter().filter(|c| !c.denied).map(|c| crate::capability::name_of(c.capability)).collect();
        eprintln!("capprof: {}'s own checks ({}) are the engine's set-up, not a workload's: left out of the profile", crate::format::plain(&argv[0]), caps.into_iter().collect::<Vec<_>>().join(", "));
    }
    if workloads.is_empty() || (command_needs && !engine_client) {
        let meta = WorkloadMeta {
            service: None,
            name: crate::format::shell_line(argv),
            kind: WorkloadKind::Command,
            command: argv.to_vec(),
            cgroup: trial.cgroup.clone(),
            exit_status: Some(trial.exit.status),
            container: None,
            net_uses: grouped.command.net_uses,
            portable: options.portable,
        };
        workloads.insert(0, (meta, grouped.command.checks));
        syscalls.insert(0, grouped.command.syscalls);
    }
    let mut profile = tracer.profile(&trial.observations, workloads);
    profile.command = argv.to_vec();
    profile.unattributed_checks = grouped.elsewhere;
    attach_syscalls(tracer, &mut profile, syscalls);
    profile
}

/// Is `argv` a container engine's client itself (`podman run`, `ctr run`, `docker compose up`),
/// not a script that calls one?
fn is_engine_client(argv: &[String]) -> bool {
    argv.first().is_some_and(|a| matches!(a.rsplit('/').next().unwrap_or(a), "docker" | "podman" | "nerdctl" | "ctr" | "crictl" | "docker-compose" | "podman-compose"))
}

/// Each workload's seccomp allow list, when system calls were counted (in the order the
/// workloads were built).
pub fn attach_syscalls(tracer: &Tracer, profile: &mut Profile, syscalls: Vec<Vec<crate::collector::SyscallObservation>>) {
    if !tracer.traces_syscalls() {
        return;
    }
    for (w, obs) in profile.workloads.iter_mut().zip(syscalls) {
        w.seccomp = Some(crate::profile::seccomp::SyscallProfile::build(&obs, w.kind));
    }
}

/// Notes on stderr about how the workload ended.
pub fn report_trial_end(trial: &Trial) {
    for name in &trial.left_alone {
        eprintln!("capprof: container {}: not started by this command: recorded, left as it was", crate::format::plain(name));
    }
    for s in trial.stopped.iter().filter(|s| s.was_running || s.error.is_some()) {
        eprintln!("capprof: {}", s.describe());
    }
    if trial.left_behind > 0 {
        eprintln!("capprof: {} process(es) the command left running were killed", trial.left_behind);
    }
    if let Some(sig) = trial.exit.signal {
        eprintln!("capprof: the command was killed by signal {sig}; the profile covers what ran until then");
    }
}
