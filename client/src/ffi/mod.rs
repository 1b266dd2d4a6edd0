//! The C ABI: opaque client handles over [`UdpClient`], a poll call per
//! frame that fills plain `#[repr(C)]` event structs, error codes with a
//! thread-local last-error message. `client/include/tos_client.h` is
//! generated from this file by cbindgen (`client/tests/header.rs`).
//!
//! Rules every function keeps, so that no misuse from C crashes the
//! library:
//!
//! - no panic crosses the boundary: each body runs under `catch_unwind`
//!   and a panic becomes [`TosResult::Panic`];
//! - every pointer is checked for null; every handle is checked against
//!   the set of live handles, so a freed or made-up handle gives
//!   [`TosResult::BadHandle`] rather than a use after free (unless the
//!   allocator happened to reuse the address for a newer client);
//! - outputs are written only on success, except the needed length of a
//!   buffer that was too small.
//!
//! Ownership: the library owns every `TosClient` from
//! [`tos_client_connect`] to [`tos_client_free`]; the caller owns every
//! buffer it passes in, which the library reads or writes only during the
//! call. Strings passed in are NUL-terminated UTF-8, read during the call.
//! The pointer [`tos_last_error`] returns belongs to the library and stays
//! valid on that thread until the next call that fails.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::{CStr, CString, c_char};
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tos_protocol::integrity::{IntegrityTable, TABLE_LEN};

use crate::driver::{DriverError, UdpClient};
use crate::flow::LoginSpec;
use crate::session::{SessionConfig, SessionError, SessionEvent};
use crate::snapshot::{EntityEvent, EntityState};

mod gameplay;
pub use gameplay::{
    TosCharacterStats, TosChatLine, TosEntityDetails, TosInventory, TosItem,
    tos_client_character_stats, tos_client_chat, tos_client_entity_details, tos_client_equip,
    tos_client_inspect, tos_client_inventory, tos_client_pickup, tos_client_poll_chat,
    tos_client_unequip, tos_client_use_item,
};

/// What a call returned. Negative values are errors; the message of the
/// last one is [`tos_last_error`].
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TosResult {
    /// Success.
    Ok = 0,
    /// A required pointer was null.
    NullPointer = -1,
    /// The handle is not a live client (never created, or freed).
    BadHandle = -2,
    /// An argument is invalid (bad address, key, string, size).
    InvalidArgument = -3,
    /// The session is closed (by `tos_client_close`, the server, or a
    /// timeout).
    Closed = -4,
    /// Claims and actions need a character in the world.
    NotInWorld = -5,
    /// The output buffer is too small; the needed length was written.
    BufferTooSmall = -6,
    /// Nothing of that kind is known (an entity not in view, no snapshot
    /// yet).
    NotFound = -7,
    /// The socket failed.
    Io = -8,
    /// The transport refused the message (queue full, too large).
    SendFailed = -9,
    /// A bug inside the library was caught; the handle should be freed.
    Panic = -10,
    /// Not at the character list (entering or creating a character needs
    /// it: `choose_character` and a `CHARACTER_LIST` event).
    NotSelecting = -11,
    /// A zone transfer is under way (between `ZONE_TRANSFER_STARTED` and
    /// `ZONE_TRANSFERRED`): nothing was sent. Send the current movement
    /// again afterwards; repeat a request.
    Transferring = -12,
}

