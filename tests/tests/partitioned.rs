//! The partitioned VM on real KVM with a hand-assembled ROS (`duet_tests::ros_snippet`): the HRT boots
//! beside it and serves hypercalls, valid and hostile; both partitions read one TSC; an HRT above
//! 4 GiB; the address-space merge. (The HRT's lifecycle is `partitioned_lifecycle.rs`, the doorbells
//! `doorbells.rs`, concurrent invokes `invoke_race.rs`, the Linux ROS `partitioned_linux.rs`.)

use abi::{HcallError, HrtState, Op};
use duet_tests::ros_snippet::*;
use iced_x86::code_asm::*;

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
