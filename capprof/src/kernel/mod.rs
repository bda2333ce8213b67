//! The running kernel's interfaces that are not BPF: tracefs, kallsyms, BTF, own privileges.

pub mod btf;
pub mod kallsyms;
pub mod privileges;
pub mod tracefs;
