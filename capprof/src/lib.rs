//! capprof: trace-driven least-privilege profiler for Linux capabilities.
//!
//! The data path, one module per stage:
//! kernel program ([`backend`], built from `capprof-ebpf`) → in-kernel aggregation maps →
//! [`collector`] → [`attribution`] → [`classify`] → [`profile`] → [`format`] / [`output`].
//! [`pipeline`] strings the stages together; [`record`] is the face that drives it around one
//! command, in a [`cgroup`] of its own, supervising the [`workload`].

pub mod advice;
pub mod attach;
pub mod attribution;
pub mod backend;
pub mod capability;
pub mod cgroup;
pub mod classify;
pub mod daemon;
pub mod cli;
pub mod collector;
pub mod error;
pub mod format;
pub mod inspect;
pub mod kernel;
pub mod merge;
pub mod minimize;
pub mod output;
pub mod pipeline;
pub mod profile;
#[cfg(test)]
mod properties;
pub mod prove;
pub mod record;
pub mod trial;
pub mod verify;
pub mod workload;
