//! Test harness for capprof's integration tests: find the binaries, run `capprof record` on
//! a scenario, read back the JSON profile. Tests trigger real capability checks on the real
//! kernel and expect exact sets, in the spirit of pulsar's `TestRunner::run(trigger).expect_event`.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// Fails (never skips) when not root: every test here needs the kernel programs.
pub fn require_root() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "capprof's integration tests load eBPF programs: run them as root (cargo xtask test)");
}

/// target/<profile>/ of the running test.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf()
}

/// The capprof binary built beside the tests (`cargo xtask test` builds it first).
pub fn capprof() -> PathBuf {
    let p = target_dir().join("capprof");
    assert!(p.exists(), "{} not found: build it first (cargo xtask test does)", p.display());
    p
}

/// The scenario helper (a binary of this crate, built with the tests).
pub fn scenario() -> PathBuf {
    let p = target_dir().join("scenario");
    assert!(p.exists(), "{} not found: build it first (cargo xtask test does)", p.display());
    p
}

/// A fresh scratch directory under /tmp, unique per call: tests run in parallel.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capprof-test-{name}-{}", unique()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// What one `capprof record` run gave.
pub struct Recording {
    pub status: i32,
    /// The JSON as written, for messages; assertions use `typed`.
    pub profile: Value,
    /// The same profile read into capprof's own model: a renamed or missing field fails here,
    /// not silently as a `Value` lookup would.
    pub typed: capprof::profile::Profile,
    pub stderr: String,
}

impl Recording {
    /// The minimal set (`capabilities.add`) of the only workload.
    pub fn added(&self) -> Vec<String> {
        self.typed_workload().capabilities.add.iter().map(|c| c.name().to_string()).collect()
    }

    /// The only workload, typed.
    pub fn typed_workload(&self) -> &capprof::profile::WorkloadProfile {
        assert_eq!(self.typed.workloads.len(), 1, "one workload expected: {}", self.profile);
        &self.typed.workloads[0]
    }

    pub fn workload(&self) -> &Value {
        let w = self.profile["workloads"].as_array().expect("workloads");
        assert_eq!(w.len(), 1, "one workload expected: {}", self.profile);
        &w[0]
    }

    /// Checks of one capability, any class.
    pub fn checks_of(&self, cap: &str) -> Vec<&capprof::profile::CheckSummary> {
        self.typed_workload().checks.iter().filter(|c| c.capability == cap).collect()
    }
}

/// Runs `capprof record --format json -o FILE [extra] -- argv` and parses the profile.
pub fn record(extra: &[&str], argv: &[&str]) -> Recording {
    let out_dir = scratch("profile");
    let file = out_dir.join(format!("{}.json", unique()));
    let output = Command::new(capprof())
        .arg("record")
        .args(["--format", "json", "-o"])
        .arg(&file)
        .args(extra)
        .arg("--")
        .args(argv)
        .output()
        .expect("running capprof");
    recording(output, &file)
}

fn recording(output: Output, file: &std::path::Path) -> Recording {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("no profile at {} ({e}); stderr:\n{stderr}", file.display()));
    let profile: Value = serde_json::from_str(&text).expect("profile JSON");
    let typed = capprof::profile::Profile::from_json(&text, &file.display().to_string()).unwrap_or_else(|e| panic!("{e:#}"));
    Recording { status: output.status.code().unwrap_or(-1), profile, typed, stderr }
}

/// Records the scenario helper with `args`.
pub fn record_scenario(args: &[&str]) -> Recording {
    let s = scenario();
    let mut argv = vec![s.to_str().unwrap()];
    argv.extend_from_slice(args);
    record(&[], &argv)
}

/// A string unique within this test process (and across processes: it starts with the pid).
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Runs capprof with arbitrary arguments.
pub fn capprof_cmd(args: &[&str]) -> Output {
    Command::new(capprof()).args(args).output().expect("running capprof")
}

