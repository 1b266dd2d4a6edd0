//! A full handshake transcript as hex test vectors.
//!
//! A client and a one-core server endpoint, joined by a perfect simulated
//! link (no loss, 10 ms each way), with fixed seeds: the simulation seed
//! (from which `Sim::client_config` draws the client's seed), the server's
//! endpoint seed, static secret and cookie secret (`tests/common`). Every
//! datagram is recorded from the first Connect until both sides are
//! established and one reliable message has gone each way and been
//! acknowledged. The test compares each datagram with the blocks
//! `hex vector=handshake-transcript-N` of `docs/PROTOCOL.md` (N = 1, 2, …),
//! and the values an implementer needs to reproduce them (the ephemeral
//! secrets, both X25519 results, the HKDF secret and keys, the cookie key,
//! every sealed packet's plaintext) with the blocks
//! `hex vector=handshake-transcript-NAME`.
//!
//! Those values are computed here from the documented formulas with the
//! primitive crates (x25519 via `KeyPair`, `hkdf`, `hmac`, `ring`), not from
//! the crate's key schedule, and every sealed datagram is opened with them:
//! the transcript checks the specification, not just the code against
//! itself.
//!
//! Everything is deterministic: time is virtual (cookie timestamps count
//! from the simulation's start, which is also the endpoint's epoch), and all
//! randomness comes from seeded ChaCha20 generators.
//!
//! Regenerate the document's blocks (after a deliberate change) with
//! `cargo test -p tos-protocol --test transcript -- --ignored --nocapture`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{LinkConfig, Owned, STATIC_SECRET, Sim};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;
use tos_protocol::Side;
use tos_protocol::connection::TransportConfig;
use tos_protocol::crypto::KeyPair;
use tos_protocol::wire::control::{AcceptedParams, CONNECT_LEN, Handshake, KeyMode};
use tos_protocol::wire::datagram::{AnyFrame, decode_frame};
use tos_protocol::wire::frame::Frames;
use tos_protocol::wire::{Channel, HeaderFlags, PacketHeader};

/// Seed of the simulation (the link and the client's seed).
const SIM_SEED: u64 = 0x7105_2026;
/// One-way latency of the perfect link.
const LATENCY_MS: u64 = 10;
/// The cookie master secret of `tests/common::server_config`.
const COOKIE_SECRET: [u8; 32] = [0x24; 32];
/// The endpoint seed of core 0 in `tests/common::server_config`.
const ENDPOINT_SEED: [u8; 32] = [0; 32];
/// The cookie key rotation period (the default, 5 s).
const COOKIE_ROTATION_MS: u64 = 5_000;
const CLIENT_MESSAGE: &[u8] = b"hello, server";
const SERVER_MESSAGE: &[u8] = b"hello, client";

/// One datagram put on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    /// Virtual time since the start, milliseconds.
    at_ms: u64,
    from_client: bool,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Transcript {
    datagrams: Vec<Recorded>,
    client_seed: [u8; 32],
    client_addr: SocketAddr,
    server_addr: SocketAddr,
}

