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
    if !conditional.is_empty() {
        let mut prove = args.clone();
        prove.push("--prove");
        let (status, proven, stderr) = capprof_json(&prove, p.argv);
        assert_eq!(status, 0, "record --prove {:?}: {stderr}", p.argv);
        settled = added(&proven["workloads"][0]);
        assert!(proven["workloads"][0]["conditional"].as_array().unwrap().is_empty(), "{stderr}");
    }
    assert_eq!(settled, p.expected, "record{} {:?} (conditional: {conditional:?}): {}", if conditional.is_empty() { "" } else { " --prove" }, p.argv, recorded);

    let mut args = vec!["minimize"];
    args.extend(&check);
    let (status, minimal, stderr) = capprof_json(&args, p.argv);
    assert_eq!(status, 0, "minimize {:?}: {stderr}", p.argv);
    assert_eq!(added(&minimal["workloads"][0]), p.expected, "the set proven by re-runs of {:?}: {stderr}", p.argv);

    let caps = if p.expected.is_empty() { "none".to_string() } else { p.expected.join(",") };
    let mut args = vec!["verify", "--caps", &caps];
    args.extend(&check);
    let (status, _, stderr) = capprof_json(&args, p.argv);
    assert_eq!(status, 0, "verify {caps} -- {:?}: {stderr}", p.argv);
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
