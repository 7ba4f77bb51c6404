//! Tier 2: tiny hand-assembled kernels on real KVM, one exit path each.
#![allow(clippy::panic)]

use std::time::Duration;

use duet_tests::*;
use iced_x86::code_asm::*;
use vmm::GuestFault;
use vmm::ExitReason;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn guest_exit_status_reaches_the_vmm() {
    let mut a = asm();
    exit_with(&mut a, 42);
    let out = run(&tiny_config(&scratch("exit"), &tiny_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Exit(42));
}

#[test]
fn serial_output_is_captured() {
    let mut a = asm();
    for b in b"hi duet\n" {
        a.mov(al, u32::from(*b)).expect("asm");
        a.mov(dx, 0x3f8u32).expect("asm");
        a.out(dx, al).expect("asm");
    }
    exit_with(&mut a, 0);
    let out = run(&tiny_config(&scratch("serial"), &tiny_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Exit(0));
    assert_eq!(out.console_text(), "hi duet\n");
}

#[test]
fn debug_port_marks_are_timestamped_in_order() {
    let mut a = asm();
    for code in [1u32, 77] {
        a.mov(eax, code).expect("asm");
        a.mov(dx, 0xf8u32).expect("asm");
        a.out(dx, eax).expect("asm");
    }
    exit_with(&mut a, 0);
    let out = run(&tiny_config(&scratch("marks"), &tiny_kernel(a)), LIMIT);
    let codes: Vec<u32> = out.marks.iter().map(|m| m.code).collect();
    assert_eq!(codes, vec![1, 77]);
    assert!(out.marks[0].since_start <= out.marks[1].since_start);
    assert!(out.marks[1].since_start <= out.elapsed);
}

/// Marks carry each vCPU's KVM statistics (binary stats fd): 50 `out`s to a port nothing claims
/// between two marks are at least 50 exits, and the first mark's own exit is in the
/// second's count.
#[test]
fn marks_carry_the_vcpus_kvm_exit_counts() {
    let mut a = asm();
    a.mov(eax, 0x1000u32).expect("asm");
    a.mov(dx, 0xf8u32).expect("asm");
    a.out(dx, eax).expect("asm");
    a.mov(ecx, 50u32).expect("asm");
    a.mov(dx, 0x510u32).expect("asm");
    let mut top = a.create_label();
    a.set_label(&mut top).expect("asm");
    a.out(dx, al).expect("asm");
    a.dec(ecx).expect("asm");
    a.jnz(top).expect("asm");
    a.mov(eax, 0x1001u32).expect("asm");
    a.mov(dx, 0xf8u32).expect("asm");
    a.out(dx, eax).expect("asm");
    exit_with(&mut a, 0);
    let out = run(&tiny_config(&scratch("mark-stats"), &tiny_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Exit(0));
    let [first, second] = &out.marks[..] else { panic!("marks: {:?}", out.marks) };
    assert_eq!(first.vcpus.len(), 1, "one ROS vCPU sampled: {:?}", first.vcpus);
    let ros = vmm::stats::Partition::Ros;
    let d = second.total(ros).since(&first.total(ros));
    // PVM counts these in `exits` but not in `io_exits` (its port I/O goes through its emulator).
    assert!(d.exits >= 51 && d.exits >= d.io_exits, "phase: {d:?}");
    assert!(d.exits < 60, "a loop of 50 outs and one mark cost {} exits", d.exits);
}

#[test]
fn i8042_reset_stops_the_vm() {
    let mut a = asm();
    a.mov(al, 0xfeu32).expect("asm");
    a.out(0x64, al).expect("asm");
    exit_with(&mut a, 9);
    let out = run(&tiny_config(&scratch("reset"), &tiny_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Reset);
}

/// `int3` through a real IDT: native on hardware KVM, duet's #BP injection on PVM.
#[test]
fn int3_reaches_the_guest_breakpoint_handler() {
    const IDT: u64 = TINY_DATA;
    let mut a = asm();
    let mut handler = a.create_label();
    let mut idtr = a.create_label();
    a.lea(rax, ptr(handler)).expect("asm");
    a.mov(rdi, IDT).expect("asm");
    a.mov(word_ptr(rdi + 3 * 16), ax).expect("asm");
    a.mov(word_ptr(rdi + 3 * 16 + 2), 0x08u32).expect("asm");
    a.mov(word_ptr(rdi + 3 * 16 + 4), 0x8e00u32).expect("asm");
    a.shr(rax, 16).expect("asm");
    a.mov(word_ptr(rdi + 3 * 16 + 6), ax).expect("asm");
    a.shr(rax, 16).expect("asm");
    a.mov(dword_ptr(rdi + 3 * 16 + 8), eax).expect("asm");
    a.mov(dword_ptr(rdi + 3 * 16 + 12), 0u32).expect("asm");
    a.lidt(ptr(idtr)).expect("asm");
    a.int3().expect("asm");
    exit_with(&mut a, 99); // not reached: the handler never returns
    a.set_label(&mut handler).expect("asm");
    // The pushed RIP must point just past the int3 (a trap), whoever delivered it.
    a.mov(rax, qword_ptr(rsp)).expect("asm");
    a.mov(eax, dword_ptr(rax - 1)).expect("asm");
    a.cmp(al, 0xccu32).expect("asm");
    let mut bad_rip = a.create_label();
    a.jne(bad_rip).expect("asm");
    exit_with(&mut a, 3);
    a.set_label(&mut bad_rip).expect("asm");
    exit_with(&mut a, 4);
    a.set_label(&mut idtr).expect("asm");
    a.dw(&[0x0fff]).expect("asm");
    a.dq(&[IDT]).expect("asm");
    let out = run(&tiny_config(&scratch("int3"), &tiny_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Exit(3), "console: {}", out.console_text());
}

/// x87 and MXCSR control instructions: native on hardware KVM, emulated by duet on PVM. Each check that
/// fails exits with its own status (1: fldcw/fnstcw, 2: ldmxcsr/stmxcsr, 3: fld1/fnstsw).
#[test]
fn x87_and_mxcsr_control_state_round_trips() {
    let mut a = asm();
    let mut fails = [a.create_label(), a.create_label(), a.create_label()];
    a.mov(rax, cr4).expect("asm");
    a.or(rax, 0x200).expect("asm"); // CR4.OSFXSR, so ldmxcsr is legal
    a.mov(cr4, rax).expect("asm");
    a.mov(rdi, TINY_DATA).expect("asm");
    a.fninit().expect("asm");
    a.mov(word_ptr(rdi), 0x027fu32).expect("asm");
    a.fldcw(word_ptr(rdi)).expect("asm");
    a.fnstcw(word_ptr(rdi + 2)).expect("asm");
    a.movzx(eax, word_ptr(rdi + 2)).expect("asm");
    a.cmp(eax, 0x027f).expect("asm");
    a.jne(fails[0]).expect("asm");
    a.mov(dword_ptr(rdi + 4), 0x7f80u32).expect("asm");
    a.ldmxcsr(dword_ptr(rdi + 4)).expect("asm");
    a.stmxcsr(dword_ptr(rdi + 8)).expect("asm");
    a.mov(eax, dword_ptr(rdi + 8)).expect("asm");
    a.cmp(eax, 0x7f80).expect("asm");
    a.jne(fails[1]).expect("asm");
    a.fld1().expect("asm");
    a.fnclex().expect("asm");
    a.fnstsw(ax).expect("asm");
    a.shr(eax, 11).expect("asm");
    a.and(eax, 7).expect("asm");
    a.cmp(eax, 7).expect("asm"); // one push: TOP = 7
    a.jne(fails[2]).expect("asm");
    exit_with(&mut a, 0);
    for (i, label) in fails.iter_mut().enumerate() {
        a.set_label(label).expect("asm");
        a.mov(rsi, rax).expect("asm");
        a.mov(eax, eax).expect("asm");
        a.mov(dx, 0xf8u32).expect("asm");
        a.out(dx, eax).expect("asm"); // the value seen, as a mark
        exit_with(&mut a, i as u32 + 1);
    }
    let out = run(&tiny_config(&scratch("x87"), &tiny_kernel(a)), LIMIT);
    let seen: Vec<String> = out.marks.iter().map(|m| format!("{:#x}", m.code)).collect();
    assert_eq!(out.reason, ExitReason::Exit(0), "value seen: {seen:?} ({} fallbacks)", out.emulation_fallbacks);
    if out.flavor.emulates_ring0() {
        assert!(out.emulation_fallbacks >= 5, "PVM should have needed the fallback: {}", out.emulation_fallbacks);
    }
}

#[test]
fn triple_fault_ends_the_vm_with_a_report() {
    let mut a = asm();
    a.ud2().expect("asm"); // no IDT: #UD -> #DF -> triple fault
    let out = run(&tiny_config(&scratch("triple"), &tiny_kernel(a)), LIMIT);
    match &out.reason {
        ExitReason::Fault(GuestFault::TripleFault { vcpu: 0, regs }) => {
            assert_eq!(regs.rip, TINY_LOAD, "RIP of the faulting ud2");
        }
        other => panic!("expected a triple fault, got {other:?}"),
    }
    assert!(out.reason.to_string().contains("triple-faulted"));
}

/// An instruction PVM cannot emulate ends the VM with a report; hardware KVM runs it.
#[test]
fn unemulatable_instruction_is_reported_not_hung() {
    let mut a = asm();
    a.mov(rax, cr4).expect("asm");
    a.or(rax, 0x4_0000).expect("asm"); // CR4.OSXSAVE, so xgetbv is legal where XSAVE exists
    a.mov(cr4, rax).expect("asm");
    a.xor(ecx, ecx).expect("asm");
    a.xgetbv().expect("asm");
    exit_with(&mut a, 0);
    let out = run(&tiny_config(&scratch("xgetbv"), &tiny_kernel(a)), LIMIT);
    if out.flavor.emulates_ring0() {
        match &out.reason {
            ExitReason::Fault(GuestFault::Unsupported { report, .. }) => {
                assert!(report.contains("xgetbv") && report.contains("not supported by this host's KVM"), "{report}");
                assert!(report.contains(&format!("{:#x}", TINY_LOAD + 9)) || report.contains("RIP"), "{report}");
            }
            other => panic!("expected an unsupported-instruction report, got {other:?}"),
        }
    } else {
        assert_eq!(out.reason, ExitReason::Exit(0));
    }
}

#[test]
fn a_hung_guest_is_ended_by_the_timeout() {
    let mut a = asm();
    let mut spin = a.create_label();
    a.set_label(&mut spin).expect("asm");
    a.jmp(spin).expect("asm");
    let out = run(&tiny_config(&scratch("hang"), &tiny_kernel(a)), Duration::from_millis(500));
    assert_eq!(out.reason, ExitReason::Timeout);
    assert!(out.elapsed >= Duration::from_millis(500));
}
