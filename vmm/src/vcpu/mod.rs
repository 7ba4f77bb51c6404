//! vCPUs: one thread per vCPU, each running the one run loop ([`run`]) with its partition's exit
//! handler until the VM stops.
//!
//! A thread ends when the VMM sets the shared `stopping` flag and kicks it with a signal (which makes
//! KVM_RUN return EINTR), or when its guest faults (triple fault, an instruction this host's KVM cannot
//! emulate, a KVM internal error). A ROS fault is reported to the VMM and stops the VM; an HRT fault is
//! contained (`crate::partitioned`).

pub(crate) mod emulate;
pub(crate) mod fallback;
mod fault;
pub(crate) mod regs;
pub(crate) mod ros;
pub(crate) mod run;
pub(crate) mod setup;

pub use fault::{GuestFault, RegsSummary};
