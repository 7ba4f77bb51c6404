//! The ROS proxy (DESIGN §8, docs/forwarding.md): the process whose user half the HRT cores share
//! and whose thread makes, in Linux, the system calls code on the HRT forwards.
//!
//! [`Proxy::start`] formats one channel per HRT core (`forwarder`) in this process's locked
//! memory, writes the mode into each header, merges this process into every core it serves (each
//! core flushes its own TLB) and attaches each core to its channel (HRT function 15).
//! [`Proxy::run`] posts invokes and serves every channel until their completion records say done:
//! each request is made as a raw system call (no errno, no thread-local storage: a split execution
//! on the HRT may be using this thread's TLS at the same time), page-fault pseudo-calls are
//! answered with `madvise(MADV_POPULATE_*)`, and in the notify and adaptive modes the thread sleeps
//! in `poll()` on the doorbell UART (`/dev/ttyS1`, raw) when there is nothing to do, after saying so
//! in each channel. [`Proxy::stop`] detaches and unmerges. A channel the HRT corrupts is failed and
//! reported; the others keep being served.

use std::fs::{File, OpenOptions};
use std::hint::spin_loop;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use abi::{func, ForwardMode};
use forwarder::{CacheLine, Channel, Consumer, Request};
use forwarder::layout::{self, MODE_ADAPTIVE, MODE_NOTIFY, MODE_POLL, PSEUDO_BASE, PSEUDO_ECHO, PSEUDO_PAGE_FAULT};

use crate::completion::CompletionCell;
use crate::error::Error;
use crate::hcall::Port;
use crate::sys;

/// Slots per channel.
const SLOTS: u32 = 64;
/// Where the doorbell UART is (Linux's name for COM2).
const DOORBELL_TTY: &str = "/dev/ttyS1";
/// Longest sleep in `poll()` before looking at the deadline and the completion records again.
const SLEEP_SLICE_MS: i32 = 100;

/// Linux system calls the proxy refuses to make for the HRT: they would end, replace or fork this
/// process, or return to a signal frame that is not there (−ENOSYS).
const REFUSED: [u64; 8] = [15, 56, 57, 58, 59, 60, 231, 435];
const MADV_POPULATE_READ: u64 = 22;
const MADV_POPULATE_WRITE: u64 = 23;
const SYS_MADVISE: u64 = 28;
const SYS_MLOCK: u64 = 149;

/// How the channels wait, as the proxy writes it into their headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// `layout::MODE_*`.
    pub mode: u32,
    /// Adaptive spin, µs.
    pub spin_us: u32,
}

impl Mode {
    /// The mode named `poll`, `notify` or `adaptive`.
    pub fn parse(name: &str, spin_us: u32) -> Option<Mode> {
        let mode = match name {
            "poll" => MODE_POLL,
            "notify" => MODE_NOTIFY,
            "adaptive" => MODE_ADAPTIVE,
            _ => return None,
        };
        Some(Mode { mode, spin_us })
    }

    /// The mode the VM's config chose (PARTITION_INFO).
    pub fn configured(port: &Port) -> Result<Mode, Error> {
        let info = port.partition_info()?;
        let mode = match ForwardMode::from_u32(info.forward_mode) {
            Some(ForwardMode::Poll) => MODE_POLL,
            Some(ForwardMode::Notify) => MODE_NOTIFY,
            Some(ForwardMode::Adaptive) => MODE_ADAPTIVE,
            None => return Err(Error::failed(format!("the VMM reports an unknown forwarding mode {}", info.forward_mode))),
        };
        Ok(Mode { mode, spin_us: info.forward_spin_us })
    }

    /// `poll`, `notify` or `adaptive`.
    pub fn name(self) -> &'static str {
        match self.mode {
            MODE_NOTIFY => "notify",
            MODE_ADAPTIVE => "adaptive",
            _ => "poll",
        }
    }
}

