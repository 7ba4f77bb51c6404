//! The hypercall ABI, version 1 (draft: the partitioned VM that serves it is being built; see
//! `docs/hypercalls.md`).
//!
//! A hypercall is one port write, `out 0xe4, eax` (the immediate form, so DX stays free), from either
//! partition: ring 0 may always do port I/O, a ROS process needs `ioperm(0xe4, 1, 1)`. EAX carries the
//! operation, RBX, RCX, RDX, RSI and RDI the arguments. When the `out` completes, RAX holds the status (0,
//! or a negative [`HcallError`] code) and RBX/RCX the results. Every argument is treated as hostile:
//! [`decode`] checks operation, caller, addresses, lengths and CPU numbers before anything acts on them.

/// Version of this ABI, answered by [`Op::Version`] in RBX.
pub const ABI_VERSION: u64 = 1;
/// The hypercall port.
pub const HYPERCALL_PORT: u16 = 0xe4;
/// Largest HRT image [`Op::HrtReplace`] accepts.
pub const MAX_IMAGE_LEN: u64 = 64 << 20;
/// [`Op::Invoke`] target meaning "every HRT core".
pub const ALL_CPUS: u64 = u64::MAX;

/// Hypercall operations (EAX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// ABI version (RBX) and partition counts (RCX: HRT cores, RDX: ROS cores). Either partition.
    Version = 0,
    /// Copy the partition description ([`crate::info`]) to the caller's buffer RBX, length RCX.
    PartitionInfo = 1,
    /// Boot the HRT (when configured `boot = "on-request"`). ROS only.
    HrtBoot = 2,
    /// Reboot the HRT from its image. ROS only.
    HrtReboot = 3,
    /// Replace the HRT image with RCX bytes at RBX in the caller's memory, then boot it. ROS only.
    HrtReplace = 4,
    /// Run the HRT function RBX with argument RCX on core RDX (or [`ALL_CPUS`]); RSI: 0 sync, 1 async.
    /// ROS only.
    Invoke = 5,
    /// Collect the result of an async invoke on core RBX (RBX: result, RCX: 1 done / 0 pending). ROS only.
    InvokeResult = 6,
    /// Post event RBX to the other partition.
    EventPost = 7,
    /// Complete event RBX posted by the other partition.
    EventComplete = 8,
    /// HRT state (RBX: [`HrtState`] as a number, RCX: last fault vector or 0). ROS only.
    HrtStatus = 9,
    /// End the VM with status RBX. ROS only (an HRT's end is contained, not the VM's).
    Exit = 10,
}

impl Op {
    /// The operation for an EAX value.
    pub fn from_raw(eax: u32) -> Option<Op> {
        Some(match eax {
            0 => Op::Version,
            1 => Op::PartitionInfo,
            2 => Op::HrtBoot,
            3 => Op::HrtReboot,
            4 => Op::HrtReplace,
            5 => Op::Invoke,
            6 => Op::InvokeResult,
            7 => Op::EventPost,
            8 => Op::EventComplete,
            9 => Op::HrtStatus,
            10 => Op::Exit,
            _ => return None,
        })
    }

    /// Whether the HRT may make this call (the ROS may make all of them).
    pub fn hrt_may_call(self) -> bool {
        matches!(self, Op::Version | Op::PartitionInfo | Op::EventPost | Op::EventComplete)
    }
}

/// What a hypercall can fail with; the negative code goes back in RAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum HcallError {
    /// EAX names no operation.
    UnknownOp = -1,
    /// This partition may not make this call.
    WrongPartition = -2,
    /// A buffer is not entirely inside the caller's memory.
    BadAddress = -3,
    /// A length is zero, too large, or overflows.
    BadLength = -4,
    /// No such HRT core.
    BadCpu = -5,
    /// The HRT is not in a state that allows this call (e.g. booting one that runs).
    BadState = -6,
    /// Something is already in progress on that core; try again.
    Busy = -7,
    /// Another argument is out of range.
    BadArgument = -8,
}

impl HcallError {
    /// The RAX value.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The error for a RAX value, if it is one.
    pub fn from_code(code: i64) -> Option<HcallError> {
        Some(match code {
            -1 => HcallError::UnknownOp,
            -2 => HcallError::WrongPartition,
            -3 => HcallError::BadAddress,
            -4 => HcallError::BadLength,
            -5 => HcallError::BadCpu,
            -6 => HcallError::BadState,
            -7 => HcallError::Busy,
            -8 => HcallError::BadArgument,
            _ => return None,
        })
    }
}

/// The HRT's lifecycle state, as [`Op::HrtStatus`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum HrtState {
    /// Configured `on-request` and not booted yet.
    NotBooted = 0,
    /// Running.
    Running = 1,
    /// Exited on its own (status via the debug port).
    Exited = 2,
    /// Faulted (triple fault or unsupported instruction); contained, can be rebooted.
    Faulted = 3,
}

