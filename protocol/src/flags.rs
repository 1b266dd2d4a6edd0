//! The one flags macro: a `u8` bit set as a newtype with named constants.
//!
//! Used for the packet header's flags ([`crate::wire::HeaderFlags`]), the
//! delta record's fields ([`crate::delta::DeltaFlags`]) and the shards'
//! entity state and buff bits. Each type adds what is its own (a checked
//! `from_bits` that refuses reserved bits, for example) in an `impl` of
//! its own.

/// Declares a `u8` bit set:
///
/// ```
/// tos_protocol::flags! {
///     /// Doors.
///     pub struct Doors(u8) {
///         /// The front door.
///         FRONT = 0x01,
///         /// The back door.
///         BACK = 0x02,
///     }
/// }
/// let mut d = Doors::FRONT | Doors::BACK;
/// assert!(d.contains(Doors::BACK));
/// d.set(Doors::BACK, false);
/// assert_eq!(d.bits(), 0x01);
/// assert_eq!(Doors::DECLARED, 0x03);
/// assert_eq!(Doors::NONE, Doors::default());
/// ```
///
/// Generated: the constants, `NONE`, `DECLARED` (every declared bit),
/// `from_bits_retain`, `bits`, `contains`, `intersects`, `union`, `insert`,
/// `remove`, `set`, and `|` / `|=`.
#[macro_export]
macro_rules! flags {
    (
        $(#[$doc:meta])*
        $vis:vis struct $name:ident($fvis:vis u8) {
            $($(#[$fdoc:meta])* $flag:ident = $bit:expr),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        $vis struct $name($fvis u8);

        #[allow(dead_code, reason = "not every set uses every operation")]
        impl $name {
            $($(#[$fdoc])* pub const $flag: Self = Self($bit);)*
            /// No bit set.
            pub const NONE: Self = Self(0);
            /// Every declared bit.
            pub const DECLARED: u8 = 0 $(| $bit)*;

            /// The set with exactly these bits, declared or not.
            #[inline]
            pub const fn from_bits_retain(bits: u8) -> Self {
                Self(bits)
            }

            /// The wire byte.
            #[inline]
            pub const fn bits(self) -> u8 {
                self.0
            }

            /// Whether every bit of `other` is set.
            #[inline]
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether any bit of `other` is set.
            #[inline]
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }

            /// The union of both sets.
            #[inline]
            #[must_use]
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// Sets the bits of `other`.
            #[inline]
            pub fn insert(&mut self, other: Self) {
                self.0 |= other.0;
            }

            /// Clears the bits of `other`.
            #[inline]
            pub fn remove(&mut self, other: Self) {
                self.0 &= !other.0;
            }

            /// Sets or clears the bits of `other`.
            #[inline]
            pub fn set(&mut self, other: Self, on: bool) {
                if on {
                    self.insert(other);
                } else {
                    self.remove(other);
                }
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            #[inline]
            fn bitor(self, other: Self) -> Self {
                self.union(other)
            }
        }

        impl core::ops::BitOrAssign for $name {
            #[inline]
            fn bitor_assign(&mut self, other: Self) {
                self.insert(other);
            }
        }
    };
}
