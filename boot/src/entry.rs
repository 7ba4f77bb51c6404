//! The CPU state a kernel is entered with, as plain data, and the long-mode scaffolding (GDT, identity
//! page tables) that a 64-bit entry needs in guest memory.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{GDT_START, PDPT_START, PD_START, PML4_START};

/// CR0.PE: protected mode.
pub const CR0_PE: u64 = 1;
/// CR0.ET: extension type (always 1 on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0.PG: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR0.MP: monitor coprocessor.
pub const CR0_MP: u64 = 1 << 1;
/// CR0.EM: x87 emulation (no FPU).
pub const CR0_EM: u64 = 1 << 2;
/// CR0.TS: task switched (lazy FPU).
pub const CR0_TS: u64 = 1 << 3;
/// CR0.NE: native x87 error reporting.
pub const CR0_NE: u64 = 1 << 5;
/// CR0.WP: write protect in ring 0.
pub const CR0_WP: u64 = 1 << 16;
/// CR4.PAE: physical address extension (required for long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4.PGE: global pages.
pub const CR4_PGE: u64 = 1 << 7;
/// CR4.OSFXSR: FXSAVE/FXRSTOR and SSE enabled by the OS.
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4.OSXMMEXCPT: unmasked SIMD floating-point exceptions enabled by the OS.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// CR4.LA57: 5-level paging.
pub const CR4_LA57: u64 = 1 << 12;
/// EFER.SCE: SYSCALL/SYSRET enabled.
pub const EFER_SCE: u64 = 1;
/// EFER.NXE: no-execute page bits enabled.
pub const EFER_NXE: u64 = 1 << 11;
/// EFER.LME: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// Selector of the 64-bit code segment in duet's boot GDT.
pub const CODE64_SELECTOR: u16 = 0x08;
/// Selector of the flat data segment in duet's boot GDT.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the (dummy) task state segment in duet's boot GDT.
pub const TSS_SELECTOR: u16 = 0x18;

/// A segment descriptor as the VMM loads it into a vCPU's hidden segment state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentDescriptor {
    /// Selector value.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Limit in bytes (already scaled by granularity).
    pub limit: u32,
    /// Type field (4 bits).
    pub type_: u8,
    /// Present.
    pub present: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Default operation size (32-bit) flag.
    pub db: bool,
    /// Descriptor type: 1 for code/data, 0 for system.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity (limit in 4 KiB units).
    pub g: bool,
}

impl SegmentDescriptor {
    /// Decodes a GDT entry (as written in memory) with the given selector.
    pub fn from_gdt_entry(selector: u16, entry: u64) -> Self {
        let base = ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24);
        let raw_limit = ((entry & 0xffff) | (((entry >> 48) & 0xf) << 16)) as u32;
        let g = (entry >> 55) & 1 == 1;
        let limit = if g { (raw_limit << 12) | 0xfff } else { raw_limit };
        SegmentDescriptor {
            selector,
            base,
            limit,
            type_: ((entry >> 40) & 0xf) as u8,
            s: (entry >> 44) & 1 == 1,
            dpl: ((entry >> 45) & 3) as u8,
            present: (entry >> 47) & 1 == 1,
            l: (entry >> 53) & 1 == 1,
            db: (entry >> 54) & 1 == 1,
            g,
        }
    }
}

/// Builds a GDT entry from flags (bits 52–55 and 40–47 of the descriptor), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    (((base as u64) & 0xff00_0000) << 32)
        | (((base as u64) & 0x00ff_ffff) << 16)
        | ((limit as u64) & 0xffff)
        | (((limit as u64) & 0xf_0000) << 32)
        | (((flags as u64) & 0xf0ff) << 40)
}

/// duet's boot GDT: null, 64-bit code, flat data, TSS.
pub const BOOT_GDT: [u64; 4] = [
    0,
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];

/// The processor mode a kernel is entered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    /// 64-bit long mode with paging (Linux's 64-bit boot protocol).
    Long64,
    /// 32-bit protected mode, paging off (Multiboot2, PVH).
    Protected32,
}

/// Everything the VMM needs to start the boot vCPU of a kernel. Plain data: `vmm` turns it into KVM state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    /// Processor mode at entry.
    pub mode: CpuMode,
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// RSI (Linux: the zero page).
    pub rsi: u64,
    /// RBX (Multiboot2: the information structure).
    pub rbx: u64,
    /// RAX (Multiboot2: the bootloader magic).
    pub rax: u64,
    /// RDX (the HVM 64-bit entry: the core's APIC ID).
    pub rdx: u64,
    /// RDI (the HVM 64-bit entry: the information structure).
    pub rdi: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3 (page-table root; 0 when paging is off).
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// GDT base and limit.
    pub gdt: (u64, u16),
    /// Code segment.
    pub code: SegmentDescriptor,
    /// Data segments (DS, ES, FS, GS, SS).
    pub data: SegmentDescriptor,
    /// Task register.
    pub tss: SegmentDescriptor,
}

