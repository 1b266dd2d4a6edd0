//! Handshake states, one type each; a transition consumes the old state
//! (in the manner of rustls), so a state's secrets cannot outlive it.
//!
//! Client: [`ClientInitial`] --Cookie--> [`ClientCookie`] --Accepted-->
//! [`ClientKeyed`] --CryptoTestAck--> established.
//! Server (after the endpoint verified the cookie): [`ServerPending`]
//! --application accepts--> [`ServerAccepted`] --CryptoTest--> established.

use std::time::{Duration, Instant};

use crate::crypto::{KeyExchangeError, KeyPair, KeySet};
use crate::wire::control::{
    ACCEPTED_SEALED_LEN, AcceptedParams, Connect, ConnectionAccepted, Cookie, Handshake, KeyMode,
    NONCE_LEN, PROTOCOL_VERSION, PUBLIC_KEY_LEN,
};
use crate::wire::{EncodeError, PacketHeader};

/// How a client knows the server's static key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKey {
    /// The server's static X25519 public key, pinned in the client.
    Pinned([u8; PUBLIC_KEY_LEN]),
    /// Not pinned: accept the key the server presents (trust on first use).
    /// Servers refuse this unless configured to allow it.
    Unpinned,
}

/// Why a ConnectionAccepted was not accepted by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// An X25519 key was a low-order point.
    KeyExchange(KeyExchangeError),
    /// The sealed parameters did not open: not the pinned server, or altered.
    BadSeal,
    /// The server sent its static key to a pinned client, or none to an
    /// unpinned one.
    KeyModeMismatch,
    /// The sealed parameters are malformed.
    BadParams,
}

/// The client before it has a cookie.
#[derive(Debug)]
pub(crate) struct ClientInitial {
    pub(crate) ephemeral: KeyPair,
    pub(crate) nonce: [u8; NONCE_LEN],
    /// The ticket as sealed once at creation (or empty): every Connect
    /// re-sends these bytes.
    pub(crate) ticket: Vec<u8>,
    pub(crate) server_key: ServerKey,
    /// Random id in the first Connect's header: spreads handshakes over cores.
    pub(crate) probe_id: u32,
    pub(crate) attempts: u32,
    pub(crate) next_send: Instant,
    pub(crate) deadline: Instant,
}

impl ClientInitial {
    fn key_mode(&self) -> KeyMode {
        match self.server_key {
            ServerKey::Pinned(_) => KeyMode::Pinned,
            ServerKey::Unpinned => KeyMode::Unpinned,
        }
    }

    /// Writes a Connect datagram (with the cookie when one is given).
    pub(crate) fn write_connect(
        &self,
        cookie: Option<Cookie>,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let id = cookie.map_or(self.probe_id, |c| c.connection_id);
        Handshake::Connect(Connect {
            version: PROTOCOL_VERSION,
            key_mode: self.key_mode(),
            client_public: self.ephemeral.public(),
            client_nonce: self.nonce,
            cookie,
            ticket: &self.ticket,
        })
        .encode(id, u64::from(self.attempts), buf)
    }

    /// The cookie arrived: move on, sending again at once.
    pub(crate) fn with_cookie(self, cookie: Cookie, now: Instant) -> ClientCookie {
        ClientCookie {
            inner: ClientInitial {
                next_send: now,
                attempts: 0,
                ..self
            },
            cookie,
        }
    }
}

/// The client with a cookie, waiting for ConnectionAccepted.
#[derive(Debug)]
pub(crate) struct ClientCookie {
    pub(crate) inner: ClientInitial,
    pub(crate) cookie: Cookie,
}

/// What the client learns from a valid ConnectionAccepted.
#[derive(Debug)]
pub(crate) struct ClientAccepted {
    pub(crate) keys: KeySet,
    pub(crate) params: AcceptedParams,
    pub(crate) server_static: [u8; PUBLIC_KEY_LEN],
    pub(crate) keyed: ClientKeyed,
}

