//! Connection costs (issue 3): packet protection, handshakes, the whole
//! per-packet protocol path, and memory per connection.
//!
//! `cargo bench -p tos-benches --bench connection`
//!
//! - `aead/seal/N`, `aead/seal+open/N` (N = 64, 256, 1200 bytes of
//!   plaintext): `tos_protocol::crypto::PacketKey` (ring's
//!   ChaCha20-Poly1305) with the 14-byte header as AAD, a new sequence per
//!   packet; seal+open seals and then opens the result.
//! - `handshake/full`: one complete handshake in memory, both sides on this
//!   core: `Connection::connect` (client ephemeral key), Connect → Cookie →
//!   Connect with cookie → the application accepts the Incoming →
//!   ConnectionAccepted → CryptoTest → CryptoTestAck, until both sides are
//!   established and the endpoint reported `Connected`. Every iteration uses
//!   a fresh client seed (a counter), so keys and nonces are new each time.
//!   The server connection is then closed and removed outside the timing.
//! - `handshake/server`: the same handshakes, timing only the endpoint's
//!   calls (`handle_datagram`, `poll_event`, `accept`, `poll_transmit`):
//!   one core's handshake capacity as a server.
//! - `packet/send+recv/N` (N = 64, 1100): an established pair in steady
//!   state. Per iteration: the client sends one N-byte unreliable message,
//!   `poll_transmit`, the endpoint `handle_datagram` + `poll_event` (the
//!   message), the endpoint `poll_transmit` and the client `handle_datagram`
//!   and `poll_event` for what comes back, then the endpoint's and the
//!   client's timers (as an engine runs them every tick); virtual time moves
//!   one 60 Hz tick per iteration. Nothing else flows server to client, so
//!   what comes back is a standalone Ack, which the server sends after every
//!   second ack-eliciting packet (ACK_EAGERNESS = 2; its 5 ms ack-delay
//!   timer is consulted only when it next polls, by which time the next
//!   packet has arrived): 1.5 sealed datagrams per iteration, each sealed
//!   and opened once, and one UnreliableAcked event. The counts are printed
//!   after the run.
//!
//! # Clock
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//! not wall-clock time: on a small machine shared with builds and other
//! benchmarks, time spent descheduled would otherwise land in the figures
//! (wall-clock medians of the same code varied by 1.6x between back-to-back
//! runs on the 2-core development VM). Everything timed here is
//! single-threaded CPU work with no I/O and no sleeping, so on an idle
//! machine the two clocks agree. `TOS_BENCH_CLOCK=wall` selects criterion's
//! usual wall clock.
//!
//! Before the timed groups, a measurement (not a criterion function) is
//! printed to stderr: memory per connection after establishing 1,000
//! connections on one endpoint, by `Connection::memory_bytes()` and by the
//! process's resident set growth (`/proc/self/statm`).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};
use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::crypto::{KeySet, PacketKey};
use tos_protocol::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::DisconnectReason;

const HEADER_LEN: usize = 14;
const TAG_LEN: usize = 16;
/// One 60 Hz tick of virtual time.
const TICK: Duration = Duration::from_micros(16_667);

// -------------------------------------------------------------------- clock

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a
    // constant Linux supports for every thread.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Criterion measurement: the benchmark thread's CPU time.
struct ThreadCpuTime;

static WALL_TIME: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }

    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }

    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }

    fn zero(&self) -> Duration {
        Duration::ZERO
    }

    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // The same units as wall time: nanoseconds.
        WALL_TIME.formatter()
    }
}

/// The clock the `iter_custom` benchmarks read: the same as criterion's.
#[derive(Clone, Copy)]
enum Clock {
    Cpu,
    Wall(Instant),
}

impl Clock {
    fn now(self) -> Duration {
        match self {
            Clock::Cpu => thread_cpu_time(),
            Clock::Wall(origin) => origin.elapsed(),
        }
    }
}

// ------------------------------------------------------------------ harness

/// One server endpoint and the fixed things a client needs to reach it.
struct Server {
    endpoint: Endpoint,
    transport: Arc<TransportConfig>,
    addr: SocketAddr,
    now: Instant,
    buf: [u8; 1500],
}

