//! Ghosts between cluster nodes: the byte layout of a [`NodeGhosts`]
//! batch on `<cluster>.ghosts.<node>` (one NATS message per sending core,
//! per receiving node, per tick). The layout is the game layer's own, like
//! the transfer record's: fixed-size records, so a batch is written with
//! one bounds check per field and read without allocating.
//!
//! ```text
//! offset size field
//!      0    1 version = 1
//!      1    2 sending node's index in the cluster file, u16 LE
//!      3    4 the sender's tick, u32 LE
//!      7    2 record count n ≤ MAX_NODE_GHOSTS, u16 LE
//!      9 61·n records:
//!           +0  4 network id u32 LE (never 0)
//!           +4  1 entity type (0..=7)
//!           +5  1 faction
//!           +6 12 position 3 × f32 LE
//!          +18 12 velocity 3 × f32 LE
//!          +30 12 rotation (pitch, yaw, roll, degrees) 3 × f32 LE
//!          +42  1 animation; +43 1 state flags; +44 1 buff flags
//!          +45  8 hp, max hp 2 × f32 LE
//!          +53  8 mp, max mp 2 × f32 LE
//! ```
//!
//! The owning client is not carried: client ids are a process's own. A
//! batch is refused whole when its version, length or any field is wrong
//! (a number not finite, an unknown type, id 0): the receiver counts it
//! and its ghosts from that node simply age out.

use tos_protocol::wire::{Reader, Writer};
use tos_shards::{BuffFlags, EntityState, EntityType, Faction, GhostState, NodeGhosts};

/// The layout version this build writes and reads.
pub const GHOSTS_VERSION: u8 = 1;

/// Most records one batch carries; a sender with more ghosts for a node
/// sends the first this many (its viewers' nearest are not preferred: a
/// border this crowded is a layout problem, and the count is reported).
pub const MAX_NODE_GHOSTS: usize = 8_192;

/// Bytes before the records.
pub const HEADER_LEN: usize = 9;

/// Bytes of one record.
pub const RECORD_LEN: usize = 61;

/// Largest batch, in bytes (under NATS's default 1 MiB message limit).
pub const MAX_BATCH_LEN: usize = HEADER_LEN + MAX_NODE_GHOSTS * RECORD_LEN;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhostsError(pub &'static str);

impl core::fmt::Display for GhostsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "node ghost batch: {}", self.0)
    }
}

impl std::error::Error for GhostsError {}

/// Writes `batch` as sent by node `from` into `out` (cleared first).
/// Returns how many records were written (at most [`MAX_NODE_GHOSTS`]).
pub fn encode(from: u16, batch: &NodeGhosts, out: &mut Vec<u8>) -> usize {
    let n = batch.ghosts.len().min(MAX_NODE_GHOSTS);
    out.clear();
    out.resize(HEADER_LEN + n * RECORD_LEN, 0);
    let mut w = Writer::new(out);
    // The buffer is sized for exactly these fields: no write can fail.
    let written = (|| {
        w.u8(GHOSTS_VERSION)?;
        w.u16(from)?;
        w.u32(batch.tick)?;
        w.u16(n as u16)?;
        for g in &batch.ghosts[..n] {
            w.u32(g.net_id)?;
            w.u8(g.kind as u8)?;
            w.u8(g.faction.0)?;
            for v in g.position.iter().chain(&g.velocity).chain(&g.rotation) {
                w.f32(*v)?;
            }
            w.u8(g.anim)?;
            w.u8(g.state.0)?;
            w.u8(g.buffs.0)?;
            for v in g.hp.iter().chain(&g.mp) {
                w.f32(*v)?;
            }
        }
        Ok::<_, tos_protocol::wire::EncodeError>(())
    })();
    debug_assert!(written.is_ok());
    n
}