/// What an event is.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TosEventKind {
    /// The handshake completed: the server holds the pinned key.
    Connected = 1,
    /// Logged in: `id` is the account id, `expires_at` the ticket's
    /// expiry; `tos_client_ticket` copies the ticket.
    Authenticated = 2,
    /// The account had no character; one was created: `id`.
    CharacterCreated = 3,
    /// In the world: `entity` is the player's own entity (its position,
    /// yaw in `rotation[1]`), `tick` the server tick, `id` the character.
    EnteredWorld = 4,
    /// An entity came into view: `entity`.
    EntityCreated = 5,
    /// A newer state of an entity in view: `entity`.
    EntityUpdated = 6,
    /// An entity left view: `entity.id`, after `tick`.
    EntityRemoved = 7,
    /// A snapshot was applied: `tick`, `input_seq` = the newest claim the
    /// server applied (input ack), `code` = 1 if it arrived late.
    Snapshot = 8,
    /// A claim was rejected: `input_seq`, the authoritative `position` and
    /// `velocity`, and `predicted` = position after replaying later claims.
    Correction = 9,
    /// An action's outcome: `input_seq`, `code` (0 done, else refusal).
    ActionResult = 10,
    /// A request was refused: `request` (client message type), `code`
    /// (refusal reason).
    Refused = 11,
    /// Login, character creation or entering failed for good: `request`,
    /// `code`.
    LoginFailed = 12,
    /// The server refused the connection: `code` (deny reason).
    Denied = 13,
    /// The connection ended: `code` (disconnect reason: 0 graceful,
    /// 1 timeout, 2 server shutdown, 3 integrity, 4 retries, 5 kicked,
    /// 6 protocol violation, 7 handshake timeout), `request` = 1 if the
    /// server ended it.
    Disconnected = 14,
    /// The account's characters are listed (only with `choose_character`):
    /// `code` = how many; read them with `tos_client_character`, then call
    /// `tos_client_enter_character` or `tos_client_create_character`.
    CharacterList = 15,
    /// The inventory or equipment changed: `code` = occupied slots; read
    /// it with `tos_client_inventory`.
    InventoryChanged = 16,
    /// Level, experience or statistics changed: `code` = the level,
    /// `request` = the cause (0 entered, 1 experience, 2 level-up,
    /// 3 equipment), `input_seq` = 1 if the level rose; read them with
    /// `tos_client_character_stats`.
    StatsChanged = 17,
    /// A hit, miss, heal or kill this character is part of: `source`,
    /// `target` (entity ids), `amount`, `request` = the skill, `code` = the
    /// combat flags (1 hit, 2 miss, 4 critical, 8 heal, 16 kill,
    /// 32 interrupted, 64 immune).
    Combat = 18,
    /// A chat line arrived: `code` = its channel; take it with
    /// `tos_client_poll_chat`.
    Chat = 19,
    /// The server said what an entity is (after `tos_client_inspect`):
    /// `entity.id`; read it with `tos_client_entity_details`.
    Inspected = 20,
    /// The server sent the character to another node of the cluster: the
    /// session closed the old connection and is connecting there. Moves
    /// and requests return `TOS_RESULT_TRANSFERRING` until
    /// `ZONE_TRANSFERRED`; keep drawing the world as it is.
    ZoneTransferStarted = 21,
    /// In the world on the new node: every entity of the old node was
    /// removed (`ENTITY_REMOVED` before this event); `entity` is the
    /// player's new entity (ids change between nodes), `tick` the new
    /// node's tick, `id` the character, `amount` the transfer gap in
    /// milliseconds (last snapshot of the old node to first of the new).
    ZoneTransferred = 22,
    /// The zone transfer failed and the session ended (no `DISCONNECTED`
    /// follows; the server saves the character where it crossed, so log in
    /// again): `code` = 1 bad address, 2 denied (`request` = the deny
    /// reason, 5 ticket rejected), 3 disconnected (`request` = the
    /// disconnect reason), 4 refused (`request` = the refusal reason),
    /// 5 timed out.
    ZoneTransferFailed = 23,
}

/// One character of the account.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TosCharacter {
    /// Its id.
    pub character_id: u64,
    /// Its name, NUL-terminated UTF-8 (at most 32 bytes before the NUL).
    pub name: [u8; 48],
    /// Its template.
    pub template: u16,
    /// Its level.
    pub level: u16,
    /// Its faction.
    pub faction: u8,
    /// Padding, 0.
    pub reserved: [u8; 3],
    /// When it was deleted, unix seconds (0: not deleted; deleted
    /// characters cannot enter).
    pub deleted_at: u64,
    /// Where it last was, world units.
    pub position: [f32; 3],
}

/// One entity's state in world units.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TosEntity {
    /// Network id.
    pub id: u32,
    /// Type (0 player, 1 NPC, 2 monster, 3 projectile, 4 static building,
    /// 5 vehicle, 6 item, 7 effect).
    pub entity_type: u32,
    /// The server tick this state belongs to.
    pub tick: u32,
    /// Position, world units (1 unit = 1 cm).
    pub position: [f32; 3],
    /// Velocity, units per second.
    pub velocity: [f32; 3],
    /// Pitch, yaw, roll in degrees.
    pub rotation: [f32; 3],
    /// Animation id (0 idle, 1 walk).
    pub anim: u8,
    /// EntityState bits.
    pub state: u8,
    /// Buff bits.
    pub buffs: u8,
    /// Padding, 0.
    pub reserved: u8,
    /// HP fraction, 0..1.
    pub hp: f32,
    /// MP fraction, 0..1.
    pub mp: f32,
}

/// One event; which fields mean something depends on `kind`
/// ([`TosEventKind`]); the others are 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TosEvent {
    /// What happened.
    pub kind: TosEventKind,
    /// Server tick.
    pub tick: u32,
    /// Input sequence (claims, actions, the input ack).
    pub input_seq: u32,
    /// A reason or result code.
    pub code: u32,
    /// The client message type a refusal answers; 1 if the server ended a
    /// connection.
    pub request: u32,
    /// Padding, 0.
    pub reserved: u32,
    /// Account or character id.
    pub id: u64,
    /// Ticket expiry, unix seconds.
    pub expires_at: u64,
    /// The entity.
    pub entity: TosEntity,
    /// A correction's authoritative position.
    pub position: [f32; 3],
    /// A correction's authoritative velocity.
    pub velocity: [f32; 3],
    /// A correction's position after replaying the later claims.
    pub predicted: [f32; 3],
    /// Combat: who acted (entity id).
    pub source: u32,
    /// Combat: whom it hit (entity id).
    pub target: u32,
    /// Combat: damage, or healing with the heal flag.
    pub amount: f32,
    /// Padding, 0.
    pub reserved2: u32,
}

