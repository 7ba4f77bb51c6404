//! Guest user mode on real KVM: `syscall` from CPL3, and what the host's KVM does with it.

use std::time::Duration;

use duet_tests::*;
use iced_x86::code_asm::*;

fn mark(a: &mut CodeAssembler, reg: AsmRegister64) {
    a.mov(rax, reg).expect("asm");
    a.mov(dx, 0xf8u32).expect("asm");
    a.out(dx, eax).expect("asm");
    a.shr(rax, 32).expect("asm");
    a.out(dx, eax).expect("asm");
}

/// A guest that enters CPL3 through `iretq` with a Linux-like GDT and runs `syscall` with LSTAR set.
/// The LSTAR handler reports CS, RCX and R11 as marks and exits 10; #PF and #GP handlers exit 20/30.
fn syscall_probe() -> Vec<u8> {
    let gdt = TINY_DATA; // 10 entries
    let idt = TINY_DATA + 0x100;
    let tss = TINY_DATA + 0x400;
    let kstack = TINY_LOAD + 0x1f_0000;
    let ustack = TINY_LOAD + 0x1e_0000;
    let mut a = asm();
    let (mut lstar, pf, gp, mut user, mut gdtr, mut idtr, mut reload) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
    // Make the 2 MiB page at 16 MiB user-accessible: PML4[0], PDPT[0], PD0[8] |= U.
    for addr in [0x9000u64, 0xa000, 0xb000 + 8 * 8] {
        a.mov(rdi, addr).expect("asm");
        a.or(qword_ptr(rdi), 4).expect("asm");
    }
    a.mov(rax, cr3).expect("asm");
    a.mov(cr3, rax).expect("asm");
    // Linux-like GDT: 1 k32cs, 2 kcs(0x10), 3 kds(0x18), 4 u32cs(0x23), 5 uds(0x2b), 6 ucs(0x33), 8 tss(0x40).
    a.mov(rdi, gdt).expect("asm");
    let entries: [(usize, u64); 6] = [
        (1, 0x00cf9b000000ffff),
        (2, 0x00af9b000000ffff),
        (3, 0x00cf93000000ffff),
        (4, 0x00cffb000000ffff),
        (5, 0x00cff3000000ffff),
        (6, 0x00affb000000ffff),
    ];
    for (i, e) in entries {
        a.mov(rax, e).expect("asm");
        a.mov(qword_ptr(rdi + (i * 8) as i32), rax).expect("asm");
    }
    // TSS descriptor (base = tss, limit 0x67, type 9).
    let t = tss;
    let low = 0x67u64 | ((t & 0xffffff) << 16) | (0x89u64 << 40) | (((t >> 24) & 0xff) << 56);
    a.mov(rax, low).expect("asm");
    a.mov(qword_ptr(rdi + 64), rax).expect("asm");
    a.mov(dword_ptr(rdi + 72), (t >> 32) as u32).expect("asm");
    a.mov(dword_ptr(rdi + 76), 0u32).expect("asm");
    a.mov(rdi, tss).expect("asm");
    a.mov(rax, kstack).expect("asm");
    a.mov(qword_ptr(rdi + 4), rax).expect("asm"); // rsp0
    a.lgdt(ptr(gdtr)).expect("asm");
    // Reload CS = 0x10 with a far return.
    a.push(0x10).expect("asm");
    a.lea(rax, ptr(reload)).expect("asm");
    a.push(rax).expect("asm");
    a.db(&[0x48, 0xcb]).expect("asm"); // retfq
    a.set_label(&mut reload).expect("asm");
    a.mov(eax, 0x18u32).expect("asm");
    a.mov(ss, ax).expect("asm");
    a.mov(ds, ax).expect("asm");
    a.mov(ax, 0x40u32).expect("asm");
    a.ltr(ax).expect("asm");
    // IDT: #GP (13) and #PF (14).
    a.mov(rdi, idt).expect("asm");
    for (vec, label) in [(13u32, gp), (14u32, pf)] {
        a.lea(rax, ptr(label)).expect("asm");
        let off = (vec * 16) as i32;
        a.mov(word_ptr(rdi + off), ax).expect("asm");
        a.mov(word_ptr(rdi + off + 2), 0x10u32).expect("asm");
        a.mov(word_ptr(rdi + off + 4), 0x8e00u32).expect("asm");
        a.shr(rax, 16).expect("asm");
        a.mov(word_ptr(rdi + off + 6), ax).expect("asm");
        a.shr(rax, 16).expect("asm");
        a.mov(dword_ptr(rdi + off + 8), eax).expect("asm");
    }
    a.lidt(ptr(idtr)).expect("asm");
    // syscall MSRs: EFER.SCE, STAR, LSTAR, SFMASK.
    a.mov(ecx, 0xc000_0080u32).expect("asm");
    a.rdmsr().expect("asm");
    a.or(eax, 1).expect("asm");
    a.wrmsr().expect("asm");
    a.mov(ecx, 0xc000_0081u32).expect("asm");
    a.xor(eax, eax).expect("asm");
    a.mov(edx, 0x0023_0010u32).expect("asm");
    a.wrmsr().expect("asm");
    a.mov(ecx, 0xc000_0082u32).expect("asm");
    a.lea(rax, ptr(lstar)).expect("asm");
    a.mov(rdx, rax).expect("asm");
    a.shr(rdx, 32).expect("asm");
    a.wrmsr().expect("asm");
    a.mov(ecx, 0xc000_0084u32).expect("asm");
    a.mov(eax, 0x4700u32).expect("asm");
    a.xor(edx, edx).expect("asm");
    a.wrmsr().expect("asm");
    // iretq to CPL3.
    a.push(0x2b).expect("asm");
    a.mov(rax, ustack).expect("asm");
    a.push(rax).expect("asm");
    a.push(0x2).expect("asm");
    a.push(0x33).expect("asm");
    a.lea(rax, ptr(user)).expect("asm");
    a.push(rax).expect("asm");
    a.iretq().expect("asm");

    a.set_label(&mut user).expect("asm");
    a.mov(eax, 0x5555u32).expect("asm");
    a.syscall().expect("asm");
    a.mov(eax, 0x6666u32).expect("asm"); // after sysret? (never, no sysret)
    let mut spin = a.create_label();
    a.set_label(&mut spin).expect("asm");
    a.jmp(spin).expect("asm");

    // LSTAR: report CS, RCX, R11, then exit 10.
    a.set_label(&mut lstar).expect("asm");
    a.mov(r12, rcx).expect("asm");
    a.mov(r13, r11).expect("asm");
    a.xor(eax, eax).expect("asm");
    a.mov(ax, cs).expect("asm");
    a.mov(rbx, rax).expect("asm");
    mark(&mut a, rbx);
    mark(&mut a, r12);
    mark(&mut a, r13);
    exit_with(&mut a, 10);

    for (mut label, code) in [(pf, 20u32), (gp, 30u32)] {
        a.set_label(&mut label).expect("asm");
        a.mov(r12, rcx).expect("asm");
        a.mov(r13, r11).expect("asm");
        a.mov(rbx, qword_ptr(rsp)).expect("asm"); // error code
        mark(&mut a, rbx);
        a.mov(rbx, qword_ptr(rsp + 8)).expect("asm"); // rip
        mark(&mut a, rbx);
        a.mov(rbx, qword_ptr(rsp + 16)).expect("asm"); // cs
        mark(&mut a, rbx);
        mark(&mut a, r12);
        mark(&mut a, r13);
        a.mov(rbx, cr2).expect("asm");
        mark(&mut a, rbx);
        exit_with(&mut a, code);
    }
    a.set_label(&mut gdtr).expect("asm");
    a.dw(&[80 - 1]).expect("asm");
    a.dq(&[gdt]).expect("asm");
    a.set_label(&mut idtr).expect("asm");
    a.dw(&[0xfff]).expect("asm");
    a.dq(&[idt]).expect("asm");
    tiny_kernel(a)
}

