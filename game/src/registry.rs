//! The online-players registry of one process: which character is live,
//! under which name, on which core. It is also where "one live session per
//! character" is decided: [`OnlineRegistry::claim`] succeeds for exactly
//! one session at a time.
//!
//! Touched on enter, leave and cross-core hand-off only (never per tick),
//! so one mutex is enough.

use std::collections::HashMap;
use std::sync::Mutex;

/// Where a live character is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnlineEntry {
    /// Its id.
    pub character_id: u64,
    /// Its name.
    pub name: String,
    /// Its account.
    pub account_id: u64,
    /// The core simulating it.
    pub core: u16,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<u64, OnlineEntry>,
    /// Lower-cased name to id (names are unique case-insensitively).
    by_name: HashMap<String, u64>,
}

/// Who is online in this process.
#[derive(Debug, Default)]
pub struct OnlineRegistry {
    inner: Mutex<Inner>,
}

impl OnlineRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half
        // updated (every update is one insert or remove pair), so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims a character for one session; false if it is already live.
    pub fn claim(&self, entry: OnlineEntry) -> bool {
        let mut g = self.lock();
        if g.by_id.contains_key(&entry.character_id) {
            return false;
        }
        g.by_name
            .insert(entry.name.to_lowercase(), entry.character_id);
        g.by_id.insert(entry.character_id, entry);
        true
    }

    /// The character moved to another core.
    pub fn moved(&self, character_id: u64, core: u16) {
        if let Some(e) = self.lock().by_id.get_mut(&character_id) {
            e.core = core;
        }
    }

    /// The character left the world.
    pub fn release(&self, character_id: u64) {
        let mut g = self.lock();
        if let Some(e) = g.by_id.remove(&character_id) {
            g.by_name.remove(&e.name.to_lowercase());
        }
    }

    /// Whether a character is live.
    pub fn is_online(&self, character_id: u64) -> bool {
        self.lock().by_id.contains_key(&character_id)
    }

    /// A live character by name (any case).
    pub fn find_by_name(&self, name: &str) -> Option<OnlineEntry> {
        let g = self.lock();
        let id = g.by_name.get(&name.to_lowercase())?;
        g.by_id.get(id).cloned()
    }

    /// The core a live character is on.
    pub fn core_of(&self, character_id: u64) -> Option<u16> {
        self.lock().by_id.get(&character_id).map(|e| e.core)
    }

    /// How many characters are live.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether nobody is online.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, name: &str) -> OnlineEntry {
        OnlineEntry {
            character_id: id,
            name: name.into(),
            account_id: 1,
            core: 0,
        }
    }

    #[test]
    fn one_session_per_character() {
        let r = OnlineRegistry::new();
        assert!(r.claim(entry(7, "Aria")));
        assert!(!r.claim(entry(7, "Aria")));
        assert_eq!(r.find_by_name("aRIA").map(|e| e.character_id), Some(7));
        r.moved(7, 3);
        assert_eq!(r.find_by_name("aria").map(|e| e.core), Some(3));
        assert_eq!(r.core_of(7), Some(3));
        assert_eq!(r.core_of(8), None);
        r.release(7);
        assert!(r.find_by_name("aria").is_none());
        assert!(r.claim(entry(7, "Aria")));
        assert_eq!(r.len(), 1);
    }
}
