//! Which workload each check belongs to: the recorded command (its cgroup and everything
//! below), a container discovered during the recording, or neither (other processes on the
//! host, counted and left out).

use std::collections::HashMap;

use super::container::{ContainerInfo, ContainerRef, Discovery};
use super::Check;
use crate::collector::Observations;

/// A network operation seen at its system call (see `capprof_common::net_use`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetUse {
    pub kind: u32,
    pub port: u32,
    pub count: u64,
}

/// Checks and network uses of one workload.
#[derive(Default)]
pub struct Share {
    pub checks: Vec<Check>,
    pub net_uses: Vec<NetUse>,
}

/// The recording split by workload.
#[derive(Default)]
pub struct Grouped {
    pub command: Share,
    pub containers: Vec<(ContainerRef, ContainerInfo, Share)>,
    /// Checks from other cgroups (the rest of the host, in container mode): left out.
    pub elsewhere: u64,
}

enum Owner {
    Command,
    Container(String),
    Elsewhere,
}

/// Splits checks by owner. `command` is the record cgroup's id and path, if a command ran.
pub fn group(checks: Vec<Check>, obs: &Observations, command: Option<(u64, &str)>, discovery: &Discovery) -> Grouped {
    let owner = |cgroup_id: u64| -> Owner {
        if command.is_some_and(|c| c.0 == cgroup_id) {
            return Owner::Command;
        }
        let Some(path) = obs.cgroup_paths.get(&cgroup_id) else { return Owner::Elsewhere };
        if let Some((_, prefix)) = command {
            if path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
                return Owner::Command;
            }
        }
        match discovery.container_of(path) {
            Some((r, _)) => Owner::Container(r.id.clone()),
            None => Owner::Elsewhere,
        }
    };
    let mut out = Grouped::default();
    let mut by_container: HashMap<String, Share> = HashMap::new();
    for c in checks {
        match owner(c.cgroup_id) {
            Owner::Command => out.command.checks.push(c),
            Owner::Container(id) => by_container.entry(id).or_default().checks.push(c),
            Owner::Elsewhere => out.elsewhere += c.count,
        }
    }
    for &(cgroup, kind, port, count) in &obs.net_uses {
        let u = NetUse { kind, port, count };
        match owner(cgroup) {
            Owner::Command => out.command.net_uses.push(u),
            Owner::Container(id) => by_container.entry(id).or_default().net_uses.push(u),
            Owner::Elsewhere => {}
        }
    }
    let mut containers: Vec<_> = discovery.containers.values().cloned().collect();
    containers.sort_by(|a, b| a.1.name.cmp(&b.1.name));
    for (r, info) in containers {
        if let Some(share) = by_container.remove(&r.id) {
            out.containers.push((r, info, share));
        }
    }
    out
}
