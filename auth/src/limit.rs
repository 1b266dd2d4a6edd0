//! A keyed token bucket for login attempts (per account name, per source
//! address), with a hard cap on tracked keys. Sans-IO: the caller passes
//! `now`.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Refused: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Position in the staleness order (`RateLimiter::order`).
    touch: u64,
}

/// Token buckets keyed by `K`: each key may spend `burst` attempts at once
/// and regains `rate_per_sec` per second.
///
/// Memory is bounded whatever keys arrive: at `max_keys` tracked keys, a
/// new key evicts the least recently used one (O(log n)). An evicted key
/// starts again with a full bucket, so size `max_keys` well above the keys
/// active within one refill period; a flood of new keys is itself limited
/// by the per-address limiter in front of it.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate_per_sec: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
    /// Touch counter → key, oldest first.
    order: BTreeMap<u64, K>,
    next_touch: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `rate_per_sec` tokens regained per second (a negative or NaN rate is
    /// taken as 0: no refill), `burst` tokens at most (at least 1), at most
    /// `max_keys` keys tracked (at least 1).
    pub fn new(rate_per_sec: f64, burst: u32, max_keys: usize) -> Self {
        let rate_per_sec = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            rate_per_sec
        } else {
            0.0
        };
        Self {
            rate_per_sec,
            burst: f64::from(burst.max(1)),
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            order: BTreeMap::new(),
            next_touch: 0,
        }
    }

    /// `per_minute` attempts per minute, all of which may come at once.
    pub fn per_minute(per_minute: u32, max_keys: usize) -> Self {
        Self::new(f64::from(per_minute) / 60.0, per_minute, max_keys)
    }

    /// Spends one token of `key` at `now`, or says how long until one is
    /// back. A `now` earlier than the key's last check (a caller mixing
    /// clocks) refills nothing rather than panicking.
    pub fn check(&mut self, key: K, now: Instant) -> Result<(), RetryAfter> {
        let touch = self.next_touch;
        self.next_touch += 1;
        if let Some(bucket) = self.buckets.get_mut(&key) {
            let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
            bucket.last = bucket.last.max(now);
            self.order.remove(&bucket.touch);
            bucket.touch = touch;
            self.order.insert(touch, key);
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return Ok(());
            }
            let missing = 1.0 - bucket.tokens;
            return Err(RetryAfter(if self.rate_per_sec > 0.0 {
                Duration::from_secs_f64(missing / self.rate_per_sec)
            } else {
                Duration::MAX
            }));
        }
        if self.buckets.len() >= self.max_keys {
            if let Some((_, stalest)) = self.order.pop_first() {
                self.buckets.remove(&stalest);
            }
        }
        self.buckets.insert(
            key.clone(),
            Bucket {
                tokens: self.burst - 1.0,
                last: now,
                touch,
            },
        );
        self.order.insert(touch, key);
        Ok(())
    }

    /// Keys tracked now (at most `max_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets `key` (for example after a successful login, so failures
    /// before it do not count against the next session).
    pub fn forget(&mut self, key: &K) {
        if let Some(bucket) = self.buckets.remove(key) {
            self.order.remove(&bucket.touch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_then_refill() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(1.0, 3, 100);
        for _ in 0..3 {
            assert_eq!(limiter.check("alice", start), Ok(()));
        }
        let RetryAfter(wait) = limiter.check("alice", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Other keys are independent.
        assert_eq!(limiter.check("bob", start), Ok(()));
        // One second later one token is back, not two.
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.check("alice", later), Ok(()));
        assert!(limiter.check("alice", later).is_err());
        // After a long time, only `burst` tokens.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.check("alice", much_later), Ok(()));
        }
        assert!(limiter.check("alice", much_later).is_err());
        // A clock going backwards does not panic or refill.
        assert!(limiter.check("alice", start).is_err());
    }

    #[test]
    fn per_minute_and_zero_rate() {
        let now = Instant::now();
        let mut limiter = RateLimiter::per_minute(10, 16);
        for _ in 0..10 {
            assert!(limiter.check(1u32, now).is_ok());
        }
        let RetryAfter(wait) = limiter.check(1, now).unwrap_err();
        assert!(
            wait <= Duration::from_secs(6) && wait > Duration::from_secs(5),
            "{wait:?}"
        );
        let mut never = RateLimiter::new(f64::NAN, 1, 4);
        assert!(never.check(1u8, now).is_ok());
        assert_eq!(
            never.check(1, now + Duration::from_secs(9)),
            Err(RetryAfter(Duration::MAX))
        );
    }

    #[test]
    fn key_cap_holds_and_evicts_the_stalest() {
        let now = Instant::now();
        let mut limiter = RateLimiter::new(0.0, 1, 3);
        for key in 0..3u32 {
            assert!(limiter.check(key, now).is_ok());
        }
        // Touch 0 so that 1 is now the stalest.
        assert!(limiter.check(0, now).is_err());
        for key in 100..10_000u32 {
            let _ = limiter.check(key, now);
            assert!(limiter.tracked_keys() <= 3);
        }
        assert_eq!(limiter.tracked_keys(), 3);
        assert_eq!(limiter.order.len(), 3);
        let mut limiter = RateLimiter::new(0.0, 1, 3);
        for key in 0..3u32 {
            let _ = limiter.check(key, now);
        }
        let _ = limiter.check(0, now);
        let _ = limiter.check(7, now); // evicts 1, the least recently used
        assert!(limiter.check(0, now).is_err(), "0 kept its empty bucket");
        assert!(limiter.check(1, now).is_ok(), "1 was evicted: fresh bucket");
        limiter.forget(&1);
        assert_eq!(limiter.tracked_keys(), 2);
    }
}
