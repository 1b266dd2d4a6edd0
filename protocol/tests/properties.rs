//! Property tests: round trips for every wire type, the quantization error
//! bound over the whole default world, the delta invariant, and arbitrary
//! bytes into every decoder (only `Ok` or `Err` is acceptable).

use proptest::prelude::*;
use tos_protocol::Side;
use tos_protocol::compress;
use tos_protocol::delta::{self, DeltaRecord, EntityStatus, QuantizedEntity};
use tos_protocol::quant::{self, QuantizedPosition, QuantizedRotation, Quantizer};
use tos_protocol::wire::control::*;
use tos_protocol::wire::datagram::{classify, decode_frame};
use tos_protocol::wire::frame::{FrameBody, Frames};
use tos_protocol::wire::game::*;
use tos_protocol::wire::{Channel, HeaderFlags, PacketHeader, Reader, Writer};

fn cfg() -> ProptestConfig {
    // Seeded by proptest's default deterministic RNG per test name; cases
    // kept modest so the suite stays quick on two cores.
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::Unreliable),
        Just(Channel::ReliableOrdered),
        Just(Channel::ReliableUnordered)
    ]
}

fn position() -> impl Strategy<Value = QuantizedPosition> {
    (any::<u16>(), any::<[i16; 3]>())
        .prop_map(|(quadrant, offset)| QuantizedPosition { quadrant, offset })
}

fn entity() -> impl Strategy<Value = QuantizedEntity> {
    (
        position(),
        any::<(u16, u16, u16)>(),
        any::<u8>(),
        any::<[u8; 4]>(),
        any::<[i16; 3]>(),
    )
        .prop_map(
            |(position, (pitch, yaw, roll), anim, [state, buffs, hp, mp], velocity)| {
                QuantizedEntity {
                    position,
                    rotation: QuantizedRotation { pitch, yaw, roll },
                    anim,
                    status: EntityStatus {
                        state,
                        buffs,
                        hp,
                        mp,
                    },
                    velocity,
                }
            },
        )
}

fn finite() -> impl Strategy<Value = f32> {
    -1.0e6f32..1.0e6f32
}

#[derive(Debug, Clone)]
enum Op {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    I32(i32),
    F64(f64),
    Varint(u64),
    Zigzag(i64),
    Bytes(Vec<u8>),
    Str(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        any::<u8>().prop_map(Op::U8),
        any::<u16>().prop_map(Op::U16),
        any::<u32>().prop_map(Op::U32),
        any::<u64>().prop_map(Op::U64),
        any::<i32>().prop_map(Op::I32),
        (-1e300f64..1e300).prop_map(Op::F64),
        any::<u64>().prop_map(Op::Varint),
        any::<i64>().prop_map(Op::Zigzag),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Bytes),
        "\\PC{0,12}".prop_map(Op::Str),
    ]
}

