//! The i8042 keyboard controller, reduced to what Linux uses to reboot: command 0xFE on port 0x64.

use std::sync::Arc;

use vm_superio::{I8042Device, Trigger};

use crate::bus::PioDevice;
use crate::stop::{StopRequest, StopSignal};

/// First port of the controller (data); the command/status port is 0x64.
pub const I8042_PORT: u16 = 0x60;
/// Ports covered (0x60..=0x64).
pub const I8042_PORTS: u16 = 5;

/// Turns the controller's CPU-reset line into a stop request.
#[derive(Debug, Clone)]
pub struct ResetLine(pub Arc<StopSignal>);

impl Trigger for ResetLine {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(StopRequest::Reset);
        Ok(())
    }
}

/// The controller on the port-I/O bus.
#[derive(Debug)]
pub struct I8042 {
    dev: I8042Device<ResetLine>,
}

impl I8042 {
    /// A controller whose reset line stops the VM through `stop`.
    pub fn new(stop: Arc<StopSignal>) -> Self {
        I8042 { dev: I8042Device::new(ResetLine(stop)) }
    }
}

impl PioDevice for I8042 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let v = u8::try_from(offset).map_or(0xff, |o| self.dev.read(o));
        data.fill(0);
        data[0] = v;
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Ok(o), Some(v)) = (u8::try_from(offset), data.first()) {
            // The reset line's trigger cannot fail.
            let _ = self.dev.write(o, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_a_reset() {
        let stop = Arc::new(StopSignal::new().expect("eventfd"));
        let mut kbd = I8042::new(stop.clone());
        kbd.write(4, &[0x20]);
        assert_eq!(stop.requested(), None);
        kbd.write(4, &[0xfe]);
        assert_eq!(stop.requested(), Some(StopRequest::Reset));
    }
}
