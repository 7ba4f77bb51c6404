//! The time-stamp counter: reading it, and its rate (for delays and time-outs).

use core::arch::asm;
use core::arch::x86_64::__cpuid;

pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` only reads the counter (allowed at CPL0 whatever CR4.TSD says).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC, ordered against the instructions around it (`lfence; rdtsc; lfence`; fences are
/// emulated on PVM, unlike `rdtscp`). Not `nomem`: a compiler barrier as well.
#[inline(always)]
pub fn rdtsc_fenced() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `lfence` orders instructions and `rdtsc` reads the counter: no memory is accessed.
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// TSC ticks per millisecond: KVM's timing leaf 0x40000010 or CPUID 0x15/0x16, else 3 GHz assumed
/// (only delays and the time-out depend on it).
pub fn tsc_per_ms() -> u64 {
    let hv = __cpuid(0x4000_0000);
    if hv.eax >= 0x4000_0010 && hv.eax < 0x4000_0100 {
        let khz = __cpuid(0x4000_0010).eax as u64;
        if khz != 0 {
            return khz;
        }
    }
    let max = __cpuid(0).eax;
    if max >= 0x15 {
        let l = __cpuid(0x15);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return l.ecx as u64 * l.ebx as u64 / l.eax as u64 / 1000;
        }
    }
    if max >= 0x16 {
        let mhz = __cpuid(0x16).eax as u64 & 0xffff;
        if mhz != 0 {
            return mhz * 1000;
        }
    }
    3_000_000
}

/// Spins for `ticks` TSC ticks.
pub fn delay(ticks: u64) {
    let end = rdtsc().wrapping_add(ticks);
    while (end.wrapping_sub(rdtsc()) as i64) > 0 {}
}
