//! Page tables, both ways: building the HRT's tables for its 64-bit entry, and walking a caller's
//! tables to turn the virtual addresses of hypercall buffers into guest-physical ones.
//!
//! The walk is the only way a hypercall reaches guest memory, and it is where isolation holds for
//! hypercalls: every table it reads and every byte it touches must lie in RAM the caller may use (for
//! the ROS: its own RAM), so a ROS process cannot aim the VMM at HRT memory through crafted tables.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{PartitionLayout, PAGE_TABLES_END, PAGE_TABLES_OFFSET};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const HUGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PAGE: u64 = 0x1000;
const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// Why the HRT's page tables could not be built.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    /// A window's virtual address is not canonical, not aligned, or wraps.
    #[error("the HVM header tag's {what} ({addr:#x}) is not a canonical, {align:#x}-aligned address with room for {len:#x} bytes")]
    BadWindow {
        /// Which window.
        what: &'static str,
        /// Its virtual base.
        addr: u64,
        /// Required alignment.
        align: u64,
        /// Its length.
        len: u64,
    },
    /// Two windows overlap.
    #[error("the HVM header tag's kernel window and physical map overlap each other or the identity map")]
    Overlap,
    /// More tables than the area holds.
    #[error("the HRT's page tables need more than the {0} KiB duet reserves for them")]
    TooBig(u64),
    /// Writing guest memory failed.
    #[error("writing the HRT's page tables into guest memory failed")]
    Write,
}

/// Page tables under construction: page 0 is the PML4.
struct Tables {
    pages: Vec<[u64; 512]>,
    base: u64,
    max_pages: usize,
}

impl Tables {
    fn child(&mut self, page: usize, index: usize) -> Result<usize, PagingError> {
        let entry = self.pages[page][index];
        if entry & PRESENT != 0 {
            return Ok(((entry & ADDR_MASK) - self.base) as usize / PAGE as usize);
        }
        if self.pages.len() >= self.max_pages {
            return Err(PagingError::TooBig((PAGE_TABLES_END - PAGE_TABLES_OFFSET) >> 10));
        }
        self.pages.push([0; 512]);
        let new = self.pages.len() - 1;
        self.pages[page][index] = (self.base + new as u64 * PAGE) | PRESENT | WRITABLE;
        Ok(new)
    }

    /// Maps `[va, va + len)` to `[pa, ...)` with 2 MiB pages; `uncached(pa)` picks PCD|PWT.
    fn map(&mut self, va: u64, pa: u64, len: u64, uncached: &dyn Fn(u64) -> bool) -> Result<(), PagingError> {
        let mut off = 0;
        while off < len {
            let (v, p) = (va.wrapping_add(off), pa + off);
            let pdpt = self.child(0, ((v >> 39) & 511) as usize)?;
            let pd = self.child(pdpt, ((v >> 30) & 511) as usize)?;
            let flags = PRESENT | WRITABLE | HUGE | if uncached(p) { PCD | PWT } else { 0 };
            self.pages[pd][((v >> 21) & 511) as usize] = p | flags;
            off += MIB2;
        }
        Ok(())
    }
}

fn canonical(va: u64) -> bool {
    let top = va >> 47;
    top == 0 || top == 0x1ffff
}

fn window(what: &'static str, addr: u64, len: u64, align: u64) -> Result<(), PagingError> {
    let bad = PagingError::BadWindow { what, addr, align, len };
    let last = addr.checked_add(len - 1).ok_or(bad.clone())?;
    if addr % align != 0 || !canonical(addr) || !canonical(last) || (addr >> 47) != (last >> 47) {
        return Err(bad);
    }
    Ok(())
}

/// The HRT's 64-bit page tables, written into its partition's page-table area: an identity map of
/// `[0, max(4 GiB, top of RAM))` (3–4 GiB uncached: LAPIC, IOAPIC), the kernel window
/// `[kernel_vbase, + HRT size)` → the HRT's partition, and, if `phys_map_base` is not 0, the identity
/// range again at `phys_map_base`. All with 2 MiB pages. Returns the CR3 value.
pub fn build_hrt_tables<M: GuestMemoryBackend>(
    mem: &M,
    layout: &PartitionLayout,
    kernel_vbase: u64,
    phys_map_base: u64,
) -> Result<u64, PagingError> {
    let base = layout.hrt_base() + PAGE_TABLES_OFFSET;
    let identity = layout.top().max(1 << 32).next_multiple_of(GIB);
    let hrt_len = layout.hrt_ram.len.next_multiple_of(MIB2);
    window("kernel_vbase", kernel_vbase, hrt_len, MIB2)?;
    if kernel_vbase < identity {
        return Err(PagingError::Overlap);
    }
    if phys_map_base != 0 {
        window("phys_map_base", phys_map_base, identity, GIB)?;
        let (k0, k1, p0, p1) = (kernel_vbase, kernel_vbase + hrt_len, phys_map_base, phys_map_base + identity);
        if phys_map_base < identity || (k0 < p1 && p0 < k1) {
            return Err(PagingError::Overlap);
        }
    }
    let mut t = Tables {
        pages: vec![[0; 512]],
        base,
        max_pages: ((PAGE_TABLES_END - PAGE_TABLES_OFFSET) / PAGE) as usize,
    };
    let mmio = |p: u64| (boot::layout::MMIO_GAP_START..1 << 32).contains(&p);
    t.map(0, 0, identity, &mmio)?;
    t.map(kernel_vbase, layout.hrt_base(), hrt_len, &|_| false)?;
    if phys_map_base != 0 {
        t.map(phys_map_base, 0, identity, &mmio)?;
    }
    for (i, page) in t.pages.iter().enumerate() {
        let at = base + i as u64 * PAGE;
        let bytes: Vec<u8> = page.iter().flat_map(|e| e.to_le_bytes()).collect();
        mem.write_slice(&bytes, GuestAddress(at)).map_err(|_| PagingError::Write)?;
    }
    Ok(base)
}

