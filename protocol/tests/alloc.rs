//! Zero heap allocations per packet in steady state (issue 3, point 10).
//!
//! A counting global allocator wraps the system one and counts, per thread,
//! every `alloc`, `alloc_zeroed` and `realloc`. A server [`Endpoint`] and a
//! client [`Connection`] are joined by a perfect in-memory link (every
//! datagram handed straight to the peer, in place, from one fixed buffer:
//! the harness itself allocates nothing). Virtual time advances one 60 Hz
//! tick (16 ms) per round. After a warm-up of 2,000 rounds (32 s: every
//! buffer has reached its working size and heartbeats have run), 10,000
//! more rounds are measured, each with traffic both ways: an unreliable
//! 64-byte message and small reliable ordered and unordered messages from
//! each side, `poll_transmit` / `handle_datagram` / `poll_event` on both
//! sides (the server's through the endpoint, polled until `None` as an
//! engine does), the endpoint's timers every round and the client's when
//! due (heartbeat pings and pongs fall inside the measured phase).
//! Allocations are counted per call, so a failure names the call that
//! allocated.
//!
//! The two other tests pin down the receive-buffer accounting that the
//! steady state depends on: message bytes the application has polled
//! through the endpoint must be freed (they once were not, so the buffer
//! grew and, past `receive_buffer_bytes`, the server refused everything),
//! and content refused for lack of room must not be acknowledged (it once
//! was: the sender never re-sent it and the ordered stream stalled).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tos_protocol::connection::{ClientConfig, Connection, Event, ServerKey, TransportConfig};
use tos_protocol::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::wire::Channel;

/// The system allocator, counting allocations made by the current thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with`: the slot may be gone while the thread is being torn down.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; counting touches only a
// thread-local `Cell` (const-initialised, no destructor, never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded as is; `ptr` came from this allocator, which is
        // `System` underneath.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from `System` via this type.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per call site of the measured loop.
#[derive(Debug, Default)]
struct Counts {
    client_send: u64,
    server_send: u64,
    client_poll_transmit: u64,
    endpoint_handle_datagram: u64,
    endpoint_poll_event: u64,
    endpoint_poll_transmit: u64,
    client_handle_datagram: u64,
    client_poll_event: u64,
    endpoint_handle_timeout: u64,
    client_timers: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.client_send
            + self.server_send
            + self.client_poll_transmit
            + self.endpoint_handle_datagram
            + self.endpoint_poll_event
            + self.endpoint_poll_transmit
            + self.client_handle_datagram
            + self.client_poll_event
            + self.endpoint_handle_timeout
            + self.client_timers
    }
}

/// Runs `f` and adds the allocations it made to `slot` (when measuring).
fn counted<R>(slot: Option<&mut u64>, f: impl FnOnce() -> R) -> R {
    let before = allocations();
    let r = f();
    let made = allocations() - before;
    if let Some(slot) = slot {
        *slot += made;
    }
    r
}

/// What each side has received, to prove the traffic really flowed.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    unreliable: u64,
    ordered: u64,
    unordered: u64,
    unreliable_acked: u64,
    unreliable_lost: u64,
    other: u64,
}

impl Tally {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::Message {
                channel: Channel::Unreliable,
                data,
            } => {
                assert_eq!(data.len(), UNRELIABLE_LEN);
                self.unreliable += 1;
            }
            Event::Message {
                channel: Channel::ReliableOrdered,
                data,
            } => {
                // Ordered: the message number is the count so far.
                assert_eq!(data[..8], self.ordered.to_le_bytes());
                self.ordered += 1;
            }
            Event::Message {
                channel: Channel::ReliableUnordered,
                ..
            } => self.unordered += 1,
            Event::UnreliableAcked { .. } => self.unreliable_acked += 1,
            Event::UnreliableLost { .. } => self.unreliable_lost += 1,
            _ => self.other += 1,
        }
    }
}

const UNRELIABLE_LEN: usize = 64;
/// One 60 Hz tick of virtual time per round.
const TICK: Duration = Duration::from_millis(16);
const RELIABLE_LEN: usize = 24;

struct Link {
    now: Instant,
    endpoint: Endpoint,
    client: Connection,
    /// The server's handle, once its Connected event was seen.
    handle: Option<ConnectionHandle>,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    buf: [u8; 1500],
    sent_reliable: u64,
    server_got: Tally,
    client_got: Tally,
}

impl Link {
    /// A completed handshake over the perfect link.
    fn establish(transport: TransportConfig) -> Self {
        let epoch = Instant::now();
        let transport = Arc::new(transport);
        let mut config = EndpointConfig::new([0x42; 32], [0x24; 32], epoch, [7; 32]);
        config.transport = Arc::clone(&transport);
        let endpoint = Endpoint::new(config);
        let server_addr: SocketAddr = "10.0.0.1:3565".parse().unwrap();
        let client_addr: SocketAddr = "10.1.0.1:40000".parse().unwrap();
        let client = Connection::connect(
            ClientConfig {
                transport,
                server_key: ServerKey::Pinned(endpoint.static_public_key()),
                ticket: b"player-ticket".to_vec(),
                integrity: None,
                seed: [9; 32],
            },
            server_addr,
            epoch,
        )
        .unwrap();
        let mut link = Self {
            now: epoch,
            endpoint,
            client,
            handle: None,
            server_addr,
            client_addr,
            buf: [0; 1500],
            sent_reliable: 0,
            server_got: Tally::default(),
            client_got: Tally::default(),
        };
        link.handshake();
        link
    }

