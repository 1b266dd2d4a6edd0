//! Server authority through the shard: speed hacks, teleports, walls and
//! flying are corrected and counted; honest play is not; actions are
//! checked for cooldown, mana, range and state, and their effects
//! (damage, casts, buffs that expire on their own, invisibility) apply.

mod common;

use common::{layout, small_capacity};
use tos_config::{LayoutKind, ServerConfig};
use tos_protocol::wire::game::{MovementClaim, ServerMessage};
use tos_shards::util::Rng;
use tos_shards::{
    Aabb, ActionRefusal, BuffFlags, Character, ClientId, CombatFlags, EntityState, Faction,
    MoveRejection, Shard, ShardEvent, SpawnPoint, WorldData,
};

fn shard_with(data: WorldData) -> Shard {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    Shard::with_capacity(0, &config, &layout, data, small_capacity()).unwrap()
}

fn claim(seq: u32, p: [f32; 3], v: [f32; 3]) -> MovementClaim {
    MovementClaim {
        input_seq: seq,
        position: p,
        velocity: v,
        yaw: 0.0,
        anim: 1,
    }
}

const C: ClientId = ClientId(1);

fn player(shard: &mut Shard, at: [f32; 3]) -> u32 {
    shard
        .add_player(C, &Character::new(1, at, Faction::ALLIANCE))
        .unwrap();
    shard.player_of(C).unwrap()
}

fn position(shard: &Shard, net: u32) -> [f32; 3] {
    shard.entity(net).unwrap().record.position
}

#[test]
fn honest_play_with_jittery_arrival_is_never_corrected() {
    let mut shard = shard_with(WorldData::default());
    let me = player(&mut shard, [0.0; 3]);
    shard.set_rtt(C, 80).unwrap();
    let mut rng = Rng::new(3);
    let mut p = [0.0f32; 3];
    let mut seq = 0;
    let mut backlog = Vec::new();
    let mut heading = 0.0f32;
    for tick in 1..=1200u32 {
        // One claim per client tick at full speed, delivered in bursts.
        heading += rng.range(-0.2, 0.2);
        let v = [heading.cos() * 1000.0, heading.sin() * 1000.0, 0.0];
        p = [p[0] + v[0] / 60.0, p[1] + v[1] / 60.0, 0.0];
        seq += 1;
        backlog.push(claim(seq, p, v));
        if rng.chance(0.6) || backlog.len() >= 4 {
            for c in backlog.drain(..) {
                shard.push_claim(C, c).unwrap();
            }
        }
        shard.tick(tick);
        assert!(
            shard.corrections().is_empty(),
            "tick {tick}: {:?}",
            shard.corrections()
        );
    }
    assert_eq!(shard.cheat_counters(C).unwrap().movement_total(), 0);
    let _ = me;
}

