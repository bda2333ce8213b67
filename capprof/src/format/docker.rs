//! Docker's spelling of the minimal set: the flags (the user's own `docker run` rewritten
//! with them is [`crate::attribution::run_command`]'s).

use crate::attribution::run_command::cap_flags;
use crate::capability::CapSet;
use crate::profile::WorkloadProfile;

/// `--cap-drop=ALL` then one `--cap-add=NAME` per needed capability, sorted; then the
/// seccomp profile file, when one was written.
pub fn docker_flags(w: &WorkloadProfile) -> String {
    let mut flags = cap_flags(&w.capabilities.add.iter().copied().collect::<CapSet>());
    if let Some(file) = w.seccomp.as_ref().and_then(|s| s.file.as_deref()) {
        flags.push(format!("--security-opt seccomp={}", crate::format::shell_word(file)));
    }
    flags.join(" ")
}
