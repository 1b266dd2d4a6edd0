//! Server authority (seed §8): movement claims and action requests are
//! checked before they touch the world.
//!
//! # Movement
//!
//! A [`MovementClaim`] is checked, in order, for: finite numbers and world
//! bounds; immobilising debuffs (stun, freeze); the claimed velocity against
//! the maximum speed; the horizontal distance against a **movement credit**
//! (a token bucket that fills at `max_speed × speed_tolerance` per second
//! and holds at most what that speed covers in one tick plus the RTT
//! allowance `rtt + rtt_tolerance_ms`: a burst of claims delayed by the
//! network passes, a sustained speed hack does not; a single jump longer
//! than the whole bucket is a teleport); terrain (not under the ground, no
//! cliff steeper than `max_step_height` along the path, no rising more than
//! a step in one move); flying (a claim more than `max_step_height` above
//! the ground is accepted only while falling: not rising, and no higher
//! than gravity allows since the player left the ground); and static
//! obstacles (the segment from the authoritative position to the claim may
//! not touch any box). A rejected claim leaves the authoritative state as
//! it was and yields a correction for the client, and bumps the player's
//! [`CheatCounters`].
//!
//! # Actions
//!
//! An action request is checked for the caster's state (alive, not stunned
//! or frozen, not casting), the action (known), its cooldown, mana, the
//! target (exists, alive, hostile or friendly as the action requires) and
//! range. The actions are the skills of `config/data/skills.ron`
//! ([`ActionDef::from_skill`]); their effects are `crate::combat`'s.

use tos_protocol::quant::Quantizer;
use tos_protocol::wire::game::MovementClaim;

use crate::entity::{Buff, BuffFlags, EntityState, Faction, FactionTable, MAX_ACTIONS};
use crate::world::{Heightfield, ObstacleIndex};

/// Limits on movement claims, from the `authority` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MovementRules {
    /// Fastest a player may move, units per second.
    pub max_speed: f32,
    /// Factor on `max_speed` tolerated.
    pub speed_tolerance: f32,
    /// Extra seconds of movement allowed on top of the client's RTT.
    pub rtt_allowance: f32,
    /// Highest step a walking player climbs in one move, and the height
    /// above ground that still counts as on the ground.
    pub max_step: f32,
    /// How far below the ground a claim may be (interpolation slack).
    pub under_ground_tolerance: f32,
    /// Gravity for the fall check, units per second squared.
    pub gravity: f32,
    /// Seconds per tick.
    pub tick_dt: f32,
    /// The most RTT (seconds) that widens the movement credit. A client
    /// controls its measured RTT (it can delay Pongs and acks), so an
    /// uncapped RTT let it stand still, bank seconds of movement and jump
    /// tens of metres in one claim.
    pub max_rtt_credit: f32,
}

/// Default cap on the RTT that earns movement credit, milliseconds
/// (`authority.max_rtt_credit_ms`).
pub const MAX_RTT_CREDIT_MS: u32 = 250;

/// Most heightfield samples along one claim's path. Claims are short (the
/// credit is capped), so this is never reached by honest movement; a claim
/// that would need more is refused rather than sampled sparsely.
pub const MAX_PATH_SAMPLES: u32 = 1024;

impl MovementRules {
    /// Rules from the `authority` section at a tick rate.
    pub fn new(config: &tos_config::AuthorityConfig, tick_hz: u32) -> Self {
        Self {
            max_speed: config.max_speed as f32,
            speed_tolerance: config.speed_tolerance as f32,
            rtt_allowance: config.rtt_tolerance_ms as f32 / 1000.0,
            max_step: config.max_step_height as f32,
            under_ground_tolerance: 10.0,
            gravity: 980.0,
            tick_dt: 1.0 / tick_hz.max(1) as f32,
            max_rtt_credit: config.max_rtt_credit_ms as f32 / 1000.0,
        }
    }

    /// The fastest allowed speed with a speed factor (slows).
    #[inline]
    pub fn allowed_speed(&self, speed_factor: f32) -> f32 {
        self.max_speed * self.speed_tolerance * speed_factor
    }

    /// The movement credit bucket's size for a client RTT.
    #[inline]
    pub fn credit_cap(&self, rtt_ms: u32) -> f32 {
        let rtt = (rtt_ms as f32 / 1000.0).min(self.max_rtt_credit);
        self.allowed_speed(1.0) * (self.tick_dt + self.rtt_allowance + rtt)
    }
}

