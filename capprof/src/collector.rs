//! Collector: drains the first-sighting ring buffer while the workload runs (so the executable
//! of short-lived processes can still be read) and, at the end, the aggregation map and the
//! loss counters, into plain `Observation`s.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{MapData, RingBuf};
use capprof_common::{CheckEvent, CheckKey};

use crate::backend::{Backend, Counters};
use crate::error::Result;

/// Who made a check first, with its kernel stack.
#[derive(Clone, Debug)]
pub struct Sighting {
    pub tid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub exe: Option<String>,
    /// The executable is set-id or carries file capabilities (gains privilege at exec).
    pub exe_gains_privilege: bool,
    /// The capabilities the executable's file capability demands at exec (effective bit set,
    /// not under no-new-privileges): without all of them in the bounding set the kernel
    /// refuses the exec itself (`bprm_caps_from_vfs_caps`), whether or not a check is made.
    pub file_caps: Option<u64>,
    /// The process's effective capabilities when the event was read (what it was granted).
    pub cap_eff: Option<u64>,
    /// Kernel return addresses, innermost first.
    pub stack: Vec<u64>,
}

/// One aggregated check.
#[derive(Clone, Debug)]
pub struct Observation {
    pub key: CheckKey,
    pub count: u64,
    pub sighting: Option<Sighting>,
    /// Made while capprof was stopping the workload (see [`Collector::counts`]).
    pub at_stop: bool,
    /// Of `count`, how many were made in an exec walk's misses (an execvp trying PATH).
    pub futile: u64,
}

/// The system calls one workload key made (`--seccomp`): (number, count), numbers of the
/// key's table.
#[derive(Clone, Debug)]
pub struct SyscallObservation {
    pub key: capprof_common::SyscallKey,
    pub calls: Vec<(u32, u64)>,
}

/// Everything the kernel side saw.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    pub checks: Vec<Observation>,
    pub counters: Counters,
    /// Network operations that need a capability on other runtimes: (cgroup, kind, port, count).
    pub net_uses: Vec<(u64, u32, u32, u64)>,
    /// cgroup v2 paths, read from /proc while their processes ran (containers' cgroups are
    /// often gone by the end).
    pub cgroup_paths: HashMap<u64, String>,
    /// System calls per workload key, with `--seccomp`.
    pub syscalls: Vec<SyscallObservation>,
}

pub struct Collector {
    pub backend: Backend,
    events: RingBuf<MapData>,
    seen: Sightings,
}

/// What the first-sighting events told: who made each check first, and each cgroup's path.
#[derive(Default)]
pub struct Sightings {
    sightings: HashMap<CheckKey, Sighting>,
    cgroup_paths: HashMap<u64, String>,
    /// Paths seen for the first time since the last `take_new_cgroups`.
    new_cgroups: Vec<String>,
    /// Events read since the last `take_event_count`.
    events: u64,
}

impl Collector {
    pub fn new(mut backend: Backend) -> Result<Self> {
        let events = backend.take_events()?;
        Ok(Self { backend, events, seen: Sightings::default() })
    }

    /// File descriptor that polls readable when events are waiting.
    pub fn events_fd(&self) -> RawFd {
        self.events.as_raw_fd()
    }

    /// The ring buffer, for pinning it.
    pub fn events(&self) -> &RingBuf<MapData> {
        &self.events
    }

    /// Processes every waiting first-sighting event.
    pub fn drain(&mut self) {
        self.seen.drain(&mut self.events);
    }

    /// How many first-sighting events were read since the last call (each is a new key).
    pub fn take_event_count(&mut self) -> u64 {
        std::mem::take(&mut self.seen.events)
    }
}

