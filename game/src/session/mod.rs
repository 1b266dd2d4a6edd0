//! A client's session as a state machine whose states are types (in the
//! manner of rustls): each state holds exactly what is known in it, and a
//! transition consumes the old state, so an `InGame` cannot exist without
//! an account and a character, and nothing of a closed session survives.
//!
//! ```text
//! Connected --Register/Login--> Authenticating --ok--> Authenticated
//!     ^                              |  refused                |  (character selection:
//!     +------------------------------+                         |   list, create, delete,
//!                                                              |   restore)
//!  (a valid ticket in Connect starts here) ------------------> +
//!                                                   EnterToWorld
//!                                                              v
//!             Authenticated <--LeaveWorld-- InGame <--loaded-- Entering
//!                                                 (refused -> Authenticated)
//! any state --disconnect--> Closing
//! ```
//!
//! [`Session::admits`] is the one table of which client message each state
//! accepts; everything else is refused with `WrongState`, counted, and not
//! acted on.

mod states;

pub use states::{
    AccountRef, Authenticated, Authenticating, Connected, Entering, InGame, PlayingCharacter,
    Selection,
};

use tos_protocol::wire::game::{ClientMessage, RefusalReason, client_type};

/// A client's session.
#[derive(Debug)]
pub enum Session {
    /// Connected, not logged in.
    Connected(Connected),
    /// A Register or Login is being checked (store, password hash).
    Authenticating(Authenticating),
    /// Logged in: the character selection screen.
    Authenticated(Authenticated),
    /// Entering the world with a character being loaded.
    Entering(Entering),
    /// Playing.
    InGame(InGame),
    /// Gone or going; nothing is acted on.
    Closing,
}

impl Session {
    /// The state's name, for logs and refusals.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connected(_) => "connected",
            Self::Authenticating(_) => "authenticating",
            Self::Authenticated(_) => "authenticated",
            Self::Entering(_) => "entering",
            Self::InGame(_) => "in-game",
            Self::Closing => "closing",
        }
    }

    /// Whether this state accepts `msg`; `Err` carries the refusal.
    ///
    /// Heartbeat and rekey aliases are transport business and accepted in
    /// every state (they need no answer).
    pub fn admits(&self, msg: &ClientMessage<'_>) -> Result<(), RefusalReason> {
        use ClientMessage as M;
        let ok = match (self, msg) {
            (_, M::Pong(_) | M::RekeyResponse(_)) => true,
            (Self::Connected(_), M::Register { .. } | M::Login { .. }) => true,
            (
                Self::Authenticated(a),
                M::CharacterList
                | M::CharacterCreate { .. }
                | M::CharacterDelete { .. }
                | M::CharacterRestore { .. }
                | M::EnterToWorld { .. },
            ) => {
                // One character request at a time: its reply must come
                // back before the next is taken (bounded work per client).
                if a.busy.is_some() {
                    return Err(RefusalReason::WrongState);
                }
                true
            }
            (
                Self::InGame(_),
                M::SyncEntity(_)
                | M::SyncEntityQuantized(_)
                | M::Action { .. }
                | M::LeaveWorld
                | M::PickUp { .. }
                | M::UseItem { .. }
                | M::Equip { .. }
                | M::Unequip { .. }
                | M::Chat { .. }
                | M::DropItem { .. }
                | M::Inspect { .. },
            ) => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(RefusalReason::WrongState)
        }
    }
}

