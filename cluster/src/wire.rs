//! The wire format of what crosses between nodes: hand-off offers and
//! replies, whispers and chat broadcasts on NATS subjects, and the values
//! stored in the JetStream directory. (Ghost batches are the exception:
//! per tick and fixed-size, they use the game layer's own byte layout,
//! `tos_game::node_ghosts`, carried by the link as opaque bytes.)
//!
//! Each message is one version byte, one kind byte, then the value in
//! `postcard` (a compact, well-kept serde format). Decoding checks the
//! length before reading, refuses unknown versions and kinds, trailing
//! bytes and over-long fields, and never panics: a peer running another
//! build, or garbage on the subject, is a counted error, not a crash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::file::MAX_NAME_LEN;

/// The format version this build writes and reads. A node refuses messages
/// of any other version (a mixed-version cluster must be upgraded together).
pub const WIRE_VERSION: u8 = 1;

/// Largest entity record one hand-off may carry, in bytes. A character with
/// its inventory, AI state and session is a few KiB; this leaves room while
/// staying under NATS's default 1 MiB message limit.
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Largest encoded message: the payload plus the fixed fields.
pub const MAX_MESSAGE: usize = MAX_PAYLOAD + 512;

/// Longest character name carried (bytes of UTF-8).
pub const MAX_CHARACTER_NAME: usize = 64;

/// What a message is; the second byte of every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`HandoffOffer`]
    Offer = 1,
    /// [`HandoffReply`]
    Reply = 2,
    /// [`LeaseValue`]
    Lease = 3,
    /// [`OnlineValue`]
    Online = 4,
    /// [`QuadrantValue`]
    Quadrant = 5,
    /// [`WhisperLine`]
    Whisper = 6,
    /// [`ChatBroadcast`]
    Chat = 7,
    /// [`EffectLine`]
    Effect = 8,
    /// [`CombatLine`]
    Combat = 9,
}

/// Longest chat text carried (bytes of UTF-8); the game layer's own limit
/// is lower.
pub const MAX_CHAT_TEXT: usize = 1024;

/// A whisper for a player on another node, on `<cluster>.whisper.<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhisperLine {
    /// The speaker's node.
    pub from_node: String,
    /// The speaker's character name.
    pub from: String,
    /// The recipient's character (as the directory lists it).
    pub to: u64,
    /// The text.
    pub text: String,
}

/// A shout, or a say near a node border, for every other node's players
/// (each node's cores pick the listeners), on `<cluster>.chat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatBroadcast {
    /// The speaker's node (a node ignores its own lines).
    pub from_node: String,
    /// The speaker's character name.
    pub from: String,
    /// The text.
    pub text: String,
    /// Where a say was said, in whole world units (heard within its radius
    /// of it); `None`: a shout, heard everywhere.
    pub near: Option<[i32; 3]>,
}

/// A skill's effect on an entity of another node (the caster saw it as a
/// ghost across the border), on `<cluster>.effects.<node>`: that node rolls
/// it against the target's own stats, as a core does for another core's
/// caster. Numbers only: the game layer maps them to its own types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectLine {
    /// The caster's node.
    pub from_node: String,
    /// The target's network id.
    pub target: u32,
    /// The caster's network id.
    pub source: u32,
    /// The skill id.
    pub skill: u16,
    /// A damage roll to make: power, attack, the caster's DEX, magic.
    pub strike: Option<(f32, f32, u16, bool)>,
    /// HP to take without a roll.
    pub damage: f32,
    /// HP to give.
    pub heal: f32,
    /// A buff to apply: which, for how many ticks, how strong.
    pub buff: Option<(u8, u32, u8)>,
}

/// What an [`EffectLine`] did, for the caster's node to tell its player,
/// on `<cluster>.combat.<node>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CombatLine {
    /// The target's node.
    pub from_node: String,
    /// The caster's network id.
    pub source: u32,
    /// The target's network id.
    pub target: u32,
    /// The skill id.
    pub skill: u16,
    /// Damage or healing dealt.
    pub amount: f32,
    /// The combat flags (hit, miss, critical, heal, kill, immune).
    pub flags: u8,
}

