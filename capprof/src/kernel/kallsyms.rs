//! Kernel text symbols from `/proc/kallsyms`: call-site ranges for calibration, and names for
//! the addresses the kernel programs report.

use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};

/// Sorted text symbols (`t`/`T`), each running to the next one's address. Names live in one
/// arena string: kallsyms has ~10^5 lines and capprof's peak memory is a goal.
pub struct Symbols {
    addrs: Vec<u64>,
    /// `[start, end)` of each name in `arena`.
    spans: Vec<(u32, u32)>,
    arena: String,
}

impl Symbols {
    /// Reads `/proc/kallsyms` line by line; fails when addresses are hidden (kptr_restrict,
    /// not root).
    pub fn load() -> Result<Self> {
        use std::io::BufRead;
        let file = std::fs::File::open("/proc/kallsyms").map_err(|e| Error::io("reading /proc/kallsyms", e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
        let mut builder = Builder::default();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => builder.push_line(&line),
                Err(e) => return Err(Error::io("reading /proc/kallsyms", e)),
            }
        }
        let symbols = builder.finish();
        if symbols.addrs.is_empty() {
            return Err(Error::new(
                ErrorKind::Privileges,
                "/proc/kallsyms shows no addresses (kernel.kptr_restrict, or CAP_SYSLOG missing): run capprof as root",
            ));
        }
        Ok(symbols)
    }

    /// Parses kallsyms text; symbols with address 0 (hidden) are skipped.
    pub fn parse(text: &str) -> Self {
        let mut builder = Builder::default();
        for line in text.lines() {
            builder.push_line(line);
        }
        builder.finish()
    }

    fn name(&self, i: usize) -> &str {
        let (start, end) = self.spans[i];
        &self.arena[start as usize..end as usize]
    }

    /// The symbol containing `addr`, with the offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.addrs.partition_point(|a| *a <= addr).checked_sub(1)?;
        Some((self.name(i), addr - self.addrs[i]))
    }

    /// Name of the function containing `addr`, `.cold`/`.part` clones folded into their parent.
    pub fn function(&self, addr: u64) -> Option<&str> {
        self.resolve(addr).map(|(name, _)| name.split('.').next().unwrap_or(name))
    }

    /// `[start, end)` of a named function.
    pub fn range(&self, name: &str) -> Option<(u64, u64)> {
        let i = (0..self.addrs.len()).find(|i| self.name(*i) == name)?;
        let end = self.addrs.get(i + 1).copied().unwrap_or(self.addrs[i] + 1);
        Some((self.addrs[i], end))
    }

    /// Ranges of several names in one pass.
    pub fn ranges<'a>(&self, wanted: &[&'a str]) -> HashMap<&'a str, (u64, u64)> {
        wanted.iter().filter_map(|w| self.range(w).map(|r| (*w, r))).collect()
    }
}

/// Collects text symbols, then sorts them by address into the arena.
#[derive(Default)]
struct Builder {
    entries: Vec<(u64, u32, u32)>,
    arena: String,
}

impl Builder {
    fn push_line(&mut self, line: &str) {
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else { return };
        if kind != "t" && kind != "T" {
            return;
        }
        let Ok(addr) = u64::from_str_radix(addr, 16) else { return };
        if addr == 0 {
            return;
        }
        let start = self.arena.len() as u32;
        self.arena.push_str(name);
        self.entries.push((addr, start, self.arena.len() as u32));
    }

    fn finish(mut self) -> Symbols {
        self.entries.sort_unstable_by_key(|e| e.0);
        self.entries.dedup_by_key(|e| e.0);
        self.arena.shrink_to_fit();
        Symbols {
            addrs: self.entries.iter().map(|e| e.0).collect(),
            spans: self.entries.iter().map(|e| (e.1, e.2)).collect(),
            arena: self.arena,
        }
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
