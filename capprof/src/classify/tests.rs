//! The rule table, row by row, on checks built by hand (no kernel, no root): each row with a
//! check it must catch and, where the same site can be a need, one it must leave needed.

use super::*;

/// A granted check of `cap` asked by `site`, with `path` (outermost first) below it.
fn check(cap: Capability, site: &str, path: &[&str]) -> Check {
    Check::for_test(cap.number(), site, path)
}

fn no_effect(mut c: Check) -> Check {
    c.no_effect = true;
    c
}

fn denied(mut c: Check) -> Check {
    c.denied = true;
    c
}

fn class(c: &Check) -> Classification {
    classify(c).0
}

#[test]
fn runtime_setup_and_runtime_processes() {
    let mut c = check(C::SYS_ADMIN, "ns_capable", &["__x64_sys_mount"]);
    c.setup = true;
    assert_eq!(class(&c), Runtime);
    let mut c = check(C::SYS_ADMIN, "ns_capable", &["__x64_sys_mount"]);
    c.comm = "runc:[2:INIT]".into();
    assert_eq!(class(&c), Runtime);
}

#[test]
fn borrowed_credentials_row_5() {
    let mut c = check(C::DAC_OVERRIDE, "generic_permission", &["ovl_permission"]);
    c.borrowed = true;
    assert_eq!(class(&c), Borrowed);
}

#[test]
fn overcommit_probe_row_4_on_every_path() {
    for path in [["__x64_sys_mmap", "security_vm_enough_memory_mm"], ["__x64_sys_clone", "dup_mmap"], ["__x64_sys_shmget", "shmem_acct_size"], ["exc_page_fault", "acct_stack_growth"]] {
        let c = check(C::SYS_ADMIN, "security_vm_enough_memory_mm", &path);
        assert_eq!(class(&c), Probed, "{path:?}");
        assert_eq!(class(&denied(c)), Probed);
    }
}

#[test]
fn noaudit_from_opts_or_from_the_api() {
    // Refused, the kernel hides or zeroes what it returns (/proc fields): the program sees it.
    let mut c = check(C::SYS_PTRACE, "ptrace_may_access", &[]);
    c.noaudit = true;
    assert_eq!(class(&c), Conditional);
    assert_eq!(class(&denied(c)), Denied);
    assert_eq!(class(&check(C::SYS_PTRACE, "ns_capable_noaudit", &[])), Conditional);
}

#[test]
fn capset_row_1() {
    let c = check(C::SETPCAP, "cap_capset", &["__x64_sys_capset", "security_capset", "cap_capset"]);
    assert_eq!(class(&no_effect(c.clone())), Probed);
    assert_eq!(class(&denied(no_effect(c.clone()))), Probed);
    // Raising inheritable beyond permitted: a need.
    assert_eq!(class(&c), Needed);
    // PR_CAPBSET_DROP (row 20) is never caught by the capset row.
    assert_eq!(class(&no_effect(check(C::SETPCAP, "cap_task_prctl", &["__x64_sys_prctl"]))), Needed);
}

#[test]
fn setuid_setgid_row_2() {
    assert_eq!(class(&no_effect(check(C::SETUID, "__sys_setuid", &["__x64_sys_setuid"]))), Probed);
    assert_eq!(class(&check(C::SETUID, "__sys_setuid", &["__x64_sys_setuid"])), Needed);
    assert_eq!(class(&no_effect(check(C::SETGID, "__sys_setgid", &["__x64_sys_setgid"]))), Probed);
    assert_eq!(class(&check(C::SETGID, "__sys_setgid", &["__x64_sys_setgid"])), Needed);
    // setresuid and setgroups ask only when they change something.
    assert_eq!(class(&check(C::SETUID, "__sys_setresuid", &["__x64_sys_setresuid"])), Needed);
    assert_eq!(class(&check(C::SETGID, "may_setgroups", &["__x64_sys_setgroups"])), Needed);
}

