//! Hybrid virtual machine (HVM) support for duet: the partition layout of a VM shared by a Linux ROS and a
//! specialized HRT kernel, the HVM information given to the HRT, and decoding of the hypercall ABI.
//!
//! This crate is plain code and never touches KVM; `vmm` wires it to vCPUs. It is `no_std` so guests
//! (the HRT, the ROS `hvm` tool) can share the ABI definitions.
//!
//! - [`abi`]: the hypercall ABI (version 1, draft): operations, error codes, validated decoding.
//!
//! The partitioned VM itself (layout, HVM info, serving hypercalls) is being built.
#![no_std]

pub mod abi;

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
