//! `cargo xtask vm-systemd-test`: systemd services on a real systemd as PID 1. This host's PID 1
//! is not systemd, so a Debian bookworm root file system (built with mmdebstrap from Debian's
//! packages, see [`crate::rootfs`]) boots under QEMU on Debian's 6.1 kernel, once for every
//! scenario. For each service:
//!
//! 1. `capprof record --unit U --check C --prove` (a real client request; conditional
//!    capabilities settled by restarts without each), rendered as a drop-in;
//! 2. `capprof verify --unit U --caps SET`, then the unit is as it was (running, same bounding
//!    set in its main process, no trial drop-in left);
//! 3. the drop-in installed under /etc/systemd/system/U.d/, the unit restarted: it still serves;
//! 4. the oracle, independent of capprof: for each capability of the set, the unit restarted
//!    under the set without it (a drop-in written by the script) must fail its check.
//!
//! Plus `minimize --unit nginx` (its set must not need more than record's), `verify --unit`
//! failing and interrupted (nginx put back both times), `daemon --services` exporting a drop-in
//! that knows the unit's `User=`, and a unit run as
//! a non-root `User=` (the drop-in must carry `AmbientCapabilities=`), which was not running
//! before `record --unit` and is stopped again after it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::vm;

/// (unit, client request that must pass while it serves).
const UNITS: &[(&str, &str)] = &[
    ("nginx.service", "curl -fsS -m 5 -o /dev/null http://127.0.0.1/"),
    (
        "ssh.service",
        "timeout 30 ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 -i /root/.ssh/id_ed25519 alice@127.0.0.1 true",
    ),
    // Over UDP to port 323, not the unix socket: the command port is part of what it serves.
    ("chrony.service", "timeout 10 chronyc -h 127.0.0.1 -n tracking"),
    ("lowport.service", "curl -fsS -m 5 -o /dev/null http://127.0.0.1:99/"),
];

/// Set-up inside the VM: a login for the ssh check, the non-root service, the check scripts.
const PREPARE: &str = r#"set -u
systemctl is-system-running --wait >/dev/null 2>&1; echo "BOOT $(systemctl is-system-running)"
uname -r | sed 's/^/KERNEL /'
useradd -m -s /bin/sh alice && usermod -p '*' alice
mkdir -p /root/.ssh /home/alice/.ssh
ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519
cp /root/.ssh/id_ed25519.pub /home/alice/.ssh/authorized_keys
chown -R alice:alice /home/alice/.ssh; chmod 700 /home/alice/.ssh; chmod 600 /home/alice/.ssh/authorized_keys
cat > /etc/systemd/system/lowport.service <<'UNIT'
[Unit]
Description=a server on a low port, run as a non-root user
[Service]
User=nobody
# More than it needs, as units often grant: capprof's drop-in must cut it to the one it uses.
AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_CHOWN
ExecStart=/usr/local/bin/scenario serve 99
UNIT
systemctl daemon-reload
# poll SECS CMD: passes when CMD passes within SECS (a service that just started may need a
# moment; an ssh login under TCG takes seconds).
cat > /usr/local/bin/poll <<'POLL'
#!/bin/sh
end=$(( $(date +%s) + $1 ))
while :; do
  sh -c "$2" >/dev/null 2>&1 && exit 0
  [ "$(date +%s)" -ge "$end" ] && exit 1
  sleep 0.5
done
POLL
chmod 755 /usr/local/bin/poll
bound() { p=$(systemctl show -p MainPID --value "$1"); grep CapBnd "/proc/$p/status" 2>/dev/null | tr -d '\t'; }
"#;