impl Sightings {
    /// Processes every event waiting in `events`.
    pub fn drain(&mut self, events: &mut RingBuf<MapData>) {
        while let Some(item) = events.next() {
            self.events += 1;
            if item.len() < std::mem::size_of::<CheckEvent>() {
                continue;
            }
            // SAFETY: the kernel wrote a whole CheckEvent (size checked); read unaligned.
            let ev: CheckEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let frames = if ev.stack_bytes > 0 { (ev.stack_bytes as usize / 8).min(ev.stack.len()) } else { 0 };
            // Before its exec the task's executable is about to change: don't name it.
            let exe = (ev.key.flags & capprof_common::FLAG_SETUP == 0)
                .then(|| std::fs::read_link(format!("/proc/{}/exe", ev.tgid)).ok().map(|p| p.display().to_string()))
                .flatten();
            // Through /proc/PID/exe: the file itself, also inside a container's mounts.
            let proc_exe = format!("/proc/{}/exe", ev.tgid);
            let exe_gains_privilege = exe.is_some() && gains_privilege(&proc_exe);
            let file_caps = exe.as_ref().and_then(|_| exec_file_caps(&proc_exe)).filter(|_| proc_status_field(ev.tgid, "NoNewPrivs:").as_deref() != Some("1"));
            let cap_eff = proc_status_field(ev.tgid, "CapEff:").and_then(|h| u64::from_str_radix(&h, 16).ok());
            if let std::collections::hash_map::Entry::Vacant(slot) = self.cgroup_paths.entry(ev.key.cgroup_id) {
                // By id first: the process may be gone already, its cgroup rarely is; else the
                // names the kernel read (enough to recognise containers and services).
                let named = || {
                    let leaf = c_string(&ev.cgroup_name);
                    let parent = c_string(&ev.cgroup_parent);
                    (!leaf.is_empty()).then(|| format!("/…/{parent}/{leaf}"))
                };
                if let Some(path) = crate::kernel::cgroup::path_of_id(ev.key.cgroup_id).or_else(|| crate::kernel::cgroup::path_of_pid(ev.tgid)).or_else(named) {
                    self.new_cgroups.push(path.clone());
                    slot.insert(path);
                }
            }
            self.sightings.insert(
                ev.key,
                Sighting { tid: ev.tid, tgid: ev.tgid, uid: ev.uid, exe, exe_gains_privilege, file_caps, cap_eff, stack: ev.stack[..frames].to_vec() },
            );
        }
    }

    /// cgroup paths seen for the first time since the last call.
    pub fn take_new_cgroups(&mut self) -> Vec<String> {
        std::mem::take(&mut self.new_cgroups)
    }

    /// Names the cgroups of `keys` that no event named, from their ids while they still exist
    /// (their events were lost to a full ring buffer while nobody read it).
    pub fn name_from_ids<'a>(&mut self, keys: impl Iterator<Item = &'a CheckKey>) {
        for key in keys {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.cgroup_paths.entry(key.cgroup_id) {
                if let Some(path) = crate::kernel::cgroup::path_of_id(key.cgroup_id) {
                    self.new_cgroups.push(path.clone());
                    slot.insert(path);
                }
            }
        }
    }

    /// Names the cgroups of system-call keys (no event names them: they have none).
    pub fn name_syscall_cgroups(&mut self, syscalls: &[SyscallObservation]) {
        for s in syscalls {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.cgroup_paths.entry(s.key.cgroup_id) {
                if let Some(path) = crate::kernel::cgroup::path_of_id(s.key.cgroup_id) {
                    self.new_cgroups.push(path.clone());
                    slot.insert(path);
                }
            }
        }
    }

    /// Every check with its count and first sighting. With `before_stop` (see
    /// [`Collector::counts`]), what was counted since is split off `at_stop`.
    pub fn observations(
        &self,
        counts: Vec<(CheckKey, u64)>,
        futile: &HashMap<CheckKey, u64>,
        mut counters: Counters,
        net_uses: Vec<(u64, u32, u32, u64)>,
        before_stop: Option<&HashMap<CheckKey, u64>>,
    ) -> Observations {
        let mut checks = Vec::new();
        for (key, count) in counts {
            let sighting = self.sightings.get(&key).cloned();
            let running = before_stop.map_or(count, |b| b.get(&key).copied().unwrap_or(0).min(count));
            // Futile counts go with the running part (what is at stop is shown apart anyway).
            let futile = futile.get(&key).copied().unwrap_or_default().min(running);
            if running > 0 {
                checks.push(Observation { key, count: running, sighting: sighting.clone(), at_stop: false, futile });
            }
            if count > running {
                checks.push(Observation { key, count: count - running, sighting, at_stop: true, futile: 0 });
            }
        }
        counters.checks_seen = checks.iter().map(|c| c.count).sum::<u64>() + counters.checks_map_full;
        Observations { checks, counters, net_uses, cgroup_paths: self.cgroup_paths.clone(), syscalls: vec![] }
    }
}

