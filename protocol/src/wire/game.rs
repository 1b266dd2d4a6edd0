//! Game messages (seed §10.1 and §10.2): what the world server and the
//! game client say to each other inside message frames.
//!
//! Each message is `type u8 | body`, filling its message frame exactly.
//! Server and client have separate type spaces. Numbers 0–6 (server) and
//! 0–4 (client) are the seed's; higher numbers are this project's
//! extensions. The seed's game-level RekeyRequest (server 5), Pong (client
//! 2) and RekeyResponse (client 4) have the same bodies as the control
//! frames of those names; the transport itself rotates keys and answers
//! heartbeats with control frames, so a conforming peer never needs them,
//! but they decode so that a client built from the seed's table is
//! understood.
//!
//! Accounts, characters and world entry (client 6–12, server 10–13 and
//! the extended WorldEntered 7) have their structures in
//! [`super::account`], re-exported here; [`channel_for`] names the channel
//! of each client message. Layouts, session states and channels:
//! `docs/PROTOCOL.md` sections 6.3–6.5.
//!
//! Gameplay (client 13–18, server 14–17: items, equipment, statistics,
//! combat events, chat) has its structures in [`super::gameplay`],
//! re-exported here; `docs/PROTOCOL.md` section 6.6.

use super::control::{Pong, RekeyRequest, RekeyResponse};
use super::frame::FrameBody;
use super::{Channel, EncodeError, Reader, WireError, Writer};
use crate::delta::{EntityStatus, QuantizedEntity};
use crate::quant::{QuantizedPosition, QuantizedRotation};

pub use super::account::{
    CharacterEntries, CharacterList, CharacterSummary, MAX_ACCOUNT_LEN, MAX_APPEARANCE_LEN,
    MAX_PASSWORD_LEN, MAX_SESSION_TICKET_LEN, RefusalReason, WorldParams, encode_character_list,
};
pub use super::gameplay::{
    CharacterStats, ChatChannel, EQUIP_SLOTS, EquipSlot, EquippedItem, Inventory, InventoryItem,
    MAX_CHAT_LEN, MAX_INVENTORY_SLOTS, combat_flags, encode_inventory, stats_cause,
};

/// Server message type numbers.
pub mod server_type {
    /// Echo/benchmark probe.
    pub const BENCHMARK: u8 = 0;
    /// Full quantized state of an entity entering view.
    pub const CREATE_ENTITY: u8 = 1;
    /// Full-precision entity state.
    pub const UPDATE_ENTITY: u8 = 2;
    /// An entity left view.
    pub const REMOVE_ENTITY: u8 = 3;
    /// Full quantized entity state.
    pub const UPDATE_ENTITY_QUANTIZED: u8 = 4;
    /// Seed alias of the control RekeyRequest.
    pub const REKEY_REQUEST: u8 = 5;
    /// A snapshot of delta records.
    pub const DELTA_SYNC: u8 = 6;
    /// Extension: the player is in the world as this entity.
    pub const WORLD_ENTERED: u8 = 7;
    /// Extension: a movement claim was corrected.
    pub const CORRECTION: u8 = 8;
    /// Extension: the outcome of an action request.
    pub const ACTION_RESULT: u8 = 9;
    /// Extension: login or registration succeeded.
    pub const AUTHENTICATED: u8 = 10;
    /// Extension: the account's characters.
    pub const CHARACTER_LIST: u8 = 11;
    /// Extension: a character create, delete or restore succeeded.
    pub const CHARACTER_DONE: u8 = 12;
    /// Extension: a client message was refused.
    pub const REFUSED: u8 = 13;
    /// Extension: the character's inventory and equipment.
    pub const INVENTORY: u8 = 14;
    /// Extension: the character's level, experience and statistics.
    pub const CHARACTER_STATS: u8 = 15;
    /// Extension: a hit, miss, heal or kill the player is part of.
    pub const COMBAT_EVENT: u8 = 16;
    /// Extension: a chat line.
    pub const CHAT_MESSAGE: u8 = 17;
    /// Extension: what an entity in sight is (the answer to Inspect).
    pub const ENTITY_INFO: u8 = 18;
    /// Extension: the character walked onto another node's ground: connect
    /// there with the given key and one-time ticket.
    pub const ZONE_TRANSFER: u8 = 19;
}

