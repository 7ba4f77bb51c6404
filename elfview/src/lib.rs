//! ELF files (little-endian, as x86 has them): the one program-header walker that duet's loaders
//! share — the Linux and Multiboot2 image inspectors of the `boot` crate (as `boot::elf`), and the
//! program loader of `hvm exec` in the ROS once that lands (it reads `e_type`, `p_flags`, `p_align`
//! and PT_INTERP, which the kernel inspectors do not) — and [`Builder`], which writes small
//! ELF files for tests, fuzz seeds and tools. [`le`] holds the little-endian field readers of
//! untrusted bytes that the loaders use for the rest of their formats.
//!
//! The reader treats every file as hostile: each read is bounds checked, all arithmetic on values
//! from the file is checked, and every malformed file is an [`ElfError`], never a panic. It is
//! written by hand rather than with the `elf` crate (in the dependency graph through `multiboot2`),
//! which does not fit that discipline as duet needs it:
//!
//! - `ElfBytes::minimal_parse` also insists on a well-formed section header table, which a loader
//!   never reads: a vmlinux cut short (its section headers are at the end of the file) would fail
//!   with a generic parse error instead of naming the segment that is truncated;
//! - it requires `e_phentsize` to be exactly the class's entry size, where the gABI lets entries be
//!   larger (and duet accepts them);
//! - its `ParseError`s cannot say which segment, or how many program headers at which offset, are
//!   missing, and duet's messages do.
//!
//! Only what loading needs is read: the file header's class, byte order, type, machine, entry point
//! and program header table, the program headers, and notes.

mod builder;
pub mod le;

pub use builder::{Builder, BuilderSegment};

use crate::le::{u16_at, u32_at, u64_at};

/// The first four bytes of every ELF file.
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// Program header type: a loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program header type: the path of the program interpreter (the dynamic loader).
pub const PT_INTERP: u32 = 3;
/// Program header type: notes.
pub const PT_NOTE: u32 = 4;
/// Program header type: the program header table itself, as loaded.
pub const PT_PHDR: u32 = 6;
/// Program header type: the stack's permissions (GNU).
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// `p_flags`: executable.
pub const PF_X: u32 = 1;
/// `p_flags`: writable.
pub const PF_W: u32 = 2;
/// `p_flags`: readable.
pub const PF_R: u32 = 4;
/// `e_type`: an executable at fixed addresses.
pub const ET_EXEC: u16 = 2;
/// `e_type`: a shared object (or a position-independent executable).
pub const ET_DYN: u16 = 3;
/// `e_machine`: i386.
pub const EM_386: u16 = 3;
/// `e_machine`: x86-64.
pub const EM_X86_64: u16 = 62;

/// An ELF file's class: the size of its addresses and structures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// ELFCLASS32.
    Elf32,
    /// ELFCLASS64.
    Elf64,
}

impl Class {
    /// Size of the file header (`e_ehsize`).
    pub fn header_size(self) -> usize {
        match self {
            Class::Elf32 => 52,
            Class::Elf64 => 64,
        }
    }

    /// Size of a program header entry; the smallest `e_phentsize` accepted.
    pub fn program_header_size(self) -> usize {
        match self {
            Class::Elf32 => 32,
            Class::Elf64 => 56,
        }
    }

    /// `EI_CLASS`.
    fn ident(self) -> u8 {
        match self {
            Class::Elf32 => 1,
            Class::Elf64 => 2,
        }
    }
}

/// Why a file is not an ELF file that can be walked. The messages are the part after "unsupported
/// ELF kernel: " (or, for [`ElfError::Truncated`], what is missing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic.
    #[error("no ELF magic")]
    NotElf,
    /// The file ends before something its headers promise.
    #[error("{what} lies beyond the end of the file")]
    Truncated {
        /// What is missing, e.g. `the ELF header (64 bytes)` or `segment 2 (file bytes ...)`.
        what: String,
    },
    /// `EI_CLASS` is neither 32- nor 64-bit.
    #[error("unknown ELF class {0}")]
    UnknownClass(u8),
    /// `EI_DATA` is not little-endian.
    #[error("not little-endian")]
    NotLittleEndian,
    /// `e_phnum` is 0.
    #[error("it has no program headers")]
    NoProgramHeaders,
    /// `e_phentsize` is smaller than the class's program header.
    #[error("program header size {size} < {min}")]
    ProgramHeaderSize {
        /// `e_phentsize`.
        size: u64,
        /// The class's program header size.
        min: u64,
    },
    /// A segment's physical end does not fit 64 bits.
    #[error("segment {0} wraps the address space")]
    Wraps(usize),
}

