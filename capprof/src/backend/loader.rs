//! Loading the eBPF object and what every backend needs from the running kernel: struct
//! offsets and `cap_capable`'s signature from BTF, the kfunc call patch.

use aya::{include_bytes_aligned, EbpfLoader};

use super::MapSizes;
use crate::error::{Error, ErrorKind, Result};
use crate::kernel::btf::Btf;

/// The eBPF object built by build.rs.
static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/capprof-ebpf"));

/// What the programs need to know about this kernel, from its BTF.
#[derive(Clone, Copy, Debug)]
pub struct KernelFacts {
    pub task_pid_offset: u32,
    /// 0 when BTF lacks it: borrowed credentials then go undetected.
    pub real_cred_offset: u32,
    /// 0 when BTF lacks it: the program then copies `comm` with the helper.
    pub comm_offset: u32,
    /// `task_struct.start_time`: the check program's per-CPU cache of the task's scope answer is
    /// keyed by it (0 when BTF lacks it, or CAPPROF_NO_SCOPE_CACHE=1: no cache).
    pub task_start_offset: u32,
    /// `task_struct.stack`: the effect test then reads the saved user registers with plain
    /// loads (0 when BTF lacks it, or CAPPROF_NO_DIRECT_REGS=1: `bpf_task_pt_regs` always).
    pub task_stack_offset: u32,
    /// BTF ids of the `bpf_rdonly_cast` kfunc and of `struct pt_regs` (Linux 6.2+): stack
    /// words are then read with plain loads.
    pub rdonly_cast: Option<(u32, u32)>,
    /// `capprof_common::OPTS_*`: the meaning of `cap_capable`'s fourth argument.
    pub opts_mode: u32,
    /// task_struct.cgroups, css_set.dfl_cgrp, cgroup.kn, kernfs_node.name, kernfs_node.parent
    /// (all 0 when BTF lacks one: cgroups are then named from userspace only).
    pub cgroup_name_offsets: [u32; 5],
    /// task_struct.cgroups, css_set.dfl_cgrp, cgroup.kn, kernfs_node.id: the check program
    /// reads the cgroup id with plain loads (all 0 when BTF lacks one: the helper then).
    pub cgroup_id_offsets: [u32; 4],
    /// For the effect test (all 0 when BTF lacks one: the test is off).
    pub cred_offsets: capprof_common::CredOffsets,
    /// `linux_binprm.filename`, for following exec walks (0: not followed).
    pub bprm_filename_offset: u32,
    /// `task_struct.thread_info.status` (x86: TS_COMPAT tells 32-bit system calls; 0: not
    /// told apart).
    pub task_status_offset: u32,
}

pub fn kernel_facts() -> Result<KernelFacts> {
    let btf = Btf::from_sys_fs()?;
    let task_pid_offset = btf
        .member_offset("task_struct", "pid")
        .ok_or_else(|| Error::new(ErrorKind::UnsupportedKernel, "kernel BTF has no task_struct.pid"))?;
    let real_cred_offset = btf.member_offset("task_struct", "real_cred").unwrap_or(0);
    let comm_offset = btf.member_offset("task_struct", "comm").unwrap_or(0);
    let task_stack_offset = btf.member_offset("task_struct", "stack").filter(|_| std::env::var_os("CAPPROF_NO_DIRECT_REGS").is_none()).unwrap_or(0);
    let task_start_offset = btf.member_offset("task_struct", "start_time").filter(|_| std::env::var_os("CAPPROF_NO_SCOPE_CACHE").is_none()).unwrap_or(0);
    // CAPPROF_NO_KFUNCS=1 takes the pre-6.2 path (probe reads) on any kernel: for tests.
    let rdonly_cast = btf.type_id(12, "bpf_rdonly_cast").zip(btf.type_id(4, "pt_regs")).filter(|_| std::env::var_os("CAPPROF_NO_KFUNCS").is_none());
    // Linux 5.1 turned `int audit` into `unsigned int opts` (RHEL 8 backported it): ask BTF,
    // not the version number.
    let opts_mode = match btf.func_params("cap_capable").and_then(|p| p.get(3).cloned()).as_deref() {
        Some("opts") => capprof_common::OPTS_BITMASK,
        Some("audit") => capprof_common::OPTS_AUDIT_INT,
        _ => capprof_common::OPTS_NONE,
    };
    // kernfs_node.parent became __parent in 6.15.
    let chain = [
        btf.member_offset("task_struct", "cgroups"),
        btf.member_offset("css_set", "dfl_cgrp"),
        btf.member_offset("cgroup", "kn"),
        btf.member_offset("kernfs_node", "name"),
        btf.member_offset("kernfs_node", "parent").or_else(|| btf.member_offset("kernfs_node", "__parent")),
    ];
    let cgroup_name_offsets = match chain {
        [Some(a), Some(b), Some(c), Some(d), Some(e)] if a != 0 => [a, b, c, d, e],
        _ => [0; 5],
    };
    let cgroup_id_offsets = match (chain[0], chain[1], chain[2], btf.member_offset("kernfs_node", "id")) {
        // CAPPROF_CGROUP_ID_HELPER=1 keeps the helper (for comparing both in tests).
        (Some(a), Some(b), Some(c), Some(d)) if a != 0 && std::env::var_os("CAPPROF_CGROUP_ID_HELPER").is_none() => [a, b, c, d],
        _ => [0; 4],
    };
    Ok(KernelFacts { task_pid_offset, real_cred_offset, comm_offset, task_start_offset, task_stack_offset, rdonly_cast, opts_mode, cgroup_name_offsets, cgroup_id_offsets,
        cred_offsets: cred_offsets(&btf),
        // Offset 0 would also mean "off": filename is never linux_binprm's first member.
        bprm_filename_offset: btf.member_offset("linux_binprm", "filename").unwrap_or(0),
        // TS_COMPAT is x86's; status is never task_struct's first word (flags is).
        task_status_offset: match (cfg!(target_arch = "x86_64"), btf.member_offset("task_struct", "thread_info"), btf.member_offset("thread_info", "status")) {
            (true, Some(a), Some(b)) => a + b,
            _ => 0,
        },
    })
}

