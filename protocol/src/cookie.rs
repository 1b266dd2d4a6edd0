//! Stateless address-validation cookies (HMAC-SHA256).
//!
//! A cookie binds the client's address and nonce, a timestamp and the
//! connection id the server assigns. The server keeps nothing for a client
//! until the cookie comes back: it recomputes the MAC. The MAC key rotates:
//! each `rotation` period (5 s by default) has its own key, derived from a
//! master secret and the period's number, so every core of a server (and
//! every server sharing the master secret) issues and verifies the same
//! cookies without sharing state, and a key is useless once its period is
//! older than the TTL (10 s).
//!
//! ```text
//! period key = HMAC-SHA256(master, "tos cookie period" ‖ period u64 LE)
//! mac        = HMAC-SHA256(period key, address ‖ client nonce [16]
//!                          ‖ timestamp ms u64 LE ‖ connection id u32 LE)
//! address    = 4 ‖ IPv4 [4] ‖ port u16 LE   or   6 ‖ IPv6 [16] ‖ port u16 LE
//! ```

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::control::{Cookie, MAC_LEN, NONCE_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Why a cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Older than the TTL.
    Expired,
    /// Issued in the future (beyond the allowed clock skew).
    FromTheFuture,
    /// The MAC does not match: forged, altered, or for another address,
    /// nonce or connection id.
    BadMac,
}

impl core::fmt::Display for CookieError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Expired => "cookie expired",
            Self::FromTheFuture => "cookie timestamp in the future",
            Self::BadMac => "cookie MAC mismatch",
        })
    }
}

impl std::error::Error for CookieError {}

/// Issues and verifies cookies.
#[derive(Clone)]
pub struct CookieKey {
    master: [u8; 32],
    rotation_ms: u64,
    ttl_ms: u64,
    /// The last period key derived: (period, key).
    cached: Option<(u64, [u8; 32])>,
}

impl core::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieKey")
            .field("rotation_ms", &self.rotation_ms)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

/// Allowed clock difference between the core that issued a cookie and the
/// one that checks it (cores share one monotonic clock; this is slack).
const SKEW_MS: u64 = 1_000;

impl CookieKey {
    /// A key from a master secret, rotation period and TTL (milliseconds).
    pub fn new(master: [u8; 32], rotation_ms: u64, ttl_ms: u64) -> Self {
        Self {
            master,
            rotation_ms: rotation_ms.max(1),
            ttl_ms,
            cached: None,
        }
    }

    fn period_key(&mut self, period: u64) -> [u8; 32] {
        if let Some((p, key)) = self.cached {
            if p == period {
                return key;
            }
        }
        let key = hmac(&self.master, &[b"tos cookie period", &period.to_le_bytes()]);
        self.cached = Some((period, key));
        key
    }

    fn mac(
        &mut self,
        timestamp_ms: u64,
        addr: SocketAddr,
        nonce: &[u8; NONCE_LEN],
        cid: u32,
    ) -> [u8; MAC_LEN] {
        let key = self.period_key(timestamp_ms / self.rotation_ms);
        let mut a = [0u8; 19];
        let alen = encode_addr(addr, &mut a);
        hmac(
            &key,
            &[
                &a[..alen],
                nonce,
                &timestamp_ms.to_le_bytes(),
                &cid.to_le_bytes(),
            ],
        )
    }

    /// A cookie for a client, assigning it `connection_id`.
    pub fn issue(
        &mut self,
        now_ms: u64,
        addr: SocketAddr,
        nonce: &[u8; NONCE_LEN],
        connection_id: u32,
    ) -> Cookie {
        Cookie {
            connection_id,
            timestamp_ms: now_ms,
            mac: self.mac(now_ms, addr, nonce, connection_id),
        }
    }

    /// Checks a cookie a client sent back from `addr` with `nonce`.
    pub fn verify(
        &mut self,
        now_ms: u64,
        addr: SocketAddr,
        nonce: &[u8; NONCE_LEN],
        cookie: &Cookie,
    ) -> Result<(), CookieError> {
        if cookie.timestamp_ms > now_ms.saturating_add(SKEW_MS) {
            return Err(CookieError::FromTheFuture);
        }
        if now_ms.saturating_sub(cookie.timestamp_ms) > self.ttl_ms {
            return Err(CookieError::Expired);
        }
        let expected = self.mac(cookie.timestamp_ms, addr, nonce, cookie.connection_id);
        if !constant_time_eq(&expected, &cookie.mac) {
            return Err(CookieError::BadMac);
        }
        Ok(())
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn encode_addr(addr: SocketAddr, out: &mut [u8; 19]) -> usize {
    match addr {
        SocketAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.ip().octets());
            out[5..7].copy_from_slice(&a.port().to_le_bytes());
            7
        }
        SocketAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.ip().octets());
            out[17..19].copy_from_slice(&a.port().to_le_bytes());
            19
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn issue_verify_and_refuse() {
        let mut k = CookieKey::new([7; 32], 5_000, 10_000);
        let nonce = [1u8; 16];
        let c = k.issue(100_000, addr(1000), &nonce, 0x0102_0300);
        assert_eq!(k.verify(100_500, addr(1000), &nonce, &c), Ok(()));
        // Another core with the same master secret agrees.
        let mut other = CookieKey::new([7; 32], 5_000, 10_000);
        assert_eq!(other.verify(109_000, addr(1000), &nonce, &c), Ok(()));
        assert_eq!(
            k.verify(110_001, addr(1000), &nonce, &c),
            Err(CookieError::Expired)
        );
        assert_eq!(
            k.verify(98_000, addr(1000), &nonce, &c),
            Err(CookieError::FromTheFuture)
        );
        assert_eq!(
            k.verify(100_500, addr(1001), &nonce, &c),
            Err(CookieError::BadMac)
        );
        assert_eq!(
            k.verify(100_500, addr(1000), &[2; 16], &c),
            Err(CookieError::BadMac)
        );
        let mut forged = c;
        forged.connection_id ^= 1;
        assert_eq!(
            k.verify(100_500, addr(1000), &nonce, &forged),
            Err(CookieError::BadMac)
        );
        let mut forged = c;
        forged.timestamp_ms += 1;
        assert_eq!(
            k.verify(100_500, addr(1000), &nonce, &forged),
            Err(CookieError::BadMac)
        );
        let mut wrong_master = CookieKey::new([8; 32], 5_000, 10_000);
        assert_eq!(
            wrong_master.verify(100_500, addr(1000), &nonce, &c),
            Err(CookieError::BadMac)
        );
    }
}
