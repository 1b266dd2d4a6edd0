//! Feeds arbitrary snapshot messages to the client SDK's receiving side:
//! `tos_client::SnapshotReceiver` (per-entity baselines, ordering by tick)
//! and the `WorldView` that turns its state into entity events.
//!
//! The input is a run of messages, each prefixed by a one-byte length; a
//! server may send anything, so every message must be applied or refused
//! without a panic, an overflow (debug assertions are on) or unbounded
//! growth, and the events must stay consistent: never an update or removal
//! of an entity that was not created, never a creation twice.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use tos_client::{EntityEvent, SnapshotReceiver, WorldView};
use tos_protocol::quant::{Quantizer, WorldGeometry};
use tos_protocol::wire::game::WorldParams;

fuzz_target!(|data: &[u8]| {
    let mut receiver = SnapshotReceiver::new();
    let mut view = WorldView::new();
    let quantizer = Quantizer::new(WorldGeometry::seed_default()).expect("the seed's map");
    let world = WorldParams::from_quantizer(&quantizer, 1.0, 1_200.0);
    view.set_world(&world).expect("the default world is valid");
    let mut known = HashSet::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (message, tail) = tail.split_at(len);
        rest = tail;
        let Ok(info) = receiver.apply_message(message) else {
            continue;
        };
        view.diff(&receiver, info.tick, |event| match event {
            EntityEvent::Created(s) => assert!(known.insert(s.id), "created twice"),
            EntityEvent::Updated(s) => assert!(known.contains(&s.id), "update of unknown"),
            EntityEvent::Removed { id, .. } => assert!(known.remove(&id), "removal of unknown"),
        });
        assert_eq!(known.len(), view.len());
        assert!(receiver.visible_count() <= 65_536);
    }
});