    fn handshake(&mut self) {
        for _ in 0..16 {
            while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
                self.endpoint
                    .handle_datagram(self.now, self.client_addr, &mut self.buf[..t.size]);
            }
            let mut incoming = None;
            while let Some(e) = self.endpoint.poll_event() {
                match e {
                    EndpointEvent::Incoming { handle, .. } => incoming = Some(handle),
                    EndpointEvent::Connection {
                        handle,
                        event: Event::Connected,
                    } => self.handle = Some(handle),
                    _ => {}
                }
            }
            if let Some(h) = incoming {
                assert!(self.endpoint.accept(h, self.now));
            }
            while let Some(t) = self.endpoint.poll_transmit(self.now, &mut self.buf) {
                assert_eq!(t.destination, self.client_addr);
                self.client
                    .handle_datagram(self.now, self.server_addr, &mut self.buf[..t.size]);
            }
            while self.client.poll_event().is_some() {}
            if self.handle.is_some() && self.client.is_established() {
                return;
            }
        }
        panic!("the handshake did not complete over a perfect link");
    }

    /// Queues this round's messages on both sides.
    fn send_both_ways(&mut self, mut counts: Option<&mut Counts>) {
        let unreliable = [0xa5u8; UNRELIABLE_LEN];
        let mut reliable = [0x5au8; RELIABLE_LEN];
        reliable[..8].copy_from_slice(&self.sent_reliable.to_le_bytes());
        self.sent_reliable += 1;
        counted(counts.as_mut().map(|c| &mut c.client_send), || {
            self.client.send(Channel::Unreliable, &unreliable).unwrap();
            self.client
                .send(Channel::ReliableOrdered, &reliable)
                .unwrap();
            self.client
                .send(Channel::ReliableUnordered, &reliable)
                .unwrap();
        });
        let handle = self.handle.unwrap();
        counted(counts.as_mut().map(|c| &mut c.server_send), || {
            let conn = self.endpoint.connection_mut(handle).unwrap();
            conn.send(Channel::Unreliable, &unreliable).unwrap();
            conn.send(Channel::ReliableOrdered, &reliable).unwrap();
            conn.send(Channel::ReliableUnordered, &reliable).unwrap();
        });
    }

    /// Every datagram the client has, handed to the endpoint.
    fn client_to_server(&mut self, mut counts: Option<&mut Counts>) {
        let now = self.now;
        loop {
            let t = counted(counts.as_mut().map(|c| &mut c.client_poll_transmit), || {
                self.client.poll_transmit(now, &mut self.buf)
            });
            let Some(t) = t else { break };
            let (endpoint, buf, from) = (&mut self.endpoint, &mut self.buf, self.client_addr);
            counted(
                counts.as_mut().map(|c| &mut c.endpoint_handle_datagram),
                || endpoint.handle_datagram(now, from, &mut buf[..t.size]),
            );
        }
    }

    /// The endpoint's events, polled until `None`.
    fn server_events(&mut self, mut counts: Option<&mut Counts>) {
        loop {
            let before = allocations();
            let e = self.endpoint.poll_event();
            if let Some(c) = counts.as_mut() {
                c.endpoint_poll_event += allocations() - before;
            }
            match e {
                None => break,
                Some(EndpointEvent::Connection { event, .. }) => self.server_got.event(&event),
                Some(other) => panic!("unexpected endpoint event {other:?}"),
            }
        }
    }

    /// Every datagram the endpoint has, handed to the client.
    fn server_to_client(&mut self, mut counts: Option<&mut Counts>) {
        let now = self.now;
        loop {
            let t = counted(
                counts.as_mut().map(|c| &mut c.endpoint_poll_transmit),
                || self.endpoint.poll_transmit(now, &mut self.buf),
            );
            let Some(t) = t else { break };
            assert_eq!(t.destination, self.client_addr);
            let (client, buf, from) = (&mut self.client, &mut self.buf, self.server_addr);
            counted(
                counts.as_mut().map(|c| &mut c.client_handle_datagram),
                || client.handle_datagram(now, from, &mut buf[..t.size]),
            );
        }
    }

    /// The client's events, polled until `None`.
    fn client_events(&mut self, mut counts: Option<&mut Counts>) {
        loop {
            let before = allocations();
            let e = self.client.poll_event();
            if let Some(c) = counts.as_mut() {
                c.client_poll_event += allocations() - before;
            }
            match e {
                None => break,
                Some(e) => self.client_got.event(&e),
            }
        }
    }

    /// Timers, as an engine runs them every tick; then the clock moves on.
    fn timers(&mut self, mut counts: Option<&mut Counts>) {
        let now = self.now;
        counted(
            counts.as_mut().map(|c| &mut c.endpoint_handle_timeout),
            || self.endpoint.handle_timeout(now),
        );
        counted(counts.as_mut().map(|c| &mut c.client_timers), || {
            if self.client.next_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
        });
        self.now += TICK;
    }

    /// One round of traffic both ways; counts allocations when `counts`.
    fn round(&mut self, mut counts: Option<&mut Counts>) {
        self.send_both_ways(counts.as_deref_mut());
        self.client_to_server(counts.as_deref_mut());
        self.server_events(counts.as_deref_mut());
        self.server_to_client(counts.as_deref_mut());
        self.client_events(counts.as_deref_mut());
        self.timers(counts);
    }
}

