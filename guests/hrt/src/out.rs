//! The kernel's formatter (not `core::fmt`, whose precompiled code uses SSE): a console line with
//! string, byte, decimal and hexadecimal appenders. A `Line` holds the console lock from creation
//! to drop, so lines of several CPUs do not interleave, and writes straight to the UART (no
//! buffer to fill or copy: under PVM every instruction of ring 0 is emulated).
//!
//! `Line::new().s("hrt: x=").hex(x).print();` prints `hrt: x=0x1f\r\n`.

use crate::serial;

pub struct Line {
    _private: (),
}

impl Line {
    /// Takes the console lock (waiting as long as it takes).
    pub fn new() -> Line {
        serial::lock(false);
        Line { _private: () }
    }

    /// Takes the console lock, giving up after a while (exception and panic paths: this CPU
    /// may hold it already).
    pub fn forced() -> Line {
        serial::lock(true);
        Line { _private: () }
    }

    /// Appends raw bytes (e.g. a Multiboot2 string); control characters become '?'.
    pub fn b(&mut self, bytes: &[u8]) -> &mut Line {
        for &b in bytes {
            serial::put(if b < 0x20 || b == 0x7f { b'?' } else { b });
        }
        self
    }

    pub fn s(&mut self, s: &str) -> &mut Line {
        for &b in s.as_bytes() {
            serial::put(b);
        }
        self
    }

    /// Unsigned decimal.
    pub fn dec(&mut self, mut v: u64) -> &mut Line {
        let mut digits = [0u8; 20];
        let mut n = 0;
        while n < digits.len() {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        while n > 0 {
            n -= 1;
            serial::put(digits[n]);
        }
        self
    }

    /// `0x` and the value in lowercase hexadecimal, without leading zeros.
    pub fn hex(&mut self, v: u64) -> &mut Line {
        let digits = if v == 0 {
            1
        } else {
            (64 - v.leading_zeros()).div_ceil(4)
        };
        self.hex_digits(v, digits)
    }

    /// `0x` and exactly 16 hexadecimal digits.
    pub fn hex16(&mut self, v: u64) -> &mut Line {
        self.hex_digits(v, 16)
    }

    fn hex_digits(&mut self, v: u64, digits: u32) -> &mut Line {
        serial::put(b'0');
        serial::put(b'x');
        let mut i = digits.min(16);
        while i > 0 {
            i -= 1;
            let nib = ((v >> (i * 4)) & 0xf) as u8;
            serial::put(if nib < 10 {
                b'0' + nib
            } else {
                b'a' + nib - 10
            });
        }
        self
    }

    /// Ends the line (CRLF); the lock is released when the `Line` is dropped, at the end of the
    /// statement for `Line::new()....print();`.
    pub fn print(&mut self) {
        serial::put(b'\r');
        serial::put(b'\n');
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        serial::unlock();
    }
}
