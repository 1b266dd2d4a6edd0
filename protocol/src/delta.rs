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
//!
//! # Hot paths
//!
//! A server fills a datagram with records through [`DeltaSyncWriter`],
//! which writes them in place behind the DeltaSync header. While
//! [`MAX_RECORD_LEN`] bytes are left, a record is written in one pass
//! without a check per field; near the end of the buffer it is written
//! field by field, all or nothing. A receiver reads a [`RecordHeader`],
//! finds the entity's state, and decodes the fields straight onto it with
//! [`RecordHeader::decode_apply`]. The decoders first try a fast path that
//! accepts only records the careful, field-by-field path accepts with the
//! same result, and leave everything else (any error included) to the
//! careful path, so that errors and their order are those of
//! [`DeltaRecord::decode`] followed by [`DeltaRecord::apply`].

use crate::quant::{QuantizedPosition, QuantizedRotation};
use crate::wire::buf::{MAX_VARINT_SLOT, VarintSlot};
use crate::wire::game::server_type;
use crate::wire::{EncodeError, Mark, Reader, WireError, Writer};

crate::flags! {
    /// Which fields a delta record carries. Every bit has a meaning.
    pub struct DeltaFlags(u8) {
        /// Position changed (seed value).
        POSITION = 0x01,
        /// Rotation changed (seed value).
        ROTATION = 0x02,
        /// Animation state changed (seed value).
        ANIM_STATE = 0x04,
        /// State flags, buffs, HP or MP changed (seed value).
        FLAGS = 0x08,
        /// Velocity changed (seed value).
        VELOCITY = 0x10,
        /// Extension: the rotation is sent in full (pitch, yaw, roll).
        FULL_ROTATION = 0x20,
        /// Extension: the position is absolute, with its quadrant.
        QUADRANT = 0x40,
        /// Extension: the entity enters the receiver's view; a type byte follows.
        CREATE = 0x80,
    }
}

impl DeltaFlags {
    /// All five seed fields.
    pub const ALL: Self = Self(0x1f);
    /// The empty set, which on the wire means Remove.
    pub const REMOVE: Self = Self(0);

    /// Flags from a wire byte (every bit has a meaning).
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
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
#[inline]
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
#[inline(always)]
pub fn encode_update(
    w: &mut Writer<'_>,
    entity_id: u32,
    baseline_age: u32,
    baseline: &QuantizedEntity,
    current: &QuantizedEntity,
) -> Result<(), EncodeError> {
    let header = Header::Update(baseline_age);
    // Fast path: with room for the largest record, no field can fail.
    if let Some(window) = w.spare() {
        let n = put_record(window, entity_id, header, baseline, current);
        w.advance(n);
        return Ok(());
    }
    let mut flags = diff(baseline, current);
    if flags == DeltaFlags::default() {
        // Zero means Remove on the wire: send an empty position delta.
        flags = DeltaFlags::POSITION;
    }
    encode_fields(w, entity_id, flags, header, baseline, current)
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
    let header = Header::Create(entity_type);
    if let Some(window) = w.spare() {
        let n = put_record(window, entity_id, header, &zero, current);
        w.advance(n);
        return Ok(());
    }
    let mut flags = diff(&zero, current);
    flags.insert(DeltaFlags::CREATE);
    // Creates always carry an absolute position.
    flags.insert(DeltaFlags::POSITION);
    flags.insert(DeltaFlags::QUADRANT);
    encode_fields(w, entity_id, flags, header, &zero, current)
}

/// Writes a Remove record (all or nothing, like every record).
pub fn encode_remove(w: &mut Writer<'_>, entity_id: u32) -> Result<(), EncodeError> {
    let mark = w.save();
    let result = w
        .varint(u64::from(entity_id))
        .and_then(|()| w.u8(DeltaFlags::REMOVE.bits()));
    if result.is_err() {
        w.restore(mark);
    }
    result
}

/// Writes a DeltaSync message (see `wire::game::ServerMessage::DeltaSync`)
/// in place: the header first, then each record straight behind it as the
/// caller adds it, then the record count, which the writer keeps. This is
/// how a server fills a datagram with records without building them
/// elsewhere and copying them in; the bytes are exactly those that
/// `ServerMessage::DeltaSync` encodes. Each record is all or nothing, so a
/// caller adds records until one fails for lack of room and then finishes.
#[derive(Debug)]
#[must_use = "a DeltaSync begun in place must be finished"]
pub struct DeltaSyncWriter {
    start: Mark,
    count_slot: VarintSlot,
    count: u32,
}

impl DeltaSyncWriter {
    /// The most records one DeltaSync written in place may hold (the count
    /// has two bytes reserved).
    pub const MAX_RECORDS: u32 = MAX_VARINT_SLOT as u32;

    /// Writes the message type and header and reserves the record count.
    /// All or nothing.
    #[inline]
    pub fn begin(
        w: &mut Writer<'_>,
        tick: u32,
        baseline_tick: u32,
        input_ack: u32,
    ) -> Result<Self, EncodeError> {
        // Type (1), three u32 (12), count slot (2).
        if w.remaining() < 15 {
            return Err(EncodeError::BufferFull {
                needed: 15,
                available: w.remaining(),
            });
        }
        let start = w.save();
        w.u8(server_type::DELTA_SYNC)?;
        w.u32(tick)?;
        w.u32(baseline_tick)?;
        w.u32(input_ack)?;
        let count_slot = w.reserve_varint_slot()?;
        Ok(Self {
            start,
            count_slot,
            count: 0,
        })
    }

    /// Records written so far.
    #[inline]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The position before the message: [`Writer::restore`] to it abandons
    /// the message.
    #[inline]
    pub fn start(&self) -> Mark {
        self.start
    }

    #[inline]
    fn room_for_one_more(&self) -> Result<(), EncodeError> {
        if self.count >= Self::MAX_RECORDS {
            return Err(EncodeError::TooLong {
                max: Self::MAX_RECORDS as usize,
                found: self.count as usize + 1,
            });
        }
        Ok(())
    }

