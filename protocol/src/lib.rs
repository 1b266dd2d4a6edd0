//! # tos-protocol: the Tales of Shadowland wire protocol, sans-IO
//!
//! Everything two peers need to speak the protocol, and nothing that
//! touches a socket, a thread or a clock: callers pass bytes and `now` in
//! and take datagrams and events out. The world server's engine and the
//! load generator drive the same code.
//!
//! ## Map
//!
//! - [`wire`]: the byte level. [`wire::Reader`] / [`wire::Writer`] (the
//!   FlatBuffer), the 14-byte [`wire::PacketHeader`], length-delimited
//!   [`wire::frame`]s, handshake packets and control frames
//!   ([`wire::control`]), game messages ([`wire::game`], with the
//!   account and character structures of [`wire::account`]), and the
//!   datagram classifier that faces the network ([`wire::datagram`]).
//! - [`quant`]: quantization of positions (with quadrant rebasing),
//!   rotations, velocities and HP/MP fractions.
//! - [`delta`]: quantized entity state and delta records against a
//!   baseline.
//! - [`compress`]: LZ4 with an entropy gate and a decompression cap.
//! - [`checksum`]: CRC32C trailers for packets sent before keys exist.
//!
//! The byte-level specification of all of it, with hex vectors that a test
//! checks against this code, is `docs/PROTOCOL.md`.

pub mod checksum;
pub mod compress;
pub mod connection;
pub mod cookie;
pub mod crypto;
pub mod delta;
pub mod endpoint;
pub mod flags;
pub mod integrity;
pub mod quant;
pub mod replay;
pub mod rng;
pub mod wire;

/// Which end of a connection a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The game client (and the load generator's simulated players).
    Client,
    /// The world server.
    Server,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}
