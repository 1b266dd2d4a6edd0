//! The shard of one core: its entities, their AOI, authority over its
//! players, snapshots, and the exchange of ghosts and hand-offs with the
//! other cores.
//!
//! The engine drives it once per tick, on the core's thread:
//!
//! ```text
//! push_claim / push_action      (decoded client inputs, as they arrive)
//! accept_handoff / accept_ghosts / apply_remote_effect  (from other cores)
//! tick(t)                       -> TickReport
//! corrections(), action_results()         -> send to clients
//! border_crossings()                      -> players walking onto another node's ground
//! take_handoffs(), take_remote_effects()  -> ship to other cores
//! publish_ghosts(t, &mut batches)         -> ship to other cores
//! write_snapshot(client, t, budget, buf)  -> send to each client
//! on_snapshot_acked / on_snapshot_lost    (as the transport learns)
//! ```
//!
//! A `Shard` is deterministic given these calls, does no I/O, reads no
//! clock and starts no thread. It is `!Send`: it lives and dies on its
//! core; only [`Handoff`], [`GhostBatch`] and [`RemoteEffect`] cross cores.

use std::collections::VecDeque;
use std::marker::PhantomData;

use tos_config::{ResolvedLayout, ServerConfig};
use tos_protocol::delta::{EntityStatus, QuantizedEntity};
use tos_protocol::quant::{QuantizedRotation, quantize_fraction, quantize_velocity};
use tos_protocol::wire::game::{MovementClaim, ServerMessage};

use crate::ShardError;
use crate::aoi::AoiGrid;
use crate::authority::{
    Actor, CheatCounters, MoveContext, MoveRejection, MovementRules, MoverState, Terrain,
    check_action, incapacitated, result_code, speed_factor, validate_actions, validate_claim,
};
use crate::entity::{
    Buff, BuffFlags, BuffSet, ClientId, Entities, EntityId, EntityRecord, EntityState, EntityType,
    Faction, FactionTable, MAX_ACTIONS, SpawnParams,
};
use crate::handoff::{
    ClientTransfer, CoreMask, GHOST_GRACE_TICKS, GHOST_TIMEOUT_TICKS, GhostBatch, GhostPlan,
    GhostState, Handoff, NodeGhosts, RemoteEffect, node_peer,
};
use crate::snapshot::{ClientView, Scratch, SyncParams, ViewStats, Viewer, WorldView};

use crate::border::foreign_at;
use crate::util::{IdMap, Rng, id_map, tick_after};
use crate::world::{ObstacleIndex, World, WorldData};

// Combat and loot in the tick: a child module so that it can use the
// shard's private fields (the pure parts are `crate::combat` and
// `crate::loot`).
#[path = "combat/ops.rs"]
mod combat_ops;
#[path = "shard/node_npcs.rs"]
mod node_npcs;

pub use node_npcs::NPC_BORDER_HOLD_SECS;

/// Velocity quantization step, units per second (PROTOCOL.md §7.4).
pub const VELOCITY_STEP: f32 = 1.0;

/// Ticks a freed network id waits before this shard reuses it.
pub const NET_ID_QUARANTINE_TICKS: u32 = 600;

/// Animation state numbers the world sets (the wire carries them opaquely).
pub mod anim {
    /// Standing.
    pub const IDLE: u8 = 0;
    /// Walking.
    pub const WALK: u8 = 1;
    /// Dead.
    pub const DEAD: u8 = 10;
    /// Casting a skill.
    pub const CAST: u8 = 20;
}

/// How much a shard preallocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardCapacity {
    /// Entity slots, local and ghosts (fixed).
    pub entities: u32,
    /// Clients (fixed).
    pub clients: u32,
    /// View entries each client starts with (grows up to `max_view`).
    pub initial_view: usize,
    /// Most view entries per client (at most 65535).
    pub max_view: usize,
    /// Inputs a client may queue per tick.
    pub inputs_per_tick: usize,
}

impl Default for ShardCapacity {
    fn default() -> Self {
        Self {
            entities: 32_768,
            clients: 4_096,
            initial_view: 512,
            max_view: 8_192,
            inputs_per_tick: 64,
        }
    }
}

/// A player character entering the world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Character {
    /// The character's id in the account database.
    pub character_id: u64,
    /// Where it enters (z is put on the ground).
    pub position: [f32; 3],
    /// Yaw in degrees.
    pub yaw: f32,
    /// Faction.
    pub faction: Faction,
    /// Current HP (clamped to `hp_max`; a character saved dead enters
    /// with full HP).
    pub hp: f32,
    /// Current MP (clamped to `mp_max`).
    pub mp: f32,
    /// Maximum HP at its level.
    pub hp_max: f32,
    /// Maximum MP at its level.
    pub mp_max: f32,
    /// Level (the shard owns it while the character is in the world).
    pub level: u16,
    /// Total experience (likewise).
    pub exp: u64,
    /// Character template id (selects the class growth of level-ups).
    pub template: u16,
    /// The template's six base stats.
    pub stats: crate::combat::BaseStats,
}

impl Character {
    /// A level-1 character with 100 HP and MP, full, no template and
    /// average stats ([`crate::combat::DEFAULT_STATS`]).
    pub fn new(character_id: u64, position: [f32; 3], faction: Faction) -> Self {
        Self {
            character_id,
            position,
            yaw: 0.0,
            faction,
            hp: 100.0,
            mp: 100.0,
            hp_max: 100.0,
            mp_max: 100.0,
            level: 1,
            exp: 0,
            template: 0,
            stats: crate::combat::DEFAULT_STATS,
        }
    }
}

/// A rejected movement claim: send `message()` to the client (reliably).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correction {
    /// Whose claim.
    pub client: ClientId,
    /// The claim's input sequence.
    pub input_seq: u32,
    /// The authoritative position.
    pub position: [f32; 3],
    /// The authoritative velocity.
    pub velocity: [f32; 3],
    /// Why the claim was rejected.
    pub reason: MoveRejection,
}

impl Correction {
    /// The `Correction` server message.
    pub fn message(&self) -> ServerMessage<'static> {
        ServerMessage::Correction {
            input_seq: self.input_seq,
            position: self.position,
            velocity: self.velocity,
        }
    }
}

/// The outcome of an action request: send `message()` to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionOutcome {
    /// Whose request.
    pub client: ClientId,
    /// Its input sequence.
    pub input_seq: u32,
    /// 0 = done, else an [`crate::authority::ActionRefusal`] code.
    pub result: u8,
}

impl ActionOutcome {
    /// The `ActionResult` server message.
    pub fn message(&self) -> ServerMessage<'static> {
        ServerMessage::ActionResult {
            input_seq: self.input_seq,
            result: self.result,
        }
    }
}

/// What one tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickReport {
    /// The tick.
    pub tick: u32,
    /// Local (simulated) entities after the tick.
    pub local_entities: u32,
    /// Ghosts after the tick.
    pub ghosts: u32,
    /// Clients on this shard.
    pub clients: u32,
    /// Movement claims accepted.
    pub claims_accepted: u32,
    /// Movement claims rejected (corrections issued or pending).
    pub claims_rejected: u32,
    /// Of those, claims into another node's quadrants (held at the border).
    pub claims_held_at_border: u32,
    /// Valid claims onto another node's ground reported as crossings.
    pub border_crossings: u32,
    /// Claims ignored: older than one already applied, or from a dead
    /// player.
    pub claims_stale: u32,
    /// Actions done.
    pub actions_done: u32,
    /// Actions refused.
    pub actions_refused: u32,
    /// Entities handed to other cores.
    pub handoffs_out: u32,
    /// NPCs that walked onto another node's ground (see
    /// [`Shard::take_npc_departures`]).
    pub npcs_to_nodes: u32,
    /// Buffs that expired.
    pub buffs_expired: u32,
    /// Entities that died.
    pub deaths: u32,
    /// Entities that came back to life.
    pub respawns: u32,
    /// Entities whose lifetime ended.
    pub despawned: u32,
    /// Ghosts dropped (no longer published by their owner).
    pub ghosts_dropped: u32,
    /// Entities whose quantized state changed.
    pub changed: u32,
    /// Players who reached a new level.
    pub level_ups: u32,
    /// Item entities dropped as loot.
    pub items_dropped: u32,
    /// Items picked up.
    pub items_looted: u32,
    /// Casts interrupted.
    pub casts_interrupted: u32,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Input {
    Claim(MovementClaim),
    Action {
        input_seq: u32,
        action_id: u16,
        target: u32,
    },
    Pickup {
        input_seq: u32,
        item: u32,
    },
}

