//! `hvm events`, `post`, `exit`, `raw`, `flood`.

use std::time::Instant;

use abi::{HcallError, Op, ABI_VERSION, EVENT_HRT_EXIT, EVENT_HRT_FAULT, EVENT_HRT_READY, EVENT_INVOKE_DONE};

use crate::error::Error;
use crate::hcall::Port;

/// Most events one `hvm events` takes (the queue holds far fewer; a bound against a broken VMM).
const MAX_DRAIN: usize = 4096;

/// The name of one of the VMM's events.
fn event_name(event: u64) -> Option<&'static str> {
    Some(match event {
        EVENT_HRT_FAULT => "hrt-fault",
        EVENT_HRT_EXIT => "hrt-exit",
        EVENT_INVOKE_DONE => "invoke-done",
        EVENT_HRT_READY => "hrt-ready",
        _ => return None,
    })
}

/// `hvm events`: `event=0x.. payload=0x.. [name=..]` per event, then `events=N`.
pub fn events(port: &Port) -> Result<(), Error> {
    let mut n = 0;
    while n < MAX_DRAIN {
        let r = port.call(Op::EventComplete, [0; 5])?;
        if r.rdx == 0 {
            break;
        }
        n += 1;
        match event_name(r.rbx) {
            Some(name) => out!("event={:#x} payload={:#x} name={name}", r.rbx, r.rcx),
            None => out!("event={:#x} payload={:#x}", r.rbx, r.rcx),
        }
    }
    out!("events={n}");
    Ok(())
}

/// `hvm post EVENT PAYLOAD`.
pub fn post(port: &Port, event: u64, payload: u64) -> Result<(), Error> {
    port.call(Op::EventPost, [event, payload, 0, 0, 0])?;
    out!("posted event={event:#x} payload={payload:#x}");
    Ok(())
}

/// `hvm exit STATUS`: returns only if the VM did not end.
pub fn exit(port: &Port, status: u64) -> Result<(), Error> {
    port.call(Op::Exit, [status, 0, 0, 0, 0])?;
    Err(Error::failed("EXIT returned: the VM is still running"))
}

/// `hvm raw`: `rax=.. rbx=.. rcx=.. rdx=..`, plus `error=NAME code=N` when RAX is an error code.
pub fn raw(port: &Port, rax: u64, args: [u64; 5]) {
    // SAFETY: a deliberate probe with whatever the user typed; if the arguments name our memory
    // the VMM may write there, and this process reads none of it afterwards.
    let [a, b, c, d] = unsafe { port.raw(rax, args) };
    let err = HcallError::from_code(a as i64).map(|e| format!(" error={} code={}", e.name(), e.code()));
    out!("rax={a:#x} rbx={b:#x} rcx={c:#x} rdx={d:#x}{}", err.unwrap_or_default());
}

/// `hvm flood N`: N VERSION hypercalls; any error or wrong answer is counted and fails the run.
pub fn flood(port: &Port, n: u64) -> Result<(), Error> {
    let start = Instant::now();
    let (mut errors, mut first) = (0u64, None);
    for _ in 0..n {
        match port.call(Op::Version, [0; 5]) {
            Ok(r) if r.rbx == ABI_VERSION => {}
            Ok(r) => {
                errors += 1;
                first.get_or_insert_with(|| format!("VERSION answered {}", r.rbx));
            }
            Err(Error::Failed(e) | Error::Usage(e)) => {
                errors += 1;
                first.get_or_insert(e);
            }
        }
    }
    let us = start.elapsed().as_micros();
    if errors == 0 {
        out!("flood={n} ok elapsed_us={us}");
        Ok(())
    } else {
        out!("flood={n} errors={errors} elapsed_us={us}");
        Err(Error::failed(format!("{errors} of {n} hypercalls failed; first: {}", first.unwrap_or_default())))
    }
}
