//! Fixed byte vectors for every packet, frame and message, checked both
//! ways (encode gives the bytes, decode gives the value back) and checked
//! against the hex blocks of `docs/PROTOCOL.md`, so the specification
//! cannot drift from the code.
//!
//! In the document a vector is a fenced block opened with
//! ```` ```hex vector=NAME ````; `XX*N` stands for N copies of byte XX.

use tos_protocol::Side;
use tos_protocol::crypto::{self, KeyPair};

mod common;

use common::spec::{doc_vectors, hex};
use tos_protocol::delta::{self, DeltaRecord, EntityStatus, QuantizedEntity, RecordKind};
use tos_protocol::quant::{QuantizedPosition, QuantizedRotation, Quantizer};
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

/// The characters of the `server-character-list` vector.
fn characters() -> [CharacterSummary<'static>; 2] {
    [
        CharacterSummary {
            character_id: 77,
            name: "Ayla",
            template: 3,
            level: 12,
            faction: 1,
            deleted_at: 0,
            position: [1.5, -2.0, 100.0],
        },
        CharacterSummary {
            character_id: 78,
            name: "Bo",
            template: 1,
            level: 1,
            faction: 2,
            deleted_at: 1_800_000_000,
            position: [0.0; 3],
        },
    ]
}

/// The sealed-ticket vector (PROTOCOL.md section 12.1): fixed secrets.
const TICKET_SERVER_SECRET: [u8; 32] = [0x5e; 32];
const TICKET_CLIENT_SECRET: [u8; 32] = [0xce; 32];
const TICKET_CLIENT_NONCE: [u8; 16] = [0xbb; 16];
const TICKET: &[u8] = b"ticket";

/// The sealed-ticket vector's values, computed from the documented formula
/// with the primitive crates (not with `tos_protocol::crypto`'s ticket
/// functions, which `ticket_functions_match_the_vector` checks).
struct TicketVector {
    server_public: [u8; 32],
    client_public: [u8; 32],
    es: [u8; 32],
    key: [u8; 32],
    aad: Vec<u8>,
    sealed: Vec<u8>,
}

fn ticket_vector() -> TicketVector {
    use hkdf::Hkdf;
    use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let server = KeyPair::from_secret(TICKET_SERVER_SECRET);
    let client = KeyPair::from_secret(TICKET_CLIENT_SECRET);
    let es = client.agree(&server.public()).unwrap();
    assert_eq!(es, server.agree(&client.public()).unwrap());
    let mut key = [0u8; 32];
    Hkdf::<sha2::Sha256>::new(Some(&TICKET_CLIENT_NONCE), &es)
        .expand(b"tos v1 ticket", &mut key)
        .unwrap();
    let mut aad = Vec::new();
    aad.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    aad.push(KeyMode::Pinned as u8);
    aad.extend_from_slice(&client.public());
    aad.extend_from_slice(&TICKET_CLIENT_NONCE);
    let sealer = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).unwrap());
    let mut sealed = TICKET.to_vec();
    sealer
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(&aad),
            &mut sealed,
        )
        .unwrap();
    TicketVector {
        server_public: server.public(),
        client_public: client.public(),
        es,
        key,
        aad,
        sealed,
    }
}

