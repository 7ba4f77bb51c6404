//! A channel region on the heap, for the integration tests.
#![allow(dead_code)] // each test binary uses its own part of this

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use forwarder::layout::{region_len, CACHE_LINE};
use forwarder::{CacheLine, Channel, Consumer, Error, Producer};

/// A zeroed, 64-byte-aligned region, touched only through `ptr` once made.
pub struct Region {
    _lines: Vec<CacheLine>,
    pub ptr: *mut u8,
    pub len: usize,
}

// SAFETY: the region is plain heap memory that every user touches through atomics only.
unsafe impl Sync for Region {}

impl Region {
    /// A region for `slots` slots, plus `extra` bytes (rounded up to lines).
    pub fn new(slots: u32, extra: usize) -> Region {
        let lines = (region_len(slots) + extra).div_ceil(CACHE_LINE);
        let mut lines = vec![CacheLine::ZERO; lines];
        let ptr = lines.as_mut_ptr().cast::<u8>();
        Region { len: lines.len() * CACHE_LINE, _lines: lines, ptr }
    }

    /// A region whose bytes are `bytes` (its length rounded up to lines, zero-filled).
    pub fn with_bytes(bytes: &[u8]) -> Region {
        let region = Region::new(1, bytes.len());
        for (i, b) in bytes.iter().enumerate() {
            region.poke_u8(i, *b);
        }
        region
    }

    /// Formats the region.
    pub fn init(&self, slots: u32) -> Channel {
        // SAFETY: the region lives as long as `self` and is only touched atomically.
        unsafe { Channel::init(self.ptr, self.len, slots) }.expect("init")
    }

    /// A new view of the region.
    pub fn view(&self) -> Result<Channel, Error> {
        // SAFETY: as in `init`.
        unsafe { Channel::from_raw(self.ptr, self.len) }
    }

    /// Formats the region and makes both ends.
    pub fn ends(&self, slots: u32) -> (Producer, Consumer) {
        self.init(slots);
        let view = || self.view().expect("view");
        (view().producer().expect("producer"), view().consumer().expect("consumer"))
    }

    /// Writes the 8-byte word at `offset` (8-aligned, in bounds).
    pub fn poke_u64(&self, offset: usize, value: u64) {
        assert!(offset % 8 == 0 && offset + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked above); accessed atomically.
        unsafe { AtomicU64::from_ptr(self.ptr.add(offset).cast()) }.store(value, Ordering::SeqCst);
    }

    /// Writes the byte at `offset` (in bounds). Only while no other thread uses the region: the
    /// ring accesses these bytes as larger atomics.
    pub fn poke_u8(&self, offset: usize, value: u8) {
        assert!(offset < self.len);
        // SAFETY: in bounds (checked above); single-threaded use, per the contract above.
        unsafe { AtomicU8::from_ptr(self.ptr.add(offset)) }.store(value, Ordering::SeqCst);
    }
}
