//! [`Reader`] and [`Writer`]: bounds-checked cursors over caller-owned bytes.
//!
//! This is the seeds' FlatBuffer done so that none of its three historical
//! failures can recur: every read checks the remaining length first (no
//! overflow or underflow), every multi-byte number is assembled from bytes in
//! little-endian order (no alignment assumption; `from_le_bytes` compiles to
//! an unaligned load), and nothing allocates.

use super::{EncodeError, WireError};

/// The most bytes a LEB128 encoding of a `u64` takes.
pub const MAX_VARINT_LEN: usize = 10;

/// A saved cursor position, restored with [`Reader::restore`] or
/// [`Writer::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(usize);

/// A two-byte varint slot that a [`Writer`] reserved for a value known only
/// after what follows it is written: see [`Writer::begin_len_prefixed`]
/// and [`Writer::reserve_varint_slot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a reserved slot must be filled"]
pub struct VarintSlot(usize);

impl VarintSlot {
    /// The position just before the slot: [`Writer::restore`] to it
    /// abandons the slot and everything written after it.
    #[inline]
    pub fn mark(self) -> Mark {
        Mark(self.0)
    }
}

/// The largest value a [`VarintSlot`] holds (the largest two-byte varint).
pub const MAX_VARINT_SLOT: u64 = (1 << 14) - 1;

/// A forward cursor that reads from a borrowed byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