#[test]
fn kill_row_12() {
    let c = check(C::KILL, "kill_ok_by_cred", &["__x64_sys_kill", "check_kill_permission"]);
    // Signal 0: refused, the caller gets EPERM (`kill -0` exits 1): never a probe.
    assert_eq!(class(&no_effect(c.clone())), Conditional);
    assert_eq!(class(&denied(no_effect(c.clone()))), Denied);
    assert_eq!(class(&c), Needed);
    assert_eq!(class(&denied(c)), Denied);
}

#[test]
fn fsetid_row_11() {
    let c = check(C::FSETID, "in_group_or_capable", &["__x64_sys_fchmodat", "notify_change", "setattr_prepare"]);
    assert_eq!(class(&no_effect(c.clone())), Probed);
    // chmod g+s of a file of another group: without FSETID the bit is dropped.
    assert_eq!(class(&c), Needed);
    // A write or chown of a set-id file: without FSETID its bits go, the call succeeds.
    let mut write = check(C::FSETID, "setattr_should_drop_suidgid", &["__x64_sys_write", "file_remove_privs"]);
    write.doubtful = true;
    assert_eq!(class(&write), Conditional);
    assert_eq!(class(&denied(write)), Denied);
}

#[test]
fn setid_exec_under_no_new_privs_row_13() {
    assert_eq!(class(&check(C::SETUID, "cap_bprm_creds_from_file", &["__x64_sys_execve"])), Probed);
}

#[test]
fn epoll_wakeup_row_15() {
    assert_eq!(class(&check(C::BLOCK_SUSPEND, "do_epoll_ctl", &["__x64_sys_epoll_ctl"])), Probed);
    // The wake-lock interface is a real use.
    assert_eq!(class(&check(C::BLOCK_SUSPEND, "pm_wake_lock", &["__x64_sys_write", "wake_lock_store"])), Needed);
}

#[test]
fn trusted_xattr_listing_row_16() {
    // tmpfs asks once before listing: a trusted.* name may or may not be there.
    assert_eq!(class(&check(C::SYS_ADMIN, "simple_xattr_list", &["__x64_sys_listxattr", "listxattr", "vfs_listxattr"])), Conditional);
    // ext4 asks once per trusted.* name: without it that name vanishes from a copy.
    let per_entry = check(C::SYS_ADMIN, "ns_capable", &["__x64_sys_llistxattr", "listxattr", "vfs_listxattr", "ext4_listxattr", "ext4_xattr_list_entries", "ext4_xattr_trusted_list"]);
    assert_eq!(class(&per_entry), Needed);
    assert_eq!(class(&denied(per_entry)), Denied);
    // Setting a trusted.* attribute needs it.
    assert_eq!(class(&check(C::SYS_ADMIN, "xattr_permission", &["__x64_sys_setxattr", "vfs_setxattr"])), Needed);
}

#[test]
fn silent_fallbacks_are_optional_only_when_granted_and_stay_in_the_set() {
    for (cap, site) in [(C::NET_ADMIN, "sk_setsockopt"), (C::SYS_RESOURCE, "pipe_fcntl"), (C::SYS_RESOURCE, "do_prlimit"), (C::SYS_NICE, "set_one_prio"), (C::SYS_RESOURCE, "__set_oom_adj")] {
        let mut c = check(cap, "ns_capable", &[site]);
        // The kernel side marks SO_RCVBUFFORCE/SO_SNDBUFFORCE doubtful; other rows need no mark.
        c.doubtful = cap == C::NET_ADMIN;
        assert_eq!(class(&c), Optional, "{cap} {site}");
        assert_eq!(class(&denied(c)), Denied);
    }
}

#[test]
fn plain_checks() {
    assert_eq!(class(&check(C::CHOWN, "capable_wrt_inode_uidgid", &["__x64_sys_fchownat", "setattr_prepare"])), Needed);
    assert_eq!(class(&denied(check(C::NET_RAW, "ns_capable", &["__x64_sys_socket"]))), Denied);
}

