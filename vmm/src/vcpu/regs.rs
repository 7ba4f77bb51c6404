//! A vCPU with register access for exit handlers: through KVM's shared run page (`KVM_CAP_SYNC_REGS`,
//! DESIGN §5) where the host has it, so serving a hypercall costs no register ioctl at all; through
//! `KVM_GET_REGS`/`KVM_SET_REGS`/`KVM_GET_SREGS` otherwise. With sync registers KVM copies the
//! general and system registers into the run page on every exit, and loads the general registers
//! back on the next entry when they were written.

use kvm_bindings::{kvm_regs, kvm_sregs};
use kvm_ioctls::{SyncReg, VcpuFd};

/// A vCPU fd and how its registers are reached.
pub(crate) struct Vcpu {
    /// The KVM vCPU.
    pub fd: VcpuFd,
    sync: bool,
    /// Register ioctls made through [`Vcpu::regs`], [`Vcpu::set_regs`] and [`Vcpu::sregs`] since the
    /// last [`Vcpu::take_register_ioctls`].
    ioctls: u64,
}

impl Vcpu {
    /// Wraps `fd`; with `sync_regs` (the host has `KVM_CAP_SYNC_REGS`) asks KVM to share the registers
    /// through the run page from the next exit on.
    pub fn new(mut fd: VcpuFd, sync_regs: bool) -> Vcpu {
        if sync_regs {
            fd.set_sync_valid_reg(SyncReg::Register);
            fd.set_sync_valid_reg(SyncReg::SystemRegister);
        }
        Vcpu { fd, sync: sync_regs, ioctls: 0 }
    }

    /// The general registers as of the last exit.
    pub fn regs(&mut self) -> Result<kvm_regs, kvm_ioctls::Error> {
        if self.sync {
            return Ok(self.fd.sync_regs_mut().regs);
        }
        self.ioctls += 1;
        self.fd.get_regs()
    }

    /// Sets the general registers for the next entry.
    pub fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), kvm_ioctls::Error> {
        if self.sync {
            self.fd.sync_regs_mut().regs = *regs;
            self.fd.set_sync_dirty_reg(SyncReg::Register);
            return Ok(());
        }
        self.ioctls += 1;
        self.fd.set_regs(regs)
    }

    /// The system registers as of the last exit.
    pub fn sregs(&mut self) -> Result<kvm_sregs, kvm_ioctls::Error> {
        if self.sync {
            return Ok(self.fd.sync_regs_mut().sregs);
        }
        self.ioctls += 1;
        self.fd.get_sregs()
    }

    /// Forgets register writes not yet loaded (before the vCPU's state is set by ioctls, as on an HRT
    /// reboot, so the next entry does not bring them back).
    pub fn discard_register_writes(&mut self) {
        if self.sync {
            self.fd.clear_sync_dirty_reg(SyncReg::Register);
        }
    }

    /// Register ioctls made since the last call (0 with sync registers).
    pub fn take_register_ioctls(&mut self) -> u64 {
        std::mem::take(&mut self.ioctls)
    }
}
