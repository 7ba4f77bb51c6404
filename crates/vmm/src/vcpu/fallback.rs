//! Glue between a vCPU's emulation-failure exit and [`super::emulate`]: read the instruction and its
//! operands through KVM_TRANSLATE, apply the outcome (registers, FPU state, injected exception).

use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::emulate::{self, CpuState, Fallback, GuestMemoryAccess, MemoryAccessError};

const PAGE: u64 = 0x1000;
/// Longest x86 instruction.
const MAX_INSN: usize = 15;

/// Guest-virtual memory of one vCPU: translated page by page, then guest-physical access.
struct VirtualMemory<'a> {
    vcpu: &'a VcpuFd,
    mem: &'a GuestMemoryMmap<()>,
}

impl VirtualMemory<'_> {
    /// Calls `f(gpa, offset_in_buf, len)` for each page-bounded piece of `gva..gva+len`.
    fn pieces(
        &self,
        gva: u64,
        len: usize,
        mut f: impl FnMut(u64, usize, usize) -> Result<(), MemoryAccessError>,
    ) -> Result<(), MemoryAccessError> {
        let mut done = 0usize;
        while done < len {
            let va = gva.wrapping_add(done as u64);
            let t = self.vcpu.translate_gva(va).map_err(|_| MemoryAccessError { gva: va })?;
            if t.valid == 0 {
                return Err(MemoryAccessError { gva: va });
            }
            let n = ((PAGE - (va & (PAGE - 1))) as usize).min(len - done);
            f(t.physical_address, done, n)?;
            done += n;
        }
        Ok(())
    }
}

impl GuestMemoryAccess for VirtualMemory<'_> {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryAccessError> {
        let mem = self.mem;
        self.pieces(gva, buf.len(), |gpa, off, n| {
            mem.read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| MemoryAccessError { gva: gva + off as u64 })
        })
    }

    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemoryAccessError> {
        let mem = self.mem;
        self.pieces(gva, data.len(), |gpa, off, n| {
            mem.write_slice(&data[off..off + n], GuestAddress(gpa))
                .map_err(|_| MemoryAccessError { gva: gva + off as u64 })
        })
    }
}

/// Handles one emulation failure; `Err` carries the report that ends the VM.
pub(super) fn handle(vcpu: &VcpuFd, mem: &GuestMemoryMmap<()>) -> Result<(), String> {
    let ioctl_err = |what: &str, e: kvm_ioctls::Error| format!("emulation fallback: {what} failed: {e}");
    let mut regs = vcpu.get_regs().map_err(|e| ioctl_err("KVM_GET_REGS", e))?;
    let sregs = vcpu.get_sregs().map_err(|e| ioctl_err("KVM_GET_SREGS", e))?;
    let mut fpu = vcpu.get_fpu().map_err(|e| ioctl_err("KVM_GET_FPU", e))?;
    let mut access = VirtualMemory { vcpu, mem };

    // Read up to 15 bytes at RIP, fewer if the next page is not mapped.
    let mut bytes = [0u8; MAX_INSN];
    let first = ((PAGE - (regs.rip & (PAGE - 1))) as usize).min(MAX_INSN);
    access
        .read(regs.rip, &mut bytes[..first])
        .map_err(|e| format!("emulation failure at RIP {:#x}, whose bytes cannot be read: {e}", regs.rip))?;
    let len = if first < MAX_INSN && access.read(regs.rip + first as u64, &mut bytes[first..]).is_err() {
        first
    } else {
        MAX_INSN
    };

    let mut state = CpuState { regs: &mut regs, sregs: &sregs, fpu: &mut fpu };
    let outcome = emulate::handle_emulation_failure(&bytes[..len], &mut state, &mut access)
        .map_err(|e| e.to_string())?;
    match outcome {
        Fallback::Emulated { fpu_changed, regs_changed } => {
            if fpu_changed {
                vcpu.set_fpu(&fpu).map_err(|e| ioctl_err("KVM_SET_FPU", e))?;
            }
            if regs_changed {
                vcpu.set_regs(&regs).map_err(|e| ioctl_err("KVM_SET_REGS", e))?;
            }
        }
        Fallback::InjectBreakpoint => {
            vcpu.set_regs(&regs).map_err(|e| ioctl_err("KVM_SET_REGS", e))?;
            inject(vcpu, 3, None).map_err(|e| ioctl_err("KVM_SET_VCPU_EVENTS", e))?;
        }
        Fallback::InjectException { vector, error_code } => {
            inject(vcpu, vector, error_code).map_err(|e| ioctl_err("KVM_SET_VCPU_EVENTS", e))?;
        }
    }
    Ok(())
}

fn inject(vcpu: &VcpuFd, vector: u8, error_code: Option<u32>) -> Result<(), kvm_ioctls::Error> {
    let mut events = vcpu.get_vcpu_events()?;
    events.exception.injected = 1;
    events.exception.pending = 0;
    events.exception.nr = vector;
    events.exception.has_error_code = u8::from(error_code.is_some());
    events.exception.error_code = error_code.unwrap_or(0);
    vcpu.set_vcpu_events(&events)
}
