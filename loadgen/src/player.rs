//! One simulated player: a client of the client SDK (`tos_client::Session`:
//! login, characters, entering, claims, snapshots) plus a little game
//! behaviour (walk between waypoints or converge on a battle, movement
//! claims at the input rate, occasional reliable actions) and the
//! measurements it takes. Echo mode, which measures the protocol path
//! alone, drives a bare connection instead. In a cluster run players walk
//! back and forth across the border between two nodes, and each crossing
//! is a zone transfer the SDK follows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tos_client::{Session, SessionError, SessionEvent};
use tos_protocol::connection::{Connection, Event, Transmit};
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::DisconnectReason;
use tos_protocol::wire::game::FullEntityState;
use tos_protocol::wire::game::{RefusalReason, client_type};

use crate::play::{Feet, Play};
use crate::report::Recorder;

/// How a player behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Walks between random waypoints.
    Wanderer,
    /// Walks to the battle hotspot and stays around it.
    Fighter,
    /// Claims impossible moves (speed hacks) and sends garbage.
    Cheater,
    /// Walks back and forth across the border between two nodes of a
    /// cluster (`--cluster`), 30 to 60 m past it each way.
    Crosser,
}

/// What the load asks players to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Enter the world and play.
    World,
    /// Send probes the server echoes back (server in echo mode).
    Echo,
}

/// Per-player input history for latency: send time by input sequence.
const HISTORY: usize = 512;

/// A player's link to the server: a game session (world mode) or a bare
/// connection carrying echo probes.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "every player of a run is in the same mode, and players live inline in the worker's slots: boxing would add a pointer chase per datagram for nothing"
)]
pub(crate) enum Link {
    /// The SDK's session.
    World(Session),
    /// A bare connection (the server echoes what it gets).
    Echo(Connection),
}

impl Link {
    /// The connection underneath.
    pub(crate) fn connection(&self) -> &Connection {
        match self {
            Self::World(s) => s.connection(),
            Self::Echo(c) => c,
        }
    }

    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &mut [u8]) {
        match self {
            Self::World(s) => s.handle_datagram(now, from, data),
            Self::Echo(c) => c.handle_datagram(now, from, data),
        }
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        match self {
            // The session's: its connection's, an old connection's closing
            // and a zone transfer's deadline.
            Self::World(s) => s.next_timeout(),
            Self::Echo(c) => c.next_timeout(),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::World(s) => s.handle_timeout(now),
            Self::Echo(c) => c.handle_timeout(now),
        }
    }

    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        match self {
            Self::World(s) => s.poll_transmit(now, buf),
            Self::Echo(c) => c.poll_transmit(now, buf),
        }
    }

    pub(crate) fn close(&mut self, now: Instant) {
        match self {
            Self::World(s) => s.close(now),
            Self::Echo(c) => c.close(now, DisconnectReason::Graceful),
        }
    }
}

/// A simulated player.
pub(crate) struct Player {
    pub(crate) link: Link,
    pub(crate) key: u32,
    pub(crate) socket: usize,
    behaviour: Behaviour,
    started: Instant,
    connected_at: Option<Instant>,
    authenticated_at: Option<Instant>,
    entity: Option<u32>,
    /// Where an earlier run left this player's character, if remembered.
    remembered: Option<[f32; 3]>,
    /// Echo probes' sequence (world mode uses the session's).
    probe_seq: u32,
    sent_at: Box<[(u32, Option<Instant>); HISTORY]>,
    last_acked_input: u32,
    position: [f32; 3],
    waypoint: [f32; 3],
    next_input: Instant,
    input_period: Duration,
    /// The workspace's one seeded generator.
    rng: tos_protocol::rng::SplitMix64,
    /// Hunting, looting and chatting (world mode).
    play: Option<Play>,
    /// The border a crosser walks across (x, world units).
    border_x: Option<f32>,
    /// The last connection ids routed to this player, oldest replaced
    /// first (a zone transfer brings new ones).
    keys: [Option<u32>; KEYS_ROUTED],
    next_key: usize,
    /// Its character stands on another node's ground: the worker sends it
    /// to the next node of the cluster.
    pub(crate) wants_other_node: bool,
    /// Nodes tried after the first.
    pub(crate) nodes_tried: usize,
    pub(crate) done: bool,
}

/// Connection ids routed to one player at most: the current connection's
/// (the first Connect's and the server's) and a closing one's.
const KEYS_ROUTED: usize = 4;

