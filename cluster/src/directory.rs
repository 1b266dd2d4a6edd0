//! The cluster directory in JetStream key-value buckets: which node owns
//! which quadrant, which node runs which character (a lease), and which
//! players are online where (by name, for whispers across nodes).
//!
//! Three buckets per cluster, named after it:
//!
//! - `<cluster>_quadrants`: `q.<x>.<y>.<z>` → [`QuadrantValue`]. No expiry:
//!   the owner table comes from the cluster file and changes only when an
//!   operator changes that file.
//! - `<cluster>_leases`: `c.<character>` → [`LeaseValue`], and
//!   `t.<hex>` for an NPC's hand-off (a transit lease, see
//!   [`crate::link::TRANSIT_BIT`]). The bucket's
//!   `max_age` is the lease TTL and it keeps one revision per key, so every
//!   renewal (a compare-and-swap on the revision the holder knows) starts
//!   the key's age anew, and a key that nobody renews is removed by the
//!   server itself: a dead node's characters become free after the TTL
//!   without a sweeper and without trusting any node's clock.
//! - `<cluster>_online`: `p.<hex of the lowercased name>` → [`OnlineValue`],
//!   with the same TTL, renewed beside the lease. Names are hex-encoded
//!   because key characters are limited and names need not be ASCII.
//!
//! Taking a lease is create-if-absent (`create` = an update expecting no
//! revision); moving it to another node in a hand-off is an update that
//! expects the revision the sender holds. Whichever compare-and-swap the
//! server applies first wins; the other gets "wrong last revision". That one
//! rule is what keeps a character on exactly one node.
//!
//! Everything here is `async` and runs only on the link's thread.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::wire::{self, LeaseValue, OnlineValue, QuadrantValue, WireError, WireValue};

/// Where the buckets keep their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// On the NATS server's disk: leases survive a NATS restart (and keep
    /// ageing across it).
    File,
    /// In the NATS server's memory: a NATS restart clears the directory.
    Memory,
}

/// Why a directory operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Another node holds it.
    #[error("held by node {owner}")]
    Conflict {
        /// The node holding it.
        owner: String,
    },
    /// The revision this node knew is no longer the current one: someone
    /// else changed the key, or it expired.
    #[error("revision moved on (taken over or expired)")]
    Moved,
    /// NATS or JetStream did not answer.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read.
    #[error("directory value unreadable: {0}")]
    Corrupt(#[from] WireError),
}

/// A character's lease as the directory has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// A node holds it at this revision.
    Held(LeaseValue, u64),
    /// Its holder released it (the delete marker is still there; it ages
    /// out with the bucket's `max_age`).
    Released,
    /// No entry: it expired, or was never taken.
    Absent,
}

/// The three buckets of one cluster, as seen by one node.
#[derive(Debug, Clone)]
pub(crate) struct Directory {
    node: String,
    quadrants: kv::Store,
    leases: kv::Store,
    online: kv::Store,
}

fn unavailable(error: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(error.to_string())
}

fn from_update(error: kv::UpdateError) -> DirectoryError {
    match error.kind() {
        kv::UpdateErrorKind::WrongLastRevision => DirectoryError::Moved,
        _ => unavailable(error),
    }
}

pub(crate) fn lease_key(character: u64) -> String {
    if character & crate::link::TRANSIT_BIT != 0 {
        // An entity without a character (an NPC) in a hand-off.
        format!("t.{:x}", character & !crate::link::TRANSIT_BIT)
    } else {
        format!("c.{character}")
    }
}

