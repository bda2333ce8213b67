//! Advice next to the minimal set: what the profile needs on other runtimes (portability) and
//! which hardening options fit what capprof saw.

use serde::{Deserialize, Serialize};

use crate::attribution::container::ContainerInfo;
use crate::attribution::workloads::NetUse;
use crate::capability::{CapSet, Capability};
use capprof_common::net_use;

/// A capability the workload needs where the runtime does not relax the check.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Portability {
    pub capability: Capability,
    /// `bind to port 80`, `ICMP (ping) socket`.
    pub operation: String,
    pub note: String,
}

/// Operations seen at the system call that made no capability check because this network
/// namespace relaxes them, and whose capability was not checked here (`checked`: the needed
/// set and the refused checks').
pub fn portability(uses: &[NetUse], checked: CapSet) -> Vec<Portability> {
    let mut out = Vec::new();
    let mut ports: Vec<u32> = uses.iter().filter(|u| u.kind == net_use::LOW_PORT_BIND).map(|u| u.port).collect();
    ports.sort_unstable();
    ports.dedup();
    if !ports.is_empty() && !checked.contains(Capability::NET_BIND_SERVICE) {
        let list = ports.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        out.push(Portability {
            capability: Capability::NET_BIND_SERVICE,
            operation: format!("bind to port {list}"),
            note: "no check here: this network namespace sets ip_unprivileged_port_start=0 (Docker, containerd 2); on the host network, an older engine or another runtime it needs NET_BIND_SERVICE".into(),
        });
    }
    if uses.iter().any(|u| u.kind == net_use::PING_SOCKET) && !checked.contains(Capability::NET_RAW) {
        out.push(Portability {
            capability: Capability::NET_RAW,
            operation: "ICMP (ping) socket".into(),
            note: "allowed here by a wide net.ipv4.ping_group_range; where the range does not cover the workload's group it needs NET_RAW".into(),
        });
    }
    out
}

/// Which hardening option a piece of advice is about: what merging and comparing advice keys
/// on (the option's text varies: `--read-only --tmpfs /tmp` and `--read-only` are one kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdviceKind {
    NoNewPrivileges,
    ReadOnly,
    NonRoot,
}

impl AdviceKind {
    /// The kind of an option's text, for profiles written before advice carried its kind.
    pub fn of_option(option: &str) -> Option<Self> {
        if option.starts_with("--security-opt no-new-privileges") {
            Some(Self::NoNewPrivileges)
        } else if option.starts_with("--read-only") {
            Some(Self::ReadOnly)
        } else if option.starts_with("--user") {
            Some(Self::NonRoot)
        } else {
            None
        }
    }
}

/// One hardening option, and whether what capprof saw allows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Advice {
    /// What the advice is about (absent in profiles of older capprofs: see [`Advice::kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AdviceKind>,
    /// `--security-opt no-new-privileges`, `--read-only`, `--user`.
    pub option: String,
    pub recommended: bool,
    pub reason: String,
}

impl Advice {
    fn new(kind: AdviceKind, option: String, recommended: bool, reason: String) -> Self {
        Self { kind: Some(kind), option, recommended, reason }
    }

    /// What the advice is about, also for profiles written without the field.
    pub fn kind(&self) -> Option<AdviceKind> {
        self.kind.or_else(|| AdviceKind::of_option(&self.option))
    }
}

/// Facts the advice is drawn from.
pub struct Seen<'a> {
    pub needed: CapSet,
    pub no_new_privileges_safe: bool,
    pub container: Option<&'a ContainerInfo>,
    /// Executables of the workload (for file-capability advice).
    pub executables: Vec<String>,
}

const SCRATCH_DIRS: [&str; 4] = ["/tmp", "/run", "/var/run", "/var/tmp"];

