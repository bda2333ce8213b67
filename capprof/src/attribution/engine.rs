//! Container engines' own view of a container: Docker's API on its unix socket (no client
//! library needed for two GET requests), podman's CLI.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;

use super::container::{ContainerInfo, ContainerRef, Engine, Source};

/// Labels worth keeping: they name workloads across restarts and replicas.
const LABELS: [&str; 7] = [
    super::ownership::TRIAL_LABEL,
    "com.docker.compose.project",
    "com.docker.compose.service",
    "io.kubernetes.pod.namespace",
    "io.kubernetes.pod.name",
    "io.kubernetes.container.name",
    "io.kubernetes.pod.uid",
];

pub fn inspect(r: &ContainerRef) -> Option<ContainerInfo> {
    let v = match r.engine {
        Engine::Docker => docker_get(&format!("/containers/{}/json", r.id)),
        Engine::Podman => podman_inspect(&r.id),
        Engine::Containerd | Engine::CriO | Engine::Oci => return oci_annotations(r),
        Engine::Unknown => None,
    };
    match v {
        Some(v) => Some(parse_inspect(r, &v)),
        // Gone already (a `--rm` container that did its work in milliseconds): Docker announced
        // it when it was created.
        None => announced(&r.id),
    }
}

type Announced = Arc<Mutex<HashMap<String, ContainerInfo>>>;
static ANNOUNCED: OnceLock<Announced> = OnceLock::new();
const ANNOUNCED_MAX: usize = 4096;

