//! Guest RAM, allocated as the plan says: one mapping of every range; in a partitioned VM the ROS's
//! view of it leaves out the HRT's range (the same host memory, fewer regions).

use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

use crate::error::VmmError;
use crate::plan::RamPlan;

/// The VM's RAM.
pub(crate) struct GuestRam {
    /// What the ROS (or the only kernel) sees.
    pub ros: GuestMemoryMmap<()>,
    /// All of it, for the HRT of a partitioned VM.
    pub all: Option<GuestMemoryMmap<()>>,
}

impl GuestRam {
    /// Allocates `plan`'s RAM.
    pub fn new(plan: &RamPlan) -> Result<GuestRam, VmmError> {
        let ranges: Vec<_> = plan.ranges.iter().map(|r| (r.start, r.len as usize)).collect();
        let top = plan.ranges.iter().map(|r| r.end()).max().unwrap_or(0);
        let all = GuestMemoryMmap::from_ranges(&ranges).map_err(|source| VmmError::Memory { mib: top >> 20, source })?;
        let Some(hrt) = plan.hrt else { return Ok(GuestRam { ros: all, all: None }) };
        let (ros, _) = all
            .remove_region(hrt.start, hrt.len)
            .map_err(|_| VmmError::Unsupported("a ROS memory view without the HRT's range"))?;
        Ok(GuestRam { ros, all: Some(all) })
    }
}

/// Registers every region of `mem` with `vm`.
pub(crate) fn register(vm: &VmFd, mem: &GuestMemoryMmap<()>) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|_| VmmError::Kvm { what: "finding guest memory", source: kvm_ioctls::Error::new(libc::EFAULT) })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM outlives only after its
        // vCPUs have stopped (see `Vm`'s field order and `run`).
        unsafe { vm.set_user_memory_region(r) }.map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}