/// How far past the border a crosser walks each way, units (30 to 60 m).
const CROSS_MIN: f32 = 3_000.0;
const CROSS_MAX: f32 = 6_000.0;

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("key", &self.key)
            .field("behaviour", &self.behaviour)
            .finish_non_exhaustive()
    }
}

/// The battle hotspot players converge on.
pub(crate) const BATTLE_CENTRE: [f32; 3] = [1_000.0, 1_000.0, 0.0];
/// Waypoints are drawn inside this square around the origin (units).
pub(crate) const WANDER_HALF_EXTENT: f32 = 200_000.0;
/// How far from where an earlier run left it a character may be found
/// and still count as resumed in place (units: 2 m; a logout saves the
/// last accepted claim, and claims in flight may be lost).
const RESUME_TOLERANCE: f32 = 200.0;

/// Walking speed in units per second (6 m/s).
pub(crate) const WALK_SPEED: f32 = 600.0;

impl Player {
    pub(crate) fn new(
        link: Link,
        socket: usize,
        behaviour: Behaviour,
        rate_hz: u32,
        seed: u64,
        remembered: Option<[f32; 3]>,
        now: Instant,
    ) -> Self {
        let key = link.connection().connection_id();
        let mut p = Self {
            key,
            link,
            socket,
            behaviour,
            started: now,
            connected_at: None,
            authenticated_at: None,
            entity: None,
            remembered,
            probe_seq: 0,
            sent_at: Box::new([(0, None); HISTORY]),
            last_acked_input: 0,
            position: [0.0; 3],
            waypoint: [0.0; 3],
            next_input: now,
            input_period: Duration::from_secs_f64(1.0 / f64::from(rate_hz.max(1))),
            rng: tos_protocol::rng::SplitMix64::new(seed),
            play: None,
            border_x: None,
            keys: [Some(key), None, None, None],
            next_key: 1,
            wants_other_node: false,
            nodes_tried: 0,
            done: false,
        };
        p.waypoint = p.pick_waypoint();
        p
    }

    /// Makes a crosser walk across the border at `x` (world units).
    pub(crate) fn with_border(mut self, x: Option<f32>) -> Self {
        self.border_x = x;
        self
    }

    /// How it behaves.
    pub(crate) fn behaviour(&self) -> Behaviour {
        self.behaviour
    }

    /// Routes `id` to this player from now on; returns the id no longer
    /// routed to it, if one is forgotten to make room.
    pub(crate) fn remember_key(&mut self, id: u32) -> Option<u32> {
        if self.keys.contains(&Some(id)) {
            return None;
        }
        let slot = self.next_key % KEYS_ROUTED;
        self.next_key = self.next_key.wrapping_add(1);
        self.keys[slot].replace(id).filter(|&old| old != id)
    }

    /// Where this player's character is (as far as this client knows: its
    /// own claims, corrected by the server).
    pub(crate) fn position(&self) -> Option<[f32; 3]> {
        self.entity.map(|_| self.position)
    }

    /// Makes it play (hunt, loot, chat) instead of only walking.
    pub(crate) fn with_play(mut self, play: Option<Play>) -> Self {
        self.play = play;
        self
    }

    /// Its gameplay, if it plays.
    pub(crate) fn play(&self) -> Option<&Play> {
        self.play.as_ref()
    }

