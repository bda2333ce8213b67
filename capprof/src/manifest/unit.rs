//! systemd units and drop-ins: the `[Service]` section's `CapabilityBoundingSet=`,
//! `AmbientCapabilities=`, `User=` and `NoNewPrivileges=`, with systemd's own rules: an empty
//! assignment resets, a `~` list means all but those, later positive lists add (OR) and later
//! `~` lists take away. A service running as root holds its bounding set; one with a non-root
//! `User=` holds only its ambient set.

use std::path::{Path, PathBuf};

use super::{capability, Grant, ManifestKind};
use crate::capability::CapSet;
use crate::error::Result;

/// A unit file (`*.service`) or a drop-in (`*.conf`) with a `[Service]` section.
pub fn looks_like_unit(name: &str, text: &str) -> bool {
    let has_section = text.lines().any(|l| l.trim() == "[Service]");
    has_section && (name.ends_with(".service") || name.ends_with(".conf") || !text.contains(": "))
}

/// Unit name from the file: `nginx.service`, or `nginx.service.d/x.conf` → `nginx.service`.
pub fn unit_of(file: &Path) -> String {
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

/// One unit's files folded in systemd's order: the unit file, then its drop-ins by file name.
pub struct Fold {
    unit: String,
    bounding: ListSetting,
    ambient: ListSetting,
    user: String,
    nnp: bool,
    /// Where each setting was last made: (file, line).
    nnp_at: Option<(PathBuf, usize)>,
    caps_at: Option<(PathBuf, usize)>,
    /// The last file's `[Service]` line, where a missing setting would go.
    service_at: Option<(PathBuf, usize)>,
}

impl Fold {
    pub fn new(unit: String) -> Self {
        Self { unit, bounding: ListSetting { value: None, line: 0 }, ambient: ListSetting { value: None, line: 0 }, user: String::new(), nnp: false, nnp_at: None, caps_at: None, service_at: None }
    }

    /// Applies one more file (the unit file first, then each drop-in).
    pub fn feed(&mut self, file: &Path, text: &str) -> Result<()> {
        let mut in_service = false;
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
                    self.service_at = Some((file.to_path_buf(), start));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            if !in_service {
                continue;
            }
            match key.trim() {
                "CapabilityBoundingSet" => {
                    self.bounding.assign(value, file, start)?;
                    self.caps_at = Some((file.to_path_buf(), start));
                }
                "AmbientCapabilities" => {
                    self.ambient.assign(value, file, start)?;
                    self.caps_at = Some((file.to_path_buf(), start));
                }
                "User" => self.user = value.trim().to_string(),
                "NoNewPrivileges" => {
                    self.nnp = matches!(value.trim(), "yes" | "true" | "1" | "on");
                    self.nnp_at = Some((file.to_path_buf(), start));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The unit's grant once every file is in.
    pub fn grant(self) -> Grant {
        let unprivileged = !matches!(self.user.as_str(), "" | "root" | "0");
        let bound = self.bounding.value.unwrap_or(CapSet::full());
        let granted = if unprivileged { CapSet(self.ambient.value.unwrap_or(CapSet::empty()).0 & bound.0) } else { bound };
        let assumed = (self.bounding.value.is_none() && !unprivileged)
            .then(|| "no CapabilityBoundingSet= in the files given: every capability is assumed (give the unit file and its drop-ins)".to_string());
        let (file, line) = self.service_at.clone().unwrap_or_default();
        Grant {
            file: file.clone(),
            kind: ManifestKind::Systemd,
            owner: "[Service]".into(),
            container: self.unit,
            line: line.max(1),
            capabilities_line: self.caps_at.as_ref().filter(|(f, _)| *f == file).map_or(line.max(1), |(_, l)| *l),
            granted,
            privileged: false,
            no_new_privileges: self.nnp,
            no_new_privileges_line: self.nnp_at.as_ref().filter(|(f, _)| *f == file).map_or(line.max(1), |(_, l)| *l),
            assumed,
        }
    }
}

pub fn grants(file: &Path, text: &str) -> Result<Vec<Grant>> {
    let mut fold = Fold::new(unit_of(file));
    fold.feed(file, text)?;
    Ok(vec![fold.grant()])
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

    #[test]
    fn drop_ins_fold_over_the_unit_file() {
        let mut fold = Fold::new("web.service".into());
        fold.feed(Path::new("web.service"), "[Service]\nUser=www-data\nAmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW\n").unwrap();
        fold.feed(Path::new("web.service.d/capprof.conf"), "[Service]\nAmbientCapabilities=\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n").unwrap();
        let g = fold.grant();
        assert_eq!(g.granted.sorted_names(), ["NET_BIND_SERVICE"]);
        assert_eq!((g.file, g.capabilities_line), (PathBuf::from("web.service.d/capprof.conf"), 3));
    }
}
