//! Scenario helper: performs exactly one privileged operation per subcommand, so a test can
//! run it under `capprof record` and expect an exact capability set. Exits 0 when the
//! operation succeeded, 1 when it failed (with the errno on stderr), 2 on bad usage.

use std::ffi::CString;
use std::io::Error;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("scenario {}: {e}", args.join(" "));
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> std::io::Result<()> {
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    match args.first().map(String::as_str) {
        Some("nothing") => Ok(()),
        // The same process, once FILE exists: for recordings that attach to something already
        // running (the test creates FILE when capprof says it is recording).
        Some("when") => {
            while !std::path::Path::new(&arg(1)).exists() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            run(args.get(2..).unwrap_or_default())
        }
        Some("chown") => path_call(&arg(1), |p| unsafe { libc::chown(p, 65534, 65534) }),
        Some("bind") => bind_tcp(arg(1).parse().unwrap_or_else(|_| usage())),
        // A minimal HTTP server on PORT, forever (a service run as a non-root User=).
        Some("serve") => serve(arg(1).parse().unwrap_or_else(|_| usage())),
        // An ICMP datagram socket in a new network namespace whose ping_group_range covers
        // every group (as Docker's do): allowed without a check (the portability note's case).
        Some("ping-socket-netns") => ping_socket_netns(),
        Some("rawsock") => check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) }),
        Some("mknod") => path_call(&arg(1), |p| unsafe { libc::mknod(p, libc::S_IFCHR | 0o600, libc::makedev(1, 3)) }),
        Some("setuid") => check(unsafe { libc::setuid(65534) }),
        Some("setgid") => check(unsafe { libc::setgid(65534) }),
        Some("kill") => check(unsafe { libc::kill(arg(1).parse().unwrap_or_else(|_| usage()), libc::SIGTERM) }),
        // A program that relies on the set-gid bit it sets: the kernel clears it silently
        // without FSETID (for a file of a group the caller is not in), so check it stuck.
        Some("chmod-setgid") => path_call(&arg(1), |p| unsafe { libc::chmod(p, 0o2755) }).and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(arg(1))?.permissions().mode() & 0o2000 {
                0 => Err(Error::other("the set-gid bit was cleared")),
                _ => Ok(()),
            }
        }),
        Some("chroot") => path_call(&arg(1), |p| unsafe { libc::chroot(p) }),
        Some("read") => std::fs::read(arg(1)).map(|_| ()),
        Some("open-rw") => std::fs::OpenOptions::new().read(true).write(true).open(arg(1)).map(|_| ()),
        Some("rcvbufforce") => rcvbufforce(),
        Some("so-mark") => so_mark(),
        Some("setuid-loop") => loop_n(&arg(1), || unsafe { libc::syscall(libc::SYS_setuid, 0) as i32 }),
        Some("mmap-loop") => loop_n(&arg(1), mmap_once),
        Some("timed-loop") => match arg(1).as_str() {
            "setuid" => timed_loop(&arg(2), || unsafe { libc::syscall(libc::SYS_setuid, 0) as i32 }),
            "mmap" => timed_loop(&arg(2), mmap_once),
            // A system call that makes no capability check: what every syscall pays for
            // capprof's exit hook.
            "getppid" => timed_loop(&arg(2), || unsafe { libc::getppid() }),
            _ => usage(),
        },
        // N inet sockets, each bound to an ephemeral port: what every socket and bind on a host
        // pays the network-use hooks (`cargo xtask bench --hooks-only`).
        Some("sockets") => (0..arg(1).parse::<u32>().unwrap_or_else(|_| usage())).try_for_each(|_| std::net::TcpListener::bind(("127.0.0.1", 0)).map(drop)),
        Some("chroot-n") => (0..arg(1).parse::<u32>().unwrap_or_else(|_| usage())).try_for_each(|_| path_call("/", |p| unsafe { libc::chroot(p) })),
        Some("names") => distinct_names(arg(1).parse().unwrap_or_else(|_| usage())),
        Some("sleep") => {
            std::thread::sleep(std::time::Duration::from_secs_f64(arg(1).parse().unwrap_or_else(|_| usage())));
            Ok(())
        }
        Some("sleep-as") => sleep_as(arg(1).parse().unwrap_or_else(|_| usage()), arg(2).parse().unwrap_or_else(|_| usage())),
        Some("exit") => std::process::exit(arg(1).parse().unwrap_or_else(|_| usage())),
        // Probes and needs at the same kernel sites (../shared/KERNEL-CHECK-SITES.md).
        Some("capset-same") => capset(|_| {}),
        Some("capset-raise-inheritable") => capset_raise_inheritable(),
        Some("setuid-self") => check(unsafe { libc::setuid(libc::getuid()) }),
        Some("setgid-self") => check(unsafe { libc::setgid(libc::getgid()) }),
        Some("kill0") => check(unsafe { libc::kill(arg(1).parse().unwrap_or_else(|_| usage()), 0) }),
        Some("chmod-plain") => path_call(&arg(1), |p| unsafe { libc::chmod(p, 0o755) }),
        Some("fork") => (0..arg(1).parse::<u32>().unwrap_or_else(|_| usage())).try_for_each(|_| fork_and_wait()),
        Some("shmget") => (0..arg(1).parse::<u32>().unwrap_or_else(|_| usage())).try_for_each(|_| shmget()),
        Some("stack-grow") => {
            stack_grow(32);
            Ok(())
        }
        Some("epoll-wakeup") => epoll_wakeup(),
        // A 32-bit compat system call from a 64-bit process (int 0x80: the i386 table).
        Some("compat-getpid") => compat_getpid(),
        // As nobody but keeping DAC_READ_SEARCH (where the set allows it): list DIR.
        Some("list-as-nobody") => list_as_nobody(&arg(1)),
        Some("touch") => path_call(&arg(1), |p| unsafe { libc::utimensat(libc::AT_FDCWD, p, std::ptr::null(), 0) }),
        Some("touch-at") => {
            let t = [libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 0 }; 2];
            path_call(&arg(1), |p| unsafe { libc::utimensat(libc::AT_FDCWD, p, t.as_ptr(), 0) })
        }
        Some("listxattr") => listxattr(&arg(1)),
        // A tool that degrades silently: chowns FILE to nobody, warns when refused, exits 0
        // (as useradd does for a home directory).
        Some("chown-or-warn") => {
            if let Err(e) = path_call(&arg(1), |p| unsafe { libc::chown(p, 65534, 65534) }) {
                eprintln!("scenario: warning: cannot chown {}: {e}", arg(1));
            }
            Ok(())
        }
        // A server that isolates itself in new namespaces when it may and forks plainly when
        // refused (vsftpd's isolate=YES), then serves on PORT.
        Some("serve-try-unshare") => {
            if unsafe { libc::unshare(libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) } < 0 {
                eprintln!("scenario: no namespaces ({}): serving without", Error::last_os_error());
            }
            serve(arg(1).parse().unwrap_or_else(|_| usage()))
        }
        Some("set-trusted-xattr") => path_call(&arg(1), |p| unsafe { libc::setxattr(p, c"trusted.capprof".as_ptr(), b"1".as_ptr().cast(), 1, 0) }),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: scenario nothing | when FILE SUBCOMMAND... | chown FILE | bind PORT | serve PORT | ping-socket-netns | rawsock | mknod PATH | setuid | setgid | kill PID | chmod-setgid FILE | chroot DIR | read FILE | open-rw FILE | rcvbufforce | so-mark | setuid-loop N | mmap-loop N | sockets N | timed-loop setuid|mmap|getppid SECS | chroot-n N | names N | sleep SECS | sleep-as UID SECS | exit CODE | capset-same | capset-raise-inheritable | setuid-self | setgid-self | kill0 PID | chmod-plain FILE | fork N | shmget N | stack-grow | epoll-wakeup | compat-getpid | list-as-nobody DIR | touch FILE | touch-at FILE | listxattr FILE | set-trusted-xattr FILE | chown-or-warn FILE | serve-try-unshare PORT"
    );
    std::process::exit(2)
}

