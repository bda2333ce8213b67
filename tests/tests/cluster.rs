//! The cluster-wide view through Prometheus: two daemons on loopback stand for two nodes
//! (their own state, sockets, ports and `--node` names), each sees one pod of the same
//! Deployment with different needs; Debian's Prometheus scrapes both; `capprof export
//! --prometheus` must give the union, say which nodes it came from, and render manifests;
//! deploy/prometheus/'s rules and scrape configuration load into that real Prometheus.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capprof_tests::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A daemon standing for one node: its own state and socket, metrics on its own port.
struct Node {
    child: Option<Child>,
    dir: PathBuf,
    name: String,
    port: u16,
}

impl Node {
    fn new(name: &str) -> Self {
        Self { child: None, dir: scratch(&format!("cluster-{name}")), name: name.into(), port: free_port() }
    }

    fn start(&mut self) {
        let child = Command::new(capprof())
            .args(["daemon", "--flush-interval", "1", "--node", &self.name, "--tcp-metrics-only", "--listen-tcp", &format!("127.0.0.1:{}", self.port)])
            .arg("--socket")
            .arg(self.dir.join("capprof.sock"))
            .arg("--state")
            .arg(self.dir.join("state.redb"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("capprof daemon");
        self.child = Some(child);
        let health = format!("http://127.0.0.1:{}/health", self.port);
        wait_for(&format!("daemon {} answering", self.name), 20, || http_get(&health).is_some());
    }

    /// What this node's daemon says the workload needs (through its own socket).
    fn set_of(&self, id: &str) -> Vec<String> {
        let out = Command::new(capprof()).args(["export", id, "-f", "json", "--socket"]).arg(self.dir.join("capprof.sock")).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).ok().map(|p| added(&p["workloads"][0])).unwrap_or_default()
    }

    /// SIGTERM, then `--detach`: nothing of this daemon's keeps counting.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let out = Command::new(capprof()).args(["daemon", "--detach", "--socket"]).arg(self.dir.join("capprof.sock")).arg("--state").arg(self.dir.join("state.redb")).output().unwrap();
        assert!(out.status.success(), "daemon --detach: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// deploy/prometheus/scrape-config.yaml with its Kubernetes discovery replaced by the two
/// loopback daemons: Debian's Prometheus is built without Kubernetes discovery (promtool
/// refuses `kubernetes_sd_configs`), and its relabelling reads pod metadata a static target
/// lacks. The job's name, interval semantics and rule file are the deployed ones.
fn prometheus_config(dir: &Path, targets: &[String]) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("deploy/prometheus/scrape-config.yaml")).unwrap();
    let mut config: Value = python_yaml(&text);
    let job = &mut config["scrape_configs"][0];
    assert_eq!(job["job_name"], "capprof");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod", "the deployed job discovers the daemon pods");
    let job = job.as_object_mut().unwrap();
    job.remove("kubernetes_sd_configs");
    let relabel: Vec<Value> = job["relabel_configs"].as_array().unwrap().iter().filter(|r| !r["source_labels"].to_string().contains("__meta_kubernetes")).cloned().collect();
    job.insert("relabel_configs".into(), relabel.into());
    job.insert("scrape_interval".into(), "1s".into());
    job.insert("static_configs".into(), serde_json::json!([{ "targets": targets }]));
    config["global"] = serde_json::json!({ "evaluation_interval": "1s" });
    config["rule_files"] = serde_json::json!([repo().join("deploy/prometheus/capprof-rules.yaml")]);
    let path = dir.join("prometheus.yml");
    // JSON is YAML.
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let check = Command::new("promtool").args(["check", "config"]).arg(&path).output().expect("promtool (Debian's prometheus)");
    assert!(check.status.success(), "promtool check config: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    path
}

fn python_yaml(text: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3-yaml");
    serde_json::from_slice(&out.stdout).expect("YAML")
}

fn prom_query(port: u16, q: &str) -> Vec<Value> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query={}", q.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>());
    http_get(&url).and_then(|b| serde_json::from_str::<Value>(&b).ok()).and_then(|v| v["data"]["result"].as_array().cloned()).unwrap_or_default()
}

fn export(port: u16, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(capprof()).args(["export", "--prometheus", &format!("http://127.0.0.1:{port}")]).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn prometheus_holds_the_union_of_two_nodes() {
    require_root();
    let _serial = container_lock();
    let image = containerd_image();
    let id = "k8s:shop/cart/app";
    let run = |argv: Vec<String>| {
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // One kernel stands for two nodes: each daemon runs only while its node's pod runs
    // (and is detached after), so each learns only its own pod.
    let mut a = Node::new("node-a");
    a.start();
    run(ctr_run(&image, false, "cart-6b7f9d5c4d-q8w7z", "0c5c1234-aaaa-bbbb-cccc-1234567890ab", "app", "touch /tmp/f && chown 65534 /tmp/f && sleep 1"));
    wait_for("node-a learning CHOWN", 15, || a.set_of(id) == ["CHOWN"]);
    a.stop();
    let mut b = Node::new("node-b");
    b.start();
    run(ctr_run(&image, true, "cart-6b7f9d5c4d-x2k9p", "7d7d5678-aaaa-bbbb-cccc-1234567890ab", "app", "chroot / true && sleep 1"));
    wait_for("node-b learning SYS_CHROOT", 15, || b.set_of(id) == ["SYS_CHROOT"]);
    a.start();
    assert_eq!(a.set_of(id), ["CHOWN"], "node-a still knows only its own pod");

    let dir = scratch("cluster-prometheus");
    let port = free_port();
    let config = prometheus_config(&dir, &[format!("127.0.0.1:{}", a.port), format!("127.0.0.1:{}", b.port)]);
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's)"),
    );
    wait_for("both daemons scraped", 60, || {
        let nodes: Vec<String> = prom_query(port, "capprof_workload_info").iter().filter_map(|s| s["metric"]["node"].as_str().map(str::to_string)).collect();
        nodes.contains(&"node-a".to_string()) && nodes.contains(&"node-b".to_string())
    });

    // The union, from the series alone.
    let (status, json, stderr) = export(port, &["--namespace", "shop", "-f", "json"]);
    assert_eq!(status, 0, "{stderr}");
    let profile: Value = serde_json::from_str(&json).unwrap();
    let w = &profile["workloads"][0];
    assert_eq!(w["name"], id, "{profile}");
    assert_eq!(added(w), ["CHOWN", "SYS_CHROOT"], "the union over both nodes: {profile}");
    assert_eq!(w["nodes"], serde_json::json!(["node-a", "node-b"]), "{profile}");
    assert_eq!(profile["losses"]["checks_map_full"], 0, "{profile}");
    let chown = w["checks"].as_array().unwrap().iter().find(|c| c["capability"] == "CHOWN" && c["classification"] == "needed").expect("CHOWN's checks");
    assert!(chown["reason"].as_str().unwrap().contains("node-a") && !chown["reason"].as_str().unwrap().contains("node-b"), "{chown}");
    // Each node's probes and runtime set-up stay probes: the same classes as on the nodes.
    assert!(w["checks"].as_array().unwrap().iter().any(|c| c["classification"] == "probed"), "{w}");

    let (status, patch, stderr) = export(port, &["k8s:shop/cart/app", "-f", "k8s-patch"]);
    assert_eq!(status, 0, "{stderr}");
    assert!(patch.contains("name: app") && patch.contains("- CHOWN") && patch.contains("- SYS_CHROOT") && patch.contains("- ALL"), "{patch}");
    let (status, compose, _) = export(port, &["app", "-f", "compose"]);
    assert_eq!(status, 0);
    assert!(compose.contains("CHOWN") && compose.contains("SYS_CHROOT"), "{compose}");

    // The documented query (a recording rule of deploy/prometheus/capprof-rules.yaml):
    // containerd granted 14 on each node, the Deployment used 2 of them.
    wait_for("the granted-unused rule evaluated", 30, || {
        prom_query(port, "capprof:granted_unused:count").iter().any(|s| s["metric"]["workload"] == id && s["value"][1] == "12")
    });
    let by_node = prom_query(port, "capprof:granted_unused_by_node:count");
    let of = |node: &str| by_node.iter().find(|s| s["metric"]["workload"] == id && s["metric"]["node"] == node).map(|s| s["value"][1].clone());
    assert_eq!((of("node-a"), of("node-b")), (Some("13".into()), Some("13".into())), "{by_node:?}");

    // Refusals: a name nobody has, formats the series cannot give, URLs it cannot use.
    let (status, _, stderr) = export(port, &["k8s:shop/none/x", "-f", "json"]);
    assert_eq!(status, 64, "{stderr}");
    assert!(stderr.contains("no workload \"k8s:shop/none/x\""), "{stderr}");
    let (status, _, stderr) = export(port, &["--all", "-f", "seccomp"]);
    assert_eq!(status, 64, "{stderr}");
    let out = Command::new(capprof()).args(["export", "--all", "--prometheus", "https://127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(capprof()).args(["export", "--all", "--prometheus", &format!("http://127.0.0.1:{}", free_port())]).output().unwrap();
    assert_eq!(out.status.code(), Some(74), "nothing listening: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach Prometheus"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The recording rules load into Debian's promtool, and the Operator's Service passes the
/// Kubernetes schemas (the ServiceMonitor is a custom resource: its fields are checked here).
#[test]
fn deploy_prometheus_files_are_valid() {
    let rules = repo().join("deploy/prometheus/capprof-rules.yaml");
    let out = Command::new("promtool").args(["check", "rules"]).arg(&rules).output().expect("promtool (Debian's prometheus)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let monitor = repo().join("deploy/prometheus/servicemonitor.yaml");
    let out = Command::new("kubernetes-validate").args(["--strict", "--quiet"]).arg(&monitor).output().expect("kubernetes-validate (pip)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let docs = std::fs::read_to_string(&monitor).unwrap();
    let docs: Vec<Value> = docs.split("\n---\n").map(python_yaml).collect();
    let sm = docs.iter().find(|d| d["kind"] == "ServiceMonitor").expect("a ServiceMonitor");
    let svc = docs.iter().find(|d| d["kind"] == "Service").expect("its Service");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]);
    let ds = std::fs::read_to_string(repo().join("deploy/base/daemonset.yaml")).unwrap();
    assert!(ds.contains("fieldPath: spec.nodeName") && ds.contains("name: NODE_NAME"), "the DaemonSet names each node's series");
}
