//! Guest-physical layout of a duet VM.
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)                 0x0000_9000  PML4, then PDPT at 0xA000, PDs at 0xB000..0xF000
//! 0x0000_7000  Linux zero page (boot_params)   0x0002_0000  kernel command line (up to 64 KiB)
//! 0x0000_8ff0  initial stack top
//! 0x000a_0000 - 0x000f_ffff  legacy hole (not RAM in the e820 map); MP table at 0xf_0000 (BIOS area)
//! 0x0010_0000  RAM for kernel and initramfs, up to the MMIO gap
//! 0xc000_0000 - 0xffff_ffff  MMIO gap (IOAPIC 0xfec0_0000, LAPIC 0xfee0_0000); RAM continues at 4 GiB
//! 0xd000_0000 - 0xd00f_ffff  the ROS's virtio-mmio devices, 4 KiB each (never RAM, never an HRT partition)
//! ```

use vm_memory::GuestAddress;

/// Where the 4-entry GDT used for 64-bit entry lives.
pub const GDT_START: u64 = 0x500;
/// Linux's zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Top of the initial stack given to a 64-bit entry.
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
/// Page-map level 4 of the identity page tables.
pub const PML4_START: u64 = 0x9000;
/// The single page-directory-pointer table.
pub const PDPT_START: u64 = 0xa000;
/// First of the four page directories (2 MiB pages) mapping the low 4 GiB.
pub const PD_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Largest command line duet writes (Linux's own limit on x86 is 2048 bytes in most configs).
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;
/// The MP floating pointer and table, in the BIOS area (0xF0000–0xFFFFF) where Linux scans for them.
pub const MPTABLE_START: u64 = 0xf_0000;
/// End of the BIOS area reserved for firmware tables (MP, ACPI).
pub const BIOS_AREA_END: u64 = 0x10_0000;
/// Start of the legacy VGA/BIOS hole, which the e820 map leaves out.
pub const LEGACY_HOLE_START: u64 = 0xa_0000;
/// First byte above 1 MiB ("high memory" in Linux's boot protocol).
pub const HIGH_MEMORY_START: u64 = 0x10_0000;
/// Start of the MMIO gap below 4 GiB; RAM beyond this size continues at [`RAM_ABOVE_4G_START`].
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the MMIO gap.
pub const RAM_ABOVE_4G_START: u64 = 0x1_0000_0000;
/// The first virtio-mmio device window; the next ones follow every 4 KiB, up to
/// [`VIRTIO_MMIO_END`]. Inside the MMIO gap, which no RAM (and so no HRT partition) ever occupies.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// End of the virtio-mmio area (256 windows).
pub const VIRTIO_MMIO_END: u64 = 0xd010_0000;
/// The IOAPIC's MMIO base, as KVM's in-kernel IOAPIC places it.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APIC's MMIO base.
pub const LAPIC_START: u64 = 0xfee0_0000;

/// A range of guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamRange {
    /// First byte.
    pub start: GuestAddress,
    /// Length in bytes.
    pub len: u64,
}

impl RamRange {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.start.0 + self.len
    }
}

/// The RAM ranges backing `size` bytes of guest memory: from 0 up to the MMIO gap, the rest above 4 GiB.
pub fn ram_ranges(size: u64) -> Vec<RamRange> {
    if size <= MMIO_GAP_START {
        vec![RamRange { start: GuestAddress(0), len: size }]
    } else {
        vec![
            RamRange { start: GuestAddress(0), len: MMIO_GAP_START },
            RamRange { start: GuestAddress(RAM_ABOVE_4G_START), len: size - MMIO_GAP_START },
        ]
    }
}

/// End of the RAM range that starts at 0 (the only one 32-bit structures can point into).
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_GAP_START)
}

// The fixed low structures must not overlap; checked when the crate compiles.
const _: () = {
    assert!(GDT_START + 4 * 8 <= ZERO_PAGE_START);
    assert!(ZERO_PAGE_START + 0x1000 <= BOOT_STACK_TOP);
    assert!(BOOT_STACK_TOP <= PML4_START);
    assert!(PD_START + 4 * 0x1000 <= CMDLINE_START);
    assert!(CMDLINE_START + CMDLINE_MAX_SIZE as u64 <= LEGACY_HOLE_START);
    assert!(LEGACY_HOLE_START <= MPTABLE_START && MPTABLE_START < BIOS_AREA_END);
    assert!(MMIO_GAP_START <= VIRTIO_MMIO_START && VIRTIO_MMIO_END <= IOAPIC_START);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vm_has_one_range() {
        assert_eq!(ram_ranges(256 << 20), vec![RamRange { start: GuestAddress(0), len: 256 << 20 }]);
        assert_eq!(low_ram_end(256 << 20), 256 << 20);
    }

    #[test]
    fn large_vm_skips_the_mmio_gap() {
        let r = ram_ranges(4 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].end(), MMIO_GAP_START);
        assert_eq!(r[1].start.0, RAM_ABOVE_4G_START);
        assert_eq!(r[0].len + r[1].len, 4 << 30);
        assert_eq!(low_ram_end(4 << 30), MMIO_GAP_START);
    }

}
