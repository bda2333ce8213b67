//! `capprof record -- CMD`: run one command in a fresh cgroup under the kernel programs and
//! write its profile. The workload's exit status becomes capprof's.

use std::path::PathBuf;

use crate::backend::MapSizes;
use crate::error::Result;
use crate::format::Format;
use crate::output;
use crate::pipeline::Tracer;
use crate::profile::{Profile, WorkloadKind, WorkloadMeta};
use crate::trial::{Trial, TrialSpec};

/// Validated options of `record`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub argv: Vec<String>,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub sizes: MapSizes,
    pub bpf_stats: bool,
}

/// Records `argv`, writes the profile, returns the workload's shell-style exit status.
pub fn run(cfg: &RecordConfig) -> Result<i32> {
    let (profile, status) = record(&cfg.argv, cfg.sizes, cfg.bpf_stats)?;
    output::emit(&profile, cfg.format, cfg.output.as_deref())?;
    Ok(status)
}

/// The recording itself: one unrestricted trial.
pub fn record(argv: &[String], sizes: MapSizes, bpf_stats: bool) -> Result<(Profile, i32)> {
    let mut tracer = Tracer::start(sizes)?;
    if bpf_stats {
        tracer.enable_stats()?;
    }
    let trial = tracer.trial(&TrialSpec { argv: argv.to_vec(), restrict: None, probe: None })?;
    let profile = profile_of(&tracer, argv, &trial);
    // Detach the programs before anything slow (writing files).
    drop(tracer);
    report_trial_end(&trial);
    Ok((profile, trial.exit.status))
}

/// The profile of one trial's workload.
pub fn profile_of(tracer: &Tracer, argv: &[String], trial: &Trial) -> Profile {
    let meta = WorkloadMeta {
        name: display_command(argv),
        kind: WorkloadKind::Command,
        command: argv.to_vec(),
        cgroup: trial.cgroup.clone(),
        exit_status: Some(trial.exit.status),
    };
    tracer.profile(&trial.observations, vec![(meta, trial.checks.clone())])
}

/// Notes on stderr about how the workload ended.
pub fn report_trial_end(trial: &Trial) {
    if trial.left_behind > 0 {
        eprintln!("capprof: {} process(es) the command left running were killed", trial.left_behind);
    }
    if let Some(sig) = trial.exit.signal {
        eprintln!("capprof: the command was killed by signal {sig}; the profile covers what ran until then");
    }
}

/// `sh -c 'true'` style, for report titles.
pub fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) { format!("'{}'", a.replace('\'', "'\\''")) } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

