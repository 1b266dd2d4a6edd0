//! Time on the client: an estimate of the server's tick ([`ServerClock`]),
//! entity interpolation at render time = server time − delay
//! ([`Interpolator`]), and the unacknowledged inputs that client-side
//! prediction replays after a correction ([`Prediction`]).
//!
//! All of it runs on the caller's clock (an [`Instant`] passed in), like
//! the rest of the crate.

use std::collections::VecDeque;
use std::time::Instant;

use crate::snapshot::receive::IdMap;
use crate::snapshot::{EntityEvent, EntityState};

/// The server's tick as the client estimates it, from snapshot ticks and
/// the local clock.
///
/// Snapshots are sent once per tick and arrive a one-way delay late, with
/// jitter. The clock runs at the nominal tick rate from the newest arrival;
/// a snapshot ahead of the estimate moves it forward at once (the clock was
/// late), one behind pulls it back a tenth of the gap (jitter should not
/// make the render time jump back).
#[derive(Debug, Clone)]
pub struct ServerClock {
    tick_hz: f64,
    /// Unwrapped tick at `at`.
    base: Option<(f64, Instant)>,
    /// The newest tick seen, and its unwrapped value.
    newest: Option<(u32, f64)>,
}

impl ServerClock {
    /// A clock for a server ticking at `tick_hz` (the server's
    /// `runtime.tick_hz`, 60 by default).
    pub fn new(tick_hz: f64) -> Self {
        Self {
            tick_hz: if tick_hz.is_finite() && tick_hz > 0.0 {
                tick_hz
            } else {
                60.0
            },
            base: None,
            newest: None,
        }
    }

    /// Ticks per second.
    pub fn tick_hz(&self) -> f64 {
        self.tick_hz
    }

    /// A snapshot of `tick` arrived at `now`.
    pub fn on_snapshot(&mut self, tick: u32, now: Instant) {
        let unwrapped = match self.newest {
            None => f64::from(tick),
            Some((t, u)) => u + f64::from(tick.wrapping_sub(t) as i32),
        };
        if self.newest.is_none_or(|(_, u)| unwrapped > u) {
            self.newest = Some((tick, unwrapped));
        }
        match self.base {
            None => self.base = Some((unwrapped, now)),
            Some(_) => {
                let estimate = self.estimate(now);
                let error = unwrapped - estimate;
                let corrected = if error > 0.0 {
                    unwrapped
                } else {
                    estimate + error * 0.1
                };
                self.base = Some((corrected, now));
            }
        }
    }

    fn estimate(&self, now: Instant) -> f64 {
        match self.base {
            Some((tick, at)) => {
                tick + now.saturating_duration_since(at).as_secs_f64() * self.tick_hz
            }
            None => 0.0,
        }
    }

    /// The server tick now, fractional (`None` before any snapshot). It is
    /// in the same unwrapped numbering as [`ServerClock::unwrap`].
    pub fn server_tick(&self, now: Instant) -> Option<f64> {
        self.base.map(|_| self.estimate(now))
    }

    /// The tick to render entities at: server time minus `delay_ticks`
    /// (two or three snapshot intervals hide one lost snapshot and jitter).
    pub fn render_tick(&self, now: Instant, delay_ticks: f64) -> Option<f64> {
        self.server_tick(now).map(|t| t - delay_ticks)
    }

    /// A wire tick in the clock's unwrapped numbering (near the newest).
    pub fn unwrap(&self, tick: u32) -> f64 {
        match self.newest {
            None => f64::from(tick),
            Some((t, u)) => u + f64::from(tick.wrapping_sub(t) as i32),
        }
    }
}

/// States kept per entity for interpolation.
const SAMPLES: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Samples {
    len: usize,
    /// Oldest first.
    states: [EntityState; SAMPLES],
}

/// Per-entity state buffers and interpolation between them: feed it the
/// [`EntityEvent`]s, ask for an entity at a render tick.
#[derive(Debug, Default)]
pub struct Interpolator {
    entities: IdMap<Samples>,
}

