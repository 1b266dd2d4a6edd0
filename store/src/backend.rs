//! The [`Backend`] trait: the synchronous database interface the store
//! threads call, and the conversions both implementations share (name keys,
//! range checks between the data model and SQL integer types).

use crate::{
    Account, AccountId, CharacterId, CharacterRecord, CharacterState, MAX_APPEARANCE_BYTES,
    NewCharacter, StoreError,
};

/// One database connection's worth of store operations.
///
/// Implementations are synchronous and are called only on store threads,
/// never on a core's thread. The trait is object-safe so the store service
/// holds a `Box<dyn Backend>` chosen at start from the config.
pub trait Backend: Send {
    /// Short name for logs and metrics (`"sqlite"`, `"postgres"`).
    fn kind(&self) -> &'static str;

    /// Brings the schema up to the newest version this build knows, one
    /// transaction per version, recording each in `schema_version`.
    /// Running it again does nothing.
    fn migrate(&mut self) -> Result<(), StoreError>;

    /// The schema version recorded in the database (0 before any).
    fn schema_version(&mut self) -> Result<i64, StoreError>;

    /// Creates an account. Names are unique ignoring case
    /// ([`StoreError::NameTaken`]).
    fn create_account(
        &mut self,
        name: &str,
        password_hash: Option<&str>,
        now: i64,
    ) -> Result<AccountId, StoreError>;

    /// The account with this name, ignoring case.
    fn account_by_name(&mut self, name: &str) -> Result<Option<Account>, StoreError>;

    /// Every character of the account, soft-deleted ones included (the
    /// selection screen shows them with their restore countdown), by id.
    fn list_characters(&mut self, account: AccountId) -> Result<Vec<CharacterRecord>, StoreError>;

    /// Creates a character, atomically with its checks:
    /// - the name must be unused ignoring case across *all* characters,
    ///   deleted ones included (a deleted character can be restored, so its
    ///   name stays reserved until purged) → [`StoreError::NameTaken`];
    /// - the account must have fewer than `max_per_account` characters,
    ///   counting soft-deleted ones not yet purged, as L2J does → else
    ///   [`StoreError::TooManyCharacters`]. Counting them means a restore
    ///   can never take an account over the limit, and deleting cannot be
    ///   used to churn through names; [`Backend::purge_deleted`] frees the
    ///   slot once the restore window has passed.
    fn create_character(
        &mut self,
        new: &NewCharacter,
        max_per_account: u32,
        now: i64,
    ) -> Result<CharacterRecord, StoreError>;

    /// Soft-deletes the account's character (sets `deleted_at = now`);
    /// [`StoreError::NotFound`] if it is not that account's. Deleting a
    /// deleted character keeps its first deletion time.
    fn delete_character(
        &mut self,
        account: AccountId,
        id: CharacterId,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Undoes a soft delete made at most `window_secs` before `now`:
    /// [`StoreError::NotFound`], [`StoreError::NotDeleted`] or
    /// [`StoreError::RestoreExpired`] otherwise.
    fn restore_character(
        &mut self,
        account: AccountId,
        id: CharacterId,
        now: i64,
        window_secs: i64,
    ) -> Result<CharacterRecord, StoreError>;

    /// One character, deleted or not.
    fn load_character(&mut self, id: CharacterId) -> Result<Option<CharacterRecord>, StoreError>;

    /// Writes every state in ONE transaction and stamps `last_saved_at =
    /// now`; states of characters that no longer exist are skipped. On
    /// error nothing of the batch is written and the caller may retry it
    /// whole.
    fn save_states(&mut self, states: &[CharacterState], now: i64) -> Result<(), StoreError>;

    /// Removes characters soft-deleted before `older_than` for good,
    /// returning how many; frees their names and account slots.
    fn purge_deleted(&mut self, older_than: i64) -> Result<u64, StoreError>;

    /// Checks the connection and re-opens it if it broke, so that the next
    /// call can succeed. Called before retrying a failed batch.
    fn reconnect(&mut self) -> Result<(), StoreError>;
}

/// The key names are made unique by: Unicode lowercase of the name as
/// typed. It is computed here rather than in SQL so that SQLite (whose
/// `lower()` only folds ASCII) and PostgreSQL agree.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Checks what a new character carries before it reaches SQL.
pub(crate) fn check_new_character(new: &NewCharacter) -> Result<(), StoreError> {
    if new.name.trim().is_empty() {
        return Err(StoreError::Invalid("empty character name".into()));
    }
    if new.appearance.len() > MAX_APPEARANCE_BYTES {
        return Err(StoreError::Invalid(format!(
            "appearance is {} bytes, at most {MAX_APPEARANCE_BYTES}",
            new.appearance.len()
        )));
    }
    to_sql_u64(new.exp, "exp")?;
    to_sql_u64(new.account.0, "account id")?;
    Ok(())
}

/// A `u64` as SQL `BIGINT`; values past `i64::MAX` are refused, not wrapped.
pub(crate) fn to_sql_u64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{what} {value} exceeds i64")))
}

