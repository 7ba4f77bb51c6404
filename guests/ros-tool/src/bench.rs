//! `hvm bench`: latency loops timed with the TSC.
//!
//! - `null`: a VERSION hypercall round trip.
//! - `exit`: an `out` to an unclaimed port: the bare user-space VM exit, the baseline for `null`.
//! - `invoke`: a sync invoke of HRT function 0 (echo) on one core, until its completion record says so.
//! - `pingpong`: HRT function 8 runs on one core against a 128-byte buffer of ours (by guest-physical
//!   address); a round is our `ping = i` until the HRT's `pong == i`.
//! - `invoke-poll`: HRT function 11 (the polled invoke channel) runs on one core against a locked
//!   page of ours (by guest-physical address); a round is an echo(i) request written to the request
//!   line until the response line says `seq == i`: a sync invoke without a VM exit.
//! - `hrt-null`: HRT function 10 makes up to 511 VERSION hypercalls per invoke from its ring 0 and
//!   writes the cycles of each into a locked page of ours (by guest-physical address); the samples
//!   are the HRT's own counts (the TSCs of both partitions agree).
//! - `invoke-async`: an echo invoke without a completion record, then INVOKE_RESULT until the core's
//!   done sequence number is the invoke's.
//! - `reboot`: HRT_REBOOT, then HRT_STATUS until the HRT is ready again (fails if it exits or
//!   faults).
//! - `doorbell`: as `pingpong`, with HRT function 23, which sleeps (`hlt`) until its core's HRT
//!   doorbell rings: a round is `ping = i`, a ring, and `pong == i`.
//! - `io`: the forwarding benchmark's I/O workloads natively (fwdbench.rs).
//!
//! Each is bracketed by two debug-port marks (a `bench-phase=` line), so the host can count the VM
//! exits per round from KVM's statistics.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abi::{func, HrtState, Op};
use benchline::Summary;

use crate::cli::{BenchArgs, BenchKind, DEFAULT_WAIT, HRT_NULL_PER_INVOKE};
use crate::completion::{cells, spin_until};
use crate::error::Error;
use crate::hcall::Port;
use crate::info::{query, status_line};
use crate::phase::Phase;
use crate::sys::{guest_physical, mlock};
use crate::tsc::{rdtsc, tsc_khz};

/// How long one round (or the final collection) may take before the bench gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// The channel's stop request.
const CHANNEL_STOP: u64 = u64::MAX;
/// How often (in polls) a polling loop looks at the clock for its deadline.
const CLOCK_EVERY: u32 = 64;

/// HRT function 10's buffer: `n` in word 0, the cycles of call i in word 1 + i. One page,
/// page-aligned, so that its guest-physical address covers all of it.
#[repr(C, align(4096))]
struct HcallPage([AtomicU64; 1 + HRT_NULL_PER_INVOKE]);

const _: () = assert!(core::mem::size_of::<HcallPage>() == 4096);

/// The ping-pong region: `ping` at +0, `pong` at +64, 128-byte aligned (so inside one page).
#[derive(Default)]
#[repr(C, align(128))]
struct PingPong {
    ping: AtomicU64,
    _pad0: [u64; 7],
    pong: AtomicU64,
    _pad1: [u64; 7],
}

const _: () = {
    assert!(core::mem::offset_of!(PingPong, pong) == 64);
    assert!(core::mem::size_of::<PingPong>() == 128);
};

/// HRT function 11's region at the start of a locked page: the request line `{seq, func, arg}` at
/// +0, the response line `{seq, result}` at +64. Page-aligned, so that its guest-physical address
/// covers all of it.
#[repr(C, align(4096))]
struct ChannelPage {
    req_seq: AtomicU64,
    req_func: AtomicU64,
    req_arg: AtomicU64,
    _pad0: [u64; 5],
    resp_seq: AtomicU64,
    resp_result: AtomicU64,
    _pad1: [u64; 6 + 7 * 8],
}

const _: () = {
    assert!(core::mem::offset_of!(ChannelPage, req_func) == 8);
    assert!(core::mem::offset_of!(ChannelPage, req_arg) == 16);
    assert!(core::mem::offset_of!(ChannelPage, resp_seq) == 64);
    assert!(core::mem::offset_of!(ChannelPage, resp_result) == 72);
    assert!(core::mem::size_of::<ChannelPage>() == 4096);
};

