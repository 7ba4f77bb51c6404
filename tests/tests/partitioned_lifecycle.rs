//! The HRT's lifecycle in a partitioned VM with a hand-assembled ROS (`duet_tests::ros_snippet`): a
//! faulting HRT is contained and rebooted, back-to-back reboots start clean, a hung HRT is rebooted
//! and the ROS replaces its image.

use abi::{HcallError, HrtState, Op, EVENT_HRT_FAULT, EVENT_HRT_READY};
use duet_tests::ros_snippet::*;
use duet_tests::*;
use iced_x86::code_asm::*;

#[test]
fn a_faulting_hrt_is_contained_and_rebooted() {
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    // Triple fault on purpose: the HRT faults, the ROS goes on.
    r.op(Op::Invoke, [5, 0, 0, 0, 0]);
    r.wait_state(HrtState::Faulted);
    r.mark(1, rcx);
    r.mark(2, rdx);
    for tag in [3, 4] {
        r.op(Op::EventComplete, [0; 5]);
        r.mark(tag, rbx);
    }
    r.op(Op::Invoke, [0, 0, 0, 0, 0]);
    r.mark(5, rax);
    r.op(Op::HrtReboot, [0; 5]);
    r.wait_state(HrtState::Ready);
    r.mark(6, rdx);
    r.invoke_sync(1, 99, 0);
    r.mark(7, rbx);
    // A page fault, handled by the HRT itself: it exits (status 0x8e), contained too.
    r.op(Op::Invoke, [4, 0, 0, 0, 0]);
    r.wait_state(HrtState::Exited);
    r.mark(8, rcx);
    r.op(Op::HrtBoot, [0; 5]);
    r.wait_state(HrtState::Ready);
    r.mark(9, rdx);
    // Reboots back to back, each as soon as the HRT says it is ready (it is still printing then): every
    // boot must start clean.
    r.a.mov(r13, 20u64).expect("asm");
    let mut again = r.a.create_label();
    r.a.set_label(&mut again).expect("asm");
    r.op(Op::HrtReboot, [0; 5]);
    r.wait_state(HrtState::Ready);
    r.a.dec(r13).expect("asm");
    r.a.jnz(again).expect("asm");
    r.invoke_sync(1, 5, 0);
    r.mark(10, rbx);
    r.op(Op::HrtStatus, [0; 5]);
    r.mark(11, rdx);
    r.exit(0);
    let out = partitioned("fault", r.a, 1);
    let text = exited(&out, 0);
    let want = vec![
        code(1, abi::HrtFault::TripleFault as u64),
        code(2, 1),
        code(3, EVENT_HRT_READY),
        code(4, EVENT_HRT_FAULT),
        err(5, HcallError::BadState),
        code(6, 2),
        code(7, 100),
        code(8, 0x8e),
        code(9, 3),
        code(10, 6),
        code(11, 23),
    ];
    assert_eq!(ros_marks(&out), want, "{text}");
}

#[test]
fn a_hung_hrt_is_rebooted_and_the_ros_replaces_its_image() {
    // The replacement: a standard 32-bit Multiboot2 kernel linked inside the HRT's partition, which
    // exits through the debug port with 0x42 (contained: the HRT's state becomes exited).
    let mut k = asm32();
    exit_with(&mut k, 0x42);
    let image = tiny_mb2_kernel_at(k, (HRT_BASE + 0x40_0000) as u32);
    let mut r = Ros::new();
    let mut image_at = r.a.create_label();
    let mut code_start = r.a.create_label();
    r.a.set_label(&mut code_start).expect("asm");
    r.a.nop().expect("asm");
    r.wait_state(HrtState::Ready);
    // A hang: the core never finishes, so a second request is BUSY; a reboot recovers it.
    r.op(Op::Invoke, [6, 0, 0, 0, 0]);
    r.op(Op::Invoke, [0, 0, 0, 0, 0]);
    r.mark(1, rax);
    r.op(Op::HrtReboot, [0; 5]);
    r.wait_state(HrtState::Ready);
    r.invoke_sync(0, 9, 0);
    r.mark(2, rbx);
    // Not a Multiboot2 kernel: refused, the HRT keeps running.
    r.a.lea(rbx, ptr(code_start)).expect("asm");
    r.a.mov(rcx, 64u64).expect("asm");
    r.a.mov(eax, Op::HrtReplace as u32).expect("asm");
    r.a.out(0xe4u32, eax).expect("asm");
    r.mark(3, rax);
    // An image "in" the HRT's memory: not the ROS's to name.
    r.op(Op::HrtReplace, [HRT_BASE + 0x20_0000, 4096, 0, 0, 0]);
    r.mark(4, rax);
    // The real replacement.
    r.a.lea(rbx, ptr(image_at)).expect("asm");
    r.a.mov(rcx, image.len() as u64).expect("asm");
    r.a.mov(eax, Op::HrtReplace as u32).expect("asm");
    r.a.out(0xe4u32, eax).expect("asm");
    r.mark(5, rax);
    r.wait_state(HrtState::Exited);
    r.mark(6, rcx);
    r.mark(7, rdx);
    r.exit(0);
    r.a.set_label(&mut image_at).expect("asm");
    r.a.db(&image).expect("asm");
    let out = partitioned("replace", r.a, 1);
    let text = exited(&out, 0);
    let want = vec![
        err(1, HcallError::Busy),
        code(2, 9),
        err(3, HcallError::BadArgument),
        err(4, HcallError::BadAddress),
        code(5, 0),
        code(6, 0x42),
        code(7, 3),
    ];
    assert_eq!(ros_marks(&out), want, "{text}");
}
