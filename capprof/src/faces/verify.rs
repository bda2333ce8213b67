//! `capprof verify --caps LIST -- CMD` (or `--unit NAME`): run CMD, or restart the unit, under
//! exactly LIST and say whether it works, with every refused check (what is missing, where, and
//! who asked).

use crate::capability::CapSet;
use crate::error::Result;
use crate::output;
use crate::faces::RunConfig;
use crate::session::Tracer;
use crate::profile::Evidence;
use crate::session::subject::Subject;
use crate::session::trial::{attach_verification, outcome, profile_of, refused, report_trial_end};

/// Validated options of `verify`.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    pub caps: CapSet,
    pub run: RunConfig,
}

/// Exit code of `verify` when the workload fails under the set.
pub const FAILED: i32 = 1;

pub fn run(v: &VerifyConfig) -> Result<i32> {
    let cfg = &v.run;
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stderr)?;
    let subject = Subject::new(&cfg.argv, cfg.unit.as_deref(), cfg.options.containers)?;
    let mut tracer = Tracer::open(&cfg.options.kernel)?;
    let (trial, runs) = subject.repeat(&mut tracer, Some(v.caps), cfg.probe.as_ref(), cfg.runs)?;
    let mut profile = profile_of(&tracer, &subject.argv_under(Some(v.caps)), &trial, &cfg.options);
    drop(tracer);
    // A unit is put back as it was before the report is written.
    drop(subject);
    report_trial_end(&trial);
    let evidence = refused(&trial.workload_checks())
        .into_iter()
        .map(|(cap, denied)| Evidence { capability: cap, kept: v.caps.contains(cap), trial: crate::profile::EvidenceRun::UnderGivenSet, outcome: outcome(&trial), denied })
        .collect();
    attach_verification(&mut profile, v.caps, &trial, runs, evidence);
    sink.emit(&profile, cfg.format)?;
    Ok(if trial.success { 0 } else { FAILED })
}

