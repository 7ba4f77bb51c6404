//! Building the HRT's side of a partitioned VM: its KVM VM (all of guest memory, its own LAPICs), its
//! vCPUs (APIC IDs after the ROS's), its port-I/O bus (a serial port writing whole lines to the same
//! console, the debug port, the hypercall port), aligned TSCs across both KVM VMs, and the doorbells
//! between the two (`doorbell.rs`).

use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use devices::bus::PioBus;
use devices::console::ConsoleSink;
use devices::debug_port::{Marks, DEBUG_PORT, DEBUG_PORTS};
use devices::serial::{SerialPort, COM1_PORT, SERIAL_PORTS};
use devices::stop::StopSignal;
use devices::EventFdTrigger;
use kvm_bindings::{kvm_device_attr, CpuId, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::doorbell::{self, Doorbells, WireArgs};
use super::{HrtDebugPort, HrtVcpu, Hvm, HvmParts};
use crate::error::VmmError;
use crate::plan::HrtPlan;
use crate::platform::PlatformSettings;
use crate::vcpu::setup;

/// The HRT's side, built.
pub struct Partitioned {
    /// The shared state.
    pub hvm: Arc<Hvm>,
    /// The HRT's vCPUs, by core index.
    pub vcpus: Vec<HrtVcpu>,
    /// The doorbells (their relay thread is started by [`crate::Vm::run`]).
    pub doorbells: Doorbells,
}

/// What [`build`] needs from the VM being built.
pub struct BuildArgs<'a> {
    /// /dev/kvm.
    pub kvm: &'a Kvm,
    /// The ROS's KVM VM (the HRT doorbells' ioeventfds, the doorbell UART's irqfd).
    pub ros_vm: &'a VmFd,
    /// The ROS's port bus (gets the doorbell UART at COM2).
    pub ros_bus: &'a mut PioBus,
    /// The HRT's plan.
    pub plan: HrtPlan,
    /// All guest memory.
    pub mem: GuestMemoryMmap<()>,
    /// The ROS's vCPUs (for TSC alignment and the TSC frequency).
    pub ros_vcpus: &'a [VcpuFd],
    /// KVM's supported CPUID.
    pub cpuid: &'a CpuId,
    /// Platform settings.
    pub platform: &'a PlatformSettings,
    /// The console the ROS writes to.
    pub sink: &'a ConsoleSink,
    /// Samples every vCPU's KVM statistics at each mark (gets the HRT's vCPUs).
    pub probe: Arc<crate::stats::StatsProbe>,
    /// The VM's stop signal.
    pub stop: Arc<StopSignal>,
    /// Marks.
    pub marks: Marks,
    /// The VM-wide stop flag.
    pub stopping: Arc<AtomicBool>,
}

/// `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` (kvm-ioctls offers it on vCPUs for aarch64 only).
const KVM_SET_DEVICE_ATTR: libc::c_ulong = 0x4018_aee1;

/// Sets the same TSC offset on every vCPU of both KVM VMs, so the partitions read one clock.
fn align_tsc<'a>(vcpus: impl Iterator<Item = &'a VcpuFd>) {
    // SAFETY: rdtsc has no preconditions.
    let offset: u64 = 0u64.wrapping_sub(unsafe { core::arch::x86_64::_rdtsc() });
    for (i, v) in vcpus.enumerate() {
        let attr = kvm_device_attr {
            flags: 0,
            group: KVM_VCPU_TSC_CTRL,
            attr: u64::from(KVM_VCPU_TSC_OFFSET),
            addr: &offset as *const u64 as u64,
        };
        // SAFETY: KVM_SET_DEVICE_ATTR on a vCPU fd reads one `kvm_device_attr`, which lives across the
        // call, and through its `addr` one u64 (`offset`), which does too.
        let ret = unsafe { libc::ioctl(v.as_raw_fd(), KVM_SET_DEVICE_ATTR, &attr as *const kvm_device_attr) };
        if ret != 0 {
            let e = std::io::Error::last_os_error();
            log::warn!("partitioned VM: aligning the TSC of vCPU {i} failed ({e}): cycle counts of the two partitions may differ by the time between their creation");
            return;
        }
    }
    log::debug!("partitioned VM: TSC offsets aligned");
}

