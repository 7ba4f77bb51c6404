//! [`Builder`]: small ELF files written from scratch.

use super::{Class, ELF_MAGIC, EM_386, EM_X86_64, PT_LOAD};

/// Writes a small executable ELF file (ELF32 or ELF64, little-endian) with `PT_LOAD` segments: a
/// helper for tests, fuzz seeds and tools that need a kernel image without a linker. Nothing duet
/// boots in earnest is built with it.
///
/// The file is laid out as: a header area ([`Builder::HEADER_AREA`] bytes, or more in whole pages
/// if its contents need it) holding the file header, the program header table right after it, and
/// any bytes placed with [`Builder::header_bytes`] (e.g. a Multiboot2 header at 0x800); then each
/// segment's bytes, one after the other, in the order they were added. The headers are the
/// canonical ones: `ET_EXEC`, `EV_CURRENT`, `e_ehsize` and `e_phentsize` of the class, no section
/// headers; each segment is read/write/execute (`p_flags` 7) with `p_align` 0x1000. For ELF32,
/// addresses and sizes are truncated to 32 bits.
///
/// ```
/// use elfview::{Builder, Elf};
///
/// let code = [0xf4u8; 16]; // hlt
/// let file = Builder::elf64().entry(0x100_0000).segment(0x100_0000, &code, 0x1000).build();
/// let elf = Elf::parse(&file).expect("an ELF file");
/// assert_eq!(elf.entry, 0x100_0000);
/// let ph: Vec<_> = elf.program_headers().expect("headers").collect();
/// assert_eq!((ph[0].offset, ph[0].paddr, ph[0].file_size, ph[0].mem_size), (0x1000, 0x100_0000, 16, 0x1000));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builder {
    class: Class,
    machine: u16,
    entry: u64,
    segments: Vec<BuilderSegment>,
    header_bytes: Vec<(usize, Vec<u8>)>,
}

/// One `PT_LOAD` segment of a [`Builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderSegment {
    /// `p_vaddr`.
    pub vaddr: u64,
    /// `p_paddr`.
    pub paddr: u64,
    /// Its bytes in the file (`p_filesz` is their length).
    pub bytes: Vec<u8>,
    /// `p_memsz`.
    pub mem_size: u64,
}

impl Builder {
    /// The smallest header area: one page. Segment bytes start at this offset unless the headers
    /// need more room.
    pub const HEADER_AREA: usize = 0x1000;
    /// `p_flags` of every segment: read, write, execute.
    const FLAGS: u32 = 7;
    /// `p_align` of every segment.
    const ALIGN: u64 = 0x1000;

    /// An empty file of `class` for the usual machine (x86-64 for ELF64, i386 for ELF32), entry 0.
    pub fn new(class: Class) -> Self {
        let machine = match class {
            Class::Elf32 => EM_386,
            Class::Elf64 => EM_X86_64,
        };
        Builder {
            class,
            machine,
            entry: 0,
            segments: Vec::new(),
            header_bytes: Vec::new(),
        }
    }

    /// [`Builder::new`] for an x86-64 ELF64 file.
    pub fn elf64() -> Self {
        Builder::new(Class::Elf64)
    }

    /// [`Builder::new`] for an i386 ELF32 file.
    pub fn elf32() -> Self {
        Builder::new(Class::Elf32)
    }

    /// Sets `e_machine`.
    pub fn machine(mut self, machine: u16) -> Self {
        self.machine = machine;
        self
    }

    /// Sets `e_entry`.
    pub fn entry(mut self, entry: u64) -> Self {
        self.entry = entry;
        self
    }

    /// Adds a segment of `bytes` linked and loaded at `paddr` (virtual = physical), `mem_size`
    /// bytes in memory.
    pub fn segment(self, paddr: u64, bytes: &[u8], mem_size: u64) -> Self {
        self.segment_with(BuilderSegment {
            vaddr: paddr,
            paddr,
            bytes: bytes.to_vec(),
            mem_size,
        })
    }