/// Runs the handshake and the first message each way, recording every
/// datagram.
fn run() -> Transcript {
    let mut sim = Sim::new(
        SIM_SEED,
        LinkConfig::perfect(LATENCY_MS),
        TransportConfig::default(),
    );
    sim.record = Some(Vec::new());
    let cfg = sim.client_config(Arc::new(sim.servers[0].config_transport()));
    let client_seed = cfg.seed;
    sim.add_client(cfg);
    let client_addr = sim.clients[0].addr;
    let server_addr = sim.server_addr;

    // Time stamps: after every step, the datagrams recorded during it were
    // sent at `sim.now`.
    let mut times: Vec<u64> = Vec::new();
    let stamp = |s: &Sim, times: &mut Vec<u64>| {
        let n = s.record.as_ref().map_or(0, Vec::len);
        while times.len() < n {
            times.push((s.now - s.start).as_millis() as u64);
        }
    };

    let established = sim.drive(Duration::from_secs(10), |s| {
        stamp(s, &mut times);
        s.established(0) && s.servers[0].handles().count() == 1 && s.server_established()
    });
    assert!(established, "the handshake did not complete");

    sim.clients[0]
        .conn
        .send(Channel::ReliableOrdered, CLIENT_MESSAGE)
        .unwrap();
    let h = sim.server_handle();
    sim.servers[0]
        .connection_mut(h)
        .unwrap()
        .send(Channel::ReliableOrdered, SERVER_MESSAGE)
        .unwrap();
    let done = sim.drive(Duration::from_secs(2), |s| {
        stamp(s, &mut times);
        let h = s.server_handle();
        let server_idle = s.servers[0]
            .connection(h)
            .is_some_and(|c| c.stats().bytes_in_flight == 0);
        let client_idle = s.clients[0].conn.stats().bytes_in_flight == 0;
        s.clients[0].events.contains(&Owned::Message(
            Channel::ReliableOrdered,
            SERVER_MESSAGE.to_vec(),
        )) && s
            .server_messages()
            .contains(&(Channel::ReliableOrdered, CLIENT_MESSAGE.to_vec()))
            && server_idle
            && client_idle
    });
    assert!(done, "the messages were not delivered and acknowledged");

    let record = sim.record.take().unwrap();
    assert_eq!(record.len(), times.len());
    let datagrams = record
        .into_iter()
        .zip(times)
        .map(|((from, bytes), at_ms)| {
            assert!(from == client_addr || from == server_addr);
            Recorded {
                at_ms,
                from_client: from == client_addr,
                bytes,
            }
        })
        .collect();
    Transcript {
        datagrams,
        client_seed,
        client_addr,
        server_addr,
    }
}

// ------------------------------------------------- the secrets behind it

/// What the client draws from its seed (`Connection::connect`): the
/// ephemeral secret, the client nonce, the probe id of the first Connect,
/// and the seed of the connection's own generator, which then draws the
/// CryptoTest challenge.
struct ClientDraws {
    ephemeral: [u8; 32],
    nonce: [u8; 16],
    probe_id: u32,
    challenge: [u8; 16],
}

fn client_draws(seed: [u8; 32]) -> ClientDraws {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut ephemeral = [0u8; 32];
    rng.fill_bytes(&mut ephemeral);
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let probe_id = rng.next_u32();
    let mut conn_seed = [0u8; 32];
    rng.fill_bytes(&mut conn_seed);
    let mut conn = ChaCha20Rng::from_seed(conn_seed);
    let mut challenge = [0u8; 16];
    conn.fill_bytes(&mut challenge);
    ClientDraws {
        ephemeral,
        nonce,
        probe_id,
        challenge,
    }
}

/// What the server draws (`Endpoint` then `Connection::accept`): the
/// connection id for the cookie, the new connection's seed, and from that
/// the ephemeral secret and the server nonce.
struct ServerDraws {
    connection_id: u32,
    ephemeral: [u8; 32],
    nonce: [u8; 16],
}

fn server_draws() -> ServerDraws {
    let mut rng = ChaCha20Rng::from_seed(ENDPOINT_SEED);
    let connection_id = loop {
        // Core 0: the low byte is 0; ids up to 0xff are never used.
        let id = rng.next_u32() & !0xff;
        if id > 0xff {
            break id;
        }
    };
    let mut conn_seed = [0u8; 32];
    rng.fill_bytes(&mut conn_seed);
    let mut conn = ChaCha20Rng::from_seed(conn_seed);
    let mut ephemeral = [0u8; 32];
    conn.fill_bytes(&mut ephemeral);
    let mut nonce = [0u8; 16];
    conn.fill_bytes(&mut nonce);
    ServerDraws {
        connection_id,
        ephemeral,
        nonce,
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn expand(prk: &[u8], info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::from_prk(prk)
        .unwrap()
        .expand(info, &mut out)
        .unwrap();
    out
}

/// Opens `ciphertext ‖ tag` with the documented nonce (connection id u32 LE
/// ‖ sequence u64 LE), using `ring` directly.
fn open(key: &[u8; 32], connection_id: u32, sequence: u64, aad: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&connection_id.to_le_bytes());
    nonce[4..].copy_from_slice(&sequence.to_le_bytes());
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).unwrap());
    let mut buf = sealed.to_vec();
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        )
        .expect("the documented keys and nonce open the packet")
        .len();
    buf.truncate(n);
    buf
}

fn encode_addr(addr: SocketAddr) -> Vec<u8> {
    match addr {
        SocketAddr::V4(a) => [&[4u8][..], &a.ip().octets(), &a.port().to_le_bytes()].concat(),
        SocketAddr::V6(a) => [&[6u8][..], &a.ip().octets(), &a.port().to_le_bytes()].concat(),
    }
}