/// Reads a mark pair (low, high) as one 64-bit value.
fn marks64(out: &vmm::Outcome) -> Vec<u64> {
    out.marks.chunks(2).map(|p| u64::from(p[0].code) | (u64::from(p.get(1).map_or(0, |m| m.code)) << 32)).collect()
}

/// The fact duet's PVM syscall shim (guests/linux/pvm-syscall-shim.patch) relies on: on PVM, `syscall`
/// from CPL3 loads RIP from LSTAR, RCX and R11 but stays at CPL3; on hardware KVM it enters ring 0.
#[test]
fn syscall_from_user_mode_loads_lstar_rcx_r11() {
    let out = run(&tiny_config(&scratch("syscall"), &syscall_probe()), Duration::from_secs(60));
    assert_eq!(out.reason, vmm::ExitReason::Exit(10), "LSTAR handler reached; marks {:x?}", marks64(&out));
    let v = marks64(&out);
    assert!(v.len() >= 3, "marks {v:x?}");
    let (code_seg, ret_rip, ret_flags) = (v[0], v[1], v[2]);
    assert!(ret_rip > TINY_LOAD && ret_rip < TINY_LOAD + 0x1000, "RCX holds the return address: {ret_rip:#x}");
    assert_eq!(ret_flags & 0x2, 0x2, "R11 holds RFLAGS: {ret_flags:#x}");
    if out.flavor.emulates_ring0() {
        assert_eq!(code_seg, 0x33, "PVM leaves the vCPU at CPL3 (if this changes, the shim is no longer needed)");
    } else {
        assert_eq!(code_seg, 0x10, "hardware enters ring 0 with STAR's kernel CS");
    }
}
