//! Linux capabilities: numbers, names, parsing, set arithmetic and what each one gives away.
//!
//! Names are printed upper case without `CAP_` (Docker's spelling); parsing accepts any case,
//! with or without the prefix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind};

/// A capability by number (`CAP_CHOWN` = 0 ... `CAP_CHECKPOINT_RESTORE` = 40).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(u8);

/// Per capability: name, what it allows, what an attacker with code execution gains.
const TABLE: &[(&str, &str, &str)] = &[
    ("CHOWN", "change file owners", "take over files in mounted volumes"),
    ("DAC_OVERRIDE", "bypass read/write/execute permission checks", "read or write any file in mounted volumes"),
    ("DAC_READ_SEARCH", "bypass file read and directory search checks", "read any file in mounted volumes; open_by_handle_at escapes"),
    ("FOWNER", "bypass owner-only checks (chmod, utime, ...)", "change metadata of mounted files"),
    ("FSETID", "keep set-id bits when modifying files", "plant set-id backdoors in writable mounts"),
    ("KILL", "signal any process", "kill other workloads in a shared PID namespace"),
    ("SETGID", "change process GIDs", "pivot to other groups"),
    ("SETUID", "change process UIDs", "pivot to other users"),
    ("SETPCAP", "change capability sets", "re-add dropped capabilities (with namespaces)"),
    ("LINUX_IMMUTABLE", "set immutable and append-only file flags", "make tampering permanent"),
    ("NET_BIND_SERVICE", "bind ports below 1024", "squat a privileged port to intercept traffic"),
    ("NET_BROADCAST", "broadcast and multicast", "little on its own"),
    ("NET_ADMIN", "configure interfaces, routes, firewall", "redirect or sniff the node's traffic"),
    ("NET_RAW", "raw and packet sockets", "ARP spoofing, sniffing, crafted packets"),
    ("IPC_LOCK", "lock memory", "exhaust the node's memory"),
    ("IPC_OWNER", "bypass IPC permission checks", "read other workloads' shared memory"),
    ("SYS_MODULE", "load kernel modules", "full kernel compromise"),
    ("SYS_RAWIO", "raw I/O ports and devices", "read or write host memory and disks"),
    ("SYS_CHROOT", "chroot()", "limited escape vectors"),
    ("SYS_PTRACE", "trace and inspect any process", "steal secrets from other processes"),
    ("SYS_PACCT", "process accounting", "fill the disk"),
    ("SYS_ADMIN", "mount, namespaces, and much more", "near-root: container escape"),
    ("SYS_BOOT", "reboot", "reboot the node"),
    ("SYS_NICE", "raise priority, set other processes' scheduling", "starve other workloads"),
    ("SYS_RESOURCE", "exceed resource limits", "exhaust node resources"),
    ("SYS_TIME", "set the system clock", "break TLS and log timelines"),
    ("SYS_TTY_CONFIG", "configure ttys", "little in a container"),
    ("MKNOD", "create device nodes", "create a disk device and read it raw"),
    ("LEASE", "take file leases", "block other processes' opens"),
    ("AUDIT_WRITE", "write the kernel audit log", "flood the log to hide activity"),
    ("AUDIT_CONTROL", "configure auditing", "switch auditing off"),
    ("SETFCAP", "set file capabilities", "persist privileges on binaries"),
    ("MAC_OVERRIDE", "override MAC policy (Smack)", "bypass the LSM"),
    ("MAC_ADMIN", "configure MAC policy", "rewrite the LSM policy"),
    ("SYSLOG", "privileged syslog operations", "read kernel addresses (KASLR bypass)"),
    ("WAKE_ALARM", "set wake-up alarms", "little"),
    ("BLOCK_SUSPEND", "block system suspend", "drain batteries"),
    ("AUDIT_READ", "read the audit log", "read other workloads' audit trail"),
    ("PERFMON", "performance monitoring", "read kernel memory layouts and other workloads' activity"),
    ("BPF", "load BPF programs and maps", "with PERFMON: read kernel memory"),
    ("CHECKPOINT_RESTORE", "checkpoint/restore operations", "choose PIDs, read process state"),
];

/// The highest capability number this build knows.
pub const LAST: u8 = (TABLE.len() - 1) as u8;

/// Docker's and containerd's default set (14).
pub const DOCKER_DEFAULT: [Capability; 14] = [
    Capability::CHOWN,
    Capability::DAC_OVERRIDE,
    Capability::FSETID,
    Capability::FOWNER,
    Capability::MKNOD,
    Capability::NET_RAW,
    Capability::SETGID,
    Capability::SETUID,
    Capability::SETFCAP,
    Capability::SETPCAP,
    Capability::NET_BIND_SERVICE,
    Capability::SYS_CHROOT,
    Capability::KILL,
    Capability::AUDIT_WRITE,
];

