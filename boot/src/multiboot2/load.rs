//! Planning where a Multiboot2 image goes (RAM, reserved ranges, relocation) and copying it in.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::header::{Mb2Image, RelocationPreference};
use super::Mb2Error;
use crate::layout::RamRange;

/// 4 GiB: a 32-bit kernel with paging off sees nothing above.
pub(super) const LIMIT_4G: u64 = 1 << 32;

/// Where a Multiboot2 kernel was (or will be) loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mb2Loaded {
    /// Entry point (physical, after relocation).
    pub entry: u32,
    /// First byte of the image in guest memory.
    pub load_start: u64,
    /// One past its last byte (bss included).
    pub load_end: u64,
    /// The base the image was relocated to; `Some` exactly when it has a relocatable tag (and then it is
    /// reported in the information structure's image load base tag).
    pub load_base: Option<u64>,
}

fn overlapping(start: u64, end: u64, reserved: &[(u64, u64)]) -> Option<(u64, u64)> {
    reserved.iter().copied().find(|(rs, re)| rs < re && start < *re && *rs < end)
}

fn in_ram(start: u64, end: u64, ram: &[RamRange]) -> bool {
    ram.iter().any(|r| r.start.0 <= start && r.start.0.checked_add(r.len).is_some_and(|re| end <= re))
}

fn align_up(v: u64, align: u64) -> Option<u64> {
    v.checked_next_multiple_of(align.max(1))
}

fn align_down(v: u64, align: u64) -> u64 {
    v - v % align.max(1)
}

/// Lowest `align`-ed address `a >= from` with `[a, a + size)` inside one RAM range, below `limit`, and
/// clear of every reserved range.
pub(super) fn find_low(from: u64, limit: u64, size: u64, align: u64, ram: &[RamRange], reserved: &[(u64, u64)]) -> Option<u64> {
    let mut ranges: Vec<RamRange> = ram.to_vec();
    ranges.sort_by_key(|r| r.start.0);
    for r in ranges {
        let top = r.start.0.saturating_add(r.len).min(limit);
        let mut a = align_up(from.max(r.start.0), align)?;
        // Each step moves past a reserved range's end, so this ends after at most reserved.len() steps.
        loop {
            let end = match a.checked_add(size) {
                Some(e) if e <= top => e,
                _ => break,
            };
            match overlapping(a, end, reserved) {
                Some((_, re)) => a = align_up(re, align)?,
                None => return Some(a),
            }
        }
    }
    None
}

/// Highest `align`-ed address `a >= from` with `[a, a + size)` inside one RAM range, ending at or below
/// `limit`, and clear of every reserved range.
pub(super) fn find_high(from: u64, limit: u64, size: u64, align: u64, ram: &[RamRange], reserved: &[(u64, u64)]) -> Option<u64> {
    let mut ranges: Vec<RamRange> = ram.to_vec();
    ranges.sort_by_key(|r| std::cmp::Reverse(r.start.0));
    for r in ranges {
        let top = r.start.0.saturating_add(r.len).min(limit);
        let low = from.max(r.start.0);
        let Some(mut a) = top.checked_sub(size).map(|a| align_down(a, align)) else { continue };
        // Each step moves below a reserved range's start: at most reserved.len() steps.
        loop {
            if a < low {
                break;
            }
            let Some(end) = a.checked_add(size) else { break };
            match overlapping(a, end, reserved) {
                Some((rs, _)) => match rs.checked_sub(size) {
                    Some(b) if align_down(b, align) < a => a = align_down(b, align),
                    _ => break,
                },
                None => return Some(a),
            }
        }
    }
    None
}

/// How an image is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    /// The standard Multiboot2 way: at the linked physical addresses, or relocated inside the
    /// relocatable tag's window; everything below 4 GiB.
    #[default]
    Standard,
    /// The HVM 64-bit entry (an image with duet's HVM header tag booted as the HRT of a partitioned
    /// VM): a segment linked at physical address P goes to `partition_base + P`, anywhere in RAM.
    Hvm {
        /// First byte of the HRT's partition.
        partition_base: u64,
    },
}

/// Checks that `image` fits the VM's RAM (`ram`) clear of `reserved` ranges (`(start, end)`, e.g.
/// [`super::DUET_RESERVED`]), picking a load base in the relocatable window when the image has one.
/// Touches no memory; [`load`] and `duet check` share it.
pub fn plan(image: &Mb2Image, ram: &[RamRange], reserved: &[(u64, u64)]) -> Result<Mb2Loaded, Mb2Error> {
    plan_with(image, ram, reserved, LoadMode::Standard)
}