impl TosEvent {
    fn new(kind: TosEventKind) -> Self {
        Self {
            kind,
            tick: 0,
            input_seq: 0,
            code: 0,
            request: 0,
            reserved: 0,
            id: 0,
            expires_at: 0,
            entity: TosEntity::default(),
            position: [0.0; 3],
            velocity: [0.0; 3],
            predicted: [0.0; 3],
            source: 0,
            target: 0,
            amount: 0.0,
            reserved2: 0,
        }
    }
}

/// How to connect. Zero-initialise it and fill what you need; 0 or null
/// means the default where one is given.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TosConnectParams {
    /// Server address, `"host:port"` (required).
    pub server_addr: *const c_char,
    /// The server's static public key, 32 bytes (required; the server logs
    /// it at start). `tos_parse_key_hex` reads the logged hex.
    pub server_key: *const u8,
    /// Account name (required unless `ticket` is given).
    pub account: *const c_char,
    /// Password (required unless `ticket` is given).
    pub password: *const c_char,
    /// Name of the character to create if the account has none (null: the
    /// account name).
    pub character_name: *const c_char,
    /// Its template (0: 1).
    pub character_template: u16,
    /// Nonzero: register the account first (logging in if it exists).
    pub register_account: u8,
    /// Nonzero: stop at the character list for the player to choose
    /// (`CHARACTER_LIST` event); zero: enter the first live character,
    /// creating one named `character_name` if there is none.
    pub choose_character: u8,
    /// A session ticket from an earlier login, or null.
    pub ticket: *const u8,
    /// Its length.
    pub ticket_len: usize,
    /// This client build's integrity table, `TOS_INTEGRITY_TABLE_BYTES`
    /// bytes (made at build time by `tos_integrity_table`), or null when the
    /// server does not check integrity (`security.integrity_check`).
    pub integrity_table: *const u8,
    /// The client build version of that table (0: 1).
    pub integrity_version: u16,
    /// The server's tick rate (0: 60).
    pub tick_hz: u32,
    /// How long the handshake may take, ms (0: 10,000).
    pub handshake_timeout_ms: u32,
}

/// Counters of a client.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TosStats {
    /// Smoothed round-trip time, ms.
    pub rtt_ms: f32,
    /// Entities in view.
    pub entities_in_view: u32,
    /// Claims not yet acknowledged.
    pub pending_inputs: u32,
    /// Padding, 0.
    pub reserved: u32,
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Snapshots applied.
    pub snapshots: u64,
}

/// A client: a session on its own UDP socket. Opaque to C.
#[derive(Debug)]
pub struct TosClient {
    inner: UdpClient,
    closed: bool,
}

fn live() -> &'static Mutex<HashSet<usize>> {
    static LIVE: std::sync::OnceLock<Mutex<HashSet<usize>>> = std::sync::OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// An error and its message.
struct Fail(TosResult, String);

fn fail<T>(code: TosResult, msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(code, msg.into()))
}

/// Runs `f`, turning errors and panics into codes.
fn guard(f: impl FnOnce() -> Result<(), Fail>) -> TosResult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TosResult::Ok,
        Ok(Err(Fail(code, msg))) => {
            set_error(&msg);
            code
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            set_error(&format!("internal error (please report): {what}"));
            TosResult::Panic
        }
    }
}

/// The client behind a handle, if it is live.
///
/// # Safety
/// `client` is null, or a pointer `tos_client_connect` returned; it is not
/// used by another thread during the call.
unsafe fn client<'a>(client: *mut TosClient) -> Result<&'a mut TosClient, Fail> {
    if client.is_null() {
        return fail(TosResult::NullPointer, "the client handle is null");
    }
    let known = live()
        .lock()
        .map(|set| set.contains(&(client as usize)))
        .unwrap_or(false);
    if !known {
        return fail(
            TosResult::BadHandle,
            "not a live client handle (freed, or never created)",
        );
    }
    // SAFETY: the address is in the live set, so it came from
    // `Box::into_raw` in `tos_client_connect` and has not been freed; the
    // caller uses a handle from one thread at a time.
    Ok(unsafe { &mut *client })
}

/// A string argument.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string.
unsafe fn string(p: *const c_char, what: &str) -> Result<Option<String>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    match s.to_str() {
        Ok(s) => Ok(Some(s.to_string())),
        Err(_) => fail(TosResult::InvalidArgument, format!("{what} is not UTF-8")),
    }
}

fn entity(s: &EntityState) -> TosEntity {
    TosEntity {
        id: s.id,
        entity_type: u32::from(s.entity_type),
        tick: s.tick,
        position: s.position,
        velocity: s.velocity,
        rotation: s.rotation,
        anim: s.anim,
        state: s.state,
        buffs: s.buffs,
        reserved: 0,
        hp: s.hp,
        mp: s.mp,
    }
}

