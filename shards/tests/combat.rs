//! Combat, progression and loot through the shard: casts with cooldown,
//! mana and interruption; area skills; PvP by faction; experience split by
//! damage; level-ups from the level table; loot drops owned by the top
//! dealer; pick-ups exactly once, with range and owner window; consumables;
//! gear; hand-offs carrying level and experience; strikes on ghosts rolled
//! by the core owning the target.

mod common;

use common::{Cluster, layout, small_capacity};
use tos_config::{LayoutKind, ServerConfig};
use tos_protocol::wire::game::MovementClaim;
use tos_shards::combat::formula;
use tos_shards::{
    ActionRefusal, BaseStats, Buff, Character, ClientId, CombatFlags, ConsumableEffect,
    EntityState, EntityType, Faction, Shard, ShardEvent, SpawnParams, StatBonus, WorldData,
};

const A: ClientId = ClientId(1);
const B: ClientId = ClientId(2);

fn shard() -> Shard {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut s =
        Shard::with_capacity(0, &config, &layout, WorldData::default(), small_capacity()).unwrap();
    s.set_ai_enabled(false);
    s
}

fn enter(shard: &mut Shard, client: ClientId, at: [f32; 3], faction: Faction) -> u32 {
    shard
        .add_player(client, &Character::new(u64::from(client.0), at, faction))
        .unwrap();
    shard.player_of(client).unwrap()
}

fn monster(shard: &mut Shard, at: [f32; 3], hp: f32, level: u16, loot: u16) -> u32 {
    let mut p = SpawnParams::new(EntityType::Monster, Faction::MONSTERS, at);
    p.hp = hp;
    p.level = level;
    p.loot_table = loot;
    let id = shard.spawn(p).unwrap();
    shard
        .local_net_ids()
        .find(|&n| shard.entity(n).unwrap().id == id)
        .unwrap()
}

fn rec(shard: &Shard, net: u32) -> tos_shards::EntityRecord {
    shard.entity(net).unwrap().record
}

fn codes(shard: &Shard) -> Vec<u8> {
    shard.action_results().iter().map(|r| r.result).collect()
}

fn items(shard: &Shard) -> Vec<u32> {
    shard
        .local_net_ids()
        .filter(|&n| rec(shard, n).kind == EntityType::Item)
        .collect()
}

#[test]
fn casts_are_refused_while_casting_and_interrupted_by_moving_or_stuns() {
    let mut s = shard();
    let me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let m = monster(&mut s, [500.0, 0.0, 0.0], 1_000.0, 1, 0);
    // Fireball (cast 600 ms at WIT 20 = 36 ticks): accepted, casting.
    s.push_action(A, 1, 2, m).unwrap();
    s.tick(1);
    assert_eq!(codes(&s), [0]);
    let r = rec(&s, me);
    assert!(r.state.contains(EntityState::CASTING));
    assert_eq!(r.anim, tos_shards::shard::anim::CAST);
    assert_eq!(r.mp[0], 80.0, "mana is paid when the cast begins");
    // Anything else while casting: refused.
    s.push_action(A, 2, 1, m).unwrap();
    s.tick(2);
    assert_eq!(codes(&s), [ActionRefusal::Casting.code()]);
    // Moving interrupts: the client is told, nothing lands.
    s.push_claim(
        A,
        MovementClaim {
            input_seq: 3,
            position: [10.0, 30.0, 0.0],
            velocity: [0.0, 1000.0, 0.0],
            yaw: 0.0,
            anim: 1,
        },
    )
    .unwrap();
    s.tick(3);
    assert!(!rec(&s, me).state.contains(EntityState::CASTING));
    let events: Vec<ShardEvent> = s.take_events().collect();
    assert!(events.iter().any(|e| matches!(e,
        ShardEvent::Combat { client, flags, skill: 2, .. }
            if *client == A && flags.contains(CombatFlags::INTERRUPTED))));
    assert_eq!(rec(&s, m).hp[0], 1_000.0);
    // On cooldown (1 s) although interrupted.
    s.push_action(A, 4, 2, m).unwrap();
    s.tick(4);
    assert_eq!(codes(&s), [ActionRefusal::OnCooldown.code()]);
    // Stunned mid-cast: interrupted.
    s.push_action(A, 5, 2, m).unwrap();
    s.tick(70);
    assert_eq!(codes(&s), [0]);
    s.apply_buff(me, Buff::Stunned, 30, 1).unwrap();
    s.tick(71);
    assert!(!rec(&s, me).state.contains(EntityState::CASTING));
    assert_eq!(rec(&s, m).hp[0], 1_000.0);
    // Out of mana: 100 - 20 - 20 = 60; three Frost Bolts (30) cannot all go.
    s.tick(150);
    let mut t = 200;
    let mut refusals = Vec::new();
    for k in 0..3 {
        s.push_action(A, 10 + k, 3, m).unwrap();
        s.tick(t);
        refusals.extend(codes(&s));
        t += 200;
    }
    assert_eq!(refusals, [0, 0, ActionRefusal::NotEnoughMana.code()]);
    assert_eq!(s.cheat_counters(A).unwrap().actions_refused, 3);
}

