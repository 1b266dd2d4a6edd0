//! The gameplay side of [`GameCore`]: the InGame requests for items,
//! equipment and chat, and what the shard's events of a tick turn into
//! (inventory changes, CharacterStats, CombatEvents).
//!
//! Every request is checked by the plain state machines
//! ([`crate::inventory`], [`crate::chat`]) before the shard hears of it;
//! each refusal is answered with its reason and counted. Per-tick work
//! (events, pick-up verdicts) reuses the core's buffers.

use super::*;

use tos_protocol::wire::game::{
    CharacterStats, ChatChannel, EquippedItem, InventoryItem, MAX_NAME_LEN, combat_flags,
    encode_inventory, stats_cause,
};
use tos_shards::combat::formula;
use tos_shards::{ActionRefusal, ConsumableEffect, EntityType, ShardEvent};

use crate::chat::{self, Audience, ChatLine, MAX_FORWARDS, SAY_RADIUS};

/// A shout costs this many chat tokens (a whole burst): it reaches every
/// player of the process, so it is rarer than a say.
const SHOUT_COST: f32 = chat::BURST;

/// Reused buffers of the gameplay paths.
#[derive(Debug, Default)]
pub(super) struct PlayBuffers {
    /// Shard events of this tick.
    events: Vec<ShardEvent>,
    /// Listeners of a say.
    listeners: Vec<ClientId>,
    /// An Inventory message's entries.
    items: Vec<InventoryItem>,
    /// An Inventory message's worn entries.
    worn: Vec<EquippedItem>,
}

impl PlayBuffers {
    pub(super) fn new() -> Self {
        Self {
            events: Vec::with_capacity(1_024),
            listeners: Vec::with_capacity(256),
            items: Vec::with_capacity(crate::inventory::CAPACITY.into()),
            worn: Vec::with_capacity(tos_protocol::wire::game::EQUIP_SLOTS),
        }
    }
}

/// How far away an entity may be inspected, world units (100 m: what a
/// player can pick out on screen).
pub(crate) const INSPECT_RANGE: f32 = 10_000.0;

