#![allow(clippy::unwrap_used, clippy::panic)]

use super::x87::{full_tag, FCW_INIT};
use super::*;
use std::collections::HashMap;

/// Byte-granular fake guest memory: only mapped bytes are accessible.
#[derive(Default)]
struct FakeMem(HashMap<u64, u8>);

impl FakeMem {
    fn map(&mut self, gva: u64, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.0.insert(gva + i as u64, *b);
        }
    }
    fn get(&self, gva: u64, len: usize) -> Vec<u8> {
        (0..len as u64).map(|i| self.0[&(gva + i)]).collect()
    }
}

impl GuestMemoryAccess for FakeMem {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryAccessError> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = gva + i as u64;
            *b = *self.0.get(&a).ok_or(MemoryAccessError { gva: a })?;
        }
        Ok(())
    }
    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemoryAccessError> {
        if let Some(a) = (gva..gva + data.len() as u64).find(|a| !self.0.contains_key(a)) {
            return Err(MemoryAccessError { gva: a });
        }
        self.map(gva, data);
        Ok(())
    }
}

const RIP: u64 = 0xffff_ffff_8123_4560;
const DATA: u64 = 0xffff_8880_0000_1000;

struct Vm {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    mem: FakeMem,
}

impl Vm {
    fn long() -> Self {
        let mut vm = Vm {
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            fpu: kvm_fpu::default(),
            mem: FakeMem::default(),
        };
        vm.regs.rip = RIP;
        vm.regs.rflags = 2;
        vm.regs.rbx = DATA;
        vm.sregs.efer = (1 << 8) | EFER_LMA;
        vm.sregs.cs.l = 1;
        vm.sregs.cr0 = CR0_PE | CR0_MP | (1 << 5) | (1 << 31);
        vm.sregs.cr4 = CR4_OSFXSR | (1 << 5);
        vm.fpu.fcw = FCW_INIT;
        vm.fpu.mxcsr = 0x1F80;
        vm.mem.map(DATA, &[0; 256]);
        vm
    }
    fn protected32() -> Self {
        let mut vm = Vm::long();
        vm.sregs.efer = 0;
        vm.sregs.cs.l = 0;
        vm.sregs.cs.db = 1;
        vm.regs.rip = 0xc100_0000;
        vm
    }
    fn run(&mut self, bytes: &[u8]) -> Result<Fallback, EmulationError> {
        let mut st = CpuState {
            regs: &mut self.regs,
            sregs: &self.sregs,
            fpu: &mut self.fpu,
        };
        handle_emulation_failure(bytes, &mut st, &mut self.mem)
    }
    /// Runs an instruction that must be emulated and checks the RIP advance.
    fn emulate(&mut self, bytes: &[u8], len: u64) -> bool {
        let rip = self.regs.rip;
        match self.run(bytes) {
            Ok(Fallback::Emulated {
                fpu_changed,
                regs_changed: true,
            }) => {
                assert_eq!(self.regs.rip, rip + len, "RIP advance for {bytes:02x?}");
                fpu_changed
            }
            other => panic!("{bytes:02x?}: {other:?}"),
        }
    }
}

fn raised(vector: u8, error_code: Option<u32>) -> Result<Fallback, EmulationError> {
    Ok(Fallback::InjectException { vector, error_code })
}

fn reg80(fpu: &kvm_fpu, st: usize) -> (u64, u16) {
    let r = &fpu.fpr[st];
    (
        u64::from_le_bytes(r[..8].try_into().unwrap()),
        u16::from_le_bytes([r[8], r[9]]),
    )
}

#[test]
fn int3_and_int_3_inject_breakpoint_after_the_instruction() {
    let mut vm = Vm::long();
    assert_eq!(vm.run(&[0xCC, 0x90]), Ok(Fallback::InjectBreakpoint));
    assert_eq!(vm.regs.rip, RIP + 1);
    assert_eq!(vm.run(&[0xCD, 0x03]), Ok(Fallback::InjectBreakpoint));
    assert_eq!(vm.regs.rip, RIP + 3);
    assert!(matches!(
        vm.run(&[0xCD, 0x80]),
        Err(EmulationError::Unsupported { .. })
    ));
}

