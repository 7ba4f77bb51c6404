//! Syscall forwarding on the HRT side (docs/forwarding.md): one channel (`forwarder`) per
//! core, in the merged process's memory, attached by invoke function 15; [`forward`] submits a
//! call and waits for the proxy's answer the way the channel's mode says; the invoke functions
//! that use it (14 getpid, 15 attach, 16 detach, 18 stress, 19 corruption on purpose, 22 timed;
//! split execution, 17, which forwards its system calls and page faults here, is split.rs).
//!
//! Each core touches only its own entry of the per-core state, from its invoke functions and its
//! traps, so no lock is needed.

use forwarder::layout::{self, MODE_ADAPTIVE, MODE_POLL};
use forwarder::{Channel, Producer};

use crate::boot::MAX_APS;
use crate::merge::{self, user_read_u64, user_region_mapped, user_write_u64};
use crate::tsc::{rdtsc, rdtsc_fenced, tsc_per_ms};
use crate::{cpu, partition, port};

const CORES: usize = MAX_APS + 1;
/// How long a poll-mode call waits for the proxy before the channel is given up (milliseconds).
const POLL_TIMEOUT_MS: u64 = 30_000;
/// Looks between two reads of the TSC while polling (a `rdtsc` is emulated on PVM hosts).
const POLLS_PER_CLOCK_READ: u64 = 256;

/// Linux x86-64 `getpid` and `lseek`.
const SYS_GETPID: u32 = 39;
const SYS_LSEEK: u32 = 8;

/// Function 14's and 18's errors (and 15's): a page of the channel is not mapped writable to ROS RAM ...
pub const FORWARD_NOT_MAPPED: u64 = abi::func::NOT_MAPPED;
/// ... the channel region was refused (header, counters, mode) ...
pub const FORWARD_ATTACH_FAILED: u64 = u64::MAX - 2;
/// ... the proxy did not answer in time ...
pub const FORWARD_TIMED_OUT: u64 = u64::MAX - 3;
/// ... a call failed otherwise (corruption, a negative result, no channel) ...
pub const FORWARD_CALL_FAILED: u64 = u64::MAX - 4;
/// ... or results were not what the call must answer.
pub const FORWARD_RESULTS_DIFFER: u64 = u64::MAX - 5;
/// ... no channel is attached on this core.
pub const FORWARD_NO_CHANNEL: u64 = u64::MAX - 6;
/// ... the proxy found the channel corrupt, or the HRT did (a corrupt response) ...
pub const FORWARD_CORRUPT: u64 = u64::MAX - 7;
/// ... or the merged process's memory went away under the call (a ring-0 page fault, abandoned).
pub const FORWARD_GONE: u64 = u64::MAX - 8;

/// Why [`forward`] failed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FwdError {
    /// No channel attached on this core (or its process is no longer merged).
    NoChannel,
    /// The channel failed: corruption seen by either side, or no answer in time. Detached.
    Failed(forwarder::Error),
}

struct CoreFwd {
    producer: Option<Producer>,
    /// The channel's user address and slot count (function 19 corrupts it on purpose).
    base: u64,
    slots: u32,
    mode: u32,
    spin_cycles: u64,
    /// The merge generation the channel was attached under.
    generation: u32,
}

static mut FWD: [CoreFwd; CORES] = [const {
    CoreFwd { producer: None, base: 0, slots: 0, mode: MODE_POLL, spin_cycles: 0, generation: 0 }
}; CORES];

fn state(core: u32) -> Option<&'static mut CoreFwd> {
    // SAFETY: only core `core` calls this for its own entry (module docs).
    unsafe { (*core::ptr::addr_of_mut!(FWD)).get_mut(core as usize) }
}

fn tsc_khz() -> u64 {
    match partition::get().info.tsc_khz {
        0 => tsc_per_ms(),
        khz => khz,
    }
}

/// Rings the ROS doorbell for `core` (duet puts the index into the ROS's doorbell UART).
fn ring_ros(core: u32) {
    port::outl(abi::ROS_DOORBELL_PORT, core);
}

/// Forwards `nr(args)` on `core`'s channel and waits for the answer (poll: spin; notify: sleep at
/// once; adaptive: spin `spin_us`, then sleep), ringing the proxy's doorbell if it sleeps.
pub fn forward(core: u32, nr: u32, args: [u64; 6]) -> Result<i64, FwdError> {
    let st = state(core).ok_or(FwdError::NoChannel)?;
    if st.generation != merge::generation() {
        st.producer = None;
    }
    let (mode, spin_cycles) = (st.mode, st.spin_cycles);
    let Some(p) = st.producer.as_mut() else { return Err(FwdError::NoChannel) };
    match call(p, core, mode, spin_cycles, nr, args) {
        Ok(r) => Ok(r),
        Err(e) => {
            // A failed or abandoned channel is not used again; the proxy sees FLAG_FAILED
            // (corruption) or no more requests.
            st.producer = None;
            Err(FwdError::Failed(e))
        }
    }
}