/// `struct cred` fields the effect test loads in pairs: uid with gid, suid with sgid.
fn cred_offsets(btf: &Btf) -> capprof_common::CredOffsets {
    let at = |m: &str| btf.member_offset("cred", m);
    match (at("uid"), at("gid"), at("suid"), at("sgid"), at("cap_inheritable"), at("cap_permitted")) {
        (Some(uid), Some(gid), Some(suid), Some(sgid), Some(cap_inheritable), Some(cap_permitted))
            if uid != 0 && gid == uid + 4 && sgid == suid + 4 && std::env::var_os("CAPPROF_NO_EFFECT_TEST").is_none() =>
        {
            capprof_common::CredOffsets { uid, suid, cap_inheritable, cap_permitted }
        }
        _ => capprof_common::CredOffsets::default(),
    }
}

/// Loads every program and map of the object (nothing attached yet).
pub fn load_object(sizes: MapSizes, facts: &KernelFacts) -> Result<aya::Ebpf> {
    // Harmless where BPF memory is memcg-accounted (5.11+); needed on older kernels.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    load_without_vmlinux_btf(sizes, *facts)
}

/// Loads the object. `EbpfLoader::new()` always parses the kernel's whole BTF (~18 MiB and
/// ~50 ms here) for CO-RE relocations these programs do not use. It is created on a helper
/// thread whose private mount namespace hides /sys/kernel/btf, so the parse fails fast; the
/// workload and the rest of capprof keep the host's namespace. Where that is refused, load
/// normally.
fn load_without_vmlinux_btf(sizes: MapSizes, facts: KernelFacts) -> Result<aya::Ebpf> {
    let object = std::sync::Arc::new(patch_kfunc_calls(OBJECT, facts.rdonly_cast.map(|(func, _)| func)));
    let stack_word_type = facts.rdonly_cast.map_or(0, |(_, pt_regs)| pt_regs);
    let load = move |object: &AlignedObject| {
        EbpfLoader::new()
            .override_global("STACK_WORD_TYPE", &stack_word_type, true)
            .override_global("REAL_CRED_OFFSET", &facts.real_cred_offset, true)
            .override_global("COMM_OFFSET", &facts.comm_offset, true)
            .override_global("TASK_START_OFFSET", &facts.task_start_offset, true)
            .override_global("TASK_STACK_OFFSET", &facts.task_stack_offset, true)
            .override_global("CGROUP_ID_OFFSETS", &facts.cgroup_id_offsets, true)
            .override_global("CRED_OFFSETS", &facts.cred_offsets, true)
            .override_global("BPRM_FILENAME_OFFSET", &facts.bprm_filename_offset, true)
            .override_global("TASK_STATUS_OFFSET", &facts.task_status_offset, true)
            // TASK_ORIGINS (task-local storage) has no userspace type in aya 0.14; only the
            // programs use it.
            .allow_unsupported_maps()
            .map_max_entries("CHECKS", sizes.checks)
            .map_max_entries("WORKLOAD_TASKS", sizes.tasks)
            .map_max_entries("SYSCALLS", sizes.syscalls)
            .load(object.bytes())
            .map_err(|e| load_error("loading the eBPF object", e))
    };
    let shared = object.clone();
    std::thread::spawn(move || {
        if hide_kernel_btf_from_this_thread() {
            load(&shared)
        } else {
            Err(Error::new(ErrorKind::Internal, "retry"))
        }
    })
    .join()
    .map_err(|_| Error::new(ErrorKind::Internal, "eBPF loader thread panicked"))?
    .or_else(|e| if e.to_string() == "retry" { load(&object) } else { Err(e) })
}

