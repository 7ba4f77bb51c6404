use vm_memory::GuestMemoryMmap;

use super::*;

const KBASE: u64 = 0xffff_ffff_8000_0000;

/// A Multiboot2 header with an information request for the memory map and, if given, the HVM tag.
fn mb2_header(hvm: Option<HvmHeaderTag>) -> Vec<u8> {
    let mut tags = Vec::new();
    if let Some(t) = hvm {
        let mut b = [0u8; HvmHeaderTag::SIZE];
        t.write(&mut b);
        tags.extend_from_slice(&b);
    }
    tags.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
    let len = 16 + tags.len() as u32;
    let magic = multiboot2::HEADER_MAGIC;
    let mut h = Vec::new();
    for v in [magic, 0, len, 0u32.wrapping_sub(magic).wrapping_sub(len)] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&tags);
    h
}

/// An ELF64 file with one PT_LOAD of `code` linked (physically) at `paddr`, entry `entry`, and `mb2`
/// at the start of the segment.
fn elf64(paddr: u64, entry: u64, mb2: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = 2;
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&62u16.to_le_bytes());
    f[24..32].copy_from_slice(&entry.to_le_bytes());
    f[32..40].copy_from_slice(&64u64.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&1u16.to_le_bytes());
    let mut seg = mb2.to_vec();
    seg.resize(0x2000, 0xf4);
    let ph = 64;
    f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    for (j, v) in [0x1000u64, paddr, paddr, seg.len() as u64, 0x3000].iter().enumerate() {
        f[ph + 8 + 8 * j..ph + 16 + 8 * j].copy_from_slice(&v.to_le_bytes());
    }
    f.extend_from_slice(&seg);
    f
}

fn setup(ros: u64, hrt: u64) -> (PartitionLayout, GuestMemoryMmap<()>) {
    let layout = PartitionLayout::new(ros, hrt).expect("layout");
    let ranges: Vec<_> = layout.all_ram().iter().map(|r| (r.start, r.len as usize)).collect();
    (layout, GuestMemoryMmap::from_ranges(&ranges).expect("memory"))
}

fn spec<'a>(kernel: &'a [u8], layout: &'a PartitionLayout) -> HrtBootSpec<'a> {
    HrtBootSpec {
        kernel,
        cmdline: "hello",
        modules: &[],
        layout,
        hrt_apic_ids: &[1, 2],
        ros_apic_ids: &[0],
        tsc_khz: 2_000_000,
        forward: ForwardMode::Adaptive,
        forward_spin_us: 250,
    }
}

fn find_info_tag(mem: &GuestMemoryMmap<()>, info: u64) -> Option<HvmInfo> {
    let total: u32 = mem.read_obj(GuestAddress(info)).ok()?;
    let mut at = info + 8;
    while at < info + u64::from(total) {
        let typ: u32 = mem.read_obj(GuestAddress(at)).ok()?;
        let size: u32 = mem.read_obj(GuestAddress(at + 4)).ok()?;
        if typ == abi::HVM_INFO_TAG {
            let mut body = vec![0u8; size as usize - 8];
            mem.read_slice(&mut body, GuestAddress(at + 8)).ok()?;
            return HvmInfo::decode(&body);
        }
        if typ == 0 || size < 8 {
            return None;
        }
        at += u64::from(size).next_multiple_of(8);
    }
    None
}

#[test]
fn the_64_bit_entry_starts_every_core_in_the_partition() {
    let (layout, mem) = setup(64 << 20, 32 << 20);
    let tag = HvmHeaderTag { hvm_flags: 1, wake_vector: 0xf0, entry64: KBASE + 0x20_0100, kernel_vbase: KBASE, phys_map_base: 0 };
    let kernel = elf64(0x20_0000, 0x20_0000, &mb2_header(Some(tag)));
    let booted = boot_hrt(&mem, &spec(&kernel, &layout)).expect("boot");
    assert!(booted.entry64());
    assert_eq!(booted.entries.len(), 2);
    let base = layout.hrt_base();
    let mut first = [0u8; 4];
    mem.read_slice(&mut first, GuestAddress(base + 0x20_0000)).expect("read");
    assert_eq!(u32::from_le_bytes(first), multiboot2::HEADER_MAGIC, "segment P loaded at base + P");
    for (core, e) in booted.entries.iter().enumerate() {
        assert_eq!((e.mode, e.rip, e.rsi, e.rdx), (CpuMode::Long64, tag.entry64, core as u64, core as u64 + 1));
        assert_eq!(e.rdi, e.rbx);
        assert!(layout.in_hrt_ram(e.rdi, 8), "information in the HRT's RAM");
        assert_eq!(e.cr3, base + PAGE_TABLES_OFFSET);
        assert_ne!(e.efer & EFER_NXE, 0);
    }
    let info = find_info_tag(&mem, booted.entries[0].rdi).expect("HVM information tag");
    assert_eq!(info, booted.info);
    assert_eq!((info.hrt_cores, info.ros_cores, info.wake_vector, info.tsc_khz), (2, 1, 0xf0, 2_000_000));
    assert_eq!(info.hrt_ram, MemRange { base, len: 32 << 20 });
    assert_eq!(info.ros_ram[0], MemRange { base: 0, len: 64 << 20 });
    assert_eq!(&info.hrt_apic_ids[..3], &[1, 2, 0]);
    // The forwarding mode and the doorbell ports travel in the tag.
    assert_eq!(info.forward(), Some(ForwardMode::Adaptive));
    assert_eq!((info.forward_spin_us, info.hrt_doorbell_port, info.ros_doorbell_port), (250, 0xe8, 0xec));
    // The HRT's own ACPI tables, in its partition.
    let mut sig = [0u8; 8];
    mem.read_slice(&mut sig, GuestAddress(base + crate::layout::ACPI_OFFSET)).expect("read");
    assert_eq!(&sig, b"RSD PTR ");
    // Nothing was written into the ROS's RAM.
    let mut ros = vec![0u8; 64 << 20];
    mem.read_slice(&mut ros, GuestAddress(0)).expect("read");
    assert!(ros.iter().all(|b| *b == 0), "the ROS's memory is untouched");
}

