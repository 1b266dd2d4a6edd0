//! A hostile peer, in memory: a real client completes the handshake with a
//! server [`Endpoint`], then the test seals packets of its own choosing
//! under the client's keys (any frames, any sequence, any address) and
//! checks what the server's connection holds. These tests live inside the
//! crate because they read the connection's private accounting.

use super::*;
use crate::endpoint::{ConnectionHandle, Endpoint, EndpointConfig, EndpointEvent};

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) struct Hostile {
    pub(super) ep: Endpoint,
    pub(super) client: Connection,
    pub(super) handle: ConnectionHandle,
    pub(super) now: Instant,
    pub(super) from: SocketAddr,
    /// Datagrams the server sent, by destination.
    pub(super) sent_to: Vec<(SocketAddr, usize)>,
}

impl Hostile {
    pub(super) fn new(transport: TransportConfig) -> Self {
        let now = Instant::now();
        let transport = Arc::new(transport);
        let mut cfg = EndpointConfig::new([0x42; 32], [0x24; 32], now, [0; 32]);
        cfg.transport = Arc::clone(&transport);
        let mut ep = Endpoint::new(cfg);
        let client = Connection::connect(
            ClientConfig {
                transport,
                server_key: ServerKey::Pinned(ep.static_public_key()),
                ticket: b"t".to_vec(),
                integrity: None,
                seed: [7; 32],
            },
            addr(3565),
            now,
        )
        .unwrap();
        let from = addr(40_000);
        let mut client = client;
        let mut now = now;
        let mut buf = [0u8; 1500];
        let mut handle = None;
        for _ in 0..50 {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                ep.handle_datagram(now, from, &mut buf[..t.size]);
            }
            while let Some(e) = ep.poll_event() {
                if let EndpointEvent::Incoming { handle: hd, .. } = e {
                    handle = Some(hd);
                }
            }
            if let Some(hd) = handle {
                if ep.connection(hd).is_some_and(|c| c.is_pending()) {
                    ep.accept(hd, now);
                }
            }
            while let Some(t) = ep.poll_transmit(now, &mut buf) {
                client.handle_datagram(now, addr(3565), &mut buf[..t.size]);
            }
            while client.poll_event().is_some() {}
            now += Duration::from_millis(1);
            if client.is_established()
                && handle.is_some_and(|hd| ep.connection(hd).is_some_and(|c| c.is_established()))
            {
                break;
            }
        }
        let h = Self {
            ep,
            client,
            handle: handle.expect("an Incoming event"),
            now,
            from,
            sent_to: Vec::new(),
        };
        assert!(h.server().is_established(), "the pair connected");
        h
    }

    pub(super) fn server(&self) -> &Connection {
        self.ep
            .connection(self.handle)
            .expect("the server connection")
    }

    pub(super) fn server_mut(&mut self) -> &mut Connection {
        self.ep
            .connection_mut(self.handle)
            .expect("the server connection")
    }

    /// Seals `frames` as the client's packet number `pn` and hands it to
    /// the server from `from`.
    pub(super) fn inject_pn(
        &mut self,
        pn: u64,
        from: SocketAddr,
        frames: impl FnOnce(&mut Writer<'_>),
    ) {
        let mut buf = [0u8; 1500];
        let body_end = 1200 - TAG_LEN;
        let len = {
            let mut w = Writer::new(&mut buf[HEADER_LEN..body_end]);
            frames(&mut w);
            w.position()
        };
        let keys = self.client.keys.as_ref().expect("client keys");
        let mut flags = SEALED_FLAGS;
        flags.set(HeaderFlags::REKEY, keys.phase_bit());
        let header = PacketHeader {
            connection_id: self.client.connection_id,
            channel: Channel::Unreliable,
            flags,
            sequence: pn,
        };
        header.emit(&mut Packet::new_unchecked(&mut buf[..HEADER_LEN]));
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let tag =
            keys.send_key(Side::Client)
                .seal(self.client.connection_id, pn, head, &mut rest[..len]);
        rest[len..len + TAG_LEN].copy_from_slice(&tag);
        let size = HEADER_LEN + len + TAG_LEN;
        self.ep.handle_datagram(self.now, from, &mut buf[..size]);
    }

    /// Seals `frames` under the client's next packet number.
    pub(super) fn inject(&mut self, frames: impl FnOnce(&mut Writer<'_>)) {
        let pn = self.client.next_pn;
        self.client.next_pn += 1;
        let from = self.from;
        self.inject_pn(pn, from, frames);
    }

    /// Runs the server's timers and takes what it sends (never delivered:
    /// the hostile peer acknowledges nothing). Events are polled only when
    /// `poll_events`.
    pub(super) fn tick(&mut self, step: Duration, poll_events: bool) {
        self.now += step;
        self.ep.handle_timeout(self.now);
        let mut buf = [0u8; 1500];
        while let Some(t) = self.ep.poll_transmit(self.now, &mut buf) {
            self.sent_to.push((t.destination, t.size));
        }
        if poll_events {
            while self.ep.poll_event().is_some() {}
        }
    }
}

/// An unreliable message frame.
pub(super) fn unreliable(w: &mut Writer<'_>, data: &[u8]) {
    let _ = Message {
        channel: Channel::Unreliable,
        message_id: 0,
        data,
    }
    .encode_frame(w);
}

#[test]
fn sent_history_stays_bounded_when_the_peer_never_acknowledges() {
    // The peer keeps the connection alive with ack-eliciting packets and
    // acknowledges nothing; the server answers with acks, heartbeats and
    // messages of its own. Before the fix every ack-only packet stayed in
    // the history (never acked, never declared lost), pinning its front.
    let mut h = Hostile::new(TransportConfig::default());
    for i in 0..20_000u32 {
        h.inject(|w| unreliable(w, b"x"));
        if i % 16 == 0 {
            let _ = h.server_mut().send(Channel::Unreliable, b"snapshot");
        }
        h.tick(Duration::from_millis(1), true);
        let s = h.server();
        assert!(
            s.sent.len() <= recovery::MAX_SENT_PACKETS,
            "history grew to {} packets after {i} packets",
            s.sent.len()
        );
    }
    let s = h.server();
    assert!(!s.is_closed(), "a live peer is not timed out");
    // Bounded in bytes too (capacity, as the budget counts it).
    assert!(
        s.sent.memory() <= 16 * 1024,
        "sent history holds {} B",
        s.sent.memory()
    );
}

/// An unreliable fragment: the last piece (one byte) of a message that
/// announces `total` bytes.
pub(super) fn tiny_fragment(w: &mut Writer<'_>, fragment_id: u16, total: u32) {
    let count = (total as usize).div_ceil(FRAGMENT_PIECE_LEN);
    let _ = Fragment {
        channel: Channel::Unreliable,
        message_id: 0,
        fragment_id,
        index: (count - 1) as u16,
        total_size: total,
        data: &[0xaa],
    }
    .encode_frame(w);
}

#[test]
fn a_tiny_fragment_of_a_huge_message_costs_its_own_size() {
    // Finding 1: each such frame used to zero-fill the whole announced
    // message (255 KiB). Work is counted as bytes held: the reassembly may
    // hold what arrived, not what was announced.
    let transport = TransportConfig {
        // Generous limits, so that only the zero-fill is under test.
        max_message_bytes: 256 * 1024,
        receive_buffer_bytes: 1024 * 1024,
        ..TransportConfig::default()
    };
    let total = (255 * FRAGMENT_PIECE_LEN - FRAGMENT_PIECE_LEN + 1) as u32;
    let mut h = Hostile::new(transport);
    for i in 0..2_000u16 {
        h.inject(|w| {
            for k in 0..4 {
                tiny_fragment(w, i.wrapping_mul(4).wrapping_add(k), total);
            }
        });
        h.tick(Duration::from_millis(1), true);
        let held = h.server().reassembly.memory();
        assert!(
            held <= 4 * 1024,
            "reassembly holds {held} B after {i} packets"
        );
    }
}

#[test]
fn empty_messages_cannot_flood_the_event_queue() {
    // Finding 8: zero-length unreliable messages (2 bytes each) were one
    // event each, bounded by bytes only. Now: at most
    // MAX_MESSAGES_PER_PACKET per packet and MAX_QUEUED_MESSAGES queued,
    // the rest counted as dropped.
    let mut h = Hostile::new(TransportConfig::default());
    let per_packet = {
        let mut n = 0;
        h.inject(|w| {
            while w.remaining() >= 2 {
                unreliable(w, b"");
                n += 1;
            }
        });
        n
    };
    assert!(per_packet > 500, "{per_packet} messages fit a packet");
    assert_eq!(h.server().events.len(), MAX_MESSAGES_PER_PACKET);
    // The application does not poll: the queue stops at its bound.
    for _ in 0..20 {
        h.inject(|w| {
            while w.remaining() >= 2 {
                unreliable(w, b"");
            }
        });
        h.tick(Duration::from_millis(1), false);
    }
    let s = h.server();
    assert!(
        s.events.len() <= MAX_QUEUED_MESSAGES + 8,
        "{} events",
        s.events.len()
    );
    assert_eq!(s.message_events, MAX_QUEUED_MESSAGES);
    assert!(s.stats().events_dropped >= 20 * (per_packet as u64 - 64));
    // Polling drains the count with the queue.
    while h.ep.poll_event().is_some() {}
    assert_eq!(h.server().message_events, 0);
}

#[test]
fn only_the_newest_packet_moves_the_peer_address() {
    // Finding 6: an older (reordered or replayed by an attacker on the
    // path) authentic packet from another address rewrote the peer.
    let mut h = Hostile::new(TransportConfig::default());
    let home = h.from;
    let other = addr(50_000);
    let pn = h.client.next_pn;
    h.client.next_pn += 10;
    h.inject_pn(pn + 9, home, |w| unreliable(w, b"new"));
    h.inject_pn(pn + 3, other, |w| unreliable(w, b"old"));
    assert_eq!(
        h.server().remote_address(),
        home,
        "an older packet moved the peer"
    );
    assert_eq!(h.server().stats().path_changes, 0);
    // A newer one does move it (NAT rebinding).
    h.inject_pn(pn + 10, other, |w| unreliable(w, b"newer"));
    h.client.next_pn = pn + 11;
    assert_eq!(h.server().remote_address(), other);
    assert_eq!(h.server().stats().path_changes, 1);
}

#[test]
fn an_unproven_new_address_gets_at_most_three_times_its_bytes() {
    let mut h = Hostile::new(TransportConfig::default());
    let victim = addr(50_001);
    h.sent_to.clear();
    // One small authentic packet from the victim's address moves the path.
    let small = {
        let pn = h.client.next_pn;
        h.client.next_pn += 1;
        h.inject_pn(pn, victim, |w| unreliable(w, b"x"));
        HEADER_LEN + 4 + TAG_LEN
    };
    assert_eq!(h.server().remote_address(), victim);
    // The application has a lot to say; the victim acknowledges nothing.
    for _ in 0..200 {
        let _ = h.server_mut().send(Channel::Unreliable, &[7u8; 1000]);
        h.tick(Duration::from_millis(5), true);
    }
    let to_victim: usize = h
        .sent_to
        .iter()
        .filter(|(a, _)| *a == victim)
        .map(|(_, n)| n)
        .sum();
    assert!(
        to_victim <= 3 * (small + 8),
        "{to_victim} B sent to an unproven address after ~{small} B from it"
    );
}

/// The per-connection budget: what [`Connection::memory_bytes`] may reach
/// whatever the peer sends (docs/SECURITY.md derives it).
const WORST_CASE_BUDGET: usize = 64 * 1024;
const TYPICAL_BUDGET: usize = 16 * 1024;

fn reliable(w: &mut Writer<'_>, channel: Channel, id: u64, data: &[u8]) {
    let _ = Message {
        channel,
        message_id: id,
        data,
    }
    .encode_frame(w);
}

#[test]
fn a_hostile_peer_cannot_push_a_connection_past_its_memory_budget() {
    // Finding 2: every structure a peer can grow, driven at once, with an
    // application that polls rarely and a peer that acknowledges nothing.
    let mut h = Hostile::new(TransportConfig::default());
    let base = h.server().memory_bytes();
    let mut peak = base;
    let big = [0x55u8; 1000];
    for round in 0..300u64 {
        // Out-of-order reliable ordered messages across the whole window
        // (id 0 never comes), and unordered ones.
        h.inject(|w| {
            for k in 0..1 {
                let id = 1 + (round * 7 + k) % 300;
                reliable(w, Channel::ReliableOrdered, id, &big);
            }
        });
        h.inject(|w| reliable(w, Channel::ReliableUnordered, round * 3 + 5, &big[..900]));
        // Fragments of large messages: all reassembly slots, reliable and
        // unreliable, each piece full-size.
        h.inject(|w| {
            let _ = Fragment {
                channel: if round % 2 == 0 {
                    Channel::ReliableOrdered
                } else {
                    Channel::Unreliable
                },
                message_id: 500 + round,
                fragment_id: round as u16,
                index: 0,
                total_size: 200 * 1024,
                data: &[1u8; FRAGMENT_PIECE_LEN],
            }
            .encode_frame(w);
        });
        // Floods of empty unreliable messages and pings.
        h.inject(|w| {
            while w.remaining() >= 2 {
                unreliable(w, b"");
            }
        });
        h.inject(|w| {
            for id in 0..16 {
                let _ = Ping { id }.encode_frame(w);
            }
        });
        // The server application keeps sending; nothing is acknowledged.
        let _ = h.server_mut().send(Channel::Unreliable, &big);
        let _ = h.server_mut().send(Channel::ReliableOrdered, &big[..100]);
        h.tick(Duration::from_millis(2), round % 50 == 49);
        let m = h.server().memory_bytes();
        peak = peak.max(m);
        assert!(
            m <= WORST_CASE_BUDGET,
            "round {round}: {m} B (base {base} B): {:?}",
            h.server().memory_parts()
        );
    }
    eprintln!("hostile peak {peak} B, base {base} B");
}

#[test]
fn an_honest_session_stays_within_the_typical_budget() {
    // The real client, acknowledging as it should, at 60 Hz: an input per
    // tick, now and then a reliable chat line; the server sends a snapshot
    // per tick and a reliable message now and then.
    let mut h = Hostile::new(TransportConfig::default());
    let mut peak = 0;
    let mut buf = [0u8; 1500];
    let server = addr(3565);
    for round in 0..600u64 {
        let _ = h.client.send(Channel::Unreliable, &[1u8; 24]);
        if round % 30 == 0 {
            let _ = h.client.send(Channel::ReliableOrdered, b"hello there");
            let _ = h.server_mut().send(Channel::ReliableOrdered, &[3u8; 200]);
        }
        let _ = h.server_mut().send(Channel::Unreliable, &[9u8; 900]);
        h.now += Duration::from_millis(16);
        let now = h.now;
        h.client.handle_timeout(now);
        while let Some(t) = h.client.poll_transmit(now, &mut buf) {
            h.ep.handle_datagram(now, h.from, &mut buf[..t.size]);
        }
        h.ep.handle_timeout(now);
        while let Some(t) = h.ep.poll_transmit(now, &mut buf) {
            h.client.handle_datagram(now, server, &mut buf[..t.size]);
        }
        while h.client.poll_event().is_some() {}
        while h.ep.poll_event().is_some() {}
        peak = peak.max(h.server().memory_bytes());
    }
    assert!(h.server().is_established());
    assert!(h.server().stats().packets_received > 500);
    eprintln!("honest peak {peak} B: {:?}", h.server().memory_parts());
    assert!(
        peak <= TYPICAL_BUDGET,
        "{peak} B: {:?}",
        h.server().memory_parts()
    );
}

#[test]
fn an_inflated_rtt_cannot_stretch_the_closing_period() {
    // A peer that delays its acks by seconds inflates the measured RTT and
    // its variance. Closing lasted three uncapped RTOs, so such a
    // connection, once closed, held its slot for as long as the peer
    // wished (loadgen --attack rtt-inflation left 16 connections behind
    // 16 s after the attack). Now it is three capped RTOs.
    let mut h = Hostile::new(TransportConfig::default());
    for rtt in [20u64, 1, 40, 2, 60] {
        h.server_mut().rtt.sample(Duration::from_secs(rtt));
    }
    let now = h.now;
    let rto_max = h.server().config.rto_max;
    h.server_mut().close(now, DisconnectReason::Kicked);
    let State::Closing { until } = h.server().state else {
        panic!("closing")
    };
    assert!(until <= now + rto_max * 3, "{:?}", until - now);
    // And the slot is freed by then.
    for _ in 0..70 {
        h.tick(Duration::from_millis(100), true);
    }
    assert_eq!(h.ep.connection_count(), 0);
}

#[cfg(feature = "hostile-peer")]
#[test]
fn raw_frames_sealed_by_a_hostile_client_reach_the_server() {
    // `Connection::seal_raw_frames` (loadgen --attack) seals what the
    // caller wrote under the client's keys: the server opens it like any
    // packet of that client.
    let mut h = Hostile::new(TransportConfig::default());
    let before = h.server().stats().packets_received;
    let mut frames = [0u8; 64];
    let len = {
        let mut w = Writer::new(&mut frames);
        let _ = Ping { id: 7 }.encode_frame(&mut w);
        w.position()
    };
    let mut out = [0u8; 1500];
    let n = h.client.seal_raw_frames(&frames[..len], &mut out).unwrap();
    let (now, from) = (h.now, h.from);
    h.ep.handle_datagram(now, from, &mut out[..n]);
    assert_eq!(h.server().stats().packets_received, before + 1);
    // Too large for the MTU: refused, nothing sealed.
    assert!(h.client.seal_raw_frames(&[0; 1200], &mut out).is_none());
}