/// The static world movement is checked against.
#[derive(Debug, Clone)]
pub struct Terrain {
    /// Ground heights.
    pub heightfield: Heightfield,
    /// Solid boxes.
    pub obstacles: ObstacleIndex,
}

/// Per-player movement validation state (travels with the player).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MoverState {
    /// Distance the player may still cover now, in units.
    pub credit: f32,
    /// Whether the last accepted claim was in the air.
    pub airborne: bool,
    /// Height when the player left the ground.
    pub air_start_z: f32,
    /// Claims accepted since the player left the ground.
    pub air_claims: u32,
}

impl MoverState {
    /// A mover with a full bucket.
    pub fn new(rules: &MovementRules, rtt_ms: u32) -> Self {
        Self {
            credit: rules.credit_cap(rtt_ms),
            ..Self::default()
        }
    }

    /// Refills the bucket for one tick.
    #[inline]
    pub fn accrue(&mut self, rules: &MovementRules, speed_factor: f32, rtt_ms: u32) {
        let cap = rules.credit_cap(rtt_ms);
        self.credit = (self.credit + rules.allowed_speed(speed_factor) * rules.tick_dt).min(cap);
    }
}

/// Why a movement claim was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MoveRejection {
    /// A coordinate is NaN or infinite.
    NonFinite = 1,
    /// Outside the world box.
    OutOfBounds = 2,
    /// Moving while stunned or frozen.
    Immobilized = 3,
    /// The claimed velocity is above the allowed speed.
    VelocityTooHigh = 4,
    /// A jump longer than any burst could cover.
    Teleport = 5,
    /// Faster than the movement credit allows.
    Speed = 6,
    /// Below the ground.
    UnderGround = 7,
    /// Climbing more than a step at once.
    StepTooHigh = 8,
    /// In the air without falling.
    Flying = 9,
    /// Through an obstacle.
    Wall = 10,
    /// Into a quadrant another node of the cluster simulates: held at the
    /// node border until hand-off across processes exists.
    NodeBorder = 11,
}

/// Anti-cheat counters of one player: rejected claims by reason, and
/// refused actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheatCounters {
    /// Non-finite numbers or outside the world.
    pub bounds: u32,
    /// Moves while immobilised.
    pub immobilized: u32,
    /// Claimed velocity too high.
    pub velocity: u32,
    /// Teleports.
    pub teleport: u32,
    /// Speed hacks.
    pub speed: u32,
    /// Under the ground.
    pub under_ground: u32,
    /// Climbing cliffs.
    pub climb: u32,
    /// Flying.
    pub flying: u32,
    /// Through walls.
    pub wall: u32,
    /// Held at a node border (not cheating: another node owns the ground).
    pub node_border: u32,
    /// Refused actions.
    pub actions_refused: u32,
}

impl CheatCounters {
    /// Counts one rejection.
    pub fn record(&mut self, r: MoveRejection) {
        let c = match r {
            MoveRejection::NonFinite | MoveRejection::OutOfBounds => &mut self.bounds,
            MoveRejection::Immobilized => &mut self.immobilized,
            MoveRejection::VelocityTooHigh => &mut self.velocity,
            MoveRejection::Teleport => &mut self.teleport,
            MoveRejection::Speed => &mut self.speed,
            MoveRejection::UnderGround => &mut self.under_ground,
            MoveRejection::StepTooHigh => &mut self.climb,
            MoveRejection::Flying => &mut self.flying,
            MoveRejection::Wall => &mut self.wall,
            MoveRejection::NodeBorder => &mut self.node_border,
        };
        *c = c.saturating_add(1);
    }

    /// Rejected claims of every kind.
    pub fn movement_total(&self) -> u32 {
        self.bounds
            + self.immobilized
            + self.velocity
            + self.teleport
            + self.speed
            + self.under_ground
            + self.climb
            + self.flying
            + self.wall
    }
}

/// The world a claim is checked against.
#[derive(Debug, Clone, Copy)]
pub struct MoveContext<'a> {
    /// The limits.
    pub rules: &'a MovementRules,
    /// The world box.
    pub quantizer: &'a Quantizer,
    /// Terrain and obstacles.
    pub terrain: &'a Terrain,
}

/// What an accepted claim means for the player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveAccepted {
    /// The player is in the air (falling).
    pub airborne: bool,
}

