//! Signed auth tickets: one byte format for the server's own session tickets
//! and for tickets minted by a studio's login backend (Ed25519).
//!
//! ```text
//! offset size field
//!      0    4 magic "TOST"
//!      4    1 version = 1
//!      5    1 kind: 1 = session (signed by this server), 2 = external (studio backend)
//!      6    8 key_id: first 8 bytes of SHA-256(signer's 32-byte public key)
//!     14    8 account_id, u64 little-endian (session: our account id; external: 0)
//!     22    8 issued_at, u64 LE, unix seconds
//!     30    8 expires_at, u64 LE, unix seconds (greater than issued_at)
//!     38    8 nonce (random; makes every ticket unique)
//!     46    1 name_len, 1..=32
//!     47    n account name, UTF-8
//!   47+n   64 Ed25519 signature over "tos ticket v1" ++ bytes[0 .. 47+n]
//! ```
//!
//! The signature covers the domain string and every byte before it, so no
//! field (kind and key id included) can be changed, and the total length
//! must be exactly `47 + name_len + 64`: trailing bytes are refused rather
//! than ignored, so a ticket has exactly one valid encoding besides its
//! signature, and signatures are checked with `verify_strict` (no malleable
//! signatures, no small-order keys).
//!
//! Each trusted key is bound to one kind: our session key(s) verify only
//! kind 1 and the studio's keys only kind 2 ([`TicketError::WrongKind`]
//! otherwise). Without this binding a studio backend key could mint a
//! session ticket naming any local `account_id`.
//!
//! **Replay.** A ticket is a bearer token until it expires: whoever holds
//! the bytes can log in with them. The protocol only ever carries a ticket
//! sealed under the handshake's `es` key, so it is never seen in plaintext
//! on the wire; keep lifetimes short for external tickets (minutes), and
//! for session tickets as configured (`accounts.session_ticket_lifetime_secs`).
//! A nonce cache that refuses a second use is not part of this crate.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// The four bytes every ticket starts with.
pub const MAGIC: [u8; 4] = *b"TOST";
/// The only format version this crate reads and writes.
pub const VERSION: u8 = 1;
/// What the signature covers before the ticket's own bytes.
pub const DOMAIN: &[u8] = b"tos ticket v1";
/// Longest account name a ticket carries, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Bytes before the name: magic to name_len.
pub const HEADER_LEN: usize = 47;
/// Length of the Ed25519 signature at the end.
pub const SIGNATURE_LEN: usize = 64;
/// The longest valid ticket (143 bytes).
pub const MAX_TICKET_LEN: usize = HEADER_LEN + MAX_NAME_LEN + SIGNATURE_LEN;
/// Clock difference tolerated between the signer and us, in seconds, on
/// both `issued_at` and `expires_at`.
pub const CLOCK_SKEW_SECS: u64 = 60;

const _: () = assert!(MAX_TICKET_LEN <= 256);

/// Who issued a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TicketKind {
    /// Issued by this server (reconnects, zone transfers).
    Session,
    /// Minted by a studio login backend; the name maps to a local account.
    External,
}

impl TicketKind {
    /// The kind byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Session => 1,
            Self::External => 2,
        }
    }

    /// The kind of a wire byte; `None` for anything but 1 and 2.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Session),
            2 => Some(Self::External),
            _ => None,
        }
    }
}

/// What a verified ticket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketClaims {
    /// Who issued it.
    pub kind: TicketKind,
    /// Our account id (session tickets); 0 for external tickets.
    pub account_id: u64,
    /// The account name (external tickets: the backend's name, to be mapped
    /// to a local account by name).
    pub account_name: String,
    /// Unix seconds when it was issued.
    pub issued_at: u64,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
}

/// Why a ticket was refused, or could not be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// Not a ticket of this format: wrong length, magic, version or kind,
    /// empty or over-long or non-UTF-8 name, `expires_at <= issued_at`, or
    /// a non-zero account id on an external ticket. Also returned by
    /// [`TicketSigner::issue_session`] for a name that cannot be encoded.
    Malformed,
    /// No trusted key has the ticket's key id.
    UnknownKey,
    /// The signature does not verify under the key the key id names.
    BadSignature,
    /// `now` is past `expires_at` (plus the allowed clock skew).
    Expired,
    /// `issued_at` is in the future (beyond the allowed clock skew).
    NotYetValid,
    /// The key is trusted, but not for this kind of ticket.
    WrongKind,
}

