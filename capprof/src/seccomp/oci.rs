//! The OCI (and Docker) seccomp profile file: what `--security-opt seccomp=FILE`, runc,
//! crun and the kubelet's `Localhost` profiles read. capprof writes allow lists
//! (`defaultAction: SCMP_ACT_ERRNO`, `defaultErrnoRet: 1`, plus an ENOSYS rule for the calls
//! the program probed and fell back from) and reads any such file back for `verify --seccomp
//! FILE`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Arch;
use crate::error::{Error, ErrorKind, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SeccompFile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub names: Vec<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions (kept as given: capprof writes none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<serde_json::Value>,
    /// Docker's `includes`/`excludes` (capabilities, kernels, arches), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<serde_json::Value>,
}

const ALLOW: &str = "SCMP_ACT_ALLOW";
const ERRNO: &str = "SCMP_ACT_ERRNO";
/// What a call the profile answers ENOSYS gets (Linux's errno 38).
pub const ENOSYS: u32 = 38;

/// What the filter answers one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Allow,
    /// Refused with this errno.
    Errno(u32),
}

impl SeccompFile {
    /// An allow list: these names on these tables, EPERM for the rest.
    pub fn allow_list(architectures: &[Arch], names: &BTreeSet<String>) -> Self {
        Self {
            default_action: ERRNO.into(),
            default_errno_ret: Some(1),
            architectures: architectures.iter().map(|a| a.scmp_name().to_string()).collect(),
            syscalls: vec![Rule { names: names.iter().cloned().collect(), action: ALLOW.into(), errno_ret: None, args: vec![], includes: None, excludes: None }],
        }
    }

    /// The same profile, answering `names` with ENOSYS (an explicit rule after the allow
    /// list): a program that probes them falls back as it did while recording.
    pub fn answering_enosys(mut self, names: &BTreeSet<String>) -> Self {
        if !names.is_empty() {
            self.syscalls.push(Rule { names: names.iter().cloned().collect(), action: ERRNO.into(), errno_ret: Some(ENOSYS), args: vec![], includes: None, excludes: None });
        }
        self
    }

    /// The same profile with `extra` allowed too (and no longer answered otherwise).
    pub fn with_allowed(&self, extra: &BTreeSet<String>) -> Result<Self> {
        let mut names = self.allowed_names();
        names.extend(extra.iter().cloned());
        let mut out = Self::allow_list(&self.arches()?, &names);
        for r in self.syscalls.iter().filter(|r| r.action == ERRNO) {
            let kept: Vec<String> = r.names.iter().filter(|n| !extra.contains(*n)).cloned().collect();
            if !kept.is_empty() {
                out.syscalls.push(Rule { names: kept, ..r.clone() });
            }
        }
        Ok(out)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let file: Self = serde_json::from_str(text).map_err(|e| Error::new(ErrorKind::MalformedInput, format!("{origin} is not a seccomp profile (OCI/Docker JSON): {e}")))?;
        if file.default_action.is_empty() {
            return Err(Error::new(ErrorKind::MalformedInput, format!("{origin}: defaultAction is empty")));
        }
        Ok(file)
    }

    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Every name an unconditional ALLOW rule lists.
    pub fn allowed_names(&self) -> BTreeSet<String> {
        self.syscalls.iter().filter(|r| r.action == ALLOW && r.args.is_empty() && r.includes.is_none() && r.excludes.is_none()).flat_map(|r| r.names.iter().cloned()).collect()
    }

    /// The tables the profile covers (x86_64 when it names none: libseccomp's native one).
    pub fn arches(&self) -> Result<Vec<Arch>> {
        if self.architectures.is_empty() {
            return Ok(vec![Arch::X86_64]);
        }
        self.architectures
            .iter()
            .map(|a| Arch::from_scmp_name(a).ok_or_else(|| Error::new(ErrorKind::MalformedInput, format!("seccomp profile architecture {a:?} is not one capprof knows (SCMP_ARCH_X86_64, SCMP_ARCH_X32, SCMP_ARCH_X86)"))))
            .collect()
    }

