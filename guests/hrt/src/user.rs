//! CPL3 on HRT cores (partitioned VM): a ROS function run here in the merged address space ("split
//! execution", docs/forwarding.md), its system calls and its page faults.
//!
//! Each core gets, in [`init_core`], the kernel's partitioned-VM GDT (kernel and user segments and
//! one TSS per core), a TSS whose RSP0 is the top of the core's trap stack (where a [`CoreBlock`]
//! sits), and the system-call MSRs: STAR, LSTAR = `hrt_syscall_entry`, SFMASK, and KERNEL_GS_BASE =
//! the core's block (the entry's `swapgs` finds its stack there).
//!
//! [`run`] enters CPL3 with `iretq` from the kernel stack and returns when the user code ends: it
//! returns to [`SPLIT_RETURN`], calls `exit`, or takes a fault nobody can resolve. Every trap from
//! CPL3 comes to [`trap`] on the trap stack with all registers saved ([`TrapFrame`]):
//! - a system call (vector 256, made by `hrt_syscall_entry`; or, on PVM hosts, where `syscall`
//!   stays at CPL3 and the fetch at LSTAR faults, a #PF at `hrt_syscall_entry`, turned into the
//!   same thing): `exit`, `exit_group` and `arch_prctl` are done here, everything else is forwarded
//!   to the proxy (fwd.rs); after a call that changes mappings the core re-reads the merged PML4
//!   entries and flushes its TLB;
//! - a page fault in the lower half: re-sync the PML4 entries, else forward it
//!   ([`PSEUDO_PAGE_FAULT`]: the proxy makes the page present), `invlpg`, and retry;
//! - anything else ends the execution with [`SPLIT_EXCEPTION`] + vector.

use core::arch::{asm, global_asm};
use core::ptr::addr_of_mut;

use forwarder::layout::{PSEUDO_PAGE_FAULT, SPLIT_EXCEPTION, SPLIT_EXITED, SPLIT_OK, SPLIT_RETURN, SPLIT_SEGFAULT};

use crate::boot::MAX_APS;
use crate::cpu::{cr2, invlpg, rdmsr, wrmsr};
use crate::out::Line;
use crate::{fwd, merge, port};

/// Cores with a TSS and a trap stack.
const CORES: usize = MAX_APS + 1;
/// Selectors of the partitioned-VM GDT.
const USER_DATA: u64 = 0x20 | 3;
const USER_CODE: u64 = 0x28 | 3;
const TSS_BASE_SELECTOR: u64 = 0x30;
/// The "vector" `hrt_syscall_entry` stores in the frame.
const VECTOR_SYSCALL: u64 = 256;
/// Bytes of each core's trap stack (below its [`CoreBlock`]).
const TRAP_STACK: usize = 12 * 1024;
/// Consecutive faults at one page after which the execution ends (the proxy answered, but the page
/// still faults).
const MAX_REFAULTS: u32 = 4;

const MSR_FS_BASE: u32 = 0xC000_0100;
const MSR_GS_BASE: u32 = 0xC000_0101;
const MSR_KERNEL_GS_BASE: u32 = 0xC000_0102;
const MSR_STAR: u32 = 0xC000_0081;
const MSR_LSTAR: u32 = 0xC000_0082;
const MSR_SFMASK: u32 = 0xC000_0084;
/// SFMASK: `syscall` clears TF, IF, DF, NT and AC.
const SFMASK: u64 = 0x100 | 0x200 | 0x400 | 0x4000 | 0x4_0000;
/// RFLAGS bits user code may set: CF, PF, AF, ZF, SF, TF, DF, OF, AC, ID. Not IOPL (port I/O and
/// `cli` at CPL3), NT, RF, VM, VIF, VIP; IF is always on.
const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x400 | 0x800 | 0x4_0000 | 0x20_0000;
/// RFLAGS bit 1 (always one) and IF.
const RFLAGS_FIXED: u64 = 0x2 | 0x200;

