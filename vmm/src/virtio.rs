//! The ROS's virtio-mmio devices, wired to KVM: where they sit, their interrupts and notifications,
//! the MMIO bus the vCPU threads dispatch to, and the event-loop subscriber that runs their work.
//!
//! The devices themselves (`devices::virtio`) know nothing of KVM. Here each gets:
//! - a 4 KiB window in the MMIO gap from [`VIRTIO_MMIO_START`] (block devices first, then net, then
//!   vsock, in config order), which the vCPU threads serve through [`MmioBus`];
//! - one IOAPIC line from [`FIRST_IRQ`] up (COM1 is 4, the doorbell UART 3), raised through an irqfd;
//! - one ioeventfd per queue on its QueueNotify register (datamatch = the queue index), so a
//!   notification costs no exit to user space; the event loop calls `notify(queue)`;
//! - its backend descriptor (TAP, vsock's epoll), polled edge-triggered by the event loop.
//!
//! Linux learns about them from `virtio_mmio.device=4K@BASE:IRQ` on its command line
//! ([`cmdline_fragments`], added by [`crate::plan`]). In a partitioned VM the devices belong to the ROS:
//! they are given the ROS's memory view, so no descriptor can reach the HRT's RAM.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boot::layout::{VIRTIO_MMIO_END, VIRTIO_MMIO_START};
use config::DevicesConfig;
use devices::virtio::block::{Block, BlockOptions};
use devices::virtio::mmio::{cmdline_fragment, MmioTransport, MMIO_WINDOW_SIZE, QUEUE_NOTIFY_OFFSET};
use devices::virtio::net::{Net, Tap};
use devices::virtio::vsock::Vsock;
use devices::virtio::{Memory, VirtioDevice};
use devices::EventFdTrigger;
use event_manager::{EventOps, Events, MutEventSubscriber};
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;

/// The first device's interrupt line (ISA IRQ 5); the next devices take 6, 7, ...
pub const FIRST_IRQ: u32 = 5;
/// The last IOAPIC line a device may take.
const LAST_IRQ: u32 = 23;
/// The event data of a device's backend descriptor (queue indices are small).
const BACKEND: u32 = u32::MAX;

/// What kind of device a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// virtio-blk (`[[block]]`).
    Block,
    /// virtio-net (`[[net]]`).
    Net,
    /// virtio-vsock (`[vsock]`).
    Vsock,
}

/// Where one configured device sits: its window and its interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The kind of device.
    pub kind: DeviceKind,
    /// Its index among the devices of its kind in the config.
    pub index: usize,
    /// Guest-physical base of its 4 KiB window.
    pub base: u64,
    /// Its IOAPIC line (GSI).
    pub irq: u32,
}

impl Placement {
    /// The device's name in messages, as in the config: `block[0]`, `net[1]`, `vsock`.
    pub fn name(&self) -> String {
        match self.kind {
            DeviceKind::Block => format!("block[{}]", self.index),
            DeviceKind::Net => format!("net[{}]", self.index),
            DeviceKind::Vsock => "vsock".to_string(),
        }
    }
}

/// Where the configured devices go: block devices, then net, then vsock, each in config order.
pub fn placements(devices: &DevicesConfig) -> Result<Vec<Placement>, VmmError> {
    let kinds = (0..devices.block.len())
        .map(|i| (DeviceKind::Block, i))
        .chain((0..devices.net.len()).map(|i| (DeviceKind::Net, i)))
        .chain(devices.vsock.iter().map(|_| (DeviceKind::Vsock, 0)));
    let mut out = Vec::new();
    for (slot, (kind, index)) in kinds.enumerate() {
        let slot32 = u32::try_from(slot).unwrap_or(u32::MAX);
        let irq = FIRST_IRQ.saturating_add(slot32);
        let base = VIRTIO_MMIO_START + slot as u64 * MMIO_WINDOW_SIZE;
        if irq > LAST_IRQ || base + MMIO_WINDOW_SIZE > VIRTIO_MMIO_END {
            return Err(VmmError::Unsupported("more than 19 virtio devices"));
        }
        out.push(Placement { kind, index, base, irq });
    }
    Ok(out)
}

/// The kernel command-line parameters that tell Linux where the devices are.
pub fn cmdline_fragments(devices: &DevicesConfig) -> Result<Vec<String>, VmmError> {
    Ok(placements(devices)?.iter().map(|p| cmdline_fragment(p.base, p.irq)).collect())
}

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

    /// Whether the bus has no device.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
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
/// socket that cannot be bound) and attaches them to `vm`, whose guest sees the RAM in `mem`.
pub fn attach(vm: &VmFd, mem: &Memory, devices: &DevicesConfig) -> Result<VirtioDevices, VmmError> {
    let mut bus = MmioBus::default();
    let mut events = Vec::new();
    for place in placements(devices)? {
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
    use std::path::PathBuf;

    use super::*;

    fn devices(blocks: usize, nets: usize, vsock: bool) -> DevicesConfig {
        DevicesConfig {
            block: (0..blocks).map(|_| config::BlockConfig::new(PathBuf::from("d.img"))).collect(),
            net: (0..nets).map(|i| config::NetConfig { tap: format!("tap{i}"), mac: None }).collect(),
            vsock: vsock.then(|| config::VsockConfig { cid: 3, socket: PathBuf::from("v") }),
        }
    }

    #[test]
    fn devices_take_windows_and_lines_in_order() {
        let p = placements(&devices(2, 1, true)).expect("placements");
        let got: Vec<_> = p.iter().map(|p| (p.name(), p.base, p.irq)).collect();
        assert_eq!(
            got,
            vec![
                ("block[0]".to_string(), 0xd000_0000, 5),
                ("block[1]".to_string(), 0xd000_1000, 6),
                ("net[0]".to_string(), 0xd000_2000, 7),
                ("vsock".to_string(), 0xd000_3000, 8),
            ]
        );
        assert_eq!(cmdline_fragments(&devices(1, 0, false)).expect("fragments"), vec!["virtio_mmio.device=4K@0xd0000000:5"]);
    }

    #[test]
    fn windows_stay_clear_of_ram_and_the_interrupt_controllers() {
        let p = placements(&devices(8, 4, true)).expect("placements");
        for w in &p {
            assert!(w.base >= boot::layout::MMIO_GAP_START && w.base + MMIO_WINDOW_SIZE <= boot::layout::IOAPIC_START);
            assert!(w.irq != devices::serial::COM1_IRQ && w.irq != hvm::abi::ROS_DOORBELL_IRQ && w.irq <= LAST_IRQ);
        }
        assert!(placements(&devices(20, 0, false)).is_err());
    }

    #[test]
    fn an_empty_bus_serves_nothing() {
        let bus = MmioBus::default();
        let mut b = [0u8; 4];
        assert!(!bus.read(VIRTIO_MMIO_START, &mut b));
        assert!(!bus.write(VIRTIO_MMIO_START, &b));
    }
}
