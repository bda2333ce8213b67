//! systemd services: what a unit is (its cgroup, user, capability settings, as `systemctl show`
//! reports them) and how capprof drives one: stop, start, a transient drop-in for a trial, and
//! the restore that puts the unit back exactly as it was, on every exit path.
//!
//! A unit's cgroup exists only while it runs (`ControlGroup=` is empty otherwise), so the path
//! is derived from its slice. Trials write their drop-in under `/run/systemd/system` (gone at
//! reboot even if capprof is killed) with a name that sorts after the usual `override.conf`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::capability::{CapSet, Capability};
use crate::error::{Error, ErrorKind, Result};

/// What a recorded service is, for its profile and its drop-in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// `nginx.service`.
    pub unit: String,
    /// `User=` (empty: root).
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub group: String,
    /// `CapabilityBoundingSet=` as the unit has it now.
    pub bounding: Vec<Capability>,
    /// `AmbientCapabilities=` as the unit has it now.
    #[serde(default)]
    pub ambient: Vec<Capability>,
    /// `NoNewPrivileges=` as the unit has it now.
    #[serde(default)]
    pub no_new_privileges: bool,
    /// Command lines prefixed with `+`: systemd runs them with full privileges, the bounding
    /// set does not apply to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub privileged_commands: Vec<String>,
}

impl ServiceInfo {
    /// Does the service run as someone other than root (so it needs `AmbientCapabilities=`)?
    pub fn runs_unprivileged(&self) -> bool {
        !matches!(self.user.as_str(), "" | "root" | "0")
    }
}

/// A loaded unit as `systemctl show` describes it.
#[derive(Clone, Debug)]
pub struct Unit {
    pub info: ServiceInfo,
    /// Its cgroup, relative to the cgroup v2 mount (`/system.slice/nginx.service`).
    pub cgroup: String,
    pub active: bool,
}

/// `nginx` → `nginx.service`; other unit types are refused (only services run programs that
/// capprof can restrict this way).
pub fn unit_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.contains('/') || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::new(ErrorKind::Usage, format!("--unit {name:?}: not a unit name")));
    }
    match name.rsplit_once('.') {
        Some((_, "service")) => Ok(name.to_string()),
        Some((_, kind)) if matches!(kind, "socket" | "timer" | "target" | "mount" | "slice" | "scope" | "path" | "device" | "swap" | "automount") => {
            Err(Error::new(ErrorKind::Usage, format!("--unit {name}: a .{kind} unit runs no program of its own; name the .service it starts")))
        }
        _ => Ok(format!("{name}.service")),
    }
}

/// The `Ex` forms of the command lines carry their prefixes as `flags=` (`privileged` for `+`).
const SHOW: &str = "Id,LoadState,ActiveState,ControlGroup,Slice,User,Group,CapabilityBoundingSet,AmbientCapabilities,NoNewPrivileges,ExecStartPreEx,ExecStartEx,ExecStartPostEx,ExecReloadEx,ExecStopEx,ExecStopPostEx";

/// Reads the unit's settings (it must be loaded: installed and known to systemd).
pub fn show(name: &str) -> Result<Unit> {
    let out = systemctl_output(&["show", "-p", SHOW, "--", name])?;
    let props = parse_show(&out);
    let get = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str()).unwrap_or("");
    if get("LoadState") != "loaded" {
        let state = get("LoadState");
        return Err(Error::new(ErrorKind::Usage, format!("unit {name}: {} (systemctl show says LoadState={state})", if state == "not-found" { "no such unit" } else { "not loaded" })));
    }
    let id = if get("Id").is_empty() { name.to_string() } else { get("Id").to_string() };
    let cgroup = match get("ControlGroup") {
        "" => cgroup_of(&id, get("Slice")),
        cg => cg.to_string(),
    };
    let privileged_commands = props
        .iter()
        .filter(|(k, _)| k.starts_with("Exec"))
        .flat_map(|(_, v)| privileged_paths(v))
        .collect();
    Ok(Unit {
        info: ServiceInfo {
            unit: id,
            user: get("User").to_string(),
            group: get("Group").to_string(),
            bounding: caps_of(get("CapabilityBoundingSet")),
            ambient: caps_of(get("AmbientCapabilities")),
            no_new_privileges: get("NoNewPrivileges") == "yes",
            privileged_commands,
        },
        cgroup,
        active: matches!(get("ActiveState"), "active" | "activating" | "reloading"),
    })
}

