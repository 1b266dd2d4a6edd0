//! The game layer of one core: its [`Shard`] of the world and the clients
//! playing in it. The core loop calls in with decoded protocol events and
//! once per tick; this module turns them into shard inputs, and the
//! shard's output (snapshots, corrections, action results, hand-offs,
//! ghosts, remote effects) into messages and cross-core traffic.
//!
//! Snapshots are unreliable messages; the transport reports each one
//! acknowledged or lost by the token `send` returned, and a per-client
//! ring maps tokens back to ticks so the shard promotes exactly the
//! acknowledged states to delta baselines.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crossbeam_channel::Sender;
use tos_protocol::connection::Connection;
use tos_protocol::endpoint::{ConnectionHandle, Endpoint};
use tos_protocol::wire::game::{ClientMessage, MovementClaim, ServerMessage};
use tos_protocol::wire::{Channel, Writer};
use tos_shards::{Character, ClientId, Faction, GhostBatch, Handoff, Shard, ShardError};

use crate::core::CoreMessage;
use crate::stats::CoreSnapshot;

/// Where a character enters the world, until a character database says
/// otherwise: a deterministic point from its id. Ids with the top bit set
/// are "battle" characters and enter within 200 m of [`BATTLE_CENTRE`];
/// the others anywhere in a 4 km square around the origin.
pub fn dev_spawn_position(character_id: u64) -> [f32; 3] {
    // SplitMix64: every output is well mixed even for neighbouring ids.
    let mut x = character_id;
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    if character_id >> 63 == 1 {
        let (a, r) = (next() * std::f32::consts::TAU, next() * 20_000.0);
        [
            BATTLE_CENTRE[0] + r * a.cos(),
            BATTLE_CENTRE[1] + r * a.sin(),
            0.0,
        ]
    } else {
        [
            (next() * 2.0 - 1.0) * 200_000.0,
            (next() * 2.0 - 1.0) * 200_000.0,
            0.0,
        ]
    }
}

/// The battle hotspot of [`dev_spawn_position`].
pub const BATTLE_CENTRE: [f32; 3] = [1_000.0, 1_000.0, 0.0];

/// Snapshot tokens remembered per client (a few round trips of ticks).
const TOKENS: usize = 64;

struct ClientSlot {
    handle: ConnectionHandle,
    in_world: bool,
    tokens: [(u64, u32); TOKENS],
    head: usize,
}

impl ClientSlot {
    fn new(handle: ConnectionHandle) -> Self {
        Self {
            handle,
            in_world: false,
            tokens: [(u64::MAX, 0); TOKENS],
            head: 0,
        }
    }

    fn remember(&mut self, token: u64, tick: u32) {
        self.tokens[self.head % TOKENS] = (token, tick);
        self.head += 1;
    }

    fn tick_of(&self, token: u64) -> Option<u32> {
        self.tokens
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, tick)| *tick)
    }
}

