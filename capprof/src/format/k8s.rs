//! Kubernetes container `securityContext` snippets.

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::profile::WorkloadProfile;

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
}

#[derive(Serialize)]
struct Capabilities {
    drop: Vec<String>,
    add: Vec<String>,
}

/// `securityContext:` with `capabilities: {drop: [ALL], add: [...]}`, and
/// `allowPrivilegeEscalation: false` when nothing seen needs privilege escalation.
pub fn security_context(w: &WorkloadProfile) -> Result<String> {
    let snippet = Snippet {
        security_context: SecurityContext {
            allow_privilege_escalation: w.no_new_privileges_safe.then_some(false),
            capabilities: Capabilities {
                drop: w.capabilities.drop.clone(),
                add: w.capabilities.add.iter().map(|c| c.name().to_string()).collect(),
            },
        },
    };
    let yaml = serde_norway::to_string(&snippet).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering YAML: {e}")))?;
    Ok(format!("# capprof: {}\n{yaml}", w.name))
}