    /// Adds a segment described in full.
    pub fn segment_with(mut self, segment: BuilderSegment) -> Self {
        self.segments.push(segment);
        self
    }

    /// Places `bytes` at `offset` of the header area (written after the headers, so they may also
    /// overwrite header fields, e.g. to make a malformed file).
    pub fn header_bytes(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.header_bytes.push((offset, bytes.to_vec()));
        self
    }

    /// The file.
    pub fn build(&self) -> Vec<u8> {
        let class = self.class;
        let (ehsize, phentsize) = (class.header_size(), class.program_header_size());
        let table_end = ehsize + phentsize * self.segments.len();
        let placed_end = self.header_bytes.iter().map(|(at, b)| at + b.len());
        let area = placed_end
            .chain([table_end, Builder::HEADER_AREA])
            .max()
            .unwrap_or(Builder::HEADER_AREA)
            .next_multiple_of(0x1000);
        let mut f = vec![0u8; area];
        self.write_file_header(&mut f);
        for (i, segment) in self.segments.iter().enumerate() {
            let offset = f.len() as u64;
            f.extend_from_slice(&segment.bytes);
            write_program_header(&mut f, class, ehsize + i * phentsize, offset, segment);
        }
        for (at, bytes) in &self.header_bytes {
            put(&mut f, *at, bytes);
        }
        f
    }

    fn write_file_header(&self, f: &mut [u8]) {
        let class = self.class;
        put(f, 0, &ELF_MAGIC);
        put(f, 4, &[class.ident(), 1, 1]); // class, little-endian, EV_CURRENT
        put(f, 16, &2u16.to_le_bytes()); // ET_EXEC
        put(f, 18, &self.machine.to_le_bytes());
        put(f, 20, &1u32.to_le_bytes()); // EV_CURRENT
        let ehsize = class.header_size() as u16;
        let phentsize = class.program_header_size() as u16;
        let phnum = self.segments.len() as u16;
        match class {
            Class::Elf64 => {
                put(f, 24, &self.entry.to_le_bytes());
                put(f, 32, &u64::from(ehsize).to_le_bytes()); // e_phoff: right after
                put(f, 52, &ehsize.to_le_bytes());
                put(f, 54, &phentsize.to_le_bytes());
                put(f, 56, &phnum.to_le_bytes());
            }
            Class::Elf32 => {
                put(f, 24, &(self.entry as u32).to_le_bytes());
                put(f, 28, &u32::from(ehsize).to_le_bytes());
                put(f, 40, &ehsize.to_le_bytes());
                put(f, 42, &phentsize.to_le_bytes());
                put(f, 44, &phnum.to_le_bytes());
            }
        }
    }
}

/// The program header at `at` for `segment`, whose bytes are at `offset`.
fn write_program_header(f: &mut [u8], class: Class, at: usize, offset: u64, segment: &BuilderSegment) {
    let file_size = segment.bytes.len() as u64;
    put(f, at, &PT_LOAD.to_le_bytes());
    match class {
        Class::Elf64 => {
            put(f, at + 4, &Builder::FLAGS.to_le_bytes());
            let fields = [offset, segment.vaddr, segment.paddr, file_size, segment.mem_size, Builder::ALIGN];
            for (i, v) in fields.iter().enumerate() {
                put(f, at + 8 + 8 * i, &v.to_le_bytes());
            }
        }
        Class::Elf32 => {
            let fields = [offset, segment.vaddr, segment.paddr, file_size, segment.mem_size];
            for (i, v) in fields.iter().enumerate() {
                put(f, at + 4 + 4 * i, &(*v as u32).to_le_bytes());
            }
            put(f, at + 24, &Builder::FLAGS.to_le_bytes());
            put(f, at + 28, &(Builder::ALIGN as u32).to_le_bytes());
        }
    }
}

/// Copies `bytes` to `at` of `f` (which [`Builder::build`] sized to hold them).
fn put(f: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = f.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
