//! Feeds arbitrary bytes to every decoder that faces the network.
//!
//! Every decoder must return `Ok` or `Err` on any input: a panic, an
//! out-of-bounds access, an overflow (debug assertions are on) or a hang is a
//! bug. Where a decode succeeds, the messages are re-encoded and must give the
//! same bytes back (each has exactly one encoding).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tos_protocol::Side;
use tos_protocol::compress;
use tos_protocol::delta::{DeltaRecord, QuantizedEntity};
use tos_protocol::wire::datagram::{AnyFrame, Datagram, classify, decode_frame};
use tos_protocol::wire::frame::Frames;
use tos_protocol::wire::game::{ClientMessage, ServerMessage};
use tos_protocol::wire::{Reader, Writer};

/// The largest frame body the fuzzer lets through (bigger than an MTU, so
/// the length checks themselves are exercised).
const MAX_BODY: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The whole datagram, as the network hands it over.
    if let Ok(Datagram::Sealed { sealed, .. }) = classify(data) {
        // The ciphertext is opaque here; read it as if it were plaintext.
        payload(sealed);
    }

    // The same bytes as a decrypted payload, a game message, a run of delta
    // records and a compressed payload.
    payload(data);
    message(data);
    records(data);
    decompress(data);
});

/// A plaintext payload: frames, decoded as sent by either side.
fn payload(data: &[u8]) {
    for frame in Frames::new(data, MAX_BODY) {
        let Ok(frame) = frame else {
            // A bad length ends the payload; the iterator says so by
            // returning `None` next, but there is nothing more to read.
            break;
        };
        for sender in [Side::Server, Side::Client] {
            if let Ok(AnyFrame::Message(m)) = decode_frame(&frame, sender) {
                message(m.data);
            }
        }
    }
}

/// A game message, read in both type spaces.
fn message(data: &[u8]) {
    // Room for the message and more, so a longer re-encoding shows as a
    // mismatch rather than as a full buffer.
    let mut buf = vec![0u8; data.len() + 64];
    if let Ok(m) = ServerMessage::decode(data) {
        let mut w = Writer::new(&mut buf);
        m.encode(&mut w).expect("a decoded message re-encodes");
        assert_eq!(w.written(), data, "server message re-encodes differently");
        match m {
            ServerMessage::DeltaSync(sync) => records(sync.records),
            ServerMessage::CharacterList(list) => {
                // A decoded list holds exactly `count` well-formed entries.
                assert_eq!(list.entries().count(), usize::from(list.count));
                assert!(list.entries().all(|e| e.is_ok()), "decoded list entry fails");
            }
            ServerMessage::Inventory(inv) => {
                // A decoded inventory yields exactly its counts of entries.
                assert_eq!(inv.items().count(), usize::from(inv.item_count));
                assert_eq!(inv.equipped().count(), usize::from(inv.equipped_count));
            }
            _ => {}
        }
    }
    if let Ok(m) = ClientMessage::decode(data) {
        let mut w = Writer::new(&mut buf);
        m.encode(&mut w).expect("a decoded message re-encodes");
        assert_eq!(w.written(), data, "client message re-encodes differently");
    }
}

/// Delta records back to back, as in a DeltaSync, each applied to the zero
/// state and to the state the previous record produced.
fn records(data: &[u8]) {
    let mut r = Reader::new(data);
    let mut state = QuantizedEntity::default();
    while !r.is_empty() {
        let before = r.position();
        match DeltaRecord::decode(&mut r) {
            Ok(record) => {
                assert!(r.position() > before, "a record consumed no bytes");
                let _ = record.apply(&QuantizedEntity::default());
                if let Ok(next) = record.apply(&state) {
                    state = next;
                }
            }
            Err(_) => break,
        }
    }
}

/// A compressed payload, into a stack buffer.
fn decompress(data: &[u8]) {
    let mut out = [0u8; 2048];
    if let Ok(n) = compress::decompress_into(data, &mut out, 2048) {
        assert!(n <= out.len());
    }
}