// Linux x86-64 system calls the HRT does itself or follows up.
const SYS_MMAP: u64 = 9;
const SYS_MPROTECT: u64 = 10;
const SYS_MUNMAP: u64 = 11;
const SYS_BRK: u64 = 12;
const SYS_MREMAP: u64 = 25;
const SYS_MADVISE: u64 = 28;
const SYS_EXIT: u64 = 60;
const SYS_ARCH_PRCTL: u64 = 158;
const SYS_EXIT_GROUP: u64 = 231;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const EINVAL: i64 = 22;
const EFAULT: i64 = 14;
const ENOSYS: i64 = 38;
const EIO: i64 = 5;

/// Everything a trap saves, lowest address first (boot.rs `hrt_exc_common` pushes the registers,
/// the stubs the vector and error code, the CPU the rest).
#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Per-core block at the top of the core's trap stack (RSP0 points at it; so does KERNEL_GS_BASE).
/// Offsets are used by the assembly below.
#[repr(C)]
struct CoreBlock {
    /// 0: the trap stack's top (this block's address).
    rsp0: u64,
    /// 8: scratch for `hrt_syscall_entry` (the user RSP).
    scratch: u64,
    /// 16: the core index.
    core: u64,
    /// 24: the kernel RSP saved by `hrt_enter_user`.
    kernel_rsp: u64,
    /// The current execution's outcome and counters (Rust only).
    status: u64,
    result: u64,
    syscalls: u64,
    page_faults: u64,
    last_fault: u64,
    refaults: u32,
    _pad: u32,
    /// [`guarded`]'s resume point: rbx, rbp, r12-r15, RSP after its return, its return address.
    guard: [u64; 8],
    /// Whether [`guarded`] is running a function on this core.
    guard_active: u64,
}

#[repr(C, align(64))]
struct TrapStack {
    stack: [u8; TRAP_STACK],
    block: CoreBlock,
}

const EMPTY_BLOCK: CoreBlock = CoreBlock {
    rsp0: 0,
    scratch: 0,
    core: 0,
    kernel_rsp: 0,
    status: 0,
    result: 0,
    syscalls: 0,
    page_faults: 0,
    last_fault: 0,
    refaults: 0,
    _pad: 0,
    guard: [0; 8],
    guard_active: 0,
};

static mut TRAP_STACKS: [TrapStack; CORES] = [const { TrapStack { stack: [0; TRAP_STACK], block: EMPTY_BLOCK } }; CORES];

/// A 64-bit TSS (104 bytes; RSP0 at byte 4, the I/O map base at byte 102 = no bitmap).
#[repr(C, align(16))]
struct Tss([u32; 26]);

static mut TSS: [Tss; CORES] = [const { Tss([0; 26]) }; CORES];

/// The GDT: 0x08 kernel code (64-bit), 0x10 kernel data, 0x18 32-bit code (as in the boot GDT),
/// 0x20 user data, 0x28 user code (64-bit; STAR's SYSRET base 0x18 gives SS 0x23, CS 0x2b), and
/// from 0x30 one 16-byte TSS descriptor per core.
static mut GDT: [u64; 6 + 2 * CORES] = {
    let mut g = [0u64; 6 + 2 * CORES];
    g[1] = 0x00AF_9B00_0000_FFFF;
    g[2] = 0x00CF_9300_0000_FFFF;
    g[3] = 0x00CF_9B00_0000_FFFF;
    g[4] = 0x00CF_F300_0000_FFFF;
    g[5] = 0x00AF_FB00_0000_FFFF;
    g
};

extern "C" {
    static hrt_syscall_entry: u8;
    fn hrt_enter_user(block: *mut CoreBlock, entry: u64, arg: u64, stack: u64) -> u64;
    fn hrt_leave_user(block: *mut CoreBlock) -> !;
    fn hrt_guarded(buf: *mut [u64; 8], tramp: extern "C" fn(*mut u8) -> u64, ctx: *mut u8) -> u64;
    static hrt_guard_fault: u8;
}

