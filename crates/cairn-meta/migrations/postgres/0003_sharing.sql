-- Shared folders and public links. PostgreSQL flavour; migrations/sqlite/0003_sharing.sql
-- explains the tables.

CREATE TABLE memberships (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ns_id          BIGINT NOT NULL REFERENCES namespaces (id),
    user_id        BIGINT NOT NULL REFERENCES users (id),
    role           TEXT   NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    mount_entry_id BIGINT NOT NULL REFERENCES entries (id),
    mount_path     TEXT   NOT NULL,
    mount_key      TEXT   COLLATE "C" NOT NULL,
    added_by       BIGINT NOT NULL REFERENCES users (id),
    created_at     BIGINT NOT NULL,
    UNIQUE (ns_id, user_id)
);
CREATE UNIQUE INDEX memberships_user_mount ON memberships (user_id, mount_key);

CREATE TABLE links (
    id            BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token         TEXT     NOT NULL UNIQUE,
    user_id       BIGINT   NOT NULL REFERENCES users (id),
    ns_id         BIGINT   NOT NULL REFERENCES namespaces (id),
    entry_id      BIGINT,
    password_hash TEXT,
    expires_at    BIGINT,
    max_downloads BIGINT,
    downloads     BIGINT   NOT NULL DEFAULT 0,
    upload_only   SMALLINT NOT NULL DEFAULT 0 CHECK (upload_only IN (0, 1)),
    created_at    BIGINT   NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX links_user ON links (user_id);
CREATE INDEX links_entry ON links (entry_id);
