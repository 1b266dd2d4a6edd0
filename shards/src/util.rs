//! Small deterministic helpers: an id hasher for the crate's hash maps, a
//! seeded random number generator, and tick arithmetic.

use core::hash::{BuildHasherDefault, Hasher};

/// A fast, deterministic hasher for integer keys (entity network ids, grid
/// cell keys, client ids). The keys are chosen by the server, never by a
/// peer, so flooding resistance is not needed; determinism is (iteration
/// order of a map must not depend on a random seed).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The SplitMix64 finaliser: both the low bits (bucket index) and the
        // high bits (control bytes) of hashbrown depend on every input bit.
        tos_protocol::rng::mix64(self.0)
    }
}

/// The `BuildHasher` of [`IdHasher`].
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by server-chosen integers.
pub type IdMap<K, V> = std::collections::HashMap<K, V, IdBuildHasher>;

/// A new [`IdMap`] with room for `capacity` entries.
pub(crate) fn id_map<K, V>(capacity: usize) -> IdMap<K, V> {
    IdMap::with_capacity_and_hasher(capacity, IdBuildHasher::default())
}

/// The workspace's one seeded generator, [`tos_protocol::rng::SplitMix64`],
/// with the helpers the world's wander AI and the crate's randomised tests
/// use.
#[derive(Debug, Clone)]
pub struct Rng(tos_protocol::rng::SplitMix64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(tos_protocol::rng::SplitMix64::new(seed))
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A uniform `u32` in `0..n` (0 when `n` is 0).
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// A uniform `f32` in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A uniform `f32` in `[lo, hi)`.
    #[inline]
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
}

/// Whether tick `a` is after tick `b` on the wrapping `u32` tick line.
#[inline]
pub fn tick_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Squared distance of two points, in `f64` (exact differences of `f32`s).
#[inline]
pub(crate) fn dist2(a: [f32; 3], b: [f32; 3]) -> f64 {
    let dx = f64::from(a[0]) - f64::from(b[0]);
    let dy = f64::from(a[1]) - f64::from(b[1]);
    let dz = f64::from(a[2]) - f64::from(b[2]);
    dx * dx + dy * dy + dz * dz
}

/// Asks the CPU to bring the cache line holding `*p` closer (a hint: no
/// effect on results). The snapshot writer walks per-client entries whose
/// entity data sits at scattered indices; fetching a few entries ahead
/// overlaps those misses instead of paying each in turn.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and never reads
    // the value, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p.cast::<i8>(), core::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.range(-3.0, 5.0);
            assert!((-3.0..5.0).contains(&x));
            assert!(a.below(10) < 10);
            b.range(0.0, 1.0);
            b.below(10);
        }
    }

    #[test]
    fn ticks_wrap() {
        assert!(tick_after(1, 0));
        assert!(!tick_after(0, 0));
        assert!(tick_after(3, u32::MAX - 2));
        assert!(!tick_after(u32::MAX - 2, 3));
    }
}
