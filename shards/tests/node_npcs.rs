//! NPCs between cluster nodes, shard to shard without a network: two
//! one-core shards split the default world at x = 0 as two nodes (as in
//! `node_ghosts.rs`); an NPC that walks onto the other node's ground
//! leaves its shard as a `NodeDeparture`, its record is encoded and
//! decoded as the cluster carries it, and the other shard runs it with
//! its state, or the first takes it back. The engine carries the record
//! over NATS under a transit lease in `engine/tests/cluster.rs`.

mod common;

use tos_shards::{
    Buff, CarriedNpc, EntityType, Faction, NPC_BORDER_HOLD_SECS, NodeDeparture, NodeGhosts, Shard,
    SpawnParams,
};

/// Node `node` of two (west 0, east 1), one core each, borders open.
fn node(node: u16) -> Shard {
    let mut shard = common::cluster_node(node);
    shard.set_crossings_open(true);
    shard
}

fn monster(shard: &mut Shard, at: [f32; 3], wander: f32) -> u32 {
    let mut params = SpawnParams::new(EntityType::Monster, Faction::MONSTERS, at);
    params.hp = 300.0;
    params.speed = 400.0;
    params.wander_radius = wander;
    let id = shard.spawn(params).unwrap();
    shard
        .local_net_ids()
        .find(|&n| shard.entity(n).unwrap().id == id)
        .unwrap()
}

/// Carries each node's ghost batches to the other.
fn swap_ghosts(west: &mut Shard, east: &mut Shard) {
    let mut out = Vec::new();
    west.take_node_ghosts(&mut out);
    for b in out.drain(..) {
        east.accept_node_ghosts(NodeGhosts { node: 0, ..b });
    }
    east.take_node_ghosts(&mut out);
    for b in out.drain(..) {
        west.accept_node_ghosts(NodeGhosts { node: 1, ..b });
    }
}

/// What the cluster does with a departure: the record's bytes.
fn carried(d: &NodeDeparture) -> CarriedNpc {
    let bytes = d.npc.encode();
    assert!(CarriedNpc::is_npc_record(&bytes));
    assert!(
        bytes.len() < 2_048,
        "an NPC record is small: {} bytes",
        bytes.len()
    );
    let back = CarriedNpc::decode(&bytes).expect("a record decodes");
    assert_eq!(back, d.npc, "the record survives its bytes");
    back
}

#[test]
fn an_npc_on_the_other_nodes_ground_runs_there_with_its_state() {
    let mut west = node(0);
    let mut east = node(1);
    // Different tick counters: a node's ticks mean nothing to the other.
    west.tick(1_000);
    east.tick(50);
    let npc = monster(&mut west, [-300.0, 0.0, 0.0], 0.0);
    west.apply_buff(npc, Buff::Slowed, 600, 2).unwrap();
    west.teleport(npc, [300.0, 40.0, 0.0]).unwrap();
    west.tick(1_001);
    let departures: Vec<NodeDeparture> = west.take_npc_departures().collect();
    assert_eq!(departures.len(), 1);
    let d = &departures[0];
    assert_eq!((d.to_node, d.npc.net_id), (1, npc));
    assert!(
        !west.is_foreign(d.back),
        "it would go back to its own ground"
    );
    // Out of the simulation here, still seen (a ghost of the east's).
    let there = west.entity(npc).unwrap();
    assert!(there.ghost);
    assert_eq!(west.local_net_ids().filter(|&n| n == npc).count(), 0);
    // The buff had 600 - 1 ticks left; it has them on the other node too.
    let left = d.npc.buffs.until[Buff::Slowed as usize];
    assert_eq!(left, 599);

    let got = east.accept_npc(carried(d)).unwrap();
    assert_eq!(got, npc, "the network id is kept");
    let here = east.entity(npc).unwrap();
    assert!(!here.ghost);
    assert_eq!(here.record.kind, EntityType::Monster);
    assert_eq!(here.record.hp, [300.0, 300.0]);
    assert_eq!(here.record.position[0], 300.0);
    assert_eq!(here.record.buffs.until[Buff::Slowed as usize], 50 + 599);
    assert_eq!(
        here.record.ai.border_hold,
        50 + NPC_BORDER_HOLD_SECS * 60,
        "a wall for it for a few seconds"
    );
    // Twice is refused: exactly one copy runs.
    assert!(east.accept_npc(carried(d)).is_err());

    // The east publishes it; the west's ghost follows the east's batches.
    for t in 1..=3 {
        west.tick(1_001 + t);
        east.tick(50 + t);
        swap_ghosts(&mut west, &mut east);
    }
    assert!(west.entity(npc).unwrap().ghost);
    assert_eq!(east.take_npc_departures().count(), 0);
}

