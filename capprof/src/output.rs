//! Where rendered profiles go: a file with `-o`, else stderr (the workload owns stdout).

use std::io::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{docker_flags, render, Format};
use crate::profile::Profile;

pub fn emit(profile: &Profile, format: Format, output: Option<&Path>) -> Result<()> {
    let text = render(profile, format)?;
    match output {
        Some(path) => {
            std::fs::write(path, &text).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            for w in &profile.workloads {
                eprintln!("capprof: {}: {} (profile written to {})", w.name, docker_flags(w), path.display());
            }
            for line in profile.losses.warnings() {
                eprintln!("capprof: LOSS: {line}");
            }
        }
        None => {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
    Ok(())
}
