//! The partitioned VM on real KVM with a hand-assembled ROS: the ROS side is a tiny ring-0 snippet (so
//! the test takes seconds, not a Linux boot) and the HRT is duet's own kernel (guests/hrt) entered
//! through its 64-bit HVM entry. The snippet makes hypercalls — valid and hostile — and reports each
//! result as a debug-port mark `tag << 16 | low 16 bits of a register`, which the test checks in order.
//! (The Linux ROS with the `hvm` tool is `partitioned_linux.rs`.)

use std::time::Duration;

use duet_tests::*;
use abi::{HcallError, HrtState, Op, EVENT_HRT_FAULT, EVENT_HRT_READY};
use iced_x86::code_asm::*;
use vmm::ExitReason;

const LIMIT: Duration = Duration::from_secs(180);
/// ROS memory of these tests; the HRT's partition starts right above it.
const ROS_MEM: u64 = 32 << 20;
const HRT_BASE: u64 = ROS_MEM;
/// Scratch memory of the snippet (ROS RAM, identity-mapped).
const BUF: u64 = 0x180_0000;
const COMPLETION: u64 = 0x190_0000;
const CANARY: u64 = 0x4852_5443_414e_4152;

struct Ros {
    a: CodeAssembler,
}

impl Ros {
    fn new() -> Self {
        Ros { a: asm() }
    }

    /// A hypercall with arguments RBX, RCX, RDX, RSI, RDI; RAX may be any 64-bit value.
    fn hcall(&mut self, rax_value: u64, args: [u64; 5]) {
        let a = &mut self.a;
        for (reg, v) in [rbx, rcx, rdx, rsi, rdi].into_iter().zip(args) {
            a.mov(reg, v).expect("asm");
        }
        a.mov(rax, rax_value).expect("asm");
        a.out(0xe4u32, eax).expect("asm");
    }

    /// Ends the VM with EXIT(`status`); a VM still running afterwards exits with 1 instead.
    fn exit(&mut self, status: u64) {
        self.op(Op::Exit, [status, 0, 0, 0, 0]);
        exit_with(&mut self.a, 1);
    }

    fn op(&mut self, op: Op, args: [u64; 5]) {
        self.hcall(op as u64, args);
    }

    /// Mark `tag << 16 | (reg & 0xffff)`.
    fn mark(&mut self, tag: u32, reg: AsmRegister64) {
        let a = &mut self.a;
        a.mov(r15, reg).expect("asm");
        a.and(r15d, 0xffff).expect("asm");
        a.or(r15d, (tag << 16) as i32).expect("asm");
        a.mov(rax, r15).expect("asm");
        a.out(0xf8u32, eax).expect("asm");
    }

    /// Loops until HRT_STATUS reports `state`.
    fn wait_state(&mut self, state: HrtState) {
        let mut again = self.a.create_label();
        self.a.set_label(&mut again).expect("asm");
        self.op(Op::HrtStatus, [0; 5]);
        self.a.cmp(rbx, state as i32).expect("asm");
        self.a.jne(again).expect("asm");
    }

    /// Invokes `func(arg)` on `core` with a completion record at [`COMPLETION`] and spins until it is
    /// filled; leaves the result in RBX.
    fn invoke_sync(&mut self, func: u64, arg: u64, core: u64) {
        self.op_sync(Op::Invoke, [func, arg, core, 0, COMPLETION]);
    }

    /// MERGE (`merge`) or UNMERGE on `core` with a completion record at [`COMPLETION`], spinning
    /// until it is filled; leaves the HRT's result in RBX (and RAX = the hypercall's status).
    fn merge_sync(&mut self, merge: bool, core: u64) {
        self.op_sync(if merge { Op::Merge } else { Op::Unmerge }, [core, 0, 0, 0, COMPLETION]);
    }

