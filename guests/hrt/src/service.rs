//! The invoke service loop of every HRT core in a partitioned VM (contract "Invoke",
//! docs/hypercalls.md §5) and duet's invoke functions ([`abi::func`]).
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
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

use abi::{client, func, slot, Op, FUNC_MERGE, FUNC_UNMERGE, INVOKE_NOTIFY};

use crate::out::Line;
use crate::partition::{self, in_ros_ram, pv};
use crate::tsc::{rdtsc, rdtsc_fenced};
use crate::{canary, commands, cpu, fwd, idt, lapic, merge, port, split, user};

/// The service loop of one core (contract "Invoke").
pub fn serve(core: u32) -> ! {
    let base = pv(partition::get().info.comm_page + slot::SIZE * core as u64);
    // SAFETY: (here and in `write`) `off` is one of the slot's field offsets (8-aligned, < 64),
    // and the core's slot lies in HRT RAM (core 0 checked that the comm page holds a 64-aligned
    // slot per core, and a core beyond the count halts before it gets here), mapped by the
    // window; duet writes the slot too, hence volatile; no Rust object lives there.
    let read = |off: u64| unsafe { read_volatile((base + off) as *const u64) };
    // SAFETY: see `read`.
    let write = |off: u64, v: u64| unsafe { write_volatile((base + off) as *mut u64, v) };
    loop {
        // SAFETY: `cli` touches no memory.
        unsafe { asm!("cli", options(nomem, nostack)) };
        let seq = read(slot::SEQ);
        if seq == read(slot::DONE) {
            // Atomic pair: an interrupt that arrives after the check ends the hlt. Not `nostack`:
            // the interrupt frame is pushed on this stack.
            // SAFETY: as cpu::wait_for_interrupt: the IDT has gates for the vectors duet sends,
            // whose handlers return with every register preserved.
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
            // SAFETY: ring 0 may use the hypercall port; INVOKE_DONE takes the core index and makes
            // duet write no memory.
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
    // SAFETY: the 16 bytes lie 8-aligned in ROS RAM (checked), mapped by the window: the caller's
    // record, no Rust object.
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
        func::CANARY_CHECK => canary::check(),
        func::CANARY_ADDRESS => partition::get().canary,
        func::PAGE_FAULT => {
            commands::fault();
            u64::MAX
        }
        func::TRIPLE_FAULT => idt::triple_fault(),
        func::HANG => cpu::halt(),
        func::APIC_ID => lapic::apic_id() as u64,
        func::PING_PONG => ping_pong(arg, false),
        func::RDTSC => rdtsc(),
        func::HYPERCALL_BENCH => hypercall_bench(arg),
        func::CHANNEL => channel(arg),
        func::READ_USER => merge::user_read_u64(arg).unwrap_or(func::NOT_MAPPED),
        func::FLIP_USER => merge::flip(arg),
        func::FWD_GETPID => fwd::getpid(core, arg),
        func::FWD_ATTACH => fwd::attach(core, arg),
        func::FWD_DETACH => fwd::detach(core),
        func::SPLIT => split::split(core, arg),
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
        cpu::wait_for_interrupt();
    }
    n
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
        // SAFETY: ping and pong are 8-aligned words of the 128 bytes of ROS RAM checked above,
        // mapped by the window; the ROS writes ping meanwhile, hence volatile.
        let v = unsafe { read_volatile(ping) };
        if v == last {
            if sleep {
                cpu::wait_for_interrupt();
            } else {
                core::hint::spin_loop();
            }
            continue;
        }
        if v == u64::MAX {
            return rounds;
        }
        fence(Ordering::Release);
        // SAFETY: see the read of ping.
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
    // SAFETY: (here and in `write`) `i` is one of the CHAN_* word indices (< 16) of the 64-aligned
    // 128 bytes of ROS RAM checked above, mapped by the window; the ROS writes the request line
    // meanwhile, hence volatile; no Rust object lives there.
    let read = |i: usize| unsafe { read_volatile(words.add(i)) };
    // SAFETY: see `read`.
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

/// Function 10: `addr` = guest-physical address of an 8-aligned buffer of ROS RAM: u64 n at +0
/// (1..=511), then this core makes n null hypercalls (VERSION) from ring 0, each timed with the
/// fenced TSC, and writes the cycles of call i to +8·(1 + i). Returns n (fewer: the calls timed
/// before one failed); u64::MAX at once if the 8 + 8·n bytes are not 8-aligned in one ROS RAM
/// range or n is out of range.
fn hypercall_bench(addr: u64) -> u64 {
    if !addr.is_multiple_of(8) || !in_ros_ram(addr, 8) {
        return u64::MAX;
    }
    // SAFETY: 8 bytes, 8-aligned, of ROS RAM (checked), mapped by the window.
    let n = unsafe { read_volatile(pv(addr) as *const u64) };
    if !(1..=HCALL_BENCH_MAX).contains(&n) || !in_ros_ram(addr, 8 * (1 + n)) {
        return u64::MAX;
    }
    let samples = pv(addr + 8) as *mut u64;
    for i in 0..n {
        let t0 = rdtsc_fenced();
        // SAFETY: ring 0 may use the hypercall port; VERSION takes no arguments and makes duet write
        // no memory.
        let r = unsafe { client::hypercall(Op::Version, [0; 5]) };
        let t1 = rdtsc_fenced();
        if r.is_err() {
            return i;
        }
        // SAFETY: word i < n after `n`: the 8 + 8·n bytes lie 8-aligned in one ROS RAM range
        // (checked), mapped by the window.
        unsafe { write_volatile(samples.add(i as usize), t1.wrapping_sub(t0)) };
    }
    fence(Ordering::Release);
    n
}
