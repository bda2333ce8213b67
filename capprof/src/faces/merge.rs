//! `capprof merge`: combine profiles exported from several nodes (or runs) into one: per
//! workload, the union of needs, with the evidence of every input kept.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::profile::advice::{Advice, AdviceKind};
use crate::capability::Capability;
use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::output;
use crate::profile::{Profile, WorkloadProfile};

/// Validated options of `merge`.
#[derive(Clone, Debug)]
pub struct MergeConfig {
    pub inputs: Vec<PathBuf>,
    pub format: Format,
    pub output: Option<PathBuf>,
}

pub fn run(cfg: &MergeConfig) -> Result<i32> {
    let sink = output::Sink::open(cfg.output.as_deref(), output::Stream::Stdout)?;
    let mut profiles = Vec::new();
    for path in &cfg.inputs {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::new(ErrorKind::MalformedInput, format!("{} is not a capprof JSON profile: not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to())))?;
        let profile = Profile::from_json(&text, &path.display().to_string())?;
        check_version(&profile.capprof_version, path)?;
        profiles.push(profile);
    }
    let versions: std::collections::BTreeSet<&str> = profiles.iter().map(|p| p.capprof_version.as_str()).collect();
    if versions.len() > 1 || !versions.contains(env!("CARGO_PKG_VERSION")) {
        eprintln!(
            "capprof: merging profiles written by capprof {}; the result is stamped {}",
            versions.iter().copied().collect::<Vec<_>>().join(", "),
            env!("CARGO_PKG_VERSION")
        );
    }
    let mut merged = merge(profiles).ok_or_else(|| Error::new(ErrorKind::Usage, "nothing to merge: give at least one profile"))?;
    merged.capprof_version = env!("CARGO_PKG_VERSION").into();
    sink.emit(&merged, cfg.format)?;
    Ok(0)
}

/// A profile's `capprof_version` must be a version this capprof can read: `MAJOR.MINOR.PATCH`,
/// not newer than itself (a newer writer may mean fields this one does not know).
pub fn check_version(version: &str, path: &std::path::Path) -> Result<()> {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|n| n.parse::<u64>().ok());
        let t = (it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(t)
    };
    let ours = parse(env!("CARGO_PKG_VERSION")).unwrap_or((0, 0, 0));
    match parse(version) {
        None => Err(Error::new(ErrorKind::MalformedInput, format!("{}: capprof_version {version:?} is not a capprof version", path.display()))),
        Some(v) if (v.0, v.1) > (ours.0, ours.1) => Err(Error::new(
            ErrorKind::MalformedInput,
            format!("{} was written by capprof {version}, newer than this capprof {}: merge with that version", path.display(), env!("CARGO_PKG_VERSION")),
        )),
        Some(_) => Ok(()),
    }
}

pub fn merge(profiles: Vec<Profile>) -> Option<Profile> {
    let mut iter = profiles.into_iter();
    let mut base = iter.next()?;
    let mut by_name: BTreeMap<String, WorkloadProfile> = BTreeMap::new();
    for w in std::mem::take(&mut base.workloads) {
        add(&mut by_name, w);
    }
    for p in iter {
        base.losses.checks_seen += p.losses.checks_seen;
        base.losses.checks_map_full += p.losses.checks_map_full;
        base.losses.events_dropped += p.losses.events_dropped;
        base.losses.tasks_map_full += p.losses.tasks_map_full;
        base.losses.site_unknown += p.losses.site_unknown;
        base.losses.walks_lost += p.losses.walks_lost;
        base.losses.syscalls_map_full += p.losses.syscalls_map_full;
        base.losses.syscalls_out_of_range += p.losses.syscalls_out_of_range;
        base.losses.placed_in_exec += p.losses.placed_in_exec;
        base.unattributed_checks += p.unattributed_checks;
        base.duration_ms = base.duration_ms.max(p.duration_ms);
        for w in p.workloads {
            add(&mut by_name, w);
        }
    }
    base.workloads = by_name.into_values().collect();
    Some(base)
}

fn union(a: &mut Vec<Capability>, b: &[Capability]) {
    for c in b {
        if !a.contains(c) {
            a.push(*c);
        }
    }
    a.sort_by_key(|c| c.name());
}

fn add(into: &mut BTreeMap<String, WorkloadProfile>, w: WorkloadProfile) {
    let Some(m) = into.get_mut(&w.name) else {
        into.insert(w.name.clone(), w);
        return;
    };
    // The sets, derived as every profile's are: certain on any node settles a doubt elsewhere.
    let classes = m.class_sets().union(w.class_sets());
    m.set_classes(classes);
    if let Some(g) = &w.granted {
        union(m.granted.get_or_insert_with(Vec::new), g);
    }
    m.no_new_privileges_safe &= w.no_new_privileges_safe;
    for n in w.nodes {
        if !m.nodes.contains(&n) {
            m.nodes.push(n);
        }
    }
    m.nodes.sort();
    for p in w.portability {
        if !m.portability.contains(&p) {
            m.portability.push(p);
        }
    }
    // Hardening holds only where every input allows it: advice of one kind (`--read-only`
    // and `--read-only --tmpfs /tmp` alike) is overridden by a node where it does not hold.
    for a in &mut m.hardening {
        if let Some(b) = w.hardening.iter().find(|b| b.kind().is_some() && b.kind() == a.kind() || b.option == a.option) {
            if !b.recommended && a.recommended {
                *a = b.clone();
            } else if a.recommended && b.recommended && a.kind() == Some(AdviceKind::ReadOnly) && a.option != b.option {
                // Both read-only with their scratch directories: every node's tmpfs is needed.
                *a = read_only_union(a, b);
            }
        }
    }
    for b in w.hardening {
        if !m.hardening.iter().any(|a| a.kind().is_some() && a.kind() == b.kind() || a.option == b.option) {
            m.hardening.push(b);
        }
    }
    for c in w.checks {
        match m.checks.iter_mut().find(|k| k.capability == c.capability && k.verdict == c.verdict && k.classification == c.classification && k.site == c.site) {
            Some(k) => {
                k.count += c.count;
                for p in c.programs {
                    if !k.programs.contains(&p) {
                        k.programs.push(p);
                    }
                }
            }
            None => m.checks.push(c),
        }
    }
    // System calls: the union over every input (a node's missing call breaks it there).
    match (&mut m.seccomp, w.seccomp) {
        (Some(ms), Some(ws)) => ms.merge(&ws),
        (None, Some(ws)) => m.seccomp = Some(ws),
        _ => {}
    }
    if m.verification.is_none() {
        m.verification = w.verification;
    } else if let (Some(mv), Some(wv)) = (&mut m.verification, w.verification) {
        mv.runs += wv.runs;
        mv.passed &= wv.passed;
        mv.evidence.extend(wv.evidence);
    }
}

/// `--read-only` with the union of two recommendations' `--tmpfs` directories.
fn read_only_union(a: &Advice, b: &Advice) -> Advice {
    let dirs = |o: &str| -> Vec<String> {
        let words: Vec<&str> = o.split_whitespace().collect();
        words.windows(2).filter(|w| w[0] == "--tmpfs").map(|w| w[1].to_string()).collect()
    };
    let mut all = dirs(&a.option);
    all.extend(dirs(&b.option));
    all.sort();
    all.dedup();
    let option = std::iter::once("--read-only".to_string()).chain(all.iter().map(|d| format!("--tmpfs {d}"))).collect::<Vec<_>>().join(" ");
    let reason = if all.is_empty() { "it wrote nothing to its root filesystem".into() } else { format!("it wrote only to {} (on every node merged)", all.join(", ")) };
    Advice { kind: Some(AdviceKind::ReadOnly), option, recommended: true, reason }
}

#[cfg(test)]
mod tests {
    //! Merging, table by table, on profiles built by hand (no kernel, no root).
    use super::*;
    use crate::attribution::container::ContainerInfo;
    use crate::attribution::Check;
    use crate::profile::{BackendSummary, Losses, WorkloadKind, WorkloadMeta};

    /// A node's profile of workload `web`: the capabilities it used, what its container wrote.
    fn node(caps: &[u32], changed: &[&str]) -> Profile {
        let checks = caps.iter().map(|c| Check::for_test(*c, "ns_capable", &["__x64_sys_x", "ns_capable"])).collect();
        let container = ContainerInfo { name: "web".into(), image: "img".into(), changed_paths: Some(changed.iter().map(|s| s.to_string()).collect()), ..Default::default() };
        let meta = WorkloadMeta { service: None, name: "web".into(), kind: WorkloadKind::Container, command: vec![], cgroup: String::new(), exit_status: None, container: Some(container), net_uses: vec![], portable: false };
        let backend = BackendSummary { name: "tracepoint".into(), sees_opts: false, classification: String::new(), program: None, floor_program: None, syscall_program: None, network_hooks: None };
        Profile::assemble(backend, Losses::default(), 1000, vec![WorkloadProfile::build(meta, checks)])
    }

    fn read_only(p: &Profile) -> (bool, String) {
        let a = p.workloads[0].hardening.iter().find(|a| a.kind() == Some(AdviceKind::ReadOnly)).expect("read-only advice");
        (a.recommended, a.option.clone())
    }

    #[test]
    fn needs_are_united() {
        let m = merge(vec![node(&[0], &[]), node(&[18], &[])]).unwrap();
        let names: Vec<&str> = m.workloads[0].capabilities.add.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["CHOWN", "SYS_CHROOT"]);
        assert_eq!(m.workloads.len(), 1, "one workload, merged by name");
    }

    /// A node where `--read-only` does not hold overrides one where it did, whatever the
    /// option's text (`--read-only --tmpfs /tmp` against `--read-only`), in either order.
    #[test]
    fn a_contradicting_node_overrides_read_only() {
        let scratch_only = node(&[], &["/tmp", "/tmp/x"]);
        let writes_etc = node(&[], &["/etc/state"]);
        assert_eq!(read_only(&scratch_only), (true, "--read-only --tmpfs /tmp".into()));
        assert!(!read_only(&writes_etc).0);
        for order in [vec![scratch_only.clone(), writes_etc.clone()], vec![writes_etc, scratch_only]] {
            let m = merge(order).unwrap();
            assert!(!read_only(&m).0, "{:?}", m.workloads[0].hardening);
            assert_eq!(m.workloads[0].hardening.iter().filter(|a| a.kind() == Some(AdviceKind::ReadOnly)).count(), 1);
        }
    }

    #[test]
    fn read_only_everywhere_keeps_every_nodes_tmpfs() {
        let m = merge(vec![node(&[], &["/tmp/a"]), node(&[], &["/run/b"])]).unwrap();
        assert_eq!(read_only(&m), (true, "--read-only --tmpfs /run --tmpfs /tmp".into()));
    }

    /// Profiles of an older capprof carry no advice kind: it is read from the option.
    #[test]
    fn advice_without_a_kind_is_matched_by_its_option() {
        let mut old = node(&[], &["/tmp"]);
        for a in &mut old.workloads[0].hardening {
            a.kind = None;
        }
        let m = merge(vec![old, node(&[], &["/etc/x"])]).unwrap();
        assert!(!read_only(&m).0);
    }

    /// Merging never changes a profile's sets: with itself, or with a profile of nothing,
    /// conditional and optional capabilities included (they stay in the set, listed apart).
    #[test]
    fn merging_with_itself_or_nothing_gives_the_profile_back() {
        let mut p = node(&[18], &[]);
        let doubtful = |cap: Capability| Check { doubtful: true, ..Check::for_test(cap.number(), "ns_capable", &["__x64_sys_fchown"]) };
        let optional = Check::for_test(Capability::SYS_NICE.number(), "ns_capable", &["__x64_sys_setpriority", "set_one_prio"]);
        let mut checks = vec![doubtful(Capability::CHOWN), optional, Check { denied: true, ..Check::for_test(12, "ns_capable", &["__x64_sys_x"]) }];
        checks.push(Check::for_test(18, "ns_capable", &["__x64_sys_chroot"]));
        let meta = WorkloadMeta { service: None, name: "web".into(), kind: WorkloadKind::Container, command: vec![], cgroup: String::new(), exit_status: None, container: None, net_uses: vec![], portable: false };
        p.workloads = vec![WorkloadProfile::build(meta, checks)];
        let sets = |p: &Profile| {
            let w = &p.workloads[0];
            (w.capabilities.add.clone(), w.conditional.clone(), w.optional.clone(), w.would_need.clone())
        };
        let before = sets(&p);
        assert_eq!(before.1, [Capability::CHOWN]);
        assert_eq!(before.2, [Capability::SYS_NICE]);
        assert_eq!(sets(&merge(vec![p.clone(), p.clone()]).unwrap()), before, "merged with itself");
        let mut empty = p.clone();
        empty.workloads.clear();
        assert_eq!(sets(&merge(vec![p.clone(), empty.clone()]).unwrap()), before, "merged with an empty profile");
        assert_eq!(sets(&merge(vec![empty, p.clone()]).unwrap()), before, "an empty profile merged with it");
        let classes = |p: &Profile| p.workloads[0].checks.iter().map(|c| (c.capability.to_string(), c.classification)).collect::<Vec<_>>();
        assert_eq!(classes(&merge(vec![p.clone(), p.clone()]).unwrap()), classes(&p));
    }

    #[test]
    fn no_new_privileges_holds_only_where_every_node_allows_it() {
        let mut setuid = node(&[7], &[]);
        setuid.workloads[0].no_new_privileges_safe = false;
        let m = merge(vec![node(&[], &[]), setuid]).unwrap();
        assert!(!m.workloads[0].no_new_privileges_safe);
    }
}