/// Per-client server state; it travels with the player on a hand-off.
#[derive(Debug)]
pub(crate) struct ClientState {
    pub(crate) client: ClientId,
    /// The character's id in the account database (NPC damage dealers
    /// travel between nodes by it).
    pub(crate) character_id: u64,
    pub(crate) player_net_id: u32,
    /// The player's slot here (checked by generation, found again by
    /// network id when stale).
    player: EntityId,
    inputs: Vec<Input>,
    mover: MoverState,
    rtt_ms: u32,
    counters: CheatCounters,
    last_claim_seq: Option<u32>,
    correction_until: u32,
    /// The player asked to cross onto another node's ground and waits for
    /// the game layer's [`Shard::end_crossing`] (or its removal): its
    /// claims are held meanwhile.
    crossing: bool,
    /// Until this tick a claim across a node border is held like a wall
    /// (a crossing was just refused: no new offer per claim in flight).
    border_cooldown_until: u32,
    view: ClientView,
}

#[derive(Debug)]
struct NetIds {
    next_serial: u32,
    cores: u32,
    core: u32,
    quarantine: VecDeque<(u32, u32)>,
    cap: usize,
}

impl NetIds {
    fn alloc(&mut self, now: u32, in_use: impl Fn(u32) -> bool) -> u32 {
        if let Some(&(freed, id)) = self.quarantine.front() {
            if now.wrapping_sub(freed) >= NET_ID_QUARANTINE_TICKS && !in_use(id) {
                self.quarantine.pop_front();
                return id;
            }
        }
        loop {
            let id = u64::from(self.next_serial) * u64::from(self.cores) + u64::from(self.core);
            self.next_serial += 1;
            match u32::try_from(id) {
                Ok(id) if !in_use(id) => return id,
                Ok(_) => {}
                Err(_) => self.next_serial = 1,
            }
        }
    }

    fn release(&mut self, id: u32, now: u32) {
        if self.quarantine.len() < self.cap {
            self.quarantine.push_back((now, id));
        }
    }
}

/// The local slot of a client's player, from the cached handle or, when
/// stale, by network id.
#[inline]
fn player_slot(ents: &Entities, cs: &mut ClientState) -> Option<u32> {
    if let Some(i) = ents.resolve(cs.player) {
        if ents.is_local(i) {
            return Some(i);
        }
        return None;
    }
    let i = ents.by_net_id(cs.player_net_id)?;
    cs.player = ents.id_of(i);
    ents.is_local(i).then_some(i)
}

/// The world of one core. It stays on its core's thread:
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<tos_shards::Shard>();
/// ```
#[derive(Debug)]
pub struct Shard {
    core: u16,
    world: World,
    tick_hz: u32,
    tick: u32,
    started: bool,
    ents: Entities,
    aoi: AoiGrid,
    terrain: Terrain,
    rules: MovementRules,
    sync: SyncParams,
    factions: FactionTable,
    skills: Vec<crate::combat::Skill>,
    combat: combat_ops::CombatState,
    plan: GhostPlan,
    core_slot: Vec<u16>,
    clients: IdMap<ClientId, Box<ClientState>>,
    client_order: Vec<ClientId>,
    // Boxed so that a recycled client state moves into `clients` without
    // allocating.
    #[allow(clippy::vec_box)]
    spare_clients: Vec<Box<ClientState>>,
    capacity: ShardCapacity,
    net_ids: NetIds,
    rng: Rng,
    ai_enabled: bool,
    ai: crate::ai::AiRuntime,
    corrections: Vec<Correction>,
    crossings: Vec<crate::border::BorderCrossing>,
    /// Corrections issued between ticks (a refused crossing), sent with
    /// the next tick's.
    corrections_between: Vec<Correction>,
    action_results: Vec<ActionOutcome>,
    handoffs: Vec<Handoff>,
    remote_effects: Vec<RemoteEffect>,
    spare_batches: Vec<Vec<GhostState>>,
    /// Per peer of the plan (cores, then other nodes): its ghosts of this
    /// tick.
    outgoing: Vec<(u16, Vec<GhostState>)>,
    /// This tick's batches for other nodes, until the game layer takes
    /// them ([`Shard::take_node_ghosts`]).
    node_outgoing: Vec<NodeGhosts>,
    /// Per peer id (cores, then other nodes): the newest batch's tick
    /// (for other nodes: this shard's tick when it came).
    last_batch_tick: Vec<Option<u32>>,
    /// Ghosts of other nodes' players that crossed to this node, dropped
    /// at their arrival: (network id, the tick until which a batch still
    /// in flight does not bring them back).
    crossed: Vec<(u32, u32)>,
    doomed: Vec<(u32, u16)>,
    scratch: Scratch,
    report: TickReport,
    /// Per quadrant (linear index): whether another node of the cluster
    /// simulates it. Empty when the process runs the world alone.
    foreign: Vec<bool>,
    /// Per quadrant: the other node that simulates it.
    foreign_nodes: Vec<Option<u16>>,
    /// NPCs that walked onto another node's ground, out of the simulation.
    npc_departures: Vec<crate::border::NodeDeparture>,
    /// Local slots leaving for other nodes this tick (scratch).
    departing: Vec<(u32, u16)>,
    /// Whether a valid claim onto another node's ground becomes a
    /// [`crate::border::BorderCrossing`] (the cluster can carry it) or is
    /// held like a wall.
    crossings_open: bool,
    _not_send: PhantomData<*const ()>,
}

/// Peer ids a ghost plan knows (cores, then other nodes).
const PEER_IDS: usize = 256;

/// Spare ghost vectors a shard keeps at most beyond one per peer (more
/// batches can come in than go out: the surplus is freed).
const SPARE_BATCHES: usize = 8;

/// Players that crossed from another node remembered at once (their old
/// ghost is kept out for [`GHOST_GRACE_TICKS`]); past it the oldest is
/// forgotten and its ghost at worst shows until it ages out.
const MAX_CROSSED: usize = 64;

/// The slot of each peer id in `outgoing`, and `outgoing` itself.
#[allow(clippy::type_complexity)]
fn peers_of(plan: &GhostPlan) -> (Vec<u16>, Vec<(u16, Vec<GhostState>)>) {
    let mut slot = vec![u16::MAX; PEER_IDS];
    for (k, &c) in plan.neighbours().iter().enumerate() {
        slot[usize::from(c)] = k as u16;
    }
    let outgoing = plan.neighbours().iter().map(|&c| (c, Vec::new())).collect();
    (slot, outgoing)
}

/// A hand-off the receiving shard could not take, returned to the caller
/// so that the entity is not lost (the engine may retry or send it back).
#[derive(Debug)]
pub struct HandoffRejected {
    /// Why.
    pub error: ShardError,
    /// The hand-off, untouched.
    pub handoff: Handoff,
}

/// A copy of one entity's state, for inspection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntityInfo {
    /// Its handle on this shard.
    pub id: EntityId,
    /// Everything simulated about it.
    pub record: EntityRecord,
    /// Whether it is a ghost of another core's (or node's) entity.
    pub ghost: bool,
    /// The core that owns it; for a ghost of another cluster node's
    /// entity, that node's peer id (this process's cores + the node's
    /// index).
    pub owner_core: u16,
    /// Its quantized state as of the current tick.
    pub quantized: QuantizedEntity,
}

fn quantize(ents: &Entities, world: &World, i: usize) -> QuantizedEntity {
    let r = ents.rotation[i];
    let v = ents.velocity[i];
    QuantizedEntity {
        position: world
            .quantizer()
            .quantize_position_clamped(ents.position[i]),
        rotation: QuantizedRotation::from_degrees(r[0], r[1], r[2]),
        anim: ents.anim[i],
        status: EntityStatus {
            state: ents.state[i].0,
            buffs: ents.buffs[i].flags.0,
            hp: quantize_fraction(ents.hp[i][0], ents.hp[i][1]),
            mp: quantize_fraction(ents.mp[i][0], ents.mp[i][1]),
        },
        velocity: v.map(|c| quantize_velocity(c, VELOCITY_STEP)),
    }
}

impl Shard {
    /// The shard of `core` with default capacities.
    pub fn new(
        core: u16,
        config: &ServerConfig,
        layout: &ResolvedLayout,
        data: WorldData,
    ) -> Result<Self, ShardError> {
        Self::with_capacity(core, config, layout, data, ShardCapacity::default())
    }

