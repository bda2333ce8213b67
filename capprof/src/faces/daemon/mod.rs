//! `capprof daemon`: attach once, record every container (and optionally systemd services) on
//! the node continuously with the same rules as `record`, keep what is learned in a durable
//! store, and serve it over a local HTTP API. `capprof profiles|export` are its clients.

pub mod client;
pub mod learner;
pub mod metrics;
pub mod server;
pub mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::session::Tracer;
use learner::{Health, Learner};
use server::Shared;
use store::Store;

/// Default API socket.
pub const DEFAULT_SOCKET: &str = "/run/capprof/capprof.sock";
/// Default state file.
pub const DEFAULT_STATE: &str = "/var/lib/capprof/state.redb";

/// Validated options of `daemon`.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    /// Also listen on TCP (loopback unless configured otherwise).
    pub tcp: Option<std::net::SocketAddr>,
    /// On TCP, serve only /metrics and /health.
    pub tcp_metrics_only: bool,
    /// The node's name, on every metric series (`--node`, else `NODE_NAME`, else the host name).
    pub node: String,
    pub state: PathBuf,
    pub services: bool,
    pub flush_every: Duration,
    pub kernel: crate::session::KernelOptions,
    /// Stop after this long (tests, and recording the daemon itself).
    pub exit_after: Option<Duration>,
    /// Attach the network-use hooks (portability notes, as `record`); off, every system call
    /// on the node is spared their cost and exports say nothing about other runtimes.
    pub network_hooks: bool,
    /// Drain what earlier runs' pinned programs counted into the state, remove their pins,
    /// and exit (nothing keeps counting afterwards).
    pub detach: bool,
}

/// How often the learner reads the kernel maps.
const CYCLE: Duration = Duration::from_millis(500);

