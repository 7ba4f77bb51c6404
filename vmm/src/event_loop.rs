//! The VMM's event loop (event-manager), on the thread that called `Vm::run`: console input into the
//! serial port, the virtio devices' notifications and backends, and wake-ups from devices and vCPU
//! threads that stop the VM.

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::console::ConsoleSink;
use devices::serial::SerialPort;
use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;
use crate::outcome::ExitReason;
use crate::virtio::DeviceEvents;

/// How often the event loop looks at the clock when nothing happens.
const TICK: Duration = Duration::from_millis(100);

/// What the event loop serves.
pub(crate) struct Sources {
    /// Eventfds whose writes mean "look at `finished` now" (stop requests, faults).
    pub wake: Vec<EventFd>,
    /// The virtio devices' notifications and backends.
    pub devices: Vec<DeviceEvents>,
    /// The serial port stdin feeds, if it does.
    pub console: Option<Arc<Mutex<SerialPort<ConsoleSink>>>>,
}

/// Serves `sources` until `finished` says why the VM ended, or `timeout` passes.
pub(crate) fn run(sources: Sources, timeout: Option<Duration>, finished: impl Fn() -> Option<ExitReason>) -> Result<ExitReason, VmmError> {
    let woken = Arc::new(AtomicBool::new(false));
    let mut em: EventManager<Box<dyn MutEventSubscriber + Send>> = EventManager::new()
        .map_err(|e| VmmError::Io { what: "creating the event loop", source: std::io::Error::other(format!("{e:?}")) })?;
    em.add_subscriber(Box::new(Waker::new(sources.wake, woken.clone())));
    for d in sources.devices {
        em.add_subscriber(Box::new(d));
    }
    let _terminal = sources.console.map(|serial| {
        em.add_subscriber(Box::new(ConsoleInput::new(serial)));
        TerminalGuard::new()
    });
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if let Some(reason) = finished() {
            return Ok(reason);
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(ExitReason::Timeout);
                }
                left.min(TICK)
            }
            None => TICK,
        };
        if let Err(e) = em.run_with_timeout(wait.as_millis().max(1) as i32) {
            log::warn!("event loop: {e:?}");
        }
        woken.store(false, Ordering::Relaxed);
    }
}

/// Wakes the loop when a stop was requested (debug port, i8042) or a vCPU faulted.
pub struct Waker {
    fds: Vec<EventFd>,
    woken: Arc<AtomicBool>,
}

impl Waker {
    /// Watches `fds` (duplicates of the signalling eventfds); sets `woken` when any fires.
    pub fn new(fds: Vec<EventFd>, woken: Arc<AtomicBool>) -> Self {
        Waker { fds, woken }
    }
}

impl MutEventSubscriber for Waker {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if let Some(fd) = self.fds.iter().find(|f| f.as_raw_fd() == events.fd()) {
            // Draining a non-blocking eventfd; EAGAIN just means another wake-up consumed it.
            let _ = fd.read();
        }
        self.woken.store(true, Ordering::Release);
    }

    fn init(&mut self, ops: &mut EventOps) {
        for fd in &self.fds {
            if let Err(e) = ops.add(Events::new(fd, EventSet::IN)) {
                log::error!("event loop: cannot watch a wake-up eventfd: {e:?}");
            }
        }
    }
}

/// Forwards the VMM's standard input to the guest's serial port.
pub struct ConsoleInput {
    serial: Arc<Mutex<SerialPort<ConsoleSink>>>,
    stdin: std::io::Stdin,
}

impl ConsoleInput {
    /// Input for `serial`.
    pub fn new(serial: Arc<Mutex<SerialPort<ConsoleSink>>>) -> Self {
        ConsoleInput { serial, stdin: std::io::stdin() }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let room = self.serial.lock().unwrap_or_else(|p| p.into_inner()).input_room();
        if room == 0 {
            // The guest has not drained its receive FIFO yet; let it run a little.
            std::thread::sleep(std::time::Duration::from_millis(1));
            return;
        }
        let mut buf = [0u8; 64];
        let want = room.min(buf.len());
        match self.stdin.lock().read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                // End of input (or a broken terminal): stop watching it, keep the VM running.
                let _ = ops.remove(events);
            }
            Ok(n) => {
                let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = serial.enqueue_input(&buf[..n]) {
                    log::warn!("console input: {e}");
                }
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        match ops.add(Events::new(&self.stdin, EventSet::IN)) {
            Ok(()) => {}
            // epoll refuses regular files and /dev/null: there is no input to wait for.
            Err(event_manager::Error::Epoll(e)) if e.errno() == libc::EPERM => {
                log::debug!("console input: standard input is a file or /dev/null; the guest gets no input");
            }
            Err(e) => log::warn!("console input unavailable: standard input cannot be watched ({e})"),
        }
    }
}

/// Puts a terminal on stdin into non-canonical, no-echo mode for the guest's console, and restores it.
pub struct TerminalGuard {
    fd: RawFd,
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    /// Switches stdin if it is a terminal; otherwise does nothing.
    pub fn new() -> Self {
        let fd = libc::STDIN_FILENO;
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } != 1 {
            return TerminalGuard { fd, saved: None };
        }
        // SAFETY: an all-zero termios is a valid value for tcgetattr to overwrite.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid termios for the call to fill.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return TerminalGuard { fd, saved: None };
        }
        let saved = t;
        // Keep ISIG so Ctrl-C still ends duet; the guest gets every other key as typed.
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_iflag &= !(libc::ICRNL);
        // SAFETY: `t` is a valid termios derived from the current one.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        TerminalGuard { fd, saved: Some(saved) }
    }
}

impl Default for TerminalGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restoring the termios read from this descriptor in `new`.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &t) };
        }
    }
}
