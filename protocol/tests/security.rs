//! Security properties: cookies, anti-amplification, replay and tamper
//! rejection, integrity checks, key pinning, and connect floods.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{LinkConfig, Owned, Rng, Sim, server_config};
use tos_protocol::connection::{ClientConfig, Connection, SendError, ServerKey, TransportConfig};
use tos_protocol::crypto::KeyPair;
use tos_protocol::endpoint::{DatagramOutcome, DropReason, Endpoint, EndpointEvent};
use tos_protocol::integrity::IntegrityTable;
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::{
    Connect, Cookie, DenyReason, DisconnectReason, Handshake, KeyMode, MAX_TICKET_PLAINTEXT_LEN,
    TAG_LEN,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn endpoint(epoch: Instant) -> Endpoint {
    Endpoint::new(server_config(
        0,
        Arc::new(TransportConfig::default()),
        epoch,
    ))
}

fn client(endpoint: &Endpoint, seed: u8, now: Instant) -> Connection {
    let cfg = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Pinned(endpoint.static_public_key()),
        ticket: b"t".to_vec(),
        integrity: None,
        seed: [seed; 32],
    };
    Connection::connect(cfg, addr(3565), now).unwrap()
}

/// Everything the endpoint wants to send now.
fn replies(ep: &mut Endpoint, now: Instant) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        out.push((t.destination, buf[..t.size].to_vec()));
    }
    out
}

/// The client's first Connect datagram.
fn first_connect(c: &mut Connection, now: Instant) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let t = c.poll_transmit(now, &mut buf).unwrap();
    buf[..t.size].to_vec()
}

/// Runs a first Connect through the endpoint and returns the cookie.
fn get_cookie(ep: &mut Endpoint, connect: &[u8], from: SocketAddr, now: Instant) -> Cookie {
    assert_eq!(
        ep.handle_datagram(now, from, &mut connect.to_vec()),
        DatagramOutcome::Handshake
    );
    let r = replies(ep, now);
    assert_eq!(r.len(), 1);
    let Ok((_, Handshake::Cookie(cookie))) = Handshake::decode(&r[0].1) else {
        panic!("no cookie")
    };
    cookie
}

/// Re-encodes a Connect with the given cookie.
fn connect_with(connect: &[u8], cookie: Cookie) -> Vec<u8> {
    let Ok((_, Handshake::Connect(c))) = Handshake::decode(connect) else {
        panic!()
    };
    let mut buf = [0u8; 1500];
    let n = Handshake::Connect(Connect {
        cookie: Some(cookie),
        ..c
    })
    .encode(cookie.connection_id, 1, &mut buf)
    .unwrap();
    buf[..n].to_vec()
}

fn denied(r: &[(SocketAddr, Vec<u8>)]) -> Option<DenyReason> {
    match Handshake::decode(&r.first()?.1) {
        Ok((_, Handshake::Denied(d))) => Some(d.reason),
        _ => None,
    }
}

#[test]
fn forged_expired_and_wrong_address_cookies_fail() {
    let epoch = Instant::now();
    let mut ep = endpoint(epoch);
    let mut c = client(&ep, 1, epoch);
    let now = epoch + Duration::from_secs(1);
    let connect = first_connect(&mut c, now);
    let cookie = get_cookie(&mut ep, &connect, addr(1000), now);

    // Forged MAC.
    let mut forged = cookie;
    forged.mac[0] ^= 1;
    ep.handle_datagram(now, addr(1000), &mut connect_with(&connect, forged));
    assert_eq!(denied(&replies(&mut ep, now)), Some(DenyReason::BadCookie));
    // Forged id (the MAC covers it).
    let mut forged = cookie;
    forged.connection_id ^= 0x100;
    ep.handle_datagram(now, addr(1000), &mut connect_with(&connect, forged));
    assert_eq!(denied(&replies(&mut ep, now)), Some(DenyReason::BadCookie));
    // Wrong address.
    ep.handle_datagram(now, addr(1001), &mut connect_with(&connect, cookie));
    assert_eq!(denied(&replies(&mut ep, now)), Some(DenyReason::BadCookie));
    // Expired.
    let later = now + Duration::from_millis(10_001);
    ep.handle_datagram(later, addr(1000), &mut connect_with(&connect, cookie));
    assert_eq!(
        denied(&replies(&mut ep, later)),
        Some(DenyReason::BadCookie)
    );
    assert_eq!(ep.connection_count(), 0, "no state for a bad cookie");
    assert_eq!(ep.stats().bad_cookies, 4);
    // The genuine one still works within its TTL.
    let ok = now + Duration::from_secs(9);
    assert!(matches!(
        ep.handle_datagram(ok, addr(1000), &mut connect_with(&connect, cookie)),
        DatagramOutcome::Connection(_)
    ));
    assert_eq!(ep.connection_count(), 1);
    assert!(matches!(
        ep.poll_event(),
        Some(EndpointEvent::Incoming { ticket: b"t", .. })
    ));
}

