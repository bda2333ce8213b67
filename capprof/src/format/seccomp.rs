//! Seccomp outputs of a profile recorded with `--seccomp`: the OCI/Docker profile file of a
//! workload (`-f seccomp`, for `--security-opt seccomp=FILE` and the kubelet's `Localhost`
//! profiles) and the Security Profiles Operator's `SeccompProfile` resource (`-f spo`). The
//! docker, compose and k8s outputs refer to the file ([`file_name`]).

use serde::Serialize;

use super::dns_label;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::{Profile, WorkloadProfile};

/// Why a seccomp output was refused.
pub const NEEDS_SECCOMP: &str = "this profile has no system calls: record it with --seccomp (or run the daemon with --seccomp)";

/// The workload whose allow list `-f seccomp` prints: the first container with one, else the
/// first workload with one. (One file holds one profile: with several containers, the docker,
/// compose and k8s outputs write one file each, and `-f spo` gives one resource each.)
fn main(p: &Profile) -> Result<&WorkloadProfile> {
    let with: Vec<&WorkloadProfile> = p.workloads.iter().filter(|w| w.seccomp.is_some()).collect();
    let containers = with.iter().filter(|w| w.kind == crate::profile::WorkloadKind::Container).count();
    if containers > 1 {
        eprintln!("capprof: note: {containers} containers have seccomp profiles; -f seccomp gives the first's (-f compose, docker or k8s write one file each)");
    }
    with.iter()
        .find(|w| w.kind == crate::profile::WorkloadKind::Container)
        .or(with.first())
        .copied()
        .ok_or_else(|| Error::new(ErrorKind::Usage, NEEDS_SECCOMP))
}

/// The OCI/Docker seccomp profile of the main workload.
pub fn oci(p: &Profile) -> Result<String> {
    let w = main(p)?;
    Ok(w.seccomp.as_ref().map(|s| s.to_oci().to_json()).unwrap_or_default())
}

/// The file a workload's profile is written to beside the output (and referred to by the
/// docker, compose and k8s outputs).
pub fn file_name(w: &WorkloadProfile) -> String {
    format!("{}.seccomp.json", dns_label(&w.name))
}

/// Where the k8s outputs point the kubelet: relative to its seccomp root
/// (/var/lib/kubelet/seccomp).
pub fn localhost_profile(w: &WorkloadProfile) -> String {
    format!("capprof/{}", file_name(w))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: Spec,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    default_action: &'static str,
    architectures: Vec<&'static str>,
    syscalls: Vec<Rule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    action: &'static str,
    names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errno_ret: Option<u32>,
}

/// One `SeccompProfile` per workload with system calls; pods then use
/// `localhostProfile: operator/NAMESPACE/NAME.json`.
pub fn spo(p: &Profile) -> Result<String> {
    let mut docs = Vec::new();
    for w in p.workloads.iter() {
        let Some(s) = &w.seccomp else { continue };
        let namespace = w.container.as_ref().and_then(|c| c.labels.get("io.kubernetes.pod.namespace")).filter(|n| !n.is_empty()).cloned();
        let name = super::k8s::container_name(w);
        let resource = Resource {
            api_version: "security-profiles-operator.x-k8s.io/v1beta1",
            kind: "SeccompProfile",
            metadata: Metadata { name: name.clone(), namespace: namespace.clone() },
            spec: Spec {
                default_action: "SCMP_ACT_ERRNO",
                architectures: s.architectures.iter().map(|a| a.scmp_name()).collect(),
                syscalls: std::iter::once(Rule { action: "SCMP_ACT_ALLOW", names: s.allowed_names().into_iter().collect(), errno_ret: None })
                    .chain((!s.enosys_names().is_empty()).then(|| Rule { action: "SCMP_ACT_ERRNO", names: s.enosys_names().into_iter().collect(), errno_ret: Some(crate::seccomp::oci::ENOSYS) }))
                    .collect(),
            },
        };
        let yaml = serde_norway::to_string(&resource).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering YAML: {e}")))?;
        docs.push(format!(
            "# capprof: {} ({} system calls); pods: seccompProfile: {{type: Localhost, localhostProfile: operator/{}/{name}.json}}\n{yaml}",
            super::plain(&w.name),
            s.syscalls.len(),
            namespace.as_deref().unwrap_or("NAMESPACE"),
        ));
    }
    if docs.is_empty() {
        return Err(Error::new(ErrorKind::Usage, NEEDS_SECCOMP));
    }
    Ok(docs.join("---\n"))
}

/// The report's seccomp section (for [`super::human`]).
pub fn summary(out: &mut String, s: &crate::profile::seccomp::SyscallProfile) {
    use crate::profile::seccomp::Source;
    use std::fmt::Write as _;
    let of = |src: Source| s.syscalls.iter().filter(|c| c.source == src).count();
    let arches: Vec<&str> = s.architectures.iter().map(|a| a.name()).collect();
    let _ = writeln!(
        out,
        "\nsystem calls (seccomp allow list): {} on {} ({} by the workload, {} by the runtime after its filter, {} assumed, {} proven on a re-run)",
        s.syscalls.len(),
        arches.join(", "),
        of(Source::Workload),
        of(Source::Runtime),
        of(Source::Assumed),
        of(Source::Proven),
    );
    let mut top: Vec<&crate::profile::seccomp::SyscallUse> = s.syscalls.iter().filter(|c| c.count > 0).collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
    let line: Vec<String> = top.iter().take(12).map(|c| format!("{} {}", c.name, c.count)).collect();
    let _ = writeln!(out, "  most made: {}", line.join(", "));
    let _ = writeln!(out, "  runtime boundary: {}", s.boundary);
    let removed = s.removed_from_docker_default();
    let _ = writeln!(out, "  against Docker's default profile: {} calls it allows are refused here{}", removed.len(), if removed.is_empty() { String::new() } else { format!(" (e.g. {})", removed.iter().filter(|n| NOTABLE.contains(*n)).take(8).copied().collect::<Vec<_>>().join(", ")) });
    for r in &s.refused {
        let _ = writeln!(out, "  refused by seccomp: {} ({}) {}x by {}", r.name, r.arch.name(), r.count, super::plain(&r.programs.join(", ")));
    }
    for r in &s.enosys {
        let _ = writeln!(out, "  answered ENOSYS by seccomp, and the program went on: {} ({}) {}x by {} (the profile answers it ENOSYS too)", r.name, r.arch.name(), r.count, super::plain(&r.programs.join(", ")));
    }
    for u in &s.unnamed {
        let _ = writeln!(out, "  not in any table (left out): {} ({}) {}x", u.name, u.arch.name(), u.count);
    }
    if let Some(f) = &s.file {
        let _ = writeln!(out, "  profile: {} (docker run --security-opt seccomp={})", super::plain(f), super::plain(f));
    }
}

/// Calls worth naming when they are dropped: the kernel attack surface container escapes use.
const NOTABLE: &[&str] = &["ptrace", "process_vm_writev", "io_uring_setup", "keyctl", "add_key", "unshare", "userfaultfd", "bpf", "perf_event_open", "mount", "pivot_root", "chroot", "personality", "memfd_create", "open_by_handle_at", "name_to_handle_at", "kcmp", "setns", "clone"];
