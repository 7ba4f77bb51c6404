use super::*;
use ::multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
use vm_memory::{Bytes, GuestAddress};

/// Parses `bytes` (copied to an 8-aligned buffer) with the multiboot2 crate and hands it to `f`.
fn parsed<R>(bytes: &[u8], f: impl FnOnce(&BootInformation<'_>) -> R) -> R {
    let mut buf = vec![0u64; bytes.len().div_ceil(8)];
    // SAFETY: plain byte copy into a u64 buffer large enough for `bytes`.
    let dst = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), bytes.len()) };
    dst.copy_from_slice(bytes);
    // SAFETY: the buffer is 8-byte aligned, owned, unchanged while `info` lives, and holds the whole
    // structure (its total_size is bytes.len()).
    let info = unsafe { BootInformation::load(buf.as_ptr().cast::<BootInformationHeader>()) }.expect("valid MBI");
    f(&info)
}

fn rsdp_v2() -> [u8; 36] {
    let mut r = [0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"DUETVM");
    r[15] = 2;
    r[16..20].copy_from_slice(&0xe_0040u32.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&0xe_0100u64.to_le_bytes());
    r
}

#[test]
fn info_round_trips() {
    let ram = ram(64 * MIB);
    let modules = [ModuleInfo { start: 0x40_0000, end: 0x40_0123, string: "hello.bin arg" }];
    let spec = InfoSpec {
        cmdline: "smp",
        bootloader_name: BOOTLOADER_NAME,
        ram: &ram,
        mmap_reserved: &DUET_MMAP_RESERVED,
        modules: &modules,
        rsdp: Some(Rsdp::V2(rsdp_v2())),
        load_base: Some(0x20_0000),
    };
    let bytes = build_info(&spec).expect("build");
    assert_eq!(bytes.len() % 8, 0);
    parsed(&bytes, |info| {
        assert_eq!(info.command_line_tag().expect("cmdline").cmdline(), Ok("smp"));
        assert_eq!(info.boot_loader_name_tag().expect("name").name(), Ok("duet"));
        let m: Vec<_> = info.module_tags().collect();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].start_address(), m[0].end_address(), m[0].cmdline()), (0x40_0000, 0x40_0123, Ok("hello.bin arg")));
        let mi = info.basic_memory_info_tag().expect("meminfo");
        assert_eq!((mi.memory_lower(), mi.memory_upper()), (640, 63 * 1024));
        let areas: Vec<_> = info
            .memory_map_tag()
            .expect("mmap")
            .memory_areas()
            .iter()
            .map(|a| (a.start_address(), a.end_address(), a.typ()))
            .collect();
        assert_eq!(
            areas,
            vec![
                (0, 0xa_0000, MemoryAreaType::Available),
                (0xa_0000, 0x10_0000, MemoryAreaType::Reserved),
                (0x10_0000, 64 * MIB, MemoryAreaType::Available),
            ]
        );
        let r = info.rsdp_v2_tag().expect("rsdp v2");
        assert!(r.checksum_is_valid());
        assert_eq!((r.oem_id(), r.revision(), r.xsdt_address()), (Ok("DUETVM"), 2, 0xe_0100));
        assert!(info.rsdp_v1_tag().is_none());
        assert_eq!(info.load_base_addr_tag().expect("load base").load_base_addr(), 0x20_0000);
    });
}

#[test]
fn rsdp_v1_and_no_optional_tags() {
    let ram = ram(16 * MIB);
    let mut r = [0u8; 20];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"OLDACP");
    r[16..20].copy_from_slice(&0xe_0000u32.to_le_bytes());
    let spec = InfoSpec {
        cmdline: "",
        bootloader_name: BOOTLOADER_NAME,
        ram: &ram,
        mmap_reserved: &[],
        modules: &[],
        rsdp: Some(Rsdp::V1(r)),
        load_base: None,
    };
    parsed(&build_info(&spec).expect("build"), |info| {
        let v1 = info.rsdp_v1_tag().expect("v1");
        assert_eq!((v1.oem_id(), v1.rsdt_address()), (Ok("OLDACP"), 0xe_0000));
        assert!(v1.checksum_is_valid());
        assert!(info.load_base_addr_tag().is_none());
        assert_eq!(info.module_tags().count(), 0);
    });
}

