//! Completion records: where the HRT writes an invoke's outcome in our (locked) memory, as
//! atomics, and the spin that waits for one.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use abi::Completion;

/// A [`Completion`] record as atomics: the HRT writes it from outside this process.
#[derive(Debug, Default)]
#[repr(C, align(16))]
pub struct CompletionCell {
    /// [`Completion::seq`].
    pub seq: AtomicU64,
    /// [`Completion::result`].
    pub result: AtomicU64,
}

const _: () = {
    assert!(core::mem::size_of::<CompletionCell>() == core::mem::size_of::<Completion>());
    assert!(core::mem::align_of::<CompletionCell>() == core::mem::align_of::<Completion>());
    assert!(core::mem::offset_of!(CompletionCell, seq) == core::mem::offset_of!(Completion, seq));
    assert!(core::mem::offset_of!(CompletionCell, result) == core::mem::offset_of!(Completion, result));
};

/// `n` zeroed records (16-byte aligned: the element alignment), in memory locked by mlockall.
pub fn cells(n: usize) -> Vec<CompletionCell> {
    (0..n).map(|_| CompletionCell::default()).collect()
}

/// Spins until `cell.seq` satisfies `done` (Acquire), checking the clock every 1024 spins. Returns
/// the sequence number seen, or `Err(last seen)` at `deadline`.
#[inline]
pub fn spin_until(cell: &CompletionCell, deadline: Instant, done: impl Fn(u64) -> bool) -> Result<u64, u64> {
    let mut spins = 0u32;
    loop {
        let seq = cell.seq.load(Ordering::Acquire);
        if done(seq) {
            return Ok(seq);
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) && Instant::now() >= deadline {
            return Err(seq);
        }
        spin_loop();
    }
}
