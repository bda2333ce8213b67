//! `cargo xtask vm-test`: the record scenarios on a second kernel. This host's kernel has no
//! kprobes and refuses fexit; Debian's 6.1 kernel (downloaded by scripts/vm-setup.sh, booted
//! under QEMU) has both and no `capability:cap_capable` tracepoint. Every backend the VM
//! supports must give every scenario its exact expected set; any difference fails the build.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::vm;

/// (name, scenario arguments, expected `--format docker` line).
const SCENARIOS: &[(&str, &str, &str)] = &[
    ("nothing", "nothing", "--cap-drop=ALL"),
    ("chown", "chown /tmp/f", "--cap-drop=ALL --cap-add=CHOWN"),
    ("bind-80", "bind 80", "--cap-drop=ALL --cap-add=NET_BIND_SERVICE"),
    ("raw-socket", "rawsock", "--cap-drop=ALL --cap-add=NET_RAW"),
    ("mknod", "mknod /tmp/null", "--cap-drop=ALL --cap-add=MKNOD"),
    ("setuid", "setuid", "--cap-drop=ALL --cap-add=SETUID"),
    ("setgid", "setgid", "--cap-drop=ALL --cap-add=SETGID"),
    ("kill", "kill $VICTIM", "--cap-drop=ALL --cap-add=KILL"),
    ("chroot", "chroot /", "--cap-drop=ALL --cap-add=SYS_CHROOT"),
    ("read-mode-000", "read /tmp/secret", "--cap-drop=ALL --cap-add=DAC_READ_SEARCH"),
    // Optional (the buffer is smaller without it): in the set until a re-run settles it.
    ("rcvbufforce", "rcvbufforce", "--cap-drop=ALL --cap-add=NET_ADMIN"),
    // Kernel sites where a granted check changes nothing, through fexit's and kprobe's view of
    // the same effect test (../shared/KERNEL-CHECK-SITES.md rows 2, 9, 12, 15). Not row 1:
    // Debian's 6.1 inlines cap_capable into commoncap's own callers (capset's inheritable test,
    // the overcommit reserve), where no kprobe or fexit on cap_capable sees it (README).
    ("setuid-self", "setuid-self", "--cap-drop=ALL"),
    ("so-mark", "so-mark", "--cap-drop=ALL --cap-add=NET_RAW"),
    // Row 12: refused, signal 0 gets EPERM, which the program sees: conditional, in the set.
    ("kill0", "kill0 $VICTIM", "--cap-drop=ALL --cap-add=KILL"),
    ("epoll-wakeup", "epoll-wakeup", "--cap-drop=ALL"),
];

