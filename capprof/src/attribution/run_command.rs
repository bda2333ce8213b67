//! The command line of a container engine's `run` (docker, podman, nerdctl): which image it
//! runs, and the same command with a capability set in place of its own options. A model of
//! the user's command, shared by the trials that re-run it and the `docker-run` output.

use crate::capability::CapSet;

/// `--cap-drop=ALL` then one `--cap-add=NAME` per capability, sorted.
pub fn cap_flags(set: &CapSet) -> Vec<String> {
    let mut out = vec!["--cap-drop=ALL".to_string()];
    out.extend(set.sorted_names().into_iter().map(|n| format!("--cap-add={n}")));
    out
}

const ENGINES: [&str; 4] = ["docker", "podman", "nerdctl", "ctr"];

/// containerd's `ctr run` takes capabilities one option each, with their `CAP_` names, and
/// starts from the same 14 as Docker: the set is given as those dropped and those added.
fn ctr_cap_flags(set: &CapSet) -> Vec<String> {
    let mut out = Vec::new();
    for c in crate::capability::DOCKER_DEFAULT.iter().filter(|c| !set.contains(**c)) {
        out.extend(["--cap-drop".to_string(), format!("CAP_{}", c.name())]);
    }
    for name in set.sorted_names() {
        out.extend(["--cap-add".to_string(), format!("CAP_{name}")]);
    }
    out
}

/// `run` options that take their value as the next word (the rest are flags, or `--opt=value`).
pub(crate) const VALUE_OPTIONS: &[&str] = &[
    "-a", "--attach", "--add-host", "--annotation", "--blkio-weight", "-c", "--cpu-shares", "--cgroup-parent", "--cgroupns",
    "--cidfile", "--cpus", "--cpuset-cpus", "--cpuset-mems", "--device", "--device-cgroup-rule", "--dns", "--dns-option",
    "--dns-search", "-e", "--env", "--env-file", "--entrypoint", "--expose", "--gpus", "--group-add", "-h", "--hostname",
    "--health-cmd", "--health-interval", "--health-retries", "--health-timeout", "--ip", "--ip6", "--ipc", "--isolation",
    "-l", "--label", "--label-file", "--link", "--log-driver", "--log-opt", "-m", "--memory", "--memory-reservation",
    "--memory-swap", "--mac-address", "--mount", "--name", "--network", "--net", "--network-alias", "--oom-score-adj",
    "-p", "--publish", "--pid", "--pids-limit", "--platform", "--pull", "--restart", "--runtime", "--security-opt",
    "--shm-size", "--stop-signal", "--stop-timeout", "--storage-opt", "--sysctl", "--tmpfs", "-u", "--user", "--ulimit",
    "--userns", "--uts", "-v", "--volume", "--volumes-from", "-w", "--workdir", "--cgroup-manager", "--pod", "--secret",
    // ctr run's.
    "--cgroup", "--snapshotter", "--seccomp-profile", "--apparmor-profile", "--cwd", "--device", "--memory-limit", "--cpu-quota",
    "--cpu-period", "--uidmap", "--gidmap", "--pid-file", "--fifo-dir", "--runtime-config-path", "--rootfs-propagation",
];

/// The image a `docker|podman run` command runs.
pub fn run_image(argv: &[String]) -> Option<String> {
    let (run, _) = locate_run(argv)?;
    let mut i = run + 1;
    while i < argv.len() {
        let a = &argv[i];
        if !a.starts_with('-') {
            return Some(a.clone());
        }
        let name = a.split('=').next().unwrap_or(a);
        i += if VALUE_OPTIONS.contains(&name) && !a.contains('=') || matches!(name, "--cap-add" | "--cap-drop") && !a.contains('=') { 2 } else { 1 };
    }
    None
}

/// Index of `run` in an engine's run command, and of the engine.
pub(crate) fn locate_run(argv: &[String]) -> Option<(usize, usize)> {
    let engine = argv.iter().position(|a| ENGINES.contains(&a.rsplit('/').next().unwrap_or(a)))?;
    let run = engine + 1 + argv[engine + 1..].iter().position(|a| a == "run")?;
    // Between the engine and `run` only options and `container` may appear.
    if argv[engine + 1..run].iter().any(|a| !a.starts_with('-') && a != "container" && !looks_like_value(argv, a)) {
        return None;
    }
    Some((run, engine))
}

/// The command with `--cap-drop=ALL --cap-add=...` inserted right after `run`, and its own
/// `--cap-add`/`--cap-drop`/`--privileged` options (before the image) removed. None when the
/// command is not `docker|podman|nerdctl [global options] [container] run ...`.
pub fn rewrite_run(argv: &[String], set: CapSet) -> Option<Vec<String>> {
    rewrite_run_with(argv, Some(set), None)
}

