//! What every backend does with one capability check, split at the verdict: `begin` (scope,
//! set-up phase, borrowed credentials, opts, call site) needs the check's arguments and a
//! stack address; `finish` needs the verdict. The tracepoint and fexit have both at once; the
//! kprobe backend carries the key from entry to return.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_buf,
        bpf_probe_read_kernel_str_bytes,
        generated::{bpf_get_current_task_btf, bpf_get_stack},
    },
};
use capprof_common::{
    clear_after_nul, counter, CheckEvent, CheckKey, Config, LastCheck, SiteRange, PENDING_MAX, CALIBRATION_WORDS, CGROUP_NAME_LEN, FLAG_BORROWED, FLAG_DENIED, FLAG_INSETID,
    FLAG_NOAUDIT, FLAG_SITE_UNKNOWN, NO_ANCHOR, OPTS_AUDIT_INT, OPTS_BITMASK, SITE_AT_ENTRY,
    SITE_NARROW_WORDS, SITE_SCAN, SITE_SCAN_WORDS, SITE_WINDOW_WORDS, STACK_DEPTH,
};

use crate::maps::{bump, config, CALIBRATION, CHECKS, EVENTS, LAST_CHECK, SITE_SCRATCH};
use crate::memory;
use crate::tasks::current_scope;

const EEXIST: i32 = 17;
const CAP_OPT_NOAUDIT: u32 = 0x2;
const CAP_OPT_INSETID: u32 = 0x4;

/// Offset of `real_cred` in `struct task_struct`, from the kernel's BTF, set at load time
/// (0: unknown). A load-time constant so the verifier can type the direct load through the
/// BTF task pointer: no probe-read helper on the per-check path.
#[no_mangle]
static REAL_CRED_OFFSET: u32 = 0;

/// Offset of `comm` in `struct task_struct`, likewise (0: unknown, the helper copies it).
/// Two direct loads instead of `bpf_get_current_comm`'s locked string copy.
#[no_mangle]
static COMM_OFFSET: u32 = 0;

/// Everything but the verdict. None: out of scope (or calibrating).
#[inline(always)]
pub fn begin(cap: u32, cred: u64, opts: Option<u32>, stack: u64) -> Option<CheckKey> {
    let cfg = config()?;
    if cfg.calibrate_tid != 0 {
        if bpf_get_current_pid_tgid() as u32 == cfg.calibrate_tid {
            calibrate(cap, stack);
        }
        return None;
    }
    // Workload tasks were marked at their exec inside the scope: one answer says both "in
    // scope?" and "set-up or workload?"; others pay for the cgroup ancestry walk. Both cached.
    let task = unsafe { bpf_get_current_task_btf() };
    let (cgroup_id, mut flags) = current_scope(cfg, task)?;
    let task = task as *const u8;
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let real_cred_offset = unsafe { core::ptr::read_volatile(&REAL_CRED_OFFSET) };
    if real_cred_offset != 0 {
        // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
        let real = unsafe { *(task.add(real_cred_offset as usize) as *const u64) };
        if real != cred {
            flags |= FLAG_BORROWED;
        }
    }
    if let Some(opts) = opts {
        let noaudit = match cfg.opts_mode {
            OPTS_BITMASK => opts & CAP_OPT_NOAUDIT != 0,
            OPTS_AUDIT_INT => opts == 0,
            _ => false,
        };
        if noaudit {
            flags |= FLAG_NOAUDIT;
        }
        if cfg.opts_mode == OPTS_BITMASK && opts & CAP_OPT_INSETID != 0 {
            flags |= FLAG_INSETID;
        }
    }
    flags |= crate::effect::flags(cap, cred, task as *mut _);
    let site = call_site(cfg, stack);
    if site == 0 {
        flags |= FLAG_SITE_UNKNOWN;
        bump(counter::SITE_UNKNOWN);
    }
    Some(CheckKey {
        cgroup_id,
        site,
        cap,
        flags,
        comm: current_comm(task),
    })
}

/// The task's name, zero-padded after its end (kernels before 6.x did not pad on rename, and
/// stale bytes would split one program into several keys).
#[inline(always)]
pub fn current_comm(task: *const u8) -> [u8; 16] {
    // SAFETY: a load-time constant the loader sets; read volatile so its default is not folded in.
    let offset = unsafe { core::ptr::read_volatile(&COMM_OFFSET) };
    if offset == 0 {
        return bpf_get_current_comm().unwrap_or([0; 16]);
    }
    // SAFETY: the BTF task pointer plus a member offset from BTF: the verifier checks the load.
    let words = unsafe { task.add(offset as usize) as *const u64 };
    let (lo, hi) = unsafe { (*words, *words.add(1)) };
    let (lo, ended) = clear_after_nul(lo);
    let hi = if ended { 0 } else { clear_after_nul(hi).0 };
    let mut comm = [0u8; 16];
    comm[..8].copy_from_slice(&lo.to_le_bytes());
    comm[8..].copy_from_slice(&hi.to_le_bytes());
    comm
}

