//! Accuracy on real programs nobody here wrote: Debian's servers, installed by
//! scripts/setup.sh, each started, exercised by a real client (`--check`) and stopped.
//!
//! For each program the oracle is `capprof minimize` (re-runs under candidate sets, one
//! capability dropped at a time): record's set must equal it, directly or once `record
//! --prove` has settled what record marks as decided only by a re-run, and `verify` of that
//! set must pass. The expected sets written here were found by those re-runs, and are
//! asserted against both faces so that neither can drift.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use capprof_tests::*;

/// One program at a time: they are servers, and minimize runs each many times.
fn corpus_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

struct Program<'a> {
    argv: &'a [&'a str],
    /// A real client request that passes only while the server serves.
    check: Option<&'a str>,
    expected: &'a [&'a str],
}

fn require_program(path: &str) {
    assert!(std::path::Path::new(path).exists(), "{path} is missing: scripts/setup.sh installs the corpus (cargo xtask test runs it)");
}

/// record (+ --prove when it marked capabilities conditional) == minimize == expected, and
/// verify of the set passes.
fn corpus(p: Program) {
    require_root();
    let check: Vec<&str> = p.check.map(|c| vec!["--check", c, "--timeout", "20"]).unwrap_or_default();
    // First starts create and chown their directories: make the state steady first.
    let mut args = vec!["record"];
    args.extend(&check);
    let _ = capprof_json(&args, p.argv);

    let (status, recorded, stderr) = capprof_json(&args, p.argv);
    assert_eq!(status, 0, "record {:?}: {stderr}", p.argv);
    let w = &recorded["workloads"][0];
    let conditional: Vec<String> = w["conditional"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let mut settled = added(w);
    // Zero missing: whatever record kept beyond the expected set, it dropped nothing of it.
    let missing: Vec<&&str> = p.expected.iter().filter(|c| !settled.iter().any(|r| r == *c)).collect();
    assert!(missing.is_empty(), "record {:?} dropped {missing:?}: {recorded}", p.argv);
    if !conditional.is_empty() || settled != p.expected {
        let mut prove = args.clone();
        prove.push("--prove");
        let (status, proven, stderr) = capprof_json(&prove, p.argv);
        assert_eq!(status, 0, "record --prove {:?}: {stderr}", p.argv);
        settled = added(&proven["workloads"][0]);
        assert!(proven["workloads"][0]["conditional"].as_array().unwrap().is_empty(), "{stderr}");
    }
    eprintln!("ACCURACY {} tracer={:?} record={:?} prove={settled:?} expected={:?}", p.argv[0], traced(w), added(w), p.expected);
    assert_eq!(settled, p.expected, "record{} {:?} (conditional: {conditional:?}): {}", if conditional.is_empty() { "" } else { " --prove" }, p.argv, recorded);

    let mut args = vec!["minimize"];
    args.extend(&check);
    let (status, minimal, stderr) = capprof_json(&args, p.argv);
    assert_eq!(status, 0, "minimize {:?}: {stderr}", p.argv);
    eprintln!("ACCURACY {} minimize={:?}", p.argv[0], added(&minimal["workloads"][0]));
    assert_eq!(added(&minimal["workloads"][0]), p.expected, "the set proven by re-runs of {:?}: {stderr}", p.argv);

    let caps = if p.expected.is_empty() { "none".to_string() } else { p.expected.join(",") };
    let mut args = vec!["verify", "--caps", &caps];
    args.extend(&check);
    let (status, _, stderr) = capprof_json(&args, p.argv);
    assert_eq!(status, 0, "verify {caps} -- {:?}: {stderr}", p.argv);
}

/// What a plain tracer would report: every capability a granted check asked for (runtime
/// set-up aside), for README's accuracy table.
fn traced(w: &serde_json::Value) -> Vec<String> {
    let mut caps: Vec<String> = w["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "granted" && c["classification"] != "runtime")
        .map(|c| c["capability"].as_str().unwrap().to_string())
        .collect();
    caps.sort();
    caps.dedup();
    caps
}

/// A scratch file with `text`.
fn file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn nginx() {
    require_program("/usr/sbin/nginx");
    let _l = corpus_lock();
    let _p = port_80_lock();
    let dir = scratch("nginx");
    let conf = file(&dir, "nginx.conf", &format!(
        "user www-data;\nworker_processes 1;\npid {}/nginx.pid;\nerror_log stderr;\nevents {{ worker_connections 64; }}\n\
         http {{ access_log off; server {{ listen 127.0.0.1:80; root /var/www/html; }} }}\n",
        dir.display()
    ));
    corpus(Program {
        argv: &["nginx", "-c", &conf, "-g", "daemon off;"],
        check: Some("curl -fsS -m 5 -o /dev/null http://127.0.0.1:80/index.nginx-debian.html"),
        expected: &["NET_BIND_SERVICE", "SETGID", "SETUID"],
    });
}

#[test]
fn lighttpd() {
    require_program("/usr/sbin/lighttpd");
    let _l = corpus_lock();
    let _p = port_80_lock();
    let dir = scratch("lighttpd");
    let conf = file(&dir, "lighttpd.conf", &format!(
        "server.document-root = \"/var/www/html\"\nserver.port = 80\nserver.bind = \"127.0.0.1\"\n\
         server.username = \"www-data\"\nserver.groupname = \"www-data\"\nserver.pid-file = \"{}/l.pid\"\n",
        dir.display()
    ));
    corpus(Program {
        argv: &["lighttpd", "-D", "-f", &conf],
        check: Some("curl -fsS -m 5 -o /dev/null http://127.0.0.1:80/index.nginx-debian.html"),
        expected: &["NET_BIND_SERVICE", "SETGID", "SETUID"],
    });
}

#[test]
fn haproxy_in_its_chroot_as_its_user() {
    require_program("/usr/sbin/haproxy");
    let _l = corpus_lock();
    let dir = scratch("haproxy");
    let conf = file(&dir, "haproxy.cfg",
        "global\n  chroot /var/lib/haproxy\n  user haproxy\n  group haproxy\ndefaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n  timeout connect 5s\n\
         frontend web\n  bind 127.0.0.1:8081\n  http-request return status 200 content-type text/plain string ok\n");
    corpus(Program { argv: &["haproxy", "-f", &conf, "-db"], check: Some("curl -fsS -m 5 -o /dev/null http://127.0.0.1:8081/"), expected: &["SETGID", "SETUID", "SYS_CHROOT"] });
}

#[test]
fn redis() {
    require_program("/usr/bin/redis-server");
    let _l = corpus_lock();
    corpus(Program {
        argv: &["redis-server", "--port", "6390", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        check: Some("redis-cli -p 6390 set capprof 1 | grep -q OK"),
        expected: &[],
    });
}

#[test]
fn memcached_as_its_user() {
    require_program("/usr/bin/memcached");
    let _l = corpus_lock();
    corpus(Program {
        argv: &["memcached", "-u", "memcache", "-p", "11311", "-l", "127.0.0.1"],
        check: Some("printf 'stats\\r\\nquit\\r\\n' | busybox nc 127.0.0.1 11311 | grep -q pid"),
        expected: &["SETGID", "SETUID"],
    });
}

#[test]
fn chrony() {
    require_program("/usr/sbin/chronyd");
    let _l = corpus_lock();
    let dir = scratch("chrony");
    let conf = file(&dir, "chrony.conf", "cmdport 323\nbindcmdaddress 127.0.0.1\n");
    // -x: never touch the clock (no SYS_TIME); -d: foreground.
    corpus(Program {
        argv: &["chronyd", "-d", "-x", "-f", &conf],
        check: Some("chronyc -h 127.0.0.1 -n tracking"),
        expected: &["DAC_OVERRIDE", "NET_BIND_SERVICE", "SETGID", "SETUID"],
    });
}

#[test]
fn dnsmasq() {
    require_program("/usr/sbin/dnsmasq");
    let _l = corpus_lock();
    let dir = scratch("dnsmasq");
    // A real DNS query for a name dnsmasq answers itself.
    let query = file(&dir, "query.py",
        "import socket\nq = bytes.fromhex('123401000001000000000000') + b'\\x07capprof\\x04test\\x00\\x00\\x01\\x00\\x01'\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.settimeout(2)\ns.sendto(q, ('127.0.0.1', 53))\nassert s.recv(512)[-4:] == bytes([10, 9, 8, 7])\n");
    let check = format!("python3 {query}");
    corpus(Program {
        argv: &["dnsmasq", "-k", "--conf-file=/dev/null", "--listen-address=127.0.0.1", "--bind-interfaces", "--address=/capprof.test/10.9.8.7", "--no-resolv"],
        check: Some(&check),
        expected: &["NET_BIND_SERVICE", "SETGID", "SETUID"],
    });
}

#[test]
fn tcpdump_drops_to_its_user() {
    require_program("/usr/bin/tcpdump");
    let _l = corpus_lock();
    // tcpdump exits after one packet: keep sending some for the whole test.
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let done = done.clone();
        std::thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            while !done.load(Ordering::SeqCst) {
                let _ = s.send_to(b"capprof", "127.0.0.1:9999");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    corpus(Program { argv: &["tcpdump", "-i", "lo", "-c", "1", "-n", "-Z", "tcpdump", "udp", "port", "9999"], check: None, expected: &["NET_RAW", "SETGID", "SETUID"] });
    done.store(true, Ordering::SeqCst);
    sender.join().unwrap();
}

#[test]
fn openssh_server_with_a_key_login() {
    require_program("/usr/sbin/sshd");
    let _l = corpus_lock();
    let dir = scratch("sshd");
    let d = dir.display();
    for key in ["host", "client"] {
        let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", ""]).arg("-f").arg(dir.join(key)).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys")).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let conf = file(&dir, "sshd_config", &format!(
        "Port 2222\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM yes\nStrictModes no\nPidFile none\n"
    ));
    let check = format!("ssh -i {d}/client -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes root@127.0.0.1 true");
    corpus(Program { argv: &["/usr/sbin/sshd", "-D", "-e", "-f", &conf], check: Some(&check), expected: &["SETGID", "SETUID", "SYS_CHROOT"] });
}

#[test]
fn postgresql_started_through_su() {
    let bin = "/usr/lib/postgresql/15/bin";
    require_program(&format!("{bin}/postgres"));
    let _l = corpus_lock();
    let dir = scratch("postgres");
    let data = dir.join("data");
    let uid = Command::new("id").args(["-u", "postgres"]).output().unwrap();
    let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().expect("the postgres user (Debian's postgresql package)");
    std::os::unix::fs::chown(&dir, Some(uid), None).unwrap();
    let out = Command::new("su").args(["postgres", "-c", &format!("{bin}/initdb -D {} -A trust", data.display())]).output().unwrap();
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let server = format!("exec {bin}/postgres -D {} -p 5439 -k {} -c listen_addresses=127.0.0.1", data.display(), dir.display());
    let check = format!("{bin}/pg_isready -h 127.0.0.1 -p 5439 -q");
    corpus(Program { argv: &["su", "postgres", "-c", &server], check: Some(&check), expected: &["SETGID", "SETUID"] });
}

#[test]
fn vsftpd_tries_namespaces_and_forks_plainly_when_refused() {
    require_program("/usr/sbin/vsftpd");
    let _l = corpus_lock();
    let dir = scratch("vsftpd");
    let d = dir.display();
    for sub in ["ftproot", "empty"] {
        std::fs::create_dir(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("ftproot/hello.txt"), "hello-from-vsftpd\n").unwrap();
    for sub in ["ftproot", "empty"] {
        std::fs::set_permissions(dir.join(sub), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    }
    // isolate=YES: each session is cloned into new PID, IPC and network namespaces when
    // allowed (SYS_ADMIN), else forked plainly ("failok"); either way it serves.
    let conf = file(&dir, "vsftpd.conf", &format!(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port=2121\nbackground=NO\nanonymous_enable=YES\nno_anon_password=YES\n\
         anon_root={d}/ftproot\nftp_username=ftp\nnopriv_user=ftp\nlocal_enable=NO\nwrite_enable=NO\nsecure_chroot_dir={d}/empty\n\
         connect_from_port_20=NO\npasv_enable=YES\npasv_address=127.0.0.1\npasv_min_port=42100\npasv_max_port=42199\nisolate=YES\n\
         isolate_network=YES\nseccomp_sandbox=NO\nvsftpd_log_file={d}/vsftpd.log\n"
    ));
    // A real download and listing, and the session process really runs as ftp (uid and gid).
    let check = file(&dir, "check.sh", &format!(
        "set -e\n[ \"$(curl -sS --max-time 5 ftp://127.0.0.1:2121/hello.txt)\" = hello-from-vsftpd ]\n\
         curl -sS --max-time 5 --list-only ftp://127.0.0.1:2121/ | grep -qx hello.txt\n\
         exec 3<>/dev/tcp/127.0.0.1/2121\nread -t 3 -r l <&3\nprintf 'USER anonymous\\r\\n' >&3\nread -t 3 -r l <&3\n\
         case $l in 230*) ;; *) exit 1;; esac\nsleep 0.2\nwant=\"$(id -u ftp) $(id -u ftp) $(id -u ftp) $(id -u ftp)/$(id -g ftp) $(id -g ftp) $(id -g ftp) $(id -g ftp)\"\n\
         found=\nfor p in $(pgrep -x vsftpd); do grep -qa {d}/vsftpd.conf /proc/$p/cmdline 2>/dev/null || continue\n\
           ids=\"$(awk '/^Uid:/{{u=$2\" \"$3\" \"$4\" \"$5}} /^Gid:/{{g=$2\" \"$3\" \"$4\" \"$5}} END{{print u\"/\"g}}' /proc/$p/status)\"\n\
           [ \"$ids\" = \"$want\" ] && found=1\ndone\nprintf 'QUIT\\r\\n' >&3\n[ -n \"$found\" ]\n"
    ));
    let check = format!("bash {check}");
    corpus(Program { argv: &["vsftpd", &conf], check: Some(&check), expected: &["SETGID", "SETUID", "SYS_CHROOT"] });
}

/// A one-shot tool run as root (an administrator's copy, archive, user or attribute tool, a
/// network tool with file capabilities), judged by what it leaves: owners, modes, extended
/// attributes, what it printed. `expected` was found by an oracle independent of capprof
/// (greedy removal of each of the host's capabilities under `setpriv --bounding-set`, each
/// kept one confirmed); the test confirms it again the same way before asking capprof.
struct Tool<'a> {
    name: &'a str,
    /// Shell, in a fresh scratch directory, before every run: the state the tool works on.
    setup: &'a str,
    /// The tool, run by `sh -c` in that directory.
    run: &'a str,
    /// Shell, in that directory after the tool: passes only when the result is right.
    check: &'a str,
    expected: &'a [&'a str],
}

const LIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/lib.sh");

/// Scripts for `tool` in `dir`: set up, run (leaving `.done` with the tool's status), check and
/// set up again (the next trial of a re-run starts from the same state).
struct ToolScripts {
    dir: std::path::PathBuf,
    run: String,
    check: String,
}

fn tool_scripts(t: &Tool) -> ToolScripts {
    let dir = scratch(t.name);
    let work = dir.join("w");
    let w = work.display();
    std::fs::write(dir.join("setup.sh"), format!(". {LIB}\nrm -rf {w} && mkdir -p {w} && cd {w} || exit 1\n{}\n", t.setup)).unwrap();
    std::fs::write(dir.join("check.sh"), format!(". {LIB}\ncd {w} || exit 1\n[ -e .done ] || exit 1\n{}\n", t.check)).unwrap();
    let d = dir.display();
    // A poll of the check while the tool still runs fails without touching anything; once it
    // is done the check always sets the state up again.
    let check = format!("[ -e {w}/.done ] || exit 1; sh {d}/check.sh; r=$?; sh {d}/setup.sh; exit $r");
    let run = format!("cd {w} && ( {}\n); r=$?; touch {w}/.done; exit $r", t.run);
    ToolScripts { dir, run, check }
}

impl ToolScripts {
    fn setup(&self) {
        let out = Command::new("sh").arg(self.dir.join("setup.sh")).output().unwrap();
        assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The oracle's run: the tool under exactly `caps` (setpriv's bounding set), then its check.
    fn passes_under(&self, caps: &[&str]) -> bool {
        self.setup();
        let bounding = std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{}", c.to_lowercase()))).collect::<Vec<_>>().join(",");
        let _ = Command::new("setpriv").args(["--inh-caps=-all", "--ambient-caps=-all", &format!("--bounding-set={bounding}"), "--", "sh", "-c", &self.run]).output().unwrap();
        Command::new("sh").arg(self.dir.join("check.sh")).status().unwrap().success()
    }
}

/// The oracle confirmed, then record (zero missing), record --prove and minimize (exact, by
/// the result), and verify of the set.
fn tool(t: Tool) {
    require_root();
    let _l = corpus_lock();
    let s = tool_scripts(&t);
    assert!(s.passes_under(t.expected), "{}: the oracle's set {:?} does not give the right result", t.name, t.expected);
    for cap in t.expected {
        let without: Vec<&str> = t.expected.iter().copied().filter(|c| c != cap).collect();
        assert!(!s.passes_under(&without), "{}: the oracle's set {:?} works without {cap}", t.name, t.expected);
    }
    let argv = ["sh", "-c", &s.run];
    let judged = ["--check", &s.check, "--timeout", "20"];
    let run = |face: &[&str]| -> (Vec<String>, serde_json::Value, String) {
        s.setup();
        let mut args = face.to_vec();
        args.extend(judged);
        let (status, profile, stderr) = capprof_json(&args, &argv);
        assert_eq!(status, 0, "{} {face:?}: {stderr}", t.name);
        (added(&profile["workloads"][0]), profile, stderr)
    };
    let (recorded, profile, stderr) = run(&["record"]);
    let missing: Vec<&&str> = t.expected.iter().filter(|c| !recorded.iter().any(|r| r == *c)).collect();
    assert!(missing.is_empty(), "{}: record dropped {missing:?} (zero missing is absolute): {stderr}\n{profile}", t.name);
    let (proven, _, stderr) = run(&["record", "--prove"]);
    assert_eq!(proven, t.expected, "{}: record --prove (record gave {recorded:?}): {stderr}", t.name);
    let (minimal, _, stderr) = run(&["minimize"]);
    // What README's accuracy table counts (cargo test --test corpus -- --nocapture).
    eprintln!("ACCURACY {} tracer={:?} record={recorded:?} prove={proven:?} minimize={minimal:?} expected={:?}", t.name, traced(&profile["workloads"][0]), t.expected);
    assert_eq!(minimal, t.expected, "{}: minimize: {stderr}", t.name);
    let caps = if t.expected.is_empty() { "none".to_string() } else { t.expected.join(",") };
    let (verified, _, stderr) = run(&["verify", "--caps", &caps]);
    assert_eq!(verified, t.expected, "{}: verify: {stderr}", t.name);
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[test]
fn cp_archive_keeps_owners_modes_and_trusted_xattrs() {
    tool(Tool { name: "cp-a", setup: "make_tree src", run: "cp -a src dst", check: "check_tree dst", expected: &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SYS_ADMIN"] });
}

#[test]
fn rsync_archive_with_xattrs() {
    tool(Tool { name: "rsync-aX", setup: "make_tree src", run: "rsync -aHAX src/ dst/", check: "check_tree dst", expected: &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SYS_ADMIN"] });
}

#[test]
fn tar_extracts_owners_and_xattrs() {
    tool(Tool {
        name: "tar-xattrs",
        setup: "make_tree src; tar --xattrs --xattrs-include='*' -cpf a.tar -C src .; rm -rf src; mkdir dst",
        run: "tar --xattrs --xattrs-include='*' --same-owner -xpf a.tar -C dst",
        check: "check_tree dst",
        expected: &["CHOWN", "FOWNER", "FSETID", "SYS_ADMIN"],
    });
}

#[test]
fn cpio_extracts_owners_modes_and_times() {
    tool(Tool {
        name: "cpio",
        setup: "make_tree src; find src -exec touch -h -d @981173106 {} +; (cd src && find . -depth -print0 | cpio --null -o -H newc > ../a.cpio 2>/dev/null); rm -rf src; mkdir dst",
        run: "cd dst && cpio -idm --no-absolute-filenames -F ../a.cpio",
        check: "SKIP_TOP=1 check_tree dst noxattr && [ \"$(stat -c %Y dst/sub/g)\" = 981173106 ] || fail mtime",
        expected: &["CHOWN", "FOWNER", "FSETID"],
    });
}

#[test]
fn useradd_makes_a_home_its_user_owns() {
    tool(Tool {
        name: "useradd",
        setup: "mkdir -p etc/skel/.config etc/default home && for f in passwd group shadow gshadow login.defs; do cp -p /etc/$f etc/$f; done && \
                printf 'HOME=/home\\nSHELL=/bin/sh\\nSKEL=/etc/skel\\n' > etc/default/useradd && echo 'alias ll=ls' > etc/skel/.bashrc && echo x > etc/skel/.config/app",
        run: "useradd --prefix \"$PWD\" -m -u 2901 -U -s /bin/sh crtest",
        check: "grep -q '^crtest:x:2901:2901::/home/crtest:/bin/sh$' etc/passwd && grep -q '^crtest:' etc/shadow && expect_stat home/crtest 2901:2901:0755 && \
                expect_stat home/crtest/.bashrc 2901:2901:0644 && expect_stat home/crtest/.config/app 2901:2901:0644",
        expected: &["CHOWN", "DAC_OVERRIDE", "FOWNER"],
    });
}

#[test]
fn install_a_set_gid_tool_for_another_owner() {
    tool(Tool {
        name: "install-sgid",
        setup: "printf '#!/bin/sh\\necho hi\\n' > tool; mkdir bin",
        run: "install -o 1234 -g 2345 -m 2755 tool bin/tool",
        check: "expect_stat bin/tool 1234:2345:2755 && [ \"$(bin/tool)\" = hi ]",
        expected: &["CHOWN", "FOWNER", "FSETID"],
    });
}

#[test]
fn chgrp_of_another_users_closed_tree() {
    tool(Tool {
        name: "chgrp",
        setup: "mkdir d; echo a > d/a; chown -R 3000:3000 d; chmod 0750 d",
        run: "chgrp -R 2345 d",
        check: "expect_stat d 3000:2345:0750 && expect_stat d/a 3000:2345:0644",
        expected: &["CHOWN", "DAC_READ_SEARCH"],
    });
}

#[test]
fn chmod_set_gid_on_another_users_file() {
    tool(Tool { name: "chmod", setup: "echo '#!/bin/sh' > f; chown 3000:3000 f; chmod 0644 f", run: "chmod 2755 f", check: "expect_stat f 3000:3000:2755", expected: &["FOWNER", "FSETID"] });
}

#[test]
fn touch_sets_another_users_times() {
    tool(Tool {
        name: "touch",
        setup: "echo x > f; chown 3000:3000 f; chmod 0644 f",
        run: "touch -d @981173106 f",
        check: "expect_stat f 3000:3000:0644 && [ \"$(stat -c %Y f)\" = 981173106 ]",
        expected: &["FOWNER"],
    });
}

#[test]
fn setfattr_of_a_trusted_attribute() {
    tool(Tool {
        name: "setfattr",
        setup: "echo x > f; chown 3000:3000 f",
        run: "setfattr -n trusted.capprof -v marker f",
        check: "expect_xattr f trusted.capprof marker && expect_stat f 3000:3000:0644",
        expected: &["SYS_ADMIN"],
    });
}

#[test]
fn nice_raises_a_priority() {
    // nice warns and runs the command anyway when refused (exit 0): only the result shows it.
    tool(Tool { name: "nice", setup: "true", run: "nice -n -5 nice > out", check: "[ \"$(cat out)\" = -5 ]", expected: &["SYS_NICE"] });
}

#[test]
fn ping_as_nobody_through_its_file_capability() {
    // setpriv changes user, then execs ping, whose file capability (cap_net_raw=ep) the
    // bounding set must hold or the exec itself is refused.
    tool(Tool {
        name: "ping-nobody",
        setup: "true",
        run: "setpriv --reuid=65534 --regid=65534 --clear-groups -- ping -c1 -W2 127.0.0.1 > out 2>&1",
        check: "grep -q '^1 packets transmitted, 1 received' out",
        expected: &["NET_RAW", "SETGID", "SETUID"],
    });
}

#[test]
fn mtr_as_nobody_runs_its_file_capability_helper() {
    // mtr runs mtr-packet (cap_net_raw=ep) for its raw sockets: the helper's exec needs NET_RAW
    // in the bounding set, the drop to nobody SETUID and SETGID.
    tool(Tool {
        name: "mtr-nobody",
        setup: "true",
        run: "setpriv --reuid=65534 --regid=65534 --clear-groups -- mtr -r -n -c1 127.0.0.1 > out 2>&1",
        check: "grep -Eq '1\\.\\|-- 127\\.0\\.0\\.1 +0\\.0% +1 ' out",
        expected: &["NET_RAW", "SETGID", "SETUID"],
    });
}
