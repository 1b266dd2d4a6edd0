//! The account and character flow of one client, from an established
//! connection to a character in the world:
//!
//! ```text
//! (ticket in Connect) ------------------------------+
//! Start --Register--> Registering --exists--> LoggingIn --ok--> Listing
//!            |                      ok -------------------------^   |
//!            +-- (login_first) --> LoggingIn                         |
//!   Listing --no character--> Creating --done--> Listing             |
//!   Listing --a character--> Entering --WorldEntered--> InGame  <----+
//!
//! With the player choosing ([`LoginFlow::with_selection`]):
//!   Listing --list--> Selecting --enter(id)--> Entering --WorldEntered--> InGame
//!                     Selecting --create(..)--> Creating --done--> Listing
//!   Creating / Entering --Refused--> Selecting (the same list)
//!
//! Zone transfer (PROTOCOL.md §6.6, ZoneTransfer): the character's ground
//! moved to another node; the session reconnects there with the transfer
//! ticket, and that node starts the connection in the world:
//!   InGame --transfer()--> Transferring --WorldEntered--> InGame
//!   Entering --transfer()--> Transferring (the character's ground is
//!                            another node's: sent there at login)
//!   Transferring --Refused--> Failed
//! ```
//!
//! Each state is its own type holding what it needs; a server message
//! consumes the state and yields the next. Every message the flow sends
//! travels on the reliable ordered channel (PROTOCOL.md, "Accounts and
//! characters").

use tos_protocol::wire::Writer;
use tos_protocol::wire::game::{
    CharacterList, ClientMessage, RefusalReason, ServerMessage, WorldParams, client_type,
};

/// What the flow logs in with and creates when the account has no
/// character.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// Account name.
    pub account: String,
    /// Password.
    pub password: String,
    /// Register first (and log in if the name exists), or log in only.
    pub register: bool,
    /// Name of the character created when the account has none.
    pub character_name: String,
    /// Its template.
    pub template: u16,
    /// Its appearance bytes.
    pub appearance: Vec<u8>,
    /// Whether the connection carried a session ticket (the server then
    /// starts the session logged in and the flow skips the password).
    pub ticketed: bool,
    /// Stop once logged in (a client that only needs its ticket, or a load
    /// test of logins alone); otherwise list, create if none, and enter.
    pub login_only: bool,
}

/// Where the character stands on entering.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entered {
    /// The player's entity.
    pub entity_id: u32,
    /// The character's id.
    pub character_id: u64,
    /// The server tick at entry.
    pub server_tick: u32,
    /// Where it stands.
    pub position: [f32; 3],
    /// Its yaw in degrees.
    pub yaw: f32,
    /// The world's geometry.
    pub world: WorldParams,
}

impl Entered {
    /// What a WorldEntered says; `None` for any other message.
    pub fn from_message(msg: &ServerMessage<'_>) -> Option<Self> {
        match *msg {
            ServerMessage::WorldEntered {
                entity_id,
                server_tick,
                character_id,
                position,
                yaw,
                world,
            } => Some(Self {
                entity_id,
                character_id,
                server_tick,
                position,
                yaw,
                world,
            }),
            _ => None,
        }
    }
}

/// One character of the account, as the server listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct CharacterInfo {
    /// Its id.
    pub character_id: u64,
    /// Its name.
    pub name: String,
    /// Its template.
    pub template: u16,
    /// Its level.
    pub level: u16,
    /// Its faction.
    pub faction: u8,
    /// When it was deleted, unix seconds (0: not deleted; a deleted one
    /// can be restored for a while, not entered).
    pub deleted_at: u64,
    /// Where it last was, world units.
    pub position: [f32; 3],
}

/// What the flow reports.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowEvent {
    /// Logged in; keep the ticket to reconnect without a password.
    Authenticated {
        /// The account id.
        account_id: u64,
        /// The session ticket (empty if the server issued none).
        ticket: Vec<u8>,
        /// Its expiry, unix seconds.
        expires_at: u64,
    },
    /// A character was created (the account had none).
    Created {
        /// Its id.
        character_id: u64,
    },
    /// The account's characters, for the player to choose from (only with
    /// [`LoginFlow::with_selection`]): answer with [`LoginFlow::enter`] or
    /// [`LoginFlow::create`].
    Characters(Vec<CharacterInfo>),
    /// A choice was refused (a name taken, a character in use); the flow
    /// is back at the list (only with [`LoginFlow::with_selection`]).
    Refused {
        /// The client message type refused.
        request: u8,
        /// Why.
        reason: RefusalReason,
    },
    /// In the world.
    Entered(Entered),
    /// The server refused something the flow cannot get past.
    Failed {
        /// The client message type refused.
        request: u8,
        /// Why.
        reason: RefusalReason,
    },
}