/// An entity sent to the node that owns the quadrant it walked into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffOffer {
    /// The sending node.
    pub from: String,
    /// The sender's number for this hand-off.
    pub handoff: u64,
    /// The character whose lease moves with the entity.
    pub character: u64,
    /// The character's name, for the online-players registry.
    pub name: String,
    /// The lease revision the sender holds; the receiver takes the lease
    /// only if it is still this one (compare-and-swap), which is what makes
    /// exactly one node own the entity whatever is lost on the way.
    pub lease_revision: u64,
    /// The entity's full record, in the game layer's own encoding.
    pub payload: Vec<u8>,
}

/// The receiver's answer to a [`HandoffOffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandoffReply {
    /// The receiver holds the lease at `revision` and runs the entity.
    Accepted {
        /// The lease revision the receiver now holds.
        revision: u64,
    },
    /// The receiver did not take it; the sender keeps the entity.
    Refused(RefuseReason),
}

/// Why a hand-off was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseReason {
    /// The receiver has too many hand-offs waiting for its game layer.
    Busy,
    /// The offer could not be decoded.
    Malformed,
    /// The game layer refused the record (full, invalid, unknown kind).
    Rejected,
    /// The lease was no longer at the offered revision: the sender settled
    /// the hand-off first (its ack timed out) or the lease expired.
    Superseded,
    /// The receiver could not reach the directory to take the lease.
    DirectoryDown,
    /// The receiver's game layer did not answer in time.
    Expired,
}

/// A character lease in the directory: which node runs the character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The node holding the lease.
    pub node: String,
    /// The character's name.
    pub name: String,
}

/// An online player in the directory, found by name (for whispers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineValue {
    /// The node the player is on.
    pub node: String,
    /// The player's character.
    pub character: u64,
}

/// A quadrant's owner in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuadrantValue {
    /// The node that owns the quadrant.
    pub node: String,
}

/// A value that knows its [`Kind`] and its own size limits.
pub trait WireValue: Serialize + DeserializeOwned {
    /// The kind byte written before the value.
    const KIND: Kind;
    /// Checks the limits serde cannot express (lengths of fields).
    fn check(&self) -> Result<(), WireError>;
}

fn check_node(node: &str) -> Result<(), WireError> {
    if node.is_empty() || node.len() > MAX_NAME_LEN {
        return Err(WireError::FieldTooLong("node"));
    }
    Ok(())
}

impl WireValue for HandoffOffer {
    const KIND: Kind = Kind::Offer;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.from)?;
        if self.name.len() > MAX_CHARACTER_NAME {
            return Err(WireError::FieldTooLong("name"));
        }
        if self.payload.len() > MAX_PAYLOAD {
            return Err(WireError::FieldTooLong("payload"));
        }
        Ok(())
    }
}

impl WireValue for HandoffReply {
    const KIND: Kind = Kind::Reply;
    fn check(&self) -> Result<(), WireError> {
        Ok(())
    }
}

impl WireValue for LeaseValue {
    const KIND: Kind = Kind::Lease;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.node)?;
        if self.name.len() > MAX_CHARACTER_NAME {
            return Err(WireError::FieldTooLong("name"));
        }
        Ok(())
    }
}

impl WireValue for OnlineValue {
    const KIND: Kind = Kind::Online;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.node)
    }
}

impl WireValue for QuadrantValue {
    const KIND: Kind = Kind::Quadrant;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.node)
    }
}

/// The limits every chat line shares: the speaker's node and name, the
/// text.
fn check_line(from_node: &str, from: &str, text: &str) -> Result<(), WireError> {
    check_node(from_node)?;
    if from.len() > MAX_CHARACTER_NAME {
        return Err(WireError::FieldTooLong("from"));
    }
    if text.len() > MAX_CHAT_TEXT {
        return Err(WireError::FieldTooLong("text"));
    }
    Ok(())
}

impl WireValue for WhisperLine {
    const KIND: Kind = Kind::Whisper;
    fn check(&self) -> Result<(), WireError> {
        check_line(&self.from_node, &self.from, &self.text)
    }
}

impl WireValue for ChatBroadcast {
    const KIND: Kind = Kind::Chat;
    fn check(&self) -> Result<(), WireError> {
        check_line(&self.from_node, &self.from, &self.text)
    }
}