impl fmt::Display for TicketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed ticket",
            Self::UnknownKey => "ticket signed by an unknown key",
            Self::BadSignature => "ticket signature does not verify",
            Self::Expired => "ticket expired",
            Self::NotYetValid => "ticket not yet valid",
            Self::WrongKind => "ticket kind not accepted from this key",
        })
    }
}

impl std::error::Error for TicketError {}

/// The key id of a public key: the first 8 bytes of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> [u8; 8] {
    let digest = Sha256::digest(key.as_bytes());
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// A bounds-checked view of a ticket's fields; the signature is NOT checked
/// (use [`TicketVerifier::verify`]). Parsing never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket<'a> {
    bytes: &'a [u8],
    kind: TicketKind,
    name: &'a str,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0; 8];
    // Callers only read offsets inside the fixed header, whose length
    // `Ticket::parse` checked first; the fallback keeps this panic-free.
    if let Some(slice) = bytes.get(at..at + 8) {
        raw.copy_from_slice(slice);
    }
    u64::from_le_bytes(raw)
}

impl<'a> Ticket<'a> {
    /// Checks the layout of `bytes` (not the signature or the times).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, TicketError> {
        if bytes.len() < HEADER_LEN + 1 + SIGNATURE_LEN || bytes.len() > MAX_TICKET_LEN {
            return Err(TicketError::Malformed);
        }
        if bytes[0..4] != MAGIC || bytes[4] != VERSION {
            return Err(TicketError::Malformed);
        }
        let kind = TicketKind::from_byte(bytes[5]).ok_or(TicketError::Malformed)?;
        let name_len = usize::from(bytes[46]);
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(TicketError::Malformed);
        }
        // Exact length: trailing bytes would be unsigned and so malleable.
        if bytes.len() != HEADER_LEN + name_len + SIGNATURE_LEN {
            return Err(TicketError::Malformed);
        }
        let name = std::str::from_utf8(&bytes[HEADER_LEN..HEADER_LEN + name_len])
            .map_err(|_| TicketError::Malformed)?;
        let ticket = Self { bytes, kind, name };
        if ticket.expires_at() <= ticket.issued_at() {
            return Err(TicketError::Malformed);
        }
        if kind == TicketKind::External && ticket.account_id() != 0 {
            return Err(TicketError::Malformed);
        }
        Ok(ticket)
    }

    /// Who issued it.
    pub fn kind(&self) -> TicketKind {
        self.kind
    }
    /// The signer's key id.
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0; 8];
        id.copy_from_slice(&self.bytes[6..14]);
        id
    }
    /// The account id field.
    pub fn account_id(&self) -> u64 {
        u64_at(self.bytes, 14)
    }
    /// Unix seconds when issued.
    pub fn issued_at(&self) -> u64 {
        u64_at(self.bytes, 22)
    }
    /// Unix seconds when it expires.
    pub fn expires_at(&self) -> u64 {
        u64_at(self.bytes, 30)
    }
    /// The random nonce.
    pub fn nonce(&self) -> [u8; 8] {
        let mut nonce = [0; 8];
        nonce.copy_from_slice(&self.bytes[38..46]);
        nonce
    }
    /// The account name.
    pub fn account_name(&self) -> &'a str {
        self.name
    }
    /// The bytes the signature covers (after the domain string).
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }
    /// The signature.
    pub fn signature(&self) -> Signature {
        let mut raw = [0; SIGNATURE_LEN];
        raw.copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE_LEN..]);
        Signature::from_bytes(&raw)
    }
    /// The claims, unverified.
    pub fn claims(&self) -> TicketClaims {
        TicketClaims {
            kind: self.kind,
            account_id: self.account_id(),
            account_name: self.name.to_owned(),
            issued_at: self.issued_at(),
            expires_at: self.expires_at(),
        }
    }
}

