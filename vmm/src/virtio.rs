//! The ROS's virtio-mmio devices, wired to KVM: their interrupts and notifications, the MMIO bus the
//! vCPU threads dispatch to, and the event-loop subscriber that runs their work.
//!
//! The devices themselves (`devices::virtio`) know nothing of KVM. Each one, at the window and line
//! the plan placed it (`crate::placement`), gets:
//! - its window on the [`MmioBus`] the vCPU threads serve;
//! - its IOAPIC line, raised through an irqfd;
//! - one ioeventfd per queue on its QueueNotify register (datamatch = the queue index), so a
//!   notification costs no exit to user space; the event loop calls `notify(queue)`;
//! - its backend descriptor (TAP, vsock's epoll), polled edge-triggered by the event loop.
//!
//! In a partitioned VM the devices belong to the ROS: they are given the ROS's memory view, so no
//! descriptor can reach the HRT's RAM.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::DevicesConfig;
use devices::virtio::block::{Block, BlockOptions};
use devices::virtio::mmio::{MmioTransport, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET};
use devices::virtio::net::{Net, Tap};
use devices::virtio::vsock::Vsock;
use devices::virtio::{Memory, VirtioDevice};
use devices::EventFdTrigger;
use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;
use crate::placement::{DeviceKind, Placement};

/// The event data of a device's backend descriptor (queue indices are small).
const BACKEND: u32 = u32::MAX;

/// duet's MAC for net device `index` when the config gives none: locally administered, unicast,
/// `02:64:75:65:74:<index>` ("duet").
pub fn default_mac(index: usize) -> [u8; 6] {
    [0x02, 0x64, 0x75, 0x65, 0x74, index as u8]
}

/// A transport with any device behind it.
pub type Transport = MmioTransport<Box<dyn VirtioDevice>>;

/// The virtio-mmio windows, for the vCPU threads' MMIO exits.
#[derive(Default)]
pub struct MmioBus {
    windows: Vec<(u64, Arc<Mutex<Transport>>)>,
}

impl std::fmt::Debug for MmioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.windows.iter().map(|(base, _)| format!("{base:#x}"))).finish()
    }
}

impl MmioBus {
    fn find(&self, addr: u64, len: usize) -> Option<(&Arc<Mutex<Transport>>, u64)> {
        let (base, t) = self.windows.iter().find(|(base, _)| (*base..*base + MMIO_WINDOW_SIZE).contains(&addr))?;
        let offset = addr - base;
        // An access that runs past the window's end is not the device's.
        (offset + len as u64 <= MMIO_WINDOW_SIZE).then_some((t, offset))
    }

    /// Serves a guest read at `addr`; false if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((t, offset)) = self.find(addr, data.len()) else { return false };
        t.lock().unwrap_or_else(|p| p.into_inner()).read(offset, data);
        true
    }

    /// Serves a guest write at `addr`; false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((t, offset)) = self.find(addr, data.len()) else { return false };
        t.lock().unwrap_or_else(|p| p.into_inner()).write(offset, data);
        true
    }
}

/// One device's descriptors on the event loop: its queue notifications and its backend.
pub struct DeviceEvents {
    name: String,
    transport: Arc<Mutex<Transport>>,
    notifiers: Vec<EventFd>,
    backend: Option<RawFd>,
    /// Events served and the time spent serving them (the VMM's share of each request).
    served: u64,
    busy: Duration,
}

impl MutEventSubscriber for DeviceEvents {
    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let start = Instant::now();
        let mut t = self.transport.lock().unwrap_or_else(|p| p.into_inner());
        if events.data() == BACKEND {
            t.process_backend();
        } else if let Some(evt) = self.notifiers.get(events.data() as usize) {
            // Draining a non-blocking eventfd; EAGAIN means nothing new, and the queue is looked at anyway.
            let _ = evt.read();
            t.notify(events.data() as u16);
        }
        drop(t);
        self.served += 1;
        self.busy += start.elapsed();
    }

    fn init(&mut self, ops: &mut EventOps) {
        for (queue, evt) in self.notifiers.iter().enumerate() {
            if let Err(e) = ops.add(Events::with_data(evt, queue as u32, EventSet::IN)) {
                log::error!("{}: cannot watch queue {queue}'s notifications: {e:?}", self.name);
            }
        }
        if let Some(fd) = self.backend {
            // Edge-triggered: `process_backend` takes what the guest has buffers for; the rest waits
            // for the driver's next notification (see `VirtioDevice::backend_fd`).
            let set = EventSet::IN | EventSet::EDGE_TRIGGERED;
            if let Err(e) = ops.add(Events::with_data_raw(fd, BACKEND, set)) {
                log::error!("{}: cannot watch its backend: {e:?}", self.name);
            }
        }
    }
}