    /// Adds an update record ([`encode_update`]).
    #[inline]
    pub fn update(
        &mut self,
        w: &mut Writer<'_>,
        entity_id: u32,
        baseline_age: u32,
        baseline: &QuantizedEntity,
        current: &QuantizedEntity,
    ) -> Result<(), EncodeError> {
        self.room_for_one_more()?;
        encode_update(w, entity_id, baseline_age, baseline, current)?;
        self.count += 1;
        Ok(())
    }

    /// Adds a Create record ([`encode_create`]).
    #[inline]
    pub fn create(
        &mut self,
        w: &mut Writer<'_>,
        entity_id: u32,
        entity_type: u8,
        current: &QuantizedEntity,
    ) -> Result<(), EncodeError> {
        self.room_for_one_more()?;
        encode_create(w, entity_id, entity_type, current)?;
        self.count += 1;
        Ok(())
    }

    /// Adds a Remove record ([`encode_remove`]).
    #[inline]
    pub fn remove(&mut self, w: &mut Writer<'_>, entity_id: u32) -> Result<(), EncodeError> {
        self.room_for_one_more()?;
        encode_remove(w, entity_id)?;
        self.count += 1;
        Ok(())
    }

    /// Writes the record count (when it is below 128 the records move down
    /// by one byte) and returns it. Fails only for a writer restored to
    /// before the records' start, and then changes nothing.
    #[inline]
    pub fn finish(self, w: &mut Writer<'_>) -> Result<u32, EncodeError> {
        w.fill_varint_slot(self.count_slot, u64::from(self.count))?;
        Ok(self.count)
    }
}

/// The most bytes one record takes: entity id varint (5), flags (1),
/// baseline age varint (5; a Create's type byte is 1), position (3 zigzag
/// varints of deltas within ±65535: 3 × 3; absolute: 8), full rotation (6),
/// anim (1), status (4), velocity (3 × 3).
pub const MAX_RECORD_LEN: usize = 5 + 1 + 5 + 9 + 6 + 1 + 4 + 9;

/// An infallible cursor over a window that holds any record.
struct Put<'b> {
    buf: &'b mut [u8; MAX_RECORD_LEN],
    n: usize,
}

impl Put<'_> {
    #[inline(always)]
    fn u8(&mut self, value: u8) {
        self.buf[self.n] = value;
        self.n += 1;
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, value: [u8; N]) {
        self.buf[self.n..self.n + N].copy_from_slice(&value);
        self.n += N;
    }

    #[inline(always)]
    fn varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.u8(value as u8 | 0x80);
            value >>= 7;
        }
        self.u8(value as u8);
    }

    /// ZigZag varint of the difference of two `i16`s (at most 3 bytes).
    #[inline(always)]
    fn zigzag_delta(&mut self, current: i16, baseline: i16) {
        let d = i32::from(current) - i32::from(baseline);
        self.varint(((d << 1) ^ (d >> 31)) as u32);
    }
}

/// Writes a whole record into a window that is known to hold it, in one
/// pass over the fields: each is compared with the baseline and, if it
/// changed, written and flagged; the flags byte is filled in last. Returns
/// the record's length. The bytes are exactly those of [`diff`] (with the
/// forced bits of a Create, or the empty position delta of an unchanged
/// entity) followed by [`encode_fields`].
#[inline(always)]
fn put_record(
    out: &mut [u8; MAX_RECORD_LEN],
    entity_id: u32,
    header: Header,
    baseline: &QuantizedEntity,
    current: &QuantizedEntity,
) -> usize {
    let mut p = Put { buf: out, n: 0 };
    p.varint(entity_id);
    let flags_at = p.n;
    p.u8(0);
    // A Create always carries an absolute position.
    let mut flags = match header {
        Header::Create(entity_type) => {
            p.u8(entity_type);
            DeltaFlags::CREATE.0 | DeltaFlags::POSITION.0 | DeltaFlags::QUADRANT.0
        }
        Header::Update(age) => {
            p.varint(age);
            0
        }
    };
    let (c, b) = (&current.position, &baseline.position);
    if flags & DeltaFlags::QUADRANT.0 != 0 || c.quadrant != b.quadrant {
        flags |= DeltaFlags::POSITION.0 | DeltaFlags::QUADRANT.0;
        let [o0, o1, o2] = c.offset;
        let [q0, q1] = c.quadrant.to_le_bytes();
        let [a0, a1] = o0.to_le_bytes();
        let [b0, b1] = o1.to_le_bytes();
        let [c0, c1] = o2.to_le_bytes();
        p.array([q0, q1, a0, a1, b0, b1, c0, c1]);
    } else if c.offset != b.offset {
        flags |= DeltaFlags::POSITION.0;
        p.zigzag_delta(c.offset[0], b.offset[0]);
        p.zigzag_delta(c.offset[1], b.offset[1]);
        p.zigzag_delta(c.offset[2], b.offset[2]);
    }
    let r = current.rotation;
    if r != baseline.rotation {
        flags |= DeltaFlags::ROTATION.0;
        if r.is_yaw_only() {
            p.array(r.yaw.to_le_bytes());
        } else {
            flags |= DeltaFlags::FULL_ROTATION.0;
            let [p0, p1] = r.pitch.to_le_bytes();
            let [y0, y1] = r.yaw.to_le_bytes();
            let [r0, r1] = r.roll.to_le_bytes();
            p.array([p0, p1, y0, y1, r0, r1]);
        }
    }
    if current.anim != baseline.anim {
        flags |= DeltaFlags::ANIM_STATE.0;
        p.u8(current.anim);
    }
    if current.status != baseline.status {
        flags |= DeltaFlags::FLAGS.0;
        let s = current.status;
        p.array([s.state, s.buffs, s.hp, s.mp]);
    }
    if current.velocity != baseline.velocity {
        flags |= DeltaFlags::VELOCITY.0;
        p.zigzag_delta(current.velocity[0], baseline.velocity[0]);
        p.zigzag_delta(current.velocity[1], baseline.velocity[1]);
        p.zigzag_delta(current.velocity[2], baseline.velocity[2]);
    }
    if flags == 0 {
        // Zero means Remove on the wire: an unchanged entity gets an empty
        // position delta, which sits where a position belongs since
        // nothing else was written.
        flags = DeltaFlags::POSITION.0;
        p.array([0, 0, 0]);
    }
    p.buf[flags_at] = flags;
    p.n
}

