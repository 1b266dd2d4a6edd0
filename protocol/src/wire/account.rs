//! The structures of the account, character and world-entry messages
//! (client types 6–12, server types 10–13 and the extended WorldEntered 7),
//! re-exported by [`super::game`], whose [`ClientMessage`] and
//! [`ServerMessage`] hold the variants. Layouts and the session states in
//! which each message is allowed: `docs/PROTOCOL.md` section 6.5.
//!
//! [`ClientMessage`]: super::game::ClientMessage
//! [`ServerMessage`]: super::game::ServerMessage

use core::fmt;

use super::{EncodeError, Reader, WireError, Writer};
use crate::quant::{GeometryError, Quantizer, WorldGeometry};

/// The longest account name, in bytes of UTF-8.
pub const MAX_ACCOUNT_LEN: usize = 32;
/// The longest password, in bytes of UTF-8.
pub const MAX_PASSWORD_LEN: usize = 128;
/// The longest character appearance blob, in bytes.
pub const MAX_APPEARANCE_LEN: usize = 32;
/// The longest session ticket in an Authenticated message, in bytes.
pub const MAX_SESSION_TICKET_LEN: usize = 256;

macro_rules! refusal_reasons {
    ($($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)*) => {
        /// Why the server refused a client message (in
        /// [`ServerMessage::Refused`](super::game::ServerMessage::Refused)).
        ///
        /// An unknown code does not decode: it is
        /// [`WireError::InvalidValue`] (field `"refusal reason"`), so a new
        /// reason needs a new protocol version.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum RefusalReason {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl RefusalReason {
            /// Every reason, in code order.
            pub const ALL: &'static [RefusalReason] = &[$(Self::$variant,)*];

            /// The reason a wire byte names.
            pub fn from_u8(value: u8) -> Result<Self, WireError> {
                match value {
                    $($value => Ok(Self::$variant),)*
                    other => Err(WireError::InvalidValue {
                        field: "refusal reason",
                        value: u64::from(other),
                    }),
                }
            }

            /// A short human-readable text (English) for logs and clients.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }
        }
    };
}

refusal_reasons! {
    /// The message is not allowed in the session's current state.
    WrongState = 1 => "not allowed now",
    /// The message decoded but its content makes no sense.
    Malformed = 2 => "malformed request",
    /// Unknown account or wrong password.
    BadCredentials = 3 => "wrong account name or password",
    /// The account name breaks the naming rules.
    AccountNameInvalid = 4 => "invalid account name",
    /// An account of that name exists.
    AccountExists = 5 => "account name already taken",
    /// The password breaks the password rules.
    PasswordInvalid = 6 => "invalid password",
    /// Too many attempts; try again later.
    RateLimited = 7 => "too many attempts, try again later",
    /// The character name breaks the naming rules.
    NameInvalid = 8 => "invalid character name",
    /// A character of that name exists.
    NameTaken = 9 => "character name already taken",
    /// The name is reserved.
    NameReserved = 10 => "character name reserved",
    /// The account has its most characters.
    TooManyCharacters = 11 => "too many characters",
    /// No such character on this account.
    NoSuchCharacter = 12 => "no such character",
    /// The character is deleted (restore it first).
    CharacterDeleted = 13 => "character is deleted",
    /// The character is not deleted (nothing to restore).
    CharacterNotDeleted = 14 => "character is not deleted",
    /// The character was deleted too long ago to be restored.
    RestoreExpired = 15 => "restore period expired",
    /// The character is in the world in another session.
    CharacterInUse = 16 => "character already in the world",
    /// The account is logged in in another session.
    AccountInUse = 17 => "account already logged in",
    /// The character template does not exist.
    UnknownTemplate = 18 => "unknown character template",
    /// The server is too busy; try again.
    ServerBusy = 19 => "server busy",
    /// The account and character store is unreachable.
    StoreUnavailable = 20 => "storage unavailable",
    /// The character could not be put into the world.
    EnterFailed = 21 => "could not enter the world",
    /// An internal server error.
    Internal = 22 => "internal server error",
    /// The session ticket is invalid.
    TicketInvalid = 23 => "invalid session ticket",
    /// The session ticket has expired.
    TicketExpired = 24 => "session ticket expired",
    /// The world is full.
    ServerFull = 25 => "server full",
    /// The inventory slot (or equip slot) holds no item.
    NoSuchItem = 26 => "no such item",
    /// The item does not go in that equipment slot (or is not equipment).
    WrongSlot = 27 => "item does not go in that slot",
    /// No free inventory slot (or stack room) for the item.
    InventoryFull = 28 => "inventory full",
    /// The item would take the character over its weight limit.
    TooHeavy = 29 => "too heavy to carry",
    /// The item's cooldown has not run out.
    ItemCooldown = 30 => "item is cooling down",
    /// The item cannot be used (it is not a consumable).
    NotUsable = 31 => "item cannot be used",
    /// The character cannot do that now (dead, stunned, casting).
    CannotActNow = 32 => "cannot do that now",
    /// The chat line is empty or longer than the limit.
    ChatTooLong = 33 => "chat line empty or too long",
    /// Too many chat lines too fast.
    ChatFlood = 34 => "chatting too fast",
    /// No character of that name is online.
    NoSuchPlayer = 35 => "no such player online",
    /// No such entity within the player's sight (Inspect).
    NoSuchEntity = 36 => "no such entity in sight",
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One character of an account, as listed in a CharacterList.
///
/// Layout (37–69 bytes): character id u64, name (varint length ≤ 32 +
/// UTF-8), template u16, level u16, faction u8, deleted at u64 (unix
/// seconds, 0 = not deleted), position 3 × f32 (world units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CharacterSummary<'a> {
    /// The character's id.
    pub character_id: u64,
    /// Its display name.
    pub name: &'a str,
    /// The template (race/class) it was created from.
    pub template: u16,
    /// Its level.
    pub level: u16,
    /// Its faction (game-layer number).
    pub faction: u8,
    /// When it was deleted, unix seconds; 0 = not deleted.
    pub deleted_at: u64,
    /// Where it last was, world units.
    pub position: [f32; 3],
}

