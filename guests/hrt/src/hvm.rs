//! The HRT in a partitioned VM ("HVM"; the contract is abi and docs/hypercalls.md).
//!
//! duet starts every HRT core at once at `hrt_entry64` (boot.rs) in long mode on its own page
//! tables: the kernel's high half (KERNEL_VBASE + physical) maps the HRT partition, and all guest
//! memory is identity-mapped and mapped again at [`PHYS_MAP_BASE`] (the HVM tag asks for it). The
//! kernel reaches physical memory only through that window (comm page, completion records, ROS
//! buffers, the LAPIC, the boot information, its PML4) and runs on its own GDT: PML4 entries
//! 0-255, where the identity map lives, belong to a ROS process after an address-space merge
//! ([`FUNC_MERGE`]). Core 0 ([`hrt_hvm_main`]) sets up the IDT, reads the Multiboot2
//! information and its HVM tag (the partition: cores, RAM ranges, comm page), fills the canary
//! page, enables its LAPIC and lets the other cores go (`hrt_hvm_go`); each of them
//! ([`hrt_hvm_core`]) loads the IDT, enables its LAPIC and enters the service loop. When every core
//! is there, core 0 runs the command line's command (if any), makes hypercall HRT_READY and serves
//! invokes too.
//!
//! The service loop ([`serve`]): with interrupts off, compare the core's invoke slot's `seq` and
//! `done`; if they differ run the function, write `result`, `done = seq`, the caller's completion
//! record and (if asked) hypercall INVOKE_DONE; else `sti; hlt` until the wake-up interrupt
//! (whose handler only sends the EOI). The kernel writes no memory outside its partition except
//! completion records (checked to lie in ROS RAM), invoke function 8's pong word, invoke
//! function 10's sample buffer and invoke function 11's response line (all checked the same way),
//! the word function 13 flips in a merged process (found by walking the page tables), the producer's
//! side of function 14's forwarding channel in a merged process (every page walked first) and, on
//! merge and unmerge, PML4 entries 0-255 of duet's page tables.

use core::arch::asm;
use core::mem::MaybeUninit;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, AtomicU32, Ordering};

use abi::{client, func, slot, HvmInfo, MemRange, Op, FUNC_MERGE, FUNC_UNMERGE, INVOKE_NOTIFY};

use crate::boot::{KERNEL_VBASE, MAX_APS, PHYS_MAP_BASE, WAKE_VECTOR};
use crate::mb2::{self, Info};
use crate::out::Line;
use crate::smp::{lapic_enable, lapic_read, lapic_write, rdtsc, set_lapic, tsc_per_ms, LAPIC_ID, LAPIC_PHYS, LAPIC_TPR};
use crate::{fwd, idt, merge, port, user};

/// How long core 0 waits for the other cores to reach the service loop.
const IDLE_TIMEOUT_MS: u64 = 10_000;
/// The boot information must lie below this physical address (64 TiB: the physical window and the
/// identity map cover all guest RAM, and nothing larger fits the window).
const INFO_LIMIT: u64 = 1 << 46;

/// Set (release) by core 0 when the IDT and [`PARTITION`] are ready; the other cores spin on it in
/// `hrt_entry64` before they take a stack.
#[export_name = "hrt_hvm_go"]
static GO: AtomicU32 = AtomicU32::new(0);
/// Cores other than 0 that reached the service loop.
static IDLE: AtomicU32 = AtomicU32::new(0);

/// The partition as core 0 read it; written once before [`GO`], read-only after.
static mut PARTITION: MaybeUninit<Partition> = MaybeUninit::uninit();

#[derive(Clone, Copy)]
pub(crate) struct Partition {
    pub info: HvmInfo,
    /// Guest-physical address of [`CANARY_PAGE`].
    canary: u64,
}

/// The partition description. Only after [`GO`] (core 0: after it stored it).
pub(crate) fn partition() -> &'static Partition {
    unsafe { (*core::ptr::addr_of!(PARTITION)).assume_init_ref() }
}

/// A page of [`func::CANARY_WORD`] words in HRT RAM (bss): the ROS must be unable to change it.
#[repr(C, align(4096))]
struct Page([u64; 512]);
static mut CANARY_PAGE: Page = Page([0; 512]);

fn canary_words() -> *mut u64 {
    unsafe { core::ptr::addr_of_mut!(CANARY_PAGE.0) as *mut u64 }
}

/// The virtual address of guest-physical `pa` in the physical window.
pub(crate) fn pv(pa: u64) -> u64 {
    PHYS_MAP_BASE.wrapping_add(pa)
}