#[derive(Debug)]
struct Start;
#[derive(Debug)]
struct Registering;
#[derive(Debug)]
struct LoggingIn;
#[derive(Debug)]
struct Listing {
    created: bool,
}
#[derive(Debug)]
struct Selecting {
    characters: Vec<CharacterInfo>,
}
#[derive(Debug)]
struct Creating;
#[derive(Debug)]
struct Entering {
    character_id: u64,
}
#[derive(Debug)]
struct InGame;
/// Connected (or connecting) to another node with a transfer ticket: that
/// node sends WorldEntered on its own, and nothing is sent until then.
#[derive(Debug)]
struct Transferring;

#[derive(Debug)]
enum State {
    Start(Start),
    Registering(Registering),
    LoggingIn(LoggingIn),
    Listing(Listing),
    Selecting(Selecting),
    Creating(Creating),
    Entering(Entering),
    InGame(InGame),
    Transferring(Transferring),
    /// Logged in, and asked to go no further.
    Done,
    Failed,
}

/// One client's account and character flow.
#[derive(Debug)]
pub struct LoginFlow {
    spec: LoginSpec,
    /// The player chooses the character (otherwise: the first, or a new
    /// one if there is none).
    manual: bool,
    /// The list while the player chooses, kept for a refused choice.
    last_list: Vec<CharacterInfo>,
    state: State,
    /// Encoded messages waiting to be sent.
    outgoing: Vec<Vec<u8>>,
}

impl LoginFlow {
    /// A flow for `spec`; call [`LoginFlow::on_connected`] once the
    /// connection is established.
    pub fn new(spec: LoginSpec) -> Self {
        Self {
            spec,
            manual: false,
            last_list: Vec::new(),
            state: State::Start(Start),
            outgoing: Vec::new(),
        }
    }

    /// A flow that stops at the character list
    /// ([`FlowEvent::Characters`]) for the player to choose: then
    /// [`LoginFlow::enter`] or [`LoginFlow::create`]. The spec's character
    /// name, template and appearance are unused.
    pub fn with_selection(spec: LoginSpec) -> Self {
        Self {
            manual: true,
            ..Self::new(spec)
        }
    }

    /// Whether the flow waits for the player to choose a character.
    pub fn selecting(&self) -> bool {
        matches!(self.state, State::Selecting(_))
    }

    /// The characters to choose from while selecting (empty otherwise).
    pub fn characters(&self) -> &[CharacterInfo] {
        match &self.state {
            State::Selecting(s) => &s.characters,
            _ => &[],
        }
    }

    /// Enters the world with `character_id` (while selecting); false if the
    /// flow is not at the character list.
    pub fn enter(&mut self, character_id: u64) -> bool {
        let State::Selecting(_) = self.state else {
            return false;
        };
        let name = String::new();
        self.queue(ClientMessage::EnterToWorld {
            character_id,
            name: &name,
        });
        self.state = State::Entering(Entering { character_id });
        true
    }

    /// Creates a character (while selecting); the list comes again once it
    /// exists. False if the flow is not at the character list.
    pub fn create(&mut self, name: &str, template: u16, appearance: &[u8]) -> bool {
        let State::Selecting(_) = self.state else {
            return false;
        };
        self.queue(ClientMessage::CharacterCreate {
            name,
            template,
            appearance,
        });
        self.state = State::Creating(Creating);
        true
    }

    /// Whether the character is in the world.
    pub fn in_game(&self) -> bool {
        matches!(self.state, State::InGame(_))
    }

    /// Whether the character is between nodes: a zone transfer started
    /// ([`LoginFlow::transfer`]) and the new node has not yet said
    /// WorldEntered.
    pub fn transferring(&self) -> bool {
        matches!(self.state, State::Transferring(_))
    }

    /// Whether the character is being entered (EnterToWorld sent, no
    /// answer yet).
    pub fn entering(&self) -> bool {
        matches!(self.state, State::Entering(_))
    }

    /// The character leaves for another node (a ZoneTransfer arrived while
    /// in the world, or while entering: its saved position is another
    /// node's ground): the next WorldEntered, from the new node, puts it
    /// in the world. False, and nothing changes, in any other state.
    pub fn transfer(&mut self) -> bool {
        if !self.in_game() && !self.entering() {
            return false;
        }
        self.state = State::Transferring(Transferring);
        true
    }

    /// Whether the flow gave up.
    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    fn queue(&mut self, msg: ClientMessage<'_>) {
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        if msg.encode(&mut w).is_ok() {
            let n = w.position();
            self.outgoing.push(buf[..n].to_vec());
        }
    }

    /// The next message to send (reliable ordered), written into `buf`;
    /// returns its length.
    pub fn poll_send(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.outgoing.is_empty() {
            return None;
        }
        let msg = self.outgoing.remove(0);
        let n = msg.len().min(buf.len());
        buf[..n].copy_from_slice(&msg[..n]);
        Some(n)
    }