// `syscall` from CPL3 (hardware KVM): RCX = user RIP, R11 = user RFLAGS, RSP = user RSP, IF off
// (SFMASK). Switch to the trap stack through the core block, build the frame a trap from CPL3
// would, and join the common trap path, which returns with `iretq`. GS is swapped back at once:
// the kernel does not use it.
//
// `hrt_enter_user(block, entry, arg, stack)`: saves the callee-saved registers and RSP in the
// block, and enters CPL3 at `entry` with RDI = `arg`, RSP = `stack`, IF on, every other register
// zero. `hrt_leave_user(block)` (from a trap) returns from it, with RAX = the block's status.
global_asm!(
    r#"
    .section .text, "ax"
    .balign 16, 0x90
    .global hrt_syscall_entry
hrt_syscall_entry:
    swapgs
    mov %rsp, %gs:8
    mov %gs:0, %rsp
    push ${udata}
    push %gs:8
    push %r11
    push ${ucode}
    push %rcx
    push $0
    push ${vsys}
    swapgs
    jmp hrt_exc_common

    .balign 16, 0x90
    .global hrt_enter_user
hrt_enter_user:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, 24(%rdi)
    push ${udata}
    push %rcx
    push $0x202
    push ${ucode}
    push %rsi
    mov %rdx, %rdi
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

    .balign 16, 0x90
    .global hrt_guarded
hrt_guarded:
    mov %rbx, 0(%rdi)
    mov %rbp, 8(%rdi)
    mov %r12, 16(%rdi)
    mov %r13, 24(%rdi)
    mov %r14, 32(%rdi)
    mov %r15, 40(%rdi)
    lea 8(%rsp), %rax
    mov %rax, 48(%rdi)
    mov (%rsp), %rax
    mov %rax, 56(%rdi)
    sub $8, %rsp
    mov %rdx, %rdi
    call *%rsi
    add $8, %rsp
    ret

    .balign 16, 0x90
    .global hrt_guard_fault
hrt_guard_fault:
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rbp
    mov 16(%rdi), %r12
    mov 24(%rdi), %r13
    mov 32(%rdi), %r14
    mov 40(%rdi), %r15
    mov 48(%rdi), %rsp
    mov $-1, %rax
    jmp *56(%rdi)

    .balign 16, 0x90
    .global hrt_leave_user
hrt_leave_user:
    mov 24(%rdi), %rsp
    mov 32(%rdi), %rax
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
    "#,
    udata = const USER_DATA,
    ucode = const USER_CODE,
    vsys = const VECTOR_SYSCALL,
    options(att_syntax)
);

/// Core `core`'s block (`core` < [`CORES`]).
fn block(core: usize) -> *mut CoreBlock {
    // SAFETY: only a raw pointer is formed (no reference), to an element the index bounds-checks.
    unsafe { addr_of_mut!(TRAP_STACKS[core].block) }
}

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Sets this core up for CPL3: its TSS (RSP0 = its block) and descriptor, the GDT, the task
/// register and the system-call MSRs. Every core of a partitioned VM, once per boot, instead of
/// the boot GDT (the selectors 0x08/0x10 stay the same).
pub fn init_core(core: u32) {
    let core = core as usize;
    if core >= CORES {
        return;
    }
    // SAFETY: every core calls this once, for its own index, so it alone writes its block, its TSS
    // and its GDT descriptor (through raw pointers; GDT entries 0-5 are never written), while the
    // CPU reads only its own. The descriptor is a valid 64-bit TSS of 104 bytes; the new GDT has
    // the kernel selectors 0x08/0x10 that are loaded now (duet's have the same), so the running
    // segments stay valid; `ltr` loads this core's TSS. The MSRs (cpu::wrmsr's contract): STAR's
    // selector bases match the GDT, LSTAR is `hrt_syscall_entry`, SFMASK clears IF, DF, TF, AC
    // and NT on entry, KERNEL_GS_BASE is the block `hrt_syscall_entry` and `kernel_fault` expect.
    unsafe {
        let b = block(core);
        (*b).rsp0 = b as u64;
        (*b).core = core as u64;
        let tss = addr_of_mut!(TSS[core]);
        (*tss).0[1] = b as u64 as u32;
        (*tss).0[2] = (b as u64 >> 32) as u32;
        (*tss).0[25] = 104 << 16; // I/O map base = limit + 1: no bitmap
        let base = tss as u64;
        let low = 103 | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((base >> 24) & 0xff) << 56);
        let gdt = addr_of_mut!(GDT) as *mut u64;
        gdt.add(6 + 2 * core).write_volatile(low);
        gdt.add(7 + 2 * core).write_volatile(base >> 32);
        let ptr = Pointer { limit: ((6 + 2 * CORES) * 8 - 1) as u16, base: gdt as u64 };
        asm!("lgdt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags));
        asm!("ltr {0:x}", in(reg) (TSS_BASE_SELECTOR + 16 * core as u64) as u16, options(nomem, nostack, preserves_flags));
        wrmsr(MSR_STAR, (0x18 << 48) | (0x08 << 32));
        wrmsr(MSR_LSTAR, core::ptr::addr_of!(hrt_syscall_entry) as u64);
        wrmsr(MSR_SFMASK, SFMASK);
        wrmsr(MSR_KERNEL_GS_BASE, b as u64);
    }
}

