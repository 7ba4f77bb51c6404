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

#[cfg(test)]
mod tests {
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestAddress;

    use super::*;
    use crate::virtio::testing::{memory, MEM_SIZE};

    const W: u16 = VRING_DESC_F_WRITE as u16;
    const N: u16 = VRING_DESC_F_NEXT as u16;

    /// Lays `descs` out as one chain (flags and next exactly as given) and inspects it.
    fn check(descs: &[(u64, u32, u16, u16)], max: usize) -> (ChainLayout, Option<ChainError>) {
        let mem = memory();
        let q = MockSplitQueue::create(&mem, GuestAddress(0), 16);
        let raw: Vec<RawDescriptor> =
            descs.iter().map(|&(a, l, f, n)| RawDescriptor::from(Descriptor::new(a, l, f, n))).collect();
        let chain = q.build_multiple_desc_chains(&raw).expect("chain");
        inspect(&mem, chain, max)
    }

    #[test]
    fn a_sound_chain_has_its_layout() {
        let (layout, err) = check(&[(0x10000, 16, N, 1), (0x20000, 512, N | W, 2), (0x30000, 1, W, 0)], 8);
        assert_eq!(err, None);
        assert_eq!((layout.readable, layout.writable), (16, 513));
        assert_eq!(layout.last_writable, Some(GuestAddress(0x30000)));
    }

    #[test]
    fn each_fault_is_named() {
        // A loop ends at the queue's size (16) through virtio-queue's TTL, or at the device's limit first.
        assert_eq!(check(&[(0x10000, 16, N, 1), (0x20000, 1, N | W, 1)], 64).1, Some(ChainError::Broken));
        assert_eq!(check(&[(0x10000, 16, N, 1), (0x20000, 1, N | W, 1)], 8).1, Some(ChainError::TooLong { max: 8 }));
        assert_eq!(check(&[(0x10000, 16, N, 99)], 8).1, Some(ChainError::Broken));
        assert_eq!(check(&[(0x10000, 1, W | N, 1), (0x20000, 16, 0, 0)], 8).1, Some(ChainError::ReadableAfterWritable));
        let (layout, err) = check(&[(MEM_SIZE - 4, 16, N, 1), (0x20000, 1, W, 0)], 8);
        assert_eq!(err, Some(ChainError::OutsideMemory { addr: MEM_SIZE - 4, len: 16 }));
        assert_eq!(layout.last_writable, Some(GuestAddress(0x20000)), "the walk went on to the status");
        let long: Vec<_> = (0..10u16).map(|i| (0x10000, 1, N, i + 1)).collect();
        assert_eq!(check(&long, 4).1, Some(ChainError::TooLong { max: 4 }));
    }
}
