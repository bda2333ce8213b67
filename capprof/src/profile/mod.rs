//! The profile: the one model every output format is rendered from, and the JSON that
//! `record -o` writes and later commands read back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod advice;
pub mod seccomp;
pub mod sets;

use advice::{Advice, Portability};
use sets::{sorted, ClassSets};
use crate::attribution::container::ContainerInfo;
use crate::attribution::systemd::ServiceInfo;
use crate::attribution::workloads::NetUse;
use crate::attribution::Check;
use crate::capability::{CapSet, Capability, CapabilityId};
use crate::classify::{classify, fold_alternatives, fold_subsumed, Classification};
use crate::error::{Error, ErrorKind, Result};

/// Everything one recording learned.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub capprof_version: String,
    /// The command that was recorded.
    #[serde(default)]
    pub command: Vec<String>,
    /// Checks from other processes of the host (container mode watches the whole host).
    #[serde(default)]
    pub unattributed_checks: u64,
    pub kernel: String,
    pub backend: BackendSummary,
    pub duration_ms: u64,
    pub losses: Losses,
    pub workloads: Vec<WorkloadProfile>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackendSummary {
    pub name: String,
    pub sees_opts: bool,
    pub classification: String,
    /// The check program's run time, with `--bpf-stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramRunTime>,
    /// The benchmarks' empty program, run before and after the check program on the same
    /// checks (`CAPPROF_BENCH_FLOOR=around`, with `--bpf-stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor_program: Option<ProgramRunTime>,
    /// The system-call hook's run time, with `--seccomp --bpf-stats` (every system call on the
    /// host, in scope or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall_program: Option<ProgramRunTime>,
    /// Where the network-use hooks ran, when attached: `cgroup` (socket programs on the
    /// unified hierarchy's root), or `syscalls` and why (bind/socket tracepoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_hooks: Option<String>,
}

/// Kernel-measured cost of the check program (every invocation, in scope or not).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProgramRunTime {
    pub runs: u64,
    pub mean_ns: f64,
}

impl From<crate::backend::ProgramStats> for ProgramRunTime {
    fn from(s: crate::backend::ProgramStats) -> Self {
        Self { runs: s.runs, mean_ns: if s.runs == 0 { 0.0 } else { s.run_time_ns as f64 / s.runs as f64 } }
    }
}

/// Counted losses, reported, never hidden.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Losses {
    pub checks_seen: u64,
    pub checks_map_full: u64,
    pub events_dropped: u64,
    pub tasks_map_full: u64,
    pub site_unknown: u64,
    /// Granted DAC checks of exec attempts not followed: they stay needs.
    #[serde(default)]
    pub walks_lost: u64,
    /// System calls not counted (`--seccomp`): the system-call map was full.
    #[serde(default)]
    pub syscalls_map_full: u64,
    /// System calls whose number no table holds (not counted).
    #[serde(default)]
    pub syscalls_out_of_range: u64,
    /// Not a loss: execs in a recorded cgroup that a runtime moved its task into while the
    /// exec ran (runc's `runc init` on a busy machine); their checks stay runtime set-up.
    #[serde(default)]
    pub placed_in_exec: u64,
}

impl Losses {
    /// One line per kind of loss, empty when nothing was lost.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.checks_map_full > 0 {
            w.push(format!("{} checks were not counted: the kernel aggregation map was full (raise --max-checks)", self.checks_map_full));
        }
        if self.events_dropped > 0 {
            w.push(format!("{} first-sighting events were dropped: the ring buffer was full (programs/paths may be missing)", self.events_dropped));
        }
        if self.walks_lost > 0 {
            w.push(format!("{} granted DAC checks of exec attempts could not be followed (no task storage, a full map, or more attempts than a task keeps): they count as needs", self.walks_lost));
        }
        if self.syscalls_map_full > 0 {
            w.push(format!("{} system calls were not counted: the system-call map was full (their seccomp allow lists may miss calls: do not deploy them unproven)", self.syscalls_map_full));
        }
        if self.syscalls_out_of_range > 0 {
            w.push(format!("{} system calls had a number above every table and were not counted", self.syscalls_out_of_range));
        }
        if self.tasks_map_full > 0 {
            w.push(format!("{} workload tasks were not tracked: the task map was full (their checks count as runtime set-up)", self.tasks_map_full));
        }
        w
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Command,
    Container,
    /// A systemd service (`record --unit`).
    Service,
}

