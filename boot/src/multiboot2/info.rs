//! The Multiboot2 boot information structure (spec 3.6), built with the `multiboot2` crate's builder, and
//! the placement of the modules and of the structure itself in guest memory.

use ::multiboot2::{
    Builder as InformationBuilder, MaybeDynSized,    BasicMemoryInfoTag, BootLoaderNameTag, CommandLineTag, ImageLoadPhysAddrTag, MemoryArea, MemoryAreaType,
    MemoryMapTag, ModuleTag, RsdpV1Tag, RsdpV2Tag,
};

use super::load::{find_low, LIMIT_4G};
use super::Mb2Error;
use crate::layout::{RamRange, HIGH_MEMORY_START, LEGACY_HOLE_START};

const PAGE_SIZE: u64 = 0x1000;
/// The information structure is 8-byte aligned (spec 3.6.1).
const INFO_ALIGN: u64 = 8;

/// An ACPI RSDP, as the bytes of the table (the tag carries a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rsdp {
    /// ACPI 1.0 RSDP (revision 0), 20 bytes: goes in the "ACPI old RSDP" tag (14).
    V1([u8; 20]),
    /// ACPI 2.0+ RSDP, 36 bytes: goes in the "ACPI new RSDP" tag (15).
    V2([u8; 36]),
}

/// A module as the information structure describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo<'a> {
    /// First byte (guest-physical).
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
    /// Its string.
    pub string: &'a str,
}

/// What goes in the boot information structure.
#[derive(Debug, Clone, Copy)]
pub struct InfoSpec<'a> {
    /// Kernel command line.
    pub cmdline: &'a str,
    /// Boot-loader name ([`super::BOOTLOADER_NAME`]).
    pub bootloader_name: &'a str,
    /// Guest RAM.
    pub ram: &'a [RamRange],
    /// Ranges the memory map reports as reserved and leaves out of available RAM
    /// ([`super::DUET_MMAP_RESERVED`]).
    pub mmap_reserved: &'a [(u64, u64)],
    /// Modules, placed.
    pub modules: &'a [ModuleInfo<'a>],
    /// The ACPI RSDP, if any.
    pub rsdp: Option<Rsdp>,
    /// Image load base (for a relocatable image).
    pub load_base: Option<u32>,
}

/// Where modules and the information structure go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// (start, end) of each module, page aligned.
    pub modules: Vec<(u64, u64)>,
    /// Address of the information structure (8-byte aligned).
    pub info: u64,
}

