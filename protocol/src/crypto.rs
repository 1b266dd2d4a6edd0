//! Packet protection: ChaCha20-Poly1305 (from `ring`), X25519, and the
//! HKDF-SHA256 key schedule.
//!
//! # Nonce and associated data
//!
//! The 12-byte AEAD nonce is the connection id (u32 LE) followed by the
//! packet sequence (u64 LE), both as they appear in the header; the 14
//! header bytes are the associated data. A sequence is never reused under
//! one key (retransmissions go in new packets), so nonces never repeat.
//!
//! # Key schedule (Noise NK-like: `ee` + `es`)
//!
//! ```text
//! ee     = X25519(client ephemeral, server ephemeral)
//! es     = X25519(client ephemeral, server static)      (the pinned key)
//! secret = HKDF-Extract(salt = client nonce ‖ server nonce, ikm = ee ‖ es)
//! c2s    = HKDF-Expand(secret, "tos v1 c2s", 32)
//! s2c    = HKDF-Expand(secret, "tos v1 s2c", 32)
//! next   = HKDF-Expand(secret, "tos v1 chain", 32)   (input to the next rekey)
//! ```
//!
//! # The sealed auth ticket (Noise NK's first-message payload)
//!
//! A client that pinned the server's static key can already compute `es`
//! when it sends Connect, and seals the ticket with it:
//!
//! ```text
//! ticket key = HKDF-SHA256(salt = client nonce, ikm = es, info = "tos v1 ticket", 32)
//! nonce      = 12 zero bytes
//! AAD        = version u16 LE ‖ key mode u8 ‖ client public key [32] ‖ client nonce [16]
//! wire       = ChaCha20-Poly1305(ticket key, nonce, AAD, ticket) = ciphertext ‖ tag
//! ```
//!
//! The fixed nonce is safe because a ticket key seals exactly one
//! plaintext: it is unique to the client's ephemeral key (fresh per
//! connection attempt), the client seals once and re-sends the identical
//! sealed bytes in every (re)transmitted Connect.
//!
//! A rekey runs a fresh ephemeral exchange inside the sealed channel and
//! chains the previous generation's `next` secret into the new one:
//! `secret' = HKDF-Extract(salt = request nonce ‖ response nonce,
//! ikm = ee' ‖ next)`, then the same three expansions.

use hkdf::Hkdf;
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::wire::control::{KeyMode, NONCE_LEN, PUBLIC_KEY_LEN, TAG_LEN};

/// Why a packet could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("AEAD authentication failed")
    }
}

impl std::error::Error for OpenError {}

/// Why a key exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyExchangeError {
    /// The peer's public key is a low-order point: the shared secret would
    /// be predictable.
    NonContributory,
}

impl core::fmt::Display for KeyExchangeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("non-contributory X25519 public key")
    }
}

impl std::error::Error for KeyExchangeError {}

/// The AEAD nonce of a packet.
#[inline]
pub fn packet_nonce(connection_id: u32, sequence: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&connection_id.to_le_bytes());
    n[4..].copy_from_slice(&sequence.to_le_bytes());
    n
}

/// One direction's packet key.
pub struct PacketKey {
    key: LessSafeKey,
}

impl core::fmt::Debug for PacketKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PacketKey(..)")
    }
}