/// One workload: a recorded command, or a container it started.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadProfile {
    pub name: String,
    pub kind: WorkloadKind,
    pub command: Vec<String>,
    pub cgroup: String,
    /// Shell-style exit status (128+N for signal N), when the workload ended during recording.
    pub exit_status: Option<i32>,
    pub capabilities: CapabilityChange,
    /// Refused capabilities the workload tried to use.
    pub would_need: Vec<Capability>,
    /// In the set only because of checks where many programs fall back quietly when refused:
    /// `record --prove` re-runs without each to settle it.
    pub optional: Vec<Capability>,
    /// In the set only because of checks the trace cannot decide (the program may tolerate a
    /// refusal): `record --prove` re-runs without each to settle it.
    #[serde(default)]
    pub conditional: Vec<Capability>,
    /// Whether `allowPrivilegeEscalation: false` / no-new-privileges is compatible with what ran.
    pub no_new_privileges_safe: bool,
    /// The container, for container workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// The unit, for systemd services: its user and capability settings when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// What the workload's processes held (effective set), when seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<Capability>>,
    /// Capabilities needed on runtimes that do not relax low ports / ping sockets.
    #[serde(default)]
    pub portability: Vec<Portability>,
    /// Whether `capabilities.add` includes the portability capabilities (`--portable`).
    #[serde(default)]
    pub portable: bool,
    #[serde(default)]
    pub hardening: Vec<Advice>,
    pub checks: Vec<CheckSummary>,
    /// Set by `verify` and `minimize`: the set proven by re-running the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// The system calls it made, with `--seccomp`: its seccomp allow list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<seccomp::SyscallProfile>,
    /// The nodes it was seen on, for a cluster-wide profile (`export --prometheus`, `merge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// Proof by re-run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verification {
    /// The capability set the workload was run under at the end.
    pub capabilities: Vec<Capability>,
    /// It kept its own capabilities (only a seccomp profile was verified).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unrestricted: bool,
    /// The seccomp profile it ran under (the calls refused are the workload's
    /// `seccomp.refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    pub passed: bool,
    /// Why the final run failed, when it did.
    pub failure: Option<String>,
    /// How many times the workload was run in all.
    pub runs: u32,
    /// Per capability tried: what happened without it (minimize), or what was refused.
    pub evidence: Vec<Evidence>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evidence {
    pub capability: Capability,
    /// Kept in the final set.
    pub kept: bool,
    /// What was run, e.g. `without CHOWN` (as text in JSON).
    pub trial: EvidenceRun,
    /// `succeeded`, or why it failed.
    pub outcome: String,
    /// Refused checks of that run: `CHOWN via fchownat -> setattr_prepare (by scenario)`.
    pub denied: Vec<String>,
}

/// The run a piece of evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum EvidenceRun {
    /// `verify`: the workload under exactly the given set.
    UnderGivenSet,
    /// `minimize`, `record --prove`: the set without this capability.
    Without(Capability),
    /// `minimize`: a narrower capability tried in place of a broad one.
    Instead { narrow: Capability, broad: Capability },
}

impl std::fmt::Display for EvidenceRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnderGivenSet => f.write_str("under the given set"),
            Self::Without(c) => write!(f, "without {c}"),
            Self::Instead { narrow, broad } => write!(f, "{narrow} instead of {broad}"),
        }
    }
}

impl From<EvidenceRun> for String {
    fn from(r: EvidenceRun) -> Self {
        r.to_string()
    }
}

impl TryFrom<String> for EvidenceRun {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s == "under the given set" {
            return Ok(Self::UnderGivenSet);
        }
        if let Some(cap) = s.strip_prefix("without ") {
            return cap.parse().map(Self::Without).map_err(|e: Error| e.to_string());
        }
        if let Some((narrow, broad)) = s.split_once(" instead of ") {
            let parse = |c: &str| c.parse::<Capability>().map_err(|e| e.to_string());
            return Ok(Self::Instead { narrow: parse(narrow)?, broad: parse(broad)? });
        }
        Err(format!("unknown evidence run {s:?}"))
    }
}

/// The minimal set as a change to a container's capabilities.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapabilityChange {
    pub drop: Vec<String>,
    pub add: Vec<Capability>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Granted,
    Denied,
}