macro_rules! read_le {
    ($($name:ident -> $ty:ty),* $(,)?) => {$(
        #[doc = concat!("Reads a little-endian `", stringify!($ty), "`.")]
        #[inline]
        pub fn $name(&mut self) -> Result<$ty, WireError> {
            let bytes = self.array::<{ core::mem::size_of::<$ty>() }>()?;
            Ok(<$ty>::from_le_bytes(bytes))
        }
    )*};
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was consumed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Remembers the current position.
    #[inline]
    pub fn save(&self) -> Mark {
        Mark(self.pos)
    }

    /// Returns to a position saved from this reader.
    #[inline]
    pub fn restore(&mut self, mark: Mark) {
        // A mark from another, longer buffer cannot move past this one's end.
        self.pos = mark.0.min(self.buf.len());
    }

    /// Takes the next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        // `pos <= buf.len()` always holds, so this slice never fails, and
        // after the length check the compiler needs no further one.
        let rest = &self.buf[self.pos..];
        if n > rest.len() {
            return Err(WireError::Truncated {
                needed: n,
                available: rest.len(),
            });
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    /// Skips `n` bytes.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.bytes(n).map(|_| ())
    }

    /// Everything not yet consumed, without consuming it: a fast path
    /// decodes a structure from it directly and then consumes what it used
    /// with [`advance`](Self::advance), or leaves the reader where it is and
    /// falls back to reading field by field.
    #[inline]
    pub fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Consumes `n` bytes (at most what is left) that were read through
    /// [`peek_rest`](Self::peek_rest).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.pos += n.min(self.remaining());
    }

    /// Takes everything that is left.
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Takes the next `N` bytes as an array.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        match self.buf[self.pos..].first_chunk::<N>() {
            Some(bytes) => {
                self.pos += N;
                Ok(*bytes)
            }
            None => Err(WireError::Truncated {
                needed: N,
                available: self.remaining(),
            }),
        }
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, WireError> {
        match self.buf.get(self.pos) {
            Some(&byte) => {
                self.pos += 1;
                Ok(byte)
            }
            None => Err(WireError::Truncated {
                needed: 1,
                available: 0,
            }),
        }
    }

    /// Reads one signed byte.
    #[inline]
    pub fn i8(&mut self) -> Result<i8, WireError> {
        Ok(i8::from_le_bytes([self.u8()?]))
    }

    read_le!(
        u16 -> u16, u32 -> u32, u64 -> u64,
        i16 -> i16, i32 -> i32, i64 -> i64,
        f32 -> f32, f64 -> f64,
    );

    /// Reads an unsigned LEB128 varint of at most 10 bytes. Overlong
    /// encodings (a final zero group after the first byte) and values past
    /// 64 bits are rejected, so every value has exactly one encoding.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Fast path: most varints on the wire (ids, small deltas, lengths
        // below 128) are one byte, which is always canonical.
        if let Some(&byte) = self.buf.get(self.pos) {
            if byte < 0x80 {
                self.pos += 1;
                return Ok(u64::from(byte));
            }
        }
        self.varint_multi()
    }

    /// The general varint decoder (any length, every check), for a first
    /// byte with its continuation bit set or no byte at all. Consumes what
    /// it read, also on an error.
    #[inline]
    fn varint_multi(&mut self) -> Result<u64, WireError> {
        // With ten bytes at hand, no single read can run out.
        if let Some(bytes) = self.buf[self.pos..].first_chunk::<MAX_VARINT_LEN>() {
            let mut value: u64 = 0;
            for (i, &byte) in bytes.iter().enumerate() {
                if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
                    self.pos += MAX_VARINT_LEN;
                    return Err(WireError::VarintTooLong);
                }
                value |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    self.pos += i + 1;
                    if byte == 0 && i > 0 {
                        return Err(WireError::VarintOverlong);
                    }
                    return Ok(value);
                }
            }
            // Not reached: a tenth byte of 0 or 1 ends the loop above.
            self.pos += MAX_VARINT_LEN;
            return Err(WireError::VarintTooLong);
        }
        self.varint_near_end()
    }

    /// [`varint_multi`](Self::varint_multi) with fewer than ten bytes left.
    #[inline(never)]
    fn varint_near_end(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = self.u8()?;
            let group = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
                // The tenth byte holds only bit 63.
                return Err(WireError::VarintTooLong);
            }
            value |= group << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(WireError::VarintOverlong);
                }
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// Reads a varint that must fit a `u32`.
    #[inline]
    pub fn varint_u32(&mut self) -> Result<u32, WireError> {
        u32::try_from(self.varint()?).map_err(|_| WireError::VarintOutOfRange)
    }

    /// Reads a varint that must fit a `usize` no larger than `max`.
    #[inline]
    pub fn varint_len(&mut self, max: usize) -> Result<usize, WireError> {
        let found = self.varint()?;
        match usize::try_from(found) {
            Ok(len) if len <= max => Ok(len),
            _ => Err(WireError::LengthExceeded { max, found }),
        }
    }

    /// Reads a ZigZag-encoded signed varint.
    #[inline]
    pub fn zigzag(&mut self) -> Result<i64, WireError> {
        Ok(zigzag_decode(self.varint()?))
    }

    /// Reads a ZigZag varint that must fit an `i32`.
    #[inline]
    pub fn zigzag_i32(&mut self) -> Result<i32, WireError> {
        i32::try_from(self.zigzag()?).map_err(|_| WireError::VarintOutOfRange)
    }

    /// Reads a varint length prefix (at most `max`) and that many bytes.
    #[inline]
    pub fn len_prefixed(&mut self, max: usize) -> Result<&'a [u8], WireError> {
        let len = self.varint_len(max)?;
        self.bytes(len)
    }

    /// Reads a length-prefixed UTF-8 string of at most `max` bytes.
    #[inline]
    pub fn str(&mut self, max: usize) -> Result<&'a str, WireError> {
        core::str::from_utf8(self.len_prefixed(max)?).map_err(|_| WireError::InvalidUtf8)
    }

    /// Fails unless every byte was consumed.
    #[inline]
    pub fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }

    /// A bit reader over the next `byte_len` bytes (bits LSB first).
    #[inline]
    pub fn bits(&mut self, byte_len: usize) -> Result<BitReader<'a>, WireError> {
        Ok(BitReader {
            bytes: self.bytes(byte_len)?,
            bit: 0,
        })
    }
}

/// A forward cursor that writes into a borrowed mutable byte slice.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

macro_rules! write_le {
    ($($name:ident($ty:ty)),* $(,)?) => {$(
        #[doc = concat!("Writes a little-endian `", stringify!($ty), "`.")]
        #[inline]
        pub fn $name(&mut self, value: $ty) -> Result<(), EncodeError> {
            *self.reserve_array()? = value.to_le_bytes();
            Ok(())
        }
    )*};
}