#[test]
fn no_reply_to_an_unproven_address_is_larger_than_its_datagram() {
    let epoch = Instant::now();
    let mut ep = endpoint(epoch);
    let mut rng = Rng(99);
    let now = epoch + Duration::from_secs(1);
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // Valid Connects, and each of them cut short, padded, and mutated.
    for seed in 0..64u8 {
        let mut c = client(&ep, seed, epoch);
        let valid = first_connect(&mut c, now);
        corpus.push(valid.clone());
        corpus.push(valid[..(rng.below(valid.len() as u64) as usize)].to_vec());
        // Well formed but short: less padding, CRC recomputed.
        let cut = 80 + rng.below(1_000) as usize;
        let mut short = valid[..cut].to_vec();
        short.extend_from_slice(&[0; 4]);
        tos_protocol::checksum::append(&mut short, cut).unwrap();
        corpus.push(short);
        let mut m = valid.clone();
        for _ in 0..4 {
            let i = rng.below(m.len() as u64) as usize;
            m[i] ^= rng.next_u64() as u8 | 1;
        }
        corpus.push(m);
        // A genuine cookie echoed from another address.
        let cookie = get_cookie(&mut ep, &valid, addr(2000 + u16::from(seed)), now);
        corpus.push(connect_with(&valid, cookie));
    }
    // Random datagrams of every size class, with and without the flags.
    for i in 0..2_000 {
        let len = rng.below(1_400) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if len > 6 && i % 2 == 0 {
            d[5] = if i % 4 == 0 { 0x40 } else { 0x03 };
            d[4] = 0;
        }
        corpus.push(d);
    }
    let mut replies_seen = 0;
    for (i, d) in corpus.iter().enumerate() {
        let from = addr(5000 + (i % 50_000) as u16);
        let mut copy = d.clone();
        ep.handle_datagram(now, from, &mut copy);
        for (to, reply) in replies(&mut ep, now) {
            assert_eq!(to, from);
            assert!(
                reply.len() <= d.len(),
                "input {i}: {} byte reply to a {} byte datagram",
                reply.len(),
                d.len()
            );
            replies_seen += 1;
        }
        // Connections from the wrong-address cookies never form.
        if let Some(e) = ep.poll_event() {
            panic!("unexpected event {e:?}");
        }
    }
    assert!(
        replies_seen > 64,
        "the corpus reached the reply paths ({replies_seen})"
    );
    assert_eq!(ep.connection_count(), 0);
    assert!(ep.stats().short_connects > 0 && ep.stats().malformed > 0);
}