/// What the proxy served, per channel (index = position in the core list).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Requests served.
    pub served: Vec<u64>,
    /// Page-fault pseudo-calls among them.
    pub page_faults: u64,
    /// The last page-fault pseudo-call that failed: (address, −errno).
    pub page_fault_error: Option<(u64, i64)>,
    /// Doorbells rung (HRT cores woken).
    pub rings: u64,
    /// Times the proxy slept.
    pub sleeps: u64,
    /// The corruption that failed a channel, by the proxy's own check or the HRT's flag.
    pub failed: Vec<Option<String>>,
}

impl Stats {
    /// `served=N page_faults=N rings=N sleeps=N` for one core's channel (`i`).
    pub fn line(&self, i: usize) -> String {
        format!(
            "served={} page_faults={} rings={} sleeps={}",
            self.served.get(i).copied().unwrap_or(0),
            self.page_faults,
            self.rings,
            self.sleeps
        )
    }
}

/// The proxy: channels, merge, attachments.
pub struct Proxy<'p> {
    port: &'p Port,
    cores: Vec<u64>,
    _regions: Vec<Vec<CacheLine>>,
    regions_va: Vec<u64>,
    consumers: Vec<Option<Consumer>>,
    mode: Mode,
    tty: Option<File>,
    /// What was served so far.
    pub stats: Stats,
}

