//! The daemon's collection loop: every second, new checks from the kernel maps become facts
//! about workloads. New facts are committed to the store before anything reports them;
//! counts of known facts are batched. Checks of finished cgroups are removed from the kernel
//! map once their counts are durable, so memory stays bounded under container churn.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capprof_common::CheckKey;

use crate::attribution::identity::{self, Identity};
use super::store::{self, Fact, Store, WorkloadRecord};
use crate::attribution::discovery::Discovery;
use crate::attribution::symbolize;
use crate::backend::Counters;
use crate::classify::{classify, Classification};
use crate::error::Result;
use crate::session::Tracer;

/// What the server shows besides the store: losses, totals, the kernel program's cost.
#[derive(Clone, Debug, Default)]
pub struct Health {
    pub counters: Counters,
    pub unattributed: u64,
    pub program_runs: u64,
    pub program_run_time_ns: u64,
    pub kernel_checks: usize,
    pub last_cycle_ms: u64,
}

pub struct Learner {
    pub tracer: Tracer,
    pub discovery: Discovery,
    pub store: Arc<Mutex<Store>>,
    pub health: Arc<Mutex<Health>>,
    pub services: bool,
    pub flush_every: Duration,
    last_counts: HashMap<CheckKey, u64>,
    /// Count deltas of known facts not yet written.
    /// Per known fact: (count delta, last seen, futile delta).
    pending: HashMap<String, (u64, u64, u64)>,
    /// Futile counts already taken per kernel key (they trail the check count until the exec
    /// that settles them).
    last_futile: HashMap<CheckKey, u64>,
    workloads: HashMap<String, WorkloadRecord>,
    dirty_workloads: HashSet<String>,
    last_flush: Instant,
    /// A first-sighting event (a new key in the kernel's maps) was read since the maps were.
    new_keys: bool,
    unattributed: u64,
    /// Keys whose cgroup was not named yet (their first-sighting event may still be on its
    /// way), with the cycles waited.
    unnamed: HashMap<CheckKey, u32>,
    /// This run's pinned generation (see [`crate::backend::pins`]): its kernel counts taken
    /// are made durable with the facts they went into.
    pub generation: Option<String>,
    /// Keys whose taken count changed since the last commit.
    undrained: HashSet<CheckKey>,
    /// Keys evicted from the kernel whose drained counts can go.
    evicted: Vec<CheckKey>,
    /// Losses the earlier generations' programs counted (reported with this run's own).
    inherited: Counters,
    /// System calls already taken per kernel key and number (the live map counts up).
    last_syscalls: HashMap<(capprof_common::SyscallKey, u32), u64>,
    /// File capabilities of programs found by name in their images (image, comm): for
    /// processes gone before their executable could be read.
    image_programs: HashMap<(String, String), Option<(String, u64)>>,
}

/// Counts already taken from one generation's maps, per kernel key.
#[derive(Default)]
struct Taken {
    counts: HashMap<CheckKey, u64>,
    futile: HashMap<CheckKey, u64>,
}

/// A container's first seconds, when the daemon asks its engine about it often (a short-lived
/// one is assessed while it still runs).
const YOUNG: Duration = Duration::from_secs(10);

