//! `hvm forward-test TEST`: syscall forwarding end to end, with this process as the proxy
//! (proxy.rs). Each test prints `key=value` lines that tests grep and fails (exit 1) unless every
//! check holds:
//! - `getpid`: HRT function 14 forwards `getpid` N times on one core; each answer is our pid;
//! - `split`: ROS functions of this program run at CPL3 on an HRT core (function 17): one prints
//!   through a forwarded `write()`, one does open/write/lseek/read/close on a ROS file, one reads
//!   1 MiB straight into merged memory, one touches never-touched mmap memory (page-fault
//!   forwarding), and one tries port I/O, which must fault (#GP) and end the execution;
//! - `stress`: every HRT core at once forwards the echo pseudo-call (function 18), each request
//!   with its own number and answer, so every answer is checked and none can be lost or
//!   duplicated; `stress-lseek` forwards `lseek(fd, number, SEEK_SET)` instead (a Linux system
//!   call per request);
//! - `corrupt`: the HRT corrupts its channel on purpose (function 19) and the proxy detects it; the
//!   proxy corrupts a response and the HRT detects it; both sides keep running;
//! - `latency`, `split-bench`, `scaling`: the forwarding benchmark's (fwdbench.rs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use abi::func;

use forwarder::layout::{self, SplitCall};

use crate::cli::{ForwardArgs, ForwardKind};
use crate::error::Error;
use crate::forward_error::{check, FORWARD_CORRUPT};
use crate::hcall::{Port, Version};
use crate::proxy::{Mode, Proxy};
use crate::split::{expect_ok, SplitRunner};
use crate::sys;

/// Default samples of `latency`, per call (and of `split-bench`).
const LATENCY_CALLS: u64 = 1000;
/// Default calls per core of `scaling`.
const SCALING_CALLS: u64 = 20_000;
/// Default calls of `getpid` and (in all, poll mode) of `stress`.
const GETPID_CALLS: u64 = 1000;
const STRESS_CALLS_POLL: u64 = 1_000_000;
const STRESS_CALLS_SLEEPING: u64 = 20_000;
/// How long a test's invokes may go without a forwarded request before the test fails (a slow host
/// makes a test slower, not a failure; an HRT or proxy that stopped is found).
const STALL: Duration = Duration::from_secs(120);

/// `hvm forward-test ...`.
pub fn run(port: &Port, version: &Version, a: &ForwardArgs) -> Result<(), Error> {
    let mode = match &a.mode {
        Some(name) => {
            let configured = Mode::configured(port)?;
            Mode::parse(name, a.spin_us.unwrap_or(configured.spin_us))
                .ok_or_else(|| Error::usage(format!("unknown mode {name:?} (poll, notify, adaptive)")))?
        }
        None => Mode::configured(port)?,
    };
    match a.kind {
        ForwardKind::Getpid => getpid(port, a.core, mode, a.calls.unwrap_or(GETPID_CALLS)),
        ForwardKind::Split => split_test(port, a.core, mode),
        ForwardKind::Stress => stress(port, version, mode, a.calls, false),
        ForwardKind::StressSyscall => stress(port, version, mode, a.calls, true),
        ForwardKind::Corrupt => corrupt(port, version, mode),
        ForwardKind::Latency => crate::fwdbench::latency(port, a.core, mode, a.calls.unwrap_or(LATENCY_CALLS), !a.io),
        ForwardKind::SplitBench => crate::fwdbench::split_bench(port, a.core, mode, a.calls.unwrap_or(LATENCY_CALLS)),
        ForwardKind::Scaling => crate::fwdbench::scaling(port, version, mode, a.calls.unwrap_or(SCALING_CALLS)),
    }
}

