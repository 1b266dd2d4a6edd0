//! Snapshots against a simulated client — the client SDK's receiver and
//! its entity events (`tos_client`) — baselines stay correct under random
//! acknowledgements, losses, silence and reordering; the entity events a
//! game gets rebuild the server's view in world units; the budget is never
//! exceeded; every record always decodes; the input ack comes back.

mod common;

use std::collections::BTreeMap;

use common::{Link, Report, layout, small_capacity, still_monster};
use tos_client::{EntityEvent, EntityState, SnapshotReceiver, WorldView};
use tos_config::{InterestDistances, LayoutKind, ServerConfig};
use tos_protocol::wire::game::{MovementClaim, ServerMessage, WorldParams};
use tos_shards::util::Rng;
use tos_shards::{
    Buff, Character, ClientId, EntityType, Faction, Shard, SpawnParams, SpawnPoint, WorldData,
};

fn small_world_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.aoi.distances = InterestDistances {
        player: 4_000.0,
        npc: 3_000.0,
        monster: 3_000.0,
        static_build: 2_500.0,
        vehicle: 5_000.0,
        projectile: 6_000.0,
        item: 1_500.0,
        effect: 2_000.0,
    };
    config
}

fn crowd(rng: &mut Rng, n: usize, spread: f32, radius: f32, speed: f32) -> WorldData {
    let mut data = WorldData::default();
    for _ in 0..n {
        let kind = match rng.below(10) {
            0..6 => EntityType::Monster,
            6..8 => EntityType::Npc,
            8 => EntityType::Item,
            _ => EntityType::StaticBuild,
        };
        let moves = matches!(kind, EntityType::Monster | EntityType::Npc);
        data.spawns.push(SpawnPoint {
            kind,
            faction: Faction::MONSTERS,
            position: [rng.range(-spread, spread), rng.range(-spread, spread), 0.0],
            wander_radius: if moves { radius } else { 0.0 },
            speed: if moves { speed } else { 0.0 },
            hp: 100.0,
            mp: 50.0,
            template: 0,
            patrol: 0,
        });
    }
    data
}

struct Client {
    id: ClientId,
    net: u32,
    link: Link,
    receiver: SnapshotReceiver,
    /// The SDK's entity events, and the world a game builds from them.
    view: WorldView,
    world: BTreeMap<u32, EntityState>,
    seq: u32,
    heading: f32,
}

impl Client {
    fn new(shard: &Shard, id: ClientId, link: Link, heading: f32) -> Self {
        let mut view = WorldView::new();
        view.set_world(&WorldParams::from_quantizer(
            shard.world().quantizer(),
            1.0,
            shard.movement_rules().max_speed,
        ))
        .unwrap();
        Self {
            id,
            net: shard.player_of(id).unwrap(),
            link,
            receiver: SnapshotReceiver::new(),
            view,
            world: BTreeMap::new(),
            seq: 0,
            heading,
        }
    }

    /// Applies the events of the last snapshot as a game would, checking
    /// they are consistent: created once, updated and removed only when
    /// known, never a state older than the one held.
    fn apply_events(&mut self, tick: u32) {
        let world = &mut self.world;
        self.view.diff(&self.receiver, tick, |e| match e {
            EntityEvent::Created(s) => {
                assert!(
                    world.insert(s.id, s).is_none(),
                    "entity {} created twice",
                    s.id
                );
            }
            EntityEvent::Updated(s) => {
                let old = world.get_mut(&s.id).expect("update of an unknown entity");
                assert!(
                    (s.tick.wrapping_sub(old.tick) as i32) > 0,
                    "entity {} went back from tick {} to {}",
                    s.id,
                    old.tick,
                    s.tick
                );
                *old = s;
            }
            EntityEvent::Removed { id, .. } => {
                assert!(world.remove(&id).is_some(), "removal of unknown {id}");
            }
        });
    }
}

/// Delivers arrivals and reports due at `now` for every client.
fn deliver(shard: &mut Shard, clients: &mut [Client], now: u32) {
    for c in clients.iter_mut() {
        for bytes in c.link.arrivals(now) {
            let info = c
                .receiver
                .apply_message(&bytes)
                .expect("every snapshot decodes");
            assert_eq!(
                info.missing_baselines, 0,
                "the server named a baseline the client does not have"
            );
            c.apply_events(info.tick);
        }
        for r in c.link.due_reports(now) {
            match r {
                Report::Acked(t) => shard.on_snapshot_acked(c.id, t),
                Report::Lost(t) => shard.on_snapshot_lost(c.id, t),
            }
        }
    }
}