impl<'a> CharacterSummary<'a> {
    /// Writes the entry.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u64(self.character_id)?;
        w.str(self.name, super::game::MAX_NAME_LEN)?;
        w.u16(self.template)?;
        w.u16(self.level)?;
        w.u8(self.faction)?;
        w.u64(self.deleted_at)?;
        for v in self.position {
            w.f32(v)?;
        }
        Ok(())
    }

    /// Reads one entry.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            character_id: r.u64()?,
            name: r.str(super::game::MAX_NAME_LEN)?,
            template: r.u16()?,
            level: r.u16()?,
            faction: r.u8()?,
            deleted_at: r.u64()?,
            position: [r.f32()?, r.f32()?, r.f32()?],
        })
    }
}

/// The body of a CharacterList (server type 11): the account's characters
/// as raw encoded [`CharacterSummary`] entries, read with
/// [`CharacterList::entries`].
///
/// Layout: max characters u8, count u8, then `count` entries back to back,
/// filling the rest of the message. [`super::game::ServerMessage::decode`]
/// checks that exactly `count` well-formed entries fill the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharacterList<'a> {
    /// The most characters this account may have.
    pub max_characters: u8,
    /// Number of entries.
    pub count: u8,
    /// The encoded entries.
    pub entries: &'a [u8],
}

impl<'a> CharacterList<'a> {
    /// The entries, in order. Yields `count` items (stopping after the
    /// first error); a list that [`super::game::ServerMessage::decode`]
    /// returned yields only `Ok`s.
    pub fn entries(&self) -> CharacterEntries<'a> {
        CharacterEntries {
            reader: Reader::new(self.entries),
            left: self.count,
        }
    }

    /// Checks that exactly `count` entries fill `entries`.
    pub(crate) fn validate(&self) -> Result<(), WireError> {
        let mut r = Reader::new(self.entries);
        for _ in 0..self.count {
            CharacterSummary::decode(&mut r)?;
        }
        r.finish()
    }
}

/// Iterator over a [`CharacterList`]'s entries.
#[derive(Debug, Clone)]
pub struct CharacterEntries<'a> {
    reader: Reader<'a>,
    left: u8,
}

impl<'a> Iterator for CharacterEntries<'a> {
    type Item = Result<CharacterSummary<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let entry = CharacterSummary::decode(&mut self.reader);
        if entry.is_err() {
            self.left = 0;
        }
        Some(entry)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.left)))
    }
}