/// The message Ed25519 signs: the domain string, then the ticket's bytes.
fn signing_message(signed: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + signed.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(signed);
    message
}

/// Encodes and signs a ticket of any kind with `nonce` (tests and tools
/// that need exact bytes; [`TicketSigner::issue_session`] draws a random
/// nonce).
pub fn encode_ticket(
    key: &SigningKey,
    claims: &TicketClaims,
    nonce: [u8; 8],
) -> Result<Vec<u8>, TicketError> {
    let name = claims.account_name.as_bytes();
    let name_ok = !name.is_empty() && name.len() <= MAX_NAME_LEN;
    let id_ok = claims.kind == TicketKind::Session || claims.account_id == 0;
    if !name_ok || !id_ok || claims.expires_at <= claims.issued_at {
        return Err(TicketError::Malformed);
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + name.len() + SIGNATURE_LEN);
    bytes.extend_from_slice(&MAGIC);
    bytes.push(VERSION);
    bytes.push(claims.kind.to_byte());
    bytes.extend_from_slice(&key_id(&key.verifying_key()));
    bytes.extend_from_slice(&claims.account_id.to_le_bytes());
    bytes.extend_from_slice(&claims.issued_at.to_le_bytes());
    bytes.extend_from_slice(&claims.expires_at.to_le_bytes());
    bytes.extend_from_slice(&nonce);
    // name.len() <= 32 was checked above, so it fits a byte.
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    let signature = key.sign(&signing_message(&bytes));
    bytes.extend_from_slice(&signature.to_bytes());
    Ok(bytes)
}

/// Signs this server's session tickets.
pub struct TicketSigner {
    key: SigningKey,
}

impl fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret key.
        f.debug_struct("TicketSigner")
            .field("key_id", &key_id(&self.key.verifying_key()))
            .finish()
    }
}

impl TicketSigner {
    /// A signer with `key`.
    pub fn new(key: SigningKey) -> Self {
        Self { key }
    }

    /// The public half, to trust in a [`TicketVerifier`] (of this process
    /// and of every process that accepts its session tickets).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// A session ticket for `account_id`/`name`, valid from `now` (unix
    /// seconds) for `lifetime_secs`. [`TicketError::Malformed`] if the name
    /// is empty or longer than [`MAX_NAME_LEN`] bytes, or the lifetime is 0.
    pub fn issue_session(
        &self,
        account_id: u64,
        name: &str,
        now: u64,
        lifetime_secs: u64,
    ) -> Result<Vec<u8>, TicketError> {
        let mut nonce = [0; 8];
        OsRng.fill_bytes(&mut nonce);
        let claims = TicketClaims {
            kind: TicketKind::Session,
            account_id,
            account_name: name.to_owned(),
            issued_at: now,
            expires_at: now.saturating_add(lifetime_secs),
        };
        encode_ticket(&self.key, &claims, nonce)
    }
}

/// Checks tickets against the keys this server trusts, each for one kind.
#[derive(Debug, Clone, Default)]
pub struct TicketVerifier {
    keys: HashMap<[u8; 8], (VerifyingKey, TicketKind)>,
    skew_secs: u64,
}

impl TicketVerifier {
    /// A verifier trusting no key yet, with [`CLOCK_SKEW_SECS`] of skew.
    pub fn new() -> Self {
        Self {
            keys: HashMap::new(),
            skew_secs: CLOCK_SKEW_SECS,
        }
    }

    /// Trusts `key` for session tickets (ours; add the previous key too
    /// while rotating).
    pub fn trust_session_key(&mut self, key: VerifyingKey) -> &mut Self {
        self.keys.insert(key_id(&key), (key, TicketKind::Session));
        self
    }

    /// Trusts `key` for external tickets (a studio login backend).
    pub fn trust_external_key(&mut self, key: VerifyingKey) -> &mut Self {
        self.keys.insert(key_id(&key), (key, TicketKind::External));
        self
    }

