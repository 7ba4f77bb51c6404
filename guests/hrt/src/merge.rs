//! Address-space merge (docs/hypercalls.md §6): the HRT adopts a ROS process's PML4 entries 0-255
//! in the one PML4 all HRT cores share, re-syncs them when the process grows a new top-level
//! entry, and walks them in software (never a fault) when the kernel reads or writes user memory.
//!
//! Why changing the lower half is sound: the kernel's code, data and stacks, the physical window
//! and the LAPIC all lie in the upper half, which a merge leaves alone; only user pointers use the
//! lower half (a forwarding channel, split execution's CPL3 code), and those run under
//! `user::guarded` or at CPL3, where a fault is handled, not fatal. Every table and word the kernel
//! reads or writes here is reached through the physical window after a check that it lies in RAM
//! (ROS RAM for the process's), 8-aligned: memory of the ROS or of duet's page tables, never a
//! Rust object, accessed volatile because the ROS may change it at any time.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use abi::func::NOT_MAPPED;

use crate::cpu::{self, cr3};
use crate::partition::{in_ram, in_ros_ram, pv};


const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// PML4 entries of the lower (user) half.
const LOWER_ENTRIES: usize = 256;

/// Held (1) while a core changes the shared PML4 (`xchg`).
static MERGE_LOCK: AtomicU32 = AtomicU32::new(0);
/// duet's own PML4 entries 0-255 (the identity map), saved by the first merge; valid once
/// [`SAVED_VALID`] is 1. Only under [`MERGE_LOCK`].
static mut SAVED: [u64; LOWER_ENTRIES] = [0; LOWER_ENTRIES];
static SAVED_VALID: AtomicU32 = AtomicU32::new(0);
/// The merged process's PML4 (guest-physical), 0 when none.
static MERGED_ROOT: AtomicU64 = AtomicU64::new(0);
/// One more at every merge and unmerge: a forwarding channel attached under another generation
/// belongs to a process no longer merged (fwd.rs drops it).
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Whether a process is merged.
pub fn merged() -> bool {
    MERGED_ROOT.load(Ordering::Acquire) != 0
}

/// The merge generation (see [`GENERATION`]).
pub fn generation() -> u32 {
    GENERATION.load(Ordering::Acquire)
}

/// Reloads CR3: flushes this core's TLB (duet's tables have no global pages).
pub fn flush_tlb() {
    // SAFETY: reloading CR3 with its own value only drops this core's (non-global) TLB entries.
    unsafe { asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _, options(nostack, preserves_flags)) };
}

/// Drops this core's cached translations of `[va, va + len)`, page by page (`invlpg`), besides a
/// full flush: on a PVM host the HRT's shadow of the merged tables is refreshed by `invlpg` of an
/// address, not by a CR3 reload, when the ROS's VM changed them (a region freed and mapped again
/// at the same address, on other pages).
pub fn flush_range(va: u64, len: u64) {
    flush_tlb();
    let mut page = va & !0xfff;
    while page < va.saturating_add(len) {
        cpu::invlpg(page);
        page += 4096;
    }
}

/// Most page-table pages [`touch_tables`] visits.
const MAX_TABLE_PAGES: usize = 16_384;

