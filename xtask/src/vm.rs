//! A QEMU test harness: runs a shell script as root on a second kernel.
//!
//! The host kernel has no kprobes and refuses fentry/fexit and LSM programs, so those capprof
//! backends can only be exercised elsewhere. This module boots Debian's Linux 6.1 kernel (kprobes,
//! fentry/fexit, BTF, BPF LSM), fetched by `scripts/vm-setup.sh`, under `qemu-system-x86_64` with a
//! throwaway busybox initramfs built here (cpio newc, in Rust). The initramfs holds the host
//! binaries the caller asks for, in `/bin`, plus their shared libraries at the paths `ldd` reports.
//! Its `/init` mounts proc, sysfs, devtmpfs, tracefs, debugfs, bpffs and cgroup2, runs the script
//! with `/bin/sh`, prints the exit status between markers on the serial console and powers off.
//!
//! [`run_in_vm`] returns what the script printed (stdout and stderr, merged, as on a terminal) and
//! its exit status. Boot plus a trivial script takes a few seconds under TCG (no KVM here).
//! `cargo xtask vm [--bin PATH]... -- 'SCRIPT'` is the command-line front end.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{fs, thread};

use anyhow::{bail, Context, Result};

use crate::cpio::{self, Cpio, Meta};

/// What a script run in the VM produced.
pub struct VmRun {
    /// Everything the script printed (stdout and stderr interleaved), with `\n` line ends.
    pub output: String,
    /// The script's exit status as `/bin/sh` reported it (128+N when killed by signal N).
    pub status: i32,
}

/// Where `scripts/vm-setup.sh` puts the kernel, unless `CAPPROF_VM_CACHE` moves it.
const DEFAULT_CACHE: &str = "/var/cache/capprof-vm";

/// The VM's `/init`. `@MARK@` is replaced by a per-run nonce so that the script's own output
/// cannot fake the markers by accident. Kernel messages are kept off the console while the script
/// runs (console loglevel 1) so they do not interleave with its output; `dmesg` still has them.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
echo 1 >/proc/sys/kernel/printk
cd /root
echo "@MARK@ begin"
/bin/sh /script.sh </dev/null
echo "@MARK@ end status=$?"
poweroff -f
"#;

/// A kernel that stops making progress ends the run at once instead of filling the serial log
/// with lockup lines until the harness's timeout: a soft lockup panics, and a panic reboots, which
/// `-no-reboot` turns into QEMU's exit. Every CPU's stack is logged at the lockup, and the panic
/// replays the whole kernel log on the console (0x20) with every level shown, so the stacks reach
/// the error message despite the quiet console.
const KERNEL_STALLS: &str = "panic=-1 softlockup_panic=1 softlockup_all_cpu_backtrace=1 panic_print=0x20";

/// Runs `scripts/vm-setup.sh` (qemu, busybox-static, the 6.1 kernel; idempotent, needs root).
pub fn setup() -> Result<()> {
    crate::run(Command::new("bash").arg(crate::root().join("scripts/vm-setup.sh")))
}

/// The kernel image to boot: `$CAPPROF_VM_KERNEL`, else from the setup script's cache the
/// decompressed ELF `vmlinux` (QEMU enters it through PVH: ~4 s to boot under TCG instead of ~11 s,
/// most of it the bzImage's xz decompression), else the `vmlinuz` bzImage.
pub fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("CAPPROF_VM_KERNEL") {
        return k.into();
    }
    let cache = cache_dir();
    let elf = cache.join("vmlinux");
    if elf.is_file() { elf } else { cache.join("vmlinuz") }
}

/// The VM cache: `$CAPPROF_VM_CACHE`, else /var/cache/capprof-vm.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CAPPROF_VM_CACHE").unwrap_or_else(|| DEFAULT_CACHE.into()))
}

/// The `cargo xtask vm` subcommand: set up, run `script` with `binaries`, print its output, and
/// exit with its status when it failed.
pub fn cli(systemd: bool, binaries: &[PathBuf], script: &str, timeout: Duration) -> Result<()> {
    setup()?;
    let bins: Vec<&Path> = binaries.iter().map(PathBuf::as_path).collect();
    let start = Instant::now();
    let run = if systemd { run_in_systemd_vm(&crate::rootfs::systemd_rootfs()?, &bins, script, timeout)? } else { run_in_vm(&bins, script, timeout)? };
    print!("{}", run.output);
    eprintln!("xtask: VM exit status {} after {:.1} s (boot + run)", run.status, start.elapsed().as_secs_f64());
    if run.status != 0 {
        std::process::exit(if (1..=255).contains(&run.status) { run.status } else { 1 });
    }
    Ok(())
}