/// A `BIGINT` read back as `u64`; a negative value is corrupt data.
pub(crate) fn from_sql_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is {value}")))
}

/// Raw column values of a `characters` row, as both backends read them, so
/// that the checks on the way into the data model are written once.
#[derive(Debug)]
pub(crate) struct RawCharacter {
    pub(crate) id: i64,
    pub(crate) account: i64,
    pub(crate) name: String,
    pub(crate) template: i32,
    pub(crate) faction: i32,
    pub(crate) appearance: Vec<u8>,
    pub(crate) level: i32,
    pub(crate) exp: i64,
    pub(crate) position: [f32; 3],
    pub(crate) yaw: f32,
    pub(crate) hp: f32,
    pub(crate) mp: f32,
    pub(crate) created_at: i64,
    pub(crate) deleted_at: Option<i64>,
    pub(crate) last_saved_at: i64,
    pub(crate) items: Vec<u8>,
}

/// Columns in the order [`RawCharacter`] is read in, for SELECTs.
pub(crate) const CHARACTER_COLUMNS: &str = "id, account_id, name, template, faction, appearance, \
     level, exp, pos_x, pos_y, pos_z, yaw, hp, mp, created_at, deleted_at, last_saved_at, items";

impl RawCharacter {
    /// Converts with range checks: bad data is an error, never a panic.
    pub(crate) fn into_record(self) -> Result<CharacterRecord, StoreError> {
        let corrupt = |what: &str, v: i64| {
            StoreError::Corrupt(format!("character {}: {what} is {v}", self.id))
        };
        if self.appearance.len() > MAX_APPEARANCE_BYTES {
            return Err(StoreError::Corrupt(format!(
                "character {}: appearance is {} bytes",
                self.id,
                self.appearance.len()
            )));
        }
        let items = crate::items::decode_items(&self.items)
            .map_err(|e| StoreError::Corrupt(format!("character {}: items: {e}", self.id)))?;
        Ok(CharacterRecord {
            items,
            id: CharacterId(from_sql_u64(self.id, "character id")?),
            account: AccountId(from_sql_u64(self.account, "account id")?),
            template: u16::try_from(self.template)
                .map_err(|_| corrupt("template", self.template.into()))?,
            faction: u8::try_from(self.faction)
                .map_err(|_| corrupt("faction", self.faction.into()))?,
            level: u16::try_from(self.level).map_err(|_| corrupt("level", self.level.into()))?,
            exp: u64::try_from(self.exp).map_err(|_| corrupt("exp", self.exp))?,
            name: self.name,
            appearance: self.appearance,
            position: self.position,
            yaw: self.yaw,
            hp: self.hp,
            mp: self.mp,
            created_at: self.created_at,
            deleted_at: self.deleted_at,
            last_saved_at: self.last_saved_at,
        })
    }
}