/// Counts the check with its verdict; the first of its kind is announced with a stack.
///
/// A repeat of the CPU's last check (the same task asking the same thing from the same
/// place: the overcommit probe of every mmap, a server's accept loop) is counted in
/// `LAST_CHECK`, a compare and an add, instead of a hash lookup (BENCHMARKS.md). DAC checks
/// go to `CHECKS` at once: userspace weighs their counts against `FUTILE`'s (exec walks),
/// which must never run ahead of them.
#[inline(always)]
pub fn finish(ctx: *mut c_void, mut key: CheckKey, ret: i32) {
    if ret < 0 {
        key.flags |= FLAG_DENIED;
    }
    crate::walks::note(&key);
    let last = if key.cap != CAP_DAC_OVERRIDE && key.cap != CAP_DAC_READ_SEARCH { LAST_CHECK.get_ptr_mut(0) } else { None };
    if let Some(last) = last {
        // SAFETY: this CPU's slot, a pointer the lookup just returned (programs run with
        // migration disabled: no other writer).
        let last = unsafe { &mut *last };
        if same_key(&last.key, &key) && last.pending < PENDING_MAX {
            last.pending += 1;
            return;
        }
        flush(last);
        last.key = key;
    }
    if count(&key) {
        return;
    }
    match CHECKS.insert(&key, &1, BPF_NOEXIST as u64) {
        Ok(()) => first_sighting(ctx, &key, ret),
        // Another CPU inserted it between our lookup and insert.
        Err(e) if e == -EEXIST => {
            count(&key);
        }
        Err(_) => {
            bump(counter::CHECKS_MAP_FULL);
            // Not in the map: its repeats must each be counted lost, not held.
            if let Some(last) = last {
                // SAFETY: as above.
                unsafe { (*last).key.cgroup_id = 0 };
            }
        }
    }
}

/// Moves the repeats held for the CPU's last key into `CHECKS`. A key no longer there was
/// forgotten by userspace once its cgroup was gone, with these repeats already read.
#[inline(always)]
fn flush(last: &mut LastCheck) {
    if last.pending == 0 {
        return;
    }
    if let Some(n) = CHECKS.get_ptr_mut(&last.key) {
        // SAFETY: this CPU's slot of the entry the lookup just returned.
        unsafe { *n += last.pending };
    }
    last.pending = 0;
}

/// Field by field (five compares; no memcmp loop for the verifier).
#[inline(always)]
fn same_key(a: &CheckKey, b: &CheckKey) -> bool {
    // SAFETY: both are 40-byte repr(C) keys without padding: read as five words.
    let (a, b) = unsafe { (&*(a as *const CheckKey as *const [u64; 5]), &*(b as *const CheckKey as *const [u64; 5])) };
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4]
}

const CAP_DAC_OVERRIDE: u32 = capprof_common::cap::DAC_OVERRIDE;
const CAP_DAC_READ_SEARCH: u32 = capprof_common::cap::DAC_READ_SEARCH;

/// Adds one to an existing counter; false when the key is new.
#[inline(always)]
fn count(key: &CheckKey) -> bool {
    match CHECKS.get_ptr_mut(key) {
        Some(ptr) => {
            // This CPU's slot: programs run with migration disabled.
            // SAFETY: a pointer a map lookup just returned, valid for this run (per-CPU or per-task: no concurrent writer).
            unsafe { *ptr += 1 };
            true
        }
        None => false,
    }
}

/// The return address identifying who asked: for `security_capable` checks, the API function
/// that called it; for commoncap's direct calls (overcommit, mmap_min_addr, ...), that function.
///
/// Below `cap_capable`'s frame (raw tracepoint, fexit) the first word pointing into
/// `cap_capable` is its call into the tracing machinery, and `cap_capable`'s own frame has a
/// fixed size above that; at `cap_capable`'s entry (kprobe) the first word is already the
/// return address into the caller. Calibration found where that anchor sits, so one short
/// read from it usually answers; when the frames below have shifted (another program joined
/// the tracepoint, adding the iterator's frame) a wider window is scanned for the anchor.
#[inline(always)]
fn call_site(cfg: &Config, stack: u64) -> u64 {
    let word_type = memory::word_type();
    if word_type == 0 {
        return read_site(cfg, stack);
    }
    // Shifted frames: straight to the scan (a short read at the same anchor would miss too).
    direct_site(cfg, stack, word_type).unwrap_or_else(|| scan_site(cfg, stack))
}

