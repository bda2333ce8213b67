//! `capprof record -- docker run ...` against a real Docker engine (and podman): one profile
//! per container, runtime noise excluded, portable sets, rewritten commands that work, and
//! manifests checked by real validators.

use std::process::Command;

use capprof_tests::*;
use serde_json::Value;

fn docker_run(args: &[&str]) -> Vec<String> {
    let img = busybox_image("docker");
    let mut argv = vec!["docker".to_string(), "run".into(), "--rm".into()];
    argv.extend(args.iter().map(|a| a.replace("IMG", &img)));
    argv
}

fn record_docker(args: &[&str]) -> (Value, String) {
    require_root();
    let argv = docker_run(args);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, profile, stderr) = capprof_json(&["record"], &refs);
    assert_eq!(status, 0, "{stderr}");
    (profile, stderr)
}

fn only_container(profile: &Value) -> &Value {
    let c = containers(profile);
    assert_eq!(c.len(), 1, "one container: {profile}");
    c[0]
}

#[test]
fn sleeping_container_needs_nothing_and_runtime_noise_is_excluded() {
    let _serial = container_lock();
    let (p, _) = record_docker(&["IMG", "sleep", "1"]);
    let c = only_container(&p);
    assert_eq!(added(c), Vec::<String>::new(), "{c}");
    assert_eq!(c["container"]["image"], "capprof-test:busybox");
    assert_eq!(c["container"]["source"], "engine");
    assert!(!c["container"]["name"].as_str().unwrap().is_empty());
    let checks = c["checks"].as_array().unwrap();
    // runc's own set-up happened in the container's cgroup, and is classified as such.
    assert!(checks.iter().any(|k| k["classification"] == "runtime" && k["programs"].to_string().contains("runc:[")), "{c}");
    assert!(checks.iter().all(|k| k["classification"] != "needed"), "{c}");
    // What it was granted: Docker's default 14.
    assert_eq!(c["granted"].as_array().unwrap().len(), 14, "{c}");
}

#[test]
fn container_that_chowns_needs_chown() {
    let _serial = container_lock();
    let (p, _) = record_docker(&["IMG", "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"]);
    assert_eq!(added(only_container(&p)), ["CHOWN"]);
}

#[test]
fn port_80_on_the_host_network_needs_net_bind_service() {
    let _serial = container_lock();
    let (p, _) = record_docker(&["--network", "host", "IMG", "sh", "-c", "nc -l -p 80 & sleep 0.5; kill $!"]);
    let c = only_container(&p);
    assert_eq!(added(c), ["NET_BIND_SERVICE"]);
    assert!(c["portability"].as_array().unwrap().is_empty());
}

#[test]
fn port_80_in_dockers_network_namespace_needs_nothing_but_is_not_portable() {
    let _serial = container_lock();
    let script = "nc -l -p 80 & sleep 0.5; kill $!";
    let (p, _) = record_docker(&["IMG", "sh", "-c", script]);
    let c = only_container(&p);
    assert_eq!(added(c), Vec::<String>::new());
    let port = &c["portability"][0];
    assert_eq!(port["capability"], "NET_BIND_SERVICE", "{c}");
    assert!(port["operation"].as_str().unwrap().contains("80"));
    // --portable puts it in the set.
    let argv = docker_run(&["IMG", "sh", "-c", script]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, p, _) = capprof_json(&["record", "--portable"], &refs);
    assert_eq!(status, 0);
    assert_eq!(added(only_container(&p)), ["NET_BIND_SERVICE"]);
}

