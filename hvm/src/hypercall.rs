//! Decoding and validating a hypercall (ABI v1, `abi`): which operation, from which partition,
//! with which arguments. Every register is hostile; what passes [`decode`] has its operation, caller,
//! lengths, flags, core numbers and event numbers checked. Buffer addresses are the caller's virtual
//! addresses and are checked when they are translated ([`crate::paging::GuestView`]).

use abi::{
    HcallError, Op, ALL_CORES, EVENT_VMM_BASE, FUNC_VMM_BASE, INVOKE_NOTIFY, MAX_IMAGE_LEN, MAX_INFO_LEN,
};

use crate::Partition;

/// The registers of a hypercall, as the vCPU left them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Regs {
    /// Operation (low 32 bits; the upper 32 must be zero).
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

/// A buffer in the caller's virtual address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserBuf {
    /// Its first byte (virtual).
    pub addr: u64,
    /// Its length in bytes (non-zero, within the operation's limit, not wrapping).
    pub len: u64,
}

/// Which HRT cores an invoke targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreTarget {
    /// One core, by index.
    One(u32),
    /// Every HRT core.
    All,
}

/// Where and how a request is posted to HRT cores ([`Op::Invoke`], [`Op::Merge`], [`Op::Unmerge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Post {
    /// Where to run it.
    pub target: CoreTarget,
    /// [`INVOKE_NOTIFY`] or 0.
    pub flags: u64,
    /// The caller's completion record(s) (virtual, 16-byte aligned; for [`CoreTarget::All`] an array,
    /// one per core), if any.
    pub completion: Option<u64>,
}

/// A decoded, validated hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Op::Version`].
    Version,
    /// [`Op::PartitionInfo`].
    PartitionInfo {
        /// Where to write.
        buf: UserBuf,
    },
    /// [`Op::HrtBoot`].
    HrtBoot,
    /// [`Op::HrtReboot`].
    HrtReboot,
    /// [`Op::HrtReplace`].
    HrtReplace {
        /// The new image.
        image: UserBuf,
    },
    /// [`Op::Invoke`].
    Invoke {
        /// The function (opaque to the VMM).
        func: u64,
        /// Its argument.
        arg: u64,
        /// Where and how.
        post: Post,
    },
    /// [`Op::InvokeResult`].
    InvokeResult {
        /// The core.
        core: u32,
    },
    /// [`Op::EventPost`].
    EventPost {
        /// The event's number (below [`EVENT_VMM_BASE`]).
        event: u64,
        /// Its payload.
        payload: u64,
    },
    /// [`Op::EventComplete`].
    EventComplete,
    /// [`Op::HrtStatus`].
    HrtStatus,
    /// [`Op::Exit`].
    Exit {
        /// The VM's exit status.
        status: u64,
    },
    /// [`Op::HrtReady`].
    HrtReady,
    /// [`Op::InvokeDone`].
    InvokeDone {
        /// The core that finished.
        core: u32,
    },
    /// [`Op::Merge`] (`merge` true) or [`Op::Unmerge`].
    Merge {
        /// Share (true) or stop sharing (false).
        merge: bool,
        /// Where and how.
        post: Post,
    },
}

fn buf(addr: u64, len: u64, max: u64) -> Result<UserBuf, HcallError> {
    if len == 0 || len > max {
        return Err(HcallError::BadLength);
    }
    addr.checked_add(len).ok_or(HcallError::BadAddress)?;
    Ok(UserBuf { addr, len })
}

fn core(index: u64, hrt_cores: u32) -> Result<u32, HcallError> {
    u32::try_from(index).ok().filter(|c| *c < hrt_cores).ok_or(HcallError::BadCpu)
}

fn target(rdx: u64, hrt_cores: u32) -> Result<CoreTarget, HcallError> {
    if rdx == ALL_CORES {
        Ok(CoreTarget::All)
    } else {
        core(rdx, hrt_cores).map(CoreTarget::One)
    }
}

fn flags(rsi: u64) -> Result<u64, HcallError> {
    if rsi & !INVOKE_NOTIFY != 0 {
        return Err(HcallError::BadArgument);
    }
    Ok(rsi)
}

fn completion(rdi: u64) -> Result<Option<u64>, HcallError> {
    match rdi {
        0 => Ok(None),
        a if a % 16 != 0 => Err(HcallError::BadAddress),
        a => Ok(Some(a)),
    }
}

/// The posting of a request to the core(s) named by `cores`, with RSI's flags and RDI's completion record.
fn post(cores: u64, regs: &Regs, hrt_cores: u32) -> Result<Post, HcallError> {
    Ok(Post { target: target(cores, hrt_cores)?, flags: flags(regs.rsi)?, completion: completion(regs.rdi)? })
}

/// Decodes and validates a hypercall made by `from` in a VM with `hrt_cores` HRT cores.
pub fn decode(regs: &Regs, from: Partition, hrt_cores: u32) -> Result<Call, HcallError> {
    if regs.rax >> 32 != 0 {
        return Err(HcallError::UnknownOp);
    }
    let op = Op::from_raw(regs.rax as u32).ok_or(HcallError::UnknownOp)?;
    let allowed = match from {
        Partition::Ros => op.ros_may_call(),
        Partition::Hrt => op.hrt_may_call(),
    };
    if !allowed {
        return Err(HcallError::WrongPartition);
    }
    Ok(match op {
        Op::Version => Call::Version,
        Op::PartitionInfo => Call::PartitionInfo { buf: buf(regs.rbx, regs.rcx, MAX_INFO_LEN)? },
        Op::HrtBoot => Call::HrtBoot,
        Op::HrtReboot => Call::HrtReboot,
        Op::HrtReplace => Call::HrtReplace { image: buf(regs.rbx, regs.rcx, MAX_IMAGE_LEN)? },
        Op::Invoke => {
            let post = post(regs.rdx, regs, hrt_cores)?;
            if regs.rbx >= FUNC_VMM_BASE {
                return Err(HcallError::BadArgument);
            }
            Call::Invoke { func: regs.rbx, arg: regs.rcx, post }
        }
        Op::Merge | Op::Unmerge => Call::Merge { merge: op == Op::Merge, post: post(regs.rbx, regs, hrt_cores)? },
        Op::InvokeResult => Call::InvokeResult { core: core(regs.rbx, hrt_cores)? },
        Op::EventPost => {
            if regs.rbx >= EVENT_VMM_BASE {
                return Err(HcallError::BadArgument);
            }
            Call::EventPost { event: regs.rbx, payload: regs.rcx }
        }
        Op::EventComplete => Call::EventComplete,
        Op::HrtStatus => Call::HrtStatus,
        Op::Exit => Call::Exit { status: regs.rbx },
        Op::HrtReady => Call::HrtReady,
        Op::InvokeDone => Call::InvokeDone { core: core(regs.rbx, hrt_cores)? },
    })
}

#[cfg(test)]
#[path = "hypercall_tests.rs"]
mod tests;
