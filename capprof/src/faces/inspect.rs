//! Small tools: `decode MASK` (like `capsh --decode`) and `caps PID` (a process's sets).

use std::fmt::Write as _;

use crate::capability::CapSet;
use crate::error::{Error, ErrorKind, Result};

/// `0x00000000a80425fb=cap_chown,...` and one line per capability.
pub fn decode(mask: &str) -> Result<String> {
    let set = CapSet::from_hex(mask)?;
    let mut out = format!("{:#018x}={set}\n", set.0);
    for cap in set.iter() {
        let _ = writeln!(out, "  {:<2} {:<20} {}", cap.number(), cap.name(), cap.allows());
    }
    Ok(out)
}

/// The five capability sets of a running process.
pub fn caps(pid: &str) -> Result<String> {
    let pid: u32 = pid.trim().parse().map_err(|_| Error::new(ErrorKind::Usage, format!("{pid:?} is not a process id")))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| Error::new(ErrorKind::Usage, format!("no process with PID {pid} ({e})")))?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let mut out = format!("process {pid} ({})\n", field("Name:").unwrap_or("?"));
    for (label, key) in [
        ("effective", "CapEff:"),
        ("permitted", "CapPrm:"),
        ("inheritable", "CapInh:"),
        ("bounding", "CapBnd:"),
        ("ambient", "CapAmb:"),
    ] {
        let hex = field(key).ok_or_else(|| Error::new(ErrorKind::Internal, format!("/proc/{pid}/status has no {key} line")))?;
        let set = CapSet::from_hex(hex)?;
        let _ = writeln!(out, "  {label:<12} {hex}  {}", if set == CapSet::full() { "(all)".to_string() } else { set.to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_lists_names() {
        let out = decode("0x42401").unwrap();
        assert!(out.starts_with("0x0000000000042401=cap_chown,cap_net_bind_service,cap_net_raw,cap_sys_chroot\n"), "{out}");
        assert!(out.contains("SYS_CHROOT"));
        assert_eq!(out.lines().count(), 5);
    }

    #[test]
    fn caps_of_self_and_bad_pids() {
        let me = std::process::id().to_string();
        let out = caps(&me).unwrap();
        assert!(out.contains("effective") && out.contains("ambient"), "{out}");
        assert_eq!(caps("abc").unwrap_err().kind(), ErrorKind::Usage);
        assert_eq!(caps("999999999").unwrap_err().kind(), ErrorKind::Usage);
    }
}
