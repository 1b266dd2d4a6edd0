//! Length-delimited frames: the unit inside a datagram payload.
//!
//! ```text
//! +------+----------------+------------------+
//! | type | length varint  | body (length B)  |
//! |  u8  | 1..=10 bytes   |                  |
//! +------+----------------+------------------+
//! ```
//!
//! A payload is a sequence of frames and nothing else. Because every body
//! is sliced by its length before it is decoded, a body that fails to
//! decode is rejected alone: the next frame is found from the length, never
//! from how far the failed decoder got. Unknown types are skipped by length,
//! so new frame types can be added without breaking old receivers. Only a
//! length that runs past the end of the payload ends the iteration, since no
//! later boundary can be trusted after it.
//!
//! A sender can write a frame body in place ([`begin_frame`], then the body,
//! then [`end_frame`]) instead of building it elsewhere and copying it in:
//! two bytes are reserved for the length, which is written canonically at
//! the end, so the bytes are the same as those of [`encode_raw_frame`].

use super::buf::{Mark, VarintSlot, varint_len};
use super::control::Message;
use super::{Channel, EncodeError, Reader, WireError, Writer};

/// Frame type numbers. 4–14 keep the seed's control packet numbers (§10.3).
pub mod frame_type {
    /// Heartbeat request.
    pub const PING: u8 = 4;
    /// Heartbeat response.
    pub const PONG: u8 = 5;
    /// The sender closes the connection.
    pub const DISCONNECT: u8 = 6;
    /// Acknowledgement of packet numbers.
    pub const ACK: u8 = 7;
    /// One piece of a message larger than a datagram.
    pub const FRAGMENT: u8 = 8;
    /// Reliable channel limits of the sender.
    pub const RELIABLE_HANDSHAKE: u8 = 9;
    /// Proof that the sender's keys work.
    pub const CRYPTO_TEST: u8 = 10;
    /// Echo of a crypto test.
    pub const CRYPTO_TEST_ACK: u8 = 11;
    /// Integrity challenge (server to client) or answer (client to server).
    pub const CHECK_INTEGRITY: u8 = 12;
    /// Start of a key rotation.
    pub const REKEY_REQUEST: u8 = 13;
    /// Answer to a key rotation.
    pub const REKEY_RESPONSE: u8 = 14;
    /// The server assigns the connection a new id (extension).
    pub const NEW_CONNECTION_ID: u8 = 15;
    /// An application message on the unreliable channel (extension).
    pub const MESSAGE_UNRELIABLE: u8 = 16;
    /// An application message on the reliable ordered channel (extension).
    pub const MESSAGE_RELIABLE_ORDERED: u8 = 17;
    /// An application message on the reliable unordered channel (extension).
    pub const MESSAGE_RELIABLE_UNORDERED: u8 = 18;
}

/// A frame body type with a fixed frame type number.
pub trait FrameBody<'a>: Sized {
    /// The frame type byte.
    const TYPE: u8;
    /// Length of the encoded body.
    fn body_len(&self) -> usize;
    /// Writes the body (exactly `body_len` bytes).
    fn encode_body(&self, w: &mut Writer<'_>) -> Result<(), EncodeError>;
    /// Reads a body that must fill `r` exactly.
    fn decode_body(r: &mut Reader<'a>) -> Result<Self, WireError>;

    /// Length of the whole frame: type, length varint and body.
    fn frame_len(&self) -> usize {
        let body = self.body_len();
        1 + varint_len(body as u64) + body
    }

    /// Writes the whole frame. On a full buffer nothing is written.
    fn encode_frame(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if self.frame_len() > w.remaining() {
            return Err(EncodeError::BufferFull {
                needed: self.frame_len(),
                available: w.remaining(),
            });
        }
        w.u8(Self::TYPE)?;
        w.varint(self.body_len() as u64)?;
        self.encode_body(w)
    }

    /// Decodes a body taken from a [`Frame`] of this type.
    fn decode(frame: &Frame<'a>) -> Result<Self, WireError> {
        if frame.frame_type != Self::TYPE {
            return Err(WireError::UnknownType(frame.frame_type));
        }
        let mut r = Reader::new(frame.body);
        let out = Self::decode_body(&mut r)?;
        r.finish()?;
        Ok(out)
    }
}

/// One frame as sliced from a payload, body not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The type byte.
    pub frame_type: u8,
    /// The body bytes.
    pub body: &'a [u8],
}

/// Iterates over the frames of a payload.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    reader: Reader<'a>,
    max_body: usize,
    done: bool,
}

