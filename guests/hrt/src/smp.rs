//! Brings up the application processors: their APIC IDs from the ACPI MADT, INIT/SIPI/SIPI through
//! the bootstrap processor's xAPIC (MMIO), the real-mode trampoline of boot.rs copied to 0x8000
//! (duet keeps 0x8000-0x8fff free for it). Each AP enters long mode on the kernel's page tables,
//! takes a stack (boot.rs, `lock xadd` on an index), prints `hrt: cpu <apic id> online`, counts
//! itself in (`lock xadd`) and halts. The BSP waits, bounded by the TSC.
//!
//! Standalone only: in a partitioned VM duet starts every HRT core itself and low memory is the
//! ROS's, so `smp` there is hvm::smp. The LAPIC helpers serve both.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::acpi;
use crate::boot::{SPURIOUS_VECTOR, TRAMPOLINE_ADDR, TRAMPOLINE_VECTOR};
use crate::mb2::{self, Info};
use crate::out::Line;

extern "C" {
    static hrt_trampoline_start: u8;
    static hrt_trampoline_end: u8;
}

/// APs that reported in.
#[link_section = ".data.hrt"]
static ONLINE: AtomicU32 = AtomicU32::new(0);
/// The LAPIC's physical address (xAPIC default).
pub const LAPIC_PHYS: u64 = 0xFEE0_0000;
/// The LAPIC's virtual address, for every CPU and the wake-up interrupt (boot.rs): standalone the
/// identity-mapped physical address (the MADT's), in a partitioned VM the LAPIC page in the
/// physical window ([`set_lapic`]).
#[link_section = ".data.hrt"]
#[export_name = "hrt_lapic"]
static LAPIC: AtomicU64 = AtomicU64::new(LAPIC_PHYS);

pub const LAPIC_ID: u64 = 0x20;
pub const LAPIC_TPR: u64 = 0x80;
pub const LAPIC_SVR: u64 = 0xF0;
const LAPIC_ICR_LO: u64 = 0x300;
const LAPIC_ICR_HI: u64 = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0x0000_4500; // INIT, level assert
const ICR_SIPI: u32 = 0x0000_4600; // start-up, level assert

pub fn lapic_read(reg: u64) -> u32 {
    unsafe {
        core::ptr::read_volatile((LAPIC.load(Ordering::Relaxed) + reg) as usize as *const u32)
    }
}

pub fn lapic_write(reg: u64, v: u32) {
    unsafe {
        core::ptr::write_volatile(
            (LAPIC.load(Ordering::Relaxed) + reg) as usize as *mut u32,
            v,
        )
    }
}

/// Sets the LAPIC's virtual address (core 0 of a partitioned VM, before the other cores start).
pub fn set_lapic(vaddr: u64) {
    LAPIC.store(vaddr, Ordering::Release);
}

pub fn rdtsc() -> u64 {
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks per millisecond: KVM's timing leaf 0x40000010 or CPUID 0x15/0x16, else 3 GHz assumed
/// (only delays and the time-out depend on it).
pub fn tsc_per_ms() -> u64 {
    use core::arch::x86_64::__cpuid;
    {
        let hv = __cpuid(0x4000_0000);
        if hv.eax >= 0x4000_0010 && hv.eax < 0x4000_0100 {
            let khz = __cpuid(0x4000_0010).eax as u64;
            if khz != 0 {
                return khz;
            }
        }
        let max = __cpuid(0).eax;
        if max >= 0x15 {
            let l = __cpuid(0x15);
            if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
                return l.ecx as u64 * l.ebx as u64 / l.eax as u64 / 1000;
            }
        }
        if max >= 0x16 {
            let mhz = __cpuid(0x16).eax as u64 & 0xffff;
            if mhz != 0 {
                return mhz * 1000;
            }
        }
    }
    3_000_000
}

fn delay(ticks: u64) {
    let end = rdtsc().wrapping_add(ticks);
    while (end.wrapping_sub(rdtsc()) as i64) > 0 {}
}

/// Software-enables this CPU's LAPIC (SVR bit 8) with the spurious vector 0xFF.
pub fn lapic_enable() {
    lapic_write(LAPIC_SVR, lapic_read(LAPIC_SVR) | 0x100 | SPURIOUS_VECTOR);
}