/// What one execution at CPL3 came to.
pub struct Outcome {
    /// [`SPLIT_OK`], [`SPLIT_EXITED`], [`SPLIT_SEGFAULT`] or [`SPLIT_EXCEPTION`] + vector.
    pub status: u64,
    /// RAX on return, the exit status, the faulting address or RIP.
    pub result: u64,
    /// System calls made.
    pub syscalls: u64,
    /// Page faults forwarded.
    pub page_faults: u64,
}

/// Runs `entry(arg)` at CPL3 on this core with RSP = `stack` and the FS base `fs_base`, until it
/// ends (module docs). Interrupts are on while it runs.
pub fn run(core: u32, entry: u64, arg: u64, stack: u64, fs_base: u64) -> Outcome {
    let b = block(core as usize);
    // SAFETY: `b` is this core's block, which only this core uses (its traps run on its own trap
    // stack), through raw pointers. FS_BASE and GS_BASE are free (cpu::wrmsr). `hrt_enter_user`
    // saves the callee-saved registers and RSP in the block and enters CPL3 at `entry`, where the
    // code reaches only the merged lower half (duet maps the upper half supervisor-only); it
    // comes back only through `hrt_leave_user` (from `trap`, on this core), which restores them and
    // returns the status: to Rust, an ordinary call.
    unsafe {
        (*b).status = SPLIT_OK;
        (*b).result = 0;
        (*b).syscalls = 0;
        (*b).page_faults = 0;
        (*b).last_fault = u64::MAX;
        (*b).refaults = 0;
        wrmsr(MSR_FS_BASE, fs_base);
        wrmsr(MSR_GS_BASE, 0);
        let status = hrt_enter_user(b, entry, arg, stack);
        Outcome { status, result: (*b).result, syscalls: (*b).syscalls, page_faults: (*b).page_faults }
    }
}

/// Ends the current execution: [`run`] returns `status` and `result`.
fn leave(b: *mut CoreBlock, status: u64, result: u64) -> ! {
    // SAFETY: `b` is this core's block (checked in `trap`), while `run` waits in
    // `hrt_enter_user`: `hrt_leave_user` returns from that call with the registers it saved,
    // abandoning the trap's frames (plain data: nothing there needs dropping).
    unsafe {
        (*b).status = status;
        (*b).result = result;
        hrt_leave_user(b)
    }
}

