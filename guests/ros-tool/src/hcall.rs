//! Port access and the hypercalls, as safe calls on a [`Port`] (the proof that `ioperm` succeeded).

use abi::client::{self, Ret};
use abi::{HcallError, HvmInfo, Op, ABI_VERSION, HRT_DOORBELL_PORT, HYPERCALL_PORT};

use crate::completion::CompletionCell;
use crate::error::Error;
use crate::sys;

/// An unclaimed port for `bench exit`: duet drops writes to ports no device claims. Outside
/// 0xe4..=0xe7, the four ports of the hypercall's `out 0xe4, eax`, and 0xe8..=0xeb, the HRT
/// doorbell's.
pub const BENCH_PORT: u16 = 0xe0;
/// duet's debug-port mark register (docs/debug-port.md): the VMM records the time and every vCPU's
/// KVM counters of a 4-byte write.
pub const MARK_PORT: u16 = 0xf8;

/// What VERSION answered.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    /// ABI version.
    pub abi: u64,
    /// HRT cores.
    pub hrt_cores: u64,
    /// ROS cores.
    pub ros_cores: u64,
}

/// Port access to [`HYPERCALL_PORT`] (and [`BENCH_PORT`] if asked for), with memory locked.
/// The hypercall is a 4-byte `out`, and the CPU checks the I/O permission bit of each byte's port:
/// `ioperm(0xe4, 1, 1)` alone makes it fault (SIGSEGV), so we ask for 0xe4..=0xe7.
pub struct Port {
    bench_port: bool,
}

/// The message for a failed hypercall: `HRT_BOOT failed: BAD_STATE (-6)`.
pub fn failure(op: Op, e: HcallError) -> Error {
    Error::failed(format!("{} failed: {} ({})", op.name(), e.name(), e.code()))
}

impl Port {
    /// Takes port access (`ioperm`) and locks memory (`mlockall`).
    pub fn open(bench_port: bool) -> Result<Port, Error> {
        sys::ioperm(HYPERCALL_PORT, 4)?;
        sys::ioperm(HRT_DOORBELL_PORT, 4)?;
        sys::ioperm(MARK_PORT, 4)?;
        if bench_port {
            sys::ioperm(BENCH_PORT, 1)?;
        }
        sys::mlockall()?;
        Ok(Port { bench_port })
    }

    /// A hypercall that makes the VMM write none of our memory (every operation but PARTITION_INFO
    /// and an INVOKE with a completion record, which have their own methods).
    pub fn call(&self, op: Op, args: [u64; 5]) -> Result<Ret, Error> {
        if op == Op::PartitionInfo || (matches!(op, Op::Invoke | Op::Merge | Op::Unmerge) && args[4] != 0) {
            return Err(Error::failed(format!("internal: {} needs its own wrapper", op.name())));
        }
        // SAFETY: `self` proves ioperm succeeded; the operation writes no memory of ours (checked
        // above), and the ones that read memory (HRT_REPLACE) go through `replace`.
        unsafe { client::hypercall(op, args) }.map_err(|e| failure(op, e))
    }

    /// VERSION, checked: a duet VMM must answer with our ABI version.
    pub fn probe(&self) -> Result<Version, Error> {
        let r = self.call(Op::Version, [0; 5])?;
        if r.rbx == 0 {
            return Err(Error::failed(format!(
                "no duet VMM answers on port {HYPERCALL_PORT:#x} (VERSION left the registers unchanged): not a partitioned duet VM?"
            )));
        }
        if r.rbx != ABI_VERSION {
            return Err(Error::failed(format!(
                "the VMM speaks hypercall ABI {}, this hvm speaks {ABI_VERSION}",
                r.rbx
            )));
        }
        Ok(Version { abi: r.rbx, hrt_cores: r.rcx, ros_cores: r.rdx })
    }

    /// PARTITION_INFO into a buffer of our own, decoded.
    pub fn partition_info(&self) -> Result<HvmInfo, Error> {
        let mut buf = vec![0u8; HvmInfo::SIZE];
        let args = [buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0, 0];
        // SAFETY: `self` proves ioperm succeeded; the VMM writes at most `buf.len()` bytes into `buf`,
        // which we own, which is locked (mlockall), and which nothing reads during the call.
        let r = unsafe { client::hypercall(Op::PartitionInfo, args) }.map_err(|e| failure(Op::PartitionInfo, e))?;
        let written = usize::try_from(r.rbx).unwrap_or(usize::MAX).min(buf.len());
        HvmInfo::decode(buf.get(..written).unwrap_or(&[])).ok_or_else(|| {
            Error::failed(format!("PARTITION_INFO wrote {} bytes that are not a version-1 HvmInfo", r.rbx))
        })
    }

