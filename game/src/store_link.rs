//! The one place that speaks the store's command language: a core's
//! requests become store commands carrying this core's reply channel, and
//! the store's replies come back keyed by request id.

use crossbeam_channel::{Receiver, Sender};
use tos_store::{
    CharacterState, StoreClient, StoreCommand, StoreError, StoreReply, StoreRequest, StoreResponse,
};

/// What came back for a request.
pub(crate) type StoreAnswer = Result<StoreResponse, StoreError>;

/// Request id of logout saves, whose acknowledgement nobody waits for.
const UNTRACKED: u64 = 0;

/// A core's link to the store.
#[derive(Debug)]
pub(crate) struct StoreLink {
    store: StoreClient,
    reply_tx: Sender<StoreReply>,
    reply_rx: Receiver<StoreReply>,
}

impl StoreLink {
    pub(crate) fn new(store: StoreClient) -> Self {
        // Replies are bounded by the requests in flight (one per session,
        // plus tickets) and the logout saves of one turn.
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(65_536);
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
    pub(crate) fn request(&self, request_id: u64, request: StoreRequest) -> bool {
        self.store
            .try_send(StoreCommand::Request {
                request_id,
                request,
                reply: self.reply_tx.clone(),
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
            .try_send(StoreCommand::SaveNow {
                request_id: UNTRACKED,
                state,
                reply: self.reply_tx.clone(),
            })
            .is_ok()
    }

    /// The next reply to a request (acknowledgements of logout saves are
    /// skipped; a failed one is logged, the store keeps retrying it).
    pub(crate) fn try_recv(&self) -> Option<(u64, StoreAnswer)> {
        loop {
            let reply = self.reply_rx.try_recv().ok()?;
            if reply.request_id == UNTRACKED {
                if let Err(e) = reply.result {
                    tracing::warn!(error = %e, "a logout save failed; the store retries it");
                }
                continue;
            }
            return Some((reply.request_id, reply.result));
        }
    }
}