/// Checks of one capability with one verdict, class and asking site.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckSummary {
    pub capability: CapabilityId,
    pub verdict: Verdict,
    pub classification: Classification,
    pub reason: String,
    pub count: u64,
    pub site: Option<String>,
    /// `syscall -> asking function (API)`.
    pub path: String,
    /// The first sighting's kernel stack, outermost first.
    pub stack: Vec<String>,
    pub programs: Vec<Program>,
    /// Made by a program whose executable is set-id or has file capabilities (a helper a
    /// server execs): its failure may be tolerated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged_exec: bool,
}

/// Kernel functions that create namespaces (clone, unshare): refused, many programs fall back
/// to a plain fork.
const NAMESPACE_CREATION: [&str; 3] = ["copy_namespaces", "unshare_nsproxy_namespaces", "create_new_namespaces"];

/// File permission overrides: a server may do without the file (a log, a certificate, a spool).
const FILE_OVERRIDES: [Capability; 4] = [Capability::DAC_OVERRIDE, Capability::DAC_READ_SEARCH, Capability::CHOWN, Capability::FOWNER];

impl CheckSummary {
    /// A need the trace cannot call certain: only a re-run can tell whether the program
    /// tolerates its refusal.
    pub fn doubtful_need(&self) -> bool {
        let via = |f: &str| self.site.as_deref() == Some(f) || self.stack.iter().any(|s| s == f);
        self.privileged_exec || NAMESPACE_CREATION.iter().any(|f| via(f)) || self.capability.known().is_some_and(|c| FILE_OVERRIDES.contains(&c))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Program {
    pub comm: String,
    pub exe: Option<String>,
}

/// Facts about a workload that do not come from its checks.
pub struct WorkloadMeta {
    pub name: String,
    pub kind: WorkloadKind,
    pub command: Vec<String>,
    pub cgroup: String,
    pub exit_status: Option<i32>,
    pub container: Option<ContainerInfo>,
    pub service: Option<ServiceInfo>,
    pub net_uses: Vec<NetUse>,
    /// Add the portability capabilities to the set.
    pub portable: bool,
}

impl WorkloadProfile {
    /// Classifies and aggregates a workload's checks and derives its minimal set.
    pub fn build(meta: WorkloadMeta, mut checks: Vec<Check>) -> Self {
        checks.extend(file_capability_needs(&checks));
        let mut classified: Vec<(Check, Classification, String)> = checks
            .into_iter()
            .map(|c| {
                let (k, r) = classify(&c);
                (c, k, r)
            })
            .collect();
        fold_alternatives(&mut classified);
        fold_subsumed(&mut classified);

        let mut groups: BTreeMap<(u32, bool, Classification, Option<String>, String), CheckSummary> = BTreeMap::new();
        let mut needed = CapSet::empty();
        let mut would_need = CapSet::empty();
        let mut optional = CapSet::empty();
        let mut conditional = CapSet::empty();
        let mut no_new_privs_safe = true;
        let mut granted: Option<u64> = None;
        let mut executables: Vec<String> = Vec::new();
        for (c, class, reason) in classified {
            if class != Classification::Runtime {
                if let Some(eff) = c.cap_eff {
                    granted = Some(granted.unwrap_or(0) | eff);
                }
                if let Some(exe) = &c.exe {
                    if !executables.contains(exe) {
                        executables.push(exe.clone());
                    }
                }
            }
            if let Some(cap) = Capability::from_number(c.capability) {
                match class {
                    Classification::Needed => needed.insert(cap),
                    Classification::Conditional => conditional.insert(cap),
                    Classification::Denied => would_need.insert(cap),
                    Classification::Optional => optional.insert(cap),
                    _ => {}
                }
            }
            if class != Classification::Runtime && (c.exe_gains_privilege || c.via("cap_bprm_creds_from_file")) {
                no_new_privs_safe = false;
            }
            let program = Program { comm: c.comm.clone(), exe: c.exe.clone() };
            let entry = groups.entry((c.capability, c.denied, class, c.site.clone(), reason.clone())).or_insert_with(|| CheckSummary {
                capability: CapabilityId::from_number(c.capability),
                verdict: if c.denied { Verdict::Denied } else { Verdict::Granted },
                classification: class,
                reason,
                count: 0,
                site: c.site.clone(),
                path: c.path_summary(),
                stack: c.path.clone(),
                programs: Vec::new(),
                privileged_exec: false,
            });
            entry.count += c.count;
            entry.privileged_exec |= c.exe_gains_privilege;
            if entry.stack.is_empty() && !c.path.is_empty() {
                entry.path = c.path_summary();
                entry.stack = c.path.clone();
            }
            if !entry.programs.contains(&program) {
                entry.programs.push(program);
            }
        }
        let mut checks: Vec<CheckSummary> = groups.into_values().collect();
        for c in &mut checks {
            c.programs.sort();
            // One entry per comm: keep the one with a known executable.
            c.programs.dedup_by(|b, a| a.comm == b.comm && (a.exe.is_some() || b.exe.is_none()));
        }
        checks.sort_by(|a, b| (a.classification, &a.capability, a.verdict).cmp(&(b.classification, &b.capability, b.verdict)));
        // A capability checked here (needed, or refused and so would be) needs no portability
        // note: the operation did not go unchecked.
        let portability = advice::portability(&meta.net_uses, CapSet(needed.0 | conditional.0 | optional.0 | would_need.0));
        if meta.portable {
            for p in &portability {
                needed.insert(p.capability);
            }
        }
        // Doubtful ones stay in the set: a missing capability breaks, an extra one only fails
        // to protect.
        let sets = ClassSets { certain: needed, conditional, optional, refused: would_need }.derive();
        let set: CapSet = sets.add.iter().copied().collect();
        let hardening = advice::hardening(&advice::Seen {
            needed: set,
            no_new_privileges_safe: no_new_privs_safe,
            container: meta.container.as_ref(),
            executables,
        });
        // A service: what its unit grants (what its processes held is no more than that, and
        // drop-ins change the unit). Else what its processes held, else
        // what the engine says it granted.
        let granted = match &meta.service {
            // A non-root User= holds only its ambient set (within the bound).
            Some(s) if s.runs_unprivileged() => Some(s.ambient.iter().copied().filter(|c| s.bounding.contains(c)).collect()),
            Some(s) => Some(s.bounding.clone()),
            None => granted.map(CapSet).or_else(|| meta.container.as_ref().and_then(|c| c.granted())).map(sorted),
        };
        Self {
            name: meta.name,
            kind: meta.kind,
            command: meta.command,
            cgroup: meta.cgroup,
            exit_status: meta.exit_status,
            capabilities: CapabilityChange { drop: vec!["ALL".into()], add: sets.add },
            would_need: sets.would_need,
            optional: sets.optional,
            conditional: sets.conditional,
            no_new_privileges_safe: no_new_privs_safe,
            container: meta.container,
            service: meta.service,
            granted,
            portability,
            portable: meta.portable,
            hardening,
            checks,
            verification: None,
            seccomp: None,
            nodes: Vec::new(),
        }
    }

    pub fn needed(&self) -> CapSet {
        self.capabilities.add.iter().copied().collect()
    }

    /// What a re-run could still take out of the set, in the order `record --prove` tries
    /// them: conditional and optional capabilities, then needs whose every check is doubtful
    /// ([`CheckSummary::doubtful_need`]).
    pub fn doubtful(&self) -> Vec<Capability> {
        let mut out: Vec<Capability> = self.conditional.iter().chain(&self.optional).copied().collect();
        out.sort_by_key(|c| c.name());
        out.dedup();
        for cap in &self.capabilities.add {
            let needs: Vec<&CheckSummary> = self.checks.iter().filter(|c| c.capability == cap.name() && c.classification == Classification::Needed).collect();
            if !out.contains(cap) && !needs.is_empty() && needs.iter().all(|c| c.doubtful_need()) {
                out.push(*cap);
            }
        }
        out
    }

    /// The classes its sets stand for (see [`sets`]).
    pub fn class_sets(&self) -> ClassSets {
        ClassSets::of(&self.capabilities.add, &self.conditional, &self.optional, &self.would_need)
    }

    /// Sets its sets from `classes`, derived the one way every face derives them.
    pub fn set_classes(&mut self, classes: ClassSets) {
        let d = classes.derive();
        self.capabilities.add = d.add;
        self.conditional = d.conditional;
        self.optional = d.optional;
        self.would_need = d.would_need;
    }
}

/// Where the kernel refuses the exec of a program whose file capability asks for more than the
/// bounding set holds.
pub const FILE_CAPABILITY_SITE: &str = "bprm_caps_from_vfs_caps";

/// Every exec of a program with file capabilities (effective bit set, not under
/// no-new-privileges) needs them in the bounding set, or the kernel refuses the exec itself:
/// one check per program and capability, made by that exec. ping in Docker's network namespace
/// uses an ICMP datagram socket and makes no NET_RAW check at all, yet does not start without
/// NET_RAW in the bounding set. Made by a helper a server may do without, a re-run decides
/// (`record --prove`: a need made by a privileged exec is doubtful).
fn file_capability_needs(checks: &[Check]) -> Vec<Check> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for c in checks.iter().filter(|c| !c.setup && !crate::attribution::is_runtime_comm(&c.comm)) {
        let (Some(caps), Some(exe)) = (c.file_caps, &c.exe) else { continue };
        for cap in CapSet(caps).iter() {
            if seen.insert((exe.clone(), cap.number())) {
                out.push(Check {
                    capability: cap.number(),
                    count: 1,
                    comm: c.comm.clone(),
                    exe: Some(exe.clone()),
                    exe_gains_privilege: true,
                    cgroup_id: c.cgroup_id,
                    cap_eff: c.cap_eff,
                    uid: c.uid,
                    syscall: Some("execve".into()),
                    ..Check::granted_at(cap.number(), FILE_CAPABILITY_SITE, &["__x64_sys_execve", "bprm_execve", FILE_CAPABILITY_SITE])
                });
            }
        }
    }
    out
}

impl Profile {
    /// A profile of these workloads, on this kernel.
    pub fn assemble(backend: BackendSummary, losses: Losses, duration_ms: u64, workloads: Vec<WorkloadProfile>) -> Self {
        Self {
            capprof_version: env!("CARGO_PKG_VERSION").into(),
            command: vec![],
            unattributed_checks: 0,
            kernel: crate::kernel::release(),
            backend,
            duration_ms,
            losses,
            workloads,
        }
    }