impl Drop for DeviceEvents {
    fn drop(&mut self) {
        if self.served > 0 {
            log::info!(
                "{}: {} event(s) served in {:.1?} ({:.1?} each)",
                self.name,
                self.served,
                self.busy,
                self.busy / u32::try_from(self.served).unwrap_or(u32::MAX)
            );
        }
    }
}

/// The ROS's devices, attached to its KVM VM.
pub struct VirtioDevices {
    /// The windows, for the vCPU threads.
    pub bus: Arc<MmioBus>,
    /// Their descriptors, for the event loop.
    pub events: Vec<DeviceEvents>,
}

/// Opens the configured devices (named errors: a missing or locked image, an absent or busy TAP, a
/// socket that cannot be bound) and attaches them to `vm`, whose guest sees the RAM in `mem`, where
/// `placements` put them.
pub(crate) fn attach(vm: &VmFd, mem: &Memory, placements: &[Placement], devices: &DevicesConfig) -> Result<VirtioDevices, VmmError> {
    let mut bus = MmioBus::default();
    let mut events = Vec::new();
    for &place in placements {
        let name = place.name();
        let device: Box<dyn VirtioDevice> = match place.kind {
            DeviceKind::Block => {
                let b = &devices.block[place.index];
                let options = BlockOptions { read_only: b.read_only, serial: b.serial.clone() };
                let dev = Block::open(&b.path, options)
                    .map_err(|source| VmmError::Block { name: name.clone(), path: b.path.clone(), source })?;
                Box::new(dev)
            }
            DeviceKind::Net => {
                let n = &devices.net[place.index];
                let tap = Tap::open(&n.tap).map_err(|source| VmmError::Net { name: name.clone(), source })?;
                Box::new(Net::new(tap, n.mac.unwrap_or_else(|| default_mac(place.index))))
            }
            DeviceKind::Vsock => {
                let v = devices.vsock.as_ref().ok_or(VmmError::Unsupported("a vsock placement without [vsock]"))?;
                Box::new(Vsock::new(v.cid, &v.socket).map_err(|source| VmmError::Vsock { source })?)
            }
        };
        let trigger = EventFdTrigger::new().map_err(VmmError::io("creating a virtio interrupt eventfd"))?;
        vm.register_irqfd(&trigger.0, place.irq).map_err(VmmError::kvm("KVM_IRQFD (virtio)"))?;
        let backend = device.backend_fd();
        let transport = MmioTransport::new(device, mem.clone(), trigger);
        let mut notifiers = Vec::new();
        for queue in 0..transport.queue_count() {
            let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("creating a virtio queue eventfd"))?;
            let addr = IoEventAddress::Mmio(place.base + QUEUE_NOTIFY_OFFSET);
            vm.register_ioevent(&evt, &addr, u32::from(queue)).map_err(VmmError::kvm("KVM_IOEVENTFD (virtio)"))?;
            notifiers.push(evt);
        }
        log::debug!(
            "{name}: virtio-mmio at {:#x}, IRQ {}, {} queue(s){}",
            place.base,
            place.irq,
            notifiers.len(),
            if backend.is_some() { ", backend polled" } else { "" }
        );
        let transport = Arc::new(Mutex::new(transport));
        bus.windows.push((place.base, transport.clone()));
        events.push(DeviceEvents { name, transport, notifiers, backend, served: 0, busy: Duration::ZERO });
    }
    Ok(VirtioDevices { bus: Arc::new(bus), events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_bus_serves_nothing() {
        let bus = MmioBus::default();
        let mut b = [0u8; 4];
        assert!(!bus.read(boot::layout::VIRTIO_MMIO_START, &mut b));
        assert!(!bus.write(boot::layout::VIRTIO_MMIO_START, &b));
    }
}
