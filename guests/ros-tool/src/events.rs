//! `hvm events` and `hvm post`: the event queues (EVENT_COMPLETE, EVENT_POST).

use abi::{Op, EVENT_HRT_EXIT, EVENT_HRT_FAULT, EVENT_HRT_READY, EVENT_INVOKE_DONE};

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
