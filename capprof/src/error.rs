//! Library errors: a kind (what went wrong, and so which exit code) plus a one-line message.
//!
//! The CLI prints `capprof: error: {:#}` and exits with [`ErrorKind::exit_code`]. The codes are
//! documented in README.md ("Exit codes"); changing one is a breaking change.

use std::fmt;

/// What kind of failure, chosen by what the user can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad arguments: unknown capability names, malformed masks, conflicting options.
    Usage,
    /// A file capprof was asked to read is malformed (JSON profile, ...).
    MalformedInput,
    /// capprof lacks privileges (root, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN).
    Privileges,
    /// The kernel lacks what capprof needs (tracepoint, BPF program type, cgroup v2).
    UnsupportedKernel,
    /// The workload's program was not found.
    Spawn,
    /// The workload's program exists but could not be executed.
    NotExecutable,
    /// A workload failed even with every capability (`verify`/`minimize`).
    WorkloadFailed,
    /// Something outside the workload already answers its `--ready`/`--check`: a run could
    /// prove nothing (`verify`/`minimize`).
    Interference,
    /// capprof was interrupted (SIGINT, SIGTERM, SIGHUP) before a trial could be judged; what
    /// it changed (a unit's trial drop-in) was put back.
    Interrupted,
    /// Reading or writing a file or the kernel's interfaces failed.
    Io,
    /// A bug or an unexpected kernel answer.
    Internal,
}

impl ErrorKind {
    /// Exit code of the `capprof` process for this kind (sysexits.h where one fits).
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Usage => 64,
            Self::MalformedInput => 65,
            Self::WorkloadFailed => 66,
            Self::UnsupportedKernel => 69,
            Self::Interference => 75,
            Self::Interrupted => 130,
            Self::Internal => 70,
            Self::Io => 74,
            Self::Privileges => 77,
            Self::NotExecutable => 126,
            Self::Spawn => 127,
        }
    }
}

/// A capprof error: kind and message (already including its context).
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Wraps an I/O error with what capprof was doing.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::PermissionDenied => ErrorKind::Privileges,
            _ => ErrorKind::Io,
        };
        Self::new(kind, format!("{what}: {err}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of an `anyhow` chain: the first capprof [`Error`] in it, else `Internal`.
pub fn kind_of(err: &anyhow::Error) -> ErrorKind {
    err.chain()
        .find_map(|e| e.downcast_ref::<Error>())
        .map(Error::kind)
        .unwrap_or(ErrorKind::Internal)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
