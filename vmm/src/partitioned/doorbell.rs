//! The doorbells of a partitioned VM (docs/hypercalls.md §7), wired in every partitioned VM.
//!
//! - **HRT doorbell** (ROS → HRT core): for each HRT core `i`, one eventfd that is an ioeventfd in the
//!   ROS's KVM VM (a 4-byte `out` to [`HRT_DOORBELL_PORT`] with EAX = `i`) and an irqfd in the HRT's KVM
//!   VM on GSI [`DOORBELL_GSI_BASE`] + `i`, whose routing entry is an MSI with the HRT's wake vector to
//!   core `i`'s APIC ID — the same message an invoke sends. The kernel does it all: no exit to duet.
//!   The routes are set again on every HRT boot ([`PartitionedVm::route_doorbells`]), since the wake vector is
//!   the booted image's.
//! - **ROS doorbell** (HRT core → ROS): for each HRT core `i`, one eventfd that is an ioeventfd in the
//!   HRT's KVM VM (a 4-byte `out` to [`ROS_DOORBELL_PORT`] with EAX = `i`). A relay thread
//!   ([`DoorbellRelay`]) waits on them and puts `i`, as one byte, into a 16550 at COM2
//!   ([`ROS_DOORBELL_UART`], IRQ [`ROS_DOORBELL_IRQ`] through an irqfd) on the ROS's bus; a ROS process
//!   blocked in `read()` on it (Linux: `/dev/ttyS1`) wakes. Rings that come faster than the relay
//!   runs coalesce, and a full receive FIFO drops the byte: the ROS side rescans on any byte.
//!
//! Writes that match no ioeventfd (a value that is no core index, another width) reach duet's port
//! buses, where [`StrayDoorbell`] drops them.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use devices::bus::{PioBus, PioDevice};
use devices::serial::{SerialPort, SERIAL_PORTS};
use devices::EventFdTrigger;
use hvm::abi::{HRT_DOORBELL_PORT, ROS_DOORBELL_IRQ, ROS_DOORBELL_PORT, ROS_DOORBELL_UART};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_irqchip, kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::topology::msi_address;
use super::PartitionedVm;
use crate::error::VmmError;

/// The HRT doorbell of core `i` is GSI 24 + `i` in the HRT's KVM VM (after the IOAPIC's 24 pins).
pub const DOORBELL_GSI_BASE: u32 = 24;
/// Ports each doorbell covers (the 4-byte `out`).
const DOORBELL_PORTS: u16 = 4;
/// The IOAPIC's pins (KVM's default routing covers GSIs 0–23).
const IOAPIC_PINS: u32 = 24;
/// How long the relay sleeps between looks at the stop flag (a stop also kicks it out of its wait).
const RELAY_TICK_MS: i32 = 100;
/// Stray doorbell writes logged one by one before the log goes quiet (then every 1000th).
const STRAY_LOG_LIMIT: u64 = 16;

