//! Fallback emulation for the few instructions this host's KVM cannot emulate.
//!
//! On PVM hosts (see `shared/PLATFORM.md`) guest ring 0 is emulated instruction by instruction and
//! some instructions Linux executes end in `KVM_EXIT_INTERNAL_ERROR` (suberror emulation). The vCPU loop
//! reads up to 15 bytes at RIP and calls [`handle_emulation_failure`], which decodes them with `iced-x86`
//! and either emulates the instruction against the vCPU's registers/FPU state, asks for an exception
//! to be injected, or returns [`EmulationError::Unsupported`] so the VMM ends the VM with a clear report.
//!
//! Emulated: `int3`/`int 3` (→ #BP), `fwait`, `fnclex`, `fninit`, `fldcw`, `fnstcw`, `fnstsw` (AX and
//! m16), `ldmxcsr`, `stmxcsr`, `emms`, `fld1`/`fldz`/`fldpi`/`fldl2e`/`fldl2t`/`fldlg2`/`fldln2`,
//! `fincstp`, `fdecstp`, `ffree`, `ffreep`, `fnstenv`/`fldenv` and `fnsave`/`frstor` (protected/long
//! mode formats). The waiting forms (`fclex` = `9b db e2`, `fsave`, ...) are two instructions to the
//! decoder as to the CPU: `fwait`, then the `fn` form, each emulated on its own exit.
//!
//! Exceptions are checked as the CPU does: LOCK → #UD, CR0.EM/TS → #NM (or #UD for `emms`/MXCSR
//! ops), pending unmasked x87 exception on a waiting instruction → #MF, reserved MXCSR
//! bits → #GP(0). Not modelled: segment limit/permission checks, alignment checks, the legacy
//! FERR#/IGNNE# path (CR0.NE = 0), FPU CS/DS selectors (saved as 0, as on CPUs that deprecate them).

use iced_x86::{Code, Decoder, DecoderOptions, Formatter, Instruction, IntelFormatter, Register};
use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};

#[cfg(test)]
mod tests;
mod x87;

use x87::{fninit, pop, set_top, store_env, top, update_es, FCW_RESERVED, FSW_B, FSW_C1, FSW_ES, FSW_EXC, FSW_IE, FSW_SF};

/// Access to guest memory by guest-virtual address (the caller translates with KVM_TRANSLATE).
pub trait GuestMemoryAccess {
    /// Reads `buf.len()` bytes starting at guest-virtual address `gva`.
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemoryAccessError>;
    /// Writes `data` starting at guest-virtual address `gva`.
    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemoryAccessError>;
}

/// A guest-virtual address that could not be translated or accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest address {gva:#x} is not mapped")]
pub struct MemoryAccessError {
    /// The guest-virtual address that failed.
    pub gva: u64,
}

/// CPU state the emulator may read and change.
#[derive(Debug)]
pub struct CpuState<'a> {
    /// General-purpose registers, RIP and RFLAGS (RIP is advanced; RAX changes for `fnstsw ax`).
    pub regs: &'a mut kvm_regs,
    /// Segment and control registers (bitness, segment bases, CR0/CR4 checks); read only.
    pub sregs: &'a kvm_sregs,
    /// x87/SSE state in FXSAVE layout (`fpr[i]` is ST(i); `ftwx` bit p is physical register p).
    pub fpu: &'a mut kvm_fpu,
}

/// What the caller must do after [`handle_emulation_failure`] succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `int3` (or `int 3`): inject #BP (vector 3) as a soft exception. RIP was already advanced past
    /// the instruction in `regs`, which the caller must write back before injecting.
    InjectBreakpoint,
    /// Inject this exception as a fault: nothing was changed, RIP still points at the instruction.
    /// Used for #UD (6: LOCK prefix, CR0.EM/CR4.OSFXSR for MMX/SSE), #NM (7: CR0.TS/EM),
    /// #MF (16: pending unmasked x87 exception on a waiting instruction) and #GP(0) (13: `ldmxcsr`
    /// with reserved bits set). `error_code` is `Some` exactly for #GP.
    InjectException {
        /// The exception vector.
        vector: u8,
        /// The error code to push, if the exception has one.
        error_code: Option<u32>,
    },
    /// The instruction was emulated; `regs`/`fpu` were updated and RIP advanced. The caller writes
    /// back `regs` if `regs_changed` (always true, as RIP moved) and `fpu` if `fpu_changed`.
    Emulated {
        /// `fpu` was modified and must be written back (KVM_SET_FPU).
        fpu_changed: bool,
        /// `regs` was modified and must be written back (KVM_SET_REGS).
        regs_changed: bool,
    },
}

