//! The structures of the gameplay messages: items, equipment, character
//! statistics, combat events and chat (client types 13–18, server types
//! 14–17), re-exported by [`super::game`], whose [`ClientMessage`] and
//! [`ServerMessage`] hold the variants. Layouts, limits and which refusal
//! answers what: `docs/PROTOCOL.md` section 6.6.
//!
//! [`ClientMessage`]: super::game::ClientMessage
//! [`ServerMessage`]: super::game::ServerMessage

use super::{EncodeError, Reader, WireError, Writer};

/// The most inventory slots a character may have (the slot numbers a
/// message may name are below this).
pub const MAX_INVENTORY_SLOTS: usize = 64;
/// The longest chat line, in bytes of UTF-8.
pub const MAX_CHAT_LEN: usize = 200;
/// Number of equipment slots ([`EquipSlot`]).
pub const EQUIP_SLOTS: usize = 8;

/// Where an item is worn. The numbers are the wire's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum EquipSlot {
    /// A weapon (one- or two-handed).
    Weapon = 0,
    /// A shield or an off-hand item.
    OffHand = 1,
    /// A helmet.
    Head = 2,
    /// Body armour.
    Chest = 3,
    /// Leg armour.
    Legs = 4,
    /// Gloves.
    Hands = 5,
    /// Boots.
    Feet = 6,
    /// A ring, necklace or earring.
    Accessory = 7,
}

impl EquipSlot {
    /// Every slot, in wire order.
    pub const ALL: [Self; EQUIP_SLOTS] = [
        Self::Weapon,
        Self::OffHand,
        Self::Head,
        Self::Chest,
        Self::Legs,
        Self::Hands,
        Self::Feet,
        Self::Accessory,
    ];

    /// The slot a wire byte names, if any.
    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// The slot's index in an array of [`EQUIP_SLOTS`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The slot's lower-case name (as item data spells it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Weapon => "weapon",
            Self::OffHand => "offhand",
            Self::Head => "head",
            Self::Chest => "chest",
            Self::Legs => "legs",
            Self::Hands => "hands",
            Self::Feet => "feet",
            Self::Accessory => "accessory",
        }
    }
}

/// A chat channel. The numbers are the wire's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChatChannel {
    /// Heard by players near the speaker.
    Say = 0,
    /// Heard by every player of the server process.
    Shout = 1,
    /// To one character by name; the recipient gets it on this channel.
    Whisper = 2,
    /// Server → client only: the echo of a whisper the client sent (its
    /// `from` names the recipient). A client sending it is refused.
    WhisperSent = 3,
}

impl ChatChannel {
    /// The channel a wire byte names.
    pub fn from_u8(value: u8) -> Result<Self, WireError> {
        match value {
            0 => Ok(Self::Say),
            1 => Ok(Self::Shout),
            2 => Ok(Self::Whisper),
            3 => Ok(Self::WhisperSent),
            other => Err(WireError::InvalidValue {
                field: "chat channel",
                value: u64::from(other),
            }),
        }
    }
}

/// Combat event flags (server CombatEvent).
pub mod combat_flags {
    /// The action landed.
    pub const HIT: u8 = 0x01;
    /// The action missed (amount 0).
    pub const MISS: u8 = 0x02;
    /// A critical hit.
    pub const CRIT: u8 = 0x04;
    /// The amount is healing, not damage.
    pub const HEAL: u8 = 0x08;
    /// The target died of it.
    pub const KILL: u8 = 0x10;
    /// A cast was interrupted (the caster moved or was stunned, the target
    /// was lost); amount 0.
    pub const INTERRUPTED: u8 = 0x20;
    /// The target is invulnerable: no damage.
    pub const IMMUNE: u8 = 0x40;
    /// Every defined bit; the other (0x80) is reserved and must be zero.
    pub const ALL: u8 = HIT | MISS | CRIT | HEAL | KILL | INTERRUPTED | IMMUNE;
}

