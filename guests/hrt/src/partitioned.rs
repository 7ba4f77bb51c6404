//! The HRT's entry in a partitioned VM (duet's HVM mode; the contract is abi and
//! docs/hypercalls.md).
//!
//! duet starts every HRT core at once at `hrt_entry64` (boot.rs) in long mode on its own page
//! tables: the kernel's high half (KERNEL_VBASE + physical) maps the HRT partition, and all guest
//! memory is identity-mapped and mapped again at [`PHYS_MAP_BASE`] (the HVM tag asks for it). The
//! kernel reaches physical memory only through that window (comm page, completion records, ROS
//! buffers, the LAPIC, the boot information, its PML4) and runs on its own GDT: PML4 entries
//! 0-255, where the identity map lives, belong to a ROS process after an address-space merge
//! ([`abi::FUNC_MERGE`]). Core 0 ([`hrt_partitioned_main`]) sets up the IDT, reads the Multiboot2
//! information and its HVM tag (the partition: cores, RAM ranges, comm page), fills the canary
//! page, enables its LAPIC and lets the other cores go (`hrt_partitioned_go`); each of them
//! ([`hrt_partitioned_core`]) loads the IDT, enables its LAPIC and enters the service loop
//! (service.rs). When every core is there, core 0 runs the command line's command (if any), makes
//! hypercall HRT_READY and serves invokes too.

use core::sync::atomic::{AtomicU32, Ordering};

use abi::{client, slot, HvmInfo, Op};

use crate::boot::{KERNEL_VBASE, MAX_APS, PHYS_MAP_BASE, WAKE_VECTOR};
use crate::mb2::{self, Info};
use crate::out::Line;
use crate::partition::{self, in_range, pv, Partition};
use crate::tsc::{rdtsc, tsc_per_ms};
use crate::{canary, commands, cpu, idt, lapic, port, service, user};

/// How long core 0 waits for the other cores to reach the service loop.
const IDLE_TIMEOUT_MS: u64 = 10_000;
/// The boot information must lie below this physical address (64 TiB: the physical window and the
/// identity map cover all guest RAM, and nothing larger fits the window).
const INFO_LIMIT: u64 = 1 << 46;

/// Set (release) by core 0 when the IDT and the partition description are ready; the other cores
/// spin on it in `hrt_entry64` before they take a stack.
#[export_name = "hrt_partitioned_go"]
static GO: AtomicU32 = AtomicU32::new(0);

/// Guest-physical address of a kernel virtual address (high half: duet maps KERNEL_VBASE + x
/// onto hrt_base + x).
fn phys(vaddr: u64, hrt_base: u64) -> u64 {
    vaddr.wrapping_sub(KERNEL_VBASE).wrapping_add(hrt_base)
}

fn fail(what: &str, v: u64) -> ! {
    Line::new().s("hrt: hvm: ").s(what).hex(v).print();
    port::exit(4)
}

/// Core 0, on the BSP stack (boot.rs): RDI = boot information, RSI = 0, RDX = APIC ID.
#[no_mangle]
extern "C" fn hrt_partitioned_main(info_addr: u64, core: u64, apic: u64) -> ! {
    port::mark(3);
    user::init_core(0);
    idt::init();
    // No serial::init(): the UART needs no programming under duet, and reprogramming one the
    // ROS might also drive (IER, LCR, FIFO) would disturb it.
    let (info, hvm) = read_boot_information(info_addr);
    // SAFETY: duet maps all guest memory, 3-4 GiB uncached, at PHYS_MAP_BASE (checked in
    // read_boot_information), so the LAPIC page is there for every core; set before they go.
    unsafe { lapic::set_base(pv(lapic::PHYS)) };
    print_partition(&hvm, core, apic);
    check_partition(&hvm);
    // duet sends the vector our header tag names; it tells us which one, so serve that one.
    let wake = if (32..=254).contains(&hvm.wake_vector) { hvm.wake_vector } else { WAKE_VECTOR };
    let canary = phys(canary::vaddr(), hvm.hrt_ram.base);
    Line::new()
        .s("hrt: hvm: comm page ")
        .hex(hvm.comm_page)
        .s(" wake vector ")
        .hex(wake as u64)
        .s(" canary page ")
        .hex(canary)
        .print();
    canary::fill();
    idt::init_interrupts(wake);
    // SAFETY: core 0, once, before any partition::get() and before GO below.
    unsafe { partition::set(Partition { info: hvm, canary }) };
    lapic::write(lapic::TPR, 0);
    lapic::enable();
    GO.store(1, Ordering::Release);
    wait_for_cores(&hvm);
    if let Some(status) = commands::run(&info, true) {
        if status != 0 {
            Line::new().s("hrt: hvm: command status ").dec(status as u64).s(", serving invokes anyway").print();
        }
    }
    // SAFETY: ring 0 may use the hypercall port; HRT_READY takes no arguments and makes duet write
    // no memory.
    match unsafe { client::hypercall(Op::HrtReady, [0; 5]) } {
        Ok(_) => Line::new().s("hrt: hvm: ready").print(),
        Err(e) => Line::new().s("hrt: hvm: HRT_READY failed: ").s(e.name()).print(),
    }
    service::serve(0)
}

