//! The forwarding benchmark's guest side (benches/benches/forward.rs runs it and reads its lines):
//! - `hvm bench io`: native baselines of the I/O workloads below, in this ROS process;
//! - `hvm forward-test latency`: the echo pseudo-call, `getpid` and the I/O workloads, each
//!   forwarded from an HRT core `n` times and timed there (HRT function 22);
//! - `hvm forward-test split-bench`: split execution timed: a null split round trip (timed here),
//!   `write()` from a ROS function running on the HRT, and first touches of fresh pages there
//!   (page-fault forwarding), with the same functions run natively as baselines;
//! - `hvm forward-test scaling`: echo throughput with 1..N HRT cores forwarding at once.
//!
//! Every measured phase is bracketed by two marks ([`Phase`]) so the host can read the VM exits
//! per call from KVM's statistics; each prints `bench-samples=` lines (raw cycles), a `bench=`
//! summary and a `bench-phase=` line.
//!
//! The I/O workloads: `pread64`/`pwrite64` at offset 0 of a tmpfs file (a memfd: memfds live on
//! the kernel's internal tmpfs), and `read`/`write` on a pipe, of 1 B, 4 KiB and 64 KiB. A pipe's
//! read is timed after an untimed write that fills it, its write before an untimed read that
//! drains it. The 4 KiB ones take a quarter of the samples asked for, the 64 KiB ones a
//! twentieth (at least 20).

use std::time::{Duration, Instant};

use abi::func;
use benchline::{sample_lines, Summary};
use forwarder::layout;

use crate::error::Error;
use crate::forward_error::check;
use crate::hcall::{Port, Version};
use crate::phase::Phase;
use crate::proxy::{Mode, Proxy};
use crate::split::{expect_ok, SplitRunner};
use crate::sys;
use crate::tsc::{rdtsc, tsc_khz};

/// Function 22's job: words before the samples; "no companion call".
const TIMED_HEADER_WORDS: usize = 16;
const TIMED_NONE: u64 = u64::MAX;
/// Most samples function 22 takes per invoke.
const TIMED_MAX: u64 = 100_000;
/// How long an invoke may go without a forwarded request before the bench fails.
const STALL: Duration = Duration::from_secs(120);
/// Linux x86-64 system call numbers.
const SYS_READ: u64 = 0;
const SYS_WRITE: u64 = 1;
const SYS_GETPID: u64 = 39;
const SYS_PREAD64: u64 = 17;
const SYS_PWRITE64: u64 = 18;
/// The I/O sizes.
pub const SIZES: [usize; 3] = [1, 4096, 65536];

/// One system call: number and four arguments.
#[derive(Clone, Copy)]
struct Call {
    nr: u64,
    args: [u64; 4],
}

/// A workload: the call timed, and untimed companions before and after it.
struct Workload {
    name: String,
    /// Bytes moved per call (0: none).
    size: usize,
    timed: Call,
    pre: Option<Call>,
    post: Option<Call>,
}

/// The files and the buffer the I/O workloads use; closed on drop.
struct IoKit {
    memfd: i32,
    pipe: [i32; 2],
    buf: Vec<u8>,
}

impl IoKit {
    fn new() -> Result<IoKit, Error> {
        let max = SIZES[SIZES.len() - 1];
        // SAFETY: memfd_create with a static name.
        let memfd = unsafe { libc::memfd_create(c"duet-bench".as_ptr(), libc::MFD_CLOEXEC) };
        if memfd < 0 {
            return Err(Error::failed(format!("memfd_create: {}", std::io::Error::last_os_error())));
        }
        let mut pipe = [0i32; 2];
        // SAFETY: pipe2 writes two fds into our array.
        if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: our own fd.
            unsafe { libc::close(memfd) };
            return Err(Error::failed(format!("pipe2: {e}")));
        }
        let kit = IoKit { memfd, pipe, buf: vec![0x5a; max] };
        // The file holds the largest size, so every read returns all it asks for.
        let all = Call { nr: SYS_PWRITE64, args: [memfd as u64, kit.buf.as_ptr() as u64, max as u64, 0] };
        if native(all) != max as i64 {
            return Err(Error::failed("cannot fill the tmpfs file"));
        }
        Ok(kit)
    }

    /// The 12 I/O workloads.
    fn workloads(&self) -> Vec<Workload> {
        let buf = self.buf.as_ptr() as u64;
        let (f, r, w) = (self.memfd as u64, self.pipe[0] as u64, self.pipe[1] as u64);
        let mut all = Vec::new();
        for size in SIZES {
            let n = size as u64;
            let call = |nr, fd| Call { nr, args: [fd, buf, n, 0] };
            let wl = |name: &str, timed, pre, post| Workload { name: format!("{name}-{size}"), size, timed, pre, post };
            all.push(wl("read-tmpfs", call(SYS_PREAD64, f), None, None));
            all.push(wl("write-tmpfs", call(SYS_PWRITE64, f), None, None));
            all.push(wl("read-pipe", call(SYS_READ, r), Some(call(SYS_WRITE, w)), None));
            all.push(wl("write-pipe", call(SYS_WRITE, w), None, Some(call(SYS_READ, r))));
        }
        all
    }
}

