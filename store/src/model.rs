//! The data model: accounts, characters and the state write-behind saves,
//! as plain values with no database types in them.

/// Primary key of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u64);

/// Primary key of a character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CharacterId(pub u64);

/// Longest appearance blob a character may carry, in bytes.
pub const MAX_APPEARANCE_BYTES: usize = 32;

/// Version of [`CharacterState`]'s layout, stored with each saved row
/// (`characters.state_version`), so rows saved by an older build can be
/// told apart and upgraded. Version 2 added the items (inventory and
/// equipment, migration 2).
pub const CHARACTER_STATE_VERSION: u16 = 2;

/// Where a saved item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemPlace {
    /// In the inventory, in this slot.
    Bag(u8),
    /// Worn, in this equipment slot (the wire's `EquipSlot` number).
    Worn(u8),
}

/// One saved stack of items: a character's inventory and equipment are a
/// list of these, written in the same row write as the rest of its state,
/// so a save is atomic and an item is never in two places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SavedItem {
    /// Where.
    pub place: ItemPlace,
    /// The item template (game data).
    pub template: u16,
    /// How many (≥ 1).
    pub count: u16,
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Primary key.
    pub id: AccountId,
    /// The name as the player typed it (lookups ignore case).
    pub name: String,
    /// Argon2 PHC string; `None` for accounts created from external tickets.
    pub password_hash: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// What character creation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCharacter {
    /// Owning account.
    pub account: AccountId,
    /// Name as typed; unique case-insensitively across all characters.
    pub name: String,
    /// Game-data template (race/class).
    pub template: u16,
    /// Faction id.
    pub faction: u8,
    /// Opaque appearance blob, at most [`MAX_APPEARANCE_BYTES`].
    pub appearance: Vec<u8>,
    /// Starting position in world units.
    pub position: [f32; 3],
    /// Starting facing, radians.
    pub yaw: f32,
    /// Starting level.
    pub level: u16,
    /// Starting experience.
    pub exp: u64,
    /// Starting hit points.
    pub hp: f32,
    /// Starting mana.
    pub mp: f32,
    /// Starting inventory (the template's starting items).
    pub items: Vec<SavedItem>,
}

/// A character row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterRecord {
    /// Primary key.
    pub id: CharacterId,
    /// Owning account.
    pub account: AccountId,
    /// Name as typed.
    pub name: String,
    /// Game-data template.
    pub template: u16,
    /// Faction id.
    pub faction: u8,
    /// Appearance blob, at most [`MAX_APPEARANCE_BYTES`].
    pub appearance: Vec<u8>,
    /// Level.
    pub level: u16,
    /// Experience.
    pub exp: u64,
    /// Last saved position in world units.
    pub position: [f32; 3],
    /// Last saved facing, radians.
    pub yaw: f32,
    /// Last saved hit points.
    pub hp: f32,
    /// Last saved mana.
    pub mp: f32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the soft delete; `None` while playable.
    pub deleted_at: Option<i64>,
    /// Unix seconds of the last write of its state.
    pub last_saved_at: i64,
    /// Inventory and equipment.
    pub items: Vec<SavedItem>,
}

/// What write-behind saves of a character in play: the fields that change
/// during a session, inventory and equipment included.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterState {
    /// Which character.
    pub id: CharacterId,
    /// Position in world units.
    pub position: [f32; 3],
    /// Facing, radians.
    pub yaw: f32,
    /// Hit points.
    pub hp: f32,
    /// Mana.
    pub mp: f32,
    /// Level.
    pub level: u16,
    /// Experience.
    pub exp: u64,
    /// Inventory and equipment, in place order.
    pub items: Vec<SavedItem>,
}

impl CharacterRecord {
    /// The state part of this record (what saves write).
    pub fn state(&self) -> CharacterState {
        CharacterState {
            id: self.id,
            position: self.position,
            yaw: self.yaw,
            hp: self.hp,
            mp: self.mp,
            level: self.level,
            exp: self.exp,
            items: self.items.clone(),
        }
    }

    /// Applies a saved state on top of this record (used to answer a load
    /// while a newer save is still pending).
    pub fn apply(&mut self, state: &CharacterState) {
        self.position = state.position;
        self.yaw = state.yaw;
        self.hp = state.hp;
        self.mp = state.mp;
        self.level = state.level;
        self.exp = state.exp;
        self.items.clone_from(&state.items);
    }
}