const WARM_UP_ROUNDS: u64 = 2_000;
const MEASURED_ROUNDS: u64 = 10_000;

#[test]
fn steady_state_packet_path_does_not_allocate() {
    let mut link = Link::establish(TransportConfig::default());
    for _ in 0..WARM_UP_ROUNDS {
        link.round(None);
    }
    let before = (link.server_got, link.client_got);
    let mut counts = Counts::default();
    for _ in 0..MEASURED_ROUNDS {
        link.round(Some(&mut counts));
    }

    assert_eq!(
        counts.total(),
        0,
        "allocations in {MEASURED_ROUNDS} steady-state rounds, by call: {counts:#?}"
    );
    // The traffic flowed, every round, both ways, nothing lost.
    for (side, got, was) in [
        ("server", link.server_got, before.0),
        ("client", link.client_got, before.1),
    ] {
        assert_eq!(got.unreliable - was.unreliable, MEASURED_ROUNDS, "{side}");
        assert_eq!(got.ordered - was.ordered, MEASURED_ROUNDS, "{side}");
        assert_eq!(got.unordered - was.unordered, MEASURED_ROUNDS, "{side}");
        assert!(
            got.unreliable_acked - was.unreliable_acked >= MEASURED_ROUNDS - 1,
            "{side}"
        );
        assert_eq!(got.unreliable_lost, 0, "{side}");
    }
    let server = link.endpoint.connection(link.handle.unwrap()).unwrap();
    for stats in [link.client.stats(), server.stats()] {
        assert_eq!(stats.refused_packets, 0);
        assert_eq!(stats.packets_lost, 0);
        assert!(stats.packets_sent >= WARM_UP_ROUNDS + MEASURED_ROUNDS);
    }
}

/// A small receive buffer, so that its accounting shows within a few
/// hundred rounds.
fn small_receive_buffer() -> TransportConfig {
    TransportConfig {
        receive_buffer_bytes: 4096,
        // The sender queues 200 rounds of reliable messages without waiting
        // for acks: above the default per-connection send budget.
        send_queue_bytes: 1024 * 1024,
        ..TransportConfig::default()
    }
}

#[test]
fn server_keeps_receiving_after_its_receive_buffer_size_has_been_polled() {
    // Each round delivers 112 bytes of messages to the server, and the
    // engine polls them all; 40 times the buffer size goes through.
    let rounds = 40 * 4096 / 112;
    let mut link = Link::establish(small_receive_buffer());
    for _ in 0..rounds {
        link.round(None);
    }
    let server = link.endpoint.connection(link.handle.unwrap()).unwrap();
    assert_eq!(server.stats().refused_packets, 0);
    assert_eq!(link.server_got.ordered, rounds);
    assert_eq!(link.server_got.unordered, rounds);
    assert_eq!(link.server_got.unreliable, rounds);
}

#[test]
fn reliable_content_refused_for_lack_of_room_is_sent_again() {
    // The client's application stops polling for a while: its 4 KiB receive
    // buffer fills and it must refuse (not acknowledge) what does not fit,
    // so that the server re-sends it once the client polls again.
    let mut link = Link::establish(small_receive_buffer());
    let sent = 200u64;
    for round in 0..sent {
        link.send_both_ways(None);
        link.client_to_server(None);
        link.server_events(None);
        link.server_to_client(None);
        if round % 100 == 99 {
            link.client_events(None);
        }
        link.timers(None);
    }
    let refused = link.client.stats().refused_packets;
    assert!(refused > 0, "the client's receive buffer never filled");
    // Polling again: everything refused must come again, in new packets.
    for _ in 0..2_000 {
        link.client_to_server(None);
        link.server_events(None);
        link.server_to_client(None);
        link.client_events(None);
        link.timers(None);
    }
    let server = link.endpoint.connection(link.handle.unwrap()).unwrap();
    let resent = server.stats().retransmissions;
    assert_eq!(
        link.client_got.ordered, sent,
        "reliable ordered messages delivered to the client \
         ({refused} packets refused, {resent} pieces re-sent)"
    );
    assert_eq!(link.client_got.unordered, sent);
}
