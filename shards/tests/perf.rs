//! Rough timings of one shard's tick and snapshots (not a benchmark: the
//! criterion benches live in `benches/`). Ignored by default; run with
//! `cargo test -p tos-shards --release --test perf -- --ignored --nocapture`.

mod common;

use std::time::Instant;

use common::layout;
use tos_config::{LayoutKind, ServerConfig};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::util::Rng;
use tos_shards::{Character, ClientId, Faction, Shard, ShardCapacity, WorldData};

fn run(name: &str, players: u32, spread: f32, ticks: u32) {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let capacity = ShardCapacity {
        entities: players + 1024,
        clients: players,
        initial_view: 256,
        max_view: 8192,
        inputs_per_tick: 8,
    };
    let mut shard =
        Shard::with_capacity(0, &config, &layout, WorldData::default(), capacity).unwrap();
    let mut rng = Rng::new(1);
    let mut state = Vec::new();
    for k in 0..players {
        let p = [rng.range(-spread, spread), rng.range(-spread, spread), 0.0];
        let id = ClientId(k);
        shard
            .add_player(id, &Character::new(u64::from(k), p, Faction::ALLIANCE))
            .unwrap();
        state.push((id, p, rng.range(0.0, std::f32::consts::TAU)));
    }
    let mut buf = [0u8; 1200];
    let (mut t_tick, mut t_snap, mut bytes, mut seq) = (0.0f64, 0.0f64, 0usize, 0u32);
    let warm = 60;
    for tick in 1..=ticks + warm {
        seq += 1;
        for (id, p, h) in &mut state {
            if rng.chance(0.02) {
                *h = rng.range(0.0, std::f32::consts::TAU);
            }
            let v = [h.cos() * 600.0, h.sin() * 600.0, 0.0];
            p[0] = (p[0] + v[0] / 60.0).clamp(-spread, spread);
            p[1] = (p[1] + v[1] / 60.0).clamp(-spread, spread);
            shard
                .push_claim(
                    *id,
                    MovementClaim {
                        input_seq: seq,
                        position: *p,
                        velocity: v,
                        yaw: 0.0,
                        anim: 1,
                    },
                )
                .unwrap();
        }
        let a = Instant::now();
        shard.tick(tick);
        let b = Instant::now();
        for (id, _, _) in &state {
            bytes += shard.write_snapshot(*id, tick, 1200, &mut buf);
            shard.on_snapshot_acked(*id, tick);
        }
        let c = Instant::now();
        if tick > warm {
            t_tick += (b - a).as_secs_f64();
            t_snap += (c - b).as_secs_f64();
        }
    }
    let views: usize = state
        .iter()
        .map(|(id, _, _)| shard.view_of(*id).len())
        .sum();
    let client_bytes: usize = state
        .iter()
        .map(|(id, _, _)| shard.client_bytes(*id).unwrap())
        .sum();
    println!(
        "{name}: {players} players, mean view {:.0}; per tick: simulation {:.3} ms, snapshots {:.3} ms \
         ({:.2} us per client), {:.0} bytes per client; server state per client {:.1} KiB; \
         entity slot {} B",
        views as f64 / f64::from(players),
        t_tick * 1e3 / f64::from(ticks),
        t_snap * 1e3 / f64::from(ticks),
        t_snap * 1e6 / f64::from(ticks) / f64::from(players),
        bytes as f64 / f64::from(ticks + warm) / f64::from(players),
        client_bytes as f64 / f64::from(players) / 1024.0,
        Shard::bytes_per_entity_slot(),
    );
}

#[test]
#[ignore]
fn spread_world() {
    let ticks = std::env::var("PERF_TICKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    run("spread", 10_000, 409_000.0, ticks);
}

#[test]
#[ignore]
fn battle() {
    run("battle", 1_000, 5_000.0, 120);
}

/// 1,000 standing players fight 3,000 monsters packed around them: every
/// player asks for a skill (Strike, Fireball, Whirlwind, Meteor in turn)
/// twice a second; monsters die, drop loot and respawn. Prints the tick
/// time with and without the fighting, and what happened.
#[test]
#[ignore]
fn combat() {
    for fight in [false, true] {
        let config = ServerConfig::default();
        let layout = layout(&config, 1, LayoutKind::Stripes);
        let players = 1_000u32;
        let capacity = ShardCapacity {
            entities: 16_384,
            clients: players,
            initial_view: 256,
            max_view: 8192,
            inputs_per_tick: 8,
        };
        let mut data = WorldData::default();
        let mut rng = Rng::new(2);
        for _ in 0..3_000 {
            data.spawns.push(tos_shards::SpawnPoint {
                kind: tos_shards::EntityType::Monster,
                faction: Faction::MONSTERS,
                position: [
                    rng.range(-5_000.0, 5_000.0),
                    rng.range(-5_000.0, 5_000.0),
                    0.0,
                ],
                wander_radius: 0.0,
                speed: 0.0,
                hp: 200.0,
                mp: 0.0,
            });
        }
        let mut shard = Shard::with_capacity(0, &config, &layout, data, capacity).unwrap();
        let monsters: Vec<(u32, [f32; 3])> = shard
            .local_net_ids()
            .map(|n| (n, shard.entity(n).unwrap().record.position))
            .collect();
        let mut targets = Vec::new();
        for k in 0..players {
            let p = [
                rng.range(-5_000.0, 5_000.0),
                rng.range(-5_000.0, 5_000.0),
                0.0,
            ];
            let mut c = Character::new(u64::from(k), p, Faction::ALLIANCE);
            c.mp_max = 10_000.0;
            c.mp = 10_000.0;
            shard.add_player(ClientId(k), &c).unwrap();
            let near = monsters
                .iter()
                .min_by(|a, b| {
                    let d = |q: [f32; 3]| (q[0] - p[0]).hypot(q[1] - p[1]);
                    d(a.1).total_cmp(&d(b.1))
                })
                .unwrap();
            // Stand next to it.
            let me = shard.player_of(ClientId(k)).unwrap();
            shard
                .teleport(me, [near.1[0] + 100.0, near.1[1], 0.0])
                .unwrap();
            targets.push(near.0);
        }
        let (warm, ticks) = (120u32, 1_200u32);
        let (mut t_tick, mut deaths, mut drops, mut ups, mut events, mut seq) =
            (0.0f64, 0u32, 0u32, 0u32, 0usize, 0u32);
        for tick in 1..=warm + ticks {
            seq += 1;
            if fight {
                for k in 0..players {
                    if (tick + k) % 30 == 0 {
                        let skill = [1u16, 2, 9, 10][((tick / 30 + k) % 4) as usize];
                        shard
                            .push_action(ClientId(k), seq, skill, targets[k as usize])
                            .unwrap();
                    }
                }
            }
            let a = Instant::now();
            let r = shard.tick(tick);
            events += shard.take_events().count();
            let b = Instant::now();
            if tick > warm {
                t_tick += (b - a).as_secs_f64();
                deaths += r.deaths;
                drops += r.items_dropped;
                ups += r.level_ups;
            }
        }
        println!(
            "combat {}: {players} players, 3000 monsters: tick {:.3} ms; over {ticks} ticks: \
             {deaths} deaths, {drops} items dropped, {ups} level-ups, {events} events",
            if fight { "on " } else { "off" },
            t_tick * 1e3 / f64::from(ticks),
        );
    }
}