/// The object with every call to `capprof_common::RDONLY_CAST_CALL` turned into a call of
/// the kfunc `func` (a BTF id in vmlinux): `src_reg` BPF_PSEUDO_KFUNC_CALL, `imm` the id. aya
/// 0.14 relocates helper and subprogram calls but not kfuncs, so the loader does it. Without
/// the kfunc the calls become `bpf_ktime_get_ns`, in a branch the verifier sees is dead.
fn patch_kfunc_calls(object: &[u8], func: Option<u32>) -> AlignedObject {
    const CALL: u8 = 0x85; // BPF_JMP | BPF_CALL
    const PSEUDO_KFUNC_CALL: u8 = 2;
    const KTIME_GET_NS: u32 = 5;
    let mut words = vec![0u64; object.len().div_ceil(8)];
    let bytes = unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, object.len()) };
    bytes.copy_from_slice(object);
    let mut pattern = [CALL, 0, 0, 0, 0, 0, 0, 0];
    pattern[4..].copy_from_slice(&capprof_common::RDONLY_CAST_CALL.to_le_bytes());
    // Instructions are 8-byte aligned in their sections, and sections in the file.
    for ins in bytes.chunks_exact_mut(8) {
        if ins == pattern {
            match func {
                Some(id) => {
                    ins[1] = PSEUDO_KFUNC_CALL << 4;
                    ins[4..].copy_from_slice(&id.to_le_bytes());
                }
                None => ins[4..].copy_from_slice(&KTIME_GET_NS.to_le_bytes()),
            }
        }
    }
    AlignedObject { words, len: object.len() }
}

/// ELF bytes with the 8-byte alignment the object parser needs.
struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    fn bytes(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.words.as_ptr() as *const u8, self.len) }
    }
}

fn hide_kernel_btf_from_this_thread() -> bool {
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            // Private first, so nothing mounted here propagates back to the host.
            && libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) == 0
            && libc::mount(c"none".as_ptr(), c"/sys/kernel/btf".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) == 0
    }
}

pub fn load_error(what: &str, e: impl std::error::Error) -> Error {
    // Walk the chain: the verifier log or errno is at the bottom.
    let mut msg = format!("{what}: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    // capprof checked its own capabilities before loading anything: a refusal now is the
    // kernel's (lockdown, or a program type it does not allow), not missing privileges.
    if msg.contains("Operation not permitted") || msg.contains("EPERM") {
        msg.push_str(" (refused by the kernel although capprof holds CAP_BPF and CAP_PERFMON: lockdown or the kernel's configuration forbids it)");
    }
    Error::new(ErrorKind::UnsupportedKernel, msg)
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Every marker call in the embedded object is rewritten, and nothing else changes.
    fn markers(bytes: &[u8]) -> usize {
        let mut pattern = [0x85, 0, 0, 0, 0, 0, 0, 0];
        pattern[4..].copy_from_slice(&capprof_common::RDONLY_CAST_CALL.to_le_bytes());
        bytes.chunks_exact(8).filter(|c| *c == pattern).count()
    }

    #[test]
    fn kfunc_marker_calls_are_rewritten() {
        let found = markers(OBJECT);
        assert!(found > 0, "the check program's stack reads use the marker call");
        let patched = patch_kfunc_calls(OBJECT, Some(4242));
        let bytes = patched.bytes();
        assert_eq!(bytes.len(), OBJECT.len());
        assert_eq!(markers(bytes), 0);
        let kfunc_calls = bytes.chunks_exact(8).filter(|c| c[0] == 0x85 && c[1] == 0x20 && c[4..] == 4242u32.to_le_bytes()).count();
        assert_eq!(kfunc_calls, found);
        let differing = OBJECT.iter().zip(bytes).filter(|(a, b)| a != b).count();
        assert!(differing <= found * 5, "only the call instructions change");
        // Without the kfunc: a valid helper (bpf_ktime_get_ns) in the dead branch.
        let fallback = patch_kfunc_calls(OBJECT, None);
        assert_eq!(markers(fallback.bytes()), 0);
        assert_eq!(bytes.as_ptr() as usize % 8, 0, "the ELF parser needs 8-byte alignment");
    }
}