/// Every trap from CPL3 (boot.rs `hrt_exc_common` → `hrt_trap`), on the core's trap stack, whose
/// block lies right above the frame. Returns to resume the user code.
pub fn trap(frame: &mut TrapFrame) {
    // SAFETY: a trap from CPL3 switches to the TSS's RSP0, the address of the core's block, and the
    // frame (22 words, with the stubs' and `hrt_exc_common`'s pushes; `hrt_syscall_entry` builds
    // the same) ends right there: one frame past it is the block, in the same TrapStack.
    let b = unsafe { (frame as *mut TrapFrame).add(1) as *mut CoreBlock };
    // The block must be the one this frame's stack belongs to; anything else is a kernel bug.
    // SAFETY: `b` is a block (above); only its own core touches it, through raw pointers.
    let core = unsafe { (*b).core } as usize;
    if core >= CORES || block(core) != b {
        Line::forced().s("hrt: user trap on an unknown stack, vector ").dec(frame.vector).print();
        port::exit(0x80 + (frame.vector as u32 & 0x1f));
    }
    let entry = core::ptr::addr_of!(hrt_syscall_entry) as u64;
    match frame.vector {
        VECTOR_SYSCALL => syscall(b, frame),
        14 if frame.rip == entry => {
            // PVM: `syscall` loaded RIP, RCX and R11 but stayed at CPL3; finish it here. (User code
            // that jumps to the entry itself gets the same: R11 is then its own, so RFLAGS is
            // sanitized in `syscall`.)
            frame.rip = frame.rcx;
            frame.rflags = frame.r11;
            syscall(b, frame)
        }
        14 if frame.rip == SPLIT_RETURN => leave(b, SPLIT_OK, frame.rax),
        14 => page_fault(b, frame, cr2()),
        v => leave(b, SPLIT_EXCEPTION + v, frame.rip),
    }
}

fn syscall(b: *mut CoreBlock, frame: &mut TrapFrame) {
    // SAFETY: `b` is this core's block (checked in `trap`); only this core touches it.
    let core = unsafe {
        (*b).syscalls += 1;
        (*b).core as u32
    };
    let nr = frame.rax;
    let result: i64 = match nr {
        SYS_EXIT | SYS_EXIT_GROUP => leave(b, SPLIT_EXITED, frame.rdi),
        SYS_ARCH_PRCTL => arch_prctl(frame.rdi, frame.rsi),
        _ if nr >= u64::from(forwarder::layout::PSEUDO_BASE) => -ENOSYS,
        _ => {
            let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
            let r = match fwd::forward(core, nr as u32, args) {
                Ok(r) => r,
                Err(fwd::FwdError::NoChannel) => -ENOSYS,
                Err(_) => -EIO,
            };
            if matches!(nr, SYS_MMAP | SYS_MPROTECT | SYS_MUNMAP | SYS_BRK | SYS_MREMAP | SYS_MADVISE) {
                merge::resync();
                merge::flush_tlb();
            }
            r
        }
    };
    frame.rax = result as u64;
    // The iretq back to CPL3 must not hand user code IOPL, NT or VM, whatever R11 held.
    frame.rflags = (frame.rflags & USER_RFLAGS) | RFLAGS_FIXED;
}

/// `arch_prctl` on the HRT: the FS base is this core's (the process's thread in the ROS keeps its
/// own), so SET_FS and GET_FS are done here.
fn arch_prctl(code: u64, addr: u64) -> i64 {
    match code {
        ARCH_SET_FS if addr < 1 << 47 => {
            // SAFETY: the FS base is free (cpu::wrmsr), and a canonical lower-half address.
            unsafe { wrmsr(MSR_FS_BASE, addr) };
            0
        }
        ARCH_GET_FS => match merge::user_write_u64(addr, rdmsr(MSR_FS_BASE)) {
            true => 0,
            false => -EFAULT,
        },
        _ => -EINVAL,
    }
}