    /// Reads a profile written by `record --format json`.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::new(ErrorKind::MalformedInput, format!("{origin} is not a capprof JSON profile: {e}")))
    }
}

#[cfg(test)]
mod tests {
    //! Building a workload's profile from classified checks, row by row (no kernel, no root).
    use super::*;
    use crate::attribution::container::ContainerInfo;
    use crate::attribution::workloads::NetUse;

    fn meta(container: Option<ContainerInfo>, net_uses: Vec<NetUse>, portable: bool) -> WorkloadMeta {
        WorkloadMeta { service: None, name: "w".into(), kind: WorkloadKind::Container, command: vec![], cgroup: String::new(), exit_status: None, container, net_uses, portable }
    }

    fn check(cap: Capability) -> Check {
        Check { cap_eff: Some(1 << cap.number()), exe: Some("/bin/prog".into()), ..Check::for_test(cap.number(), "ns_capable", &["__x64_sys_x", "ns_capable"]) }
    }

    fn names(caps: &[Capability]) -> Vec<&'static str> {
        caps.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn each_class_lands_in_its_set() {
        let denied = Check { denied: true, ..check(Capability::NET_ADMIN) };
        let setup = Check { setup: true, ..check(Capability::SYS_ADMIN) };
        let probe = Check::for_test(Capability::SYS_ADMIN.number(), "cap_vm_enough_memory", &["__x64_sys_mmap", "__vm_enough_memory", "cap_vm_enough_memory"]);
        let optional = Check::for_test(Capability::SYS_RESOURCE.number(), "ns_capable", &["__x64_sys_fcntl", "pipe_fcntl", "pipe_set_size", "ns_capable"]);
        let doubtful = Check { doubtful: true, ..check(Capability::CHOWN) };
        let w = WorkloadProfile::build(meta(None, vec![], false), vec![check(Capability::SYS_CHROOT), denied, setup, probe, optional, doubtful]);
        // Conditional ones stay in the set (a missing capability breaks; an extra one does not).
        // So do optional ones: only a re-run may take either out.
        assert_eq!(names(&w.capabilities.add), ["CHOWN", "SYS_CHROOT", "SYS_RESOURCE"]);
        assert_eq!(names(&w.conditional), ["CHOWN"]);
        assert_eq!(names(&w.would_need), ["NET_ADMIN"]);
        assert_eq!(names(&w.optional), ["SYS_RESOURCE"]);
        assert_eq!(w.capabilities.drop, ["ALL"]);
        let class_of = |cap: &str| w.checks.iter().filter(|c| c.capability == cap).map(|c| c.classification).collect::<Vec<_>>();
        assert_eq!(class_of("SYS_ADMIN"), [Classification::Probed, Classification::Runtime]);
    }

