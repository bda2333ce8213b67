//! `capprof check PROFILE MANIFEST...`: the gate in CI. What a recorded (merged, exported)
//! profile needs against what deployment files grant, per container: over-granted (granted,
//! never needed), under-granted (needed, not granted: it will break), and the privilege
//! switches (`privileged`, `allowPrivilegeEscalation`, `no-new-privileges`). Exit 0 when they
//! agree, 1 when something is over-granted, 2 when something is under-granted ([`report`]
//! renders the findings for people, JSON and SARIF code-scanning).

pub mod report;

use std::path::PathBuf;

use crate::capability::{CapSet, Capability};
use crate::classify::Classification;
use crate::error::{Error, ErrorKind, Result};
use crate::manifest::{self, Grant};
use crate::profile::{Profile, WorkloadProfile};

/// Exit code when a manifest grants more than the profile needs.
pub const OVER_GRANTED: i32 = 1;
/// Exit code when a manifest grants less than the profile needs (the workload would break).
pub const UNDER_GRANTED: i32 = 2;

/// How `check` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    Human,
    Json,
    /// SARIF 2.1.0, for code-scanning UIs (GitHub, GitLab).
    Sarif,
}

/// Validated options of `check`.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub profile: PathBuf,
    pub manifests: Vec<PathBuf>,
    pub format: CheckFormat,
    pub output: Option<PathBuf>,
    /// The manifest container the profile's one workload is (a profile recorded from a
    /// command has no container name to match by).
    pub container: Option<String>,
}

/// What is wrong, from the most to the least serious.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Needed, not granted: the workload will break.
    UnderGranted,
    /// no-new-privileges is set, but a set-id program ran: it will lose its privilege.
    NoNewPrivilegesBreaks,
    /// `privileged: true` where the profile needs less than everything.
    Privileged,
    /// Granted, never needed.
    OverGranted,
    /// Privilege escalation allowed, though nothing set-id ran.
    EscalationAllowed,
}

impl Rule {
    pub fn id(self) -> &'static str {
        match self {
            Self::UnderGranted => "capprof/under-granted",
            Self::NoNewPrivilegesBreaks => "capprof/no-new-privileges-breaks",
            Self::Privileged => "capprof/privileged",
            Self::OverGranted => "capprof/over-granted",
            Self::EscalationAllowed => "capprof/escalation-allowed",
        }
    }

    /// Does it break the workload (exit 2) rather than only fail to protect it (exit 1)?
    pub fn breaks(self) -> bool {
        matches!(self, Self::UnderGranted | Self::NoNewPrivilegesBreaks)
    }

    pub const ALL: [Rule; 5] = [Self::UnderGranted, Self::NoNewPrivilegesBreaks, Self::Privileged, Self::OverGranted, Self::EscalationAllowed];
}

/// One finding, at a manifest line.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub file: PathBuf,
    pub line: usize,
    /// `Deployment/web`, `services`, a unit.
    pub owner: String,
    pub container: String,
    /// The profile's workload it was compared with.
    pub workload: String,
    pub capabilities: Vec<String>,
    pub message: String,
}

/// The comparison: findings, and what could not be compared.
#[derive(Debug, serde::Serialize)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// Manifest entries no workload of the profile matched (not judged).
    pub unmatched: Vec<String>,
    /// Entries compared and found in agreement.
    pub agreeing: Vec<String>,
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        if self.findings.iter().any(|f| f.rule.breaks()) {
            UNDER_GRANTED
        } else if self.findings.is_empty() {
            0
        } else {
            OVER_GRANTED
        }
    }
}

pub fn run(cfg: &CheckConfig) -> Result<i32> {
    let sink = crate::output::Sink::open(cfg.output.as_deref(), crate::output::Stream::Stdout)?;
    let bytes = std::fs::read(&cfg.profile).map_err(|e| Error::io(format!("reading {}", cfg.profile.display()), e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::MalformedInput, format!("{} is not a capprof JSON profile: not UTF-8 text", cfg.profile.display())))?;
    let profile = Profile::from_json(&text, &cfg.profile.display().to_string())?;
    crate::faces::merge::check_version(&profile.capprof_version, &cfg.profile)?;
    let grants = manifest::read_all(&cfg.manifests)?;
    let outcome = compare(&profile, &grants, cfg.container.as_deref())?;
    let rendered = match cfg.format {
        CheckFormat::Human => report::human(&outcome),
        CheckFormat::Json => report::json(&outcome)?,
        CheckFormat::Sarif => report::sarif(&outcome)?,
    };
    sink.write_text(&rendered);
    Ok(outcome.exit_code())
}