/// Why an emulation failure could not be handled; the VMM ends the VM with this report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    /// The instruction is not one we emulate.
    #[error(
        "guest instruction at RIP {rip:#x} (bytes {}: {text}) is not supported by this host's KVM \
         (PVM emulation failure)",
        hex(.bytes)
    )]
    Unsupported {
        /// Address of the instruction.
        rip: u64,
        /// The instruction's bytes (all bytes given when it could not be decoded).
        bytes: Vec<u8>,
        /// Intel-syntax disassembly, or `(undecodable)`.
        text: String,
    },
    /// A memory operand was not accessible.
    #[error("memory operand of an emulated guest instruction: {0}")]
    Memory(#[from] MemoryAccessError),
}

fn hex(bytes: &[u8]) -> String {
    let hex: Vec<_> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.join(" ")
}

/// Decode the instruction at `state.regs.rip` from `bytes` (up to 15 bytes read by the caller at RIP)
/// and emulate it. On `Err` and on [`Fallback::InjectException`] the state is left unchanged.
pub fn handle_emulation_failure(
    bytes: &[u8],
    state: &mut CpuState<'_>,
    mem: &mut dyn GuestMemoryAccess,
) -> Result<Fallback, EmulationError> {
    let rip = state.regs.rip;
    let bytes = &bytes[..bytes.len().min(15)];
    let bitness = bitness(state.sregs);
    let mut instr = Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NONE).decode();
    if instr.is_invalid() {
        // A LOCK prefix where none is allowed is #UD, which `Emu::run` raises.
        let lenient =
            Decoder::with_ip(bitness, bytes, rip, DecoderOptions::NO_INVALID_CHECK).decode();
        if lenient.has_lock_prefix() {
            instr = lenient;
        }
    }
    let unsupported = |bytes: &[u8], text| EmulationError::Unsupported {
        rip,
        bytes: bytes.to_vec(),
        text,
    };
    if instr.is_invalid() {
        return Err(unsupported(bytes, "(undecodable)".into()));
    }
    let len = instr.len();
    let mut emu = Emu {
        instr: &instr,
        bytes: &bytes[..len],
        bitness,
        st: state,
        mem,
    };
    let outcome = match emu.run() {
        Ok(outcome) => outcome,
        Err(Stop::Raise(vector, error_code)) => {
            return Ok(Fallback::InjectException { vector, error_code })
        }
        Err(Stop::Fail(e)) => return Err(e),
        Err(Stop::Unsupported) => {
            let mut text = String::new();
            IntelFormatter::new().format(&instr, &mut text);
            return Err(unsupported(&bytes[..len], text));
        }
    };
    let next = rip.wrapping_add(len as u64);
    state.regs.rip = match bitness {
        64 => next,
        32 => next & 0xFFFF_FFFF,
        _ => next & 0xFFFF,
    };
    log::trace!("emulated {:?} at {rip:#x}", instr.code());
    Ok(match outcome {
        Done::Breakpoint => Fallback::InjectBreakpoint,
        Done::Fpu(fpu_changed) => Fallback::Emulated {
            fpu_changed,
            regs_changed: true,
        },
    })
}

use boot::entry::{CR0_EM, CR0_MP, CR0_PE, CR0_TS, CR4_OSFXSR, EFER_LMA};
const RFLAGS_VM: u64 = 1 << 17;

/// MXCSR bits the guest may set (MXCSR_MASK as reported by FXSAVE on CPUs with DAZ).
const MXCSR_MASK: u32 = 0xFFFF;

const UD: u8 = 6;
const NM: u8 = 7;
const GP: u8 = 13;
const MF: u8 = 16;

fn bitness(sregs: &kvm_sregs) -> u32 {
    if sregs.efer & EFER_LMA != 0 && sregs.cs.l != 0 {
        64
    } else if sregs.cs.db != 0 {
        32
    } else {
        16
    }
}

/// Why emulation stopped early.
enum Stop {
    Raise(u8, Option<u32>),
    Fail(EmulationError),
    Unsupported,
}

impl From<MemoryAccessError> for Stop {
    fn from(e: MemoryAccessError) -> Self {
        Stop::Fail(EmulationError::Memory(e))
    }
}

enum Done {
    Breakpoint,
    /// Emulated; whether the FPU state changed.
    Fpu(bool),
}

/// Which architectural checks precede the instruction.
#[derive(Clone, Copy)]
enum Kind {
    /// `fwait`: #NM if CR0.MP and CR0.TS, #MF if an exception is pending.
    Wait,
    /// x87 instruction that waits (checks for pending exceptions first).
    X87Waiting,
    /// x87 control instruction that does not wait (`fn*`, `fldcw`, `fldenv`, `frstor`).
    X87NoWait,
    /// `emms`.
    Mmx,
    /// `ldmxcsr`/`stmxcsr`.
    Sse,
}

