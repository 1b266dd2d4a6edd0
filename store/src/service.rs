//! The store service: [`Store::start`] spawns the store thread that owns a
//! [`Backend`]; cores talk to it through a [`StoreClient`] by bounded
//! channel and get [`StoreReply`] values back on their own reply channels.
//!
//! # One thread, one connection
//!
//! Saves and requests share one thread (`tos-store`) and one connection.
//! That is a choice, not a shortcut:
//! - **Ordering.** A character's logout save and its next login's load go
//!   through the same queue, and a load is answered with any still-pending
//!   save applied on top, so a player can never load a state older than one
//!   the game already handed over (the rollback and duplication bug of
//!   servers whose loads overtake their saves).
//! - **Budget.** A 10,000-character batch costs a few percent of the thread
//!   per second (see `docs/PERSISTENCE.md`), leaving the rest for logins.
//! - **SQLite** has one writer at a time anyway; a second writer thread
//!   would only wait on its lock.
//!
//! A request may wait behind a running batch (milliseconds). While the
//! database is down the thread never sleeps through its queue: it waits for
//! commands with a deadline at the next retry, so requests keep getting
//! (error) replies and saves keep coalescing.
//!
//! # Write-behind
//!
//! [`StoreCommand::Save`] puts the state in a map keyed by character
//! (latest wins). The game layer sends one pass of saves per
//! `save_interval_ms` (every core on the same tick); the map is written in
//! one transaction `batch_delay_ms` after the first save of a pass arrives,
//! so a state is on disk at most one interval plus that delay after it was
//! taken. (Writing on a timer of its own instead, one interval after the
//! first save, let a pass arrive just after a write and wait a whole
//! interval more: up to two intervals lost on SIGKILL.)
//! [`StoreCommand::SaveNow`] and [`StoreCommand::Flush`] write
//! at once and are acknowledged only once the data is committed. A failed
//! batch stays in the map (newer saves still replace older ones) and is
//! retried with exponential backoff, reconnecting first; nothing is
//! dropped. Over `saturation_pending_saves` the store reports itself
//! saturated; beyond `max_pending_saves` distinct characters new saves are
//! refused and counted (the saturation flag stops logins long before).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tos_config::StoreConfig;

use crate::{
    Account, AccountId, Backend, CharacterId, CharacterRecord, CharacterState, NewCharacter,
    StoreError, StoreMetrics,
};

/// Timing and bounds of the store thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// Pending saves are written this often (at most; see `batch_delay_ms`).
    pub save_interval_ms: u32,
    /// A pass of saves is written this long after its first save arrives
    /// (the rest of the pass, from the other cores, arrives meanwhile).
    pub batch_delay_ms: u32,
    /// Most distinct characters waiting to be written.
    pub max_pending_saves: u32,
    /// Pending saves above which the store reports itself saturated.
    pub saturation_pending_saves: u32,
    /// Capacity of the command channel.
    pub queue_capacity: u32,
    /// First retry delay of a failed batch; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u32,
    /// Longest retry delay.
    pub retry_max_ms: u32,
    /// On shutdown, how long to keep retrying a failing final flush before
    /// giving up (and logging what is lost) so the process can exit.
    pub shutdown_timeout_ms: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self::from(&StoreConfig::default())
    }
}

impl From<&StoreConfig> for StoreSettings {
    fn from(c: &StoreConfig) -> Self {
        Self {
            save_interval_ms: c.save_interval_ms,
            batch_delay_ms: c.save_interval_ms.min(50),
            max_pending_saves: c.max_pending_saves,
            saturation_pending_saves: c.saturation_pending_saves,
            queue_capacity: c.queue_capacity,
            retry_initial_ms: c.retry_initial_ms,
            retry_max_ms: c.retry_max_ms,
            shutdown_timeout_ms: 30_000,
        }
    }
}

/// Caller-chosen id echoed in the reply, so a core can match replies to
/// the sessions that asked.
pub type RequestId = u64;