/// Cycles a key may wait for its cgroup's name before its checks count as unattributed.
const NAMING_CYCLES: u32 = 4;

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Learner {
    pub fn new(tracer: Tracer, store: Arc<Mutex<Store>>, health: Arc<Mutex<Health>>, services: bool, flush_every: Duration) -> Result<Self> {
        let workloads = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).workloads()?.into_iter().map(|w| (w.identity.id.clone(), w)).collect();
        Ok(Self {
            tracer,
            discovery: Discovery::default(),
            store,
            health,
            services,
            flush_every,
            last_counts: HashMap::new(),
            pending: HashMap::new(),
            last_futile: HashMap::new(),
            workloads,
            dirty_workloads: HashSet::new(),
            last_flush: Instant::now(),
            new_keys: true,
            unattributed: 0,
            unnamed: HashMap::new(),
            generation: None,
            undrained: HashSet::new(),
            evicted: Vec::new(),
            inherited: Counters::default(),
            last_syscalls: HashMap::new(),
            image_programs: HashMap::new(),
        })
    }

    /// Learns what an earlier generation's pinned programs counted (while no daemon ran, or
    /// before a kill -9 let its last counts become durable), above what the state already
    /// holds of it; returns the checks learned. Its cgroups are named from its own events.
    pub fn learn_generation(&mut self, generation: &mut crate::backend::pins::Generation) -> Result<u64> {
        let obs = generation.observations();
        for path in obs.cgroup_paths.values() {
            self.discovery.observe(path);
        }
        let drained = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drained(&generation.name)?;
        let mut taken = Taken {
            counts: drained.iter().map(|(k, (c, _))| (*k, *c)).collect(),
            futile: drained.iter().map(|(k, (_, f))| (*k, *f)).collect(),
        };
        let mut new_facts = Vec::new();
        let learned = self.learn(&obs, &mut taken, false, &mut new_facts);
        self.learn_net_uses(&obs);
        self.learn_syscalls(&obs, false);
        self.commit(new_facts, true)?;
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner).forget_generation(&generation.name)?;
        self.inherited += obs.counters;
        Ok(learned)
    }

    /// Adopts the containers (and services) already running: their threads count as workload.
    pub fn adopt_running(&mut self) -> Result<usize> {
        let mount = crate::kernel::cgroup::unified_mount()?;
        let mut paths: Vec<String> = crate::attribution::discovery::running_now().into_iter().map(|r| r.cgroup).collect();
        if self.services {
            paths.extend(services_now(&mount));
        }
        for rel in &paths {
            let dir = mount.join(rel.trim_start_matches('/'));
            let id = crate::kernel::cgroup::id_of(&dir)?;
            self.tracer.adopt_tasks(id, rel, &crate::kernel::cgroup::threads_below(&dir))?;
            self.discovery.observe_running(rel);
        }
        Ok(paths.len())
    }

    fn identity_of(&self, path: &str) -> Option<Identity> {
        if let Some((_, info)) = self.discovery.container_of(path) {
            return Some(identity::of_container(info));
        }
        if self.services {
            return identity::of_service(path);
        }
        None
    }

    /// Waits up to `timeout` for first-sighting events (or for `wake`, the daemon's stop) and
    /// names the new cgroups they bring.
    pub fn wait_for_events(&mut self, timeout: Duration, wake: std::os::fd::RawFd) {
        let mut fds = [libc::pollfd { fd: self.tracer.events_fd(), events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 }];
        // Rounded up: a wait cut short by a millisecond would wake twice per pass.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        self.take_events();
    }

    /// How long after the last pass the next one is due: `every` while a new key was announced
    /// or waits for its cgroup's name, else when the next container assessment or the flush is
    /// due, whichever comes first (never sooner than `every`). An idle node's daemon thus
    /// wakes once per flush instead of every `every` (BENCHMARKS.md); a first-sighting event
    /// wakes it at once whatever the wait.
    pub fn next_pass_in(&self, every: Duration) -> Duration {
        if self.new_keys || !self.unnamed.is_empty() {
            return every;
        }
        let flush = self.flush_every.saturating_sub(self.last_flush.elapsed());
        let refresh = self.discovery.next_refresh_in(YOUNG).unwrap_or(Duration::MAX);
        flush.min(refresh).max(every)
    }

    fn take_events(&mut self) {
        for path in self.tracer.poll_events() {
            self.discovery.observe(&path);
        }
        self.new_keys |= self.tracer.take_event_count() > 0;
    }

    /// One pass: new cgroups, new checks, durable new facts, batched counts, eviction.
    ///
    /// The maps are read when a new key was announced (its fact becomes durable at once),
    /// while a key waits for its cgroup's name, and at every flush; else the pass only paces
    /// the containers' assessments. Iterating the kernel's hash maps walks all their buckets:
    /// an idle node's daemon would spend most of its CPU on that (BENCHMARKS.md). Counts of
    /// known keys (and system calls, network uses) then reach the store at the flush, as before.
    pub fn cycle(&mut self) -> Result<()> {
        let started = Instant::now();
        self.take_events();
        let due = self.last_flush.elapsed() >= self.flush_every;
        if !due && !self.new_keys && self.unnamed.is_empty() {
            self.refresh_containers(YOUNG);
            return Ok(());
        }
        self.new_keys = false;
        // Cgroups already gone before the maps are read: their counts in this read are final,
        // so their keys can be evicted after this cycle's flush (one still alive now could
        // count more between the read and the eviction).
        let gone: HashSet<u64> = if due {
            self.last_counts.keys().map(|k| k.cgroup_id).collect::<HashSet<_>>().into_iter().filter(|id| !crate::kernel::cgroup::exists(*id)).collect()
        } else {
            HashSet::new()
        };
        let obs = self.tracer.observations()?;
        let mut taken = Taken { counts: std::mem::take(&mut self.last_counts), futile: std::mem::take(&mut self.last_futile) };
        let mut new_facts: Vec<(String, Fact)> = Vec::new();
        self.learn(&obs, &mut taken, true, &mut new_facts);
        self.last_counts = taken.counts;
        self.last_futile = taken.futile;
        self.learn_net_uses(&obs);
        self.learn_syscalls(&obs, true);
        // Those seen in the last 10 s at every cycle, as `record` asks every second while they
        // run (a short-lived one is assessed too); the others paced (see refresh_paced).
        self.refresh_containers(YOUNG);
        // New facts (and their workloads) are durable before this cycle ends: only then do the
        // API and metrics, which read the store, show them. Batched counts go with them.
        if !new_facts.is_empty() || due {
            self.commit(new_facts, false)?;
        }
        if due {
            self.evict(&obs, &gone)?;
        }
        let mut h = self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        h.counters = obs.counters;
        h.counters += self.inherited;
        h.unattributed = self.unattributed;
        h.kernel_checks = obs.checks.len();
        if let Some(p) = self.tracer.backend_summary().program {
            h.program_runs = p.runs;
            h.program_run_time_ns = (p.mean_ns * p.runs as f64) as u64;
        }
        h.last_cycle_ms = started.elapsed().as_millis() as u64;
        Ok(())
    }

    /// Network operations (low-port binds, ping sockets) per workload: what its profile's
    /// portability notes are drawn from, as in `record`.
    fn learn_net_uses(&mut self, obs: &crate::collector::Observations) {
        for &(cgroup, kind, port, count) in &obs.net_uses {
            let Some(identity) = obs.cgroup_paths.get(&cgroup).and_then(|p| self.identity_of(p)) else { continue };
            let Some(record) = self.workloads.get_mut(&identity.id) else { continue };
            if !record.net_uses.iter().any(|u| u.kind == kind && u.port == port) {
                record.net_uses.push(crate::attribution::workloads::NetUse { kind, port, count });
                self.dirty_workloads.insert(identity.id);
            }
        }
    }

    /// System calls per workload (`--seccomp`). From the live maps the counts since the last
    /// read are added; from an earlier generation's pinned maps (`live` false) the calls not
    /// known yet are added with their counts (the others were learned by that generation's
    /// daemon while it ran, up to its last flush).
    fn learn_syscalls(&mut self, obs: &crate::collector::Observations, live: bool) {
        use crate::profile::seccomp::{c_string, Source, SyscallUse};
        let runc_in: HashSet<u64> = obs.syscalls.iter().filter(|o| c_string(&o.key.comm).starts_with("runc:[")).map(|o| o.key.cgroup_id).collect();
        for s in &obs.syscalls {
            let source = match s.key.phase {
                capprof_common::PHASE_WORKLOAD => Source::Workload,
                capprof_common::PHASE_FILTERED => Source::Runtime,
                // The filter it runs under answered ENOSYS and it went on: its profile must too.
                capprof_common::PHASE_ENOSYS | capprof_common::PHASE_ENOSYS_FILTERED => Source::Enosys,
                _ => continue,
            };
            let Some(arch) = crate::seccomp::Arch::from_kernel(s.key.arch) else { continue };
            let Some(identity) = obs.cgroup_paths.get(&s.key.cgroup_id).and_then(|p| self.identity_of(p)) else { continue };
            // Its checks make the record; until then the calls wait in the kernel map.
            let Some(record) = self.workloads.get_mut(&identity.id) else { continue };
            let comm = c_string(&s.key.comm);
            // runc init before its filter (see `SyscallProfile::build`).
            if source != Source::Runtime && crate::profile::seccomp::runc_before_filter(&comm, runc_in.contains(&s.key.cgroup_id)) {
                continue;
            }
            for &(nr, n) in &s.calls {
                let name = arch.name_of(nr).map_or_else(|| format!("nr:{nr}"), str::to_string);
                let delta = if live { n.saturating_sub(self.last_syscalls.insert((s.key, nr), n).unwrap_or(0)) } else { n };
                let changed = match record.syscalls.iter_mut().find(|u| u.arch == arch && u.name == name) {
                    Some(u) => {
                        if live {
                            u.count += delta;
                        }
                        let new_program = !u.programs.contains(&comm);
                        if new_program {
                            u.programs.push(comm.clone());
                            u.programs.sort();
                        }
                        let widened = source < u.source;
                        u.source = u.source.min(source);
                        new_program || widened || delta > 0
                    }
                    None => {
                        record.syscalls.push(SyscallUse { name, arch, count: delta, programs: vec![comm.clone()], source });
                        true
                    }
                };
                if changed {
                    self.dirty_workloads.insert(identity.id.clone());
                }
            }
            record.syscalls.sort_by(|a, b| (a.arch, &a.name).cmp(&(b.arch, &b.name)));
        }
    }

    /// Asks the engines what the running containers changed in their filesystems (what
    /// `--read-only` advice is drawn from, as `record` does while they run).
    fn refresh_containers(&mut self, young: Duration) {
        self.discovery.refresh_paced(young);
        let known: Vec<(String, crate::attribution::container::ContainerInfo)> = self
            .discovery
            .containers()
            .filter(|(_, info)| info.changed_paths.is_some())
            .map(|(_, info)| (identity::of_container(info).id, info.clone()))
            .filter(|(id, info)| self.workloads.get(id).is_some_and(|w| w.container.as_ref().is_some_and(|c| c.id == info.id)))
            .collect();
        for (id, info) in known {
            if let Some(record) = self.workloads.get_mut(&id) {
                if record.container.as_ref().map(|c| &c.changed_paths) != Some(&info.changed_paths) {
                    record.container = Some(info);
                    self.dirty_workloads.insert(id);
                }
            }
        }
    }

    /// Writes batched counts (and touched workloads), and every kernel count taken.
    pub fn flush(&mut self) -> Result<()> {
        self.commit(Vec::new(), true)
    }

    /// The pass before the daemon stops: the maps are read whatever the timers say.
    pub fn last_cycle(&mut self) -> Result<()> {
        self.new_keys = true;
        self.cycle()
    }

    /// One durable transaction: new facts, batched counts of known facts, touched workloads,
    /// and (when pinned) the kernel counts all of them account for.
    ///
    /// Kernel counts taken of keys that went to no workload (the host's own checks: only
    /// the unattributed total) wait for the next commit that writes anything else, or for
    /// `all` (the last flush): alone they would cost an idle node's disk a synchronous write
    /// at every flush (BENCHMARKS.md). Lost in a crash, they are only learned again, and
    /// counted unattributed again.
    fn commit(&mut self, new_facts: Vec<(String, Fact)>, all: bool) -> Result<()> {
        self.last_flush = Instant::now();
        let nothing_else = new_facts.is_empty() && self.pending.is_empty() && self.dirty_workloads.is_empty() && self.evicted.is_empty();
        if nothing_else && (self.undrained.is_empty() || !all) {
            return Ok(());
        }
        let mut store = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut facts = new_facts;
        for (key, (delta, last, futile)) in self.pending.drain() {
            if let Some(mut f) = store.fact(&key)? {
                f.count += delta;
                f.futile += futile;
                f.last_seen = last;
                facts.push((key, f));
            }
        }
        let workloads: Vec<WorkloadRecord> = self.dirty_workloads.drain().filter_map(|id| self.workloads.get(&id).cloned()).collect();
        let mut batch = store::Batch { workloads, facts, ..store::Batch::default() };
        if let Some(generation) = &self.generation {
            batch.drained = self
                .undrained
                .drain()
                .map(|k| (generation.clone(), k, self.last_counts.get(&k).copied().unwrap_or(0), self.last_futile.get(&k).copied().unwrap_or(0)))
                .collect();
            batch.undrained = self.evicted.drain(..).map(|k| (generation.clone(), k)).collect();
        } else {
            self.undrained.clear();
            self.evicted.clear();
        }
        store.commit_batch(batch)
    }

    /// Turns observations into facts: what each key counted above `taken` is attributed to
    /// its workload. Of this run's own maps (`own`), a key whose cgroup has no name yet waits a
    /// few cycles for its event, and its taken count is made durable at the next commit; of an
    /// earlier generation (every event is in), it is unattributed at once. Returns the checks
    /// attributed.
    fn learn(&mut self, obs: &crate::collector::Observations, taken: &mut Taken, own: bool, new_facts: &mut Vec<(String, Fact)>) -> u64 {
        let t = now();
        let mut learned = 0;
        for o in &obs.checks {
            let prev = taken.counts.get(&o.key).copied().unwrap_or(0);
            let prev_futile = taken.futile.get(&o.key).copied().unwrap_or_default();
            let futile_delta = o.futile.saturating_sub(prev_futile);
            if o.count <= prev && futile_delta == 0 {
                continue;
            }
            let delta = o.count.saturating_sub(prev);
            let Some(path) = obs.cgroup_paths.get(&o.key.cgroup_id) else {
                // Not named yet: wait a few cycles for the event rather than lose the checks.
                let waited = self.unnamed.entry(o.key).or_insert(0);
                *waited += 1;
                if *waited >= NAMING_CYCLES || !own {
                    self.unnamed.remove(&o.key);
                    taken.counts.insert(o.key, o.count);
                    if own {
                        self.undrained.insert(o.key);
                    }
                    self.unattributed += delta;
                    debug_unattributed(&o.key, None, delta);
                }
                continue;
            };
            self.unnamed.remove(&o.key);
            taken.counts.insert(o.key, o.count);
            taken.futile.insert(o.key, o.futile);
            if own {
                self.undrained.insert(o.key);
            }
            let Some(identity) = self.identity_of(path) else {
                self.unattributed += delta;
                debug_unattributed(&o.key, Some(path), delta);
                continue;
            };
            learned += delta;
            let mut check = symbolize(o, self.tracer.symbols());
            // A program gone before its executable could be read (ping -c1): its file
            // capabilities from its image, by name, as record does.
            if check.exe.is_none() && check.file_caps.is_none() && !check.setup && !crate::attribution::is_runtime_comm(&check.comm) {
                if let Some((_, info)) = self.discovery.container_of(path) {
                    let image = info.image.clone();
                    if self.image_programs.len() > 4096 {
                        self.image_programs.clear();
                    }
                    let found = self
                        .image_programs
                        .entry((image.clone(), check.comm.clone()))
                        .or_insert_with(|| crate::attribution::discovery::image_program_file_caps(&image, &check.comm))
                        .clone();
                    if let Some((exe, caps)) = found {
                        check.exe = Some(exe);
                        check.file_caps = Some(caps);
                        check.exe_gains_privilege = true;
                    }
                }
            }
            let key = Fact::key(&identity.id, &check);
            let record = self.workloads.entry(identity.id.clone()).or_insert_with(|| WorkloadRecord {
                identity: identity.clone(),
                first_seen: t,
                last_seen: t,
                last_new_capability: 0,
                container: None,
                containers: vec![],
                granted: 0,
                used: 0,
                net_uses: vec![],
                syscalls: vec![],
            });
            record.last_seen = t;
            if let Some((r, info)) = self.discovery.container_of(path) {
                if !record.containers.contains(&r.id) {
                    record.containers.push(r.id.clone());
                    let excess = record.containers.len().saturating_sub(32);
                    record.containers.drain(..excess);
                }
                record.container = Some(info.clone());
            }
            let class = classify(&check).0;
            if class != Classification::Runtime {
                record.granted |= check.cap_eff.unwrap_or(0);
            }
            self.dirty_workloads.insert(identity.id.clone());
            let store = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let known = store.is_known(&key) || new_facts.iter().any(|(k, _)| *k == key);
            drop(store);
            if known {
                let p = self.pending.entry(key).or_insert((0, t, 0));
                p.0 += delta;
                p.1 = t;
                p.2 += futile_delta;
            } else {
                let mut fact = Fact::from_check(&check, t);
                fact.count = delta;
                let bit = 1u64 << check.capability.min(63);
                if class == Classification::Needed && record.used & bit == 0 {
                    record.used |= bit;
                    record.last_new_capability = t;
                }
                new_facts.push((key, fact));
            }
        }
        learned
    }

    /// Forgets checks of cgroups that were gone before this cycle read the maps (their final
    /// counts were just flushed).
    fn evict(&mut self, obs: &crate::collector::Observations, dead: &HashSet<u64>) -> Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        // Keys still waiting for a name keep their counters in the kernel.
        let keys: Vec<CheckKey> = obs.checks.iter().map(|o| o.key).filter(|k| dead.contains(&k.cgroup_id) && !self.unnamed.contains_key(k)).collect();
        for k in &keys {
            self.last_counts.remove(k);
            self.last_futile.remove(k);
            self.undrained.remove(k);
        }
        self.last_syscalls.retain(|(k, _), _| !dead.contains(&k.cgroup_id));
        self.evicted.extend(keys.iter().copied());
        let dead_paths: Vec<String> = dead.iter().filter_map(|id| obs.cgroup_paths.get(id).cloned()).collect();
        self.discovery.forget(&dead_paths);
        self.tracer.forget(&keys, &dead.iter().copied().collect::<Vec<_>>())
    }
}


/// systemd units' cgroups (`*.service`) that exist now.
fn services_now(mount: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![mount.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rel = format!("/{}", dir.strip_prefix(mount).map(|p| p.display().to_string()).unwrap_or_default());
        if rel.ends_with(".service") {
            out.push(rel);
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()));
        }
    }
    out
}

/// `CAPPROF_DEBUG_ATTRIBUTION=1`: say which checks no workload took.
fn debug_unattributed(key: &CheckKey, path: Option<&String>, delta: u64) {
    if std::env::var_os("CAPPROF_DEBUG_ATTRIBUTION").is_some() {
        let comm = String::from_utf8_lossy(&key.comm);
        eprintln!("unattributed: cgroup {} ({path:?}) cap {} comm {} x{delta}", key.cgroup_id, key.cap, comm.trim_end_matches('\0'));
    }
}
