//! Turning plain boot data into a vCPU's KVM state: CPUID, MSRs, FPU, LAPIC, registers.

use boot::entry::{CpuMode, SegmentDescriptor};
use boot::BootEntry;
use kvm_bindings::{
    kvm_fpu, kvm_regs, kvm_segment, kvm_sregs, CpuId, Msrs, kvm_msr_entry, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd};

/// Errors configuring a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// KVM refused the supported-CPUID query.
    #[error("reading KVM's supported CPUID failed")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// A vCPU ioctl failed.
    #[error("{what} failed for vCPU {vcpu}")]
    Ioctl {
        /// Which ioctl.
        what: &'static str,
        /// Which vCPU.
        vcpu: u8,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
}

const CPUID_1_ECX_CX16: u32 = 1 << 13;
/// KVM's paravirtual feature leaf.
const KVM_CPUID_FEATURES: u32 = 0x4000_0001;
/// PV features that work through the `vmcall` hypercall: PV_UNHALT (7, PV spinlock kicks),
/// PV_SEND_IPI (11), PV_SCHED_YIELD (13). On PVM hosts a `vmcall` from emulated guest ring 0 never
/// completes (measured: an SMP guest hangs in its first PV IPI), so duet hides them there.
pub const KVM_PV_HYPERCALL_FEATURES: u32 = (1 << 7) | (1 << 11) | (1 << 13);
const CPUID_1_ECX_HYPERVISOR: u32 = 1 << 31;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRINGS: u64 = 1;
const APIC_LVT_LINT0: usize = 0x350;
const APIC_LVT_LINT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

/// KVM's supported CPUID, read once per VM and adjusted per vCPU.
pub fn supported_cpuid(kvm: &Kvm) -> Result<CpuId, SetupError> {
    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(SetupError::SupportedCpuid)
}

/// What to hide from the guest's CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidMask {
    /// Hide CMPXCHG16B.
    pub cx16: bool,
    /// Hide KVM's hypercall-based PV features ([`KVM_PV_HYPERCALL_FEATURES`]).
    pub pv_hypercalls: bool,
    /// Hide 5-level paging (LA57): both partitions of a partitioned VM must use 4-level page tables,
    /// so the HRT can adopt a ROS process's PML4 entries.
    pub la57: bool,
}

/// CPUID.(EAX=7,ECX=0):ECX bit 16: 5-level paging.
const CPUID_7_ECX_LA57: u32 = 1 << 16;

/// Adjusts CPUID for vCPU `id` of `count`: APIC IDs, the hypervisor bit, and what `mask` hides.
pub fn cpuid_for(base: &CpuId, id: u8, count: u8, mask: CpuidMask) -> CpuId {
    let mut cpuid = base.clone();
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                e.ecx |= CPUID_1_ECX_HYPERVISOR;
                if mask.cx16 {
                    e.ecx &= !CPUID_1_ECX_CX16;
                }
            }
            KVM_CPUID_FEATURES if mask.pv_hypercalls => e.eax &= !KVM_PV_HYPERCALL_FEATURES,
            7 if e.index == 0 && mask.la57 => e.ecx &= !CPUID_7_ECX_LA57,
            0xb | 0x1f => e.edx = u32::from(id),
            _ => {}
        }
    }
    cpuid
}

fn ioctl<T>(vcpu: u8, what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, SetupError> {
    r.map_err(|source| SetupError::Ioctl { what, vcpu, source })
}

/// Everything every vCPU needs before its first run: CPUID, MSRs, FPU, LAPIC local interrupts.
pub fn configure_common(vcpu: &VcpuFd, id: u8, cpuid: &CpuId) -> Result<(), SetupError> {
    ioctl(id, "KVM_SET_CPUID2", vcpu.set_cpuid2(cpuid))?;
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRINGS,
        ..Default::default()
    }])
    .map_err(|_| SetupError::Ioctl { what: "building the MSR list", vcpu: id, source: kvm_ioctls::Error::new(libc::EINVAL) })?;
    ioctl(id, "KVM_SET_MSRS", vcpu.set_msrs(&msrs))?;
    let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    ioctl(id, "KVM_SET_FPU", vcpu.set_fpu(&fpu))?;
    let mut lapic = ioctl(id, "KVM_GET_LAPIC", vcpu.get_lapic())?;
    set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic.regs, APIC_LVT_LINT1, APIC_MODE_NMI);
    ioctl(id, "KVM_SET_LAPIC", vcpu.set_lapic(&lapic))?;
    Ok(())
}

