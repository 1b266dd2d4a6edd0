//! # tos-config: settings and shard layout
//!
//! Status: a skeleton, filled by the engine issue.
