//! The seccomp filter capprof installs itself before a plain command's exec (`verify
//! --seccomp FILE -- CMD`): the profile's allow list and errno rules (the calls answered
//! ENOSYS) compiled to classic BPF, every other call answered with EPERM (the profile's
//! `defaultErrnoRet`), as libseccomp would compile it for runc. Installed like runc without no-new-privileges: before the capabilities are dropped,
//! so those calls (prctl, capget, capset) and the exec pass through it too.

use std::collections::BTreeMap;

use super::oci::Answer;
use super::{Arch, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JA: u16 = 0x05;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `struct seccomp_data`: nr, then arch.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// The kernel's limit on a filter's length (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// A compiled filter, ready to install between fork and exec.
#[derive(Clone, Debug)]
pub struct Program {
    insns: Vec<SockFilter>,
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

impl Program {
    /// Answers each call of `answers` (numbers per table) as it says, refuses everything else
    /// with `errno`; a table not in `answers` gets the errno for every call.
    pub fn compile(answers: &[(Arch, BTreeMap<u32, Answer>)], errno: u32) -> Result<Self, String> {
        let refuse = stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (errno & 0xffff));
        let ret = |a: &Answer| match a {
            Answer::Allow => stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
            Answer::Errno(e) => stmt(BPF_RET_K, SECCOMP_RET_ERRNO | (e & 0xffff)),
        };
        let chain = |numbers: &BTreeMap<u32, Answer>, offset: u32| -> Vec<SockFilter> {
            // `jeq nr; ret answer` pairs: every jump is short whatever the list's length.
            let mut v: Vec<SockFilter> = numbers.iter().flat_map(|(nr, a)| [jump(BPF_JEQ_K, nr | offset, 0, 1), ret(a)]).collect();
            v.push(refuse);
            v
        };
        let set = |arch: Arch| answers.iter().find(|(a, _)| *a == arch).map(|(_, s)| s.clone()).unwrap_or_default();
        // x86_64 and x32 share AUDIT_ARCH_X86_64; x32 numbers carry the x32 bit.
        let native = chain(&set(Arch::X86_64), 0);
        let x32 = chain(&set(Arch::X32), X32_SYSCALL_BIT);
        let i386 = chain(&set(Arch::I386), 0);
        let mut x86_64 = vec![stmt(BPF_LD_W_ABS, DATA_NR), jump(BPF_JGE_K, X32_SYSCALL_BIT, 1, 0), stmt(BPF_JA, x32.len() as u32)];
        x86_64.extend(x32);
        x86_64.extend(native);
        let mut insns = vec![stmt(BPF_LD_W_ABS, DATA_ARCH), jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0), stmt(BPF_JA, x86_64.len() as u32)];
        insns.extend(x86_64);
        insns.push(stmt(BPF_LD_W_ABS, DATA_ARCH));
        insns.push(jump(BPF_JEQ_K, AUDIT_ARCH_I386, 1, 0));
        insns.push(stmt(BPF_JA, i386.len() as u32 + 1));
        insns.push(stmt(BPF_LD_W_ABS, DATA_NR));
        insns.extend(i386);
        insns.push(refuse);
        if insns.len() > MAX_INSNS {
            return Err(format!("the profile compiles to {} BPF instructions, more than the kernel's {MAX_INSNS}", insns.len()));
        }
        Ok(Self { insns })
    }

    /// Installs the filter on the calling thread. Between fork and exec: raw system calls only.
    pub fn install(&self) -> std::io::Result<()> {
        let prog = SockFprog { len: self.insns.len() as u16, filter: self.insns.as_ptr() };
        // SAFETY: a valid sock_fprog whose instructions outlive the call.
        let rc = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog as *const SockFprog) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// What the filter answers for call `nr` of `arch` (a BPF interpreter for the tests: the
    /// kernel runs the real thing).
    pub fn verdict(&self, arch: u32, nr: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        while let Some(i) = self.insns.get(pc) {
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => acc = if i.k == DATA_ARCH { arch } else { nr },
                BPF_JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                BPF_JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
                BPF_JA => pc += i.k as usize,
                BPF_RET_K => return i.k,
                _ => return 0,
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(numbers: impl IntoIterator<Item = u32>) -> BTreeMap<u32, Answer> {
        numbers.into_iter().map(|n| (n, Answer::Allow)).collect()
    }

    #[test]
    fn the_allow_list_is_what_the_filter_allows() {
        let many: BTreeMap<u32, Answer> = allow((0..400).step_by(2));
        let mut native = many.clone();
        native.insert(435, Answer::Errno(38));
        let p = Program::compile(&[(Arch::X86_64, native), (Arch::I386, allow([11u32]))], 1).unwrap();
        for nr in 0..420 {
            let want = if many.contains_key(&nr) { SECCOMP_RET_ALLOW } else { SECCOMP_RET_ERRNO | 1 };
            assert_eq!(p.verdict(AUDIT_ARCH_X86_64, nr), want, "x86_64 {nr}");
        }
        assert_eq!(p.verdict(AUDIT_ARCH_X86_64, 435), SECCOMP_RET_ERRNO | 38, "clone3 answered ENOSYS");
        assert_eq!(p.verdict(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 2), SECCOMP_RET_ERRNO | 1, "x32 not allowed");
        assert_eq!(p.verdict(AUDIT_ARCH_I386, 11), SECCOMP_RET_ALLOW);
        assert_eq!(p.verdict(AUDIT_ARCH_I386, 12), SECCOMP_RET_ERRNO | 1);
        assert_eq!(p.verdict(0xdead, 0), SECCOMP_RET_ERRNO | 1, "an unknown architecture");
        let x32 = Program::compile(&[(Arch::X32, allow([0u32]))], 1).unwrap();
        assert_eq!(x32.verdict(AUDIT_ARCH_X86_64, X32_SYSCALL_BIT), SECCOMP_RET_ALLOW);
        assert_eq!(x32.verdict(AUDIT_ARCH_X86_64, 0), SECCOMP_RET_ERRNO | 1);
    }

    #[test]
    fn a_filter_longer_than_the_kernel_takes_is_refused() {
        let all = allow(0..1024);
        let e = Program::compile(&[(Arch::X86_64, all.clone()), (Arch::X32, all.clone()), (Arch::I386, all)], 1).unwrap_err();
        assert!(e.contains("4096"), "{e}");
    }
}
