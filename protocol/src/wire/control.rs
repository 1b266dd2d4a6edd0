//! Control packets (seed §10.3): the plaintext handshake packets, and the
//! connection-level frames that travel inside sealed packets.
//!
//! # Handshake datagrams
//!
//! Before keys exist a datagram is `header | type u8 | body | CRC32C u32`,
//! with the header's `ReliableHandshake` flag set and the CRC32C (LE) taken
//! over everything before it. Types: Connect 0, Cookie 1,
//! ConnectionAccepted 2, ConnectionDenied 3. Each type's layout is on its
//! struct below.
//!
//! # Frames
//!
//! Every other control message is a frame (see [`super::frame`]) whose type
//! keeps the seed's control number (Ping 4 … RekeyResponse 14), plus the
//! extensions NewConnectionId 15 and the message frames 16–18.

use super::buf::varint_len;
use super::frame::{Frame, FrameBody, frame_type, raw_frame_len};
use super::header::{Channel, HEADER_LEN, HeaderFlags, Packet, PacketHeader};
use super::{EncodeError, Reader, WireError, Writer};
use crate::checksum;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of a handshake nonce.
pub const NONCE_LEN: usize = 16;
/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Length of a cookie: connection id, timestamp, MAC.
pub const COOKIE_LEN: usize = 4 + 8 + MAC_LEN;
/// The largest auth ticket field a Connect may carry (sealed: ciphertext
/// and tag).
pub const MAX_TICKET_LEN: usize = 512;
/// The largest plaintext auth ticket: what fits [`MAX_TICKET_LEN`] once
/// sealed (see [`crate::crypto::seal_ticket`]).
pub const MAX_TICKET_PLAINTEXT_LEN: usize = MAX_TICKET_LEN - TAG_LEN;
/// Every Connect is padded to this many bytes, so that no reply the server
/// sends before the client proved its address can be larger.
pub const CONNECT_LEN: usize = 1200;
/// The AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Length of the sealed parameters in a ConnectionAccepted, tag included.
pub const ACCEPTED_SEALED_LEN: usize = AcceptedParams::LEN + TAG_LEN;

/// Handshake packet type numbers (seed §10.3).
pub mod handshake_type {
    /// Connection request.
    pub const CONNECT: u8 = 0;
    /// Stateless cookie challenge.
    pub const COOKIE: u8 = 1;
    /// The server accepts; carries its ephemeral key.
    pub const CONNECTION_ACCEPTED: u8 = 2;
    /// The server refuses.
    pub const CONNECTION_DENIED: u8 = 3;
}

/// A cookie as the server issued it.
///
/// Layout (44 bytes): connection id u32, timestamp ms u64, HMAC-SHA256 [32].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie {
    /// The connection id the server assigned.
    pub connection_id: u32,
    /// Milliseconds since the server's epoch when it was issued.
    pub timestamp_ms: u64,
    /// HMAC-SHA256 over address, client nonce, timestamp and id.
    pub mac: [u8; MAC_LEN],
}

impl Cookie {
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u32(self.connection_id)?;
        w.u64(self.timestamp_ms)?;
        w.bytes(&self.mac)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Self {
            connection_id: r.u32()?,
            timestamp_ms: r.u64()?,
            mac: r.array()?,
        })
    }
}

/// Connect (handshake type 0), client to server.
///
/// Layout: version u16, key mode u8 ([`KeyMode`]), client ephemeral X25519
/// public key [32], client nonce [16], has-cookie u8 (0 or 1), cookie [44]
/// if 1, auth ticket
/// (varint length ≤ 512 + bytes), zero padding to [`CONNECT_LEN`] − 4.
/// In [`KeyMode::Pinned`] a non-empty ticket is sealed (`ciphertext ‖
/// tag`, see [`crate::crypto::seal_ticket`]); in [`KeyMode::Unpinned`] it
/// must be empty (the server denies a non-empty one: `TicketRejected`).
/// The header's connection id is random on the first Connect (it spreads
/// handshakes over cores) and the cookie's id on the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Protocol version.
    pub version: u16,
    /// Whether the client pinned the server's static key.
    pub key_mode: KeyMode,
    /// The client's ephemeral public key.
    pub client_public: [u8; PUBLIC_KEY_LEN],
    /// The client's random nonce.
    pub client_nonce: [u8; NONCE_LEN],
    /// The cookie echoed back, on the second Connect.
    pub cookie: Option<Cookie>,
    /// The auth ticket as on the wire: sealed (`ciphertext ‖ tag`) or
    /// empty.
    pub ticket: &'a [u8],
}

