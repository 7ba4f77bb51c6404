//! Finding and parsing the Multiboot2 header (spec 2.0, section 3.1) and the image's load description:
//! ELF32/ELF64 program headers (walked with [`crate::elf`]), or the address tag's "a.out kludge". Parsed
//! by hand, every read bounds checked: no input panics.

use super::Mb2Error;
use crate::elf::{self, Class, Elf, ElfError, ProgramHeader, EM_386, EM_X86_64};
use crate::le::{u16_at, u32_at};

/// The header magic.
pub const HEADER_MAGIC: u32 = 0xE852_50D6;
/// The header must lie entirely within this many bytes from the start of the file.
pub const HEADER_SEARCH_LIMIT: usize = 32 * 1024;
/// Boot information tag types duet provides (an information request for anything else is refused unless
/// optional): command line, boot-loader name, modules, basic meminfo, memory map, ACPI old and new RSDP,
/// image load base.
pub const PROVIDED_INFO_TAGS: [u32; 8] = [1, 2, 3, 4, 6, 14, 15, 21];

const ARCH_I386: u32 = 0;
const TAG_END: u16 = 0;
const TAG_INFO_REQUEST: u16 = 1;
const TAG_ADDRESS: u16 = 2;
const TAG_ENTRY: u16 = 3;
const TAG_CONSOLE: u16 = 4;
const TAG_FRAMEBUFFER: u16 = 5;
const TAG_MODULE_ALIGN: u16 = 6;
const TAG_EFI_BS: u16 = 7;
const TAG_EFI_I386_ENTRY: u16 = 8;
const TAG_EFI_AMD64_ENTRY: u16 = 9;
const TAG_RELOCATABLE: u16 = 10;
const FLAG_OPTIONAL: u16 = 1;
const CONSOLE_REQUIRED: u32 = 1;

/// The address tag (a.out kludge): where the file's bytes go without ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressTag {
    /// Physical address the header's magic is loaded at.
    pub header_addr: u32,
    /// Physical address of the start of the text segment (first byte loaded).
    pub load_addr: u32,
    /// End of the data segment; 0: the file's end.
    pub load_end_addr: u32,
    /// End of the bss (zero-filled); 0: no bss.
    pub bss_end_addr: u32,
}

/// A framebuffer the kernel would like (duet has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramebufferRequest {
    /// Width in pixels (0: no preference).
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Bits per pixel.
    pub depth: u32,
}

/// Where a relocatable image prefers to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocationPreference {
    /// No preference: keep the linked address if it fits, else the lowest that does.
    None,
    /// As low as possible.
    Low,
    /// As high as possible.
    High,
}

/// The relocatable tag: the image may load anywhere in `[min_addr, max_addr]`, aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocatable {
    /// Lowest address of the image's first byte.
    pub min_addr: u32,
    /// Highest address of the image's end (the whole image lies in `[min_addr, max_addr]`).
    pub max_addr: u32,
    /// Alignment of the load base (0 is treated as 1).
    pub align: u32,
    /// Preference.
    pub preference: RelocationPreference,
}

/// How the image describes its loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mb2Format {
    /// ELF32 program headers.
    Elf32,
    /// ELF64 program headers (still entered in 32-bit mode).
    Elf64,
    /// The address tag ("a.out kludge").
    AoutKludge,
}

/// One piece of the image in guest-physical memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of its bytes in the file.
    pub file_offset: u64,
    /// Bytes copied from the file.
    pub file_size: u64,
    /// Linked physical address.
    pub paddr: u64,
    /// Size in memory (the part beyond `file_size` is zero-filled).
    pub mem_size: u64,
}

impl Segment {
    /// One past the last byte in memory (checked when inspected).
    pub fn end(&self) -> u64 {
        self.paddr.saturating_add(self.mem_size)
    }
}

/// What duet learned from a Multiboot2 image: its header tags and how it loads. Plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mb2Image {
    /// Offset of the header in the file.
    pub header_offset: usize,
    /// Information tags the kernel asked for (all of them, required or not).
    pub info_requests: Vec<u32>,
    /// The address tag, if any.
    pub address: Option<AddressTag>,
    /// The entry address tag, if any.
    pub entry_tag: Option<u32>,
    /// EFI i386 / amd64 entry addresses (ignored: duet does not provide EFI boot services).
    pub efi_entries: (Option<u32>, Option<u32>),
    /// Console flags, if given.
    pub console_flags: Option<u32>,
    /// An optional framebuffer request that duet declines.
    pub framebuffer: Option<FramebufferRequest>,
    /// Modules must be page aligned (duet always aligns them).
    pub module_align: bool,
    /// The relocatable tag, if any.
    pub relocatable: Option<Relocatable>,
    /// duet's HVM header tag (type 0xF00D), if any: the kernel asks to be entered in 64-bit mode when it
    /// boots as the HRT of a partitioned VM (see `abi::HvmHeaderTag`).
    pub hvm: Option<abi::HvmHeaderTag>,
    /// How it loads.
    pub format: Mb2Format,
    /// What goes where (linked addresses), sorted by address, non-overlapping.
    pub segments: Vec<Segment>,
    /// Linked entry point (physical).
    pub entry: u32,
}

