-- Cairn metadata schema, SQLite flavour.
--
-- migrations/postgres/0001_initial.sql describes the same tables; only the DDL spelling
-- differs (identity columns, BLOB/BYTEA, collations). Keep the two in step: the same
-- queries run against both.
--
-- Conventions:
-- * Timestamps are Unix milliseconds (INTEGER), hashes 32-byte BLOBs.
-- * Ids use AUTOINCREMENT so that an id is never handed out twice, even after the row
--   with the highest id is deleted (plain INTEGER PRIMARY KEY reuses it). A client that
--   still holds a revision number of a purged version must never see that number name
--   different content.
-- * Booleans are INTEGER 0/1: sqlx's Any driver cannot decode SQLite's BOOLEAN type.
-- * Paths are unique per namespace case-insensitively: path_key is the lowercased path
--   (computed in Rust by ServerPath::key, never by SQL, so both backends agree).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    quota_bytes   INTEGER,
    -- NULL only inside the transaction that creates the user and its namespace.
    home_ns       INTEGER REFERENCES namespaces (id),
    created_at    INTEGER NOT NULL
);

CREATE TABLE namespaces (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_user_id INTEGER NOT NULL REFERENCES users (id),
    -- The last journal sequence number handed out. Every write transaction on the
    -- namespace updates this row first, which serializes writers per namespace.
    journal_seq   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE devices (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id),
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE auth_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    device_id    INTEGER REFERENCES devices (id),
    token_hash   BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

CREATE TABLE entries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    ns_id              INTEGER NOT NULL REFERENCES namespaces (id),
    path               TEXT    NOT NULL,
    path_key           TEXT    NOT NULL,
    -- path_key of the parent folder ('/' for top-level entries), so listing a folder
    -- is one index range instead of a scan of the whole subtree.
    parent_key         TEXT    NOT NULL,
    kind               TEXT    NOT NULL CHECK (kind IN ('file', 'dir')),
    current_version_id INTEGER REFERENCES versions (id),
    size               INTEGER NOT NULL DEFAULT 0,
    content_hash       BLOB,
    mtime              INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    modified_at        INTEGER NOT NULL,
    -- Deleted entries stay (with their versions) for the trash; they do not hold
    -- their path.
    deleted_at         INTEGER
);
CREATE UNIQUE INDEX entries_live_path ON entries (ns_id, path_key) WHERE deleted_at IS NULL;
CREATE INDEX entries_live_children ON entries (ns_id, parent_key, path_key) WHERE deleted_at IS NULL;

CREATE TABLE versions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id     INTEGER NOT NULL REFERENCES entries (id),
    ns_id        INTEGER NOT NULL REFERENCES namespaces (id),
    size         INTEGER NOT NULL,
    content_hash BLOB    NOT NULL,
    block_count  INTEGER NOT NULL,
    -- The file's modification time as this version recorded it, so restoring an old
    -- version can bring its mtime back too.
    mtime        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    device_id    INTEGER REFERENCES devices (id)
);
CREATE INDEX versions_entry ON versions (entry_id);

CREATE TABLE blocks (
    hash        BLOB    NOT NULL PRIMARY KEY CHECK (length(hash) = 32),
    size        INTEGER NOT NULL CHECK (size >= 0),
    stored_size INTEGER NOT NULL,
    -- The number of version_blocks rows naming this block; changed in the same
    -- transaction as those rows.
    refcount    INTEGER NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    -- When refcount last became 0; NULL while referenced. Garbage collection deletes a
    -- block only once this is older than the grace period.
    zero_since  INTEGER,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX blocks_zero_since ON blocks (zero_since) WHERE zero_since IS NOT NULL;

CREATE TABLE version_blocks (
    version_id INTEGER NOT NULL REFERENCES versions (id),
    idx        INTEGER NOT NULL,
    block_hash BLOB    NOT NULL REFERENCES blocks (hash),
    size       INTEGER NOT NULL,
    PRIMARY KEY (version_id, idx)
) WITHOUT ROWID;
-- For reference checks (fsck) and for the foreign-key check when a block is deleted.
CREATE INDEX version_blocks_hash ON version_blocks (block_hash);

-- Blocks an account has proven it possesses: it uploaded them, or one of its versions
-- references them. Deduplication is only ever revealed for these.
CREATE TABLE user_blocks (
    user_id    INTEGER NOT NULL REFERENCES users (id),
    block_hash BLOB    NOT NULL REFERENCES blocks (hash) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, block_hash)
) WITHOUT ROWID;
CREATE INDEX user_blocks_hash ON user_blocks (block_hash);

-- Per-namespace, append-only change log. No foreign key to entries or versions: the
-- journal outlives purged entries.
CREATE TABLE journal (
    ns_id      INTEGER NOT NULL REFERENCES namespaces (id),
    seq        INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('commit', 'mkdir', 'move', 'copy', 'delete')),
    entry_kind TEXT    NOT NULL CHECK (entry_kind IN ('file', 'dir')),
    path       TEXT    NOT NULL,
    -- The source path of a move or copy.
    from_path  TEXT,
    entry_id   INTEGER NOT NULL,
    version_id INTEGER,
    -- Who made the change, so a notification need not echo it to its own device and
    -- an activity view can say who did what.
    user_id    INTEGER NOT NULL,
    device_id  INTEGER,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (ns_id, seq)
) WITHOUT ROWID;
