//! CRC32C trailers on the packets that travel before keys exist.
//!
//! Handshake packets are not sealed, so a CRC32C (Castagnoli, hardware
//! accelerated by the `crc32c` crate on SSE4.2 and ARMv8) over header and
//! body catches corruption before any parsing. It is not authentication:
//! the cookie's HMAC and the AEAD do that.

use crate::wire::{EncodeError, WireError};

/// Length of the trailer.
pub const CRC_LEN: usize = 4;

/// The CRC32C of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Appends the CRC32C of `buf[..len]` at `buf[len..len + 4]`, returning the
/// new length.
pub fn append(buf: &mut [u8], len: usize) -> Result<usize, EncodeError> {
    let end = len + CRC_LEN;
    if end > buf.len() {
        return Err(EncodeError::BufferFull {
            needed: CRC_LEN,
            available: buf.len().saturating_sub(len),
        });
    }
    let crc = crc32c(&buf[..len]);
    buf[len..end].copy_from_slice(&crc.to_le_bytes());
    Ok(end)
}

/// Checks the trailing CRC32C of `datagram` and returns the bytes it covers.
pub fn verify(datagram: &[u8]) -> Result<&[u8], WireError> {
    let Some(split) = datagram.len().checked_sub(CRC_LEN) else {
        return Err(WireError::Truncated {
            needed: CRC_LEN,
            available: datagram.len(),
        });
    };
    let (covered, trailer) = datagram.split_at(split);
    let expected = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32c(covered) != expected {
        return Err(WireError::BadChecksum);
    }
    Ok(covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn append_and_verify() {
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(b"handshak");
        let n = append(&mut buf, 8).unwrap();
        assert_eq!(verify(&buf[..n]).unwrap(), b"handshak");
        buf[3] ^= 1;
        assert_eq!(verify(&buf[..n]), Err(WireError::BadChecksum));
        assert!(verify(&buf[..3]).is_err());
        assert!(append(&mut buf, 9).is_err());
    }
}
