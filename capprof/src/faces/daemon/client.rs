//! `capprof profiles` and `capprof export`: clients of the daemon's API on its unix socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::server::{encode, WorkloadSummary};
use crate::error::{Error, ErrorKind, Result};

/// GET `target` on the daemon; the body, or an error naming the status.
pub fn get(socket: &Path, target: &str) -> Result<String> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        Error::new(ErrorKind::Io, format!("cannot reach the daemon at {} ({e}): is `capprof daemon` running?", socket.display()))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(s, "GET {target} HTTP/1.1\r\nHost: capprof\r\nConnection: close\r\n\r\n").map_err(|e| Error::io("talking to the daemon", e))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| Error::io("reading the daemon's answer", e))?;
    let (head, body) = buf.split_once("\r\n\r\n").ok_or_else(|| Error::new(ErrorKind::Io, "malformed answer from the daemon"))?;
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    match status {
        200 => Ok(body.to_string()),
        400 => Err(Error::new(ErrorKind::Usage, body.trim().to_string())),
        404 => Err(Error::new(ErrorKind::Usage, body.trim().to_string())),
        _ => Err(Error::new(ErrorKind::Io, format!("daemon answered {status}: {}", body.trim()))),
    }
}

/// The table of `capprof profiles`.
pub fn profiles(socket: &Path) -> Result<String> {
    let body = get(socket, "/workloads")?;
    let list: Vec<WorkloadSummary> = serde_json::from_str(&body).map_err(|e| Error::new(ErrorKind::MalformedInput, format!("daemon's workload list: {e}")))?;
    let now = super::learner::now();
    let ago = |t: u64| if t == 0 { "never".to_string() } else { human_duration(now.saturating_sub(t)) + " ago" };
    let mut out = format!("{:<44} {:>7} {:>4}  {:<10} {:<14} USED\n", "WORKLOAD", "GRANTED", "USED", "OBSERVED", "LAST NEW CAP");
    for w in &list {
        let used: Vec<&str> = w.used.iter().map(|c| c.name()).collect();
        out.push_str(&format!(
            "{:<44} {:>7} {:>4}  {:<10} {:<14} {}\n",
            crate::format::plain(&w.id),
            if w.granted.is_empty() { "?".to_string() } else { w.granted.len().to_string() },
            w.used.len(),
            human_duration(w.last_seen.saturating_sub(w.first_seen)),
            ago(w.last_new_capability),
            if used.is_empty() { "-".to_string() } else { used.join(",") }
        ));
    }
    if list.is_empty() {
        out.push_str("(no workload seen yet)\n");
    }
    Ok(out)
}

/// `capprof export`: one workload (`id`), a namespace, or everything.
pub fn export(socket: &Path, id: Option<&str>, namespace: Option<&str>, format: &str) -> Result<String> {
    let selector = match (id, namespace) {
        (Some(id), _) => format!("id={}", encode(id)),
        (None, Some(ns)) => format!("namespace={}", encode(ns)),
        (None, None) => "all=1".to_string(),
    };
    get(socket, &format!("/profile?{selector}&format={format}"))
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}
