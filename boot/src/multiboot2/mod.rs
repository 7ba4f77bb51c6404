//! Multiboot2 (specification 2.0): boot any Multiboot2 kernel directly.
//!
//! The flow follows the Linux loader: [`inspect`] reads the image (header in the first 32 KiB, every header
//! tag, ELF32/ELF64 program headers or the address tag's "a.out kludge") without touching guest memory;
//! [`plan`] checks it against the VM's RAM and reserved ranges and picks a load base for a relocatable
//! image; [`load`] copies it in. [`place_modules`] and [`build_info`] lay out the modules and the boot
//! information structure; [`setup_entry`] writes a flat 32-bit GDT and returns the entry state of the
//! spec (32-bit protected mode, paging off, EAX = [`BOOTLOADER_MAGIC`], EBX = the information structure).
//! [`boot`] does all of it in order.
//!
//! Every input is treated as hostile: all arithmetic on values from the image is checked, and each way an
//! image can be wrong has its own [`Mb2Error`] variant.
//!
//! Guest-physical conventions (duet's layout, see [`crate::layout`]): everything below 1 MiB is duet's own
//! (GDT, page tables, command line, BIOS area with the ACPI/MP tables), so [`DUET_RESERVED`] keeps the
//! kernel, modules and information structure above [`HIGH_MEMORY_START`]. The 32-bit GDT goes where the
//! caller says; [`GDT_ADDR`] (duet's 4-entry GDT slot at 0x500) is the intended place.

mod header;
mod info;
mod load;

pub use header::{
    header_offset, inspect, AddressTag, FramebufferRequest, Mb2Format, Mb2Image, Relocatable, RelocationPreference, Segment,
    HEADER_MAGIC, HEADER_SEARCH_LIMIT, PROVIDED_INFO_TAGS,
};
pub use info::{build_info, mem_info, memory_map, place_modules, place_modules_below, InfoSpec, ModuleInfo, Placement, Rsdp};
pub use load::{load, load_with, plan, plan_with, LoadMode, Mb2Loaded};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::entry::{gdt_entry, BootEntry, CpuMode, SegmentDescriptor, CR0_ET, CR0_PE};
use crate::layout::{RamRange, GDT_START, HIGH_MEMORY_START, LEGACY_HOLE_START};

/// The value a Multiboot2 kernel finds in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// Name given in the boot-loader name tag.
pub const BOOTLOADER_NAME: &str = "duet";
/// Where [`setup_entry`] is meant to put its GDT: duet's 4-entry GDT slot (never used by the same VM's
/// long-mode entry, which only Linux takes).
pub const GDT_ADDR: u64 = GDT_START;
/// Ranges (start, end) that no part of a Multiboot2 image, module or information structure may use:
/// everything below 1 MiB, which holds duet's own tables.
pub const DUET_RESERVED: [(u64, u64); 1] = [(0, HIGH_MEMORY_START)];
/// Ranges (start, end) the memory map reports as reserved rather than available: the legacy VGA/BIOS hole
/// and BIOS area (0xA0000–0xFFFFF), where the firmware tables live.
pub const DUET_MMAP_RESERVED: [(u64, u64); 1] = [(LEGACY_HOLE_START, HIGH_MEMORY_START)];

/// Selector of the flat 32-bit code segment in the Multiboot2 GDT.
pub const CODE32_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment in the Multiboot2 GDT.
pub const DATA32_SELECTOR: u16 = 0x10;
/// Selector of the (dummy) TSS in the Multiboot2 GDT.
pub const TSS32_SELECTOR: u16 = 0x18;
/// The Multiboot2 GDT: null, flat 4 GiB 32-bit code (0xc09b), flat data (0xc093), a 32-bit busy TSS so
/// the task register is valid. 32 bytes: it fits duet's GDT slot at [`GDT_ADDR`].
pub const MB2_GDT: [u64; 4] =
    [0, gdt_entry(0xc09b, 0, 0xfffff), gdt_entry(0xc093, 0, 0xfffff), gdt_entry(0x808b, 0, 0xfffff)];

