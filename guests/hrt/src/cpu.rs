//! The privileged x86 instructions the kernel wraps: halting, waiting for an interrupt, control
//! registers and MSRs.

use core::arch::asm;

/// Stops this CPU for good.
pub fn halt() -> ! {
    loop {
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// Waits for the next interrupt with interrupts on (`sti; hlt`: an interrupt pending at the `sti`
/// ends the `hlt`), then turns them off again. Not `nostack`: the interrupt frame is pushed on this
/// stack; not `nomem`: a compiler barrier (the handler may have changed memory).
#[inline(always)]
pub fn wait_for_interrupt() {
    unsafe { asm!("sti", "hlt", "cli") };
}

/// CR2: the last page fault's address.
pub fn cr2() -> u64 {
    let v: u64;
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CR3: this core's page-table root (and flags).
pub fn cr3() -> u64 {
    let v: u64;
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Drops this core's cached translation of the page holding `va`.
pub fn invlpg(va: u64) {
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) };
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

pub fn wrmsr(msr: u32, v: u64) {
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nomem, nostack, preserves_flags)) }
}
