//! `capprof export --prometheus URL`: the cluster-wide profile, built from the series every
//! node's daemon exports (`capprof_checks_total`, `capprof_workload_info`,
//! `capprof_workload_granted`, `capprof_losses_total`, each labelled with its node) and one
//! Prometheus scrapes. The union of needs over every node and replica; the classification is
//! the nodes' own (the `class` label). What the series do not carry stays on the nodes: call
//! sites, stacks, programs, hardening advice, system calls (`capprof export ID` on a node).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use crate::attribution::container::{ContainerInfo, Engine, Source};
use crate::capability::{CapSet, Capability, CapabilityId};
use crate::classify::Classification;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::profile::sets::{sorted, ClassSets};
use crate::profile::{BackendSummary, CapabilityChange, CheckSummary, Losses, Profile, Verdict, WorkloadKind, WorkloadProfile};

/// Which workloads to export: one (by id, or by its container name), a namespace's, or all.
pub struct Selection {
    workload: Option<String>,
    namespace: Option<String>,
    /// How far back a series counts (PromQL duration): a node gone since still contributes.
    pub window: String,
}

impl Selection {
    pub fn new(workload: Option<&str>, namespace: Option<&str>, window: &str) -> Result<Self> {
        let ok = !window.is_empty() && window.bytes().all(|b| b.is_ascii_digit() || b"smhdwy".contains(&b)) && window.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(Error::new(ErrorKind::Usage, format!("--window {window:?} is not a Prometheus duration (e.g. 30m, 6h, 7d)")));
        }
        Ok(Self { workload: workload.map(str::to_string), namespace: namespace.map(str::to_string), window: window.into() })
    }

    fn matches(&self, w: &Workload) -> bool {
        match (&self.workload, &self.namespace) {
            (Some(id), _) => w.id == *id || w.container == *id || w.id.strip_suffix(id.as_str()).is_some_and(|head| head.ends_with(['/', ':'])),
            (None, Some(ns)) => w.namespace == *ns,
            (None, None) => true,
        }
    }
}

/// One sample of an instant vector: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or_default()
    }
}

/// The series of the cluster, as Prometheus answered them.
#[derive(Default)]
pub struct Series {
    pub checks: Vec<Sample>,
    pub info: Vec<Sample>,
    pub granted: Vec<Sample>,
    pub losses: Vec<Sample>,
}

/// Asks Prometheus at `url` and builds the profile of the selected workloads.
pub fn export(url: &str, selection: &Selection, format: Format) -> Result<Profile> {
    if matches!(format, Format::Systemd | Format::Seccomp | Format::Spo | Format::DockerRun) {
        return Err(Error::new(
            ErrorKind::Usage,
            "export --prometheus gives json, human, docker, compose, k8s or k8s-patch: the series carry no system calls, units or commands (export them from a node's daemon)",
        ));
    }
    let server = Server::parse(url)?;
    let last = |metric: &str| format!("last_over_time({metric}[{}])", selection.window);
    let series = Series {
        checks: server.query(&last("capprof_checks_total"))?,
        info: server.query(&last("capprof_workload_info"))?,
        granted: server.query(&last("capprof_workload_granted"))?,
        losses: server.query(&last("capprof_losses_total"))?,
    };
    if series.checks.is_empty() && series.info.is_empty() {
        return Err(Error::new(ErrorKind::Usage, format!("Prometheus at {url} has no capprof series in the last {}: does it scrape the daemons (deploy/README.md)?", selection.window)));
    }
    let profile = build(&series, selection, url);
    if profile.workloads.is_empty() {
        let what = selection.workload.as_deref().map(|w| format!("workload {w:?}")).or(selection.namespace.as_deref().map(|n| format!("namespace {n:?}"))).unwrap_or_default();
        return Err(Error::new(ErrorKind::Usage, format!("no {what} in Prometheus at {url} (workloads there: `capprof_workload_info`)")));
    }
    Ok(profile)
}