/// One core's world and its players.
pub struct CoreWorld {
    core: u16,
    shard: Shard,
    clients: HashMap<ClientId, ClientSlot>,
    by_handle: HashMap<u32, ClientId>,
    next_client: Arc<AtomicU32>,
    budget: usize,
    snapshot: Vec<u8>,
    ghosts: Vec<GhostBatch>,
    handoffs: Vec<Handoff>,
    effects: Vec<tos_shards::RemoteEffect>,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl core::fmt::Debug for CoreWorld {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CoreWorld")
            .field("core", &self.core)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

fn encode(msg: &ServerMessage<'_>, out: &mut [u8]) -> usize {
    let mut w = Writer::new(out);
    if msg.encode(&mut w).is_err() {
        return 0;
    }
    w.position()
}

impl CoreWorld {
    /// A world for core `core`; `budget` is the most bytes a snapshot may
    /// take (one datagram's message).
    pub fn new(core: u16, shard: Shard, next_client: Arc<AtomicU32>, budget: usize) -> Self {
        Self {
            core,
            shard,
            clients: HashMap::new(),
            by_handle: HashMap::new(),
            next_client,
            budget,
            snapshot: vec![0u8; 2048],
            ghosts: Vec::new(),
            handoffs: Vec::new(),
            effects: Vec::new(),
            _not_send: core::marker::PhantomData,
        }
    }

    /// Players in this core's world.
    pub fn players(&self) -> usize {
        self.clients.values().filter(|c| c.in_world).count()
    }

    /// A connection completed its handshake here.
    pub fn on_connected(&mut self, handle: ConnectionHandle) {
        let client = ClientId(self.next_client.fetch_add(1, Ordering::Relaxed));
        self.clients.insert(client, ClientSlot::new(handle));
        self.by_handle.insert(handle.index() as u32, client);
    }

    /// A connection ended: its player leaves the world.
    pub fn on_closed(&mut self, handle: ConnectionHandle) {
        if let Some(client) = self.by_handle.remove(&(handle.index() as u32)) {
            if let Some(slot) = self.clients.remove(&client) {
                if slot.in_world {
                    let _ = self.shard.remove_player(client);
                }
            }
        }
    }

    /// A snapshot was acknowledged or lost.
    pub fn on_snapshot_fate(&mut self, handle: ConnectionHandle, token: u64, acked: bool) {
        let Some(client) = self.by_handle.get(&(handle.index() as u32)).copied() else {
            return;
        };
        let Some(tick) = self.clients.get(&client).and_then(|s| s.tick_of(token)) else {
            return;
        };
        if acked {
            self.shard.on_snapshot_acked(client, tick);
        } else {
            self.shard.on_snapshot_lost(client, tick);
        }
    }

    /// A client's message. Returns a connection to hand to another core
    /// when the player must enter there.
    pub fn on_message(
        &mut self,
        endpoint: &mut Endpoint,
        peers: &[Sender<CoreMessage>],
        handle: ConnectionHandle,
        data: &[u8],
        now: Instant,
        local: &mut CoreSnapshot,
    ) {
        let Some(client) = self.by_handle.get(&(handle.index() as u32)).copied() else {
            return;
        };
        let Ok(msg) = ClientMessage::decode(data) else {
            local.drop_malformed += 1;
            return;
        };
        match msg {
            ClientMessage::EnterToWorld { character_id, .. } => {
                if self.clients.get(&client).is_some_and(|s| s.in_world) {
                    return;
                }
                let character = Character {
                    character_id,
                    position: dev_spawn_position(character_id),
                    yaw: 0.0,
                    faction: if character_id & 1 == 0 {
                        Faction::ALLIANCE
                    } else {
                        Faction::HORDE
                    },
                    hp: 100.0,
                    mp: 100.0,
                };
                self.enter(endpoint, peers, client, character, now, local);
            }
            ClientMessage::SyncEntity(claim) => {
                let _ = self.shard.push_claim(client, claim);
            }
            ClientMessage::SyncEntityQuantized(q) => {
                let quantizer = self.shard.world().quantizer();
                if let Ok(position) = quantizer.dequantize_position(q.position) {
                    let claim = MovementClaim {
                        input_seq: q.input_seq,
                        position,
                        velocity: q
                            .velocity
                            .map(|v| tos_protocol::quant::dequantize_velocity(v, 1.0)),
                        yaw: tos_protocol::quant::dequantize_angle(q.yaw),
                        anim: q.anim,
                    };
                    let _ = self.shard.push_claim(client, claim);
                }
            }
            ClientMessage::Action {
                input_seq,
                action_id,
                target,
            } => {
                let _ = self.shard.push_action(client, input_seq, action_id, target);
            }
            // Heartbeats and rekeys travel as transport frames; the seed's
            // game-level aliases need no answer.
            ClientMessage::Pong(_) | ClientMessage::RekeyResponse(_) => {}
            // Accounts and characters: the game layer (not yet written)
            // answers these; the development server ignores them.
            ClientMessage::Register { .. }
            | ClientMessage::Login { .. }
            | ClientMessage::CharacterList
            | ClientMessage::CharacterCreate { .. }
            | ClientMessage::CharacterDelete { .. }
            | ClientMessage::CharacterRestore { .. }
            | ClientMessage::LeaveWorld => {}
        }
    }

    fn enter(
        &mut self,
        endpoint: &mut Endpoint,
        peers: &[Sender<CoreMessage>],
        client: ClientId,
        character: Character,
        now: Instant,
        local: &mut CoreSnapshot,
    ) {
        let Some(handle) = self.clients.get(&client).map(|s| s.handle) else {
            return;
        };
        match self.shard.add_player(client, &character) {
            Ok(_) => {
                if let Some(slot) = self.clients.get_mut(&client) {
                    slot.in_world = true;
                }
                let entity_id = self.shard.player_of(client).unwrap_or(0);
                let mut buf = [0u8; 160];
                let world = tos_protocol::wire::game::WorldParams::from_quantizer(
                    self.shard.world().quantizer(),
                    // The velocity step the server dequantizes claims with.
                    1.0,
                    self.shard.movement_rules().max_speed,
                );
                let n = encode(
                    &ServerMessage::WorldEntered {
                        entity_id,
                        server_tick: 0,
                        character_id: character.character_id,
                        position: character.position,
                        yaw: character.yaw,
                        world,
                    },
                    &mut buf,
                );
                let _ = endpoint.send(handle, Channel::ReliableOrdered, &buf[..n]);
            }
            Err(ShardError::WrongShard { owner }) => {
                // The spawn point is another core's: the connection goes there.
                let Some(conn) = endpoint.take_connection(handle, owner as u8, now) else {
                    return;
                };
                self.forget(handle, client);
                let msg = CoreMessage::Enter {
                    connection: Box::new(conn),
                    client,
                    character,
                };
                if peers
                    .get(usize::from(owner))
                    .is_some_and(|p| p.try_send(msg).is_ok())
                {
                    local.migrations_out += 1;
                } else {
                    local.drop_forward_full += 1;
                }
            }
            Err(_) => {}
        }
    }

    fn forget(&mut self, handle: ConnectionHandle, client: ClientId) {
        self.by_handle.remove(&(handle.index() as u32));
        self.clients.remove(&client);
    }

    /// A connection moved here to enter the world.
    pub fn on_enter(
        &mut self,
        endpoint: &mut Endpoint,
        peers: &[Sender<CoreMessage>],
        connection: Connection,
        (client, character): (ClientId, Character),
        now: Instant,
        local: &mut CoreSnapshot,
    ) {
        let handle = endpoint.insert_migrated(connection, now);
        self.clients.insert(client, ClientSlot::new(handle));
        self.by_handle.insert(handle.index() as u32, client);
        local.migrations_in += 1;
        self.enter(endpoint, peers, client, character, now, local);
    }

    /// An entity (and maybe its player's connection) moved here.
    pub fn on_handoff(
        &mut self,
        endpoint: &mut Endpoint,
        peers: &[Sender<CoreMessage>],
        handoff: Handoff,
        connection: Option<Connection>,
        now: Instant,
        local: &mut CoreSnapshot,
    ) {
        let client = handoff.client.as_ref().map(|c| c.client());
        match self.shard.accept_handoff(handoff) {
            Ok(_) => {
                if let (Some(client), Some(conn)) = (client, connection) {
                    let handle = endpoint.insert_migrated(conn, now);
                    let mut slot = ClientSlot::new(handle);
                    slot.in_world = true;
                    self.clients.insert(client, slot);
                    self.by_handle.insert(handle.index() as u32, client);
                    local.migrations_in += 1;
                }
            }
            Err(rejected) => {
                // Never lose it: send it back where it came from.
                let back = rejected.handoff;
                let from = usize::from(back.from_core);
                let msg = CoreMessage::Handoff {
                    handoff: Box::new(back),
                    connection: connection.map(Box::new),
                };
                if peers.get(from).is_none_or(|p| p.try_send(msg).is_err()) {
                    local.drop_forward_full += 1;
                }
            }
        }
    }

    /// A neighbour's ghosts.
    pub fn on_ghosts(&mut self, batch: GhostBatch) {
        self.shard.accept_ghosts(batch);
    }

    /// An action effect on an entity this core owns.
    pub fn on_effect(&mut self, effect: tos_shards::RemoteEffect) {
        let _ = self.shard.apply_remote_effect(effect);
    }

    /// Runs the world's tick and sends its output.
    pub fn tick(
        &mut self,
        endpoint: &mut Endpoint,
        peers: &[Sender<CoreMessage>],
        tick: u32,
        now: Instant,
        local: &mut CoreSnapshot,
    ) {
        if tick % 60 == 0 {
            for (client, slot) in &self.clients {
                if let Some(conn) = endpoint.connection(slot.handle) {
                    let _ = self.shard.set_rtt(
                        *client,
                        conn.rtt().as_millis().min(u128::from(u32::MAX)) as u32,
                    );
                }
            }
        }
        self.shard.tick(tick);
        let mut buf = [0u8; 64];
        // Corrections go reliably: a claim rejected within a round trip of a
        // correction is not corrected again.
        for c in self.shard.corrections() {
            if let Some(slot) = self.clients.get(&c.client) {
                let n = encode(&c.message(), &mut buf);
                let _ = endpoint.send(slot.handle, Channel::ReliableOrdered, &buf[..n]);
            }
        }
        for a in self.shard.action_results() {
            if let Some(slot) = self.clients.get(&a.client) {
                let n = encode(&a.message(), &mut buf);
                let _ = endpoint.send(slot.handle, Channel::ReliableOrdered, &buf[..n]);
            }
        }
        // Entities crossing into other cores' quadrants, with their players.
        // Reused buffers: no allocation per tick once warm.
        self.handoffs.extend(self.shard.take_handoffs());
        let mut handoffs = core::mem::take(&mut self.handoffs);
        for h in handoffs.drain(..) {
            let to = usize::from(h.to_core);
            let connection = h.client.as_ref().map(|c| c.client()).and_then(|client| {
                let slot = self.clients.remove(&client)?;
                self.by_handle.remove(&(slot.handle.index() as u32));
                endpoint.take_connection(slot.handle, h.to_core as u8, now)
            });
            if connection.is_some() {
                local.migrations_out += 1;
            }
            let msg = CoreMessage::Handoff {
                handoff: Box::new(h),
                connection: connection.map(Box::new),
            };
            if peers.get(to).is_none_or(|p| p.try_send(msg).is_err()) {
                local.drop_forward_full += 1;
            }
        }
        self.handoffs = handoffs;
        self.ghosts.clear();
        self.shard.publish_ghosts(&mut self.ghosts);
        for batch in self.ghosts.drain(..) {
            let to = usize::from(batch.to_core);
            if let Some(p) = peers.get(to) {
                let _ = p.try_send(CoreMessage::Ghosts(batch));
            }
        }
        self.effects.extend(self.shard.take_remote_effects());
        for e in self.effects.drain(..) {
            if let Some(p) = peers.get(usize::from(e.to_core)) {
                let _ = p.try_send(CoreMessage::Effect(e));
            }
        }
        // One snapshot per player per tick.
        for (client, slot) in &mut self.clients {
            if !slot.in_world {
                continue;
            }
            let n = self
                .shard
                .write_snapshot(*client, tick, self.budget, &mut self.snapshot);
            if n == 0 {
                continue;
            }
            if let Ok(token) = endpoint.send(slot.handle, Channel::Unreliable, &self.snapshot[..n])
            {
                slot.remember(token, tick);
            }
        }
    }
}