/// Writes a whole CharacterList message (type byte 11, max characters,
/// count, entries). At most 255 entries.
pub fn encode_character_list(
    w: &mut Writer<'_>,
    max_characters: u8,
    entries: &[CharacterSummary<'_>],
) -> Result<(), EncodeError> {
    let count = u8::try_from(entries.len()).map_err(|_| EncodeError::TooLong {
        max: usize::from(u8::MAX),
        found: entries.len(),
    })?;
    w.u8(super::game::server_type::CHARACTER_LIST)?;
    w.u8(max_characters)?;
    w.u8(count)?;
    for e in entries {
        e.encode(w)?;
    }
    Ok(())
}

/// What a client needs to dequantize positions and velocities and to
/// predict movement, sent in WorldEntered.
///
/// Layout (104 bytes): world min x, y, z 3 × f64, world extent 3 × f64,
/// position step 3 × f64, quadrant size 3 × f64, velocity step f32, max
/// speed f32. Positions are world units (100 units = 1 metre in the seed's
/// world); the position fields are exactly the `f64`s of the server's
/// [`Quantizer`], so [`WorldParams::quantizer`] rebuilds the same one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorldParams {
    /// The world's minimum corner, world units.
    pub world_min: [f64; 3],
    /// The world's size per axis, world units.
    pub world_extent: [f64; 3],
    /// World units per position quantization step, per axis.
    pub position_step: [f64; 3],
    /// The size of a quadrant per axis, world units (quadrant `(x, y, z)`
    /// starts at `world_min + (x, y, z) × quadrant_size`; the grid is
    /// `ceil(world_extent / quadrant_size)` quadrants per axis).
    pub quadrant_size: [f64; 3],
    /// World units per second per velocity quantization step.
    pub velocity_step: f32,
    /// The fastest a player may move, world units per second.
    pub max_speed: f32,
}

impl WorldParams {
    /// Encoded length.
    pub const LEN: usize = 104;

    /// The parameters of a server's quantizer.
    pub fn from_quantizer(quantizer: &Quantizer, velocity_step: f32, max_speed: f32) -> Self {
        Self {
            world_min: quantizer.min(),
            world_extent: quantizer.extent(),
            position_step: quantizer.step(),
            quadrant_size: quantizer.quadrant_size(),
            velocity_step,
            max_speed,
        }
    }

    /// A geometry from which [`Quantizer::new`] derives the same quadrants
    /// (a quadrant is one section of itself).
    pub fn geometry(&self) -> WorldGeometry {
        WorldGeometry {
            min: self.world_min,
            extent: self.world_extent,
            step: self.position_step,
            section: self.quadrant_size,
        }
    }

    /// The quantizer these parameters describe (fails if a peer sent
    /// nonsense: non-positive or non-finite sizes, too many quadrants).
    pub fn quantizer(&self) -> Result<Quantizer, GeometryError> {
        Quantizer::new(self.geometry())
    }

    /// Writes the parameters.
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        for v in self
            .world_min
            .iter()
            .chain(&self.world_extent)
            .chain(&self.position_step)
            .chain(&self.quadrant_size)
        {
            w.f64(*v)?;
        }
        w.f32(self.velocity_step)?;
        w.f32(self.max_speed)
    }

    /// Reads the parameters.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = [0f64; 12];
        for x in &mut v {
            *x = r.f64()?;
        }
        Ok(Self {
            world_min: [v[0], v[1], v[2]],
            world_extent: [v[3], v[4], v[5]],
            position_step: [v[6], v[7], v[8]],
            quadrant_size: [v[9], v[10], v[11]],
            velocity_step: r.f32()?,
            max_speed: r.f32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_params_rebuild_the_quantizer() {
        let q = Quantizer::seed_default();
        let p = WorldParams::from_quantizer(&q, 1.0, 700.0);
        assert_eq!(p.quantizer().unwrap(), q);
    }

    #[test]
    fn refusal_reasons_round_trip() {
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(*r as u8 as usize, i + 1);
            assert_eq!(RefusalReason::from_u8(*r as u8), Ok(*r));
            assert!(!r.as_str().is_empty());
        }
        assert!(RefusalReason::from_u8(0).is_err());
        assert!(RefusalReason::from_u8(RefusalReason::ALL.len() as u8 + 1).is_err());
    }
}
