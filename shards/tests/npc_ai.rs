//! NPC AI across cores: a monster chasing a player over a core border is
//! handed off with its AI state and keeps chasing and attacking on the
//! next core.

mod common;

use common::{Cluster, layout};
use tos_config::{LayoutKind, NpcData, ServerConfig};
use tos_shards::{
    AiState, Character, ClientId, EntityType, Faction, NpcBook, SpawnPoint, WorldData,
};

fn find(cluster: &Cluster, net: u32) -> Option<(usize, tos_shards::EntityInfo)> {
    cluster
        .shards
        .iter()
        .enumerate()
        .find_map(|(k, s)| s.entity(net).filter(|e| !e.ghost).map(|e| (k, e)))
}

/// The aggressive Forest Wolf of the shipped npcs.ron (template 1: aggro
/// 1200, leash 3000, a 300-unit strike), standing at `x` on the x axis.
fn wolf(x: f32) -> SpawnPoint {
    SpawnPoint {
        kind: EntityType::Monster,
        faction: Faction::MONSTERS,
        position: [x, 0.0, 0.0],
        wander_radius: 0.0,
        speed: 300.0,
        hp: 120.0,
        mp: 20.0,
        template: 1,
        patrol: 0,
    }
}

#[test]
fn a_chasing_npc_is_handed_off_with_its_ai_state() {
    let config = ServerConfig::default();
    let layout = layout(&config, 2, LayoutKind::Stripes);
    let mut data = WorldData {
        npcs: NpcBook::from_data(&NpcData::embedded().unwrap()),
        ..WorldData::default()
    };
    // Template 1 of the shipped npcs.ron: the aggressive Forest Wolf
    // (aggro 1200, leash 3000, a 300-unit strike).
    data.spawns.push(wolf(-1_000.0));
    let mut cluster = Cluster::new(&config, &layout, &data);
    assert_eq!(
        cluster.shards[0].local_count(),
        1,
        "the wolf starts on core 0"
    );
    let wolf = cluster.shards[0].local_net_ids().next().unwrap();
    let me = ClientId(1);
    cluster.shards[0]
        .add_player(
            me,
            &Character::new(1, [-400.0, 0.0, 0.0], Faction::ALLIANCE),
        )
        .unwrap();
    let player = cluster.shards[0].player_of(me).unwrap();
    let mut tick = 0;
    let mut step = |cluster: &mut Cluster| {
        tick += 1;
        cluster.step(tick);
    };
    for _ in 0..120 {
        step(&mut cluster);
    }
    let (_, w) = find(&cluster, wolf).unwrap();
    assert!(
        matches!(w.record.ai.state, AiState::Chase | AiState::Attack),
        "{:?}",
        w.record.ai
    );
    // The player steps over the border to core 1.
    cluster.shards[0]
        .teleport(player, [1_500.0, 0.0, 0.0])
        .unwrap();
    let mut crossed = None;
    for _ in 0..600 {
        step(&mut cluster);
        // In flight between cores for a tick: then it is in a hand-off.
        let in_flight = cluster.handoffs.iter().any(|h| h.entity.net_id == wolf);
        match find(&cluster, wolf) {
            Some((1, w)) if crossed.is_none() => crossed = Some(w.record.ai),
            Some(_) => {}
            None => assert!(in_flight, "the wolf is somewhere"),
        }
        if cluster.shards[1].ai_stats().attacks > 0 {
            break;
        }
    }
    let brain = crossed.expect("the wolf followed over the border");
    assert!(
        matches!(brain.state, AiState::Chase | AiState::Attack),
        "{brain:?}"
    );
    assert_eq!(brain.target, player);
    assert_eq!(brain.home[0], -1_000.0, "its home came along");
    assert!(
        cluster.shards[1].ai_stats().attacks > 0,
        "the wolf attacks on core 1"
    );
    let (core, w) = find(&cluster, wolf).unwrap();
    assert_eq!(core, 1);
    assert_eq!(w.record.template, 1);
    assert_eq!(w.record.ai.state, AiState::Attack, "{:?}", w.record.ai);
    let (pcore, p) = find(&cluster, player).unwrap();
    assert_eq!(pcore, 1);
    assert!(p.record.hp[0] < p.record.hp[1], "{:?}", p.record.hp);
}

#[test]
fn a_chasing_npc_stops_at_a_closed_node_border() {
    let config = ServerConfig::default();
    let layout = layout(&config, 1, LayoutKind::Stripes);
    let mut data = WorldData {
        npcs: NpcBook::from_data(&NpcData::embedded().unwrap()),
        ..WorldData::default()
    };
    // The aggressive Forest Wolf of the shipped npcs.ron, 600 units west
    // of the border at x = 0; the east (x >= 0) is another node's.
    data.spawns.push(wolf(-600.0));
    let mut cluster = Cluster::new(&config, &layout, &data);
    let foreign: Vec<Option<u16>> = (0..256).map(|i| (i % 16 >= 8).then_some(1)).collect();
    assert!(cluster.shards[0].set_foreign_quadrants(foreign));
    let wolf = cluster.shards[0].local_net_ids().next().unwrap();
    let me = ClientId(1);
    cluster.shards[0]
        .add_player(
            me,
            &Character::new(1, [-300.0, 0.0, 0.0], Faction::ALLIANCE),
        )
        .unwrap();
    let player = cluster.shards[0].player_of(me).unwrap();
    let mut chased = false;
    for tick in 1..=60 {
        cluster.step(tick);
        let (_, w) = find(&cluster, wolf).unwrap();
        chased |= matches!(w.record.ai.state, AiState::Chase | AiState::Attack);
    }
    assert!(chased, "the wolf goes for the player");
    // The player is now across the border (as if on the other node's side
    // of it, within the wolf's leash): the wolf follows up to the line only.
    cluster.shards[0]
        .teleport(player, [400.0, 0.0, 0.0])
        .unwrap();
    let mut nearest = f32::MIN;
    for tick in 61..=600 {
        cluster.step(tick);
        let (_, w) = find(&cluster, wolf).unwrap();
        assert!(
            w.record.position[0] < 0.0,
            "tick {tick}: the wolf crossed: {:?}",
            w.record.position
        );
        nearest = nearest.max(w.record.position[0]);
    }
    assert!(
        nearest > -200.0,
        "it did walk towards the border: {nearest}"
    );

    // The borders open (NATS answers): the wolf walks on, and steps out of
    // this node's simulation with its chase, its target and its home.
    cluster.shards[0].set_crossings_open(true);
    let mut departure = None;
    for tick in 601..=900 {
        cluster.step(tick);
        if let Some(d) = cluster.shards[0].take_npc_departures().next() {
            departure = Some(d);
            break;
        }
    }
    let d = departure.expect("the wolf crossed the open border");
    assert_eq!((d.to_node, d.npc.net_id, d.npc.template), (1, wolf, 1));
    assert!(d.npc.position[0] >= 0.0 && d.back[0] < 0.0, "{d:?}");
    assert!(
        matches!(d.npc.ai.state, AiState::Chase | AiState::Attack),
        "{:?}",
        d.npc.ai
    );
    assert_eq!(d.npc.ai.target, player);
    assert_eq!(d.npc.ai.home[0], -600.0);
    let w = cluster.shards[0].entity(wolf).unwrap();
    assert!(
        w.ghost,
        "seen here as the other node's, no longer simulated"
    );
}