#[test]
fn at_stop_is_apart_but_probes_stay_probes() {
    let mut c = check(C::KILL, "kill_ok_by_cred", &["__x64_sys_kill"]);
    c.at_stop = true;
    assert_eq!(class(&c), AtStop);
    assert_eq!(class(&denied(c.clone())), AtStop);
    let mut p = check(C::SYS_ADMIN, "security_vm_enough_memory_mm", &[]);
    p.at_stop = true;
    assert_eq!(class(&p), Probed);
}

#[test]
fn every_row_is_reachable() {
    // A row hidden behind an earlier one would never classify anything.
    for (i, r) in RULES.iter().enumerate() {
        let cap = r.capabilities.first().copied().unwrap_or(C::CHOWN);
        let mut c = check(cap, r.via.first().copied().unwrap_or("ns_capable"), &[]);
        match r.signal {
            Signal::Setup => c.setup = true,
            Signal::Borrowed => c.borrowed = true,
            Signal::Noaudit => c.noaudit = true,
            Signal::NoEffect => c.no_effect = true,
            Signal::Doubtful => c.doubtful = true,
            Signal::FutileExec => c.futile = 1,
            Signal::Denied => c.denied = true,
            Signal::Any | Signal::Granted => {}
        }
        assert!(std::ptr::eq(rule_for(&c), r), "row {i} ({}) is shadowed by {:?}", r.reason, rule_for(&c).reason);
    }
}

#[test]
fn refused_read_search_folds_into_a_granted_override() {
    let rs = denied(check(C::DAC_READ_SEARCH, "generic_permission", &["generic_permission"]));
    let ov = check(C::DAC_OVERRIDE, "generic_permission", &["generic_permission"]);
    let mut v: Vec<(Check, Classification, String)> = [rs, ov].into_iter().map(|c| { let (k, r) = classify(&c); (c, k, r) }).collect();
    fold_alternatives(&mut v);
    assert_eq!((v[0].1, v[1].1), (Probed, Needed));
}

fn folded(checks: Vec<Check>) -> Vec<Classification> {
    let mut v: Vec<(Check, Classification, String)> = checks.into_iter().map(|c| { let (k, r) = classify(&c); (c, k, r) }).collect();
    fold_alternatives(&mut v);
    fold_subsumed(&mut v);
    v.into_iter().map(|(_, k, _)| k).collect()
}

#[test]
fn read_search_on_the_walk_to_a_file_override_opens_is_covered() {
    let search = check(C::DAC_READ_SEARCH, "generic_permission", &["__x64_sys_openat", "may_lookup", "generic_permission"]);
    let open = check(C::DAC_OVERRIDE, "generic_permission", &["__x64_sys_openat", "may_open", "generic_permission"]);
    assert_eq!(folded(vec![search.clone(), open]), [Probed, Needed]);
    // Alone it stays: it is the narrower one.
    assert_eq!(folded(vec![search]), [Needed]);
    // open_by_handle_at needs DAC_READ_SEARCH itself: not folded.
    let handle = check(C::DAC_READ_SEARCH, "capable", &["__x64_sys_open_by_handle_at", "handle_to_path"]);
    let open = check(C::DAC_OVERRIDE, "generic_permission", &["__x64_sys_openat", "generic_permission"]);
    assert_eq!(folded(vec![handle, open]), [Needed, Needed]);
}

#[test]
fn net_raw_for_so_mark_is_covered_by_a_needed_net_admin() {
    let mark = check(C::NET_RAW, "sockopt_ns_capable", &["__x64_sys_setsockopt", "sk_setsockopt"]);
    let route = check(C::NET_ADMIN, "ns_capable", &["__x64_sys_sendmsg", "rtnetlink_rcv_msg"]);
    assert_eq!(folded(vec![mark.clone(), route]), [Probed, Needed]);
    let raw = check(C::NET_RAW, "ns_capable", &["__x64_sys_socket", "inet_create"]);
    let route = check(C::NET_ADMIN, "ns_capable", &["__x64_sys_sendmsg", "rtnetlink_rcv_msg"]);
    assert_eq!(folded(vec![mark, raw, route]), [Needed, Needed, Needed]);
}