fn page_fault(b: *mut CoreBlock, frame: &mut TrapFrame, addr: u64) {
    if addr >= 1 << 47 || !merge::merged() {
        leave(b, SPLIT_SEGFAULT, addr);
    }
    // A PML4 entry the process made after the merge: take it, and retry.
    if merge::resync() {
        merge::flush_tlb();
        return;
    }
    let page = addr & !0xfff;
    // SAFETY: `b` is this core's block (checked in `trap`); only this core touches it.
    unsafe {
        if (*b).last_fault == page {
            (*b).refaults += 1;
            if (*b).refaults >= MAX_REFAULTS {
                leave(b, SPLIT_SEGFAULT, addr);
            }
        } else {
            (*b).last_fault = page;
            (*b).refaults = 0;
        }
        (*b).page_faults += 1;
    }
    let write = u64::from(frame.error & 2 != 0);
    // SAFETY: as above.
    let core = unsafe { (*b).core } as u32;
    match fwd::forward(core, PSEUDO_PAGE_FAULT, [page, write, 0, 0, 0, 0]) {
        Ok(0) => invlpg(addr),
        _ => leave(b, SPLIT_SEGFAULT, addr),
    }
}

/// Runs `f` on this core so that a ring-0 page fault in the lower half while it runs (the merged
/// process went away under a channel or a split execution: its memory is gone) abandons `f`
/// instead of killing the HRT: returns `None` then. Interrupts stay as they are.
pub fn guarded(core: u32, f: &mut dyn FnMut() -> u64) -> Option<u64> {
    extern "C" fn tramp(ctx: *mut u8) -> u64 {
        // SAFETY: `ctx` is the `&mut f` that `guarded` passed to `hrt_guarded`, which calls this
        // at once, while `guarded` (and so `f`) waits for it.
        let f = unsafe { &mut **(ctx as *mut &mut dyn FnMut() -> u64) };
        f()
    }
    let core = core as usize;
    if core >= CORES {
        return Some(f());
    }
    let b = block(core);
    let mut f = f;
    // SAFETY: `b` is this core's block (only this core touches it). `hrt_guarded` saves the
    // callee-saved registers and its return RSP and RIP in `guard` and calls `tramp(ctx)`; if a
    // lower-half fault abandons `f`, `kernel_fault` resumes at `hrt_guard_fault`, which restores
    // them and returns -1 from `hrt_guarded`, like a `longjmp`: `f`'s frames are dropped without
    // their destructors, so what runs guarded (the forwarding family, split execution) must hold
    // nothing that needs one: no console line, no merge lock (whose holders touch only the
    // physical window, never the lower half), and nothing in forwarder has a Drop.
    unsafe {
        (*b).guard_active = 1;
        let r = hrt_guarded(addr_of_mut!((*b).guard), tramp, (&mut f as *mut &mut dyn FnMut() -> u64).cast());
        let faulted = (*b).guard_active == 0;
        (*b).guard_active = 0;
        (!faulted).then_some(r)
    }
}

/// A page fault in ring 0 (idt.rs): if it is in the lower half and [`guarded`] runs on this core,
/// resume there (and return true); else false (the fault is fatal).
pub fn kernel_fault(frame: &mut TrapFrame) -> bool {
    let addr = cr2();
    if frame.vector != 14 || addr >= 1 << 47 {
        return false;
    }
    let b = rdmsr(MSR_KERNEL_GS_BASE) as *mut CoreBlock;
    let core = (0..CORES).find(|&c| block(c) == b);
    let Some(core) = core else { return false };
    // SAFETY: `b` is this core's block (KERNEL_GS_BASE, and one of the blocks); a ring-0 fault is
    // handled on the faulting stack, so with `guard_active` the guard holds what `hrt_guarded`
    // saved on this core for the call now abandoned; the frame resumes at `hrt_guard_fault`.
    unsafe {
        if (*b).guard_active == 0 {
            return false;
        }
        (*b).guard_active = 0;
        Line::new()
            .s("hrt: core ")
            .dec(core as u64)
            .s(": ring-0 page fault at user address ")
            .hex(addr)
            .s(" (the merged process is gone?): call abandoned")
            .print();
        frame.rip = core::ptr::addr_of!(hrt_guard_fault) as u64;
        frame.rdi = addr_of_mut!((*b).guard) as u64;
    }
    true
}