/// A raw `syscall`: the return value or −errno; no libc wrapper, so no errno (TLS) is written.
///
/// # Safety
/// The call does whatever `nr` does with `args` to this process.
unsafe fn raw_syscall(nr: u64, args: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller takes on the call's effects; the instruction clobbers only RCX and R11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") nr as i64 => ret,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Makes one forwarded call: a page-fault pseudo-call, a refused call, or the system call itself.
fn execute(request: &Request, stats: &mut Stats) -> i64 {
    let nr = u64::from(request.nr);
    let a = request.args;
    if request.nr == PSEUDO_PAGE_FAULT {
        stats.page_faults += 1;
        let advice = if a[1] == 1 { MADV_POPULATE_WRITE } else { MADV_POPULATE_READ };
        let page = a[0] & !0xfff;
        // SAFETY: populating page tables for a page of our own address space changes no data; an
        // address that is not mapped gets −EFAULT / −ENOMEM back, which ends the HRT's execution.
        let mut r = unsafe { raw_syscall(SYS_MADVISE, [page, 4096, advice, 0, 0, 0]) };
        if r == -i64::from(libc::ENOSYS) || r == -i64::from(libc::EINVAL) {
            // A kernel without madvise (tinyconfig) or without MADV_POPULATE_* (before 5.14):
            // mlock populates the page too, with a write fault on a writable private mapping
            // (breaking copy-on-write) and a read fault otherwise; the proxy runs under mlockall
            // anyway.
            // SAFETY: as above; mlock changes no data.
            r = unsafe { raw_syscall(SYS_MLOCK, [page, 4096, 0, 0, 0, 0]) };
        }
        if r != 0 {
            stats.page_fault_error = Some((a[0], r));
        }
        return r;
    }
    if request.nr == PSEUDO_ECHO {
        return layout::echo_answer(a[0], a[1]) as i64;
    }
    if request.nr >= PSEUDO_BASE || REFUSED.contains(&nr) {
        return -i64::from(libc::ENOSYS);
    }
    // SAFETY: the proxy makes what its HRT asks for, as the process the HRT runs merged into: the
    // HRT's pointers are this process's (the merge). A call that damages this process is the HRT
    // program's bug, as it would be in the program itself; calls that would end or replace the
    // process are refused above.
    unsafe { raw_syscall(nr, a) }
}

impl<'p> Proxy<'p> {
    /// Formats a channel per core in `cores`, merges, attaches (module docs).
    pub fn start(port: &'p Port, cores: &[u64], mode: Mode) -> Result<Proxy<'p>, Error> {
        let tty = if mode.mode == MODE_POLL { None } else { Some(open_doorbell()?) };
        let mut regions = Vec::new();
        let mut consumers = Vec::new();
        let mut regions_va = Vec::new();
        for _ in cores {
            let mut region = vec![CacheLine::ZERO; CacheLine::lines_for(SLOTS)];
            let len = region.len() * layout::CACHE_LINE;
            let base = region.as_mut_ptr().cast::<u8>();
            sys::mlock(base as usize, len)?;
            // SAFETY: the Vec's buffer is ours, 64-aligned, `len` bytes, and lives in `_regions` as
            // long as the consumer (both are dropped with the proxy, after the detach and unmerge);
            // nothing else in this process touches it.
            let channel = unsafe { Channel::init(base, len, SLOTS) }.map_err(|e| Error::failed(format!("proxy: init: {e}")))?;
            channel.set_mode(mode.mode, mode.spin_us);
            consumers.push(Some(channel.consumer().map_err(|e| Error::failed(format!("proxy: consumer: {e}")))?));
            regions_va.push(base as u64);
            regions.push(region);
        }
        let n = cores.len();
        let proxy = Proxy {
            port,
            cores: cores.to_vec(),
            _regions: regions,
            regions_va,
            consumers,
            mode,
            tty,
            stats: Stats { served: vec![0; n], failed: vec![None; n], ..Stats::default() },
        };
        for &core in cores {
            let r = crate::invoke::merge_sync(port, true, core)?;
            if r != 0 {
                return Err(Error::failed(format!("proxy: MERGE on core {core} answered {r:#x}, not 0")));
            }
        }
        for i in 0..n {
            let (core, va) = (proxy.cores[i], proxy.regions_va[i]);
            let r = proxy.call_quiet(core, func::FWD_ATTACH, va)?;
            if r != 0 {
                return Err(Error::failed(format!("proxy: attaching core {core} to its channel at {va:#x} answered {r:#x}")));
            }
        }
        Ok(proxy)
    }

    /// The user address of channel `i` (for tests that corrupt it on purpose).
    pub fn channel_va(&self, i: usize) -> Option<u64> {
        self.regions_va.get(i).copied()
    }

    /// Stops serving channel `i` (a test that corrupts it and must not race the proxy).
    pub fn suspend(&mut self, i: usize) {
        if let Some(c) = self.consumers.get_mut(i) {
            *c = None;
        }
    }

    /// A sync invoke that forwards nothing (attach, detach, echo).
    pub fn call_quiet(&self, core: u64, func: u64, arg: u64) -> Result<u64, Error> {
        crate::invoke::sync(self.port, core, func, arg)
    }

    /// Posts `func(args[i])` on core `cores[i]` for every i, serves every channel until each
    /// invoke's completion record is written, and returns their results (in order). Fails when
    /// `stall` passes without a request to serve (a slow host only slows the function down; a stuck
    /// one is found).
    pub fn run(&mut self, cores: &[u64], func: u64, args: &[u64], stall: Duration) -> Result<Vec<u64>, Error> {
        let records: Vec<CompletionCell> = cores.iter().map(|_| CompletionCell::default()).collect();
        let mut seqs = Vec::with_capacity(cores.len());
        for (i, &core) in cores.iter().enumerate() {
            let arg = args.get(i).copied().unwrap_or(0);
            let seq = self.port.invoke(func, arg, core, 0, Some(&records[i..=i]));
            seqs.push(seq.map_err(|e| Error::failed(format!("proxy: posting function {func} on core {core}: {e:?}")))?);
        }
        let done = || records.iter().zip(&seqs).all(|(r, &s)| r.seq.load(Ordering::Acquire) == s);
        if !self.serve(stall, done) {
            return Err(Error::failed(format!(
                "proxy: HRT function {func} did not finish on cores {cores:?}: no request for {} s (served {:?})",
                stall.as_secs(),
                self.stats.served
            )));
        }
        Ok(records.iter().map(|r| r.result.load(Ordering::Acquire)).collect())
    }

    /// Serves until `done()` (looked at whenever every channel is empty), or until `stall` passes
    /// with nothing to serve; whether `done()` came true.
    pub fn serve(&mut self, stall: Duration, mut done: impl FnMut() -> bool) -> bool {
        let mut idle_since = Instant::now();
        let mut idle: u64 = 0;
        let spin = Duration::from_micros(u64::from(self.mode.spin_us));
        loop {
            if self.pass() {
                idle = 0;
                continue;
            }
            if done() {
                return true;
            }
            if idle == 0 {
                idle_since = Instant::now();
            }
            idle += 1;
            if idle.is_multiple_of(256) && idle_since.elapsed() >= stall {
                return false;
            }
            let sleep = match self.mode.mode {
                MODE_NOTIFY => true,
                MODE_ADAPTIVE => idle.is_multiple_of(64) && idle_since.elapsed() >= spin,
                _ => false,
            };
            if !sleep {
                spin_loop();
                continue;
            }
            // Say we sleep, then look once more (the HRT publishes, fences, then reads the flag).
            self.set_sleeping(true);
            if self.pass() || done() {
                self.set_sleeping(false);
                idle = 0;
                continue;
            }
            self.sleep();
            self.set_sleeping(false);
            if idle_since.elapsed() >= stall {
                return false;
            }
        }
    }

    /// One look at every channel; serves what it finds. Whether anything was served.
    fn pass(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.consumers.len() {
            let Some(consumer) = self.consumers[i].as_mut() else { continue };
            if consumer.peer_failed() && self.stats.failed[i].is_none() {
                self.stats.failed[i] = Some("the HRT found the channel corrupt".into());
            }
            match consumer.try_take() {
                Ok(Some(request)) => {
                    let result = execute(&request, &mut self.stats);
                    if let Err(e) = consumer.try_complete(request.seq, result, 0) {
                        self.stats.failed[i] = Some(format!("completing request {}: {e}", request.seq));
                        self.consumers[i] = None;
                        continue;
                    }
                    self.stats.served[i] += 1;
                    if self.mode.mode != MODE_POLL && consumer.peer_sleeping() {
                        self.port.ring_hrt(self.cores[i] as u32);
                        self.stats.rings += 1;
                    }
                    any = true;
                }
                Ok(None) => {}
                Err(e) => {
                    self.stats.failed[i] = Some(e.describe().into());
                    self.consumers[i] = None;
                }
            }
        }
        any
    }

    fn set_sleeping(&self, sleeping: bool) {
        for c in self.consumers.iter().flatten() {
            c.set_sleeping(sleeping);
        }
    }

    /// Blocks in `poll()` on the doorbell UART (at most [`SLEEP_SLICE_MS`]), then drains what it
    /// got.
    fn sleep(&mut self) {
        let Some(tty) = self.tty.as_mut() else { return };
        self.stats.sleeps += 1;
        let ms = SLEEP_SLICE_MS;
        let mut fds = libc::pollfd { fd: tty.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n > 0 {
            let mut buf = [0u8; 64];
            // Non-blocking: drains the bytes there are; which cores rang does not matter, every
            // channel is looked at next.
            while matches!(tty.read(&mut buf), Ok(k) if k > 0) {}
        }
    }

    /// Detaches every core and unmerges; returns what was served.
    pub fn stop(self) -> Result<Stats, Error> {
        let mut first_error = None;
        for &core in &self.cores {
            if let Err(e) = self.call_quiet(core, func::FWD_DETACH, 0) {
                first_error.get_or_insert(e);
            }
        }
        for &core in &self.cores {
            match crate::invoke::merge_sync(self.port, false, core) {
                Ok(0) => {}
                Ok(r) => {
                    first_error.get_or_insert(Error::failed(format!("proxy: UNMERGE on core {core} answered {r:#x}")));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(self.stats),
        }
    }
}

/// Opens the doorbell UART raw and non-blocking.
fn open_doorbell() -> Result<File, Error> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(DOORBELL_TTY)
        .map_err(|e| Error::failed(format!("proxy: opening the doorbell UART {DOORBELL_TTY}: {e} (needs duet's partitioned VM)")))?;
    // SAFETY: termios is plain data; tcgetattr fills it, cfmakeraw edits it, tcsetattr reads it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(tty.as_raw_fd(), &mut t) != 0 {
            return Err(Error::failed(format!("proxy: tcgetattr {DOORBELL_TTY}: {}", std::io::Error::last_os_error())));
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &t) != 0 {
            return Err(Error::failed(format!("proxy: tcsetattr {DOORBELL_TTY}: {}", std::io::Error::last_os_error())));
        }
    }
    Ok(tty)
}

