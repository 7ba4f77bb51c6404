//! Device models for duet guests: register machines that know nothing of KVM or epoll.
//!
//! The `vmm` crate routes a vCPU's port I/O to a [`bus::PioBus`] and turns device signals (an
//! [`EventFdTrigger`] for interrupts, a [`stop::StopSignal`] for guest-requested stops) into KVM actions.
//!
//! - [`serial`]: a 16550A UART (vm-superio) on COM1 whose output goes to a [`console::ConsoleSink`].
//! - [`i8042`]: the keyboard controller's CPU-reset line (how Linux reboots).
//! - [`debug_port`]: duet's debug/exit port: the guest writes an exit status or a timestamp mark.
//! - [`virtio`]: virtio-mmio devices (block, net, vsock) for Linux's stock drivers; the VMM routes the
//!   MMIO window to [`virtio::mmio::MmioTransport`], queue notifications from ioeventfds to its `notify`,
//!   and its interrupt eventfd to an irqfd.

pub mod bus;
pub mod console;
pub mod debug_port;
pub mod i8042;
pub mod serial;
pub mod stop;
pub mod virtio;

use vmm_sys_util::eventfd::EventFd;

/// A [`vm_superio::Trigger`] that signals an eventfd (wired by the VMM to an irqfd or its event loop).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

impl EventFdTrigger {
    /// A new non-blocking eventfd trigger.
    pub fn new() -> std::io::Result<Self> {
        Ok(EventFdTrigger(EventFd::new(EFD_NONBLOCK)?))
    }

    /// A second handle on the same eventfd.
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(EventFdTrigger(self.0.try_clone()?))
    }
}

/// `EFD_NONBLOCK`, for the eventfds devices create.
pub(crate) const EFD_NONBLOCK: i32 = libc::EFD_NONBLOCK;