/// How the client knows the server's static key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeyMode {
    /// The client pinned the server's static public key (the default; the
    /// only mode that resists a man in the middle).
    Pinned = 0,
    /// The client did not; the server sends its static key in
    /// ConnectionAccepted (trust on first use). Servers refuse it unless
    /// configured to allow it.
    Unpinned = 1,
}

impl KeyMode {
    /// The mode a wire byte names.
    pub fn from_u8(value: u8) -> Result<Self, WireError> {
        match value {
            0 => Ok(Self::Pinned),
            1 => Ok(Self::Unpinned),
            other => Err(WireError::InvalidValue {
                field: "key mode",
                value: u64::from(other),
            }),
        }
    }
}

/// ConnectionAccepted (handshake type 2), server to client.
///
/// Layout: server ephemeral public key [32], server nonce [16], the
/// server's static public key [32] only for a Connect in
/// [`KeyMode::Unpinned`], sealed
/// [`AcceptedParams`] ([`ACCEPTED_SEALED_LEN`] bytes: 16 plaintext + 16
/// tag). The seal uses the server-to-client key with the nonce built from
/// the header's connection id and sequence; the associated data is every
/// byte before the sealed part. Only a server holding the pinned static key
/// can produce it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionAccepted<'a> {
    /// The server's ephemeral public key.
    pub server_public: [u8; PUBLIC_KEY_LEN],
    /// The server's random nonce.
    pub server_nonce: [u8; NONCE_LEN],
    /// The server's static key, for an unpinned client.
    pub server_static: Option<[u8; PUBLIC_KEY_LEN]>,
    /// The sealed parameters.
    pub sealed: &'a [u8],
}

/// Connection parameters sealed inside ConnectionAccepted.
///
/// Layout (16 bytes): heartbeat interval ms u32, heartbeat timeout ms u32,
/// tick rate Hz u16, MTU u16, largest message bytes u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptedParams {
    /// How often the server pings.
    pub heartbeat_interval_ms: u32,
    /// Silence after which either side gives up.
    pub heartbeat_timeout_ms: u32,
    /// The server's tick rate.
    pub tick_hz: u16,
    /// The largest datagram either side sends.
    pub mtu: u16,
    /// The largest message the server accepts.
    pub max_message_bytes: u32,
}

impl AcceptedParams {
    /// Encoded length.
    pub const LEN: usize = 16;

    /// Writes the parameters.
    pub fn encode(&self, out: &mut [u8; Self::LEN]) {
        out[0..4].copy_from_slice(&self.heartbeat_interval_ms.to_le_bytes());
        out[4..8].copy_from_slice(&self.heartbeat_timeout_ms.to_le_bytes());
        out[8..10].copy_from_slice(&self.tick_hz.to_le_bytes());
        out[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        out[12..16].copy_from_slice(&self.max_message_bytes.to_le_bytes());
    }

    /// Reads the parameters.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let out = Self {
            heartbeat_interval_ms: r.u32()?,
            heartbeat_timeout_ms: r.u32()?,
            tick_hz: r.u16()?,
            mtu: r.u16()?,
            max_message_bytes: r.u32()?,
        };
        r.finish()?;
        Ok(out)
    }
}

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// The value a wire byte names.
            pub fn from_u8(value: u8) -> Result<Self, WireError> {
                match value {
                    $($value => Ok(Self::$variant),)*
                    other => Err(WireError::InvalidValue { field: $field, value: u64::from(other) }),
                }
            }
        }
    };
}

