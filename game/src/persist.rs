//! What of a playing character is saved, and when it counts as changed.
//!
//! The store coalesces saves per character and writes one batch per save
//! interval; this module only decides, once per interval, which characters
//! on a core moved or changed enough to be worth a row.

use tos_shards::{EntityInfo, Shard};
use tos_store::{CharacterId, CharacterState};

use crate::session::PlayingCharacter;

/// Position changes smaller than this (world units, 1 cm) are not worth
/// a save on their own.
const MOVE_EPSILON: f32 = 1.0;

/// The state of a playing character as the shard has it now.
pub fn current_state(info: &EntityInfo, character: &PlayingCharacter) -> CharacterState {
    let r = &info.record;
    CharacterState {
        id: CharacterId(character.id),
        position: r.position,
        yaw: r.rotation[1],
        hp: r.hp[0],
        mp: r.mp[0],
        level: character.saved.level,
        exp: character.saved.exp,
        items: character.saved.items.clone(),
    }
}

/// The state of `character` (a player of `shard` with network id `net`).
pub fn state_in(shard: &Shard, net: u32, character: &PlayingCharacter) -> Option<CharacterState> {
    shard
        .entity(net)
        .map(|info| current_state(&info, character))
}

/// Whether `now` differs from `saved` enough to save.
pub fn changed(saved: &CharacterState, now: &CharacterState) -> bool {
    let moved = saved
        .position
        .iter()
        .zip(&now.position)
        .any(|(a, b)| (a - b).abs() >= MOVE_EPSILON);
    moved
        || saved.hp != now.hp
        || saved.mp != now.mp
        || saved.level != now.level
        || saved.exp != now.exp
        || (saved.yaw - now.yaw).abs() >= 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CharacterState {
        CharacterState {
            id: CharacterId(1),
            position: [10.0, 20.0, 0.0],
            yaw: 90.0,
            hp: 100.0,
            mp: 50.0,
            level: 1,
            exp: 0,
            items: Vec::new(),
        }
    }

    #[test]
    fn small_moves_are_not_saved_and_real_changes_are() {
        let a = state();
        let mut b = a.clone();
        b.position[0] += 0.5;
        assert!(!changed(&a, &b));
        b.position[0] += 1.0;
        assert!(changed(&a, &b));
        let mut c = a.clone();
        c.hp -= 1.0;
        assert!(changed(&a, &c));
        let mut d = a.clone();
        d.exp += 1;
        assert!(changed(&a, &d));
    }
}
