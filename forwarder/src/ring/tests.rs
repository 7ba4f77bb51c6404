//! Unit tests of the ring: the documented bytes, every error, and the sticky failure.

use std::vec;
use std::vec::Vec;

use super::*;
use crate::{layout::*, CacheLine, Spin};

/// A zeroed, 64-byte-aligned region, touched only through `ptr` once made.
struct Region {
    _lines: Vec<CacheLine>,
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(slots: u32) -> Region {
        let mut lines = vec![CacheLine::ZERO; CacheLine::lines_for(slots)];
        let ptr = lines.as_mut_ptr().cast::<u8>();
        Region { len: lines.len() * CACHE_LINE, _lines: lines, ptr }
    }

    fn init(&self, slots: u32) -> Channel {
        // SAFETY: the region lives as long as the test, and is only touched atomically.
        unsafe { Channel::init(self.ptr, self.len, slots) }.expect("init")
    }

    fn view(&self) -> Result<Channel, Error> {
        // SAFETY: as in `init`.
        unsafe { Channel::from_raw(self.ptr, self.len) }
    }

    fn ends(&self, slots: u32) -> (Producer, Consumer) {
        self.init(slots);
        let view = || self.view().expect("view");
        (view().producer().expect("producer"), view().consumer().expect("consumer"))
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        assert!(offset + 8 <= self.len && offset % 8 == 0);
        // SAFETY: in bounds and aligned (checked above); the region outlives the borrow.
        unsafe { AtomicU64::from_ptr(self.ptr.add(offset).cast()) }
    }

    fn peek(&self, offset: usize) -> u64 {
        self.word(offset).load(Ordering::SeqCst)
    }

    fn poke(&self, offset: usize, value: u64) {
        self.word(offset).store(value, Ordering::SeqCst)
    }
}

const ARGS: [u64; 6] = [1, 2, 3, 4, 5, u64::MAX];

#[test]
fn init_writes_the_documented_header_and_from_raw_accepts_it() {
    let region = Region::new(8);
    region.poke(REQUESTS, 77); // `init` clears old slots
    let channel = region.init(8);
    assert_eq!(channel.slot_count(), 8);
    assert_eq!(region.peek(HEADER_MAGIC), MAGIC);
    assert_eq!(region.peek(HEADER_VERSION), u64::from(crate::ABI_VERSION) | 8 << 32);
    assert_eq!(region.peek(REQUESTS), 0);
    assert_eq!(region.view().map(|c| c.slot_count()), Ok(8));
}

#[test]
fn a_round_trip_writes_the_documented_bytes() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    assert_eq!(producer.try_submit(39, 0x5a, ARGS), Ok(Some(1)));
    let slot = REQUESTS + 64;
    assert_eq!(region.peek(slot + RECORD_SEQ), 1);
    assert_eq!(region.peek(slot + REQUEST_NR), 39 | 0x5a << 32);
    assert_eq!(region.peek(slot + REQUEST_ARGS + 40), u64::MAX);
    assert_eq!(region.peek(PRODUCER + PROGRESS_FIRST), 1);

    let request = consumer.try_take().expect("take").expect("a request");
    assert_eq!(request, Request { seq: 1, nr: 39, flags: 0x5a, args: ARGS });
    assert_eq!(region.peek(CONSUMER + PROGRESS_FIRST), 1);
    assert_eq!(consumer.try_take(), Ok(None));
    assert_eq!(producer.try_collect(), Ok(None));

    consumer.try_complete(1, -38, 3).expect("complete");
    let slot = responses_offset(4) + 64;
    assert_eq!(region.peek(slot + RECORD_SEQ), 1);
    assert_eq!(region.peek(slot + RESPONSE_RESULT), -38i64 as u64);
    assert_eq!(region.peek(slot + RESPONSE_FLAGS), 3);
    assert_eq!(region.peek(CONSUMER + PROGRESS_SECOND), 1);

    let response = producer.try_collect().expect("collect").expect("a response");
    assert_eq!((response.seq, response.result, response.flags), (1, -38, 3));
    assert_eq!(region.peek(PRODUCER + PROGRESS_SECOND), 1);
    assert_eq!(producer.outstanding(), 0);
    assert_eq!(producer.try_collect(), Ok(None));
}