impl ChannelPage {
    /// Posts request `seq`: func and arg first, then seq (release).
    #[inline(always)]
    fn post(&self, seq: u64, func: u64, arg: u64) {
        self.req_func.store(func, Ordering::Relaxed);
        self.req_arg.store(arg, Ordering::Relaxed);
        self.req_seq.store(seq, Ordering::Release);
    }
}

/// Runs `round(i)` for i in 1..=warmup+iters, keeping the cycle counts of the last `iters` (a
/// round times itself: it returns its own cycles).
fn rounds(b: &BenchArgs, mut round: impl FnMut(u64) -> Result<u64, Error>) -> Result<Vec<u64>, Error> {
    let mut samples = Vec::new();
    samples.try_reserve_exact(b.iters).map_err(|_| Error::failed(format!("no memory for {} samples", b.iters)))?;
    let total = b.warmup.saturating_add(b.iters) as u64;
    for i in 1..=total {
        let cycles = round(i)?;
        if i > b.warmup as u64 {
            samples.push(cycles);
        }
    }
    Ok(samples)
}

/// `hvm bench KIND`, bracketed by two marks (the `bench-phase=` line: VM exits per round).
pub fn run(port: &Port, b: &BenchArgs) -> Result<(), Error> {
    if b.kind == BenchKind::Io {
        return crate::fwdbench::native_io(port, b.iters, b.warmup);
    }
    let phase = Phase::begin(port);
    let r = run_kind(port, b);
    let line = phase.end(b.kind.name(), b.warmup.saturating_add(b.iters) as u64);
    if r.is_ok() {
        out!("{line}");
    }
    r
}

fn run_kind(port: &Port, b: &BenchArgs) -> Result<(), Error> {
    let khz = tsc_khz(port);
    let mut samples = match b.kind {
        BenchKind::Null => rounds(b, |_| {
            let t0 = rdtsc();
            let r = port.call(Op::Version, [0; 5]);
            let t1 = rdtsc();
            r.map(|_| t1.wrapping_sub(t0))
        })?,
        BenchKind::Exit => rounds(b, |_| {
            let t0 = rdtsc();
            let r = port.bench_exit();
            let t1 = rdtsc();
            r.map(|()| t1.wrapping_sub(t0))
        })?,
        BenchKind::Getpid => rounds(b, |_| {
            let t0 = rdtsc();
            // SAFETY: getpid has no arguments and no effect.
            let r = unsafe { libc::syscall(libc::SYS_getpid) };
            let t1 = rdtsc();
            if r <= 0 {
                return Err(Error::failed("getpid failed"));
            }
            Ok(t1.wrapping_sub(t0))
        })?,
        BenchKind::Invoke => invoke(port, b)?,
        BenchKind::PingPong => return pingpong(port, b, khz, false),
        BenchKind::Doorbell => return pingpong(port, b, khz, true),
        BenchKind::Io => return Err(Error::failed("internal: bench io is not a single loop")),
        BenchKind::InvokePoll => return invoke_poll(port, b, khz),
        BenchKind::HrtNull => hrt_null(port, b)?,
        BenchKind::InvokeAsync => invoke_async(port, b)?,
        BenchKind::Reboot => return reboot(port, b, khz),
    };
    print_summary(b.kind.name(), khz, &mut samples)?;
    Ok(())
}

/// Prints the `bench=` line of `samples` (sorted in place) as `name`; fails if there are none.
fn print_summary(name: &str, khz: u64, samples: &mut [u64]) -> Result<(), Error> {
    let summary = Summary::of(samples).ok_or_else(|| Error::failed("no samples"))?;
    out!("{}", summary.line(name, khz));
    Ok(())
}

