//! Property tests of the ring, both ends driven from one thread in arbitrary interleavings: an
//! honest pair never loses, duplicates or reorders a request; damage to the shared region is
//! detected or harmless, and never a panic.

mod common;

use std::collections::VecDeque;

use common::Region;
use forwarder::layout::{responses_offset, RECORD_SEQ, REQUESTS};
use forwarder::{Consumer, Error, Producer, Request, Response, Spin};
use proptest::prelude::*;

/// One step by one side.
#[derive(Debug, Clone)]
enum Op {
    Submit {
        nr: u32,
        flags: u32,
        args: [u64; 6],
    },
    Take,
    Complete {
        result: i64,
        flags: u32,
    },
    /// Complete a sequence number `skip` (≥ 1) past the oldest taken one.
    CompleteOutOfTurn {
        skip: u64,
    },
    Collect,
    /// `forward` with a one-look spin: times out unless the response is already there (it never is).
    Forward {
        nr: u32,
    },
    /// Damage: write `value` at byte `offset` of the region, `wide` as a u64 (8-aligned) else a byte.
    Poke {
        offset: usize,
        value: u64,
        wide: bool,
    },
}

fn op(pokes: bool) -> impl Strategy<Value = Op> {
    let args = proptest::array::uniform6(any::<u64>());
    let honest = prop_oneof![
        4 => (any::<u32>(), any::<u32>(), args).prop_map(|(nr, flags, args)| Op::Submit { nr, flags, args }),
        4 => Just(Op::Take),
        4 => (any::<i64>(), any::<u32>()).prop_map(|(result, flags)| Op::Complete { result, flags }),
        1 => (1u64..4).prop_map(|skip| Op::CompleteOutOfTurn { skip }),
        4 => Just(Op::Collect),
        1 => any::<u32>().prop_map(|nr| Op::Forward { nr }),
    ];
    let weight = if pokes { 1 } else { 0 };
    prop_oneof![
        12 => honest,
        weight => (any::<prop::sample::Index>(), any::<u64>(), any::<bool>())
            .prop_map(|(i, value, wide)| Op::Poke { offset: i.index(1 << 20), value, wide }),
        weight => (any::<prop::sample::Index>(), 0u64..12).prop_map(|(i, value)| Op::Poke {
            // A slot's sequence number, set near the numbers in use.
            offset: i.index(1 << 20) & !63,
            value,
            wide: true
        }),
    ]
}

fn slot_counts() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![1u32, 2, 4, 8])
}

/// What an honest pair must do: the requests in each stage, oldest first.
#[derive(Default)]
struct Model {
    slots: u64,
    next_seq: u64,
    submitted: VecDeque<Request>,
    taken: VecDeque<Request>,
    completed: VecDeque<Response>,
}

impl Model {
    fn outstanding(&self) -> u64 {
        (self.submitted.len() + self.taken.len() + self.completed.len()) as u64
    }
}

/// The result of one step, comparable between the model and the channel.
#[derive(Debug, PartialEq)]
enum Outcome {
    Submitted(Result<Option<u64>, Error>),
    Taken(Result<Option<Request>, Error>),
    Completed(Result<(), Error>),
    Collected(Result<Option<Response>, Error>),
    Forwarded(Result<i64, Error>),
    Poked,
}

fn apply(op: &Op, producer: &mut Producer, consumer: &mut Consumer, region: &Region) -> Outcome {
    match *op {
        Op::Submit { nr, flags, args } => Outcome::Submitted(producer.try_submit(nr, flags, args)),
        Op::Take => Outcome::Taken(consumer.try_take()),
        Op::Complete { result, flags } => {
            Outcome::Completed(consumer.try_complete(consumer_oldest(consumer), result, flags))
        }
        Op::CompleteOutOfTurn { skip } => {
            Outcome::Completed(consumer.try_complete(consumer_oldest(consumer).wrapping_add(skip), 0, 0))
        }
        Op::Collect => Outcome::Collected(producer.try_collect()),
        Op::Forward { nr } => Outcome::Forwarded(producer.forward(nr, [0; 6], &mut Spin::limit(1))),
        Op::Poke { offset, value, wide } => {
            if wide {
                region.poke_u64((offset % region.len) & !7, value);
            } else {
                region.poke_u8(offset % region.len, value as u8);
            }
            Outcome::Poked
        }
    }
}

