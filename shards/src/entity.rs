//! Entities: struct-of-arrays storage with generational ids and a fixed
//! pool, entity types, state and buff flags, and factions.
//!
//! Every column of [`Entities`] is a `Vec` allocated once, at the pool's
//! capacity, when the shard is built: spawning takes a free slot and writes
//! its columns, despawning bumps the slot's generation and returns it to the
//! free list, and nothing allocates in between. A stale [`EntityId`] (its
//! slot reused since) resolves to nothing.
//!
//! Ghosts — read-only copies of entities that a neighbouring core owns —
//! live in the same pool, marked as such, so that the AOI grid and the
//! snapshot writer treat local entities and ghosts alike.

use tos_protocol::delta::QuantizedEntity;

use crate::ShardError;
use crate::ai::Brain;
use crate::util::{IdMap, id_map};

/// Ticks of quantized state kept per entity: at least the number of
/// snapshots a client can have in flight, so that an acknowledgement can
/// always find the state a snapshot carried; and, since a baseline is
/// named by its tick and read from here when an update is encoded, the
/// oldest baseline an update can use (32 ticks: a loaded server whose
/// acknowledgements arrive late still sends updates, not Creates).
pub const HISTORY: usize = 32;

/// The most actions (and so cooldown timers) an entity has: the most
/// skills the data files may define.
pub const MAX_ACTIONS: usize = tos_config::MAX_SKILLS;

/// A client of the engine (a connection, stable across migrations between
/// cores; the engine assigns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u32);

/// A handle to an entity slot of one shard. Stale handles (the slot was
/// freed and reused) resolve to nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityId {
    /// Slot in the pool.
    pub index: u32,
    /// The slot's generation when the handle was made.
    pub generation: u32,
}

/// What kind of thing an entity is (a `u8` on the wire, in Create records).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[repr(u8)]
pub enum EntityType {
    /// A player-controlled character.
    Player = 0,
    /// A non-player character.
    Npc = 1,
    /// A hostile creature.
    Monster = 2,
    /// A projectile.
    Projectile = 3,
    /// A building or other static structure.
    StaticBuild = 4,
    /// A vehicle or mount.
    Vehicle = 5,
    /// An item lying in the world.
    Item = 6,
    /// A visual effect.
    Effect = 7,
}

impl EntityType {
    /// Every type, in wire order.
    pub const ALL: [Self; 8] = [
        Self::Player,
        Self::Npc,
        Self::Monster,
        Self::Projectile,
        Self::StaticBuild,
        Self::Vehicle,
        Self::Item,
        Self::Effect,
    ];