/// The type byte of a client message (what a `Refused` names).
pub fn request_type(msg: &ClientMessage<'_>) -> u8 {
    use ClientMessage as M;
    match msg {
        M::SyncEntity(_) => client_type::SYNC_ENTITY,
        M::SyncEntityQuantized(_) => client_type::SYNC_ENTITY_QUANTIZED,
        M::Pong(_) => client_type::PONG,
        M::EnterToWorld { .. } => client_type::ENTER_TO_WORLD,
        M::RekeyResponse(_) => client_type::REKEY_RESPONSE,
        M::Action { .. } => client_type::ACTION,
        M::Register { .. } => client_type::REGISTER,
        M::Login { .. } => client_type::LOGIN,
        M::CharacterList => client_type::CHARACTER_LIST,
        M::CharacterCreate { .. } => client_type::CHARACTER_CREATE,
        M::CharacterDelete { .. } => client_type::CHARACTER_DELETE,
        M::CharacterRestore { .. } => client_type::CHARACTER_RESTORE,
        M::LeaveWorld => client_type::LEAVE_WORLD,
        M::PickUp { .. } => client_type::PICK_UP,
        M::UseItem { .. } => client_type::USE_ITEM,
        M::Equip { .. } => client_type::EQUIP,
        M::Unequip { .. } => client_type::UNEQUIP,
        M::Chat { .. } => client_type::CHAT,
        M::DropItem { .. } => client_type::DROP_ITEM,
        M::Inspect { .. } => client_type::INSPECT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tos_protocol::wire::control::Pong;
    use tos_protocol::wire::game::{MovementClaim, QuantizedClaim};

    fn every_message() -> Vec<ClientMessage<'static>> {
        vec![
            ClientMessage::SyncEntity(MovementClaim::default()),
            ClientMessage::SyncEntityQuantized(QuantizedClaim::default()),
            ClientMessage::Pong(Pong { id: 1 }),
            ClientMessage::EnterToWorld {
                character_id: 1,
                name: "",
            },
            ClientMessage::Action {
                input_seq: 1,
                action_id: 1,
                target: 0,
            },
            ClientMessage::Register {
                account: "a",
                password: "b",
            },
            ClientMessage::Login {
                account: "a",
                password: "b",
            },
            ClientMessage::CharacterList,
            ClientMessage::CharacterCreate {
                name: "x",
                template: 1,
                appearance: &[],
            },
            ClientMessage::CharacterDelete { character_id: 1 },
            ClientMessage::CharacterRestore { character_id: 1 },
            ClientMessage::LeaveWorld,
            ClientMessage::PickUp {
                input_seq: 1,
                item: 2,
            },
            ClientMessage::UseItem { slot: 0 },
            ClientMessage::Equip {
                slot: 0,
                equip_slot: 0,
            },
            ClientMessage::Unequip { equip_slot: 0 },
            ClientMessage::Chat {
                channel: tos_protocol::wire::game::ChatChannel::Say,
                target: "",
                text: "hi",
            },
            ClientMessage::DropItem { slot: 0, count: 1 },
        ]
    }

    fn account() -> AccountRef {
        AccountRef {
            id: 1,
            name: "a".into(),
        }
    }

    fn addr() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 1))
    }

    fn admitted(s: &Session) -> Vec<u8> {
        every_message()
            .iter()
            .filter(|m| s.admits(m).is_ok())
            .map(request_type)
            .collect()
    }

    #[test]
    fn each_state_admits_exactly_its_messages() {
        use tos_protocol::wire::game::client_type as t;
        let connected = Session::Connected(Connected::new(addr()));
        assert_eq!(admitted(&connected), [t::PONG, t::REGISTER, t::LOGIN]);
        let authenticating =
            Session::Authenticating(Connected::new(addr()).authenticating("a".into(), false));
        assert_eq!(admitted(&authenticating), [t::PONG]);
        let mut selecting = Authenticated::new(addr(), account());
        assert_eq!(
            admitted(&Session::Authenticated(Authenticated::new(
                addr(),
                account()
            ))),
            [
                t::PONG,
                t::ENTER_TO_WORLD,
                t::CHARACTER_LIST,
                t::CHARACTER_CREATE,
                t::CHARACTER_DELETE,
                t::CHARACTER_RESTORE
            ]
        );
        selecting.busy = Some(Selection::List);
        assert_eq!(
            admitted(&Session::Authenticated(selecting)),
            [t::PONG],
            "one request at a time"
        );
        let entering = Session::Entering(Authenticated::new(addr(), account()).enter(1));
        assert_eq!(admitted(&entering), [t::PONG]);
        assert_eq!(admitted(&Session::Closing), [t::PONG]);
        for m in every_message() {
            if let Err(reason) = connected.admits(&m) {
                assert_eq!(reason, RefusalReason::WrongState);
            }
        }
    }
}
