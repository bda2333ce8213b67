//! The faces: what users run, each a thin module over the [`crate::session`] API.
//!
//! - [`record`]: a command (with `--prove` to settle what the trace cannot decide), or a
//!   running container or cgroup;
//! - [`verify`]: a command under exactly a given set; [`minimize`]: the smallest set that works;
//! - [`daemon`]: every container on the node, continuously, with its API and clients;
//! - [`merge`]: profiles from several nodes; [`cluster`]: the cluster-wide profile from the
//!   nodes' series in Prometheus (`export --prometheus`); [`check`]: a profile against deployment files (the
//!   CI gate); [`inspect`]: `decode` and `caps`.
//!
//! `record`, `verify` and `minimize` take a systemd unit (`--unit`) as well as a command.
//!
//! No stage imports a face; a face imports stages and the session, never another face.

pub mod check;
pub mod cluster;
pub mod daemon;
pub mod inspect;
pub mod merge;
pub mod minimize;
pub mod record;
pub mod verify;

/// A command to judge by re-running it: what `verify` and `minimize` are given.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub argv: Vec<String>,
    /// A systemd unit to restart under each set instead of a command (`--unit`).
    pub unit: Option<String>,
    pub probe: Option<crate::session::trial::Probe>,
    /// Runs per trial (flaky workloads).
    pub runs: u32,
    pub format: crate::format::Format,
    pub output: Option<std::path::PathBuf>,
    pub options: crate::session::RecordOptions,
}
