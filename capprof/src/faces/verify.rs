//! `capprof verify --caps LIST -- CMD`: run CMD under exactly LIST and say whether it works,
//! with every refused check (what is missing, where, and who asked).

use crate::capability::CapSet;
use crate::error::Result;
use crate::output;
use crate::faces::RunConfig;
use crate::session::Tracer;
use crate::profile::Evidence;
use crate::session::trial::{attach_verification, outcome, profile_of, refused, repeat, report_trial_end, TrialSpec};

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
    let mut tracer = Tracer::open(&cfg.options.kernel)?;
    let spec = TrialSpec::under(&cfg.argv, Some(v.caps), cfg.probe.clone(), cfg.options.containers);
    let (trial, runs) = repeat(&mut tracer, &spec, cfg.runs)?;
    let mut profile = profile_of(&tracer, &spec.argv, &trial, &cfg.options);
    drop(tracer);
    report_trial_end(&trial);
    let evidence = refused(&trial.workload_checks())
        .into_iter()
        .map(|(cap, denied)| Evidence { capability: cap, kept: v.caps.contains(cap), trial: crate::profile::EvidenceRun::UnderGivenSet, outcome: outcome(&trial), denied })
        .collect();
    attach_verification(&mut profile, v.caps, &trial, runs, evidence);
    sink.emit(&profile, cfg.format)?;
    Ok(if trial.success { 0 } else { FAILED })
}