/// Writes a record with the given flags field by field, all or nothing: the
/// careful path near the end of the buffer.
#[inline(never)]
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

/// The start of a record: which entity, what kind, against which baseline,
/// and which fields follow. Reading the header first lets a receiver find
/// the entity's state, then decode the fields straight onto it with
/// [`RecordHeader::decode_apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// The entity's network id.
    pub entity_id: u32,
    /// Create, update or remove.
    pub kind: RecordKind,
    /// For updates: how many ticks before the snapshot's tick the baseline
    /// state was sent (0 for Create and Remove).
    pub baseline_age: u32,
    /// The fields present.
    pub flags: DeltaFlags,
}

impl RecordHeader {
    /// Reads the entity id, flags, and the entity type (Create) or baseline
    /// age (Update), and checks that the flags are a valid combination.
    #[inline(always)]
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let rest = r.peek_rest();
        let fast = match rest.first_chunk::<WINDOW>() {
            Some(window) => Take::new(Window(window)).header(),
            None => Take::new(Tail(rest)).header(),
        };
        match fast {
            Some((header, n)) => {
                r.advance(n);
                Ok(header)
            }
            // The fast path accepts every valid header, so only the error is
            // left to find (returning just the error keeps the header of the
            // fast path in registers).
            None => Err(Self::decode_error(r)),
        }
    }

    /// The error the careful path reports where the fast path declined.
    #[cold]
    #[inline(never)]
    fn decode_error(r: &mut Reader<'_>) -> WireError {
        match Self::decode_checked(r) {
            Err(e) => e,
            // Not reached: the fast path declines only what the careful
            // path rejects (checked by `fast_and_careful_decoders_agree`).
            Ok(header) => WireError::InvalidValue {
                field: "delta record header",
                value: u64::from(header.flags.bits()),
            },
        }
    }

    /// The careful path: field by field, every error reported.
    #[inline]
    fn decode_checked(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let entity_id = r.varint_u32()?;
        let flags = DeltaFlags::from_bits(r.u8()?);
        let mut header = RecordHeader {
            entity_id,
            kind: RecordKind::Update,
            baseline_age: 0,
            flags,
        };
        if flags == DeltaFlags::REMOVE {
            header.kind = RecordKind::Remove;
            return Ok(header);
        }
        if flags.contains(DeltaFlags::CREATE) {
            header.kind = RecordKind::Create {
                entity_type: r.u8()?,
            };
        } else {
            header.baseline_age = r.varint_u32()?;
        }
        // QUADRANT extends POSITION, FULL_ROTATION extends ROTATION.
        if (flags.contains(DeltaFlags::QUADRANT) && !flags.contains(DeltaFlags::POSITION))
            || (flags.contains(DeltaFlags::FULL_ROTATION) && !flags.contains(DeltaFlags::ROTATION))
        {
            return Err(WireError::InvalidValue {
                field: "delta flags",
                value: u64::from(flags.bits()),
            });
        }
        Ok(header)
    }

    /// Reads the fields that follow this header into a record.
    #[inline]
    pub fn decode_fields(self, r: &mut Reader<'_>) -> Result<DeltaRecord, WireError> {
        self.fields(r)
    }

    /// Reads the fields that follow this header and applies them to
    /// `state`: the receiver's baseline for an Update (replaced by the zero
    /// state for a Create; a Remove leaves it as it is). The same as
    /// [`decode_fields`](Self::decode_fields) followed by
    /// [`DeltaRecord::apply`], same errors in the same order, without the
    /// intermediate record. On any error `state` is unchanged.
    #[inline(always)]
    pub fn decode_apply(
        self,
        r: &mut Reader<'_>,
        state: &mut QuantizedEntity,
    ) -> Result<(), WireError> {
        let rest = r.peek_rest();
        let fast = match rest.first_chunk::<WINDOW>() {
            Some(window) => Take::new(Window(window)).fields_into(self, state),
            None => Take::new(Tail(rest)).fields_into(self, state),
        };
        match fast {
            Some(n) => {
                r.advance(n);
                Ok(())
            }
            None => self.decode_apply_checked(r, state),
        }
    }

    /// The careful path: field by field, every error reported.
    #[inline(never)]
    fn decode_apply_checked(
        self,
        r: &mut Reader<'_>,
        state: &mut QuantizedEntity,
    ) -> Result<(), WireError> {
        let record = self.fields(r)?;
        *state = record.apply_inner(state)?;
        Ok(())
    }

    #[inline(always)]
    fn fields(self, r: &mut Reader<'_>) -> Result<DeltaRecord, WireError> {
        let flags = self.flags;
        let mut record = DeltaRecord {
            entity_id: self.entity_id,
            kind: self.kind,
            baseline_age: self.baseline_age,
            flags,
            position_quadrant: 0,
            position: [0; 3],
            rotation: QuantizedRotation::default(),
            anim: 0,
            status: EntityStatus::default(),
            velocity: [0; 3],
        };
        // Field by field, so that a truncation names the field it hit.
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
}

/// Where the fast path of the record decoders reads bytes from.
trait Source: Copy {
    /// The byte at `i`, if there is one.
    fn at(self, i: usize) -> Option<u8>;
    /// The `N` (at most 8) bytes from `i`, if there are so many.
    fn chunk<const N: usize>(self, i: usize) -> Option<[u8; N]>;
    /// Whether a read that consumed `n` bytes stayed inside.
    fn holds(self, n: usize) -> bool;
}

