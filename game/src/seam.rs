//! The seam between the game layer and the runtime: plain values only.
//!
//! The runtime calls `GameCore::handle_*` with what happened (a ticket
//! arrived, a connection was established or closed, a message, a snapshot's
//! fate, a message from another core, a tick) and then drains
//! `GameCore::poll_output` until it returns `None`, doing what each
//! [`Output`] says with the endpoint and the channels it owns. The game
//! never borrows the endpoint, the peers' senders or the core's counters.

use tos_protocol::endpoint::ConnectionHandle;
use tos_protocol::wire::Channel;
use tos_protocol::wire::control::{DenyReason, DisconnectReason};
use tos_shards::{GhostBatch, Handoff, RemoteEffect};

use crate::chat::ChatLine;
use crate::session::{AccountRef, PlayingCharacter};

/// What the game asks the runtime to do.
#[derive(Debug)]
pub enum Output {
    /// Send the `len` bytes `poll_output` wrote into the caller's buffer on
    /// `channel`. For a snapshot (`snapshot_tick` set) report the token
    /// `send` returned with `GameCore::handle_snapshot_sent`.
    Send {
        /// To whom.
        handle: ConnectionHandle,
        /// On which channel.
        channel: Channel,
        /// How many bytes of the buffer.
        len: usize,
        /// The tick of the snapshot this is, if it is one.
        snapshot_tick: Option<u32>,
    },
    /// Accept a pending connection whose ticket checked out (or that came
    /// without one and will log in).
    Accept {
        /// Which.
        handle: ConnectionHandle,
    },
    /// Refuse a pending connection.
    Refuse {
        /// Which.
        handle: ConnectionHandle,
        /// Why (sent to the client).
        reason: DenyReason,
    },
    /// Close an established connection.
    Close {
        /// Which.
        handle: ConnectionHandle,
        /// Why (sent to the client).
        reason: DisconnectReason,
    },
    /// Deliver `msg` to another core's game layer, moving the connection
    /// `connection` there with it when given. When the core's inbox is
    /// full, hand it back with `GameCore::handle_bounced`: nothing the
    /// message carries may be lost.
    ToCore {
        /// The core.
        core: u16,
        /// What.
        msg: PeerMessage,
        /// The player's connection, which moves with it.
        connection: Option<ConnectionHandle>,
    },
}

/// A player's session moving to another core with its connection.
#[derive(Debug, Clone)]
pub struct SessionTransfer {
    /// Its account.
    pub account: AccountRef,
    /// The character it plays.
    pub character: PlayingCharacter,
}

/// What one core's game layer sends another's.
#[derive(Debug)]
pub enum PeerMessage {
    /// An entity crossing into the receiver's quadrants, with its player's
    /// session when it is a player.
    Handoff {
        /// The entity.
        handoff: Box<Handoff>,
        /// Its player's session.
        session: Option<Box<SessionTransfer>>,
    },
    /// A player whose saved position lies in the receiver's quadrants.
    Enter {
        /// Its session.
        session: Box<SessionTransfer>,
    },
    /// A neighbour's ghosts of this tick.
    Ghosts(GhostBatch),
    /// An action's effect on an entity the receiver owns.
    Effect(RemoteEffect),
    /// A chat line for the receiver's players (say, shout, whisper).
    Chat(Box<ChatLine>),
}

impl PeerMessage {
    /// Whether losing this message would lose a player or an entity (those
    /// are retried; ghosts and effects are refreshed every tick, and a chat
    /// line lost to a full inbox is dropped and counted).
    pub fn must_arrive(&self) -> bool {
        matches!(self, Self::Handoff { .. } | Self::Enter { .. })
    }
}