impl Mb2Image {
    /// Lowest linked address.
    pub fn load_start(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.paddr)
    }
    /// One past the highest linked address.
    pub fn load_end(&self) -> u64 {
        self.segments.iter().map(Segment::end).max().unwrap_or(0)
    }
}

/// Whether a valid header (magic, checksum) starts at `off`.
fn header_at(image: &[u8], off: usize) -> Option<bool> {
    if u32_at(image, off)? != HEADER_MAGIC {
        return None;
    }
    let arch = u32_at(image, off + 4)?;
    let len = u32_at(image, off + 8)?;
    let sum = u32_at(image, off + 12)?;
    Some(HEADER_MAGIC.wrapping_add(arch).wrapping_add(len).wrapping_add(sum) == 0)
}

/// The offset of the first valid Multiboot2 header (magic and checksum, at an 8-byte boundary) in the
/// first 32 KiB of `image`, if there is one. Its tags are not looked at ([`inspect`] does that).
pub fn header_offset(image: &[u8]) -> Option<usize> {
    let window = image.len().min(HEADER_SEARCH_LIMIT);
    (0..window).step_by(8).find(|off| header_at(image, *off) == Some(true))
}

fn find_header(image: &[u8]) -> Result<usize, Mb2Error> {
    let mut bad_checksum = None;
    let window = image.len().min(HEADER_SEARCH_LIMIT);
    for off in (0..window).step_by(8) {
        match header_at(image, off) {
            Some(true) => return Ok(off),
            Some(false) if bad_checksum.is_none() => bad_checksum = Some(off),
            _ => {}
        }
    }
    if let Some(off) = bad_checksum {
        return Err(Mb2Error::BadChecksum(off));
    }
    // Say so when a valid header exists but too late (a common linker-script mistake).
    let late = (HEADER_SEARCH_LIMIT..image.len()).step_by(8).find(|off| header_at(image, *off) == Some(true));
    Err(late.map_or(Mb2Error::NoHeader, Mb2Error::HeaderPast32K))
}

/// Inspects a Multiboot2 kernel held in memory (`image` is the whole file).
pub fn inspect(image: &[u8]) -> Result<Mb2Image, Mb2Error> {
    let off = find_header(image)?;
    let arch = u32_at(image, off + 4).ok_or(Mb2Error::NoHeader)?;
    let length = u32_at(image, off + 8).ok_or(Mb2Error::NoHeader)?;
    if arch != ARCH_I386 {
        return Err(Mb2Error::UnsupportedArchitecture(arch));
    }
    let end = off.checked_add(length as usize);
    if length < 16 || end.is_none_or(|e| e > image.len() || e > HEADER_SEARCH_LIMIT) {
        return Err(Mb2Error::BadHeaderLength { offset: off, length });
    }
    let end = end.unwrap_or(off);
    let mut img = Mb2Image {
        header_offset: off,
        info_requests: Vec::new(),
        address: None,
        entry_tag: None,
        efi_entries: (None, None),
        console_flags: None,
        framebuffer: None,
        module_align: false,
        relocatable: None,
        hvm: None,
        format: Mb2Format::AoutKludge,
        segments: Vec::new(),
        entry: 0,
    };
    parse_tags(image, off + 16, end, &mut img)?;
    if let Some(addr) = img.address {
        img.segments = vec![aout_segment(image, off, &addr)?];
        img.format = Mb2Format::AoutKludge;
        img.entry = img.entry_tag.ok_or(Mb2Error::NoEntry)?;
    } else if elf::is_elf(image) {
        let (format, segments, e_entry) = parse_elf(image)?;
        img.format = format;
        img.segments = segments;
        img.entry = match img.entry_tag {
            Some(e) => e,
            None if e_entry == 0 => return Err(Mb2Error::NoEntry),
            None => u32::try_from(e_entry).map_err(|_| Mb2Error::EntryOutOfRange(e_entry))?,
        };
    } else {
        return Err(Mb2Error::NotLoadable);
    }
    check_overlaps(&mut img.segments)?;
    Ok(img)
}