/// Why the server sent a CharacterStats.
pub mod stats_cause {
    /// Entry into the world (or a full refresh).
    pub const ENTERED: u8 = 0;
    /// Experience was gained.
    pub const EXPERIENCE: u8 = 1;
    /// The character reached a new level.
    pub const LEVEL_UP: u8 = 2;
    /// Equipment changed.
    pub const EQUIPMENT: u8 = 3;
    /// The largest defined cause.
    pub const MAX: u8 = EQUIPMENT;
}

/// One occupied inventory slot in an Inventory message.
///
/// Layout (5 bytes): slot u8, item template u16, count u16 (≥ 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InventoryItem {
    /// The slot, below the inventory's capacity.
    pub slot: u8,
    /// The item template (game data).
    pub template: u16,
    /// How many (1 for an item that does not stack).
    pub count: u16,
}

impl InventoryItem {
    /// Encoded length.
    pub const LEN: usize = 5;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.slot)?;
        w.u16(self.template)?;
        w.u16(self.count)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let item = Self {
            slot: r.u8()?,
            template: r.u16()?,
            count: r.u16()?,
        };
        if item.count == 0 {
            return Err(WireError::InvalidValue {
                field: "item count",
                value: 0,
            });
        }
        Ok(item)
    }
}

/// One worn item in an Inventory message.
///
/// Layout (3 bytes): equip slot u8 ([`EquipSlot`]), item template u16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EquippedItem {
    /// Where it is worn.
    pub slot: EquipSlot,
    /// The item template.
    pub template: u16,
}

impl EquippedItem {
    /// Encoded length.
    pub const LEN: usize = 3;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.slot as u8)?;
        w.u16(self.template)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let raw = r.u8()?;
        let slot = EquipSlot::from_u8(raw).ok_or(WireError::InvalidValue {
            field: "equip slot",
            value: u64::from(raw),
        })?;
        Ok(Self {
            slot,
            template: r.u16()?,
        })
    }
}

/// The body of an Inventory (server type 14): the whole inventory and
/// equipment of the player's character, sent at entry and after every
/// change. The entries stay raw bytes, read with [`Inventory::items`] and
/// [`Inventory::equipped`].
///
/// Layout: capacity u8 (slots), weight u32, weight limit u32, item count
/// u8, that many [`InventoryItem`]s (5 bytes each), equipped count u8,
/// that many [`EquippedItem`]s (3 bytes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inventory<'a> {
    /// Number of slots (≤ [`MAX_INVENTORY_SLOTS`]).
    pub capacity: u8,
    /// What the carried and worn items weigh together (game units).
    pub weight: u32,
    /// The most the character may carry.
    pub weight_limit: u32,
    /// Number of item entries.
    pub item_count: u8,
    /// The encoded item entries.
    pub items: &'a [u8],
    /// Number of equipped entries.
    pub equipped_count: u8,
    /// The encoded equipped entries.
    pub equipped: &'a [u8],
}

