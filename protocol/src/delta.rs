//! Entity delta compression: the quantized state of an entity, and records
//! that carry only the fields that changed against a baseline.
//!
//! The baseline of an update is the entity's state in a snapshot the client
//! acknowledged, never merely the last one sent, so a lost snapshot cannot
//! desynchronise the client. Because snapshots carry a budget-limited,
//! prioritised subset of the entities in view, different entities' last
//! acknowledged states come from different snapshots: every update record
//! therefore names its baseline by its age in ticks (snapshot tick minus
//! baseline tick), and the client keeps a short history of received states
//! per entity to find it. The property that ties this module together,
//! checked by proptest: `apply(b, encode(b, c)) == c` for every baseline `b`
//! and quantized state `c`.
//!
//! # Record layout
//!
//! ```text
//! entity id   varint
//! delta flags u8      (see DeltaFlags; 0x00 alone means Remove)
//! [Create]    entity type u8                      if CREATE
//! [Update]    baseline age varint (≥ 1)           if not CREATE
//! [Position]  quadrant u16 + 3 × i16 absolute     if POSITION and QUADRANT
//!             3 × zigzag varint (cur − base)      if POSITION without QUADRANT
//! [Rotation]  3 × u16 (pitch, yaw, roll)          if ROTATION and FULL_ROTATION
//!             u16 yaw (pitch = roll = 0)          if ROTATION without FULL_ROTATION
//! [AnimState] u8                                  if ANIM_STATE
//! [Flags]     state u8, buffs u8, hp u8, mp u8    if FLAGS
//! [Velocity]  3 × zigzag varint (cur − base)      if VELOCITY
//! ```
//!
//! A Create record is encoded against the all-zero state
//! ([`QuantizedEntity::default`]), so a receiver needs no prior state.

use crate::quant::{QuantizedPosition, QuantizedRotation};
use crate::wire::{EncodeError, Reader, WireError, Writer};

/// Which fields a delta record carries. Every bit has a meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeltaFlags(u8);

impl DeltaFlags {
    /// Position changed (seed value).
    pub const POSITION: Self = Self(0x01);
    /// Rotation changed (seed value).
    pub const ROTATION: Self = Self(0x02);
    /// Animation state changed (seed value).
    pub const ANIM_STATE: Self = Self(0x04);
    /// State flags, buffs, HP or MP changed (seed value).
    pub const FLAGS: Self = Self(0x08);
    /// Velocity changed (seed value).
    pub const VELOCITY: Self = Self(0x10);
    /// All five seed fields.
    pub const ALL: Self = Self(0x1f);
    /// Extension: the rotation is sent in full (pitch, yaw, roll).
    pub const FULL_ROTATION: Self = Self(0x20);
    /// Extension: the position is absolute, with its quadrant.
    pub const QUADRANT: Self = Self(0x40);
    /// Extension: the entity enters the receiver's view; a type byte follows.
    pub const CREATE: Self = Self(0x80);

    /// The empty set, which on the wire means Remove.
    pub const REMOVE: Self = Self(0);

    /// Flags from a wire byte.
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// The wire byte.
    #[inline]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    #[inline]
    fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
}

/// Status bytes that travel together in the Flags field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EntityStatus {
    /// EntityState bits (seed §5.1: alive, in combat, moving, ...).
    pub state: u8,
    /// Buff and debuff bits (seed §9.1).
    pub buffs: u8,
    /// HP as a fraction of its maximum, 0..=255.
    pub hp: u8,
    /// MP as a fraction of its maximum, 0..=255.
    pub mp: u8,
}

/// The quantized, replicated state of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QuantizedEntity {
    /// Position with quadrant rebasing.
    pub position: QuantizedPosition,
    /// Rotation as turn fractions.
    pub rotation: QuantizedRotation,
    /// Animation state id.
    pub anim: u8,
    /// State, buffs, HP, MP.
    pub status: EntityStatus,
    /// Velocity in `i16` steps.
    pub velocity: [i16; 3],
}

