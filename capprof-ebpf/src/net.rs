//! Network operations a workload performs that need a capability on some runtimes only
//! (ports below 1024, ICMP "ping" sockets), seen at their system calls.

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_user, generated::bpf_get_current_task_btf},
    macros::tracepoint,
    programs::TracePointContext,
};
use capprof_common::{net_use, NetUseKey};

use crate::maps::NET_USES;
use crate::tasks::workload_origin;

// syscalls:sys_enter_* records: the arguments follow __syscall_nr, 8 bytes each, from 16.
const SYSCALL_ARG0: usize = 16;
const SYSCALL_ARG1: usize = 24;
const SYSCALL_ARG2: usize = 32;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// bind(fd, addr, len): a workload task binding a port below 1024.
#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    let _ = on_bind(&ctx);
    0
}

fn on_bind(ctx: &TracePointContext) -> Result<(), i32> {
    let Some(cfg) = crate::maps::config() else { return Ok(()) };
    if !workload_origin(cfg, unsafe { bpf_get_current_task_btf() }).is_some_and(|o| o.phase == capprof_common::PHASE_WORKLOAD) {
        return Ok(());
    }
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let addr: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    let head: [u8; 4] = unsafe { bpf_probe_read_user(addr as *const [u8; 4])? };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    if (family == AF_INET || family == AF_INET6) && port != 0 && port < 1024 {
        note(net_use::LOW_PORT_BIND, port as u32);
    }
    Ok(())
}

/// socket(family, type, protocol): a workload task opening an ICMP datagram socket.
#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    let _ = on_socket(&ctx);
    0
}

fn on_socket(ctx: &TracePointContext) -> Result<(), i32> {
    let Some(cfg) = crate::maps::config() else { return Ok(()) };
    if !workload_origin(cfg, unsafe { bpf_get_current_task_btf() }).is_some_and(|o| o.phase == capprof_common::PHASE_WORKLOAD) {
        return Ok(());
    }
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let family: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let kind: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let protocol: u64 = unsafe { ctx.read_at(SYSCALL_ARG2)? };
    const SOCK_DGRAM: u64 = 2;
    const IPPROTO_ICMP: u64 = 1;
    const IPPROTO_ICMPV6: u64 = 58;
    let icmp = (family == AF_INET as u64 && protocol == IPPROTO_ICMP) || (family == AF_INET6 as u64 && protocol == IPPROTO_ICMPV6);
    if icmp && kind & 0xf == SOCK_DGRAM {
        note(net_use::PING_SOCKET, 0);
    }
    Ok(())
}

#[inline(always)]
fn note(kind: u32, port: u32) {
    let key = NetUseKey { cgroup_id: unsafe { bpf_get_current_cgroup_id() }, kind, port };
    match NET_USES.get_ptr_mut(&key) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = NET_USES.insert(&key, &1, 0);
        }
    }
}