/// Checks a claim made from the authoritative position `from`. On success
/// the mover's credit is spent and its air state updated; on failure the
/// mover is unchanged.
pub fn validate_claim(
    ctx: &MoveContext<'_>,
    mover: &mut MoverState,
    from: [f32; 3],
    claim: &MovementClaim,
    speed_factor: f32,
    immobilized: bool,
) -> Result<MoveAccepted, MoveRejection> {
    let MoveContext {
        rules,
        quantizer,
        terrain,
    } = *ctx;
    let to = claim.position;
    let finite = to
        .iter()
        .chain(&claim.velocity)
        .chain(core::iter::once(&claim.yaw))
        .all(|v| v.is_finite());
    if !finite {
        return Err(MoveRejection::NonFinite);
    }
    if !quantizer.contains(to) {
        return Err(MoveRejection::OutOfBounds);
    }
    let dx = to[0] - from[0];
    let dy = to[1] - from[1];
    let horizontal = (dx * dx + dy * dy).sqrt();
    if immobilized && (horizontal > 1.0 || to[2] > from[2] + 1.0) {
        return Err(MoveRejection::Immobilized);
    }
    let v = claim.velocity;
    if (v[0] * v[0] + v[1] * v[1]).sqrt() > rules.allowed_speed(speed_factor) + 1.0 {
        return Err(MoveRejection::VelocityTooHigh);
    }
    if horizontal > rules.credit_cap(0).max(mover.credit) + 1.0 {
        return Err(MoveRejection::Teleport);
    }
    if horizontal > mover.credit + 0.5 {
        return Err(MoveRejection::Speed);
    }
    let hf = &terrain.heightfield;
    let ground = hf.height_at(to[0], to[1]);
    if to[2] < ground - rules.under_ground_tolerance {
        return Err(MoveRejection::UnderGround);
    }
    let height = to[2] - ground;
    let airborne = height > rules.max_step;
    if !mover.airborne && !airborne && to[2] - from[2] > rules.max_step {
        return Err(MoveRejection::StepTooHigh);
    }
    if !hf.is_flat() && horizontal > 0.0 && !airborne {
        // No slope along the way steeper than one step per sample spacing
        // (a cliff), however small the move.
        // Sampled by distance, at half the grid spacing, so that a long
        // claim cannot step over a cliff between two sparse samples (a
        // fixed 16 samples let a long claim climb one cell's cliff).
        let steepest = f64::from(rules.max_step) / hf.spacing();
        let needed = (f64::from(horizontal) * 2.0 / hf.spacing()).ceil();
        if needed > f64::from(MAX_PATH_SAMPLES) {
            return Err(MoveRejection::Teleport);
        }
        let samples = (needed as u32).max(1);
        let run = f64::from(horizontal) / f64::from(samples);
        let mut last = hf.height_at(from[0], from[1]);
        for k in 1..=samples {
            let t = k as f32 / samples as f32;
            let g = hf.height_at(from[0] + dx * t, from[1] + dy * t);
            if f64::from(g - last) > steepest * run + 1e-3 {
                return Err(MoveRejection::StepTooHigh);
            }
            last = g;
        }
    }
    let mut air_claims = 0;
    let mut air_start_z = mover.air_start_z;
    if airborne {
        // Falling only: never rising, never higher than a ballistic fall
        // from where the player left the ground (with the latency
        // allowance as grace).
        if to[2] > from[2] + 0.5 || claim.velocity[2] > 0.5 {
            return Err(MoveRejection::Flying);
        }
        if !mover.airborne {
            air_start_z = from[2];
        }
        air_claims = mover.air_claims + 1;
        let t = (air_claims as f32 * rules.tick_dt - rules.rtt_allowance).max(0.0);
        let highest = air_start_z - 0.5 * rules.gravity * t * t + rules.max_step;
        if to[2] > highest {
            return Err(MoveRejection::Flying);
        }
    }
    if terrain.obstacles.segment_blocked(from, to) {
        return Err(MoveRejection::Wall);
    }
    mover.credit = (mover.credit - horizontal).max(0.0);
    mover.airborne = airborne;
    mover.air_claims = air_claims;
    mover.air_start_z = air_start_z;
    Ok(MoveAccepted { airborne })
}

/// The speed factor of an entity's buffs (slows).
pub fn speed_factor(buffs: &crate::entity::BuffSet) -> f32 {
    1.0 - 0.75 * f32::from(buffs.intensity(Buff::Slowed)) / 255.0
}

/// Whether buffs or state keep an entity from moving and acting.
pub fn incapacitated(state: EntityState, buffs: BuffFlags) -> bool {
    state.contains(EntityState::STUNNED)
        || buffs.intersects(BuffFlags::STUNNED.union(BuffFlags::FROZEN))
}