/// Errors writing the long-mode scaffolding.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// Guest memory does not cover the fixed low structures.
    #[error("guest memory does not cover the boot structures at {0:#x}")]
    Write(u64),
}

/// Writes duet's boot GDT and identity page tables mapping the low 4 GiB (2 MiB pages), and returns the
/// long-mode entry state for `rip` with `rsi` and `rsp`.
pub fn setup_long_mode<M: GuestMemoryBackend>(
    mem: &M,
    rip: u64,
    rsi: u64,
    rsp: u64,
) -> Result<BootEntry, EntryError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        let at = GDT_START + (i as u64) * 8;
        mem.write_obj(*entry, GuestAddress(at)).map_err(|_| EntryError::Write(at))?;
    }
    // PML4[0] -> PDPT; PDPT[0..4] -> four PDs; each PD maps 1 GiB with 2 MiB pages.
    mem.write_obj(PDPT_START | 0x3, GuestAddress(PML4_START))
        .map_err(|_| EntryError::Write(PML4_START))?;
    for pd in 0..4u64 {
        let pd_addr = PD_START + pd * 0x1000;
        mem.write_obj(pd_addr | 0x3, GuestAddress(PDPT_START + pd * 8))
            .map_err(|_| EntryError::Write(PDPT_START))?;
        for i in 0..512u64 {
            let phys = (pd << 30) | (i << 21);
            mem.write_obj(phys | 0x83, GuestAddress(pd_addr + i * 8))
                .map_err(|_| EntryError::Write(pd_addr))?;
        }
    }
    Ok(BootEntry {
        mode: CpuMode::Long64,
        rip,
        rsp,
        rsi,
        rbx: 0,
        rax: 0,
        rdx: 0,
        rdi: 0,
        cr0: CR0_PE | CR0_ET | CR0_PG,
        cr3: PML4_START,
        cr4: CR4_PAE,
        efer: EFER_LME | EFER_LMA,
        gdt: (GDT_START, (BOOT_GDT.len() * 8 - 1) as u16),
        code: SegmentDescriptor::from_gdt_entry(CODE64_SELECTOR, BOOT_GDT[1]),
        data: SegmentDescriptor::from_gdt_entry(DATA_SELECTOR, BOOT_GDT[2]),
        tss: SegmentDescriptor::from_gdt_entry(TSS_SELECTOR, BOOT_GDT[3]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn mem() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("anonymous memory")
    }

    #[test]
    fn gdt_entries_decode_as_flat_segments() {
        let code = SegmentDescriptor::from_gdt_entry(CODE64_SELECTOR, BOOT_GDT[1]);
        assert!(code.l && code.present && code.s && !code.db);
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = SegmentDescriptor::from_gdt_entry(DATA_SELECTOR, BOOT_GDT[2]);
        assert!(data.db && data.g && !data.l);
        assert_eq!(data.type_, 0x3);
        assert_eq!(data.base, 0);
    }

    #[test]
    fn gdt_entry_round_trips_base_and_limit() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        let d = SegmentDescriptor::from_gdt_entry(0, e);
        assert_eq!(d.base, 0x1234_5678);
        assert_eq!(d.limit, 0xabcde);
        assert!(!d.g);
    }

    #[test]
    fn identity_tables_map_low_4g() {
        let m = mem();
        let e = setup_long_mode(&m, 0x100_0000, 0x7000, 0x8ff0).expect("setup");
        assert_eq!(e.cr3, PML4_START);
        assert_eq!(e.rip, 0x100_0000);
        let pml4: u64 = m.read_obj(GuestAddress(PML4_START)).expect("read");
        assert_eq!(pml4 & !0xfff, PDPT_START);
        // Walk the address 0xBFE0_1234 (PD 2, entry 511).
        let va = 0xbfe0_1234u64;
        let pdpte: u64 = m.read_obj(GuestAddress(PDPT_START + ((va >> 30) & 511) * 8)).expect("read");
        let pde: u64 = m.read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 511) * 8)).expect("read");
        assert_eq!(pde & 0x80, 0x80, "2 MiB page");
        assert_eq!((pde & !0x1f_ffff & !0xfff) | (va & 0x1f_ffff), va);
    }

    #[test]
    fn too_small_memory_is_an_error() {
        let m: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).expect("anonymous memory");
        assert!(setup_long_mode(&m, 0, 0, 0).is_err());
    }
}
