//! The doorbells of a partitioned VM with a hand-assembled ROS (`duet_tests::ros_snippet`): the HRT
//! doorbell wakes a sleeping HRT core without an exit to duet, and the ROS doorbell puts the ringing
//! core's index into COM2.

use abi::{HrtState, Op};
use duet_tests::ros_snippet::*;
use iced_x86::code_asm::*;

/// TSC cycles after which a doorbell test gives up waiting (10-15 s at the usual rates): generous, so
/// a busy host does not fail the test, but bounded, so a missing doorbell fails it rather than hang.
const GIVE_UP_CYCLES: u64 = 30_000_000_000;

/// RAX = the TSC (clobbers RDX).
fn tsc(a: &mut CodeAssembler) {
    a.rdtsc().expect("asm");
    a.shl(rdx, 32).expect("asm");
    a.or(rax, rdx).expect("asm");
}

/// R10 = the TSC [`GIVE_UP_CYCLES`] from now (clobbers RAX, RDX).
fn set_deadline(a: &mut CodeAssembler) {
    tsc(a);
    a.mov(r10, GIVE_UP_CYCLES).expect("asm");
    a.add(r10, rax).expect("asm");
}

/// Jumps to `late` once the TSC has passed the deadline in R10 (clobbers RAX, RDX).
fn jump_if_late(a: &mut CodeAssembler, late: CodeLabel) {
    tsc(a);
    a.cmp(rax, r10).expect("asm");
    a.jae(late).expect("asm");
}

/// Spins `cycles` TSC cycles with `pause` (clobbers RAX, RDX, R11).
fn delay(a: &mut CodeAssembler, cycles: u32) {
    let mut spin = a.create_label();
    tsc(a);
    a.lea(r11, qword_ptr(rax + cycles)).expect("asm");
    a.set_label(&mut spin).expect("asm");
    a.pause().expect("asm");
    tsc(a);
    a.cmp(rax, r11).expect("asm");
    a.jb(spin).expect("asm");
}

/// Rings the HRT doorbell of `core` (`out 0xe8, eax`), then waits a little, until the completion record
/// at [`COMPLETION`] holds the sequence number in R12, or `max_rings` rings or [`GIVE_UP_CYCLES`] went
/// unanswered; leaves the rings made in R13 and the completion's result in RBX (u64::MAX when it never
/// came).
fn ring_until_done(r: &mut Ros, core: u32, max_rings: u32) {
    let a = &mut r.a;
    let (mut ring, mut done, mut gave_up, mut end) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label());
    set_deadline(a);
    a.mov(r8, COMPLETION).expect("asm");
    a.xor(r13d, r13d).expect("asm");
    a.set_label(&mut ring).expect("asm");
    a.cmp(qword_ptr(r8), r12).expect("asm");
    a.je(done).expect("asm");
    a.cmp(r13d, max_rings).expect("asm");
    a.jae(gave_up).expect("asm");
    jump_if_late(a, gave_up);
    a.mov(eax, core).expect("asm");
    a.out(0xe8u32, eax).expect("asm");
    a.inc(r13d).expect("asm");
    delay(a, 200_000);
    a.jmp(ring).expect("asm");
    a.set_label(&mut gave_up).expect("asm");
    a.mov(rbx, u64::MAX).expect("asm");
    a.jmp(end).expect("asm");
    a.set_label(&mut done).expect("asm");
    a.mov(rbx, qword_ptr(r8 + 8)).expect("asm");
    a.set_label(&mut end).expect("asm");
    a.nop().expect("asm");
}

/// Posts `func(arg)` on `core` asynchronously with a completion record at [`COMPLETION`] (zeroed
/// first); leaves the sequence number in R12.
fn invoke_async(r: &mut Ros, func: u64, arg: u64, core: u64) {
    r.a.mov(r8, COMPLETION).expect("asm");
    r.a.mov(qword_ptr(r8), 0).expect("asm");
    r.op(Op::Invoke, [func, arg, core, 0, COMPLETION]);
    r.a.mov(r12, rbx).expect("asm");
}