/// Whether `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(&ELF_MAGIC)
}

/// The file header of an ELF file: what loading needs of it. Read with [`Elf::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elf<'a> {
    image: &'a [u8],
    /// 32- or 64-bit.
    pub class: Class,
    /// `e_type` ([`ET_EXEC`], [`ET_DYN`], ...).
    pub kind: u16,
    /// `e_machine`.
    pub machine: u16,
    /// `e_entry` (a virtual address).
    pub entry: u64,
    /// `e_phoff`: offset of the program header table.
    pub phoff: u64,
    /// `e_phentsize`: size of one program header.
    pub phentsize: u64,
    /// `e_phnum`: number of program headers.
    pub phnum: u64,
}

impl<'a> Elf<'a> {
    /// Reads the file header of `image` (the whole file): the magic, the class, the header's
    /// length, little-endian byte order, in that order.
    pub fn parse(image: &'a [u8]) -> Result<Self, ElfError> {
        if !is_elf(image) {
            return Err(ElfError::NotElf);
        }
        let truncated = |what: String| ElfError::Truncated { what };
        let class = match image.get(4) {
            None => return Err(truncated("the ELF identification".into())),
            Some(1) => Class::Elf32,
            Some(2) => Class::Elf64,
            Some(&c) => return Err(ElfError::UnknownClass(c)),
        };
        let size = class.header_size();
        if image.len() < size {
            return Err(truncated(format!("the ELF header ({size} bytes)")));
        }
        if image.get(5) != Some(&1) {
            return Err(ElfError::NotLittleEndian);
        }
        // In bounds: the header's length was checked above.
        let half = |off32: usize, off64: usize| {
            let off = if class == Class::Elf64 { off64 } else { off32 };
            u64::from(u16_at(image, off).unwrap_or(0))
        };
        let word = |off32: usize, off64: usize| match class {
            Class::Elf32 => u32_at(image, off32).map(u64::from).unwrap_or(0),
            Class::Elf64 => u64_at(image, off64).unwrap_or(0),
        };
        Ok(Elf {
            image,
            class,
            kind: u16_at(image, 16).unwrap_or(0),
            machine: u16_at(image, 18).unwrap_or(0),
            entry: word(24, 24),
            phoff: word(28, 32),
            phentsize: half(42, 54),
            phnum: half(44, 56),
        })
    }

    /// The whole file.
    pub fn image(&self) -> &'a [u8] {
        self.image
    }

    /// The program headers, in table order, once the table is known to lie inside the file: there
    /// is at least one, each is at least the class's size, and all of them are in the file.
    pub fn program_headers(&self) -> Result<ProgramHeaders<'a>, ElfError> {
        if self.phnum == 0 {
            return Err(ElfError::NoProgramHeaders);
        }
        let min = self.class.program_header_size() as u64;
        if self.phentsize < min {
            return Err(ElfError::ProgramHeaderSize {
                size: self.phentsize,
                min,
            });
        }
        let end = self
            .phentsize
            .checked_mul(self.phnum)
            .and_then(|n| n.checked_add(self.phoff));
        if end.is_none_or(|e| e > self.image.len() as u64) {
            let (phnum, phoff) = (self.phnum, self.phoff);
            return Err(ElfError::Truncated {
                what: format!("{phnum} program headers at offset {phoff:#x}"),
            });
        }
        Ok(ProgramHeaders { elf: *self, next: 0 })
    }

    /// The notes of a `PT_NOTE` segment `ph`, in order; they end at the first one that does not
    /// fit the segment (or the file).
    pub fn notes(&self, ph: &ProgramHeader) -> Notes<'a> {
        Notes {
            data: ph.file_bytes(self.image).unwrap_or_default(),
            at: 0,
        }
    }
}

/// The program headers of an [`Elf`] ([`Elf::program_headers`]).
#[derive(Debug, Clone)]
pub struct ProgramHeaders<'a> {
    elf: Elf<'a>,
    next: u64,
}

