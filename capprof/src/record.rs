//! `capprof record -- CMD`: run one command in a fresh cgroup under the kernel programs and
//! write its profile, one workload per container it started. The command's exit status
//! becomes capprof's.

use std::path::PathBuf;

use crate::backend::MapSizes;
use crate::error::Result;
use crate::format::Format;
use crate::output;
use crate::pipeline::Tracer;
use crate::profile::{Profile, WorkloadKind, WorkloadMeta};
use crate::trial::{Trial, TrialSpec};

/// How a recording is made (shared by record, verify and minimize).
#[derive(Clone, Copy, Debug, Default)]
pub struct RecordOptions {
    pub sizes: MapSizes,
    /// Record containers the command starts.
    pub containers: bool,
    /// Add the capabilities other runtimes would need (low ports, ping sockets) to the set.
    pub portable: bool,
    pub bpf_stats: bool,
    /// Which kernel hook to use.
    pub backend: crate::backend::BackendChoice,
}

/// Validated options of `record`.
#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub argv: Vec<String>,
    /// Record this running container instead of running `argv`.
    pub container: Option<String>,
    /// Record this running cgroup instead of running `argv`.
    pub cgroup: Option<String>,
    pub duration: Option<std::time::Duration>,
    /// Re-run to settle conditional capabilities (`record --prove`).
    pub prove: bool,
    /// For servers: record until this check passes, then stop the workload.
    pub probe: Option<crate::trial::Probe>,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub options: RecordOptions,
}

/// Records `argv`, writes the profile, returns the workload's shell-style exit status.
pub fn run(cfg: &RecordConfig) -> Result<i32> {
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stderr)?;
    if let Some(name) = &cfg.container {
        let profile = crate::attach::record_container(name, cfg.duration, &cfg.options)?;
        sink.emit(&profile, cfg.format)?;
        return Ok(0);
    }
    if let Some(path) = &cfg.cgroup {
        let profile = crate::attach::record_cgroup(path, cfg.duration, &cfg.options)?;
        sink.emit(&profile, cfg.format)?;
        return Ok(0);
    }
    if cfg.format == Format::DockerRun && crate::format::rewrite_run(&cfg.argv, crate::capability::CapSet::empty()).is_none() {
        return Err(crate::error::Error::new(crate::error::ErrorKind::Usage, crate::format::DOCKER_RUN_NEEDS_RUN));
    }
    let (profile, status) = record(&cfg.argv, &cfg.options, cfg.prove, cfg.probe.as_ref())?;
    sink.emit(&profile, cfg.format)?;
    Ok(status)
}

/// The recording itself: one unrestricted trial, then with `prove` one restricted re-run per
/// conditional capability (see [`crate::prove`]).
///
/// The status is the workload's; with a `probe`, 0 when its check passed and 1 when not.
pub fn record(argv: &[String], options: &RecordOptions, prove: bool, probe: Option<&crate::trial::Probe>) -> Result<(Profile, i32)> {
    let mut tracer = Tracer::start(options.sizes, options.backend)?;
    if options.bpf_stats {
        tracer.enable_stats()?;
    }
    let cleanup = if probe.is_some() { crate::attribution::stop::Cleanup::Remove } else { crate::attribution::stop::Cleanup::Stop };
    let spec = TrialSpec { argv: argv.to_vec(), restrict: None, probe: probe.cloned(), containers: options.containers, cleanup };
    let trial = tracer.trial(&spec)?;
    let mut profile = profile_of(&tracer, argv, &trial, options);
    report_trial_end(&trial);
    if let Some(f) = trial.failure.as_ref().filter(|_| probe.is_some()) {
        eprintln!("capprof: {f}");
    }
    if prove && trial.success {
        crate::prove::settle(&mut tracer, argv, options, probe, &mut profile)?;
    } else if prove {
        eprintln!("capprof: --prove: the recorded run did not succeed ({}): nothing to compare re-runs with, conditional capabilities stay in the set", crate::verify::outcome(&trial));
    }
    // Detach the programs before anything slow (writing files).
    drop(tracer);
    let status = match probe {
        Some(_) => i32::from(!trial.success),
        None => trial.exit.status,
    };
    Ok((profile, status))
}

/// The profile of one trial: each container it started, and the command itself unless it
/// only started containers and needed nothing of its own.
pub fn profile_of(tracer: &Tracer, argv: &[String], trial: &Trial, options: &RecordOptions) -> Profile {
    let grouped = trial.grouped();
    let mut workloads = Vec::new();
    let single = grouped.containers.len() == 1;
    for (r, mut info, share) in grouped.containers {
        // Gone before its engine could be asked: the command line still names the image.
        if info.image.is_empty() && single {
            if let Some(image) = crate::format::run_image(argv) {
                info.image = image;
            }
        }
        let name = if info.name.is_empty() { r.id.chars().take(12).collect() } else { info.name.clone() };
        let meta = WorkloadMeta {
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
    }
    let command_needs = grouped.command.checks.iter().any(|c| !c.denied && crate::classify::classify(c).0 == crate::classify::Classification::Needed);
    if workloads.is_empty() || command_needs {
        let meta = WorkloadMeta {
            name: display_command(argv),
            kind: WorkloadKind::Command,
            command: argv.to_vec(),
            cgroup: trial.cgroup.clone(),
            exit_status: Some(trial.exit.status),
            container: None,
            net_uses: grouped.command.net_uses,
            portable: options.portable,
        };
        workloads.insert(0, (meta, grouped.command.checks));
    }
    let mut profile = tracer.profile(&trial.observations, workloads);
    profile.command = argv.to_vec();
    profile.unattributed_checks = grouped.elsewhere;
    profile
}

/// Notes on stderr about how the workload ended.
pub fn report_trial_end(trial: &Trial) {
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

/// Does the command run a container engine's client (so containers should be recorded)?
pub fn mentions_container_engine(argv: &[String]) -> bool {
    argv.iter().flat_map(|a| a.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')).any(|word| {
        let base = word.rsplit('/').next().unwrap_or(word);
        matches!(base, "docker" | "podman" | "docker-compose" | "nerdctl")
    })
}

/// `sh -c 'true'` style, for report titles.
pub fn display_command(argv: &[String]) -> String {
    crate::format::shell_line(argv)
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
        assert!(!mentions_container_engine(&v(&["sh", "-c", "echo dockerfile"])));
    }

    #[test]
    fn display_quotes_what_a_shell_would_need() {
        assert_eq!(display_command(&v(&["sh", "-c", "a && b"])), "sh -c 'a && b'");
        assert_eq!(display_command(&v(&["echo", "it's"])), "echo 'it'\\''s'");
    }
}