/// Builds the HRT's KVM VM, vCPUs and bus.
pub fn build(a: BuildArgs<'_>) -> Result<Partitioned, VmmError> {
    let ros_cores = a.ros_vcpus.len() as u32;
    let hrt_cores = u32::from(a.plan.vcpus);
    let vm = a.kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM (HRT)"))?;
    vm.set_tss_address(crate::vm::KVM_TSS_ADDRESS).map_err(VmmError::kvm("KVM_SET_TSS_ADDR (HRT)"))?;
    vm.create_irq_chip().map_err(VmmError::kvm("KVM_CREATE_IRQCHIP (HRT)"))?;
    crate::vm::register_memory(&vm, &a.mem)?;
    let tsc_khz = a.ros_vcpus.first().and_then(|v| v.get_tsc_khz().ok()).map_or(0, u64::from);
    let total = u8::try_from(ros_cores + hrt_cores).unwrap_or(u8::MAX);
    let mut fds = Vec::with_capacity(hrt_cores as usize);
    let mut lapics = Vec::with_capacity(hrt_cores as usize);
    for core in 0..hrt_cores {
        let apic = u8::try_from(ros_cores + core).map_err(|_| VmmError::Unsupported("more than 255 vCPUs in all"))?;
        let fd = vm.create_vcpu(u64::from(apic)).map_err(VmmError::kvm("KVM_CREATE_VCPU (HRT)"))?;
        a.probe.add(crate::stats::Partition::Hrt, core as u8, &fd);
        let cpuid = setup::cpuid_for(a.cpuid, apic, total, a.platform.cpuid_mask);
        setup::configure_common(&fd, apic, &cpuid)?;
        lapics.push(fd.get_lapic().map_err(VmmError::kvm("KVM_GET_LAPIC (HRT)"))?);
        fds.push(fd);
    }
    align_tsc(a.ros_vcpus.iter().chain(fds.iter()));

    let mut bus = PioBus::new();
    let hrt_apic_ids: Vec<u32> = (0..hrt_cores).map(|core| ros_cores + core).collect();
    let doorbells = doorbell::wire(WireArgs {
        ros_vm: a.ros_vm,
        hrt_vm: &vm,
        hrt_apic_ids: &hrt_apic_ids,
        ros_bus: a.ros_bus,
        hrt_bus: &mut bus,
        stopping: a.stopping.clone(),
    })?;
    let hvm = Hvm::new(HvmParts {
        plan: a.plan,
        mem: a.mem,
        ros_cores,
        tsc_khz,
        hrt_vm: vm,
        stop: a.stop,
        stopping: a.stopping,
    });
    let sink = a.sink.try_clone().map_err(VmmError::io("sharing the console with the HRT"))?;
    let irq = EventFdTrigger::new().map_err(VmmError::io("creating the HRT serial's (unused) interrupt eventfd"))?;
    let serial = SerialPort::new(irq, std::io::LineWriter::new(sink));
    bus.insert(COM1_PORT, SERIAL_PORTS, Arc::new(Mutex::new(serial)))?;
    bus.insert(DEBUG_PORT, DEBUG_PORTS, Arc::new(Mutex::new(HrtDebugPort::new(&hvm, a.marks, Some(a.probe)))))?;
    let bus = Arc::new(bus);
    let vcpus = fds
        .into_iter()
        .zip(lapics)
        .enumerate()
        .map(|(core, (fd, lapic))| HrtVcpu { fd, core: core as u32, lapic, bus: bus.clone() })
        .collect();
    Ok(Partitioned { hvm, vcpus, doorbells })
}
