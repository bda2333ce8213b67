//! `capprof verify --caps LIST -- CMD` (or `--unit NAME`): run CMD, or restart the unit, under
//! exactly LIST and say whether it works, with every refused check (what is missing, where, and
//! who asked). With `--seccomp FILE`, under that seccomp profile too, with every system call it
//! refused.

use std::path::PathBuf;

use crate::capability::CapSet;
use crate::error::Result;
use crate::output;
use crate::faces::RunConfig;
use crate::session::seccomp::SeccompGuard;
use crate::session::Tracer;
use crate::profile::Evidence;
use crate::session::subject::Subject;
use crate::session::trial::{attach_verification, outcome, profile_of, refused, report_trial_end, RefusedNeeds, Refusers};

/// Validated options of `verify`.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// None: the workload keeps its own capabilities (only the seccomp profile is verified).
    pub caps: Option<CapSet>,
    pub seccomp: Option<PathBuf>,
    pub run: RunConfig,
}

/// Exit code of `verify` when the workload fails under the set.
pub const FAILED: i32 = 1;

pub fn run(v: &VerifyConfig) -> Result<i32> {
    let cfg = &v.run;
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stderr)?;
    let guard = v.seccomp.as_deref().map(SeccompGuard::from_file).transpose()?;
    let subject = Subject::new(&cfg.argv, cfg.unit.as_deref(), cfg.options.containers)?;
    let mut tracer = Tracer::open(&cfg.options.kernel)?;
    // No reference run: what the command holds unrestricted stands in for what it acts on.
    let reference = RefusedNeeds { capabilities: crate::session::trial::unrestricted_grant(subject.argv()), by: Refusers::Root };
    let (trial, runs) = subject.repeat(&mut tracer, v.caps, guard.as_ref(), cfg.probe.as_ref(), cfg.runs, reference)?;
    let mut profile = profile_of(&tracer, &subject.argv_under(v.caps, guard.as_ref()), &trial, &cfg.options);
    drop(tracer);
    // A unit is put back as it was before the report is written.
    drop(subject);
    report_trial_end(&trial);
    let evidence = refused(&trial.workload_checks())
        .into_iter()
        .map(|(cap, denied)| Evidence { capability: cap, kept: v.caps.is_none_or(|c| c.contains(cap)), trial: crate::profile::EvidenceRun::UnderGivenSet, outcome: outcome(&trial), denied })
        .collect();
    attach_verification(&mut profile, v.caps, &trial, runs, evidence);
    if let Some(g) = &guard {
        crate::session::trial::attach_seccomp_verification(&mut profile, g);
    }
    sink.emit(&profile, cfg.format)?;
    Ok(if trial.success { 0 } else { FAILED })
}
