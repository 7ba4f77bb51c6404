//! Where the ROS's virtio-mmio devices sit, computed once from the config as plain data: the plan
//! tells Linux (command line and ACPI) and the VM attaches the devices at the same places.
//!
//! Each device gets a 4 KiB window in the MMIO gap from [`VIRTIO_MMIO_START`] (block devices first, then
//! net, then vsock, in config order) and one IOAPIC line from [`FIRST_IRQ`] up (COM1 is 4, the doorbell
//! UART 3).

use boot::layout::{VIRTIO_MMIO_END, VIRTIO_MMIO_START};
use config::DevicesConfig;
use devices::virtio::mmio::{cmdline_fragment, MMIO_WINDOW_SIZE};

use crate::error::VmmError;

/// The first device's interrupt line (ISA IRQ 5); the next devices take 6, 7, ...
pub(crate) const FIRST_IRQ: u32 = 5;
/// The last IOAPIC line a device may take.
pub(crate) const LAST_IRQ: u32 = 23;

/// What kind of device a window holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    /// virtio-blk (`[[block]]`).
    Block,
    /// virtio-net (`[[net]]`).
    Net,
    /// virtio-vsock (`[vsock]`).
    Vsock,
}

/// Where one configured device sits: its window and its interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
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

    /// The kernel command-line parameter that tells Linux where the device is.
    pub fn cmdline_fragment(&self) -> String {
        cmdline_fragment(self.base, self.irq)
    }

    /// The device as Linux's ACPI tables describe it.
    pub fn acpi(&self) -> boot::acpi::MmioDevice {
        boot::acpi::MmioDevice {
            base: self.base,
            size: u32::try_from(MMIO_WINDOW_SIZE).unwrap_or(0x1000),
            irq: self.irq,
        }
    }
}

/// Where the configured devices go: block devices, then net, then vsock, each in config order.
pub(crate) fn placements(devices: &DevicesConfig) -> Result<Vec<Placement>, VmmError> {
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
        let one = placements(&devices(1, 0, false)).expect("placements");
        assert_eq!(one.iter().map(Placement::cmdline_fragment).collect::<Vec<_>>(), vec!["virtio_mmio.device=4K@0xd0000000:5"]);
    }

    #[test]
    fn windows_stay_clear_of_ram_and_the_interrupt_controllers() {
        let p = placements(&devices(8, 4, true)).expect("placements");
        for w in &p {
            assert!(w.base >= boot::layout::MMIO_GAP_START && w.base + MMIO_WINDOW_SIZE <= boot::layout::IOAPIC_START);
            assert!(w.irq != devices::serial::COM1_IRQ && w.irq != abi::ROS_DOORBELL_IRQ && w.irq <= LAST_IRQ);
        }
        assert!(placements(&devices(20, 0, false)).is_err());
    }
}
