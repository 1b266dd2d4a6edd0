//! # tos-shards: the sharded game world
//!
//! This crate will own the game world of one core, with no I/O and no clock
//! of its own (the engine passes `now` and decoded inputs in, and takes
//! snapshots out), so that it is deterministic and tested without sockets:
//!
//! - world bounds, quantization scale and the quadrant layout of a shard;
//! - struct-of-arrays entity storage with generational ids and pools;
//! - the AOI grid and per-type interest distances;
//! - server authority over movement claims and actions;
//! - per-client snapshots under a byte budget, delta-encoded against the
//!   state each client acknowledged;
//! - ghosts and hand-offs of entities between neighbouring shards.
//!
//! Status: a skeleton. The world lands with the issue "Sharded world".
