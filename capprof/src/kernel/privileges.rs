//! What capprof itself needs to run, checked up front so the error names the missing piece.

use crate::capability::{CapSet, Capability};
use crate::error::{Error, ErrorKind, Result};

/// Fails with one line naming each missing capability when capprof cannot load and attach
/// its kernel programs and manage cgroups.
pub fn check_tracer() -> Result<()> {
    let effective = own_effective()?;
    // What loading and attaching need; the rest degrades or is asked for where it is used
    // (kallsyms addresses need SYSLOG, cgroup ids DAC_READ_SEARCH: their errors say so).
    let needed = [Capability::BPF, Capability::PERFMON];
    let missing: Vec<_> = needed.iter().filter(|c| !effective.contains(**c)).map(|c| format!("CAP_{c}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let who = if unsafe { libc::geteuid() } == 0 { "root without" } else { "not root: missing" };
    Err(Error::new(
        ErrorKind::Privileges,
        format!(
            "capprof needs to load eBPF programs, but runs as {who} {}: run it as root (sudo capprof ...)",
            missing.join(", ")
        ),
    ))
}

/// capprof's own effective set.
pub fn own_effective() -> Result<CapSet> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Error::io("reading /proc/self/status", e))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| Error::new(ErrorKind::Internal, "no CapEff line in /proc/self/status"))?;
    CapSet::from_hex(hex)
}
