//! The cluster side of [`GameCore`]: players crossing onto another node's
//! ground and players arriving from another node.
//!
//! ```text
//! sender core                          cluster (NATS)              receiver node
//! shard: valid claim across the line
//!   -> BorderCrossing, player frozen
//! HandOff{record, lease} ------------> offer ---------------------> decode, check ground
//!                                                                   take the lease (CAS)
//!                                      <-------------------------- ack; arrival saved,
//!                                                                   kept under the ticket
//! Delivered: ZoneTransfer{address,
//!   key, ticket} to the client; the
//!   player leaves unsaved; the old
//!   connection closes a little later
//!                          client: Connect(ticket) -------------> ClaimArrival(once)
//!                                                                  enter: WorldEntered,
//!                                                                  snapshots
//! Kept: unfrozen, corrected back
//! ```
//!
//! A character entering the world here whose saved position is another
//! node's ground takes the same road without ever being in this shard:
//! its lease is taken here, its loaded record handed over, and the client
//! (still entering) gets the ZoneTransfer.
//!
//! Exactly one node runs the character at any time: the lease moves by
//! compare-and-swap (tos-cluster's link settles a lost acknowledgement
//! through the directory). While the outcome is unknown the sender keeps
//! the player frozen and unsaved; an arrival whose client never comes is
//! saved where it crossed and its lease given back
//! ([`ClusterReply::Unclaimed`](crate::cluster::ClusterReply::Unclaimed)).

use super::*;

use std::collections::HashSet;

use tos_protocol::wire::control::DisconnectReason;
use tos_shards::BorderCrossing;
use tos_shards::util::tick_after;

use crate::cluster::{ClusterCommand, ClusterOp, CrossingOutcome, LeaseAnswer};
use crate::transfer::{TransferRecord, TransferSecret};

/// How long the old connection stays open after its ZoneTransfer, so the
/// reliable message gets through; clients close it themselves sooner.
const CLOSE_AFTER_SECS: u32 = 5;

/// How long an accepted transfer connection may take to complete its
/// handshake before its player is saved and released.
const ARRIVAL_HANDSHAKE_SECS: u32 = 10;

/// One core's zone-transfer state.
#[derive(Debug, Default)]
pub(super) struct Zone {
    /// Players frozen while their hand-off is decided (no moves, no saves).
    frozen: HashSet<ClientId>,
    /// Connections that closed while their player was frozen: finished
    /// when the outcome arrives.
    closed: HashSet<ConnectionHandle>,
    /// Connections accepted with a transfer ticket, waiting for their
    /// handshake to complete, with the tick they were accepted at: one
    /// whose handshake never completes (or which closed before the accept
    /// reached it) is given up after [`ARRIVAL_HANDSHAKE_SECS`].
    arriving: HashMap<ConnectionHandle, (u32, Box<TransferRecord>)>,
    /// Old connections of players sent to another node: closed at this
    /// tick (in order of the tick).
    closing: VecDeque<(u32, ConnectionHandle)>,
    /// NPCs handed to other nodes whose outcome has not come yet.
    pub(super) npcs_in_flight: usize,
}

impl GameCore {
    /// Before the shard's tick: the borders are open while NATS answers
    /// (a crossing can then be carried), closed like walls otherwise.
    pub(super) fn open_borders(&mut self) {
        let open = self.cluster.as_ref().is_some_and(|c| c.view.is_up());
        self.shard.set_crossings_open(open);
    }

    /// Whether a player or an NPC of this core waits for its hand-off's
    /// outcome (the engine waits for it on shutdown: kept, the player is
    /// saved here; delivered, it is the other node's).
    pub fn crossings_pending(&self) -> bool {
        !self.zone.frozen.is_empty() || self.zone.npcs_in_flight > 0
    }

    pub(super) fn is_frozen(&self, client: ClientId) -> bool {
        self.zone.frozen.contains(&client)
    }

