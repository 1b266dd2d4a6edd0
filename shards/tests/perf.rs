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