/// Python (Debian's, in a real Docker container) opening an ICMP "ping" socket and binding
/// port 80 in its own network namespace: Docker's wide `ping_group_range` and
/// `ip_unprivileged_port_start` let both without a check, so the set is empty and the
/// portability notes say NET_RAW and NET_BIND_SERVICE. Seen by the cgroup socket programs on
/// this kernel, and by the system-call tracepoints they fall back to: both give the same
/// profile, and a re-run under it works.
#[test]
fn a_ping_socket_and_port_80_in_docker_need_nothing_but_are_not_portable_with_either_network_hook() {
    let _serial = container_lock();
    require_root();
    let img = debian_python_image();
    let script = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP).close(); s = socket.socket(); s.bind(('0.0.0.0', 80)); s.close()";
    for (hooks, expected) in [(None, "cgroup"), (Some("syscalls"), "syscalls (CAPPROF_NET_HOOKS=syscalls)")] {
        let file = scratch("ping").join(format!("{}.json", unique()));
        let mut cmd = Command::new(capprof());
        cmd.args(["record", "-f", "json", "-o"]).arg(&file).args(["--", "docker", "run", "--rm", &img, "python3", "-c", script]);
        if let Some(h) = hooks {
            cmd.env("CAPPROF_NET_HOOKS", h);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let p: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(p["backend"]["network_hooks"], expected, "{}", p["backend"]);
        let c = only_container(&p);
        assert_eq!(added(c), Vec::<String>::new(), "{c}");
        let notes = c["portability"].as_array().unwrap();
        assert!(notes.iter().any(|n| n["capability"] == "NET_RAW" && n["operation"].as_str().unwrap().contains("ping")), "{hooks:?}: {c}");
        assert!(notes.iter().any(|n| n["capability"] == "NET_BIND_SERVICE"), "{hooks:?}: the bind to port 80: {c}");
    }
    // The empty set, proven: the same program under --cap-drop=ALL still opens its socket and binds.
    let rerun = Command::new("docker").args(["run", "--rm", "--cap-drop=ALL", &img, "python3", "-c", script]).output().unwrap();
    assert!(rerun.status.success(), "under --cap-drop=ALL: {}", String::from_utf8_lossy(&rerun.stderr));
}

/// On the host network with NET_BIND_SERVICE dropped, a bind to port 81 is checked and
/// refused: the profile says it would need it, and no portability note claims the bind went
/// unchecked (the cgroup bind hook sees the port before the kernel's own check).
#[test]
fn a_refused_low_port_bind_would_need_net_bind_service_and_gets_no_portability_note() {
    let _serial = container_lock();
    let (p, _) = record_docker(&["--network", "host", "--cap-drop", "NET_BIND_SERVICE", "IMG", "sh", "-c", "nc -l -p 81; true"]);
    assert_eq!(p["backend"]["network_hooks"], "cgroup", "{}", p["backend"]);
    let c = only_container(&p);
    assert_eq!(c["would_need"], serde_json::json!(["NET_BIND_SERVICE"]), "{c}");
    assert_eq!(c["portability"], serde_json::json!([]), "{c}");
}

#[test]
fn two_containers_from_one_command_get_two_profiles() {
    let _serial = container_lock();
    require_root();
    let img = busybox_image("docker");
    let script = format!(
        "docker run --rm --name capprof-a {img} sh -c 'touch /tmp/f && chown 65534 /tmp/f' && \
         docker run --rm --name capprof-b {img} sh -c 'mknod /tmp/null c 1 3'"
    );
    let (status, p, stderr) = capprof_json(&["record"], &["sh", "-c", &script]);
    assert_eq!(status, 0, "{stderr}");
    let c = containers(&p);
    assert_eq!(c.len(), 2, "{p}");
    let by_name = |n: &str| c.iter().find(|w| w["name"] == n).unwrap_or_else(|| panic!("{n} in {p}"));
    assert_eq!(added(by_name("capprof-a")), ["CHOWN"]);
    assert_eq!(added(by_name("capprof-b")), ["MKNOD"]);
}

#[test]
fn rewritten_docker_run_command_works_and_is_minimal() {
    let _serial = container_lock();
    require_root();
    let argv = docker_run(&["--cap-add", "SYS_ADMIN", "IMG", "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"]);
    let file = scratch("docker-run").join("cmd");
    let out = Command::new(capprof()).args(["record", "-f", "docker-run", "-o", file.to_str().unwrap(), "--"]).args(&argv).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = std::fs::read_to_string(&file).unwrap();
    assert!(line.starts_with("docker run --cap-drop=ALL --cap-add=CHOWN --rm "), "{line}");
    assert!(!line.contains("SYS_ADMIN"), "the old --cap-add is gone: {line}");
    // Pasted into a shell, it works...
    assert!(Command::new("sh").arg("-c").arg(line.trim()).status().unwrap().success(), "{line}");
    // ...and without CHOWN it would not.
    let without = line.replace(" --cap-add=CHOWN", "");
    assert!(!Command::new("sh").arg("-c").arg(without.trim()).status().unwrap().success(), "{without}");
}