/// Whom an action may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRule {
    /// Only the caster (the target id is ignored).
    Caster,
    /// An enemy.
    Enemy,
    /// A friend (0 = the caster).
    Friend,
}

/// A buff an action applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuffEffect {
    /// Which.
    pub buff: Buff,
    /// For how many ticks.
    pub duration_ticks: u32,
    /// How strong.
    pub intensity: u8,
}

/// A buff a skill applies, as written in the data (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillBuffDef {
    /// Which.
    pub buff: Buff,
    /// For how long, milliseconds.
    pub duration_ms: u32,
    /// How strong.
    pub intensity: u8,
}

/// An action (skill) players and NPCs may request, from `skills.ron`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionDef {
    /// The id clients send.
    pub id: u16,
    /// What it does.
    pub kind: tos_config::SkillKind,
    /// Magic (INT against MEN) or physical (STR against CON).
    pub magic: bool,
    /// Base damage or healing.
    pub power: f32,
    /// Casting time, milliseconds (0: instant).
    pub cast_ms: u32,
    /// Time before it can be used again, milliseconds.
    pub cooldown_ms: u32,
    /// Mana it costs.
    pub mp_cost: f32,
    /// Farthest target, units.
    pub range: f32,
    /// Area skills: radius around the target, units.
    pub radius: f32,
    /// Whom it targets.
    pub target: TargetRule,
    /// A buff it applies to the target.
    pub buff: Option<SkillBuffDef>,
}

impl ActionDef {
    /// The shard's form of a skill of the data files.
    pub fn from_skill(s: &tos_config::SkillTemplate) -> Self {
        use tos_config::{BuffKind, School, SkillTarget};
        Self {
            id: s.id,
            kind: s.kind,
            magic: s.school == School::Magic,
            power: s.power as f32,
            cast_ms: s.cast_ms,
            cooldown_ms: s.cooldown_ms,
            mp_cost: s.mp_cost as f32,
            range: s.range as f32,
            radius: s.radius as f32,
            target: match s.target {
                SkillTarget::Caster => TargetRule::Caster,
                SkillTarget::Enemy => TargetRule::Enemy,
                SkillTarget::Friend => TargetRule::Friend,
            },
            buff: s.buff.map(|b| SkillBuffDef {
                buff: match b.buff {
                    BuffKind::Frozen => Buff::Frozen,
                    BuffKind::Poisoned => Buff::Poisoned,
                    BuffKind::Burning => Buff::Burning,
                    BuffKind::Slowed => Buff::Slowed,
                    BuffKind::Stunned => Buff::Stunned,
                    BuffKind::Invisible => Buff::Invisible,
                    BuffKind::Invulnerable => Buff::Invulnerable,
                },
                duration_ms: b.duration_ms,
                intensity: b.intensity,
            }),
        }
    }
}

/// The built-in spell book: the skills of the shipped `skills.ron`
/// (ids 1 to 8 are Strike, Fireball, Frost Bolt, Heal, Vanish, Divine
/// Shield, Crippling Shot and Shield Bash; 9 and up are more). Empty only
/// if the built-in data were broken, which the config tests rule out.
pub fn default_actions() -> Vec<ActionDef> {
    tos_config::CombatData::embedded()
        .map(|d| d.skills.iter().map(ActionDef::from_skill).collect())
        .unwrap_or_default()
}

/// Checks a list of actions for use by a shard.
pub(crate) fn validate_actions(actions: &[ActionDef]) -> Result<(), crate::ShardError> {
    if actions.len() > MAX_ACTIONS {
        return Err(crate::ShardError::BadData("more actions than MAX_ACTIONS"));
    }
    for (i, a) in actions.iter().enumerate() {
        if actions[..i].iter().any(|b| b.id == a.id) {
            return Err(crate::ShardError::BadData("two actions share an id"));
        }
        let numbers = [a.mp_cost, a.range, a.power, a.radius];
        if !numbers.iter().all(|v| v.is_finite() && *v >= 0.0) {
            return Err(crate::ShardError::BadData(
                "action numbers must be finite and not negative",
            ));
        }
    }
    Ok(())
}

/// The `ActionResult` code of a completed action.
pub const ACTION_DONE: u8 = 0;

