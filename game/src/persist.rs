//! What of a playing character is saved, and when it counts as changed.
//!
//! The store coalesces saves per character and writes one batch per save
//! interval; this module only decides, once per interval, which characters
//! on a core moved or changed enough to be worth a row. The shard owns
//! position, HP, MP, level and experience (its entity record); the game
//! layer owns the inventory and equipment. All of it goes in one row write,
//! so a save is atomic.

use tos_shards::{EntityInfo, Shard};
use tos_store::{CharacterId, CharacterState};

use crate::session::PlayingCharacter;

/// Position changes smaller than this (world units, 1 cm) are not worth
/// a save on their own.
const MOVE_EPSILON: f32 = 1.0;

/// The state of a playing character as the shard has it now, without its
/// items (an empty list allocates nothing: the save pass checks
/// [`changed`] first and fills them with [`with_items`] only for the
/// characters it saves).
pub fn current_state(info: &EntityInfo, character: &PlayingCharacter) -> CharacterState {
    let r = &info.record;
    CharacterState {
        id: CharacterId(character.id),
        position: r.position,
        yaw: r.rotation[1],
        hp: r.hp[0],
        mp: r.mp[0],
        level: r.progress.level,
        exp: r.progress.exp,
        items: Vec::new(),
    }
}

/// `state` with the character's items as they are now.
pub fn with_items(mut state: CharacterState, character: &PlayingCharacter) -> CharacterState {
    character.inventory.saved_into(&mut state.items);
    state
}

/// The whole state of `character` (a player of `shard` with network id
/// `net`), items included.
pub fn state_in(shard: &Shard, net: u32, character: &PlayingCharacter) -> Option<CharacterState> {
    shard
        .entity(net)
        .map(|info| with_items(current_state(&info, character), character))
}

/// Whether `now` (from [`current_state`]) differs from what was saved
/// enough to save: a move, HP, MP, level, experience, or any change of
/// the inventory since its saved revision.
pub fn changed(character: &PlayingCharacter, now: &CharacterState) -> bool {
    let saved = &character.saved;
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
        || character.saved_items != character.inventory.revision()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatLimiter;
    use crate::inventory::ItemBook;

    fn character() -> PlayingCharacter {
        PlayingCharacter {
            id: 1,
            name: "Ayla".into(),
            template: 1,
            faction: 1,
            hp_max: 100.0,
            mp_max: 50.0,
            saved: CharacterState {
                id: CharacterId(1),
                position: [10.0, 20.0, 0.0],
                yaw: 90.0,
                hp: 100.0,
                mp: 50.0,
                level: 1,
                exp: 0,
                items: Vec::new(),
            },
            saved_items: 0,
            inventory: Box::default(),
            chat: ChatLimiter::default(),
        }
    }

    #[test]
    fn small_moves_are_not_saved_and_real_changes_are() {
        let c = character();
        let a = c.saved.clone();
        let mut b = a.clone();
        b.position[0] += 0.5;
        assert!(!changed(&c, &b));
        b.position[0] += 1.0;
        assert!(changed(&c, &b));
        let mut h = a.clone();
        h.hp -= 1.0;
        assert!(changed(&c, &h));
        let mut d = a.clone();
        d.exp += 1;
        assert!(changed(&c, &d));
        let mut l = a.clone();
        l.level += 1;
        assert!(changed(&c, &l));
    }

    #[test]
    fn an_inventory_change_is_a_change_and_its_items_are_saved() {
        let book = ItemBook::from_data(&tos_config::CombatData::embedded().unwrap()).unwrap();
        let mut c = character();
        let now = c.saved.clone();
        assert!(!changed(&c, &now));
        assert_eq!(c.inventory.add(8, 3, &book), 0);
        assert!(changed(&c, &now));
        let full = with_items(now, &c);
        assert_eq!(full.items, c.inventory.to_saved());
        assert_eq!(full.items.len(), 1);
        c.saved = full.clone();
        c.saved_items = c.inventory.revision();
        assert!(!changed(&c, &full));
    }
}