struct Emu<'i, 's, 'a, 'm> {
    instr: &'i Instruction,
    bytes: &'i [u8],
    bitness: u32,
    st: &'s mut CpuState<'a>,
    mem: &'m mut dyn GuestMemoryAccess,
}

type R<T> = Result<T, Stop>;

/// 80-bit constants: mantissa, sign+exponent, and for inexact ones whether round-to-nearest rounded up.
const LOG2_10: (u64, u16, Option<bool>) = (0xD49A_784B_CD1B_8AFE, 0x4000, Some(false));
const LOG2_E: (u64, u16, Option<bool>) = (0xB8AA_3B29_5C17_F0BC, 0x3FFF, Some(true));
const PI: (u64, u16, Option<bool>) = (0xC90F_DAA2_2168_C235, 0x4000, Some(true));
const LOG10_2: (u64, u16, Option<bool>) = (0x9A20_9A84_FBCF_F799, 0x3FFD, Some(true));
const LN_2: (u64, u16, Option<bool>) = (0xB172_17F7_D1CF_79AC, 0x3FFE, Some(true));
/// The QNaN "real indefinite" loaded on masked stack overflow.
const INDEFINITE: (u64, u16) = (0xC000_0000_0000_0000, 0xFFFF);

impl Emu<'_, '_, '_, '_> {
    fn run(&mut self) -> R<Done> {
        if self.instr.has_lock_prefix() {
            return Err(Stop::Raise(UD, None));
        }
        use Kind::*;
        Ok(match self.instr.code() {
            Code::Int3 => Done::Breakpoint,
            Code::Int_imm8 if self.instr.immediate8() == 3 => Done::Breakpoint,
            Code::Wait => self.check(Wait).map(|()| Done::Fpu(false))?,
            Code::Fnclex => {
                self.check(X87NoWait)?;
                self.st.fpu.fsw &= !(FSW_EXC | FSW_SF | FSW_ES | FSW_B);
                Done::Fpu(true)
            }
            Code::Fninit => {
                self.check(X87NoWait)?;
                fninit(self.st.fpu);
                Done::Fpu(true)
            }
            Code::Fldcw_m2byte => {
                self.check(X87NoWait)?;
                let v = u16::from_le_bytes(self.read::<2>()?);
                self.st.fpu.fcw = (v & !FCW_RESERVED) | 0x40;
                update_es(self.st.fpu);
                Done::Fpu(true)
            }
            Code::Fnstcw_m2byte => {
                self.check(X87NoWait)?;
                self.write(&self.st.fpu.fcw.to_le_bytes())?;
                Done::Fpu(false)
            }
            Code::Fnstsw_m2byte => {
                self.check(X87NoWait)?;
                self.write(&self.st.fpu.fsw.to_le_bytes())?;
                Done::Fpu(false)
            }
            Code::Fnstsw_AX => {
                self.check(X87NoWait)?;
                self.st.regs.rax = (self.st.regs.rax & !0xFFFF) | u64::from(self.st.fpu.fsw);
                Done::Fpu(false)
            }
            Code::Ldmxcsr_m32 => {
                self.check(Sse)?;
                let v = u32::from_le_bytes(self.read::<4>()?);
                if v & !MXCSR_MASK != 0 {
                    return Err(Stop::Raise(GP, Some(0)));
                }
                self.st.fpu.mxcsr = v;
                Done::Fpu(true)
            }
            Code::Stmxcsr_m32 => {
                self.check(Sse)?;
                self.write(&self.st.fpu.mxcsr.to_le_bytes())?;
                Done::Fpu(false)
            }
            Code::Emms => {
                self.check(Mmx)?;
                self.st.fpu.ftwx = 0;
                Done::Fpu(true)
            }
            Code::Fld1 => self.load_const((1 << 63, 0x3FFF, None))?,
            Code::Fldz => self.load_const((0, 0, None))?,
            Code::Fldl2t => self.load_const(LOG2_10)?,
            Code::Fldl2e => self.load_const(LOG2_E)?,
            Code::Fldpi => self.load_const(PI)?,
            Code::Fldlg2 => self.load_const(LOG10_2)?,
            Code::Fldln2 => self.load_const(LN_2)?,
            Code::Fincstp | Code::Fdecstp | Code::Ffree_sti | Code::Ffreep_sti => {
                self.check(X87Waiting)?;
                let fpu = &mut *self.st.fpu;
                match self.instr.code() {
                    Code::Fincstp => pop(fpu, false),
                    Code::Fdecstp => {
                        set_top(fpu, top(fpu).wrapping_sub(1));
                        fpu.fpr.rotate_right(1);
                    }
                    code => {
                        let i = (self.instr.op0_register() as u32)
                            .wrapping_sub(Register::ST0 as u32)
                            as u8;
                        fpu.ftwx &= !(1 << (top(fpu).wrapping_add(i) & 7));
                        if code == Code::Ffreep_sti {
                            pop(fpu, true);
                        }
                    }
                }
                fpu.fsw &= !FSW_C1;
                self.non_control();
                Done::Fpu(true)
            }
            Code::Fnstenv_m14byte | Code::Fnstenv_m28byte => {
                self.check(X87NoWait)?;
                let w = self.env_width()?;
                self.write(&store_env(self.st.fpu, w))?;
                self.st.fpu.fcw |= FSW_EXC; // FNSTENV masks all exceptions
                Done::Fpu(true)
            }
            Code::Fnsave_m94byte | Code::Fnsave_m108byte => {
                self.check(X87NoWait)?;
                let w = self.env_width()?;
                let mut image = store_env(self.st.fpu, w);
                for reg in &self.st.fpu.fpr {
                    image.extend_from_slice(&reg[..10]);
                }
                self.write(&image)?;
                fninit(self.st.fpu);
                Done::Fpu(true)
            }
            Code::Fldenv_m14byte
            | Code::Fldenv_m28byte
            | Code::Frstor_m94byte
            | Code::Frstor_m108byte => {
                self.check(X87NoWait)?;
                let w = self.env_width()?;
                let regs = matches!(
                    self.instr.code(),
                    Code::Frstor_m94byte | Code::Frstor_m108byte
                );
                let mut image = vec![0; 7 * w + if regs { 80 } else { 0 }];
                let gva = self.address()?;
                self.mem.read(gva, &mut image)?;
                let fpu = &mut *self.st.fpu;
                if regs {
                    for (reg, src) in fpu.fpr.iter_mut().zip(image[7 * w..].chunks_exact(10)) {
                        *reg = [0; 16];
                        reg[..10].copy_from_slice(src);
                    }
                }
                let field = |i: usize| {
                    let le = image[i * w..(i + 1) * w].iter().rev();
                    le.fold(0u32, |v, b| (v << 8) | u32::from(*b))
                };
                fpu.fcw = (field(0) as u16 & !FCW_RESERVED) | 0x40;
                fpu.fsw = field(1) as u16;
                let tags = field(2);
                fpu.ftwx = (0..8)
                    .filter(|p| (tags >> (2 * p)) & 3 != 3)
                    .fold(0, |t, p| t | (1 << p));
                fpu.last_ip = u64::from(field(3));
                fpu.last_opcode = if w == 4 {
                    (field(4) >> 16) as u16 & 0x7FF
                } else {
                    0
                };
                fpu.last_dp = u64::from(field(5));
                update_es(fpu);
                Done::Fpu(true)
            }
            _ => return Err(Stop::Unsupported),
        })
    }

