//! The 14-byte packet header at the start of every datagram.
//!
//! ```text
//!  0               4    5    6                               14
//! +---------------+----+----+--------------------------------+
//! | connection id |chan|flag|            sequence            |
//! |   u32 LE      | u8 | u8 |             u64 LE             |
//! +---------------+----+----+--------------------------------+
//! ```
//!
//! The connection id comes first so that its low byte is the first byte of
//! the UDP payload: the kernel's reuseport cBPF program reads it to pick the
//! owning core's socket. The sequence is the packet number: it is never
//! reused, it forms the AEAD nonce with the connection id, and the whole
//! header is the AEAD's associated data.

use super::WireError;

/// Byte offsets of the header's fields, named in one place.
pub mod field {
    use core::ops::Range;
    /// Connection id, `u32` little-endian.
    pub const CONNECTION_ID: Range<usize> = 0..4;
    /// Delivery channel, one byte.
    pub const CHANNEL: usize = 4;
    /// Flag bits, one byte.
    pub const FLAGS: usize = 5;
    /// Packet number, `u64` little-endian.
    pub const SEQUENCE: Range<usize> = 6..14;
    /// Where the payload starts.
    pub const PAYLOAD: usize = 14;
}

/// Length of the header in bytes.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// The delivery class of a datagram or a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Channel {
    /// Best effort: may be lost, duplicated by nobody, delivered at most once.
    Unreliable = 0,
    /// Delivered exactly once, in the order sent.
    ReliableOrdered = 1,
    /// Delivered exactly once, in any order.
    ReliableUnordered = 2,
}

impl Channel {
    /// All channels, in wire order.
    pub const ALL: [Channel; 3] = [
        Channel::Unreliable,
        Channel::ReliableOrdered,
        Channel::ReliableUnordered,
    ];

    /// The channel a wire byte names.
    #[inline]
    pub fn from_u8(value: u8) -> Result<Self, WireError> {
        match value {
            0 => Ok(Self::Unreliable),
            1 => Ok(Self::ReliableOrdered),
            2 => Ok(Self::ReliableUnordered),
            other => Err(WireError::UnknownChannel(other)),
        }
    }

    /// Whether messages on this channel are retransmitted until acknowledged.
    #[inline]
    pub fn is_reliable(self) -> bool {
        self != Self::Unreliable
    }
}

crate::flags! {
    /// The header's flag byte. Bit 0x80 is reserved and must be zero.
    pub struct HeaderFlags(u8) {
        /// The payload is sealed with the connection's AEAD.
        ENCRYPTED = 0x01,
        /// The AEAD is ChaCha20-Poly1305 (the only one defined).
        AEAD_CHACHA20_POLY1305 = 0x02,
        /// In a sealed packet: the key phase bit (set = odd key generation).
        REKEY = 0x04,
        /// The payload carries fragment frames.
        FRAGMENT = 0x08,
        /// The plaintext payload is LZ4-compressed.
        COMPRESSED = 0x10,
        /// The packet carries only acknowledgements.
        ACKNOWLEDGMENT = 0x20,
        /// A handshake packet: plaintext, ends with a CRC32C.
        RELIABLE_HANDSHAKE = 0x40,
    }
}

impl HeaderFlags {
    /// The bits that have a meaning.
    pub const KNOWN: u8 = Self::DECLARED;

    /// No flag set.
    #[inline]
    pub const fn empty() -> Self {
        Self::NONE
    }

    /// Flags from a wire byte; reserved bits are an error.
    #[inline]
    pub fn from_bits(bits: u8) -> Result<Self, WireError> {
        if bits & !Self::KNOWN != 0 {
            return Err(WireError::ReservedFlags(bits & !Self::KNOWN));
        }
        Ok(Self(bits))
    }
}

