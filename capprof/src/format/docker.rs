//! Docker's spelling of the minimal set: the flags (the user's own `docker run` rewritten
//! with them is [`crate::attribution::run_command`]'s).

use crate::attribution::run_command::cap_flags;
use crate::capability::CapSet;
use crate::profile::WorkloadProfile;

/// `--cap-drop=ALL` then one `--cap-add=NAME` per needed capability, sorted.
pub fn docker_flags(w: &WorkloadProfile) -> String {
    cap_flags(&w.capabilities.add.iter().copied().collect::<CapSet>()).join(" ")
}
