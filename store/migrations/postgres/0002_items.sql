-- Version 2: a character's inventory and equipment, in its own row so that
-- one UPDATE saves them with the rest of its state (atomic; an item is
-- never in two places). Layout of the bytes: store/src/items.rs. Empty =
-- no items (what every row of version 1 gets).
ALTER TABLE characters ADD COLUMN items BYTEA NOT NULL DEFAULT '\x'::bytea;
