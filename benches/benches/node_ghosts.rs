//! Ghosts across a cluster node border, per tick.
//!
//! `cargo bench -p tos-benches --bench node_ghosts`
//!
//! Two one-core shards split the default world at x = 0 as two nodes (as
//! `shards/tests/node_ghosts.rs` does); the east holds 500 monsters within
//! 50 m of the border and 4,500 far from it. Measured, each for one tick's
//! batch of the 500 border ghosts:
//!
//! - `node_ghosts/publish-5000`: the east's `publish_ghosts` pass over its
//!   5,000 entities plus `take_node_ghosts`, and `publish-5000-alone` the
//!   same pass in a process alone (no other node: nothing to publish);
//! - `node_ghosts/encode-500` and `decode-500`: `tos_game::node_ghosts`
//!   (the cluster thread's work on each side);
//! - `node_ghosts/accept-500`: the west's `accept_node_ghosts` upserting
//!   them into its pool and AOI grid (a receiving core's work per tick).
//!
//! Before the criterion run it prints the heap allocations of 600 steady
//! ticks of publish → encode → decode → accept with the vectors recycled
//! the way the engine does (the core's share of it should be zero).

use criterion::{BatchSize, Criterion, black_box, criterion_group, criterion_main};
use tos_config::{LayoutKind, ServerConfig, ShardLayout};
use tos_game::node_ghosts;
use tos_shards::{
    EntityType, Faction, NetIdSpace, NodeGhosts, Shard, ShardCapacity, SpawnParams, WorldData,
};

#[global_allocator]
static GLOBAL: tos_benches::Counting = tos_benches::Counting;

/// Node `node` of two (west 0, east 1), one core each.
fn node(node: u16) -> Shard {
    shard(Some(node))
}

/// Node `node` of two, or (`None`) a process alone with the whole world.
fn shard(node: Option<u16>) -> Shard {
    let config = ServerConfig::default();
    let layout = ShardLayout {
        cores: 1,
        kind: LayoutKind::Stripes,
        border_hysteresis: 200.0,
    }
    .resolve(config.world.quadrant_grid())
    .unwrap();
    let data = WorldData {
        net_ids: NetIdSpace {
            first: u32::from(node.unwrap_or(0)),
            stride: 2,
        },
        ..WorldData::default()
    };
    let capacity = ShardCapacity {
        entities: 8_192,
        ..ShardCapacity::default()
    };
    let mut shard = Shard::with_capacity(0, &config, &layout, data, capacity).unwrap();
    shard.set_ai_enabled(false);
    if let Some(node) = node {
        let other = 1 - node;
        let table = (0..256)
            .map(|i| ((i % 16 >= 8) == (node == 0)).then_some(other))
            .collect();
        assert!(shard.set_foreign_quadrants(table));
    }
    shard
}

/// The east with 500 monsters by the border and 4,500 far from it.
fn east() -> Shard {
    east_with(Some(1))
}

/// The same entities on node `node` (or alone).
fn east_with(node: Option<u16>) -> Shard {
    let mut east = shard(node);
    for i in 0..5_000u32 {
        let (x, y) = if i < 500 {
            (10.0 + (i % 50) as f32 * 100.0, (i / 50) as f32 * 300.0)
        } else {
            (150_000.0 + (i % 70) as f32 * 300.0, (i / 70) as f32 * 300.0)
        };
        let p = SpawnParams::new(EntityType::Monster, Faction(3), [x, y, 0.0]);
        east.spawn(p).unwrap();
    }
    east
}

fn batch_of(east: &mut Shard, tick: u32) -> NodeGhosts {
    let mut local = Vec::new();
    let mut out = Vec::new();
    east.tick(tick);
    east.publish_ghosts(&mut local);
    east.take_node_ghosts(&mut out);
    out.pop().expect("one batch for the west")
}

fn steady_allocations() {
    let mut west = node(0);
    let mut east = east();
    let mut bytes = Vec::new();
    let mut local = Vec::new();
    let mut out = Vec::new();
    let mut pool: Vec<Vec<tos_shards::GhostState>> = Vec::new();
    let mut run = |ticks: std::ops::Range<u32>, count: &mut u64| {
        for t in ticks {
            east.tick(t);
            west.tick(t);
            local.clear();
            let before = tos_benches::allocations();
            east.publish_ghosts(&mut local);
            east.take_node_ghosts(&mut out);
            let core = tos_benches::allocations() - before;
            let b = out.pop().unwrap();
            node_ghosts::encode(1, &b, &mut bytes);
            // The cluster thread keeps the sender's vector for the next
            // batch it receives.
            pool.push(b.ghosts);
            let mut ghosts = pool.pop().unwrap_or_default();
            let (from, tick) = node_ghosts::decode(&bytes, &mut ghosts).unwrap();
            let before = tos_benches::allocations();
            west.accept_node_ghosts(NodeGhosts {
                node: from,
                tick,
                ghosts,
            });
            *count += core + tos_benches::allocations() - before;
            // The west sends the east a batch of its own (empty): the
            // vector circulates back.
            local.clear();
            west.publish_ghosts(&mut local);
            west.take_node_ghosts(&mut out);
            for b in out.drain(..) {
                east.accept_node_ghosts(NodeGhosts { node: 0, ..b });
            }
        }
    };
    let mut warm = 0;
    run(1..121, &mut warm);
    let mut steady = 0;
    run(121..721, &mut steady);
    println!(
        "node_ghosts: 600 steady ticks, 500 border ghosts each: {steady} heap allocations \
         on the cores' side (publish + accept; {warm} while warming up)"
    );
}

fn bench(c: &mut Criterion) {
    steady_allocations();
    let mut g = c.benchmark_group("node_ghosts");
    let mut east = east();
    let batch = batch_of(&mut east, 1);
    assert_eq!(batch.ghosts.len(), 500);
    let mut local = Vec::new();
    let mut out = Vec::new();
    east.tick(2);
    g.bench_function("publish-5000", |b| {
        b.iter(|| {
            local.clear();
            east.publish_ghosts(&mut local);
            east.take_node_ghosts(&mut out);
            for batch in out.drain(..) {
                east.recycle_ghosts(batch.ghosts);
            }
        })
    });
    // The same 5,000 entities on a process that runs the world alone (no
    // other node): the pass as it was before node ghosts.
    let mut alone = east_with(None);
    alone.tick(2);
    g.bench_function("publish-5000-alone", |b| {
        b.iter(|| {
            local.clear();
            alone.publish_ghosts(&mut local);
            alone.take_node_ghosts(&mut out);
            assert!(out.is_empty());
        })
    });
    let mut bytes = Vec::new();
    g.bench_function("encode-500", |b| {
        b.iter(|| node_ghosts::encode(1, black_box(&batch), &mut bytes))
    });
    node_ghosts::encode(1, &batch, &mut bytes);
    let mut decoded = Vec::new();
    g.bench_function("decode-500", |b| {
        b.iter(|| node_ghosts::decode(black_box(&bytes), &mut decoded).unwrap())
    });
    let mut west = node(0);
    west.tick(1);
    g.bench_function("accept-500", |b| {
        // The same tick each time: every ghost is updated again (upserted
        // in place, as in steady state).
        b.iter_batched(
            || batch.clone(),
            |batch| west.accept_node_ghosts(NodeGhosts { node: 1, ..batch }),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
