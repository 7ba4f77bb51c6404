//! What both partitions' KVM VMs and vCPUs are made of: a KVM VM with its in-kernel interrupt
//! controllers and guest memory, and vCPUs with CPUID, MSRs, FPU, LAPIC and KVM statistics.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use devices::debug_port::Marks;
use devices::stop::StopSignal;
use hvm::Partition;
use kvm_bindings::{kvm_pit_config, CpuId, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use crate::error::VmmError;
use crate::stats::StatsProbe;
use crate::vcpu::regs::Vcpu;
use crate::vcpu::setup::{self, CpuidMask};

/// Where KVM puts its TSS and identity-map pages (Intel needs them; three pages below the BIOS).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// What every part of one VM shares: KVM's CPUID, the host's abilities, the stop signal, the marks and
/// their probe, and the VM-wide stop flag.
pub(crate) struct VmContext {
    /// KVM's supported CPUID, adjusted per vCPU.
    pub cpuid: CpuId,
    /// What the platform hides from the guest's CPUID.
    pub cpuid_mask: CpuidMask,
    /// Whether the host shares vCPU registers through the run page (`KVM_CAP_SYNC_REGS`).
    pub sync_regs: bool,
    /// The VM's stop signal (debug port, i8042, the ROS's EXIT hypercall).
    pub stop: Arc<StopSignal>,
    /// Debug-port marks.
    pub marks: Marks,
    /// Samples every vCPU's KVM statistics at each mark.
    pub probe: Arc<StatsProbe>,
    /// Set when the VM stops; vCPU threads end.
    pub stopping: Arc<AtomicBool>,
}

impl VmContext {
    /// The context of a VM on `kvm` whose platform hides `cpuid_mask`.
    pub fn new(kvm: &Kvm, cpuid_mask: CpuidMask) -> Result<VmContext, VmmError> {
        Ok(VmContext {
            cpuid: setup::supported_cpuid(kvm)?,
            cpuid_mask,
            sync_regs: kvm.check_extension(Cap::SyncRegs),
            stop: Arc::new(StopSignal::new().map_err(VmmError::io("creating the stop eventfd"))?),
            marks: Marks::default(),
            probe: Arc::new(StatsProbe::default()),
            stopping: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Creates vCPU `apic_id` of `vm` (one of `total` in both partitions), index `index` of
    /// `partition`: configured, its statistics sampled at marks.
    pub fn vcpu(&self, vm: &VmFd, apic_id: u8, total: u8, partition: Partition, index: u8) -> Result<Vcpu, VmmError> {
        let fd: VcpuFd = vm.create_vcpu(u64::from(apic_id)).map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        self.probe.add(partition, index, &fd);
        let cpuid = setup::cpuid_for(&self.cpuid, apic_id, total, self.cpuid_mask);
        setup::configure_common(&fd, apic_id, &cpuid)?;
        Ok(Vcpu::new(fd, self.sync_regs))
    }
}

/// A KVM VM on `kvm` for `partition` with `mem` registered: its in-kernel LAPICs and IOAPIC, and for
/// the ROS (which owns the devices) the PIT.
pub(crate) fn create_vm(kvm: &Kvm, mem: &GuestMemoryMmap<()>, partition: Partition) -> Result<VmFd, VmmError> {
    let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
    vm.set_tss_address(KVM_TSS_ADDRESS).map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    if partition == Partition::Ros {
        if let Err(e) = vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS) {
            log::debug!("KVM_SET_IDENTITY_MAP_ADDR not available ({e}); continuing");
        }
    }
    vm.create_irq_chip().map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
    if partition == Partition::Ros {
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(VmmError::kvm("KVM_CREATE_PIT2"))?;
    }
    crate::memory::register(&vm, mem)?;
    Ok(vm)
}
