//! Containers: which cgroup paths are containers (Docker cgroupfs and systemd drivers,
//! containerd/CRI, CRI-O, podman), and what their engine says about them (name, image, user,
//! labels, network mode, root filesystem changes), asked while they still exist.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};


/// The container engine that runs a container (from its cgroup's name).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Docker,
    Podman,
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    /// An OCI runtime's container with no engine capprof knows by name (`runc run`, `crun
    /// run`, or an engine that names cgroups by bare container id).
    Oci,
    /// Not known (a profile of another capprof, or nothing was said).
    #[default]
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Docker => "docker",
            Self::Podman => "podman",
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Oci => "oci",
            Self::Unknown => "unknown",
        })
    }
}

/// Where what is known of a container came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The engine answered (inspect, OCI annotations, its event stream).
    Engine,
    /// Its cgroup's path only: the engine could not be asked.
    #[default]
    #[serde(other)]
    Cgroup,
}

/// A container named by its cgroup path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    pub engine: Engine,
    pub id: String,
    /// The container's cgroup (its processes may sit in sub-cgroups of it).
    pub cgroup: String,
}

/// What is known about a container.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerInfo {
    pub engine: Engine,
    pub id: String,
    pub name: String,
    pub image: String,
    /// `Config.User`; empty means the image's default (root unless the image says otherwise).
    pub user: String,
    pub network_mode: String,
    pub privileged: bool,
    pub read_only_rootfs: bool,
    /// `--cap-add`/`--cap-drop` it was started with (Docker's names), for its granted set.
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Labels capprof uses: Compose project/service, Kubernetes namespace/pod/container.
    pub labels: HashMap<String, String>,
    /// Paths changed in the container's writable layer, when the engine could still say.
    pub changed_paths: Option<Vec<String>>,
    /// Where this came from: the engine, or the cgroup's path only.
    pub source: Source,
    /// The recorded command started it (see [`super::ownership`]): the container a
    /// `-f docker-run` rewrite is about, and the only kind a trial stops.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started_by_command: bool,
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ContainerInfo {
    /// What the engine granted: its default set adjusted by `--cap-add`/`--cap-drop`
    /// (everything when privileged). None when the engine's default is not known.
    pub fn granted(&self) -> Option<crate::capability::CapSet> {
        use crate::capability::{CapSet, DOCKER_DEFAULT, PODMAN_DEFAULT};
        if self.privileged {
            return Some(CapSet::full());
        }
        let drops_all = self.cap_drop.iter().any(|d| d.eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case("CAP_ALL"));
        let mut set: CapSet = match self.engine {
            Engine::Docker | Engine::Containerd => DOCKER_DEFAULT.into_iter().collect(),
            Engine::Podman => PODMAN_DEFAULT.into_iter().collect(),
            // An OCI bundle's bounding set is read as "drop ALL, add these" (engine::from_bundle).
            Engine::CriO | Engine::Oci | Engine::Unknown if drops_all => CapSet::empty(),
            Engine::CriO | Engine::Oci | Engine::Unknown => return None,
        };
        for d in &self.cap_drop {
            if d.eq_ignore_ascii_case("ALL") || d.eq_ignore_ascii_case("CAP_ALL") {
                set = CapSet::empty();
            } else if let Ok(c) = d.parse() {
                set.remove(c);
            }
        }
        for a in &self.cap_add {
            if a.eq_ignore_ascii_case("ALL") || a.eq_ignore_ascii_case("CAP_ALL") {
                set = CapSet::full();
            } else if let Ok(c) = a.parse() {
                set.insert(c);
            }
        }
        Some(set)
    }
}