    /// After the shard's tick: every reported crossing is offered to the
    /// node that owns the ground; the old connections of players sent
    /// away are closed when their time comes.
    pub(super) fn zone_tick(&mut self) {
        for i in 0..self.shard.border_crossings().len() {
            let c = self.shard.border_crossings()[i];
            self.start_crossing(c);
        }
        if !self.zone.arriving.is_empty() {
            let limit = ARRIVAL_HANDSHAKE_SECS * self.tick_hz;
            let now = self.tick;
            let stale: Vec<ConnectionHandle> = self
                .zone
                .arriving
                .iter()
                .filter(|(_, (at, _))| now.wrapping_sub(*at) > limit)
                .map(|(h, _)| *h)
                .collect();
            for handle in stale {
                if let Some((_, record)) = self.zone.arriving.remove(&handle) {
                    self.unclaimed(*record);
                }
            }
        }
        while let Some(&(at, handle)) = self.zone.closing.front() {
            if tick_after(at, self.tick) {
                break;
            }
            self.zone.closing.pop_front();
            self.sessions.remove(&handle);
            self.output(Output::Close {
                handle,
                reason: DisconnectReason::Graceful,
            });
        }
    }

    fn start_crossing(&mut self, c: BorderCrossing) {
        let (Some(cluster), Some(handle)) = (self.cluster.as_ref(), self.handle_of(c.client))
        else {
            return self.keep(c.client);
        };
        let quadrant = self.shard.world().quadrant_of(c.position);
        let to = cluster
            .view
            .owner_index(quadrant)
            .filter(|&n| n != cluster.view.me);
        let Some(to) = to else {
            // No node owns that ground (outside every node's quadrants):
            // nothing to cross to.
            return self.keep(c.client);
        };
        let Some(Session::InGame(g)) = self.sessions.get(&handle).map(|s| &s.session) else {
            return self.keep(c.client);
        };
        let Some(net) = self.shard.player_of(c.client) else {
            return self.keep(c.client);
        };
        let Some(mut state) = persist::state_in(&self.shard, net, &g.character) else {
            return self.keep(c.client);
        };
        state.position = c.position;
        state.yaw = c.yaw;
        let secret = TransferSecret::random();
        let record = TransferRecord {
            secret,
            account: g.account.clone(),
            name: g.character.name.clone(),
            template: g.character.template,
            faction: g.character.faction,
            state,
            combat: self.shard.carried_combat(c.client).unwrap_or_default(),
            item_cooldowns: g
                .character
                .inventory
                .carried_cooldowns(self.tick, self.tick_hz),
            ghost_id: net,
        };
        let Some(request) = self.hand_off(&record, to) else {
            return self.keep(c.client);
        };
        self.zone.frozen.insert(c.client);
        bump(&self.services.counters.zone_crossings_total);
        self.pending.insert(
            request,
            Pending::Crossing {
                handle,
                client: c.client,
                secret,
                to,
            },
        );
    }