/// Starts (once per process) following Docker's container create events, so containers that
/// are gone before they can be inspected still have a name, an image and labels.
pub fn follow_docker_events() {
    let map = ANNOUNCED.get_or_init(|| Arc::new(Mutex::new(HashMap::new()))).clone();
    static STARTED: OnceLock<()> = OnceLock::new();
    if STARTED.set(()).is_err() {
        return;
    }
    let Ok(mut s) = UnixStream::connect(docker_socket()) else { return };
    // {"type":["container"],"event":["create"]}
    let filter = "%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A%5B%22create%22%5D%7D";
    if write!(s, "GET /v1.41/events?filters={filter} HTTP/1.0\r\nHost: docker\r\n\r\n").is_err() {
        return;
    }
    std::thread::spawn(move || {
        use std::io::BufRead;
        // HTTP/1.0: no chunking, one JSON object per line until the engine closes.
        for line in std::io::BufReader::new(s).lines().map_while(|l| l.ok()) {
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            let attrs = &v["Actor"]["Attributes"];
            let Some(id) = v["Actor"]["ID"].as_str().or(v["id"].as_str()) else { continue };
            let labels = attrs
                .as_object()
                .map(|m| m.iter().filter(|(k, _)| LABELS.contains(&k.as_str())).filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
                .unwrap_or_default();
            let info = ContainerInfo {
                engine: Engine::Docker,
                id: id.to_string(),
                name: attrs["name"].as_str().unwrap_or_default().to_string(),
                image: attrs["image"].as_str().unwrap_or_default().to_string(),
                labels,
                source: Source::Engine,
                ..ContainerInfo::default()
            };
            let mut m = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if m.len() >= ANNOUNCED_MAX {
                m.clear();
            }
            m.insert(id.to_string(), info);
        }
    });
}

fn announced(id: &str) -> Option<ContainerInfo> {
    ANNOUNCED.get()?.lock().ok()?.get(id).cloned()
}

/// Directories a program named `comm` is looked for in, inside an image.
const BIN_DIRS: [&str; 6] = ["usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"];

/// The file capabilities a program of a Docker image would demand at exec (see
/// [`crate::collector::Sighting::file_caps`]), found by its name in the image's layers: for a
/// process gone before its executable could be read (ping -c1 lives a millisecond), whose
/// container may be gone too. Docker's overlay2 driver only; the topmost layer holding the
/// name wins. The program's path in the image and what it demands.
pub fn image_program_file_caps(image: &str, comm: &str) -> Option<(String, u64)> {
    if image.is_empty() || comm.is_empty() || comm.contains('/') {
        return None;
    }
    let v = docker_get(&format!("/images/{image}/json"))?;
    let data = &v["GraphDriver"]["Data"];
    let layers: Vec<&str> = data["UpperDir"].as_str().into_iter().chain(data["LowerDir"].as_str().into_iter().flat_map(|l| l.split(':'))).collect();
    for layer in layers {
        for dir in BIN_DIRS {
            let path = std::path::Path::new(layer).join(dir).join(comm);
            if std::fs::symlink_metadata(&path).is_ok() {
                return crate::collector::exec_file_caps(&path.display().to_string()).map(|caps| (format!("/{dir}/{comm}"), caps));
            }
        }
    }
    None
}

/// Paths changed in the container's writable layer (Docker only).
pub fn changes(r: &ContainerRef) -> Option<Vec<String>> {
    if r.engine != Engine::Docker {
        return None;
    }
    if let Some(list) = upper_dir(r).and_then(|dir| overlay_changes(&dir)) {
        return Some(list);
    }
    let v = docker_get(&format!("/containers/{}/changes", r.id))?;
    let list = v.as_array().map(|a| a.iter().filter_map(|c| c["Path"].as_str().map(str::to_string)).collect()).unwrap_or_default();
    Some(list)
}

/// The container's writable overlay layer (Docker's overlay2 driver): what it holds is
/// exactly what the container changed. Asking the engine instead costs it a walk of every
/// file of the image when overlayfs cannot give the diff itself (`redirect_dir` on: a Debian
/// image, a third of a CPU at one ask per 5 s; BENCHMARKS.md).
fn upper_dir(r: &ContainerRef) -> Option<std::path::PathBuf> {
    static UPPER: OnceLock<Mutex<HashMap<String, std::path::PathBuf>>> = OnceLock::new();
    let cache = UPPER.get_or_init(Default::default);
    if let Some(dir) = cache.lock().ok()?.get(&r.id) {
        return Some(dir.clone());
    }
    let v = docker_get(&format!("/containers/{}/json", r.id))?;
    if v["GraphDriver"]["Name"].as_str() != Some("overlay2") {
        return None;
    }
    let dir = std::path::PathBuf::from(v["GraphDriver"]["Data"]["UpperDir"].as_str()?);
    let mut cache = cache.lock().ok()?;
    // Bounded: ids of containers long gone are of no use.
    if cache.len() > 4096 {
        cache.clear();
    }
    cache.insert(r.id.clone(), dir.clone());
    Some(dir)
}

/// Every path in an overlay upper directory, as the container sees it: files and
/// directories it wrote (a directory holding a written file is there too, as Docker lists
/// it "changed"), and whiteouts (character devices 0:0) for what it deleted. None when the
/// directory cannot be read (the container is gone: ask the engine, which says so).
pub(crate) fn overlay_changes(upper: &std::path::Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(upper.to_path_buf(), String::new())];
    let mut first = true;
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) if first => return None,
            Err(_) => continue,
        };
        first = false;
        for e in entries.flatten() {
            let path = format!("{rel}/{}", e.file_name().to_string_lossy());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), path.clone()));
            }
            out.push(path);
        }
    }
    out.sort();
    Some(out)
}