pub fn hardening(seen: &Seen) -> Vec<Advice> {
    let mut out = vec![Advice::new(
        AdviceKind::NoNewPrivileges,
        "--security-opt no-new-privileges (allowPrivilegeEscalation: false)".into(),
        seen.no_new_privileges_safe,
        if seen.no_new_privileges_safe {
            "no set-id or file-capability program ran, and no exec-time privilege change was checked".into()
        } else {
            "a set-id or file-capability program ran: no-new-privileges would stop it gaining privileges".into()
        },
    )];
    let Some(c) = seen.container else { return out };
    out.push(read_only(c));
    let root = c.user.is_empty() || c.user == "0" || c.user == "root" || c.user.starts_with("0:") || c.user.starts_with("root:");
    if root {
        let reason = if seen.needed.is_empty() {
            "it needs no capability, so it can run as any user (also runAsNonRoot: true)".to_string()
        } else {
            let caps: Vec<String> = seen.needed.iter().map(|c| format!("cap_{}", c.name().to_ascii_lowercase())).collect();
            let exe = seen.executables.first().cloned().unwrap_or_else(|| "<program>".into());
            format!(
                "as non-root it keeps no capability at exec (docker run cannot set ambient capabilities): give the program file capabilities instead, e.g. `setcap {}+ep {exe}` in the image",
                caps.join(",")
            )
        };
        out.push(Advice::new(AdviceKind::NonRoot, "--user 65534:65534 (a non-root USER)".into(), seen.needed.is_empty(), reason));
    } else {
        out.push(Advice::new(
            AdviceKind::NonRoot,
            "--user (non-root)".into(),
            true,
            format!("already runs as {}; added capabilities reach a non-root program only as file capabilities", c.user),
        ));
    }
    out
}

fn read_only(c: &ContainerInfo) -> Advice {
    let option = "--read-only".to_string();
    if c.read_only_rootfs {
        return Advice::new(AdviceKind::ReadOnly, option, true, "the root filesystem is already read-only".into());
    }
    let Some(changes) = &c.changed_paths else {
        return Advice::new(
            AdviceKind::ReadOnly,
            option,
            false,
            "not assessed: the engine could not list the container's filesystem changes (removed before capprof asked, or not Docker)".into(),
        );
    };
    let outside: Vec<&String> = changes.iter().filter(|p| !SCRATCH_DIRS.iter().any(|d| p.as_str() == *d || p.starts_with(&format!("{d}/")))).collect();
    if !outside.is_empty() {
        let list: Vec<&str> = outside.iter().take(5).map(|s| s.as_str()).collect();
        return Advice::new(AdviceKind::ReadOnly, option, false, format!("it writes outside scratch directories: {}", list.join(", ")));
    }
    let mut tmpfs: Vec<&str> = SCRATCH_DIRS.iter().copied().filter(|d| changes.iter().any(|p| p == d || p.starts_with(&format!("{d}/")))).collect();
    tmpfs.dedup();
    let extra = tmpfs.iter().map(|d| format!(" --tmpfs {d}")).collect::<String>();
    Advice::new(
        AdviceKind::ReadOnly,
        format!("--read-only{extra}"),
        true,
        if tmpfs.is_empty() { "it wrote nothing to its root filesystem".into() } else { format!("it wrote only to {}", tmpfs.join(", ")) },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_ports_and_ping_need_capabilities_elsewhere() {
        let uses = [NetUse { kind: net_use::LOW_PORT_BIND, port: 80, count: 1 }, NetUse { kind: net_use::PING_SOCKET, port: 0, count: 2 }];
        let p = portability(&uses, CapSet::empty());
        assert_eq!(p.iter().map(|p| p.capability).collect::<Vec<_>>(), [Capability::NET_BIND_SERVICE, Capability::NET_RAW]);
        assert!(p[0].operation.contains("80"));
        let covered: CapSet = [Capability::NET_BIND_SERVICE].into_iter().collect();
        assert_eq!(portability(&uses[..1], covered), vec![]);
    }

    #[test]
    fn read_only_when_writes_stay_in_scratch() {
        let mut c = ContainerInfo { changed_paths: Some(vec!["/tmp".into(), "/tmp/x".into()]), ..Default::default() };
        let a = read_only(&c);
        assert!(a.recommended && a.option == "--read-only --tmpfs /tmp", "{a:?}");
        c.changed_paths = Some(vec!["/etc/passwd".into()]);
        assert!(!read_only(&c).recommended);
        c.changed_paths = None;
        assert!(read_only(&c).reason.starts_with("not assessed"));
    }
}