    /// Encodes `record` and asks the cluster thread to hand it to node
    /// `to`: the request number, or `None` when it could not be asked
    /// (logged, counted).
    fn hand_off(&mut self, record: &TransferRecord, to: usize) -> Option<u64> {
        let character = record.character();
        let payload = match record.encode() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(character, error = %e, "a transfer record could not be encoded");
                return None;
            }
        };
        let request = self.next_request;
        let command = ClusterCommand {
            request,
            core: self.core,
            op: ClusterOp::HandOff {
                to,
                character,
                payload,
            },
        };
        if !self.cluster.as_ref().is_some_and(|c| c.view.send(command)) {
            bump(&self.services.counters.cluster_busy_total);
            return None;
        }
        self.next_request += 1;
        Some(request)
    }

    /// A crossing that does not happen: the player is unfrozen and
    /// corrected back to its side.
    fn keep(&mut self, client: ClientId) {
        self.zone.frozen.remove(&client);
        bump(&self.services.counters.cluster_border_held_total);
        if self.shard.end_crossing(client).is_err() {
            bump(&self.services.counters.shard_refused_total);
        }
    }

    /// The outcome of a hand-off this core asked for.
    pub(super) fn on_crossing(
        &mut self,
        handle: ConnectionHandle,
        client: ClientId,
        secret: TransferSecret,
        to: usize,
        outcome: CrossingOutcome,
    ) {
        self.zone.frozen.remove(&client);
        let closed = self.zone.closed.remove(&handle);
        match outcome {
            CrossingOutcome::Delivered => {
                bump(&self.services.counters.zone_transfers_out_total);
                let Some(slot) = self.sessions.get_mut(&handle) else {
                    return;
                };
                let Session::InGame(g) = std::mem::replace(&mut slot.session, Session::Closing)
                else {
                    return;
                };
                // The other node runs the character now: no save here, and
                // the lease is not ours to release.
                self.drop_player(client, handle);
                self.services.registry.release(g.character.id);
                if closed {
                    self.sessions.remove(&handle);
                    return;
                }
                tracing::debug!(
                    character = g.character.id,
                    to,
                    "player sent to another node"
                );
                self.send_away(handle, secret, to);
            }
            CrossingOutcome::Kept(why) => {
                bump(&self.services.counters.zone_crossings_kept_total);
                tracing::info!(client = client.0, why = %why, "a crossing was refused; the player stays");
                if closed {
                    // The client left while the hand-off was decided: it
                    // leaves from here as usual (saved, lease released).
                    if let Some(mut slot) = self.sessions.remove(&handle) {
                        if let Session::InGame(g) =
                            std::mem::replace(&mut slot.session, Session::Closing)
                        {
                            self.leave_world(&g, handle);
                        }
                    }
                    return;
                }
                if self.shard.end_crossing(client).is_err() {
                    bump(&self.services.counters.shard_refused_total);
                }
            }
            CrossingOutcome::Superseded => {
                // A third node holds the lease: its state is the one that
                // counts; stop the player here unsaved.
                let character = self.in_game_character(handle);
                self.drop_player(client, handle);
                self.sessions.remove(&handle);
                if let Some(character) = character {
                    self.services.registry.release(character);
                }
                bump(&self.services.counters.cluster_leases_lost_total);
                if !closed {
                    self.output(Output::Close {
                        handle,
                        reason: DisconnectReason::Kicked,
                    });
                }
            }
        }
    }

    /// Takes a player out of the shard and the core's lists, unsaved.
    fn drop_player(&mut self, client: ClientId, handle: ConnectionHandle) {
        if self.shard.remove_player(client).is_err() {
            bump(&self.services.counters.shard_refused_total);
        }
        self.in_world.retain(|&(c, h)| c != client && h != handle);
        self.by_client.remove(&client);
    }

    /// A connection closed: a frozen player waits for its hand-off's
    /// outcome, an arrival that never entered is saved and released.
    /// True when handled here.
    pub(super) fn zone_closed(&mut self, handle: ConnectionHandle) -> bool {
        if let Some((_, record)) = self.zone.arriving.remove(&handle) {
            self.unclaimed(*record);
            return true;
        }
        if let Some(pos) = self.zone.closing.iter().position(|&(_, h)| h == handle) {
            // Sent away and closed by the client: nothing is left here.
            self.zone.closing.remove(pos);
            self.sessions.remove(&handle);
            return true;
        }
        let frozen = match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => self.zone.frozen.contains(&g.client),
            _ => false,
        };
        if frozen {
            self.zone.closed.insert(handle);
        }
        frozen
    }

    /// A Connect carried a transfer ticket: the cluster thread is asked
    /// for the arrival it names.
    pub(super) fn check_transfer_ticket(&mut self, handle: ConnectionHandle, ticket: &[u8]) {
        let secret = TransferSecret::from_ticket(ticket);
        let (Some(secret), true) = (secret, self.cluster.is_some()) else {
            return self.arrival_refused(handle);
        };
        if self
            .submit_cluster(
                ClusterOp::ClaimArrival { secret },
                Pending::Arrival { handle },
            )
            .is_err()
        {
            self.output(Output::Refuse {
                handle,
                reason: DenyReason::Busy,
            });
        }
    }

    fn arrival_refused(&mut self, handle: ConnectionHandle) {
        bump(&self.services.counters.zone_tickets_rejected_total);
        bump(&self.services.counters.tickets_rejected_total);
        self.output(Output::Refuse {
            handle,
            reason: DenyReason::TicketRejected,
        });
    }

    /// The cluster thread's answer to a transfer ticket.
    pub(super) fn on_arrival(
        &mut self,
        handle: ConnectionHandle,
        arrival: Option<Box<TransferRecord>>,
    ) {
        match arrival {
            Some(record) => {
                self.zone.arriving.insert(handle, (self.tick, record));
                self.output(Output::Accept { handle });
            }
            None => self.arrival_refused(handle),
        }
    }

    /// The handshake of a transfer connection completed: the character
    /// enters at once (this node holds its lease since the hand-off).
    /// False when the connection is not an arrival.
    pub(super) fn arrive(&mut self, handle: ConnectionHandle) -> bool {
        let Some((_, record)) = self.zone.arriving.remove(&handle) else {
            return false;
        };
        let TransferRecord {
            account,
            name,
            template,
            faction,
            state,
            combat,
            item_cooldowns,
            ghost_id,
            ..
        } = *record;
        let character_id = state.id.0;
        // Its state at the crossing was saved when the lease moved here
        // (`ClusterReply::Arrived`).
        let claimed = self.services.registry.claim(OnlineEntry {
            character_id,
            name: name.clone(),
            account_id: account.id,
            core: self.core,
        });
        if !claimed {
            // Only a bug gets here (the lease says nobody else runs it).
            tracing::error!(character_id, "an arriving character is already online here");
            self.release_character(character_id);
            self.output(Output::Close {
                handle,
                reason: DisconnectReason::Kicked,
            });
            return true;
        }
        bump(&self.services.counters.zone_transfers_in_total);
        let mut character = self.playing(name, template, faction, state);
        character
            .inventory
            .restore_cooldowns(&item_cooldowns, self.tick, self.tick_hz);
        self.place(handle, SessionTransfer { account, character });
        // Its buffs and cooldowns go on with it (a crossing resets neither).
        let client = match self.sessions.get(&handle).map(|s| &s.session) {
            Some(Session::InGame(g)) => Some(g.client),
            _ => None,
        };
        if let Some(client) = client {
            let _ = self.shard.restore_combat(client, &combat);
        }
        // Seen once: its ghost from the node it left goes now.
        if ghost_id != 0 {
            self.shard.forget_crossed_ghost(ghost_id);
        }
        true
    }

    /// A player handed over to this node that will not enter: saved where
    /// it crossed, its lease given back.
    pub(super) fn unclaimed(&mut self, record: TransferRecord) {
        bump(&self.services.counters.zone_arrivals_unclaimed_total);
        let character = record.character();
        tracing::info!(
            character,
            "a transferred player never arrived: saved where it crossed"
        );
        self.save_now(record.state);
        self.release_character(character);
    }
}

