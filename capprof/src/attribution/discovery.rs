//! Discovery: asks the engines about containers as their cgroups appear (and what they
//! changed on disk while they run), and lists the containers running now.

use std::collections::{HashMap, HashSet};

use super::container::{identify, ContainerInfo, ContainerRef, Source};
use super::engine;

/// Follows the engines' container announcements (see [`engine::follow_docker_events`]).
pub fn follow_engine_events() {
    engine::follow_docker_events();
}

/// What a running container changed in its filesystem (paths as it sees them), read from its
/// overlay layer where the engine uses one, else asked of the engine.
pub fn container_changes(r: &ContainerRef) -> Option<Vec<String>> {
    engine::changes(r)
}

/// What a program of `image` named `comm` demands at exec by its file capability, from the
/// image's layers (see [`engine::image_program_file_caps`]).
pub fn image_program_file_caps(image: &str, comm: &str) -> Option<(String, u64)> {
    engine::image_program_file_caps(image, comm)
}

/// Docker's view of a container by name or id (for `record --container`).
pub fn docker_inspect(name: &str) -> Option<serde_json::Value> {
    engine::docker_get(&format!("/containers/{name}/json"))
}

/// Asks engines about containers as their cgroups appear.
#[derive(Default)]
pub struct Discovery {
    pub containers: HashMap<String, (ContainerRef, ContainerInfo)>,
    /// Containers that were running before the recording and are left out of it.
    ignored: HashSet<String>,
    /// When each container was first seen (young ones are asked about more often).
    seen_at: HashMap<String, std::time::Instant>,
    /// Containers already running when the daemon started: never young, and asked about
    /// for the first time one per pass, not all at once (see `refresh_paced`).
    preexisting: HashSet<String>,
    /// When the engine was last asked for a container's changes, and how long it took.
    asked: HashMap<String, (std::time::Instant, std::time::Duration)>,
}

/// The daemon asks again about a container older than its young age at most this often...
const PACED_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// ...and never more often than this many times the engine's last answer took: Docker
/// computes a diff by walking the container's files when overlayfs cannot give it, which
/// under load cost dockerd a third of a CPU at one ask per 5 s (BENCHMARKS.md).
const PACED_FACTOR: u32 = 500;
/// The same for a young container (its first 10 s): at most 1 % of the engine's time.
const PACED_YOUNG_FACTOR: u32 = 100;

/// Every container cgroup that exists now (for telling them from those started later).
pub fn running_now() -> Vec<ContainerRef> {
    let Ok(mount) = crate::kernel::cgroup::unified_mount() else { return vec![] };
    let mut out = Vec::new();
    let mut stack = vec![mount.clone()];
    while let Some(dir) = stack.pop() {
        let rel = format!("/{}", dir.strip_prefix(&mount).map(|p| p.display().to_string()).unwrap_or_default());
        if let Some(r) = identify(&rel).filter(|r| r.cgroup == rel) {
            out.push(r);
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(entries.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()));
        }
    }
    out
}

impl Discovery {
    /// A discovery for a recording of `argv`: containers already running are left out, unless
    /// the command names them (`docker exec NAME ...`).
    pub fn for_recording(argv: &[String]) -> Self {
        let mut d = Self::default();
        for r in running_now() {
            let info = engine::inspect(&r);
            let named = argv.iter().any(|a| {
                (a.len() >= 12 && r.id.starts_with(a.as_str())) || info.as_ref().is_some_and(|i| !i.name.is_empty() && a == &i.name)
            });
            if !named {
                d.ignored.insert(r.id.clone());
            }
        }
        d
    }

    /// Notes a cgroup path; the first time a container shows up its engine is asked about it.
    pub fn observe(&mut self, path: &str) {
        let Some(r) = identify(path) else { return };
        if self.containers.contains_key(&r.id) || self.ignored.contains(&r.id) {
            return;
        }
        let info = engine::inspect(&r).unwrap_or_else(|| ContainerInfo {
            engine: r.engine,
            id: r.id.clone(),
            name: r.id.chars().take(12).collect(),
            source: Source::Cgroup,
            ..ContainerInfo::default()
        });
        self.seen_at.insert(r.id.clone(), std::time::Instant::now());
        self.containers.insert(r.id.clone(), (r, info));
    }

    /// [`Discovery::observe`] for a container that was already running when the daemon
    /// started: however recently it was first seen here, it is not young.
    pub fn observe_running(&mut self, path: &str) {
        if let Some(r) = identify(path) {
            if !self.containers.contains_key(&r.id) {
                self.preexisting.insert(r.id.clone());
            }
        }
        self.observe(path);
    }

