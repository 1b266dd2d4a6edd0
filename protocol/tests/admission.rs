//! Admission control (issue 11, finding 4): per-address handshake rate,
//! per-address and process-wide connection caps, the per-core capacity,
//! cookies checked before a Connect is forwarded to another core, and
//! endpoint totals that never go down.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server_config;
use tos_protocol::connection::{ClientConfig, Connection, ServerKey, TransportConfig};
use tos_protocol::endpoint::{Admission, DatagramOutcome, Endpoint, EndpointConfig, EndpointEvent};
use tos_protocol::wire::control::{Cookie, DenyReason, Handshake};

fn from(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn config(core: u8, epoch: Instant) -> EndpointConfig {
    server_config(core, Arc::new(TransportConfig::default()), epoch)
}

fn client(key: [u8; 32], seed: u64, now: Instant) -> Connection {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    let cfg = ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        server_key: ServerKey::Pinned(key),
        ticket: Vec::new(),
        integrity: None,
        seed: s,
    };
    Connection::connect(cfg, from([127, 0, 0, 1], 3565), now).unwrap()
}

fn replies(ep: &mut Endpoint, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 1500];
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit(now, &mut buf) {
        out.push(buf[..t.size].to_vec());
    }
    out
}

/// The cookie-bearing second Connect of a fresh client, from `addr`.
fn second_connect(ep: &mut Endpoint, seed: u64, addr: SocketAddr, now: Instant) -> Vec<u8> {
    let mut c = client(ep.static_public_key(), seed, now);
    let mut buf = [0u8; 1500];
    let t = c.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(
        ep.handle_datagram(now, addr, &mut buf[..t.size]),
        DatagramOutcome::Handshake
    );
    let r = replies(ep, now);
    let Ok((_, Handshake::Cookie(cookie))) = Handshake::decode(&r[0]) else {
        panic!("no cookie")
    };
    c.handle_datagram(now, from([127, 0, 0, 1], 3565), &mut r[0].clone());
    let t = c.poll_transmit(now, &mut buf).unwrap();
    let _: Cookie = cookie;
    buf[..t.size].to_vec()
}

/// Runs a whole admission from `addr`: Ok(()) if a connection was created,
/// Err(reason) if denied.
fn admit(ep: &mut Endpoint, seed: u64, addr: SocketAddr, now: Instant) -> Result<(), DenyReason> {
    let mut connect = second_connect(ep, seed, addr, now);
    let before = ep.connection_count();
    ep.handle_datagram(now, addr, &mut connect);
    let r = replies(ep, now);
    if ep.connection_count() > before {
        return Ok(());
    }
    match r.first().map(|d| Handshake::decode(d)) {
        Some(Ok((_, Handshake::Denied(d)))) => Err(d.reason),
        other => panic!("neither admitted nor denied: {other:?}"),
    }
}

#[test]
fn verified_connects_from_one_address_are_rate_limited_before_x25519() {
    let epoch = Instant::now();
    let mut cfg = config(0, epoch);
    cfg.handshake_rate = 10;
    cfg.handshake_burst = 5;
    cfg.admission = Arc::new(Admission::new(usize::MAX, 0));
    let mut ep = Endpoint::new(cfg);
    let now = epoch + Duration::from_secs(1);
    let attacker = from([127, 0, 0, 9], 4000);
    let mut admitted = 0;
    let mut busy = 0;
    for i in 0..50 {
        match admit(&mut ep, i, attacker, now) {
            Ok(()) => admitted += 1,
            Err(DenyReason::Busy) => busy += 1,
            Err(r) => panic!("{r:?}"),
        }
    }
    assert_eq!(admitted, 5, "the burst");
    assert_eq!(busy, 45);
    assert_eq!(ep.stats().rate_limited, 45);
    // Another address is not affected.
    assert_eq!(admit(&mut ep, 99, from([127, 0, 0, 10], 4000), now), Ok(()));
    // Tokens come back at the configured rate: 10/s, so 1 after 100 ms.
    let later = now + Duration::from_millis(100);
    assert_eq!(admit(&mut ep, 100, attacker, later), Ok(()));
    assert_eq!(admit(&mut ep, 101, attacker, later), Err(DenyReason::Busy));
    // Idle addresses' buckets are forgotten.
    ep.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(ep.handshake_buckets(), 0);
}

