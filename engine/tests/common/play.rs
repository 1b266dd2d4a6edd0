//! Helpers of the gameplay tests: waiting for a kind of server message,
//! reading inventories and statistics, gameplay refusals, and items
//! planted into a character's row while it is offline.

use std::path::Path;
use std::time::{Duration, Instant};

use tos_protocol::wire::Channel;
use tos_protocol::wire::game::{
    CharacterStats, ChatChannel, ClientMessage, EquippedItem, InventoryItem, RefusalReason,
    ServerMessage,
};
use tos_store::{Backend, CharacterId, SavedItem, SqliteBackend};

use super::Player;

/// Sends a chat line and pumps it out (the listeners pump only their own
/// connections).
#[allow(dead_code)]
pub fn speak(p: &mut Player, msg: ClientMessage<'_>) {
    p.send(Channel::ReliableOrdered, msg);
    p.pump();
}

/// Waits for a chat line on `channel`; (from, text).
#[allow(dead_code)]
pub fn heard(p: &mut Player, channel: ChatChannel) -> (String, String) {
    find(p, "ChatMessage", |m| match m {
        ServerMessage::ChatMessage {
            channel: c,
            from,
            text,
        } if *c == channel => Some((from.to_string(), text.to_string())),
        _ => None,
    })
}

/// Pumps until a message `f` accepts arrives (earlier ones it does not
/// accept are dropped from the inbox); panics after 10 s naming `what`.
pub fn find<T>(
    p: &mut Player,
    what: &str,
    mut f: impl FnMut(&ServerMessage<'_>) -> Option<T>,
) -> T {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        while !p.inbox.is_empty() {
            let bytes = p.inbox.remove(0);
            if let Ok(msg) = ServerMessage::decode(&bytes) {
                if let Some(t) = f(&msg) {
                    return t;
                }
            }
        }
        assert!(Instant::now() < end, "no {what} arrived");
        p.pump();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The next Inventory: (items, worn).
pub fn inventory(p: &mut Player) -> (Vec<InventoryItem>, Vec<EquippedItem>) {
    find(p, "Inventory", |m| match m {
        ServerMessage::Inventory(inv) => Some((inv.items().collect(), inv.equipped().collect())),
        _ => None,
    })
}

/// The next CharacterStats.
pub fn stats(p: &mut Player) -> CharacterStats {
    find(p, "CharacterStats", |m| match m {
        ServerMessage::CharacterStats(s) => Some(*s),
        _ => None,
    })
}

/// Sends `msg` and returns the reason of the Refused that answers it.
pub fn refused(p: &mut Player, msg: ClientMessage<'_>) -> RefusalReason {
    p.inbox.clear();
    let request = msg.type_byte();
    p.send(Channel::ReliableOrdered, msg);
    find(p, "Refused", |m| match m {
        ServerMessage::Refused { request: r, reason } if *r == request => Some(*reason),
        _ => None,
    })
}

/// Sends raw message bytes and returns the reason of the Refused for
/// their type byte.
pub fn refused_raw(p: &mut Player, bytes: &[u8]) -> RefusalReason {
    p.inbox.clear();
    p.send_raw(Channel::ReliableOrdered, bytes);
    find(p, "Refused", |m| match m {
        ServerMessage::Refused { request, reason } if *request == bytes[0] => Some(*reason),
        _ => None,
    })
}

/// The ActionResult code for `input_seq`.
pub fn action_result(p: &mut Player, input_seq: u32) -> u8 {
    find(p, "ActionResult", |m| match m {
        ServerMessage::ActionResult {
            input_seq: s,
            result,
        } if *s == input_seq => Some(*result),
        _ => None,
    })
}

/// Writes `items`, `level` and `exp` into an offline character's row.
pub fn plant(database: &Path, character_id: u64, items: Vec<SavedItem>, level: u16, exp: u64) {
    let mut db = SqliteBackend::open(database, Duration::from_secs(5)).expect("the database opens");
    let r = db
        .load_character(CharacterId(character_id))
        .expect("loads")
        .expect("the character exists");
    let s = tos_store::CharacterState {
        level,
        exp,
        items,
        ..r.state()
    };
    db.save_states(&[s], 0).expect("saved");
}

/// A stack in a bag slot.
pub fn bag(slot: u8, template: u16, count: u16) -> SavedItem {
    SavedItem {
        place: tos_store::ItemPlace::Bag(slot),
        template,
        count,
    }
}