/// Every value the document holds, named as in its `hex vector=` blocks,
/// in document order. Checks the structure of the transcript on the way.
fn named_values(t: &Transcript) -> Vec<(String, Vec<u8>)> {
    let d = &t.datagrams;
    let client = client_draws(t.client_seed);
    let server = server_draws();
    let client_eph = KeyPair::from_secret(client.ephemeral);
    let server_eph = KeyPair::from_secret(server.ephemeral);
    let server_static = KeyPair::from_secret(STATIC_SECRET);

    // The four handshake packets.
    let kinds: Vec<_> = d
        .iter()
        .take(4)
        .map(|r| Handshake::decode(&r.bytes).expect("a handshake packet"))
        .collect();
    let (Handshake::Connect(first), Handshake::Cookie(cookie), Handshake::Connect(second)) =
        (kinds[0].1, kinds[1].1, kinds[2].1)
    else {
        panic!("expected Connect, Cookie, Connect; got {kinds:?}");
    };
    let Handshake::Accepted(accepted) = kinds[3].1 else {
        panic!("expected ConnectionAccepted; got {:?}", kinds[3]);
    };
    assert!(d[0].from_client && !d[1].from_client && d[2].from_client && !d[3].from_client);
    // Anti-amplification: every Connect is 1200 bytes, and no reply is
    // larger than the Connect it answers.
    assert_eq!(d[0].bytes.len(), CONNECT_LEN);
    assert_eq!(d[2].bytes.len(), CONNECT_LEN);
    assert!(d[1].bytes.len() <= d[0].bytes.len());
    assert!(d[3].bytes.len() <= d[2].bytes.len());

    // The draws reproduce what went on the wire.
    assert_eq!(first.client_public, client_eph.public());
    assert_eq!(first.client_nonce, client.nonce);
    assert_eq!(first.key_mode, KeyMode::Pinned);
    assert_eq!(kinds[0].0.connection_id, client.probe_id);
    assert_eq!(
        kinds[1].0.connection_id, client.probe_id,
        "the Cookie echoes the probe id"
    );
    assert_eq!(cookie.connection_id, server.connection_id);
    assert_eq!(
        second.cookie,
        Some(cookie),
        "the cookie comes back verbatim"
    );
    assert_eq!(second.client_public, first.client_public);
    assert_eq!(second.client_nonce, first.client_nonce);
    assert_eq!(kinds[2].0.connection_id, cookie.connection_id);
    assert_eq!(kinds[3].0.connection_id, cookie.connection_id);
    assert_eq!(kinds[3].0.sequence, 0, "ConnectionAccepted is s2c packet 0");
    assert_eq!(accepted.server_public, server_eph.public());
    assert_eq!(accepted.server_nonce, server.nonce);
    assert_eq!(
        accepted.server_static, None,
        "a pinned client gets no static key"
    );

    // The cookie MAC, from the documented formula.
    let period = cookie.timestamp_ms / COOKIE_ROTATION_MS;
    let cookie_key = hmac(
        &COOKIE_SECRET,
        &[b"tos cookie period", &period.to_le_bytes()],
    );
    let mac = hmac(
        &cookie_key,
        &[
            &encode_addr(t.client_addr),
            &client.nonce,
            &cookie.timestamp_ms.to_le_bytes(),
            &cookie.connection_id.to_le_bytes(),
        ],
    );
    assert_eq!(cookie.mac, mac, "cookie MAC");

    // The key schedule, from the documented formula.
    let ee = client_eph.agree(&server_eph.public()).unwrap();
    let es = client_eph.agree(&server_static.public()).unwrap();
    assert_eq!(ee, server_eph.agree(&client_eph.public()).unwrap());
    assert_eq!(es, server_static.agree(&client_eph.public()).unwrap());
    let salt = [&client.nonce[..], &server.nonce[..]].concat();
    let ikm = [&ee[..], &es[..]].concat();
    let (prk, _) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
    let c2s = expand(&prk, b"tos v1 c2s");
    let s2c = expand(&prk, b"tos v1 s2c");
    let chain = expand(&prk, b"tos v1 chain");

    // The sealed ticket of both Connects, from the documented formula.
    let (ticket_prk, _) = Hkdf::<Sha256>::extract(Some(&client.nonce), &es);
    let ticket_key = expand(&ticket_prk, b"tos v1 ticket");
    let mut ticket_aad = Vec::new();
    ticket_aad.extend_from_slice(&first.version.to_le_bytes());
    ticket_aad.push(first.key_mode as u8);
    ticket_aad.extend_from_slice(&first.client_public);
    ticket_aad.extend_from_slice(&first.client_nonce);
    let ticket = open(&ticket_key, 0, 0, &ticket_aad, first.ticket);
    assert_eq!(ticket, b"player-ticket", "the ticket of tests/common");
    assert_eq!(second.ticket, first.ticket, "the same sealed bytes again");

    // In document order: the fixed inputs, then every datagram, with the
    // values derived from it after it.
    let mut out: Vec<(String, Vec<u8>)> = vec![
        (
            "handshake-transcript-static-secret".into(),
            STATIC_SECRET.to_vec(),
        ),
        (
            "handshake-transcript-static-public".into(),
            server_static.public().to_vec(),
        ),
        (
            "handshake-transcript-client-secret".into(),
            client.ephemeral.to_vec(),
        ),
        (
            "handshake-transcript-server-secret".into(),
            server.ephemeral.to_vec(),
        ),
    ];
    let keys: Vec<(String, Vec<u8>)> = vec![
        ("handshake-transcript-ee".into(), ee.to_vec()),
        ("handshake-transcript-es".into(), es.to_vec()),
        ("handshake-transcript-secret".into(), prk.to_vec()),
        ("handshake-transcript-c2s".into(), c2s.to_vec()),
        ("handshake-transcript-s2c".into(), s2c.to_vec()),
        ("handshake-transcript-chain".into(), chain.to_vec()),
    ];

    // ConnectionAccepted's sealed parameters: AAD = everything before them.
    let acc = &d[3].bytes;
    let sealed_at = acc.len() - 4 - 32;
    let params = open(
        &s2c,
        cookie.connection_id,
        0,
        &acc[..sealed_at],
        &acc[sealed_at..acc.len() - 4],
    );
    let decoded = AcceptedParams::decode(&params).unwrap();
    assert_eq!(decoded.mtu, 1200);

    let mut client_established_seen = false;
    for (i, r) in d.iter().enumerate() {
        let n = i + 1;
        out.push((format!("handshake-transcript-{n}"), r.bytes.clone()));
        if i == 0 {
            out.push((
                "handshake-transcript-ticket-key".into(),
                ticket_key.to_vec(),
            ));
            out.push(("handshake-transcript-ticket".into(), ticket.clone()));
        }
        if i == 1 {
            out.push((
                "handshake-transcript-cookie-key".into(),
                cookie_key.to_vec(),
            ));
        }
        if i == 3 {
            out.extend(keys.iter().cloned());
            out.push((
                format!("handshake-transcript-{n}-plaintext"),
                params.clone(),
            ));
        }
        if i < 4 {
            continue;
        }
        // A sealed packet: open it with the documented key and nonce.
        let header = PacketHeader::parse_bytes(&r.bytes).unwrap();
        assert!(
            header
                .flags
                .contains(HeaderFlags::ENCRYPTED | HeaderFlags::AEAD_CHACHA20_POLY1305)
        );
        assert!(
            !header.flags.contains(HeaderFlags::REKEY),
            "generation 0: phase bit clear"
        );
        assert!(!header.flags.contains(HeaderFlags::COMPRESSED));
        assert_eq!(header.connection_id, cookie.connection_id);
        let key = if r.from_client { &c2s } else { &s2c };
        let plain = open(
            key,
            header.connection_id,
            header.sequence,
            &r.bytes[..14],
            &r.bytes[14..],
        );
        let sender = if r.from_client {
            Side::Client
        } else {
            Side::Server
        };
        for f in Frames::new(&plain, 4096) {
            let f = decode_frame(&f.unwrap(), sender).unwrap();
            if let AnyFrame::CryptoTest(c) = f {
                assert!(r.from_client);
                assert_eq!(c.challenge, client.challenge);
            }
            if let AnyFrame::CryptoTestAck(c) = f {
                assert!(!r.from_client);
                assert_eq!(c.challenge, client.challenge);
                client_established_seen = true;
            }
        }
        out.push((format!("handshake-transcript-{n}-plaintext"), plain));
    }
    assert!(client_established_seen);
    // Packet numbers: the client's sealed packets count from 0, the
    // server's from 1 (its packet 0 sealed ConnectionAccepted).
    let mut next = [0u64, 1u64];
    for r in &d[4..] {
        let header = PacketHeader::parse_bytes(&r.bytes).unwrap();
        let side = usize::from(!r.from_client);
        assert_eq!(header.sequence, next[side]);
        next[side] += 1;
    }
    out
}

