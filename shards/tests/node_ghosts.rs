//! Between cluster nodes, shard to shard without a network: two one-core
//! shards split the default world at x = 0 as two nodes; their
//! `NodeGhosts` batches, and a crossing player's carried buffs and
//! cooldowns, are passed by hand (the engine carries them over NATS in
//! `engine/tests/cluster.rs`).

mod common;

use common::{layout, small_capacity};
use tos_config::{LayoutKind, ServerConfig};
use tos_shards::{
    ActionRefusal, Buff, CarriedCombat, Character, ClientId, EntityType, Faction, NetIdSpace,
    NodeGhosts, Shard, WorldData, peer_node,
};

/// Node `node` of two (west 0, east 1), one core each.
fn node(node: u16) -> Shard {
    common::cluster_node(node)
}

const WEST: ClientId = ClientId(1);
const EAST: ClientId = ClientId(2);

fn enter(shard: &mut Shard, client: ClientId, id: u64, at: [f32; 3]) -> u32 {
    shard
        .add_player(client, &Character::new(id, at, Faction::ALLIANCE))
        .unwrap();
    shard.player_of(client).unwrap()
}

/// One tick of both nodes; each one's batches for the other are carried.
fn tick(west: &mut Shard, east: &mut Shard, t: u32) -> [usize; 2] {
    let mut kept = [0; 2];
    let mut local = Vec::new();
    let mut out = Vec::new();
    west.tick(t);
    east.tick(t);
    for (from, to, k) in [(0u16, 1usize, 1usize), (1, 0, 0)] {
        local.clear();
        out.clear();
        let (sender, receiver) = if from == 0 {
            (&mut *west, &mut *east)
        } else {
            (&mut *east, &mut *west)
        };
        sender.publish_ghosts(&mut local);
        assert!(local.is_empty(), "one core per node: no core neighbours");
        sender.take_node_ghosts(&mut out);
        assert_eq!(out.len(), 1, "one batch for the one other node");
        for b in out.drain(..) {
            assert_eq!(usize::from(b.node), to);
            kept[k] += receiver.accept_node_ghosts(NodeGhosts { node: from, ..b });
        }
    }
    kept
}

#[test]
fn players_near_the_border_are_ghosts_on_the_other_node_and_far_ones_are_not() {
    let mut west = node(0);
    let mut east = node(1);
    let w = enter(&mut west, WEST, 1, [-400.0, 0.0, 0.0]);
    let e = enter(&mut east, EAST, 2, [400.0, 0.0, 0.0]);
    // Two residue classes: ids never meet.
    assert_eq!(w % 2, 0);
    assert_eq!(e % 2, 1);
    // Beyond any interest distance of the border (1 km = 100,000 units).
    let far = enter(&mut east, ClientId(3), 3, [300_000.0, 0.0, 0.0]);
    for t in 1..=3 {
        tick(&mut west, &mut east, t);
    }
    let ghost = west
        .entity(e)
        .expect("the east's player is a ghost in the west");
    assert!(ghost.ghost);
    assert_eq!(ghost.record.kind, EntityType::Player);
    assert_eq!(ghost.record.position[0], 400.0);
    assert!(east.entity(w).expect("and the other way").ghost);
    assert!(west.entity(far).is_none(), "far from the border: not sent");
    // Say carries 2,000 units: heard across the border from 400 away.
    assert!(west.near_foreign([-400.0, 0.0, 0.0], 2_000.0));
    assert!(!west.near_foreign([-3_000.0, 0.0, 0.0], 2_000.0));
    assert!(!west.near_foreign([-400.0, 0.0, 0.0], f32::NAN));

    // Borders closed (NATS down): a skill at the ghost is refused, as it
    // could not be carried.
    assert_eq!(
        west.cast_skill(w, 1, e),
        Err(ActionRefusal::AcrossNodeBorder)
    );

    // It moves: the ghost follows.
    east.remove_player(EAST).unwrap();
    let e2 = enter(&mut east, EAST, 2, [900.0, 50.0, 0.0]);
    for t in 4..=5 {
        tick(&mut west, &mut east, t);
    }
    assert_eq!(west.entity(e2).unwrap().record.position[0], 900.0);
    // The removed one is dropped once the east's batches stop naming it.
    for t in 6..=20 {
        tick(&mut west, &mut east, t);
    }
    assert!(
        west.entity(e).is_none(),
        "a ghost no batch names is dropped"
    );
}

