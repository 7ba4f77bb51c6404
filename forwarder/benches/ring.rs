//! The ring between two host threads, pinned to different CPUs where the process may use two:
//! round-trip latency of `forward` (poll mode on both sides), throughput with the ring kept full,
//! and, as the floor, a cache-line ping-pong between the same two CPUs.
//!
//! `cargo bench -p forwarder` (add `-- --quick` for a short run).
#![allow(missing_docs)] // criterion_group! defines an undocumented pub fn

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use forwarder::{CacheLine, Channel, Consumer, Producer, Spin};

/// A formatted channel on the heap. The lines stay put while the ends use them.
struct Region {
    lines: Vec<CacheLine>,
}

impl Region {
    fn ends(&mut self, slots: u32) -> (Producer, Consumer) {
        self.lines = vec![CacheLine::ZERO; CacheLine::lines_for(slots)];
        let (ptr, len) = (self.lines.as_mut_ptr().cast::<u8>(), self.lines.len() * 64);
        // SAFETY: `lines` is 64-byte aligned, `len` bytes long, outlives both ends (the benches join
        // the serving thread before dropping the region), and is only touched through the ends.
        let view = || unsafe { Channel::from_raw(ptr, len) }.expect("view");
        // SAFETY: as above.
        unsafe { Channel::init(ptr, len, slots) }.expect("init");
        (view().producer().expect("producer"), view().consumer().expect("consumer"))
    }
}

/// The first two CPUs this process may run on when it starts, if it may run on two (asked once:
/// pinning the bench thread narrows what later calls would see).
fn two_cpus() -> Option<(usize, usize)> {
    static CPUS: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    *CPUS.get_or_init(allowed_cpus)
}

fn allowed_cpus() -> Option<(usize, usize)> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET only reads `set`.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
    Some((cpus.next()?, cpus.next()?))
}

/// Pins the calling thread to `cpu` (best effort).
fn pin(cpu: usize) {
    // SAFETY: as in `two_cpus`; sched_setaffinity reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Runs `work` on the bench thread (pinned to the first CPU) while `peer` runs on a second thread
/// (pinned to the second) until `work` returns.
fn with_peer<P: FnOnce(&AtomicBool) + Send>(peer: P, work: impl FnOnce()) {
    let cpus = two_cpus();
    if cpus.is_none() {
        eprintln!("forwarder bench: fewer than two CPUs allowed; threads are not pinned");
    }
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let stop = &stop;
        s.spawn(move || {
            if let Some((_, cpu)) = cpus {
                pin(cpu);
            }
            peer(stop)
        });
        if let Some((cpu, _)) = cpus {
            pin(cpu);
        }
        work();
        stop.store(true, Ordering::Relaxed);
    });
}

/// The proxy's loop in poll mode: take what is there (up to a ring's worth), answer it, repeat.
fn serve(mut consumer: Consumer, stop: &AtomicBool) {
    let mut held = Vec::with_capacity(consumer.slot_count() as usize);
    let mut idle = 0u32;
    loop {
        while let Ok(Some(request)) = consumer.try_take() {
            held.push((request.seq, i64::from(request.nr)));
        }
        if held.is_empty() {
            idle = idle.wrapping_add(1);
            if idle % 1024 == 0 && stop.load(Ordering::Relaxed) {
                return;
            }
            std::hint::spin_loop();
            continue;
        }
        for (seq, result) in held.drain(..) {
            consumer.try_complete(seq, result, 0).expect("complete");
        }
    }
}

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    let mut region = Region { lines: Vec::new() };
    let (mut producer, consumer) = region.ends(64);
    with_peer(
        move |stop| serve(consumer, stop),
        || {
            group.bench_function("forward_round_trip", |b| {
                b.iter(|| producer.forward(39, [1, 2, 3, 4, 5, 6], &mut Spin::forever()).expect("forward"))
            });
        },
    );
    drop(region);

    // The physical floor: one line each way, as a forward in poll mode moves. The two lines are
    // 128 bytes apart, like the ring's lines written by different sides.
    let mut lines = vec![CacheLine::ZERO; 4];
    let base = lines.as_mut_ptr();
    // SAFETY: lines 0 and 2 of `lines`, 64-byte aligned; `lines` outlives both threads (joined in
    // `with_peer`) and is only touched through these two atomics.
    let (ping, pong) = unsafe { (AtomicU64::from_ptr(base.cast()), AtomicU64::from_ptr(base.add(2).cast())) };
    with_peer(
        |stop| {
            let (mut seen, mut idle) = (0, 0u32);
            loop {
                let v = ping.load(Ordering::Acquire);
                if v != seen {
                    seen = v;
                    pong.store(v, Ordering::Release);
                    continue;
                }
                idle = idle.wrapping_add(1);
                if idle % 1024 == 0 && stop.load(Ordering::Relaxed) {
                    return;
                }
                std::hint::spin_loop();
            }
        },
        || {
            let mut n = 0u64;
            group.bench_function("cache_line_ping_pong", |b| {
                b.iter(|| {
                    n += 1;
                    ping.store(n, Ordering::Release);
                    while pong.load(Ordering::Acquire) != n {
                        std::hint::spin_loop();
                    }
                })
            });
        },
    );
    group.finish();
    drop(lines);
}

/// Submits `count` requests, keeping up to a ring's worth in flight, and collects them all.
fn pump(producer: &mut Producer, count: u64) {
    let (mut submitted, mut collected) = (0, 0);
    while collected < count {
        while submitted < count && producer.try_submit(1, 0, [submitted; 6]).expect("submit").is_some() {
            submitted += 1;
        }
        while producer.try_collect().expect("collect").is_some() {
            collected += 1;
        }
        std::hint::spin_loop();
    }
}

fn throughput(c: &mut Criterion) {
    const BATCH: u64 = 4096;
    let mut group = c.benchmark_group("ring_throughput");
    group.throughput(Throughput::Elements(BATCH));
    for slots in [1u32, 8, 64] {
        let mut region = Region { lines: Vec::new() };
        let (mut producer, consumer) = region.ends(slots);
        with_peer(
            move |stop| serve(consumer, stop),
            || {
                group.bench_with_input(BenchmarkId::new("pipelined", slots), &slots, |b, _| {
                    b.iter(|| pump(&mut producer, BATCH))
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, round_trip, throughput);
criterion_main!(benches);