/// Writes (an atomic no-op `lock or 0`) to the first word of every page-table page below the
/// merged lower half (PDPTs, page directories, page tables), through the physical window. On a
/// PVM host the HRT's KVM VM shadows guest page tables and learns of their changes only from its
/// own writes; the ROS's VM writes them unseen, and Linux recycles a dead process's page-table
/// pages for a new one, so the HRT could keep translating a new process's addresses to the old
/// one's pages. A write by this VM to a shadowed table makes KVM drop or re-sync its shadow. On
/// hardware KVM this is a harmless locked no-op per table page. Returns the pages visited.
pub fn touch_tables() -> usize {
    if MERGED_ROOT.load(Ordering::Acquire) == 0 {
        return 0;
    }
    let mut visited = 0;
    let touch = |table: u64, visited: &mut usize| {
        // SAFETY: `table` lies in ROS RAM (checked by the caller), mapped by the physical window.
        unsafe { core::sync::atomic::AtomicU64::from_ptr(pv(table) as *mut u64) }.fetch_or(0, Ordering::Relaxed);
        *visited += 1;
    };
    let pml4 = own_pml4();
    for i in 0..LOWER_ENTRIES {
        // SAFETY: entry i < 256 of this core's PML4, which the window maps (module docs).
        let e4 = unsafe { read_volatile(pml4.add(i)) };
        let pdpt = e4 & ADDR_MASK;
        if e4 & PRESENT == 0 || !in_ros_ram(pdpt, 4096) || visited >= MAX_TABLE_PAGES {
            continue;
        }
        touch(pdpt, &mut visited);
        for j in 0..512 {
            // SAFETY: entry j < 512 of a page-aligned table in ROS RAM (checked), in the window.
            let e3 = unsafe { read_volatile((pv(pdpt) as *const u64).add(j)) };
            let pd = e3 & ADDR_MASK;
            if e3 & PRESENT == 0 || e3 & HUGE != 0 || !in_ros_ram(pd, 4096) || visited >= MAX_TABLE_PAGES {
                continue;
            }
            touch(pd, &mut visited);
            for k in 0..512 {
                // SAFETY: entry k < 512 of a page-aligned table in ROS RAM (checked), in the window.
                let e2 = unsafe { read_volatile((pv(pd) as *const u64).add(k)) };
                let pt = e2 & ADDR_MASK;
                if e2 & PRESENT == 0 || e2 & HUGE != 0 || !in_ros_ram(pt, 4096) || visited >= MAX_TABLE_PAGES {
                    continue;
                }
                touch(pt, &mut visited);
            }
        }
    }
    visited
}

/// The PML4 this core runs on (duet's, one for every HRT core), in the physical window.
fn own_pml4() -> *mut u64 {
    pv(cr3() & ADDR_MASK) as *mut u64
}

