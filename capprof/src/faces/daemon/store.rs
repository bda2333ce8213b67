//! The daemon's durable memory (redb): workloads and the facts learned about them. A new fact
//! (workload, capability, verdict, class, site, program) is committed before anything reports
//! it; counters of known facts are added in batches.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::{Deserialize, Serialize};

use crate::attribution::container::ContainerInfo;
use crate::attribution::Check;
use capprof_common::CheckKey;
use crate::error::{Error, ErrorKind, Result};

use crate::attribution::identity::Identity;

const WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");
const FACTS: TableDefinition<&str, &str> = TableDefinition::new("facts");
/// Per pinned generation and kernel key, the count (and futile count) already durable in
/// `facts`: `GENERATION \x1f HEX(CheckKey)` → `COUNT FUTILE`. A later daemon draining that
/// generation's pinned maps takes only what is above it, so no check is counted twice.
const DRAINED: TableDefinition<&str, &str> = TableDefinition::new("drained");

/// One durable transaction's worth of changes.
#[derive(Default)]
pub struct Batch {
    pub workloads: Vec<WorkloadRecord>,
    pub facts: Vec<(String, Fact)>,
    /// (generation, kernel key, count, futile count) now durable.
    pub drained: Vec<(String, CheckKey, u64, u64)>,
    /// Drained counts no longer needed: (generation, kernel key) evicted from the kernel.
    pub undrained: Vec<(String, CheckKey)>,
}

fn drained_key(generation: &str, key: &CheckKey) -> String {
    // SAFETY: CheckKey is a plain-old-data #[repr(C)] struct without padding (capprof-common).
    let bytes = unsafe { std::slice::from_raw_parts((key as *const CheckKey).cast::<u8>(), std::mem::size_of::<CheckKey>()) };
    let mut out = String::with_capacity(generation.len() + 1 + bytes.len() * 2);
    out.push_str(generation);
    out.push('\u{1f}');
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
pub(crate) fn roundtrip_drained_key(key: &CheckKey) -> Option<CheckKey> {
    let k = drained_key("gen-1-2", key);
    parse_drained_key(k.strip_prefix("gen-1-2\u{1f}")?)
}

/// The kernel key of a drained-count key's hex part (None when it is not one).
pub(crate) fn parse_drained_key(hex: &str) -> Option<CheckKey> {
    if hex.len() != std::mem::size_of::<CheckKey>() * 2 || !hex.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect::<Option<_>>()?;
    // SAFETY: exactly size_of::<CheckKey>() bytes; every bit pattern is a valid CheckKey.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CheckKey>()) })
}

/// A workload as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub identity: Identity,
    pub first_seen: u64,
    pub last_seen: u64,
    /// When a capability was last added to what it uses (unix seconds; 0: never).
    pub last_new_capability: u64,
    /// The latest container seen for it.
    pub container: Option<ContainerInfo>,
    /// Container ids seen (restarts, replicas), most recent last, bounded.
    pub containers: Vec<String>,
    /// Effective capabilities its processes held (mask).
    pub granted: u64,
    /// Capabilities it needed (mask), for "last new capability".
    #[serde(default)]
    pub used: u64,
    /// Network operations seen at their system calls (low-port binds, ping sockets): the
    /// portability notes of its profile, as `record` gives them.
    #[serde(default)]
    pub net_uses: Vec<crate::attribution::workloads::NetUse>,
    /// System calls made (`daemon --seccomp`): by the workload, or by its runtime after the
    /// filter was installed; names never go away, counts are those read while a daemon ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub syscalls: Vec<crate::profile::seccomp::SyscallUse>,
}

/// One distinct kind of check made by a workload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fact {
    pub capability: u32,
    pub denied: bool,
    pub setup: bool,
    pub borrowed: bool,
    #[serde(default)]
    pub noaudit: bool,
    /// The kernel's effect test said the check changed nothing (`FLAG_NO_EFFECT`).
    #[serde(default)]
    pub no_effect: bool,
    /// Without it the kernel falls back to another permission test (`FLAG_DOUBTFUL`).
    #[serde(default)]
    pub doubtful: bool,
    /// Of `count`, made in an exec walk's misses.
    #[serde(default)]
    pub futile: u64,
    pub comm: String,
    pub exe: Option<String>,
    /// The executable is set-id or has file capabilities (no-new-privileges would stop it).
    #[serde(default)]
    pub exe_gains_privilege: bool,
    /// Effective capabilities of the first sighting's process (what it was granted).
    #[serde(default)]
    pub cap_eff: Option<u64>,
    /// What the executable's file capability demands at exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_caps: Option<u64>,
    pub site: Option<String>,
    pub path: Vec<String>,
    pub syscall: Option<String>,
    pub count: u64,
    pub first_seen: u64,
    pub last_seen: u64,
}

