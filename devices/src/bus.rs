//! The port-I/O bus: which device answers which port.

use std::sync::{Arc, Mutex};

/// A device on the port-I/O bus. `offset` is relative to the start of the device's range.
pub trait PioDevice: Send {
    /// The guest reads `data.len()` bytes (1, 2 or 4) at `offset`.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// A shared handle on a device.
pub type SharedPioDevice = Arc<Mutex<dyn PioDevice>>;

/// Errors building the bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// Two devices claim the same port.
    #[error("port range {start:#x}+{len} overlaps a device already on the bus")]
    Overlap {
        /// First port.
        start: u16,
        /// Number of ports.
        len: u16,
    },
    /// A range of no ports, or one that wraps.
    #[error("invalid port range {start:#x}+{len}")]
    InvalidRange {
        /// First port.
        start: u16,
        /// Number of ports.
        len: u16,
    },
}

/// Maps port ranges to devices. Reads of ports no device claims return all ones, as on a PC; writes
/// to them are dropped.
#[derive(Default)]
pub struct PioBus {
    ranges: Vec<(u16, u16, SharedPioDevice)>,
}

impl std::fmt::Debug for PioBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<_> = self.ranges.iter().map(|(s, l, _)| (*s, *l)).collect();
        f.debug_struct("PioBus").field("ranges", &ranges).finish()
    }
}

impl PioBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` on ports `start..start+len`.
    pub fn insert(&mut self, start: u16, len: u16, device: SharedPioDevice) -> Result<(), BusError> {
        if len == 0 || start.checked_add(len - 1).is_none() {
            return Err(BusError::InvalidRange { start, len });
        }
        let end = u32::from(start) + u32::from(len);
        if self.ranges.iter().any(|(s, l, _)| u32::from(start) < u32::from(*s) + u32::from(*l) && u32::from(*s) < end) {
            return Err(BusError::Overlap { start, len });
        }
        self.ranges.push((start, len, device));
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(u16, &SharedPioDevice)> {
        self.ranges
            .iter()
            .find(|(s, l, _)| port >= *s && u32::from(port) < u32::from(*s) + u32::from(*l))
            .map(|(s, _, d)| (port - s, d))
    }

    /// Dispatches a guest read; returns whether a device answered.
    pub fn read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(port) {
            Some((offset, dev)) => {
                // A poisoned lock means a device panicked earlier; keep serving with its state.
                let mut dev = dev.lock().unwrap_or_else(|p| p.into_inner());
                dev.read(offset, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a guest write; returns whether a device took it.
    pub fn write(&self, port: u16, data: &[u8]) -> bool {
        match self.find(port) {
            Some((offset, dev)) => {
                let mut dev = dev.lock().unwrap_or_else(|p| p.into_inner());
                dev.write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo(Vec<(u16, Vec<u8>)>);
    impl PioDevice for Echo {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u16, data: &[u8]) {
            self.0.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range_with_offsets() {
        let mut bus = PioBus::new();
        let dev = Arc::new(Mutex::new(Echo::default()));
        bus.insert(0x3f8, 8, dev.clone()).expect("insert");
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b, [5]);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().expect("lock").0, vec![(0, b"x".to_vec())]);
    }

    #[test]
    fn unclaimed_ports_read_all_ones() {
        let bus = PioBus::new();
        let mut b = [0u8; 4];
        assert!(!bus.read(0x80, &mut b));
        assert_eq!(b, [0xff; 4]);
        assert!(!bus.write(0x80, &[1]));
    }

    #[test]
    fn overlaps_and_bad_ranges_are_refused() {
        let mut bus = PioBus::new();
        bus.insert(0x60, 5, Arc::new(Mutex::new(Echo::default()))).expect("insert");
        assert_eq!(
            bus.insert(0x64, 1, Arc::new(Mutex::new(Echo::default()))),
            Err(BusError::Overlap { start: 0x64, len: 1 })
        );
        assert!(bus.insert(0x65, 1, Arc::new(Mutex::new(Echo::default()))).is_ok());
        assert!(matches!(bus.insert(0xffff, 2, Arc::new(Mutex::new(Echo::default()))), Err(BusError::InvalidRange { .. })));
        assert!(matches!(bus.insert(0x10, 0, Arc::new(Mutex::new(Echo::default()))), Err(BusError::InvalidRange { .. })));
    }
}