fn send_snapshots(shard: &mut Shard, clients: &mut [Client], now: u32, budget: usize) {
    let mut buf = [0u8; 1500];
    for c in clients.iter_mut() {
        let n = shard.write_snapshot(c.id, now, budget, &mut buf);
        assert!(
            n > 0 && n <= budget,
            "snapshot of {n} bytes, budget {budget}"
        );
        c.link.send(now, now, &buf[..n]);
    }
}

/// The client's entities are exactly the server's view, in the server's
/// quantized state; and the view is the interest set (within the enter
/// distance: in; beyond the leave distance: out).
fn assert_in_sync(shard: &Shard, c: &Client, config: &ServerConfig) {
    let view: BTreeMap<u32, EntityType> = shard.view_of(c.id).into_iter().collect();
    let seen: BTreeMap<u32, _> = c
        .receiver
        .visible()
        .map(|(id, t, s)| (id, (t, s)))
        .collect();
    assert_eq!(
        view.keys().collect::<Vec<_>>(),
        seen.keys().collect::<Vec<_>>(),
        "client {} sees other entities than the server thinks",
        c.id.0
    );
    for (id, (t, s)) in &seen {
        let info = shard.entity(*id).expect("entity exists");
        assert_eq!(*t, info.record.kind.to_u8());
        assert_eq!(
            *s, info.quantized,
            "entity {id} state differs at the client"
        );
        // What the game holds from the events: the same entity, in world
        // units (the server's state, quantized and back).
        let game = c.world.get(id).expect("the events created it");
        let q = shard.world().quantizer();
        assert_eq!(game.entity_type, *t);
        assert_eq!(
            game.position,
            q.dequantize_position(info.quantized.position).unwrap()
        );
        let p = info.record.position;
        for k in 0..3 {
            assert!(
                (game.position[k] - p[k]).abs() <= q.step()[k] as f32,
                "entity {id} at {:?}, the server has it at {p:?}",
                game.position
            );
        }
    }
    assert_eq!(
        c.world.keys().collect::<Vec<_>>(),
        seen.keys().collect::<Vec<_>>(),
        "the game's entities are the receiver's"
    );
    let me = shard.entity(c.net).unwrap().record.position;
    for id in shard.local_net_ids() {
        let info = shard.entity(id).unwrap();
        let d = info.record.kind.interest_distance(&config.aoi.distances);
        let p = info.record.position;
        let dist = ((0..3).map(|i| f64::from(p[i] - me[i]).powi(2)).sum::<f64>()).sqrt();
        if dist <= d * 0.999 {
            assert!(
                view.contains_key(&id),
                "entity {id} at {dist} (D {d}) not in view"
            );
        }
        if dist > d * 1.051 {
            assert!(
                !view.contains_key(&id),
                "entity {id} at {dist} (D {d}) still in view"
            );
        }
    }
}