#[test]
fn a_cast_lands_when_done_and_only_on_a_target_still_there() {
    let mut s = shard();
    let _me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let m = monster(&mut s, [500.0, 0.0, 0.0], 1_000.0, 1, 0);
    s.push_action(A, 1, 2, m).unwrap();
    s.tick(1);
    for t in 2..=36 {
        s.tick(t);
        assert_eq!(rec(&s, m).hp[0], 1_000.0, "tick {t}: not before it is done");
    }
    s.tick(37);
    let hit = s
        .take_events()
        .any(|e| matches!(e, ShardEvent::Combat { target, .. } if target == m));
    assert!(hit);
    // The target walks out of range (teleported) during the next cast.
    s.push_action(A, 2, 2, m).unwrap();
    s.tick(100);
    s.teleport(m, [9_000.0, 0.0, 0.0]).unwrap();
    let hp = rec(&s, m).hp[0];
    for t in 101..=140 {
        s.tick(t);
    }
    assert_eq!(rec(&s, m).hp[0], hp);
    assert!(s.take_events().any(|e| matches!(e,
        ShardEvent::Combat { flags, .. } if flags.contains(CombatFlags::INTERRUPTED))));
}

#[test]
fn area_skills_hit_enemies_around_the_target_only() {
    let mut s = shard();
    let _me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let ally = enter(&mut s, B, [150.0, 0.0, 0.0], Faction::ALLIANCE);
    let near: Vec<u32> = (0..5)
        .map(|k| {
            monster(
                &mut s,
                [100.0 * k as f32 - 200.0, 150.0, 0.0],
                1_000.0,
                1,
                0,
            )
        })
        .collect();
    let far = monster(&mut s, [0.0, 1_000.0, 0.0], 1_000.0, 1, 0);
    let townsfolk = {
        let p = SpawnParams::new(EntityType::Npc, Faction::TOWNSFOLK, [50.0, 50.0, 0.0]);
        let id = s.spawn(p).unwrap();
        s.local_net_ids()
            .find(|&n| s.entity(n).unwrap().id == id)
            .unwrap()
    };
    // Whirlwind: radius 350 around the caster.
    s.push_action(A, 1, 9, 0).unwrap();
    s.tick(1);
    assert_eq!(codes(&s), [0]);
    let events: Vec<ShardEvent> = s.take_events().collect();
    let struck: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            ShardEvent::Combat { client, target, .. } if *client == A => Some(*target),
            _ => None,
        })
        .collect();
    for m in &near {
        assert!(struck.contains(m), "{m} not struck: {struck:?}");
    }
    for other in [far, townsfolk, ally] {
        assert!(!struck.contains(&other));
        assert_eq!(rec(&s, other).hp[0], rec(&s, other).hp[1]);
    }
}

#[test]
fn pvp_follows_the_faction_table() {
    let mut s = shard();
    let _a = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let b = enter(&mut s, B, [100.0, 0.0, 0.0], Faction::HORDE);
    let c = enter(&mut s, ClientId(3), [-100.0, 0.0, 0.0], Faction::ALLIANCE);
    s.push_action(A, 1, 1, c).unwrap();
    s.tick(1);
    assert_eq!(codes(&s), [ActionRefusal::NotAnEnemy.code()]);
    s.push_action(A, 2, 1, b).unwrap();
    s.tick(2);
    assert_eq!(codes(&s), [0]);
    // Both the caster and the target are told.
    let told: Vec<ClientId> = s
        .take_events()
        .filter_map(|e| match e {
            ShardEvent::Combat { client, .. } => Some(client),
            _ => None,
        })
        .collect();
    assert_eq!(told, [A, B]);
    // Heal (a cast) on the friend works; on the enemy it is refused.
    s.push_action(A, 3, 4, b).unwrap();
    s.tick(3);
    assert_eq!(codes(&s), [ActionRefusal::NotAFriend.code()]);
}