/// Guest-physical address of a kernel virtual address (high half: duet maps KERNEL_VBASE + x
/// onto hrt_base + x).
fn phys(vaddr: u64, hrt_base: u64) -> u64 {
    vaddr.wrapping_sub(KERNEL_VBASE).wrapping_add(hrt_base)
}

fn in_range(r: &MemRange, addr: u64, len: u64) -> bool {
    r.len != 0 && addr >= r.base && addr.checked_add(len).is_some_and(|end| end <= r.base.saturating_add(r.len))
}

/// Whether [addr, addr + len) lies wholly in one of the ROS's RAM ranges.
pub(crate) fn in_ros_ram(addr: u64, len: u64) -> bool {
    partition().info.ros_ram.iter().any(|r| in_range(r, addr, len))
}

/// Whether [addr, addr + len) lies wholly in one RAM range, the ROS's or the HRT's (not MMIO, not
/// beyond the physical window).
pub(crate) fn in_ram(addr: u64, len: u64) -> bool {
    in_ros_ram(addr, len) || in_range(&partition().info.hrt_ram, addr, len)
}

fn fail(what: &str, v: u64) -> ! {
    Line::new().s("hrt: hvm: ").s(what).hex(v).print();
    port::exit(4)
}

/// Core 0, on the BSP stack (boot.rs): RDI = boot information, RSI = 0, RDX = APIC ID.
#[no_mangle]
extern "C" fn hrt_hvm_main(info_addr: u64, core: u64, apic: u64) -> ! {
    port::mark(3);
    user::init_core(0);
    idt::init();
    // No serial::init(): the UART needs no programming under duet, and reprogramming one the
    // ROS might also drive (IER, LCR, FIFO) would disturb it.
    // The HVM tag is read through the identity map first (it is there at the entry), to check that
    // duet mapped the physical window; from then on everything goes through the window.
    let read = |offset: u64| {
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
    let (info, hvm) = read(PHYS_MAP_BASE);
    set_lapic(pv(LAPIC_PHYS));
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
    if cores == 0 || cores as usize > MAX_APS + 1 {
        fail("unusable HRT core count ", cores as u64)
    }
    let slots = slot::SIZE * cores as u64;
    if !hvm.comm_page.is_multiple_of(slot::SIZE) || !in_range(&hvm.hrt_ram, hvm.comm_page, slots) {
        fail("comm page outside HRT RAM or misaligned: ", hvm.comm_page)
    }
    // duet sends the vector our header tag names; it tells us which one, so serve that one.
    let wake = if (32..=254).contains(&hvm.wake_vector) { hvm.wake_vector } else { WAKE_VECTOR };
    let canary = phys(canary_words() as u64, hvm.hrt_ram.base);
    Line::new()
        .s("hrt: hvm: comm page ")
        .hex(hvm.comm_page)
        .s(" wake vector ")
        .hex(wake as u64)
        .s(" canary page ")
        .hex(canary)
        .print();

    for i in 0..512 {
        unsafe { write_volatile(canary_words().add(i), func::CANARY_WORD) };
    }
    idt::init_interrupts(wake);
    unsafe { (*core::ptr::addr_of_mut!(PARTITION)).write(Partition { info: hvm, canary }) };
    lapic_write(LAPIC_TPR, 0);
    lapic_enable();
    GO.store(1, Ordering::Release);

    // Wait (bounded: ring 0 is emulated on PVM hosts) until every other core is in the loop.
    let ms = if hvm.tsc_khz != 0 { hvm.tsc_khz } else { tsc_per_ms() };
    let deadline = rdtsc().wrapping_add(IDLE_TIMEOUT_MS * ms);
    while IDLE.load(Ordering::Acquire) < cores - 1 && (deadline.wrapping_sub(rdtsc()) as i64) > 0 {
        core::hint::spin_loop();
    }
    let idle = IDLE.load(Ordering::Acquire) + 1;
    if idle < cores {
        Line::new()
            .s("hrt: hvm: only ")
            .dec(idle as u64)
            .s(" of ")
            .dec(cores as u64)
            .s(" cores reached the service loop")
            .print();
        port::exit(1)
    }

    if let Some(status) = crate::command(&info, true) {
        if status != 0 {
            Line::new().s("hrt: hvm: command status ").dec(status as u64).s(", serving invokes anyway").print();
        }
    }
    match unsafe { client::hypercall(Op::HrtReady, [0; 5]) } {
        Ok(_) => Line::new().s("hrt: hvm: ready").print(),
        Err(e) => Line::new().s("hrt: hvm: HRT_READY failed: ").s(e.name()).print(),
    }
    serve(0)
}

/// Core `core` > 0 (boot.rs, after [`GO`]), on its own stack.
#[no_mangle]
extern "C" fn hrt_hvm_core(core: u32, _apic: u32) -> ! {
    user::init_core(core);
    idt::load();
    if core >= partition().info.hrt_cores {
        // Not a core of the partition duet described: stay out of the way.
        crate::halt()
    }
    lapic_write(LAPIC_TPR, 0);
    lapic_enable();
    IDLE.fetch_add(1, Ordering::AcqRel);
    serve(core)
}

/// The service loop of one core (contract "Invoke").
fn serve(core: u32) -> ! {
    let base = pv(partition().info.comm_page + slot::SIZE * core as u64);
    let read = |off: u64| unsafe { read_volatile((base + off) as *const u64) };
    let write = |off: u64, v: u64| unsafe { write_volatile((base + off) as *mut u64, v) };
    loop {
        unsafe { asm!("cli", options(nomem, nostack)) };
        let seq = read(slot::SEQ);
        if seq == read(slot::DONE) {
            // Atomic pair: an interrupt that arrives after the check ends the hlt. Not `nostack`:
            // the interrupt frame is pushed on this stack.
            unsafe { asm!("sti", "hlt") };
            continue;
        }
        fence(Ordering::Acquire);
        let (function, arg) = (read(slot::FUNC), read(slot::ARG));
        let (completion, flags) = (read(slot::COMPLETION), read(slot::FLAGS));
        let result = if touches_merged_memory(function) {
            // Functions that touch a merged process's memory: survive its going away.
            user::guarded(core, &mut || invoke(core, function, arg)).unwrap_or_else(|| {
                fwd::detach(core);
                fwd::FORWARD_GONE
            })
        } else {
            invoke(core, function, arg)
        };
        write(slot::RESULT, result);
        fence(Ordering::Release);
        write(slot::DONE, seq);
        if completion != 0 {
            complete(core, completion, seq, result);
        }
        fwd::invoke_done(core);
        if flags & INVOKE_NOTIFY != 0 {
            let _ = unsafe { client::hypercall(Op::InvokeDone, [core as u64, 0, 0, 0, 0]) };
        }
    }
}

/// The functions that use a merged process's memory through its own (merged) mappings, so that a
/// page fault there means the process went away: the forwarding family and split execution.
fn touches_merged_memory(function: u64) -> bool {
    matches!(
        function,
        func::FWD_GETPID
            | func::FWD_ATTACH
            | func::FWD_DETACH
            | func::SPLIT
            | func::FWD_STRESS
            | func::FWD_CORRUPT
            | func::FWD_TIMED
    )
}

/// Writes the caller's Completion {seq, result}: result first, then seq (release). Only inside
/// ROS RAM: the kernel writes nothing else outside its partition.
fn complete(core: u32, addr: u64, seq: u64, result: u64) {
    if !addr.is_multiple_of(8) || !in_ros_ram(addr, 16) {
        Line::new()
            .s("hrt: hvm: core ")
            .dec(core as u64)
            .s(": completion record ")
            .hex(addr)
            .s(" is not in ROS RAM, not written")
            .print();
        return;
    }
    unsafe {
        write_volatile(pv(addr + 8) as *mut u64, result);
        fence(Ordering::Release);
        write_volatile(pv(addr) as *mut u64, seq);
    }
}

/// duet's invoke functions (contract "duet's HRT invoke functions").
fn invoke(core: u32, function: u64, arg: u64) -> u64 {
    match function {
        func::ECHO => arg,
        func::ADD_ONE => arg.wrapping_add(1),
        func::CANARY_CHECK => canary_check(),
        func::CANARY_ADDRESS => partition().canary,
        func::PAGE_FAULT => {
            crate::fault();
            u64::MAX
        }
        func::TRIPLE_FAULT => idt::triple_fault(),
        func::HANG => crate::halt(),
        func::APIC_ID => (lapic_read(LAPIC_ID) >> 24) as u64,
        func::PING_PONG => ping_pong(arg, false),
        func::RDTSC => rdtsc(),
        func::HYPERCALL_BENCH => hypercall_bench(arg),
        func::CHANNEL => channel(arg),
        func::READ_USER => merge::user_read_u64(arg).unwrap_or(func::NOT_MAPPED),
        func::FLIP_USER => merge::flip(arg),
        func::FWD_GETPID => fwd::getpid(core, arg),
        func::FWD_ATTACH => fwd::attach(core, arg),
        func::FWD_DETACH => fwd::detach(core),
        func::SPLIT => fwd::split(core, arg),
        func::FWD_STRESS => fwd::stress(core, arg),
        func::FWD_CORRUPT => fwd::corrupt(core),
        func::FWD_TIMED => fwd::timed(core, arg),
        func::RING_ROS_DOORBELL => ring_ros_doorbell(core),
        func::WAIT_INTERRUPTS => wait_interrupts(arg),
        func::DOORBELL_PONG => ping_pong(arg, true),
        FUNC_MERGE => merge::merge(arg),
        FUNC_UNMERGE => {
            fwd::detach(core);
            merge::unmerge()
        }
        _ => func::UNKNOWN,
    }
}

/// Function 20: rings the ROS doorbell with this core's index (duet puts the index, as one byte,
/// into the ROS's doorbell UART). Returns 0.
fn ring_ros_doorbell(core: u32) -> u64 {
    port::outl(abi::ROS_DOORBELL_PORT, core);
    0
}

/// Function 21: waits for `n` (1..=1000) interrupts, each `sti; hlt; cli` (the wake-up vector's
/// handler only sends the EOI), so the call completes only after `n` wake-ups: the HRT doorbell
/// test rings until it does. Returns `n`, or u64::MAX for `n` out of range.
fn wait_interrupts(n: u64) -> u64 {
    if !(1..=1000).contains(&n) {
        return u64::MAX;
    }
    for _ in 0..n {
        unsafe { asm!("sti", "hlt", "cli") };
    }
    n
}

/// [`func::CANARY_WORD`] if every word of the canary page still holds it, else 0.
fn canary_check() -> u64 {
    for i in 0..512 {
        if unsafe { read_volatile(canary_words().add(i)) } != func::CANARY_WORD {
            return 0;
        }
    }
    func::CANARY_WORD
}

/// Function 8: `addr` = guest-physical address of 128 bytes of ROS RAM, u64 ping at +0 and pong at
/// +64 (separate cache lines). Waits for ping to change (last seen starts at 0: the caller zeroes
/// both first); u64::MAX ends the game and returns the rounds played; any other value is echoed to
/// pong. u64::MAX at once if the region is not 8-aligned ROS RAM.
///
/// Function 23 (`sleep`): the same, but the core sleeps (`sti; hlt`) whenever ping has not
/// changed, so each round needs the ROS to ring this core's HRT doorbell after writing ping: the
/// doorbell's round trip (ioeventfd in the ROS's VM, irqfd into the HRT's, a halted vCPU woken)
/// plus a ping-pong. Interrupts stay off while ping is read, so a ring between the read and the
/// `hlt` is not lost.
fn ping_pong(addr: u64, sleep: bool) -> u64 {
    if !addr.is_multiple_of(8) || !in_ros_ram(addr, 128) {
        return u64::MAX;
    }
    let (ping, pong) = (pv(addr) as *const u64, pv(addr + 64) as *mut u64);
    let (mut last, mut rounds) = (0u64, 0u64);
    loop {
        let v = unsafe { read_volatile(ping) };
        if v == last {
            if sleep {
                unsafe { asm!("sti", "hlt", "cli") };
            } else {
                core::hint::spin_loop();
            }
            continue;
        }
        if v == u64::MAX {
            return rounds;
        }
        fence(Ordering::Release);
        unsafe { write_volatile(pong, v) };
        last = v;
        rounds += 1;
    }
}

/// Function 11's request line (offsets in u64 words from the region's start): `seq`, `func`, `arg`.
const CHAN_REQ_SEQ: usize = 0;
const CHAN_REQ_FUNC: usize = 1;
const CHAN_REQ_ARG: usize = 2;
/// Its response line, at +64: `seq`, `result`.
const CHAN_RESP_SEQ: usize = 8;
const CHAN_RESP_RESULT: usize = 9;
/// The request function that ends the channel.
const CHAN_STOP: u64 = u64::MAX;

/// Function 11, the polled invoke channel: `addr` = guest-physical address of a 64-aligned
/// 128-byte region of ROS RAM, a request line `{seq, func, arg}` at +0 and a response line
/// `{seq, result}` at +64 (the caller zeroes both first). This core serves requests without any VM
/// exit until told to stop: spin (`pause`) until the request's `seq` differs from the last one seen
/// (starting at 0); func [`CHAN_STOP`] ends the channel and returns the requests served; else it
/// runs a side-effect-free function (0 echo, 1 add-one, 7 apic-id, 9 rdtsc; any other: u64::MAX),
/// writes `result`, then `seq` (release). u64::MAX at once if the region is not 64-aligned ROS RAM.
///
/// The loop after a request is seen is kept to a handful of instructions (echo and add-one inline,
/// the rest out of line): on PVM hosts ring 0 is emulated instruction by instruction, so each one
/// on this path is a large part of the round trip.
fn channel(addr: u64) -> u64 {
    if !addr.is_multiple_of(64) || !in_ros_ram(addr, 128) {
        return u64::MAX;
    }
    let words = pv(addr) as *mut u64;
    let read = |i: usize| unsafe { read_volatile(words.add(i)) };
    let write = |i: usize, v: u64| unsafe { write_volatile(words.add(i), v) };
    let (mut last, mut served) = (0u64, 0u64);
    loop {
        let mut seq = read(CHAN_REQ_SEQ);
        while seq == last {
            core::hint::spin_loop();
            seq = read(CHAN_REQ_SEQ);
        }
        // The request's func and arg were written before its seq.
        fence(Ordering::Acquire);
        let (function, arg) = (read(CHAN_REQ_FUNC), read(CHAN_REQ_ARG));
        // Echo first: one test and branch on its path.
        let result = if function == func::ECHO {
            arg
        } else if function == func::ADD_ONE {
            arg.wrapping_add(1)
        } else if function == CHAN_STOP {
            return served;
        } else {
            channel_call(function, arg)
        };
        write(CHAN_RESP_RESULT, result);
        fence(Ordering::Release);
        write(CHAN_RESP_SEQ, seq);
        last = seq;
        served = served.wrapping_add(1);
    }
}

/// The channel's functions other than echo and add-one: 7 apic-id, 9 rdtsc, any other u64::MAX.
#[cold]
#[inline(never)]
fn channel_call(function: u64, arg: u64) -> u64 {
    match function {
        func::APIC_ID | func::RDTSC => invoke(0, function, arg),
        _ => func::UNKNOWN,
    }
}

/// Most calls function 10 makes per invoke: `n` plus its samples fill one 4 KiB page.
const HCALL_BENCH_MAX: u64 = 511;

/// The TSC, ordered against the instructions around it (`lfence; rdtsc; lfence`; fences are
/// emulated on PVM, unlike `rdtscp`). Not `nomem`: a compiler barrier as well.
#[inline(always)]
fn rdtsc_fenced() -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("lfence", "rdtsc", "lfence", out("eax") lo, out("edx") hi, options(nostack, preserves_flags)) };
    ((hi as u64) << 32) | lo as u64
}

