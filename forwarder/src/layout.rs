//! The channel's memory layout: the header, the two progress lines and the slot arrays, with every
//! offset as a constant so that an implementation in another language can follow it byte for byte.
//! `docs/forwarding.md` draws the same picture; the tests below keep the two in step.
//!
//! ```text
//! 0x000  header line       magic, version, slot count, mode, spin      (creator; read-only after)
//! 0x080  producer line     submitted, collected, flags                 (HRT core writes)
//! 0x100  consumer line     taken, completed, flags                     (ROS proxy writes)
//! 0x180  reserved (zero)
//! 0x200  requests[N]       64 bytes each                               (HRT core writes)
//! 0x200 + 64 N  responses[N]  64 bytes each                            (ROS proxy writes)
//! ```
//!
//! The blocks are 128 bytes apart although a cache line is 64: x86's adjacent-line prefetcher pulls
//! lines in 128-byte pairs, so two lines written by different cores must not share a pair.

/// Bytes in a cache line, and the size and alignment of every record.
pub const CACHE_LINE: usize = 64;

/// `"duet-fwd"` read as a little-endian `u64`: the header's first word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"duet-fwd");

/// Fewest slots a channel may have.
pub const MIN_SLOTS: u32 = 1;
/// Most slots a channel may have (a 512 KiB region); bounds what a hostile header can ask for.
pub const MAX_SLOTS: u32 = 4096;

/// Offset of the header line: [`MAGIC`], version, slot count. Written once by [`crate::Channel::init`].
pub const HEADER: usize = 0x000;
/// `magic: u64` in the header.
pub const HEADER_MAGIC: usize = HEADER;
/// `version: u32` in the header ([`crate::ABI_VERSION`]).
pub const HEADER_VERSION: usize = HEADER + 8;
/// `slot_count: u32` in the header: a power of two in [`MIN_SLOTS`]..=[`MAX_SLOTS`].
pub const HEADER_SLOT_COUNT: usize = HEADER + 12;

/// `mode: u32` in the header: how the two sides wait ([`MODE_POLL`], [`MODE_NOTIFY`],
/// [`MODE_ADAPTIVE`]); chosen by the creator (the proxy), followed by the producer.
pub const HEADER_MODE: usize = HEADER + 16;
/// `spin_us: u32` in the header: in [`MODE_ADAPTIVE`], how long a side spins before it sleeps.
pub const HEADER_SPIN_US: usize = HEADER + 20;
/// Mode: both sides spin; no doorbells, no exits. The modes are the ABI's [`abi::ForwardMode`]'s
/// numbers (the VM's configured mode, which the HVM information tells both partitions).
pub const MODE_POLL: u32 = abi::ForwardMode::Poll as u32;
/// Mode: a side with nothing to do sleeps at once, after setting [`FLAG_SLEEPING`]; the peer
/// rings its doorbell when it finds that flag set after publishing work for it.
pub const MODE_NOTIFY: u32 = abi::ForwardMode::Notify as u32;
/// Mode: spin for `spin_us`, then sleep as in [`MODE_NOTIFY`].
pub const MODE_ADAPTIVE: u32 = abi::ForwardMode::Adaptive as u32;

/// Offset of the producer's line (the HRT core writes it, the proxy only reads it).
pub const PRODUCER: usize = 0x080;
/// Offset of the consumer's line (the proxy writes it, the HRT core only reads it).
pub const CONSUMER: usize = 0x100;
/// In a progress line: `submitted: u64` (producer) or `taken: u64` (consumer): the sequence number
/// of the newest request the side has put into, or taken out of, the request array (0 = none yet).
pub const PROGRESS_FIRST: usize = 0;
/// In a progress line: `collected: u64` (producer) or `completed: u64` (consumer): the sequence
/// number of the newest response the side has taken out of, or put into, the response array.
pub const PROGRESS_SECOND: usize = 8;
/// In a progress line: `flags: u64`, [`FLAG_FAILED`] and reserved bits.
pub const PROGRESS_FLAGS: usize = 16;
/// Progress-line flag: this side found the channel corrupt and stopped using it.
pub const FLAG_FAILED: u64 = 1;
/// Progress-line flag: this side is about to sleep, or sleeps, until its doorbell rings (notify
/// and adaptive modes). Set, then a full fence, then one more look for work, then sleep; the peer
/// publishes work, then a full fence, then reads this flag and rings if it is set.
pub const FLAG_SLEEPING: u64 = 2;