/// A request that is answered with one [`StoreReply`].
#[derive(Debug, Clone, PartialEq)]
pub enum StoreRequest {
    /// [`Backend::create_account`] → [`StoreResponse::AccountCreated`].
    CreateAccount {
        /// Account name.
        name: String,
        /// Argon2 PHC string, `None` for ticket accounts.
        password_hash: Option<String>,
    },
    /// [`Backend::account_by_name`] → [`StoreResponse::Account`].
    AccountByName {
        /// Account name (any case).
        name: String,
    },
    /// [`Backend::list_characters`] → [`StoreResponse::Characters`].
    ListCharacters {
        /// Whose.
        account: AccountId,
    },
    /// [`Backend::create_character`] → [`StoreResponse::Character`].
    CreateCharacter {
        /// The new character.
        new: NewCharacter,
        /// Character slots per account.
        max_per_account: u32,
    },
    /// [`Backend::delete_character`] → [`StoreResponse::Done`].
    DeleteCharacter {
        /// Owner.
        account: AccountId,
        /// Which.
        id: CharacterId,
    },
    /// [`Backend::restore_character`] → [`StoreResponse::Character`].
    RestoreCharacter {
        /// Owner.
        account: AccountId,
        /// Which.
        id: CharacterId,
        /// How long after deletion a restore is allowed.
        window_secs: i64,
    },
    /// [`Backend::load_character`] with pending saves applied →
    /// [`StoreResponse::Loaded`].
    LoadCharacter {
        /// Which.
        id: CharacterId,
    },
    /// [`Backend::purge_deleted`] → [`StoreResponse::Purged`].
    PurgeDeleted {
        /// Unix seconds: characters deleted before this go for good.
        older_than: i64,
    },
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreResponse {
    /// The new account's id.
    AccountCreated(AccountId),
    /// The account, if it exists.
    Account(Option<Account>),
    /// An account's characters.
    Characters(Vec<CharacterRecord>),
    /// A created or restored character.
    Character(CharacterRecord),
    /// A loaded character, if it exists.
    Loaded(Option<CharacterRecord>),
    /// Characters purged.
    Purged(u64),
    /// Deleted, saved or flushed: committed.
    Done,
}

/// The answer to one command, sent on the reply channel the command named.
#[derive(Debug)]
pub struct StoreReply {
    /// The id the command carried.
    pub request_id: RequestId,
    /// The outcome.
    pub result: Result<StoreResponse, StoreError>,
}

/// What cores send to the store thread.
#[derive(Debug)]
pub enum StoreCommand {
    /// Write-behind: saved within `save_interval_ms`; coalesced per
    /// character, latest wins. Not acknowledged.
    Save(CharacterState),
    /// Save at once (logout); acknowledged with [`StoreResponse::Done`]
    /// once committed.
    SaveNow {
        /// Echoed in the reply.
        request_id: RequestId,
        /// The final state.
        state: CharacterState,
        /// Where the acknowledgement goes.
        reply: Sender<StoreReply>,
    },
    /// A read or an account/character change.
    Request {
        /// Echoed in the reply.
        request_id: RequestId,
        /// What to do.
        request: StoreRequest,
        /// Where the answer goes.
        reply: Sender<StoreReply>,
    },
    /// Write everything pending; acknowledged once committed (SIGTERM).
    Flush {
        /// Echoed in the reply.
        request_id: RequestId,
        /// Where the acknowledgement goes.
        reply: Sender<StoreReply>,
    },
    /// Flush and end the store thread.
    Shutdown,
}

/// The cores' side of the store: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct StoreClient {
    tx: Sender<StoreCommand>,
    metrics: Arc<StoreMetrics>,
}

impl StoreClient {
    /// Queues a command without blocking; when the channel is full (or the
    /// store has ended) the command comes back inside the error, so the
    /// caller can refuse a login with "server busy" or keep the save for
    /// its next tick.
    #[allow(
        clippy::result_large_err,
        reason = "the command comes back by value, as it went in; the channel slots are as large"
    )]
    pub fn try_send(&self, command: StoreCommand) -> Result<(), TrySendError<StoreCommand>> {
        self.tx.try_send(command)
    }

    /// Whether saves are piling up (database slow or down): refuse new
    /// logins while it is set.
    pub fn is_saturated(&self) -> bool {
        self.metrics.saturated.load(Relaxed)
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.metrics
    }
}

/// Owner of the running store: hands out clients and shuts it down.
#[derive(Debug)]
pub struct StoreHandle {
    client: StoreClient,
    thread: Option<JoinHandle<()>>,
}

/// Entry point of the store service.
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Spawns the `tos-store` thread owning `backend` (already migrated).
    pub fn start(
        settings: StoreSettings,
        backend: Box<dyn Backend>,
    ) -> Result<StoreHandle, StoreError> {
        let (tx, rx) = crossbeam_channel::bounded(settings.queue_capacity.max(1) as usize);
        let metrics = Arc::new(StoreMetrics::new());
        let worker = Worker {
            backend,
            rx,
            metrics: Arc::clone(&metrics),
            pending: HashMap::new(),
            waiters: Vec::new(),
            failing_since: None,
            retry_delay: Duration::from_millis(u64::from(settings.retry_initial_ms)),
            next_attempt: None,
            settings,
        };
        let thread = std::thread::Builder::new()
            .name("tos-store".into())
            .spawn(move || worker.run())?;
        Ok(StoreHandle {
            client: StoreClient { tx, metrics },
            thread: Some(thread),
        })
    }
}

