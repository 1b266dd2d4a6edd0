//! LZ4 compression of datagram payloads, decided by size and entropy.
//!
//! A compressed payload is the uncompressed length as a varint followed by
//! one LZ4 block (lz4_flex's block format). The sender compresses only
//! payloads longer than the threshold (512 bytes by default) whose byte
//! entropy estimate says LZ4 can win, and keeps the result only if it is
//! smaller. The receiver refuses to decompress anything that claims to be
//! larger than its configured maximum or its output buffer, before touching
//! the block: a decompression bomb costs one varint read.

use crate::wire::{Reader, WireError, Writer};
use core::fmt;

/// Payloads at or below this many bytes are never compressed (seed §2.4).
pub const DEFAULT_THRESHOLD: usize = 512;

/// Estimated bits of entropy per byte above which LZ4 is not tried: random
/// or already-encrypted data sits near 8.
pub const ENTROPY_LIMIT_BITS: f32 = 7.0;

/// Why a compressed payload could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecompressError {
    /// The length prefix is malformed.
    Header(WireError),
    /// The payload claims an uncompressed size above the allowed maximum.
    TooLarge {
        /// The size claimed.
        claimed: usize,
        /// The largest size accepted.
        max: usize,
    },
    /// The LZ4 block is malformed or does not produce the claimed size.
    Corrupt,
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Header(e) => write!(f, "bad compressed length: {e}"),
            Self::TooLarge { claimed, max } => {
                write!(f, "decompressed size {claimed} exceeds the maximum {max}")
            }
            Self::Corrupt => f.write_str("corrupt LZ4 block"),
        }
    }
}

impl std::error::Error for DecompressError {}

/// Bytes the entropy estimate samples: the start of the payload.
const ENTROPY_SAMPLE: usize = 256;

/// `-(c/n)·log2(c/n)` for every count `c` of a full sample of `n` =
/// [`ENTROPY_SAMPLE`] bytes, computed once: the estimate is then 256
/// additions, with no logarithm on the per-packet path.
fn entropy_table() -> &'static [f32; ENTROPY_SAMPLE + 1] {
    static TABLE: std::sync::OnceLock<[f32; ENTROPY_SAMPLE + 1]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f32; ENTROPY_SAMPLE + 1];
        for (c, v) in t.iter_mut().enumerate().skip(1) {
            let p = c as f32 / ENTROPY_SAMPLE as f32;
            *v = -p * p.log2();
        }
        t
    })
}

/// An estimate of the Shannon entropy of `data` in bits per byte, from a
/// byte histogram of its first 256 bytes (all of it when shorter).
pub fn entropy_bits_per_byte(data: &[u8]) -> f32 {
    let sample = &data[..data.len().min(ENTROPY_SAMPLE)];
    if sample.is_empty() {
        return 0.0;
    }
    let mut counts = [0u16; 256];
    for &b in sample {
        counts[usize::from(b)] += 1;
    }
    if sample.len() == ENTROPY_SAMPLE {
        let table = entropy_table();
        return counts.iter().map(|&c| table[usize::from(c)]).sum();
    }
    let n = sample.len() as f32;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f32::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether a payload is worth trying to compress.
pub fn should_compress(data: &[u8], threshold: usize) -> bool {
    data.len() > threshold && entropy_bits_per_byte(data) < ENTROPY_LIMIT_BITS
}

/// Compresses `input` into `out` as varint length + LZ4 block. Returns the
/// bytes used, or `None` when it would not be smaller than the input or does
/// not fit `out` (the caller then sends the input uncompressed).
pub fn compress_into(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut w = Writer::new(out);
    w.varint(input.len() as u64).ok()?;
    let start = w.position();
    let room = w.remaining();
    if room < lz4_flex::block::get_maximum_output_size(input.len()) {
        // lz4_flex requires worst-case room; compress into a stack buffer
        // sized for one MTU-class payload instead.
        let mut scratch = [0u8; 2048];
        if input.len() > 1536 {
            return None;
        }
        let n = lz4_flex::block::compress_into(input, &mut scratch).ok()?;
        if start + n >= input.len() || n > room {
            return None;
        }
        w.bytes(&scratch[..n]).ok()?;
        return Some(w.position());
    }
    let n = lz4_flex::block::compress_into(input, &mut out[start..]).ok()?;
    (start + n < input.len()).then_some(start + n)
}

/// Decompresses a payload written by [`compress_into`] into `out`, refusing
/// sizes above `max` or `out.len()`. Returns the decompressed length.
pub fn decompress_into(input: &[u8], out: &mut [u8], max: usize) -> Result<usize, DecompressError> {
    let mut r = Reader::new(input);
    let limit = max.min(out.len());
    let claimed = match r.varint_len(limit) {
        Ok(n) => n,
        Err(WireError::LengthExceeded { found, .. }) => {
            return Err(DecompressError::TooLarge {
                claimed: usize::try_from(found).unwrap_or(usize::MAX),
                max: limit,
            });
        }
        Err(e) => return Err(DecompressError::Header(e)),
    };
    let block = r.rest();
    let n = lz4_flex::block::decompress_into(block, &mut out[..claimed])
        .map_err(|_| DecompressError::Corrupt)?;
    if n != claimed {
        return Err(DecompressError::Corrupt);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_entropy_gate() {
        let low: Vec<u8> = (0..1000u32).map(|i| (i % 7) as u8).collect();
        assert!(should_compress(&low, DEFAULT_THRESHOLD));
        assert!(!should_compress(&low[..512], DEFAULT_THRESHOLD));
        let mut out = [0u8; 1200];
        let n = compress_into(&low, &mut out).unwrap();
        assert!(n < 100, "{n}");
        let mut back = [0u8; 2000];
        let m = decompress_into(&out[..n], &mut back, 4096).unwrap();
        assert_eq!(&back[..m], &low[..]);

        let mut rng = crate::rng::SplitMix64::new(0x1234_5678);
        let noise: Vec<u8> = (0..1000).map(|_| rng.next_u64() as u8).collect();
        assert!(entropy_bits_per_byte(&noise) > ENTROPY_LIMIT_BITS);
        assert!(!should_compress(&noise, DEFAULT_THRESHOLD));
    }

    #[test]
    fn bomb_is_refused_before_decoding() {
        // Claims 1 GiB.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x1f, 0x00];
        let mut out = [0u8; 1200];
        assert_eq!(
            decompress_into(&bomb, &mut out, 262_144),
            Err(DecompressError::TooLarge {
                claimed: 1 << 30,
                max: 1200
            })
        );
        assert_eq!(
            decompress_into(&[10, 0xff, 0xff], &mut out, 4096),
            Err(DecompressError::Corrupt)
        );
    }
}