/// The per-unit steps, `@U@` the unit and `@C@` its check.
const PER_UNIT: &str = r#"
echo "BEFORE @U@ $(systemctl is-active @U@)"
capprof record --unit @U@ --check '@C@' --prove -f json -o /tmp/@U@.json 2>/tmp/@U@.err; echo "RECORD @U@ $?"
grep -v '^capprof: \(restarting\|starting\)' /tmp/@U@.err | sed 's/^/ERR @U@ /'
echo "AFTER_RECORD @U@ $(systemctl is-active @U@)"
capprof merge /tmp/@U@.json -f systemd -o /tmp/@U@.conf 2>/dev/null
echo "SET @U@ $(capprof merge /tmp/@U@.json -f docker 2>/dev/null)"
sed 's/^/DROPIN @U@ /' /tmp/@U@.conf
set=$(sed -n "s/^CapabilityBoundingSet=\(..*\)$/\1/p" /tmp/@U@.conf)
list=$(echo $set | sed 's/CAP_//g; s/ /,/g'); [ -n "$list" ] || list=none
systemctl start @U@; b0=$(bound @U@)
capprof verify --unit @U@ --caps "$list" --check '@C@' -f docker -o /tmp/@U@.verify 2>/tmp/@U@.verr; echo "VERIFY @U@ $?"
grep -i 'error' /tmp/@U@.verr | sed 's/^/ERR @U@ /'
b1=$(bound @U@)
ls /run/systemd/system/@U@.d/zz-capprof-trial.conf >/dev/null 2>&1 && echo "RESTORED @U@ no: trial drop-in left" || echo "RESTORED @U@ $(systemctl is-active @U@) ${b0:-?} ${b1:-?}"
mkdir -p /etc/systemd/system/@U@.d; cp /tmp/@U@.conf /etc/systemd/system/@U@.d/capprof.conf
systemctl daemon-reload; systemctl restart @U@
poll 20 '@C@' && echo "SERVES @U@ yes $(bound @U@)" || echo "SERVES @U@ no"
for x in $set; do
  rest=$(for y in $set; do [ "$y" = "$x" ] || printf '%s ' "$y"; done)
  mkdir -p /run/systemd/system/@U@.d
  printf '[Service]\nCapabilityBoundingSet=\nCapabilityBoundingSet=%s\n' "$rest" > /run/systemd/system/@U@.d/zz-fewer.conf
  # The ambient set too, where the drop-in has one (a non-root User=).
  grep -q '^AmbientCapabilities=' /tmp/@U@.conf && printf 'AmbientCapabilities=\nAmbientCapabilities=%s\n' "$rest" >> /run/systemd/system/@U@.d/zz-fewer.conf
  systemctl daemon-reload; systemctl reset-failed @U@ 2>/dev/null
  # A unit that does not even start fails at once; one that starts gets a few seconds.
  if systemctl restart @U@ 2>/dev/null && poll 4 '@C@'; then echo "FEWER @U@ $x works"; else echo "FEWER @U@ $x fails"; fi
  rm -f /run/systemd/system/@U@.d/zz-fewer.conf
done
rm -rf /etc/systemd/system/@U@.d /run/systemd/system/@U@.d; systemctl daemon-reload
systemctl stop @U@; systemctl reset-failed @U@ 2>/dev/null
"#;

/// `minimize --unit nginx`: its proven set must be within what record printed.
const MINIMIZE: &str = r#"
systemctl start nginx.service
capprof minimize --unit nginx --check 'curl -fsS -m 5 -o /dev/null http://127.0.0.1/' -f docker -o /tmp/min 2>/tmp/min.err; echo "MINIMIZE nginx.service $? $(cat /tmp/min)"
grep -i 'error' /tmp/min.err | sed 's/^/ERR minimize /'
echo "AFTER_MINIMIZE nginx.service $(systemctl is-active nginx.service) $(ls /run/systemd/system/nginx.service.d 2>/dev/null | wc -l)"
"#;