impl StoreHandle {
    /// A client for a core (or anything else that talks to the store).
    pub fn client(&self) -> StoreClient {
        self.client.clone()
    }

    /// See [`StoreClient::try_send`].
    #[allow(
        clippy::result_large_err,
        reason = "the command comes back by value, as it went in; the channel slots are as large"
    )]
    pub fn try_send(&self, command: StoreCommand) -> Result<(), TrySendError<StoreCommand>> {
        self.client.try_send(command)
    }

    /// See [`StoreClient::is_saturated`].
    pub fn is_saturated(&self) -> bool {
        self.client.is_saturated()
    }

    /// The store's metrics.
    pub fn metrics(&self) -> &Arc<StoreMetrics> {
        &self.client.metrics
    }

    /// Flushes everything pending (retrying up to the shutdown timeout)
    /// and waits for the thread to end. Blocks: call it from the main
    /// thread, never from a core.
    pub fn shutdown_and_join(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // A blocking send: the thread drains its queue, so this returns
            // (or fails at once if the thread has already ended).
            let _ = self.client.tx.send(StoreCommand::Shutdown);
            if thread.join().is_err() {
                tracing::error!("store thread panicked");
            }
        }
    }
}

impl Drop for StoreHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Unix seconds now.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An acknowledgement owed once the pending saves are committed.
#[derive(Debug)]
struct Waiter {
    request_id: RequestId,
    reply: Sender<StoreReply>,
}