impl GameCore {
    /// A character entering whose saved position is node `to`'s ground:
    /// its lease is taken here first (the hand-off moves a held lease).
    pub(super) fn redirect(
        &mut self,
        handle: ConnectionHandle,
        account: AccountRef,
        record: &CharacterRecord,
        to: usize,
    ) {
        if self.cluster.is_none() {
            return self.enter_failed(handle, RefusalReason::EnterFailed);
        }
        let transfer = TransferRecord {
            secret: TransferSecret::random(),
            account,
            name: record.name.clone(),
            template: record.template,
            faction: record.faction,
            state: record.state(),
            // Logging in: nothing was running.
            combat: Default::default(),
            item_cooldowns: Vec::new(),
            ghost_id: 0,
        };
        let op = ClusterOp::Acquire {
            character: record.id.0,
            name: record.name.clone(),
        };
        let pending = Pending::Redirect {
            handle,
            record: Box::new(transfer),
            to,
        };
        if self.submit_cluster(op, pending).is_err() {
            self.enter_failed(handle, RefusalReason::ServerBusy);
        }
    }

    fn is_entering(&self, handle: ConnectionHandle) -> bool {
        matches!(
            self.sessions.get(&handle).map(|s| &s.session),
            Some(Session::Entering(_))
        )
    }

