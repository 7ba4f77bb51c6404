//! `hvm forward-test`: the first forwarded system call. This process is the proxy (DESIGN §8,
//! docs/forwarding.md): it formats a forwarding channel (`crates/forwarder`) in its own locked
//! memory, merges its user half into an HRT core, starts HRT function 14 there, which forwards
//! `getpid` through the channel by the region's virtual address, and serves the channel by making
//! each requested system call itself, until the invoke's completion record holds the HRT's answer.

use std::hint::spin_loop;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use forwarder::{layout, CacheLine, Channel, Consumer};

use crate::cli::DEFAULT_INVOKE_TIMEOUT;
use crate::hcall::Port;
use crate::invoke::{no_result, wait, CompletionCell};
use crate::{sys, Error};

/// duet's HRT: invoke function 14, forward `getpid` 1000 times through a merged channel.
const FUNC_FORWARD_GETPID: u64 = 14;
/// The calls function 14 makes.
const CALLS: u64 = 1000;
/// The channel's slots.
const SLOTS: u32 = 64;
/// How long the proxy serves before it gives up on the HRT's answer.
const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What function 14 answers instead of a pid.
fn hrt_error(result: u64) -> Option<&'static str> {
    Some(match u64::MAX - result {
        0 => "unknown function (an HRT without function 14?)",
        1 => "the channel region is not mapped on the HRT",
        2 => "the HRT could not attach to the channel",
        3 => "the HRT timed out waiting for a response",
        4 => "a forwarded call failed on the HRT",
        5 => "the forwarded calls answered different pids",
        _ => return None,
    })
}

/// Makes the system call `nr(args)` for the HRT: its return value, or −errno.
fn syscall(nr: u32, args: [u64; 6]) -> i64 {
    let [a0, a1, a2, a3, a4, a5] = args;
    // SAFETY: the proxy makes whatever call its HRT asks for, with its arguments, as the process the
    // HRT runs merged into; the HRT's pointers are this process's (the merge). A call that corrupts
    // this process is the HRT program's bug, as it would be in the program itself. (Only `getpid`
    // is asked for so far.)
    let r = unsafe { libc::syscall(libc::c_long::from(nr as i32), a0, a1, a2, a3, a4, a5) };
    if r == -1 {
        -i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOSYS))
    } else {
        r
    }
}

/// The proxy's serve loop: takes each request, makes the call, completes it, until `done` says
/// stop (looked at whenever the ring is empty) or `deadline`. Returns the calls served.
fn serve(consumer: &mut Consumer, deadline: Instant, mut done: impl FnMut() -> bool) -> Result<u64, Error> {
    let mut served = 0u64;
    let mut idle = 0u32;
    loop {
        match consumer.try_take() {
            Ok(Some(request)) => {
                let result = syscall(request.nr, request.args);
                consumer
                    .try_complete(request.seq, result, 0)
                    .map_err(|e| Error::failed(format!("forward-test: completing request {}: {e}", request.seq)))?;
                served += 1;
                idle = 0;
            }
            Ok(None) => {
                if done() {
                    return Ok(served);
                }
                idle = idle.wrapping_add(1);
                if idle.is_multiple_of(1024) && Instant::now() >= deadline {
                    return Err(Error::failed(format!(
                        "forward-test: no answer from the HRT after {} s ({served} calls served)",
                        SERVE_TIMEOUT.as_secs()
                    )));
                }
                spin_loop();
            }
            Err(e) => return Err(Error::failed(format!("forward-test: taking a request: {e}"))),
        }
    }
}

/// Between MERGE and UNMERGE: starts function 14 and serves its channel. `(hrt result, served)`.
fn merged(port: &Port, core: u64, region: &[CacheLine], consumer: &mut Consumer) -> Result<(u64, u64), Error> {
    let record = CompletionCell::default();
    let va = region.as_ptr() as u64;
    let seq = port.invoke(FUNC_FORWARD_GETPID, va, core, 0, Some(std::slice::from_ref(&record)))?;
    let served = serve(consumer, Instant::now() + SERVE_TIMEOUT, || record.seq.load(Ordering::Acquire) == seq)?;
    Ok((record.result.load(Ordering::Acquire), served))
}

/// `hvm forward-test [--core N]`: formats a channel of 64 slots in locked memory, MERGE on the
/// core (0), INVOKE of function 14 with the channel's address, serves the channel until the
/// invoke's completion record holds the result, UNMERGE (0). Prints
/// `forward-test ok pid=<getpid> hrt_pid=<result> served=<calls>`; fails unless the HRT's pid is
/// this process's and it served 1000 calls.
pub fn test(port: &Port, core: u64) -> Result<(), Error> {
    let mut region = vec![CacheLine::ZERO; CacheLine::lines_for(SLOTS)];
    let len = region.len() * layout::CACHE_LINE;
    let base = region.as_mut_ptr().cast::<u8>();
    // mlockall (MCL_CURRENT | MCL_FUTURE) already keeps it present; this says so for the region.
    sys::mlock(base as usize, len)?;
    // SAFETY: the Vec's buffer is ours, 64-aligned, `len` bytes, and outlives the channel (dropped
    // at the end of this function, after UNMERGE); nothing else touches it in this process.
    let channel = unsafe { Channel::init(base, len, SLOTS) }.map_err(|e| Error::failed(format!("forward-test: init: {e}")))?;
    let mut consumer = channel.consumer().map_err(|e| Error::failed(format!("forward-test: consumer: {e}")))?;
    let merged_result = merge_one(port, true, core)?;
    if merged_result != 0 {
        return Err(Error::failed(format!("forward-test: MERGE on core {core} answered {merged_result:#x}, not 0")));
    }
    let outcome = merged(port, core, &region, &mut consumer);
    // Unmerge whatever happened (queued behind function 14 if it is still running).
    let unmerged = merge_one(port, false, core);
    let (hrt_pid, served) = outcome?;
    let unmerged = unmerged?;
    drop(region);
    if unmerged != 0 {
        return Err(Error::failed(format!("forward-test: UNMERGE on core {core} answered {unmerged:#x}, not 0")));
    }
    if let Some(why) = hrt_error(hrt_pid) {
        return Err(Error::failed(format!("forward-test: function 14 answered {hrt_pid:#x}: {why} ({served} calls served)")));
    }
    let pid = u64::from(std::process::id());
    if hrt_pid != pid || served != CALLS {
        return Err(Error::failed(format!(
            "forward-test: the HRT's pid {hrt_pid} is not this process's {pid}, or {served} calls were served, not {CALLS}"
        )));
    }
    out!("forward-test ok pid={pid} hrt_pid={hrt_pid} served={served}");
    Ok(())
}

/// MERGE or UNMERGE on one core: its result.
fn merge_one(port: &Port, merge: bool, core: u64) -> Result<u64, Error> {
    let record = CompletionCell::default();
    let seq = port.merge(merge, core, Some(std::slice::from_ref(&record)))?;
    let timeout = DEFAULT_INVOKE_TIMEOUT;
    wait(port, &record, Instant::now() + timeout, |s| s == seq)?.map_err(|seen| no_result(core, timeout, seq, seen))?;
    Ok(record.result.load(Ordering::Acquire))
}