/// Why a Multiboot2 kernel could not be booted. Each malformed image gets its own variant.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Mb2Error {
    /// No header magic in the first 32 KiB.
    #[error("not a Multiboot2 kernel: no header (magic 0xE85250D6 at an 8-byte boundary) in the first 32 KiB")]
    NoHeader,
    /// A valid header exists, but too far into the file.
    #[error("the Multiboot2 header is at offset {0:#x}, past the first 32 KiB where the spec requires it")]
    HeaderPast32K(usize),
    /// The magic is there, the checksum is wrong.
    #[error("the Multiboot2 header at offset {0:#x} has a bad checksum (magic + architecture + length + checksum must be 0 mod 2^32)")]
    BadChecksum(usize),
    /// Not an i386 kernel.
    #[error("the Multiboot2 header asks for architecture {0} ({name}); duet boots only i386 (0)", name = arch_name(*.0))]
    UnsupportedArchitecture(u32),
    /// `header_length` smaller than the fixed part or reaching past the file or the first 32 KiB.
    #[error("the Multiboot2 header at {offset:#x} has an impossible header_length {length}")]
    BadHeaderLength {
        /// Offset of the header.
        offset: usize,
        /// Its header_length.
        length: u32,
    },
    /// A header tag runs past the end of the header.
    #[error("header tag at offset {offset:#x} is truncated: it runs past the end of the header")]
    TruncatedTag {
        /// Offset of the tag in the file.
        offset: usize,
    },
    /// A header tag whose size does not match its type.
    #[error("header tag type {typ} has size {size}, which is wrong for that type")]
    BadTagSize {
        /// Tag type.
        typ: u16,
        /// Its size field.
        size: u32,
    },
    /// The tags end without an end tag.
    #[error("the Multiboot2 header has no end tag")]
    MissingEndTag,
    /// A header tag duet does not know, not marked optional.
    #[error("unknown header tag type {0} is marked required")]
    UnknownRequiredTag(u16),
    /// The information request asks, as required, for a tag duet cannot provide.
    #[error("the kernel requires boot information tag type {0}, which duet cannot provide")]
    UnprovidableInfoRequest(u32),
    /// The console flags require a console (EGA text) duet does not have.
    #[error("the kernel requires a console (EGA text), which duet does not provide (serial only)")]
    ConsoleRequired,
    /// A required framebuffer.
    #[error("the kernel requires a framebuffer ({width}x{height}x{depth}), which duet does not provide")]
    FramebufferRequired {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Requested depth.
        depth: u32,
    },
    /// EFI boot services must not be exited.
    #[error("the kernel requires EFI boot services, which duet does not provide")]
    EfiBootServicesRequired,
    /// An address tag that contradicts itself.
    #[error("bad address tag: {0}")]
    BadAddressTag(&'static str),
    /// A relocatable tag with min > max, or a bad preference.
    #[error("bad relocatable tag: {0}")]
    BadRelocatableTag(&'static str),
    /// Neither an ELF nor an address tag: nothing says where to load it.
    #[error("the kernel is neither an ELF file nor has an address tag: duet cannot tell where to load it")]
    NotLoadable,
    /// An ELF file duet cannot load.
    #[error("unsupported ELF kernel: {0}")]
    UnsupportedElf(String),
    /// The file ends before something its headers promise.
    #[error("the kernel image is truncated: {what} lies beyond its {size} bytes")]
    Truncated {
        /// What is missing.
        what: String,
        /// The file's size.
        size: u64,
    },
    /// Nothing to load.
    #[error("the kernel has no loadable segment")]
    NoLoadableSegment,
    /// No entry address tag and no ELF entry point.
    #[error("the kernel has no entry point (no entry address tag, and no ELF e_entry)")]
    NoEntry,
    /// The entry point does not fit 32 bits (after relocation).
    #[error("the entry point {0:#x} is not a 32-bit address")]
    EntryOutOfRange(u64),
    /// A segment reaches above 4 GiB, where a 32-bit kernel with paging off cannot run.
    #[error("segment {index} ({start:#x}..{end:#x}) lies above 4 GiB")]
    SegmentAbove4G {
        /// Segment number.
        index: usize,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// A segment is not inside guest RAM.
    #[error("segment {index} ({start:#x}..{end:#x}) is not inside guest RAM")]
    SegmentOutsideRam {
        /// Segment number.
        index: usize,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// Two segments overlap.
    #[error("segments {first} and {second} overlap at {at:#x}")]
    OverlappingSegments {
        /// One segment.
        first: usize,
        /// The other.
        second: usize,
        /// Start of the later one.
        at: u64,
    },
    /// A segment overlaps a range reserved for duet's own structures.
    #[error("segment {index} ({start:#x}..{end:#x}) overlaps {reserved_start:#x}..{reserved_end:#x}, reserved for duet's own tables (loads must be at or above 1 MiB)")]
    OverlapsReserved {
        /// Segment number.
        index: usize,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Reserved range start.
        reserved_start: u64,
        /// Reserved range end.
        reserved_end: u64,
    },
    /// No base in the relocatable window fits the image.
    #[error("the relocatable image ({size:#x} bytes, align {align:#x}) fits nowhere in its window {min:#x}..{max:#x} of guest RAM")]
    RelocationImpossible {
        /// min_addr.
        min: u32,
        /// max_addr.
        max: u32,
        /// align.
        align: u32,
        /// Image size.
        size: u64,
    },
    /// A module does not fit.
    #[error("module {index} ({len} bytes) does not fit in guest RAM below 4 GiB above the kernel")]
    ModuleDoesNotFit {
        /// Module number.
        index: usize,
        /// Its size.
        len: u64,
    },
    /// A module with no bytes (the information structure cannot describe it).
    #[error("module {0} is empty; a Multiboot2 module needs at least one byte")]
    EmptyModule(usize),
    /// The information structure does not fit.
    #[error("the boot information structure ({0} bytes) does not fit in guest RAM below 4 GiB")]
    InfoDoesNotFit(u64),
    /// A string (command line or module string) with a NUL byte.
    #[error("the {0} contains a NUL byte")]
    StringNul(&'static str),
    /// A module whose range is inverted.
    #[error("module {0} has end before start")]
    BadModuleRange(usize),
    /// Writing guest memory failed.
    #[error("writing {0} into guest memory failed")]
    Write(&'static str),
}

fn arch_name(arch: u32) -> &'static str {
    match arch {
        0 => "i386",
        4 => "32-bit MIPS",
        _ => "unknown",
    }
}

/// Writes [`MB2_GDT`] at `gdt_addr` (8-byte aligned is best; [`GDT_ADDR`] is the intended place).
pub fn write_gdt<M: GuestMemoryBackend>(mem: &M, gdt_addr: u64) -> Result<(), Mb2Error> {
    for (i, entry) in MB2_GDT.iter().enumerate() {
        let at = gdt_addr.checked_add((i as u64) * 8).ok_or(Mb2Error::Write("the GDT"))?;
        mem.write_obj(*entry, GuestAddress(at)).map_err(|_| Mb2Error::Write("the GDT"))?;
    }
    Ok(())
}

/// The Multiboot2 entry state with the GDT at [`GDT_ADDR`]: see [`entry_state_at`].
pub fn entry_state(entry: u32, info_addr: u32) -> BootEntry {
    entry_state_at(entry, info_addr, GDT_ADDR)
}

/// The Multiboot2 entry state (spec 3.3, i386): 32-bit protected mode, paging off, CS a flat 4 GiB
/// 32-bit code segment, DS/ES/FS/GS/SS flat data, CR0 = PE|ET, CR4 = EFER = 0, EAX = [`BOOTLOADER_MAGIC`],
/// EBX = `info_addr`, ESP = 0 (undefined per spec; the kernel sets its own stack). The GDTR points at
/// `gdt_addr`, where [`write_gdt`] must have written [`MB2_GDT`]. RFLAGS is not part of [`BootEntry`]: the
/// VMM must start the vCPU with RFLAGS = 0x2 (IF = 0).
pub fn entry_state_at(entry: u32, info_addr: u32, gdt_addr: u64) -> BootEntry {
    BootEntry {
        mode: CpuMode::Protected32,
        rip: u64::from(entry),
        rsp: 0,
        rsi: 0,
        rbx: u64::from(info_addr),
        rax: u64::from(BOOTLOADER_MAGIC),
        rdx: 0,
        rdi: 0,
        cr0: CR0_PE | CR0_ET,
        cr3: 0,
        cr4: 0,
        efer: 0,
        gdt: (gdt_addr, (MB2_GDT.len() * 8 - 1) as u16),
        code: SegmentDescriptor::from_gdt_entry(CODE32_SELECTOR, MB2_GDT[1]),
        data: SegmentDescriptor::from_gdt_entry(DATA32_SELECTOR, MB2_GDT[2]),
        tss: SegmentDescriptor::from_gdt_entry(TSS32_SELECTOR, MB2_GDT[3]),
    }
}

/// Writes the GDT at `gdt_addr` and returns [`entry_state_at`].
pub fn setup_entry<M: GuestMemoryBackend>(
    mem: &M,
    entry: u32,
    info_addr: u32,
    gdt_addr: u64,
) -> Result<BootEntry, Mb2Error> {
    write_gdt(mem, gdt_addr)?;
    Ok(entry_state_at(entry, info_addr, gdt_addr))
}

/// One module to boot with: its bytes and its string (conventionally its name and arguments).
#[derive(Debug, Clone, Copy)]
pub struct ModuleSource<'a> {
    /// The module's contents.
    pub data: &'a [u8],
    /// Its string.
    pub string: &'a str,
}

/// Everything needed to boot a Multiboot2 kernel.
#[derive(Debug, Clone, Copy)]
pub struct Mb2BootSpec<'a> {
    /// The whole kernel file.
    pub kernel: &'a [u8],
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Modules, in order.
    pub modules: &'a [ModuleSource<'a>],
    /// The ACPI RSDP to hand over, if any.
    pub rsdp: Option<Rsdp>,
    /// Guest RAM ([`crate::layout::ram_ranges`]).
    pub ram: &'a [RamRange],
    /// Ranges nothing may be loaded into ([`DUET_RESERVED`]).
    pub reserved: &'a [(u64, u64)],
    /// Ranges the memory map reports as reserved ([`DUET_MMAP_RESERVED`]).
    pub mmap_reserved: &'a [(u64, u64)],
    /// Where to write the GDT ([`GDT_ADDR`]).
    pub gdt_addr: u64,
    /// How the image is placed ([`LoadMode::Standard`] unless it boots as an HVM HRT).
    pub mode: LoadMode,
    /// The RAM the memory map describes, when it differs from `ram` (the HRT of a partitioned VM is
    /// loaded into its own RAM but told about all of it); `None`: `ram`.
    pub map_ram: Option<&'a [RamRange]>,
    /// Extra information tags, already encoded (each with its type, size and padding to 8 bytes),
    /// inserted before the end tag (duet's HVM information tag).
    pub extra_tags: &'a [u8],
}

/// Where a booted Multiboot2 kernel ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mb2Boot {
    /// How the boot vCPU starts.
    pub entry: BootEntry,
    /// The image's facts from its headers.
    pub image: Mb2Image,
    /// Where the kernel went.
    pub loaded: Mb2Loaded,
    /// Module and information-structure placement.
    pub placement: Placement,
}