#[test]
fn connections_per_address_are_capped_and_released_on_close() {
    let epoch = Instant::now();
    let mut cfg = config(0, epoch);
    cfg.handshake_rate = 0;
    let admission = Arc::new(Admission::new(usize::MAX, 3));
    cfg.admission = Arc::clone(&admission);
    let mut ep = Endpoint::new(cfg);
    let now = epoch + Duration::from_secs(1);
    let ip = [127, 0, 0, 7];
    for i in 0..3 {
        assert_eq!(admit(&mut ep, i, from(ip, 5000 + i as u16), now), Ok(()));
    }
    assert_eq!(
        admit(&mut ep, 3, from(ip, 5003), now),
        Err(DenyReason::Full)
    );
    assert_eq!(ep.stats().address_full, 1);
    assert_eq!(admission.live_from(ip.into()), 3);
    assert_eq!(admit(&mut ep, 4, from([127, 0, 0, 8], 5000), now), Ok(()));
    // Refusing one (the application's choice) frees its place.
    let handle = loop {
        match ep.poll_event() {
            Some(EndpointEvent::Incoming {
                handle, address, ..
            }) if address.ip() == std::net::IpAddr::from(ip) => {
                break handle;
            }
            Some(_) => {}
            None => panic!("no incoming"),
        }
    };
    ep.refuse(handle, DenyReason::TicketRejected);
    replies(&mut ep, now);
    assert_eq!(admission.live_from(ip.into()), 2);
    assert_eq!(admit(&mut ep, 5, from(ip, 5005), now), Ok(()));
    // Pending connections that time out free theirs too.
    ep.handle_timeout(now + Duration::from_secs(60));
    while ep.poll_event().is_some() {}
    assert_eq!(ep.connection_count(), 0);
    assert_eq!(admission.live(), 0);
    assert_eq!(admission.live_from(ip.into()), 0);
}

#[test]
fn the_process_cap_spans_cores_and_the_core_cap_says_full() {
    let epoch = Instant::now();
    let now = epoch + Duration::from_secs(1);
    let admission = Arc::new(Admission::new(3, 0));
    let mut eps: Vec<Endpoint> = (0..2)
        .map(|core| {
            let mut cfg = config(core, epoch);
            cfg.handshake_rate = 0;
            cfg.admission = Arc::clone(&admission);
            cfg.max_connections = 2;
            Endpoint::new(cfg)
        })
        .collect();
    let mut seed = 0;
    let mut next = |ep: &mut Endpoint| {
        seed += 1;
        admit(
            ep,
            seed,
            from([10, 0, (seed >> 8) as u8, seed as u8], 6000),
            now,
        )
    };
    assert_eq!(next(&mut eps[0]), Ok(()));
    assert_eq!(next(&mut eps[0]), Ok(()));
    // Core 0 is at its own cap.
    assert_eq!(next(&mut eps[0]), Err(DenyReason::Full));
    assert_eq!(eps[0].stats().full_refused, 1);
    assert_eq!(next(&mut eps[1]), Ok(()));
    // The process is at its cap, though core 1 has room.
    assert_eq!(next(&mut eps[1]), Err(DenyReason::Full));
    assert_eq!(eps[1].stats().process_full, 1);
    assert_eq!(admission.live(), 3);
}

#[test]
fn a_spoofed_connect_naming_another_core_is_not_forwarded() {
    let epoch = Instant::now();
    let now = epoch + Duration::from_secs(1);
    let mut core0 = Endpoint::new(config(0, epoch));
    let mut core1 = Endpoint::new(config(1, epoch));
    let addr = from([127, 0, 0, 5], 7000);
    // A genuine cookie of core 1, presented from another (spoofed) source.
    let mut connect = second_connect(&mut core1, 1, addr, now);
    let spoofed_from = from([127, 0, 0, 6], 7000);
    let outcome = core0.handle_datagram(now, spoofed_from, &mut connect.clone());
    assert!(
        !matches!(outcome, DatagramOutcome::WrongCore(_)),
        "{outcome:?}"
    );
    assert_eq!(core0.stats().bad_forward_cookies, 1);
    assert_eq!(core0.stats().wrong_core, 0);
    // From its real source it is forwarded (core 1 then admits it).
    assert_eq!(
        core0.handle_datagram(now, addr, &mut connect.clone()),
        DatagramOutcome::WrongCore(1)
    );
    assert!(matches!(
        core1.handle_datagram(now, addr, &mut connect),
        DatagramOutcome::Connection(_)
    ));
}

#[test]
fn the_default_core_capacity_is_near_the_measured_one() {
    let cfg = config(0, Instant::now());
    assert!(cfg.max_connections <= 1_024, "{}", cfg.max_connections);
}
