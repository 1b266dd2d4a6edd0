//! What a game sees of snapshots: entities created, updated and removed,
//! with dequantized world positions, velocities and rotations and the
//! server tick each state belongs to.
//!
//! [`WorldView`] compares the receiver's view after each applied snapshot
//! with what it reported before, so a game gets one event per change and
//! never has to understand baselines, quadrants or quantization steps.

use tos_protocol::delta::QuantizedEntity;
use tos_protocol::quant::{
    GeometryError, Quantizer, dequantize_angle, dequantize_fraction, dequantize_velocity,
};
use tos_protocol::wire::game::WorldParams;

use super::receive::{IdMap, SnapshotReceiver};

/// One entity's state in world terms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntityState {
    /// The entity's network id.
    pub id: u32,
    /// Its type byte (PROTOCOL.md §6.2: 0 player, 1 NPC, 2 monster, 3
    /// projectile, 4 static building, 5 vehicle, 6 item, 7 effect).
    pub entity_type: u8,
    /// The server tick this state belongs to.
    pub tick: u32,
    /// World position, world units (1 unit = 1 cm).
    pub position: [f32; 3],
    /// Velocity, world units per second.
    pub velocity: [f32; 3],
    /// Pitch, yaw, roll in degrees, `[0, 360)`.
    pub rotation: [f32; 3],
    /// Animation id (PROTOCOL.md §6.2: 0 idle, 1 walk, ...).
    pub anim: u8,
    /// EntityState bits.
    pub state: u8,
    /// Buff bits.
    pub buffs: u8,
    /// HP as a fraction of its maximum, `[0, 1]`.
    pub hp: f32,
    /// MP as a fraction of its maximum, `[0, 1]`.
    pub mp: f32,
}

impl EntityState {
    /// The world state a quantized state stands for (`None` if its
    /// quadrant is outside the world the server described).
    pub fn from_quantized(
        id: u32,
        entity_type: u8,
        tick: u32,
        q: &QuantizedEntity,
        quantizer: &Quantizer,
        velocity_step: f32,
    ) -> Option<Self> {
        let position = quantizer.dequantize_position(q.position).ok()?;
        Some(Self {
            id,
            entity_type,
            tick,
            position,
            velocity: q.velocity.map(|v| dequantize_velocity(v, velocity_step)),
            rotation: [
                dequantize_angle(q.rotation.pitch),
                dequantize_angle(q.rotation.yaw),
                dequantize_angle(q.rotation.roll),
            ],
            anim: q.anim,
            state: q.status.state,
            buffs: q.status.buffs,
            hp: dequantize_fraction(q.status.hp),
            mp: dequantize_fraction(q.status.mp),
        })
    }
}

/// A change in what the client sees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EntityEvent {
    /// The entity came into view.
    Created(EntityState),
    /// A newer state of an entity in view.
    Updated(EntityState),
    /// The entity left view (out of range, gone, or turned invisible).
    Removed {
        /// Its network id.
        id: u32,
        /// The snapshot tick after which it is gone.
        tick: u32,
    },
}

/// Turns a receiver's view into [`EntityEvent`]s.
#[derive(Debug, Default)]
pub struct WorldView {
    quantizer: Option<Quantizer>,
    velocity_step: f32,
    /// Entities reported in view: the tick of the state last reported and
    /// the pass that last saw them.
    known: IdMap<(u32, u32)>,
    pass: u32,
}

impl WorldView {
    /// A view that reports nothing until [`WorldView::set_world`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The world's geometry, from WorldEntered: needed to dequantize.
    pub fn set_world(&mut self, world: &WorldParams) -> Result<(), GeometryError> {
        self.quantizer = Some(world.quantizer()?);
        self.velocity_step = world.velocity_step;
        Ok(())
    }

    /// The quantizer of the world, once known.
    pub fn quantizer(&self) -> Option<&Quantizer> {
        self.quantizer.as_ref()
    }

    /// Entities reported in view.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no entity is in view.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Forgets every entity reported, each through `emit` as
    /// [`EntityEvent::Removed`] after `tick`: the world a zone transfer
    /// left (the new node's entities have other ids and new baselines).
    pub fn clear(&mut self, tick: u32, mut emit: impl FnMut(EntityEvent)) {
        for (&id, _) in self.known.iter() {
            emit(EntityEvent::Removed { id, tick });
        }
        self.known.clear();
    }

    /// Reports, through `emit`, every change between what was reported and
    /// the receiver's view now. Call it after each applied snapshot; it
    /// allocates only when more entities are in view than ever before.
    pub fn diff(
        &mut self,
        receiver: &SnapshotReceiver,
        tick: u32,
        mut emit: impl FnMut(EntityEvent),
    ) {
        let Some(quantizer) = self.quantizer.as_ref() else {
            return;
        };
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        for (id, entity_type, t, q) in receiver.visible_with_ticks() {
            let Some(state) =
                EntityState::from_quantized(id, entity_type, t, &q, quantizer, self.velocity_step)
            else {
                continue;
            };
            match self.known.get_mut(&id) {
                Some(k) => {
                    if k.0 != t {
                        emit(EntityEvent::Updated(state));
                    }
                    *k = (t, pass);
                }
                None => {
                    self.known.insert(id, (t, pass));
                    emit(EntityEvent::Created(state));
                }
            }
        }
        self.known.retain(|&id, k| {
            let keep = k.1 == pass;
            if !keep {
                emit(EntityEvent::Removed { id, tick });
            }
            keep
        });
    }
}