impl Interpolator {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an event.
    pub fn push(&mut self, event: &EntityEvent) {
        match *event {
            EntityEvent::Created(s) => {
                let mut states = [EntityState::default(); SAMPLES];
                states[0] = s;
                self.entities.insert(s.id, Samples { len: 1, states });
            }
            EntityEvent::Updated(s) => {
                let Some(e) = self.entities.get_mut(&s.id) else {
                    return;
                };
                let newest = e.states[e.len - 1].tick;
                if (s.tick.wrapping_sub(newest) as i32) <= 0 {
                    return;
                }
                if e.len == SAMPLES {
                    e.states.copy_within(1.., 0);
                    e.len -= 1;
                }
                e.states[e.len] = s;
                e.len += 1;
            }
            EntityEvent::Removed { id, .. } => {
                self.entities.remove(&id);
            }
        }
    }

    /// Entity `id` at `render_tick` (in `clock`'s unwrapped numbering):
    /// interpolated between the two states around it, the oldest state
    /// before them all, the newest after them all (no extrapolation: a
    /// guess that turns out wrong looks worse than a short stop).
    pub fn sample(&self, id: u32, render_tick: f64, clock: &ServerClock) -> Option<EntityState> {
        let e = self.entities.get(&id)?;
        let states = &e.states[..e.len];
        let first = states.first()?;
        if render_tick <= clock.unwrap(first.tick) {
            return Some(*first);
        }
        for pair in states.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (ta, tb) = (clock.unwrap(a.tick), clock.unwrap(b.tick));
            if render_tick <= tb {
                let f = if tb > ta {
                    ((render_tick - ta) / (tb - ta)) as f32
                } else {
                    1.0
                };
                return Some(lerp(&a, &b, f));
            }
        }
        states.last().copied()
    }

    /// Entities buffered.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether no entity is buffered.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }
}

fn lerp_angle(a: f32, b: f32, f: f32) -> f32 {
    // The short way round.
    let d = (b - a + 540.0).rem_euclid(360.0) - 180.0;
    (a + d * f).rem_euclid(360.0)
}

fn lerp(a: &EntityState, b: &EntityState, f: f32) -> EntityState {
    let mix = |x: [f32; 3], y: [f32; 3]| core::array::from_fn(|i| x[i] + (y[i] - x[i]) * f);
    EntityState {
        position: mix(a.position, b.position),
        velocity: mix(a.velocity, b.velocity),
        rotation: core::array::from_fn(|i| lerp_angle(a.rotation[i], b.rotation[i], f)),
        hp: a.hp + (b.hp - a.hp) * f,
        mp: a.mp + (b.mp - a.mp) * f,
        // Discrete fields switch at the midpoint.
        ..if f < 0.5 { *a } else { *b }
    }
}

/// One predicted input: what the client claimed and the motion it applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictedInput {
    /// The claim's input sequence.
    pub input_seq: u32,
    /// Velocity applied, units per second.
    pub velocity: [f32; 3],
    /// Seconds it was applied for.
    pub dt: f32,
    /// Position after it.
    pub position: [f32; 3],
}

/// Client-side prediction: the inputs the server has not acknowledged yet.
///
/// The client moves its own character at once and remembers each claim;
/// snapshots carry `input_ack`, the newest claim the server applied
/// ([`Prediction::ack`] forgets everything up to it); a Correction names
/// the rejected claim and the authoritative position, from which
/// [`Prediction::reconcile`] replays the claims sent after it.
#[derive(Debug, Default)]
pub struct Prediction {
    pending: VecDeque<PredictedInput>,
}

/// Claims kept unacknowledged at most (4 s at 60 Hz): beyond it the server
/// is not acknowledging at all, and replaying more would not help.
const MAX_PENDING: usize = 240;

impl Prediction {
    /// An empty history.
    pub fn new() -> Self {
        Self {
            pending: VecDeque::with_capacity(MAX_PENDING),
        }
    }