/// Strikes `target` with Strike until it dies; returns the tick after.
fn kill(s: &mut Shard, who: &[ClientId], target: u32, mut tick: u32) -> u32 {
    let mut seq = 1000;
    while rec(s, target).state.contains(EntityState::ALIVE) {
        for &c in who {
            seq += 1;
            s.push_action(c, seq, 1, target).unwrap();
        }
        s.tick(tick);
        tick += 31;
        assert!(tick < 1_000_000);
    }
    tick
}

#[test]
fn experience_is_split_by_damage_and_levels_follow_the_table() {
    let mut s = shard();
    let a = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let _b = enter(&mut s, B, [50.0, 0.0, 0.0], Faction::ALLIANCE);
    // Level 3: worth 20 + 10 * 9 = 110 experience.
    let m = monster(&mut s, [100.0, 100.0, 0.0], 300.0, 3, 0);
    // A hits twice as often as B.
    let mut tick = 1;
    let mut seq = 0;
    while rec(&s, m).state.contains(EntityState::ALIVE) {
        seq += 1;
        s.push_action(A, seq, 1, m).unwrap();
        if seq % 2 == 0 {
            s.push_action(B, seq, 1, m).unwrap();
        }
        s.tick(tick);
        tick += 31;
    }
    let mut damage = [0.0f32; 2];
    let mut gained = [0u64; 2];
    for e in s.take_events() {
        match e {
            ShardEvent::Combat {
                client,
                target,
                amount,
                flags,
                ..
            } if target == m && flags.contains(CombatFlags::HIT) => {
                damage[(client.0 - 1) as usize] += amount;
            }
            ShardEvent::Experience {
                client, gained: g, ..
            } => gained[(client.0 - 1) as usize] += g,
            _ => {}
        }
    }
    assert_eq!(gained[0] + gained[1], formula::kill_exp(3));
    let mut expect = [0u64; 2];
    formula::split_exp(110, &damage, &mut expect);
    assert_eq!(gained, expect, "damage {damage:?}");
    assert!(gained[0] > gained[1]);
    // The shard keeps the total in the player's columns (level 1 without a
    // template's growth, but the level still follows the table).
    let r = rec(&s, a);
    assert_eq!(r.progress.exp, gained[0]);
    assert_eq!(r.progress.level, if gained[0] >= 68 { 2 } else { 1 });
}

#[test]
fn level_ups_raise_the_maxima_of_the_template() {
    let mut s = shard();
    // A Human Fighter (template 1): 80 HP + 12 per level, 30 MP + ... .
    let mut c = Character::new(1, [0.0; 3], Faction::ALLIANCE);
    c.template = 1;
    c.hp_max = 80.0;
    c.mp_max = 30.0;
    c.hp = 50.0;
    c.mp = 30.0;
    c.stats = BaseStats {
        int: 21,
        str: 40,
        con: 43,
        men: 25,
        dex: 30,
        wit: 11,
    };
    s.add_player(A, &c).unwrap();
    let me = s.player_of(A).unwrap();
    s.grant_experience(A, 67).unwrap();
    assert_eq!(rec(&s, me).progress.level, 1);
    s.grant_experience(A, 1).unwrap();
    let r = rec(&s, me);
    assert_eq!((r.progress.level, r.progress.exp), (2, 68));
    assert_eq!(r.hp, [92.0, 92.0], "raised and healed to full");
    assert!(r.mp[1] > 30.0);
    // Two levels at once: one LevelUp to the level reached.
    s.grant_experience(A, 1168 - 68).unwrap();
    let events: Vec<ShardEvent> = s.take_events().collect();
    let ups: Vec<u16> = events
        .iter()
        .filter_map(|e| match e {
            ShardEvent::LevelUp { client, level } if *client == A => Some(*level),
            _ => None,
        })
        .collect();
    assert_eq!(ups, [2, 4]);
    assert_eq!(rec(&s, me).hp[1], 80.0 + 12.0 * 3.0);
    assert!(matches!(
        events.last(),
        Some(ShardEvent::LevelUp { level: 4, .. })
    ));
    assert!(s.grant_experience(ClientId(99), 1).is_err());
}