/// How a core waits for its next response, as the channel's mode says: poll spins (and gives up
/// after [`POLL_TIMEOUT_MS`]), notify sleeps at once, adaptive spins `spin_cycles`, then sleeps.
/// One [`Waiter::step`] per look that found nothing; [`Waiter::progress`] after one that did.
struct Waiter {
    mode: u32,
    spin_cycles: u64,
    polls: u64,
    since: u64,
}

impl Waiter {
    fn new(mode: u32, spin_cycles: u64) -> Waiter {
        Waiter { mode, spin_cycles, polls: 0, since: 0 }
    }

    fn progress(&mut self) {
        self.polls = 0;
    }

    fn step(&mut self, p: &Producer) -> Result<(), forwarder::Error> {
        self.polls += 1;
        if self.polls == 1 {
            self.since = rdtsc();
        }
        if self.mode == MODE_POLL {
            core::hint::spin_loop();
            if self.polls.is_multiple_of(POLLS_PER_CLOCK_READ) && rdtsc().wrapping_sub(self.since) > POLL_TIMEOUT_MS * tsc_khz() {
                return Err(forwarder::Error::TimedOut);
            }
            return Ok(());
        }
        if self.mode == MODE_ADAPTIVE && rdtsc().wrapping_sub(self.since) < self.spin_cycles {
            core::hint::spin_loop();
            return Ok(());
        }
        p.set_sleeping(true);
        // One more look after the flag is visible: the proxy completes, fences, then reads it.
        if !p.response_ready() {
            // The HRT doorbell.
            cpu::wait_for_interrupt();
        }
        p.set_sleeping(false);
        Ok(())
    }
}

fn call(p: &mut Producer, core: u32, mode: u32, spin_cycles: u64, nr: u32, args: [u64; 6]) -> Result<i64, forwarder::Error> {
    if p.outstanding() != 0 || p.try_submit(nr, 0, args)?.is_none() {
        return Err(forwarder::Error::Busy);
    }
    if mode != MODE_POLL && p.peer_sleeping() {
        ring_ros(core);
    }
    let mut waiter = Waiter::new(mode, spin_cycles);
    loop {
        if let Some(r) = p.try_collect()? {
            return Ok(r.result);
        }
        waiter.step(p)?;
    }
}

/// After an invoke on `core` returns: if its channel is in a sleeping mode and the proxy sleeps,
/// ring the proxy, which may be waiting for this invoke's completion.
pub fn invoke_done(core: u32) {
    if let Some(st) = state(core) {
        if let Some(p) = st.producer.as_ref() {
            if st.mode != MODE_POLL && p.peer_sleeping() {
                ring_ros(core);
            }
        }
    }
}

/// Function 15, attach: `va` = user address (merged lower half) of a channel the proxy formatted
/// for this core. Every page walked, the header checked, the producer resumed. Returns 0 or a
/// `FORWARD_*` error.
pub fn attach(core: u32, va: u64) -> u64 {
    let Some(st) = state(core) else { return FORWARD_ATTACH_FAILED };
    st.producer = None;
    if !merge::merged() {
        return FORWARD_NOT_MAPPED;
    }
    if !va.is_multiple_of(64) || !user_region_mapped(va, layout::REQUESTS as u64) {
        return FORWARD_NOT_MAPPED;
    }
    // The slot count as the header says now; from_raw reads it again and checks it against the
    // length, so a peer that changes it in between gets BadSlotCount or RegionTooSmall.
    let Some(word) = user_read_u64(va + layout::HEADER_VERSION as u64) else { return FORWARD_NOT_MAPPED };
    let slots = (word >> 32) as u32;
    if !layout::slot_count_ok(slots) {
        return FORWARD_ATTACH_FAILED;
    }
    let len = layout::region_len(slots);
    if !user_region_mapped(va, len as u64) {
        return FORWARD_NOT_MAPPED;
    }
    // The proxy may have put this channel where an earlier one was, on other pages: the walk
    // above read the tables, the accesses below go through the TLB.
    merge::flush_range(va, len as u64);
    // SAFETY: every page of the region is mapped (merged lower half) and stays so while the
    // process is merged and serving (the proxy locks it); the view is dropped when the merge
    // generation changes.
    let Ok(channel) = (unsafe { Channel::from_raw(va as *mut u8, len) }) else { return FORWARD_ATTACH_FAILED };
    let Ok((mode, spin_us)) = channel.mode() else { return FORWARD_ATTACH_FAILED };
    let Ok(producer) = channel.producer() else { return FORWARD_ATTACH_FAILED };
    *st = CoreFwd {
        producer: Some(producer),
        base: va,
        slots,
        mode,
        spin_cycles: u64::from(spin_us) * tsc_khz() / 1000,
        generation: merge::generation(),
    };
    0
}

