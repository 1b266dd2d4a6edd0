//! Paths go around walls and never up cliffs: every piece of every path,
//! cut into the moves an NPC makes per tick, is a movement claim the
//! player check accepts.

use proptest::prelude::*;
use tos_config::{AuthorityConfig, WorldConfig};
use tos_protocol::wire::game::MovementClaim;

use super::*;
use crate::authority::{MoveContext, MoverState, validate_claim};
use crate::world::{Aabb, Heightfield, ObstacleIndex};

fn terrain(heightfield: Heightfield, boxes: Vec<Aabb>) -> Terrain {
    Terrain {
        heightfield,
        obstacles: ObstacleIndex::new(boxes).unwrap(),
    }
}

fn rules() -> MovementRules {
    MovementRules::new(&AuthorityConfig::default(), 60)
}

/// Walks `start` through `path` in moves of at most 10 units (600 units/s
/// at 60 Hz), each checked as a claim; panics naming the first refused.
fn walk_as_claims(t: &Terrain, start: [f32; 2], path: &[[f32; 2]]) {
    let rules = rules();
    let quantizer = WorldConfig::default().quantizer().unwrap();
    let ctx = MoveContext {
        rules: &rules,
        quantizer: &quantizer,
        terrain: t,
    };
    let ground = |p: [f32; 2]| [p[0], p[1], t.heightfield.height_at(p[0], p[1])];
    let mut from = start;
    for &to in path {
        let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
        let len = (dx * dx + dy * dy).sqrt();
        let pieces = (len / 10.0).ceil().max(1.0) as u32;
        let mut a = from;
        for k in 1..=pieces {
            let f = k as f32 / pieces as f32;
            let b = [from[0] + dx * f, from[1] + dy * f];
            let mut mover = MoverState {
                credit: 1e9,
                ..MoverState::default()
            };
            let claim = MovementClaim {
                input_seq: 1,
                position: ground(b),
                velocity: [0.0; 3],
                yaw: 0.0,
                anim: 1,
            };
            if let Err(why) = validate_claim(&ctx, &mut mover, ground(a), &claim, 1.0, false) {
                panic!("move {a:?} -> {b:?} (path {start:?} {path:?}) refused: {why:?}");
            }
            a = b;
        }
        from = to;
    }
}

#[test]
fn a_path_goes_around_a_wall() {
    let wall = Aabb::new([500.0, -1_000.0, -100.0], [520.0, 1_000.0, 300.0]);
    let t = terrain(Heightfield::flat(0.0), vec![wall]);
    let nav = Nav::new(&t, true, rules().max_step);
    let mut finder = Pathfinder::new(NavParams::new(&rules()));
    let mut out = [[0.0; 2]; 16];
    let r = finder.find(&nav, [0.0, 0.0], [1_000.0, 0.0], 100_000, &mut out);
    let PathOutcome::Found(n) = r else {
        panic!("{r:?}")
    };
    assert_eq!(out[n - 1], [1_000.0, 0.0]);
    assert!(
        out[..n].iter().any(|p| p[1].abs() > 1_000.0),
        "{:?}",
        &out[..n]
    );
    walk_as_claims(&t, [0.0, 0.0], &out[..n]);
    assert!(finder.last_expanded() > 0);
    // A straight line needs no search.
    let r = finder.find(&nav, [0.0, 0.0], [-1_000.0, 0.0], 100_000, &mut out);
    assert_eq!(
        (r, out[0], finder.last_expanded()),
        (PathOutcome::Found(1), [-1_000.0, 0.0], 0)
    );
}

#[test]
fn a_walled_in_goal_is_partial_and_a_cliff_is_not_climbed() {
    // A goal inside a closed ring of walls.
    let ring = vec![
        Aabb::new([900.0, -300.0, -100.0], [920.0, 300.0, 300.0]),
        Aabb::new([1_480.0, -300.0, -100.0], [1_500.0, 300.0, 300.0]),
        Aabb::new([900.0, -300.0, -100.0], [1_500.0, -280.0, 300.0]),
        Aabb::new([900.0, 280.0, -100.0], [1_500.0, 300.0, 300.0]),
    ];
    let t = terrain(Heightfield::flat(0.0), ring);
    let nav = Nav::new(&t, true, rules().max_step);
    let mut finder = Pathfinder::new(NavParams::new(&rules()));
    let mut out = [[0.0; 2]; 8];
    let r = finder.find(&nav, [0.0, 0.0], [1_200.0, 0.0], 100_000, &mut out);
    assert!(matches!(r, PathOutcome::Partial(_)), "{r:?}");
    walk_as_claims(&t, [0.0, 0.0], &out[..r.len()]);
    // A 1000-unit plateau edge (a cliff) on the straight line: the slope
    // rule refuses it, and the way round is over the gentle side.
    let mut heights = vec![0.0; 10 * 10];
    for j in 0..10 {
        for i in 5..10 {
            // A cliff at x = 500 for y < 500 (rows 0..5); a ramp of 20
            // units per 100 (slope 0.2 < 0.6 allowed) further up.
            heights[i + j * 10] = if j < 5 {
                1_000.0
            } else {
                20.0 * (i as f32 - 4.0)
            };
        }
    }
    let hf = Heightfield::new([0.0, 0.0], 100.0, [10, 10], heights).unwrap();
    let t = terrain(hf, vec![]);
    let nav = Nav::new(&t, false, rules().max_step);
    assert!(!nav.step_ok([100.0, 200.0], [800.0, 200.0]));
    assert!(nav.step_ok([100.0, 800.0], [800.0, 800.0]));
    assert!(
        nav.step_ok([800.0, 200.0], [100.0, 200.0]),
        "down a cliff is a fall, allowed"
    );
}

fn world() -> impl Strategy<Value = (Vec<f32>, Vec<Aabb>, [f32; 2], [f32; 2])> {
    let heights = prop::collection::vec(
        prop_oneof![4 => Just(0.0f32), 2 => 0.0f32..40.0, 1 => 200.0f32..600.0],
        21 * 21,
    );
    let boxes = prop::collection::vec(
        (
            -1_800.0f32..1_800.0,
            -1_800.0f32..1_800.0,
            20.0f32..900.0,
            20.0f32..900.0,
            50.0f32..400.0,
        ),
        0..14,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(x, y, w, h, z)| Aabb::new([x, y, -50.0], [x + w, y + h, z]))
            .collect()
    });
    let point = (-1_800.0f32..1_800.0, -1_800.0f32..1_800.0).prop_map(|(x, y)| [x, y]);
    (heights, boxes, point.clone(), point)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn paths_never_cross_a_wall_nor_climb_a_cliff((heights, boxes, start, goal) in world()) {
        let hf = Heightfield::new([-2_000.0, -2_000.0], 200.0, [21, 21], heights).unwrap();
        let flat = hf.is_flat();
        let t = terrain(hf, boxes);
        let nav = Nav::new(&t, flat, rules().max_step);
        prop_assume!(!nav.inside_obstacle(start));
        let mut finder = Pathfinder::new(NavParams::new(&rules()));
        let mut out = [[0.0; 2]; 32];
        let r = finder.find(&nav, start, goal, 100_000, &mut out);
        walk_as_claims(&t, start, &out[..r.len()]);
        if let PathOutcome::Found(n) = r {
            prop_assert!(n > 0);
            prop_assert!(finder.last_expanded() <= NavParams::new(&rules()).max_expansions);
        }
    }
}
