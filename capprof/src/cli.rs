//! Command line: raw clap structures first, then validated configurations for the faces.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::backend::MapSizes;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::record::{self, RecordConfig};

const AFTER_HELP: &str = "\
Exit codes: the workload's own status for `record` (128+N if it was killed by signal N);
otherwise 0 success, 64 usage (bad arguments, unknown capability names), 65 malformed input
file, 66 workload fails even with every capability, 69 unsupported kernel, 70 internal error,
74 I/O error, 77 missing privileges, 126 command not executable, 127 command not found.";

#[derive(Parser, Debug)]
#[command(name = "capprof", version, about = "Least-privilege profiler for Linux capabilities (eBPF)", after_help = AFTER_HELP)]
pub struct Args {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run CMD in a fresh cgroup and report the capabilities it needs.
    Record(RecordArgs),
    /// Decode a capability mask such as /proc/PID/status's CapEff (like `capsh --decode`).
    Decode {
        /// Hex mask, e.g. 00000000a80425fb.
        mask: String,
    },
    /// Show the capability sets a running process holds.
    Caps {
        /// Process id.
        pid: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value = "human")]
    pub format: Format,
    /// Write the output to FILE instead of stderr.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Size of the in-kernel aggregation map (distinct checks); overflow is counted and reported.
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub max_checks: u32,
    /// The command to record, after `--`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

impl RecordArgs {
    pub fn validate(self) -> Result<RecordConfig> {
        if self.max_checks < 64 {
            return Err(Error::new(ErrorKind::Usage, "--max-checks must be at least 64"));
        }
        Ok(RecordConfig {
            argv: self.command,
            format: self.format,
            output: self.output,
            sizes: MapSizes { checks: self.max_checks, ..MapSizes::default() },
        })
    }
}

/// Parses arguments and runs; returns the process exit code.
pub fn run() -> anyhow::Result<i32> {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { ErrorKind::Usage.exit_code() } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    match args.command {
        Cmd::Record(r) => Ok(record::run(&r.validate()?)?),
        Cmd::Decode { mask } => {
            print!("{}", crate::inspect::decode(&mask)?);
            Ok(0)
        }
        Cmd::Caps { pid } => {
            print!("{}", crate::inspect::caps(&pid)?);
            Ok(0)
        }
    }
}