/// Reads a batch into `into` (cleared first; its capacity is reused).
/// Returns the sending node's index and the sender's tick.
pub fn decode(bytes: &[u8], into: &mut Vec<GhostState>) -> Result<(u16, u32), GhostsError> {
    into.clear();
    if bytes.len() < HEADER_LEN {
        return Err(GhostsError("shorter than its header"));
    }
    let mut r = Reader::new(bytes);
    let bad = |_| GhostsError("truncated");
    if r.u8().map_err(bad)? != GHOSTS_VERSION {
        return Err(GhostsError("unknown version"));
    }
    let from = r.u16().map_err(bad)?;
    let tick = r.u32().map_err(bad)?;
    let n = usize::from(r.u16().map_err(bad)?);
    if n > MAX_NODE_GHOSTS {
        return Err(GhostsError("too many records"));
    }
    if r.remaining() != n * RECORD_LEN {
        return Err(GhostsError("length does not match the record count"));
    }
    let f3 = |r: &mut Reader<'_>| -> Result<[f32; 3], GhostsError> {
        let v = [
            r.f32().map_err(bad)?,
            r.f32().map_err(bad)?,
            r.f32().map_err(bad)?,
        ];
        if v.iter().all(|x| x.is_finite()) {
            Ok(v)
        } else {
            Err(GhostsError("a number is not finite"))
        }
    };
    for _ in 0..n {
        let net_id = r.u32().map_err(bad)?;
        if net_id == 0 {
            return Err(GhostsError("network id 0"));
        }
        let kind =
            EntityType::from_u8(r.u8().map_err(bad)?).ok_or(GhostsError("unknown entity type"))?;
        let faction = Faction(r.u8().map_err(bad)?);
        let position = f3(&mut r)?;
        let velocity = f3(&mut r)?;
        let rotation = f3(&mut r)?;
        let anim = r.u8().map_err(bad)?;
        let state = EntityState(r.u8().map_err(bad)?);
        let buffs = BuffFlags(r.u8().map_err(bad)?);
        let [hp, max_hp, mp] = f3(&mut r)?;
        let max_mp = r.f32().map_err(bad)?;
        if !max_mp.is_finite() {
            return Err(GhostsError("a number is not finite"));
        }
        into.push(GhostState {
            net_id,
            kind,
            faction,
            owner: None,
            position,
            velocity,
            rotation,
            anim,
            state,
            buffs,
            hp: [hp, max_hp],
            mp: [mp, max_mp],
        });
    }
    Ok((from, tick))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ghost(net_id: u32) -> GhostState {
        GhostState {
            net_id,
            kind: EntityType::Monster,
            faction: Faction(3),
            owner: Some(tos_shards::ClientId(9)),
            position: [1.5, -2.0, 3.0],
            velocity: [0.0, 150.0, 0.0],
            rotation: [0.0, 90.0, 0.0],
            anim: 2,
            state: EntityState(1),
            buffs: BuffFlags(4),
            hp: [80.0, 100.0],
            mp: [10.0, 20.0],
        }
    }

    #[test]
    fn a_batch_round_trips_without_its_client_ids() {
        let batch = NodeGhosts {
            node: 1,
            tick: 77,
            ghosts: vec![ghost(5), ghost(9)],
        };
        let mut bytes = Vec::new();
        assert_eq!(encode(0, &batch, &mut bytes), 2);
        assert_eq!(bytes.len(), HEADER_LEN + 2 * RECORD_LEN);
        let mut out = Vec::new();
        assert_eq!(decode(&bytes, &mut out), Ok((0, 77)));
        let want: Vec<GhostState> = batch
            .ghosts
            .iter()
            .map(|g| GhostState { owner: None, ..*g })
            .collect();
        assert_eq!(out, want);
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let batch = NodeGhosts {
            node: 0,
            tick: 0x0102_0304,
            ghosts: vec![ghost(0x0a0b_0c0d)],
        };
        let mut bytes = Vec::new();
        encode(2, &batch, &mut bytes);
        assert_eq!(&bytes[..HEADER_LEN], [1, 2, 0, 4, 3, 2, 1, 1, 0]);
        let rec = &bytes[HEADER_LEN..];
        assert_eq!(&rec[..6], [0x0d, 0x0c, 0x0b, 0x0a, 2, 3]);
        assert_eq!(&rec[6..10], 1.5f32.to_le_bytes());
        assert_eq!(&rec[22..26], 150.0f32.to_le_bytes());
        assert_eq!(&rec[34..38], 90.0f32.to_le_bytes());
        assert_eq!(&rec[42..45], [2, 1, 4]);
        assert_eq!(&rec[45..49], 80.0f32.to_le_bytes());
        assert_eq!(&rec[57..61], 20.0f32.to_le_bytes());
    }

    #[test]
    fn bad_batches_are_refused_whole() {
        let batch = NodeGhosts {
            node: 1,
            tick: 1,
            ghosts: vec![ghost(5)],
        };
        let mut good = Vec::new();
        encode(0, &batch, &mut good);
        let mut out = vec![ghost(1)];
        let mut refused = |bytes: &[u8], why: &str| {
            let e = decode(bytes, &mut out).unwrap_err();
            assert_eq!(e.0, why);
            assert!(out.is_empty(), "nothing of a refused batch is kept");
        };
        refused(&good[..5], "shorter than its header");
        refused(
            &good[..good.len() - 1],
            "length does not match the record count",
        );
        let mut v = good.clone();
        v[0] = 2;
        refused(&v, "unknown version");
        let mut v = good.clone();
        v[HEADER_LEN + 4] = 8;
        refused(&v, "unknown entity type");
        let mut v = good.clone();
        v[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0; 4]);
        refused(&v, "network id 0");
        let mut v = good.clone();
        v[HEADER_LEN + 6..HEADER_LEN + 10].copy_from_slice(&f32::NAN.to_le_bytes());
        refused(&v, "a number is not finite");
        let mut v = good.clone();
        v[HEADER_LEN + 57..HEADER_LEN + 61].copy_from_slice(&f32::INFINITY.to_le_bytes());
        refused(&v, "a number is not finite");
        let mut v = good;
        v[7..9].copy_from_slice(&u16::MAX.to_le_bytes());
        refused(&v, "too many records");
    }

    #[test]
    fn a_crowded_border_sends_the_first_records_that_fit() {
        let batch = NodeGhosts {
            node: 1,
            tick: 1,
            ghosts: (1..=MAX_NODE_GHOSTS as u32 + 5).map(ghost).collect(),
        };
        let mut bytes = Vec::new();
        assert_eq!(encode(0, &batch, &mut bytes), MAX_NODE_GHOSTS);
        assert_eq!(bytes.len(), MAX_BATCH_LEN);
        let mut out = Vec::new();
        decode(&bytes, &mut out).unwrap();
        assert_eq!(out.len(), MAX_NODE_GHOSTS);
    }
}
