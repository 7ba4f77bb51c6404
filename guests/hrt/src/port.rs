//! Port I/O and duet's debug port (docs/debug-port.md): marks and the exit.
//!
//! Port I/O touches no memory (`nomem`). The ports the kernel uses are COM1, duet's debug port,
//! hypercall port and doorbells: none of them makes a device write guest memory, so an access to
//! them cannot break what Rust assumes about memory.

use core::arch::asm;

use crate::cpu;

/// duet's debug port: a 1-4 byte write ends the VM with that status.
pub const DEBUG_EXIT: u16 = 0xf4;
/// duet's debug port: a write records (code, host time).
pub const DEBUG_MARK: u16 = 0xf8;

#[inline(always)]
pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O at CPL0, no memory touched (module docs).
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O at CPL0, no memory touched (module docs).
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}

#[inline(always)]
pub fn outl(port: u16, v: u32) {
    // SAFETY: port I/O at CPL0, no memory touched (module docs).
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

/// Records debug-port mark `code` (2: kernel entry, 3: kernel main, >= 256: free).
pub fn mark(code: u32) {
    outl(DEBUG_MARK, code);
}

/// Ends the VM with `status` through the debug port; halts if nobody listens.
pub fn exit(status: u32) -> ! {
    outl(DEBUG_EXIT, status);
    cpu::halt()
}