/// The `server-inventory` vector: a potion stack, a sword in the bag, and
/// a worn sword and chest armour.
fn inventory() -> Vec<u8> {
    let items = [
        InventoryItem {
            slot: 0,
            template: 100,
            count: 5,
        },
        InventoryItem {
            slot: 3,
            template: 1,
            count: 1,
        },
    ];
    let equipped = [
        EquippedItem {
            slot: EquipSlot::Weapon,
            template: 2,
        },
        EquippedItem {
            slot: EquipSlot::Chest,
            template: 20,
        },
    ];
    write(|w| encode_inventory(w, 40, 1250, 50_000, &items, &equipped).unwrap())
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
    // A payload worth compressing (section 9): one unreliable message frame
    // carrying a DeltaSync that creates 24 similar monsters.
    let lz4_records = write(|w| {
        for k in 0..24u32 {
            let mut e = entity();
            e.position.offset[0] = (k * 100) as i16;
            delta::encode_create(w, 100 + k, 1, &e).unwrap();
        }
    });
    let lz4_message = write(|w| {
        ServerMessage::DeltaSync(DeltaSync {
            tick: 1000,
            baseline_tick: 990,
            input_ack: 42,
            record_count: 24,
            records: &lz4_records,
        })
        .encode(w)
        .unwrap()
    });
    let lz4_payload = write(|w| {
        w.u8(16).unwrap();
        w.varint(lz4_message.len() as u64).unwrap();
        w.bytes(&lz4_message).unwrap();
    });
    let lz4_compressed = {
        let mut out = vec![0u8; 2048];
        let n = tos_protocol::compress::compress_into(&lz4_payload, &mut out).unwrap();
        out.truncate(n);
        out
    };
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
    let tv = ticket_vector();
    let character_list = write(|w| encode_character_list(w, 5, &characters()).unwrap());
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
                    client_public: tv.client_public,
                    client_nonce: TICKET_CLIENT_NONCE,
                    cookie: None,
                    ticket: &tv.sealed,
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
                    client_public: tv.client_public,
                    client_nonce: TICKET_CLIENT_NONCE,
                    cookie: Some(COOKIE),
                    ticket: &tv.sealed,
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
                character_id: 77,
                position: [1.5, -2.0, 100.0],
                yaw: 90.0,
                world: WorldParams::from_quantizer(&Quantizer::seed_default(), 1.0, 700.0),
            }),
        ),
        (
            "server-authenticated",
            server(ServerMessage::Authenticated {
                account_id: 1001,
                ticket: &[0x7e; 8],
                expires_at: 1_800_000_000,
            }),
        ),
        ("server-character-list", character_list.clone()),
        (
            "server-character-list-empty",
            write(|w| encode_character_list(w, 5, &[]).unwrap()),
        ),
        (
            "server-character-done",
            server(ServerMessage::CharacterDone {
                request: client_type::CHARACTER_CREATE,
                character_id: 78,
            }),
        ),
        (
            "server-refused",
            server(ServerMessage::Refused {
                request: client_type::CHARACTER_CREATE,
                reason: RefusalReason::NameTaken,
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
        (
            "client-register",
            client(ClientMessage::Register {
                account: "ayla",
                password: "hunter2",
            }),
        ),
        (
            "client-login",
            client(ClientMessage::Login {
                account: "ayla",
                password: "hunter2",
            }),
        ),
        (
            "client-character-list",
            client(ClientMessage::CharacterList),
        ),
        (
            "client-character-create",
            client(ClientMessage::CharacterCreate {
                name: "Ayla",
                template: 3,
                appearance: &[1, 2, 3, 4],
            }),
        ),
        (
            "client-character-delete",
            client(ClientMessage::CharacterDelete { character_id: 77 }),
        ),
        (
            "client-character-restore",
            client(ClientMessage::CharacterRestore { character_id: 77 }),
        ),
        ("client-leave-world", client(ClientMessage::LeaveWorld)),
        (
            "client-pick-up",
            client(ClientMessage::PickUp {
                input_seq: 44,
                item: 300,
            }),
        ),
        (
            "client-use-item",
            client(ClientMessage::UseItem { slot: 3 }),
        ),
        (
            "client-equip",
            client(ClientMessage::Equip {
                slot: 4,
                equip_slot: EquipSlot::Weapon as u8,
            }),
        ),
        (
            "client-unequip",
            client(ClientMessage::Unequip {
                equip_slot: EquipSlot::Chest as u8,
            }),
        ),
        (
            "client-chat",
            client(ClientMessage::Chat {
                channel: ChatChannel::Whisper,
                target: "Bo",
                text: "hi",
            }),
        ),
        (
            "client-drop-item",
            client(ClientMessage::DropItem { slot: 1, count: 2 }),
        ),
        (
            "client-inspect",
            client(ClientMessage::Inspect { entity: 300 }),
        ),
        ("server-inventory", inventory()),
        (
            "server-character-stats",
            server(ServerMessage::CharacterStats(CharacterStats {
                cause: stats_cause::LEVEL_UP,
                level: 2,
                exp: 120,
                exp_next: 370,
                hp_max: 120.0,
                mp_max: 40.0,
                stats: [21, 40, 43, 25, 30, 11],
                p_atk: 12.5,
                m_atk: 6.0,
                p_def: 50.0,
                m_def: 40.0,
            })),
        ),
        (
            "server-combat-event",
            server(ServerMessage::CombatEvent {
                source: 5,
                target: 300,
                skill: 2,
                amount: 25.5,
                flags: combat_flags::HIT | combat_flags::CRIT | combat_flags::KILL,
            }),
        ),
        (
            "server-chat-message",
            server(ServerMessage::ChatMessage {
                channel: ChatChannel::Say,
                from: "Ayla",
                text: "hello",
            }),
        ),
        (
            "server-entity-info",
            server(ServerMessage::EntityInfo {
                entity: 300,
                entity_type: 2,
                template: 5,
                level: 7,
                count: 0,
                name: "Wolf",
            }),
        ),
        (
            "server-zone-transfer",
            server(ServerMessage::ZoneTransfer {
                address: "10.0.0.2:7777",
                static_key: [0x42; 32],
                ticket: b"TOSX\x01abcd",
            }),
        ),
        ("delta-records", records),
        ("lz4-payload", lz4_payload),
        ("lz4-compressed", lz4_compressed),
        ("ticket-server-secret", TICKET_SERVER_SECRET.to_vec()),
        ("ticket-server-public", tv.server_public.to_vec()),
        ("ticket-client-secret", TICKET_CLIENT_SECRET.to_vec()),
        ("ticket-client-public", tv.client_public.to_vec()),
        ("ticket-es", tv.es.to_vec()),
        ("ticket-client-nonce", TICKET_CLIENT_NONCE.to_vec()),
        ("ticket-key", tv.key.to_vec()),
        ("ticket-aad", tv.aad.clone()),
        ("ticket-plaintext", TICKET.to_vec()),
        ("ticket-sealed", tv.sealed.clone()),
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
                if name == "server-character-list" {
                    let ServerMessage::CharacterList(list) = m else {
                        panic!("{name}: {m:?}");
                    };
                    assert_eq!(list.max_characters, 5);
                    let entries: Vec<_> = list.entries().map(Result::unwrap).collect();
                    assert_eq!(entries, characters());
                }
                if let ServerMessage::Inventory(inv) = m {
                    assert_eq!(inv.capacity, 40);
                    assert_eq!(inv.items().count(), 2);
                    assert_eq!(
                        inv.equipped().map(|e| e.slot).collect::<Vec<_>>(),
                        [EquipSlot::Weapon, EquipSlot::Chest]
                    );
                }
                if let ServerMessage::WorldEntered { world, .. } = m {
                    assert_eq!(world.quantizer().unwrap(), Quantizer::seed_default());
                }
            }
            n if n.starts_with("client-") => {
                let m = ClientMessage::decode(&bytes).unwrap();
                assert_eq!(write(|w| m.encode(w).unwrap()), bytes, "{name}");
            }
            n if n.starts_with("ticket-") => {
                // Checked by `ticket_functions_match_the_vector`.
            }
            "lz4-payload" => {
                // Worth compressing by the rules of section 9.
                assert!(tos_protocol::compress::should_compress(&bytes, 512));
            }
            "lz4-compressed" => {
                let payload = vectors()
                    .into_iter()
                    .find(|(n, _)| *n == "lz4-payload")
                    .unwrap()
                    .1;
                let mut out = vec![0u8; 4096];
                let n = tos_protocol::compress::decompress_into(&bytes, &mut out, 4096).unwrap();
                assert_eq!(&out[..n], &payload[..]);
                assert!(bytes.len() < payload.len());
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

#[test]
fn ticket_functions_match_the_vector() {
    let tv = ticket_vector();
    assert_eq!(crypto::ticket_key(&tv.es, &TICKET_CLIENT_NONCE), tv.key);
    let aad = crypto::ticket_aad(
        PROTOCOL_VERSION,
        KeyMode::Pinned,
        &tv.client_public,
        &TICKET_CLIENT_NONCE,
    );
    assert_eq!(aad.to_vec(), tv.aad);
    let sealed = crypto::seal_ticket(&tv.es, &TICKET_CLIENT_NONCE, &aad, TICKET);
    assert_eq!(sealed, tv.sealed);
    let mut open = sealed.clone();
    let n = crypto::open_ticket(&tv.es, &TICKET_CLIENT_NONCE, &aad, &mut open).unwrap();
    assert_eq!(&open[..n], TICKET);
    // The Connect vectors carry exactly these sealed bytes.
    for (name, bytes) in vectors() {
        if name == "connect" || name == "connect-with-cookie" {
            let Ok((_, Handshake::Connect(c))) = Handshake::decode(&bytes) else {
                panic!("{name}");
            };
            assert_eq!(c.ticket, &tv.sealed[..], "{name}");
            assert_eq!(c.client_public, tv.client_public, "{name}");
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