#[test]
fn loot_drops_near_the_body_owned_by_the_top_dealer() {
    let mut s = shard();
    let _a = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let _b = enter(&mut s, B, [0.0, 100.0, 0.0], Faction::ALLIANCE);
    // Table 1's first entry drops half the time: kill until something drops.
    let mut tick = 1;
    let mut drops = Vec::new();
    for _ in 0..20 {
        let m = monster(&mut s, [150.0, 0.0, 0.0], 40.0, 1, 1);
        tick = kill(&mut s, &[A], m, tick);
        drops = items(&s);
        if !drops.is_empty() {
            break;
        }
        s.despawn(m).unwrap();
    }
    assert!(!drops.is_empty(), "nothing dropped in 20 kills");
    for &d in &drops {
        let r = rec(&s, d);
        assert!(r.item.template != 0 && r.item.count >= 1);
        assert_eq!(r.item.owner, Some(A));
        let dx = r.position[0] - 150.0;
        let dy = r.position[1];
        assert!((dx * dx + dy * dy).sqrt() <= tos_shards::loot::SCATTER + 1.0);
    }
    let d = drops[0];
    // Visible through snapshots like any entity.
    let mut buf = [0u8; 1200];
    s.tick(tick);
    assert!(s.write_snapshot(A, tick, 1200, &mut buf) > 0);
    assert!(s.view_of(A).contains(&(d, EntityType::Item)));
    let tick = tick + 1;
    // B may not take it yet; A may.
    s.push_pickup(B, 1, d).unwrap();
    s.tick(tick);
    assert_eq!(codes(&s), [ActionRefusal::NotYourLoot.code()]);
    s.push_pickup(A, 2, d).unwrap();
    s.tick(tick + 1);
    assert_eq!(codes(&s), [0]);
    let r: Vec<ShardEvent> = s.take_events().collect();
    assert!(
        r.iter()
            .any(|e| matches!(e, ShardEvent::Looted { client, .. } if *client == A))
    );
    assert!(s.entity(d).is_none(), "despawned in the same step");
    // After the owner window (10 s) anyone may take the rest.
    if let Some(&d2) = drops.get(1) {
        s.tick(tick + 700);
        s.push_pickup(B, 3, d2).unwrap();
        s.tick(tick + 701);
        assert_eq!(codes(&s), [0]);
    }
}

#[test]
fn two_pickups_of_one_item_give_it_exactly_once() {
    for order in [[A, B], [B, A]] {
        let mut s = shard();
        enter(&mut s, order[0], [0.0; 3], Faction::ALLIANCE);
        enter(&mut s, order[1], [0.0, 50.0, 0.0], Faction::ALLIANCE);
        let mut tick = 1;
        let mut drops = Vec::new();
        for _ in 0..30 {
            let m = monster(&mut s, [100.0, 0.0, 0.0], 40.0, 1, 1);
            // Both hit it: the owner is one of them; wait out the window.
            tick = kill(&mut s, &[A, B], m, tick);
            drops = items(&s);
            if !drops.is_empty() {
                break;
            }
            s.despawn(m).unwrap();
        }
        let d = drops[0];
        s.tick(tick + 700);
        s.take_events().for_each(drop);
        s.push_pickup(A, 1, d).unwrap();
        s.push_pickup(B, 1, d).unwrap();
        s.tick(tick + 701);
        let mut results = codes(&s);
        results.sort_unstable();
        assert_eq!(results, [0, ActionRefusal::NoSuchItem.code()]);
        let looted: Vec<ShardEvent> = s
            .take_events()
            .filter(|e| matches!(e, ShardEvent::Looted { .. }))
            .collect();
        assert_eq!(looted.len(), 1);
        // The first client in arrival order wins.
        assert!(matches!(looted[0], ShardEvent::Looted { client, .. } if client == order[0]));
        assert!(s.entity(d).is_none());
    }
}