/// KVM's default routing for an in-kernel irqchip: GSI `g` < 16 to PIC pin `g % 8` and IOAPIC pin
/// `g`, GSIs 16–23 to the IOAPIC only. `KVM_SET_GSI_ROUTING` replaces the whole table, so these are
/// kept beside the doorbells' MSI routes.
fn irqchip_routes() -> Vec<kvm_irq_routing_entry> {
    let chip = |gsi: u32, irqchip: u32, pin: u32| {
        let mut e = kvm_irq_routing_entry { gsi, type_: KVM_IRQ_ROUTING_IRQCHIP, ..Default::default() };
        e.u.irqchip = kvm_irq_routing_irqchip { irqchip, pin };
        e
    };
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        routes.push(chip(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        if gsi < 16 {
            let pic = if gsi < 8 { KVM_IRQCHIP_PIC_MASTER } else { KVM_IRQCHIP_PIC_SLAVE };
            routes.push(chip(gsi, pic, gsi % 8));
        }
    }
    routes
}

/// The HRT VM's routing table: the irqchip's default routes, and for each core (by index, `apic_ids`)
/// an MSI with `wake_vector` on GSI [`DOORBELL_GSI_BASE`] + index. Without a wake vector (0: an HRT
/// without the 64-bit HVM entry) the doorbells get no route and ringing does nothing.
pub fn doorbell_routes(apic_ids: &[u32], wake_vector: u32) -> Vec<kvm_irq_routing_entry> {
    let mut routes = irqchip_routes();
    if wake_vector == 0 {
        return routes;
    }
    for (core, &apic) in apic_ids.iter().enumerate() {
        let mut e = kvm_irq_routing_entry {
            gsi: DOORBELL_GSI_BASE + core as u32,
            type_: KVM_IRQ_ROUTING_MSI,
            ..Default::default()
        };
        e.u.msi = kvm_irq_routing_msi {
            address_lo: msi_address(apic),
            address_hi: 0,
            data: wake_vector,
            ..Default::default()
        };
        routes.push(e);
    }
    routes
}

fn set_routes(vm: &VmFd, routes: &[kvm_irq_routing_entry]) -> Result<(), kvm_ioctls::Error> {
    let table = KvmIrqRouting::from_entries(routes).map_err(|_| kvm_ioctls::Error::new(libc::E2BIG))?;
    vm.set_gsi_routing(&table)
}

impl PartitionedVm {
    /// Points the HRT doorbells at the wake vector of the image just booted (called by the supervisor
    /// before it releases the cores). A failure leaves the doorbells silent, not the HRT broken.
    pub(super) fn route_doorbells(&self, wake_vector: u32) {
        let routes = doorbell_routes(&self.topology.hrt_apic_ids, wake_vector);
        match set_routes(&self.hrt_vm, &routes) {
            Ok(()) => log::debug!("hvm: HRT doorbells routed to vector {wake_vector:#x}"),
            Err(e) => {
                log::warn!("hvm: routing the HRT doorbells failed ({e}): ringing port 0xe8 will not wake HRT cores")
            }
        }
    }
}

/// Writes to a doorbell port that no ioeventfd took: a value that is no core index, or another width.
/// Dropped; reads see all ones, as on an unclaimed port.
#[derive(Debug)]
pub struct StrayDoorbell {
    port: u16,
    strays: u64,
}

impl StrayDoorbell {
    /// The device for doorbell port `port` (for the log).
    pub fn new(port: u16) -> Self {
        StrayDoorbell { port, strays: 0 }
    }
}

impl PioDevice for StrayDoorbell {
    fn read(&mut self, _offset: u16, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        self.strays += 1;
        let n = self.strays;
        if n <= STRAY_LOG_LIMIT || n % 1000 == 0 {
            log::debug!(
                "doorbell: write {data:02x?} to port {:#x} names no HRT core; ignored ({n} so far)",
                u32::from(self.port) + u32::from(offset)
            );
        }
    }
}

/// The doorbell UART: a 16550 whose output is discarded.
pub type DoorbellUart = Arc<Mutex<SerialPort<io::Sink>>>;

/// The wired doorbells, kept for the VM's life (the eventfds stay registered with KVM until the VMs
/// are closed).
pub struct Doorbells {
    /// The HRT doorbells' eventfds, by core index (ioeventfd in the ROS's VM, irqfd in the HRT's).
    hrt: Vec<EventFd>,
    /// The relay of the ROS doorbells, until [`crate::Vm::run`] starts its thread.
    pub relay: Option<DoorbellRelay>,
}

impl std::fmt::Debug for Doorbells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doorbells").field("cores", &self.hrt.len()).finish_non_exhaustive()
    }
}

/// What [`wire`] needs.
pub struct WireArgs<'a> {
    /// The ROS's KVM VM.
    pub ros_vm: &'a VmFd,
    /// The HRT's KVM VM.
    pub hrt_vm: &'a VmFd,
    /// The HRT cores' APIC IDs, by core index.
    pub hrt_apic_ids: &'a [u32],
    /// The ROS's port bus (gets the doorbell UART and the HRT doorbell's stray-write device).
    pub ros_bus: &'a mut PioBus,
    /// The HRT's port bus (gets the ROS doorbell's stray-write device).
    pub hrt_bus: &'a mut PioBus,
    /// The VM-wide stop flag (ends the relay).
    pub stopping: Arc<AtomicBool>,
}

fn eventfd(what: &'static str) -> Result<EventFd, VmmError> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io(what))
}