impl Drop for IoKit {
    fn drop(&mut self) {
        for fd in [self.memfd, self.pipe[0], self.pipe[1]] {
            // SAFETY: our own fds, closed once.
            unsafe { libc::close(fd) };
        }
    }
}

/// Samples of a workload moving `size` bytes per call when `n` are asked for: fewer for the large
/// sizes (on a PVM host Linux copies in emulated ring 0, about 2 µs a byte), at least
/// [`MIN_SAMPLES`].
fn samples_for(n: u64, size: usize) -> u64 {
    let n = match size {
        0..=64 => n,
        65..=4096 => n / 4,
        _ => n / 20,
    };
    n.max(MIN_SAMPLES)
}

/// Fewest samples of a workload.
const MIN_SAMPLES: u64 = 20;

/// Makes `c` in this process (a raw system call: no errno).
fn native(c: Call) -> i64 {
    let [a0, a1, a2, a3] = c.args;
    // SAFETY: the calls the workloads make (read, write, pread64, pwrite64, getpid) on our own fds
    // and buffer, which is large enough for every size.
    unsafe { libc::syscall(c.nr as libc::c_long, a0, a1, a2, a3) as i64 }
}

/// Prints the samples, the summary and the phase line of `name`.
fn report(name: &str, khz: u64, mut samples: Vec<u64>, phase: String) {
    for l in sample_lines(name, khz, &samples) {
        out!("{l}");
    }
    if let Some(s) = Summary::of(&mut samples) {
        out!("{}", s.line(name, khz));
    }
    out!("{phase}");
}

/// `hvm bench io`: each I/O workload `warmup + iters` times natively, the last `iters` timed.
pub fn native_io(port: &Port, iters: usize, warmup: usize) -> Result<(), Error> {
    let khz = tsc_khz(port);
    let kit = IoKit::new()?;
    for w in kit.workloads() {
        let iters = samples_for(iters as u64, w.size) as usize;
        let warmup = samples_for(warmup as u64, w.size) as usize;
        let mut samples = Vec::with_capacity(iters);
        let phase = Phase::begin(port);
        for i in 0..warmup + iters {
            if let Some(c) = w.pre {
                native(c);
            }
            let t0 = rdtsc();
            let r = native(w.timed);
            let t1 = rdtsc();
            if r != w.timed.args[2] as i64 {
                return Err(Error::failed(format!("native {}: the call answered {r}", w.name)));
            }
            if let Some(c) = w.post {
                native(c);
            }
            if i >= warmup {
                samples.push(t1.wrapping_sub(t0));
            }
        }
        let name = format!("native-{}", w.name);
        let line = phase.end(&name, (warmup + iters) as u64);
        report(&name, khz, samples, line);
    }
    Ok(())
}

/// Function 22's job for `w`, room for `n` samples.
fn job(n: u64, w: &Workload) -> Vec<u64> {
    // Every word written now, so every page is resident: the HRT writes the samples through its
    // walk of our page tables, which does not fault pages in.
    let mut j = vec![u64::MAX; TIMED_HEADER_WORDS + n as usize];
    j[0] = n;
    let mut put = |at: usize, c: Option<Call>| match c {
        Some(c) => {
            j[at] = c.nr;
            j[at + 1..at + 5].copy_from_slice(&c.args);
        }
        None => j[at] = TIMED_NONE,
    };
    put(1, Some(w.timed));
    put(6, w.pre);
    put(11, w.post);
    j
}