    /// The wire byte.
    #[inline]
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// The type of a wire byte.
    pub const fn from_u8(v: u8) -> Option<Self> {
        if (v as usize) < Self::ALL.len() {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Index into per-type tables (`0..8`).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The interest distance of this type in an AOI config.
    pub fn interest_distance(self, d: &tos_config::InterestDistances) -> f64 {
        match self {
            Self::Player => d.player,
            Self::Npc => d.npc,
            Self::Monster => d.monster,
            Self::Projectile => d.projectile,
            Self::StaticBuild => d.static_build,
            Self::Vehicle => d.vehicle,
            Self::Item => d.item,
            Self::Effect => d.effect,
        }
    }
}

tos_protocol::flags! {
    #[derive(serde::Serialize, serde::Deserialize)]
    /// EntityState bits (seed §5.1), sent in the Flags field of records.
    pub struct EntityState(pub u8) {
        /// The entity is alive.
        ALIVE = 0x01,
        /// It is in combat.
        IN_COMBAT = 0x02,
        /// It is moving.
        MOVING = 0x04,
        /// It is casting.
        CASTING = 0x08,
        /// It is invisible (only friends see it).
        INVISIBLE = 0x10,
        /// It is stunned (no moves, no actions).
        STUNNED = 0x20,
        /// It is falling.
        FALLING = 0x40,
    }
}

tos_protocol::flags! {
    #[derive(serde::Serialize, serde::Deserialize)]
    /// Buff and debuff bits (seed §9.1), sent in the Flags field of records.
    pub struct BuffFlags(pub u8) {
        /// Frozen: cannot move or act.
        FROZEN = 0x01,
        /// Poisoned: loses `intensity` HP per second.
        POISONED = 0x02,
        /// Burning: loses `intensity` HP per second.
        BURNING = 0x04,
        /// Slowed: moves at `1 − 0.75 · intensity / 255` of its speed.
        SLOWED = 0x08,
        /// Stunned: cannot move or act.
        STUNNED = 0x10,
        /// Invisible: only friends see it.
        INVISIBLE = 0x20,
        /// Invulnerable: takes no damage.
        INVULNERABLE = 0x40,
    }
}

/// One buff or debuff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Buff {
    /// See [`BuffFlags::FROZEN`].
    Frozen = 0,
    /// See [`BuffFlags::POISONED`].
    Poisoned = 1,
    /// See [`BuffFlags::BURNING`].
    Burning = 2,
    /// See [`BuffFlags::SLOWED`].
    Slowed = 3,
    /// See [`BuffFlags::STUNNED`].
    Stunned = 4,
    /// See [`BuffFlags::INVISIBLE`].
    Invisible = 5,
    /// See [`BuffFlags::INVULNERABLE`].
    Invulnerable = 6,
}

impl Buff {
    /// Every buff.
    pub const ALL: [Self; 7] = [
        Self::Frozen,
        Self::Poisoned,
        Self::Burning,
        Self::Slowed,
        Self::Stunned,
        Self::Invisible,
        Self::Invulnerable,
    ];

    /// The buff with this wire number, if any.
    pub const fn from_u8(v: u8) -> Option<Self> {
        if (v as usize) < Self::ALL.len() {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Its flag bit.
    #[inline]
    pub const fn flag(self) -> BuffFlags {
        BuffFlags(1 << self as u8)
    }
}

/// The buffs of one entity: which are on, until which tick, how strong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct BuffSet {
    /// Which buffs are on.
    pub flags: BuffFlags,
    /// Per buff: the first tick it is no longer on.
    pub until: [u32; 7],
    /// Per buff: its intensity (meaning per buff, see [`BuffFlags`]).
    pub intensity: [u8; 7],
}

impl BuffSet {
    /// Puts `buff` on from `now` for `duration` ticks. A buff already on is
    /// extended and takes the stronger intensity.
    pub fn apply(&mut self, buff: Buff, now: u32, duration: u32, intensity: u8) {
        let i = buff as usize;
        let until = now.wrapping_add(duration.max(1));
        if self.flags.contains(buff.flag()) {
            if crate::util::tick_after(until, self.until[i]) {
                self.until[i] = until;
            }
            self.intensity[i] = self.intensity[i].max(intensity);
        } else {
            self.until[i] = until;
            self.intensity[i] = intensity;
        }
        self.flags.set(buff.flag(), true);
    }

    /// Clears every buff whose time is up at `now`; returns how many.
    pub fn expire(&mut self, now: u32) -> u32 {
        let mut expired = 0;
        for buff in Buff::ALL {
            let i = buff as usize;
            if self.flags.contains(buff.flag()) && !crate::util::tick_after(self.until[i], now) {
                self.flags.set(buff.flag(), false);
                self.intensity[i] = 0;
                expired += 1;
            }
        }
        expired
    }

    /// The intensity of `buff` (0 when off).
    pub fn intensity(&self, buff: Buff) -> u8 {
        if self.flags.contains(buff.flag()) {
            self.intensity[buff as usize]
        } else {
            0
        }
    }
}

/// A faction (`0..64`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Faction(pub u8);

impl Faction {
    /// Nobody's friend or enemy.
    pub const NEUTRAL: Self = Self(0);
    /// The first player faction.
    pub const ALLIANCE: Self = Self(1);
    /// The second player faction.
    pub const HORDE: Self = Self(2);
    /// Hostile creatures.
    pub const MONSTERS: Self = Self(3);
    /// Town NPCs.
    pub const TOWNSFOLK: Self = Self(4);

