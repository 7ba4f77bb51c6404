//! Hand-assembled ROS snippets for partitioned-VM tests: the ROS side is a tiny ring-0 program (so a
//! test takes seconds, not a Linux boot) beside duet's own HRT (guests/hrt) entered through its 64-bit
//! HVM entry. A snippet makes hypercalls and reports each result as a debug-port mark
//! `tag << 16 | low 16 bits of a register`, which the test checks in order. A snippet can start the
//! ROS's second vCPU ([`Ros::start_ap`]) to make hypercalls from two vCPUs at once.

use std::time::Duration;

use abi::{HcallError, HrtState, Op};
use iced_x86::code_asm::*;
use vmm::ExitReason;

use crate::{asm, exit_with, guest_image, run, scratch, tiny_config, tiny_kernel};

/// How long a partitioned snippet VM may run.
pub const LIMIT: Duration = Duration::from_secs(180);
/// ROS memory of these tests; the HRT's partition starts right above it.
pub const ROS_MEM: u64 = 32 << 20;
/// Where the HRT's partition starts.
pub const HRT_BASE: u64 = ROS_MEM;
/// Scratch memory of the snippet (ROS RAM, identity-mapped).
pub const BUF: u64 = 0x180_0000;
/// The completion record [`Ros::invoke_sync`] uses.
pub const COMPLETION: u64 = 0x190_0000;
/// What duet's HRT fills its canary page with.
pub const CANARY: u64 = abi::func::CANARY_WORD;

/// The page the AP starts in (SIPI vector 3: real mode at 0x3000), below 1 MiB and clear of duet's
/// boot structures (GDT at 0x500, boot parameters at 0x7000, page tables from 0x9000).
const TRAMPOLINE: u64 = 0x3000;
/// Where the AP's 64-bit stub sits in the trampoline page.
const TRAMPOLINE64: u64 = TRAMPOLINE + 0x80;
/// Parameters the BSP leaves for the AP in the trampoline page: its GDTR (`sgdt`), CR3, CR4, CR0, EFER,
/// the AP's stack and its 64-bit entry.
const AP_GDTR: u64 = TRAMPOLINE + 0xf00;
const AP_CR3: u64 = TRAMPOLINE + 0xf10;
const AP_CR4: u64 = TRAMPOLINE + 0xf18;
const AP_CR0: u64 = TRAMPOLINE + 0xf20;
const AP_EFER: u64 = TRAMPOLINE + 0xf28;
const AP_STACK: u64 = TRAMPOLINE + 0xf30;
const AP_ENTRY: u64 = TRAMPOLINE + 0xf38;
/// The xAPIC's registers (identity-mapped by duet's boot page tables).
const LAPIC_SVR: u64 = 0xfee0_00f0;
const LAPIC_ICR_LOW: u64 = 0xfee0_0300;
const LAPIC_ICR_HIGH: u64 = 0xfee0_0310;

/// The AP's start: real mode at [`TRAMPOLINE`], protected and long mode on the BSP's GDT and page
/// tables, then a jump to the entry the BSP left.
fn trampoline() -> Vec<u8> {
    let mut a = CodeAssembler::new(16).expect("16-bit assembler");
    a.cli().expect("asm");
    a.xor(ax, ax).expect("asm");
    a.mov(ds, ax).expect("asm");
    a.lgdt(dword_ptr(AP_GDTR as u32)).expect("asm");
    a.mov(eax, dword_ptr(AP_CR4 as u32)).expect("asm");
    a.mov(cr4, eax).expect("asm");
    a.mov(eax, dword_ptr(AP_CR3 as u32)).expect("asm");
    a.mov(cr3, eax).expect("asm");
    a.mov(ecx, 0xc000_0080u32).expect("asm");
    a.mov(eax, dword_ptr(AP_EFER as u32)).expect("asm");
    a.xor(edx, edx).expect("asm");
    a.wrmsr().expect("asm");
    a.mov(eax, dword_ptr(AP_CR0 as u32)).expect("asm");
    a.mov(cr0, eax).expect("asm");
    let mut code = a.assemble(TRAMPOLINE).expect("assemble the real-mode part");
    // jmp far 0x08:TRAMPOLINE64 with a 32-bit offset (o32 ljmp).
    code.extend_from_slice(&[0x66, 0xea]);
    code.extend_from_slice(&(TRAMPOLINE64 as u32).to_le_bytes());
    code.extend_from_slice(&boot::entry::CODE64_SELECTOR.to_le_bytes());
    assert!(code.len() as u64 <= TRAMPOLINE64 - TRAMPOLINE, "the real-mode part fits before the 64-bit stub");
    code.resize((TRAMPOLINE64 - TRAMPOLINE) as usize, 0x90);
    let mut a = asm();
    a.mov(eax, u32::from(boot::entry::DATA_SELECTOR)).expect("asm");
    a.mov(ds, ax).expect("asm");
    a.mov(es, ax).expect("asm");
    a.mov(ss, ax).expect("asm");
    a.mov(rsp, qword_ptr(AP_STACK)).expect("asm");
    a.mov(rax, qword_ptr(AP_ENTRY)).expect("asm");
    a.jmp(rax).expect("asm");
    code.extend(a.assemble(TRAMPOLINE64).expect("assemble the 64-bit stub"));
    code
}

