//! The hot paths allocate nothing in steady state: after a warm-up, a
//! whole tick of two neighbouring shards — inputs, simulation, AOI
//! upkeep, hand-offs, ghost exchange, snapshots for every client and their
//! acknowledgements, NPC AI with path planning and attacks — makes no
//! heap allocation; nor does a tick of combat (casts, area skills, deaths,
//! experience, loot drops, pick-ups, consumables, events). Counted with a
//! counting global allocator on this
//! thread only.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{Cluster, layout};
use tos_client::SnapshotReceiver;
use tos_config::{LayoutKind, ServerConfig};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::util::Rng;
use tos_shards::{Character, ClientId, EntityType, Faction, SpawnPoint, WorldData};

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACK.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACK.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = COUNT.with(Cell::get);
    TRACK.with(|t| t.set(true));
    let out = f();
    TRACK.with(|t| t.set(false));
    (out, COUNT.with(Cell::get) - before)
}

#[test]
fn a_steady_tick_allocates_nothing() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut rng = Rng::new(11);
    let mut data = WorldData::default();
    for _ in 0..150 {
        data.spawns.push(SpawnPoint {
            kind: EntityType::Monster,
            faction: Faction::MONSTERS,
            position: [
                rng.range(-8_000.0, 8_000.0),
                rng.range(-8_000.0, 8_000.0),
                0.0,
            ],
            wander_radius: 6_000.0,
            speed: 2_000.0,
            hp: 100.0,
            mp: 0.0,
            template: 0,
            patrol: 0,
        });
    }
    // Aggressive wolves (template 1 of the shipped npcs.ron) behind a row
    // of low walls north of the players' lanes: they see the players over
    // the walls, plan paths round them, chase and attack.
    data.npcs = tos_shards::NpcBook::from_data(&tos_config::NpcData::embedded().unwrap());
    for k in 0..8 {
        let x = -6_000.0 + k as f32 * 1_500.0;
        data.obstacles.push(tos_shards::Aabb::new(
            [x, 2_200.0, -100.0],
            [x + 1_000.0, 2_400.0, 100.0],
        ));
    }
    for _ in 0..60 {
        data.spawns.push(SpawnPoint {
            kind: EntityType::Monster,
            faction: Faction::MONSTERS,
            position: [
                rng.range(-6_000.0, 6_000.0),
                rng.range(2_600.0, 3_400.0),
                0.0,
            ],
            wander_radius: 500.0,
            speed: 300.0,
            hp: 120.0,
            mp: 20.0,
            template: 1,
            patrol: 0,
        });
    }
    let mut cluster = Cluster::new(&config, &layout, &data);
    let ai_before = |c: &Cluster| -> (u64, u64) {
        c.shards.iter().fold((0, 0), |(p, a), s| {
            (p + s.ai_stats().paths_planned, a + s.ai_stats().attacks)
        })
    };
    let mut ai_at_start = (0, 0);
    // Players on both sides, walking back and forth across the border.
    let mut players = Vec::new();
    for k in 0..20u32 {
        let x = if k % 2 == 0 { -3_000.0 } else { 3_000.0 };
        let core = usize::from(x > 0.0);
        let id = ClientId(k + 1);
        cluster.shards[core]
            .add_player(
                id,
                &Character::new(u64::from(k), [x, k as f32 * 100.0, 0.0], Faction::ALLIANCE),
            )
            .unwrap();
        players.push((
            id,
            [x, k as f32 * 100.0, 0.0f32],
            if x < 0.0 { 1.0f32 } else { -1.0 },
            SnapshotReceiver::new(),
        ));
    }
    let mut buf = [0u8; 1200];
    let mut seq = 0u32;
    let mut steady_allocs = 0;
    let mut steady_ticks = 0;
    for tick in 1..=1_500u32 {
        let measure = tick > 1_100;
        if tick == 1_101 {
            ai_at_start = ai_before(&cluster);
        }
        let (_, n) = counted(|| {
            seq += 1;
            for (id, p, dir, _) in &mut players {
                if p[0].abs() > 6_000.0 {
                    *dir = -*dir;
                }
                p[0] += *dir * 800.0 / 60.0;
                let core = cluster.shards.iter().position(|s| s.clients().contains(id));
                if let Some(core) = core {
                    cluster.shards[core]
                        .push_claim(
                            *id,
                            MovementClaim {
                                input_seq: seq,
                                position: *p,
                                velocity: [*dir * 800.0, 0.0, 0.0],
                                yaw: 0.0,
                                anim: 1,
                            },
                        )
                        .unwrap();
                }
            }
            cluster.step(tick);
            for (id, _, _, receiver) in &mut players {
                let Some(core) = cluster.shards.iter().position(|s| s.clients().contains(id))
                else {
                    continue;
                };
                let shard = &mut cluster.shards[core];
                let len = shard.write_snapshot(*id, tick, 1200, &mut buf);
                receiver.apply_message(&buf[..len]).unwrap();
                if tick % 7 == 0 {
                    shard.on_snapshot_lost(*id, tick);
                } else {
                    shard.on_snapshot_acked(*id, tick);
                }
            }
        });
        if measure {
            steady_allocs += n;
            steady_ticks += 1;
        }
    }
    assert!(
        cluster.handoff_count > 20,
        "{} hand-offs",
        cluster.handoff_count
    );
    let ai_at_end = ai_before(&cluster);
    assert!(
        ai_at_end.0 > ai_at_start.0 && ai_at_end.1 > ai_at_start.1,
        "the AI planned paths and attacked in the measured ticks: {ai_at_start:?} -> {ai_at_end:?}"
    );
    assert_eq!(
        steady_allocs, 0,
        "{steady_allocs} allocations in {steady_ticks} steady ticks"
    );
}

