//! `capprof check`'s findings for people (`file:line: ...`), as JSON, and as SARIF 2.1.0 (one
//! run, one rule per kind of finding, each result at its manifest file and line) for
//! code-scanning UIs.

use std::fmt::Write as _;

use serde_json::json;

use super::{Outcome, Rule};
use crate::error::{Error, ErrorKind, Result};

fn level(rule: Rule) -> &'static str {
    if rule.breaks() {
        "error"
    } else {
        "warning"
    }
}

fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::UnderGranted => "A capability the workload needs is not granted: it will break.",
        Rule::NoNewPrivilegesBreaks => "Privilege escalation is forbidden, but the workload runs a set-id or file-capability program.",
        Rule::Privileged => "The container runs privileged though it needs less than everything.",
        Rule::OverGranted => "Capabilities are granted that the workload never used.",
        Rule::EscalationAllowed => "Privilege escalation is allowed though no set-id program ran.",
    }
}

pub fn human(o: &Outcome) -> String {
    let mut out = String::new();
    for f in &o.findings {
        let _ = writeln!(out, "{}:{}: {}: {} [{}]", crate::format::plain(&f.file.display().to_string()), f.line, level(f.rule), f.message, f.rule.id());
    }
    for a in &o.agreeing {
        let _ = writeln!(out, "{}: agrees with the profile", crate::format::plain(a));
    }
    for u in &o.unmatched {
        let _ = writeln!(out, "{}: not in the profile: not checked", crate::format::plain(u));
    }
    let breaking = o.findings.iter().filter(|f| f.rule.breaks()).count();
    let _ = writeln!(
        out,
        "capprof check: {} finding(s), {breaking} that break the workload; {} entr{} agree{}",
        o.findings.len(),
        o.agreeing.len(),
        if o.agreeing.len() == 1 { "y" } else { "ies" },
        if o.unmatched.is_empty() { String::new() } else { format!("; {} not in the profile", o.unmatched.len()) }
    );
    out
}

pub fn json(o: &Outcome) -> Result<String> {
    let value = json!({ "exit_code": o.exit_code(), "findings": o.findings, "agreeing": o.agreeing, "unmatched": o.unmatched });
    serde_json::to_string_pretty(&value).map(|s| s + "\n").map_err(|e| Error::new(ErrorKind::Internal, format!("rendering JSON: {e}")))
}

/// A file path as a SARIF `artifactLocation.uri`: relative paths stay relative (to the
/// repository root code scanning resolves them against), absolute ones become `file://` URIs.
fn uri(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    let mut out = String::new();
    for b in text.trim_start_matches("./").bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if path.is_absolute() {
        format!("file://{out}")
    } else {
        out
    }
}

pub fn sarif(o: &Outcome) -> Result<String> {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|r| json!({ "id": r.id(), "shortDescription": { "text": describe(*r) }, "defaultConfiguration": { "level": level(*r) } }))
        .collect();
    let results: Vec<_> = o
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == f.rule).unwrap_or(0),
                "level": level(f.rule),
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&f.file) },
                        "region": { "startLine": f.line.max(1) }
                    },
                    "logicalLocations": [{ "name": f.container, "fullyQualifiedName": format!("{}/{}", f.owner, f.container) }]
                }],
                "properties": { "workload": f.workload, "capabilities": f.capabilities }
            })
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": { "name": "capprof", "version": env!("CARGO_PKG_VERSION"), "informationUri": "https://github.com/capprof/capprof", "rules": rules } },
            "results": results
        }]
    });
    serde_json::to_string_pretty(&log).map(|s| s + "\n").map_err(|e| Error::new(ErrorKind::Internal, format!("rendering SARIF: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(uri(std::path::Path::new("./k8s/web deploy.yaml")), "k8s/web%20deploy.yaml");
        assert_eq!(uri(std::path::Path::new("/etc/x.service")), "file:///etc/x.service");
    }
}