#[test]
fn fwait_is_a_noop_or_raises_mf_when_an_exception_is_pending() {
    let mut vm = Vm::long();
    assert!(!vm.emulate(&[0x9B], 1));
    vm.fpu.fsw = FSW_ES | FSW_B | FSW_IE;
    let before = vm.fpu;
    assert_eq!(vm.run(&[0x9B]), raised(MF, None));
    assert_eq!(
        (vm.regs.rip, vm.fpu),
        (RIP + 1, before),
        "faults leave the state alone"
    );
    vm.sregs.cr0 |= CR0_TS;
    assert_eq!(vm.run(&[0x9B]), raised(NM, None), "#NM with MP and TS");
}

#[test]
fn fnclex_clears_exceptions_and_fclex_waits_first() {
    let mut vm = Vm::long();
    vm.fpu.fsw = 0xFFFF;
    assert_eq!(vm.run(&[0x9B, 0xDB, 0xE2]), raised(MF, None));
    assert!(vm.emulate(&[0xDB, 0xE2], 2));
    assert_eq!(vm.fpu.fsw, 0x7F00);
    assert!(
        !vm.emulate(&[0x9B, 0xDB, 0xE2], 1),
        "fclex is fwait, then fnclex"
    );
}

#[test]
fn fldcw_fnstcw_round_trip_with_base_rip_relative_and_fs_operands() {
    let mut vm = Vm::long();
    vm.mem.map(DATA + 0x10, &0x0A7Fu16.to_le_bytes()); // RC up, PC double
    assert!(vm.emulate(&[0xD9, 0x6B, 0x10], 3)); // fldcw [rbx+0x10]
    assert_eq!(vm.fpu.fcw, 0x0A7F);
    assert!(!vm.emulate(&[0xD9, 0x7B, 0x20], 3)); // fnstcw [rbx+0x20]
    assert_eq!(vm.mem.get(DATA + 0x20, 2), [0x7F, 0x0A]);

    let rip_target = vm.regs.rip + 6 + 0x100;
    vm.mem.map(rip_target, &0x037Fu16.to_le_bytes());
    assert!(vm.emulate(&[0xD9, 0x2D, 0x00, 0x01, 0x00, 0x00], 6)); // fldcw [rip+0x100]
    assert_eq!(vm.fpu.fcw, 0x037F);

    vm.sregs.fs.base = DATA + 0x40;
    vm.sregs.ds.base = 0x1234_0000; // ignored in 64-bit mode
    vm.regs.rax = 8;
    vm.fpu.fcw = 0x0272;
    assert!(!vm.emulate(&[0x64, 0xD9, 0x38], 3)); // fnstcw fs:[rax]
    assert_eq!(vm.mem.get(DATA + 0x48, 2), [0x72, 0x02]);
    vm.mem.map(DATA + 0x48, &0xFFFFu16.to_le_bytes());
    vm.emulate(&[0x64, 0xD9, 0x28], 3); // fldcw fs:[rax]: reserved bits dropped, bit 6 reads as one
    assert_eq!(vm.fpu.fcw, 0x1F7F);
}

#[test]
fn fldcw_unmasking_a_flagged_exception_makes_it_pending() {
    let mut vm = Vm::long();
    vm.fpu.fsw = FSW_IE | FSW_SF;
    vm.mem.map(DATA, &0x037Eu16.to_le_bytes());
    vm.emulate(&[0xD9, 0x2B], 2);
    assert_eq!(vm.fpu.fsw, FSW_IE | FSW_SF | FSW_ES | FSW_B);
    assert_eq!(vm.run(&[0xD9, 0xE8]), raised(MF, None), "fld1 waits");
}

