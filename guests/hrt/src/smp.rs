//! The `smp` command. Standalone ([`run`]): brings up the application processors: their APIC IDs
//! from the ACPI MADT, INIT/SIPI/SIPI through the bootstrap processor's xAPIC (MMIO), the real-mode
//! trampoline of boot.rs copied to 0x8000 (duet keeps 0x8000-0x8fff free for it). Each AP enters
//! long mode on the kernel's page tables, takes a stack (boot.rs, `lock xadd` on an index), prints
//! `hrt: cpu <apic id> online`, counts itself in (`lock xadd`) and halts. The BSP waits, bounded by
//! the TSC.
//!
//! In a partitioned VM ([`run_partitioned`]) duet starts every HRT core itself and low memory is
//! the ROS's: the command only reports the cores of the partition.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::acpi::{self, Madt};
use crate::boot::{TRAMPOLINE_ADDR, TRAMPOLINE_VECTOR};
use crate::mb2::{self, Info};
use crate::out::Line;
use crate::tsc::{delay, rdtsc, tsc_per_ms};
use crate::{idt, lapic, partition};

extern "C" {
    static hrt_trampoline_start: u8;
    static hrt_trampoline_end: u8;
}

/// APs that reported in.
#[link_section = ".data.hrt"]
static ONLINE: AtomicU32 = AtomicU32::new(0);

/// Whether [a, b) overlaps the trampoline page.
fn hits_trampoline(a: u64, b: u64) -> bool {
    a < (TRAMPOLINE_ADDR + 0x1000) as u64 && b > TRAMPOLINE_ADDR as u64
}

/// The `smp` command, standalone; returns the exit status.
pub fn run(info: &Info) -> u32 {
    let Some(madt) = find_madt(info) else { return 1 };
    if !trampoline_page_free(info) {
        return 1;
    }
    // SAFETY: standalone, the MADT's LAPIC address (checked: page-aligned, below 4 GiB - 4 KiB) is
    // identity-mapped by the boot page tables, uncached from 3 GiB, where the LAPIC lives.
    unsafe { lapic::set_base(madt.lapic) };
    lapic::enable();
    let bsp = lapic::apic_id();
    let cpus = madt.ids.get(..madt.count).unwrap_or(&[]);
    Line::new()
        .s("hrt: smp: ")
        .dec(cpus.len() as u64)
        .s(" cpus in the MADT, bsp apic id ")
        .dec(bsp as u64)
        .print();
    copy_trampoline();
    let ms = tsc_per_ms();
    let aps = start_aps(cpus, bsp, ms);
    // Ring 0 is emulated on PVM hosts: give the APs plenty of time.
    let deadline = rdtsc().wrapping_add(5000 * ms);
    while ONLINE.load(Ordering::Acquire) < aps && (deadline.wrapping_sub(rdtsc()) as i64) > 0 {}
    report_online(1 + ONLINE.load(Ordering::Acquire), cpus.len())
}

/// The MADT through the boot information's RSDP, with a usable LAPIC address; `None` (reported)
/// if there is none.
fn find_madt(info: &Info) -> Option<Madt> {
    let Some(rsdp) = info.rsdp() else {
        Line::new()
            .s("hrt: smp: no ACPI RSDP in the boot information")
            .print();
        return None;
    };
    let madt = match acpi::madt(rsdp) {
        Ok(m) => m,
        Err(e) => {
            Line::new().s("hrt: smp: ").s(e).print();
            return None;
        }
    };
    if madt.lapic == 0 || madt.lapic >= 0xFFFF_F000 || madt.lapic & 0xfff != 0 {
        Line::new()
            .s("hrt: smp: bad local APIC address ")
            .hex(madt.lapic)
            .print();
        return None;
    }
    Some(madt)
}

/// Whether the trampoline page is free of the boot information and the modules: the loader keeps
/// it so (checked, not trusted). Reported if not.
fn trampoline_page_free(info: &Info) -> bool {
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
    }
    !clash
}

/// Copies the AP trampoline (boot.rs) to [`TRAMPOLINE_ADDR`].
fn copy_trampoline() {
    // SAFETY: the symbols bound the trampoline's bytes (.rodata, well under 4 KiB); its page
    // 0x8000-0x8fff is identity-mapped (standalone), holds no Rust object (the kernel starts at
    // 2 MiB) and, as `run` checked first, neither the boot information nor a module.
    unsafe {
        let start = &hrt_trampoline_start as *const u8;
        let len = (&hrt_trampoline_end as *const u8 as usize) - start as usize;
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE_ADDR as *mut u8, len);
    }
}

/// INIT, 10 ms, SIPI, 200 µs, SIPI to every CPU in `cpus` but the BSP and those that need x2APIC
/// (reported, skipped). Returns the APs started.
fn start_aps(cpus: &[u32], bsp: u32, ms: u64) -> u32 {
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
        lapic::ipi(id, lapic::ICR_INIT);
    }
    delay(10 * ms);
    for sipi in 0..2 {
        for &id in cpus {
            if id != bsp && id <= 0xfe {
                lapic::ipi(id, lapic::ICR_SIPI | TRAMPOLINE_VECTOR);
            }
        }
        if sipi == 0 {
            delay(ms / 5);
        }
    }
    aps
}

/// Prints how many CPUs are online (and, if not all, how many were expected); the status.
fn report_online(online: u32, expected: usize) -> u32 {
    Line::new()
        .s("hrt: smp: ")
        .dec(online as u64)
        .s(" cpus online")
        .print();
    if online as usize == expected {
        0
    } else {
        Line::new()
            .s("hrt: smp: expected ")
            .dec(expected as u64)
            .print();
        1
    }
}

/// An application processor in long mode, on its own stack (boot.rs).
#[no_mangle]
extern "C" fn hrt_ap_main(_index: u32) {
    idt::load();
    let id = lapic::apic_id();
    Line::new()
        .s("hrt: cpu ")
        .dec(id as u64)
        .s(" online")
        .print();
    ONLINE.fetch_add(1, Ordering::AcqRel);
}

/// The `smp` command in a partitioned VM: duet started the cores (no trampoline: low memory is
/// the ROS's); reports them from the HVM tag. Runs after every core reached the service loop.
pub fn run_partitioned() -> u32 {
    let info = &partition::get().info;
    let ids = info.hrt_apic_ids.get(..info.hrt_cores as usize).unwrap_or(&[]);
    Line::new()
        .s("hrt: smp: ")
        .dec(ids.len() as u64)
        .s(" cpus in the hvm information, bsp apic id ")
        .dec(ids.first().copied().unwrap_or(0) as u64)
        .print();
    for id in ids.iter().skip(1) {
        Line::new().s("hrt: cpu ").dec(*id as u64).s(" online").print();
    }
    report_online(partition::serving() + 1, ids.len())
}