    #[test]
    fn granted_is_what_the_workloads_processes_held_not_the_runtimes() {
        let setup = Check { setup: true, cap_eff: Some(u64::MAX >> 23), ..check(Capability::SYS_ADMIN) };
        let w = WorkloadProfile::build(meta(None, vec![], false), vec![check(Capability::CHOWN), check(Capability::KILL), setup]);
        assert_eq!(names(&w.granted.unwrap()), ["CHOWN", "KILL"]);
        // No process was seen holding anything: the engine's word (its default set here).
        let c = ContainerInfo { engine: crate::attribution::container::Engine::Docker, source: crate::attribution::container::Source::Engine, ..Default::default() };
        let w = WorkloadProfile::build(meta(Some(c), vec![], false), vec![Check { cap_eff: None, ..check(Capability::CHOWN) }]);
        assert_eq!(w.granted.map(|g| g.len()), Some(14));
    }

    #[test]
    fn privilege_gaining_programs_rule_out_no_new_privileges() {
        let plain = WorkloadProfile::build(meta(None, vec![], false), vec![check(Capability::SETUID)]);
        assert!(plain.no_new_privileges_safe);
        let setuid = WorkloadProfile::build(meta(None, vec![], false), vec![Check { exe_gains_privilege: true, ..check(Capability::SETUID) }]);
        assert!(!setuid.no_new_privileges_safe);
        // Runtime set-up running a set-id helper is not the workload's.
        let runtime = WorkloadProfile::build(meta(None, vec![], false), vec![Check { exe_gains_privilege: true, setup: true, ..check(Capability::SETUID) }]);
        assert!(runtime.no_new_privileges_safe);
    }

