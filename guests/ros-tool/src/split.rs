//! Split execution (docs/forwarding.md): a ROS function of this program run at CPL3 on an HRT core
//! in this process's address space (HRT function 17), its system calls served by the proxy.

use std::time::Duration;

use abi::func;

use forwarder::layout::{SplitCall, SPLIT_OK, SPLIT_RETURN};

use crate::error::Error;
use crate::forward_error::hrt_error;
use crate::proxy::Proxy;

/// Bytes of a split execution's stack.
const SPLIT_STACK: usize = 256 * 1024;
/// How long one split execution may take.
const TIMEOUT: Duration = Duration::from_secs(600);

/// The TLS pointer (FS base) of this thread.
fn fs_base() -> u64 {
    let mut fs: u64 = 0;
    // SAFETY: arch_prctl(ARCH_GET_FS) writes one u64 to the address given, which is ours.
    unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1003, &mut fs as *mut u64) };
    fs
}

/// A split execution's stack and record, reusable for many runs on one core.
pub struct SplitRunner {
    stack: Vec<u64>,
    record: Box<SplitCall>,
}

impl SplitRunner {
    pub fn new() -> SplitRunner {
        let mut stack = vec![0u64; SPLIT_STACK / 8];
        // Touch every page (calloc'd memory may not be), so the stack needs no page-fault forwarding.
        for w in stack.iter_mut().step_by(512) {
            // SAFETY: a write to our own Vec's element.
            unsafe { std::ptr::write_volatile(w, 1) };
        }
        SplitRunner { stack, record: Box::default() }
    }

    /// Runs `entry(arg)` on `core` at CPL3 in this process's address space (HRT function 17),
    /// serving its system calls; the record's outputs.
    pub fn run(&mut self, proxy: &mut Proxy<'_>, core: u64, entry: extern "C" fn(u64) -> u64, arg: u64) -> Result<SplitCall, Error> {
        let base = self.stack.as_ptr() as u64;
        let rsp = ((base + SPLIT_STACK as u64) & !15) - 16 - 8;
        let slot = ((rsp - base) / 8) as usize;
        self.stack[slot] = SPLIT_RETURN;
        *self.record = SplitCall { entry: entry as usize as u64, arg, stack: rsp, fs_base: fs_base(), ..SplitCall::default() };
        let va = &*self.record as *const SplitCall as u64;
        let status = proxy.run(&[core], func::SPLIT, &[va], TIMEOUT)?[0];
        // SAFETY: the HRT wrote the record (through its physical window) before completing the
        // invoke, which `run` waited for with acquire; reading it volatile sees those writes.
        let out = unsafe { std::ptr::read_volatile(&*self.record) };
        if let Some(why) = hrt_error(status) {
            return Err(Error::failed(format!("split: HRT function 17 answered {status:#x}: {why}")));
        }
        Ok(out)
    }
}

/// Fails unless the split execution ended well (`SPLIT_OK`), saying how it ended.
pub fn expect_ok(what: &str, r: &SplitCall) -> Result<(), Error> {
    if r.status != SPLIT_OK {
        return Err(Error::failed(format!(
            "split {what}: the execution ended with status {:#x} (result {:#x}, {} syscalls, {} page faults)",
            r.status, r.result, r.syscalls, r.page_faults
        )));
    }
    Ok(())
}
