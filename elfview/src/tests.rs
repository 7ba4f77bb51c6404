use super::*;

/// A note as a PT_NOTE segment holds it.
fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
    n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    n.extend_from_slice(&kind.to_le_bytes());
    n.extend_from_slice(name);
    n.push(0);
    n.resize(n.len().next_multiple_of(4), 0);
    n.extend_from_slice(desc);
    n.resize(n.len().next_multiple_of(4), 0);
    n
}

#[test]
fn builder_writes_what_the_walker_reads() {
    for class in [Class::Elf32, Class::Elf64] {
        let f = Builder::new(class)
            .entry(0x20_0010)
            .segment(0x20_0000, &[0xf4; 0x30], 0x1000)
            .segment_with(BuilderSegment { vaddr: 0x4000_0000, paddr: 0x30_0000, bytes: vec![1; 8], mem_size: 8 })
            .header_bytes(0x800, b"here")
            .build();
        let elf = Elf::parse(&f).expect("parse");
        assert_eq!(elf.class, class);
        assert_eq!(elf.machine, if class == Class::Elf64 { EM_X86_64 } else { EM_386 });
        assert_eq!((elf.entry, elf.phoff, elf.phnum), (0x20_0010, class.header_size() as u64, 2));
        assert_eq!(elf.phentsize, class.program_header_size() as u64);
        let ph: Vec<_> = elf.program_headers().expect("headers").collect();
        let want = [
            ProgramHeader { index: 0, p_type: PT_LOAD, flags: 7, offset: 0x1000, vaddr: 0x20_0000, paddr: 0x20_0000, file_size: 0x30, mem_size: 0x1000, align: 0x1000 },
            ProgramHeader { index: 1, p_type: PT_LOAD, flags: 7, offset: 0x1030, vaddr: 0x4000_0000, paddr: 0x30_0000, file_size: 8, mem_size: 8, align: 0x1000 },
        ];
        assert_eq!(ph, want);
        assert_eq!(ph[1].file_bytes(&f), Some(&[1u8; 8][..]));
        assert_eq!(&f[0x800..0x804], b"here");
        assert_eq!(f.len(), 0x1038);
        assert_eq!(ph[0].phys_end(), Ok(0x20_1000));
    }
}

