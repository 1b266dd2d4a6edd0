//! The session states, one type each, and their transitions.

use std::net::SocketAddr;

use tos_shards::ClientId;
use tos_store::{CharacterId, CharacterState};

use crate::chat::ChatLimiter;
use crate::inventory::Inventory;

/// A logged-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// Its id in the store.
    pub id: u64,
    /// Its name as registered.
    pub name: String,
}

/// A character in the world and what the game layer keeps of it: its
/// identity, its inventory and equipment, its chat rate, and the state last
/// handed to the store (to save only changes). All of it moves with the
/// session when the player crosses into another core.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayingCharacter {
    /// Its id in the store.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its template.
    pub template: u16,
    /// Its faction id.
    pub faction: u8,
    /// Maximum HP and MP at its level.
    pub hp_max: f32,
    /// Maximum MP.
    pub mp_max: f32,
    /// The state last sent to the store.
    pub saved: CharacterState,
    /// The inventory revision `saved.items` holds.
    pub saved_items: u32,
    /// Inventory and equipment (boxed: the session enum's InGame variant
    /// stays small).
    pub inventory: Box<Inventory>,
    /// The chat rate limit.
    pub chat: ChatLimiter,
}

impl PlayingCharacter {
    /// Its store id.
    pub fn store_id(&self) -> CharacterId {
        CharacterId(self.id)
    }
}

/// A character request in flight on the selection screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Listing.
    List,
    /// Creating.
    Create,
    /// Deleting.
    Delete,
    /// Restoring.
    Restore,
}

/// Connected, not logged in.
#[derive(Debug)]
pub struct Connected {
    /// The client's address.
    pub address: SocketAddr,
}

impl Connected {
    /// A connection established without a ticket.
    pub fn new(address: SocketAddr) -> Self {
        Self { address }
    }

    /// A Register or Login was sent off to be checked.
    pub fn authenticating(self, account_name: String, registering: bool) -> Authenticating {
        Authenticating {
            address: self.address,
            account_name,
            registering,
        }
    }
}

/// Waiting for the store and the password hash.
#[derive(Debug)]
pub struct Authenticating {
    /// The client's address.
    pub address: SocketAddr,
    /// The account name given.
    pub account_name: String,
    /// Register (true) or Login.
    pub registering: bool,
}

impl Authenticating {
    /// Refused: back to square one.
    pub fn failed(self) -> Connected {
        Connected {
            address: self.address,
        }
    }

    /// Logged in.
    pub fn succeeded(self, account: AccountRef) -> Authenticated {
        Authenticated::new(self.address, account)
    }
}

/// Logged in: the character selection screen.
#[derive(Debug)]
pub struct Authenticated {
    /// The client's address.
    pub address: SocketAddr,
    /// The account.
    pub account: AccountRef,
    /// The character request in flight, if any.
    pub busy: Option<Selection>,
}

impl Authenticated {
    /// Logged in (by password or by ticket).
    pub fn new(address: SocketAddr, account: AccountRef) -> Self {
        Self {
            address,
            account,
            busy: None,
        }
    }

    /// Entering the world with a character whose record is being loaded.
    pub fn enter(self, character_id: u64) -> Entering {
        Entering {
            address: self.address,
            account: self.account,
            character_id,
        }
    }
}

/// Entering: the character is loading, or moving to the core that owns its
/// position.
#[derive(Debug)]
pub struct Entering {
    /// The client's address.
    pub address: SocketAddr,
    /// The account.
    pub account: AccountRef,
    /// The character asked for.
    pub character_id: u64,
}

impl Entering {
    /// Refused (deleted, in use, not found): back to selection.
    pub fn failed(self) -> Authenticated {
        Authenticated::new(self.address, self.account)
    }

    /// In the world as `client`.
    pub fn entered(self, character: PlayingCharacter, client: ClientId) -> InGame {
        InGame {
            address: self.address,
            account: self.account,
            character,
            client,
        }
    }
}

/// Playing.
#[derive(Debug)]
pub struct InGame {
    /// The client's address.
    pub address: SocketAddr,
    /// The account.
    pub account: AccountRef,
    /// The character.
    pub character: PlayingCharacter,
    /// Its client id in the shard.
    pub client: ClientId,
}

impl InGame {
    /// Left the world (LeaveWorld): back to selection.
    pub fn leave(self) -> Authenticated {
        Authenticated::new(self.address, self.account)
    }
}
