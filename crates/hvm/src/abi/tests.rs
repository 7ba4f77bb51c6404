use super::*;
use crate::Partition::{Hrt, Ros};

const ROS_RAM: [(u64, u64); 1] = [(0, 256 << 20)];
const ALL_RAM: [(u64, u64); 2] = [(0, 256 << 20), (1 << 32, (1 << 32) + (64 << 20))];

fn ros() -> Limits<'static> {
    Limits { caller_ram: &ROS_RAM, hrt_cpus: 2 }
}

fn hrt() -> Limits<'static> {
    Limits { caller_ram: &ALL_RAM, hrt_cpus: 2 }
}

fn regs(op: u64, rbx: u64, rcx: u64, rdx: u64, rsi: u64) -> Regs {
    Regs { rax: op, rbx, rcx, rdx, rsi, rdi: 0 }
}

#[test]
fn every_operation_round_trips_its_number() {
    for n in 0..=10u32 {
        let op = Op::from_raw(n).expect("defined");
        assert_eq!(op as u32, n);
    }
    assert_eq!(Op::from_raw(11), None);
    assert_eq!(Op::from_raw(u32::MAX), None);
}

#[test]
fn error_codes_round_trip_and_are_negative() {
    for code in -8..=-1i64 {
        let e = HcallError::from_code(code).expect("defined");
        assert_eq!(e.code(), code);
    }
    assert_eq!(HcallError::from_code(0), None);
    assert_eq!(HcallError::from_code(-9), None);
}

#[test]
fn unknown_operations_are_refused() {
    assert_eq!(decode(&regs(11, 0, 0, 0, 0), Ros, &ros()), Err(HcallError::UnknownOp));
    assert_eq!(decode(&regs(0xdead_beef, 0, 0, 0, 0), Ros, &ros()), Err(HcallError::UnknownOp));
    // Garbage in the upper half of RAX is not silently ignored.
    assert_eq!(decode(&regs(1 << 32, 0, 0, 0, 0), Ros, &ros()), Err(HcallError::UnknownOp));
}

#[test]
fn the_hrt_may_not_drive_its_own_lifecycle_or_end_the_vm() {
    for op in [Op::HrtBoot, Op::HrtReboot, Op::HrtReplace, Op::Invoke, Op::InvokeResult, Op::HrtStatus, Op::Exit] {
        assert_eq!(decode(&regs(op as u64, 0x1000, 16, 0, 0), Hrt, &hrt()), Err(HcallError::WrongPartition), "{op:?}");
    }
    assert_eq!(decode(&regs(Op::Version as u64, 0, 0, 0, 0), Hrt, &hrt()), Ok(Call::Version));
    assert_eq!(decode(&regs(Op::EventPost as u64, 7, 0, 0, 0), Hrt, &hrt()), Ok(Call::EventPost { event: 7 }));
}

#[test]
fn buffers_must_lie_inside_the_callers_memory() {
    let ok = decode(&regs(Op::PartitionInfo as u64, 0x1000, 4096, 0, 0), Ros, &ros());
    assert_eq!(ok, Ok(Call::PartitionInfo { buf: GuestRange { start: 0x1000, len: 4096 } }));
    // Past the end of ROS RAM, straddling it, or in HRT memory: refused for the ROS.
    let end = 256u64 << 20;
    for (start, len) in [(end, 16), (end - 8, 16), (1 << 32, 16)] {
        assert_eq!(decode(&regs(Op::PartitionInfo as u64, start, len, 0, 0), Ros, &ros()), Err(HcallError::BadAddress));
    }
    // The HRT sees all memory.
    assert!(decode(&regs(Op::PartitionInfo as u64, 1 << 32, 16, 0, 0), Hrt, &hrt()).is_ok());
    // A range that would wrap the address space.
    assert_eq!(decode(&regs(Op::PartitionInfo as u64, u64::MAX - 4, 16, 0, 0), Ros, &ros()), Err(HcallError::BadAddress));
}

#[test]
fn lengths_are_bounded() {
    assert_eq!(decode(&regs(Op::PartitionInfo as u64, 0x1000, 0, 0, 0), Ros, &ros()), Err(HcallError::BadLength));
    assert_eq!(decode(&regs(Op::PartitionInfo as u64, 0x1000, 2 << 20, 0, 0), Ros, &ros()), Err(HcallError::BadLength));
    assert_eq!(decode(&regs(Op::HrtReplace as u64, 0, MAX_IMAGE_LEN + 1, 0, 0), Ros, &ros()), Err(HcallError::BadLength));
    assert_eq!(decode(&regs(Op::HrtReplace as u64, 0, u64::MAX, 0, 0), Ros, &ros()), Err(HcallError::BadLength));
    assert!(decode(&regs(Op::HrtReplace as u64, 0x10_0000, 1 << 20, 0, 0), Ros, &ros()).is_ok());
}

#[test]
fn invoke_checks_the_core_and_the_mode() {
    let call = decode(&regs(Op::Invoke as u64, 0x20_0000, 42, 1, 1), Ros, &ros());
    assert_eq!(
        call,
        Ok(Call::Invoke { func: 0x20_0000, arg: 42, target: CpuTarget::One(1), mode: InvokeMode::Async })
    );
    let all = decode(&regs(Op::Invoke as u64, 0x20_0000, 0, ALL_CPUS, 0), Ros, &ros());
    assert!(matches!(all, Ok(Call::Invoke { target: CpuTarget::All, mode: InvokeMode::Sync, .. })));
    assert_eq!(decode(&regs(Op::Invoke as u64, 0, 0, 2, 0), Ros, &ros()), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(Op::Invoke as u64, 0, 0, 1 << 40, 0), Ros, &ros()), Err(HcallError::BadCpu));
    assert_eq!(decode(&regs(Op::Invoke as u64, 0, 0, 0, 2), Ros, &ros()), Err(HcallError::BadArgument));
    assert_eq!(decode(&regs(Op::InvokeResult as u64, 5, 0, 0, 0), Ros, &ros()), Err(HcallError::BadCpu));
}

#[test]
fn exit_carries_its_status() {
    assert_eq!(decode(&regs(Op::Exit as u64, 3, 0, 0, 0), Ros, &ros()), Ok(Call::Exit { status: 3 }));
}

#[test]
fn hostile_register_values_never_panic_and_never_escape_the_callers_memory() {
    // A sweep over edge values of every register for every operation and both callers: decoding never
    // panics (overflow checks are on in tests), and every accepted buffer lies inside the caller's RAM.
    let edges = [0u64, 1, 0xfff, 0x1000, (256 << 20) - 1, 256 << 20, 1 << 32, u64::MAX / 2, u64::MAX - 1, u64::MAX];
    for op in 0..=12u64 {
        for &a in &edges {
            for &b in &edges {
                for &c in &edges {
                    for from in [Ros, Hrt] {
                        let lim = if from == Ros { ros() } else { hrt() };
                        let buf = match decode(&regs(op, a, b, c, a ^ b), from, &lim) {
                            Ok(Call::PartitionInfo { buf }) | Ok(Call::HrtReplace { image: buf }) => buf,
                            _ => continue,
                        };
                        let end = buf.start + buf.len;
                        assert!(lim.caller_ram.iter().any(|(s, e)| buf.start >= *s && end <= *e), "{buf:?} escaped");
                    }
                }
            }
        }
    }
}