fn getpid(port: &Port, core: u64, mode: Mode, calls: u64) -> Result<(), Error> {
    let mut proxy = Proxy::start(port, &[core], mode)?;
    let t0 = Instant::now();
    let outcome = proxy.run(&[core], func::FWD_GETPID, &[calls], STALL);
    let secs = t0.elapsed().as_secs_f64();
    let stopped = proxy.stop();
    let hrt_pid = check("getpid", outcome?[0])?;
    let stats = stopped?;
    let pid = u64::from(std::process::id());
    if hrt_pid != pid || stats.served[0] != calls {
        return Err(Error::failed(format!(
            "forward-test getpid: the HRT's pid {hrt_pid} is not this process's {pid}, or {} calls were served, not {calls}",
            stats.served[0]
        )));
    }
    let us = secs * 1e6 / calls as f64;
    out!(
        "forward-test getpid ok mode={} pid={pid} hrt_pid={hrt_pid} served={} us_per_call={us:.2} rings={} sleeps={}",
        mode.name(),
        stats.served[0],
        stats.rings,
        stats.sleeps
    );
    Ok(())
}

/// One split execution of `entry(arg)` on `core` (see [`SplitRunner::run`]).
fn split(proxy: &mut Proxy<'_>, core: u64, entry: extern "C" fn(u64) -> u64, arg: u64) -> Result<SplitCall, Error> {
    SplitRunner::new().run(proxy, core, entry, arg)
}

const HELLO: &[u8] = b"split: hello from a ROS function on the HRT, through a forwarded write()\n";

/// Runs on the HRT: prints through libc's `write`. Returns what `write` returned.
extern "C" fn split_hello(_arg: u64) -> u64 {
    // SAFETY: a write of our own static bytes to stdout.
    unsafe { libc::write(1, HELLO.as_ptr().cast(), HELLO.len()) as u64 }
}

/// A file job for [`split_files`] and [`split_read`].
#[repr(C)]
struct FileJob {
    path: *const libc::c_char,
    data: *const u8,
    len: usize,
    back: *mut u8,
}

/// Runs on the HRT: creates the file, writes `data`, seeks back, reads it into `back`, closes.
/// 0, or the step that failed (1 open, 2 write, 3 lseek, 4 read, 5 close).
extern "C" fn split_files(job: u64) -> u64 {
    // SAFETY: `job` is the FileJob the proxy built, alive across the execution; its buffers are
    // `len` bytes each.
    unsafe {
        let job = &*(job as *const FileJob);
        let fd = libc::open(job.path, libc::O_CREAT | libc::O_RDWR | libc::O_TRUNC, 0o644);
        if fd < 0 {
            return 1;
        }
        if libc::write(fd, job.data.cast(), job.len) != job.len as isize {
            return 2;
        }
        if libc::lseek(fd, 0, libc::SEEK_SET) != 0 {
            return 3;
        }
        if libc::read(fd, job.back.cast(), job.len) != job.len as isize {
            return 4;
        }
        if libc::close(fd) != 0 {
            return 5;
        }
    }
    0
}

/// FNV-1a of `bytes`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Runs on the HRT: opens the file, reads `len` bytes into `back` (several reads if need be),
/// closes, and returns the FNV-1a of what it read (computed on the HRT), or u64::MAX.
extern "C" fn split_read(job: u64) -> u64 {
    // SAFETY: as in split_files.
    unsafe {
        let job = &*(job as *const FileJob);
        let fd = libc::open(job.path, libc::O_RDONLY);
        if fd < 0 {
            return u64::MAX;
        }
        let mut got = 0usize;
        while got < job.len {
            let n = libc::read(fd, job.back.add(got).cast(), job.len - got);
            if n <= 0 {
                libc::close(fd);
                return u64::MAX;
            }
            got += n as usize;
        }
        libc::close(fd);
        fnv(std::slice::from_raw_parts(job.back, job.len))
    }
}

/// A touch job: `pages` pages at `base`.
#[repr(C)]
struct TouchJob {
    base: *mut u64,
    pages: usize,
}

/// The word [`split_touch`] writes at the start of page `i`.
fn touch_word(i: usize) -> u64 {
    0x5eed_0000_0000_0000 | i as u64
}

