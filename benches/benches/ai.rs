//! NPC AI and pathfinding.
//!
//! `cargo bench -p tos-benches --bench ai`
//!
//! - `ai/npcs-10000`: one shard (one core) with 10,000 NPCs under AI —
//!   5,000 aggressive ones among 500 players walking through a field of
//!   400 walls (they see the players over the low walls, chase them round
//!   the walls, attack), 5,000 passive ones wandering — at 60 Hz. Before
//!   the criterion run it times 600 steady ticks with the AI on and 600 on
//!   an identical shard with the AI off (the shard tick only, in thread
//!   CPU time: the machine may be shared), and prints the median and p99
//!   of each and of the difference (the AI + pathfinding cost, plus the
//!   shard's own cost of moving entities: quantizing them, AOI upkeep,
//!   border checks), the AI counters, and heap allocations per tick (the
//!   goal is zero).
//! - `ai/paths-own` and `ai/paths-crate`: one A* path between random
//!   points 5 to 40 m apart in the same wall field, with the shard's
//!   [`Pathfinder`] and with the `pathfinding` crate's `astar` over the
//!   same window, neighbours and walkability test.

use std::time::Duration;

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use tos_config::{AiKind, BaseStats, LayoutKind, ServerConfig, ShardLayout};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::ai::{NpcBook, NpcProfile};
use tos_shards::authority::{MovementRules, Terrain};
use tos_shards::nav::{Nav, NavParams, PathOutcome, Pathfinder, WINDOW};
use tos_shards::world::ObstacleIndex;
use tos_shards::{
    Aabb, Character, ClientId, EntityType, Faction, Heightfield, Shard, ShardCapacity, SpawnPoint,
    WorldData,
};

#[global_allocator]
static GLOBAL: tos_benches::Counting = tos_benches::Counting;

struct Rng(tos_protocol::rng::SplitMix64);

