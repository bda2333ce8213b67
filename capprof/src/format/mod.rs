//! Output formats, each rendered from a [`Profile`] and nothing else.

mod docker;
mod human;
mod k8s;

use crate::error::{Error, ErrorKind, Result};
use crate::profile::Profile;

pub use docker::docker_flags;
pub use k8s::security_context;

/// What `--format` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The report for people (default).
    Human,
    /// One line: `--cap-drop=ALL --cap-add=...`.
    Docker,
    /// A container `securityContext` YAML snippet.
    K8s,
    /// The whole profile, machine-readable.
    Json,
}

/// Renders the profile; the text ends with a newline.
pub fn render(profile: &Profile, format: Format) -> Result<String> {
    Ok(match format {
        Format::Human => human::report(profile),
        Format::Docker => profile.workloads.iter().map(|w| docker_flags(w) + "\n").collect(),
        Format::K8s => {
            let docs: Vec<String> = profile.workloads.iter().map(security_context).collect::<Result<_>>()?;
            docs.join("---\n")
        }
        Format::Json => {
            serde_json::to_string_pretty(profile).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering JSON: {e}")))? + "\n"
        }
    })
}