impl Fact {
    pub fn key(workload: &str, c: &Check) -> String {
        format!(
            "{workload}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            c.capability,
            c.denied,
            c.setup,
            c.borrowed,
            c.site.as_deref().unwrap_or(""),
            c.comm,
            c.noaudit
        ) + if c.no_effect { "\u{1f}no-effect" } else { "" }
            + if c.doubtful { "\u{1f}doubtful" } else { "" }
            // A set-id program making the same check is another fact: its flag is what
            // no-new-privileges advice is drawn from.
            + if c.exe_gains_privilege { "\u{1f}gains-privilege" } else { "" }
    }

    pub fn from_check(c: &Check, now: u64) -> Self {
        Self {
            capability: c.capability,
            denied: c.denied,
            setup: c.setup,
            borrowed: c.borrowed,
            noaudit: c.noaudit,
            no_effect: c.no_effect,
            doubtful: c.doubtful,
            futile: c.futile,
            comm: c.comm.clone(),
            exe: c.exe.clone(),
            exe_gains_privilege: c.exe_gains_privilege,
            cap_eff: c.cap_eff,
            file_caps: c.file_caps,
            site: c.site.clone(),
            path: c.path.clone(),
            syscall: c.syscall.clone(),
            count: 0,
            first_seen: now,
            last_seen: now,
        }
    }

    /// Back into a check, for building profiles.
    pub fn to_check(&self) -> Check {
        Check {
            capability: self.capability,
            denied: self.denied,
            setup: self.setup,
            borrowed: self.borrowed,
            noaudit: self.noaudit,
            count: self.count,
            cgroup_id: 0,
            comm: self.comm.clone(),
            exe: self.exe.clone(),
            exe_gains_privilege: self.exe_gains_privilege,
            file_caps: self.file_caps,
            site: self.site.clone(),
            path: self.path.clone(),
            syscall: self.syscall.clone(),
            cap_eff: self.cap_eff,
            uid: None,
            at_stop: false,
            no_effect: self.no_effect,
            doubtful: self.doubtful,
            futile: self.futile,
        }
    }
}

pub struct Store {
    db: Database,
    /// Fact keys already durable (so a new one is recognised without a read).
    known: HashSet<String>,
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("state database: {e}"))
}