#[test]
fn replayed_truncated_and_tampered_packets_are_rejected_and_counted() {
    let mut sim = Sim::new(31, LinkConfig::perfect(5), TransportConfig::default());
    let cfg = sim.client_config(Arc::new(TransportConfig::default()));
    sim.add_client(cfg);
    assert!(sim.drive(Duration::from_secs(5), |s| s.established(0)
        && s.server_established()));
    // Capture the message's packet without delivering it.
    sim.record = Some(Vec::new());
    sim.drop_all = true;
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, b"once")
        .unwrap();
    sim.step();
    sim.drop_all = false;
    let client_addr = sim.clients[0].addr;
    let packet = sim
        .record
        .take()
        .unwrap()
        .into_iter()
        .find(|(f, d)| *f == client_addr && d.len() > 40)
        .expect("the message packet")
        .1;
    let h = sim.server_handle();
    let before = sim.servers[0].connection(h).unwrap().stats();
    let now = sim.now;
    // Every truncation, then every byte flipped (low and high bit).
    for len in 0..packet.len() {
        sim.servers[0].handle_datagram(now, client_addr, &mut packet[..len].to_vec());
    }
    for i in 0..packet.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = packet.clone();
            t[i] ^= bit;
            sim.servers[0].handle_datagram(now, client_addr, &mut t);
        }
    }
    sim.pump_events();
    assert!(
        sim.server_messages().is_empty(),
        "no forged message was delivered"
    );
    let after = sim.servers[0].connection(h).unwrap().stats();
    assert_eq!(
        after.packets_received, before.packets_received,
        "no forgery was accepted"
    );
    // Flips in the ciphertext and tag, and in the sequence, all fail the tag.
    let body = (packet.len() - 14) as u64;
    assert!(
        after.auth_failures - before.auth_failures >= 2 * body,
        "{after:?}"
    );
    let ep = sim.servers[0].stats();
    assert!(
        ep.malformed > 0 && ep.unknown_connection + ep.wrong_core > 0,
        "{ep:?}"
    );
    // No forgery moved the replay window: the genuine packet still opens.
    sim.servers[0].handle_datagram(now, client_addr, &mut packet.clone());
    sim.pump_events();
    assert_eq!(
        sim.server_messages(),
        vec![(Channel::ReliableOrdered, b"once".to_vec())]
    );
    // And it is refused as a replay the second time.
    sim.servers[0].handle_datagram(now, client_addr, &mut packet.clone());
    sim.pump_events();
    assert_eq!(sim.server_messages().len(), 1);
    assert_eq!(
        sim.servers[0].connection(h).unwrap().stats().replays,
        before.replays + 1
    );
    // The connection is unharmed.
    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, b"still here")
        .unwrap();
    assert!(sim.drive(Duration::from_secs(2), |s| s.server_messages().len() == 2));
    // The endpoint's totals count them too, and keep them when the
    // connection is gone (Prometheus counters never go down, issue 11 #9).
    let conn = sim.servers[0].connection(h).unwrap().stats();
    let totals = sim.servers[0].stats();
    assert_eq!(totals.auth_failures, conn.auth_failures);
    assert_eq!(totals.replays, conn.replays);
    sim.servers[0]
        .connection_mut(h)
        .unwrap()
        .close(sim.now, DisconnectReason::Kicked);
    assert!(
        sim.drive(Duration::from_secs(5), |s| s.servers[0].connection_count()
            == 0)
    );
    let after_close = sim.servers[0].stats();
    assert_eq!(after_close.auth_failures, totals.auth_failures);
    assert_eq!(after_close.replays, totals.replays);
}

fn integrity_sim(client_table: Option<IntegrityTable>) -> Sim {
    let transport = TransportConfig {
        integrity_interval: Some(Duration::from_millis(500)),
        ..TransportConfig::default()
    };
    let mut sim = Sim::new(41, LinkConfig::perfect(5), transport.clone());
    let table = Arc::new(IntegrityTable::generate(&[9; 32], 3));
    for s in &mut sim.servers {
        let mut cfg = server_config(0, Arc::new(transport.clone()), sim.start);
        cfg.integrity = Some(Arc::clone(&table));
        *s = Endpoint::new(cfg);
    }
    let mut cfg = sim.client_config(Arc::new(transport));
    cfg.integrity = client_table.map(Arc::new);
    sim.add_client(cfg);
    sim
}

