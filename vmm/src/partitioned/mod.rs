//! The partitioned VM (HVM): one VM as the user sees it, two KVM VMs underneath. The ROS's KVM VM maps
//! only the ROS's RAM; the HRT's maps all of it (the same host memory), so isolation is enforced by
//! second-level paging, and ROS IPIs and device interrupts cannot reach HRT cores (they are not in the
//! ROS's VM).
//!
//! [`PartitionedVm`] is composed of parts with one job each: the [`Topology`](topology) fixed at build
//! time, the HRT's [`Lifecycle`](lifecycle) state machine, the [`EventQueues`](events), the
//! [`InvokeSlots`](slots) and the [`IsolationLog`](isolation). `hypercall.rs` serves the hypercalls
//! from both partitions with them; `cores.rs` runs the HRT's vCPU threads, `supervisor.rs` carries out
//! boots and halts, `build.rs` builds the HRT's side, and `doorbell.rs` wires the doorbells (ROS → HRT
//! core in the kernel, HRT core → ROS through a UART).

mod build;
mod cores;
mod doorbell;
mod events;
mod hypercall;
mod isolation;
mod lifecycle;
mod slots;
mod supervisor;
mod topology;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use devices::stop::StopSignal;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

pub(crate) use build::{build, HrtSide, RosSide};
pub(crate) use cores::run_core;
pub(crate) use supervisor::run as run_supervisor;

use crate::outcome::HypercallStats;
use events::EventQueues;
use isolation::IsolationLog;
use lifecycle::Lifecycle;
use slots::InvokeSlots;
use topology::Topology;

/// The state both partitions' vCPU threads share.
pub(crate) struct PartitionedVm {
    topology: Topology,
    /// All guest memory (the HRT's view).
    mem: GuestMemoryMmap<()>,
    /// The HRT's KVM VM (invokes wake its cores by MSI; doorbell routes).
    hrt_vm: VmFd,
    lifecycle: Arc<Lifecycle>,
    events: EventQueues,
    slots: InvokeSlots,
    isolation: IsolationLog,
    /// The VM's stop signal (the ROS's EXIT hypercall).
    stop: Arc<StopSignal>,
    hypercalls: AtomicU64,
    register_ioctls: AtomicU64,
    sync_regs: bool,
}

impl std::fmt::Debug for PartitionedVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionedVm").field("topology", &self.topology).finish_non_exhaustive()
    }
}

impl PartitionedVm {
    /// HRT cores.
    pub fn hrt_cores(&self) -> u32 {
        self.topology.hrt_cores()
    }

    /// A ROS access to guest-physical memory its VM does not map: reads see all ones, writes are
    /// dropped; accesses to the HRT's RAM are logged.
    pub fn ros_denied_access(&self, vcpu: u8, addr: u64, len: usize, write: bool) {
        self.isolation.denied(&self.topology.layout, vcpu, addr, len, write);
    }

    /// Counts register ioctls a vCPU made while serving hypercalls (0 with `KVM_CAP_SYNC_REGS`).
    pub fn add_register_ioctls(&self, n: u64) {
        self.register_ioctls.fetch_add(n, Ordering::Relaxed);
    }

    /// Hypercalls served so far and what they cost in register ioctls.
    pub fn hypercall_stats(&self) -> HypercallStats {
        HypercallStats {
            served: self.hypercalls.load(Ordering::Relaxed),
            register_ioctls: self.register_ioctls.load(Ordering::Relaxed),
            sync_regs: self.sync_regs,
        }
    }

    /// Ends every wait of the HRT's threads (the VM is stopping; their kicks follow).
    pub fn shutdown(&self) {
        self.lifecycle.shutdown();
    }
}