wire_enum!(
    /// Why the server refused a connection.
    DenyReason, "deny reason" {
        /// The server (or this core) has no room.
        Full = 1,
        /// The client speaks another protocol version.
        Version = 2,
        /// The cookie was forged, expired or for another address.
        BadCookie = 3,
        /// The client is banned.
        Banned = 4,
        /// The game layer rejected the auth ticket.
        TicketRejected = 5,
        /// The server is shutting down.
        ShuttingDown = 6,
        /// The client did not pin the server's key and the server requires it.
        KeyNotPinned = 7,
        /// The server has no room for more connection attempts awaiting the
        /// game layer's decision.
        Busy = 8,
    }
);

wire_enum!(
    /// Why a connection ended.
    DisconnectReason, "disconnect reason" {
        /// The peer closed it on purpose.
        Graceful = 0,
        /// Nothing was heard for the heartbeat timeout.
        Timeout = 1,
        /// The server is shutting down.
        ServerShutdown = 2,
        /// The client failed an integrity check.
        IntegrityFailed = 3,
        /// A reliable message went unacknowledged for too many retries.
        TooManyRetries = 4,
        /// The game layer removed the player.
        Kicked = 5,
        /// The peer broke the protocol.
        ProtocolViolation = 6,
        /// The handshake did not complete in time.
        HandshakeTimeout = 7,
    }
);

/// ConnectionDenied (handshake type 3), server to client. Layout: reason u8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionDenied {
    /// Why.
    pub reason: DenyReason,
}

