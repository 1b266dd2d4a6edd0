//! The C ABI of the gameplay requests and state: pick up, use, equip,
//! unequip, chat, inspect; the inventory, the character's statistics, chat
//! lines and inspected entities, copied into caller-owned structs.

use std::ffi::c_char;

use tos_protocol::wire::game::{ChatChannel, EQUIP_SLOTS, EquipSlot, MAX_CHAT_LEN, MAX_NAME_LEN};

use super::{Fail, TosClient, TosResult, client, fail, guard, session_error, string};

/// One occupied inventory slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TosItem {
    /// The inventory slot.
    pub slot: u32,
    /// The item template (config/data/items.ron).
    pub template: u32,
    /// How many (stackable items).
    pub count: u32,
}

/// The inventory's totals and what is worn.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TosInventory {
    /// Slots the character has.
    pub capacity: u32,
    /// Weight carried.
    pub weight: u32,
    /// Most weight the character may carry.
    pub weight_limit: u32,
    /// Occupied slots (`tos_client_inventory` copies that many items).
    pub item_count: u32,
    /// Per equipment slot (0 weapon, 1 off-hand, 2 head, 3 chest, 4 legs,
    /// 5 hands, 6 feet, 7 accessory): the item template worn, 0 if none.
    pub equipped: [u32; 8],
}

const _: () = assert!(EQUIP_SLOTS == 8);

/// The character's level, experience and statistics.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TosCharacterStats {
    /// Level.
    pub level: u32,
    /// Why it was last sent (0 entered, 1 experience, 2 level-up,
    /// 3 equipment).
    pub cause: u32,
    /// Total experience.
    pub exp: u64,
    /// Total experience needed for the next level (0 at the top).
    pub exp_next: u64,
    /// Maximum HP.
    pub hp_max: f32,
    /// Maximum MP.
    pub mp_max: f32,
    /// INT, STR, CON, MEN, DEX, WIT.
    pub stats: [u32; 6],
    /// Physical attack.
    pub p_atk: f32,
    /// Magic attack.
    pub m_atk: f32,
    /// Physical defence.
    pub p_def: f32,
    /// Magic defence.
    pub m_def: f32,
}

/// One chat line, NUL-terminated UTF-8 strings in fixed arrays.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TosChatLine {
    /// 0 say, 1 shout, 2 whisper (to this character), 3 whisper sent (the
    /// server's confirmation; `from` is then the recipient).
    pub channel: u32,
    /// The speaker's character name.
    pub from: [c_char; 33],
    /// The line.
    pub text: [c_char; 201],
}

const _: () = assert!(MAX_NAME_LEN == 32 && MAX_CHAT_LEN == 200);

fn copy_str(dst: &mut [c_char], s: &str) {
    // The server caps both strings at the arrays' size less the NUL.
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

fn live_client<'a>(client_ptr: *mut TosClient) -> Result<&'a mut TosClient, Fail> {
    // SAFETY: forwarded from the exported functions, whose callers promise
    // a handle or null.
    let c = unsafe { client(client_ptr)? };
    if c.closed {
        return fail(TosResult::Closed, "the session is closed");
    }
    Ok(c)
}

/// Asks to pick up the item entity `item` (an `ENTITY_CREATED` of type 6).
/// Its input sequence goes to `*seq` (if not null); an `ACTION_RESULT`
/// answers it (code 0: picked up, an `INVENTORY_CHANGED` follows), or a
/// `REFUSED` when the inventory has no room.
///
/// # Safety
/// `client` is a handle or null; `seq` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_pickup(
    client: *mut TosClient,
    item: u32,
    seq: *mut u32,
) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        let s = c
            .inner
            .session_mut()
            .send_pickup(item)
            .map_err(session_error)?;
        if !seq.is_null() {
            // SAFETY: non-null and writable.
            unsafe { *seq = s };
        }
        Ok(())
    })
}

/// Uses (consumes) the item in inventory `slot`.
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_use_item(client: *mut TosClient, slot: u8) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        c.inner
            .session_mut()
            .send_use_item(slot)
            .map_err(session_error)
    })
}

fn equip_slot(slot: u8) -> Result<EquipSlot, Fail> {
    EquipSlot::from_u8(slot).map_or_else(
        || fail(TosResult::InvalidArgument, "equip slot must be 0..=7"),
        Ok,
    )
}

/// Wears the item in inventory `slot` in `equip_slot` (0..=7, see
/// `TosInventory::equipped`).
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_equip(
    client: *mut TosClient,
    slot: u8,
    equip_slot: u8,
) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        let e = self::equip_slot(equip_slot)?;
        c.inner
            .session_mut()
            .send_equip(slot, e)
            .map_err(session_error)
    })
}

/// Takes off what is worn in `equip_slot`.
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_unequip(client: *mut TosClient, equip_slot: u8) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        let e = self::equip_slot(equip_slot)?;
        c.inner.session_mut().send_unequip(e).map_err(session_error)
    })
}

