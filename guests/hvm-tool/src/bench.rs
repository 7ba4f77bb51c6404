//! `hvm bench`: latency loops timed with the TSC.
//!
//! - `null`: a VERSION hypercall round trip.
//! - `exit`: an `out` to an unclaimed port: the bare user-space VM exit, the baseline for `null`.
//! - `invoke`: a sync invoke of HRT function 0 (echo) on one core, until its completion record says so.
//! - `pingpong`: HRT function 8 runs on one core against a 128-byte buffer of ours (by guest-physical
//!   address); a round is our `ping = i` until the HRT's `pong == i`.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hvm_abi::Op;

use crate::cli::{BenchArgs, BenchKind};
use crate::hcall::Port;
use crate::invoke::{cells, spin_until};
use crate::stats::summarize;
use crate::sys::{calibrate_tsc_khz, guest_physical, rdtsc};
use crate::Error;

/// How long one round (or the final collection) may take before the bench gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// HRT function 0: echo.
const FUNC_ECHO: u64 = 0;
/// HRT function 8: ping-pong.
const FUNC_PINGPONG: u64 = 8;

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

/// The TSC frequency: PARTITION_INFO's if the VMM knows it, else measured.
fn tsc_khz(port: &Port) -> u64 {
    match port.partition_info() {
        Ok(i) if i.tsc_khz != 0 => i.tsc_khz,
        _ => calibrate_tsc_khz(),
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

/// `hvm bench KIND`.
pub fn run(port: &Port, b: &BenchArgs) -> Result<(), Error> {
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
        BenchKind::Invoke => invoke(port, b)?,
        BenchKind::PingPong => return pingpong(port, b, khz),
    };
    let summary = summarize(&mut samples).ok_or_else(|| Error::failed("no samples"))?;
    out!("{}", summary.line(b.kind.name(), khz));
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
        let seq = port.invoke(FUNC_ECHO, i, b.core, 0, Some(&record))?;
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

/// Ping-pong rounds with HRT function 8, then its completion (the number of rounds it saw).
fn pingpong(port: &Port, b: &BenchArgs, khz: u64) -> Result<(), Error> {
    let region = Box::new(PingPong::default());
    let gpa = guest_physical(&*region as *const PingPong as usize)?;
    let record = cells(1);
    let cell = record.first().ok_or_else(|| Error::failed("no completion record"))?;
    let seq = port.invoke(FUNC_PINGPONG, gpa, b.core, 0, Some(&record))?;
    let timed = rounds(b, |i| {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        let t0 = rdtsc();
        region.ping.store(i, Ordering::Release);
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
    let collected = spin_until(cell, Instant::now() + ROUND_TIMEOUT, |s| s == seq);
    let mut samples = timed?;
    if let Err(seen) = collected {
        return Err(Error::failed(format!(
            "ping-pong on core {} did not finish (invoke seq {seq}, completion seq {seen})",
            b.core
        )));
    }
    let summary = summarize(&mut samples).ok_or_else(|| Error::failed("no samples"))?;
    out!("{}", summary.line(BenchKind::PingPong.name(), khz));
    let hrt_rounds = cell.result.load(Ordering::Acquire);
    let ours = b.warmup.saturating_add(b.iters) as u64;
    out!("pingpong.rounds={hrt_rounds} expected={ours} gpa={gpa:#x}");
    if hrt_rounds != ours {
        return Err(Error::failed(format!("the HRT counted {hrt_rounds} rounds, we made {ours}")));
    }
    Ok(())
}