/// The boot information at `info_addr` and its HVM tag, through the physical window. The tag is
/// read through the identity map first (it is there at the entry), to check that duet mapped the
/// physical window; from then on everything goes through the window. Exits (4) on any error.
fn read_boot_information(info_addr: u64) -> (Info, HvmInfo) {
    let read = |offset: u64| {
        // SAFETY: `info_addr` is what duet passed in RDI (its boot information, which nobody writes
        // while the HRT runs); duet maps all guest memory (below INFO_LIMIT) at 0 when the HRT is
        // entered, and at PHYS_MAP_BASE once the tag said so (the second read).
        let Some(info) = (unsafe { Info::new(info_addr, INFO_LIMIT, offset) }) else {
            Line::new().s("hrt: bad multiboot2 boot information at ").hex(info_addr).print();
            port::exit(4)
        };
        let Some(tag) = info.find(mb2::TAG_HVM) else {
            fail("no HVM information tag in the boot information at ", info_addr)
        };
        let Some(hvm) = tag.get(8..).and_then(HvmInfo::decode) else {
            fail("bad HVM information tag, size ", tag.len() as u64)
        };
        (info, hvm)
    };
    let (_, hvm) = read(0);
    if hvm.phys_map_base != PHYS_MAP_BASE {
        fail("duet did not map the physical window asked for; phys_map_base ", hvm.phys_map_base)
    }
    read(PHYS_MAP_BASE)
}

/// Core 0's lines about the partition: this core, the HRT's cores and RAM, the ROS's RAM and cores.
fn print_partition(hvm: &HvmInfo, core: u64, apic: u64) {
    let cores = hvm.hrt_cores;
    Line::new()
        .s("hrt: hvm: 64-bit entry, core ")
        .dec(core)
        .s(" of ")
        .dec(cores as u64)
        .s(" (apic id ")
        .dec(apic)
        .s(")")
        .print();
    {
        let mut line = Line::new();
        line.s("hrt: hvm: hrt cores ").dec(cores as u64).s(" apic ids ");
        for (i, id) in hvm.hrt_apic_ids.iter().take(cores as usize).enumerate() {
            if i > 0 {
                line.s(",");
            }
            line.dec(*id as u64);
        }
        line.print();
    }
    Line::new()
        .s("hrt: hvm: hrt ram base=")
        .hex(hvm.hrt_ram.base)
        .s(" length=")
        .hex(hvm.hrt_ram.len)
        .print();
    for r in hvm.ros_ram.iter().filter(|r| r.len != 0) {
        Line::new().s("hrt: hvm: ros ram base=").hex(r.base).s(" length=").hex(r.len).print();
    }
    Line::new().s("hrt: hvm: ros cores ").dec(hvm.ros_cores as u64).print();
}

/// Exits (4) unless the partition is one the kernel can serve: 1-64 cores, the comm page's slots
/// 64-aligned in HRT RAM.
fn check_partition(hvm: &HvmInfo) {
    let cores = hvm.hrt_cores;
    if cores == 0 || cores as usize > MAX_APS + 1 {
        fail("unusable HRT core count ", cores as u64)
    }
    let slots = slot::SIZE * cores as u64;
    if !hvm.comm_page.is_multiple_of(slot::SIZE) || !in_range(&hvm.hrt_ram, hvm.comm_page, slots) {
        fail("comm page outside HRT RAM or misaligned: ", hvm.comm_page)
    }
}

/// Waits (bounded: ring 0 is emulated on PVM hosts) until every other core is in the service loop;
/// exits (1) if they are not all there in time.
fn wait_for_cores(hvm: &HvmInfo) {
    let cores = hvm.hrt_cores;
    let ms = if hvm.tsc_khz != 0 { hvm.tsc_khz } else { tsc_per_ms() };
    let deadline = rdtsc().wrapping_add(IDLE_TIMEOUT_MS * ms);
    while partition::serving() < cores - 1 && (deadline.wrapping_sub(rdtsc()) as i64) > 0 {
        core::hint::spin_loop();
    }
    let serving = partition::serving() + 1;
    if serving < cores {
        Line::new()
            .s("hrt: hvm: only ")
            .dec(serving as u64)
            .s(" of ")
            .dec(cores as u64)
            .s(" cores reached the service loop")
            .print();
        port::exit(1)
    }
}

/// Core `core` > 0 (boot.rs, after [`GO`]), on its own stack.
#[no_mangle]
extern "C" fn hrt_partitioned_core(core: u32, _apic: u32) -> ! {
    user::init_core(core);
    idt::load();
    if core >= partition::get().info.hrt_cores {
        // Not a core of the partition duet described: stay out of the way.
        cpu::halt()
    }
    lapic::write(lapic::TPR, 0);
    lapic::enable();
    partition::count_serving();
    service::serve(core)
}
