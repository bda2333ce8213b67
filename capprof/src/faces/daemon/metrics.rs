//! `GET /metrics`: the daemon's state in Prometheus' text exposition. Every series carries
//! the node's name, so one Prometheus scraping every node's daemon holds the cluster-wide
//! view that `capprof export --prometheus` turns back into a profile
//! ([`crate::faces::cluster`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::server::Shared;
use crate::capability::{name_of, CapSet};
use crate::profile::Losses;

/// The whole exposition.
pub fn render(shared: &Shared) -> crate::error::Result<String> {
    let store = shared.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let facts = store.facts()?;
    let records = store.workloads()?;
    drop(store);
    let h = shared.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let node = format!("node=\"{}\"", escape_label(&shared.node));
    let mut out = String::new();
    let _ = writeln!(out, "# HELP capprof_checks_total Capability checks by workload, capability, verdict and class (durable counts).");
    let _ = writeln!(out, "# TYPE capprof_checks_total counter");
    let mut series: BTreeMap<(String, String, &str, &str), u64> = BTreeMap::new();
    for (workload, list) in &facts {
        for (_, f) in list {
            let verdict = if f.denied { "denied" } else { "granted" };
            let class = crate::classify::classify(&f.to_check()).0.label();
            *series.entry((workload.clone(), name_of(f.capability), verdict, class)).or_default() += f.count;
        }
    }
    for ((w, c, v, k), n) in series {
        let _ = writeln!(out, "capprof_checks_total{{{node},workload=\"{}\",capability=\"{c}\",verdict=\"{v}\",class=\"{k}\"}} {n}", escape_label(&w));
    }
    // What a workload is (for manifests: its namespace and container name) and what it was
    // granted (for "granted more than used"), one series per fact, value 1.
    let _ = writeln!(out, "# HELP capprof_workload_info A workload the daemon knows: its kind, namespace (Kubernetes or Compose), container name and image.");
    let _ = writeln!(out, "# TYPE capprof_workload_info gauge");
    for r in &records {
        let image = r.container.as_ref().map(|c| c.image.as_str()).unwrap_or_default();
        let kind = serde_json::to_value(r.identity.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let _ = writeln!(
            out,
            "capprof_workload_info{{{node},workload=\"{}\",kind=\"{kind}\",namespace=\"{}\",container=\"{}\",image=\"{}\"}} 1",
            escape_label(&r.identity.id),
            escape_label(r.identity.namespace.as_deref().unwrap_or_default()),
            escape_label(&r.identity.container),
            escape_label(image)
        );
    }
    let _ = writeln!(out, "# HELP capprof_workload_granted A capability the workload's processes held (or its engine granted).");
    let _ = writeln!(out, "# TYPE capprof_workload_granted gauge");
    for r in &records {
        let granted = if r.granted != 0 { Some(CapSet(r.granted)) } else { r.container.as_ref().and_then(|c| c.granted()) };
        for c in granted.iter().flat_map(|s| s.iter()) {
            let _ = writeln!(out, "capprof_workload_granted{{{node},workload=\"{}\",capability=\"{}\"}} 1", escape_label(&r.identity.id), c.name());
        }
    }
    let _ = writeln!(out, "# HELP capprof_losses_total Data lost in the kernel, by kind (never hidden).");
    let _ = writeln!(out, "# TYPE capprof_losses_total counter");
    let l = Losses::from(h.counters);
    for (kind, n) in [
        ("checks_map_full", l.checks_map_full),
        ("events_dropped", l.events_dropped),
        ("tasks_map_full", l.tasks_map_full),
        ("syscalls_map_full", l.syscalls_map_full),
    ] {
        let _ = writeln!(out, "capprof_losses_total{{{node},kind=\"{kind}\"}} {n}");
    }
    let mut single = |name: &str, kind: &str, help: &str, labels: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{node}{labels}}} {value}");
    };
    single("capprof_site_unknown_total", "counter", "Checks whose call site could not be read.", "", l.site_unknown.to_string());
    single("capprof_placed_in_exec_total", "counter", "Execs a runtime moved into a cgroup while they ran: set-up, not workload.", "", l.placed_in_exec.to_string());
    single("capprof_unattributed_checks_total", "counter", "Checks of processes outside any workload.", "", h.unattributed.to_string());
    single("capprof_workloads", "gauge", "Workloads known.", "", records.len().to_string());
    single("capprof_kernel_map_checks", "gauge", "Distinct checks held in the kernel map.", "", h.kernel_checks.to_string());
    single("capprof_backend_info", "gauge", "The kernel hook in use.", &format!(",backend=\"{}\"", shared.backend.name), "1".into());
    single("capprof_program_runs_total", "counter", "Check program runs (with --bpf-stats).", "", h.program_runs.to_string());
    single("capprof_program_run_seconds_total", "counter", "Check program run time (with --bpf-stats).", "", format!("{:.9}", h.program_run_time_ns as f64 / 1e9));
    Ok(out)
}

/// A Prometheus label value: backslash, double quote and line feed escaped (the exposition
/// format's three), so a workload name cannot end its series or start another.
pub fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The node's name when `--node` is not given: `NODE_NAME` (a DaemonSet sets it from
/// `spec.nodeName`), else the kernel's host name.
pub fn default_node() -> String {
    if let Some(n) = std::env::var("NODE_NAME").ok().filter(|n| !n.trim().is_empty()) {
        return n.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "unknown".into())
}