/// Client message type numbers.
pub mod client_type {
    /// Full-precision movement claim.
    pub const SYNC_ENTITY: u8 = 0;
    /// Quantized movement claim.
    pub const SYNC_ENTITY_QUANTIZED: u8 = 1;
    /// Seed alias of the control Pong.
    pub const PONG: u8 = 2;
    /// Request to enter the world with a character.
    pub const ENTER_TO_WORLD: u8 = 3;
    /// Seed alias of the control RekeyResponse.
    pub const REKEY_RESPONSE: u8 = 4;
    /// Extension: request to perform an action.
    pub const ACTION: u8 = 5;
    /// Extension: create an account (and log in).
    pub const REGISTER: u8 = 6;
    /// Extension: log in to an account.
    pub const LOGIN: u8 = 7;
    /// Extension: ask for the account's characters.
    pub const CHARACTER_LIST: u8 = 8;
    /// Extension: create a character.
    pub const CHARACTER_CREATE: u8 = 9;
    /// Extension: delete a character (restorable for a while).
    pub const CHARACTER_DELETE: u8 = 10;
    /// Extension: restore a deleted character.
    pub const CHARACTER_RESTORE: u8 = 11;
    /// Extension: leave the world, back to character selection.
    pub const LEAVE_WORLD: u8 = 12;
    /// Extension: pick up an item lying in the world.
    pub const PICK_UP: u8 = 13;
    /// Extension: use (consume) an inventory item.
    pub const USE_ITEM: u8 = 14;
    /// Extension: wear an inventory item.
    pub const EQUIP: u8 = 15;
    /// Extension: take a worn item off, back into the inventory.
    pub const UNEQUIP: u8 = 16;
    /// Extension: say, shout or whisper a chat line.
    pub const CHAT: u8 = 17;
    /// Extension: put items of an inventory slot on the ground.
    pub const DROP_ITEM: u8 = 18;
    /// Extension: ask what an entity in sight is.
    pub const INSPECT: u8 = 19;
}

/// An entity's state at full precision: the naive encoding that
/// quantization and delta compression are measured against.
///
/// Layout (47 bytes): position 3 × f32, rotation (pitch, yaw, roll degrees)
/// 3 × f32, velocity 3 × f32, anim u8, state u8, buffs u8, hp f32, mp f32.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FullEntityState {
    /// World position.
    pub position: [f32; 3],
    /// Pitch, yaw, roll in degrees.
    pub rotation: [f32; 3],
    /// Velocity in units per second.
    pub velocity: [f32; 3],
    /// Animation state.
    pub anim: u8,
    /// EntityState bits.
    pub state: u8,
    /// Buff bits.
    pub buffs: u8,
    /// Hit points.
    pub hp: f32,
    /// Mana points.
    pub mp: f32,
}

impl FullEntityState {
    /// Encoded length.
    pub const LEN: usize = 47;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        for v in self
            .position
            .iter()
            .chain(&self.rotation)
            .chain(&self.velocity)
        {
            w.f32(*v)?;
        }
        w.bytes(&[self.anim, self.state, self.buffs])?;
        w.f32(self.hp)?;
        w.f32(self.mp)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = [0f32; 9];
        for x in &mut v {
            *x = r.f32()?;
        }
        let [anim, state, buffs] = r.array()?;
        Ok(Self {
            position: [v[0], v[1], v[2]],
            rotation: [v[3], v[4], v[5]],
            velocity: [v[6], v[7], v[8]],
            anim,
            state,
            buffs,
            hp: r.f32()?,
            mp: r.f32()?,
        })
    }
}

/// Writes a quantized entity state in absolute form (25 bytes): quadrant
/// u16, offsets 3 × i16, pitch/yaw/roll 3 × u16, anim u8, state u8, buffs
/// u8, hp u8, mp u8, velocity 3 × i16.
pub fn encode_quantized(w: &mut Writer<'_>, s: &QuantizedEntity) -> Result<(), EncodeError> {
    w.u16(s.position.quadrant)?;
    for v in s.position.offset {
        w.i16(v)?;
    }
    w.u16(s.rotation.pitch)?;
    w.u16(s.rotation.yaw)?;
    w.u16(s.rotation.roll)?;
    w.u8(s.anim)?;
    w.bytes(&[s.status.state, s.status.buffs, s.status.hp, s.status.mp])?;
    for v in s.velocity {
        w.i16(v)?;
    }
    Ok(())
}

/// Reads what [`encode_quantized`] wrote.
pub fn decode_quantized(r: &mut Reader<'_>) -> Result<QuantizedEntity, WireError> {
    let quadrant = r.u16()?;
    let offset = [r.i16()?, r.i16()?, r.i16()?];
    let rotation = QuantizedRotation {
        pitch: r.u16()?,
        yaw: r.u16()?,
        roll: r.u16()?,
    };
    let anim = r.u8()?;
    let [state, buffs, hp, mp] = r.array()?;
    let velocity = [r.i16()?, r.i16()?, r.i16()?];
    Ok(QuantizedEntity {
        position: QuantizedPosition { quadrant, offset },
        rotation,
        anim,
        status: EntityStatus {
            state,
            buffs,
            hp,
            mp,
        },
        velocity,
    })
}

/// A movement claim at full precision: what the client says it did. The
/// server validates it and may correct it.
///
/// Layout (33 bytes): input sequence u32, position 3 × f32, velocity
/// 3 × f32, yaw degrees f32, anim u8.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MovementClaim {
    /// The client's input counter; echoed in snapshots to measure latency.
    pub input_seq: u32,
    /// Claimed position.
    pub position: [f32; 3],
    /// Claimed velocity.
    pub velocity: [f32; 3],
    /// Claimed yaw in degrees.
    pub yaw: f32,
    /// Claimed animation state.
    pub anim: u8,
}

/// A quantized movement claim.
///
/// Layout (21 bytes): input sequence u32, quadrant u16, offsets 3 × i16,
/// velocity 3 × i16, yaw u16, anim u8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuantizedClaim {
    /// The client's input counter.
    pub input_seq: u32,
    /// Claimed position.
    pub position: QuantizedPosition,
    /// Claimed velocity in steps.
    pub velocity: [i16; 3],
    /// Claimed yaw as a turn fraction.
    pub yaw: u16,
    /// Claimed animation state.
    pub anim: u8,
}