fn parse_tags(image: &[u8], mut at: usize, end: usize, img: &mut Mb2Image) -> Result<(), Mb2Error> {
    loop {
        if at.checked_add(8).is_none_or(|e| e > end) {
            return Err(if at >= end { Mb2Error::MissingEndTag } else { Mb2Error::TruncatedTag { offset: at } });
        }
        let truncated = Mb2Error::TruncatedTag { offset: at };
        let typ = u16_at(image, at).ok_or(truncated.clone())?;
        let flags = u16_at(image, at + 2).ok_or(truncated.clone())?;
        let size = u32_at(image, at + 4).ok_or(truncated.clone())?;
        if at.checked_add(size as usize).is_none_or(|e| e > end) {
            return Err(truncated);
        }
        let optional = flags & FLAG_OPTIONAL != 0;
        let bad_size = Mb2Error::BadTagSize { typ, size };
        // Every tag has the 8-byte tag header; a smaller size would never advance (found by fuzzing).
        if size < 8 {
            return Err(bad_size);
        }
        let need = |n: u32| if size < n { Err(bad_size.clone()) } else { Ok(()) };
        let field = |i: usize| u32_at(image, at + 8 + 4 * i).unwrap_or(0);
        match typ {
            TAG_END => {
                need(8)?;
                return Ok(());
            }
            TAG_INFO_REQUEST => {
                need(8)?;
                if (size - 8) % 4 != 0 {
                    return Err(bad_size);
                }
                for i in 0..(size as usize - 8) / 4 {
                    let t = field(i);
                    if !optional && t != 0 && !PROVIDED_INFO_TAGS.contains(&t) {
                        return Err(Mb2Error::UnprovidableInfoRequest(t));
                    }
                    img.info_requests.push(t);
                }
            }
            TAG_ADDRESS => {
                need(24)?;
                img.address = Some(AddressTag {
                    header_addr: field(0),
                    load_addr: field(1),
                    load_end_addr: field(2),
                    bss_end_addr: field(3),
                });
            }
            TAG_ENTRY => {
                need(12)?;
                img.entry_tag = Some(field(0));
            }
            TAG_CONSOLE => {
                need(12)?;
                let f = field(0);
                if !optional && f & CONSOLE_REQUIRED != 0 {
                    return Err(Mb2Error::ConsoleRequired);
                }
                img.console_flags = Some(f);
            }
            TAG_FRAMEBUFFER => {
                need(20)?;
                let fb = FramebufferRequest { width: field(0), height: field(1), depth: field(2) };
                if !optional {
                    return Err(Mb2Error::FramebufferRequired { width: fb.width, height: fb.height, depth: fb.depth });
                }
                log::info!("multiboot2: the kernel would like a {}x{}x{} framebuffer; duet has none", fb.width, fb.height, fb.depth);
                img.framebuffer = Some(fb);
            }
            TAG_MODULE_ALIGN => {
                need(8)?;
                img.module_align = true;
            }
            TAG_EFI_BS => {
                need(8)?;
                if !optional {
                    return Err(Mb2Error::EfiBootServicesRequired);
                }
            }
            TAG_EFI_I386_ENTRY => {
                need(12)?;
                img.efi_entries.0 = Some(field(0));
            }
            TAG_EFI_AMD64_ENTRY => {
                need(12)?;
                img.efi_entries.1 = Some(field(0));
            }
            TAG_RELOCATABLE => {
                need(24)?;
                let preference = match field(3) {
                    0 => RelocationPreference::None,
                    1 => RelocationPreference::Low,
                    2 => RelocationPreference::High,
                    _ => return Err(Mb2Error::BadRelocatableTag("preference is not 0, 1 or 2")),
                };
                let (min_addr, max_addr) = (field(0), field(1));
                if min_addr > max_addr {
                    return Err(Mb2Error::BadRelocatableTag("min_addr is above max_addr"));
                }
                img.relocatable = Some(Relocatable { min_addr, max_addr, align: field(2), preference });
            }
            abi::HVM_HEADER_TAG => {
                let bytes = image.get(at..at + size as usize).ok_or(truncated.clone())?;
                img.hvm = Some(abi::HvmHeaderTag::parse(bytes).ok_or(bad_size.clone())?);
            }
            _ if optional => log::debug!("multiboot2: skipping optional unknown header tag {typ}"),
            _ => return Err(Mb2Error::UnknownRequiredTag(typ)),
        }
        // Tags are padded to 8 bytes; `size` <= end - at <= 32 KiB, so this cannot overflow.
        at = at.checked_add((size as usize).next_multiple_of(8)).ok_or(Mb2Error::MissingEndTag)?;
    }
}

