//! duet's hypercall ABI (version 1) and the HVM boot structures, as plain `no_std` definitions with no
//! dependencies, so that the VMM, an HRT kernel and ROS user-space tools share one source of truth.
//! The prose specification is `docs/hypercalls.md`.
//!
//! - [`Op`], [`HcallError`], [`HrtState`], event numbers: the hypercall ABI.
//! - [`HvmHeaderTag`]: the Multiboot2 header tag by which an HRT asks for the 64-bit entry.
//! - [`HvmInfo`]: the partition description (Multiboot2 information tag [`HVM_INFO_TAG`], and the
//!   [`Op::PartitionInfo`] answer).
//! - [`ForwardMode`]: how the HRT and the ROS's proxy wait on a forwarding channel (configured per VM,
//!   told in [`HvmInfo::forward_mode`]).
//! - [`InvokeSlot`], [`Completion`]: the invoke mailboxes in the HRT's comm page and the completion
//!   record in the caller's memory.
//! - [`client`]: the hypercall instruction itself (ring 0, or Linux user space after `ioperm`).
//! - [`func`]: the invoke functions of duet's own HRT, by number.
#![no_std]

pub mod client;
pub mod func;
mod info;

pub use info::{HvmHeaderTag, HvmInfo, MemRange, HVM_HEADER_TAG, HVM_INFO_TAG, MAX_CORES};

/// Version of this ABI, answered by [`Op::Version`] in RBX.
pub const ABI_VERSION: u64 = 1;
/// The hypercall port (`out 0xe4, eax`).
pub const HYPERCALL_PORT: u16 = 0xe4;
/// The HRT doorbell (docs/hypercalls.md §7): a 4-byte `out` from the ROS with EAX = an HRT core
/// index raises the wake-up vector on that core. duet wires it in the kernel (an ioeventfd in the
/// ROS's KVM VM, an irqfd with an MSI route in the HRT's), so ringing costs no exit to the VMM.
pub const HRT_DOORBELL_PORT: u16 = 0xe8;
/// The ROS doorbell (docs/hypercalls.md §7): a 4-byte `out` from an HRT core with EAX = its core
/// index puts that index, as one byte, into the ROS's doorbell UART ([`ROS_DOORBELL_UART`]), whose
/// interrupt wakes a process blocked in `read()` on it (Linux: `/dev/ttyS1`).
pub const ROS_DOORBELL_PORT: u16 = 0xec;
/// I/O base of the ROS's doorbell UART: a 16550 at COM2's place (IRQ [`ROS_DOORBELL_IRQ`]).
pub const ROS_DOORBELL_UART: u16 = 0x2f8;
/// The doorbell UART's interrupt line (COM2's).
pub const ROS_DOORBELL_IRQ: u32 = 3;
/// Largest HRT image [`Op::HrtReplace`] accepts.
pub const MAX_IMAGE_LEN: u64 = 64 << 20;
/// Largest buffer [`Op::PartitionInfo`] writes to.
pub const MAX_INFO_LEN: u64 = 1 << 20;
/// [`Op::Invoke`] target meaning "every HRT core".
pub const ALL_CORES: u64 = u64::MAX;
/// [`Op::Invoke`] flag (RSI bit 0): post [`EVENT_INVOKE_DONE`] to the ROS when the function returns.
pub const INVOKE_NOTIFY: u64 = 1;
/// Events a partition may hold before [`Op::EventPost`] answers [`HcallError::Busy`].
pub const EVENT_QUEUE_DEPTH: usize = 64;
/// Event numbers from this value up are the VMM's own; guests may not post them.
pub const EVENT_VMM_BASE: u64 = 0xffff_0000;
/// Posted to the ROS when the HRT faults (payload: [`HrtFault`] as a number).
pub const EVENT_HRT_FAULT: u64 = EVENT_VMM_BASE + 1;
/// Posted to the ROS when the HRT exits through the debug port (payload: its status).
pub const EVENT_HRT_EXIT: u64 = EVENT_VMM_BASE + 2;
/// Posted to the ROS when an invoke made with [`INVOKE_NOTIFY`] finishes (payload: core index).
pub const EVENT_INVOKE_DONE: u64 = EVENT_VMM_BASE + 3;
/// Posted to the ROS when the HRT says it is ready ([`Op::HrtReady`]; payload: boot count).
pub const EVENT_HRT_READY: u64 = EVENT_VMM_BASE + 4;
/// Invoke function numbers from this value up are the VMM's own (posted by [`Op::Merge`] and
/// [`Op::Unmerge`]); [`Op::Invoke`] refuses them.
pub const FUNC_VMM_BASE: u64 = 0xffff_ffff_0000_0000;
/// Posted by [`Op::Merge`]: adopt PML4 entries 0–255 of the page-table root at guest-physical `arg`
/// (the calling ROS process's CR3 with PCID and flag bits masked off). The HRT returns 0 on success.
pub const FUNC_MERGE: u64 = FUNC_VMM_BASE + 1;
/// Posted by [`Op::Unmerge`]: drop the merged lower half (back to the HRT's own). Returns 0.
pub const FUNC_UNMERGE: u64 = FUNC_VMM_BASE + 2;
/// The value a Multiboot2 kernel finds in EAX (also on the 64-bit HVM entry).
pub const MB2_BOOTLOADER_MAGIC: u32 = 0x36D7_6289;

