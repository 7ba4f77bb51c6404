//! duet's debug port, as seen from the guest.
//!
//! duet's VMM decodes port I/O writes to a small range at 0xf4..0xfc:
//! - `EXIT_PORT` (0xf4): a write of a status ends the VM; the VMM exits with that status.
//! - `MARK_PORT` (0xf8): a write of a code records a host timestamp for that code
//!   (code 1 = "init reached"), so boot phases can be timed from the host.
//!
//! The VMM accepts 1-, 2- and 4-byte writes. We write 4 bytes with `out dx, eax` after
//! `ioperm(0xf4, 8, 1)`. If the kernel has no ioperm (CONFIG_X86_IOPL_IOPERM=n) we fall back to
//! `/dev/port` (CONFIG_DEVPORT): the kernel writes its bytes one `outb` at a time, so an exit
//! status is written as a single byte at 0xf4 (status & 0xff), and a mark as 4 bytes at 0xf8
//! (the VMM sees the low byte at 0xf8 first).
//!
//! A user-space `out` that the hypervisor or kernel refuses raises SIGSEGV. PID 1 must not die of
//! it (that panics the kernel), so a SIGSEGV handler steps over a faulting `out` of ours and
//! the port switches to the fallback.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// A write of a status here makes the VM exit with that status.
pub const EXIT_PORT: u16 = 0xf4;
/// A write of a code here records a host timestamp for that code.
pub const MARK_PORT: u16 = 0xf8;
/// Mark code: init reached.
pub const MARK_INIT: u32 = 1;

/// Set while one of our `out` instructions executes.
static IN_OUT: AtomicBool = AtomicBool::new(false);
/// Set by the SIGSEGV handler when one of our `out` instructions faulted.
static OUT_FAULTED: AtomicBool = AtomicBool::new(false);

enum Access {
    Ioperm,
    DevPort(File),
    None,
}

/// Access to the debug port.
pub struct DebugPort {
    access: Access,
}

extern "C" fn on_segv(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler; we only read the
    // byte at the faulting RIP when the fault happened inside our own `out` (IN_OUT), where RIP
    // points at that instruction.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        let rip_slot = &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
        let rip = *rip_slot as *const u8;
        if IN_OUT.load(Ordering::SeqCst) && !rip.is_null() && (*rip == 0xef || *rip == 0xee) {
            // `out dx, eax` / `out dx, al` are one byte long: step over it.
            *rip_slot += 1;
            OUT_FAULTED.store(true, Ordering::SeqCst);
            return;
        }
        // A genuine crash: let it kill us (the kernel reports "Attempted to kill init").
        let msg = b"duet-init: fatal SIGSEGV\n";
        libc::write(1, msg.as_ptr().cast(), msg.len());
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
    }
}

fn out32(port: u16, value: u32) -> bool {
    IN_OUT.store(true, Ordering::SeqCst);
    // SAFETY: port I/O to duet's debug port has no effect on this process's memory; access was
    // granted by ioperm, and a refused access is caught by `on_segv`.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags));
    }
    IN_OUT.store(false, Ordering::SeqCst);
    !OUT_FAULTED.load(Ordering::SeqCst)
}

impl DebugPort {
    /// No access yet.
    pub fn none() -> Self {
        DebugPort { access: Access::None }
    }

    /// Whether a port write path is set up.
    pub fn ready(&self) -> bool {
        !matches!(self.access, Access::None)
    }

    /// The path in use, for the log.
    pub fn describe(&self) -> &'static str {
        match self.access {
            Access::Ioperm => "ioperm",
            Access::DevPort(_) => "/dev/port",
            Access::None => "none",
        }
    }

    /// Tries ioperm (no filesystem needed). Returns the error text on failure.
    pub fn try_ioperm(&mut self) -> Result<(), String> {
        // SAFETY: plain syscall.
        if unsafe { libc::ioperm(EXIT_PORT as libc::c_ulong, 8, 1) } != 0 {
            return Err(format!("ioperm: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: installs a handler that only touches atomics and the signal context.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_segv as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()) != 0 {
                return Err(format!("sigaction(SIGSEGV): {}", std::io::Error::last_os_error()));
            }
        }
        self.access = Access::Ioperm;
        Ok(())
    }

    /// Tries /dev/port (needs /dev mounted).
    pub fn try_dev_port(&mut self) -> Result<(), String> {
        match std::fs::OpenOptions::new().write(true).open("/dev/port") {
            Ok(f) => {
                self.access = Access::DevPort(f);
                Ok(())
            }
            Err(e) => Err(format!("/dev/port: {e}")),
        }
    }

    fn write(&mut self, port: u16, value: u32, bytes: usize) -> Result<(), String> {
        match &self.access {
            Access::Ioperm => {
                if out32(port, value) {
                    Ok(())
                } else {
                    self.access = Access::None;
                    Err("port I/O refused (SIGSEGV)".to_string())
                }
            }
            Access::DevPort(f) => {
                let b = value.to_le_bytes();
                let data = b.get(..bytes).unwrap_or(&b);
                match f.write_at(data, u64::from(port)) {
                    Ok(n) if n == data.len() => Ok(()),
                    Ok(n) => Err(format!("/dev/port: short write ({n} of {})", data.len())),
                    Err(e) => Err(format!("/dev/port: {e}")),
                }
            }
            Access::None => Err("no access to the debug port".to_string()),
        }
    }

    /// Records a host timestamp for `code`.
    pub fn mark(&mut self, code: u32) -> Result<(), String> {
        self.write(MARK_PORT, code, 4)
    }

    /// Asks the VMM to end the VM with `status`. Returns only if that did not happen.
    pub fn exit(&mut self, status: u32) -> Result<(), String> {
        self.write(EXIT_PORT, status, 1)
    }
}
