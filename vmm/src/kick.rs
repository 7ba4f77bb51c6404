//! Stopping vCPU threads: set the shared flag, then signal each thread until it has left KVM_RUN.
//!
//! A signal delivered while a thread is inside KVM_RUN makes the ioctl return EINTR; one delivered just
//! before it enters is lost, so kicks repeat every millisecond until the thread has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::Duration;

use std::os::unix::thread::JoinHandleExt;
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

use crate::error::VmmError;

/// The signal used to kick vCPU threads out of KVM_RUN.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the (empty) kick handler once per process. The outcome is remembered: if installing failed,
/// every later call fails too (a vCPU kicked without the handler would take the signal's default action
/// and end the process).
pub fn install_handler() -> Result<(), VmmError> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let outcome = INSTALLED.get_or_init(|| register_signal_handler(kick_signal(), on_kick).map_err(|e| e.errno()));
    outcome.map_err(|errno| VmmError::Io {
        what: "installing the vCPU kick handler",
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// Stops and joins every vCPU thread.
pub fn stop_all(stopping: &AtomicBool, handles: Vec<JoinHandle<()>>) {
    stopping.store(true, Ordering::Release);
    for h in handles {
        while !h.is_finished() {
            // SAFETY: the thread has not been joined, so its pthread_t is valid; the signal's handler is
            // installed and does nothing.
            unsafe { libc::pthread_kill(h.as_pthread_t(), kick_signal()) };
            std::thread::sleep(Duration::from_millis(1));
        }
        if h.join().is_err() {
            log::error!("a vCPU thread panicked");
        }
    }
}