    /// The lease of a character being sent to another node at login.
    pub(super) fn on_redirect_lease(
        &mut self,
        handle: ConnectionHandle,
        record: &TransferRecord,
        to: usize,
        lease: LeaseAnswer,
    ) {
        let character = record.character();
        let entering = self.is_entering(handle);
        match lease {
            LeaseAnswer::Taken if entering => {
                let Some(request) = self.hand_off(record, to) else {
                    self.release_character(character);
                    return self.enter_failed(handle, RefusalReason::ServerBusy);
                };
                self.pending.insert(
                    request,
                    Pending::Redirecting {
                        handle,
                        secret: record.secret,
                        to,
                        character,
                    },
                );
            }
            // The client left meanwhile: give the lease back.
            LeaseAnswer::Taken => self.release_character(character),
            LeaseAnswer::HeldBy(node) => {
                tracing::info!(character, node = %node, "refused: the character is live on another node");
                self.enter_failed(handle, RefusalReason::CharacterInUse);
            }
            LeaseAnswer::Unavailable => {
                bump(&self.services.counters.cluster_unavailable_total);
                self.enter_failed(handle, RefusalReason::ServerBusy);
            }
        }
    }

    /// How the hand-off of a character sent away at login ended.
    pub(super) fn on_redirected(
        &mut self,
        handle: ConnectionHandle,
        secret: TransferSecret,
        to: usize,
        character: u64,
        outcome: CrossingOutcome,
    ) {
        let entering = self.is_entering(handle);
        match outcome {
            CrossingOutcome::Delivered => {
                bump(&self.services.counters.zone_transfers_out_total);
                // A client that left meanwhile: the other node saves the
                // character when its ticket expires.
                if entering {
                    self.send_away(handle, secret, to);
                }
            }
            CrossingOutcome::Kept(why) => {
                tracing::info!(character, why = %why, "the node of a character's ground did not take it");
                self.release_character(character);
                if entering {
                    self.enter_failed(handle, RefusalReason::EnterFailed);
                }
            }
            CrossingOutcome::Superseded => {
                if entering {
                    self.enter_failed(handle, RefusalReason::CharacterInUse);
                }
            }
        }
    }

    /// Tells the client where its character went and closes its
    /// connection here a little later.
    fn send_away(&mut self, handle: ConnectionHandle, secret: TransferSecret, to: usize) {
        let node = self
            .cluster
            .as_ref()
            .and_then(|c| c.view.nodes.get(to).cloned());
        let Some(node) = node else {
            return;
        };
        if let Some(slot) = self.sessions.get_mut(&handle) {
            slot.session = Session::Closing;
        }
        let ticket = secret.ticket();
        self.reliable(
            handle,
            &ServerMessage::ZoneTransfer {
                address: &node.address,
                static_key: node.static_key,
                ticket: &ticket,
            },
        );
        let at = self.tick.wrapping_add(CLOSE_AFTER_SECS * self.tick_hz);
        self.zone.closing.push_back((at, handle));
    }
}
