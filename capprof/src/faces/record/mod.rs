//! `capprof record -- CMD`: run one command in a fresh cgroup under the kernel programs and
//! write its profile, one workload per container it started. The command's exit status
//! becomes capprof's. [`running`]: a container or cgroup that already runs; [`service`]: a
//! systemd unit from its start; [`prove`]: the re-runs that settle conditional capabilities.

pub mod prove;
pub mod running;
pub mod service;

use std::path::PathBuf;

use crate::error::Result;
use crate::format::Format;
use crate::output;
use crate::session::{RecordOptions, Tracer};
use crate::profile::Profile;
use crate::session::trial::{self, profile_of, report_trial_end, TrialSpec};

/// What `record` records: exactly one of a command, a running container, a running cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Run this command (argv) in a fresh cgroup.
    Command(Vec<String>),
    /// Attach to this running container (Docker or podman name or id).
    Container(String),
    /// Attach to this running cgroup v2 (a path relative to the mount, or under it).
    Cgroup(String),
    /// Restart this systemd service under recording.
    Unit(String),
}

/// Validated options of `record`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub target: Target,
    /// How long to attach to a running target (None: until Ctrl-C or its end).
    pub duration: Option<std::time::Duration>,
    /// Re-run to settle conditional capabilities (`record --prove`).
    pub prove: bool,
    /// For servers: record until this check passes, then stop the workload.
    pub probe: Option<crate::session::trial::Probe>,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub options: RecordOptions,
}

/// Records `argv`, writes the profile, returns the workload's shell-style exit status.
pub fn run(cfg: &RecordConfig) -> Result<i32> {
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stderr)?;
    let argv = match &cfg.target {
        Target::Container(name) => {
            let profile = crate::faces::record::running::record_container(name, cfg.duration, &cfg.options)?;
            sink.emit(&profile, cfg.format)?;
            return Ok(0);
        }
        Target::Cgroup(path) => {
            let profile = crate::faces::record::running::record_cgroup(path, cfg.duration, &cfg.options)?;
            sink.emit(&profile, cfg.format)?;
            return Ok(0);
        }
        Target::Unit(name) => {
            let (profile, status) = crate::faces::record::service::record_unit(name, cfg.duration, cfg.probe.as_ref(), cfg.prove, &cfg.options)?;
            sink.emit(&profile, cfg.format)?;
            return Ok(status);
        }
        Target::Command(argv) => argv,
    };
    if cfg.format == Format::DockerRun && crate::attribution::run_command::rewrite_run(argv, crate::capability::CapSet::empty()).is_none() {
        return Err(crate::error::Error::new(crate::error::ErrorKind::Usage, crate::format::DOCKER_RUN_NEEDS_RUN));
    }
    let (profile, status) = record(argv, &cfg.options, cfg.prove, cfg.probe.as_ref())?;
    sink.emit(&profile, cfg.format)?;
    Ok(status)
}

/// The recording itself: one unrestricted trial, then with `prove` one restricted re-run per
/// conditional capability (see [`crate::faces::record::prove`]).
///
/// The status is the workload's; with a `probe`, 0 when its check passed and 1 when not.
pub fn record(argv: &[String], options: &RecordOptions, prove: bool, probe: Option<&crate::session::trial::Probe>) -> Result<(Profile, i32)> {
    let mut tracer = Tracer::open(&options.kernel)?;
    let cleanup = if probe.is_some() { crate::attribution::stop::Cleanup::Remove } else { crate::attribution::stop::Cleanup::Stop };
    let spec = TrialSpec { argv: argv.to_vec(), restrict: None, probe: probe.cloned(), containers: options.containers, cleanup, seccomp: None, refusals_fail: trial::RefusedNeeds::default() };
    let trial = trial::run(&mut tracer, &spec)?;
    let mut profile = profile_of(&tracer, argv, &trial, options);
    report_trial_end(&trial);
    if let Some(f) = trial.failure.as_ref().filter(|_| probe.is_some()) {
        eprintln!("capprof: {f}");
    }
    if prove && trial.success {
        let subject = crate::session::subject::Subject::new(argv, None, options.containers)?;
        crate::faces::record::prove::settle(&mut tracer, &subject, probe, &mut profile)?;
    } else if prove {
        eprintln!("capprof: --prove: the recorded run did not succeed ({}): nothing to compare re-runs with, conditional capabilities stay in the set", trial::outcome(&trial));
    }
    // Detach the programs before anything slow (writing files).
    drop(tracer);
    let status = match probe {
        Some(_) => i32::from(!trial.success),
        None => trial.exit.status,
    };
    Ok((profile, status))
}

/// Does the command run a container engine's client (so containers should be recorded)?
pub fn mentions_container_engine(argv: &[String]) -> bool {
    argv.iter().flat_map(|a| a.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')).any(|word| {
        let base = word.rsplit('/').next().unwrap_or(word);
        matches!(base, "docker" | "podman" | "docker-compose" | "nerdctl" | "ctr" | "crictl" | "runc" | "crun")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn container_clients_are_recognised() {
        assert!(mentions_container_engine(&v(&["docker", "run", "x"])));
        assert!(mentions_container_engine(&v(&["sh", "-c", "/usr/bin/podman run x && true"])));
        assert!(mentions_container_engine(&v(&["docker-compose", "up"])));
        assert!(mentions_container_engine(&v(&["ctr", "-n", "k8s.io", "run", "img", "id"])));
        assert!(mentions_container_engine(&v(&["sh", "-c", "crun run --bundle b id"])));
        assert!(!mentions_container_engine(&v(&["sh", "-c", "echo dockerfile"])));
    }
}
