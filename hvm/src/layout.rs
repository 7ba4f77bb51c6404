//! The guest-physical layout of a partitioned VM: the ROS's RAM from 0 (as in a Linux-only VM), the
//! HRT's RAM in one range above it, and the VMM's structures at the start of the HRT's range.
//!
//! ```text
//! 0 .. ROS RAM (below the MMIO gap; the rest above 4 GiB)       the ROS's KVM VM maps only this
//! hrt_base = ROS end rounded up to 2 MiB (4 GiB if that would cross the MMIO gap)
//!   +0x0000  the HRT's 64-bit GDT            +0x1000  comm page (invoke slots, 64 B per core)
//!   +0x2000  the VMM's page tables for the 64-bit entry, up to +0x10_0000
//!   +0x10_0000  the HRT's ACPI tables (MADT listing the HRT's cores)
//!   +0x20_0000  kernel image (HVM: segment P at hrt_base + P), modules, boot information
//! ```

use boot::layout::{ram_ranges, RamRange, MMIO_GAP_START, RAM_ABOVE_4G_START};
use vm_memory::GuestAddress;

/// Offset of the HRT's GDT in its partition.
pub const GDT_OFFSET: u64 = 0;
/// Offset of the comm page (invoke slots).
pub const COMM_OFFSET: u64 = 0x1000;
/// Offset of the page-table area.
pub const PAGE_TABLES_OFFSET: u64 = 0x2000;
/// End of the page-table area.
pub const PAGE_TABLES_END: u64 = 0x10_0000;
/// Offset of the HRT's ACPI tables (RSDP first; MADT with the HRT's APIC IDs).
pub const ACPI_OFFSET: u64 = 0x10_0000;
/// Offset below which the partition is the VMM's (reserved in the HRT's memory map).
pub const VMM_AREA_END: u64 = 0x20_0000;
/// Alignment of the HRT's partition.
pub const PARTITION_ALIGN: u64 = 2 << 20;

/// Why a layout is impossible.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// The HRT's memory cannot hold the VMM's area plus a kernel.
    #[error("the HRT's memory ({mib} MiB) is too small: duet keeps its first 2 MiB for the boot structures")]
    HrtTooSmall {
        /// The configured size in MiB.
        mib: u64,
    },
    /// The sizes overflow the guest-physical address space duet uses.
    #[error("ROS memory {ros_mib} MiB plus HRT memory {hrt_mib} MiB do not fit the guest-physical address space")]
    TooLarge {
        /// ROS size.
        ros_mib: u64,
        /// HRT size.
        hrt_mib: u64,
    },
}

/// Where everything of a partitioned VM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLayout {
    /// The ROS's RAM ranges.
    pub ros_ram: Vec<RamRange>,
    /// The HRT's RAM (one range).
    pub hrt_ram: RamRange,
}

impl PartitionLayout {
    /// The layout for `ros_memory` and `hrt_memory` bytes.
    pub fn new(ros_memory: u64, hrt_memory: u64) -> Result<Self, LayoutError> {
        let too_large = || LayoutError::TooLarge { ros_mib: ros_memory >> 20, hrt_mib: hrt_memory >> 20 };
        if hrt_memory < 2 * VMM_AREA_END {
            return Err(LayoutError::HrtTooSmall { mib: hrt_memory >> 20 });
        }
        if ros_memory > 1 << 45 || hrt_memory > 1 << 45 {
            return Err(too_large());
        }
        let ros_ram = ram_ranges(ros_memory);
        let ros_end = ros_ram.last().map_or(0, RamRange::end);
        let mut base = ros_end.checked_next_multiple_of(PARTITION_ALIGN).ok_or_else(too_large)?;
        let end = base.checked_add(hrt_memory).ok_or_else(too_large)?;
        if base < RAM_ABOVE_4G_START && end > MMIO_GAP_START {
            base = RAM_ABOVE_4G_START;
        }
        base.checked_add(hrt_memory).filter(|e| *e <= 1 << 46).ok_or_else(too_large)?;
        Ok(PartitionLayout { ros_ram, hrt_ram: RamRange { start: GuestAddress(base), len: hrt_memory } })
    }

    /// First byte of the HRT's partition.
    pub fn hrt_base(&self) -> u64 {
        self.hrt_ram.start.0
    }