    /// Records a claim just sent.
    pub fn push(&mut self, input: PredictedInput) {
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(input);
    }

    /// The server applied every claim up to `input_ack`.
    pub fn ack(&mut self, input_ack: u32) {
        while self
            .pending
            .front()
            .is_some_and(|i| (input_ack.wrapping_sub(i.input_seq) as i32) >= 0)
        {
            self.pending.pop_front();
        }
    }

    /// The server rejected claim `input_seq` and says the character is at
    /// `position`: forgets the claims up to it, replays the later ones from
    /// there, and returns the corrected predicted position.
    pub fn reconcile(&mut self, input_seq: u32, position: [f32; 3]) -> [f32; 3] {
        self.ack(input_seq);
        let mut p = position;
        for i in &mut self.pending {
            for (k, v) in p.iter_mut().enumerate() {
                *v += i.velocity[k] * i.dt;
            }
            i.position = p;
        }
        p
    }

    /// Claims not acknowledged yet, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PredictedInput> {
        self.pending.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every claim was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(id: u32, tick: u32, x: f32, yaw: f32) -> EntityState {
        EntityState {
            id,
            tick,
            position: [x, 0.0, 0.0],
            rotation: [0.0, yaw, 0.0],
            ..EntityState::default()
        }
    }

    #[test]
    fn clock_follows_snapshots() {
        let t0 = Instant::now();
        let mut c = ServerClock::new(60.0);
        assert!(c.server_tick(t0).is_none());
        c.on_snapshot(100, t0);
        let later = t0 + Duration::from_millis(500);
        assert!((c.server_tick(later).unwrap() - 130.0).abs() < 0.01);
        // A snapshot ahead of the estimate moves it forward.
        c.on_snapshot(140, later);
        assert!((c.server_tick(later).unwrap() - 140.0).abs() < 0.01);
        // Across the u32 wrap, ticks keep counting up.
        let mut w = ServerClock::new(60.0);
        w.on_snapshot(u32::MAX, t0);
        w.on_snapshot(2, t0 + Duration::from_millis(50));
        assert!(w.unwrap(2) > w.unwrap(u32::MAX));
        assert_eq!(c.render_tick(later, 3.0).unwrap().round(), 137.0);
    }

    #[test]
    fn interpolates_between_states() {
        let clock = {
            let mut c = ServerClock::new(60.0);
            c.on_snapshot(10, Instant::now());
            c
        };
        let mut i = Interpolator::new();
        i.push(&EntityEvent::Created(at(7, 10, 0.0, 350.0)));
        i.push(&EntityEvent::Updated(at(7, 12, 100.0, 10.0)));
        let s = i.sample(7, 11.0, &clock).unwrap();
        assert!((s.position[0] - 50.0).abs() < 1e-3);
        // The short way round: 350° → 10° passes 0°.
        assert!(s.rotation[1] < 1e-3 || s.rotation[1] > 359.99);
        assert_eq!(i.sample(7, 5.0, &clock).unwrap().position[0], 0.0);
        assert_eq!(i.sample(7, 50.0, &clock).unwrap().position[0], 100.0);
        i.push(&EntityEvent::Removed { id: 7, tick: 13 });
        assert!(i.sample(7, 11.0, &clock).is_none());
    }

    #[test]
    fn prediction_replays_after_a_correction() {
        let mut p = Prediction::new();
        for seq in 1..=5u32 {
            p.push(PredictedInput {
                input_seq: seq,
                velocity: [60.0, 0.0, 0.0],
                dt: 0.5,
                position: [30.0 * seq as f32, 0.0, 0.0],
            });
        }
        p.ack(2);
        assert_eq!(p.len(), 3);
        // Claim 3 rejected: the server says 0; claims 4 and 5 replay.
        let now = p.reconcile(3, [0.0, 0.0, 0.0]);
        assert_eq!(now, [60.0, 0.0, 0.0]);
        assert_eq!(p.len(), 2);
    }
}