/// The calibrated slots read with plain loads; None when they cannot answer: the frames have
/// shifted, no narrow layout was calibrated, or call sites are off.
#[inline(always)]
fn direct_site(cfg: &Config, stack: u64, word_type: u32) -> Option<u64> {
    let cast = memory::rdonly_cast();
    // Every load at offset 0 of its own cast: the verifier then needs no variable offsets.
    // SAFETY: bpf_rdonly_cast makes the load fault-safe (the verifier marks it untrusted).
    let word = |addr: u64| -> u64 { unsafe { *cast(addr, word_type) } };
    let caller_at = match cfg.site_mode {
        SITE_AT_ENTRY => stack,
        SITE_SCAN if cfg.anchor_words != NO_ANCHOR => {
            let anchor = stack + cfg.anchor_words as u64 * 8;
            if !within(word(anchor), cfg.cap_capable) {
                return None;
            }
            anchor + cfg.caller_words as u64 * 8
        }
        _ => return None,
    };
    let caller = word(caller_at);
    if within(caller, cfg.security_capable) {
        return Some(word(caller_at + cfg.api_words as u64 * 8));
    }
    Some(caller)
}

/// The same slots copied with `bpf_probe_read_kernel` (kernels before 6.2), falling back to
/// scanning a wide window when the frames have shifted.
#[inline(always)]
fn read_site(cfg: &Config, stack: u64) -> u64 {
    // Per-CPU scratch, not the BPF stack: no zeroing, and indexes the verifier can bound.
    let Some(window) = SITE_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: a map value pointer the lookup just above returned, valid for this run.
    let words = unsafe { &mut (*window).words };
    let from = match cfg.site_mode {
        SITE_AT_ENTRY => stack,
        SITE_SCAN if cfg.anchor_words != NO_ANCHOR => stack + cfg.anchor_words as u64 * 8,
        _ => return scan_site(cfg, stack),
    };
    // The shortest read that reaches the API caller's slot.
    let span = cfg.caller_words as usize + cfg.api_words as usize;
    let short = if span < 8 {
        short_read::<8>(cfg, from, words)
    } else if span < SITE_NARROW_WORDS {
        short_read::<SITE_NARROW_WORDS>(cfg, from, words)
    } else {
        ShortRead::Shifted
    };
    match short {
        ShortRead::Site(site) => site,
        ShortRead::Unreadable => 0,
        ShortRead::Shifted => scan_window(cfg, stack, words),
    }
}

/// What a short read at the calibrated anchor found.
enum ShortRead {
    /// The call site (0 when the slot held nothing usable).
    Site(u64),
    /// The stack could not be read: the site is unknown.
    Unreadable,
    /// The anchor is not where calibration found it (frames shifted): scan a wider window.
    Shifted,
}

/// Reads N words at the calibrated anchor.
#[inline(always)]
fn short_read<const N: usize>(cfg: &Config, from: u64, window: &mut [u64; SITE_WINDOW_WORDS]) -> ShortRead {
    // SAFETY: N <= SITE_WINDOW_WORDS (both callers), so the prefix is inside the window.
    let words = unsafe { &mut *(window.as_mut_ptr() as *mut [u64; N]) };
    if !read_words(from, words) {
        return ShortRead::Unreadable;
    }
    if cfg.site_mode == SITE_AT_ENTRY {
        return ShortRead::Site(resolve(words, 0, cfg));
    }
    if within(words[0], cfg.cap_capable) {
        return ShortRead::Site(resolve(words, cfg.caller_words as usize, cfg));
    }
    ShortRead::Shifted
}

/// The window's word at `at`, or above it the API caller's when `at` is `security_capable`.
#[inline(always)]
fn resolve<const N: usize>(words: &[u64; N], at: usize, cfg: &Config) -> u64 {
    let api = at + cfg.api_words as usize;
    if at >= N {
        return 0;
    }
    // SAFETY: the index is masked below N by `bounded`.
    let caller = unsafe { *words.as_ptr().add(bounded::<N>(at)) };
    if within(caller, cfg.security_capable) {
        if api >= N {
            return 0;
        }
        // SAFETY: the index is masked below N by `bounded`.
        return unsafe { *words.as_ptr().add(bounded::<N>(api)) };
    }
    caller
}

/// `i` masked into `0..N` in a way the compiler cannot drop after a range check: older
/// verifiers (6.1) and spilled registers lose the bounds of the check itself.
#[inline(always)]
fn bounded<const N: usize>(i: usize) -> usize {
    // SAFETY: a local read back volatile, so the mask survives optimisation (the verifier bounds the index by it).
    unsafe { core::ptr::read_volatile(&i) & (N - 1) }
}

