//! Kubernetes container `securityContext` snippets.

use serde::Serialize;

use super::dns_label;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::{Profile, WorkloadProfile};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snippet {
    security_context: SecurityContext,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_privilege_escalation: Option<bool>,
    capabilities: Capabilities,
    #[serde(skip_serializing_if = "Option::is_none")]
    seccomp_profile: Option<SeccompProfile>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeccompProfile {
    r#type: &'static str,
    localhost_profile: String,
}

#[derive(Serialize)]
struct Capabilities {
    drop: Vec<String>,
    add: Vec<String>,
}

fn context(w: &WorkloadProfile) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: w.no_new_privileges_safe.then_some(false),
        capabilities: Capabilities {
            drop: w.capabilities.drop.clone(),
            add: w.capabilities.add.iter().map(|c| c.name().to_string()).collect(),
        },
        seccomp_profile: w.seccomp.as_ref().map(|_| SeccompProfile { r#type: "Localhost", localhost_profile: super::seccomp::localhost_profile(w) }),
    }
}

/// How the kubelet finds a Localhost profile, for the outputs that refer to one.
fn seccomp_note(w: &WorkloadProfile) -> String {
    match w.seccomp.as_ref() {
        Some(s) => format!(
            "# seccomp: copy {} to /var/lib/kubelet/seccomp/{} on every node (or apply `-f spo` and use operator/NAMESPACE/NAME.json)\n",
            super::plain(s.file.as_deref().unwrap_or(&super::seccomp::file_name(w))),
            super::seccomp::localhost_profile(w)
        ),
        None => String::new(),
    }
}

#[derive(Serialize)]
struct Patch {
    spec: PatchSpec,
}

#[derive(Serialize)]
struct PatchSpec {
    template: Template,
}

#[derive(Serialize)]
struct Template {
    spec: PodSpec,
}

#[derive(Serialize)]
struct PodSpec {
    containers: Vec<PatchContainer>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PatchContainer {
    name: String,
    security_context: SecurityContext,
}

/// The Kubernetes name of a workload's container: its pod's container name label, else its
/// own name.
pub fn container_name(w: &WorkloadProfile) -> String {
    w.container.as_ref().and_then(|c| c.labels.get("io.kubernetes.container.name").filter(|n| !n.is_empty()).cloned()).unwrap_or_else(|| dns_label(&w.name))
}

/// A strategic merge patch for a Deployment (StatefulSet, DaemonSet alike): containers are
/// merged by name, so only their securityContext changes.
pub fn deployment_patch(p: &Profile) -> Result<String> {
    let patch = Patch {
        spec: PatchSpec {
            template: Template {
                spec: PodSpec {
                    containers: p.workloads.iter().map(|w| PatchContainer { name: container_name(w), security_context: context(w) }).collect(),
                },
            },
        },
    };
    let yaml = serde_norway::to_string(&patch).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering YAML: {e}")))?;
    let notes: String = p.workloads.iter().map(seccomp_note).collect();
    Ok(format!("# kubectl patch deployment NAME --patch-file this.yaml   (containers merged by name)\n{notes}{yaml}"))
}

/// `securityContext:` with `capabilities: {drop: [ALL], add: [...]}`, and
/// `allowPrivilegeEscalation: false` when nothing seen needs privilege escalation.
pub fn security_context(w: &WorkloadProfile) -> Result<String> {
    let snippet = Snippet { security_context: context(w) };
    let yaml = serde_norway::to_string(&snippet).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering YAML: {e}")))?;
    // A comment ends at a line break: what came from outside is made one inert line.
    Ok(format!("# capprof: {} (container {})\n{}{yaml}", super::plain(&w.name), super::plain(&container_name(w)), seccomp_note(w)))
}
