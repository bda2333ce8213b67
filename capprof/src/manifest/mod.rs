//! What deployment files grant: the other side of `capprof check`. Each file is read as what
//! it is (a docker compose file, Kubernetes YAML, a `docker run` line, a systemd unit or
//! drop-in), and every container or service in it becomes a [`Grant`]: the capabilities it
//! would run with, the privilege switches, and the line each came from.
//!
//! Defaults are the engines' own: a container that drops nothing holds Docker's (and
//! containerd's) default 14; `privileged` holds everything; a unit without
//! `CapabilityBoundingSet=` is bounded by nothing.

mod compose;
mod docker_run;
mod k8s;
mod unit;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::capability::{CapSet, Capability, DOCKER_DEFAULT};
use crate::error::{Error, ErrorKind, Result};

/// What kind of file a grant came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManifestKind {
    Compose,
    Kubernetes,
    DockerRun,
    Systemd,
}

/// One container's (or service's) capabilities as a manifest sets them.
#[derive(Clone, Debug)]
pub struct Grant {
    pub file: PathBuf,
    pub kind: ManifestKind,
    /// What holds it: `Deployment/web`, a compose file's `services`, a unit name.
    pub owner: String,
    /// The name workloads are matched by (container, compose service, unit).
    pub container: String,
    /// The container's (or the unit's) own line.
    pub line: usize,
    /// Where its capabilities are set (its own line when nowhere).
    pub capabilities_line: usize,
    /// What it would run with.
    pub granted: CapSet,
    /// `privileged: true`, `--privileged`.
    pub privileged: bool,
    /// `allowPrivilegeEscalation: false`, `no-new-privileges`, `NoNewPrivileges=yes`.
    pub no_new_privileges: bool,
    /// Where that is (or would be) set.
    pub no_new_privileges_line: usize,
    /// Set when the file does not say (a drop-in without `CapabilityBoundingSet=`).
    pub assumed: Option<String>,
}

/// The capabilities a container holds for `add`/`drop` lists over the engine's default.
pub fn container_set(add: &[(String, usize)], drop: &[(String, usize)], file: &Path) -> Result<CapSet> {
    let drop_all = drop.iter().any(|(n, _)| is_all(n));
    let mut set: CapSet = if drop_all { CapSet::empty() } else { DOCKER_DEFAULT.into_iter().collect() };
    for (name, line) in drop.iter().filter(|(n, _)| !is_all(n)) {
        set.remove(capability(name, file, *line)?);
    }
    for (name, line) in add {
        if is_all(name) {
            set = CapSet::full();
        } else {
            set.insert(capability(name, file, *line)?);
        }
    }
    Ok(set)
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL") || name.eq_ignore_ascii_case("CAP_ALL")
}

/// A capability name from a manifest; an unknown one is the file's error, with its line.
pub fn capability(name: &str, file: &Path, line: usize) -> Result<Capability> {
    name.trim().parse::<Capability>().map_err(|_| Error::new(ErrorKind::MalformedInput, format!("{}:{line}: {:?} is not a capability name", file.display(), crate::format::plain(name))))
}

fn text_of(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    String::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::MalformedInput, format!("{}: not UTF-8 text", file.display())))
}

fn is_unit(file: &Path, text: &str) -> bool {
    unit::looks_like_unit(&file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), text)
}

/// Every grant of `files`. A systemd unit's files (the unit file and its drop-ins, given in
/// any order) are folded into one grant, in systemd's order: the unit file, then the drop-ins
/// by file name.
pub fn read_all(files: &[PathBuf]) -> Result<Vec<Grant>> {
    let mut out = Vec::new();
    let mut units: std::collections::BTreeMap<String, Vec<(PathBuf, String)>> = Default::default();
    for file in files {
        let text = text_of(file)?;
        if is_unit(file, &text) {
            units.entry(unit::unit_of(file)).or_default().push((file.clone(), text));
        } else {
            out.extend(read_text(file, &text)?);
        }
    }
    for (name, mut parts) in units {
        parts.sort_by_key(|(f, _)| (!f.to_string_lossy().ends_with(".service"), f.file_name().map(|n| n.to_os_string())));
        let mut fold = unit::Fold::new(name);
        for (file, text) in &parts {
            fold.feed(file, text)?;
        }
        out.push(fold.grant());
    }
    Ok(out)
}

/// Reads every grant in `file`, whatever kind of manifest it is.
pub fn read(file: &Path) -> Result<Vec<Grant>> {
    read_text(file, &text_of(file)?)
}

fn read_text(file: &Path, text: &str) -> Result<Vec<Grant>> {
    if is_unit(file, text) {
        return unit::grants(file, text);
    }
    if let Some(grants) = docker_run::grants(file, text)? {
        return Ok(grants);
    }
    let docs = yaml::parse(text).map_err(|e| Error::new(ErrorKind::MalformedInput, format!("{}: not a manifest capprof reads (YAML: {e})", file.display())))?;
    if let Some(grants) = compose::grants(file, &docs)? {
        return Ok(grants);
    }
    if let Some(grants) = k8s::grants(file, &docs)? {
        return Ok(grants);
    }
    Err(Error::new(
        ErrorKind::MalformedInput,
        format!("{}: not a manifest capprof reads: no compose `services:`, no Kubernetes Pod or workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob), no `docker run` line, no systemd [Service] section", file.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: CapSet) -> Vec<&'static str> {
        set.sorted_names()
    }

    #[test]
    fn add_and_drop_over_the_default() {
        let f = Path::new("m.yaml");
        let l = |v: &[&str]| v.iter().map(|s| (s.to_string(), 1)).collect::<Vec<_>>();
        assert_eq!(container_set(&l(&["NET_ADMIN"]), &l(&["ALL"]), f).unwrap(), [Capability::NET_ADMIN].into_iter().collect());
        assert_eq!(container_set(&[], &[], f).unwrap().len(), 14);
        let without_raw = container_set(&[], &l(&["cap_net_raw"]), f).unwrap();
        assert_eq!(without_raw.len(), 13);
        assert!(!without_raw.contains(Capability::NET_RAW));
        assert_eq!(container_set(&l(&["ALL"]), &l(&["ALL"]), f).unwrap(), CapSet::full());
        assert_eq!(names(container_set(&l(&["CAP_SYS_ADMIN"]), &l(&["all"]), f).unwrap()), ["SYS_ADMIN"]);
        let err = container_set(&l(&["NET_BIND"]), &[], f).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedInput);
        assert!(err.to_string().starts_with("m.yaml:1: "), "{err}");
    }
}
