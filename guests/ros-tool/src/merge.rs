//! `hvm merge`, `hvm unmerge` and `hvm merge-test`: the address-space merge (docs/hypercalls.md §6),
//! where duet's HRT adopts this process's user half (PML4 entries 0-255), so that a user pointer
//! means the same bytes on both sides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use abi::{func, ALL_CORES};

use crate::cli::{Target, DEFAULT_INVOKE_TIMEOUT};
use crate::completion::cells;
use crate::error::Error;
use crate::hcall::{Port, Version};
use crate::invoke::{no_result, wait};
use crate::sys;


/// The name of MERGE (`true`) or UNMERGE in the output.
fn name(merge: bool) -> &'static str {
    if merge {
        "merge"
    } else {
        "unmerge"
    }
}

/// MERGE or UNMERGE on `target`, waiting for each core's result: `(core, result)` pairs.
fn merge_sync(port: &Port, v: &Version, merge: bool, target: Target) -> Result<Vec<(u64, u64)>, Error> {
    let (rbx, n) = match target {
        Target::Core(c) => (c, 1),
        Target::All => (ALL_CORES, usize::try_from(v.hrt_cores).unwrap_or(0).min(abi::MAX_CORES)),
    };
    if n == 0 {
        return Err(Error::failed("the partition has no HRT cores"));
    }
    let records = cells(n);
    let seq = port.merge(merge, rbx, Some(&records))?;
    let deadline = Instant::now() + DEFAULT_INVOKE_TIMEOUT;
    let mut out = Vec::with_capacity(n);
    for (i, cell) in records.iter().enumerate() {
        let core = match target {
            Target::Core(c) => c,
            Target::All => i as u64,
        };
        let got = match target {
            Target::Core(_) => wait(port, cell, deadline, |s| s == seq),
            Target::All => wait(port, cell, deadline, |s| s != 0),
        };
        got?.map_err(|seen| no_result(core, DEFAULT_INVOKE_TIMEOUT, seq, seen))?;
        out.push((core, cell.result.load(Ordering::Acquire)));
    }
    Ok(out)
}

/// `hvm merge|unmerge [--core N | --all]`: `core=N merge result=0` per core; fails if a core did not
/// answer 0.
pub fn run(port: &Port, v: &Version, merge: bool, target: Target) -> Result<(), Error> {
    let results = merge_sync(port, v, merge, target)?;
    for (core, result) in &results {
        out!("core={core} {} result={result}", name(merge));
    }
    match results.iter().find(|(_, r)| *r != 0) {
        Some((core, r)) => Err(Error::failed(format!("{} on core {core} answered {r:#x}, not 0", name(merge)))),
        None => Ok(()),
    }
}


/// One anonymous private page that this process has never touched: mapped after
/// `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)` (what is locked stays locked and present, but
/// new mappings are no longer populated up front), so that its page-table entry is empty;
/// /proc/self/pagemap confirms it is not present. (The test kernel has no `madvise`.)
struct UntouchedPage {
    addr: usize,
}

impl UntouchedPage {
    const LEN: usize = 4096;

    fn new() -> Result<UntouchedPage, Error> {
        sys::mlockall_on_fault()?;
        // SAFETY: a fresh anonymous mapping; nothing else refers to the address range.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(Error::failed(format!("mmap of a page: {}", std::io::Error::last_os_error())));
        }
        let page = UntouchedPage { addr: map as usize };
        if sys::guest_physical(page.addr).is_ok() {
            return Err(Error::failed(format!(
                "the untouched page at {:#x} is present right after mmap; cannot test a not-present page",
                page.addr
            )));
        }
        Ok(page)
    }
}

impl Drop for UntouchedPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping, of this length; nothing refers to it any more.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, Self::LEN) };
    }
}