fn event(e: &SessionEvent) -> TosEvent {
    use TosEventKind as K;
    match *e {
        SessionEvent::Connected => TosEvent::new(K::Connected),
        SessionEvent::Characters { count } => TosEvent {
            code: count,
            ..TosEvent::new(K::CharacterList)
        },
        SessionEvent::Authenticated {
            account_id,
            expires_at,
        } => TosEvent {
            id: account_id,
            expires_at,
            ..TosEvent::new(K::Authenticated)
        },
        SessionEvent::CharacterCreated { character_id } => TosEvent {
            id: character_id,
            ..TosEvent::new(K::CharacterCreated)
        },
        SessionEvent::EnteredWorld(e) => TosEvent {
            tick: e.server_tick,
            id: e.character_id,
            entity: TosEntity {
                id: e.entity_id,
                tick: e.server_tick,
                position: e.position,
                rotation: [0.0, e.yaw, 0.0],
                hp: 1.0,
                mp: 1.0,
                ..TosEntity::default()
            },
            ..TosEvent::new(K::EnteredWorld)
        },
        SessionEvent::Entity(EntityEvent::Created(s)) => TosEvent {
            tick: s.tick,
            entity: entity(&s),
            ..TosEvent::new(K::EntityCreated)
        },
        SessionEvent::Entity(EntityEvent::Updated(s)) => TosEvent {
            tick: s.tick,
            entity: entity(&s),
            ..TosEvent::new(K::EntityUpdated)
        },
        SessionEvent::Entity(EntityEvent::Removed { id, tick }) => TosEvent {
            tick,
            entity: TosEntity {
                id,
                tick,
                ..TosEntity::default()
            },
            ..TosEvent::new(K::EntityRemoved)
        },
        SessionEvent::Snapshot {
            tick,
            input_ack,
            late,
            ..
        } => TosEvent {
            tick,
            input_seq: input_ack,
            code: u32::from(late),
            ..TosEvent::new(K::Snapshot)
        },
        SessionEvent::Correction {
            input_seq,
            position,
            velocity,
            predicted,
        } => TosEvent {
            input_seq,
            position,
            velocity,
            predicted,
            ..TosEvent::new(K::Correction)
        },
        SessionEvent::ActionResult { input_seq, result } => TosEvent {
            input_seq,
            code: u32::from(result),
            ..TosEvent::new(K::ActionResult)
        },
        SessionEvent::Refused { request, reason } => TosEvent {
            request: u32::from(request),
            code: reason as u32,
            ..TosEvent::new(K::Refused)
        },
        SessionEvent::LoginFailed { request, reason } => TosEvent {
            request: u32::from(request),
            code: reason as u32,
            ..TosEvent::new(K::LoginFailed)
        },
        SessionEvent::Denied { reason } => TosEvent {
            code: reason as u32,
            ..TosEvent::new(K::Denied)
        },
        SessionEvent::InventoryChanged { items } => TosEvent {
            code: items,
            ..TosEvent::new(K::InventoryChanged)
        },
        SessionEvent::StatsChanged {
            cause,
            level,
            leveled_up,
        } => TosEvent {
            code: u32::from(level),
            request: u32::from(cause),
            input_seq: u32::from(leveled_up),
            ..TosEvent::new(K::StatsChanged)
        },
        SessionEvent::Combat {
            source,
            target,
            skill,
            amount,
            flags,
        } => TosEvent {
            source,
            target,
            amount,
            request: u32::from(skill),
            code: u32::from(flags),
            ..TosEvent::new(K::Combat)
        },
        SessionEvent::Inspected { entity } => TosEvent {
            entity: TosEntity {
                id: entity,
                ..TosEntity::default()
            },
            ..TosEvent::new(K::Inspected)
        },
        SessionEvent::Chat { channel } => TosEvent {
            code: channel as u32,
            ..TosEvent::new(K::Chat)
        },
        SessionEvent::Disconnected { reason, by_peer } => TosEvent {
            code: reason as u32,
            request: u32::from(by_peer),
            ..TosEvent::new(K::Disconnected)
        },
        SessionEvent::ZoneTransferStarted { .. } => TosEvent::new(K::ZoneTransferStarted),
        SessionEvent::ZoneTransferred { entered, gap, .. } => TosEvent {
            amount: gap.as_secs_f32() * 1000.0,
            ..TosEvent {
                kind: K::ZoneTransferred,
                ..event(&SessionEvent::EnteredWorld(entered))
            }
        },
        SessionEvent::ZoneTransferFailed { failure, .. } => TosEvent {
            code: failure.code(),
            request: failure.reason_code(),
            ..TosEvent::new(K::ZoneTransferFailed)
        },
    }
}