/// Like [`rewrite_run`], with the capability options only when `set` is given, and with
/// `--security-opt seccomp=PROFILE` in place of the command's own seccomp option when
/// `seccomp` is.
pub fn rewrite_run_with(argv: &[String], set: Option<CapSet>, seccomp: Option<&str>) -> Option<Vec<String>> {
    let (run, engine) = locate_run(argv)?;
    let ctr = argv[engine].rsplit('/').next() == Some("ctr");
    if ctr && seccomp.is_some() {
        // ctr's seccomp options are not the engines': not rewritten.
        return None;
    }
    let mut out: Vec<String> = argv[..=run].to_vec();
    if let Some(set) = &set {
        out.extend(if ctr { ctr_cap_flags(set) } else { cap_flags(set) });
    }
    if let Some(profile) = seccomp {
        out.push("--security-opt".into());
        out.push(format!("seccomp={profile}"));
    }
    let is_seccomp_opt = |v: &str| v.starts_with("seccomp=") || v.starts_with("seccomp:");
    let mut i = run + 1;
    while i < argv.len() {
        let a = &argv[i];
        if !a.starts_with('-') || a == "-" {
            break; // the image: what follows belongs to the container's command
        }
        if a == "--" {
            break;
        }
        let name = a.split('=').next().unwrap_or(a);
        let has_inline_value = a.contains('=');
        match name {
            "--cap-add" | "--cap-drop" if set.is_some() => i += if has_inline_value { 1 } else { 2 },
            "--privileged" if set.is_some() => i += 1,
            "--security-opt" if seccomp.is_some() && (if has_inline_value { is_seccomp_opt(&a[name.len() + 1..]) } else { argv.get(i + 1).is_some_and(|v| is_seccomp_opt(v)) }) => {
                i += if has_inline_value { 1 } else { 2 };
            }
            _ => {
                let takes = VALUE_OPTIONS.contains(&name) && !has_inline_value;
                out.extend(argv[i..(i + if takes { 2 } else { 1 }).min(argv.len())].iter().cloned());
                i += if takes { 2 } else { 1 };
            }
        }
    }
    out.extend(argv[i.min(argv.len())..].iter().cloned());
    Some(out)
}

/// A global option's value (`podman --cgroup-manager cgroupfs run`, `ctr -n k8s.io run`).
fn looks_like_value(argv: &[String], word: &str) -> bool {
    argv.windows(2).any(|w| w[1] == word && (w[0].starts_with("--") && !w[0].contains('=') || matches!(w[0].as_str(), "-n" | "-a")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Capability;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn ctr_run_gets_the_set_in_its_own_options() {
        let set: CapSet = [Capability::CHOWN].into_iter().collect();
        let out = rewrite_run(&v("ctr -n k8s.io run --rm --cap-add CAP_SYS_ADMIN --cgroup /x img web sh -c true"), set).unwrap();
        let line = out.join(" ");
        assert!(line.starts_with("ctr -n k8s.io run --cap-drop CAP_DAC_OVERRIDE "), "{line}");
        assert!(line.contains(" --cap-add CAP_CHOWN --rm --cgroup /x img web sh -c true"), "{line}");
        assert!(!line.contains("SYS_ADMIN") && !line.contains("--cap-drop CAP_CHOWN"), "{line}");
        assert_eq!(run_image(&v("ctr -n k8s.io run --rm --cgroup /x img web sh")).as_deref(), Some("img"));
        assert!(rewrite_run_with(&v("ctr run img web"), Some(set), Some("/p.json")).is_none(), "seccomp is not rewritten for ctr");
    }

    #[test]
    fn rewrites_run_commands() {
        let set: CapSet = [Capability::NET_BIND_SERVICE].into_iter().collect();
        let out = rewrite_run(&v("docker run --rm --cap-add SYS_ADMIN -p 80:80 --privileged img --cap-add x"), set).unwrap();
        assert_eq!(out.join(" "), "docker run --cap-drop=ALL --cap-add=NET_BIND_SERVICE --rm -p 80:80 img --cap-add x");
        let out = rewrite_run(&v("podman --cgroup-manager=cgroupfs run --runtime runc img"), CapSet::empty()).unwrap();
        assert_eq!(out.join(" "), "podman --cgroup-manager=cgroupfs run --cap-drop=ALL --runtime runc img");
        let out = rewrite_run(&v("/usr/bin/docker container run --cap-drop=ALL --name web img sh"), CapSet::empty()).unwrap();
        assert_eq!(out.join(" "), "/usr/bin/docker container run --cap-drop=ALL --name web img sh");
        assert!(rewrite_run(&v("docker ps"), CapSet::empty()).is_none());
        assert_eq!(run_image(&v("docker run --rm -e A=1 --name x --cap-add NET_RAW img sh")).as_deref(), Some("img"));
        assert!(rewrite_run(&v("make test"), CapSet::empty()).is_none());
    }

    #[test]
    fn a_seccomp_profile_replaces_the_commands_own() {
        let out = rewrite_run_with(&v("docker run --security-opt seccomp=unconfined --security-opt=no-new-privileges --cap-add NET_RAW img"), None, Some("/p.json")).unwrap();
        assert_eq!(out.join(" "), "docker run --security-opt seccomp=/p.json --security-opt=no-new-privileges --cap-add NET_RAW img");
        let out = rewrite_run_with(&v("podman run --security-opt=seccomp=/old.json img"), Some(CapSet::empty()), Some("/p.json")).unwrap();
        assert_eq!(out.join(" "), "podman run --cap-drop=ALL --security-opt seccomp=/p.json img");
    }
}