/// Runs on the HRT: writes [`touch_word`] into the first word of each page (each write faults on
/// the HRT the first time: page-fault forwarding), then reads them back. 0, or 1 + the first page
/// that read back wrong.
extern "C" fn split_touch(job: u64) -> u64 {
    // SAFETY: `job` is the TouchJob the proxy built; its pages are a mapping of ours.
    unsafe {
        let job = &*(job as *const TouchJob);
        for i in 0..job.pages {
            std::ptr::write_volatile(job.base.add(512 * i), touch_word(i));
        }
        for i in 0..job.pages {
            if std::ptr::read_volatile(job.base.add(512 * i)) != touch_word(i) {
                return 1 + i as u64;
            }
        }
    }
    0
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn split_test(port: &Port, core: u64, mode: Mode) -> Result<(), Error> {
    // Mappings made from here on are not populated up front, so the touch test's pages are
    // untouched until the HRT touches them.
    sys::mlockall_on_fault()?;
    let mut proxy = Proxy::start(port, &[core], mode)?;
    let outcome = split_checks(&mut proxy, core);
    let stopped = proxy.stop();
    outcome?;
    let stats = stopped?;
    out!("forward-test split ok mode={} {}", mode.name(), stats.line(0));
    Ok(())
}

fn split_checks(proxy: &mut Proxy<'_>, core: u64) -> Result<(), Error> {
    // 1. A ROS function prints through a forwarded write().
    let r = split(proxy, core, split_hello, 0)?;
    expect_ok("hello", &r)?;
    if r.result != HELLO.len() as u64 {
        return Err(Error::failed(format!("split hello: write() returned {:#x}, not {}", r.result, HELLO.len())));
    }
    out!("split hello ok syscalls={} result={}", r.syscalls, r.result);

    // 2. open/write/lseek/read/close of a ROS file, buffers in merged memory.
    let data = pattern(10_000, 7);
    let mut back = vec![0u8; data.len()];
    let path = c"/tmp/forward-split-file";
    let job = FileJob { path: path.as_ptr(), data: data.as_ptr(), len: data.len(), back: back.as_mut_ptr() };
    let r = split(proxy, core, split_files, &job as *const FileJob as u64)?;
    expect_ok("files", &r)?;
    let on_disk = std::fs::read("/tmp/forward-split-file").map_err(|e| Error::failed(format!("split files: reading the file in the ROS: {e}")))?;
    if r.result != 0 || back != data || on_disk != data {
        return Err(Error::failed(format!(
            "split files: step {} failed, or the bytes differ (read back equal: {}, file equal: {})",
            r.result,
            back == data,
            on_disk == data
        )));
    }
    out!("split files ok bytes={} syscalls={}", data.len(), r.syscalls);

    // 3. A 1 MiB read straight into merged memory.
    let mib = pattern(1 << 20, 11);
    std::fs::write("/tmp/forward-split-1m", &mib).map_err(|e| Error::failed(format!("split read: writing the file: {e}")))?;
    let mut buf = vec![0u8; mib.len()];
    let path = c"/tmp/forward-split-1m";
    let job = FileJob { path: path.as_ptr(), data: std::ptr::null(), len: buf.len(), back: buf.as_mut_ptr() };
    let r = split(proxy, core, split_read, &job as *const FileJob as u64)?;
    expect_ok("read", &r)?;
    let want = fnv(&mib);
    if r.result != want || buf != mib {
        return Err(Error::failed(format!(
            "split read: the HRT's checksum {:#x} is not {want:#x}, or the buffer differs ({})",
            r.result,
            buf == mib
        )));
    }
    out!("split read ok bytes={} checksum={want:#x} syscalls={}", mib.len(), r.syscalls);

    // 4. Never-touched mmap memory, touched on the HRT: page-fault forwarding.
    let pages = 64usize;
    // SAFETY: a fresh private anonymous mapping of our own; unmapped below.
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), pages * 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if base == libc::MAP_FAILED {
        return Err(Error::failed(format!("split touch: mmap: {}", std::io::Error::last_os_error())));
    }
    let resident = resident_pages(base, pages);
    let job = TouchJob { base: base.cast(), pages };
    let r = split(proxy, core, split_touch, &job as *const TouchJob as u64);
    let seen: Vec<u64> = (0..pages)
        // SAFETY: reading the first word of each page of our mapping.
        .map(|i| unsafe { std::ptr::read_volatile(base.cast::<u64>().add(512 * i)) })
        .collect();
    // SAFETY: our own mapping, no longer used (the HRT is done with it: the invoke completed).
    unsafe { libc::munmap(base, pages * 4096) };
    let r = r?;
    if let Some((addr, err)) = proxy.stats.page_fault_error {
        out!("split touch: the proxy could not make {addr:#x} present: errno {}", -err);
    }
    expect_ok("touch", &r)?;
    let good = seen.iter().enumerate().all(|(i, &w)| w == touch_word(i));
    if r.result != 0 || !good || resident != 0 || r.page_faults < pages as u64 {
        return Err(Error::failed(format!(
            "split touch: result {}, ROS sees the HRT's words: {good}, pages resident before: {resident}, page faults forwarded: {} (want >= {pages})",
            r.result, r.page_faults
        )));
    }
    out!("split touch ok pages={pages} resident_before=0 page_faults={}", r.page_faults);

    // 5. Confinement: port I/O (a hypercall attempt) from split code faults (#GP) and ends it.
    let r = split(proxy, core, split_port_io, 0)?;
    if r.status != forwarder::layout::SPLIT_EXCEPTION + 13 {
        return Err(Error::failed(format!("split port-io: status {:#x} (result {:#x}), not #GP (0x10d)", r.status, r.result)));
    }
    out!("split port-io ok status={:#x}", r.status);
    Ok(())
}

