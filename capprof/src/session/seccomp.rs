//! Running a workload under a seccomp profile (`verify --seccomp FILE`, `minimize
//! --seccomp`): engines get the profile file (`--security-opt seccomp=FILE`, their
//! libseccomp compiles it); a plain command gets the filter capprof compiles and installs
//! itself between fork and exec (see [`crate::seccomp::filter`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::profile::seccomp::SyscallProfile;
use crate::seccomp::filter::Program;
use crate::seccomp::oci::SeccompFile;

/// A seccomp profile to run trials under.
#[derive(Clone, Debug)]
pub struct SeccompGuard {
    /// The profile file, absolute (an engine's client reads it).
    pub file: PathBuf,
    pub profile: SeccompFile,
    /// A temporary file capprof wrote (removed on drop).
    owned: bool,
}

impl SeccompGuard {
    /// A profile file given by the user.
    pub fn from_file(path: &Path) -> Result<Self> {
        let profile = SeccompFile::read(path)?;
        profile.arches()?;
        let file = std::path::absolute(path).map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
        Ok(Self { file, profile, owned: false })
    }

    /// A recorded allow list, written to a temporary file.
    pub fn from_profile(p: &SyscallProfile, label: &str) -> Result<Self> {
        Self::written(p.to_oci(), label)
    }

    /// The same guard with `extra` calls allowed too (a widened candidate).
    pub fn widened(&self, extra: &std::collections::BTreeSet<String>, label: &str) -> Result<Self> {
        Self::written(self.profile.with_allowed(extra)?, label)
    }

    /// `profile` in a temporary file of its own (a widened guard replaces the one it came from,
    /// whose drop removes that one's file), removed with the guard.
    fn written(profile: SeccompFile, label: &str) -> Result<Self> {
        static WRITTEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("capprof-{}-{n}-{label}.seccomp.json", std::process::id()));
        std::fs::write(&file, profile.to_json()).map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
        Ok(Self { file, profile, owned: true })
    }

    /// The filter for a plain command (only allow lists compile).
    pub fn program(&self) -> Result<Arc<Program>> {
        let answers = self.profile.answers()?;
        Program::compile(&answers, self.profile.errno()).map(Arc::new).map_err(|e| Error::new(ErrorKind::Usage, format!("{}: {e}", self.file.display())))
    }

    pub fn file_arg(&self) -> String {
        self.file.display().to_string()
    }
}

impl Drop for SeccompGuard {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}