impl Server {
    fn new() -> Self {
        let epoch = Instant::now();
        let transport = Arc::new(TransportConfig::default());
        let mut config = EndpointConfig::new([0x42; 32], [0x24; 32], epoch, [7; 32]);
        config.transport = Arc::clone(&transport);
        Self {
            endpoint: Endpoint::new(config),
            transport,
            addr: SocketAddr::from((Ipv4Addr::new(10, 255, 0, 1), 3565)),
            now: epoch,
            buf: [0; 1500],
        }
    }

    /// A client with seed `n` (a counter: every client's keys are new).
    fn client(&self, n: u64) -> Connection {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_le_bytes());
        seed[8] = 0xc1;
        Connection::connect(
            ClientConfig {
                transport: Arc::clone(&self.transport),
                server_key: ServerKey::Pinned(self.endpoint.static_public_key()),
                ticket: b"player-ticket".to_vec(),
                integrity: None,
                seed,
            },
            self.addr,
            self.now,
        )
        .expect("a valid client config")
    }

    /// Runs a handshake to completion, passing datagrams both ways without
    /// loss. Datagrams for other addresses are dropped. When `server_time`
    /// is given, the time spent in the endpoint's calls is added to it.
    fn handshake(
        &mut self,
        client: &mut Connection,
        client_addr: SocketAddr,
        mut server_time: Option<(Clock, &mut Duration)>,
    ) -> ConnectionHandle {
        let now = self.now;
        let mut handle = None;
        let clock = server_time.as_ref().map(|(c, _)| *c);
        let start = || clock.map(Clock::now);
        for _ in 0..8 {
            while let Some(t) = client.poll_transmit(now, &mut self.buf) {
                let s = start();
                black_box(
                    self.endpoint
                        .handle_datagram(now, client_addr, &mut self.buf[..t.size]),
                );
                add_elapsed(&mut server_time, s);
            }
            let s = start();
            let mut incoming = None;
            while let Some(e) = self.endpoint.poll_event() {
                match e {
                    EndpointEvent::Incoming { handle, ticket, .. } => {
                        black_box(ticket);
                        incoming = Some(handle);
                    }
                    EndpointEvent::Connection {
                        handle: h,
                        event: Event::Connected,
                    } => handle = Some(h),
                    _ => {}
                }
            }
            if let Some(h) = incoming {
                assert!(self.endpoint.accept(h, now), "accept failed");
            }
            add_elapsed(&mut server_time, s);
            loop {
                let s = start();
                let t = self.endpoint.poll_transmit(now, &mut self.buf);
                add_elapsed(&mut server_time, s);
                let Some(t) = t else { break };
                if t.destination == client_addr {
                    client.handle_datagram(now, self.addr, &mut self.buf[..t.size]);
                }
            }
            while client.poll_event().is_some() {}
            if let Some(h) = handle {
                if client.is_established() {
                    return h;
                }
            }
        }
        panic!("handshake did not complete over a perfect link");
    }

    /// Closes a server connection and lets the endpoint remove it (the
    /// clock moves past the closing period).
    fn remove(&mut self, handle: ConnectionHandle) {
        if let Some(conn) = self.endpoint.connection_mut(handle) {
            conn.close(self.now, DisconnectReason::Graceful);
        }
        while self
            .endpoint
            .poll_transmit(self.now, &mut self.buf)
            .is_some()
        {}
        self.now += Duration::from_secs(1);
        self.endpoint.handle_timeout(self.now);
        let mut removed = false;
        while let Some(e) = self.endpoint.poll_event() {
            removed |= matches!(e, EndpointEvent::Removed { handle: h } if h == handle);
        }
        assert!(removed, "the closed connection was not removed");
    }
}

/// Adds the time since `start` (when measuring) to the total.
fn add_elapsed(total: &mut Option<(Clock, &mut Duration)>, start: Option<Duration>) {
    if let (Some((clock, t)), Some(s)) = (total.as_mut(), start) {
        **t += clock.now().saturating_sub(s);
    }
}

fn client_addr(i: u32) -> SocketAddr {
    SocketAddr::from((
        Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8),
        40_000 + (i % 16) as u16,
    ))
}

// ------------------------------------------------------------------- memory

/// Resident set size in bytes, from `/proc/self/statm` (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

const MEMORY_CONNECTIONS: u32 = 1_000;
/// Round trips of traffic per connection after its handshake.
const MEMORY_TRAFFIC_ROUNDS: u32 = 32;

