//! The invoke functions of duet's own HRT (guests/hrt), by number: what [`crate::Op::Invoke`]'s RBX
//! names when the HRT is duet's. The number is the HRT's business (another HRT defines its own); these
//! are the contract between duet's HRT and the ROS tools that call it (`hvm`, the tests, the benches),
//! documented in docs/hypercalls.md §5 and, for the forwarding family, docs/forwarding.md §7.
//!
//! Numbers from [`crate::FUNC_VMM_BASE`] up are duet's own ([`crate::FUNC_MERGE`],
//! [`crate::FUNC_UNMERGE`]); [`crate::Op::Invoke`] refuses them.

/// Returns its argument.
pub const ECHO: u64 = 0;
/// Returns its argument plus one (wrapping).
pub const ADD_ONE: u64 = 1;
/// Checks the canary page: [`CANARY_WORD`] when every word still holds it, else 0.
pub const CANARY_CHECK: u64 = 2;
/// Returns the canary page's guest-physical address (in HRT RAM: the ROS must not reach it).
pub const CANARY_ADDRESS: u64 = 3;
/// Takes a page fault on purpose (the HRT faults: contained, reported to the ROS).
pub const PAGE_FAULT: u64 = 4;
/// Triple-faults on purpose.
pub const TRIPLE_FAULT: u64 = 5;
/// Never returns (halts the core with interrupts off): a stuck HRT, for reboot tests.
pub const HANG: u64 = 6;
/// Returns the core's APIC ID (from its LAPIC).
pub const APIC_ID: u64 = 7;
/// Cache-line ping-pong with the ROS, spinning: `arg` = guest-physical address of 128 bytes of ROS
/// RAM, ping at +0 and pong at +64 (two cache lines); returns the rounds played.
pub const PING_PONG: u64 = 8;
/// Returns the TSC.
pub const RDTSC: u64 = 9;
/// Times null hypercalls into the ROS buffer at guest-physical `arg`.
pub const HYPERCALL_BENCH: u64 = 10;
/// The polled invoke channel on two ROS cache lines at guest-physical `arg`: requests
/// `{seq, func, arg}` in, responses `{seq, result}` out, no VM exit, until a stop request.
pub const CHANNEL: u64 = 11;
/// Reads the u64 at virtual address `arg` of the core's current address space (a software page
/// walk); [`NOT_MAPPED`] when it is not mapped.
pub const READ_USER: u64 = 12;
/// Complements the u64 at virtual address `arg` and returns the new value; [`NOT_MAPPED`] when it is
/// not mapped writable.
pub const FLIP_USER: u64 = 13;
/// Forwards `getpid` `arg` times (0: 1000) over the core's channel; returns the pid.
pub const FWD_GETPID: u64 = 14;
/// Attaches the core's forwarding channel at virtual address `arg` of the merged process.
pub const FWD_ATTACH: u64 = 15;
/// Detaches the core's forwarding channel.
pub const FWD_DETACH: u64 = 16;
/// Split execution: runs the ROS function described at virtual address `arg` at CPL3 on the core.
pub const SPLIT: u64 = 17;
/// Forwarding stress: `arg` = (fd + 1) << 32 | n, n pipelined forwarded calls (`lseek` on fd, or
/// with fd + 1 = 0 the echo pseudo-call), each answer checked; returns n (docs/forwarding.md §7).
pub const FWD_STRESS: u64 = 18;
/// Corrupts the core's channel on purpose (the proxy must fail that channel, nothing else).
pub const FWD_CORRUPT: u64 = 19;
/// Rings the ROS doorbell with the core's index.
pub const RING_ROS_DOORBELL: u64 = 20;
/// Waits for `arg` interrupts (doorbells) with `sti; hlt`.
pub const WAIT_INTERRUPTS: u64 = 21;
/// Times forwarded calls described by the job at virtual address `arg` (the forwarding bench).
pub const FWD_TIMED: u64 = 22;
/// Ping-pong like [`PING_PONG`], but the core sleeps between pings and the ROS rings the HRT
/// doorbell (the doorbell round trip).
pub const DOORBELL_PONG: u64 = 23;

/// What [`READ_USER`] and [`FLIP_USER`] return for an address that is not mapped (or not writable).
pub const NOT_MAPPED: u64 = u64::MAX - 1;
/// Every word of the canary page: "RANACTRH" little-endian.
pub const CANARY_WORD: u64 = 0x4852_5443_414E_4152;
/// What duet's HRT returns for a function number it does not know.
pub const UNKNOWN: u64 = u64::MAX;

/// Every function above, in number order (function `n` is at index `n`).
pub const ALL: [u64; 24] = [
    ECHO,
    ADD_ONE,
    CANARY_CHECK,
    CANARY_ADDRESS,
    PAGE_FAULT,
    TRIPLE_FAULT,
    HANG,
    APIC_ID,
    PING_PONG,
    RDTSC,
    HYPERCALL_BENCH,
    CHANNEL,
    READ_USER,
    FLIP_USER,
    FWD_GETPID,
    FWD_ATTACH,
    FWD_DETACH,
    SPLIT,
    FWD_STRESS,
    FWD_CORRUPT,
    RING_ROS_DOORBELL,
    WAIT_INTERRUPTS,
    FWD_TIMED,
    DOORBELL_PONG,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_numbered_densely_below_the_vmm_range() {
        for (n, f) in ALL.iter().enumerate() {
            assert_eq!(*f, n as u64);
            assert!(*f < crate::FUNC_VMM_BASE);
        }
        const { assert!(NOT_MAPPED > crate::FUNC_VMM_BASE && UNKNOWN > crate::FUNC_VMM_BASE) };
    }
}