/// Hypercall operations (EAX). Arguments in RBX, RCX, RDX, RSI, RDI; status in RAX; results in RBX,
/// RCX, RDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// RBX = ABI version, RCX = HRT cores, RDX = ROS cores. Either partition.
    Version = 0,
    /// Copy the [`HvmInfo`] to the buffer at RBX (caller's virtual address), RCX bytes long; RBX =
    /// bytes written. Either partition.
    PartitionInfo = 1,
    /// Boot the HRT (configured `boot = "on-request"`, or after it exited or faulted). ROS only.
    HrtBoot = 2,
    /// Reboot the HRT from its image, whatever its state. ROS only.
    HrtReboot = 3,
    /// Replace the HRT image with the RCX bytes at RBX (caller's virtual address), then boot it. ROS only.
    HrtReplace = 4,
    /// Run HRT function RBX with argument RCX on core RDX (or [`ALL_CORES`]); RSI = flags
    /// ([`INVOKE_NOTIFY`]); RDI = the caller's [`Completion`] record (virtual address; for
    /// [`ALL_CORES`] an array, one per core) or 0. Returns at once with RBX = the request's sequence
    /// number. ROS only.
    Invoke = 5,
    /// RBX = core: RBX = result of its last finished invoke, RCX = its sequence number, RDX = 1 when
    /// the core has finished every request posted to it. ROS only.
    InvokeResult = 6,
    /// Post event RBX (below [`EVENT_VMM_BASE`]) with payload RCX to the other partition. Either.
    EventPost = 7,
    /// Take the oldest event posted to the caller: RDX = 1 and RBX = event, RCX = payload; or RDX = 0.
    /// Either partition.
    EventComplete = 8,
    /// RBX = [`HrtState`], RCX = detail (exit status, or [`HrtFault`]), RDX = boots so far. ROS only.
    HrtStatus = 9,
    /// End the VM with status RBX. ROS only (an HRT's end is contained, never the VM's).
    Exit = 10,
    /// The HRT's boot core says it takes invokes now. HRT only.
    HrtReady = 11,
    /// The HRT finished an invoke made with [`INVOKE_NOTIFY`] on core RBX. HRT only.
    InvokeDone = 12,
    /// Share the calling process's user half with HRT core RBX (or [`ALL_CORES`]): posts
    /// [`FUNC_MERGE`] with the caller's page-table root, like [`Op::Invoke`] (RSI flags, RDI
    /// completion record); RBX = sequence number. ROS only, from a process (paging on).
    Merge = 13,
    /// Undo [`Op::Merge`] on core RBX (or [`ALL_CORES`]): posts [`FUNC_UNMERGE`]. ROS only.
    Unmerge = 14,
}