/// The consumer's oldest taken, not completed sequence number (what a proxy keeps track of).
fn consumer_oldest(consumer: &Consumer) -> u64 {
    (consumer.taken() - consumer.in_progress()).wrapping_add(1)
}

fn expect(op: &Op, m: &mut Model) -> Outcome {
    match *op {
        Op::Submit { nr, flags, args } => {
            if m.outstanding() == m.slots {
                return Outcome::Submitted(Ok(None));
            }
            m.next_seq += 1;
            m.submitted.push_back(Request { seq: m.next_seq, nr, flags, args });
            Outcome::Submitted(Ok(Some(m.next_seq)))
        }
        Op::Take => {
            let request = m.submitted.pop_front();
            if let Some(r) = request {
                m.taken.push_back(r);
            }
            Outcome::Taken(Ok(request))
        }
        Op::Complete { result, flags } => match m.taken.pop_front() {
            None => Outcome::Completed(Err(Error::NotTaken)),
            Some(r) => {
                m.completed.push_back(Response { seq: r.seq, result, flags, reserved: [0; 11] });
                Outcome::Completed(Ok(()))
            }
        },
        Op::CompleteOutOfTurn { .. } => Outcome::Completed(Err(Error::NotTaken)),
        Op::Collect => Outcome::Collected(Ok(m.completed.pop_front())),
        Op::Forward { nr } => {
            if m.outstanding() != 0 {
                return Outcome::Forwarded(Err(Error::Busy));
            }
            m.next_seq += 1;
            m.submitted.push_back(Request { seq: m.next_seq, nr, flags: 0, args: [0; 6] });
            Outcome::Forwarded(Err(Error::TimedOut))
        }
        Op::Poke { .. } => Outcome::Poked,
    }
}