pub(crate) fn online_key(name: &str) -> String {
    let lower = name.to_lowercase();
    let mut key = String::with_capacity(2 + lower.len() * 2);
    key.push_str("p.");
    for byte in lower.bytes() {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

fn quadrant_key(q: [u16; 3]) -> String {
    format!("q.{}.{}.{}", q[0], q[1], q[2])
}

fn bytes_of<T: WireValue>(value: &T) -> Result<Bytes, DirectoryError> {
    Ok(Bytes::from(wire::encode(value)?))
}

impl Directory {
    /// Opens (creating or updating) the cluster's buckets.
    pub(crate) async fn open(
        js: &jetstream::Context,
        cluster: &str,
        node: &str,
        lease_ttl: Duration,
        storage: Storage,
    ) -> Result<Self, DirectoryError> {
        let storage = match storage {
            Storage::File => jetstream::stream::StorageType::File,
            Storage::Memory => jetstream::stream::StorageType::Memory,
        };
        // async-nats's own `create_key_value` first asks for the account's
        // limits, and the reply of the NATS 2.9 that Debian ships lacks
        // fields async-nats 0.52 requires; the account is only used for
        // features of newer servers. So the bucket's stream is made here
        // with the same settings `create_key_value` would use (the KV
        // conventions: `KV_<bucket>` on `$KV.<bucket>.>`, roll-ups, direct
        // gets, discard-new) and then opened as a key-value store.
        let open = |suffix: &'static str, max_age: Duration| {
            let name = format!("{cluster}_{suffix}");
            async move {
                let config = jetstream::stream::Config {
                    name: format!("KV_{name}"),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    max_age,
                    max_message_size: wire::MAX_MESSAGE as i32,
                    storage,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    num_replicas: 1,
                    discard: jetstream::stream::DiscardPolicy::New,
                    // The duplicate window may not exceed the age limit.
                    duplicate_window: if max_age.is_zero() {
                        Duration::from_secs(120)
                    } else {
                        max_age.min(Duration::from_secs(120))
                    },
                    ..Default::default()
                };
                js.create_or_update_stream(config)
                    .await
                    .map_err(unavailable)?;
                js.get_key_value(name).await.map_err(unavailable)
            }
        };
        let quadrants = open("quadrants", Duration::ZERO).await?;
        let leases = open("leases", lease_ttl).await?;
        let online = open("online", lease_ttl).await?;
        Ok(Self {
            node: node.to_owned(),
            quadrants,
            leases,
            online,
        })
    }

    /// Deletes the cluster's buckets (tests and decommissioning).
    pub(crate) async fn drop_buckets(
        js: &jetstream::Context,
        cluster: &str,
    ) -> Result<(), DirectoryError> {
        for suffix in ["quadrants", "leases", "online"] {
            match js.delete_key_value(format!("{cluster}_{suffix}")).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("not found") => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    /// The current lease of `character`: its value and revision.
    pub(crate) async fn lease(
        &self,
        character: u64,
    ) -> Result<Option<(LeaseValue, u64)>, DirectoryError> {
        match self.lease_state(character).await? {
            LeaseState::Held(value, revision) => Ok(Some((value, revision))),
            LeaseState::Released | LeaseState::Absent => Ok(None),
        }
    }

    /// The lease of `character`, telling a released lease (a delete marker:
    /// its holder logged the character out) from one that expired or never
    /// was (no entry at all).
    pub(crate) async fn lease_state(&self, character: u64) -> Result<LeaseState, DirectoryError> {
        let entry = self
            .leases
            .entry(lease_key(character))
            .await
            .map_err(unavailable)?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                LeaseState::Held(wire::decode::<LeaseValue>(&e.value)?, e.revision)
            }
            Some(_) => LeaseState::Released,
            None => LeaseState::Absent,
        })
    }

    /// Takes the lease of a character that no node holds (a login).
    /// A lease this node already holds is renewed and returned, so a retry
    /// after a lost answer is harmless.
    pub(crate) async fn acquire(&self, character: u64, name: &str) -> Result<u64, DirectoryError> {
        let value = bytes_of(&LeaseValue {
            node: self.node.clone(),
            name: name.to_owned(),
        })?;
        match self
            .leases
            .create(lease_key(character), value.clone())
            .await
        {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                match self.lease(character).await? {
                    Some((held, revision)) if held.node == self.node => self
                        .leases
                        .update(lease_key(character), value, revision)
                        .await
                        .map_err(from_update),
                    Some((held, _)) => Err(DirectoryError::Conflict { owner: held.node }),
                    // Expired between the two calls: try once more.
                    None => self
                        .leases
                        .create(lease_key(character), value)
                        .await
                        .map_err(|e| match e.kind() {
                            kv::CreateErrorKind::AlreadyExists => DirectoryError::Moved,
                            _ => unavailable(e),
                        }),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Sets the lease to this node if it is still at `revision`: a renewal
    /// of a lease this node holds, or the taking of a handed-off one.
    pub(crate) async fn swap(
        &self,
        character: u64,
        name: &str,
        revision: u64,
    ) -> Result<u64, DirectoryError> {
        let value = bytes_of(&LeaseValue {
            node: self.node.clone(),
            name: name.to_owned(),
        })?;
        self.leases
            .update(lease_key(character), value, revision)
            .await
            .map_err(from_update)
    }

    /// Releases a lease this node holds at `revision` (a logout).
    pub(crate) async fn release(
        &self,
        character: u64,
        revision: u64,
    ) -> Result<(), DirectoryError> {
        self.leases
            .delete_expect_revision(lease_key(character), Some(revision))
            .await
            .map_err(from_update)
    }

    /// Records `name` as online on this node; the newest login wins.
    pub(crate) async fn set_online(
        &self,
        name: &str,
        character: u64,
    ) -> Result<u64, DirectoryError> {
        let value = bytes_of(&OnlineValue {
            node: self.node.clone(),
            character,
        })?;
        self.online
            .put(online_key(name), value)
            .await
            .map_err(unavailable)
    }

    /// Renews this node's online entry for `name` if still at `revision`.
    pub(crate) async fn renew_online(
        &self,
        name: &str,
        character: u64,
        revision: u64,
    ) -> Result<u64, DirectoryError> {
        let value = bytes_of(&OnlineValue {
            node: self.node.clone(),
            character,
        })?;
        self.online
            .update(online_key(name), value, revision)
            .await
            .map_err(from_update)
    }

    /// Removes this node's online entry for `name` if still at `revision`.
    pub(crate) async fn clear_online(
        &self,
        name: &str,
        revision: u64,
    ) -> Result<(), DirectoryError> {
        self.online
            .delete_expect_revision(online_key(name), Some(revision))
            .await
            .map_err(from_update)
    }

    /// Where the player called `name` is online, if anywhere.
    pub(crate) async fn player(&self, name: &str) -> Result<Option<OnlineValue>, DirectoryError> {
        match self
            .online
            .entry(online_key(name))
            .await
            .map_err(unavailable)?
        {
            Some(e) if e.operation == kv::Operation::Put => Ok(Some(wire::decode(&e.value)?)),
            _ => Ok(None),
        }
    }

    /// Records this node as the owner of `quadrants`. A quadrant another
    /// node has claimed is a conflict (two nodes started with different
    /// cluster files); the error names that node and nothing is changed
    /// for the quadrants after it.
    pub(crate) async fn claim_quadrants(
        &self,
        quadrants: &[[u16; 3]],
    ) -> Result<(), DirectoryError> {
        let value = bytes_of(&QuadrantValue {
            node: self.node.clone(),
        })?;
        for &q in quadrants {
            match self.quadrants.create(quadrant_key(q), value.clone()).await {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    match self.quadrant_owner(q).await? {
                        Some(owner) if owner == self.node => {}
                        Some(owner) => return Err(DirectoryError::Conflict { owner }),
                        None => return Err(DirectoryError::Moved),
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    /// Releases this node's claims on `quadrants` (a clean shutdown or a
    /// changed cluster file).
    pub(crate) async fn unclaim_quadrants(
        &self,
        quadrants: &[[u16; 3]],
    ) -> Result<(), DirectoryError> {
        for &q in quadrants {
            let key = quadrant_key(q);
            if let Some(e) = self
                .quadrants
                .entry(key.as_str())
                .await
                .map_err(unavailable)?
            {
                if e.operation == kv::Operation::Put
                    && wire::decode::<QuadrantValue>(&e.value)?.node == self.node
                {
                    self.quadrants
                        .delete_expect_revision(key.as_str(), Some(e.revision))
                        .await
                        .map_err(from_update)?;
                }
            }
        }
        Ok(())
    }

    /// The node that claimed `quadrant`, if any.
    pub(crate) async fn quadrant_owner(
        &self,
        q: [u16; 3],
    ) -> Result<Option<String>, DirectoryError> {
        match self
            .quadrants
            .entry(quadrant_key(q))
            .await
            .map_err(unavailable)?
        {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some(wire::decode::<QuadrantValue>(&e.value)?.node))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys() {
        assert_eq!(lease_key(42), "c.42");
        assert_eq!(online_key("Ab"), "p.6162");
        assert_eq!(online_key("ÄB"), online_key("äb"));
        assert!(
            online_key("Äb ü")
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        );
        assert_eq!(quadrant_key([1, 2, 0]), "q.1.2.0");
    }
}
