//! The system calls of a workload's profile (`--seccomp`): what its seccomp allow list is
//! rendered from (`-f seccomp`, `-f spo`, and the references in docker, compose and k8s
//! outputs), with counts and the programs that made each call.
//!
//! The allow list is the workload's own calls plus the runtime's boundary: a runtime installs
//! the filter before it execs the workload, so what it calls from then on (runc init dropping
//! capabilities, the exec itself) passes through the filter too. The kernel program marks a
//! runtime task in scope that installs a filter and counts its calls apart (`runtime`); where
//! none was installed while recording, the measured boundary of runc and crun is assumed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::WorkloadKind;
use crate::collector::SyscallObservation;
use crate::seccomp::{docker_default, oci::SeccompFile, Arch, RUNTIME_BOUNDARY};

/// Where a call in the allow list comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The workload made it.
    #[default]
    Workload,
    /// The runtime made it after installing the filter, before the workload's exec.
    Runtime,
    /// Not seen, but made under the filter by every runtime before the exec (see the module doc).
    Assumed,
    /// Not seen while recording, refused on a re-run under the allow list, and needed.
    Proven,
    /// Not in the allow list: the filter the workload ran under while recording answered it
    /// with ENOSYS before it entered (Docker's profile does for `clone3`), and the program
    /// went on (glibc falls back to `clone`). The profile answers it the same: EPERM would
    /// stop the fallback.
    Enosys,
}

/// One system call: how often, by which programs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyscallUse {
    pub name: String,
    pub arch: Arch,
    pub count: u64,
    pub programs: Vec<String>,
    #[serde(default)]
    pub source: Source,
}