fn set_lvt_mode(regs: &mut [std::os::raw::c_char; 1024], offset: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = regs[offset + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, byte) in v.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *byte as std::os::raw::c_char;
    }
}

fn segment(d: &SegmentDescriptor) -> kvm_segment {
    kvm_segment {
        base: d.base,
        limit: d.limit,
        selector: d.selector,
        type_: d.type_,
        present: u8::from(d.present),
        dpl: d.dpl,
        db: u8::from(d.db),
        s: u8::from(d.s),
        l: u8::from(d.l),
        g: u8::from(d.g),
        avl: 0,
        unusable: u8::from(!d.present),
        padding: 0,
    }
}

/// Applies a kernel's entry state to the boot vCPU.
pub fn apply_entry(vcpu: &VcpuFd, id: u8, entry: &BootEntry) -> Result<(), SetupError> {
    let mut sregs: kvm_sregs = ioctl(id, "KVM_GET_SREGS", vcpu.get_sregs())?;
    let data = segment(&entry.data);
    sregs.cs = segment(&entry.code);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment(&entry.tss);
    sregs.gdt.base = entry.gdt.0;
    sregs.gdt.limit = entry.gdt.1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = entry.cr0;
    sregs.cr3 = entry.cr3;
    sregs.cr4 = entry.cr4;
    sregs.efer = entry.efer;
    if entry.mode == CpuMode::Protected32 {
        sregs.efer = 0;
    }
    ioctl(id, "KVM_SET_SREGS", vcpu.set_sregs(&sregs))?;
    let regs = kvm_regs {
        rflags: 0x2,
        rip: entry.rip,
        rsp: entry.rsp,
        rbp: entry.rsp,
        rsi: entry.rsi,
        rbx: entry.rbx,
        rax: entry.rax,
        rdx: entry.rdx,
        rdi: entry.rdi,
        ..Default::default()
    };
    ioctl(id, "KVM_SET_REGS", vcpu.set_regs(&regs))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn cpuid_gets_apic_id_and_loses_cx16_on_request() {
        let base = CpuId::from_entries(&[
            kvm_cpuid_entry2 { function: 1, ecx: CPUID_1_ECX_CX16 | 1, ebx: 0xaabb_ccdd, ..Default::default() },
            kvm_cpuid_entry2 { function: 0xb, edx: 0, ..Default::default() },
            kvm_cpuid_entry2 { function: KVM_CPUID_FEATURES, eax: 0xffff, ..Default::default() },
            kvm_cpuid_entry2 { function: 7, index: 0, ecx: CPUID_7_ECX_LA57 | 1, ..Default::default() },
        ])
        .expect("cpuid");
        let c = cpuid_for(&base, 3, 4, CpuidMask { cx16: true, pv_hypercalls: true, la57: true });
        let leaf1 = c.as_slice()[0];
        assert_eq!(leaf1.ebx >> 24, 3);
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4);
        assert_eq!(leaf1.ebx & 0xffff, 0xccdd);
        assert_eq!(leaf1.ecx & CPUID_1_ECX_CX16, 0);
        assert_ne!(leaf1.ecx & CPUID_1_ECX_HYPERVISOR, 0);
        assert_eq!(c.as_slice()[1].edx, 3);
        assert_eq!(c.as_slice()[2].eax, 0xffff & !KVM_PV_HYPERCALL_FEATURES);
        assert_eq!(c.as_slice()[3].ecx, 1, "LA57 hidden");
        let keep = cpuid_for(&base, 0, 1, CpuidMask::default());
        assert_ne!(keep.as_slice()[0].ecx & CPUID_1_ECX_CX16, 0);
        assert_eq!(keep.as_slice()[2].eax, 0xffff);
        assert_eq!(keep.as_slice()[3].ecx, CPUID_7_ECX_LA57 | 1);
    }

    #[test]
    fn lvt_mode_bits_are_replaced() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        regs[APIC_LVT_LINT0] = 0x10;
        regs[APIC_LVT_LINT0 + 1] = 0x04; // fixed mode bits set to 0b100 + extra bits
        set_lvt_mode(&mut regs, APIC_LVT_LINT0, APIC_MODE_EXTINT);
        assert_eq!(regs[APIC_LVT_LINT0] as u8, 0x10);
        assert_eq!(regs[APIC_LVT_LINT0 + 1] as u8 & 0x7, 0x7);
    }
}
