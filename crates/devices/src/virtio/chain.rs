//! What a descriptor chain looks like, found in one bounded walk before a device trusts it.
//!
//! virtio-queue's iterator ends a chain quietly when it loops (its TTL), points out of the table, or
//! cannot be read; a device cannot tell that from a proper end unless it looks at the last descriptor.
//! [`inspect`] does, and checks every buffer against guest memory, so devices then use virtio-queue's
//! `Reader`/`Writer` only on chains known to be sound.

use virtio_queue::DescriptorChain;
use vm_memory::{Address, GuestAddress, GuestMemory, Permissions};

use super::Memory;

/// Why a chain cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The chain does not end: a loop, a `next` out of range, an unreadable descriptor or an unusable
    /// indirect table, or more than 4 GiB in all.
    #[error("the descriptor chain is broken (a loop, an index out of range or an unreadable descriptor)")]
    Broken,
    /// More descriptors than the device takes in one chain.
    #[error("the descriptor chain has more than {max} descriptors")]
    TooLong {
        /// The device's limit.
        max: usize,
    },
    /// A device-readable descriptor after a device-writable one (virtio 1.2 §2.7.4.2).
    #[error("a device-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    /// A buffer that is not (entirely) in guest memory.
    #[error("descriptor buffer {addr:#x}+{len:#x} is not in guest memory")]
    OutsideMemory {
        /// Guest-physical address of the buffer.
        addr: u64,
        /// Its length.
        len: u32,
    },
}

/// A chain's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainLayout {
    /// Bytes in device-readable buffers.
    pub readable: u64,
    /// Bytes in device-writable buffers.
    pub writable: u64,
    /// The chain's last device-writable byte, if the device can reach it (where a status byte goes).
    pub last_writable: Option<GuestAddress>,
}

/// Walks `chain` (at most `max_descriptors` of it): its layout, and the first thing wrong with it. A
/// buffer outside memory does not stop the walk, so the layout still names the last writable byte.
pub fn inspect(
    mem: &Memory,
    chain: DescriptorChain<&Memory>,
    max_descriptors: usize,
) -> (ChainLayout, Option<ChainError>) {
    let mut layout = ChainLayout::default();
    let mut error = None;
    let mut seen_writable = false;
    let mut ended = false;
    for (n, desc) in chain.enumerate() {
        if n == max_descriptors {
            return (layout, Some(ChainError::TooLong { max: max_descriptors }));
        }
        let (addr, len) = (desc.addr(), desc.len());
        let writable = desc.is_write_only();
        let access = if writable { Permissions::Write } else { Permissions::Read };
        let in_memory = mem.check_range(addr, len as usize, access);
        if !in_memory {
            error.get_or_insert(ChainError::OutsideMemory { addr: addr.raw_value(), len });
        }
        if writable {
            seen_writable = true;
            layout.writable += u64::from(len);
            if len > 0 {
                // In memory, the last byte's address cannot overflow.
                layout.last_writable = if in_memory { addr.checked_add(u64::from(len) - 1) } else { None };
            }
        } else {
            layout.readable += u64::from(len);
            if seen_writable {
                error.get_or_insert(ChainError::ReadableAfterWritable);
            }
        }
        ended = !desc.has_next();
    }
    // The iterator stops early, with the last descriptor still pointing on, when the chain loops or
    // points out of the table (or an indirect table is unusable).
    if !ended {
        error.get_or_insert(ChainError::Broken);
    }
    (layout, error)
}
