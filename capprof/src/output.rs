//! Where rendered profiles go: a file with `-o`, else a stream (stderr for the faces that run a
//! workload, which owns stdout; stdout for `merge` and `export`).
//!
//! The destination is checked before anything runs ([`Sink::open`]): a recording that cannot
//! be written is refused up front, not discarded after the workload ran. If writing still
//! fails at the end (the disk filled, the directory went away), the profile goes to a
//! fallback file, else to stderr, and capprof says where: what ran is never lost.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::format::{docker_flags, render, Format};
use crate::profile::Profile;

/// The stream a profile goes to without `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A checked destination for one profile.
#[derive(Clone, Debug)]
pub struct Sink {
    path: Option<PathBuf>,
    stream: Stream,
}

impl Sink {
    /// Checks that `path` (when given) can be written: not a directory, its directory exists
    /// and is writable, the file system is not read-only. Nothing is created.
    pub fn open(path: Option<&Path>, stream: Stream) -> Result<Self> {
        if let Some(path) = path {
            writable(path)?;
        }
        Ok(Self { path: path.map(Path::to_path_buf), stream })
    }

    /// Renders and writes the profile; a failed write falls back (see the module doc) and
    /// is reported on stderr, so the caller's exit status stays the workload's.
    pub fn emit(&self, profile: &Profile, format: Format) -> Result<()> {
        let mut with_files;
        let profile = if format.refers_to_seccomp_files() && profile.workloads.iter().any(|w| w.seccomp.is_some()) {
            with_files = profile.clone();
            self.write_seccomp_files(&mut with_files);
            &with_files
        } else {
            profile
        };
        let text = render(profile, format)?;
        if let Some(path) = self.write_text(&text) {
            for w in &profile.workloads {
                eprintln!("capprof: {}: {} (profile written to {})", crate::format::plain(&w.name), docker_flags(w), path.display());
            }
            for line in profile.losses.warnings() {
                eprintln!("capprof: LOSS: {line}");
            }
        }
        Ok(())
    }

    /// Writes rendered text; the file it went to when `-o` was written as asked.
    pub fn write_text(&self, text: &str) -> Option<&Path> {
        let Some(path) = &self.path else {
            write_stream(self.stream, text);
            return None;
        };
        match write_file(path, text) {
            Ok(()) => return Some(path),
            Err(e) => {
                let fallback = fallback_path(path);
                match write_file(&fallback, text) {
                    Ok(()) => eprintln!("capprof: warning: {e:#}; the profile was written to {} instead", fallback.display()),
                    Err(_) => {
                        eprintln!("capprof: warning: {e:#}; the profile follows on stderr");
                        write_stream(Stream::Stderr, text);
                    }
                }
            }
        }
        None
    }
}

impl Sink {
    /// Writes each workload's seccomp profile beside the output (`-o`'s directory, else the
    /// current one), for the outputs that refer to it; a file that cannot be written is said
    /// on stderr and not referred to.
    fn write_seccomp_files(&self, profile: &mut Profile) {
        let dir = self.path.as_deref().and_then(Path::parent).filter(|d| !d.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        for w in &mut profile.workloads {
            let name = crate::format::seccomp::file_name(w);
            let Some(s) = w.seccomp.as_mut() else { continue };
            let path = dir.join(name);
            match write_file(&path, &s.to_oci().to_json()) {
                Ok(()) => {
                    eprintln!("capprof: {}: seccomp profile ({} system calls) written to {}", crate::format::plain(&w.name), s.syscalls.len(), path.display());
                    s.file = Some(path.display().to_string());
                }
                Err(e) => eprintln!("capprof: warning: {e:#}: the output does not refer to a seccomp profile"),
            }
        }
    }
}

fn write_stream(stream: Stream, text: &str) {
    // A closed pipe (`| head`) is not worth an error: the reader chose to stop.
    let _ = match stream {
        Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    // Durable before capprof says it is written; `/dev/null`, pipes and terminals have
    // nothing to sync (fsync refuses them).
    if f.metadata().is_ok_and(|m| m.is_file()) {
        f.sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// `/tmp/capprof-<pid>-<name>` (the temporary directory, which is writable where `-o`'s was not).
fn fallback_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "profile".into());
    std::env::temp_dir().join(format!("capprof-{}-{name}", std::process::id()))
}

/// Can `path` be created or replaced? Asked with access(2), which also answers EROFS for a
/// read-only file system, so nothing is created before the workload runs.
pub fn writable(path: &Path) -> Result<()> {
    let bad = |why: String| Error::new(ErrorKind::Usage, format!("-o {}: {why}", path.display()));
    if path.as_os_str().is_empty() {
        return Err(bad("empty path".into()));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(bad("is a directory".into()));
        }
        return access(path).map_err(|e| bad(format!("cannot be written ({e})")));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => access(dir).map_err(|e| bad(format!("its directory {} cannot be written ({e})", dir.display()))),
        Ok(_) => Err(bad(format!("{} is not a directory", dir.display()))),
        Err(e) => Err(bad(format!("its directory {} does not exist ({e})", dir.display()))),
    }
}

fn access(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_destinations_are_refused_before_anything_runs() {
        let dir = std::env::temp_dir().join(format!("capprof-output-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(writable(&dir).unwrap_err().to_string().contains("is a directory"));
        assert!(writable(&dir.join("missing/x.json")).unwrap_err().to_string().contains("does not exist"));
        assert!(writable(Path::new("")).is_err());
        let file = dir.join("p.json");
        writable(&file).unwrap();
        assert!(!file.exists(), "checking creates nothing");
        std::fs::write(&file, "x").unwrap();
        assert!(writable(&file.join("below")).unwrap_err().to_string().contains("is not a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