impl<'a> Frames<'a> {
    /// Frames of `payload`, with bodies of at most `max_body` bytes.
    pub fn new(payload: &'a [u8], max_body: usize) -> Self {
        Self {
            reader: Reader::new(payload),
            max_body,
            done: false,
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.reader.is_empty() {
            return None;
        }
        let result = (|| {
            let frame_type = self.reader.u8()?;
            let len = self.reader.varint_len(self.max_body)?;
            let body = self.reader.bytes(len)?;
            Ok(Frame { frame_type, body })
        })();
        if result.is_err() {
            // No later boundary can be trusted.
            self.done = true;
        }
        Some(result)
    }
}

/// Writes a frame of an arbitrary type with a raw body.
pub fn encode_raw_frame(
    w: &mut Writer<'_>,
    frame_type: u8,
    body: &[u8],
) -> Result<(), EncodeError> {
    let needed = 1 + varint_len(body.len() as u64) + body.len();
    if needed > w.remaining() {
        return Err(EncodeError::BufferFull {
            needed,
            available: w.remaining(),
        });
    }
    w.u8(frame_type)?;
    w.varint(body.len() as u64)?;
    w.bytes(body)
}

/// Length of a frame with a body of `body_len` bytes.
pub fn raw_frame_len(body_len: usize) -> usize {
    1 + varint_len(body_len as u64) + body_len
}

/// The most bytes a frame body written in place (with [`begin_frame`]) may
/// take: its length must fit the two bytes reserved for it.
pub const MAX_IN_PLACE_BODY: usize = super::buf::MAX_VARINT_SLOT as usize;

/// A frame being written in place: its type byte is written and two bytes
/// are reserved for its length. End it with [`end_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a frame begun in place must be ended with end_frame"]
pub struct FrameMark {
    start: Mark,
    len: VarintSlot,
}

impl FrameMark {
    /// The position before the frame: [`Writer::restore`] to it abandons
    /// the frame.
    #[inline]
    pub fn start(&self) -> Mark {
        self.start
    }
}

/// Starts a frame whose body the caller then writes in place, directly
/// behind the type byte and a reserved length, instead of building the body
/// elsewhere and copying it in. The body may be at most
/// [`MAX_IN_PLACE_BODY`] bytes. Nothing is written if the three bytes of
/// type and length do not fit.
#[inline]
pub fn begin_frame(w: &mut Writer<'_>, frame_type: u8) -> Result<FrameMark, EncodeError> {
    if w.remaining() < 3 {
        return Err(EncodeError::BufferFull {
            needed: 3,
            available: w.remaining(),
        });
    }
    let start = w.save();
    w.u8(frame_type)?;
    let len = w.begin_len_prefixed()?;
    Ok(FrameMark { start, len })
}

/// Starts an application message frame ([`Message`]) in place: type, length
/// and, on a reliable channel, the message id; the caller writes the
/// message bytes and ends it with [`end_frame`]. All or nothing.
#[inline]
pub fn begin_message_frame(
    w: &mut Writer<'_>,
    channel: Channel,
    message_id: u64,
) -> Result<FrameMark, EncodeError> {
    let frame = begin_frame(w, Message::frame_type(channel))?;
    if channel.is_reliable() {
        if let Err(e) = w.varint(message_id) {
            w.restore(frame.start);
            return Err(e);
        }
    }
    Ok(frame)
}

/// Ends a frame begun with [`begin_frame`]: writes the body length in its
/// canonical encoding, so the frame is byte for byte what
/// [`encode_raw_frame`] writes for the same body (a body under 128 bytes
/// moves down by one byte). Returns the body length. A body longer than
/// [`MAX_IN_PLACE_BODY`] fails with `TooLong` and drops the whole frame.
/// A frame the writer was restored past fails with `BufferFull` and
/// changes nothing.
#[inline]
pub fn end_frame(w: &mut Writer<'_>, frame: FrameMark) -> Result<usize, EncodeError> {
    match w.end_len_prefixed(frame.len) {
        // The writer is back before the length; drop the type byte too.
        Err(e @ EncodeError::TooLong { .. }) => {
            w.restore(frame.start);
            Err(e)
        }
        // Ok, or a mark the writer was already restored past.
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_body_does_not_shift_the_next_frame() {
        // Frame 1: type 200 (unknown), 3-byte body. Frame 2: PING with a
        // 2-byte body that a 4-byte decoder rejects. Frame 3: PONG, id 7.
        let payload = [200, 3, 1, 2, 3, 4, 2, 0xaa, 0xbb, 5, 4, 7, 0, 0, 0];
        let frames: Vec<_> = Frames::new(&payload, 1200).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(
            frames[0],
            Ok(Frame {
                frame_type: 200,
                body: &[1, 2, 3]
            })
        );
        let ping = frames[1].unwrap();
        assert!(super::super::control::Ping::decode(&ping).is_err());
        let pong = super::super::control::Pong::decode(&frames[2].unwrap()).unwrap();
        assert_eq!(pong.id, 7);
    }

    #[test]
    fn overrun_ends_iteration() {
        let payload = [4, 9, 1, 2];
        let mut frames = Frames::new(&payload, 1200);
        assert!(matches!(
            frames.next(),
            Some(Err(WireError::Truncated { .. }))
        ));
        assert_eq!(frames.next(), None);
        let payload = [4, 0x80, 0x01];
        let mut frames = Frames::new(&payload, 100);
        assert!(matches!(
            frames.next(),
            Some(Err(WireError::LengthExceeded { .. }))
        ));
    }

    /// A frame written in place, and the same frame by `encode_raw_frame`.
    fn both_ways(frame_type: u8, body: &[u8]) -> (Result<Vec<u8>, EncodeError>, Vec<u8>) {
        let mut buf = vec![0u8; body.len() + 16];
        let mut w = Writer::new(&mut buf);
        w.u8(0xaa).unwrap();
        let frame = begin_frame(&mut w, frame_type).unwrap();
        w.bytes(body).unwrap();
        let ours = match end_frame(&mut w, frame) {
            Ok(len) => {
                assert_eq!(len, body.len());
                Ok(w.written().to_vec())
            }
            Err(e) => {
                assert_eq!(w.written(), &[0xaa]);
                Err(e)
            }
        };
        let mut buf = vec![0u8; body.len() + 16];
        let mut w = Writer::new(&mut buf);
        w.u8(0xaa).unwrap();
        encode_raw_frame(&mut w, frame_type, body).unwrap();
        (ours, w.written().to_vec())
    }

    #[test]
    fn frames_in_place_match_copied_frames() {
        for len in [0usize, 1, 127, 128, 1_180, 16_383] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let (ours, theirs) = both_ways(200, &body);
            let ours = ours.unwrap();
            assert_eq!(ours, theirs, "body of {len}");
            assert_eq!(ours.len(), 1 + raw_frame_len(len));
            let frame = Frames::new(&ours[1..], 16_383).next().unwrap().unwrap();
            assert_eq!(frame.frame_type, 200);
            assert_eq!(frame.body, &body[..]);
        }
        assert_eq!(
            both_ways(200, &vec![0u8; MAX_IN_PLACE_BODY + 1]).0,
            Err(EncodeError::TooLong {
                max: MAX_IN_PLACE_BODY,
                found: MAX_IN_PLACE_BODY + 1
            })
        );
    }

    #[test]
    fn begin_frame_needs_three_bytes() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        w.u8(1).unwrap();
        assert_eq!(
            begin_frame(&mut w, 4),
            Err(EncodeError::BufferFull {
                needed: 3,
                available: 2
            })
        );
        assert_eq!(w.position(), 1);
        // A frame abandoned through its start mark.
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        let frame = begin_frame(&mut w, 4).unwrap();
        w.u8(1).unwrap();
        w.restore(frame.start());
        assert_eq!(w.position(), 0);
        // Ending it now changes nothing.
        assert!(matches!(
            end_frame(&mut w, frame),
            Err(EncodeError::BufferFull { .. })
        ));
        assert_eq!(w.position(), 0);
    }

    #[test]
    fn message_frames_in_place_match_message_encode_frame() {
        for channel in [
            Channel::Unreliable,
            Channel::ReliableOrdered,
            Channel::ReliableUnordered,
        ] {
            for len in [0usize, 5, 126, 127, 128, 400] {
                let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let message_id = 70_000;
                let mut buf = vec![0u8; len + 16];
                let mut w = Writer::new(&mut buf);
                let frame = begin_message_frame(&mut w, channel, message_id).unwrap();
                w.bytes(&data).unwrap();
                end_frame(&mut w, frame).unwrap();
                let ours = w.written().to_vec();
                let mut buf = vec![0u8; len + 16];
                let mut w = Writer::new(&mut buf);
                Message {
                    channel,
                    message_id,
                    data: &data,
                }
                .encode_frame(&mut w)
                .unwrap();
                assert_eq!(ours, w.written(), "{channel:?}, {len} bytes");
            }
        }
        // No room for the message id: nothing written.
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        assert!(begin_message_frame(&mut w, Channel::ReliableOrdered, 70_000).is_err());
        assert_eq!(w.position(), 0);
    }
}
