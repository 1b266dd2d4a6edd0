//! Client integrity tables: per client version, a table of keys generated
//! deterministically from a server secret. The server challenges a client
//! with a random index at connect and periodically; an official client
//! build carries its version's table and answers with the entry. A wrong or
//! missing answer disconnects the client.
//!
//! ```text
//! entry[i] = HMAC-SHA256(secret, "tos integrity" ‖ version u16 LE ‖ i u16 LE)[..16]
//! ```

use crate::cookie::hmac;

/// Number of entries in a table.
pub const TABLE_LEN: u16 = 256;

/// One client version's integrity keys.
#[derive(Clone, PartialEq, Eq)]
pub struct IntegrityTable {
    version: u16,
    entries: Vec<[u8; 16]>,
}

impl core::fmt::Debug for IntegrityTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IntegrityTable")
            .field("version", &self.version)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl IntegrityTable {
    /// Generates the table of `version` from the server's secret.
    pub fn generate(secret: &[u8; 32], version: u16) -> Self {
        let entries = (0..TABLE_LEN)
            .map(|i| {
                let full = hmac(
                    secret,
                    &[b"tos integrity", &version.to_le_bytes(), &i.to_le_bytes()],
                );
                let mut e = [0u8; 16];
                e.copy_from_slice(&full[..16]);
                e
            })
            .collect();
        Self { version, entries }
    }

    /// A table from its entries, as a client build ships it (the client
    /// never needs the secret, which would let it compute every other
    /// version's table too). `None` unless there are exactly
    /// [`TABLE_LEN`] entries.
    pub fn from_entries(version: u16, entries: &[[u8; 16]]) -> Option<Self> {
        (entries.len() == usize::from(TABLE_LEN)).then(|| Self {
            version,
            entries: entries.to_vec(),
        })
    }

    /// The client version this table belongs to.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The entry at `index`, if the index is inside the table.
    pub fn entry(&self, index: u16) -> Option<[u8; 16]> {
        self.entries.get(usize::from(index)).copied()
    }

    /// Whether `answer` is the entry at `index` (constant time).
    pub fn check(&self, index: u16, answer: &[u8; 16]) -> bool {
        match self.entry(index) {
            Some(e) => crate::cookie::constant_time_eq(&e, answer),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_version_specific() {
        let a = IntegrityTable::generate(&[1; 32], 7);
        let b = IntegrityTable::generate(&[1; 32], 7);
        let c = IntegrityTable::generate(&[1; 32], 8);
        assert_eq!(a, b);
        assert_ne!(a.entry(3), c.entry(3));
        assert!(a.check(3, &a.entry(3).unwrap()));
        assert!(!a.check(3, &a.entry(4).unwrap()));
        assert!(!a.check(TABLE_LEN, &[0; 16]));
        let entries: Vec<[u8; 16]> = (0..TABLE_LEN).map(|i| a.entry(i).unwrap()).collect();
        assert_eq!(IntegrityTable::from_entries(7, &entries), Some(a));
        assert_eq!(IntegrityTable::from_entries(7, &entries[1..]), None);
    }
}
