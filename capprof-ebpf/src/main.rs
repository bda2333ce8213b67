//! capprof's kernel programs. Three backends feed the same maps with the same keys:
//!
//! - `cap_capable` raw tracepoint (`capability:cap_capable`, Linux >= 6.14): arguments and
//!   verdict, no `opts`; no perf record built per check, and detaching needs no RCU grace period;
//! - fexit on `cap_capable` (BTF + trampolines): arguments, `opts` and verdict in one program;
//! - kprobe + kretprobe on `cap_capable` (any kernel with kprobes): `opts` at entry, the
//!   verdict at return, the key carried between them per thread.
//!
//! Per check (`check.rs`): scope and set-up phase (the CPU's cached answer for its last task,
//! task-local storage and the cgroup ancestry behind it: `tasks.rs`), borrowed credentials
//! and `comm` (direct loads through the BTF task pointer), opts, call site (two or three stack
//! words at calibrated distances instead of a stack walk), then one per-CPU counter. Only the
//! first sighting of a key pays for a ring-buffer event with a kernel stack.
//! `effect.rs` reads the system call's arguments for the checks whose answer they can make
//! irrelevant; `walks.rs` follows granted DAC checks of an exec to the exec that succeeds.
//! `scope.rs` answers whether a task is watched, `memory.rs` how kernel words are read;
//! `tasks.rs` tracks which tasks are the workload; `net.rs` the network uses that are free in
//! Docker's network namespaces but not elsewhere; `syscalls.rs` the system calls each
//! workload makes, for seccomp profiles (attached only with `--seccomp`).
#![no_std]
#![no_main]
// The BPF target has no atomic read-modify-write types; the intrinsic compiles to BPF's atomic add.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod check;
mod effect;
mod maps;
mod memory;
mod net;
mod scope;
mod syscalls;
mod tasks;
mod walks;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe, raw_tracepoint},
    programs::{FExitContext, ProbeContext, RawTracePointContext, RetProbeContext},
    EbpfContext,
};

use check::{begin, finish};
use maps::IN_FLIGHT;

/// Raw tracepoint: TP_PROTO(cred, target_ns, capable_ns, cap, ret). The context is the
/// `u64 args[]` that `bpf_trace_runN` keeps on the kernel stack below `cap_capable`'s frame:
/// its address starts the call-site window.
#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn cap_capable(ctx: RawTracePointContext) -> u32 {
    let cred: u64 = ctx.arg(0);
    let cap = ctx.arg::<u64>(3) as u32;
    let ret = ctx.arg::<u64>(4) as i32;
    if let Some(key) = begin(cap, cred, None, ctx.as_ptr() as u64) {
        finish(ctx.as_ptr(), key, ret);
    }
    0
}

/// The floor of any program on the raw tracepoint: does nothing. Attached only by the
/// benchmarks, in place of `cap_capable` (`CAPPROF_BENCH_FLOOR=1`) or before and after it
/// (`=around`), which report it beside every per-check figure.
#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn cap_capable_floor(_ctx: RawTracePointContext) -> u32 {
    0
}

/// fexit: (cred, target_ns, cap, opts) then the return value; the context sits in the
/// trampoline's frame, below the return addresses into `cap_capable` and its caller.
#[fexit(function = "cap_capable")]
pub fn cap_capable_exit(ctx: FExitContext) -> u32 {
    let cred: u64 = ctx.arg(0);
    let cap = ctx.arg::<u64>(2) as u32;
    let opts = ctx.arg::<u64>(3) as u32;
    let ret = ctx.arg::<u64>(4) as i32;
    if let Some(key) = begin(cap, cred, Some(opts), ctx.as_ptr() as u64) {
        finish(ctx.as_ptr(), key, ret);
    }
    0
}

/// kprobe at `cap_capable`'s entry: the stack pointer points at the return address into the
/// caller.
#[kprobe]
pub fn cap_capable_entry(ctx: ProbeContext) -> u32 {
    let (Some(cred), Some(cap), Some(opts)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(2), ctx.arg::<u64>(3)) else { return 0 };
    // SAFETY: the kprobe's own register context.
    let sp = unsafe { (*ctx.regs).rsp };
    if let Some(key) = begin(cap as u32, cred, Some(opts as u32), sp) {
        let tid = bpf_get_current_pid_tgid() as u32;
        let _ = IN_FLIGHT.insert(&tid, &key, 0);
    }
    0
}

/// kretprobe: the verdict of the check its entry saw.
#[kretprobe]
pub fn cap_capable_return(ctx: RetProbeContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    if let Some(key) = IN_FLIGHT.get_ptr(&tid) {
        // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
        let key = unsafe { *key };
        let _ = IN_FLIGHT.remove(&tid);
        finish(ctx.as_ptr(), key, ctx.ret::<u64>() as i32);
    }
    0
}

/// `*dst += v` atomically (BPF_ATOMIC add; the result is unused, so no fetch is needed).
///
/// # Safety
/// `dst` must be a valid map value pointer.
#[inline(always)]
pub unsafe fn atomic_add<T: Copy>(dst: *mut T, v: T) {
    unsafe { core::intrinsics::atomic_xadd::<T, T, { core::intrinsics::AtomicOrdering::Relaxed }>(dst, v) };
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
