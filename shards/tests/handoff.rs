//! Across shards: every entity is conserved through hand-offs over random
//! walks, hysteresis stops bouncing, ghosts make the neighbours' entities
//! visible, and players keep their snapshot stream across a hand-off.

mod common;

use std::collections::BTreeMap;

use common::{Cluster, layout};
use tos_client::SnapshotReceiver;
use tos_config::{LayoutKind, ServerConfig};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::util::Rng;
use tos_shards::{Character, ClientId, EntityType, Faction, Shard, SpawnPoint, WorldData};

fn walkers(rng: &mut Rng, n: usize, speed: f32) -> WorldData {
    let mut data = WorldData::default();
    for _ in 0..n {
        // Homes around the block corners of a 4 x 4 layout of the default
        // world (blocks of 204,800 units), so walks cross borders often.
        let cx = (rng.below(3) as f32 - 1.0) * 204_800.0;
        let cy = (rng.below(3) as f32 - 1.0) * 204_800.0;
        data.spawns.push(SpawnPoint {
            kind: if rng.chance(0.5) {
                EntityType::Monster
            } else {
                EntityType::Npc
            },
            faction: Faction::MONSTERS,
            position: [
                cx + rng.range(-20_000.0, 20_000.0),
                cy + rng.range(-20_000.0, 20_000.0),
                0.0,
            ],
            wander_radius: 120_000.0,
            speed,
            hp: 100.0,
            mp: 0.0,
            template: 0,
            patrol: 0,
        });
    }
    data
}

#[test]
fn hand_offs_conserve_every_entity_over_random_walks() {
    let config = ServerConfig::default();
    let layout = layout(&config, 16, LayoutKind::Blocks { cols: 4, rows: 4 });
    let mut rng = Rng::new(77);
    let data = walkers(&mut rng, 400, 30_000.0);
    let mut cluster = Cluster::new(&config, &layout, &data);
    let all = cluster.census();
    assert_eq!(all.len(), 400);
    let h = layout.border_hysteresis();
    let mut per_entity: BTreeMap<u32, u32> = BTreeMap::new();
    for tick in 1..=900u32 {
        cluster.step(tick);
        // Every entity is simulated by exactly one shard or in exactly one
        // hand-off in flight.
        assert_eq!(cluster.census(), all, "tick {tick}");
        for hf in &cluster.handoffs {
            *per_entity.entry(hf.entity.net_id).or_default() += 1;
            let to = &cluster.shards[usize::from(hf.to_core)];
            // Handed off only once deep enough inside the new owner.
            assert_eq!(to.world().owner_at(hf.entity.position), hf.to_core);
            assert!(to.world().depth_in_owner(hf.entity.position) >= h);
        }
        // Ghosts are copies of entities that exist, and never of one's own.
        for s in &cluster.shards {
            let locals: Vec<u32> = s.local_net_ids().collect();
            for &id in &all {
                if let Some(info) = s.entity(id) {
                    assert_eq!(info.ghost, !locals.contains(&id));
                }
            }
        }
    }
    assert!(
        cluster.handoff_count > 1_000,
        "only {} hand-offs",
        cluster.handoff_count
    );
    // With 30,000 units/s walks, 900 ticks cover ~450,000 units: a
    // bouncing entity would be handed off every tick near a border.
    let most = per_entity.values().copied().max().unwrap_or(0);
    assert!(most < 60, "an entity was handed off {most} times");
    let ghosts: u32 = cluster.shards.iter().map(|s| s.ghost_count()).sum();
    assert!(ghosts > 0);
}

#[test]
fn walking_along_a_border_does_not_bounce() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut data = WorldData::default();
    data.spawns.push(common::still_monster([-100.0, 0.0, 0.0]));
    let mut cluster = Cluster::new(&config, &layout, &data);
    let id = cluster.census()[0];
    let owner = |c: &Cluster| {
        c.shards
            .iter()
            .position(|s| s.local_net_ids().any(|n| n == id))
    };
    // Zig-zag across x = 0 by ±150 (< 200 hysteresis) for 300 ticks.
    for tick in 1..=300u32 {
        if let Some(core) = owner(&cluster) {
            let x = if tick % 2 == 0 { 150.0 } else { -150.0 };
            cluster.shards[core]
                .teleport(id, [x, tick as f32, 0.0])
                .unwrap();
        }
        cluster.step(tick);
        assert_eq!(cluster.census(), [id]);
    }
    assert_eq!(cluster.handoff_count, 0);
    // ±250: every crossing hands it off once, no more.
    let mut crossings = 0;
    for tick in 301..=400u32 {
        if let Some(core) = owner(&cluster) {
            let x = if (tick / 10) % 2 == 0 { 250.0 } else { -250.0 };
            // A crossing: the target side belongs to the other core.
            if usize::from(x > 0.0) != core {
                crossings += 1;
            }
            cluster.shards[core].teleport(id, [x, 0.0, 0.0]).unwrap();
        }
        cluster.step(tick);
        assert_eq!(cluster.census(), [id]);
    }
    assert_eq!(cluster.handoff_count, crossings);
}