/// A workload as the series describe it.
#[derive(Default)]
struct Workload {
    id: String,
    kind: String,
    namespace: String,
    container: String,
    image: String,
    nodes: BTreeSet<String>,
    granted: CapSet,
    /// (capability, verdict, class) → (count, nodes).
    checks: BTreeMap<(String, Verdict, Classification), (u64, BTreeSet<String>)>,
}

/// The profile of the selected workloads from the series (no network: unit-tested).
pub fn build(series: &Series, selection: &Selection, source: &str) -> Profile {
    let mut workloads: BTreeMap<String, Workload> = BTreeMap::new();
    for s in &series.info {
        if let Some(w) = entry(&mut workloads, s) {
            w.kind = s.label("kind").into();
            w.namespace = s.label("namespace").into();
            w.container = s.label("container").into();
            if w.image.is_empty() {
                w.image = s.label("image").into();
            }
        }
    }
    for s in &series.granted {
        if let (Some(w), Ok(c)) = (entry(&mut workloads, s), s.label("capability").parse::<Capability>()) {
            w.granted.insert(c);
        }
    }
    for s in &series.checks {
        let verdict = if s.label("verdict") == "denied" { Verdict::Denied } else { Verdict::Granted };
        let (Some(class), capability, node) = (Classification::from_label(s.label("class")), s.label("capability").to_string(), s.label("node").to_string()) else { continue };
        if let Some(w) = entry(&mut workloads, s) {
            let (count, nodes) = w.checks.entry((capability, verdict, class)).or_default();
            *count += s.value.max(0.0) as u64;
            nodes.insert(node);
        }
    }
    let mut losses = Losses::default();
    for s in &series.losses {
        let n = s.value.max(0.0) as u64;
        match s.label("kind") {
            "checks_map_full" => losses.checks_map_full += n,
            "events_dropped" => losses.events_dropped += n,
            "tasks_map_full" => losses.tasks_map_full += n,
            "syscalls_map_full" => losses.syscalls_map_full += n,
            _ => {}
        }
    }
    let profiles = workloads.values().filter(|w| selection.matches(w)).map(|w| profile_of(w, source)).collect();
    let backend = BackendSummary {
        name: "prometheus".into(),
        sees_opts: false,
        classification: format!("the nodes' own (capprof_checks_total's class label, from {source}); call sites, programs and hardening advice stay on the nodes"),
        program: None,
        floor_program: None,
        syscall_program: None,
        network_hooks: None,
    };
    Profile::assemble(backend, losses, 0, profiles)
}

/// The workload a sample is about, with the sample's node noted.
fn entry<'a>(workloads: &'a mut BTreeMap<String, Workload>, s: &Sample) -> Option<&'a mut Workload> {
    let id = s.label("workload");
    if id.is_empty() {
        return None;
    }
    let w = workloads.entry(id.to_string()).or_insert_with(|| Workload { id: id.to_string(), granted: CapSet::empty(), ..Workload::default() });
    let node = s.label("node");
    w.nodes.insert(if node.is_empty() { "unnamed node".into() } else { node.to_string() });
    Some(w)
}

