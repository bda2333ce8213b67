//! `capprof minimize -- CMD` (or `--unit NAME`): record under the full set, then search for the
//! smallest set that still works, proving every kept capability by a failing run without it.
//!
//! Search: start from what the recording saw used and granted (needed, conditional,
//! optional), confirm it works (else widen to every capability checked and granted, then to
//! every capability that can be granted here), drop candidates one at a time, try narrower
//! alternatives for what is kept (DAC_READ_SEARCH for DAC_OVERRIDE, NET_RAW for NET_ADMIN),
//! and confirm the final set. Each trial runs `--runs` times. A trial judged by exit status
//! fails when the kernel refused what the first run was granted and acted on (the program went
//! on without it): only `--check` can drop such a capability.
//!
//! With `--seccomp`, the first run also records the system calls; the workload is then run
//! under that allow list with every capability (calls it refused and needs are added back, a
//! few rounds at most), and every later trial runs under it: the set and the allow list are
//! proven together.

use crate::capability::{CapSet, Capability};
use crate::classify::Classification;
use crate::error::{Error, ErrorKind, Result};
use crate::output;
use crate::faces::RunConfig;
use std::collections::BTreeSet;

use crate::profile::seccomp::SyscallProfile;
use crate::session::seccomp::SeccompGuard;
use crate::session::Tracer;
use crate::profile::{Evidence, Verdict};
use crate::session::subject::Subject;
use crate::session::trial::{attach_verification, outcome, profile_of, refused, report_trial_end, RefusedNeeds, Trial};

/// Validated options of `minimize`.
pub type MinimizeConfig = RunConfig;

/// Narrower capabilities to try in place of a kept one.
const NARROWER: [(Capability, Capability); 2] =
    [(Capability::DAC_OVERRIDE, Capability::DAC_READ_SEARCH), (Capability::NET_ADMIN, Capability::NET_RAW)];

/// Rounds of adding refused system calls back to the recorded allow list.
const SECCOMP_ROUNDS: usize = 3;

struct Search<'a> {
    tracer: Tracer,
    subject: &'a Subject,
    cfg: &'a MinimizeConfig,
    runs: u32,
    /// The seccomp allow list every trial runs under (`--seccomp`, after the first run).
    seccomp: Option<SeccompGuard>,
    /// What the unrestricted run was granted and acted on: refused in a trial judged by exit
    /// status, it fails that trial.
    reference: CapSet,
}

impl Search<'_> {
    fn try_set(&mut self, set: Option<CapSet>, label: &str) -> Result<Trial> {
        let (trial, n) = self.subject.repeat(&mut self.tracer, set, self.seccomp.as_ref(), self.cfg.probe.as_ref(), self.cfg.runs, RefusedNeeds::of(self.reference))?;
        self.runs += n;
        let verdict = if trial.success { "works".to_string() } else { format!("fails: {}", outcome(&trial)) };
        eprintln!("capprof minimize: run {:>3}: {label}: {verdict}", self.runs);
        Ok(trial)
    }
}

