//! The ring: one array of request slots and one of response slots, paired by index, over a region
//! both sides map.
//!
//! Each slot's sequence number is its state. The producer (an HRT core) puts request `s` into slot
//! `s mod N`; the consumer (the proxy) takes it when that slot's `seq` reads `s`, runs it, and posts
//! response `s` into the same index of the response array; the producer collects it when that
//! `seq` reads `s`. The response is also the acknowledgement that frees the slot: the producer
//! reuses slot `s mod N` for request `s + N` only after collecting response `s`, so neither side
//! needs to read the other's progress counters on the fast path, and a round trip moves two cache
//! lines (the request and the response), the floor DESIGN §8 names.
//!
//! Nothing read from the region is trusted: a slot's `seq` must be the expected number or its
//! previous occupant's (the slot is not filled yet), anything else fails the end that saw it.
//! Every offset is computed locally from the slot count validated once, masked sequence numbers and
//! constants, so a corrupt region can never send an access outside it.

use core::ptr::NonNull;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::layout::{self, CACHE_LINE};
use crate::{Error, Request, Response, Wait, ABI_VERSION};

/// A validated view of a channel region: its address and slot count. Split it into the
/// [`Producer`] or the [`Consumer`] end; each side of the channel makes its own view of its own
/// mapping of the region.
#[derive(Debug)]
pub struct Channel {
    base: NonNull<u8>,
    slots: u32,
}

// SAFETY: a `Channel` (and the ends made from it) only touches the region through atomic accesses,
// and the contract of `init`/`from_raw` keeps the region valid for as long as the view exists,
// whatever thread holds it.
unsafe impl Send for Channel {}

impl Channel {
    /// Formats `len` bytes at `ptr` as an empty channel of `slot_count` slots (counters and slots
    /// zero, header written last, magic with release) and returns a view of it. The proxy does this
    /// once, before telling the HRT where the channel is.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned view, or
    /// any end made from it, exists. Within this program the region may only be accessed through
    /// views of this crate (or other atomic accesses); nothing else may use it during `init`.
    pub unsafe fn init(ptr: *mut u8, len: usize, slot_count: u32) -> Result<Channel, Error> {
        let base = check_address(ptr)?;
        if !layout::slot_count_ok(slot_count) {
            return Err(Error::BadSlotCount);
        }
        if len < layout::region_len(slot_count) {
            return Err(Error::RegionTooSmall);
        }
        let channel = Channel { base, slots: slot_count };
        for offset in (0..layout::region_len(slot_count)).step_by(8) {
            channel.word(offset).store(0, Ordering::Relaxed);
        }
        channel.half(layout::HEADER_VERSION).store(ABI_VERSION, Ordering::Relaxed);
        channel.half(layout::HEADER_SLOT_COUNT).store(slot_count, Ordering::Relaxed);
        // Pairs with the acquire load of the magic in `from_raw`: whoever sees the magic sees the
        // zeroed slots and counters.
        channel.word(layout::HEADER_MAGIC).store(layout::MAGIC, Ordering::Release);
        Ok(channel)
    }

