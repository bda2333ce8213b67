//! docker compose: a `services:` snippet with `cap_drop`/`cap_add` per container.

use std::collections::BTreeMap;

use serde::Serialize;

use super::dns_label;
use crate::error::{Error, ErrorKind, Result};
use crate::profile::Profile;

#[derive(Serialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Serialize)]
struct Service {
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    cap_drop: Vec<String>,
    cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    security_opt: Vec<String>,
}

/// One service per workload, named after its compose service label, else its name.
pub fn services(p: &Profile) -> Result<String> {
    let mut services = BTreeMap::new();
    for w in &p.workloads {
        let c = w.container.as_ref();
        let name = c.and_then(|c| c.labels.get("com.docker.compose.service").filter(|n| !n.is_empty()).cloned()).unwrap_or_else(|| dns_label(&w.name));
        let image = c.map(|c| c.image.clone()).filter(|i| !i.is_empty());
        services.insert(
            name,
            Service {
                image,
                cap_drop: w.capabilities.drop.clone(),
                cap_add: w.capabilities.add.iter().map(|c| c.name().to_string()).collect(),
                security_opt: [w.no_new_privileges_safe.then(|| "no-new-privileges:true".to_string()), w.seccomp.as_ref().and_then(|s| s.file.as_ref()).map(|f| format!("seccomp:{f}"))]
                    .into_iter()
                    .flatten()
                    .collect(),
            },
        );
    }
    serde_norway::to_string(&Compose { services }).map_err(|e| Error::new(ErrorKind::Internal, format!("rendering YAML: {e}")))
}
