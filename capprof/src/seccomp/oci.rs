//! The OCI (and Docker) seccomp profile file: what `--security-opt seccomp=FILE`, runc,
//! crun and the kubelet's `Localhost` profiles read. capprof writes allow lists
//! (`defaultAction: SCMP_ACT_ERRNO`, `defaultErrnoRet: 1`) and reads any such file back for
//! `verify --seccomp FILE`.

use std::collections::BTreeSet;

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

    /// The allow list as numbers per table, for the filter capprof installs itself. Only plain
    /// allow lists compile: a profile with other actions or conditions is for an engine's
    /// libseccomp (run it through docker or podman).
    pub fn numbers(&self) -> Result<Vec<(Arch, BTreeSet<u32>)>> {
        let unsupported = |why: String| Error::new(ErrorKind::Usage, format!("this seccomp profile {why}: capprof installs plain allow lists itself (defaultAction SCMP_ACT_ERRNO, unconditional SCMP_ACT_ALLOW rules); run the workload through docker or podman to use it"));
        if self.default_action != ERRNO {
            return Err(unsupported(format!("has defaultAction {}", self.default_action)));
        }
        if let Some(r) = self.syscalls.iter().find(|r| r.action != ALLOW || !r.args.is_empty() || r.includes.is_some() || r.excludes.is_some()) {
            return Err(unsupported(format!("has a conditional or non-ALLOW rule ({} for {})", r.action, r.names.join(","))));
        }
        let names = self.allowed_names();
        Ok(self.arches()?.into_iter().map(|arch| (arch, names.iter().filter_map(|n| arch.number_of(n)).collect())).collect())
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
        let numbers = back.numbers().unwrap();
        assert_eq!(numbers[0], (Arch::X86_64, [0u32, 1, 59].into()), "unknown names are left out, like runc does");
        assert_eq!(numbers[1], (Arch::I386, [3u32, 4, 11].into()));
    }

    #[test]
    fn conditional_profiles_and_garbage_are_refused_with_a_reason() {
        let docker_like = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#;
        let e = SeccompFile::parse(docker_like, "d").unwrap().numbers().unwrap_err();
        assert!(e.to_string().contains("conditional"), "{e}");
        assert_eq!(SeccompFile::parse("{", "x").unwrap_err().kind(), ErrorKind::MalformedInput);
        assert_eq!(SeccompFile::parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_PPC"]}"#, "x").unwrap().arches().unwrap_err().kind(), ErrorKind::MalformedInput);
    }
}
