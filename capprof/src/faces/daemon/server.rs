//! The daemon's local HTTP API (unix socket by default, TCP only when asked): health,
//! workloads, profiles in every output format, Prometheus metrics. Everything it shows comes
//! from the durable store, so nothing is reported that a crash could take back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::learner::Health;
use super::store::{Store, WorkloadRecord};
use crate::capability::{CapSet, Capability};
use crate::format::{render, Format};
use crate::profile::{BackendSummary, Losses, Profile, WorkloadKind, WorkloadMeta, WorkloadProfile};

/// What request handlers share.
pub struct Shared {
    pub store: Arc<Mutex<Store>>,
    pub health: Arc<Mutex<Health>>,
    pub backend: BackendSummary,
    pub started: std::time::Instant,
    /// TCP connections may read only /metrics and /health.
    pub tcp_metrics_only: bool,
    /// The node's name, on every metric series.
    pub node: String,
}

/// A workload line of `GET /workloads` (and `capprof profiles`).
#[derive(Serialize, serde::Deserialize, Clone, Debug)]
pub struct WorkloadSummary {
    pub id: String,
    pub kind: crate::attribution::identity::IdentityKind,
    pub namespace: Option<String>,
    pub container: String,
    pub image: String,
    pub granted: Vec<Capability>,
    pub used: Vec<Capability>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub last_new_capability: u64,
    pub containers_seen: usize,
}

/// Serves one connection: a GET, a response, close.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: Arc<Shared>, tcp: bool) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = target.split('?').next().unwrap_or("/");
    let (status, content_type, body) = if method != "GET" {
        (405, "text/plain", "only GET\n".to_string())
    } else if tcp && shared.tcp_metrics_only && path != "/metrics" && path != "/health" {
        (403, "text/plain", "this listener serves /metrics and /health only (--tcp-metrics-only)\n".to_string())
    } else {
        let shared = shared.clone();
        let target = target.to_string();
        tokio::task::spawn_blocking(move || route(&shared, &target)).await.unwrap_or((500, "text/plain", "handler failed\n".into()))
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

pub(crate) fn route(shared: &Shared, target: &str) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: BTreeMap<String, String> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect();
    let result = match path {
        "/health" => health(shared).map(|b| (200, "application/json", b)),
        "/workloads" => summaries(shared).and_then(|s| json(&s)).map(|b| (200, "application/json", b)),
        "/profile" => profile_response(shared, &params),
        "/metrics" => super::metrics::render(shared).map(|b| (200, "text/plain; version=0.0.4", b)),
        _ => Ok((404, "text/plain", format!("no such endpoint: {path}\n"))),
    };
    result.unwrap_or_else(|e| (500, "text/plain", format!("{e}\n")))
}

fn json<T: Serialize>(v: &T) -> crate::error::Result<String> {
    serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(|e| crate::error::Error::new(crate::error::ErrorKind::Internal, e.to_string()))
}

fn health(shared: &Shared) -> crate::error::Result<String> {
    let h = shared.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let workloads = shared.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).workloads()?.len();
    json(&serde_json::json!({
        "status": "ok",
        "backend": shared.backend,
        "uptime_seconds": shared.started.elapsed().as_secs(),
        "workloads": workloads,
        "kernel_map_checks": h.kernel_checks,
        "losses": Losses::from(h.counters),
        "unattributed_checks": h.unattributed,
        "last_cycle_ms": h.last_cycle_ms,
    }))
}

fn summaries(shared: &Shared) -> crate::error::Result<Vec<WorkloadSummary>> {
    let store = shared.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut records = store.workloads()?;
    let facts = store.facts()?;
    drop(store);
    records.sort_by(|a, b| a.identity.id.cmp(&b.identity.id));
    Ok(records
        .into_iter()
        .map(|r| {
            let checks = facts.get(&r.identity.id).map(|f| f.iter().map(|(_, f)| f.to_check()).collect()).unwrap_or_default();
            let p = build(&r, checks);
            WorkloadSummary {
                id: r.identity.id.clone(),
                kind: r.identity.kind,
                namespace: r.identity.namespace.clone(),
                container: r.identity.container.clone(),
                image: r.container.as_ref().map(|c| c.image.clone()).unwrap_or_default(),
                granted: p.granted.clone().unwrap_or_default(),
                used: p.capabilities.add,
                first_seen: r.first_seen,
                last_seen: r.last_seen,
                last_new_capability: r.last_new_capability,
                containers_seen: r.containers.len(),
            }
        })
        .collect())
}

/// A workload's profile from its stored facts. A systemd service is described by systemd as
/// it is now (its user and bounding set, for `-f systemd`), when systemd can be asked.
pub fn build(r: &WorkloadRecord, checks: Vec<crate::attribution::Check>) -> WorkloadProfile {
    let service = match (r.identity.kind, r.identity.id.strip_prefix("service:")) {
        (crate::attribution::identity::IdentityKind::Service, Some(unit)) => crate::attribution::systemd::show(unit).ok().map(|u| u.info),
        _ => None,
    };
    let meta = WorkloadMeta {
        kind: if service.is_some() { WorkloadKind::Service } else { WorkloadKind::Container },
        service,
        name: r.identity.container.clone(),
        command: vec![],
        cgroup: String::new(),
        exit_status: None,
        container: r.container.clone(),
        net_uses: r.net_uses.clone(),
        portable: false,
    };
    let mut w = WorkloadProfile::build(meta, checks);
    w.name = r.identity.id.clone();
    if !r.syscalls.is_empty() {
        w.seccomp = Some(crate::profile::seccomp::SyscallProfile::from_uses(r.syscalls.clone(), vec![], w.kind));
    }
    // States written before facts kept their process's effective set.
    if w.granted.is_none() && r.granted != 0 {
        w.granted = Some(CapSet(r.granted).iter().collect());
    }
    w
}