#[test]
fn fnstsw_ax_keeps_upper_rax_and_fnstsw_m16_stores() {
    let mut vm = Vm::long();
    vm.regs.rax = 0x1122_3344_5566_7788;
    vm.fpu.fsw = 0x3A21;
    assert!(!vm.emulate(&[0xDF, 0xE0], 2));
    assert_eq!(vm.regs.rax, 0x1122_3344_5566_3A21);
    assert!(!vm.emulate(&[0xDD, 0x3B], 2)); // fnstsw [rbx]
    assert_eq!(vm.mem.get(DATA, 2), [0x21, 0x3A]);
}

#[test]
fn ldmxcsr_stmxcsr_and_reserved_bits() {
    let mut vm = Vm::long();
    vm.mem.map(DATA, &0x9FC0u32.to_le_bytes());
    assert!(vm.emulate(&[0x0F, 0xAE, 0x13], 3)); // ldmxcsr [rbx]
    assert_eq!(vm.fpu.mxcsr, 0x9FC0);
    assert!(!vm.emulate(&[0x0F, 0xAE, 0x5B, 0x08], 4)); // stmxcsr [rbx+8]
    assert_eq!(vm.mem.get(DATA + 8, 4), 0x9FC0u32.to_le_bytes());
    vm.mem.map(DATA, &0x0001_1F80u32.to_le_bytes());
    assert_eq!(vm.run(&[0x0F, 0xAE, 0x13]), raised(GP, Some(0)));
    assert_eq!((vm.regs.rip, vm.fpu.mxcsr), (RIP + 7, 0x9FC0));
    vm.sregs.cr4 &= !CR4_OSFXSR;
    assert_eq!(vm.run(&[0x0F, 0xAE, 0x13]), raised(UD, None));
    let err = vm.run(&[0xC5, 0xF8, 0xAE, 0x13]).unwrap_err(); // vldmxcsr
    assert!(err.to_string().contains("vldmxcsr"), "{err}");
}

#[test]
fn emms_fninit_and_stack_pointer_ops() {
    let mut vm = Vm::long();
    vm.fpu.ftwx = 0xFF;
    assert!(vm.emulate(&[0x0F, 0x77], 2));
    assert_eq!(vm.fpu.ftwx, 0);

    vm.fpu.fpr[0][0] = 0xA0;
    vm.fpu.fpr[7][0] = 0xA7;
    vm.fpu.ftwx = 0b0000_0101;
    vm.emulate(&[0xD9, 0xF6], 2); // fdecstp
    assert_eq!(
        (top(&vm.fpu), vm.fpu.fpr[1][0], vm.fpu.fpr[0][0]),
        (7, 0xA0, 0xA7)
    );
    assert_eq!((vm.fpu.last_opcode, vm.fpu.last_ip), (0x1F6, RIP + 2));
    vm.emulate(&[0xD9, 0xF7], 2); // fincstp
    assert_eq!((top(&vm.fpu), vm.fpu.fpr[0][0]), (0, 0xA0));
    vm.emulate(&[0xDD, 0xC2], 2); // ffree st(2): physical 2
    assert_eq!(vm.fpu.ftwx, 0b0000_0001);
    vm.emulate(&[0xDF, 0xC1], 2); // ffreep st(1): frees physical 1, then pops physical 0
    assert_eq!((vm.fpu.ftwx, top(&vm.fpu)), (0, 1));

    vm.fpu.fcw = 0;
    vm.fpu.fsw = 0x7FFF & !FSW_ES;
    vm.fpu.ftwx = 0x0F;
    vm.fpu.last_dp = 5;
    vm.emulate(&[0xDB, 0xE3], 2); // fninit
    assert_eq!(
        (
            vm.fpu.fcw,
            vm.fpu.fsw,
            vm.fpu.ftwx,
            vm.fpu.last_dp,
            vm.fpu.last_ip
        ),
        (0x037F, 0, 0, 0, 0)
    );
    assert_eq!(vm.fpu.fpr[6][0], 0xA7, "register contents are kept");
}

