//! The backends: which kernel hook feeds the maps, how to attach it, and how the program finds
//! call sites there; the network-use hooks; the links, for pinning. Auto-selection tries them
//! in order and keeps the first that attaches.

use std::path::Path;

use aya::programs::cgroup_sock::CgroupSockLinkId;
use aya::programs::cgroup_sock_addr::CgroupSockAddrLinkId;
use aya::programs::fexit::FExitLinkId;
use aya::programs::kprobe::KProbeLinkId;
use aya::programs::raw_trace_point::RawTracePointLinkId;
use aya::programs::trace_point::TracePointLinkId;
use aya::programs::{CgroupAttachMode, CgroupSock, CgroupSockAddr, FExit, KProbe, RawTracePoint, TracePoint};
use aya::Ebpf;
use capprof_common::{SITE_AT_ENTRY, SITE_SCAN};

use super::loader::load_error;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::tracefs;

/// A kernel hook on `cap_capable`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// `capability:cap_capable` (Linux >= 6.14), as a raw tracepoint: verdict, no opts.
    Tracepoint,
    /// fexit on `cap_capable` (BTF + trampolines): arguments, opts and verdict.
    Fexit,
    /// kprobe + kretprobe on `cap_capable` (CONFIG_KPROBES): opts at entry, verdict at return.
    Kprobe,
}

/// What `--backend` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// The first that works: tracepoint, then fexit, then kprobe.
    #[default]
    Auto,
    Tracepoint,
    Fexit,
    Kprobe,
}

impl BackendChoice {
    /// The backends to try, in order.
    pub fn candidates(self) -> Vec<BackendKind> {
        match self {
            // The tracepoint first where it exists: no trampoline or kprobe on the hot path,
            // and its calibrated call sites tell probes from needs like opts would.
            Self::Auto => vec![BackendKind::Tracepoint, BackendKind::Fexit, BackendKind::Kprobe],
            Self::Tracepoint => vec![BackendKind::Tracepoint],
            Self::Fexit => vec![BackendKind::Fexit],
            Self::Kprobe => vec![BackendKind::Kprobe],
        }
    }
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Tracepoint => "tracepoint",
            Self::Fexit => "fexit",
            Self::Kprobe => "kprobe",
        }
    }

    pub fn sees_opts(self) -> bool {
        self != Self::Tracepoint
    }

    /// How the program reads call sites (see `capprof_common::SITE_*`).
    pub fn site_mode(self) -> u32 {
        match self {
            Self::Kprobe => SITE_AT_ENTRY,
            Self::Tracepoint | Self::Fexit => SITE_SCAN,
        }
    }

    /// Attaches this backend's programs, with the task hooks every backend needs; returns
    /// their links (for pinning them).
    pub fn attach(self, ebpf: &mut Ebpf) -> Result<Vec<Attached>> {
        let mut links = Vec::new();
        match self {
            Self::Tracepoint => {
                let tracefs = tracefs::ensure_mounted()?;
                if tracefs::event_format(&tracefs, "capability", "cap_capable").is_none() {
                    return Err(Error::new(ErrorKind::UnsupportedKernel, "no capability:cap_capable tracepoint (added in Linux 6.14)"));
                }
                // The benchmarks' floor: an empty program alone on the tracepoint (a second
                // program adds the tracepoint iterator's frame to both), or `around` the check
                // program, attached before and after it, to time both on the same checks.
                match std::env::var("CAPPROF_BENCH_FLOOR").as_deref() {
                    Err(_) => links.push(raw_tracepoint(ebpf, "cap_capable", "cap_capable")?),
                    Ok("around") => {
                        links.push(raw_tracepoint(ebpf, "cap_capable_floor", "cap_capable")?);
                        links.push(raw_tracepoint(ebpf, "cap_capable", "cap_capable")?);
                        links.push(attach_again(ebpf, "cap_capable_floor", "cap_capable")?);
                    }
                    Ok(_) => links.push(raw_tracepoint(ebpf, "cap_capable_floor", "cap_capable")?),
                }
            }
            Self::Fexit => {
                // aya needs the kernel's BTF to find cap_capable's type: parsed only here.
                let btf = aya::Btf::from_sys_fs().map_err(|e| Error::new(ErrorKind::UnsupportedKernel, format!("kernel BTF: {e}")))?;
                let p: &mut FExit = program(ebpf, "cap_capable_exit")?;
                p.load("cap_capable", &btf).map_err(|e| load_error("loading the fexit program (BTF trampolines)", e))?;
                links.push(Attached::FExit("cap_capable_exit", p.attach().map_err(|e| load_error("attaching fexit to cap_capable", e))?));
            }
            Self::Kprobe => {
                let kprobes = Path::new("/sys/bus/event_source/devices/kprobe").exists()
                    || Path::new("/sys/kernel/tracing/kprobe_events").exists()
                    || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
                if !kprobes {
                    return Err(Error::new(ErrorKind::UnsupportedKernel, "no kprobes (CONFIG_KPROBES is not set)"));
                }
                for (prog, what) in [("cap_capable_entry", "kprobe"), ("cap_capable_return", "kretprobe")] {
                    let p: &mut KProbe = program(ebpf, prog)?;
                    p.load().map_err(|e| load_error(&format!("loading the {what}"), e))?;
                    links.push(Attached::KProbe(prog, p.attach("cap_capable", 0).map_err(|e| load_error(&format!("attaching a {what} to cap_capable"), e))?));
                }
            }
        }
        // Named apart from their tracepoints: the kernel keeps 15 bytes of a program's name,
        // and `sched_process_e` would be two of them in `bpftool prog` and the benchmarks.
        for (prog, tracepoint) in [("task_exec", "sched_process_exec"), ("task_fork", "sched_process_fork"), ("task_exit", "sched_process_exit")] {
            links.push(raw_tracepoint(ebpf, prog, tracepoint)?);
        }
        // Every move to another cgroup makes the check program's cached scope answers stale.
        links.push(raw_tracepoint(ebpf, "cgroup_attach_task", "cgroup_attach_task")?);
        links.extend(attach_exec_entries(ebpf)?);
        Ok(links)
    }
}

