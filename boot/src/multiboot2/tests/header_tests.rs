use super::*;

fn elf_with(tags: &[Vec<u8>]) -> Vec<u8> {
    elf(false, &[(0x20_0000, &[0xf4; 16], 0x1000)], 0x20_0000, &header(tags))
}

fn err(tags: &[Vec<u8>]) -> Mb2Error {
    inspect(&elf_with(tags)).expect_err("must be refused")
}

#[test]
fn minimal_elf_header_is_found() {
    let img = inspect(&elf_with(&[])).expect("inspect");
    assert_eq!(img.header_offset, ELF_HEADER_AT);
    assert_eq!(img.format, Mb2Format::Elf32);
    assert_eq!(img.entry, 0x20_0000);
    assert_eq!(img.segments, vec![Segment { file_offset: 0x1000, file_size: 16, paddr: 0x20_0000, mem_size: 0x1000 }]);
    assert_eq!((img.load_start(), img.load_end()), (0x20_0000, 0x20_1000));
}

#[test]
fn no_header() {
    assert_eq!(inspect(&[0u8; 4096]), Err(Mb2Error::NoHeader));
    assert_eq!(inspect(&[]), Err(Mb2Error::NoHeader));
    // Magic at a misaligned offset does not count.
    let mut f = vec![0u8; 64];
    f[4..4 + 24].copy_from_slice(&header(&[])[..24]);
    assert_eq!(inspect(&f), Err(Mb2Error::NoHeader));
}

#[test]
fn bad_checksum() {
    let mut f = elf_with(&[]);
    f[ELF_HEADER_AT + 12] ^= 1;
    assert_eq!(inspect(&f), Err(Mb2Error::BadChecksum(ELF_HEADER_AT)));
}

#[test]
fn header_past_32k() {
    let mut f = elf(false, &[(0x20_0000, &[0xf4; 16], 0x1000)], 0x20_0000, &[]);
    f.resize(0x9000, 0);
    let h = header(&[]);
    f[0x8800..0x8800 + h.len()].copy_from_slice(&h);
    assert_eq!(inspect(&f), Err(Mb2Error::HeaderPast32K(0x8800)));
}

#[test]
fn header_crossing_32k_is_a_bad_length() {
    let h = header(&[tag(0xffff, 1, &[0; 8])]);
    let at = HEADER_SEARCH_LIMIT - 16;
    let mut f = vec![0u8; at];
    f.extend_from_slice(&h);
    assert!(matches!(inspect(&f), Err(Mb2Error::BadHeaderLength { offset, .. }) if offset == at));
}

#[test]
fn architecture_mips_is_refused() {
    let f = elf(false, &[(0x20_0000, &[0; 4], 4)], 0x20_0000, &header_arch(4, &[]));
    let e = inspect(&f).expect_err("MIPS");
    assert_eq!(e, Mb2Error::UnsupportedArchitecture(4));
    assert!(e.to_string().contains("MIPS"));
}

#[test]
fn truncated_tag_and_missing_end_tag() {
    // A tag whose size reaches past header_length.
    let mut h = header(&[tag(3, 0, &[0x20_0000])]);
    h[16 + 4..16 + 8].copy_from_slice(&64u32.to_le_bytes());
    let f = elf(false, &[(0x20_0000, &[0; 4], 4)], 0x20_0000, &h);
    assert_eq!(inspect(&f), Err(Mb2Error::TruncatedTag { offset: ELF_HEADER_AT + 16 }));
    // Cut the end tag off by shortening header_length (and fixing the checksum).
    let mut h = header(&[tag(6, 0, &[])]);
    let len = 24u32;
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..16].copy_from_slice(&0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(len).to_le_bytes());
    let f = elf(false, &[(0x20_0000, &[0; 4], 4)], 0x20_0000, &h);
    assert_eq!(inspect(&f), Err(Mb2Error::MissingEndTag));
}

