//! capprof's kernel programs: the `cap_capable` tracepoint backend, attached as raw
//! tracepoints (no perf buffer copy per check, and detaching needs no RCU grace period).
//!
//! Per check, in order of cost: scope test (cgroup ancestry, or everything in daemon mode),
//! verdict, set-up phase (has the task exec'd inside the scope yet?), borrowed credentials,
//! call site (two return addresses read at calibrated stack offsets: ~2 probe reads instead of a
//! stack walk), then one counter increment in `CHECKS`. Only the first sighting of a key pays for
//! a ring-buffer event with a kernel stack, for the report's "path".
//!
//! `sched_process_exec/fork/exit` maintain `WORKLOAD_TASKS`: the tasks that exec'd inside the
//! scope and their descendants. Checks from tasks not in it are runtime set-up (runc init,
//! capprof's own child before exec) and are flagged, not dropped, so the report can show them.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf, bpf_probe_read_user,
        generated::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_task_btf, bpf_get_stack},
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use capprof_common::{
    counter, net_use, CalibrationSample, NetUseKey, TaskOrigin, CheckEvent, CheckKey, Config, SiteWindow, CALIBRATION_WORDS,
    FLAG_BORROWED, FLAG_DENIED, FLAG_SETUP, FLAG_SITE_UNKNOWN, MAX_CGROUP_LEVELS,
    SITE_SCAN_WORDS, SITE_WINDOW_WORDS, STACK_DEPTH,
};

// Raw tracepoint arguments of cap_capable: TP_PROTO(cred, target_ns, capable_ns, cap, ret).
const ARG_CRED: usize = 0;
const ARG_CAP: usize = 3;
const ARG_RET: usize = 4;
const EEXIST: i32 = 17;

/// Offset of `real_cred` in `struct task_struct`, from the kernel's BTF, set at load time
/// (0: unknown). A load-time constant so the verifier can type the direct load through the
/// BTF task pointer: no probe-read helper on the per-check path.
#[no_mangle]
static REAL_CRED_OFFSET: u32 = 0;

/// Counters per distinct check, one slot per CPU (no atomics, no shared cache line).
#[map]
static CHECKS: PerCpuHashMap<CheckKey, u64> = PerCpuHashMap::with_max_entries(16384, 0);

/// cgroup v2 ids whose subtrees are recorded.
#[map]
static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// Thread ids that belong to the workload (exec'd in scope, or forked from such a task), with
/// the cgroup they exec'd in.
#[map]
static WORKLOAD_TASKS: HashMap<u32, TaskOrigin> = HashMap::with_max_entries(32768, 0);

/// First sightings of each key.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Losses and totals, see `capprof_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Run-time configuration, entry 0.
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Network operations that need no capability check in Docker's network namespaces but do
/// elsewhere (see `capprof_common::net_use`).
#[map]
static NET_USES: HashMap<NetUseKey, u64> = HashMap::with_max_entries(4096, 0);

/// Scratch space for the call-site window, one per CPU.
#[map]
static SITE_SCRATCH: PerCpuArray<SiteWindow> = PerCpuArray::with_max_entries(1, 0);

/// Calibration samples: entry 0 the latest check of the calibrating thread per capability slot
/// (0: CAP_SYS_ADMIN, the overcommit probe; 1: CAP_SETUID, a `security_capable` check).
#[map]
static CALIBRATION: Array<CalibrationSample> = Array::with_max_entries(2, 0);