pub fn run(cfg: &MinimizeConfig) -> Result<i32> {
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stderr)?;
    let subject = Subject::new(&cfg.argv, cfg.unit.as_deref(), cfg.options.containers)?;
    let tracer = Tracer::open(&cfg.options.kernel)?;
    let mut s = Search { tracer, subject: &subject, cfg, runs: 0, seccomp: None, reference: CapSet::empty() };

    let baseline = s.try_set(None, "with every capability")?;
    report_trial_end(&baseline);
    if !baseline.success {
        return Err(Error::new(
            ErrorKind::WorkloadFailed,
            format!("{} fails even with all capabilities ({}): nothing to minimize", subject.describe(), outcome(&baseline)),
        ));
    }
    let mut profile = profile_of(&s.tracer, subject.argv(), &baseline, &cfg.options);
    let main = crate::session::trial::main_workload(&profile);
    if let Some(recorded) = profile.workloads[main].seccomp.clone() {
        let added = prove_seccomp(&mut s, &recorded, &crate::format::dns_label(&profile.workloads[main].name))?;
        if let Some(sp) = profile.workloads[main].seccomp.as_mut() {
            sp.add_proven(&added);
        }
    }
    let seen = &profile.workloads[main];
    // Only what can be granted: what the unrestricted run was refused (outside the host's
    // bounding set, or the engine's default) would make the engine refuse the whole set.
    let grantable = grantable(subject.argv());
    let used: CapSet = seen.capabilities.add.iter().copied().collect();
    s.reference = used;
    let checked: CapSet = seen
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Granted && !matches!(c.classification, Classification::Runtime | Classification::Borrowed))
        .filter_map(|c| c.capability.known())
        .collect();
    let refused_outside = CapSet(seen.would_need.iter().copied().collect::<CapSet>().0 & !grantable.0);
    if !refused_outside.is_empty() {
        eprintln!("capprof minimize: refused in the unrestricted run and not grantable here: {} (left out of every trial)", list(refused_outside));
    }

    // A starting set that works.
    let mut set = used;
    let mut trial = s.try_set(Some(set), &format!("with what was used ({})", list(set)))?;
    for (wider, why) in [(CapSet(checked.0 | used.0), "every capability checked and granted"), (grantable, "every capability that can be granted")] {
        if trial.success {
            break;
        }
        set = wider;
        trial = s.try_set(Some(set), &format!("with {why} ({})", list(set)))?;
    }
    if !trial.success {
        return Err(Error::new(
            ErrorKind::WorkloadFailed,
            format!("{} fails under every capability that can be granted here although it works unrestricted: {}", subject.describe(), outcome(&trial)),
        ));
    }

    // Drop one at a time.
    let mut evidence = Vec::new();
    for cap in set.iter().collect::<Vec<_>>() {
        let mut without = set;
        without.remove(cap);
        let t = s.try_set(Some(without), &format!("without {cap}"))?;
        evidence.push(Evidence { capability: cap, kept: !t.success, trial: crate::profile::EvidenceRun::Without(cap), outcome: outcome(&t), denied: denied_of(&t, cap) });
        if t.success {
            set = without;
            trial = t;
        }
    }

    // Narrower alternatives for what is kept.
    for (broad, narrow) in NARROWER {
        if !set.contains(broad) || set.contains(narrow) {
            continue;
        }
        let mut swapped = set;
        swapped.remove(broad);
        swapped.insert(narrow);
        let t = s.try_set(Some(swapped), &format!("{narrow} instead of {broad}"))?;
        if t.success {
            evidence.push(Evidence { capability: broad, kept: false, trial: crate::profile::EvidenceRun::Instead { narrow, broad }, outcome: "succeeded".into(), denied: vec![] });
            set = swapped;
            trial = t;
        }
    }

    // Re-run the final set to confirm it.
    let final_trial = s.try_set(Some(set), &format!("confirming {}", list(set)))?;
    let confirmed = final_trial.success;
    let used_trial = if confirmed { final_trial } else { trial };
    attach_verification(&mut profile, Some(set), &used_trial, s.runs, evidence);
    if let Some(v) = profile.workloads[main].verification.as_mut().filter(|_| s.seccomp.is_some()) {
        v.seccomp = Some("the recorded allow list (the workload's seccomp profile)".into());
    }
    let w = &mut profile.workloads[main];
    let mut add: Vec<Capability> = set.iter().collect();
    add.sort_by_key(|c| c.name());
    w.capabilities.add = add;
    // Every doubt was settled by a re-run.
    w.conditional.clear();
    w.optional.clear();
    w.would_need.retain(|c| !set.contains(*c));
    drop(s);
    // A unit is put back as it was before the report is written.
    drop(subject);
    eprintln!("capprof minimize: minimal set {} ({} runs)", list(set), profile.workloads[main].verification.as_ref().map_or(0, |v| v.runs));
    sink.emit(&profile, cfg.format)?;
    if !confirmed {
        return Err(Error::new(ErrorKind::WorkloadFailed, "the minimal set did not pass its confirming run: the workload is flaky (try --runs)"));
    }
    Ok(0)
}

