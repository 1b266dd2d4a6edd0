//! Wire-layer costs against the yardstick of sealing the same bytes.
//!
//! `cargo bench -p tos-benches --bench wire`
//!
//! - `snapshot/encode`: header + message frame + DeltaSync + quantized delta
//!   records of moving entities against their baselines, filling a
//!   1200-byte datagram, written in place (the server's encoder: records go
//!   straight into the datagram, the frame length and record count are
//!   patched at the end).
//! - `snapshot/decode`: header parse, frame split, DeltaSync decode, and
//!   for every record: its header, then the entity's new state set to its
//!   baseline and the record's fields decoded straight onto it (the
//!   receiver's path, `RecordHeader::decode_apply`).
//! - `snapshot/encode-copying`: the same datagram built the older way,
//!   records into scratch, then message, then frame (three copies).
//! - `snapshot/decode-record-apply`: the same datagram decoded through
//!   `DeltaRecord::decode` + `apply`, with the receiver's whole view reset
//!   from the baselines in every iteration (the older form of this bench).
//! - `seal/chacha20poly1305-ring-1200`: ring's AEAD over the same 1200 bytes.
//!
//! Goal (issue 2): encode + decode < 1/5 of the seal.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use tos_protocol::delta::{
    self, DeltaRecord, DeltaSyncWriter, EntityStatus, QuantizedEntity, RecordHeader,
};
use tos_protocol::quant::{QuantizedPosition, QuantizedRotation};
use tos_protocol::wire::control::Message;
use tos_protocol::wire::frame::{self, Frames};
use tos_protocol::wire::game::{DeltaSync, ServerMessage};
use tos_protocol::wire::{Channel, HeaderFlags, PacketHeader, Reader, Writer};

const MTU: usize = 1200;
const ENTITIES: usize = 256;

fn entities(tick: i16) -> Vec<QuantizedEntity> {
    (0..ENTITIES)
        .map(|i| {
            let i16_ = i as i16;
            QuantizedEntity {
                position: QuantizedPosition {
                    quadrant: (i % 7) as u16,
                    offset: [
                        i16_.wrapping_mul(97).wrapping_add(tick * 10),
                        i16_.wrapping_mul(13) - tick * 3,
                        100,
                    ],
                },
                rotation: QuantizedRotation {
                    pitch: 0,
                    yaw: (i as u16).wrapping_mul(331).wrapping_add(tick as u16 * 40),
                    roll: 0,
                },
                anim: (i % 4) as u8,
                status: EntityStatus {
                    state: 0x05,
                    buffs: 0,
                    hp: 200,
                    mp: 100,
                },
                velocity: [600, -180, 0],
            }
        })
        .collect()
}

const HEADER_LEN: usize = 14;
const TAG_LEN: usize = 16;

fn header() -> PacketHeader {
    PacketHeader {
        connection_id: 0x0102_0300,
        channel: Channel::Unreliable,
        flags: HeaderFlags::ENCRYPTED | HeaderFlags::AEAD_CHACHA20_POLY1305,
        sequence: 77,
    }
}

/// Encodes one snapshot datagram in place; returns its length and how many
/// records.
fn encode_snapshot(
    out: &mut [u8; MTU],
    base: &[QuantizedEntity],
    cur: &[QuantizedEntity],
) -> (usize, u32) {
    header().emit(&mut tos_protocol::wire::Packet::new_unchecked(&mut out[..]));
    // The plaintext ends where the tag begins.
    let mut w = Writer::new(&mut out[HEADER_LEN..MTU - TAG_LEN]);
    let frame = frame::begin_message_frame(&mut w, Channel::Unreliable, 0).unwrap();
    let mut sync = DeltaSyncWriter::begin(&mut w, 1000, 994, 5).unwrap();
    for (i, (b, c)) in base.iter().zip(cur).enumerate() {
        if sync.update(&mut w, i as u32, 6, b, c).is_err() {
            break;
        }
    }
    let count = sync.finish(&mut w).unwrap();
    frame::end_frame(&mut w, frame).unwrap();
    (HEADER_LEN + w.position(), count)
}

/// The same datagram built by copying: records into scratch, then the
/// message, then the frame.
fn encode_snapshot_copying(
    out: &mut [u8; MTU],
    records: &mut [u8; MTU],
    base: &[QuantizedEntity],
    cur: &[QuantizedEntity],
) -> (usize, u32) {
    // Records first into scratch, up to what fits after the fixed parts.
    let budget = MTU - HEADER_LEN - TAG_LEN - 3 /* frame hdr */ - 15 /* DeltaSync hdr */;
    let mut w = Writer::new(&mut records[..budget]);
    let mut count = 0u32;
    for (i, (b, c)) in base.iter().zip(cur).enumerate() {
        if delta::encode_update(&mut w, i as u32, 6, b, c).is_err() {
            break;
        }
        count += 1;
    }
    let rec_len = w.position();
    header().emit(&mut tos_protocol::wire::Packet::new_unchecked(&mut out[..]));
    let mut msg = [0u8; MTU];
    let mut mw = Writer::new(&mut msg);
    ServerMessage::DeltaSync(DeltaSync {
        tick: 1000,
        baseline_tick: 994,
        input_ack: 5,
        record_count: count,
        records: &records[..rec_len],
    })
    .encode(&mut mw)
    .unwrap();
    let msg_len = mw.position();
    let mut w = Writer::new(&mut out[HEADER_LEN..]);
    Message {
        channel: Channel::Unreliable,
        message_id: 0,
        data: &msg[..msg_len],
    }
    .encode_frame(&mut w)
    .unwrap();
    (HEADER_LEN + w.position(), count)
}