#[test]
fn ghosts_of_a_silent_node_time_out_and_bad_batches_are_not_kept() {
    let mut west = node(0);
    let mut east = node(1);
    let e = enter(&mut east, EAST, 2, [400.0, 0.0, 0.0]);
    tick(&mut west, &mut east, 1);
    assert!(west.entity(e).is_some());
    // The east falls silent (NATS down): the west keeps the ghost a while,
    // then drops it.
    let mut local = Vec::new();
    for t in 2..=200 {
        west.tick(t);
        west.publish_ghosts(&mut local);
        local.clear();
    }
    assert!(west.entity(e).is_none(), "dropped after the ghost timeout");

    // A batch naming an entity on the west's own ground, or one far from
    // any viewer of the west, is not kept; nor one from a node id past
    // the plan's peers.
    let mut batch = Vec::new();
    east.tick(201);
    east.publish_ghosts(&mut local);
    east.take_node_ghosts(&mut batch);
    let mut b = batch.pop().unwrap();
    assert_eq!(b.ghosts.len(), 1);
    let mut on_west = b.ghosts[0];
    on_west.net_id = 99;
    on_west.position = [-500.0, 0.0, 0.0];
    let mut far = b.ghosts[0];
    far.net_id = 101;
    far.position = [390_000.0, 0.0, 0.0];
    b.ghosts = vec![on_west, far];
    assert_eq!(
        west.accept_node_ghosts(NodeGhosts {
            node: 1,
            ..b.clone()
        }),
        0
    );
    assert_eq!(west.accept_node_ghosts(NodeGhosts { node: 999, ..b }), 0);
    assert!(west.entity(99).is_none() && west.entity(101).is_none());
}

#[test]
fn buffs_and_cooldowns_travel_with_a_player_to_the_other_node() {
    let mut west = node(0);
    let mut east = node(1);
    let w = enter(&mut west, WEST, 1, [-400.0, 0.0, 0.0]);
    tick(&mut west, &mut east, 1);
    // Vanish: Invisible for 5 s, cooling down 10 s.
    west.cast_skill(w, 5, 0).unwrap();
    let carried = west.carried_combat(WEST).unwrap();
    assert_eq!(carried.buffs, [(Buff::Invisible, 5_000, 1)]);
    assert_eq!(carried.cooldowns, [(5, 10_000)]);
    assert_eq!(carried.consumable_ms, 0);
    for t in 2..=31 {
        tick(&mut west, &mut east, t);
    }
    // Half a second later (30 ticks at 60 Hz).
    let carried = west.carried_combat(WEST).unwrap();
    assert_eq!(carried.buffs, [(Buff::Invisible, 4_500, 1)]);
    assert_eq!(carried.cooldowns, [(5, 9_500)]);

    // The player crosses: a new entity on the east with what it carried.
    west.remove_player(WEST).unwrap();
    let e = enter(&mut east, EAST, 1, [50.0, 0.0, 0.0]);
    east.restore_combat(EAST, &carried).unwrap();
    assert_eq!(east.carried_combat(EAST).unwrap(), carried);
    assert_eq!(east.cast_skill(e, 5, 0), Err(ActionRefusal::OnCooldown));
    let state = east.entity(e).unwrap().record.state;
    assert!(state.contains(tos_shards::EntityState::ALIVE));
    // Unknown skills are ignored; times are cut to an hour.
    let odd = CarriedCombat {
        buffs: vec![(Buff::Slowed, u32::MAX, 2)],
        cooldowns: vec![(999, 1_000)],
        consumable_ms: 0,
    };
    let other = enter(&mut east, ClientId(9), 9, [60.0, 0.0, 0.0]);
    east.restore_combat(ClientId(9), &odd).unwrap();
    let got = east.carried_combat(ClientId(9)).unwrap();
    assert_eq!(got.buffs, [(Buff::Slowed, 3_600_000, 2)]);
    assert!(got.cooldowns.is_empty());
    assert!(east.entity(other).is_some());
    assert!(east.restore_combat(ClientId(77), &odd).is_err());
}