    /// The most factions.
    pub const MAX: usize = 64;
}

/// Hostility and friendship between factions as two 64 × 64 bit matrices:
/// every question is one shift and one mask (seed §9.2's O(1) enemy/friend
/// detection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactionTable {
    hostile: [u64; Faction::MAX],
    friendly: [u64; Faction::MAX],
}

impl FactionTable {
    /// A table where every faction is friendly to itself only.
    pub fn empty() -> Self {
        let mut t = Self {
            hostile: [0; Faction::MAX],
            friendly: [0; Faction::MAX],
        };
        for f in 0..Faction::MAX {
            t.friendly[f] |= 1 << f;
        }
        t
    }

    /// Makes `a` and `b` enemies of each other.
    pub fn set_hostile(&mut self, a: Faction, b: Faction) {
        let (a, b) = (usize::from(a.0 & 63), usize::from(b.0 & 63));
        self.hostile[a] |= 1 << b;
        self.hostile[b] |= 1 << a;
        self.friendly[a] &= !(1 << b);
        self.friendly[b] &= !(1 << a);
    }

    /// Makes `a` and `b` friends of each other.
    pub fn set_friendly(&mut self, a: Faction, b: Faction) {
        let (a, b) = (usize::from(a.0 & 63), usize::from(b.0 & 63));
        self.friendly[a] |= 1 << b;
        self.friendly[b] |= 1 << a;
        self.hostile[a] &= !(1 << b);
        self.hostile[b] &= !(1 << a);
    }

    /// Whether `a` and `b` are enemies.
    #[inline]
    pub fn is_enemy(&self, a: Faction, b: Faction) -> bool {
        self.hostile[usize::from(a.0 & 63)] >> (b.0 & 63) & 1 == 1
    }

    /// Whether `a` and `b` are friends.
    #[inline]
    pub fn is_friend(&self, a: Faction, b: Faction) -> bool {
        self.friendly[usize::from(a.0 & 63)] >> (b.0 & 63) & 1 == 1
    }
}

impl Default for FactionTable {
    /// Alliance and Horde are enemies; monsters are hostile to both and to
    /// townsfolk; townsfolk are friends of both player factions.
    fn default() -> Self {
        let mut t = Self::empty();
        t.set_hostile(Faction::ALLIANCE, Faction::HORDE);
        t.set_hostile(Faction::MONSTERS, Faction::ALLIANCE);
        t.set_hostile(Faction::MONSTERS, Faction::HORDE);
        t.set_hostile(Faction::MONSTERS, Faction::TOWNSFOLK);
        t.set_friendly(Faction::TOWNSFOLK, Faction::ALLIANCE);
        t.set_friendly(Faction::TOWNSFOLK, Faction::HORDE);
        t
    }
}

/// What to spawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpawnParams {
    /// Its type.
    pub kind: EntityType,
    /// Its faction.
    pub faction: Faction,
    /// Where.
    pub position: [f32; 3],
    /// Initial velocity (projectiles fly with it).
    pub velocity: [f32; 3],
    /// Yaw in degrees.
    pub yaw: f32,
    /// Maximum (and initial) hit points.
    pub hp: f32,
    /// Maximum (and initial) mana.
    pub mp: f32,
    /// Walking speed for the AI, units per second.
    pub speed: f32,
    /// Wander radius around `position` (0: no AI).
    pub wander_radius: f32,
    /// Despawn after this many ticks (0: never).
    pub lifetime_ticks: u32,
    /// Level (combat stats and the experience it is worth).
    pub level: u16,
    /// The six base stats.
    pub stats: crate::combat::BaseStats,
    /// Loot table rolled when it dies (0: none).
    pub loot_table: u16,
    /// NPC template id (0: none).
    pub template: u16,
    /// Patrol route id (0: none).
    pub patrol: u16,
}

impl SpawnParams {
    /// Defaults for a type at a position: 100 HP and MP, no AI, no lifetime.
    pub fn new(kind: EntityType, faction: Faction, position: [f32; 3]) -> Self {
        Self {
            kind,
            faction,
            position,
            velocity: [0.0; 3],
            yaw: 0.0,
            hp: 100.0,
            mp: 100.0,
            speed: 0.0,
            wander_radius: 0.0,
            lifetime_ticks: 0,
            level: 1,
            stats: crate::combat::DEFAULT_STATS,
            loot_table: 0,
            template: 0,
            patrol: 0,
        }
    }
}

