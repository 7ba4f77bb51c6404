//! COM1: a 16550A UART from vm-superio, adapted to the port-I/O bus.

use std::io::Write;

use vm_superio::Serial;

use crate::bus::PioDevice;
use crate::EventFdTrigger;

/// COM1's first port.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's interrupt line (ISA IRQ 4).
pub const COM1_IRQ: u32 = 4;
/// Ports a 16550 occupies.
pub const SERIAL_PORTS: u16 = 8;

/// A 16550A UART whose interrupt is an eventfd (an irqfd in the VMM) and whose output is `W`.
pub struct SerialPort<W: Write + Send> {
    uart: Serial<EventFdTrigger, vm_superio::serial::NoEvents, W>,
}

impl<W: Write + Send> std::fmt::Debug for SerialPort<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPort").finish_non_exhaustive()
    }
}

impl<W: Write + Send> SerialPort<W> {
    /// A UART raising `interrupt` and writing to `out`.
    pub fn new(interrupt: EventFdTrigger, out: W) -> Self {
        SerialPort { uart: Serial::new(interrupt, out) }
    }

    /// Queues console input for the guest; returns how many bytes fit in the receive FIFO.
    pub fn enqueue_input(&mut self, input: &[u8]) -> std::io::Result<usize> {
        let room = self.uart.fifo_capacity();
        let take = room.min(input.len());
        if take == 0 {
            return Ok(0);
        }
        self.uart
            .enqueue_raw_bytes(&input[..take])
            .map_err(|e| std::io::Error::other(format!("serial input: {e:?}")))
    }

    /// Room left in the receive FIFO.
    pub fn input_room(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// The output writer.
    pub fn output(&mut self) -> &mut W {
        self.uart.writer_mut()
    }
}

impl<W: Write + Send> PioDevice for SerialPort<W> {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match (u8::try_from(offset), data.len()) {
            (Ok(off), 1) => data[0] = self.uart.read(off),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if let (Ok(off), [value]) = (u8::try_from(offset), data) {
            if let Err(e) = self.uart.write(off, *value) {
                log::warn!("serial: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::{Capture, ConsoleSink};

    #[test]
    fn transmits_to_the_sink_and_raises_the_interrupt() {
        let cap = Capture::new();
        let irq = EventFdTrigger::new().expect("eventfd");
        let mut uart = SerialPort::new(irq.try_clone().expect("clone"), ConsoleSink::Capture(cap.clone()));
        uart.write(1, &[0x02]); // IER: THR empty interrupt
        for b in b"hi" {
            uart.write(0, &[*b]);
        }
        assert_eq!(cap.contents(), b"hi");
        assert!(irq.0.read().expect("interrupt raised") >= 1);
    }

    #[test]
    fn input_is_readable_by_the_guest() {
        let irq = EventFdTrigger::new().expect("eventfd");
        let mut uart = SerialPort::new(irq, ConsoleSink::Null);
        assert_eq!(uart.enqueue_input(b"ok").expect("enqueue"), 2);
        let mut lsr = [0u8];
        uart.read(5, &mut lsr);
        assert_eq!(lsr[0] & 1, 1, "data ready");
        let mut b = [0u8];
        uart.read(0, &mut b);
        assert_eq!(b[0], b'o');
    }

    #[test]
    fn wide_accesses_are_ignored() {
        let irq = EventFdTrigger::new().expect("eventfd");
        let mut uart = SerialPort::new(irq, ConsoleSink::Null);
        let mut w = [0u8; 4];
        uart.read(0, &mut w);
        assert_eq!(w, [0xff; 4]);
        uart.write(0, &[1, 2]);
    }
}