impl<'a> Writer<'a> {
    /// A writer positioned at the start of `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Room left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Remembers the current position.
    #[inline]
    pub fn save(&self) -> Mark {
        Mark(self.pos)
    }

    /// Returns to a saved position; bytes after it count as unwritten.
    #[inline]
    pub fn restore(&mut self, mark: Mark) {
        self.pos = mark.0.min(self.buf.len());
    }

    /// The bytes written so far.
    #[inline]
    pub fn written(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    /// The bytes written so far, mutably (to patch a length or checksum).
    #[inline]
    pub fn written_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.pos]
    }

    /// Reserves the next `n` bytes and returns them for the caller to fill.
    #[inline]
    pub fn reserve(&mut self, n: usize) -> Result<&mut [u8], EncodeError> {
        // `pos <= buf.len()` always holds, so this slice never fails, and
        // after the length check the compiler needs no further one.
        let rest = &mut self.buf[self.pos..];
        if n > rest.len() {
            return Err(EncodeError::BufferFull {
                needed: n,
                available: rest.len(),
            });
        }
        self.pos += n;
        Ok(&mut rest[..n])
    }

    /// Reserves the next `N` bytes as an array (for fixed-width fields).
    #[inline]
    fn reserve_array<const N: usize>(&mut self) -> Result<&mut [u8; N], EncodeError> {
        let rest = &mut self.buf[self.pos..];
        let available = rest.len();
        match rest.first_chunk_mut::<N>() {
            Some(out) => {
                self.pos += N;
                Ok(out)
            }
            None => Err(EncodeError::BufferFull {
                needed: N,
                available,
            }),
        }
    }

    /// The next `N` bytes, if at least `N` remain, to write in place
    /// without advancing: the fast path of a structure whose encoding has a
    /// known upper bound checks the room once instead of once per field,
    /// writes through this window, and then counts what it wrote with
    /// [`advance`](Self::advance).
    #[inline]
    pub fn spare<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        self.buf[self.pos..].first_chunk_mut::<N>()
    }

    /// Counts the next `n` bytes (at most what remains) as written, after
    /// they were written through [`spare`](Self::spare).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.pos += n.min(self.remaining());
    }

    /// Writes raw bytes.
    #[inline]
    pub fn bytes(&mut self, data: &[u8]) -> Result<(), EncodeError> {
        self.reserve(data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Writes `n` zero bytes.
    #[inline]
    pub fn zeros(&mut self, n: usize) -> Result<(), EncodeError> {
        self.reserve(n)?.fill(0);
        Ok(())
    }

    /// Writes one byte.
    #[inline]
    pub fn u8(&mut self, value: u8) -> Result<(), EncodeError> {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = value;
                self.pos += 1;
                Ok(())
            }
            None => Err(EncodeError::BufferFull {
                needed: 1,
                available: 0,
            }),
        }
    }

    /// Writes one signed byte.
    #[inline]
    pub fn i8(&mut self, value: i8) -> Result<(), EncodeError> {
        self.u8(value as u8)
    }

    write_le!(
        u16(u16),
        u32(u32),
        u64(u64),
        i16(i16),
        i32(i32),
        i64(i64),
        f32(f32),
        f64(f64),
    );

    /// Writes an unsigned LEB128 varint (1 to 10 bytes).
    #[inline]
    pub fn varint(&mut self, value: u64) -> Result<(), EncodeError> {
        if value < 0x80 {
            return self.u8(value as u8);
        }
        self.varint_multi(value)
    }

    /// A varint of two or more bytes, written in place; all or nothing.
    #[inline]
    fn varint_multi(&mut self, value: u64) -> Result<(), EncodeError> {
        let out = self.reserve(varint_len(value))?;
        let mut v = value;
        if let Some((last, head)) = out.split_last_mut() {
            for byte in head {
                *byte = v as u8 | 0x80;
                v >>= 7;
            }
            *last = v as u8;
        }
        Ok(())
    }

    /// Reserves two bytes for a varint whose value (at most
    /// [`MAX_VARINT_SLOT`]) is known only after what follows is written;
    /// [`fill_varint_slot`](Self::fill_varint_slot) writes it. Nothing is
    /// written if two bytes are not left.
    #[inline]
    pub fn reserve_varint_slot(&mut self) -> Result<VarintSlot, EncodeError> {
        let at = self.pos;
        self.reserve_array::<2>()?;
        Ok(VarintSlot(at))
    }

    /// Writes `value` into a slot of this writer in its canonical encoding,
    /// the same bytes [`varint`](Self::varint) writes: for a value below
    /// 128 that is one byte, and everything written after the slot moves
    /// down by one. Slots may nest; fill the inner one first.
    ///
    /// Fails if `value` exceeds [`MAX_VARINT_SLOT`], and then restores the
    /// writer to [`VarintSlot::mark`], dropping the slot and what followed
    /// it, so that no half-built structure is left behind. A slot the
    /// writer was restored past fails with `BufferFull` and changes nothing.
    #[inline]
    pub fn fill_varint_slot(&mut self, slot: VarintSlot, value: u64) -> Result<(), EncodeError> {
        let at = slot.0;
        let end = self.pos;
        if at + 2 > end {
            return Err(EncodeError::BufferFull {
                needed: at + 2,
                available: end,
            });
        }
        if value < 0x80 {
            self.buf[at] = value as u8;
            self.buf.copy_within(at + 2..end, at + 1);
            self.pos = end - 1;
            Ok(())
        } else if value <= MAX_VARINT_SLOT {
            self.buf[at] = value as u8 | 0x80;
            self.buf[at + 1] = (value >> 7) as u8;
            Ok(())
        } else {
            self.pos = at;
            Err(EncodeError::TooLong {
                max: MAX_VARINT_SLOT as usize,
                found: usize::try_from(value).unwrap_or(usize::MAX),
            })
        }
    }

    /// Starts a body whose varint length prefix is written when it ends,
    /// so that the body is written in place rather than copied in after
    /// its length is known. The body may be at most [`MAX_VARINT_SLOT`]
    /// bytes; end it with [`end_len_prefixed`](Self::end_len_prefixed).
    /// Nothing is written if two bytes are not left.
    #[inline]
    pub fn begin_len_prefixed(&mut self) -> Result<VarintSlot, EncodeError> {
        self.reserve_varint_slot()
    }

    /// Ends a body begun with [`begin_len_prefixed`](Self::begin_len_prefixed):
    /// writes the canonical length prefix (the same bytes as
    /// [`len_prefixed`](Self::len_prefixed)) and returns the body length.
    /// A body under 128 bytes moves down by one byte. A body longer than
    /// [`MAX_VARINT_SLOT`] fails with `TooLong`, and the writer returns to
    /// [`VarintSlot::mark`] (prefix and body dropped). Nested bodies end
    /// inner first.
    #[inline]
    pub fn end_len_prefixed(&mut self, slot: VarintSlot) -> Result<usize, EncodeError> {
        let len = self.pos.saturating_sub(slot.0 + 2);
        self.fill_varint_slot(slot, len as u64)?;
        Ok(len)
    }

    /// Writes a ZigZag-encoded signed varint.
    #[inline]
    pub fn zigzag(&mut self, value: i64) -> Result<(), EncodeError> {
        self.varint(zigzag_encode(value))
    }

    /// Writes a varint length prefix and the bytes, refusing more than `max`.
    #[inline]
    pub fn len_prefixed(&mut self, data: &[u8], max: usize) -> Result<(), EncodeError> {
        if data.len() > max {
            return Err(EncodeError::TooLong {
                max,
                found: data.len(),
            });
        }
        self.varint(data.len() as u64)?;
        self.bytes(data)
    }

    /// Writes a length-prefixed UTF-8 string of at most `max` bytes.
    #[inline]
    pub fn str(&mut self, value: &str, max: usize) -> Result<(), EncodeError> {
        self.len_prefixed(value.as_bytes(), max)
    }

    /// A bit writer over the next `byte_len` bytes, which it zeroes first.
    #[inline]
    pub fn bits(&mut self, byte_len: usize) -> Result<BitWriter<'_>, EncodeError> {
        let bytes = self.reserve(byte_len)?;
        bytes.fill(0);
        Ok(BitWriter { bytes, bit: 0 })
    }
}

