//! Reading kernel memory on the per-check path: one plain load through the `bpf_rdonly_cast`
//! kfunc where the kernel has it (6.2+), else a probe read.

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// BTF id of `struct pt_regs` when the kernel has the `bpf_rdonly_cast` kfunc (6.2+), else 0.
/// With it, a stack word is one plain load (the verifier turns the cast into a register move
/// and the load into a fault-safe one) instead of a `bpf_probe_read_kernel` call.
#[no_mangle]
static STACK_WORD_TYPE: u32 = 0;

/// The call the loader rewrites into `bpf_rdonly_cast` (aya has no kfunc relocations): an
/// otherwise unused helper number, patched to a kfunc call, or to a harmless helper in the
/// dead branch when the kfunc is missing.
const RDONLY_CAST_CALL: usize = capprof_common::RDONLY_CAST_CALL as usize;

/// The BTF type id the loads are cast to (0: no kfunc, probe reads).
#[inline(always)]
pub fn word_type() -> u32 {
    // SAFETY: a load-time constant; volatile so the compiler does not fold its default.
    unsafe { core::ptr::read_volatile(&STACK_WORD_TYPE) }
}

/// The (patched) `bpf_rdonly_cast` call, typed.
#[inline(always)]
pub fn rdonly_cast() -> unsafe extern "C" fn(u64, u32) -> *const u64 {
    // SAFETY: the loader rewrites every call of this helper number into the kfunc, whose
    // signature this is; without the kfunc the calls sit in branches the verifier sees are dead.
    unsafe { core::mem::transmute(RDONLY_CAST_CALL) }
}

/// One word of kernel memory at a valid address: a plain load through `bpf_rdonly_cast` where
/// the kernel has it (no helper call), else a probe read (None when it faults).
#[inline(always)]
pub fn kernel_word(addr: u64) -> Option<u64> {
    let word_type = word_type();
    if word_type != 0 {
        let cast = rdonly_cast();
        // SAFETY: the verifier turns the cast into a register move and the load into a
        // fault-safe one.
        return Some(unsafe { *cast(addr, word_type) });
    }
    // SAFETY: a probe read: a faulting address gives an error, not a fault.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.ok()
}
