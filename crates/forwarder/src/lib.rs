//! The syscall-forwarding channel between the HRT and its partner process (the proxy) in the ROS.
//!
//! This crate will hold the versioned `#[repr(C)]` channel ABI and the single-producer/single-consumer
//! ring shared by both sides; it is `no_std` so the HRT kernel and the ROS proxy link the same code.
//! The channel itself arrives with the forwarding milestone; for now the crate fixes the ABI version.
#![no_std]

/// Version of the forwarding channel ABI. Bumped on any incompatible change to the shared records.
pub const ABI_VERSION: u32 = 0;

#[cfg(test)]
mod tests {
    #[test]
    fn abi_version_is_pre_release() {
        assert_eq!(super::ABI_VERSION, 0);
    }
}
