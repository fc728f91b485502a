-- Cairn metadata schema, PostgreSQL flavour.
--
-- migrations/sqlite/0001_initial.sql describes the same tables and explains the
-- columns; only the DDL spelling differs here:
-- * identity columns instead of AUTOINCREMENT (neither reuses ids);
-- * BYTEA instead of BLOB;
-- * path_key and parent_key use COLLATE "C", so ordering and the range scans that
--   select a subtree compare bytes, exactly as SQLite's BINARY collation does; with a
--   locale collation, pagination order would differ between the backends and the
--   subtree range [key || '/', key || '0') would not be contiguous;
-- * is_admin is SMALLINT 0/1 rather than BOOLEAN, so the same Rust code decodes both
--   backends through sqlx's Any driver.

CREATE TABLE users (
    id            BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          TEXT     NOT NULL UNIQUE,
    password_hash TEXT     NOT NULL,
    is_admin      SMALLINT NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    quota_bytes   BIGINT,
    home_ns       BIGINT,
    created_at    BIGINT   NOT NULL
);

CREATE TABLE namespaces (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_user_id BIGINT NOT NULL REFERENCES users (id),
    journal_seq   BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);
ALTER TABLE users ADD FOREIGN KEY (home_ns) REFERENCES namespaces (id);

CREATE TABLE devices (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id),
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX devices_user ON devices (user_id);

CREATE TABLE auth_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    device_id    BIGINT REFERENCES devices (id),
    token_hash   BYTEA  NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id);

CREATE TABLE entries (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ns_id              BIGINT NOT NULL REFERENCES namespaces (id),
    path               TEXT   NOT NULL,
    path_key           TEXT   COLLATE "C" NOT NULL,
    parent_key         TEXT   COLLATE "C" NOT NULL,
    kind               TEXT   NOT NULL CHECK (kind IN ('file', 'dir')),
    current_version_id BIGINT,
    size               BIGINT NOT NULL DEFAULT 0,
    content_hash       BYTEA,
    mtime              BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    modified_at        BIGINT NOT NULL,
    deleted_at         BIGINT
);
CREATE UNIQUE INDEX entries_live_path ON entries (ns_id, path_key) WHERE deleted_at IS NULL;
CREATE INDEX entries_live_children ON entries (ns_id, parent_key, path_key) WHERE deleted_at IS NULL;

CREATE TABLE versions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id     BIGINT NOT NULL REFERENCES entries (id),
    ns_id        BIGINT NOT NULL REFERENCES namespaces (id),
    size         BIGINT NOT NULL,
    content_hash BYTEA  NOT NULL,
    block_count  BIGINT NOT NULL,
    mtime        BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    device_id    BIGINT REFERENCES devices (id)
);
CREATE INDEX versions_entry ON versions (entry_id);
ALTER TABLE entries ADD FOREIGN KEY (current_version_id) REFERENCES versions (id);

CREATE TABLE blocks (
    hash        BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(hash) = 32),
    size        BIGINT NOT NULL CHECK (size >= 0),
    stored_size BIGINT NOT NULL,
    refcount    BIGINT NOT NULL DEFAULT 0 CHECK (refcount >= 0),
    zero_since  BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX blocks_zero_since ON blocks (zero_since) WHERE zero_since IS NOT NULL;

CREATE TABLE version_blocks (
    version_id BIGINT NOT NULL REFERENCES versions (id),
    idx        BIGINT NOT NULL,
    block_hash BYTEA  NOT NULL REFERENCES blocks (hash),
    size       BIGINT NOT NULL,
    PRIMARY KEY (version_id, idx)
);
CREATE INDEX version_blocks_hash ON version_blocks (block_hash);

CREATE TABLE user_blocks (
    user_id    BIGINT NOT NULL REFERENCES users (id),
    block_hash BYTEA  NOT NULL REFERENCES blocks (hash) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, block_hash)
);
CREATE INDEX user_blocks_hash ON user_blocks (block_hash);

CREATE TABLE journal (
    ns_id      BIGINT NOT NULL REFERENCES namespaces (id),
    seq        BIGINT NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('commit', 'mkdir', 'move', 'copy', 'delete')),
    entry_kind TEXT   NOT NULL CHECK (entry_kind IN ('file', 'dir')),
    path       TEXT   NOT NULL,
    from_path  TEXT,
    entry_id   BIGINT NOT NULL,
    version_id BIGINT,
    user_id    BIGINT NOT NULL,
    device_id  BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (ns_id, seq)
);
