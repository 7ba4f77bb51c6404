use super::*;
use crate::Partition::{Hrt, Ros};

fn regs(op: u64, rbx: u64, rcx: u64, rdx: u64, rsi: u64, rdi: u64) -> Regs {
    Regs { rax: op, rbx, rcx, rdx, rsi, rdi }
}

#[test]
fn unknown_operations_and_high_rax_bits_are_refused() {
    for rax in [15, 0xffff_ffff, 1 << 32, (1 << 32) | 1, u64::MAX] {
        assert_eq!(decode(&regs(rax, 0, 0, 0, 0, 0), Ros, 2), Err(HcallError::UnknownOp), "{rax:#x}");
    }
}

#[test]
fn each_partition_may_make_only_its_calls() {
    for op in Op::ALL {
        let r = regs(op as u64, 0x1000, 16, 0, 0, 0);
        assert_eq!(decode(&r, Hrt, 2) == Err(HcallError::WrongPartition), !op.hrt_may_call(), "{}", op.name());
        assert_eq!(decode(&r, Ros, 2) == Err(HcallError::WrongPartition), !op.ros_may_call(), "{}", op.name());
    }
}

#[test]
fn lengths_are_checked_against_their_limits() {
    let info = Op::PartitionInfo as u64;
    assert_eq!(decode(&regs(info, 0x1000, 0, 0, 0, 0), Ros, 1), Err(HcallError::BadLength));
    assert_eq!(decode(&regs(info, 0x1000, MAX_INFO_LEN + 1, 0, 0, 0), Ros, 1), Err(HcallError::BadLength));
    assert_eq!(decode(&regs(info, u64::MAX - 8, 64, 0, 0, 0), Ros, 1), Err(HcallError::BadAddress));
    assert_eq!(
        decode(&regs(info, 0x1000, 616, 0, 0, 0), Ros, 1),
        Ok(Call::PartitionInfo { buf: UserBuf { addr: 0x1000, len: 616 } })
    );
    let replace = Op::HrtReplace as u64;
    assert_eq!(decode(&regs(replace, 0x1000, MAX_IMAGE_LEN + 1, 0, 0, 0), Ros, 1), Err(HcallError::BadLength));
    assert!(decode(&regs(replace, 0x1000, MAX_IMAGE_LEN, 0, 0, 0), Ros, 1).is_ok());
}

#[test]
fn invoke_checks_core_flags_and_completion_alignment() {
    let inv = Op::Invoke as u64;
    assert_eq!(decode(&regs(inv, 7, 8, 2, 0, 0), Ros, 2), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(inv, 7, 8, u64::MAX - 1, 0, 0), Ros, 2), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(inv, 7, 8, 1 << 32, 0, 0), Ros, 2), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(inv, 7, 8, 0, 2, 0), Ros, 2), Err(HcallError::BadArgument));
    assert_eq!(decode(&regs(inv, 7, 8, 0, 0, 0x1008), Ros, 2), Err(HcallError::BadAddress));
    assert_eq!(
        decode(&regs(inv, 7, 8, ALL_CORES, 1, 0x1010), Ros, 2),
        Ok(Call::Invoke { func: 7, arg: 8, post: Post { target: CoreTarget::All, flags: 1, completion: Some(0x1010) } })
    );
    assert_eq!(
        decode(&regs(inv, 7, 8, 1, 0, 0), Ros, 2),
        Ok(Call::Invoke { func: 7, arg: 8, post: Post { target: CoreTarget::One(1), flags: 0, completion: None } })
    );
    assert_eq!(decode(&regs(Op::InvokeResult as u64, 2, 0, 0, 0, 0), Ros, 2), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(Op::InvokeDone as u64, 5, 0, 0, 0, 0), Hrt, 2), Err(HcallError::BadCpu));
}

#[test]
fn guests_cannot_post_the_vmm_s_events() {
    let post = Op::EventPost as u64;
    assert_eq!(decode(&regs(post, EVENT_VMM_BASE, 0, 0, 0, 0), Hrt, 1), Err(HcallError::BadArgument));
    assert_eq!(decode(&regs(post, u64::MAX, 0, 0, 0, 0), Ros, 1), Err(HcallError::BadArgument));
    assert_eq!(decode(&regs(post, 5, 9, 0, 0, 0), Ros, 1), Ok(Call::EventPost { event: 5, payload: 9 }));
}

#[test]
fn a_sweep_of_edge_values_never_panics() {
    let edges = [0, 1, 15, 16, 0xfff, 0x1000, MAX_INFO_LEN, MAX_IMAGE_LEN, u32::MAX as u64, 1 << 47, u64::MAX - 1, u64::MAX];
    for op in 0..16u64 {
        for &a in &edges {
            for &b in &edges {
                for from in [Ros, Hrt] {
                    let _ = decode(&regs(op, a, b, a, b & 1, b), from, 3);
                    let _ = decode(&regs(op, b, a, b, a, a), from, 0);
                }
            }
        }
    }
}

#[test]
fn merge_takes_a_target_and_the_vmm_s_functions_are_reserved() {
    let merge = Op::Merge as u64;
    assert_eq!(
        decode(&regs(merge, ALL_CORES, 0, 0, 1, 0x2000), Ros, 2),
        Ok(Call::Merge { merge: true, post: Post { target: CoreTarget::All, flags: 1, completion: Some(0x2000) } })
    );
    assert_eq!(
        decode(&regs(Op::Unmerge as u64, 1, 0, 0, 0, 0), Ros, 2),
        Ok(Call::Merge { merge: false, post: Post { target: CoreTarget::One(1), flags: 0, completion: None } })
    );
    assert_eq!(decode(&regs(merge, 2, 0, 0, 0, 0), Ros, 2), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(merge, 0, 0, 0, 4, 0), Ros, 2), Err(HcallError::BadArgument));
    assert_eq!(decode(&regs(merge, 0, 0, 0, 0, 8), Ros, 2), Err(HcallError::BadAddress));
    assert_eq!(decode(&regs(merge, 0, 0, 0, 0, 0), Hrt, 2), Err(HcallError::WrongPartition));
    let inv = Op::Invoke as u64;
    assert_eq!(decode(&regs(inv, abi::FUNC_MERGE, 0, 0, 0, 0), Ros, 2), Err(HcallError::BadArgument));
}