#[test]
fn integrity_checks_pass_for_the_official_table_and_disconnect_otherwise() {
    let mut good = integrity_sim(Some(IntegrityTable::generate(&[9; 32], 3)));
    good.drive(Duration::from_secs(5), |_| false);
    assert!(
        good.clients[0].conn.is_established(),
        "{:?}",
        good.clients[0].events
    );

    for table in [
        Some(IntegrityTable::generate(&[8; 32], 3)),
        Some(IntegrityTable::generate(&[9; 32], 4)),
        None,
    ] {
        let mut bad = integrity_sim(table);
        assert!(
            bad.drive(Duration::from_secs(5), |s| s.clients[0].events.contains(
                &Owned::Disconnected(DisconnectReason::IntegrityFailed, true)
            ))
        );
    }
}

#[test]
fn unpinned_clients_are_refused_unless_allowed() {
    let mut sim = Sim::new(51, LinkConfig::perfect(5), TransportConfig::default());
    let mut cfg = sim.client_config(Arc::new(TransportConfig::default()));
    cfg.server_key = ServerKey::Unpinned;
    // An unpinned client cannot seal a ticket.
    cfg.ticket.clear();
    sim.add_client(cfg.clone());
    assert!(sim.drive(Duration::from_secs(2), |s| {
        s.clients[0]
            .events
            .contains(&Owned::Denied(DenyReason::KeyNotPinned))
    }));

    let mut sim = Sim::new(52, LinkConfig::perfect(5), TransportConfig::default());
    let mut scfg = server_config(0, Arc::new(TransportConfig::default()), sim.start);
    scfg.allow_unpinned = true;
    sim.servers[0] = Endpoint::new(scfg);
    sim.add_client(cfg);
    assert!(sim.drive(Duration::from_secs(2), |s| s.established(0)));
    let key = sim.servers[0].static_public_key();
    assert!(sim.clients[0].events.contains(&Owned::ServerKey(key)));
}

#[test]
fn a_client_pinning_another_key_never_connects() {
    let transport = TransportConfig {
        handshake_timeout: Duration::from_secs(2),
        ..TransportConfig::default()
    };
    let mut sim = Sim::new(61, LinkConfig::perfect(5), transport.clone());
    let mut cfg = sim.client_config(Arc::new(transport));
    cfg.server_key = ServerKey::Pinned([7; 32]);
    // Without a ticket the server accepts, and the client's check of
    // ConnectionAccepted is what stops it (with one, see below).
    cfg.ticket.clear();
    sim.add_client(cfg);
    assert!(
        sim.drive(Duration::from_secs(5), |s| s.clients[0].events.contains(
            &Owned::Disconnected(DisconnectReason::HandshakeTimeout, false)
        ))
    );
    assert!(sim.clients[0].conn.stats().auth_failures > 0);
    assert!(!sim.clients[0].events.contains(&Owned::Connected));
}

#[test]
fn the_ticket_travels_sealed_and_arrives_in_plaintext() {
    let epoch = Instant::now();
    let mut ep = endpoint(epoch);
    let now = epoch + Duration::from_secs(1);
    let ticket = b"a-secret-session-ticket".to_vec();
    let cfg = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Pinned(ep.static_public_key()),
        ticket: ticket.clone(),
        integrity: None,
        seed: [9; 32],
    };
    let mut c = Connection::connect(cfg, addr(3565), now).unwrap();
    let connect = first_connect(&mut c, now);
    let Ok((_, Handshake::Connect(sent))) = Handshake::decode(&connect) else {
        panic!("not a Connect")
    };
    assert_eq!(sent.ticket.len(), ticket.len() + TAG_LEN);
    assert!(
        !connect
            .windows(ticket.len())
            .any(|w| w == ticket.as_slice()),
        "the plaintext ticket is on the wire"
    );
    // A retransmitted Connect carries the identical sealed bytes.
    let again = first_connect(&mut c, now + Duration::from_secs(2));
    let Ok((_, Handshake::Connect(resent))) = Handshake::decode(&again) else {
        panic!("not a Connect")
    };
    assert_eq!(resent.ticket, sent.ticket);

    let from = addr(1000);
    let cookie = get_cookie(&mut ep, &connect, from, now);
    assert!(matches!(
        ep.handle_datagram(now, from, &mut connect_with(&connect, cookie)),
        DatagramOutcome::Connection(_)
    ));
    match ep.poll_event() {
        Some(EndpointEvent::Incoming { ticket: got, .. }) => assert_eq!(got, ticket.as_slice()),
        other => panic!("expected Incoming, got {other:?}"),
    }
    assert_eq!(ep.stats().tickets_rejected, 0);
}