    /// The shard of `core`, preallocating `capacity`.
    pub fn with_capacity(
        core: u16,
        config: &ServerConfig,
        layout: &ResolvedLayout,
        data: WorldData,
        capacity: ShardCapacity,
    ) -> Result<Self, ShardError> {
        let world = World::new(&config.world, layout, core)?;
        validate_actions(&data.actions)?;
        let tick_hz = config.runtime.tick_hz.max(1);
        let distances: [f64; 8] =
            core::array::from_fn(|t| EntityType::ALL[t].interest_distance(&config.aoi.distances));
        let plan = GhostPlan::new(&world, &distances);
        let (core_slot, outgoing) = peers_of(&plan);
        let n = capacity.entities;
        let ids = data.net_ids;
        let stride = if ids.stride == 0 {
            u32::from(world.cores())
        } else {
            ids.stride
        };
        if ids.first.saturating_add(u32::from(world.cores())) > stride {
            return Err(ShardError::BadData(
                "net id space: first + cores exceeds the stride",
            ));
        }
        let combat = combat_ops::CombatState::new(&data, &capacity);
        let rules = MovementRules::new(&config.authority, tick_hz);
        let flat = data.heightfield.is_flat();
        let mut shard = Self {
            core,
            tick_hz,
            tick: 0,
            started: false,
            ents: Entities::new(n),
            aoi: AoiGrid::new(&config.aoi, world.quantizer(), n),
            terrain: Terrain {
                heightfield: data.heightfield,
                obstacles: ObstacleIndex::new(data.obstacles)?,
            },
            rules,
            sync: SyncParams::new(config),
            factions: data.factions,
            skills: data
                .actions
                .iter()
                .map(|&a| crate::combat::Skill::new(a, tick_hz))
                .collect(),
            combat,
            plan,
            core_slot,
            clients: id_map(capacity.clients as usize),
            client_order: Vec::with_capacity(capacity.clients as usize),
            spare_clients: Vec::new(),
            capacity,
            net_ids: NetIds {
                next_serial: 1,
                cores: stride,
                core: ids.first + u32::from(core),
                quarantine: VecDeque::with_capacity(n as usize),
                cap: n as usize,
            },
            rng: Rng::new(data.seed ^ (u64::from(core) << 48) ^ 0x0005_4a4d),
            ai_enabled: true,
            ai: crate::ai::AiRuntime::new(data.npcs, n, crate::nav::NavParams::new(&rules), flat),
            corrections: Vec::with_capacity(capacity.clients as usize),
            crossings: Vec::with_capacity(64),
            corrections_between: Vec::with_capacity(64),
            action_results: Vec::with_capacity(capacity.clients as usize),
            handoffs: Vec::with_capacity(256),
            remote_effects: Vec::with_capacity(256),
            spare_batches: Vec::new(),
            outgoing,
            node_outgoing: Vec::new(),
            last_batch_tick: vec![None; PEER_IDS],
            crossed: Vec::with_capacity(MAX_CROSSED),
            doomed: Vec::with_capacity(n as usize),
            scratch: Scratch::new(n),
            report: TickReport::default(),
            foreign: Vec::new(),
            foreign_nodes: Vec::new(),
            npc_departures: Vec::new(),
            departing: Vec::new(),
            crossings_open: false,
            world,
            _not_send: PhantomData,
        };
        for s in &data.spawns {
            if !shard.world.owns(s.position) {
                continue;
            }
            let mut p = SpawnParams::new(s.kind, s.faction, s.position);
            p.hp = s.hp;
            p.mp = s.mp;
            p.speed = s.speed;
            p.wander_radius = s.wander_radius;
            p.template = s.template;
            p.patrol = s.patrol;
            if let Some(profile) = shard.ai.profile(s.template).copied() {
                // An NPC of a template fights and drops as its template says.
                p.level = profile.level;
                p.stats = profile.stats;
                p.loot_table = profile.loot.unwrap_or(0);
            } else if s.kind == EntityType::Monster {
                p.loot_table = data.monster_loot_table;
            }
            shard.spawn(p)?;
        }
        Ok(shard)
    }

    /// This core.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// The movement limits claims are checked against (max speed).
    pub fn movement_rules(&self) -> &MovementRules {
        &self.rules
    }

    /// The world geometry and ownership.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The AOI index.
    pub fn aoi(&self) -> &AoiGrid {
        &self.aoi
    }

    /// The last tick run.
    pub fn current_tick(&self) -> u32 {
        self.tick
    }

    /// Local (simulated) entities.
    pub fn local_count(&self) -> u32 {
        self.ents.locals()
    }

    /// Ghosts.
    pub fn ghost_count(&self) -> u32 {
        self.ents.ghosts()
    }

    /// Clients on this shard.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The clients on this shard, in arrival order.
    pub fn clients(&self) -> &[ClientId] {
        &self.client_order
    }

    /// Turns the wander AI on or off (tests and benchmarks freeze the world
    /// with it).
    pub fn set_ai_enabled(&mut self, on: bool) {
        self.ai_enabled = on;
    }

    /// NPC AI counters (paths planned, chases, attacks...).
    pub fn ai_stats(&self) -> crate::ai::AiStats {
        self.ai.stats
    }

    /// The NPC template of a local entity (`None` for players, templateless
    /// NPCs and ghosts: ghost batches do not carry templates): level,
    /// stats, loot table, skills.
    pub fn npc_template(&self, net_id: u32) -> Option<&crate::ai::NpcProfile> {
        let i = self
            .ents
            .by_net_id(net_id)
            .filter(|&i| self.ents.is_local(i))?;
        self.ai.profile(self.ents.template[i as usize])
    }

    /// Sets the per-tick AI budgets.
    pub fn set_ai_budget(&mut self, budget: crate::ai::AiBudget) {
        self.ai.budget = budget;
    }

    /// The waypoints still ahead of a local NPC's cached path (empty when
    /// it has none), for tests and diagnostics.
    pub fn npc_path(&self, net_id: u32) -> &[[f32; 2]] {
        match self.ents.by_net_id(net_id) {
            Some(i)
                if self.ents.generation[i as usize] == self.ai.paths[i as usize].generation() =>
            {
                self.ai.paths[i as usize].ahead()
            }
            _ => &[],
        }
    }

