//! Hand-off round trip over NATS on loopback: the sender's `HandOff` to the
//! `Delivered` outcome, through the receiver's offer, its accept and its
//! lease compare-and-swap in JetStream. The entity goes back and forth
//! between two links; p50/p99 are printed from an HDR histogram beside
//! criterion's mean.
//!
//! Needs `TOS_TEST_NATS_URL` (e.g. nats://127.0.0.1:4222); without it the
//! bench prints why and measures nothing.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use tos_cluster::{
    DirectoryAnswer, HandoffOutcome, LinkCommand, LinkConfig, LinkEvent, NatsLink, Storage,
};

const WAIT: Duration = Duration::from_secs(10);

fn start(cluster: &str, node: &str, url: &str) -> NatsLink {
    let mut config = LinkConfig::new(cluster, node, url);
    config.storage = Storage::Memory;
    let link = NatsLink::start(config).expect("link starts");
    loop {
        match link.events().recv_timeout(WAIT).expect("NATS up") {
            LinkEvent::Up => return link,
            _ => continue,
        }
    }
}

fn expect<T>(link: &NatsLink, mut pick: impl FnMut(LinkEvent) -> Option<T>) -> T {
    loop {
        let event = link.events().recv_timeout(WAIT).expect("event in time");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

/// One hand-off of character 1 from `from` to `to` (named `to_name`).
fn round_trip(
    from: &NatsLink,
    to: &NatsLink,
    to_name: &str,
    handoff: u64,
    payload: &[u8],
) -> Duration {
    let started = Instant::now();
    from.send(LinkCommand::HandOff {
        handoff,
        to: to_name.to_owned(),
        character: 1,
        payload: payload.to_vec(),
    })
    .expect("queued");
    let token = expect(to, |e| match e {
        LinkEvent::Offer { token, .. } => Some(token),
        _ => None,
    });
    to.send(LinkCommand::Accept { token }).expect("queued");
    let outcome = expect(from, |e| match e {
        LinkEvent::Handoff {
            handoff: h,
            outcome,
            ..
        } if h == handoff => Some(outcome),
        _ => None,
    });
    let elapsed = started.elapsed();
    assert_eq!(outcome, HandoffOutcome::Delivered);
    elapsed
}

fn handoff(c: &mut Criterion) {
    let Ok(url) = std::env::var("TOS_TEST_NATS_URL") else {
        eprintln!("handoff bench skipped: TOS_TEST_NATS_URL is not set");
        return;
    };
    let cluster = format!("bench{}", std::process::id() % 100_000);
    let west = start(&cluster, "west", &url);
    let east = start(&cluster, "east", &url);
    west.send(LinkCommand::Acquire {
        request: 1,
        character: 1,
        name: "Bench".into(),
    })
    .expect("queued");
    let acquired = expect(&west, |e| match e {
        LinkEvent::Reply { request: 1, result } => Some(result),
        _ => None,
    });
    assert!(matches!(acquired, Ok(DirectoryAnswer::Acquired { .. })));

    // A 2 KiB record: a character with inventory and AI state.
    let payload = vec![0x5a; 2048];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let mut next = 0u64;
    let mut at_west = true;
    let cpu_before = process_cpu();
    let mut group = c.benchmark_group("cluster");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("handoff_round_trip_2KiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                next += 1;
                let took = if at_west {
                    round_trip(&west, &east, "east", next, &payload)
                } else {
                    round_trip(&east, &west, "west", next, &payload)
                };
                at_west = !at_west;
                let _ = histogram.record(took.as_micros().max(1) as u64);
                total += took;
            }
            total
        });
    });
    group.finish();
    let cpu = process_cpu().saturating_sub(cpu_before);
    println!(
        "handoff round trip over {} hand-offs: p50 {} us, p99 {} us, max {} us; \
         CPU of this process (both links and the driver) per hand-off: {} us",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max(),
        cpu.as_micros() / u128::from(histogram.len().max(1)),
    );
    west.send(LinkCommand::DropDirectory { request: 2 })
        .expect("queued");
    let _ = expect(&west, |e| match e {
        LinkEvent::Reply { request: 2, result } => Some(result),
        _ => None,
    });
}

/// User and system CPU time of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads
    // nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

criterion_group!(benches, handoff);
criterion_main!(benches);