/// A workload's system calls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SyscallProfile {
    /// The tables calls were made on (x86_64 always).
    pub architectures: Vec<Arch>,
    /// The allow list, by table then name.
    pub syscalls: Vec<SyscallUse>,
    /// Calls seccomp refused with EPERM (the workload ran under a profile: the engine's during
    /// `record`, the one being proven during `verify` and `minimize`). They stay refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<SyscallUse>,
    /// Calls seccomp answered with ENOSYS before they entered, and the program went on: the
    /// profile answers them ENOSYS too (an explicit rule), never the default EPERM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enosys: Vec<SyscallUse>,
    /// Numbers no known table names (`nr:N`): not in the allow list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unnamed: Vec<SyscallUse>,
    /// How the runtime's boundary was learned.
    pub boundary: String,
    /// Of the calls Docker's default profile allows (x86_64, default capabilities), how many
    /// this one no longer does.
    pub removed_from_docker_default: usize,
    /// Where capprof wrote the OCI profile file (docker, docker-run, compose, k8s outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl SyscallProfile {
    /// The profile of one workload's observations.
    pub fn build(observations: &[SyscallObservation], kind: WorkloadKind) -> Self {
        let (allowed, refused) = tally(observations);
        Self::from_uses(allowed, refused, kind)
    }

    /// The profile of calls already tallied (the daemon keeps them per workload): `allowed`
    /// made by the workload or the runtime after its filter (unnamed numbers as `nr:N`),
    /// `refused` by seccomp.
    pub fn from_uses(allowed: Vec<SyscallUse>, refused: Vec<SyscallUse>, kind: WorkloadKind) -> Self {
        let runtime_seen = allowed.iter().any(|s| s.source == Source::Runtime);
        let (unnamed, made): (Vec<SyscallUse>, Vec<SyscallUse>) = allowed.into_iter().partition(|s| s.name.starts_with("nr:"));
        let (mut enosys, mut syscalls): (Vec<SyscallUse>, Vec<SyscallUse>) = made.into_iter().partition(|s| s.source == Source::Enosys);
        // A call some program made gets through; only one never made is answered ENOSYS.
        enosys.retain(|e| !syscalls.iter().any(|s| s.arch == e.arch && s.name == e.name));
        let (assumed, boundary): (&[&str], String) = match kind {
            // The measured boundary even when one was seen: Go's runtime in runc init does not
            // make the same calls on every start.
            WorkloadKind::Container if runtime_seen => (RUNTIME_BOUNDARY, "observed: the runtime's calls after it installed the recording's filter, before the exec, and runc's and crun's measured ones".into()),
            WorkloadKind::Container => (
                RUNTIME_BOUNDARY,
                "assumed: the runtime installed no seccomp filter while recording (seccomp=unconfined?), so the calls runc and crun make between installing one and the exec were added".into(),
            ),
            // capprof installs the filter before dropping capabilities, as runc does.
            WorkloadKind::Command => (&["execve", "prctl", "capget", "capset"], "capprof's own: the exec, and the capability calls capprof makes after installing the filter".into()),
            WorkloadKind::Service => (&["execve"], "the exec (systemd applies SystemCallFilter= last)".into()),
        };
        for name in assumed {
            if !syscalls.iter().any(|s| s.arch == Arch::X86_64 && s.name == *name) {
                syscalls.push(SyscallUse { name: name.to_string(), arch: Arch::X86_64, count: 0, programs: vec![], source: Source::Assumed });
            }
        }
        syscalls.sort_by(|a, b| (a.arch, &a.name).cmp(&(b.arch, &b.name)));
        let mut architectures: Vec<Arch> = syscalls.iter().map(|s| s.arch).chain([Arch::X86_64]).collect();
        architectures.sort();
        architectures.dedup();
        let mut p = Self { architectures, syscalls, refused, enosys, unnamed, boundary, removed_from_docker_default: 0, file: None };
        p.removed_from_docker_default = p.removed_from_docker_default().len();
        p
    }

    /// The calls the profile answers with ENOSYS (see [`SyscallProfile::enosys`]).
    pub fn enosys_names(&self) -> BTreeSet<String> {
        self.enosys.iter().map(|s| s.name.clone()).filter(|n| !self.syscalls.iter().any(|s| &s.name == n)).collect()
    }

    /// Every name the allow list holds (all tables: OCI profiles name calls, libseccomp
    /// resolves them per table).
    pub fn allowed_names(&self) -> BTreeSet<String> {
        self.syscalls.iter().map(|s| s.name.clone()).collect()
    }

    /// The OCI/Docker profile file.
    pub fn to_oci(&self) -> SeccompFile {
        SeccompFile::allow_list(&self.architectures, &self.allowed_names()).answering_enosys(&self.enosys_names())
    }

    /// Calls Docker's default profile allows that this one does not.
    pub fn removed_from_docker_default(&self) -> Vec<&'static str> {
        let mine = self.allowed_names();
        let mut v: Vec<&'static str> = docker_default::allowed().filter(|n| !mine.contains(*n) && Arch::X86_64.number_of(n).is_some()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Calls a re-run under the allow list showed were needed although not seen while
    /// recording (refused, then added back by `minimize --seccomp`).
    pub fn add_proven(&mut self, names: &BTreeSet<String>) {
        for name in names {
            if !self.syscalls.iter().any(|s| &s.name == name) {
                self.syscalls.push(SyscallUse { name: name.clone(), arch: Arch::X86_64, count: 0, programs: vec![], source: Source::Proven });
            }
        }
        self.syscalls.sort_by(|a, b| (a.arch, &a.name).cmp(&(b.arch, &b.name)));
        self.removed_from_docker_default = self.removed_from_docker_default().len();
    }

    /// The union of two profiles of one workload (replicas, nodes, daemon generations).
    pub fn merge(&mut self, other: &SyscallProfile) {
        for s in &other.syscalls {
            match self.syscalls.iter_mut().find(|m| m.arch == s.arch && m.name == s.name) {
                Some(m) => {
                    m.count += s.count;
                    m.programs = m.programs.iter().chain(&s.programs).cloned().collect::<BTreeSet<_>>().into_iter().collect();
                    m.source = m.source.min(s.source);
                }
                None => self.syscalls.push(s.clone()),
            }
        }
        self.syscalls.sort_by(|a, b| (a.arch, &a.name).cmp(&(b.arch, &b.name)));
        for s in &other.refused {
            if !self.refused.iter().any(|m| m.arch == s.arch && m.name == s.name) {
                self.refused.push(s.clone());
            }
        }
        for s in &other.enosys {
            if !self.enosys.iter().any(|m| m.arch == s.arch && m.name == s.name) {
                self.enosys.push(s.clone());
            }
        }
        // Made somewhere: allowed everywhere.
        let syscalls = &self.syscalls;
        self.enosys.retain(|e| !syscalls.iter().any(|s| s.arch == e.arch && s.name == e.name));
        for a in &other.architectures {
            if !self.architectures.contains(a) {
                self.architectures.push(*a);
            }
        }
        self.architectures.sort();
        if self.boundary != other.boundary && !other.boundary.is_empty() {
            self.boundary = format!("{}; {}", self.boundary, other.boundary);
        }
        self.removed_from_docker_default = self.removed_from_docker_default().len();
    }
}