#[test]
fn from_raw_rejects_bad_regions() {
    let region = Region::new(8);
    let from_raw = |ptr: *mut u8, len| {
        // SAFETY: the pointers are into `region` or are rejected before any access.
        unsafe { Channel::from_raw(ptr, len) }.map(|c| c.slot_count())
    };
    assert_eq!(from_raw(core::ptr::null_mut(), 4096).err(), Some(Error::BadAddress));
    assert_eq!(from_raw(region.ptr.wrapping_add(8), 1024).err(), Some(Error::BadAddress));
    assert_eq!(from_raw(region.ptr, REQUESTS - 1).err(), Some(Error::RegionTooSmall));
    assert_eq!(from_raw(region.ptr, region.len).err(), Some(Error::BadMagic));

    region.init(8);
    assert_eq!(from_raw(region.ptr, region_len(8) - 1).err(), Some(Error::RegionTooSmall));
    assert_eq!(from_raw(region.ptr, region_len(8)), Ok(8));
    region.poke(HEADER_VERSION, u64::from(crate::ABI_VERSION + 1) | 8 << 32);
    assert_eq!(from_raw(region.ptr, region.len).err(), Some(Error::BadVersion));
    for bad in [0u64, 3, 6, u64::from(MAX_SLOTS) * 2, u64::from(u32::MAX)] {
        region.poke(HEADER_VERSION, u64::from(crate::ABI_VERSION) | bad << 32);
        assert_eq!(from_raw(region.ptr, region.len).err(), Some(Error::BadSlotCount), "{bad}");
    }
    // A header that claims more slots than the region holds.
    region.poke(HEADER_VERSION, u64::from(crate::ABI_VERSION) | 16 << 32);
    assert_eq!(from_raw(region.ptr, region.len).err(), Some(Error::RegionTooSmall));
    region.poke(HEADER_MAGIC, MAGIC ^ 1);
    assert_eq!(from_raw(region.ptr, region.len).err(), Some(Error::BadMagic));
}

#[test]
fn init_rejects_bad_regions() {
    let region = Region::new(8);
    let init = |ptr: *mut u8, len, slots| {
        // SAFETY: the pointers are into `region` or are rejected before any access.
        unsafe { Channel::init(ptr, len, slots) }.map(|c| c.slot_count())
    };
    assert_eq!(init(core::ptr::null_mut(), 4096, 1).err(), Some(Error::BadAddress));
    assert_eq!(init(region.ptr.wrapping_add(32), region.len - 64, 1).err(), Some(Error::BadAddress));
    assert_eq!(init(region.ptr, region.len, 3).err(), Some(Error::BadSlotCount));
    assert_eq!(init(region.ptr, region.len, 0).err(), Some(Error::BadSlotCount));
    assert_eq!(init(region.ptr, region.len, 16).err(), Some(Error::RegionTooSmall));
    assert_eq!(region.peek(HEADER_MAGIC), 0, "a refused init writes nothing");
    assert_eq!(init(region.ptr, region.len, 1), Ok(1));
    assert_eq!(init(region.ptr, region.len, 8), Ok(8));
}