/// The checks of `hvm merge-test` between MERGE and UNMERGE; the values for the report line.
fn merged_checks(port: &Port, core: u64, cell: &AtomicU64, pattern: u64) -> Result<(u64, u64, u64), Error> {
    let va = cell as *const AtomicU64 as u64;
    let hrt_read = crate::invoke::sync(port, core, func::READ_USER, va)?;
    if hrt_read != pattern {
        return Err(Error::failed(format!(
            "merge-test: the HRT read {hrt_read:#x} at {va:#x}, this process holds {pattern:#x} there \
             ({}): the user half is not shared",
            if hrt_read == func::NOT_MAPPED { "not mapped on the HRT" } else { "other bytes" }
        )));
    }
    let flipped = crate::invoke::sync(port, core, func::FLIP_USER, va)?;
    if flipped != !pattern {
        return Err(Error::failed(format!("merge-test: the HRT's flip at {va:#x} answered {flipped:#x}, expected {:#x}", !pattern)));
    }
    let seen = cell.load(Ordering::Acquire);
    if seen != !pattern {
        return Err(Error::failed(format!(
            "merge-test: after the HRT's flip this process reads {seen:#x} at {va:#x}, expected {:#x}",
            !pattern
        )));
    }
    // A page this process never touched: not present in its page tables, so not on the HRT either
    // (what page-fault forwarding will serve). Touched, the HRT sees it at once: it walks the tables.
    let page = UntouchedPage::new()?;
    let untouched = crate::invoke::sync(port, core, func::READ_USER, page.addr as u64)?;
    if untouched != func::NOT_MAPPED {
        return Err(Error::failed(format!(
            "merge-test: the HRT read {untouched:#x} at the untouched page {:#x}, expected not mapped ({:#x})",
            page.addr,
            func::NOT_MAPPED
        )));
    }
    let touched_value = pattern.rotate_left(17);
    // SAFETY: the page is ours, mapped read-write, 4096 bytes, page-aligned; no reference points into it.
    unsafe { std::ptr::write_volatile(page.addr as *mut u64, touched_value) };
    let touched = crate::invoke::sync(port, core, func::READ_USER, page.addr as u64)?;
    if touched != touched_value {
        return Err(Error::failed(format!(
            "merge-test: after this process touched the page at {:#x} the HRT read {touched:#x}, expected {touched_value:#x}",
            page.addr
        )));
    }
    Ok((hrt_read, flipped, touched))
}

/// `hvm merge-test [--core N]`, in one process: a locked u64 holding a pattern; MERGE on the core
/// (0); function 12 on its address reads the pattern; function 13 flips it and this process reads
/// the complement; function 12 on a page never touched answers not mapped (and, once touched, the
/// value written); UNMERGE (0); an echo invoke still works. Prints
/// `merge-test ok pattern=0x.. hrt_read=0x.. flipped=0x.. untouched=not-present touched=0x..`.
pub fn test(port: &Port, core: u64) -> Result<(), Error> {
    let pattern = 0x6d_6572_6765_u64 ^ crate::tsc::rdtsc();
    let cell = Box::new(AtomicU64::new(pattern));
    sys::mlock(&*cell as *const AtomicU64 as usize, 8)?;
    let merged = crate::invoke::merge_sync(port, true, core)?;
    if merged != 0 {
        return Err(Error::failed(format!("merge-test: MERGE on core {core} answered {merged:#x}, not 0")));
    }
    let checks = merged_checks(port, core, &cell, pattern);
    // Unmerge whatever happened: the HRT must not keep the lower half of a process that exits.
    let unmerged = crate::invoke::merge_sync(port, false, core);
    let (hrt_read, flipped, touched) = checks?;
    let unmerged = unmerged?;
    if unmerged != 0 {
        return Err(Error::failed(format!("merge-test: UNMERGE on core {core} answered {unmerged:#x}, not 0")));
    }
    let echo = 0x6563_686f ^ pattern;
    let got = crate::invoke::sync(port, core, func::ECHO, echo)?;
    if got != echo {
        return Err(Error::failed(format!("merge-test: echo after UNMERGE answered {got:#x}, expected {echo:#x}")));
    }
    out!("merge-test ok pattern={pattern:#x} hrt_read={hrt_read:#x} flipped={flipped:#x} untouched=not-present touched={touched:#x}");
    Ok(())
}
