//! Guest boot for duet: where things go in guest-physical memory and how a kernel is put there.
//!
//! Everything here is plain code over [`vm_memory::GuestMemoryBackend`]: loaders write guest memory and
//! return plain data ([`BootEntry`]) that the `vmm` crate applies to a vCPU. Nothing here touches KVM, so
//! every table and loader is unit-tested on anonymous memory.
//!
//! - [`layout`]: the fixed guest-physical addresses (GDT, page tables, zero page, MP table, MMIO gap)
//!   and the RAM ranges of a VM of a given size.
//! - [`linux`]: Linux's 64-bit boot protocol (bzImage or uncompressed vmlinux ELF), boot_params with e820,
//!   command line, initramfs placement.
//! - [`mptable`]: the Intel MultiProcessor table that lets an SMP Linux find every vCPU without ACPI.
//! - [`multiboot2`]: Multiboot2 (spec 2.0): header and ELF/a.out inspection, loading with relocation, the
//!   boot information structure, and the 32-bit protected-mode entry state.
//! - [`elf`]: the ELF program-header walker both kernel formats share (the `elfview` crate, a crate of
//!   its own so that a program loader in the ROS can share it; hostile input: every malformed file is
//!   an error), and
//!   [`elf::Builder`], which writes small ELF files for tests, fuzz seeds and tools.
//! - [`entry`]: long-mode entry state (GDT, identity page tables) shared by every 64-bit entry.

pub mod acpi;
pub mod entry;
pub mod layout;
pub mod linux;
pub mod mptable;
pub mod multiboot2;

pub use elfview as elf;
use elfview::le;

pub use entry::{BootEntry, SegmentDescriptor};