#[test]
fn a_ticket_that_does_not_open_is_denied() {
    let epoch = Instant::now();
    let mut ep = endpoint(epoch);
    let now = epoch + Duration::from_secs(1);
    let from = addr(1000);

    // Altered on the way: one bit of the sealed ticket flipped.
    let mut c = client(&ep, 5, now);
    let connect = first_connect(&mut c, now);
    let cookie = get_cookie(&mut ep, &connect, from, now);
    let Ok((_, Handshake::Connect(sent))) = Handshake::decode(&connect) else {
        panic!()
    };
    let mut altered = sent.ticket.to_vec();
    altered[0] ^= 1;
    let mut buf = [0u8; 1500];
    let n = Handshake::Connect(Connect {
        cookie: Some(cookie),
        ticket: &altered,
        ..sent
    })
    .encode(cookie.connection_id, 1, &mut buf)
    .unwrap();
    let replayed = buf[..n].to_vec();
    ep.handle_datagram(now, from, &mut buf[..n]);
    assert_eq!(
        denied(&replies(&mut ep, now)),
        Some(DenyReason::TicketRejected)
    );
    assert_eq!(ep.connection_count(), 0, "no state for a bad ticket");
    assert!(ep.poll_event().is_none());
    // Replayed: denied again, from the remembered id (no X25519).
    ep.handle_datagram(now, from, &mut replayed.clone());
    assert_eq!(
        denied(&replies(&mut ep, now)),
        Some(DenyReason::TicketRejected)
    );
    assert_eq!(ep.connection_count(), 0);

    // Sealed for another server key.
    let cfg = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Pinned(
            Endpoint::new(server_config(
                0,
                Arc::new(TransportConfig::default()),
                epoch,
            ))
            .static_public_key()
            .map(|b| b ^ 0x55),
        ),
        ticket: b"t".to_vec(),
        integrity: None,
        seed: [6; 32],
    };
    let mut c = Connection::connect(cfg, addr(3565), now).unwrap();
    let connect = first_connect(&mut c, now);
    let cookie = get_cookie(&mut ep, &connect, from, now);
    ep.handle_datagram(now, from, &mut connect_with(&connect, cookie));
    assert_eq!(
        denied(&replies(&mut ep, now)),
        Some(DenyReason::TicketRejected)
    );

    // An unpinned Connect that carries a ticket anyway (a hand-made one).
    let mut scfg = server_config(0, Arc::new(TransportConfig::default()), epoch);
    scfg.allow_unpinned = true;
    let mut ep2 = Endpoint::new(scfg);
    let n = Handshake::Connect(Connect {
        key_mode: KeyMode::Unpinned,
        cookie: None,
        ticket: b"plain",
        ..sent
    })
    .encode(7, 0, &mut buf)
    .unwrap();
    let plain = buf[..n].to_vec();
    let cookie = get_cookie(&mut ep2, &plain, from, now);
    ep2.handle_datagram(now, from, &mut connect_with(&plain, cookie));
    assert_eq!(
        denied(&replies(&mut ep2, now)),
        Some(DenyReason::TicketRejected)
    );
    assert_eq!(ep.stats().tickets_rejected, 3);
    assert_eq!(ep2.stats().tickets_rejected, 1);
    assert_eq!(ep2.connection_count(), 0);
}