#[inline(always)]
fn within(w: u64, r: SiteRange) -> bool {
    w >= r.start && w < r.end
}

#[inline(always)]
fn read_words<const N: usize>(from: u64, words: &mut [u64; N]) -> bool {
    // SAFETY: the same words seen as bytes, within the array.
    let bytes = unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, N * 8) };
    unsafe { bpf_probe_read_kernel_buf(from as *const u8, bytes) }.is_ok()
}

/// The slow path, when call sites are read at all.
#[inline(always)]
fn scan_site(cfg: &Config, stack: u64) -> u64 {
    if cfg.site_mode != SITE_SCAN && cfg.site_mode != SITE_AT_ENTRY {
        return 0;
    }
    let Some(window) = SITE_SCRATCH.get_ptr_mut(0) else { return 0 };
    // SAFETY: a map value pointer the lookup just above returned, valid for this run.
    scan_window(cfg, stack, unsafe { &mut (*window).words })
}

/// A wide window from `stack`, searched for the anchor.
#[inline(always)]
fn scan_window(cfg: &Config, stack: u64, words: &mut [u64; SITE_WINDOW_WORDS]) -> u64 {
    if !read_words(stack, words) {
        return 0;
    }
    let at = if cfg.site_mode == SITE_AT_ENTRY {
        0
    } else {
        let mut anchor = SITE_WINDOW_WORDS;
        for i in 0..SITE_SCAN_WORDS {
            if let Some(w) = words.get(i) {
                if within(*w, cfg.cap_capable) {
                    anchor = i;
                    break;
                }
            }
        }
        anchor + cfg.caller_words as usize
    };
    resolve(words, at, cfg)
}

const _: () = assert!(SITE_WINDOW_WORDS.is_power_of_two() && SITE_NARROW_WORDS.is_power_of_two() && SITE_NARROW_WORDS >= 8);

/// Copies the stack window of the calibrating thread's known checks for userspace.
fn calibrate(cap: u32, stack: u64) {
    let slot = match cap {
        capprof_common::cap::SYS_ADMIN => 0,
        capprof_common::cap::SETUID => 1,
        _ => return,
    };
    let Some(sample) = CALIBRATION.get_ptr_mut(slot) else { return };
    // SAFETY: a map value pointer the lookup just above returned, valid for this run.
    let dst = unsafe { &mut (*sample).words };
    let bytes = unsafe { core::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, CALIBRATION_WORDS * 8) };
    let _ = unsafe { bpf_probe_read_kernel_buf(stack as *const u8, bytes) };
}

/// Emits who made a new kind of check, with its kernel stack, built in place in the ring buffer.
#[inline(always)]
fn first_sighting(ctx: *mut c_void, key: &CheckKey, ret: i32) {
    let Some(mut entry) = EVENTS.reserve::<CheckEvent>(0) else {
        bump(counter::EVENTS_DROPPED);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points into the ring-buffer record reserved just above, large enough for a CheckEvent.
    unsafe {
        (*ev).key = *key;
        (*ev).tid = pid_tgid as u32;
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).ret = ret;
        (*ev).stack_bytes = bpf_get_stack(ctx, (*ev).stack.as_mut_ptr() as *mut _, (STACK_DEPTH * 8) as u32, 0) as i32;
        (*ev).cgroup_name[0] = 0;
        (*ev).cgroup_parent[0] = 0;
        if let Some(cfg) = config() {
            name_cgroup(cfg, &mut (*ev).cgroup_name, &mut (*ev).cgroup_parent);
        }
    }
    entry.submit(0);
}

/// current->cgroups->dfl_cgrp->kn->name, and its parent's: five reads, first sightings only.
#[inline(always)]
fn name_cgroup(cfg: &Config, name: &mut [u8; CGROUP_NAME_LEN], parent: &mut [u8; CGROUP_NAME_LEN]) {
    let [cgroups, dfl_cgrp, kn, kn_name, kn_parent] = cfg.cgroup_name_offsets;
    if cgroups == 0 {
        return;
    }
    let read = |addr: u64| -> u64 { unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0) };
    let task = unsafe { bpf_get_current_task() };
    let css = read(task + cgroups as u64);
    let cgroup = if css != 0 { read(css + dfl_cgrp as u64) } else { 0 };
    let node = if cgroup != 0 { read(cgroup + kn as u64) } else { 0 };
    if node == 0 {
        return;
    }
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(read(node + kn_name as u64) as *const u8, name) };
    let up = read(node + kn_parent as u64);
    if up != 0 {
        let _ = unsafe { bpf_probe_read_kernel_str_bytes(read(up + kn_name as u64) as *const u8, parent) };
    }
}