#[test]
fn fld_constants_push_with_rounding() {
    let mut vm = Vm::long();
    let consts: [(&[u8], (u64, u16)); 7] = [
        (&[0xD9, 0xE8], (1 << 63, 0x3FFF)),
        (&[0xD9, 0xEE], (0, 0)),
        (&[0xD9, 0xEB], (0xC90F_DAA2_2168_C235, 0x4000)),
        (&[0xD9, 0xEA], (0xB8AA_3B29_5C17_F0BC, 0x3FFF)),
        (&[0xD9, 0xE9], (0xD49A_784B_CD1B_8AFE, 0x4000)),
        (&[0xD9, 0xEC], (0x9A20_9A84_FBCF_F799, 0x3FFD)),
        (&[0xD9, 0xED], (0xB172_17F7_D1CF_79AC, 0x3FFE)),
    ];
    vm.fpu.fsw = FSW_C1;
    for (i, (bytes, value)) in consts.iter().enumerate() {
        assert!(vm.emulate(bytes, 2));
        assert_eq!(reg80(&vm.fpu, 0), *value);
        assert_eq!(top(&vm.fpu), (7 - i) as u8);
        assert_eq!(vm.fpu.fsw & FSW_C1, 0);
    }
    assert_eq!(reg80(&vm.fpu, 6), (1 << 63, 0x3FFF), "fld1 is now ST(6)");
    assert_eq!((vm.fpu.ftwx, vm.fpu.last_opcode), (0xFE, 0x1ED));
    assert_eq!(
        full_tag(&vm.fpu),
        0b01 << 12 | 0b11,
        "fldz tags zero, physical 0 empty"
    );

    vm.fpu.ftwx = 0;
    vm.fpu.fcw = FCW_INIT | 0x0C00; // round toward zero
    vm.emulate(&[0xD9, 0xEB], 2);
    assert_eq!(reg80(&vm.fpu, 0).0, 0xC90F_DAA2_2168_C234);
    vm.fpu.fcw = FCW_INIT | 0x0800; // round up
    vm.emulate(&[0xD9, 0xE9], 2);
    assert_eq!(reg80(&vm.fpu, 0).0, 0xD49A_784B_CD1B_8AFF);
}

#[test]
fn fld1_stack_overflow_masked_and_unmasked() {
    let mut vm = Vm::long();
    vm.fpu.ftwx = 0xFF;
    vm.emulate(&[0xD9, 0xE8], 2);
    assert_eq!(vm.fpu.fsw, FSW_IE | FSW_SF | FSW_C1 | (7 << 11));
    assert_eq!(
        reg80(&vm.fpu, 0),
        (0xC000_0000_0000_0000, 0xFFFF),
        "QNaN indefinite"
    );

    let mut vm = Vm::long();
    vm.fpu.ftwx = 0xFF;
    vm.fpu.fcw = 0x037E; // IE unmasked
    vm.fpu.fpr[0][0] = 0x55;
    vm.emulate(&[0xD9, 0xE8], 2);
    assert_eq!(
        vm.fpu.fsw,
        FSW_IE | FSW_SF | FSW_C1 | FSW_ES | FSW_B,
        "TOP unchanged"
    );
    assert_eq!(vm.fpu.fpr[0][0], 0x55);
    assert_eq!(vm.run(&[0xD9, 0xE8]), raised(MF, None));
}

