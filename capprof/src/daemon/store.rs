//! The daemon's durable memory (redb): workloads and the facts learned about them. A new fact
//! (workload, capability, verdict, class, site, program) is committed before anything reports
//! it; counters of known facts are added in batches.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::attribution::container::ContainerInfo;
use crate::attribution::Check;
use crate::error::{Error, ErrorKind, Result};

use super::identity::Identity;

const WORKLOADS: TableDefinition<&str, &str> = TableDefinition::new("workloads");
const FACTS: TableDefinition<&str, &str> = TableDefinition::new("facts");

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
            exe_gains_privilege: false,
            site: self.site.clone(),
            path: self.path.clone(),
            syscall: self.syscall.clone(),
            cap_eff: None,
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
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        let db = Database::create(path).map_err(|e| Error::new(ErrorKind::Io, format!("opening state {}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(WORKLOADS).map_err(db_err)?;
            tx.open_table(FACTS).map_err(db_err)?;
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
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut w = tx.open_table(WORKLOADS).map_err(db_err)?;
            for rec in workloads {
                let json = serde_json::to_string(rec).map_err(db_err)?;
                w.insert(rec.identity.id.as_str(), json.as_str()).map_err(db_err)?;
            }
            let mut f = tx.open_table(FACTS).map_err(db_err)?;
            for (key, fact) in facts {
                let json = serde_json::to_string(fact).map_err(db_err)?;
                f.insert(key.as_str(), json.as_str()).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)?;
        self.known.extend(facts.iter().map(|(k, _)| k.clone()));
        Ok(())
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
