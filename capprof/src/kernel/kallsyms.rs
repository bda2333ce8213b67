//! Kernel text symbols from `/proc/kallsyms`: call-site ranges for calibration, and names for
//! the addresses the kernel programs report.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};

/// Sorted text symbols (`t`/`T`), each running to the next one's address.
pub struct Symbols {
    addrs: Vec<u64>,
    names: Vec<String>,
}

impl Symbols {
    /// Reads `/proc/kallsyms`; fails when addresses are hidden (kptr_restrict, not root).
    pub fn load() -> Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms").map_err(|e| Error::io("reading /proc/kallsyms", e))?;
        let symbols = Self::parse(&text);
        if symbols.addrs.is_empty() {
            return Err(Error::new(
                ErrorKind::Privileges,
                "/proc/kallsyms shows no addresses (kernel.kptr_restrict, or not root): run capprof as root",
            ));
        }
        Ok(symbols)
    }

    /// Parses kallsyms text; symbols with address 0 (hidden) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut pairs: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_ascii_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && (kind == "t" || kind == "T")).then_some((addr, name))
            })
            .collect();
        pairs.sort_unstable_by_key(|p| p.0);
        pairs.dedup_by_key(|p| p.0);
        Self {
            addrs: pairs.iter().map(|p| p.0).collect(),
            names: pairs.iter().map(|p| p.1.to_string()).collect(),
        }
    }

    /// The symbol containing `addr`, with the offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.addrs.partition_point(|a| *a <= addr).checked_sub(1)?;
        Some((&self.names[i], addr - self.addrs[i]))
    }

    /// Name of the function containing `addr`, `.cold`/`.part` clones folded into their parent.
    pub fn function(&self, addr: u64) -> Option<&str> {
        self.resolve(addr).map(|(name, _)| name.split('.').next().unwrap_or(name))
    }

    /// `[start, end)` of a named function.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        let i = self.names.iter().position(|n| n == name)?;
        let end = self.addrs.get(i + 1).copied().unwrap_or(self.addrs[i] + 1);
        Some((self.addrs[i], end))
    }

    /// Ranges of several names in one pass.
    pub fn ranges<'a>(&self, wanted: &[&'a str]) -> HashMap<&'a str, (u64, u64)> {
        wanted.iter().filter_map(|w| self.range(w).map(|r| (*w, r))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "ffffffff81366130 T ns_capable_setid\nffffffff813661a0 T ns_capable\n\
ffffffff812078f0 t ns_capable.cold\nffffffff81366210 T capable\n0000000000000000 D hidden\nffffffff81400000 d data_sym\n";

    #[test]
    fn resolves_addresses_to_functions() {
        let s = Symbols::parse(SAMPLE);
        assert_eq!(s.resolve(0xffffffff813661a5), Some(("ns_capable", 5)));
        assert_eq!(s.function(0xffffffff812078f4), Some("ns_capable"));
        assert_eq!(s.range("ns_capable_setid"), Some((0xffffffff81366130, 0xffffffff813661a0)));
        assert_eq!(s.resolve(0x10), None);
        assert!(s.range("data_sym").is_none());
    }
}