/// The test image: a static busybox rootfs imported into the engine (no registry here).
/// Built once per test process; fails (never skips) when the engine is not running.
pub fn busybox_image(engine: &str) -> String {
    use std::sync::Mutex;
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap();
    let tag = if engine == "podman" { "localhost/capprof-test:busybox" } else { "capprof-test:busybox" };
    if built.iter().any(|e| e == engine) {
        return tag.into();
    }
    let info = Command::new(engine).arg("info").output().unwrap_or_else(|e| panic!("{engine} not installed ({e}): run cargo xtask test"));
    assert!(info.status.success(), "{engine} is not running (cargo xtask test starts dockerd): {}", String::from_utf8_lossy(&info.stderr));
    let root = scratch(&format!("rootfs-{engine}"));
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("www")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static (/bin/busybox)");
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&applets.stdout).lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n").unwrap();
    std::fs::write(root.join("www/index.html"), "hello\n").unwrap();
    let tar = root.with_extension("tar");
    assert!(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    let import = Command::new(engine).arg("import").arg(&tar).arg(tag).output().unwrap();
    assert!(import.status.success(), "{engine} import: {}", String::from_utf8_lossy(&import.stderr));
    built.push(engine.into());
    tag.into()
}

/// Runs `capprof ARGS` writing JSON to a file; returns (status, profile, stderr).
pub fn capprof_json(args: &[&str], argv: &[&str]) -> (i32, Value, String) {
    let file = scratch("json").join(format!("{}.json", unique()));
    let out = Command::new(capprof())
        .args(args)
        .args(["-f", "json", "-o"])
        .arg(&file)
        .arg("--")
        .args(argv)
        .output()
        .expect("running capprof");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let profile = std::fs::read_to_string(&file).map(|t| serde_json::from_str(&t).expect("json")).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), profile, stderr)
}

/// What one capprof run printed and wrote: the workload's own stdout passes through.
pub struct Run {
    pub status: i32,
    pub profile: Value,
    pub stdout: String,
    pub stderr: String,
}