fn check(rc: i32) -> std::io::Result<()> {
    if rc < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(())
    }
}

fn path_call(path: &str, f: impl FnOnce(*const libc::c_char) -> i32) -> std::io::Result<()> {
    let c = CString::new(path).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    check(f(c.as_ptr()))
}

fn bind_tcp(port: u16) -> std::io::Result<()> {
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
    drop(listener);
    Ok(())
}

fn ping_socket_netns() -> std::io::Result<()> {
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")?;
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP) };
    check(fd)?;
    unsafe { libc::close(fd) };
    Ok(())
}

fn serve(port: u16) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
    }
    Ok(())
}

/// Asks for a forced receive buffer (CAP_NET_ADMIN) and falls back silently, as many
/// daemons do.
fn rcvbufforce() -> std::io::Result<()> {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        check(fd)?;
        let size: libc::c_int = 1 << 20;
        let p = &size as *const libc::c_int as *const libc::c_void;
        let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) < 0 {
            check(libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, len))?;
        }
        libc::close(fd);
    }
    Ok(())
}

fn mmap_once() -> i32 {
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if p == libc::MAP_FAILED {
            return -1;
        }
        libc::munmap(p, 4096)
    }
}

/// Runs `f` N times in batches of 1,000 and prints the 10th-percentile batch's nanoseconds
/// per iteration (for BENCHMARKS.md): on a shared VM, preemption and steal time inflate some
/// batches by far more than the cost being measured; the low percentile is the loop's own cost.
fn loop_n(n: &str, mut f: impl FnMut() -> i32) -> std::io::Result<()> {
    const BATCH: u64 = 1000;
    let n: u64 = n.parse().unwrap_or_else(|_| usage());
    let mut batches = Vec::with_capacity((n / BATCH) as usize + 1);
    for _ in 0..n.div_ceil(BATCH) {
        let start = std::time::Instant::now();
        for _ in 0..BATCH {
            check(f())?;
        }
        batches.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    batches.sort_by(|a, b| a.total_cmp(b));
    println!("{:.1}", batches[batches.len() / 10]);
    Ok(())
}

/// Calls `f` for SECS seconds, timing every call; prints one line per batch of 1,000 calls:
/// `START END MEDIAN` (CLOCK_MONOTONIC ns, median call ns). For the benchmark that attaches
/// and detaches tracers while this one process runs: comparing phases of the same process
/// removes the run-to-run differences between processes that swamp the cost measured.
fn timed_loop(secs: &str, mut f: impl FnMut() -> i32) -> std::io::Result<()> {
    let secs: f64 = secs.parse().unwrap_or_else(|_| usage());
    let now = || {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    };
    let end = now() + (secs * 1e9) as u64;
    let mut calls = [0u64; 1000];
    let mut out = String::new();
    loop {
        let start = now();
        if start >= end {
            break;
        }
        for c in calls.iter_mut() {
            let t = now();
            check(f())?;
            *c = now() - t;
        }
        calls.sort_unstable();
        out.push_str(&format!("{start} {} {}\n", now(), calls[calls.len() / 2]));
    }
    // Printed at the end: writing while timing would add pipe wake-ups to the calls.
    print!("{out}");
    Ok(())
}

/// Makes N checks that differ by task name (each a distinct key in capprof's map): for the
/// loss-reporting test.
fn distinct_names(n: u32) -> std::io::Result<()> {
    for i in 0..n {
        let name = CString::new(format!("n{i}")).expect("name");
        check(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) })?;
        check(mmap_once())?;
    }
    Ok(())
}

