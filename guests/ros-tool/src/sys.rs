//! Linux and CPU plumbing: port access, memory locking, guest-physical addresses, the TSC.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use crate::error::Error;

/// `ioperm(port, len, 1)`. An access of N bytes needs all N ports: `out 0xe4, eax` needs 0xe4..=0xe7.
pub fn ioperm(port: u16, len: u16) -> Result<(), Error> {
    // SAFETY: a plain syscall that changes this process's I/O permission bitmap; no memory involved.
    if unsafe { libc::ioperm(libc::c_ulong::from(port), libc::c_ulong::from(len), 1) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed(format!(
            "ioperm({port:#x}, {len}): {e} (hvm needs root and a kernel with CONFIG_X86_IOPL_IOPERM)"
        )));
    }
    Ok(())
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE)`: buffers and completion records the VMM reads or writes
/// through our page tables must stay present.
pub fn mlockall() -> Result<(), Error> {
    // SAFETY: a plain syscall; it changes no memory contents.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed(format!("mlockall: {e} (hvm needs root or a large enough RLIMIT_MEMLOCK)")));
    }
    Ok(())
}

/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: what is locked stays locked (and present),
/// but mappings made from now on are locked only as their pages are touched, not populated up front.
pub fn mlockall_on_fault() -> Result<(), Error> {
    // SAFETY: a plain syscall; it changes no memory contents.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed(format!("mlockall(MCL_ONFAULT): {e}")));
    }
    Ok(())
}

/// `mlock(addr, len)`: a buffer the HRT writes by guest-physical address must stay where
/// /proc/self/pagemap saw it (mlockall already covers it; this says so for the one buffer).
pub fn mlock(addr: usize, len: usize) -> Result<(), Error> {
    // SAFETY: a plain syscall on our own mapping; it changes no memory contents.
    if unsafe { libc::mlock(addr as *const libc::c_void, len) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed(format!("mlock({addr:#x}, {len}): {e}")));
    }
    Ok(())
}

/// The guest-physical address of the byte at `addr` in our address space, from /proc/self/pagemap
/// (present bit 63, PFN in bits 0–54; the PFN reads as 0 without CAP_SYS_ADMIN).
pub fn guest_physical(addr: usize) -> Result<u64, Error> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = u64::try_from(page).ok().filter(|p| p.is_power_of_two()).unwrap_or(4096);
    let addr = addr as u64;
    let f = File::open("/proc/self/pagemap").map_err(|e| Error::failed(format!("/proc/self/pagemap: {e}")))?;
    let mut entry = [0u8; 8];
    f.read_exact_at(&mut entry, addr / page * 8)
        .map_err(|e| Error::failed(format!("/proc/self/pagemap at {addr:#x}: {e}")))?;
    let entry = u64::from_le_bytes(entry);
    if entry >> 63 == 0 {
        return Err(Error::failed(format!("page at {addr:#x} is not present (pagemap entry {entry:#x})")));
    }
    let pfn = entry & ((1 << 55) - 1);
    if pfn == 0 {
        return Err(Error::failed("/proc/self/pagemap hides physical addresses (needs root with CAP_SYS_ADMIN)"));
    }
    Ok(pfn * page + addr % page)
}

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
pub fn calibrate_tsc_khz() -> u64 {
    let (t0, c0) = (Instant::now(), rdtsc());
    std::thread::sleep(Duration::from_millis(100));
    let (c1, t1) = (rdtsc(), Instant::now());
    let ns = t1.duration_since(t0).as_nanos().max(1);
    let khz = u128::from(c1.wrapping_sub(c0)) * 1_000_000 / ns;
    u64::try_from(khz).unwrap_or(u64::MAX).max(1)
}

/// Cycles to nanoseconds at `khz`.
pub fn cycles_to_ns(cycles: u64, khz: u64) -> u64 {
    let ns = u128::from(cycles) * 1_000_000 / u128::from(khz.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}