/// Writes booleans and small unsigned fields bit by bit, least significant
/// bit first, into bytes a [`Writer`] reserved.
#[derive(Debug)]
pub struct BitWriter<'a> {
    bytes: &'a mut [u8],
    bit: usize,
}

impl BitWriter<'_> {
    /// Writes the low `count` bits of `value` (`count` ≤ 64).
    pub fn write(&mut self, value: u64, count: u32) -> Result<(), EncodeError> {
        let count = count.min(64) as usize;
        let available = self.bytes.len() * 8 - self.bit;
        if count > available {
            return Err(EncodeError::BufferFull {
                needed: count.div_ceil(8),
                available: available / 8,
            });
        }
        for i in 0..count {
            if value >> i & 1 == 1 {
                let at = self.bit + i;
                self.bytes[at / 8] |= 1 << (at % 8);
            }
        }
        self.bit += count;
        Ok(())
    }

    /// Writes one boolean.
    pub fn bool(&mut self, value: bool) -> Result<(), EncodeError> {
        self.write(u64::from(value), 1)
    }
}

/// Reads what a [`BitWriter`] wrote.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    /// Reads `count` bits (≤ 64) as an unsigned value.
    pub fn read(&mut self, count: u32) -> Result<u64, WireError> {
        let count = count.min(64) as usize;
        let available = self.bytes.len() * 8 - self.bit;
        if count > available {
            return Err(WireError::Truncated {
                needed: count.div_ceil(8),
                available: available / 8,
            });
        }
        let mut value = 0u64;
        for i in 0..count {
            let at = self.bit + i;
            value |= u64::from(self.bytes[at / 8] >> (at % 8) & 1) << i;
        }
        self.bit += count;
        Ok(value)
    }

    /// Reads one boolean.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.read(1)? == 1)
    }
}