/// Everything simulated about one entity, as plain data: what a hand-off
/// carries to another core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityRecord {
    /// Network id (kept across cores).
    pub net_id: u32,
    /// Type.
    pub kind: EntityType,
    /// Faction.
    pub faction: Faction,
    /// The client controlling it, if a player.
    pub owner: Option<ClientId>,
    /// Position.
    pub position: [f32; 3],
    /// Velocity, units per second.
    pub velocity: [f32; 3],
    /// Pitch, yaw, roll in degrees.
    pub rotation: [f32; 3],
    /// Animation state.
    pub anim: u8,
    /// State flags.
    pub state: EntityState,
    /// Buffs with their timers.
    pub buffs: BuffSet,
    /// HP and its maximum.
    pub hp: [f32; 2],
    /// MP and its maximum.
    pub mp: [f32; 2],
    /// AI walking speed.
    pub speed: f32,
    /// The last input sequence applied (players).
    pub last_input_seq: u32,
    /// Per action slot: the first tick it is ready again.
    pub cooldowns: [u32; MAX_ACTIONS],
    /// NPC template id (0: players and plain wanderers).
    pub template: u16,
    /// NPC AI state.
    pub ai: Brain,
    /// Despawn tick (0: never).
    pub expires: u32,
    /// Respawn tick while dead (0: none).
    pub respawn: u32,
    /// In combat until this tick.
    pub combat_until: u32,
    /// Level, experience, templates.
    pub progress: crate::combat::Progress,
    /// Stats and gear.
    pub fighter: crate::combat::Fighter,
    /// The cast in progress.
    pub cast: crate::combat::Cast,
    /// Who dealt it damage.
    pub contributions: crate::combat::Contributions,
    /// Items: template, count, owner.
    pub item: crate::loot::ItemState,
}

/// The struct-of-arrays entity pool of one shard.
#[derive(Debug)]
pub struct Entities {
    capacity: u32,
    pub(crate) generation: Vec<u32>,
    pub(crate) live: Vec<bool>,
    free: Vec<u32>,
    /// Live slots (local and ghost), in no particular order.
    pub(crate) dense: Vec<u32>,
    dense_pos: Vec<u32>,
    pub(crate) by_net: IdMap<u32, u32>,
    locals: u32,

    pub(crate) net_id: Vec<u32>,
    pub(crate) kind: Vec<EntityType>,
    pub(crate) faction: Vec<Faction>,
    pub(crate) owner: Vec<Option<ClientId>>,
    /// Ghosts: the core that owns the entity; local entities: this core.
    pub(crate) origin: Vec<u16>,
    pub(crate) ghost: Vec<bool>,
    /// Ghosts: tick of the last batch that updated it.
    pub(crate) ghost_seen: Vec<u32>,

    pub(crate) position: Vec<[f32; 3]>,
    pub(crate) velocity: Vec<[f32; 3]>,
    pub(crate) rotation: Vec<[f32; 3]>,
    pub(crate) anim: Vec<u8>,
    pub(crate) state: Vec<EntityState>,
    pub(crate) buffs: Vec<BuffSet>,
    pub(crate) hp: Vec<[f32; 2]>,
    pub(crate) mp: Vec<[f32; 2]>,
    pub(crate) speed: Vec<f32>,
    pub(crate) last_input_seq: Vec<u32>,
    pub(crate) cooldowns: Vec<[u32; MAX_ACTIONS]>,
    pub(crate) template: Vec<u16>,
    pub(crate) ai: Vec<Brain>,
    pub(crate) expires: Vec<u32>,
    pub(crate) respawn: Vec<u32>,
    pub(crate) combat_until: Vec<u32>,
    pub(crate) progress: Vec<crate::combat::Progress>,
    pub(crate) fighter: Vec<crate::combat::Fighter>,
    pub(crate) cast: Vec<crate::combat::Cast>,
    pub(crate) contributions: Vec<crate::combat::Contributions>,
    pub(crate) item: Vec<crate::loot::ItemState>,