#[test]
fn fnsave_frstor_round_trip_and_fnsave_reinitialises() {
    let mut vm = Vm::long();
    vm.mem.map(DATA, &[0; 256]);
    for i in 0..4 {
        vm.emulate(&[0xD9, 0xE8 + i], 2); // fld1, fldl2t, fldl2e, fldpi
    }
    vm.emulate(&[0xD9, 0xEE], 2); // fldz
    vm.fpu.fpr[1] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // a denormal
    vm.fpu.fcw = 0x0B7F;
    vm.fpu.fsw |= 0x4120 | FSW_SF; // C3 C0 PE SF
    vm.fpu.last_dp = 0x1234_5678;
    let saved = vm.fpu;
    assert_eq!(top(&saved), 3);

    assert!(vm.emulate(&[0xDD, 0x33], 2)); // fnsave [rbx]
    let image = vm.mem.get(DATA, 108);
    assert_eq!(image[0..4], [0x7F, 0x0B, 0xFF, 0xFF]);
    assert_eq!(u16::from_le_bytes([image[4], image[5]]), saved.fsw);
    // Physical 3 = ST0 zero, 4 = ST1 denormal (special), 5..7 valid, 0..2 empty.
    assert_eq!(
        u16::from_le_bytes([image[8], image[9]]),
        0b00_00_00_10_01_11_11_11
    );
    assert_eq!(
        u32::from_le_bytes(image[12..16].try_into().unwrap()) as u64,
        saved.last_ip & 0xFFFF_FFFF
    );
    assert_eq!(
        u32::from_le_bytes(image[16..20].try_into().unwrap()),
        0x1EE << 16
    );
    assert_eq!(
        u32::from_le_bytes(image[20..24].try_into().unwrap()),
        0x1234_5678
    );
    assert_eq!(image[28 + 40..28 + 50], saved.fpr[4][..10], "ST(4) = fld1");
    assert_eq!(
        (vm.fpu.fcw, vm.fpu.fsw, vm.fpu.ftwx, vm.fpu.last_ip),
        (0x037F, 0, 0, 0)
    );

    vm.fpu.fpr = [[0xEE; 16]; 8];
    assert!(vm.emulate(&[0xDD, 0x23], 2)); // frstor [rbx]
    let mut expected = saved;
    expected.last_ip &= 0xFFFF_FFFF;
    assert_eq!(vm.fpu, expected);

    vm.fpu.fsw |= FSW_ES;
    assert_eq!(vm.run(&[0x9B, 0xDD, 0x33]), raised(MF, None), "fsave waits");
}

#[test]
fn fnstenv_fldenv_and_16_bit_format() {
    let mut vm = Vm::long();
    vm.fpu.fsw = 0x0800 | FSW_C1;
    vm.fpu.ftwx = 0x80;
    vm.fpu.fpr[6] = [0, 0, 0, 0, 0, 0, 0, 0x80, 0xFF, 0x3F, 0, 0, 0, 0, 0, 0];
    assert!(vm.emulate(&[0xD9, 0x33], 2)); // fnstenv [rbx]
    let image = vm.mem.get(DATA, 28);
    assert_eq!(u16::from_le_bytes([image[8], image[9]]), 0x3FFF);
    assert_eq!(vm.fpu.fcw, 0x037F, "exceptions masked (already were)");
    vm.fpu.fcw = 0x0360;
    vm.fpu.ftwx = 0;
    assert!(vm.emulate(&[0xD9, 0x23], 2)); // fldenv [rbx]
    assert_eq!(
        (vm.fpu.fcw, vm.fpu.fsw, vm.fpu.ftwx),
        (0x037F, 0x0800 | FSW_C1, 0x80)
    );

    let mut vm = Vm::protected32();
    vm.sregs.ds.base = 0x100;
    vm.regs.rbx = DATA - 0x100;
    vm.fpu.fcw = 0x027F;
    vm.fpu.last_ip = 0xABCD_1234;
    vm.mem.map(DATA & 0xFFFF_FFFF, &[0; 94]);
    assert!(vm.emulate(&[0x66, 0xDD, 0x33], 3)); // fnsave [ebx] with 16-bit operand size: 94 bytes
    let image = vm.mem.get(DATA & 0xFFFF_FFFF, 94);
    assert_eq!(image[..8], [0x7F, 0x02, 0, 0, 0xFF, 0xFF, 0x34, 0x12]);
}

