//! Hybrid virtual machine (HVM) support for duet: the pieces of a partitioned VM — one VM shared by a
//! Linux ROS and a specialized HRT kernel — that are plain code over guest memory and unit-test without
//! KVM. `vmm` wires them to vCPUs.
//!
//! - [`layout`]: where the ROS's and the HRT's RAM and the VMM's structures go.
//! - [`entry`]: the HRT's boot: Multiboot2 with the HVM information tag, and the 64-bit HVM entry.
//! - [`paging`]: the HRT's 64-bit page tables, and walks of a caller's page tables for hypercall
//!   buffers (where isolation holds for hypercalls).
//! - [`hypercall`]: decoding and validating hypercalls.
//!
//! The ABI itself (operations, errors, structures) is the dependency-free `abi` crate, re-exported
//! here as [`abi`], which guests share.

pub use abi;

pub mod entry;
pub mod hypercall;
pub mod layout;
pub mod paging;

/// Which side of a partitioned VM a vCPU or a memory range belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    /// The regular OS (Linux): owns devices, sees only its own cores and memory.
    Ros,
    /// The hybrid runtime (specialized kernel): sees the whole machine.
    Hrt,
}

impl Partition {
    /// The name used in configs, logs and documentation.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Ros => "ros",
            Partition::Hrt => "hrt",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_match_the_config_sections() {
        assert_eq!(Partition::Ros.name(), "ros");
        assert_eq!(Partition::Hrt.name(), "hrt");
    }
}