/// Runs the workload under its recorded allow list with every capability; the calls seccomp
/// refused are added back while that makes it work. The calls added; the guard stays on the
/// search for every later trial.
fn prove_seccomp(s: &mut Search, recorded: &SyscallProfile, label: &str) -> Result<BTreeSet<String>> {
    s.seccomp = Some(SeccompGuard::from_profile(recorded, label)?);
    let mut added = BTreeSet::new();
    for round in 0..=SECCOMP_ROUNDS {
        let t = s.try_set(None, "under the recorded seccomp allow list")?;
        if t.success {
            return Ok(added);
        }
        let refused = refused_syscalls(&t);
        if refused.is_empty() || round == SECCOMP_ROUNDS {
            let why = if refused.is_empty() { "no call was refused: the failure is indirect".to_string() } else { format!("still refused: {}", refused.iter().cloned().collect::<Vec<_>>().join(", ")) };
            return Err(Error::new(ErrorKind::WorkloadFailed, format!("{} fails under its recorded seccomp allow list ({}; {why})", s.subject.describe(), outcome(&t))));
        }
        eprintln!("capprof minimize: seccomp refused {}: added back", refused.iter().cloned().collect::<Vec<_>>().join(", "));
        let widened = s.seccomp.as_ref().map(|g| g.widened(&refused, label)).transpose()?;
        s.seccomp = widened;
        added.extend(refused);
    }
    Ok(added)
}

/// The system calls seccomp refused the trial's workload (its containers', else the command's).
fn refused_syscalls(t: &Trial) -> BTreeSet<String> {
    let g = t.grouped();
    let shares: Vec<&crate::attribution::workloads::Share> = if g.containers.is_empty() { vec![&g.command] } else { g.containers.iter().map(|(_, _, s)| s).collect() };
    shares
        .into_iter()
        .flat_map(|share| SyscallProfile::build(&share.syscalls, crate::profile::WorkloadKind::Command).refused)
        .map(|u| u.name)
        .filter(|n| !n.starts_with("nr:"))
        .collect()
}

fn denied_of(t: &Trial, cap: Capability) -> Vec<String> {
    if t.success {
        return vec![];
    }
    let lines: Vec<String> = refused(&t.workload_checks()).into_iter().filter(|(c, _)| *c == cap).flat_map(|(_, l)| l).collect();
    if lines.is_empty() {
        vec![format!("no check of {cap} was refused: the failure is indirect")]
    } else {
        lines
    }
}

/// Every capability a trial can ask for: capprof's own (the host's bounding set) for a
/// command; for an engine's `run` also only what the engine knows (Docker before 23 refuses
/// PERFMON, BPF and CHECKPOINT_RESTORE as unknown).
fn grantable(argv: &[String]) -> CapSet {
    let own = crate::kernel::privileges::own_effective().unwrap_or_else(|_| CapSet::full());
    let Some((_, engine)) = crate::attribution::run_command::locate_run(argv) else { return own };
    let mut known = own;
    if argv[engine].ends_with("docker") && docker_major(&argv[engine]).is_none_or(|v| v < 23) {
        for c in [Capability::PERFMON, Capability::BPF, Capability::CHECKPOINT_RESTORE] {
            known.remove(c);
        }
    }
    known
}

/// The Docker engine's major version, as its client reports it.
fn docker_major(client: &str) -> Option<u32> {
    let out = std::process::Command::new(client).args(["version", "--format", "{{.Server.Version}}"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().split('.').next()?.parse().ok()
}

fn list(set: CapSet) -> String {
    if set.is_empty() {
        "none".into()
    } else {
        set.sorted_names().join(", ")
    }
}