    /// HRT_REPLACE with `image`.
    pub fn replace(&self, image: &[u8]) -> Result<Ret, Error> {
        let args = [image.as_ptr() as u64, image.len() as u64, 0, 0, 0];
        // SAFETY: `self` proves ioperm succeeded; the VMM only reads `image.len()` bytes of `image`.
        unsafe { client::hypercall(Op::HrtReplace, args) }.map_err(|e| failure(Op::HrtReplace, e))
    }

    /// INVOKE of `func(arg)` on `core` (or [`abi::ALL_CORES`]) with `flags`; the HRT writes its
    /// outcome to `completion` (one record per core for all cores) if given. Returns the sequence
    /// number.
    pub fn invoke(
        &self,
        func: u64,
        arg: u64,
        core: u64,
        flags: u64,
        completion: Option<&[CompletionCell]>,
    ) -> Result<u64, Error> {
        let rdi = completion.map_or(0, |c| c.as_ptr() as u64);
        // SAFETY: `self` proves ioperm succeeded. The only memory written on our behalf is the
        // completion records: atomics in locked memory (mlockall) that the caller keeps alive and
        // only reads atomically; the VMM checks the address is mapped and writable.
        let r = unsafe { client::hypercall(Op::Invoke, [func, arg, core, flags, rdi]) }
            .map_err(|e| failure(Op::Invoke, e))?;
        Ok(r.rbx)
    }

    /// MERGE (`merge`) or UNMERGE on `core` (or [`abi::ALL_CORES`]): duet posts the reserved
    /// invoke function with this process's page-table root; the HRT writes its outcome to
    /// `completion` (one record per core for all cores) if given. Returns the sequence number.
    pub fn merge(&self, merge: bool, core: u64, completion: Option<&[CompletionCell]>) -> Result<u64, Error> {
        let op = if merge { Op::Merge } else { Op::Unmerge };
        let rdi = completion.map_or(0, |c| c.as_ptr() as u64);
        // SAFETY: `self` proves ioperm succeeded. As for `invoke`, the only memory written on our
        // behalf is the completion records: atomics in locked memory that the caller keeps alive.
        // Sharing our user half with the HRT is what the caller asks for (the HRT reads and writes
        // only what an invoke names).
        let r = unsafe { client::hypercall(op, [core, 0, 0, 0, rdi]) }.map_err(|e| failure(op, e))?;
        Ok(r.rbx)
    }

    /// Rings the HRT doorbell of `core` (docs/hypercalls.md §7): a 4-byte `out` to
    /// [`HRT_DOORBELL_PORT`]; duet raises the wake-up vector on that core without an exit to the
    /// VMM. Another value is ignored.
    pub fn ring_hrt(&self, core: u32) {
        // SAFETY: `open` got ioperm for the doorbell's four ports.
        unsafe { out32(HRT_DOORBELL_PORT, core) };
    }

    /// A mark with `code` on duet's debug port (one user-space VM exit).
    pub fn mark(&self, code: u32) {
        // SAFETY: `open` got ioperm for the mark register's four ports.
        unsafe { out32(MARK_PORT, code) };
    }

    /// One `out` to [`BENCH_PORT`]: a plain user-space VM exit that no device handles.
    pub fn bench_exit(&self) -> Result<(), Error> {
        if !self.bench_port {
            return Err(Error::failed("internal: no port access to the bench port"));
        }
        // SAFETY: ioperm granted access to BENCH_PORT (checked above); nothing serves it, so the
        // write has no effect beyond the VM exit; it touches no memory.
        unsafe {
            core::arch::asm!("out dx, al", in("dx") BENCH_PORT, in("al") 0u8, options(nomem, nostack, preserves_flags));
        }
        Ok(())
    }

    /// A hypercall with any RAX (all 64 bits) and arguments; returns RAX, RBX, RCX, RDX.
    ///
    /// `hvm raw` probes unknown operations and high RAX bits and prints every register, so this
    /// takes [`abi::client::hypercall_raw`], not the typed [`client::hypercall`].
    ///
    /// # Safety
    /// Arguments that name our memory may make the VMM write there (PARTITION_INFO, INVOKE's
    /// completion record): the caller must accept that, as `hvm raw`, a deliberate probe that reads
    /// nothing of its memory afterwards, does.
    pub unsafe fn raw(&self, rax: u64, args: [u64; 5]) -> [u64; 4] {
        // SAFETY: `self` proves ioperm succeeded; the caller accepts the VMM's writes (see above).
        unsafe { abi::client::hypercall_raw(rax, args) }
    }
}

/// A 4-byte `out` of `value` to `port` (the doorbell, the mark register).
///
/// # Safety
/// The process must have I/O permission for the four ports `port..port + 4` (ioperm); the VMM's
/// device behind them must be one whose write does nothing to our memory (both are).
#[inline]
unsafe fn out32(port: u16, value: u32) {
    // SAFETY: the caller has the permission (see above); the instruction touches no memory.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags));
    }
}
