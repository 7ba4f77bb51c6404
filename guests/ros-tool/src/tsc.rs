//! The TSC: reading it, and its frequency.

use std::time::{Duration, Instant};

use crate::hcall::Port;

/// The TSC, ordered against the instructions around it (`lfence; rdtsc; lfence`).
#[inline(always)]
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: lfence and rdtsc read the TSC and touch no memory; without `nomem` the asm is also a
    // compiler barrier, so timed memory accesses stay between two readings.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Measures the TSC frequency in kHz against CLOCK_MONOTONIC over about 100 ms.
fn calibrate_tsc_khz() -> u64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(100));
    let (c1, t1) = (rdtsc(), Instant::now());
    let ns = t1.duration_since(t0).as_nanos().max(1);
    let khz = u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns;
    u64::try_from(khz).unwrap_or(u64::MAX).max(1)
}

/// The TSC frequency: PARTITION_INFO's if the VMM knows it, else measured.
pub fn tsc_khz(port: &Port) -> u64 {
    match port.partition_info() {
        Ok(i) if i.tsc_khz != 0 => i.tsc_khz,
        _ => calibrate_tsc_khz(),
    }
}