/// Messages the server sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ServerMessage<'a> {
    /// 0 — Benchmark: id u64, payload (rest). Echo mode returns client
    /// probes in this form.
    Benchmark {
        /// Probe id.
        id: u64,
        /// Opaque bytes.
        payload: &'a [u8],
    },
    /// 1 — CreateEntity: entity id varint, entity type u8, quantized state
    /// (25 bytes, see [`encode_quantized`]).
    CreateEntity {
        /// Network id.
        entity_id: u32,
        /// Entity type.
        entity_type: u8,
        /// Full quantized state.
        state: QuantizedEntity,
    },
    /// 2 — UpdateEntity: entity id u32, [`FullEntityState`] (47 bytes).
    UpdateEntity {
        /// Network id.
        entity_id: u32,
        /// Full-precision state.
        state: FullEntityState,
    },
    /// 3 — RemoveEntity: entity id varint.
    RemoveEntity {
        /// Network id.
        entity_id: u32,
    },
    /// 4 — UpdateEntityQuantized: entity id varint, quantized state (25 B).
    UpdateEntityQuantized {
        /// Network id.
        entity_id: u32,
        /// Full quantized state.
        state: QuantizedEntity,
    },
    /// 5 — RekeyRequest: the control frame body (49 bytes).
    RekeyRequest(RekeyRequest),
    /// 6 — DeltaSync: server tick u32, newest acknowledged tick u32 (0 = none), last
    /// input sequence applied for this client u32, record count varint,
    /// then that many delta records (see [`crate::delta`]).
    DeltaSync(DeltaSync<'a>),
    /// 7 — WorldEntered (extension, channel ReliableOrdered): entity id
    /// varint, server tick u32, character id u64, position 3 × f32 (world
    /// units), yaw f32 (degrees), [`WorldParams`] (104 bytes).
    WorldEntered {
        /// The player's own entity.
        entity_id: u32,
        /// The server tick at entry.
        server_tick: u32,
        /// The character that entered.
        character_id: u64,
        /// Where it is, world units.
        position: [f32; 3],
        /// Its yaw, degrees.
        yaw: f32,
        /// What the client needs to dequantize and predict.
        world: WorldParams,
    },
    /// 8 — Correction (extension): input sequence u32, position 3 × f32,
    /// velocity 3 × f32: the authoritative state after a rejected claim.
    Correction {
        /// The rejected claim's sequence.
        input_seq: u32,
        /// Where the player really is.
        position: [f32; 3],
        /// Its real velocity.
        velocity: [f32; 3],
    },
    /// 9 — ActionResult (extension): input sequence u32, result u8
    /// (0 = done; otherwise an `ActionRefusal` code of the shards crate).
    ActionResult {
        /// The action request's sequence.
        input_seq: u32,
        /// Outcome code.
        result: u8,
    },
    /// 10 — Authenticated (extension): account id u64, session ticket
    /// (varint length ≤ 256 + bytes), expires at u64 (unix seconds). The
    /// answer to a successful Register or Login; the ticket lets the
    /// client reconnect without its password until it expires.
    Authenticated {
        /// The account.
        account_id: u64,
        /// Opaque session ticket (≤ [`MAX_SESSION_TICKET_LEN`] bytes).
        ticket: &'a [u8],
        /// When the ticket expires, unix seconds.
        expires_at: u64,
    },
    /// 11 — CharacterList (extension): see [`CharacterList`].
    CharacterList(CharacterList<'a>),
    /// 12 — CharacterDone (extension): request u8 (the client message type
    /// answered: 9 create, 10 delete, 11 restore), character id u64.
    CharacterDone {
        /// The type byte of the client message this answers.
        request: u8,
        /// The character created, deleted or restored.
        character_id: u64,
    },
    /// 13 — Refused (extension): request u8 (the type byte of the refused
    /// client message), reason u8 ([`RefusalReason`]). The request was not
    /// acted on.
    Refused {
        /// The type byte of the client message this answers.
        request: u8,
        /// Why.
        reason: RefusalReason,
    },
    /// 14 — Inventory (extension): see [`Inventory`]. The whole
    /// inventory and equipment, sent at entry and after every change.
    Inventory(Inventory<'a>),
    /// 15 — CharacterStats (extension): see [`CharacterStats`]. Sent at
    /// entry, on experience, on level-up and when equipment changes.
    CharacterStats(CharacterStats),
    /// 16 — CombatEvent (extension): source entity id varint, target
    /// entity id varint, skill u16 (action or skill id; 0 = auto attack),
    /// amount f32 (damage, or healing with HEAL), flags u8
    /// ([`combat_flags`]; reserved bits must be zero). Sent to the players
    /// who are the source or the target.
    CombatEvent {
        /// Who acted (network id).
        source: u32,
        /// Whom it hit (network id).
        target: u32,
        /// Which skill.
        skill: u16,
        /// Damage or healing dealt.
        amount: f32,
        /// [`combat_flags`] bits.
        flags: u8,
    },
    /// 17 — ChatMessage (extension): channel u8 ([`ChatChannel`]), from
    /// (string ≤ 32: the speaker; for WhisperSent the recipient), text
    /// (string ≤ [`MAX_CHAT_LEN`]).
    ChatMessage {
        /// Which channel.
        channel: ChatChannel,
        /// The speaker's character name (the recipient's for WhisperSent).
        from: &'a str,
        /// The line.
        text: &'a str,
    },
    /// 18 — EntityInfo (extension): entity id varint, entity type u8,
    /// template u16, level u16, count u16, name (varint length ≤ 32 +
    /// UTF-8). The answer to Inspect: what snapshots do not carry because
    /// it rarely changes. `template` is the NPC template (NPC, monster), the
    /// character template (player) or the item template (item); `level` is
    /// 0 for items; `count` is the stack lying there (items, else 0);
    /// `name` is the NPC's or item's name, or the character's name when its
    /// player is on the answering core (empty otherwise).
    EntityInfo {
        /// The entity (network id).
        entity: u32,
        /// Its type byte (as in snapshots).
        entity_type: u8,
        /// Its template.
        template: u16,
        /// Its level.
        level: u16,
        /// Items: how many.
        count: u16,
        /// Its name, if known here.
        name: &'a str,
    },
    /// 19 — ZoneTransfer (extension): address (string ≤
    /// [`MAX_ADDRESS_LEN`], `host:port`), the node's static X25519 public
    /// key (32 bytes), a one-time transfer ticket (varint length ≤
    /// [`MAX_TRANSFER_TICKET_LEN`] + bytes). The character now lives on
    /// another node of the cluster (it walked onto that node's ground, or
    /// it was entering and its saved position is there): the client opens a connection there,
    /// pinning `static_key`, with `ticket` as the Connect's auth ticket,
    /// and the new node answers with WorldEntered (no login, no character
    /// selection). The old connection is then closed by the server.
    ZoneTransfer {
        /// Where the node's clients connect.
        address: &'a str,
        /// The node's static public key (pin it).
        static_key: [u8; 32],
        /// The one-time ticket to connect with.
        ticket: &'a [u8],
    },
}

/// The header of a DeltaSync; the records follow as raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaSync<'a> {
    /// The server tick this snapshot shows.
    pub tick: u32,
    /// The newest snapshot tick the server knew acknowledged when it built
    /// this one (0 = none): the client may forget states older than the
    /// oldest baseline still referenced. Each update record names its own
    /// baseline by age.
    pub baseline_tick: u32,
    /// The last input sequence of this client the server applied.
    pub input_ack: u32,
    /// Number of records.
    pub record_count: u32,
    /// The encoded records.
    pub records: &'a [u8],
}

/// Messages the client sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientMessage<'a> {
    /// 0 — SyncEntity: [`MovementClaim`] (33 bytes).
    SyncEntity(MovementClaim),
    /// 1 — SyncEntityQuantized: [`QuantizedClaim`] (21 bytes).
    SyncEntityQuantized(QuantizedClaim),
    /// 2 — Pong: the control frame body (id u32).
    Pong(Pong),
    /// 3 — EnterToWorld: character id u64, character name (varint length
    /// ≤ 32 + UTF-8).
    EnterToWorld {
        /// Which character.
        character_id: u64,
        /// Its display name.
        name: &'a str,
    },
    /// 4 — RekeyResponse: the control frame body (49 bytes).
    RekeyResponse(RekeyResponse),
    /// 5 — Action (extension): input sequence u32, action id u16, target
    /// entity id varint (0 = none).
    Action {
        /// The client's input counter.
        input_seq: u32,
        /// Which action.
        action_id: u16,
        /// Its target.
        target: u32,
    },
    /// 6 — Register (extension): account (varint length ≤ 32 + UTF-8),
    /// password (varint length ≤ 128 + UTF-8). Creates the account and
    /// logs in: answered by Authenticated or Refused.
    Register {
        /// Account name.
        account: &'a str,
        /// Password.
        password: &'a str,
    },
    /// 7 — Login (extension): the same body as Register.
    Login {
        /// Account name.
        account: &'a str,
        /// Password.
        password: &'a str,
    },
    /// 8 — CharacterList (extension): empty body. Answered by a server
    /// CharacterList.
    CharacterList,
    /// 9 — CharacterCreate (extension): name (varint length ≤ 32 + UTF-8),
    /// template u16, appearance (varint length ≤ 32 + bytes). Answered by
    /// CharacterDone or Refused.
    CharacterCreate {
        /// The new character's name.
        name: &'a str,
        /// Which template (race/class).
        template: u16,
        /// Opaque appearance bytes (≤ [`MAX_APPEARANCE_LEN`]).
        appearance: &'a [u8],
    },
    /// 10 — CharacterDelete (extension): character id u64.
    CharacterDelete {
        /// Which character.
        character_id: u64,
    },
    /// 11 — CharacterRestore (extension): character id u64.
    CharacterRestore {
        /// Which character.
        character_id: u64,
    },
    /// 12 — LeaveWorld (extension): empty body. Back to character
    /// selection.
    LeaveWorld,
    /// 13 — PickUp (extension): input sequence u32, item entity id
    /// varint (u32). Answered by an ActionResult with the same sequence
    /// (the shard's verdict), or Refused when the game layer refuses it
    /// first (no room in the inventory, too heavy).
    PickUp {
        /// The client's input counter.
        input_seq: u32,
        /// The item entity (network id, as seen in snapshots).
        item: u32,
    },
    /// 14 — UseItem (extension): inventory slot u8. Answered by an
    /// Inventory (and the effect) or Refused.
    UseItem {
        /// Which inventory slot.
        slot: u8,
    },
    /// 15 — Equip (extension): inventory slot u8, equip slot u8
    /// ([`EquipSlot`] number; any byte decodes, a slot the item does not
    /// go in is refused with `WrongSlot`). Answered by an Inventory and a
    /// CharacterStats, or Refused.
    Equip {
        /// Which inventory slot holds the item.
        slot: u8,
        /// Where to wear it.
        equip_slot: u8,
    },
    /// 16 — Unequip (extension): equip slot u8. The worn item goes back
    /// into the first free inventory slot. Answered by an Inventory and a
    /// CharacterStats, or Refused.
    Unequip {
        /// Which equip slot.
        equip_slot: u8,
    },
    /// 17 — Chat (extension): channel u8 (0 Say, 1 Shout, 2 Whisper; 3
    /// does not decode from a client), target (string ≤ 32: the
    /// recipient's character name for Whisper, empty otherwise), text
    /// (string ≤ [`MAX_CHAT_LEN`]).
    Chat {
        /// Which channel.
        channel: ChatChannel,
        /// The whisper's recipient.
        target: &'a str,
        /// The line.
        text: &'a str,
    },
    /// 18 — DropItem (extension): inventory slot u8, count u16. The items
    /// leave the inventory and lie at the player's feet as an Item entity
    /// (only the dropper may pick it up during the loot owner window).
    /// Answered by an Inventory, or Refused.
    DropItem {
        /// Which inventory slot.
        slot: u8,
        /// How many (1 up to the stack's count).
        count: u16,
    },
    /// 19 — Inspect (extension): entity id varint. Asks what an entity the
    /// player sees is (its template, level, name): answered by EntityInfo,
    /// or Refused with `NoSuchEntity` when it is not within sight.
    Inspect {
        /// The entity (network id, as seen in snapshots).
        entity: u32,
    },
}