/// Available RAM: `ram` minus `reserved`, sorted, merged; and the reserved ranges, as (start, end, type)
/// with type 1 (available) or 2 (reserved), sorted by start.
pub fn memory_map(ram: &[RamRange], reserved: &[(u64, u64)]) -> Vec<(u64, u64, u32)> {
    let mut avail: Vec<(u64, u64)> =
        ram.iter().map(|r| (r.start.0, r.start.0.saturating_add(r.len))).filter(|(s, e)| s < e).collect();
    for &(rs, re) in reserved.iter().filter(|(s, e)| s < e) {
        avail = avail
            .into_iter()
            .flat_map(|(s, e)| {
                if re <= s || e <= rs {
                    vec![(s, e)]
                } else {
                    [(s, rs), (re, e)].into_iter().filter(|(a, b)| a < b).collect()
                }
            })
            .collect();
    }
    avail.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in avail {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut map: Vec<(u64, u64, u32)> = merged.into_iter().map(|(s, e)| (s, e, 1)).collect();
    map.extend(reserved.iter().filter(|(s, e)| s < e).map(|&(s, e)| (s, e, 2)));
    map.sort_unstable();
    map
}

/// Basic memory information (KiB): `mem_lower` is the available RAM from 0 up to at most 640 KiB,
/// `mem_upper` the available RAM from 1 MiB up to the first hole.
pub fn mem_info(ram: &[RamRange], reserved: &[(u64, u64)]) -> (u32, u32) {
    let map = memory_map(ram, reserved);
    let avail = |at: u64| map.iter().find(|(s, e, t)| *t == 1 && *s <= at && at < *e).map(|(_, e, _)| *e);
    let lower = avail(0).map_or(0, |e| e.min(LEGACY_HOLE_START) / 1024);
    let upper = avail(HIGH_MEMORY_START).map_or(0, |e| (e - HIGH_MEMORY_START) / 1024);
    (lower as u32, u32::try_from(upper).unwrap_or(u32::MAX))
}

fn no_nul(s: &str, what: &'static str) -> Result<(), Mb2Error> {
    if s.contains('\0') {
        Err(Mb2Error::StringNul(what))
    } else {
        Ok(())
    }
}

/// Builds the boot information structure: command line, boot-loader name, modules, basic meminfo, memory
/// map, ACPI RSDP (old or new), image load base. The result is its exact bytes, to be written at an
/// 8-byte aligned address (see [`place_modules`]); its length does not depend on the module addresses.
pub fn build_info(spec: &InfoSpec<'_>) -> Result<Vec<u8>, Mb2Error> {
    no_nul(spec.cmdline, "command line")?;
    no_nul(spec.bootloader_name, "boot-loader name")?;
    let mut b = InformationBuilder::new()
        .cmdline(CommandLineTag::new(spec.cmdline))
        .bootloader(BootLoaderNameTag::new(spec.bootloader_name));
    for (i, m) in spec.modules.iter().enumerate() {
        no_nul(m.string, "module string")?;
        if m.end < m.start {
            return Err(Mb2Error::BadModuleRange(i));
        }
        if m.end == m.start {
            return Err(Mb2Error::EmptyModule(i));
        }
        b = b.add_module(ModuleTag::new(m.start, m.end, m.string));
    }
    let (lower, upper) = mem_info(spec.ram, spec.mmap_reserved);
    b = b.meminfo(BasicMemoryInfoTag::new(lower, upper));
    let areas: Vec<MemoryArea> = memory_map(spec.ram, spec.mmap_reserved)
        .into_iter()
        .map(|(s, e, t)| {
            let typ = if t == 1 { MemoryAreaType::Available } else { MemoryAreaType::Reserved };
            MemoryArea::new(s, e - s, typ)
        })
        .collect();
    b = b.mmap(MemoryMapTag::new(&areas));
    match spec.rsdp {
        Some(Rsdp::V1(r)) => {
            b = b.rsdpv1(RsdpV1Tag::new(oem_id(&r), r[15], u32_le(&r, 16)));
        }
        Some(Rsdp::V2(r)) => {
            let xsdt = u64::from(u32_le(&r, 24)) | (u64::from(u32_le(&r, 28)) << 32);
            b = b.rsdpv2(RsdpV2Tag::new(oem_id(&r), r[15], u32_le(&r, 16), u32_le(&r, 20), xsdt));
        }
        None => {}
    }
    if let Some(base) = spec.load_base {
        b = b.image_load_addr(ImageLoadPhysAddrTag::new(base));
    }
    Ok(b.build().as_bytes().to_vec())
}

fn oem_id(r: &[u8]) -> [u8; 6] {
    let mut id = [0u8; 6];
    id.copy_from_slice(&r[9..15]);
    id
}

fn u32_le(r: &[u8], off: usize) -> u32 {
    crate::le::u32_at(r, off).unwrap_or(0)
}

/// Places modules (each page aligned, in order, above `kernel_end`) and then the information structure of
/// `info_len` bytes (8-byte aligned, after the modules), all inside `ram`, below 4 GiB, and clear of
/// `reserved`.
pub fn place_modules(
    kernel_end: u64,
    module_lens: &[u64],
    info_len: u64,
    ram: &[RamRange],
    reserved: &[(u64, u64)],
) -> Result<Placement, Mb2Error> {
    place_modules_below(kernel_end, module_lens, info_len, ram, reserved, LIMIT_4G)
}

/// [`place_modules`] with the information structure anywhere below `info_limit` (modules stay below
/// 4 GiB: their tags hold 32-bit addresses). A kernel entered in 64-bit mode can take its boot
/// information above 4 GiB.
pub fn place_modules_below(
    kernel_end: u64,
    module_lens: &[u64],
    info_len: u64,
    ram: &[RamRange],
    reserved: &[(u64, u64)],
    info_limit: u64,
) -> Result<Placement, Mb2Error> {
    let mut cursor = kernel_end.max(HIGH_MEMORY_START);
    let mut modules = Vec::with_capacity(module_lens.len());
    for (index, &len) in module_lens.iter().enumerate() {
        if len == 0 {
            return Err(Mb2Error::EmptyModule(index));
        }
        let start = find_low(cursor, LIMIT_4G, len, PAGE_SIZE, ram, reserved)
            .ok_or(Mb2Error::ModuleDoesNotFit { index, len })?;
        modules.push((start, start + len));
        cursor = start + len;
    }
    let info = find_low(cursor, info_limit, info_len.max(1), INFO_ALIGN, ram, reserved)
        .ok_or(Mb2Error::InfoDoesNotFit(info_len))?;
    Ok(Placement { modules, info })
}