#[test]
fn full_ring_and_busy_consumer_wait_without_error() {
    let region = Region::new(2);
    let (mut producer, mut consumer) = region.ends(2);
    assert_eq!(producer.try_submit(1, 0, ARGS), Ok(Some(1)));
    assert_eq!(producer.try_submit(2, 0, ARGS), Ok(Some(2)));
    assert_eq!(producer.try_submit(3, 0, ARGS), Ok(None));
    assert_eq!(consumer.try_take().map(|r| r.map(|r| r.nr)), Ok(Some(1)));
    assert_eq!(consumer.try_take().map(|r| r.map(|r| r.nr)), Ok(Some(2)));
    assert_eq!(consumer.try_take(), Ok(None));
    assert_eq!(consumer.in_progress(), 2);
    consumer.try_complete(1, 10, 0).expect("complete 1");
    assert_eq!(producer.try_submit(3, 0, ARGS), Ok(None), "slot 1 is freed by collecting, not completing");
    assert_eq!(producer.try_collect().map(|r| r.map(|r| r.result)), Ok(Some(10)));
    assert_eq!(producer.try_submit(3, 0, ARGS), Ok(Some(3)));
    assert_eq!(consumer.try_take().map(|r| r.map(|r| r.seq)), Ok(Some(3)));
    // Requests 2 and 3 are both taken, not completed: the consumer holds every slot.
    assert_eq!(consumer.try_take(), Ok(None));
    assert_eq!(consumer.try_complete(3, 30, 0), Err(Error::NotTaken), "completions go in order");
    consumer.try_complete(2, 20, 0).expect("complete 2");
    consumer.try_complete(3, 30, 0).expect("complete 3");
    assert_eq!(producer.try_collect().map(|r| r.map(|r| (r.seq, r.result))), Ok(Some((2, 20))));
    assert_eq!(producer.try_collect().map(|r| r.map(|r| (r.seq, r.result))), Ok(Some((3, 30))));
}

#[test]
fn completing_out_of_turn_is_refused_and_harmless() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    assert_eq!(consumer.try_complete(1, 0, 0), Err(Error::NotTaken));
    producer.try_submit(1, 0, ARGS).expect("submit");
    producer.try_submit(2, 0, ARGS).expect("submit");
    consumer.try_take().expect("take");
    consumer.try_take().expect("take");
    assert_eq!(consumer.try_complete(2, 0, 0), Err(Error::NotTaken));
    assert_eq!(consumer.try_complete(3, 0, 0), Err(Error::NotTaken));
    assert_eq!(consumer.try_complete(0, 0, 0), Err(Error::NotTaken));
    assert_eq!(consumer.failed(), None);
    consumer.try_complete(1, 5, 0).expect("complete");
    assert_eq!(producer.try_collect().map(|r| r.map(|r| r.result)), Ok(Some(5)));
}

#[test]
fn forward_needs_an_idle_producer_and_times_out_without_losing_the_request() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    assert_eq!(producer.forward(60, ARGS, &mut Spin::limit(10)), Err(Error::TimedOut));
    assert_eq!(producer.outstanding(), 1);
    assert_eq!(producer.forward(60, ARGS, &mut Spin::limit(10)), Err(Error::Busy));
    let request = consumer.try_take().expect("take").expect("request");
    consumer.try_complete(request.seq, 42, 0).expect("complete");
    assert_eq!(producer.try_collect().map(|r| r.map(|r| r.result)), Ok(Some(42)));

    // A policy that answers the request itself when first asked to wait.
    let mut polls_seen = 0;
    let mut serve = |polls: u64| {
        polls_seen = polls;
        if let Ok(Some(r)) = consumer.try_take() {
            consumer.try_complete(r.seq, r.args[0] as i64 * 2, 0).expect("complete");
        }
        true
    };
    assert_eq!(producer.forward(1, [21, 0, 0, 0, 0, 0], &mut serve), Ok(42));
    assert_eq!(polls_seen, 1);
}

#[test]
fn a_bad_request_sequence_fails_the_consumer_for_good() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    region.poke(REQUESTS + 64 + RECORD_SEQ, 5); // slot 1 expects 1 or 0
    assert_eq!(consumer.try_take(), Err(Error::SequenceMismatch));
    assert_eq!(consumer.failed(), Some(Error::SequenceMismatch));
    assert!(producer.peer_failed());
    assert!(!consumer.peer_failed());
    // Even a now-valid request is refused.
    region.poke(REQUESTS + 64 + RECORD_SEQ, 0);
    producer.try_submit(1, 0, ARGS).expect("submit");
    assert_eq!(consumer.try_take(), Err(Error::SequenceMismatch));
    assert_eq!(consumer.try_complete(1, 0, 0), Err(Error::SequenceMismatch));
}