fn session_error(e: SessionError) -> Fail {
    match e {
        SessionError::Closed => Fail(TosResult::Closed, e.to_string()),
        SessionError::NotInWorld => Fail(TosResult::NotInWorld, e.to_string()),
        SessionError::NotSelecting => Fail(TosResult::NotSelecting, e.to_string()),
        SessionError::Invalid(_) => Fail(TosResult::InvalidArgument, e.to_string()),
        SessionError::Send(_) => Fail(TosResult::SendFailed, e.to_string()),
        SessionError::NoRandomness => Fail(TosResult::Io, e.to_string()),
        SessionError::Transferring => Fail(TosResult::Transferring, e.to_string()),
    }
}

fn driver_error(e: DriverError) -> Fail {
    match e {
        DriverError::Io(e) => Fail(TosResult::Io, format!("socket: {e}")),
        DriverError::Session(e) => session_error(e),
    }
}

/// Bytes of an integrity table: 256 entries of 16 bytes.
pub const TOS_INTEGRITY_TABLE_BYTES: usize = 4096;
const _: () = assert!(TOS_INTEGRITY_TABLE_BYTES == TABLE_LEN as usize * 16);

/// Writes the integrity table of client build `version` derived from the
/// server's integrity secret (32 bytes; the server's data directory,
/// `integrity.secret`) into `out` (`cap` bytes, at least
/// `TOS_INTEGRITY_TABLE_BYTES`). Run it in the game's build pipeline and
/// ship the table, never the secret: the secret would give every other
/// version's table too.
///
/// # Safety
/// `secret` is null or points to 32 readable bytes; `out` is null or points
/// to `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_integrity_table(
    secret: *const u8,
    version: u16,
    out: *mut u8,
    cap: usize,
) -> TosResult {
    guard(|| {
        if secret.is_null() || out.is_null() {
            return fail(TosResult::NullPointer, "secret and out must not be null");
        }
        if cap < TOS_INTEGRITY_TABLE_BYTES {
            return fail(
                TosResult::BufferTooSmall,
                format!("an integrity table needs {TOS_INTEGRITY_TABLE_BYTES} bytes"),
            );
        }
        let mut s = [0u8; 32];
        // SAFETY: `secret` points to 32 readable bytes.
        unsafe { core::ptr::copy_nonoverlapping(secret, s.as_mut_ptr(), 32) };
        let table = IntegrityTable::generate(&s, version);
        for i in 0..TABLE_LEN {
            let e = table.entry(i).unwrap_or([0; 16]);
            // SAFETY: i * 16 + 16 <= TOS_INTEGRITY_TABLE_BYTES <= cap.
            unsafe { core::ptr::copy_nonoverlapping(e.as_ptr(), out.add(usize::from(i) * 16), 16) };
        }
        Ok(())
    })
}

/// The library's version, a static NUL-terminated string (never freed).
#[unsafe(no_mangle)]
pub extern "C" fn tos_version() -> *const c_char {
    c"tos-client 0.1.0".as_ptr()
}

/// The message of the last error on this thread (empty if none). The
/// string belongs to the library and stays valid on this thread until the
/// next failing call; copy it to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn tos_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Copies the last error message of this thread into `buf` (`cap` bytes,
/// NUL-terminated, truncated if needed) and returns its full length
/// without the NUL. `buf` may be null when `cap` is 0 (to ask the length).
///
/// # Safety
/// `buf` is null or points to `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_last_error_copy(buf: *mut c_char, cap: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        let bytes = e.as_bytes();
        if !buf.is_null() && cap > 0 {
            let n = bytes.len().min(cap - 1);
            // SAFETY: the caller gives `cap` writable bytes; n + 1 <= cap.
            unsafe {
                core::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
        }
        bytes.len()
    })
}

/// Parses 64 hex digits (the key the server logs) into 32 bytes at `out`.
///
/// # Safety
/// `hex` is null or a NUL-terminated string; `out` is null or points to 32
/// writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_parse_key_hex(hex: *const c_char, out: *mut u8) -> TosResult {
    guard(|| {
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        // SAFETY: forwarded from the caller.
        let Some(text) = (unsafe { string(hex, "the key")? }) else {
            return fail(TosResult::NullPointer, "hex is null");
        };
        let key = parse_key(&text)?;
        // SAFETY: `out` points to 32 writable bytes.
        unsafe { core::ptr::copy_nonoverlapping(key.as_ptr(), out, 32) };
        Ok(())
    })
}

fn parse_key(text: &str) -> Result<[u8; 32], Fail> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return fail(
            TosResult::InvalidArgument,
            "a server key is 64 hex digits (the server logs it at start)",
        );
    }
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| {
            Fail(
                TosResult::InvalidArgument,
                "a server key is 64 hex digits".into(),
            )
        })?;
    }
    Ok(key)
}

