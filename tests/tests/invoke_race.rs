//! Concurrent invokes in a partitioned VM with a hand-assembled two-vCPU ROS (`duet_tests::ros_snippet`):
//! both ROS vCPUs hammer one HRT core with invokes, and one vCPU hammers while the other reboots the HRT
//! 50 times. duet posts an invoke under the HRT lifecycle's lock, so two posters cannot interleave their
//! writes to a core's slot (the HRT would run a mixed request and one caller's completion would never
//! come), and it refuses an invoke while a boot is pending (BAD_STATE), which the boot's clearing of the
//! comm page would otherwise erase.

use abi::{func, HcallError, HrtState, Op};
use duet_tests::ros_snippet::*;
use iced_x86::code_asm::*;

/// Invokes each vCPU makes in the hammer test.
const INVOKES: u64 = 1000;
/// Reboots in the reboot test.
const REBOOTS: u64 = 50;
/// Spins on a completion record before a vCPU counts it as never coming.
const SPIN_BOUND: u64 = 10_000_000;
/// The vCPUs' completion records (separate cache lines).
const RECORDS: [u64; 2] = [0x1a0_0000, 0x1a0_0040];
/// The AP's stack top.
const AP_STACK: u64 = 0x1b0_0000;
/// Words the vCPUs share: the AP's results, its done flag, the BSP's stop request.
const AP_ERRORS: u64 = 0x1c0_0000;
const AP_COMPLETED: u64 = AP_ERRORS + 8;
const AP_LOST: u64 = AP_ERRORS + 16;
const AP_DONE: u64 = AP_ERRORS + 24;
const STOP: u64 = AP_ERRORS + 32;
/// What a vCPU adds to its error count for an unexpected hypercall status, a completion that never
/// came, and a completion whose result is not its request's echo.
const ERR_STATUS: i32 = 0x1000;
const ERR_NEVER: i32 = 0x100;
const ERR_MISMATCH: i32 = 1;

/// Emits `INVOKE(ECHO, arg = id << 32 | R9)` on HRT core 0 with the completion record at R8.
fn invoke_echo(a: &mut CodeAssembler, id: u64) {
    a.mov(rbx, func::ECHO).expect("asm");
    a.mov(rcx, id << 32).expect("asm");
    a.or(rcx, r9).expect("asm");
    a.xor(edx, edx).expect("asm");
    a.xor(esi, esi).expect("asm");
    a.mov(rdi, r8).expect("asm");
    a.mov(eax, Op::Invoke as u32).expect("asm");
    a.out(0xe4u32, eax).expect("asm");
}

/// Emits the check of a finished request: R11 += 1 if the record at R8 holds `id << 32 | R9`, else
/// R10 += [`ERR_MISMATCH`].
fn check_echo(a: &mut CodeAssembler, id: u64, next: CodeLabel) {
    let mut ok = a.create_label();
    a.mov(rax, id << 32).expect("asm");
    a.or(rax, r9).expect("asm");
    a.cmp(qword_ptr(r8 + 8), rax).expect("asm");
    a.je(ok).expect("asm");
    a.add(r10, ERR_MISMATCH).expect("asm");
    a.jmp(next).expect("asm");
    a.set_label(&mut ok).expect("asm");
    a.inc(r11).expect("asm");
    a.jmp(next).expect("asm");
}

/// Emits [`INVOKES`] echo invokes by vCPU `id` (retrying while the core is BUSY), each waited for on
/// its completion record: R10 = errors, R11 = completed.
fn hammer(a: &mut CodeAssembler, id: u64) {
    a.mov(r8, RECORDS[id as usize]).expect("asm");
    a.xor(r10, r10).expect("asm");
    a.xor(r11, r11).expect("asm");
    a.mov(r9, INVOKES).expect("asm");
    let (mut top, mut retry, mut accepted, mut spin, mut done, mut next) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
    a.set_label(&mut top).expect("asm");
    a.mov(qword_ptr(r8), 0).expect("asm");
    a.set_label(&mut retry).expect("asm");
    invoke_echo(a, id);
    a.cmp(rax, HcallError::Busy.code() as i32).expect("asm");
    a.jne(accepted).expect("asm");
    a.pause().expect("asm");
    a.jmp(retry).expect("asm");
    a.set_label(&mut accepted).expect("asm");
    let mut status_ok = a.create_label();
    a.test(rax, rax).expect("asm");
    a.jz(status_ok).expect("asm");
    a.add(r10, ERR_STATUS).expect("asm");
    a.jmp(next).expect("asm");
    a.set_label(&mut status_ok).expect("asm");
    a.mov(r12, rbx).expect("asm");
    a.mov(r13, SPIN_BOUND).expect("asm");
    a.set_label(&mut spin).expect("asm");
    a.cmp(qword_ptr(r8), r12).expect("asm");
    a.je(done).expect("asm");
    a.pause().expect("asm");
    a.dec(r13).expect("asm");
    a.jnz(spin).expect("asm");
    a.add(r10, ERR_NEVER).expect("asm");
    a.jmp(next).expect("asm");
    a.set_label(&mut done).expect("asm");
    check_echo(a, id, next);
    a.set_label(&mut next).expect("asm");
    a.dec(r9).expect("asm");
    a.jnz(top).expect("asm");
}