/// Sync invokes of echo(i) on `b.core`, each checked.
fn invoke(port: &Port, b: &BenchArgs) -> Result<Vec<u64>, Error> {
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    rounds(b, |i| {
        cell.seq.store(0, Ordering::Relaxed);
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let t0 = rdtsc();
        let seq = port.invoke(func::ECHO, i, b.core, 0, Some(&record))?;
        let done = spin_until(cell, deadline, |s| s == seq);
        let t1 = rdtsc();
        if let Err(seen) = done {
            return Err(Error::failed(format!(
                "no result after {} s from core {} (invoke seq {seq}, completion seq {seen})",
                ROUND_TIMEOUT.as_secs(),
                b.core
            )));
        }
        let result = cell.result.load(Ordering::Acquire);
        if result != i {
            return Err(Error::failed(format!("echo({i}) on core {} returned {result}", b.core)));
        }
        Ok(t1.wrapping_sub(t0))
    })
}

/// Ping-pong rounds with HRT function 8, then its completion (the number of rounds it saw). With
/// `doorbell`, function 23, which sleeps between rounds: each round rings the core's doorbell.
fn pingpong(port: &Port, b: &BenchArgs, khz: u64, doorbell: bool) -> Result<(), Error> {
    let (function, kind) = if doorbell { (func::DOORBELL_PONG, BenchKind::Doorbell) } else { (func::PING_PONG, BenchKind::PingPong) };
    let core = u32::try_from(b.core).map_err(|_| Error::usage("--core: too large"))?;
    let region = Box::new(PingPong::default());
    let gpa = guest_physical(&*region as *const PingPong as usize)?;
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    let seq = port.invoke(function, gpa, b.core, 0, Some(&record))?;
    let timed = rounds(b, |i| {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let t0 = rdtsc();
        region.ping.store(i, Ordering::Release);
        if doorbell {
            port.ring_hrt(core);
        }
        let mut spins = 0u32;
        while region.pong.load(Ordering::Acquire) != i {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) && Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "no pong after {} s in round {i} (pong={}; buffer at guest-physical {gpa:#x}, core {})",
                    ROUND_TIMEOUT.as_secs(),
                    region.pong.load(Ordering::Acquire),
                    b.core
                )));
            }
            spin_loop();
        }
        Ok(rdtsc().wrapping_sub(t0))
    });
    // Always tell the HRT to stop, even after a failed round.
    region.ping.store(u64::MAX, Ordering::Release);
    if doorbell {
        port.ring_hrt(core);
    }
    let collected = spin_until(cell, Instant::now() + ROUND_TIMEOUT, |s| s == seq);
    let mut samples = timed?;
    if let Err(seen) = collected {
        return Err(Error::failed(format!(
            "ping-pong on core {} did not finish (invoke seq {seq}, completion seq {seen})",
            b.core
        )));
    }
    print_summary(kind.name(), khz, &mut samples)?;
    let hrt_rounds = cell.result.load(Ordering::Acquire);
    let ours = b.warmup.saturating_add(b.iters) as u64;
    out!("{}.rounds={hrt_rounds} expected={ours} gpa={gpa:#x}", kind.name());
    if hrt_rounds != ours {
        return Err(Error::failed(format!("the HRT counted {hrt_rounds} rounds, we made {ours}")));
    }
    Ok(())
}

