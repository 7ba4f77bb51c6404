//! The HRT's cores: one thread each, parked between boots and running one boot ("epoch") at a time
//! through the one vCPU run loop with the HRT's exit handler. A fault or exit of the HRT stops only
//! the HRT (contained, reported to the ROS).

use std::sync::Arc;

use abi::{HrtFault, HYPERCALL_PORT};
use boot::BootEntry;
use devices::bus::PioBus;
use hvm::Partition;
use kvm_bindings::{kvm_lapic_state, kvm_mp_state, kvm_vcpu_events, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED};
use vm_memory::GuestMemoryMmap;

use super::PartitionedVm;
use crate::vcpu::regs::Vcpu;
use crate::vcpu::run::{self, ExitHandler};
use crate::vcpu::{setup, GuestFault};

/// An HRT vCPU and what it needs to restart.
pub(crate) struct HrtCore {
    /// The vCPU.
    pub vcpu: Vcpu,
    /// Its core index.
    pub core: u32,
    /// Its LAPIC as configured at creation (restored on every boot).
    pub lapic: kvm_lapic_state,
    /// The HRT's port-I/O bus.
    pub bus: Arc<PioBus>,
}

/// Lets KVM finish what the vCPU was in the middle of (a port write whose exit the thread served just
/// before it parked): KVM completes pending I/O on the next KVM_RUN and would then overwrite the entry
/// state `reset` sets. With `immediate_exit`, KVM_RUN completes it and returns at once.
fn complete_pending_io(c: &mut HrtCore) {
    c.vcpu.fd.set_kvm_immediate_exit(1);
    match c.vcpu.fd.run() {
        Err(e) if e.errno() == libc::EINTR => {}
        other => log::debug!("hrt: core {}: completing pending I/O: {other:?}", c.core),
    }
    c.vcpu.fd.set_kvm_immediate_exit(0);
    c.vcpu.discard_register_writes();
}

fn reset(c: &mut HrtCore, entry: Option<&BootEntry>) -> Result<(), String> {
    complete_pending_io(c);
    let fd = &c.vcpu.fd;
    let err = |what: &str, e: kvm_ioctls::Error| format!("{what}: {e}");
    fd.set_vcpu_events(&kvm_vcpu_events::default()).map_err(|e| err("KVM_SET_VCPU_EVENTS", e))?;
    fd.set_lapic(&c.lapic).map_err(|e| err("KVM_SET_LAPIC", e))?;
    let fpu = kvm_bindings::kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    fd.set_fpu(&fpu).map_err(|e| err("KVM_SET_FPU", e))?;
    let mp_state = if entry.is_some() { KVM_MP_STATE_RUNNABLE } else { KVM_MP_STATE_UNINITIALIZED };
    fd.set_mp_state(kvm_mp_state { mp_state }).map_err(|e| err("KVM_SET_MP_STATE", e))?;
    if let Some(entry) = entry {
        setup::apply_entry(fd, c.core as u8, entry).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The HRT's exits during one boot.
struct HrtExits<'a> {
    vm: &'a PartitionedVm,
    bus: &'a PioBus,
    core: u32,
    epoch: u64,
}

impl ExitHandler for HrtExits<'_> {
    fn should_stop(&self) -> bool {
        !self.vm.lifecycle.is_live(self.epoch)
    }

    fn hypercall_port(&self) -> Option<u16> {
        Some(HYPERCALL_PORT)
    }

    fn hypercall(&mut self, vcpu: &mut Vcpu) {
        self.vm.hypercall(vcpu, Partition::Hrt, self.core);
    }

    fn pio_out(&mut self, port: u16, data: &[u8]) {
        self.bus.write(port, data);
    }

    fn pio_in(&mut self, port: u16, data: &mut [u8]) {
        self.bus.read(port, data);
    }

    fn mmio_read(&mut self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn mmio_write(&mut self, _addr: u64, _data: &[u8]) {}

    fn memory(&self) -> &GuestMemoryMmap<()> {
        &self.vm.mem
    }
}

/// How an HRT core's fault is reported.
fn hrt_fault(fault: &GuestFault) -> HrtFault {
    match fault {
        GuestFault::TripleFault { .. } => HrtFault::TripleFault,
        GuestFault::Unsupported { .. } => HrtFault::Unsupported,
        _ => HrtFault::Internal,
    }
}

/// Runs HRT core `c.core` until the VM stops: parked between boots, running each boot once.
pub(crate) fn run_core(vm: Arc<PartitionedVm>, mut c: HrtCore) {
    let core = c.core;
    vm.lifecycle.register_core_thread(core);
    let mut epoch = 0;
    while let Some(entry) = vm.lifecycle.park(core, &mut epoch) {
        if let Err(e) = reset(&mut c, entry.as_ref()) {
            vm.lifecycle.fault(core, HrtFault::Internal, &format!("resetting the core failed: {e}"));
            continue;
        }
        let mut exits = HrtExits { vm: &vm, bus: &c.bus, core, epoch };
        if let Err(fault) = run::run(&mut c.vcpu, core as u8, &mut exits) {
            vm.lifecycle.fault(core, hrt_fault(&fault), &fault.to_string());
        }
    }
}
