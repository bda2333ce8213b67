//! The same workloads under every engine and runtime this machine has: Docker, podman,
//! containerd (`ctr`, with the kubelet's cgroup layouts and CRI annotations), and the OCI
//! runtimes runc and crun run directly on a bundle. Each must give the same minimal set, the
//! runtime's own set-up must never count, and containerd's containers must carry their
//! Kubernetes names.

use std::path::{Path, PathBuf};
use std::process::Command;

use capprof_tests::*;
use serde_json::Value;

/// What each scenario runs in the container, and the set it needs (an oracle written from
/// the kernel's rules, checked under every engine: chown(2) of a file to another user needs
/// CHOWN, chroot(2) SYS_CHROOT, sleeping nothing).
const SCENARIOS: [(&str, &str, &[&str]); 3] = [
    ("sleep", "sleep 0.2", &[]),
    ("chown", "touch /tmp/f && chown 65534 /tmp/f", &["CHOWN"]),
    ("chroot", "chroot / true", &["SYS_CHROOT"]),
];

/// Docker's default set, granted to the bare runtimes' bundles too.
const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/// The one container a recording of `argv` found.
fn record_container(argv: &[String]) -> Value {
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, profile, stderr) = capprof_json(&["record", "--containers", "always"], &args);
    assert_eq!(status, 0, "record {argv:?}: {stderr}");
    let found = containers(&profile);
    assert_eq!(found.len(), 1, "one container in the recording of {argv:?}: {profile}");
    found[0].clone()
}