/// Echo requests through HRT function 11's channel on `b.core`, each checked; then the stop
/// request and the channel's completion (the number of requests it served).
fn invoke_poll(port: &Port, b: &BenchArgs, khz: u64) -> Result<(), Error> {
    let page = Box::new(ChannelPage {
        req_seq: AtomicU64::new(0),
        req_func: AtomicU64::new(0),
        req_arg: AtomicU64::new(0),
        _pad0: [0; 5],
        resp_seq: AtomicU64::new(0),
        resp_result: AtomicU64::new(0),
        _pad1: [0; 6 + 7 * 8],
    });
    let addr = &*page as *const ChannelPage as usize;
    mlock(addr, core::mem::size_of::<ChannelPage>())?;
    let gpa = guest_physical(addr)?;
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    let seq = port.invoke(func::CHANNEL, gpa, b.core, 0, Some(&record))?;
    let timed = rounds(b, |i| {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let t0 = rdtsc();
        page.post(i, func::ECHO, i);
        let mut spins = 0u32;
        while page.resp_seq.load(Ordering::Acquire) != i {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                // The channel ended (it refused the region, or the HRT was rebooted): no answer comes.
                if cell.seq.load(Ordering::Acquire) == seq {
                    return Err(Error::failed(format!(
                        "HRT function 11 on core {} ended in round {i} with result {:#x} (region at guest-physical {gpa:#x})",
                        b.core,
                        cell.result.load(Ordering::Acquire)
                    )));
                }
                if Instant::now() >= deadline {
                    return Err(Error::failed(format!(
                        "no response after {} s in round {i} (response seq {}; region at guest-physical {gpa:#x}, core {})",
                        ROUND_TIMEOUT.as_secs(),
                        page.resp_seq.load(Ordering::Acquire),
                        b.core
                    )));
                }
            }
            spin_loop();
        }
        let t1 = rdtsc();
        let result = page.resp_result.load(Ordering::Relaxed);
        if result != i {
            return Err(Error::failed(format!("channel echo({i}) on core {} returned {result}", b.core)));
        }
        Ok(t1.wrapping_sub(t0))
    });
    // Always stop the channel, even after a failed round: a sequence number it has not seen.
    let ours = b.warmup.saturating_add(b.iters) as u64;
    page.post(ours.wrapping_add(1), CHANNEL_STOP, 0);
    let collected = spin_until(cell, Instant::now() + ROUND_TIMEOUT, |s| s == seq);
    let mut samples = timed?;
    if let Err(seen) = collected {
        return Err(Error::failed(format!(
            "the channel on core {} did not stop (invoke seq {seq}, completion seq {seen})",
            b.core
        )));
    }
    print_summary(BenchKind::InvokePoll.name(), khz, &mut samples)?;
    let served = cell.result.load(Ordering::Acquire);
    out!("invoke-poll.served={served} expected={ours} gpa={gpa:#x}");
    if served != ours {
        return Err(Error::failed(format!("the HRT served {served} requests, we made {ours}")));
    }
    Ok(())
}

/// `b.warmup` then `b.iters` samples from HRT function 10, in invokes of at most
/// [`HRT_NULL_PER_INVOKE`] calls (the warm-up in invokes of its own); returns the timed ones.
fn hrt_null(port: &Port, b: &BenchArgs) -> Result<Vec<u64>, Error> {
    let page = Box::new(HcallPage(std::array::from_fn(|_| AtomicU64::new(0))));
    let addr = &*page as *const HcallPage as usize;
    mlock(addr, core::mem::size_of::<HcallPage>())?;
    let gpa = guest_physical(addr)?;
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    // One invoke of `n` calls; the samples go to `keep` (none: warm-up).
    let batch = |n: usize, keep: Option<&mut Vec<u64>>| -> Result<(), Error> {
        page.0[0].store(n as u64, Ordering::Relaxed);
        cell.seq.store(0, Ordering::Relaxed);
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let seq = port.invoke(func::HYPERCALL_BENCH, gpa, b.core, 0, Some(&record))?;
        if let Err(seen) = spin_until(cell, deadline, |s| s == seq) {
            return Err(Error::failed(format!(
                "no result after {} s from core {} (function 10, n={n}, invoke seq {seq}, completion seq {seen})",
                ROUND_TIMEOUT.as_secs(),
                b.core
            )));
        }
        match cell.result.load(Ordering::Acquire) {
            r if r == n as u64 => {}
            u64::MAX => {
                return Err(Error::failed(format!(
                    "HRT function 10 on core {} refused the buffer at guest-physical {gpa:#x} (n={n})",
                    b.core
                )))
            }
            r => return Err(Error::failed(format!("HRT function 10 on core {} made {r} of {n} hypercalls", b.core))),
        }
        if let Some(keep) = keep {
            keep.extend(page.0.iter().skip(1).take(n).map(|c| c.load(Ordering::Relaxed)));
        }
        Ok(())
    };
    let mut left = b.warmup;
    while left > 0 {
        let n = left.min(HRT_NULL_PER_INVOKE);
        batch(n, None)?;
        left -= n;
    }
    let mut samples = Vec::new();
    samples.try_reserve_exact(b.iters).map_err(|_| Error::failed(format!("no memory for {} samples", b.iters)))?;
    while samples.len() < b.iters {
        let n = (b.iters - samples.len()).min(HRT_NULL_PER_INVOKE);
        batch(n, Some(&mut samples))?;
    }
    Ok(samples)
}