/// podman's default set (11: Docker's without MKNOD, NET_RAW and AUDIT_WRITE).
pub const PODMAN_DEFAULT: [Capability; 11] = [
    Capability::CHOWN,
    Capability::DAC_OVERRIDE,
    Capability::FOWNER,
    Capability::FSETID,
    Capability::KILL,
    Capability::NET_BIND_SERVICE,
    Capability::SETFCAP,
    Capability::SETGID,
    Capability::SETPCAP,
    Capability::SETUID,
    Capability::SYS_CHROOT,
];

impl Capability {
    pub const CHOWN: Self = Self(0);
    pub const DAC_OVERRIDE: Self = Self(1);
    pub const DAC_READ_SEARCH: Self = Self(2);
    pub const FOWNER: Self = Self(3);
    pub const FSETID: Self = Self(4);
    pub const KILL: Self = Self(5);
    pub const SETGID: Self = Self(6);
    pub const SETUID: Self = Self(7);
    pub const SETPCAP: Self = Self(8);
    pub const NET_BIND_SERVICE: Self = Self(10);
    pub const NET_ADMIN: Self = Self(12);
    pub const NET_RAW: Self = Self(13);
    pub const SYS_RAWIO: Self = Self(17);
    pub const SYS_CHROOT: Self = Self(18);
    pub const SYS_PTRACE: Self = Self(19);
    pub const SYS_ADMIN: Self = Self(21);
    pub const SYS_NICE: Self = Self(23);
    pub const SYS_RESOURCE: Self = Self(24);
    pub const MKNOD: Self = Self(27);
    pub const AUDIT_WRITE: Self = Self(29);
    pub const SETFCAP: Self = Self(31);
    pub const BLOCK_SUSPEND: Self = Self(36);
    pub const BPF: Self = Self(39);
    pub const PERFMON: Self = Self(38);
    pub const CHECKPOINT_RESTORE: Self = Self(40);

    /// The capability with this number, if this build knows it.
    pub fn from_number(n: u32) -> Option<Self> {
        (n <= LAST as u32).then_some(Self(n as u8))
    }

    pub fn number(self) -> u32 {
        self.0 as u32
    }

    /// Upper case, without `CAP_`.
    pub fn name(self) -> &'static str {
        TABLE[self.0 as usize].0
    }

    /// What the capability allows.
    pub fn allows(self) -> &'static str {
        TABLE[self.0 as usize].1
    }

    /// What an attacker with code execution gains from it.
    pub fn risk(self) -> &'static str {
        TABLE[self.0 as usize].2
    }

    /// Every capability this build knows, in number order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..=LAST).map(Self)
    }

    /// The ones most often singled out to drop.
    pub fn is_notorious(self) -> bool {
        matches!(self, Self::NET_RAW | Self::MKNOD | Self::SYS_ADMIN | Self::SYS_PTRACE | Self::DAC_READ_SEARCH)
    }
}

/// Name of a capability number, also for numbers newer than this build (`CAP_41`).
/// A capability as the kernel numbered it: one this capprof knows, or a number it has no name
/// for (a newer kernel's). Written as its name (`CHOWN`, or `CAP_41`); ordered by that name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapabilityId {
    Known(Capability),
    Unknown(u32),
}

impl CapabilityId {
    pub fn from_number(n: u32) -> Self {
        Capability::from_number(n).map_or(Self::Unknown(n), Self::Known)
    }

    /// The capability, when this capprof knows it.
    pub fn known(self) -> Option<Capability> {
        match self {
            Self::Known(c) => Some(c),
            Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for CapabilityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(c) => f.pad(c.name()),
            Self::Unknown(n) => f.pad(&format!("CAP_{n}")),
        }
    }
}

impl PartialOrd for CapabilityId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CapabilityId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialEq<&str> for CapabilityId {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Self::Known(c) => c.name() == *other,
            Self::Unknown(n) => other.strip_prefix("CAP_").is_some_and(|rest| rest == n.to_string()),
        }
    }
}

impl Serialize for CapabilityId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CapabilityId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(c) = s.parse::<Capability>() {
            return Ok(Self::Known(c));
        }
        s.strip_prefix("CAP_")
            .and_then(|n| n.parse::<u32>().ok())
            .map(Self::from_number)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown capability {s:?}")))
    }
}