pub(crate) fn parse_inspect(r: &ContainerRef, v: &Value) -> ContainerInfo {
    let s = |p: &[&str]| -> String {
        let mut cur = v;
        for k in p {
            cur = &cur[*k];
        }
        cur.as_str().unwrap_or_default().to_string()
    };
    let labels = v["Config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| LABELS.contains(&k.as_str()))
                .filter_map(|(k, val)| val.as_str().map(|val| (k.clone(), val.to_string())))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    let image = [s(&["Config", "Image"]), s(&["ImageName"])].into_iter().find(|i| !i.is_empty()).unwrap_or_default();
    ContainerInfo {
        engine: r.engine,
        id: r.id.clone(),
        name: s(&["Name"]).trim_start_matches('/').to_string(),
        image,
        user: s(&["Config", "User"]),
        network_mode: s(&["HostConfig", "NetworkMode"]),
        privileged: v["HostConfig"]["Privileged"].as_bool().unwrap_or(false),
        read_only_rootfs: v["HostConfig"]["ReadonlyRootfs"].as_bool().unwrap_or(false),
        cap_add: strings(&v["HostConfig"]["CapAdd"]),
        cap_drop: strings(&v["HostConfig"]["CapDrop"]),
        labels,
        changed_paths: None,
        source: Source::Engine,
        started_by_command: false,
    }
}

use super::container::CONTAINERD_TASKS;

/// Where a container's OCI bundle (`config.json`) is: its annotations name the pod, its
/// namespace and the container; its process says the bounding set and the user.
fn bundle_config(r: &ContainerRef) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let exists = |p: PathBuf| p.is_file().then_some(p);
    match r.engine {
        Engine::Containerd => std::fs::read_dir(CONTAINERD_TASKS).ok()?.flatten().find_map(|ns| exists(ns.path().join(&r.id).join("config.json"))),
        Engine::CriO => exists(PathBuf::from(format!("/run/containers/storage/overlay-containers/{}/userdata/config.json", r.id))),
        // crun keeps a copy of the config; runc keeps the bundle's path as a label.
        Engine::Oci => exists(PathBuf::from(format!("/run/crun/{}/config.json", r.id))).or_else(|| {
            let state: Value = serde_json::from_str(&std::fs::read_to_string(format!("/run/runc/{}/state.json", r.id)).ok()?).ok()?;
            let bundle = state["config"]["labels"].as_array()?.iter().find_map(|l| l.as_str()?.strip_prefix("bundle="))?.to_string();
            exists(PathBuf::from(bundle).join("config.json"))
        }),
        _ => None,
    }
}

/// containerd (CRI), CRI-O and bare OCI runtimes: no API call needed, the bundle says who it is.
fn oci_annotations(r: &ContainerRef) -> Option<ContainerInfo> {
    let text = std::fs::read_to_string(bundle_config(r)?).ok()?;
    Some(from_annotations(r, &serde_json::from_str(&text).ok()?))
}