    /// Sets the tolerated clock skew in seconds.
    pub fn set_clock_skew(&mut self, secs: u64) -> &mut Self {
        self.skew_secs = secs;
        self
    }

    /// Number of trusted keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Parses and verifies `bytes` at `now` (unix seconds). Checks, in
    /// order: layout (Malformed), key id (UnknownKey), kind bound to that
    /// key (WrongKind), signature (BadSignature), then times (NotYetValid,
    /// Expired), so a time error is only ever reported for a genuine ticket.
    pub fn verify(&self, bytes: &[u8], now: u64) -> Result<TicketClaims, TicketError> {
        let ticket = Ticket::parse(bytes)?;
        let (key, kind) = self
            .keys
            .get(&ticket.key_id())
            .ok_or(TicketError::UnknownKey)?;
        if *kind != ticket.kind() {
            return Err(TicketError::WrongKind);
        }
        key.verify_strict(&signing_message(ticket.signed_bytes()), &ticket.signature())
            .map_err(|_| TicketError::BadSignature)?;
        if ticket.issued_at() > now.saturating_add(self.skew_secs) {
            return Err(TicketError::NotYetValid);
        }
        if now >= ticket.expires_at().saturating_add(self.skew_secs) {
            return Err(TicketError::Expired);
        }
        Ok(ticket.claims())
    }

    /// [`TicketVerifier::verify`], refusing any kind but `expected` with
    /// [`TicketError::WrongKind`] (a zone transfer accepts session tickets only).
    pub fn verify_kind(
        &self,
        bytes: &[u8],
        now: u64,
        expected: TicketKind,
    ) -> Result<TicketClaims, TicketError> {
        let claims = self.verify(bytes, now)?;
        if claims.kind == expected {
            Ok(claims)
        } else {
            Err(TicketError::WrongKind)
        }
    }
}

/// Why a key could not be loaded or parsed.
#[derive(Debug)]
pub enum KeyError {
    /// Reading or creating the key file failed.
    Io(std::io::Error),
    /// The key file is not exactly 32 bytes.
    BadKeyFile {
        /// Its length.
        len: usize,
    },
    /// A public key string is not 64 hex digits of a valid Ed25519 point;
    /// the index is its position in the list.
    BadPublicKey {
        /// Position in the list given.
        index: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(error) => write!(f, "ticket key file: {error}"),
            Self::BadKeyFile { len } => {
                write!(
                    f,
                    "ticket key file holds {len} bytes, expected a 32-byte seed"
                )
            }
            Self::BadPublicKey { index } => write!(
                f,
                "external ticket key [{index}] is not 64 hex digits of an Ed25519 public key"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// Loads the 32-byte Ed25519 seed at `path`, or creates it (random, mode
/// 0600, never overwriting a file that appeared meanwhile) on first use.
pub fn load_or_create_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadKeyFile { len: bytes.len() })?;
            return Ok(SigningKey::from_bytes(&seed));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(KeyError::Io(error)),
    }
    let mut seed = [0; 32];
    OsRng.fill_bytes(&mut seed);
    let mut options = std::fs::OpenOptions::new();
    // create_new: two processes racing to create the key must not end up
    // with different keys; the loser fails and can simply retry the load.
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(KeyError::Io)?;
    file.write_all(&seed).map_err(KeyError::Io)?;
    file.sync_all().map_err(KeyError::Io)?;
    let key = SigningKey::from_bytes(&seed);
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(key)
}

/// Parses one public key written as 64 hex digits.
pub fn parse_public_key_hex(text: &str) -> Option<VerifyingKey> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut raw = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        // to_digit(16) < 16, so the byte cannot overflow.
        raw[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    VerifyingKey::from_bytes(&raw).ok()
}

/// Parses a list of hex public keys (the `accounts.external_ticket_keys`
/// setting), naming the first bad one.
pub fn parse_public_keys_hex<S: AsRef<str>>(keys: &[S]) -> Result<Vec<VerifyingKey>, KeyError> {
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            parse_public_key_hex(key.as_ref()).ok_or(KeyError::BadPublicKey { index })
        })
        .collect()
}

/// Lower-case hex of `bytes` (for logging a public key).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