/// Boots the 6.1 kernel with an initramfs holding `binaries` (host paths, copied into /bin of the
/// VM with their shared libraries resolved via `ldd` and copied to the same paths), runs `script`
/// with /bin/sh as root, and returns everything the script printed and its exit status.
pub fn run_in_vm(binaries: &[&Path], script: &str, timeout: Duration) -> Result<VmRun> {
    let mark = nonce();
    let dir = TempDir::new()?;
    let initrd = dir.0.join("initrd.cpio");
    let cpio = initramfs(binaries, script, &mark)?;
    fs::write(&initrd, cpio).with_context(|| format!("writing {}", initrd.display()))?;
    boot(&initrd, "1024", &format!("console=ttyS0 quiet {KERNEL_STALLS}"), &mark, timeout)
}

/// The systemd VM's `/capprof-vm-run`, started by `capprof-vm-test.service` once the services
/// are up: runs the script on the serial console between the markers, then powers off.
const SYSTEMD_RUNNER: &str = r#"#!/bin/sh
exec >/dev/ttyS0 2>&1 </dev/null
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
cd /root
echo "@MARK@ begin"
/bin/sh /script.sh
echo "@MARK@ end status=$?"
systemctl poweroff --force --force
"#;

/// The unit that runs the script: after the services under test, as a simple service so
/// that the boot itself can finish (`systemctl is-system-running --wait` in the script).
const SYSTEMD_TEST_UNIT: &str = "[Unit]\nDescription=capprof VM test\nAfter=nginx.service ssh.service chrony.service\n\n[Service]\nType=simple\nExecStart=/capprof-vm-run\n";

/// Boots the 6.1 kernel with systemd as PID 1 on `rootfs` (a cpio archive, see
/// [`crate::rootfs`]) plus `binaries` in /usr/local/bin, runs `script` as root once the boot
/// is done, and returns what it printed and its exit status. The serial gettys are masked so
/// nothing else writes to the console.
pub fn run_in_systemd_vm(rootfs: &Path, binaries: &[&Path], script: &str, timeout: Duration) -> Result<VmRun> {
    let mark = nonce();
    let dir = TempDir::new()?;
    let initrd = dir.0.join("initrd.cpio");
    fs::copy(rootfs, &initrd).with_context(|| format!("copying {}", rootfs.display()))?;
    let mut overlay = Cpio::new(Vec::new());
    for bin in binaries {
        let name = bin.file_name().with_context(|| format!("{} has no file name", bin.display()))?;
        let data = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
        overlay.entry(&format!("usr/local/bin/{}", name.to_string_lossy()), Meta::root(cpio::FILE | 0o755), &data)?;
    }
    overlay.entry("capprof-vm-run", Meta::root(cpio::FILE | 0o755), SYSTEMD_RUNNER.replace("@MARK@", &mark).as_bytes())?;
    overlay.entry("script.sh", Meta::root(cpio::FILE | 0o755), script.as_bytes())?;
    overlay.entry("etc/systemd/system/capprof-vm-test.service", Meta::root(cpio::FILE | 0o644), SYSTEMD_TEST_UNIT.as_bytes())?;
    let link = Meta::root(cpio::SYMLINK | 0o777);
    overlay.entry("etc/systemd/system/multi-user.target.wants/capprof-vm-test.service", link, b"/etc/systemd/system/capprof-vm-test.service")?;
    for getty in ["serial-getty@ttyS0.service", "getty@tty1.service"] {
        overlay.entry(&format!("etc/systemd/system/{getty}"), link, b"/dev/null")?;
    }
    let overlay = overlay.finish()?;
    let mut file = fs::OpenOptions::new().append(true).open(&initrd).with_context(|| format!("opening {}", initrd.display()))?;
    std::io::Write::write_all(&mut file, &overlay).with_context(|| format!("writing {}", initrd.display()))?;
    drop(file);
    let append = format!("console=ttyS0 quiet loglevel=1 rdinit=/lib/systemd/systemd systemd.show_status=0 {KERNEL_STALLS}");
    boot(&initrd, "2048", &append, &mark, timeout)
}

/// Runs QEMU on `initrd` until it powers off or `timeout` passes; parses the markers. A boot
/// whose kernel locked up is booted once more, saying so with the console of the first: the guest
/// kernel under TCG is not what the tests test, but a lockup on both boots fails.
fn boot(initrd: &Path, memory: &str, append: &str, mark: &str, timeout: Duration) -> Result<VmRun> {
    match boot_once(initrd, memory, append, mark, timeout)? {
        Boot::Ran(run) => Ok(run),
        Boot::KernelLockup(first) => {
            eprintln!("xtask: the VM's kernel locked up (not a test result){first}\nxtask: booting the VM again, once");
            match boot_once(initrd, memory, append, mark, timeout)? {
                Boot::Ran(run) => Ok(run),
                Boot::KernelLockup(second) => bail!("the VM's kernel locked up on both boots{second}"),
            }
        }
    }
}