#[test]
fn meminfo_stops_at_the_first_hole() {
    let ram = ram(4 << 30);
    assert_eq!(mem_info(&ram, &DUET_MMAP_RESERVED), (640, ((MMIO_GAP - MIB) / 1024) as u32));
    let map = memory_map(&ram, &DUET_MMAP_RESERVED);
    assert_eq!(map.last(), Some(&(1 << 32, (1 << 32) + (4 << 30) - MMIO_GAP, 1)));
}
const MMIO_GAP: u64 = crate::layout::MMIO_GAP_START;

#[test]
fn info_string_errors() {
    let ram = ram(16 * MIB);
    let base = InfoSpec {
        cmdline: "a\0b",
        bootloader_name: BOOTLOADER_NAME,
        ram: &ram,
        mmap_reserved: &[],
        modules: &[],
        rsdp: None,
        load_base: None,
    };
    assert_eq!(build_info(&base), Err(Mb2Error::StringNul("command line")));
    let m = [ModuleInfo { start: 5, end: 5, string: "" }];
    assert_eq!(build_info(&InfoSpec { cmdline: "", modules: &m, ..base }), Err(Mb2Error::EmptyModule(0)));
}

#[test]
fn modules_are_page_aligned_above_the_kernel() {
    let ram = ram(16 * MIB);
    let p = place_modules(0x20_0123, &[0x10, 0x2001], 0x200, &ram, &DUET_RESERVED).expect("place");
    assert_eq!(p.modules, vec![(0x20_1000, 0x20_1010), (0x20_2000, 0x20_4001)]);
    assert_eq!(p.info, 0x20_4008);
    assert_eq!(place_modules(0x20_0000, &[16 * MIB], 0x100, &ram, &DUET_RESERVED), Err(Mb2Error::ModuleDoesNotFit { index: 0, len: 16 * MIB }));
    assert_eq!(place_modules(16 * MIB - 0x100, &[], 0x200, &ram, &DUET_RESERVED), Err(Mb2Error::InfoDoesNotFit(0x200)));
    assert_eq!(place_modules(0x20_0000, &[0], 0x200, &ram, &DUET_RESERVED), Err(Mb2Error::EmptyModule(0)));
}

#[test]
fn boot_end_to_end() {
    let m = guest(32 * MIB);
    let r = ram(32 * MIB);
    let kernel = elf(false, &[(0x20_0000, &[0xf4; 0x40], 0x1000)], 0x20_0000, &header(&[tag(1, 0, &[1, 3, 6]), tag(6, 0, &[])]));
    let module = vec![0x5a; 0x1801];
    let spec = Mb2BootSpec {
        kernel: &kernel,
        cmdline: "modules",
        modules: &[ModuleSource { data: &module, string: "blob" }],
        rsdp: None,
        ram: &r,
        reserved: &DUET_RESERVED,
        mmap_reserved: &DUET_MMAP_RESERVED,
        gdt_addr: GDT_ADDR,
        mode: LoadMode::Standard,
        map_ram: None,
        extra_tags: &[],
    };
    let b = boot(&m, &spec).expect("boot");
    assert_eq!(b.placement.modules, vec![(0x20_1000, 0x20_2801)]);
    assert_eq!(b.entry.rbx, b.placement.info);
    assert_eq!(b.entry.rip, 0x20_0000);
    let mut got = vec![0u8; module.len()];
    m.read_slice(&mut got, GuestAddress(0x20_1000)).expect("read");
    assert_eq!(got, module);
    let size: u32 = m.read_obj(GuestAddress(b.placement.info)).expect("read");
    let mut mbi = vec![0u8; size as usize];
    m.read_slice(&mut mbi, GuestAddress(b.placement.info)).expect("read");
    parsed(&mbi, |info| {
        assert_eq!(info.command_line_tag().expect("cmdline").cmdline(), Ok("modules"));
        let md = info.module_tags().next().expect("module");
        assert_eq!((md.start_address(), md.end_address(), md.cmdline()), (0x20_1000, 0x20_2801, Ok("blob")));
    });
}