/// Emits: store R10, R11 and R14 as the AP's results, set its done flag, halt.
fn ap_finish(a: &mut CodeAssembler) {
    for (reg, at) in [(r10, AP_ERRORS), (r11, AP_COMPLETED), (r14, AP_LOST)] {
        a.mov(rax, at).expect("asm");
        a.mov(qword_ptr(rax), reg).expect("asm");
    }
    a.mov(rax, AP_DONE).expect("asm");
    a.mov(qword_ptr(rax), 1).expect("asm");
    let mut idle = a.create_label();
    a.set_label(&mut idle).expect("asm");
    a.hlt().expect("asm");
    a.jmp(idle).expect("asm");
}

/// Emits (BSP): spin until the AP is done, then load its results into R10, R11, R14.
fn wait_ap(a: &mut CodeAssembler) {
    let mut wait = a.create_label();
    a.mov(rax, AP_DONE).expect("asm");
    a.set_label(&mut wait).expect("asm");
    a.pause().expect("asm");
    a.cmp(qword_ptr(rax), 0).expect("asm");
    a.je(wait).expect("asm");
    for (reg, at) in [(r10, AP_ERRORS), (r11, AP_COMPLETED), (r14, AP_LOST)] {
        a.mov(rax, at).expect("asm");
        a.mov(reg, qword_ptr(rax)).expect("asm");
    }
}

fn two_ros_vcpus(name: &str, r: Ros) -> vmm::Outcome {
    partitioned_vm(name, r.a, |cfg| {
        if let Some(ros) = cfg.ros.as_mut() {
            ros.vcpus = 2;
        }
    })
}

#[test]
fn two_ros_vcpus_hammering_one_hrt_core_get_every_completion_right() {
    let mut r = Ros::new();
    let mut ap = r.a.create_label();
    r.wait_state(HrtState::Ready);
    r.start_ap(ap, AP_STACK);
    hammer(&mut r.a, 0);
    r.mark(1, r10);
    r.mark(2, r11);
    wait_ap(&mut r.a);
    r.mark(3, r10);
    r.mark(4, r11);
    r.exit(0);
    r.a.set_label(&mut ap).expect("asm");
    hammer(&mut r.a, 1);
    r.a.xor(r14, r14).expect("asm");
    ap_finish(&mut r.a);
    let out = two_ros_vcpus("invoke-hammer", r);
    let text = exited(&out, 0);
    assert_eq!(ros_marks(&out), vec![code(1, 0), code(2, INVOKES), code(3, 0), code(4, INVOKES)], "{text}");
    let calls = out.hypercalls.expect("a partitioned VM counts its hypercalls");
    assert!(calls.served >= 2 * INVOKES, "{calls}");
    if calls.sync_regs {
        assert_eq!(calls.register_ioctls, 0, "with KVM_CAP_SYNC_REGS a hypercall makes no register ioctl: {calls}");
    }
}