/// How one boot ended.
enum Boot {
    /// The script ran to its end marker.
    Ran(VmRun),
    /// The guest kernel reported a soft lockup and panicked (or hung): what its console showed.
    KernelLockup(String),
}

fn boot_once(initrd: &Path, memory: &str, append: &str, mark: &str, timeout: Duration) -> Result<Boot> {
    let kernel = kernel();
    if !kernel.is_file() {
        bail!("no VM kernel at {}: run scripts/vm-setup.sh (as root) first", kernel.display());
    }
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-nographic", "-no-reboot", "-m", memory, "-smp", "2", "-nic", "none"])
        .args(accel())
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = qemu.spawn().context("starting qemu-system-x86_64 (run scripts/vm-setup.sh)")?;
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + timeout;
    let exited = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let serial = String::from_utf8_lossy(&out.join().unwrap_or_default()).replace("\r\n", "\n");
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let run = parse(&serial, mark);
    if run.is_err() && locked_up(&serial) {
        return Ok(Boot::KernelLockup(story(&serial, mark)));
    }
    let Some(qemu_status) = exited else {
        bail!("VM timed out after {timeout:?} and was killed{}", story(&serial, mark));
    };
    run.map(Boot::Ran).with_context(|| format!("VM gave no exit status (qemu: {qemu_status}); stderr: {stderr}{}", story(&serial, mark)))
}

/// The guest kernel's watchdog reported a CPU that stopped scheduling.
fn locked_up(serial: &str) -> bool {
    serial.contains("watchdog: BUG: soft lockup")
}

/// TCG emulating every CPU feature. KVM only on request (`CAPPROF_VM_KVM=1`): on this machine
/// `/dev/kvm` opens but the CPU has no VMX/SVM, and a KVM guest hangs at boot.
fn accel() -> &'static [&'static str] {
    if std::env::var_os("CAPPROF_VM_KVM").is_some_and(|v| v == "1") {
        &["-accel", "kvm", "-cpu", "host"]
    } else {
        &["-accel", "tcg", "-cpu", "max"]
    }
}

/// Extracts the script's output and status from the serial log: the text between the begin marker
/// line and the last end marker (which may follow output that lacked a final newline).
fn parse(serial: &str, mark: &str) -> Result<VmRun> {
    let begin = format!("{mark} begin\n");
    let end = format!("{mark} end status=");
    let start = serial.find(&begin).context("no begin marker: /init did not run")? + begin.len();
    let stop = serial[start..].rfind(&end).context("no end marker: the script did not finish")? + start;
    let status_text = serial[stop + end.len()..].lines().next().unwrap_or("").trim();
    let status = status_text.parse().with_context(|| format!("bad status {status_text:?}"))?;
    Ok(VmRun { output: serial[start..stop].to_string(), status })
}

/// What a failed run's serial log tells: how far the script got (its last lines before the
/// kernel's first lockup report or panic) and how the console ended, for the error message.
fn story(serial: &str, mark: &str) -> String {
    let last = |text: &str, n: usize| -> String {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let begin = format!("{mark} begin\n");
    let script = match serial.find(&begin) {
        Some(at) => {
            let ran = &serial[at + begin.len()..];
            let ran = ["watchdog: BUG: soft lockup", "Kernel panic"].iter().filter_map(|m| ran.find(m)).min().map_or(ran, |end| &ran[..end]);
            format!("\nthe script got as far as:\n{}", last(ran, 40))
        }
        None => "\nthe script never started".to_string(),
    };
    format!("{script}\nserial console ended with:\n{}", last(serial, 150))
}

/// Reads a pipe to its end on a thread, so QEMU never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// A marker unique to this run.
fn nonce() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("@@capprof-vm-{:x}-{t:x}@@", std::process::id())
}

/// A private directory for one run's initramfs, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("capprof-vm-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// One initramfs entry, keyed by its path without the leading `/`.
enum Node {
    Dir,
    File { mode: u32, data: Vec<u8> },
    Symlink(String),
    CharDev(u32, u32),
}