impl Op {
    /// Every operation, in number order.
    pub const ALL: [Op; 15] = [
        Op::Version,
        Op::PartitionInfo,
        Op::HrtBoot,
        Op::HrtReboot,
        Op::HrtReplace,
        Op::Invoke,
        Op::InvokeResult,
        Op::EventPost,
        Op::EventComplete,
        Op::HrtStatus,
        Op::Exit,
        Op::HrtReady,
        Op::InvokeDone,
        Op::Merge,
        Op::Unmerge,
    ];

    /// The operation for an EAX value.
    pub fn from_raw(eax: u32) -> Option<Op> {
        Op::ALL.get(eax as usize).copied()
    }

    /// Whether the ROS may make this call.
    pub fn ros_may_call(self) -> bool {
        !matches!(self, Op::HrtReady | Op::InvokeDone)
    }

    /// Whether the HRT may make this call.
    pub fn hrt_may_call(self) -> bool {
        matches!(
            self,
            Op::Version | Op::PartitionInfo | Op::EventPost | Op::EventComplete | Op::HrtReady | Op::InvokeDone
        )
    }

    /// The name used in documentation and logs.
    pub fn name(self) -> &'static str {
        match self {
            Op::Version => "VERSION",
            Op::PartitionInfo => "PARTITION_INFO",
            Op::HrtBoot => "HRT_BOOT",
            Op::HrtReboot => "HRT_REBOOT",
            Op::HrtReplace => "HRT_REPLACE",
            Op::Invoke => "INVOKE",
            Op::InvokeResult => "INVOKE_RESULT",
            Op::EventPost => "EVENT_POST",
            Op::EventComplete => "EVENT_COMPLETE",
            Op::HrtStatus => "HRT_STATUS",
            Op::Exit => "EXIT",
            Op::HrtReady => "HRT_READY",
            Op::InvokeDone => "INVOKE_DONE",
            Op::Merge => "MERGE",
            Op::Unmerge => "UNMERGE",
        }
    }
}

/// How the two sides of a forwarding channel wait for each other (the config's `[hrt] forward`,
/// told to both partitions in [`HvmInfo::forward_mode`]; docs/hypercalls.md §7 and
/// docs/forwarding.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum ForwardMode {
    /// Both sides spin on the channel; no doorbells (the lowest latency, a core each).
    #[default]
    Poll = 0,
    /// Both sides sleep and are woken by the doorbells ([`HRT_DOORBELL_PORT`], [`ROS_DOORBELL_PORT`]).
    Notify = 1,
    /// Spin for at most [`HvmInfo::forward_spin_us`] microseconds, then sleep as in [`ForwardMode::Notify`].
    Adaptive = 2,
}

impl ForwardMode {
    /// Every mode, in number order.
    pub const ALL: [ForwardMode; 3] = [ForwardMode::Poll, ForwardMode::Notify, ForwardMode::Adaptive];

    /// The mode for a number ([`HvmInfo::forward_mode`]).
    pub fn from_u32(n: u32) -> Option<ForwardMode> {
        ForwardMode::ALL.get(usize::try_from(n).ok()?).copied()
    }

    /// The name used in the config, documentation and logs (`poll`, `notify`, `adaptive`).
    pub fn name(&self) -> &'static str {
        match self {
            ForwardMode::Poll => "poll",
            ForwardMode::Notify => "notify",
            ForwardMode::Adaptive => "adaptive",
        }
    }
}