    /// Checks the header of the channel region of `len` bytes at `ptr` (alignment, size, magic,
    /// version, slot count) and returns a view of it. The slot count is read once, here; later
    /// changes to the header are ignored.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as the returned view, or
    /// any end made from it, exists. Within this program the region may only be accessed through
    /// views of this crate (or other atomic accesses). Its contents may be anything.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Result<Channel, Error> {
        let base = check_address(ptr)?;
        if len < layout::REQUESTS {
            return Err(Error::RegionTooSmall);
        }
        // Until the slot count is known, only the header is touched; with one slot it is in bounds.
        let header = Channel { base, slots: layout::MIN_SLOTS };
        if header.word(layout::HEADER_MAGIC).load(Ordering::Acquire) != layout::MAGIC {
            return Err(Error::BadMagic);
        }
        if header.half(layout::HEADER_VERSION).load(Ordering::Relaxed) != ABI_VERSION {
            return Err(Error::BadVersion);
        }
        let slots = header.half(layout::HEADER_SLOT_COUNT).load(Ordering::Relaxed);
        if !layout::slot_count_ok(slots) {
            return Err(Error::BadSlotCount);
        }
        if len < layout::region_len(slots) {
            return Err(Error::RegionTooSmall);
        }
        Ok(Channel { base, slots })
    }

    /// The number of slots: the most requests that can be in flight at once.
    pub fn slot_count(&self) -> u32 {
        self.slots
    }

    /// Writes the header's mode and adaptive spin time (the creator, before telling the peer
    /// where the channel is). The mode is not checked here; [`Channel::mode`] does.
    pub fn set_mode(&self, mode: u32, spin_us: u32) {
        self.half(layout::HEADER_MODE).store(mode, Ordering::Relaxed);
        self.half(layout::HEADER_SPIN_US).store(spin_us, Ordering::Release);
    }

    /// The header's `(mode, spin_us)`; [`Error::BadMode`] for an unknown mode.
    pub fn mode(&self) -> Result<(u32, u32), Error> {
        let spin = self.half(layout::HEADER_SPIN_US).load(Ordering::Acquire);
        match self.half(layout::HEADER_MODE).load(Ordering::Relaxed) {
            m @ (layout::MODE_POLL | layout::MODE_NOTIFY | layout::MODE_ADAPTIVE) => Ok((m, spin)),
            _ => Err(Error::BadMode),
        }
    }

    /// The producer end (an HRT core), resuming from the producer's published counters (zero on a
    /// fresh channel). Fails if they are inconsistent.
    pub fn producer(self) -> Result<Producer, Error> {
        let (submitted, collected) = self.resume(layout::PRODUCER)?;
        Ok(Producer { channel: self, submitted, collected, failed: None })
    }

    /// The consumer end (the proxy), resuming from the consumer's published counters (zero on a
    /// fresh channel). Fails if they are inconsistent.
    pub fn consumer(self) -> Result<Consumer, Error> {
        let (taken, completed) = self.resume(layout::CONSUMER)?;
        Ok(Consumer { channel: self, taken, completed, failed: None })
    }

    /// Reads a progress line's two counters; the second must not be ahead of the first, nor more
    /// than a ring behind it.
    fn resume(&self, line: usize) -> Result<(u64, u64), Error> {
        let first = self.word(line + layout::PROGRESS_FIRST).load(Ordering::Acquire);
        let second = self.word(line + layout::PROGRESS_SECOND).load(Ordering::Acquire);
        match first.checked_sub(second) {
            None => Err(Error::IndexOutOfRange),
            Some(ahead) if ahead > u64::from(self.slots) => Err(Error::Overflow),
            Some(_) => Ok((first, second)),
        }
    }

    /// The 8-byte word at `offset`. Callers pass only the layout's constant offsets (all inside the
    /// first 0x200 bytes) or `record_offset(..) + a record field`, so `offset + 8 <=
    /// region_len(self.slots)` and `offset` is 8-aligned.
    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: by the callers' discipline above the word lies inside the region, which `init` or
        // `from_raw` checked is at least `region_len(self.slots)` bytes and 64-byte aligned, and which
        // their contract keeps valid and accessed only atomically for the view's lifetime.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(offset).cast::<u64>()) }
    }

    /// The 4-byte word at `offset`, under the same discipline as [`Channel::word`].
    #[inline]
    fn half(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as in `word`: in bounds, 4-aligned, valid and only accessed atomically.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(offset).cast::<u32>()) }
    }

    /// Offset of the record for sequence number `seq` in the array at `array`: the index is masked,
    /// so the record is inside the array whatever `seq` is.
    #[inline]
    fn record_offset(&self, array: usize, seq: u64) -> usize {
        let index = (seq & u64::from(self.slots - 1)) as usize;
        array + index * CACHE_LINE
    }

    /// What a slot holds before `seq` is put in it: its previous occupant's number, or the zero
    /// `init` left there.
    #[inline]
    fn previous(&self, seq: u64) -> u64 {
        seq.saturating_sub(u64::from(self.slots))
    }

    /// Sets `FLAG_FAILED` in this end's progress line: a hint for the peer, which must not rely on it.
    fn publish_failed(&self, line: usize) {
        self.word(line + layout::PROGRESS_FLAGS).fetch_or(layout::FLAG_FAILED, Ordering::Release);
    }

    /// Sets or clears `FLAG_SLEEPING` in this end's line, then a full fence: the look for work
    /// that follows cannot pass the store (docs/forwarding.md "Sleeping").
    fn publish_sleeping(&self, line: usize, sleeping: bool) {
        let word = self.word(line + layout::PROGRESS_FLAGS);
        if sleeping {
            word.fetch_or(layout::FLAG_SLEEPING, Ordering::SeqCst);
        } else {
            word.fetch_and(!layout::FLAG_SLEEPING, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }

    /// A full fence (the work just published cannot pass it), then whether the peer's line says it
    /// sleeps.
    fn peer_sleeping(&self, peer_line: usize) -> bool {
        fence(Ordering::SeqCst);
        self.word(peer_line + layout::PROGRESS_FLAGS).load(Ordering::SeqCst) & layout::FLAG_SLEEPING != 0
    }

    fn flag_failed(&self, line: usize) -> bool {
        self.word(line + layout::PROGRESS_FLAGS).load(Ordering::Acquire) & layout::FLAG_FAILED != 0
    }
}

fn check_address(ptr: *mut u8) -> Result<NonNull<u8>, Error> {
    match NonNull::new(ptr) {
        Some(base) if ptr.addr() % CACHE_LINE == 0 => Ok(base),
        _ => Err(Error::BadAddress),
    }
}

/// The producer end, owned by one HRT core: submits requests and collects their responses, in order.
#[derive(Debug)]
pub struct Producer {
    channel: Channel,
    /// Sequence number of the newest request submitted (0 = none).
    submitted: u64,
    /// Sequence number of the newest response collected.
    collected: u64,
    failed: Option<Error>,
}

impl Producer {
    /// Puts a request into the next slot without waiting: `Ok(Some(seq))` with its sequence number,
    /// or `Ok(None)` when every slot holds a request whose response has not been collected.
    #[inline]
    pub fn try_submit(&mut self, nr: u32, flags: u32, args: [u64; 6]) -> Result<Option<u64>, Error> {
        self.check()?;
        if self.submitted - self.collected >= u64::from(self.channel.slots) {
            return Ok(None);
        }
        let Some(seq) = self.submitted.checked_add(1) else {
            return Err(self.fail(Error::Overflow));
        };
        let slot = self.channel.record_offset(layout::REQUESTS, seq);
        let ch = &self.channel;
        ch.half(slot + layout::REQUEST_NR).store(nr, Ordering::Relaxed);
        ch.half(slot + layout::REQUEST_FLAGS).store(flags, Ordering::Relaxed);
        // Unrolled: six stores (an HRT on an emulating host pays per instruction).
        let [a0, a1, a2, a3, a4, a5] = args;
        let at = slot + layout::REQUEST_ARGS;
        ch.word(at).store(a0, Ordering::Relaxed);
        ch.word(at + 8).store(a1, Ordering::Relaxed);
        ch.word(at + 16).store(a2, Ordering::Relaxed);
        ch.word(at + 24).store(a3, Ordering::Relaxed);
        ch.word(at + 32).store(a4, Ordering::Relaxed);
        ch.word(at + 40).store(a5, Ordering::Relaxed);
        // Publishes the fields above: pairs with the consumer's acquire load in `try_take`.
        ch.word(slot + layout::RECORD_SEQ).store(seq, Ordering::Release);
        ch.word(layout::PRODUCER + layout::PROGRESS_FIRST).store(seq, Ordering::Release);
        self.submitted = seq;
        Ok(Some(seq))
    }

    /// Takes the response to the oldest outstanding request without waiting: `Ok(None)` when it is
    /// not there yet, or when nothing is outstanding.
    #[inline]
    pub fn try_collect(&mut self) -> Result<Option<Response>, Error> {
        self.check()?;
        if self.collected == self.submitted {
            return Ok(None);
        }
        let seq = self.collected + 1;
        let slot = self.channel.record_offset(layout::responses_offset(self.channel.slots), seq);
        let ch = &self.channel;
        // Pairs with the consumer's release store in `try_complete`; also orders our earlier reads
        // of this slot before the consumer's next write to it (it waits for request seq + N, which
        // we release only after this).
        let seen = ch.word(slot + layout::RECORD_SEQ).load(Ordering::Acquire);
        if seen != seq {
            return if seen == ch.previous(seq) { Ok(None) } else { Err(self.fail(Error::SequenceMismatch)) };
        }
        let response = Response {
            seq,
            result: ch.word(slot + layout::RESPONSE_RESULT).load(Ordering::Relaxed) as i64,
            flags: ch.half(slot + layout::RESPONSE_FLAGS).load(Ordering::Relaxed),
            reserved: [0; 11],
        };
        ch.word(layout::PRODUCER + layout::PROGRESS_SECOND).store(seq, Ordering::Release);
        self.collected = seq;
        Ok(Some(response))
    }

    /// Forwards one call and waits for its result: submits `nr(args)` (flags 0), then looks for the
    /// response, calling `wait` between looks. Needs no other request outstanding ([`Error::Busy`]).
    /// If `wait` gives up, the request stays outstanding and this returns [`Error::TimedOut`].
    pub fn forward(&mut self, nr: u32, args: [u64; 6], wait: &mut impl Wait) -> Result<i64, Error> {
        self.check()?;
        if self.outstanding() != 0 {
            return Err(Error::Busy);
        }
        if self.try_submit(nr, 0, args)?.is_none() {
            return Err(Error::Busy);
        }
        let mut polls: u64 = 0;
        loop {
            // With nothing else outstanding, the oldest response is ours.
            if let Some(response) = self.try_collect()? {
                return Ok(response.result);
            }
            polls = polls.saturating_add(1);
            if !wait.wait(polls) {
                return Err(Error::TimedOut);
            }
        }
    }

    /// Whether the response to the oldest outstanding request is there (a look that takes nothing;
    /// the sleeping protocol's last look before sleeping). A corrupt slot reads as ready: the
    /// following [`Producer::try_collect`] reports it.
    #[inline]
    pub fn response_ready(&self) -> bool {
        if self.failed.is_some() || self.collected == self.submitted {
            return false;
        }
        let seq = self.collected + 1;
        let slot = self.channel.record_offset(layout::responses_offset(self.channel.slots), seq);
        self.channel.word(slot + layout::RECORD_SEQ).load(Ordering::Acquire) != self.channel.previous(seq)
    }

    /// Requests submitted whose responses have not been collected.
    #[inline]
    pub fn outstanding(&self) -> u64 {
        self.submitted - self.collected
    }

    /// Sequence number of the newest request submitted (0 = none).
    pub fn submitted(&self) -> u64 {
        self.submitted
    }

    /// The number of slots.
    pub fn slot_count(&self) -> u32 {
        self.channel.slots
    }

    /// The corruption that failed this end, if any.
    pub fn failed(&self) -> Option<Error> {
        self.failed
    }

    /// Whether the consumer says it found the channel corrupt (a hint: the peer is not trusted).
    pub fn peer_failed(&self) -> bool {
        self.channel.flag_failed(layout::CONSUMER)
    }

    /// The channel's `(mode, spin_us)` as its header says ([`Channel::mode`]).
    pub fn mode(&self) -> Result<(u32, u32), Error> {
        self.channel.mode()
    }

    /// Says (or unsays) that this end sleeps until its doorbell rings; setting it is followed by
    /// a full fence, after which the caller must look for its response once more before sleeping.
    pub fn set_sleeping(&self, sleeping: bool) {
        self.channel.publish_sleeping(layout::PRODUCER, sleeping);
    }

    /// After a full fence: whether the consumer says it sleeps (then ring its doorbell, having
    /// submitted work for it).
    pub fn peer_sleeping(&self) -> bool {
        self.channel.peer_sleeping(layout::CONSUMER)
    }

    #[inline]
    fn check(&self) -> Result<(), Error> {
        self.failed.map_or(Ok(()), Err)
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error);
        self.channel.publish_failed(layout::PRODUCER);
        error
    }
}

