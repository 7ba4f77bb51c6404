//! vCPU threads: one per vCPU, each running KVM_RUN and serving its exits until the VM stops.
//!
//! A thread ends when the VMM sets the shared `stopping` flag and kicks it with a signal (which makes
//! KVM_RUN return EINTR), or when its guest faults (triple fault, an instruction this host's KVM cannot
//! emulate, a KVM internal error). A fault is reported to the VMM and stops the VM.

pub mod emulate;
pub(crate) mod fallback;
pub mod setup;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use devices::bus::PioBus;
use kvm_bindings::kvm_regs;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// `KVM_INTERNAL_ERROR_EMULATION`: KVM could not emulate an instruction.
const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;

/// A guest-caused end of the VM, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFault {
    /// The vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// The vCPU.
        vcpu: u8,
        /// Its registers at the time.
        regs: RegsSummary,
    },
    /// The guest ran an instruction this host's KVM cannot emulate.
    Unsupported {
        /// The vCPU.
        vcpu: u8,
        /// The report: RIP, instruction bytes, disassembly.
        report: String,
    },
    /// KVM reported another internal error.
    Internal {
        /// The vCPU.
        vcpu: u8,
        /// KVM's suberror code.
        suberror: u32,
        /// Registers.
        regs: RegsSummary,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// The vCPU.
        vcpu: u8,
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// An exit duet does not handle.
    UnexpectedExit {
        /// The vCPU.
        vcpu: u8,
        /// The exit, as text.
        exit: String,
    },
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFault::TripleFault { vcpu, regs } => write!(f, "vCPU {vcpu} triple-faulted (KVM_EXIT_SHUTDOWN): {regs}"),
            GuestFault::Unsupported { vcpu, report } => write!(f, "vCPU {vcpu}: {report}"),
            GuestFault::Internal { vcpu, suberror, regs } => {
                write!(f, "vCPU {vcpu}: KVM internal error (suberror {suberror}): {regs}")
            }
            GuestFault::FailEntry { vcpu, reason } => {
                write!(f, "vCPU {vcpu}: KVM failed to enter the guest (hardware reason {reason:#x})")
            }
            GuestFault::UnexpectedExit { vcpu, exit } => write!(f, "vCPU {vcpu}: unexpected exit {exit}"),
        }
    }
}

/// The registers worth printing when a guest dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegsSummary {
    /// RIP.
    pub rip: u64,
    /// RSP.
    pub rsp: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RAX.
    pub rax: u64,
    /// CR0, CR2, CR3, CR4.
    pub cr: [u64; 4],
}

impl RegsSummary {
    fn read(vcpu: &VcpuFd) -> Self {
        let regs = vcpu.get_regs().unwrap_or_default();
        let sregs = vcpu.get_sregs().unwrap_or_default();
        RegsSummary::from_kvm(&regs, [sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4])
    }

    fn from_kvm(regs: &kvm_regs, cr: [u64; 4]) -> Self {
        RegsSummary { rip: regs.rip, rsp: regs.rsp, rflags: regs.rflags, rax: regs.rax, cr }
    }
}

impl fmt::Display for RegsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RIP={:#018x} RSP={:#018x} RFLAGS={:#x} RAX={:#x} CR0={:#x} CR2={:#x} CR3={:#x} CR4={:#x}",
            self.rip, self.rsp, self.rflags, self.rax, self.cr[0], self.cr[1], self.cr[2], self.cr[3]
        )
    }
}

/// What a vCPU thread shares with the VMM.
#[derive(Clone)]
pub struct VcpuShared {
    /// Port-I/O devices.
    pub bus: Arc<PioBus>,
    /// The virtio-mmio devices; an access anywhere else reads all ones and writes nothing.
    pub mmio: Arc<crate::virtio::MmioBus>,
    /// Guest memory (for the emulation fallback's operand accesses).
    pub mem: GuestMemoryMmap<()>,
    /// Set by the VMM when the VM stops.
    pub stopping: Arc<AtomicBool>,
    /// Guest faults, first one first.
    pub faults: Arc<Mutex<Vec<GuestFault>>>,
    /// Written when a fault is recorded, to wake the VMM's event loop.
    pub fault_evt: Arc<EventFd>,
    /// Count of emulation fallbacks taken (int3 injections, x87/MXCSR emulations).
    pub fallbacks: Arc<std::sync::atomic::AtomicU64>,
    /// Each vCPU's registers when it stopped (for the report of a timed-out VM).
    pub final_regs: Arc<Mutex<Vec<(u8, RegsSummary)>>>,
    /// In a partitioned VM (these are then the ROS's vCPUs): the shared HVM state that serves
    /// hypercalls and logs denied accesses to the HRT's memory.
    pub hvm: Option<Arc<crate::partitioned::Hvm>>,
}

