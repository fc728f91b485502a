-- What WebDAV keeps besides files (issue 17). PostgreSQL flavour;
-- migrations/sqlite/0013_webdav.sql is the same change.

-- WebDAV locks (RFC 4918 §6, §9.10), kept here rather than in a node's memory so that
-- they survive a restart and hold across every node of a deployment. A lock is on a
-- path of a namespace (the path inside it, so members of a shared folder who mount it
-- under different names see the same lock). `timeout_at` is Unix ms (NULL: never); an
-- expired row is as good as gone and is deleted by the next lock taken in its
-- namespace. `deep` and `shared` are 0/1.
CREATE TABLE dav_locks (
    token        TEXT    PRIMARY KEY,
    ns_id        BIGINT  NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    path         TEXT    NOT NULL,
    path_key     TEXT    NOT NULL,
    principal    TEXT,
    owner_xml    TEXT,
    timeout_secs BIGINT,
    timeout_at   BIGINT,
    shared       SMALLINT NOT NULL CHECK (shared IN (0, 1)),
    deep         SMALLINT NOT NULL CHECK (deep IN (0, 1)),
    created_at   BIGINT  NOT NULL
);
CREATE INDEX dav_locks_ns ON dav_locks (ns_id, path_key);

-- Dead properties (RFC 4918 §4): whatever a client stores with PROPPATCH, by entry, so
-- they follow the entry through moves and renames and go with it when it is purged.
-- Keyed by the entry's namespace first, like every table of a namespace's rows (an
-- entry never changes namespace). `namespace` is the property's XML namespace ('' for
-- none); `xml` the whole element as the client sent it.
CREATE TABLE dav_props (
    ns_id      BIGINT  NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    entry_id   BIGINT  NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    xml        BYTEA    NOT NULL,
    PRIMARY KEY (ns_id, entry_id, namespace, name)
);