#[test]
fn a_ticket_needs_a_pinned_key() {
    let now = Instant::now();
    let cfg = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Unpinned,
        ticket: b"t".to_vec(),
        integrity: None,
        seed: [1; 32],
    };
    assert_eq!(
        Connection::connect(cfg.clone(), addr(1), now).err(),
        Some(SendError::UnsealableTicket)
    );
    let too_long = ClientConfig {
        server_key: ServerKey::Pinned(KeyPair::from_secret([3; 32]).public()),
        ticket: vec![0; MAX_TICKET_PLAINTEXT_LEN + 1],
        ..cfg.clone()
    };
    assert_eq!(
        Connection::connect(too_long, addr(1), now).err(),
        Some(SendError::TooLarge {
            max: MAX_TICKET_PLAINTEXT_LEN
        })
    );
    let empty = ClientConfig {
        ticket: Vec::new(),
        ..cfg
    };
    assert!(Connection::connect(empty, addr(1), now).is_ok());
}

#[test]
fn a_connect_flood_creates_no_state() {
    let epoch = Instant::now();
    let mut ep = endpoint(epoch);
    let now = epoch + Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    for i in 0..10_000u32 {
        let mut c = client(&ep, (i % 251) as u8, epoch);
        let t = c.poll_transmit(now, &mut buf).unwrap();
        let from = SocketAddr::from((
            [127, 0, (i >> 8) as u8, i as u8],
            1024 + (i % 60_000) as u16,
        ));
        ep.handle_datagram(now, from, &mut buf[..t.size]);
        if i % 512 == 0 {
            // The engine drains replies every loop turn.
            replies(&mut ep, now);
        }
    }
    assert_eq!(ep.connection_count(), 0);
    assert!(ep.stats().cookies_issued > 9_000);
    assert!(
        ep.stats().reply_queue_full == 0
            || ep.stats().cookies_issued + ep.stats().reply_queue_full == 10_000
    );
    replies(&mut ep, now);
    // A well-formed but short Connect (valid CRC, less padding) is dropped
    // without a reply.
    let mut c = client(&ep, 7, epoch);
    let full = first_connect(&mut c, now);
    let mut short = full[..96].to_vec();
    short.extend_from_slice(&[0; 4]);
    tos_protocol::checksum::append(&mut short, 96).unwrap();
    assert!(Handshake::decode(&short).is_ok());
    assert_eq!(
        ep.handle_datagram(now, addr(9), &mut short),
        DatagramOutcome::Dropped(DropReason::ShortConnect)
    );
    assert!(replies(&mut ep, now).is_empty());
    // A longer one (more zero padding, CRC at its end) is handled like a
    // 1200-byte one, as PROTOCOL.md §4.2 says: it gets a Cookie, which is
    // still smaller than the request.
    let mut long = full[..1196].to_vec();
    long.extend_from_slice(&[0; 54 + 4]);
    tos_protocol::checksum::append(&mut long, 1250).unwrap();
    assert_eq!(long.len(), 1254);
    let issued = ep.stats().cookies_issued;
    ep.handle_datagram(now, addr(10), &mut long);
    assert_eq!(ep.stats().cookies_issued, issued + 1);
    let sent = replies(&mut ep, now);
    assert_eq!(sent.len(), 1);
}

#[test]
fn abandoned_pending_connections_free_their_slot() {
    // Regression: the pending counter leaked when a pending connection
    // timed out, so later clients were refused as Busy forever.
    let transport = TransportConfig {
        handshake_timeout: Duration::from_millis(500),
        ..TransportConfig::default()
    };
    let mut sim = Sim::new(71, LinkConfig::perfect(5), transport.clone());
    let mut scfg = server_config(0, Arc::new(transport.clone()), sim.start);
    scfg.max_pending = 1;
    sim.servers[0] = Endpoint::new(scfg);
    sim.hold_incoming = true;
    let cfg = sim.client_config(Arc::new(transport.clone()));
    sim.add_client(cfg);
    assert!(
        sim.drive(Duration::from_secs(3), |s| s.servers[0].connection_count()
            == 1)
    );
    assert!(
        sim.drive(Duration::from_secs(3), |s| s.servers[0].connection_count()
            == 0),
        "the pending connection expires"
    );
    sim.hold_incoming = false;
    let cfg = sim.client_config(Arc::new(transport));
    sim.add_client(cfg);
    assert!(
        sim.drive(Duration::from_secs(5), |s| s.established(1)),
        "{:?}",
        sim.clients[1].events
    );
}