/// An OCI bundle of the busybox root file system running `cmd`, in cgroup `/capprof-oci/ID`,
/// with Docker's default capabilities, on the host's network.
fn bundle(id: &str, cmd: &str) -> PathBuf {
    let dir = scratch("bundle").join(id);
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static (/bin/busybox)");
    for applet in ["sh", "sleep", "touch", "chown", "chroot", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    assert!(Command::new("crun").arg("spec").current_dir(&dir).status().expect("crun (Debian's crun)").success());
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", cmd]);
    let caps = serde_json::json!(DEFAULT_CAPS);
    for set in ["bounding", "effective", "permitted"] {
        spec["process"]["capabilities"][set] = caps.clone();
    }
    spec["root"]["readonly"] = false.into();
    spec["linux"]["cgroupsPath"] = format!("/capprof-oci/{id}").into();
    // No resources: on this machine's hybrid hierarchy the unified one has no controllers,
    // and crun's device filter needs a memlock limit only CAP_SYS_RESOURCE raises.
    spec["linux"].as_object_mut().unwrap().remove("resources");
    spec["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "network");
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    dir
}

/// Whether this machine mounts cgroup v1 controllers beside the unified hierarchy.
fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified").is_dir()
}

/// `runc run` or `crun run` of a bundle. crun refuses hybrid cgroups: there it runs in a
/// mount namespace whose /sys/fs/cgroup is the unified hierarchy (the one capprof follows),
/// which is what a pure cgroup v2 host gives it.
fn oci_run(runtime: &str, cmd: &str) -> Vec<String> {
    let id = hex_id();
    let dir = bundle(&id, cmd);
    let run = format!("exec {runtime} run --bundle {} {id}", dir.display());
    let script = if runtime == "crun" && hybrid_cgroups() { format!("mount --make-rprivate / && mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && {run}") } else { run };
    ["unshare", "-m", "sh", "-c", &script].iter().map(|s| s.to_string()).collect()
}

fn engine_run(engine: &str, cmd: &str) -> Vec<String> {
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    let mut argv = match engine {
        "docker" => words(&format!("docker run --rm --network none {}", busybox_image("docker"))),
        "podman" => words(&format!(
            "podman --cgroup-manager=cgroupfs run --rm --runtime runc --network none --ulimit nofile=1024:1024 --ulimit nproc=1000:1000 {}",
            busybox_image("podman")
        )),
        "containerd" => return ctr_run(&containerd_image(), false, "cart-6b7f9d5c4d-q8w7z", "0c5c1234-aaaa-bbbb-cccc-1234567890ab", "app", cmd),
        "runc" | "crun" => return oci_run(engine, cmd),
        other => panic!("{other}"),
    };
    argv.extend(["sh".to_string(), "-c".to_string(), cmd.to_string()]);
    argv
}

/// The three scenarios under the five engines and runtimes: one set each, the oracle's.
#[test]
fn the_same_workloads_get_the_same_sets_on_every_engine_and_runtime() {
    require_root();
    let _c = container_lock();
    let mut table = Vec::new();
    for engine in ["docker", "podman", "containerd", "runc", "crun"] {
        for (name, cmd, expect) in SCENARIOS {
            let w = record_container(&engine_run(engine, cmd));
            let got = added(&w);
            table.push(format!("{engine:10} {name:7} {got:?}"));
            assert_eq!(got, expect.to_vec(), "{engine} {name}: {w}");
            let runtime: Vec<&Value> = w["checks"].as_array().unwrap().iter().filter(|c| c["classification"] == "runtime").collect();
            assert!(!runtime.is_empty(), "{engine} {name}: the runtime's set-up is seen (and set apart): {w}");
            let expected_engine = match engine {
                "runc" | "crun" => "oci",
                e => e,
            };
            assert_eq!(w["container"]["engine"], expected_engine, "{w}");
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// The Security Profiles Operator's example profile for `sleep` under crun lists SYS_ADMIN,
/// SETPCAP and MKNOD: crun's own set-up (mounts, device nodes, capset). capprof sees crun
/// make those checks in the container's cgroup, before the container's exec, and lists none.
#[test]
fn cruns_set_up_never_counts() {
    require_root();
    let _c = container_lock();
    let w = record_container(&oci_run("crun", "sleep 0.2"));
    assert!(added(&w).is_empty(), "{w}");
    let checks = w["checks"].as_array().unwrap();
    for cap in ["SYS_ADMIN", "SETPCAP"] {
        let seen: Vec<&Value> = checks.iter().filter(|c| c["capability"] == cap).collect();
        assert!(!seen.is_empty(), "crun's set-up checks {cap}: {w}");
        assert!(seen.iter().all(|c| c["classification"] != "needed"), "{cap}: {seen:?}");
        assert!(seen.iter().any(|c| c["classification"] == "runtime"), "{cap} as crun's set-up: {seen:?}");
    }
    // The granted set is the bundle's bounding set, read from crun's copy of the config.
    assert_eq!(w["granted"].as_array().map(Vec::len), Some(DEFAULT_CAPS.len()), "{w}");
}

/// containerd through its own shim and runc, with both of the kubelet's cgroup layouts: each
/// container is named as Kubernetes names it (namespace, pod, container) and granted what
/// its bundle says.
#[test]
fn containerd_containers_carry_their_kubernetes_names() {
    require_root();
    let _c = container_lock();
    let image = containerd_image();
    for systemd_layout in [false, true] {
        let argv = ctr_run(&image, systemd_layout, "cart-6b7f9d5c4d-q8w7z", "0c5c1234-aaaa-bbbb-cccc-1234567890ab", "app", "touch /tmp/f && chown 65534 /tmp/f");
        let w = record_container(&argv);
        assert_eq!(added(&w), ["CHOWN"], "{w}");
        let c = &w["container"];
        assert_eq!(c["engine"], "containerd", "{w}");
        assert_eq!(c["name"], "app", "{w}");
        assert_eq!(c["image"], image.as_str(), "{w}");
        assert_eq!(c["labels"]["io.kubernetes.pod.namespace"], "shop", "{w}");
        assert_eq!(c["labels"]["io.kubernetes.pod.name"], "cart-6b7f9d5c4d-q8w7z", "{w}");
        assert_eq!(c["labels"]["io.kubernetes.pod.uid"], "0c5c1234-aaaa-bbbb-cccc-1234567890ab", "{w}");
        let cgroup = w["cgroup"].as_str().unwrap();
        assert!(cgroup.starts_with(if systemd_layout { "/kubepods.slice/" } else { "/kubepods/besteffort/pod" }), "{cgroup}");
        assert_eq!(w["granted"].as_array().map(Vec::len), Some(14), "containerd's default set, from the bundle: {w}");
    }
}

/// `ctr run IMAGE NAME` with neither a 64-hex id nor the kubelet's layout: containerd puts it
/// in `/NAMESPACE/NAME`, and capprof finds it by containerd's own task directory.
#[test]
fn a_named_ctr_container_is_found_by_what_containerd_says() {
    require_root();
    let _c = container_lock();
    let image = containerd_image();
    let name = format!("capprof-named-{}", std::process::id());
    let argv: Vec<String> = ["ctr", "-n", "k8s.io", "run", "--rm", &image, &name, "sh", "-c", "touch /tmp/f && chown 65534 /tmp/f"].iter().map(|s| s.to_string()).collect();
    let c = record_container(&argv);
    assert_eq!(c["container"]["engine"], "containerd", "{c}");
    assert_eq!(c["container"]["id"], name.as_str(), "{c}");
    assert_eq!(c["cgroup"], format!("/k8s.io/{name}").as_str(), "{c}");
    assert_eq!(added(&c), ["CHOWN"], "{c}");
    // Re-runs restrict the container (ctr's own --cap-drop/--cap-add), not the ctr client.
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (status, p, stderr) = capprof_json(&["verify", "--caps", "none"], &args);
    assert_eq!(status, 1, "the container's chown is refused without CHOWN: {stderr}");
    assert!(containers(&p).first().is_some_and(|c| c["verification"]["evidence"].to_string().contains("CHOWN")), "{p}");
    let (status, p, stderr) = capprof_json(&["minimize"], &args);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(containers(&p).first().map(|c| added(c)), Some(vec!["CHOWN".to_string()]), "{stderr}");
}