/// [`plan`] for a given [`LoadMode`]. In [`LoadMode::Hvm`] the returned `entry` is 0 (the kernel is
/// entered at its HVM tag's `entry64`) and there is no 4 GiB limit.
pub fn plan_with(image: &Mb2Image, ram: &[RamRange], reserved: &[(u64, u64)], mode: LoadMode) -> Result<Mb2Loaded, Mb2Error> {
    let lo = image.load_start();
    let hi = image.load_end();
    let size = hi - lo;
    let (limit, hvm) = match mode {
        LoadMode::Standard => (LIMIT_4G, false),
        LoadMode::Hvm { .. } => (u64::MAX, true),
    };
    let base = match (mode, image.relocatable) {
        (LoadMode::Hvm { partition_base }, _) => partition_base
            .checked_add(lo)
            .ok_or(Mb2Error::SegmentOutsideRam { index: 0, start: lo, end: hi })?,
        (LoadMode::Standard, None) => lo,
        (LoadMode::Standard, Some(rel)) => {
            let align = u64::from(rel.align);
            let (min, max) = (u64::from(rel.min_addr), u64::from(rel.max_addr));
            let fits_linked = lo >= min
                && hi <= max
                && lo % align.max(1) == 0
                && in_ram(lo, hi, ram)
                && overlapping(lo, hi, reserved).is_none();
            let found = match rel.preference {
                RelocationPreference::None if fits_linked => Some(lo),
                RelocationPreference::None | RelocationPreference::Low => find_low(min, max, size, align, ram, reserved),
                RelocationPreference::High => find_high(min, max, size, align, ram, reserved),
            };
            found.ok_or(Mb2Error::RelocationImpossible { min: rel.min_addr, max: rel.max_addr, align: rel.align, size })?
        }
    };
    for (index, s) in image.segments.iter().enumerate() {
        // base + (s.paddr - lo) cannot overflow: base + size is inside RAM or the 32-bit window.
        let start = base.checked_add(s.paddr - lo).ok_or(Mb2Error::SegmentAbove4G { index, start: s.paddr, end: s.end() })?;
        let end = start.checked_add(s.mem_size).ok_or(Mb2Error::SegmentAbove4G { index, start, end: u64::MAX })?;
        if end > limit {
            return Err(Mb2Error::SegmentAbove4G { index, start, end });
        }
        if let Some((reserved_start, reserved_end)) = overlapping(start, end, reserved) {
            return Err(Mb2Error::OverlapsReserved { index, start, end, reserved_start, reserved_end });
        }
        if !in_ram(start, end, ram) {
            return Err(Mb2Error::SegmentOutsideRam { index, start, end });
        }
    }
    let entry = if hvm {
        0
    } else {
        let entry = i128::from(image.entry) + i128::from(base) - i128::from(lo);
        u32::try_from(entry).map_err(|_| Mb2Error::EntryOutOfRange(entry.clamp(0, i128::from(u64::MAX)) as u64))?
    };
    Ok(Mb2Loaded {
        entry,
        load_start: base,
        load_end: base + size,
        load_base: if hvm { None } else { image.relocatable.map(|_| base) },
    })
}

/// Plans (see [`plan`]) and copies the image's segments from `kernel` (the whole file that was
/// inspected) into `mem`, zero-filling each segment's memory beyond its file bytes.
pub fn load<M: GuestMemoryBackend>(
    mem: &M,
    kernel: &[u8],
    image: &Mb2Image,
    ram: &[RamRange],
    reserved: &[(u64, u64)],
) -> Result<Mb2Loaded, Mb2Error> {
    load_with(mem, kernel, image, ram, reserved, LoadMode::Standard)
}

/// [`load`] for a given [`LoadMode`].
pub fn load_with<M: GuestMemoryBackend>(
    mem: &M,
    kernel: &[u8],
    image: &Mb2Image,
    ram: &[RamRange],
    reserved: &[(u64, u64)],
    mode: LoadMode,
) -> Result<Mb2Loaded, Mb2Error> {
    let loaded = plan_with(image, ram, reserved, mode)?;
    let lo = image.load_start();
    const ZEROS: [u8; 4096] = [0; 4096];
    for s in &image.segments {
        let start = loaded.load_start + (s.paddr - lo);
        let truncated = || Mb2Error::Truncated { what: "a segment".into(), size: kernel.len() as u64 };
        let from = usize::try_from(s.file_offset).map_err(|_| truncated())?;
        let len = usize::try_from(s.file_size).map_err(|_| truncated())?;
        let bytes = kernel.get(from..from.checked_add(len).ok_or_else(truncated)?).ok_or_else(truncated)?;
        mem.write_slice(bytes, GuestAddress(start)).map_err(|_| Mb2Error::Write("a kernel segment"))?;
        let mut at = start + s.file_size;
        let end = start + s.mem_size;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            mem.write_slice(&ZEROS[..n], GuestAddress(at)).map_err(|_| Mb2Error::Write("a kernel segment's bss"))?;
            at += n as u64;
        }
    }
    Ok(loaded)
}