/// Inspects, plans and loads the kernel, copies the modules, writes the information structure and the
/// GDT, and returns the entry state.
pub fn boot<M: GuestMemoryBackend>(mem: &M, spec: &Mb2BootSpec<'_>) -> Result<Mb2Boot, Mb2Error> {
    let image = inspect(spec.kernel)?;
    let loaded = load_with(mem, spec.kernel, &image, spec.ram, spec.reserved, spec.mode)?;
    let lens: Vec<u64> = spec.modules.iter().map(|m| m.data.len() as u64).collect();
    // The information structure's size does not depend on the module addresses: measure it first.
    let mut modules: Vec<ModuleInfo<'_>> =
        spec.modules.iter().map(|m| ModuleInfo { start: 0, end: 1, string: m.string }).collect();
    let info_spec = |modules: &[ModuleInfo<'_>]| {
        build_info(&InfoSpec {
            cmdline: spec.cmdline,
            bootloader_name: BOOTLOADER_NAME,
            ram: spec.map_ram.unwrap_or(spec.ram),
            mmap_reserved: spec.mmap_reserved,
            modules,
            rsdp: spec.rsdp,
            load_base: loaded.load_base.and_then(|b| u32::try_from(b).ok()),
        })
        .map(|info| with_extra_tags(info, spec.extra_tags))
    };
    let info_len = info_spec(&modules)?.len() as u64;
    let hvm = matches!(spec.mode, LoadMode::Hvm { .. });
    let info_limit = if hvm { u64::MAX } else { load::LIMIT_4G };
    let placement = place_modules_below(loaded.load_end, &lens, info_len, spec.ram, spec.reserved, info_limit)?;
    for (i, ((start, end), m)) in placement.modules.iter().zip(spec.modules).enumerate() {
        mem.write_slice(m.data, GuestAddress(*start)).map_err(|_| Mb2Error::Write("a module"))?;
        modules[i].start = u32::try_from(*start).map_err(|_| Mb2Error::ModuleDoesNotFit { index: i, len: lens[i] })?;
        modules[i].end = u32::try_from(*end).map_err(|_| Mb2Error::ModuleDoesNotFit { index: i, len: lens[i] })?;
    }
    let info = info_spec(&modules)?;
    mem.write_slice(&info, GuestAddress(placement.info)).map_err(|_| Mb2Error::Write("the boot information"))?;
    // The 32-bit entry state needs a 32-bit address; with the HVM 64-bit entry the caller builds the
    // entry from `placement.info` itself.
    let info_addr = match u32::try_from(placement.info) {
        Ok(a) => a,
        Err(_) if hvm => 0,
        Err(_) => return Err(Mb2Error::InfoDoesNotFit(info_len)),
    };
    let entry = setup_entry(mem, loaded.entry, info_addr, spec.gdt_addr)?;
    Ok(Mb2Boot { entry, image, loaded, placement })
}