impl WireValue for EffectLine {
    const KIND: Kind = Kind::Effect;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.from_node)?;
        let strike = self.strike.map_or([0.0; 2], |(p, a, _, _)| [p, a]);
        let numbers = [self.damage, self.heal, strike[0], strike[1]];
        if numbers.iter().any(|x| !x.is_finite() || *x < 0.0) {
            return Err(WireError::Malformed("effect numbers".into()));
        }
        Ok(())
    }
}

impl WireValue for CombatLine {
    const KIND: Kind = Kind::Combat;
    fn check(&self) -> Result<(), WireError> {
        check_node(&self.from_node)?;
        if !self.amount.is_finite() || self.amount < 0.0 {
            return Err(WireError::Malformed("combat amount".into()));
        }
        Ok(())
    }
}

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the limit")]
    TooLong(usize),
    /// Shorter than the two header bytes.
    #[error("message too short")]
    TooShort,
    /// Another format version.
    #[error("wire version {0}, this build reads {WIRE_VERSION}")]
    Version(u8),
    /// Another kind of message than expected.
    #[error("message kind {found}, expected {expected}")]
    Kind {
        /// The kind byte found.
        found: u8,
        /// The kind byte expected.
        expected: u8,
    },
    /// A field over its limit.
    #[error("field `{0}` over its limit")]
    FieldTooLong(&'static str),
    /// Bytes left after the value.
    #[error("{0} bytes after the value")]
    Trailing(usize),
    /// postcard could not read or write the value.
    #[error("malformed value: {0}")]
    Malformed(String),
}

/// Encodes `value` with its header. Refuses values over their limits, so a
/// node never sends what its peers would refuse.
pub fn encode<T: WireValue>(value: &T) -> Result<Vec<u8>, WireError> {
    value.check()?;
    let mut out = vec![WIRE_VERSION, T::KIND as u8];
    let out = postcard::to_extend(value, std::mem::take(&mut out))
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if out.len() > MAX_MESSAGE {
        return Err(WireError::TooLong(out.len()));
    }
    Ok(out)
}

