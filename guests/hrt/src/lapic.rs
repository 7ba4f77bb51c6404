//! The local APIC (xAPIC, MMIO) of the running core: its virtual address and the accessors that the
//! standalone `smp` command (start-up IPIs) and a partitioned VM's cores (enable, TPR, ID) share.
//! The wake-up interrupt's handler (boot.rs) reads the address too, as `hrt_lapic`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::boot::SPURIOUS_VECTOR;

/// The LAPIC's physical address (xAPIC default).
pub const PHYS: u64 = 0xFEE0_0000;
/// The LAPIC's virtual address, for every CPU and the wake-up interrupt (boot.rs): standalone the
/// identity-mapped physical address (the MADT's), in a partitioned VM the LAPIC page in the
/// physical window ([`set_base`]).
#[link_section = ".data.hrt"]
#[export_name = "hrt_lapic"]
static LAPIC: AtomicU64 = AtomicU64::new(PHYS);

/// A LAPIC register: its offset in the page (16-aligned, below 4 KiB). Only the constants below.
#[derive(Clone, Copy)]
pub struct Reg(u64);

pub const ID: Reg = Reg(0x20);
pub const TPR: Reg = Reg(0x80);
pub const SVR: Reg = Reg(0xF0);
const ICR_LO: Reg = Reg(0x300);
const ICR_HI: Reg = Reg(0x310);
const ICR_PENDING: u32 = 1 << 12;
/// INIT, level assert.
pub const ICR_INIT: u32 = 0x0000_4500;
/// Start-up, level assert (| the vector).
pub const ICR_SIPI: u32 = 0x0000_4600;

/// Where register `reg` is mapped.
fn at(reg: Reg) -> *mut u32 {
    (LAPIC.load(Ordering::Relaxed) + reg.0) as usize as *mut u32
}

pub fn read(reg: Reg) -> u32 {
    // SAFETY: LAPIC maps this core's LAPIC page (its initial value standalone, where the boot
    // page tables identity-map 3-4 GiB uncached; else what `set_base`'s caller guaranteed), and
    // `reg` is a register inside it: an aligned 32-bit MMIO read, no Rust object there.
    unsafe { core::ptr::read_volatile(at(reg)) }
}

pub fn write(reg: Reg, v: u32) {
    // SAFETY: as in `read`: an aligned 32-bit MMIO write to a register of this core's LAPIC.
    unsafe { core::ptr::write_volatile(at(reg), v) }
}

/// Sets the LAPIC's virtual address: standalone `smp` (the MADT's), core 0 of a partitioned VM
/// (the physical window's), before any other core uses it.
///
/// # Safety
/// `vaddr` must map the LAPIC page, uncached, for every core that uses the LAPIC from then on
/// (each core sees its own LAPIC there).
pub unsafe fn set_base(vaddr: u64) {
    LAPIC.store(vaddr, Ordering::Release);
}

/// This core's APIC ID (xAPIC: bits 24-31 of the ID register).
pub fn apic_id() -> u32 {
    read(ID) >> 24
}

/// Software-enables this CPU's LAPIC (SVR bit 8) with the spurious vector 0xFF.
pub fn enable() {
    write(SVR, read(SVR) | 0x100 | SPURIOUS_VECTOR);
}

/// Sends an IPI and waits (bounded) until the LAPIC has taken it.
pub fn ipi(apic_id: u32, icr: u32) {
    write(ICR_HI, apic_id << 24);
    write(ICR_LO, icr);
    let mut spins = 0;
    while read(ICR_LO) & ICR_PENDING != 0 && spins < 10_000 {
        spins += 1;
    }
}