    /// Raw state changed since it was last quantized.
    pub(crate) dirty: Vec<bool>,
    /// Quantized state as of the shard's current tick.
    pub(crate) qstate: Vec<QuantizedEntity>,
    /// The last tick the quantized state changed.
    pub(crate) changed_tick: Vec<u32>,
    /// The tick the slot got its current entity.
    pub(crate) created_tick: Vec<u32>,
    /// Quantized state per tick: `history[tick % HISTORY][slot]`, one array
    /// per tick so that the acknowledgements of one tick, from every
    /// client, read one compact array.
    pub(crate) history: Vec<Vec<QuantizedEntity>>,
}

impl Entities {
    /// A pool of `capacity` slots, all allocated now.
    pub fn new(capacity: u32) -> Self {
        let n = capacity as usize;
        Self {
            capacity,
            generation: vec![0; n],
            live: vec![false; n],
            free: (0..capacity).rev().collect(),
            dense: Vec::with_capacity(n),
            dense_pos: vec![u32::MAX; n],
            by_net: id_map(n),
            locals: 0,
            net_id: vec![0; n],
            kind: vec![EntityType::Item; n],
            faction: vec![Faction::NEUTRAL; n],
            owner: vec![None; n],
            origin: vec![0; n],
            ghost: vec![false; n],
            ghost_seen: vec![0; n],
            position: vec![[0.0; 3]; n],
            velocity: vec![[0.0; 3]; n],
            rotation: vec![[0.0; 3]; n],
            anim: vec![0; n],
            state: vec![EntityState::NONE; n],
            buffs: vec![BuffSet::default(); n],
            hp: vec![[0.0; 2]; n],
            mp: vec![[0.0; 2]; n],
            speed: vec![0.0; n],
            last_input_seq: vec![0; n],
            cooldowns: vec![[0; MAX_ACTIONS]; n],
            template: vec![0; n],
            ai: vec![Brain::default(); n],
            expires: vec![0; n],
            respawn: vec![0; n],
            combat_until: vec![0; n],
            progress: vec![crate::combat::Progress::default(); n],
            fighter: vec![crate::combat::Fighter::default(); n],
            cast: vec![crate::combat::Cast::default(); n],
            contributions: vec![crate::combat::Contributions::default(); n],
            item: vec![crate::loot::ItemState::default(); n],
            dirty: vec![false; n],
            qstate: vec![QuantizedEntity::default(); n],
            changed_tick: vec![0; n],
            created_tick: vec![0; n],
            history: vec![vec![QuantizedEntity::default(); n]; HISTORY],
        }
    }

    /// Slots in the pool.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Live entities (local and ghosts).
    pub fn len(&self) -> usize {
        self.dense.len()
    }

    /// Whether no entity is live.
    pub fn is_empty(&self) -> bool {
        self.dense.is_empty()
    }

    /// Live local (simulated) entities.
    pub fn locals(&self) -> u32 {
        self.locals
    }

    /// Live ghosts.
    pub fn ghosts(&self) -> u32 {
        self.dense.len() as u32 - self.locals
    }

    /// The slot of a live handle.
    #[inline]
    pub fn resolve(&self, id: EntityId) -> Option<u32> {
        let i = id.index as usize;
        (i < self.live.len() && self.live[i] && self.generation[i] == id.generation)
            .then_some(id.index)
    }

    /// The handle of a live slot.
    #[inline]
    pub fn id_of(&self, index: u32) -> EntityId {
        EntityId {
            index,
            generation: self.generation[index as usize],
        }
    }

    /// The slot of a network id.
    #[inline]
    pub fn by_net_id(&self, net_id: u32) -> Option<u32> {
        self.by_net.get(&net_id).copied()
    }

    /// Whether a slot holds a live local entity.
    #[inline]
    pub fn is_local(&self, index: u32) -> bool {
        let i = index as usize;
        self.live[i] && !self.ghost[i]
    }