/// An attached program's link, by program name.
pub enum Attached {
    Raw(&'static str, RawTracePointLinkId),
    FExit(&'static str, FExitLinkId),
    KProbe(&'static str, KProbeLinkId),
    TracePoint(&'static str, TracePointLinkId),
    SockAddr(&'static str, CgroupSockAddrLinkId),
    Sock(&'static str, CgroupSockLinkId),
}

impl Attached {
    pub fn program(&self) -> &'static str {
        match self {
            Self::Raw(p, _) | Self::FExit(p, _) | Self::KProbe(p, _) | Self::TracePoint(p, _) | Self::SockAddr(p, _) | Self::Sock(p, _) => p,
        }
    }

    /// Detaches a cgroup link this process still owns: a failed attach's partners, which
    /// would otherwise count beside the fallback hooks.
    fn detach(self, ebpf: &mut Ebpf) {
        let _ = match self {
            Self::SockAddr(name, id) => program::<CgroupSockAddr>(ebpf, name).and_then(|p| p.detach(id).map_err(|e| load_error(name, e))),
            Self::Sock(name, id) => program::<CgroupSock>(ebpf, name).and_then(|p| p.detach(id).map_err(|e| load_error(name, e))),
            _ => Ok(()),
        };
    }

    /// Takes the link from the program (so dropping the object no longer detaches it) and
    /// pins it at `path`: the program then stays attached until the pin is removed.
    pub fn pin(self, ebpf: &mut Ebpf, path: &Path) -> Result<()> {
        use aya::programs::links::FdLink;
        let name = self.program();
        let pin_err = |e: &dyn std::fmt::Display| Error::new(ErrorKind::UnsupportedKernel, format!("pinning the link of {name} at {}: {e}", path.display()));
        let fd: FdLink = match self {
            Self::Raw(p, id) => program::<RawTracePoint>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?.into(),
            Self::FExit(p, id) => program::<FExit>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?.into(),
            Self::KProbe(p, id) => {
                let link = program::<KProbe>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?;
                FdLink::try_from(link).map_err(|e| pin_err(&format!("{e} (a perf-event kprobe without a BPF link cannot be pinned)")))?
            }
            Self::TracePoint(p, id) => {
                let link = program::<TracePoint>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?;
                FdLink::try_from(link).map_err(|e| pin_err(&e))?
            }
            Self::SockAddr(p, id) => {
                let link = program::<CgroupSockAddr>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?;
                FdLink::try_from(link).map_err(|e| pin_err(&e))?
            }
            Self::Sock(p, id) => {
                let link = program::<CgroupSock>(ebpf, p)?.take_link(id).map_err(|e| pin_err(&e))?;
                FdLink::try_from(link).map_err(|e| pin_err(&e))?
            }
        };
        fd.pin(path).map_err(|e| pin_err(&e))?;
        Ok(())
    }
}

/// Attaches the network-use hooks, for portable container profiles: the cgroup socket
/// programs, else (a kernel that refuses them, or `CAPPROF_NET_HOOKS=syscalls`) the system
/// calls' tracepoints. Says which: `cgroup`, or `syscalls` and why the first was not used.
/// The cgroup programs (bind4, bind6, sock_create) run on those operations only; while a
/// syscall tracepoint has a program, every system call on the host takes the kernel's
/// tracing path.
pub(super) fn attach_network_hooks(ebpf: &mut aya::Ebpf) -> Result<(Vec<Attached>, String)> {
    let why = if std::env::var("CAPPROF_NET_HOOKS").as_deref() == Ok("syscalls") {
        "CAPPROF_NET_HOOKS=syscalls".to_owned()
    } else {
        match attach_cgroup_net_hooks(ebpf) {
            Ok(links) => return Ok((links, "cgroup".into())),
            Err(e) => brief(&format!("{e:#}")),
        }
    };
    Ok((attach_syscall_net_hooks(ebpf)?, format!("syscalls ({why})")))
}

/// A refusal in one line: its first, and the verifier's verdict (the last line before its
/// statistics), not the whole log.
fn brief(msg: &str) -> String {
    let lines: Vec<&str> = msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // The error chain's tail (": Invalid argument (os error 22)") follows the log's last line.
    let verdict = lines.iter().skip(1).rev().find(|l| !l.starts_with(':') && !l.starts_with("processed ") && !l.starts_with("verification time") && !l.starts_with("stack depth"));
    let mut out = match (lines.first(), verdict) {
        (Some(first), Some(last)) if lines.len() > 1 => format!("{first} … {last}"),
        _ => msg.trim().to_owned(),
    };
    if out.len() > 400 {
        let cut = (0..=400).rev().find(|i| out.is_char_boundary(*i)).unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// aya attaches through a BPF link (Linux 5.7+), which takes no flags (the kernel refuses
/// any: EINVAL) and always runs beside other programs on the same cgroups (systemd's
/// SocketBind*, other tools): "Single" is the mode that passes none.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;

fn attach_cgroup_net_hooks(ebpf: &mut aya::Ebpf) -> Result<Vec<Attached>> {
    let root = crate::kernel::cgroup::unified_mount()?;
    let dir = std::fs::File::open(&root).map_err(|e| Error::new(ErrorKind::UnsupportedKernel, format!("opening {}: {e}", root.display())))?;
    let mut links = Vec::new();
    let attached = (|| -> Result<()> {
        for prog in ["bind4", "bind6"] {
            let p: &mut CgroupSockAddr = program(ebpf, prog)?;
            p.load().map_err(|e| load_error(&format!("loading cgroup/{prog}"), e))?;
            let id = p.attach(&dir, LINK_MODE).map_err(|e| load_error(&format!("attaching cgroup/{prog} to {}", root.display()), e))?;
            links.push(Attached::SockAddr(prog, id));
        }
        let p: &mut CgroupSock = program(ebpf, "sock_create")?;
        p.load().map_err(|e| load_error("loading cgroup/sock_create", e))?;
        let id = p.attach(&dir, LINK_MODE).map_err(|e| load_error(&format!("attaching cgroup/sock_create to {}", root.display()), e))?;
        links.push(Attached::Sock("sock_create", id));
        Ok(())
    })();
    match attached {
        Ok(()) => Ok(links),
        Err(e) => {
            for link in links {
                link.detach(ebpf);
            }
            Err(e)
        }
    }
}

/// Where each exec stands before its task can be moved (`tasks::exec_prepare`): a task a
/// runtime moves into a container during its exec stays set-up. `sched_prepare_exec` (6.10+),
/// else the execve syscall tracepoints (CAPPROF_EXEC_ENTRY=syscalls forces them). Without
/// either (no CONFIG_FTRACE_SYSCALLS), or with CAPPROF_NO_EXEC_PLACEMENT=1, such an exec
/// starts a workload task, as before.
fn attach_exec_entries(ebpf: &mut aya::Ebpf) -> Result<Vec<Attached>> {
    if std::env::var_os("CAPPROF_NO_EXEC_PLACEMENT").is_some() {
        return Ok(Vec::new());
    }
    let tracefs = tracefs::ensure_mounted()?;
    let syscalls = std::env::var("CAPPROF_EXEC_ENTRY").is_ok_and(|v| v == "syscalls");
    if !syscalls && tracefs::event_format(&tracefs, "sched", "sched_prepare_exec").is_some() {
        return Ok(vec![raw_tracepoint(ebpf, "exec_prepare", "sched_prepare_exec")?]);
    }
    let mut links = Vec::new();
    for (prog, name) in [("exec_entry", "sys_enter_execve"), ("execat_entry", "sys_enter_execveat")] {
        if tracefs::event_format(&tracefs, "syscalls", name).is_none() {
            return Ok(Vec::new());
        }
        links.push(syscall_tracepoint(ebpf, prog, name)?);
    }
    Ok(links)
}

fn attach_syscall_net_hooks(ebpf: &mut aya::Ebpf) -> Result<Vec<Attached>> {
    let mut links = Vec::new();
    let tracefs = tracefs::ensure_mounted()?;
    for (prog, name, args) in [("sys_enter_bind", "sys_enter_bind", ["fd", "umyaddr"]), ("sys_enter_socket", "sys_enter_socket", ["family", "type"])] {
        let format = tracefs::event_format(&tracefs, "syscalls", name)
            .ok_or_else(|| Error::new(ErrorKind::UnsupportedKernel, format!("syscalls:{name} tracepoint missing (CONFIG_FTRACE_SYSCALLS)")))?;
        // The program reads arguments at 16 and 24: check the kernel agrees.
        if tracefs::field(&format, args[0]).map(|f| f.0) != Some(16) || tracefs::field(&format, args[1]).map(|f| f.0) != Some(24) {
            return Err(Error::new(ErrorKind::UnsupportedKernel, format!("syscalls:{name} has an unexpected layout")));
        }
        links.push(syscall_tracepoint(ebpf, prog, name)?);
    }
    Ok(links)
}

/// Attaches the system-call hooks (raw tracepoints sys_enter, and sys_exit for the calls
/// seccomp refused).
pub(super) fn attach_syscall_hooks(ebpf: &mut aya::Ebpf) -> Result<Vec<Attached>> {
    Ok(vec![raw_tracepoint(ebpf, "sys_enter", "sys_enter")?, raw_tracepoint(ebpf, "sys_exit", "sys_exit")?])
}

pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| Error::new(ErrorKind::Internal, format!("program {name} missing from the eBPF object")))?
        .try_into()
        .map_err(|e| load_error(name, e))
}

/// Loads `prog` and attaches it to the tracepoint `syscalls:{name}`.
fn syscall_tracepoint(ebpf: &mut Ebpf, prog: &'static str, name: &str) -> Result<Attached> {
    let p: &mut TracePoint = program(ebpf, prog)?;
    p.load().map_err(|e| load_error(&format!("loading {prog}"), e))?;
    let id = p.attach("syscalls", name).map_err(|e| load_error(&format!("attaching to syscalls:{name}"), e))?;
    Ok(Attached::TracePoint(prog, id))
}

fn raw_tracepoint(ebpf: &mut Ebpf, prog: &'static str, tracepoint: &str) -> Result<Attached> {
    let p: &mut RawTracePoint = program(ebpf, prog)?;
    p.load().map_err(|e| load_error(&format!("loading {prog}"), e))?;
    attach_again(ebpf, prog, tracepoint)
}

/// One more link of a loaded program (the benchmarks' floor gets two).
fn attach_again(ebpf: &mut Ebpf, prog: &'static str, tracepoint: &str) -> Result<Attached> {
    let p: &mut RawTracePoint = program(ebpf, prog)?;
    let id = p.attach(tracepoint).map_err(|e| load_error(&format!("attaching to raw tracepoint {tracepoint}"), e))?;
    Ok(Attached::Raw(prog, id))
}

#[cfg(test)]
mod tests {
    use super::brief;

    #[test]
    fn a_refusal_is_its_first_line_and_the_verifiers_verdict() {
        let log = "loading cgroup/bind4: the BPF_PROG_LOAD syscall failed. Verifier output: 0: (b7) r1 = 0\n1: (85) call bpf_task_storage_get#156\nunknown func bpf_task_storage_get#156\nprocessed 2 insns (limit 1000000)\n: Invalid argument (os error 22)";
        assert_eq!(brief(log), "loading cgroup/bind4: the BPF_PROG_LOAD syscall failed. Verifier output: 0: (b7) r1 = 0 … unknown func bpf_task_storage_get#156");
        assert_eq!(brief("attaching: Invalid argument"), "attaching: Invalid argument");
        assert!(brief(&"x".repeat(1000)).chars().count() <= 401);
    }
}