/// `hvm forward-test latency`: the echo pseudo-call, getpid and (unless `quick`) the I/O
/// workloads, each `n` times from `core`, timed on the HRT. `bench-*` lines per workload.
pub fn latency(port: &Port, core: u64, mode: Mode, n: u64, quick: bool) -> Result<(), Error> {
    let n = n.clamp(1, TIMED_MAX);
    let khz = tsc_khz(port);
    let kit = IoKit::new()?;
    let mut all = vec![
        Workload { name: "echo".into(), size: 0, timed: Call { nr: u64::from(layout::PSEUDO_ECHO), args: [0; 4] }, pre: None, post: None },
        Workload { name: "getpid".into(), size: 0, timed: Call { nr: SYS_GETPID, args: [0; 4] }, pre: None, post: None },
    ];
    if !quick {
        all.extend(kit.workloads());
    }
    let mut proxy = Proxy::start(port, &[core], mode)?;
    let mut outcome = Ok(());
    for w in &all {
        let n = samples_for(n, w.size);
        let buf = job(n, w);
        let phase = Phase::begin(port);
        let r = proxy.run(&[core], func::FWD_TIMED, &[buf.as_ptr() as u64], STALL);
        let name = format!("forward-{}-{}", w.name, mode.name());
        let line = phase.end(&name, n);
        match r.and_then(|r| check(&format!("latency {}", w.name), r[0])) {
            Ok(got) if got == n => {}
            Ok(got) => outcome = Err(Error::failed(format!("latency {}: HRT function 22 answered {got}, not {n}", w.name))),
            Err(e) => outcome = Err(e),
        }
        if outcome.is_err() {
            break;
        }
        // SAFETY: the HRT wrote the samples before completing the invoke (acquire in `run`).
        let samples = buf[TIMED_HEADER_WORDS..].iter().map(|w| unsafe { std::ptr::read_volatile(w) }).collect();
        report(&name, khz, samples, line);
    }
    let stopped = proxy.stop();
    outcome?;
    let stats = stopped?;
    out!("forward-test latency ok mode={} {}", mode.name(), stats.line(0));
    Ok(())
}

/// A timing job for a split function: `n` rounds, cycles of round i into `samples[i]`.
#[repr(C)]
struct TimeJob {
    n: usize,
    samples: *mut u64,
    /// write: the fd; touch: the first page.
    target: u64,
}

extern "C" fn split_null(_arg: u64) -> u64 {
    0
}

/// `write(fd, "x", 1)` `n` times, each timed (on whichever core runs it). 0, or 1 + the round whose
/// write failed.
extern "C" fn time_writes(job: u64) -> u64 {
    // SAFETY: `job` is a TimeJob of ours whose samples hold `n` words.
    unsafe {
        let job = &*(job as *const TimeJob);
        for i in 0..job.n {
            let t0 = rdtsc();
            let r = libc::write(job.target as i32, b"x".as_ptr().cast(), 1);
            let t1 = rdtsc();
            if r != 1 {
                return 1 + i as u64;
            }
            std::ptr::write_volatile(job.samples.add(i), t1.wrapping_sub(t0));
        }
    }
    0
}

/// The first write to each of `n` fresh pages, each timed (on the HRT: a page fault forwarded to
/// the ROS; natively: Linux's own fault). Always 0.
extern "C" fn time_touches(job: u64) -> u64 {
    // SAFETY: `job` is a TimeJob of ours; `target` is a private mapping of `n` pages.
    unsafe {
        let job = &*(job as *const TimeJob);
        for i in 0..job.n {
            let page = (job.target + 4096 * i as u64) as *mut u64;
            let t0 = rdtsc();
            std::ptr::write_volatile(page, i as u64);
            let t1 = rdtsc();
            std::ptr::write_volatile(job.samples.add(i), t1.wrapping_sub(t0));
        }
    }
    0
}

/// `n` fresh pages: a private anonymous mapping nothing touched (with `mlockall(MCL_ONFAULT)` in
/// force, mapping does not populate it).
fn fresh_pages(n: usize) -> Result<u64, Error> {
    // SAFETY: a new anonymous mapping, no fixed address.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), n * 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(Error::failed(format!("mmap: {}", std::io::Error::last_os_error())));
    }
    Ok(p as u64)
}

