//! Just enough BTF reading to find struct member offsets in the running kernel
//! (`/sys/kernel/btf/vmlinux`): Rust eBPF has no CO-RE relocations, so offsets the programs need
//! are resolved here at load time and passed in their configuration.

use crate::error::{Error, ErrorKind, Result};

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// The kernel's BTF blob.
pub struct Btf {
    data: Vec<u8>,
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Byte offset of every type record, by type id (built once: lookups are many).
    index: Vec<usize>,
}

impl Btf {
    pub fn from_sys_fs() -> Result<Self> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux").map_err(|e| {
            Error::new(ErrorKind::UnsupportedKernel, format!("kernel BTF not readable at /sys/kernel/btf/vmlinux ({e}): CONFIG_DEBUG_INFO_BTF is needed"))
        })?;
        Self::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Self> {
        let bad = || Error::new(ErrorKind::UnsupportedKernel, "kernel BTF is malformed");
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(bad());
        }
        let u = |o: usize| data.get(o..o + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])) as usize;
        let (hdr_len, type_off, type_len, str_off, str_len) = (u(4), u(8), u(12), u(16), u(20));
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = hdr_len + str_off..hdr_len + str_off + str_len;
        if types.end > data.len() || strings.end > data.len() {
            return Err(bad());
        }
        let mut btf = Self { data, types, strings, index: Vec::new() };
        btf.index = btf.build_index();
        Ok(btf)
    }

    /// The word at `o` of the type section; 0 outside it (a malformed blob answers "nothing
    /// found", never a panic).
    fn u32_at(&self, o: usize) -> u32 {
        match self.data.get(o..o.saturating_add(4)) {
            Some(b) if o + 4 <= self.types.end => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => 0,
        }
    }

    fn name(&self, off: u32) -> &str {
        let start = self.strings.start.saturating_add(off as usize);
        let Some(rest) = self.data.get(start..self.strings.end) else { return "" };
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Byte offsets of every type record, indexed by type id (id 0 is void).
    fn build_index(&self) -> Vec<usize> {
        let mut offsets = vec![0];
        let mut o = self.types.start;
        while o + 12 <= self.types.end {
            offsets.push(o);
            let info = self.u32_at(o + 4);
            let vlen = (info & 0xffff) as usize;
            let extra = match (info >> 24) & 0x1f {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
            if o + 12 + extra > self.types.end {
                break; // a record running past the section: the rest is not trusted
            }
            o += 12 + extra;
        }
        offsets
    }

    /// Type id of the named FUNC (`kind` 12) or STRUCT (`kind` 4, not a forward declaration).
    pub fn type_id(&self, kind: u32, name: &str) -> Option<u32> {
        self.index.iter().skip(1).position(|&o| {
            let info = self.u32_at(o + 4);
            (info >> 24) & 0x1f == kind && self.name(self.u32_at(o)) == name && (kind != KIND_STRUCT || self.u32_at(o + 8) > 0)
        }).map(|i| i as u32 + 1)
    }

    /// Parameter names of the function `name` (from its FUNC_PROTO).
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        const KIND_FUNC: u32 = 12;
        const KIND_FUNC_PROTO: u32 = 13;
        let index = &self.index;
        let func = index.iter().skip(1).copied().find(|&o| (self.u32_at(o + 4) >> 24) & 0x1f == KIND_FUNC && self.name(self.u32_at(o)) == name)?;
        let proto = *index.get(self.u32_at(func + 8) as usize)?;
        let info = self.u32_at(proto + 4);
        if (info >> 24) & 0x1f != KIND_FUNC_PROTO {
            return None;
        }
        Some((0..(info & 0xffff) as usize).map(|i| self.name(self.u32_at(proto + 12 + 8 * i)).to_string()).collect())
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let index = &self.index;
        let id = index.iter().skip(1).position(|&o| {
            let info = self.u32_at(o + 4);
            (info >> 24) & 0x1f == KIND_STRUCT && self.name(self.u32_at(o)) == name && self.u32_at(o + 8) > 0
        })? + 1;
        self.find_member(index, id, member, 0)
    }

    fn find_member(&self, index: &[usize], id: usize, member: &str, base_bits: u32) -> Option<u32> {
        self.find_member_within(index, id, member, base_bits, 8)
    }

    /// Anonymous members nest a few levels in real kernels; `depth` bounds a malformed blob's
    /// cycles.
    fn find_member_within(&self, index: &[usize], id: usize, member: &str, base_bits: u32, depth: u32) -> Option<u32> {
        if depth == 0 {
            return None;
        }
        let o = *index.get(id)?;
        let info = self.u32_at(o + 4);
        let kind = (info >> 24) & 0x1f;
        if kind != KIND_STRUCT && kind != KIND_UNION {
            return None;
        }
        let kind_flag = info >> 31 == 1;
        for i in 0..(info & 0xffff) as usize {
            let m = o + 12 + 12 * i;
            let (name_off, ty, raw) = (self.u32_at(m), self.u32_at(m + 4), self.u32_at(m + 8));
            let bits = base_bits.saturating_add(if kind_flag { raw & 0xff_ffff } else { raw });
            if name_off == 0 {
                if let Some(found) = self.find_member_within(index, ty as usize, member, bits, depth - 1) {
                    return Some(found);
                }
            } else if self.name(name_off) == member {
                return Some(bits / 8);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_kernels_btf() {
        let Ok(btf) = Btf::from_sys_fs() else { panic!("this project's kernels have BTF: /sys/kernel/btf/vmlinux") };
        assert!(btf.member_offset("task_struct", "pid").is_some());
        assert!(btf.member_offset("task_struct", "real_cred").is_some());
        let params = btf.func_params("cap_capable").expect("cap_capable in BTF");
        assert_eq!(params.len(), 4, "{params:?}");
        assert_eq!(params[3], "opts");
    }

    /// Truncated and damaged blobs: errors or "not found", never a panic.
    #[test]
    fn malformed_blobs_never_panic() {
        let real = std::fs::read("/sys/kernel/btf/vmlinux").expect("kernel BTF");
        let mut x = 0x853c_49e6_748f_ea9bu64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..64 {
            let mut blob = real[..(64 + next() as usize % 200_000).min(real.len())].to_vec();
            for _ in 0..(round % 8) * 16 {
                let at = next() as usize % blob.len();
                blob[at] = next() as u8;
            }
            if let Ok(btf) = Btf::parse(blob) {
                let _ = btf.member_offset("task_struct", "pid");
                let _ = btf.func_params("cap_capable");
                let _ = btf.type_id(12, "bpf_rdonly_cast");
            }
        }
        for junk in [vec![], vec![0x9f, 0xeb], vec![0x9f, 0xeb, 1, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]] {
            let _ = Btf::parse(junk);
        }
    }
}
