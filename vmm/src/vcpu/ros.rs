//! The ROS's vCPUs (or the only kernel's, outside a partitioned VM): their exit handler and threads.
//! Port I/O goes to the VM's bus, MMIO to the virtio windows; in a partitioned VM the hypercall port
//! goes to the partitioned VM, and MMIO outside the windows is logged when it aims at the HRT's RAM.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use devices::bus::PioBus;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::fault::{GuestFault, RegsSummary};
use super::regs::Vcpu;
use super::run::{self, ExitHandler};
use crate::partitioned::PartitionedVm;
use crate::virtio::MmioBus;

/// What the ROS's vCPU threads share with the VMM.
#[derive(Clone)]
pub(crate) struct VcpuShared {
    /// Port-I/O devices.
    pub bus: Arc<PioBus>,
    /// The virtio-mmio devices; an access anywhere else reads all ones and writes nothing.
    pub mmio: Arc<MmioBus>,
    /// Guest memory (for the emulation fallback's operand accesses).
    pub mem: GuestMemoryMmap<()>,
    /// Set by the VMM when the VM stops.
    pub stopping: Arc<AtomicBool>,
    /// Guest faults, first one first.
    pub faults: Arc<Mutex<Vec<GuestFault>>>,
    /// Written when a fault is recorded, to wake the VMM's event loop.
    pub fault_evt: Arc<EventFd>,
    /// Count of emulation fallbacks taken (int3 injections, x87/MXCSR emulations).
    pub fallbacks: Arc<AtomicU64>,
    /// Each vCPU's registers when it stopped (for the report of a timed-out VM).
    pub final_regs: Arc<Mutex<Vec<(u8, RegsSummary)>>>,
    /// In a partitioned VM (these are then the ROS's vCPUs): what serves hypercalls and logs denied
    /// accesses to the HRT's memory.
    pub partitioned: Option<Arc<PartitionedVm>>,
}

struct RosExits<'a> {
    shared: &'a VcpuShared,
    id: u8,
}

impl ExitHandler for RosExits<'_> {
    fn should_stop(&self) -> bool {
        self.shared.stopping.load(Ordering::Acquire)
    }

    fn hypercall_port(&self) -> Option<u16> {
        self.shared.partitioned.as_ref().map(|_| abi::HYPERCALL_PORT)
    }

    fn hypercall(&mut self, vcpu: &mut Vcpu) {
        if let Some(p) = &self.shared.partitioned {
            p.hypercall(vcpu, hvm::Partition::Ros, u32::from(self.id));
        }
    }

    fn pio_out(&mut self, port: u16, data: &[u8]) {
        self.shared.bus.write(port, data);
    }

    fn pio_in(&mut self, port: u16, data: &mut [u8]) {
        self.shared.bus.read(port, data);
    }

    fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        if self.shared.mmio.read(addr, data) {
            return;
        }
        if let Some(p) = &self.shared.partitioned {
            p.ros_denied_access(self.id, addr, data.len(), false);
        }
        data.fill(0xff);
    }

    fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if self.shared.mmio.write(addr, data) {
            return;
        }
        if let Some(p) = &self.shared.partitioned {
            p.ros_denied_access(self.id, addr, data.len(), true);
        }
    }

    fn memory(&self) -> &GuestMemoryMmap<()> {
        &self.shared.mem
    }

    fn fallback_taken(&mut self) {
        self.shared.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs ROS vCPU `id` until the VM stops (its registers are kept for the report) or the guest faults
/// (the fault is recorded and the VMM woken, which stops the VM).
pub(crate) fn run_thread(mut vcpu: Vcpu, id: u8, shared: VcpuShared) {
    let result = run::run(&mut vcpu, id, &mut RosExits { shared: &shared, id });
    if let Some(p) = &shared.partitioned {
        p.add_register_ioctls(vcpu.take_register_ioctls());
    }
    match result {
        Ok(()) => {
            let regs = RegsSummary::read(&vcpu.fd);
            shared.final_regs.lock().unwrap_or_else(|p| p.into_inner()).push((id, regs));
        }
        Err(fault) if !shared.stopping.load(Ordering::Acquire) => {
            log::debug!("vCPU {id}: {fault}");
            shared.faults.lock().unwrap_or_else(|p| p.into_inner()).push(fault);
            // A failed wake-up only delays the stop until the VMM's next timeout tick.
            let _ = shared.fault_evt.write(1);
        }
        Err(_) => {}
    }
}