/// What a hypercall can fail with; the negative code goes back in RAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum HcallError {
    /// EAX names no operation, or RAX has bits above 31.
    UnknownOp = -1,
    /// This partition may not make this call.
    WrongPartition = -2,
    /// A buffer is not mapped (present, user-accessible, writable where written) in the caller's
    /// address space, or not in the caller's RAM.
    BadAddress = -3,
    /// A length is zero or above its limit.
    BadLength = -4,
    /// No such HRT core.
    BadCpu = -5,
    /// The HRT is not in a state that allows this call.
    BadState = -6,
    /// Something is already in progress (an invoke on that core; a full event queue); try again.
    Busy = -7,
    /// Another argument is out of range (flags, event number, an image that is not a Multiboot2 kernel).
    BadArgument = -8,
}

impl HcallError {
    /// Every error, code −1 first.
    pub const ALL: [HcallError; 8] = [
        HcallError::UnknownOp,
        HcallError::WrongPartition,
        HcallError::BadAddress,
        HcallError::BadLength,
        HcallError::BadCpu,
        HcallError::BadState,
        HcallError::Busy,
        HcallError::BadArgument,
    ];

    /// The RAX value.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The error for a RAX value, if it is one.
    pub fn from_code(code: i64) -> Option<HcallError> {
        let index = code.checked_neg()?.checked_sub(1)?;
        HcallError::ALL.get(usize::try_from(index).ok()?).copied()
    }

    /// The name used in documentation and logs.
    pub fn name(self) -> &'static str {
        match self {
            HcallError::UnknownOp => "UNKNOWN_OP",
            HcallError::WrongPartition => "WRONG_PARTITION",
            HcallError::BadAddress => "BAD_ADDRESS",
            HcallError::BadLength => "BAD_LENGTH",
            HcallError::BadCpu => "BAD_CPU",
            HcallError::BadState => "BAD_STATE",
            HcallError::Busy => "BUSY",
            HcallError::BadArgument => "BAD_ARGUMENT",
        }
    }
}

/// The HRT's lifecycle state, as [`Op::HrtStatus`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum HrtState {
    /// Not booted yet (`boot = "on-request"`).
    NotBooted = 0,
    /// Started; has not said [`Op::HrtReady`] yet.
    Booting = 1,
    /// Running and taking invokes.
    Ready = 2,
    /// Exited through the debug port (detail: its status).
    Exited = 3,
    /// Faulted (detail: [`HrtFault`]); contained, can be rebooted.
    Faulted = 4,
}

impl HrtState {
    /// The state for a number.
    pub fn from_raw(n: u64) -> Option<HrtState> {
        Some(match n {
            0 => HrtState::NotBooted,
            1 => HrtState::Booting,
            2 => HrtState::Ready,
            3 => HrtState::Exited,
            4 => HrtState::Faulted,
            _ => return None,
        })
    }

    /// The name `hvm status` prints.
    pub fn name(self) -> &'static str {
        match self {
            HrtState::NotBooted => "not-booted",
            HrtState::Booting => "booting",
            HrtState::Ready => "ready",
            HrtState::Exited => "exited",
            HrtState::Faulted => "faulted",
        }
    }
}

/// How an HRT faulted ([`HrtState::Faulted`] detail, [`EVENT_HRT_FAULT`] payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum HrtFault {
    /// A core triple-faulted.
    TripleFault = 1,
    /// A core ran an instruction this host's KVM cannot emulate.
    Unsupported = 2,
    /// KVM reported an internal error, or an exit duet does not handle.
    Internal = 3,
}

/// A core's invoke mailbox in the HRT's comm page ([`HvmInfo::comm_page`] + 64 × core index).
/// The VMM writes a request and then `seq` (release); the HRT runs `func(arg)`, writes `result`, then
/// `done = seq` (release), then writes `{seq, result}` to `completion` if that is not 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct InvokeSlot {
    /// Sequence number of the newest request (VMM).
    pub seq: u64,
    /// The function: an opaque value the HRT's invoke handler interprets (duet's HRT: a number).
    pub func: u64,
    /// Its argument.
    pub arg: u64,
    /// Guest-physical address of the caller's [`Completion`] record, or 0.
    pub completion: u64,
    /// Request flags ([`INVOKE_NOTIFY`]).
    pub flags: u64,
    /// Sequence number of the newest finished request (HRT).
    pub done: u64,
    /// The function's result (HRT).
    pub result: u64,
    /// Reserved (0).
    pub reserved: u64,
}