/// Starts connecting and, on success, writes a new handle to `*out`. The
/// handshake, login and entering the world proceed as `tos_client_poll`
/// is called; watch its events. Free the handle with `tos_client_free`.
/// A host name in `server_addr` is resolved here, which may block on DNS:
/// pass an IP address to avoid that, or call it off the frame loop.
///
/// # Safety
/// `params` is null or points to a `TosConnectParams` whose pointers are
/// null or valid as documented there; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_connect(
    params: *const TosConnectParams,
    out: *mut *mut TosClient,
) -> TosResult {
    guard(|| {
        if params.is_null() || out.is_null() {
            return fail(TosResult::NullPointer, "params and out must not be null");
        }
        // SAFETY: non-null, and the caller gives a valid struct.
        let p = unsafe { &*params };
        // SAFETY: the strings are NUL-terminated or null.
        let addr = unsafe { string(p.server_addr, "server_addr")? };
        let Some(addr) = addr else {
            return fail(TosResult::NullPointer, "server_addr is null");
        };
        let server: SocketAddr = addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Fail(
                    TosResult::InvalidArgument,
                    format!("cannot resolve server address {addr:?}"),
                )
            })?;
        if p.server_key.is_null() {
            return fail(TosResult::NullPointer, "server_key is null");
        }
        let mut key = [0u8; 32];
        // SAFETY: server_key points to 32 readable bytes.
        unsafe { core::ptr::copy_nonoverlapping(p.server_key, key.as_mut_ptr(), 32) };
        let ticket = if p.ticket.is_null() || p.ticket_len == 0 {
            Vec::new()
        } else if p.ticket_len > 1024 {
            return fail(TosResult::InvalidArgument, "ticket_len is too large");
        } else {
            // SAFETY: ticket points to ticket_len readable bytes.
            unsafe { core::slice::from_raw_parts(p.ticket, p.ticket_len) }.to_vec()
        };
        // SAFETY: as above.
        let account = unsafe { string(p.account, "account")? }.unwrap_or_default();
        // SAFETY: as above.
        let password = unsafe { string(p.password, "password")? }.unwrap_or_default();
        // SAFETY: as above.
        let character_name = unsafe { string(p.character_name, "character_name")? }
            .unwrap_or_else(|| account.clone());
        if ticket.is_empty() && (account.is_empty() || password.is_empty()) {
            return fail(
                TosResult::InvalidArgument,
                "account and password are required without a ticket",
            );
        }
        let login = LoginSpec {
            account,
            password,
            register: p.register_account != 0,
            character_name,
            template: if p.character_template == 0 {
                1
            } else {
                p.character_template
            },
            appearance: vec![0; 4],
            ticketed: !ticket.is_empty(),
            login_only: false,
        };
        let mut config = SessionConfig::new(key, login);
        config.ticket = ticket;
        config.choose_character = p.choose_character != 0;
        if !p.integrity_table.is_null() {
            // SAFETY: integrity_table points to TOS_INTEGRITY_TABLE_BYTES
            // readable bytes.
            let bytes = unsafe {
                core::slice::from_raw_parts(p.integrity_table, TOS_INTEGRITY_TABLE_BYTES)
            };
            let entries: Vec<[u8; 16]> = bytes
                .chunks_exact(16)
                .map(|c| {
                    let mut e = [0u8; 16];
                    e.copy_from_slice(c);
                    e
                })
                .collect();
            let version = if p.integrity_version == 0 {
                1
            } else {
                p.integrity_version
            };
            let table = IntegrityTable::from_entries(version, &entries)
                .ok_or_else(|| Fail(TosResult::InvalidArgument, "bad integrity table".into()))?;
            config.integrity = Some(Arc::new(table));
        }
        if p.tick_hz != 0 {
            config.tick_hz = f64::from(p.tick_hz);
        }
        if p.handshake_timeout_ms != 0 {
            Arc::make_mut(&mut config.transport).handshake_timeout =
                Duration::from_millis(u64::from(p.handshake_timeout_ms));
        }
        let inner = UdpClient::connect(server, config, Instant::now()).map_err(driver_error)?;
        let raw = Box::into_raw(Box::new(TosClient {
            inner,
            closed: false,
        }));
        if let Ok(mut set) = live().lock() {
            set.insert(raw as usize);
        }
        // SAFETY: `out` is non-null and writable.
        unsafe { *out = raw };
        Ok(())
    })
}

/// Pumps the client — receives, runs timers, sends — and copies up to
/// `cap` events into `events`, writing how many to `*count`. Call it once
/// per frame; events that did not fit wait for the next call (a full
/// buffer, `*count == cap`, means call again). After the connection ended
/// it still hands out the remaining events, then returns
/// `TOS_RESULT_CLOSED`.
///
/// # Safety
/// `client` is a handle or null; `events` is null (with `cap` 0) or points
/// to `cap` writable `TosEvent`s; `count` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_poll(
    client: *mut TosClient,
    events: *mut TosEvent,
    cap: usize,
    count: *mut usize,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if count.is_null() || (events.is_null() && cap > 0) {
            return fail(TosResult::NullPointer, "events and count must not be null");
        }
        let ended = c.closed || c.inner.session().is_ended();
        if !c.closed {
            c.inner.poll(Instant::now()).map_err(driver_error)?;
        }
        let mut n = 0;
        while n < cap {
            let Some(e) = c.inner.poll_event() else {
                break;
            };
            // SAFETY: n < cap, inside the caller's array.
            unsafe { events.add(n).write(event(&e)) };
            n += 1;
        }
        // SAFETY: non-null and writable.
        unsafe { *count = n };
        if ended && n == 0 {
            return fail(TosResult::Closed, "the session is closed");
        }
        Ok(())
    })
}

