//! The report for people: what was used and why it matters, what was only probed, losses,
//! then the minimal set ready to paste.

use std::fmt::Write as _;

use super::{docker_flags, security_context};
use crate::capability::Capability;
use crate::classify::Classification;
use crate::profile::{CheckSummary, Profile, WorkloadProfile};

pub fn report(p: &Profile) -> String {
    let mut out = String::new();
    for w in &p.workloads {
        workload(&mut out, p, w);
    }
    let warnings = p.losses.warnings();
    if warnings.is_empty() {
        let _ = writeln!(out, "losses: none ({} checks in scope)", p.losses.checks_seen);
    } else {
        for line in warnings {
            let _ = writeln!(out, "LOSS: {line}");
        }
    }
    if p.losses.site_unknown > 0 {
        let _ = writeln!(out, "note: {} checks had no readable call site; classified from their first kernel stack", p.losses.site_unknown);
    }
    let _ = writeln!(out, "backend: {} ({})", p.backend.name, p.backend.classification);
    if let Some(prog) = &p.backend.program {
        let _ = writeln!(out, "kernel program: {} runs, {:.0} ns mean", prog.runs, prog.mean_ns);
    }
    out
}

fn workload(out: &mut String, p: &Profile, w: &WorkloadProfile) {
    let status = match w.exit_status {
        Some(s) => format!("exit {s}"),
        None => "still running".into(),
    };
    let _ = writeln!(out, "capprof: {} ({status}, {:.1} s, kernel {})", w.name, p.duration_ms as f64 / 1000.0, p.kernel);

    let used: Vec<&CheckSummary> = w.checks.iter().filter(|c| c.classification == Classification::Needed).collect();
    if used.is_empty() {
        let _ = writeln!(out, "\nused: no capability");
    } else {
        let _ = writeln!(out, "\nused (granted and acted on):");
        section(out, &used, true);
    }
    for (class, title) in [
        (Classification::Denied, "would need (refused while running):"),
        (Classification::Optional, "checked, probably optional — verify:"),
    ] {
        let rows: Vec<&CheckSummary> = w.checks.iter().filter(|c| c.classification == class).collect();
        if !rows.is_empty() {
            let _ = writeln!(out, "\n{title}");
            section(out, &rows, true);
        }
    }
    let noise: Vec<&CheckSummary> = w
        .checks
        .iter()
        .filter(|c| matches!(c.classification, Classification::Probed | Classification::Borrowed | Classification::Runtime))
        .collect();
    if !noise.is_empty() {
        let _ = writeln!(out, "\nnot needed (kernel probes, borrowed credentials, runtime set-up):");
        section(out, &noise, false);
    }

    if let Some(v) = &w.verification {
        let verdict = if v.passed { "PASS" } else { "FAIL" };
        let set = if v.capabilities.is_empty() { "no capability".to_string() } else { names(&v.capabilities) };
        let _ = writeln!(out, "\nverification: {verdict} under {set} ({} run{})", v.runs, if v.runs == 1 { "" } else { "s" });
        if let Some(f) = &v.failure {
            let _ = writeln!(out, "  failed: {f}");
        }
        for e in &v.evidence {
            let what = match (e.kept, e.trial.as_str()) {
                (true, "under the given set") => "in set",
                (false, "under the given set") => "missing",
                (true, _) => "kept",
                (false, _) => "dropped",
            };
            let _ = writeln!(out, "  {:<18} {what:<8} {}: {}", e.capability.name(), e.trial, e.outcome);
            for d in &e.denied {
                let _ = writeln!(out, "      refused: {d}");
            }
        }
    }

    let _ = writeln!(out, "\nminimal set: {}", if w.capabilities.add.is_empty() { "none".to_string() } else { w.capabilities.add.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ") });
    let _ = writeln!(out, "  docker: {}", docker_flags(w));
    if let Ok(k8s) = security_context(w) {
        let _ = writeln!(out, "  kubernetes:");
        for line in k8s.lines().filter(|l| !l.starts_with('#')) {
            let _ = writeln!(out, "    {line}");
        }
    }
    let dropped: Vec<&str> = crate::capability::DOCKER_DEFAULT
        .iter()
        .filter(|c| !w.capabilities.add.contains(c))
        .map(|c| c.name())
        .collect();
    let _ = writeln!(
        out,
        "  against Docker's default 14: drops {} ({})",
        dropped.len(),
        if dropped.is_empty() { "nothing".into() } else { dropped.join(", ") }
    );
    if !w.would_need.is_empty() {
        let _ = writeln!(out, "  note: refused during the run: {} (not in the set; add them if the run failed because of it)", names(&w.would_need));
    }
    if !w.optional.is_empty() {
        let _ = writeln!(out, "  note: not in the set, checked with a fallback: {}", names(&w.optional));
    }
    let _ = writeln!(out);
}

fn section(out: &mut String, rows: &[&CheckSummary], risk: bool) {
    for c in rows {
        let verdict = match c.verdict {
            crate::profile::Verdict::Granted => "granted",
            crate::profile::Verdict::Denied => "denied",
        };
        let _ = writeln!(out, "  {:<18} {:<9} {:>7}x  {}", c.capability, c.classification.label(), c.count, c.reason);
        let progs: Vec<String> = c
            .programs
            .iter()
            .map(|p| match &p.exe {
                Some(exe) => format!("{} ({exe})", p.comm),
                None => p.comm.clone(),
            })
            .collect();
        let _ = writeln!(out, "      {verdict} to {} via {}", progs.join(", "), c.path);
        if risk {
            if let Ok(cap) = c.capability.parse::<Capability>() {
                let _ = writeln!(out, "      allows: {}; attacker gains: {}", cap.allows(), cap.risk());
            }
        }
    }
}

fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}