/// What a decoded record does to the receiver's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// The entity enters the view with this type byte.
    Create {
        /// The entity type (see the shards crate's `EntityType`).
        entity_type: u8,
    },
    /// The entity's state changes.
    Update,
    /// The entity leaves the view.
    Remove,
}

/// A decoded delta record, not yet applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaRecord {
    /// The entity's network id.
    pub entity_id: u32,
    /// Create, update or remove.
    pub kind: RecordKind,
    /// For updates: how many ticks before the snapshot's tick the baseline
    /// state was sent (0 for Create and Remove).
    pub baseline_age: u32,
    /// The fields present.
    pub flags: DeltaFlags,
    position_quadrant: u16,
    position: [i32; 3],
    rotation: QuantizedRotation,
    anim: u8,
    status: EntityStatus,
    velocity: [i32; 3],
}

/// The flags an update from `baseline` to `current` needs (without CREATE).
pub fn diff(baseline: &QuantizedEntity, current: &QuantizedEntity) -> DeltaFlags {
    let mut flags = DeltaFlags::default();
    if baseline.position != current.position {
        flags.insert(DeltaFlags::POSITION);
        if baseline.position.quadrant != current.position.quadrant {
            flags.insert(DeltaFlags::QUADRANT);
        }
    }
    if baseline.rotation != current.rotation {
        flags.insert(DeltaFlags::ROTATION);
        if !current.rotation.is_yaw_only() {
            flags.insert(DeltaFlags::FULL_ROTATION);
        }
    }
    if baseline.anim != current.anim {
        flags.insert(DeltaFlags::ANIM_STATE);
    }
    if baseline.status != current.status {
        flags.insert(DeltaFlags::FLAGS);
    }
    if baseline.velocity != current.velocity {
        flags.insert(DeltaFlags::VELOCITY);
    }
    flags
}

/// Writes an update record of `current` against `baseline`, the entity's
/// state `baseline_age` (≥ 1) ticks before this snapshot. An entity that
/// did not change still gets a record (flags with no field bit set are not
/// possible: the QUADRANT-less POSITION bit is forced), because the record
/// tells the receiver the entity is still in view; callers that want to
/// skip unchanged entities compare with [`diff`] first.
pub fn encode_update(
    w: &mut Writer<'_>,
    entity_id: u32,
    baseline_age: u32,
    baseline: &QuantizedEntity,
    current: &QuantizedEntity,
) -> Result<(), EncodeError> {
    let mut flags = diff(baseline, current);
    if flags == DeltaFlags::default() {
        // Zero means Remove on the wire: send an empty position delta.
        flags = DeltaFlags::POSITION;
    }
    encode_fields(
        w,
        entity_id,
        flags,
        Header::Update(baseline_age),
        baseline,
        current,
    )
}

/// What follows the flags byte.
#[derive(Clone, Copy)]
enum Header {
    Create(u8),
    Update(u32),
}

/// Writes a Create record: the full state against the zero state.
pub fn encode_create(
    w: &mut Writer<'_>,
    entity_id: u32,
    entity_type: u8,
    current: &QuantizedEntity,
) -> Result<(), EncodeError> {
    let zero = QuantizedEntity::default();
    let mut flags = diff(&zero, current);
    flags.insert(DeltaFlags::CREATE);
    // Creates always carry an absolute position.
    flags.insert(DeltaFlags::POSITION);
    flags.insert(DeltaFlags::QUADRANT);
    encode_fields(
        w,
        entity_id,
        flags,
        Header::Create(entity_type),
        &zero,
        current,
    )
}

/// Writes a Remove record.
pub fn encode_remove(w: &mut Writer<'_>, entity_id: u32) -> Result<(), EncodeError> {
    w.varint(u64::from(entity_id))?;
    w.u8(DeltaFlags::REMOVE.bits())
}