/// Becomes `uid` (and its gid) and sleeps: another user's process, for the kill scenario
/// where no `setpriv` exists (the test VM).
fn sleep_as(uid: u32, secs: f64) -> std::io::Result<()> {
    check(unsafe { libc::setgid(uid) })?;
    check(unsafe { libc::setuid(uid) })?;
    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capget, `edit`, capset: what libcap's cap_set_proc does.
fn capset(edit: impl FnOnce(&mut [CapData; 2])) -> std::io::Result<()> {
    let mut header = CapHeader { version: 0x2008_0522, pid: 0 };
    let mut data = [CapData::default(); 2];
    check(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } as i32)?;
    edit(&mut data);
    check(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } as i32)
}

/// Drops CHOWN from the permitted set (a narrowing: no SETPCAP effect), then asks for it in
/// the inheritable set, beyond the permitted one: that needs SETPCAP.
fn capset_raise_inheritable() -> std::io::Result<()> {
    capset(|d| {
        d[0].permitted &= !1;
        d[0].effective &= !1;
        d[0].inheritable &= !1;
    })?;
    capset(|d| d[0].inheritable |= 1)
}

fn fork_and_wait() -> std::io::Result<()> {
    let pid = unsafe { libc::fork() };
    check(pid)?;
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    check(unsafe { libc::waitpid(pid, &mut status, 0) })
}