#[raw_tracepoint(tracepoint = "cap_capable")]
pub fn cap_capable(ctx: RawTracePointContext) -> u32 {
    let _ = on_check(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(_ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if in_scope(cfg) {
        let tid = bpf_get_current_pid_tgid() as u32;
        let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
        // The cgroup's level: the ancestor level at which the current cgroup itself appears.
        let mut level = 0;
        for l in 1..=MAX_CGROUP_LEVELS {
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(l as i32) };
            if id == cgroup_id {
                level = l;
                break;
            }
            if id == 0 {
                break;
            }
        }
        mark_workload(tid, &TaskOrigin { cgroup_id, level, reserved: 0 });
    }
    0
}

/// TP_PROTO(struct task_struct *parent, struct task_struct *child): the child's pid is read
/// at the `task_struct.pid` offset userspace found in the kernel's BTF.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let parent = bpf_get_current_pid_tgid() as u32;
    if let Some(origin) = WORKLOAD_TASKS.get_ptr(&parent) {
        let origin = unsafe { *origin };
        let child: u64 = ctx.arg(1);
        let at = (child + cfg.task_pid_offset as u64) as *const u32;
        if let Ok(pid) = unsafe { bpf_probe_read_kernel(at) } {
            mark_workload(pid, &origin);
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit(_ctx: RawTracePointContext) -> u32 {
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = WORKLOAD_TASKS.remove(&tid);
    0
}

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
    let tid = bpf_get_current_pid_tgid() as u32;
    if WORKLOAD_TASKS.get_ptr(&tid).is_none() {
        return Ok(());
    }
    let addr: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    let head: [u8; 4] = unsafe { bpf_probe_read_user(addr as *const [u8; 4])? };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    let port = u16::from_be_bytes([head[2], head[3]]);
    if (family == AF_INET || family == AF_INET6) && port != 0 && port < 1024 {
        note_net_use(net_use::LOW_PORT_BIND, port as u32);
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
    let tid = bpf_get_current_pid_tgid() as u32;
    if WORKLOAD_TASKS.get_ptr(&tid).is_none() {
        return Ok(());
    }
    let family: u64 = unsafe { ctx.read_at(SYSCALL_ARG0)? };
    let kind: u64 = unsafe { ctx.read_at(SYSCALL_ARG1)? };
    let protocol: u64 = unsafe { ctx.read_at(SYSCALL_ARG2)? };
    const SOCK_DGRAM: u64 = 2;
    const IPPROTO_ICMP: u64 = 1;
    const IPPROTO_ICMPV6: u64 = 58;
    let icmp = (family == AF_INET as u64 && protocol == IPPROTO_ICMP) || (family == AF_INET6 as u64 && protocol == IPPROTO_ICMPV6);
    if icmp && kind & 0xf == SOCK_DGRAM {
        note_net_use(net_use::PING_SOCKET, 0);
    }
    Ok(())
}

#[inline(always)]
fn note_net_use(kind: u32, port: u32) {
    let key = NetUseKey { cgroup_id: unsafe { bpf_get_current_cgroup_id() }, kind, port };
    match NET_USES.get_ptr_mut(&key) {
        Some(n) => unsafe { *n += 1 },
        None => {
            let _ = NET_USES.insert(&key, &1, 0);
        }
    }
}

#[inline(always)]
fn config() -> Option<&'static Config> {
    CONFIG.get(0)
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other writer.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn mark_workload(tid: u32, origin: &TaskOrigin) {
    if WORKLOAD_TASKS.insert(&tid, origin, 0).is_err() {
        bump(counter::TASKS_MAP_FULL);
    }
}

/// Is the current task in a watched cgroup or one of its descendants?
#[inline(always)]
fn in_scope(cfg: &Config) -> bool {
    if cfg.watch_all != 0 {
        return true;
    }
    // Shallow levels first: recorded cgroups sit one or two levels below the root.
    for level in 1..=MAX_CGROUP_LEVELS {
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            return false;
        }
        if WATCHED.get_ptr(&id).is_some() {
            return true;
        }
    }
    false
}

fn on_check(ctx: &RawTracePointContext) -> Result<(), i32> {
    let cfg = config().ok_or(0)?;
    let tid = bpf_get_current_pid_tgid() as u32;
    if cfg.calibrate_tid != 0 {
        if tid == cfg.calibrate_tid {
            calibrate(ctx)?;
        }
        return Ok(());
    }
    // Workload tasks were marked at their exec inside the scope: one lookup answers both
    // "in scope?" and "set-up or workload?". Others pay for the cgroup ancestry walk.
    let mut flags = 0u32;
    match WORKLOAD_TASKS.get_ptr(&tid) {
        Some(origin) => {
            let origin = unsafe { *origin };
            // Still inside the cgroup it exec'd in? (Moved since: a runtime's helper.)
            let here = unsafe { bpf_get_current_ancestor_cgroup_id(origin.level as i32) };
            if origin.level == 0 || here != origin.cgroup_id {
                flags |= FLAG_SETUP;
            }
        }
        None => {
            if !in_scope(cfg) {
                return Ok(());
            }
            flags |= FLAG_SETUP;
        }
    }

    let cap = ctx.arg::<u64>(ARG_CAP) as i32;
    let ret = ctx.arg::<u64>(ARG_RET) as i32;
    let cred: u64 = ctx.arg(ARG_CRED);
    if ret < 0 {
        flags |= FLAG_DENIED;
    }
    let real_cred_offset = unsafe { core::ptr::read_volatile(&REAL_CRED_OFFSET) };
    if real_cred_offset != 0 {
        let task = unsafe { bpf_get_current_task_btf() } as *const u8;
        let real = unsafe { *(task.add(real_cred_offset as usize) as *const u64) };
        if real != cred {
            flags |= FLAG_BORROWED;
        }
    }
    let site = call_site(ctx, cfg);
    if site == 0 {
        flags |= FLAG_SITE_UNKNOWN;
        bump(counter::SITE_UNKNOWN);
    }

    let key = CheckKey {
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        site,
        cap: cap as u32,
        flags,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    if count(&key) {
        return Ok(());
    }
    match CHECKS.insert(&key, &1, BPF_NOEXIST as u64) {
        Ok(()) => first_sighting(ctx, &key, ret),
        // Another CPU inserted it between our lookup and insert.
        Err(e) if e == -EEXIST => {
            count(&key);
        }
        Err(_) => bump(counter::CHECKS_MAP_FULL),
    }
    Ok(())
}

/// Adds one to an existing counter; false when the key is new.
#[inline(always)]
fn count(key: &CheckKey) -> bool {
    match CHECKS.get_ptr_mut(key) {
        Some(ptr) => {
            // This CPU's slot: tracepoint programs run with migration disabled.
            unsafe { *ptr += 1 };
            true
        }
        None => false,
    }
}

/// The return address identifying who asked: for `security_capable` checks, the API function
/// that called it; for commoncap's direct calls (overcommit, mmap_min_addr, ...), that function.
///
/// One read copies a window of stack words above the argument array. The first word pointing
/// into `cap_capable` is its call into the tracepoint machinery (one frame more when several
/// programs share the tracepoint); `cap_capable`'s own frame has a fixed size above that.
#[inline(always)]
fn call_site(ctx: &RawTracePointContext, cfg: &Config) -> u64 {
    if cfg.caller_words == 0 {
        return 0;
    }
    let Some(window) = SITE_SCRATCH.get_ptr_mut(0) else { return 0 };
    let words = unsafe { &mut (*window).words };
    let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, SITE_WINDOW_WORDS * 8) };
    if unsafe { bpf_probe_read_kernel_buf(stack_anchor(ctx) as *const u8, bytes) }.is_err() {
        return 0;
    }
    let within = |w: u64, r: capprof_common::SiteRange| w >= r.start && w < r.end;
    let mut anchor = SITE_WINDOW_WORDS;
    for i in 0..SITE_SCAN_WORDS {
        if let Some(w) = words.get(i) {
            if within(*w, cfg.cap_capable) {
                anchor = i;
                break;
            }
        }
    }
    let at = anchor + cfg.caller_words as usize;
    let Some(&caller) = words.get(at) else { return 0 };
    if within(caller, cfg.security_capable) {
        return words.get(at + cfg.api_words as usize).copied().unwrap_or(0);
    }
    caller
}

/// The raw tracepoint's context is the `u64 args[]` array that `bpf_trace_runN` keeps on the
/// kernel stack, a fixed distance below `cap_capable`'s return address: its address anchors
/// the calibrated offsets.
#[inline(always)]
fn stack_anchor(ctx: &RawTracePointContext) -> u64 {
    ctx.as_ptr() as u64
}

fn calibrate(ctx: &RawTracePointContext) -> Result<(), i32> {
    let cap = ctx.arg::<u64>(ARG_CAP) as i32;
    let slot = match cap {
        21 => 0, // CAP_SYS_ADMIN
        7 => 1,  // CAP_SETUID
        _ => return Ok(()),
    };
    let sp = stack_anchor(ctx);
    let sample = CALIBRATION.get_ptr_mut(slot).ok_or(0)?;
    let dst = unsafe { &mut (*sample).words };
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, CALIBRATION_WORDS * 8)
    };
    unsafe { bpf_probe_read_kernel_buf(sp as *const u8, bytes) }
}

/// Emits who made a new kind of check, with its kernel stack, built in place in the ring buffer.
#[inline(always)]
fn first_sighting(ctx: &RawTracePointContext, key: &CheckKey, ret: i32) {
    let Some(mut entry) = EVENTS.reserve::<CheckEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    unsafe {
        (*ev).key = *key;
        (*ev).tid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).ret = ret;
        (*ev).stack_bytes = bpf_get_stack(
            ctx.as_ptr(),
            (*ev).stack.as_mut_ptr() as *mut _,
            (STACK_DEPTH * 8) as u32,
            0,
        ) as i32;
    }
    entry.submit(0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
