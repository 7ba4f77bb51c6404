use super::*;
use vm_memory::GuestMemoryMmap;

const MIB: u64 = 1 << 20;

fn guest(size: u64) -> GuestMemoryMmap<()> {
    let ranges: Vec<_> = layout::ram_ranges(size).iter().map(|r| (r.start, r.len as usize)).collect();
    GuestMemoryMmap::from_ranges(&ranges).expect("anonymous memory")
}

/// A minimal x86-64 ELF with one PT_LOAD segment of `body` at physical `paddr`, entered there.
fn elf(paddr: u64, body: &[u8]) -> Vec<u8> {
    crate::elf::Builder::elf64().entry(paddr).segment(paddr, body, body.len() as u64).build()
}

/// A minimal bzImage: one setup sector, a protected-mode payload of `payload` bytes.
fn bzimage(payload: usize, init_size: u32) -> Vec<u8> {
    let mut f = vec![0u8; 2 * 512 + payload];
    f[0x1f1] = 1; // setup_sects
    f[0x1f4..0x1f8].copy_from_slice(&((payload as u32).div_ceil(16)).to_le_bytes());
    f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    f[0x211] = 1; // LOADED_HIGH
    f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
    f[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    f[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    f[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
    f[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    f[1024] = 0xf4; // hlt, just to have recognisable bytes
    f
}

fn spec<'a>(kernel: &'a [u8], initramfs: Option<&'a [u8]>, mem_size: u64) -> LinuxBootSpec<'a> {
    LinuxBootSpec { kernel, initramfs, cmdline: "console=ttyS0 quiet", mem_size }
}

#[test]
fn elf_kernel_loads_with_zero_page_and_initramfs() {
    let mem = guest(64 * MIB);
    let kernel = elf(0x100_0000, &[0x90; 4096]);
    let initrd = vec![0xab; 10_000];
    let loaded = load(&mem, &spec(&kernel, Some(&initrd), 64 * MIB)).expect("load");
    assert_eq!(loaded.kernel.format, KernelFormat::Elf);
    assert_eq!(loaded.entry.rip, 0x100_0000);
    assert_eq!(loaded.entry.rsi, ZERO_PAGE_START);
    let (start, end) = loaded.initramfs.expect("initramfs placed");
    assert_eq!(end - start, 10_000);
    assert_eq!(start % PAGE_SIZE, 0);
    assert!(end <= 64 * MIB);
    let byte: u8 = mem.read_obj(GuestAddress(start + 9_999)).expect("read");
    assert_eq!(byte, 0xab);
    let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).expect("read");
    assert_eq!({ params.hdr.ramdisk_image }, start as u32);
    assert_eq!({ params.hdr.ramdisk_size }, 10_000);
    assert_eq!({ params.hdr.cmd_line_ptr }, CMDLINE_START as u32);
    assert_eq!({ params.hdr.boot_flag }, 0xaa55);
    assert_eq!(params.e820_entries, 3);
    let mut cmdline = [0u8; 20];
    mem.read_slice(&mut cmdline, GuestAddress(CMDLINE_START)).expect("read");
    assert_eq!(&cmdline, b"console=ttyS0 quiet\0");
    let code: u8 = mem.read_obj(GuestAddress(0x100_0000)).expect("read");
    assert_eq!(code, 0x90);
}

#[test]
fn bzimage_is_entered_at_startup_64() {
    let mem = guest(64 * MIB);
    let kernel = bzimage(4096, 8 << 20);
    let loaded = load(&mem, &spec(&kernel, None, 64 * MIB)).expect("load");
    assert_eq!(loaded.kernel.format, KernelFormat::BzImage);
    assert_eq!(loaded.entry.rip, 0x10_0200);
    assert_eq!(loaded.kernel.load_end, 0x10_0000 + (8 << 20));
    let params: boot_params = mem.read_obj(GuestAddress(ZERO_PAGE_START)).expect("read");
    assert_eq!({ params.hdr.version }, 0x020f);
    assert_eq!(params.hdr.type_of_loader, 0xff);
}

#[test]
fn garbage_is_not_a_kernel() {
    let err = inspect(&[0x42; 4096]).expect_err("garbage");
    assert!(matches!(err, LinuxBootError::NotAKernel));
    assert!(err.to_string().contains("not a Linux kernel"));
    assert!(matches!(inspect(&[]), Err(LinuxBootError::EmptyKernel)));
}

#[test]
fn truncated_elf_names_the_segment() {
    let mut kernel = elf(0x100_0000, &[0x90; 8192]);
    kernel.truncate(0x1000 + 100);
    let err = inspect(&kernel).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(err.to_string().contains("segment 0"), "{err}");
    let err = inspect(&kernel[..40]).expect_err("header cut");
    assert!(err.to_string().contains("ELF header"), "{err}");
}

#[test]
fn corrupt_elf_headers_are_refused() {
    let mut kernel = elf(0x100_0000, &[0x90; 64]);
    kernel[18] = 3; // i386
    assert!(inspect(&kernel).expect_err("machine").to_string().contains("x86-64"));
    let mut kernel = elf(0x100_0000, &[0x90; 64]);
    kernel[32..40].copy_from_slice(&0xffff_ffffu64.to_le_bytes()); // phoff past the end
    assert!(inspect(&kernel).expect_err("phoff").to_string().contains("program headers"));
}

#[test]
fn truncated_bzimage_is_refused() {
    let mut kernel = bzimage(8192, 8 << 20);
    kernel.truncate(2000);
    let err = inspect(&kernel).expect_err("truncated");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn bzimage_without_64bit_entry_is_refused() {
    let mut kernel = bzimage(512, 1 << 20);
    kernel[0x236] = 0;
    assert!(inspect(&kernel).expect_err("xlf").to_string().contains("64-bit"));
    let mut kernel = bzimage(512, 1 << 20);
    kernel[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
    assert!(matches!(inspect(&kernel), Err(LinuxBootError::OldBootProtocol(0x0204))));
}

#[test]
fn initramfs_larger_than_memory_is_refused() {
    let kernel = elf(0x100_0000, &[0x90; 4096]);
    let info = inspect(&kernel).expect("inspect");
    let err = plan(&info, Some(40 * MIB), 32 * MIB).expect_err("too big");
    let text = err.to_string();
    assert!(text.contains("too small") && text.contains("initramfs"), "{text}");
    assert!(plan(&info, Some(8 * MIB), 32 * MIB).is_ok());
}

#[test]
fn kernel_larger_than_memory_is_refused() {
    let info = KernelInfo {
        format: KernelFormat::Elf,
        load_start: 0x100_0000,
        load_end: 0x500_0000,
        initrd_addr_max: 0x7fff_ffff,
        cmdline_max: 2047,
    };
    assert!(matches!(plan(&info, None, 32 * MIB), Err(LinuxBootError::KernelDoesNotFit { .. })));
    let low = KernelInfo { load_start: 0x8000, ..info };
    assert!(matches!(plan(&low, None, 256 * MIB), Err(LinuxBootError::KernelTooLow(0x8000))));
}

#[test]
fn long_cmdline_is_refused() {
    let mem = guest(64 * MIB);
    let kernel = elf(0x100_0000, &[0x90; 64]);
    let long = "x".repeat(3000);
    let s = LinuxBootSpec { kernel: &kernel, initramfs: None, cmdline: &long, mem_size: 64 * MIB };
    assert!(matches!(load(&mem, &s), Err(LinuxBootError::CmdlineTooLong { len: 3000, max: 2047 })));
}

#[test]
fn e820_leaves_out_the_legacy_hole_and_mmio_gap() {
    let map = e820_map(4 << 30);
    let ram: Vec<_> = map.iter().filter(|e| e.r#type == E820_RAM).collect();
    assert!(ram.iter().all(|e| e.addr + e.size <= LEGACY_HOLE_START || e.addr >= HIGH_MEMORY_START));
    let total: u64 = ram.iter().map(|e| e.size).sum();
    assert_eq!(total, (4 << 30) - (HIGH_MEMORY_START - LEGACY_HOLE_START));
    assert!(map.iter().all(|e| e.addr + e.size <= layout::MMIO_GAP_START || e.addr >= layout::RAM_ABOVE_4G_START));
}

/// A minimal Multiboot2 header: magic, i386, length 24, checksum, end tag.
fn mb2_header() -> Vec<u8> {
    let (magic, len) = (crate::multiboot2::HEADER_MAGIC, 24u32);
    let fields = [magic, 0, len, 0u32.wrapping_sub(magic).wrapping_sub(len), 0, 8];
    fields.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// An ELF note owned by `name`.
fn note(name: &[u8], kind: u32) -> Vec<u8> {
    let mut n = [(name.len() as u32 + 1).to_le_bytes(), 4u32.to_le_bytes(), kind.to_le_bytes()].concat();
    n.extend_from_slice(name);
    n.push(0);
    n.resize(n.len().next_multiple_of(4) + 4, 0);
    n
}

/// An x86-64 ELF loading at 16 MiB with a Multiboot2 header at 0x800 and, if `owner` is given, a
/// PT_NOTE segment with a note of that owner.
fn mb2_elf(owner: Option<&[u8]>) -> Vec<u8> {
    let mut b = crate::elf::Builder::elf64().entry(0x100_0000).segment(0x100_0000, &[0x90; 64], 64);
    if let Some(owner) = owner {
        b = b.segment(0x200_0000, &note(owner, 0x100), 16);
    }
    let mut f = b.header_bytes(0x800, &mb2_header()).build();
    if owner.is_some() {
        // The second program header becomes PT_NOTE.
        f[64 + 56..64 + 60].copy_from_slice(&crate::elf::PT_NOTE.to_le_bytes());
    }
    f
}

#[test]
fn a_multiboot2_elf64_is_not_a_vmlinux() {
    let err = inspect(&mb2_elf(None)).expect_err("a Multiboot2 kernel");
    assert!(matches!(err, LinuxBootError::Multiboot2Elf(0x800)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "not a Linux kernel: this ELF has a Multiboot2 header (at offset 0x800) and no Linux ELF note, so it is a Multiboot2 kernel"
    );
    // It is one for the Multiboot2 loader.
    assert!(crate::multiboot2::inspect(&mb2_elf(None)).is_ok());
    // The notes of a vmlinux (Linux's own, or Xen's PVH entry) make it a Linux kernel, header or not.
    for owner in [&b"Linux"[..], b"Xen"] {
        let info = inspect(&mb2_elf(Some(owner))).expect("a vmlinux");
        assert_eq!((info.format, info.load_start), (KernelFormat::Elf, 0x100_0000));
    }
    let err = inspect(&mb2_elf(Some(b"GNU"))).expect_err("GNU notes are in every binary");
    assert!(matches!(err, LinuxBootError::Multiboot2Elf(_)), "{err:?}");
    // A header with a bad checksum is no Multiboot2 header; one past 32 KiB does not count either.
    let mut f = mb2_elf(None);
    f[0x800 + 12] ^= 1;
    assert!(inspect(&f).is_ok());
    let mut far = crate::elf::Builder::elf64().entry(0x100_0000).segment(0x100_0000, &[0x90; 0x9000], 0x9000).build();
    far[0x8800..0x8800 + 24].copy_from_slice(&mb2_header());
    assert_eq!(crate::multiboot2::header_offset(&far), None);
    assert!(inspect(&far).is_ok());
    // The plain test kernel has neither: a vmlinux, as before.
    assert!(inspect(&elf(0x100_0000, &[0x90; 64])).is_ok());
}

#[test]
fn duets_own_hrt_is_not_a_vmlinux() {
    // The real image, where `cargo xtask images` has built it (the unit tests do not need it).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest-images/hrt.elf");
    let Ok(hrt) = std::fs::read(&path) else { return };
    assert!(matches!(inspect(&hrt), Err(LinuxBootError::Multiboot2Elf(_))), "{path:?}");
    let vmlinux = path.with_file_name("vmlinux-test");
    if let Ok(image) = std::fs::read(vmlinux) {
        assert_eq!(inspect(&image).map(|i| i.format).ok(), Some(KernelFormat::Elf));
    }
}