/// Observations summed by (table, name): the calls the allow list needs (with those answered
/// ENOSYS, `Source::Enosys`), and those refused with EPERM.
pub fn tally(observations: &[SyscallObservation]) -> (Vec<SyscallUse>, Vec<SyscallUse>) {
    use capprof_common::{PHASE_ENOSYS, PHASE_ENOSYS_FILTERED, PHASE_FILTERED, PHASE_REFUSED, PHASE_REFUSED_FILTERED, PHASE_WORKLOAD};
    // (arch, name) -> (count, programs, runtime only?)
    let mut allowed: BTreeMap<(Arch, String), (u64, BTreeSet<String>, bool)> = BTreeMap::new();
    let mut refused: BTreeMap<(Arch, String), (u64, BTreeSet<String>, bool)> = BTreeMap::new();
    let mut enosys: BTreeMap<(Arch, String), (u64, BTreeSet<String>, bool)> = BTreeMap::new();
    let runc_in: BTreeSet<u64> = observations.iter().filter(|o| c_string(&o.key.comm).starts_with("runc:[")).map(|o| o.key.cgroup_id).collect();
    for o in observations {
        let Some(arch) = Arch::from_kernel(o.key.arch) else { continue };
        let comm = c_string(&o.key.comm);
        if o.key.phase == PHASE_WORKLOAD && runc_before_filter(&comm, runc_in.contains(&o.key.cgroup_id)) {
            continue;
        }
        let into = match o.key.phase {
            PHASE_WORKLOAD | PHASE_FILTERED => &mut allowed,
            PHASE_REFUSED | PHASE_REFUSED_FILTERED => &mut refused,
            PHASE_ENOSYS | PHASE_ENOSYS_FILTERED => &mut enosys,
            _ => continue,
        };
        for &(nr, n) in &o.calls {
            let name = arch.name_of(nr).map_or_else(|| format!("nr:{nr}"), str::to_string);
            let e = into.entry((arch, name)).or_insert((0, BTreeSet::new(), true));
            e.0 += n;
            e.1.insert(comm.clone());
            e.2 &= o.key.phase == PHASE_FILTERED;
        }
    }
    let uses = |m: BTreeMap<(Arch, String), (u64, BTreeSet<String>, bool)>| -> Vec<SyscallUse> {
        m.into_iter()
            .map(|((arch, name), (count, programs, runtime))| SyscallUse { name, arch, count, programs: programs.into_iter().collect(), source: if runtime { Source::Runtime } else { Source::Workload } })
            .collect()
    };
    let mut refused = uses(refused);
    for r in &mut refused {
        r.source = Source::Workload;
    }
    let mut allowed = uses(allowed);
    allowed.extend(uses(enosys).into_iter().map(|e| SyscallUse { source: Source::Enosys, ..e }));
    (allowed, refused)
}

/// runc init that exec'd inside the container's cgroup, before it installed the filter: its
/// set-up (sync socketpairs, mounts, pivot_root), never the workload's. Its stages name
/// themselves `runc:[N:...]`; before that it is `exe` (exec'd as /proc/self/exe, moved in
/// before that exec completed) or `runc` (runc 1.1 re-execs a copy of itself through
/// `/dev/fd/N`, which Linux 6.14+ names after the copy's file, and runc's parent may have
/// moved it in before that second exec began), taken as runc's only where runc's stages ran
/// in the same cgroup. Older kernels name that second exec after its descriptor (`6`): left
/// in, since a workload's program may be named so, and an extra name only widens the list.
/// (docker-init, tini: the container's own init, under the filter: theirs count.)
pub fn runc_before_filter(comm: &str, runc_in_cgroup: bool) -> bool {
    comm.starts_with("runc:[") || ((comm == "exe" || comm == "runc") && runc_in_cgroup)
}

