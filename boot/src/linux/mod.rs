//! Linux's 64-bit boot protocol: load a `vmlinux` ELF or a `bzImage`, place the initramfs, write the
//! command line and the zero page (`boot_params` with the e820 map), and return the entry state.
//!
//! Loading uses linux-loader; [`image`] checks the image first so that bad files get specific errors.

mod image;

pub use image::{inspect, KernelFormat, KernelInfo};

use std::io::Cursor;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::{bzimage::BzImage, elf::Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::acpi::ACPI_START;
use crate::entry::{setup_long_mode, BootEntry, EntryError};
use crate::layout::{
    self, BIOS_AREA_END, BOOT_STACK_TOP, CMDLINE_START, HIGH_MEMORY_START, LEGACY_HOLE_START,
    ZERO_PAGE_START,
};

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;
const PAGE_SIZE: u64 = 0x1000;

/// Why a Linux kernel could not be prepared for boot.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    /// The kernel file has no bytes.
    #[error("the kernel file is empty")]
    EmptyKernel,
    /// Neither an ELF nor a bzImage.
    #[error("not a Linux kernel: expected a vmlinux ELF or a bzImage (found no ELF magic and no \"HdrS\" setup header at 0x202)")]
    NotAKernel,
    /// An x86-64 ELF that is a Multiboot2 kernel, not a vmlinux: it has a valid Multiboot2 header in its
    /// first 32 KiB and none of the ELF notes (owned by Linux or Xen) a vmlinux has.
    #[error("not a Linux kernel: this ELF has a Multiboot2 header (at offset {0:#x}) and no Linux ELF note, so it is a Multiboot2 kernel")]
    Multiboot2Elf(usize),
    /// The file ends before something its headers promise.
    #[error("the kernel image is truncated: {what} lies beyond its {size} bytes")]
    Truncated {
        /// What is missing.
        what: String,
        /// The file's size.
        size: u64,
    },
    /// An ELF that is not an x86-64 kernel.
    #[error("unsupported ELF kernel: {0}")]
    UnsupportedElf(String),
    /// A bzImage duet cannot enter.
    #[error("unsupported bzImage: {0}")]
    UnsupportedBzImage(&'static str),
    /// A bzImage older than boot protocol 2.12 (no 64-bit entry).
    #[error("unsupported bzImage: boot protocol {0:#06x} is older than 2.12 (needed for the 64-bit entry)")]
    OldBootProtocol(u16),
    /// The kernel does not fit where it must be loaded.
    #[error("guest memory ({mem_mib} MiB) is too small for the kernel: it needs {start:#x}..{end:#x}")]
    KernelDoesNotFit {
        /// Guest RAM in MiB.
        mem_mib: u64,
        /// First byte the kernel needs.
        start: u64,
        /// One past the last byte it needs.
        end: u64,
    },
    /// The kernel must load above 1 MiB.
    #[error("the kernel wants to load at {0:#x}, below 1 MiB")]
    KernelTooLow(u64),
    /// Kernel plus initramfs exceed guest memory.
    #[error("guest memory ({mem_mib} MiB) is too small for the kernel (ends at {kernel_end:#x}) plus the initramfs ({initramfs_len} bytes); give the VM at least {need_mib} MiB")]
    InitramfsDoesNotFit {
        /// Guest RAM in MiB.
        mem_mib: u64,
        /// End of the kernel.
        kernel_end: u64,
        /// Size of the initramfs.
        initramfs_len: u64,
        /// Memory that would do.
        need_mib: u64,
    },
    /// Command line longer than the kernel accepts.
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The kernel's limit.
        max: usize,
    },
    /// Command line with a NUL byte.
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    /// linux-loader refused the image.
    #[error("loading the kernel failed")]
    Load(#[source] linux_loader::loader::Error),
    /// Writing boot structures.
    #[error("writing {0} into guest memory failed")]
    Write(&'static str),
    /// Long-mode scaffolding.
    #[error(transparent)]
    Entry(#[from] EntryError),
}

/// What to boot.
#[derive(Debug, Clone, Copy)]
pub struct LinuxBootSpec<'a> {
    /// The whole kernel image file.
    pub kernel: &'a [u8],
    /// The whole initramfs, if any.
    pub initramfs: Option<&'a [u8]>,
    /// The complete kernel command line.
    pub cmdline: &'a str,
    /// Guest RAM size in bytes (laid out by [`layout::ram_ranges`]).
    pub mem_size: u64,
}

/// Where things ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedLinux {
    /// How the boot vCPU starts.
    pub entry: BootEntry,
    /// The kernel image's facts.
    pub kernel: KernelInfo,
    /// Guest-physical range of the initramfs.
    pub initramfs: Option<(u64, u64)>,
}

/// Checks that a kernel (and initramfs) fit `mem_size` bytes of guest RAM and returns the initramfs
/// placement, without touching guest memory. `duet check` and [`load`] share it.
pub fn plan(
    kernel: &KernelInfo,
    initramfs_len: Option<u64>,
    mem_size: u64,
) -> Result<Option<(u64, u64)>, LinuxBootError> {
    let low_end = layout::low_ram_end(mem_size);
    let mem_mib = mem_size >> 20;
    if kernel.load_start < HIGH_MEMORY_START {
        return Err(LinuxBootError::KernelTooLow(kernel.load_start));
    }
    if kernel.load_end > low_end {
        return Err(LinuxBootError::KernelDoesNotFit { mem_mib, start: kernel.load_start, end: kernel.load_end });
    }
    let Some(len) = initramfs_len else { return Ok(None) };
    let kernel_end = kernel.load_end.next_multiple_of(PAGE_SIZE);
    let top = low_end.min(kernel.initrd_addr_max.saturating_add(1)) & !(PAGE_SIZE - 1);
    let start = top.checked_sub(len.next_multiple_of(PAGE_SIZE)).filter(|s| *s >= kernel_end);
    match start {
        Some(start) => Ok(Some((start, start + len))),
        None => Err(LinuxBootError::InitramfsDoesNotFit {
            mem_mib,
            kernel_end,
            initramfs_len: len,
            need_mib: (kernel_end + len).div_ceil(1 << 20) + 1,
        }),
    }
}

/// The e820 map of a Linux guest with `mem_size` bytes of RAM.
pub fn e820_map(mem_size: u64) -> Vec<boot_e820_entry> {
    let mut map = vec![
        boot_e820_entry { addr: 0, size: LEGACY_HOLE_START, r#type: E820_RAM },
        // The firmware tables: ACPI from 0xE0000, the MP table from 0xF0000.
        boot_e820_entry { addr: ACPI_START, size: BIOS_AREA_END - ACPI_START, r#type: E820_RESERVED },
    ];
    for r in layout::ram_ranges(mem_size) {
        let start = r.start.0.max(HIGH_MEMORY_START);
        if r.end() > start {
            map.push(boot_e820_entry { addr: start, size: r.end() - start, r#type: E820_RAM });
        }
    }
    map
}

/// Loads Linux into `mem` and writes its boot structures; the MP table is written separately.
pub fn load<M: GuestMemoryBackend>(mem: &M, spec: &LinuxBootSpec<'_>) -> Result<LoadedLinux, LinuxBootError> {
    let info = inspect(spec.kernel)?;
    let initramfs_at = plan(&info, spec.initramfs.map(|i| i.len() as u64), spec.mem_size)?;
    if spec.cmdline.len() > info.cmdline_max {
        return Err(LinuxBootError::CmdlineTooLong { len: spec.cmdline.len(), max: info.cmdline_max });
    }
    if spec.cmdline.contains('\0') {
        return Err(LinuxBootError::CmdlineNul);
    }

    let mut image = Cursor::new(spec.kernel);
    let high = Some(GuestAddress(HIGH_MEMORY_START));
    let loaded = match info.format {
        KernelFormat::Elf => Elf::load(mem, None, &mut image, high),
        KernelFormat::BzImage => BzImage::load(mem, None, &mut image, high),
    }
    .map_err(LinuxBootError::Load)?;

    let mut params = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        params.hdr = hdr;
    }
    params.hdr.type_of_loader = 0xff;
    params.hdr.boot_flag = 0xaa55;
    params.hdr.header = 0x5372_6448;
    if info.format == KernelFormat::Elf {
        params.hdr.kernel_alignment = 0x100_0000;
    }

    let mut cmdline = spec.cmdline.as_bytes().to_vec();
    cmdline.push(0);
    mem.write_slice(&cmdline, GuestAddress(CMDLINE_START)).map_err(|_| LinuxBootError::Write("the command line"))?;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = spec.cmdline.len() as u32;

    if let (Some((start, _)), Some(data)) = (initramfs_at, spec.initramfs) {
        mem.write_slice(data, GuestAddress(start)).map_err(|_| LinuxBootError::Write("the initramfs"))?;
        params.hdr.ramdisk_image = start as u32;
        params.hdr.ramdisk_size = data.len() as u32;
    }

    let e820 = e820_map(spec.mem_size);
    params.e820_entries = e820.len() as u8;
    params.e820_table[..e820.len()].copy_from_slice(&e820);

    let zero_page = BootParams::new::<boot_params>(&params, GuestAddress(ZERO_PAGE_START));
    LinuxBootConfigurator::write_bootparams(&zero_page, mem).map_err(|_| LinuxBootError::Write("the zero page"))?;

    // A bzImage is entered at startup_64 of its decompressor, 0x200 past the protected-mode code.
    let rip = match info.format {
        KernelFormat::Elf => loaded.kernel_load.0,
        KernelFormat::BzImage => loaded.kernel_load.0 + 0x200,
    };
    let entry = setup_long_mode(mem, rip, ZERO_PAGE_START, BOOT_STACK_TOP)?;
    Ok(LoadedLinux { entry, kernel: info, initramfs: initramfs_at })
}

#[cfg(test)]
mod tests;