/// Runs `f(job)` natively (`proxy` None) or split on `core`, `n` rounds, bracketed by a phase;
/// prints the results as `name`.
fn timed_split(
    port: &Port,
    proxy: Option<(&mut Proxy<'_>, &mut SplitRunner, u64)>,
    name: &str,
    f: extern "C" fn(u64) -> u64,
    n: usize,
    target: u64,
) -> Result<(), Error> {
    // Written now, so resident (`split-bench` maps on fault): `f`'s stores to it are no page faults.
    let mut samples = vec![u64::MAX; n];
    let job = TimeJob { n, samples: samples.as_mut_ptr(), target };
    let arg = &job as *const TimeJob as u64;
    let phase = Phase::begin(port);
    let result = match proxy {
        Some((proxy, runner, core)) => {
            let r = runner.run(proxy, core, f, arg)?;
            expect_ok(name, &r)?;
            r.result
        }
        None => f(arg),
    };
    let line = phase.end(name, n as u64);
    if result != 0 {
        return Err(Error::failed(format!("{name}: round {} failed", result - 1)));
    }
    // SAFETY: written by `f` (on the HRT: before the invoke completed, acquire in `run`).
    let samples: Vec<u64> = samples.iter().map(|w| unsafe { std::ptr::read_volatile(w) }).collect();
    if let Some(i) = samples.iter().position(|&c| c == u64::MAX) {
        return Err(Error::failed(format!(
            "{name}: sample {i} of {n} never reached this process (the function's stores went elsewhere: a stale translation on the HRT?)"
        )));
    }
    report(name, tsc_khz(port), samples, line);
    Ok(())
}

/// `hvm forward-test split-bench`: null split round trips timed here, then writes and fresh-page
/// touches from a split function, and the same functions natively.
pub fn split_bench(port: &Port, core: u64, mode: Mode, n: u64) -> Result<(), Error> {
    let n = n.clamp(1, 10_000) as usize;
    sys::mlockall_on_fault()?;
    let kit = IoKit::new()?;
    let fd = u64::try_from(kit.memfd).unwrap_or(0);
    let mut proxy = Proxy::start(port, &[core], mode)?;
    let mut runner = SplitRunner::new();
    let outcome = (|| {
        // The null round trip, timed from the ROS: invoke, CPL3 entry on the HRT, return, completion.
        let rounds = n.min(1000);
        let mut samples = Vec::with_capacity(rounds);
        let phase = Phase::begin(port);
        for _ in 0..rounds {
            let t0 = rdtsc();
            let r = runner.run(&mut proxy, core, split_null, 0)?;
            expect_ok("null", &r)?;
            samples.push(rdtsc().wrapping_sub(t0));
        }
        let name = format!("split-null-{}", mode.name());
        let line = phase.end(&name, rounds as u64);
        report(&name, tsc_khz(port), samples, line);
        timed_split(port, Some((&mut proxy, &mut runner, core)), &format!("split-write-{}", mode.name()), time_writes, n, fd)?;
        let pages = fresh_pages(n)?;
        timed_split(port, Some((&mut proxy, &mut runner, core)), &format!("split-fault-{}", mode.name()), time_touches, n, pages)
    })();
    let stopped = proxy.stop();
    outcome?;
    let stats = stopped?;
    timed_split(port, None, "native-split-write", time_writes, n, fd)?;
    timed_split(port, None, "native-fault", time_touches, n, fresh_pages(n)?)?;
    out!("forward-test split-bench ok mode={} {}", mode.name(), stats.line(0));
    Ok(())
}

/// `hvm forward-test scaling`: `per_core` echo pseudo-calls on each of cores 0..k at once (HRT
/// function 18, pipelined), for k = 1..=N; a `bench-scaling` line each.
pub fn scaling(port: &Port, version: &Version, mode: Mode, per_core: u64) -> Result<(), Error> {
    let mut single = None;
    for k in 1..=version.hrt_cores {
        let cores: Vec<u64> = (0..k).collect();
        let mut proxy = Proxy::start(port, &cores, mode)?;
        let args: Vec<u64> = cores.iter().map(|_| per_core).collect();
        let phase = Phase::begin(port);
        let t0 = Instant::now();
        let outcome = proxy.run(&cores, func::FWD_STRESS, &args, STALL);
        let secs = t0.elapsed().as_secs_f64();
        let line = phase.end(&format!("scaling-{k}-{}", mode.name()), per_core * k);
        let stopped = proxy.stop();
        for r in outcome? {
            if check("scaling", r)? != per_core {
                return Err(Error::failed(format!("scaling: a core answered {r}, not {per_core}")));
            }
        }
        stopped?;
        let rate = (per_core * k) as f64 / secs;
        let base = *single.get_or_insert(rate);
        out!(
            "bench-scaling cores={k} mode={} calls={} seconds={secs:.3} calls_per_s={rate:.0} vs_linear={:.2}",
            mode.name(),
            per_core * k,
            rate / (base * k as f64)
        );
        out!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_22_jobs_are_laid_out_as_the_hrt_reads_them() {
        let w = Workload {
            name: "read-pipe-4096".into(),
            size: 4096,
            timed: Call { nr: SYS_READ, args: [3, 0x1000, 4096, 0] },
            pre: Some(Call { nr: SYS_WRITE, args: [4, 0x1000, 4096, 0] }),
            post: None,
        };
        let j = job(5, &w);
        assert_eq!(j.len(), TIMED_HEADER_WORDS + 5);
        assert_eq!(&j[..6], &[5, SYS_READ, 3, 0x1000, 4096, 0]);
        assert_eq!(&j[6..11], &[SYS_WRITE, 4, 0x1000, 4096, 0]);
        assert_eq!(j[11], TIMED_NONE);
        assert!(j[TIMED_HEADER_WORDS..].iter().all(|&s| s == u64::MAX), "samples pre-written (resident)");
    }

    #[test]
    fn large_calls_take_fewer_samples_but_never_too_few() {
        assert_eq!(samples_for(2000, 0), 2000);
        assert_eq!(samples_for(2000, 1), 2000);
        assert_eq!(samples_for(2000, 4096), 500);
        assert_eq!(samples_for(2000, 65536), 100);
        assert_eq!(samples_for(100, 65536), MIN_SAMPLES);
    }
}