/// A ring-0 ROS snippet under construction (64-bit, identity-mapped, loaded at
/// [`crate::TINY_LOAD`]).
pub struct Ros {
    /// The assembler; tests add their own code to it.
    pub a: CodeAssembler,
}

impl Ros {
    /// Starts the ROS's second vCPU (APIC ID 1) at `entry`, a label of this snippet, in 64-bit mode on
    /// the BSP's GDT and page tables with its stack top at `stack`: copies the trampoline into low
    /// memory, leaves it the BSP's control registers, and sends INIT and SIPI (the xAPIC's ICR).
    pub fn start_ap(&mut self, entry: CodeLabel, stack: u64) {
        let bytes = trampoline();
        let a = &mut self.a;
        let mut image = a.create_label();
        let mut after = a.create_label();
        a.jmp(after).expect("asm");
        a.set_label(&mut image).expect("asm");
        a.db(&bytes).expect("asm");
        a.set_label(&mut after).expect("asm");
        a.lea(rsi, ptr(image)).expect("asm");
        a.mov(rdi, TRAMPOLINE).expect("asm");
        a.mov(rcx, bytes.len() as u64).expect("asm");
        a.rep().movsb().expect("asm");
        a.mov(rax, AP_GDTR).expect("asm");
        a.sgdt(ptr(rax)).expect("asm");
        for (reg, at) in [(cr3, AP_CR3), (cr4, AP_CR4), (cr0, AP_CR0)] {
            a.mov(rax, reg).expect("asm");
            a.mov(rdx, at).expect("asm");
            a.mov(qword_ptr(rdx), rax).expect("asm");
        }
        a.mov(ecx, 0xc000_0080u32).expect("asm");
        a.rdmsr().expect("asm");
        a.mov(rdx, AP_EFER).expect("asm");
        a.mov(qword_ptr(rdx), rax).expect("asm");
        a.mov(rax, stack).expect("asm");
        a.mov(rdx, AP_STACK).expect("asm");
        a.mov(qword_ptr(rdx), rax).expect("asm");
        a.lea(rax, ptr(entry)).expect("asm");
        a.mov(rdx, AP_ENTRY).expect("asm");
        a.mov(qword_ptr(rdx), rax).expect("asm");
        // Software-enable the LAPIC, then INIT and SIPI (vector = the trampoline's page) to APIC ID 1.
        for (at, value) in [
            (LAPIC_SVR, 0x1ffu32),
            (LAPIC_ICR_HIGH, 1 << 24),
            (LAPIC_ICR_LOW, 0x4500),
            (LAPIC_ICR_HIGH, 1 << 24),
            (LAPIC_ICR_LOW, 0x4600 | (TRAMPOLINE >> 12) as u32),
        ] {
            a.mov(rdx, at).expect("asm");
            a.mov(dword_ptr(rdx), value).expect("asm");
        }
    }

/// A ring-0 ROS snippet under construction (64-bit, identity-mapped, loaded at [`TINY_LOAD`]).
    /// An empty snippet.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Ros { a: asm() }
    }

    /// A hypercall with arguments RBX, RCX, RDX, RSI, RDI; RAX may be any 64-bit value.
    pub fn hcall(&mut self, rax_value: u64, args: [u64; 5]) {
        let a = &mut self.a;
        for (reg, v) in [rbx, rcx, rdx, rsi, rdi].into_iter().zip(args) {
            a.mov(reg, v).expect("asm");
        }
        a.mov(rax, rax_value).expect("asm");
        a.out(0xe4u32, eax).expect("asm");
    }

    /// Ends the VM with EXIT(`status`); a VM still running afterwards exits with 1 instead.
    pub fn exit(&mut self, status: u64) {
        self.op(Op::Exit, [status, 0, 0, 0, 0]);
        exit_with(&mut self.a, 1);
    }

    /// Hypercall `op` with arguments RBX, RCX, RDX, RSI, RDI.
    pub fn op(&mut self, op: Op, args: [u64; 5]) {
        self.hcall(op as u64, args);
    }

    /// Mark `tag << 16 | (reg & 0xffff)`.
    pub fn mark(&mut self, tag: u32, reg: AsmRegister64) {
        let a = &mut self.a;
        a.mov(r15, reg).expect("asm");
        a.and(r15d, 0xffff).expect("asm");
        a.or(r15d, (tag << 16) as i32).expect("asm");
        a.mov(rax, r15).expect("asm");
        a.out(0xf8u32, eax).expect("asm");
    }

    /// Loops until HRT_STATUS reports `state`.
    pub fn wait_state(&mut self, state: HrtState) {
        let mut again = self.a.create_label();
        self.a.set_label(&mut again).expect("asm");
        self.op(Op::HrtStatus, [0; 5]);
        self.a.cmp(rbx, state as i32).expect("asm");
        self.a.jne(again).expect("asm");
    }

    /// Invokes `func(arg)` on `core` with a completion record at [`COMPLETION`] and spins until it is
    /// filled; leaves the result in RBX.
    pub fn invoke_sync(&mut self, func: u64, arg: u64, core: u64) {
        self.op_sync(Op::Invoke, [func, arg, core, 0, COMPLETION]);
    }

    /// MERGE (`merge`) or UNMERGE on `core` with a completion record at [`COMPLETION`], spinning
    /// until it is filled; leaves the HRT's result in RBX (and RAX = the hypercall's status).
    pub fn merge_sync(&mut self, merge: bool, core: u64) {
        self.op_sync(if merge { Op::Merge } else { Op::Unmerge }, [core, 0, 0, 0, COMPLETION]);
    }

    /// Clears the completion record at [`COMPLETION`], makes `op(args)` (which names it), and spins
    /// until the record holds the sequence number the call answered in RBX; leaves its result in RBX.
    pub fn op_sync(&mut self, op: Op, args: [u64; 5]) {
        let a = &mut self.a;
        a.mov(r8, COMPLETION).expect("asm");
        a.mov(qword_ptr(r8), 0).expect("asm");
        self.op(op, args);
        let a = &mut self.a;
        a.mov(r12, rbx).expect("asm");
        let mut spin = a.create_label();
        a.set_label(&mut spin).expect("asm");
        a.pause().expect("asm");
        a.cmp(qword_ptr(r8), r12).expect("asm");
        a.jne(spin).expect("asm");
        a.mov(rbx, qword_ptr(r8 + 8)).expect("asm");
    }

    /// Mark `tag << 16 | 0` if `reg` equals `value` (all 64 bits), else `tag << 16 | 1`.
    pub fn mark_eq(&mut self, tag: u32, reg: AsmRegister64, value: u64) {
        let a = &mut self.a;
        a.mov(r9, value).expect("asm");
        a.xor(r9, reg).expect("asm");
        a.xor(r10d, r10d).expect("asm");
        a.mov(r11d, 1).expect("asm");
        a.test(r9, r9).expect("asm");
        a.cmovne(r10, r11).expect("asm");
        self.mark(tag, r10);
    }
}