/// Sends an IPI and waits (bounded) until the LAPIC has taken it.
fn ipi(apic_id: u32, icr: u32) {
    lapic_write(LAPIC_ICR_HI, apic_id << 24);
    lapic_write(LAPIC_ICR_LO, icr);
    let mut spins = 0;
    while lapic_read(LAPIC_ICR_LO) & ICR_PENDING != 0 && spins < 10_000 {
        spins += 1;
    }
}

/// Whether [a, b) overlaps the trampoline page.
fn hits_trampoline(a: u64, b: u64) -> bool {
    a < (TRAMPOLINE_ADDR + 0x1000) as u64 && b > TRAMPOLINE_ADDR as u64
}

/// The `smp` command; returns the exit status.
pub fn run(info: &Info) -> u32 {
    let Some(rsdp) = info.rsdp() else {
        Line::new()
            .s("hrt: smp: no ACPI RSDP in the boot information")
            .print();
        return 1;
    };
    let madt = match acpi::madt(rsdp) {
        Ok(m) => m,
        Err(e) => {
            Line::new().s("hrt: smp: ").s(e).print();
            return 1;
        }
    };
    if madt.lapic == 0 || madt.lapic >= 0xFFFF_F000 || madt.lapic & 0xfff != 0 {
        Line::new()
            .s("hrt: smp: bad local APIC address ")
            .hex(madt.lapic)
            .print();
        return 1;
    }
    // The trampoline page must be free: the loader keeps it so (checked, not trusted).
    let mut clash = hits_trampoline(info.addr, info.addr + info.size() as u64);
    for (typ, tag) in info.tags() {
        if typ == mb2::TAG_MODULE {
            if let Some(m) = mb2::module(tag) {
                clash |= hits_trampoline(m.start as u64, m.end as u64);
            }
        }
    }
    if clash {
        Line::new()
            .s("hrt: smp: the trampoline page ")
            .hex(TRAMPOLINE_ADDR as u64)
            .s(" is in use")
            .print();
        return 1;
    }
    LAPIC.store(madt.lapic, Ordering::Relaxed);
    lapic_enable();
    let bsp = lapic_read(LAPIC_ID) >> 24;
    let cpus = madt.ids.get(..madt.count).unwrap_or(&[]);
    Line::new()
        .s("hrt: smp: ")
        .dec(cpus.len() as u64)
        .s(" cpus in the MADT, bsp apic id ")
        .dec(bsp as u64)
        .print();

    unsafe {
        let start = &hrt_trampoline_start as *const u8;
        let len = (&hrt_trampoline_end as *const u8 as usize) - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len);
    }

    let ms = tsc_per_ms();
    let mut aps = 0u32;
    for &id in cpus {
        if id == bsp {
            continue;
        }
        if id > 0xfe {
            Line::new()
                .s("hrt: smp: apic id ")
                .dec(id as u64)
                .s(" needs x2APIC, skipped")
                .print();
            continue;
        }
        aps += 1;
        ipi(id, ICR_INIT);
    }
    delay(10 * ms);
    for sipi in 0..2 {
        for &id in cpus {
            if id != bsp && id <= 0xfe {
                ipi(id, ICR_SIPI | TRAMPOLINE_VECTOR);
            }
        }
        if sipi == 0 {
            delay(ms / 5);
        }
    }
    // Ring 0 is emulated on PVM hosts: give the APs plenty of time.
    let deadline = rdtsc().wrapping_add(5000 * ms);
    while ONLINE.load(Ordering::Acquire) < aps && (deadline.wrapping_sub(rdtsc()) as i64) > 0 {}
    let online = 1 + ONLINE.load(Ordering::Acquire);
    Line::new()
        .s("hrt: smp: ")
        .dec(online as u64)
        .s(" cpus online")
        .print();
    if online as usize == cpus.len() {
        0
    } else {
        Line::new()
            .s("hrt: smp: expected ")
            .dec(cpus.len() as u64)
            .print();
        1
    }
}

/// An application processor in long mode, on its own stack (boot.rs).
#[no_mangle]
extern "C" fn hrt_ap_main(_index: u32) {
    crate::idt::load();
    let id = lapic_read(LAPIC_ID) >> 24;
    Line::new()
        .s("hrt: cpu ")
        .dec(id as u64)
        .s(" online")
        .print();
    ONLINE.fetch_add(1, Ordering::AcqRel);
}
