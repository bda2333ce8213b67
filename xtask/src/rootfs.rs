//! A Debian bookworm root file system with systemd and real servers, for the systemd VM
//! (`xtask/src/vm_systemd.rs`): built with mmdebstrap from Debian's packages at test time, then
//! packed as one cpio archive the VM boots from memory (the 6.1 kernel has ext4 and virtio
//! disks only as modules; tmpfs is built in). Cached under the VM cache by a key of what goes
//! in, so a fresh machine builds it once (~1 min) and later runs reuse it.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cpio::{Cpio, Meta};

/// What the VM runs: systemd as PID 1 and the services under test with their clients.
pub const PACKAGES: &[&str] = &["systemd", "nginx", "chrony", "openssh-server", "openssh-client", "curl", "passwd", "procps"];

/// Left out of the image: documentation is a third of its size and nothing reads it.
const EXCLUDES: &[&str] = &["/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*"];

/// Bumped when the way the image is made changes.
const RECIPE: u32 = 1;

/// The cached archive, built first when missing.
pub fn systemd_rootfs() -> Result<PathBuf> {
    let cache = crate::vm::cache_dir();
    let key = fnv(&format!("{RECIPE} {} {}", PACKAGES.join(","), EXCLUDES.join(",")));
    let archive = cache.join(format!("bookworm-systemd-{key:016x}.cpio"));
    if archive.is_file() {
        return Ok(archive);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let dir = cache.join(format!("rootfs-build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    eprintln!("xtask: building the systemd VM's root file system with mmdebstrap ({})", PACKAGES.join(", "));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--quiet", "--variant=apt", &format!("--include={}", PACKAGES.join(","))]);
    for e in EXCLUDES {
        cmd.arg(format!("--dpkgopt=path-exclude={e}"));
    }
    cmd.args(["bookworm"]).arg(&dir);
    let built = crate::run(&mut cmd).context("mmdebstrap (scripts/setup.sh installs it; it needs Debian's mirror)");
    let packed = built.and_then(|_| {
        let tmp = archive.with_extension("cpio.tmp");
        pack(&dir, &tmp)?;
        fs::rename(&tmp, &archive).with_context(|| format!("renaming {}", tmp.display()))
    });
    let _ = fs::remove_dir_all(&dir);
    packed?;
    Ok(archive)
}

/// Packs `dir` into a cpio archive at `out`, keeping owners, modes, symlinks and device nodes
/// (hard links become copies).
fn pack(dir: &Path, out: &Path) -> Result<()> {
    let file = fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cpio = Cpio::new(BufWriter::with_capacity(1 << 20, file));
    walk(dir, dir, &mut cpio)?;
    cpio.finish()?;
    Ok(())
}

fn walk(root: &Path, dir: &Path, cpio: &mut Cpio<BufWriter<fs::File>>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = path.strip_prefix(root)?.to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&path)?;
        let ft = md.file_type();
        let meta = Meta { mode: md.mode(), uid: md.uid(), gid: md.gid(), rdev: (0, 0) };
        if ft.is_dir() {
            cpio.entry(&name, meta, &[])?;
            walk(root, &path, cpio)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            cpio.entry(&name, meta, target.as_os_str().as_encoded_bytes())?;
        } else if ft.is_file() {
            let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            cpio.entry(&name, meta, &data)?;
        } else if ft.is_char_device() || ft.is_block_device() {
            let rdev = md.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            cpio.entry(&name, Meta { rdev: (major, minor), ..meta }, &[])?;
        } else if ft.is_fifo() {
            cpio.entry(&name, meta, &[])?;
        } else if !ft.is_socket() {
            bail!("{}: a file of unknown type", path.display());
        }
    }
    Ok(())
}

/// FNV-1a, for the cache key.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3))
}