/// Whether `core` has a channel attached under the current merge.
pub fn attached(core: u32) -> bool {
    state(core).is_some_and(|st| st.producer.is_some() && st.generation == merge::generation())
}

/// Function 16, detach. Returns 0.
pub fn detach(core: u32) -> u64 {
    if let Some(st) = state(core) {
        st.producer = None;
    }
    0
}

/// Maps a forward error to a function result.
fn code(e: FwdError) -> u64 {
    match e {
        FwdError::NoChannel => FORWARD_NO_CHANNEL,
        FwdError::Failed(forwarder::Error::TimedOut) => FORWARD_TIMED_OUT,
        FwdError::Failed(e) if e.is_corruption() => FORWARD_CORRUPT,
        FwdError::Failed(_) => FORWARD_CALL_FAILED,
    }
}

/// Function 14: forwards `getpid` `n` times (0: 1000); every answer must be the same pid, which
/// it returns.
pub fn getpid(core: u32, n: u64) -> u64 {
    let n = if n == 0 { 1000 } else { n };
    let mut pid = None;
    for _ in 0..n {
        let r = match forward(core, SYS_GETPID, [0; 6]) {
            Ok(r) if r >= 0 => r as u64,
            Ok(_) => return FORWARD_CALL_FAILED,
            Err(e) => return code(e),
        };
        match pid {
            None => pid = Some(r),
            Some(p) if p != r => return FORWARD_RESULTS_DIFFER,
            Some(_) => {}
        }
    }
    pid.unwrap_or(FORWARD_CALL_FAILED)
}

/// Requests function 18 keeps in flight per core (at most the channel's slots).
const STRESS_WINDOW: u32 = 16;

/// The request function 18 sends as its `i`-th, and the answer it must get.
fn stress_request(core: u32, fd1: u64, i: u64) -> (u32, [u64; 6], u64) {
    let number = (u64::from(core) << 40) | i;
    if fd1 == 0 {
        (layout::PSEUDO_ECHO, [number, u64::from(core), 0, 0, 0, 0], layout::echo_answer(number, u64::from(core)))
    } else {
        (SYS_LSEEK, [fd1 - 1, number, 0, 0, 0, 0], number)
    }
}

/// Function 18, stress: `arg` = (fd + 1) << 32 | n. Forwards `n` calls, pipelined (up to
/// [`STRESS_WINDOW`] in flight, so the ring fills and wraps), each with its own number
/// (core << 40 | i) and each answer checked in order: `lseek(fd, number, SEEK_SET)`, which answers
/// the number, or with fd + 1 = 0 the echo pseudo-call ([`layout::PSEUDO_ECHO`]), which answers
/// `echo_answer(number, core)`. Waits as the channel's mode says. Returns `n`.
pub fn stress(core: u32, arg: u64) -> u64 {
    let (fd1, n) = (arg >> 32, arg & 0xffff_ffff);
    let Some(st) = state(core) else { return FORWARD_NO_CHANNEL };
    if st.generation != merge::generation() {
        st.producer = None;
    }
    let (mode, spin_cycles) = (st.mode, st.spin_cycles);
    let window = u64::from(STRESS_WINDOW.min(st.slots));
    let Some(p) = st.producer.as_mut() else { return FORWARD_NO_CHANNEL };
    let outcome = pipeline(p, core, mode, spin_cycles, n, window, |i| stress_request(core, fd1, i));
    if outcome.is_err() {
        st.producer = None;
    }
    match outcome {
        Ok(r) => r,
        Err(e) => code(FwdError::Failed(e)),
    }
}

/// Submits requests 1..=n (`request(i)` = nr, args, expected answer) with up to `window` in flight
/// and collects them in order, checking each answer. `Ok(n)`, `Ok(FORWARD_RESULTS_DIFFER)`, or the
/// channel's error.
fn pipeline(
    p: &mut Producer,
    core: u32,
    mode: u32,
    spin_cycles: u64,
    n: u64,
    window: u64,
    request: impl Fn(u64) -> (u32, [u64; 6], u64),
) -> Result<u64, forwarder::Error> {
    let (mut next, mut done) = (1u64, 0u64);
    let mut waiter = Waiter::new(mode, spin_cycles);
    while done < n {
        let mut submitted = false;
        while next <= n && p.outstanding() < window {
            let (nr, args, _) = request(next);
            if p.try_submit(nr, 0, args)?.is_none() {
                break;
            }
            next += 1;
            submitted = true;
        }
        if submitted && mode != MODE_POLL && p.peer_sleeping() {
            ring_ros(core);
        }
        if let Some(r) = p.try_collect()? {
            done += 1;
            if r.result as u64 != request(done).2 {
                return Ok(FORWARD_RESULTS_DIFFER);
            }
            waiter.progress();
            continue;
        }
        waiter.step(p)?;
    }
    Ok(n)
}