/// Wires both doorbells of a partitioned VM (see the module documentation).
pub fn wire(a: WireArgs<'_>) -> Result<Doorbells, VmmError> {
    let mut hrt = Vec::with_capacity(a.hrt_apic_ids.len());
    let mut ros = Vec::with_capacity(a.hrt_apic_ids.len());
    for core in 0..a.hrt_apic_ids.len() as u32 {
        let evt = eventfd("creating an HRT doorbell eventfd")?;
        a.ros_vm
            .register_ioevent(&evt, &IoEventAddress::Pio(u64::from(HRT_DOORBELL_PORT)), core)
            .map_err(VmmError::kvm("KVM_IOEVENTFD (HRT doorbell, in the ROS's VM)"))?;
        a.hrt_vm
            .register_irqfd(&evt, DOORBELL_GSI_BASE + core)
            .map_err(VmmError::kvm("KVM_IRQFD (HRT doorbell, in the HRT's VM)"))?;
        hrt.push(evt);
        let evt = eventfd("creating a ROS doorbell eventfd")?;
        a.hrt_vm
            .register_ioevent(&evt, &IoEventAddress::Pio(u64::from(ROS_DOORBELL_PORT)), core)
            .map_err(VmmError::kvm("KVM_IOEVENTFD (ROS doorbell, in the HRT's VM)"))?;
        ros.push(evt);
    }
    // Until an HRT boots with a wake vector the doorbells have no route; setting the table now also
    // finds a host without KVM_SET_GSI_ROUTING at build time rather than at the first boot.
    set_routes(a.hrt_vm, &doorbell_routes(a.hrt_apic_ids, 0)).map_err(VmmError::kvm("KVM_SET_GSI_ROUTING (HRT)"))?;

    let irq = EventFdTrigger::new().map_err(VmmError::io("creating the doorbell UART's interrupt eventfd"))?;
    a.ros_vm.register_irqfd(&irq.0, ROS_DOORBELL_IRQ).map_err(VmmError::kvm("KVM_IRQFD (doorbell UART)"))?;
    let uart: DoorbellUart = Arc::new(Mutex::new(SerialPort::new(irq, io::sink())));
    a.ros_bus.insert(ROS_DOORBELL_UART, SERIAL_PORTS, uart.clone())?;
    let stray = |port| Arc::new(Mutex::new(StrayDoorbell::new(port)));
    a.ros_bus.insert(HRT_DOORBELL_PORT, DOORBELL_PORTS, stray(HRT_DOORBELL_PORT))?;
    a.hrt_bus.insert(ROS_DOORBELL_PORT, DOORBELL_PORTS, stray(ROS_DOORBELL_PORT))?;

    let epoll = Epoll::new().map_err(VmmError::io("creating the doorbell relay's epoll"))?;
    for (core, evt) in ros.iter().enumerate() {
        epoll
            .ctl(ControlOperation::Add, evt.as_raw_fd(), EpollEvent::new(EventSet::IN, core as u64))
            .map_err(VmmError::io("watching a ROS doorbell eventfd"))?;
    }
    let relay = DoorbellRelay { epoll, evts: ros, uart, stopping: a.stopping };
    Ok(Doorbells { hrt, relay: Some(relay) })
}

/// Carries ROS doorbell rings (HRT core `i` wrote `i` to [`ROS_DOORBELL_PORT`]) to the doorbell UART:
/// one byte `i` per ring it sees.
pub struct DoorbellRelay {
    epoll: Epoll,
    evts: Vec<EventFd>,
    uart: DoorbellUart,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for DoorbellRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoorbellRelay").field("cores", &self.evts.len()).finish_non_exhaustive()
    }
}

