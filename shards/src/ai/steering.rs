//! Steering: walking an NPC toward a destination, straight when the
//! straight line is walkable, else along a path planned by A* from the
//! queue; and serving that queue within the per-tick budget.
//!
//! Every move an NPC makes is checked with [`Nav::step_ok`] before it is
//! made — the same rule players' claims obey — so whatever the planner
//! says, an NPC never walks through a wall, up a cliff, or off the ground.

use crate::entity::Entities;
use crate::nav::Nav;
use crate::shard::anim;

use super::{AiRuntime, PATH_LEN};

/// The destination moved this far from where the cached path leads:
/// plan again.
const REPLAN: f32 = 150.0;

/// A destination this close counts as reached.
const ARRIVE: f32 = 20.0;

/// One NPC's cached path (per slot; not carried by hand-offs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PathCache {
    /// The slot generation it belongs to (a reused slot starts afresh).
    generation: u32,
    points: [[f32; 2]; PATH_LEN],
    len: u8,
    next: u8,
    /// The destination it was planned for.
    goal: [f32; 2],
    /// It leads somewhere.
    valid: bool,
    /// A request is queued.
    pending: bool,
    /// The last plan for `goal` made no progress.
    failed: bool,
    /// The NPC stands where this cache last put it, on a leg whose whole
    /// straight line was checked: the next move along it needs no check.
    on_leg: bool,
    /// Where this cache last put the NPC.
    last: [f32; 2],
}

impl PathCache {
    /// Forgets the path (the NPC respawned, arrived, or was moved).
    pub(crate) fn reset(&mut self) {
        let generation = self.generation;
        *self = Self {
            generation,
            ..Self::default()
        };
    }

    /// The slot generation it belongs to.
    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// The waypoints still ahead.
    pub(crate) fn ahead(&self) -> &[[f32; 2]] {
        if self.valid {
            &self.points[usize::from(self.next)..usize::from(self.len)]
        } else {
            &[]
        }
    }
}

/// What a steering step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steer {
    /// At the destination (standing).
    Arrived,
    /// Walking.
    Moving,
    /// Standing, waiting for a path.
    Waiting,
    /// No way there was found.
    Unreachable,
}