#[test]
fn the_hrt_doorbell_wakes_an_hrt_core_without_the_vmm() {
    // HRT function 21 (n) completes only after n interrupts on its core; nothing but the doorbell
    // sends any while it waits. Rings are bounded: without the doorbell the test fails, not hangs.
    const MAX_RINGS: u32 = 1_000_000;
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    // Stray rings, before and while core 1 waits: a core that does not exist, a 1-byte write, the
    // other doorbell's port (the HRT's, not the ROS's to ring). All harmless.
    for v in [7u32, 2, 0x100, u32::MAX] {
        r.a.mov(eax, v).expect("asm");
        r.a.out(0xe8u32, eax).expect("asm");
    }
    r.a.mov(al, 1u32).expect("asm");
    r.a.out(0xe8u32, al).expect("asm");
    r.a.mov(eax, 1u32).expect("asm");
    r.a.out(0xecu32, eax).expect("asm");
    invoke_async(&mut r, 21, 3, 1);
    // Core 0's doorbell does not wake core 1.
    ring_until_done(&mut r, 0, 200);
    r.mark_eq(1, rbx, u64::MAX);
    r.a.mov(eax, 7u32).expect("asm");
    r.a.out(0xe8u32, eax).expect("asm");
    // Core 1's does: at least three rings, each waking it once.
    ring_until_done(&mut r, 1, MAX_RINGS);
    r.mark(2, rbx);
    r.a.xor(r14d, r14d).expect("asm");
    r.a.cmp(r13d, 3).expect("asm");
    r.a.setae(r14b).expect("asm");
    r.mark(3, r14);
    // The HRT is rebooted (its cores and LAPICs reset by duet): the doorbells still ring.
    r.op(Op::HrtReboot, [0; 5]);
    r.wait_state(HrtState::Ready);
    invoke_async(&mut r, 21, 2, 0);
    ring_until_done(&mut r, 0, MAX_RINGS);
    r.mark(4, rbx);
    // Both cores still serve invokes.
    r.invoke_sync(0, 0x61, 0);
    r.mark(5, rbx);
    r.invoke_sync(0, 0x62, 1);
    r.mark(6, rbx);
    r.exit(0);
    let out = partitioned("hrt-doorbell", r.a, 2);
    let text = exited(&out, 0);
    let want = vec![code(1, 0), code(2, 3), code(3, 1), code(4, 2), code(5, 0x61), code(6, 0x62)];
    assert_eq!(ros_marks(&out), want, "{text}");
}

#[test]
fn the_ros_doorbell_puts_the_core_index_into_com2() {
    const LSR: u32 = abi::ROS_DOORBELL_UART as u32 + 5;
    const RBR: u32 = abi::ROS_DOORBELL_UART as u32;
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    // The configured mode and the doorbell ports, from PARTITION_INFO.
    r.op(Op::PartitionInfo, [BUF, 632, 0, 0, 0]);
    r.mark(1, rbx);
    r.a.mov(r8, BUF).expect("asm");
    for (tag, at) in [(2u32, 616), (3, 620), (4, 624), (5, 628)] {
        r.a.mov(r9d, dword_ptr(r8 + at)).expect("asm");
        r.mark(tag, r9);
    }
    // The ROS writing the ROS doorbell's port reaches nothing; COM2 holds no data.
    r.a.mov(eax, 0u32).expect("asm");
    r.a.out(0xecu32, eax).expect("asm");
    delay(&mut r.a, 10_000_000);
    r.a.mov(dx, LSR).expect("asm");
    r.a.in_(al, dx).expect("asm");
    r.a.and(eax, 1).expect("asm");
    r.mark(6, rax);
    // HRT function 20 rings the ROS doorbell with its core index: one byte each, in COM2's FIFO.
    for (tag, core) in [(7u32, 0u64), (10, 1)] {
        r.invoke_sync(20, 0, core);
        r.mark(tag, rbx);
        let a = &mut r.a;
        let (mut poll, mut ready, mut late, mut end) =
            (a.create_label(), a.create_label(), a.create_label(), a.create_label());
        set_deadline(a);
        a.set_label(&mut poll).expect("asm");
        a.mov(dx, LSR).expect("asm");
        a.in_(al, dx).expect("asm");
        a.test(al, 1).expect("asm");
        a.jnz(ready).expect("asm");
        jump_if_late(a, late);
        delay(a, 100_000);
        a.jmp(poll).expect("asm");
        a.set_label(&mut late).expect("asm");
        a.mov(ebx, 0xffffu32).expect("asm");
        a.jmp(end).expect("asm");
        a.set_label(&mut ready).expect("asm");
        a.mov(dx, RBR).expect("asm");
        a.xor(eax, eax).expect("asm");
        a.in_(al, dx).expect("asm");
        a.mov(ebx, eax).expect("asm");
        a.set_label(&mut end).expect("asm");
        r.mark(tag + 1, rbx);
        // One ring, one byte.
        r.a.mov(dx, LSR).expect("asm");
        r.a.in_(al, dx).expect("asm");
        r.a.and(eax, 1).expect("asm");
        r.mark(tag + 2, rax);
    }
    r.exit(0);
    let out = partitioned_cfg("ros-doorbell", r.a, ROS_MEM, |hrt| {
        hrt.vcpus = 2;
        hrt.forward = config::ForwardMode::Adaptive;
        hrt.forward_spin_us = 250;
    });
    let text = exited(&out, 0);
    let want = vec![
        code(1, abi::HvmInfo::SIZE as u64),
        code(2, abi::ForwardMode::Adaptive as u64),
        code(3, 250),
        code(4, 0xe8),
        code(5, 0xec),
        code(6, 0),
        code(7, 0),
        code(8, 0),
        code(9, 0),
        code(10, 0),
        code(11, 1),
        code(12, 0),
    ];
    assert_eq!(ros_marks(&out), want, "{text}");
}
