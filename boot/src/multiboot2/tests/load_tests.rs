use super::*;
use vm_memory::{Bytes, GuestAddress};

fn read(m: &GuestMemoryMmap<()>, at: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    m.read_slice(&mut v, GuestAddress(at)).expect("read");
    v
}

#[test]
fn elf32_loads_at_paddr_with_bss_zeroed() {
    let m = guest(16 * MIB);
    m.write_slice(&[0xaa; 0x100], GuestAddress(0x20_0000 + 0x80)).expect("dirty");
    let f = elf(false, &[(0x20_0000, &[0xf4; 0x40], 0x1000), (0x30_0000, &[0x90; 8], 8)], 0x20_0000, &header(&[]));
    let img = inspect(&f).expect("inspect");
    let l = load(&m, &f, &img, &ram(16 * MIB), &DUET_RESERVED).expect("load");
    assert_eq!(l, Mb2Loaded { entry: 0x20_0000, load_start: 0x20_0000, load_end: 0x30_0008, load_base: None });
    assert_eq!(read(&m, 0x20_0000, 0x40), vec![0xf4; 0x40]);
    assert_eq!(read(&m, 0x20_0040, 0x200), vec![0; 0x200], "bss is zero-filled");
    assert_eq!(read(&m, 0x30_0000, 8), vec![0x90; 8]);
}

#[test]
fn elf64_loads() {
    let m = guest(16 * MIB);
    let f = elf(true, &[(0x40_0000, &[0xcc; 0x10], 0x3000)], 0x40_0004, &header(&[]));
    let img = inspect(&f).expect("inspect");
    let l = load(&m, &f, &img, &ram(16 * MIB), &DUET_RESERVED).expect("load");
    assert_eq!((l.entry, l.load_end), (0x40_0004, 0x40_3000));
    assert_eq!(read(&m, 0x40_0000, 0x10), vec![0xcc; 0x10]);
}

#[test]
fn aout_kludge_loads() {
    let m = guest(16 * MIB);
    let f = aout(0x20_0000, &[0xf4; 0x40], 0x800, &[]);
    let img = inspect(&f).expect("inspect");
    let l = load(&m, &f, &img, &ram(16 * MIB), &DUET_RESERVED).expect("load");
    assert_eq!((l.entry, l.load_start, l.load_end), (0x20_0100, 0x20_0000, 0x20_0940));
    assert_eq!(read(&m, 0x20_0000, 4), HEADER_MAGIC.to_le_bytes().to_vec(), "header loaded at header_addr");
    assert_eq!(read(&m, 0x20_0100, 0x40), vec![0xf4; 0x40]);
}

#[test]
fn segments_outside_ram() {
    let f = elf(false, &[(0x20_0000, &[0; 16], 0x10_0000), (0x7f0_0000, &[0; 16], 0x20_0000)], 0x20_0000, &header(&[]));
    let img = inspect(&f).expect("inspect");
    assert_eq!(
        plan(&img, &ram(128 * MIB), &DUET_RESERVED),
        Err(Mb2Error::SegmentOutsideRam { index: 1, start: 0x7f0_0000, end: 0x810_0000 })
    );
    let f = elf(true, &[(0x1_0000_0000, &[0; 16], 16)], 0x20_0000, &header(&[tag(3, 0, &[0x20_0000])]));
    let img = inspect(&f).expect("inspect");
    assert!(matches!(plan(&img, &ram(8 << 30), &DUET_RESERVED), Err(Mb2Error::SegmentAbove4G { index: 0, .. })));
}

#[test]
fn loads_below_1mib_are_refused() {
    let f = elf(false, &[(0x8000, &[0; 16], 16)], 0x8000, &header(&[]));
    let img = inspect(&f).expect("inspect");
    assert_eq!(
        plan(&img, &ram(16 * MIB), &DUET_RESERVED),
        Err(Mb2Error::OverlapsReserved { index: 0, start: 0x8000, end: 0x8010, reserved_start: 0, reserved_end: 0x10_0000 })
    );
}

fn relocatable(min: u32, max: u32, align: u32, pref: u32) -> Vec<u8> {
    elf(false, &[(0x20_0000, &[0xf4; 16], 0x10_0000)], 0x20_0008, &header(&[tag(10, 0, &[min, max, align, pref])]))
}