impl<'a> Inventory<'a> {
    /// The occupied slots, in the order sent (a decoded message yields
    /// only valid entries).
    pub fn items(&self) -> impl Iterator<Item = InventoryItem> + 'a {
        let bytes = self.items;
        bytes
            .chunks_exact(InventoryItem::LEN)
            .filter_map(|c| InventoryItem::decode(&mut Reader::new(c)).ok())
    }

    /// The worn items, in the order sent.
    pub fn equipped(&self) -> impl Iterator<Item = EquippedItem> + 'a {
        let bytes = self.equipped;
        bytes
            .chunks_exact(EquippedItem::LEN)
            .filter_map(|c| EquippedItem::decode(&mut Reader::new(c)).ok())
    }

    pub(crate) fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.capacity)?;
        w.u32(self.weight)?;
        w.u32(self.weight_limit)?;
        w.u8(self.item_count)?;
        w.bytes(self.items)?;
        w.u8(self.equipped_count)?;
        w.bytes(self.equipped)
    }

    pub(crate) fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        let capacity = r.u8()?;
        if usize::from(capacity) > MAX_INVENTORY_SLOTS {
            return Err(WireError::InvalidValue {
                field: "inventory capacity",
                value: u64::from(capacity),
            });
        }
        let weight = r.u32()?;
        let weight_limit = r.u32()?;
        let item_count = r.u8()?;
        if item_count > capacity {
            return Err(WireError::InvalidValue {
                field: "inventory item count",
                value: u64::from(item_count),
            });
        }
        let items = r.bytes(usize::from(item_count) * InventoryItem::LEN)?;
        let mut ir = Reader::new(items);
        for _ in 0..item_count {
            let item = InventoryItem::decode(&mut ir)?;
            if item.slot >= capacity {
                return Err(WireError::InvalidValue {
                    field: "inventory slot",
                    value: u64::from(item.slot),
                });
            }
        }
        let equipped_count = r.u8()?;
        if usize::from(equipped_count) > EQUIP_SLOTS {
            return Err(WireError::InvalidValue {
                field: "equipped count",
                value: u64::from(equipped_count),
            });
        }
        let equipped = r.bytes(usize::from(equipped_count) * EquippedItem::LEN)?;
        let mut er = Reader::new(equipped);
        for _ in 0..equipped_count {
            EquippedItem::decode(&mut er)?;
        }
        Ok(Self {
            capacity,
            weight,
            weight_limit,
            item_count,
            items,
            equipped_count,
            equipped,
        })
    }
}

/// Writes a whole Inventory message (type byte 14 and body). At most
/// [`MAX_INVENTORY_SLOTS`] items and [`EQUIP_SLOTS`] worn items.
pub fn encode_inventory(
    w: &mut Writer<'_>,
    capacity: u8,
    weight: u32,
    weight_limit: u32,
    items: &[InventoryItem],
    equipped: &[EquippedItem],
) -> Result<(), EncodeError> {
    let too_long = |max: usize, found: usize| EncodeError::TooLong { max, found };
    if items.len() > usize::from(capacity) || usize::from(capacity) > MAX_INVENTORY_SLOTS {
        return Err(too_long(usize::from(capacity), items.len()));
    }
    if equipped.len() > EQUIP_SLOTS {
        return Err(too_long(EQUIP_SLOTS, equipped.len()));
    }
    w.u8(super::game::server_type::INVENTORY)?;
    w.u8(capacity)?;
    w.u32(weight)?;
    w.u32(weight_limit)?;
    w.u8(items.len() as u8)?;
    for i in items {
        i.encode(w)?;
    }
    w.u8(equipped.len() as u8)?;
    for e in equipped {
        e.encode(w)?;
    }
    Ok(())
}

/// A character's progression and derived statistics (server type 15),
/// sent at entry, on experience, on level-up and when equipment changes.
///
/// Layout (55 bytes): cause u8 ([`stats_cause`]), level u16, exp u64,
/// exp for next level u64 (0 at the top level), hp max f32, mp max f32,
/// INT, STR, CON, MEN, DEX, WIT 6 × u16, physical attack f32, magic
/// attack f32, physical defence f32, magic defence f32.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CharacterStats {
    /// Why it was sent ([`stats_cause`]).
    pub cause: u8,
    /// Level.
    pub level: u16,
    /// Total experience.
    pub exp: u64,
    /// The total experience at which the next level is reached; 0 at the
    /// top level.
    pub exp_next: u64,
    /// Maximum hit points (with equipment).
    pub hp_max: f32,
    /// Maximum mana (with equipment).
    pub mp_max: f32,
    /// The six base stats: INT, STR, CON, MEN, DEX, WIT.
    pub stats: [u16; 6],
    /// Physical attack (with equipment).
    pub p_atk: f32,
    /// Magic attack.
    pub m_atk: f32,
    /// Physical defence.
    pub p_def: f32,
    /// Magic defence.
    pub m_def: f32,
}

