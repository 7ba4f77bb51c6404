//! `hvm probe-mem`: what a root process of the ROS sees when it maps guest-physical memory through
//! `/dev/mem` — used to show that the HRT's memory is out of its reach (reads give all ones, writes
//! change nothing). `read(2)` on `/dev/mem` refuses addresses above the ROS's RAM, so this maps it.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use crate::error::Error;

/// The pattern written to every probed word.
const PATTERN: u64 = 0x5a5a_5a5a_a5a5_a5a5;

/// Maps `[base, base + len)` of `/dev/mem`, reads the u64 at every `stride` bytes, writes
/// [`PATTERN`] there, reads again; prints `probe-mem base=.. len=.. stride=.. words=N
/// not_ones_before=A not_ones_after=B pattern_seen=C`.
pub fn probe_mem(base: u64, len: u64, stride: u64) -> Result<(), Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/mem")
        .map_err(|e| Error::failed(format!("opening /dev/mem: {e}")))?;
    let len_pages = len.div_ceil(4096) * 4096;
    let offset = libc::off_t::try_from(base).map_err(|_| Error::failed("BASE does not fit off_t"))?;
    // SAFETY: a fresh shared mapping of the device file; nothing else refers to the address range.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len_pages as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(Error::failed(format!("mmap of /dev/mem at {base:#x}: {}", std::io::Error::last_os_error())));
    }
    let word = |off: u64| (map as usize + off as usize) as *mut u64;
    let offsets: Vec<u64> = (0..len / 8).map(|i| i * 8).filter(|o| o % stride == 0).collect();
    // Every offset is below `len` <= the mapping's length and 8-aligned; the accesses are volatile,
    // because this is device memory as far as the program knows.
    let before = offsets
        .iter()
        .filter(|o| {
            // SAFETY: see above.
            let v = unsafe { std::ptr::read_volatile(word(**o)) };
            v != u64::MAX
        })
        .count();
    for o in &offsets {
        // SAFETY: see above.
        unsafe { std::ptr::write_volatile(word(*o), PATTERN) };
    }
    let mut pattern_seen = 0;
    let after = offsets
        .iter()
        .filter(|o| {
            // SAFETY: see above.
            let v = unsafe { std::ptr::read_volatile(word(**o)) };
            pattern_seen += usize::from(v == PATTERN);
            v != u64::MAX
        })
        .count();
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(map, len_pages as usize) };
    out!(
        "probe-mem base={base:#x} len={len:#x} stride={stride} words={} not_ones_before={before} not_ones_after={after} pattern_seen={pattern_seen}",
        offsets.len()
    );
    Ok(())
}
