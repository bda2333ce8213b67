//! Network operations a workload performs that need a capability on some runtimes only
//! (ports below 1024, ICMP "ping" sockets). Seen by cgroup socket programs on the unified
//! hierarchy's root where the kernel allows them (they run on `bind` and inet socket creation
//! only), else at the system calls' tracepoints: any syscall tracepoint with a program sends
//! every system call on the host down the kernel's tracing path, which costs a busy server
//! ~1 % per ~100 ns of its per-request system calls (BENCHMARKS.md).

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, bpf_probe_read_user, generated::bpf_get_current_task_btf},
    macros::{cgroup_sock, cgroup_sock_addr, tracepoint},
    programs::{SockAddrContext, SockContext, TracePointContext},
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

/// The address first, as in `bind4`: only an inet bind of a low port asks whose task binds.
fn on_bind(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let addr: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    let head: [u8; 4] = unsafe { bpf_probe_read_user(addr as *const [u8; 4])? };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    if (family == AF_INET || family == AF_INET6) && low_port(port) && by_workload() {
        note(net_use::LOW_PORT_BIND, port as u32);
    }
    Ok(())
}

/// bind(2) of an inet socket by a task of the cgroup subtree (cgroup/bind4): before the
/// kernel's port check, so a refused bind is seen too. Always allows the bind.
#[cgroup_sock_addr(bind4)]
pub fn bind4(ctx: SockAddrContext) -> i32 {
    on_cgroup_bind(&ctx);
    1
}

/// As [`bind4`], for inet6 sockets (cgroup/bind6).
#[cgroup_sock_addr(bind6)]
pub fn bind6(ctx: SockAddrContext) -> i32 {
    on_cgroup_bind(&ctx);
    1
}

/// The port first: every bind on the host runs this, and only a low port asks whose task binds.
#[inline(always)]
fn on_cgroup_bind(ctx: &SockAddrContext) {
    // SAFETY: the kernel's context; `user_port` is a 4-byte field the verifier rewrites to
    // the address being bound, the port in network order in its low 16 bits.
    let port = u16::from_be(unsafe { (*ctx.sock_addr).user_port } as u16);
    if low_port(port) && by_workload() {
        note(net_use::LOW_PORT_BIND, port as u32);
    }
}

#[inline(always)]
fn low_port(port: u16) -> bool {
    port != 0 && port < 1024
}

/// Whether the current task is a workload task past its set-up.
#[inline(always)]
fn by_workload() -> bool {
    let Some(cfg) = crate::maps::config() else { return false };
    workload_origin(cfg, unsafe { bpf_get_current_task_btf() }).is_some_and(|o| o.phase == capprof_common::PHASE_WORKLOAD)
}

/// socket(family, type, protocol): a workload task opening an ICMP datagram socket.
#[tracepoint(category = "syscalls", name = "sys_enter_socket")]
pub fn sys_enter_socket(ctx: TracePointContext) -> u32 {
    let _ = on_socket(&ctx);
    0
}

fn on_socket(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let family: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let kind: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    // SAFETY: an offset inside the tracepoint's record, checked against its format when attached.
    let protocol: u64 = unsafe { ctx.read_at(SYSCALL_ARG2)? };
    // The arguments first, as in `sock_create`.
    if ping_socket(family, kind & 0xf, protocol) && by_workload() {
        note(net_use::PING_SOCKET, 0);
    }
    Ok(())
}

/// An inet socket created by a task of the cgroup subtree (cgroup/sock_create). The kernel
/// runs it after the protocol's own set-up, so a ping socket the group range refuses is not
/// seen: the program then falls back to a raw socket, whose CAP_NET_RAW check is. Always
/// allows the socket.
///
/// The socket's kind is tested first: every inet socket on the host (a load generator's
/// reconnects, a resolver's queries) runs this, and only a ping socket asks whose task it is.
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the kernel's context, 4-byte fields the verifier rewrites to the socket's.
    let (family, kind, protocol) = unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    if ping_socket(family as u64, kind as u64, protocol as u64) && by_workload() {
        note(net_use::PING_SOCKET, 0);
    }
    1
}

/// An ICMP (or ICMPv6) datagram socket: the unprivileged "ping" socket.
#[inline(always)]
fn ping_socket(family: u64, kind: u64, protocol: u64) -> bool {
    const SOCK_DGRAM: u64 = 2;
    const IPPROTO_ICMP: u64 = 1;
    const IPPROTO_ICMPV6: u64 = 58;
    let icmp = (family == AF_INET as u64 && protocol == IPPROTO_ICMP) || (family == AF_INET6 as u64 && protocol == IPPROTO_ICMPV6);
    icmp && kind == SOCK_DGRAM
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