impl DoorbellRelay {
    /// Relays until the VM stops (its stop flag; the kick that comes with it ends the wait at once).
    /// Never blocks a vCPU for longer than one enqueue under the UART's lock.
    pub fn run(self) {
        let mut events = vec![EpollEvent::default(); self.evts.len().max(1)];
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let n = match self.epoll.wait(RELAY_TICK_MS, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("doorbell relay: waiting failed ({e}); ROS doorbells are no longer delivered");
                    return;
                }
            };
            for ev in &events[..n] {
                let core = ev.data();
                let Some(evt) = usize::try_from(core).ok().and_then(|i| self.evts.get(i)) else {
                    continue;
                };
                // Non-blocking: EAGAIN only means the count was taken already.
                if evt.read().is_ok() {
                    self.deliver(core as u8);
                }
            }
        }
    }

    /// Puts `core` into the UART's receive FIFO (and raises its interrupt); drops it when full.
    fn deliver(&self, core: u8) {
        let mut uart = self.uart.lock().unwrap_or_else(|p| p.into_inner());
        if uart.input_room() == 0 {
            log::debug!("doorbell relay: the UART's FIFO is full; ring of HRT core {core} dropped");
            return;
        }
        if let Err(e) = uart.enqueue_input(&[core]) {
            log::debug!("doorbell relay: ring of HRT core {core}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_keeps_the_irqchip_defaults_and_adds_one_msi_per_core() {
        let routes = doorbell_routes(&[2, 3], 0xf0);
        let chip: Vec<_> = routes.iter().filter(|e| e.type_ == KVM_IRQ_ROUTING_IRQCHIP).collect();
        assert_eq!(chip.len(), 24 + 16);
        let msi: Vec<_> = routes.iter().filter(|e| e.type_ == KVM_IRQ_ROUTING_MSI).collect();
        assert_eq!(msi.len(), 2);
        for (core, e) in msi.iter().enumerate() {
            assert_eq!(e.gsi, DOORBELL_GSI_BASE + core as u32);
            // SAFETY: an MSI entry's union holds `msi` (it was written so above).
            let m = unsafe { e.u.msi };
            assert_eq!((m.address_lo, m.address_hi, m.data), (0xfee0_0000 | ((2 + core as u32) << 12), 0, 0xf0));
        }
        // GSI 10: IOAPIC pin 10 and the slave PIC's pin 2.
        let gsi10: Vec<_> = routes
            .iter()
            .filter(|e| e.gsi == 10)
            // SAFETY: irqchip entries' unions hold `irqchip`.
            .map(|e| unsafe { (e.u.irqchip.irqchip, e.u.irqchip.pin) })
            .collect();
        assert_eq!(gsi10, vec![(KVM_IRQCHIP_IOAPIC, 10), (KVM_IRQCHIP_PIC_SLAVE, 2)]);
        assert_eq!(doorbell_routes(&[2, 3], 0).len(), 24 + 16, "no wake vector: no MSI routes");
    }

    #[test]
    fn stray_writes_are_dropped_and_reads_see_all_ones() {
        let mut d = StrayDoorbell::new(HRT_DOORBELL_PORT);
        for _ in 0..2000 {
            d.write(0, &7u32.to_le_bytes());
        }
        let mut b = [0u8; 4];
        d.read(0, &mut b);
        assert_eq!(b, [0xff; 4]);
        assert_eq!(d.strays, 2000);
    }

    #[test]
    fn the_relay_delivers_one_byte_per_ring_and_stops_on_the_flag() {
        let evts: Vec<EventFd> = (0..2).map(|_| EventFd::new(libc::EFD_NONBLOCK).expect("eventfd")).collect();
        let epoll = Epoll::new().expect("epoll");
        for (i, e) in evts.iter().enumerate() {
            epoll.ctl(ControlOperation::Add, e.as_raw_fd(), EpollEvent::new(EventSet::IN, i as u64)).expect("add");
        }
        let uart: DoorbellUart =
            Arc::new(Mutex::new(SerialPort::new(EventFdTrigger::new().expect("eventfd"), io::sink())));
        let stopping = Arc::new(AtomicBool::new(false));
        let rings: Vec<EventFd> = evts.iter().map(|e| e.try_clone().expect("clone")).collect();
        let relay = DoorbellRelay { epoll, evts, uart: uart.clone(), stopping: stopping.clone() };
        let thread = std::thread::spawn(move || relay.run());
        rings[1].write(1).expect("ring");
        let mut got = Vec::new();
        for _ in 0..500 {
            let mut lsr = [0u8];
            let mut u = uart.lock().expect("uart");
            u.read(5, &mut lsr);
            if lsr[0] & 1 != 0 {
                let mut b = [0u8];
                u.read(0, &mut b);
                got.push(b[0]);
                break;
            }
            drop(u);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(got, vec![1]);
        stopping.store(true, Ordering::Release);
        thread.join().expect("the relay ends on the stop flag");
    }
}