/// The unread bytes near the end of a buffer: every read is checked.
#[derive(Clone, Copy)]
struct Tail<'b>(&'b [u8]);

impl Source for Tail<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> Option<u8> {
        self.0.get(i).copied()
    }
    #[inline(always)]
    fn chunk<const N: usize>(self, i: usize) -> Option<[u8; N]> {
        self.0.get(i..)?.first_chunk::<N>().copied()
    }
    #[inline(always)]
    fn holds(self, n: usize) -> bool {
        n <= self.0.len()
    }
}

/// A window of [`WINDOW`] unread bytes, more than one header or one set of
/// fields can take in the fast path (at most 11 and 41 bytes, every varint
/// at most 5 bytes): reads are masked into the window instead of checked,
/// so they cannot fail, and [`Source::holds`] rejects anything that went
/// past [`WINDOW_READ`].
#[derive(Clone, Copy)]
struct Window<'b>(&'b [u8; WINDOW]);

/// Bytes a [`Window`] can be read at (a power of two, for the mask).
const WINDOW_READ: usize = 64;
/// Window length: the readable part plus room for the widest read (8).
const WINDOW: usize = WINDOW_READ + 8;

impl Source for Window<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> Option<u8> {
        Some(self.0[i & (WINDOW_READ - 1)])
    }
    #[inline(always)]
    fn chunk<const N: usize>(self, i: usize) -> Option<[u8; N]> {
        let start = i & (WINDOW_READ - 1);
        self.0[start..].first_chunk::<N>().copied()
    }
    #[inline(always)]
    fn holds(self, n: usize) -> bool {
        n <= WINDOW_READ
    }
}

/// The fast path of the record decoders: reads the common case (varints of
/// canonical encoding that fit their field, valid flags, deltas that stay
/// in range) and declines (`None`) anything else, including running out of
/// bytes, so that the careful path, starting over from the same position,
/// decides and reports it. Whatever it accepts, the careful path accepts
/// with the same result.
struct Take<S> {
    src: S,
    n: usize,
}

impl<S: Source> Take<S> {
    #[inline(always)]
    fn u8(&mut self) -> Option<u8> {
        let b = self.src.at(self.n)?;
        self.n += 1;
        Some(b)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let a = self.src.chunk::<N>(self.n)?;
        self.n += N;
        Some(a)
    }

    /// A canonical varint that fits a `u32` (1 to 5 bytes).
    #[inline(always)]
    fn varint_u32(&mut self) -> Option<u32> {
        let b0 = self.u8()?;
        if b0 < 0x80 {
            return Some(u32::from(b0));
        }
        self.varint_u32_tail(u32::from(b0 & 0x7f))
    }

    /// Bytes 2 to 5 of a varint whose first group is `value`.
    #[inline(always)]
    fn varint_u32_tail(&mut self, mut value: u32) -> Option<u32> {
        for i in 1..5 {
            let b = self.u8()?;
            // The fifth byte holds bits 28 to 31 only.
            if i == 4 && b > 0x0f {
                return None;
            }
            value |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // A final zero group would be an overlong encoding.
                return if b == 0 { None } else { Some(value) };
            }
        }
        None
    }

    /// A ZigZag varint that fits an `i32`.
    #[inline(always)]
    fn zigzag_i32(&mut self) -> Option<i32> {
        let v = self.varint_u32()?;
        Some(((v >> 1) as i32) ^ -((v & 1) as i32))
    }

    #[inline(always)]
    fn new(src: S) -> Self {
        Self { src, n: 0 }
    }

    /// What [`RecordHeader::decode_checked`] reads, and its length.
    #[inline(always)]
    fn header(mut self) -> Option<(RecordHeader, usize)> {
        let entity_id = self.varint_u32()?;
        let flags = DeltaFlags::from_bits(self.u8()?);
        if flags == DeltaFlags::REMOVE {
            if !self.src.holds(self.n) {
                return None;
            }
            let header = RecordHeader {
                entity_id,
                kind: RecordKind::Remove,
                baseline_age: 0,
                flags,
            };
            return Some((header, self.n));
        }
        let (kind, baseline_age) = if flags.contains(DeltaFlags::CREATE) {
            let entity_type = self.u8()?;
            (RecordKind::Create { entity_type }, 0)
        } else {
            (RecordKind::Update, self.varint_u32()?)
        };
        if (flags.contains(DeltaFlags::QUADRANT) && !flags.contains(DeltaFlags::POSITION))
            || (flags.contains(DeltaFlags::FULL_ROTATION) && !flags.contains(DeltaFlags::ROTATION))
            || !self.src.holds(self.n)
        {
            return None;
        }
        let header = RecordHeader {
            entity_id,
            kind,
            baseline_age,
            flags,
        };
        Some((header, self.n))
    }

    /// What [`RecordHeader::fields`] reads followed by
    /// [`DeltaRecord::apply`] onto `state`, in one pass: every field is read
    /// and checked first, then only the fields present are written, so a
    /// declined record leaves `state` as it was. Returns the length read.
    #[inline(always)]
    fn fields_into(mut self, header: RecordHeader, state: &mut QuantizedEntity) -> Option<usize> {
        let f = header.flags;
        let create = match header.kind {
            RecordKind::Create { .. } => true,
            RecordKind::Update => false,
            // A decoded Remove has no field bits; leave any other (a header
            // built by hand) to the careful path.
            RecordKind::Remove if f == DeltaFlags::REMOVE => return Some(0),
            RecordKind::Remove => return None,
        };
        // A Create is against the zero state.
        let (base_offset, base_velocity) = if create {
            ([0; 3], [0; 3])
        } else {
            (state.position.offset, state.velocity)
        };
        let mut quadrant = None;
        let mut offset = None;
        if f.contains(DeltaFlags::POSITION) {
            if f.contains(DeltaFlags::QUADRANT) {
                let [q0, q1, a0, a1, b0, b1, c0, c1] = self.array::<8>()?;
                quadrant = Some(u16::from_le_bytes([q0, q1]));
                offset = Some([
                    i16::from_le_bytes([a0, a1]),
                    i16::from_le_bytes([b0, b1]),
                    i16::from_le_bytes([c0, c1]),
                ]);
            } else {
                let d = [self.zigzag_i32()?, self.zigzag_i32()?, self.zigzag_i32()?];
                offset = Some(add_i16x3(base_offset, d).ok()?);
            }
        }
        let mut rotation = None;
        if f.contains(DeltaFlags::ROTATION) {
            rotation = Some(if f.contains(DeltaFlags::FULL_ROTATION) {
                let [p0, p1, y0, y1, r0, r1] = self.array::<6>()?;
                QuantizedRotation {
                    pitch: u16::from_le_bytes([p0, p1]),
                    yaw: u16::from_le_bytes([y0, y1]),
                    roll: u16::from_le_bytes([r0, r1]),
                }
            } else {
                QuantizedRotation {
                    pitch: 0,
                    yaw: u16::from_le_bytes(self.array::<2>()?),
                    roll: 0,
                }
            });
        }
        let mut anim = None;
        if f.contains(DeltaFlags::ANIM_STATE) {
            anim = Some(self.u8()?);
        }
        let mut status = None;
        if f.contains(DeltaFlags::FLAGS) {
            let [state, buffs, hp, mp] = self.array::<4>()?;
            status = Some(EntityStatus {
                state,
                buffs,
                hp,
                mp,
            });
        }
        let mut velocity = None;
        if f.contains(DeltaFlags::VELOCITY) {
            let d = [self.zigzag_i32()?, self.zigzag_i32()?, self.zigzag_i32()?];
            velocity = Some(add_i16x3(base_velocity, d).ok()?);
        }
        if !self.src.holds(self.n) {
            return None;
        }
        // The whole record is good: write what it carries.
        if create {
            *state = QuantizedEntity::default();
        }
        if let Some(q) = quadrant {
            state.position.quadrant = q;
        }
        if let Some(o) = offset {
            state.position.offset = o;
        }
        if let Some(r) = rotation {
            state.rotation = r;
        }
        if let Some(a) = anim {
            state.anim = a;
        }
        if let Some(s) = status {
            state.status = s;
        }
        if let Some(v) = velocity {
            state.velocity = v;
        }
        Some(self.n)
    }
}