/// Whether damage at `offset` cannot change what the ends do: the header and the progress lines
/// are read only when an end is made, and the reserved bytes of a response are never read.
fn harmless(offset: usize, wide: bool, slots: u32, len: usize) -> bool {
    let offset = if wide { (offset % len) & !7 } else { offset % len };
    let responses = responses_offset(slots);
    offset < REQUESTS
        || (offset >= responses && offset % 64 >= 20)
        || offset >= responses + 64 * slots as usize
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// An honest pair behaves exactly like the queue model, whatever the interleaving.
    #[test]
    fn honest_pair_matches_the_model(
        slots in slot_counts(),
        ops in prop::collection::vec(op(false), 0..300),
    ) {
        let region = Region::new(slots, 0);
        let (mut producer, mut consumer) = region.ends(slots);
        let mut model = Model { slots: u64::from(slots), ..Model::default() };
        for op in &ops {
            let outcome = apply(op, &mut producer, &mut consumer, &region);
            prop_assert_eq!(outcome, expect(op, &mut model), "{:?}", op);
        }
        prop_assert_eq!(producer.outstanding(), model.outstanding());
        prop_assert_eq!(producer.failed(), None);
        prop_assert_eq!(consumer.failed(), None);
        // Drain: everything submitted comes back once, in order, with its own result.
        while consumer.in_progress() > 0 {
            consumer.try_complete(consumer_oldest(&consumer), 0, 0).expect("complete");
        }
        while let Some(r) = consumer.try_take().expect("take") {
            consumer.try_complete(r.seq, r.seq as i64, 0).expect("complete");
        }
        let mut last = producer.submitted() - producer.outstanding();
        while let Some(r) = producer.try_collect().expect("collect") {
            prop_assert_eq!(r.seq, last + 1);
            last = r.seq;
        }
        prop_assert_eq!(last, producer.submitted());
    }

    /// Damage to the region: while it touches only bytes the ends do not read after attaching,
    /// nothing changes; after other damage, every end either goes on handing out consecutive
    /// sequence numbers or fails with a corruption error that it then repeats for ever.
    #[test]
    fn damage_is_detected_or_harmless(
        slots in slot_counts(),
        ops in prop::collection::vec(op(true), 0..300),
    ) {
        let region = Region::new(slots, 0);
        let (mut producer, mut consumer) = region.ends(slots);
        let mut model = Model { slots: u64::from(slots), ..Model::default() };
        let mut intact = true;
        let (mut last_taken, mut last_collected) = (0, 0);
        let (mut producer_error, mut consumer_error) = (None, None);
        for op in &ops {
            if let Op::Poke { offset, wide, .. } = *op {
                intact &= harmless(offset, wide, slots, region.len);
            }
            let outcome = apply(op, &mut producer, &mut consumer, &region);
            let expected = expect(op, &mut model);
            if intact {
                prop_assert_eq!(&outcome, &expected, "{:?}", op);
            }
            let (end_error, result_error) = match &outcome {
                Outcome::Taken(Ok(Some(r))) => {
                    prop_assert_eq!(r.seq, last_taken + 1);
                    last_taken = r.seq;
                    (&mut consumer_error, None)
                }
                Outcome::Collected(Ok(Some(r))) => {
                    prop_assert_eq!(r.seq, last_collected + 1);
                    last_collected = r.seq;
                    (&mut producer_error, None)
                }
                Outcome::Forwarded(Ok(_)) => {
                    // Only damage can answer a forward within one look; it still counts in order.
                    last_collected += 1;
                    (&mut producer_error, None)
                }
                Outcome::Taken(r) => (&mut consumer_error, r.as_ref().err().copied()),
                Outcome::Completed(r) => (&mut consumer_error, r.err()),
                Outcome::Submitted(r) => (&mut producer_error, r.err()),
                Outcome::Collected(r) => (&mut producer_error, r.as_ref().err().copied()),
                Outcome::Forwarded(r) => (&mut producer_error, r.err()),
                Outcome::Poked => continue,
            };
            match (*end_error, result_error) {
                (Some(first), got) => prop_assert_eq!(got, Some(first), "a failed end stays failed"),
                (None, Some(e)) if e.is_corruption() => *end_error = Some(e),
                (None, _) => {}
            }
        }
        prop_assert_eq!(producer.failed(), producer_error);
        prop_assert_eq!(consumer.failed(), consumer_error);
        // Attaching anew to whatever is left never panics, and a view that is made works.
        if let Ok(view) = region.view() {
            if let Ok(mut p) = view.producer() {
                let _ = p.try_collect();
                let _ = p.try_submit(1, 0, [0; 6]);
            }
        }
        if let Ok(view) = region.view() {
            if let Ok(mut c) = view.consumer() {
                let _ = c.try_take();
            }
        }
    }

    /// A region of arbitrary bytes, with a valid header or not: making a view and using both ends
    /// never panics, and what they hand out has consecutive sequence numbers.
    #[test]
    fn arbitrary_regions_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        header in prop::option::of(0u32..5),
        ops in prop::collection::vec(op(false), 0..64),
    ) {
        let region = Region::with_bytes(&bytes);
        if let Some(log2) = header {
            // A valid header over the random rest (the region must be long enough for the slots).
            let slots = (1u32 << log2).min(((region.len - REQUESTS) / 128).max(1) as u32);
            region.poke_u64(0, forwarder::layout::MAGIC);
            region.poke_u64(8, u64::from(forwarder::ABI_VERSION) | u64::from(slots) << 32);
        }
        let ends = region.view().and_then(|v| v.producer()).and_then(|p| {
            region.view().and_then(|v| v.consumer()).map(|c| (p, c))
        });
        let Ok((mut producer, mut consumer)) = ends else { return Ok(()) };
        let mut last_collected = producer.submitted() - producer.outstanding();
        let mut last_taken = None::<u64>;
        for op in &ops {
            let outcome = apply(op, &mut producer, &mut consumer, &region);
            match outcome {
                Outcome::Taken(Ok(Some(r))) => {
                    if let Some(last) = last_taken {
                        prop_assert_eq!(r.seq, last + 1);
                    }
                    last_taken = Some(r.seq);
                }
                Outcome::Collected(Ok(Some(r))) => {
                    prop_assert_eq!(r.seq, last_collected + 1);
                    last_collected = r.seq;
                }
                Outcome::Forwarded(Ok(_)) => last_collected += 1,
                _ => {}
            }
        }
    }
}

#[test]
fn a_seq_poke_into_the_next_request_slot_is_caught() {
    let region = Region::new(4, 0);
    let (_producer, mut consumer) = region.ends(4);
    region.poke_u64(REQUESTS + 64 + RECORD_SEQ, 9);
    assert_eq!(consumer.try_take(), Err(Error::SequenceMismatch));
}
