//! Moving a player to another node of the cluster: the record that travels
//! with the hand-off (account, character, its state at the crossing) in
//! the game layer's own byte layout, and the one-time transfer ticket the
//! client connects to the new node with.
//!
//! The record is what the store would save plus who the character is, so
//! the receiving node can run the character without loading it: the
//! sending node's state at the moment of crossing is the newest there is.
//!
//! ```text
//! offset size field
//!      0    1 version = 1
//!      1   32 ticket secret (the client's transfer ticket carries it)
//!     33    8 account id, u64 LE
//!     41  1+n account name (varint length ≤ 64, UTF-8)
//!      …    8 character id, u64 LE
//!      …  1+n character name (varint length ≤ 32, UTF-8)
//!      …    2 template u16 LE; 1 faction u8
//!      …   12 position 3 × f32 LE; 4 yaw; 4 hp; 4 mp (f32 LE)
//!      …    2 level u16 LE; 8 exp u64 LE
//!      …  1+n items (varint length ≤ 1,537: tos_store::encode_items)
//!      …    1 buff count b ≤ 7; b × (buff u8, ms left u32 LE, intensity u8)
//!      …    1 cooldown count c ≤ 16; c × (skill id u16 LE, ms left u32 LE)
//!      …    4 consumable cooldown, ms left u32 LE
//!      …    1 item cooldown count k ≤ 64; k × (template u16 LE, ms left u32 LE)
//!      …    4 the player's network id on the sending node, u32 LE (0: none)
//! ```
//!
//! Times left are at most one hour (`tos_shards::combat::MAX_CARRIED_MS`):
//! buffs and cooldowns travel with the player, so a crossing neither ends
//! a debuff nor resets a cooldown. The old network id lets the receiver
//! drop the player's ghost from the sender at once (else the arrival would
//! be seen twice until that ghost aged out).
//!
//! Decoding checks every field (finite numbers, lengths, the items'
//! own checks) and that nothing follows: a bad record is refused, never
//! run.

use rand_core::{OsRng, RngCore};
use tos_protocol::wire::{Reader, Writer};
use tos_shards::combat::MAX_CARRIED_MS;
use tos_shards::entity::MAX_ACTIONS;
use tos_shards::{Buff, CarriedCombat};
use tos_store::{CharacterId, CharacterState, MAX_SAVED_ITEMS};

use crate::session::AccountRef;

/// The first bytes of a transfer ticket (a session ticket starts "TOST").
pub const TICKET_MAGIC: [u8; 4] = *b"TOSX";
/// The ticket format version after the magic.
pub const TICKET_VERSION: u8 = 1;
/// A transfer ticket's length: magic, version, secret.
pub const TICKET_LEN: usize = 4 + 1 + 32;
/// The record format version (2: buffs and cooldowns carried).
const RECORD_VERSION: u8 = 2;
/// Most item-template cooldowns carried (an inventory has at most 64
/// slots, so at most 64 templates).
pub const MAX_ITEM_COOLDOWNS: usize = 64;
/// Longest account name carried.
const MAX_ACCOUNT_NAME: usize = 64;
/// Longest character name carried.
const MAX_CHARACTER_NAME: usize = 32;
/// Longest items column carried (format byte + 6 bytes per item).
const MAX_ITEMS_BYTES: usize = 1 + MAX_SAVED_ITEMS * 6;
/// Longest record (the engine checks at compile time that it fits the
/// cluster link's payload limit).
pub const MAX_RECORD_LEN: usize = 1
    + 32
    + 8
    + 2
    + MAX_ACCOUNT_NAME
    + 8
    + 1
    + MAX_CHARACTER_NAME
    + 3
    + 24
    + 10
    + 2
    + MAX_ITEMS_BYTES
    + 1
    + Buff::ALL.len() * 6
    + 1
    + MAX_ACTIONS * 6
    + 4
    + 1
    + MAX_ITEM_COOLDOWNS * 6
    + 4;

/// The secret of one transfer: random, used once.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransferSecret([u8; 32]);

impl core::fmt::Debug for TransferSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // A bearer secret: never in a log.
        f.write_str("TransferSecret(..)")
    }
}

