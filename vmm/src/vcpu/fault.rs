//! What a guest-caused end of a vCPU looks like: the fault and the registers worth printing.

use std::fmt;

use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuFd;

/// A guest-caused end of the VM, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestFault {
    /// The vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// The vCPU.
        vcpu: u8,
        /// Its registers at the time.
        regs: RegsSummary,
    },
    /// The guest ran an instruction this host's KVM cannot emulate.
    Unsupported {
        /// The vCPU.
        vcpu: u8,
        /// The report: RIP, instruction bytes, disassembly.
        report: String,
    },
    /// KVM reported another internal error.
    Internal {
        /// The vCPU.
        vcpu: u8,
        /// KVM's suberror code.
        suberror: u32,
        /// Registers.
        regs: RegsSummary,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// The vCPU.
        vcpu: u8,
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// An exit duet does not handle.
    UnexpectedExit {
        /// The vCPU.
        vcpu: u8,
        /// The exit, as text.
        exit: String,
    },
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFault::TripleFault { vcpu, regs } => write!(f, "vCPU {vcpu} triple-faulted (KVM_EXIT_SHUTDOWN): {regs}"),
            GuestFault::Unsupported { vcpu, report } => write!(f, "vCPU {vcpu}: {report}"),
            GuestFault::Internal { vcpu, suberror, regs } => {
                write!(f, "vCPU {vcpu}: KVM internal error (suberror {suberror}): {regs}")
            }
            GuestFault::FailEntry { vcpu, reason } => {
                write!(f, "vCPU {vcpu}: KVM failed to enter the guest (hardware reason {reason:#x})")
            }
            GuestFault::UnexpectedExit { vcpu, exit } => write!(f, "vCPU {vcpu}: unexpected exit {exit}"),
        }
    }
}

/// The registers worth printing when a guest dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegsSummary {
    /// RIP.
    pub rip: u64,
    /// RSP.
    pub rsp: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// RAX.
    pub rax: u64,
    /// CR0, CR2, CR3, CR4.
    pub cr: [u64; 4],
}

impl RegsSummary {
    /// Reads them from a vCPU (zeros where an ioctl fails: this only ever serves a report).
    pub(crate) fn read(vcpu: &VcpuFd) -> Self {
        let regs = vcpu.get_regs().unwrap_or_default();
        let sregs = vcpu.get_sregs().unwrap_or_default();
        RegsSummary::from_kvm(&regs, [sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4])
    }

    fn from_kvm(regs: &kvm_regs, cr: [u64; 4]) -> Self {
        RegsSummary { rip: regs.rip, rsp: regs.rsp, rflags: regs.rflags, rax: regs.rax, cr }
    }
}

impl fmt::Display for RegsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RIP={:#018x} RSP={:#018x} RFLAGS={:#x} RAX={:#x} CR0={:#x} CR2={:#x} CR3={:#x} CR4={:#x}",
            self.rip, self.rsp, self.rflags, self.rax, self.cr[0], self.cr[1], self.cr[2], self.cr[3]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_reports_name_the_vcpu_and_registers() {
        let regs = RegsSummary { rip: 0xffff_ffff_8100_0000, ..Default::default() };
        let text = GuestFault::TripleFault { vcpu: 1, regs }.to_string();
        assert!(text.contains("vCPU 1") && text.contains("triple") && text.contains("0xffffffff81000000"), "{text}");
        let text = GuestFault::Unsupported { vcpu: 0, report: "xgetbv is not supported".into() }.to_string();
        assert!(text.contains("xgetbv"));
    }
}
