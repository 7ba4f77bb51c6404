//! Two threads, one channel: every request of a long run comes back once, in order, with its own
//! result. `FORWARDER_STRESS_REQUESTS` sets the count (default 1,000,000; at least 100,000 is the
//! point of the test).

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;

use common::Region;
use forwarder::{Consumer, Error, Producer};

fn requests() -> u64 {
    std::env::var("FORWARDER_STRESS_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000)
}

/// Spins briefly, then yields: two busy threads on a loaded 2-core machine must not starve each
/// other for whole time slices.
fn patient(polls: u64) -> bool {
    if polls < 32 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
    true
}

/// The tests take turns: each already runs two busy threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The request the producer makes for sequence number `seq`, and the answer it expects.
fn call(seq: u64) -> (u32, [u64; 6]) {
    let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (seq as u32 ^ 0x5555, [seq, x, !x, x.rotate_left(17), seq << 3, u64::MAX - seq])
}

fn answer(nr: u32, args: &[u64; 6]) -> i64 {
    (args.iter().fold(u64::from(nr), |acc, a| acc.rotate_left(5) ^ a)) as i64
}

/// Serves `total` requests, completing up to `batch` at a time (so several are in progress).
fn serve(mut consumer: Consumer, total: u64, batch: usize) -> Result<(), Error> {
    let mut held = Vec::with_capacity(batch);
    let mut served = 0;
    let mut polls = 0;
    while served < total {
        while held.len() < batch {
            match consumer.try_take()? {
                Some(r) => held.push((r.seq, answer(r.nr, &r.args))),
                None => break,
            }
        }
        if held.is_empty() {
            polls += 1;
            patient(polls);
            continue;
        }
        polls = 0;
        for (seq, result) in held.drain(..) {
            consumer.try_complete(seq, result, seq as u32)?;
            served += 1;
        }
    }
    assert_eq!(consumer.try_take(), Ok(None), "nothing past the last request");
    Ok(())
}

fn check(seq: u64, result: i64) {
    let (nr, args) = call(seq);
    assert_eq!(result, answer(nr, &args), "request {seq}");
}

#[test]
fn one_at_a_time_through_forward() {
    let _turn = turn();
    let total = requests();
    let region = Region::new(64, 0);
    let (mut producer, consumer) = region.ends(64);
    thread::scope(|s| {
        let server = s.spawn(move || serve(consumer, total, 1));
        for seq in 1..=total {
            let (nr, args) = call(seq);
            let result = producer.forward(nr, args, &mut patient).expect("forward");
            check(seq, result);
        }
        assert_eq!(server.join().expect("server thread"), Ok(()));
    });
    assert_eq!(producer.submitted(), total);
}

#[test]
fn pipelined_with_a_full_ring() {
    let _turn = turn();
    for (slots, batch) in [(8u32, 3usize), (1, 1)] {
        let total = requests();
        let region = Region::new(slots, 0);
        let (producer, consumer) = region.ends(slots);
        thread::scope(|s| {
            let server = s.spawn(move || serve(consumer, total, batch));
            submit_all(producer, total);
            assert_eq!(server.join().expect("server thread"), Ok(()));
        });
    }
}

/// Keeps the ring as full as it will go, collecting and checking in order.
fn submit_all(mut producer: Producer, total: u64) {
    let (mut next, mut collected, mut polls) = (1, 0, 0);
    while collected < total {
        let mut progress = false;
        while next <= total {
            let (nr, args) = call(next);
            if producer.try_submit(nr, 0, args).expect("submit").is_none() {
                break;
            }
            next += 1;
            progress = true;
        }
        while let Some(response) = producer.try_collect().expect("collect") {
            collected += 1;
            assert_eq!(response.seq, collected);
            assert_eq!(response.flags, collected as u32);
            check(collected, response.result);
            progress = true;
        }
        polls = if progress { 0 } else { polls + 1 };
        patient(polls);
    }
    assert_eq!(producer.outstanding(), 0);
}
