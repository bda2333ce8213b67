//! Which workload each check belongs to: the recorded command (its cgroup and everything
//! below), a container discovered during the recording, or neither (other processes on the
//! host, counted and left out).

use std::collections::HashMap;

use super::container::{ContainerInfo, ContainerRef};
use super::discovery::Discovery;
use super::Check;
use crate::collector::Observations;

/// A network operation seen at its system call (see `capprof_common::net_use`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetUse {
    pub kind: u32,
    pub port: u32,
    pub count: u64,
}

/// Checks, network uses and system calls of one workload.
#[derive(Default)]
pub struct Share {
    pub checks: Vec<Check>,
    pub net_uses: Vec<NetUse>,
    pub syscalls: Vec<crate::collector::SyscallObservation>,
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
    for s in &obs.syscalls {
        match owner(s.key.cgroup_id) {
            Owner::Command => out.command.syscalls.push(s.clone()),
            Owner::Container(id) => by_container.entry(id).or_default().syscalls.push(s.clone()),
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

#[cfg(test)]
mod tests {
    //! Grouping checks by workload (no kernel, no root).
    use super::*;

    const ID: &str = "dbf408ddadd22bdb594b40710c0f1d97da79162ae4defea0adcbee4f332c7a96";

    fn check(cgroup_id: u64, count: u64) -> Check {
        Check { cgroup_id, count, ..Check::for_test(0, "ns_capable", &[]) }
    }

    #[test]
    fn checks_and_network_uses_go_to_their_workload() {
        let container_path = format!("/system.slice/docker-{ID}.scope");
        let obs = Observations {
            cgroup_paths: [(1, "/capprof/record-1-2".to_string()), (2, "/capprof/record-1-2/child".to_string()), (3, container_path.clone()), (4, "/user.slice".to_string())]
                .into_iter()
                .collect(),
            net_uses: vec![(3, capprof_common::net_use::LOW_PORT_BIND, 80, 1), (4, capprof_common::net_use::PING_SOCKET, 0, 1)],
            ..Observations::default()
        };
        let mut discovery = Discovery::default();
        let r = crate::attribution::container::identify(&container_path).unwrap();
        discovery.containers.insert(r.id.clone(), (r, ContainerInfo { name: "web".into(), ..Default::default() }));
        let g = group(vec![check(1, 1), check(2, 2), check(3, 4), check(4, 8), check(5, 16)], &obs, Some((1, "/capprof/record-1-2")), &discovery);
        assert_eq!(g.command.checks.iter().map(|c| c.count).sum::<u64>(), 3, "the record cgroup and below");
        assert_eq!(g.containers.len(), 1);
        let (r, info, share) = &g.containers[0];
        assert_eq!((r.id.as_str(), info.name.as_str()), (ID, "web"));
        assert_eq!(share.checks.iter().map(|c| c.count).sum::<u64>(), 4);
        assert_eq!(share.net_uses, [NetUse { kind: capprof_common::net_use::LOW_PORT_BIND, port: 80, count: 1 }]);
        assert_eq!(g.elsewhere, 24, "another cgroup, and one never named");
        assert!(g.command.net_uses.is_empty());
    }

    #[test]
    fn a_prefix_that_is_not_a_parent_is_not_the_command() {
        let obs = Observations { cgroup_paths: [(7, "/capprof/record-1-23".to_string())].into_iter().collect(), ..Observations::default() };
        let g = group(vec![check(7, 1)], &obs, Some((1, "/capprof/record-1-2")), &Discovery::default());
        assert!(g.command.checks.is_empty());
        assert_eq!(g.elsewhere, 1);
    }
}