#[test]
fn baselines_survive_random_acks_losses_and_reordering() {
    for seed in [1u64, 2, 3] {
        let config = small_world_config();
        let layout = layout(&config, 1, LayoutKind::Stripes);
        let mut rng = Rng::new(seed);
        let data = crowd(&mut rng, 150, 6_000.0, 5_000.0, 1_500.0);
        let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
        let mut clients = Vec::new();
        for k in 0..4u32 {
            let id = ClientId(100 + k);
            let pos = [
                rng.range(-3_000.0, 3_000.0),
                rng.range(-3_000.0, 3_000.0),
                0.0,
            ];
            shard
                .add_player(id, &Character::new(u64::from(k), pos, Faction::ALLIANCE))
                .unwrap();
            let mut link = Link::new(seed * 100 + u64::from(k));
            link.loss = 0.2;
            link.ack_loss = 0.1;
            link.silence = 0.05;
            link.max_delay = 3;
            let heading = rng.range(0.0, std::f32::consts::TAU);
            clients.push(Client::new(&shard, id, link, heading));
        }
        let mut projectiles = Vec::new();
        for now in 1..=900u32 {
            let settling = now > 600;
            if now == 601 {
                shard.set_ai_enabled(false);
                for c in &mut clients {
                    c.link.perfect();
                }
            }
            deliver(&mut shard, &mut clients, now);
            if !settling {
                for c in &mut clients {
                    let me = shard.entity(c.net).unwrap().record.position;
                    if rng.chance(0.02) {
                        c.heading = rng.range(0.0, std::f32::consts::TAU);
                    }
                    let step = 800.0 / 60.0;
                    let next = [
                        (me[0] + c.heading.cos() * step).clamp(-7_000.0, 7_000.0),
                        (me[1] + c.heading.sin() * step).clamp(-7_000.0, 7_000.0),
                        0.0,
                    ];
                    c.seq += 1;
                    shard
                        .push_claim(
                            c.id,
                            MovementClaim {
                                input_seq: c.seq,
                                position: next,
                                velocity: [c.heading.cos() * 800.0, c.heading.sin() * 800.0, 0.0],
                                yaw: c.heading.to_degrees(),
                                anim: 1,
                            },
                        )
                        .unwrap();
                }
                if now % 10 == 0 {
                    let mut p = SpawnParams::new(
                        EntityType::Projectile,
                        Faction::MONSTERS,
                        [
                            rng.range(-4_000.0, 4_000.0),
                            rng.range(-4_000.0, 4_000.0),
                            100.0,
                        ],
                    );
                    p.velocity = [3_000.0, 0.0, 0.0];
                    p.lifetime_ticks = 30;
                    projectiles.push(shard.spawn(p).unwrap());
                }
                if now % 20 == 0 {
                    let ids: Vec<u32> = shard.local_net_ids().collect();
                    let id = ids[rng.below(ids.len() as u32) as usize];
                    let buff = Buff::ALL[rng.below(7) as usize];
                    shard.apply_buff(id, buff, 10 + rng.below(100), 3).unwrap();
                }
            }
            shard.tick(now);
            send_snapshots(&mut shard, &mut clients, now, 1200);
        }
        // Everything settled: the last snapshots are delivered and acked.
        for c in &clients {
            assert_in_sync(&shard, c, &config);
            let stats = shard.view_stats(c.id).unwrap();
            assert!(stats.lost > 50, "the link lost too little: {stats:?}");
            assert!(stats.updates > stats.creates, "{stats:?}");
            assert!(stats.removes > 0, "{stats:?}");
        }
    }
}

#[test]
fn snapshot_budget_is_never_exceeded_and_always_decodes() {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut rng = Rng::new(9);
    let data = crowd(&mut rng, 600, 3_000.0, 2_000.0, 600.0);
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [0.0; 3], Faction::ALLIANCE))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = vec![0u8; 2000];
    for now in 1..=400u32 {
        shard.tick(now);
        let budget = rng.below(1400) as usize;
        let len = rng.below(1500) as usize;
        let n = shard.write_snapshot(id, now, budget, &mut buf[..len]);
        assert!(
            n <= budget.min(len),
            "{n} bytes for budget {budget}, buffer {len}"
        );
        if budget.min(len) >= 16 {
            assert!(n > 0);
        }
        if n > 0 {
            let msg = ServerMessage::decode(&buf[..n]).unwrap();
            assert!(matches!(msg, ServerMessage::DeltaSync(_)));
            let info = receiver.apply_message(&buf[..n]).unwrap();
            assert_eq!(info.missing_baselines, 0);
            if rng.chance(0.8) {
                shard.on_snapshot_acked(id, now);
            } else {
                shard.on_snapshot_lost(id, now);
            }
        }
    }
}