/// A plaintext handshake packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake<'a> {
    /// Handshake type 0.
    Connect(Connect<'a>),
    /// Handshake type 1: the stateless cookie challenge (44 bytes).
    Cookie(Cookie),
    /// Handshake type 2.
    Accepted(ConnectionAccepted<'a>),
    /// Handshake type 3.
    Denied(ConnectionDenied),
}

impl<'a> Handshake<'a> {
    /// Writes the whole datagram (header with the handshake flag, type,
    /// body, padding for Connect, CRC32C) into `out`; returns its length.
    pub fn encode(
        &self,
        connection_id: u32,
        sequence: u64,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        if out.len() < HEADER_LEN {
            return Err(EncodeError::BufferFull {
                needed: HEADER_LEN,
                available: out.len(),
            });
        }
        PacketHeader {
            connection_id,
            channel: Channel::Unreliable,
            flags: HeaderFlags::RELIABLE_HANDSHAKE,
            sequence,
        }
        .emit(&mut Packet::new_unchecked(&mut out[..HEADER_LEN]));
        let mut w = Writer::new(&mut out[HEADER_LEN..]);
        match self {
            Handshake::Connect(c) => {
                w.u8(handshake_type::CONNECT)?;
                w.u16(c.version)?;
                w.u8(c.key_mode as u8)?;
                w.bytes(&c.client_public)?;
                w.bytes(&c.client_nonce)?;
                match &c.cookie {
                    Some(cookie) => {
                        w.u8(1)?;
                        cookie.encode(&mut w)?;
                    }
                    None => w.u8(0)?,
                }
                w.len_prefixed(c.ticket, MAX_TICKET_LEN)?;
                let body_end = CONNECT_LEN - checksum::CRC_LEN - HEADER_LEN;
                let pad = body_end.saturating_sub(w.position());
                w.zeros(pad)?;
            }
            Handshake::Cookie(cookie) => {
                w.u8(handshake_type::COOKIE)?;
                cookie.encode(&mut w)?;
            }
            Handshake::Accepted(a) => {
                w.u8(handshake_type::CONNECTION_ACCEPTED)?;
                w.bytes(&a.server_public)?;
                w.bytes(&a.server_nonce)?;
                if let Some(key) = &a.server_static {
                    w.bytes(key)?;
                }
                w.bytes(a.sealed)?;
            }
            Handshake::Denied(d) => {
                w.u8(handshake_type::CONNECTION_DENIED)?;
                w.u8(d.reason as u8)?;
            }
        }
        let len = HEADER_LEN + w.position();
        checksum::append(out, len)
    }

    /// Reads a handshake datagram: header, CRC32C, type and body.
    pub fn decode(datagram: &'a [u8]) -> Result<(PacketHeader, Handshake<'a>), WireError> {
        let header = PacketHeader::parse_bytes(datagram)?;
        if !header.flags.contains(HeaderFlags::RELIABLE_HANDSHAKE) {
            return Err(WireError::InvalidValue {
                field: "handshake flag",
                value: u64::from(header.flags.bits()),
            });
        }
        let covered = checksum::verify(datagram)?;
        let mut r = Reader::new(&covered[HEADER_LEN..]);
        let packet = match r.u8()? {
            handshake_type::CONNECT => {
                let version = r.u16()?;
                let key_mode = KeyMode::from_u8(r.u8()?)?;
                let client_public = r.array()?;
                let client_nonce = r.array()?;
                let cookie = match r.u8()? {
                    0 => None,
                    1 => Some(Cookie::decode(&mut r)?),
                    other => {
                        return Err(WireError::InvalidValue {
                            field: "has cookie",
                            value: u64::from(other),
                        });
                    }
                };
                let ticket = r.len_prefixed(MAX_TICKET_LEN)?;
                if r.rest().iter().any(|&b| b != 0) {
                    return Err(WireError::NonZeroPadding);
                }
                Handshake::Connect(Connect {
                    version,
                    key_mode,
                    client_public,
                    client_nonce,
                    cookie,
                    ticket,
                })
            }
            handshake_type::COOKIE => Handshake::Cookie(Cookie::decode(&mut r)?),
            handshake_type::CONNECTION_ACCEPTED => {
                let server_public = r.array()?;
                let server_nonce = r.array()?;
                // The static key is present exactly when the rest is longer
                // than the sealed parameters.
                let server_static = match r.remaining() {
                    n if n == ACCEPTED_SEALED_LEN + PUBLIC_KEY_LEN => Some(r.array()?),
                    _ => None,
                };
                let sealed = r.bytes(ACCEPTED_SEALED_LEN)?;
                Handshake::Accepted(ConnectionAccepted {
                    server_public,
                    server_nonce,
                    server_static,
                    sealed,
                })
            }
            handshake_type::CONNECTION_DENIED => Handshake::Denied(ConnectionDenied {
                reason: DenyReason::from_u8(r.u8()?)?,
            }),
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok((header, packet))
    }

    /// The associated data of a ConnectionAccepted datagram: every byte
    /// before the sealed parameters (header, type, server ephemeral key,
    /// server nonce, and the static key when present).
    pub fn accepted_aad(datagram: &[u8]) -> Option<&[u8]> {
        let end = datagram
            .len()
            .checked_sub(crate::checksum::CRC_LEN + ACCEPTED_SEALED_LEN)?;
        datagram.get(..end)
    }
}

/// Declares a frame body made of fixed-width fields.
macro_rules! fixed_frame {
    ($(#[$meta:meta])* $name:ident = $ty:expr, $len:expr, { $($(#[$fmeta:meta])* $field:ident : $fty:ty => $read:ident / $write:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $fty,)*
        }

        impl<'a> FrameBody<'a> for $name {
            const TYPE: u8 = $ty;
            fn body_len(&self) -> usize {
                $len
            }
            fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
                $(w.$write(self.$field)?;)*
                Ok(())
            }
            fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
                Ok(Self { $($field: r.$read()?,)* })
            }
        }
    };
}

fixed_frame!(
    /// Ping (frame 4): heartbeat request. Body: id u32.
    Ping = frame_type::PING, 4, {
        /// Echoed in the Pong.
        id: u32 => u32 / u32,
    }
);

fixed_frame!(
    /// Pong (frame 5): heartbeat response. Body: the Ping's id u32.
    Pong = frame_type::PONG, 4, {
        /// The Ping's id.
        id: u32 => u32 / u32,
    }
);

fixed_frame!(
    /// ReliableHandshake (frame 9): the sender's reliable-channel limits,
    /// sent once after the connection is established. Body: receive window
    /// (messages buffered out of order) u16, largest message bytes u32.
    ReliableHandshake = frame_type::RELIABLE_HANDSHAKE, 6, {
        /// How many out-of-order reliable messages the sender buffers.
        receive_window: u16 => u16 / u16,
        /// The largest message the sender accepts.
        max_message_bytes: u32 => u32 / u32,
    }
);

