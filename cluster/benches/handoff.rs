//! Hand-off round trip over NATS on loopback: the sender's `HandOff` to the
//! `Delivered` outcome, through the receiver's offer, its accept and its
//! lease compare-and-swap in JetStream. The entity goes back and forth
//! between two links; p50/p99 are printed from an HDR histogram beside
//! criterion's mean. The same for an NPC (`HandOffTransit`): the sender
//! first creates the transit lease the receiver then swaps.
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

/// One hand-off from `from` to `to`: `command` (numbered `handoff`).
fn round_trip(from: &NatsLink, to: &NatsLink, handoff: u64, command: LinkCommand) -> Duration {
    let started = Instant::now();
    from.send(command).expect("queued");
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

    let mut group = c.benchmark_group("cluster");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(8));
    // A 2 KiB record: a character with inventory and its carried state.
    let payload = vec![0x5a; 2048];
    measure(
        &mut group,
        "handoff_round_trip_2KiB",
        &west,
        &east,
        |handoff, to| LinkCommand::HandOff {
            handoff,
            to: to.to_owned(),
            character: 1,
            payload: payload.clone(),
        },
    );
    // A 1 KiB record: an NPC's `CarriedNpc` is about that size.
    let npc = vec![0x4e; 1024];
    let mut serial = 0;
    measure(
        &mut group,
        "npc_handoff_round_trip_1KiB",
        &west,
        &east,
        |handoff, to| {
            serial += 1;
            LinkCommand::HandOffTransit {
                handoff,
                to: to.to_owned(),
                key: tos_cluster::transit_key(0, serial),
                payload: npc.clone(),
            }
        },
    );
    group.finish();
    west.send(LinkCommand::DropDirectory { request: 2 })
        .expect("queued");
    let _ = expect(&west, |e| match e {
        LinkEvent::Reply { request: 2, result } => Some(result),
        _ => None,
    });
}

/// Runs `name`: hand-offs made by `command(number, receiver)`, back and
/// forth between the two links; prints p50/p99 and the CPU per hand-off.
fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    west: &NatsLink,
    east: &NatsLink,
    mut command: impl FnMut(u64, &str) -> LinkCommand,
) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("histogram");
    let mut next = 0u64;
    let mut at_west = true;
    let cpu_before = process_cpu();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                next += 1;
                let took = if at_west {
                    round_trip(west, east, next, command(next, "east"))
                } else {
                    round_trip(east, west, next, command(next, "west"))
                };
                at_west = !at_west;
                let _ = histogram.record(took.as_micros().max(1) as u64);
                total += took;
            }
            total
        });
    });
    let cpu = process_cpu().saturating_sub(cpu_before);
    println!(
        "{name} over {} hand-offs: p50 {} us, p99 {} us, max {} us; \
         CPU of this process (both links and the driver) per hand-off: {} us",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.max(),
        cpu.as_micros() / u128::from(histogram.len().max(1)),
    );
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