/// Why an action was refused; its code goes in `ActionResult.result`
/// (0 is [`ACTION_DONE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ActionRefusal {
    /// No action has this id.
    UnknownAction = 1,
    /// The action is cooling down.
    OnCooldown = 2,
    /// Not enough mana.
    NotEnoughMana = 3,
    /// The target is too far.
    OutOfRange = 4,
    /// The caster is dead.
    Dead = 5,
    /// The caster is stunned or frozen.
    Incapacitated = 6,
    /// The target does not exist (here or on a neighbouring shard).
    NoTarget = 7,
    /// The target is dead.
    TargetDead = 8,
    /// The action needs an enemy.
    NotAnEnemy = 9,
    /// The action needs a friend.
    NotAFriend = 10,
    /// The caster is casting another skill.
    Casting = 11,
    /// No item with this id lies here (gone, never was, or not an item
    /// one can pick up).
    NoSuchItem = 12,
    /// The item is out of reach.
    ItemTooFar = 13,
    /// The item is someone else's loot for a few more seconds.
    NotYourLoot = 14,
    /// The item lies on another core's ground: walk up to it (pick-ups
    /// are not forwarded between cores, so an item is taken exactly once).
    ItemElsewhere = 15,
    /// The client has no player in this shard.
    NotInWorld = 16,
    /// The consumable's effect is not a valid one (negative or not finite).
    BadItem = 17,
    /// The target stands on another cluster node's ground and the node
    /// borders are closed (NATS down): the effect cannot be carried there.
    AcrossNodeBorder = 18,
}

impl ActionRefusal {
    /// Every refusal.
    pub const ALL: [Self; 18] = [
        Self::UnknownAction,
        Self::OnCooldown,
        Self::NotEnoughMana,
        Self::OutOfRange,
        Self::Dead,
        Self::Incapacitated,
        Self::NoTarget,
        Self::TargetDead,
        Self::NotAnEnemy,
        Self::NotAFriend,
        Self::Casting,
        Self::NoSuchItem,
        Self::ItemTooFar,
        Self::NotYourLoot,
        Self::ItemElsewhere,
        Self::NotInWorld,
        Self::BadItem,
        Self::AcrossNodeBorder,
    ];

    /// The wire code (never 0).
    #[inline]
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The refusal of a wire code (`None` for 0 = done or unknown codes).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The wire code of an action's outcome.
pub fn result_code(result: Result<(), ActionRefusal>) -> u8 {
    match result {
        Ok(()) => ACTION_DONE,
        Err(r) => r.code(),
    }
}

/// What an action check needs to know about the caster or the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Actor {
    /// Where.
    pub position: [f32; 3],
    /// State flags.
    pub state: EntityState,
    /// Buff flags.
    pub buffs: BuffFlags,
    /// Faction.
    pub faction: Faction,
    /// Mana.
    pub mp: f32,
}