impl Store {
    /// Opens the state database, creating it when there is none. An existing file is checked
    /// before anything may write to it (see [`check_existing`]): a file that fails the check
    /// is an error naming what is wrong, and is left exactly as it was.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        if path.exists() {
            check_existing(path)?;
        }
        let db = quietly(|| Database::create(path))
            .map_err(|e| corrupt(path, &e))?
            .map_err(|e| open_error(path, e))?;
        Self::from_database(db)
    }

    fn from_database(db: Database) -> Result<Self> {
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(WORKLOADS).map_err(db_err)?;
            tx.open_table(FACTS).map_err(db_err)?;
            tx.open_table(DRAINED).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)?;
        let mut known = HashSet::new();
        {
            let rx = db.begin_read().map_err(db_err)?;
            let facts = rx.open_table(FACTS).map_err(db_err)?;
            for entry in facts.iter().map_err(db_err)? {
                let (k, _) = entry.map_err(db_err)?;
                known.insert(k.value().to_string());
            }
        }
        Ok(Self { db, known })
    }

    pub fn is_known(&self, key: &str) -> bool {
        self.known.contains(key)
    }

    /// Writes workloads and facts (new or updated) in one durable transaction.
    pub fn commit(&mut self, workloads: &[WorkloadRecord], facts: &[(String, Fact)]) -> Result<()> {
        self.commit_batch(Batch { workloads: workloads.to_vec(), facts: facts.to_vec(), ..Batch::default() })
    }

    /// Writes a batch in one durable transaction: the facts and the kernel counts they
    /// account for are durable together or not at all.
    pub fn commit_batch(&mut self, batch: Batch) -> Result<()> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut w = tx.open_table(WORKLOADS).map_err(db_err)?;
            for rec in &batch.workloads {
                let json = serde_json::to_string(rec).map_err(db_err)?;
                w.insert(rec.identity.id.as_str(), json.as_str()).map_err(db_err)?;
            }
            let mut f = tx.open_table(FACTS).map_err(db_err)?;
            for (key, fact) in &batch.facts {
                let json = serde_json::to_string(fact).map_err(db_err)?;
                f.insert(key.as_str(), json.as_str()).map_err(db_err)?;
            }
            let mut d = tx.open_table(DRAINED).map_err(db_err)?;
            for (generation, key, count, futile) in &batch.drained {
                d.insert(drained_key(generation, key).as_str(), format!("{count} {futile}").as_str()).map_err(db_err)?;
            }
            for (generation, key) in &batch.undrained {
                d.remove(drained_key(generation, key).as_str()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        self.known.extend(batch.facts.into_iter().map(|(k, _)| k));
        Ok(())
    }

    /// A pinned generation's durable counts per kernel key: (count, futile count).
    pub fn drained(&self, generation: &str) -> Result<HashMap<CheckKey, (u64, u64)>> {
        let rx = self.db.begin_read().map_err(db_err)?;
        let t = rx.open_table(DRAINED).map_err(db_err)?;
        let prefix = format!("{generation}\u{1f}");
        let mut out = HashMap::new();
        for entry in t.range(prefix.as_str()..).map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let Some(hex) = k.value().strip_prefix(&prefix) else { break };
            let mut nums = v.value().split(' ').map(|n| n.parse::<u64>().unwrap_or(0));
            if let Some(key) = parse_drained_key(hex) {
                out.insert(key, (nums.next().unwrap_or(0), nums.next().unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// Forgets a generation's drained counts (its pins are gone).
    pub fn forget_generation(&mut self, generation: &str) -> Result<()> {
        let keys: Vec<CheckKey> = self.drained(generation)?.into_keys().collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.commit_batch(Batch { undrained: keys.into_iter().map(|k| (generation.to_string(), k)).collect(), ..Batch::default() })
    }

    pub fn workload(&self, id: &str) -> Result<Option<WorkloadRecord>> {
        let rx = self.db.begin_read().map_err(db_err)?;
        let t = rx.open_table(WORKLOADS).map_err(db_err)?;
        let v = t.get(id).map_err(db_err)?;
        v.map(|v| serde_json::from_str(v.value()).map_err(db_err)).transpose()
    }

    pub fn workloads(&self) -> Result<Vec<WorkloadRecord>> {
        let rx = self.db.begin_read().map_err(db_err)?;
        let t = rx.open_table(WORKLOADS).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db_err)? {
            let (_, v) = entry.map_err(db_err)?;
            out.push(serde_json::from_str(v.value()).map_err(db_err)?);
        }
        Ok(out)
    }

    /// Every fact, by workload id.
    pub fn facts(&self) -> Result<HashMap<String, Vec<(String, Fact)>>> {
        let rx = self.db.begin_read().map_err(db_err)?;
        let t = rx.open_table(FACTS).map_err(db_err)?;
        let mut out: HashMap<String, Vec<(String, Fact)>> = HashMap::new();
        for entry in t.iter().map_err(db_err)? {
            let (k, v) = entry.map_err(db_err)?;
            let key = k.value().to_string();
            let workload = key.split('\u{1f}').next().unwrap_or_default().to_string();
            out.entry(workload).or_default().push((key, serde_json::from_str(v.value()).map_err(db_err)?));
        }
        Ok(out)
    }

    /// One fact, for adding to its count.
    pub fn fact(&self, key: &str) -> Result<Option<Fact>> {
        let rx = self.db.begin_read().map_err(db_err)?;
        let t = rx.open_table(FACTS).map_err(db_err)?;
        let v = t.get(key).map_err(db_err)?;
        v.map(|v| serde_json::from_str(v.value()).map_err(db_err)).transpose()
    }
}

/// Runs `f` with panics caught and the panic message kept from stderr: redb answers some
/// corrupt pages with a panic (`unreachable`), which must become a one-line error.
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|p| p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "redb panicked".into()))
}

