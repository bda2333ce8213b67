//! Kubernetes YAML: Pods and the workloads that template them (Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, PodTemplate), in any number of
//! documents and in `kind: List`. Each container (init and ephemeral ones too) is a grant: its
//! `securityContext.capabilities`, `privileged` and `allowPrivilegeEscalation`.

use std::path::Path;
use std::rc::Rc;

use super::yaml::Node;
use super::{container_set, Grant, ManifestKind};
use crate::capability::CapSet;
use crate::error::Result;

/// Where each kind keeps its pod spec.
fn pod_spec<'a>(kind: &str, doc: &'a Node) -> Option<&'a Rc<Node>> {
    match kind {
        "Pod" => doc.get("spec"),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ReplicationController" | "Job" => doc.at(&["spec", "template", "spec"]),
        "CronJob" => doc.at(&["spec", "jobTemplate", "spec", "template", "spec"]),
        "PodTemplate" => doc.at(&["template", "spec"]),
        _ => None,
    }
}

/// The grants of Kubernetes documents; None when none of them is a Pod or a workload.
pub fn grants(file: &Path, docs: &[Rc<Node>]) -> Result<Option<Vec<Grant>>> {
    let mut objects: Vec<Rc<Node>> = Vec::new();
    for doc in docs {
        match doc.get("kind").and_then(|k| k.as_str()) {
            Some("List") => objects.extend(doc.get("items").and_then(|i| i.as_seq()).unwrap_or_default().iter().cloned()),
            Some(_) => objects.push(doc.clone()),
            None => {}
        }
    }
    let mut out = Vec::new();
    let mut found = false;
    // capprof's own `-f k8s-patch` (a Deployment patch without `kind:`) and `-f k8s` (a bare
    // `securityContext:` per container) are read as what they will become.
    for doc in docs.iter().filter(|d| d.get("kind").is_none()) {
        if let Some(containers) = doc.at(&["spec", "template", "spec", "containers"]).and_then(|c| c.as_seq()) {
            found = true;
            for c in containers {
                out.push(container(file, "patch", c)?);
            }
        } else if doc.get("securityContext").is_some() && doc.entries().is_some_and(|e| e.len() == 1) {
            found = true;
            out.push(container(file, "securityContext snippet", doc)?);
        }
    }
    for obj in &objects {
        let Some(kind) = obj.get("kind").and_then(|k| k.as_str()) else { continue };
        let Some(spec) = pod_spec(kind, obj) else { continue };
        found = true;
        let name = obj.at(&["metadata", "name"]).and_then(|n| n.as_str()).unwrap_or("?");
        let owner = match obj.at(&["metadata", "namespace"]).and_then(|n| n.as_str()) {
            Some(ns) => format!("{kind}/{name} (namespace {ns})"),
            None => format!("{kind}/{name}"),
        };
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for c in spec.get(list).and_then(|l| l.as_seq()).unwrap_or_default() {
                out.push(container(file, &owner, c)?);
            }
        }
    }
    Ok(found.then_some(out))
}

fn container(file: &Path, owner: &str, c: &Node) -> Result<Grant> {
    let line = c.line.max(1);
    let name = c.get("name").and_then(|n| n.as_str()).unwrap_or("").to_string();
    let sc = c.get("securityContext");
    let caps = sc.and_then(|s| s.get("capabilities"));
    let add = caps.and_then(|k| k.get("add")).map(|n| n.strings()).unwrap_or_default();
    let drop = caps.and_then(|k| k.get("drop")).map(|n| n.strings()).unwrap_or_default();
    let privileged = sc.and_then(|s| s.get("privileged")).and_then(|p| p.as_bool()).unwrap_or(false);
    let escalation = sc.and_then(|s| s.get("allowPrivilegeEscalation"));
    let granted = if privileged { CapSet::full() } else { container_set(&add, &drop, file)? };
    Ok(Grant {
        file: file.to_path_buf(),
        kind: ManifestKind::Kubernetes,
        owner: owner.to_string(),
        container: name,
        line,
        capabilities_line: sc.and_then(|s| s.key_line("capabilities")).or_else(|| c.key_line("securityContext")).unwrap_or(line),
        granted,
        privileged,
        // Kubernetes allows escalation unless told not to (and always under privileged).
        no_new_privileges: !privileged && escalation.and_then(|e| e.as_bool()) == Some(false),
        no_new_privileges_line: sc.and_then(|s| s.key_line("allowPrivilegeEscalation")).or_else(|| c.key_line("securityContext")).unwrap_or(line),
        assumed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    fn read(text: &str) -> Option<Vec<Grant>> {
        grants(Path::new("k.yaml"), &super::super::yaml::parse(text).unwrap()).unwrap()
    }

    #[test]
    fn every_kind_and_document() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      initContainers:\n      - name: init\n        image: busybox\n      containers:\n      - name: web\n        image: nginx\n        securityContext:\n          allowPrivilegeEscalation: false\n          capabilities:\n            drop: [ALL]\n            add: [NET_BIND_SERVICE]\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - name: job\n            securityContext: {privileged: true, allowPrivilegeEscalation: false}\n";
        let g = read(text).unwrap();
        assert_eq!(g.iter().map(|g| g.container.as_str()).collect::<Vec<_>>(), ["init", "web", "job"]);
        assert_eq!(g[0].granted.len(), 14);
        assert_eq!(g[1].granted, [Capability::NET_BIND_SERVICE].into_iter().collect());
        assert!(g[1].no_new_privileges);
        assert_eq!(g[1].line, 16);
        assert_eq!(g[1].capabilities_line, 20);
        assert_eq!(g[1].owner, "Deployment/web");
        assert!(g[2].privileged && !g[2].no_new_privileges);
    }

    #[test]
    fn lists_and_non_workloads() {
        let g = read("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec:\n    containers:\n    - name: c\n").unwrap();
        assert_eq!(g[0].owner, "Pod/p");
        assert!(read("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n").is_none());
        assert!(read("just: a map\n").is_none());
        let patch = read("spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        securityContext:\n          capabilities: {drop: [ALL], add: [CHOWN]}\n").unwrap();
        assert_eq!((patch[0].container.as_str(), patch[0].granted.len()), ("web", 1));
        let snippet = read("securityContext:\n  allowPrivilegeEscalation: false\n  capabilities:\n    drop: [ALL]\n    add: []\n---\nsecurityContext:\n  capabilities:\n    drop: [ALL]\n").unwrap();
        assert_eq!(snippet.len(), 2);
        assert!(snippet[0].granted.is_empty() && snippet[0].no_new_privileges);
    }
}
