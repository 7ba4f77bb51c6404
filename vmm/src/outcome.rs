//! How a VM ended, and what it left behind.

use std::fmt;
use std::time::Duration;

use crate::platform::KvmFlavor;
use crate::vcpu::GuestFault;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest wrote this status to the debug exit port.
    Exit(u32),
    /// The guest reset the machine (Linux `reboot`, or a panic with `panic=-1`).
    Reset,
    /// The run's time limit passed.
    Timeout,
    /// The guest faulted in a way that ends it.
    Fault(GuestFault),
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exit(s) => write!(f, "guest exited with status {s}"),
            ExitReason::Reset => write!(f, "guest reset the machine"),
            ExitReason::Timeout => write!(f, "timed out"),
            ExitReason::Fault(fault) => write!(f, "guest fault: {fault}"),
        }
    }
}

/// A point in time the guest marked on the debug port, relative to the VMM's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkAt {
    /// The mark's code.
    pub code: u32,
    /// Time since `Vm::new` began.
    pub since_start: Duration,
    /// Every vCPU's KVM counters at the mark (empty on a host without KVM's stats fd). The
    /// difference between two marks is what the phase between them cost: see [`crate::stats`].
    pub vcpus: Vec<crate::stats::VcpuSample>,
}

impl MarkAt {
    /// The counters of `partition`'s vCPUs added up.
    pub fn total(&self, partition: hvm::Partition) -> crate::stats::Counters {
        self.vcpus.iter().filter(|v| v.partition == partition).fold(Default::default(), |t, v| t.plus(&v.counters))
    }
}

/// The result of [`crate::Vm::run`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why the VM stopped.
    pub reason: ExitReason,
    /// The console output, when the config asked for `output = "capture"`.
    pub console: Option<Vec<u8>>,
    /// Marks written to the debug port, in order.
    pub marks: Vec<MarkAt>,
    /// The host's KVM.
    pub flavor: KvmFlavor,
    /// Wall time from `Vm::new` to the end of `run`.
    pub elapsed: Duration,
    /// Emulation failures handled by duet's fallback (PVM hosts only).
    pub emulation_fallbacks: u64,
    /// Each vCPU's registers when the VMM stopped it (empty for a vCPU that faulted).
    pub vcpu_regs: Vec<(u8, crate::vcpu::RegsSummary)>,
    /// In a partitioned VM: the hypercalls served and what they cost in register ioctls.
    pub hypercalls: Option<HypercallStats>,
}

/// The hypercalls a partitioned VM served, and the register ioctls they took: none where the host has
/// `KVM_CAP_SYNC_REGS` (registers come through KVM's run page), else two or three per hypercall
/// (`KVM_GET_REGS` and `KVM_SET_REGS`, and `KVM_GET_SREGS` for those that name guest memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HypercallStats {
    /// Hypercalls served (both partitions).
    pub served: u64,
    /// Register ioctls made while serving them.
    pub register_ioctls: u64,
    /// Whether the host shares registers through the run page.
    pub sync_regs: bool,
}

impl fmt::Display for HypercallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = if self.served == 0 { 0.0 } else { self.register_ioctls as f64 / self.served as f64 };
        write!(f, "hypercalls: {} served with {} register ioctl(s) ({per:.2} each", self.served, self.register_ioctls)?;
        if self.sync_regs {
            // Without sync registers each hypercall costs KVM_GET_REGS and KVM_SET_REGS at least.
            write!(f, "; KVM_SYNC_REGS saved at least {}", 2 * self.served)?;
        }
        f.write_str(")")
    }
}

impl Outcome {
    /// The first mark with `code`.
    pub fn mark(&self, code: u32) -> Option<Duration> {
        self.marks.iter().find(|m| m.code == code).map(|m| m.since_start)
    }

    /// The console output as text (lossy), empty when not captured.
    pub fn console_text(&self) -> String {
        self.console.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned()
    }
}
