//! AI transitions on one shard: aggro in sight, chase and attack, leash
//! home with healing, fighting back, fleeing, death and respawn, paths
//! around walls, patrols.

use tos_config::{AiKind, BaseStats, LayoutKind, ServerConfig, ShardLayout};

use super::*;
use crate::entity::ClientId;
use crate::handoff::RemoteEffect;
use crate::shard::{Character, Shard, ShardCapacity};
use crate::world::{Aabb, SpawnPoint, WorldData};

const WOLF: u16 = 1;
const BOAR: u16 = 2;
const COWARD: u16 = 3;
const SHEEP: u16 = 4;

fn profile(id: u16, ai: AiKind, aggro: f32, flee_below: f32) -> NpcProfile {
    let mut skills = [0; MAX_NPC_SKILLS];
    skills[0] = 1; // the melee strike: 10 damage, 300 range, 30 ticks
    NpcProfile {
        id,
        kind: EntityType::Monster,
        faction: Faction::MONSTERS,
        level: 1,
        stats: BaseStats {
            int: 10,
            str: 10,
            con: 10,
            men: 10,
            dex: 10,
            wit: 10,
        },
        hp: 100.0,
        mp: 0.0,
        speed: 300.0,
        aggro_range: aggro,
        leash_range: 3_000.0,
        skills,
        skill_count: 1,
        loot: None,
        ai,
        flee_below,
        respawn_secs: 2.0,
    }
}

fn book() -> NpcBook {
    NpcBook {
        templates: vec![
            profile(WOLF, AiKind::Aggressive, 1_200.0, 0.0),
            profile(BOAR, AiKind::Defensive, 0.0, 0.0),
            profile(COWARD, AiKind::Aggressive, 1_200.0, 0.5),
            profile(SHEEP, AiKind::Passive, 0.0, 0.0),
        ],
        routes: vec![PatrolPath {
            id: 7,
            points: vec![[0.0, 0.0], [600.0, 0.0], [600.0, 600.0]],
            looped: true,
        }],
    }
}

fn npc_at(template: u16, x: f32, y: f32) -> SpawnPoint {
    SpawnPoint {
        kind: EntityType::Monster,
        faction: Faction::MONSTERS,
        position: [x, y, 0.0],
        wander_radius: 0.0,
        speed: 300.0,
        hp: 100.0,
        mp: 0.0,
        template,
        patrol: 0,
    }
}

struct World1 {
    shard: Shard,
    tick: u32,
}

impl World1 {
    fn new(spawns: Vec<SpawnPoint>, obstacles: Vec<Aabb>) -> Self {
        let config = ServerConfig::default();
        let layout = ShardLayout {
            cores: 1,
            kind: LayoutKind::Stripes,
            ..ShardLayout::default()
        }
        .resolve(config.world.quadrant_grid())
        .unwrap();
        let data = WorldData {
            spawns,
            obstacles,
            npcs: book(),
            ..WorldData::default()
        };
        let capacity = ShardCapacity {
            entities: 256,
            clients: 8,
            initial_view: 64,
            max_view: 256,
            inputs_per_tick: 8,
        };
        let shard = Shard::with_capacity(0, &config, &layout, data, capacity).unwrap();
        Self { shard, tick: 0 }
    }

    fn player(&mut self, at: [f32; 3]) -> u32 {
        let c = ClientId(self.shard.client_count() as u32 + 1);
        self.shard
            .add_player(c, &Character::new(u64::from(c.0), at, Faction::ALLIANCE))
            .unwrap();
        self.shard.player_of(c).unwrap()
    }

    fn npc(&self) -> u32 {
        self.shard
            .local_net_ids()
            .find(|&n| self.shard.entity(n).unwrap().record.template != 0)
            .unwrap()
    }

    fn brain(&self, net: u32) -> Brain {
        self.shard.entity(net).unwrap().record.ai
    }

    fn pos(&self, net: u32) -> [f32; 3] {
        self.shard.entity(net).unwrap().record.position
    }

    fn hp(&self, net: u32) -> f32 {
        self.shard.entity(net).unwrap().record.hp[0]
    }

    fn run(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.tick += 1;
            self.shard.tick(self.tick);
        }
    }

    /// Ticks until `f` holds (at most `limit` ticks); the ticks it took.
    fn until(&mut self, limit: u32, mut f: impl FnMut(&Self) -> bool) -> Option<u32> {
        for k in 1..=limit {
            self.run(1);
            if f(self) {
                return Some(k);
            }
        }
        None
    }

    fn hurt(&mut self, net: u32, source: u32, damage: f32) {
        self.shard
            .apply_remote_effect(RemoteEffect {
                to_core: 0,
                target: net,
                source,
                source_client: None,
                skill: 0,
                strike: None,
                damage,
                heal: 0.0,
                buff: None,
            })
            .unwrap();
    }
}