// ------------------------------------------------------- document parsing

use common::spec::{doc_vectors, hex};

// ------------------------------------------------------------------ tests

#[test]
fn the_transcript_is_deterministic() {
    let a = run();
    let b = run();
    assert_eq!(a, b);
}

#[test]
fn transcript_matches_the_specification() {
    let t = run();
    let code = named_values(&t);
    let doc: Vec<_> = doc_vectors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("handshake-transcript"))
        .collect();
    for (name, bytes) in &code {
        let Some((_, doc_bytes)) = doc.iter().find(|(n, _)| n == name) else {
            panic!(
                "docs/PROTOCOL.md has no vector `{name}`; the code gives:\n{}\n\
                 (print all blocks: cargo test -p tos-protocol --test transcript -- --ignored --nocapture)",
                hex(bytes)
            );
        };
        assert_eq!(
            doc_bytes,
            bytes,
            "vector `{name}` differs; the code gives:\n{}\n\
             (print all blocks: cargo test -p tos-protocol --test transcript -- --ignored --nocapture)",
            hex(bytes)
        );
    }
    for (name, _) in &doc {
        assert!(
            code.iter().any(|(n, _)| n == name),
            "docs/PROTOCOL.md has vector `{name}` that the transcript does not produce"
        );
    }
    // The datagram blocks appear in order, numbered 1, 2, ….
    let numbered: Vec<usize> = doc
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("handshake-transcript-")?.parse().ok())
        .collect();
    assert_eq!(numbered, (1..=t.datagrams.len()).collect::<Vec<_>>());
}