    /// ping with cap_net_raw=ep, seen only through its overcommit probes (an ICMP datagram
    /// socket makes no NET_RAW check): its exec needs NET_RAW in the bounding set.
    #[test]
    fn an_exec_of_a_file_capability_program_needs_its_capabilities() {
        let probe = Check {
            exe: Some("/usr/bin/ping".into()),
            comm: "ping".into(),
            exe_gains_privilege: true,
            file_caps: Some(1 << Capability::NET_RAW.number()),
            ..Check::for_test(Capability::SYS_ADMIN.number(), "security_vm_enough_memory_mm", &["__x64_sys_mmap", "security_vm_enough_memory_mm"])
        };
        let w = WorkloadProfile::build(meta(None, vec![], false), vec![probe.clone(), Check { count: 5, ..probe }]);
        assert_eq!(names(&w.capabilities.add), ["NET_RAW"]);
        let exec = w.checks.iter().find(|c| c.capability == "NET_RAW").expect("the exec's need");
        assert_eq!((exec.classification, exec.site.as_deref(), exec.count), (Classification::Needed, Some(FILE_CAPABILITY_SITE), 1));
        assert!(!w.no_new_privileges_safe);
        // A helper's exec a server may do without: a re-run decides.
        assert_eq!(w.doubtful(), [Capability::NET_RAW]);
    }

    #[test]
    fn portability_notes_and_portable_sets() {
        let bind = vec![NetUse { kind: capprof_common::net_use::LOW_PORT_BIND, port: 80, count: 1 }];
        let w = WorkloadProfile::build(meta(None, bind.clone(), false), vec![]);
        assert!(w.capabilities.add.is_empty());
        assert_eq!(w.portability.iter().map(|p| p.capability).collect::<Vec<_>>(), [Capability::NET_BIND_SERVICE]);
        let w = WorkloadProfile::build(meta(None, bind, true), vec![]);
        assert_eq!(names(&w.capabilities.add), ["NET_BIND_SERVICE"]);
    }

    #[test]
    fn checks_are_summarised_per_capability_site_and_class() {
        let a = check(Capability::CHOWN);
        let b = Check { count: 4, comm: "other".into(), ..check(Capability::CHOWN) };
        let w = WorkloadProfile::build(meta(None, vec![], false), vec![a, b]);
        assert_eq!(w.checks.len(), 1);
        assert_eq!(w.checks[0].count, 5);
        assert_eq!(w.checks[0].programs.len(), 2);
    }
}