/// Echo invokes of i on `b.core` without a completion record (RDI = 0), each polled with
/// INVOKE_RESULT until the core's done sequence number (RCX) is the invoke's; checked.
fn invoke_async(port: &Port, b: &BenchArgs) -> Result<Vec<u64>, Error> {
    let mut polls = 0u64;
    let timed = rounds(b, |i| {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let mut n = 0u32;
        let t0 = rdtsc();
        let seq = port.invoke(func::ECHO, i, b.core, 0, None)?;
        let r = loop {
            let r = port.call(Op::InvokeResult, [b.core, 0, 0, 0, 0])?;
            n = n.wrapping_add(1);
            if r.rcx == seq {
                break r;
            }
            if n.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "no result after {} s from core {} (invoke seq {seq}, done seq {})",
                    ROUND_TIMEOUT.as_secs(),
                    b.core,
                    r.rcx
                )));
            }
        };
        let t1 = rdtsc();
        if r.rbx != i {
            return Err(Error::failed(format!("echo({i}) on core {} returned {}", b.core, r.rbx)));
        }
        if i > b.warmup as u64 {
            polls = polls.saturating_add(u64::from(n));
        }
        Ok(t1.wrapping_sub(t0))
    })?;
    out!("invoke-async.polls={polls} rounds={}", timed.len());
    Ok(timed)
}

/// HRT_REBOOT, then HRT_STATUS (as fast as it answers) until the HRT is ready after a boot newer
/// than the request; an exited or faulted HRT fails the bench. After each round (untimed) a sync
/// echo invoke on core 0 checks that the new HRT serves invokes. (A reboot that lands while the HRT
/// is still printing after HRT_READY must also work; duet's snippet tests reboot back to back for
/// that.) Then the status line.
fn reboot(port: &Port, b: &BenchArgs, khz: u64) -> Result<(), Error> {
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    let settle = |i: u64| -> Result<(), Error> {
        cell.seq.store(0, Ordering::Relaxed);
        let seq = port.invoke(func::ECHO, i, 0, 0, Some(&record))?;
        if let Err(seen) = spin_until(cell, Instant::now() + ROUND_TIMEOUT, |s| s == seq) {
            return Err(Error::failed(format!(
                "reboot {i}: no echo from core 0 after {} s (invoke seq {seq}, completion seq {seen}): {}",
                ROUND_TIMEOUT.as_secs(),
                status_line(&query(port)?)
            )));
        }
        match cell.result.load(Ordering::Acquire) {
            r if r == i => Ok(()),
            r => Err(Error::failed(format!("reboot {i}: echo({i}) on core 0 returned {r}"))),
        }
    };
    let mut samples = rounds(b, |i| {
        let boots_before = query(port)?.rdx;
        let deadline = Instant::now() + DEFAULT_WAIT;
        let mut n = 0u32;
        let t0 = rdtsc();
        port.call(Op::HrtReboot, [0; 5])?;
        loop {
            let r = query(port)?;
            match HrtState::from_raw(r.rbx) {
                // The request sets Booting at once; Ready counts after a boot newer than it.
                Some(HrtState::Ready) if r.rdx > boots_before => {
                    let cycles = rdtsc().wrapping_sub(t0);
                    settle(i)?;
                    return Ok(cycles);
                }
                Some(HrtState::Exited | HrtState::Faulted) => {
                    return Err(Error::failed(format!("reboot {i}: HRT did not become ready: {}", status_line(&r))))
                }
                _ => {}
            }
            n = n.wrapping_add(1);
            if n.is_multiple_of(CLOCK_EVERY) && Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "reboot {i}: HRT not ready after {} s: {} (boots before: {boots_before})",
                    DEFAULT_WAIT.as_secs(),
                    status_line(&r)
                )));
            }
            spin_loop();
        }
    })?;
    print_summary(BenchKind::Reboot.name(), khz, &mut samples)?;
    let r = query(port)?;
    out!("{}", status_line(&r));
    if matches!(HrtState::from_raw(r.rbx), Some(HrtState::Exited | HrtState::Faulted)) {
        return Err(Error::failed(format!("the HRT ended up {}", status_line(&r))));
    }
    Ok(())
}