// ----------------------------------------------------------------- printer

/// One annotated run of bytes.
struct Field {
    bytes: Vec<u8>,
    comment: String,
}

fn field(bytes: &[u8], comment: impl Into<String>) -> Field {
    Field {
        bytes: bytes.to_vec(),
        comment: comment.into(),
    }
}

/// Formats bytes as the document writes them: runs of 8 or more as `XX*N`,
/// at most 16 tokens a line; the comment on the first line.
fn print_fields(name: &str, preface: &[String], fields: &[Field]) {
    println!("```hex vector={name}");
    for p in preface {
        println!("# {p}");
    }
    for f in fields {
        let mut tokens = Vec::new();
        let b = &f.bytes;
        let mut i = 0;
        while i < b.len() {
            let mut run = 1;
            while i + run < b.len() && b[i + run] == b[i] {
                run += 1;
            }
            if run >= 8 {
                tokens.push(format!("{:02x}*{run}", b[i]));
                i += run;
            } else {
                tokens.push(format!("{:02x}", b[i]));
                i += 1;
            }
        }
        let lines: Vec<String> = tokens.chunks(16).map(|c| c.join(" ")).collect();
        for (k, line) in lines.iter().enumerate() {
            if k == 0 && !f.comment.is_empty() {
                println!("{line:<48}  # {}", f.comment);
            } else {
                println!("{line}");
            }
        }
    }
    println!("```");
}

fn header_comment(h: &PacketHeader) -> String {
    let mut flags = Vec::new();
    for (bit, name) in [
        (HeaderFlags::ENCRYPTED, "Encrypted"),
        (HeaderFlags::AEAD_CHACHA20_POLY1305, "AEAD"),
        (HeaderFlags::REKEY, "KeyPhase"),
        (HeaderFlags::FRAGMENT, "Fragment"),
        (HeaderFlags::COMPRESSED, "Compressed"),
        (HeaderFlags::ACKNOWLEDGMENT, "AckOnly"),
        (HeaderFlags::RELIABLE_HANDSHAKE, "Handshake"),
    ] {
        if h.flags.contains(bit) {
            flags.push(name);
        }
    }
    format!(
        "header: id {:#010x}, channel {}, flags {:#04x} {}, seq {}",
        h.connection_id,
        h.channel as u8,
        h.flags.bits(),
        flags.join("|"),
        h.sequence
    )
}

