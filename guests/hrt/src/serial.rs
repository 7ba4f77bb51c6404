//! COM1, a 16550 driven by polling, and the console lock (xchg) that keeps lines whole
//! (out::Line).

use core::sync::atomic::{AtomicBool, Ordering};

use crate::port::{inb, outb};

const COM1: u16 = 0x3f8;
const LSR_THRE: u8 = 0x20;

#[link_section = ".data.hrt"]
static LOCK: AtomicBool = AtomicBool::new(false);

/// 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    outb(COM1 + 1, 0x00); // IER: no interrupts
    outb(COM1 + 3, 0x80); // LCR: DLAB
    outb(COM1, 0x01); // divisor 1: 115200 baud
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); // 8N1
    outb(COM1 + 2, 0xC7); // FIFO on, cleared, 14-byte threshold
    outb(COM1 + 4, 0x03); // DTR | RTS
}

/// Writes one byte (polled, bounded: a UART that never drains must not hang the kernel).
pub fn put(b: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & LSR_THRE == 0 && spins < 100_000 {
        spins += 1;
    }
    outb(COM1, b);
}

/// Takes the console lock. With `force`, gives up waiting after a while (the exception path:
/// the faulting CPU may hold it).
pub fn lock(force: bool) {
    let mut spins = 0u32;
    while LOCK.swap(true, Ordering::Acquire) {
        spins += 1;
        if force && spins > 100_000 {
            break;
        }
    }
}

pub fn unlock() {
    LOCK.store(false, Ordering::Release);
}