/// Runs on the HRT: a hypercall attempt (VERSION, the ABI crate's `out 0xe4, eax`) at CPL3, which
/// must fault (#GP: no I/O permission on HRT cores), ending the execution. Returns 0 if it did not.
extern "C" fn split_port_io(_arg: u64) -> u64 {
    // SAFETY: on the HRT the `out` faults before it does anything; it is never run in the ROS (where
    // it would be a VERSION, which writes no memory).
    let _ = unsafe { abi::client::hypercall(abi::Op::Version, [0; 5]) };
    0
}

/// How many of `pages` pages at `base` are resident (mincore).
fn resident_pages(base: *mut libc::c_void, pages: usize) -> usize {
    let mut vec = vec![0u8; pages];
    // SAFETY: mincore writes one byte per page into `vec`, which has `pages` bytes.
    if unsafe { libc::mincore(base, pages * 4096, vec.as_mut_ptr()) } != 0 {
        return usize::MAX;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// `syscall`: forward `lseek` (a Linux system call per request); else the echo pseudo-call (the
/// channel and the proxy alone: on a PVM host a ROS system call costs about as much as 1000 echoes).
fn stress(port: &Port, version: &Version, mode: Mode, calls: Option<u64>, syscall: bool) -> Result<(), Error> {
    let cores: Vec<u64> = (0..version.hrt_cores).collect();
    let total = calls.unwrap_or(if mode.mode == layout::MODE_POLL { STRESS_CALLS_POLL } else { STRESS_CALLS_SLEEPING });
    let per_core = total.div_ceil(cores.len().max(1) as u64);
    // SAFETY: memfd_create with a static name; the fd is closed below.
    let fd = unsafe { libc::memfd_create(c"forward-stress".as_ptr(), 0) };
    if fd < 0 {
        return Err(Error::failed(format!("stress: memfd_create: {}", std::io::Error::last_os_error())));
    }
    let mut proxy = Proxy::start(port, &cores, mode)?;
    let fd1 = if syscall { fd as u64 + 1 } else { 0 };
    let args: Vec<u64> = cores.iter().map(|_| (fd1 << 32) | per_core).collect();
    let t0 = Instant::now();
    let outcome = proxy.run(&cores, func::FWD_STRESS, &args, STALL);
    let secs = t0.elapsed().as_secs_f64();
    let stopped = proxy.stop();
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    let results = outcome?;
    let stats = stopped?;
    for (core, &r) in cores.iter().zip(&results) {
        check(&format!("stress core {core}"), r)?;
        if r != per_core {
            return Err(Error::failed(format!("stress: core {core} answered {r}, not {per_core}")));
        }
    }
    if stats.served.iter().any(|&s| s != per_core) || stats.failed.iter().any(Option::is_some) {
        return Err(Error::failed(format!("stress: served {:?}, want {per_core} each; failures {:?}", stats.served, stats.failed)));
    }
    let all: u64 = stats.served.iter().sum();
    out!(
        "forward-test stress ok mode={} call={} cores={} calls={all} served={:?} seconds={secs:.2} calls_per_s={:.0} rings={} sleeps={}",
        mode.name(),
        if syscall { "lseek" } else { "echo" },
        cores.len(),
        stats.served,
        all as f64 / secs,
        stats.rings,
        stats.sleeps
    );
    Ok(())
}

fn corrupt(port: &Port, version: &Version, mode: Mode) -> Result<(), Error> {
    let cores: Vec<u64> = (0..version.hrt_cores.min(2)).collect();
    // The HRT corrupts core 0's channel; the proxy must see it and keep serving the others.
    let mut proxy = Proxy::start(port, &cores, mode)?;
    let r = check("corrupt (HRT side)", proxy.run(&[0], func::FWD_CORRUPT, &[0], STALL)?[0])?;
    if r != 0 {
        return Err(Error::failed(format!("corrupt: HRT function 19 answered {r:#x}")));
    }
    if proxy.stats.failed.first().is_some_and(Option::is_none) {
        // Not seen while the invoke ran: give the proxy a few more looks.
        proxy.serve(Duration::from_secs(5), || false);
    }
    let failed = proxy.stats.failed.first().cloned().flatten();
    let other = if cores.len() > 1 { Some(check("getpid on core 1", proxy.run(&[1], func::FWD_GETPID, &[100], STALL)?[0])?) } else { None };
    let stats = proxy.stop()?;
    let Some(why) = failed else {
        return Err(Error::failed("corrupt: the proxy did not detect the HRT's corrupt request"));
    };
    out!("corrupt-test hrt-side detected=yes core=0 why=\"{why}\" other_core_pid={}", other.map_or("-".into(), |p| p.to_string()));
    if stats.served.get(1).is_some_and(|&s| s != 100) {
        return Err(Error::failed(format!("corrupt: core 1 got {:?} calls served, not 100", stats.served.get(1))));
    }

    // The proxy corrupts the response to core 0's next request; the HRT must see it.
    let mut proxy = Proxy::start(port, &cores, mode)?;
    proxy.suspend(0);
    let va = proxy.channel_va(0).ok_or_else(|| Error::failed("corrupt: no channel"))?;
    let response_1 = va + (layout::responses_offset(64) + layout::CACHE_LINE + layout::RECORD_SEQ) as u64;
    // SAFETY: the word lies in channel 0's region, which the proxy owns and no longer serves;
    // an atomic store, as every access to the region is.
    unsafe { AtomicU64::from_ptr(response_1 as *mut u64) }.store(999, Ordering::Release);
    let r = proxy.run(&[0], func::FWD_GETPID, &[1], STALL)?[0];
    let echo = proxy.call_quiet(0, func::ECHO, 0x1234)?;
    proxy.stop()?;
    if r != FORWARD_CORRUPT || echo != 0x1234 {
        return Err(Error::failed(format!("corrupt: the HRT answered {r:#x} (want {FORWARD_CORRUPT:#x}: corrupt) and echo {echo:#x}")));
    }
    out!("corrupt-test ros-side detected=yes core=0 hrt_alive=yes");
    out!("forward-test corrupt ok mode={}", mode.name());
    Ok(())
}