#[test]
fn pickups_far_away_or_of_nothing_are_refused() {
    let mut s = shard();
    enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let mut tick = 1;
    let mut drops = Vec::new();
    for _ in 0..30 {
        let m = monster(&mut s, [100.0, 0.0, 0.0], 40.0, 1, 1);
        tick = kill(&mut s, &[A], m, tick);
        drops = items(&s);
        if !drops.is_empty() {
            break;
        }
        s.despawn(m).unwrap();
    }
    let d = drops[0];
    let me = s.player_of(A).unwrap();
    s.teleport(me, [2_000.0, 0.0, 0.0]).unwrap();
    s.push_pickup(A, 1, d).unwrap();
    s.push_pickup(A, 2, 987_654).unwrap();
    s.push_pickup(A, 3, me).unwrap();
    s.tick(tick);
    assert_eq!(
        codes(&s),
        [
            ActionRefusal::ItemTooFar.code(),
            ActionRefusal::NoSuchItem.code(),
            ActionRefusal::NoSuchItem.code()
        ]
    );
    assert!(s.entity(d).is_some());
    assert_eq!(s.cheat_counters(A).unwrap().actions_refused, 3);
    // Items vanish by themselves after two minutes.
    for t in tick + 1..tick + 60 * 121 {
        s.tick(t);
    }
    assert!(s.entity(d).is_none());
}

#[test]
fn consumables_heal_with_a_cooldown_and_bad_ones_are_refused() {
    let mut s = shard();
    let me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    s.tick(1);
    let potion = ConsumableEffect {
        hp: 50.0,
        mp: 0.0,
        cooldown_ms: 10_000,
    };
    // Hurt it first (a Horde player strikes until it is down to < 50).
    let foe = enter(&mut s, B, [100.0, 0.0, 0.0], Faction::HORDE);
    let _ = foe;
    let mut t = 2;
    while rec(&s, me).hp[0] > 60.0 {
        s.push_action(B, t, 1, me).unwrap();
        s.tick(t);
        t += 31;
    }
    let before = rec(&s, me).hp[0];
    s.take_events().for_each(drop);
    assert_eq!(s.use_consumable(A, potion), Ok(()));
    assert_eq!(rec(&s, me).hp[0], (before + 50.0).min(100.0));
    assert!(s.take_events().any(|e| matches!(e,
        ShardEvent::Combat { client, flags, skill: 0, .. } if client == A && flags.contains(CombatFlags::HEAL))));
    assert_eq!(s.use_consumable(A, potion), Err(ActionRefusal::OnCooldown));
    let bad = ConsumableEffect {
        hp: -100.0,
        ..potion
    };
    assert_eq!(s.use_consumable(A, bad), Err(ActionRefusal::BadItem));
    let nan = ConsumableEffect {
        mp: f64::NAN,
        ..potion
    };
    assert_eq!(s.use_consumable(A, nan), Err(ActionRefusal::BadItem));
    assert_eq!(
        s.use_consumable(ClientId(77), potion),
        Err(ActionRefusal::NotInWorld)
    );
    // Ten seconds later it works again; never above the maximum.
    s.tick(t + 600);
    assert_eq!(s.use_consumable(A, potion), Ok(()));
    let r = rec(&s, me);
    assert!(r.hp[0] <= r.hp[1]);
    assert_eq!(s.cheat_counters(A).unwrap().actions_refused, 3);
}

#[test]
fn gear_changes_maxima_and_damage() {
    let mut s = shard();
    let me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let armour = StatBonus {
        hp_max: 50.0,
        p_atk: 500.0,
        ..StatBonus::default()
    };
    s.set_gear(A, armour).unwrap();
    assert_eq!(rec(&s, me).hp, [100.0, 150.0]);
    assert_eq!(rec(&s, me).fighter.gear.p_atk, 500.0);
    // Taking it off clamps the current HP.
    s.set_gear(A, StatBonus::default()).unwrap();
    assert_eq!(rec(&s, me).hp, [100.0, 100.0]);
    let bad = StatBonus {
        p_def: f64::INFINITY,
        ..StatBonus::default()
    };
    assert!(s.set_gear(A, bad).is_err());
    assert!(s.set_gear(ClientId(9), StatBonus::default()).is_err());
    // With a big weapon, a strike does more than without (same roll).
    let base = tos_shards::combat::DEFAULT_STATS;
    let plain = formula::attack(&base, 1, &Default::default(), false);
    let armed = formula::attack(
        &base,
        1,
        &tos_shards::combat::Gear {
            p_atk: 500.0,
            ..Default::default()
        },
        false,
    );
    assert!(
        formula::damage(10.0, armed, 20.0, 0.5, false)
            > formula::damage(10.0, plain, 20.0, 0.5, false)
    );
}