fixed_frame!(
    /// NewConnectionId (frame 15, extension): the server moves the
    /// connection to a new id (another core). Body: new id u32.
    NewConnectionId = frame_type::NEW_CONNECTION_ID, 4, {
        /// The id to use from now on.
        connection_id: u32 => u32 / u32,
    }
);

fixed_frame!(
    /// CheckIntegrity (frame 12), server to client: a challenge. Body:
    /// table version u16, index u16.
    IntegrityChallenge = frame_type::CHECK_INTEGRITY, 4, {
        /// Which client version's table.
        table_version: u16 => u16 / u16,
        /// Which entry of the table to answer with.
        index: u16 => u16 / u16,
    }
);

fixed_frame!(
    /// CheckIntegrity (frame 12), client to server: the answer. Body:
    /// index u16, key [16].
    IntegrityAnswer = frame_type::CHECK_INTEGRITY, 18, {
        /// The challenged index.
        index: u16 => u16 / u16,
        /// The table entry.
        key: [u8; 16] => array / bytes_array,
    }
);

fixed_frame!(
    /// CryptoTest (frame 10): proof that the sender's keys work. Body:
    /// challenge [16].
    CryptoTest = frame_type::CRYPTO_TEST, 16, {
        /// Random bytes to echo.
        challenge: [u8; 16] => array / bytes_array,
    }
);

fixed_frame!(
    /// CryptoTestAck (frame 11): echo of a CryptoTest. Body: challenge [16].
    CryptoTestAck = frame_type::CRYPTO_TEST_ACK, 16, {
        /// The CryptoTest's bytes.
        challenge: [u8; 16] => array / bytes_array,
    }
);

fixed_frame!(
    /// RekeyRequest (frame 13): starts a key rotation. Body: new key phase
    /// u8, initiator's fresh ephemeral public key [32], nonce [16].
    RekeyRequest = frame_type::REKEY_REQUEST, 49, {
        /// The key generation being started (wrapping).
        phase: u8 => u8 / u8,
        /// A fresh X25519 public key.
        public: [u8; 32] => array / bytes_array,
        /// A fresh nonce.
        nonce: [u8; 16] => array / bytes_array,
    }
);

fixed_frame!(
    /// RekeyResponse (frame 14): completes a key rotation. Body: key phase
    /// u8, responder's fresh ephemeral public key [32], nonce [16].
    RekeyResponse = frame_type::REKEY_RESPONSE, 49, {
        /// The key generation being started.
        phase: u8 => u8 / u8,
        /// A fresh X25519 public key.
        public: [u8; 32] => array / bytes_array,
        /// A fresh nonce.
        nonce: [u8; 16] => array / bytes_array,
    }
);

impl Writer<'_> {
    /// Writes a fixed-size byte array (used by the frame macros).
    #[inline]
    pub fn bytes_array<const N: usize>(&mut self, value: [u8; N]) -> Result<(), EncodeError> {
        self.bytes(&value)
    }
}

/// Disconnect (frame 6). Body: reason u8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    /// Why.
    pub reason: DisconnectReason,
}

impl<'a> FrameBody<'a> for Disconnect {
    const TYPE: u8 = frame_type::DISCONNECT;
    fn body_len(&self) -> usize {
        1
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.reason as u8)
    }
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            reason: DisconnectReason::from_u8(r.u8()?)?,
        })
    }
}

/// Ack (frame 7): which packet numbers arrived. Body: largest packet number
/// varint, ack delay µs varint, bitfield u64 (bit i set: packet
/// `largest − 1 − i` arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The largest packet number received.
    pub largest: u64,
    /// Microseconds between receiving `largest` and sending this ack.
    pub delay_us: u32,
    /// The 64 packet numbers below `largest`.
    pub bits: u64,
}

impl Ack {
    /// Whether this ack covers packet number `pn`.
    pub fn acks(&self, pn: u64) -> bool {
        if pn == self.largest {
            return true;
        }
        match self.largest.checked_sub(pn) {
            Some(d @ 1..=64) => self.bits >> (d - 1) & 1 == 1,
            _ => false,
        }
    }
}

