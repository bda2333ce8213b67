//! capprof: trace-driven least-privilege profiler for Linux capabilities.
//!
//! The data path, one module per stage, each depending only on the stages before it:
//!
//! 1. [`backend`]: the kernel programs (built from `capprof-ebpf`), one per hook, loaded,
//!    calibrated and attached; their in-kernel aggregation maps; pins that outlive a daemon.
//! 2. [`collector`]: drains the ring buffer and the maps into plain observations.
//! 3. [`attribution`]: symbols and paths, cgroup → command, container, workload identity.
//! 4. [`classify`]: the rule table: needed, conditional, optional, denied, probed, ...
//! 5. [`profile`]: the model every output is rendered from (with its [`profile::advice`]).
//! 6. [`format`] and [`output`]: the renderings, and where they are written.
//!
//! [`session`] strings the stages together: the one API every face uses (open the pipeline
//! with options, run trials of a workload in its own cgroup, build profiles). The [`faces`]
//! (`record`, `verify`, `minimize`, `daemon`, `merge`, `check`, `decode`/`caps`) are thin modules
//! over it; [`cli`] parses arguments into their configurations. [`manifest`] reads what
//! deployment files grant (compose, Kubernetes, `docker run`, systemd units), for `check`. [`kernel`] holds the kernel's own
//! interfaces (BTF, kallsyms, tracefs, cgroup v2, privileges), [`capability`] the names and
//! sets, [`seccomp`] the system call tables and seccomp profile files (`--seccomp`: the
//! syscalls each workload made, from the same run), [`error`] the error kinds and exit codes.

pub mod attribution;
pub mod backend;
pub mod capability;
pub mod classify;
pub mod cli;
pub mod collector;
pub mod error;
pub mod faces;
pub mod format;
pub mod kernel;
pub mod manifest;
pub mod output;
pub mod profile;
pub mod seccomp;
#[cfg(test)]
mod properties;
pub mod session;