/// A checked view of a datagram: header plus payload.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors may then panic on a
    /// short buffer, so use this only on buffers of at least [`HEADER_LEN`].
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fails if the buffer is shorter than a header.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let available = self.buffer.as_ref().len();
        if available < HEADER_LEN {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                available,
            });
        }
        Ok(())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The connection id field.
    #[inline]
    pub fn connection_id(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The raw channel byte.
    #[inline]
    pub fn channel_raw(&self) -> u8 {
        self.buffer.as_ref()[field::CHANNEL]
    }

    /// The raw flag byte.
    #[inline]
    pub fn flags_raw(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The sequence (packet number) field.
    #[inline]
    pub fn sequence(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::SEQUENCE]);
        u64::from_le_bytes(bytes)
    }

    /// The 14 header bytes (the AEAD's associated data).
    #[inline]
    pub fn header_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the connection id field.
    #[inline]
    pub fn set_connection_id(&mut self, value: u32) {
        self.buffer.as_mut()[field::CONNECTION_ID].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets the channel byte.
    #[inline]
    pub fn set_channel(&mut self, value: Channel) {
        self.buffer.as_mut()[field::CHANNEL] = value as u8;
    }

    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, value: HeaderFlags) {
        self.buffer.as_mut()[field::FLAGS] = value.bits();
    }

    /// Sets the sequence field.
    #[inline]
    pub fn set_sequence(&mut self, value: u64) {
        self.buffer.as_mut()[field::SEQUENCE].copy_from_slice(&value.to_le_bytes());
    }

    /// The bytes after the header, mutably.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketHeader {
    /// Which connection the packet belongs to; its low byte names the core.
    pub connection_id: u32,
    /// The delivery class of the packet's content.
    pub channel: Channel,
    /// Flag bits.
    pub flags: HeaderFlags,
    /// The packet number.
    pub sequence: u64,
}

impl PacketHeader {
    /// Length on the wire.
    pub const LEN: usize = HEADER_LEN;

    /// Reads and validates the header of a checked packet.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, WireError> {
        Ok(Self {
            connection_id: packet.connection_id(),
            channel: Channel::from_u8(packet.channel_raw())?,
            flags: HeaderFlags::from_bits(packet.flags_raw())?,
            sequence: packet.sequence(),
        })
    }

    /// Reads a header from the front of `bytes`.
    #[inline]
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        Self::parse(&Packet::new_checked(bytes)?)
    }

    /// Writes the header into a packet buffer of at least [`HEADER_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_connection_id(self.connection_id);
        packet.set_channel(self.channel);
        packet.set_flags(self.flags);
        packet.set_sequence(self.sequence);
    }

    /// The header as its 14 wire bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut out[..]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: [u8; 14] = [
        0x01, 0x02, 0x03, 0x04, // connection id 0x04030201
        0x01, // ReliableOrdered
        0x23, // Encrypted | AEAD | Acknowledgment
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // sequence
    ];

    #[test]
    fn parse_vector() {
        let header = PacketHeader::parse_bytes(&VECTOR).unwrap();
        assert_eq!(
            header,
            PacketHeader {
                connection_id: 0x0403_0201,
                channel: Channel::ReliableOrdered,
                flags: HeaderFlags::ENCRYPTED
                    | HeaderFlags::AEAD_CHACHA20_POLY1305
                    | HeaderFlags::ACKNOWLEDGMENT,
                sequence: 0x0102_0304_0506_0708,
            }
        );
        assert_eq!(header.to_bytes(), VECTOR);
    }

    #[test]
    fn rejects_unknown_channel_reserved_bits_and_short_input() {
        let mut bad = VECTOR;
        bad[4] = 3;
        assert_eq!(
            PacketHeader::parse_bytes(&bad),
            Err(WireError::UnknownChannel(3))
        );
        let mut bad = VECTOR;
        bad[5] = 0x81;
        assert_eq!(
            PacketHeader::parse_bytes(&bad),
            Err(WireError::ReservedFlags(0x80))
        );
        assert_eq!(
            PacketHeader::parse_bytes(&VECTOR[..13]),
            Err(WireError::Truncated {
                needed: 14,
                available: 13
            })
        );
    }
}