/// Character `index` (0 ..< the `CHARACTER_LIST` event's count) into
/// `*out`; `TOS_RESULT_NOT_FOUND` past the end or when not at the list.
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_character(
    client: *mut TosClient,
    index: usize,
    out: *mut TosCharacter,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let Some(ch) = c.inner.session().characters().get(index) else {
            return fail(TosResult::NotFound, format!("no character {index}"));
        };
        let mut name = [0u8; 48];
        let n = ch.name.len().min(name.len() - 1);
        name[..n].copy_from_slice(&ch.name.as_bytes()[..n]);
        let info = TosCharacter {
            character_id: ch.character_id,
            name,
            template: ch.template,
            level: ch.level,
            faction: ch.faction,
            reserved: [0; 3],
            deleted_at: ch.deleted_at,
            position: ch.position,
        };
        // SAFETY: non-null and writable.
        unsafe { *out = info };
        Ok(())
    })
}

/// Enters the world with character `character_id` (at the character
/// list); `ENTERED_WORLD` or `REFUSED` (then the list again) follows.
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_enter_character(
    client: *mut TosClient,
    character_id: u64,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if c.closed {
            return fail(TosResult::Closed, "the session is closed");
        }
        c.inner
            .session_mut()
            .enter_character(character_id)
            .map_err(session_error)
    })
}

/// Creates a character named `name` (NUL-terminated UTF-8) of `template`
/// with `appearance_len` appearance bytes (null for none), at the character
/// list; `CHARACTER_CREATED` and the list again follow, or `REFUSED`.
///
/// # Safety
/// `client` is a handle or null; `name` is null or NUL-terminated;
/// `appearance` is null or points to `appearance_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_create_character(
    client: *mut TosClient,
    name: *const c_char,
    template: u16,
    appearance: *const u8,
    appearance_len: usize,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        // SAFETY: NUL-terminated or null.
        let Some(name) = (unsafe { string(name, "name")? }) else {
            return fail(TosResult::NullPointer, "name is null");
        };
        if c.closed {
            return fail(TosResult::Closed, "the session is closed");
        }
        let appearance = if appearance.is_null() || appearance_len == 0 {
            &[][..]
        } else if appearance_len > tos_protocol::wire::game::MAX_APPEARANCE_LEN {
            return fail(TosResult::InvalidArgument, "appearance_len is too large");
        } else {
            // SAFETY: `appearance` points to `appearance_len` readable bytes.
            unsafe { core::slice::from_raw_parts(appearance, appearance_len) }
        };
        c.inner
            .session_mut()
            .create_character(&name, template, appearance)
            .map_err(session_error)
    })
}

/// Claims a move (sent unreliably on the next poll): `position` and
/// `velocity` are 3 floats each (units, units per second), `yaw` degrees,
/// `anim` 0 idle / 1 walk, `dt` the seconds the move covered. The claim's
/// input sequence goes to `*seq` (if not null); snapshots acknowledge it.
///
/// # Safety
/// `client` is a handle or null; `position` and `velocity` are null or
/// point to 3 floats; `seq` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_move(
    client: *mut TosClient,
    position: *const f32,
    velocity: *const f32,
    yaw: f32,
    anim: u8,
    dt: f32,
    seq: *mut u32,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if position.is_null() || velocity.is_null() {
            return fail(
                TosResult::NullPointer,
                "position and velocity must not be null",
            );
        }
        if c.closed {
            return fail(TosResult::Closed, "the session is closed");
        }
        // SAFETY: both point to 3 floats.
        let (p, v) = unsafe { (*position.cast::<[f32; 3]>(), *velocity.cast::<[f32; 3]>()) };
        if p.iter()
            .chain(&v)
            .chain([&yaw, &dt])
            .any(|x| !x.is_finite())
        {
            return fail(TosResult::InvalidArgument, "non-finite number in a move");
        }
        let s = c
            .inner
            .session_mut()
            .send_move(p, v, yaw, anim, dt)
            .map_err(session_error)?;
        if !seq.is_null() {
            // SAFETY: non-null and writable.
            unsafe { *seq = s };
        }
        Ok(())
    })
}

/// Asks for action `action_id` on entity `target` (0: none), sent
/// reliably. Its input sequence goes to `*seq` (if not null); an
/// `ACTION_RESULT` event answers it.
///
/// # Safety
/// `client` is a handle or null; `seq` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_action(
    client: *mut TosClient,
    action_id: u16,
    target: u32,
    seq: *mut u32,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if c.closed {
            return fail(TosResult::Closed, "the session is closed");
        }
        let s = c
            .inner
            .session_mut()
            .send_action(action_id, target)
            .map_err(session_error)?;
        if !seq.is_null() {
            // SAFETY: non-null and writable.
            unsafe { *seq = s };
        }
        Ok(())
    })
}