/// Why a caller's virtual address could not be used.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    /// Not mapped (a non-present entry on the way).
    #[error("virtual address {0:#x} is not mapped")]
    NotMapped(u64),
    /// Mapped, but not with the access asked for (user, write).
    #[error("virtual address {0:#x} is not accessible that way")]
    Denied(u64),
    /// A table or the target lies outside the RAM the caller may use.
    #[error("virtual address {0:#x} leads outside the caller's memory")]
    OutsideMemory(u64),
}

/// How a caller's address space is seen: its page-table root, whether it was in user mode, and the
/// guest-physical ranges it may reach.
pub struct GuestView<'a, M: GuestMemoryBackend> {
    /// Guest memory.
    pub mem: &'a M,
    /// CR3 of the calling vCPU (PCID and flag bits are masked off here).
    pub cr3: u64,
    /// Whether paging is on (CR0.PG); if not, virtual = physical.
    pub paging: bool,
    /// Whether the caller ran at CPL 3 (then every level must allow user access).
    pub user: bool,
    /// Whether `[gpa, gpa + len)` is RAM the caller may use.
    pub allowed: &'a dyn Fn(u64, u64) -> bool,
}

impl<M: GuestMemoryBackend> GuestView<'_, M> {
    fn entry(&self, table: u64, index: u64, va: u64) -> Result<u64, WalkError> {
        let at = table + index * 8;
        if !(self.allowed)(at, 8) {
            return Err(WalkError::OutsideMemory(va));
        }
        self.mem.read_obj::<u64>(GuestAddress(at)).map_err(|_| WalkError::OutsideMemory(va))
    }

    /// The guest-physical address of `va`, checked for `write` access, and the bytes left in its page.
    pub fn translate(&self, va: u64, write: bool) -> Result<(u64, u64), WalkError> {
        let (pa, page_size) = if !self.paging {
            (va, PAGE - va % PAGE)
        } else {
            if !canonical(va) {
                return Err(WalkError::NotMapped(va));
            }
            let mut table = self.cr3 & ADDR_MASK;
            let mut found = None;
            for (level, shift) in [(4, 39u32), (3, 30), (2, 21), (1, 12)] {
                let e = self.entry(table, (va >> shift) & 511, va)?;
                if e & PRESENT == 0 {
                    return Err(WalkError::NotMapped(va));
                }
                if (self.user && e & USER == 0) || (write && e & WRITABLE == 0) {
                    return Err(WalkError::Denied(va));
                }
                let size = 1u64 << shift;
                if level == 1 || (e & HUGE != 0 && (level == 2 || level == 3)) {
                    let frame = e & ADDR_MASK & !(size - 1);
                    found = Some((frame | (va & (size - 1)), size - (va & (size - 1))));
                    break;
                }
                table = e & ADDR_MASK;
            }
            found.ok_or(WalkError::NotMapped(va))?
        };
        Ok((pa, page_size))
    }

    /// Guest-physical pieces `(gpa, len)` covering `[va, va + len)`, each checked for the access and
    /// against the caller's memory.
    pub fn pieces(&self, va: u64, len: u64, write: bool) -> Result<Vec<(u64, u64)>, WalkError> {
        let mut out = Vec::new();
        let mut done = 0u64;
        while done < len {
            let v = va.checked_add(done).ok_or(WalkError::NotMapped(va))?;
            let (pa, room) = self.translate(v, write)?;
            let n = room.min(len - done);
            if !(self.allowed)(pa, n) {
                return Err(WalkError::OutsideMemory(v));
            }
            out.push((pa, n));
            done += n;
        }
        Ok(out)
    }

    /// Copies `data` to the caller's `[va, va + data.len())`.
    pub fn write(&self, va: u64, data: &[u8]) -> Result<(), WalkError> {
        let mut at = 0usize;
        for (pa, n) in self.pieces(va, data.len() as u64, true)? {
            let chunk = &data[at..at + n as usize];
            self.mem.write_slice(chunk, GuestAddress(pa)).map_err(|_| WalkError::OutsideMemory(va))?;
            at += n as usize;
        }
        Ok(())
    }

    /// Reads the caller's `[va, va + len)`.
    pub fn read(&self, va: u64, len: u64) -> Result<Vec<u8>, WalkError> {
        let pieces = self.pieces(va, len, false)?;
        let mut out = vec![0u8; len as usize];
        let mut at = 0usize;
        for (pa, n) in pieces {
            self.mem
                .read_slice(&mut out[at..at + n as usize], GuestAddress(pa))
                .map_err(|_| WalkError::OutsideMemory(va))?;
            at += n as usize;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "paging_tests.rs"]
mod tests;