/// A name cut to the protocol's limit on a character boundary (names in
/// the data files are not limited; a long one is shortened, not refused).
fn truncate_name(name: &str) -> &str {
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    let mut end = MAX_NAME_LEN;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl GameCore {
    fn character_mut(&mut self, handle: ConnectionHandle) -> Option<&mut PlayingCharacter> {
        match self.sessions.get_mut(&handle).map(|s| &mut s.session) {
            Some(Session::InGame(g)) => Some(&mut g.character),
            _ => None,
        }
    }

    fn character(&self, handle: ConnectionHandle) -> Option<&PlayingCharacter> {
        match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => Some(&g.character),
            _ => None,
        }
    }

    /// A gameplay message of an InGame session (admitted by the session).
    pub(super) fn gameplay(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        msg: &ClientMessage<'_>,
    ) {
        let Some(client) = self.client_of(handle) else {
            return;
        };
        match *msg {
            ClientMessage::PickUp { input_seq, item } => {
                self.pick_up(handle, client, input_seq, item)
            }
            ClientMessage::UseItem { slot } => self.use_item(handle, client, slot),
            ClientMessage::Equip { slot, equip_slot } => {
                self.equip(handle, client, slot, equip_slot)
            }
            ClientMessage::Unequip { equip_slot } => self.unequip(handle, client, equip_slot),
            ClientMessage::Chat {
                channel,
                target,
                text,
            } => self.chat(now, handle, client, channel, target, text),
            ClientMessage::DropItem { slot, count } => self.drop_item(handle, client, slot, count),
            ClientMessage::Inspect { entity } => self.inspect(handle, client, entity),
            _ => {}
        }
    }

    /// What an entity in sight is: its template, level and name (what
    /// snapshots leave out because it rarely changes).
    fn inspect(&mut self, handle: ConnectionHandle, client: ClientId, entity: u32) {
        let request = client_type::INSPECT;
        let me = self
            .shard
            .player_of(client)
            .and_then(|net| self.shard.entity(net))
            .map(|e| e.record.position);
        let info = self.shard.entity(entity);
        let (Some(me), Some(info)) = (me, info) else {
            return self.refuse(handle, request, RefusalReason::NoSuchEntity);
        };
        let r = &info.record;
        let (dx, dy, dz) = (
            r.position[0] - me[0],
            r.position[1] - me[1],
            r.position[2] - me[2],
        );
        if dx * dx + dy * dy + dz * dz > INSPECT_RANGE * INSPECT_RANGE {
            return self.refuse(handle, request, RefusalReason::NoSuchEntity);
        }
        let data = &self.services.data;
        let (template, level, count, name): (u16, u16, u16, &str) = match r.kind {
            EntityType::Item => (
                r.item.template,
                0,
                r.item.count,
                data.combat
                    .item(r.item.template)
                    .map_or("", |i| i.name.as_str()),
            ),
            EntityType::Player => {
                // The name is known where the player's session is.
                let name = r
                    .owner
                    .and_then(|c| self.handle_of(c))
                    .and_then(|h| match self.sessions.get(&h).map(|s| &s.session) {
                        Some(Session::InGame(g)) => Some(g.character.name.as_str()),
                        _ => None,
                    })
                    .unwrap_or("");
                (r.progress.template, r.progress.level, 0, name)
            }
            _ => (
                r.template,
                r.progress.level,
                0,
                data.npcs
                    .templates
                    .iter()
                    .find(|t| t.id == r.template)
                    .map_or("", |t| t.name.as_str()),
            ),
        };
        // The name borrows the sessions and the game data: copied out (at
        // most 32 bytes, on the stack) before the message is queued.
        let name = truncate_name(name);
        let mut name_buf = [0u8; MAX_NAME_LEN];
        name_buf[..name.len()].copy_from_slice(name.as_bytes());
        let name_len = name.len();
        let entity_type = r.kind as u8;
        let name = core::str::from_utf8(&name_buf[..name_len]).unwrap_or("");
        self.reliable(
            handle,
            &ServerMessage::EntityInfo {
                entity,
                entity_type,
                template,
                level,
                count,
                name,
            },
        );
    }

    /// The player just entered this core's world: its gear goes to the
    /// shard, and the client gets its inventory and statistics.
    pub(super) fn entered(&mut self, handle: ConnectionHandle, client: ClientId) {
        self.apply_gear(handle, client);
        self.send_inventory(handle);
        self.send_stats(handle, client, stats_cause::ENTERED);
    }

    // --------------------------------------------------------------
    // Items and equipment
    // --------------------------------------------------------------

    fn pick_up(&mut self, handle: ConnectionHandle, client: ClientId, input_seq: u32, item: u32) {
        let request = client_type::PICK_UP;
        // The item's template and count when this core sees it, so that
        // stacking and weight are checked exactly; otherwise the shard
        // refuses the pick-up (no such item, or it lies on another core).
        let what = self
            .shard
            .entity(item)
            .filter(|e| e.record.kind == EntityType::Item && e.record.item.template != 0)
            .map(|e| (e.record.item.template, e.record.item.count));
        let expires = self.tick.wrapping_add(self.pickup_timeout);
        let book = Arc::clone(&self.services.items);
        let Some(c) = self.character_mut(handle) else {
            return;
        };
        if let Err(reason) = c.inventory.reserve_pickup(input_seq, expires, what, &book) {
            return self.refuse(handle, request, reason);
        }
        if self.shard.push_pickup(client, input_seq, item).is_err() {
            // The shard's input queue is full: nothing was queued.
            if let Some(c) = self.character_mut(handle) {
                c.inventory.settle_pickup(input_seq);
            }
            bump(&self.services.counters.shard_refused_total);
            self.refuse(handle, request, RefusalReason::ServerBusy);
        }
    }

    fn use_item(&mut self, handle: ConnectionHandle, client: ClientId, slot: u8) {
        let request = client_type::USE_ITEM;
        let tick = self.tick;
        let checked = match self.character(handle) {
            Some(c) => c.inventory.check_use(slot, tick, &self.services.items),
            None => return,
        };
        let (_, rule) = match checked {
            Ok(v) => v,
            Err(reason) => return self.refuse(handle, request, reason),
        };
        let effect = ConsumableEffect {
            hp: f64::from(rule.hp),
            mp: f64::from(rule.mp),
            cooldown_ms: rule.cooldown_ms,
        };
        match self.shard.use_consumable(client, effect) {
            Ok(()) => {
                let cooldown = formula::ms_to_ticks(rule.cooldown_ms, self.tick_hz);
                if let Some(c) = self.character_mut(handle) {
                    c.inventory.consume(slot, tick, cooldown);
                }
                bump(&self.services.counters.items_used_total);
                self.send_inventory(handle);
            }
            Err(ActionRefusal::OnCooldown) => {
                self.refuse(handle, request, RefusalReason::ItemCooldown)
            }
            Err(_) => self.refuse(handle, request, RefusalReason::CannotActNow),
        }
    }

    /// Drops items at the player's feet: the Item entity is spawned first
    /// and the items leave the bag only if it was, on this core's thread,
    /// so they are in exactly one place. The dropper owns the item for the
    /// loot owner window.
    fn drop_item(&mut self, handle: ConnectionHandle, client: ClientId, slot: u8, count: u16) {
        let request = client_type::DROP_ITEM;
        let checked = match self.character(handle) {
            Some(c) => c.inventory.check_take(slot, count),
            None => return,
        };
        let template = match checked {
            Ok(t) => t,
            Err(reason) => return self.refuse(handle, request, reason),
        };
        let Some(at) = self
            .shard
            .player_of(client)
            .and_then(|net| self.shard.entity(net))
            .map(|e| e.record.position)
        else {
            return;
        };
        match self.shard.spawn_item(at, template, count, Some(client)) {
            Ok(_) => {
                if let Some(c) = self.character_mut(handle) {
                    c.inventory.take(slot, count);
                }
                bump(&self.services.counters.items_dropped_total);
                self.send_inventory(handle);
            }
            // The player stands on another core's ground (it is being
            // handed over) or the shard is full: nothing was dropped.
            Err(_) => self.refuse(handle, request, RefusalReason::CannotActNow),
        }
    }

    fn equip(&mut self, handle: ConnectionHandle, client: ClientId, slot: u8, equip: u8) {
        let book = Arc::clone(&self.services.items);
        let Some(c) = self.character_mut(handle) else {
            return;
        };
        if let Err(reason) = c.inventory.equip(slot, equip, &book) {
            return self.refuse(handle, client_type::EQUIP, reason);
        }
        self.equipment_changed(handle, client);
    }

    fn unequip(&mut self, handle: ConnectionHandle, client: ClientId, equip: u8) {
        let Some(c) = self.character_mut(handle) else {
            return;
        };
        if let Err(reason) = c.inventory.unequip(equip) {
            return self.refuse(handle, client_type::UNEQUIP, reason);
        }
        self.equipment_changed(handle, client);
    }

    fn equipment_changed(&mut self, handle: ConnectionHandle, client: ClientId) {
        bump(&self.services.counters.equipment_changes_total);
        self.apply_gear(handle, client);
        self.send_inventory(handle);
        self.send_stats(handle, client, stats_cause::EQUIPMENT);
    }

    /// Hands the sum of the worn items' bonuses to the shard.
    fn apply_gear(&mut self, handle: ConnectionHandle, client: ClientId) {
        let Some(c) = self.character(handle) else {
            return;
        };
        let gear = c.inventory.gear(&self.services.items);
        if self.shard.set_gear(client, gear).is_err() {
            bump(&self.services.counters.shard_refused_total);
        }
    }

    /// Queues the client's whole inventory.
    pub(super) fn send_inventory(&mut self, handle: ConnectionHandle) {
        let Some(Session::InGame(g)) = self.sessions.get(&handle).map(|s| &s.session) else {
            return;
        };
        let inv = &g.character.inventory;
        let b = &mut self.play;
        b.items.clear();
        b.items.extend(inv.items());
        b.worn.clear();
        b.worn.extend(inv.equipped());
        let weight = inv.weight(&self.services.items);
        let start = self.arena.len();
        self.arena.resize(start + MESSAGE_MAX, 0);
        let mut w = Writer::new(&mut self.arena[start..]);
        let len = match encode_inventory(
            &mut w,
            inv.capacity(),
            weight,
            inv.weight_limit(),
            &b.items,
            &b.worn,
        ) {
            Ok(()) => w.position(),
            Err(_) => 0,
        };
        self.arena.truncate(start + len);
        if len == 0 {
            tracing::error!("an inventory did not encode");
            return;
        }
        self.queue.push_back(Queued::Message {
            handle,
            channel: Channel::ReliableOrdered,
            start,
            len,
        });
    }

    /// The character's statistics as the shard has them now.
    fn stats_of(&self, client: ClientId, cause: u8) -> Option<CharacterStats> {
        let info = self.shard.entity(self.shard.player_of(client)?)?;
        let r = &info.record;
        let level = r.progress.level;
        let data = &self.services.data;
        let exp_next = if level >= data.max_level() {
            0
        } else {
            data.exp_for_level(level + 1).unwrap_or(0)
        };
        let (base, gear) = (&r.fighter.base, &r.fighter.gear);
        Some(CharacterStats {
            cause,
            level,
            exp: r.progress.exp,
            exp_next,
            hp_max: r.hp[1],
            mp_max: r.mp[1],
            stats: [base.int, base.str, base.con, base.men, base.dex, base.wit],
            p_atk: formula::attack(base, level, gear, false),
            m_atk: formula::attack(base, level, gear, true),
            p_def: formula::defence(base, level, gear, false),
            m_def: formula::defence(base, level, gear, true),
        })
    }

    fn send_stats(&mut self, handle: ConnectionHandle, client: ClientId, cause: u8) {
        if let Some(s) = self.stats_of(client, cause) {
            self.reliable(handle, &ServerMessage::CharacterStats(s));
        }
    }

    // --------------------------------------------------------------
    // The tick's results
    // --------------------------------------------------------------

    /// An action result of this tick: a pick-up's verdict releases its
    /// reservation (a success also brings a Looted event, handled after).
    pub(super) fn action_settled(&mut self, client: ClientId, input_seq: u32) {
        let Some(handle) = self.handle_of(client) else {
            return;
        };
        if let Some(c) = self.character_mut(handle) {
            c.inventory.settle_pickup(input_seq);
        }
    }

    /// The shard's events of this tick, turned into inventory changes and
    /// messages.
    pub(super) fn handle_events(&mut self) {
        let mut events = std::mem::take(&mut self.play.events);
        events.clear();
        events.extend(self.shard.take_events());
        for &e in &events {
            match e {
                ShardEvent::Looted {
                    client,
                    item,
                    count,
                } => self.looted(client, item, count),
                ShardEvent::Experience { client, .. } => {
                    if let Some(h) = self.handle_of(client) {
                        self.send_stats(h, client, stats_cause::EXPERIENCE);
                    }
                }
                ShardEvent::LevelUp { client, .. } => {
                    bump(&self.services.counters.level_ups_total);
                    if let Some(h) = self.handle_of(client) {
                        self.send_stats(h, client, stats_cause::LEVEL_UP);
                    }
                }
                ShardEvent::Combat {
                    client,
                    source,
                    target,
                    skill,
                    amount,
                    flags,
                } => {
                    if let Some(h) = self.handle_of(client) {
                        let msg = ServerMessage::CombatEvent {
                            source,
                            target,
                            skill,
                            amount,
                            flags: flags.bits() & combat_flags::ALL,
                        };
                        self.reliable(h, &msg);
                    }
                }
                ShardEvent::Died { .. } => bump(&self.services.counters.deaths_total),
            }
        }
        self.play.events = events;
    }

    fn looted(&mut self, client: ClientId, item: u16, count: u16) {
        let Some(handle) = self.handle_of(client) else {
            // Only a bug gets here: the shard looted for a player this
            // core does not hold.
            tracing::error!(client = client.0, item, count, "loot for an unknown player");
            bump(&self.services.counters.items_lost_total);
            return;
        };
        let book = Arc::clone(&self.services.items);
        let Some(c) = self.character_mut(handle) else {
            return;
        };
        let left = c.inventory.add(item, count, &book);
        bump(&self.services.counters.items_looted_total);
        if left > 0 {
            // Room was reserved before the pick-up; only a client that
            // reused a pick-up's input sequence can get here.
            tracing::warn!(client = client.0, item, left, "looted items found no room");
            self.services
                .counters
                .items_lost_total
                .fetch_add(u64::from(left), std::sync::atomic::Ordering::Relaxed);
        }
        self.send_inventory(handle);
    }

    // --------------------------------------------------------------
    // Chat
    // --------------------------------------------------------------

    fn chat(
        &mut self,
        now: Instant,
        handle: ConnectionHandle,
        client: ClientId,
        channel: ChatChannel,
        target: &str,
        text: &str,
    ) {
        let request = client_type::CHAT;
        if let Err(reason) = chat::check_text(text) {
            return self.refuse(handle, request, reason);
        }
        let cost = if channel == ChatChannel::Shout {
            SHOUT_COST
        } else {
            1.0
        };
        let Some(c) = self.character_mut(handle) else {
            return;
        };
        if !c.chat.allow(now, cost) {
            return self.refuse(handle, request, RefusalReason::ChatFlood);
        }
        let from = c.name.clone();
        let audience = match channel {
            ChatChannel::Say => {
                let Some(p) = self
                    .shard
                    .player_of(client)
                    .and_then(|net| self.shard.entity(net))
                    .map(|e| e.record.position)
                else {
                    return;
                };
                Audience::Near(p)
            }
            ChatChannel::Shout => Audience::Everyone,
            ChatChannel::Whisper => {
                let Some(entry) = self.services.registry.find_by_name(target) else {
                    return self.whisper_elsewhere(handle, request, from, target, text);
                };
                let line = ChatLine {
                    channel,
                    from,
                    text: text.to_string(),
                    audience: Audience::Character(entry.character_id),
                    forwards: 0,
                };
                self.send_line(entry.core, line);
                bump(&self.services.counters.whispers_total);
                let echo = ServerMessage::ChatMessage {
                    channel: ChatChannel::WhisperSent,
                    from: &entry.name,
                    text,
                };
                return self.reliable(handle, &echo);
            }
            ChatChannel::WhisperSent => {
                return self.refuse(handle, request, RefusalReason::Malformed);
            }
        };
        bump(&self.services.counters.chat_lines_total);
        let line = ChatLine {
            channel,
            from,
            text: text.to_string(),
            audience,
            forwards: 0,
        };
        // Say and shout: here, and on every other core (a say is heard
        // across a core border; each core asks its own shard who is near).
        self.deliver_chat(&line);
        for core in 0..self.shard.world().cores() {
            if core != self.core {
                self.output(Output::ToCore {
                    core,
                    msg: PeerMessage::Chat(Box::new(line.clone())),
                    connection: None,
                });
            }
        }
        self.chat_to_other_nodes(&line);
    }

    /// On a cluster node: a shout goes to every other node, and a say to
    /// them when another node's ground lies within its radius (their
    /// cores each pick their listeners). Lost, and counted, while the
    /// cluster thread's queue is full; NATS down loses it in the link.
    fn chat_to_other_nodes(&mut self, line: &ChatLine) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let near = match line.audience {
            Audience::Everyone => None,
            Audience::Near(p) if self.shard.near_foreign(p, SAY_RADIUS) => {
                Some(p.map(|v| v.round() as i32))
            }
            _ => return,
        };
        let command = crate::cluster::ClusterCommand {
            request: 0,
            core: self.core,
            op: crate::cluster::ClusterOp::Chat {
                from: line.from.clone(),
                text: line.text.clone(),
                near,
            },
        };
        let counter = if cluster.view.send(command) {
            &self.services.counters.chat_to_nodes_total
        } else {
            &self.services.counters.cluster_busy_total
        };
        bump(counter);
    }

    /// Another node's shout or say (`near`: where it was said): delivered
    /// to this core's listeners. The text is checked again: another
    /// node's build may allow what this one's clients must not get.
    pub(super) fn chat_from_node(&mut self, from: String, text: String, near: Option<[i32; 3]>) {
        if chat::check_text(&text).is_err() || from.len() > tos_protocol::wire::game::MAX_NAME_LEN {
            bump(&self.services.counters.chat_undelivered_total);
            return;
        }
        let (channel, audience) = match near {
            Some(p) => (ChatChannel::Say, Audience::Near(p.map(|v| v as f32))),
            None => (ChatChannel::Shout, Audience::Everyone),
        };
        self.deliver_chat(&ChatLine {
            channel,
            from,
            text,
            audience,
            forwards: 0,
        });
    }

    /// A whisper to nobody online in this process: on a cluster node the
    /// cluster thread looks the name up in the directory and sends the
    /// line to the recipient's node; alone, nobody has that name.
    fn whisper_elsewhere(
        &mut self,
        handle: ConnectionHandle,
        request: u8,
        from: String,
        to: &str,
        text: &str,
    ) {
        if self.cluster.is_none() {
            return self.refuse(handle, request, RefusalReason::NoSuchPlayer);
        }
        let op = crate::cluster::ClusterOp::Whisper {
            from,
            to: to.to_owned(),
            text: text.to_owned(),
        };
        let pending = Pending::Whisper {
            handle,
            request,
            to: to.to_owned(),
            text: text.to_owned(),
        };
        if self.submit_cluster(op, pending).is_err() {
            self.refuse(handle, request, RefusalReason::ServerBusy);
        }
    }

    /// Delivers a whisper here, or sends it to the core that holds its
    /// recipient.
    fn send_line(&mut self, core: u16, line: ChatLine) {
        if core == self.core {
            self.chat_arrived(line);
        } else {
            self.output(Output::ToCore {
                core,
                msg: PeerMessage::Chat(Box::new(line)),
                connection: None,
            });
        }
    }

    /// A chat line for this core's players (from here or another core). A
    /// whisper whose recipient moved on is forwarded to its new core (at
    /// most [`MAX_FORWARDS`] times); one whose recipient left is dropped.
    pub(super) fn chat_arrived(&mut self, mut line: ChatLine) {
        if self.deliver_chat(&line) > 0 {
            return;
        }
        if let Audience::Character(id) = line.audience {
            let core = self.services.registry.core_of(id);
            match core {
                Some(core) if core != self.core && line.forwards < MAX_FORWARDS => {
                    line.forwards += 1;
                    self.send_line(core, line);
                }
                _ => bump(&self.services.counters.chat_undelivered_total),
            }
        }
    }

    /// Sends a line to its listeners on this core; returns how many.
    fn deliver_chat(&mut self, line: &ChatLine) -> usize {
        let msg = ServerMessage::ChatMessage {
            channel: line.channel,
            from: &line.from,
            text: &line.text,
        };
        let mut n = 0;
        match line.audience {
            Audience::Near(p) => {
                let mut listeners = std::mem::take(&mut self.play.listeners);
                self.shard.clients_within(p, SAY_RADIUS, &mut listeners);
                for &c in &listeners {
                    if let Some(h) = self.handle_of(c) {
                        self.reliable(h, &msg);
                        n += 1;
                    }
                }
                self.play.listeners = listeners;
            }
            Audience::Everyone => {
                for i in 0..self.in_world.len() {
                    let (_, h) = self.in_world[i];
                    self.reliable(h, &msg);
                    n += 1;
                }
            }
            Audience::Character(id) => {
                let to = self
                    .in_world
                    .iter()
                    .find_map(|&(_, h)| self.character(h).filter(|c| c.id == id).map(|_| h));
                if let Some(h) = to {
                    self.reliable(h, &msg);
                    n += 1;
                }
            }
        }
        n
    }
}