#[test]
fn clients_within_finds_the_players_nearby() {
    let mut s = shard();
    enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    enter(&mut s, B, [500.0, 0.0, 0.0], Faction::HORDE);
    enter(&mut s, ClientId(3), [5_000.0, 0.0, 0.0], Faction::ALLIANCE);
    let mut out = vec![ClientId(42)];
    s.clients_within([0.0; 3], 1_000.0, &mut out);
    assert_eq!(out, [A, B]);
    s.clients_within([5_000.0, 0.0, 0.0], 10.0, &mut out);
    assert_eq!(out, [ClientId(3)]);
    s.clients_within([0.0; 3], f32::NAN, &mut out);
    assert!(out.is_empty());
}

#[test]
fn hand_offs_carry_level_and_experience_and_ghost_strikes_land() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut cluster = Cluster::new(&config, &layout, &WorldData::default());
    for s in &mut cluster.shards {
        s.set_ai_enabled(false);
    }
    let mut c = Character::new(1, [-1_000.0, 0.0, 0.0], Faction::ALLIANCE);
    c.level = 3;
    c.exp = 500;
    c.template = 1;
    cluster.shards[0].add_player(A, &c).unwrap();
    let me = cluster.shards[0].player_of(A).unwrap();
    // A monster just across the border, on core 1, seen as a ghost on 0.
    let m = monster(&mut cluster.shards[1], [150.0, 0.0, 0.0], 500.0, 1, 0);
    cluster.step(1);
    cluster.step(2);
    assert!(cluster.shards[0].entity(m).is_some_and(|e| e.ghost));
    // Strike the ghost: shipped to core 1 and rolled there.
    cluster.shards[0].teleport(me, [-50.0, 0.0, 0.0]).unwrap();
    let mut landed = false;
    for k in 0..10u32 {
        cluster.shards[0].push_action(A, k + 1, 1, m).unwrap();
        cluster.step(3 + k * 31);
        let effects: Vec<_> = cluster.shards[0].take_remote_effects().collect();
        assert_eq!(effects.len(), 1);
        assert!(effects[0].strike.is_some());
        assert_eq!(effects[0].source_client, Some(A));
        for e in effects {
            cluster.shards[1].apply_remote_effect(e).unwrap();
        }
        if rec(&cluster.shards[1], m).hp[0] < 500.0 {
            landed = true;
            break;
        }
    }
    assert!(landed, "ten strikes on a ghost and none landed");
    assert!(rec(&cluster.shards[1], m).contributions.top() == Some(A));
    // Walk the player over: level and experience travel with it.
    cluster.shards[0].teleport(me, [1_000.0, 0.0, 0.0]).unwrap();
    cluster.step(400);
    cluster.step(401);
    assert!(cluster.shards[1].clients().contains(&A));
    let r = rec(&cluster.shards[1], me);
    assert_eq!(
        (r.progress.level, r.progress.exp, r.progress.template),
        (3, 500, 1)
    );
}

