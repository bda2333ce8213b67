//! What `verify` and `minimize` re-run under candidate sets: a command (a trial in a fresh
//! cgroup, see [`crate::session::trial`]) or a systemd unit (restarted under a transient
//! drop-in, see [`crate::session::service`]). The search is the same for both.

use crate::attribution::systemd::Controlled;
use crate::capability::CapSet;
use crate::error::{Error, ErrorKind, Result};
use crate::session::service::{self, ServiceTrial};
use crate::session::trial::{self, Probe, RefusedNeeds, Trial, TrialSpec};
use crate::session::seccomp::SeccompGuard;
use crate::session::Tracer;

pub enum Subject {
    Command { argv: Vec<String>, containers: bool },
    /// Put back as it was when this is dropped.
    Unit(Box<Controlled>),
}

impl Subject {
    /// A unit is taken under control at once (before the kernel programs load), so a unit
    /// capprof cannot manage is refused before anything changes.
    pub fn new(argv: &[String], unit: Option<&str>, containers: bool) -> Result<Self> {
        match unit {
            Some(name) => Ok(Self::Unit(Box::new(Controlled::take(name)?))),
            None => Ok(Self::Command { argv: argv.to_vec(), containers }),
        }
    }

    /// The unit, when the subject is one.
    pub fn unit(&self) -> Option<&Controlled> {
        match self {
            Self::Unit(u) => Some(u),
            Self::Command { .. } => None,
        }
    }

    /// The command line, for profiles (empty for a unit).
    pub fn argv(&self) -> &[String] {
        match self {
            Self::Command { argv, .. } => argv,
            Self::Unit(_) => &[],
        }
    }

    /// What is being judged, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Command { argv, .. } => format!("`{}`", crate::format::shell_line(argv)),
            Self::Unit(u) => u.unit.info.unit.clone(),
        }
    }

    /// One trial under `set` (None: unrestricted), `runs` times or until the first failure.
    /// With `seccomp`, under that profile too (commands only). Judged by exit status, a trial
    /// whose kernel refused what `reference` holds and `set` leaves out fails
    /// ([`TrialSpec::refusals_fail`]); a unit is always judged by its `--check`.
    pub fn repeat(&self, tracer: &mut Tracer, set: Option<CapSet>, seccomp: Option<&SeccompGuard>, probe: Option<&Probe>, runs: u32, reference: RefusedNeeds) -> Result<(Trial, u32)> {
        match self {
            Self::Command { argv, containers } => {
                let spec = TrialSpec::under(argv, set, seccomp, probe.cloned(), *containers, reference)?;
                trial::repeat(tracer, &spec, runs)
            }
            Self::Unit(_) if seccomp.is_some() => {
                Err(Error::new(ErrorKind::Usage, "--seccomp is for commands and containers: a unit's system calls are filtered by its own SystemCallFilter="))
            }
            Self::Unit(unit) => {
                let probe = probe.ok_or_else(|| Error::new(ErrorKind::Usage, "--unit needs --check: how else would capprof tell that the service works?"))?;
                let spec = ServiceTrial { restrict: set, probe: Some(probe.clone()), duration: None, judged: true };
                trial::repeat_with(runs, || service::run(tracer, unit, &spec))
            }
        }
    }

    /// The command as it is run under `set` (a `docker run` rewritten), for profiles.
    pub fn argv_under(&self, set: Option<CapSet>, seccomp: Option<&SeccompGuard>) -> Vec<String> {
        match self {
            Self::Command { argv, .. } => trial::engine_run_under(argv, set, seccomp).unwrap_or_else(|| argv.clone()),
            Self::Unit(_) => vec![],
        }
    }
}