#[test]
fn speed_hacks_are_corrected_and_counted() {
    let mut shard = shard_with(WorldData::default());
    let me = player(&mut shard, [0.0; 3]);
    let mut claimed = [0.0f32; 3];
    let mut corrections = 0;
    for tick in 1..=300u32 {
        // Three times the speed limit, always from where the client
        // thinks it is.
        claimed[0] += 3000.0 / 60.0;
        shard
            .push_claim(C, claim(tick, claimed, [3000.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        for c in shard.corrections() {
            corrections += 1;
            let msg = c.message();
            assert!(
                matches!(msg, ServerMessage::Correction { input_seq, .. } if input_seq == tick)
            );
            assert_eq!(c.position, position(&shard, me));
            // The client snaps back.
            claimed = c.position;
        }
    }
    let counters = shard.cheat_counters(C).unwrap();
    assert!(corrections > 10, "{corrections} corrections");
    assert!(counters.velocity + counters.speed > 10, "{counters:?}");
    // It never got further than the limit allows.
    let limit = 1000.0 * 1.25 * 300.0 / 60.0 + 200.0;
    assert!(
        position(&shard, me)[0] <= limit,
        "{:?}",
        position(&shard, me)
    );
}

#[test]
fn a_speed_hack_with_an_honest_velocity_is_caught_by_the_credit() {
    let mut shard = shard_with(WorldData::default());
    let me = player(&mut shard, [0.0; 3]);
    let mut claimed = [0.0f32; 3];
    for tick in 1..=300u32 {
        claimed[0] += 2000.0 / 60.0;
        shard
            .push_claim(C, claim(tick, claimed, [1000.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        if let Some(c) = shard.corrections().first() {
            // Speed at first; a client that keeps drifting between
            // corrections ends up a teleport away.
            assert!(matches!(
                c.reason,
                MoveRejection::Speed | MoveRejection::Teleport
            ));
            claimed = c.position;
        }
    }
    let counters = shard.cheat_counters(C).unwrap();
    assert!(
        counters.speed >= 1 && counters.speed + counters.teleport > 5,
        "{counters:?}"
    );
    assert!(position(&shard, me)[0] < 1000.0 * 1.25 * 5.0 + 200.0);
}

#[test]
fn teleports_are_corrected_once_per_round_trip() {
    let mut shard = shard_with(WorldData::default());
    let me = player(&mut shard, [0.0; 3]);
    shard
        .push_claim(C, claim(1, [40_000.0, 0.0, 0.0], [0.0; 3]))
        .unwrap();
    shard.tick(1);
    assert_eq!(shard.corrections().len(), 1);
    assert_eq!(shard.corrections()[0].reason, MoveRejection::Teleport);
    // The client keeps going from where it wrongly thinks it is until the
    // correction reaches it: rejected, but not counted again.
    for tick in 2..=4u32 {
        shard
            .push_claim(C, claim(tick, [40_000.0 + tick as f32, 0.0, 0.0], [0.0; 3]))
            .unwrap();
        shard.tick(tick);
        assert!(shard.corrections().is_empty());
    }
    // Then it resumes from the corrected position.
    for tick in 5..=60u32 {
        let x = (tick - 4) as f32 * 10.0;
        shard
            .push_claim(C, claim(tick, [x, 0.0, 0.0], [600.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        assert!(shard.corrections().is_empty());
    }
    assert_eq!(shard.cheat_counters(C).unwrap().teleport, 1);
    assert_eq!(position(&shard, me), [560.0, 0.0, 0.0]);
}

#[test]
fn walls_stop_walking_through_them() {
    let data = WorldData {
        obstacles: vec![Aabb::new(
            [500.0, -2_000.0, -100.0],
            [520.0, 2_000.0, 1_000.0],
        )],
        ..WorldData::default()
    };
    let mut shard = shard_with(data);
    let me = player(&mut shard, [0.0; 3]);
    let mut x = 0.0f32;
    let mut walls = 0;
    for tick in 1..=120u32 {
        x += 15.0;
        shard
            .push_claim(C, claim(tick, [x, 0.0, 0.0], [900.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        for c in shard.corrections() {
            assert_eq!(c.reason, MoveRejection::Wall);
            walls += 1;
            x = c.position[0];
        }
    }
    assert!(walls > 0);
    assert!(position(&shard, me)[0] < 500.0);
    assert!(shard.cheat_counters(C).unwrap().wall > 0);
}

#[test]
fn flying_is_corrected() {
    let mut shard = shard_with(WorldData::default());
    let me = player(&mut shard, [0.0; 3]);
    let mut z = 0.0f32;
    for tick in 1..=60u32 {
        z += 20.0;
        shard
            .push_claim(C, claim(tick, [0.0, 0.0, z], [0.0, 0.0, 1200.0]))
            .unwrap();
        shard.tick(tick);
        if let Some(c) = shard.corrections().first() {
            assert!(matches!(
                c.reason,
                MoveRejection::Flying | MoveRejection::VelocityTooHigh | MoveRejection::StepTooHigh
            ));
            z = c.position[2];
        }
    }
    assert!(shard.cheat_counters(C).unwrap().flying > 0);
    assert!(
        position(&shard, me)[2] <= 60.0,
        "{:?}",
        position(&shard, me)
    );
}

fn monster_at(x: f32) -> SpawnPoint {
    common::still_monster([x, 0.0, 0.0])
}

/// The HP a `Combat` event of this tick reports taken from `target`
/// (`None` for a miss).
fn dealt(shard: &mut Shard, target: u32) -> Option<f32> {
    let mut hit = None;
    for e in shard.take_events() {
        if let ShardEvent::Combat {
            target: t,
            amount,
            flags,
            ..
        } = e
        {
            if t == target && flags.contains(CombatFlags::HIT) {
                hit = Some(amount);
            }
        }
    }
    hit
}

#[test]
fn actions_are_checked_and_take_effect() {
    let data = WorldData {
        spawns: vec![monster_at(200.0), monster_at(10_000.0)],
        ..WorldData::default()
    };
    let mut shard = shard_with(data);
    let me = player(&mut shard, [0.0; 3]);
    let ids: Vec<u32> = shard.local_net_ids().filter(|&i| i != me).collect();
    let near = *ids
        .iter()
        .find(|&&i| position(&shard, i)[0] < 1_000.0)
        .unwrap();
    let far = *ids.iter().find(|&&i| i != near).unwrap();
    let result = |shard: &Shard| shard.action_results()[0].result;
    // Strike the near monster: done (the HP it lost is what the event
    // says); again at once: cooling down.
    shard.push_action(C, 1, 1, near).unwrap();
    shard.tick(1);
    assert_eq!(result(&shard), 0);
    let lost = dealt(&mut shard, near).unwrap_or(0.0);
    assert_eq!(shard.entity(near).unwrap().record.hp[0], 100.0 - lost);
    shard.push_action(C, 2, 1, near).unwrap();
    shard.tick(2);
    assert_eq!(result(&shard), ActionRefusal::OnCooldown.code());
    // Out of range, unknown target, unknown action, not an enemy.
    shard.push_action(C, 3, 2, far).unwrap();
    shard.push_action(C, 4, 2, 999_999).unwrap();
    shard.push_action(C, 5, 77, near).unwrap();
    shard.push_action(C, 6, 7, me).unwrap();
    shard.tick(3);
    let codes: Vec<u8> = shard.action_results().iter().map(|r| r.result).collect();
    assert_eq!(
        codes,
        [
            ActionRefusal::OutOfRange.code(),
            ActionRefusal::NoTarget.code(),
            ActionRefusal::UnknownAction.code(),
            ActionRefusal::NotAnEnemy.code()
        ]
    );
    // Fireball: a cast (CASTING while it lasts), then it burns (damage over
    // time) and the burn expires by itself.
    shard.push_action(C, 7, 2, near).unwrap();
    shard.tick(4);
    assert_eq!(result(&shard), 0);
    assert!(
        shard
            .entity(me)
            .unwrap()
            .record
            .state
            .contains(EntityState::CASTING)
    );
    let mut tick = 5;
    while shard
        .entity(me)
        .unwrap()
        .record
        .state
        .contains(EntityState::CASTING)
    {
        shard.tick(tick);
        tick += 1;
    }
    // 800 ms shortened by WIT 20: 600 ms, 36 ticks.
    assert_eq!(tick, 4 + 36 + 1);
    let info = shard.entity(near).unwrap();
    assert!(info.record.buffs.flags.contains(BuffFlags::BURNING));
    assert_eq!(
        info.quantized.status.buffs & BuffFlags::BURNING.0,
        BuffFlags::BURNING.0
    );
    let hp = info.record.hp[0];
    for t in tick..=300u32 {
        shard.tick(t);
    }
    let info = shard.entity(near).unwrap();
    assert!(!info.record.buffs.flags.contains(BuffFlags::BURNING));
    assert!(info.record.hp[0] < hp - 10.0);
    // Mana ran down: 100 − 20.
    assert_eq!(shard.entity(me).unwrap().record.mp[0], 80.0);
    // Kill it: it dies, actions on it are refused, it comes back later.
    let mut tick = 301;
    while shard.entity(near).unwrap().record.state.0 & 1 == 1 {
        shard.push_action(C, 100 + tick, 1, near).unwrap();
        shard.tick(tick);
        tick += 31;
    }
    shard.push_action(C, 1_000, 1, near).unwrap();
    shard.tick(tick);
    assert_eq!(result(&shard), ActionRefusal::TargetDead.code());
    for t in tick + 1..tick + 700 {
        shard.tick(t);
    }
    assert_eq!(shard.entity(near).unwrap().record.hp[0], 100.0);
}

#[test]
fn invisible_entities_are_hidden_from_enemies_only() {
    let data = WorldData {
        spawns: vec![monster_at(300.0)],
        ..WorldData::default()
    };
    let mut shard = shard_with(data);
    let me = player(&mut shard, [0.0; 3]);
    let monster = shard.local_net_ids().find(|&i| i != me).unwrap();
    let mut buf = [0u8; 1200];
    shard.tick(1);
    shard.write_snapshot(C, 1, 1200, &mut buf);
    assert!(shard.view_of(C).iter().any(|&(i, _)| i == monster));
    shard
        .apply_buff(monster, tos_shards::Buff::Invisible, 60, 1)
        .unwrap();
    for tick in 2..=10 {
        shard.tick(tick);
        shard.write_snapshot(C, tick, 1200, &mut buf);
        shard.on_snapshot_acked(C, tick);
    }
    assert!(!shard.view_of(C).iter().any(|&(i, _)| i == monster));
    for tick in 11..=80 {
        shard.tick(tick);
        shard.write_snapshot(C, tick, 1200, &mut buf);
        shard.on_snapshot_acked(C, tick);
    }
    // The buff expired: visible again.
    assert!(shard.view_of(C).iter().any(|&(i, _)| i == monster));
    // A player sees its own invisible self.
    shard
        .apply_buff(me, tos_shards::Buff::Invisible, 60, 1)
        .unwrap();
    for tick in 81..=90 {
        shard.tick(tick);
        shard.write_snapshot(C, tick, 1200, &mut buf);
    }
    assert!(shard.view_of(C).iter().any(|&(i, _)| i == me));
}

#[test]
fn claims_into_another_nodes_quadrants_are_held_at_the_border() {
    let mut shard = shard_with(WorldData::default());
    // The default grid is 16 x 16 x 1; x quadrants 8.. (x >= 0) are another
    // node's.
    assert!(
        !shard.set_foreign_quadrants(vec![Some(1); 3]),
        "wrong length"
    );
    let foreign: Vec<Option<u16>> = (0..256).map(|i| (i % 16 >= 8).then_some(1)).collect();
    assert!(shard.set_foreign_quadrants(foreign));
    assert!(shard.is_foreign([10.0, 0.0, 0.0]));
    assert!(!shard.is_foreign([-10.0, 0.0, 0.0]));
    let me = player(&mut shard, [-300.0, 0.0, 0.0]);
    let mut x = -300.0f32;
    let mut held = 0;
    for tick in 1..=120u32 {
        x += 15.0;
        shard
            .push_claim(C, claim(tick, [x, 0.0, 0.0], [900.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        for c in shard.corrections() {
            assert_eq!(c.reason, MoveRejection::NodeBorder);
            held += 1;
            x = c.position[0];
        }
        assert!(position(&shard, me)[0] < 0.0, "tick {tick}: crossed");
    }
    assert!(held > 0);
    assert!(position(&shard, me)[0] > -20.0, "walked up to the border");
    assert!(shard.cheat_counters(C).unwrap().node_border > 0);
}

#[test]
fn with_the_borders_open_a_legal_step_across_is_reported_and_the_player_held() {
    let mut shard = shard_with(WorldData::default());
    let foreign: Vec<Option<u16>> = (0..256).map(|i| (i % 16 >= 8).then_some(1)).collect();
    assert!(shard.set_foreign_quadrants(foreign));
    shard.set_crossings_open(true);
    let me = player(&mut shard, [-30.0, 0.0, 0.0]);
    let mut x = -30.0f32;
    let mut crossed = None;
    for tick in 1..=20u32 {
        x += 5.0;
        shard
            .push_claim(C, claim(tick, [x, 0.0, 0.0], [300.0, 0.0, 0.0]))
            .unwrap();
        shard.tick(tick);
        assert!(shard.corrections().is_empty(), "tick {tick}: corrected");
        if let Some(c) = shard.border_crossings().first() {
            assert_eq!(shard.border_crossings().len(), 1);
            assert_eq!(c.client, C);
            assert!(c.position[0] >= 0.0, "the claimed point across: {c:?}");
            crossed = Some(tick);
            break;
        }
    }
    let crossed = crossed.expect("the step across is reported");
    let stood = position(&shard, me);
    assert!(stood[0] < 0.0, "it stays on this side: {stood:?}");
    // Held: later claims (either way) move nothing and are not reported again.
    for tick in crossed + 1..crossed + 10 {
        shard
            .push_claim(
                C,
                claim(tick, [stood[0] - 4.0, 0.0, 0.0], [-300.0, 0.0, 0.0]),
            )
            .unwrap();
        shard.tick(tick);
        assert!(shard.border_crossings().is_empty());
        assert_eq!(position(&shard, me), stood);
    }
    // The other node did not take it: unfrozen, and corrected back with
    // the next tick's corrections.
    shard.end_crossing(C).unwrap();
    let t = crossed + 20;
    shard
        .push_claim(C, claim(t, [stood[0] - 4.0, 0.0, 0.0], [-240.0, 0.0, 0.0]))
        .unwrap();
    shard.tick(t);
    let c = shard.corrections().first().copied().expect("a correction");
    assert_eq!(c.reason, MoveRejection::NodeBorder);
    assert_eq!(c.position, stood);
    let back = position(&shard, me);
    assert!(back[0] < stood[0], "it moves again: {back:?}");
    // For a second a step across is a wall, not a new crossing...
    let across = [back[0] + 10.0, 0.0, 0.0];
    shard
        .push_claim(C, claim(t + 1, across, [300.0, 0.0, 0.0]))
        .unwrap();
    shard.tick(t + 1);
    assert!(
        shard.border_crossings().is_empty(),
        "no crossing in the cooldown"
    );
    assert_eq!(position(&shard, me), back);
    // ...and after it, the same step crosses again.
    for tick in t + 2..t + 80 {
        shard.tick(tick);
    }
    shard
        .push_claim(C, claim(t + 80, across, [300.0, 0.0, 0.0]))
        .unwrap();
    shard.tick(t + 80);
    assert_eq!(
        shard.border_crossings().len(),
        1,
        "{:?}",
        shard.corrections()
    );
    assert!(shard.end_crossing(tos_shards::ClientId(999)).is_err());
}
