//! What duet's HRT forwarding functions (14, 15, 17, 18, 22: docs/forwarding.md §7) answer instead
//! of a result, `u64::MAX - k`, in words.

use crate::error::Error;

/// What functions 14 and 18 answer when a forwarded call's answer was corrupt (fwd.rs).
pub const FORWARD_CORRUPT: u64 = u64::MAX - 7;

/// Why, if `result` is one of the answers the forwarding functions give instead of a result.
pub fn hrt_error(result: u64) -> Option<&'static str> {
    Some(match u64::MAX - result {
        0 => "unknown function (an HRT without forwarding?)",
        1 => "the channel is not mapped on the HRT",
        2 => "the HRT refused the channel",
        3 => "the HRT timed out waiting for the proxy",
        4 => "a forwarded call failed",
        5 => "a forwarded call answered something else than it must",
        6 => "no channel attached on that core",
        7 => "the channel was found corrupt",
        8 => "the merged memory went away under the call",
        _ => return None,
    })
}

/// `result`, unless it is one of the forwarding functions' error answers: then the failure
/// `forward-test WHAT: the HRT answered 0x..: WHY`.
pub fn check(what: &str, result: u64) -> Result<u64, Error> {
    match hrt_error(result) {
        Some(why) => Err(Error::failed(format!("forward-test {what}: the HRT answered {result:#x}: {why}"))),
        None => Ok(result),
    }
}
