//! The invoke slots in the HRT's comm page (docs/hypercalls.md §5): one 64-byte mailbox per HRT core.
//! The VMM writes a request and then `seq` (release); the HRT runs it and writes `done = seq`. A slot
//! is free when `seq == done`. Posting happens under the lifecycle's lock (`Lifecycle::while_running`),
//! which serializes every poster: two ROS vCPUs invoking one core cannot interleave their writes.

use std::sync::atomic::{AtomicU64, Ordering};

use abi::{slot, HcallError, INVOKE_NOTIFY};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    /// The function (opaque to the VMM).
    pub func: u64,
    /// Its argument.
    pub arg: u64,
    /// [`INVOKE_NOTIFY`] or 0.
    pub flags: u64,
}

/// The slots of one partitioned VM.
#[derive(Debug)]
pub(crate) struct InvokeSlots {
    /// Guest-physical address of core 0's slot.
    base: u64,
    /// The next sequence number (shared by all cores, so a number names one request).
    next_seq: AtomicU64,
}

impl InvokeSlots {
    /// The slots of an HRT whose partition starts at `hrt_base`.
    pub fn new(hrt_base: u64) -> InvokeSlots {
        InvokeSlots { base: hrt_base + hvm::entry::slot_offset(0), next_seq: AtomicU64::new(1) }
    }

    fn at(&self, core: u32, field: u64) -> GuestAddress {
        GuestAddress(self.base + u64::from(core) * slot::SIZE + field)
    }

    fn load(&self, mem: &GuestMemoryMmap<()>, core: u32, field: u64) -> Result<u64, HcallError> {
        mem.load::<u64>(self.at(core, field), Ordering::Acquire).map_err(|_| HcallError::BadState)
    }

    /// Posts `request` to every core in `cores`, with completion record `records[i]` (guest-physical,
    /// 0 for none) for `cores[i]`; `BUSY` (and nothing posted) if one of them has not finished its last
    /// request. Returns the request's sequence number.
    pub fn post(&self, mem: &GuestMemoryMmap<()>, cores: &[u32], request: Request, records: &[u64]) -> Result<u64, HcallError> {
        for &c in cores {
            if self.load(mem, c, slot::SEQ)? != self.load(mem, c, slot::DONE)? {
                return Err(HcallError::Busy);
            }
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        for (&c, &record) in cores.iter().zip(records) {
            let fields = [
                (slot::FUNC, request.func),
                (slot::ARG, request.arg),
                (slot::COMPLETION, record),
                (slot::FLAGS, request.flags & INVOKE_NOTIFY),
            ];
            for (field, v) in fields {
                mem.write_obj(v, self.at(c, field)).map_err(|_| HcallError::BadState)?;
            }
            mem.store(seq, self.at(c, slot::SEQ), Ordering::Release).map_err(|_| HcallError::BadState)?;
        }
        Ok(seq)
    }

    /// INVOKE_RESULT: core `core`'s last result, the sequence number it finished, and whether it has
    /// finished every request posted to it.
    pub fn last_result(&self, mem: &GuestMemoryMmap<()>, core: u32) -> (u64, u64, bool) {
        let load = |field| self.load(mem, core, field).unwrap_or(0);
        let (seq, done, result) = (load(slot::SEQ), load(slot::DONE), load(slot::RESULT));
        (result, done, seq == done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_core_with_an_unfinished_request_is_busy_and_nothing_is_posted() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x4000)]).expect("memory");
        let slots = InvokeSlots { base: 0x1000, next_seq: AtomicU64::new(1) };
        let r = Request { func: 7, arg: 8, flags: 0xff };
        assert_eq!(slots.post(&mem, &[0, 1], r, &[0x100, 0x200]), Ok(1));
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x1000 + 64 + slot::COMPLETION)).expect("read"), 0x200);
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x1000 + slot::FLAGS)).expect("read"), INVOKE_NOTIFY);
        // Core 1 finishes; core 0 does not.
        mem.write_obj(1u64, GuestAddress(0x1000 + 64 + slot::DONE)).expect("write");
        assert_eq!(slots.post(&mem, &[1, 0], r, &[0, 0]), Err(HcallError::Busy));
        assert_eq!(mem.read_obj::<u64>(GuestAddress(0x1000 + 64 + slot::SEQ)).expect("read"), 1, "core 1 untouched");
        assert_eq!(slots.post(&mem, &[1], r, &[0]), Ok(2));
        assert_eq!(slots.last_result(&mem, 0), (0, 0, false));
    }
}
