//! docker compose files: `services.NAME.{cap_add, cap_drop, privileged, security_opt}`.

use std::path::Path;
use std::rc::Rc;

use super::yaml::Node;
use super::{container_set, Grant, ManifestKind};
use crate::capability::CapSet;
use crate::error::Result;

/// The grants of a compose file; None when `docs` is not one (no `services:` mapping).
pub fn grants(file: &Path, docs: &[Rc<Node>]) -> Result<Option<Vec<Grant>>> {
    let [doc] = docs else { return Ok(None) };
    let Some(services) = doc.get("services").and_then(|s| s.entries()) else { return Ok(None) };
    // Kubernetes objects have no `services:` key, but a stray one beside `kind:` is not compose.
    if doc.get("kind").is_some() || services.iter().any(|(_, v)| v.entries().is_none() && v.as_str() != Some("null")) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (key, service) in services {
        let Some(name) = key.as_str() else { continue };
        let add = service.get("cap_add").map(|n| n.strings()).unwrap_or_default();
        let drop = service.get("cap_drop").map(|n| n.strings()).unwrap_or_default();
        let privileged = service.get("privileged").and_then(|p| p.as_bool()).unwrap_or(false);
        let security_opt = service.get("security_opt");
        let no_new_privileges = security_opt.map(|s| s.strings()).unwrap_or_default().iter().any(|(o, _)| is_no_new_privileges(o));
        let line = key.line.max(1);
        let capabilities_line = service.key_line("cap_drop").or_else(|| service.key_line("cap_add")).or_else(|| service.key_line("privileged")).unwrap_or(line);
        let granted = if privileged { CapSet::full() } else { container_set(&add, &drop, file)? };
        out.push(Grant {
            file: file.to_path_buf(),
            kind: ManifestKind::Compose,
            owner: "services".into(),
            container: name.to_string(),
            line,
            capabilities_line,
            granted,
            privileged,
            no_new_privileges,
            no_new_privileges_line: service.key_line("security_opt").unwrap_or(line),
            assumed: None,
        });
    }
    Ok(Some(out))
}

/// `no-new-privileges`, `no-new-privileges:true`, `no-new-privileges=true`.
pub fn is_no_new_privileges(opt: &str) -> bool {
    let opt = opt.trim();
    match opt.strip_prefix("no-new-privileges") {
        Some("") => true,
        Some(rest) => matches!(rest.trim_start_matches([':', '=']), "true" | "1"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    fn read(text: &str) -> Vec<Grant> {
        grants(Path::new("compose.yaml"), &super::super::yaml::parse(text).unwrap()).unwrap().unwrap()
    }

    #[test]
    fn services_with_anchors_and_privileges() {
        let g = read(
            "x-hardened: &hardened\n  cap_drop: [ALL]\n  security_opt: [\"no-new-privileges:true\"]\nservices:\n  web:\n    <<: *hardened\n    image: nginx\n    cap_add: [NET_BIND_SERVICE]\n  db:\n    image: postgres\n  root:\n    image: x\n    privileged: true\n",
        );
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].container, "web");
        assert_eq!(g[0].granted, [Capability::NET_BIND_SERVICE].into_iter().collect());
        assert!(g[0].no_new_privileges);
        assert_eq!(g[0].line, 5);
        assert_eq!(g[0].capabilities_line, 2, "the cap_drop that applies is the anchor's");
        assert_eq!(g[1].granted.len(), 14, "nothing dropped: Docker's default");
        assert!(!g[1].no_new_privileges);
        assert!(g[2].privileged);
        assert_eq!(g[2].granted, CapSet::full());
    }

    #[test]
    fn not_compose() {
        let docs = super::super::yaml::parse("apiVersion: v1\nkind: Pod\n").unwrap();
        assert!(grants(Path::new("x"), &docs).unwrap().is_none());
        assert!(is_no_new_privileges("no-new-privileges"));
        assert!(!is_no_new_privileges("no-new-privileges:false"));
    }
}