/// The names a workload answers to: its own, its container's, its compose service and
/// Kubernetes container labels, its unit.
fn names_of(w: &WorkloadProfile) -> Vec<String> {
    let mut names = vec![w.name.clone(), crate::format::dns_label(&w.name)];
    if let Some(c) = &w.container {
        names.push(c.name.clone());
        for label in ["com.docker.compose.service", "io.kubernetes.container.name"] {
            if let Some(v) = c.labels.get(label) {
                names.push(v.clone());
            }
        }
        if !c.image.is_empty() {
            names.push(c.image.clone());
        }
    }
    if let Some(s) = &w.service {
        names.push(s.unit.clone());
        names.push(s.unit.trim_end_matches(".service").to_string());
    }
    // Workloads the daemon learned by cgroup (`service:nginx.service`, `/system.slice/x.service`).
    if let Some(unit) = w.name.rsplit(['/', ':']).next() {
        names.push(unit.to_string());
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Pairs every grant with the workload of the same name; with one workload and one grant,
/// those two whatever their names; with `container`, the profile's one workload and the
/// grants of that name.
pub fn compare(profile: &Profile, grants: &[Grant], container: Option<&str>) -> Result<Outcome> {
    let mut out = Outcome { findings: vec![], unmatched: vec![], agreeing: vec![] };
    if container.is_some() && profile.workloads.len() != 1 {
        let names: Vec<&str> = profile.workloads.iter().map(|w| w.name.as_str()).collect();
        return Err(Error::new(ErrorKind::Usage, format!("--container needs a profile of one workload; this one has {}: {}", names.len(), crate::format::plain(&names.join(", ")))));
    }
    let only = (profile.workloads.len() == 1 && grants.len() == 1).then(|| &profile.workloads[0]);
    let mut matched_any = false;
    for g in grants {
        let w = match container {
            Some(name) => (g.container == name).then(|| &profile.workloads[0]),
            None => profile.workloads.iter().find(|w| names_of(w).contains(&g.container)).or(only),
        };
        let Some(w) = w else {
            out.unmatched.push(format!("{}:{}: {} {}", g.file.display(), g.line, g.owner, g.container));
            continue;
        };
        matched_any = true;
        let before = out.findings.len();
        judge(w, g, &mut out.findings);
        if out.findings.len() == before {
            out.agreeing.push(format!("{}:{}: {} {}", g.file.display(), g.line, g.owner, g.container));
        }
    }
    if !matched_any {
        let workloads: Vec<&str> = profile.workloads.iter().map(|w| w.name.as_str()).collect();
        let containers: Vec<&str> = grants.iter().map(|g| g.container.as_str()).collect();
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "nothing to compare: no container of the manifests ({}) is a workload of the profile ({}); name them alike",
                crate::format::plain(&containers.join(", ")),
                crate::format::plain(&workloads.join(", "))
            ),
        ));
    }
    out.findings.sort_by(|a, b| (a.rule, &a.file, a.line).cmp(&(b.rule, &b.file, b.line)));
    Ok(out)
}

fn names(set: CapSet) -> Vec<String> {
    set.sorted_names().into_iter().map(String::from).collect()
}

/// The kernel path that needed `cap`, from the profile.
fn why(w: &WorkloadProfile, cap: Capability) -> String {
    w.checks
        .iter()
        .find(|c| c.capability == cap.name() && matches!(c.classification, Classification::Needed | Classification::Conditional))
        .map(|c| {
            let by: Vec<&str> = c.programs.iter().map(|p| p.comm.as_str()).collect();
            format!("{} by {}", c.path, by.join(", "))
        })
        .unwrap_or_else(|| "needed on other runtimes (--portable)".into())
}

fn judge(w: &WorkloadProfile, g: &Grant, findings: &mut Vec<Finding>) {
    let needed = w.needed();
    let finding = |rule: Rule, line: usize, capabilities: Vec<String>, message: String| Finding {
        rule,
        file: g.file.clone(),
        line,
        owner: g.owner.clone(),
        container: g.container.clone(),
        workload: w.name.clone(),
        capabilities,
        message: crate::format::plain(&message),
    };
    let missing = CapSet(needed.0 & !g.granted.0);
    if !missing.is_empty() {
        let paths: Vec<String> = missing.iter().map(|c| format!("CAP_{c}: {}", why(w, c))).collect();
        findings.push(finding(
            Rule::UnderGranted,
            g.capabilities_line,
            names(missing),
            format!("{} needs {} that this does not grant: it will break ({})", g.container, names(missing).join(", "), paths.join("; ")),
        ));
    }
    if g.privileged {
        findings.push(finding(
            Rule::Privileged,
            g.capabilities_line,
            vec![],
            format!(
                "{} runs privileged (every capability, every device, no seccomp or LSM confinement) but uses {}: drop privileged and grant only those",
                g.container,
                if needed.is_empty() { "no capability".to_string() } else { names(needed).join(", ") }
            ),
        ));
    } else {
        let extra = CapSet(g.granted.0 & !needed.0);
        if !extra.is_empty() {
            let notorious: Vec<&str> = extra.iter().filter(|c| c.is_notorious()).map(|c| c.name()).collect();
            let assumed = g.assumed.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
            findings.push(finding(
                Rule::OverGranted,
                g.capabilities_line,
                names(extra),
                format!(
                    "{} is granted {} capabilities it never used{assumed}: drop {}{}; it needs {}",
                    g.container,
                    extra.len(),
                    if extra.len() > 8 { "ALL and add back what it needs".to_string() } else { names(extra).join(", ") },
                    if notorious.is_empty() { String::new() } else { format!(" (attackers want {})", notorious.join(", ")) },
                    if needed.is_empty() { "none".to_string() } else { names(needed).join(", ") }
                ),
            ));
        }
    }
    if g.no_new_privileges && !w.no_new_privileges_safe {
        findings.push(finding(
            Rule::NoNewPrivilegesBreaks,
            g.no_new_privileges_line,
            vec![],
            format!("{} forbids privilege escalation, but it runs a set-id or file-capability program that needs it: that program will fail", g.container),
        ));
    } else if !g.no_new_privileges && w.no_new_privileges_safe && !g.privileged {
        let setting = match g.kind {
            manifest::ManifestKind::Kubernetes => "allowPrivilegeEscalation: false",
            manifest::ManifestKind::Compose => "security_opt: [\"no-new-privileges:true\"]",
            manifest::ManifestKind::DockerRun => "--security-opt no-new-privileges",
            manifest::ManifestKind::Systemd => "NoNewPrivileges=yes",
        };
        findings.push(finding(
            Rule::EscalationAllowed,
            g.no_new_privileges_line,
            vec![],
            format!("{} may gain privileges through set-id programs, though none ran: set {setting}", g.container),
        ));
    }
}

#[cfg(test)]
mod tests;