/// Inserts already-encoded tags before the end tag of a built information structure and fixes its
/// total size. `info` comes from [`build_info`], so it ends with the 8-byte end tag.
fn with_extra_tags(mut info: Vec<u8>, extra: &[u8]) -> Vec<u8> {
    if extra.is_empty() || info.len() < 16 {
        return info;
    }
    let end_tag = info.len() - 8;
    info.splice(end_tag..end_tag, extra.iter().copied());
    let total = u32::try_from(info.len()).unwrap_or(u32::MAX);
    info[0..4].copy_from_slice(&total.to_le_bytes());
    info
}

/// Encodes duet's HVM information tag ([`abi::HVM_INFO_TAG`]) for [`Mb2BootSpec::extra_tags`].
pub fn hvm_info_tag(info: &abi::HvmInfo) -> Vec<u8> {
    let mut body = [0u8; abi::HvmInfo::SIZE];
    info.encode(&mut body);
    let size = 8 + body.len();
    let mut tag = Vec::with_capacity(size.next_multiple_of(8));
    tag.extend_from_slice(&abi::HVM_INFO_TAG.to_le_bytes());
    tag.extend_from_slice(&(size as u32).to_le_bytes());
    tag.extend_from_slice(&body);
    tag.resize(size.next_multiple_of(8), 0);
    tag
}

#[cfg(test)]
mod tests;
