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
pub(crate) fn handle(vcpu: &VcpuFd, mem: &GuestMemoryMmap<()>) -> Result<(), String> {
    let ioctl_err = |what: &str, e: kvm_ioctls::Error| format!("emulation fallback: {what} failed: {e}");
    let mut regs = vcpu.get_regs().map_err(|e| ioctl_err("KVM_GET_REGS", e))?;
    let sregs = vcpu.get_sregs().map_err(|e| ioctl_err("KVM_GET_SREGS", e))?;
    let mut fpu = get_fpu_state(vcpu).map_err(|e| ioctl_err("KVM_GET_FPU/KVM_GET_XSAVE", e))?;
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
                set_fpu_state(vcpu, &fpu).map_err(|e| ioctl_err("KVM_SET_FPU/KVM_SET_XSAVE", e))?;
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

/// Bit 0 (x87) and bit 1 (SSE) of the XSAVE header's XSTATE_BV.
const XSTATE_X87_SSE: u64 = 0b11;
/// Offset of XSTATE_BV in the XSAVE image.
const XSTATE_BV_OFFSET: usize = 512;

fn xsave_image(xsave: &kvm_bindings::kvm_xsave) -> [u8; 4096] {
    let mut image = [0u8; 4096];
    for (chunk, word) in image.chunks_exact_mut(4).zip(xsave.region.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    image
}

/// Reads x87/SSE state as the guest sees it. KVM_GET_XSAVE gives the architectural values of components
/// in their init state (KVM_GET_FPU returns the raw legacy area, stale for those), so it is preferred.
fn get_fpu_state(vcpu: &VcpuFd) -> Result<kvm_bindings::kvm_fpu, kvm_ioctls::Error> {
    let Ok(xsave) = vcpu.get_xsave() else {
        return vcpu.get_fpu();
    };
    let image = xsave_image(&xsave);
    let u16_at = |o: usize| u16::from_le_bytes([image[o], image[o + 1]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&image[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let mut fpu = kvm_bindings::kvm_fpu {
        fcw: u16_at(0),
        fsw: u16_at(2),
        ftwx: image[4],
        last_opcode: u16_at(6),
        last_ip: u64_at(8),
        last_dp: u64_at(16),
        mxcsr: u32::from_le_bytes([image[24], image[25], image[26], image[27]]),
        ..Default::default()
    };
    for (i, reg) in fpu.fpr.iter_mut().enumerate() {
        reg.copy_from_slice(&image[32 + i * 16..48 + i * 16]);
    }
    for (i, reg) in fpu.xmm.iter_mut().enumerate() {
        reg.copy_from_slice(&image[160 + i * 16..176 + i * 16]);
    }
    Ok(fpu)
}

/// Writes x87/SSE state so the guest sees it. KVM_SET_FPU alone is not enough on XSAVE hosts: it fills
/// the legacy FXSAVE area, but a component whose XSTATE_BV bit is clear (x87 right after the guest's
/// `fninit`, for example) is restored to its init state, ignoring that area. So where KVM_GET_XSAVE works,
/// the legacy area is written into the XSAVE image with both bits set.
fn set_fpu_state(vcpu: &VcpuFd, fpu: &kvm_bindings::kvm_fpu) -> Result<(), kvm_ioctls::Error> {
    let Ok(mut xsave) = vcpu.get_xsave() else {
        return vcpu.set_fpu(fpu);
    };
    let mut image = xsave_image(&xsave);
    image[0..2].copy_from_slice(&fpu.fcw.to_le_bytes());
    image[2..4].copy_from_slice(&fpu.fsw.to_le_bytes());
    image[4] = fpu.ftwx;
    image[6..8].copy_from_slice(&fpu.last_opcode.to_le_bytes());
    image[8..16].copy_from_slice(&fpu.last_ip.to_le_bytes());
    image[16..24].copy_from_slice(&fpu.last_dp.to_le_bytes());
    image[24..28].copy_from_slice(&fpu.mxcsr.to_le_bytes());
    for (i, reg) in fpu.fpr.iter().enumerate() {
        image[32 + i * 16..48 + i * 16].copy_from_slice(reg);
    }
    for (i, reg) in fpu.xmm.iter().enumerate() {
        image[160 + i * 16..176 + i * 16].copy_from_slice(reg);
    }
    let mut bv = [0u8; 8];
    bv.copy_from_slice(&image[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8]);
    let bv = u64::from_le_bytes(bv) | XSTATE_X87_SSE;
    image[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
    for (word, chunk) in xsave.region.iter_mut().zip(image.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    // SAFETY: the image came from KVM_GET_XSAVE for this vCPU; only the legacy x87/SSE area and the
    // x87/SSE bits of its header changed, so it names no component KVM did not return.
    unsafe { vcpu.set_xsave(&xsave) }
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
