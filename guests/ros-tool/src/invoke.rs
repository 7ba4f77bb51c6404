//! `hvm invoke` and `hvm result`: completion records in locked memory, spinning for the outcome.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use abi::{HrtState, Op, ALL_CORES, INVOKE_NOTIFY};

use crate::cli::{InvokeArgs, Target};
use crate::completion::{cells, spin_until, CompletionCell};
use crate::error::Error;
use crate::hcall::{Port, Version};
use crate::info::{query, status_line};

/// How often a sync invoke looks at HRT_STATUS while it waits, to give up at once on an HRT that
/// exited or faulted instead of at the timeout.
const STATUS_EVERY: Duration = Duration::from_millis(50);

/// `core=N seq=S result=0x.. (decimal)`.
fn result_line(core: u64, seq: u64, result: u64) -> String {
    format!("core={core} seq={seq} result={result:#x} ({result})")
}

/// Waits for `cell` like [`spin_until`] (`Ok(Err(last seen))` at `deadline`), but fails at once if
/// the HRT exited or faulted.
pub fn wait(
    port: &Port,
    cell: &CompletionCell,
    deadline: Instant,
    done: impl Fn(u64) -> bool + Copy,
) -> Result<Result<u64, u64>, Error> {
    loop {
        let check = Instant::now() + STATUS_EVERY;
        match spin_until(cell, check.min(deadline), done) {
            Ok(seq) => return Ok(Ok(seq)),
            Err(seen) if Instant::now() >= deadline => return Ok(Err(seen)),
            Err(_) => {
                let r = query(port)?;
                if matches!(HrtState::from_raw(r.rbx), Some(HrtState::Exited | HrtState::Faulted)) {
                    // It may have answered just before it stopped.
                    let seq = cell.seq.load(Ordering::Acquire);
                    if done(seq) {
                        return Ok(Ok(seq));
                    }
                    return Err(Error::failed(format!("the HRT stopped before answering: {}", status_line(&r))));
                }
            }
        }
    }
}

/// The message for a sync invoke that timed out.
pub fn no_result(core: u64, timeout: Duration, expected: u64, seen: u64) -> Error {
    Error::failed(format!(
        "no result after {:.1} s from core {core} (invoke seq {expected}, completion seq {seen})",
        timeout.as_secs_f64()
    ))
}

/// `hvm invoke`.
pub fn invoke(port: &Port, v: &Version, a: &InvokeArgs) -> Result<(), Error> {
    let flags = if a.notify { INVOKE_NOTIFY } else { 0 };
    let rdx = match a.target {
        Target::Core(c) => c,
        Target::All => ALL_CORES,
    };
    if a.asynchronous {
        let seq = port.invoke(a.func, a.arg, rdx, flags, None)?;
        match a.target {
            Target::Core(c) => out!("core={c} seq={seq}"),
            Target::All => out!("core=all seq={seq}"),
        }
        return Ok(());
    }
    let n = match a.target {
        Target::Core(_) => 1,
        Target::All => usize::try_from(v.hrt_cores).unwrap_or(0).min(abi::MAX_CORES),
    };
    if n == 0 {
        return Err(Error::failed("the partition has no HRT cores"));
    }
    let records = cells(n);
    let seq = port.invoke(a.func, a.arg, rdx, flags, Some(&records))?;
    let deadline = Instant::now() + a.timeout;
    for (i, cell) in records.iter().enumerate() {
        let core = match a.target {
            Target::Core(c) => c,
            Target::All => i as u64,
        };
        // One core: its record must carry this request's number. All cores: the records were zero,
        // so any number is this request's (each core may count on its own).
        let got = match a.target {
            Target::Core(_) => wait(port, cell, deadline, |s| s == seq),
            Target::All => wait(port, cell, deadline, |s| s != 0),
        };
        let got = got?.map_err(|seen| no_result(core, a.timeout, seq, seen))?;
        out!("{}", result_line(core, got, cell.result.load(Ordering::Acquire)));
    }
    Ok(())
}

/// `hvm result CORE`: INVOKE_RESULT.
pub fn result(port: &Port, core: u64) -> Result<(), Error> {
    let r = port.call(Op::InvokeResult, [core, 0, 0, 0, 0])?;
    out!("{} done={}", result_line(core, r.rcx, r.rbx), r.rdx);
    Ok(())
}

/// A sync invoke of `func(arg)` on `core` with a completion record (10 s): its result.
pub fn sync(port: &Port, core: u64, func: u64, arg: u64) -> Result<u64, Error> {
    let record = CompletionCell::default();
    let seq = port.invoke(func, arg, core, 0, Some(std::slice::from_ref(&record)))?;
    wait_record(port, &record, core, seq)
}

/// MERGE (`merge`) or UNMERGE on one core, waited for: its result.
pub fn merge_sync(port: &Port, merge: bool, core: u64) -> Result<u64, Error> {
    let record = CompletionCell::default();
    let seq = port.merge(merge, core, Some(std::slice::from_ref(&record)))?;
    wait_record(port, &record, core, seq)
}

/// Waits (10 s) until `record` shows `seq`; its result.
fn wait_record(port: &Port, record: &CompletionCell, core: u64, seq: u64) -> Result<u64, Error> {
    let timeout = crate::cli::DEFAULT_INVOKE_TIMEOUT;
    wait(port, record, Instant::now() + timeout, |s| s == seq)?.map_err(|seen| no_result(core, timeout, seq, seen))?;
    Ok(record.result.load(Ordering::Acquire))
}