fn profile_response(shared: &Shared, params: &BTreeMap<String, String>) -> crate::error::Result<(u16, &'static str, String)> {
    let format = match params.get("format").map(String::as_str).unwrap_or("json") {
        "json" => Format::Json,
        "human" => Format::Human,
        "docker" => Format::Docker,
        "compose" => Format::Compose,
        "k8s" => Format::K8s,
        "k8s-patch" => Format::K8sPatch,
        "systemd" => Format::Systemd,
        "seccomp" => Format::Seccomp,
        "spo" => Format::Spo,
        other => return Ok((400, "text/plain", format!("unknown format {other:?}: json, human, docker, compose, k8s, k8s-patch, systemd, seccomp, spo\n"))),
    };
    let store = shared.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let records = store.workloads()?;
    let facts = store.facts()?;
    drop(store);
    let selected: Vec<&WorkloadRecord> = match (params.get("id"), params.get("namespace")) {
        (Some(id), _) => match select(&records, id) {
            Ok(found) => found,
            Err(message) => return Ok((400, "text/plain", message)),
        },
        (None, Some(ns)) => records.iter().filter(|r| r.identity.namespace.as_deref() == Some(ns.as_str())).collect(),
        (None, None) if params.contains_key("all") => records.iter().collect(),
        _ => return Ok((400, "text/plain", "give id=WORKLOAD, namespace=NS or all=1\n".into())),
    };
    if selected.is_empty() {
        let what = params.get("id").or(params.get("namespace")).map(|n| format!(" matches {:?}", crate::format::plain(n))).unwrap_or_default();
        return Ok((404, "text/plain", format!("no workload{what} (see `capprof profiles`)\n")));
    }
    let workloads = selected
        .into_iter()
        .map(|r| build(r, facts.get(&r.identity.id).map(|f| f.iter().map(|(_, f)| f.to_check()).collect()).unwrap_or_default()))
        .collect();
    let h = shared.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut profile = Profile::assemble(shared.backend.clone(), Losses::from(h.counters), shared.started.elapsed().as_millis() as u64, workloads);
    profile.unattributed_checks = h.unattributed;
    let body = render(&profile, format)?;
    let ctype = if format == Format::Json { "application/json" } else { "text/plain" };
    Ok((200, ctype, body))
}

/// The workloads `name` means: its exact id; else those whose container (the name a manifest
/// uses, or the container's own name) is `name`, whose id ends with it (after a `/` or `:`), or
/// one of whose containers' ids starts with it. More than one is an error naming them.
fn select<'a>(records: &'a [WorkloadRecord], name: &str) -> std::result::Result<Vec<&'a WorkloadRecord>, String> {
    let exact: Vec<&WorkloadRecord> = records.iter().filter(|r| r.identity.id == name).collect();
    if !exact.is_empty() || name.is_empty() {
        return Ok(exact);
    }
    let found: Vec<&WorkloadRecord> = records
        .iter()
        .filter(|r| {
            r.identity.container == name
                || r.container.as_ref().is_some_and(|c| c.name == name)
                || r.identity.id.strip_suffix(name).is_some_and(|head| head.ends_with(['/', ':']))
                || (name.len() >= 4 && name.bytes().all(|b| b.is_ascii_hexdigit()) && r.containers.iter().any(|c| c.starts_with(name)))
        })
        .collect();
    if found.len() > 1 {
        let ids: Vec<String> = found.iter().map(|r| crate::format::plain(&r.identity.id)).collect();
        return Err(format!("{name:?} matches {} workloads: {}; give the full id\n", found.len(), ids.join(", ")));
    }
    Ok(found)
}

/// Percent-decoding for query parameters.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding for query parameters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, container: &str, ids: &[&str]) -> WorkloadRecord {
        WorkloadRecord {
            identity: crate::attribution::identity::Identity { id: id.into(), kind: crate::attribution::identity::IdentityKind::Container, namespace: None, container: container.into() },
            first_seen: 0,
            last_seen: 0,
            last_new_capability: 0,
            container: None,
            containers: ids.iter().map(|s| s.to_string()).collect(),
            granted: 0,
            used: 0,
            net_uses: vec![],
            syscalls: vec![],
        }
    }

    #[test]
    fn workloads_are_found_by_id_name_suffix_or_container_id() {
        let rs = [record("container:barsbb:1/bars-chowner", "bars-chowner", &["abcdef0123"]), record("compose:shop/web", "web", &["fedcba9876"]), record("container:img/web", "web", &["0123456789"])];
        let ids = |v: Vec<&WorkloadRecord>| v.into_iter().map(|r| r.identity.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(select(&rs, "container:barsbb:1/bars-chowner").unwrap()), ["container:barsbb:1/bars-chowner"]);
        assert_eq!(ids(select(&rs, "bars-chowner").unwrap()), ["container:barsbb:1/bars-chowner"]);
        assert_eq!(ids(select(&rs, "barsbb:1/bars-chowner").unwrap()), ["container:barsbb:1/bars-chowner"]);
        assert_eq!(ids(select(&rs, "fedcba").unwrap()), ["compose:shop/web"]);
        let err = select(&rs, "web").unwrap_err();
        assert!(err.contains("matches 2 workloads") && err.contains("compose:shop/web"), "{err}");
        assert!(select(&rs, "nothing").unwrap().is_empty());
        assert!(select(&rs, "").unwrap().is_empty());
    }

    #[test]
    fn query_encoding_round_trips() {
        for s in ["k8s:shop/cart/app", "container:img:1/name", "a b&c=d%"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%é"), "%é");
    }
}