impl<'a> FrameBody<'a> for Ack {
    const TYPE: u8 = frame_type::ACK;
    fn body_len(&self) -> usize {
        varint_len(self.largest) + varint_len(u64::from(self.delay_us)) + 8
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.varint(self.largest)?;
        w.varint(u64::from(self.delay_us))?;
        w.u64(self.bits)
    }
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            largest: r.varint()?,
            delay_us: r.varint_u32()?,
            bits: r.u64()?,
        })
    }
}

/// Fragment (frame 8): one piece of a message too large for a datagram.
/// Body: channel u8, message id varint (0 on the unreliable channel),
/// fragment id u16, fragment index u16 (the seed's Offset, counted in
/// pieces of [`FRAGMENT_PIECE_LEN`] bytes), total size u32, data (rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The channel of the whole message.
    pub channel: Channel,
    /// The reliable message id (0 when unreliable).
    pub message_id: u64,
    /// Identifies the message being reassembled on this connection.
    pub fragment_id: u16,
    /// Which piece.
    pub index: u16,
    /// The whole message's length.
    pub total_size: u32,
    /// This piece's bytes.
    pub data: &'a [u8],
}

/// Every fragment but the last carries exactly this many bytes.
pub const FRAGMENT_PIECE_LEN: usize = 1024;

impl<'a> FrameBody<'a> for Fragment<'a> {
    const TYPE: u8 = frame_type::FRAGMENT;
    fn body_len(&self) -> usize {
        1 + varint_len(self.message_id) + 2 + 2 + 4 + self.data.len()
    }
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(self.channel as u8)?;
        w.varint(self.message_id)?;
        w.u16(self.fragment_id)?;
        w.u16(self.index)?;
        w.u32(self.total_size)?;
        w.bytes(self.data)
    }
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError> {
        Ok(Self {
            channel: Channel::from_u8(r.u8()?)?,
            message_id: r.varint()?,
            fragment_id: r.u16()?,
            index: r.u16()?,
            total_size: r.u32()?,
            data: r.rest(),
        })
    }
}

/// An application message (frames 16–18, one per channel). Body on the
/// unreliable channel: data (rest). On the reliable channels: message id
/// varint, data (rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The channel, which picks the frame type.
    pub channel: Channel,
    /// The reliable message id (ignored, and not sent, when unreliable).
    pub message_id: u64,
    /// The message bytes.
    pub data: &'a [u8],
}

impl<'a> Message<'a> {
    /// The frame type for a channel.
    pub fn frame_type(channel: Channel) -> u8 {
        match channel {
            Channel::Unreliable => frame_type::MESSAGE_UNRELIABLE,
            Channel::ReliableOrdered => frame_type::MESSAGE_RELIABLE_ORDERED,
            Channel::ReliableUnordered => frame_type::MESSAGE_RELIABLE_UNORDERED,
        }
    }

    fn body_len(&self) -> usize {
        let id = if self.channel.is_reliable() {
            varint_len(self.message_id)
        } else {
            0
        };
        id + self.data.len()
    }

    /// Length of the whole frame.
    pub fn frame_len(&self) -> usize {
        raw_frame_len(self.body_len())
    }

    /// Writes the frame. On a full buffer nothing is written.
    pub fn encode_frame(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if self.frame_len() > w.remaining() {
            return Err(EncodeError::BufferFull {
                needed: self.frame_len(),
                available: w.remaining(),
            });
        }
        w.u8(Self::frame_type(self.channel))?;
        w.varint(self.body_len() as u64)?;
        if self.channel.is_reliable() {
            w.varint(self.message_id)?;
        }
        w.bytes(self.data)
    }

    /// Reads a message frame.
    pub fn decode(frame: &Frame<'a>) -> Result<Self, WireError> {
        let channel = match frame.frame_type {
            frame_type::MESSAGE_UNRELIABLE => Channel::Unreliable,
            frame_type::MESSAGE_RELIABLE_ORDERED => Channel::ReliableOrdered,
            frame_type::MESSAGE_RELIABLE_UNORDERED => Channel::ReliableUnordered,
            other => return Err(WireError::UnknownType(other)),
        };
        let mut r = Reader::new(frame.body);
        let message_id = if channel.is_reliable() {
            r.varint()?
        } else {
            0
        };
        Ok(Self {
            channel,
            message_id,
            data: r.rest(),
        })
    }
}