/// Encodes `value` as LEB128 into `out`, returning the length used.
#[inline]
pub fn encode_varint(mut value: u64, out: &mut [u8; MAX_VARINT_LEN]) -> usize {
    let mut i = 0;
    loop {
        let group = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out[i] = group;
            return i + 1;
        }
        out[i] = group | 0x80;
        i += 1;
    }
}

/// The number of bytes the varint encoding of `value` takes.
#[inline]
pub fn varint_len(value: u64) -> usize {
    // One byte per started group of 7 bits, at least one.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Maps signed to unsigned so that small magnitudes stay small.
#[inline]
pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
#[inline]
pub fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_vectors() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            let mut buf = [0u8; 16];
            let mut w = Writer::new(&mut buf);
            w.varint(value).unwrap();
            assert_eq!(w.written(), bytes, "encoding {value}");
            assert_eq!(varint_len(value), bytes.len());
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint().unwrap(), value);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn varint_rejects_overlong_and_too_long() {
        assert_eq!(
            Reader::new(&[0x80, 0x00]).varint(),
            Err(WireError::VarintOverlong)
        );
        assert_eq!(
            Reader::new(&[0xff; 10]).varint(),
            Err(WireError::VarintTooLong)
        );
        let mut eleven = [0x80u8; 11];
        eleven[10] = 0x01;
        assert_eq!(Reader::new(&eleven).varint(), Err(WireError::VarintTooLong));
        // Bit 64 and above in the tenth byte.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(Reader::new(&over).varint(), Err(WireError::VarintTooLong));
        assert!(matches!(
            Reader::new(&[0x80]).varint(),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn zigzag_vectors() {
        for (v, z) in [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ] {
            assert_eq!(zigzag_encode(v), z);
            assert_eq!(zigzag_decode(z), v);
        }
    }

    #[test]
    fn fixed_width_is_little_endian_and_bounds_checked() {
        let mut buf = [0u8; 15];
        let mut w = Writer::new(&mut buf);
        w.u16(0x0102).unwrap();
        w.u32(0x0304_0506).unwrap();
        w.u64(0x0708_090a_0b0c_0d0e).unwrap();
        assert!(matches!(w.u8(1), Ok(())));
        assert!(matches!(w.u8(1), Err(EncodeError::BufferFull { .. })));
        assert_eq!(
            buf,
            [2, 1, 6, 5, 4, 3, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8, 7, 1]
        );
        let mut r = Reader::new(&buf[..13]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u32().unwrap(), 0x0304_0506);
        assert_eq!(
            r.u64(),
            Err(WireError::Truncated {
                needed: 8,
                available: 7
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.position(), 6);
    }

    #[test]
    fn strings_and_limits() {
        let mut buf = [0u8; 32];
        let mut w = Writer::new(&mut buf);
        w.str("héllo", 16).unwrap();
        assert_eq!(
            w.str("too long", 4),
            Err(EncodeError::TooLong { max: 4, found: 8 })
        );
        let n = w.position();
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(
            r.clone().str(3),
            Err(WireError::LengthExceeded { max: 3, found: 6 })
        );
        assert_eq!(r.str(16).unwrap(), "héllo");
        assert_eq!(
            Reader::new(&[2, 0xff, 0xfe]).str(8),
            Err(WireError::InvalidUtf8)
        );
    }

    #[test]
    fn save_and_restore() {
        let data = [1u8, 2, 3, 4];
        let mut r = Reader::new(&data);
        let mark = r.save();
        assert_eq!(r.u16().unwrap(), 0x0201);
        r.restore(mark);
        assert_eq!(r.u8().unwrap(), 1);
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        w.u8(9).unwrap();
        let mark = w.save();
        w.u16(7).unwrap();
        w.restore(mark);
        w.u8(5).unwrap();
        assert_eq!(w.written(), &[9, 5]);
    }

    #[test]
    fn bits_round_trip() {
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        let mut bits = w.bits(2).unwrap();
        bits.bool(true).unwrap();
        bits.write(0b101, 3).unwrap();
        bits.write(0x7f, 7).unwrap();
        assert!(bits.write(0, 6).is_err());
        assert_eq!(&buf[..2], &[0b1111_1011, 0b0000_0111]);
        let mut r = Reader::new(&buf[..2]);
        let mut bits = r.bits(2).unwrap();
        assert!(bits.bool().unwrap());
        assert_eq!(bits.read(3).unwrap(), 0b101);
        assert_eq!(bits.read(7).unwrap(), 0x7f);
        assert!(bits.read(6).is_err());
    }

    /// The varint decoder as it was before its fast paths, byte by byte.
    fn reference_varint(r: &mut Reader<'_>) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let byte = r.u8()?;
            let group = u64::from(byte & 0x7f);
            if i == MAX_VARINT_LEN - 1 && byte > 0x01 {
                return Err(WireError::VarintTooLong);
            }
            value |= group << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(WireError::VarintOverlong);
                }
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// Values of every encoded length, with the edges of each.
    fn varint_values() -> Vec<u64> {
        let mut values = vec![0, 1, u64::MAX, u64::MAX - 1];
        for bits in (7..64).step_by(7) {
            let edge = 1u64 << bits;
            values.extend([edge - 1, edge, edge + 1]);
        }
        let mut rng = crate::rng::SplitMix64::new(0x9e37_79b9_7f4a_7c15);
        for i in 0..500 {
            values.push(rng.next_u64() >> (i % 64));
        }
        values
    }

    #[test]
    fn varint_writer_matches_encode_varint_and_is_all_or_nothing() {
        for value in varint_values() {
            let mut want = [0u8; MAX_VARINT_LEN];
            let len = encode_varint(value, &mut want);
            assert_eq!(len, varint_len(value));
            for room in 0..=len + 1 {
                let mut buf = [0xeeu8; 1 + MAX_VARINT_LEN + 1];
                let mut w = Writer::new(&mut buf[..1 + room]);
                w.u8(7).unwrap();
                let result = w.varint(value);
                if room >= len {
                    assert_eq!(result, Ok(()));
                    assert_eq!(&w.written()[1..], &want[..len], "{value}");
                } else {
                    assert_eq!(
                        result,
                        Err(EncodeError::BufferFull {
                            needed: len,
                            available: room
                        })
                    );
                    assert_eq!(w.position(), 1);
                }
            }
            let mut buf = [0u8; MAX_VARINT_LEN];
            let mut w = Writer::new(&mut buf);
            w.zigzag(value as i64).unwrap();
            let mut r = Reader::new(w.written());
            assert_eq!(r.zigzag().unwrap(), value as i64);
        }
    }

    #[test]
    fn varint_reader_matches_the_byte_by_byte_decoder() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for value in varint_values() {
            let mut buf = [0u8; MAX_VARINT_LEN];
            let len = encode_varint(value, &mut buf);
            inputs.push(buf[..len].to_vec());
        }
        // Every sequence of up to three bytes from a set that hits each
        // branch, then longer ones built from the same set.
        let interesting = [0x00u8, 0x01, 0x02, 0x0f, 0x10, 0x7f, 0x80, 0x81, 0xfe, 0xff];
        for &a in &interesting {
            inputs.push(vec![a]);
            for &b in &interesting {
                inputs.push(vec![a, b]);
                for &c in &interesting {
                    inputs.push(vec![a, b, c]);
                }
            }
        }
        for len in 4..=12 {
            for (i, &last) in interesting.iter().enumerate() {
                let mut v = vec![0x80 | i as u8; len];
                v[len - 1] = last;
                inputs.push(v.clone());
                v[0] = 0xff;
                inputs.push(v);
            }
        }
        inputs.push(vec![]);
        for input in inputs {
            // Alone (fewer than ten bytes left) and followed by more bytes
            // (the ten-byte window).
            for pad in [0usize, 1, 12] {
                let mut bytes = input.clone();
                bytes.extend(std::iter::repeat_n(0x55, pad));
                let mut a = Reader::new(&bytes);
                let mut b = Reader::new(&bytes);
                assert_eq!(a.varint(), reference_varint(&mut b), "{bytes:02x?}");
                assert_eq!(a.position(), b.position(), "{bytes:02x?}");
            }
        }
    }

    #[test]
    fn single_bytes_report_as_before() {
        assert_eq!(
            Reader::new(&[]).u8(),
            Err(WireError::Truncated {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(
            Reader::new(&[1]).u16(),
            Err(WireError::Truncated {
                needed: 2,
                available: 1
            })
        );
        let mut buf = [0u8; 1];
        let mut w = Writer::new(&mut buf);
        assert_eq!(
            w.u16(1),
            Err(EncodeError::BufferFull {
                needed: 2,
                available: 1
            })
        );
        w.i8(-1).unwrap();
        assert_eq!(
            w.u8(1),
            Err(EncodeError::BufferFull {
                needed: 1,
                available: 0
            })
        );
        assert_eq!(buf, [0xff]);
    }

    /// `body` written in place after a marker byte, and as `len_prefixed`.
    fn in_place_and_copied(body: &[u8]) -> (Result<Vec<u8>, EncodeError>, Vec<u8>) {
        let mut buf = vec![0u8; body.len() + 8];
        let mut w = Writer::new(&mut buf);
        w.u8(0xaa).unwrap();
        let slot = w.begin_len_prefixed().unwrap();
        w.bytes(body).unwrap();
        let ours = match w.end_len_prefixed(slot) {
            Ok(len) => {
                assert_eq!(len, body.len());
                Ok(w.written().to_vec())
            }
            Err(e) => {
                // Dropped back to before the slot.
                assert_eq!(w.written(), &[0xaa]);
                Err(e)
            }
        };
        let mut buf = vec![0u8; body.len() + 8];
        let mut w = Writer::new(&mut buf);
        w.u8(0xaa).unwrap();
        w.len_prefixed(body, usize::MAX).unwrap();
        (ours, w.written().to_vec())
    }

    #[test]
    fn len_prefixed_in_place_matches_len_prefixed() {
        for len in [0usize, 1, 126, 127, 128, 129, 300, 16_383] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let (ours, theirs) = in_place_and_copied(&body);
            assert_eq!(ours.unwrap(), theirs, "body of {len}");
        }
        let body = vec![1u8; 16_384];
        assert_eq!(
            in_place_and_copied(&body).0,
            Err(EncodeError::TooLong {
                max: 16_383,
                found: 16_384
            })
        );
    }

    #[test]
    fn len_prefixed_in_place_nests() {
        // Inner bodies on both sides of 128, and an outer body that becomes
        // 127 bytes only once the inner prefix shrinks.
        for (inner, tail) in [(125usize, 1usize), (126, 0), (127, 3), (128, 0), (200, 5)] {
            let inner_body: Vec<u8> = (0..inner).map(|i| i as u8).collect();
            let tail_body = vec![0xbbu8; tail];
            let mut buf = [0u8; 512];
            let mut w = Writer::new(&mut buf);
            let outer = w.begin_len_prefixed().unwrap();
            w.u8(0x11).unwrap();
            let slot = w.begin_len_prefixed().unwrap();
            w.bytes(&inner_body).unwrap();
            assert_eq!(w.end_len_prefixed(slot).unwrap(), inner);
            w.bytes(&tail_body).unwrap();
            w.end_len_prefixed(outer).unwrap();
            let ours = w.written().to_vec();

            let mut inner_buf = [0u8; 512];
            let mut iw = Writer::new(&mut inner_buf);
            iw.u8(0x11).unwrap();
            iw.len_prefixed(&inner_body, usize::MAX).unwrap();
            iw.bytes(&tail_body).unwrap();
            let mut buf = [0u8; 512];
            let mut w = Writer::new(&mut buf);
            w.len_prefixed(iw.written(), usize::MAX).unwrap();
            assert_eq!(ours, w.written(), "inner {inner}, tail {tail}");
        }
    }

    #[test]
    fn varint_slots() {
        for value in [0u64, 1, 127, 128, 300, 16_383] {
            let mut buf = [0u8; 8];
            let mut w = Writer::new(&mut buf);
            let slot = w.reserve_varint_slot().unwrap();
            w.bytes(&[1, 2, 3]).unwrap();
            w.fill_varint_slot(slot, value).unwrap();
            let mut want = [0u8; 8];
            let mut ww = Writer::new(&mut want);
            ww.varint(value).unwrap();
            ww.bytes(&[1, 2, 3]).unwrap();
            assert_eq!(w.written(), ww.written(), "{value}");
        }
        // Too large: dropped back to before the slot.
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.u8(9).unwrap();
        let slot = w.reserve_varint_slot().unwrap();
        w.u8(1).unwrap();
        assert_eq!(
            w.fill_varint_slot(slot, 16_384),
            Err(EncodeError::TooLong {
                max: 16_383,
                found: 16_384
            })
        );
        assert_eq!(w.written(), &[9]);
        // A slot the writer was restored past changes nothing.
        let slot = w.reserve_varint_slot().unwrap();
        w.restore(slot.mark());
        w.u8(5).unwrap();
        assert!(matches!(
            w.fill_varint_slot(slot, 1),
            Err(EncodeError::BufferFull { .. })
        ));
        assert_eq!(w.written(), &[9, 5]);
        // No room for a slot: nothing written.
        let mut buf = [0u8; 1];
        let mut w = Writer::new(&mut buf);
        assert_eq!(
            w.begin_len_prefixed(),
            Err(EncodeError::BufferFull {
                needed: 2,
                available: 1
            })
        );
        assert_eq!(w.position(), 0);
    }

    #[test]
    fn spare_and_peek_windows() {
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        w.u8(1).unwrap();
        assert!(w.spare::<6>().is_none());
        let window = w.spare::<5>().unwrap();
        window[..2].copy_from_slice(&[2, 3]);
        w.advance(2);
        assert_eq!(w.written(), &[1, 2, 3]);
        // Advancing is clamped to the room left.
        w.advance(100);
        assert_eq!(w.position(), 6);

        let data = [1u8, 2, 3];
        let mut r = Reader::new(&data);
        r.skip(1).unwrap();
        assert_eq!(r.peek_rest(), &[2, 3]);
        assert_eq!(r.position(), 1);
        r.advance(1);
        assert_eq!(r.u8().unwrap(), 3);
        r.advance(5);
        assert!(r.is_empty());
    }
}