fn shmget() -> std::io::Result<()> {
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 1 << 20, libc::IPC_CREAT | 0o600) };
    check(id)?;
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) })
}

/// Touches 64 KiB of fresh stack per level: the stack vma grows (acct_stack_growth).
#[inline(never)]
fn stack_grow(levels: u32) -> u8 {
    let mut page = [0u8; 65536];
    page[levels as usize] = levels as u8;
    let page = std::hint::black_box(page);
    if levels == 0 {
        return page[0];
    }
    stack_grow(levels - 1).wrapping_add(page[levels as usize])
}

/// EPOLLWAKEUP without BLOCK_SUSPEND is cleared silently.
fn epoll_wakeup() -> std::io::Result<()> {
    unsafe {
        let ep = libc::epoll_create1(0);
        check(ep)?;
        let mut fds = [0; 2];
        check(libc::pipe(fds.as_mut_ptr()))?;
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLWAKEUP) as u32, u64: 0 };
        check(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fds[0], &mut ev))?;
    }
    Ok(())
}

/// Lists `path`'s extended attributes, one name a line on stdout (what a copy would carry).
fn listxattr(path: &str) -> std::io::Result<()> {
    let c = CString::new(path).map_err(|_| Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = [0u8; 4096];
    let n = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    check(n as i32)?;
    for name in buf[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        println!("{}", String::from_utf8_lossy(name));
    }
    Ok(())
}

/// Becomes uid/gid 65534 keeping its permitted set, raises DAC_READ_SEARCH in the effective
/// set when it is permitted, and lists `dir`. After the id change the process is not dumpable:
/// its /proc/self belongs to root, so listing /proc/self/fd asks for DAC_READ_SEARCH first.
fn list_as_nobody(dir: &str) -> std::io::Result<()> {
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })?;
    check(unsafe { libc::setgroups(0, std::ptr::null()) })?;
    check(unsafe { libc::setresgid(65534, 65534, 65534) })?;
    check(unsafe { libc::setresuid(65534, 65534, 65534) })?;
    let _ = capset(|d| d[0].effective |= d[0].permitted & (1 << 2));
    std::fs::read_dir(dir)?.try_for_each(|e| e.map(|_| ()))
}

/// SO_MARK: NET_RAW or NET_ADMIN (sk_setsockopt asks NET_RAW first); refused, EPERM.
fn so_mark() -> std::io::Result<()> {
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        check(fd)?;
        let mark: libc::c_int = 7;
        let rc = libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_MARK, (&mark as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t);
        libc::close(fd);
        check(rc)
    }
}

/// i386's getpid (20) through `int 0x80`: the kernel runs it from its compat table and reports
/// it as AUDIT_ARCH_I386. Fails when it does not return a pid (a filter refused it).
#[cfg(target_arch = "x86_64")]
fn compat_getpid() -> std::io::Result<()> {
    let ret: i64;
    // SAFETY: int 0x80 with eax = 20 (getpid) takes no arguments and touches no memory.
    unsafe { std::arch::asm!("int 0x80", inlateout("rax") 20i64 => ret, options(nostack)) };
    if ret > 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error((-ret) as i32))
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn compat_getpid() -> std::io::Result<()> {
    Err(std::io::Error::other("int 0x80 is x86's"))
}