impl CharacterStats {
    /// Encoded length (without the type byte).
    pub const LEN: usize = 55;

    pub(crate) fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.cause)?;
        w.u16(self.level)?;
        w.u64(self.exp)?;
        w.u64(self.exp_next)?;
        w.f32(self.hp_max)?;
        w.f32(self.mp_max)?;
        for s in self.stats {
            w.u16(s)?;
        }
        w.f32(self.p_atk)?;
        w.f32(self.m_atk)?;
        w.f32(self.p_def)?;
        w.f32(self.m_def)
    }

    pub(crate) fn decode_body(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let cause = r.u8()?;
        if cause > stats_cause::MAX {
            return Err(WireError::InvalidValue {
                field: "stats cause",
                value: u64::from(cause),
            });
        }
        let level = r.u16()?;
        let exp = r.u64()?;
        let exp_next = r.u64()?;
        let hp_max = r.f32()?;
        let mp_max = r.f32()?;
        let mut stats = [0u16; 6];
        for s in &mut stats {
            *s = r.u16()?;
        }
        Ok(Self {
            cause,
            level,
            exp,
            exp_next,
            hp_max,
            mp_max,
            stats,
            p_atk: r.f32()?,
            m_atk: r.f32()?,
            p_def: r.f32()?,
            m_def: r.f32()?,
        })
    }
}

/// Checks a combat flags byte: reserved bits must be zero.
pub(crate) fn check_combat_flags(flags: u8) -> Result<u8, WireError> {
    if flags & !combat_flags::ALL != 0 {
        return Err(WireError::InvalidValue {
            field: "combat flags",
            value: u64::from(flags),
        });
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equip_slots_round_trip() {
        for (i, s) in EquipSlot::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(EquipSlot::from_u8(i as u8), Some(*s));
        }
        assert_eq!(EquipSlot::from_u8(EQUIP_SLOTS as u8), None);
    }

    #[test]
    fn character_stats_have_their_documented_length() {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        CharacterStats::default().encode_body(&mut w).unwrap();
        assert_eq!(w.position(), CharacterStats::LEN);
        let mut bad = [0u8; CharacterStats::LEN];
        bad[0] = stats_cause::MAX + 1;
        assert!(CharacterStats::decode_body(&mut Reader::new(&bad)).is_err());
    }

    #[test]
    fn inventory_checks_its_entries() {
        let items = [
            InventoryItem {
                slot: 0,
                template: 7,
                count: 3,
            },
            InventoryItem {
                slot: 5,
                template: 9,
                count: 1,
            },
        ];
        let equipped = [EquippedItem {
            slot: EquipSlot::Weapon,
            template: 2,
        }];
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        encode_inventory(&mut w, 6, 10, 100, &items, &equipped).unwrap();
        let n = w.position();
        let mut r = Reader::new(&buf[1..n]);
        let inv = Inventory::decode_body(&mut r).unwrap();
        assert!(r.is_empty());
        assert_eq!(inv.items().collect::<Vec<_>>(), items);
        assert_eq!(inv.equipped().collect::<Vec<_>>(), equipped);
        // A slot past the capacity does not decode.
        let mut bad = buf[..n].to_vec();
        bad[1] = 5;
        assert!(Inventory::decode_body(&mut Reader::new(&bad[1..])).is_err());
        // A zero count does not decode.
        let mut bad = buf[..n].to_vec();
        bad[11 + 3] = 0;
        assert!(Inventory::decode_body(&mut Reader::new(&bad[1..])).is_err());
        // More items than slots cannot be written.
        let mut w = Writer::new(&mut buf);
        assert!(encode_inventory(&mut w, 1, 0, 0, &items, &[]).is_err());
    }
}