/// Says (`channel` 0), shouts (1) or whispers (2, to the character named
/// `target`) `text` (at most 200 bytes of UTF-8). `target` may be null
/// except for whispers.
///
/// # Safety
/// `client` is a handle or null; `target` and `text` are null or
/// NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_chat(
    client: *mut TosClient,
    channel: u8,
    target: *const c_char,
    text: *const c_char,
) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        let channel = match channel {
            0 => ChatChannel::Say,
            1 => ChatChannel::Shout,
            2 => ChatChannel::Whisper,
            _ => return fail(TosResult::InvalidArgument, "channel must be 0, 1 or 2"),
        };
        // SAFETY: the caller promises null or NUL-terminated strings.
        let target = unsafe { string(target, "target")? }.unwrap_or_default();
        // SAFETY: as above.
        let Some(text) = (unsafe { string(text, "text")? }) else {
            return fail(TosResult::NullPointer, "text is null");
        };
        if channel == ChatChannel::Whisper && target.is_empty() {
            return fail(TosResult::InvalidArgument, "a whisper needs a target");
        }
        c.inner
            .session_mut()
            .send_chat(channel, &target, &text)
            .map_err(session_error)
    })
}

/// Copies the inventory totals into `*out` and up to `cap` occupied slots
/// into `items`. If `cap` is smaller than `out->item_count`, the totals
/// are still written and `TOS_RESULT_BUFFER_TOO_SMALL` is returned.
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable; `items` is
/// null (with `cap` 0) or points to `cap` writable `TosItem`s.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_inventory(
    client: *mut TosClient,
    out: *mut TosInventory,
    items: *mut TosItem,
    cap: usize,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() || (items.is_null() && cap > 0) {
            return fail(TosResult::NullPointer, "out or items is null");
        }
        let inv = c.inner.session().inventory();
        let totals = TosInventory {
            capacity: u32::from(inv.capacity),
            weight: inv.weight,
            weight_limit: inv.weight_limit,
            item_count: inv.items.len() as u32,
            equipped: inv.equipped.map(|e| e.map_or(0, u32::from)),
        };
        // SAFETY: non-null and writable.
        unsafe { *out = totals };
        for (k, i) in inv.items.iter().take(cap).enumerate() {
            // SAFETY: k < cap, and `items` points to `cap` writable items.
            unsafe {
                *items.add(k) = TosItem {
                    slot: u32::from(i.slot),
                    template: u32::from(i.template),
                    count: u32::from(i.count),
                };
            }
        }
        if cap < inv.items.len() {
            return fail(
                TosResult::BufferTooSmall,
                format!("{} items, room for {cap}", inv.items.len()),
            );
        }
        Ok(())
    })
}

/// The character's statistics into `*out`; `TOS_RESULT_NOT_FOUND` before
/// the server sent them (they come right after entering the world).
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_character_stats(
    client: *mut TosClient,
    out: *mut TosCharacterStats,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let Some(s) = c.inner.session().character_stats() else {
            return fail(TosResult::NotFound, "no statistics yet (not in the world)");
        };
        let stats = TosCharacterStats {
            level: u32::from(s.level),
            cause: u32::from(s.cause),
            exp: s.exp,
            exp_next: s.exp_next,
            hp_max: s.hp_max,
            mp_max: s.mp_max,
            stats: s.stats.map(u32::from),
            p_atk: s.p_atk,
            m_atk: s.m_atk,
            p_def: s.p_def,
            m_def: s.m_def,
        };
        // SAFETY: non-null and writable.
        unsafe { *out = stats };
        Ok(())
    })
}

/// Takes the oldest chat line not yet taken into `*out`;
/// `TOS_RESULT_NOT_FOUND` when there is none. A `CHAT` event announces
/// each line; 256 are kept, older ones are dropped.
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_poll_chat(
    client: *mut TosClient,
    out: *mut TosChatLine,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let Some(line) = c.inner.session_mut().poll_chat() else {
            return fail(TosResult::NotFound, "no chat line");
        };
        let mut l = TosChatLine {
            channel: line.channel as u32,
            from: [0; 33],
            text: [0; 201],
        };
        copy_str(&mut l.from, &line.from);
        copy_str(&mut l.text, &line.text);
        // SAFETY: non-null and writable.
        unsafe { *out = l };
        Ok(())
    })
}

/// What the server said an entity is (the answer to `tos_client_inspect`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TosEntityDetails {
    /// Type (as in `TosEntity::entity_type`).
    pub entity_type: u32,
    /// NPC, character or item template.
    pub template: u32,
    /// Level (0 for items).
    pub level: u32,
    /// Items: how many lie there.
    pub count: u32,
    /// Its name, NUL-terminated UTF-8 (empty when the server did not know
    /// it).
    pub name: [c_char; 33],
}

/// Asks what entity `entity` (in view) is; an `INSPECTED` event answers
/// (or a `REFUSED` with reason 36 when it is out of sight).
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_inspect(client: *mut TosClient, entity: u32) -> TosResult {
    guard(|| {
        let c = live_client(client)?;
        c.inner
            .session_mut()
            .send_inspect(entity)
            .map_err(session_error)
    })
}

/// What the server last said entity `entity` is, into `*out`;
/// `TOS_RESULT_NOT_FOUND` when it was not inspected (or was forgotten:
/// 1,024 answers are kept).
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_entity_details(
    client: *mut TosClient,
    entity: u32,
    out: *mut TosEntityDetails,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let Some(d) = c.inner.session().entity_details(entity) else {
            return fail(TosResult::NotFound, "that entity was not inspected");
        };
        let mut details = TosEntityDetails {
            entity_type: u32::from(d.entity_type),
            template: u32::from(d.template),
            level: u32::from(d.level),
            count: u32::from(d.count),
            name: [0; 33],
        };
        copy_str(&mut details.name, &d.name);
        // SAFETY: non-null and writable.
        unsafe { *out = details };
        Ok(())
    })
}