pub fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capprof_common::{SyscallKey, ARCH_I386, ARCH_X86_64, PHASE_FILTERED, PHASE_REFUSED, PHASE_WORKLOAD};

    fn obs(comm: &str, arch: u32, phase: u32, calls: &[(u32, u64)]) -> SyscallObservation {
        let mut c = [0u8; 16];
        c[..comm.len()].copy_from_slice(comm.as_bytes());
        SyscallObservation { key: SyscallKey { cgroup_id: 1, comm: c, arch, phase }, calls: calls.to_vec() }
    }

    #[test]
    fn workload_runtime_refused_and_unnamed_calls_are_kept_apart() {
        let p = SyscallProfile::build(
            &[
                obs("nginx", ARCH_X86_64, PHASE_WORKLOAD, &[(0, 5), (1, 2), (59, 1)]),
                obs("sh", ARCH_X86_64, PHASE_WORKLOAD, &[(0, 1)]),
                obs("runc:[2:INIT]", ARCH_X86_64, PHASE_FILTERED, &[(126, 1), (59, 1)]),
                obs("nginx", ARCH_X86_64, PHASE_REFUSED, &[(165, 1)]),
                obs("old", ARCH_I386, PHASE_WORKLOAD, &[(11, 1), (1000, 3)]),
            ],
            WorkloadKind::Container,
        );
        let read = p.syscalls.iter().find(|s| s.name == "read").unwrap();
        assert_eq!((read.count, read.programs.clone(), read.source), (6, vec!["nginx".to_string(), "sh".to_string()], Source::Workload));
        assert_eq!(p.syscalls.iter().find(|s| s.name == "capset").unwrap().source, Source::Runtime);
        assert_eq!(p.syscalls.iter().find(|s| s.name == "execve" && s.arch == Arch::X86_64).unwrap().source, Source::Workload, "made by both");
        assert!(p.boundary.starts_with("observed"));
        assert_eq!(p.refused[0].name, "mount");
        assert!(!p.allowed_names().contains("mount"));
        assert_eq!(p.unnamed[0].name, "nr:1000");
        assert_eq!(p.architectures, [Arch::X86_64, Arch::I386]);
        assert!(p.removed_from_docker_default().contains(&"ptrace"));
        assert_eq!(p.to_oci().architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
    }

    #[test]
    fn runc_init_before_its_stages_rename_it_is_runc_only_where_they_ran() {
        // Seen under Docker on Linux 6.18: runc init re-exec'd its copy inside the container
        // (comm `runc`) and made its sync socketpairs there as the workload.
        let p = SyscallProfile::build(
            &[
                obs("runc", ARCH_X86_64, PHASE_WORKLOAD, &[(53, 2)]),
                obs("exe", ARCH_X86_64, PHASE_WORKLOAD, &[(165, 1)]),
                obs("runc:[2:INIT]", ARCH_X86_64, PHASE_FILTERED, &[(126, 1), (59, 1)]),
                obs("python3", ARCH_X86_64, PHASE_WORKLOAD, &[(53, 1), (0, 1)]),
            ],
            WorkloadKind::Container,
        );
        let socketpair = p.syscalls.iter().find(|s| s.name == "socketpair").unwrap();
        assert_eq!((socketpair.count, socketpair.programs.clone()), (1, vec!["python3".to_string()]));
        assert!(!p.allowed_names().contains("mount"));
        // Without runc's stages in that cgroup, a program named runc or exe is the workload's.
        assert!(!runc_before_filter("runc", false) && !runc_before_filter("exe", false));
        assert!(runc_before_filter("runc:[1:CHILD]", false));
    }

    /// glibc's clone3 probe answered ENOSYS by the engine's profile while recording: not in the
    /// allow list, answered ENOSYS by the profile too; a call some program made stays allowed.
    #[test]
    fn calls_answered_enosys_while_recording_are_answered_enosys() {
        use capprof_common::PHASE_ENOSYS;
        let p = SyscallProfile::build(
            &[obs("python3", ARCH_X86_64, PHASE_WORKLOAD, &[(56, 3), (0, 9)]), obs("python3", ARCH_X86_64, PHASE_ENOSYS, &[(435, 3)]), obs("python3", ARCH_X86_64, PHASE_REFUSED, &[(165, 1)])],
            WorkloadKind::Container,
        );
        assert_eq!(p.enosys.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["clone3"]);
        assert!(!p.allowed_names().contains("clone3") && p.allowed_names().contains("clone"));
        assert_eq!(p.refused[0].name, "mount", "EPERM stays refused");
        let oci = p.to_oci();
        assert_eq!(oci.enosys_names(), ["clone3".to_string()].into());
        assert!(!oci.enosys_names().contains("mount"));
        // Merged with a recording where clone3 entered (seccomp=unconfined): allowed.
        let mut m = p.clone();
        m.merge(&SyscallProfile::build(&[obs("python3", ARCH_X86_64, PHASE_WORKLOAD, &[(435, 1)])], WorkloadKind::Container));
        assert!(m.allowed_names().contains("clone3") && m.enosys.is_empty() && m.to_oci().enosys_names().is_empty());
    }

    #[test]
    fn a_boundary_not_seen_is_assumed() {
        let p = SyscallProfile::build(&[obs("busybox", ARCH_X86_64, PHASE_WORKLOAD, &[(0, 1)])], WorkloadKind::Container);
        assert!(p.boundary.starts_with("assumed"));
        for name in RUNTIME_BOUNDARY {
            assert!(p.allowed_names().contains(*name), "{name}");
        }
        let c = SyscallProfile::build(&[], WorkloadKind::Command);
        assert_eq!(c.allowed_names(), ["capget", "capset", "execve", "prctl"].iter().map(|s| s.to_string()).collect());
        let mut m = p.clone();
        m.merge(&SyscallProfile::build(&[obs("busybox", ARCH_X86_64, PHASE_WORKLOAD, &[(0, 2), (39, 1)])], WorkloadKind::Container));
        assert_eq!(m.syscalls.iter().find(|s| s.name == "read").unwrap().count, 3);
        assert!(m.allowed_names().contains("getpid"));
    }
}