#[test]
fn the_tiny_kernel_layout_is_unchanged() {
    // The bytes the hand-built test kernels had: one RWX segment at 0x1000, page aligned.
    let f = Builder::elf64().entry(0x100_0000).segment(0x100_0000, &[0x90; 0x1000], 0x1000).build();
    let mut want = vec![0u8; 0x1000];
    want[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    want[16..18].copy_from_slice(&2u16.to_le_bytes());
    want[18..20].copy_from_slice(&62u16.to_le_bytes());
    want[20..24].copy_from_slice(&1u32.to_le_bytes());
    want[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
    want[32..40].copy_from_slice(&64u64.to_le_bytes());
    want[52..54].copy_from_slice(&64u16.to_le_bytes());
    want[54..56].copy_from_slice(&56u16.to_le_bytes());
    want[56..58].copy_from_slice(&1u16.to_le_bytes());
    let ph = 64;
    want[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    want[ph + 4..ph + 8].copy_from_slice(&7u32.to_le_bytes());
    for (i, v) in [0x1000u64, 0x100_0000, 0x100_0000, 0x1000, 0x1000, 0x1000].iter().enumerate() {
        want[ph + 8 + 8 * i..ph + 16 + 8 * i].copy_from_slice(&v.to_le_bytes());
    }
    want.extend_from_slice(&[0x90; 0x1000]);
    assert_eq!(f, want);
    // ELF32: the fields in their 32-bit places.
    let f = Builder::elf32().entry(0x20_0018).segment(0x20_0000, &[0xf4; 0x20], 0x20).build();
    assert_eq!(&f[4..7], &[1, 1, 1]);
    assert_eq!(u32_at(&f, 24), Some(0x20_0018));
    assert_eq!((u32_at(&f, 28), u16_at(&f, 40), u16_at(&f, 42), u16_at(&f, 44)), (Some(52), Some(52), Some(32), Some(1)));
    let fields: Vec<_> = (0..8).map(|i| u32_at(&f, 52 + 4 * i)).collect();
    let want: Vec<_> = [1, 0x1000, 0x20_0000, 0x20_0000, 0x20, 0x20, 7, 0x1000].into_iter().map(Some).collect();
    assert_eq!(fields, want);
}

#[test]
fn header_errors_in_order() {
    assert_eq!(Elf::parse(b"MZ\0\0\0\0"), Err(ElfError::NotElf));
    let what = |e| match e {
        Err(ElfError::Truncated { what }) => what,
        other => format!("not a truncation: {other:?}"),
    };
    assert_eq!(what(Elf::parse(b"\x7fELF")), "the ELF identification");
    assert_eq!(Elf::parse(b"\x7fELF\x03\x01"), Err(ElfError::UnknownClass(3)));
    let short = [&ELF_MAGIC[..], &[2, 1]].concat();
    assert_eq!(what(Elf::parse(&short)), "the ELF header (64 bytes)");
    let mut f = Builder::elf32().segment(0x20_0000, &[0; 4], 4).build();
    assert_eq!(what(Elf::parse(&f[..51])), "the ELF header (52 bytes)");
    f[5] = 2;
    assert_eq!(Elf::parse(&f), Err(ElfError::NotLittleEndian));
}

#[test]
fn program_header_table_errors() {
    let f = Builder::elf64().build();
    assert_eq!(Elf::parse(&f).expect("parse").program_headers().err(), Some(ElfError::NoProgramHeaders));
    let mut f = Builder::elf64().segment(0x100_0000, &[0; 4], 4).build();
    f[54..56].copy_from_slice(&40u16.to_le_bytes());
    let err = Elf::parse(&f).expect("parse").program_headers().err();
    assert_eq!(err, Some(ElfError::ProgramHeaderSize { size: 40, min: 56 }));
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("program header size 40 < 56"));
    // Larger entries are fine (the gABI allows them); a table past the end is not.
    let mut f = Builder::elf64().segment(0x100_0000, &[0; 4], 4).build();
    f[54..56].copy_from_slice(&64u16.to_le_bytes());
    assert_eq!(Elf::parse(&f).expect("parse").program_headers().map(Iterator::count), Ok(1));
    f[56..58].copy_from_slice(&0xffffu16.to_le_bytes());
    let err = Elf::parse(&f).expect("parse").program_headers().err();
    assert_eq!(err, Some(ElfError::Truncated { what: "65535 program headers at offset 0x40".into() }));
    f[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(Elf::parse(&f).expect("parse").program_headers(), Err(ElfError::Truncated { .. })));
}

#[test]
fn segment_checks() {
    let f = Builder::elf64().segment(0x100_0000, &[0; 0x100], 0x100).build();
    let ph = Elf::parse(&f).expect("parse").program_headers().expect("headers").next().expect("one");
    assert_eq!(ph.check_in_file(f.len() as u64), Ok(()));
    let err = ph.check_in_file(0x1080).expect_err("cut");
    assert_eq!(err, ElfError::Truncated { what: "segment 0 (file bytes 0x1000..0x1100)".into() });
    let huge = ProgramHeader { offset: u64::MAX, paddr: u64::MAX - 4, ..ph };
    assert!(matches!(huge.check_in_file(u64::MAX), Err(ElfError::Truncated { what }) if what.contains("0xffffffffffffffff")));
    assert_eq!(huge.phys_end(), Err(ElfError::Wraps(0)));
    assert_eq!(huge.file_bytes(&f), None);
    assert_eq!(ElfError::Wraps(3).to_string(), "segment 3 wraps the address space");
}

#[test]
fn notes_are_read_until_one_does_not_fit() {
    let notes = [note(b"GNU", 3, &[0xab; 20]), note(b"Linux", 0x100, &[0; 4]), note(b"Xen", 0x12, &[1, 2, 3])].concat();
    let mut f = Builder::elf64().segment(0x100_0000, &notes, notes.len() as u64).build();
    f[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
    let elf = Elf::parse(&f).expect("parse");
    let ph = elf.program_headers().expect("headers").next().expect("one");
    let found: Vec<_> = elf.notes(&ph).map(|n| (n.name, n.kind, n.desc.len())).collect();
    assert_eq!(found, vec![(&b"GNU"[..], 3, 20), (&b"Linux"[..], 0x100, 4), (&b"Xen"[..], 0x12, 3)]);
    // A note whose sizes reach past the segment ends the list, without a panic.
    let mut bad = notes.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut f = Builder::elf64().segment(0x100_0000, &bad, bad.len() as u64).build();
    f[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
    let elf = Elf::parse(&f).expect("parse");
    let ph = elf.program_headers().expect("headers").next().expect("one");
    assert_eq!(elf.notes(&ph).count(), 0);
    let outside = ProgramHeader { offset: 1 << 40, ..ph };
    assert_eq!(elf.notes(&outside).count(), 0);
}

#[test]
fn no_prefix_or_corruption_of_a_file_panics() {
    // Every truncation of a small file, and every byte of its headers set to a few hostile values.
    let notes = note(b"Linux", 1, &[0; 4]);
    for class in [Class::Elf32, Class::Elf64] {
        let mut f = Builder::new(class).entry(0x20_0000).segment(0x20_0000, &notes, 0x100).segment(0x30_0000, &[0; 8], 8).build();
        f[class.header_size()..class.header_size() + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        let walk = |f: &[u8]| {
            if let Ok(elf) = Elf::parse(f) {
                if let Ok(headers) = elf.program_headers() {
                    for ph in headers {
                        let _ = (ph.check_in_file(f.len() as u64), ph.phys_end(), ph.file_bytes(f));
                        let _ = elf.notes(&ph).count();
                    }
                }
            }
        };
        for len in 0..f.len() {
            walk(&f[..len]);
        }
        for at in (0..0x100).chain(0x1000..0x1000 + notes.len()) {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut g = f.clone();
                g[at] = v;
                walk(&g);
            }
        }
    }
}