impl PacketKey {
    /// A key from 32 secret bytes.
    pub fn new(bytes: &[u8; 32]) -> Self {
        // ChaCha20-Poly1305 accepts any 32-byte key: this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .unwrap_or_else(|_| unreachable!("32-byte key"));
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Seals `in_out` in place and returns the tag.
    #[inline]
    pub fn seal(
        &self,
        connection_id: u32,
        sequence: u64,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Nonce::assume_unique_for_key(packet_nonce(connection_id, sequence));
        match self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
        {
            Ok(tag) => {
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            // ring fails only for inputs over 256 GiB.
            Err(_) => unreachable!("datagram-sized input"),
        }
    }

    /// Opens `ciphertext ‖ tag` in place; returns the plaintext length.
    #[inline]
    pub fn open(
        &self,
        connection_id: u32,
        sequence: u64,
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<usize, OpenError> {
        let nonce = Nonce::assume_unique_for_key(packet_nonce(connection_id, sequence));
        self.key
            .open_in_place(nonce, Aad::from(aad), in_out)
            .map(|plain| plain.len())
            .map_err(|_| OpenError)
    }
}

/// Both directions' keys of one key generation, plus its chaining secret.
#[derive(Debug)]
pub struct KeySet {
    /// Key for packets the client sends.
    pub client_to_server: PacketKey,
    /// Key for packets the server sends.
    pub server_to_client: PacketKey,
    /// Input to the next generation's derivation.
    pub chain: [u8; 32],
}

impl KeySet {
    /// Expands a generation secret into the key set.
    fn expand(prk: &Hkdf<Sha256>) -> Self {
        let mut c2s = [0u8; 32];
        let mut s2c = [0u8; 32];
        let mut chain = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = prk.expand(b"tos v1 c2s", &mut c2s);
        let _ = prk.expand(b"tos v1 s2c", &mut s2c);
        let _ = prk.expand(b"tos v1 chain", &mut chain);
        Self {
            client_to_server: PacketKey::new(&c2s),
            server_to_client: PacketKey::new(&s2c),
            chain,
        }
    }

    /// The first generation, from the handshake's two DH results.
    pub fn handshake(
        ee: &[u8; 32],
        es: &[u8; 32],
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
    ) -> Self {
        let mut salt = [0u8; 2 * NONCE_LEN];
        salt[..NONCE_LEN].copy_from_slice(client_nonce);
        salt[NONCE_LEN..].copy_from_slice(server_nonce);
        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(ee);
        ikm[32..].copy_from_slice(es);
        Self::expand(&Hkdf::<Sha256>::new(Some(&salt), &ikm))
    }

    /// The next generation after a rekey exchange.
    pub fn rekey(
        ee: &[u8; 32],
        previous_chain: &[u8; 32],
        request_nonce: &[u8; NONCE_LEN],
        response_nonce: &[u8; NONCE_LEN],
    ) -> Self {
        Self::handshake(ee, previous_chain, request_nonce, response_nonce)
    }
}

/// The HKDF info label of the ticket key.
pub const TICKET_KEY_LABEL: &[u8] = b"tos v1 ticket";
/// Length of a sealed ticket's associated data.
pub const TICKET_AAD_LEN: usize = 2 + 1 + PUBLIC_KEY_LEN + NONCE_LEN;

/// The ticket key: `HKDF-SHA256(salt = client nonce, ikm = es, info =
/// "tos v1 ticket")`, 32 bytes.
pub fn ticket_key(es: &[u8; 32], client_nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let mut key = [0u8; 32];
    let _ = Hkdf::<Sha256>::new(Some(client_nonce), es).expand(TICKET_KEY_LABEL, &mut key);
    key
}

/// The associated data of a sealed ticket: the Connect fields before the
/// cookie (version u16 LE, key mode u8, client public key, client nonce).
pub fn ticket_aad(
    version: u16,
    key_mode: KeyMode,
    client_public: &[u8; PUBLIC_KEY_LEN],
    client_nonce: &[u8; NONCE_LEN],
) -> [u8; TICKET_AAD_LEN] {
    let mut aad = [0u8; TICKET_AAD_LEN];
    aad[..2].copy_from_slice(&version.to_le_bytes());
    aad[2] = key_mode as u8;
    aad[3..3 + PUBLIC_KEY_LEN].copy_from_slice(client_public);
    aad[3 + PUBLIC_KEY_LEN..].copy_from_slice(client_nonce);
    aad
}

/// Seals `ticket` for a Connect: returns `ciphertext ‖ tag` (an empty
/// ticket stays empty: nothing is sealed).
pub fn seal_ticket(
    es: &[u8; 32],
    client_nonce: &[u8; NONCE_LEN],
    aad: &[u8; TICKET_AAD_LEN],
    ticket: &[u8],
) -> Vec<u8> {
    if ticket.is_empty() {
        return Vec::new();
    }
    let key = PacketKey::new(&ticket_key(es, client_nonce));
    let mut out = Vec::with_capacity(ticket.len() + TAG_LEN);
    out.extend_from_slice(ticket);
    // Nonce 0: the key seals this one plaintext only (see the module docs).
    let tag = key.seal(0, 0, aad, &mut out);
    out.extend_from_slice(&tag);
    out
}

/// Opens a sealed ticket in place; returns the plaintext length. An empty
/// input opens to an empty ticket; anything shorter than a tag, or altered,
/// fails.
pub fn open_ticket(
    es: &[u8; 32],
    client_nonce: &[u8; NONCE_LEN],
    aad: &[u8; TICKET_AAD_LEN],
    sealed: &mut [u8],
) -> Result<usize, OpenError> {
    if sealed.is_empty() {
        return Ok(0);
    }
    if sealed.len() < TAG_LEN {
        return Err(OpenError);
    }
    PacketKey::new(&ticket_key(es, client_nonce)).open(0, 0, aad, sealed)
}

/// An X25519 key pair.
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyPair(public: {:02x?})", self.public.as_bytes())
    }
}

impl KeyPair {
    /// A key pair from 32 secret bytes (clamped by X25519 itself).
    pub fn from_secret(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        *self.public.as_bytes()
    }