impl Collector {
    /// Forgets checks of finished cgroups, in the kernel and here (the daemon's memory bound).
    pub fn forget(&mut self, keys: &[CheckKey], cgroups: &[u64]) -> Result<()> {
        for k in keys {
            self.seen.sightings.remove(k);
        }
        for c in cgroups {
            self.seen.cgroup_paths.remove(c);
        }
        self.backend.remove_net_uses(cgroups)?;
        self.backend.remove_syscalls(Some(cgroups))?;
        self.backend.remove_checks(keys)
    }

    /// cgroup paths seen for the first time since the last call.
    pub fn take_new_cgroups(&mut self) -> Vec<String> {
        self.seen.take_new_cgroups()
    }

    /// Forgets everything collected so far (between trials).
    pub fn reset(&mut self) -> Result<()> {
        self.drain();
        self.seen = Sightings::default();
        self.backend.reset()
    }

    /// The counts so far, without draining: taken when capprof starts stopping the workload,
    /// so that what is counted after it can be told apart.
    pub fn counts(&mut self) -> Result<HashMap<CheckKey, u64>> {
        Ok(self.backend.checks()?.into_iter().collect())
    }

    /// Final drain: every check with its count and first sighting, and the counters. With
    /// `before_stop` (see [`Self::counts`]), what was counted since is split off `at_stop`.
    pub fn finish(&mut self, before_stop: Option<&HashMap<CheckKey, u64>>) -> Result<Observations> {
        self.drain();
        let futile = self.backend.futile()?;
        let counts = self.backend.checks()?;
        let counters = self.backend.counters()?;
        let net_uses = self.backend.net_uses()?.into_iter().map(|(k, n)| (k.cgroup_id, k.kind, k.port, n)).collect();
        let syscalls = self.backend.syscalls()?;
        self.seen.name_syscall_cgroups(&syscalls);
        let mut obs = self.seen.observations(counts, &futile, counters, net_uses, before_stop);
        obs.syscalls = syscalls;
        Ok(obs)
    }
}

/// Set-uid/set-gid bits or a `security.capability` xattr: exec'ing it raises privileges, which
/// no-new-privileges would block.
fn gains_privilege(path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let setid = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o6000 != 0).unwrap_or(false);
    let Ok(c) = std::ffi::CString::new(path) else { return setid };
    let has_fcaps = unsafe { libc::getxattr(c.as_ptr(), c"security.capability".as_ptr(), std::ptr::null_mut(), 0) } > 0;
    setid || has_fcaps
}

/// The permitted capabilities of `path`'s file capability (`security.capability`) when its
/// effective bit is set: the exec then needs every one of them in the bounding set.
pub fn exec_file_caps(path: &str) -> Option<u64> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut buf = [0u8; 24];
    // SAFETY: a valid C string and a buffer of the given length.
    let n = unsafe { libc::getxattr(c.as_ptr(), c"security.capability".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    file_caps_of(buf.get(..usize::try_from(n).ok()?)?)
}

/// `struct vfs_cap_data` (revisions 1 to 3): the permitted set when the effective bit is set.
fn file_caps_of(raw: &[u8]) -> Option<u64> {
    const EFFECTIVE: u32 = 0x1;
    let word = |i: usize| raw.get(i * 4..i * 4 + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let magic = word(0)?;
    if magic & EFFECTIVE == 0 {
        return None;
    }
    let low = word(1)? as u64;
    let high = if magic >> 24 >= 2 { word(3).unwrap_or(0) as u64 } else { 0 };
    Some(low | (high << 32)).filter(|p| *p != 0)
}

fn proc_status_field(pid: u32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
}

fn c_string(raw: &[u8]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::file_caps_of;

    #[test]
    fn file_capabilities_are_read_from_vfs_cap_data() {
        // ping: cap_net_raw=ep (revision 2: magic, permitted/inheritable low, then high).
        let ping = [0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(file_caps_of(&ping), Some(1 << 13));
        // Without the effective bit the exec proceeds whatever the bounding set holds.
        let mut lazy = ping;
        lazy[0] = 0;
        assert_eq!(file_caps_of(&lazy), None);
        // Revision 3 (a root id follows), a capability above 31 (CAP_BPF).
        let bpf = [0x01, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(file_caps_of(&bpf), Some(1 << 39));
        assert_eq!(file_caps_of(&[1, 2]), None);
    }
}