#[test]
fn futile_path_walks_row_3() {
    let walk = check(C::DAC_READ_SEARCH, "generic_permission", &["__x64_sys_execve", "path_openat", "may_lookup", "generic_permission"]);
    let with = |count: u64, futile: u64| {
        let mut c = walk.clone();
        c.count = count;
        c.futile = futile;
        class(&c)
    };
    // Every check in an exec walk's misses: the execvp PATH walk.
    assert_eq!(with(3, 3), Probed);
    // One walk that found its program makes it a need.
    assert_eq!(with(3, 2), Needed);
    assert_eq!(with(3, 0), Needed);
    let mut refused = walk.clone();
    refused.denied = true;
    refused.futile = 1;
    assert_eq!(class(&refused), Denied);
}

#[test]
fn timestamp_touch_row_10() {
    let mut touch = check(C::FOWNER, "inode_owner_or_capable", &["__x64_sys_utimensat", "notify_change", "setattr_prepare"]);
    touch.doubtful = true;
    assert_eq!(class(&touch), Conditional);
    // Explicit times: a need.
    assert_eq!(class(&check(C::FOWNER, "inode_owner_or_capable", &["__x64_sys_utimensat", "setattr_prepare"])), Needed);
}

#[test]
fn audit_messages_row_6() {
    let c = check(C::AUDIT_WRITE, "__netlink_ns_capable", &["__x64_sys_sendto", "netlink_unicast", "audit_receive", "audit_receive_msg", "audit_netlink_ok"]);
    assert_eq!(class(&c), Conditional);
    assert_eq!(class(&denied(c)), Denied);
}

#[test]
fn fchown_of_an_open_file_is_conditional() {
    let mut c = check(C::CHOWN, "capable_wrt_inode_uidgid", &["__x64_sys_fchown", "setattr_prepare"]);
    c.doubtful = true;
    assert_eq!(class(&c), Conditional);
    assert_eq!(class(&check(C::CHOWN, "capable_wrt_inode_uidgid", &["__x64_sys_fchownat", "setattr_prepare"])), Needed);
}

#[test]
fn own_fd_directory_row_21() {
    let c = check(C::DAC_READ_SEARCH, "generic_permission", &["__x64_sys_openat", "proc_fd_permission", "generic_permission"]);
    assert_eq!(class(&no_effect(c.clone())), Probed);
    assert_eq!(class(&c), Needed);
}

#[test]
fn net_admin_for_so_mark_is_a_need_not_a_buffer_fallback() {
    // sk_setsockopt asks NET_ADMIN for SO_MARK too: without the kernel's BUFFORCE mark, a need.
    assert_eq!(class(&check(C::NET_ADMIN, "ns_capable", &["__x64_sys_setsockopt", "sk_setsockopt"])), Needed);
}

#[test]
fn systemds_set_up_child_is_runtime() {
    // systemd's forked child (named after the program) and systemd-executor apply User=, the
    // bounding set and namespaces before the service's exec.
    for comm in ["(nginx)", "(sd-executor)", "systemd-executor"] {
        let c = Check { comm: comm.into(), ..check(C::SETUID, "ns_capable_setid", &["__sys_setresuid"]) };
        assert_eq!(class(&c), Runtime, "{comm}");
    }
    let c = Check { comm: "nginx".into(), ..check(C::SETUID, "ns_capable_setid", &["__sys_setresuid"]) };
    assert_eq!(class(&c), Needed);
    let c = Check { comm: "()".into(), ..check(C::SETUID, "ns_capable_setid", &["__sys_setresuid"]) };
    assert_eq!(class(&c), Needed, "not a name systemd gives");
}
