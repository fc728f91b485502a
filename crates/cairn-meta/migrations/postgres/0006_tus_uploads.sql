-- Resumable uploads (the tus protocol, `cairn-server/src/tus/`). PostgreSQL flavour;
-- migrations/sqlite/0006_tus_uploads.sql is the same change and explains it.

CREATE TABLE tus_uploads (
    id            TEXT   NOT NULL PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id),
    path          TEXT   NOT NULL,
    metadata      TEXT   NOT NULL,
    on_conflict   TEXT   NOT NULL CHECK (on_conflict IN ('fail', 'rename', 'replace')),
    mtime         BIGINT,
    upload_length BIGINT NOT NULL CHECK (upload_length >= 0),
    upload_offset BIGINT NOT NULL CHECK (upload_offset >= 0),
    tail          BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX tus_uploads_expires ON tus_uploads (expires_at);

CREATE TABLE tus_upload_blocks (
    upload_id TEXT   NOT NULL REFERENCES tus_uploads (id) ON DELETE CASCADE,
    idx       BIGINT NOT NULL,
    hash      BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    size      BIGINT NOT NULL,
    PRIMARY KEY (upload_id, idx)
);
CREATE INDEX tus_upload_blocks_hash ON tus_upload_blocks (hash);