impl DeltaRecord {
    /// Reads one record.
    #[inline]
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        // A Remove has no field bits, so it reads nothing more.
        RecordHeader::decode(r)?.fields(r)
    }

    /// The record's header.
    #[inline]
    pub fn header(&self) -> RecordHeader {
        RecordHeader {
            entity_id: self.entity_id,
            kind: self.kind,
            baseline_age: self.baseline_age,
            flags: self.flags,
        }
    }

    /// The state after this record, given the receiver's baseline (ignored
    /// for Create, which is against the zero state). Fails if a relative
    /// field would leave its integer range: the record does not belong to
    /// this baseline.
    #[inline]
    pub fn apply(&self, baseline: &QuantizedEntity) -> Result<QuantizedEntity, WireError> {
        self.apply_inner(baseline)
    }

    #[inline(always)]
    fn apply_inner(&self, baseline: &QuantizedEntity) -> Result<QuantizedEntity, WireError> {
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
                // Absolute offsets: the decoder read them as i16, but a
                // record built by hand may hold anything, and a silent
                // truncation would place the entity elsewhere.
                out.position.offset = absolute_i16x3(self.position)?;
            } else {
                out.position.offset = add_i16x3(base.position.offset, self.position)?;
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
            out.velocity = add_i16x3(base.velocity, self.velocity)?;
        }
        Ok(out)
    }
}

/// `base + delta` per component; the first component that leaves the
/// `i16` range names the error.
#[inline(always)]
fn add_i16x3(base: [i16; 3], delta: [i32; 3]) -> Result<[i16; 3], WireError> {
    // The delta is any i32 the wire carried: in i32 arithmetic `base +
    // delta` overflows (a panic with overflow checks, a wrapped and wrongly
    // accepted value without). In i64 the sum is always exact, and still
    // branch-free for the fast path.
    let sum = [
        i64::from(base[0]) + i64::from(delta[0]),
        i64::from(base[1]) + i64::from(delta[1]),
        i64::from(base[2]) + i64::from(delta[2]),
    ];
    let fits = |v: i64| v == i64::from(v as i16);
    if fits(sum[0]) && fits(sum[1]) && fits(sum[2]) {
        return Ok(sum.map(|v| v as i16));
    }
    Err(out_of_range(base, delta))
}

/// Absolute offsets carried as i32: each must fit an i16.
fn absolute_i16x3(v: [i32; 3]) -> Result<[i16; 3], WireError> {
    let mut out = [0i16; 3];
    for (o, &x) in out.iter_mut().zip(&v) {
        *o = i16::try_from(x).map_err(|_| WireError::InvalidValue {
            field: "absolute offset out of range",
            value: x.unsigned_abs().into(),
        })?;
    }
    Ok(out)
}

#[cold]
#[inline(never)]
fn out_of_range(base: [i16; 3], delta: [i32; 3]) -> WireError {
    // `and` keeps the first error.
    match add_i16(base[0], delta[0])
        .and(add_i16(base[1], delta[1]))
        .and(add_i16(base[2], delta[2]))
    {
        Err(e) => e,
        // Not reached: called only when a component is out of range.
        Ok(_) => WireError::InvalidValue {
            field: "delta out of range",
            value: 0,
        },
    }
}