pub fn run(cfg: &DaemonConfig) -> Result<i32> {
    // What can be refused is refused before anything is attached.
    if let Some(dir) = cfg.socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    claim_socket(&cfg.socket)?;
    let store = Arc::new(Mutex::new(Store::open(&cfg.state)?));
    let mut tracer = Tracer::open(&cfg.kernel)?;
    tracer.watch_everything()?;
    if cfg.network_hooks && !cfg.detach {
        tracer.watch_network_uses()?;
    }
    // This run's programs are pinned before earlier runs' are detached: no moment without one.
    let pin_root = crate::backend::pins::state_dir(&cfg.state);
    let own = match &pin_root {
        Ok(root) if !cfg.detach => pin_generation(&mut tracer, root),
        _ => Ok(None),
    }
    .unwrap_or_else(|e| {
        eprintln!("capprof daemon: warning: {e:#}: the programs are not pinned, so what runs while the daemon is down (restarts, kill -9) is not seen");
        None
    });
    let health = Arc::new(Mutex::new(Health::default()));
    let shared = Arc::new(Shared { store: store.clone(), health: health.clone(), backend: tracer.backend_summary(), started: Instant::now(), tcp_metrics_only: cfg.tcp_metrics_only, node: cfg.node.clone() });
    let mut learner = Learner::new(tracer, store, health, cfg.services, cfg.flush_every)?;
    learner.generation = own.as_deref().map(crate::backend::pins::generation_name);
    let adopted = learner.adopt_running()?;
    if let Ok(root) = &pin_root {
        drain_earlier(&mut learner, root, own.as_deref())?;
    }
    if cfg.detach {
        learner.flush()?;
        eprintln!("capprof daemon: detached: nothing of capprof's stays attached for state {}", cfg.state.display());
        return Ok(0);
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io("starting the async runtime", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let listeners = runtime.block_on(bind(cfg))?;
    let socket_inode = inode(&cfg.socket);
    eprintln!(
        "capprof daemon: {} backend, {adopted} running workload(s) adopted, API on {}{}, state in {}",
        shared.backend.name,
        cfg.socket.display(),
        cfg.tcp.map(|a| format!(" and http://{a}")).unwrap_or_default(),
        cfg.state.display()
    );

    // The learner owns the kernel side and runs on its own thread; the API only reads the store.
    let learner_stop = stop.clone();
    let exit_after = cfg.exit_after.map(|d| Instant::now() + d);
    // Tells the API side the learner ended (its error or a stop), without a polling timer.
    let (learner_done, learner_ended) = tokio::sync::oneshot::channel::<()>();
    // Wakes the learner's wait at a stop (it may sleep until the next flush).
    let wake = Waker::new()?;
    let wake_fd = wake.fd();
    let learner_thread = std::thread::spawn(move || -> Result<()> {
        // Dropped when the thread ends, however it ends: the receiver then wakes.
        let _done = learner_done;
        let mut last_cycle = Instant::now();
        while !learner_stop.load(Ordering::SeqCst) {
            // New cgroups are looked up the moment their first event arrives (a container may
            // live for milliseconds); a pass at most every half second, and only as often as
            // something is due (`Learner::next_pass_in`): an idle daemon wakes once per flush.
            let mut wait = learner.next_pass_in(CYCLE).saturating_sub(last_cycle.elapsed());
            if let Some(t) = exit_after {
                wait = wait.min(t.saturating_duration_since(Instant::now()));
            }
            learner.wait_for_events(wait, wake_fd);
            if last_cycle.elapsed() >= learner.next_pass_in(CYCLE) {
                learner.cycle()?;
                last_cycle = Instant::now();
            }
            if exit_after.is_some_and(|t| Instant::now() >= t) {
                break;
            }
        }
        learner.last_cycle()?;
        learner.flush()
    });

    let served = runtime.block_on(async {
        let (unix, tcp) = listeners;
        let serve_unix = {
            let shared = shared.clone();
            async move {
                loop {
                    if let Ok((s, _)) = unix.accept().await {
                        tokio::spawn(server::serve(s, shared.clone(), false));
                    }
                }
            }
        };
        let serve_tcp = {
            let shared = shared.clone();
            async move {
                match tcp {
                    Some(l) => loop {
                        if let Ok((s, _)) = l.accept().await {
                            tokio::spawn(server::serve(s, shared.clone(), true));
                        }
                    },
                    None => std::future::pending::<()>().await,
                }
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| Error::io("signals", e))?;
        let until_done = async {
            let _ = learner_ended.await;
        };
        tokio::select! {
            _ = serve_unix => {}
            _ = serve_tcp => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = until_done => {}
        }
        Ok::<(), Error>(())
    });
    stop.store(true, Ordering::SeqCst);
    wake.wake();
    let learned = learner_thread.join().map_err(|_| Error::new(ErrorKind::Internal, "learner thread panicked"))?;
    release_socket(&cfg.socket, socket_inode);
    served?;
    learned?;
    eprintln!("capprof daemon: stopped, state flushed");
    Ok(0)
}

/// Pins this run's programs in a new generation directory (removed again if pinning fails).
fn pin_generation(tracer: &mut Tracer, root: &std::path::Path) -> Result<Option<std::path::PathBuf>> {
    let dir = crate::backend::pins::new_generation(root)?;
    match tracer.pin(&dir) {
        Ok(()) => Ok(Some(dir)),
        Err(e) => {
            crate::backend::pins::remove_dir(&dir);
            Err(e)
        }
    }
}

/// Learns and removes every earlier generation of pinned programs of this state.
fn drain_earlier(learner: &mut Learner, root: &std::path::Path, own: Option<&std::path::Path>) -> Result<()> {
    use crate::backend::pins;
    for dir in pins::generations(root, own) {
        if pins::owner_alive(&dir) {
            // The state is locked by this process: a live owner is a daemon of another state
            // whose directory hash collides, or a stale pid reused. Leave it.
            continue;
        }
        let mut generation = pins::Generation::detach_and_open(&dir);
        if !generation.readable() {
            eprintln!("capprof daemon: earlier programs at {} could not be read (another capprof version?): removed, their counts are lost", dir.display());
            generation.remove();
            continue;
        }
        let learned = learner.learn_generation(&mut generation)?;
        eprintln!("capprof daemon: took over from the daemon that pinned {}: {learned} check(s) counted while no daemon read them", dir.display());
        generation.remove();
    }
    let _ = std::fs::remove_dir(root);
    Ok(())
}

/// Makes `path` free for the API socket: nothing there, or a stale socket (a killed daemon's:
/// nobody accepts on it), which is removed. A socket a live daemon answers on, and anything
/// that is not a socket, are refused and left alone.
fn claim_socket(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("--socket {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::new(ErrorKind::Usage, format!("--socket {}: exists and is not a socket; not removing it", path.display())));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::new(ErrorKind::Interference, format!("--socket {}: a running daemon answers on it (stop it first, or give another --socket)", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| Error::io(format!("removing the stale socket {}", path.display()), e))?;
            eprintln!("capprof daemon: removed the stale socket {} (no daemon answered on it)", path.display());
            Ok(())
        }
        Err(e) => Err(Error::io(format!("--socket {}: cannot tell whether a daemon answers on it", path.display()), e)),
    }
}

fn inode(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// Removes the socket at exit, only if it is still the one this daemon bound.
fn release_socket(path: &std::path::Path, ours: Option<u64>) {
    if ours.is_some() && inode(path) == ours {
        let _ = std::fs::remove_file(path);
    }
}

/// Listens on the socket `run` claimed (and on TCP when asked).
async fn bind(cfg: &DaemonConfig) -> Result<(tokio::net::UnixListener, Option<tokio::net::TcpListener>)> {
    let unix = tokio::net::UnixListener::bind(&cfg.socket).map_err(|e| Error::io(format!("listening on {}", cfg.socket.display()), e))?;
    let tcp = match cfg.tcp {
        Some(addr) => {
            if !addr.ip().is_loopback() && !cfg.tcp_metrics_only {
                eprintln!("capprof daemon: warning: the API on {addr} is reachable from the network and has no authentication (--tcp-metrics-only limits it to /metrics and /health)");
            }
            Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::io(format!("listening on {addr}"), e))?)
        }
        None => None,
    };
    Ok((unix, tcp))
}

/// An eventfd the learner polls beside the ring buffer: written once at a stop.
struct Waker(std::os::fd::OwnedFd);

impl Waker {
    fn new() -> Result<Self> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::io("creating the learner's wake-up eventfd", std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just created and owned by nothing else.
        Ok(Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    fn wake(&self) {
        let one = 1u64;
        // SAFETY: an 8-byte write to our eventfd; a failure leaves the learner to its timeout.
        unsafe { libc::write(self.fd(), &one as *const u64 as *const libc::c_void, 8) };
    }
}
