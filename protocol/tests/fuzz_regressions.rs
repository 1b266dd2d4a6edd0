//! Inputs the fuzzers found, replayed through the same decoders as the
//! `datagram` fuzz target (`protocol/fuzz/fuzz_targets/datagram.rs`). Each
//! one crashed once; none may panic again. Tests build with overflow checks,
//! so an arithmetic overflow on a wire value is a panic here too.

use tos_protocol::Side;
use tos_protocol::delta::{DeltaRecord, QuantizedEntity};
use tos_protocol::wire::Reader;
use tos_protocol::wire::datagram::{AnyFrame, Datagram, classify, decode_frame};
use tos_protocol::wire::frame::Frames;
use tos_protocol::wire::game::ServerMessage;

/// The `datagram` fuzz target's decoding, minus its re-encoding asserts.
fn datagram_target(data: &[u8]) {
    if let Ok(Datagram::Sealed { sealed, .. }) = classify(data) {
        payload(sealed);
    }
    payload(data);
    message(data);
    records(data);
}

fn payload(data: &[u8]) {
    for frame in Frames::new(data, 4096) {
        let Ok(frame) = frame else { break };
        for sender in [Side::Server, Side::Client] {
            if let Ok(AnyFrame::Message(m)) = decode_frame(&frame, sender) {
                message(m.data);
            }
        }
    }
}

fn message(data: &[u8]) {
    if let Ok(ServerMessage::DeltaSync(sync)) = ServerMessage::decode(data) {
        records(sync.records);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Delta records back to back, each applied to the zero state and to the
/// state the previous one produced (the fuzz target's `records`). Returns
/// how many records applied to the running state.
fn records(data: &[u8]) -> usize {
    let mut r = Reader::new(data);
    let mut state = QuantizedEntity::default();
    let mut applied = 0;
    while !r.is_empty() {
        match DeltaRecord::decode(&mut r) {
            Ok(record) => {
                let _ = record.apply(&QuantizedEntity::default());
                if let Ok(next) = record.apply(&state) {
                    state = next;
                    applied += 1;
                }
            }
            Err(_) => break,
        }
    }
    applied
}

/// `add_i16x3` added an i32 delta from the wire to an i16 baseline in i32
/// arithmetic: `attempt to add with overflow` under overflow checks, and a
/// wrapped, wrongly accepted position without them.
#[test]
fn delta_add_overflow_crash_input() {
    let input = hex(
        "060407070707070707f9f85b07070707003a2d07da0707f9f85b070707fff20cffffffff0f0707079999f85b07070707070707f9f85b5b070707000000fd070707079931999907070707993b80000007070707070707075bc2",
    );
    assert_eq!(input.len(), 89);
    datagram_target(&input);
}

/// A velocity delta at the i32 edge on a positive baseline must be an
/// error from both decoders, never a wrapped value in range.
#[test]
fn delta_records_out_of_range_are_errors() {
    use tos_protocol::delta::{DeltaFlags, encode_update};
    use tos_protocol::wire::Writer;
    let baseline = QuantizedEntity {
        velocity: [1, 0, 0],
        ..QuantizedEntity::default()
    };
    let record = |dv: i32| {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.varint(7).unwrap();
        w.u8(DeltaFlags::VELOCITY.bits()).unwrap();
        w.varint(1).unwrap();
        for d in [dv, 0, 0] {
            w.zigzag(i64::from(d)).unwrap();
        }
        w.written().to_vec()
    };
    // The hand-built layout is the encoder's: -1 from [1,0,0] is [0,0,0].
    let mut buf = [0u8; 64];
    let mut w = Writer::new(&mut buf);
    let current = QuantizedEntity::default();
    encode_update(&mut w, 7, 1, &baseline, &current).unwrap();
    assert_eq!(w.written(), &record(-1)[..]);

    for dv in [i32::MAX, i32::MAX - 1, i32::from(i16::MAX), i32::MIN] {
        let bytes = record(dv);
        let decoded = DeltaRecord::decode(&mut Reader::new(&bytes)).unwrap();
        assert!(decoded.apply(&baseline).is_err(), "delta {dv} accepted");
        let mut state = baseline;
        let header = tos_protocol::delta::RecordHeader::decode(&mut Reader::new(&bytes)).unwrap();
        let mut r = Reader::new(&bytes);
        tos_protocol::delta::RecordHeader::decode(&mut r).unwrap();
        assert!(
            header.decode_apply(&mut r, &mut state).is_err(),
            "delta {dv} accepted"
        );
        assert_eq!(state, baseline, "a refused record changed the state");
    }
}

/// A fallback for cargo-fuzz where it cannot run: random and mutated inputs
/// (seeded from the crash input, bytes flipped, spliced, truncated and
/// grown) through the `datagram` target's decoders. Run once by hand:
/// `FUZZ_ITERS=10000000 cargo test -p tos-protocol --test fuzz_regressions
/// -- --ignored --nocapture`. Not coverage-guided: a weak substitute.
#[test]
#[ignore]
fn random_and_mutated_inputs_never_panic() {
    let iters: u64 = std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = tos_protocol::rng::SplitMix64::new(0x11f0_22ed);
    let seed = hex(
        "060407070707070707f9f85b07070707003a2d07da0707f9f85b070707fff20cffffffff0f0707079999f85b07070707070707f9f85b5b070707000000fd070707079931999907070707993b80000007070707070707075bc2",
    );
    let mut corpus: Vec<Vec<u8>> = vec![seed, vec![0; 16], vec![0xff; 64]];
    let mut buf = Vec::with_capacity(2048);
    for i in 0..iters {
        let r = rng.next_u64();
        buf.clear();
        if r % 4 == 0 {
            // Fresh random bytes, short like real datagrams.
            let len = (rng.next_u64() % 300) as usize;
            buf.extend((0..len).map(|_| rng.next_u64() as u8));
        } else {
            let base = &corpus[(rng.next_u64() % corpus.len() as u64) as usize];
            buf.extend_from_slice(base);
            for _ in 0..1 + rng.next_u64() % 8 {
                let op = rng.next_u64() % 5;
                let at = if buf.is_empty() {
                    0
                } else {
                    (rng.next_u64() % buf.len() as u64) as usize
                };
                match op {
                    0 if !buf.is_empty() => buf[at] ^= 1 << (rng.next_u64() % 8),
                    1 if !buf.is_empty() => buf[at] = rng.next_u64() as u8,
                    2 => buf.insert(at.min(buf.len()), rng.next_u64() as u8),
                    3 if !buf.is_empty() => {
                        buf.truncate(at);
                    }
                    _ => {
                        let v = [0x00, 0x7f, 0x80, 0xff][(rng.next_u64() % 4) as usize];
                        buf.insert(at.min(buf.len()), v);
                    }
                }
            }
        }
        datagram_target(&buf);
        if i % 4096 == 0 && corpus.len() < 256 && !buf.is_empty() {
            corpus.push(buf.clone());
        }
    }
    eprintln!("{iters} inputs, no panic");
}
