//! Docker's command-line spelling of the minimal set.

use crate::profile::WorkloadProfile;

/// `--cap-drop=ALL` then one `--cap-add=NAME` per needed capability, sorted.
pub fn docker_flags(w: &WorkloadProfile) -> String {
    let mut line = String::from("--cap-drop=ALL");
    for cap in &w.capabilities.add {
        line.push_str(" --cap-add=");
        line.push_str(cap.name());
    }
    line
}
