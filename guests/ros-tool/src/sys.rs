//! Linux plumbing: port access, memory locking, guest-physical addresses.

use std::fs::File;
use std::os::unix::fs::FileExt;

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
