//! The ROS's denied accesses to the HRT's memory: its KVM VM does not map the HRT's RAM, so such an
//! access is an MMIO exit, answered with all ones (reads) or dropped (writes), and logged here.

use std::sync::atomic::{AtomicU64, Ordering};

use hvm::layout::PartitionLayout;

/// ROS accesses to HRT memory logged one by one before the log goes quiet (then every 1000th).
const DENIED_LOG_LIMIT: u64 = 16;

/// Counts and logs what the ROS was denied.
#[derive(Debug, Default)]
pub(crate) struct IsolationLog {
    denied: AtomicU64,
}

impl IsolationLog {
    /// A ROS access to guest-physical memory its VM does not map; logged if it aimed at the HRT's RAM
    /// (the first few, then every 1000th).
    pub fn denied(&self, layout: &PartitionLayout, vcpu: u8, addr: u64, len: usize, write: bool) {
        if !layout.in_hrt_ram(addr, len as u64) {
            return;
        }
        let n = self.denied.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= DENIED_LOG_LIMIT || n % 1000 == 0 {
            let what = if write { "write to" } else { "read of" };
            log::warn!("isolation: ROS vCPU {vcpu}: {what} HRT memory at {addr:#x} ({len} bytes) denied ({n} so far)");
        }
    }
}