    /// Refreshes what the engine knows that changes while containers run (filesystem changes).
    pub fn refresh(&mut self) {
        self.refresh_younger_than(std::time::Duration::MAX);
    }

    /// [`Discovery::refresh`] for the containers first seen less than `age` ago: a short-lived
    /// one is asked while it still runs (a `--rm` container is gone a moment after it exits).
    pub fn refresh_younger_than(&mut self, age: std::time::Duration) {
        for (id, (r, info)) in self.containers.iter_mut() {
            if self.seen_at.get(id).is_none_or(|t| t.elapsed() < age) {
                if let Some(changes) = engine::changes(r) {
                    info.changed_paths = Some(changes);
                }
            }
        }
    }

    /// [`Discovery::refresh_younger_than`] for the young ones (unless the engine is slow to
    /// answer: [`PACED_YOUNG_FACTOR`]); the others at most every
    /// [`PACED_EVERY`], or [`PACED_FACTOR`] times as long as the engine's last answer took
    /// (the daemon: its asks must not cost the node more than the tracing does).
    ///
    /// Containers that ran before the daemon started are asked about one per pass: at its
    /// start the daemon finds every container of the node at once, and asking about them all
    /// together cost a busy nginx 14 % of its throughput while dockerd walked their files
    /// (BENCHMARKS.md).
    pub fn refresh_paced(&mut self, young: std::time::Duration) {
        let now = std::time::Instant::now();
        let mut first_asks_of_preexisting = 1;
        for (id, (r, info)) in self.containers.iter_mut() {
            let due = match refresh_due_in(id, &self.preexisting, &self.seen_at, &self.asked, young, now) {
                None => {
                    first_asks_of_preexisting -= 1;
                    first_asks_of_preexisting >= 0
                }
                Some(wait) => wait.is_zero(),
            };
            if !due {
                continue;
            }
            let started = std::time::Instant::now();
            if let Some(changes) = engine::changes(r) {
                info.changed_paths = Some(changes);
            }
            self.asked.insert(id.clone(), (started, started.elapsed()));
        }
    }

    /// How long until [`Discovery::refresh_paced`] next asks about some container (zero: at
    /// its next call); None when there is no container to ask about. The daemon sleeps until
    /// then when nothing else is due.
    pub fn next_refresh_in(&self, young: std::time::Duration) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        self.containers.keys().map(|id| refresh_due_in(id, &self.preexisting, &self.seen_at, &self.asked, young, now).unwrap_or_default()).min()
    }

    /// Forgets containers whose cgroups are gone (the daemon's memory bound).
    pub fn forget(&mut self, paths: &[String]) {
        for p in paths {
            if let Some(r) = identify(p) {
                if r.cgroup == *p {
                    self.seen_at.remove(&r.id);
                    self.preexisting.remove(&r.id);
                    self.asked.remove(&r.id);
                    self.containers.remove(&r.id);
                }
            }
        }
    }

    /// Every container known, with what its engine said.
    pub fn containers(&self) -> impl Iterator<Item = (&ContainerRef, &ContainerInfo)> {
        self.containers.values().map(|(r, i)| (r, i))
    }

    /// The container a cgroup path belongs to (also once a containerd task named by its
    /// directory is gone: the cgroup it was seen in is kept).
    pub fn container_of(&self, path: &str) -> Option<&(ContainerRef, ContainerInfo)> {
        identify(path)
            .and_then(|r| self.containers.get(&r.id))
            .or_else(|| self.containers.values().find(|(r, _)| path == r.cgroup || path.strip_prefix(r.cgroup.as_str()).is_some_and(|rest| rest.starts_with('/'))))
    }
}

/// When a container is next due for [`Discovery::refresh_paced`]: zero when due now, None for
/// a container that ran before the daemon and was never asked about (one such per pass).
fn refresh_due_in(
    id: &str,
    preexisting: &HashSet<String>,
    seen_at: &HashMap<String, std::time::Instant>,
    asked: &HashMap<String, (std::time::Instant, std::time::Duration)>,
    young: std::time::Duration,
    now: std::time::Instant,
) -> Option<std::time::Duration> {
    let preexisting = preexisting.contains(id);
    let is_young = !preexisting && seen_at.get(id).is_none_or(|t| t.elapsed() < young);
    let pace = match asked.get(id) {
        None if preexisting => return None,
        None => return Some(std::time::Duration::ZERO),
        // Young ones often, as `record` asks while they run (what a short-lived container
        // writes is seen), unless the engine's answers are slow.
        Some((at, took)) if is_young => *at + *took * PACED_YOUNG_FACTOR,
        Some((at, took)) => *at + (*took * PACED_FACTOR).max(PACED_EVERY),
    };
    Some(pace.saturating_duration_since(now))
}
