-- Version 1: accounts and characters.
-- name_key is the Unicode-lowercased name (computed by the store), so
-- uniqueness ignores case on both backends alike.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_name_key ON accounts (name_key);

CREATE TABLE characters (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id),
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL,
    template      INTEGER NOT NULL,
    faction       INTEGER NOT NULL,
    appearance    BLOB    NOT NULL,
    level         INTEGER NOT NULL,
    exp           INTEGER NOT NULL,
    pos_x         REAL    NOT NULL,
    pos_y         REAL    NOT NULL,
    pos_z         REAL    NOT NULL,
    yaw           REAL    NOT NULL,
    hp            REAL    NOT NULL,
    mp            REAL    NOT NULL,
    created_at    INTEGER NOT NULL,
    deleted_at    INTEGER,
    last_saved_at INTEGER NOT NULL,
    -- Layout version of the saved state (CHARACTER_STATE_VERSION).
    state_version INTEGER NOT NULL DEFAULT 1
);
-- Deleted characters keep their name until purged.
CREATE UNIQUE INDEX characters_name_key ON characters (name_key);
CREATE INDEX characters_account ON characters (account_id);