/// The consumer end, owned by the proxy: takes requests in order, and completes them in order.
#[derive(Debug)]
pub struct Consumer {
    channel: Channel,
    /// Sequence number of the newest request taken (0 = none).
    taken: u64,
    /// Sequence number of the newest request completed.
    completed: u64,
    failed: Option<Error>,
}

impl Consumer {
    /// Takes the next request without waiting: `Ok(None)` when it has not been submitted yet (or
    /// when every slot holds a request taken and not yet completed).
    #[inline]
    pub fn try_take(&mut self) -> Result<Option<Request>, Error> {
        self.check()?;
        if self.taken - self.completed >= u64::from(self.channel.slots) {
            return Ok(None);
        }
        let Some(seq) = self.taken.checked_add(1) else {
            return Err(self.fail(Error::Overflow));
        };
        let slot = self.channel.record_offset(layout::REQUESTS, seq);
        let ch = &self.channel;
        // Pairs with the producer's release store in `try_submit`.
        let seen = ch.word(slot + layout::RECORD_SEQ).load(Ordering::Acquire);
        if seen != seq {
            return if seen == ch.previous(seq) { Ok(None) } else { Err(self.fail(Error::SequenceMismatch)) };
        }
        let mut args = [0; 6];
        for (i, arg) in args.iter_mut().enumerate() {
            *arg = ch.word(slot + layout::REQUEST_ARGS + 8 * i).load(Ordering::Relaxed);
        }
        let request = Request {
            seq,
            nr: ch.half(slot + layout::REQUEST_NR).load(Ordering::Relaxed),
            flags: ch.half(slot + layout::REQUEST_FLAGS).load(Ordering::Relaxed),
            args,
        };
        ch.word(layout::CONSUMER + layout::PROGRESS_FIRST).store(seq, Ordering::Release);
        self.taken = seq;
        Ok(Some(request))
    }