/// Forwarded-call numbers from this value up are not Linux system calls but requests of the
/// forwarding protocol itself, which the proxy serves (docs/forwarding.md "Pseudo-calls").
pub const PSEUDO_BASE: u32 = 0x8000_0000;
/// Pseudo-call: the HRT took a page fault at `args[0]` in the merged lower half (`args[1]` = 1
/// for a write access). The proxy makes the page present in its own page tables
/// (`madvise(MADV_POPULATE_READ / _WRITE)`) and answers 0 or −errno.
pub const PSEUDO_PAGE_FAULT: u32 = PSEUDO_BASE + 1;
/// Pseudo-call: answers [`echo_answer`]`(args[0], args[1])` without a system call: a check of the
/// channel and the proxy alone (the stress test; on hosts where the ROS's system calls are slow).
pub const PSEUDO_ECHO: u32 = PSEUDO_BASE + 2;

/// What the proxy answers to [`PSEUDO_ECHO`]: a value that depends on both arguments, so an answer
/// to another request cannot pass for this one's.
pub const fn echo_answer(a0: u64, a1: u64) -> u64 {
    a0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ a1.rotate_left(29)
}

/// The record of a split execution (docs/forwarding.md "Split execution"): a ROS function run at
/// CPL3 on an HRT core, in the merged address space, whose system calls are forwarded. 64 bytes,
/// in the merged process's memory; the proxy writes the inputs, the HRT the outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct SplitCall {
    /// The function's address (`extern "C" fn(u64) -> u64`).
    pub entry: u64,
    /// Its argument (RDI).
    pub arg: u64,
    /// RSP at the function's entry: `[rsp]` holds [`SPLIT_RETURN`] (the proxy writes it) and
    /// `rsp + 8` is 16-aligned.
    pub stack: u64,
    /// The FS base (thread pointer) the function runs with: the caller's, so its thread-local
    /// storage (errno, ...) is the calling thread's.
    pub fs_base: u64,
    /// Output: the function's return value (RAX), when `status` is [`SPLIT_OK`].
    pub result: u64,
    /// Output: [`SPLIT_OK`], or why the execution ended otherwise.
    pub status: u64,
    /// Output: the number of system calls the function made (forwarded or not).
    pub syscalls: u64,
    /// Output: the number of page faults forwarded for it.
    pub page_faults: u64,
}

/// The return address a split function returns to: an address in page 0, which no process maps;
/// the HRT ends the execution at the fetch fault there.
pub const SPLIT_RETURN: u64 = 0xff0;
/// [`SplitCall::status`]: the function returned.
pub const SPLIT_OK: u64 = 0;
/// [`SplitCall::status`]: the function called `exit` or `exit_group` (`result` = the status).
pub const SPLIT_EXITED: u64 = 1;
/// [`SplitCall::status`]: a page fault the proxy could not resolve (`result` = the address).
pub const SPLIT_SEGFAULT: u64 = 2;
/// [`SplitCall::status`] from 0x100: an exception at CPL3, 0x100 + vector (`result` = its RIP).
pub const SPLIT_EXCEPTION: u64 = 0x100;
/// [`SplitCall::status`]: no channel is attached on the core, or it failed (`result` = 0).
pub const SPLIT_NO_CHANNEL: u64 = 3;

/// Offset of the request array (`slot_count` [`Request`] records).
pub const REQUESTS: usize = 0x200;

/// `seq: u64` in a request or response record.
pub const RECORD_SEQ: usize = 0;
/// `nr: u32` in a request: the forwarded call's number (the Linux system call number).
pub const REQUEST_NR: usize = 8;
/// `flags: u32` in a request (none defined yet; carried to the proxy unchanged).
pub const REQUEST_FLAGS: usize = 12;
/// `args: [u64; 6]` in a request: the call's arguments, in system-call order.
pub const REQUEST_ARGS: usize = 16;
/// `result: i64` in a response: the call's return value (Linux: negative errno on failure).
pub const RESPONSE_RESULT: usize = 8;
/// `flags: u32` in a response (none defined yet; carried to the HRT unchanged).
pub const RESPONSE_FLAGS: usize = 16;

/// Offset of the response array for a channel of `slot_count` slots.
pub const fn responses_offset(slot_count: u32) -> usize {
    REQUESTS + slot_count as usize * CACHE_LINE
}

/// Bytes a channel of `slot_count` slots occupies (it may be given more).
pub const fn region_len(slot_count: u32) -> usize {
    REQUESTS + 2 * slot_count as usize * CACHE_LINE
}

/// Whether `slot_count` is one a header may carry: a power of two in [`MIN_SLOTS`]..=[`MAX_SLOTS`].
pub const fn slot_count_ok(slot_count: u32) -> bool {
    slot_count.is_power_of_two() && slot_count >= MIN_SLOTS && slot_count <= MAX_SLOTS
}

/// One forwarded call, as the HRT core posts it (a copy: the shared record is only ever read and
/// written field by field with atomic accesses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Request {
    /// Sequence number: 1 for the channel's first request, then one more for each.
    pub seq: u64,
    /// The call's number (the Linux system call number for a forwarded system call).
    pub nr: u32,
    /// Request flags (none defined yet).
    pub flags: u32,
    /// The arguments, in the order of the system call's registers (rdi, rsi, rdx, r10, r8, r9).
    pub args: [u64; 6],
}