#[test]
fn tag_too_small_for_its_type() {
    assert_eq!(err(&[tag(3, 0, &[])]), Mb2Error::BadTagSize { typ: 3, size: 8 });
    assert_eq!(err(&[tag(2, 0, &[1, 2])]), Mb2Error::BadTagSize { typ: 2, size: 16 });
    // An optional unknown tag claiming size 0 must not loop forever (fuzz finding).
    let mut t = tag(42, 1, &[]);
    t[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(err(&[t]), Mb2Error::BadTagSize { typ: 42, size: 0 });
}

#[test]
fn information_request() {
    let img = inspect(&elf_with(&[tag(1, 0, &[1, 2, 3, 4, 6, 14, 15, 21])])).expect("all provided");
    assert_eq!(img.info_requests, PROVIDED_INFO_TAGS.to_vec());
    assert_eq!(err(&[tag(1, 0, &[1, 8])]), Mb2Error::UnprovidableInfoRequest(8));
    // Optional request: framebuffer info is simply not given.
    let img = inspect(&elf_with(&[tag(1, 1, &[8, 9])])).expect("optional");
    assert_eq!(img.info_requests, vec![8, 9]);
}

#[test]
fn entry_address_tag_overrides_elf_entry() {
    let img = inspect(&elf_with(&[tag(3, 0, &[0x20_0010])])).expect("inspect");
    assert_eq!(img.entry_tag, Some(0x20_0010));
    assert_eq!(img.entry, 0x20_0010);
}

#[test]
fn no_entry_point() {
    let f = elf(false, &[(0x20_0000, &[0; 4], 4)], 0, &header(&[]));
    assert_eq!(inspect(&f), Err(Mb2Error::NoEntry));
    // a.out kludge without an entry address tag.
    let mut f = header(&[tag(2, 0, &[0x20_0000, 0x20_0000, 0, 0])]);
    f.resize(0x200, 0);
    assert_eq!(inspect(&f), Err(Mb2Error::NoEntry));
}

#[test]
fn console_flags() {
    let img = inspect(&elf_with(&[tag(4, 0, &[2])])).expect("EGA supported, not required");
    assert_eq!(img.console_flags, Some(2));
    assert_eq!(err(&[tag(4, 0, &[1])]), Mb2Error::ConsoleRequired);
    assert!(inspect(&elf_with(&[tag(4, 1, &[3])])).is_ok(), "optional tag");
}

#[test]
fn framebuffer_is_declined() {
    let img = inspect(&elf_with(&[tag(5, 1, &[1024, 768, 32])])).expect("optional framebuffer");
    assert_eq!(img.framebuffer, Some(FramebufferRequest { width: 1024, height: 768, depth: 32 }));
    assert_eq!(err(&[tag(5, 0, &[800, 600, 16])]), Mb2Error::FramebufferRequired { width: 800, height: 600, depth: 16 });
}

#[test]
fn module_alignment() {
    assert!(inspect(&elf_with(&[tag(6, 0, &[])])).expect("inspect").module_align);
    assert!(!inspect(&elf_with(&[])).expect("inspect").module_align);
}

#[test]
fn efi_tags() {
    let e = err(&[tag(7, 0, &[])]);
    assert_eq!(e, Mb2Error::EfiBootServicesRequired);
    assert!(e.to_string().contains("requires EFI boot services, which duet does not provide"));
    assert!(inspect(&elf_with(&[tag(7, 1, &[])])).is_ok());
    let img = inspect(&elf_with(&[tag(8, 0, &[0x20_0004]), tag(9, 0, &[0x20_0008])])).expect("EFI entries ignored");
    assert_eq!(img.efi_entries, (Some(0x20_0004), Some(0x20_0008)));
    assert_eq!(img.entry, 0x20_0000);
}

#[test]
fn relocatable_tag() {
    let img = inspect(&elf_with(&[tag(10, 0, &[0x10_0000, 0x1000_0000, 0x20_0000, 2])])).expect("inspect");
    assert_eq!(
        img.relocatable,
        Some(Relocatable { min_addr: 0x10_0000, max_addr: 0x1000_0000, align: 0x20_0000, preference: RelocationPreference::High })
    );
    assert!(matches!(err(&[tag(10, 0, &[2, 1, 0, 0])]), Mb2Error::BadRelocatableTag(_)));
    assert!(matches!(err(&[tag(10, 0, &[0, 1, 0, 7])]), Mb2Error::BadRelocatableTag(_)));
}

#[test]
fn unknown_tags() {
    assert_eq!(err(&[tag(42, 0, &[1, 2])]), Mb2Error::UnknownRequiredTag(42));
    assert!(err(&[tag(42, 0, &[])]).to_string().contains("42"));
    assert!(inspect(&elf_with(&[tag(42, 1, &[1, 2, 3])])).is_ok());
}

#[test]
fn elf64_segments_and_entry_translation() {
    // Linked at virtual 0xffff_8000_0020_0000, physical 0x20_0000: the entry is translated.
    let mut f = elf(true, &[(0x20_0000, &[0xf4; 32], 0x2000)], 0, &header(&[]));
    // Patch p_vaddr of segment 0 and e_entry.
    let v: u64 = 0xffff_8000_0020_0000;
    f[64 + 16..64 + 24].copy_from_slice(&v.to_le_bytes());
    f[24..32].copy_from_slice(&(v + 0x10).to_le_bytes());
    let img = inspect(&f).expect("inspect");
    assert_eq!(img.format, Mb2Format::Elf64);
    assert_eq!(img.entry, 0x20_0010);
    assert_eq!(img.load_end(), 0x20_2000);
}

#[test]
fn truncated_elf() {
    let f = elf(false, &[(0x20_0000, &[0xf4; 0x100], 0x1000)], 0x20_0000, &header(&[]));
    let cut = &f[..f.len() - 0x10];
    assert!(matches!(inspect(cut), Err(Mb2Error::Truncated { what, .. }) if what.contains("segment 0")));
    // Program headers beyond the file.
    let mut f = elf(false, &[(0x20_0000, &[0xf4; 4], 4)], 0x20_0000, &header(&[]));
    f[44..46].copy_from_slice(&0xffffu16.to_le_bytes());
    assert!(matches!(inspect(&f), Err(Mb2Error::Truncated { what, .. }) if what.contains("program headers")));
    // The ELF header itself.
    let mut f = header(&[]);
    f.splice(0..0, *b"\x7fELF\x01\x01\x01\0");
    assert!(matches!(inspect(&f), Err(Mb2Error::Truncated { .. })));
}

#[test]
fn overlapping_segments() {
    let f = elf(false, &[(0x20_0000, &[1; 16], 0x2000), (0x20_1000, &[2; 16], 0x1000)], 0x20_0000, &header(&[]));
    assert_eq!(inspect(&f), Err(Mb2Error::OverlappingSegments { first: 0, second: 1, at: 0x20_1000 }));
}

#[test]
fn wrong_machine_and_not_loadable() {
    let mut f = elf_with(&[]);
    f[18] = 40; // ARM
    assert!(matches!(inspect(&f), Err(Mb2Error::UnsupportedElf(_))));
    let mut f = header(&[]);
    f.resize(0x100, 0);
    assert_eq!(inspect(&f), Err(Mb2Error::NotLoadable));
}

#[test]
fn aout_kludge() {
    let f = aout(0x20_0000, &[0xf4; 0x40], 0x800, &[]);
    let img = inspect(&f).expect("inspect");
    assert_eq!(img.format, Mb2Format::AoutKludge);
    assert_eq!(img.entry, 0x20_0100);
    assert_eq!(img.segments, vec![Segment { file_offset: 0, file_size: 0x140, paddr: 0x20_0000, mem_size: 0x940 }]);
    // load_end_addr past the file.
    let mut f = f;
    f.truncate(0x120);
    assert!(matches!(inspect(&f), Err(Mb2Error::Truncated { .. })));
    // load_addr above header_addr.
    let mut f = header(&[tag(2, 0, &[0x20_0000, 0x20_1000, 0, 0]), tag(3, 0, &[0x20_1000])]);
    f.resize(0x100, 0);
    assert!(matches!(inspect(&f), Err(Mb2Error::BadAddressTag(_))));
}