#[inline]
fn dist2d(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The world bits steering needs.
pub(crate) struct Mover<'a, 'n> {
    pub(crate) nav: &'a Nav<'n>,
    pub(crate) aoi: &'a mut crate::aoi::AoiGrid,
    pub(crate) world: &'a crate::world::World,
    /// Quadrants another node of the cluster simulates: an NPC steps onto
    /// them only while `cross` holds and its own border hold is over (the
    /// shard then hands it to that node).
    pub(crate) foreign: &'a [bool],
    /// Whether the node borders are open (NATS answers).
    pub(crate) cross: bool,
    /// The tick.
    pub(crate) now: u32,
    pub(crate) dt: f32,
}

/// Stops slot `i` (velocity 0, idle animation).
pub(crate) fn stand(ents: &mut Entities, i: usize) {
    if ents.velocity[i] != [0.0; 3] || ents.anim[i] != anim::IDLE {
        ents.velocity[i] = [0.0; 3];
        ents.anim[i] = anim::IDLE;
        ents.dirty[i] = true;
    }
}

/// Walks slot `i` one tick toward `dest` at `speed` (`stuck`: it may not
/// move this tick).
pub(crate) fn move_to(
    ents: &mut Entities,
    rt: &mut AiRuntime,
    m: &mut Mover<'_, '_>,
    i: u32,
    dest: [f32; 2],
    speed: f32,
    stuck: bool,
) -> Steer {
    let iu = i as usize;
    let generation = ents.generation[iu];
    let pc = &mut rt.paths[iu];
    if pc.generation != generation {
        *pc = PathCache {
            generation,
            ..PathCache::default()
        };
    }
    let p = ents.position[iu];
    let here = [p[0], p[1]];
    if dist2d(here, dest) <= ARRIVE.max(speed * m.dt) && m.nav.step_ok(here, dest) {
        pc.reset();
        if !stuck && dist2d(here, dest) > 0.5 {
            place(ents, m, i, dest, [0.0; 3]);
        }
        stand(ents, iu);
        return Steer::Arrived;
    }
    let same_goal = dist2d(pc.goal, dest) <= REPLAN;
    if pc.failed && same_goal && !pc.pending {
        stand(ents, iu);
        return Steer::Unreachable;
    }
    let used_up = !pc.valid || pc.next >= pc.len;
    if (used_up || !same_goal) && !pc.pending {
        let dest = clamp2(m.world, dest);
        if m.nav.step_ok(here, dest) {
            pc.points[0] = dest;
            pc.len = 1;
            pc.next = 0;
            pc.goal = dest;
            pc.valid = true;
            pc.failed = false;
            pc.on_leg = true;
            pc.last = here;
        } else if rt.queue.len() < rt.queue.capacity() {
            pc.pending = true;
            pc.goal = dest;
            pc.failed = false;
            rt.queue.push_back((i, generation));
        }
    }
    if !pc.valid || pc.next >= pc.len || stuck {
        stand(ents, iu);
        return Steer::Waiting;
    }
    let w = pc.points[usize::from(pc.next)];
    // Moves along a leg whose whole straight line was checked need no
    // check of their own (a part of a walkable straight step is
    // walkable). Off such a leg (moved by someone else, a waypoint clamped
    // into the world), the rest of the leg is checked once.
    if !(pc.on_leg && pc.last == here) {
        if !m.nav.step_ok(here, w) {
            // The world disagrees with the plan: stand and plan again.
            pc.valid = false;
            pc.on_leg = false;
            rt.stats.blocked_moves += 1;
            stand(ents, iu);
            return Steer::Waiting;
        }
        pc.on_leg = true;
    }
    let (dx, dy) = (w[0] - here[0], w[1] - here[1]);
    let d = (dx * dx + dy * dy).sqrt();
    let step = speed * m.dt;
    let (to, velocity) = if d <= step || d < 1e-3 {
        pc.next += 1;
        (w, [dx / m.dt, dy / m.dt, 0.0])
    } else {
        let (ux, uy) = (dx / d, dy / d);
        (
            [here[0] + ux * step, here[1] + uy * step],
            [ux * speed, uy * speed, 0.0],
        )
    };
    pc.last = to;
    place(ents, m, i, to, velocity);
    Steer::Moving
}

/// `p` inside the world.
fn clamp2(world: &crate::world::World, p: [f32; 2]) -> [f32; 2] {
    let c = world.clamp([p[0], p[1], 0.0]);
    [c[0], c[1]]
}

/// Puts slot `i` at `to` on the ground, walking with `velocity`.
///
/// `to` is inside the world: destinations and planned waypoints are
/// clamped into it, and the world is convex.
fn place(ents: &mut Entities, m: &mut Mover<'_, '_>, i: u32, to: [f32; 2], velocity: [f32; 3]) {
    let iu = i as usize;
    let p = ents.position[iu];
    let np = m.nav.on_ground(to[0], to[1]);
    if crate::border::foreign_at(m.foreign, m.world, np)
        && !(m.cross
            && matches!(
                ents.kind[iu],
                crate::entity::EntityType::Npc | crate::entity::EntityType::Monster
            )
            && !crate::util::tick_after(ents.ai[iu].border_hold, m.now))
    {
        // Another node's ground, closed to it now: a wall.
        stand(ents, iu);
        return;
    }
    // The heading changes only at waypoints: an atan2 only when the
    // direction turns (by more than about 0.1 degree).
    let old = ents.velocity[iu];
    let cross = velocity[0] * old[1] - velocity[1] * old[0];
    let dot = velocity[0] * old[0] + velocity[1] * old[1];
    let turned = dot <= 0.0 || cross.abs() > 2e-3 * dot;
    if (velocity[0] != 0.0 || velocity[1] != 0.0) && turned {
        ents.rotation[iu][1] = velocity[1].atan2(velocity[0]).to_degrees();
    }
    ents.position[iu] = np;
    ents.velocity[iu] = velocity;
    ents.anim[iu] = if velocity == [0.0; 3] {
        anim::IDLE
    } else {
        anim::WALK
    };
    ents.dirty[iu] = true;
    if np != p {
        m.aoi.update(i, np);
    }
}

/// Plans queued paths until the tick's expansion budget is spent.
pub(crate) fn serve_paths(
    rt: &mut AiRuntime,
    ents: &Entities,
    nav: &Nav<'_>,
    world: &crate::world::World,
) {
    let mut left = rt.budget.path_expansions;
    while left > 0 {
        let Some((i, generation)) = rt.queue.pop_front() else {
            break;
        };
        let iu = i as usize;
        if !ents.live[iu] || ents.ghost[iu] || ents.generation[iu] != generation {
            continue;
        }
        let pc = &mut rt.paths[iu];
        if !pc.pending || pc.generation != generation {
            continue;
        }
        pc.pending = false;
        let p = ents.position[iu];
        let outcome = rt
            .finder
            .find(nav, [p[0], p[1]], pc.goal, left, &mut pc.points);
        let spent = rt.finder.last_expanded().max(1);
        left = left.saturating_sub(spent);
        rt.stats.paths_planned += 1;
        rt.stats.expansions += u64::from(spent);
        if !matches!(outcome, crate::nav::PathOutcome::Found(_)) {
            rt.stats.paths_partial += 1;
        }
        pc.len = outcome.len() as u8;
        pc.next = 0;
        pc.valid = !outcome.is_empty();
        pc.failed = outcome.is_empty();
        pc.on_leg = pc.valid;
        pc.last = [p[0], p[1]];
        for w in &mut pc.points[..usize::from(pc.len)] {
            let c = clamp2(world, *w);
            if c != *w {
                // Clamped off its checked line: check the moves.
                *w = c;
                pc.on_leg = false;
            }
        }
    }
    rt.stats.queued = rt.queue.len() as u32;
}