/// The answer to one [`Request`], as the proxy posts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Response {
    /// The sequence number of the request this answers.
    pub seq: u64,
    /// The call's return value (Linux: a negative errno on failure).
    pub result: i64,
    /// Response flags (none defined yet).
    pub flags: u32,
    /// Reserved (zero).
    pub reserved: [u32; 11],
}

/// One cache line of zeroed, 64-byte-aligned memory: allocate `region_len(n) / 64` of these to get a
/// region [`crate::Channel::init`] accepts (a `Vec<CacheLine>` in the proxy, a static array in an HRT).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct CacheLine(pub [u64; 8]);

impl CacheLine {
    /// A line of zeroes.
    pub const ZERO: CacheLine = CacheLine([0; 8]);

    /// How many lines a channel of `slot_count` slots needs.
    pub const fn lines_for(slot_count: u32) -> usize {
        region_len(slot_count) / CACHE_LINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn records_are_one_cache_line_with_the_documented_offsets() {
        assert_eq!(size_of::<Request>(), CACHE_LINE);
        assert_eq!(align_of::<Request>(), CACHE_LINE);
        assert_eq!(offset_of!(Request, seq), RECORD_SEQ);
        assert_eq!(offset_of!(Request, nr), REQUEST_NR);
        assert_eq!(offset_of!(Request, flags), REQUEST_FLAGS);
        assert_eq!(offset_of!(Request, args), REQUEST_ARGS);
        assert_eq!(size_of::<Response>(), CACHE_LINE);
        assert_eq!(align_of::<Response>(), CACHE_LINE);
        assert_eq!(offset_of!(Response, seq), RECORD_SEQ);
        assert_eq!(offset_of!(Response, result), RESPONSE_RESULT);
        assert_eq!(offset_of!(Response, flags), RESPONSE_FLAGS);
        assert_eq!(size_of::<CacheLine>(), CACHE_LINE);
        assert_eq!(align_of::<CacheLine>(), CACHE_LINE);
    }

    #[test]
    fn lines_written_by_different_sides_are_in_different_128_byte_pairs() {
        let pair = |offset: usize| offset / 128;
        assert_ne!(pair(HEADER), pair(PRODUCER));
        assert_ne!(pair(PRODUCER), pair(CONSUMER));
        assert_ne!(pair(CONSUMER), pair(REQUESTS));
        for n in [1, 2, 64, MAX_SLOTS] {
            // The arrays start on a 128-byte boundary, so the last request and the first response
            // (different writers) never share a pair, except with one slot, where they must.
            assert_eq!(responses_offset(n) % 128, if n == 1 { 64 } else { 0 });
        }
        assert_eq!(REQUESTS % 128, 0);
    }

    #[test]
    fn region_sizes() {
        assert_eq!(HEADER_MAGIC, 0);
        assert_eq!(HEADER_VERSION, 8);
        assert_eq!(HEADER_SLOT_COUNT, 12);
        assert_eq!(PRODUCER + PROGRESS_FIRST, 0x80);
        assert_eq!(CONSUMER + PROGRESS_SECOND, 0x108);
        assert_eq!(region_len(1), 0x280);
        assert_eq!(region_len(64), 0x200 + 64 * 128);
        assert_eq!(region_len(MAX_SLOTS), 0x200 + 512 * 1024);
        assert_eq!(responses_offset(8), 0x400);
        assert_eq!(CacheLine::lines_for(64) * CACHE_LINE, region_len(64));
        assert_eq!(MAGIC.to_le_bytes(), *b"duet-fwd");
        assert_eq!(MAGIC, 0x6477_662d_7465_7564, "docs/forwarding.md quotes this value");
        assert_eq!((HEADER_MODE, HEADER_SPIN_US), (16, 20));
        assert_eq!((PSEUDO_PAGE_FAULT, PSEUDO_ECHO), (0x8000_0001, 0x8000_0002));
        assert_ne!(echo_answer(1, 2), echo_answer(2, 1));
        assert_ne!(echo_answer(1, 2), echo_answer(1, 3));
        assert_eq!(core::mem::size_of::<SplitCall>(), 64);
        assert_eq!(core::mem::offset_of!(SplitCall, status), 40);
    }

    #[test]
    fn slot_counts() {
        for n in [1, 2, 4, 1024, MAX_SLOTS] {
            assert!(slot_count_ok(n), "{n}");
        }
        for n in [0, 3, 6, 100, MAX_SLOTS + 1, 2 * MAX_SLOTS, u32::MAX, 1 << 31] {
            assert!(!slot_count_ok(n), "{n}");
        }
    }
}