/// Copies the session ticket (to reconnect without the password) into
/// `buf` and its length into `*len`. If `cap` is too small, writes the
/// needed length to `*len` and returns `TOS_RESULT_BUFFER_TOO_SMALL`;
/// before login the ticket is empty (length 0).
///
/// # Safety
/// `client` is a handle or null; `buf` is null (with `cap` 0) or points to
/// `cap` writable bytes; `len` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_ticket(
    client: *mut TosClient,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if len.is_null() || (buf.is_null() && cap > 0) {
            return fail(TosResult::NullPointer, "buf and len must not be null");
        }
        let t = c.inner.session().ticket();
        // SAFETY: non-null and writable.
        unsafe { *len = t.len() };
        if t.len() > cap {
            return fail(
                TosResult::BufferTooSmall,
                format!("the ticket needs {} bytes", t.len()),
            );
        }
        if !t.is_empty() {
            // SAFETY: `buf` has `cap` >= t.len() writable bytes.
            unsafe { core::ptr::copy_nonoverlapping(t.as_ptr(), buf, t.len()) };
        }
        Ok(())
    })
}

/// The entity `entity_id` as it should be drawn now: interpolated at
/// render time = estimated server time − `delay_ticks` (2 to 3 hides a
/// lost snapshot). `TOS_RESULT_NOT_FOUND` if it is not in view.
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_sample_entity(
    client: *mut TosClient,
    entity_id: u32,
    delay_ticks: f64,
    out: *mut TosEntity,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let s = c.inner.session();
        let Some(render) = s.clock().render_tick(Instant::now(), delay_ticks) else {
            return fail(TosResult::NotFound, "no snapshot yet");
        };
        let Some(state) = s.interpolator().sample(entity_id, render, s.clock()) else {
            return fail(
                TosResult::NotFound,
                format!("entity {entity_id} is not in view"),
            );
        };
        // SAFETY: non-null and writable.
        unsafe { *out = entity(&state) };
        Ok(())
    })
}

/// The estimated server tick now (fractional) into `*tick`;
/// `TOS_RESULT_NOT_FOUND` before the first snapshot.
///
/// # Safety
/// `client` is a handle or null; `tick` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_server_tick(
    client: *mut TosClient,
    tick: *mut f64,
) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if tick.is_null() {
            return fail(TosResult::NullPointer, "tick is null");
        }
        let Some(t) = c.inner.session().clock().server_tick(Instant::now()) else {
            return fail(TosResult::NotFound, "no snapshot yet");
        };
        // SAFETY: non-null and writable.
        unsafe { *tick = t };
        Ok(())
    })
}

/// Counters into `*out`.
///
/// # Safety
/// `client` is a handle or null; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_stats(client: *mut TosClient, out: *mut TosStats) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if out.is_null() {
            return fail(TosResult::NullPointer, "out is null");
        }
        let s = c.inner.session();
        let cs = s.connection().stats();
        let stats = TosStats {
            rtt_ms: s.connection().rtt().as_secs_f32() * 1000.0,
            entities_in_view: s.entities_in_view() as u32,
            pending_inputs: s.prediction().len() as u32,
            reserved: 0,
            packets_sent: cs.packets_sent,
            packets_received: cs.packets_received,
            snapshots: s.stats().snapshots,
        };
        // SAFETY: non-null and writable.
        unsafe { *out = stats };
        Ok(())
    })
}

/// Leaves gracefully: sends the Disconnect now (the server saves the
/// character). Later calls on this handle return `TOS_RESULT_CLOSED`;
/// free it with `tos_client_free`.
///
/// # Safety
/// `client` is a handle or null.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_close(client: *mut TosClient) -> TosResult {
    guard(|| {
        // SAFETY: forwarded.
        let c = unsafe { self::client(client)? };
        if c.closed {
            return fail(TosResult::Closed, "already closed");
        }
        c.closed = true;
        c.inner.close(Instant::now()).map_err(driver_error)
    })
}

/// Frees a handle (closing it first if needed). Null, or a handle already
/// freed, is ignored.
///
/// # Safety
/// `client` is a handle or null, not in use by another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tos_client_free(client: *mut TosClient) {
    let _ = guard(|| {
        if client.is_null() {
            return Ok(());
        }
        let removed = live()
            .lock()
            .map(|mut set| set.remove(&(client as usize)))
            .unwrap_or(false);
        if removed {
            // SAFETY: it was live, so it came from `Box::into_raw` and is
            // freed once (removed from the set first).
            let mut c = unsafe { Box::from_raw(client) };
            if !c.closed {
                let _ = c.inner.close(Instant::now());
            }
        }
        Ok(())
    });
}
