//! `capprof daemon` against a real Docker engine: workloads identified across restarts and
//! replicas, sets per workload through the API and the CLI, containers that were already
//! running adopted, kill -9 losing nothing already learned, kernel map entries of finished
//! containers evicted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;
use serde_json::Value;

struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

/// `daemon --detach`: what the pinned programs of the daemons on `dir`'s state counted goes
/// into the state, and nothing stays attached (every test ends with it).
fn detach(dir: &Path) -> String {
    let out = Command::new(capprof())
        .args(["daemon", "--detach", "--socket"])
        .arg(dir.join("capprof.sock"))
        .arg("--state")
        .arg(dir.join("state.redb"))
        .output()
        .expect("capprof daemon --detach");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "daemon --detach: {stderr}");
    stderr
}

impl Daemon {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_flushing_every(dir, "1", extra)
    }

    fn start_flushing_every(dir: &Path, seconds: &str, extra: &[&str]) -> Self {
        let socket = dir.join("capprof.sock");
        let child = Command::new(capprof())
            .args(["daemon", "--flush-interval", seconds, "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(dir.join("state.redb"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("capprof daemon");
        let d = Self { child, socket, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.get("/health").is_none() {
            assert!(Instant::now() < deadline, "daemon did not answer on {}", d.socket.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn get(&self, target: &str) -> Option<String> {
        let out = Command::new("curl").args(["-fsS", "--unix-socket"]).arg(&self.socket).arg(format!("http://capprof{target}")).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(capprof()).args(args).arg("--socket").arg(&self.socket).output().unwrap();
        assert!(out.status.success(), "capprof {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The workload's minimal set, once it has one (facts are durable within a cycle).
    fn set_of(&self, id: &str, expect: &[&str]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self
                .get(&format!("/profile?format=json&id={}", id.replace(':', "%3A").replace('/', "%2F")))
                .map(|b| added(&serde_json::from_str::<Value>(&b).unwrap()["workloads"][0]))
                .unwrap_or_default();
            if got == expect || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemon's profile of one workload, in capprof's own model.
    fn profile(&self, id: &str) -> capprof::profile::Profile {
        let body = self.get(&format!("/profile?format=json&id={}", id.replace(':', "%3A").replace('/', "%2F"))).expect("the workload's profile");
        capprof::profile::Profile::from_json(&body, "daemon").unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn kill9(self) {
        self.signal(libc::SIGKILL);
    }

    /// SIGTERM, then `--detach`: the test leaves nothing attached.
    fn stop(self) {
        let dir = self.dir.clone();
        self.signal(libc::SIGTERM);
        detach(&dir);
    }

    fn signal(mut self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let _ = self.child.wait();
        std::mem::forget(self);
    }
}

/// A failing test must not leave a daemon, or its pinned programs, behind.
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(capprof()).args(["daemon", "--detach", "--socket"]).arg(&self.socket).arg("--state").arg(self.dir.join("state.redb")).output();
    }
}

fn docker(args: &[&str]) {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn learns_workloads_across_restarts_replicas_and_kill_9() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon");
    let tag = std::process::id();
    let already = format!("capprof-early-{tag}");
    // Running before the daemon starts: adopted at start.
    docker(&["run", "-d", "--rm", "--name", &already, &img, "sh", "-c", "while true; do chroot / true; sleep 0.2; done"]);

    let d = Daemon::start(&dir, &[]);
    let a = format!("capprof-a-{tag}");
    // The same container twice (a restart), chown at its very first instruction.
    for _ in 0..2 {
        docker(&["run", "--rm", "--name", &a, &img, "sh", "-c", "touch /tmp/f; chown 65534 /tmp/f"]);
    }
    // Two replicas of one compose service.
    let project = format!("cp{tag}");
    for i in 1..=2 {
        docker(&[
            "run", "--rm", "--name", &format!("{project}-web-{i}"), "--label", &format!("com.docker.compose.project={project}"),
            "--label", "com.docker.compose.service=web", &img, "sh", "-c", "mknod /tmp/n c 1 3",
        ]);
    }
    let a_id = format!("container:{img}/{a}");
    let web_id = format!("compose:{project}/web");
    let early_id = format!("container:{img}/{already}");
    assert_eq!(d.set_of(&a_id, &["CHOWN"]), ["CHOWN"]);
    assert_eq!(d.set_of(&web_id, &["MKNOD"]), ["MKNOD"]);
    assert_eq!(d.set_of(&early_id, &["SYS_CHROOT"]), ["SYS_CHROOT"]);

    // Known facts from the second container only update counters: durable at the next flush.
    let seen = |id: &str| -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list: Vec<Value> = serde_json::from_str(&d.get("/workloads").unwrap()).unwrap();
            let n = list.iter().find(|w| w["id"] == id).map(|w| w["containers_seen"].as_u64().unwrap()).unwrap_or(0);
            if n >= 2 || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert_eq!(seen(&a_id), 2, "a restart is the same workload");
    assert_eq!(seen(&web_id), 2, "two replicas are one workload");
    let table = d.cli(&["profiles"]);
    assert!(table.contains(&web_id) && table.contains("MKNOD"), "{table}");
    let k8s = d.cli(&["export", &web_id, "-f", "k8s"]);
    assert!(k8s.contains("- MKNOD"), "{k8s}");
    // A container's name, the end of an id, the start of a container id: one workload each.
    assert_eq!(d.cli(&["export", &a, "-f", "docker"]).trim(), "--cap-drop=ALL --cap-add=CHOWN", "by container name");
    let early_short = early_id.rsplit_once(':').unwrap().1;
    assert_eq!(d.cli(&["export", early_short, "-f", "docker"]).trim(), "--cap-drop=ALL --cap-add=SYS_CHROOT", "by the end of its id");
    let ns = d.cli(&["export", "--namespace", &project, "-f", "docker"]);
    assert_eq!(ns.trim(), "--cap-drop=ALL --cap-add=MKNOD");
    let metrics = d.get("/metrics").unwrap();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert!(metrics.contains(&format!("capprof_checks_total{{node=\"{node}\",workload=\"{web_id}\",capability=\"MKNOD\",verdict=\"granted\",class=\"needed\"}}")), "{metrics}");
    assert!(metrics.contains(&format!("capprof_losses_total{{node=\"{node}\",kind=\"checks_map_full\"}} 0")), "{metrics}");

    // kill -9, then containers while the daemon is down, then a restart on the same state:
    // the pinned programs counted them, the restarted daemon drains what they counted.
    d.kill9();
    docker(&["rm", "-f", &already]);
    let down = format!("capprof-down-{tag}");
    let down_rm = format!("capprof-down-rm-{tag}");
    docker(&["run", "--name", &down, &img, "sh", "-c", "mknod /tmp/n c 1 3"]);
    docker(&["run", "--rm", "--name", &down_rm, &img, "sh", "-c", "touch /tmp/f; chown 65534 /tmp/f"]);
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.set_of(&format!("container:{img}/{down}"), &["MKNOD"]), ["MKNOD"], "a container that ran while the daemon was down is learned");
    // A --rm container is gone before the daemon can ask its engine: known by its cgroup.
    let list: Vec<Value> = serde_json::from_str(&d.get("/workloads").unwrap()).unwrap();
    let rm_short = list.iter().find(|w| w["used"].as_array().is_some_and(|u| u.len() == 1 && u[0] == "CHOWN") && w["id"].as_str().is_some_and(|i| i.starts_with("container:unknown-image/")));
    assert!(rm_short.is_some(), "the --rm container that ran while the daemon was down is learned by its cgroup: {list:?}");
    docker(&["rm", "-f", &down]);
    assert_eq!(d.set_of(&a_id, &["CHOWN"]), ["CHOWN"], "learned before kill -9, still there");
    assert_eq!(d.set_of(&web_id, &["MKNOD"]), ["MKNOD"]);
    assert_eq!(d.set_of(&early_id, &["SYS_CHROOT"]), ["SYS_CHROOT"]);
    let b = format!("capprof-b-{tag}");
    docker(&["run", "--rm", "--name", &b, &img, "sh", "-c", "chroot / true"]);
    assert_eq!(d.set_of(&format!("container:{img}/{b}"), &["SYS_CHROOT"]), ["SYS_CHROOT"]);
    d.stop();
}

#[test]
fn finished_containers_leave_the_kernel_map_and_tcp_is_opt_in() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon-evict");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&dir, &["--listen-tcp", &addr]);
    std::thread::sleep(Duration::from_secs(2));
    let count = |d: &Daemon| -> u64 {
        let h: Value = serde_json::from_str(&d.get("/health").unwrap()).unwrap();
        h["kernel_map_checks"].as_u64().unwrap()
    };
    // Containers' keys are evicted once their cgroups are gone; what stays is the host's own
    // (docker CLI, runc, shims in long-lived cgroups), which does not grow with churn.
    let batch = |round: u32| {
        for i in 0..8 {
            docker(&["run", "--rm", "--name", &format!("capprof-churn-{round}-{i}-{}", std::process::id()), &img, "sh", "-c", "chroot / true"]);
        }
        // Two flush intervals: counts durable, then finished cgroups' keys evicted.
        std::thread::sleep(Duration::from_secs(4));
        count(&d)
    };
    let first = batch(1);
    let second = batch(2);
    // 8 containers leave ~250 keys (runc's set-up included) when nothing is evicted; the host's
    // own processes may add a few new kinds of check meanwhile.
    assert!(second <= first + 20, "kernel map held {first} checks after 8 containers and {second} after 8 more: finished containers must leave it");
    let health = Command::new("curl").args(["-fsS", &format!("http://{addr}/health")]).output().unwrap();
    assert!(health.status.success(), "TCP API on {addr}");
    d.stop();
}

/// One container watched by `record --container` and by the daemon at the same time: the same
/// set, the same portability notes, the same hardening advice, the same granted set.
#[test]
fn record_container_and_the_daemon_say_the_same() {
    use capprof::profile::Profile;
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon-parity");
    let d = Daemon::start(&dir, &[]);
    let name = format!("capprof-parity-{}", std::process::id());
    // Binds port 80 in its own network namespace (Docker makes no check for it: a portability
    // note), writes outside the scratch directories (no --read-only), chroots (SYS_CHROOT).
    docker(&["run", "-d", "--name", &name, &img, "sh", "-c", "sleep 2; nc -l -p 80 & while true; do chroot / true; touch /etc/state; sleep 0.3; done"]);
    let rec_path = dir.join("record.json");
    let out = Command::new(capprof())
        .args(["record", "--container", &name, "--duration", "6", "-f", "json", "-o"])
        .arg(&rec_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded = Profile::from_json(&std::fs::read_to_string(&rec_path).unwrap(), "record").unwrap();
    let id = format!("container:{img}/{name}");
    assert_eq!(d.set_of(&id, &["SYS_CHROOT"]), ["SYS_CHROOT"]);
    // Two flush intervals: the engine's filesystem changes are asked for at each.
    std::thread::sleep(Duration::from_secs(2));
    let learned = d.profile(&id);
    docker(&["rm", "-f", &name]);
    d.stop();
    let (r, l) = (&recorded.workloads[0], &learned.workloads[0]);
    assert_eq!(r.capabilities.add, l.capabilities.add, "the set");
    assert!(!r.portability.is_empty(), "the bind to port 80 is a portability note: {:?}", r.portability);
    assert_eq!(r.portability, l.portability, "portability notes");
    let advice = |w: &capprof::profile::WorkloadProfile| w.hardening.iter().map(|a| (a.option.clone(), a.recommended)).collect::<Vec<_>>();
    assert_eq!(advice(r), advice(l), "hardening advice: record {:?}, daemon {:?}", r.hardening, l.hardening);
    assert!(advice(r).iter().any(|(o, rec)| o == "--read-only" && !rec), "writes /etc: no --read-only: {:?}", r.hardening);
    assert_eq!(r.no_new_privileges_safe, l.no_new_privileges_safe);
    assert_eq!(r.granted, l.granted, "granted");
}

/// A `--rm` container that lives a second and a half: the daemon still asks its engine what it
/// wrote while it runs, so `--read-only` is assessed (as `record` assesses it), not "not
/// assessed".
#[test]
fn short_lived_rm_containers_get_read_only_assessed() {
    use capprof::profile::advice::AdviceKind;
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon-rm");
    let d = Daemon::start(&dir, &[]);
    let name = format!("capprof-rm-{}", std::process::id());
    docker(&["run", "--rm", "--name", &name, &img, "sh", "-c", "touch /etc/state; chroot / true; sleep 1.5"]);
    let id = format!("container:{img}/{name}");
    assert_eq!(d.set_of(&id, &["SYS_CHROOT"]), ["SYS_CHROOT"]);
    std::thread::sleep(Duration::from_secs(2));
    let p = d.profile(&id);
    d.stop();
    let ro = p.workloads[0].hardening.iter().find(|a| a.kind() == Some(AdviceKind::ReadOnly)).expect("read-only advice");
    assert!(!ro.reason.starts_with("not assessed"), "{ro:?}");
    assert!(!ro.recommended && ro.reason.contains("/etc"), "it wrote /etc: {ro:?}");
}

/// containerd's containers (`ctr` with the kubelet's cgroup layouts and CRI annotations,
/// through containerd's shim and runc) are learned as their Kubernetes workload: two pods of
/// one Deployment, one in each layout, with different needs, are one workload
/// `k8s:NAMESPACE/OWNER/CONTAINER` whose set is the union.
#[test]
fn the_daemon_learns_containerd_pods_as_their_deployment() {
    require_root();
    let _serial = container_lock();
    let image = containerd_image();
    let dir = scratch("daemon-containerd");
    let d = Daemon::start(&dir, &[]);
    let run = |argv: Vec<String>| {
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Pods live on: the daemon reads a container's bundle once its cgroup shows up.
    run(ctr_run(&image, false, "cart-6b7f9d5c4d-q8w7z", "0c5c1234-aaaa-bbbb-cccc-1234567890ab", "app", "touch /tmp/f && chown 65534 /tmp/f && sleep 1"));
    run(ctr_run(&image, true, "cart-6b7f9d5c4d-x2k9p", "7d7d5678-aaaa-bbbb-cccc-1234567890ab", "app", "chroot / true && sleep 1"));
    let id = "k8s:shop/cart/app";
    assert_eq!(d.set_of(id, &["CHOWN", "SYS_CHROOT"]), ["CHOWN", "SYS_CHROOT"]);
    let list: Vec<Value> = serde_json::from_str(&d.get("/workloads").unwrap()).unwrap();
    let w = list.iter().find(|w| w["id"] == id).unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(w["containers_seen"], 2, "two pods of one Deployment: {w}");
    let patch = d.cli(&["export", "--namespace", "shop", "-f", "k8s-patch"]);
    assert!(patch.contains("name: app") && patch.contains("- CHOWN") && patch.contains("- SYS_CHROOT"), "{patch}");
    d.stop();
}

/// Containers already running when the daemon starts are asked about one per pass (not all
/// at once: BENCHMARKS.md), and every one of them still gets its `--read-only` assessment.
#[test]
fn containers_running_before_the_daemon_all_get_read_only_assessed() {
    use capprof::profile::advice::AdviceKind;
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon-preexisting");
    let tag = std::process::id();
    let names: Vec<String> = (0..3).map(|i| format!("capprof-pre-{tag}-{i}")).collect();
    for name in &names {
        docker(&["run", "-d", "--rm", "--name", name, &img, "sh", "-c", "touch /etc/state; while true; do chroot / true; sleep 0.2; done"]);
    }
    let d = Daemon::start(&dir, &[]);
    let ids: Vec<String> = names.iter().map(|n| format!("container:{img}/{n}")).collect();
    for id in &ids {
        assert_eq!(d.set_of(id, &["SYS_CHROOT"]), ["SYS_CHROOT"], "{id} adopted");
    }
    let assessed = |id: &str| {
        let p = d.profile(id);
        p.workloads[0].hardening.iter().find(|a| a.kind() == Some(AdviceKind::ReadOnly)).cloned().expect("read-only advice")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = ids.iter().map(|id| assessed(id)).collect();
        if last.iter().all(|ro| !ro.reason.starts_with("not assessed")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for name in &names {
        docker(&["rm", "-f", name]);
    }
    d.stop();
    for ro in &last {
        assert!(!ro.recommended && ro.reason.contains("/etc"), "each wrote /etc: {ro:?}");
    }
}

/// With a flush a minute away the learner sleeps (an idle daemon wakes once per flush), yet a
/// new container's first checks wake it at once, and a stop does not wait for the flush.
#[test]
fn a_sleeping_daemon_wakes_for_new_checks_and_stops_at_once() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let dir = scratch("daemon-sleep");
    let mut d = Daemon::start_flushing_every(&dir, "60", &[]);
    // Past the start's first passes: from here nothing is due before the flush.
    std::thread::sleep(Duration::from_secs(3));
    let b = format!("capprof-sleep-{}", std::process::id());
    docker(&["run", "--rm", "--name", &b, &img, "sh", "-c", "chroot / true"]);
    assert_eq!(d.set_of(&format!("container:{img}/{b}"), &["SYS_CHROOT"]), ["SYS_CHROOT"], "a new container's facts wait for no flush");
    // Past the container's young seconds too (its engine is asked about it often while
    // young): now the learner sleeps until the flush.
    std::thread::sleep(Duration::from_secs(11));
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let asked = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break Some(s);
        }
        if asked.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.is_some_and(|s| s.success()), "the daemon did not stop within 5 s of SIGTERM with its flush a minute away: {status:?}");
    std::mem::forget(d);
    detach(&dir);
}

/// ping in a container makes no NET_RAW check (an ICMP datagram socket in Docker's network
/// namespace) and is gone in a millisecond: the daemon still learns that its exec needs NET_RAW
/// (its file capability, found in the image when the process was already gone).
#[test]
fn the_daemon_learns_a_file_capability_programs_need() {
    require_root();
    let _serial = container_lock();
    let img = ping_image();
    let dir = scratch("daemon-fcaps");
    let d = Daemon::start(&dir, &[]);
    let name = format!("capprof-fcaps-{}", std::process::id());
    docker(&["run", "--rm", "--network", "none", "--name", &name, &img, "ping", "-c1", "-W2", "127.0.0.1"]);
    let id = format!("container:{img}/{name}");
    let set = d.set_of(&id, &["NET_RAW"]);
    d.stop();
    assert_eq!(set, ["NET_RAW"]);
}