/// The other exit paths of a unit trial: a set that fails (exit 1) and Ctrl-C (exit 130); both
/// must leave nginx as it was (running, its own bounding set, no trial drop-in). And Ctrl-C
/// ending `record --unit` of a unit that was not running: profile written, unit stopped again.
const EXIT_PATHS: &str = r#"
systemctl start nginx.service; b0=$(bound nginx.service)
capprof verify --unit nginx --caps setuid,setgid,dac_override --check 'curl -fsS -m 5 -o /dev/null http://127.0.0.1/' 2>/dev/null; v=$?
echo "FAILING nginx.service $v $(systemctl is-active nginx.service) $(ls /run/systemd/system/nginx.service.d 2>/dev/null | wc -l) $([ "$(bound nginx.service)" = "$b0" ] && echo same)"
capprof verify --unit nginx --caps setuid,setgid,dac_override,net_bind_service --check 'sleep 600' --timeout 900 2>/dev/null & P=$!
i=0; while [ ! -e /run/systemd/system/nginx.service.d/zz-capprof-trial.conf ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
sleep 2; kill -INT $P; wait $P; v=$?
echo "INTERRUPTED nginx.service $v $(systemctl is-active nginx.service) $(ls /run/systemd/system/nginx.service.d 2>/dev/null | wc -l) $([ "$(bound nginx.service)" = "$b0" ] && echo same)"
capprof record --unit lowport -f json -o /tmp/interrupted.json 2>/dev/null & P=$!
i=0; while ! systemctl is-active --quiet lowport.service && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
sleep 2; kill -INT $P; wait $P; v=$?
echo "RECORD_INTERRUPTED lowport.service $v $(systemctl is-active lowport.service) $(grep -c '"name": "lowport.service"' /tmp/interrupted.json)"
"#;

/// `daemon --services` learning a unit run as a non-root `User=`: its exported drop-in asks
/// systemd about the unit, so it carries `AmbientCapabilities=`.
const DAEMON: &str = r#"
capprof daemon --services --flush-interval 1 --socket /tmp/d.sock --state /tmp/d.redb 2>/tmp/d.err & D=$!
i=0; while [ ! -S /tmp/d.sock ] && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
systemctl start lowport.service; poll 20 'curl -fsS -m 5 -o /dev/null http://127.0.0.1:99/'
# The daemon commits the unit with its first checks (systemd's set-up) and the bind's at its
# next pass, up to half a second later: polled until the bind is in, for at most 30 s (a bind
# never learned still fails the expectation).
i=0; until { capprof export service:lowport.service -f systemd --socket /tmp/d.sock >/tmp/daemon.conf 2>/dev/null && grep -q NET_BIND_SERVICE /tmp/daemon.conf; } || [ $i -ge 150 ]; do sleep 0.2; i=$((i+1)); done
sed 's/^/DAEMON_DROPIN lowport.service /' /tmp/daemon.conf
kill $D; wait $D 2>/dev/null; systemctl stop lowport.service
grep -i 'error' /tmp/d.err | sed 's/^/ERR daemon /'
"#;

pub fn run(release: &Path) -> Result<()> {
    vm::setup()?;
    let rootfs = crate::rootfs::systemd_rootfs()?;
    let mut script = String::from(PREPARE);
    script.push_str(MINIMIZE);
    script.push_str(EXIT_PATHS);
    for (unit, check) in UNITS {
        script.push_str(&PER_UNIT.replace("@U@", unit).replace("@C@", check));
    }
    script.push_str(DAEMON);
    let bins = [release.join("capprof"), release.join("scenario")];
    let bins: Vec<&Path> = bins.iter().map(|b| b.as_path()).collect();
    let run = vm::run_in_systemd_vm(&rootfs, &bins, &script, Duration::from_secs(1500))?;
    let lines: Vec<&str> = run.output.lines().collect();
    let field = |tag: &str, unit: &str| -> Option<String> {
        let prefix = format!("{tag} {unit} ");
        lines.iter().rev().find_map(|l| l.strip_prefix(&prefix)).map(|s| s.trim().to_string())
    };
    for l in &lines {
        if ["BOOT ", "KERNEL ", "ERR ", "SET ", "DROPIN "].iter().any(|t| l.starts_with(t)) {
            println!("{l}");
        }
    }
    let mut failures = Vec::new();
    let mut passed = 0;
    let mut expect = |ok: bool, what: String| {
        if ok {
            passed += 1;
            println!("ok: {what}");
        } else {
            println!("FAILED: {what}");
            failures.push(what);
        }
    };
    let mut sets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (unit, _) in UNITS {
        let set: Vec<String> = field("SET", unit).unwrap_or_default().split_whitespace().filter_map(|w| w.strip_prefix("--cap-add=")).map(String::from).collect();
        sets.insert(unit, set.clone());
        expect(field("RECORD", unit).as_deref() == Some("0"), format!("{unit}: record --unit exits 0 (got {:?})", field("RECORD", unit)));
        expect(field("SET", unit).is_some_and(|s| s.starts_with("--cap-drop=ALL")), format!("{unit}: a set was recorded: {:?}", field("SET", unit)));
        expect(field("AFTER_RECORD", unit) == field("BEFORE", unit), format!("{unit}: record leaves it {:?} as it was ({:?})", field("AFTER_RECORD", unit), field("BEFORE", unit)));
        expect(field("VERIFY", unit).as_deref() == Some("0"), format!("{unit}: verify --unit with the recorded set passes (exit {:?})", field("VERIFY", unit)));
        let restored = field("RESTORED", unit).unwrap_or_default();
        let parts: Vec<&str> = restored.split_whitespace().collect();
        expect(parts.len() == 3 && parts[0] == "active" && parts[1] == parts[2], format!("{unit}: verify put it back (active, same bounding set): {restored:?}"));
        expect(field("SERVES", unit).is_some_and(|s| s.starts_with("yes")), format!("{unit}: serves under the installed drop-in: {:?}", field("SERVES", unit)));
        for cap in &set {
            let got = field("FEWER", &format!("{unit} CAP_{cap}"));
            expect(got.as_deref() == Some("fails"), format!("{unit}: fails without CAP_{cap} (oracle: {got:?})"));
        }
    }
    let lowport_dropin: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("DROPIN lowport.service ")).collect();
    expect(lowport_dropin.contains(&"AmbientCapabilities=CAP_NET_BIND_SERVICE"), "lowport.service (User=nobody): the drop-in sets AmbientCapabilities=CAP_NET_BIND_SERVICE".into());
    expect(sets.get("lowport.service").is_some_and(|s| s == &["NET_BIND_SERVICE"]), format!("lowport.service: exactly NET_BIND_SERVICE: {:?}", sets.get("lowport.service")));
    let minimized = field("MINIMIZE", "nginx.service").unwrap_or_default();
    let min_set: Vec<&str> = minimized.split_whitespace().skip(1).filter_map(|w| w.strip_prefix("--cap-add=")).collect();
    let recorded = sets.get("nginx.service").cloned().unwrap_or_default();
    expect(minimized.starts_with("0 "), format!("minimize --unit nginx exits 0: {minimized:?}"));
    expect(min_set.iter().all(|c| recorded.iter().any(|r| r == c)), format!("minimize's set {min_set:?} needs nothing record missed ({recorded:?})"));
    expect(field("AFTER_MINIMIZE", "nginx.service").as_deref() == Some("active 0"), format!("minimize put nginx back: {:?}", field("AFTER_MINIMIZE", "nginx.service")));
    expect(field("FAILING", "nginx.service").as_deref() == Some("1 active 0 same"), format!("verify --unit with a set too small exits 1 and puts nginx back: {:?}", field("FAILING", "nginx.service")));
    expect(field("INTERRUPTED", "nginx.service").as_deref() == Some("130 active 0 same"), format!("verify --unit interrupted exits 130 and puts nginx back: {:?}", field("INTERRUPTED", "nginx.service")));
    expect(
        field("RECORD_INTERRUPTED", "lowport.service").as_deref() == Some("0 inactive 1"),
        format!("record --unit ends at Ctrl-C with the profile written and the unit stopped again: {:?}", field("RECORD_INTERRUPTED", "lowport.service")),
    );
    let daemon_dropin: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("DAEMON_DROPIN lowport.service ")).collect();
    expect(
        daemon_dropin.contains(&"CapabilityBoundingSet=CAP_NET_BIND_SERVICE") && daemon_dropin.contains(&"AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        format!("daemon --services: the exported drop-in of lowport.service (User=nobody) bounds and ambient-grants NET_BIND_SERVICE: {daemon_dropin:?}"),
    );
    println!("\nvm-systemd-test: {passed} passed, {} failed", failures.len());
    if run.status != 0 {
        bail!("the VM script exited {}", run.status);
    }
    if !failures.is_empty() {
        bail!("{} systemd expectation(s) failed", failures.len());
    }
    Ok(())
}