/// Byte offsets of [`InvokeSlot`]'s fields, for assembly and for the VMM's volatile accesses.
pub mod slot {
    /// `seq`.
    pub const SEQ: u64 = 0;
    /// `func`.
    pub const FUNC: u64 = 8;
    /// `arg`.
    pub const ARG: u64 = 16;
    /// `completion`.
    pub const COMPLETION: u64 = 24;
    /// `flags`.
    pub const FLAGS: u64 = 32;
    /// `done`.
    pub const DONE: u64 = 40;
    /// `result`.
    pub const RESULT: u64 = 48;
    /// Size of a slot.
    pub const SIZE: u64 = 64;
}

/// Where an invoke's outcome lands in the caller's memory: the HRT writes `result`, then `seq`
/// (release). The caller zeroes `seq`, invokes, and waits until `seq` equals the sequence number the
/// hypercall returned. 16 bytes, 16-byte aligned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(16))]
pub struct Completion {
    /// The finished request's sequence number (0 = none yet).
    pub seq: u64,
    /// The function's result.
    pub result: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_their_numbers() {
        for (n, op) in Op::ALL.iter().enumerate() {
            assert_eq!(Op::from_raw(n as u32), Some(*op));
            assert_eq!(*op as u32, n as u32);
        }
        assert_eq!(Op::from_raw(Op::ALL.len() as u32), None);
        assert_eq!(Op::from_raw(u32::MAX), None);
    }

    #[test]
    fn error_codes_round_trip_and_are_negative() {
        for e in HcallError::ALL {
            assert!(e.code() < 0);
            assert_eq!(HcallError::from_code(e.code()), Some(e));
        }
        for bad in [0, 1, -9, i64::MIN, i64::MAX] {
            assert_eq!(HcallError::from_code(bad), None);
        }
    }

    #[test]
    fn each_operation_is_callable_by_someone() {
        for op in Op::ALL {
            assert!(op.ros_may_call() || op.hrt_may_call(), "{}", op.name());
        }
        assert!(!Op::HrtReboot.hrt_may_call());
        assert!(!Op::HrtReady.ros_may_call());
    }

    #[test]
    fn forward_modes_round_trip_their_numbers_and_names() {
        for (n, mode) in ForwardMode::ALL.iter().enumerate() {
            assert_eq!(ForwardMode::from_u32(n as u32), Some(*mode));
            assert_eq!(*mode as u32, n as u32);
        }
        assert_eq!(ForwardMode::from_u32(3), None);
        assert_eq!(ForwardMode::from_u32(u32::MAX), None);
        assert_eq!(ForwardMode::default(), ForwardMode::Poll);
        let names: [&str; 3] = ForwardMode::ALL.map(|m| m.name());
        assert_eq!(names, ["poll", "notify", "adaptive"]);
    }

    #[test]
    fn layouts_match_the_documented_offsets() {
        assert_eq!(core::mem::size_of::<InvokeSlot>() as u64, slot::SIZE);
        assert_eq!(core::mem::offset_of!(InvokeSlot, done) as u64, slot::DONE);
        assert_eq!(core::mem::offset_of!(InvokeSlot, result) as u64, slot::RESULT);
        assert_eq!(core::mem::offset_of!(InvokeSlot, completion) as u64, slot::COMPLETION);
        assert_eq!(core::mem::size_of::<Completion>(), 16);
        for s in HrtState::NotBooted as u64..=HrtState::Faulted as u64 {
            assert_eq!(HrtState::from_raw(s).map(|x| x as u64), Some(s));
        }
    }
}