fn profile_of(w: &Workload, source: &str) -> WorkloadProfile {
    let mut classes = ClassSets::default();
    let mut checks = Vec::new();
    for ((capability, verdict, class), (count, nodes)) in &w.checks {
        let known = capability.parse::<Capability>().ok();
        if let Some(c) = known {
            match class {
                Classification::Needed => classes.certain.insert(c),
                Classification::Conditional => classes.conditional.insert(c),
                Classification::Denied => classes.refused.insert(c),
                Classification::Optional => classes.optional.insert(c),
                _ => {}
            }
        }
        let id = known.map(CapabilityId::Known).unwrap_or_else(|| CapabilityId::from_number(capability.trim_start_matches("CAP_").parse().unwrap_or(u32::MAX)));
        let on: Vec<&str> = nodes.iter().map(String::as_str).collect();
        checks.push(CheckSummary {
            capability: id,
            verdict: *verdict,
            classification: *class,
            reason: format!("{} on {} (from {source}; the evidence is on the nodes: `capprof export {}` there)", class.label(), on.join(", "), w.id),
            count: *count,
            site: None,
            path: String::new(),
            stack: vec![],
            programs: vec![],
            privileged_exec: false,
        });
    }
    let sets = classes.derive();
    let mut labels = std::collections::HashMap::new();
    match w.kind.as_str() {
        "kubernetes" => {
            labels.insert("io.kubernetes.pod.namespace".to_string(), w.namespace.clone());
            labels.insert("io.kubernetes.container.name".to_string(), w.container.clone());
        }
        "compose" => {
            labels.insert("com.docker.compose.project".to_string(), w.namespace.clone());
            labels.insert("com.docker.compose.service".to_string(), w.container.clone());
        }
        _ => {}
    }
    let container = (w.kind != "service").then(|| ContainerInfo {
        engine: Engine::Unknown,
        name: w.container.clone(),
        image: w.image.clone(),
        labels,
        source: Source::Engine,
        ..ContainerInfo::default()
    });
    WorkloadProfile {
        name: w.id.clone(),
        kind: if w.kind == "service" { WorkloadKind::Service } else { WorkloadKind::Container },
        command: vec![],
        cgroup: String::new(),
        exit_status: None,
        capabilities: CapabilityChange { drop: vec!["ALL".into()], add: sets.add },
        would_need: sets.would_need,
        optional: sets.optional,
        conditional: sets.conditional,
        // Not in the series: not claimed (the nodes' profiles say it).
        no_new_privileges_safe: false,
        container,
        service: None,
        granted: (!w.granted.is_empty()).then(|| sorted(w.granted)),
        portability: vec![],
        portable: false,
        hardening: vec![],
        checks,
        verification: None,
        seccomp: None,
        nodes: w.nodes.iter().cloned().collect(),
    }
}

/// A Prometheus server's HTTP API (plain HTTP: put a TLS or auth proxy's local end here).
struct Server {
    /// host:port
    address: String,
    host: String,
    /// Path prefix (a Prometheus behind `--web.route-prefix`).
    prefix: String,
}

impl Server {
    fn parse(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            Error::new(ErrorKind::Usage, format!("--prometheus {url:?}: give an http://HOST:PORT URL (https: through a local proxy or `kubectl port-forward`)"))
        })?;
        let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{}", p.trim_end_matches('/')))).unwrap_or((rest, String::new()));
        if authority.is_empty() || authority.contains('@') {
            return Err(Error::new(ErrorKind::Usage, format!("--prometheus {url:?}: give an http://HOST:PORT URL (no credentials in it)")));
        }
        let address = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { authority.to_string() } else { format!("{authority}:80") };
        Ok(Self { address, host: authority.to_string(), prefix: if path == "/" { String::new() } else { path } })
    }

    /// An instant query: its samples (a vector result).
    fn query(&self, promql: &str) -> Result<Vec<Sample>> {
        let target = format!("{}/api/v1/query?query={}", self.prefix, crate::faces::daemon::server::encode(promql));
        let body = self.get(&target)?;
        parse_vector(&body).map_err(|e| Error::new(ErrorKind::MalformedInput, format!("Prometheus at {} answered `{promql}` with {e}", self.host)))
    }

    fn get(&self, target: &str) -> Result<String> {
        let unreachable = |e: std::io::Error| Error::new(ErrorKind::Io, format!("cannot reach Prometheus at {} ({e})", self.address));
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&self.address).map_err(unreachable)?.next().ok_or_else(|| unreachable(std::io::ErrorKind::NotFound.into()))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(unreachable)?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        // HTTP/1.0: the answer is the body up to the close, never chunked.
        write!(s, "GET {target} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n\r\n", self.host).map_err(unreachable)?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(unreachable)?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| Error::new(ErrorKind::Io, format!("{} answered something that is not HTTP", self.address)))?;
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status != 200 {
            let why = serde_json::from_str::<Value>(body).ok().and_then(|v| v["error"].as_str().map(str::to_string)).unwrap_or_else(|| body.lines().next().unwrap_or_default().to_string());
            return Err(Error::new(ErrorKind::Io, format!("Prometheus at {} answered {status}: {why}", self.address)));
        }
        Ok(body.to_string())
    }
}

