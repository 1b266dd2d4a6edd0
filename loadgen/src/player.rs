//! One simulated player: the client side of the protocol plus a little
//! game behaviour (enter the world, walk between waypoints or converge on
//! a battle, send movement claims at the input rate, occasional reliable
//! actions) and the measurements it takes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tos_client::{FlowEvent, LoginFlow, LoginSpec};
use tos_protocol::connection::{Connection, Event};
use tos_protocol::wire::control::DisconnectReason;
use tos_protocol::wire::game::{ClientMessage, FullEntityState, MovementClaim, ServerMessage};
use tos_protocol::wire::{Channel, Writer};

use crate::report::Recorder;

/// What the load asks players to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Enter the world and play.
    World,
    /// Send probes the server echoes back (server in echo mode).
    Echo,
}

/// How a player behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Walks between random waypoints.
    Wanderer,
    /// Walks to the battle hotspot and stays around it.
    Fighter,
    /// Claims impossible moves (speed hacks) and sends garbage.
    Cheater,
}

/// Per-player input history for latency: send time by input sequence.
const HISTORY: usize = 512;

/// A simulated player.
pub(crate) struct Player {
    pub(crate) conn: Connection,
    pub(crate) key: u32,
    pub(crate) socket: usize,
    behaviour: Behaviour,
    mode: Mode,
    started: Instant,
    connected_at: Option<Instant>,
    authenticated_at: Option<Instant>,
    entity: Option<u32>,
    /// The account and character flow (world mode).
    flow: Option<LoginFlow>,
    /// Where an earlier run left this player's character, if remembered.
    remembered: Option<[f32; 3]>,
    input_seq: u32,
    sent_at: Box<[(u32, Option<Instant>); HISTORY]>,
    last_acked_input: u32,
    position: [f32; 3],
    waypoint: [f32; 3],
    next_input: Instant,
    input_period: Duration,
    /// The world as this client sees it, from the snapshots.
    receiver: tos_client::SnapshotReceiver,
    /// Whether snapshots are applied (a full client) or only decoded.
    pub(crate) apply_snapshots: bool,
    rng: u64,
    pub(crate) done: bool,
}

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
    #[allow(
        clippy::too_many_arguments,
        reason = "one constructor call site, in the worker"
    )]
    pub(crate) fn new(
        conn: Connection,
        socket: usize,
        behaviour: Behaviour,
        mode: Mode,
        rate_hz: u32,
        seed: u64,
        login: Option<LoginSpec>,
        remembered: Option<[f32; 3]>,
        now: Instant,
    ) -> Self {
        let mut p = Self {
            key: conn.connection_id(),
            conn,
            socket,
            behaviour,
            mode,
            started: now,
            connected_at: None,
            authenticated_at: None,
            entity: None,
            flow: login.map(LoginFlow::new),
            remembered,
            input_seq: 0,
            sent_at: Box::new([(0, None); HISTORY]),
            last_acked_input: 0,
            position: [0.0; 3],
            waypoint: [0.0; 3],
            next_input: now,
            input_period: Duration::from_secs_f64(1.0 / f64::from(rate_hz.max(1))),
            receiver: tos_client::SnapshotReceiver::new(),
            apply_snapshots: true,
            rng: seed | 1,
            done: false,
        };
        p.waypoint = p.pick_waypoint();
        p
    }

    /// Where this player's character is (as far as this client knows: its
    /// own claims, corrected by the server).
    pub(crate) fn position(&self) -> Option<[f32; 3]> {
        self.entity.map(|_| self.position)
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
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
        self.conn.remote_address()
    }

    /// Game behaviour for this moment: inputs at the configured rate.
    pub(crate) fn act(&mut self, now: Instant, rec: &mut Recorder) {
        if self.done || !self.conn.is_established() {
            return;
        }
        if let Some(flow) = self.flow.as_mut() {
            let mut buf = [0u8; 512];
            while let Some(n) = flow.poll_send(&mut buf) {
                let _ = self.conn.send(Channel::ReliableOrdered, &buf[..n]);
            }
        }
        while now >= self.next_input {
            self.next_input += self.input_period;
            if now.saturating_duration_since(self.next_input) > self.input_period * 4 {
                // Far behind (the machine is saturated): skip, don't burst.
                self.next_input = now + self.input_period;
            }
            match self.mode {
                Mode::Echo => self.send_probe(now, rec),
                Mode::World if self.entity.is_some() => self.send_claim(now, rec),
                Mode::World => {}
            }
        }
    }

    fn remember(&mut self, now: Instant) -> u32 {
        self.input_seq = self.input_seq.wrapping_add(1);
        self.sent_at[self.input_seq as usize % HISTORY] = (self.input_seq, Some(now));
        self.input_seq
    }

    fn send_probe(&mut self, now: Instant, rec: &mut Recorder) {
        let seq = self.remember(now);
        let mut payload = [0u8; 64];
        payload[..4].copy_from_slice(&seq.to_le_bytes());
        if self.conn.send(Channel::Unreliable, &payload).is_ok() {
            rec.inputs_sent += 1;
        }
    }

    fn send_claim(&mut self, now: Instant, rec: &mut Recorder) {
        let dt = self.input_period.as_secs_f32();
        let speed = if self.behaviour == Behaviour::Cheater && self.rand() % 4 == 0 {
            WALK_SPEED * 20.0
        } else {
            WALK_SPEED
        };
        let to = [
            self.waypoint[0] - self.position[0],
            self.waypoint[1] - self.position[1],
        ];
        let dist = (to[0] * to[0] + to[1] * to[1]).sqrt();
        let step = speed * dt;
        let mut velocity = [0.0f32; 3];
        if dist <= step {
            self.position = self.waypoint;
            self.waypoint = self.pick_waypoint();
        } else {
            velocity = [to[0] / dist * speed, to[1] / dist * speed, 0.0];
            self.position[0] += velocity[0] * dt;
            self.position[1] += velocity[1] * dt;
        }
        let seq = self.remember(now);
        let claim = MovementClaim {
            input_seq: seq,
            position: self.position,
            velocity,
            yaw: velocity[1].atan2(velocity[0]).to_degrees(),
            anim: u8::from(dist > step),
        };
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        let _ = ClientMessage::SyncEntity(claim).encode(&mut w);
        let n = w.position();
        if self.conn.send(Channel::Unreliable, &buf[..n]).is_ok() {
            rec.inputs_sent += 1;
        }
        // Occasionally a reliable action (1 in 120 inputs: every 2 s at 60 Hz).
        if self.rand() % 120 == 0 {
            let mut w = Writer::new(&mut buf);
            let _ = ClientMessage::Action {
                input_seq: seq,
                action_id: 1,
                target: 0,
            }
            .encode(&mut w);
            let n = w.position();
            let _ = self.conn.send(Channel::ReliableOrdered, &buf[..n]);
        }
    }

    /// A cheater, now and then (about once a second at 60 Hz turns), sends
    /// a garbage datagram: returns its length in `out`.
    pub(crate) fn maybe_garbage(&mut self, out: &mut [u8]) -> Option<usize> {
        if self.behaviour != Behaviour::Cheater
            || !self.conn.is_established()
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
            out[..4].copy_from_slice(&self.conn.connection_id().to_le_bytes());
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
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::Connected => {
                    self.connected_at = Some(now);
                    rec.handshake(now.saturating_duration_since(self.started));
                    rec.connected += 1;
                    if let Some(flow) = self.flow.as_mut() {
                        flow.on_connected();
                    }
                }
                Event::Message { data, .. } => match self.mode {
                    Mode::Echo => {
                        if data.len() >= 4 {
                            let seq = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                            let (s, at) = self.sent_at[seq as usize % HISTORY];
                            if s == seq {
                                if let Some(at) = at {
                                    rec.latency(now.saturating_duration_since(at));
                                }
                            }
                        }
                    }
                    Mode::World => match ServerMessage::decode(data) {
                        Ok(
                            msg @ (ServerMessage::Authenticated { .. }
                            | ServerMessage::CharacterList(_)
                            | ServerMessage::CharacterDone { .. }
                            | ServerMessage::WorldEntered { .. }
                            | ServerMessage::Refused { .. }),
                        ) => {
                            if let ServerMessage::Refused { reason, .. } = msg {
                                if let Some(c) = rec.refusals.get_mut(reason as usize) {
                                    *c += 1;
                                }
                            }
                            let event = self.flow.as_mut().and_then(|f| f.handle_message(&msg));
                            match event {
                                Some(FlowEvent::Authenticated { .. }) => {
                                    self.authenticated_at = Some(now);
                                    if let Some(c) = self.connected_at {
                                        rec.login_us
                                            .record(
                                                now.saturating_duration_since(c).as_micros().max(1)
                                                    as u64,
                                            )
                                            .ok();
                                    }
                                }
                                Some(FlowEvent::Created { .. }) => rec.characters_created += 1,
                                Some(FlowEvent::Entered(e)) => {
                                    self.entity = Some(e.entity_id);
                                    self.position = e.position;
                                    self.waypoint = self.pick_waypoint();
                                    if let Some(a) = self.authenticated_at {
                                        rec.enter_us
                                            .record(
                                                now.saturating_duration_since(a).as_micros().max(1)
                                                    as u64,
                                            )
                                            .ok();
                                    }
                                    if let Some(r) = self.remembered {
                                        rec.resumed_known += 1;
                                        let d = ((r[0] - e.position[0]).powi(2)
                                            + (r[1] - e.position[1]).powi(2))
                                        .sqrt();
                                        if d <= RESUME_TOLERANCE {
                                            rec.resumed_in_place += 1;
                                        }
                                    }
                                }
                                Some(FlowEvent::Failed { .. }) => {
                                    rec.logins_failed += 1;
                                    self.done = true;
                                }
                                None => {}
                            }
                        }
                        Ok(ServerMessage::DeltaSync(d)) => {
                            rec.snapshots += 1;
                            rec.entities_per_snapshot(u64::from(d.record_count));
                            rec.snapshot_bytes += data.len() as u64;
                            // Apply it as a game client would: baselines,
                            // creates, removes; the client's view of the world.
                            if self.apply_snapshots {
                                match self.receiver.apply(&d) {
                                    Ok(info) => {
                                        rec.missing_baselines += u64::from(info.missing_baselines)
                                    }
                                    Err(_) => rec.decode_errors += 1,
                                }
                            } else {
                                // Lighter: check every record decodes, keep no state.
                                let mut r = tos_protocol::wire::Reader::new(d.records);
                                for _ in 0..d.record_count {
                                    if tos_protocol::delta::DeltaRecord::decode(&mut r).is_err() {
                                        rec.decode_errors += 1;
                                        break;
                                    }
                                }
                            }
                            // What the same records would cost at full precision.
                            rec.naive_bytes += 1
                                + 12
                                + u64::from(d.record_count) * (4 + FullEntityState::LEN as u64);

                            let ack = d.input_ack;
                            self.observe_input(ack, now, rec);
                        }
                        Ok(ServerMessage::Correction { position, .. }) => {
                            // The server is authoritative: continue from there.
                            rec.corrections += 1;
                            self.position = position;
                        }
                        Ok(_) => {}
                        Err(_) => rec.decode_errors += 1,
                    },
                },
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
}