impl Iterator for ProgramHeaders<'_> {
    type Item = ProgramHeader;

    fn next(&mut self) -> Option<ProgramHeader> {
        let elf = &self.elf;
        if self.next >= elf.phnum {
            return None;
        }
        let index = self.next;
        self.next += 1;
        // In bounds: phoff + phnum * phentsize <= the file's length was checked.
        let at = usize::try_from(elf.phoff + index * elf.phentsize).ok()?;
        let image = elf.image;
        let word = |off32: usize, off64: usize| match elf.class {
            Class::Elf32 => u32_at(image, at + off32).map(u64::from).unwrap_or(0),
            Class::Elf64 => u64_at(image, at + off64).unwrap_or(0),
        };
        Some(ProgramHeader {
            index: usize::try_from(index).ok()?,
            p_type: u32_at(image, at).unwrap_or(0),
            flags: match elf.class {
                Class::Elf32 => u32_at(image, at + 24).unwrap_or(0),
                Class::Elf64 => u32_at(image, at + 4).unwrap_or(0),
            },
            offset: word(4, 8),
            vaddr: word(8, 16),
            paddr: word(12, 24),
            file_size: word(16, 32),
            mem_size: word(20, 40),
            align: word(28, 48),
        })
    }
}

/// One program header, widened to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Its index in the table.
    pub index: usize,
    /// `p_type`.
    pub p_type: u32,
    /// `p_flags` ([`PF_R`], [`PF_W`], [`PF_X`]).
    pub flags: u32,
    /// `p_offset`: where its bytes are in the file.
    pub offset: u64,
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// `p_filesz`: bytes in the file.
    pub file_size: u64,
    /// `p_memsz`: bytes in memory.
    pub mem_size: u64,
    /// `p_align`.
    pub align: u64,
}

impl ProgramHeader {
    /// Whether it is a loadable segment (`PT_LOAD`).
    pub fn is_load(&self) -> bool {
        self.p_type == PT_LOAD
    }

    /// Checks that its bytes lie inside a file of `len` bytes.
    pub fn check_in_file(&self, len: u64) -> Result<(), ElfError> {
        let end = self.offset.checked_add(self.file_size);
        if end.is_none_or(|e| e > len) {
            let (i, start) = (self.index, self.offset);
            let end = start.saturating_add(self.file_size);
            return Err(ElfError::Truncated {
                what: format!("segment {i} (file bytes {start:#x}..{end:#x})"),
            });
        }
        Ok(())
    }

    /// One past the last physical byte it occupies: `p_paddr + max(p_memsz, p_filesz)`.
    pub fn phys_end(&self) -> Result<u64, ElfError> {
        let size = self.mem_size.max(self.file_size);
        self.paddr
            .checked_add(size)
            .ok_or(ElfError::Wraps(self.index))
    }

    /// Its bytes in `image`, if they are all there.
    pub fn file_bytes<'a>(&self, image: &'a [u8]) -> Option<&'a [u8]> {
        let start = usize::try_from(self.offset).ok()?;
        let len = usize::try_from(self.file_size).ok()?;
        image.get(start..start.checked_add(len)?)
    }
}

/// One ELF note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// The owner's name, without its terminating NUL(s) (`Linux`, `Xen`, `GNU`).
    pub name: &'a [u8],
    /// The note's type, as the owner numbers them.
    pub kind: u32,
    /// Its descriptor.
    pub desc: &'a [u8],
}

/// The notes of a `PT_NOTE` segment ([`Elf::notes`]).
#[derive(Debug, Clone)]
pub struct Notes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Notes<'a> {
    fn read(&self) -> Option<(Note<'a>, usize)> {
        let at = self.at;
        let name_len = usize::try_from(u32_at(self.data, at)?).ok()?;
        let desc_len = usize::try_from(u32_at(self.data, at.checked_add(4)?)?).ok()?;
        let kind = u32_at(self.data, at.checked_add(8)?)?;
        let name_start = at.checked_add(12)?;
        let name_end = name_start.checked_add(name_len)?;
        let name = self.data.get(name_start..name_end)?;
        let desc_start = name_end.checked_next_multiple_of(4)?;
        let desc_end = desc_start.checked_add(desc_len)?;
        let desc = self.data.get(desc_start..desc_end)?;
        let name = name.strip_suffix(b"\0").unwrap_or(name);
        let next = desc_end.checked_next_multiple_of(4)?;
        Some((Note { name, kind, desc }, next))
    }
}

impl<'a> Iterator for Notes<'a> {
    type Item = Note<'a>;

    fn next(&mut self) -> Option<Note<'a>> {
        match self.read() {
            Some((note, next)) => {
                self.at = next;
                Some(note)
            }
            None => {
                self.at = self.data.len();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