impl TransferSecret {
    /// A fresh secret from the operating system's generator.
    pub fn random() -> Self {
        let mut s = [0u8; 32];
        OsRng.fill_bytes(&mut s);
        Self(s)
    }

    /// The ticket the client presents to the new node.
    pub fn ticket(&self) -> [u8; TICKET_LEN] {
        let mut t = [0u8; TICKET_LEN];
        t[..4].copy_from_slice(&TICKET_MAGIC);
        t[4] = TICKET_VERSION;
        t[5..].copy_from_slice(&self.0);
        t
    }

    /// The secret of a transfer ticket; `None` for anything else (a
    /// session ticket, garbage, another version).
    pub fn from_ticket(ticket: &[u8]) -> Option<Self> {
        if ticket.len() != TICKET_LEN || ticket[..4] != TICKET_MAGIC || ticket[4] != TICKET_VERSION
        {
            return None;
        }
        let mut s = [0u8; 32];
        s.copy_from_slice(&ticket[5..]);
        Some(Self(s))
    }

    /// Whether `ticket` looks like a transfer ticket (magic only): such a
    /// ticket is never sent to the session-ticket verifier.
    pub fn is_transfer_ticket(ticket: &[u8]) -> bool {
        ticket.starts_with(&TICKET_MAGIC)
    }
}

/// A player on its way to another node.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferRecord {
    /// The one-time secret of its ticket.
    pub secret: TransferSecret,
    /// The account playing it.
    pub account: AccountRef,
    /// Its name.
    pub name: String,
    /// Its template.
    pub template: u16,
    /// Its faction id.
    pub faction: u8,
    /// Its state at the crossing (position: on the new node's ground).
    pub state: CharacterState,
    /// Its buffs and cooldowns at the crossing.
    pub combat: CarriedCombat,
    /// Its item-template cooldowns at the crossing: (template, ms left).
    pub item_cooldowns: Vec<(u16, u32)>,
    /// Its network id on the sending node (0: none, it was not in the
    /// world there): the receiver drops its ghost of it.
    pub ghost_id: u32,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "transfer record: {}", self.0)
    }
}