/// Most samples function 22 takes per invoke.
const TIMED_MAX: u64 = 100_000;
/// Function 22's job: words before the samples.
const TIMED_HEADER_WORDS: u64 = 16;
/// "No companion call" in function 22's job.
const TIMED_NONE: u64 = u64::MAX;

/// One call of function 22's job: `nr` and four arguments, the five words at `va + 8 * at`.
fn timed_call(va: u64, at: u64) -> Option<(u64, [u64; 6])> {
    let w = |i: u64| user_read_u64(va + 8 * (at + i));
    Some((w(0)?, [w(1)?, w(2)?, w(3)?, w(4)?, 0, 0]))
}

/// Forwards one call of function 22's job; a negative answer is a failure.
fn timed_forward(core: u32, nr: u64, args: [u64; 6]) -> Result<i64, u64> {
    match forward(core, nr as u32, args) {
        Ok(r) if r >= 0 => Ok(r),
        Ok(_) => Err(FORWARD_CALL_FAILED),
        Err(e) => Err(code(e)),
    }
}

/// Function 22, timed: `va` = a user buffer (merged) holding a job of 16 words, then the samples:
/// `[n, nr, a0..a3, pre_nr, p0..p3, post_nr, q0..q3, samples[n]]`. Forwards `nr(a0..a3)` `n`
/// (1..=100000) times, timing each round trip on the HRT with the TSC (`lfence; rdtsc`), and writes
/// the cycles of call i to `samples[i]`. `pre_nr(p0..p3)` is forwarded, untimed, before each timed
/// call and `post_nr(q0..q3)` after it (u64::MAX: none); a pipe's read is timed with a write as
/// its `pre`, its write with a read as its `post`. For the echo pseudo-call the arguments are
/// `(i, core)` and every answer is checked; for system calls a negative answer is a failure.
/// Returns `n`, or an error as for 14.
pub fn timed(core: u32, va: u64) -> u64 {
    if !va.is_multiple_of(8) || !user_region_mapped(va, 8 * TIMED_HEADER_WORDS) {
        return FORWARD_NOT_MAPPED;
    }
    let (Some(n), Some((nr, args)), Some((pre, pre_args)), Some((post, post_args))) =
        (user_read_u64(va), timed_call(va, 1), timed_call(va, 6), timed_call(va, 11))
    else {
        return FORWARD_NOT_MAPPED;
    };
    if !(1..=TIMED_MAX).contains(&n)
        || [nr, pre, post].iter().any(|&c| c != TIMED_NONE && c > u64::from(u32::MAX))
        || nr == TIMED_NONE
        || !user_region_mapped(va, 8 * (TIMED_HEADER_WORDS + n))
    {
        return FORWARD_NOT_MAPPED;
    }
    let echo = nr as u32 == layout::PSEUDO_ECHO;
    for i in 0..n {
        if pre != TIMED_NONE {
            if let Err(e) = timed_forward(core, pre, pre_args) {
                return e;
            }
        }
        let args = if echo { [i, u64::from(core), 0, 0, 0, 0] } else { args };
        let t0 = rdtsc_fenced();
        let r = forward(core, nr as u32, args);
        let t1 = rdtsc_fenced();
        match r {
            Ok(r) if echo && r as u64 != layout::echo_answer(i, u64::from(core)) => return FORWARD_RESULTS_DIFFER,
            Ok(r) if !echo && r < 0 => return FORWARD_CALL_FAILED,
            Ok(_) => {}
            Err(e) => return code(e),
        }
        if post != TIMED_NONE {
            if let Err(e) = timed_forward(core, post, post_args) {
                return e;
            }
        }
        user_write_u64(va + 8 * (TIMED_HEADER_WORDS + i), t1.wrapping_sub(t0));
    }
    n
}

/// Function 19, corrupt on purpose: writes a request whose sequence number is neither the next
/// one nor its slot's previous one into the next request slot, then detaches. The proxy must
/// detect it and fail the channel. Returns 0, or [`FORWARD_NO_CHANNEL`].
pub fn corrupt(core: u32) -> u64 {
    let Some(st) = state(core) else { return FORWARD_NO_CHANNEL };
    let Some(p) = st.producer.take() else { return FORWARD_NO_CHANNEL };
    let seq = p.submitted() + 1;
    let index = seq & u64::from(st.slots - 1);
    let slot = st.base + layout::REQUESTS as u64 + index * layout::CACHE_LINE as u64;
    let bogus = seq + 2 * u64::from(st.slots) + 1;
    if !user_write_u64(slot + layout::RECORD_SEQ as u64, bogus) {
        return FORWARD_NOT_MAPPED;
    }
    0
}
