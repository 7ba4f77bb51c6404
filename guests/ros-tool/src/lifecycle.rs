//! The lifecycle commands: `hvm boot`, `hvm reboot`, `hvm replace` (the HRT's: the request, then
//! polling HRT_STATUS until Ready) and `hvm exit` (the whole VM's end).

use std::time::{Duration, Instant};

use abi::{HrtState, Op};

use crate::cli::Request;
use crate::error::Error;
use crate::hcall::Port;
use crate::info::{query, status_line};

/// How long to sleep between two HRT_STATUS polls.
const POLL: Duration = Duration::from_micros(100);

/// Makes the request, then (unless `wait` is zero) waits until the HRT says it is ready: success
/// prints `ready_after_us=N` and the status line; Exited, Faulted or a timeout is an error.
pub fn run(port: &Port, request: &Request, wait: Duration) -> Result<(), Error> {
    let image = match request {
        Request::Replace(path) => {
            let io = |e: std::io::Error| Error::failed(format!("{}: {e}", path.display()));
            let len = std::fs::metadata(path).map_err(io)?.len();
            if len > abi::MAX_IMAGE_LEN {
                return Err(Error::failed(format!(
                    "{}: {len} bytes, more than HRT_REPLACE takes ({} MiB)",
                    path.display(),
                    abi::MAX_IMAGE_LEN >> 20
                )));
            }
            Some(std::fs::read(path).map_err(io)?)
        }
        _ => None,
    };
    // The VMM may not reset the state at once (a reboot of a Ready or Exited HRT): a state counts
    // once the boot count went up or the HRT was seen booting since the request.
    let before = query(port)?;
    let (boots_before, state_before) = (before.rdx, HrtState::from_raw(before.rbx));
    let ended = |s: Option<HrtState>| matches!(s, Some(HrtState::Exited | HrtState::Faulted));
    let mut seen_booting = false;
    let start = Instant::now();
    match (request, &image) {
        (Request::Boot, _) => port.call(Op::HrtBoot, [0; 5])?,
        (Request::Reboot, _) => port.call(Op::HrtReboot, [0; 5])?,
        (Request::Replace(_), Some(data)) => port.replace(data)?,
        (Request::Replace(_), None) => return Err(Error::failed("internal: no image")),
    };
    if wait.is_zero() {
        out!("{}", status_line(&query(port)?));
        return Ok(());
    }
    let deadline = start + wait;
    loop {
        let r = query(port)?;
        let elapsed = start.elapsed();
        let state = HrtState::from_raw(r.rbx);
        seen_booting |= matches!(state, Some(HrtState::Booting | HrtState::NotBooted));
        let fresh = r.rdx > boots_before || seen_booting;
        if state == Some(HrtState::Ready) && fresh {
            out!("ready_after_us={}", elapsed.as_micros());
            out!("{}", status_line(&r));
            return Ok(());
        }
        if ended(state) && (fresh || !ended(state_before)) {
            return Err(Error::failed(format!("HRT did not become ready: {}", status_line(&r))));
        }
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "HRT not ready after {:.1} s: {} (boots before: {boots_before})",
                wait.as_secs_f64(),
                status_line(&r)
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// `hvm exit STATUS`: returns only if the VM did not end.
pub fn exit(port: &Port, status: u64) -> Result<(), Error> {
    port.call(Op::Exit, [status, 0, 0, 0, 0])?;
    Err(Error::failed("EXIT returned: the VM is still running"))
}