    /// Posts the response to request `seq`, which must be the oldest taken and not yet completed
    /// ([`Error::NotTaken`] otherwise; the channel stays usable). Never waits: the slot is reserved
    /// for this response.
    #[inline]
    pub fn try_complete(&mut self, seq: u64, result: i64, flags: u32) -> Result<(), Error> {
        self.check()?;
        if self.completed == self.taken || seq != self.completed + 1 {
            return Err(Error::NotTaken);
        }
        let slot = self.channel.record_offset(layout::responses_offset(self.channel.slots), seq);
        let ch = &self.channel;
        ch.word(slot + layout::RESPONSE_RESULT).store(result as u64, Ordering::Relaxed);
        ch.half(slot + layout::RESPONSE_FLAGS).store(flags, Ordering::Relaxed);
        // Publishes the fields above, and orders our reads of request `seq` before the producer's
        // reuse of its slot: pairs with the producer's acquire load in `try_collect`.
        ch.word(slot + layout::RECORD_SEQ).store(seq, Ordering::Release);
        ch.word(layout::CONSUMER + layout::PROGRESS_SECOND).store(seq, Ordering::Release);
        self.completed = seq;
        Ok(())
    }

    /// Sequence number of the newest request taken (0 = none); the oldest one in progress is
    /// `taken() - in_progress() + 1`.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Requests taken and not yet completed.
    pub fn in_progress(&self) -> u64 {
        self.taken - self.completed
    }