fn locked<T>(f: impl FnOnce() -> T) -> T {
    while MERGE_LOCK.swap(1, Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    let r = f();
    MERGE_LOCK.store(0, Ordering::Release);
    r
}

/// [`FUNC_MERGE`]: `root` = guest-physical address of a ROS process's PML4 (page-aligned, in ROS
/// RAM; else u64::MAX). Saves duet's entries 0-255 (the first time), copies the root's entries
/// 0-255 into the PML4 all HRT cores share, and flushes this core's TLB. Returns 0.
pub fn merge(root: u64) -> u64 {
    if !root.is_multiple_of(4096) || !in_ros_ram(root, 4096) {
        return u64::MAX;
    }
    // SAFETY: under MERGE_LOCK, the only writer of SAVED and of the shared PML4's entries 0-255.
    // The PML4 (duet's, in HRT RAM) and the root (page-aligned in ROS RAM, checked) are 512-entry
    // tables in the window, SAVED holds 256 words; replacing the lower half is sound (module docs).
    locked(|| unsafe {
        let pml4 = own_pml4();
        if SAVED_VALID.load(Ordering::Relaxed) == 0 {
            core::ptr::copy_nonoverlapping(pml4, core::ptr::addr_of_mut!(SAVED) as *mut u64, LOWER_ENTRIES);
            SAVED_VALID.store(1, Ordering::Relaxed);
        }
        core::ptr::copy_nonoverlapping(pv(root) as *const u64, pml4, LOWER_ENTRIES);
        MERGED_ROOT.store(root, Ordering::Release);
        GENERATION.fetch_add(1, Ordering::AcqRel);
    });
    touch_tables();
    flush_tlb();
    0
}

/// [`FUNC_UNMERGE`]: puts duet's entries 0-255 back (if a merge saved them) and flushes this
/// core's TLB. Returns 0.
pub fn unmerge() -> u64 {
    // SAFETY: under MERGE_LOCK, as in `merge`: SAVED (valid once a merge filled it) goes back into
    // entries 0-255 of this core's PML4, in the window.
    locked(|| unsafe {
        if SAVED_VALID.load(Ordering::Relaxed) != 0 {
            core::ptr::copy_nonoverlapping(core::ptr::addr_of!(SAVED) as *const u64, own_pml4(), LOWER_ENTRIES);
        }
        MERGED_ROOT.store(0, Ordering::Release);
        GENERATION.fetch_add(1, Ordering::AcqRel);
    });
    flush_tlb();
    0
}

/// Walks this core's page tables in software, through the physical window: the guest-physical
/// address of the 8-aligned u64 at `va`, if every level is present (and writable, for `write`),
/// every table lies in RAM (so the walk never faults, nor reads MMIO) and the word lies in ROS RAM
/// (user memory: a ROS page table aimed at HRT RAM gets nothing). 4 KiB, 2 MiB and 1 GiB pages.
pub fn walk(va: u64, write: bool) -> Option<u64> {
    let top = va >> 47;
    if !va.is_multiple_of(8) || (top != 0 && top != 0x1ffff) {
        return None;
    }
    let mut table = cr3() & ADDR_MASK;
    for (level, shift) in [(4u32, 39u32), (3, 30), (2, 21), (1, 12)] {
        if !in_ram(table, 4096) {
            return None;
        }
        // SAFETY: entry < 512 of a page-aligned table in RAM (checked just above), in the window.
        let e = unsafe { read_volatile((pv(table) as *const u64).add(((va >> shift) & 511) as usize)) };
        if e & PRESENT == 0 || (write && e & WRITABLE == 0) {
            return None;
        }
        if level == 1 || (e & HUGE != 0 && level <= 3) {
            let size = 1u64 << shift;
            let pa = (e & ADDR_MASK & !(size - 1)) | (va & (size - 1));
            return in_ros_ram(pa, 8).then_some(pa);
        }
        table = e & ADDR_MASK;
    }
    None
}

/// Function 13: the u64 at `va` (mapped and writable at every level) becomes its complement;
/// returns the new value, or [`NOT_MAPPED`]. Read and written through the physical window (not
/// atomic against the process).
pub fn flip(va: u64) -> u64 {
    let Some(pa) = walk(va, true) else { return NOT_MAPPED };
    let word = pv(pa) as *mut u64;
    // SAFETY: `walk` found an 8-aligned word of ROS RAM, mapped writable for the process; the
    // window maps it, and it is the process's memory (module docs).
    unsafe {
        let new = !read_volatile(word);
        write_volatile(word, new);
        new
    }
}


/// Copies the merged process's PML4 entries 0-255 that differ from ours (a top-level entry the
/// process made, or dropped, after the merge). Returns whether any did (then flush the TLB).
pub fn resync() -> bool {
    let root = MERGED_ROOT.load(Ordering::Acquire);
    if root == 0 {
        return false;
    }
    locked(|| {
        let (ours, theirs) = (own_pml4(), pv(root) as *const u64);
        let mut changed = false;
        for i in 0..LOWER_ENTRIES {
            // SAFETY: under MERGE_LOCK; entry i < 256 of this core's PML4 and of the merged root
            // (page-aligned ROS RAM, checked at the merge), both in the window; replacing a lower
            // half entry is sound (module docs).
            unsafe {
                let e = read_volatile(theirs.add(i));
                if read_volatile(ours.add(i)) != e {
                    write_volatile(ours.add(i), e);
                    changed = true;
                }
            }
        }
        changed
    })
}

/// Whether [va, va + len) lies in the lower (user) half and every page of it is mapped writable to
/// ROS RAM in this core's page tables (the software walk: never a fault).
pub fn user_region_mapped(va: u64, len: u64) -> bool {
    let Some(last) = len.checked_sub(1).and_then(|l| va.checked_add(l)) else { return false };
    if last >= 1 << 47 {
        return false;
    }
    let mut page = va & !4095;
    while page <= last {
        if walk(page, true).is_none() {
            return false;
        }
        page += 4096;
    }
    true
}

/// Writes `v` to the user word at `va` (8-aligned, mapped writable) through the physical window.
pub fn user_write_u64(va: u64, v: u64) -> bool {
    match walk(va, true) {
        Some(pa) => {
            // SAFETY: `walk` found an 8-aligned word of ROS RAM, mapped writable (module docs).
            unsafe { write_volatile(pv(pa) as *mut u64, v) };
            true
        }
        None => false,
    }
}

/// Reads the user word at `va` (8-aligned, mapped) through the physical window.
pub fn user_read_u64(va: u64) -> Option<u64> {
    // SAFETY: `walk` found an 8-aligned word of ROS RAM, mapped for the process (module docs).
    walk(va, false).map(|pa| unsafe { read_volatile(pv(pa) as *const u64) })
}
