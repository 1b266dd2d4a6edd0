//! The byte level: every structure that crosses the network, as checked
//! views over caller-owned bytes and plain representations with `parse` /
//! `emit` (in the manner of smoltcp's `wire` module).
//!
//! # Safety of readers
//!
//! No accessor in this module panics on any input. Views check their length
//! once in `new_checked`; after that every fixed-offset accessor reads inside
//! the checked length. Variable-length content is read through [`Reader`],
//! whose every read is bounds-checked and returns [`WireError`]. The property
//! tests in `protocol/tests/properties.rs` feed arbitrary bytes to every decoder and
//! accept only `Ok` or `Err`; `protocol/fuzz` does the same, coverage-guided.
//!
//! # Map
//!
//! - [`buf`]: [`Reader`] and [`Writer`], the FlatBuffer of the seeds: fixed
//!   width little-endian numbers, LEB128 varints, ZigZag, bit packing,
//!   length-prefixed bytes and strings, save/restore of position.
//! - [`header`]: the 14-byte [`PacketHeader`] every datagram starts with.
//! - [`frame`]: length-delimited frames inside a datagram payload.
//! - [`control`]: handshake packets and connection-level frames (seed §10.3).
//! - [`game`]: game messages carried in message frames (seed §10.1, §10.2).
//! - [`account`]: the account, character and world-entry structures those
//!   messages carry (re-exported by [`game`]).
//! - [`gameplay`]: the item, equipment, statistics, combat and chat
//!   structures (re-exported by [`game`]).
//! - [`datagram`]: the whole-datagram decoder that faces the network.

pub mod account;
pub mod buf;
pub mod control;
pub mod datagram;
pub mod frame;
pub mod game;
pub mod gameplay;
pub mod header;

pub use buf::{BitReader, BitWriter, Mark, Reader, Writer};
pub use header::{Channel, HeaderFlags, Packet, PacketHeader};

use core::fmt;

/// Why bytes could not be read as the structure asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The input ended before the structure did.
    Truncated {
        /// Bytes the read needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A varint used more bytes than its value needs (a trailing zero group).
    VarintOverlong,
    /// A varint ran past 10 bytes or past 64 bits.
    VarintTooLong,
    /// A varint's value does not fit the integer type the field has.
    VarintOutOfRange,
    /// A length prefix is larger than the maximum the caller allows.
    LengthExceeded {
        /// The largest length allowed here.
        max: usize,
        /// The length found on the wire.
        found: u64,
    },
    /// A string field is not valid UTF-8.
    InvalidUtf8,
    /// The header names a channel that does not exist.
    UnknownChannel(u8),
    /// The header sets flag bits that are reserved.
    ReservedFlags(u8),
    /// A message or packet type byte that this decoder does not know.
    UnknownType(u8),
    /// A field holds a value outside its defined set (an enum or flag byte).
    InvalidValue {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// Bytes were left over after a structure that must fill its frame.
    TrailingBytes(usize),
    /// Padding that must be zero was not.
    NonZeroPadding,
    /// A CRC32C trailer did not match the bytes it covers.
    BadChecksum,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needed {needed} bytes, {available} left")
            }
            Self::VarintOverlong => f.write_str("overlong varint encoding"),
            Self::VarintTooLong => f.write_str("varint longer than 10 bytes or 64 bits"),
            Self::VarintOutOfRange => f.write_str("varint value out of range for its field"),
            Self::LengthExceeded { max, found } => {
                write!(f, "length {found} exceeds the maximum {max}")
            }
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::UnknownChannel(c) => write!(f, "unknown channel {c}"),
            Self::ReservedFlags(b) => write!(f, "reserved flag bits set: {b:#04x}"),
            Self::UnknownType(t) => write!(f, "unknown type {t}"),
            Self::InvalidValue { field, value } => write!(f, "invalid {field}: {value}"),
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes"),
            Self::NonZeroPadding => f.write_str("non-zero padding"),
            Self::BadChecksum => f.write_str("CRC32C mismatch"),
        }
    }
}

impl std::error::Error for WireError {}

/// Why a structure could not be written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer has no room left for the next field.
    BufferFull {
        /// Bytes the write needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A variable-length field is longer than its maximum.
    TooLong {
        /// The largest length allowed here.
        max: usize,
        /// The length given.
        found: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferFull { needed, available } => {
                write!(f, "buffer full: needed {needed} bytes, {available} left")
            }
            Self::TooLong { max, found } => write!(f, "length {found} exceeds the maximum {max}"),
        }
    }
}

impl std::error::Error for EncodeError {}