#[test]
fn relocation_low_high_and_none() {
    let r = ram(64 * MIB);
    let img = inspect(&relocatable(0x10_0000, 0x300_0000, 0x40_0000, 1)).expect("inspect");
    let l = plan(&img, &r, &DUET_RESERVED).expect("low");
    assert_eq!(l, Mb2Loaded { entry: 0x40_0008, load_start: 0x40_0000, load_end: 0x50_0000, load_base: Some(0x40_0000) });

    let img = inspect(&relocatable(0x10_0000, 0x300_0000, 0x40_0000, 2)).expect("inspect");
    let l = plan(&img, &r, &DUET_RESERVED).expect("high");
    assert_eq!((l.load_start, l.entry, l.load_base), (0x2c0_0000, 0x2c0_0008, Some(0x2c0_0000)));

    // No preference: the linked address fits, keep it.
    let img = inspect(&relocatable(0x10_0000, 0x300_0000, 0x1000, 0)).expect("inspect");
    assert_eq!(plan(&img, &r, &DUET_RESERVED).expect("none").load_start, 0x20_0000);

    // Loading shifts the bytes too.
    let m = guest(64 * MIB);
    let f = relocatable(0x10_0000, 0x300_0000, 0x40_0000, 2);
    let l = load(&m, &f, &inspect(&f).expect("inspect"), &r, &DUET_RESERVED).expect("load");
    assert_eq!(read(&m, l.load_start, 16), vec![0xf4; 16]);
}

#[test]
fn relocation_skips_reserved_and_memory_end() {
    // Window starting at 0: the low reserved MiB is skipped.
    let img = inspect(&relocatable(0, 0x300_0000, 0x1000, 1)).expect("inspect");
    assert_eq!(plan(&img, &ram(64 * MIB), &DUET_RESERVED).expect("plan").load_start, 0x10_0000);
    // High preference in a window larger than RAM: the top of RAM.
    let img = inspect(&relocatable(0x10_0000, 0xffff_ffff, 0x1000, 2)).expect("inspect");
    assert_eq!(plan(&img, &ram(16 * MIB), &DUET_RESERVED).expect("plan").load_end, 16 * MIB);
}

#[test]
fn relocatable_window_that_cannot_fit() {
    let img = inspect(&relocatable(0x100_0000, 0x108_0000, 0x1000, 1)).expect("inspect");
    assert_eq!(
        plan(&img, &ram(64 * MIB), &DUET_RESERVED),
        Err(Mb2Error::RelocationImpossible { min: 0x100_0000, max: 0x108_0000, align: 0x1000, size: 0x10_0000 })
    );
    // Window beyond RAM.
    let img = inspect(&relocatable(0x800_0000, 0x1000_0000, 0x1000, 0)).expect("inspect");
    assert!(matches!(plan(&img, &ram(64 * MIB), &DUET_RESERVED), Err(Mb2Error::RelocationImpossible { .. })));
}

#[test]
fn gdt_and_entry_state() {
    let m = guest(2 * MIB);
    let e = setup_entry(&m, 0x20_0000, 0x30_0000, GDT_ADDR).expect("entry");
    assert_eq!(e, entry_state(0x20_0000, 0x30_0000));
    assert_eq!(e.mode, crate::entry::CpuMode::Protected32);
    assert_eq!((e.rip, e.rax, e.rbx), (0x20_0000, 0x36D7_6289, 0x30_0000));
    assert_eq!(e.cr0, crate::entry::CR0_PE | crate::entry::CR0_ET);
    assert_eq!((e.cr3, e.cr4, e.efer), (0, 0, 0));
    assert_eq!(e.gdt, (GDT_ADDR, 31));
    assert!(e.code.present && e.code.s && e.code.db && !e.code.l && e.code.g);
    assert_eq!((e.code.base, e.code.limit, e.code.type_, e.code.selector), (0, 0xffff_ffff, 0xb, CODE32_SELECTOR));
    assert!(e.data.present && e.data.db && e.data.g);
    assert_eq!((e.data.base, e.data.limit, e.data.type_, e.data.selector), (0, 0xffff_ffff, 0x3, DATA32_SELECTOR));
    for (i, want) in MB2_GDT.iter().enumerate() {
        let got: u64 = m.read_obj(GuestAddress(GDT_ADDR + 8 * i as u64)).expect("read");
        assert_eq!(got, *want);
    }
    let tiny: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100)]).expect("mem");
    assert_eq!(write_gdt(&tiny, GDT_ADDR), Err(Mb2Error::Write("the GDT")));
}