fn add_i16(base: i16, delta: i32) -> Result<i16, WireError> {
    // i64: exact for every wire delta (see `add_i16x3`).
    i16::try_from(i64::from(base) + i64::from(delta)).map_err(|_| WireError::InvalidValue {
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

    /// The record encoder and decoder as they were before the fast paths,
    /// kept verbatim as the reference the fast paths must agree with.
    mod reference {
        use super::super::*;

        pub(super) fn encode_update(
            w: &mut Writer<'_>,
            entity_id: u32,
            baseline_age: u32,
            baseline: &QuantizedEntity,
            current: &QuantizedEntity,
        ) -> Result<(), EncodeError> {
            let mut flags = diff(baseline, current);
            if flags == DeltaFlags::default() {
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

        pub(super) fn encode_create(
            w: &mut Writer<'_>,
            entity_id: u32,
            entity_type: u8,
            current: &QuantizedEntity,
        ) -> Result<(), EncodeError> {
            let zero = QuantizedEntity::default();
            let mut flags = diff(&zero, current);
            flags.insert(DeltaFlags::CREATE);
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

        pub(super) fn encode_fields(
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

        /// Reads one record.
        pub(super) fn decode(r: &mut Reader<'_>) -> Result<DeltaRecord, WireError> {
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
        pub(super) fn apply(
            this: &DeltaRecord,
            baseline: &QuantizedEntity,
        ) -> Result<QuantizedEntity, WireError> {
            let base = match this.kind {
                RecordKind::Create { .. } => QuantizedEntity::default(),
                RecordKind::Update => *baseline,
                RecordKind::Remove => return Ok(*baseline),
            };
            let mut out = base;
            let f = this.flags;
            if f.contains(DeltaFlags::POSITION) {
                if f.contains(DeltaFlags::QUADRANT) {
                    out.position.quadrant = this.position_quadrant;
                    out.position.offset = this.position.map(|v| v as i16);
                } else {
                    for i in 0..3 {
                        out.position.offset[i] =
                            add_i16(base.position.offset[i], this.position[i])?;
                    }
                }
            }
            if f.contains(DeltaFlags::ROTATION) {
                out.rotation = this.rotation;
            }
            if f.contains(DeltaFlags::ANIM_STATE) {
                out.anim = this.anim;
            }
            if f.contains(DeltaFlags::FLAGS) {
                out.status = this.status;
            }
            if f.contains(DeltaFlags::VELOCITY) {
                for i in 0..3 {
                    out.velocity[i] = add_i16(base.velocity[i], this.velocity[i])?;
                }
            }
            Ok(out)
        }
    }

    use proptest::prelude::*;

    fn entity_strategy() -> impl Strategy<Value = QuantizedEntity> {
        (
            any::<u16>(),
            any::<[i16; 3]>(),
            any::<[u16; 3]>(),
            any::<u8>(),
            any::<[u8; 4]>(),
            any::<[i16; 3]>(),
            any::<bool>(),
        )
            .prop_map(|(quadrant, offset, rot, anim, st, velocity, yaw_only)| {
                QuantizedEntity {
                    position: QuantizedPosition { quadrant, offset },
                    rotation: QuantizedRotation {
                        pitch: if yaw_only { 0 } else { rot[0] },
                        yaw: rot[1],
                        roll: if yaw_only { 0 } else { rot[2] },
                    },
                    anim,
                    status: EntityStatus {
                        state: st[0],
                        buffs: st[1],
                        hp: st[2],
                        mp: st[3],
                    },
                    velocity,
                }
            })
    }

    /// A baseline and a current state that differ in a random subset of
    /// fields, by small or arbitrary amounts.
    fn pair_strategy() -> impl Strategy<Value = (QuantizedEntity, QuantizedEntity)> {
        (
            entity_strategy(),
            entity_strategy(),
            any::<[bool; 6]>(),
            any::<[i8; 6]>(),
            any::<bool>(),
        )
            .prop_map(|(base, other, take, small, nudge)| {
                let mut cur = base;
                if take[0] {
                    cur.position.quadrant = other.position.quadrant;
                }
                if take[1] {
                    cur.position.offset = if nudge {
                        [0, 1, 2].map(|i| base.position.offset[i].wrapping_add(small[i].into()))
                    } else {
                        other.position.offset
                    };
                }
                if take[2] {
                    cur.rotation = other.rotation;
                }
                if take[3] {
                    cur.anim = other.anim;
                }
                if take[4] {
                    cur.status = other.status;
                }
                if take[5] {
                    cur.velocity = if nudge {
                        [3, 4, 5].map(|i| base.velocity[i - 3].wrapping_add(small[i].into()))
                    } else {
                        other.velocity
                    };
                }
                (base, cur)
            })
    }

    /// Runs an encoder into buffers of every size up to `room` past the
    /// record's length and compares with the reference encoder: same bytes,
    /// same errors, and on an error a writer where it was.
    fn check_encoder(
        ours: impl Fn(&mut Writer<'_>) -> Result<(), EncodeError>,
        theirs: impl Fn(&mut Writer<'_>) -> Result<(), EncodeError>,
    ) -> Result<(), TestCaseError> {
        let mut full = [0u8; 128];
        let mut w = Writer::new(&mut full);
        theirs(&mut w).unwrap();
        let len = w.position();
        prop_assert!(len <= MAX_RECORD_LEN);
        for size in 0..len + MAX_RECORD_LEN + 2 {
            // Start one byte in, so the record is not at the buffer start.
            let (mut a, mut b) = ([0xeeu8; 128], [0xeeu8; 128]);
            let mut wa = Writer::new(&mut a[..size + 1]);
            let mut wb = Writer::new(&mut b[..size + 1]);
            wa.u8(9).unwrap();
            wb.u8(9).unwrap();
            let (ra, rb) = (ours(&mut wa), theirs(&mut wb));
            prop_assert_eq!(ra, rb, "size {}", size);
            prop_assert_eq!(wa.written(), wb.written(), "size {}", size);
            if ra.is_err() {
                prop_assert_eq!(wa.position(), 1);
            }
        }
        Ok(())
    }

    /// Decodes `bytes` (followed by `pad` more bytes, so that both the
    /// windowed and the near-the-end fast paths run) every way there is and
    /// compares with the reference decoder.
    fn check_decoders(
        bytes: &[u8],
        pad: usize,
        baseline: &QuantizedEntity,
    ) -> Result<(), TestCaseError> {
        let mut buf = bytes.to_vec();
        buf.extend((0..pad).map(|i| i as u8));
        let input = &buf[..];
        let mut r0 = Reader::new(input);
        let want = reference::decode(&mut r0);
        let want_applied = want.and_then(|rec| reference::apply(&rec, baseline));

        let mut r1 = Reader::new(input);
        let got = DeltaRecord::decode(&mut r1);
        prop_assert_eq!(got, want);
        if got.is_ok() {
            prop_assert_eq!(r1.position(), r0.position());
        }
        prop_assert_eq!(got.and_then(|rec| rec.apply(baseline)), want_applied);

        let mut r2 = Reader::new(input);
        let mut state = *baseline;
        let got = match RecordHeader::decode(&mut r2) {
            Ok(h) => {
                if let Ok(rec) = want {
                    prop_assert_eq!(h, rec.header());
                }
                h.decode_apply(&mut r2, &mut state).map(|()| state)
            }
            Err(e) => Err(e),
        };
        match (got, want_applied) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a, b);
                prop_assert_eq!(r2.position(), r0.position());
            }
            (Err(a), Err(b)) => {
                prop_assert_eq!(a, b);
                // A failed record leaves the state as it was.
                prop_assert_eq!(state, *baseline);
            }
            (a, b) => prop_assert!(false, "decode_apply {:?}, reference {:?}", a, b),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn fast_and_careful_encoders_agree(
            (base, cur) in pair_strategy(),
            id in prop_oneof![0u32..300, any::<u32>()],
            age in prop_oneof![1u32..8, any::<u32>()],
            ty in any::<u8>(),
        ) {
            check_encoder(
                |w| encode_update(w, id, age, &base, &cur),
                |w| reference::encode_update(w, id, age, &base, &cur),
            )?;
            check_encoder(
                |w| encode_create(w, id, ty, &cur),
                |w| reference::encode_create(w, id, ty, &cur),
            )?;
        }

        #[test]
        fn fast_and_careful_decoders_agree(
            (base, cur) in pair_strategy(),
            receiver in entity_strategy(),
            id in prop_oneof![0u32..300, any::<u32>()],
            age in prop_oneof![1u32..8, any::<u32>()],
            kind in 0u8..3,
            cut in any::<prop::sample::Index>(),
            flip in any::<Option<(prop::sample::Index, u8)>>(),
            pad in prop_oneof![Just(0usize), 0usize..100],
        ) {
            let mut buf = [0u8; 64];
            let mut w = Writer::new(&mut buf);
            match kind {
                0 => encode_update(&mut w, id, age, &base, &cur).unwrap(),
                1 => encode_create(&mut w, id, 3, &cur).unwrap(),
                _ => encode_remove(&mut w, id).unwrap(),
            }
            let mut bytes = w.written().to_vec();
            // Valid, then cut short, then with one byte changed.
            check_decoders(&bytes, pad, &base)?;
            check_decoders(&bytes, pad, &receiver)?;
            let keep = cut.index(bytes.len() + 1);
            check_decoders(&bytes[..keep], 0, &base)?;
            if let Some((at, value)) = flip {
                let at = at.index(bytes.len());
                bytes[at] = value;
                check_decoders(&bytes, pad, &base)?;
                check_decoders(&bytes, pad, &receiver)?;
            }
        }

        #[test]
        fn arbitrary_bytes_decode_alike(
            bytes in prop::collection::vec(any::<u8>(), 0..96),
            baseline in entity_strategy(),
        ) {
            check_decoders(&bytes, 0, &baseline)?;
        }
    }

    #[test]
    fn every_prefix_fails_like_the_reference() {
        // Truncations must name the field they hit, as the field-by-field
        // reads did (a three-u16 rotation is not one six-byte read).
        check_decoders(&[0, 46, 0, 0, 0, 0], 0, &QuantizedEntity::default()).unwrap();
        let base = sample();
        let mut cur = base;
        cur.position.quadrant += 1;
        cur.rotation.pitch = 7;
        cur.anim += 1;
        cur.status.mp = 1;
        cur.velocity = [1, -300, 9000];
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        encode_update(&mut w, 300, 6, &base, &cur).unwrap();
        encode_create(&mut w, 70_000, 4, &cur).unwrap();
        encode_remove(&mut w, 5).unwrap();
        let bytes = w.written().to_vec();
        for start in 0..bytes.len() {
            for end in start..=bytes.len() {
                for baseline in [base, cur] {
                    check_decoders(&bytes[start..end], 0, &baseline).unwrap();
                }
            }
        }
    }

    #[test]
    fn largest_record_is_max_record_len() {
        let base = QuantizedEntity {
            velocity: [i16::MIN; 3],
            ..QuantizedEntity::default()
        };
        let mut base_pos = base;
        base_pos.position.offset = [i16::MIN; 3];
        let cur = QuantizedEntity {
            position: QuantizedPosition {
                quadrant: 0,
                offset: [i16::MAX; 3],
            },
            rotation: QuantizedRotation {
                pitch: 1,
                yaw: 2,
                roll: 3,
            },
            anim: 1,
            status: EntityStatus {
                state: 1,
                buffs: 1,
                hp: 1,
                mp: 1,
            },
            velocity: [i16::MAX; 3],
        };
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        encode_update(&mut w, u32::MAX, u32::MAX, &base_pos, &cur).unwrap();
        assert_eq!(w.position(), MAX_RECORD_LEN);
        let mut r = Reader::new(w.written());
        let head = RecordHeader::decode(&mut r).unwrap();
        let mut state = base_pos;
        head.decode_apply(&mut r, &mut state).unwrap();
        assert_eq!(state, cur);
        assert!(r.is_empty());
    }

    #[test]
    fn remove_is_all_or_nothing() {
        // Room for the two-byte id but not the flags byte.
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u8(1).unwrap();
        assert!(matches!(
            encode_remove(&mut w, 300),
            Err(EncodeError::BufferFull { .. })
        ));
        assert_eq!(w.position(), 1);
    }

    #[test]
    fn decode_apply_leaves_state_on_error() {
        let mut base = sample();
        base.position.offset[0] = 0;
        let mut far = base;
        far.position.offset[0] = 30_000;
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        encode_update(&mut w, 1, 1, &base, &far).unwrap();
        let bytes = w.written().to_vec();
        // Against a baseline the record does not belong to, the delta leaves
        // the i16 range.
        let mut wrong = base;
        wrong.position.offset[0] = 10_000;
        let mut state = wrong;
        let mut r = Reader::new(&bytes);
        let head = RecordHeader::decode(&mut r).unwrap();
        assert!(matches!(
            head.decode_apply(&mut r, &mut state),
            Err(WireError::InvalidValue { .. })
        ));
        assert_eq!(state, wrong);
        // Cut short.
        let mut r = Reader::new(&bytes[..bytes.len() - 1]);
        let head = RecordHeader::decode(&mut r).unwrap();
        assert!(matches!(
            head.decode_apply(&mut r, &mut state),
            Err(WireError::Truncated { .. })
        ));
        assert_eq!(state, wrong);
    }

    #[test]
    fn hand_built_header_matches_decode_then_apply() {
        // A Remove header with field bits set reads the fields and keeps
        // the baseline, like DeltaRecord::decode + apply would.
        let header = RecordHeader {
            entity_id: 1,
            kind: RecordKind::Remove,
            baseline_age: 0,
            flags: DeltaFlags::ANIM_STATE,
        };
        let base = sample();
        let mut state = base;
        let mut r = Reader::new(&[9, 42]);
        header.decode_apply(&mut r, &mut state).unwrap();
        assert_eq!(state, base);
        assert_eq!(r.position(), 1);
        let rec = header.decode_fields(&mut Reader::new(&[9])).unwrap();
        assert_eq!(rec.apply(&base).unwrap(), base);
    }

    fn delta_sync_bytes(records: usize, via_writer: bool) -> Vec<u8> {
        let base = sample();
        let mut cur = base;
        cur.position.offset[1] += 5;
        let mut buf = vec![0u8; 16 + records * 16];
        let mut w = Writer::new(&mut buf);
        if via_writer {
            let mut sync = DeltaSyncWriter::begin(&mut w, 1000, 994, 5).unwrap();
            for i in 0..records {
                match i % 3 {
                    0 => sync.update(&mut w, i as u32, 6, &base, &cur).unwrap(),
                    1 => sync.create(&mut w, i as u32, 2, &cur).unwrap(),
                    _ => sync.remove(&mut w, i as u32).unwrap(),
                }
            }
            assert_eq!(sync.count(), records as u32);
            assert_eq!(sync.finish(&mut w).unwrap(), records as u32);
        } else {
            let mut rec = vec![0u8; records * 16];
            let mut rw = Writer::new(&mut rec);
            for i in 0..records {
                match i % 3 {
                    0 => encode_update(&mut rw, i as u32, 6, &base, &cur).unwrap(),
                    1 => encode_create(&mut rw, i as u32, 2, &cur).unwrap(),
                    _ => encode_remove(&mut rw, i as u32).unwrap(),
                }
            }
            crate::wire::game::ServerMessage::DeltaSync(crate::wire::game::DeltaSync {
                tick: 1000,
                baseline_tick: 994,
                input_ack: 5,
                record_count: records as u32,
                records: rw.written(),
            })
            .encode(&mut w)
            .unwrap();
        }
        w.written().to_vec()
    }

    #[test]
    fn delta_sync_writer_matches_the_message_encoder() {
        for records in [0, 1, 2, 127, 128, 129, 300] {
            assert_eq!(
                delta_sync_bytes(records, true),
                delta_sync_bytes(records, false),
                "{records} records"
            );
        }
    }

    #[test]
    fn delta_sync_writer_stops_at_a_full_buffer() {
        let base = sample();
        let mut cur = base;
        cur.velocity[0] += 1;
        // Header (15) and a few records of 7 bytes.
        let mut buf = [0u8; 40];
        let mut w = Writer::new(&mut buf);
        assert!(matches!(
            DeltaSyncWriter::begin(&mut Writer::new(&mut [0u8; 14]), 1, 0, 0),
            Err(EncodeError::BufferFull { needed: 15, .. })
        ));
        let mut sync = DeltaSyncWriter::begin(&mut w, 1, 0, 0).unwrap();
        let mut n = 0;
        while sync.update(&mut w, n, 1, &base, &cur).is_ok() {
            n += 1;
        }
        let used = w.position();
        assert_eq!(sync.finish(&mut w).unwrap(), n);
        // The two-byte count slot shrank to one byte.
        assert_eq!(w.position(), used - 1);
        let msg = crate::wire::game::ServerMessage::decode(w.written()).unwrap();
        let crate::wire::game::ServerMessage::DeltaSync(d) = msg else {
            panic!("not a DeltaSync: {msg:?}")
        };
        assert_eq!(d.record_count, n);
        let mut r = Reader::new(d.records);
        for i in 0..n {
            let head = RecordHeader::decode(&mut r).unwrap();
            assert_eq!(head.entity_id, i);
            let mut state = base;
            head.decode_apply(&mut r, &mut state).unwrap();
            assert_eq!(state, cur);
        }
        assert!(r.is_empty());
    }
}