    /// The number of slots.
    pub fn slot_count(&self) -> u32 {
        self.channel.slots
    }

    /// The corruption that failed this end, if any.
    pub fn failed(&self) -> Option<Error> {
        self.failed
    }

    /// Whether the producer says it found the channel corrupt (a hint: the peer is not trusted).
    pub fn peer_failed(&self) -> bool {
        self.channel.flag_failed(layout::PRODUCER)
    }

    /// The channel's `(mode, spin_us)` as its header says ([`Channel::mode`]).
    pub fn mode(&self) -> Result<(u32, u32), Error> {
        self.channel.mode()
    }

    /// Says (or unsays) that this end sleeps until its doorbell rings; setting it is followed by
    /// a full fence, after which the caller must look for requests once more before sleeping.
    pub fn set_sleeping(&self, sleeping: bool) {
        self.channel.publish_sleeping(layout::CONSUMER, sleeping);
    }

    /// After a full fence: whether the producer says it sleeps (then ring its doorbell, having
    /// completed work for it).
    pub fn peer_sleeping(&self) -> bool {
        self.channel.peer_sleeping(layout::PRODUCER)
    }

    #[inline]
    fn check(&self) -> Result<(), Error> {
        self.failed.map_or(Ok(()), Err)
    }

    fn fail(&mut self, error: Error) -> Error {
        self.failed = Some(error);
        self.channel.publish_failed(layout::CONSUMER);
        error
    }
}

#[cfg(test)]
mod tests;