impl Rng {
    fn unit(&mut self) -> f32 {
        (self.0.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

/// Half the side of the square the scenario lives in, around the origin.
const HALF: f32 = 20_000.0;

/// 400 low walls (1 m high: sight passes over, walking does not), 12 m
/// long, on a 2 km grid with alternating orientation.
fn walls() -> Vec<Aabb> {
    let mut out = Vec::new();
    for i in 0..20 {
        for j in 0..20 {
            let x = -HALF + 1_000.0 + i as f32 * 2_000.0;
            let y = -HALF + 1_000.0 + j as f32 * 2_000.0;
            let b = if (i + j) % 2 == 0 {
                Aabb::new([x - 600.0, y - 20.0, -100.0], [x + 600.0, y + 20.0, 100.0])
            } else {
                Aabb::new([x - 20.0, y - 600.0, -100.0], [x + 20.0, y + 600.0, 100.0])
            };
            out.push(b);
        }
    }
    out
}

fn inside(walls: &[Aabb], x: f32, y: f32) -> bool {
    walls.iter().any(|b| {
        x >= b.min[0] - 50.0 && x <= b.max[0] + 50.0 && y >= b.min[1] - 50.0 && y <= b.max[1] + 50.0
    })
}

fn profile(id: u16, ai: AiKind) -> NpcProfile {
    let mut skills = [0; tos_config::MAX_NPC_SKILLS];
    skills[0] = 1;
    NpcProfile {
        id,
        kind: EntityType::Monster,
        faction: Faction::MONSTERS,
        level: 3,
        stats: BaseStats {
            int: 10,
            str: 30,
            con: 30,
            men: 10,
            dex: 30,
            wit: 10,
        },
        hp: 200.0,
        mp: 0.0,
        speed: 300.0,
        aggro_range: 1_500.0,
        leash_range: 30_000.0,
        skills,
        skill_count: 1,
        loot: None,
        ai,
        flee_below: 0.0,
        respawn_secs: 30.0,
    }
}

struct Scenario {
    shard: Shard,
    players: Vec<(ClientId, [f32; 3], f32)>,
    rng: Rng,
    tick: u32,
    last: Duration,
}

impl Scenario {
    fn new(ai: bool) -> Self {
        let config = ServerConfig::default();
        let layout = ShardLayout {
            cores: 1,
            kind: LayoutKind::Stripes,
            ..ShardLayout::default()
        }
        .resolve(config.world.quadrant_grid())
        .expect("one stripe");
        let walls = walls();
        let mut rng = Rng(tos_protocol::rng::SplitMix64::new(99));
        let mut data = WorldData {
            obstacles: walls.clone(),
            npcs: NpcBook {
                templates: vec![profile(1, AiKind::Aggressive), profile(2, AiKind::Passive)],
                routes: Vec::new(),
            },
            ..WorldData::default()
        };
        let mut players = Vec::new();
        let mut homes = Vec::new();
        while players.len() < 500 {
            let p = [rng.range(-HALF, HALF), rng.range(-HALF, HALF), 0.0];
            if !inside(&walls, p[0], p[1]) {
                homes.push(p);
                players.push((
                    ClientId(players.len() as u32),
                    p,
                    rng.range(0.0, std::f32::consts::TAU),
                ));
            }
        }
        for k in 0..10_000 {
            let aggressive = k % 2 == 0;
            let (x, y) = loop {
                // Chasers start 8 to 14 m from a player, the others anywhere.
                let (x, y) = if aggressive {
                    let h = homes[k / 2 % homes.len()];
                    let a = rng.range(0.0, std::f32::consts::TAU);
                    let r = rng.range(800.0, 1_400.0);
                    (h[0] + r * a.cos(), h[1] + r * a.sin())
                } else {
                    (rng.range(-HALF, HALF), rng.range(-HALF, HALF))
                };
                if !inside(&walls, x, y) {
                    break (x, y);
                }
            };
            data.spawns.push(SpawnPoint {
                kind: EntityType::Monster,
                faction: Faction::MONSTERS,
                position: [x, y, 0.0],
                wander_radius: 1_500.0,
                speed: 300.0,
                hp: 200.0,
                mp: 0.0,
                template: if aggressive { 1 } else { 2 },
                patrol: 0,
            });
        }
        let capacity = ShardCapacity {
            entities: 12_000,
            clients: 512,
            initial_view: 64,
            max_view: 8_192,
            inputs_per_tick: 8,
        };
        let mut shard = Shard::with_capacity(0, &config, &layout, data, capacity).expect("shard");
        shard.set_ai_enabled(ai);
        for (id, p, _) in &players {
            let mut c = Character::new(u64::from(id.0), *p, Faction::ALLIANCE);
            // Immortal: the chase goes on for the whole measurement.
            c.hp = 1e9;
            c.hp_max = 1e9;
            shard.add_player(*id, &c).expect("player");
        }
        Self {
            shard,
            players,
            rng,
            tick: 0,
            last: Duration::ZERO,
        }
    }

    /// One tick: players walk (4 m/s, turning now and then, stopped by
    /// walls like any claim), then the shard ticks.
    fn step(&mut self) {
        self.inputs();
        self.shard.tick(self.tick);
    }

    /// One tick, timing only the shard's tick (not the harness's input
    /// generation).
    fn tick_only(&mut self) {
        self.inputs();
        let t = cpu_time();
        self.shard.tick(self.tick);
        self.last = cpu_time() - t;
    }

    fn inputs(&mut self) {
        self.tick += 1;
        let seq = self.tick;
        for (id, p, heading) in &mut self.players {
            if self.rng.unit() < 0.01 {
                *heading = self.rng.range(0.0, std::f32::consts::TAU);
            }
            let v = [heading.cos() * 400.0, heading.sin() * 400.0, 0.0];
            let next = [
                (p[0] + v[0] / 60.0).clamp(-HALF, HALF),
                (p[1] + v[1] / 60.0).clamp(-HALF, HALF),
                0.0,
            ];
            let _ = self.shard.push_claim(
                *id,
                MovementClaim {
                    input_seq: seq,
                    position: next,
                    velocity: v,
                    yaw: 0.0,
                    anim: 1,
                },
            );
            *p = next;
        }
        for c in self.shard.corrections() {
            if let Some(pl) = self.players.iter_mut().find(|pl| pl.0 == c.client) {
                pl.1 = c.position;
                pl.2 += 3.0;
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// This thread's CPU time: the machine the figures were taken on is
/// shared, and CPU time leaves out the time other processes hold the core.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn timed(s: &mut Scenario, ticks: usize) -> (Vec<Duration>, u64) {
    let mut times = Vec::with_capacity(ticks);
    let before = tos_benches::allocations();
    for _ in 0..ticks {
        s.tick_only();
        times.push(s.last);
    }
    let allocs = tos_benches::allocations() - before;
    (times, allocs)
}

fn npcs(c: &mut Criterion) {
    let mut on = Scenario::new(true);
    let mut off = Scenario::new(false);
    for _ in 0..300 {
        on.step();
        off.step();
    }
    let (mut t_on, allocs) = timed(&mut on, 600);
    let (mut t_off, _) = timed(&mut off, 600);
    t_on.sort_unstable();
    t_off.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let stats = on.shard.ai_stats();
    let states = {
        let mut n = [0u32; 7];
        for net in on.shard.local_net_ids().collect::<Vec<_>>() {
            let e = on.shard.entity(net).unwrap();
            if e.record.template != 0 {
                n[e.record.ai.state as usize] += 1;
            }
        }
        n
    };
    eprintln!(
        "npcs-10000: tick with AI median {:.3} ms p99 {:.3} ms; without AI median {:.3} ms p99 {:.3} ms; AI + pathfinding median {:.3} ms p99 {:.3} ms",
        ms(percentile(&t_on, 0.5)),
        ms(percentile(&t_on, 0.99)),
        ms(percentile(&t_off, 0.5)),
        ms(percentile(&t_off, 0.99)),
        ms(percentile(&t_on, 0.5)) - ms(percentile(&t_off, 0.5)),
        ms(percentile(&t_on, 0.99)) - ms(percentile(&t_off, 0.99)),
    );
    eprintln!(
        "npcs-10000: {:.2} heap allocations per tick over 600 steady ticks (the timing vector is preallocated)",
        allocs as f64 / 600.0
    );
    eprintln!(
        "npcs-10000: states idle/roam/chase/attack/return/flee/dead {states:?}; since start: {} paths planned ({} partial), {} expansions, {} aggros, {} leashes, {} attacks, {} blocked moves, {} queued now",
        stats.paths_planned,
        stats.paths_partial,
        stats.expansions,
        stats.aggros,
        stats.leashes,
        stats.attacks,
        stats.blocked_moves,
        stats.queued
    );
    let mut g = c.benchmark_group("ai");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("npcs-10000", |b| b.iter(|| on.step()));
    g.finish();
}

fn paths(c: &mut Criterion) {
    let rules = MovementRules::new(&tos_config::AuthorityConfig::default(), 60);
    let walls = walls();
    let terrain = Terrain {
        heightfield: Heightfield::flat(0.0),
        obstacles: ObstacleIndex::new(walls.clone()).unwrap(),
    };
    let nav = Nav::new(&terrain, true, rules.max_step);
    let params = NavParams::new(&rules);
    let mut rng = Rng(tos_protocol::rng::SplitMix64::new(5));
    // Pairs whose straight line is blocked (else no search runs).
    let mut pairs = Vec::new();
    while pairs.len() < 256 {
        let a = [rng.range(-HALF, HALF), rng.range(-HALF, HALF)];
        let ang = rng.range(0.0, std::f32::consts::TAU);
        let r = rng.range(500.0, 4_000.0);
        let b = [a[0] + r * ang.cos(), a[1] + r * ang.sin()];
        if !inside(&walls, a[0], a[1]) && !inside(&walls, b[0], b[1]) && !nav.step_ok(a, b) {
            pairs.push((a, b));
        }
    }
    let mut finder = Pathfinder::new(params);
    let mut out = [[0.0f32; 2]; 8];
    let mut found = 0;
    for &(a, b) in &pairs {
        if matches!(
            finder.find(&nav, a, b, u32::MAX, &mut out),
            PathOutcome::Found(_)
        ) {
            found += 1;
        }
    }
    eprintln!(
        "paths: {found}/{} found by the shard's A*, {:.0} expansions per search",
        pairs.len(),
        finder.total_expanded() as f64 / pairs.len() as f64
    );
    let mut g = c.benchmark_group("ai");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(6));
    let mut k = 0;
    g.bench_function("paths-own", |bench| {
        bench.iter(|| {
            let (a, b) = pairs[k % pairs.len()];
            k += 1;
            black_box(finder.find(&nav, a, b, u32::MAX, &mut out))
        })
    });
    // The pathfinding crate over the same window and moves.
    let cell = params.cell;
    let half = (WINDOW / 2) as i32;
    let nav_ref = &nav;
    let crate_path = move |a: [f32; 2], b: [f32; 2]| {
        let nav = nav_ref;
        let cell_of = |v: f32| (v / cell).floor() as i32;
        let origin = (
            cell_of((a[0] + b[0]) * 0.5) - half,
            cell_of((a[1] + b[1]) * 0.5) - half,
        );
        let centre = |(x, y): (i32, i32)| {
            [
                (x as f32) * cell + cell * 0.5,
                (y as f32) * cell + cell * 0.5,
            ]
        };
        let start = (cell_of(a[0]), cell_of(a[1]));
        let goal = (cell_of(b[0]), cell_of(b[1]));
        let in_window = |(x, y): (i32, i32)| {
            x >= origin.0
                && y >= origin.1
                && x < origin.0 + WINDOW as i32
                && y < origin.1 + WINDOW as i32
        };
        pathfinding::prelude::astar(
            &start,
            |&n| {
                let from = if n == start { a } else { centre(n) };
                [
                    (1, 0),
                    (-1, 0),
                    (0, 1),
                    (0, -1),
                    (1, 1),
                    (1, -1),
                    (-1, 1),
                    (-1, -1),
                ]
                .into_iter()
                .filter_map(move |(dx, dy)| {
                    let m = (n.0 + dx, n.1 + dy);
                    (in_window(m) && nav.step_ok(from, centre(m)))
                        .then_some((m, if dx != 0 && dy != 0 { 141u32 } else { 100 }))
                })
            },
            |&(x, y)| {
                let (dx, dy) = ((x - goal.0).unsigned_abs(), (y - goal.1).unsigned_abs());
                100 * dx.max(dy) + 41 * dx.min(dy)
            },
            |&n| n == goal,
        )
    };
    let crate_found = pairs
        .iter()
        .filter(|&&(a, b)| crate_path(a, b).is_some())
        .count();
    eprintln!(
        "paths: {crate_found}/{} found by pathfinding::astar",
        pairs.len()
    );
    let mut k = 0;
    g.bench_function("paths-crate", |bench| {
        bench.iter(|| {
            let (a, b) = pairs[k % pairs.len()];
            k += 1;
            black_box(crate_path(a, b))
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    paths(c);
    npcs(c);
}

criterion_group!(ai, benches);
criterion_main!(ai);