struct Worker {
    backend: Box<dyn Backend>,
    rx: Receiver<StoreCommand>,
    metrics: Arc<StoreMetrics>,
    settings: StoreSettings,
    /// Latest unwritten state per character.
    pending: HashMap<CharacterId, CharacterState>,
    /// SaveNow and Flush acknowledgements waiting for the next commit.
    waiters: Vec<Waiter>,
    /// When the current run of failures began (None while healthy).
    failing_since: Option<Instant>,
    retry_delay: Duration,
    /// When the next batch is due (None: nothing pending).
    next_attempt: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        let delay = Duration::from_millis(u64::from(
            self.settings
                .batch_delay_ms
                .min(self.settings.save_interval_ms),
        ));
        loop {
            self.metrics
                .queue_depth
                .store(self.rx.len() as u64, Relaxed);
            let command = match self.next_attempt {
                Some(at) => match self.rx.recv_deadline(at) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                },
            };
            match command {
                None => {
                    self.write_pending();
                }
                Some(StoreCommand::Save(state)) => {
                    self.enqueue(state);
                    if self.next_attempt.is_none() && !self.pending.is_empty() {
                        self.next_attempt = Some(Instant::now() + delay);
                    }
                }
                Some(StoreCommand::SaveNow {
                    request_id,
                    state,
                    reply,
                }) => {
                    self.enqueue(state);
                    self.waiters.push(Waiter { request_id, reply });
                    self.write_now();
                }
                Some(StoreCommand::Flush { request_id, reply }) => {
                    self.waiters.push(Waiter { request_id, reply });
                    self.write_now();
                }
                Some(StoreCommand::Request {
                    request_id,
                    request,
                    reply,
                }) => {
                    let result = self.serve(request);
                    self.metrics.requests_total.fetch_add(1, Relaxed);
                    if matches!(&result, Err(e) if e.is_transient()) {
                        self.metrics.request_failures_total.fetch_add(1, Relaxed);
                    }
                    self.reply(&reply, request_id, result);
                }
                Some(StoreCommand::Shutdown) => break,
            }
        }
        self.final_flush();
    }

    /// Writes at once unless a failing batch is backing off (then the
    /// waiter is answered by the retry that succeeds).
    fn write_now(&mut self) {
        if self.failing_since.is_none() {
            self.write_pending();
        }
    }

    fn enqueue(&mut self, state: CharacterState) {
        let len = self.pending.len();
        if len >= self.settings.max_pending_saves as usize && !self.pending.contains_key(&state.id)
        {
            self.metrics.saves_refused_total.fetch_add(1, Relaxed);
            tracing::error!(
                character = state.id.0,
                pending = len,
                "save refused: too many pending saves"
            );
        } else {
            self.pending.insert(state.id, state);
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let n = self.pending.len();
        self.metrics.pending_saves.store(n as u64, Relaxed);
        self.metrics
            .saturated
            .store(n > self.settings.saturation_pending_saves as usize, Relaxed);
    }

    /// One attempt at writing every pending save in one transaction.
    /// Returns whether everything pending is now committed.
    fn write_pending(&mut self) -> bool {
        if self.pending.is_empty() {
            self.next_attempt = None;
            self.ack_waiters(|| Ok(StoreResponse::Done));
            return true;
        }
        if self.failing_since.is_some() {
            self.metrics.retries_total.fetch_add(1, Relaxed);
            if let Err(e) = self.backend.reconnect() {
                tracing::debug!(error = %e, "store reconnect failed");
            }
        }
        // Sorted by id so that concurrent writers (other processes) lock
        // rows in the same order and cannot deadlock each other.
        let mut batch: Vec<CharacterState> = self.pending.values().cloned().collect();
        batch.sort_unstable_by_key(|s| s.id);
        let started = Instant::now();
        match self.backend.save_states(&batch, unix_now()) {
            Ok(()) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.metrics.record_batch(batch.len(), micros);
                self.pending.clear();
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        down_for_ms = since.elapsed().as_millis() as u64,
                        "store writes recovered"
                    );
                }
                self.retry_delay = Duration::from_millis(u64::from(self.settings.retry_initial_ms));
                self.next_attempt = None;
                self.update_gauges();
                self.ack_waiters(|| Ok(StoreResponse::Done));
                true
            }
            Err(e) => {
                self.metrics.save_failures_total.fetch_add(1, Relaxed);
                if self.failing_since.is_none() {
                    self.failing_since = Some(Instant::now());
                    tracing::warn!(error = %e, pending = batch.len(), "store batch failed; kept for retry");
                }
                self.next_attempt = Some(Instant::now() + self.retry_delay);
                let max = Duration::from_millis(u64::from(self.settings.retry_max_ms));
                self.retry_delay = (self.retry_delay * 2).min(max);
                false
            }
        }
    }

    fn ack_waiters(&mut self, result: impl Fn() -> Result<StoreResponse, StoreError>) {
        for w in std::mem::take(&mut self.waiters) {
            self.reply(&w.reply, w.request_id, result());
        }
    }

    fn reply(
        &self,
        reply: &Sender<StoreReply>,
        request_id: RequestId,
        result: Result<StoreResponse, StoreError>,
    ) {
        match reply.try_send(StoreReply { request_id, result }) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                self.metrics.replies_dropped_total.fetch_add(1, Relaxed);
                tracing::warn!(request_id, "store reply dropped: reply channel full");
            }
            // The requester is gone (the game layer stopped before the
            // store, as at shutdown): the write itself is unaffected, only
            // its acknowledgement has nobody to go to.
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                self.metrics.replies_dropped_total.fetch_add(1, Relaxed);
                tracing::debug!(request_id, "store reply dropped: requester gone");
            }
        }
    }

    /// On shutdown: retry until everything is written or the shutdown
    /// timeout passes; then say loudly what is lost.
    fn final_flush(&mut self) {
        let deadline =
            Instant::now() + Duration::from_millis(u64::from(self.settings.shutdown_timeout_ms));
        loop {
            if self.write_pending() {
                return;
            }
            let Some(at) = self.next_attempt else { return };
            if at >= deadline {
                break;
            }
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        tracing::error!(
            lost = self.pending.len(),
            "store shut down with unwritten saves"
        );
        self.ack_waiters(|| Err(StoreError::Closed));
    }

    fn serve(&mut self, request: StoreRequest) -> Result<StoreResponse, StoreError> {
        let now = unix_now();
        let b = &mut self.backend;
        match request {
            StoreRequest::CreateAccount {
                name,
                password_hash,
            } => b
                .create_account(&name, password_hash.as_deref(), now)
                .map(StoreResponse::AccountCreated),
            StoreRequest::AccountByName { name } => {
                b.account_by_name(&name).map(StoreResponse::Account)
            }
            StoreRequest::ListCharacters { account } => {
                let mut list = b.list_characters(account)?;
                for record in &mut list {
                    if let Some(state) = self.pending.get(&record.id) {
                        record.apply(state);
                    }
                }
                Ok(StoreResponse::Characters(list))
            }
            StoreRequest::CreateCharacter {
                new,
                max_per_account,
            } => b
                .create_character(&new, max_per_account, now)
                .map(StoreResponse::Character),
            StoreRequest::DeleteCharacter { account, id } => b
                .delete_character(account, id, now)
                .map(|()| StoreResponse::Done),
            StoreRequest::RestoreCharacter {
                account,
                id,
                window_secs,
            } => b
                .restore_character(account, id, now, window_secs)
                .map(StoreResponse::Character),
            StoreRequest::LoadCharacter { id } => {
                let mut record = b.load_character(id)?;
                if let (Some(r), Some(state)) = (record.as_mut(), self.pending.get(&id)) {
                    // A save not yet written is newer than the row.
                    r.apply(state);
                }
                Ok(StoreResponse::Loaded(record))
            }
            StoreRequest::PurgeDeleted { older_than } => {
                b.purge_deleted(older_than).map(StoreResponse::Purged)
            }
        }
    }
}