/// Builds the initramfs (uncompressed cpio newc, which the kernel accepts as is): busybox and its
/// applet links, /init, /script.sh, the requested binaries and their shared libraries.
fn initramfs(binaries: &[&Path], script: &str, mark: &str) -> Result<Vec<u8>> {
    let mut tree: BTreeMap<String, Node> = BTreeMap::new();
    for d in ["proc", "sys", "dev", "tmp", "root", "bin", "sbin", "usr/bin", "usr/sbin"] {
        tree.insert(d.into(), Node::Dir);
    }
    // The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    tree.insert("dev/console".into(), Node::CharDev(5, 1));

    let busybox = Path::new("/bin/busybox");
    let list = Command::new(busybox).arg("--list-full").output().context("running /bin/busybox (busybox-static)")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|l| !l.is_empty()) {
        tree.insert(applet.trim_start_matches('/').into(), Node::Symlink("/bin/busybox".into()));
    }
    add_binary(&mut tree, busybox, "bin/busybox")?;
    for bin in binaries {
        let name = bin.file_name().with_context(|| format!("{} has no file name", bin.display()))?;
        add_binary(&mut tree, bin, &format!("bin/{}", name.to_string_lossy()))?;
    }
    tree.insert("init".into(), Node::File { mode: 0o755, data: INIT.replace("@MARK@", mark).into_bytes() });
    tree.insert("script.sh".into(), Node::File { mode: 0o755, data: script.as_bytes().to_vec() });

    // Parents first: BTreeMap order puts "a" before "a/b"; add any missing parent directories.
    let parents: Vec<String> = tree
        .keys()
        .flat_map(|k| k.match_indices('/').map(move |(i, _)| k[..i].to_string()))
        .collect();
    for p in parents {
        tree.entry(p).or_insert(Node::Dir);
    }

    let mut cpio = Cpio::new(Vec::new());
    for (name, node) in &tree {
        let (meta, data) = match node {
            Node::Dir => (Meta::root(cpio::DIR | 0o755), &[][..]),
            Node::File { mode, data } => (Meta::root(cpio::FILE | mode), &data[..]),
            Node::Symlink(target) => (Meta::root(cpio::SYMLINK | 0o777), target.as_bytes()),
            Node::CharDev(maj, min) => (Meta { rdev: (*maj, *min), ..Meta::root(cpio::CHAR_DEVICE | 0o600) }, &[][..]),
        };
        cpio.entry(name, meta, data)?;
    }
    Ok(cpio.finish()?)
}

/// Adds a host binary at `dest` and, from `ldd`, each shared library (and the dynamic loader) at
/// its host path; symlinked paths get the file they point to. Static binaries need nothing more.
fn add_binary(tree: &mut BTreeMap<String, Node>, bin: &Path, dest: &str) -> Result<()> {
    let data = fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    tree.insert(dest.into(), Node::File { mode: 0o755, data });
    for lib in shared_libs(bin)? {
        let key = lib.to_string_lossy().trim_start_matches('/').to_string();
        if let std::collections::btree_map::Entry::Vacant(slot) = tree.entry(key) {
            let data = fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
            slot.insert(Node::File { mode: 0o755, data });
        }
    }
    Ok(())
}

/// The absolute paths `ldd` resolves for `bin`; none for a static binary (ldd fails on those).
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output().context("running ldd")?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)",
        // "linux-vdso.so.1 (0x..)" (in the kernel, nothing to copy), "libx.so => not found".
        let line = line.trim();
        let path = line.split_once(" => ").map_or(line, |(_, p)| p);
        let path = path.split(" (").next().unwrap_or("").trim();
        if path == "not found" {
            bail!("{}: ldd cannot find {line}", bin.display());
        }
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a real run's console (CI, 2026-12-03): both CPUs locked up mid-script.
    const LOCKED: &str = "@M@ begin\nBOOT running\nKERNEL 6.1.0-57-amd64\n[  230.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [systemctl:667]\n[  230.2] watchdog: BUG: soft lockup - CPU#1 stuck for 21s! [capprof:642]\n[  230.3] Kernel panic - not syncing: softlockup: hung tasks\n";

    #[test]
    fn a_lockup_is_told_from_a_finished_script() {
        assert!(locked_up(LOCKED));
        assert!(parse(LOCKED, "@M@").is_err());
        let finished = "@M@ begin\nok\n@M@ end status=0\n";
        assert!(!locked_up(finished));
        assert_eq!(parse(finished, "@M@").map(|r| (r.output, r.status)).ok(), Some(("ok\n".to_string(), 0)));
    }

    #[test]
    fn the_story_shows_the_script_up_to_the_lockup_and_the_console_after() {
        let told = story(LOCKED, "@M@");
        let (script, console) = told.split_once("serial console ended with:").expect("two parts");
        assert!(script.contains("KERNEL 6.1.0-57-amd64") && !script.contains("soft lockup"), "{script}");
        assert!(console.contains("CPU#1 stuck") && console.contains("Kernel panic"), "{console}");
        assert!(story(LOCKED.replace("@M@ begin\n", "").as_str(), "@M@").contains("the script never started"));
    }
}
