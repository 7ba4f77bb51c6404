//! The one vCPU run loop: KVM_RUN, then the exit served through an [`ExitHandler`] (Cloud
//! Hypervisor's `VmOps` seam). The loop knows nothing of partitions: the ROS's vCPUs and the HRT's
//! cores differ only in their handler (what their buses hold, where a hypercall goes, when they stop).
//! Faults end the loop and are the caller's to report: the ROS's end the VM, the HRT's are contained.

use kvm_bindings::KVM_INTERNAL_ERROR_EMULATION;
use kvm_ioctls::VcpuExit;
use vm_memory::GuestMemoryMmap;

use super::fallback;
use super::fault::{GuestFault, RegsSummary};
use super::regs::Vcpu;

/// What differs between the vCPUs of one partition and another.
pub(crate) trait ExitHandler {
    /// Whether the loop should return before the next KVM_RUN (the VM stops; an HRT boot is over).
    fn should_stop(&self) -> bool;
    /// The port whose writes are hypercalls ([`ExitHandler::hypercall`] serves them), if any.
    fn hypercall_port(&self) -> Option<u16> {
        None
    }
    /// Serves a hypercall: reads the arguments from `vcpu`'s registers and writes the results back.
    fn hypercall(&mut self, _vcpu: &mut Vcpu) {}
    /// A port write.
    fn pio_out(&mut self, port: u16, data: &[u8]);
    /// A port read.
    fn pio_in(&mut self, port: u16, data: &mut [u8]);
    /// An MMIO read (of an address no memory slot backs).
    fn mmio_read(&mut self, addr: u64, data: &mut [u8]);
    /// An MMIO write.
    fn mmio_write(&mut self, addr: u64, data: &[u8]);
    /// Guest memory as this vCPU sees it (for the emulation fallback's operands).
    fn memory(&self) -> &GuestMemoryMmap<()>;
    /// The emulation fallback handled an instruction KVM could not (PVM hosts).
    fn fallback_taken(&mut self) {}
}

/// Runs `vcpu` (index `id`, for reports) until `handler` says stop (`Ok`) or the guest faults.
pub(crate) fn run(vcpu: &mut Vcpu, id: u8, handler: &mut impl ExitHandler) -> Result<(), GuestFault> {
    loop {
        if handler.should_stop() {
            return Ok(());
        }
        let hypercall_port = handler.hypercall_port();
        match vcpu.fd.run() {
            Ok(VcpuExit::IoOut(port, _)) if Some(port) == hypercall_port => handler.hypercall(vcpu),
            Ok(VcpuExit::IoOut(port, data)) => {
                log::trace!("vCPU {id}: out {port:#x} {data:02x?}");
                handler.pio_out(port, data);
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                handler.pio_in(port, data);
                log::trace!("vCPU {id}: in {port:#x} -> {data:02x?}");
            }
            Ok(VcpuExit::MmioRead(addr, data)) => handler.mmio_read(addr, data),
            Ok(VcpuExit::MmioWrite(addr, data)) => handler.mmio_write(addr, data),
            // Only without an in-kernel LAPIC; duet always has one. Treat as idle.
            Ok(VcpuExit::Hlt) => std::thread::yield_now(),
            Ok(VcpuExit::Shutdown) => return Err(GuestFault::TripleFault { vcpu: id, regs: RegsSummary::read(&vcpu.fd) }),
            Ok(VcpuExit::FailEntry(reason, _)) => return Err(GuestFault::FailEntry { vcpu: id, reason }),
            Ok(VcpuExit::InternalError) => {
                // SAFETY: KVM_EXIT_INTERNAL_ERROR fills the `internal` member of the exit union.
                let suberror = unsafe { vcpu.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                if suberror != KVM_INTERNAL_ERROR_EMULATION {
                    return Err(GuestFault::Internal { vcpu: id, suberror, regs: RegsSummary::read(&vcpu.fd) });
                }
                fallback::handle(&vcpu.fd, handler.memory()).map_err(|report| GuestFault::Unsupported { vcpu: id, report })?;
                log::debug!("vCPU {id}: emulation fallback taken");
                handler.fallback_taken();
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => {
                return Err(GuestFault::UnexpectedExit { vcpu: id, exit: format!("system event {kind}") })
            }
            Ok(other) => return Err(GuestFault::UnexpectedExit { vcpu: id, exit: format!("{other:?}") }),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                log::trace!("vCPU {id}: KVM_RUN interrupted");
                vcpu.fd.set_kvm_immediate_exit(0);
            }
            Err(e) => return Err(GuestFault::UnexpectedExit { vcpu: id, exit: format!("KVM_RUN failed: {e}") }),
        }
    }
}