#[test]
fn docker_exec_is_the_containers_after_its_exec() {
    let _serial = container_lock();
    require_root();
    let img = busybox_image("docker");
    let name = format!("capprof-exec-{}", std::process::id());
    assert!(Command::new("docker").args(["run", "-d", "--rm", "--name", &name, &img, "sleep", "30"]).output().unwrap().status.success());
    let (status, p, stderr) = capprof_json(&["record"], &["docker", "exec", &name, "chroot", "/", "true"]);
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert_eq!(status, 0, "{stderr}");
    let c = only_container(&p);
    assert_eq!(c["name"], name.as_str());
    assert_eq!(added(c), ["SYS_CHROOT"], "{c}");
}

#[test]
fn verify_and_minimize_rewrite_docker_run() {
    let _serial = container_lock();
    require_root();
    let argv = docker_run(&["IMG", "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, _, stderr) = capprof_json(&["verify", "--caps", "chown"], &refs);
    assert_eq!(status, 0, "{stderr}");
    let (status, p, _) = capprof_json(&["verify", "--caps", "none"], &refs);
    assert_eq!(status, 1);
    let v = &only_container(&p)["verification"];
    assert!(v["evidence"].to_string().contains("CHOWN via chown"), "the refused check is named: {v}");
    let (status, p, stderr) = capprof_json(&["minimize"], &refs);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(only_container(&p)), ["CHOWN"], "{stderr}");
}

#[test]
fn podman_container_is_profiled() {
    let _serial = container_lock();
    require_root();
    let img = busybox_image("podman");
    let argv = [
        "podman", "--cgroup-manager=cgroupfs", "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit",
        "nproc=1000:1000", &img, "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f",
    ];
    let (status, p, stderr) = capprof_json(&["record"], &argv);
    assert_eq!(status, 0, "{stderr}");
    let c = only_container(&p);
    assert_eq!(c["container"]["engine"], "podman");
    assert_eq!(c["container"]["image"], img.as_str());
    assert_eq!(added(c), ["CHOWN"]);
}

/// Kubernetes output validated against the Kubernetes schemas (kubernetes-validate, offline),
/// compose output by docker-compose itself.
#[test]
fn manifests_pass_real_validators() {
    let _serial = container_lock();
    require_root();
    let argv = docker_run(&["--name", "capprof-web", "IMG", "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"]);
    let dir = scratch("manifests");
    let render = |format: &str| -> String {
        let file = dir.join(format);
        let out = Command::new(capprof()).args(["record", "-f", format, "-o", file.to_str().unwrap(), "--"]).args(&argv).output().unwrap();
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::read_to_string(&file).unwrap()
    };
    let validate = |name: &str, yaml: &str| {
        let file = dir.join(name);
        std::fs::write(&file, yaml).unwrap();
        let out = Command::new("kubernetes-validate").args(["--strict", "--quiet"]).arg(&file).output().expect("kubernetes-validate (pip)");
        assert!(out.status.success(), "{name} invalid:\n{yaml}\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    };

    // The securityContext snippet, placed in a Pod.
    let snippet = render("k8s");
    assert!(snippet.contains("- CHOWN"), "{snippet}");
    let indented: String = snippet.lines().filter(|l| !l.starts_with('#')).map(|l| format!("    {l}\n")).collect();
    let pod = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: capprof-web\n    image: busybox\n{indented}");
    validate("pod.yaml", &pod);

    // The patch, merged by container name into a Deployment the way kubectl does.
    let patch = render("k8s-patch");
    assert!(patch.contains("name: capprof-web"), "{patch}");
    let patch_body: String = patch.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    let patch_json = yaml_to_json(&patch_body);
    let container = &patch_json["spec"]["template"]["spec"]["containers"][0];
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": container["name"], "image": "busybox", "securityContext": container["securityContext"]}]}}}
    });
    validate("deployment.json", &deployment.to_string());

    // Compose: docker-compose parses it and keeps the capabilities.
    let compose = render("compose");
    let file = dir.join("docker-compose.yml");
    std::fs::write(&file, format!("version: '3.8'\n{compose}")).unwrap();
    let out = Command::new("docker-compose").arg("-f").arg(&file).arg("config").output().expect("docker-compose");
    assert!(out.status.success(), "compose invalid:\n{compose}\n{}", String::from_utf8_lossy(&out.stderr));
    let normalized = String::from_utf8_lossy(&out.stdout);
    assert!(normalized.contains("cap_add:") && normalized.contains("- CHOWN") && normalized.contains("- ALL"), "{normalized}");
}

/// YAML to JSON through Python (PyYAML ships with kubernetes-validate).
fn yaml_to_json(yaml: &str) -> Value {
    let out = Command::new("python3")
        .args(["-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    serde_json::from_slice(&out.stdout).expect("yaml")
}

#[test]
fn running_container_recorded_for_a_while() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let name = format!("capprof-live-{}", std::process::id());
    let start = Command::new("docker")
        .args(["run", "-d", "--rm", "--name", &name, &img, "sh", "-c", "while true; do chroot / true; sleep 0.1; done"])
        .output()
        .unwrap();
    assert!(start.status.success());
    let file = scratch("live").join("p.json");
    let out = Command::new(capprof())
        .args(["record", "--container", &name, "--duration", "1", "-f", "json", "-o", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let c = only_container(&p);
    assert_eq!(c["name"], name.as_str());
    assert_eq!(added(c), ["SYS_CHROOT"], "{c}");
    // A container that does not exist is a one-line usage error.
    let out = Command::new(capprof()).args(["record", "--container", "capprof-no-such-container", "--duration", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no running container"));
}

#[test]
fn containers_running_before_the_recording_are_left_out() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let name = format!("capprof-bystander-{}", std::process::id());
    let out = Command::new("docker").args(["run", "-d", "--rm", "--name", &name, &img, "sh", "-c", "while true; do chroot / true; sleep 0.1; done"]).output().unwrap();
    assert!(out.status.success());
    let argv = docker_run(&["IMG", "sleep", "0.5"]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, p, stderr) = capprof_json(&["record"], &refs);
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    assert_eq!(status, 0, "{stderr}");
    let c = only_container(&p);
    assert_ne!(c["name"], name.as_str());
    assert_eq!(added(c), Vec::<String>::new());
}

/// What a container changed is read from its overlay layer, not asked of dockerd (whose diff
/// walks every file of the image): the same paths `docker diff` lists, the oracle here.
#[test]
fn changes_read_from_the_overlay_layer_are_dockers_own() {
    require_root();
    let _serial = container_lock();
    let img = busybox_image("docker");
    let name = format!("capprof-diff-{}", std::process::id());
    let script = "touch /etc/state; mkdir -p /var/lib/app/cache; echo x > /var/lib/app/cache/f; rm /bin/ls; ln -s /tmp /srv-link; sleep 60";
    let out = Command::new("docker").args(["run", "-d", "--name", &name, &img, "sh", "-c", script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let r = capprof::attribution::container::ContainerRef { engine: capprof::attribution::container::Engine::Docker, id: id.clone(), cgroup: format!("/docker/{id}") };
    let ours = capprof::attribution::discovery::container_changes(&r);
    let diff = Command::new("docker").args(["diff", &name]).output().unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    // "C /etc", "A /etc/state", "D /bin/ls": the path after the kind.
    let mut docker: Vec<String> = String::from_utf8_lossy(&diff.stdout).lines().filter_map(|l| l.split_once(' ').map(|(_, p)| p.to_string())).collect();
    docker.sort();
    assert!(docker.iter().any(|p| p == "/bin/ls") && docker.iter().any(|p| p == "/var/lib/app/cache/f"), "docker diff: {docker:?}");
    assert_eq!(ours, Some(docker));
}

/// Whether a container exists and runs, as Docker says.
fn running(name: &str) -> bool {
    let out = Command::new("docker").args(["inspect", "-f", "{{.State.Running}}", name]).output().unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "true"
}

/// A shared host: while capprof records, verifies and minimizes a `docker run`, someone else
/// starts a container from another shell. It is recorded (its own profile) but never
/// stopped or removed, and its set never lands on the user's rewritten command.
#[test]
fn a_bystander_container_is_recorded_never_touched_and_never_lends_its_set() {
    let _serial = container_lock();
    require_root();
    let img = busybox_image("docker");
    let argv = docker_run(&["IMG", "sh", "-c", "sleep 2; touch /tmp/f && chown 65534 /tmp/f"]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    for face in [&["record", "-f", "docker-run"][..], &["verify", "--caps", "chown"], &["minimize"]] {
        let name = format!("capprof-bystander-{}-{}", face[0], unique());
        let bystander = {
            let (name, img) = (name.clone(), img.clone());
            std::thread::spawn(move || {
                // Once the command's own container runs (the trial has begun, however long
                // capprof took to load its programs), someone starts another.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while std::time::Instant::now() < deadline {
                    let ps = Command::new("docker").args(["ps", "-q", "--filter", &format!("ancestor={img}")]).output().unwrap();
                    if !ps.stdout.is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let out = Command::new("docker").args(["run", "-d", "--name", &name, &img, "sh", "-c", "while true; do mknod /tmp/n$$ c 1 3; rm -f /tmp/n$$; sleep 0.2; done"]).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            })
        };
        let out_file = scratch("bystander").join("out");
        let out = Command::new(capprof()).args(face).args(["-o", out_file.to_str().unwrap(), "--"]).args(&refs).output().unwrap();
        bystander.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let alive = running(&name);
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        assert_eq!(out.status.code(), Some(0), "{face:?}: {stderr}");
        assert!(alive, "{face:?} stopped or removed a container its command did not start: {stderr}");
        assert!(stderr.contains(&format!("container {name}: not started by this command")), "{face:?} says it left it alone: {stderr}");
        if face[0] == "record" {
            // The rewrite carries the set of the container the command started.
            let line = std::fs::read_to_string(&out_file).unwrap();
            assert!(line.starts_with("docker run --cap-drop=ALL --cap-add=CHOWN --rm "), "{line}");
            assert!(!line.contains("MKNOD"), "the bystander's set: {line}");
        }
    }
}

/// A container that tries to raise its memlock limit (SYS_RESOURCE, refused: Docker does not
/// grant it, and this host's bounding set lacks it, so runc could not apply it) and goes on:
/// minimize starts from what was used and granted, never asks the engine for what cannot be
/// granted, and completes.
#[test]
fn minimize_completes_when_the_unrestricted_run_was_refused_what_cannot_be_granted() {
    let _serial = container_lock();
    require_root();
    let argv = docker_run(&["IMG", "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f; ulimit -H -l unlimited 2>/dev/null; true"]);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, p, stderr) = capprof_json(&["record"], &refs);
    assert_eq!(status, 0, "{stderr}");
    let c = only_container(&p);
    assert!(c["would_need"].as_array().unwrap().iter().any(|x| x == "SYS_RESOURCE"), "the refused raise: {c}");
    let (status, p, stderr) = capprof_json(&["minimize"], &refs);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(added(only_container(&p)), ["CHOWN"], "{stderr}");
    let bounding = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = u64::from_str_radix(bounding.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim(), 16).unwrap();
    if bounding & (1 << 24) == 0 {
        assert!(stderr.contains("not grantable here: SYS_RESOURCE"), "{stderr}");
    }
}

/// In Docker's network namespace ping uses an ICMP datagram socket and makes no NET_RAW
/// check, but its file capability makes the exec itself fail without NET_RAW in the bounding
/// set: the profile keeps it, and the rewritten command starts.
#[test]
fn a_file_capability_program_in_a_container_keeps_its_capability() {
    let _serial = container_lock();
    require_root();
    let img = ping_image();
    let argv = ["docker", "run", "--rm", "--network", "none", &img, "ping", "-c1", "-W2", "127.0.0.1"];
    let (status, p, stderr) = capprof_json(&["record"], &argv);
    assert_eq!(status, 0, "{stderr}");
    let c = only_container(&p);
    assert_eq!(added(c), ["NET_RAW"], "{c}");
    let exec = c["checks"].as_array().unwrap().iter().find(|k| k["capability"] == "NET_RAW").unwrap();
    assert_eq!(exec["site"], "bprm_caps_from_vfs_caps", "the exec's need, no NET_RAW check: {exec}");
    assert!(exec["programs"].to_string().contains("/usr/bin/ping"), "the program is named: {exec}");
    let file = scratch("ping-run").join("cmd");
    let out = Command::new(capprof()).args(["record", "-f", "docker-run", "-o", file.to_str().unwrap(), "--"]).args(argv).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = std::fs::read_to_string(&file).unwrap();
    assert!(line.starts_with("docker run --cap-drop=ALL --cap-add=NET_RAW "), "{line}");
    assert!(Command::new("sh").arg("-c").arg(line.trim()).status().unwrap().success(), "the rewritten command starts: {line}");
    let without = line.replace(" --cap-add=NET_RAW", "");
    assert!(!Command::new("sh").arg("-c").arg(without.trim()).status().unwrap().success(), "{without}");
}

/// A real container of kinds users run (Debian bookworm from Debian's packages): its set found
/// by the engine itself (`--cap-drop=ALL --cap-add=...`: the set works, and fails without each
/// of its capabilities), then capprof's record (zero missing), record --prove and minimize
/// (exact). One-shot containers test their own result in the command (owners as uid and gid,
/// modes); servers are judged by `check` (a request, and the uid and gid it serves as).
struct ContainerCase<'a> {
    /// `docker run` options and the image's command, after `docker run --rm`.
    args: &'a [&'a str],
    check: Option<&'a str>,
    expected: &'a [&'a str],
}

/// The engine runs the case under exactly `caps`: does it work?
fn engine_works(c: &ContainerCase, caps: &[&str]) -> bool {
    let mut cmd = Command::new("docker");
    let name = format!("capprof-oracle-{}", unique());
    cmd.args(["run", "--name", &name, "--cap-drop=ALL"]);
    for cap in caps {
        cmd.arg(format!("--cap-add={cap}"));
    }
    let works = match c.check {
        None => cmd.arg("--rm").args(c.args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().unwrap().success(),
        Some(check) => {
            assert!(cmd.arg("-d").args(c.args).output().unwrap().status.success());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut passed = false;
            while !passed && std::time::Instant::now() < deadline {
                passed = Command::new("sh").args(["-c", check]).status().unwrap().success();
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            passed
        }
    };
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    works
}

fn container_case(c: ContainerCase) {
    require_root();
    assert!(engine_works(&c, c.expected), "the engine's oracle: {:?} works under {:?}", c.args, c.expected);
    for cap in c.expected {
        let without: Vec<&str> = c.expected.iter().copied().filter(|x| x != cap).collect();
        assert!(!engine_works(&c, &without), "the engine's oracle: {:?} fails without {cap}", c.args);
    }
    let mut argv = vec!["docker", "run", "--rm"];
    argv.extend(c.args);
    let judged: Vec<&str> = c.check.map(|k| vec!["--check", k, "--timeout", "20"]).unwrap_or_default();
    let run = |face: &[&str]| -> Vec<String> {
        let mut args = face.to_vec();
        args.extend(&judged);
        let (status, p, stderr) = capprof_json(&args, &argv);
        assert_eq!(status, 0, "{face:?} {argv:?}: {stderr}");
        added(only_container(&p))
    };
    let recorded = run(&["record"]);
    let missing: Vec<&&str> = c.expected.iter().filter(|e| !recorded.iter().any(|r| r == *e)).collect();
    assert!(missing.is_empty(), "record dropped {missing:?} of {:?}: {recorded:?}", c.args);
    let proven = run(&["record", "--prove"]);
    assert_eq!(proven, c.expected, "record --prove {:?} (record: {recorded:?})", c.args);
    let minimal = run(&["minimize"]);
    assert_eq!(minimal, c.expected, "minimize {:?}", c.args);
    eprintln!("ACCURACY container {:?} record={recorded:?} prove={proven:?} minimize={minimal:?} expected={:?}", c.args.last(), c.expected);
}

/// A restore that keeps owners and set-gid bits (tar as root), checked in the container.
#[test]
fn a_restore_keeping_owners_in_a_debian_container() {
    let _serial = container_lock();
    let img = debian_python_image();
    let script = "set -e; mkdir -p /src/d; echo x > /src/d/f; chown 1234:2345 /src/d /src/d/f; chmod 2750 /src/d; chmod 2755 /src/d/f; \
                  tar -C /src -cpf /tmp/a.tar d; rm -rf /src/d; mkdir /dst; tar --same-owner -xpf /tmp/a.tar -C /dst; \
                  [ \"$(stat -c %u:%g:%a /dst/d /dst/d/f | tr '\\n' ' ')\" = '1234:2345:2750 1234:2345:2755 ' ]";
    container_case(ContainerCase { args: &["--network", "none", &img, "sh", "-c", script], check: None, expected: &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"] });
}

/// A CI step that builds and installs a package with dpkg, checked by dpkg and the owner of
/// what it installed.
#[test]
fn a_package_installed_by_dpkg_in_a_debian_container() {
    let _serial = container_lock();
    let img = debian_python_image();
    let script = "set -e; mkdir -p /p/DEBIAN /p/usr/local/bin; printf 'Package: capprof-hello\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@t>\\nDescription: t\\n' > /p/DEBIAN/control; \
                  printf '#!/bin/sh\\necho hello\\n' > /p/usr/local/bin/capprof-hello; chmod 755 /p/usr/local/bin/capprof-hello; \
                  dpkg-deb --root-owner-group -b /p /tmp/h.deb >/dev/null; dpkg -i /tmp/h.deb >/dev/null; \
                  dpkg -s capprof-hello | grep -q 'Status: install ok installed'; [ \"$(stat -c %u:%g:%a /usr/local/bin/capprof-hello)\" = 0:0:755 ]; [ \"$(capprof-hello)\" = hello ]";
    container_case(ContainerCase { args: &["--network", "none", &img, "sh", "-c", script], check: None, expected: &[] });
}

/// A server whose entrypoint prepares its directory as root and drops to its user: judged by
/// a request and by the uid and gid the server really runs as.
#[test]
fn a_server_that_prepares_as_root_and_drops_to_its_user() {
    let _serial = container_lock();
    let img = debian_python_image();
    let entry = "mkdir -p /srv/www && echo hi > /srv/www/index.html && chown -R nobody:nogroup /srv/www && \
                 exec setpriv --reuid=nobody --regid=nogroup --clear-groups python3 -m http.server 8099 --bind 127.0.0.1 --directory /srv/www";
    let check = "[ \"$(curl -fsS -m 5 http://127.0.0.1:8099/index.html)\" = hi ] && \
                 p=$(for q in $(pgrep -x python3); do tr '\\0' ' ' < /proc/$q/cmdline | grep -q 'http.server 8099' && echo $q; done | head -1) && [ -n \"$p\" ] && \
                 grep -q '^Uid:[[:space:]]*65534[[:space:]]*65534[[:space:]]*65534[[:space:]]*65534$' /proc/$p/status && \
                 grep -q '^Gid:[[:space:]]*65534[[:space:]]*65534[[:space:]]*65534[[:space:]]*65534$' /proc/$p/status";
    container_case(ContainerCase { args: &["--network", "host", &img, "sh", "-c", entry], check: Some(check), expected: &["CHOWN", "SETGID", "SETUID"] });
}