    fn rand(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn rand_f32(&mut self) -> f32 {
        (self.rand() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn spawn_point(&mut self) -> [f32; 3] {
        match self.behaviour {
            Behaviour::Fighter => {
                let (a, r) = (
                    self.rand_f32() * std::f32::consts::TAU,
                    self.rand_f32() * 20_000.0,
                );
                [
                    BATTLE_CENTRE[0] + r * a.cos(),
                    BATTLE_CENTRE[1] + r * a.sin(),
                    0.0,
                ]
            }
            _ => [
                (self.rand_f32() * 2.0 - 1.0) * WANDER_HALF_EXTENT,
                (self.rand_f32() * 2.0 - 1.0) * WANDER_HALF_EXTENT,
                0.0,
            ],
        }
    }

    fn pick_waypoint(&mut self) -> [f32; 3] {
        if let (Behaviour::Crosser, Some(border)) = (self.behaviour, self.border_x) {
            // The other side of the border from here, at the same y.
            let side = if self.position[0] < border { 1.0 } else { -1.0 };
            let d = CROSS_MIN + self.rand_f32() * (CROSS_MAX - CROSS_MIN);
            return [border + side * d, self.position[1], 0.0];
        }
        match self.behaviour {
            Behaviour::Fighter => {
                let (a, r) = (
                    self.rand_f32() * std::f32::consts::TAU,
                    self.rand_f32() * 5_000.0,
                );
                [
                    BATTLE_CENTRE[0] + r * a.cos(),
                    BATTLE_CENTRE[1] + r * a.sin(),
                    0.0,
                ]
            }
            _ => self.spawn_point(),
        }
    }

    /// The server's address.
    pub(crate) fn server(&self) -> SocketAddr {
        self.link.connection().remote_address()
    }

    /// Game behaviour for this moment: inputs at the configured rate.
    pub(crate) fn act(&mut self, now: Instant, rec: &mut Recorder) {
        if self.done || !self.link.connection().is_established() {
            return;
        }
        while now >= self.next_input {
            let due = self.next_input;
            self.next_input += self.input_period;
            if now.saturating_duration_since(self.next_input) > self.input_period * 4 {
                // Far behind (the machine is saturated): skip, don't burst,
                // and count what was skipped.
                let behind = now.saturating_duration_since(due).as_secs_f64();
                rec.inputs_skipped += (behind / self.input_period.as_secs_f64()) as u64;
                self.next_input = now + self.input_period;
            }
            let _ = rec
                .send_lag_us
                .record(now.saturating_duration_since(due).as_micros().max(1) as u64);
            match self.link {
                Link::Echo(_) => self.send_probe(now, rec),
                Link::World(_) if self.entity.is_some() => self.send_claim(now, rec),
                Link::World(_) => {}
            }
        }
    }

    fn remember(&mut self, seq: u32, now: Instant) {
        self.sent_at[seq as usize % HISTORY] = (seq, Some(now));
    }

    fn send_probe(&mut self, now: Instant, rec: &mut Recorder) {
        let Link::Echo(conn) = &mut self.link else {
            return;
        };
        self.probe_seq = self.probe_seq.wrapping_add(1);
        let seq = self.probe_seq;
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(&seq.to_le_bytes());
        if conn.send(Channel::Unreliable, &payload).is_ok() {
            rec.inputs_sent += 1;
            self.remember(seq, now);
        }
    }

    fn send_claim(&mut self, now: Instant, rec: &mut Recorder) {
        let dt = self.input_period.as_secs_f32();
        let speed = if self.behaviour == Behaviour::Cheater && self.rand() % 4 == 0 {
            WALK_SPEED * 20.0
        } else {
            WALK_SPEED
        };
        let r = self.rand();
        let feet = match (&mut self.play, &mut self.link) {
            (Some(play), Link::World(session)) => play.decide(now, self.position, session, r),
            _ => Feet::Free,
        };
        let goal = match feet {
            Feet::Free => self.waypoint,
            Feet::To(at) => at,
            Feet::Stand => self.position,
        };
        let to = [goal[0] - self.position[0], goal[1] - self.position[1]];
        let dist = (to[0] * to[0] + to[1] * to[1]).sqrt();
        let step = speed * dt;
        let mut velocity = [0.0f32; 3];
        let before = (self.position, self.waypoint);
        if dist <= step {
            self.position = [goal[0], goal[1], self.position[2]];
            if feet == Feet::Free {
                self.waypoint = self.pick_waypoint();
            }
        } else {
            velocity = [to[0] / dist * speed, to[1] / dist * speed, 0.0];
            self.position[0] += velocity[0] * dt;
            self.position[1] += velocity[1] * dt;
        }
        let yaw = velocity[1].atan2(velocity[0]).to_degrees();
        // Animation 1 is walking, 0 standing (PROTOCOL.md §6.2).
        let anim = u8::from(dist > step);
        // Players that do not play send a reliable action now and then
        // (1 in 120 inputs: every 2 s at 60 Hz).
        let act = self.play.is_none() && self.rand() % 120 == 0;
        let Link::World(session) = &mut self.link else {
            return;
        };
        match session.send_move(self.position, velocity, yaw, anim, dt) {
            Ok(seq) => {
                rec.inputs_sent += 1;
                self.sent_at[seq as usize % HISTORY] = (seq, Some(now));
            }
            // Between two nodes: the character stands where the old node
            // last had it, and the first claim on the new node carries on
            // from there (claims supersede each other; nothing is queued).
            Err(SessionError::Transferring) => (self.position, self.waypoint) = before,
            Err(_) => {}
        }
        if act {
            let _ = session.send_action(1, 0);
        }
    }

    /// A cheater, now and then (about once a second at 60 Hz turns), sends
    /// a garbage datagram: returns its length in `out`.
    pub(crate) fn maybe_garbage(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.behaviour != Behaviour::Cheater
            || !self.link.connection().is_established()
            || self.rand() % 60 != 0
        {
            return None;
        }
        Some(self.garbage(out))
    }

    fn garbage(&mut self, out: &mut [u8]) -> usize {
        let n = 14 + (self.rand() % 200) as usize;
        for b in &mut out[..n] {
            *b = self.rand() as u8;
        }
        // Half of it wears this player's connection id (bad tags).
        if self.rand() % 2 == 0 {
            out[..4].copy_from_slice(&self.link.connection().connection_id().to_le_bytes());
            out[4] = 0;
            out[5] = 0x03;
        }
        n
    }

    fn observe_input(&mut self, ack: u32, now: Instant, rec: &mut Recorder) {
        if ack == 0 || ack <= self.last_acked_input {
            return;
        }
        // Every input up to `ack` is now observed; measure the newest.
        self.last_acked_input = ack;
        let (seq, at) = self.sent_at[ack as usize % HISTORY];
        if seq == ack {
            if let Some(at) = at {
                rec.latency(now.saturating_duration_since(at));
            }
        }
    }

    /// Handles this player's events.
    pub(crate) fn handle_events(&mut self, now: Instant, rec: &mut Recorder) {
        match &mut self.link {
            Link::Echo(_) => self.echo_events(now, rec),
            Link::World(_) => self.world_events(now, rec),
        }
    }

    fn echo_events(&mut self, now: Instant, rec: &mut Recorder) {
        let Link::Echo(conn) = &mut self.link else {
            return;
        };
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Connected => {
                    self.connected_at = Some(now);
                    rec.handshake(now.saturating_duration_since(self.started));
                    rec.connected += 1;
                }
                Event::Message { data, .. } if data.len() >= 4 => {
                    let seq = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                    let (s, at) = self.sent_at[seq as usize % HISTORY];
                    if s == seq {
                        if let Some(at) = at {
                            rec.latency(now.saturating_duration_since(at));
                        }
                    }
                }
                Event::Disconnected { reason, .. } => {
                    rec.disconnect(reason);
                    self.done = true;
                }
                Event::Denied { .. } => {
                    rec.disconnect(DisconnectReason::Kicked);
                    rec.denied += 1;
                    self.done = true;
                }
                _ => {}
            }
        }
    }

    fn world_events(&mut self, now: Instant, rec: &mut Recorder) {
        loop {
            let Link::World(session) = &mut self.link else {
                return;
            };
            let Some(e) = session.poll_event() else {
                return;
            };
            if let Some(play) = &mut self.play {
                play.on_event(&e, session);
            }
            match e {
                // A player sent to another node connects a second time:
                // counted once.
                SessionEvent::Connected if self.connected_at.is_none() => {
                    self.connected_at = Some(now);
                    rec.handshake(now.saturating_duration_since(self.started));
                    rec.connected += 1;
                }
                SessionEvent::Connected => {}
                // A player sent to another node logs in again there with
                // its ticket: its login time is the first one's.
                SessionEvent::Authenticated { .. } if self.authenticated_at.is_some() => {}
                SessionEvent::Authenticated { .. } => {
                    self.authenticated_at = Some(now);
                    if let Some(c) = self.connected_at {
                        let us = now.saturating_duration_since(c).as_micros().max(1);
                        rec.login_us.record(us as u64).ok();
                    }
                }
                SessionEvent::CharacterCreated { .. } => rec.characters_created += 1,
                SessionEvent::EnteredWorld(e) => {
                    self.entity = Some(e.entity_id);
                    self.position = e.position;
                    self.waypoint = self.pick_waypoint();
                    if let Some(a) = self.authenticated_at {
                        let us = now.saturating_duration_since(a).as_micros().max(1);
                        rec.enter_us.record(us as u64).ok();
                    }
                    if let Some(r) = self.remembered {
                        rec.resumed_known += 1;
                        let d = ((r[0] - e.position[0]).powi(2) + (r[1] - e.position[1]).powi(2))
                            .sqrt();
                        if d <= RESUME_TOLERANCE {
                            rec.resumed_in_place += 1;
                        }
                    }
                }
                SessionEvent::Snapshot {
                    input_ack,
                    records,
                    bytes,
                    missing_baselines,
                    ..
                } => {
                    rec.snapshots += 1;
                    rec.entities_per_snapshot(u64::from(records));
                    rec.snapshot_bytes += u64::from(bytes);
                    rec.missing_baselines += u64::from(missing_baselines);
                    // What the same records would cost at full precision.
                    rec.naive_bytes +=
                        1 + 12 + u64::from(records) * (4 + FullEntityState::LEN as u64);
                    self.observe_input(input_ack, now, rec);
                }
                SessionEvent::Correction { predicted, .. } => {
                    // The server is authoritative: continue from where it
                    // says the character is, plus the claims it has not seen.
                    rec.corrections += 1;
                    self.position = predicted;
                }
                SessionEvent::Refused { reason, .. } => {
                    if let Some(c) = rec.refusals.get_mut(reason as usize) {
                        *c += 1;
                    }
                }
                SessionEvent::LoginFailed {
                    request: client_type::ENTER_TO_WORLD,
                    reason: RefusalReason::EnterFailed,
                } if self.border_x.is_some() => {
                    // In a cluster: the character stands on another
                    // node's ground (the node logs where); go there.
                    rec.sent_elsewhere += 1;
                    self.wants_other_node = true;
                }
                SessionEvent::LoginFailed { reason, .. } => {
                    if let Some(c) = rec.refusals.get_mut(reason as usize) {
                        *c += 1;
                    }
                    rec.logins_failed += 1;
                    self.done = true;
                }
                SessionEvent::ZoneTransferred { entered, gap, .. } => {
                    // A new entity on the new node, where the new node
                    // says the character stands.
                    self.entity = Some(entered.entity_id);
                    self.position = entered.position;
                    rec.zone_transfers += 1;
                    let _ = rec.transfer_gap_us.record(gap.as_micros().max(1) as u64);
                }
                SessionEvent::ZoneTransferFailed { .. } => {
                    rec.transfer_failures += 1;
                    self.done = true;
                }
                SessionEvent::ZoneTransferStarted { .. } => {}
                SessionEvent::Denied { .. } => {
                    rec.disconnect(DisconnectReason::Kicked);
                    rec.denied += 1;
                    self.done = true;
                }
                SessionEvent::Disconnected { reason, .. } => {
                    rec.disconnect(reason);
                    self.done = true;
                }
                SessionEvent::ActionResult { .. }
                | SessionEvent::Entity(_)
                | SessionEvent::Characters { .. }
                | SessionEvent::InventoryChanged { .. }
                | SessionEvent::StatsChanged { .. }
                | SessionEvent::Combat { .. }
                | SessionEvent::Chat { .. }
                | SessionEvent::Inspected { .. } => {}
            }
        }
    }

    /// Messages and snapshots that did not decode (world mode), for the
    /// final count.
    pub(crate) fn decode_errors(&self) -> u64 {
        match &self.link {
            Link::World(s) => s.stats().bad_messages + s.stats().bad_snapshots,
            Link::Echo(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_client::{LoginSpec, SessionConfig};

    fn crosser(at: [f32; 3]) -> Player {
        let spec = LoginSpec {
            account: "lg0".into(),
            password: "loadgen-password".into(),
            register: true,
            character_name: "Lg0".into(),
            template: 3,
            appearance: vec![0; 4],
            ticketed: false,
            login_only: false,
        };
        let mut config = SessionConfig::new([1; 32], spec);
        config.seed = Some([2; 32]);
        let now = Instant::now();
        let session = Session::connect(config, "127.0.0.1:7777".parse().unwrap(), now).unwrap();
        let mut p = Player::new(
            Link::World(session),
            0,
            Behaviour::Crosser,
            60,
            7,
            None,
            now,
        )
        .with_border(Some(0.0));
        p.position = at;
        p
    }

    #[test]
    fn a_crosser_walks_30_to_60_m_past_the_border_each_way() {
        let mut p = crosser([1_500.0, 1_000.0, 0.0]);
        for leg in 0..20 {
            let w = p.pick_waypoint();
            let side = if leg % 2 == 0 { -1.0 } else { 1.0 };
            assert_eq!(w[0].signum(), side, "leg {leg}: {w:?}");
            assert!((CROSS_MIN..=CROSS_MAX).contains(&w[0].abs()), "{w:?}");
            assert_eq!(w[1], 1_000.0, "along x only");
            p.position = w;
        }
    }

    #[test]
    fn a_player_routes_a_bounded_number_of_connection_ids() {
        let mut p = crosser([0.0; 3]);
        let first = p.key;
        let mut forgotten = Vec::new();
        for id in 1..=10u32 {
            forgotten.extend(p.remember_key(id));
        }
        assert_eq!(p.keys.iter().flatten().count(), KEYS_ROUTED);
        assert_eq!(forgotten.len(), 10 + 1 - KEYS_ROUTED);
        assert_eq!(forgotten[0], first);
        assert_eq!(p.remember_key(10), None, "a known id is kept as it is");
    }
}
