//! `capprof record -- CMD`: run one command in a fresh cgroup under the kernel programs and
//! write its profile. The workload's exit status becomes capprof's.

use std::path::PathBuf;

use crate::backend::MapSizes;
use crate::cgroup::RecordCgroup;
use crate::error::Result;
use crate::format::Format;
use crate::output;
use crate::pipeline::Tracer;
use crate::profile::{Profile, WorkloadKind, WorkloadMeta};
use crate::workload::Workload;

/// Validated options of `record`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub argv: Vec<String>,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub sizes: MapSizes,
}

/// Records `argv`, writes the profile, returns the workload's shell-style exit status.
pub fn run(cfg: &RecordConfig) -> Result<i32> {
    let (profile, status) = record(&cfg.argv, cfg.sizes)?;
    output::emit(&profile, cfg.format, cfg.output.as_deref())?;
    Ok(status)
}

/// The recording itself, shared with `verify` and `minimize`.
pub fn record(argv: &[String], sizes: MapSizes) -> Result<(Profile, i32)> {
    let mut tracer = Tracer::start(sizes)?;
    let cgroup = RecordCgroup::create()?;
    tracer.watch_cgroup(cgroup.id)?;
    let mut workload = Workload::spawn(argv, &cgroup, None)?;
    let exit = tracer.follow(&mut workload)?;
    let left_behind = cgroup.remaining().len();
    cgroup.kill_all();
    let obs = tracer.observations()?;
    let checks = tracer.symbolize(&obs);
    if left_behind > 0 {
        eprintln!("capprof: {left_behind} process(es) the command left running were killed");
    }
    let meta = WorkloadMeta {
        name: display_command(argv),
        kind: WorkloadKind::Command,
        command: argv.to_vec(),
        cgroup: cgroup.relative.clone(),
        exit_status: Some(exit.status),
    };
    let profile = tracer.profile(&obs, vec![(meta, checks)]);
    // Detach the programs and remove the cgroup before anything slow (writing files).
    drop(tracer);
    drop(cgroup);
    if let Some(sig) = exit.signal {
        eprintln!("capprof: the command was killed by signal {sig}; the profile covers what ran until then");
    }
    Ok((profile, exit.status))
}

/// `sh -c 'true'` style, for report titles.
pub fn display_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) { format!("'{}'", a.replace('\'', "'\\''")) } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