/// Function 10: `addr` = guest-physical address of an 8-aligned buffer of ROS RAM: u64 n at +0
/// (1..=511), then this core makes n null hypercalls (VERSION) from ring 0, each timed with the
/// fenced TSC, and writes the cycles of call i to +8·(1 + i). Returns n (fewer: the calls timed
/// before one failed); u64::MAX at once if the 8 + 8·n bytes are not 8-aligned in one ROS RAM
/// range or n is out of range.
fn hypercall_bench(addr: u64) -> u64 {
    if !addr.is_multiple_of(8) || !in_ros_ram(addr, 8) {
        return u64::MAX;
    }
    let n = unsafe { read_volatile(pv(addr) as *const u64) };
    if !(1..=HCALL_BENCH_MAX).contains(&n) || !in_ros_ram(addr, 8 * (1 + n)) {
        return u64::MAX;
    }
    let samples = pv(addr + 8) as *mut u64;
    for i in 0..n {
        let t0 = rdtsc_fenced();
        let r = unsafe { client::hypercall(Op::Version, [0; 5]) };
        let t1 = rdtsc_fenced();
        if r.is_err() {
            return i;
        }
        unsafe { write_volatile(samples.add(i as usize), t1.wrapping_sub(t0)) };
    }
    fence(Ordering::Release);
    n
}

/// The `smp` command in a partitioned VM: duet started the cores (no trampoline: low memory is
/// the ROS's); reports them from the HVM tag. Runs after every core reached the service loop.
pub fn smp() -> u32 {
    let info = &partition().info;
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
    let online = IDLE.load(Ordering::Acquire) + 1;
    Line::new().s("hrt: smp: ").dec(online as u64).s(" cpus online").print();
    if online as usize == ids.len() {
        0
    } else {
        Line::new().s("hrt: smp: expected ").dec(ids.len() as u64).print();
        1
    }
}

