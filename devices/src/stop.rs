//! How a device asks the VMM to stop the VM (the guest wrote an exit status, or reset the CPU).

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Why the guest wants to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// The guest wrote this status to the debug exit port.
    Exit(u32),
    /// The guest reset the CPU (i8042 reset line): Linux's `reboot`.
    Reset,
}

/// A one-shot stop request shared by devices and the VMM's event loop. The first request wins.
#[derive(Debug)]
pub struct StopSignal {
    evt: EventFd,
    request: Mutex<Option<StopRequest>>,
}

impl StopSignal {
    /// A new signal with a non-blocking eventfd.
    pub fn new() -> std::io::Result<Self> {
        Ok(StopSignal { evt: EventFd::new(crate::EFD_NONBLOCK)?, request: Mutex::new(None) })
    }

    /// Records `request` (unless one is already recorded) and wakes the event loop.
    pub fn request(&self, request: StopRequest) {
        let mut slot = self.request.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(request);
        }
        // The eventfd counter cannot overflow from a handful of writes; a failure only delays the stop
        // until the next wake-up of the event loop.
        let _ = self.evt.write(1);
    }

    /// The recorded request, if any.
    pub fn requested(&self) -> Option<StopRequest> {
        *self.request.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eventfd the event loop waits on.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins_and_wakes() {
        let s = StopSignal::new().expect("eventfd");
        assert_eq!(s.requested(), None);
        s.request(StopRequest::Exit(3));
        s.request(StopRequest::Reset);
        assert_eq!(s.requested(), Some(StopRequest::Exit(3)));
        assert_eq!(s.eventfd().read().expect("signalled"), 2);
    }
}
