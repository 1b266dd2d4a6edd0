//! # tos-auth: identity for the game layer
//!
//! Passwords, tickets and login limits, with no I/O besides the worker
//! threads of [`AuthPool`] (and the key file of
//! [`load_or_create_signing_key`]); functions that depend on time take
//! `now` from the caller.
//!
//! Map of the crate:
//!
//! - module `password`: Argon2id hashing to PHC strings
//!   ([`hash_password`], [`verify_password`], [`PasswordParams`]) and the
//!   [`DummyHash`] that makes unknown accounts cost as much as wrong
//!   passwords.
//! - module `ticket`: the signed ticket format shared by session tickets
//!   (signed by this server) and external tickets (a studio login backend),
//!   see `docs/ACCOUNTS.md`: [`Ticket`] (checked view), [`TicketClaims`],
//!   [`TicketSigner`], [`TicketVerifier`], [`TicketError`], key loading.
//! - module `pool`: [`AuthPool`], worker threads fed by a bounded queue of
//!   [`AuthJob`]s, answering [`AuthReply`]s.
//! - module `limit`: [`RateLimiter`], keyed token buckets with a hard key
//!   cap.

mod limit;
mod password;
mod pool;
pub mod ticket;

pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use limit::{RateLimiter, RetryAfter};
pub use password::{
    AuthError, DummyHash, PasswordParams, hash_password, needs_rehash, verify_password,
};
pub use pool::{
    AuthJob, AuthJobKind, AuthPool, AuthReply, AuthResult, AuthStats, AuthStatsSnapshot,
};
pub use ticket::{
    KeyError, MAX_TICKET_LEN, Ticket, TicketClaims, TicketError, TicketKind, TicketSigner,
    TicketVerifier, encode_ticket, key_id, load_or_create_signing_key, parse_public_key_hex,
    parse_public_keys_hex,
};