/// The longest character name.
pub const MAX_NAME_LEN: usize = 32;

/// Longest address in a ZoneTransfer (`host:port`), bytes.
pub const MAX_ADDRESS_LEN: usize = 64;

/// Longest transfer ticket in a ZoneTransfer, bytes.
pub const MAX_TRANSFER_TICKET_LEN: usize = 64;

/// The channel a client message must be sent on: movement claims
/// (SyncEntity, SyncEntityQuantized) are [`Channel::Unreliable`] (a newer
/// claim supersedes a lost one); everything else, account, character,
/// world entry and exit, actions, items, equipment and chat (and the seed
/// aliases), is [`Channel::ReliableOrdered`].
pub fn channel_for(msg: &ClientMessage<'_>) -> Channel {
    match msg {
        ClientMessage::SyncEntity(_) | ClientMessage::SyncEntityQuantized(_) => Channel::Unreliable,
        _ => Channel::ReliableOrdered,
    }
}

impl<'a> ServerMessage<'a> {
    /// Writes the message (type byte and body).
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            Self::Benchmark { id, payload } => {
                w.u8(server_type::BENCHMARK)?;
                w.u64(*id)?;
                w.bytes(payload)
            }
            Self::CreateEntity {
                entity_id,
                entity_type,
                state,
            } => {
                w.u8(server_type::CREATE_ENTITY)?;
                w.varint(u64::from(*entity_id))?;
                w.u8(*entity_type)?;
                encode_quantized(w, state)
            }
            Self::UpdateEntity { entity_id, state } => {
                w.u8(server_type::UPDATE_ENTITY)?;
                w.u32(*entity_id)?;
                state.encode(w)
            }
            Self::RemoveEntity { entity_id } => {
                w.u8(server_type::REMOVE_ENTITY)?;
                w.varint(u64::from(*entity_id))
            }
            Self::UpdateEntityQuantized { entity_id, state } => {
                w.u8(server_type::UPDATE_ENTITY_QUANTIZED)?;
                w.varint(u64::from(*entity_id))?;
                encode_quantized(w, state)
            }
            Self::RekeyRequest(body) => {
                w.u8(server_type::REKEY_REQUEST)?;
                body.encode_body(w)
            }
            Self::DeltaSync(d) => {
                w.u8(server_type::DELTA_SYNC)?;
                w.u32(d.tick)?;
                w.u32(d.baseline_tick)?;
                w.u32(d.input_ack)?;
                w.varint(u64::from(d.record_count))?;
                w.bytes(d.records)
            }
            Self::WorldEntered {
                entity_id,
                server_tick,
                character_id,
                position,
                yaw,
                world,
            } => {
                w.u8(server_type::WORLD_ENTERED)?;
                w.varint(u64::from(*entity_id))?;
                w.u32(*server_tick)?;
                w.u64(*character_id)?;
                for v in position {
                    w.f32(*v)?;
                }
                w.f32(*yaw)?;
                world.encode(w)
            }
            Self::Correction {
                input_seq,
                position,
                velocity,
            } => {
                w.u8(server_type::CORRECTION)?;
                w.u32(*input_seq)?;
                for v in position.iter().chain(velocity) {
                    w.f32(*v)?;
                }
                Ok(())
            }
            Self::ActionResult { input_seq, result } => {
                w.u8(server_type::ACTION_RESULT)?;
                w.u32(*input_seq)?;
                w.u8(*result)
            }
            Self::Authenticated {
                account_id,
                ticket,
                expires_at,
            } => {
                w.u8(server_type::AUTHENTICATED)?;
                w.u64(*account_id)?;
                w.len_prefixed(ticket, MAX_SESSION_TICKET_LEN)?;
                w.u64(*expires_at)
            }
            Self::CharacterList(list) => {
                w.u8(server_type::CHARACTER_LIST)?;
                w.u8(list.max_characters)?;
                w.u8(list.count)?;
                w.bytes(list.entries)
            }
            Self::CharacterDone {
                request,
                character_id,
            } => {
                w.u8(server_type::CHARACTER_DONE)?;
                w.u8(*request)?;
                w.u64(*character_id)
            }
            Self::Refused { request, reason } => {
                w.u8(server_type::REFUSED)?;
                w.u8(*request)?;
                w.u8(*reason as u8)
            }
            Self::Inventory(inv) => {
                w.u8(server_type::INVENTORY)?;
                inv.encode_body(w)
            }
            Self::CharacterStats(s) => {
                w.u8(server_type::CHARACTER_STATS)?;
                s.encode_body(w)
            }
            Self::CombatEvent {
                source,
                target,
                skill,
                amount,
                flags,
            } => {
                w.u8(server_type::COMBAT_EVENT)?;
                w.varint(u64::from(*source))?;
                w.varint(u64::from(*target))?;
                w.u16(*skill)?;
                w.f32(*amount)?;
                w.u8(*flags)
            }
            Self::ChatMessage {
                channel,
                from,
                text,
            } => {
                w.u8(server_type::CHAT_MESSAGE)?;
                w.u8(*channel as u8)?;
                w.str(from, MAX_NAME_LEN)?;
                w.str(text, MAX_CHAT_LEN)
            }
            Self::EntityInfo {
                entity,
                entity_type,
                template,
                level,
                count,
                name,
            } => {
                w.u8(server_type::ENTITY_INFO)?;
                w.varint(u64::from(*entity))?;
                w.u8(*entity_type)?;
                w.u16(*template)?;
                w.u16(*level)?;
                w.u16(*count)?;
                w.str(name, MAX_NAME_LEN)
            }
            Self::ZoneTransfer {
                address,
                static_key,
                ticket,
            } => {
                w.u8(server_type::ZONE_TRANSFER)?;
                w.str(address, MAX_ADDRESS_LEN)?;
                w.bytes(static_key)?;
                w.len_prefixed(ticket, MAX_TRANSFER_TICKET_LEN)
            }
        }
    }

    /// Reads a message that fills `bytes` exactly.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            server_type::BENCHMARK => Self::Benchmark {
                id: r.u64()?,
                payload: r.rest(),
            },
            server_type::CREATE_ENTITY => Self::CreateEntity {
                entity_id: r.varint_u32()?,
                entity_type: r.u8()?,
                state: decode_quantized(&mut r)?,
            },
            server_type::UPDATE_ENTITY => Self::UpdateEntity {
                entity_id: r.u32()?,
                state: FullEntityState::decode(&mut r)?,
            },
            server_type::REMOVE_ENTITY => Self::RemoveEntity {
                entity_id: r.varint_u32()?,
            },
            server_type::UPDATE_ENTITY_QUANTIZED => Self::UpdateEntityQuantized {
                entity_id: r.varint_u32()?,
                state: decode_quantized(&mut r)?,
            },
            server_type::REKEY_REQUEST => Self::RekeyRequest(RekeyRequest::decode_body(&mut r)?),
            server_type::DELTA_SYNC => Self::DeltaSync(DeltaSync {
                tick: r.u32()?,
                baseline_tick: r.u32()?,
                input_ack: r.u32()?,
                record_count: r.varint_u32()?,
                records: r.rest(),
            }),
            server_type::WORLD_ENTERED => Self::WorldEntered {
                entity_id: r.varint_u32()?,
                server_tick: r.u32()?,
                character_id: r.u64()?,
                position: [r.f32()?, r.f32()?, r.f32()?],
                yaw: r.f32()?,
                world: WorldParams::decode(&mut r)?,
            },
            server_type::CORRECTION => Self::Correction {
                input_seq: r.u32()?,
                position: [r.f32()?, r.f32()?, r.f32()?],
                velocity: [r.f32()?, r.f32()?, r.f32()?],
            },
            server_type::ACTION_RESULT => Self::ActionResult {
                input_seq: r.u32()?,
                result: r.u8()?,
            },
            server_type::AUTHENTICATED => Self::Authenticated {
                account_id: r.u64()?,
                ticket: r.len_prefixed(MAX_SESSION_TICKET_LEN)?,
                expires_at: r.u64()?,
            },
            server_type::CHARACTER_LIST => {
                let list = CharacterList {
                    max_characters: r.u8()?,
                    count: r.u8()?,
                    entries: r.rest(),
                };
                list.validate()?;
                Self::CharacterList(list)
            }
            server_type::CHARACTER_DONE => Self::CharacterDone {
                request: r.u8()?,
                character_id: r.u64()?,
            },
            server_type::REFUSED => Self::Refused {
                request: r.u8()?,
                reason: RefusalReason::from_u8(r.u8()?)?,
            },
            server_type::INVENTORY => Self::Inventory(Inventory::decode_body(&mut r)?),
            server_type::CHARACTER_STATS => {
                Self::CharacterStats(CharacterStats::decode_body(&mut r)?)
            }
            server_type::COMBAT_EVENT => Self::CombatEvent {
                source: r.varint_u32()?,
                target: r.varint_u32()?,
                skill: r.u16()?,
                amount: r.f32()?,
                flags: super::gameplay::check_combat_flags(r.u8()?)?,
            },
            server_type::CHAT_MESSAGE => Self::ChatMessage {
                channel: ChatChannel::from_u8(r.u8()?)?,
                from: r.str(MAX_NAME_LEN)?,
                text: r.str(MAX_CHAT_LEN)?,
            },
            server_type::ENTITY_INFO => Self::EntityInfo {
                entity: r.varint_u32()?,
                entity_type: r.u8()?,
                template: r.u16()?,
                level: r.u16()?,
                count: r.u16()?,
                name: r.str(MAX_NAME_LEN)?,
            },
            server_type::ZONE_TRANSFER => Self::ZoneTransfer {
                address: r.str(MAX_ADDRESS_LEN)?,
                static_key: r.array()?,
                ticket: r.len_prefixed(MAX_TRANSFER_TICKET_LEN)?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

impl<'a> ClientMessage<'a> {
    /// Writes the message (type byte and body).
    pub fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match self {
            Self::SyncEntity(c) => {
                w.u8(client_type::SYNC_ENTITY)?;
                w.u32(c.input_seq)?;
                for v in c.position.iter().chain(&c.velocity) {
                    w.f32(*v)?;
                }
                w.f32(c.yaw)?;
                w.u8(c.anim)
            }
            Self::SyncEntityQuantized(c) => {
                w.u8(client_type::SYNC_ENTITY_QUANTIZED)?;
                w.u32(c.input_seq)?;
                w.u16(c.position.quadrant)?;
                for v in c.position.offset.iter().chain(&c.velocity) {
                    w.i16(*v)?;
                }
                w.u16(c.yaw)?;
                w.u8(c.anim)
            }
            Self::Pong(p) => {
                w.u8(client_type::PONG)?;
                p.encode_body(w)
            }
            Self::EnterToWorld { character_id, name } => {
                w.u8(client_type::ENTER_TO_WORLD)?;
                w.u64(*character_id)?;
                w.str(name, MAX_NAME_LEN)
            }
            Self::RekeyResponse(body) => {
                w.u8(client_type::REKEY_RESPONSE)?;
                body.encode_body(w)
            }
            Self::Action {
                input_seq,
                action_id,
                target,
            } => {
                w.u8(client_type::ACTION)?;
                w.u32(*input_seq)?;
                w.u16(*action_id)?;
                w.varint(u64::from(*target))
            }
            Self::Register { account, password } | Self::Login { account, password } => {
                w.u8(self.type_byte())?;
                w.str(account, MAX_ACCOUNT_LEN)?;
                w.str(password, MAX_PASSWORD_LEN)
            }
            Self::CharacterList | Self::LeaveWorld => w.u8(self.type_byte()),
            Self::CharacterCreate {
                name,
                template,
                appearance,
            } => {
                w.u8(client_type::CHARACTER_CREATE)?;
                w.str(name, MAX_NAME_LEN)?;
                w.u16(*template)?;
                w.len_prefixed(appearance, MAX_APPEARANCE_LEN)
            }
            Self::CharacterDelete { character_id } | Self::CharacterRestore { character_id } => {
                w.u8(self.type_byte())?;
                w.u64(*character_id)
            }
            Self::PickUp { input_seq, item } => {
                w.u8(client_type::PICK_UP)?;
                w.u32(*input_seq)?;
                w.varint(u64::from(*item))
            }
            Self::UseItem { slot } => {
                w.u8(client_type::USE_ITEM)?;
                w.u8(*slot)
            }
            Self::Equip { slot, equip_slot } => {
                w.u8(client_type::EQUIP)?;
                w.u8(*slot)?;
                w.u8(*equip_slot)
            }
            Self::Unequip { equip_slot } => {
                w.u8(client_type::UNEQUIP)?;
                w.u8(*equip_slot)
            }
            Self::Chat {
                channel,
                target,
                text,
            } => {
                w.u8(client_type::CHAT)?;
                w.u8(*channel as u8)?;
                w.str(target, MAX_NAME_LEN)?;
                w.str(text, MAX_CHAT_LEN)
            }
            Self::DropItem { slot, count } => {
                w.u8(client_type::DROP_ITEM)?;
                w.u8(*slot)?;
                w.u16(*count)
            }
            Self::Inspect { entity } => {
                w.u8(client_type::INSPECT)?;
                w.varint(u64::from(*entity))
            }
        }
    }

    /// The message's type byte (what [`ServerMessage::Refused`] and
    /// [`ServerMessage::CharacterDone`] name as `request`).
    pub fn type_byte(&self) -> u8 {
        match self {
            Self::SyncEntity(_) => client_type::SYNC_ENTITY,
            Self::SyncEntityQuantized(_) => client_type::SYNC_ENTITY_QUANTIZED,
            Self::Pong(_) => client_type::PONG,
            Self::EnterToWorld { .. } => client_type::ENTER_TO_WORLD,
            Self::RekeyResponse(_) => client_type::REKEY_RESPONSE,
            Self::Action { .. } => client_type::ACTION,
            Self::Register { .. } => client_type::REGISTER,
            Self::Login { .. } => client_type::LOGIN,
            Self::CharacterList => client_type::CHARACTER_LIST,
            Self::CharacterCreate { .. } => client_type::CHARACTER_CREATE,
            Self::CharacterDelete { .. } => client_type::CHARACTER_DELETE,
            Self::CharacterRestore { .. } => client_type::CHARACTER_RESTORE,
            Self::LeaveWorld => client_type::LEAVE_WORLD,
            Self::PickUp { .. } => client_type::PICK_UP,
            Self::UseItem { .. } => client_type::USE_ITEM,
            Self::Equip { .. } => client_type::EQUIP,
            Self::Unequip { .. } => client_type::UNEQUIP,
            Self::Chat { .. } => client_type::CHAT,
            Self::DropItem { .. } => client_type::DROP_ITEM,
            Self::Inspect { .. } => client_type::INSPECT,
        }
    }

    /// The channel this message must be sent on ([`channel_for`]).
    pub fn channel(&self) -> Channel {
        channel_for(self)
    }

    /// Reads a message that fills `bytes` exactly.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let msg = match r.u8()? {
            client_type::SYNC_ENTITY => Self::SyncEntity(MovementClaim {
                input_seq: r.u32()?,
                position: [r.f32()?, r.f32()?, r.f32()?],
                velocity: [r.f32()?, r.f32()?, r.f32()?],
                yaw: r.f32()?,
                anim: r.u8()?,
            }),
            client_type::SYNC_ENTITY_QUANTIZED => Self::SyncEntityQuantized(QuantizedClaim {
                input_seq: r.u32()?,
                position: QuantizedPosition {
                    quadrant: r.u16()?,
                    offset: [r.i16()?, r.i16()?, r.i16()?],
                },
                velocity: [r.i16()?, r.i16()?, r.i16()?],
                yaw: r.u16()?,
                anim: r.u8()?,
            }),
            client_type::PONG => Self::Pong(Pong::decode_body(&mut r)?),
            client_type::ENTER_TO_WORLD => Self::EnterToWorld {
                character_id: r.u64()?,
                name: r.str(MAX_NAME_LEN)?,
            },
            client_type::REKEY_RESPONSE => Self::RekeyResponse(RekeyResponse::decode_body(&mut r)?),
            client_type::ACTION => Self::Action {
                input_seq: r.u32()?,
                action_id: r.u16()?,
                target: r.varint_u32()?,
            },
            client_type::REGISTER => Self::Register {
                account: r.str(MAX_ACCOUNT_LEN)?,
                password: r.str(MAX_PASSWORD_LEN)?,
            },
            client_type::LOGIN => Self::Login {
                account: r.str(MAX_ACCOUNT_LEN)?,
                password: r.str(MAX_PASSWORD_LEN)?,
            },
            client_type::CHARACTER_LIST => Self::CharacterList,
            client_type::CHARACTER_CREATE => Self::CharacterCreate {
                name: r.str(MAX_NAME_LEN)?,
                template: r.u16()?,
                appearance: r.len_prefixed(MAX_APPEARANCE_LEN)?,
            },
            client_type::CHARACTER_DELETE => Self::CharacterDelete {
                character_id: r.u64()?,
            },
            client_type::CHARACTER_RESTORE => Self::CharacterRestore {
                character_id: r.u64()?,
            },
            client_type::LEAVE_WORLD => Self::LeaveWorld,
            client_type::PICK_UP => Self::PickUp {
                input_seq: r.u32()?,
                item: r.varint_u32()?,
            },
            client_type::USE_ITEM => Self::UseItem { slot: r.u8()? },
            client_type::EQUIP => Self::Equip {
                slot: r.u8()?,
                equip_slot: r.u8()?,
            },
            client_type::UNEQUIP => Self::Unequip {
                equip_slot: r.u8()?,
            },
            client_type::CHAT => {
                let channel = match ChatChannel::from_u8(r.u8()?)? {
                    ChatChannel::WhisperSent => {
                        return Err(WireError::InvalidValue {
                            field: "chat channel",
                            value: u64::from(ChatChannel::WhisperSent as u8),
                        });
                    }
                    c => c,
                };
                Self::Chat {
                    channel,
                    target: r.str(MAX_NAME_LEN)?,
                    text: r.str(MAX_CHAT_LEN)?,
                }
            }
            client_type::DROP_ITEM => Self::DropItem {
                slot: r.u8()?,
                count: r.u16()?,
            },
            client_type::INSPECT => Self::Inspect {
                entity: r.varint_u32()?,
            },
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}
