//! systemd: a drop-in per workload for `systemctl edit NAME` or
//! `/etc/systemd/system/NAME.service.d/capprof.conf`: `CapabilityBoundingSet=` with the set,
//! `AmbientCapabilities=` when the service runs as a non-root `User=` (root needs none: its
//! permitted set is the bounding set), `NoNewPrivileges=yes` when nothing set-id ran, and a
//! comment per capability with the kernel path that needed it.
//!
//! Both list settings are reset first (an empty assignment), so what the unit file or an
//! earlier drop-in granted does not survive: systemd ORs repeated positive lists.

use std::fmt::Write as _;

use super::plain;
use crate::capability::{CapSet, Capability};
use crate::classify::Classification;
use crate::profile::{Profile, WorkloadKind, WorkloadProfile};

/// How many kernel paths each capability's comment names.
const PATHS_PER_CAPABILITY: usize = 2;

/// The drop-ins, one per workload.
pub fn dropins(p: &Profile) -> String {
    let parts: Vec<String> = p.workloads.iter().map(dropin).collect();
    parts.join("\n")
}

/// A comment line: outside text made inert, and never ending in a backslash (which would join
/// the next line to it).
fn comment(out: &mut String, text: &str) {
    let mut line = plain(text);
    if line.ends_with('\\') {
        line.push('.');
    }
    let _ = writeln!(out, "# {line}");
}

fn cap_list(caps: impl Iterator<Item = Capability>) -> String {
    let mut names: Vec<String> = caps.map(|c| format!("CAP_{}", c.name())).collect();
    names.sort();
    names.join(" ")
}

/// One workload's drop-in.
pub fn dropin(w: &WorkloadProfile) -> String {
    let mut out = String::new();
    let set: CapSet = w.capabilities.add.iter().copied().collect();
    let service = w.service.as_ref();
    // The daemon's services are `service:NAME.service`; other workloads get a unit name made
    // from theirs.
    let unit = match (service, w.name.strip_prefix("service:")) {
        (Some(s), _) => s.unit.clone(),
        (None, Some(unit)) if unit.ends_with(".service") => unit.to_string(),
        (None, _) => format!("{}.service", super::dns_label(&w.name)),
    };
    comment(&mut out, &format!("capprof: capabilities of {unit}, from what it used while recorded."));
    comment(&mut out, &format!("Install: `systemctl edit {unit}` and paste this, or save it as"));
    comment(&mut out, &format!("/etc/systemd/system/{unit}.d/capprof.conf, then `systemctl daemon-reload` and restart it."));
    if w.kind != WorkloadKind::Service {
        let what = if w.name.starts_with("service:") { "Learned by the daemon from its cgroup".to_string() } else { format!("Recorded as a {} ({})", kind_name(w.kind), w.name) };
        comment(&mut out, &format!("{what}, not with record --unit: if the service runs as a"));
        comment(&mut out, "non-root User=, set AmbientCapabilities= to the same list.");
    }
    if let Some(granted) = &w.granted {
        let granted: CapSet = granted.iter().copied().collect();
        let dropped: Vec<Capability> = granted.iter().filter(|c| !set.contains(*c)).collect();
        let what = match service {
            Some(s) if s.runs_unprivileged() => "the unit's ambient set grants",
            Some(_) => "the unit's bounding set grants",
            None => "its processes held",
        };
        comment(&mut out, &format!("Now {what} {} capabilities; it used {}; this drops {}.", granted.len(), set.len(), dropped.len()));
        let notorious: Vec<&str> = dropped.iter().filter(|c| c.is_notorious()).map(|c| c.name()).collect();
        if !notorious.is_empty() {
            comment(&mut out, &format!("Among them the ones attackers want most: {}.", notorious.join(", ")));
        }
    }
    for path in service.map(|s| s.privileged_commands.as_slice()).unwrap_or_default() {
        comment(&mut out, &format!("Note: {path} runs with a `+` prefix (full privileges): no bounding set applies to it."));
    }
    out.push_str("[Service]\n");
    for cap in set.iter() {
        let paths: Vec<String> = w
            .checks
            .iter()
            .filter(|c| c.capability == cap.name() && matches!(c.classification, Classification::Needed | Classification::Conditional))
            .take(PATHS_PER_CAPABILITY)
            .map(|c| {
                let by: Vec<&str> = c.programs.iter().map(|p| p.comm.as_str()).collect();
                format!("{} (by {})", c.path, by.join(", "))
            })
            .collect();
        let why = if paths.is_empty() { "needed on other runtimes (--portable)".to_string() } else { paths.join("; ") };
        comment(&mut out, &format!("CAP_{}: {why}", cap.name()));
    }
    out.push_str("CapabilityBoundingSet=\n");
    if !set.is_empty() {
        let _ = writeln!(out, "CapabilityBoundingSet={}", cap_list(set.iter()));
    }
    let ambient: Option<CapSet> = match service {
        Some(s) if s.runs_unprivileged() => Some(set),
        // Root gains nothing from an ambient set; one the unit has is cut to the new bound.
        Some(s) if !s.ambient.is_empty() => Some(s.ambient.iter().copied().filter(|c| set.contains(*c)).collect()),
        _ => None,
    };
    if let Some(ambient) = ambient {
        if let Some(s) = service.filter(|s| s.runs_unprivileged()) {
            comment(&mut out, &format!("User={} is not root: it holds capabilities only through the ambient set.", s.user));
        }
        out.push_str("AmbientCapabilities=\n");
        if !ambient.is_empty() {
            let _ = writeln!(out, "AmbientCapabilities={}", cap_list(ambient.iter()));
        }
    }
    if w.no_new_privileges_safe {
        out.push_str("NoNewPrivileges=yes\n");
    } else {
        comment(&mut out, "NoNewPrivileges= left as it is: a set-id or file-capability program ran (it would lose its privilege).");
    }
    out
}

fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Command => "command",
        WorkloadKind::Container => "container",
        WorkloadKind::Service => "service",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::systemd::ServiceInfo;
    use crate::attribution::Check;
    use crate::profile::WorkloadMeta;

    fn service(user: &str, checks: Vec<Check>) -> WorkloadProfile {
        let info = ServiceInfo { unit: "web.service".into(), user: user.into(), bounding: Capability::all().collect(), ..Default::default() };
        let meta = WorkloadMeta { name: "web.service".into(), kind: WorkloadKind::Service, command: vec![], cgroup: "/system.slice/web.service".into(), exit_status: None, container: None, service: Some(info), net_uses: vec![], portable: false };
        WorkloadProfile::build(meta, checks)
    }

    fn bind() -> Check {
        Check { comm: "nginx".into(), exe: Some("/usr/sbin/nginx".into()), ..Check::for_test(Capability::NET_BIND_SERVICE.number(), "ns_capable", &["__x64_sys_bind", "__sys_bind", "inet_bind", "ns_capable"]) }
    }

    #[test]
    fn a_root_service_gets_a_bounding_set_with_reasons() {
        let text = dropin(&service("", vec![bind()]));
        assert!(text.contains("[Service]\n"), "{text}");
        assert!(text.contains("\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"), "{text}");
        assert!(text.contains("# CAP_NET_BIND_SERVICE: "), "{text}");
        assert!(text.contains("(by nginx)"), "{text}");
        assert!(!text.contains("AmbientCapabilities"), "{text}");
        assert!(text.contains("\nNoNewPrivileges=yes\n"), "{text}");
        assert!(text.contains("this drops"), "{text}");
        assert!(text.contains("SYS_ADMIN"), "the notorious ones are named: {text}");
    }

    #[test]
    fn a_non_root_user_gets_the_set_as_ambient() {
        let text = dropin(&service("www-data", vec![bind()]));
        assert!(text.contains("\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"), "{text}");
    }

    #[test]
    fn the_daemons_services_keep_their_unit_name() {
        let meta = WorkloadMeta { name: "service:nginx.service".into(), kind: WorkloadKind::Container, command: vec![], cgroup: String::new(), exit_status: None, container: None, service: None, net_uses: vec![], portable: false };
        let text = dropin(&WorkloadProfile::build(meta, vec![bind()]));
        assert!(text.contains("/etc/systemd/system/nginx.service.d/capprof.conf"), "{text}");
        assert!(text.contains("Learned by the daemon"), "{text}");
    }

    #[test]
    fn nothing_needed_is_an_empty_bounding_set() {
        let text = dropin(&service("", vec![]));
        assert!(text.contains("[Service]\nCapabilityBoundingSet=\nNoNewPrivileges=yes\n"), "{text}");
    }

    #[test]
    fn a_set_id_program_keeps_new_privileges() {
        let c = Check { exe_gains_privilege: true, ..bind() };
        let text = dropin(&service("", vec![c]));
        assert!(!text.contains("NoNewPrivileges=yes"), "{text}");
        assert!(text.contains("# NoNewPrivileges= left as it is"), "{text}");
    }

    #[test]
    fn every_comment_is_one_inert_line() {
        let c = Check { comm: "evil\n[Service]\nExecStartPre=/bin/sh \\".into(), ..bind() };
        let text = dropin(&service("", vec![c]));
        for line in text.lines() {
            assert!(line.starts_with('#') || line == "[Service]" || line.contains('='), "{line:?} in {text}");
            assert!(!line.ends_with('\\'), "{line:?}");
        }
        assert_eq!(text.matches("[Service]").count(), 1 + text.matches("\\n[Service]").count(), "{text}");
    }
}