#[test]
fn a_bad_response_sequence_fails_the_producer_for_good() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    producer.try_submit(1, 0, ARGS).expect("submit");
    let slot = responses_offset(4) + 64;
    region.poke(slot + RECORD_SEQ, 2);
    assert_eq!(producer.try_collect(), Err(Error::SequenceMismatch));
    assert!(consumer.peer_failed());
    assert_eq!(producer.try_submit(1, 0, ARGS), Err(Error::SequenceMismatch));
    assert_eq!(producer.forward(1, ARGS, &mut Spin::limit(1)), Err(Error::SequenceMismatch));
    assert_eq!(producer.failed(), Some(Error::SequenceMismatch));
    // The consumer, which saw nothing wrong, goes on.
    assert!(consumer.try_take().expect("take").is_some());
}

#[test]
fn a_stale_slot_after_wrapping_reads_as_empty_and_a_future_one_as_corrupt() {
    let region = Region::new(2);
    let (mut producer, mut consumer) = region.ends(2);
    for seq in 1..=5 {
        assert_eq!(producer.try_submit(0, 0, ARGS), Ok(Some(seq)));
        consumer.try_take().expect("take").expect("request");
        consumer.try_complete(seq, 0, 0).expect("complete");
        producer.try_collect().expect("collect").expect("response");
    }
    // Slot 0 holds request 4 (the predecessor of 6): empty. Request 8 there would be corrupt.
    assert_eq!(consumer.try_take(), Ok(None));
    region.poke(REQUESTS + RECORD_SEQ, 8);
    assert_eq!(consumer.try_take(), Err(Error::SequenceMismatch));
}

fn attach_with(line: usize, first: u64, second: u64) -> (Result<u64, Error>, Result<u64, Error>) {
    let region = Region::new(4);
    region.init(4);
    region.poke(line + PROGRESS_FIRST, first);
    region.poke(line + PROGRESS_SECOND, second);
    let view = || region.view().expect("view");
    (view().producer().map(|p| p.submitted()), view().consumer().map(|c| c.in_progress()))
}

#[test]
fn attaching_checks_the_published_counters() {
    assert_eq!(attach_with(PRODUCER, 7, 5), (Ok(7), Ok(0)));
    assert_eq!(attach_with(PRODUCER, 5, 7).0, Err(Error::IndexOutOfRange));
    assert_eq!(attach_with(PRODUCER, 9, 4).0, Err(Error::Overflow));
    assert_eq!(attach_with(PRODUCER, u64::MAX, 0).0, Err(Error::Overflow));
    assert_eq!(attach_with(CONSUMER, 7, 3), (Ok(0), Ok(4)));
    assert_eq!(attach_with(CONSUMER, 0, 1).1, Err(Error::IndexOutOfRange));
    assert_eq!(attach_with(CONSUMER, 6, 1).1, Err(Error::Overflow));
}

#[test]
fn exhausted_sequence_numbers_overflow_instead_of_wrapping() {
    let region = Region::new(4);
    region.init(4);
    for line in [PRODUCER, CONSUMER] {
        region.poke(line + PROGRESS_FIRST, u64::MAX);
        region.poke(line + PROGRESS_SECOND, u64::MAX);
    }
    let view = || region.view().expect("view");
    let mut producer = view().producer().expect("producer");
    let mut consumer = view().consumer().expect("consumer");
    assert_eq!(producer.try_submit(0, 0, ARGS), Err(Error::Overflow));
    assert_eq!(consumer.try_take(), Err(Error::Overflow));
    assert_eq!((producer.failed(), consumer.failed()), (Some(Error::Overflow), Some(Error::Overflow)));
}

