//! Finds, once per start, the size of `cap_capable`'s stack frame and of `security_capable`'s,
//! so the kernel program can read who asked for each check without walking the stack.
//!
//! The calibrating thread makes two checks whose call chains are known: an anonymous `mmap`
//! (CAP_SYS_ADMIN from `cap_vm_enough_memory`, the overcommit probe) and `setuid(getuid())`
//! (CAP_SETUID from `ns_capable_setid` through `security_capable`). The kernel program copies a
//! window of stack words above its argument array for each. In both, the first word into
//! `cap_capable` is its call into the tracepoint; the slot holding a return address into the
//! overcommit path in the first sample and into `security_capable` in the second is
//! `cap_capable`'s own return address; above it, the one into `ns_capable_setid` is
//! `security_capable`'s. Frame sizes are fixed, so the distances hold for every later check,
//! however many tracepoint frames lie below (they shift the anchor, not the distances).

use aya::maps::{Array, MapData};
use capprof_common::{CalibrationSample, Config, SiteRange, CALIBRATION_WORDS, NO_ANCHOR, SITE_NARROW_WORDS, SITE_SCAN_WORDS, SITE_WINDOW_WORDS};

use super::{internal, Backend};
use crate::error::Result;
use crate::kernel::kallsyms::Symbols;

/// Calibrated frame distances (in stack words) and the ranges they are checked against.
#[derive(Clone, Copy, Debug)]
pub struct CallSites {
    /// Where the return address into `cap_capable` sat in the samples (`NO_ANCHOR` at entry
    /// or when the slots are too far apart for the narrow read).
    pub anchor_words: u32,
    pub caller_words: u32,
    pub api_words: u32,
    pub cap_capable: SiteRange,
    pub security_capable: SiteRange,
}

pub(super) fn calibrate(backend: &mut Backend, symbols: &Symbols) -> Result<Option<CallSites>> {
    let ranges = symbols.ranges(&["cap_capable", "security_capable", "ns_capable_setid"]);
    let (Some(cc), Some(sc), Some(setid)) = (ranges.get("cap_capable"), ranges.get("security_capable"), ranges.get("ns_capable_setid"))
    else {
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
    let ranges = Ranges { cap_capable: *cc, overcommit: &vm, security_capable: *sc, ns_capable_setid: *setid };
    Ok(find_offsets(&overcommit.words, &setuid.words, &ranges, backend.kind == super::BackendKind::Kprobe))
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

/// Known code ranges the calibration samples are matched against.
struct Ranges<'a> {
    cap_capable: (u64, u64),
    /// Where the overcommit probe returns to (cap_vm_enough_memory may tail-call).
    overcommit: &'a [(u64, u64)],
    security_capable: (u64, u64),
    ns_capable_setid: (u64, u64),
}

/// Finds the distances. `at_entry`: the window starts at the return address into the caller
/// (kprobe); otherwise below `cap_capable`'s frame (raw tracepoint, fexit), anchored on the
/// first return address into `cap_capable`.
fn find_offsets(overcommit: &[u64; CALIBRATION_WORDS], setuid: &[u64; CALIBRATION_WORDS], r: &Ranges, at_entry: bool) -> Option<CallSites> {
    let within = |w: u64, r: (u64, u64)| w >= r.0 && w < r.1;
    let (anchor, caller) = if at_entry {
        (0, 0)
    } else {
        let anchor = (0..SITE_SCAN_WORDS).find(|&i| within(overcommit[i], r.cap_capable) && within(setuid[i], r.cap_capable))?;
        (anchor, anchor + 1)
    };
    // The caller's slot: into the overcommit path in one sample, security_capable in the other.
    let k = (caller..CALIBRATION_WORDS).find(|&k| r.overcommit.iter().any(|o| within(overcommit[k], *o)) && within(setuid[k], r.security_capable))?;
    if at_entry && k != 0 {
        return None;
    }
    let j = (k + 1..CALIBRATION_WORDS).find(|&j| within(setuid[j], r.ns_capable_setid))?;
    // The runtime window must hold the API slot (with room for more frames below).
    if j >= SITE_WINDOW_WORDS {
        return None;
    }
    let narrow = !at_entry && j - anchor < SITE_NARROW_WORDS;
    Some(CallSites {
        anchor_words: if narrow { anchor as u32 } else { NO_ANCHOR },
        caller_words: (k - anchor) as u32,
        api_words: (j - k) as u32,
        cap_capable: SiteRange { start: r.cap_capable.0, end: r.cap_capable.1 },
        security_capable: SiteRange { start: r.security_capable.0, end: r.security_capable.1 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_come_from_the_anchored_common_slot() {
        let mut a = [0u64; CALIBRATION_WORDS];
        let mut b = [0u64; CALIBRATION_WORDS];
        let r = Ranges { cap_capable: (0x500, 0x600), overcommit: &[(0x1000, 0x1100)], security_capable: (0x2000, 0x2100), ns_capable_setid: (0x3000, 0x3050) };
        a[3] = 0x510;
        b[3] = 0x510;
        // A stale security_capable address below the anchor must not win.
        b[2] = 0x2005;
        a[5] = 0x1010;
        b[5] = 0x2010;
        b[9] = 0x3004;
        let cs = find_offsets(&a, &b, &r, false).unwrap();
        assert_eq!((cs.anchor_words, cs.caller_words, cs.api_words), (3, 2, 4));
        assert!(find_offsets(&a, &[0; CALIBRATION_WORDS], &r, false).is_none());
        // At entry the caller's return address is the first word.
        let (mut a, mut b) = ([0u64; CALIBRATION_WORDS], [0u64; CALIBRATION_WORDS]);
        a[0] = 0x1001;
        b[0] = 0x2001;
        b[4] = 0x3001;
        let cs = find_offsets(&a, &b, &r, true).unwrap();
        assert_eq!((cs.anchor_words, cs.caller_words, cs.api_words), (NO_ANCHOR, 0, 4));
        // Slots too far apart for the narrow read: the scan is used.
        let (mut a, mut b) = ([0u64; CALIBRATION_WORDS], [0u64; CALIBRATION_WORDS]);
        a[1] = 0x510;
        b[1] = 0x510;
        a[3] = 0x1010;
        b[3] = 0x2010;
        b[1 + SITE_NARROW_WORDS] = 0x3004;
        let cs = find_offsets(&a, &b, &r, false).unwrap();
        assert_eq!((cs.anchor_words, cs.caller_words), (NO_ANCHOR, 2));
    }
}