/// `capprof ARGS -f json -o FILE -- ARGV`, keeping the workload's stdout (what it observed).
pub fn capprof_run(args: &[&str], argv: &[&str]) -> Run {
    let dir = scratch("run");
    let file = dir.join("profile.json");
    let out = Command::new(capprof()).args(args).args(["-f", "json", "-o"]).arg(&file).arg("--").args(argv).output().expect("running capprof");
    let profile = std::fs::read_to_string(&file).map(|t| serde_json::from_str(&t).expect("json")).unwrap_or(Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        status: out.status.code().unwrap_or(-1),
        profile,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The profile's container workloads.
pub fn containers(profile: &Value) -> Vec<&Value> {
    profile["workloads"].as_array().map(|a| a.iter().filter(|w| w["kind"] == "container").collect()).unwrap_or_default()
}

/// A workload's minimal set.
pub fn added(workload: &Value) -> Vec<String> {
    workload["capabilities"]["add"].as_array().expect("add").iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// Container recordings attribute every container started on the host while they run: tests
/// that start containers take this lock so they don't see each other's.
pub fn container_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tests that listen on the host's port 80 take this lock (they run in parallel otherwise).
pub fn port_80_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A real Debian bookworm image with python3, built from Debian's packages with mmdebstrap
/// (the worked example's `FROM debian:bookworm-slim` + `apt-get install python3`) and imported
/// into Docker. Built once per machine: an image already present under the tag is reused.
pub fn debian_python_image() -> String {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = "capprof-test:bookworm-python3";
    if Command::new("docker").args(["image", "inspect", tag]).output().is_ok_and(|o| o.status.success()) {
        return tag.into();
    }
    let tar = scratch("bookworm").join("rootfs.tar");
    let out = Command::new("mmdebstrap")
        .args(["--quiet", "--variant=apt", "--include=python3", "bookworm"])
        .arg(&tar)
        .output()
        .unwrap_or_else(|e| panic!("mmdebstrap not installed ({e}): scripts/setup.sh installs it"));
    assert!(out.status.success(), "mmdebstrap: {}", String::from_utf8_lossy(&out.stderr));
    let import = Command::new("docker").arg("import").arg(&tar).arg(tag).output().unwrap();
    assert!(import.status.success(), "docker import: {}", String::from_utf8_lossy(&import.stderr));
    let _ = std::fs::remove_file(&tar);
    tag.into()
}

/// The Debian image with iputils' ping carrying its file capability (cap_net_raw=ep, as
/// Debian installs it), added as a tar layer that keeps the attribute.
pub fn ping_image() -> String {
    let tag = "capprof-test:bookworm-ping";
    if Command::new("docker").args(["image", "inspect", tag]).output().is_ok_and(|o| o.status.success()) {
        return tag.into();
    }
    let base = debian_python_image();
    let dir = scratch("ping-image");
    std::fs::create_dir_all(dir.join("root/usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    let ping = dir.join("root/usr/bin/ping");
    std::fs::copy("/usr/bin/ping", &ping).expect("iputils-ping");
    assert!(Command::new("setcap").arg("cap_net_raw=ep").arg(&ping).status().expect("setcap (libcap2-bin)").success());
    let tar = Command::new("tar").args(["--xattrs", "--xattrs-include=security.*", "-C"]).arg(dir.join("root")).arg("-cf").arg(dir.join("ctx/ping.tar")).arg("usr").status().unwrap();
    assert!(tar.success());
    std::fs::write(dir.join("ctx/Dockerfile"), format!("FROM {base}\nADD ping.tar /\n")).unwrap();
    let out = Command::new("docker").args(["build", "-q", "--network", "none", "-t", tag]).arg(dir.join("ctx")).output().unwrap();
    assert!(out.status.success(), "docker build: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    tag.into()
}

/// A random 64-hex-digit container id.
pub fn hex_id() -> String {
    let mut bytes = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The busybox image in containerd's `k8s.io` namespace (the kubelet's), from Docker's.
pub fn containerd_image() -> String {
    static IMPORTED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut imported = IMPORTED.lock().unwrap_or_else(|e| e.into_inner());
    let docker_tag = busybox_image("docker");
    if *imported {
        return format!("docker.io/library/{docker_tag}");
    }
    let version = Command::new("ctr").arg("version").output().expect("ctr (Debian's containerd): run cargo xtask test");
    assert!(version.status.success(), "containerd is not running (scripts/setup.sh starts it): {}", String::from_utf8_lossy(&version.stderr));
    let out = Command::new("sh").arg("-c").arg(format!("docker save {docker_tag} | ctr -n k8s.io images import -")).output().unwrap();
    assert!(out.status.success(), "ctr images import: {}", String::from_utf8_lossy(&out.stderr));
    *imported = true;
    format!("docker.io/library/{docker_tag}")
}

/// `ctr run` as the kubelet's CRI would start a container of pod `pod` (uid `uid`) of
/// namespace `shop`: the cgroupfs driver's `kubepods/besteffort/pod<uid>/<id>` layout or the
/// systemd driver's slice names (made with the cgroupfs driver: this machine's PID 1 is not
/// systemd), and the annotations containerd's CRI plugin sets.
pub fn ctr_run(image: &str, systemd_layout: bool, pod: &str, uid: &str, container: &str, cmd: &str) -> Vec<String> {
    let id = hex_id();
    let cgroup = if systemd_layout {
        let u = uid.replace('-', "_");
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/cri-containerd-{id}.scope")
    } else {
        format!("/kubepods/besteffort/pod{uid}/{id}")
    };
    let mut argv: Vec<String> = ["ctr", "-n", "k8s.io", "run", "--rm", "--cgroup", &cgroup].iter().map(|s| s.to_string()).collect();
    for (k, v) in [
        ("io.kubernetes.cri.sandbox-namespace", "shop"),
        ("io.kubernetes.cri.sandbox-name", pod),
        ("io.kubernetes.cri.sandbox-uid", uid),
        ("io.kubernetes.cri.container-name", container),
        ("io.kubernetes.cri.image-name", image),
    ] {
        argv.push("--annotation".into());
        argv.push(format!("{k}={v}"));
    }
    argv.extend([image.to_string(), id, "sh".into(), "-c".into(), cmd.to_string()]);
    argv
}
