use vm_memory::GuestMemoryMmap;

use super::*;

const KBASE: u64 = 0xffff_ffff_8000_0000;

fn setup() -> (PartitionLayout, GuestMemoryMmap<()>) {
    let layout = PartitionLayout::new(64 << 20, 32 << 20).expect("layout");
    let ranges: Vec<_> = layout.all_ram().iter().map(|r| (r.start, r.len as usize)).collect();
    (layout, GuestMemoryMmap::from_ranges(&ranges).expect("memory"))
}

fn view<'a>(mem: &'a GuestMemoryMmap<()>, cr3: u64, user: bool, allowed: &'a dyn Fn(u64, u64) -> bool) -> GuestView<'a, GuestMemoryMmap<()>> {
    GuestView { mem, cr3, paging: true, user, allowed }
}

#[test]
fn hrt_tables_map_identity_kernel_window_and_phys_map() {
    let (layout, mem) = setup();
    let cr3 = build_hrt_tables(&mem, &layout, KBASE, 0xffff_8000_0000_0000).expect("tables");
    assert_eq!(cr3, layout.hrt_base() + PAGE_TABLES_OFFSET);
    let all = |_: u64, _: u64| true;
    let v = view(&mem, cr3, false, &all);
    assert_eq!(v.translate(0x1234, false).expect("identity").0, 0x1234);
    assert_eq!(v.translate(0xfee0_0000, true).expect("lapic").0, 0xfee0_0000);
    assert_eq!(v.translate(KBASE + 0x20_1008, false).expect("kernel").0, layout.hrt_base() + 0x20_1008);
    assert_eq!(v.translate(0xffff_8000_0000_0000 + 0x5000, false).expect("phys map").0, 0x5000);
    assert_eq!(v.translate(KBASE + (32 << 20), false), Err(WalkError::NotMapped(KBASE + (32 << 20))));
    // The LAPIC's 2 MiB page is uncached; RAM is not.
    let pde = |va: u64| {
        let (pa, _) = v.translate(va, false).expect("mapped");
        let _ = pa;
        let pml4e: u64 = mem.read_obj(GuestAddress(cr3 + ((va >> 39) & 511) * 8)).expect("pml4e");
        let pdpte: u64 = mem.read_obj(GuestAddress((pml4e & ADDR_MASK) + ((va >> 30) & 511) * 8)).expect("pdpte");
        mem.read_obj::<u64>(GuestAddress((pdpte & ADDR_MASK) + ((va >> 21) & 511) * 8)).expect("pde")
    };
    assert_ne!(pde(0xfee0_0000) & PCD, 0);
    assert_eq!(pde(0x20_0000) & PCD, 0);
}

#[test]
fn bad_windows_are_refused() {
    let (layout, mem) = setup();
    assert!(matches!(build_hrt_tables(&mem, &layout, KBASE + 0x1000, 0), Err(PagingError::BadWindow { .. })));
    assert!(matches!(build_hrt_tables(&mem, &layout, 0x0000_8000_0000_0000, 0), Err(PagingError::BadWindow { .. })));
    assert!(matches!(build_hrt_tables(&mem, &layout, 0x4000_0000, 0), Err(PagingError::Overlap)));
    assert!(matches!(build_hrt_tables(&mem, &layout, u64::MAX - (1 << 21) + 1, 0), Err(PagingError::BadWindow { .. })));
    assert!(matches!(build_hrt_tables(&mem, &layout, 0xffff_8000_0000_0000, 0xffff_8000_0000_0000), Err(PagingError::Overlap)));
}

/// Writes a 4-level mapping of one 4 KiB page `va` → `pa` with tables at `tables` (4 pages).
fn map_page(mem: &GuestMemoryMmap<()>, tables: u64, va: u64, pa: u64, flags: u64) {
    let idx = [(va >> 39) & 511, (va >> 30) & 511, (va >> 21) & 511, (va >> 12) & 511];
    for (level, index) in idx.iter().take(3).enumerate() {
        let e = (tables + (level as u64 + 1) * PAGE) | PRESENT | WRITABLE | USER;
        mem.write_obj(e, GuestAddress(tables + level as u64 * PAGE + index * 8)).expect("write");
    }
    mem.write_obj(pa | flags, GuestAddress(tables + 3 * PAGE + idx[3] * 8)).expect("write");
}

#[test]
fn a_ros_caller_cannot_reach_hrt_memory_through_its_tables() {
    let (layout, mem) = setup();
    let ros = |a: u64, n: u64| layout.in_ros_ram(a, n);
    let tables = 0x10_0000;
    let user_rw = PRESENT | WRITABLE | USER;
    // A user page that maps ROS RAM: fine, and writable.
    map_page(&mem, tables, 0x40_0000, 0x30_0000, user_rw);
    let v = view(&mem, tables, true, &ros);
    v.write(0x40_0ff8, &[7; 16]).expect_err("the next page is not mapped");
    v.write(0x40_0010, b"hello").expect("write");
    assert_eq!(v.read(0x40_0010, 5).expect("read"), b"hello");
    let mut got = [0u8; 5];
    mem.read_slice(&mut got, GuestAddress(0x30_0010)).expect("read");
    assert_eq!(&got, b"hello");
    // A user page the ROS points at HRT RAM: refused.
    map_page(&mem, tables, 0x80_0000, layout.hrt_base() + 0x1000, user_rw);
    assert_eq!(v.write(0x80_0000, b"x"), Err(WalkError::OutsideMemory(0x80_0000)));
    assert_eq!(v.read(0x80_0000, 1), Err(WalkError::OutsideMemory(0x80_0000)));
    // Tables themselves in HRT RAM: refused before they are read.
    let v = view(&mem, layout.hrt_base() + 0x2000, true, &ros);
    assert_eq!(v.translate(0x1000, false), Err(WalkError::OutsideMemory(0x1000)));
}

#[test]
fn access_rights_and_canonical_form_are_enforced() {
    let (layout, mem) = setup();
    let ros = |a: u64, n: u64| layout.in_ros_ram(a, n);
    let tables = 0x10_0000;
    map_page(&mem, tables, 0x40_0000, 0x30_0000, PRESENT | USER);
    map_page(&mem, tables, 0x60_1000, 0x31_0000, PRESENT | WRITABLE);
    let v = view(&mem, tables, true, &ros);
    assert_eq!(v.translate(0x40_0000, false).map(|t| t.0), Ok(0x30_0000));
    assert_eq!(v.translate(0x40_0000, true), Err(WalkError::Denied(0x40_0000)));
    assert_eq!(v.translate(0x60_1000, false), Err(WalkError::Denied(0x60_1000)), "kernel page from user mode");
    assert_eq!(v.translate(0x8000_0000_0000, false), Err(WalkError::NotMapped(0x8000_0000_0000)));
    let kernel = view(&mem, tables, false, &ros);
    assert_eq!(kernel.translate(0x60_1000, true).map(|t| t.0), Ok(0x31_0000));
    let flat = GuestView { mem: &mem, cr3: 0, paging: false, user: false, allowed: &ros };
    assert_eq!(flat.pieces(0xff0, 0x20, false), Ok(vec![(0xff0, 0x10), (0x1000, 0x10)]));
    assert!(flat.read(u64::MAX - 4, 8).is_err());
}
