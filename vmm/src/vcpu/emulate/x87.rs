//! The x87 FPU's state as `kvm_fpu` holds it: the status and control words' fields, the stack top,
//! the tag word, and the environment image `fnstenv`/`fnsave` store.

use kvm_bindings::kvm_fpu;

/// FSW: the exception flags (IE DE ZE OE UE PE).
pub(super) const FSW_EXC: u16 = 0x3F;
/// FSW: invalid operation.
pub(super) const FSW_IE: u16 = 1;
/// FSW: stack fault.
pub(super) const FSW_SF: u16 = 1 << 6;
/// FSW: exception summary.
pub(super) const FSW_ES: u16 = 1 << 7;
/// FSW: condition code C1.
pub(super) const FSW_C1: u16 = 1 << 9;
/// FSW: the stack top.
pub(super) const FSW_TOP: u16 = 7 << 11;
/// FSW: busy.
pub(super) const FSW_B: u16 = 1 << 15;
/// FCW: bits that read as set whatever is written.
pub(super) const FCW_RESERVED: u16 = 0xE0C0;
/// FCW after `fninit`.
pub(super) const FCW_INIT: u16 = 0x037F;

/// ST(0)'s physical register.
pub(super) fn top(fpu: &kvm_fpu) -> u8 {
    ((fpu.fsw & FSW_TOP) >> 11) as u8
}

/// Sets the stack top.
pub(super) fn set_top(fpu: &mut kvm_fpu, top: u8) {
    fpu.fsw = (fpu.fsw & !FSW_TOP) | (u16::from(top & 7) << 11);
}

/// Pops the stack (optionally marking ST(0) empty first); `fincstp` does not free.
pub(super) fn pop(fpu: &mut kvm_fpu, free: bool) {
    if free {
        fpu.ftwx &= !(1 << top(fpu));
    }
    set_top(fpu, top(fpu).wrapping_add(1));
    fpu.fpr.rotate_left(1);
}

/// ES and B reflect whether any unmasked exception flag is set.
pub(super) fn update_es(fpu: &mut kvm_fpu) {
    if fpu.fsw & !fpu.fcw & FSW_EXC != 0 {
        fpu.fsw |= FSW_ES | FSW_B;
    } else {
        fpu.fsw &= !(FSW_ES | FSW_B);
    }
}

/// `fninit`'s state.
pub(super) fn fninit(fpu: &mut kvm_fpu) {
    fpu.fcw = FCW_INIT;
    fpu.fsw = 0;
    fpu.ftwx = 0;
    fpu.last_opcode = 0;
    fpu.last_ip = 0;
    fpu.last_dp = 0;
}

/// The full tag word (2 bits per physical register: 00 valid, 01 zero, 10 special, 11 empty).
pub(super) fn full_tag(fpu: &kvm_fpu) -> u16 {
    (0..8u8).fold(0, |tags, p| {
        let st = &fpu.fpr[usize::from(p.wrapping_sub(top(fpu)) & 7)];
        let exp = u16::from_le_bytes([st[8], st[9]]) & 0x7FFF;
        let mantissa = u64::from_le_bytes([st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7]]);
        let tag = if fpu.ftwx & (1 << p) == 0 {
            3
        } else if exp == 0 && mantissa == 0 {
            1
        } else if exp == 0x7FFF || exp == 0 || mantissa >> 63 == 0 {
            2 // NaN/infinity, denormal, unnormal
        } else {
            0
        };
        tags | (tag << (2 * p))
    })
}

/// The protected-mode x87 environment image (14 bytes with w = 2, 28 bytes with w = 4).
pub(super) fn store_env(fpu: &kvm_fpu, w: usize) -> Vec<u8> {
    let fields = [
        u32::from(fpu.fcw),
        u32::from(fpu.fsw),
        u32::from(full_tag(fpu)),
        fpu.last_ip as u32,
        u32::from(fpu.last_opcode & 0x7FF) << 16, // FPU CS selector (0) | FOP
        fpu.last_dp as u32,
        0, // FPU DS selector
    ];
    let mut image = Vec::with_capacity(7 * w + 80);
    for (i, f) in fields.into_iter().enumerate() {
        match w {
            // Bits 16-31 of the control, status and tag fields are reserved and stored as ones.
            4 => image.extend_from_slice(&(if i < 3 { f | 0xFFFF_0000 } else { f }).to_le_bytes()),
            _ => image.extend_from_slice(&(f as u16).to_le_bytes()),
        }
    }
    image
}