fn d2(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

#[test]
fn an_aggressive_npc_sees_chases_and_attacks_an_enemy() {
    let mut w = World1::new(vec![npc_at(WOLF, 0.0, 0.0)], vec![]);
    let wolf = w.npc();
    assert_eq!(w.shard.npc_template(wolf).map(|t| t.id), Some(WOLF));
    // Out of aggro range: nothing.
    let me = w.player([2_000.0, 0.0, 0.0]);
    w.run(30);
    assert_eq!(w.brain(wolf).state, AiState::Idle);
    w.shard.teleport(me, [1_000.0, 0.0, 0.0]).unwrap();
    let t = w.until(THINK_EVERY + 1, |w| w.brain(wolf).state == AiState::Chase);
    assert!(t.is_some(), "{:?}", w.brain(wolf));
    assert_eq!(w.brain(wolf).target, me);
    w.until(240, |w| w.brain(wolf).state == AiState::Attack)
        .expect("reaches melee range");
    assert!(d2(w.pos(wolf), w.pos(me)) <= 300.0);
    w.until(60, |w| w.hp(me) < 100.0).expect("attacks");
    assert!(
        w.shard.npc_template(me).is_none(),
        "players have no NPC template"
    );
    assert!(w.shard.ai_stats().attacks >= 1);
    assert!(
        w.shard
            .entity(wolf)
            .unwrap()
            .record
            .state
            .contains(crate::EntityState::IN_COMBAT)
    );
}

#[test]
fn no_aggro_without_line_of_sight_and_none_for_friends_or_the_passive() {
    let wall = Aabb::new([500.0, -3_000.0, -100.0], [520.0, 3_000.0, 1_000.0]);
    let mut w = World1::new(vec![npc_at(WOLF, 0.0, 0.0)], vec![wall]);
    let wolf = w.npc();
    w.player([1_000.0, 0.0, 0.0]);
    w.run(60);
    assert_eq!(w.brain(wolf).state, AiState::Idle);
    // A passive NPC neither aggroes nor fights back.
    let mut w = World1::new(vec![npc_at(SHEEP, 0.0, 0.0)], vec![]);
    let sheep = w.npc();
    let me = w.player([200.0, 0.0, 0.0]);
    w.run(30);
    w.hurt(sheep, me, 10.0);
    w.run(30);
    assert_eq!(w.brain(sheep).state, AiState::Idle);
}

#[test]
fn a_chase_past_the_leash_walks_home_and_heals() {
    let mut w = World1::new(vec![npc_at(WOLF, 0.0, 0.0)], vec![]);
    let wolf = w.npc();
    let me = w.player([1_000.0, 0.0, 0.0]);
    w.until(THINK_EVERY + 1, |w| w.brain(wolf).state == AiState::Chase)
        .unwrap();
    w.hurt(wolf, me, 40.0);
    // The player runs far away: the wolf follows to its leash, then turns.
    w.shard.teleport(me, [9_000.0, 0.0, 0.0]).unwrap();
    w.until(900, |w| w.brain(wolf).state == AiState::Return)
        .expect("leashes");
    let turned_at = w.pos(wolf)[0];
    assert!((2_900.0..=3_400.0).contains(&turned_at), "{turned_at}");
    assert_eq!(w.hp(wolf), 60.0);
    w.until(900, |w| w.brain(wolf).state == AiState::Idle)
        .expect("home again");
    assert!(d2(w.pos(wolf), [0.0; 3]) <= 25.0, "{:?}", w.pos(wolf));
    assert_eq!(w.hp(wolf), 100.0);
    assert!(w.shard.ai_stats().leashes >= 1);
    // Returning, it ignores enemies; home, it sees them again.
    w.shard.teleport(me, [800.0, 0.0, 0.0]).unwrap();
    w.until(THINK_EVERY + 1, |w| w.brain(wolf).state == AiState::Chase)
        .expect("aggro again");
}

#[test]
fn a_defensive_npc_fights_back_only_when_hurt() {
    let mut w = World1::new(vec![npc_at(BOAR, 0.0, 0.0)], vec![]);
    let boar = w.npc();
    let me = w.player([500.0, 0.0, 0.0]);
    w.run(60);
    assert_eq!(w.brain(boar).state, AiState::Idle);
    w.hurt(boar, me, 10.0);
    w.run(1);
    assert_eq!(w.brain(boar).state, AiState::Chase);
    assert_eq!(w.brain(boar).target, me);
}

#[test]
fn a_coward_flees_at_low_hp_then_goes_home() {
    let mut w = World1::new(vec![npc_at(COWARD, 0.0, 0.0)], vec![]);
    let npc = w.npc();
    let me = w.player([250.0, 0.0, 0.0]);
    w.until(THINK_EVERY + 1, |w| w.brain(npc).state != AiState::Idle)
        .unwrap();
    w.hurt(npc, me, 60.0);
    w.run(1);
    assert_eq!(w.brain(npc).state, AiState::Flee);
    let before = d2(w.pos(npc), w.pos(me));
    w.run(60);
    assert!(d2(w.pos(npc), w.pos(me)) > before + 200.0);
    w.until(4 * 60, |w| w.brain(npc).state == AiState::Return)
        .expect("stops fleeing");
    assert_eq!(w.shard.ai_stats().flights, 1);
}

#[test]
fn a_dead_npc_respawns_at_home_after_its_template_time() {
    let mut w = World1::new(vec![npc_at(SHEEP, 0.0, 0.0)], vec![]);
    let sheep = w.npc();
    let me = w.player([5_000.0, 0.0, 0.0]);
    w.run(1);
    w.shard.teleport(sheep, [300.0, 300.0, 0.0]).unwrap();
    w.hurt(sheep, me, 1_000.0);
    w.run(1);
    assert_eq!(w.brain(sheep).state, AiState::Dead);
    // Two seconds at 60 Hz.
    let t = w
        .until(200, |w| w.brain(sheep).state != AiState::Dead)
        .unwrap();
    assert!((119..=121).contains(&t), "{t}");
    assert_eq!(w.hp(sheep), 100.0);
    assert!(d2(w.pos(sheep), [0.0; 3]) < 1.0);
}

#[test]
fn a_chaser_walks_around_a_wall_never_through_it() {
    // A low wall: it blocks walking, not sight (eyes at 150).
    let wall = Aabb::new([500.0, -1_000.0, -100.0], [520.0, 1_000.0, 100.0]);
    let mut w = World1::new(vec![npc_at(WOLF, 0.0, 0.0)], vec![wall]);
    let wolf = w.npc();
    let me = w.player([1_000.0, 0.0, 0.0]);
    let mut last = w.pos(wolf);
    let mut attacked = false;
    for _ in 0..1_200 {
        w.run(1);
        let p = w.pos(wolf);
        assert!(!wall.segment_intersects(last, p), "{last:?} -> {p:?}");
        last = p;
        if w.brain(wolf).state == AiState::Attack {
            attacked = true;
            break;
        }
    }
    assert!(attacked, "{:?} at {:?}", w.brain(wolf), w.pos(wolf));
    assert!(w.shard.ai_stats().paths_planned >= 1);
    assert!(d2(w.pos(wolf), w.pos(me)) <= 300.0);
}

#[test]
fn a_patrol_walks_its_points_in_order() {
    let mut p = npc_at(SHEEP, 0.0, 0.0);
    p.patrol = 7;
    let mut w = World1::new(vec![p], vec![]);
    let sheep = w.npc();
    assert_eq!(w.brain(sheep).patrol, 1);
    let points = [[600.0, 0.0, 0.0], [600.0, 600.0, 0.0], [0.0, 0.0, 0.0]];
    for target in points {
        w.until(600, |w| d2(w.pos(sheep), target) < 25.0)
            .unwrap_or_else(|| panic!("never reached {target:?}: {:?}", w.pos(sheep)));
    }
}

#[test]
fn the_shipped_spawn_groups_populate_a_shard_and_live() {
    let npcs = tos_config::NpcData::embedded().unwrap();
    let config = ServerConfig::default();
    let layout = ShardLayout {
        cores: 1,
        kind: LayoutKind::Stripes,
        ..ShardLayout::default()
    }
    .resolve(config.world.quadrant_grid())
    .unwrap();
    // A wall next to the Alliance town: members are placed outside it.
    let wall = Aabb::new([-101_000.0, -3_000.0, -100.0], [-100_900.0, 3_000.0, 500.0]);
    let data = WorldData {
        obstacles: vec![wall],
        ..WorldData::default()
    }
    .with_npcs(&npcs);
    assert_eq!(data.spawns.len() as u64, npcs.spawned());
    let mut shard =
        Shard::with_capacity(0, &config, &layout, data, ShardCapacity::default()).unwrap();
    let nets: Vec<u32> = shard.local_net_ids().collect();
    assert_eq!(nets.len() as u64, npcs.spawned());
    let guards = nets
        .iter()
        .filter(|&&n| shard.entity(n).unwrap().record.ai.patrol != 0)
        .count();
    assert_eq!(guards, 15, "the guards and strollers of the patrol groups");
    for tick in 1..=600 {
        shard.tick(tick);
    }
    for n in nets {
        let r = shard.entity(n).unwrap().record;
        let t = npcs.template(r.template).unwrap();
        assert_eq!(r.faction, Faction(t.faction));
        assert!(!wall.contains(r.position), "{} inside the wall", t.name);
        assert_eq!(r.position[2], 0.0, "on the (flat) ground");
        let home = r.ai.home;
        let d = ((r.position[0] - home[0]).powi(2) + (r.position[1] - home[1]).powi(2)).sqrt();
        // Wanderers stay within their radius; patrols within their route.
        assert!(d <= 15_000.0, "{} strayed {d} from home", t.name);
    }
    assert!(shard.ai_stats().aggros == 0, "no players, no fights");
}