pub fn name_of(n: u32) -> String {
    Capability::from_number(n).map(|c| c.name().to_string()).unwrap_or_else(|| format!("CAP_{n}"))
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Capability {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let trimmed = s.trim();
        let upper = trimmed.to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        TABLE
            .iter()
            .position(|(name, _, _)| *name == bare)
            .map(|i| Self(i as u8))
            .ok_or_else(|| {
                Error::new(ErrorKind::Usage, format!("unknown capability name {trimmed:?} (see `capprof decode 1ffffffffff` for the names)"))
            })
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A set of capabilities as the kernel's 64-bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapSet(pub u64);

impl CapSet {
    pub fn empty() -> Self {
        Self(0)
    }

    pub fn full() -> Self {
        Self::from_iter(Capability::all())
    }

    pub fn contains(self, c: Capability) -> bool {
        self.0 & (1u64 << c.0) != 0
    }

    pub fn insert(&mut self, c: Capability) {
        self.0 |= 1u64 << c.0;
    }

    pub fn remove(&mut self, c: Capability) {
        self.0 &= !(1u64 << c.0);
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members in number order; bits beyond what this build knows are skipped (see `unknown_bits`).
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::all().filter(move |c| self.contains(*c))
    }

    /// Bits set for capabilities newer than this build.
    pub fn unknown_bits(self) -> u64 {
        self.0 & !Self::full().0
    }

    /// Members sorted by name (the order of `--cap-add` flags).
    pub fn sorted_names(self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.iter().map(|c| c.name()).collect();
        v.sort_unstable();
        v
    }

    /// Parses a hex mask as in /proc/PID/status (`00000000a80425fb`, `0x...` accepted).
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let t = s.trim();
        let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
        if digits.is_empty() || digits.len() > 16 {
            return Err(Error::new(ErrorKind::Usage, format!("{t:?} is not a capability mask: expected up to 16 hex digits")));
        }
        u64::from_str_radix(digits, 16)
            .map(Self)
            .map_err(|_| Error::new(ErrorKind::Usage, format!("{t:?} is not a capability mask: expected hex digits")))
    }

    /// Parses a comma- or space-separated list of names; `ALL` and `NONE` are accepted.
    ///
    /// An empty list is refused (say `none`), and so are `none` or `all` beside other names:
    /// `none,chown` could mean either, and a set is too important to guess.
    pub fn parse_list(s: &str) -> Result<Self, Error> {
        let items: Vec<&str> = s.split([',', ' ']).map(str::trim).filter(|i| !i.is_empty()).collect();
        if items.is_empty() {
            return Err(Error::new(ErrorKind::Usage, "empty capability list: say `none` for no capability"));
        }
        let mut set = Self::empty();
        for item in &items {
            match item.to_ascii_uppercase().as_str() {
                word @ ("ALL" | "NONE") if items.len() > 1 => {
                    return Err(Error::new(ErrorKind::Usage, format!("`{}` stands alone: it cannot be combined with other names in {s:?}", word.to_ascii_lowercase())))
                }
                "ALL" => set = Self::full(),
                "NONE" => {}
                _ => set.insert(item.parse()?),
            }
        }
        Ok(set)
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut s = Self::empty();
        for c in iter {
            s.insert(c);
        }
        s
    }
}

impl fmt::Display for CapSet {
    /// `cap_chown,cap_kill` like capsh; `=` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        let names: Vec<String> = self.iter().map(|c| format!("cap_{}", c.name().to_ascii_lowercase())).collect();
        f.write_str(&names.join(","))?;
        let unknown = self.unknown_bits();
        if unknown != 0 {
            write!(f, " + unknown bits {unknown:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_spelling() {
        for s in ["CAP_CHOWN", "cap_chown", "chown", "Chown", " CHOWN "] {
            assert_eq!(s.parse::<Capability>().unwrap(), Capability::CHOWN);
        }
        assert_eq!("net_bind_service".parse::<Capability>().unwrap().number(), 10);
        assert_eq!("checkpoint_restore".parse::<Capability>().unwrap().number(), 40);
    }

    #[test]
    fn unknown_names_are_usage_errors() {
        let e = "CAP_FLY".parse::<Capability>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(e.to_string().contains("CAP_FLY"), "{e}");
    }

    #[test]
    fn docker_default_mask_decodes_to_the_fourteen() {
        let set = CapSet::from_hex("00000000a80425fb").unwrap();
        assert_eq!(set, CapSet::from_iter(DOCKER_DEFAULT));
        assert_eq!(set.len(), 14);
    }

    #[test]
    fn full_mask_and_unknown_bits() {
        assert_eq!(CapSet::full().0, 0x1ff_ffff_ffff);
        let s = CapSet::from_hex("0x3ffffffffff").unwrap();
        assert_eq!(s.unknown_bits(), 1 << 41);
        assert!(CapSet::from_hex("xyz").is_err());
        assert!(CapSet::from_hex("12345678901234567").is_err());
    }

    #[test]
    fn lists_parse_and_sort() {
        let s = CapSet::parse_list("setuid, CAP_CHOWN,net_raw").unwrap();
        assert_eq!(s.sorted_names(), vec!["CHOWN", "NET_RAW", "SETUID"]);
        assert_eq!(CapSet::parse_list("all").unwrap(), CapSet::full());
        assert!(CapSet::parse_list("none").unwrap().is_empty());
        for bad in ["", " , ", "none,chown", "chown,all", "bogus"] {
            assert_eq!(CapSet::parse_list(bad).unwrap_err().kind(), ErrorKind::Usage, "{bad:?}");
        }
    }
}