fn corrupt(path: &Path, why: &dyn std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::MalformedInput,
        format!("state {} is corrupt ({why}); it was not modified: move it away to start afresh, or restore a backup", path.display()),
    )
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            Error::new(ErrorKind::Interference, format!("state {} is in use by another process (another capprof daemon?)", path.display()))
        }
        // redb says InvalidData (or hits the end) for a file that is not one of its databases.
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) if !matches!(io.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof) => {
            Error::io(format!("opening state {}", path.display()), io)
        }
        e => corrupt(path, &e),
    }
}

/// Checks an existing state file without writing to it: not empty, a redb database, every
/// record readable and decodable. A database a killed daemon left (redb wants a repair, which
/// writes) is repaired on a copy first; the copy replaces the file only once it passes.
pub fn check_existing(path: &Path) -> Result<()> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(format!("state {}", path.display()), e))?.len();
    if len == 0 {
        return Err(Error::new(
            ErrorKind::MalformedInput,
            format!("state {} is empty (0 bytes), not a capprof state database: remove it to start afresh", path.display()),
        ));
    }
    let opened = quietly(|| redb::ReadOnlyDatabase::open(path)).map_err(|e| corrupt(path, &e))?;
    match opened {
        Ok(db) => quietly(|| verify(&db)).map_err(|e| corrupt(path, &e))?.map_err(|e| corrupt(path, &e)),
        Err(redb::DatabaseError::RepairAborted) => repair_on_copy(path),
        Err(e) => Err(open_error(path, e)),
    }
}

/// After an unclean stop: repair a copy, check it, then put it in place (a rename, atomic).
fn repair_on_copy(path: &Path) -> Result<()> {
    let copy = path.with_extension(format!("repair-{}", std::process::id()));
    std::fs::copy(path, &copy).map_err(|e| Error::io(format!("copying state {} to repair it", path.display()), e))?;
    let repaired = quietly(|| -> std::result::Result<(), String> {
        let mut db = Database::create(&copy).map_err(|e| e.to_string())?;
        if !db.check_integrity().map_err(|e| e.to_string())? {
            return Err("the integrity check failed".into());
        }
        drop(db);
        let db = redb::ReadOnlyDatabase::open(&copy).map_err(|e| e.to_string())?;
        verify(&db)
    });
    match repaired {
        Ok(Ok(())) => std::fs::rename(&copy, path).map_err(|e| {
            let _ = std::fs::remove_file(&copy);
            Error::io(format!("replacing state {} by its repaired copy", path.display()), e)
        }),
        Ok(Err(e)) | Err(e) => {
            let _ = std::fs::remove_file(&copy);
            Err(corrupt(path, &format!("not shut down cleanly, and a repair failed: {e}")))
        }
    }
}