fn encode_fields(
    w: &mut Writer<'_>,
    entity_id: u32,
    flags: DeltaFlags,
    header: Header,
    baseline: &QuantizedEntity,
    current: &QuantizedEntity,
) -> Result<(), EncodeError> {
    // A record is all or nothing: on a full buffer the caller sees the
    // writer where it was.
    let mark = w.save();
    let result = (|| {
        w.varint(u64::from(entity_id))?;
        w.u8(flags.bits())?;
        match header {
            Header::Create(entity_type) => w.u8(entity_type)?,
            Header::Update(age) => w.varint(u64::from(age))?,
        }
        if flags.contains(DeltaFlags::POSITION) {
            if flags.contains(DeltaFlags::QUADRANT) {
                w.u16(current.position.quadrant)?;
                for v in current.position.offset {
                    w.i16(v)?;
                }
            } else {
                for i in 0..3 {
                    let d = i64::from(current.position.offset[i])
                        - i64::from(baseline.position.offset[i]);
                    w.zigzag(d)?;
                }
            }
        }
        if flags.contains(DeltaFlags::ROTATION) {
            if flags.contains(DeltaFlags::FULL_ROTATION) {
                w.u16(current.rotation.pitch)?;
                w.u16(current.rotation.yaw)?;
                w.u16(current.rotation.roll)?;
            } else {
                w.u16(current.rotation.yaw)?;
            }
        }
        if flags.contains(DeltaFlags::ANIM_STATE) {
            w.u8(current.anim)?;
        }
        if flags.contains(DeltaFlags::FLAGS) {
            let s = current.status;
            w.bytes(&[s.state, s.buffs, s.hp, s.mp])?;
        }
        if flags.contains(DeltaFlags::VELOCITY) {
            for i in 0..3 {
                w.zigzag(i64::from(current.velocity[i]) - i64::from(baseline.velocity[i]))?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        w.restore(mark);
    }
    result
}

impl DeltaRecord {
    /// Reads one record.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let entity_id = r.varint_u32()?;
        let flags = DeltaFlags::from_bits(r.u8()?);
        let mut record = DeltaRecord {
            entity_id,
            kind: RecordKind::Update,
            baseline_age: 0,
            flags,
            position_quadrant: 0,
            position: [0; 3],
            rotation: QuantizedRotation::default(),
            anim: 0,
            status: EntityStatus::default(),
            velocity: [0; 3],
        };
        if flags == DeltaFlags::REMOVE {
            record.kind = RecordKind::Remove;
            return Ok(record);
        }
        if flags.contains(DeltaFlags::CREATE) {
            record.kind = RecordKind::Create {
                entity_type: r.u8()?,
            };
        } else {
            record.baseline_age = r.varint_u32()?;
        }
        if flags.contains(DeltaFlags::QUADRANT) && !flags.contains(DeltaFlags::POSITION) {
            return Err(WireError::InvalidValue {
                field: "delta flags",
                value: u64::from(flags.bits()),
            });
        }
        if flags.contains(DeltaFlags::FULL_ROTATION) && !flags.contains(DeltaFlags::ROTATION) {
            return Err(WireError::InvalidValue {
                field: "delta flags",
                value: u64::from(flags.bits()),
            });
        }
        if flags.contains(DeltaFlags::POSITION) {
            if flags.contains(DeltaFlags::QUADRANT) {
                record.position_quadrant = r.u16()?;
                for v in &mut record.position {
                    *v = i32::from(r.i16()?);
                }
            } else {
                for v in &mut record.position {
                    *v = r.zigzag_i32()?;
                }
            }
        }
        if flags.contains(DeltaFlags::ROTATION) {
            if flags.contains(DeltaFlags::FULL_ROTATION) {
                record.rotation.pitch = r.u16()?;
                record.rotation.yaw = r.u16()?;
                record.rotation.roll = r.u16()?;
            } else {
                record.rotation.yaw = r.u16()?;
            }
        }
        if flags.contains(DeltaFlags::ANIM_STATE) {
            record.anim = r.u8()?;
        }
        if flags.contains(DeltaFlags::FLAGS) {
            let [state, buffs, hp, mp] = r.array::<4>()?;
            record.status = EntityStatus {
                state,
                buffs,
                hp,
                mp,
            };
        }
        if flags.contains(DeltaFlags::VELOCITY) {
            for v in &mut record.velocity {
                *v = r.zigzag_i32()?;
            }
        }
        Ok(record)
    }

    /// The state after this record, given the receiver's baseline (ignored
    /// for Create, which is against the zero state). Fails if a relative
    /// field would leave its integer range: the record does not belong to
    /// this baseline.
    pub fn apply(&self, baseline: &QuantizedEntity) -> Result<QuantizedEntity, WireError> {
        let base = match self.kind {
            RecordKind::Create { .. } => QuantizedEntity::default(),
            RecordKind::Update => *baseline,
            RecordKind::Remove => return Ok(*baseline),
        };
        let mut out = base;
        let f = self.flags;
        if f.contains(DeltaFlags::POSITION) {
            if f.contains(DeltaFlags::QUADRANT) {
                out.position.quadrant = self.position_quadrant;
                out.position.offset = self.position.map(|v| v as i16);
            } else {
                for i in 0..3 {
                    out.position.offset[i] = add_i16(base.position.offset[i], self.position[i])?;
                }
            }
        }
        if f.contains(DeltaFlags::ROTATION) {
            out.rotation = self.rotation;
        }
        if f.contains(DeltaFlags::ANIM_STATE) {
            out.anim = self.anim;
        }
        if f.contains(DeltaFlags::FLAGS) {
            out.status = self.status;
        }
        if f.contains(DeltaFlags::VELOCITY) {
            for i in 0..3 {
                out.velocity[i] = add_i16(base.velocity[i], self.velocity[i])?;
            }
        }
        Ok(out)
    }
}

fn add_i16(base: i16, delta: i32) -> Result<i16, WireError> {
    i16::try_from(i32::from(base) + delta).map_err(|_| WireError::InvalidValue {
        field: "delta out of range",
        value: delta.unsigned_abs().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QuantizedEntity {
        QuantizedEntity {
            position: QuantizedPosition {
                quadrant: 17,
                offset: [100, -200, 300],
            },
            rotation: QuantizedRotation {
                pitch: 0,
                yaw: 16_384,
                roll: 0,
            },
            anim: 3,
            status: EntityStatus {
                state: 0x05,
                buffs: 0,
                hp: 255,
                mp: 128,
            },
            velocity: [600, 0, -10],
        }
    }

    #[test]
    fn small_move_is_small() {
        let base = sample();
        let mut cur = base;
        cur.position.offset[0] += 10;
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        encode_update(&mut w, 300, 6, &base, &cur).unwrap();
        // id (2) + flags (1) + baseline age (1) + three zigzag deltas (1 each).
        assert_eq!(w.written(), &[0xac, 0x02, 0x01, 6, 20, 0, 0]);
        let rec = DeltaRecord::decode(&mut Reader::new(w.written())).unwrap();
        assert_eq!(rec.baseline_age, 6);
        assert_eq!(rec.apply(&base).unwrap(), cur);
    }

    #[test]
    fn create_and_remove() {
        let cur = sample();
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        encode_create(&mut w, 7, 1, &cur).unwrap();
        encode_remove(&mut w, 7).unwrap();
        let mut r = Reader::new(w.written());
        let create = DeltaRecord::decode(&mut r).unwrap();
        assert_eq!(create.kind, RecordKind::Create { entity_type: 1 });
        assert_eq!(create.apply(&QuantizedEntity::default()).unwrap(), cur);
        let remove = DeltaRecord::decode(&mut r).unwrap();
        assert_eq!(remove.kind, RecordKind::Remove);
        assert!(r.is_empty());
    }

    #[test]
    fn full_buffer_leaves_writer_unchanged() {
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.u8(9).unwrap();
        assert!(encode_create(&mut w, 7, 1, &sample()).is_err());
        assert_eq!(w.position(), 1);
    }
}