/// Runs vCPU `id` until the VM stops or the guest faults.
pub fn run(mut vcpu: VcpuFd, id: u8, shared: VcpuShared) {
    let fault = loop {
        if shared.stopping.load(Ordering::Acquire) {
            let regs = RegsSummary::read(&vcpu);
            shared.final_regs.lock().unwrap_or_else(|p| p.into_inner()).push((id, regs));
            return;
        }
        match vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                log::trace!("vCPU {id}: out {port:#x} {data:02x?}");
                match &shared.hvm {
                    Some(hvm) if port == hvm::abi::HYPERCALL_PORT => hvm.hypercall(&vcpu, hvm::Partition::Ros, u32::from(id)),
                    _ => {
                        shared.bus.write(port, data);
                    }
                }
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                shared.bus.read(port, data);
                log::trace!("vCPU {id}: in {port:#x} -> {data:02x?}");
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if shared.mmio.read(addr, data) {
                    continue;
                }
                if let Some(hvm) = &shared.hvm {
                    hvm.ros_denied_access(id, addr, data.len(), false);
                }
                data.fill(0xff);
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if shared.mmio.write(addr, data) {
                    continue;
                }
                if let Some(hvm) = &shared.hvm {
                    hvm.ros_denied_access(id, addr, data.len(), true);
                }
            }
            Ok(VcpuExit::Hlt) => {
                // Only without an in-kernel LAPIC; duet always has one. Treat as idle.
                std::thread::yield_now();
            }
            Ok(VcpuExit::Shutdown) => {
                break GuestFault::TripleFault { vcpu: id, regs: RegsSummary::read(&vcpu) };
            }
            Ok(VcpuExit::FailEntry(reason, _)) => break GuestFault::FailEntry { vcpu: id, reason },
            Ok(VcpuExit::InternalError) => {
                // SAFETY: KVM_EXIT_INTERNAL_ERROR fills the `internal` member of the exit union.
                let suberror = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                if suberror != KVM_INTERNAL_ERROR_EMULATION {
                    break GuestFault::Internal { vcpu: id, suberror, regs: RegsSummary::read(&vcpu) };
                }
                match fallback::handle(&vcpu, &shared.mem) {
                    Ok(()) => {
                        log::debug!("vCPU {id}: emulation fallback taken");
                        shared.fallbacks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(report) => break GuestFault::Unsupported { vcpu: id, report },
                }
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                break GuestFault::UnexpectedExit { vcpu: id, exit: format!("system event {kind}") };
            }
            Ok(other) => break GuestFault::UnexpectedExit { vcpu: id, exit: format!("{other:?}") },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                log::trace!("vCPU {id}: KVM_RUN interrupted");
                vcpu.set_kvm_immediate_exit(0);
            }
            Err(e) => break GuestFault::UnexpectedExit { vcpu: id, exit: format!("KVM_RUN failed: {e}") },
        }
    };
    if !shared.stopping.load(Ordering::Acquire) {
        log::debug!("vCPU {id}: {fault}");
        shared.faults.lock().unwrap_or_else(|p| p.into_inner()).push(fault);
        // A failed wake-up only delays the stop until the VMM's next timeout tick.
        let _ = shared.fault_evt.write(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_reports_name_the_vcpu_and_registers() {
        let regs = RegsSummary { rip: 0xffff_ffff_8100_0000, ..Default::default() };
        let text = GuestFault::TripleFault { vcpu: 1, regs }.to_string();
        assert!(text.contains("vCPU 1") && text.contains("triple") && text.contains("0xffffffff81000000"), "{text}");
        let text = GuestFault::Unsupported { vcpu: 0, report: "xgetbv is not supported".into() }.to_string();
        assert!(text.contains("xgetbv"));
    }
}