    /// Takes a slot for an entity with a given network id.
    pub(crate) fn alloc(
        &mut self,
        net_id: u32,
        ghost: bool,
        origin: u16,
        tick: u32,
    ) -> Result<u32, ShardError> {
        if self.by_net.contains_key(&net_id) {
            return Err(ShardError::DuplicateEntity(net_id));
        }
        let Some(index) = self.free.pop() else {
            return Err(ShardError::PoolFull {
                capacity: self.capacity,
            });
        };
        let i = index as usize;
        self.live[i] = true;
        self.dense_pos[i] = self.dense.len() as u32;
        self.dense.push(index);
        self.by_net.insert(net_id, index);
        self.net_id[i] = net_id;
        self.ghost[i] = ghost;
        self.origin[i] = origin;
        self.ghost_seen[i] = tick;
        self.created_tick[i] = tick;
        self.changed_tick[i] = tick;
        self.dirty[i] = true;
        // Ghosts never get a whole record: no combat state of the slot's
        // previous entity may show through.
        self.progress[i] = crate::combat::Progress::default();
        self.fighter[i] = crate::combat::Fighter::default();
        self.cast[i] = crate::combat::Cast::default();
        self.contributions[i] = crate::combat::Contributions::default();
        self.item[i] = crate::loot::ItemState::default();
        if !ghost {
            self.locals += 1;
        }
        Ok(index)
    }

    /// Writes a record's columns into a slot.
    pub(crate) fn write_record(&mut self, index: u32, r: &EntityRecord) {
        let i = index as usize;
        self.kind[i] = r.kind;
        self.faction[i] = r.faction;
        self.owner[i] = r.owner;
        self.position[i] = r.position;
        self.velocity[i] = r.velocity;
        self.rotation[i] = r.rotation;
        self.anim[i] = r.anim;
        self.state[i] = r.state;
        self.buffs[i] = r.buffs;
        self.hp[i] = r.hp;
        self.mp[i] = r.mp;
        self.speed[i] = r.speed;
        self.last_input_seq[i] = r.last_input_seq;
        self.cooldowns[i] = r.cooldowns;
        self.template[i] = r.template;
        self.ai[i] = r.ai;
        self.expires[i] = r.expires;
        self.respawn[i] = r.respawn;
        self.combat_until[i] = r.combat_until;
        self.progress[i] = r.progress;
        self.fighter[i] = r.fighter;
        self.cast[i] = r.cast;
        self.contributions[i] = r.contributions;
        self.item[i] = r.item;
        self.dirty[i] = true;
    }

    /// The record of a live slot.
    pub fn record(&self, index: u32) -> EntityRecord {
        let i = index as usize;
        EntityRecord {
            net_id: self.net_id[i],
            kind: self.kind[i],
            faction: self.faction[i],
            owner: self.owner[i],
            position: self.position[i],
            velocity: self.velocity[i],
            rotation: self.rotation[i],
            anim: self.anim[i],
            state: self.state[i],
            buffs: self.buffs[i],
            hp: self.hp[i],
            mp: self.mp[i],
            speed: self.speed[i],
            last_input_seq: self.last_input_seq[i],
            cooldowns: self.cooldowns[i],
            template: self.template[i],
            ai: self.ai[i],
            expires: self.expires[i],
            respawn: self.respawn[i],
            combat_until: self.combat_until[i],
            progress: self.progress[i],
            fighter: self.fighter[i],
            cast: self.cast[i],
            contributions: self.contributions[i],
            item: self.item[i],
        }
    }

    /// Frees a live slot; its handles go stale.
    pub(crate) fn free(&mut self, index: u32) {
        let i = index as usize;
        if !self.live[i] {
            return;
        }
        if !self.ghost[i] {
            self.locals -= 1;
        }
        self.live[i] = false;
        self.generation[i] = self.generation[i].wrapping_add(1);
        self.by_net.remove(&self.net_id[i]);
        let pos = self.dense_pos[i] as usize;
        let last = self.dense.len() - 1;
        self.dense.swap(pos, last);
        self.dense_pos[self.dense[pos] as usize] = pos as u32;
        self.dense.pop();
        self.dense_pos[i] = u32::MAX;
        self.owner[i] = None;
        self.free.push(index);
    }