fn round_trip_frame<'a, B: FrameBody<'a> + PartialEq + core::fmt::Debug>(
    body: &B,
    buf: &'a mut [u8],
) {
    let len = {
        let mut w = Writer::new(buf);
        body.encode_frame(&mut w).unwrap();
        assert_eq!(w.position(), body.frame_len());
        w.position()
    };
    let bytes: &'a [u8] = &buf[..len];
    let frames: Vec<_> = Frames::new(bytes, 4096).collect();
    assert_eq!(frames.len(), 1);
    let decoded = B::decode(&frames[0].unwrap()).unwrap();
    assert_eq!(&decoded, body);
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn writer_reader_round_trip(ops in proptest::collection::vec(op(), 0..30)) {
        let mut buf = vec![0u8; 4096];
        let mut w = Writer::new(&mut buf);
        for op in &ops {
            match op {
                Op::U8(v) => w.u8(*v).unwrap(),
                Op::U16(v) => w.u16(*v).unwrap(),
                Op::U32(v) => w.u32(*v).unwrap(),
                Op::U64(v) => w.u64(*v).unwrap(),
                Op::I32(v) => w.i32(*v).unwrap(),
                Op::F64(v) => w.f64(*v).unwrap(),
                Op::Varint(v) => w.varint(*v).unwrap(),
                Op::Zigzag(v) => w.zigzag(*v).unwrap(),
                Op::Bytes(v) => w.len_prefixed(v, 64).unwrap(),
                Op::Str(v) => w.str(v, 64).unwrap(),
            }
        }
        let n = w.position();
        let mut r = Reader::new(&buf[..n]);
        for op in &ops {
            match op {
                Op::U8(v) => prop_assert_eq!(r.u8().unwrap(), *v),
                Op::U16(v) => prop_assert_eq!(r.u16().unwrap(), *v),
                Op::U32(v) => prop_assert_eq!(r.u32().unwrap(), *v),
                Op::U64(v) => prop_assert_eq!(r.u64().unwrap(), *v),
                Op::I32(v) => prop_assert_eq!(r.i32().unwrap(), *v),
                Op::F64(v) => prop_assert_eq!(r.f64().unwrap().to_bits(), v.to_bits()),
                Op::Varint(v) => prop_assert_eq!(r.varint().unwrap(), *v),
                Op::Zigzag(v) => prop_assert_eq!(r.zigzag().unwrap(), *v),
                Op::Bytes(v) => prop_assert_eq!(r.len_prefixed(64).unwrap(), &v[..]),
                Op::Str(v) => prop_assert_eq!(r.str(64).unwrap(), v.as_str()),
            }
        }
        prop_assert!(r.finish().is_ok());
    }

    #[test]
    fn header_round_trip(id in any::<u32>(), ch in channel(), flags in 0u8..0x80, seq in any::<u64>()) {
        let h = PacketHeader { connection_id: id, channel: ch, flags: HeaderFlags::from_bits(flags).unwrap(), sequence: seq };
        prop_assert_eq!(PacketHeader::parse_bytes(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn handshake_round_trip(
        public in any::<[u8; 32]>(), nonce in any::<[u8; 16]>(), has_cookie in any::<bool>(),
        cid in any::<u32>(), ts in any::<u64>(), mac in any::<[u8; 32]>(),
        ticket in proptest::collection::vec(any::<u8>(), 0..=MAX_TICKET_LEN), seq in any::<u64>(),
        sealed in any::<[u8; ACCEPTED_SEALED_LEN]>(), reason in 1u8..=8,
    ) {
        let cookie = Cookie { connection_id: cid, timestamp_ms: ts, mac };
        let packets = [
            Handshake::Connect(Connect {
                version: PROTOCOL_VERSION, key_mode: if has_cookie { KeyMode::Pinned } else { KeyMode::Unpinned }, client_public: public, client_nonce: nonce,
                cookie: has_cookie.then_some(cookie), ticket: &ticket,
            }),
            Handshake::Cookie(cookie),
            Handshake::Accepted(ConnectionAccepted { server_public: public, server_nonce: nonce, server_static: None, sealed: &sealed }),
            Handshake::Accepted(ConnectionAccepted { server_public: public, server_nonce: nonce, server_static: Some(mac), sealed: &sealed }),
            Handshake::Denied(ConnectionDenied { reason: DenyReason::from_u8(reason).unwrap() }),
        ];
        for p in packets {
            let mut buf = [0u8; 1500];
            let n = p.encode(cid, seq, &mut buf).unwrap();
            if matches!(p, Handshake::Connect(_)) {
                prop_assert_eq!(n, CONNECT_LEN);
            }
            let (header, back) = Handshake::decode(&buf[..n]).unwrap();
            prop_assert_eq!(header.connection_id, cid);
            prop_assert_eq!(header.sequence, seq);
            prop_assert_eq!(back, p);
        }
    }

    #[test]
    fn frames_round_trip(
        id in any::<u32>(), largest in any::<u64>(), delay in any::<u32>(), bits in any::<u64>(),
        ch in channel(), mid in any::<u64>(), fid in any::<u16>(), idx in any::<u16>(), total in any::<u32>(),
        data in proptest::collection::vec(any::<u8>(), 0..1100), key in any::<[u8; 16]>(),
        public in any::<[u8; 32]>(), phase in any::<u8>(), reason in 0u8..=7,
    ) {
        let mut buf = vec![0u8; 2048];
        round_trip_frame(&Ping { id }, &mut buf);
        round_trip_frame(&Pong { id }, &mut buf);
        round_trip_frame(&Disconnect { reason: DisconnectReason::from_u8(reason).unwrap() }, &mut buf);
        round_trip_frame(&Ack { largest, delay_us: delay, bits }, &mut buf);
        round_trip_frame(&Fragment { channel: ch, message_id: mid, fragment_id: fid, index: idx, total_size: total, data: &data }, &mut buf);
        round_trip_frame(&ReliableHandshake { receive_window: fid, max_message_bytes: total }, &mut buf);
        round_trip_frame(&CryptoTest { challenge: key }, &mut buf);
        round_trip_frame(&CryptoTestAck { challenge: key }, &mut buf);
        round_trip_frame(&IntegrityChallenge { table_version: fid, index: idx }, &mut buf);
        round_trip_frame(&IntegrityAnswer { index: idx, key }, &mut buf);
        round_trip_frame(&RekeyRequest { phase, public, nonce: key }, &mut buf);
        round_trip_frame(&RekeyResponse { phase, public, nonce: key }, &mut buf);
        round_trip_frame(&NewConnectionId { connection_id: id }, &mut buf);
        let msg = Message { channel: ch, message_id: if ch.is_reliable() { mid } else { 0 }, data: &data };
        let n = { let mut w = Writer::new(&mut buf); msg.encode_frame(&mut w).unwrap(); w.position() };
        prop_assert_eq!(n, msg.frame_len());
        let f = Frames::new(&buf[..n], 4096).next().unwrap().unwrap();
        prop_assert_eq!(Message::decode(&f).unwrap(), msg);
    }

    #[test]
    fn game_messages_round_trip(
        id in any::<u32>(), ty in any::<u8>(), e in entity(), seq in any::<u32>(), tick in any::<u32>(),
        p in [finite(), finite(), finite()], v in [finite(), finite(), finite()], f in finite(),
        payload in proptest::collection::vec(any::<u8>(), 0..200), cid in any::<u64>(),
        name in "\\PC{0,8}", qpos in position(), qvel in any::<[i16; 3]>(), yaw in any::<u16>(),
    ) {
        let full = FullEntityState { position: p, rotation: v, velocity: p, anim: ty, state: ty, buffs: ty, hp: f, mp: f };
        let server = [
            ServerMessage::Benchmark { id: cid, payload: &payload },
            ServerMessage::CreateEntity { entity_id: id, entity_type: ty, state: e },
            ServerMessage::UpdateEntity { entity_id: id, state: full },
            ServerMessage::RemoveEntity { entity_id: id },
            ServerMessage::UpdateEntityQuantized { entity_id: id, state: e },
            ServerMessage::RekeyRequest(RekeyRequest { phase: ty, public: [ty; 32], nonce: [ty; 16] }),
            ServerMessage::DeltaSync(DeltaSync { tick, baseline_tick: seq, input_ack: id, record_count: seq, records: &payload }),
            ServerMessage::WorldEntered {
                entity_id: id, server_tick: tick, character_id: cid, position: p, yaw: f,
                world: WorldParams::from_quantizer(&Quantizer::seed_default(), f, f),
            },
            ServerMessage::Correction { input_seq: seq, position: p, velocity: v },
            ServerMessage::ActionResult { input_seq: seq, result: ty },
        ];
        let mut buf = vec![0u8; 1024];
        for m in server {
            let n = { let mut w = Writer::new(&mut buf); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(ServerMessage::decode(&buf[..n]).unwrap(), m);
        }
        let client = [
            ClientMessage::SyncEntity(MovementClaim { input_seq: seq, position: p, velocity: v, yaw: f, anim: ty }),
            ClientMessage::SyncEntityQuantized(QuantizedClaim { input_seq: seq, position: qpos, velocity: qvel, yaw, anim: ty }),
            ClientMessage::Pong(Pong { id }),
            ClientMessage::EnterToWorld { character_id: cid, name: &name },
            ClientMessage::RekeyResponse(RekeyResponse { phase: ty, public: [ty; 32], nonce: [ty; 16] }),
            ClientMessage::Action { input_seq: seq, action_id: yaw, target: id },
        ];
        for m in client {
            let n = { let mut w = Writer::new(&mut buf); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), m);
        }
    }

    #[test]
    fn account_messages_round_trip(
        account in "\\PC{0,8}", password in "\\PC{0,32}", name in "\\PC{0,8}",
        id in any::<u64>(), template in any::<u16>(), level in any::<u16>(), faction in any::<u8>(),
        appearance in proptest::collection::vec(any::<u8>(), 0..=MAX_APPEARANCE_LEN),
        ticket in proptest::collection::vec(any::<u8>(), 0..=MAX_SESSION_TICKET_LEN),
        request in any::<u8>(), reason in 1u8..=RefusalReason::ALL.len() as u8, max in any::<u8>(),
        p in [finite(), finite(), finite()], count in 0usize..12,
    ) {
        let mut buf = vec![0u8; 2048];
        let client = [
            ClientMessage::Register { account: &account, password: &password },
            ClientMessage::Login { account: &account, password: &password },
            ClientMessage::CharacterList,
            ClientMessage::CharacterCreate { name: &name, template, appearance: &appearance },
            ClientMessage::CharacterDelete { character_id: id },
            ClientMessage::CharacterRestore { character_id: id },
            ClientMessage::LeaveWorld,
        ];
        for m in client {
            let n = { let mut w = Writer::new(&mut buf); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(buf[0], m.type_byte());
            prop_assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), m);
            prop_assert_eq!(channel_for(&m), Channel::ReliableOrdered);
        }
        let entries: Vec<_> = (0..count).map(|i| CharacterSummary {
            character_id: id.wrapping_add(i as u64), name: &name, template, level, faction,
            deleted_at: id, position: p,
        }).collect();
        let n = { let mut w = Writer::new(&mut buf); encode_character_list(&mut w, max, &entries).unwrap(); w.position() };
        let ServerMessage::CharacterList(list) = ServerMessage::decode(&buf[..n]).unwrap() else {
            panic!("not a CharacterList");
        };
        prop_assert_eq!(list.max_characters, max);
        let back: Vec<_> = list.entries().map(Result::unwrap).collect();
        prop_assert_eq!(back, entries);
        let server = [
            ServerMessage::Authenticated { account_id: id, ticket: &ticket, expires_at: id },
            ServerMessage::CharacterList(list),
            ServerMessage::CharacterDone { request, character_id: id },
            ServerMessage::Refused { request, reason: RefusalReason::from_u8(reason).unwrap() },
        ];
        let mut again = vec![0u8; 2048];
        for m in server {
            let n = { let mut w = Writer::new(&mut again); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(ServerMessage::decode(&again[..n]).unwrap(), m);
        }
    }

    #[test]
    fn gameplay_messages_round_trip(
        seq in any::<u32>(), id in any::<u32>(), slot in any::<u8>(), equip in any::<u8>(),
        name in "\\PC{0,8}", text in "\\PC{0,50}", skill in any::<u16>(),
        amount in -1.0e6f32..1.0e6, flags in 0u8..=combat_flags::ALL, channel in 0u8..=2,
        stats in any::<[u16; 6]>(), level in any::<u16>(), exp in any::<u64>(),
        capacity in 0usize..=MAX_INVENTORY_SLOTS, fill in 0usize..=MAX_INVENTORY_SLOTS,
        worn in 0usize..=EQUIP_SLOTS,
    ) {
        let mut buf = vec![0u8; 2048];
        let channel = ChatChannel::from_u8(channel).unwrap();
        let client = [
            ClientMessage::PickUp { input_seq: seq, item: id },
            ClientMessage::UseItem { slot },
            ClientMessage::Equip { slot, equip_slot: equip },
            ClientMessage::Unequip { equip_slot: equip },
            ClientMessage::Chat { channel, target: &name, text: &text },
            ClientMessage::DropItem { slot, count: skill },
        ];
        for m in client {
            let n = { let mut w = Writer::new(&mut buf); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(buf[0], m.type_byte());
            prop_assert_eq!(ClientMessage::decode(&buf[..n]).unwrap(), m);
            prop_assert_eq!(channel_for(&m), Channel::ReliableOrdered);
        }
        let flags = flags & combat_flags::ALL;
        let server = [
            ServerMessage::CharacterStats(CharacterStats {
                cause: stats_cause::EXPERIENCE, level, exp, exp_next: exp / 2, hp_max: amount,
                mp_max: amount, stats, p_atk: amount, m_atk: amount, p_def: amount, m_def: amount,
            }),
            ServerMessage::CombatEvent { source: id, target: seq, skill, amount, flags },
            ServerMessage::ChatMessage { channel, from: &name, text: &text },
        ];
        let mut again = vec![0u8; 2048];
        for m in server {
            let n = { let mut w = Writer::new(&mut again); m.encode(&mut w).unwrap(); w.position() };
            prop_assert_eq!(ServerMessage::decode(&again[..n]).unwrap(), m);
        }
        let items: Vec<_> = (0..fill.min(capacity)).map(|i| InventoryItem {
            slot: i as u8, template: skill.wrapping_add(i as u16), count: 1 + (i as u16),
        }).collect();
        let equipped: Vec<_> = EquipSlot::ALL[..worn].iter().map(|&s| EquippedItem {
            slot: s, template: skill,
        }).collect();
        let n = {
            let mut w = Writer::new(&mut buf);
            encode_inventory(&mut w, capacity as u8, id, seq, &items, &equipped).unwrap();
            w.position()
        };
        let ServerMessage::Inventory(inv) = ServerMessage::decode(&buf[..n]).unwrap() else {
            panic!("not an Inventory");
        };
        prop_assert_eq!(inv.capacity as usize, capacity);
        prop_assert_eq!((inv.weight, inv.weight_limit), (id, seq));
        prop_assert_eq!(inv.items().collect::<Vec<_>>(), items);
        prop_assert_eq!(inv.equipped().collect::<Vec<_>>(), equipped);
    }

    #[test]
    fn gameplay_message_limits_are_enforced(extra in 1usize..8, bits in any::<u8>()) {
        let long = "x".repeat(MAX_CHAT_LEN + extra);
        let mut buf = vec![0u8; 2048];
        let mut w = Writer::new(&mut buf);
        let bad = ClientMessage::Chat { channel: ChatChannel::Say, target: "", text: &long }.encode(&mut w);
        prop_assert!(bad.is_err());
        // A hand-made overlong line does not decode: LengthExceeded, which
        // the server answers with ChatTooLong.
        let mut bytes = vec![client_type::CHAT, 0, 0];
        let mut len = [0u8; 10];
        let k = tos_protocol::wire::buf::encode_varint((MAX_CHAT_LEN + extra) as u64, &mut len);
        bytes.extend_from_slice(&len[..k]);
        bytes.extend(std::iter::repeat_n(b'a', MAX_CHAT_LEN + extra));
        let is_length_exceeded = matches!(
            ClientMessage::decode(&bytes),
            Err(tos_protocol::wire::WireError::LengthExceeded { .. })
        );
        prop_assert!(is_length_exceeded);
        // A client may not send the WhisperSent channel.
        prop_assert!(ClientMessage::decode(&[client_type::CHAT, 3, 0, 1, b'a']).is_err());
        // Reserved combat flag bits do not decode.
        let event = [server_type::COMBAT_EVENT, 1, 2, 0, 0, 0, 0, 0, 0, bits];
        prop_assert_eq!(ServerMessage::decode(&event).is_err(), bits & !combat_flags::ALL != 0);
    }

    #[test]
    fn account_message_limits_are_enforced(extra in 1usize..8) {
        let long = "x".repeat(MAX_PASSWORD_LEN + extra);
        let mut buf = vec![0u8; 2048];
        let mut w = Writer::new(&mut buf);
        let bad = ClientMessage::Login { account: &long[..MAX_ACCOUNT_LEN + extra], password: "" }.encode(&mut w);
        prop_assert!(bad.is_err());
        let mut w = Writer::new(&mut buf);
        let bad = ClientMessage::Register { account: "a", password: &long }.encode(&mut w);
        prop_assert!(bad.is_err());
        // Hand-made overlong fields and bad UTF-8 do not decode.
        let mut bytes = vec![client_type::LOGIN, (MAX_ACCOUNT_LEN + extra) as u8];
        bytes.extend(std::iter::repeat_n(b'a', MAX_ACCOUNT_LEN + extra));
        bytes.push(0);
        prop_assert!(ClientMessage::decode(&bytes).is_err());
        let bad_utf8 = [client_type::REGISTER, 1, 0xff, 0];
        prop_assert_eq!(ClientMessage::decode(&bad_utf8), Err(tos_protocol::wire::WireError::InvalidUtf8));
        let appearance = vec![0u8; MAX_APPEARANCE_LEN + extra];
        let mut w = Writer::new(&mut buf);
        let bad = ClientMessage::CharacterCreate { name: "a", template: 0, appearance: &appearance }.encode(&mut w);
        prop_assert!(bad.is_err());
        let ticket = vec![0u8; MAX_SESSION_TICKET_LEN + extra];
        let mut w = Writer::new(&mut buf);
        let bad = ServerMessage::Authenticated { account_id: 0, ticket: &ticket, expires_at: 0 }.encode(&mut w);
        prop_assert!(bad.is_err());
        // A list whose count runs past its bytes, or leaves bytes over.
        prop_assert!(ServerMessage::decode(&[server_type::CHARACTER_LIST, 5, extra as u8]).is_err());
        prop_assert!(ServerMessage::decode(&[server_type::CHARACTER_LIST, 5, 0, 1]).is_err());
        // Past the last reason (the codes run 1..=ALL.len()).
        let past = RefusalReason::ALL.len() as u8 + extra as u8;
        prop_assert!(ServerMessage::decode(&[server_type::REFUSED, 9, past]).is_err());
    }

    #[test]
    fn quantization_error_is_at_most_half_a_step_across_the_default_world(
        fx in 0.0f64..=1.0, fy in 0.0f64..=1.0, fz in 0.0f64..=1.0,
    ) {
        let q = Quantizer::seed_default();
        let (min, ext) = (q.min(), q.extent());
        let p: [f32; 3] = [min[0] + fx * ext[0], min[1] + fy * ext[1], min[2] + fz * ext[2]].map(|v| v as f32);
        let p = q.clamp(p);
        let qp = q.quantize_position(p).unwrap();
        let back = q.dequantize_position_f64(qp).unwrap();
        for i in 0..3 {
            let err = (back[i] - f64::from(p[i])).abs();
            prop_assert!(err <= q.step()[i] / 2.0 + 1e-9, "axis {i}: {} -> {} (err {err})", p[i], back[i]);
        }
        // The f32 a client reconstructs is within half a step plus one f32 ulp.
        let back32 = q.dequantize_position(qp).unwrap();
        for i in 0..3 {
            let ulp = f64::from(f32::EPSILON) * f64::from(p[i].abs().max(1.0));
            prop_assert!((f64::from(back32[i]) - f64::from(p[i])).abs() <= q.step()[i] / 2.0 + ulp);
        }
        // Every quadrant offset is representable: re-quantizing is stable.
        prop_assert_eq!(q.quantize_position(q.dequantize_position(qp).unwrap()).unwrap(), qp);
    }

    #[test]
    fn angle_error_is_at_most_half_a_step(deg in -720.0f32..720.0) {
        let back = f64::from(quant::dequantize_angle(quant::quantize_angle(deg)));
        let d = (back - f64::from(deg)).rem_euclid(360.0);
        let err = d.min(360.0 - d);
        prop_assert!(err <= 360.0 / 65_536.0 / 2.0 + 1e-4, "{deg} -> {back}");
    }

    #[test]
    fn delta_apply_encode_is_identity(base in entity(), cur in entity(), id in any::<u32>(), ty in any::<u8>()) {
        let mut buf = [0u8; 128];
        let n = { let mut w = Writer::new(&mut buf); delta::encode_update(&mut w, id, 3, &base, &cur).unwrap(); w.position() };
        let mut r = Reader::new(&buf[..n]);
        let rec = DeltaRecord::decode(&mut r).unwrap();
        prop_assert!(r.is_empty());
        prop_assert_eq!(rec.entity_id, id);
        prop_assert_eq!(rec.apply(&base).unwrap(), cur);
        let n = { let mut w = Writer::new(&mut buf); delta::encode_create(&mut w, id, ty, &cur).unwrap(); w.position() };
        let rec = DeltaRecord::decode(&mut Reader::new(&buf[..n])).unwrap();
        prop_assert_eq!(rec.apply(&base).unwrap(), cur);
    }

    #[test]
    fn compression_round_trips(data in proptest::collection::vec(0u8..4, 0..1500)) {
        let mut out = [0u8; 1600];
        if let Some(n) = compress::compress_into(&data, &mut out) {
            prop_assert!(n < data.len());
            let mut back = [0u8; 1600];
            let m = compress::decompress_into(&out[..n], &mut back, 1600).unwrap();
            prop_assert_eq!(&back[..m], &data[..]);
        }
    }

    #[test]
    fn arbitrary_account_message_bodies_never_panic(
        client_ty in 6u8..=12, server_ty in prop_oneof![Just(7u8), 10u8..=13],
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        // The type byte is fixed so the bytes reach the new decoders.
        let mut bytes = vec![client_ty];
        bytes.extend_from_slice(&body);
        if let Ok(m) = ClientMessage::decode(&bytes) {
            let mut buf = vec![0u8; bytes.len() + 16];
            let mut w = Writer::new(&mut buf);
            m.encode(&mut w).unwrap();
            prop_assert_eq!(w.written(), &bytes[..]);
        }
        bytes[0] = server_ty;
        if let Ok(m) = ServerMessage::decode(&bytes) {
            if let ServerMessage::CharacterList(list) = m {
                prop_assert!(list.entries().all(|e| e.is_ok()));
            }
            let mut buf = vec![0u8; bytes.len() + 16];
            let mut w = Writer::new(&mut buf);
            m.encode(&mut w).unwrap();
            prop_assert_eq!(w.written(), &bytes[..]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(data in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = classify(&data);
        let _ = PacketHeader::parse_bytes(&data);
        let _ = Handshake::decode(&data);
        for f in Frames::new(&data, 4096).flatten() {
            let _ = decode_frame(&f, Side::Client);
            let _ = decode_frame(&f, Side::Server);
        }
        if let Ok(ServerMessage::CharacterList(list)) = ServerMessage::decode(&data) {
            prop_assert!(list.entries().all(|e| e.is_ok()));
        }
        let _ = ClientMessage::decode(&data);
        let list = CharacterList { max_characters: 1, count: data.first().copied().unwrap_or(0), entries: &data };
        for e in list.entries() {
            let _ = e;
        }
        let mut r = Reader::new(&data);
        let _ = WorldParams::decode(&mut r);
        let _ = AcceptedParams::decode(&data);
        let mut r = Reader::new(&data);
        while let Ok(rec) = DeltaRecord::decode(&mut r) {
            let _ = rec.apply(&QuantizedEntity::default());
        }
        let mut out = [0u8; 2048];
        let _ = compress::decompress_into(&data, &mut out, 2048);
        let mut r = Reader::new(&data);
        let _ = r.varint();
        let _ = r.str(64);
    }

    #[test]
    fn mutated_valid_datagrams_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8)) {
        // Start from a valid Connect so mutations reach deep into the parser.
        let mut buf = [0u8; 1500];
        let n = Handshake::Connect(Connect {
            version: PROTOCOL_VERSION, key_mode: KeyMode::Pinned, client_public: [seed as u8; 32], client_nonce: [1; 16],
            cookie: None, ticket: b"abc",
        }).encode(seed as u32, seed, &mut buf).unwrap();
        for (at, x) in flips {
            buf[usize::from(at) % n] ^= x;
        }
        let _ = classify(&buf[..n]);
    }
}