/// Establishes 1,000 connections on one endpoint and prints their memory.
///
/// Each client is dropped once its connection is established and has
/// exchanged some traffic, so the resident growth is the server's: the
/// endpoint's table and its connections (the client's memory is freed and
/// reused by the next client).
fn memory_per_connection() {
    let mut server = Server::new();
    let rss_before = rss_bytes();
    let mut handles = Vec::with_capacity(MEMORY_CONNECTIONS as usize);
    let mut client_bytes = 0usize;
    let unreliable = [0x3cu8; 64];
    let snapshot = [0xc3u8; 1000];
    for i in 0..MEMORY_CONNECTIONS {
        let addr = client_addr(i);
        let mut client = server.client(u64::from(i));
        let h = server.handshake(&mut client, addr, None);
        // A little steady traffic both ways, so the buffers a live
        // connection uses (sent-packet records, message and event bytes,
        // reliable slots) exist. Only this connection is polled, directly.
        let now = server.now;
        for round in 0..MEMORY_TRAFFIC_ROUNDS {
            client.send(Channel::Unreliable, &unreliable).unwrap();
            if round % 4 == 0 {
                client
                    .send(Channel::ReliableOrdered, &unreliable[..16])
                    .unwrap();
            }
            let conn = server.endpoint.connection_mut(h).unwrap();
            conn.send(Channel::Unreliable, &snapshot).unwrap();
            if round % 4 == 0 {
                conn.send(Channel::ReliableOrdered, &unreliable[..16])
                    .unwrap();
            }
            while let Some(t) = client.poll_transmit(now, &mut server.buf) {
                server
                    .endpoint
                    .handle_datagram(now, addr, &mut server.buf[..t.size]);
            }
            while server.endpoint.poll_event().is_some() {}
            let conn = server.endpoint.connection_mut(h).unwrap();
            while let Some(t) = conn.poll_transmit(now, &mut server.buf) {
                client.handle_datagram(now, server.addr, &mut server.buf[..t.size]);
            }
            while server.endpoint.poll_event().is_some() {}
            while client.poll_event().is_some() {}
        }
        client_bytes += client.memory_bytes();
        handles.push(h);
    }
    let rss_after = rss_bytes();
    let n = handles.len();
    assert_eq!(server.endpoint.connection_count(), n);
    let server_bytes: usize = handles
        .iter()
        .map(|&h| server.endpoint.connection(h).unwrap().memory_bytes())
        .sum();
    eprintln!(
        "memory per connection ({n} established server connections on one endpoint, \
         each after a handshake and {MEMORY_TRAFFIC_ROUNDS} round trips of traffic):"
    );
    eprintln!(
        "  Connection::memory_bytes(): server side {} B average, client side {} B average",
        server_bytes / n,
        client_bytes / n,
    );
    eprintln!(
        "  of which inline: size_of::<Connection>() = {} B (size_of::<KeySet>() = {} B, \
         size_of::<PacketKey>() = {} B)",
        core::mem::size_of::<Connection>(),
        core::mem::size_of::<KeySet>(),
        core::mem::size_of::<PacketKey>(),
    );
    match (rss_before, rss_after) {
        (Some(b), Some(a)) => eprintln!(
            "  resident set growth: {} KiB in all, {} B per connection",
            a.saturating_sub(b) / 1024,
            a.saturating_sub(b) / n as u64
        ),
        _ => eprintln!("  resident set: /proc/self/statm unavailable"),
    }
    black_box(&server);
}

// -------------------------------------------------------------------- aead

fn aead<M: Measurement<Value = Duration>>(c: &mut Criterion<M>) {
    let key = PacketKey::new(&[0x5e; 32]);
    let aad = [0x11u8; HEADER_LEN];
    let mut group = c.benchmark_group("aead");
    for size in [64usize, 256, 1200] {
        group.throughput(Throughput::Elements(1));
        let mut buf = vec![0x42u8; size + TAG_LEN];
        let mut seq = 0u64;
        group.bench_with_input(BenchmarkId::new("seal", size), &size, |b, &size| {
            b.iter(|| {
                seq += 1;
                let tag = key.seal(0x0102_0300, seq, &aad, &mut buf[..size]);
                black_box(tag)
            })
        });
        group.bench_with_input(BenchmarkId::new("seal+open", size), &size, |b, &size| {
            b.iter(|| {
                seq += 1;
                let tag = key.seal(0x0102_0300, seq, &aad, &mut buf[..size]);
                buf[size..].copy_from_slice(&tag);
                let n = key.open(0x0102_0300, seq, &aad, &mut buf).unwrap();
                black_box(n)
            })
        });
    }
    group.finish();
}

