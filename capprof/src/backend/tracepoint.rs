//! The `capability:cap_capable` tracepoint backend (Linux >= 6.14): sees the verdict, not
//! `opts`; call sites come from calibrated stack slots instead.

use aya::programs::TracePoint;
use aya::{include_bytes_aligned, EbpfLoader};
use capprof_common::Config;

use super::{Backend, BackendInfo, MapSizes};
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{btf::Btf, tracefs};

/// The eBPF object built by build.rs.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capprof"));

/// Field offsets the program hard-codes; checked against the running kernel's format.
const EXPECTED_FIELDS: [(&str, usize); 3] = [("cred", 8), ("cap", 32), ("ret", 36)];

pub(super) fn load(sizes: MapSizes) -> Result<Backend> {
    let tracefs = tracefs::ensure_mounted()?;
    let format = tracefs::event_format(&tracefs, "capability", "cap_capable").ok_or_else(|| {
        Error::new(
            ErrorKind::UnsupportedKernel,
            format!(
                "this kernel ({}) has no capability:cap_capable tracepoint (added in Linux 6.14) and capprof has no other backend yet",
                kernel_release()
            ),
        )
    })?;
    for (name, offset) in EXPECTED_FIELDS {
        if tracefs::field(&format, name).map(|f| f.0) != Some(offset) {
            return Err(Error::new(
                ErrorKind::UnsupportedKernel,
                format!("capability:cap_capable has an unexpected layout (field {name} not at offset {offset})"),
            ));
        }
    }
    let fork = tracefs::event_format(&tracefs, "sched", "sched_process_fork")
        .and_then(|f| tracefs::field(&f, "child_pid"))
        .ok_or_else(|| Error::new(ErrorKind::UnsupportedKernel, "sched:sched_process_fork tracepoint (child_pid) not found"))?;

    // Borrowed credentials need task_struct.real_cred; without BTF they go undetected (reported).
    let real_cred_offset = Btf::from_sys_fs().ok().and_then(|b| b.member_offset("task_struct", "real_cred")).unwrap_or(0);

    // Harmless where BPF memory is memcg-accounted (5.11+); needed on older kernels.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };

    let mut ebpf = EbpfLoader::new()
        .map_max_entries("CHECKS", sizes.checks)
        .map_max_entries("WORKLOAD_TASKS", sizes.tasks)
        .load(OBJECT)
        .map_err(|e| load_error("loading the eBPF object", e))?;

    for (prog, category, name) in [
        ("sched_process_exec", "sched", "sched_process_exec"),
        ("sched_process_fork", "sched", "sched_process_fork"),
        ("sched_process_exit", "sched", "sched_process_exit"),
        ("cap_capable", "capability", "cap_capable"),
    ] {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or_else(|| Error::new(ErrorKind::Internal, format!("program {prog} missing")))?
            .try_into()
            .map_err(|e| load_error(prog, e))?;
        p.load().map_err(|e| load_error(&format!("loading {prog}"), e))?;
        p.attach(category, name).map_err(|e| load_error(&format!("attaching to {category}:{name}"), e))?;
    }

    Ok(Backend {
        ebpf,
        config: Config { real_cred_offset, fork_child_pid_offset: fork.0 as u32, ..Config::default() },
        info: BackendInfo { name: "tracepoint", sees_opts: false, classification: String::new() },
        call_sites: None,
    })
}

fn load_error(what: &str, e: impl std::error::Error) -> Error {
    // Walk the chain: the verifier log or errno is at the bottom.
    let mut msg = format!("{what}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    let kind = if msg.contains("Operation not permitted") || msg.contains("EPERM") {
        msg.push_str(" (capprof needs CAP_BPF and CAP_PERFMON, or root)");
        ErrorKind::Privileges
    } else {
        ErrorKind::UnsupportedKernel
    };
    Error::new(kind, msg)
}

pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}