/// Decodes a message of type `T`, checking length, version, kind, trailing
/// bytes and field limits.
pub fn decode<T: WireValue>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::TooLong(bytes.len()));
    }
    let [version, kind, body @ ..] = bytes else {
        return Err(WireError::TooShort);
    };
    if *version != WIRE_VERSION {
        return Err(WireError::Version(*version));
    }
    if *kind != T::KIND as u8 {
        return Err(WireError::Kind {
            found: *kind,
            expected: T::KIND as u8,
        });
    }
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    value.check()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn whisper_lines_round_trip_and_long_text_is_refused() {
        let line = WhisperLine {
            from_node: "west".into(),
            from: "Aria".into(),
            to: 7,
            text: "hello".into(),
        };
        let bytes = encode(&line).unwrap();
        assert_eq!(decode::<WhisperLine>(&bytes).unwrap(), line);
        let long = WhisperLine {
            text: "x".repeat(MAX_CHAT_TEXT + 1),
            ..line
        };
        assert_eq!(encode(&long), Err(WireError::FieldTooLong("text")));
        assert!(decode::<HandoffOffer>(&bytes).is_err());
    }

    #[test]
    fn chat_broadcasts_round_trip_and_bad_ones_are_refused() {
        let line = ChatBroadcast {
            from_node: "west".into(),
            from: "Aria".into(),
            text: "over here".into(),
            near: Some([-400, 0, 0]),
        };
        let bytes = encode(&line).unwrap();
        assert_eq!(bytes[1], Kind::Chat as u8);
        assert_eq!(decode::<ChatBroadcast>(&bytes).unwrap(), line);
        let long = ChatBroadcast {
            from: "x".repeat(MAX_CHARACTER_NAME + 1),
            ..line
        };
        assert_eq!(encode(&long), Err(WireError::FieldTooLong("from")));
        assert!(decode::<WhisperLine>(&bytes).is_err());
    }

    fn offer() -> HandoffOffer {
        HandoffOffer {
            from: "west".into(),
            handoff: 7,
            character: 42,
            name: "Aelin".into(),
            lease_revision: 9,
            payload: vec![1, 2, 3, 255],
        }
    }

    #[test]
    fn values_round_trip() {
        let bytes = encode(&offer()).unwrap();
        assert_eq!(bytes[..2], [WIRE_VERSION, Kind::Offer as u8]);
        assert_eq!(decode::<HandoffOffer>(&bytes).unwrap(), offer());
        let reply = HandoffReply::Refused(RefuseReason::Superseded);
        assert_eq!(
            decode::<HandoffReply>(&encode(&reply).unwrap()).unwrap(),
            reply
        );
        let lease = LeaseValue {
            node: "east".into(),
            name: "Bran".into(),
        };
        assert_eq!(
            decode::<LeaseValue>(&encode(&lease).unwrap()).unwrap(),
            lease
        );
    }

    #[test]
    fn bad_headers_and_tails_are_refused() {
        let mut bytes = encode(&offer()).unwrap();
        assert_eq!(
            decode::<HandoffReply>(&bytes),
            Err(WireError::Kind {
                found: 1,
                expected: 2
            })
        );
        bytes.push(0);
        assert_eq!(decode::<HandoffOffer>(&bytes), Err(WireError::Trailing(1)));
        bytes[0] = 2;
        assert_eq!(decode::<HandoffOffer>(&bytes), Err(WireError::Version(2)));
        assert_eq!(decode::<HandoffOffer>(&[1]), Err(WireError::TooShort));
        assert!(matches!(
            decode::<HandoffOffer>(&vec![1; MAX_MESSAGE + 1]),
            Err(WireError::TooLong(_))
        ));
    }

    #[test]
    fn fields_over_their_limits_are_refused_both_ways() {
        let mut big = offer();
        big.payload = vec![0; MAX_PAYLOAD + 1];
        assert_eq!(encode(&big), Err(WireError::FieldTooLong("payload")));
        let mut long = offer();
        long.from = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(encode(&long), Err(WireError::FieldTooLong("node")));
        // A peer that skips the check on its side is still refused here.
        let mut bytes = vec![WIRE_VERSION, Kind::Offer as u8];
        bytes = postcard::to_extend(&long, bytes).unwrap();
        assert_eq!(
            decode::<HandoffOffer>(&bytes),
            Err(WireError::FieldTooLong("node"))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = vec![WIRE_VERSION, Kind::Offer as u8];
            bytes.extend_from_slice(&body);
            let _ = decode::<HandoffOffer>(&bytes);
            let _ = decode::<HandoffReply>(&body);
        }

        #[test]
        fn truncated_offers_are_errors(cut in 0usize..40) {
            let bytes = encode(&offer()).unwrap();
            let cut = cut.min(bytes.len() - 1);
            prop_assert!(decode::<HandoffOffer>(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn effect_lines_round_trip_and_bad_numbers_are_refused() {
        let line = EffectLine {
            from_node: "west".into(),
            target: 7,
            source: 8,
            skill: 1,
            strike: Some((30.0, 12.5, 14, false)),
            damage: 0.0,
            heal: 0.0,
            buff: Some((3, 120, 2)),
        };
        let bytes = encode(&line).unwrap();
        assert_eq!(bytes[1], Kind::Effect as u8);
        assert_eq!(decode::<EffectLine>(&bytes).unwrap(), line);
        for bad in [f32::NAN, f32::INFINITY, -1.0] {
            let line = EffectLine {
                heal: bad,
                ..line.clone()
            };
            assert!(
                encode(&line).is_err() || decode::<EffectLine>(&encode(&line).unwrap()).is_err()
            );
        }
        assert!(decode::<ChatBroadcast>(&bytes).is_err(), "another kind");
        let told = CombatLine {
            from_node: "east".into(),
            source: 8,
            target: 7,
            skill: 1,
            amount: 12.5,
            flags: 0x05,
        };
        let bytes = encode(&told).unwrap();
        assert_eq!(bytes[1], Kind::Combat as u8);
        assert_eq!(decode::<CombatLine>(&bytes).unwrap(), told);
        let nan = CombatLine {
            amount: f32::NAN,
            ..told
        };
        assert!(encode(&nan).is_err() || decode::<CombatLine>(&encode(&nan).unwrap()).is_err());
    }
}