/// `{"status":"success","data":{"resultType":"vector","result":[{"metric":{..},"value":[t,"v"]}]}}`.
pub fn parse_vector(body: &str) -> std::result::Result<Vec<Sample>, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("something that is not JSON ({e})"))?;
    if v["status"] != "success" {
        return Err(format!("an error: {}", v["error"].as_str().unwrap_or("(none given)")));
    }
    if v["data"]["resultType"] != "vector" {
        return Err(format!("a {} where a vector was expected", v["data"]["resultType"]));
    }
    let result = v["data"]["result"].as_array().ok_or("no result list")?;
    result
        .iter()
        .map(|r| {
            let labels = r["metric"].as_object().ok_or("a sample without labels")?.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect();
            let value = r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).ok_or("a sample without a value")?;
            Ok(Sample { labels, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
        Sample { labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), value }
    }

    fn check(node: &str, cap: &str, class: &str, n: f64) -> Sample {
        sample(&[("node", node), ("workload", "k8s:shop/cart/app"), ("capability", cap), ("verdict", "granted"), ("class", class)], n)
    }

    fn info(node: &str) -> Sample {
        sample(&[("node", node), ("workload", "k8s:shop/cart/app"), ("kind", "kubernetes"), ("namespace", "shop"), ("container", "app"), ("image", "cart:1")], 1.0)
    }

    /// Two nodes with different needs: the union, with both nodes named; probes stay out.
    #[test]
    fn the_union_over_nodes() {
        let series = Series {
            checks: vec![check("a", "CHOWN", "needed", 3.0), check("b", "SYS_CHROOT", "needed", 1.0), check("b", "SYS_ADMIN", "probed", 40.0), check("a", "CHOWN", "needed", 2.0)],
            info: vec![info("a"), info("b")],
            granted: vec![sample(&[("node", "a"), ("workload", "k8s:shop/cart/app"), ("capability", "NET_RAW")], 1.0)],
            losses: vec![sample(&[("node", "a"), ("kind", "events_dropped")], 2.0), sample(&[("node", "b"), ("kind", "events_dropped")], 1.0)],
        };
        let p = build(&series, &Selection::new(None, Some("shop"), "1d").unwrap(), "test");
        let w = &p.workloads[0];
        let add: Vec<&str> = w.capabilities.add.iter().map(|c| c.name()).collect();
        assert_eq!(add, ["CHOWN", "SYS_CHROOT"]);
        assert_eq!(w.nodes, ["a", "b"]);
        assert_eq!(p.losses.events_dropped, 3, "losses are summed, never hidden");
        assert_eq!(w.container.as_ref().unwrap().labels["io.kubernetes.container.name"], "app");
        let chown = w.checks.iter().find(|c| c.capability == CapabilityId::Known(Capability::CHOWN)).unwrap();
        assert_eq!(chown.count, 5);
        assert!(build(&series, &Selection::new(None, Some("other"), "1d").unwrap(), "test").workloads.is_empty());
        assert_eq!(build(&series, &Selection::new(Some("app"), None, "1d").unwrap(), "test").workloads.len(), 1, "by container name");
    }

    #[test]
    fn answers_and_urls_are_checked() {
        assert!(parse_vector(r#"{"status":"error","error":"bad query"}"#).unwrap_err().contains("bad query"));
        assert!(parse_vector("<html>").is_err());
        let v = parse_vector(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"node":"a"},"value":[1,"7"]}]}}"#).unwrap();
        assert_eq!(v, [sample(&[("node", "a")], 7.0)]);
        assert!(Server::parse("https://prom:9090").is_err());
        assert!(Server::parse("http://user:pw@prom:9090").is_err());
        let s = Server::parse("http://prom/prometheus/").unwrap();
        assert_eq!((s.address.as_str(), s.prefix.as_str()), ("prom:80", "/prometheus"));
        assert!(Selection::new(None, None, "7d;drop").is_err());
    }
}