#[test]
fn a_ghost_item_is_refused_and_taken_once_on_its_own_core() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut cluster = Cluster::new(&config, &layout, &WorldData::default());
    // An item on core 1's ground, 200 units from a player on core 0.
    let item = cluster.shards[1]
        .spawn_item([150.0, 0.0, 0.0], 8, 3, None)
        .unwrap();
    assert!(
        cluster.shards[0]
            .spawn_item([150.0, 0.0, 0.0], 8, 3, None)
            .is_err()
    );
    cluster.shards[0]
        .add_player(A, &Character::new(1, [-50.0, 0.0, 0.0], Faction::ALLIANCE))
        .unwrap();
    cluster.shards[1]
        .add_player(B, &Character::new(2, [250.0, 0.0, 0.0], Faction::ALLIANCE))
        .unwrap();
    cluster.step(1);
    cluster.step(2);
    assert!(cluster.shards[0].entity(item).is_some_and(|e| e.ghost));
    // Both ask in the same tick: the ghost's side is refused, the owner
    // core's player gets it; exactly one Looted in the whole cluster.
    cluster.shards[0].push_pickup(A, 1, item).unwrap();
    cluster.shards[1].push_pickup(B, 1, item).unwrap();
    cluster.step(3);
    assert_eq!(
        codes(&cluster.shards[0]),
        [ActionRefusal::ItemElsewhere.code()]
    );
    assert_eq!(codes(&cluster.shards[1]), [0]);
    let looted: usize = cluster
        .shards
        .iter_mut()
        .map(|s| {
            s.take_events()
                .filter(|e| {
                    matches!(
                        e,
                        ShardEvent::Looted {
                            item: 8,
                            count: 3,
                            ..
                        }
                    )
                })
                .count()
        })
        .sum();
    assert_eq!(looted, 1);
    // Gone everywhere once the ghost is dropped.
    for t in 4..20 {
        cluster.step(t);
    }
    assert!(cluster.shards.iter().all(|s| s.entity(item).is_none()));
}

#[test]
fn npcs_use_skills_and_player_deaths_are_told() {
    let mut s = shard();
    let me = enter(&mut s, A, [0.0; 3], Faction::ALLIANCE);
    let m = monster(&mut s, [100.0, 0.0, 0.0], 500.0, 5, 0);
    assert_eq!(s.cast_skill(999_999, 1, me), Err(ActionRefusal::NotInWorld));
    let mut t = 1;
    while rec(&s, me).state.contains(EntityState::ALIVE) {
        s.tick(t);
        assert_eq!(s.cast_skill(m, 1, me), Ok(()));
        assert_eq!(s.cast_skill(m, 1, me), Err(ActionRefusal::OnCooldown));
        t += 31;
        assert!(t < 100_000);
    }
    let events: Vec<ShardEvent> = s.take_events().collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ShardEvent::Died { client } if *client == A))
    );
    assert!(events.iter().any(|e| matches!(e,
        ShardEvent::Combat { client, flags, .. } if *client == A && flags.contains(CombatFlags::KILL))));
    // Dead players neither act nor drink.
    s.push_action(A, 1, 1, m).unwrap();
    s.tick(t);
    assert_eq!(codes(&s), [ActionRefusal::Dead.code()]);
    let potion = ConsumableEffect {
        hp: 10.0,
        mp: 0.0,
        cooldown_ms: 0,
    };
    assert_eq!(s.use_consumable(A, potion), Err(ActionRefusal::Dead));
}

#[test]
fn players_regenerate_out_of_combat_only() {
    let mut s = shard();
    // A Human Fighter at level 3: 2 + 2 · 0.05 = 2.1 HP per second.
    let mut c = Character::new(1, [0.0; 3], Faction::ALLIANCE);
    c.template = 1;
    c.level = 3;
    c.hp_max = 104.0;
    c.hp = 50.0;
    c.mp_max = 41.0;
    c.mp = 41.0;
    s.add_player(A, &c).unwrap();
    let me = s.player_of(A).unwrap();
    for t in 1..=60 {
        s.tick(t);
    }
    let hp = rec(&s, me).hp[0];
    assert!((hp - 52.1).abs() < 0.01, "{hp}");
    // In combat (hit by a Horde player): no regeneration for 5 s.
    let foe = enter(&mut s, B, [100.0, 0.0, 0.0], Faction::HORDE);
    let _ = foe;
    s.push_action(B, 1, 1, me).unwrap();
    s.tick(61);
    let hurt = rec(&s, me).hp[0];
    for t in 62..=200 {
        s.tick(t);
    }
    assert_eq!(rec(&s, me).hp[0], hurt);
    // Out of combat again it climbs, never past the maximum.
    for t in 201..=60 * 120 {
        s.tick(t);
    }
    assert_eq!(rec(&s, me).hp[0], 104.0);
}

mod random_play {
    use super::*;
    use proptest::prelude::*;