#[test]
fn a_crowd_is_sent_within_budget_and_nobody_starves() {
    // 1,000 monsters milling around one player, all in view: far more
    // than one MTU a tick can carry.
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut rng = Rng::new(5);
    let data = crowd(&mut rng, 1_000, 5_000.0, 3_000.0, 400.0);
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [0.0; 3], Faction::ALLIANCE))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    // How long each entity's state at the client has differed from the
    // server's.
    let mut stale_since: BTreeMap<u32, u32> = BTreeMap::new();
    let mut worst = 0;
    let mut bytes = 0usize;
    let mut full_precision = 0usize;
    for now in 1..=600u32 {
        shard.tick(now);
        let n = shard.write_snapshot(id, now, 1200, &mut buf);
        assert!(n <= 1200);
        bytes += n;
        receiver.apply_message(&buf[..n]).unwrap();
        shard.on_snapshot_acked(id, now);
        let view = shard.view_of(id);
        // The naive encoding: every entity in view at full precision
        // (UpdateEntity: type byte, u32 id, 47 bytes) every tick.
        full_precision += view.len() * (1 + 4 + 47);
        for (net, _) in view {
            let server = shard.entity(net).unwrap().quantized;
            if receiver.state(net).map(|(_, s)| s) == Some(server) {
                stale_since.remove(&net);
            } else {
                let since = *stale_since.entry(net).or_insert(now);
                if now > 120 {
                    worst = worst.max(now - since);
                }
            }
        }
    }
    let view = shard.view_of(id);
    assert!(view.len() > 1_000, "view {}", view.len());
    assert_eq!(receiver.visible_count(), view.len());
    // Under 20x overload, no entity's state lags more than half a second.
    assert!(worst <= 30, "an entity stayed stale for {worst} ticks");
    let per_tick = bytes / 600;
    assert!(per_tick > 1_000, "{per_tick} bytes per tick");
    assert!(bytes * 4 < full_precision);
}

#[test]
fn input_ack_echoes_the_last_applied_claim() {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut shard =
        Shard::with_capacity(0, &config, &layout, WorldData::default(), small_capacity()).unwrap();
    let id = ClientId(7);
    shard
        .add_player(id, &Character::new(1, [100.0, 100.0, 0.0], Faction::HORDE))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    let mut p = [100.0f32, 100.0, 0.0];
    for now in 1..=60u32 {
        p[0] += 10.0;
        let seq = now * 3;
        shard
            .push_claim(
                id,
                MovementClaim {
                    input_seq: seq,
                    position: p,
                    velocity: [600.0, 0.0, 0.0],
                    yaw: 0.0,
                    anim: 1,
                },
            )
            .unwrap();
        // A stale claim from the past is ignored.
        shard
            .push_claim(
                id,
                MovementClaim {
                    input_seq: seq - 1,
                    position: [0.0; 3],
                    velocity: [0.0; 3],
                    yaw: 0.0,
                    anim: 0,
                },
            )
            .unwrap();
        let report = shard.tick(now);
        assert_eq!(report.claims_accepted, 1);
        assert_eq!(report.claims_stale, 1);
        let n = shard.write_snapshot(id, now, 1200, &mut buf);
        let info = receiver.apply_message(&buf[..n]).unwrap();
        assert_eq!(info.input_ack, seq);
        shard.on_snapshot_acked(id, now);
    }
    let me = shard.player_of(id).unwrap();
    let (t, s) = receiver.state(me).unwrap();
    assert_eq!(t, EntityType::Player.to_u8());
    assert_eq!(s, shard.entity(me).unwrap().quantized);
    // Wrong tick or unknown client: nothing.
    assert_eq!(shard.write_snapshot(id, 5, 1200, &mut buf), 0);
    assert_eq!(shard.write_snapshot(ClientId(99), 60, 1200, &mut buf), 0);
}

#[test]
fn leaving_interest_removes_and_coming_back_creates() {
    let config = small_world_config();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut data = WorldData::default();
    data.spawns.push(still_monster([500.0, 0.0, 0.0]));
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [0.0; 3], Faction::ALLIANCE))
        .unwrap();
    let monster = shard
        .local_net_ids()
        .find(|&n| Some(n) != shard.player_of(id))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    let mut run = |shard: &mut Shard, receiver: &mut SnapshotReceiver, from: u32, to: u32| {
        for now in from..to {
            shard.tick(now);
            let n = shard.write_snapshot(id, now, 1200, &mut buf);
            receiver.apply_message(&buf[..n]).unwrap();
            shard.on_snapshot_acked(id, now);
        }
    };
    run(&mut shard, &mut receiver, 1, 10);
    assert!(receiver.state(monster).is_some());
    shard.teleport(monster, [20_000.0, 0.0, 0.0]).unwrap();
    run(&mut shard, &mut receiver, 10, 20);
    assert!(receiver.state(monster).is_none());
    assert!(shard.view_of(id).iter().all(|&(n, _)| n != monster));
    shard.teleport(monster, [-700.0, 0.0, 0.0]).unwrap();
    run(&mut shard, &mut receiver, 20, 40);
    assert_eq!(
        receiver.state(monster).unwrap().1,
        shard.entity(monster).unwrap().quantized
    );
    // Despawned: removed.
    shard.despawn(monster).unwrap();
    run(&mut shard, &mut receiver, 40, 50);
    assert!(receiver.state(monster).is_none());
    assert_eq!(receiver.visible_count(), 1);
}