pub(crate) fn from_annotations(r: &ContainerRef, config: &Value) -> ContainerInfo {
    let a = &config["annotations"];
    let get = |keys: &[&str]| keys.iter().find_map(|k| a[*k].as_str()).unwrap_or_default().to_string();
    let mut labels = HashMap::new();
    for (label, keys) in [
        ("io.kubernetes.pod.namespace", ["io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace"]),
        ("io.kubernetes.pod.name", ["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
        ("io.kubernetes.container.name", ["io.kubernetes.cri.container-name", "io.kubernetes.container.name"]),
        ("io.kubernetes.pod.uid", ["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"]),
    ] {
        let v = get(&keys);
        if !v.is_empty() {
            labels.insert(label.to_string(), v);
        }
    }
    // The bundle's bounding set is exactly what the container was granted: said as "drop
    // ALL, add these" so no engine default has to be assumed.
    let bounding = config["process"]["capabilities"]["bounding"].as_array();
    let cap_add = bounding.map(|b| b.iter().filter_map(|c| c.as_str()).map(|c| c.trim_start_matches("CAP_").to_string()).collect()).unwrap_or_default();
    let user = config["process"]["user"]["uid"].as_u64().filter(|uid| *uid != 0).map(|uid| uid.to_string()).unwrap_or_default();
    ContainerInfo {
        engine: r.engine,
        id: r.id.clone(),
        name: labels.get("io.kubernetes.container.name").cloned().unwrap_or_else(|| r.id.chars().take(12).collect()),
        image: get(&["io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName"]),
        user,
        cap_drop: if bounding.is_some() { vec!["ALL".into()] } else { vec![] },
        cap_add,
        labels,
        source: Source::Engine,
        ..ContainerInfo::default()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

fn docker_socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into())
}

/// One GET on Docker's API, the body parsed when the answer is 200.
pub fn docker_get(path: &str) -> Option<Value> {
    match docker_request("GET", path)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// One request on Docker's API (HTTP/1.0: the engine closes the connection after the body):
/// the status code and the body; None when the engine does not answer.
pub fn docker_request(method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = UnixStream::connect(docker_socket()).ok()?;
    // Reads answer at once; a forced removal may take the engine a while.
    s.set_read_timeout(Some(Duration::from_secs(if method == "GET" { 3 } else { 15 }))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "{method} /v1.41{path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

fn podman_inspect(id: &str) -> Option<Value> {
    let out = std::process::Command::new("podman").args(["container", "inspect", id]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array().and_then(|a| a.first().cloned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlay_changes_lists_what_the_layer_holds() {
        let dir = std::env::temp_dir().join(format!("capprof-upper-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/x")).unwrap();
        std::fs::write(dir.join("etc/state"), b"1").unwrap();
        let got = super::overlay_changes(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, ["/etc", "/etc/state", "/var", "/var/lib", "/var/lib/x"]);
        assert_eq!(super::overlay_changes(std::path::Path::new("/nonexistent/capprof")), None);
    }

    use super::*;

    #[test]
    fn kubernetes_names_from_oci_annotations() {
        let config: Value = serde_json::from_str(
            r#"{"annotations":{"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-name":"cart-6b7f9d5c4d-q8w7z",
               "io.kubernetes.cri.container-name":"app","io.kubernetes.cri.image-name":"registry/cart:1.2"}}"#,
        )
        .unwrap();
        let r = ContainerRef { engine: Engine::Containerd, id: "ab".repeat(32), cgroup: "/kubepods/x".into() };
        let i = from_annotations(&r, &config);
        assert_eq!((i.name.as_str(), i.image.as_str()), ("app", "registry/cart:1.2"));
        let id = crate::attribution::identity::of_container(&i);
        assert_eq!(id.id, "k8s:shop/cart/app");
        assert_eq!(i.granted().map(|s| s.iter().count()), Some(14), "no bounding set in the bundle: containerd's default");
    }

    #[test]
    fn the_bundles_bounding_set_is_what_was_granted() {
        let config: Value = serde_json::from_str(r#"{"process":{"user":{"uid":65534},"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"]}}}"#).unwrap();
        for engine in [Engine::Containerd, Engine::CriO, Engine::Oci] {
            let r = ContainerRef { engine, id: "ab".repeat(32), cgroup: "/x".into() };
            let i = from_annotations(&r, &config);
            let names: Vec<&str> = i.granted().unwrap().iter().map(|c| c.name()).collect();
            assert_eq!(names, ["CHOWN", "KILL"], "{engine}");
            assert_eq!(i.user, "65534");
        }
    }

    #[test]
    fn parses_docker_inspect() {
        let v: Value = serde_json::from_str(
            r#"{"Name":"/web","Config":{"Image":"nginx:1","User":"","Labels":{"com.docker.compose.service":"web","other":"x"}},
               "HostConfig":{"NetworkMode":"host","Privileged":false,"ReadonlyRootfs":true}}"#,
        )
        .unwrap();
        let r = ContainerRef { engine: Engine::Docker, id: "ab".repeat(32), cgroup: "/docker/x".into() };
        let i = parse_inspect(&r, &v);
        assert_eq!((i.name.as_str(), i.image.as_str(), i.network_mode.as_str()), ("web", "nginx:1", "host"));
        assert!(i.read_only_rootfs && !i.privileged);
        assert_eq!(i.labels.len(), 1);
    }
}
