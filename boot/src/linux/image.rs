//! Recognising a Linux kernel image and checking it is whole before anything is loaded.
//!
//! linux-loader does the loading; this module answers the questions it does not: is this file a kernel
//! at all (an x86-64 ELF with a Multiboot2 header and no Linux ELF note is a Multiboot2 kernel, not a
//! vmlinux), is it truncated, and how much memory does it need. That gives users specific errors
//! ("truncated: segment 2 ends at 0x1a3f000 but the file has 0x19f0000 bytes") instead of a generic
//! read failure from inside the loader. ELF files are walked with [`crate::elf`].

use super::LinuxBootError;
use crate::elf::{self, Class, Elf, ElfError, ProgramHeader, EM_X86_64, PT_NOTE};
use crate::le::{u16_at, u32_at};
use crate::multiboot2;

/// Kernel image formats duet boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// Uncompressed `vmlinux` ELF: entered directly at its 64-bit entry point (no decompression).
    Elf,
    /// Compressed `bzImage`: entered at `startup_64` of its decompressor (boot protocol ≥ 2.12).
    BzImage,
}

impl KernelFormat {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            KernelFormat::Elf => "vmlinux (ELF)",
            KernelFormat::BzImage => "bzImage",
        }
    }
}

/// What duet learned from a kernel image's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInfo {
    /// The format.
    pub format: KernelFormat,
    /// Lowest guest-physical address the kernel occupies.
    pub load_start: u64,
    /// One past the highest guest-physical address the kernel needs while booting (for a bzImage this
    /// includes the decompression buffer, `init_size`).
    pub load_end: u64,
    /// Highest address an initramfs may end at (`initrd_addr_max`).
    pub initrd_addr_max: u64,
    /// Longest command line the kernel accepts, without the terminating NUL.
    pub cmdline_max: usize,
}

const BZIMAGE_MAGIC: u32 = 0x5372_6448; // "HdrS"
/// Linux's x86 COMMAND_LINE_SIZE minus the NUL, used when a header does not say.
const DEFAULT_CMDLINE_MAX: usize = 2047;
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x7fff_ffff;
/// Owners of the ELF notes a vmlinux carries: Linux's own (build salt, LTO info) and Xen's (the PVH
/// entry point).
const LINUX_NOTE_OWNERS: [&[u8]; 2] = [b"Linux", b"Xen"];

/// Inspects a kernel image held in memory (`image` is the whole file).
pub fn inspect(image: &[u8]) -> Result<KernelInfo, LinuxBootError> {
    if image.is_empty() {
        return Err(LinuxBootError::EmptyKernel);
    }
    if elf::is_elf(image) {
        return inspect_elf(image);
    }
    if u32_at(image, 0x202) == Some(BZIMAGE_MAGIC) {
        return inspect_bzimage(image);
    }
    Err(LinuxBootError::NotAKernel)
}

/// The ELF walker's errors in Linux's words.
fn elf_error(e: ElfError, size: u64) -> LinuxBootError {
    match e {
        ElfError::Truncated { what } => LinuxBootError::Truncated { what, size },
        ElfError::NotElf | ElfError::UnknownClass(_) | ElfError::NotLittleEndian => not_x86_64(),
        other => LinuxBootError::UnsupportedElf(other.to_string()),
    }
}

fn not_x86_64() -> LinuxBootError {
    LinuxBootError::UnsupportedElf("not a 64-bit little-endian x86-64 ELF (class, data or machine mismatch)".into())
}

fn inspect_elf(image: &[u8]) -> Result<KernelInfo, LinuxBootError> {
    let size = image.len() as u64;
    let elf = Elf::parse(image).map_err(|e| elf_error(e, size))?;
    if elf.class != Class::Elf64 || elf.machine != EM_X86_64 {
        return Err(not_x86_64());
    }
    let (mut start, mut end) = (u64::MAX, 0u64);
    for ph in elf.program_headers().map_err(|e| elf_error(e, size))?.filter(ProgramHeader::is_load) {
        ph.check_in_file(size).map_err(|e| elf_error(e, size))?;
        let seg_end = ph.phys_end().map_err(|e| elf_error(e, size))?;
        start = start.min(ph.paddr);
        end = end.max(seg_end);
    }
    if end == 0 {
        return Err(LinuxBootError::UnsupportedElf("it has no loadable segment".into()));
    }
    // A Multiboot2 kernel can be an x86-64 ELF too; what tells a vmlinux is its notes.
    if let Some(offset) = multiboot2::header_offset(image) {
        if !has_linux_note(&elf) {
            return Err(LinuxBootError::Multiboot2Elf(offset));
        }
    }
    Ok(KernelInfo {
        format: KernelFormat::Elf,
        load_start: start,
        load_end: end,
        initrd_addr_max: DEFAULT_INITRD_ADDR_MAX,
        cmdline_max: DEFAULT_CMDLINE_MAX,
    })
}

/// Whether a `PT_NOTE` segment has a note owned by Linux or Xen, as every vmlinux has.
fn has_linux_note(elf: &Elf<'_>) -> bool {
    let Ok(headers) = elf.program_headers() else { return false };
    headers
        .filter(|ph| ph.p_type == PT_NOTE)
        .any(|ph| elf.notes(&ph).any(|note| LINUX_NOTE_OWNERS.contains(&note.name)))
}

fn inspect_bzimage(image: &[u8]) -> Result<KernelInfo, LinuxBootError> {
    let truncated = |what: String| LinuxBootError::Truncated { what, size: image.len() as u64 };
    // Setup header fields (offsets from the start of the file; see Documentation/x86/boot.rst).
    let version = u16_at(image, 0x206).ok_or_else(|| truncated("the setup header".into()))?;
    if version < 0x020c {
        return Err(LinuxBootError::OldBootProtocol(version));
    }
    let field = |off: usize, len: usize| -> Result<u64, LinuxBootError> {
        let v = match len {
            1 => image.get(off).map(|b| u64::from(*b)),
            2 => u16_at(image, off).map(u64::from),
            4 => u32_at(image, off).map(u64::from),
            _ => None,
        };
        v.ok_or_else(|| truncated("the setup header".into()))
    };
    let setup_sects = match field(0x1f1, 1)? {
        0 => 4,
        n => n,
    };
    let syssize = field(0x1f4, 4)?;
    let loadflags = field(0x211, 1)?;
    let code32_start = field(0x214, 4)?;
    let initrd_addr_max = field(0x22c, 4)?;
    let cmdline_size = field(0x238, 4)?;
    let xloadflags = field(0x236, 2)?;
    let init_size = field(0x260, 4)?;
    if loadflags & 1 == 0 {
        return Err(LinuxBootError::UnsupportedBzImage("not loaded high (LOADED_HIGH clear)"));
    }
    if xloadflags & 1 == 0 {
        return Err(LinuxBootError::UnsupportedBzImage("no 64-bit entry point (XLF_KERNEL_64 clear)"));
    }
    let payload_start = (setup_sects + 1) * 512;
    let need = payload_start + syssize * 16;
    if need > image.len() as u64 {
        return Err(truncated(format!(
            "the protected-mode kernel ({need:#x} bytes expected from the setup header)"
        )));
    }
    let payload_len = image.len() as u64 - payload_start;
    Ok(KernelInfo {
        format: KernelFormat::BzImage,
        load_start: code32_start,
        load_end: code32_start + init_size.max(payload_len),
        initrd_addr_max,
        cmdline_max: if cmdline_size == 0 { DEFAULT_CMDLINE_MAX } else { cmdline_size as usize },
    })
}
