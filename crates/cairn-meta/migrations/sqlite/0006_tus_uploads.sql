-- Resumable uploads (the tus protocol, `cairn-server/src/tus/`). SQLite flavour;
-- migrations/postgres/0006_tus_uploads.sql is the same change.

-- One row per unfinished upload. Its bytes so far are the blocks in tus_upload_blocks,
-- in order, then `tail`: the bytes after the last cut point, which the next request's
-- bytes continue (content-defined cut points depend only on the bytes since the last
-- cut, so a resumed upload is cut exactly as one continuous stream would be).
-- upload_offset = the blocks' sizes + length(tail), always.
CREATE TABLE tus_uploads (
    id            TEXT    NOT NULL PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    -- Where the file goes, as the creator's tree names it, and the creation's
    -- Upload-Metadata as sent (HEAD answers with it).
    path          TEXT    NOT NULL,
    metadata      TEXT    NOT NULL,
    on_conflict   TEXT    NOT NULL CHECK (on_conflict IN ('fail', 'rename', 'replace')),
    mtime         INTEGER,
    upload_length INTEGER NOT NULL CHECK (upload_length >= 0),
    upload_offset INTEGER NOT NULL CHECK (upload_offset >= 0),
    tail          BLOB    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX tus_uploads_expires ON tus_uploads (expires_at);

-- The blocks an unfinished upload holds. No version references them yet, so their
-- refcount may be 0: garbage collection never claims a block that has a row here
-- (`MetaStore::gc_claim`), and an upload adds a row only for a block that is not
-- claimed (`MetaStore::save_upload_progress`).
CREATE TABLE tus_upload_blocks (
    upload_id TEXT    NOT NULL REFERENCES tus_uploads (id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    size      INTEGER NOT NULL,
    PRIMARY KEY (upload_id, idx)
) WITHOUT ROWID;
CREATE INDEX tus_upload_blocks_hash ON tus_upload_blocks (hash);