// --------------------------------------------------------------- handshake

fn handshake<M: Measurement<Value = Duration>>(c: &mut Criterion<M>, clock: Clock) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Elements(1));
    let addr = client_addr(1);
    let mut server = Server::new();
    let mut counter = 0u64;
    group.bench_function("full", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                counter += 1;
                let start = clock.now();
                let mut client = server.client(counter);
                let h = server.handshake(&mut client, addr, None);
                total += clock.now().saturating_sub(start);
                black_box(&client);
                server.remove(h);
            }
            total
        })
    });
    group.bench_function("server", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                counter += 1;
                let mut client = server.client(counter);
                let h = server.handshake(&mut client, addr, Some((clock, &mut total)));
                server.remove(h);
            }
            total
        })
    });
    group.finish();
}

// ------------------------------------------------------------------ packet

fn packet<M: Measurement<Value = Duration>>(c: &mut Criterion<M>) {
    let mut group = c.benchmark_group("packet");
    group.throughput(Throughput::Elements(1));
    for size in [64usize, 1100] {
        let mut server = Server::new();
        let addr = client_addr(2);
        let mut client = server.client(1);
        let handle = server.handshake(&mut client, addr, None);
        // Incompressible, like quantized state after delta coding.
        let mut rng = tos_protocol::rng::SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        let payload: Vec<u8> = (0..size).map(|_| rng.next_u64() as u8).collect();
        let mut received = 0u64;
        let mut acked = 0u64;
        group.bench_with_input(BenchmarkId::new("send+recv", size), &size, |b, _| {
            b.iter(|| {
                let now = server.now;
                client.send(Channel::Unreliable, &payload).unwrap();
                while let Some(t) = client.poll_transmit(now, &mut server.buf) {
                    server
                        .endpoint
                        .handle_datagram(now, addr, &mut server.buf[..t.size]);
                }
                while let Some(e) = server.endpoint.poll_event() {
                    if let EndpointEvent::Connection {
                        event: Event::Message { data, .. },
                        ..
                    } = e
                    {
                        black_box(data);
                        received += 1;
                    }
                }
                while let Some(t) = server.endpoint.poll_transmit(now, &mut server.buf) {
                    client.handle_datagram(now, server.addr, &mut server.buf[..t.size]);
                }
                while let Some(e) = client.poll_event() {
                    if let Event::UnreliableAcked { token } = e {
                        black_box(token);
                        acked += 1;
                    }
                }
                server.endpoint.handle_timeout(now);
                if client.next_timeout().is_some_and(|t| t <= now) {
                    client.handle_timeout(now);
                }
                server.now += TICK;
            })
        });
        // Sanity: the path really ran, with nothing refused or lost.
        let conn = server.endpoint.connection(handle).expect("still connected");
        let stats = conn.stats();
        eprintln!(
            "packet/send+recv/{size}: {received} messages received, {acked} acked; server: \
             {} packets in, {} refused, {} standalone acks out; client: {} packets out",
            stats.packets_received,
            stats.refused_packets,
            stats.acks_sent,
            client.stats().packets_sent,
        );
    }
    group.finish();
}

fn run<M: Measurement<Value = Duration>>(mut c: Criterion<M>, clock: Clock) {
    aead(&mut c);
    handshake(&mut c, clock);
    packet(&mut c);
    c.final_summary();
}

fn main() {
    memory_per_connection();
    let wall = std::env::var("TOS_BENCH_CLOCK").is_ok_and(|v| v == "wall");
    eprintln!(
        "clock: {}",
        if wall {
            "wall (TOS_BENCH_CLOCK=wall)"
        } else {
            "thread CPU time (TOS_BENCH_CLOCK=wall for wall-clock)"
        }
    );
    if wall {
        run(
            Criterion::default().configure_from_args(),
            Clock::Wall(Instant::now()),
        );
    } else {
        run(
            Criterion::default()
                .with_measurement(ThreadCpuTime)
                .configure_from_args(),
            Clock::Cpu,
        );
    }
}
