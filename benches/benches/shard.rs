//! One shard's full tick: apply every player's movement claim, simulate,
//! upkeep AOI, then select, quantize, delta-encode and write every player's
//! snapshot (and acknowledge it, as the transport would).
//!
//! `cargo bench -p tos-benches --bench shard`
//!
//! - `shard/spread-10000`: 10,000 players uniformly over the default world
//!   (819 × 819 km), all on one shard (one core), walking at 6 m/s.
//! - `shard/battle-1000`: 1,000 players inside one 50 m-radius battle, all
//!   within each other's interest.
//!
//! Before timing, each scenario counts heap allocations per tick over 100
//! steady-state ticks with the counting global allocator below and prints
//! them; the goal is zero. Views are presized to 1,024 entries: a view that
//! grows past its capacity reallocates once (doubling), which is warm-up,
//! not per-tick work.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tos_config::{LayoutKind, ServerConfig, ShardLayout};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::{Character, ClientId, Faction, Shard, ShardCapacity, WorldData};

/// Counts every allocation (and reallocation) made by the process.
#[global_allocator]
static GLOBAL: tos_benches::Counting = tos_benches::Counting;

/// The workspace's SplitMix64, for the players' walks.
struct Rng(tos_protocol::rng::SplitMix64);

impl Rng {
    fn next(&mut self) -> f32 {
        (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

struct Scenario {
    shard: Shard,
    players: Vec<(ClientId, [f32; 3], f32)>,
    centre: [f32; 2],
    spread: f32,
    rng: Rng,
    tick: u32,
    seq: u32,
    buf: [u8; 1200],
    bytes: u64,
}

impl Scenario {
    fn new(players: u32, centre: [f32; 2], spread: f32) -> Self {
        let config = ServerConfig::default();
        let layout = ShardLayout {
            cores: 1,
            kind: LayoutKind::Stripes,
            ..ShardLayout::default()
        }
        .resolve(config.world.quadrant_grid())
        .expect("one stripe");
        let capacity = ShardCapacity {
            entities: players + 1024,
            clients: players,
            initial_view: 1024,
            max_view: 8192,
            inputs_per_tick: 8,
        };
        let mut shard = Shard::with_capacity(0, &config, &layout, WorldData::default(), capacity)
            .expect("shard");
        let mut rng = Rng(tos_protocol::rng::SplitMix64::new(7));
        let mut list = Vec::with_capacity(players as usize);
        for k in 0..players {
            let p = [
                centre[0] + (rng.next() * 2.0 - 1.0) * spread,
                centre[1] + (rng.next() * 2.0 - 1.0) * spread,
                0.0,
            ];
            let id = ClientId(k);
            shard
                .add_player(id, &Character::new(u64::from(k), p, Faction::ALLIANCE))
                .expect("add player");
            list.push((id, p, rng.next() * std::f32::consts::TAU));
        }
        Self {
            shard,
            players: list,
            centre,
            spread,
            rng,
            tick: 0,
            seq: 0,
            buf: [0; 1200],
            bytes: 0,
        }
    }

    /// One full tick.
    fn step(&mut self) {
        self.tick += 1;
        self.seq += 1;
        let (lo, hi) = (
            [self.centre[0] - self.spread, self.centre[1] - self.spread],
            [self.centre[0] + self.spread, self.centre[1] + self.spread],
        );
        for (id, p, heading) in &mut self.players {
            if self.rng.next() < 0.02 {
                *heading = self.rng.next() * std::f32::consts::TAU;
            }
            let v = [heading.cos() * 600.0, heading.sin() * 600.0, 0.0];
            p[0] = (p[0] + v[0] / 60.0).clamp(lo[0], hi[0]);
            p[1] = (p[1] + v[1] / 60.0).clamp(lo[1], hi[1]);
            let _ = self.shard.push_claim(
                *id,
                MovementClaim {
                    input_seq: self.seq,
                    position: *p,
                    velocity: v,
                    yaw: 0.0,
                    anim: 1,
                },
            );
        }
        self.shard.tick(self.tick);
        for (id, _, _) in &self.players {
            self.bytes +=
                self.shard
                    .write_snapshot(*id, self.tick, 1106, &mut self.buf) as u64;
            self.shard.on_snapshot_acked(*id, self.tick);
        }
    }
}

fn scenario(c: &mut Criterion, name: &str, players: u32, centre: [f32; 2], spread: f32) {
    let mut s = Scenario::new(players, centre, spread);
    for _ in 0..120 {
        s.step();
    }
    let before = tos_benches::allocations();
    let bytes_before = s.bytes;
    for _ in 0..100 {
        s.step();
    }
    let allocs = tos_benches::allocations() - before;
    let (hits, encoded) = s.shard.record_cache_counts();
    eprintln!(
        "{name}: {:.1}% of snapshot records copied from the shared per-tick cache",
        100.0 * hits as f64 / (hits + encoded).max(1) as f64
    );
    eprintln!(
        "{name}: {players} players: {:.2} heap allocations per tick over 100 steady-state ticks; {:.0} snapshot bytes per player per tick",
        allocs as f64 / 100.0,
        (s.bytes - bytes_before) as f64 / 100.0 / f64::from(players)
    );
    let mut g = c.benchmark_group("shard");
    g.sample_size(10);
    g.measurement_time(std::time::Duration::from_secs(8));
    g.bench_function(name, |b| {
        b.iter(|| {
            s.step();
            black_box(s.bytes)
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    scenario(c, "battle-1000", 1_000, [1_000.0, 1_000.0], 5_000.0);
    scenario(c, "spread-10000", 10_000, [0.0, 0.0], 409_000.0);
}

criterion_group!(shard, benches);
criterion_main!(shard);