/// Decodes a snapshot datagram: every record is decoded onto its entity's
/// baseline in `base` and the result stored in `view`.
fn decode_snapshot(datagram: &[u8], base: &[QuantizedEntity], view: &mut [QuantizedEntity]) -> u32 {
    let header = PacketHeader::parse_bytes(datagram).unwrap();
    black_box(header);
    let mut applied = 0;
    for f in Frames::new(&datagram[HEADER_LEN..], 4096) {
        let m = Message::decode(&f.unwrap()).unwrap();
        let ServerMessage::DeltaSync(d) = ServerMessage::decode(m.data).unwrap() else {
            unreachable!()
        };
        let mut r = Reader::new(d.records);
        for _ in 0..d.record_count {
            let head = RecordHeader::decode(&mut r).unwrap();
            // The new state starts as the baseline (here, the receiver's
            // acknowledged history is `base`).
            let id = head.entity_id as usize;
            view[id] = base[id];
            head.decode_apply(&mut r, &mut view[id]).unwrap();
            applied += 1;
        }
    }
    applied
}

/// Decodes a snapshot datagram through `DeltaRecord`, applying every record
/// to `view` in place.
fn decode_snapshot_records(datagram: &[u8], view: &mut [QuantizedEntity]) -> u32 {
    let header = PacketHeader::parse_bytes(datagram).unwrap();
    black_box(header);
    let mut applied = 0;
    for f in Frames::new(&datagram[HEADER_LEN..], 4096) {
        let m = Message::decode(&f.unwrap()).unwrap();
        let ServerMessage::DeltaSync(d) = ServerMessage::decode(m.data).unwrap() else {
            unreachable!()
        };
        let mut r = Reader::new(d.records);
        for _ in 0..d.record_count {
            let rec = DeltaRecord::decode(&mut r).unwrap();
            let slot = &mut view[rec.entity_id as usize];
            *slot = rec.apply(slot).unwrap();
            applied += 1;
        }
    }
    applied
}

fn snapshot(c: &mut Criterion) {
    let base = entities(0);
    let cur = entities(6);
    let mut out = [0u8; MTU];
    let mut scratch = [0u8; MTU];
    let (len, count) = encode_snapshot(&mut out, &base, &cur);
    let datagram = out;
    eprintln!("snapshot datagram: {len} bytes plaintext (+16 tag), {count} entity deltas");
    // Both encoders write the same bytes; both decoders see the same state.
    let (len2, count2) = encode_snapshot_copying(&mut out, &mut scratch, &base, &cur);
    assert_eq!((len2, count2), (len, count));
    assert_eq!(out[..len], datagram[..len]);
    let mut view = base.clone();
    assert_eq!(decode_snapshot(&datagram[..len], &base, &mut view), count);
    assert_eq!(view[..count as usize], cur[..count as usize]);
    let mut view2 = base.clone();
    assert_eq!(decode_snapshot_records(&datagram[..len], &mut view2), count);
    assert_eq!(view2, view);

    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Bytes(MTU as u64));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(encode_snapshot(&mut out, black_box(&base), black_box(&cur))))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            black_box(decode_snapshot(
                black_box(&datagram[..len]),
                black_box(&base),
                &mut view,
            ))
        })
    });
    g.bench_function("encode-copying", |b| {
        b.iter(|| {
            black_box(encode_snapshot_copying(
                &mut out,
                &mut scratch,
                black_box(&base),
                black_box(&cur),
            ))
        })
    });
    g.bench_function("decode-record-apply", |b| {
        b.iter(|| {
            view.copy_from_slice(&base);
            black_box(decode_snapshot_records(
                black_box(&datagram[..len]),
                &mut view,
            ))
        })
    });
    g.finish();

    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).unwrap());
    let mut g = c.benchmark_group("seal");
    for size in [64usize, 1200] {
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        g.bench_with_input(
            BenchmarkId::new("chacha20poly1305-ring", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let nonce = Nonce::assume_unique_for_key([1u8; 12]);
                    let tag = key
                        .seal_in_place_separate_tag(nonce, Aad::from(&datagram[..14]), &mut buf)
                        .unwrap();
                    black_box(tag)
                })
            },
        );
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let header = PacketHeader {
        connection_id: 1,
        channel: Channel::ReliableOrdered,
        flags: HeaderFlags::ENCRYPTED,
        sequence: 123_456,
    }
    .to_bytes();
    c.bench_function("header/parse", |b| {
        b.iter(|| black_box(PacketHeader::parse_bytes(black_box(&header)).unwrap()))
    });
    // Wide values (mostly long varints), and the small values of snapshot
    // records (ids, deltas: one or two bytes).
    let wide: Vec<u64> = (0..256u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 64))
        .collect();
    let small: Vec<u64> = (0..256u64).map(|i| (i * 37) % 300).collect();
    for (name, values) in [("", &wide), ("-small", &small)] {
        let mut buf = [0u8; 256 * 10];
        c.bench_function(&format!("varint/encode-256{name}"), |b| {
            b.iter(|| {
                let mut w = Writer::new(&mut buf);
                for v in black_box(values) {
                    w.varint(*v).unwrap();
                }
                black_box(w.position())
            })
        });
        let n = {
            let mut w = Writer::new(&mut buf);
            for v in values {
                w.varint(*v).unwrap();
            }
            w.position()
        };
        c.bench_function(&format!("varint/decode-256{name}"), |b| {
            b.iter(|| {
                let mut r = Reader::new(black_box(&buf[..n]));
                let mut sum = 0u64;
                for _ in 0..256 {
                    sum = sum.wrapping_add(r.varint().unwrap());
                }
                black_box(sum)
            })
        });
    }
}

criterion_group!(benches, snapshot, primitives);
criterion_main!(benches);