/// Emits (AP): echo invokes until the BSP sets [`STOP`]. A request that finds the core BUSY or the HRT
/// rebooting (BAD_STATE) is retried; an accepted one must complete with its own echo, unless a reboot
/// (the boot count changed) erased it: R14 counts those. R10 = errors, R11 = completed.
fn hammer_until_stopped(a: &mut CodeAssembler) {
    a.mov(r8, RECORDS[1]).expect("asm");
    for reg in [r9, r10, r11, r14] {
        a.xor(reg, reg).expect("asm");
    }
    let (mut top, mut finish, mut accepted, mut spin, mut look, mut done, mut lost) =
        (a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label(), a.create_label());
    a.set_label(&mut top).expect("asm");
    a.mov(rax, STOP).expect("asm");
    a.cmp(qword_ptr(rax), 0).expect("asm");
    a.jne(finish).expect("asm");
    a.inc(r9).expect("asm");
    a.mov(qword_ptr(r8), 0).expect("asm");
    a.mov(eax, Op::HrtStatus as u32).expect("asm");
    a.out(0xe4u32, eax).expect("asm");
    a.mov(r15, rdx).expect("asm");
    invoke_echo(a, 1);
    let mut retry = a.create_label();
    for refused in [HcallError::Busy, HcallError::BadState] {
        a.cmp(rax, refused.code() as i32).expect("asm");
        a.je(retry).expect("asm");
    }
    a.test(rax, rax).expect("asm");
    a.jz(accepted).expect("asm");
    a.add(r10, ERR_STATUS).expect("asm");
    a.set_label(&mut retry).expect("asm");
    a.pause().expect("asm");
    a.jmp(top).expect("asm");
    a.set_label(&mut accepted).expect("asm");
    a.mov(r12, rbx).expect("asm");
    a.mov(r13, SPIN_BOUND).expect("asm");
    a.set_label(&mut spin).expect("asm");
    a.cmp(qword_ptr(r8), r12).expect("asm");
    a.je(done).expect("asm");
    // Every 64 spins: did a reboot come?
    a.test(r13, 63).expect("asm");
    a.jnz(look).expect("asm");
    a.mov(eax, Op::HrtStatus as u32).expect("asm");
    a.out(0xe4u32, eax).expect("asm");
    a.cmp(rdx, r15).expect("asm");
    a.jne(lost).expect("asm");
    a.set_label(&mut look).expect("asm");
    a.pause().expect("asm");
    a.dec(r13).expect("asm");
    a.jnz(spin).expect("asm");
    a.add(r10, ERR_NEVER).expect("asm");
    a.jmp(top).expect("asm");
    a.set_label(&mut lost).expect("asm");
    a.inc(r14).expect("asm");
    a.jmp(top).expect("asm");
    a.set_label(&mut done).expect("asm");
    check_echo(a, 1, top);
    a.set_label(&mut finish).expect("asm");
    ap_finish(a);
}

#[test]
fn invokes_racing_reboots_are_refused_while_a_boot_is_pending_and_never_mixed() {
    let mut r = Ros::new();
    let mut ap = r.a.create_label();
    r.wait_state(HrtState::Ready);
    r.start_ap(ap, AP_STACK);
    // R14 counts invokes the BSP got accepted right after its reboot request, before the new boot
    // (the boot count had not moved yet).
    r.a.xor(r14, r14).expect("asm");
    r.a.mov(r13, REBOOTS).expect("asm");
    let mut again = r.a.create_label();
    r.a.set_label(&mut again).expect("asm");
    r.op(Op::HrtStatus, [0; 5]);
    r.a.mov(r12, rdx).expect("asm");
    r.op(Op::HrtReboot, [0; 5]);
    r.op(Op::Invoke, [func::ECHO, 7, 0, 0, 0]);
    let mut refused = r.a.create_label();
    r.a.test(rax, rax).expect("asm");
    r.a.jnz(refused).expect("asm");
    r.op(Op::HrtStatus, [0; 5]);
    r.a.cmp(rdx, r12).expect("asm");
    r.a.jne(refused).expect("asm");
    r.a.inc(r14).expect("asm");
    r.a.set_label(&mut refused).expect("asm");
    r.mark(1, rax);
    r.wait_state(HrtState::Ready);
    r.a.dec(r13).expect("asm");
    r.a.jnz(again).expect("asm");
    r.mark(2, r14);
    r.op(Op::HrtStatus, [0; 5]);
    r.mark(3, rdx);
    r.a.mov(rax, STOP).expect("asm");
    r.a.mov(qword_ptr(rax), 1).expect("asm");
    wait_ap(&mut r.a);
    r.mark(4, r10);
    // R11 (completed) > 0 and R14 (lost to a reboot) <= REBOOTS, as 0/1 flags.
    r.a.xor(r9d, r9d).expect("asm");
    r.a.test(r11, r11).expect("asm");
    r.a.setne(r9b).expect("asm");
    r.mark(5, r9);
    r.a.xor(r9d, r9d).expect("asm");
    r.a.cmp(r14, REBOOTS as i32).expect("asm");
    r.a.setbe(r9b).expect("asm");
    r.mark(6, r9);
    r.exit(0);
    r.a.set_label(&mut ap).expect("asm");
    hammer_until_stopped(&mut r.a);
    let out = two_ros_vcpus("invoke-reboots", r);
    let text = exited(&out, 0);
    let marks = ros_marks(&out);
    let refusals: Vec<u32> = marks.iter().copied().filter(|m| m >> 16 == 1).collect();
    assert_eq!(refusals.len(), REBOOTS as usize, "{text}");
    // An invoke right after a reboot request is refused; the only other answers (accepted, or BUSY with
    // the AP's request) come after the new boot already started: mark 2 counts acceptances before it.
    for m in &refusals {
        let answers = [err(1, HcallError::BadState), code(1, 0), err(1, HcallError::Busy)];
        assert!(answers.contains(m), "{m:#x}: {text}");
    }
    let rest: Vec<u32> = marks.into_iter().filter(|m| m >> 16 != 1).collect();
    assert_eq!(rest, vec![code(2, 0), code(3, 1 + REBOOTS), code(4, 0), code(5, 1), code(6, 1)], "{text}");
}