#[test]
fn a_node_of_two_cores_sends_core_and_node_batches_and_each_core_keeps_its_own() {
    // The west runs two cores (y < 0 and y >= 0 of x < 0); the east one.
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Blocks { cols: 1, rows: 2 });
    let west_core = |core: u16| {
        let data = WorldData {
            net_ids: NetIdSpace {
                first: 0,
                stride: 3,
            },
            ..WorldData::default()
        };
        let mut s = Shard::with_capacity(core, &config, &layout, data, small_capacity()).unwrap();
        let table = (0..256).map(|i| (i % 16 >= 8).then_some(1)).collect();
        assert!(s.set_foreign_quadrants(table));
        s
    };
    let (mut w0, mut w1) = (west_core(0), west_core(1));
    let id = enter(&mut w0, WEST, 1, [-400.0, -400.0, 0.0]);
    assert_eq!(id % 3, 0, "core 0 of the first node");
    w0.tick(1);
    let mut local = Vec::new();
    let mut nodes = Vec::new();
    w0.publish_ghosts(&mut local);
    w0.take_node_ghosts(&mut nodes);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].to_core, 1, "the other core of its node");
    assert!(local[0].ghosts.iter().any(|g| g.net_id == id));
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].node, 1, "the other node");
    assert!(nodes[0].ghosts.iter().any(|g| g.net_id == id));

    // From the east: one entity by both west cores, one only by core 1's
    // ground (3 km north of core 0's).
    let mut east = node(1);
    let near_both = enter(&mut east, EAST, 2, [400.0, 400.0, 0.0]);
    let north = enter(&mut east, ClientId(3), 3, [400.0, 300_000.0, 0.0]);
    east.tick(1);
    let mut out = Vec::new();
    east.publish_ghosts(&mut local);
    east.take_node_ghosts(&mut out);
    let batch = out.pop().unwrap();
    assert!(batch.ghosts.iter().any(|g| g.net_id == north));
    w1.tick(1);
    for (shard, keeps_north) in [(&mut w0, false), (&mut w1, true)] {
        shard.accept_node_ghosts(NodeGhosts {
            node: 1,
            ..batch.clone()
        });
        assert!(shard.entity(near_both).is_some());
        assert_eq!(shard.entity(north).is_some(), keeps_north);
    }
}

#[test]
fn a_player_arriving_from_the_other_node_drops_its_old_ghost_for_good() {
    let mut west = node(0);
    let mut east = node(1);
    let e = enter(&mut east, EAST, 2, [30.0, 0.0, 0.0]);
    tick(&mut west, &mut east, 1);
    assert!(west.entity(e).unwrap().ghost);
    // A batch still naming it, sent before it left the east.
    let mut local = Vec::new();
    let mut late = Vec::new();
    east.tick(2);
    east.publish_ghosts(&mut local);
    east.take_node_ghosts(&mut late);
    let late = late.pop().unwrap();
    // It arrives in the west as a new local entity; the old ghost goes.
    east.remove_player(EAST).unwrap();
    let arrived = enter(&mut west, ClientId(5), 2, [-30.0, 0.0, 0.0]);
    assert!(west.forget_crossed_ghost(e));
    assert!(west.entity(e).is_none());
    assert!(
        !west.forget_crossed_ghost(arrived),
        "a local entity is no ghost"
    );
    // The late batch does not bring it back.
    west.tick(2);
    west.accept_node_ghosts(NodeGhosts {
        node: 1,
        ..late.clone()
    });
    assert!(
        west.entity(e).is_none(),
        "kept out while batches may be in flight"
    );
    // Long after, the same id may be a ghost again (ids are reused).
    for t in 3..=20 {
        west.tick(t);
    }
    west.accept_node_ghosts(NodeGhosts { node: 1, ..late });
    assert!(west.entity(e).is_some());
}

#[test]
fn a_skill_at_another_nodes_ghost_becomes_an_effect_for_that_node() {
    let mut west = node(0);
    let mut east = node(1);
    west.set_crossings_open(true);
    east.set_crossings_open(true);
    // Two metres apart, within a Strike's 3 m, the border between them.
    let w = enter(&mut west, WEST, 1, [-100.0, 0.0, 0.0]);
    east.add_player(EAST, &Character::new(2, [100.0, 0.0, 0.0], Faction::HORDE))
        .unwrap();
    let e = east.player_of(EAST).unwrap();
    for t in 1..=3 {
        tick(&mut west, &mut east, t);
    }
    assert!(west.entity(e).unwrap().ghost);
    west.cast_skill(w, 1, e)
        .expect("a Strike across the border");
    let effects: Vec<_> = west.take_remote_effects().collect();
    assert_eq!(effects.len(), 1);
    let effect = effects[0];
    assert_eq!(peer_node(1, effect.to_core), Some(1), "for node 1");
    assert_eq!((effect.target, effect.source), (e, w));
    assert_eq!(effect.source_client, None, "client ids are a node's own");
    assert!(effect.strike.is_some(), "rolled on the target's node");
    // The east rolls it against its player's own stats, and says what it
    // did (for the caster's node to tell its player).
    let (amount, flags) = east
        .apply_node_effect(effect)
        .unwrap()
        .expect("a hit or a miss to tell");
    assert!(amount >= 0.0 && flags.bits() != 0);
    let hit = east.entity(e).unwrap().record;
    assert!(
        hit.combat_until > 0,
        "the target is in combat, hit or missed"
    );
    // Not for the west to apply: it only sees a ghost.
    assert!(west.apply_remote_effect(effect).is_err());
}