/// Checks an action request; `target` is `None` when the id names nothing
/// (or for [`TargetRule::Caster`] actions, which ignore it).
pub fn check_action(
    def: Option<&ActionDef>,
    ready_tick: u32,
    now: u32,
    caster: &Actor,
    target: Option<&Actor>,
    factions: &FactionTable,
) -> Result<(), ActionRefusal> {
    if !caster.state.contains(EntityState::ALIVE) {
        return Err(ActionRefusal::Dead);
    }
    if incapacitated(caster.state, caster.buffs) {
        return Err(ActionRefusal::Incapacitated);
    }
    let def = def.ok_or(ActionRefusal::UnknownAction)?;
    if crate::util::tick_after(ready_tick, now) {
        return Err(ActionRefusal::OnCooldown);
    }
    if caster.mp < def.mp_cost {
        return Err(ActionRefusal::NotEnoughMana);
    }
    if def.target == TargetRule::Caster {
        return Ok(());
    }
    let target = target.ok_or(ActionRefusal::NoTarget)?;
    if !target.state.contains(EntityState::ALIVE) {
        return Err(ActionRefusal::TargetDead);
    }
    match def.target {
        TargetRule::Enemy if !factions.is_enemy(caster.faction, target.faction) => {
            return Err(ActionRefusal::NotAnEnemy);
        }
        TargetRule::Friend if !factions.is_friend(caster.faction, target.faction) => {
            return Err(ActionRefusal::NotAFriend);
        }
        _ => {}
    }
    let reach = f64::from(def.range) + 50.0;
    if crate::util::dist2(caster.position, target.position) > reach * reach {
        return Err(ActionRefusal::OutOfRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Aabb;

    fn setup() -> (MovementRules, Quantizer, Terrain) {
        let rules = MovementRules::new(&tos_config::AuthorityConfig::default(), 60);
        let terrain = Terrain {
            heightfield: Heightfield::new(
                [0.0, 0.0],
                100.0,
                [3, 1],
                // A 500-unit cliff between x = 100 and x = 200.
                vec![0.0, 0.0, 500.0],
            )
            .unwrap(),
            obstacles: ObstacleIndex::new(vec![Aabb::new(
                [-1000.0, 500.0, -100.0],
                [1000.0, 520.0, 1000.0],
            )])
            .unwrap(),
        };
        (rules, Quantizer::seed_default(), terrain)
    }

    fn claim(p: [f32; 3], v: [f32; 3]) -> MovementClaim {
        MovementClaim {
            input_seq: 1,
            position: p,
            velocity: v,
            yaw: 0.0,
            anim: 1,
        }
    }

    #[test]
    fn honest_walking_passes_every_tick() {
        let (rules, q, terrain) = setup();
        let mut mover = MoverState::new(&rules, 50);
        let mut p = [0.0f32, 0.0, 0.0];
        for _ in 0..600 {
            mover.accrue(&rules, 1.0, 50);
            let next = [p[0], p[1] - 1000.0 / 60.0, 0.0];
            validate_claim(
                &MoveContext {
                    rules: &rules,
                    quantizer: &q,
                    terrain: &terrain,
                },
                &mut mover,
                p,
                &claim(next, [0.0, -1000.0, 0.0]),
                1.0,
                false,
            )
            .unwrap();
            p = next;
        }
    }

    #[test]
    fn catches_speed_hacks_teleports_walls_flying_and_climbing() {
        let (rules, q, terrain) = setup();
        let check = |mover: &mut MoverState, from, to, v| {
            validate_claim(
                &MoveContext {
                    rules: &rules,
                    quantizer: &q,
                    terrain: &terrain,
                },
                mover,
                from,
                &claim(to, v),
                1.0,
                false,
            )
        };
        // Speed hack: 2x speed every tick drains the bucket, then fails.
        let mut mover = MoverState::new(&rules, 0);
        let mut p = [0.0f32, 0.0, 0.0];
        let mut rejected = None;
        for tick in 0..120 {
            mover.accrue(&rules, 1.0, 0);
            let next = [p[0], p[1] - 2000.0 / 60.0, 0.0];
            match check(&mut mover, p, next, [0.0, -1000.0, 0.0]) {
                Ok(_) => p = next,
                Err(e) => {
                    rejected = Some((tick, e));
                    break;
                }
            }
        }
        let (tick, e) = rejected.expect("a 2x speed hack must be caught");
        assert_eq!(e, MoveRejection::Speed);
        assert!(tick < 30, "caught only after {tick} ticks");
        // Teleport.
        let mut mover = MoverState::new(&rules, 0);
        assert_eq!(
            check(&mut mover, [0.0; 3], [5000.0, 0.0, 0.0], [0.0; 3]),
            Err(MoveRejection::Teleport)
        );
        // Velocity lie.
        assert_eq!(
            check(&mut mover, [0.0; 3], [1.0, 0.0, 0.0], [5000.0, 0.0, 0.0]),
            Err(MoveRejection::VelocityTooHigh)
        );
        // Through the wall at y = 500..520.
        let mut mover = MoverState::new(&rules, 0);
        assert_eq!(
            check(&mut mover, [0.0, 490.0, 0.0], [0.0, 530.0, 0.0], [0.0; 3]),
            Err(MoveRejection::Wall)
        );
        // Along it is fine.
        assert!(check(&mut mover, [0.0, 490.0, 0.0], [20.0, 490.0, 0.0], [0.0; 3]).is_ok());
        // Flying: rising above the ground.
        let mut mover = MoverState::new(&rules, 0);
        assert_eq!(
            check(&mut mover, [0.0, 0.0, 0.0], [0.0, 0.0, 300.0], [0.0; 3]),
            Err(MoveRejection::Flying)
        );
        let mut mover = MoverState::new(&rules, 0);
        mover.airborne = true;
        mover.air_start_z = 0.0;
        assert_eq!(
            check(&mut mover, [0.0, 0.0, 100.0], [0.0, 0.0, 120.0], [0.0; 3]),
            Err(MoveRejection::Flying)
        );
        // Hovering: never descending fast enough is caught by gravity.
        let mut mover = MoverState::new(&rules, 0);
        let mut z = 2_000.0f32;
        let mut caught = false;
        for _ in 0..120 {
            mover.accrue(&rules, 1.0, 0);
            match check(
                &mut mover,
                [-500.0, 0.0, z],
                [-500.0, 0.0, z - 1.0],
                [0.0, 0.0, -60.0],
            ) {
                Ok(_) => z -= 1.0,
                Err(e) => {
                    assert_eq!(e, MoveRejection::Flying);
                    caught = true;
                    break;
                }
            }
        }
        assert!(caught, "a slow hover must be caught");
        // A real fall from a ledge passes.
        let mut mover = MoverState::new(&rules, 0);
        let mut z = 400.0f32;
        let mut vz = 0.0f32;
        let mut from = [-500.0f32, 0.0, 0.0];
        let mut ok = 0;
        // Start on a (virtual) ledge: the first claim leaves the ground.
        from[2] = z;
        mover.airborne = false;
        while z > 0.0 {
            mover.accrue(&rules, 1.0, 0);
            vz -= rules.gravity * rules.tick_dt;
            let nz = (z + vz * rules.tick_dt).max(0.0);
            check(&mut mover, from, [-500.0, 0.0, nz], [0.0, 0.0, vz]).unwrap();
            z = nz;
            from[2] = z;
            ok += 1;
        }
        assert!(ok > 5);
        // Under the ground.
        let mut mover = MoverState::new(&rules, 0);
        assert_eq!(
            check(&mut mover, [0.0; 3], [0.0, 0.0, -100.0], [0.0; 3]),
            Err(MoveRejection::UnderGround)
        );
        // Walking up the cliff at x = 100..200 (5 units up per unit), even
        // in tiny steps.
        let mut mover = MoverState::new(&rules, 0);
        assert_eq!(
            check(&mut mover, [100.0, 0.0, 0.0], [101.0, 0.0, 5.0], [0.0; 3]),
            Err(MoveRejection::StepTooHigh)
        );
        assert_eq!(
            check(&mut mover, [100.0, 0.0, 0.0], [116.0, 0.0, 80.0], [0.0; 3]),
            Err(MoveRejection::StepTooHigh)
        );
        // Walking down it is fine.
        assert!(
            check(
                &mut mover,
                [150.0, 0.0, 250.0],
                [140.0, 0.0, 200.0],
                [0.0; 3]
            )
            .is_ok()
        );
        // Out of the world, NaN.
        assert_eq!(
            check(&mut mover, [0.0; 3], [1e9, 0.0, 0.0], [0.0; 3]),
            Err(MoveRejection::OutOfBounds)
        );
        assert_eq!(
            check(&mut mover, [0.0; 3], [f32::NAN, 0.0, 0.0], [0.0; 3]),
            Err(MoveRejection::NonFinite)
        );
        // Stunned.
        let r = validate_claim(
            &MoveContext {
                rules: &rules,
                quantizer: &q,
                terrain: &terrain,
            },
            &mut mover,
            [0.0; 3],
            &claim([10.0, 0.0, 0.0], [0.0; 3]),
            1.0,
            true,
        );
        assert_eq!(r, Err(MoveRejection::Immobilized));
    }

    #[test]
    fn a_burst_after_lag_passes_within_the_rtt_allowance() {
        let (rules, q, terrain) = setup();
        let mut mover = MoverState::new(&rules, 100);
        let mut p = [0.0f32, -2000.0, 0.0];
        // Nothing for 12 ticks (200 ms), then 12 claims at once.
        for _ in 0..12 {
            mover.accrue(&rules, 1.0, 100);
        }
        for _ in 0..12 {
            let next = [p[0], p[1] - 1000.0 / 60.0, 0.0];
            validate_claim(
                &MoveContext {
                    rules: &rules,
                    quantizer: &q,
                    terrain: &terrain,
                },
                &mut mover,
                p,
                &claim(next, [0.0, -1000.0, 0.0]),
                1.0,
                false,
            )
            .unwrap();
            p = next;
        }
    }

    #[test]
    fn action_checks() {
        let t = FactionTable::default();
        let actions = default_actions();
        let me = Actor {
            position: [0.0; 3],
            state: EntityState::ALIVE,
            buffs: BuffFlags::NONE,
            faction: Faction::ALLIANCE,
            mp: 100.0,
        };
        let foe = Actor {
            position: [200.0, 0.0, 0.0],
            faction: Faction::HORDE,
            ..me
        };
        let strike = actions.iter().find(|a| a.id == 1);
        assert_eq!(check_action(strike, 0, 10, &me, Some(&foe), &t), Ok(()));
        assert_eq!(
            check_action(strike, 20, 10, &me, Some(&foe), &t),
            Err(ActionRefusal::OnCooldown)
        );
        assert_eq!(
            check_action(strike, 0, 10, &me, Some(&me), &t),
            Err(ActionRefusal::NotAnEnemy)
        );
        let far = Actor {
            position: [2000.0, 0.0, 0.0],
            ..foe
        };
        assert_eq!(
            check_action(strike, 0, 10, &me, Some(&far), &t),
            Err(ActionRefusal::OutOfRange)
        );
        assert_eq!(
            check_action(strike, 0, 10, &me, None, &t),
            Err(ActionRefusal::NoTarget)
        );
        assert_eq!(
            check_action(None, 0, 10, &me, Some(&foe), &t),
            Err(ActionRefusal::UnknownAction)
        );
        let poor = Actor { mp: 1.0, ..me };
        let fireball = actions.iter().find(|a| a.id == 2);
        assert_eq!(
            check_action(fireball, 0, 10, &poor, Some(&foe), &t),
            Err(ActionRefusal::NotEnoughMana)
        );
        let dead = Actor {
            state: EntityState::NONE,
            ..me
        };
        assert_eq!(
            check_action(strike, 0, 10, &dead, Some(&foe), &t),
            Err(ActionRefusal::Dead)
        );
        let frozen = Actor {
            buffs: BuffFlags::FROZEN,
            ..me
        };
        assert_eq!(
            check_action(strike, 0, 10, &frozen, Some(&foe), &t),
            Err(ActionRefusal::Incapacitated)
        );
        let heal = actions.iter().find(|a| a.id == 4);
        assert_eq!(
            check_action(heal, 0, 10, &me, Some(&foe), &t),
            Err(ActionRefusal::NotAFriend)
        );
        for r in ActionRefusal::ALL {
            assert_ne!(r.code(), ACTION_DONE);
            assert_eq!(ActionRefusal::from_code(r.code()), Some(r));
        }
        assert_eq!(result_code(Ok(())), 0);
    }

    #[test]
    fn rtt_credit_is_capped() {
        // Finding 7: delaying Pongs and acks raised the measured RTT, and
        // the credit grew with it without limit.
        let (rules, _, _) = setup();
        assert_eq!(rules.credit_cap(2_500), rules.credit_cap(MAX_RTT_CREDIT_MS));
        assert_eq!(
            rules.credit_cap(60_000),
            rules.credit_cap(MAX_RTT_CREDIT_MS)
        );
        assert!(rules.credit_cap(50) < rules.credit_cap(MAX_RTT_CREDIT_MS));
        // Standing still at a 2.5 s RTT banks no more than at the cap.
        let mut mover = MoverState::new(&rules, 2_500);
        for _ in 0..600 {
            mover.accrue(&rules, 1.0, 2_500);
        }
        assert!(mover.credit <= rules.credit_cap(MAX_RTT_CREDIT_MS) + 1e-3);
    }

    #[test]
    fn the_rtt_credit_cap_is_the_configured_one() {
        let config = tos_config::AuthorityConfig {
            max_rtt_credit_ms: 100,
            ..tos_config::AuthorityConfig::default()
        };
        let rules = MovementRules::new(&config, 60);
        assert_eq!(rules.credit_cap(250), rules.credit_cap(100));
        assert!(rules.credit_cap(50) < rules.credit_cap(100));
        let default = MovementRules::new(&tos_config::AuthorityConfig::default(), 60);
        assert_eq!(default.max_rtt_credit, MAX_RTT_CREDIT_MS as f32 / 1000.0);
    }

    #[test]
    fn a_long_claim_cannot_skip_a_cliff_between_samples() {
        // A one-cell ridge (1.5 steps up and down again) half-way along a
        // claim of 32 cells: 16 samples two cells apart stepped over it.
        let rules = MovementRules::new(&tos_config::AuthorityConfig::default(), 60);
        let rise = rules.max_step * 1.5;
        // A ridge: one grid point at x = 1700 stands `rise` high.
        let mut heights = vec![0.0f32; 40];
        heights[17] = rise;
        let terrain = Terrain {
            heightfield: Heightfield::new([0.0, 0.0], 100.0, [40, 1], heights).unwrap(),
            obstacles: ObstacleIndex::new(vec![]).unwrap(),
        };
        let q = Quantizer::seed_default();
        let mut mover = MoverState::new(&rules, 0);
        // Credit as if banked (isolates the path check from the RTT cap).
        mover.credit = 1e6;
        let r = validate_claim(
            &MoveContext {
                rules: &rules,
                quantizer: &q,
                terrain: &terrain,
            },
            &mut mover,
            [0.0, 0.0, 0.0],
            &claim([3_200.0, 0.0, 0.0], [0.0; 3]),
            1.0,
            false,
        );
        assert_eq!(r, Err(MoveRejection::StepTooHigh));
    }
}