    /// The network ids of local entities.
    pub fn local_net_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ents
            .dense
            .iter()
            .filter(|&&i| !self.ents.ghost[i as usize])
            .map(|&i| self.ents.net_id[i as usize])
    }

    /// An entity by network id (local or ghost).
    pub fn entity(&self, net_id: u32) -> Option<EntityInfo> {
        let i = self.ents.by_net_id(net_id)?;
        let iu = i as usize;
        Some(EntityInfo {
            id: self.ents.id_of(i),
            record: self.ents.record(i),
            ghost: self.ents.ghost[iu],
            owner_core: self.ents.origin[iu],
            quantized: self.ents.qstate[iu],
        })
    }

    /// The network id of a client's player.
    pub fn player_of(&self, client: ClientId) -> Option<u32> {
        self.clients.get(&client).map(|c| c.player_net_id)
    }

    /// A client's anti-cheat counters.
    pub fn cheat_counters(&self, client: ClientId) -> Option<CheatCounters> {
        self.clients.get(&client).map(|c| c.counters)
    }

    /// A client's replication counters.
    pub fn view_stats(&self, client: ClientId) -> Option<ViewStats> {
        self.clients.get(&client).map(|c| c.view.stats())
    }

    /// The entities in a client's interest (network id, type); allocates,
    /// for tests and diagnostics.
    pub fn view_of(&self, client: ClientId) -> Vec<(u32, EntityType)> {
        self.clients
            .get(&client)
            .map(|c| c.view.active().collect())
            .unwrap_or_default()
    }

    /// Sets the measured round trip time of a client (widens its movement
    /// allowance).
    pub fn set_rtt(&mut self, client: ClientId, rtt_ms: u32) -> Result<(), ShardError> {
        let c = self
            .clients
            .get_mut(&client)
            .ok_or(ShardError::UnknownClient(client))?;
        c.rtt_ms = rtt_ms;
        Ok(())
    }

    fn new_net_id(&mut self) -> u32 {
        let ents = &self.ents;
        self.net_ids
            .alloc(self.tick, |id| ents.by_net.contains_key(&id))
    }

    /// Spawns a local entity; fails when the pool is full.
    pub fn spawn(&mut self, params: SpawnParams) -> Result<EntityId, ShardError> {
        self.scratch.entities_changed();
        if self.ents.len() >= self.ents.capacity() as usize {
            return Err(ShardError::PoolFull {
                capacity: self.ents.capacity(),
            });
        }
        let net = self.new_net_id();
        let position = self
            .world
            .on_ground(&self.terrain.heightfield, params.position);
        let position = if params.kind == EntityType::Projectile {
            self.world.clamp(params.position)
        } else {
            position
        };
        let i = self.ents.alloc(net, false, self.core, self.tick)?;
        let record = EntityRecord {
            net_id: net,
            kind: params.kind,
            faction: params.faction,
            owner: None,
            position,
            velocity: params.velocity,
            rotation: [0.0, params.yaw, 0.0],
            anim: anim::IDLE,
            state: EntityState::ALIVE,
            buffs: BuffSet::default(),
            hp: [params.hp, params.hp],
            mp: [params.mp, params.mp],
            speed: params.speed,
            last_input_seq: 0,
            cooldowns: [0; MAX_ACTIONS],
            template: params.template,
            ai: crate::ai::Brain {
                wander: (params.wander_radius > 0.0 || params.patrol != 0) && params.speed > 0.0,
                home: position,
                radius: params.wander_radius,
                goal: position,
                next_decision: self.tick,
                patrol: self.ai.route_slot(params.patrol),
                last_hp: params.hp,
                ..crate::ai::Brain::default()
            },
            expires: if params.lifetime_ticks > 0 {
                self.tick.wrapping_add(params.lifetime_ticks).max(1)
            } else {
                0
            },
            respawn: 0,
            combat_until: 0,
            progress: crate::combat::Progress {
                level: params.level.max(1),
                template: 0,
                loot_table: params.loot_table,
                exp: 0,
            },
            fighter: crate::combat::Fighter {
                base: params.stats,
                base_max: [params.hp, params.mp],
                ..crate::combat::Fighter::default()
            },
            cast: crate::combat::Cast::default(),
            contributions: crate::combat::Contributions::default(),
            item: crate::loot::ItemState::default(),
        };
        self.ents.write_record(i, &record);
        self.aoi.insert(i, params.kind, position);
        self.requantize(i);
        Ok(self.ents.id_of(i))
    }

    /// Quantizes a slot now and fills its history for the current tick.
    fn requantize(&mut self, i: u32) {
        let iu = i as usize;
        let q = quantize(&self.ents, &self.world, iu);
        self.ents.qstate[iu] = q;
        self.ents.dirty[iu] = false;
        self.ents.history[self.tick as usize % crate::entity::HISTORY][iu] = q;
    }

    /// Removes a local entity.
    pub fn despawn(&mut self, net_id: u32) -> Result<(), ShardError> {
        self.scratch.entities_changed();
        match self.ents.by_net_id(net_id) {
            Some(i) if self.ents.is_local(i) => {
                self.free_slot(i);
                Ok(())
            }
            _ => Err(ShardError::UnknownEntity(net_id)),
        }
    }

    fn free_slot(&mut self, i: u32) {
        let iu = i as usize;
        if !self.ents.live[iu] {
            return;
        }
        if !self.ents.ghost[iu] {
            self.net_ids.release(self.ents.net_id[iu], self.tick);
        }
        self.aoi.remove(i);
        self.ents.free(i);
    }

    /// Moves a local entity at once (an admin teleport; no validation).
    pub fn teleport(&mut self, net_id: u32, position: [f32; 3]) -> Result<(), ShardError> {
        self.scratch.entities_changed();
        let i = self
            .ents
            .by_net_id(net_id)
            .filter(|&i| self.ents.is_local(i))
            .ok_or(ShardError::UnknownEntity(net_id))?;
        let p = self.world.clamp(position);
        self.ents.position[i as usize] = p;
        self.ents.dirty[i as usize] = true;
        self.aoi.update(i, p);
        Ok(())
    }

    /// Puts a buff on a local entity.
    pub fn apply_buff(
        &mut self,
        net_id: u32,
        buff: Buff,
        duration_ticks: u32,
        intensity: u8,
    ) -> Result<(), ShardError> {
        self.scratch.entities_changed();
        let i = self
            .ents
            .by_net_id(net_id)
            .filter(|&i| self.ents.is_local(i))
            .ok_or(ShardError::UnknownEntity(net_id))?;
        self.ents.buffs[i as usize].apply(buff, self.tick, duration_ticks, intensity);
        self.ents.dirty[i as usize] = true;
        Ok(())
    }

    /// Adds a player for `client`; its entity is returned (send the client
    /// `WorldEntered` with `player_of(client)`). Fails if the position
    /// belongs to another core ([`ShardError::WrongShard`]).
    pub fn add_player(
        &mut self,
        client: ClientId,
        character: &Character,
    ) -> Result<EntityId, ShardError> {
        self.scratch.entities_changed();
        if self.clients.contains_key(&client) {
            return Err(ShardError::DuplicateClient(client));
        }
        if self.clients.len() >= self.capacity.clients as usize {
            return Err(ShardError::ClientsFull {
                capacity: self.capacity.clients,
            });
        }
        let position = self
            .world
            .on_ground(&self.terrain.heightfield, character.position);
        let owner = self.world.owner_at(position);
        if owner != self.core {
            return Err(ShardError::WrongShard { owner });
        }
        let mut params = SpawnParams::new(EntityType::Player, character.faction, position);
        params.yaw = character.yaw;
        params.hp = character.hp_max.max(1.0);
        params.mp = character.mp_max.max(0.0);
        let id = self.spawn(params)?;
        let iu = id.index as usize;
        // Current vitals as saved; a character saved dead comes back full.
        if character.hp > 0.0 {
            self.ents.hp[iu][0] = character.hp.min(self.ents.hp[iu][1]);
        }
        self.ents.mp[iu][0] = character.mp.clamp(0.0, self.ents.mp[iu][1]);
        let net = self.ents.net_id[iu];
        self.ents.owner[id.index as usize] = Some(client);
        self.enter_combat(id.index, character);
        let mut state = self.spare_clients.pop().unwrap_or_else(|| {
            Box::new(ClientState {
                client,
                character_id: character.character_id,
                player_net_id: net,
                player: id,
                inputs: Vec::with_capacity(self.capacity.inputs_per_tick),
                mover: MoverState::default(),
                rtt_ms: 0,
                counters: CheatCounters::default(),
                last_claim_seq: None,
                correction_until: 0,
                crossing: false,
                border_cooldown_until: 0,
                view: ClientView::new(self.capacity.initial_view, self.capacity.max_view),
            })
        });
        state.client = client;
        state.character_id = character.character_id;
        state.player_net_id = net;
        state.player = id;
        state.inputs.clear();
        state.mover = MoverState::new(&self.rules, 0);
        state.rtt_ms = 0;
        state.counters = CheatCounters::default();
        state.crossing = false;
        state.border_cooldown_until = 0;
        state.last_claim_seq = None;
        state.correction_until = self.tick;
        state.view.reset();
        self.clients.insert(client, state);
        self.client_order.push(client);
        Ok(id)
    }

    /// Removes a client and its player.
    pub fn remove_player(&mut self, client: ClientId) -> Result<(), ShardError> {
        self.scratch.entities_changed();
        let state = self
            .clients
            .remove(&client)
            .ok_or(ShardError::UnknownClient(client))?;
        self.client_order.retain(|&c| c != client);
        if let Some(i) = self.ents.by_net_id(state.player_net_id) {
            if self.ents.is_local(i) {
                self.free_slot(i);
            }
        }
        self.spare_clients.push(state);
        Ok(())
    }

    fn push_input(&mut self, client: ClientId, input: Input) -> Result<(), ShardError> {
        let cap = self.capacity.inputs_per_tick;
        let c = self
            .clients
            .get_mut(&client)
            .ok_or(ShardError::UnknownClient(client))?;
        if c.inputs.len() >= cap {
            return Err(ShardError::InputQueueFull(client));
        }
        c.inputs.push(input);
        Ok(())
    }

    /// Queues a movement claim for the next tick.
    pub fn push_claim(&mut self, client: ClientId, claim: MovementClaim) -> Result<(), ShardError> {
        self.push_input(client, Input::Claim(claim))
    }

    /// Queues an action request for the next tick (`target` 0: none).
    pub fn push_action(
        &mut self,
        client: ClientId,
        input_seq: u32,
        action_id: u16,
        target: u32,
    ) -> Result<(), ShardError> {
        self.push_input(
            client,
            Input::Action {
                input_seq,
                action_id,
                target,
            },
        )
    }

    /// Movement corrections issued by the last tick.
    pub fn corrections(&self) -> &[Correction] {
        &self.corrections
    }

    /// Players whose valid claims stepped onto another node's ground in the
    /// last tick (only while crossings are open). Each stays where it was,
    /// its claims held, until [`Shard::end_crossing`] or its removal.
    pub fn border_crossings(&self) -> &[crate::border::BorderCrossing] {
        &self.crossings
    }

    /// Opens or closes the node borders: while open, a valid claim onto
    /// another node's ground is reported as a crossing; while closed it is
    /// refused with [`MoveRejection::NodeBorder`].
    pub fn set_crossings_open(&mut self, open: bool) {
        self.crossings_open = open;
    }

    /// A crossing did not happen (the other node did not take the player):
    /// its claims are accepted again and it is corrected back to where it
    /// stands, in the next tick's [`Shard::corrections`]; for a second its
    /// claims across the border are held like a wall (the claims already
    /// in flight would else each start a crossing). `Err` when the client
    /// is unknown.
    pub fn end_crossing(&mut self, client: ClientId) -> Result<(), ShardError> {
        let cs = self
            .clients
            .get_mut(&client)
            .ok_or(ShardError::UnknownClient(client))?;
        cs.crossing = false;
        cs.border_cooldown_until = self.tick.wrapping_add(self.tick_hz);
        let Some(pi) = player_slot(&self.ents, cs) else {
            return Ok(());
        };
        let pu = pi as usize;
        cs.counters.record(MoveRejection::NodeBorder);
        self.corrections_between.push(Correction {
            client,
            input_seq: self.ents.last_input_seq[pu],
            position: self.ents.position[pu],
            velocity: [0.0; 3],
            reason: MoveRejection::NodeBorder,
        });
        Ok(())
    }

    /// Action outcomes of the last tick.
    pub fn action_results(&self) -> &[ActionOutcome] {
        &self.action_results
    }

    /// Entities to ship to other cores.
    pub fn take_handoffs(&mut self) -> std::vec::Drain<'_, Handoff> {
        self.handoffs.drain(..)
    }

    /// Action effects on other cores' entities, to ship to them.
    pub fn take_remote_effects(&mut self) -> std::vec::Drain<'_, RemoteEffect> {
        self.remote_effects.drain(..)
    }

    /// Runs one tick.
    pub fn tick(&mut self, tick: u32) -> TickReport {
        self.scratch.entities_changed();
        let elapsed = if self.started {
            tick.wrapping_sub(self.tick).clamp(1, 5)
        } else {
            1
        };
        self.started = true;
        self.tick = tick;
        self.report = TickReport {
            tick,
            ..TickReport::default()
        };
        self.corrections.clear();
        self.corrections.append(&mut self.corrections_between);
        self.crossings.clear();
        self.action_results.clear();
        self.sweep_ghosts();
        self.apply_inputs(elapsed);
        self.simulate(elapsed);
        self.run_casts();
        self.process_deaths();
        self.regenerate(elapsed);
        self.detect_handoffs();
        self.quantize_all();
        self.report.local_entities = self.ents.locals();
        self.report.ghosts = self.ents.ghosts();
        self.report.clients = self.clients.len() as u32;
        self.report
    }

    fn sweep_ghosts(&mut self) {
        self.doomed.clear();
        for &i in &self.ents.dense {
            let iu = i as usize;
            if !self.ents.ghost[iu] {
                continue;
            }
            let seen = self.ents.ghost_seen[iu];
            let stale = match self.last_batch_tick[usize::from(self.ents.origin[iu])] {
                Some(last) => last.wrapping_sub(seen) as i32 > GHOST_GRACE_TICKS as i32,
                None => false,
            };
            if stale || self.tick.wrapping_sub(seen) as i32 > GHOST_TIMEOUT_TICKS as i32 {
                self.doomed.push((i, 0));
            }
        }
        for k in 0..self.doomed.len() {
            let (i, _) = self.doomed[k];
            self.free_slot(i);
            self.report.ghosts_dropped += 1;
        }
    }

    /// Marks the quadrants other nodes of the cluster simulate (indexed
    /// like the layout's owner table; `Some(node)`: that node's, `None`:
    /// this node's). Movement into them is refused with
    /// [`MoveRejection::NodeBorder`] or reported as a crossing, and local
    /// entities near them are published to their nodes
    /// ([`Shard::take_node_ghosts`]). A table of the wrong length, or with
    /// more nodes than the ghost plan has peer ids, is ignored (nothing
    /// changes) and reported with `false`.
    pub fn set_foreign_quadrants(&mut self, nodes: Vec<Option<u16>>) -> bool {
        let count = self
            .world
            .grid()
            .iter()
            .map(|&n| usize::from(n))
            .product::<usize>();
        let cores = self.world.cores();
        if (!nodes.is_empty() && nodes.len() != count)
            || nodes
                .iter()
                .flatten()
                .any(|&n| node_peer(cores, n).is_none())
        {
            return false;
        }
        self.plan = self.plan.remade(&self.world, &nodes);
        let (slot, outgoing) = peers_of(&self.plan);
        self.core_slot = slot;
        self.outgoing = outgoing;
        self.foreign = nodes.iter().map(Option::is_some).collect();
        self.foreign_nodes = nodes;
        true
    }

    /// Whether `p` lies in a quadrant another node simulates.
    pub fn is_foreign(&self, p: [f32; 3]) -> bool {
        foreign_at(&self.foreign, &self.world, p)
    }

    /// Whether any quadrant another node simulates lies within `radius`
    /// of `p` (every quadrant the box around the circle touches is
    /// checked: exact at quadrant resolution, never a miss).
    pub fn near_foreign(&self, p: [f32; 3], radius: f32) -> bool {
        if self.foreign.is_empty() || !radius.is_finite() {
            return false;
        }
        let lo = self.world.quadrant_of(p.map(|v| v - radius));
        let hi = self.world.quadrant_of(p.map(|v| v + radius));
        (lo[0]..=hi[0]).any(|x| {
            (lo[1]..=hi[1]).any(|y| {
                (lo[2]..=hi[2]).any(|z| {
                    self.foreign
                        .get(self.world.quadrant_index([x, y, z]))
                        .copied()
                        .unwrap_or(false)
                })
            })
        })
    }

    fn apply_inputs(&mut self, elapsed: u32) {
        let now = self.tick;
        let grace = (self.rules.rtt_allowance * self.tick_hz as f32).ceil() as u32 + 2;
        for k in 0..self.client_order.len() {
            let id = self.client_order[k];
            let Some(cs) = self.clients.get_mut(&id) else {
                continue;
            };
            let Some(pi) = player_slot(&self.ents, cs) else {
                cs.inputs.clear();
                continue;
            };
            let pu = pi as usize;
            let factor = speed_factor(&self.ents.buffs[pu]);
            for _ in 0..elapsed {
                cs.mover.accrue(&self.rules, factor, cs.rtt_ms);
            }
            for n in 0..cs.inputs.len() {
                match cs.inputs[n] {
                    Input::Claim(_) if cs.crossing => {
                        // On its way to another node: nothing moves here.
                        self.report.claims_held_at_border += 1;
                    }
                    Input::Claim(claim) => {
                        if cs
                            .last_claim_seq
                            .is_some_and(|last| !tick_after(claim.input_seq, last))
                        {
                            self.report.claims_stale += 1;
                            continue;
                        }
                        cs.last_claim_seq = Some(claim.input_seq);
                        if tick_after(claim.input_seq, self.ents.last_input_seq[pu]) {
                            self.ents.last_input_seq[pu] = claim.input_seq;
                        }
                        if !self.ents.state[pu].contains(EntityState::ALIVE) {
                            // The dead do not move; the snapshots say so.
                            self.report.claims_stale += 1;
                            continue;
                        }
                        let stuck = incapacitated(self.ents.state[pu], self.ents.buffs[pu].flags);
                        let from = self.ents.position[pu];
                        let ctx = MoveContext {
                            rules: &self.rules,
                            quantizer: self.world.quantizer(),
                            terrain: &self.terrain,
                        };
                        // Nobody here simulates the ground past a node
                        // border: hold the player like a wall. Checked first
                        // so that a held claim costs no movement credit (a
                        // player pressing against the border would else be
                        // corrected for speed next); non-finite claims are
                        // left to the rules below.
                        let across = claim.position.iter().all(|c| c.is_finite())
                            && foreign_at(&self.foreign, &self.world, claim.position);
                        let closed =
                            !self.crossings_open || tick_after(cs.border_cooldown_until, now);
                        let verdict = if across && closed {
                            Err(MoveRejection::NodeBorder)
                        } else {
                            validate_claim(&ctx, &mut cs.mover, from, &claim, factor, stuck)
                        };
                        if across && verdict.is_ok() {
                            // A legal step onto another node's ground: the
                            // game layer hands the player over; it stays
                            // here, held, until then.
                            cs.crossing = true;
                            self.report.border_crossings += 1;
                            self.crossings.push(crate::border::BorderCrossing {
                                client: id,
                                position: claim.position,
                                yaw: claim.yaw,
                            });
                            continue;
                        }
                        match verdict {
                            Ok(accepted) => {
                                self.report.claims_accepted += 1;
                                self.ents.position[pu] = claim.position;
                                self.ents.velocity[pu] = claim.velocity;
                                self.ents.rotation[pu][1] = claim.yaw;
                                self.ents.anim[pu] = claim.anim;
                                self.ents.state[pu].set(EntityState::FALLING, accepted.airborne);
                                self.ents.dirty[pu] = true;
                                self.aoi.update(pi, claim.position);
                            }
                            Err(reason) => {
                                self.report.claims_rejected += 1;
                                if reason == MoveRejection::NodeBorder {
                                    self.report.claims_held_at_border += 1;
                                }
                                if !tick_after(cs.correction_until, now) {
                                    cs.counters.record(reason);
                                    cs.correction_until =
                                        now.wrapping_add(grace + cs.rtt_ms * self.tick_hz / 1000);
                                    self.corrections.push(Correction {
                                        client: id,
                                        input_seq: claim.input_seq,
                                        position: from,
                                        velocity: self.ents.velocity[pu],
                                        reason,
                                    });
                                }
                            }
                        }
                    }
                    Input::Action {
                        input_seq,
                        action_id,
                        target,
                    } => {
                        if tick_after(input_seq, self.ents.last_input_seq[pu]) {
                            self.ents.last_input_seq[pu] = input_seq;
                        }
                        // Run after the input pass (`run_pending`), in
                        // arrival order.
                        self.combat.pending.push(combat_ops::Pending::Skill {
                            client: id,
                            caster: pi,
                            input_seq,
                            skill: action_id,
                            target,
                        });
                    }
                    Input::Pickup { input_seq, item } => {
                        if tick_after(input_seq, self.ents.last_input_seq[pu]) {
                            self.ents.last_input_seq[pu] = input_seq;
                        }
                        self.combat.pending.push(combat_ops::Pending::Pickup {
                            client: id,
                            player: pi,
                            input_seq,
                            item,
                        });
                    }
                }
            }
            cs.inputs.clear();
        }
        self.run_pending();
    }

    fn kill(
        ents: &mut Entities,
        report: &mut TickReport,
        died: &mut Vec<u32>,
        i: usize,
        now: u32,
        tick_hz: u32,
    ) {
        ents.hp[i][0] = 0.0;
        ents.state[i].set(EntityState::ALIVE, false);
        ents.state[i].set(EntityState::CASTING, false);
        ents.cast[i] = crate::combat::Cast::default();
        // Experience, loot and the Died event follow in `process_deaths`.
        died.push(i as u32);
        ents.velocity[i] = [0.0; 3];
        ents.anim[i] = anim::DEAD;
        ents.buffs[i] = BuffSet::default();
        let delay = if ents.kind[i] == EntityType::Player {
            5
        } else {
            10
        };
        ents.respawn[i] = now.wrapping_add(delay * tick_hz).max(1);
        ents.dirty[i] = true;
        report.deaths += 1;
    }

    /// Applies an action's effect from another cluster node, like
    /// [`Shard::apply_remote_effect`], and returns what it did (damage or
    /// healing, and the combat flags) for the caster's node to tell its
    /// player; `None` when there was nothing to tell (the target was
    /// dead, or a bare buff).
    pub fn apply_node_effect(
        &mut self,
        effect: RemoteEffect,
    ) -> Result<Option<(f32, crate::combat::CombatFlags)>, ShardError> {
        self.combat.told = None;
        self.apply_remote_effect(effect)?;
        Ok(self.combat.told.take())
    }

    /// Applies an action's effect shipped from another core.
    pub fn apply_remote_effect(&mut self, effect: RemoteEffect) -> Result<(), ShardError> {
        self.scratch.entities_changed();
        let t = self
            .ents
            .by_net_id(effect.target)
            .filter(|&i| self.ents.is_local(i))
            .ok_or(ShardError::UnknownEntity(effect.target))?;
        self.apply_remote(t, &effect);
        Ok(())
    }

    /// AI, projectiles, buffs, death and respawn, lifetimes, state flags.
    fn simulate(&mut self, elapsed: u32) {
        let now = self.tick;
        let dt = elapsed as f32 / self.tick_hz as f32;
        self.doomed.clear();
        let nav = crate::nav::Nav::new(&self.terrain, self.ai.flat, self.rules.max_step);
        if self.ai_enabled {
            self.ai.players.rebuild(&self.ents, self.world.cores());
        }
        let ents = &mut self.ents;
        for k in 0..ents.dense.len() {
            let i = ents.dense[k];
            let iu = i as usize;
            if ents.ghost[iu] {
                continue;
            }
            if ents.expires[iu] != 0 && !tick_after(ents.expires[iu], now) {
                self.doomed.push((i, 0));
                continue;
            }
            let alive = ents.state[iu].contains(EntityState::ALIVE);
            let npc = matches!(
                ents.kind[iu],
                EntityType::Npc | EntityType::Monster | EntityType::Vehicle
            );
            if !alive {
                if npc {
                    crate::ai::on_dead(ents, &mut self.ai, i, now, self.tick_hz);
                }
                if ents.respawn[iu] != 0 && !tick_after(ents.respawn[iu], now) {
                    ents.respawn[iu] = 0;
                    ents.hp[iu][0] = ents.hp[iu][1];
                    ents.mp[iu][0] = ents.mp[iu][1];
                    ents.state[iu] = EntityState::ALIVE;
                    ents.anim[iu] = anim::IDLE;
                    if npc {
                        crate::ai::on_respawn(ents, &mut self.ai, &mut self.aoi, i, now);
                    }
                    ents.dirty[iu] = true;
                    self.report.respawns += 1;
                }
                continue;
            }
            // Buffs: expiry and damage over time.
            if ents.buffs[iu].flags != BuffFlags::NONE {
                let expired = ents.buffs[iu].expire(now);
                if expired > 0 {
                    self.report.buffs_expired += expired;
                    ents.dirty[iu] = true;
                }
                let b = &ents.buffs[iu];
                let dot =
                    f32::from(b.intensity(Buff::Poisoned)) + f32::from(b.intensity(Buff::Burning));
                if dot > 0.0 && !b.flags.contains(BuffFlags::INVULNERABLE) {
                    ents.hp[iu][0] -= dot * dt;
                    ents.dirty[iu] = true;
                    if ents.hp[iu][0] <= 0.0 {
                        Self::kill(
                            ents,
                            &mut self.report,
                            &mut self.combat.died,
                            iu,
                            now,
                            self.tick_hz,
                        );
                        continue;
                    }
                }
            }
            let buffs = ents.buffs[iu].flags;
            let mut state = ents.state[iu];
            state.set(
                EntityState::STUNNED,
                buffs.intersects(BuffFlags::STUNNED.union(BuffFlags::FROZEN)),
            );
            state.set(EntityState::INVISIBLE, buffs.contains(BuffFlags::INVISIBLE));
            state.set(
                EntityState::IN_COMBAT,
                tick_after(ents.combat_until[iu], now),
            );
            // Movement.
            match ents.kind[iu] {
                EntityType::Projectile => {
                    let v = ents.velocity[iu];
                    let p = ents.position[iu];
                    let np = [p[0] + v[0] * dt, p[1] + v[1] * dt, p[2] + v[2] * dt];
                    let ground = self.terrain.heightfield.height_at(np[0], np[1]);
                    if !self.world.quantizer().contains(np)
                        || np[2] < ground
                        || self.terrain.obstacles.segment_blocked(p, np)
                    {
                        self.doomed.push((i, 0));
                        continue;
                    }
                    ents.position[iu] = np;
                    ents.dirty[iu] = true;
                    self.aoi.update(i, np);
                }
                EntityType::Npc | EntityType::Monster | EntityType::Vehicle
                    if self.ai_enabled && (ents.template[iu] != 0 || ents.ai[iu].wander) =>
                {
                    let stuck = state.contains(EntityState::STUNNED);
                    let mut cx = crate::ai::AiCtx {
                        rt: &mut self.ai,
                        mover: crate::ai::Mover {
                            nav: &nav,
                            aoi: &mut self.aoi,
                            world: &self.world,
                            foreign: &self.foreign,
                            cross: self.crossings_open,
                            now,
                            dt,
                        },
                        rng: &mut self.rng,
                        factions: &self.factions,
                        skills: &self.skills,
                        now,
                        tick_hz: self.tick_hz,
                    };
                    crate::ai::step(ents, &mut cx, i, stuck);
                }
                _ => {}
            }
            let v = ents.velocity[iu];
            state.set(
                EntityState::MOVING,
                v[0] * v[0] + v[1] * v[1] + v[2] * v[2] > 1.0,
            );
            if state != ents.state[iu] {
                ents.state[iu] = state;
                ents.dirty[iu] = true;
            }
        }
        if self.ai_enabled {
            crate::ai::serve_paths(&mut self.ai, &self.ents, &nav, &self.world);
        }
        self.cast_ai_attacks();
        for k in 0..self.doomed.len() {
            let (i, _) = self.doomed[k];
            self.free_slot(i);
            self.report.despawned += 1;
        }
    }

    /// Casts the attacks the AI decided, through the checks a player's
    /// request gets (a refused one, say the target died meanwhile, is
    /// counted and the NPC tries again later).
    fn cast_ai_attacks(&mut self) {
        for k in 0..self.ai.casts.len() {
            let (caster, skill, target) = self.ai.casts[k];
            if self.request_skill(caster, skill, target).is_err() {
                self.ai.stats.attacks_refused += 1;
            }
        }
        self.ai.casts.clear();
    }

    fn detect_handoffs(&mut self) {
        self.doomed.clear();
        self.departing.clear();
        for &i in &self.ents.dense {
            let iu = i as usize;
            if self.ents.ghost[iu] {
                continue;
            }
            if let Some(node) = self.departing_to(iu) {
                self.departing.push((i, node));
            } else if let Some(core) = self.world.handoff_target(self.ents.position[iu]) {
                self.doomed.push((i, core));
            }
        }
        for k in 0..self.departing.len() {
            let (i, node) = self.departing[k];
            self.depart(i, node);
        }
        for k in 0..self.doomed.len() {
            let (i, to) = self.doomed[k];
            let iu = i as usize;
            let record = self.ents.record(i);
            let client = match record.owner {
                Some(c) => self.clients.remove(&c).map(|mut state| {
                    self.client_order.retain(|&x| x != c);
                    state.view.drop_in_flight();
                    ClientTransfer(state)
                }),
                None => None,
            };
            self.handoffs.push(Handoff {
                from_core: self.core,
                to_core: to,
                tick: self.tick,
                entity: record,
                client,
            });
            // Keep it visible here, as a ghost of its new owner.
            self.ents.set_ghost(i, true, to, self.tick);
            self.ents.owner[iu] = record.owner;
            self.report.handoffs_out += 1;
        }
    }

    fn quantize_all(&mut self) {
        let now = self.tick;
        for k in 0..self.ents.dense.len() {
            let iu = self.ents.dense[k] as usize;
            if self.ents.dirty[iu] {
                self.ents.dirty[iu] = false;
                let q = quantize(&self.ents, &self.world, iu);
                if q != self.ents.qstate[iu] {
                    self.ents.qstate[iu] = q;
                    self.ents.changed_tick[iu] = now;
                    self.report.changed += 1;
                }
            }
        }
        // The whole column: free slots are never read (their entities'
        // creation ticks say so), and a straight copy is cheapest.
        let slot = now as usize % crate::entity::HISTORY;
        let (history, qstate) = (&mut self.ents.history, &self.ents.qstate);
        history[slot].copy_from_slice(qstate);
    }

    /// Accepts an entity from another core. On failure the hand-off comes
    /// back untouched, so the entity is never lost.
    pub fn accept_handoff(&mut self, handoff: Handoff) -> Result<EntityId, Box<HandoffRejected>> {
        self.scratch.entities_changed();
        let reject = |error, handoff| Err(Box::new(HandoffRejected { error, handoff }));
        if let Some(c) = &handoff.client {
            let id = c.client();
            if self.clients.contains_key(&id) {
                return reject(ShardError::DuplicateClient(id), handoff);
            }
            if self.clients.len() >= self.capacity.clients as usize {
                return reject(
                    ShardError::ClientsFull {
                        capacity: self.capacity.clients,
                    },
                    handoff,
                );
            }
        }
        let net = handoff.entity.net_id;
        let i = match self.ents.by_net_id(net) {
            Some(i) if self.ents.ghost[i as usize] => {
                self.ents.set_ghost(i, false, self.core, self.tick);
                if self.ents.kind[i as usize] != handoff.entity.kind {
                    self.aoi.remove(i);
                    self.aoi
                        .insert(i, handoff.entity.kind, handoff.entity.position);
                }
                i
            }
            Some(_) => return reject(ShardError::DuplicateEntity(net), handoff),
            None => match self.ents.alloc(net, false, self.core, self.tick) {
                Ok(i) => {
                    self.aoi
                        .insert(i, handoff.entity.kind, handoff.entity.position);
                    i
                }
                Err(e) => return reject(e, handoff),
            },
        };
        self.ents.write_record(i, &handoff.entity);
        self.aoi.update(i, handoff.entity.position);
        if let Some(ClientTransfer(mut state)) = handoff.client {
            // Handles of the previous shard mean nothing here.
            state.player = self.ents.id_of(i);
            state.view.rebind(&self.ents);
            let id = state.client;
            self.clients.insert(id, state);
            self.client_order.push(id);
        }
        Ok(self.ents.id_of(i))
    }

    /// Appends this tick's ghost batches, one per neighbouring core (empty
    /// ones included: they let the receiver drop ghosts that left).
    pub fn publish_ghosts(&mut self, out: &mut Vec<GhostBatch>) {
        for (_, list) in &mut self.outgoing {
            if list.capacity() == 0 {
                *list = self.spare_batches.pop().unwrap_or_default();
            }
            list.clear();
        }
        let ents = &self.ents;
        for &i in &ents.dense {
            let iu = i as usize;
            if ents.ghost[iu] {
                continue;
            }
            let p = ents.position[iu];
            let q = self.world.quadrant_index(self.world.quadrant_of(p));
            let mut mask = CoreMask::default();
            self.plan.targets(q, ents.kind[iu].index(), p, &mut mask);
            if mask.is_empty() {
                continue;
            }
            let g = GhostState {
                net_id: ents.net_id[iu],
                kind: ents.kind[iu],
                faction: ents.faction[iu],
                owner: ents.owner[iu],
                position: p,
                velocity: ents.velocity[iu],
                rotation: ents.rotation[iu],
                anim: ents.anim[iu],
                state: ents.state[iu],
                buffs: ents.buffs[iu].flags,
                hp: ents.hp[iu],
                mp: ents.mp[iu],
            };
            for core in mask.iter() {
                let slot = self.core_slot[usize::from(core)];
                if let Some((_, list)) = self.outgoing.get_mut(usize::from(slot)) {
                    list.push(g);
                }
            }
        }
        let cores = self.world.cores();
        self.node_outgoing.clear();
        for (peer, list) in &mut self.outgoing {
            let ghosts = core::mem::take(list);
            if *peer < cores {
                out.push(GhostBatch {
                    from_core: self.core,
                    to_core: *peer,
                    tick: self.tick,
                    ghosts,
                });
            } else {
                self.node_outgoing.push(NodeGhosts {
                    node: *peer - cores,
                    tick: self.tick,
                    ghosts,
                });
            }
        }
    }

    /// Moves this tick's batches for other cluster nodes (made by
    /// [`Shard::publish_ghosts`], empty ones included: they let the
    /// receiver drop ghosts that left) into `out`.
    pub fn take_node_ghosts(&mut self, out: &mut Vec<NodeGhosts>) {
        out.append(&mut self.node_outgoing);
    }

    /// Takes back a ghost vector that went nowhere (a batch for another
    /// node that could not be sent), for the next batches.
    pub fn recycle_ghosts(&mut self, mut ghosts: Vec<GhostState>) {
        if self.spare_batches.len() < self.outgoing.len() + SPARE_BATCHES {
            ghosts.clear();
            self.spare_batches.push(ghosts);
        }
    }

    /// Applies another cluster node's ghost batch (`batch.node`: the
    /// sender). Only ghosts this core's viewers could see are kept; they
    /// are stamped with this shard's tick. Returns how many were kept.
    pub fn accept_node_ghosts(&mut self, batch: NodeGhosts) -> usize {
        let Some(origin) = node_peer(self.world.cores(), batch.node) else {
            self.recycle_ghosts(batch.ghosts);
            return 0;
        };
        self.scratch.entities_changed();
        let now = self.tick;
        let last = &mut self.last_batch_tick[usize::from(origin)];
        if last.is_none_or(|t| tick_after(now, t)) {
            *last = Some(now);
        }
        let mut kept = 0;
        self.crossed.retain(|&(_, until)| tick_after(until, now));
        for g in &batch.ghosts {
            if !self.crossed.is_empty() && self.crossed.iter().any(|&(id, _)| id == g.net_id) {
                // A batch sent before its player left that node.
                continue;
            }
            let p = self.world.clamp(g.position);
            let qi = self.world.quadrant_index(self.world.quadrant_of(p));
            if !self.plan.near(qi, g.kind.index()) || self.foreign.get(qi) != Some(&true) {
                // Not for this core's viewers, or claimed on ground the
                // sender does not simulate: not shown.
                continue;
            }
            if self.upsert_ghost(&GhostState { position: p, ..*g }, origin, now) {
                kept += 1;
            }
        }
        self.recycle_ghosts(batch.ghosts);
        kept
    }

    /// A player of another node arrived here (it is a new local entity
    /// now): its ghost there, `net_id` on that node, goes at once, and a
    /// batch still in flight does not bring it back for
    /// [`GHOST_GRACE_TICKS`]. Without this the arrival would be seen twice
    /// until the old ghost aged out. False when there was no such ghost.
    pub fn forget_crossed_ghost(&mut self, net_id: u32) -> bool {
        let Some(i) = self.ents.by_net_id(net_id) else {
            return false;
        };
        if !self.across_node(i as usize) {
            return false;
        }
        self.scratch.entities_changed();
        self.free_slot(i);
        if self.crossed.len() == MAX_CROSSED {
            self.crossed.remove(0);
        }
        self.crossed
            .push((net_id, self.tick.wrapping_add(GHOST_GRACE_TICKS)));
        true
    }

    /// Applies a neighbour's ghost batch; its vector is kept for reuse.
    pub fn accept_ghosts(&mut self, batch: GhostBatch) {
        self.scratch.entities_changed();
        let from = batch.from_core;
        if from < self.world.cores() && from != self.core {
            let last = &mut self.last_batch_tick[usize::from(from)];
            if last.is_none_or(|t| tick_after(batch.tick, t)) {
                *last = Some(batch.tick);
            }
            for g in &batch.ghosts {
                self.upsert_ghost(g, from, batch.tick);
            }
        }
        self.recycle_ghosts(batch.ghosts);
    }

    /// Whether slot `i` is a ghost of another cluster node's entity (seen,
    /// never acted on: nothing carries effects between nodes).
    #[inline]
    pub(crate) fn across_node(&self, i: usize) -> bool {
        self.ents.ghost[i] && self.ents.origin[i] >= self.world.cores()
    }

    /// Creates or updates the ghost of `g` (owned by peer `origin`, as of
    /// `seen`). False when it was not applied: a local entity has its id,
    /// the ghost has newer news already, or the pool is full.
    fn upsert_ghost(&mut self, g: &GhostState, origin: u16, seen: u32) -> bool {
        let i = match self.ents.by_net_id(g.net_id) {
            Some(i) if !self.ents.ghost[i as usize] => return false,
            Some(i) => {
                if tick_after(self.ents.ghost_seen[i as usize], seen) {
                    return false;
                }
                if self.ents.kind[i as usize] != g.kind {
                    self.aoi.remove(i);
                    self.aoi.insert(i, g.kind, g.position);
                }
                i
            }
            None => match self.ents.alloc(g.net_id, true, origin, self.tick) {
                Ok(i) => {
                    self.aoi.insert(i, g.kind, g.position);
                    i
                }
                Err(_) => return false,
            },
        };
        let iu = i as usize;
        let e = &mut self.ents;
        e.origin[iu] = origin;
        e.ghost_seen[iu] = seen;
        e.kind[iu] = g.kind;
        e.faction[iu] = g.faction;
        e.owner[iu] = g.owner;
        e.position[iu] = g.position;
        e.velocity[iu] = g.velocity;
        e.rotation[iu] = g.rotation;
        e.anim[iu] = g.anim;
        e.state[iu] = g.state;
        e.buffs[iu] = BuffSet {
            flags: g.buffs,
            ..BuffSet::default()
        };
        e.hp[iu] = g.hp;
        e.mp[iu] = g.mp;
        e.dirty[iu] = true;
        self.aoi.update(i, g.position);
        true
    }

    /// Writes `client`'s snapshot of `tick` (which must be the tick just
    /// run) into `out`, at most `budget` bytes: one whole `DeltaSync`
    /// server message. Returns its length; 0 when the client is unknown,
    /// `tick` is not the current tick, or the budget cannot hold a header.
    pub fn write_snapshot(
        &mut self,
        client: ClientId,
        tick: u32,
        budget: usize,
        out: &mut [u8],
    ) -> usize {
        if tick != self.tick || !self.started {
            return 0;
        }
        let Some(cs) = self.clients.get_mut(&client) else {
            return 0;
        };
        let Some(pi) = player_slot(&self.ents, cs) else {
            return 0;
        };
        let pu = pi as usize;
        let viewer = Viewer {
            input_ack: self.ents.last_input_seq[pu],
            index: pi,
            position: self.ents.position[pu],
            faction: self.ents.faction[pu],
        };
        self.scratch.refresh_summary(&self.ents, &self.sync, tick);
        let world = WorldView {
            ents: &self.ents,
            aoi: &self.aoi,
            factions: &self.factions,
            params: &self.sync,
        };
        crate::snapshot::write_snapshot(
            &mut cs.view,
            &world,
            &viewer,
            tick,
            budget,
            out,
            &mut self.scratch,
        )
    }

    /// The transport acknowledged the snapshot of `tick` sent to `client`.
    pub fn on_snapshot_acked(&mut self, client: ClientId, tick: u32) {
        if let Some(cs) = self.clients.get_mut(&client) {
            cs.view.on_acked(tick, &self.ents, self.tick);
        }
    }

    /// The transport declared the snapshot of `tick` sent to `client` lost.
    pub fn on_snapshot_lost(&mut self, client: ClientId, tick: u32) {
        if let Some(cs) = self.clients.get_mut(&client) {
            cs.view.on_lost(tick);
        }
    }

    /// Ticks between full refreshes (Create records) of each entity.
    pub fn full_sync_ticks(&self) -> u32 {
        self.sync.full_sync_ticks()
    }

    /// Bytes one entity slot takes (all columns, AOI links included).
    pub fn bytes_per_entity_slot() -> usize {
        use core::mem::size_of;
        let columns = size_of::<u32>() * 4 // generation, dense_pos, net_id, free list
            + size_of::<bool>() * 3
            + size_of::<EntityType>()
            + size_of::<Faction>()
            + size_of::<Option<ClientId>>()
            + size_of::<u16>()
            + size_of::<u32>() // ghost_seen
            + size_of::<[f32; 3]>() * 3
            + 1
            + size_of::<EntityState>()
            + size_of::<BuffSet>()
            + size_of::<[f32; 2]>() * 2
            + size_of::<f32>()
            + size_of::<u32>() * 4 // last input, expires, respawn, combat
            + size_of::<[u32; MAX_ACTIONS]>()
            + size_of::<crate::combat::Progress>()
            + size_of::<crate::combat::Fighter>()
            + size_of::<crate::combat::Cast>()
            + size_of::<crate::combat::Contributions>()
            + size_of::<crate::loot::ItemState>()
            + size_of::<u16>() // template
            + size_of::<crate::ai::Brain>()
            + size_of::<crate::ai::PathCache>() // the AI's per-slot path cache
            + size_of::<(u32, u32)>() // its path request queue
            + size_of::<QuantizedEntity>() * (1 + crate::entity::HISTORY)
            + size_of::<u32>() * 2 // changed, created
            + (size_of::<u32>() + size_of::<u32>()) * 2; // net id map (≈)
        let aoi =
            size_of::<u64>() + size_of::<u32>() * 5 + 2 + 2 * (size_of::<u64>() + size_of::<u32>());
        columns + aoi + crate::snapshot::Scratch::bytes_per_entity_slot()
    }

    /// Snapshot records copied from the per-tick shared cache, and records
    /// encoded (since the shard started).
    pub fn record_cache_counts(&self) -> (u64, u64) {
        self.scratch.record_counts()
    }

    /// Bytes a client's server-side state takes now (its view at its
    /// current size, the in-flight record ring, input queue).
    pub fn client_bytes(&self, client: ClientId) -> Option<usize> {
        self.clients.get(&client).map(|c| {
            core::mem::size_of::<ClientState>()
                + c.view.heap_bytes()
                + c.inputs.capacity() * core::mem::size_of::<Input>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_figures() {
        let entity = Shard::bytes_per_entity_slot();
        let entry = ClientView::bytes_per_entry();
        let client = core::mem::size_of::<ClientState>();
        println!("entity slot {entity} B, view entry {entry} B, client state {client} B + view");
        // The 32-tick history is 832 of these bytes (docs/WORLD.md §8);
        // the combat columns (level and experience, stats and gear, the
        // cast, the damage dealers, the item state) and 16 cooldowns add
        // about 180 (docs/GAMEPLAY.md §2), the NPC AI (template, brain,
        // path cache and queue) about 114.
        assert!(entity <= 1600);
        assert!(entry <= 64);
    }
}
