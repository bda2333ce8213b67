//! `capprof verify --caps LIST -- CMD`: run CMD under exactly LIST and say whether it works,
//! with every refused check (what is missing, where, and who asked).

use crate::attribution::Check;
use crate::capability::{CapSet, Capability};
use crate::classify::{classify, Classification};
use crate::error::Result;
use crate::output;
use crate::pipeline::Tracer;
use crate::profile::{Evidence, Profile, Verification};
use crate::record::{profile_of, report_trial_end};
use crate::trial::{RunConfig, Trial, TrialSpec};

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
    let mut tracer = Tracer::start(cfg.options.sizes, cfg.options.backend)?;
    let spec = TrialSpec::under(&cfg.argv, Some(v.caps), cfg.probe.clone(), cfg.options.containers);
    let (trial, runs) = repeat(&mut tracer, &spec, cfg.runs)?;
    let mut profile = profile_of(&tracer, &spec.argv, &trial, &cfg.options);
    drop(tracer);
    report_trial_end(&trial);
    let evidence = refused(&trial.workload_checks())
        .into_iter()
        .map(|(cap, denied)| Evidence { capability: cap, kept: v.caps.contains(cap), trial: "under the given set".into(), outcome: outcome(&trial), denied })
        .collect();
    attach(&mut profile, v.caps, &trial, runs, evidence);
    sink.emit(&profile, cfg.format)?;
    Ok(if trial.success { 0 } else { FAILED })
}

/// Runs a spec up to `runs` times, stopping at the first failure (flaky workloads).
pub fn repeat(tracer: &mut Tracer, spec: &TrialSpec, runs: u32) -> Result<(Trial, u32)> {
    let mut last = tracer.trial(spec)?;
    let mut done = 1;
    while last.success && done < runs {
        last = tracer.trial(spec)?;
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

/// Refused checks that are not probes or runtime set-up, by capability.
pub fn refused(checks: &[Check]) -> Vec<(Capability, Vec<String>)> {
    let mut out: Vec<(Capability, Vec<String>)> = Vec::new();
    for c in checks.iter().filter(|c| c.denied && classify(c).0 == Classification::Denied) {
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
pub fn attach(profile: &mut Profile, set: CapSet, trial: &Trial, runs: u32, evidence: Vec<crate::profile::Evidence>) {
    let main = profile.workloads.iter().position(|w| w.kind == crate::profile::WorkloadKind::Container).unwrap_or(0);
    if let Some(w) = profile.workloads.get_mut(main) {
        let mut caps: Vec<Capability> = set.iter().collect();
        caps.sort_by_key(|c| c.name());
        w.verification = Some(Verification { capabilities: caps, passed: trial.success, failure: trial.failure.clone(), runs, evidence });
    }
}
