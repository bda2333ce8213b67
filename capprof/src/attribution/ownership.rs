//! Which containers a trial's own command started: the only ones a trial may stop or remove,
//! and the one `-f docker-run` rewrites with its set. On a shared host other containers start
//! and stop during a recording; they are recorded (a sidecar the command relies on shows
//! there) but never touched, and never give their set to the user's command.
//!
//! Told by the engine, never by "appeared meanwhile": a `docker|podman|nerdctl run` the trial
//! runs carries a label capprof adds ([`TRIAL_LABEL`], unique per trial); a compose command's
//! containers carry its project; a container whose name or id the command line names (`--name
//! web` inside a script, `ctr run IMAGE ID`) is the command's too.

use super::container::ContainerInfo;

/// The label capprof adds to a `run` it runs; its value is unique per trial.
pub const TRIAL_LABEL: &str = "io.capprof.trial";

/// What tells a trial's containers from everyone else's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// The value of [`TRIAL_LABEL`] on the containers this trial's `run` creates.
    pub token: String,
    /// Compose projects the command brings up (as named, and as compose v1 and v2 normalize).
    pub projects: Vec<String>,
    /// Names its `--name` options give (docker, podman, nerdctl: `run` and `create`).
    names: Vec<String>,
    /// Words of the command line: a containerd or OCI runtime container's id is chosen by the
    /// command that starts it (`ctr run IMAGE ID`, `runc run ID`).
    words: Vec<String>,
}

impl Ownership {
    /// The ownership of a trial of `argv`, with a fresh token.
    pub fn of(argv: &[String]) -> Self {
        static TRIALS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = TRIALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = format!("{}-{n}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()));
        let words: Vec<String> = argv.iter().flat_map(|a| a.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|' || c == '\'' || c == '"').map(str::to_string).collect::<Vec<_>>()).filter(|w| !w.is_empty()).collect();
        let names = words
            .iter()
            .enumerate()
            .filter_map(|(i, w)| if w == "--name" { words.get(i + 1).cloned() } else { w.strip_prefix("--name=").map(str::to_string) })
            .collect();
        Self { token, projects: compose_projects(argv), names, words }
    }

    /// `argv` with the trial's label added to its `run` (None: not an engine's `run`).
    pub fn label_run(&self, argv: &[String]) -> Option<Vec<String>> {
        let (run, _) = super::run_command::locate_run(argv)?;
        let mut out = argv[..=run].to_vec();
        out.push("--label".into());
        out.push(format!("{TRIAL_LABEL}={}", self.token));
        out.extend(argv[run + 1..].iter().cloned());
        Some(out)
    }

    /// Did this trial's command start the container? (`docker exec NAME` names a container
    /// it did not start: that one is not its to stop.)
    pub fn owns(&self, id: &str, info: &ContainerInfo) -> bool {
        use super::container::Engine;
        if info.labels.get(TRIAL_LABEL).is_some_and(|t| *t == self.token) {
            return true;
        }
        if info.labels.get("com.docker.compose.project").is_some_and(|p| self.projects.contains(p)) {
            return true;
        }
        if !info.name.is_empty() && self.names.contains(&info.name) {
            return true;
        }
        matches!(info.engine, Engine::Containerd | Engine::Oci | Engine::CriO) && self.words.iter().any(|w| w == id)
    }
}

/// The compose projects a `docker compose` / `docker-compose` / `podman-compose` command line
/// uses: `-p NAME`, else `COMPOSE_PROJECT_NAME`, else the directory of its first `-f` file or
/// the working directory; as written and as compose v1 (alphanumerics only) and v2 (also `-`
/// and `_`) normalize it.
fn compose_projects(argv: &[String]) -> Vec<String> {
    let words: Vec<&str> = argv.iter().flat_map(|a| a.split_whitespace()).collect();
    let Some(at) = words.iter().position(|w| matches!(w.rsplit('/').next().unwrap_or(w), "docker-compose" | "podman-compose") || (*w == "compose" && words.iter().any(|e| e.ends_with("docker") || e.ends_with("podman"))))
    else {
        return vec![];
    };
    let rest = &words[at + 1..];
    let value_of = |names: &[&str]| -> Option<String> {
        rest.iter().enumerate().find_map(|(i, w)| {
            names.iter().find_map(|n| if w == n { rest.get(i + 1).map(|v| v.to_string()) } else { w.strip_prefix(&format!("{n}=")).map(str::to_string) })
        })
    };
    let named = value_of(&["-p", "--project-name"]).or_else(|| std::env::var("COMPOSE_PROJECT_NAME").ok().filter(|p| !p.is_empty())).or_else(|| {
        let dir = match value_of(&["-f", "--file"]) {
            Some(f) => std::path::absolute(&f).ok()?.parent()?.to_path_buf(),
            None => std::env::current_dir().ok()?,
        };
        dir.file_name().map(|n| n.to_string_lossy().into_owned())
    });
    let Some(named) = named else { return vec![] };
    let v1: String = named.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let v2: String = named.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    let mut out = vec![named, v1, v2];
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn info(name: &str, labels: &[(&str, &str)]) -> ContainerInfo {
        ContainerInfo { name: name.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(), ..Default::default() }
    }

    #[test]
    fn a_run_is_labelled_and_its_container_told_by_the_label() {
        let o = Ownership::of(&v("docker run --rm img sh"));
        let labelled = o.label_run(&v("docker run --rm img sh")).unwrap();
        assert_eq!(labelled[..4], ["docker", "run", "--label", &format!("{TRIAL_LABEL}={}", o.token)]);
        assert_eq!(labelled[4..], ["--rm", "img", "sh"]);
        assert!(o.owns("a".repeat(64).as_str(), &info("brave_bell", &[(TRIAL_LABEL, &o.token)])));
        // Another trial's, and a bystander's.
        assert!(!o.owns("b".repeat(64).as_str(), &info("x", &[(TRIAL_LABEL, "other")])));
        assert!(!o.owns("c".repeat(64).as_str(), &info("bystander", &[])));
        assert_ne!(Ownership::of(&[]).token, Ownership::of(&[]).token, "a token per trial");
        assert!(o.label_run(&v("make test")).is_none());
    }

    #[test]
    fn named_containers_and_compose_projects_are_the_commands() {
        let o = Ownership::of(&["sh".into(), "-c".into(), "docker run -d --name=web img; ctr run img capprof-web".into()]);
        assert!(o.owns(&"f".repeat(64), &info("web", &[])));
        assert!(!o.owns(&"f".repeat(64), &info("web2", &[])));
        let ctr = ContainerInfo { engine: crate::attribution::container::Engine::Containerd, ..info("capprof-web", &[]) };
        assert!(o.owns("capprof-web", &ctr));
        // `docker exec web` names a container it did not start.
        let o = Ownership::of(&v("docker exec web chroot / true"));
        assert!(!o.owns(&"f".repeat(64), &info("web", &[])));
        let o = Ownership::of(&v("docker compose -p My_Shop up --abort-on-container-exit"));
        assert!(o.owns(&"f".repeat(64), &info("x", &[("com.docker.compose.project", "my_shop")])));
        assert!(o.owns(&"f".repeat(64), &info("x", &[("com.docker.compose.project", "myshop")])));
        assert!(!o.owns(&"f".repeat(64), &info("x", &[("com.docker.compose.project", "other")])));
        let o = Ownership::of(&v("docker-compose -f /srv/web-app/compose.yaml up"));
        assert!(o.owns(&"f".repeat(64), &info("x", &[("com.docker.compose.project", "webapp")])));
        assert!(Ownership::of(&v("make test")).projects.is_empty());
    }
}
