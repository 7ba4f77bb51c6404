//! The IDT: the 32 exception vectors, each reporting and ending the VM with status 0x80 + vector;
//! in a partitioned VM also the invoke wake-up vector (EOI and return) and the LAPIC's spurious
//! vector (return). Other vectors are not present (a stray interrupt reports as a #NP).

use core::arch::asm;

use crate::boot::SPURIOUS_VECTOR;
use crate::out::Line;
use crate::{cpu, port};

extern "C" {
    /// 32 entry stubs, 16 bytes apart (boot.rs).
    static hrt_exc_stubs: u8;
    /// The wake-up interrupt: LAPIC EOI, iretq (boot.rs).
    static hrt_wake_isr: u8;
    /// The spurious interrupt: iretq (boot.rs).
    static hrt_spurious_isr: u8;
}

/// 256 gates of 16 bytes.
#[repr(C, align(4096))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Points gate `vector` at `addr`: present, DPL 0, 64-bit interrupt gate (IF cleared), selector
/// 0x08 (the same in the kernel's GDT and in duet's), IST 0.
fn set_gate(vector: usize, addr: u64) {
    // SAFETY: only the bootstrap processor (core 0) fills gates, at boot ([`init`]; in a
    // partitioned VM also [`init_interrupts`]) while no other core runs kernel code, and nothing
    // else references IDT (`load` takes its address): this reference is the only one.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    let low = (addr & 0xffff) | (0x08 << 16) | (0x8E00u64 << 32) | (((addr >> 16) & 0xffff) << 48);
    if let Some(e) = idt.0.get_mut(2 * vector) {
        *e = low;
    }
    if let Some(e) = idt.0.get_mut(2 * vector + 1) {
        *e = addr >> 32;
    }
}

/// Fills the exception gates (bootstrap processor, once) and loads the IDT.
pub fn init() {
    let stubs = core::ptr::addr_of!(hrt_exc_stubs) as u64;
    let mut v = 0;
    while v < 32 {
        set_gate(v, stubs + 16 * v as u64);
        v += 1;
    }
    load();
}

/// Adds the interrupt gates of a partitioned VM: `wake` (the invoke wake-up vector) and the
/// spurious vector. Core 0, before it lets the other cores go.
pub fn init_interrupts(wake: u32) {
    set_gate(wake as usize, core::ptr::addr_of!(hrt_wake_isr) as u64);
    set_gate(SPURIOUS_VECTOR as usize, core::ptr::addr_of!(hrt_spurious_isr) as u64);
}

/// Loads the IDT on this CPU (application processors call this alone).
pub fn load() {
    let ptr = Pointer {
        limit: (256 * 16 - 1) as u16,
        base: core::ptr::addr_of!(IDT) as u64,
    };
    // SAFETY: IDT is a 'static table whose present gates point at boot.rs's entry stubs (64-bit
    // interrupt gates, kernel code selector); `lidt` only reads the pointer.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) }
}

/// Loads an IDT with limit 0 and raises #UD: no exception can be delivered, so the core
/// triple-faults (invoke function 5).
pub fn triple_fault() -> ! {
    let ptr = Pointer { limit: 0, base: 0 };
    // SAFETY: ends the VM on purpose: with an empty IDT the #UD cannot be delivered, nor the double
    // fault that follows, so the core shuts down (a triple fault) and nothing after it runs.
    unsafe {
        asm!("lidt [{}]", "ud2", in(reg) &ptr, options(noreturn, nostack));
    }
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

/// Every exception (boot.rs `hrt_exc_common`; also `hrt_syscall_entry`): from CPL3 to
/// [`crate::user::trap`], which may return (resume); from ring 0 to [`exception`], which does not.
#[no_mangle]
extern "C" fn hrt_trap(frame: *mut crate::user::TrapFrame) {
    // SAFETY: `hrt_exc_common` passes its RSP after pushing the registers: a whole TrapFrame on the
    // trap's stack, aligned, which only this call uses until it returns (and the stub pops it).
    let f = unsafe { &mut *frame };
    if f.cs & 3 == 3 {
        crate::user::trap(f);
        return;
    }
    if crate::user::kernel_fault(f) {
        return;
    }
    exception(f)
}

/// Reports an exception in ring 0 from its frame's vector, error code and RIP and ends the VM.
fn exception(frame: &crate::user::TrapFrame) -> ! {
    let (vector, error, rip) = (frame.vector, frame.error, frame.rip);
    let cr2 = cpu::cr2();
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