    /// The connection is established: start.
    pub fn on_connected(&mut self) {
        let State::Start(_) = self.state else {
            return;
        };
        if self.spec.ticketed {
            // The server starts a ticketed session logged in and sends
            // Authenticated on its own.
            self.state = State::LoggingIn(LoggingIn);
            return;
        }
        let (account, password) = (self.spec.account.clone(), self.spec.password.clone());
        if self.spec.register {
            self.queue(ClientMessage::Register {
                account: &account,
                password: &password,
            });
            self.state = State::Registering(Registering);
        } else {
            self.queue(ClientMessage::Login {
                account: &account,
                password: &password,
            });
            self.state = State::LoggingIn(LoggingIn);
        }
    }

    fn fail(&mut self, request: u8, reason: RefusalReason) -> Option<FlowEvent> {
        self.state = State::Failed;
        Some(FlowEvent::Failed { request, reason })
    }

    fn list(&mut self, created: bool) {
        self.queue(ClientMessage::CharacterList);
        self.state = State::Listing(Listing { created });
    }

    /// A message from the server; returns what the caller should know.
    /// Messages the flow does not care about (snapshots, corrections) are
    /// ignored.
    pub fn handle_message(&mut self, msg: &ServerMessage<'_>) -> Option<FlowEvent> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        match (state, msg) {
            (
                State::Registering(_) | State::LoggingIn(_),
                ServerMessage::Authenticated {
                    account_id,
                    ticket,
                    expires_at,
                },
            ) => {
                if self.spec.login_only {
                    self.state = State::Done;
                } else {
                    self.list(false);
                }
                Some(FlowEvent::Authenticated {
                    account_id: *account_id,
                    ticket: ticket.to_vec(),
                    expires_at: *expires_at,
                })
            }
            (
                State::Registering(_),
                ServerMessage::Refused {
                    reason: RefusalReason::AccountExists,
                    ..
                },
            ) => {
                let (account, password) = (self.spec.account.clone(), self.spec.password.clone());
                self.queue(ClientMessage::Login {
                    account: &account,
                    password: &password,
                });
                self.state = State::LoggingIn(LoggingIn);
                None
            }
            (State::Listing(l), ServerMessage::CharacterList(list)) => self.on_list(l, list),
            (State::Creating(_), ServerMessage::CharacterDone { character_id, .. }) => {
                self.list(true);
                Some(FlowEvent::Created {
                    character_id: *character_id,
                })
            }
            (
                state @ (State::Entering(_) | State::Transferring(_)),
                ServerMessage::WorldEntered { .. },
            ) => {
                if let State::Entering(e) = state {
                    let _ = e.character_id;
                }
                self.state = State::InGame(InGame);
                Entered::from_message(msg).map(FlowEvent::Entered)
            }
            (
                State::Creating(_) | State::Entering(_),
                ServerMessage::Refused { request, reason },
            ) if self.manual => {
                // The player chose something the server refused: back to
                // the list they chose from.
                self.state = State::Selecting(Selecting {
                    characters: self.last_list.clone(),
                });
                Some(FlowEvent::Refused {
                    request: *request,
                    reason: *reason,
                })
            }
            (
                State::Registering(_)
                | State::LoggingIn(_)
                | State::Listing(_)
                | State::Creating(_)
                | State::Entering(_)
                | State::Transferring(_),
                ServerMessage::Refused { request, reason },
            ) => self.fail(*request, *reason),
            (state, _) => {
                self.state = state;
                None
            }
        }
    }

    fn on_list(&mut self, listing: Listing, list: &CharacterList<'_>) -> Option<FlowEvent> {
        if self.manual {
            let mut characters = Vec::new();
            for entry in list.entries() {
                match entry {
                    Ok(c) => characters.push(CharacterInfo {
                        character_id: c.character_id,
                        name: c.name.to_string(),
                        template: c.template,
                        level: c.level,
                        faction: c.faction,
                        deleted_at: c.deleted_at,
                        position: c.position,
                    }),
                    Err(_) => {
                        return self.fail(client_type::CHARACTER_LIST, RefusalReason::Malformed);
                    }
                }
            }
            self.last_list.clone_from(&characters);
            self.state = State::Selecting(Selecting {
                characters: characters.clone(),
            });
            return Some(FlowEvent::Characters(characters));
        }
        // The first live character (deleted ones wait for a restore).
        let mut first = None;
        for entry in list.entries() {
            match entry {
                Ok(c) if c.deleted_at == 0 => {
                    first = Some(c.character_id);
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    return self.fail(client_type::CHARACTER_LIST, RefusalReason::Malformed);
                }
            }
        }
        match first {
            Some(character_id) => {
                let name = String::new();
                self.queue(ClientMessage::EnterToWorld {
                    character_id,
                    name: &name,
                });
                self.state = State::Entering(Entering { character_id });
                None
            }
            None if listing.created => {
                // Created one, and still none: give up rather than loop.
                self.fail(client_type::CHARACTER_CREATE, RefusalReason::Internal)
            }
            None => {
                let (name, appearance) = (
                    self.spec.character_name.clone(),
                    self.spec.appearance.clone(),
                );
                self.queue(ClientMessage::CharacterCreate {
                    name: &name,
                    template: self.spec.template,
                    appearance: &appearance,
                });
                self.state = State::Creating(Creating);
                None
            }
        }
    }
}
