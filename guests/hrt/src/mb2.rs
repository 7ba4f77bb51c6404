//! The Multiboot2 boot information (spec 2.0, section 3.6), parsed by hand with every read
//! bounds-checked against the structure's total size.

/// Tag types.
pub const TAG_END: u32 = 0;
pub const TAG_CMDLINE: u32 = 1;
pub const TAG_MODULE: u32 = 3;
pub const TAG_MMAP: u32 = 6;
pub const TAG_ACPI_OLD: u32 = 14;
pub const TAG_ACPI_NEW: u32 = 15;
/// duet's partition description (abi::HvmInfo after the 8-byte tag header).
pub const TAG_HVM: u32 = abi::HVM_INFO_TAG;

/// The largest boot information accepted (a sanity bound).
const MAX_SIZE: u32 = 16 << 20;

pub fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

/// The bytes of a NUL-terminated string starting at `off` (without the NUL; to the end of `b`
/// if there is none).
pub fn cstr(b: &[u8], off: usize) -> &[u8] {
    let s = b.get(off..).unwrap_or(&[]);
    let mut n = 0;
    while n < s.len() && s.get(n).copied().unwrap_or(0) != 0 {
        n += 1;
    }
    s.get(..n).unwrap_or(&[])
}

pub struct Info {
    /// Its physical address.
    pub addr: u64,
    /// Where physical memory is mapped: physical x is virtual `phys_offset + x` (0 standalone: the
    /// identity map; a partitioned VM: the physical window, boot::PHYS_MAP_BASE).
    pub phys_offset: u64,
    bytes: &'static [u8],
}

impl Info {
    /// The structure at physical address `addr`, read at virtual `phys_offset + addr`, if its
    /// header is sane and it lies wholly below physical `limit` (what the mapping covers for sure:
    /// 4 GiB standalone; a partitioned VM maps all guest memory).
    ///
    /// # Safety
    /// `addr` must be what the loader passed in EBX (nobody writes the boot information while the
    /// kernel runs), and `[phys_offset, phys_offset + limit)` must map physical memory from 0 (page
    /// 0 aside) for as long as the `Info` is used.
    pub unsafe fn new(addr: u64, limit: u64, phys_offset: u64) -> Option<Info> {
        // 8-aligned, not in the unmapped page 0.
        if addr & 7 != 0 || addr < 0x1000 || addr.checked_add(16)? > limit {
            return None;
        }
        let virt = phys_offset.checked_add(addr)?;
        // SAFETY: the caller's contract maps [addr, addr + 16) (checked below `limit`, not page 0)
        // at `virt`; 8-aligned, so an aligned u32.
        let total = unsafe { core::ptr::read_volatile(virt as usize as *const u32) };
        if !(16..=MAX_SIZE).contains(&total) || addr.checked_add(total as u64)? > limit {
            return None;
        }
        // SAFETY: [addr, addr + total) lies below `limit` (checked), so the caller's contract maps
        // it at `virt` and nobody writes it: a shared slice for the kernel's lifetime.
        let bytes = unsafe { core::slice::from_raw_parts(virt as usize as *const u8, total as usize) };
        Some(Info { addr, phys_offset, bytes })
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn tags(&self) -> Tags<'static> {
        Tags {
            bytes: self.bytes,
            off: 8,
        }
    }

    /// The first tag of type `typ` (whole tag, header included).
    pub fn find(&self, typ: u32) -> Option<&'static [u8]> {
        let bytes = self.bytes;
        for (t, data) in (Tags { bytes, off: 8 }) {
            if t == typ {
                return Some(data);
            }
        }
        None
    }

    /// The command line (empty if none).
    pub fn cmdline(&self) -> &'static [u8] {
        self.find(TAG_CMDLINE).map(|t| cstr(t, 8)).unwrap_or(&[])
    }

    /// The RSDP copy (new one preferred), from its signature on.
    pub fn rsdp(&self) -> Option<&'static [u8]> {
        let t = self
            .find(TAG_ACPI_NEW)
            .or_else(|| self.find(TAG_ACPI_OLD))?;
        t.get(8..)
    }
}

/// Iterates over (type, whole tag) until the end tag or the first malformed tag.
pub struct Tags<'a> {
    bytes: &'a [u8],
    off: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = (u32, &'a [u8]);

    fn next(&mut self) -> Option<(u32, &'a [u8])> {
        let typ = u32_at(self.bytes, self.off)?;
        let size = u32_at(self.bytes, self.off + 4)? as usize;
        if typ == TAG_END || size < 8 {
            return None;
        }
        let tag = self.bytes.get(self.off..self.off.checked_add(size)?)?;
        self.off = (self.off + size + 7) & !7;
        Some((typ, tag))
    }
}

/// A module tag's fields.
pub struct Module<'a> {
    pub start: u32,
    pub end: u32,
    pub string: &'a [u8],
}

pub fn module(tag: &[u8]) -> Option<Module<'_>> {
    Some(Module {
        start: u32_at(tag, 8)?,
        end: u32_at(tag, 12)?,
        string: cstr(tag, 16),
    })
}

/// A memory map entry.
pub struct MmapEntry {
    pub base: u64,
    pub len: u64,
    pub typ: u32,
}

/// The entries of a memory map tag.
pub fn mmap_entries(tag: &[u8]) -> MmapIter<'_> {
    let entry_size = u32_at(tag, 8).unwrap_or(0) as usize;
    MmapIter {
        tag,
        off: 16,
        entry_size,
    }
}

pub struct MmapIter<'a> {
    tag: &'a [u8],
    off: usize,
    entry_size: usize,
}

impl Iterator for MmapIter<'_> {
    type Item = MmapEntry;

    fn next(&mut self) -> Option<MmapEntry> {
        if self.entry_size < 24 {
            return None;
        }
        let e = self
            .tag
            .get(self.off..self.off.checked_add(self.entry_size)?)?;
        self.off += self.entry_size;
        Some(MmapEntry {
            base: u64_at(e, 0)?,
            len: u64_at(e, 8)?,
            typ: u32_at(e, 16)?,
        })
    }
}