fn handshake_fields(bytes: &[u8]) -> Vec<Field> {
    let (header, hs) = Handshake::decode(bytes).unwrap();
    let mut f = vec![field(&bytes[..14], header_comment(&header))];
    let crc_at = bytes.len() - 4;
    match hs {
        Handshake::Connect(c) => {
            f.push(field(&bytes[14..15], "type 0 = Connect"));
            f.push(field(&bytes[15..17], format!("version {}", c.version)));
            f.push(field(&bytes[17..18], "key mode 0: pinned"));
            f.push(field(&bytes[18..50], "client ephemeral public key"));
            f.push(field(&bytes[50..66], "client nonce"));
            let mut at = 67;
            match c.cookie {
                None => f.push(field(&bytes[66..67], "has cookie: no")),
                Some(k) => {
                    f.push(field(&bytes[66..67], "has cookie: yes"));
                    f.push(field(
                        &bytes[67..71],
                        format!("  cookie: connection id {:#010x}", k.connection_id),
                    ));
                    f.push(field(
                        &bytes[71..79],
                        format!("  cookie: timestamp {} ms", k.timestamp_ms),
                    ));
                    f.push(field(&bytes[79..111], "  cookie: HMAC-SHA256"));
                    at = 111;
                }
            }
            let tlen = c.ticket.len();
            assert!(tlen < 128, "one-byte length");
            f.push(field(
                &bytes[at..at + 1],
                format!("auth ticket: length {tlen}"),
            ));
            f.push(field(
                &bytes[at + 1..at + 1 + tlen - 16],
                "  sealed ticket: ciphertext (section 12.1)",
            ));
            f.push(field(
                &bytes[at + 1 + tlen - 16..at + 1 + tlen],
                "  sealed ticket: Poly1305 tag",
            ));
            at += 1 + tlen;
            f.push(field(&bytes[at..crc_at], "zero padding to offset 1196"));
        }
        Handshake::Cookie(k) => {
            f.push(field(&bytes[14..15], "type 1 = Cookie"));
            f.push(field(
                &bytes[15..19],
                format!("connection id {:#010x} assigned", k.connection_id),
            ));
            f.push(field(
                &bytes[19..27],
                format!("timestamp {} ms since the server's epoch", k.timestamp_ms),
            ));
            f.push(field(&bytes[27..59], "MAC (section 11.3)"));
        }
        Handshake::Accepted(_) => {
            f.push(field(&bytes[14..15], "type 2 = ConnectionAccepted"));
            f.push(field(&bytes[15..47], "server ephemeral public key"));
            f.push(field(&bytes[47..63], "server nonce"));
            f.push(field(
                &bytes[63..79],
                "sealed parameters (s2c key, packet 0)",
            ));
            f.push(field(&bytes[79..95], "tag"));
        }
        Handshake::Denied(d) => {
            f.push(field(&bytes[14..15], "type 3 = ConnectionDenied"));
            f.push(field(&bytes[15..16], format!("reason {:?}", d.reason)));
        }
    }
    f.push(field(&bytes[crc_at..], "CRC32C"));
    f
}

fn frame_comment(frame: &AnyFrame<'_>) -> String {
    match frame {
        AnyFrame::Ack(a) => format!(
            "Ack: largest {}, delay {} µs, bits {:#x}",
            a.largest, a.delay_us, a.bits
        ),
        AnyFrame::CryptoTest(_) => "CryptoTest: 16-byte challenge".into(),
        AnyFrame::CryptoTestAck(_) => "CryptoTestAck: the challenge echoed".into(),
        AnyFrame::ReliableHandshake(r) => format!(
            "ReliableHandshake: window {}, max message {}",
            r.receive_window, r.max_message_bytes
        ),
        AnyFrame::Message(m) => format!(
            "Message {:?}, id {}: {:?}",
            m.channel,
            m.message_id,
            String::from_utf8_lossy(m.data)
        ),
        other => format!("{other:?}"),
    }
}