impl ClientCookie {
    /// Verifies a ConnectionAccepted (`datagram` is the whole datagram it
    /// was decoded from). On failure the state is handed back unchanged.
    pub(crate) fn accept(
        self,
        datagram: &[u8],
        header: &PacketHeader,
        accepted: &ConnectionAccepted<'_>,
        challenge: [u8; 16],
    ) -> Result<ClientAccepted, Box<(Self, HandshakeError)>> {
        let server_static = match (self.inner.server_key, accepted.server_static) {
            (ServerKey::Pinned(k), None) => k,
            (ServerKey::Unpinned, Some(k)) => k,
            _ => return Err(Box::new((self, HandshakeError::KeyModeMismatch))),
        };
        let ee = match self.inner.ephemeral.agree(&accepted.server_public) {
            Ok(v) => v,
            Err(e) => return Err(Box::new((self, HandshakeError::KeyExchange(e)))),
        };
        let es = match self.inner.ephemeral.agree(&server_static) {
            Ok(v) => v,
            Err(e) => return Err(Box::new((self, HandshakeError::KeyExchange(e)))),
        };
        let keys = KeySet::handshake(&ee, &es, &self.inner.nonce, &accepted.server_nonce);
        let Some(aad) = Handshake::accepted_aad(datagram) else {
            return Err(Box::new((self, HandshakeError::BadParams)));
        };
        let mut sealed = [0u8; ACCEPTED_SEALED_LEN];
        sealed.copy_from_slice(accepted.sealed);
        let opened =
            keys.server_to_client
                .open(header.connection_id, header.sequence, aad, &mut sealed);
        let Ok(len) = opened else {
            return Err(Box::new((self, HandshakeError::BadSeal)));
        };
        let Ok(params) = AcceptedParams::decode(&sealed[..len]) else {
            return Err(Box::new((self, HandshakeError::BadParams)));
        };
        Ok(ClientAccepted {
            keys,
            params,
            server_static,
            keyed: ClientKeyed { challenge },
        })
    }
}

/// The client with keys, proving them with a CryptoTest.
#[derive(Debug)]
pub(crate) struct ClientKeyed {
    pub(crate) challenge: [u8; 16],
}

/// The server after a valid cookie, waiting for the application to accept
/// or refuse the ticket.
#[derive(Debug)]
pub(crate) struct ServerPending {
    pub(crate) client_public: [u8; PUBLIC_KEY_LEN],
    pub(crate) client_nonce: [u8; NONCE_LEN],
    pub(crate) key_mode: KeyMode,
    /// `X25519(server static, client ephemeral)`, computed once by the
    /// endpoint when it opened the ticket.
    pub(crate) es: [u8; 32],
    pub(crate) deadline: Instant,
}

/// The largest ConnectionAccepted datagram.
pub(crate) const ACCEPTED_MAX: usize = 14 + 1 + 32 + 16 + 32 + ACCEPTED_SEALED_LEN + 4;

/// The server after accepting, until the client's CryptoTest arrives.
#[derive(Debug)]
pub(crate) struct ServerAccepted {
    /// The ConnectionAccepted datagram, re-sent verbatim when the client's
    /// Connect is repeated (same nonce and plaintext, so no nonce reuse).
    pub(crate) datagram: [u8; ACCEPTED_MAX],
    pub(crate) len: usize,
    pub(crate) resend: bool,
    pub(crate) deadline: Instant,
}

impl ServerPending {
    /// Derives keys and builds the ConnectionAccepted datagram, sealed with
    /// packet number 0 of the server-to-client key.
    pub(crate) fn accept(
        self,
        connection_id: u32,
        server_static: &KeyPair,
        (ephemeral, server_nonce): (KeyPair, [u8; NONCE_LEN]),
        params: AcceptedParams,
        handshake_timeout: Duration,
        now: Instant,
    ) -> Result<(ServerAccepted, KeySet), KeyExchangeError> {
        let ee = ephemeral.agree(&self.client_public)?;
        let keys = KeySet::handshake(&ee, &self.es, &self.client_nonce, &server_nonce);
        let mut plain = [0u8; AcceptedParams::LEN];
        params.encode(&mut plain);
        // Build with a placeholder seal to fix the layout, then seal in place.
        let placeholder = [0u8; ACCEPTED_SEALED_LEN];
        let server_static_key =
            (self.key_mode == KeyMode::Unpinned).then(|| server_static.public());
        let mut datagram = [0u8; ACCEPTED_MAX];
        let len = Handshake::Accepted(ConnectionAccepted {
            server_public: ephemeral.public(),
            server_nonce,
            server_static: server_static_key,
            sealed: &placeholder,
        })
        .encode(connection_id, 0, &mut datagram)
        .unwrap_or_else(|_| unreachable!("ACCEPTED_MAX fits"));
        let sealed_at = len - 4 - ACCEPTED_SEALED_LEN;
        let (head, rest) = datagram.split_at_mut(sealed_at);
        rest[..AcceptedParams::LEN].copy_from_slice(&plain);
        let tag =
            keys.server_to_client
                .seal(connection_id, 0, head, &mut rest[..AcceptedParams::LEN]);
        rest[AcceptedParams::LEN..ACCEPTED_SEALED_LEN].copy_from_slice(&tag);
        // The CRC covers the sealed bytes too: recompute it.
        let _ = crate::checksum::append(&mut datagram, len - 4);
        Ok((
            ServerAccepted {
                datagram,
                len,
                resend: true,
                deadline: now + handshake_timeout,
            },
            keys,
        ))
    }
}
