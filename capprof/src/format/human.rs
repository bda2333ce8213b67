//! The report for people: what was used and why it matters, what was only probed, losses,
//! then the minimal set ready to paste.

use std::fmt::Write as _;

use super::{docker_flags, plain, plain_lines, security_context};
use crate::capability::Capability;
use crate::classify::Classification;
use crate::profile::{CheckSummary, Profile, WorkloadProfile};

/// The report. Names, images, commands and program names came from outside: each is made
/// one inert line where it is embedded, and the whole text is passed through
/// [`plain_lines`] last, so no control character reaches a terminal.
pub fn report(p: &Profile) -> String {
    plain_lines(&report_text(p))
}

fn report_text(p: &Profile) -> String {
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
    match &w.container {
        Some(c) => {
            let _ = writeln!(
                out,
                "capprof: container {} ({} {}, image {}, network {}{})",
                plain(&w.name),
                c.engine,
                plain(&c.id.chars().take(12).collect::<String>()),
                if c.image.is_empty() { "?".into() } else { plain(&c.image) },
                if c.network_mode.is_empty() { "?".into() } else { plain(&c.network_mode) },
                if c.source == crate::attribution::container::Source::Cgroup { "; the engine could not be asked, known from its cgroup only" } else { "" }
            );
        }
        None => {
            let _ = writeln!(out, "capprof: {} ({status}, {:.1} s, kernel {})", plain(&w.name), p.duration_ms as f64 / 1000.0, p.kernel);
        }
    }
    if let Some(s) = &w.service {
        let user = if s.runs_unprivileged() { plain(&s.user) } else { "root".into() };
        let _ = writeln!(
            out,
            "  systemd unit {}, User={user}, CapabilityBoundingSet= of {} capabilities{}",
            plain(&s.unit),
            s.bounding.len(),
            if s.no_new_privileges { ", NoNewPrivileges=yes" } else { "" }
        );
    }

    let used: Vec<&CheckSummary> = w.checks.iter().filter(|c| c.classification == Classification::Needed).collect();
    if used.is_empty() {
        let _ = writeln!(out, "\nused: no capability");
    } else {
        let _ = writeln!(out, "\nused (granted and acted on):");
        section(out, &used, true);
    }
    for (class, title) in [
        (Classification::Conditional, "conditional (in the set; the program may tolerate a refusal: record --prove re-runs without it to decide):"),
        (Classification::Denied, "would need (refused while running):"),
        (Classification::Optional, "checked, probably optional — verify:"),
        (Classification::AtStop, "at stop (while capprof stopped the workload: not in the set; a graceful stop by its supervisor needs them too):"),
    ] {
        let rows: Vec<&CheckSummary> = w.checks.iter().filter(|c| c.classification == class).collect();
        if !rows.is_empty() {
            let _ = writeln!(out, "\n{title}");
            section(out, &rows, true);
        }
    }
    let noise: Vec<&CheckSummary> =
        w.checks.iter().filter(|c| matches!(c.classification, Classification::Probed | Classification::Borrowed)).collect();
    if !noise.is_empty() {
        let _ = writeln!(out, "\nnot needed (kernel probes, borrowed credentials):");
        section(out, &noise, false);
    }
    runtime_summary(out, w);
    if let Some(s) = &w.seccomp {
        super::seccomp::summary(out, s);
    }

    if let Some(v) = &w.verification {
        let verdict = if v.passed { "PASS" } else { "FAIL" };
        let set = if v.unrestricted {
            "its own capabilities".to_string()
        } else if v.capabilities.is_empty() {
            "no capability".to_string()
        } else {
            names(&v.capabilities)
        };
        let set = match &v.seccomp {
            Some(file) => format!("{set} and seccomp profile {}", plain(file)),
            None => set,
        };
        let _ = writeln!(out, "\nverification: {verdict} under {set} ({} run{})", v.runs, if v.runs == 1 { "" } else { "s" });
        if let Some(f) = &v.failure {
            let _ = writeln!(out, "  failed: {}", plain(f));
        }
        for e in &v.evidence {
            let what = match (e.kept, e.trial) {
                (true, crate::profile::EvidenceRun::UnderGivenSet) => "in set",
                (false, crate::profile::EvidenceRun::UnderGivenSet) => "missing",
                (true, _) => "kept",
                (false, _) => "dropped",
            };
            let _ = writeln!(out, "  {:<18} {what:<8} {}: {}", e.capability.name(), e.trial, plain(&e.outcome));
            for d in &e.denied {
                let _ = writeln!(out, "      refused: {}", plain(d));
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
    granted_vs_used(out, w);
    for p in &w.portability {
        let verb = if w.portable { "included" } else { "not included, --portable adds it" };
        let _ = writeln!(out, "  portability: {} on other runtimes ({verb}): {}: {}", p.capability, p.operation, p.note);
    }
    for a in &w.hardening {
        let mark = if a.recommended { "yes" } else { "no " };
        let _ = writeln!(out, "  hardening [{mark}] {}: {}", a.option, a.reason);
    }
    if let Some(c) = &w.container {
        if c.privileged {
            let _ = writeln!(out, "  note: the container ran --privileged: every capability was granted, and --privileged must go too");
        }
    }
    if !w.would_need.is_empty() {
        let _ = writeln!(out, "  note: refused during the run: {} (not in the set; add them if the run failed because of it)", names(&w.would_need));
    }
    let doubtful = w.doubtful();
    if !doubtful.is_empty() {
        let _ = writeln!(out, "  note: a re-run could still remove: {} (record --prove tries each once, minimize searches)", names(&doubtful));
    }
    let _ = writeln!(out);
}

/// Runtime set-up in one line: it is never the workload's, and can be long (runc's).
fn runtime_summary(out: &mut String, w: &WorkloadProfile) {
    let mut per_cap: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut programs: Vec<String> = Vec::new();
    for c in w.checks.iter().filter(|c| c.classification == Classification::Runtime) {
        *per_cap.entry(c.capability.to_string()).or_default() += c.count;
        for p in &c.programs {
            let comm = plain(&p.comm);
            if !programs.contains(&comm) {
                programs.push(comm);
            }
        }
    }
    if per_cap.is_empty() {
        return;
    }
    let total: u64 = per_cap.values().sum();
    let caps: Vec<String> = per_cap.iter().map(|(c, n)| format!("{c} {n}")).collect();
    programs.sort_unstable();
    let _ = writeln!(out, "\nruntime set-up before the workload's exec (not counted): {total} checks: {}", caps.join(", "));
    let _ = writeln!(out, "      by {}", programs.join(", "));
}

/// "granted 14, used 1: drop CHOWN, ..." with the notorious ones called out.
fn granted_vs_used(out: &mut String, w: &WorkloadProfile) {
    let (granted, what): (Vec<Capability>, &str) = match &w.granted {
        Some(g) if w.container.is_some() => (g.clone(), "granted"),
        Some(g) if w.service.is_some() => (g.clone(), "the unit's bounding set"),
        _ => (crate::capability::DOCKER_DEFAULT.to_vec(), "against Docker's default"),
    };
    let drop: Vec<Capability> = granted.iter().copied().filter(|c| !w.capabilities.add.contains(c)).collect();
    let names: Vec<&str> = drop.iter().map(|c| c.name()).collect();
    let _ = writeln!(
        out,
        "  {what} {}, used {}: drop {}",
        granted.len(),
        w.capabilities.add.len(),
        if names.is_empty() { "nothing".into() } else { names.join(", ") }
    );
    let notorious: Vec<&str> = drop.iter().filter(|c| c.is_notorious()).map(|c| c.name()).collect();
    if !notorious.is_empty() {
        let _ = writeln!(out, "  dropping {} removes the most abused ones ({})", notorious.join(" and "), drop.iter().filter(|c| c.is_notorious()).map(|c| c.risk()).collect::<Vec<_>>().join("; "));
    }
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
                Some(exe) => format!("{} ({})", plain(&p.comm), plain(exe)),
                None => plain(&p.comm),
            })
            .collect();
        let _ = writeln!(out, "      {verdict} to {} via {}", progs.join(", "), c.path);
        if risk {
            if let Some(cap) = c.capability.known() {
                let _ = writeln!(out, "      allows: {}; attacker gains: {}", cap.allows(), cap.risk());
            }
        }
    }
}

fn names(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}
