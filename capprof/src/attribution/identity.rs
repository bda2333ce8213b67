//! Workload identity across container restarts and replicas: Kubernetes namespace + owner +
//! container, Compose project + service, else image + container name; systemd units by name.

use serde::{Deserialize, Serialize};

use crate::attribution::container::ContainerInfo;

/// Who a stream of checks belongs to, stable across restarts and replicas.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// `k8s:NS/OWNER/CONTAINER`, `compose:PROJECT/SERVICE`, `container:IMAGE/NAME`, `service:UNIT`.
    pub id: String,
    pub kind: IdentityKind,
    /// Kubernetes namespace or Compose project.
    pub namespace: Option<String>,
    /// The name a manifest uses for the container (Kubernetes container, Compose service).
    pub container: String,
}

/// What an identity names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// Namespace, owner (Deployment, StatefulSet, ...) and container name.
    Kubernetes,
    /// Compose project and service.
    Compose,
    /// Image and container name.
    Container,
    /// A systemd unit.
    Service,
}

pub fn of_container(c: &ContainerInfo) -> Identity {
    let label = |k: &str| c.labels.get(k).filter(|v| !v.is_empty()).cloned();
    if let (Some(ns), Some(pod), Some(container)) =
        (label("io.kubernetes.pod.namespace"), label("io.kubernetes.pod.name"), label("io.kubernetes.container.name"))
    {
        let owner = pod_owner(&pod);
        return Identity { id: format!("k8s:{ns}/{owner}/{container}"), kind: IdentityKind::Kubernetes, namespace: Some(ns), container };
    }
    if let (Some(project), Some(service)) = (label("com.docker.compose.project"), label("com.docker.compose.service")) {
        return Identity { id: format!("compose:{project}/{service}"), kind: IdentityKind::Compose, namespace: Some(project), container: service };
    }
    let name = if c.name.is_empty() { c.id.chars().take(12).collect() } else { c.name.clone() };
    let image = if c.image.is_empty() { "unknown-image".to_string() } else { c.image.clone() };
    Identity { id: format!("container:{image}/{name}"), kind: IdentityKind::Container, namespace: None, container: name }
}

/// A systemd unit's cgroup (`/system.slice/nginx.service`).
pub fn of_service(path: &str) -> Option<Identity> {
    let unit = path.split('/').rev().find(|p| p.ends_with(".service"))?;
    Some(Identity { id: format!("service:{unit}"), kind: IdentityKind::Service, namespace: None, container: unit.trim_end_matches(".service").into() })
}

/// The controller behind a pod, from its name (no API server needed): Deployment pods are
/// `NAME-<template hash>-<5 chars>`, DaemonSet and Job pods `NAME-<5 chars>`, StatefulSet pods
/// `NAME-<ordinal>`. A heuristic: a bare pod whose name happens to look like that is grouped
/// with its look-alikes.
pub fn pod_owner(pod: &str) -> String {
    // Kubernetes draws both from its "safe" alphabet: no vowels, no 0, 1 or 3.
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let parts: Vec<&str> = pod.split('-').collect();
    let is_suffix = |s: &str| s.len() == 5 && s.bytes().all(|b| SAFE.contains(&b));
    let is_hash = |s: &str| (6..=10).contains(&s.len()) && s.bytes().all(|b| SAFE.contains(&b));
    let n = parts.len();
    if n >= 3 && is_suffix(parts[n - 1]) && is_hash(parts[n - 2]) {
        return parts[..n - 2].join("-");
    }
    if n >= 2 && (is_suffix(parts[n - 1]) || parts[n - 1].bytes().all(|b| b.is_ascii_digit())) {
        return parts[..n - 1].join("-");
    }
    pod.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn pod_owners() {
        assert_eq!(pod_owner("web-7d4b9c8f6b-x2x9z"), "web");
        assert_eq!(pod_owner("my-api-5f7c9d8b7-bcdfg"), "my-api");
        assert_eq!(pod_owner("db-0"), "db");
        assert_eq!(pod_owner("node-exporter-k2j4l"), "node-exporter");
        assert_eq!(pod_owner("standalone"), "standalone");
    }

    #[test]
    fn identities() {
        let mut c = ContainerInfo { name: "proj-web-1".into(), image: "nginx".into(), ..Default::default() };
        assert_eq!(of_container(&c).id, "container:nginx/proj-web-1");
        c.labels = HashMap::from([("com.docker.compose.project".into(), "proj".into()), ("com.docker.compose.service".into(), "web".into())]);
        assert_eq!(of_container(&c).id, "compose:proj/web");
        c.labels.extend([
            ("io.kubernetes.pod.namespace".to_string(), "shop".to_string()),
            ("io.kubernetes.pod.name".to_string(), "cart-6b7f9d5c4d-q8w7z".to_string()),
            ("io.kubernetes.container.name".to_string(), "app".to_string()),
        ]);
        let k = of_container(&c);
        assert_eq!((k.id.as_str(), k.namespace.as_deref()), ("k8s:shop/cart/app", Some("shop")));
        assert_eq!(of_service("/system.slice/nginx.service").unwrap().id, "service:nginx.service");
        assert!(of_service("/user.slice").is_none());
    }
}