    /// X25519 with a peer's public key; low-order points are refused.
    pub fn agree(&self, peer: &[u8; PUBLIC_KEY_LEN]) -> Result<[u8; 32], KeyExchangeError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(KeyExchangeError::NonContributory);
        }
        Ok(*shared.as_bytes())
    }
}

/// Keeps `aead` in the public dependency surface documented: the algorithm
/// every sealed packet uses.
pub static AEAD_ALGORITHM: &aead::Algorithm = &CHACHA20_POLY1305;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = PacketKey::new(&[9u8; 32]);
        let aad = [1u8; 14];
        let mut buf = *b"hello world!....";
        let tag = key.seal(7, 42, &aad, &mut buf[..12]);
        let mut sealed = [0u8; 28];
        sealed[..12].copy_from_slice(&buf[..12]);
        sealed[12..].copy_from_slice(&tag);
        let mut copy = sealed;
        assert_eq!(key.open(7, 42, &aad, &mut copy), Ok(12));
        assert_eq!(&copy[..12], b"hello world!");
        for i in 0..sealed.len() {
            let mut bad = sealed;
            bad[i] ^= 0x80;
            assert_eq!(key.open(7, 42, &aad, &mut bad), Err(OpenError));
        }
        let mut copy = sealed;
        assert_eq!(key.open(7, 43, &aad, &mut copy), Err(OpenError));
        let mut copy = sealed;
        assert_eq!(key.open(8, 42, &aad, &mut copy), Err(OpenError));
    }

    #[test]
    fn both_sides_derive_the_same_keys() {
        let server_static = KeyPair::from_secret([1; 32]);
        let server_eph = KeyPair::from_secret([2; 32]);
        let client_eph = KeyPair::from_secret([3; 32]);
        let (cn, sn) = ([4u8; 16], [5u8; 16]);
        let c = KeySet::handshake(
            &client_eph.agree(&server_eph.public()).unwrap(),
            &client_eph.agree(&server_static.public()).unwrap(),
            &cn,
            &sn,
        );
        let s = KeySet::handshake(
            &server_eph.agree(&client_eph.public()).unwrap(),
            &server_static.agree(&client_eph.public()).unwrap(),
            &cn,
            &sn,
        );
        assert_eq!(c.chain, s.chain);
        let mut buf = [0u8; 4];
        let tag = c.client_to_server.seal(1, 1, &[], &mut buf);
        let mut sealed = [0u8; 20];
        sealed[..4].copy_from_slice(&buf);
        sealed[4..].copy_from_slice(&tag);
        assert!(s.client_to_server.open(1, 1, &[], &mut sealed).is_ok());
    }

    #[test]
    fn tickets_seal_and_open() {
        let es = [7u8; 32];
        let nonce = [8u8; 16];
        let aad = ticket_aad(1, KeyMode::Pinned, &[9; 32], &nonce);
        let sealed = seal_ticket(&es, &nonce, &aad, b"ticket");
        assert_eq!(sealed.len(), 6 + TAG_LEN);
        let mut copy = sealed.clone();
        assert_eq!(open_ticket(&es, &nonce, &aad, &mut copy), Ok(6));
        assert_eq!(&copy[..6], b"ticket");
        let other = ticket_aad(1, KeyMode::Pinned, &[10; 32], &nonce);
        let mut copy = sealed.clone();
        assert_eq!(open_ticket(&es, &nonce, &other, &mut copy), Err(OpenError));
        let mut copy = sealed.clone();
        assert_eq!(
            open_ticket(&[6; 32], &nonce, &aad, &mut copy),
            Err(OpenError)
        );
        assert!(seal_ticket(&es, &nonce, &aad, b"").is_empty());
        assert_eq!(open_ticket(&es, &nonce, &aad, &mut []), Ok(0));
        assert_eq!(open_ticket(&es, &nonce, &aad, &mut [0; 15]), Err(OpenError));
    }

    #[test]
    fn low_order_points_are_refused() {
        let kp = KeyPair::from_secret([3; 32]);
        assert_eq!(kp.agree(&[0u8; 32]), Err(KeyExchangeError::NonContributory));
    }
}
