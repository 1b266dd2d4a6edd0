//! Loot: what a dead NPC drops and how it is picked up.
//!
//! When an NPC with a loot table dies, each entry of the table is rolled
//! on its own with the shard's one seeded generator ([`roll`]); every drop
//! becomes an [`EntityType::Item`](crate::EntityType::Item) entity near the
//! body (within [`SCATTER`] units, on ground this core owns), visible in
//! snapshots like any entity, carrying an [`ItemState`]: item template,
//! count, owner (the top damage dealer) and the tick until which only the
//! owner may take it; it despawns by itself after [`LIFETIME_MS`].
//!
//! A pick-up (`Shard::push_pickup`) is queued like an action and checked
//! in the tick ([`check_pickup`]): the player alive, the item here and
//! local, within [`PICKUP_RANGE`], and not someone else's during the owner
//! window. Accepted, the item is despawned and `ShardEvent::Looted` emitted
//! in the same step, so of two pick-ups of one item in one tick exactly
//! one succeeds (the other finds no item). An item is local to exactly one
//! core; a pick-up of a ghost item is refused (`ItemElsewhere`) rather than
//! forwarded, so no message in flight can ever hand one item out twice.

use crate::authority::ActionRefusal;
use crate::entity::ClientId;
use crate::util::Rng;

/// Farthest a player may pick an item up from, units.
pub const PICKUP_RANGE: f32 = 300.0;

/// How long only the owner (the top damage dealer) may pick a drop up.
pub const OWNER_WINDOW_MS: u32 = 10_000;

/// How long a drop lies on the ground before it vanishes.
pub const LIFETIME_MS: u32 = 120_000;

/// Farthest from the body a drop lands, units.
pub const SCATTER: f32 = 120.0;

/// What an Item entity is (a column; zero for every other entity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemState {
    /// Item template id (0: not an item one can pick up, such as the
    /// decorative items of a populated test world).
    pub template: u16,
    /// How many.
    pub count: u16,
    /// Who may pick it up during the owner window (`None`: anyone).
    pub owner: Option<ClientId>,
    /// The first tick anyone may pick it up.
    pub owner_until: u32,
}

/// One drop of a roll: item template and count.
pub type Drop = (u16, u16);

/// Rolls `table` into `out`; returns how many drops (at most
/// `out.len()`). Each entry drops with its chance, `min..=max` of the
/// item.
pub fn roll(table: &tos_config::LootTable, rng: &mut Rng, out: &mut [Drop]) -> usize {
    let mut n = 0;
    for e in &table.entries {
        if n == out.len() {
            break;
        }
        if f64::from(rng.unit()) < e.chance {
            let span = u32::from(e.max.saturating_sub(e.min)) + 1;
            let count = e.min.max(1) + rng.below(span) as u16;
            out[n] = (e.item, count.min(e.max.max(e.min).max(1)));
            n += 1;
        }
    }
    n
}

/// What a pick-up check needs to know.
#[derive(Debug, Clone, Copy)]
pub struct PickupCheck {
    /// The player is alive.
    pub alive: bool,
    /// The player's position.
    pub player: [f32; 3],
    /// The item's position.
    pub item: [f32; 3],
    /// The item's state.
    pub state: ItemState,
    /// The item is a ghost (another core owns it).
    pub ghost: bool,
    /// Who asks.
    pub client: ClientId,
    /// The current tick.
    pub now: u32,
}

/// Checks a pick-up (the item exists and is an Item entity: the caller
/// refuses `NoSuchItem` otherwise).
pub fn check_pickup(c: &PickupCheck) -> Result<(), ActionRefusal> {
    if !c.alive {
        return Err(ActionRefusal::Dead);
    }
    // A ghost first: ghosts do not carry the item state (it lives only
    // with the core that owns the item).
    if c.ghost {
        return Err(ActionRefusal::ItemElsewhere);
    }
    if c.state.template == 0 || c.state.count == 0 {
        return Err(ActionRefusal::NoSuchItem);
    }
    let reach = f64::from(PICKUP_RANGE);
    if crate::util::dist2(c.player, c.item) > reach * reach {
        return Err(ActionRefusal::ItemTooFar);
    }
    if let Some(owner) = c.state.owner {
        if owner != c.client && crate::util::tick_after(c.state.owner_until, c.now) {
            return Err(ActionRefusal::NotYourLoot);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_follow_the_table() {
        let table = tos_config::LootTable {
            id: 1,
            entries: vec![
                tos_config::LootEntry {
                    item: 7,
                    chance: 1.0,
                    min: 2,
                    max: 4,
                },
                tos_config::LootEntry {
                    item: 8,
                    chance: 0.25,
                    min: 1,
                    max: 1,
                },
            ],
        };
        let mut rng = Rng::new(9);
        let mut out = [(0, 0); 8];
        let mut eights = 0;
        for _ in 0..4000 {
            let n = roll(&table, &mut rng, &mut out);
            assert!((1..=2).contains(&n));
            assert_eq!(out[0].0, 7);
            assert!((2..=4).contains(&out[0].1));
            if n == 2 {
                assert_eq!(out[1], (8, 1));
                eights += 1;
            }
        }
        assert!((800..1200).contains(&eights), "{eights}");
        // A short output buffer is never overrun.
        assert_eq!(roll(&table, &mut rng, &mut out[..1]), 1);
    }

    #[test]
    fn pickup_rules() {
        let me = ClientId(1);
        let other = ClientId(2);
        let base = PickupCheck {
            alive: true,
            player: [0.0; 3],
            item: [100.0, 0.0, 0.0],
            state: ItemState {
                template: 8,
                count: 1,
                owner: Some(me),
                owner_until: 600,
            },
            ghost: false,
            client: me,
            now: 100,
        };
        assert_eq!(check_pickup(&base), Ok(()));
        let thief = PickupCheck {
            client: other,
            ..base
        };
        assert_eq!(check_pickup(&thief), Err(ActionRefusal::NotYourLoot));
        // After the owner window anyone may.
        assert_eq!(check_pickup(&PickupCheck { now: 600, ..thief }), Ok(()));
        let far = PickupCheck {
            item: [400.0, 0.0, 0.0],
            ..base
        };
        assert_eq!(check_pickup(&far), Err(ActionRefusal::ItemTooFar));
        assert_eq!(
            check_pickup(&PickupCheck {
                alive: false,
                ..base
            }),
            Err(ActionRefusal::Dead)
        );
        assert_eq!(
            check_pickup(&PickupCheck {
                ghost: true,
                ..base
            }),
            Err(ActionRefusal::ItemElsewhere)
        );
        let decor = PickupCheck {
            state: ItemState::default(),
            ..base
        };
        assert_eq!(check_pickup(&decor), Err(ActionRefusal::NoSuchItem));
    }
}