#[test]
fn an_npc_the_other_node_did_not_take_comes_back_and_holds_at_the_border() {
    let mut west = node(0);
    west.tick(1);
    let npc = monster(&mut west, [-300.0, 0.0, 0.0], 0.0);
    west.teleport(npc, [250.0, 0.0, 0.0]).unwrap();
    west.tick(2);
    let d = west.take_npc_departures().next().unwrap();
    let back = d.back;
    assert_eq!(west.keep_npc(d).unwrap(), npc);
    let here = west.entity(npc).unwrap();
    assert!(!here.ghost);
    assert_eq!(here.record.position, back);
    assert!(!west.is_foreign(here.record.position));
    // Held: even put across by hand, it does not leave again at once.
    west.teleport(npc, [250.0, 0.0, 0.0]).unwrap();
    // Kept at tick 2: held until tick 2 + the hold.
    let until = 2 + NPC_BORDER_HOLD_SECS * 60;
    for t in 3..until {
        west.tick(t);
        assert_eq!(west.take_npc_departures().count(), 0, "tick {t}");
    }
    west.tick(until);
    assert_eq!(west.take_npc_departures().count(), 1, "the hold is over");
}

#[test]
fn closed_borders_keep_npcs_and_bad_records_are_refused() {
    let mut west = node(0);
    west.set_crossings_open(false);
    west.tick(1);
    let npc = monster(&mut west, [-300.0, 0.0, 0.0], 0.0);
    west.teleport(npc, [250.0, 0.0, 0.0]).unwrap();
    west.tick(2);
    assert_eq!(
        west.take_npc_departures().count(),
        0,
        "NATS down: no crossing"
    );
    west.set_crossings_open(true);
    west.tick(3);
    let d = west.take_npc_departures().next().unwrap();

    let good = d.npc.encode();
    assert!(
        CarriedNpc::decode(&good[..good.len() / 2]).is_err(),
        "cut short"
    );
    assert!(
        CarriedNpc::decode(b"TOSN\x02()").is_err(),
        "unknown version"
    );
    assert!(CarriedNpc::decode(b"garbage").is_err());
    assert!(!CarriedNpc::is_npc_record(b"TOSX"));
    let mut nan = d.npc.clone();
    nan.position[1] = f32::NAN;
    assert!(CarriedNpc::decode(&nan.encode()).is_err(), "not finite");
    let mut player = d.npc.clone();
    player.kind = EntityType::Player;
    assert!(CarriedNpc::decode(&player.encode()).is_err(), "not an NPC");
    let mut hurt = d.npc.clone();
    hurt.hp = [500.0, 300.0];
    assert!(
        CarriedNpc::decode(&hurt.encode()).is_err(),
        "HP over its maximum"
    );
    // A record for the other node's ground is not run here.
    assert!(west.accept_npc(d.npc.clone()).is_err());
    // Its own node takes it back.
    west.keep_npc(d).unwrap();
}

#[test]
fn a_wanderer_near_the_border_walks_across_and_back() {
    let mut west = node(0);
    let mut east = node(1);
    west.set_ai_enabled(true);
    east.set_ai_enabled(true);
    // Home 5 m from the border, wandering 40 m around it.
    let npc = monster(&mut west, [-500.0, 0.0, 0.0], 4_000.0);
    let (mut on_east, mut back_west) = (false, false);
    for t in 1..=60 * 120 {
        west.tick(t);
        east.tick(t);
        let to_east: Vec<NodeDeparture> = west.take_npc_departures().collect();
        for d in &to_east {
            assert_eq!(d.to_node, 1);
            assert!(east.is_foreign(d.back), "it left from the west's ground");
            east.accept_npc(carried(d)).unwrap();
            on_east = true;
        }
        let to_west: Vec<NodeDeparture> = east.take_npc_departures().collect();
        for d in &to_west {
            assert_eq!(d.to_node, 0);
            west.accept_npc(carried(d)).unwrap();
            back_west |= on_east;
        }
        swap_ghosts(&mut west, &mut east);
        // Exactly one node simulates it at every tick.
        let local = |s: &Shard| s.entity(npc).is_some_and(|e| !e.ghost);
        assert!(local(&west) != local(&east), "tick {t}");
        if back_west {
            break;
        }
    }
    assert!(on_east, "it wandered onto the east's ground");
    assert!(back_west, "and home again");
}