    /// The HRT's GDT.
    pub fn gdt(&self) -> u64 {
        self.hrt_base() + GDT_OFFSET
    }

    /// The comm page (invoke slots).
    pub fn comm_page(&self) -> u64 {
        self.hrt_base() + COMM_OFFSET
    }

    /// All RAM, ROS's then HRT's (what the HRT's memory map describes).
    pub fn all_ram(&self) -> Vec<RamRange> {
        let mut all = self.ros_ram.clone();
        all.push(self.hrt_ram);
        all
    }

    /// One past the highest RAM byte.
    pub fn top(&self) -> u64 {
        self.hrt_ram.end().max(self.ros_ram.last().map_or(0, RamRange::end))
    }

    /// Ranges `(start, end)` the HRT's memory map reports as reserved: the ROS's RAM and the VMM's area.
    pub fn hrt_mmap_reserved(&self) -> Vec<(u64, u64)> {
        let mut r: Vec<(u64, u64)> = self.ros_ram.iter().map(|r| (r.start.0, r.end())).collect();
        r.push((self.hrt_base(), self.hrt_base() + VMM_AREA_END));
        r
    }

    /// Ranges `(start, end)` nothing of the HRT's image may be loaded into (the VMM's area).
    pub fn hrt_load_reserved(&self) -> Vec<(u64, u64)> {
        vec![(self.hrt_base(), self.hrt_base() + VMM_AREA_END)]
    }

    /// Whether `[start, start + len)` lies inside the ROS's RAM.
    pub fn in_ros_ram(&self, start: u64, len: u64) -> bool {
        start.checked_add(len).is_some_and(|end| self.ros_ram.iter().any(|r| start >= r.start.0 && end <= r.end()))
    }

    /// Whether `[start, start + len)` lies inside the HRT's RAM.
    pub fn in_hrt_ram(&self, start: u64, len: u64) -> bool {
        start.checked_add(len).is_some_and(|end| start >= self.hrt_ram.start.0 && end <= self.hrt_ram.end())
    }

    /// Whether `[start, start + len)` lies inside any RAM.
    pub fn in_any_ram(&self, start: u64, len: u64) -> bool {
        self.in_ros_ram(start, len) || self.in_hrt_ram(start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hrt_sits_above_the_ros_aligned() {
        let l = PartitionLayout::new(255 << 20, 64 << 20).expect("layout");
        assert_eq!(l.hrt_base(), 256 << 20);
        assert_eq!(l.hrt_ram.len, 64 << 20);
        assert_eq!(l.comm_page(), (256 << 20) + 0x1000);
        assert!(l.in_ros_ram(0, 255 << 20) && !l.in_ros_ram(l.hrt_base(), 1));
        assert!(l.in_hrt_ram(l.hrt_base(), 64 << 20) && !l.in_hrt_ram(l.hrt_base(), (64 << 20) + 1));
        assert_eq!(l.hrt_mmap_reserved(), vec![(0, 255 << 20), (256 << 20, (256 << 20) + VMM_AREA_END)]);
    }

    #[test]
    fn the_hrt_skips_the_mmio_gap() {
        let l = PartitionLayout::new(3 << 30, 64 << 20).expect("layout");
        assert_eq!(l.hrt_base(), RAM_ABOVE_4G_START);
        let l = PartitionLayout::new((3 << 30) - (32 << 20), 64 << 20).expect("layout");
        assert_eq!(l.hrt_base(), RAM_ABOVE_4G_START, "would have crossed into the gap");
        let l = PartitionLayout::new(4 << 30, 64 << 20).expect("layout");
        assert_eq!(l.hrt_base(), RAM_ABOVE_4G_START + (1 << 30), "after the ROS's high RAM");
    }

    #[test]
    fn impossible_sizes_are_errors() {
        assert_eq!(PartitionLayout::new(256 << 20, 2 << 20), Err(LayoutError::HrtTooSmall { mib: 2 }));
        assert!(matches!(PartitionLayout::new(u64::MAX - 10, 64 << 20), Err(LayoutError::TooLarge { .. })));
        assert!(!PartitionLayout::new(256 << 20, 64 << 20).expect("layout").in_ros_ram(u64::MAX, 2));
    }
}
