//! Hybrid virtual machine (HVM) support for duet: the partition layout of a VM shared by a Linux ROS and a
//! specialized HRT kernel, the HVM information given to the HRT, and decoding of the hypercall ABI.
//!
//! This crate is plain code over guest memory and never touches KVM; `vmm` wires it to vCPUs.
//! The partitioned VM arrives with a later milestone; for now the crate holds the shared vocabulary.
#![no_std]

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
