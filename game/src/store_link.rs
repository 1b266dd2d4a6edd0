//! The one place that speaks the store's command language: a core's
//! requests become store commands carrying this core's reply channel, and
//! the store's replies become [`StoreAnswer`]s keyed by request id.

use crossbeam_channel::{Receiver, Sender};
use tos_store::{
    Account, AccountId, CharacterId, CharacterRecord, CharacterState, NewCharacter, StoreCommand,
    StoreError, StoreHandle, StoreReply, StoreRequest, StoreResult,
};

/// A request a core makes of the store.
#[derive(Debug)]
pub(crate) enum StoreOp {
    AccountByName(String),
    CreateAccount {
        name: String,
        hash: Option<String>,
    },
    ListCharacters(u64),
    CreateCharacter(Box<NewCharacter>, u8),
    DeleteCharacter {
        account: u64,
        id: u64,
    },
    RestoreCharacter {
        account: u64,
        id: u64,
        window: u64,
    },
    LoadCharacter(u64),
}

/// What came back.
#[derive(Debug)]
pub(crate) enum StoreAnswer {
    Account(Result<Option<Account>, StoreError>),
    AccountCreated(Result<u64, StoreError>),
    Characters(Result<Vec<CharacterRecord>, StoreError>),
    Created(Result<CharacterRecord, StoreError>),
    /// Delete or restore of this character id.
    Done(Result<u64, StoreError>),
    Character(Result<Option<CharacterRecord>, StoreError>),
}

/// A core's link to the store.
#[derive(Debug)]
pub(crate) struct StoreLink {
    store: StoreHandle,
    reply_tx: Sender<StoreReply>,
    reply_rx: Receiver<StoreReply>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl StoreLink {
    pub(crate) fn new(store: StoreHandle) -> Self {
        // Bounded by the requests in flight: one per session plus tickets.
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(16_384);
        Self {
            store,
            reply_tx,
            reply_rx,
        }
    }

    /// Whether the store is behind (too many saves pending): new logins and
    /// enters are refused so that playing characters keep their saves.
    pub(crate) fn saturated(&self) -> bool {
        self.store.is_saturated()
    }

    /// Sends a request; false if the store's queue is full.
    pub(crate) fn request(&self, request_id: u64, op: StoreOp) -> bool {
        let now = unix_now();
        let request = match op {
            StoreOp::AccountByName(name) => StoreRequest::AccountByName { name },
            StoreOp::CreateAccount { name, hash } => StoreRequest::CreateAccount {
                name,
                password_hash: hash,
                now,
            },
            StoreOp::ListCharacters(account) => StoreRequest::ListCharacters {
                account: AccountId(account),
            },
            StoreOp::CreateCharacter(new, max) => StoreRequest::CreateCharacter {
                character: *new,
                max_per_account: u32::from(max),
                now,
            },
            StoreOp::DeleteCharacter { account, id } => StoreRequest::DeleteCharacter {
                account: AccountId(account),
                id: CharacterId(id),
                now,
            },
            StoreOp::RestoreCharacter {
                account,
                id,
                window,
            } => StoreRequest::RestoreCharacter {
                account: AccountId(account),
                id: CharacterId(id),
                now,
                window_secs: window as i64,
            },
            StoreOp::LoadCharacter(id) => StoreRequest::LoadCharacter {
                id: CharacterId(id),
            },
        };
        self.store
            .try_send(StoreCommand::Request {
                request_id,
                reply: self.reply_tx.clone(),
                request,
            })
            .is_ok()
    }

    /// Queues a write-behind save; false if the store's queue is full.
    pub(crate) fn save(&self, state: CharacterState) -> bool {
        self.store.try_send(StoreCommand::Save(state)).is_ok()
    }

    /// Queues a save written at once (logout); false if the queue is full.
    pub(crate) fn save_now(&self, state: CharacterState) -> bool {
        self.store
            .try_send(StoreCommand::SaveNow { state, reply: None })
            .is_ok()
    }

    /// The next reply, if one arrived.
    pub(crate) fn try_recv(&self) -> Option<(u64, StoreAnswer)> {
        loop {
            let reply = self.reply_rx.try_recv().ok()?;
            if let Some(answer) = Self::answer(reply.result) {
                return Some((reply.request_id, answer));
            }
        }
    }

    fn answer(result: StoreResult) -> Option<StoreAnswer> {
        Some(match result {
            StoreResult::Account(r) => StoreAnswer::Account(r),
            StoreResult::AccountCreated(r) => StoreAnswer::AccountCreated(r.map(|id| id.0)),
            StoreResult::Characters(r) => StoreAnswer::Characters(r),
            StoreResult::CharacterCreated(r) => StoreAnswer::Created(r),
            StoreResult::Deleted(r) | StoreResult::Restored(r) => {
                StoreAnswer::Done(r.map(|id| id.0))
            }
            StoreResult::Character(r) => StoreAnswer::Character(r),
            // Acknowledgements of saves and flushes are not asked for here.
            _ => return None,
        })
    }
}
