//! Test images built by hand: Multiboot2 headers, ELF32/ELF64 files, a.out-kludge images.

use super::*;
use crate::layout::{self, RamRange};
use vm_memory::GuestMemoryMmap;

mod header_tests;
mod info_tests;
mod load_tests;

const MIB: u64 = 1 << 20;

fn guest(size: u64) -> GuestMemoryMmap<()> {
    let ranges: Vec<_> = layout::ram_ranges(size).iter().map(|r| (r.start, r.len as usize)).collect();
    GuestMemoryMmap::from_ranges(&ranges).expect("anonymous memory")
}

fn ram(size: u64) -> Vec<RamRange> {
    layout::ram_ranges(size)
}

/// A header tag with a body of u32 fields, padded to 8 bytes.
fn tag(typ: u16, flags: u16, body: &[u32]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&typ.to_le_bytes());
    t.extend_from_slice(&flags.to_le_bytes());
    t.extend_from_slice(&(8 + 4 * body.len() as u32).to_le_bytes());
    for f in body {
        t.extend_from_slice(&f.to_le_bytes());
    }
    while t.len() % 8 != 0 {
        t.push(0);
    }
    t
}

/// A Multiboot2 header for `arch` with `tags` and an end tag.
fn header_arch(arch: u32, tags: &[Vec<u8>]) -> Vec<u8> {
    let mut body: Vec<u8> = tags.concat();
    body.extend_from_slice(&tag(0, 0, &[]));
    let len = 16 + body.len() as u32;
    let mut h = Vec::new();
    h.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
    h.extend_from_slice(&arch.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(arch).wrapping_sub(len).to_le_bytes());
    h.extend_from_slice(&body);
    h
}

fn header(tags: &[Vec<u8>]) -> Vec<u8> {
    header_arch(0, tags)
}

/// Offset of the Multiboot2 header in the ELF files built here.
const ELF_HEADER_AT: usize = 0x800;

/// An ELF file (32- or 64-bit) with one PT_LOAD per `(paddr, bytes, memsz)`, entry `entry`, and the
/// Multiboot2 header `mb2` at [`ELF_HEADER_AT`]; the segments' bytes follow the
/// builder's header page ([`crate::elf::Builder::HEADER_AREA`]).
fn elf(elf64: bool, segments: &[(u64, &[u8], u64)], entry: u64, mb2: &[u8]) -> Vec<u8> {
    let class = if elf64 { crate::elf::Class::Elf64 } else { crate::elf::Class::Elf32 };
    let builder = crate::elf::Builder::new(class).entry(entry).header_bytes(ELF_HEADER_AT, mb2);
    segments.iter().fold(builder, |b, (paddr, bytes, memsz)| b.segment(*paddr, bytes, *memsz)).build()
}

/// An a.out-kludge image: the header (with an address tag loading the file at `load_addr`, `bss` bytes
/// of bss, and an entry tag) at offset 0, followed by `code`.
fn aout(load_addr: u32, code: &[u8], bss: u32, extra: &[Vec<u8>]) -> Vec<u8> {
    let build = |len: u32| {
        let mut tags = vec![
            tag(2, 0, &[load_addr, load_addr, load_addr + len, load_addr + len + bss]),
            tag(3, 0, &[load_addr + 0x100]),
        ];
        tags.extend_from_slice(extra);
        header(&tags)
    };
    let hlen = build(0).len();
    let mut f = build((0x100 + code.len()) as u32);
    assert!(hlen <= 0x100);
    f.resize(0x100, 0x90);
    f.extend_from_slice(code);
    f
}
