//! The decoder that faces the network: classifies a whole datagram and
//! decodes the frames of a plaintext payload.
//!
//! A datagram is either a handshake packet (plaintext, `ReliableHandshake`
//! flag, CRC32C trailer) or a sealed packet (`Encrypted` and
//! `AEAD_ChaCha20Poly1305` flags, ciphertext followed by a 16-byte tag).
//! Any other flag combination is refused here, before any cryptography.

use super::WireError;
use super::control::{
    Ack, CryptoTest, CryptoTestAck, Disconnect, Fragment, Handshake, IntegrityAnswer,
    IntegrityChallenge, Message, NewConnectionId, Ping, Pong, RekeyRequest, RekeyResponse,
    ReliableHandshake, TAG_LEN,
};
use super::frame::{Frame, FrameBody, frame_type};
use super::header::{HEADER_LEN, HeaderFlags, Packet, PacketHeader};
use crate::Side;

/// A datagram after its header was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A plaintext handshake packet, CRC verified and decoded.
    Handshake(PacketHeader, Handshake<'a>),
    /// A sealed packet, not yet opened.
    Sealed {
        /// The parsed header.
        header: PacketHeader,
        /// The 14 header bytes, the AEAD's associated data.
        aad: &'a [u8],
        /// Ciphertext followed by the tag.
        sealed: &'a [u8],
    },
}

/// Flags every sealed packet carries.
pub const SEALED_FLAGS: HeaderFlags =
    HeaderFlags::ENCRYPTED.union(HeaderFlags::AEAD_CHACHA20_POLY1305);

/// Classifies a datagram.
pub fn classify(bytes: &[u8]) -> Result<Datagram<'_>, WireError> {
    let packet = Packet::new_checked(bytes)?;
    let header = PacketHeader::parse(&packet)?;
    if header.flags.contains(HeaderFlags::RELIABLE_HANDSHAKE) {
        let (header, hs) = Handshake::decode(bytes)?;
        return Ok(Datagram::Handshake(header, hs));
    }
    if !header.flags.contains(SEALED_FLAGS) {
        return Err(WireError::InvalidValue {
            field: "sealed flags",
            value: u64::from(header.flags.bits()),
        });
    }
    let sealed = &bytes[HEADER_LEN..];
    if sealed.len() < TAG_LEN {
        return Err(WireError::Truncated {
            needed: HEADER_LEN + TAG_LEN,
            available: bytes.len(),
        });
    }
    Ok(Datagram::Sealed {
        header,
        aad: &bytes[..HEADER_LEN],
        sealed,
    })
}

/// A decoded frame of a sealed packet's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnyFrame<'a> {
    /// Frame 4.
    Ping(Ping),
    /// Frame 5.
    Pong(Pong),
    /// Frame 6.
    Disconnect(Disconnect),
    /// Frame 7.
    Ack(Ack),
    /// Frame 8.
    Fragment(Fragment<'a>),
    /// Frame 9.
    ReliableHandshake(ReliableHandshake),
    /// Frame 10.
    CryptoTest(CryptoTest),
    /// Frame 11.
    CryptoTestAck(CryptoTestAck),
    /// Frame 12 sent by the server.
    IntegrityChallenge(IntegrityChallenge),
    /// Frame 12 sent by the client.
    IntegrityAnswer(IntegrityAnswer),
    /// Frame 13.
    RekeyRequest(RekeyRequest),
    /// Frame 14.
    RekeyResponse(RekeyResponse),
    /// Frame 15.
    NewConnectionId(NewConnectionId),
    /// Frames 16–18.
    Message(Message<'a>),
    /// A type this version does not know; skipped by length.
    Unknown(u8),
}

/// Decodes one frame sent by `sender`.
pub fn decode_frame<'a>(frame: &Frame<'a>, sender: Side) -> Result<AnyFrame<'a>, WireError> {
    Ok(match frame.frame_type {
        frame_type::PING => AnyFrame::Ping(Ping::decode(frame)?),
        frame_type::PONG => AnyFrame::Pong(Pong::decode(frame)?),
        frame_type::DISCONNECT => AnyFrame::Disconnect(Disconnect::decode(frame)?),
        frame_type::ACK => AnyFrame::Ack(Ack::decode(frame)?),
        frame_type::FRAGMENT => AnyFrame::Fragment(Fragment::decode(frame)?),
        frame_type::RELIABLE_HANDSHAKE => {
            AnyFrame::ReliableHandshake(ReliableHandshake::decode(frame)?)
        }
        frame_type::CRYPTO_TEST => AnyFrame::CryptoTest(CryptoTest::decode(frame)?),
        frame_type::CRYPTO_TEST_ACK => AnyFrame::CryptoTestAck(CryptoTestAck::decode(frame)?),
        frame_type::CHECK_INTEGRITY => match sender {
            Side::Server => AnyFrame::IntegrityChallenge(IntegrityChallenge::decode(frame)?),
            Side::Client => AnyFrame::IntegrityAnswer(IntegrityAnswer::decode(frame)?),
        },
        frame_type::REKEY_REQUEST => AnyFrame::RekeyRequest(RekeyRequest::decode(frame)?),
        frame_type::REKEY_RESPONSE => AnyFrame::RekeyResponse(RekeyResponse::decode(frame)?),
        frame_type::NEW_CONNECTION_ID => AnyFrame::NewConnectionId(NewConnectionId::decode(frame)?),
        frame_type::MESSAGE_UNRELIABLE
        | frame_type::MESSAGE_RELIABLE_ORDERED
        | frame_type::MESSAGE_RELIABLE_UNORDERED => AnyFrame::Message(Message::decode(frame)?),
        other => AnyFrame::Unknown(other),
    })
}