#[test]
fn bandwidth_is_far_below_full_precision() {
    // 80 monsters walking around one player, all of them sent every tick:
    // compare with sending each at full precision (UpdateEntity: type,
    // u32 id, 47 bytes) every tick.
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut rng = Rng::new(21);
    let mut data = crowd(&mut rng, 80, 3_000.0, 2_000.0, 400.0);
    for s in &mut data.spawns {
        s.kind = EntityType::Monster;
        s.wander_radius = 2_000.0;
        s.speed = 400.0;
    }
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [0.0; 3], Faction::ALLIANCE))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    let (mut sent, mut naive) = (0usize, 0usize);
    for now in 1..=1_200u32 {
        shard.tick(now);
        let n = shard.write_snapshot(id, now, 1200, &mut buf);
        receiver.apply_message(&buf[..n]).unwrap();
        shard.on_snapshot_acked(id, now);
        if now > 60 {
            sent += n;
            naive += shard.view_of(id).len() * (1 + 4 + 47);
        }
    }
    let saved = 1.0 - sent as f64 / naive as f64;
    println!(
        "bytes per tick {:.0}, full precision {:.0}, saved {:.1}%",
        sent as f64 / 1140.0,
        naive as f64 / 1140.0,
        saved * 100.0
    );
    assert!(saved > 0.75, "only {:.1}% saved", saved * 100.0);
}

/// The same calls give the same bytes: a shard is deterministic.
#[test]
fn shards_are_deterministic() {
    let run = || {
        let config = small_world_config();
        let layout = layout(&config, 1, LayoutKind::Stripes);
        let mut rng = Rng::new(8);
        let data = crowd(&mut rng, 100, 4_000.0, 3_000.0, 900.0);
        let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
        let id = ClientId(3);
        shard
            .add_player(id, &Character::new(3, [0.0; 3], Faction::HORDE))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1200];
        for now in 1..=300u32 {
            shard.tick(now);
            let n = shard.write_snapshot(id, now, 700, &mut buf);
            out.extend_from_slice(&buf[..n]);
            if now % 3 != 0 {
                shard.on_snapshot_acked(id, now);
            }
        }
        out
    };
    let a = run();
    assert!(a.len() > 10_000, "{}", a.len());
    assert_eq!(a, run());
}

#[test]
fn without_aoi_every_entity_is_in_view() {
    let mut config = small_world_config();
    config.aoi.enabled = false;
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut data = WorldData::default();
    for x in [-300_000.0, 0.0, 300_000.0] {
        data.spawns.push(SpawnPoint {
            kind: EntityType::Item,
            faction: Faction::NEUTRAL,
            position: [x, x, 0.0],
            wander_radius: 0.0,
            speed: 0.0,
            hp: 1.0,
            mp: 0.0,
            template: 0,
            patrol: 0,
        });
    }
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [10.0; 3], Faction::ALLIANCE))
        .unwrap();
    let mut receiver = SnapshotReceiver::new();
    let mut buf = [0u8; 1200];
    for now in 1..=5 {
        shard.tick(now);
        let n = shard.write_snapshot(id, now, 1200, &mut buf);
        receiver.apply_message(&buf[..n]).unwrap();
        shard.on_snapshot_acked(id, now);
    }
    assert_eq!(receiver.visible_count(), 4);
}

/// The writer never names a baseline the client's receiver has dropped:
/// its limit on records after a baseline stays below the states the
/// receiver keeps per entity.
#[test]
fn writer_limits_fit_the_receiver() {
    const {
        assert!(
            (tos_shards::snapshot::MAX_RECORDS_SINCE_BASELINE as usize)
                < tos_client::RECEIVER_HISTORY
        );
    }
}