    /// One random request.
    #[derive(Debug, Clone)]
    enum Op {
        Skill { who: u8, skill: u16, target: u8 },
        Pickup { who: u8, item: u8 },
        Potion { who: u8, hp: f64, mp: f64 },
        Gear { who: u8, bonus: [f64; 6] },
        Move { who: u8, dx: f32, dy: f32 },
        Wait,
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            -1.0e9f64..1.0e9,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u16..13, any::<u8>())
                .prop_map(|(who, skill, target)| Op::Skill { who, skill, target }),
            1 => (0u8..4, any::<u8>()).prop_map(|(who, item)| Op::Pickup { who, item }),
            1 => (0u8..4, any_f64(), any_f64()).prop_map(|(who, hp, mp)| Op::Potion { who, hp, mp }),
            1 => (0u8..4, proptest::array::uniform6(any_f64()))
                .prop_map(|(who, bonus)| Op::Gear { who, bonus }),
            1 => (0u8..4, -40.0f32..40.0, -40.0f32..40.0)
                .prop_map(|(who, dx, dy)| Op::Move { who, dx, dy }),
            2 => Just(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever players ask for, in any order, with any numbers: HP and
        /// MP stay finite and within `0..=max`, nothing panics, and every
        /// request gets exactly one result.
        #[test]
        fn vitals_stay_finite_and_in_bounds(ops in proptest::collection::vec(op(), 1..300)) {
            let mut s = shard();
            let clients: Vec<ClientId> = (1..=4).map(ClientId).collect();
            let mut pos = Vec::new();
            for (k, &c) in clients.iter().enumerate() {
                let f = if k % 2 == 0 { Faction::ALLIANCE } else { Faction::HORDE };
                let p = [k as f32 * 60.0, 0.0, 0.0];
                enter(&mut s, c, p, f);
                pos.push(p);
            }
            for k in 0..6 {
                monster(&mut s, [k as f32 * 50.0, 120.0, 0.0], 60.0, 1 + k as u16, 1);
            }
            let (mut tick, mut seq, mut asked) = (1u32, 0u32, 0usize);
            for op in ops {
                let ids: Vec<u32> = s.local_net_ids().collect();
                let pick = |n: u8| if n as usize % 8 == 7 { 999_999 } else { ids[n as usize % ids.len()] };
                seq += 1;
                match op {
                    Op::Skill { who, skill, target } => {
                        s.push_action(clients[who as usize], seq, skill, pick(target)).unwrap();
                        asked += 1;
                    }
                    Op::Pickup { who, item } => {
                        s.push_pickup(clients[who as usize], seq, pick(item)).unwrap();
                        asked += 1;
                    }
                    Op::Potion { who, hp, mp } => {
                        let _ = s.use_consumable(
                            clients[who as usize],
                            ConsumableEffect { hp, mp, cooldown_ms: 500 },
                        );
                    }
                    Op::Gear { who, bonus } => {
                        let b = StatBonus {
                            p_atk: bonus[0],
                            m_atk: bonus[1],
                            p_def: bonus[2],
                            m_def: bonus[3],
                            hp_max: bonus[4].clamp(-1.0e6, 1.0e6),
                            mp_max: bonus[5].clamp(-1.0e6, 1.0e6),
                        };
                        let _ = s.set_gear(clients[who as usize], b);
                    }
                    Op::Move { who, dx, dy } => {
                        let p = &mut pos[who as usize];
                        let to = [p[0] + dx, p[1] + dy, 0.0];
                        s.push_claim(
                            clients[who as usize],
                            MovementClaim {
                                input_seq: seq,
                                position: to,
                                velocity: [dx * 60.0, dy * 60.0, 0.0],
                                yaw: 0.0,
                                anim: 1,
                            },
                        )
                        .unwrap();
                        *p = to;
                    }
                    Op::Wait => {}
                }
                if seq % 3 == 0 {
                    s.tick(tick);
                    prop_assert_eq!(s.action_results().len(), asked);
                    asked = 0;
                    tick += 7;
                    s.take_events().for_each(drop);
                    for n in s.local_net_ids() {
                        let r = rec(&s, n);
                        for v in [r.hp, r.mp] {
                            prop_assert!(v[0].is_finite() && v[1].is_finite(), "{:?}", r);
                            prop_assert!(v[0] >= 0.0 && v[0] <= v[1], "{:?}", r);
                        }
                    }
                }
            }
        }
    }
}
