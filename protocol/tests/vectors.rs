//! Fixed byte vectors for every packet, frame and message, checked both
//! ways (encode gives the bytes, decode gives the value back) and checked
//! against the hex blocks of `docs/PROTOCOL.md`, so the specification
//! cannot drift from the code.
//!
//! In the document a vector is a fenced block opened with
//! ```` ```hex vector=NAME ````; `XX*N` stands for N copies of byte XX.

use tos_protocol::Side;

mod common;

use common::spec::{doc_vectors, hex};
use tos_protocol::delta::{self, DeltaRecord, EntityStatus, QuantizedEntity, RecordKind};
use tos_protocol::quant::{QuantizedPosition, QuantizedRotation};
use tos_protocol::wire::control::*;
use tos_protocol::wire::datagram::{AnyFrame, decode_frame};
use tos_protocol::wire::frame::{FrameBody, Frames};
use tos_protocol::wire::game::*;
use tos_protocol::wire::{Channel, HeaderFlags, PacketHeader, Reader, Writer};

fn write(f: impl FnOnce(&mut Writer<'_>)) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let mut w = Writer::new(&mut buf);
    f(&mut w);
    let n = w.position();
    buf.truncate(n);
    buf
}

fn frame<'a, B: FrameBody<'a>>(body: &B) -> Vec<u8> {
    write(|w| body.encode_frame(w).unwrap())
}

fn handshake(h: &Handshake<'_>, id: u32, seq: u64) -> Vec<u8> {
    let mut buf = vec![0u8; 1500];
    let n = h.encode(id, seq, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

fn entity() -> QuantizedEntity {
    QuantizedEntity {
        position: QuantizedPosition {
            quadrant: 0x0102,
            offset: [-32768, 0, 256],
        },
        rotation: QuantizedRotation {
            pitch: 0,
            yaw: 0x4000,
            roll: 0,
        },
        anim: 3,
        status: EntityStatus {
            state: 0x05,
            buffs: 0x08,
            hp: 0xff,
            mp: 0x80,
        },
        velocity: [600, -1, 0],
    }
}

const COOKIE: Cookie = Cookie {
    connection_id: 0x1122_3301,
    timestamp_ms: 10_000,
    mac: [0xcc; 32],
};

/// Every named vector, as the code encodes it.
pub fn vectors() -> Vec<(&'static str, Vec<u8>)> {
    let claim = MovementClaim {
        input_seq: 42,
        position: [1.5, -2.0, 100.0],
        velocity: [600.0, 0.0, 0.0],
        yaw: 90.0,
        anim: 1,
    };
    let qclaim = QuantizedClaim {
        input_seq: 42,
        position: QuantizedPosition {
            quadrant: 136,
            offset: [10, -20, 30],
        },
        velocity: [600, 0, 0],
        yaw: 0x4000,
        anim: 1,
    };
    let records = write(|w| {
        delta::encode_create(w, 5, 1, &entity()).unwrap();
        let mut moved = entity();
        moved.position.offset[0] += 10;
        delta::encode_update(w, 6, 6, &entity(), &moved).unwrap();
        delta::encode_remove(w, 7).unwrap();
    });
    let full = FullEntityState {
        position: [1.0, 2.0, 3.0],
        rotation: [0.0, 90.0, 0.0],
        velocity: [0.0; 3],
        anim: 1,
        state: 1,
        buffs: 0,
        hp: 100.0,
        mp: 50.0,
    };
    let rekey = RekeyRequest {
        phase: 1,
        public: [0x11; 32],
        nonce: [0x22; 16],
    };
    let rekey_resp = RekeyResponse {
        phase: 1,
        public: [0x33; 32],
        nonce: [0x44; 16],
    };
    let server = |m: ServerMessage<'_>| write(|w| m.encode(w).unwrap());
    let client = |m: ClientMessage<'_>| write(|w| m.encode(w).unwrap());
    vec![
        (
            "header",
            PacketHeader {
                connection_id: 0x0403_0201,
                channel: Channel::ReliableOrdered,
                flags: HeaderFlags::ENCRYPTED | HeaderFlags::AEAD_CHACHA20_POLY1305,
                sequence: 0x0102_0304_0506_0708,
            }
            .to_bytes()
            .to_vec(),
        ),
        (
            "connect",
            handshake(
                &Handshake::Connect(Connect {
                    version: PROTOCOL_VERSION,
                    key_mode: KeyMode::Pinned,
                    client_public: [0xaa; 32],
                    client_nonce: [0xbb; 16],
                    cookie: None,
                    ticket: b"ticket",
                }),
                0x0000_0007,
                0,
            ),
        ),
        (
            "connect-with-cookie",
            handshake(
                &Handshake::Connect(Connect {
                    version: PROTOCOL_VERSION,
                    key_mode: KeyMode::Pinned,
                    client_public: [0xaa; 32],
                    client_nonce: [0xbb; 16],
                    cookie: Some(COOKIE),
                    ticket: b"ticket",
                }),
                COOKIE.connection_id,
                1,
            ),
        ),
        (
            "cookie",
            handshake(&Handshake::Cookie(COOKIE), 0x0000_0007, 0),
        ),
        (
            "connection-accepted",
            handshake(
                &Handshake::Accepted(ConnectionAccepted {
                    server_public: [0xdd; 32],
                    server_nonce: [0xee; 16],
                    server_static: None,
                    sealed: &[0x5a; ACCEPTED_SEALED_LEN],
                }),
                COOKIE.connection_id,
                0,
            ),
        ),
        (
            "connection-accepted-unpinned",
            handshake(
                &Handshake::Accepted(ConnectionAccepted {
                    server_public: [0xdd; 32],
                    server_nonce: [0xee; 16],
                    server_static: Some([0x77; 32]),
                    sealed: &[0x5a; ACCEPTED_SEALED_LEN],
                }),
                COOKIE.connection_id,
                0,
            ),
        ),
        (
            "connection-denied",
            handshake(
                &Handshake::Denied(ConnectionDenied {
                    reason: DenyReason::Full,
                }),
                0x0000_0007,
                0,
            ),
        ),
        ("ping", frame(&Ping { id: 7 })),
        ("pong", frame(&Pong { id: 7 })),
        (
            "disconnect",
            frame(&Disconnect {
                reason: DisconnectReason::Timeout,
            }),
        ),
        (
            "ack",
            frame(&Ack {
                largest: 300,
                delay_us: 1000,
                bits: 0x8000_0000_0000_0005,
            }),
        ),
        (
            "fragment",
            frame(&Fragment {
                channel: Channel::ReliableOrdered,
                message_id: 9,
                fragment_id: 2,
                index: 1,
                total_size: 2000,
                data: &[1, 2, 3],
            }),
        ),
        (
            "reliable-handshake",
            frame(&ReliableHandshake {
                receive_window: 256,
                max_message_bytes: 262_144,
            }),
        ),
        (
            "crypto-test",
            frame(&CryptoTest {
                challenge: [0x0f; 16],
            }),
        ),
        (
            "crypto-test-ack",
            frame(&CryptoTestAck {
                challenge: [0x0f; 16],
            }),
        ),
        (
            "integrity-challenge",
            frame(&IntegrityChallenge {
                table_version: 1,
                index: 513,
            }),
        ),
        (
            "integrity-answer",
            frame(&IntegrityAnswer {
                index: 513,
                key: [0x99; 16],
            }),
        ),
        ("rekey-request", frame(&rekey)),
        ("rekey-response", frame(&rekey_resp)),
        (
            "new-connection-id",
            frame(&NewConnectionId {
                connection_id: 0x0abc_de01,
            }),
        ),
        (
            "message-unreliable",
            write(|w| {
                Message {
                    channel: Channel::Unreliable,
                    message_id: 0,
                    data: b"hi",
                }
                .encode_frame(w)
                .unwrap()
            }),
        ),
        (
            "message-reliable-ordered",
            write(|w| {
                Message {
                    channel: Channel::ReliableOrdered,
                    message_id: 200,
                    data: b"hi",
                }
                .encode_frame(w)
                .unwrap()
            }),
        ),
        (
            "message-reliable-unordered",
            write(|w| {
                Message {
                    channel: Channel::ReliableUnordered,
                    message_id: 1,
                    data: b"hi",
                }
                .encode_frame(w)
                .unwrap()
            }),
        ),
        (
            "server-benchmark",
            server(ServerMessage::Benchmark {
                id: 1,
                payload: b"echo",
            }),
        ),
        (
            "server-create-entity",
            server(ServerMessage::CreateEntity {
                entity_id: 5,
                entity_type: 1,
                state: entity(),
            }),
        ),
        (
            "server-update-entity",
            server(ServerMessage::UpdateEntity {
                entity_id: 5,
                state: full,
            }),
        ),
        (
            "server-remove-entity",
            server(ServerMessage::RemoveEntity { entity_id: 300 }),
        ),
        (
            "server-update-entity-quantized",
            server(ServerMessage::UpdateEntityQuantized {
                entity_id: 5,
                state: entity(),
            }),
        ),
        (
            "server-rekey-request",
            server(ServerMessage::RekeyRequest(rekey)),
        ),
        (
            "server-delta-sync",
            server(ServerMessage::DeltaSync(DeltaSync {
                tick: 1000,
                baseline_tick: 994,
                input_ack: 42,
                record_count: 3,
                records: &records,
            })),
        ),
        (
            "server-world-entered",
            server(ServerMessage::WorldEntered {
                entity_id: 5,
                server_tick: 1000,
            }),
        ),
        (
            "server-correction",
            server(ServerMessage::Correction {
                input_seq: 42,
                position: [1.0, 2.0, 3.0],
                velocity: [0.0; 3],
            }),
        ),
        (
            "server-action-result",
            server(ServerMessage::ActionResult {
                input_seq: 43,
                result: 0,
            }),
        ),
        (
            "client-sync-entity",
            client(ClientMessage::SyncEntity(claim)),
        ),
        (
            "client-sync-entity-quantized",
            client(ClientMessage::SyncEntityQuantized(qclaim)),
        ),
        ("client-pong", client(ClientMessage::Pong(Pong { id: 7 }))),
        (
            "client-enter-to-world",
            client(ClientMessage::EnterToWorld {
                character_id: 77,
                name: "Ayla",
            }),
        ),
        (
            "client-rekey-response",
            client(ClientMessage::RekeyResponse(rekey_resp)),
        ),
        (
            "client-action",
            client(ClientMessage::Action {
                input_seq: 43,
                action_id: 2,
                target: 5,
            }),
        ),
        ("delta-records", records),
    ]
}

#[test]
fn vectors_match_the_specification() {
    let code = vectors();
    let doc = doc_vectors();
    for (name, bytes) in &code {
        let found = doc.iter().find(|(n, _)| n == name);
        let Some((_, doc_bytes)) = found else {
            panic!(
                "docs/PROTOCOL.md has no vector `{name}`; the code gives:\n{}",
                hex(bytes)
            );
        };
        assert_eq!(
            doc_bytes,
            bytes,
            "vector `{name}` differs; the code gives:\n{}",
            hex(bytes)
        );
    }
    for (name, _) in &doc {
        assert!(
            code.iter().any(|(n, _)| n == name) || name.starts_with("handshake-transcript"),
            "docs/PROTOCOL.md has vector `{name}` that no test checks"
        );
    }
}

#[test]
fn vectors_decode_back() {
    for (name, bytes) in vectors() {
        match name {
            "header" => {
                PacketHeader::parse_bytes(&bytes).unwrap();
            }
            n if n.starts_with("connect")
                || n.starts_with("cookie")
                || n.starts_with("connection-") =>
            {
                let (_, hs) = Handshake::decode(&bytes).unwrap();
                let mut again = vec![0u8; 1500];
                let header = PacketHeader::parse_bytes(&bytes).unwrap();
                let len = hs
                    .encode(header.connection_id, header.sequence, &mut again)
                    .unwrap();
                assert_eq!(&again[..len], &bytes[..], "{name}");
            }
            n if n.starts_with("server-") => {
                let m = ServerMessage::decode(&bytes).unwrap();
                assert_eq!(write(|w| m.encode(w).unwrap()), bytes, "{name}");
            }
            n if n.starts_with("client-") => {
                let m = ClientMessage::decode(&bytes).unwrap();
                assert_eq!(write(|w| m.encode(w).unwrap()), bytes, "{name}");
            }
            "delta-records" => {
                let mut r = Reader::new(&bytes);
                let create = DeltaRecord::decode(&mut r).unwrap();
                assert_eq!(create.kind, RecordKind::Create { entity_type: 1 });
                assert_eq!(create.apply(&QuantizedEntity::default()).unwrap(), entity());
                let update = DeltaRecord::decode(&mut r).unwrap();
                let mut moved = entity();
                moved.position.offset[0] += 10;
                assert_eq!(update.apply(&entity()).unwrap(), moved);
                assert_eq!(
                    DeltaRecord::decode(&mut r).unwrap().kind,
                    RecordKind::Remove
                );
                assert!(r.is_empty());
            }
            _ => {
                // A frame: decode it (as sent by either side) and re-encode.
                let frames: Vec<_> = Frames::new(&bytes, 4096).collect();
                assert_eq!(frames.len(), 1, "{name}");
                let f = frames[0].unwrap();
                let sender = if name == "integrity-answer" {
                    Side::Client
                } else {
                    Side::Server
                };
                let decoded = decode_frame(&f, sender).unwrap();
                assert!(!matches!(decoded, AnyFrame::Unknown(_)), "{name}");
            }
        }
    }
}

/// Prints every vector in the document's notation:
/// `cargo test -p tos-protocol --test vectors -- --ignored --nocapture`.
#[test]
#[ignore = "prints the vectors for docs/PROTOCOL.md"]
fn print_vectors() {
    for (name, bytes) in vectors() {
        println!("```hex vector={name}");
        let mut i = 0;
        let mut line = Vec::new();
        while i < bytes.len() {
            let mut run = 1;
            while i + run < bytes.len() && bytes[i + run] == bytes[i] {
                run += 1;
            }
            if run >= 8 {
                line.push(format!("{:02x}*{run}", bytes[i]));
                i += run;
            } else {
                line.push(format!("{:02x}", bytes[i]));
                i += 1;
            }
            if line.len() == 16 {
                println!("{}", line.join(" "));
                line.clear();
            }
        }
        if !line.is_empty() {
            println!("{}", line.join(" "));
        }
        println!("```");
    }
}