fn aout_segment(image: &[u8], header_offset: usize, a: &AddressTag) -> Result<Segment, Mb2Error> {
    if a.load_addr > a.header_addr {
        return Err(Mb2Error::BadAddressTag("load_addr is above header_addr"));
    }
    let before_header = u64::from(a.header_addr - a.load_addr);
    let file_offset = (header_offset as u64)
        .checked_sub(before_header)
        .ok_or(Mb2Error::BadAddressTag("header_addr - load_addr reaches before the start of the file"))?;
    let file_size = if a.load_end_addr == 0 {
        image.len() as u64 - file_offset
    } else {
        u64::from(a.load_end_addr.checked_sub(a.load_addr).ok_or(Mb2Error::BadAddressTag("load_end_addr is below load_addr"))?)
    };
    let file_end = file_offset.saturating_add(file_size);
    if file_end > image.len() as u64 {
        return Err(Mb2Error::Truncated {
            what: format!("the a.out kludge's text+data (file bytes {file_offset:#x}..{file_end:#x})"),
            size: image.len() as u64,
        });
    }
    let mem_size = if a.bss_end_addr == 0 {
        file_size
    } else {
        let bss = u64::from(a.bss_end_addr.checked_sub(a.load_addr).ok_or(Mb2Error::BadAddressTag("bss_end_addr is below load_addr"))?);
        if bss < file_size {
            return Err(Mb2Error::BadAddressTag("bss_end_addr is below load_end_addr"));
        }
        bss
    };
    if mem_size == 0 {
        return Err(Mb2Error::NoLoadableSegment);
    }
    Ok(Segment { file_offset, file_size, paddr: u64::from(a.load_addr), mem_size })
}

/// The ELF walker's errors in Multiboot2's words.
fn elf_error(e: ElfError, size: u64) -> Mb2Error {
    match e {
        ElfError::Truncated { what } => Mb2Error::Truncated { what, size },
        ElfError::NoProgramHeaders => Mb2Error::NoLoadableSegment,
        other => Mb2Error::UnsupportedElf(other.to_string()),
    }
}

/// Returns the format, the PT_LOAD segments (physical addresses) and the entry point translated to a
/// physical address through the segment containing it (as GRUB does).
fn parse_elf(image: &[u8]) -> Result<(Mb2Format, Vec<Segment>, u64), Mb2Error> {
    let size = image.len() as u64;
    let elf = Elf::parse(image).map_err(|e| elf_error(e, size))?;
    let (format, want) = match elf.class {
        Class::Elf32 => (Mb2Format::Elf32, EM_386),
        Class::Elf64 => (Mb2Format::Elf64, EM_X86_64),
    };
    if elf.machine != want {
        let name = if want == EM_X86_64 { "x86-64" } else { "i386" };
        return Err(Mb2Error::UnsupportedElf(format!("machine {} is not {name}", elf.machine)));
    }
    let mut segments = Vec::new();
    let mut entry = elf.entry;
    for ph in elf.program_headers().map_err(|e| elf_error(e, size))?.filter(ProgramHeader::is_load) {
        if ph.mem_size == 0 {
            continue;
        }
        if ph.file_size > ph.mem_size {
            return Err(Mb2Error::UnsupportedElf(format!("segment {} has p_filesz > p_memsz", ph.index)));
        }
        ph.check_in_file(size).map_err(|e| elf_error(e, size))?;
        ph.phys_end().map_err(|e| elf_error(e, size))?;
        if elf.entry >= ph.vaddr && elf.entry - ph.vaddr < ph.mem_size {
            entry = ph.paddr + (elf.entry - ph.vaddr);
        }
        segments.push(Segment { file_offset: ph.offset, file_size: ph.file_size, paddr: ph.paddr, mem_size: ph.mem_size });
    }
    if segments.is_empty() {
        return Err(Mb2Error::NoLoadableSegment);
    }
    Ok((format, segments, entry))
}

/// Sorts segments by address and refuses overlaps (indices in the error are in address order).
fn check_overlaps(segments: &mut [Segment]) -> Result<(), Mb2Error> {
    segments.sort_by_key(|s| s.paddr);
    for (i, pair) in segments.windows(2).enumerate() {
        if pair[1].paddr < pair[0].end() {
            return Err(Mb2Error::OverlappingSegments { first: i, second: i + 1, at: pair[1].paddr });
        }
    }
    Ok(())
}