#[test]
fn later_header_changes_are_ignored() {
    let region = Region::new(4);
    let (mut producer, mut consumer) = region.ends(4);
    region.poke(HEADER_MAGIC, 0);
    region.poke(HEADER_VERSION, u64::from(u32::MAX) << 32);
    assert_eq!(producer.forward(0, ARGS, &mut Spin::limit(1)), Err(Error::TimedOut));
    assert_eq!(consumer.try_take().map(|r| r.map(|r| r.seq)), Ok(Some(1)));
    assert_eq!(producer.slot_count(), 4);
}

#[test]
fn mode_is_written_by_the_creator_and_checked_by_both_ends() {
    let region = Region::new(4);
    let channel = region.init(4);
    assert_eq!(channel.mode(), Ok((MODE_POLL, 0)), "a fresh channel polls");
    channel.set_mode(MODE_ADAPTIVE, 250);
    assert_eq!(region.peek(HEADER_MODE) & 0xffff_ffff, u64::from(MODE_ADAPTIVE));
    assert_eq!(region.peek(HEADER_MODE) >> 32, 250, "spin_us follows mode in the same word");
    let (producer, consumer) = (region.view().expect("view").producer().expect("p"), region.view().expect("view"));
    assert_eq!(producer.mode(), Ok((MODE_ADAPTIVE, 250)));
    assert_eq!(consumer.consumer().expect("c").mode(), Ok((MODE_ADAPTIVE, 250)));
    for bad in [3, 7, u32::MAX] {
        channel.set_mode(bad, 1);
        assert_eq!(producer.mode(), Err(Error::BadMode), "mode {bad}");
    }
}

#[test]
fn sleeping_flags_are_per_end_and_leave_failed_alone() {
    let region = Region::new(2);
    let (mut producer, consumer) = region.ends(2);
    assert!(!producer.peer_sleeping() && !consumer.peer_sleeping());
    consumer.set_sleeping(true);
    assert!(producer.peer_sleeping());
    assert!(!consumer.peer_sleeping(), "the consumer's flag is not the producer's");
    assert_eq!(region.peek(CONSUMER + PROGRESS_FLAGS), FLAG_SLEEPING);
    producer.set_sleeping(true);
    assert!(consumer.peer_sleeping());
    // A failure keeps the sleeping bit, and clearing sleep keeps the failure.
    assert_eq!(producer.try_submit(1, 0, ARGS), Ok(Some(1)));
    // Request 1 sits in slot 1 of 2; its response slot gets a number it can never hold.
    region.poke(responses_offset(2) + CACHE_LINE + RECORD_SEQ, 77);
    assert_eq!(producer.try_collect(), Err(Error::SequenceMismatch));
    assert_eq!(region.peek(PRODUCER + PROGRESS_FLAGS), FLAG_SLEEPING | FLAG_FAILED);
    producer.set_sleeping(false);
    assert_eq!(region.peek(PRODUCER + PROGRESS_FLAGS), FLAG_FAILED);
    assert!(consumer.peer_failed() && !consumer.peer_sleeping());
    consumer.set_sleeping(false);
    assert!(!producer.peer_sleeping());
}

#[test]
fn response_ready_looks_without_taking() {
    let region = Region::new(2);
    let (mut producer, mut consumer) = region.ends(2);
    assert!(!producer.response_ready(), "nothing outstanding");
    assert_eq!(producer.try_submit(7, 0, ARGS), Ok(Some(1)));
    assert!(!producer.response_ready());
    let request = consumer.try_take().expect("take").expect("a request");
    consumer.try_complete(request.seq, 5, 0).expect("complete");
    assert!(producer.response_ready());
    assert!(producer.response_ready(), "looking twice takes nothing");
    assert_eq!(producer.try_collect().map(|r| r.map(|r| r.result)), Ok(Some(5)));
    assert!(!producer.response_ready());
    // A corrupt slot reads as ready, and collecting it reports the corruption.
    assert_eq!(producer.try_submit(7, 0, ARGS), Ok(Some(2)));
    region.poke(responses_offset(2) + RECORD_SEQ, 99);
    assert!(producer.response_ready());
    assert_eq!(producer.try_collect(), Err(Error::SequenceMismatch));
    assert!(!producer.response_ready(), "a failed end has nothing ready");
}
