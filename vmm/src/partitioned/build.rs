//! Building the HRT's side of a partitioned VM: its KVM VM (all of guest memory, its own LAPICs), its
//! vCPUs (APIC IDs after the ROS's), its port-I/O bus (a serial port writing whole lines to the same
//! console, the debug port, the hypercall port), aligned TSCs across both KVM VMs, and the doorbells
//! between the two (`doorbell.rs`).

use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use devices::bus::PioBus;
use devices::console::ConsoleSink;
use devices::debug_port::{DebugPort, DEBUG_PORT, DEBUG_PORTS, HRT_MARK_BIT};
use devices::serial::{SerialPort, COM1_PORT, SERIAL_PORTS};
use devices::EventFdTrigger;
use hvm::Partition;
use kvm_bindings::{kvm_device_attr, KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::cores::HrtCore;
use super::doorbell::{self, Doorbells, WireArgs};
use super::events::EventQueues;
use super::isolation::IsolationLog;
use super::lifecycle::{HrtImage, Lifecycle};
use super::slots::InvokeSlots;
use super::topology::Topology;
use super::PartitionedVm;
use crate::error::VmmError;
use crate::machine::{create_vm, VmContext};
use crate::plan::HrtPlan;

/// What the HRT's side needs of the ROS's.
pub(crate) struct RosSide<'a> {
    /// The ROS's KVM VM (the HRT doorbells' ioeventfds, the doorbell UART's irqfd).
    pub vm: &'a VmFd,
    /// The ROS's port bus (gets the doorbell UART at COM2).
    pub bus: &'a mut PioBus,
    /// The ROS's vCPUs (for TSC alignment and the TSC frequency).
    pub vcpus: &'a [&'a VcpuFd],
    /// The console the ROS writes to.
    pub console: &'a ConsoleSink,
}

/// The HRT's side, built.
pub(crate) struct HrtSide {
    /// The shared state.
    pub vm: Arc<PartitionedVm>,
    /// The HRT's cores, by index.
    pub cores: Vec<HrtCore>,
    /// The doorbells (their relay thread is started by [`crate::Vm::run`]).
    pub doorbells: Doorbells,
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

/// The partitions' shape for `plan` beside `ros_cores` ROS cores.
fn topology(plan: &HrtPlan, ros_cores: u32, tsc_khz: u64) -> Topology {
    Topology {
        layout: plan.layout.clone(),
        hrt_apic_ids: (0..u32::from(plan.vcpus)).map(|core| ros_cores + core).collect(),
        ros_apic_ids: (0..ros_cores).collect(),
        tsc_khz,
        forward: plan.forward,
        forward_spin_us: plan.forward_spin_us,
    }
}

/// Builds the HRT's KVM VM, cores and bus beside the ROS's, over all of guest memory `mem`.
pub(crate) fn build(kvm: &Kvm, ctx: &VmContext, ros: RosSide<'_>, plan: HrtPlan, mem: GuestMemoryMmap<()>) -> Result<HrtSide, VmmError> {
    let ros_cores = ros.vcpus.len() as u32;
    let hrt_vm = create_vm(kvm, &mem, Partition::Hrt)?;
    let tsc_khz = ros.vcpus.first().and_then(|v| v.get_tsc_khz().ok()).map_or(0, u64::from);
    let topology = topology(&plan, ros_cores, tsc_khz);
    let total = u8::try_from(ros_cores + topology.hrt_cores()).map_err(|_| VmmError::Unsupported("more than 255 vCPUs in all"))?;
    let mut vcpus = Vec::with_capacity(topology.hrt_apic_ids.len());
    for (core, &apic) in topology.hrt_apic_ids.iter().enumerate() {
        let apic = u8::try_from(apic).map_err(|_| VmmError::Unsupported("more than 255 vCPUs in all"))?;
        let vcpu = ctx.vcpu(&hrt_vm, apic, total, Partition::Hrt, core as u8)?;
        let lapic = vcpu.fd.get_lapic().map_err(VmmError::kvm("KVM_GET_LAPIC (HRT)"))?;
        vcpus.push((vcpu, lapic));
    }
    align_tsc(ros.vcpus.iter().copied().chain(vcpus.iter().map(|(v, _)| &v.fd)));

    let mut bus = PioBus::new();
    let doorbells = doorbell::wire(WireArgs {
        ros_vm: ros.vm,
        hrt_vm: &hrt_vm,
        hrt_apic_ids: &topology.hrt_apic_ids,
        ros_bus: ros.bus,
        hrt_bus: &mut bus,
        stopping: ctx.stopping.clone(),
    })?;
    let image = HrtImage {
        kernel: plan.kernel.clone(),
        origin: plan.kernel_path.display().to_string(),
        modules: plan.modules.clone(),
        cmdline: plan.cmdline.clone(),
    };
    let lifecycle = Arc::new(Lifecycle::new(image, topology.hrt_cores(), plan.boot == config::HrtBoot::AtStart));
    let sink = ros.console.try_clone().map_err(VmmError::io("sharing the console with the HRT"))?;
    let irq = EventFdTrigger::new().map_err(VmmError::io("creating the HRT serial's (unused) interrupt eventfd"))?;
    bus.insert(COM1_PORT, SERIAL_PORTS, Arc::new(Mutex::new(SerialPort::new(irq, std::io::LineWriter::new(sink)))))?;
    let port = DebugPort::new(lifecycle.clone(), ctx.marks.clone()).with_mark_tag(HRT_MARK_BIT).with_probe(ctx.probe.clone());
    bus.insert(DEBUG_PORT, DEBUG_PORTS, Arc::new(Mutex::new(port)))?;
    let bus = Arc::new(bus);
    let vm = Arc::new(PartitionedVm {
        slots: InvokeSlots::new(topology.layout.hrt_base()),
        topology,
        mem,
        hrt_vm,
        lifecycle,
        events: EventQueues::default(),
        isolation: IsolationLog::default(),
        stop: ctx.stop.clone(),
        hypercalls: AtomicU64::new(0),
        register_ioctls: AtomicU64::new(0),
        sync_regs: ctx.sync_regs,
    });
    let cores = vcpus
        .into_iter()
        .enumerate()
        .map(|(core, (vcpu, lapic))| HrtCore { vcpu, core: core as u32, lapic, bus: bus.clone() })
        .collect();
    Ok(HrtSide { vm, cores, doorbells })
}