/// `Key=value` lines; values may contain `=`.
fn parse_show(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `cap_chown cap_net_bind_service` → the capabilities (names this kernel's systemd knows but
/// capprof does not are left out: they cannot be in a recorded set either).
fn caps_of(list: &str) -> Vec<Capability> {
    let mut caps: Vec<Capability> = list.split_whitespace().filter_map(|n| CapSet::parse_list(n).ok()).flat_map(|s| s.iter().collect::<Vec<_>>()).collect();
    caps.sort_by_key(|c| c.name());
    caps.dedup();
    caps
}

/// The paths of `{ path=/x ; argv[]=... ; flags=privileged ... }` entries (`ExecStartEx`-style
/// flags, or a `+` before the path in older output).
fn privileged_paths(value: &str) -> Vec<String> {
    value
        .split("{ ")
        .skip(1)
        .filter(|e| e.contains("flags=privileged") || e.contains("path=+"))
        .filter_map(|e| e.split(" ; ").find_map(|f| f.strip_prefix("path=")).map(|p| p.trim_start_matches('+').to_string()))
        .collect()
}

/// `foo-bar.slice` holds its units under `/foo.slice/foo-bar.slice/`.
fn cgroup_of(unit: &str, slice: &str) -> String {
    let slice = if slice.is_empty() { "system.slice" } else { slice };
    let mut path = String::new();
    if slice != "-.slice" {
        let stem = slice.trim_end_matches(".slice");
        let parts: Vec<&str> = stem.split('-').collect();
        for i in 1..=parts.len() {
            path.push('/');
            path.push_str(&parts[..i].join("-"));
            path.push_str(".slice");
        }
    }
    format!("{path}/{unit}")
}

fn systemctl_output(args: &[&str]) -> Result<String> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| Error::new(ErrorKind::UnsupportedKernel, format!("running systemctl: {e} (is this a systemd host?)")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let msg = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string();
        if msg.contains("System has not been booted with systemd") || msg.contains("Failed to connect to bus") {
            return Err(Error::new(ErrorKind::UnsupportedKernel, format!("systemd is not running as PID 1 here: --unit needs a systemd host (systemctl: {})", crate::format::plain(&msg))));
        }
        return Err(Error::new(ErrorKind::Io, format!("systemctl {}: {}", args.join(" "), crate::format::plain(&msg))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `systemctl ARGS`; an error says what systemd said.
pub fn systemctl(args: &[&str]) -> Result<()> {
    systemctl_output(args).map(|_| ())
}

/// Starts the unit and waits for systemd's verdict (for `Type=notify`/`forking` that includes
/// its start-up). A unit that fails to start is not an error here: see [`Unit::active`].
/// The unit's failed state and start counter are reset first: trials restart a unit more often
/// than `StartLimitBurst=` allows, and a refused start would pass for a set that breaks it.
pub fn start(unit: &str) -> std::result::Result<(), String> {
    let _ = Command::new("systemctl").args(["reset-failed", "--", unit]).output();
    let out = Command::new("systemctl").args(["start", "--", unit]).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed to start").trim().to_string())
    }
}

/// How the unit's last run ended, as systemd says (`success`, `exit-code`, `signal`, ...).
pub fn result(unit: &str) -> String {
    systemctl_output(&["show", "-p", "Result", "--value", "--", unit]).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Is the unit running now?
pub fn is_active(unit: &str) -> bool {
    Command::new("systemctl").args(["is-active", "--quiet", "--", unit]).status().is_ok_and(|s| s.success())
}

/// The unit's cgroup directory, while it exists.
pub fn cgroup_dir(cgroup: &str) -> Result<PathBuf> {
    Ok(crate::kernel::cgroup::unified_mount()?.join(cgroup.trim_start_matches('/')))
}

/// The drop-in a trial applies, in systemd's syntax.
pub fn restriction(set: CapSet, info: &ServiceInfo) -> String {
    let names = set.sorted_names().iter().map(|n| format!("CAP_{n}")).collect::<Vec<_>>().join(" ");
    let mut text = format!("# Written by capprof for one trial; removed when it ends.\n[Service]\nCapabilityBoundingSet=\nCapabilityBoundingSet={names}\n");
    if info.runs_unprivileged() {
        text.push_str(&format!("AmbientCapabilities=\nAmbientCapabilities={names}\n"));
    }
    text
}

/// A unit under capprof's control: on drop, its trial drop-in is removed and it is put back in
/// the state it was found in (running with its own settings, or stopped).
pub struct Controlled {
    pub unit: Unit,
    dropin: PathBuf,
    /// capprof made the drop-in directory (so it removes it too).
    made_dir: bool,
    /// The unit was started under a trial's set since it was taken (so it must restart).
    restricted: std::cell::Cell<bool>,
    /// The unit was stopped or started since it was taken.
    touched: std::cell::Cell<bool>,
    restored: bool,
    /// Stop signals are noted from the moment the unit is taken, so none ends capprof before
    /// the unit is put back (see [`crate::session::workload::interrupted`]).
    _signals: std::os::fd::OwnedFd,
}

/// The trial drop-in's file name: after `override.conf` and other common names.
const DROPIN_NAME: &str = "zz-capprof-trial.conf";

impl Controlled {
    /// Takes control of `name`, refusing when a drop-in of ours is already there (another
    /// capprof at work on it, or one killed before it could restore).
    pub fn take(name: &str) -> Result<Self> {
        let unit = show(name)?;
        let dir = Path::new("/run/systemd/system").join(format!("{}.d", unit.info.unit));
        let dropin = dir.join(DROPIN_NAME);
        if dropin.exists() {
            return Err(Error::new(
                ErrorKind::Interference,
                format!("{} exists: another capprof is trying {} (or one was killed before it could restore it: remove the file and run systemctl daemon-reload)", dropin.display(), unit.info.unit),
            ));
        }
        let made_dir = !dir.exists();
        let _signals = crate::session::workload::install_forwarding()?;
        Ok(Self { unit, dropin, made_dir, restricted: Default::default(), touched: Default::default(), restored: false, _signals })
    }

    /// Stops the unit (if it runs): what a trial does before applying its set.
    pub fn stop(&self) -> Result<()> {
        self.touched.set(true);
        systemctl(&["stop", "--", &self.unit.info.unit])
    }

    /// Applies `set` (None: the unit's own settings) for the next start.
    pub fn apply(&self, set: Option<CapSet>) -> Result<()> {
        match set {
            Some(set) => {
                self.restricted.set(true);
                if let Some(dir) = self.dropin.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                }
                std::fs::write(&self.dropin, restriction(set, &self.unit.info)).map_err(|e| Error::io(format!("writing {}", self.dropin.display()), e))?;
            }
            None if self.dropin.exists() => self.remove_dropin()?,
            None => return Ok(()),
        }
        systemctl(&["daemon-reload"])
    }

    fn remove_dropin(&self) -> Result<()> {
        match std::fs::remove_file(&self.dropin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", self.dropin.display()), e)),
        }
        if self.made_dir {
            if let Some(dir) = self.dropin.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    /// Removes the drop-in and brings the unit back to the state it was found in. Said on
    /// stderr when anything fails: the user must know a unit was left changed.
    pub fn restore(&mut self) -> Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        let name = self.unit.info.unit.clone();
        if !self.touched.get() {
            return Ok(());
        }
        if self.restricted.get() || self.dropin.exists() {
            self.remove_dropin()?;
            systemctl(&["daemon-reload"])?;
        }
        if self.unit.active && (self.restricted.get() || !is_active(&name)) {
            // Whatever ran last ran under a trial's set (or is down): start it as it was.
            let _ = systemctl(&["reset-failed", "--", &name]);
            systemctl(&["restart", "--", &name])
        } else if !self.unit.active && is_active(&name) {
            systemctl(&["stop", "--", &name])
        } else {
            Ok(())
        }
    }
}

impl Drop for Controlled {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("capprof: error: could not restore {}: {e:#}; check `systemctl status {}` and {}", self.unit.info.unit, self.unit.info.unit, self.dropin.display());
        }
    }
}

/// Waits until the unit is no longer running, the deadline passes, or capprof is interrupted;
/// `tick` runs every 100 ms (the tracer's event draining).
pub fn wait_while_active(unit: &str, deadline: Option<Instant>, mut tick: impl FnMut()) {
    let mut last_check = Instant::now();
    loop {
        tick();
        if crate::session::workload::interrupted() || deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        if last_check.elapsed() >= Duration::from_millis(500) {
            last_check = Instant::now();
            if !is_active(unit) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("nginx").unwrap(), "nginx.service");
        assert_eq!(unit_name("nginx.service").unwrap(), "nginx.service");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert!(unit_name("ssh.socket").is_err());
        assert!(unit_name("a/b").is_err());
        assert!(unit_name("").is_err());
    }

    #[test]
    fn cgroups_follow_the_slice() {
        assert_eq!(cgroup_of("nginx.service", "system.slice"), "/system.slice/nginx.service");
        assert_eq!(cgroup_of("x.service", "foo-bar.slice"), "/foo.slice/foo-bar.slice/x.service");
        assert_eq!(cgroup_of("x.service", "-.slice"), "/x.service");
        assert_eq!(cgroup_of("x.service", ""), "/system.slice/x.service");
    }

    #[test]
    fn show_output_is_read() {
        let caps = caps_of("cap_chown cap_net_bind_service cap_setuid cap_not_a_cap");
        assert_eq!(caps.iter().map(|c| c.name()).collect::<Vec<_>>(), ["CHOWN", "NET_BIND_SERVICE", "SETUID"]);
        let exec = "{ path=/usr/sbin/chronyd ; argv[]=/usr/sbin/chronyd -F 1 ; flags=privileged ; start_time=[n/a] } { path=/bin/true ; argv[]=/bin/true ; flags= }";
        assert_eq!(privileged_paths(exec), ["/usr/sbin/chronyd"]);
        let props = parse_show("User=www-data\nExecStart={ path=/x ; argv[]=/x a=b }\n");
        assert_eq!(props[1].1, "{ path=/x ; argv[]=/x a=b }");
    }

    #[test]
    fn a_trial_dropin_resets_then_sets() {
        let mut set = CapSet::empty();
        set.insert(Capability::NET_BIND_SERVICE);
        let root = ServiceInfo::default();
        assert_eq!(restriction(set, &root), "# Written by capprof for one trial; removed when it ends.\n[Service]\nCapabilityBoundingSet=\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n");
        let user = ServiceInfo { user: "www-data".into(), ..Default::default() };
        assert!(restriction(set, &user).ends_with("AmbientCapabilities=\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n"));
        assert!(restriction(CapSet::empty(), &root).contains("CapabilityBoundingSet=\nCapabilityBoundingSet=\n"));
    }
}