    /// What the filter answers each named call, as numbers per table, for the filter capprof
    /// installs itself (the rest get `defaultErrnoRet`). Only plain lists compile:
    /// unconditional SCMP_ACT_ALLOW and SCMP_ACT_ERRNO rules under an SCMP_ACT_ERRNO default; a
    /// profile with other actions or conditions is for an engine's libseccomp (run it through
    /// docker or podman). Where rules overlap, the allow wins, as libseccomp's does.
    pub fn answers(&self) -> Result<Vec<(Arch, BTreeMap<u32, Answer>)>> {
        let unsupported = |why: String| Error::new(ErrorKind::Usage, format!("this seccomp profile {why}: capprof installs plain lists itself (defaultAction SCMP_ACT_ERRNO, unconditional SCMP_ACT_ALLOW and SCMP_ACT_ERRNO rules); run the workload through docker or podman to use it"));
        if self.default_action != ERRNO {
            return Err(unsupported(format!("has defaultAction {}", self.default_action)));
        }
        if let Some(r) = self.syscalls.iter().find(|r| !(r.action == ALLOW || r.action == ERRNO) || !r.args.is_empty() || r.includes.is_some() || r.excludes.is_some()) {
            return Err(unsupported(format!("has a conditional rule or one that is neither ALLOW nor ERRNO ({} for {})", r.action, r.names.join(","))));
        }
        Ok(self
            .arches()?
            .into_iter()
            .map(|arch| {
                let mut m = BTreeMap::new();
                for r in self.syscalls.iter().filter(|r| r.action == ERRNO) {
                    for nr in r.names.iter().filter_map(|n| arch.number_of(n)) {
                        m.insert(nr, Answer::Errno(r.errno_ret.unwrap_or(self.errno())));
                    }
                }
                for nr in self.allowed_names().iter().filter_map(|n| arch.number_of(n)) {
                    m.insert(nr, Answer::Allow);
                }
                (arch, m)
            })
            .collect())
    }

    /// The calls a rule answers with ENOSYS.
    pub fn enosys_names(&self) -> BTreeSet<String> {
        self.syscalls.iter().filter(|r| r.action == ERRNO && r.errno_ret == Some(ENOSYS)).flat_map(|r| r.names.iter().cloned()).collect()
    }

    /// The errno refused calls get.
    pub fn errno(&self) -> u32 {
        self.default_errno_ret.unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allow_list_round_trips_and_compiles() {
        let names: BTreeSet<String> = ["read", "write", "execve", "no_such_call"].iter().map(|s| s.to_string()).collect();
        let f = SeccompFile::allow_list(&[Arch::X86_64, Arch::I386], &names);
        let back = SeccompFile::parse(&f.to_json(), "t").unwrap();
        assert_eq!(back, f);
        let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(json["architectures"][1], "SCMP_ARCH_X86");
        let answers = back.answers().unwrap();
        let allowed = |m: &BTreeMap<u32, Answer>| m.iter().filter(|(_, a)| **a == Answer::Allow).map(|(n, _)| *n).collect::<BTreeSet<u32>>();
        assert_eq!((answers[0].0, allowed(&answers[0].1)), (Arch::X86_64, [0u32, 1, 59].into()), "unknown names are left out, like runc does");
        assert_eq!((answers[1].0, allowed(&answers[1].1)), (Arch::I386, [3u32, 4, 11].into()));
        // Calls probed while recording are answered ENOSYS, by an explicit rule after the list.
        let f = f.answering_enosys(&["clone3".to_string(), "read".to_string()].into());
        let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(json["syscalls"][1]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(json["syscalls"][1]["errnoRet"], 38);
        let answers = SeccompFile::parse(&f.to_json(), "t").unwrap().answers().unwrap();
        assert_eq!(answers[0].1.get(&435), Some(&Answer::Errno(38)), "clone3");
        assert_eq!(answers[0].1.get(&0), Some(&Answer::Allow), "an allowed call stays allowed");
        assert_eq!(f.with_allowed(&["clone3".to_string()].into()).unwrap().enosys_names(), ["read".to_string()].into());
    }

    #[test]
    fn conditional_profiles_and_garbage_are_refused_with_a_reason() {
        let docker_like = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#;
        let e = SeccompFile::parse(docker_like, "d").unwrap().answers().unwrap_err();
        assert!(e.to_string().contains("conditional"), "{e}");
        assert_eq!(SeccompFile::parse("{", "x").unwrap_err().kind(), ErrorKind::MalformedInput);
        assert_eq!(SeccompFile::parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_PPC"]}"#, "x").unwrap().arches().unwrap_err().kind(), ErrorKind::MalformedInput);
    }
}