#[test]
fn without_the_tag_the_standard_entry_must_load_inside_the_partition() {
    let (layout, mem) = setup(64 << 20, 32 << 20);
    let low = elf64(0x20_0000, 0x20_0000, &mb2_header(None));
    assert!(matches!(boot_hrt(&mem, &spec(&low, &layout)), Err(HrtBootError::Multiboot2(Mb2Error::SegmentOutsideRam { .. }))));
    let at = layout.hrt_base() + 0x40_0000;
    let inside = elf64(at, at, &mb2_header(None));
    let booted = boot_hrt(&mem, &spec(&inside, &layout)).expect("boot");
    assert!(!booted.entry64());
    assert_eq!(booted.entries.len(), 1);
    assert_eq!((booted.entries[0].mode, booted.entries[0].rip), (CpuMode::Protected32, at));
}

#[test]
fn bad_tags_are_refused() {
    let (layout, mem) = setup(64 << 20, 32 << 20);
    let tag = HvmHeaderTag { hvm_flags: 1, wake_vector: 3, entry64: KBASE, kernel_vbase: KBASE, phys_map_base: 0 };
    let k = elf64(0x20_0000, 0x20_0000, &mb2_header(Some(tag)));
    assert_eq!(boot_hrt(&mem, &spec(&k, &layout)), Err(HrtBootError::BadWakeVector(3)));
    let tag = HvmHeaderTag { wake_vector: 0xf0, kernel_vbase: KBASE + 0x1000, ..tag };
    let k = elf64(0x20_0000, 0x20_0000, &mb2_header(Some(tag)));
    assert!(matches!(boot_hrt(&mem, &spec(&k, &layout)), Err(HrtBootError::Paging(_))));
    let tag = HvmHeaderTag { kernel_vbase: KBASE, ..tag };
    let k = elf64(0x10_0000, 0x10_0000, &mb2_header(Some(tag)));
    assert!(matches!(boot_hrt(&mem, &spec(&k, &layout)), Err(HrtBootError::Multiboot2(Mb2Error::OverlapsReserved { .. }))), "into the VMM's area");
}

#[test]
fn a_partition_above_4g_boots_with_the_64_bit_entry() {
    let (layout, mem) = setup(3 << 30, 32 << 20);
    assert_eq!(layout.hrt_base(), 1 << 32);
    let tag = HvmHeaderTag { hvm_flags: 1, wake_vector: 0xf0, entry64: KBASE + 0x20_0100, kernel_vbase: KBASE, phys_map_base: 0 };
    let kernel = elf64(0x20_0000, 0x20_0000, &mb2_header(Some(tag)));
    let booted = boot_hrt(&mem, &spec(&kernel, &layout)).expect("boot above 4 GiB");
    assert!(booted.entries.iter().all(|e| layout.in_hrt_ram(e.rdi, 8) && e.rdi >= 1 << 32));
    // The standard 32-bit entry cannot run there: a clear error (a kernel linked below 4 GiB is told
    // the partition is above; one linked above has no 32-bit entry at all).
    let low = elf64(0x40_0000, 0x40_0000, &mb2_header(None));
    assert_eq!(boot_hrt(&mem, &spec(&low, &layout)), Err(HrtBootError::Above4G(1 << 32)));
    let high = elf64(layout.hrt_base() + 0x40_0000, layout.hrt_base() + 0x40_0000, &mb2_header(None));
    assert!(matches!(boot_hrt(&mem, &spec(&high, &layout)), Err(HrtBootError::Multiboot2(Mb2Error::EntryOutOfRange(_)))));
}