#[test]
fn steady_combat_allocates_nothing() {
    // Players fight monsters that die, drop loot and respawn; the players
    // cast, pick up, drink potions; the game layer drains the events every
    // tick, as the engine does.
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut rng = Rng::new(5);
    let mut data = WorldData::default();
    for _ in 0..80 {
        data.spawns.push(SpawnPoint {
            kind: EntityType::Monster,
            faction: Faction::MONSTERS,
            position: [rng.range(-600.0, 600.0), rng.range(-600.0, 600.0), 0.0],
            wander_radius: 0.0,
            speed: 0.0,
            hp: 60.0,
            mp: 0.0,
            template: 0,
            patrol: 0,
        });
    }
    let mut cluster = Cluster::new(&config, &layout, &data);
    let monsters: Vec<u32> = cluster.shards[0].local_net_ids().collect();
    let players: Vec<ClientId> = (1..=12).map(ClientId).collect();
    for (k, &c) in players.iter().enumerate() {
        let at = [(k as f32 - 6.0) * 80.0, 0.0, 0.0];
        cluster.shards[0]
            .add_player(c, &Character::new(u64::from(c.0), at, Faction::ALLIANCE))
            .unwrap();
    }
    let potion = tos_shards::ConsumableEffect {
        hp: 30.0,
        mp: 30.0,
        cooldown_ms: 2_000,
    };
    let (mut steady_allocs, mut kills, mut looted, mut events) = (0u64, 0u32, 0u32, 0u64);
    let mut seq = 0u32;
    for tick in 1..=2_400u32 {
        let measure = tick > 1_600;
        let (_, n) = counted(|| {
            let shard = &mut cluster.shards[0];
            seq += 1;
            for (k, &c) in players.iter().enumerate() {
                let target = monsters[(k + tick as usize / 200) % monsters.len()];
                // Strike, Fireball (a cast) or Whirlwind (area) in turn.
                let skill = [1u16, 2, 9][(tick as usize / 31 + k) % 3];
                if (tick + k as u32) % 31 == 0 {
                    shard.push_action(c, seq, skill, target).unwrap();
                }
                if (tick + k as u32) % 17 == 0 {
                    let me = shard.player_of(c).and_then(|p| shard.entity(p)).unwrap();
                    let mine = |n: u32| {
                        shard.entity(n).is_some_and(|e| {
                            let (p, q) = (e.record.position, me.record.position);
                            e.record.kind == EntityType::Item
                                && (p[0] - q[0]).hypot(p[1] - q[1]) < 280.0
                        })
                    };
                    let item = shard.local_net_ids().find(|&n| mine(n));
                    if let Some(item) = item {
                        shard.push_pickup(c, seq, item).unwrap();
                    }
                }
                if tick % 150 == k as u32 {
                    let _ = shard.use_consumable(c, potion);
                }
            }
            cluster.step(tick);
            let shard = &mut cluster.shards[0];
            for e in shard.take_events() {
                events += 1;
                match e {
                    tos_shards::ShardEvent::Looted { .. } => looted += 1,
                    tos_shards::ShardEvent::Combat { flags, .. }
                        if flags.contains(tos_shards::CombatFlags::KILL) =>
                    {
                        kills += 1
                    }
                    _ => {}
                }
            }
        });
        if measure {
            steady_allocs += n;
        }
    }
    assert!(
        looted > 10 && kills > 20 && events > 1_000,
        "looted {looted}, kills {kills}, events {events}"
    );
    assert_eq!(
        steady_allocs, 0,
        "{steady_allocs} allocations in steady combat"
    );
}
