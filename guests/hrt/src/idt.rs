//! The IDT: the 32 exception vectors, each reporting and ending the VM with status 0x80 + vector.

use core::arch::asm;

use crate::out::Line;
use crate::port;

extern "C" {
    /// 32 entry stubs, 16 bytes apart (boot.rs).
    static hrt_exc_stubs: u8;
}

#[repr(C, align(16))]
struct Idt([u64; 64]);

static mut IDT: Idt = Idt([0; 64]);

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Fills the IDT (bootstrap processor, once) and loads it.
pub fn init() {
    let stubs = unsafe { &hrt_exc_stubs as *const u8 as u64 };
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    let mut v = 0;
    while v < 32 {
        let addr = stubs + 16 * v as u64;
        // Present, DPL 0, 64-bit interrupt gate (IF cleared), selector 0x08, IST 0.
        let low =
            (addr & 0xffff) | (0x08 << 16) | (0x8E00u64 << 32) | (((addr >> 16) & 0xffff) << 48);
        if let Some(e) = idt.0.get_mut(2 * v) {
            *e = low;
        }
        if let Some(e) = idt.0.get_mut(2 * v + 1) {
            *e = addr >> 32;
        }
        v += 1;
    }
    load();
}

/// Loads the IDT on this CPU (application processors call this alone).
pub fn load() {
    let ptr = Pointer {
        limit: (32 * 16 - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) }
}

fn name(vector: u64) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        2 => "NMI",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range exceeded",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        9 => "coprocessor segment overrun",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating-point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating-point",
        20 => "virtualization",
        21 => "control protection",
        28 => "hypervisor injection",
        29 => "VMM communication",
        30 => "security",
        _ => "reserved",
    }
}

/// Called by the stubs with [vector, error, rip, cs, rflags, rsp, ss]; never returns.
#[no_mangle]
extern "C" fn hrt_exception(frame: *const u64) -> ! {
    let (vector, error, rip) = unsafe { (*frame, *frame.add(1), *frame.add(2)) };
    let cr2: u64;
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    Line::forced()
        .s("hrt: exception ")
        .s(name(vector))
        .s(" (vector ")
        .dec(vector)
        .s(") error=")
        .hex(error)
        .s(" rip=")
        .hex(rip)
        .s(" cr2=")
        .hex(cr2)
        .print();
    port::exit(0x80 + (vector as u32 & 0x1f))
}