#[test]
fn ghosts_make_the_neighbours_entities_visible() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut data = WorldData::default();
    for (x, kind) in [
        (1_000.0, EntityType::Monster),
        (5_000.0, EntityType::Item),
        (30_000.0, EntityType::Item),
        (60_000.0, EntityType::Npc),
        (90_000.0, EntityType::Player),
    ] {
        data.spawns.push(SpawnPoint {
            kind,
            ..common::still_monster([x, 0.0, 0.0])
        });
    }
    let mut cluster = Cluster::new(&config, &layout, &data);
    let viewer = ClientId(5);
    cluster.shards[0]
        .add_player(
            viewer,
            &Character::new(5, [-1_000.0, 0.0, 0.0], Faction::ALLIANCE),
        )
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    for tick in 1..=30u32 {
        cluster.step(tick);
        let n = cluster.shards[0].write_snapshot(viewer, tick, 1200, &mut buf);
        receiver.apply_message(&buf[..n]).unwrap();
        cluster.shards[0].on_snapshot_acked(viewer, tick);
    }
    let mine = cluster.shards[0].player_of(viewer).unwrap();
    let mut seen: Vec<u32> = receiver
        .visible()
        .map(|(id, _, _)| id)
        .filter(|&i| i != mine)
        .collect();
    seen.sort_unstable();
    // Monster at 2,000 (D 50,000), item at 6,000 (D 10,000), NPC at
    // 61,000 is beyond 50,000, "player" spawn at 91,000 within 100,000;
    // the item at 31,000 is too far.
    let expect: Vec<u32> = cluster.shards[1]
        .local_net_ids()
        .filter(|&id| {
            let r = cluster.shards[1].entity(id).unwrap().record;
            let d = r.kind.interest_distance(&config.aoi.distances);
            f64::from(r.position[0] + 1_000.0) <= d
        })
        .collect::<Vec<_>>();
    let mut expect = expect;
    expect.sort_unstable();
    assert_eq!(seen, expect);
    assert_eq!(seen.len(), 3);
    for id in seen {
        let (_, state) = receiver.state(id).unwrap();
        assert_eq!(state, cluster.shards[1].entity(id).unwrap().quantized);
        assert!(cluster.shards[0].entity(id).unwrap().ghost);
    }
}

#[test]
fn a_player_keeps_its_stream_across_a_hand_off() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut data = WorldData::default();
    for x in [-3_000.0, 3_000.0] {
        data.spawns.push(SpawnPoint {
            kind: EntityType::Monster,
            faction: Faction::MONSTERS,
            position: [x, 2_000.0, 0.0],
            wander_radius: 1_000.0,
            speed: 300.0,
            hp: 100.0,
            mp: 0.0,
            template: 0,
            patrol: 0,
        });
    }
    let mut cluster = Cluster::new(&config, &layout, &data);
    let client = ClientId(9);
    cluster.shards[0]
        .add_player(
            client,
            &Character::new(9, [-2_000.0, 0.0, 0.0], Faction::ALLIANCE),
        )
        .unwrap();
    let me = cluster.shards[0].player_of(client).unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    let mut x = -2_000.0f32;
    let mut seq = 0;
    let mut cores_seen = Vec::new();
    for tick in 1..=400u32 {
        let core = cluster
            .shards
            .iter()
            .position(|s| s.clients().contains(&client));
        if let Some(core) = core {
            if tick <= 300 {
                x += 15.0;
                seq += 1;
                cluster.shards[core]
                    .push_claim(
                        client,
                        MovementClaim {
                            input_seq: seq,
                            position: [x, 0.0, 0.0],
                            velocity: [900.0, 0.0, 0.0],
                            yaw: 0.0,
                            anim: 1,
                        },
                    )
                    .unwrap();
            }
        }
        cluster.step(tick);
        let Some(core) = cluster
            .shards
            .iter()
            .position(|s| s.clients().contains(&client))
        else {
            continue; // in flight this tick
        };
        if !cores_seen.contains(&core) {
            cores_seen.push(core);
        }
        let shard: &mut Shard = &mut cluster.shards[core];
        let n = shard.write_snapshot(client, tick, 1200, &mut buf);
        assert!(n > 0);
        let info = receiver.apply_message(&buf[..n]).unwrap();
        assert_eq!(info.missing_baselines, 0);
        assert_eq!(info.input_ack, seq);
        shard.on_snapshot_acked(client, tick);
        assert_eq!(shard.cheat_counters(client).unwrap().movement_total(), 0);
    }
    assert_eq!(cores_seen, [0, 1]);
    let shard = &cluster.shards[1];
    let (_, state) = receiver.state(me).unwrap();
    assert_eq!(state, shard.entity(me).unwrap().quantized);
    let view: Vec<u32> = {
        let mut v: Vec<u32> = shard
            .view_of(client)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        v.sort_unstable();
        v
    };
    let mut seen: Vec<u32> = receiver.visible().map(|(id, _, _)| id).collect();
    seen.sort_unstable();
    assert_eq!(seen, view);
    assert_eq!(seen.len(), 3);
}
