//! The privileged x86 instructions the kernel wraps: halting, waiting for an interrupt, control
//! registers and MSRs. The kernel runs at CPL0 (and only its own code: user code at CPL3 enters it
//! through traps), so each instruction is allowed; what each needs to be sound is said at it.

use core::arch::asm;

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        // SAFETY: `cli; hlt` touches no memory; with interrupts off only an NMI or INIT wakes the
        // CPU, and the loop halts it again.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Waits for the next interrupt with interrupts on (`sti; hlt`: an interrupt pending at the `sti`
/// ends the `hlt`), then turns them off again. Not `nostack`: the interrupt frame is pushed on this
/// stack; not `nomem`: a compiler barrier (the handler may have changed memory).
#[inline(always)]
pub fn wait_for_interrupt() {
    // SAFETY: only a partitioned VM's cores call this, after they loaded the IDT with a gate for
    // every vector duet sends them (the wake-up and spurious vectors: EOI if needed, then `iretq`,
    // every register preserved); the frame goes on this core's stack, which has room for it.
    unsafe { asm!("sti", "hlt", "cli") };
}

/// CR2: the last page fault's address.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR3: this core's page-table root (and flags).
pub fn cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effect.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Drops this core's cached translation of the page holding `va`.
pub fn invlpg(va: u64) {
    // SAFETY: dropping a TLB entry only makes the next access to that page walk the page tables;
    // any address is allowed (a non-canonical one is a no-op).
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

/// Reads model-specific register `msr`; the kernel reads only the architectural ones of x86-64
/// (FS_BASE, KERNEL_GS_BASE).
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no side effect on the ones the kernel reads; a missing one would
    // raise #GP, reported and fatal (idt.rs), not undefined behaviour.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes model-specific register `msr`.
///
/// # Safety
/// The new value must keep what the kernel relies on: KERNEL_GS_BASE pointing at the core's block
/// (user.rs), the system-call MSRs at `hrt_syscall_entry`, EFER's long mode, and so on. FS_BASE and
/// GS_BASE are free: the kernel makes no FS- or GS-relative access outside `swapgs` pairs.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: the caller's contract.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack, preserves_flags)) }
}