/// The mark [`Ros::mark`] makes for `tag` and value `v`.
pub fn code(tag: u32, v: u64) -> u32 {
    (tag << 16) | (v & 0xffff) as u32
}

/// The mark of a hypercall that failed with `e`.
pub fn err(tag: u32, e: HcallError) -> u32 {
    code(tag, e.code() as u64)
}

/// Runs `ros` as the ROS (1 vCPU, [`ROS_MEM`]) beside duet's HRT with `hrt_vcpus` cores.
pub fn partitioned(name: &str, ros: CodeAssembler, hrt_vcpus: u32) -> vmm::Outcome {
    partitioned_with(name, ros, hrt_vcpus, ROS_MEM)
}

/// [`partitioned`] with `ros_mem` bytes of ROS memory.
pub fn partitioned_with(name: &str, ros: CodeAssembler, hrt_vcpus: u32, ros_mem: u64) -> vmm::Outcome {
    partitioned_cfg(name, ros, ros_mem, |hrt| hrt.vcpus = hrt_vcpus)
}

/// A partitioned VM whose `[hrt]` (duet's HRT, 64 MiB) `edit` adjusts.
pub fn partitioned_cfg(name: &str, ros: CodeAssembler, ros_mem: u64, edit: impl FnOnce(&mut config::HrtConfig)) -> vmm::Outcome {
    partitioned_vm(name, ros, |cfg| {
        if let Some(r) = cfg.ros.as_mut() {
            r.memory = ros_mem;
        }
        if let Some(h) = cfg.hrt.as_mut() {
            edit(h);
        }
    })
}

/// Runs `ros` as the ROS (1 vCPU, [`ROS_MEM`]) beside duet's HRT (1 core, 64 MiB), after `edit`
/// adjusts the config.
pub fn partitioned_vm(name: &str, ros: CodeAssembler, edit: impl FnOnce(&mut config::Config)) -> vmm::Outcome {
    let dir = scratch(name);
    let mut cfg = tiny_config(&dir, &tiny_kernel(ros));
    if let Some(r) = cfg.ros.as_mut() {
        r.memory = ROS_MEM;
    }
    let mut hrt = config::HrtConfig::new(guest_image("hrt.elf"));
    hrt.memory = 64 << 20;
    cfg.hrt = Some(hrt);
    edit(&mut cfg);
    run(&cfg, LIMIT)
}

/// Checks that the VM ended with `status` and returns its console.
pub fn exited(out: &vmm::Outcome, status: u32) -> String {
    let text = out.console_text();
    assert_eq!(out.reason, ExitReason::Exit(status), "{text}\n{:?}", out.marks);
    text
}

/// The ROS's marks, in order (the HRT's carry bit 31).
pub fn ros_marks(out: &vmm::Outcome) -> Vec<u32> {
    out.marks.iter().map(|m| m.code).filter(|c| c & (1 << 31) == 0).collect()
}