/// Recognizes a container's cgroup path (cgroup v2, relative to the mount).
pub fn identify(path: &str) -> Option<ContainerRef> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let cgroup = format!("/{}", parts[..=i].join("/"));
        let scoped = |prefix: &str| -> Option<String> {
            let id = part.strip_prefix(prefix)?;
            let id = id.strip_suffix(".scope").unwrap_or(id);
            is_hex_id(id).then(|| id.to_string())
        };
        let found = if let Some(id) = scoped("docker-") {
            Some((Engine::Docker, id))
        } else if let Some(id) = scoped("libpod-") {
            Some((Engine::Podman, id))
        } else if let Some(id) = scoped("cri-containerd-") {
            Some((Engine::Containerd, id))
        } else if let Some(id) = scoped("crio-") {
            Some((Engine::CriO, id))
        } else if is_hex_id(part) {
            // Engines that name a cgroup by the bare container id: Docker's and the kubelet's
            // cgroupfs layouts; elsewhere an OCI runtime run directly (its `cgroupsPath`).
            match i.checked_sub(1).map(|p| parts[p]) {
                Some("docker") => Some((Engine::Docker, part.to_string())),
                Some(p) if p.starts_with("pod") || parts[0].starts_with("kubepods") => Some((Engine::Containerd, part.to_string())),
                _ => Some((Engine::Oci, part.to_string())),
            }
        } else {
            None
        };
        if let Some((engine, id)) = found {
            return Some(ContainerRef { engine, id, cgroup });
        }
    }
    containerd_task(&parts, std::path::Path::new(CONTAINERD_TASKS))
}

/// containerd's task directory: one directory per namespace (`k8s.io` for the kubelet's CRI,
/// `moby` for Docker's, `default` for `ctr`), each holding a directory per running task.
pub(crate) const CONTAINERD_TASKS: &str = "/run/containerd/io.containerd.runtime.v2.task";

/// A container of any containerd namespace and any id, as the runtime says: `ctr run IMAGE
/// NAME` puts it in `/NAMESPACE/NAME` (no 64-hex id), and nerdctl or a CRI with its own
/// cgroup layout elsewhere; a cgroup whose last two components name a task directory of
/// containerd (`TASKS/NAMESPACE/ID`) is that task's container.
fn containerd_task(parts: &[&str], tasks: &std::path::Path) -> Option<ContainerRef> {
    (1..parts.len()).find_map(|i| {
        let (ns, id) = (parts[i - 1], parts[i]);
        let safe = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/');
        (safe(ns) && safe(id) && tasks.join(ns).join(id).is_dir()).then(|| ContainerRef { engine: Engine::Containerd, id: id.to_string(), cgroup: format!("/{}", parts[..=i].join("/")) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "dbf408ddadd22bdb594b40710c0f1d97da79162ae4defea0adcbee4f332c7a96";

    #[test]
    fn engines_by_cgroup_path() {
        let cases = [
            (format!("/docker/{ID}"), Engine::Docker),
            (format!("/system.slice/docker-{ID}.scope"), Engine::Docker),
            (format!("/libpod_parent/libpod-{ID}"), Engine::Podman),
            (format!("/machine.slice/libpod-{ID}.scope/container"), Engine::Podman),
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-{ID}.scope"), Engine::Containerd),
            (format!("/kubepods/besteffort/pod0c5c/{ID}"), Engine::Containerd),
            (format!("/kubepods.slice/kubepods-pod99.slice/crio-{ID}.scope"), Engine::CriO),
            (format!("/{ID}"), Engine::Oci),
            (format!("/capprof-oci/{ID}"), Engine::Oci),
        ];
        for (path, engine) in cases {
            let r = identify(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(r.engine, engine, "{path}");
            assert_eq!(r.id, ID);
        }
        assert_eq!(identify(&format!("/docker/{ID}/sub")).unwrap().cgroup, format!("/docker/{ID}"));
        assert!(identify("/capprof/record-1-2").is_none());
        // A named containerd task, found by its task directory.
        let tasks = std::env::temp_dir().join(format!("capprof-tasks-{}", std::process::id()));
        std::fs::create_dir_all(tasks.join("default/web")).unwrap();
        let r = containerd_task(&["default", "web", "sub"], &tasks).unwrap();
        assert_eq!((r.engine, r.id.as_str(), r.cgroup.as_str()), (Engine::Containerd, "web", "/default/web"));
        assert!(containerd_task(&["default", "db"], &tasks).is_none());
        assert!(containerd_task(&["capprof", "record-1-2"], &tasks).is_none());
        let _ = std::fs::remove_dir_all(&tasks);
        assert!(identify("/system.slice/ssh.service").is_none());
        assert!(identify("/libpod_parent/conmon").is_none());
    }
}