    /// The architectural checks that precede execution, in priority order.
    fn check(&self, kind: Kind) -> R<()> {
        let (cr0, cr4, fsw) = (self.st.sregs.cr0, self.st.sregs.cr4, self.st.fpu.fsw);
        let raise = |v| Err(Stop::Raise(v, None));
        match kind {
            Kind::Wait if cr0 & (CR0_MP | CR0_TS) == CR0_MP | CR0_TS => return raise(NM),
            Kind::Wait => {}
            Kind::X87Waiting | Kind::X87NoWait if cr0 & (CR0_EM | CR0_TS) != 0 => return raise(NM),
            Kind::X87Waiting | Kind::X87NoWait => {}
            Kind::Mmx | Kind::Sse if cr0 & CR0_EM != 0 => return raise(UD),
            Kind::Sse if cr4 & CR4_OSFXSR == 0 => return raise(UD),
            Kind::Mmx | Kind::Sse if cr0 & CR0_TS != 0 => return raise(NM),
            Kind::Mmx | Kind::Sse => {}
        }
        if matches!(kind, Kind::Wait | Kind::X87Waiting | Kind::Mmx) && fsw & FSW_ES != 0 {
            return raise(MF);
        }
        Ok(())
    }

    /// Records the last non-control x87 instruction (FIP and the 11-bit FOP) as the CPU does.
    fn non_control(&mut self) {
        let n = self.bytes.len();
        if n >= 2 {
            self.st.fpu.last_opcode =
                (u16::from(self.bytes[n - 2] & 7) << 8) | u16::from(self.bytes[n - 1]);
        }
        self.st.fpu.last_ip = self.st.regs.rip;
    }

