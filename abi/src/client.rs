//! The hypercall instruction: one `out 0xe4, eax` with the arguments in registers.
//!
//! Works in ring 0 (the HRT) and in Linux user space once the process has called
//! `ioperm(0xe4, 4, 1)` (the 4-byte `out` covers ports 0xe4–0xe7) (root). Nothing here allocates or needs `std`.

use crate::{HcallError, Op};

/// What a successful hypercall returned: RBX, RCX, RDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ret {
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
}

/// Decodes RAX: 0 is success, a known negative code is that error, anything else is reported as
/// [`HcallError::UnknownOp`] (a port nobody serves reads back as all ones, which is not 0).
pub fn status(rax: u64) -> Result<(), HcallError> {
    if rax == 0 {
        Ok(())
    } else {
        Err(HcallError::from_code(rax as i64).unwrap_or(HcallError::UnknownOp))
    }
}

/// Makes hypercall `op` with arguments RBX, RCX, RDX, RSI, RDI = `args`.
///
/// # Safety
/// The caller must be allowed to do port I/O on [`crate::HYPERCALL_PORT`] (ring 0, or `ioperm`), and
/// the arguments must be what the operation expects: some operations make the VMM write to caller
/// memory named by them ([`Op::PartitionInfo`], the [`crate::Completion`] record of [`Op::Invoke`]).
#[cfg(target_arch = "x86_64")]
pub unsafe fn hypercall(op: Op, args: [u64; 5]) -> Result<Ret, HcallError> {
    // SAFETY: the caller's guarantees above are `hypercall_raw`'s, for a valid operation.
    let [rax, rbx, rcx, rdx] = unsafe { hypercall_raw(op as u64, args) };
    status(rax).map(|()| Ret { rbx, rcx, rdx })
}

/// The hypercall instruction itself with any RAX (a probe may send a number that is no operation):
/// returns RAX, RBX, RCX, RDX as the VMM left them.
///
/// # Safety
/// As [`hypercall`]: port I/O permission, and arguments whose memory the caller lets the VMM write.
#[cfg(target_arch = "x86_64")]
pub unsafe fn hypercall_raw(rax: u64, args: [u64; 5]) -> [u64; 4] {
    let (a, b, c, d): (u64, u64, u64, u64);
    // SAFETY: the caller vouches for port access and the arguments (see above). RBX is reserved by
    // LLVM, so it is swapped in and out through a scratch register around the `out`.
    unsafe {
        core::arch::asm!(
            "xchg {b}, rbx",
            "out 0xe4, eax",
            "xchg {b}, rbx",
            b = inout(reg) args[0] => b,
            inout("rax") rax => a,
            inout("rcx") args[1] => c,
            inout("rdx") args[2] => d,
            in("rsi") args[3],
            in("rdi") args[4],
            options(nostack, preserves_flags),
        );
    }
    [a, b, c, d]
}