/// Scenarios whose probe (or doubtful check) must also be seen (not just its effect on the
/// set): the check, in the JSON profile with blanks removed.
const PROBES_SEEN: &[(&str, &str)] = &[
    ("setuid-self", r#""capability":"SETUID","verdict":"granted","classification":"probed""#),
    ("kill0", r#""capability":"KILL","verdict":"granted","classification":"conditional""#),
    // This host's kernel has no CONFIG_PM_SLEEP (no check at all); Debian's 6.1 has it.
    ("epoll-wakeup", r#""capability":"BLOCK_SUSPEND","verdict":"granted","classification":"probed""#),
];

const BACKENDS: [&str; 2] = ["fexit", "kprobe"];

pub fn run(release: &Path) -> Result<()> {
    vm::setup()?;
    let capprof = release.join("capprof");
    let scenario = release.join("scenario");
    let mut script = String::from(
        "set -u\n\
         uname -r | sed 's/^/KERNEL /'\n\
         echo x > /tmp/f\n\
         echo s > /tmp/secret; chown 65534 /tmp/secret; chmod 000 /tmp/secret\n\
         capprof record --backend tracepoint -- true >/dev/null 2>&1; echo \"TRACEPOINT_EXIT $?\"\n",
    );
    for backend in BACKENDS {
        for (name, args, _) in SCENARIOS {
            if *name == "kill" || *name == "kill0" {
                // A fresh victim each time: the previous backend's run killed the last one.
                script.push_str("scenario sleep-as 65534 600 & VICTIM=$!; sleep 0.2\n");
            }
            script.push_str(&format!(
                "rm -f /tmp/null; capprof record --backend {backend} -f docker -o /tmp/out -- scenario {args} 2>/tmp/err; \
                 echo \"RESULT {backend} {name} $? $(cat /tmp/out 2>/dev/null)\"; [ -s /tmp/out ] || sed 's/^/ERR /' /tmp/err\n"
            ));
            if let Some((_, probe)) = PROBES_SEEN.iter().find(|(n, _)| n == name) {
                script.push_str(&format!(
                    "capprof record --backend {backend} -f json -o /tmp/p.json -- scenario {args} 2>/dev/null; \
                     tr -d ' \\n' < /tmp/p.json | grep -qF '{probe}' && echo \"PROBE {backend} {name} seen\"\n"
                ));
            }
        }
        script.push_str(&pinned_daemon_script(backend));
        script.push_str(&seccomp_script(backend));
        // The network-use hooks on this kernel (cgroup socket programs, or the syscall
        // tracepoints it falls back to): a ping socket that made no check gets its note.
        script.push_str(&format!(
            "capprof record --backend {backend} --containers always -f json -o /tmp/n.json -- scenario ping-socket-netns 2>/tmp/err || sed 's/^/ERR /' /tmp/err; \
             echo \"NET {backend} $(tr -d ' \\n' < /tmp/n.json | grep -o '\"network_hooks\":\"[a-z]*' | cut -d'\"' -f4) $(tr -d ' \\n' < /tmp/n.json | grep -c '\"capability\":\"NET_RAW\",\"operation\":\"ICMP')\"; \
             grep -o '\"network_hooks\": \"[^\"]*' /tmp/n.json | sed 's/^/NETHOOKS {backend} /'\n"
        ));
        // What the backend says it sees.
        script.push_str(&format!(
            "capprof record --backend {backend} -f json -o /tmp/p.json -- true 2>/dev/null; \
             grep -o '\"sees_opts\": [a-z]*' /tmp/p.json | sed 's/^/OPTS {backend} /'\n"
        ));
    }
    let run = vm::run_in_vm(&[&capprof, &scenario], &script, Duration::from_secs(900))?;
    let mut got: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for line in run.output.lines() {
        if line.starts_with("KERNEL ") || line.starts_with("NET ") || line.starts_with("NETHOOKS ") || line.starts_with("ERR ") || line.starts_with("OPTS ") || line.starts_with("TRACEPOINT_EXIT") {
            println!("{line}");
        }
        let Some(rest) = line.strip_prefix("RESULT ") else { continue };
        let mut parts = rest.splitn(4, ' ');
        let (Some(b), Some(n), Some(status), set) = (parts.next(), parts.next(), parts.next(), parts.next()) else { continue };
        got.insert((b.to_string(), n.to_string()), (status.to_string(), set.unwrap_or("").trim().to_string()));
    }
    let mut failures = 0;
    println!("\n| scenario | expected | {} |", BACKENDS.join(" | "));
    println!("|---|---|{}", "---|".repeat(BACKENDS.len()));
    for (name, _, expected) in SCENARIOS {
        let mut row = format!("| {name} | `{expected}` |");
        for backend in BACKENDS {
            let cell = match got.get(&(backend.to_string(), name.to_string())) {
                Some((status, set)) if status == "0" && set == expected => "same".to_string(),
                Some((status, set)) => {
                    failures += 1;
                    format!("**exit {status}: `{set}`**")
                }
                None => {
                    failures += 1;
                    "**missing**".to_string()
                }
            };
            row.push_str(&format!(" {cell} |"));
        }
        println!("{row}");
    }
    for backend in BACKENDS {
        for (name, probe) in PROBES_SEEN {
            if !run.output.contains(&format!("PROBE {backend} {name} seen")) {
                failures += 1;
                println!("{backend} {name}: the probe {probe} was not seen");
            }
        }
    }
    for backend in BACKENDS {
        let learned = format!("PIN {backend} --cap-drop=ALL --cap-add=SYS_CHROOT");
        let detached = format!("PIN_DETACH {backend} 0 0");
        for (what, line) in [("learned what ran while it was down", learned), ("left nothing pinned after --detach", detached)] {
            if run.output.lines().any(|l| l.trim() == line) {
                println!("daemon on {backend}: {what}");
            } else {
                failures += 1;
                println!("daemon on {backend}: expected `{line}`: {}", run.output.lines().filter(|l| l.starts_with(&format!("PIN {backend}")) || l.starts_with(&format!("PIN_DETACH {backend}"))).collect::<Vec<_>>().join("; "));
            }
        }
    }
    for backend in BACKENDS {
        let want = format!("SECCOMP {backend} 0 1 1");
        if run.output.lines().any(|l| l.trim() == want) {
            println!("--seccomp on {backend}: the recorded profile works, without getpid the int 0x80 call is refused and named (i386)");
        } else {
            failures += 1;
            println!("--seccomp on {backend}: expected `{want}`: {}", run.output.lines().filter(|l| l.starts_with(&format!("SECCOMP {backend}"))).collect::<Vec<_>>().join("; "));
        }
    }
    for backend in BACKENDS {
        // Either hook is right; the line says which ran. The note must be there.
        let ok = run.output.lines().any(|l| l.trim() == format!("NET {backend} cgroup 1") || l.trim() == format!("NET {backend} syscalls 1"));
        if ok {
            println!("network-use hooks on {backend}: the ping socket's portability note is there");
        } else {
            failures += 1;
            println!("network-use hooks on {backend}: expected `NET {backend} cgroup|syscalls 1`: {}", run.output.lines().filter(|l| l.starts_with(&format!("NET {backend}"))).collect::<Vec<_>>().join("; "));
        }
    }
    if !run.output.contains("TRACEPOINT_EXIT 69") {
        failures += 1;
        println!("the tracepoint backend should be refused on 6.1 with exit 69 (unsupported kernel)");
    }
    let total = (SCENARIOS.len() + PROBES_SEEN.len() + 4) * BACKENDS.len() + 1;
    println!("\nvm-test: {} passed, {failures} failed", total - failures.min(total));
    if failures > 0 {
        bail!("{failures} scenario(s) differ on the second kernel");
    }
    Ok(())
}

/// `--seccomp` on this kernel (its verifier, its BTF offsets): a compat (int 0x80) getpid
/// recorded on the i386 table; the recorded profile passes `verify` under the filter capprof
/// installs, the profile without getpid fails it and names the i386 call (refused, it is in
/// no allow list of the verified run: the one match is in `refused`).
fn seccomp_script(backend: &str) -> String {
    format!(
        "capprof record --backend {b} --seccomp -f seccomp -o /tmp/sc.json -- scenario compat-getpid 2>/tmp/err || sed 's/^/ERR /' /tmp/err\n\
         capprof verify --backend {b} --seccomp /tmp/sc.json -f json -o /tmp/v.json -- scenario compat-getpid 2>/tmp/err; OK=$?\n\
         sed '/\"getpid\"/d' /tmp/sc.json > /tmp/sc1.json\n\
         capprof verify --backend {b} --seccomp /tmp/sc1.json -f json -o /tmp/v1.json -- scenario compat-getpid 2>>/tmp/err; MINUS=$?\n\
         NAMED=$(tr -d ' \\n' < /tmp/v1.json | grep -c '\"name\":\"getpid\",\"arch\":\"i386\"')\n\
         echo \"SECCOMP {b} $OK $MINUS $NAMED\"; [ $OK = 0 ] || sed 's/^/ERR /' /tmp/err\n",
        b = backend
    )
}

/// The daemon's pinned programs on this backend (fexit or kprobe links, raw tracepoints):
/// start, kill -9, a service chroots while no daemon runs, restart: the service is learned;
/// `--detach` leaves nothing pinned.
fn pinned_daemon_script(backend: &str) -> String {
    format!(
        "mkdir -p /sys/fs/cgroup/pin-{b}.service\n\
         D_ARGS='--backend {b} --services --flush-interval 1 --socket /tmp/d.sock --state /tmp/s-{b}.redb'\n\
         capprof daemon $D_ARGS 2>/tmp/d.err & D=$!\n\
         i=0; while [ ! -S /tmp/d.sock ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
         kill -9 $D; wait $D 2>/dev/null\n\
         sh -c 'echo $$ > /sys/fs/cgroup/pin-{b}.service/cgroup.procs; exec scenario chroot /'\n\
         capprof daemon $D_ARGS 2>>/tmp/d.err & D=$!\n\
         i=0; while ! capprof export service:pin-{b}.service -f docker --socket /tmp/d.sock >/tmp/pin 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done\n\
         echo \"PIN {b} $(cat /tmp/pin)\"\n\
         kill $D; wait $D 2>/dev/null\n\
         capprof daemon --detach --state /tmp/s-{b}.redb --socket /tmp/d.sock 2>>/tmp/d.err; echo \"PIN_DETACH {b} $? $(ls /sys/fs/bpf/capprof/*/ 2>/dev/null | wc -l)\"\n\
         grep -i 'warning\\|error' /tmp/d.err | sed 's/^/ERR /'\n\
         rmdir /sys/fs/cgroup/pin-{b}.service\n",
        b = backend
    )
}