/// The registers of a hypercall, as the vCPU left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// Operation (low 32 bits used).
    pub rax: u64,
    /// Argument 1.
    pub rbx: u64,
    /// Argument 2.
    pub rcx: u64,
    /// Argument 3.
    pub rdx: u64,
    /// Argument 4.
    pub rsi: u64,
    /// Argument 5.
    pub rdi: u64,
}

/// A range of guest-physical memory named by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRange {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// How [`Op::Invoke`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    /// The call returns when the function has returned; RBX holds its result.
    Sync,
    /// The call returns at once; [`Op::InvokeResult`] collects the result.
    Async,
}

/// Which HRT cores an invoke targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuTarget {
    /// One core, by index among the HRT's cores.
    One(u32),
    /// Every HRT core.
    All,
}

/// A decoded, validated hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Op::Version`].
    Version,
    /// [`Op::PartitionInfo`].
    PartitionInfo {
        /// Where to write.
        buf: GuestRange,
    },
    /// [`Op::HrtBoot`].
    HrtBoot,
    /// [`Op::HrtReboot`].
    HrtReboot,
    /// [`Op::HrtReplace`].
    HrtReplace {
        /// The new image.
        image: GuestRange,
    },
    /// [`Op::Invoke`].
    Invoke {
        /// HRT address of the function.
        func: u64,
        /// Its argument.
        arg: u64,
        /// Where to run it.
        target: CpuTarget,
        /// Wait or not.
        mode: InvokeMode,
    },
    /// [`Op::InvokeResult`].
    InvokeResult {
        /// The core.
        cpu: u32,
    },
    /// [`Op::EventPost`].
    EventPost {
        /// The event's number.
        event: u64,
    },
    /// [`Op::EventComplete`].
    EventComplete {
        /// The event's number.
        event: u64,
    },
    /// [`Op::HrtStatus`].
    HrtStatus,
    /// [`Op::Exit`].
    Exit {
        /// The VM's exit status.
        status: u64,
    },
}

/// What a caller may name: its own memory and the HRT's cores.
#[derive(Debug, Clone, Copy)]
pub struct Limits<'a> {
    /// Guest-physical RAM ranges `(start, end)` the caller may pass buffers in (the ROS: its own RAM;
    /// the HRT: all RAM).
    pub caller_ram: &'a [(u64, u64)],
    /// Number of HRT cores.
    pub hrt_cpus: u32,
}

fn range(start: u64, len: u64, max: u64, limits: &Limits<'_>) -> Result<GuestRange, HcallError> {
    if len == 0 || len > max {
        return Err(HcallError::BadLength);
    }
    let end = start.checked_add(len).ok_or(HcallError::BadAddress)?;
    if limits.caller_ram.iter().any(|(s, e)| start >= *s && end <= *e) {
        Ok(GuestRange { start, len })
    } else {
        Err(HcallError::BadAddress)
    }
}

fn cpu(index: u64, limits: &Limits<'_>) -> Result<u32, HcallError> {
    u32::try_from(index).ok().filter(|c| *c < limits.hrt_cpus).ok_or(HcallError::BadCpu)
}

/// Decodes and validates a hypercall made by `from`.
pub fn decode(regs: &Regs, from: crate::Partition, limits: &Limits<'_>) -> Result<Call, HcallError> {
    let op = Op::from_raw(regs.rax as u32).ok_or(HcallError::UnknownOp)?;
    if regs.rax >> 32 != 0 {
        return Err(HcallError::UnknownOp);
    }
    if from == crate::Partition::Hrt && !op.hrt_may_call() {
        return Err(HcallError::WrongPartition);
    }
    Ok(match op {
        Op::Version => Call::Version,
        Op::PartitionInfo => Call::PartitionInfo { buf: range(regs.rbx, regs.rcx, 1 << 20, limits)? },
        Op::HrtBoot => Call::HrtBoot,
        Op::HrtReboot => Call::HrtReboot,
        Op::HrtReplace => Call::HrtReplace { image: range(regs.rbx, regs.rcx, MAX_IMAGE_LEN, limits)? },
        Op::Invoke => Call::Invoke {
            func: regs.rbx,
            arg: regs.rcx,
            target: if regs.rdx == ALL_CPUS { CpuTarget::All } else { CpuTarget::One(cpu(regs.rdx, limits)?) },
            mode: match regs.rsi {
                0 => InvokeMode::Sync,
                1 => InvokeMode::Async,
                _ => return Err(HcallError::BadArgument),
            },
        },
        Op::InvokeResult => Call::InvokeResult { cpu: cpu(regs.rbx, limits)? },
        Op::EventPost => Call::EventPost { event: regs.rbx },
        Op::EventComplete => Call::EventComplete { event: regs.rbx },
        Op::HrtStatus => Call::HrtStatus,
        Op::Exit => Call::Exit { status: regs.rbx },
    })
}

#[cfg(test)]
mod tests;