#[test]
fn decodes_32_bit_code_with_segment_base() {
    let mut vm = Vm::protected32();
    vm.sregs.ds.base = 0x10_0000;
    vm.regs.rbx = 0xFFFF_FFFF_0000_2000; // upper half ignored
    vm.mem.map(0x10_2004, &[0, 0]);
    vm.fpu.fcw = 0x0262;
    assert!(!vm.emulate(&[0xD9, 0x7B, 0x04], 3)); // fnstcw [ebx+4]
    assert_eq!(vm.mem.get(0x10_2004, 2), [0x62, 0x02]);
    vm.regs.rip = 0xFFFF_FFFF;
    assert_eq!(vm.run(&[0xCC]), Ok(Fallback::InjectBreakpoint));
    assert_eq!(vm.regs.rip, 0, "EIP wraps");
    // In 64-bit mode `48 0f c7 0e` is cmpxchg16b; in 32-bit mode 0x48 is `dec eax`.
    let err = vm.run(&[0x48, 0x0F, 0xC7, 0x0E]).unwrap_err();
    assert!(err.to_string().contains("(bytes 48: dec eax)"), "{err}");
}

#[test]
fn unsupported_reports() {
    let mut vm = Vm::long();
    vm.regs.rip = 0xffff_ffff_8123_4567;
    let err = vm.run(&[0x0F, 0x01, 0xD0, 0x90]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "guest instruction at RIP 0xffffffff81234567 (bytes 0f 01 d0: xgetbv) is not supported by this \
         host's KVM (PVM emulation failure)"
    );
    let err = vm.run(&[0x48, 0x0F, 0xC7, 0x0E]).unwrap_err();
    assert_eq!(
        err,
        EmulationError::Unsupported {
            rip: 0xffff_ffff_8123_4567,
            bytes: vec![0x48, 0x0F, 0xC7, 0x0E],
            text: "cmpxchg16b [rsi]".into()
        }
    );
    let err = vm.run(&[0xD9, 0x2D, 0x00, 0x01]).unwrap_err();
    assert!(
        err.to_string()
            .contains("(bytes d9 2d 00 01: (undecodable))"),
        "{err}"
    );
    assert!(vm.run(&[]).is_err());
    assert_eq!(vm.regs.rip, 0xffff_ffff_8123_4567);
}

#[test]
fn unmapped_operand_is_a_memory_error_and_changes_nothing() {
    let mut vm = Vm::long();
    vm.regs.rbx = 0x7000_0000;
    let before = vm.fpu;
    assert_eq!(
        vm.run(&[0xDD, 0x33]),
        Err(EmulationError::Memory(MemoryAccessError {
            gva: 0x7000_0000
        }))
    );
    assert_eq!((vm.fpu, vm.regs.rip), (before, RIP));
    let err = vm.run(&[0xD9, 0x2B]).unwrap_err();
    assert!(
        err.to_string()
            .contains("guest address 0x70000000 is not mapped"),
        "{err}"
    );
}

#[test]
fn cr0_and_lock_checks() {
    let mut vm = Vm::long();
    vm.sregs.cr0 |= CR0_TS;
    assert_eq!(vm.run(&[0xDB, 0xE2]), raised(NM, None));
    assert_eq!(vm.run(&[0x0F, 0x77]), raised(NM, None));
    vm.sregs.cr0 |= CR0_EM;
    assert_eq!(vm.run(&[0x0F, 0x77]), raised(UD, None));
    assert_eq!(vm.run(&[0xCC]), Ok(Fallback::InjectBreakpoint));
    let mut vm = Vm::long();
    assert_eq!(vm.run(&[0xF0, 0xD9, 0xE8]), raised(UD, None));
}
