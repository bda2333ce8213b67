//! Finds, once per start, where `cap_capable`'s caller and that caller's caller sit on the
//! kernel stack relative to the tracepoint's saved stack pointer.
//!
//! The calibrating thread makes two checks whose call chains are known: an anonymous `mmap`
//! (CAP_SYS_ADMIN from `cap_vm_enough_memory`, the overcommit probe) and `setuid(getuid())`
//! (CAP_SETUID from `ns_capable_setid` through `security_capable`). The kernel program copies a
//! window of stack words for each; the slot holding a return address into `cap_vm_enough_memory`
//! in the first and into `security_capable` in the second is `cap_capable`'s return address.
//! The frames involved have fixed sizes, so the offsets hold for every later check; a check
//! whose slot points elsewhere is flagged "site unknown" and counted, never guessed.

use aya::maps::{Array, MapData};
use capprof_common::{CalibrationSample, Config, SiteRange, CALIBRATION_WORDS};

use super::{internal, Backend};
use crate::error::Result;
use crate::kernel::kallsyms::Symbols;

/// Calibrated stack offsets.
#[derive(Clone, Copy, Debug)]
pub struct CallSites {
    pub caller_offset: u32,
    pub api_offset: u32,
    pub security_capable: SiteRange,
}

pub(super) fn calibrate(backend: &mut Backend, symbols: &Symbols) -> Result<Option<CallSites>> {
    let ranges = symbols.ranges(&["security_capable", "ns_capable_setid"]);
    let (Some(sc), Some(setid)) = (ranges.get("security_capable"), ranges.get("ns_capable_setid")) else {
        return Ok(None);
    };
    // cap_vm_enough_memory often tail-calls cap_capable, leaving its caller on the stack.
    let vm: Vec<(u64, u64)> =
        ["cap_vm_enough_memory", "security_vm_enough_memory_mm"].iter().filter_map(|n| symbols.range(n)).collect();

    let tid = unsafe { libc::gettid() } as u32;
    set_config(backend, Config { calibrate_tid: tid, ..backend.config })?;
    trigger_known_checks();
    set_config(backend, backend.config)?;

    let samples: Array<&mut MapData, CalibrationSample> = Array::try_from(backend.map_mut("CALIBRATION")?).map_err(internal)?;
    let overcommit = samples.get(&0, 0).map_err(internal)?;
    let setuid = samples.get(&1, 0).map_err(internal)?;
    if std::env::var_os("CAPPROF_DEBUG_CALIBRATION").is_some() {
        for (i, (a, b)) in overcommit.words.iter().zip(setuid.words.iter()).enumerate() {
            eprintln!("{i:2} {:#x} {:?} | {:#x} {:?}", a, symbols.resolve(*a), b, symbols.resolve(*b));
        }
    }
    Ok(find_offsets(&overcommit.words, &setuid.words, &vm, *sc, *setid))
}

fn set_config(backend: &mut Backend, cfg: Config) -> Result<()> {
    let mut map: Array<&mut MapData, Config> = Array::try_from(backend.map_mut("CONFIG")?).map_err(internal)?;
    map.set(0, cfg, 0).map_err(internal)
}

/// One overcommit probe and one `security_capable` check of CAP_SETUID, on this thread only.
fn trigger_known_checks() {
    unsafe {
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if page != libc::MAP_FAILED {
            libc::munmap(page, 4096);
        }
        // The raw syscall changes this thread only (glibc's setuid would signal every thread);
        // setting the current uid changes nothing but is still checked against CAP_SETUID.
        libc::syscall(libc::SYS_setuid, libc::getuid());
    }
}

fn find_offsets(
    overcommit: &[u64; CALIBRATION_WORDS],
    setuid: &[u64; CALIBRATION_WORDS],
    vm: &[(u64, u64)],
    sc: (u64, u64),
    setid: (u64, u64),
) -> Option<CallSites> {
    let within = |w: u64, r: (u64, u64)| w >= r.0 && w < r.1;
    let k = (1..CALIBRATION_WORDS).find(|&k| vm.iter().any(|r| within(overcommit[k], *r)) && within(setuid[k], sc))?;
    let j = (k + 1..CALIBRATION_WORDS).find(|&j| within(setuid[j], setid))?;
    Some(CallSites {
        caller_offset: (k * 8) as u32,
        api_offset: ((j - k) * 8) as u32,
        security_capable: SiteRange { start: sc.0, end: sc.1 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_come_from_the_common_slot() {
        let mut a = [0u64; CALIBRATION_WORDS];
        let mut b = [0u64; CALIBRATION_WORDS];
        // A stale security_capable address lower in b must not win: a disagrees there.
        b[2] = 0x2005;
        a[5] = 0x1010;
        b[5] = 0x2010;
        b[9] = 0x3004;
        let cs = find_offsets(&a, &b, &[(0x1000, 0x1100)], (0x2000, 0x2100), (0x3000, 0x3050)).unwrap();
        assert_eq!(cs.caller_offset, 40);
        assert_eq!(cs.api_offset, 32);
        assert!(find_offsets(&a, &[0; CALIBRATION_WORDS], &[(0x1000, 0x1100)], (0x2000, 0x2100), (0x3000, 0x3050)).is_none());
    }
}
