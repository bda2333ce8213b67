//! `record --prove`: settles what the trace cannot decide. The command is re-run once without
//! each doubtful capability of the set, and the set confirmed once at the end: one run per
//! capability, not a whole `minimize` search. A unit (`record --unit --prove`) is restarted
//! under each set, as `verify --unit` does.
//!
//! Doubtful, in this order (see [`crate::profile::WorkloadProfile::doubtful`]): conditional and optional
//! capabilities (granted where a refusal may be tolerated), then needs the trace cannot call
//! certain: namespace creation (a server may fall back to a plain fork), checks made by a
//! helper exec'd with file capabilities (the server may tolerate its failure), file
//! permission overrides (a log file, a certificate, a spool directory a server can do
//! without). At most [`BUDGET`] re-runs; what is left untried is said, and stays in the set
//! (`minimize` is the exhaustive search).
//!
//! A re-run judged by exit status alone fails when the kernel refused, in it, what the recorded
//! run was granted and acted on (the program went on without it): only `--check` can drop such
//! a capability.

use crate::capability::{CapSet, Capability};
use crate::classify::Classification;
use crate::error::Result;
use crate::profile::{Evidence, Profile, Verification, WorkloadKind};
use crate::session::subject::Subject;
use crate::session::trial::{outcome, refused, Probe, RefusedNeeds};
use crate::session::Tracer;

/// Re-runs without a capability, at most, before the confirming run.
pub const BUDGET: usize = 8;

/// Re-runs the subject (a command, a unit) without each doubtful capability of the profile's
/// main workload and updates the profile: dropped (the run succeeded) or needed (it failed),
/// with evidence.
pub fn settle(tracer: &mut Tracer, subject: &Subject, probe: Option<&Probe>, profile: &mut Profile) -> Result<()> {
    let main = profile.workloads.iter().position(|w| w.kind == WorkloadKind::Container).unwrap_or(0);
    let Some(w) = profile.workloads.get(main) else { return Ok(()) };
    let mut doubtful = w.doubtful();
    if doubtful.is_empty() {
        eprintln!("capprof: --prove: nothing to settle (every capability in the set is a certain need)");
        return Ok(());
    }
    let untried = doubtful.split_off(doubtful.len().min(BUDGET));
    let reference: CapSet = w.capabilities.add.iter().copied().collect();
    let mut set = reference;
    let mut evidence = Vec::new();
    let mut runs = 0;
    for cap in doubtful {
        let mut without = set;
        without.remove(cap);
        let (trial, _) = subject.repeat(tracer, Some(without), None, probe, 1, RefusedNeeds::of(reference))?;
        runs += 1;
        let dropped = trial.success;
        eprintln!("capprof: --prove: without {cap}: {}", if dropped { "works: dropped".to_string() } else { format!("fails ({}): kept", outcome(&trial)) });
        let denied = refused(&trial.workload_checks()).into_iter().filter(|(c, _)| *c == cap).flat_map(|(_, lines)| lines).collect();
        evidence.push(Evidence { capability: cap, kept: !dropped, trial: crate::profile::EvidenceRun::Without(cap), outcome: outcome(&trial), denied });
        if dropped {
            set = without;
        }
        let w = &mut profile.workloads[main];
        for c in w.checks.iter_mut().filter(|c| c.capability == cap.name() && matches!(c.classification, Classification::Conditional | Classification::Optional | Classification::Needed)) {
            let how = if dropped { "succeeded" } else { "failed" };
            c.reason = format!("a re-run without it {how} (record --prove); {}", c.reason);
            c.classification = if dropped { Classification::Probed } else { Classification::Needed };
        }
    }
    if !untried.is_empty() {
        eprintln!("capprof: --prove: not re-run (budget of {BUDGET}): {}: they stay in the set; minimize tries every one", names(&untried));
    }
    let (confirm, _) = subject.repeat(tracer, Some(set), None, probe, 1, RefusedNeeds::of(reference))?;
    runs += 1;
    let w = &mut profile.workloads[main];
    let mut caps: Vec<_> = set.iter().collect();
    caps.sort_by_key(|c| c.name());
    w.capabilities.add = caps.clone();
    w.conditional.retain(|c| untried.contains(c));
    w.optional.retain(|c| untried.contains(c));
    w.verification = Some(Verification { capabilities: caps, unrestricted: false, passed: confirm.success, failure: confirm.failure.clone(), runs, evidence, seccomp: None });
    if !confirm.success {
        eprintln!("capprof: --prove: the settled set did not pass its confirming run ({}): the workload is flaky", outcome(&confirm));
    }
    Ok(())
}

fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    //! Which capabilities a re-run may settle, from a profile built by hand (no kernel).
    use super::*;
    use crate::attribution::Check;
    use crate::profile::{WorkloadKind, WorkloadMeta, WorkloadProfile};

    fn meta() -> WorkloadMeta {
        WorkloadMeta { service: None, name: "w".into(), kind: WorkloadKind::Command, command: vec![], cgroup: String::new(), exit_status: None, container: None, net_uses: vec![], portable: false }
    }

    #[test]
    fn doubtful_needs_come_after_conditional_ones_and_certain_needs_never() {
        let chroot = Check::for_test(Capability::SYS_CHROOT.number(), "ns_capable", &["__x64_sys_chroot", "ksys_chroot"]);
        let ns = Check::for_test(Capability::SYS_ADMIN.number(), "ns_capable", &["__x64_sys_clone", "copy_process", "copy_namespaces"]);
        let dac = Check::for_test(Capability::DAC_OVERRIDE.number(), "generic_permission", &["__x64_sys_openat", "may_open", "generic_permission"]);
        let helper = Check { exe_gains_privilege: true, ..Check::for_test(Capability::NET_RAW.number(), "ns_capable", &["__x64_sys_socket", "inet_create"]) };
        let touch = Check { doubtful: true, ..Check::for_test(Capability::FOWNER.number(), "inode_owner_or_capable", &["__x64_sys_utimensat", "setattr_prepare"]) };
        let w = WorkloadProfile::build(meta(), vec![chroot, ns, dac, helper, touch]);
        assert_eq!(w.doubtful(), [Capability::FOWNER, Capability::DAC_OVERRIDE, Capability::NET_RAW, Capability::SYS_ADMIN]);
    }
}