impl TransferRecord {
    /// The character's id.
    pub fn character(&self) -> u64 {
        self.state.id.0
    }

    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let items = tos_store::encode_items(&self.state.items)
            .map_err(|e| RecordError(format!("items: {e}")))?;
        let mut buf = vec![0u8; MAX_RECORD_LEN];
        let mut w = Writer::new(&mut buf);
        let s = &self.state;
        let written = (|| {
            w.u8(RECORD_VERSION)?;
            w.bytes(&self.secret.0)?;
            w.u64(self.account.id)?;
            w.str(&self.account.name, MAX_ACCOUNT_NAME)?;
            w.u64(s.id.0)?;
            w.str(&self.name, MAX_CHARACTER_NAME)?;
            w.u16(self.template)?;
            w.u8(self.faction)?;
            for v in s.position {
                w.f32(v)?;
            }
            w.f32(s.yaw)?;
            w.f32(s.hp)?;
            w.f32(s.mp)?;
            w.u16(s.level)?;
            w.u64(s.exp)?;
            w.len_prefixed(&items, MAX_ITEMS_BYTES)?;
            let c = &self.combat;
            w.u8(c.buffs.len().min(Buff::ALL.len()) as u8)?;
            for &(buff, ms, intensity) in c.buffs.iter().take(Buff::ALL.len()) {
                w.u8(buff as u8)?;
                w.u32(ms.min(MAX_CARRIED_MS))?;
                w.u8(intensity)?;
            }
            w.u8(c.cooldowns.len().min(MAX_ACTIONS) as u8)?;
            for &(skill, ms) in c.cooldowns.iter().take(MAX_ACTIONS) {
                w.u16(skill)?;
                w.u32(ms.min(MAX_CARRIED_MS))?;
            }
            w.u32(c.consumable_ms.min(MAX_CARRIED_MS))?;
            let items = &self.item_cooldowns;
            w.u8(items.len().min(MAX_ITEM_COOLDOWNS) as u8)?;
            for &(template, ms) in items.iter().take(MAX_ITEM_COOLDOWNS) {
                w.u16(template)?;
                w.u32(ms.min(MAX_CARRIED_MS))?;
            }
            w.u32(self.ghost_id)?;
            Ok::<usize, tos_protocol::wire::EncodeError>(w.position())
        })()
        .map_err(|e| RecordError(format!("{e:?}")))?;
        buf.truncate(written);
        Ok(buf)
    }

    /// Reads a record; every field is checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let bad = |what: &str| RecordError(what.to_owned());
        let mut r = Reader::new(bytes);
        let wire = |e: tos_protocol::wire::WireError| RecordError(format!("{e:?}"));
        if r.u8().map_err(wire)? != RECORD_VERSION {
            return Err(bad("unknown version"));
        }
        let secret = TransferSecret(r.array().map_err(wire)?);
        let account = AccountRef {
            id: r.u64().map_err(wire)?,
            name: r.str(MAX_ACCOUNT_NAME).map_err(wire)?.to_owned(),
        };
        let id = CharacterId(r.u64().map_err(wire)?);
        let name = r.str(MAX_CHARACTER_NAME).map_err(wire)?.to_owned();
        let template = r.u16().map_err(wire)?;
        let faction = r.u8().map_err(wire)?;
        let mut position = [0f32; 3];
        for v in &mut position {
            *v = r.f32().map_err(wire)?;
        }
        let yaw = r.f32().map_err(wire)?;
        let hp = r.f32().map_err(wire)?;
        let mp = r.f32().map_err(wire)?;
        let level = r.u16().map_err(wire)?;
        let exp = r.u64().map_err(wire)?;
        let items = tos_store::decode_items(r.len_prefixed(MAX_ITEMS_BYTES).map_err(wire)?)
            .map_err(|e| RecordError(format!("items: {e}")))?;
        let ms = |r: &mut Reader<'_>| -> Result<u32, RecordError> {
            let v = r.u32().map_err(wire)?;
            if v > MAX_CARRIED_MS {
                return Err(bad("a time left over an hour"));
            }
            Ok(v)
        };
        let mut combat = CarriedCombat::default();
        let buffs = usize::from(r.u8().map_err(wire)?);
        if buffs > Buff::ALL.len() {
            return Err(bad("too many buffs"));
        }
        for _ in 0..buffs {
            let buff = *Buff::ALL
                .get(usize::from(r.u8().map_err(wire)?))
                .ok_or_else(|| bad("unknown buff"))?;
            let left = ms(&mut r)?;
            combat.buffs.push((buff, left, r.u8().map_err(wire)?));
        }
        let cooldowns = usize::from(r.u8().map_err(wire)?);
        if cooldowns > MAX_ACTIONS {
            return Err(bad("too many cooldowns"));
        }
        for _ in 0..cooldowns {
            let skill = r.u16().map_err(wire)?;
            combat.cooldowns.push((skill, ms(&mut r)?));
        }
        combat.consumable_ms = ms(&mut r)?;
        let count = usize::from(r.u8().map_err(wire)?);
        if count > MAX_ITEM_COOLDOWNS {
            return Err(bad("too many item cooldowns"));
        }
        let mut item_cooldowns = Vec::with_capacity(count);
        for _ in 0..count {
            let template = r.u16().map_err(wire)?;
            item_cooldowns.push((template, ms(&mut r)?));
        }
        let ghost_id = r.u32().map_err(wire)?;
        r.finish().map_err(wire)?;
        if !position
            .iter()
            .chain([&yaw, &hp, &mp])
            .all(|v| v.is_finite())
        {
            return Err(bad("a number is not finite"));
        }
        if hp < 0.0 || mp < 0.0 || level == 0 || name.is_empty() || account.name.is_empty() {
            return Err(bad("hp, mp, level or a name out of range"));
        }
        Ok(Self {
            secret,
            account,
            name,
            template,
            faction,
            state: CharacterState {
                id,
                position,
                yaw,
                hp,
                mp,
                level,
                exp,
                items,
            },
            combat,
            item_cooldowns,
            ghost_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_store::{ItemPlace, SavedItem};

    fn record() -> TransferRecord {
        TransferRecord {
            secret: TransferSecret([7; 32]),
            account: AccountRef {
                id: 42,
                name: "ayla".into(),
            },
            name: "Ayla".into(),
            template: 3,
            faction: 1,
            state: CharacterState {
                id: CharacterId(9),
                position: [1024.5, 2.0, -3.25],
                yaw: 1.5,
                hp: 80.0,
                mp: 12.0,
                level: 7,
                exp: 1234,
                items: vec![
                    SavedItem {
                        place: ItemPlace::Bag(0),
                        template: 5,
                        count: 3,
                    },
                    SavedItem {
                        place: ItemPlace::Worn(1),
                        template: 9,
                        count: 1,
                    },
                ],
            },
            combat: CarriedCombat {
                buffs: vec![(Buff::Burning, 2_500, 5), (Buff::Invisible, 17, 1)],
                cooldowns: vec![(5, 9_500)],
                consumable_ms: 1_200,
            },
            item_cooldowns: vec![(3, 30_000)],
            ghost_id: 77,
        }
    }

    #[test]
    fn a_record_round_trips_and_fits_the_link() {
        let r = record();
        let bytes = r.encode().unwrap();
        assert!(bytes.len() <= MAX_RECORD_LEN);
        assert_eq!(TransferRecord::decode(&bytes).unwrap(), r);
        let mut full = r;
        full.name = "N".repeat(32);
        full.account.name = "a".repeat(64);
        full.state.items = (0..=255u8)
            .map(|slot| SavedItem {
                place: ItemPlace::Bag(slot),
                template: 1,
                count: 1,
            })
            .collect();
        full.combat.buffs = Buff::ALL.iter().map(|&b| (b, MAX_CARRIED_MS, 9)).collect();
        full.combat.cooldowns = (0..MAX_ACTIONS as u16).map(|s| (s, 1)).collect();
        full.item_cooldowns = (0..MAX_ITEM_COOLDOWNS as u16).map(|t| (t, 1)).collect();
        let bytes = full.encode().unwrap();
        assert!(bytes.len() <= MAX_RECORD_LEN);
        assert_eq!(TransferRecord::decode(&bytes).unwrap(), full);
    }

    #[test]
    fn every_truncation_and_bad_field_is_refused() {
        let bytes = record().encode().unwrap();
        for n in 0..bytes.len() {
            assert!(TransferRecord::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(TransferRecord::decode(&longer).is_err(), "trailing byte");
        for v in [1, 3] {
            let mut version = bytes.clone();
            version[0] = v;
            assert!(TransferRecord::decode(&version).is_err(), "version {v}");
        }
        // The carried part: a buff past the last, a time over an hour.
        // Two buffs, one cooldown, the consumable's, one item cooldown, the
        // old network id.
        let tail = bytes.len() - (1 + 2 * 6 + 1 + 6 + 4 + 1 + 6 + 4);
        assert_eq!(bytes[tail], 2, "two buffs");
        let mut buff = bytes.clone();
        buff[tail + 1] = 7;
        assert!(TransferRecord::decode(&buff).is_err(), "unknown buff");
        let mut hour = bytes.clone();
        hour[tail + 2..tail + 6].copy_from_slice(&(MAX_CARRIED_MS + 1).to_le_bytes());
        assert!(TransferRecord::decode(&hour).is_err(), "over an hour");
        let mut many = bytes.clone();
        many[tail] = 8;
        assert!(TransferRecord::decode(&many).is_err(), "too many buffs");
        let mut nan = record();
        nan.state.position[0] = f32::NAN;
        assert!(TransferRecord::decode(&nan.encode().unwrap()).is_err());
        let mut level = record();
        level.state.level = 0;
        assert!(TransferRecord::decode(&level.encode().unwrap()).is_err());
    }

    #[test]
    fn tickets_are_recognised_by_magic_and_length() {
        let s = TransferSecret::random();
        let t = s.ticket();
        assert!(TransferSecret::is_transfer_ticket(&t));
        assert_eq!(TransferSecret::from_ticket(&t), Some(s));
        assert_eq!(TransferSecret::from_ticket(&t[..TICKET_LEN - 1]), None);
        let mut v2 = t;
        v2[4] = 2;
        assert_eq!(TransferSecret::from_ticket(&v2), None);
        assert!(!TransferSecret::is_transfer_ticket(b"TOST\x01"));
        assert_ne!(TransferSecret::random(), TransferSecret::random());
    }
}