fn plaintext_fields(plain: &[u8], sender: Side) -> Vec<Field> {
    let mut out = Vec::new();
    let mut at = 0;
    for f in Frames::new(plain, 4096) {
        let f = f.unwrap();
        let decoded = decode_frame(&f, sender).unwrap();
        // Type byte and the length varint, then the body.
        let head_len = 1 + tos_protocol::wire::buf::varint_len(f.body.len() as u64);
        out.push(field(
            &plain[at..at + head_len + f.body.len()],
            frame_comment(&decoded),
        ));
        at += head_len + f.body.len();
    }
    assert_eq!(at, plain.len());
    out
}

/// Prints every block for docs/PROTOCOL.md:
/// `cargo test -p tos-protocol --test transcript -- --ignored --nocapture`.
#[test]
#[ignore = "prints the transcript blocks for docs/PROTOCOL.md"]
fn print_transcript() {
    let t = run();
    let values = named_values(&t);
    for (name, bytes) in &values {
        let suffix = name.strip_prefix("handshake-transcript-").unwrap();
        if let Ok(n) = suffix.parse::<usize>() {
            let r = &t.datagrams[n - 1];
            let dir = if r.from_client {
                "client → server"
            } else {
                "server → client"
            };
            let preface = vec![format!(
                "datagram {n}: t = {} ms, {dir}, {} bytes",
                r.at_ms,
                bytes.len()
            )];
            let fields = if n <= 4 {
                handshake_fields(bytes)
            } else {
                let h = PacketHeader::parse_bytes(bytes).unwrap();
                vec![
                    field(&bytes[..14], header_comment(&h)),
                    field(&bytes[14..bytes.len() - 16], "ciphertext"),
                    field(&bytes[bytes.len() - 16..], "Poly1305 tag"),
                ]
            };
            print_fields(name, &preface, &fields);
        } else if let Some(n) = suffix.strip_suffix("-plaintext") {
            let n: usize = n.parse().unwrap();
            let r = &t.datagrams[n - 1];
            if n == 4 {
                let p = AcceptedParams::decode(bytes).unwrap();
                print_fields(
                    name,
                    &[format!("datagram {n} opened: the parameters")],
                    &[
                        field(
                            &bytes[0..4],
                            format!("heartbeat interval {} ms", p.heartbeat_interval_ms),
                        ),
                        field(
                            &bytes[4..8],
                            format!("heartbeat timeout {} ms", p.heartbeat_timeout_ms),
                        ),
                        field(&bytes[8..10], format!("tick rate {} Hz", p.tick_hz)),
                        field(&bytes[10..12], format!("MTU {}", p.mtu)),
                        field(
                            &bytes[12..16],
                            format!("max message {} bytes", p.max_message_bytes),
                        ),
                    ],
                );
            } else {
                let sender = if r.from_client {
                    Side::Client
                } else {
                    Side::Server
                };
                print_fields(
                    name,
                    &[format!("datagram {n} opened: the frames")],
                    &plaintext_fields(bytes, sender),
                );
            }
        } else {
            let what = match suffix {
                "static-secret" => "server static X25519 secret (STATIC_SECRET of tests/common)",
                "static-public" => {
                    "server static public key X25519(static secret, 9): the pinned key"
                }
                "client-secret" => "client ephemeral X25519 secret",
                "server-secret" => "server ephemeral X25519 secret",
                "cookie-key" => {
                    "period key: HMAC-SHA256(master 24*32, \"tos cookie period\" ‖ 0u64)"
                }
                "ticket-key" => {
                    "ticket key = HKDF-SHA256(salt = client nonce, ikm = es, \"tos v1 ticket\", 32) (es below)"
                }
                "ticket" => {
                    "datagram 1's ticket opened (and datagram 3's: the same bytes): \"player-ticket\""
                }
                "ee" => "ee = X25519(client ephemeral secret, server ephemeral public)",
                "es" => "es = X25519(client ephemeral secret, server static public)",
                "secret" => "HKDF-Extract(salt = client nonce ‖ server nonce, ikm = ee ‖ es)",
                "c2s" => "HKDF-Expand(secret, \"tos v1 c2s\", 32): client → server key",
                "s2c" => "HKDF-Expand(secret, \"tos v1 s2c\", 32): server → client key",
                "chain" => "HKDF-Expand(secret, \"tos v1 chain\", 32): input to the first rekey",
                other => other,
            };
            print_fields(name, &[what.to_string()], &[field(bytes, "")]);
        }
        println!();
    }
}