/// Records are encoded once per (entity, baseline tick) and copied into
/// every snapshot that needs the same record: with clients whose
/// acknowledgements and losses differ (so their baselines differ), every
/// record each client decodes must equal the server's state at that tick.
#[test]
fn shared_records_decode_to_the_servers_state_for_every_client() {
    let config = small_world_config();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut rng = Rng::new(11);
    let data = crowd(&mut rng, 200, 4_000.0, 3_000.0, 1_500.0);
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    let ids: Vec<ClientId> = (0..6u32).map(|k| ClientId(200 + k)).collect();
    for (k, id) in ids.iter().enumerate() {
        let pos = [
            rng.range(-1_000.0, 1_000.0),
            rng.range(-1_000.0, 1_000.0),
            0.0,
        ];
        shard
            .add_player(*id, &Character::new(k as u64, pos, Faction::ALLIANCE))
            .unwrap();
    }
    let mut receivers: Vec<SnapshotReceiver> =
        ids.iter().map(|_| SnapshotReceiver::new()).collect();
    // (client, tick, deliver at, acked) reports waiting for their time.
    let mut reports: Vec<(usize, u32, u32, bool)> = Vec::new();
    let mut buf = [0u8; 1500];
    let mut checked = 0u64;
    for now in 1..=400u32 {
        reports.retain(|&(k, tick, at, acked)| {
            if at > now {
                return true;
            }
            if acked {
                shard.on_snapshot_acked(ids[k], tick);
            } else {
                shard.on_snapshot_lost(ids[k], tick);
            }
            false
        });
        shard.tick(now);
        for (k, id) in ids.iter().enumerate() {
            let n = shard.write_snapshot(*id, now, 700, &mut buf);
            assert!(n > 0);
            // Client k loses a k-dependent share and acknowledges after a
            // k-dependent delay, so the clients' baselines differ.
            let lost = rng.chance(0.05 * k as f32);
            let delay = (k as u32 % 3) + rng.below(3);
            reports.push((k, now, now + delay, !lost));
            if lost {
                continue;
            }
            let info = receivers[k].apply_message(&buf[..n]).unwrap();
            assert_eq!(info.missing_baselines, 0);
            for (net, _, tick, state) in receivers[k].visible_with_ticks() {
                if tick != now {
                    continue;
                }
                let server = shard.entity(net).expect("entity exists").quantized;
                assert_eq!(state, server, "client {k}: entity {net} at tick {now}");
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000, "too few records checked: {checked}");
    let (shared, encoded) = shard.record_cache_counts();
    // Six clients with deliberately different baselines still share
    // some records (a crowd of clients with similar links shares most:
    // see the shard bench).
    assert!(
        shared * 4 > encoded,
        "the clients should share records: {shared} shared, {encoded} encoded"
    );
}

/// Entries the per-tick pass does not check in full (`SAFE`: far inside
/// interest, see `snapshot/priority.rs`) must still leave the view on the
/// very tick their entity leaves interest, whatever moves it: entities
/// walking out at every speed (below and far above the anchor radius per
/// anchor period), teleports, turning invisible; the viewer walking and
/// jumping; snapshots skipped on some ticks (one tick to a long silence).
#[test]
fn nothing_stays_in_view_beyond_the_leave_distance_on_any_tick() {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let monster_d = f64::from(config.aoi.distances.monster as f32);
    let leave = monster_d * 1.05;
    let mut data = WorldData::default();
    // Per monster: a radial speed in units per tick; it walks out and back
    // across the leave distance, between 88% and 116% of the interest
    // distance (the slowest ones stay under the anchor radius per anchor
    // period, so their entries are checked in full only now and then).
    let speeds = [5.0f32, 12.0, 25.0, 60.0, 200.0, 700.0, 3_000.0];
    let (lo, hi) = (0.88 * monster_d as f32, 1.16 * monster_d as f32);
    let monsters = 70;
    for k in 0..monsters {
        let angle = k as f32 * 0.7;
        // All start in view, spread over the inner part of the walk.
        let r = lo + (k as f32 / monsters as f32) * (monster_d as f32 - lo);
        data.spawns
            .push(still_monster([r * angle.cos(), r * angle.sin(), 0.0]));
    }
    let mut shard = Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap();
    shard.set_ai_enabled(false);
    let id = ClientId(1);
    shard
        .add_player(id, &Character::new(1, [0.0; 3], Faction::ALLIANCE))
        .unwrap();
    let me = shard.player_of(id).unwrap();
    // Another client far away, sent a snapshot every tick: the summary (and
    // the anchor groups' resets) is built on ticks this client skips.
    let other = ClientId(2);
    shard
        .add_player(
            other,
            &Character::new(2, [-300_000.0, 0.0, 0.0], Faction::ALLIANCE),
        )
        .unwrap();
    let far = shard.player_of(other).unwrap();
    let mut ids: Vec<u32> = shard
        .local_net_ids()
        .filter(|&n| n != me && n != far)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), monsters);
    let mut rng = Rng::new(11);
    let mut radius: Vec<f32> = ids
        .iter()
        .map(|&n| {
            let p = shard.entity(n).unwrap().record.position;
            (p[0] * p[0] + p[1] * p[1]).sqrt()
        })
        .collect();
    let mut outward = vec![true; ids.len()];
    let mut viewer = [0.0f32; 3];
    let mut buf = [0u8; 1200];
    let (mut written, mut checked_out, mut hidden_checks) = (0u32, 0u32, 0u32);
    let mut silence = 0u32;
    for now in 1..=1_500u32 {
        // The viewer strolls (so its view is re-anchored only every few
        // hundred ticks), and now and then jumps.
        viewer[0] += 2.0;
        if rng.chance(0.002) {
            viewer[1] += rng.range(-20_000.0, 20_000.0);
        }
        shard.teleport(me, viewer).unwrap();
        for (k, &n) in ids.iter().enumerate() {
            let speed = speeds[k % speeds.len()];
            if rng.chance(0.002) {
                // A teleport across the boundary, either way.
                radius[k] = if radius[k] < monster_d as f32 { hi } else { lo };
            } else {
                radius[k] += if outward[k] { speed } else { -speed };
            }
            if radius[k] >= hi {
                outward[k] = false;
            } else if radius[k] <= lo {
                outward[k] = true;
            }
            let angle = k as f32 * 0.7;
            let p = [
                viewer[0] + radius[k] * angle.cos(),
                viewer[1] + radius[k] * angle.sin(),
                0.0,
            ];
            shard.teleport(n, p).unwrap();
            if k % speeds.len() == 1 && rng.chance(0.01) {
                shard.apply_buff(n, Buff::Invisible, 30, 1).unwrap();
            }
        }
        shard.tick(now);
        let n = shard.write_snapshot(other, now, 1200, &mut buf);
        assert!(n > 0);
        shard.on_snapshot_acked(other, now);
        // Snapshots go out on most ticks; some ticks are skipped, and now
        // and then the client falls silent for a while.
        if silence > 0 {
            silence -= 1;
            continue;
        }
        // For a while, snapshots go out every other tick only (as for a
        // client whose link is congested): half the anchor groups never
        // reset on a tick with a pass.
        if (600..1_100).contains(&now) && now % 2 == 1 {
            continue;
        }
        if rng.chance(0.1) {
            continue;
        }
        if rng.chance(0.003) {
            silence = rng.below(40);
        }
        let n = shard.write_snapshot(id, now, 1200, &mut buf);
        assert!(n > 0);
        written += 1;
        shard.on_snapshot_acked(id, now);
        let view: BTreeMap<u32, EntityType> = shard.view_of(id).into_iter().collect();
        let here = shard.entity(me).unwrap().record.position;
        for &m in &ids {
            let info = shard.entity(m).unwrap();
            let p = info.record.position;
            let d = (0..3)
                .map(|i| f64::from(p[i] - here[i]).powi(2))
                .sum::<f64>()
                .sqrt();
            if d > leave * 1.0001 {
                checked_out += 1;
                assert!(
                    !view.contains_key(&m),
                    "tick {now}: entity {m} at {d:.0} (leave at {leave:.0}) still in view"
                );
            }
            if info
                .record
                .state
                .contains(tos_shards::EntityState::INVISIBLE)
            {
                hidden_checks += 1;
                assert!(
                    !view.contains_key(&m),
                    "tick {now}: invisible entity {m} still in view"
                );
            }
        }
    }
    // The run covered what it claims to.
    assert!(written > 900, "{written} snapshots");
    assert!(
        checked_out > 10_000,
        "{checked_out} checks beyond the leave distance"
    );
    assert!(
        hidden_checks > 50,
        "{hidden_checks} checks of invisible entities"
    );
}