    /// Turns a local entity into a ghost owned by `origin`, or back.
    pub(crate) fn set_ghost(&mut self, index: u32, ghost: bool, origin: u16, tick: u32) {
        let i = index as usize;
        if self.ghost[i] != ghost {
            if ghost {
                self.locals -= 1;
            } else {
                self.locals += 1;
            }
        }
        self.ghost[i] = ghost;
        self.origin[i] = origin;
        self.ghost_seen[i] = tick;
    }

    /// Whether `history[tick % HISTORY][index]` holds the state the slot's
    /// entity had at `tick`: the slot held the same entity then and the
    /// tick is still in the history ring.
    pub(crate) fn has_history(&self, index: u32, now: u32, tick: u32) -> bool {
        let i = index as usize;
        let age = now.wrapping_sub(tick);
        self.live[i]
            && (age as usize) < HISTORY
            && !crate::util::tick_after(self.created_tick[i], tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_slots_with_new_generations() {
        let mut e = Entities::new(2);
        let a = e.alloc(10, false, 0, 1).unwrap();
        let b = e.alloc(11, false, 0, 1).unwrap();
        assert_eq!(
            e.alloc(12, false, 0, 1),
            Err(ShardError::PoolFull { capacity: 2 })
        );
        assert_eq!(
            e.alloc(10, false, 0, 1),
            Err(ShardError::DuplicateEntity(10))
        );
        let id_a = e.id_of(a);
        e.free(a);
        assert_eq!(e.resolve(id_a), None);
        let c = e.alloc(12, true, 3, 2).unwrap();
        assert_eq!(c, a);
        assert_ne!(e.id_of(c), id_a);
        assert_eq!(e.by_net_id(12), Some(c));
        assert_eq!(e.by_net_id(10), None);
        assert_eq!((e.len(), e.locals(), e.ghosts()), (2, 1, 1));
        e.set_ghost(b, true, 1, 3);
        assert_eq!((e.locals(), e.ghosts()), (0, 2));
    }

    #[test]
    fn factions_answer_in_one_lookup() {
        let t = FactionTable::default();
        assert!(t.is_enemy(Faction::ALLIANCE, Faction::HORDE));
        assert!(t.is_enemy(Faction::HORDE, Faction::ALLIANCE));
        assert!(t.is_enemy(Faction::MONSTERS, Faction::HORDE));
        assert!(t.is_friend(Faction::TOWNSFOLK, Faction::ALLIANCE));
        assert!(t.is_friend(Faction::HORDE, Faction::HORDE));
        assert!(!t.is_friend(Faction::HORDE, Faction::ALLIANCE));
        assert!(!t.is_enemy(Faction::NEUTRAL, Faction::HORDE));
        assert!(!t.is_friend(Faction::NEUTRAL, Faction::HORDE));
    }

    #[test]
    fn buffs_expire_at_tick_granularity() {
        let mut b = BuffSet::default();
        b.apply(Buff::Poisoned, 100, 30, 5);
        b.apply(Buff::Slowed, 100, 10, 200);
        assert!(b.flags.contains(BuffFlags::POISONED | BuffFlags::SLOWED));
        assert_eq!(b.expire(109), 0);
        assert_eq!(b.expire(110), 1);
        assert!(!b.flags.contains(BuffFlags::SLOWED));
        assert_eq!(b.intensity(Buff::Slowed), 0);
        // Re-applying extends and keeps the stronger intensity.
        b.apply(Buff::Poisoned, 120, 30, 2);
        assert_eq!(b.intensity(Buff::Poisoned), 5);
        assert_eq!(b.expire(149), 0);
        assert_eq!(b.expire(150), 1);
        assert_eq!(b.flags, BuffFlags::NONE);
    }

    #[test]
    fn types_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(EntityType::from_u8(t.to_u8()), Some(t));
        }
        assert_eq!(EntityType::from_u8(8), None);
    }
}
