//! What a partitioned VM is made of, fixed at build time: the layout, each partition's cores, the TSC
//! frequency and the forwarding settings; everything an HRT boot describes to the HRT.

use abi::ForwardMode;
use boot::multiboot2::ModuleSource;
use hvm::entry::HrtBootSpec;
use hvm::layout::PartitionLayout;

/// The MSI address that delivers to LAPIC `apic_id` (physical destination mode); with the HRT's wake
/// vector as data, the message an invoke and an HRT doorbell send.
pub(crate) fn msi_address(apic_id: u32) -> u32 {
    0xfee0_0000 | (apic_id << 12)
}

/// The partitions' shape.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// Where each partition's RAM and the VMM's structures are.
    pub layout: PartitionLayout,
    /// APIC IDs of the HRT's cores, by core index (after the ROS's).
    pub hrt_apic_ids: Vec<u32>,
    /// APIC IDs of the ROS's cores.
    pub ros_apic_ids: Vec<u32>,
    /// TSC frequency in kHz, or 0.
    pub tsc_khz: u64,
    /// How forwarding channels wait.
    pub forward: ForwardMode,
    /// Adaptive forwarding's spin bound, µs.
    pub forward_spin_us: u32,
}

impl Topology {
    /// HRT cores.
    pub fn hrt_cores(&self) -> u32 {
        self.hrt_apic_ids.len() as u32
    }

    /// APIC ID of HRT core `core` (its KVM vCPU id).
    pub fn hrt_apic_id(&self, core: u32) -> u32 {
        self.hrt_apic_ids.get(core as usize).copied().unwrap_or(0)
    }

    /// The HRT's boot description: `kernel`'s image with the VM's partitions and forwarding mode.
    pub fn boot_spec<'a>(&'a self, kernel: &'a [u8], cmdline: &'a str, modules: &'a [ModuleSource<'a>]) -> HrtBootSpec<'a> {
        HrtBootSpec {
            kernel,
            cmdline,
            modules,
            layout: &self.layout,
            hrt_apic_ids: &self.hrt_apic_ids,
            ros_apic_ids: &self.ros_apic_ids,
            tsc_khz: self.tsc_khz,
            forward: self.forward,
            forward_spin_us: self.forward_spin_us,
        }
    }
}