    /// Clears the completion record at [`COMPLETION`], makes `op(args)` (which names it), and spins
    /// until the record holds the sequence number the call answered in RBX; leaves its result in RBX.
    fn op_sync(&mut self, op: Op, args: [u64; 5]) {
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
    fn mark_eq(&mut self, tag: u32, reg: AsmRegister64, value: u64) {
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

fn code(tag: u32, v: u64) -> u32 {
    (tag << 16) | (v & 0xffff) as u32
}

fn err(tag: u32, e: HcallError) -> u32 {
    code(tag, e.code() as u64)
}

fn partitioned(name: &str, ros: CodeAssembler, hrt_vcpus: u32) -> vmm::Outcome {
    partitioned_with(name, ros, hrt_vcpus, ROS_MEM)
}

fn partitioned_with(name: &str, ros: CodeAssembler, hrt_vcpus: u32, ros_mem: u64) -> vmm::Outcome {
    partitioned_cfg(name, ros, ros_mem, |hrt| hrt.vcpus = hrt_vcpus)
}

/// A partitioned VM whose `[hrt]` (duet's HRT, 64 MiB) `edit` adjusts.
fn partitioned_cfg(
    name: &str,
    ros: CodeAssembler,
    ros_mem: u64,
    edit: impl FnOnce(&mut config::HrtConfig),
) -> vmm::Outcome {
    let dir = scratch(name);
    let mut cfg = tiny_config(&dir, &tiny_kernel(ros));
    if let Some(r) = cfg.ros.as_mut() {
        r.memory = ros_mem;
    }
    let mut hrt = config::HrtConfig::new(guest_image("hrt.elf"));
    hrt.memory = 64 << 20;
    edit(&mut hrt);
    cfg.hrt = Some(hrt);
    run(&cfg, LIMIT)
}

/// Checks that the VM ended with `status` and returns its console.
fn exited(out: &vmm::Outcome, status: u32) -> String {
    let text = out.console_text();
    assert_eq!(out.reason, ExitReason::Exit(status), "{text}\n{:?}", out.marks);
    text
}

fn ros_marks(out: &vmm::Outcome) -> Vec<u32> {
    out.marks.iter().map(|m| m.code).filter(|c| c & (1 << 31) == 0).collect()
}

#[test]
fn the_hrt_boots_beside_the_ros_and_serves_hypercalls() {
    for hrt_vcpus in [1u32, 2] {
        let mut r = Ros::new();
        r.op(Op::Version, [0; 5]);
        r.mark(1, rax);
        r.mark(2, rbx);
        r.mark(3, rcx);
        r.mark(4, rdx);
        r.wait_state(HrtState::Ready);
        r.mark(5, rdx);
        r.op(Op::PartitionInfo, [BUF, 616, 0, 0, 0]);
        r.mark(6, rax);
        r.mark(7, rbx);
        r.a.mov(r8, BUF).expect("asm");
        r.a.mov(r9d, dword_ptr(r8 + 16)).expect("asm");
        r.mark(8, r9);
        r.a.mov(r9, qword_ptr(r8 + 32)).expect("asm");
        r.a.shr(r9, 20).expect("asm");
        r.mark(9, r9);
        for core in 0..u64::from(hrt_vcpus) {
            r.invoke_sync(1, 41 + core, core);
            r.mark(10 + core as u32, rbx);
            r.invoke_sync(7, 0, core);
            r.mark(12 + core as u32, rbx);
        }
        r.op(Op::InvokeResult, [0, 0, 0, 0, 0]);
        r.mark(14, rdx);
        r.exit(0x33);
        let out = partitioned(&format!("hypercalls{hrt_vcpus}"), r.a, hrt_vcpus);
        let text = exited(&out, 0x33);
        let mut want = vec![code(1, 0), code(2, 1), code(3, u64::from(hrt_vcpus)), code(4, 1), code(5, 1), code(6, 0), code(7, 616)];
        want.extend([code(8, u64::from(hrt_vcpus)), code(9, HRT_BASE >> 20)]);
        for core in 0..u64::from(hrt_vcpus) {
            want.push(code(10 + core as u32, 42 + core));
        }
        want.sort_by_key(|c| c >> 16);
        let mut got = ros_marks(&out);
        let apic: Vec<u32> = got.iter().copied().filter(|c| (12..14).contains(&(c >> 16))).collect();
        got.retain(|c| !(12..14).contains(&(c >> 16)));
        want.push(code(14, 1));
        assert_eq!(got, want, "{text}");
        // Each HRT core reports its own APIC ID, after the ROS's (APIC ID 0).
        let want_apic: Vec<u32> = (0..hrt_vcpus).map(|c| code(12 + c, 1 + u64::from(c))).collect();
        assert_eq!(apic, want_apic, "{text}");
        assert!(text.contains("hrt: hvm: ready"), "{text}");
        assert!(text.contains(&format!("hrt: hvm: hrt cores {hrt_vcpus}")), "{text}");
    }
}

#[test]
fn hostile_hypercalls_get_errors_and_the_vm_keeps_running() {
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    let hrt_ram = HRT_BASE + 0x1000;
    let cases: [(u32, u64, [u64; 5]); 12] = [
        (1, 99, [0; 5]),
        (2, 1 << 32, [0; 5]),
        (3, u64::MAX, [0; 5]),
        (4, Op::HrtReady as u64, [0; 5]),
        (5, Op::PartitionInfo as u64, [hrt_ram, 616, 0, 0, 0]),
        (6, Op::PartitionInfo as u64, [BUF, 0, 0, 0, 0]),
        (7, Op::PartitionInfo as u64, [u64::MAX - 8, 616, 0, 0, 0]),
        (8, Op::Invoke as u64, [0, 0, 5, 0, 0]),
        (9, Op::Invoke as u64, [0, 0, 0, 2, 0]),
        (10, Op::Invoke as u64, [0, 0, 0, 0, COMPLETION + 8]),
        (11, Op::Invoke as u64, [0, 0, 0, 0, hrt_ram]),
        (12, Op::EventPost as u64, [0xffff_0001, 0, 0, 0, 0]),
    ];
    for (tag, value, args) in cases {
        r.hcall(value, args);
        r.mark(tag, rax);
    }
    // A flood of calls: every one answered.
    r.a.mov(r13, 5000u64).expect("asm");
    let mut flood = r.a.create_label();
    r.a.set_label(&mut flood).expect("asm");
    r.op(Op::Version, [0; 5]);
    r.a.or(r14, rax).expect("asm");
    r.a.dec(r13).expect("asm");
    r.a.jnz(flood).expect("asm");
    r.mark(13, r14);
    // The HRT's RAM read straight from the ROS: all ones, not the kernel's bytes; a write is dropped.
    r.a.mov(r8, HRT_BASE + 0x20_0000).expect("asm");
    r.a.mov(r9, qword_ptr(r8)).expect("asm");
    r.mark(14, r9);
    r.a.mov(qword_ptr(r8), 0).expect("asm");
    // The HRT is healthy: its canary is intact and it still answers.
    r.invoke_sync(2, 0, 0);
    r.mark(15, rbx);
    r.invoke_sync(0, 0x1234, 0);
    r.mark(16, rbx);
    r.exit(0);
    let out = partitioned("hostile", r.a, 1);
    let text = exited(&out, 0);
    use HcallError::*;
    let want = vec![
        err(1, UnknownOp),
        err(2, UnknownOp),
        err(3, UnknownOp),
        err(4, WrongPartition),
        err(5, BadAddress),
        err(6, BadLength),
        err(7, BadAddress),
        err(8, BadCpu),
        err(9, BadArgument),
        err(10, BadAddress),
        err(11, BadAddress),
        err(12, BadArgument),
        code(13, 0),
        code(14, 0xffff),
        code(15, CANARY),
        code(16, 0x1234),
    ];
    assert_eq!(ros_marks(&out), want, "{text}");
}

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

#[test]
fn both_partitions_read_one_tsc() {
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    // ROS TSC, then the HRT's (invoke function 9), then the ROS's again: the HRT's reading must lie
    // between the two (duet gives every vCPU of both KVM VMs the same TSC offset).
    for round in 0..3u32 {
        r.a.rdtsc().expect("asm");
        r.a.shl(rdx, 32).expect("asm");
        r.a.or(rax, rdx).expect("asm");
        r.a.mov(r10, rax).expect("asm");
        r.invoke_sync(9, 0, 0);
        r.a.mov(r9, rbx).expect("asm");
        r.a.rdtsc().expect("asm");
        r.a.shl(rdx, 32).expect("asm");
        r.a.or(rax, rdx).expect("asm");
        r.a.mov(r11, rax).expect("asm");
        // r14 = (r10 <= r9) && (r9 <= r11)
        r.a.xor(r14d, r14d).expect("asm");
        let mut bad = r.a.create_label();
        r.a.cmp(r9, r10).expect("asm");
        r.a.jb(bad).expect("asm");
        r.a.cmp(r9, r11).expect("asm");
        r.a.ja(bad).expect("asm");
        r.a.mov(r14d, 1).expect("asm");
        r.a.set_label(&mut bad).expect("asm");
        r.a.nop().expect("asm");
        r.mark(1 + round, r14);
    }
    r.exit(0);
    let out = partitioned("tsc", r.a, 1);
    let text = exited(&out, 0);
    assert_eq!(ros_marks(&out), vec![code(1, 1), code(2, 1), code(3, 1)], "{text}");
}

#[test]
fn an_hrt_partition_above_4g_boots_and_serves() {
    // 3 GiB of ROS RAM fill everything below the MMIO gap: the HRT's partition starts at 4 GiB, which
    // only the 64-bit HVM entry can reach.
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    r.op(Op::PartitionInfo, [BUF, 616, 0, 0, 0]);
    r.a.mov(r8, BUF).expect("asm");
    r.a.mov(r9, qword_ptr(r8 + 32)).expect("asm");
    r.a.shr(r9, 30).expect("asm");
    r.mark(1, r9);
    r.invoke_sync(1, 0x41, 0);
    r.mark(2, rbx);
    r.exit(0);
    let out = partitioned_with("above4g", r.a, 1, 3 << 30);
    let text = exited(&out, 0);
    assert_eq!(ros_marks(&out), vec![code(1, 4), code(2, 0x42)], "{text}");
    assert!(text.contains("hrt: hvm: hrt ram base=0x100000000"), "{text}");
}

#[test]
fn the_hrt_merges_the_ros_address_space() {
    // MERGE from the ROS (ring 0, duet's 4 GiB identity map): the HRT adopts PML4 entries 0-255 of
    // its page tables. An alias that only the ROS's tables have (VA 4 GiB + x -> x, PDPT entry 4 =
    // entry 0) tells the two lower halves apart: HRT functions 12 (read) and 13 (flip) walk the
    // HRT's current tables, so they find the alias while merged and nothing otherwise.
    const PATTERN: u64 = 0x6d65_7267_6500_1234;
    const NOT_MAPPED: u64 = u64::MAX - 1;
    const ALIAS: u64 = (4 << 30) + BUF;
    let mut r = Ros::new();
    r.wait_state(HrtState::Ready);
    {
        let a = &mut r.a;
        a.mov(r8, BUF).expect("asm");
        a.mov(r9, PATTERN).expect("asm");
        a.mov(qword_ptr(r8), r9).expect("asm");
        a.mov(rax, cr3).expect("asm");
        a.and(rax, -4096i32).expect("asm");
        a.mov(rax, qword_ptr(rax)).expect("asm"); // PML4[0] -> the PDPT
        a.and(rax, -4096i32).expect("asm");
        a.mov(rcx, qword_ptr(rax)).expect("asm");
        a.mov(qword_ptr(rax + 32), rcx).expect("asm"); // PDPT[4] = PDPT[0]
    }
    r.invoke_sync(12, ALIAS, 1);
    r.mark_eq(1, rbx, NOT_MAPPED);
    r.merge_sync(true, 1);
    r.mark(2, rax);
    r.mark_eq(3, rbx, 0);
    r.invoke_sync(12, ALIAS, 1);
    r.mark_eq(4, rbx, PATTERN);
    r.invoke_sync(13, ALIAS, 1);
    r.mark_eq(5, rbx, !PATTERN);
    r.a.mov(r8, BUF).expect("asm");
    r.a.mov(rbx, qword_ptr(r8)).expect("asm");
    r.mark_eq(6, rbx, !PATTERN);
    // The ROS's tables map the HRT's RAM too: the HRT reads nothing there for it.
    r.invoke_sync(12, HRT_BASE + 0x1000, 1);
    r.mark_eq(7, rbx, NOT_MAPPED);
    r.invoke_sync(12, 0x70_0000_0000, 1);
    r.mark_eq(8, rbx, NOT_MAPPED);
    // The other core shares the PML4: it sees the merged lower half as well.
    r.invoke_sync(12, ALIAS, 0);
    r.mark_eq(9, rbx, !PATTERN);
    r.merge_sync(false, 1);
    r.mark_eq(10, rbx, 0);
    r.invoke_sync(12, ALIAS, 1);
    r.mark_eq(11, rbx, NOT_MAPPED);
    r.invoke_sync(12, BUF, 1);
    r.mark_eq(12, rbx, !PATTERN);
    r.invoke_sync(0, 0x55, 1);
    r.mark(13, rbx);
    r.exit(0);
    let out = partitioned("merge", r.a, 2);
    let text = exited(&out, 0);
    let mut want: Vec<u32> = (1..=12).map(|t| code(t, 0)).collect();
    want.push(code(13, 0x55));
    assert_eq!(ros_marks(&out), want, "{text}");
}

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
