//! `record --prove`: settles what the trace cannot decide. A capability is "conditional" when
//! every check of it was granted where the program may tolerate a refusal (a path walk that
//! failed anyway, a timestamp touch with a write-permission fallback). Each is kept in the set
//! by `record`; here the command is re-run once without each, and the set confirmed once at
//! the end. One run per doubtful capability, not a whole `minimize` search. A unit
//! (`record --unit --prove`) is restarted under each set, as `verify --unit` does.

use crate::capability::CapSet;
use crate::classify::Classification;
use crate::error::Result;
use crate::session::Tracer;
use crate::profile::{Evidence, Profile, Verification, WorkloadKind};
use crate::session::subject::Subject;
use crate::session::trial::{outcome, refused, Probe};

/// Re-runs the subject (a command, a unit) without each conditional capability of the
/// profile's main workload and updates the profile: dropped (the run succeeded) or needed (it
/// failed), with evidence.
pub fn settle(tracer: &mut Tracer, subject: &Subject, probe: Option<&Probe>, profile: &mut Profile) -> Result<()> {
    let main = profile.workloads.iter().position(|w| w.kind == WorkloadKind::Container).unwrap_or(0);
    let Some(w) = profile.workloads.get(main) else { return Ok(()) };
    let doubtful = w.conditional.clone();
    if doubtful.is_empty() {
        eprintln!("capprof: --prove: nothing to settle (no conditional capability)");
        return Ok(());
    }
    let mut set: CapSet = w.capabilities.add.iter().copied().collect();
    let mut evidence = Vec::new();
    let mut runs = 0;
    for cap in doubtful {
        let mut without = set;
        without.remove(cap);
        let (trial, _) = subject.repeat(tracer, Some(without), None, probe, 1)?;
        runs += 1;
        let dropped = trial.success;
        eprintln!("capprof: --prove: without {cap}: {}", if dropped { "works: dropped".to_string() } else { format!("fails ({}): kept", outcome(&trial)) });
        let denied = refused(&trial.workload_checks()).into_iter().filter(|(c, _)| *c == cap).flat_map(|(_, lines)| lines).collect();
        evidence.push(Evidence { capability: cap, kept: !dropped, trial: crate::profile::EvidenceRun::Without(cap), outcome: outcome(&trial), denied });
        if dropped {
            set = without;
        }
        let w = &mut profile.workloads[main];
        for c in w.checks.iter_mut().filter(|c| c.capability == cap.name() && c.classification == Classification::Conditional) {
            if dropped {
                c.classification = Classification::Probed;
                c.reason = format!("a re-run without it succeeded (record --prove); {}", c.reason);
            } else {
                c.classification = Classification::Needed;
                c.reason = format!("a re-run without it failed (record --prove); {}", c.reason);
            }
        }
    }
    let (confirm, _) = subject.repeat(tracer, Some(set), None, probe, 1)?;
    runs += 1;
    let w = &mut profile.workloads[main];
    let mut caps: Vec<_> = set.iter().collect();
    caps.sort_by_key(|c| c.name());
    w.capabilities.add = caps.clone();
    w.conditional.clear();
    w.verification = Some(Verification { capabilities: caps, unrestricted: false, passed: confirm.success, failure: confirm.failure.clone(), runs, evidence, seccomp: None });
    if !confirm.success {
        eprintln!("capprof: --prove: the settled set did not pass its confirming run ({}): the workload is flaky", outcome(&confirm));
    }
    Ok(())
}
