//! systemd units and drop-ins: the `[Service]` section's `CapabilityBoundingSet=`,
//! `AmbientCapabilities=`, `User=` and `NoNewPrivileges=`, with systemd's own rules: an empty
//! assignment resets, a `~` list means all but those, later positive lists add (OR) and later
//! `~` lists take away. A service running as root holds its bounding set; one with a non-root
//! `User=` holds only its ambient set.

use std::path::Path;

use super::{capability, Grant, ManifestKind};
use crate::capability::CapSet;
use crate::error::Result;

/// A unit file (`*.service`) or a drop-in (`*.conf`) with a `[Service]` section.
pub fn looks_like_unit(name: &str, text: &str) -> bool {
    let has_section = text.lines().any(|l| l.trim() == "[Service]");
    has_section && (name.ends_with(".service") || name.ends_with(".conf") || !text.contains(": "))
}

/// Unit name from the file: `nginx.service`, or `nginx.service.d/x.conf` → `nginx.service`.
fn unit_of(file: &Path) -> String {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".service") {
        return name;
    }
    let dir = file.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match dir.strip_suffix(".d") {
        Some(unit) if unit.ends_with(".service") => unit.to_string(),
        _ => name.trim_end_matches(".conf").to_string(),
    }
}

/// A capability list setting as systemd folds its assignments.
struct ListSetting {
    value: Option<CapSet>,
    line: usize,
}

impl ListSetting {
    fn assign(&mut self, raw: &str, file: &Path, line: usize) -> Result<()> {
        self.line = line;
        let raw = raw.trim();
        if raw.is_empty() {
            self.value = Some(CapSet::empty());
            return Ok(());
        }
        let (invert, list) = match raw.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let mut caps = CapSet::empty();
        for name in list.split_whitespace() {
            caps.insert(capability(name, file, line)?);
        }
        self.value = Some(match (self.value, invert) {
            (None, false) => caps,
            (None, true) => CapSet(CapSet::full().0 & !caps.0),
            (Some(v), false) => CapSet(v.0 | caps.0),
            (Some(v), true) => CapSet(v.0 & !caps.0),
        });
        Ok(())
    }
}

pub fn grants(file: &Path, text: &str) -> Result<Vec<Grant>> {
    let mut in_service = false;
    let mut service_line = 1;
    let mut bounding = ListSetting { value: None, line: 0 };
    let mut ambient = ListSetting { value: None, line: 0 };
    let (mut user, mut nnp, mut nnp_line) = (String::new(), false, 0);
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut line) = pending.take().unwrap_or((i + 1, String::new()));
        let trimmed = raw.trim();
        if line.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with(';')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            line.push_str(head);
            line.push(' ');
            pending = Some((start, line));
            continue;
        }
        line.push_str(trimmed);
        if line.starts_with('[') {
            in_service = line == "[Service]";
            if in_service {
                service_line = start;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        if !in_service {
            continue;
        }
        match key.trim() {
            "CapabilityBoundingSet" => bounding.assign(value, file, start)?,
            "AmbientCapabilities" => ambient.assign(value, file, start)?,
            "User" => user = value.trim().to_string(),
            "NoNewPrivileges" => {
                nnp = matches!(value.trim(), "yes" | "true" | "1" | "on");
                nnp_line = start;
            }
            _ => {}
        }
    }
    let unprivileged = !matches!(user.as_str(), "" | "root" | "0");
    let bound = bounding.value.unwrap_or(CapSet::full());
    let (granted, capabilities_line) = if unprivileged {
        (CapSet(ambient.value.unwrap_or(CapSet::empty()).0 & bound.0), ambient.line.max(bounding.line))
    } else {
        (bound, bounding.line)
    };
    let assumed = (bounding.value.is_none() && !unprivileged)
        .then(|| "no CapabilityBoundingSet= here: every capability is assumed (the unit file or another drop-in may say otherwise)".to_string());
    Ok(vec![Grant {
        file: file.to_path_buf(),
        kind: ManifestKind::Systemd,
        owner: "[Service]".into(),
        container: unit_of(file),
        line: service_line,
        capabilities_line: if capabilities_line == 0 { service_line } else { capabilities_line },
        granted,
        privileged: false,
        no_new_privileges: nnp,
        no_new_privileges_line: if nnp_line == 0 { service_line } else { nnp_line },
        assumed,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    fn one(path: &str, text: &str) -> Grant {
        grants(Path::new(path), text).unwrap().remove(0)
    }

    #[test]
    fn systemd_folds_the_lists() {
        let g = one("/etc/systemd/system/nginx.service.d/capprof.conf", "[Service]\nCapabilityBoundingSet=CAP_SYS_ADMIN\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE \\\n  CAP_SETUID\nNoNewPrivileges=yes\n");
        assert_eq!(g.container, "nginx.service");
        assert_eq!(g.granted.sorted_names(), ["NET_BIND_SERVICE", "SETUID"]);
        assert_eq!(g.capabilities_line, 4);
        assert!(g.no_new_privileges);
        let g = one("chrony.service", "[Unit]\nDescription=x\n[Service]\nCapabilityBoundingSet=~CAP_SYS_ADMIN CAP_SYS_MODULE\n");
        assert_eq!(g.granted.len(), CapSet::full().len() - 2);
        assert!(!g.granted.contains(Capability::SYS_ADMIN));
        let g = one("web.service", "[Service]\nUser=www-data\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n");
        assert_eq!(g.granted.sorted_names(), ["NET_BIND_SERVICE"]);
        let g = one("x.service", "[Service]\nExecStart=/bin/x\n");
        assert_eq!(g.granted, CapSet::full());
        assert!(g.assumed.is_some());
        assert!(grants(Path::new("x.service"), "[Service]\nCapabilityBoundingSet=CAP_NOPE\n").is_err());
    }
}