/// Reads every record of both tables and decodes it.
fn verify(db: &impl ReadableDatabase) -> std::result::Result<(), String> {
    let rx = db.begin_read().map_err(|e| e.to_string())?;
    let tables: Vec<String> = rx.list_tables().map_err(|e| e.to_string())?.map(|t| t.name().to_string()).collect();
    for name in ["workloads", "facts"] {
        if !tables.iter().any(|t| t == name) {
            return Err(format!("no {name} table: not a capprof state database"));
        }
    }
    let workloads = rx.open_table(WORKLOADS).map_err(|e| e.to_string())?;
    for entry in workloads.iter().map_err(|e| e.to_string())? {
        let (k, v) = entry.map_err(|e| e.to_string())?;
        let rec: WorkloadRecord = serde_json::from_str(v.value()).map_err(|e| format!("workload {:?}: {e}", k.value()))?;
        if rec.identity.id != k.value() {
            return Err(format!("workload {:?} is stored as {:?}", rec.identity.id, k.value()));
        }
    }
    let facts = rx.open_table(FACTS).map_err(|e| e.to_string())?;
    for entry in facts.iter().map_err(|e| e.to_string())? {
        let (k, v) = entry.map_err(|e| e.to_string())?;
        serde_json::from_str::<Fact>(v.value()).map_err(|e| format!("fact {:?}: {e}", k.value()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("capprof-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn record(i: usize) -> WorkloadRecord {
        WorkloadRecord {
            identity: Identity { id: format!("container:img/w{i}"), kind: crate::attribution::identity::IdentityKind::Container, namespace: None, container: format!("w{i}") },
            first_seen: 1,
            last_seen: 2,
            last_new_capability: 0,
            container: None,
            containers: vec![format!("{i:064x}")],
            granted: 0xa80425fb,
            used: 1,
            net_uses: vec![],
            syscalls: vec![],
        }
    }

    fn fact(i: usize) -> (String, Fact) {
        let f = Fact {
            capability: (i % 41) as u32,
            denied: false,
            setup: false,
            borrowed: false,
            noaudit: false,
            no_effect: false,
            doubtful: false,
            futile: 0,
            comm: format!("prog{i}"),
            exe: Some(format!("/usr/bin/prog{i}")),
            exe_gains_privilege: false,
            cap_eff: None,
            file_caps: None,
            site: Some("ns_capable".into()),
            path: vec!["__x64_sys_chown".into(), "chown_common".into()],
            syscall: Some("chown".into()),
            count: i as u64,
            first_seen: 1,
            last_seen: 2,
        };
        (format!("container:img/w{}\u{1f}{i}", i % 20), f)
    }

    fn populated(path: &Path) {
        let mut s = Store::open(path).unwrap();
        let workloads: Vec<WorkloadRecord> = (0..20).map(record).collect();
        let facts: Vec<(String, Fact)> = (0..400).map(fact).collect();
        s.commit(&workloads, &facts).unwrap();
    }

    #[test]
    fn a_good_state_reopens_with_everything() {
        let d = dir("good");
        let path = d.join("state.redb");
        populated(&path);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.workloads().unwrap().len(), 20);
        assert_eq!(s.facts().unwrap().values().map(Vec::len).sum::<usize>(), 400);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn empty_and_foreign_files_are_errors_and_untouched() {
        let d = dir("foreign");
        let empty = d.join("empty.redb");
        std::fs::write(&empty, b"").unwrap();
        let e = Store::open(&empty).err().expect("a 0-byte state is an error");
        assert_eq!(e.kind(), ErrorKind::MalformedInput);
        assert!(e.to_string().contains("empty (0 bytes)"), "{e}");
        assert_eq!(std::fs::read(&empty).unwrap().len(), 0);
        let text = d.join("text.redb");
        std::fs::write(&text, "workloads: []\n".repeat(500)).unwrap();
        let before = std::fs::read(&text).unwrap();
        assert_eq!(Store::open(&text).err().expect("not a database").kind(), ErrorKind::MalformedInput);
        assert_eq!(std::fs::read(&text).unwrap(), before);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Random pages overwritten mid-file: never a panic, never a write to a file that fails
    /// its check; the error is one line.
    #[test]
    fn corrupt_pages_are_one_line_errors_and_the_file_is_not_modified() {
        let d = dir("corrupt");
        let good = d.join("good.redb");
        populated(&good);
        let pristine = std::fs::read(&good).unwrap();
        let pages = pristine.len() / 4096;
        assert!(pages >= 8, "the test database spans pages ({pages})");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut refused, mut accepted) = (0, 0);
        for trial in 0..40 {
            let mut bytes = pristine.clone();
            // Leave the header page (its own checksum test is redb's); hit 1..=3 pages after it.
            for _ in 0..=(trial % 3) {
                let page = 1 + (next() as usize % (pages - 1));
                let at = page * 4096 + (next() as usize % 4096);
                let len = 1 + next() as usize % 4096;
                for b in bytes.iter_mut().skip(at).take(len) {
                    *b = next() as u8;
                }
            }
            let path = d.join(format!("t{trial}.redb"));
            std::fs::write(&path, &bytes).unwrap();
            match Store::open(&path) {
                Err(e) => {
                    refused += 1;
                    assert!(matches!(e.kind(), ErrorKind::MalformedInput | ErrorKind::Io), "{e}");
                    assert!(!e.to_string().contains('\n'), "one line: {e}");
                    assert!(std::fs::read(&path).unwrap() == bytes, "trial {trial}: a state that fails its check is not modified");
                }
                // The damage hit free pages: every record still decodes.
                Ok(s) => {
                    accepted += 1;
                    assert_eq!(s.workloads().unwrap().len(), 20);
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        assert!(refused > 0, "some corruption must be detected ({accepted} accepted)");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