    /// Pushes an 80-bit constant, rounded per FCW.RC, handling stack overflow.
    fn load_const(&mut self, (mantissa, exp, rounded_up): (u64, u16, Option<bool>)) -> R<Done> {
        self.check(Kind::X87Waiting)?;
        let mantissa = match (rounded_up, (self.st.fpu.fcw >> 10) & 3) {
            (Some(true), 1 | 3) => mantissa - 1, // down / toward zero (all constants are positive)
            (Some(false), 2) => mantissa + 1,    // up
            _ => mantissa,
        };
        let fpu = &mut *self.st.fpu;
        let new_top = top(fpu).wrapping_sub(1) & 7;
        fpu.fsw &= !FSW_C1;
        let (mut mantissa, mut exp) = (mantissa, exp);
        if fpu.ftwx & (1 << new_top) != 0 {
            fpu.fsw |= FSW_IE | FSW_SF | FSW_C1;
            if fpu.fcw & FSW_IE == 0 {
                fpu.fsw |= FSW_ES | FSW_B; // unmasked: nothing else changes
                self.non_control();
                return Ok(Done::Fpu(true));
            }
            (mantissa, exp) = INDEFINITE;
        }
        set_top(fpu, new_top);
        fpu.fpr.rotate_right(1);
        fpu.fpr[0] = [0; 16];
        fpu.fpr[0][..8].copy_from_slice(&mantissa.to_le_bytes());
        fpu.fpr[0][8..10].copy_from_slice(&exp.to_le_bytes());
        fpu.ftwx |= 1 << new_top;
        self.non_control();
        Ok(Done::Fpu(true))
    }

    /// Field width of the x87 environment image: 4 with 32-bit operand size, else 2.
    fn env_width(&self) -> R<usize> {
        if self.st.sregs.cr0 & CR0_PE == 0 || self.st.regs.rflags & RFLAGS_VM != 0 {
            return Err(Stop::Unsupported); // real-mode layouts are not implemented
        }
        Ok(match self.instr.code() {
            Code::Fnstenv_m14byte
            | Code::Fldenv_m14byte
            | Code::Fnsave_m94byte
            | Code::Frstor_m94byte => 2,
            _ => 4,
        })
    }

    /// Guest-virtual address of the memory operand (operand 0).
    fn address(&self) -> R<u64> {
        let (regs, sregs, long) = (&*self.st.regs, self.st.sregs, self.bitness == 64);
        let gva = self
            .instr
            .virtual_address(0, 0, |reg, _, _| reg_value(regs, sregs, long, reg));
        match gva {
            Some(gva) if long => Ok(gva),
            Some(gva) => Ok(gva & 0xFFFF_FFFF),
            None => Err(Stop::Unsupported),
        }
    }

    fn read<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut buf = [0; N];
        let gva = self.address()?;
        self.mem.read(gva, &mut buf)?;
        Ok(buf)
    }

    fn write(&mut self, data: &[u8]) -> R<()> {
        let gva = self.address()?;
        Ok(self.mem.write(gva, data)?)
    }
}

/// Value of a register as an address component (segment registers give the segment base).
fn reg_value(regs: &kvm_regs, sregs: &kvm_sregs, long: bool, reg: Register) -> Option<u64> {
    let seg = |s: &kvm_bindings::kvm_segment| Some(s.base);
    let full = match reg {
        Register::FS => return seg(&sregs.fs),
        Register::GS => return seg(&sregs.gs),
        Register::ES | Register::CS | Register::SS | Register::DS if long => return Some(0),
        Register::ES => return seg(&sregs.es),
        Register::CS => return seg(&sregs.cs),
        Register::SS => return seg(&sregs.ss),
        Register::DS => return seg(&sregs.ds),
        r => {
            let gprs = [
                regs.rax, regs.rcx, regs.rdx, regs.rbx, regs.rsp, regs.rbp, regs.rsi,
            ];
            let gprs2 = [
                regs.rdi, regs.r8, regs.r9, regs.r10, regs.r11, regs.r12, regs.r13,
            ];
            let index = (r.full_register() as usize).wrapping_sub(Register::RAX as usize);
            *gprs
                .iter()
                .chain(&gprs2)
                .chain(&[regs.r14, regs.r15])
                .nth(index)?
        }
    };
    Some(match reg.size() {
        8 => full,
        4 => full & 0xFFFF_FFFF,
        2 => full & 0xFFFF,
        _ => return None,
    })
}
