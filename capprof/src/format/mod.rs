//! Output formats, each rendered from a [`Profile`] and nothing else.

mod compose;
mod docker;
mod escape;
mod human;
mod k8s;
pub mod seccomp;
mod systemd;

use crate::capability::CapSet;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::{Profile, WorkloadKind};

pub use docker::docker_flags;
pub use escape::{plain, plain_lines, shell_line, shell_word};
pub use k8s::security_context;

/// What `--format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The report for people (default).
    Human,
    /// One line per workload: `--cap-drop=ALL --cap-add=...`.
    Docker,
    /// The recorded `docker run`/`podman run` command rewritten with the minimal set.
    DockerRun,
    /// A docker compose `services:` snippet with cap_drop/cap_add per container.
    Compose,
    /// A container `securityContext` YAML snippet per workload.
    K8s,
    /// A Deployment patch for `kubectl patch --patch-file`, naming each container.
    K8sPatch,
    /// A systemd drop-in per workload: CapabilityBoundingSet=, AmbientCapabilities= for a
    /// non-root User=, NoNewPrivileges=.
    Systemd,
    /// The whole profile, machine-readable.
    Json,
    /// The OCI/Docker seccomp profile of the workload (`record --seccomp`), for
    /// `--security-opt seccomp=FILE` or the kubelet's Localhost profiles.
    Seccomp,
    /// A Security Profiles Operator `SeccompProfile` resource per workload (`record --seccomp`).
    Spo,
}

impl Format {
    /// Outputs that refer to each workload's seccomp profile file (written beside them).
    pub fn refers_to_seccomp_files(self) -> bool {
        matches!(self, Self::Docker | Self::DockerRun | Self::Compose | Self::K8s | Self::K8sPatch)
    }
}

/// Why `--format docker-run` was refused.
pub const DOCKER_RUN_NEEDS_RUN: &str = "--format docker-run needs CMD to be a `docker run` or `podman run` command (use --format docker for the flags)";

/// Renders the profile; the text ends with a newline.
pub fn render(profile: &Profile, format: Format) -> Result<String> {
    Ok(match format {
        Format::Human => human::report(profile),
        Format::Docker => profile.workloads.iter().map(|w| docker_flags(w) + "\n").collect(),
        Format::DockerRun => {
            // The container the command started carries the set; a plain command its own.
            let w = command_container(profile)?;
            let set: CapSet = w.capabilities.add.iter().copied().collect();
            let seccomp = w.seccomp.as_ref().and_then(|s| s.file.clone());
            let argv = crate::attribution::run_command::rewrite_run_with(&profile.command, Some(set), seccomp.as_deref()).ok_or_else(|| {
                Error::new(ErrorKind::Usage, DOCKER_RUN_NEEDS_RUN)
            })?;
            shell_line(&argv) + "\n"
        }
        Format::Compose => compose::services(profile)?,
        Format::K8s => {
            let docs: Vec<String> = profile.workloads.iter().map(security_context).collect::<Result<_>>()?;
            docs.join("---\n")
        }
        Format::K8sPatch => k8s::deployment_patch(profile)?,
        Format::Systemd => systemd::dropins(profile),
        Format::Seccomp => seccomp::oci(profile)?,
        Format::Spo => seccomp::spo(profile)?,
        Format::Json => {
            serde_json::to_string_pretty(profile).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering JSON: {e}")))? + "\n"
        }
    })
}

/// The workload whose set `-f docker-run` puts on the user's command: the one container the
/// command started (told by the engine: [`crate::attribution::ownership`]), never another that
/// started meanwhile; a command that started none, its own. A profile of an older capprof,
/// which did not mark it, names it by image when only one container ran that image.
fn command_container(profile: &Profile) -> Result<&crate::profile::WorkloadProfile> {
    let containers: Vec<&crate::profile::WorkloadProfile> = profile.workloads.iter().filter(|w| w.kind == WorkloadKind::Container).collect();
    if containers.is_empty() {
        return profile.workloads.first().ok_or_else(|| Error::new(ErrorKind::Internal, "profile has no workload"));
    }
    let marked: Vec<_> = containers.iter().filter(|w| w.container.as_ref().is_some_and(|c| c.started_by_command)).collect();
    let image = crate::attribution::run_command::run_image(&profile.command);
    let by_image: Vec<_> = containers.iter().filter(|w| image.is_some() && w.container.as_ref().map(|c| Some(&c.image)) == Some(image.as_ref())).collect();
    match (marked.as_slice(), by_image.as_slice()) {
        ([one], _) => Ok(one),
        ([], [one]) => Ok(one),
        _ => Err(Error::new(
            ErrorKind::Usage,
            format!(
                "--format docker-run: cannot tell which of the {} containers recorded ({}) the command started: use --format docker, or record the `docker run` alone",
                containers.len(),
                containers.iter().map(|w| plain(&w.name)).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A name usable as a Kubernetes container or compose service name (DNS-1123 label).
pub fn dns_label(name: &str) -> String {
    let mut out: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    out.truncate(63);
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "app".into()
    } else {
        out
    }
}
